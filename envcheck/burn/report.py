"""The burn's structured report: ``burn_document(report)``, the envcheck.burn/1 JSON contract.

Every renderer reads this one document, after redaction. It starts with the envelope every envcheck report
carries, then: the options; each device with its steady-state figures (the medians over the run's last
minute), its worker's end and its own verdicts; every verdict over the run with its fix and details; the
lab spec's verdicts; and the ``timeline``, one row per device per sampling round (``interval_s`` apart):
the GPU's telemetry, or the host's for a device without any (the CPU), and ``value``, the device's
throughput at that moment (TFLOP/s; null before its load began or after it ended). ``contention``: other
processes' use of the CPUs over a burn with a CPU device, and each CPU device's ``contended`` (its figures
measure the sharing: the fleet does not compare them). ``interrupted`` says
the run was stopped early (``stopped_by``: SIGINT or SIGTERM) and the report covers what ran.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from envcheck.burn.app import BurnReport, DeviceRun, device_contended
from envcheck.burn.rules import DeviceSummary, summarize
from envcheck.core.model import CheckResult, Status, counts, to_jsonable, worst
from envcheck.core.report import BURN_SCHEMA, GpuIdentity, HostIdentity, Summary, envelope, verdict_of
from envcheck.core.stop import stopped_words
from envcheck.probes.nvml.telemetry import Point

UNIT = "TFLOP/s"


def burn_document(report: BurnReport) -> dict[str, Any]:
    """The whole run as strict JSON values."""
    gpus = [
        GpuIdentity(r.device.index, r.device.model, r.device.uuid, r.device.pci_bus_id)
        for r in report.runs
        if r.device.is_cuda and r.device.index is not None
    ]
    doc = envelope(
        BURN_SCHEMA,
        generated_at=report.generated_at,
        duration_s=report.duration_s,
        host=HostIdentity.here(container=report.container),
        gpus=gpus or None,
    )
    statuses = report.statuses()
    summaries = summarize(report.timeline, report.limits)
    telemetry = report.telemetry
    doc.update(
        {
            "status": worst(statuses).value,
            "interrupted": report.interrupted,
            "stopped_by": (report.stopped_by or "SIGINT") if report.interrupted else None,
            "options": report.request.describe(),
            "unit": UNIT,
            "interval_s": telemetry.interval_s,
            "torch": None if report.torch is None else {"version": report.torch.version, "cuda": report.torch.cuda},
            "devices": [_device(r, summaries.get(r.key), report) for r in report.runs],
            "contention": None if report.contention is None else report.contention.to_json(),
            "verdicts": [v.to_json() for v in report.verdicts],
            "spec": None
            if report.spec_verdicts is None
            else {"path": report.request.spec_path, "verdicts": [v.to_json() for v in report.spec_verdicts]},
            "telemetry": {
                "status": telemetry.status,
                "error": telemetry.error,
                "gpus": to_jsonable(telemetry.gpus),
                "unresolved": list(telemetry.unresolved),
                "hung": telemetry.hung,
                "thread_error": telemetry.thread_error,
            },
            "timeline": timeline_rows(report),
            "counts": counts(statuses),
            "summary": summary(report, statuses),
            "exit_code": int(report.exit_code),
        }
    )
    result: dict[str, Any] = to_jsonable(doc)
    return result


def _device(run: DeviceRun, steady: DeviceSummary | None, report: BurnReport) -> dict[str, Any]:
    own = device_verdicts(run, report.verdicts)
    return {
        **run.device.to_json(),
        "key": str(run.key),
        "nvml_index": run.nvml_index,
        "dtype": run.dtype,
        "status": worst([Status(v["status"]) for v in own]).value if own else Status.SKIP.value,
        "load_s": None if run.load_s is None else round(run.load_s, 3),
        "working_set": dict(run.shape) if run.shape else None,
        "checked": run.compared,
        "mismatches": run.mismatched,
        "max_abs_diff": run.max_abs_diff,
        "steady": steady.to_json() if steady is not None else None,
        "contended": device_contended(run.device, report.contention),
        "verdicts": own,
        "worker": run.worker.to_json() if run.worker is not None else None,
        "error": run.error,
    }


def device_verdicts(run: DeviceRun, verdicts: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """Each verdict as it concerns this device: its own words where the verdict names it, the verdict's
    status otherwise only when it is not a problem (a problem on another device is not this one's)."""
    names = {str(run.key), run.device.name}
    own = []
    for v in verdicts:
        problems = v.details.get("problems") or {}
        mine = next((problems[n] for n in names if n in problems), None)
        if mine is not None:
            own.append({"id": v.id, "status": v.status.value, "summary": mine})
        elif v.status in (Status.OK, Status.SKIP, Status.CRASH) or not problems:
            own.append({"id": v.id, "status": v.status.value, "summary": v.summary})
        else:
            own.append({"id": v.id, "status": Status.OK.value, "summary": "not this device"})
    return own


def timeline_rows(report: BurnReport) -> list[dict[str, Any]]:
    """One row per device per sampling round, in time order: ``{t_s, device, ...telemetry..., value}``."""
    telemetry = report.telemetry
    interval = telemetry.interval_s
    rows: list[tuple[float, int, dict[str, Any]]] = []
    for order, run in enumerate(report.runs):
        points = list(telemetry.values.get(run.key, ()))
        samples = telemetry.samples.get(run.key) if isinstance(run.key, int) else None
        if samples:
            for s in samples:
                row = {**s.to_json(), "device": run.device.name, "nvml_index": s.device}
                row["value"] = value_at(points, s.t_s, interval)
                rows.append((s.t_s, order, row))
        else:
            for h in telemetry.host:
                row = {"t_s": h.t_s, "device": run.device.name, **h.to_json()}
                row["value"] = value_at(points, h.t_s, interval)
                rows.append((h.t_s, order, row))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [{**row, "t_s": round(row["t_s"], 3)} for _, _, row in rows]


def value_at(points: Sequence[Point], t_s: float, interval_s: float) -> float | None:
    """The throughput point nearest ``t_s``, if one lies within an interval of it (None: not loading then)."""
    if not points:
        return None
    times = [p.t_s for p in points]
    at = bisect.bisect_left(times, t_s)
    near = [points[i] for i in (at - 1, at) if 0 <= i < len(points)]
    best = min(near, key=lambda p: abs(p.t_s - t_s))
    return round(best.value, 6) if abs(best.t_s - t_s) <= interval_s else None


def summary(report: BurnReport, statuses: list[Status]) -> dict[str, Any]:
    """The one line every format ends with, and its verdict word."""
    from envcheck.core.units import duration_text

    loaded = [r.load_s for r in report.runs if r.load_s is not None]
    ran = duration_text(round(max(loaded), 1)) if loaded else "0 s"
    n = len(report.runs)
    devices = f"{n} device{'s' if n != 1 else ''}"
    problems = [v for v in report.verdicts if v.status in (Status.FAIL, Status.CRASH)]
    below = [v for v in report.spec_verdicts or () if v.passed is False]
    verdict = verdict_of(statuses, interrupted=report.interrupted)
    if verdict == "interrupted":
        by = stopped_words(report.stopped_by)
        text = f"interrupted by {by} after {ran} on {devices}: the report covers what ran"
    elif verdict == "failed":
        what = ", ".join(v.id for v in problems) or f"{len(below)} spec requirement(s) not met"
        text = f"burn-in failed: {what} ({devices}, {ran})"
    elif verdict == "warnings":
        text = f"burn-in passed with warnings ({devices}, {ran})"
    else:
        text = f"burn-in passed: {devices} for {ran}, every result matched"
    return Summary(verdict, text).to_json()
