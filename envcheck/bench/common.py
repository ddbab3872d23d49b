"""Helpers every benchmark shares: dtypes, the allocation funnel, precision modes, and the answer check.

All large allocations go through :func:`randn` / :func:`empty` so that the out-of-memory path can be
tested by failing this one funnel (the lowest boundary envcheck owns), and so that inputs are always
fresh random numbers drawn from a per-case seed, never zeros: a matmul of zeros is fast on some
hardware and proves nothing about correctness.
"""

from __future__ import annotations

import math
import warnings
import zlib
from typing import TYPE_CHECKING, Any

from envcheck.bench.model import Check
from envcheck.devices.model import DeviceInfo

if TYPE_CHECKING:
    import torch

#: Tolerance of the answer check, per dtype, as ``max|out - ref| / max|ref|``.
#: fp32 holds to ~1e-5 (accumulation error only); bf16 and fp16 round the output to 8 and 11 bits, so
#: ~1e-2 leaves room for that rounding and nothing else. tf32 rounds the *inputs* inside the kernel
#: (10-bit mantissa): with round-to-nearest the error is ~3e-4, but tensor cores may truncate instead,
#: which biases every product by ~7e-4, so 2e-3 is the tightest bound that never fails a healthy card.
#: fp8 is checked against its own (already quantised) inputs, so only accumulation and the bf16 output
#: rounding remain. Wrong kernels produce errors of order 1, far above all of these.
TOLERANCE = {"fp32": 1e-5, "tf32": 2e-3, "bf16": 1e-2, "fp16": 1e-2, "fp8": 1e-2}

#: Reductions through several layers (conv block, attention backward) compound rounding once per layer.
LAYERED_TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "bf16": 3e-2, "fp16": 3e-2}


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {
        "fp32": torch.float32,
        "tf32": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
        "fp8": torch.float8_e4m3fn,
    }[name]


def case_seed(*parts: object) -> int:
    """A stable seed per case: inputs differ between cases but are reproducible run to run."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def generator(device: str, seed: int) -> torch.Generator:
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _allocate(shape: tuple[int, ...], dtype: torch.dtype, device: str, gen: torch.Generator | None) -> torch.Tensor:
    """The one place big benchmark tensors are created (tests replace it to simulate an allocator failure)."""
    import torch

    if gen is None:
        return torch.empty(shape, dtype=dtype, device=device)
    if dtype.is_floating_point and dtype.itemsize >= 2:
        return torch.randn(shape, dtype=dtype, device=device, generator=gen)
    # fp8 and integer types have no randn: draw in fp32, then convert.
    return torch.randn(shape, dtype=torch.float32, device=device, generator=gen).to(dtype)


def randn(shape: tuple[int, ...], dtype: torch.dtype, device: str, gen: torch.Generator) -> torch.Tensor:
    """Fresh standard-normal numbers (never zeros) through the allocation funnel."""
    return _allocate(shape, dtype, device, gen)


def empty(shape: tuple[int, ...], dtype: torch.dtype, device: str) -> torch.Tensor:
    """An output buffer through the allocation funnel; it is filled by the step under test."""
    return _allocate(shape, dtype, device, None)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError and the CPU allocator's failure, which are plain RuntimeErrors."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError)
    )


def set_torch_flags(*, tf32: bool) -> None:
    """Set torch's process-wide math flags for the cases that follow: fp32 math as true fp32 (``tf32``
    False) or on TF32 tensor cores (True), and cuDNN's benchmark mode on (it picks the fastest algorithm
    during warm-up).

    torch's defaults differ between matmul (TF32 off) and cuDNN convolutions (TF32 on), so a figure called
    "fp32" must set both explicitly. The flags are global to the process, so they are set by the process
    that runs the cases (a bench worker, envcheck.bench.execute), once per group of cases that need the
    same state, never flipped around each case.
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch deprecates allow_tf32 in favour of fp32_precision
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def check_close(out: torch.Tensor, ref: torch.Tensor, tolerance: float, reference: str, what: str = "") -> Check:
    """Hold ``out`` to ``ref`` with ``max|out - ref| / max|ref|``; a NaN or Inf anywhere never passes.

    The maximum (not a norm) is taken so that one corrupted tile of an otherwise good result is still
    caught: a faulty SM or a bad memory cell damages a few elements, not the whole matrix.
    """
    import torch

    out64 = out.detach().to(device=ref.device, dtype=torch.float64)
    finite = bool(torch.isfinite(out64).all())
    if not finite:
        bad = int((~torch.isfinite(out64)).sum())
        return Check(False, math.nan, tolerance, reference, f"{what}{bad} non-finite values (NaN/Inf) in the output")
    scale = float(ref.abs().max())
    error = float((out64 - ref).abs().max()) / (scale if scale > 0 else 1.0)
    detail = f"{what}max |error| / max |reference| = {error:.2e} (tolerance {tolerance:.0e})"
    return Check(error <= tolerance, error, tolerance, reference, detail)


def combine(checks: list[Check]) -> Check:
    """One verdict from several (output and gradients): the worst error decides."""
    failed = [c for c in checks if not c.passed]
    worst = failed[0] if failed else max(checks, key=lambda c: c.error)
    return Check(not failed, worst.error, worst.tolerance, worst.reference, "; ".join(c.detail for c in checks))


def take_rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t[idx]`` for every dtype: fp8 has no index kernels in older torch, so go through its bytes."""
    import torch

    if t.dtype.itemsize == 1 and t.dtype.is_floating_point:
        return t.view(torch.uint8).index_select(0, idx).view(t.dtype)
    return t.index_select(0, idx)


def synchronize(dev: DeviceInfo) -> None:
    """Wait for ``dev``'s queued work (a no-op on the CPU, whose torch ops are synchronous)."""
    import torch

    if dev.is_cuda:
        torch.cuda.synchronize(dev.torch_device)


def fmt_shape(*dims: Any) -> str:
    return "x".join(str(d) for d in dims)
