"""On a real GPU: event timing, device identity, the suite's answers and tolerances, and the datasheet
fraction. Skipped without CUDA (benchmarks/gpu_check.sh runs them with `pytest -m gpu`)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from envcheck.core.model import Status

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_cuda_event_timer_times_the_kernel_not_the_launch():
    from envcheck.bench.harness import CudaEventTimer

    timer = CudaEventTimer("cuda:0")
    cycles = 50_000_000  # torch.cuda._sleep spins on the GPU for this many clock cycles
    elapsed = timer.time(lambda: torch.cuda._sleep(cycles), 1)
    props = torch.cuda.get_device_properties(0)
    clock_hz = props.clock_rate * 1000 if hasattr(props, "clock_rate") else None
    assert elapsed > 0.001  # a host clock around the launch alone would read microseconds
    if clock_hz:
        assert elapsed == pytest.approx(cycles / clock_hz, rel=0.5)


def gpu0(nvml=None):
    """cuda:0 as a bench run has it: resolved in the parent from the torch child's report (and NVML), then
    measured where the cases run (here, unpinned)."""
    from envcheck.devices import resolve
    from envcheck.probes.torch import probe_torch

    probed = {"torch": probe_torch(os.environ), "nvml": nvml}
    [parents], _ = resolve.from_probes(resolve.Request("cuda", (0,)), probed.__getitem__, os.environ)
    return resolve.measure_here(parents)


def test_describe_reads_memory_capability_l2_and_the_cards_nvml_identity():
    from envcheck.probes.nvml.inventory import probe_nvml

    nvml = probe_nvml()
    info = gpu0(nvml)
    assert info.capability and info.total_bytes and info.free_bytes and info.free_bytes <= info.total_bytes
    assert info.l2_bytes is None or info.l2_bytes > 1 << 20
    assert info.uuid and info.uuid.startswith(("GPU-", "MIG-"))
    if nvml.available and info.uuid.startswith("GPU-"):
        card = next(g for g in nvml.gpus if str(g.uuid) == info.uuid)
        assert info.pci_bus_id == str(card.pci_bus_id)


def test_quick_pass_on_gpu0_is_verified_and_within_the_datasheet(invoke):
    result = invoke("--device", "cuda:0", "--quick", "--json")
    doc = json.loads(result.stdout)
    ran = [r for r in doc["results"] if r["status"] != "skip"]
    failed = [(r["id"], r["case"], r["reason"]) for r in ran if r["status"] != "ok"]
    assert not failed
    assert result.exit_code in (0, 1)  # 1 only from a preflight finding on a busy shared GPU
    for r in ran:
        if r["peak_fraction"] is not None:
            # Above the datasheet would mean the FLOP count or the timer is wrong (boost clocks give a few %).
            assert 0 < r["peak_fraction"] < 1.15, (r["id"], r["case"], r["peak_fraction"])
        assert r["contended"] is None  # CPU contention is a CPU figure's mark
    backends = {r["params"]["backend"] for r in ran if r["benchmark"] == "attention"}
    assert backends and "unknown" not in backends
    assert [c["id"] for c in doc["preflight"]] == ["torch.arch", "gpu.memory"]
    assert doc["gpus"][0]["uuid"] == doc["devices"][0]["uuid"] and doc["devices"][0]["pci_bus_id"]


def run_on_gpu0(bench_id: str):
    from envcheck.bench import case, peaks
    from envcheck.bench.harness import Budget
    from envcheck.bench.model import BENCHMARKS, Options

    BENCHMARKS.load()
    dev = gpu0()
    spec = BENCHMARKS[bench_id]
    plan = next(p for p in spec.plans(dev, Options(quick=True, dtypes=frozenset({"tf32", "fp16", "bf16"}))))
    if plan.skip:
        pytest.skip(plan.skip)
    return case.run_plan(spec, plan, dev, Budget(measure_s=0.05, warmup_s=0.0), datasheet=peaks.lookup(dev.model))


@pytest.mark.parametrize(("bench_id", "tolerance"), [("matmul.tf32", 2e-3), ("matmul.fp16", 1e-2)])
def test_healthy_tensor_cores_pass_the_tf32_and_fp16_tolerances(bench_id, tolerance):
    result = run_on_gpu0(bench_id)
    assert result.status is Status.OK, result.reason
    assert result.check.tolerance == tolerance and result.check.error < tolerance


def test_wrong_kernel_on_gpu_is_caught(monkeypatch):
    real = torch.matmul

    def wrong(a, b, *, out=None):
        real(a, b, out=out)
        out[-128:, -128:] *= 1.05  # one tile off, as a faulty SM would leave it
        return out

    monkeypatch.setattr(torch, "matmul", wrong)
    assert run_on_gpu0("matmul.bf16").status is Status.FAIL


def test_a_tf32_kernel_just_outside_its_tolerance_is_caught_on_gpu(monkeypatch):
    real = torch.matmul

    def biased(a, b, *, out=None):
        real(a, b, out=out)
        out.mul_(1 + 3e-3)  # 1.5 times the tf32 bound: beyond any rounding a healthy card does
        return out

    monkeypatch.setattr(torch, "matmul", biased)
    result = run_on_gpu0("matmul.tf32")
    assert result.status is Status.FAIL and result.check.error > 2e-3
