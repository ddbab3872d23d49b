"""What ``envcheck explain -f LOG`` costs on a long log: wall time and peak memory of the installed
command on a generated training log (``--mb`` MB, default 200), with a known error every ``--every`` MB and
an undefined-symbol line near the end, against ``grep -c`` over the same file for scale. Not a test: a
measurement, written to RESULTS.md.

The log is the shape of a real one: step lines with numbers, Python traceback frames, a tqdm bar with
block characters (non-ASCII, as real progress bars are), NCCL INFO lines. The error lines make the
signatures fire (their checks then run once, as for any match), so the figure includes the doctor's part.

    python benchmarks/explain_scan.py [--mb 200] [--every 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOISE = (
    "2026-01-01 12:00:00 INFO step {i} loss 2.345 lr 3e-4 tokens/s 12345.6 grad_norm 1.23\n"
    '  File "/usr/lib/python3.10/site-packages/torch/nn/modules/module.py", line 1501, in _call_impl\n'
    "Epoch 3: 45%|████▌     | 450/1000 [01:23<01:42,  5.36it/s, loss=0.234, v_num=12]\n"
    "node17:4242:4299 [3] NCCL INFO Channel 01/0 : 3[3] -> 4[4] via P2P/CUMEM/read\n"
)
ERROR = "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
SYMBOL = (
    "ImportError: /venv/lib/python3.10/site-packages/flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so: "
    "undefined symbol: _ZN3c104cuda9SetDeviceEi\n"
)


def write_log(path: Path, mb: int, every_mb: int) -> int:
    block = "".join(NOISE.format(i=i) for i in range(2000)).encode()
    target, written, next_error = mb * 10**6, 0, every_mb * 10**6
    with open(path, "wb") as out:
        while written < target:
            out.write(block)
            written += len(block)
            if written >= next_error:
                out.write(ERROR.encode())
                next_error += every_mb * 10**6
        out.write(SYMBOL.encode())
    return path.stat().st_size


def timed(argv: list[str]) -> tuple[float, int, subprocess.CompletedProcess[bytes]]:
    """Wall seconds, the peak RSS (KiB) of the largest child so far, and the result."""
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True)
    took = time.perf_counter() - started
    return took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, proc


SCAN = """
import resource, sys, time
from envcheck.explain.scan import Scanner
started = time.perf_counter()
scanner = Scanner()
with open(sys.argv[1], "rb") as stream:
    scanner.read("log", stream)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, sorted(scanner.hits))
"""


def scan_alone(log: Path) -> tuple[float, int]:
    """The scanner over the file in a fresh interpreter: its time and the process's peak RSS (KiB)."""
    out = subprocess.run([sys.executable, "-c", SCAN, str(log)], capture_output=True, text=True, check=True).stdout
    seconds, rss, _ = out.split(" ", 2)
    return float(seconds), int(rss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    envcheck = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "train.log"
        size = write_log(log, args.mb, args.every)
        grep_s, _, _ = timed(["grep", "-c", "no kernel image", str(log)])
        took, rss, proc = timed([envcheck, "explain", "-f", str(log), "--json"])
        scan_s, scan_rss = scan_alone(log)
        small = Path(tmp) / "one.log"
        small.write_text(ERROR + SYMBOL)
        base_s, _, _ = timed([envcheck, "explain", "-f", str(small), "--json"])
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"log: {size / 1e6:.0f} MB, exit {proc.returncode}")
    print(f"load average before: {load}")
    print(f"envcheck explain -f LOG --json: {took:.2f} s (largest process, torch child included: {rss / 1024:.0f} MiB)")
    print(f"the same two errors in a two-line file: {base_s:.2f} s (start-up and the checks)")
    print(
        f"the scanner alone, in a process of its own: {scan_s:.2f} s = {size / 1e6 / scan_s:.0f} MB/s, peak RSS "
        f"{scan_rss / 1024:.0f} MiB"
    )
    print(f"grep -c (one pattern): {grep_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
