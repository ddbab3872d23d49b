"""The human report and JSON document from hand-made results: what a user sees on an 8-GPU node."""

from __future__ import annotations

import io

from rich.console import Console

from envcheck.bench import render, runner
from envcheck.bench.compare import Delta
from envcheck.bench.harness import Measurement
from envcheck.bench.registry import Check, DeviceInfo
from envcheck.core.exit import ExitCode
from envcheck.core.model import CheckResult, Fix, Status

MODEL = "NVIDIA H100 80GB HBM3"


def gpu(i: int) -> DeviceInfo:
    return DeviceInfo(f"cuda:{i}", "cuda", MODEL, i, (9, 0), 80 << 30, 79 << 30, 50 << 20, 132)


def figure(i: int, value: float, status: str = runner.OK) -> runner.BenchResult:
    check = Check(status == runner.OK, 3e-3 if status == runner.OK else 0.4, 1e-2, "float64")
    return runner.BenchResult(
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
        reason=None if status == runner.OK else "wrong result: max |error| / max |reference| = 4.00e-01",
    )


def human(run: render.Run) -> str:
    buf = io.StringIO()
    render.render_human(run, Console(file=buf, width=250, color_system=None))
    return buf.getvalue()


def test_node_report_names_the_slow_card_and_the_wrong_one():
    results = runner.flag_slow_siblings(
        [figure(i, 700.0) for i in range(6)] + [figure(6, 600.0), figure(7, 705.0, runner.FAILED)]
    )
    run = render.Run([gpu(i) for i in range(8)], results, exit_code=ExitCode.FAILED)
    text = human(run)
    assert "cuda:0" in text and "cuda:7" in text  # one column per device
    assert "71%" in text  # share of the datasheet peak
    assert "SLOW cuda:6 (NVIDIA H100 80GB HBM3) matmul.bf16 bf16 8192x8192x8192: 600.0 TFLOP/s" in text
    assert "WRONG RESULT cuda:7 (NVIDIA H100 80GB HBM3) matmul.bf16" in text
    assert "14% below the median of its siblings" in text


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
    deltas = [Delta("matmul.bf16", "bf16 8192x8192x8192", "cuda:0", "TFLOP/s", 700.0, 560.0, 0.10)]
    run = render.Run(
        [gpu(0)],
        [figure(0, 560.0)],
        pre,
        deltas=deltas,
        baseline="golden.json",
        threshold=0.10,
        exit_code=ExitCode.FAILED,
    )
    text = human(run)
    assert "gpu.memory: cuda:0: 70 GiB held by pid 4242" in text and "fix: Stop the other process" in text
    assert "REGRESSION cuda:0 matmul.bf16 bf16 8192x8192x8192: 560.0 TFLOP/s, 20% below the baseline's 700.0" in text
    doc = render.to_json(run)
    assert doc["preflight"][0]["status"] == "fail"
    assert doc["comparison"]["deltas"][0]["regressed"] is True
    assert doc["devices"][0]["datasheet"] == "H100 SXM" and "H100" in doc["devices"][0]["peak_source"]
    assert doc["summary"]["regressions"] == 1 and doc["exit_code"] == 1
