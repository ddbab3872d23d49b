"""``envcheck fleet --since PREVIOUS.json``: what changed since a previous fleet report.

A fleet is run again after a fix or a maintenance window, and the question is then the difference: which
failures are new and which are resolved, which nodes appeared or vanished, and which devices got slower.
Both sides are fleet documents (the previous one as it was written, the new one before it is rendered),
so the comparison is over what the document keeps for it: each node's ``failing`` items (matched by
report, check and verdict) and ``figures`` (each compared device's figures, by GPU UUID: a card that
moved hosts is still the same card; a CPU by host and name).

A failure is *new* on a node that did not have it before, including a node that appeared (a slow device
the previous report has no figure of is slow at its *first measure*, listed apart: it may always have
been); it is
*resolved* on a node that had it and is still there without it (a node that vanished resolved nothing:
it is listed as vanished). A node's slow devices count as one of its failures (``fleet slow.gpu fail``):
a GPU back to its siblings' pace is a resolved failure; a slow card moved to another node, followed by
its UUID, is neither resolved nor new. A device is *slower* when one of its figures fell
by more than the threshold: a fleet-wide regression (a driver rolled out to every node) that no median
of this run can show, which the command makes a warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, NamedTuple, TypedDict

import msgspec

from envcheck.core.report import FLEET_SCHEMA, kind_of
from envcheck.fleet.kinds import MAX_FIGURE, figure_value
from envcheck.fleet.merge import host_key

#: How ``figures`` names a ``--quick`` run's figure (:func:`figure_key`).
QUICK = " --quick"


# What the fleet document's ``figures`` names each figure and device by: written by envcheck.fleet.report,
# and read back here, from this run's document and a previous one's.


def figure_key(bench_id: str, quick: bool) -> str:
    """A figure's name in ``figures``: a ``--quick`` run's is compared only with a ``--quick`` run's."""
    return f"{bench_id}{QUICK}" if quick else bench_id


def device_key(hostname: str, device: str, uuid: str | None) -> str:
    """A device's name in ``figures``: its UUID (a card that moved hosts is still the same card), else
    its host and bench name (a CPU)."""
    return uuid or f"{hostname}/{device}"


class PreviousError(ValueError):
    """The previous report cannot be compared with (the command's message, exit 2)."""


def _version(schema: str) -> int:
    return int(schema.rpartition("/")[2])


class _PreviousReport(TypedDict, total=False):
    kind: Any


class _PreviousNode(TypedDict, total=False):
    hostname: Any
    failing: Any
    slow: Any
    reports: list[_PreviousReport]


class _PreviousComparison(TypedDict, total=False):
    id: Any
    quick: Any
    host_bound: Any


class _Previous(TypedDict, total=False):
    """What :func:`changes` reads of a previous fleet document, and no more: its nodes' failures, slow
    devices and kinds of report, its figures, and which benchmarks were host-bound. Read whole, a 10 000-node
    fleet's previous report (40 MB) doubled the command's memory; its nodes' warnings and reports' sources,
    the problems, drift and comparisons' figures are never read."""

    schema: Any
    generated_at: Any
    nodes: list[_PreviousNode]
    figures: Any
    comparisons: list[_PreviousComparison]


_PREVIOUS = msgspec.json.Decoder(_Previous)


def check_previous(text: bytes | str, source: str) -> dict[str, Any]:
    """The previous fleet document, or :class:`PreviousError` saying why it is not one this envcheck reads.

    The parts :func:`changes` reads are decoded alone (:class:`_Previous`); a document the typed decoder
    refuses (not UTF-8, not strict JSON, a node that is not an object) is read whole by the standard parser,
    which reads what it can of it and says what is wrong in the fleet reader's words."""
    doc: Any = None
    if isinstance(text, bytes):
        try:
            doc = _PREVIOUS.decode(text)
        except (msgspec.DecodeError, RecursionError):
            doc = None
    if doc is None:
        doc = _read_whole(text, source)
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if kind_of(schema) != "fleet" or not isinstance(schema, str):
        what = f"its schema is {schema}" if isinstance(schema, str) else "it has no envcheck schema"
        raise PreviousError(f"{source} is not an envcheck fleet report ({what})")
    if _version(schema) > _version(FLEET_SCHEMA):
        raise PreviousError(f"{source} is a fleet report of a newer envcheck ({schema}; this one reads {FLEET_SCHEMA})")
    if not isinstance(doc.get("nodes"), list):
        raise PreviousError(f"{source} is a fleet report without its nodes")
    _compact(doc)
    return doc


#: What :func:`changes` reads of a node's failing item, and says of it.
_ITEM_KEYS = ("report", "id", "status", "summary", "fix", "device_key")


def _compact(doc: dict[str, Any]) -> None:
    """The previous nodes' failing items kept as :func:`changes` reads them, and each text once (the
    figures' host of each device too): a fleet's nodes share most of their words and fixes (a failure on
    every node), and 20 000 items, each with its source and its own copy of each text, were most of what a
    10 000-node previous report held."""
    texts: dict[str, str] = {}
    fixes: dict[Any, Any] = {}

    def once(value: Any) -> Any:
        return texts.setdefault(value, value) if type(value) is str else value

    figures = doc.get("figures")
    if isinstance(figures, dict) and isinstance(figures.get("hosts"), list):
        figures["hosts"] = [once(h) for h in figures["hosts"]]
    for node in doc["nodes"]:
        failing = node.get("failing") if isinstance(node, dict) else None
        if not isinstance(failing, list):
            continue
        kept = []
        for item in failing:
            if isinstance(item, dict):
                item = {k: once(item[k]) for k in _ITEM_KEYS if k in item}
                fix = item.get("fix")
                if isinstance(fix, dict) and all(type(v) is str for v in fix.values()):
                    item["fix"] = fixes.setdefault(tuple(fix.items()), {k: once(v) for k, v in fix.items()})
            kept.append(item)
        node["failing"] = kept


def _read_whole(text: bytes | str, source: str) -> Any:
    """A previous document the typed decoder refused, read as the standard parser reads it."""
    from envcheck.fleet.read import broken

    try:
        # as json.loads reads bytes: UTF-8 with or without its byte-order mark, or UTF-16/32
        text = text.decode(json.detect_encoding(text), "surrogatepass") if isinstance(text, bytes) else text
    except UnicodeDecodeError as exc:
        raise PreviousError(f"{source} is not text (a byte {exc.object[exc.start]:#04x} at {exc.start})") from None
    if not text.strip():
        raise PreviousError(f"{source} is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:  # truncated, or not JSON: in the words the fleet's reader uses
        if exc.msg == "Extra data":  # a whole document, and more after it (a stray line appended)
            raise PreviousError(
                f"{source} is not one JSON document: more follows it at line {exc.lineno}, column {exc.colno}"
            ) from None
        raise PreviousError(f"{source} {broken(exc, text, 0, True)}") from None
    except (ValueError, RecursionError) as exc:
        raise PreviousError(f"{source} is not JSON ({exc})") from None
    return doc


def _failing(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """hostname -> {problem key: the item}: each node's failures, as the document states them."""
    from envcheck.fleet.merge import problem_key

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for node in doc.get("nodes") or []:
        if not isinstance(node, dict) or not isinstance(node.get("hostname"), str):
            continue
        items = out.setdefault(node["hostname"], {})
        failing = node.get("failing")
        for item in failing if isinstance(failing, list) else []:
            # a hand-edited item whose words are not words (a list, a number) matches nothing
            if isinstance(item, dict) and all(type(item.get(k)) is str for k in ("report", "id", "status")):
                if "device_key" in item and type(item["device_key"]) is not str:
                    # only a slow device's item names its device, and by a string (_slow_item)
                    item = {k: v for k, v in item.items() if k != "device_key"}
                items.setdefault(problem_key(item["report"], item["id"], item["status"]), item)
        slow = node.get("slow")
        for figure in slow if isinstance(slow, list) else []:
            if isinstance(figure, dict):
                item = _slow_item(node["hostname"], figure)
                items.setdefault(f"{problem_key('fleet', item['id'], 'fail')}/{item['device_key']}", item)
    return out


def _slow_item(hostname: str, figure: dict[str, Any]) -> dict[str, Any]:
    """A slow device of a node's ``slow`` list as one of its failures: one per device (however many of
    its figures are slow), known by its UUID, else its host and bench name, as ``figures`` knows it."""
    device = str(figure.get("device") or "?")
    uuid = figure.get("uuid") if isinstance(figure.get("uuid"), str) else None
    kind = "gpu" if uuid or device.startswith("cuda") else "cpu"
    index = figure.get("index")
    where = f"GPU {index}" if kind == "gpu" and type(index) is int else device
    return {
        "report": "fleet",
        "id": f"slow.{kind}",
        "status": "fail",
        "summary": f"slow {where} (below the fleet median)",
        "device_key": device_key(hostname, device, uuid),
    }


def _slow_hosts(failing: dict[str, dict[str, dict[str, Any]]]) -> dict[str, set[str]]:
    """Each slow device (as ``figures`` names it) among a run's failures, with the hosts it is slow on."""
    out: dict[str, set[str]] = {}
    for host, items in failing.items():
        for item in items.values():
            if "device_key" in item:
                out.setdefault(item["device_key"], set()).add(host)
    return out


def _keyed(
    failing: dict[str, dict[str, dict[str, Any]]],
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, str]]:
    """A run's failures (:func:`_failing`) by :func:`~envcheck.fleet.merge.host_key`, and each key's spelling
    (the first): a fleet report written before hosts were matched so may name one host in two spellings."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    names: dict[str, str] = {}
    for host, items in failing.items():
        key = host_key(host)
        names.setdefault(key, host)
        merged = out.setdefault(key, {})
        for k, item in items.items():
            merged.setdefault(k, item)
    return out, names


def _kinds(doc: dict[str, Any]) -> dict[str, set[Any]]:
    """hostname -> the kinds of report the document's node rests on."""
    out: dict[str, set[Any]] = {}
    for node in doc.get("nodes") or []:
        if isinstance(node, dict) and isinstance(node.get("hostname"), str):
            reports = node.get("reports")
            out[node["hostname"]] = {
                r["kind"]
                for r in (reports if isinstance(reports, list) else [])
                if isinstance(r, dict) and type(r.get("kind")) is str
            }
    return out


def _by_key(found: dict[str, dict[str, Any]], *, in_order: bool = False) -> list[dict[str, Any]]:
    """{key: {"item", "nodes"}} as a list, the most nodes first, then by key, or (``in_order``) as found: the
    resolved, whose words are gone with them, keep the order of the lists they were found in."""
    ranked = sorted(found.items(), key=lambda kv: (-len(kv[1]["nodes"]), "" if in_order else kv[0]))
    return [
        {
            "key": key,
            "report": entry["item"].get("report"),
            "id": entry["item"].get("id"),
            "status": entry["item"].get("status"),
            "summary": entry["item"].get("summary"),
            "fix": entry["item"].get("fix"),
            "count": len(entry["nodes"]),
            "nodes": entry["nodes"],
        }
        for key, entry in ranked
    ]


class _Figures(NamedTuple):
    """A fleet document's ``figures`` as they are written: each device's place (its last, as a dict of them
    keeps), its host, and each figure's column as it is. A dict of devices per figure cost six dicts of
    80 000 entries for each side of a 10 000-node fleet; a value is read where it is compared."""

    at: dict[str, int]
    hosts: list[Any]
    #: each figure's column, with None where a value is not a figure
    columns: dict[str, list[Any]]

    def host(self, device: str) -> str | None:
        host = self.hosts[self.at[device]] if device in self.at else None
        return host if isinstance(host, str) else None

    def measured(self) -> set[str]:
        """The devices with at least one figure."""
        return {device for figure in self.columns for device, _ in self.figures(figure)}

    def figures(self, figure: str) -> Iterator[tuple[str, Any]]:
        """Each device's figure in a column, where it has one."""
        column = self.columns[figure]
        n = len(column)
        return ((d, column[at]) for d, at in self.at.items() if at < n and column[at] is not None)


def _figures_only(column: list[Any]) -> list[Any]:
    """A column with None for each value that is not a figure (figure_value; a float tested here first: a
    10 000-node fleet's columns hold half a million)."""
    return [v if (0.0 < v <= MAX_FIGURE if type(v) is float else figure_value(v) is not None) else None for v in column]


def _figures(doc: dict[str, Any]) -> _Figures:
    """A fleet document's ``figures``; empty where the document has none, or holds them in another shape (a
    hand-edited or foreign file: what is not a positive number is not a figure)."""
    figures = doc.get("figures")
    figures = figures if isinstance(figures, dict) else {}
    devices, hosts, values = figures.get("devices"), figures.get("hosts"), figures.get("values")
    if not isinstance(devices, list) or not isinstance(values, dict):
        return _Figures({}, [], {})
    hosts = hosts if isinstance(hosts, list) and len(hosts) == len(devices) else [None] * len(devices)
    at = {d: i for i, d in enumerate(devices) if isinstance(d, str)}
    columns = {figure: _figures_only(column) for figure, column in values.items() if isinstance(column, list)}
    return _Figures(at, hosts, columns)


def _keeps_figures(doc: dict[str, Any]) -> bool:
    """Whether a fleet document keeps its devices' figures (``figures`` of the shape :func:`_figures` reads,
    empty where the run measured nothing): one written before the fleet kept them cannot say which devices
    it measured."""
    figures = doc.get("figures")
    if not isinstance(figures, dict) or not isinstance(figures.get("devices"), list):
        return False
    values = figures.get("values")
    return isinstance(values, dict) and all(isinstance(column, list) for column in values.values())


def _host_bound(doc: dict[str, Any]) -> set[str]:
    """The figures (as ``figures`` names them) of host-bound benchmarks: charted, never judged."""
    comparisons = doc.get("comparisons")
    return {
        figure_key(str(c.get("id")), c.get("quick") is True)
        for c in (comparisons if isinstance(comparisons, list) else [])
        if isinstance(c, dict) and c.get("host_bound") is True
    }


def changes(
    previous: dict[str, Any], current: dict[str, Any], threshold: float, *, source: str | None = None
) -> dict[str, Any]:
    """The ``since`` section of ``current``: new and resolved failures, nodes that appeared or vanished,
    and devices whose figures fell by more than ``threshold``."""
    # hosts matched as the merge matches them (merge.host_key: NODE-5 last time is node-5 now), each said in
    # this run's spelling where it is in this run
    (before, before_names), (now, now_names) = _keyed(_failing(previous)), _keyed(_failing(current))
    new: dict[str, dict[str, Any]] = {}
    first: dict[str, dict[str, Any]] = {}
    resolved: dict[str, dict[str, Any]] = {}
    old = _figures(previous)
    # A device the previous report kept no figure of (a node that appeared, a bench not run then) was not
    # measured then: slow now, it is slow at its first measure, which says nothing of a change. Where the
    # previous report keeps no figures at all (written before the fleet kept them), it cannot be told.
    measured_before = old.measured()
    keeps_figures = _keeps_figures(previous)
    # A slow device is followed by its UUID, not its host: a slow card moved to another node is neither
    # resolved where it was nor new where it is (it is the same card, still slow).
    was_on, is_on = _slow_hosts(before), _slow_hosts(now)
    slow_before, slow_now = was_on.keys(), is_on.keys()
    for host, items in now.items():
        had = before.get(host, {})
        for key in items.keys() - had.keys():
            device = items[key].get("device_key")
            if device in slow_before:
                continue
            unmeasured = device is not None and keeps_figures and device not in measured_before
            entry = (first if unmeasured else new).setdefault(key, {"item": items[key], "nodes": []})
            entry["nodes"].append(now_names[host])
    # Resolved only where this run looked again: a node's report of the item's kind is here (a doctor
    # report that went missing resolved nothing), and a slow device has figures in this run.
    kinds: dict[str, set[Any]] = {}
    for host, found in _kinds(current).items():
        kinds.setdefault(host_key(host), set()).update(found)
    every_kind = set().union(*kinds.values()) if kinds else set()
    now_figures = _figures(current)
    measured = now_figures.at
    for host, items in before.items():
        if host not in now:
            continue
        # in the order the node's list had them (the order its benchmarks ran), as the new are named
        for key in [k for k in items if k not in now[host]]:
            item = items[key]
            if "device_key" in item:
                looked = item["device_key"] in measured and item["device_key"] not in slow_now
            else:  # a comm report names the hosts of its ranks from the host of rank 0
                kind = item.get("report")
                looked = kind in kinds.get(host, ()) or (kind == "comm" and kind in every_kind)
            if looked:
                resolved.setdefault(key, {"item": item, "nodes": []})["nodes"].append(now_names[host])
    for entry in (*new.values(), *first.values(), *resolved.values()):
        entry["nodes"].sort()
    slower = []
    host_bound = _host_bound(current)
    for figure in now_figures.columns:
        if figure not in old.columns or figure in host_bound:  # a host copy moves with the socket: not judged
            continue
        was_column, was_at = old.columns[figure], old.at
        kept = len(was_column)
        for device, value in now_figures.figures(figure):
            at = was_at.get(device)
            was = was_column[at] if at is not None and at < kept else None
            if was is None:
                continue
            fall = 1.0 - value / was
            if fall > threshold:
                quick = figure.endswith(QUICK)
                slower.append(
                    {
                        "device": device,
                        "hostname": now_figures.host(device),
                        "previous_hostname": old.host(device),
                        # the benchmark, and whether both runs were --quick ones, as slow_gpus name them
                        "id": figure.removesuffix(QUICK),
                        "quick": quick,
                        "before": was,
                        "now": value,
                        "fall": round(fall, 4),
                    }
                )
    slower.sort(key=lambda s: (-s["fall"], s["device"], s["id"]))
    return {
        "previous": {
            "source": source,
            "generated_at": previous.get("generated_at"),
            "nodes": len(before),
            # whether its figures could be compared: it kept some, or this run has none to compare either
            "figures_known": bool(old.columns) or not now_figures.columns,
            # whether it keeps figures as the fleet writes them (where it kept none, it measured none)
            "figures_kept": keeps_figures,
        },
        "new": _by_key(new),
        # slow devices the previous report has no figure of: not new failures, first measures
        "first_measured": _by_key(first),
        "resolved": _by_key(resolved, in_order=True),
        "appeared": sorted(now_names[k] for k in now.keys() - before.keys()),
        "vanished": sorted(before_names[k] for k in before.keys() - now.keys()),
        "slower": slower,
        # a slow card that moved: neither resolved where it was nor new where it is, and still to be said
        "moved": [
            {"device": d, "previous_hostname": before_names[min(was_on[d])], "hostname": now_names[min(hosts)]}
            for d, hosts in sorted(is_on.items())
            # slow on one node then and on another now: a card slow on two (a copied report) moved nowhere
            if len(hosts) == 1 and len(was_on.get(d, ())) == 1 and was_on[d] != hosts
        ],
    }
