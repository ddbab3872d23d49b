"""The verdicts of a burn-in, from its timeline: pure functions, no NVML, no clock, no GPU state changed.

A :class:`Timeline` is what a run saw: each GPU's telemetry samples (:class:`~envcheck.probes.nvml.telemetry.Sample`),
each worker's throughput points on the same clock, and how many results each worker found that did not match
the reference. :func:`judge` runs every rule over it and returns one
:class:`~envcheck.core.model.CheckResult` per rule, with a stable id, in a fixed order; each warning and
failure carries a fix. :func:`summarize` gives each device's steady state for the report.

The rules follow DCGM's where DCGM has one (its diagnostic ``dcgmi diag``, whose plugins check a fixed set of
error fields and the clocks-event reasons during their load, and its health watches); the sources are named
next to each threshold. Where DCGM's diagnostic fails on an instant (the first clocks event it sees), the
verdict here also says when it started and for how long, which DCGM does not.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.calls import BUG_FIX, Outcome
from envcheck.core.model import CheckResult, Status, Verdict, available, fail, first_line, ok, skip, warn
from envcheck.core.registry import Registry
from envcheck.core.units import clock
from envcheck.probes.nvml.constants import TEMPERATURE_MARGIN_C, THROTTLE_MASK, THROTTLE_PROBLEMS, reason_names
from envcheck.probes.nvml.telemetry import DeviceKey, Point, Sample, Telemetry

THERMAL_REASONS = frozenset({"sw_thermal", "hw_thermal"})

#: Xids DCGM's health watch fails a GPU on, whatever subsystem is watched (DCGM's health-monitor tests,
#: "devastating" Xids), with DCGM's words for them. Any other Xid during a burn fails too (the load is ours,
#: so it is not someone else's bug), with the advice to read the driver's log.
FATAL_XIDS = {
    48: "double-bit ECC error",
    74: "NVLink critical error",
    79: "GPU has fallen off the bus",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    140: "ECC unrecovered error",
}

DMESG_XID = "sudo dmesg -T | grep -iE 'nvrm|xid'"


@dataclass(frozen=True)
class Limits:
    """The thresholds the rules judge by; the burn's spec section may change them."""

    #: A GPU more than this share below its siblings' median (throughput or SM clock) fails (the issue's 10 %).
    sibling_share: float = 0.10
    #: Throughput that falls by more than this share from the first window to the last warns.
    decay_share: float = 0.10
    #: Warn this many °C before the slowdown threshold: the same margin ``gpu.temperature`` uses.
    temperature_margin_c: int = TEMPERATURE_MARGIN_C
    #: The first and last windows (first minute, last minute), and the steady state the siblings are
    #: compared over; a run shorter than two windows uses its halves.
    window_s: float = 60.0
    #: PCIe replays during the run above which the link is called marginal: DCGM's PCIe plugin's default
    #: ``max_pcie_replays`` (80).
    pcie_replays: int = 80


@dataclass(frozen=True)
class Timeline:
    """What a burn-in saw, per device.

    Key a GPU by its NVML index everywhere (samples, throughput, mismatches), so its clocks and its
    throughput line up; a CPU worker by a name of its own (``"cpu"``)."""

    #: NVML index -> its samples in time order.
    samples: Mapping[int, Sequence[Sample]] = field(default_factory=dict)
    #: Device -> its worker's throughput over time, on the samples' clock (``unit`` each).
    throughput: Mapping[DeviceKey, Sequence[Point]] = field(default_factory=dict)
    #: Device -> how many results did not match the reference.
    mismatches: Mapping[DeviceKey, int] = field(default_factory=dict)
    #: Device -> how many results were compared with the reference.
    checked: Mapping[DeviceKey, int] = field(default_factory=dict)
    #: Device -> its model: siblings are compared within a model only (an H100 is not a slow B200).
    models: Mapping[DeviceKey, str] = field(default_factory=dict)
    unit: str = "TFLOP/s"

    @classmethod
    def from_telemetry(
        cls,
        telemetry: Telemetry,
        *,
        mismatches: Mapping[DeviceKey, int] | None = None,
        checked: Mapping[DeviceKey, int] | None = None,
        models: Mapping[DeviceKey, str] | None = None,
        unit: str = "TFLOP/s",
    ) -> Timeline:
        """What a burn saw: a sampler's telemetry, its recorded values as the throughput, the workers' result
        checks, and each device's model (``models``: the workers' devices; NVML's name wins for a GPU it
        watched)."""
        named = {g.index: g.name for g in telemetry.gpus if available(g.name)}
        return cls(
            samples=telemetry.samples,
            throughput=telemetry.values,
            mismatches=mismatches or {},
            checked=checked or {},
            models={**(models or {}), **named},
            unit=unit,
        )

    @property
    def end_s(self) -> float:
        """The last moment anything was seen."""
        times = [s.t_s for samples in self.samples.values() for s in samples]
        times += [p.t_s for points in self.throughput.values() for p in points]
        return max(times, default=0.0)

    @property
    def start_s(self) -> float:
        times = [samples[0].t_s for samples in self.samples.values() if samples]
        times += [points[0].t_s for points in self.throughput.values() if points]
        return min(times, default=0.0)

    def live(self, device: int) -> list[Sample]:
        """The device's samples while it answered."""
        return [s for s in self.samples.get(device, ()) if not s.lost]

    def steady_from(self, limits: Limits) -> float:
        """Where the steady state (the last window of the run) begins."""
        return self.end_s - window(self.end_s - self.start_s, limits)


def window(run_s: float, limits: Limits) -> float:
    """The first or last window of a run: ``limits.window_s``, or half the run when it is shorter than two."""
    return min(limits.window_s, run_s / 2)


# -- words --------------------------------------------------------------------------------------------------


def label(key: DeviceKey) -> str:
    """'GPU 2' for an NVML index; a name (``cpu``) as it is."""
    return f"GPU {key}" if isinstance(key, int) else str(key)


def span(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _fig(value: float) -> str:
    """A figure people read: whole numbers from 100 up (650 TFLOP/s, 1980 MHz), three significant digits below
    (0.0238 TFLOP/s on a CPU would otherwise read as 0)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %"


# -- the rules ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    fn: Callable[[Timeline, Limits], Verdict]
    doc: str


#: Every rule, in the order the report shows them.
RULES: Registry[Rule] = Registry("burn verdict")


def rule(rule_id: str, title: str) -> Callable[[Callable[[Timeline, Limits], Verdict]], Callable[..., Verdict]]:
    def register(fn: Callable[[Timeline, Limits], Verdict]) -> Callable[[Timeline, Limits], Verdict]:
        RULES.add(Rule(rule_id, title, fn, (fn.__doc__ or "").strip()))
        return fn

    return register


def judge(timeline: Timeline, limits: Limits | None = None) -> list[CheckResult]:
    """Every rule over the timeline, in order, each through :func:`run_rule`."""
    limits = limits or Limits()
    return [run_rule(item, timeline, limits) for item in RULES.ordered()]


def run_rule(item: Rule, timeline: Timeline, limits: Limits) -> CheckResult:
    """One rule under the one guard every unit of envcheck runs under (envcheck.core.calls.Outcome, as the
    doctor's checks do): a rule that raises is a ``crash`` result of its own, with the fix for a bug in
    envcheck and the innermost frames of its traceback, and the other rules still run."""
    outcome = Outcome.from_call(lambda: item.fn(timeline, limits))
    if outcome.error is None:
        verdict: Verdict = outcome.value  # type: ignore[assignment]
        status, summary, fix, details = verdict.status, verdict.summary, verdict.fix, verdict.details
    else:
        status, summary, fix = Status.CRASH, f"{type(outcome.error).__name__}: {first_line(outcome.error)}", BUG_FIX
        details = {"traceback": outcome.short_traceback()}
    return CheckResult(item.id, item.title, status, summary, fix, details, outcome.duration_s)


def _no_gpus(timeline: Timeline) -> Verdict | None:
    if not any(timeline.samples.values()):
        return skip("no GPU telemetry (a CPU burn, or NVML not available)")
    return None


def _judged(
    problems: list[tuple[DeviceKey, str]],
    details: dict[str, Any],
    *,
    fine: str,
    severity: Callable[..., Verdict],
    fix: str,
    command: str | None,
) -> Verdict:
    if not problems:
        return ok(fine, devices=details)
    summary = "; ".join(f"{label(key)}: {words}" for key, words in problems)
    # ``problems`` names the devices the verdict is about, so a report can give each device its own verdicts.
    named = {str(key): words for key, words in problems}
    return severity(summary, fix, command, devices=details, problems=named)


@rule("burn.mismatch", "Results match the reference")
def mismatch(timeline: Timeline, limits: Limits) -> Verdict:
    """A GPU that returns wrong answers under load is faulty, whatever its telemetry says (DCGM's diagnostic
    fails on any miscompare)."""
    if not any(timeline.mismatches.values()) and not any(timeline.checked.values()):
        # nothing compared (stopped before the first check): no claim that anything matched
        return skip("no results were compared with the reference")
    keys = list(dict.fromkeys([*timeline.checked, *timeline.mismatches]))
    details = {str(k): {"mismatches": timeline.mismatches.get(k, 0), "checked": timeline.checked.get(k)} for k in keys}
    problems = []
    for key in keys:
        wrong = timeline.mismatches.get(key, 0)
        if wrong:
            of = f" of {timeline.checked[key]}" if key in timeline.checked else ""
            problems.append((key, f"{wrong}{of} results did not match the reference"))
    checked = sum(timeline.checked.values())
    return _judged(
        problems,
        details,
        fine=f"every result matched ({checked} checked)" if checked else "every result matched",
        severity=fail,
        fix="A GPU that computes wrong results under load must not run jobs: drain it, look for Xid and ECC "
        "errors in the driver's log, reset it and burn it alone again; if it miscompares again, RMA it.",
        command=DMESG_XID,
    )


@rule("burn.lost", "GPUs stayed on the bus")
def lost(timeline: Timeline, limits: Limits) -> Verdict:
    """A GPU that stops answering NVML mid-run has fallen off the bus (Xid 79): nothing on it can be trusted."""
    if (none := _no_gpus(timeline)) is not None:
        return none
    problems, details = [], {}
    for device, samples in timeline.samples.items():
        gone = next((s for s in samples if s.lost), None)
        details[str(device)] = {"lost_at_s": gone.t_s if gone else None, "error": gone.error if gone else None}
        if gone is not None:
            when = "before the run" if gone is samples[0] else f"at {clock(gone.t_s)}"
            problems.append((device, f"lost {when} ({gone.error})"))
    return _judged(
        problems,
        details,
        fine="every GPU answered to the end",
        severity=fail,
        fix="A GPU that falls off the bus under load needs the node drained and rebooted; if it recurs, check "
        "its cooling, power and seating, and ask the vendor for an RMA. The driver's log has the Xid and when.",
        command=DMESG_XID,
    )


@rule("burn.xid", "No Xid errors")
def xid(timeline: Timeline, limits: Limits) -> Verdict:
    """Any Xid the driver reports during the burn fails: the load is envcheck's own, so it is the GPU, its
    memory, its links or the driver (DCGM's health watch fails the Xids in :data:`FATAL_XIDS` outright)."""
    if (none := _no_gpus(timeline)) is not None:
        return none
    problems, details, unwatched = [], {}, []
    fatal = False
    for device, samples in timeline.samples.items():
        seen = [(s.t_s, x) for s in samples if available(s.xids) for x in s.xids]
        watched = any(available(s.xids) for s in samples)
        if not watched:
            reason = next((s.xids.reason for s in samples if not s.lost and not available(s.xids)), None)
            unwatched.append((device, reason))
        details[str(device)] = {"watched": watched, "xids": [{"t_s": t, "xid": x} for t, x in seen]}
        if seen:
            fatal |= any(x in FATAL_XIDS for _, x in seen)
            words = ", ".join(
                f"Xid {x} at {clock(t)}" + (f" ({FATAL_XIDS[x]})" if x in FATAL_XIDS else "") for t, x in seen
            )
            problems.append((device, words))
    if not problems and len(unwatched) == len(timeline.samples):
        reason = unwatched[0][1] or "not available"
        return skip(f"Xid events not available from this driver ({reason}): read the driver's log", devices=details)
    fix = (
        "Drain the node: this Xid means the GPU or its memory failed (DCGM fails it too). Reset the GPU or reboot, "
        "burn it again, and ask the vendor for an RMA if it returns."
        if fatal
        else "Read the driver's log around that time for the Xid's context; NVIDIA's Xid catalog says which "
        "subsystem it names. Burn the GPU again; if the Xid returns, drain it."
    )
    fine = "no Xid events"
    if unwatched:
        fine += f" (not watched on {', '.join(label(d) for d, _ in unwatched)})"
    return _judged(problems, details, fine=fine, severity=fail, fix=fix, command=DMESG_XID)


@rule("burn.ecc", "No new uncorrected ECC errors")
def ecc(timeline: Timeline, limits: Limits) -> Verdict:
    """A volatile uncorrected ECC count that grows during the burn means the GPU returned corrupt data under
    load (DCGM's diagnostic fails on any increase of DCGM_FI_DEV_ECC_DBE_VOL_TOTAL). Corrected errors are
    normal on HBM and not judged."""
    if (none := _no_gpus(timeline)) is not None:
        return none
    problems, details = [], {}
    for device in timeline.samples:
        live = timeline.live(device)
        counts = [(s.t_s, s.ecc_volatile_uncorrected) for s in live if available(s.ecc_volatile_uncorrected)]
        if not counts:
            continue
        before = counts[0][1]
        after = max(c for _, c in counts)
        first = next((t for t, c in counts if c > before), None)
        details[str(device)] = {"before": before, "after": after, "first_new_at_s": first}
        if first is not None:
            problems.append((device, f"{after - before} new uncorrected ECC errors, the first at {clock(first)}"))
    if not details:
        return ok("ECC not available on these GPUs")
    return _judged(
        problems,
        details,
        fine="no new uncorrected ECC errors",
        severity=fail,
        fix="The GPU's memory returned corrupt data under load: stop using it, drain the node and reset the GPU "
        "(a pending row remap is applied then); if errors return, RMA it.",
        command="nvidia-smi -q -d ECC,ROW_REMAPPER",
    )


@rule("burn.row_remap", "No row remapping pending or failed")
def row_remap(timeline: Timeline, limits: Limits) -> Verdict:
    """A pending row remap needs a GPU reset before that memory is safe; a failed one (no spare rows left)
    means RMA (DCGM's diagnostic fails on DCGM_FI_DEV_ROW_REMAP_PENDING and _FAILURE)."""
    if (none := _no_gpus(timeline)) is not None:
        return none
    problems, details = [], {}
    failed_any = False
    for device in timeline.samples:
        live = timeline.live(device)
        failed = next((s for s in live if s.row_remap_failed is True), None)
        pending = next((s for s in live if s.row_remap_pending is True), None)
        details[str(device)] = {
            "pending_at_s": pending.t_s if pending else None,
            "failed_at_s": failed.t_s if failed else None,
        }
        if failed is not None:
            failed_any = True
            problems.append((device, f"row remapping failed {_since(failed, live)}: the GPU has run out of spare rows"))
        elif pending is not None:
            problems.append((device, f"row remap pending {_since(pending, live)}: a GPU reset applies it"))
    fix = "Drain the node and reset the GPU (or reboot) so the remap takes effect, then burn it again."
    if failed_any:
        fix += " A failed row remap means the GPU needs an RMA."
    return _judged(
        problems,
        details,
        fine="nothing pending",
        severity=fail,
        fix=fix,
        command="nvidia-smi -q -d ROW_REMAPPER",
    )


def _since(sample: Sample, live: Sequence[Sample]) -> str:
    return "since before the run" if live and sample is live[0] else f"since {clock(sample.t_s)}"


@dataclass(frozen=True)
class Episode:
    """A stretch of the run during which some of ``mask``'s clocks-event reasons were active."""

    start_s: float
    end_s: float
    reasons: tuple[str, ...]
    #: Still active at the last sample: ``end_s`` is then that sample (the end of the run).
    to_end: bool

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def episodes(samples: Sequence[Sample], mask: int = THROTTLE_MASK) -> list[Episode]:
    """When ``mask``'s reasons were active, from the first sample that shows them to the first that does not
    (or the last sample). A reason seen in a single sample counts for one sampling interval."""
    readable = [s for s in samples if not s.lost and available(s.clocks_event_reasons)]
    gaps = [b.t_s - a.t_s for a, b in zip(readable, readable[1:], strict=False)]
    step = statistics.median(gaps) if gaps else 0.0
    found: list[Episode] = []
    start: float | None = None
    bits = 0
    for s in readable:
        on = s.clocks_event_reasons & mask
        if on:
            start = s.t_s if start is None else start
            bits |= on
        elif start is not None:
            found.append(Episode(start, s.t_s, reason_names(bits), False))
            start, bits = None, 0
    if start is not None:
        found.append(Episode(start, max(readable[-1].t_s, start + step), reason_names(bits), True))
    return found


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@rule("burn.throttle", "No thermal or hardware slowdown")
def throttle(timeline: Timeline, limits: Limits) -> Verdict:
    """HW slowdown, SW or HW thermal slowdown or the power brake during the burn fails (DCGM's diagnostic
    fails on these four clocks-event reasons): a fault, the power supply or the cooling is slowing the GPU.
    The verdict names when it started, for how long, which reasons, and what the SM clock did."""
    if (none := _no_gpus(timeline)) is not None:
        return none
    problems, details = [], {}
    thermal = power = False
    for device in timeline.samples:
        live = timeline.live(device)
        found = episodes(live)
        details[str(device)] = {
            "episodes": [
                {"start_s": e.start_s, "duration_s": e.duration_s, "reasons": list(e.reasons), "to_end": e.to_end}
                for e in found
            ]
        }
        if not found:
            continue
        reasons = tuple(dict.fromkeys(r for e in found for r in e.reasons))
        thermal |= bool(THERMAL_REASONS & set(reasons))
        power |= bool(set(reasons) - THERMAL_REASONS)
        problems.append((device, _throttle_words(live, found, reasons)))
    fixes = []
    if thermal:
        fixes.append(
            "Thermal slowdown: check the cooling (fans, airflow, blocked inlets, the room's temperature) and "
            "compare with the other GPUs in the node."
        )
    if power:
        fixes.append(
            "HW slowdown or power brake: the board or the power supply signals a problem: check the power "
            "cabling and the PSUs, and the driver's log."
        )
    return _judged(
        problems,
        details,
        fine="no thermal or hardware slowdown",
        severity=fail,
        fix=" ".join(fixes),
        command="nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER",
    )


def _throttle_words(live: Sequence[Sample], found: Sequence[Episode], reasons: Sequence[str]) -> str:
    words = {name: text for bit, text in THROTTLE_PROBLEMS.items() for name in reason_names(bit)}
    what = ", ".join(words[r] for r in reasons)
    first = found[0]
    if len(found) == 1:
        until = "to the end of the run" if first.to_end else f"to {clock(first.end_s)}"
        when = f"from {clock(first.start_s)} {until} ({span(first.duration_s)})"
    else:
        total = sum(e.duration_s for e in found)
        when = f"{len(found)} times, first at {clock(first.start_s)}, {span(total)} in all"
    text = f"{what} {when}"
    at_start = next((s for s in live if s.t_s == first.start_s), None)
    if at_start is not None and available(at_start.temperature_c):
        text += f", at {at_start.temperature_c} °C"
    during = [s for s in live if any(e.start_s <= s.t_s < e.end_s for e in found)]
    before = _median([s.sm_clock_mhz for s in live if s.t_s < first.start_s and available(s.sm_clock_mhz)])
    slowed = _median([s.sm_clock_mhz for s in during if available(s.sm_clock_mhz)])
    if before and slowed is not None:
        change = (slowed - before) / before
        if abs(change) < 0.01:
            text += f"; SM clock held at {before:.0f} MHz"
        else:
            text += f"; SM clock {before:.0f} → {slowed:.0f} MHz ({change * 100:+.0f} %)"
    return text


@rule("burn.siblings", "Every GPU keeps up with its siblings")
def siblings(timeline: Timeline, limits: Limits) -> Verdict:
    """A GPU whose steady-state throughput or SM clock is more than ``limits.sibling_share`` below the median
    of its siblings (the other GPUs of its model) fails: in a data-parallel job the slowest GPU sets
    everyone's pace. Steady state is the last window of the run."""
    since = timeline.steady_from(limits)
    clocks = {
        d: v
        for d in timeline.samples
        if (v := _median([s.sm_clock_mhz for s in timeline.live(d) if s.t_s >= since and available(s.sm_clock_mhz)]))
    }
    rates = {
        k: v for k, points in timeline.throughput.items() if (v := _median([p.value for p in points if p.t_s >= since]))
    }
    measures = [("throughput", rates, timeline.unit), ("SM clock", clocks, "MHz")]
    compared = [name for name, values, _ in measures if len(values) > 1]
    if not compared:
        return skip("fewer than two devices to compare")
    problems: dict[DeviceKey, list[str]] = {}
    details: dict[str, Any] = {}
    for name, values, unit in measures:
        for key, value in values.items():
            group = [v for k, v in values.items() if k != key and _model(timeline, k) == _model(timeline, key)]
            if not group:
                continue
            median = statistics.median(group)
            details.setdefault(str(key), {})[name] = {"steady": value, "siblings_median": median}
            if median > 0 and value < (1 - limits.sibling_share) * median:
                below = 1 - value / median
                problems.setdefault(key, []).append(
                    f"{name} {_fig(value)} {unit}, {_pct(below)} below its siblings' median {_fig(median)} {unit}"
                )
    return _judged(
        [(key, "; ".join(words)) for key, words in problems.items()],
        details,
        fine=f"every device within {_pct(limits.sibling_share)} of its siblings ({', '.join(compared)}, "
        f"over the last {span(timeline.end_s - since)})",
        severity=fail,
        fix="A GPU slower than identical siblings is held back: look at its power limit (someone may have lowered "
        "it), its clocks-event reasons, its temperature and its PCIe link; compare with the others.",
        command="nvidia-smi --query-gpu=index,clocks.sm,power.draw,power.limit,temperature.gpu,"
        "clocks_event_reasons.active --format=csv",
    )


def _model(timeline: Timeline, key: DeviceKey) -> str | None:
    return timeline.models.get(key)


@rule("burn.decay", "Throughput holds up over the run")
def decay(timeline: Timeline, limits: Limits) -> Verdict:
    """Throughput that falls by more than ``limits.decay_share`` from the first window (minute) to the last
    warns: the GPU is heat-soaking or power-limiting as the run goes on, and a long job will run at the lower
    speed."""
    if not timeline.throughput:
        return skip("no throughput was recorded")
    problems, details = [], {}
    for key, points in timeline.throughput.items():
        if len(points) < 2:
            continue
        start, end = points[0].t_s, points[-1].t_s
        width = window(end - start, limits)
        if width <= 0:
            continue
        first = statistics.median([p.value for p in points if p.t_s <= start + width])
        last = statistics.median([p.value for p in points if p.t_s >= end - width])
        details[str(key)] = {"first": first, "last": last, "window_s": width}
        if first > 0 and last < (1 - limits.decay_share) * first:
            which = "minute" if width == 60 else span(width)
            problems.append(
                (
                    key,
                    f"{_fig(first)} → {_fig(last)} {timeline.unit} from the first {which} to the last "
                    f"(-{_pct(1 - last / first)})",
                )  # fmt: skip
            )
    if not details:
        return skip("too few throughput points to compare the start of the run with its end")
    return _judged(
        problems,
        details,
        fine=f"no device lost more than {_pct(limits.decay_share)} from start to end",
        severity=warn,
        fix="Throughput that falls as the run goes on is usually heat: compare the temperature and clocks at the "
        "start and the end, and check the cooling; a falling power draw points at the power supply.",
        command="nvidia-smi -q -d PERFORMANCE,TEMPERATURE",
    )


@rule("burn.temperature", "Temperature below the slowdown threshold")
def temperature(timeline: Timeline, limits: Limits) -> Verdict:
    """A GPU within ``limits.temperature_margin_c`` of its slowdown threshold (or memory within that of its
    maximum operating temperature, which DCGM's diagnostic checks as DCGM_FI_DEV_MEM_MAX_OP_TEMP) warns: a
    warmer day or a longer job will slow it down."""
    if (none := _no_gpus(timeline)) is not None:
        return none
    margin = limits.temperature_margin_c
    problems, details = [], {}
    for device in timeline.samples:
        live = timeline.live(device)
        found = []
        entry: dict[str, Any] = {}
        for what, reading, limit, limit_words in (
            ("gpu", "temperature_c", "slowdown_c", "slowdown threshold"),
            ("memory", "memory_temperature_c", "memory_max_c", "maximum memory temperature"),
        ):
            readings = [(s.t_s, getattr(s, reading)) for s in live if available(getattr(s, reading))]
            threshold = next((getattr(s, limit) for s in reversed(live) if available(getattr(s, limit))), None)
            if not readings:
                continue
            peak = max(c for _, c in readings)
            entry[what] = {"peak_c": peak, "threshold_c": threshold}
            if threshold is None or peak < threshold - margin:
                continue
            when = next(t for t, c in readings if c == peak)
            below = threshold - peak
            gap = f"{below} °C below" if below > 0 else "at" if below == 0 else f"{-below} °C above"
            whose = "" if what == "gpu" else "its memory "
            found.append(f"{whose}{peak} °C at {clock(when)}, {gap} its {threshold} °C {limit_words}")
        details[str(device)] = entry
        if found:
            problems.append((device, "; ".join(found)))
    peaks = [v["gpu"]["peak_c"] for v in details.values() if "gpu" in v]
    return _judged(
        problems,
        details,
        fine=f"hottest {max(peaks)} °C, more than {margin} °C below slowdown" if peaks else "temperature not available",
        severity=warn,
        fix="Check the cooling: fans, airflow, blocked inlets, the room's temperature; compare with the other GPUs "
        "in the node. A GPU this close to its threshold slows down on a warmer day or in a longer job.",
        command="nvidia-smi -q -d TEMPERATURE",
    )


@rule("burn.pcie_replay", "PCIe link steady under load")
def pcie_replay(timeline: Timeline, limits: Limits) -> Verdict:
    """A PCIe replay counter that rises by more than ``limits.pcie_replays`` during the run (DCGM's PCIe
    plugin's default limit) means a marginal link: transfers are retried, slowly, and may fail outright."""
    if (none := _no_gpus(timeline)) is not None:
        return none
    problems, details = [], {}
    for device in timeline.samples:
        counts = [s.pcie_replay for s in timeline.live(device) if available(s.pcie_replay)]
        if not counts:
            continue
        rise = max(counts) - counts[0]
        details[str(device)] = {"before": counts[0], "after": max(counts), "rise": rise}
        if rise > limits.pcie_replays:
            problems.append((device, f"{rise} PCIe replays during the run (more than {limits.pcie_replays})"))
    if not details:
        return ok("PCIe replay counters not available", devices=details)
    return _judged(
        problems,
        details,
        fine="no PCIe replays to speak of",
        severity=warn,
        fix="A link that replays under load is marginal: reseat the card or its riser, check the slot, and "
        "compare its link width and generation with the others.",
        command="nvidia-smi -q -d PCI",
    )


# -- the steady state, for the report ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceSummary:
    """A device's steady state: medians over the last window of the run (the peak temperature over all of it)."""

    device: DeviceKey
    samples: int
    window_s: float
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    temperature_c: float | None = None
    temperature_peak_c: float | None = None
    memory_temperature_c: float | None = None
    utilization_gpu_pct: float | None = None
    throughput: float | None = None
    lost: bool = False

    def to_json(self) -> dict[str, Any]:
        from envcheck.core.model import to_jsonable

        data = to_jsonable(self)
        data["device"] = self.device if isinstance(self.device, int) else str(self.device)
        return data


def summarize(timeline: Timeline, limits: Limits | None = None) -> dict[DeviceKey, DeviceSummary]:
    """Each device's steady state over the last window of the run, for the report's table."""
    limits = limits or Limits()
    since = timeline.steady_from(limits)
    width = timeline.end_s - since
    summaries: dict[DeviceKey, DeviceSummary] = {}
    for key in dict.fromkeys([*timeline.samples, *timeline.throughput]):
        samples = timeline.samples.get(key, ()) if isinstance(key, int) else ()
        steady = [s for s in samples if not s.lost and s.t_s >= since]

        def med(name: str, steady: list[Sample] = steady) -> float | None:
            return _median([getattr(s, name) for s in steady if available(getattr(s, name))])

        temps = [s.temperature_c for s in samples if not s.lost and available(s.temperature_c)]
        summaries[key] = DeviceSummary(
            device=key,
            samples=len(samples),
            window_s=width,
            sm_clock_mhz=med("sm_clock_mhz"),
            mem_clock_mhz=med("mem_clock_mhz"),
            power_w=med("power_w"),
            power_limit_w=med("power_limit_w"),
            temperature_c=med("temperature_c"),
            temperature_peak_c=max(temps) if temps else None,
            memory_temperature_c=med("memory_temperature_c"),
            utilization_gpu_pct=med("utilization_gpu_pct"),
            throughput=_median([p.value for p in timeline.throughput.get(key, ()) if p.t_s >= since]),
            lost=any(s.lost for s in samples),
        )
    return summaries
