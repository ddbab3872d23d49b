"""What ``envcheck bench`` does, as one function every caller shares: ``run_bench(request) -> BenchReport``.

The CLI (cli.py) parses options into a :class:`BenchRequest` and delivers the report; ``snapshot
--with-bench`` (envcheck.spec.bench) calls the same function and reads the same frozen report. Nothing
here prints: the report is turned into the envcheck.bench/1 document by report.py and rendered by the
registered renderers.

Order matters for the user's time and for isolation:

1. Everything that can be wrong with the *request* (an unknown benchmark, dtype or device string, a
   baseline or lab spec that cannot be used) is found by :meth:`BenchRequest.parse` before anything
   runs: one line, exit 2.
2. torch is imported first in a child process (the doctor's torch probe: bounded in time, in its own
   process group): a torch that raises, segfaults or hangs on import, or an environment variable that
   breaks it, is one line and exit 1, never a traceback or a hang. This process never imports torch.
3. Devices are resolved and described once into :class:`DeviceInfo` from the torch child's report and
   NVML (identity, memory; envcheck.devices.resolve.from_probes, with the readiness checks every command
   shares), and the preflight runs (the doctor's GPU checks, or how busy the CPUs are).
4. The suite: planned once into one job per device (envcheck.bench.plan: the description, the cases, the
   datasheet entry), each run by its own worker process pinned to its GPU, all at once or with ``serial``
   one after another (envcheck.bench.run, which merges their results in suite order); then the GPUs are
   compared with their siblings.
5. Each result becomes JSON once; the figures are held against the baseline and the lab spec. Every verdict is a
   :class:`~envcheck.core.model.Status`, and the exit code comes from the one policy in core.exit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from envcheck.bench import compare, model, peaks, run
from envcheck.bench.case import BenchResult, Progress, flag_slow_siblings
from envcheck.bench.compare import Delta
from envcheck.bench.model import DTYPES, BenchSpec, Options
from envcheck.bench.peaks import Peak
from envcheck.bench.plan import schedule
from envcheck.bench.run import WorkerInfo
from envcheck.core.errors import CommandError
from envcheck.core.exit import ExitCode, exit_code_for
from envcheck.core.model import CheckResult, Fix, Status
from envcheck.core.registry import UnknownSelection
from envcheck.devices import resolve
from envcheck.devices.model import DeviceInfo
from envcheck.probes import contention
from envcheck.probes.torch import TF32_CUBLAS_OVERRIDE, tf32_cublas_forced
from envcheck.probes.visible import VISIBLE

if TYPE_CHECKING:
    from envcheck.doctor.runner import ProbeRunner
    from envcheck.probes.torch import TorchInfo
    from envcheck.spec import LabSpec
    from envcheck.spec.bench import BenchVerdict


def split_list(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def select_specs(only: str | None) -> list[BenchSpec]:
    """``--only`` (ids or family names) as benchmarks in suite order; an unknown name is exit 2."""
    try:
        return model.select(split_list(only))
    except UnknownSelection as exc:
        raise CommandError(str(exc), ExitCode.USAGE) from None


def parse_dtypes(text: str | None) -> frozenset[str] | None:
    names = split_list(text)
    unknown = [n for n in names if n not in DTYPES]
    if unknown:
        raise CommandError(f"unknown dtype {unknown[0]!r}; choose from {', '.join(DTYPES)}", ExitCode.USAGE)
    return frozenset(names) or None


@dataclass(frozen=True)
class BenchRequest:
    """The bench's options, parsed and checked: what to run, where, and what to hold the figures against."""

    device: resolve.Request
    specs: tuple[BenchSpec, ...]
    device_text: str = "auto"
    only: tuple[str, ...] = ()
    dtypes: frozenset[str] | None = None
    quick: bool = False
    baseline: Mapping[str, Any] | None = None
    baseline_path: str | None = None
    threshold: float = compare.DEFAULT_THRESHOLD
    lab: LabSpec | None = None
    spec_path: str | None = None
    #: One device after another (one worker at a time), as envcheck 0.2 did, instead of all at once.
    serial: bool = False

    @classmethod
    def parse(
        cls,
        *,
        device: str = "auto",
        only: str | None = None,
        dtype: str | None = None,
        quick: bool = False,
        baseline_path: str | None = None,
        threshold: float = compare.DEFAULT_THRESHOLD,
        spec_path: str | None = None,
        serial: bool = False,
    ) -> BenchRequest:
        """Check every option before anything runs; a problem is a :class:`CommandError` with exit code 2."""
        from envcheck.spec import load_spec

        specs = select_specs(only)
        dtypes = parse_dtypes(dtype)
        if not 0 < threshold < 1:  # also refuses NaN, for which every comparison is false
            raise CommandError(f"--threshold must be between 0 and 1 (a fraction), not {threshold}", ExitCode.USAGE)
        request = resolve.parse(device)
        baseline = compare.load_baseline(baseline_path) if baseline_path else None
        lab = load_spec(spec_path) if spec_path else None
        return cls(
            request,
            tuple(specs),
            device,
            split_list(only),
            dtypes,
            quick,
            baseline,
            baseline_path,
            threshold,
            lab,
            spec_path,
            serial,
        )

    @property
    def benchmark_options(self) -> Options:
        return Options(quick=self.quick, dtypes=self.dtypes)

    def describe(self) -> dict[str, Any]:
        """The options as the report states them (the envcheck.bench/1 ``options`` object)."""
        return {
            "device": self.device_text,
            "only": list(self.only),
            "dtype": sorted(self.dtypes) if self.dtypes else None,
            "quick": self.quick,
            "threshold": self.threshold if self.baseline is not None else None,
            "spec": self.spec_path,
            "serial": self.serial,
        }


@dataclass(frozen=True)
class Comparison:
    """``--compare``: the deltas of every figure both runs have. ``note`` says why there are none."""

    baseline: str
    threshold: float
    deltas: tuple[Delta, ...]
    note: str | None = None

    def statuses(self) -> list[Status]:
        """A regression fails; so does a comparison that could compare nothing (a CI gate asked for one)."""
        return [Status.FAIL for d in self.deltas if d.regressed] + ([Status.FAIL] if self.note else [])


@dataclass(frozen=True)
class BenchReport:
    """Everything one bench run produced, in the order it is reported; renderers read its document."""

    request: BenchRequest
    devices: tuple[DeviceInfo, ...]
    results: tuple[BenchResult, ...]
    preflight: tuple[CheckResult, ...]
    comparison: Comparison | None
    spec_verdicts: tuple[BenchVerdict, ...] | None
    generated_at: datetime
    #: The whole run: the torch child, device resolution, preflight and suite.
    duration_s: float
    #: Preflight and suite only (the figure envcheck.bench/1 has always called ``wall_s``).
    wall_s: float
    planned: int
    interrupted: bool = False
    #: The signal that cut it short (``SIGTERM``), if one did (envcheck.core.stop).
    stopped_by: str | None = None
    container: str | None = None
    #: The torch build the figures came from, as the torch child read it.
    torch: TorchInfo | None = None
    #: How each device's worker process went.
    workers: tuple[WorkerInfo, ...] = ()
    #: Each result as the envcheck.bench/1 document states it, made once (None: from ``results``): the
    #: comparison, the lab spec's judge and the document all read these.
    figures: tuple[dict[str, Any], ...] = field(default=None)  # type: ignore[assignment]
    #: Each device's datasheet entry by its label, looked up once (None: from ``devices``): the workers
    #: figured their fractions of peak from the same entry.
    datasheets: Mapping[str, Peak | None] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.figures is None:
            object.__setattr__(self, "figures", tuple(r.to_json() for r in self.results))
        if self.datasheets is None:
            object.__setattr__(self, "datasheets", peaks.by_device(self.devices))

    def statuses(self) -> list[Status]:
        """Every verdict of the run: each case (a slow sibling fails), each preflight check, each
        regression, each figure below the lab spec's minimum."""
        return [
            *(r.verdict for r in self.results),
            *(c.status for c in self.preflight),
            *(self.comparison.statuses() if self.comparison else []),
            *(Status.FAIL for v in self.spec_verdicts or () if v.passed is False),
        ]

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self.statuses(), interrupted=self.interrupted, stopped_by=self.stopped_by)


def run_bench(
    request: BenchRequest, *, progress: Progress | None = None, env: Mapping[str, str] | None = None
) -> BenchReport:
    """Run the bench as ``request`` asks. A machine that cannot meet it raises :class:`CommandError` (one
    line, exit 1) before the first case; Ctrl-C during the suite returns what finished, marked
    ``interrupted``."""
    from envcheck.core import stop
    from envcheck.core.report import utc_now
    from envcheck.doctor.runner import ProbeRunner
    from envcheck.probes.host import read_container

    env = dict(os.environ if env is None else env)
    generated_at, started = utc_now(), time.monotonic()
    gpus_wanted = request.device.may_use_gpus
    # A CPU bench never starts CUDA, so its torch child need not either: hiding the GPUs from it keeps a
    # wedged driver from holding a CPU benchmark up for the child's whole time limit.
    probes = ProbeRunner(env if gpus_wanted else {**env, VISIBLE: ""}, resolve.PROBE_DEADLINE_S)
    chosen: list[DeviceInfo] = []
    torch_info: TorchInfo | None = None
    suite_started = time.monotonic()
    try:
        probes.start("torch")
        if gpus_wanted:
            probes.start("nvml")
        chosen, torch_info = resolve.from_probes(request.device, probes.get, env)
        if request.baseline is not None:
            ids, names = [s.id for s in request.specs], [d.name for d in chosen]
            try:
                compare.precheck(request.baseline, ids, names, path=str(request.baseline_path))
            except compare.BaselineError as exc:
                raise CommandError(str(exc), ExitCode.USAGE) from None
        suite_started = time.monotonic()
        cpus = None if all(d.is_cuda for d in chosen) else contention.Cpus.here()
        checks = preflight(probes, chosen, cpus) + tf32_overrides(env, chosen, request.benchmark_options)
        datasheets = peaks.by_device(chosen)
        jobs = schedule(list(request.specs), chosen, request.benchmark_options, env=env, datasheets=datasheets)
    except KeyboardInterrupt:  # Ctrl-C, or an orderly stop's first signal, before the first case
        stop.settle()
        return BenchReport(
            request=request,
            devices=tuple(chosen),
            results=(),
            preflight=(),
            comparison=None,
            spec_verdicts=None,
            generated_at=generated_at,
            duration_s=time.monotonic() - started,
            wall_s=time.monotonic() - suite_started,
            planned=0,
            interrupted=True,
            stopped_by=stop.stopped_by(True),
            container=read_container(env).kind,
            torch=torch_info,
        )
    suite = run.run(jobs, progress=progress, env=env, serial=request.serial)
    wall_s = time.monotonic() - suite_started
    results = tuple(flag_slow_siblings(suite.results))
    figures = tuple(r.to_json() for r in results)
    measured = {d.name: d for d in suite.devices}
    return BenchReport(
        request=request,
        devices=tuple(measured.get(d.name, d) for d in chosen),
        results=results,
        preflight=checks,
        comparison=_compare(request, figures),
        spec_verdicts=_judge(request, figures),
        generated_at=generated_at,
        duration_s=time.monotonic() - started,
        wall_s=wall_s,
        planned=suite.planned,
        interrupted=suite.interrupted,
        stopped_by=stop.stopped_by(suite.interrupted),
        container=read_container(env).kind,
        torch=torch_info,
        workers=tuple(suite.workers),
        figures=figures,
        datasheets=datasheets,
    )


def preflight(probes: ProbeRunner, chosen: list[DeviceInfo], cpus: contention.Cpus | None) -> tuple[CheckResult, ...]:
    """The doctor's GPU preconditions on the ``chosen`` GPUs only (over the same torch child and NVML
    reading the bench used: another job on GPU 0 is no reason to refuse ``--device cuda:1``), or for a
    CPU bench, how busy the CPUs already are. A chosen GPU NVML cannot name has every GPU judged rather
    than a guess."""
    if cpus is not None:
        return (contention.preflight(cpus),)
    from envcheck.doctor.app import DoctorRequest, run_doctor
    from envcheck.doctor.areas import CHECKS, PREFLIGHT

    CHECKS.load()
    named = [{i for i in (d.uuid, d.pci_bus_id) if i} for d in chosen]
    request = DoctorRequest(
        selection=None,
        extra=tuple(CHECKS[i] for i in PREFLIGHT),
        gpus=frozenset().union(*named) if named and all(named) else None,
    )
    return run_doctor(request, runner=probes).results


TF32_OVERRIDE_ID = "bench.tf32_override"


def tf32_overrides(env: Mapping[str, str], chosen: list[DeviceInfo], options: Options) -> tuple[CheckResult, ...]:
    """``bench.tf32_override``: a variable that changes what a GPU figure measures, said beside it. cuBLAS and
    cuDNN honour ``NVIDIA_TF32_OVERRIDE=0`` over any framework setting, so the tf32 cases run in plain fp32 (a
    fraction of the tf32 peak, from a healthy GPU); ``TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1`` makes the fp32 cases
    TF32 (a figure well above the fp32 peak). Neither is a fault of the card: a warning, with the variable."""
    if not any(d.is_cuda for d in chosen):
        return ()
    found = []
    if env.get("NVIDIA_TF32_OVERRIDE") == "0" and options.wants("tf32"):
        found.append(("NVIDIA_TF32_OVERRIDE=0", "the tf32 figures are plain fp32 (cuBLAS and cuDNN ignore TF32)"))
    if tf32_cublas_forced(env) and options.wants("fp32"):
        found.append((f"{TF32_CUBLAS_OVERRIDE}=1", "the fp32 matmul figures are TF32"))
    if not found:
        return ()
    names = " and ".join(name for name, _ in found)
    unset = " ".join(f"-u {name.split('=')[0]}" for name, _ in found)
    return (
        CheckResult(
            TF32_OVERRIDE_ID,
            "No variable overrides the precision measured",
            Status.WARN,
            "; ".join(f"{name} is set: {what}" for name, what in found),
            Fix(
                f"{names} change what cuBLAS computes, so these figures are not the card's for their precision. "
                f"To measure each precision as named, run without it: `env {unset} envcheck bench`. (Jobs run "
                "with it set get the precision it forces, too.)",
                f"env {unset} envcheck bench",
            ),
            {"variables": [name for name, _ in found]},
        ),
    )


def _compare(request: BenchRequest, figures: tuple[dict[str, Any], ...]) -> Comparison | None:
    if request.baseline is None:
        return None
    path = str(request.baseline_path)
    try:
        deltas = compare.compare(list(figures), request.baseline, request.threshold, path=path, quick=request.quick)
    except compare.BaselineError as exc:  # every shared figure was skipped or failed
        return Comparison(path, request.threshold, (), str(exc))
    return Comparison(path, request.threshold, tuple(deltas))


def _judge(request: BenchRequest, figures: tuple[dict[str, Any], ...]) -> tuple[BenchVerdict, ...] | None:
    if request.lab is None:
        return None
    from envcheck.spec.bench import judge_bench

    return tuple(judge_bench(request.lab, list(figures)))
