"""``torch.compile`` proven on each device: a small MLP compiled by Inductor, checked against eager, timed.

The doctor's ``compile`` checks (envcheck.doctor.checks.compile) say whether what Inductor and Triton need is
there: a compiler, the Python headers, libcuda for Triton's linker, cache directories that can hold and run
code. This benchmark is the proof: it compiles, and a compile that raises is this case's result, quoted, with
the fix of the doctor check that decides its cause (:data:`SIGNATURES`), never the end of the suite.

The model is the shape of a transformer's MLP block, three linear layers with GELU and LayerNorm between
them: the matmuls go to the same BLAS either way, and the GELU and LayerNorm are what Inductor fuses, so the
speed-up is the fusion's. A tiny model can be slower compiled on a CPU (the per-call guard overhead weighs
more than the fused elementwise work): the speed-up is reported, never judged. A compiled output that
disagrees with eager's is a wrong result.

What is reported, beside the figure (the compiled model's FLOP/s): ``compile_s``, the wall time of the first
compiled call (Dynamo's trace, Inductor's lowering and code generation, the C++ or Triton compiler, the
first run), apart from the steady state; ``speedup`` and ``baseline_stats``, eager timed under the same
budget (envcheck.bench.case); and where the compile's caches were (``cache``).

Caches. A first compile on a machine is a cold one, so that is what is measured: Inductor's and Triton's
caches go to a directory of this device's in the run's scratch directory (envcheck.bench.model.SCRATCH,
removed when the run ends, so nothing is left in the user's home or temp dir), unless the user set
``TORCHINDUCTOR_CACHE_DIR`` or ``TRITON_CACHE_DIR``: then the compile writes where the user's jobs do (the
directory is part of what is proven) and the result says so, since kernels compiled there before may be
reused. Inductor's FX graph cache and AOTAutograd's cache are off for the compile either way: a hit there
skips the lowering and code generation altogether, and would turn the figure into a cache read.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from envcheck.bench import common
from envcheck.bench.model import SCRATCH, Check, Options, Plan, Unsupported, Workload, benchmark
from envcheck.core.model import first_line
from envcheck.devices.model import DeviceInfo
from envcheck.doctor.signatures import SIGNATURES as ALL_SIGNATURES
from envcheck.doctor.signatures import Signature

if TYPE_CHECKING:
    import torch

#: (batch, width, hidden): a transformer MLP's proportions (hidden = 4 × width) on a GPU; a slice on a CPU.
GPU_SHAPE = (4096, 1024, 4096)
CPU_SHAPE = (64, 256, 1024)
CPU_SHAPE_QUICK = (32, 128, 512)

#: Seconds a compile case may take beyond every case's allowance: Inductor's first compile of this model took
#: 12-21 s on two shared cores (torch 2.13, CPU, measured), a slow or busy machine takes several times that,
#: and eager is timed too. A compile still running past it is taken for a hang.
COMPILE_SETUP_S = 240.0

#: The variables naming the caches a compile writes: Inductor's generated code and Triton's kernels.
CACHE_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")

#: The known errors whose cause a doctor check of the compile area decides (envcheck.doctor.signatures, the table
#: ``envcheck explain`` reads logs with): a failed compile is named by the first one its message matches.
SIGNATURES: tuple[Signature, ...] = tuple(s for s in ALL_SIGNATURES if any(c.startswith("compile.") for c in s.checks))
#: How much of the error a reason quotes: the whole reason is one line of at most 300 characters
#: (envcheck.core.model.first_line), and the fix after the quote must fit.
QUOTE_CHARS = 140

#: Lines of a compile error that carry no cause: torch's wrappers around the real one.
_NOISE = re.compile(r"^(backend=.* raised:|Set TORCHDYNAMO_VERBOSE|You can suppress this exception|$)")


class CompileFailed(RuntimeError):
    """torch.compile raised on this device: the message quotes the error and names the fix."""


def compile_dtypes(dev: DeviceInfo, opts: Options) -> list[str]:
    """bf16 on Ampere and newer (fp16 before) and fp32 on a CPU by default: what training compiles in."""
    if dev.is_cuda:
        cc = dev.capability or (0, 0)
        supported = ["fp32", "bf16", "fp16"] if cc >= (8, 0) else ["fp32", "fp16"]
        default = "bf16" if cc >= (8, 0) else "fp16"
    else:
        supported, default = ["fp32"], "fp32"
    return [d for d in supported if opts.wants(d, default=d == default)]


def make_model(width: int, hidden: int, seed: int) -> torch.nn.Module:
    """The MLP, with reproducible weights drawn on the CPU, leaving the caller's RNG state as it was."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, width),
        )


def explain(exc: BaseException) -> str:
    """A failed compile in one line: the line of the error (or of its causes) that says what went wrong, and
    the fix and id of the doctor check that decides it (or the doctor's compile area, when none matches)."""
    lines = []
    seen: BaseException | None = exc
    while seen is not None and len(lines) < 200:
        lines += [line.strip() for line in str(seen).splitlines()]
        seen = seen.__cause__ or seen.__context__
    lines = [line for line in lines if not _NOISE.match(line)]
    for signature in SIGNATURES:
        found = next((line for line in lines if any(p.search(line) for p in signature.patterns)), None)
        if found is not None:
            checks = " ".join(signature.checks)
            return f"torch.compile failed: {_quote(exc, found)}. {signature.title} (`envcheck doctor {checks}`)"
    return (
        f"torch.compile failed: {_quote(exc, lines[0] if lines else '')}. "
        "See what Inductor and Triton need here (`envcheck doctor compile`)"
    )


def _quote(exc: BaseException, line: str) -> str:
    said = f"{type(exc).__name__}: {line.rstrip('.')}" if line else type(exc).__name__
    return said if len(said) <= QUOTE_CHARS else said[: QUOTE_CHARS - 1] + "…"


def cache_dirs(dev: DeviceInfo, env: Mapping[str, str]) -> dict[str, str]:
    """Where each cache goes: the user's directory where one is set, else this device's in the run's scratch
    directory (in-process runs without a scratch directory get one of their own, removed at exit); and the
    temp dir, always there. Inductor keeps its precompiled headers in ``torchinductor_<user>`` of the temp dir
    whatever TORCHINDUCTOR_CACHE_DIR says ("global", ``torch/_inductor/codecache.py``, ``_HEADER_DIR``): a
    warm one would take seconds off the figure, and a cold compile would leave one behind in the user's
    temp dir."""
    scratch = os.path.join(env.get(SCRATCH) or _own_scratch(), re.sub(r"[^A-Za-z0-9_.-]", "_", dev.name))
    dirs = {name: env.get(name) or os.path.join(scratch, name.split("_")[0].lower()) for name in CACHE_VARIABLES}
    return {**dirs, "TMPDIR": os.path.join(scratch, "tmp")}


def _own_scratch() -> str:
    path = tempfile.mkdtemp(prefix="envcheck-bench-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@contextmanager
def compiling(dirs: Mapping[str, str]) -> Iterator[None]:
    """A cold compile into ``dirs``: the cache variables and the temp dir set for it (restored after; what
    Inductor made of them meanwhile keeps its paths, which the run's scratch directory holds until it ends),
    Dynamo's compiled code forgotten, and the FX graph and AOTAutograd caches off (a hit would skip the work
    being measured)."""
    import torch

    saved = {name: os.environ.get(name) for name in dirs}
    saved_tempdir = tempfile.tempdir
    os.makedirs(dirs["TMPDIR"], exist_ok=True)
    os.environ.update(dirs)
    tempfile.tempdir = dirs["TMPDIR"]  # gettempdir() has read TMPDIR once already, and kept what it found
    torch._dynamo.reset()
    try:
        with ExitStack() as stack:
            for config, flag in ((torch._inductor.config, "fx_graph_cache"),
                                 (torch._functorch.config, "enable_autograd_cache")):  # fmt: skip
                if hasattr(config, flag):  # both exist in every torch this benchmark knows; a newer may drop one
                    stack.enter_context(config.patch({flag: False}))
            yield
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_compile(dev: DeviceInfo, dtype: str, batch: int, width: int, hidden: int) -> Workload:
    import torch

    if not hasattr(torch, "compile"):
        raise Unsupported(f"torch {torch.__version__} has no torch.compile (it came in 2.0)")
    device = dev.torch_device
    tdt = common.torch_dtype(dtype)
    model = make_model(width, hidden, common.case_seed("compile", width, hidden)).to(device=device, dtype=tdt).eval()
    gen = common.generator(device, common.case_seed("compile", dtype, batch, width, hidden))
    x = common.randn((batch, width), tdt, device, gen)
    dirs = cache_dirs(dev, os.environ)
    yours = [name for name in CACHE_VARIABLES if os.environ.get(name)]
    holder: list[torch.Tensor] = []
    # torch.compile() itself may start Inductor's pool of compile workers, which keep the environment they
    # start with: the cache variables are set before it.
    with torch.no_grad(), compiling(dirs):
        try:
            compiled = torch.compile(model)
        except RuntimeError as exc:  # this torch cannot compile on this Python at all (Dynamo's own refusal)
            raise Unsupported(f"torch.compile is not available here: {first_line(exc)}") from None
        common.synchronize(dev)
        started = time.perf_counter()
        try:
            holder[:] = [compiled(x)]
            common.synchronize(dev)
        except Exception as exc:
            if common.is_out_of_memory(exc):
                raise
            raise CompileFailed(explain(exc)) from None
        compile_s = time.perf_counter() - started

    def step() -> None:
        with torch.no_grad():
            holder[:] = [compiled(x)]

    def eager() -> None:
        with torch.no_grad():
            model(x)

    tolerance = common.LAYERED_TOLERANCE[dtype]
    reference = f"eager {dtype} on {device}, same weights and input"

    def verify() -> Check:
        with torch.no_grad():
            want = model(x).double()
        return common.check_close(holder[0], want, tolerance, reference, "compiled vs eager: ")

    return Workload(
        case=f"{dtype} mlp b{batch} d{width} h{hidden}",
        params={
            "dtype": dtype,
            "batch": batch,
            "width": width,
            "hidden": hidden,
            "mode": "default",
            "backend": "inductor",
            "baseline": "eager",
        },
        step=step,
        verify=verify,
        work_per_step=2.0 * batch * (width * hidden + hidden * hidden + hidden * width),
        work_unit="flop",
        peak_key=None,  # a small MLP's share of a datasheet peak says nothing about the compiler
        notes={
            "compile_s": round(compile_s, 3),
            "cache": {
                **{name: dirs[name] if name in yours else "temporary" for name in CACHE_VARIABLES},
                "cold": not yours,
            },
        },
        baseline=eager,
    )


@benchmark("compile.mlp", "torch.compile of a small MLP", setup_s=COMPILE_SETUP_S)
def compile_mlp(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """A 3-layer MLP (GELU, LayerNorm) compiled by torch.compile (Inductor): compile time, speed-up over eager."""
    batch, width, hidden = GPU_SHAPE if dev.is_cuda else (CPU_SHAPE_QUICK if opts.quick else CPU_SHAPE)
    plans = []
    for dtype in compile_dtypes(dev, opts):

        def build(scale: float, dtype: str = dtype) -> Workload:
            return build_compile(dev, dtype, max(1, int(batch * scale)), width, hidden)

        plans.append(Plan(dtype, dtype, build))
    return plans
