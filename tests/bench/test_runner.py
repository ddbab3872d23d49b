"""The runner's judgements above the measurements: peak fractions, slow siblings, sweeps, exit codes."""

from __future__ import annotations

from envcheck.bench import app, peaks, render, runner
from envcheck.bench.harness import Measurement
from envcheck.bench.registry import Check, DeviceInfo, Workload
from envcheck.core.exit import ExitCode
from envcheck.core.model import CheckResult, Status

H100 = DeviceInfo("cuda:0", "cuda", "NVIDIA H100 80GB HBM3", 0, (9, 0), 80 << 30, 79 << 30, 50 << 20, 132)
UNKNOWN = DeviceInfo("cuda:0", "cuda", "NVIDIA Future GPU 9000", 0, (12, 0))
PASS = Check(True, 1e-3, 1e-2, "float64")


def workload(work: float, unit: str, peak_key: str | None) -> Workload:
    return Workload("c", {}, lambda: None, lambda: PASS, work, unit, peak_key)


def test_fraction_of_peak_where_the_card_is_known():
    m = Measurement((0.001,), 1, 2, "fake")
    value, unit, peak, fraction, source = runner.figure(workload(800e9, "flop", "bf16"), m, H100)
    assert unit == "TFLOP/s" and value == 800.0
    assert peak == 989.5 and fraction == round(800 / 989.5, 4)
    assert "H100" in source and "halved" in source


def test_no_fraction_invented_for_an_unknown_card_or_a_cpu():
    m = Measurement((0.001,), 1, 2, "fake")
    assert runner.figure(workload(800e9, "flop", "bf16"), m, UNKNOWN)[2:] == (None, None, None)
    cpu = DeviceInfo("cpu", "cpu", "x")
    value, unit, *_rest, fraction, _ = runner.figure(workload(800e9, "flop", "fp32"), m, cpu)
    assert unit == "GFLOP/s" and value == 800_000.0 and fraction is None


def test_memory_fraction_uses_the_datasheet_bandwidth():
    m = Measurement((0.001,), 1, 2, "fake")
    _, unit, peak, fraction, _ = runner.figure(workload(3e9, "byte", "memory"), m, H100)
    assert unit == "GB/s" and peak == 3350.0 and fraction == round(3000 / 3350, 4)


def result(device: str, value: float, model: str = "NVIDIA H100 80GB HBM3", status: str = runner.OK):
    return runner.BenchResult(
        "matmul.bf16", "bf16", "bf16 8192x8192x8192", device, model, "bf16", status, value, "TFLOP/s"
    )


def test_the_gpu_more_than_10_percent_below_its_siblings_is_named():
    values = [700, 705, 698, 702, 610, 701, 699, 703]
    flagged = runner.flag_slow_siblings([result(f"cuda:{i}", v) for i, v in enumerate(values)])
    slow = [r for r in flagged if r.sibling]
    assert [r.device for r in slow] == ["cuda:4"]
    assert slow[0].sibling["sibling_median"] == 701
    assert slow[0].is_problem


def test_siblings_are_only_cards_of_the_same_model():
    flagged = runner.flag_slow_siblings([result("cuda:0", 700), result("cuda:1", 300, model="NVIDIA L4")])
    assert not any(r.sibling for r in flagged)


def test_a_sweep_reports_its_best_shape_and_keeps_the_others():
    shapes = [result("cuda:0", v) for v in (600, 750, 700)]
    shapes = [runner.BenchResult(**{**r.__dict__, "case": f"bf16 shape{i}"}) for i, r in enumerate(shapes)]
    best = runner.best_of(shapes)
    assert best.value == 750 and best.case == "bf16 best of 3 shapes"
    assert best.params["best_shape"] == "bf16 shape1" and len(best.params["sweep"]) == 3


def test_a_wrong_shape_in_a_sweep_outranks_the_fastest():
    shapes = [result("cuda:0", 900, status=runner.FAILED), result("cuda:0", 950)]
    assert runner.best_of(shapes).status == runner.FAILED


def test_exit_code_policy():
    ok = render.Run([H100], [result("cuda:0", 700)])
    assert app.exit_code(ok) == ExitCode.OK
    wrong = render.Run([H100], [result("cuda:0", 700, status=runner.FAILED)])
    assert app.exit_code(wrong) == ExitCode.FAILED
    preflight_failed = render.Run(
        [H100], [result("cuda:0", 700)], [CheckResult("gpu.memory", "GPU memory", Status.FAIL, "held by pid 7")]
    )
    assert app.exit_code(preflight_failed) == ExitCode.FAILED
    noisy_skip = render.Run([H100], [result("cuda:0", 700), result("cuda:0", 0, status=runner.SKIPPED)])
    assert app.exit_code(noisy_skip) == ExitCode.OK


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
    from envcheck.bench.registry import BENCHMARKS, BenchSpec, Options

    BENCHMARKS.load()

    def broken(dev: DeviceInfo, opts: Options) -> list:
        raise KeyError("no such property")

    cpu = DeviceInfo("cpu", "cpu", "test cpu", threads=1)
    specs = [BenchSpec("matmul.broken", "broken", "nothing", broken), BENCHMARKS["memory.d2d"]]
    results = runner.run_suite(specs, [cpu], Options(quick=True))
    by_id = {r.id: r for r in results}
    assert by_id["matmul.broken"].status == runner.ERROR
    assert by_id["matmul.broken"].reason == "RuntimeError: planning matmul.broken failed: KeyError: 'no such property'"
    assert by_id["memory.d2d"].status == runner.OK and by_id["memory.d2d"].value > 0


def test_a_figure_that_cannot_be_computed_is_an_error_not_the_end_of_the_suite(monkeypatch):
    from envcheck.bench.registry import BENCHMARKS, Options

    BENCHMARKS.load()

    def explode(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(runner, "figure", explode)
    cpu = DeviceInfo("cpu", "cpu", "test cpu", threads=1)
    [result] = runner.run_suite([BENCHMARKS["memory.d2d"]], [cpu], Options(quick=True))
    assert result.status == runner.ERROR and "ZeroDivisionError" in result.reason and "a bug" in result.reason
