"""On a real GPU: event timing, the suite's answers, and the datasheet fraction. Skipped without CUDA."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_cuda_event_timer_times_the_kernel_not_the_launch():
    from envcheck.bench.harness import CudaEventTimer

    timer = CudaEventTimer("cuda:0")
    cycles = 50_000_000  # torch.cuda._sleep spins on the GPU for this many clock cycles
    elapsed = timer.time(lambda: torch.cuda._sleep(cycles), 1)
    clock_hz = (
        torch.cuda.get_device_properties(0).clock_rate * 1000
        if hasattr(torch.cuda.get_device_properties(0), "clock_rate")
        else None
    )
    assert elapsed > 0.001  # a host clock around the launch alone would read microseconds
    if clock_hz:
        assert elapsed == pytest.approx(cycles / clock_hz, rel=0.5)


def test_describe_reads_memory_capability_and_l2():
    from envcheck.bench import devices

    info = devices.describe("cuda:0")
    assert info.capability and info.total_bytes and info.free_bytes and info.free_bytes <= info.total_bytes
    assert info.l2_bytes is None or info.l2_bytes > 1 << 20


def test_quick_pass_on_gpu0_is_verified_and_within_the_datasheet(invoke):
    result = invoke("--device", "cuda:0", "--quick", "--json")
    doc = json.loads(result.stdout)
    ran = [r for r in doc["results"] if r["status"] != "skipped"]
    failed = [(r["id"], r["case"], r["reason"]) for r in ran if r["status"] != "ok"]
    assert not failed
    assert result.exit_code in (0, 1)  # 1 only from a preflight finding on a busy shared GPU
    for r in ran:
        if r["peak_fraction"] is not None:
            # Above the datasheet would mean the FLOP count or the timer is wrong (boost clocks give a few %).
            assert 0 < r["peak_fraction"] < 1.15, (r["id"], r["case"], r["peak_fraction"])
    backends = {r["params"]["backend"] for r in ran if r["benchmark"] == "attention"}
    assert backends and "unknown" not in backends
    assert doc["preflight"] or doc["preflight_note"]


def test_wrong_kernel_on_gpu_is_caught(monkeypatch):
    from envcheck.bench import runner
    from envcheck.bench.devices import describe
    from envcheck.bench.harness import Budget
    from envcheck.bench.registry import BENCHMARKS, Options

    BENCHMARKS.load()
    real = torch.matmul

    def wrong(a, b, *, out=None):
        real(a, b, out=out)
        out[-128:, -128:] *= 1.05  # one tile off, as a faulty SM would leave it
        return out

    monkeypatch.setattr(torch, "matmul", wrong)
    dev = describe("cuda:0")
    spec = BENCHMARKS["matmul.bf16"]
    (plan,) = spec.plans(dev, Options(quick=True))
    result = runner.run_plan(spec, plan, dev, Budget(measure_s=0.05, warmup_s=0.0))
    assert result.status == runner.FAILED
