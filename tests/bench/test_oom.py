"""Out of memory, simulated by failing the allocation funnel: shrink and retry, or skip; never abort."""

from __future__ import annotations

import pytest
import torch

from envcheck.bench import case, common
from envcheck.bench.harness import Budget
from envcheck.bench.model import BENCHMARKS, BenchSpec, Options, Plan
from envcheck.core.model import Status
from tests.bench.conftest import run_here

TINY = Budget(measure_s=0.01, warmup_s=0.0, min_samples=2, min_warmup=1)


def allocator_limited_to(limit_bytes: int):
    real = common._allocate

    def allocate(shape, dtype, device, gen):
        size = dtype.itemsize
        for d in shape:
            size *= d
        if size > limit_bytes:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {size / 2**20:.2f} MiB (GPU 0; fake allocator)"
            )
        return real(shape, dtype, device, gen)

    return allocate


def test_out_of_memory_shrinks_the_case_and_says_so(cpu, monkeypatch):
    BENCHMARKS.load()
    monkeypatch.setattr(common, "_allocate", allocator_limited_to(512 * 1024))  # 512² fp32 (1 MiB) does not fit
    spec = BENCHMARKS["matmul.fp32"]
    (plan,) = spec.plans(cpu, Options(quick=True))
    result = case.run_plan(spec, plan, cpu, TINY)
    assert result.status == Status.OK
    assert result.case == "fp32 256x256x256"
    assert result.params["shrunk_to_scale"] == 0.5
    assert len(result.attempts) == 1 and "out of memory at scale 1" in result.attempts[0]


def test_out_of_memory_at_every_size_skips_with_the_reason_and_the_suite_goes_on(cpu, monkeypatch):
    BENCHMARKS.load()
    monkeypatch.setattr(common, "_allocate", allocator_limited_to(1024))
    specs = [BENCHMARKS["matmul.fp32"], BENCHMARKS["train.cnn"]]
    results = run_here(specs, cpu, Options(quick=True), budgets={("cpu", True): TINY})
    matmul, cnn = results
    assert matmul.status == Status.SKIP
    assert matmul.reason == "out of memory at every size tried"
    assert len(matmul.attempts) == case.OOM_RETRIES + 1
    assert cnn.id == "train.cnn" and cnn.status == Status.SKIP  # the suite went on to the next benchmark


def test_any_other_error_becomes_the_case_result(cpu):
    def broken(scale: float):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore text")

    spec = BenchSpec("matmul.fp32", "t", "t", lambda d, o: [])
    result = case.run_plan(spec, Plan("fp32", "fp32", broken), cpu, TINY)
    assert result.status == Status.CRASH and result.is_problem
    assert result.reason == "RuntimeError: CUDA error: an illegal memory access was encountered"


def test_keyboard_interrupt_is_not_swallowed(cpu):
    def interrupted(scale: float):
        raise KeyboardInterrupt

    spec = BenchSpec("matmul.fp32", "t", "t", lambda d, o: [])
    with pytest.raises(KeyboardInterrupt):
        case.run_plan(spec, Plan("fp32", "fp32", interrupted), cpu, TINY)


@pytest.mark.parametrize(
    ("exc", "oom"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory."), True),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), True),
        (MemoryError(), True),
        (RuntimeError("CUDA error: device-side assert triggered"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_what_counts_as_out_of_memory(exc, oom):
    assert common.is_out_of_memory(exc) is oom


def test_an_operation_this_build_lacks_is_skipped_not_failed(cpu):
    from envcheck.bench.model import Unsupported

    def lacking(scale: float):
        raise Unsupported("fp8 matmul (torch._scaled_mm) is not available here: not supported on sm_89")

    spec = BenchSpec("matmul.fp8", "t", "t", lambda d, o: [])
    result = case.run_plan(spec, Plan("fp8", "fp8", lacking), cpu, TINY)
    assert result.status == Status.SKIP and not result.is_problem
    assert "not supported on sm_89" in result.reason
