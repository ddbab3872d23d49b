"""The human report, read from the bench's document (as every renderer is), for hand-made runs: what a
user sees on an 8-GPU node, in a pipe, and after Ctrl-C."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console

from envcheck.bench import case
from envcheck.bench.app import Comparison
from envcheck.bench.compare import Delta
from envcheck.bench.harness import Measurement
from envcheck.bench.model import Check
from envcheck.bench.render import render_text
from envcheck.bench.report import bench_document
from envcheck.core.model import CheckResult, Fix, Status
from envcheck.devices.model import DeviceInfo
from envcheck.probes.contention import Contention
from tests.bench.conftest import make_report

MODEL = "NVIDIA H100 80GB HBM3"


def gpu(i: int) -> DeviceInfo:
    return DeviceInfo(f"cuda:{i}", "cuda", MODEL, i, (9, 0), 80 << 30, 79 << 30, 50 << 20, 132)


def figure(i: int, value: float, status: Status = Status.OK, **extra) -> case.BenchResult:
    check = Check(status is Status.OK, 3e-3 if status is Status.OK else 0.4, 1e-2, "float64")
    return case.BenchResult(
        "matmul.bf16",
        "bf16",
        "bf16 8192x8192x8192",
        f"cuda:{i}",
        MODEL,
        "bf16",
        status,
        value,
        "TFLOP/s",
        989.5,
        round(value / 989.5, 4),
        "NVIDIA H100 datasheet",
        check,
        Measurement((1e-3, 1.01e-3, 0.99e-3), 2, 3, "t"),
        reason=None if status is Status.OK else "wrong result: max |error| / max |reference| = 4.00e-01",
        **extra,
    )


def human(doc: dict, *, terminal: bool = False, width: int = 250) -> str:
    """The text report as envcheck prints it (soft_wrap: lines are never hard-wrapped by default)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=terminal, soft_wrap=True)
    render_text(doc, console, None)
    return buf.getvalue()


def test_node_report_names_the_slow_card_and_the_wrong_one():
    results = case.flag_slow_siblings(
        [figure(i, 700.0) for i in range(6)] + [figure(6, 600.0), figure(7, 705.0, Status.FAIL)]
    )
    text = human(bench_document(make_report([gpu(i) for i in range(8)], results)))
    assert "cuda:0" in text and "cuda:7" in text  # one column per device
    assert "71%" in text  # share of the datasheet peak
    assert "SLOW cuda:6 (NVIDIA H100 80GB HBM3) matmul.bf16 bf16 8192x8192x8192: 600.0 TFLOP/s" in text
    assert "WRONG RESULT cuda:7 (NVIDIA H100 80GB HBM3) matmul.bf16" in text
    assert "14% below the median of its siblings" in text
    assert text.rstrip().endswith("in 1 s") and "7 verified, 1 WRONG, 1 slow vs siblings on 8 device(s)" in text


def test_preflight_and_regressions_are_in_the_same_output():
    pre = [
        CheckResult(
            "gpu.memory",
            "GPU memory",
            Status.FAIL,
            "cuda:0: 70 GiB held by pid 4242 (python)",
            Fix("Stop the other process or pick another GPU.", "nvidia-smi"),
        )
    ]
    deltas = (Delta("matmul.bf16", "bf16 8192x8192x8192", "cuda:0", "TFLOP/s", 700.0, 560.0, 0.10),)
    doc = bench_document(
        make_report([gpu(0)], [figure(0, 560.0)], pre, comparison=Comparison("golden.json", 0.1, deltas))
    )
    text = human(doc)
    # the preflight reads like the doctor: mark, title, summary, id; then the fix and the command
    assert "[FAIL]  GPU memory: cuda:0: 70 GiB held by pid 4242 (python)  gpu.memory" in text
    assert "fix: Stop the other process or pick another GPU." in text and "run: nvidia-smi" in text
    assert "REGRESSION cuda:0 matmul.bf16 bf16 8192x8192x8192: 560.0 TFLOP/s, 20% below the baseline's 700.0" in text
    assert "compared with golden.json (1 figures, threshold 10%)" in text
    assert doc["preflight"][0]["status"] == "fail"
    assert doc["comparison"]["deltas"][0]["regressed"] is True
    assert doc["devices"][0]["datasheet"] == "H100 SXM" and "H100" in doc["devices"][0]["peak_source"]
    assert doc["summary"]["regressions"] == 1 and doc["exit_code"] == 1 and doc["status"] == "fail"


def test_a_crashed_case_says_crashed_and_the_error():
    crashed = case.BenchResult(
        "matmul.bf16",
        "bf16",
        "bf16",
        "cuda:0",
        MODEL,
        "bf16",
        Status.CRASH,
        reason="RuntimeError: CUDA error: an illegal memory access",
    )
    text = human(bench_document(make_report([gpu(0)], [crashed])))
    assert (
        "CRASHED cuda:0 (NVIDIA H100 80GB HBM3) matmul.bf16 bf16: RuntimeError: CUDA error: an illegal memory access"
        in text
    )
    assert "0 verified, 1 crashed" in text


def test_machine_text_is_never_taken_for_markup():
    """An allocator error quotes "[enforce fail at alloc_cpu.cpp:117]": rich must print it, not eat it."""
    why = "RuntimeError: [enforce fail at alloc_cpu.cpp:117] [bold]DefaultCPUAllocator"
    crashed = case.BenchResult("memory.d2d", "copy", "copy", "cpu", "[x] cpu", None, Status.CRASH, reason=why)
    cpu = DeviceInfo("cpu", "cpu", "[x] cpu")
    text = human(bench_document(make_report([cpu], [crashed])))
    assert why in text and "[x] cpu" in text


def test_contended_figures_are_marked_in_the_table_and_the_summary():
    busy = Contention(others_cores=1.0, usable_cores=2.0, spare_cores=0.0, window_s=0.4)
    idle = Contention(others_cores=0.1, usable_cores=2.0, spare_cores=0.0, window_s=0.4)
    cpu = DeviceInfo("cpu", "cpu", "test cpu", threads=2)
    results = [
        case.BenchResult("matmul.fp32", "fp32", "fp32 1024", "cpu", "test cpu", "fp32", Status.OK, 50.0, "GFLOP/s",
                           measurement=Measurement((1.0, 1.0, 1.0), 1, 2, "t"), contention=busy),
        case.BenchResult("memory.d2d", "copy", "copy 256 MiB", "cpu", "test cpu", None, Status.OK, 9.0, "GB/s",
                           measurement=Measurement((1.0, 1.0, 1.0), 1, 2, "t"), contention=idle),
    ]  # fmt: skip
    doc = bench_document(make_report([cpu], results))
    assert [r["contended"] for r in doc["results"]] == [True, False]
    assert doc["results"][0]["contention"]["share"] == 0.5
    text = human(doc)
    matmul_row = next(line for line in text.splitlines() if "matmul.fp32" in line)
    copy_row = next(line for line in text.splitlines() if "memory.d2d" in line)
    assert "contended" in matmul_row and "contended" not in copy_row
    assert "2 verified, 1 contended on 1 device(s)" in text


def test_an_interrupted_run_says_so_and_how_far_it_got():
    doc = bench_document(make_report([gpu(0)], [figure(0, 700.0)], interrupted=True, planned=12))
    assert doc["interrupted"] is True and doc["exit_code"] == 130
    assert doc["summary"]["finished"] == 1 and doc["summary"]["planned"] == 12
    assert "interrupted by Ctrl-C after 1 of 12 cases: 1 verified on 1 device(s)" in human(doc)


def test_in_a_pipe_a_row_stays_one_line():
    """rich assumes 80 columns when it cannot ask a terminal; a log line per row needs the natural width."""
    long_reason = "out of memory at every size tried " * 4
    skipped = case.BenchResult("matmul.fp8", "fp8", "fp8", "cuda:0", MODEL, "fp8", Status.SKIP, reason=long_reason)
    buf = io.StringIO()
    render_text(bench_document(make_report([gpu(0)], [skipped])), Console(file=buf, width=80, color_system=None), None)
    assert any(long_reason.strip() in line for line in buf.getvalue().splitlines())


def test_on_a_narrow_terminal_findings_wrap_between_words():
    doc = bench_document(make_report([gpu(0)], [figure(0, 700.0, Status.FAIL)]))
    text = human(doc, terminal=True, width=50)
    words = "WRONG RESULT cuda:0 (NVIDIA H100 80GB HBM3) matmul.bf16 bf16 8192x8192x8192: wrong result: max"
    lines = [line.strip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("WRONG RESULT cuda:0"))
    finding = " ".join(lines[start : start + 3])
    assert finding.startswith(words) and "|error| / max |reference| = 4.00e-01" in finding
    assert all(len(line) <= 50 for line in text.splitlines())


# -- the live progress while the workers run ------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_pipe_is_plain_lines_each_starting_with_its_device():
    from envcheck.bench.render import progress

    stream = io.StringIO()
    callbacks, live = progress(stream)
    with live:
        callbacks.started(0, 3, "matmul.bf16", "bf16", "cuda:1")
        callbacks.started(0, 3, "matmul.bf16", "bf16", "cuda:0")
        callbacks.finished(replace(figure(0, 700.0), duration_s=1.6))
        callbacks.finished(replace(figure(1, 0.0, Status.CRASH), value=None, reason="worker crashed with SIGSEGV"))
    assert stream.getvalue().splitlines() == [
        "cuda:1 [1/3] matmul.bf16 bf16 ...",
        "cuda:0 [1/3] matmul.bf16 bf16 ...",
        "cuda:0 ok: matmul.bf16 bf16 8192x8192x8192 700.0 TFLOP/s [1.6 s]",
        "cuda:1 crash: matmul.bf16 bf16 8192x8192x8192 (worker crashed with SIGSEGV) [0.0 s]",
    ]


def test_progress_on_a_terminal_is_one_live_line_per_device():
    from envcheck.bench.render import progress

    callbacks, bar = progress(Terminal())
    with bar:
        callbacks.started(0, 3, "matmul.bf16", "bf16", "cuda:0")
        callbacks.started(0, 3, "matmul.bf16", "bf16", "cuda:1")
        callbacks.finished(figure(1, 700.0))
        callbacks.started(1, 3, "memory.d2d", "copy", "cuda:1")
        lines = [(t.description, t.completed, t.total) for t in bar.tasks]
    assert lines == [("cuda:0 matmul.bf16 bf16", 0, 3), ("cuda:1 memory.d2d copy", 1, 3)]


def test_a_noisy_figure_shows_the_range_its_samples_gave_not_a_percentage_beyond_the_figure():
    """Samples of a CPU bench sharing its cores: the middle half runs from 1 s to 30 s a step, an IQR 29
    times the median. "±1450%" of a throughput that cannot fall below zero says nothing; the figure over
    the middle half of the samples does. A quiet figure keeps its ±half IQR."""
    from envcheck.render import make_console, render

    cpu = DeviceInfo("cpu", "cpu", "test cpu", threads=2)
    noisy = Measurement((0.9, 1.0, 1.0, 30.0, 31.0), 1, 2, "t")
    quiet = Measurement((0.94, 0.98, 1.0, 1.02, 1.06), 1, 2, "t")
    results = [
        case.BenchResult("matmul.sweep", "fp32 best of shapes", "fp32 best of 3 shapes", "cpu", "test cpu", "fp32",
                         Status.OK, 50.0, "GFLOP/s", measurement=noisy),
        case.BenchResult("memory.d2d", "copy", "copy 256 MiB", "cpu", "test cpu", None, Status.OK, 9.0, "GB/s",
                         measurement=quiet),
    ]  # fmt: skip
    doc = bench_document(make_report([cpu], results))
    assert doc["results"][0]["stats"]["relative_iqr"] == 29.0 and doc["results"][0]["noisy"] is True
    text = human(doc)
    sweep = next(line for line in text.splitlines() if "matmul.sweep" in line)
    copy = next(line for line in text.splitlines() if "memory.d2d" in line)
    # 50 GFLOP/s at the median step time (1 s): 50 / 30 at the third quartile's 30 s, 50 / 1 at the first's 1 s
    assert "noisy 1.67–50.0" in sweep and "±" not in sweep, sweep
    assert "±2%" in copy and "noisy" not in copy, copy
    assert "noisy a–b: the samples spread over 10%, a–b is the figure over their middle half" in text
    markdown, page = io.StringIO(), io.StringIO()
    render(doc, "markdown", make_console(markdown, for_file=True))
    render(doc, "html", make_console(page, for_file=True))
    assert "50 GFLOP/s (noisy 1.667–50)" in markdown.getvalue()
    assert (
        '<td class="n" data-label="spread">noisy 1.67–50.0</td>' in page.getvalue() and "±1450%" not in page.getvalue()
    )
    assert '<td class="n" data-label="spread">±2%</td>' in page.getvalue()
