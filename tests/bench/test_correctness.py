"""Every benchmark's answer check catches a deliberately wrong kernel, and NaN never passes."""

from __future__ import annotations

import math

import pytest
import torch

from envcheck.bench import case, common
from envcheck.bench.benchmarks import attention, conv, matmul, memory, train
from envcheck.bench.harness import Budget
from envcheck.bench.model import BENCHMARKS, Options, Plan
from envcheck.core.model import Status

TINY = Budget(measure_s=0.01, warmup_s=0.0, min_samples=2, min_warmup=1)


def run_one(bench_id: str, cpu, opts: Options | None = None) -> case.BenchResult:
    BENCHMARKS.load()
    spec = BENCHMARKS[bench_id]
    plan = next(p for p in spec.plans(cpu, opts or Options(quick=True)) if p.build)
    return case.run_plan(spec, plan, cpu, TINY)


def test_check_close_passes_a_correct_answer_and_names_the_metric():
    ref = torch.randn(64, 64, dtype=torch.float64)
    check = common.check_close(ref.float(), ref, 1e-5, "float64")
    assert check.passed and check.error < 1e-6
    assert "max |error| / max |reference|" in check.detail


def test_one_corrupted_element_is_caught():
    ref = torch.randn(256, 256, dtype=torch.float64)
    out = ref.clone().float()
    out[17, 200] += 1.0  # one bad element, as from a faulty SM or memory cell
    assert not common.check_close(out, ref, 1e-2, "float64").passed


def test_nan_never_passes_whatever_the_tolerance():
    ref = torch.randn(8, 8, dtype=torch.float64)
    out = ref.clone().float()
    out[0, 0] = float("nan")
    check = common.check_close(out, ref, 1e9, "float64")
    assert not check.passed and math.isnan(check.error)
    assert "non-finite" in check.detail


@pytest.mark.parametrize("bench_id", ["matmul.fp32", "matmul.bf16"])
def test_real_matmul_kernels_pass_their_dtype_tolerance(cpu, bench_id):
    result = run_one(bench_id, cpu)
    assert result.status == Status.OK, result.reason
    assert result.check.error < common.TOLERANCE[result.dtype]


def test_a_wrong_matmul_kernel_is_reported_failed(cpu, monkeypatch):
    real = torch.matmul

    def wrong_matmul(a, b, *, out=None):
        real(a, b, out=out)
        out[:, 64:96] *= 1.01  # one column tile off by 1 %: plausible hardware damage
        return out

    monkeypatch.setattr(torch, "matmul", wrong_matmul)
    result = run_one("matmul.fp32", cpu)
    assert result.status == Status.FAIL
    assert result.verified is False and result.is_problem
    assert result.reason.startswith("wrong result")
    assert result.value is not None  # the speed is still reported next to the failure


def test_a_wrong_convolution_is_reported_failed(cpu, monkeypatch):
    real = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda *a, **k: real(*a, **k) * 1.02)
    assert run_one("conv.fwd", cpu).status == Status.FAIL


def test_a_wrong_attention_gradient_is_reported_failed(cpu, monkeypatch):
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * 1.05  # forward right, backward 5 % off

    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: Wrong.apply(real(*a, **k)))
    result = run_one("attention.fwd_bwd", cpu)
    assert result.status == Status.FAIL
    assert "dq" in result.check.detail


def test_real_conv_and_attention_pass_in_bf16(cpu):
    opts = Options(quick=True, dtypes=frozenset({"bf16"}))
    for bench_id in ("conv.fwd_bwd", "attention.fwd_bwd"):
        result = run_one(bench_id, cpu, opts)
        assert result.status == Status.OK, result.reason


def test_the_training_loop_learns_and_a_broken_one_is_not_verified(cpu, monkeypatch):
    assert train.learns(cpu, amp=False).passed
    monkeypatch.setattr(train, "LEARNING_RATE", 0.0)  # a step that never updates the weights
    check = train.learns(cpu, amp=False)
    assert not check.passed
    assert "held-out loss" in check.detail


def test_flattened_size_follows_the_input_shape():
    model = train.make_model((3, 64, 64))
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert train.make_model()(torch.randn(2, *train.INPUT_SHAPE)).shape == (2, train.CLASSES)


def test_a_copy_that_drops_bits_is_caught():
    src = torch.randn(1000)
    dst = src.clone()
    dst[5] = torch.nextafter(dst[5], torch.tensor(math.inf))  # one ulp off
    check = memory.exact(dst, src, "source")
    assert not check.passed and "1 of 1000" in check.detail


def test_inputs_are_random_never_zeros():
    t = common.randn((1000,), torch.float32, "cpu", common.generator("cpu", 1))
    assert float(t.abs().min()) > 0 and 0.8 < float(t.std()) < 1.2


def test_fp32_means_fp32_in_matmul_and_cudnn_alike():
    """torch's defaults differ (matmul TF32 off, cuDNN TF32 on): the flags are set together."""
    try:
        common.set_torch_flags(tf32=False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        common.set_torch_flags(tf32=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = True, False


def test_gpu_only_dtypes_skip_with_a_reason_on_cpu(cpu):
    for bench_id in ("matmul.tf32", "matmul.fp8", "matmul.fp16"):
        (plan,) = BENCHMARKS[bench_id].plans(cpu, Options())
        assert isinstance(plan, Plan) and plan.skip


def test_fp8_needs_compute_capability_8_9():
    from envcheck.devices.model import DeviceInfo

    a100 = DeviceInfo("cuda:0", "cuda", "NVIDIA A100-SXM4-80GB", 0, (8, 0), free_bytes=80 << 30)
    assert "8.9" in matmul.dtype_support(a100, "fp8")
    h100 = DeviceInfo("cuda:0", "cuda", "NVIDIA H100 80GB HBM3", 0, (9, 0), free_bytes=80 << 30)
    assert matmul.dtype_support(h100, "fp8") is None
    assert matmul.square_size(h100, "bf16", quick=False) == 8192


def test_square_and_sweep_sizes_leave_half_the_free_memory_including_the_check():
    from envcheck.devices.model import DeviceInfo

    def card(free_mib: int) -> DeviceInfo:
        return DeviceInfo("cuda:0", "cuda", "NVIDIA L4", 0, (8, 9), free_bytes=free_mib << 20)

    # 8192² bf16: 384 MiB of matrices + 128 MiB float64 block of B for the check = exactly half of 1 GiB.
    assert matmul.square_size(card(1024), "bf16", quick=False) == 8192
    assert matmul.square_size(card(768), "bf16", quick=False) == 4096
    # fp8 8192²: A and B at one byte but the bf16 output at two (384 MiB with the check), over half of 700 MiB.
    assert not matmul.fits(card(700), "fp8", 8192, 8192, 8192)
    sweep = [p.label for p in BENCHMARKS["matmul.sweep"].plans(card(1024), Options())]
    # 4096x16384x8192 is 448 MiB of matrices, under half of 1 GiB, but not with the check's 128 MiB.
    assert sweep == ["bf16 4096x4096x4096", "bf16 6144x6144x6144", "bf16 8192x8192x8192", "bf16 8192x8192x4096"]


def test_attention_reports_the_backend_that_ran(cpu):
    result = run_one("attention.fwd", cpu)
    assert result.params["backend"] in {"flash", "math", "memory-efficient", "cudnn"}
    assert conv.LAYOUTS == ("nchw", "channels_last")
    assert attention.BACKEND_NAMES["EFFICIENT_ATTENTION"] == "memory-efficient"


@pytest.mark.parametrize("bench_id", ["matmul.fp32", "matmul.bf16"])
def test_a_single_damaged_output_tile_anywhere_is_caught(cpu, monkeypatch, bench_id):
    real = torch.matmul

    def one_bad_tile(a, b, *, out=None):
        real(a, b, out=out)
        out[-64:, -64:] *= 1.05  # the last 64×64 tile only, outside most sampled rows
        return out

    monkeypatch.setattr(torch, "matmul", one_bad_tile)
    result = run_one(bench_id, cpu)
    assert result.status == Status.FAIL, result.check
