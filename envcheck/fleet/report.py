"""The fleet's structured report: ``fleet_document(report)``, the envcheck.fleet/1 JSON contract.

Every renderer (text, JSON, Markdown, and later HTML) reads this one document, after redaction. It starts
with the envelope every envcheck report carries (its ``host`` is the machine that merged), then:

* ``nodes``: every node, the failing first, with its status, the reports it rests on and the failing
  items (``failing``) and warnings (``warnings``) of those reports, each with its fix, and its slow devices;
* ``drift``: each field with more than one value across the fleet, each value with its hosts, the
  majority first; ``by_model`` true where the values differ only between GPU models (pools built apart:
  each value with its ``models`` too), which is not warned of; ``uniform``: the fields the whole fleet
  agrees on;
* ``slow_gpus`` and ``slow_cpus``: each device more than ``threshold`` below its model's fleet median;
* ``comparisons``: every (benchmark, model) group with its median and every device's figure, slow or
  not — what a chart of the fleet draws;
* ``duplicates``: a GPU UUID on two hosts, a host with two reports of one kind;
* ``skipped``: each source not merged and why; ``summary``: the counts and the one line every format ends with;
* ``problems``: what the reports show first, one entry per (report, check, verdict) across the fleet with
  its nodes and fixes, and one per slow device model, the worst and most common first;
* ``slow_devices``: the slow devices by host, each with its slow figures (``summary.slow_gpus`` counts
  these devices; ``summary.slow_gpu_figures`` the figures, which ``slow_gpus`` lists one by one);
* ``figures``: every compared device's figures, as columns: ``devices`` (by GPU UUID: a card that moved
  hosts is still the same card; a CPU by ``host/device``), ``hosts`` aligned with them, and ``values``
  (figure -> a list aligned with ``devices``); with each node's ``failing``, what the next run's
  ``--since`` compares against;
* ``since`` (with ``--since``): what changed since a previous fleet report (envcheck.fleet.since).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from envcheck.core.model import Status, to_jsonable, worst
from envcheck.core.redact import remembered, scrubber
from envcheck.core.report import FLEET_SCHEMA, HostIdentity, Summary, envelope, verdict_of
from envcheck.fleet.kinds import Problem
from envcheck.fleet.merge import (
    Comparison,
    Device,
    Drift,
    Figure,
    FleetReport,
    Node,
    ProblemGroup,
    SlowDevice,
    Words,
    field_title,
)
from envcheck.fleet.since import device_key, figure_key


def fleet_document(
    report: FleetReport,
    *,
    generated_at: datetime,
    duration_s: float,
    previous: dict[str, Any] | None = None,
    previous_source: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole merge as strict JSON values; with ``previous`` (a fleet document already checked by
    envcheck.fleet.since.check_previous), what changed since it.

    Its bulk (:data:`BUILT_AS_JSON`) is redacted as it is built, each distinct string once, with the
    redactor every report goes through (envcheck.core.redact, over ``env``, by default this process's
    environment): the walk over the finished document that delivery makes for every report took as long
    as the merge at 10 000 nodes, so the command tells delivery these parts are done."""
    clean = remembered(scrubber(os.environ if env is None else env))
    compared = report.comparisons
    # Each figure as one Python float, which the chart's sorted values and the devices' columns both hold:
    # made once per part from the arrays, they were a million floats for 10 000 nodes, a sixth of the
    # document's memory.
    values = [list(c.values) for c in compared]
    doc = envelope(FLEET_SCHEMA, generated_at=generated_at, duration_s=duration_s, host=HostIdentity.here())
    doc.update(
        {
            "status": report.status.value,
            "exit_code": int(report.exit_code),
            "threshold": report.threshold,
            "summary": summary(report),
            "nodes": _nodes(report.nodes, clean),
            # every field with more than one value, as ever; those whose values differ only between GPU
            # models (pools built apart) with "by_model" true: listed, not warned of
            "drift": [_drift(d) for d in report.drift],
            "uniform": [
                {"field": name, "title": field_title(name), "value": value, "nodes": count}
                for name, value, count in report.uniform
            ],
            "slow_gpus": [slow_figure(f) for f in report.slow_gpus],
            "slow_cpus": [slow_figure(f) for f in report.slow_cpus],
            "comparisons": [_comparison(c, v, report.threshold, clean) for c, v in zip(compared, values, strict=True)],
            "duplicates": {
                "hosts": [
                    {"hostname": d.hostname, "kind": d.kind, "sources": list(d.sources), "newest": d.newest}
                    | ({"copies": True} if d.copies else {})
                    for d in report.duplicate_hosts
                ],
                "gpus": [
                    {"uuid": d.uuid, "hosts": list(d.hosts), "sources": list(d.sources)} for d in report.duplicate_gpus
                ],
            },
            "skipped": [s.to_json() for s in report.skipped],
            # taken while other work held the CPUs: not compared, so never "slow"
            "contended": [
                {
                    "why": r.set_apart,
                    "hostname": hostname,
                    "device": r.device,
                    "id": r.group.id,
                    "model": r.group.model,
                    "value": r.value,
                    "unit": r.group.unit,
                    "source": source,
                }
                for r, hostname, source in report.contended
            ],
            "problems": [_problem_group(g, clean) for g in report.problems],
            "slow_devices": slow_by_host(report.slow_devices),
            "figures": device_figures(report.devices, compared, clean, values),
        }
    )
    # The bulk of a large fleet's document (its nodes, problems, comparisons and figures: millions of
    # values for 10 000 nodes) is JSON values as built: strings as the readers decoded them (valid
    # Unicode: envcheck.fleet.read makes the standard parser's lone surrogates displayable), figures
    # finite (envcheck.fleet.kinds), verdicts as their words. So only the rest goes through
    # to_jsonable, whose walk over the whole took as long as the merge; each part keeps its place.
    order = list(doc)
    bulk = {key: doc.pop(key) for key in BUILT_AS_JSON}
    if previous is not None:
        from envcheck.fleet.since import changes

        doc["since"] = changes(previous, {**doc, **bulk}, report.threshold, source=previous_source)
        order.append("since")
        slower = len({s["device"] for s in doc["since"]["slower"]})
        vanished = len(doc["since"]["vanished"])
        if slower or vanished:
            # Devices slower than they were, all alike (a driver rolled out to every node): no median of
            # this run shows it; a node that no longer reports (dead, drained, unreachable) has no report
            # here to fail. So the comparison with the last run warns, and the line every format ends with
            # (the HTML page's title) says so.
            doc["summary"] = summary(report, slower, vanished)
            if doc["status"] == Status.OK.value:
                doc["status"] = Status.WARN.value
    plain = to_jsonable(doc)
    return {key: bulk[key] if key in bulk else plain[key] for key in order}


#: The parts of the fleet document built as JSON values and redacted as they are built (see
#: :func:`fleet_document`): what the command tells delivery not to walk again.
BUILT_AS_JSON = ("nodes", "comparisons", "problems", "figures")


def _problem_group(g: ProblemGroup, clean: remembered) -> dict[str, Any]:
    out: dict[str, Any] = {
        "report": clean(g.report),
        "id": clean(g.id),
        "status": g.status.value,
        "key": clean(g.key),
        "summary": clean(g.summary),
        "count": len(g.nodes),
        "nodes": clean.all(g.nodes),
        # the most common fix; every distinct one (at most a few) with its nodes in ``fixes``
        "fix": clean.record(g.fixes[0].fix) if g.fixes and g.fixes[0].fix else None,
        "fixes": [{"fix": clean.record(f.fix) if f.fix else None, "nodes": clean.all(f.nodes)} for f in g.fixes],
        "more_fixes": g.more_fixes,
        # distinct summaries among its nodes: above one, each node's words are in its own list
        "wordings": g.wordings,
        # its nodes' words name different devices: each node's list says which (shown with the node)
        "own_words": g.own_words,
    }
    if _said_safely(g.said, g.summary, clean):  # its words as true of each node that says them in other numbers
        out["said"] = clean(g.said)
    if g.words:  # those words, each with its nodes (a few; the rest in each node's list)
        out["words"] = [_words(w, clean) for w in g.words]
    if g.odd:  # most of its nodes say the same: those that say otherwise
        out["odd"] = clean.all(g.odd)
    if g.id.startswith("slow."):
        out.update(model=clean(g.model) if g.model else g.model, devices=g.devices, figures=g.figures)
    return out


def _said_safely(said: str | None, summary: str, clean: remembered) -> bool:
    """Whether words said as one (:func:`envcheck.fleet.kinds.spanned`) may be written: not where the words
    hold something redacted (a token whose digits differ by node, said "hf_x12 or hf_x34…", would no longer
    read as a token to the redactor); there the first node's words, redacted, are said."""
    return said is not None and clean(summary) == summary


def _words(w: Words, clean: remembered) -> dict[str, Any]:
    """One thing a problem's nodes say: its first words and its nodes, and where its nodes say it in more
    than one wording (numbers that differ), those words as true of each (``said``) and how many wordings."""
    out: dict[str, Any] = {"summary": clean(w.summary), "nodes": clean.all(w.nodes)}
    if _said_safely(w.said, w.summary, clean):
        out.update(said=clean(w.said), wordings=w.wordings)
    return out


def slow_by_host(devices: list[SlowDevice]) -> list[dict[str, Any]]:
    """The slow devices grouped by host (already in host order), each with its slow figures."""
    hosts: dict[str, list[dict[str, Any]]] = {}
    for d in devices:
        hosts.setdefault(d.hostname, []).append(
            {
                "device_kind": d.device_kind,
                "device": d.device,
                "index": d.index,
                "uuid": d.uuid,
                "pci_bus_id": d.pci_bus_id,
                "model": d.model,
                "figures": [
                    {
                        "id": f.id,
                        "value": f.value,
                        "unit": f.unit,
                        "fleet_median": f.fleet_median,
                        "shortfall": f.shortfall,
                        "quick": f.quick,
                    }
                    for f in d.figures
                ],
            }
        )
    return [{"hostname": host, "devices": found} for host, found in hosts.items()]


def device_figures(
    devices: tuple[Device, ...],
    comparisons: tuple[Comparison, ...],
    clean: remembered,
    values: list[list[float]] | None = None,
) -> dict[str, Any]:
    """Every compared device's figures as columns: ``devices`` (each device's key), ``hosts`` (its host,
    aligned) and ``values`` (figure -> a list aligned with ``devices``, null where the device has no
    such figure). A fleet of 10 000 8-GPU nodes keeps 480 000 figures here: an object per device, or a
    device key per figure, made this the largest part of the document and of its time to write."""
    columns: dict[str, list[float | None]] = {}
    for c, figures in zip(comparisons, values or [c.values for c in comparisons], strict=True):
        name = clean(figure_key(c.id, c.quick))
        column = columns.get(name)
        if column is None:
            # the figure's first group: a device is in it once, so its figures go in as they are
            column = columns[name] = [None] * len(devices)
            deque(map(column.__setitem__, c.positions, figures), maxlen=0)
            continue
        for at, value in zip(c.positions, figures, strict=True):
            # one device in two groups of a benchmark (its model named in one report, not in another):
            # its best figure, as the merge keeps within a group
            held = column[at]
            if held is None or value > held:
                column[at] = value
    return {
        "devices": clean.all([device_key(d.hostname, d.device, d.uuid) for d in devices]),
        "hosts": clean.all([d.hostname for d in devices]),
        "values": columns,
    }


def slow_figure(f: Figure) -> dict[str, Any]:
    """A slow device, named every way an admin may look for it: host and index, UUID, PCI bus id."""
    return {
        "hostname": f.hostname,
        "index": f.index,
        "uuid": f.uuid,
        "pci_bus_id": f.pci_bus_id,
        "device": f.device,
        "id": f.id,
        "model": f.model,
        "unit": f.unit,
        "value": f.value,
        "fleet_median": f.fleet_median,
        "shortfall": f.shortfall,
        "quick": f.quick,
        "source": f.source,
    }


def _nodes(nodes: tuple[Node, ...], clean: remembered) -> list[dict[str, Any]]:
    """Each node as JSON, redacted. A problem's words and fix are the same on every node that has it
    (ten thousand nodes failing one check): they are redacted and made once, and each node's entry
    adds its own source."""
    made: dict[tuple[Any, ...], dict[str, Any]] = {}

    def problem(p: Problem) -> dict[str, Any]:
        try:
            key = (p.report, p.id, p.status, p.summary, tuple(p.fix.items()) if p.fix else None)
            shared = made.get(key)
        except TypeError:  # a fix made by hand that holds a list: made for this node alone
            key, shared = None, None
        if shared is None:
            shared = clean.record(p.to_json())
            if key is not None:
                made[key] = shared
        return {**shared, "source": clean(p.source)}  # Problem.to_json's keys, in its order

    return [_node(n, clean, problem) for n in nodes]


def _node(node: Node, clean: remembered, problem: Callable[[Problem], dict[str, Any]]) -> dict[str, Any]:
    return {
        "hostname": clean(node.hostname),
        "status": node.status.value,
        "reports": [clean.record(r.to_json()) for r in node.reports],
        "failing": [problem(p) for p in node.failing],
        "warnings": [problem(p) for p in node.warnings],
        "slow": [
            {
                "id": clean(f.id),
                "device": clean(f.device),
                "index": f.index,
                "uuid": clean(f.uuid) if f.uuid else f.uuid,
                "shortfall": f.shortfall,
            }
            for f in node.slow
        ],
    }


def _comparison(c: Comparison, values: list[float], threshold: float, clean: remembered) -> dict[str, Any]:
    return {
        "id": clean(c.id),
        "device_kind": clean(c.device_kind),
        "model": clean(c.model),
        "unit": clean(c.unit),
        "quick": c.quick,
        "fleet_median": c.median,
        # Below this figure a device is slow: where a chart draws its line (none for a host-bound one).
        "slow_below": None if c.host_bound else c.median * (1 - threshold),
        "devices": len(c.values),
        "slow": len(c.slow),
        # a host-bound benchmark (host copies): charted, never judged slow
        "host_bound": c.host_bound,
        # Every device's figure, ascending: a strip or a histogram of the fleet (the slow ones are named,
        # with host, index, UUID and PCI bus id, in slow_gpus and slow_cpus).
        "values": sorted(values),  # c.ordered, as the same float objects the figures' columns hold
    }


def _drift(d: Drift) -> dict[str, Any]:
    """A field's values, each with its nodes (and, where they differ by GPU model, its models)."""
    values = [{"value": v, "count": len(hosts), "hosts": list(hosts)} for v, hosts in d.values]
    if d.models is not None:
        for value, models in zip(values, d.models, strict=True):
            value["models"] = list(models)
    return {"field": d.field, "title": d.title, "by_model": d.by_model, "values": values}


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def summary(report: FleetReport, slower: int = 0, vanished: int = 0) -> dict[str, Any]:
    """The counts, and the one line every format ends with; ``slower``: the devices slower than in a
    previous report (``--since``), ``vanished``: its nodes with no report now, which warn where nothing
    else does."""
    statuses = [n.status for n in report.nodes]
    failing = sum(s.is_problem for s in statuses)
    warned = sum(s.value == "warn" for s in statuses)
    hosts_twice = len({d.hostname for d in report.duplicate_hosts})  # hosts, not (host, kind)
    counts = {
        "nodes": len(report.nodes),
        "failing": failing,
        "warnings": warned,
        "ok": len(report.nodes) - failing - warned,
        "reports_read": report.reports_read,
        "skipped": len(report.skipped),
        "drift_fields": len(report.drifting),
        "by_model_fields": len(report.by_model),
        # devices, not figures: one GPU slow in nine benchmarks is one slow GPU
        "slow_gpus": sum(d.device_kind == "gpu" for d in report.slow_devices),
        "slow_cpus": sum(d.device_kind != "gpu" for d in report.slow_devices),
        "slow_gpu_figures": len(report.slow_gpus),
        "slow_cpu_figures": len(report.slow_cpus),
        "problems": len(report.problems),
        "duplicate_hosts": hosts_twice,
        "duplicate_gpus": len(report.duplicate_gpus),
        "contended": sum(r.contended for r, _, _ in report.contended),
        "noisy": sum(r.set_apart == "noisy" for r, _, _ in report.contended),
    }
    parts = [f"{failing} failing" if failing else "none failing"]
    if warned:
        parts.append(f"{warned} with warnings")
    for kind, word in (("gpu", "GPU"), ("cpu", "CPU")):
        devices, figures = counts[f"slow_{kind}s"], counts[f"slow_{kind}_figures"]
        if devices:
            parts.append(_plural(devices, f"slow {word}") + (f" in {figures} figures" if figures != devices else ""))
    if report.drifting:
        parts.append(f"{_plural(len(report.drifting), 'field')} drifting")
    # a report copied to another node shows its eight cards twice: one duplicate, not eight
    duplicates = hosts_twice + len({d.hosts for d in report.duplicate_gpus})
    if duplicates:
        parts.append(f"{_plural(duplicates, 'duplicate')}")
    if vanished:
        parts.append(f"{_plural(vanished, 'node')} vanished since the previous report")
    if slower:
        parts.append(f"{_plural(slower, 'device')} slower than in the previous report")
    read = f"{_plural(report.reports_read, 'report')} read"
    if report.skipped:
        read += f", {len(report.skipped)} skipped"
    apart = [_plural(counts[why], f"{why} figure") for why in ("contended", "noisy") if counts[why]]
    if apart:
        read += f", {', '.join(apart)} not compared"
    text = f"{_plural(len(report.nodes), 'node')}: {', '.join(parts)} ({read})"
    status = report.status if not (slower or vanished) else worst([report.status, Status.WARN])
    return Summary(verdict_of([status]), text, counts).to_json()
