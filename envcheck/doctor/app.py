"""The doctor as one function every command calls: ``run_doctor(DoctorRequest) -> DoctorReport``.

Four commands run the doctor: ``doctor`` itself, ``healthcheck`` (envcheck.doctor.health, the quick
selection and the lab spec), the bench's preflight (two checks, over the bench's own torch child and NVML
reading, judging only the GPUs it will use) and ``snapshot`` (no check at all: the probes that describe
this machine). They differ only in the request, as flutter's ``Doctor`` is one object its commands share.

The report is frozen and complete: the check results and the probe data the document needs, captured
when the run ended. envcheck.doctor.report builds the envcheck.doctor/1 document from it alone, never
from the live :class:`~envcheck.doctor.runner.ProbeRunner`, whose probe threads may still be running.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from envcheck.core.model import CheckResult, Status, available, worst
from envcheck.core.probing import ProbeFailed, ProbeTimeout
from envcheck.core.registry import CheckSpec
from envcheck.doctor.areas import select_checks
from envcheck.doctor.runner import DEFAULT_DEADLINE_S, ProbeContext, ProbeRunner, probes_for, run_check

if TYPE_CHECKING:
    from envcheck.probes.nvml.inventory import GpuInfo

#: (probe name, what it is, seconds so far) of every probe still running: what a progress display shows.
Running = list[tuple[str, str, float]]
#: A live display the checks run inside: given a function that says which probes are still running, it
#: returns the context manager to run them in (the doctor's spinner on a terminal).
ProgressDisplay = Callable[[Callable[[], Running]], AbstractContextManager[Any]]

#: ``CUDA_VISIBLE_DEVICES`` (envcheck.probes.visible reads it; importing that module here would load it
#: on the healthcheck's path for nothing).
_VISIBLE = "CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class DoctorRequest:
    """What to judge, where and how long. Every field has the plain doctor's default."""

    #: Check ids or areas, run in report order; empty: every check (with ``quick``, every quick one);
    #: None: no check at all, only the ``probes`` named (how ``snapshot`` describes a machine).
    selection: tuple[str, ...] | None = ()
    #: The healthcheck's areas only (envcheck.doctor.areas.QUICK_AREAS): torch is never imported.
    quick: bool = False
    #: Flag-enabled checks (envcheck.doctor.areas.OPT_IN, ``--require-gpu``) added to the selection.
    opt_in: tuple[str, ...] = ()
    #: Checks run after the selection, in this order: a lab spec's (found by the CLI, which may read
    #: files and report a broken spec in its own words), or the bench's preflight list.
    extra: tuple[CheckSpec, ...] = ()
    #: Probes to run and capture in the report even where no check needs them (``snapshot``); a probe
    #: named here is waited for, and why it gave nothing is kept (:meth:`Probed.require`).
    probes: tuple[str, ...] = ()
    #: NVML identities (``GPU-...`` uuid or PCI bus id) of the only GPUs the checks judge; None: every GPU.
    #: The bench names the devices it will use, so another job on GPU 0 does not fail ``--device cuda:1``.
    gpus: frozenset[str] | None = None
    #: The environment the probes and checks see; None: this process's.
    env: Mapping[str, str] | None = None
    #: Seconds the whole run may take; a probe still running then is a verdict naming it.
    deadline_s: float = DEFAULT_DEADLINE_S
    progress: ProgressDisplay | None = None

    def checks(self) -> list[CheckSpec]:
        """The checks this request runs, in order; an unknown or unavailable name is
        :class:`~envcheck.core.registry.UnknownSelection`."""
        chosen = [] if self.selection is None else select_checks(self.selection, quick=self.quick, opt_in=self.opt_in)
        return chosen + list(self.extra)


@dataclass(frozen=True)
class Probed:
    """What the probes of one run gave, captured when it ended: the data of every probe that finished,
    and, for the probes a request named, why one gave nothing (it hung or raised)."""

    values: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    errors: Mapping[str, ProbeTimeout | ProbeFailed] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, name: str) -> Any:
        """The probe's data, or None where it was not run, had not finished, or failed."""
        return self.values.get(name)

    def require(self, name: str) -> Any:
        """The data of a probe the request named, or its :class:`ProbeTimeout` / :class:`ProbeFailed`."""
        if name in self.errors:
            raise self.errors[name]
        return self.values[name]


@dataclass(frozen=True)
class DoctorReport:
    """One finished run of the doctor: everything its document and its callers read."""

    results: tuple[CheckResult, ...]
    probed: Probed
    generated_at: datetime
    #: The checks' own time, probes included (not the process's start-up).
    duration_s: float
    deadline_s: float

    @property
    def status(self) -> Status:
        return worst([r.status for r in self.results])

    @property
    def gpus_seen(self) -> bool | None:
        """True/False when NVML answered the run, None when nothing asked it (then nothing is claimed
        about GPUs)."""
        nvml = self.probed.get("nvml")
        if nvml is None:
            return None
        return bool(nvml.available and nvml.gpus)


def run_doctor(request: DoctorRequest, *, runner: ProbeRunner | None = None) -> DoctorReport:
    """Start every probe the checks need at once, judge in order, and capture the probe data.

    ``runner`` hands in probes a caller already started (the bench's torch child and NVML reading), so
    nothing is probed twice; its environment and deadline then hold, not the request's. A check that
    hangs or crashes is a result of its own (envcheck.doctor.runner.run_check); an unknown selection
    raises UnknownSelection before anything starts."""
    from envcheck.core.report import utc_now

    specs = request.checks()
    env = runner.env if runner is not None else dict(os.environ if request.env is None else request.env)
    generated_at, started = utc_now(), time.monotonic()
    runner = runner or ProbeRunner(env, request.deadline_s, quick=request.quick)
    for name in dict.fromkeys([*probes_for(specs), *request.probes]):
        runner.start(name)
    ctx = ProbeContext(runner, env) if request.gpus is None else ChosenGpus(runner, env, request.gpus)
    display = request.progress(runner.running) if request.progress is not None else contextlib.nullcontext()
    with display:
        results = tuple(run_check(spec, ctx) for spec in specs)
    errors: dict[str, ProbeTimeout | ProbeFailed] = {}
    for name in request.probes:
        try:
            runner.get(name)
        except (ProbeTimeout, ProbeFailed) as exc:
            errors[name] = exc
    probed = Probed(MappingProxyType(runner.finished()), MappingProxyType(errors))
    return DoctorReport(results, probed, generated_at, time.monotonic() - started, runner.deadline_s)


@dataclass
class ChosenGpus(ProbeContext):
    """What the checks see when a request names its GPUs: NVML's list holds those GPUs only (each keeps
    its NVML index, so the words still name the right card).

    ``CUDA_VISIBLE_DEVICES`` is left out of the checks' environment: the chosen GPUs were resolved
    through it already, and read again over the narrowed list its indices would point at other cards."""

    gpus: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.env = {k: v for k, v in self.env.items() if k != _VISIBLE}

    def probe(self, name: str) -> Any:
        data = super().probe(name)
        if name == "nvml" and data.available:
            return replace(data, gpus=[g for g in data.gpus if self._chosen(g)])
        return data

    def _chosen(self, gpu: GpuInfo) -> bool:
        return any(available(v) and str(v) in self.gpus for v in (gpu.uuid, gpu.pci_bus_id))
