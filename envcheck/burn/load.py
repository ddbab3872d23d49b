"""The load a burn worker puts on its device: matmuls that keep it busy, and the check that they stay right.

Imported only in a burn worker (envcheck.burn.worker), never in the parent: it imports torch.

The working set follows gpu-burn: two fixed input matrices and as many output matrices as fit in most of the
*free* memory, written one after another (``C_k = A @ B``), so the whole of that memory is read and written
under load, not only the tensor cores. Every :data:`~envcheck.burn.plan.CHECK_EVERY_S` (and once at the end)
the worker recomputes the fixed product and compares it, and every output written since the last check, with
the first result it computed: each of them is the same product of the same inputs.

Why the comparison is bit for bit on a GPU. cuBLAS documents that its routines give bit-wise identical
results from run to run on GPUs of the same architecture and SM count under one toolkit version; the
exceptions are several streams sharing a workspace and split-K reductions finished with atomics, which a
plain GEMM on one stream does not use (cuBLAS chooses its algorithm from the shapes, dtypes and alignment,
all the same here: the caching allocator aligns every buffer alike). So a single differing bit is the GPU's
fault, which is what a burn-in looks for. Should a future library make a GEMM nondeterministic, a healthy GPU
would show mismatches on *every* check, on every card alike; a faulty one shows them now and then, on one.
On the CPU the BLAS library may split the reduction differently from one call to the next (its thread
count, its buffers' alignment), so there results are compared within :data:`TOLERANCE`, a few units in the
last place of the dtype, scaled by the largest value of the product.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

GIB = 1 << 30
#: Free memory the worker leaves alone: the larger of this share of it and :data:`MARGIN_BYTES`. Another
#: process on the GPU (a monitoring agent, a co-tenant whose allocation grows, the CUDA context's own
#: lazily loaded kernels and cuBLAS's workspace in this one) must be able to allocate a little more without
#: failing: the burn tests the GPU, it must not be what makes someone else run out of memory. gpu-burn
#: takes 90 % of free memory by default; the floor covers small cards, where 10 % is less than a workspace.
MARGIN_SHARE = 0.10
MARGIN_BYTES = 2 * GIB
#: The matmul's n on a GPU: 8192³ is large enough to run the tensor cores at their full rate (a few ms per
#: product in bf16 on an H100) and small enough to check often.
GPU_SIZE = 8192
#: The smallest n a GPU burn shrinks to when free memory is short.
MIN_GPU_SIZE = 1024
#: On the CPU: small, so the machinery (workers, sampling, checks) runs in seconds on a CI runner; a CPU
#: burn tests envcheck, not the CPU.
CPU_SIZE = 256
CPU_BUFFERS = 4
#: The matrices that are not outputs: A, B, the reference and the recompute's own buffer.
FIXED_MATRICES = 4
#: Relative tolerance of a comparison that is not bit for bit (the CPU): a few units in the last place of
#: each dtype (fp32 2^-23, TF32 2^-10, bf16 2^-7, fp16 2^-10), times the largest magnitude of the product.
TOLERANCE = {"fp32": 1e-5, "tf32": 1e-2, "bf16": 5e-2, "fp16": 1e-2}
#: A batch of matmuls between two synchronisations: long enough that the sync costs nothing, short enough
#: that the duration and a stop are honoured within a fraction of a second.
BATCH_S = 0.2

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32, "fp32": torch.float32}


def usable_bytes(free_bytes: int) -> int:
    """What the working set may take of ``free_bytes``: all but the margin (see :data:`MARGIN_SHARE`)."""
    return max(0, free_bytes - max(int(free_bytes * MARGIN_SHARE), MARGIN_BYTES))


@dataclass(frozen=True)
class Shape:
    """The working set: n × n matrices of ``element_bytes`` each, ``buffers`` of them outputs."""

    n: int
    buffers: int
    element_bytes: int

    @property
    def matrix_bytes(self) -> int:
        return self.n * self.n * self.element_bytes

    @property
    def total_bytes(self) -> int:
        return (self.buffers + FIXED_MATRICES) * self.matrix_bytes

    @property
    def flops(self) -> int:
        """Floating-point operations of one product (a multiply and an add per term)."""
        return 2 * self.n**3


def plan_shape(*, cuda: bool, dtype: str, free_bytes: int | None, size: int | None = None) -> Shape:
    """The working set for a device with ``free_bytes`` free: on a GPU as many outputs as fit in
    :func:`usable_bytes`, the matrices halved until at least one output fits; on the CPU a small fixed set.
    Raises MemoryError when not even the smallest fits."""
    element = torch.tensor([], dtype=TORCH_DTYPES[dtype]).element_size()
    if not cuda:
        return Shape(size or CPU_SIZE, CPU_BUFFERS, element)
    n = size or GPU_SIZE
    usable = usable_bytes(free_bytes or 0)
    while True:
        buffers = usable // (n * n * element) - FIXED_MATRICES
        if buffers >= 1:
            return Shape(n, int(buffers), element)
        if size is not None or n // 2 < MIN_GPU_SIZE:
            need = (FIXED_MATRICES + 1) * n * n * element
            raise MemoryError(
                f"not enough free memory for a {n}x{n} working set ({need / GIB:.1f} GiB needed, "
                f"{usable / GIB:.1f} GiB usable of {(free_bytes or 0) / GIB:.1f} GiB free)"
            )
        n //= 2


@dataclass(frozen=True)
class Checked:
    """One check: how many results were compared with the reference, how many differed, by how much."""

    compared: int
    mismatched: int
    max_abs_diff: float


class Load:
    """The working set on one device and the two things done with it: :meth:`step` (one product into the
    next output) and :meth:`check` (recompute, and compare every output with the first result)."""

    def __init__(self, device: str, dtype: str, shape: Shape, *, seed: int = 0) -> None:
        self.device = device
        self.dtype = dtype
        self.shape = shape
        self.exact = device != "cpu"
        self.tolerance = None if self.exact else TOLERANCE[dtype]
        # TF32 is a process-wide flag: on for a tf32 burn, off otherwise (an fp32 burn is true fp32).
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        torch_dtype = TORCH_DTYPES[dtype]
        n = shape.n
        # The same inputs on every device (a CPU generator, one seed): every card computes the same product.
        generator = torch.Generator().manual_seed(seed)
        self.a = torch.randn(n, n, generator=generator).to(device=device, dtype=torch_dtype)
        self.b = torch.randn(n, n, generator=generator).to(device=device, dtype=torch_dtype)
        self.scratch = torch.empty(n, n, device=device, dtype=torch_dtype)
        self.outputs = [torch.empty(n, n, device=device, dtype=torch_dtype) for _ in range(shape.buffers)]
        self.reference = self.multiply(self.scratch).clone()
        self._scale = float(self.reference.abs().max()) if not self.exact else 0.0
        self.steps = 0
        self._next = 0
        self._written = 0

    def multiply(self, out: Any) -> Any:
        """The product every result is: ``A @ B`` into ``out``."""
        return torch.matmul(self.a, self.b, out=out)

    def step(self) -> None:
        """One product into the next output (they are written round and round)."""
        self.multiply(self.outputs[self._next])
        self._next = (self._next + 1) % len(self.outputs)
        self._written = min(self._written + 1, len(self.outputs))
        self.steps += 1

    def recompute(self) -> Any:
        """The fixed product again, computed now (what the check compares first)."""
        return self.multiply(self.scratch)

    def check(self) -> Checked:
        """Recompute the product and compare it, and every output written so far, with the first result."""
        results = [self.recompute(), *self.outputs[: self._written]]
        mismatched, worst = 0, 0.0
        for result in results:
            if self._same(result):
                continue
            mismatched += 1
            diff = (result.float() - self.reference.float()).abs().max()
            worst = max(worst, float(diff) if bool(torch.isfinite(diff)) else float("inf"))
        return Checked(len(results), mismatched, worst)

    def _same(self, result: Any) -> bool:
        if self.exact:
            return bool(torch.equal(result, self.reference))
        assert self.tolerance is not None
        return bool(torch.allclose(result, self.reference, rtol=self.tolerance, atol=self.tolerance * self._scale))

    def synchronize(self) -> None:
        if self.device != "cpu":
            torch.cuda.synchronize()

    def batch(self, count: int, until: float | None = None) -> tuple[float, int]:
        """Up to ``count`` products, finished: the seconds they took and how many ran. Past ``until`` (on
        ``time.monotonic()``) no product is started after the first: a batch is sized from the previous one's
        pace, and a machine that slows down meanwhile (other work taking the CPU) would otherwise carry the
        run past its duration by the whole batch, many times :data:`BATCH_S`."""
        started = time.perf_counter()
        done = 0
        while done < count and not (done and until is not None and time.monotonic() >= until):
            self.step()
            done += 1
        self.synchronize()
        return time.perf_counter() - started, done
