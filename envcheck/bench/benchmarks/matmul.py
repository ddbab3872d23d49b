"""Dense matrix multiplication: the figure a datasheet's "Tensor Core TFLOPS" promises.

Each dtype is its own benchmark id so that ``--only matmul.bf16`` and ``--compare`` can name it. The
square size is large enough to keep every SM busy (8192 on a GPU, as in NVIDIA's own cuBLAS figures)
and shrinks to fit the free memory. ``matmul.sweep`` measures a few shapes and reports the best, after
ml-engineering's mamf-finder ("maximum achievable matmul FLOPS"): the realistic ceiling to hold
training MFU against. Matmul at these sizes is compute bound, so L2 reuse of the inputs does not
inflate the figure and inputs need not rotate.

Correctness: after timing, one random row in every band of 64 rows of the very output buffer the timed kernel wrote is
compared with float64 products of the same (already rounded) inputs, computed on the same device, and
the column sums of the whole output are compared with the float64 product of A's column sums and B.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envcheck.bench import common
from envcheck.bench.model import Check, Options, Plan, Unsupported, Workload, benchmark
from envcheck.core.model import first_line
from envcheck.devices.model import DeviceInfo

if TYPE_CHECKING:
    import torch

#: One random row of every band this tall is checked against float64: GEMM kernels compute the output in
#: tiles at least 64 rows tall, so a tile damaged by a faulty SM always contains a checked row.
CHECK_BAND = 64


def dtype_support(dev: DeviceInfo, dtype: str) -> str | None:
    """Why ``dtype`` matmul cannot run on ``dev`` (None when it can), from the card alone: planning runs
    where torch is not imported (the bench's parent); whether this torch build has fp8 matmul is asked
    when the case is built (:func:`fp8_missing`)."""
    cc = dev.capability or (0, 0)
    if not dev.is_cuda:
        if dtype in ("tf32", "fp8"):
            return f"{dtype} is a GPU tensor-core format"
        if dtype == "fp16":
            return "torch has no optimised fp16 matmul on CPU (its fallback measures nothing useful)"
        return None
    if dtype in ("tf32", "bf16") and cc < (8, 0):
        return f"{dtype} tensor cores need compute capability 8.0 (Ampere) or newer; this card is {cc[0]}.{cc[1]}"
    if dtype == "fp8":
        if cc < (8, 9):
            return f"fp8 tensor cores need compute capability 8.9 (Ada/Hopper) or newer; this card is {cc[0]}.{cc[1]}"
    return None


def fp8_missing() -> str | None:
    """Why this torch build cannot run an fp8 matmul (None when it can)."""
    import torch

    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return f"torch {torch.__version__} has no fp8 matmul (torch._scaled_mm)"
    return None


#: Bytes per element of A and B, and of C (fp8 writes a bf16 output).
INPUT_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
OUTPUT_BYTES = {**INPUT_BYTES, "fp8": 2}
#: Columns of B the float64 check converts at a time (see :func:`rows_reference`).
CHECK_CHUNK = 2048


def fits(dev: DeviceInfo, dtype: str, m: int, n: int, k: int) -> bool:
    """Whether A, B, C and the check's float64 column block of B take at most half the memory this
    process may still allocate on ``dev`` (free GPU memory; on a CPU, RAM within the cgroup's limit).
    Where that is unknown the standard sizes are tried, and an out-of-memory error shrinks them."""
    if dev.free_bytes is None:
        return True
    need = (m * k + k * n) * INPUT_BYTES[dtype] + m * n * OUTPUT_BYTES[dtype] + k * CHECK_CHUNK * 8
    return need <= 0.5 * dev.free_bytes


#: (largest, smallest) square size per device kind and --quick.
SQUARE_SIZES = {("cuda", False): (8192, 1024), ("cuda", True): (8192, 1024), ("cpu", False): (1024, 256),
                ("cpu", True): (512, 256)}  # fmt: skip


def square_size(dev: DeviceInfo, dtype: str, quick: bool) -> int:
    """The largest standard size that :func:`fits`, halving from 8192 (GPU) or 1024 (CPU; 512 --quick)."""
    n, smallest = SQUARE_SIZES[(dev.kind, quick)]
    while n > smallest and not fits(dev, dtype, n, n, n):
        n //= 2
    return n


def scaled(n: int, scale: float, multiple: int = 256) -> int:
    """``n`` shrunk by ``scale`` after an out-of-memory error, kept a multiple of the tile size."""
    return max(multiple, int(n * scale) // multiple * multiple)


def rows_reference(a_rows: torch.Tensor, b: torch.Tensor, chunk: int = CHECK_CHUNK) -> torch.Tensor:
    """float64 ``a_rows @ b``, converting ``b`` one column block at a time to bound the extra memory."""
    import torch

    a64 = a_rows.to(torch.float32).to(torch.float64)
    cols = [a64 @ b[:, j : j + chunk].to(torch.float32).to(torch.float64) for j in range(0, b.shape[1], chunk)]
    return torch.cat(cols, dim=1)


def column_sums(t: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``1ᵀ t`` in float64 as a 1×n row, converting ``chunk`` rows at a time to bound the extra memory."""
    import torch

    total = torch.zeros((1, t.shape[1]), dtype=torch.float64, device=t.device)
    for i in range(0, t.shape[0], chunk):
        total += t[i : i + chunk].to(torch.float32).to(torch.float64).sum(dim=0, keepdim=True)
    return total


def probe_scaled_mm(device: str) -> None:
    """Try fp8 ``_scaled_mm`` on a 16×16 problem: some torch builds lack it for some cards, which only
    a call reveals. "Not supported" becomes :class:`Unsupported`; any other error is the card's."""
    import torch

    one = torch.ones((), dtype=torch.float32, device=device)
    x = torch.zeros((16, 16), device=device).to(torch.float8_e4m3fn)
    try:
        torch._scaled_mm(x, x.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    except (RuntimeError, NotImplementedError) as exc:
        text = first_line(exc)
        if "support" in text.lower() or isinstance(exc, NotImplementedError):
            raise Unsupported(f"fp8 matmul (torch._scaled_mm) is not available here: {text}") from None
        raise


def build_matmul(dev: DeviceInfo, dtype: str, m: int, n: int, k: int, seed_label: str) -> Workload:
    """Allocate ``A (m×k) @ B (k×n)`` in ``dtype`` and return the timed step plus its check."""
    import torch

    device = dev.torch_device
    gen = common.generator(device, common.case_seed("matmul", seed_label, m, n, k))
    tdt = common.torch_dtype(dtype)
    offsets = torch.randint(
        0, CHECK_BAND, ((m + CHECK_BAND - 1) // CHECK_BAND,), generator=torch.Generator().manual_seed(k)
    )
    rows = (torch.arange(0, m, CHECK_BAND) + offsets).clamp(max=m - 1)
    params = {"m": m, "n": n, "k": k, "dtype": dtype}
    reference = f"float64 matmul of the same inputs on {device} (a random row per {CHECK_BAND}, all column sums)"
    if dtype == "fp8":
        probe_scaled_mm(device)
        a = common.randn((m, k), tdt, device, gen)
        b_t = common.randn((n, k), tdt, device, gen)  # _scaled_mm wants B column-major: (n×k) transposed
        b = b_t.t()
        one = torch.ones((), dtype=torch.float32, device=device)
        holder: list[torch.Tensor] = []

        def step() -> None:
            out = torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            holder[:] = [out[0] if isinstance(out, tuple) else out]  # torch < 2.4 returned (out, amax)

        def output() -> torch.Tensor:
            return holder[0]

        params["out_dtype"] = "bf16"
    else:
        a = common.randn((m, k), tdt, device, gen)
        b = common.randn((k, n), tdt, device, gen)
        c = common.empty((m, n), tdt, device)

        def step() -> None:
            torch.matmul(a, b, out=c)  # the runner has set TF32 on or off for this case

        def output() -> torch.Tensor:
            return c

    def verify() -> Check:
        out = output()
        idx = rows.to(device)
        ref_rows = rows_reference(common.take_rows(a, idx), b)
        # Column checksums (ABFT, Huang & Abraham 1984): 1ᵀC must equal (1ᵀA)B, which sees every element
        # of C, so damage outside the sampled rows (or a NaN anywhere) is still caught.
        ref_sums = rows_reference(column_sums(a), b)
        tol = common.TOLERANCE[dtype]
        return common.combine(
            [
                common.check_close(common.take_rows(out, idx), ref_rows, tol, reference, "sampled rows: "),
                common.check_close(column_sums(out), ref_sums, tol, reference, "column checksums: "),
            ]
        )

    return Workload(
        case=f"{dtype} {common.fmt_shape(m, n, k)}",
        params=params,
        step=step,
        verify=verify,
        work_per_step=2.0 * m * n * k,
        work_unit="flop",
        peak_key=dtype,
    )


def _square_plan(dev: DeviceInfo, opts: Options, dtype: str) -> list[Plan]:
    if not opts.wants(dtype):
        return []
    reason = dtype_support(dev, dtype)
    if reason:
        return [Plan(dtype, dtype, skip=reason)]
    n = square_size(dev, dtype, opts.quick)

    def build(scale: float) -> Workload:
        missing = fp8_missing() if dtype == "fp8" else None
        if missing:
            raise Unsupported(missing)
        size = scaled(n, scale)
        return build_matmul(dev, dtype, size, size, size, dtype)

    return [Plan(dtype, dtype, build)]


@benchmark("matmul.fp32", "matmul fp32")
def matmul_fp32(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Square fp32 matmul with TF32 off (true IEEE fp32 FMA throughput)."""
    return _square_plan(dev, opts, "fp32")


@benchmark("matmul.tf32", "matmul tf32")
def matmul_tf32(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Square fp32 matmul on TF32 tensor cores (GPU, Ampere or newer)."""
    return _square_plan(dev, opts, "tf32")


@benchmark("matmul.bf16", "matmul bf16")
def matmul_bf16(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Square bf16 matmul, fp32 accumulation (the training workhorse)."""
    return _square_plan(dev, opts, "bf16")


@benchmark("matmul.fp16", "matmul fp16")
def matmul_fp16(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Square fp16 matmul, fp32 accumulation (GPU)."""
    return _square_plan(dev, opts, "fp16")


@benchmark("matmul.fp8", "matmul fp8")
def matmul_fp8(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Square fp8 (e4m3) matmul via torch._scaled_mm, bf16 output (GPU, compute capability 8.9+)."""
    return _square_plan(dev, opts, "fp8")


#: Shapes (m, n, k) of the sweep. The GPU set spans the sizes where cuBLAS picks different tilings,
#: including non-square ones that training layers produce; --quick keeps three.
GPU_SWEEP = [
    (4096, 4096, 4096),
    (6144, 6144, 6144),
    (8192, 8192, 8192),
    (10240, 10240, 10240),
    (12288, 12288, 12288),
    (16384, 16384, 16384),
    (8192, 8192, 4096),
    (4096, 16384, 8192),
    (16384, 4096, 8192),
    (8192, 8192, 16384),
    (12288, 12288, 4096),
    (16384, 16384, 8192),
]
GPU_SWEEP_QUICK = [(4096, 4096, 4096), (8192, 8192, 8192), (8192, 8192, 4096)]
CPU_SWEEP = [(256, 256, 256), (512, 512, 512), (768, 768, 768), (1024, 1024, 1024), (1024, 1024, 512)]
CPU_SWEEP_QUICK = [(256, 256, 256), (512, 512, 512)]


def sweep_dtype(dev: DeviceInfo) -> str:
    """bf16 where tensor cores support it (the dtype MAMF is usually quoted in), fp16 before, fp32 on CPU."""
    if not dev.is_cuda:
        return "fp32"
    return "bf16" if (dev.capability or (0, 0)) >= (8, 0) else "fp16"


@benchmark("matmul.sweep", "matmul best of a shape sweep", best_of=True)
def matmul_sweep(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Best matmul throughput over a small shape sweep (maximum achievable matmul FLOPS, cf. mamf-finder)."""
    dtype = sweep_dtype(dev)
    if not opts.wants(dtype):
        return []
    if dev.is_cuda:
        shapes = GPU_SWEEP_QUICK if opts.quick else GPU_SWEEP
    else:
        shapes = CPU_SWEEP_QUICK if opts.quick else CPU_SWEEP
    shapes = [s for s in shapes if fits(dev, dtype, *s)] or shapes[:1]
    plans = []
    for m, n, k in shapes:

        def build(scale: float, m: int = m, n: int = n, k: int = k) -> Workload:
            return build_matmul(dev, dtype, scaled(m, scale), scaled(n, scale), scaled(k, scale), "sweep")

        plans.append(Plan(f"{dtype} {common.fmt_shape(m, n, k)}", dtype, build))
    return plans
