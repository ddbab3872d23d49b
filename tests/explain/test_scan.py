"""The scanner: bounded memory and time on a long log, the first lines of each error kept with their
numbers, blocks cut at line boundaries."""

from __future__ import annotations

import io
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from envcheck.explain import scan
from envcheck.explain.scan import KEEP_LINES, LINE_CHARS, Scanner

NOISE = (
    "2026-01-01 12:00:00 INFO step 1234 loss 2.345 lr 3e-4 tokens/s 12345.6 grad_norm 1.23\n"
    '  File "/usr/lib/python3.10/site-packages/torch/nn/modules/module.py", line 1501, in _call_impl\n'
    "Epoch 3: 45%|████     | 450/1000 [01:23<01:42,  5.36it/s, loss=0.234]\n"
).encode()
ERROR = b"RuntimeError: CUDA error: no kernel image is available for execution on the device\n"


def scanned(data: bytes) -> Scanner:
    scanner = Scanner()
    scanner.read("log", io.BytesIO(data))
    return scanner


def test_a_20_mb_log_file_is_read_in_bounded_time_keeping_only_the_first_lines(tmp_path) -> None:
    """A 20 MB log file with the same error every ~250 kB: a handful of lines kept, every occurrence
    counted, the line numbers right across blocks (benchmarks/explain_scan.py times 200 MB)."""
    chunk = NOISE * 1000  # ~ 250 kB, 3000 lines
    log = tmp_path / "train.log"
    with open(log, "wb") as out:
        for _ in range(80):
            out.write(chunk + ERROR)
    size = log.stat().st_size
    assert size > 20 * 10**6
    started = time.monotonic()
    scanner = Scanner()
    with open(log, "rb") as stream:
        scanner.read("train.log", stream)
    took = time.monotonic() - started
    hit = scanner.hits["cuda.no_kernel_image"]
    assert hit.count == 80 and len(hit.lines) == KEEP_LINES
    assert [line.number for line in hit.lines] == [3001 + i * 3001 for i in range(KEEP_LINES)]
    assert scanner.lines == 80 * 3001 and scanner.bytes == size
    assert took < 30, f"{took:.1f} s for {size / 1e6:.0f} MB"  # ~1 s unloaded; generous under load


def test_a_match_in_a_block_that_ends_mid_line_is_found_whole(monkeypatch) -> None:
    """Bytes arrive in pieces (a pipe); a block ends at a newline, so a line cut by a read is read whole."""
    monkeypatch.setattr(scan, "BLOCK", 64)
    scanner = Scanner()
    feed = scanner.source("stderr")
    data = NOISE + ERROR + NOISE
    for i in range(0, len(data), 7):
        feed.write(data[i : i + 7])
    feed.close()
    [line] = scanner.hits["cuda.no_kernel_image"].lines
    assert (line.source, line.number, line.text) == ("stderr", 4, ERROR.decode().strip())


def test_a_huge_line_is_kept_short_around_the_match() -> None:
    data = b"x" * 100_000 + ERROR.strip() + b"y" * 100_000
    [line] = scanned(data).hits["cuda.no_kernel_image"].lines
    assert "no kernel image" in line.text and len(line.text) <= LINE_CHARS + 2


def test_two_matches_on_one_line_keep_the_line_once_and_count_both() -> None:
    hit = scanned(ERROR.strip() + b" / " + ERROR).hits["cuda.no_kernel_image"]
    assert hit.count == 2 and len(hit.lines) == 1


def test_bytes_that_are_not_utf8_do_not_stop_the_scan() -> None:
    assert "cuda.no_kernel_image" in scanned(b"\xff\xfe garbage\n" + ERROR).hits


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40),
    block=st.integers(min_value=16, max_value=512),
)
def test_however_the_bytes_arrive_the_same_lines_are_found(cuts, block) -> None:
    """A pipe delivers bytes in any pieces and blocks end wherever they fill: the lines found, their
    numbers and the counts are those of the whole text read at once."""
    data = NOISE + ERROR + NOISE * 3 + b"NCCL WARN shm_open failed : Permission denied\n" + ERROR + NOISE
    whole = scanned(data)
    original = scan.BLOCK
    scan.BLOCK = block
    try:
        scanner = Scanner()
        feed = scanner.source("log")
        at = 0
        for size in cuts * (len(data) // sum(cuts) + 1):
            feed.write(data[at : at + size])
            at += size
            if at >= len(data):
                break
        feed.close()
    finally:
        scan.BLOCK = original
    assert {k: (h.count, h.lines) for k, h in scanner.hits.items()} == {
        k: (h.count, h.lines) for k, h in whole.hits.items()
    }
    assert scanner.lines == whole.lines
