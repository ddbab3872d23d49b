"""``scaled_dot_product_attention`` forward and forward+backward at transformer-training shapes.

FLOPs follow the FlashAttention papers' convention: the forward pass is two matmuls (4·B·H·S²·D),
halved when causal (half the score matrix is masked and the fused kernels skip it); the backward pass
is 2.5 times the forward (five matmuls against two), so forward+backward counts 3.5 times it.

Which kernel ran matters as much as how fast it was (a "flash" figure from the math backend is
someone's missing wheel, not a slow card). The backend is read from torch's own dispatcher
(``torch._fused_sdp_choice``, the function SDPA itself consults), and the timed call is then pinned
to exactly that backend with ``sdpa_kernel``, so the reported backend is the measured one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from envcheck.bench import common
from envcheck.bench.model import Check, Options, Plan, Workload, benchmark
from envcheck.devices.model import DeviceInfo

if TYPE_CHECKING:
    import torch

#: (batch, heads, sequence) per device kind; head dims 64 and 128 are the common ones in LLMs.
GPU_SHAPE = (8, 16, 2048)
CPU_SHAPE = (2, 4, 512)
CPU_SHAPE_QUICK = (1, 4, 256)
HEAD_DIMS = (64, 128)

BACKEND_NAMES = {
    "FLASH_ATTENTION": "flash",
    "EFFICIENT_ATTENTION": "memory-efficient",
    "MATH": "math",
    "CUDNN_ATTENTION": "cudnn",
}


def attention_dtypes(dev: DeviceInfo, opts: Options) -> list[str]:
    """bf16 on Ampere and newer (fp16 before) and fp32 on a CPU by default; ``--dtype`` picks others."""
    if dev.is_cuda:
        cc = dev.capability or (0, 0)
        supported = ["fp32", "bf16", "fp16"] if cc >= (8, 0) else ["fp32", "fp16"]
        default = "bf16" if cc >= (8, 0) else "fp16"
    else:
        supported, default = ["fp32", "bf16"], "fp32"
    return [d for d in supported if opts.wants(d, default=d == default)]


def chosen_backend(q: torch.Tensor, causal: bool) -> Any:
    """The SDPA backend torch's dispatcher picks for these inputs (an ``SDPBackend``), or None if unknown."""
    import torch
    from torch.nn.attention import SDPBackend

    try:
        return SDPBackend(int(torch._fused_sdp_choice(q, q, q, None, 0.0, causal)))
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return None


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """Textbook attention in whatever dtype it is given (float64 for the check)."""
    import torch

    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        s = q.shape[-2]
        mask = torch.ones(s, s, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def build_attention(
    dev: DeviceInfo, dtype: str, head_dim: int, causal: bool, backward: bool, batch: int, heads: int, seq: int
) -> Workload:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    device = dev.torch_device
    tdt = common.torch_dtype(dtype)
    gen = common.generator(device, common.case_seed("attention", dtype, head_dim, causal, backward, batch, seq))
    shape = (batch, heads, seq, head_dim)
    q, k, v = (common.randn(shape, tdt, device, gen) for _ in range(3))
    grad_out = common.randn(shape, tdt, device, gen) if backward else None
    if backward:
        for t in (q, k, v):
            t.requires_grad_(True)
    # Asked after requires_grad is set: the dispatcher also weighs whether a backend can do the backward.
    backend = chosen_backend(q, causal)
    backend_name = BACKEND_NAMES.get(backend.name, backend.name.lower()) if backend is not None else "unknown"
    holder: list[torch.Tensor] = []

    def attend() -> torch.Tensor:
        if backend is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def step() -> None:
        if backward:
            out = attend()
            grads = torch.autograd.grad(out, (q, k, v), grad_out)
            holder[:] = [out.detach(), *grads]
        else:
            with torch.no_grad():
                holder[:] = [attend()]

    reference = f"float64 attention on {device}, batch 0 head 0"

    def verify() -> Check:
        sl = (0, 0)
        q64, k64, v64 = (t.detach()[sl].double().requires_grad_(backward) for t in (q, k, v))
        out64 = reference_attention(q64, k64, v64, causal)
        checks = [common.check_close(holder[0][sl], out64.detach(), common.TOLERANCE[dtype], reference, "output: ")]
        if backward:
            assert grad_out is not None
            grads64 = torch.autograd.grad(out64, (q64, k64, v64), grad_out[sl].double())
            for name, got, want in zip(("dq", "dk", "dv"), holder[1:], grads64, strict=True):
                checks.append(
                    common.check_close(got[sl], want, common.LAYERED_TOLERANCE[dtype], reference, f"{name}: ")
                )
        return common.combine(checks)

    fwd_flops = 4.0 * batch * heads * seq * seq * head_dim * (0.5 if causal else 1.0)
    return Workload(
        case=f"{dtype} hd{head_dim} {'causal' if causal else 'full'} {'fwd+bwd' if backward else 'fwd'} "
        f"b{batch} h{heads} s{seq}",
        params={
            "dtype": dtype,
            "batch": batch,
            "heads": heads,
            "seq": seq,
            "head_dim": head_dim,
            "causal": causal,
            "backward": backward,
            "backend": backend_name,
        },
        step=step,
        verify=verify,
        work_per_step=fwd_flops * (3.5 if backward else 1.0),
        work_unit="flop",
        peak_key=dtype,
        notes={"backend": backend_name},
    )


def _plans(dev: DeviceInfo, opts: Options, backward: bool) -> list[Plan]:
    batch, heads, seq = GPU_SHAPE if dev.is_cuda else (CPU_SHAPE_QUICK if opts.quick else CPU_SHAPE)
    plans = []
    for dtype in attention_dtypes(dev, opts):
        for head_dim in HEAD_DIMS:
            for causal in (False, True):

                def build(
                    scale: float, dtype: str = dtype, head_dim: int = head_dim, causal: bool = causal
                ) -> Workload:
                    return build_attention(
                        dev, dtype, head_dim, causal, backward, max(1, int(batch * scale)), heads, seq
                    )

                plans.append(Plan(f"{dtype} hd{head_dim} {'causal' if causal else 'full'}", dtype, build))
    return plans


@benchmark("attention.fwd", "SDPA forward")
def attention_fwd(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """scaled_dot_product_attention forward, head dim 64/128, causal and full: TFLOP/s and the backend that ran."""
    return _plans(dev, opts, backward=False)


@benchmark("attention.fwd_bwd", "SDPA forward+backward")
def attention_fwd_bwd(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """scaled_dot_product_attention forward+backward (dq, dk, dv): TFLOP/s and the backend that ran."""
    return _plans(dev, opts, backward=True)
