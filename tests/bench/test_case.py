"""The runner's judgements above the measurements: peak fractions, slow siblings, sweeps, and the
statuses a run hands to the one exit policy (core.exit)."""

from __future__ import annotations

import pytest

from envcheck.bench import case, peaks
from envcheck.bench.app import Comparison
from envcheck.bench.compare import Delta
from envcheck.bench.harness import Measurement
from envcheck.bench.model import Check, Workload
from envcheck.core.exit import ExitCode
from envcheck.core.model import CheckResult, Status
from envcheck.devices.model import DeviceInfo
from envcheck.spec.bench import BenchVerdict
from tests.bench.conftest import make_report, run_here

H100 = DeviceInfo("cuda:0", "cuda", "NVIDIA H100 80GB HBM3", 0, (9, 0), 80 << 30, 79 << 30, 50 << 20, 132)
UNKNOWN = DeviceInfo("cuda:0", "cuda", "NVIDIA Future GPU 9000", 0, (12, 0))
PASS = Check(True, 1e-3, 1e-2, "float64")


def workload(work: float, unit: str, peak_key: str | None) -> Workload:
    return Workload("c", {}, lambda: None, lambda: PASS, work, unit, peak_key)


def datasheet(dev: DeviceInfo) -> peaks.Peak | None:
    """The device's entry as a run looks it up, once, before its worker starts."""
    return peaks.by_device([dev])[dev.name]


def test_fraction_of_peak_where_the_card_is_known():
    m = Measurement((0.001,), 1, 2, "fake")
    value, unit, peak, fraction, source = case.figure(workload(800e9, "flop", "bf16"), m, H100, datasheet(H100))
    assert unit == "TFLOP/s" and value == 800.0
    assert peak == 989.5 and fraction == round(800 / 989.5, 4)
    assert "H100" in source and "halved" in source


def test_no_fraction_invented_for_an_unknown_card_or_a_cpu():
    m = Measurement((0.001,), 1, 2, "fake")
    assert case.figure(workload(800e9, "flop", "bf16"), m, UNKNOWN, datasheet(UNKNOWN))[2:] == (None, None, None)
    cpu = DeviceInfo("cpu", "cpu", "x")
    value, unit, *_rest, fraction, _ = case.figure(workload(800e9, "flop", "fp32"), m, cpu, datasheet(cpu))
    assert unit == "GFLOP/s" and value == 800_000.0 and fraction is None


def test_memory_fraction_uses_the_datasheet_bandwidth():
    m = Measurement((0.001,), 1, 2, "fake")
    _, unit, peak, fraction, _ = case.figure(workload(3e9, "byte", "memory"), m, H100, datasheet(H100))
    assert unit == "GB/s" and peak == 3350.0 and fraction == round(3000 / 3350, 4)


def result(device: str, value: float, model: str = "NVIDIA H100 80GB HBM3", status: Status = Status.OK):
    return case.BenchResult(
        "matmul.bf16", "bf16", "bf16 8192x8192x8192", device, model, "bf16", status, value, "TFLOP/s"
    )


def test_the_gpu_more_than_10_percent_below_its_siblings_is_named():
    values = [700, 705, 698, 702, 610, 701, 699, 703]
    flagged = case.flag_slow_siblings([result(f"cuda:{i}", v) for i, v in enumerate(values)])
    slow = [r for r in flagged if r.sibling]
    assert [r.device for r in slow] == ["cuda:4"]
    assert slow[0].sibling["sibling_median"] == 701
    assert slow[0].is_problem


def test_siblings_are_only_cards_of_the_same_model():
    flagged = case.flag_slow_siblings([result("cuda:0", 700), result("cuda:1", 300, model="NVIDIA L4")])
    assert not any(r.sibling for r in flagged)


def test_a_sweep_reports_its_best_shape_and_keeps_the_others():
    shapes = [result("cuda:0", v) for v in (600, 750, 700)]
    shapes = [case.BenchResult(**{**r.__dict__, "case": f"bf16 shape{i}"}) for i, r in enumerate(shapes)]
    best = case.best_of(shapes)
    assert best.value == 750 and best.case == "bf16 best of 3 shapes"
    assert best.params["best_shape"] == "bf16 shape1" and len(best.params["sweep"]) == 3


def test_a_wrong_shape_in_a_sweep_outranks_the_fastest():
    shapes = [result("cuda:0", 900, status=Status.FAIL), result("cuda:0", 950)]
    assert case.best_of(shapes).status is Status.FAIL


SLOW = case.flag_slow_siblings([result("cuda:0", 700), result("cuda:1", 700), result("cuda:2", 500)])
PREFLIGHT_FAIL = CheckResult("torch.arch", "torch has kernels for every GPU", Status.FAIL, "sm_120 not covered")
PREFLIGHT_WARN = CheckResult("gpu.memory", "GPU memory free for you", Status.WARN, "held by pid 7")
REGRESSED = Comparison("golden.json", 0.1, (Delta("matmul.bf16", "bf16", "cuda:0", "TFLOP/s", 800.0, 700.0, 0.1),))
WITHIN = Comparison("golden.json", 0.1, (Delta("matmul.bf16", "bf16", "cuda:0", "TFLOP/s", 750.0, 700.0, 0.1),))
NOTHING_COMPARED = Comparison("golden.json", 0.1, (), "baseline golden.json shares no figure with this run")
BELOW = BenchVerdict("matmul.bf16", "cuda:0", 800.0, "TFLOP/s", 700.0, False, "700 < 800")
UNMEASURED = BenchVerdict("conv.fwd", None, 100.0, "TFLOP/s", None, None, "not measured in this run")


@pytest.mark.parametrize(
    ("pieces", "code"),
    [
        ({"results": [result("cuda:0", 700)]}, ExitCode.OK),
        ({"results": [result("cuda:0", 700, status=Status.FAIL)]}, ExitCode.FAILED),  # a wrong answer
        ({"results": [result("cuda:0", 0, status=Status.CRASH)]}, ExitCode.FAILED),  # a case that raised
        ({"results": [result("cuda:0", 0, status=Status.SKIP)]}, ExitCode.OK),
        ({"results": SLOW}, ExitCode.FAILED),  # cuda:2 is 29 % below its siblings
        ({"results": [result("cuda:0", 700)], "preflight": [PREFLIGHT_FAIL]}, ExitCode.FAILED),
        ({"results": [result("cuda:0", 700)], "preflight": [PREFLIGHT_WARN]}, ExitCode.OK),  # warnings allowed
        ({"results": [result("cuda:0", 700)], "comparison": REGRESSED}, ExitCode.FAILED),  # 12.5 % > 10 %
        ({"results": [result("cuda:0", 700)], "comparison": WITHIN}, ExitCode.OK),  # 6.7 % < 10 %
        ({"results": [result("cuda:0", 0, status=Status.SKIP)], "comparison": NOTHING_COMPARED}, ExitCode.FAILED),
        ({"results": [result("cuda:0", 700)], "verdicts": [BELOW]}, ExitCode.FAILED),
        ({"results": [result("cuda:0", 700)], "verdicts": [UNMEASURED]}, ExitCode.OK),
        # Ctrl-C: 130 whatever was found so far, since the run did not finish
        ({"results": [result("cuda:0", 700, status=Status.FAIL)], "interrupted": True}, ExitCode.INTERRUPTED),
    ],
)
def test_every_verdict_reaches_the_one_exit_policy(pieces, code):
    pieces = dict(pieces)
    report = make_report([H100, H100, H100], pieces.pop("results"), pieces.pop("preflight", ()), **pieces)
    assert report.exit_code is code


def test_a_slow_sibling_is_a_failure_of_a_verified_figure():
    slow = next(r for r in SLOW if r.sibling)
    assert slow.status is Status.OK and slow.verdict is Status.FAIL and slow.is_problem


def test_every_required_card_has_sourced_peaks():
    required = [
        "Tesla V100-SXM2-32GB",
        "NVIDIA A10",
        "NVIDIA A100-SXM4-40GB",
        "NVIDIA A100-SXM4-80GB",
        "NVIDIA A100-PCIE-40GB",
        "NVIDIA A100 80GB PCIe",
        "NVIDIA L4",
        "NVIDIA L40S",
        "NVIDIA GeForce RTX 3090",
        "NVIDIA GeForce RTX 4090",
        "NVIDIA H100 80GB HBM3",
        "NVIDIA H100 PCIe",
        "NVIDIA H200",
        "NVIDIA B200",
    ]
    for name in required:
        entry = peaks.lookup(name)
        assert entry is not None, name
        assert entry.memory_gbs > 0 and entry.tflops["fp32"] > 0
        assert "datasheet" in entry.source.lower() or "whitepaper" in entry.source.lower()


def test_near_miss_names_are_different_cards():
    for name in ("NVIDIA H200 NVL", "NVIDIA A10G", "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "NVIDIA GeForce RTX 4090 D"):
        assert peaks.lookup(name) is None
    assert peaks.lookup("  nvidia  h100 80gb hbm3 ").model == "H100 SXM"


def test_geforce_tensor_rates_are_the_fp32_accumulate_ones():
    assert peaks.lookup("NVIDIA GeForce RTX 4090").tflops["bf16"] == 165.2
    assert peaks.lookup("NVIDIA GeForce RTX 3090").tflops["fp16"] == 71.0


def test_a_benchmark_whose_planning_raises_is_its_own_error_and_the_suite_goes_on():
    from envcheck.bench.model import BENCHMARKS, BenchSpec, Options

    BENCHMARKS.load()

    def broken(dev: DeviceInfo, opts: Options) -> list:
        raise KeyError("no such property")

    cpu = DeviceInfo("cpu", "cpu", "test cpu", threads=1)
    specs = [BenchSpec("matmul.broken", "broken", "nothing", broken), BENCHMARKS["memory.d2d"]]
    results = run_here(specs, cpu, Options(quick=True))
    by_id = {r.id: r for r in results}
    assert by_id["matmul.broken"].status is Status.CRASH
    assert by_id["matmul.broken"].reason == "RuntimeError: planning matmul.broken failed: KeyError: 'no such property'"
    assert by_id["memory.d2d"].status is Status.OK and by_id["memory.d2d"].value > 0


def test_a_figure_that_cannot_be_computed_is_an_error_not_the_end_of_the_suite(monkeypatch):
    from envcheck.bench.model import BENCHMARKS, Options

    BENCHMARKS.load()

    def explode(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(case, "figure", explode)
    cpu = DeviceInfo("cpu", "cpu", "test cpu", threads=1)
    [result] = run_here([BENCHMARKS["memory.d2d"]], cpu, Options(quick=True))
    assert result.status is Status.CRASH and "ZeroDivisionError" in result.reason and "a bug" in result.reason


@pytest.mark.parametrize("bench_id", ["memory.h2d_pinned", "memory.d2h_pageable", "train.cnn", "train.cnn_amp"])
def test_host_bound_figures_are_not_compared_among_siblings(bench_id):
    """On a dual-socket node a GPU whose worker runs on the far socket copies to host memory slower, healthy:
    a host-bound figure 30 % down names no GPU; the same shortfall on a device-bound figure does."""
    host = [case.BenchResult(**{**result(f"cuda:{i}", v).__dict__, "id": bench_id}) for i, v in enumerate((50, 50, 35))]
    assert not any(r.sibling for r in case.flag_slow_siblings(host))
    device = case.flag_slow_siblings([result(f"cuda:{i}", v) for i, v in enumerate((50, 50, 35))])
    assert [r.device for r in device if r.sibling] == ["cuda:2"]


def test_every_host_bound_benchmark_is_a_host_copy_or_the_small_cnn_step():
    from envcheck.bench.model import BENCHMARKS

    marked = {b.id for b in BENCHMARKS.ordered() if b.host_bound}
    assert marked == {"memory.h2d_pinned", "memory.h2d_pageable", "memory.d2h_pinned", "memory.d2h_pageable",
                      "train.cnn", "train.cnn_amp"}  # fmt: skip


def test_two_gpus_each_is_judged_against_the_other_alone():
    # With two cards each one's "siblings' median" is the other's figure. 700 and 629: 10.1 % below, named;
    # 700 and 630: exactly 10 % below, within the line. The faster card is never named.
    flagged = case.flag_slow_siblings([result("cuda:0", 700), result("cuda:1", 629)])
    assert [(r.device, r.sibling) for r in flagged] == [
        ("cuda:0", None),
        ("cuda:1", {"sibling_median": 700, "shortfall": round(1 - 629 / 700, 4)}),
    ]
    assert not any(r.sibling for r in case.flag_slow_siblings([result("cuda:0", 700), result("cuda:1", 630)]))


def test_a_figure_that_failed_verification_is_nobody_s_sibling_and_passes_nothing():
    # cuda:0 computed wrong answers at 1000: it fails on its own, and its speed is no yardstick for cuda:1.
    wrong = result("cuda:0", 1000, status=Status.FAIL)
    flagged = case.flag_slow_siblings([wrong, result("cuda:1", 700)])
    assert not any(r.sibling for r in flagged)
    assert flagged[0].is_problem and not flagged[1].is_problem
    report = make_report([H100, H100], flagged)
    assert report.exit_code is ExitCode.FAILED
    # Nor is it a lab spec's headline, however fast: the verified 700 is.
    from envcheck.spec.bench import headlines

    docs = [{**r.to_json(), "device": "cuda:0"} for r in (wrong, result("cuda:0", 700))]
    docs[1]["verified"] = True  # a figure whose check passed
    assert headlines(docs) == {("matmul.bf16", "cuda:0"): (700.0, "TFLOP/s")}
    docs[1]["verified"] = None  # no check at all: no headline either
    assert headlines(docs) == {}
