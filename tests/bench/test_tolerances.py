"""GPU-only verdicts, reached without a GPU: the tf32 and fp16 answer tolerances through the real matmul
check with a kernel that is wrong by a known amount just inside and just outside them, and the CUDA
event timer over a fake torch.cuda. The expected numbers are literal, as a person checks them by hand
against the reasoning in envcheck/bench/common.py, never read back from the code under test."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from envcheck.bench import case, common, execute
from envcheck.bench.benchmarks.matmul import build_matmul
from envcheck.bench.harness import Budget, CudaEventTimer, measure
from envcheck.bench.model import BenchSpec, Plan
from envcheck.core.model import Status
from envcheck.devices.model import DeviceInfo

TINY = Budget(measure_s=0.01, warmup_s=0.0, min_samples=2, min_warmup=1)
CPU = DeviceInfo("cpu", "cpu", "test cpu", threads=1)


@pytest.mark.parametrize(
    ("dtype", "tolerance", "layered"),
    [("fp32", 1e-5, 1e-4), ("tf32", 2e-3, 5e-3), ("bf16", 1e-2, 3e-2), ("fp16", 1e-2, 3e-2), ("fp8", 1e-2, None)],
)
def test_the_tolerance_table_holds_the_reasoned_numbers(dtype, tolerance, layered):
    assert common.TOLERANCE[dtype] == tolerance
    assert common.LAYERED_TOLERANCE.get(dtype) == layered


def off_by(relative: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.matmul that writes the right product scaled by (1 + relative), rounded once to the output's
    dtype: every element off by that fraction, as a kernel with a systematic error would be."""
    real = torch.matmul

    def kernel(a, b, *, out=None):
        real(a, b, out=out)
        out.copy_((out.double() * (1 + relative)).to(out.dtype))
        return out

    monkeypatch.setattr(torch, "matmul", kernel)


def matmul_case(dtype: str, position: int = 0) -> execute.Case:
    spec = BenchSpec(f"matmul.{dtype}", dtype, dtype, lambda dev, opts: [])
    return execute.Case(
        position, spec, Plan(dtype, dtype, lambda scale: build_matmul(CPU, dtype, 256, 256, 256, dtype))
    )


def run_matmul(dtype: str) -> case.BenchResult:
    """One 256³ matmul case in ``dtype`` as a worker runs it (precision flags, timing, the real check)."""
    try:
        return execute.run_cases([matmul_case(dtype)], CPU, TINY)[0]
    finally:
        common.set_torch_flags(tf32=False)


@pytest.mark.parametrize(
    ("dtype", "error", "status"),
    [
        # tf32 keeps 10 mantissa bits; truncating tensor cores bias products by ~7e-4: 2e-3 is the bound
        ("tf32", 1.9e-3, Status.OK),
        ("tf32", 2.1e-3, Status.FAIL),
        # fp16 output rounding is ~5e-4 on top of the planted error: 8e-3 passes and 1.2e-2 fails 1e-2
        ("fp16", 8e-3, Status.OK),
        ("fp16", 1.2e-2, Status.FAIL),
    ],
)
def test_a_kernel_wrong_by_a_known_amount_meets_the_dtypes_tolerance(monkeypatch, dtype, error, status):
    off_by(error, monkeypatch)
    result = run_matmul(dtype)
    assert result.status is status, result.check
    assert result.check is not None and result.check.tolerance == {"tf32": 2e-3, "fp16": 1e-2}[dtype]
    assert result.check.error == pytest.approx(error, abs=1.5e-3 if dtype == "fp16" else 1e-5)
    if status is Status.FAIL:
        assert result.reason.startswith("wrong result: ") and result.is_problem


def test_tf32_is_on_for_the_tf32_case_only_and_switched_once(monkeypatch):
    """The tf32 case comes first in the suite but runs after the fp32 one: the flag, global to the
    worker, changes once. "fp32" is true fp32 for matmul and cuDNN alike."""
    seen = []
    real = torch.matmul

    def spy(a, b, *, out=None):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return real(a, b, out=out)

    monkeypatch.setattr(torch, "matmul", spy)
    try:
        results = execute.run_cases([matmul_case("tf32", 0), matmul_case("fp32", 1)], CPU, TINY)
    finally:
        common.set_torch_flags(tf32=False)
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = True, False
    changes = [flags for i, flags in enumerate(seen) if i == 0 or flags != seen[i - 1]]
    assert changes == [(False, False), (True, True)]
    assert (
        results[0].dtype == "tf32"
        and results[1].dtype == "fp32"
        and all(r.status is Status.OK for r in results.values())
    )


class FakeCuda:
    """torch.cuda as the event timer uses it. Every call is logged in order; ``elapsed_ms`` is what the
    end event reports, as CUDA does, in milliseconds."""

    def __init__(self, elapsed_ms: float) -> None:
        self.log: list[str] = []
        cuda = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing, "an event without timing cannot report elapsed time"
                self.name = "start" if not any(e.startswith("new") for e in cuda.log) else "end"
                cuda.log.append(f"new {self.name}")

            def record(self, stream: str) -> None:
                cuda.log.append(f"record {self.name} on {stream}")

            def synchronize(self) -> None:
                cuda.log.append(f"wait for {self.name}")

            def elapsed_time(self, end: Event) -> float:
                cuda.log.append(f"elapsed {self.name} -> {end.name}")
                return elapsed_ms

        self.Event = Event

    def current_stream(self, device: str) -> str:
        return f"stream of {device}"

    def synchronize(self, device: str) -> None:
        self.log.append(f"synchronize {device}")


def event_timer(device: str, elapsed_ms: float) -> tuple[CudaEventTimer, FakeCuda]:
    timer = CudaEventTimer(device)
    fake = FakeCuda(elapsed_ms)
    timer.torch = SimpleNamespace(cuda=fake)
    return timer, fake


def test_the_event_timer_brackets_the_kernels_and_reports_seconds():
    timer, fake = event_timer("cuda:1", elapsed_ms=12.5)
    steps = []
    assert timer.time(lambda: steps.append(fake.log[-1]), 4) == 0.0125  # 12.5 ms, in seconds
    # earlier queued work is finished first; the events bracket the four launches on cuda:1's stream;
    # the end event is waited for before its time is read
    assert fake.log == [
        "new start",
        "new end",
        "synchronize cuda:1",
        "record start on stream of cuda:1",
        "record end on stream of cuda:1",
        "wait for end",
        "elapsed start -> end",
    ]
    assert steps == ["record start on stream of cuda:1"] * 4  # every step ran between the two records


def test_a_gpu_device_is_timed_by_events_on_its_own_device_and_measured_per_step(fake_clock):
    gpu = DeviceInfo("cuda:3", "cuda", "NVIDIA H100 80GB HBM3", 3, (9, 0))
    timer = case.timer_for(gpu)
    assert isinstance(timer, CudaEventTimer) and timer.device == "cuda:3"
    fake = FakeCuda(elapsed_ms=20.0)
    timer.torch = SimpleNamespace(cuda=fake)
    m = measure(lambda: None, timer, Budget(measure_s=1.0, warmup_s=0.0, max_samples=7), clock=fake_clock)
    # one 20 ms warm-up call sets 1 step per sample (>= the 10 ms sample target); each sample is 20 ms
    assert (m.timer, m.steps_per_sample, len(m.samples_s)) == ("CudaEventTimer", 1, 7)
    assert m.median_s == 0.02 and not m.noisy
    assert all(entry.endswith("cuda:3") for entry in fake.log if entry.startswith(("record", "synchronize")))


def test_a_cpu_device_is_timed_by_the_host_clock():
    assert type(case.timer_for(CPU)).__name__ == "CpuTimer"
