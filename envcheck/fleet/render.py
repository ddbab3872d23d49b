"""The fleet's reports (``envcheck.fleet/1``): text, Markdown and the HTML page's sections, each
registered for the fleet's schema.

The order is the admin's: a first screen that says whether the fleet is ready and what to fix first
(the verdict, then each problem once across the fleet with its nodes and its fix, the worst and most
common first, and what changed since a previous run), then the details: every problem with each of its
fixes, each failing node's own list, what drifted, the slow devices by host, duplicates and skipped
sources, and the one summary line. Healthy nodes are counted and named in one line, not listed one per
line: a rack of healthy nodes is no news. Everything that came
from a node (host names, summaries, versions) is escaped, so a ``[`` in it is never rich markup and a
``|`` never breaks a Markdown table, a ``<`` never HTML.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from envcheck.core.report import FLEET_SCHEMA
from envcheck.core.units import runs
from envcheck.fleet.kinds import FAILED_BENCHMARK, json_words, numberless
from envcheck.fleet.since import figure_key
from envcheck.render import RenderOptions, html, renders
from envcheck.render.common import MARKS, Unwrapped, cell, code, escape, icon, mark, print_lines, unquoted, write_lines
from envcheck.render.safe import inert
from envcheck.render.svg import Bar, bar_chart, finite

if TYPE_CHECKING:
    from rich.console import Console

#: Host names shown in one line (the healthy nodes, the hosts of a drifting value) before "and N more".
NAMES_SHOWN = 20
#: Host names on a problem's line in the first screen: enough to start on, short enough for one line.
FIRST_NAMES = 8
#: Lines of the text report's first screen (a terminal's height): the problems that fit are shown there.
FIRST_SCREEN = 25


def names(hosts: list[str], limit: int = NAMES_SHOWN) -> str:
    shown = ", ".join(hosts[:limit])
    return shown + (f" and {len(hosts) - limit} more" if len(hosts) > limit else "")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith(('x', 's', 'ch', 'sh')) else 's'}"


def hosts_shown(values: list[dict[str, Any]]) -> list[bool]:
    """Which of a drifting field's values to name the hosts of: all but the first when it is the
    majority (the odd ones out are the news), every one when no value is."""
    total = sum(v["count"] for v in values)
    majority = values[0]["count"] * 2 > total
    return [not (majority and i == 0) for i in range(len(values))]


#: What the fields listed by GPU model are, said where they are listed.
BY_MODEL_WHY = "values that differ only between GPU models, each model's nodes agreeing: pools built apart, not drift"


def models_of(value: Any, models: list[str], said: str = "{}") -> str:
    """A value's GPU models, in ``said``; nothing where the value is its one model (the GPU model's own line);
    "in no pool" where only nodes of no pool have it (a node of mixed GPUs)."""
    return "" if models == [value] else said.format(", ".join(models) or "in no pool")


def drifting(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's drifting fields: those not listed by GPU model."""
    return [d for d in html.items(doc.get("drift")) if d.get("by_model") is not True]


def by_model_fields(doc: dict[str, Any]) -> list[tuple[str, list[tuple[Any, int, list[str]]]]]:
    """The fields whose values differ only between GPU models: (title, [(value, nodes, its models)]), read
    from a document that may hold anything (a value without a count or models is left out)."""
    out = []
    for d in html.items(doc.get("drift")):
        if d.get("by_model") is not True:
            continue
        values = [
            (v.get("value"), v["count"], [str(m) for m in html.lst(v.get("models"))])
            for v in html.items(d.get("values"))
            if _count(v.get("count"))
        ]
        if values:
            out.append((str(d.get("title") or d.get("field") or "?"), values))
    return out


def value_text(value: Any) -> str:
    """A field's value as a person reads it; "none" where the node has none (no driver, no GPU)."""
    return "none" if value is None else str(value)


def figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def verdict(doc: dict[str, Any]) -> str:
    """Whether the fleet is ready, in one line: the first thing an admin asks."""
    c = html.dct(doc.get("summary"))
    nodes, failing, warned = (_count(c.get(k)) for k in ("nodes", "failing", "warnings"))
    status = doc.get("status")
    if failing or status in ("fail", "crash"):
        head = f"Not ready: {failing} of {plural(nodes, 'node')} failing"
    elif status == "warn":
        head = f"Ready, with warnings: {plural(nodes, 'node')}, none failing"
    else:
        head = f"Ready: all {plural(nodes, 'node')} pass" if nodes != 1 else "Ready: the one node passes"
    rest = [f"{warned} with warnings"] if warned and head.startswith("Not") else []
    for kind, word in (("gpu", "GPU"), ("cpu", "CPU")):
        devices = _count(c.get(f"slow_{kind}s"))
        if devices:
            rest.append(plural(devices, f"slow {word}"))
    problems = folded(html.items(doc.get("problems")))  # counted as they are listed (Fix first)
    if problems:
        rest.append(f"{plural(len(problems), 'problem')} across the fleet")
    # What warns besides the nodes (every node may pass): a report left out, a field that drifts, a
    # host or GPU seen twice. A missing report must not read as a ready node.
    skipped, drifting = _count(c.get("skipped")), _count(c.get("drift_fields"))
    # each host seen twice, and each set of hosts sharing GPUs (a report copied to another node: its eight cards)
    twice = _count(c.get("duplicate_hosts")) + len(duplicate_gpus(doc))
    if skipped:
        rest.append(f"{plural(skipped, 'source')} skipped")
    if drifting:
        rest.append(f"{plural(drifting, 'field')} drifting")
    if twice:
        rest.append(plural(twice, "duplicate"))
    since = doc.get("since")
    slower = len({s.get("device") for s in html.items(since.get("slower"))}) if isinstance(since, dict) else 0
    vanished = len(html.lst(since.get("vanished"))) if isinstance(since, dict) else 0
    if vanished:  # a node that stopped reporting overnight is as urgent as a slower card
        rest.append(f"{plural(vanished, 'node')} vanished since the previous report")
    if slower:
        rest.append(f"{plural(slower, 'device')} slower than in the previous report")
    return head + (f"; {', '.join(rest)}" if rest else "")


def _count(value: Any) -> int:
    """A count from the document: 0 for anything that is not one (a hand-edited report may hold anything)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def slow_by_device(node: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A node's slow figures by device (its GPU UUID, else its bench name): one GPU slow in six figures is
    one slow device, which the nodes' tables count and the text names once."""
    devices: dict[str, list[dict[str, Any]]] = {}
    for s in html.items(node.get("slow")):
        devices.setdefault(str(s.get("uuid") or s.get("device")), []).append(s)
    return devices


def headed(group: dict[str, Any], nodes: int, limit: int = NAMES_SHOWN) -> str:
    """Where a problem is, as its title says it: its nodes named (:func:`on_nodes`), or counted where the
    lines of its words below name every node with what it says ("on 21 nodes", not each name twice)."""
    if len(html.items(group.get("words"))) < 2 or group.get("all_but") or not _words_cover(group):
        return on_nodes(group, nodes, limit)  # (all but a few: those few are named, as nodes without it)
    count = _count(group.get("count"))
    said = f"on all {nodes} nodes" if count == nodes and nodes > 1 else f"on {plural(count, 'node')}"
    return said + new_since(group, limit)


def new_since(group: dict[str, Any], limit: int = NAMES_SHOWN) -> str:
    """What follows where a problem is, with ``--since``: the nodes it is new on (:func:`with_devices`), so
    that "Fix first" says which of its nodes are news."""
    fresh = [str(n) for n in html.lst(group.get("new_nodes"))]
    if not fresh:
        return ""
    if len(fresh) == _count(group.get("count")):
        return " (new since the previous report)"
    return f" (new since the previous report on {names(fresh, limit)})"


def on_nodes(group: dict[str, Any], nodes: int, limit: int = NAMES_SHOWN) -> str:
    """Where a problem is: "on all 1000 nodes" (a fleet-wide setting is one line), else its nodes named;
    a slow group names its devices (host and GPU index); and where it is new (:func:`new_since`)."""
    return _on_nodes_only(group, nodes, limit) + new_since(group, limit)


def _on_nodes_only(group: dict[str, Any], nodes: int, limit: int = NAMES_SHOWN) -> str:
    count = _count(group.get("count"))
    if count == nodes and nodes > 1:
        return f"on all {nodes} nodes"
    if group.get("all_but"):
        return f"on {count} of {nodes} nodes: all but {names([str(n) for n in group['all_but']], limit)}"
    where = html.lst(group.get("where")) or html.lst(group.get("nodes"))
    noun = "host" if str(group.get("id", "")).startswith("slow.") else "node"
    return f"on {plural(count, noun)}: {names([str(w) for w in where], limit)}"


def other_words(group: dict[str, Any]) -> str:
    """What follows a problem's words where its nodes say it otherwise too (not where they differ in numbers
    alone: its words say each number's span)."""
    others = group.get("wordings", 1) - 1 if isinstance(group.get("wordings"), int) else 0
    if others <= 0 or isinstance(group.get("said"), str):
        return ""
    where = "each node's own list" if group.get("own_words") else "each node's words are in the JSON report"
    return f" (and {plural(others, 'other wording')}: {where})"


def wordings(group: dict[str, Any], limit: int = NAMES_SHOWN) -> list[tuple[str, str]]:
    """A problem's words as (where, words) lines: where its nodes' words name different devices, each
    wording kept with the nodes that say it (``on node-a, node-b``, ``GPU 1: ...``), then how many more
    there are; else its one summary (where empty) and how many other wordings it has."""
    words = html.items(group.get("words"))
    summary = words_of(group)
    differ = (
        [("", "(the numbers differ by benchmark: each node's own list has each)")]
        if group.get("numbers_differ")
        else []
    )
    if len(words) < 2:
        return ([("", summary + other_words(group))] if summary else []) + differ
    out = [(f"on {names([str(n) for n in html.lst(w.get('nodes'))], limit)}", words_of(w)) for w in words]
    total = group.get("wordings") if isinstance(group.get("wordings"), int) else len(words)
    shown = sum(w["wordings"] if type(w.get("wordings")) is int and w["wordings"] > 0 else 1 for w in words)
    if total > shown:
        # where the words above name every node, what else they say is in the JSON (their lists may be one
        # line: said for every node); else the others' own lists say theirs
        where = "each node's words are in the JSON report" if _words_cover(group) else "each node's own list"
        out.append(("", f"(and {plural(total - shown, 'other wording')}: {where})"))
    return out + differ


def words_of(words: dict[str, Any]) -> str:
    """A problem's words (or one of the things its nodes say) as true of each node: where they differ in
    numbers alone, each number's span (``said``); else the words as the first node says them."""
    text = words.get("said")
    return text if isinstance(text, str) else str(words.get("summary") or "")


def group_title(group: dict[str, Any]) -> str:
    if str(group.get("id", "")).startswith("slow."):
        word = "GPU" if group["id"] == "slow.gpu" else str(group["id"]).removeprefix("slow.").upper()
        return f"slow {word} ({group.get('model')})"
    return f"{group.get('report')} {ids_of(group)} {group.get('status')}"


def ids_of(group: dict[str, Any]) -> str:
    """A problem's check id, or the benchmarks an entry folds (:func:`folded`), the first few named."""
    ids = [str(group.get("id")), *(str(i) for i in html.lst(group.get("also")))]
    more = len(ids) - IDS_SHOWN
    return ", ".join(ids[:IDS_SHOWN]) + (f" and {plural(more, 'more benchmark')}" if more > 0 else "")


#: Benchmarks named in the title of an entry that folds several (:func:`folded`) before "and N more".
IDS_SHOWN = 8


def folded(
    groups: list[dict[str, Any]], nodes: Any = None, alike: Callable[[Any], Any] | None = None
) -> list[dict[str, Any]]:
    """The problems as a person reads them: the benchmarks that failed alike (the same verdict on the same
    nodes, the same devices with the same errors and fix) as one entry naming each benchmark (the first's
    id in ``id``, the others' in ``also``).

    A GPU that crashes fails every benchmark run on it: six groups of the same two nodes, one per benchmark,
    pushed the fleet's other problems off the first screen. Only what would read the same is folded: the
    entry says the first one's words, and a benchmark whose error or device differs keeps an entry of its
    own, so no error is said only in the nodes' own lists (which a problem on every node leaves out). Given
    the document's ``nodes``, the benchmarks are in the order the first node's report lists them, which is
    the order they ran. The groups stay one per check in the JSON (``envcheck fleet --since`` compares them
    so); each node's own list still has each benchmark's words. ``alike``: what two groups fold by, where
    not :func:`_failed_alike` (None: not folded)."""
    out: list[dict[str, Any]] = []
    members: dict[int, list[dict[str, Any]]] = {}
    at: dict[Any, int] = {}
    for g in groups:
        key = (alike or _failed_alike)(g)
        if key is not None:
            first = at.get(key)
            if first is not None:
                members[first].append(g)
                continue
            at[key] = len(out)
            members[len(out)] = [g]
        out.append(g)
    by_host: dict[str, dict[str, Any]] | None = None
    for i, found in members.items():
        if len(found) < 2:
            continue
        if nodes is not None:
            if by_host is None:
                by_host = {str(n.get("hostname")): n for n in html.items(nodes)}
            node = by_host.get(str(html.lst(found[0].get("nodes"))[0]), {})
            listed = [*html.items(node.get("failing")), *html.items(node.get("warnings"))]
            ran: dict[tuple[Any, ...], int] = {}
            for pos, item in enumerate(listed):
                ran.setdefault((item.get("report"), item.get("id"), item.get("status")), pos)
            found.sort(key=lambda g: ran.get((g.get("report"), g.get("id"), g.get("status")), len(listed)))
        out[i] = {**found[0], "also": [g.get("id") for g in found[1:]]}
        if len({_words_shown(g) for g in found}) > 1:
            # folded as one error (an out of memory, whatever it tried to allocate), said in the first one's
            # numbers: the others' are not those
            out[i]["numbers_differ"] = True
    return out


def _words_shown(group: dict[str, Any]) -> tuple[str, ...]:
    """What a failed benchmark's entry says of its errors (without the case), to tell whether benchmarks
    folded together say the same numbers."""
    return tuple(found[1] if (found := _failed_error(words)) else "" for _, words in wordings(group))


def _failed_error(words: Any) -> tuple[str, str] | None:
    """A failed benchmark's device and error from its words (``CASE on DEVICE: WHY``, :data:`FAILED_BENCHMARK`);
    the cases a crashed worker never ran carry its error as "not run: ERROR" (envcheck.bench.run): the same
    error. None for words of another shape."""
    found = FAILED_BENCHMARK.match(words) if isinstance(words, str) else None
    if found is None:
        return None
    device, why = found.groups()
    return device, why.removeprefix("not run: ")


def _failed_alike(group: Any) -> tuple[Any, ...] | None:
    """What two groups of failed benchmarks share when they read the same but for the benchmark: their
    verdict, nodes, fix, and each wording's device and error (with its nodes), without the case; None for
    anything else (a check, a lab spec's verdict, one on no node, a hand-edited item). Several fixes (one GPU
    faulted, another out of memory) fold where each is the same with the same nodes."""
    if not isinstance(group, dict) or group.get("report") != "bench":
        return None
    hosts = group.get("nodes")
    if not isinstance(hosts, list) or not hosts:
        return None
    if str(group.get("id")).startswith("spec."):
        return None
    said = [(group.get("summary"), ()), *((w.get("summary"), w.get("nodes")) for w in html.items(group.get("words")))]
    wordings: dict[tuple[str, str], set[str]] = {}
    for words, where in said:
        found = _failed_error(words)
        if found is None:
            return None
        # an error that differs in numbers alone (the sizes an out of memory tried) is the same error, on every
        # node that says it in any wording
        device, why = found[0], numberless(found[1])
        wordings.setdefault((device, why), set()).update(str(n) for n in html.lst(where))
    # each fix (the error envcheck explain knows), or none, with its nodes
    fixes = tuple((repr(f.get("fix")), repr(f.get("nodes"))) for f in html.items(group.get("fixes")))
    return (
        str(group.get("status")),
        tuple(str(n) for n in hosts),
        frozenset((said, frozenset(where)) for said, where in wordings.items()),
        repr(group.get("wordings")),
        repr(group.get("fix")),
        fixes,
        repr(group.get("more_fixes")),
        # with --since, where each is new (benchmarks new on other nodes, or on none, are not one thing)
        repr(group.get("new_nodes")),
    )


#: A problem on all but this many of a fleet's nodes (of at least :data:`ALL_BUT_FROM`) is said as a
#: fleet-wide one, naming the nodes without it: a warning on 49 of 50 nodes (one node's bench was cut off)
#: repeated 49 times in the nodes' own sections buried the node that differs.
ALL_BUT = 3
ALL_BUT_FROM = 10


def gpu_indexes(indexes: list[Any]) -> str:
    """A host's devices by GPU index, as they follow its name: " GPU 3", " GPUs 0–7", " GPUs 0, 2, 5"
    (consecutive ones as a range); nothing for a device with no index (a CPU)."""
    known = runs(i for i in indexes if type(i) is int)
    if not known:
        return ""
    if len(known) == 1 and len(known[0]) == 1:
        return f" GPU {known[0][0]}"
    return " GPUs " + ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in known)


def _check_key(entry: dict[str, Any]) -> str:
    """A problem's report, check and verdict as one key, whatever a hand-edited document holds there."""
    return json_words([entry.get("report"), entry.get("id"), entry.get("status")], 1000)


def with_devices(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The problem groups, each slow one with ``where``: its devices by host and GPU index; one on all
    but a few nodes (:data:`ALL_BUT`) with ``all_but``: the nodes without it."""
    by_host: dict[tuple[str, Any], dict[str, list[Any]]] = {}
    for host in html.items(doc.get("slow_devices")):
        for d in html.items(host.get("devices")):
            found = by_host.setdefault((f"slow.{d.get('device_kind')}", d.get("model")), {})
            found.setdefault(str(host.get("hostname")), []).append(d.get("index"))
    # a host's slow GPUs together ("node5 GPUs 0–7": every GPU of a node slow points at the node, its power
    # or cooling, where "node5 GPU 0, node5 GPU 1, ..." read as eight cards)
    named = {key: [host + gpu_indexes(found) for host, found in hosts.items()] for key, hosts in by_host.items()}
    hosts = [str(n.get("hostname")) for n in html.items(doc.get("nodes"))]
    since = doc.get("since")
    new: dict[str, set[str]] = {}  # what is new since the previous report, and where
    for e in html.items(since.get("new")) if isinstance(since, dict) else ():
        new.setdefault(_check_key(e), set()).update(map(str, html.lst(e.get("nodes"))))
    out = []
    for g in html.items(doc.get("problems")):
        fresh = new.get(_check_key(g)) if new else None
        if fresh:
            g = {**g, "new_nodes": [str(n) for n in html.lst(g.get("nodes")) if str(n) in fresh]}
        if str(g.get("id", "")).startswith("slow."):
            g = {**g, "where": named.get((g.get("id"), g.get("model")))}
        elif len(hosts) >= ALL_BUT_FROM and len(hosts) - ALL_BUT <= _count(g.get("count")) < len(hosts):
            have = {str(n) for n in html.lst(g.get("nodes"))}
            g = {**g, "all_but": sorted(h for h in hosts if h not in have)}
        out.append(g)
    return out


def since_folded(since: dict[str, Any], key: str, doc: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``since``'s new or resolved failures, one a line: benchmarks new on the same nodes as one line where
    Fix first says them as one entry (:func:`folded` over the document's problems); resolved ones, whose words
    are gone with them, where they failed with the same verdict and fix on the same nodes."""
    entries = html.items(since.get(key))
    nodes = doc.get("nodes") if doc is not None else None
    if key == "new" and doc is not None:
        entry: dict[str, int] = {}  # keyed by repr: a hand-edited document may hold a list where an id is
        for i, g in enumerate(folded(html.items(doc.get("problems")), nodes)):
            for check in (g.get("id"), *html.lst(g.get("also"))):
                entry[repr((g.get("report"), check, g.get("status")))] = i

        def together(g: Any) -> Any:
            bench = isinstance(g, dict) and g.get("report") == "bench"  # a slow device's are one a device
            at = entry.get(repr((g.get("report"), g.get("id"), g.get("status")))) if bench else None
            return None if at is None else (at, repr(g.get("nodes")))

        return folded(entries, nodes, together)
    return folded(entries, nodes, _changed_alike)


def _changed_alike(g: Any) -> Any:
    if not isinstance(g, dict) or g.get("report") != "bench" or str(g.get("id")).startswith("spec."):
        return None
    return (str(g.get("status")), repr(g.get("nodes")), repr(g.get("fix"))) if html.lst(g.get("nodes")) else None


def since_line(since: dict[str, Any], doc: dict[str, Any] | None = None) -> str:
    """What changed since the previous run, counted in one line: only what did change ("1 node appeared",
    never "0 nodes appeared"), or that nothing did."""
    prev = since.get("previous") or {}
    new, resolved = since_folded(since, "new", doc), since_folded(since, "resolved", doc)
    counts = (  # failures as since_lines lists them, one a line (folded), and the nodes they are on
        (len(new), "new failure", _on_nodes(new)),
        (sum(n["count"] for n in since.get("first_measured") or []), "slow device", " measured for the first time"),
        (len(resolved), "resolved failure", _on_nodes(resolved)),
        (len(since.get("appeared") or []), "node", " appeared"),
        (len(since.get("vanished") or []), "node", " vanished"),
        (len(html.items(since.get("moved"))), "slow device", " moved to another node"),
        (len({s["device"] for s in since.get("slower") or []}), "device", " slower"),
    )
    parts = [plural(n, word) + after for n, word, after in counts if n]
    figures = len(since.get("slower") or [])
    if figures > counts[-1][0]:  # devices, as the lines below; the JSON lists each figure
        parts[-1] += f" in {figures} figures"
    known = prev.get("figures_known") is not False
    # only what this compares: a node's warnings (a figure that is no measurement) are not among them
    said = ", ".join(parts) if parts else "no failure new or resolved, no node came or went"
    if not parts and known:
        said += ", no device slower"
    if not known:  # no device can be "slower": the previous run measured none, or its report keeps none
        why = "measured none" if prev.get("figures_kept") is True else "keeps none"
        said += f"; figures not compared (the previous report {why})"
    when = prev.get("generated_at")
    made = f" ({when})" if isinstance(when, str) else ""  # (a hand-edited time that is no time: not shown)
    return f"Since {prev.get('source') or 'the previous report'}{made}: {said}"


def _on_nodes(entries: list[dict[str, Any]]) -> str:
    """`` on N nodes``: how many nodes some failures of ``since`` are on, each node once."""
    hosts = {str(n) for e in entries for n in html.lst(e.get("nodes"))}
    return f" on {plural(len(hosts), 'node')}"


#: The parts of ``since`` that list changes, each said by :func:`since_lines`.
SINCE_CHANGES = ("new", "first_measured", "resolved", "appeared", "vanished", "moved", "slower")


def changed(since: Any) -> bool:
    """Whether a ``since`` section lists any change (:func:`since_lines` then says each)."""
    return isinstance(since, dict) and any(since.get(k) for k in SINCE_CHANGES)


def since_lines(since: dict[str, Any], threshold: float, doc: dict[str, Any] | None = None) -> list[str]:
    """Each change since the previous run, one line each (plain text: the caller escapes or cells it); given
    the document, benchmarks folded as Fix first folds them, in the order they ran (:func:`since_folded`)."""
    out = []
    # A check resolved under one verdict and new under another on the same node (a benchmark that crashed
    # last time and fails its check now) is not fixed there: its RESOLVED line says so.
    now_as: dict[tuple[Any, Any, str], Any] = {}
    for g in since.get("new") or []:
        for n in g["nodes"]:
            now_as.setdefault((g.get("report"), g.get("id"), str(n)), g.get("status"))
    for key, word in (("new", "NEW"), ("first_measured", "FIRST MEASURED"), ("resolved", "RESOLVED")):
        for g in since_folded(since, key, doc) if key != "first_measured" else html.items(since.get(key)):
            where = f"{plural(g['count'], 'node')}: {names(g['nodes'])}"
            device = f": {g['summary']}" if g.get("report") == "fleet" and g.get("summary") else ""  # which one
            line = f"{word} {g['report']} {ids_of(g)} {g['status']}{device} on {where}"
            if key == "resolved" and now_as:
                ids = [g.get("id"), *html.lst(g.get("also"))]
                found = {
                    (str(n), now_as[k])
                    for n in g["nodes"]
                    for i in ids
                    if (k := (g.get("report"), i, str(n))) in now_as
                }
                if found:
                    verdicts = "/".join(sorted({str(v) for _, v in found}))
                    line += f" (now {verdicts} on {plural(len({n for n, _ in found}), 'node')} of them: see NEW)"
            out.append(line)
    if since.get("appeared"):
        out.append(f"APPEARED {plural(len(since['appeared']), 'node')}: {names(since['appeared'])}")
    if since.get("vanished"):
        out.append(f"VANISHED {plural(len(since['vanished']), 'node')}: {names(since['vanished'])}")
    for m in html.items(since.get("moved")):
        out.append(
            f"MOVED slow {m.get('device')} from {m.get('previous_hostname')} to {m.get('hostname')}: the same card, "
            "still slow"
        )
    # One line per device with each of its figures that fell (the worst first): a card slower in six
    # benchmarks is one slower card, as the count above says.
    slower: dict[str, list[dict[str, Any]]] = {}
    for s in since.get("slower") or []:
        slower.setdefault(s["device"], []).append(s)
    for device, falls in list(slower.items())[:SLOWER_SHOWN]:
        s = falls[0]
        moved = f" (was on {s['previous_hostname']})" if s.get("previous_hostname") not in (None, s["hostname"]) else ""
        each = ", ".join(
            f"{figure_key(str(f['id']), f.get('quick') is True)} {figure(f['before'])} -> {figure(f['now'])} "
            f"(-{f['fall']:.0%})"
            for f in falls
        )
        out.append(f"SLOWER {device} on {s['hostname']}{moved}, more than {threshold:.0%} lower: {each}")
    if len(slower) > SLOWER_SHOWN:  # a fleet-wide regression is a line per device: the worst few say it
        out.append(f"... and {plural(len(slower) - SLOWER_SHOWN, 'more device')} slower (the JSON report lists all)")
    return out


#: Slower devices named one by one under "Since the previous report", the worst first.
SLOWER_SHOWN = 20


def fix_lines(fix: dict[str, Any] | None, indent: str) -> list[str]:
    fix = fix or {}
    out = [f"{indent}[cyan]fix:[/] {escape(unquoted(fix['text']))}"] if fix.get("text") else []
    return out + ([Unwrapped(f"{indent}[cyan]run:[/] {escape(fix['command'])}")] if fix.get("command") else [])


def group_lines(
    console: Console, group: dict[str, Any], nodes: int, *, every_fix: bool, fixes_only: bool = False
) -> list[str]:
    """A problem across the fleet: its title and where, its words, and its fix (or each of its fixes
    with their nodes, in the details; ``fixes_only`` for one the first screen said: its title and fixes)."""
    limit = NAMES_SHOWN if every_fix else FIRST_NAMES
    head = f"{mark(console, group.get('status', 'fail'))} [bold]{escape(group_title(group))}[/] "
    if fixes_only:  # the first fix was said above with its nodes: the others, with theirs
        others = _fix_lines(group, limit, every_fix=True, first_said=True)
        return [head + "(above): its other fixes, each with its nodes", *others]
    out = [head + escape(headed(group, nodes, limit))]
    for where, words in wordings(group, limit):
        words = one_line(words)
        out.append(f"          [dim]{escape(where)}:[/] {escape(words)}" if where else f"          {escape(words)}")
    return out + _fix_lines(group, limit, every_fix=every_fix)


def one_line(text: str) -> str:
    """A text's first line, and how many more it has: a crash's words can hold a traceback of dozens of
    lines, which the text report showed as one line of thousands of characters (the JSON report and each
    node's own report keep every line; Markdown and HTML show them)."""
    first, newline, rest = text.strip("\n").partition("\n")
    if not newline:
        return first
    more = sum(1 for line in rest.splitlines() if line.strip())
    return f"{first} (and {plural(more, 'more line')}: in the JSON report)" if more else first


def _fix_lines(group: dict[str, Any], limit: int, *, every_fix: bool, first_said: bool = False) -> list[str]:
    """A problem's fix; where its nodes have several, each said with the nodes it is for (the first is not
    every node's): all of them in the details (but the first, where the first screen said it), the first and
    where the others are on the first screen."""
    fixes = group.get("fixes") or []
    if len(fixes) <= 1:
        return fix_lines(group.get("fix"), "          ")
    more = group.get("more_fixes") if type(group.get("more_fixes")) is int else 0
    out = []
    for f in fixes[1 if first_said else 0 :] if every_fix else fixes[:1]:
        out.append(f"          [dim]on {escape(names(f['nodes'], limit))}:[/]")
        out += fix_lines(f.get("fix"), "            ") or ["            (no fix given)"]
    if not every_fix:
        others = f"{plural(len(fixes) - 1, 'other fix')} below" + (f", {more} more: {MORE_FIXES}" if more else "")
        out.append(f"          [dim]({others})[/]")
    elif more:
        out.append(f"          [dim]and {plural(more, 'other fix')}: {MORE_FIXES}[/]")
    return out


#: Where the fixes past those a problem keeps (:data:`envcheck.fleet.merge.FIXES_KEPT`) are: the nodes' own
#: lists give their words, not their fixes.
MORE_FIXES = "each node's fix is in the JSON report"


@renders("text", FLEET_SCHEMA)
def render_text(doc: dict[str, Any], console: Console, options: RenderOptions | None = None) -> None:
    soft = not console.is_terminal
    summary = doc.get("summary") or {}

    # Lines are gathered and printed at once: rich costs about as much per print as per line of a long
    # text, and a fleet report can run to tens of thousands of lines.
    lines: list[str] = []
    say = lines.append

    say(
        f"[bold]envcheck fleet[/]: {plural(summary.get('nodes', 0), 'node')}, "
        f"{plural(summary.get('reports_read', 0), 'report')} read"
        + (f", {summary['skipped']} skipped" if summary.get("skipped") else "")
        + f"; slow means more than {doc.get('threshold', 0):.0%} below the fleet median of the same model"
    )
    # The first screen: ready or not, and what to fix first.
    say(f"{mark(console, doc.get('status', 'fail'))} [bold]{escape(verdict(doc))}[/]")
    since = doc.get("since")
    if isinstance(since, dict):
        say(escape(since_line(since, doc)))
    groups = with_devices(doc)
    entries = folded(groups, doc.get("nodes"))
    nodes = summary.get("nodes", 0)
    shown = 0
    if entries:
        say("\n[bold]Fix first[/]")
        for g in entries:
            block = group_lines(console, g, nodes, every_fix=False)
            if shown and len(lines) + len(block) > FIRST_SCREEN - 2:
                break
            lines += block
            shown += 1
        if shown < len(entries):
            say(f"  [dim]... and {plural(len(entries) - shown, 'more problem')} below[/]")
    # The details.
    if changed(since):
        say("\n[bold]Since the previous report[/]")
        lines += [f"  {escape(line)}" for line in since_lines(since, doc.get("threshold", 0), doc)]
    # What the first screen left unsaid, and only that: the problems that did not fit, and each fix of
    # those shown with several (a problem said whole above is not said again).
    rest = [(g, i < shown) for i, g in enumerate(entries) if i >= shown or len(g.get("fixes") or []) > 1]
    if rest:
        say("\n[bold]More on the problems across the fleet[/]")
        for g, above in rest:
            lines += group_lines(console, g, nodes, every_fix=True, fixes_only=above)
    # Each node's section is a few lines of the same few words (ten thousand nodes with one check
    # failing): each mark and each distinct text is made once.
    # Where nothing is styled (a pipe, a file: what a 10 000-node report is written to), the nodes'
    # sections skip rich altogether: written as plain lines, each text made inert, they cost a
    # fifth of what rich's markup took for them.
    plain = not console.is_terminal
    marks = {status: MARKS[status][1].ljust(7) if plain else mark(console, status) for status in MARKS}
    escaped: dict[str, str] = {}

    def said(text: str) -> str:
        """A node's one-line text, every control shown (as inert text, or escaped for rich's markup)."""
        found = escaped.get(text)
        if found is None:
            found = escaped[text] = inert(text) if plain else escape(text)
        return found

    def bold(text: str) -> str:
        return said(text) if plain else f"[bold]{said(text)}[/]"

    def dim(text: str) -> str:
        return said(text) if plain else f"[dim]{said(text)}[/]"

    before = lines
    if plain:
        lines = []
        say = lines.append

    healthy: list[str] = []
    shared: dict[str, list[str]] = {}  # status -> the nodes whose every item is one every node has
    sections: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}  # what a node's own section says -> its nodes
    everywhere = said_for_every_node(groups, nodes)
    for node in doc.get("nodes") or []:
        if node["status"] == "ok":
            healthy.append(node["hostname"])
            continue
        if (node["status"] == "warn" or node.get("failing")) and only_shared(node, everywhere):
            shared.setdefault(node["status"], []).append(node["hostname"])
            continue
        kinds = ", ".join(f"{r['kind']} {r['status']}" for r in node.get("reports") or [])
        # Each item in the node's own words; its fix is its problem's, above (said once, not per node).
        items = [*(node.get("failing") or []), *(node.get("warnings") or [])]
        texts = [f"{i['report']} {i['id']}: {one_line(str(i['summary']))}" for i in items]
        body = [f"    {marks[i['status']]} {said(text)}" for i, text in zip(items, texts, strict=True)]
        for figures in slow_by_device(node).values():
            s = figures[0]
            where = f"GPU {s['index']}" if s.get("index") is not None else s.get("device") or "device"
            each = ", ".join(f"{f['id']} {f['shortfall']:.0%}" for f in figures)
            body.append(f"    {marks['fail']} {said(f'slow {where}: {each} below the fleet median')}")
        sections.setdefault((node["status"], kinds, tuple(body)), []).append(node["hostname"])
    # Nodes whose lists say the same, word for word (a warning every node has, in one of six wordings), are one
    # section naming them: a thousand sections of one line each buried the few nodes that differ.
    for (status, kinds, body), hosts in sections.items():
        title = bold(hosts[0]) if len(hosts) == 1 else f"{bold(plural(len(hosts), 'node'))}: {said(names(hosts))}"
        say(f"\n{marks[status]} {title}  {dim(kinds)}")
        for line in body:
            say(line)
    if plain:
        print_lines(console, before, soft=soft)
        if lines:
            write_lines(console, lines)
        lines = []
        say = lines.append
    for status, hosts in shared.items():  # the failing first, as the nodes come
        what = f"{plural(len(hosts), 'node')} with only the {'warnings' if status == 'warn' else 'problems'}"
        say(f"\n{mark(console, status)} {what} {shared_by(groups, everywhere)} (above): {escape(names(hosts))}")
    if healthy:
        say(f"\n{mark(console, 'ok')} {plural(len(healthy), 'node')} ok: {escape(names(healthy))}")
    drift = drifting(doc)
    if drift:
        say("\n[bold]Drift[/] (fields that should be the same on every node)")
        for d in drift:
            parts = []
            shown = hosts_shown(d["values"])
            for i, v in enumerate(d["values"]):
                hosts = f" ({names(v['hosts'])})" if shown[i] else ""
                parts.append(f"{value_text(v['value'])} on {v['count']}{hosts}")
            say(f"  [yellow]{escape(d['title'])}[/]: {escape('; '.join(parts))}")
    by_model = by_model_fields(doc)
    if by_model:
        say(f"\n[bold]By GPU model[/] ({BY_MODEL_WHY})")
        for title, values in by_model:
            said = "; ".join(f"{value_text(v)} on {n}{models_of(v, models, ' ({})')}" for v, n, models in values)
            say(f"  {escape(title)}: {escape(said)}")
    for kind, title in (("gpu", "Slow GPUs"), ("cpu", "Slow CPUs")):
        lines += slow_lines(title, slow_of(doc, kind), doc.get("threshold", 0))
    duplicates = doc.get("duplicates") or {}
    if duplicates.get("gpus") or duplicates.get("hosts"):
        say("")
    for g in duplicate_gpus(doc):
        say(f"[yellow]DUPLICATE {escape(g.what)}[/] on {len(g.hosts)} hosts ({escape(names(g.hosts))}): {g.why}")
    for h in duplicate_hosts(doc):
        say(
            f"[yellow]DUPLICATE HOST[/] {escape(h.hostname)}: {escape(h.seen)} ({escape(names(h.sources))}): "
            f"{escape(h.why)}"
        )
    for why, title in SET_APART:
        apart = set_apart(doc, why)
        if apart:
            devices = apart_by_device(apart)
            say(f"\n[bold]{escape(apart_heading(title, apart, len(devices)))}[/]")
            for host, device, ids in devices[:APART_SHOWN]:
                say(f"  {escape(host)} {escape(device)}: {escape(', '.join(ids))}")
            if len(devices) > APART_SHOWN:  # a fleet benched while busy: a few devices say it
                say(f"  {more_devices(len(devices))}")
    skipped = doc.get("skipped") or []
    if skipped:
        say(f"\n[bold]Skipped[/] ({len(skipped)})")
        for s in skipped:
            say(f"  {escape(s['source'])}: {escape(s['reason'])}")
    style = {"ok": "bold green", "warn": "bold yellow"}.get(doc.get("status", ""), "bold red")
    say(f"\n[{style}]{escape(str(summary.get('text', '')))}[/]  [dim]({doc.get('duration_s', 0.0):.1f} s)[/]")
    print_lines(console, lines, soft=soft)


def said_for_every_node(groups: list[dict[str, Any]], nodes: int) -> dict[Any, set[str]]:
    """The keys of the problems every node has (or all but a few: ``all_but``, :func:`with_devices`) with
    the same fix (a fleet-wide setting), each with the nodes it is not said for: said once above, they are
    said for each node. One whose fix differs by node, or whose words say a different thing on each (``GPU
    0`` here, ``GPU 5`` there), is not: each node's list says which of its GPUs. Where most nodes say the
    same and a few otherwise (``odd``: one node's GPU with ECC errors among every node's kernel faults), it
    is said for the many, and the few keep their lists. Words that differ in a number alone (a load
    average, a free size) are one problem all the same."""
    out = {}
    for g in groups:
        odd = {str(n) for n in html.lst(g.get("odd"))}
        # a fix of the few only (the ECC fix of the one odd GPU) leaves the many with one
        others = {str(n) for f in html.items(g.get("fixes"))[1:] for n in html.lst(f.get("nodes"))}
        # every thing its nodes say is above with its nodes (a few: GPU 1 on these, GPU 5 on those)
        all_said = _words_cover(g)
        if (
            (g.get("count") == nodes or g.get("all_but"))
            and nodes > 1
            and (not g.get("own_words") or odd or all_said)
            and others <= odd
            and not g.get("more_fixes")
        ):
            out[g.get("key")] = odd
    return out


def _words_cover(group: dict[str, Any]) -> bool:
    """Whether a group's ``words`` name every one of its nodes (each thing said, with its nodes)."""
    said = {str(n) for w in html.items(group.get("words")) for n in html.lst(w.get("nodes"))}
    return bool(said) and said >= {str(n) for n in html.lst(group.get("nodes"))}


def shared_by(groups: list[dict[str, Any]], everywhere: dict[Any, set[str]]) -> str:
    """Who shares the problems :func:`said_for_every_node` found: every node, or nearly (all but a few)."""
    nearly = any(g.get("all_but") for g in groups if g.get("key") in everywhere)
    return "nearly every node shares" if nearly else "every node shares"


def only_shared(node: dict[str, Any], everywhere: dict[Any, set[str]]) -> bool:
    """Whether a node's every item is a problem every node has (a fleet-wide setting), said as most nodes
    say it: such a node is one name in a line, not its own section repeating the one line above."""
    from envcheck.fleet.merge import problem_key

    items = [*html.items(node.get("failing")), *html.items(node.get("warnings"))]
    hostname = str(node.get("hostname"))
    keys = {problem_key(str(i.get("report")), str(i.get("id")), str(i.get("status"))) for i in items}
    return not node.get("slow") and all(key in everywhere and hostname not in everywhere[key] for key in keys)


#: Devices whose figures were left out of the comparisons named in text, Markdown and HTML (the JSON has
#: every figure).
APART_SHOWN = 20

#: Figures left out of the comparisons, by why, with the heading they are listed under.
SET_APART = (
    ("contended", "taken while other work held the CPUs"),
    ("noisy", "too noisy to judge by (the samples spread over 10%)"),
)


def set_apart(doc: dict[str, Any], why: str) -> list[dict[str, Any]]:
    """The figures left out for ``why`` (a document written before noisy figures were marked has no
    ``why``: contended)."""
    return [c for c in html.items(doc.get("contended")) if (c.get("why") or "contended") == why]


def apart_by_device(apart: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """The figures left out, one entry per device: its host, its name and the figures' names, in the
    order the devices first appear. A node benched while busy leaves every figure of every device out
    (48 on an 8-GPU node): an admin asks which devices went unjudged, not which 48 figures."""
    by: dict[tuple[str, str], list[str]] = {}
    for c in apart:
        by.setdefault((str(c.get("hostname")), str(c.get("device"))), []).append(str(c.get("id")))
    return [(host, device, ids) for (host, device), ids in by.items()]


def apart_heading(title: str, apart: list[dict[str, Any]], devices: int) -> str:
    return f"Not compared: {title} ({plural(len(apart), 'figure')} on {plural(devices, 'device')})"


def more_devices(devices: int) -> str:
    return f"... and {devices - APART_SHOWN} more devices (the JSON report lists every figure)"


def slow_of(doc: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    """The slow devices of ``kind`` ("gpu", or "cpu" for every other kind), each with its host, by host."""
    return [
        (str(host.get("hostname")), d)
        for host in html.items(doc.get("slow_devices"))
        for d in html.items(host.get("devices"))
        if (d.get("device_kind") == "gpu") == (kind == "gpu")
    ]


def slow_lines(title: str, slow: list[tuple[str, dict[str, Any]]], threshold: float) -> list[str]:
    """One line per slow device, by host, every way to find it on one line (host and index, UUID, PCI bus
    id) and each of its slow figures: what an admin greps for, and never folded by a narrow terminal as a
    nine-column table would be."""
    if not slow:
        return []
    lines = [f"\n[bold]{title}[/] (more than {threshold:.0%} below the fleet median of their model)"]
    for hostname, d in slow:
        where = hostname if d.get("index") is None else f"{hostname} GPU {d['index']}"
        ids = ", ".join(x for x in (d.get("uuid"), d.get("pci_bus_id")) if x)
        figures = "; ".join(
            f"{f['id']}{' (--quick)' if f.get('quick') else ''} {figure(f['value'])} {f['unit']}, "
            f"{f['shortfall']:.0%} below the median {figure(f['fleet_median'])}"
            for f in d.get("figures") or []
        )
        text = f"{where}{f' ({ids})' if ids else ''} on {d.get('model')}: {figures}"
        lines.append(f"  [bold red]SLOW[/] {escape(text)}")
    return lines


@renders("markdown", FLEET_SCHEMA)
def render_markdown(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    write_lines(console, fleet_markdown(doc))


def text_cell(text: Any) -> str:
    """Text from machines (host names, files, a check's words) for a Markdown cell or line: as :func:`cell`,
    with each backtick literal too (only a fix's words keep theirs, as code spans): two host names holding
    one each made a code span of what stood between them."""
    return cell(text).replace("`", "\\`")


def fix_cell(fix: dict[str, Any] | None) -> str:
    fix = fix or {}
    return cell(fix.get("text")) + (f"<br>{code(fix['command'])}" if fix.get("command") else "")


def fleet_markdown(doc: dict[str, Any]) -> list[str]:
    """The same sections as the text report, as Markdown tables: the verdict and the problems, each once
    with its nodes and fix, then what changed, then each node."""
    summary = doc.get("summary") or {}
    nodes = summary.get("nodes", 0)
    lines = [
        f"## envcheck fleet: {text_cell(summary.get('text', ''))}",
        "",
        f"{doc.get('generated_at', '')} · envcheck {doc.get('envcheck_version', '')} · "
        f"slow means more than {doc.get('threshold', 0):.0%} below the fleet median of the same model",
        "",
        f"**{text_cell(verdict(doc))}**",
    ]
    groups = with_devices(doc)
    since = doc.get("since")
    if isinstance(since, dict):
        lines += ["", text_cell(since_line(since, doc))]
    if groups:
        lines += ["", "### Fix first", "", "| status | problem | where | fix |", "|---|---|---|---|"]
        for g in folded(groups, doc.get("nodes")):
            fixes = g.get("fixes") or []
            fix = fix_cell(g.get("fix"))
            if len(fixes) > 1:  # each fix with the nodes it is for, the first too
                fix = "<br>".join(
                    f"on {text_cell(names(f['nodes']))}: {fix_cell(f.get('fix')) or '(no fix given)'}" for f in fixes
                )
            if g.get("more_fixes"):
                fix += f"<br>and {plural(g['more_fixes'], 'other fix')}: {MORE_FIXES}"
            words = "".join(f"<br>{text_cell(f'{where}: {w}' if where else w)}" for where, w in wordings(g))
            what = f"{code(group_title(g))}{words}"
            lines.append(f"| {icon(g.get('status'))} | {what} | {text_cell(on_nodes(g, nodes))} | {fix} |")
    if changed(since):
        lines += ["", "### Since the previous report", ""]
        lines += [f"- {text_cell(line)}" for line in since_lines(since, doc.get("threshold", 0), doc)]
    lines += [
        "",
        "### Nodes",
        "",
        "| node | status | reports | failing | warnings | slow devices |",
        "|---|---|---|---|---|---|",
    ]
    problems = []
    everywhere = said_for_every_node(groups, nodes)
    # A row for each node with something of its own; the nodes that pass, and those whose every item is one
    # every node has (said once above), each a line of names, as the text report has them: a thousand
    # rows of the same row made a fleet's report longer than an issue or a pull request may be.
    healthy: list[str] = []
    shared: dict[str, list[str]] = {}
    alike: dict[Any, tuple[dict[str, Any], list[str]]] = {}  # what a node's row says -> the node, and its nodes
    for node in doc.get("nodes") or []:
        reports = ", ".join(f"{r['kind']} {r['status']}" for r in node.get("reports") or [])
        failing, warnings = node.get("failing") or [], node.get("warnings") or []
        if node["status"] == "ok":
            healthy.append(node["hostname"])
            continue
        if (node["status"] == "warn" or failing) and only_shared(node, everywhere):
            shared.setdefault(node["status"], []).append(node["hostname"])
            continue
        # nodes whose lists say the same, word for word, are one row naming them (text_report says why); a node
        # with a slow device keeps its own (its figures are its own)
        said = tuple((i.get("report"), i.get("id"), i.get("status"), i.get("summary")) for i in [*failing, *warnings])
        key = (node["status"], reports, said) if not slow_by_device(node) else node["hostname"]
        alike.setdefault(key, (node, []))[1].append(node["hostname"])
    for node, hosts in alike.values():
        failing, warnings = node.get("failing") or [], node.get("warnings") or []
        reports = ", ".join(f"{r['kind']} {r['status']}" for r in node.get("reports") or [])
        who = code(hosts[0]) if len(hosts) == 1 else f"{plural(len(hosts), 'node')}: {text_cell(names(hosts))}"
        lines.append(
            f"| {who} | {icon(node['status'])} | {text_cell(reports)} "
            f"| {len(failing)} | {len(warnings)} | {len(slow_by_device(node))} |"
        )
        problems += [(who, item) for item in [*failing, *warnings]]
    if lines[-1] == "|---|---|---|---|---|---|":
        lines[-5:] = ["", "### Nodes"]  # no node has anything of its own: no table, only the lines below
    lines.append("")
    for status, hosts in shared.items():
        what = f"{plural(len(hosts), 'node')} with only the {'warnings' if status == 'warn' else 'problems'}"
        lines.append(f"- {icon(status)} {what} {shared_by(groups, everywhere)} (above): {text_cell(names(hosts))}")
    if healthy:
        lines.append(f"- {icon('ok')} {plural(len(healthy), 'node')} ok: {text_cell(names(healthy))}")
    if problems:
        lines += [
            "",
            "### Failing checks and warnings",
            "",
            "| node | report | check | status | summary |",
            "|---|---|---|---|---|",
        ]
        # each in its node's words; the fix is its problem's, in "Fix first" (said once, not per node)
        for who, item in problems:
            lines.append(
                f"| {who} | {text_cell(item['report'])} | {code(item['id'])} "
                f"| {icon(item['status'])} | {text_cell(item['summary'])} |"
            )
    drift = drifting(doc)
    if drift:
        lines += ["", "### Drift", "", "| field | value | nodes | hosts |", "|---|---|---|---|"]
        for d in drift:
            shown = hosts_shown(d["values"])
            for i, v in enumerate(d["values"]):
                title = "" if i else f"**{text_cell(d['title'])}**"
                hosts = text_cell(names(v["hosts"])) if shown[i] else "(the majority)"
                lines.append(f"| {title} | {code(value_text(v['value']))} | {v['count']} | {hosts} |")
    by_model = by_model_fields(doc)
    if by_model:
        lines += ["", "### By GPU model", "", f"{BY_MODEL_WHY[0].upper()}{BY_MODEL_WHY[1:]}.", ""]
        lines += ["| field | value | nodes | GPU models |", "|---|---|---|---|"]
        for title, values in by_model:
            for i, (value, n, models) in enumerate(values):
                head = "" if i else f"**{text_cell(title)}**"
                lines.append(f"| {head} | {code(value_text(value))} | {n} | {text_cell(models_of(value, models))} |")
    for key, title in (("slow_gpus", "Slow GPUs"), ("slow_cpus", "Slow CPUs")):
        slow = doc.get(key) or []
        if not slow:
            continue
        lines += [
            "",
            f"### {title}",
            "",
            "| host | index | UUID | PCI bus id | benchmark | model | value | fleet median | below |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for f in slow:
            lines.append(
                f"| {code(f['hostname'])} | {text_cell(f.get('index'))} | {text_cell(f.get('uuid'))} "
                f"| {text_cell(f.get('pci_bus_id'))} | {code(f['id'])}{' (--quick)' if f.get('quick') else ''} "
                f"| {text_cell(f['model'])} | {figure(f['value'])} {text_cell(f['unit'])} "
                f"| {figure(f['fleet_median'])} {text_cell(f['unit'])} | {f['shortfall']:.0%} |"
            )
    duplicates = doc.get("duplicates") or {}
    if duplicates.get("gpus") or duplicates.get("hosts"):
        lines += ["", "### Duplicates", "", "| what | seen on | sources |", "|---|---|---|"]
        for g in duplicate_gpus(doc):
            hosts, sources = text_cell(names(g.hosts)), text_cell(names(g.sources))
            lines.append(f"| {text_cell(g.what)} | {hosts} | {sources}<br>{g.why} |")
        for h in duplicate_hosts(doc):
            sources = text_cell(names(h.sources))
            lines.append(f"| host {code(h.hostname)} | {text_cell(h.seen)} | {sources}<br>{text_cell(h.why)} |")
    for why, title in SET_APART:
        apart = set_apart(doc, why)
        if apart:
            devices = apart_by_device(apart)
            lines += ["", f"### {text_cell(apart_heading(title, apart, len(devices)))}", ""]
            lines += ["| host | device | figures |", "|---|---|---|"]
            shown = devices[:APART_SHOWN]
            lines += [
                f"| {code(host)} | {text_cell(device)} | {text_cell(', '.join(ids))} |" for host, device, ids in shown
            ]
            if len(devices) > APART_SHOWN:
                lines += ["", more_devices(len(devices))]
    skipped = doc.get("skipped") or []
    if skipped:
        lines += ["", "### Skipped", "", "| source | reason |", "|---|---|"]
        lines += [f"| {text_cell(s['source'])} | {text_cell(s['reason'])} |" for s in skipped]
    return lines


# -- html ------------------------------------------------------------------------------------------------


@renders("html", FLEET_SCHEMA)
def render_html(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    html.write_page(console, doc, "fleet", fleet_header, (*FLEET_SECTIONS, fleet_distributions))


def fleet_header(doc: dict[str, Any]) -> tuple[str, str]:
    summary = html.dct(doc.get("summary"))
    threshold = finite(doc.get("threshold"))
    extra = f"slow: more than {threshold:.0%} below the fleet median of the same model" if threshold is not None else ""
    return html.header("fleet", str(summary.get("text") or "no verdict"), doc.get("status"), doc, extra)


def fleet_counts(doc: dict[str, Any]) -> str:
    c = html.dct(doc.get("summary"))
    if isinstance(doc.get("problems"), list):  # as the verdict above counts them: as listed (folded)
        c = {**c, "problems": len(folded(html.items(doc["problems"])))}
    words = (
        ("nodes", "nodes"),
        ("failing", "failing"),
        ("warnings", "with warnings"),
        ("ok", "ok"),
        ("reports_read", "reports read"),
        ("skipped", "skipped"),
        ("drift_fields", "fields drifting"),
        ("by_model_fields", "fields differing by GPU model"),
        ("problems", "problems across the fleet"),
        ("slow_gpus", "slow GPUs"),
        ("slow_gpu_figures", "slow GPU figures"),
        ("slow_cpus", "slow CPUs"),
        ("slow_cpu_figures", "slow CPU figures"),
        ("duplicate_hosts", "duplicate hosts"),
        ("duplicate_gpus", "duplicate GPUs"),
        ("contended", "contended figures, not compared"),
        ("noisy", "noisy figures, not compared"),
    )
    # A zero says nothing but that a row could be there: only the node totals keep theirs ("0 failing").
    totals = ("nodes", "failing", "warnings", "ok")
    rows = [
        [html.e(word), html.e(c.get(key))]
        for key, word in words
        if isinstance(c.get(key), int) and (c.get(key) or key in totals)
    ]
    return html.section("Counts", html.table(["", "count"], rows, (1,))) if rows else ""


def fleet_problems(doc: dict[str, Any]) -> str:
    """Whether the fleet is ready, and each problem once across the fleet with where it is and its fix
    (each distinct fix with its nodes): what the page says first."""
    nodes = html.dct(doc.get("summary")).get("nodes")
    total = nodes if isinstance(nodes, int) else 0
    out = []
    for g in folded(with_devices(doc), doc.get("nodes")):
        if not isinstance(g, dict):
            continue
        fixes = html.items(g.get("fixes"))
        parts = []
        for f in fixes:
            fix = html.dct(f.get("fix"))
            on = f"on {html.e(names([str(n) for n in html.lst(f.get('nodes'))]))}: " if len(fixes) > 1 else ""
            if fix.get("text"):
                parts.append(html.fix_line(fix["text"], on))
            elif on:
                parts.append(f'<p class="fix">{on}(no fix given)</p>')
            if fix.get("command"):
                parts.append(f"<pre><code>{html.e(fix['command'])}</code></pre>")
        if isinstance(g.get("more_fixes"), int) and g["more_fixes"]:
            more = plural(g["more_fixes"], "other fix")
            parts.append(f'<p class="muted">and {html.e(more)}: {html.e(MORE_FIXES)}</p>')
        summary = "".join(f"<br>{html.e(f'{where}: {w}' if where else w)}" for where, w in wordings(g))
        out.append(
            f"<li>{html.badge(g.get('status'))} {html.code(group_title(g))} {html.e(headed(g, total))}"
            f"{summary}{''.join(parts)}</li>"
        )
    head = f"<p><b>{html.e(verdict(doc))}</b></p>"
    return html.section(
        "Fix first", head, fleet_since_line(doc), f"<ul>{''.join(out)}</ul>" if out else "", anchor="problems"
    )


def fleet_since_line(doc: dict[str, Any]) -> str:
    """What changed since the previous run, in one line right under the verdict (as text and Markdown say
    it): whether this run is better or worse is part of the answer, not a detail further down."""
    since = html.dct(doc.get("since"))
    if not since:
        return ""
    try:
        return f"<p>{html.e(since_line(since, doc))}</p>"
    except (KeyError, TypeError, ValueError):  # a hand-edited document: the JSON still has it all
        return ""


def fleet_since(doc: dict[str, Any]) -> str:
    since = html.dct(doc.get("since"))
    if not since:
        return ""
    threshold = finite(doc.get("threshold")) or 0.0
    try:
        lines = since_lines(since, threshold, doc)
    except (KeyError, TypeError, ValueError):  # a hand-edited document: the JSON still has it all
        return ""
    items = "".join(f"<li>{html.e(line)}</li>" for line in lines)
    # its one-line count is under the verdict (fleet_since_line); here, each change
    return html.section("Since the previous report", f"<ul>{items}</ul>") if items else ""


def fleet_nodes(doc: dict[str, Any]) -> str:
    """Each node's row and its own items, collapsed: the problems above already say what each is and
    its fix, and ten thousand rows open only when asked for."""
    nodes = html.items(doc.get("nodes"))
    if not nodes:
        return ""
    rows, problems = [], []
    total = len(nodes)
    everywhere = said_for_every_node(with_devices(doc), total)
    for node in nodes:
        reports = ", ".join(f"{r.get('kind')} {r.get('status')}" for r in html.items(node.get("reports")))
        failing, warnings = html.items(node.get("failing")), html.items(node.get("warnings"))
        rows.append(
            [
                html.code(node.get("hostname")),
                html.badge(node.get("status")),
                html.e(reports),
                html.e(len(failing)),
                html.e(len(warnings)),
                html.e(len(slow_by_device(node))),
            ]
        )
        if only_shared(node, everywhere):
            continue  # its every item is one every node has: said once, above
        for item in [*failing, *warnings]:
            # the fix is said once, with its problem above
            problems.append(
                {**item, "fix": None, "id": f"{item.get('report')} {item.get('id')}", "where": node.get("hostname")}
            )
    failing = sum(1 for n in nodes if n.get("status") in ("fail", "crash"))
    parts = [
        f"<details><summary>{html.e(plural(len(nodes), 'node'))}, {failing} failing: each with its reports</summary>",
        html.table(["node", "status", "reports", "failing", "warnings", "slow devices"], rows, (3, 4, 5)),
    ]
    if problems:
        parts += ["<h3>Each node's failing checks and warnings</h3>", html.problem_items(problems)]
    parts.append("</details>")
    return html.section("Nodes", *parts)


def fleet_drift(doc: dict[str, Any]) -> str:
    rows = []
    for d in drifting(doc):
        values = [v for v in html.items(d.get("values")) if isinstance(v.get("count"), int)]
        if not values:
            continue
        shown = hosts_shown(values)
        for i, v in enumerate(values):
            hosts = html.e(names([str(h) for h in html.lst(v.get("hosts"))])) if shown[i] else "(the majority)"
            rows.append(
                [
                    f"<b>{html.e(d.get('title'))}</b>" if i == 0 else "",
                    html.code(value_text(v.get("value"))),
                    html.e(v.get("count")),
                    hosts,
                ]
            )
    return (
        html.section(
            "Drift",
            '<p class="muted">Fields that should be the same on every node.</p>',
            html.table(["field", "value", "nodes", "hosts"], rows, (2,)),
        )
        if rows
        else ""
    )


def fleet_by_model(doc: dict[str, Any]) -> str:
    rows = [
        [
            f"<b>{html.e(title)}</b>" if i == 0 else "",
            html.code(value_text(value)),
            html.e(n),
            html.e(models_of(value, models)),
        ]
        for title, values in by_model_fields(doc)
        for i, (value, n, models) in enumerate(values)
    ]
    return (
        html.section(
            "By GPU model",
            f'<p class="muted">{html.e(BY_MODEL_WHY[0].upper() + BY_MODEL_WHY[1:])}.</p>',
            html.table(["field", "value", "nodes", "GPU models"], rows, (2,)),
        )
        if rows
        else ""
    )


def fleet_slow_gpus(doc: dict[str, Any]) -> str:
    """Each slow GPU once (one card slow in six benchmarks is one slow GPU, as the counts say): its worst
    figure against its model's fleet median (the track and tick), then the table with every way to find
    the card (host and index, UUID, PCI bus id) and each of its slow figures."""
    slow = slow_of(doc, "gpu")
    if not slow:
        threshold = finite(doc.get("threshold"))
        limit = f" (more than {threshold:.0%} below the fleet median of their model)" if threshold is not None else ""
        return html.section("Slow GPUs", f"<p>No slow GPU{html.e(limit)}.</p>")
    bars = []
    for hostname, d in slow:
        shares = [
            (value / median, f)
            for f in html.items(d.get("figures"))
            if (value := finite(f.get("value"))) is not None
            and (median := finite(f.get("fleet_median")))
            and median > 0
        ]
        if not shares:
            continue
        share, f = min(shares, key=lambda s: s[0])
        unit = f.get("unit") or ""
        note = (
            f"{f.get('id')} {html.num(f.get('value'))} {unit}, {html.pct(f.get('shortfall'))} below the median "
            f"{html.num(f.get('fleet_median'))} {unit}"
        ) + (f"; {plural(len(shares) - 1, 'more slow figure')}" if len(shares) > 1 else "")
        # Each bar is the device's worst figure as a share of its own median: figures in GFLOP/s, GB/s and
        # images/s share one chart, and every median is the same tick.
        bars.append(Bar(f"{device_where(hostname, d)} ({d.get('model')})", share, note, 1.0, "fail"))
    chart = (
        bar_chart(
            "slow-gpus",
            "Slow GPUs: each one's worst figure as a share of the fleet median of its model",
            bars,
            summary=plural(len(bars), "slow GPU"),
            reference_name="fleet median of the same model",
        )
        if bars
        else ""
    )
    return html.section("Slow GPUs", chart, slow_table(slow))


def device_where(hostname: str, d: dict[str, Any]) -> str:
    """A slow device as a person finds it: its host and GPU index, else its host and device name."""
    return (
        f"{hostname} GPU {d['index']}" if d.get("index") is not None else f"{hostname} {d.get('device') or ''}".rstrip()
    )


def slow_table(slow: list[tuple[str, dict[str, Any]]]) -> str:
    """One row per slow device, its slow figures in one cell: four columns that fit a laptop's width (nine
    squeezed a model's name to a word per line) and a phone's card."""
    rows = []
    for hostname, d in slow:
        index = d.get("index")
        figures = "<br>".join(
            f"{html.code(f.get('id'))}{' (--quick)' if f.get('quick') else ''} {html.num(f.get('value'))} "
            f"{html.e(f.get('unit'))}, {html.pct(f.get('shortfall'))} below the median "
            f"{html.num(f.get('fleet_median'))}"
            for f in html.items(d.get("figures"))
        )
        ids = "<br>".join(html.code(x) for x in (d.get("uuid"), d.get("pci_bus_id")) if x)
        # one unbreakable name: "GPU" and its index never part on two lines
        where = html.code(hostname) + (
            f"&nbsp;GPU&nbsp;{html.e(index)}" if index is not None else f"&nbsp;{html.e(d.get('device'))}"
        )
        rows.append([where, html.e(d.get("model")), ids, figures])
    return html.table(["device", "model", "UUID, PCI bus id", "slow figures"], rows)


def fleet_slow_cpus(doc: dict[str, Any]) -> str:
    slow = slow_of(doc, "cpu")
    return html.section("Slow CPUs", slow_table(slow)) if slow else ""


def fleet_set_apart(doc: dict[str, Any]) -> str:
    """The figures left out of the comparisons (taken while the CPUs were busy, or too noisy), one row
    per device: the devices the fleet could not judge, which the verdict says nothing about."""
    parts = []
    for why, title in SET_APART:
        apart = set_apart(doc, why)
        if not apart:
            continue
        devices = apart_by_device(apart)
        shown = devices[:APART_SHOWN]
        rows = [[html.code(host), html.e(device), html.e(", ".join(ids))] for host, device, ids in shown]
        parts.append(f"<h3>{html.e(apart_heading(title, apart, len(devices)))}</h3>")
        parts.append(html.table(["host", "device", "figures"], rows))
        if len(devices) > APART_SHOWN:
            parts.append(f"<p>{html.e(more_devices(len(devices)))}</p>")
    return html.section("Not compared", *parts) if parts else ""


class DuplicateGpusSaid(NamedTuple):
    """The GPUs seen on one set of hosts, as every format says them: one line for a node's eight cards."""

    what: str
    hosts: list[str]
    sources: list[str]
    why: str


#: GPU UUIDs named in a duplicate line before "and N more".
UUIDS_SHOWN = 4


def duplicate_gpus(doc: dict[str, Any]) -> list[DuplicateGpusSaid]:
    """The GPUs seen on two hosts, one line per set of hosts: a report copied from one node to another
    shows all eight of its cards twice, which was eight lines (and "8 duplicates") for one copy."""
    by_hosts: dict[tuple[str, ...], tuple[list[str], dict[str, None]]] = {}
    for g in html.items(html.dct(doc.get("duplicates")).get("gpus")):
        hosts = tuple(str(h) for h in html.lst(g.get("hosts")))
        uuids, sources = by_hosts.setdefault(hosts, ([], {}))
        uuids.append(str(g.get("uuid")))
        sources.update(dict.fromkeys(str(s) for s in html.lst(g.get("sources"))))
    out = []
    for hosts, (uuids, sources) in by_hosts.items():
        shown = ", ".join(uuids[:UUIDS_SHOWN]) + (
            f" and {len(uuids) - UUIDS_SHOWN} more" if len(uuids) > UUIDS_SHOWN else ""
        )
        what = f"GPU {shown}" if len(uuids) == 1 else f"{len(uuids)} GPUs ({shown})"
        why = (
            "a report copied from another node, or a card moved between them"
            if len(uuids) == 1
            else "a report copied from another node, or cards moved between them"
        )
        out.append(DuplicateGpusSaid(what, list(hosts), list(sources), why))
    return out


class DuplicateSaid(NamedTuple):
    """One line of the duplicate hosts, as every format says it: the host, what was found twice, where, why."""

    hostname: str
    seen: str
    sources: list[str]
    why: str


def duplicate_hosts(doc: dict[str, Any]) -> list[DuplicateSaid]:
    """The duplicate hosts, one line each: a host whose reports of every kind were found in the same
    directories (``cp -r node5 node5-old``: its doctor and bench reports twice) is one line naming the
    directories, not a line per kind naming each file. Reports of one kind copied within a directory, or
    found in directories that differ by kind, keep a line per kind."""
    out: dict[Any, DuplicateSaid] = {}
    for at, h in enumerate(html.items(html.dct(doc.get("duplicates")).get("hosts"))):
        hostname, kind = str(h.get("hostname")), str(h.get("kind"))
        sources = [str(s) for s in html.lst(h.get("sources"))]
        dirs = [posixpath.dirname(s) for s in sources]
        newest = h.get("newest")
        whole = all(dirs) and len(set(dirs)) == len(dirs) and (newest is None or str(newest) in sources)
        key: Any = (
            (hostname, tuple(dirs), h.get("copies") is True, newest and posixpath.dirname(str(newest))) if whole else at
        )
        said = out.get(key)
        if said is None:
            out[key] = DuplicateSaid(hostname, f"{len(sources)} {kind} reports", sources, duplicate_words(h))
            continue
        # one more kind of the node's reports found in the same directories: said together
        kinds = [*said.seen.removesuffix(" reports").split(" and "), f"{len(sources)} {kind}"]
        copies, dir_of_newest = key[2], key[3]
        if copies and dir_of_newest:
            why = (
                "copies of one node's reports (the same times, GPUs and verdicts), counted once: those in "
                f"{dir_of_newest}"
            )
        elif dir_of_newest:
            why = f"two machines with one name, or copied reports; the newest reports decide: those in {dir_of_newest}"
        else:
            why = "two machines with one name, or copied reports"
        out[key] = DuplicateSaid(hostname, f"{' and '.join(kinds)} reports", dirs, why)
    return list(out.values())


def duplicate_words(host: dict[str, Any]) -> str:
    """What a host's several reports of one kind are, and which counts: copies of one report (the same
    time, GPUs, verdict and problems) count once; else the newest decides, where their times say which."""
    newest = host.get("newest")
    if host.get("copies") is True and newest:
        return f"copies of one report (the same time, GPUs and verdict), counted once: {newest}"
    said = "two machines with one name, or a copied report"
    return f"{said}; the newest decides: {newest}" if newest else said


def fleet_duplicates(doc: dict[str, Any]) -> str:
    lines = [
        f"<li>{html.badge('warn')} {html.e(g.what)} on {len(g.hosts)} hosts ({html.e(names(g.hosts))}): "
        f"{html.e(g.why)}</li>"
        for g in duplicate_gpus(doc)
    ]
    lines += [
        f"<li>{html.badge('warn')} host {html.code(h.hostname)}: {html.e(h.seen)} ({html.e(names(h.sources))}): "
        f"{html.e(h.why)}</li>"
        for h in duplicate_hosts(doc)
    ]
    return html.section("Duplicates", f"<ul>{''.join(lines)}</ul>") if lines else ""


def fleet_skipped(doc: dict[str, Any]) -> str:
    rows = [[html.code(s.get("source")), html.e(s.get("reason"))] for s in html.items(doc.get("skipped"))]
    return html.section("Skipped", html.table(["source", "reason"], rows)) if rows else ""


FLEET_SECTIONS = (
    fleet_problems,
    fleet_since,
    fleet_slow_gpus,
    fleet_slow_cpus,
    fleet_set_apart,
    fleet_counts,
    fleet_drift,
    fleet_by_model,
    fleet_duplicates,
    fleet_skipped,
    fleet_nodes,
)


def fleet_distributions(doc: dict[str, Any]) -> str:
    """Each compared figure across the fleet, GPU figures then CPU ones: where this fleet's devices sit,
    the median and the slow threshold, the slow ones marked (envcheck.render.svg.distribution_chart). The
    charts are drawn from the comparisons' sorted values: their size stays the same for 10 000 nodes."""
    from envcheck.render.svg import distribution_chart

    charts: dict[str, list[str]] = {}
    for c in html.items(doc.get("comparisons")):
        values = [v for v in (finite(x) for x in html.lst(c.get("values"))) if v is not None]
        median, below = finite(c.get("fleet_median")), finite(c.get("slow_below"))
        if not values or median is None:
            continue
        kind = "CPU" if c.get("device_kind") == "cpu" else "GPU"
        unit = str(c.get("unit") or "")
        slow = sum(below is not None and v < below for v in values)
        what = f"{c.get('id')}{' (--quick)' if c.get('quick') else ''} on {c.get('model') or 'an unnamed model'}"
        title = f"{what}: {plural(len(values), kind)} in {unit}".strip()
        judged = "host-bound, not judged" if c.get("host_bound") is True else plural(slow, "slow device")
        summary = f"median {html.num(median)} {unit}, {judged}"
        chart = distribution_chart(
            "distribution", title, values, median=median, slow_below=below, unit=unit, summary=summary
        )
        charts.setdefault(kind, []).append(
            f'<p><b>{html.e(what)}</b> <span class="muted">{html.e(summary)}</span></p>{chart}'
        )
    parts = [f"<h3>{kind} figures</h3>" + "".join(charts[kind]) for kind in ("GPU", "CPU") if kind in charts]
    lead = (
        '<p class="muted">Each device of a model on one figure: a column counts the devices in its range; the '
        "solid line is the fleet median, the dashed one the slow threshold; slow devices are red, each marked "
        "under the axis.</p>"
    )
    return html.section("Each figure across the fleet", lead, *parts) if parts else ""
