"""Run one case: guarded, timed by the harness, checked, and turned into a :class:`BenchResult`.

Like the doctor's runner (and pytest's ``CallInfo.from_call``), one case's exception becomes that
case's result (status ``crash``) and the suite goes on; only KeyboardInterrupt is re-raised. An
out-of-memory error frees what the case held and retries at half the size, twice, before the case is
skipped with the reason. On a CPU every case is also watched for other processes' CPU use
(envcheck.probes.contention), and marked when it was shared.

Where the cases run is decided elsewhere: envcheck.bench.plan turns a request into one job per device,
envcheck.bench.execute runs a job's cases in one process (a bench worker), and envcheck.bench.run
starts the workers, streams their progress and merges their results; :func:`flag_slow_siblings` then
compares the devices. A result crosses from worker to parent as :meth:`BenchResult.to_json` and comes
back whole through :meth:`BenchResult.from_json`.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from envcheck.bench import common
from envcheck.bench.harness import Budget, CpuTimer, CudaEventTimer, Measurement, Timer, measure
from envcheck.bench.model import BENCHMARKS, BenchSpec, Check, Options, Plan, Unsupported, Workload
from envcheck.bench.peaks import Peak
from envcheck.core.model import Status, error_line
from envcheck.devices.model import DeviceInfo
from envcheck.probes import contention
from envcheck.probes.contention import Contention

#: Halvings tried after an out-of-memory error before a case is skipped.
OOM_RETRIES = 2
#: A GPU whose figure is this far below the median of its same-model siblings is named.
SIBLING_SHORTFALL = 0.10

#: Time per case. A default GPU pass is about a minute per device, --quick about a quarter of that.
BUDGETS = {
    ("cuda", False): Budget(measure_s=1.5, warmup_s=0.3),
    ("cuda", True): Budget(measure_s=0.3, warmup_s=0.1),
    ("cpu", False): Budget(measure_s=1.0, warmup_s=0.2),
    ("cpu", True): Budget(measure_s=0.15, warmup_s=0.03, min_samples=3),
}
#: Each shape of a sweep gets a third of a case's budget: it only has to find the best.
SWEEP_FRACTION = 1 / 3


@dataclass(frozen=True)
class BenchResult:
    """One figure (or why there is none). ``status`` in the one vocabulary of envcheck (core.model):
    ``ok`` (verified), ``fail`` (a wrong answer), ``skip`` (not applicable, or out of memory at every
    size), ``crash`` (the case raised). ``contention``: other processes' CPU use while a CPU case ran."""

    id: str
    label: str
    case: str
    device: str
    device_model: str
    dtype: str | None
    status: Status
    value: float | None = None
    unit: str | None = None
    peak: float | None = None
    peak_fraction: float | None = None
    peak_source: str | None = None
    check: Check | None = None
    measurement: Measurement | None = None
    params: dict[str, Any] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    attempts: tuple[str, ...] = ()
    sibling: dict[str, float] | None = None
    duration_s: float = 0.0
    contention: Contention | None = None

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def verified(self) -> bool | None:
        return None if self.check is None else self.check.passed

    @property
    def noisy(self) -> bool:
        return self.measurement is not None and self.measurement.noisy

    @property
    def contended(self) -> bool | None:
        """Whether other processes took a share of the CPU while this CPU case ran; None on a GPU."""
        return None if self.contention is None else self.contention.contended

    @property
    def verdict(self) -> Status:
        """The status the exit policy reads: a verified figure from a card slower than its siblings fails."""
        return Status.FAIL if self.sibling is not None and self.status is Status.OK else self.status

    @property
    def is_problem(self) -> bool:
        """A wrong answer, a crash, or a card slower than its siblings: what makes the run exit 1."""
        return self.verdict.is_problem

    @property
    def host_bound(self) -> bool:
        """Its figure depends on the host as much as on the device (:attr:`BenchSpec.host_bound`): not
        compared with its siblings, here or across a fleet, which reads this from the report."""
        spec = BENCHMARKS.get(self.id)
        return spec is not None and spec.host_bound

    def to_json(self) -> dict[str, Any]:
        from envcheck.core.model import to_jsonable

        return {
            "id": self.id,
            "benchmark": self.family,
            "case": self.case,
            "label": self.label,
            "device": self.device,
            "device_model": self.device_model,
            "dtype": self.dtype,
            "status": self.status.value,
            "params": to_jsonable(self.params),
            "value": self.value,
            "unit": self.unit,
            "rates": self.rates,
            "peak": self.peak,
            "peak_fraction": self.peak_fraction,
            "peak_source": self.peak_source,
            "verified": self.verified,
            "check": self.check.to_json() if self.check else None,
            "noisy": self.noisy,
            "stats": self.measurement.to_json() if self.measurement else None,
            "reason": self.reason,
            "attempts": list(self.attempts),
            "slow_vs_siblings": self.sibling,
            "host_bound": self.host_bound,
            "duration_s": round(self.duration_s, 3),
            "contended": self.contended,
            "contention": self.contention.to_json() if self.contention else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchResult:
        """Back from :meth:`to_json`, raw samples included: what a bench worker streams to its parent is
        rebuilt here into the result the parent merges, compares and reports (derived fields such as
        ``noisy`` and ``verified`` are recomputed, not read)."""
        check, stats, contention = data.get("check"), data.get("stats"), data.get("contention")
        return cls(
            id=data["id"],
            label=data["label"],
            case=data["case"],
            device=data["device"],
            device_model=data["device_model"],
            dtype=data.get("dtype"),
            status=Status(data["status"]),
            value=data.get("value"),
            unit=data.get("unit"),
            peak=data.get("peak"),
            peak_fraction=data.get("peak_fraction"),
            peak_source=data.get("peak_source"),
            check=Check.from_json(check) if check else None,
            measurement=Measurement.from_json(stats) if stats else None,
            params=dict(data.get("params") or {}),
            rates=dict(data.get("rates") or {}),
            reason=data.get("reason"),
            attempts=tuple(data.get("attempts") or ()),
            sibling=data.get("slow_vs_siblings"),
            duration_s=data.get("duration_s") or 0.0,
            contention=Contention.from_json(contention) if contention else None,
        )


def unit_for(work_unit: str, dev: DeviceInfo) -> tuple[str, float]:
    """Display unit and divisor: TFLOP/s on a GPU, GFLOP/s on a CPU, GB/s, images/s."""
    if work_unit == "flop":
        return ("TFLOP/s", 1e12) if dev.is_cuda else ("GFLOP/s", 1e9)
    if work_unit == "byte":
        return "GB/s", 1e9
    return "images/s", 1.0


def figure(
    wl: Workload, m: Measurement, dev: DeviceInfo, entry: Peak | None
) -> tuple[float, str, float | None, float | None, str | None]:
    """The value from the median step time, and its fraction of the datasheet peak where the card is known
    (``entry``: the device's datasheet entry, looked up once per run, envcheck.bench.peaks.by_device)."""
    unit, divisor = unit_for(wl.work_unit, dev)
    value = wl.work_per_step / m.median_s / divisor
    peak = entry.for_key(wl.peak_key) if entry and wl.peak_key else None
    # peaks are in TFLOP/s and GB/s, the same units as the value on a GPU
    fraction = round(value / peak, 4) if peak else None
    return value, unit, peak, fraction, entry.source if peak and entry else None


def timer_for(dev: DeviceInfo) -> Timer:
    return CudaEventTimer(dev.torch_device) if dev.is_cuda else CpuTimer()


def free_memory(dev: DeviceInfo) -> None:
    """Drop what a finished case held so the next one starts with the device's memory free."""
    gc.collect()
    if dev.is_cuda:
        import torch

        try:
            torch.cuda.synchronize(dev.torch_device)
            torch.cuda.empty_cache()
        except RuntimeError:
            # A sticky CUDA error (illegal address, Xid) surfaces here again; the case that caused it has
            # already reported it, and every later case on this device will report its own failure.
            pass


def run_plan(
    spec: BenchSpec,
    plan: Plan,
    dev: DeviceInfo,
    budget: Budget,
    *,
    datasheet: Peak | None = None,
    timer: Timer | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> BenchResult:
    """Build, warm up, time and check one case; out-of-memory shrinks it, any other error is its result.
    ``datasheet``: the device's entry, for the fraction of peak (None: not in the table, or a CPU)."""
    started = clock()
    base = {"id": spec.id, "label": plan.label, "device": dev.name, "device_model": dev.model, "dtype": plan.dtype}
    if plan.skip or plan.build is None:
        return BenchResult(case=plan.label, status=Status.SKIP, reason=plan.skip or "not applicable", **base)
    attempts: list[str] = []
    scale = 1.0
    for _ in range(OOM_RETRIES + 1):
        outcome = _attempt(plan, dev, budget, scale, timer or timer_for(dev), clock)
        free_memory(dev)
        if isinstance(outcome, Unsupported):
            return BenchResult(
                case=plan.label, status=Status.SKIP, reason=str(outcome), duration_s=clock() - started, **base
            )
        if isinstance(outcome, BaseException):
            if common.is_out_of_memory(outcome):
                attempts.append(f"out of memory at scale {scale:g}: {error_line(outcome)}")
                scale /= 2
                continue
            return BenchResult(
                case=plan.label,
                status=Status.CRASH,
                reason=error_line(outcome),
                attempts=tuple(attempts),
                duration_s=clock() - started,
                **base,
            )
        wl, m, check, baseline = outcome
        try:
            value, unit, peak, fraction, source = figure(wl, m, dev, datasheet)
        except Exception as exc:  # noqa: BLE001 - a bug in the arithmetic must not end the suite
            return BenchResult(
                case=wl.case,
                status=Status.CRASH,
                reason=f"envcheck could not compute the figure (a bug; please report it): {error_line(exc)}",
                duration_s=clock() - started,
                **base,
            )
        rates = {"images/s": wl.images_per_step / m.median_s} if wl.images_per_step and wl.work_unit != "image" else {}
        params = {**wl.params, **wl.notes}
        if baseline is not None:
            params["speedup"] = baseline.median_s / m.median_s if m.median_s > 0 else None
            params["baseline_stats"] = baseline.to_json()
        if scale != 1.0:
            params["shrunk_to_scale"] = scale
        return BenchResult(
            case=wl.case,
            status=Status.OK if check.passed else Status.FAIL,
            value=value,
            unit=unit,
            peak=peak,
            peak_fraction=fraction,
            peak_source=source,
            check=check,
            measurement=m,
            params=params,
            rates=rates,
            reason=None if check.passed else f"wrong result: {check.detail}",
            attempts=tuple(attempts),
            duration_s=clock() - started,
            **base,
        )
    return BenchResult(
        case=plan.label,
        status=Status.SKIP,
        reason="out of memory at every size tried",
        attempts=tuple(attempts),
        duration_s=clock() - started,
        **base,
    )


def _attempt(
    plan: Plan, dev: DeviceInfo, budget: Budget, scale: float, timer: Timer, clock: Callable[[], float]
) -> tuple[Workload, Measurement, Check, Measurement | None] | BaseException:
    """One try at a case; returns the exception instead of raising (the caller frees memory first). The
    workload's baseline, if it has one, is timed after the step, under the same budget and timer.

    torch's process-wide flags (TF32, cuDNN's autotuning) are not touched here: the process running the
    case has set them for it (envcheck.bench.execute), once, not around every case."""
    assert plan.build is not None
    try:
        wl = plan.build(scale)
        m = measure(wl.step, timer, budget, clock=clock)
        baseline = measure(wl.baseline, timer, budget, clock=clock) if wl.baseline is not None else None
        check = wl.verify()
        # Keep what the figure needs, drop the closures that hold the case's buffers, so that
        # free_memory() can give the memory back before the next case allocates.
        return replace(wl, step=_released, verify=_released, baseline=None), m, check, baseline
    except Exception as exc:  # noqa: BLE001 - any failure becomes this case's result
        exc.__traceback__ = None  # the traceback's frames hold the case's tensors
        return exc


def _released() -> Any:
    raise RuntimeError("this workload's buffers were released after it was measured")


def best_of(results: list[BenchResult]) -> BenchResult:
    """Reduce a sweep to one result: the fastest verified shape; any wrong answer wins over speed."""
    table = [{"shape": r.case, "value": r.value, "status": r.status.value} for r in results]
    bad = [r for r in results if r.status.is_problem]
    good = [r for r in results if r.status is Status.OK and r.value is not None]
    chosen = bad[0] if bad else max(good, key=lambda r: r.value or 0.0) if good else results[0]
    dtype = chosen.dtype or ""
    return replace(
        chosen,
        label=f"{dtype} best of shapes".strip(),
        case=f"{dtype} best of {len(results)} shapes".strip(),
        params={**chosen.params, "best_shape": chosen.case, "sweep": table},
        duration_s=sum(r.duration_s for r in results),
    )


def flag_slow_siblings(results: list[BenchResult], shortfall: float = SIBLING_SHORTFALL) -> list[BenchResult]:
    """Name each GPU whose figure is more than ``shortfall`` below the median of the *other* GPUs of its
    model on the same case: in synchronous data-parallel training the whole node runs at its pace. (A
    run has one CPU, so a CPU figure has no siblings.) Only device-bound figures are compared: a host-bound
    one (:attr:`~envcheck.bench.model.BenchSpec.host_bound`) differs among healthy GPUs by NUMA placement."""
    groups: dict[tuple[str, str, str], list[BenchResult]] = {}
    for r in results:
        if r.host_bound:
            continue
        if r.value is not None and r.status is Status.OK:
            groups.setdefault((r.id, r.case, r.device_model), []).append(r)
    flagged: dict[int, dict[str, float]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        for r in members:
            others = statistics.median(o.value for o in members if o is not r and o.value is not None)
            if r.value is not None and others > 0 and r.value < (1 - shortfall) * others:
                flagged[id(r)] = {"sibling_median": others, "shortfall": round(1 - r.value / others, 4)}
    return [replace(r, sibling=flagged[id(r)]) if id(r) in flagged else r for r in results]


@dataclass
class Progress:
    """Callbacks the renderer plugs in: a case is about to run / has finished."""

    started: Callable[[int, int, str, str, str], None] = lambda i, n, bench_id, label, device: None
    finished: Callable[[BenchResult], None] = lambda result: None


def watched(
    spec: BenchSpec,
    plan: Plan,
    dev: DeviceInfo,
    budget: Budget,
    cpus: contention.Cpus | None,
    datasheet: Peak | None = None,
) -> BenchResult:
    """One case; on a CPU, with the other processes' CPU use over the time it ran."""
    if cpus is None:
        return run_plan(spec, plan, dev, budget, datasheet=datasheet)
    before = contention.sample(cpus)
    result = run_plan(spec, plan, dev, budget, datasheet=datasheet)
    if result.status is Status.SKIP:
        return result
    return replace(result, contention=contention.between(before, contention.sample(cpus), cpus))


def plans_for(spec: BenchSpec, dev: DeviceInfo, opts: Options) -> list[Plan]:
    """The benchmark's cases on this device; if planning itself raises (a bug in envcheck, or a torch
    query failing), one case that reports the error, so the rest of the suite still runs."""
    try:
        return spec.plans(dev, opts)
    except Exception as exc:  # noqa: BLE001 - becomes that benchmark's result
        why = f"planning {spec.id} failed: {error_line(exc)}"

        def build(scale: float) -> Workload:
            raise RuntimeError(why)

        return [Plan("plan", None, build)]
