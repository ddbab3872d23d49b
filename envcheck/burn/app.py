"""What ``envcheck burn`` does, as one function: ``run_burn(request) -> BurnReport``. Nothing here prints
(the live display is a callback); the report becomes the envcheck.burn/1 document in report.py.

1. The request is checked before anything runs (:meth:`BurnRequest.parse`): one line, exit 2.
2. Devices are resolved as every command resolves them, without importing torch here (the doctor's torch
   child and NVML: envcheck.devices.resolve.from_probes); a CPU burn needs neither.
3. One :class:`~envcheck.probes.nvml.telemetry.Sampler` watches every chosen GPU (NVML, about once a second,
   one session) and the host, while one burn worker per device (envcheck.burn.worker, supervised by
   envcheck.core.workers.supervise) loads it. Each worker's throughput reports are stamped
   with ``time.monotonic()`` in the worker and put on the sampler's clock here (``since_start``), so a
   GPU's clocks and its throughput line up in one timeline.
4. At the duration the workers stop themselves; Ctrl-C or SIGTERM stops everything at once. Either way the
   timeline holds what ran, the verdicts (envcheck.burn.rules) judge it, and a worker that crashed, hung
   or was OOM-killed is its own device's ``burn.worker`` failure, the other devices kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from envcheck.burn import plan
from envcheck.burn.plan import BurnJob
from envcheck.burn.rules import Limits, Timeline, judge, summarize
from envcheck.core.errors import CommandError
from envcheck.core.exit import ExitCode, exit_code_for
from envcheck.core.model import CheckResult, Status, available, fail, ok
from envcheck.core.units import parse_duration
from envcheck.core.workers import JobChild, WorkerInfo, supervise, worker_infos
from envcheck.devices.model import DeviceInfo
from envcheck.devices.resolve import PROBE_DEADLINE_S, Request, cpu_here, from_probes, parse, pin, startup_deadline
from envcheck.probes.contention import Contention, Cpus, Sample, between, judged, load_average, sample
from envcheck.probes.nvml.telemetry import DeviceKey, Telemetry

if TYPE_CHECKING:
    from envcheck.probes.nvml.telemetry import Sampler
    from envcheck.probes.torch import TorchInfo
    from envcheck.spec import LabSpec
    from envcheck.spec.burn import BurnVerdict


@dataclass(frozen=True)
class BurnRequest:
    """The burn's options, parsed and checked."""

    device: Request
    duration_s: float
    device_text: str = "auto"
    #: None: bf16 on a GPU, fp32 on the CPU.
    dtype: str | None = None
    interval_s: float = 1.0
    check_every_s: float = plan.CHECK_EVERY_S
    #: Silence after which a loading worker is called hung (tests shorten it to see a hang end quickly).
    silence_s: float = plan.SILENCE_S
    lab: LabSpec | None = None
    spec_path: str | None = None
    #: The matmul's n (None: the worker's default for its device); for tests and small cards.
    size: int | None = None

    @classmethod
    def parse(
        cls,
        *,
        device: str = "auto",
        duration: str = plan.DEFAULT_DURATION,
        dtype: str | None = None,
        spec_path: str | None = None,
    ) -> BurnRequest:
        """Every option checked before anything runs; a problem is a :class:`CommandError` with exit code 2."""
        from envcheck.spec import load_spec

        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise CommandError(f"--duration {exc}", ExitCode.USAGE) from None
        if dtype is not None and dtype not in plan.DTYPES:
            raise CommandError(f"unknown dtype {dtype!r}; choose from {', '.join(plan.DTYPES)}", ExitCode.USAGE)
        request = parse(device)
        lab = load_spec(spec_path) if spec_path else None
        return cls(request, seconds, device, dtype, lab=lab, spec_path=spec_path)

    def dtype_for(self, dev: DeviceInfo) -> str:
        return self.dtype or (plan.DEFAULT_GPU_DTYPE if dev.is_cuda else plan.CPU_DTYPE)

    def describe(self) -> dict[str, Any]:
        """The options as the report states them."""
        return {
            "device": self.device_text,
            "dtype": self.dtype,
            "duration_s": self.duration_s,
            "interval_s": self.interval_s,
            "check_every_s": self.check_every_s,
            "spec": self.spec_path,
        }


# -- one device's worker, as the parent sees it ----------------------------------------------------------


@dataclass
class BurnChild(JobChild[BurnJob]):
    """A burn worker under supervision (envcheck.core.workers), and what it has said."""

    key: DeviceKey = "cpu"
    #: Called with (child, monotonic time, TFLOP/s) for each throughput report.
    on_point: Callable[[BurnChild, float, float], None] = lambda child, t, value: None
    shape: dict[str, Any] | None = None
    free_bytes: int | None = None
    load_started: float | None = None
    load_s: float | None = None
    last_value: float | None = None
    compared: int = 0
    mismatched: int = 0
    max_abs_diff: float | None = None
    limit: float = 0.0

    @classmethod
    def of(cls, job: BurnJob, key: DeviceKey, on_point: Callable[[BurnChild, float, float], None]) -> BurnChild:
        child = cls.for_job(job, "envcheck.burn.worker", key=key, on_point=on_point)
        child.limit = job.startup_s
        return child

    def on_event(self, event: dict[str, Any], now: float) -> None:
        super().on_event(event, now)
        kind = event.get("event")
        job = self.the_job
        if kind == "device":
            self.free_bytes = event.get("free_bytes")
        elif kind == "plan":
            self.shape = {k: v for k, v in event.items() if k != "event"}
        elif kind == "started":
            self.load_started = float(event["t"])
            self._due(now, job.silence_s)
        elif kind == "tick":
            self.last_value = float(event["value"])
            self._due(now, job.silence_s)
            self.on_point(self, float(event["t"]), self.last_value)
        elif kind == "check":
            self.compared += int(event["compared"])
            self.mismatched += int(event["mismatched"])
            if event.get("max_abs_diff") is not None and event["mismatched"]:
                self.max_abs_diff = max(self.max_abs_diff or 0.0, float(event["max_abs_diff"]))
            self._due(now, job.silence_s)
        elif kind == "done":
            self.load_s = float(event.get("load_s") or 0.0)
            self._due(now, plan.FINISH_S)
        elif kind == "stage":
            self._due(now, job.startup_s)

    def _due(self, now: float, seconds: float) -> None:
        """The next deadline: ``seconds`` from now, and never much past the end of the duration."""
        deadline = now + seconds
        if self.load_started is not None and self.load_s is None:
            end = self.load_started + self.the_job.duration_s + plan.FINISH_S
            deadline = min(deadline, max(end, now + 1.0))
        self.deadline = deadline
        self.limit = round(deadline - now, 1)

    def limit_s(self) -> float:
        return self.limit

    def doing(self) -> str:
        if self.load_started is not None:
            return "its last check" if self.load_s is not None else "the burn"
        device = self.the_job.device
        return {
            "describe": f"the start of CUDA on {device.name}" if device.is_cuda else "describing the CPU",
            "allocate": "allocating its working set",
        }.get(self.stage or "", super().doing())

    def loaded_s(self, now: float) -> float | None:
        """How long it has loaded its device (so far, or in all)."""
        if self.load_s is not None:
            return self.load_s
        if self.load_started is None:
            return None
        return max(0.0, (self.ended or now) - self.load_started)


# -- the run ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRun:
    """One device's burn, as the report needs it."""

    device: DeviceInfo
    key: DeviceKey
    dtype: str
    nvml_index: int | None
    shape: Mapping[str, Any] | None
    load_s: float | None
    compared: int
    mismatched: int
    max_abs_diff: float | None
    worker: WorkerInfo | None
    error: str | None


@dataclass(frozen=True)
class BurnReport:
    """Everything one burn produced."""

    request: BurnRequest
    runs: tuple[DeviceRun, ...]
    telemetry: Telemetry
    timeline: Timeline
    verdicts: tuple[CheckResult, ...]
    spec_verdicts: tuple[BurnVerdict, ...] | None
    generated_at: datetime
    duration_s: float
    interrupted: bool = False
    #: The signal that cut it short (``SIGTERM``), if one did (envcheck.core.stop).
    stopped_by: str | None = None
    container: str | None = None
    torch: TorchInfo | None = None
    limits: Limits = field(default_factory=Limits)
    #: Other processes' use of the CPUs over a burn with a CPU device (None: a GPU-only burn).
    contention: Contention | None = None

    def statuses(self) -> list[Status]:
        return [
            *(v.status for v in self.verdicts),
            *(Status.FAIL for v in self.spec_verdicts or () if v.passed is False),
        ]

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self.statuses(), interrupted=self.interrupted, stopped_by=self.stopped_by)


#: Called about four times a second while the workers run, with the children and the sampler (a live display).
Watch = Callable[[Sequence[BurnChild], "Sampler | None"], None]


def run_burn(
    request: BurnRequest,
    *,
    watch: Watch | None = None,
    env: Mapping[str, str] | None = None,
    chosen: Sequence[DeviceInfo] | None = None,
) -> BurnReport:
    """Burn the devices ``request`` asks for (or ``chosen``, already resolved: tests burn several CPU
    "devices" at once). A machine that cannot start raises :class:`CommandError`; Ctrl-C or SIGTERM at any
    point returns what ran, marked interrupted."""
    from envcheck.core import stop
    from envcheck.core.report import utc_now
    from envcheck.probes.host import read_container
    from envcheck.probes.nvml.session import shared
    from envcheck.probes.nvml.telemetry import Sampler

    env = dict(os.environ if env is None else env)
    generated_at, started = utc_now(), time.monotonic()
    torch_info: TorchInfo | None = None
    children: list[BurnChild] = []
    sampler: Sampler | None = None
    interrupted = False
    cpus: Cpus | None = None
    before: Sample | None = None
    busy: Contention | None = None
    began = time.monotonic()
    try:
        if chosen is None:
            chosen, torch_info = resolve(request, env)
        wanted = [d.uuid for d in chosen if d.is_cuda and d.uuid]
        # The nvml probe started NVML to tell who the GPUs are: the sampler reads through that session.
        sampler = Sampler(wanted, interval_s=request.interval_s, host=True, session=shared() if wanted else None)
        sampler.open()
        sampler.start()
        keys = _keys(chosen, sampler)
        active = sampler

        def on_point(child: BurnChild, t: float, value: float) -> None:
            active.record(child.key, value, active.since_start(t))

        children = [BurnChild.of(job, keys[job.device.name], on_point) for job in jobs_for(request, chosen, env)]
        if any(not d.is_cuda for d in chosen):
            # A CPU burn shares the cores with whatever else runs: its figure is only the CPU's when it had them.
            cpus = Cpus.here()
            before = sample(cpus, with_children=True)
        began = time.monotonic()
        interrupted = supervise(
            children,
            env=env,
            tick=(lambda: watch(children, active)) if watch is not None else lambda: None,
        )
    except KeyboardInterrupt:  # Ctrl-C, or an orderly stop's first signal, before the workers ran
        interrupted = True
    finally:
        stop.settle()
        if cpus is not None and before is not None:
            after = sample(cpus, with_children=True)
            busy = between(before, after, cpus, load_average())
        if sampler is not None:
            sampler.stop()
            sampler.close()
    unused = Telemetry(status="unused", interval_s=request.interval_s)
    telemetry = sampler.telemetry() if sampler is not None else unused
    return report_for(
        request,
        list(chosen or ()),
        children,
        telemetry,
        began=began,
        generated_at=generated_at,
        duration_s=time.monotonic() - started,
        interrupted=interrupted,
        stopped_by=stop.stopped_by(interrupted),
        container=read_container(env).kind,
        torch=torch_info,
        contention=busy,
    )


def resolve(request: BurnRequest, env: Mapping[str, str]) -> tuple[list[DeviceInfo], TorchInfo | None]:
    """The devices to burn, as every command resolves them (envcheck.devices.resolve.from_probes: the torch
    child and NVML, no torch here). A CPU burn asks neither (its worker imports torch and says so if it
    cannot)."""
    if not request.device.may_use_gpus:
        return [cpu_here()], None
    from envcheck.doctor.runner import ProbeRunner

    probes = ProbeRunner(env, PROBE_DEADLINE_S)
    probes.start("torch")
    probes.start("nvml")
    return from_probes(request.device, probes.get, env)


def jobs_for(request: BurnRequest, chosen: Sequence[DeviceInfo], env: Mapping[str, str]) -> list[BurnJob]:
    startup = workers_startup(env)
    return [
        BurnJob(
            dev,
            request.dtype_for(dev),
            request.duration_s,
            pin(dev, env),
            check_every_s=request.check_every_s,
            report_every_s=request.interval_s,
            startup_s=startup,
            silence_s=request.silence_s,
            size=request.size,
        )
        for dev in chosen
    ]


def workers_startup(env: Mapping[str, str]) -> float:
    """A worker's allowance for importing torch and starting CUDA, and a minute to allocate and fill the
    working set (most of a GPU's memory)."""
    return startup_deadline(env) + 60.0


def _keys(chosen: Sequence[DeviceInfo], sampler: Sampler) -> dict[str, DeviceKey]:
    """Each device's key in the timeline: a GPU the sampler watches is its NVML index (so its throughput lines
    up with its samples); anything else (the CPU, a GPU NVML cannot name) its own name."""
    by_uuid = {str(g.uuid): g.index for g in sampler.gpus if available(g.uuid)}
    return {d.name: by_uuid.get(d.uuid or "", d.name) if d.is_cuda else d.name for d in chosen}


def report_for(
    request: BurnRequest,
    chosen: list[DeviceInfo],
    children: list[BurnChild],
    telemetry: Telemetry,
    *,
    began: float,
    generated_at: datetime,
    duration_s: float,
    interrupted: bool,
    stopped_by: str | None = None,
    container: str | None = None,
    torch: TorchInfo | None = None,
    limits: Limits | None = None,
    contention: Contention | None = None,
) -> BurnReport:
    """Judge what ran: the timeline's verdicts, each worker's end, the CPU's contention, the lab spec."""
    limits = limits or Limits()
    by_name = {c.name: c for c in children}
    infos = {i.device: i for i in worker_infos(children, began, lambda c: why_failed(c, interrupted))}
    timeline = Timeline.from_telemetry(
        telemetry,
        mismatches={c.key: c.mismatched for c in children},
        checked={c.key: c.compared for c in children if c.compared},
        models={c.key: c.the_job.device.model for c in children},
    )
    verdicts = [*judge(timeline, limits), worker_verdict(children, interrupted=interrupted)]
    if contention is not None:
        verdicts.append(contention_verdict(contention))
    if request.lab is not None and request.lab.burn is not None and request.lab.burn.allow_throttle:
        verdicts = [_tolerated(v) if v.id == "burn.throttle" else v for v in verdicts]
    runs = []
    now = time.monotonic()
    for dev in chosen:
        child = by_name.get(dev.name)
        key = child.key if child is not None else dev.name
        runs.append(
            DeviceRun(
                dev,
                key,
                request.dtype_for(dev),
                key if isinstance(key, int) else None,
                child.shape if child else None,
                child.loaded_s(now) if child else None,
                child.compared if child else 0,
                child.mismatched if child else 0,
                child.max_abs_diff if child else None,
                infos.get(dev.name),
                why_failed(child, interrupted) if child else None,
            )
        )
    contended = [d.name for d in chosen if device_contended(d, contention)]
    spec_verdicts = _judge_spec(request, runs, timeline, verdicts, limits, interrupted, contended)
    return BurnReport(
        request,
        tuple(runs),
        telemetry,
        timeline,
        tuple(verdicts),
        spec_verdicts,
        generated_at,
        duration_s,
        interrupted,
        stopped_by,
        container,
        torch,
        limits,
        contention,
    )


CONTENTION_ID = "burn.contention"


def device_contended(dev: DeviceInfo, contention: Contention | None) -> bool | None:
    """Whether ``dev``'s figure was taken while other work held the CPUs: only a CPU shares its cores with
    it, so a GPU's figure is not judged by the host's CPU use (None), nor a run that did not sample it."""
    return None if dev.is_cuda or contention is None else contention.contended


def contention_verdict(found: Contention) -> CheckResult:
    """``burn.contention``: the CPU burn had the cores to itself. Other work taking a share of them makes its
    throughput the sharing's, not the CPU's: a warning, and the figure is marked so that the fleet and the
    lab spec do not judge a node by it."""
    return judged(
        found,
        CONTENTION_ID,
        "CPU free for the burn",
        what="burn",
        consequence="the CPU's throughput measures the sharing, not the CPU (figures marked contended)",
    )


def worker_verdict(children: Sequence[BurnChild], *, interrupted: bool) -> CheckResult:
    """``burn.worker``: each device's worker loaded it to the end. One that crashed, hung, was killed (the
    OOM killer) or could not start fails its own device; an interrupted run stops workers on purpose."""
    title = "Every device was loaded to the end"
    problems = {}
    details: dict[str, Any] = {}
    for c in children:
        why = why_failed(c, interrupted)
        details[c.name] = {"error": why, "load_s": c.load_s, "returncode": c.process.returncode if c.process else None}
        if why is not None:
            problems[c.name] = why
    if not children:
        return CheckResult("burn.worker", title, Status.SKIP, "no worker was started")
    if not problems:
        fine = "every worker loaded its device to the end"
        if interrupted:
            fine = "every worker was stopped early, as asked"
        verdict = ok(fine, devices=details)
    else:
        summary = "; ".join(f"{name}: {why}" for name, why in problems.items())
        verdict = fail(
            summary,
            "A worker that crashes or hangs under load points at the GPU or its driver: read the driver's log for "
            "Xid errors at that time, and burn that GPU alone again. Killed by SIGKILL is most often the "
            "out-of-memory killer: look for it in the kernel's log.",
            "sudo dmesg -T | grep -iE 'nvrm|xid|oom'",
            devices=details,
            problems=problems,
        )
    return CheckResult("burn.worker", title, verdict.status, verdict.summary, verdict.fix, verdict.details)


def _tolerated(result: CheckResult) -> CheckResult:
    """``allow_throttle = true`` in the lab spec: a slowdown is reported, as a warning."""
    if result.status is not Status.FAIL:
        return result
    from dataclasses import replace

    return replace(result, status=Status.WARN, summary=result.summary + " (tolerated by the lab spec)")


def _judge_spec(
    request: BurnRequest,
    runs: Sequence[DeviceRun],
    timeline: Timeline,
    verdicts: Sequence[CheckResult],
    limits: Limits,
    interrupted: bool,
    contended: Sequence[str] = (),
) -> tuple[BurnVerdict, ...] | None:
    if request.lab is None or request.lab.burn is None:
        return None
    from envcheck.spec.burn import judge_burn

    summaries = summarize(timeline, limits)
    throttle = next((v.to_json() for v in verdicts if v.id == "burn.throttle"), None)
    dtype = runs[0].dtype if runs else request.dtype or plan.DEFAULT_GPU_DTYPE
    steady = {r.device.name: (summaries[r.key].throughput if r.key in summaries else None) for r in runs}
    return tuple(
        judge_burn(
            request.lab,
            dtype=dtype,
            interrupted=interrupted,
            load_s={r.device.name: r.load_s for r in runs},
            sustained=steady,
            throttle=throttle,
            contended=contended,
        )
    )


def why_failed(child: BurnChild, interrupted: bool) -> str | None:
    """Why a worker did not load its device to the end; a run interrupted on purpose killed its workers, which
    is not their failure (what they said themselves still is)."""
    if interrupted:
        return child.error
    return child.failure()
