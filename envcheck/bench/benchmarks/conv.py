"""A ResNet-style 3×3 convolution block, forward and forward+backward, NCHW and channels-last.

The block is ResNet's basic block: conv3×3 → BN → ReLU → conv3×3 → BN → add the input → ReLU, with
BatchNorm in its inference form (a per-channel scale and shift) so that each image's result depends on
that image alone and can be checked one image at a time. cuDNN autotuning is on (the runner enables it
for the case and the warm-up absorbs the search). The FLOPs counted are the two convolutions' (2·N·C·C·9·H·W
each, forward); the backward pass does twice the forward work (input and weight gradients), so
forward+backward counts three times the forward. The element-wise layers are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from envcheck.bench import common
from envcheck.bench.model import Check, Options, Plan, Workload, benchmark
from envcheck.devices.model import DeviceInfo

if TYPE_CHECKING:
    import torch

#: (batch, channels, height=width): ResNet-34's second stage on a GPU; a small slice of it on a CPU.
GPU_SHAPE = (256, 128, 28)
CPU_SHAPE = (8, 64, 28)
CPU_SHAPE_QUICK = (4, 64, 28)

LAYOUTS = ("nchw", "channels_last")


def conv_dtypes(dev: DeviceInfo, opts: Options) -> list[str]:
    """bf16 on a GPU and fp32 on a CPU by default; ``--dtype`` picks others among those that apply."""
    cc = dev.capability or (0, 0)
    if dev.is_cuda:
        supported = ["fp32", "tf32", "bf16", "fp16"] if cc >= (8, 0) else ["fp32", "fp16"]
        default = "bf16" if cc >= (8, 0) else "fp16"
    else:
        supported, default = ["fp32", "bf16"], "fp32"
    return [d for d in supported if opts.wants(d, default=d == default)]


def block(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    affine: tuple[torch.Tensor, ...],
    masks: tuple[torch.Tensor, torch.Tensor] | None = None,
    conv: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The basic block; returns its output and the first pre-activation.

    ``affine`` holds the two BatchNorms' inference-time scale and shift. With ``masks`` the ReLUs are
    replaced by those fixed 0/1 patterns: the float64 reference of the *backward* pass must follow the
    activation pattern the tested forward chose, because where a pre-activation rounds across zero in
    bf16 the gradient there is legitimately 0 in one answer and whole in the other. ``conv`` replaces
    the convolution (the reference uses :func:`conv3x3_im2col`, independent of the kernels under test).
    """
    import torch.nn.functional as F

    conv = conv or (lambda t, w: F.conv2d(t, w, padding=1))
    s1, b1, s2, b2 = affine
    pre1 = conv(x, w1) * s1 + b1
    y = F.relu(pre1) if masks is None else pre1 * masks[0]
    pre2 = conv(y, w2) * s2 + b2 + x
    return (F.relu(pre2) if masks is None else pre2 * masks[1]), pre1


def conv3x3_im2col(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A 3×3, padding-1 convolution as unfold + matmul: the reference shares no code with cuDNN's kernels."""
    import torch.nn.functional as F

    n, _, h, width = x.shape
    cols = F.unfold(x, kernel_size=3, padding=1)  # (n, c·9, h·w)
    return (w.reshape(w.shape[0], -1) @ cols).reshape(n, w.shape[0], h, width)


def build_block(
    dev: DeviceInfo, dtype: str, layout: str, backward: bool, batch: int, channels: int, hw: int
) -> Workload:
    import torch

    device = dev.torch_device
    tdt = common.torch_dtype(dtype)
    gen = common.generator(device, common.case_seed("conv", dtype, layout, backward, batch, channels, hw))
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = common.randn((batch, channels, hw, hw), tdt, device, gen).contiguous(memory_format=fmt)
    # He-initialised weights keep activations O(1) through the block, as in a real network.
    std = (2.0 / (channels * 9)) ** 0.5
    w1 = (common.randn((channels, channels, 3, 3), tdt, device, gen) * std).contiguous(memory_format=fmt)
    w2 = (common.randn((channels, channels, 3, 3), tdt, device, gen) * std).contiguous(memory_format=fmt)
    affine = tuple(
        (1.0 + 0.1 * common.randn((1, channels, 1, 1), tdt, device, gen))
        if i % 2 == 0
        else 0.1 * common.randn((1, channels, 1, 1), tdt, device, gen)
        for i in range(4)
    )
    grad_out = common.randn(x.shape, tdt, device, gen).contiguous(memory_format=fmt) if backward else None
    if backward:
        x.requires_grad_(True)
        w1.requires_grad_(True)
        w2.requires_grad_(True)
    holder: list[torch.Tensor] = []

    def step() -> None:
        if backward:
            out, pre1 = block(x, w1, w2, affine)
            (dx, _, _) = torch.autograd.grad(out, (x, w1, w2), grad_out)
            holder[:] = [out.detach(), dx, pre1.detach()]
        else:
            with torch.no_grad():
                holder[:] = [block(x, w1, w2, affine)[0]]

    tolerance = common.LAYERED_TOLERANCE[dtype]
    reference = f"float64 block (im2col convolution) on {device}, first image"

    def verify() -> Check:
        import torch

        # Image 0's output and input gradient depend on image 0 alone (BN is in inference form).
        weights64 = (w1.detach().double(), w2.detach().double(), tuple(a.double() for a in affine))
        out64, _ = block(x.detach()[:1].double(), *weights64, conv=conv3x3_im2col)
        checks = [common.check_close(holder[0][:1], out64, tolerance, reference, "output: ")]
        if backward:
            assert grad_out is not None
            masks = ((holder[2][:1] > 0).double(), (holder[0][:1] > 0).double())
            x64 = x.detach()[:1].double().requires_grad_(True)
            masked_out64, _ = block(x64, *weights64, masks=masks, conv=conv3x3_im2col)
            (dx64,) = torch.autograd.grad(masked_out64, (x64,), grad_out[:1].double())
            checks.append(common.check_close(holder[1][:1], dx64, tolerance, reference, "input gradient: "))
        return common.combine(checks)

    fwd_flops = 2 * (2.0 * batch * channels * channels * 9 * hw * hw)
    return Workload(
        case=f"{dtype} {layout} {'fwd+bwd' if backward else 'fwd'} n{batch} c{channels} {hw}x{hw}",
        params={
            "dtype": dtype,
            "layout": layout,
            "batch": batch,
            "channels": channels,
            "hw": hw,
            "backward": backward,
            "cudnn_benchmark": dev.is_cuda,
        },
        step=step,
        verify=verify,
        work_per_step=fwd_flops * (3 if backward else 1),
        work_unit="flop",
        peak_key=dtype,
        images_per_step=batch,
    )


def _plans(dev: DeviceInfo, opts: Options, backward: bool) -> list[Plan]:
    batch, channels, hw = GPU_SHAPE if dev.is_cuda else (CPU_SHAPE_QUICK if opts.quick else CPU_SHAPE)
    plans = []
    for dtype in conv_dtypes(dev, opts):
        for layout in LAYOUTS:

            def build(scale: float, dtype: str = dtype, layout: str = layout) -> Workload:
                return build_block(dev, dtype, layout, backward, max(1, int(batch * scale)), channels, hw)

            plans.append(Plan(f"{dtype} {layout}", dtype, build))
    return plans


@benchmark("conv.fwd", "conv block forward")
def conv_fwd(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """ResNet basic block (two 3×3 convs) forward, NCHW and channels-last, cuDNN autotuned: TFLOP/s and images/s."""
    return _plans(dev, opts, backward=False)


@benchmark("conv.fwd_bwd", "conv block forward+backward")
def conv_fwd_bwd(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """ResNet basic block forward+backward (input and weight gradients), both layouts: TFLOP/s and images/s."""
    return _plans(dev, opts, backward=True)
