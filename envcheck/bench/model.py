"""The benchmark registry and the shapes every benchmark speaks in.

A benchmark (``matmul.bf16``, ``memory.d2d``) is registered where it is defined, with a function that
turns a device and the run's options into :class:`Plan` s. A plan is a case before any memory is
allocated; its ``build(scale)`` allocates and returns a :class:`Workload`: the step to time, the work
one step does (FLOPs, bytes or images), and how to check the step's answer against a reference. One case
(envcheck.bench.case) alone decides how to time, retry smaller after an out-of-memory error, and report.

Nothing here imports torch, so ``envcheck bench --list`` and ``envcheck --help`` stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.registry import Registry, UnknownSelection
from envcheck.devices.model import DeviceInfo

#: The dtypes ``--dtype`` accepts, in display order.
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")

#: A directory the run owns (created before its workers start, removed after they end, even one killed), for
#: what a benchmark writes: torch.compile's caches. Workers find it in this variable (envcheck.bench.run).
SCRATCH = "ENVCHECK_BENCH_SCRATCH"

#: What one step's work is counted in, and how the figure is shown on each kind of device.
WORK_UNITS = {"flop", "byte", "image"}


@dataclass(frozen=True)
class Options:
    """The run's options as benchmarks see them."""

    quick: bool = False
    dtypes: frozenset[str] | None = None  # None: each benchmark's defaults

    def wants(self, dtype: str, *, default: bool = True) -> bool:
        """Whether a case in ``dtype`` runs: named by ``--dtype``, or part of the default set."""
        return dtype in self.dtypes if self.dtypes is not None else default


@dataclass(frozen=True)
class Check:
    """The verdict of a correctness check: the error found, the tolerance it was held to, and against what."""

    passed: bool
    error: float
    tolerance: float
    reference: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        err = self.error if self.error == self.error and abs(self.error) != float("inf") else str(self.error)
        return {
            "passed": self.passed,
            "error": err,
            "tolerance": self.tolerance,
            "reference": self.reference,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        """Back from :meth:`to_json` (a non-finite error travels as its name: ``"nan"``, ``"inf"``)."""
        return cls(data["passed"], float(data["error"]), data["tolerance"], data["reference"], data.get("detail", ""))


@dataclass
class Workload:
    """One allocated case: what to time, how much work a step does, and how to check its answer.

    ``verify`` runs after timing and inspects what the timed step itself produced (the output buffer
    the kernel wrote), so a wrong kernel cannot pass by being checked through another code path.
    """

    case: str
    params: dict[str, Any]
    step: Callable[[], Any]
    verify: Callable[[], Check]
    work_per_step: float
    work_unit: str  # one of WORK_UNITS
    peak_key: str | None  # "bf16", "tf32", ..., "memory"; None when no datasheet peak applies
    images_per_step: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # found while running (e.g. the SDPA backend)
    #: The same work done the usual way (eager torch, for a compiled model), timed after ``step`` under the
    #: same budget: the result reports ``speedup``, its median time over the step's, and its raw samples.
    baseline: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        if self.work_unit not in WORK_UNITS:
            raise ValueError(f"unknown work unit {self.work_unit!r}")


class Unsupported(Exception):
    """Raised by ``build`` when this torch build or card turns out not to offer the operation at all
    (found only by trying it); the case is reported as skipped with the reason, not as a failure."""


@dataclass(frozen=True)
class Plan:
    """A case before allocation. ``build(scale)`` allocates at ``scale`` (1.0, then smaller after OOM).

    A plan with ``skip`` set is reported as skipped with that reason (fp8 on a card without fp8).
    ``label`` is stable across runs and devices: it is what tables and ``--compare`` line up on.
    """

    label: str
    dtype: str | None
    build: Callable[[float], Workload] | None = None
    skip: str | None = None


@dataclass(frozen=True)
class BenchSpec:
    """A registered benchmark. ``best_of``: measure every plan, report only the fastest (a shape sweep).
    ``setup_s``: seconds a case may take on top of every case's allowance before its worker is judged hung
    (envcheck.bench.plan.case_deadline), for work done once per case that no budget bounds: a compile.
    ``host_bound``: its figure depends on the host as much as on the GPU (the path to CPU memory, the CPU
    launching small kernels), so on a dual-socket node healthy GPUs differ by where their worker runs: it is
    not compared among sibling GPUs, whose workers are not pinned to their GPU's NUMA node."""

    id: str
    title: str
    measures: str
    plans: Callable[[DeviceInfo, Options], list[Plan]]
    best_of: bool = False
    host_bound: bool = False
    setup_s: float = 0.0

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]


#: Benchmark families in the order the suite runs and reports them.
FAMILIES = {
    "matmul": "Matrix multiply",
    "conv": "Convolution",
    "attention": "Attention",
    "train": "Training step",
    "compile": "torch.compile",
    "memory": "Memory bandwidth",
}

BENCHMARKS: Registry[BenchSpec] = Registry(
    "benchmark", FAMILIES, group_word="families", package="envcheck.bench.benchmarks"
)


def benchmark(
    bench_id: str, title: str, *, best_of: bool = False, host_bound: bool = False, setup_s: float = 0.0
) -> Callable[[Callable[[DeviceInfo, Options], list[Plan]]], Callable[[DeviceInfo, Options], list[Plan]]]:
    """Register a plan function under a stable dotted id; its docstring's first line is what ``--list`` shows."""

    def register(fn: Callable[[DeviceInfo, Options], list[Plan]]) -> Callable[[DeviceInfo, Options], list[Plan]]:
        measures = (fn.__doc__ or title).strip().splitlines()[0]
        BENCHMARKS.add(BenchSpec(bench_id, title, measures, fn, best_of, host_bound, setup_s))
        return fn

    return register


def select(names: list[str] | tuple[str, ...]) -> list[BenchSpec]:
    """Resolve ``--only`` (ids or family names) to benchmarks, in suite order."""
    try:
        return BENCHMARKS.select(names)
    except UnknownSelection as exc:
        raise UnknownSelection(f"{exc}; see `envcheck bench --list`") from None
