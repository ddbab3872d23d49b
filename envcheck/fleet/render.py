"""``--format text`` and ``--format markdown`` for an envcheck.fleet/1 document (envcheck.render.text and
envcheck.render.markdown hand fleet documents here).

The order is the admin's: the failing nodes first, each failing item with its fix, then what drifted,
the slow devices, duplicates and skipped sources, and the one summary line. Healthy nodes are counted
and named in one line, not listed one per line: a rack of healthy nodes is no news. Everything that came
from a node (host names, summaries, versions) is escaped, so a ``[`` in it is never rich markup and a
``|`` never breaks a Markdown table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

    from envcheck.render import RenderOptions

#: Host names shown in one line (the healthy nodes, the hosts of a drifting value) before "and N more".
NAMES_SHOWN = 20


def names(hosts: list[str], limit: int = NAMES_SHOWN) -> str:
    shown = ", ".join(hosts[:limit])
    return shown + (f" and {len(hosts) - limit} more" if len(hosts) > limit else "")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def code_cell(value: Any) -> str:
    """Inline code inside a table cell: GitHub ends the cell at any ``|``, even inside backticks."""
    from envcheck.render.markdown import code

    return code(value).replace("|", "\\|")


def hosts_shown(values: list[dict[str, Any]]) -> list[bool]:
    """Which of a drifting field's values to name the hosts of: all but the first when it is the
    majority (the odd ones out are the news), every one when no value is."""
    total = sum(v["count"] for v in values)
    majority = values[0]["count"] * 2 > total
    return [not (majority and i == 0) for i in range(len(values))]


def value_text(value: Any) -> str:
    """A field's value as a person reads it; "none" where the node has none (no driver, no GPU)."""
    return "none" if value is None else str(value)


def figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def render_text(doc: dict[str, Any], console: Console, options: RenderOptions | None = None) -> None:
    from envcheck.render.text import mark

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
    healthy = []
    for node in doc.get("nodes") or []:
        if node["status"] == "ok":
            healthy.append(node["hostname"])
            continue
        kinds = ", ".join(f"{r['kind']} {r['status']}" for r in node.get("reports") or [])
        say(f"\n{mark(console, node['status'])} [bold]{escape(node['hostname'])}[/]  [dim]{escape(kinds)}[/]")
        for item in [*(node.get("failing") or []), *(node.get("warnings") or [])]:
            what = f"{item['report']} {item['id']}: {item['summary']}"
            say(f"    {mark(console, item['status'])} {escape(what)}")
            fix = item.get("fix") or {}
            if fix.get("text"):
                say(f"        [cyan]fix:[/] {escape(fix['text'])}")
            if fix.get("command"):
                say(f"        [cyan]run:[/] {escape(fix['command'])}")
        for s in node.get("slow") or []:
            where = f"GPU {s['index']}" if s.get("index") is not None else s.get("device") or "device"
            what = f"slow {where} {s['id']}: {s['shortfall']:.0%} below the fleet median"
            say(f"    {mark(console, 'fail')} {escape(what)}")
    if healthy:
        say(f"\n{mark(console, 'ok')} {plural(len(healthy), 'node')} ok: {escape(names(healthy))}")
    drift = doc.get("drift") or []
    if drift:
        say("\n[bold]Drift[/] (fields that should be the same on every node)")
        for d in drift:
            parts = []
            shown = hosts_shown(d["values"])
            for i, v in enumerate(d["values"]):
                hosts = f" ({names(v['hosts'])})" if shown[i] else ""
                parts.append(f"{value_text(v['value'])} on {v['count']}{hosts}")
            say(f"  [yellow]{escape(d['title'])}[/]: {escape('; '.join(parts))}")
    for key, title in (("slow_gpus", "Slow GPUs"), ("slow_cpus", "Slow CPUs")):
        slow = doc.get(key) or []
        if slow:
            lines += slow_lines(title, slow, doc.get("threshold", 0))
    duplicates = doc.get("duplicates") or {}
    if duplicates.get("gpus") or duplicates.get("hosts"):
        say("")
    for g in duplicates.get("gpus") or []:
        say(
            f"[yellow]DUPLICATE GPU[/] {escape(g['uuid'])} on {len(g['hosts'])} hosts ({escape(names(g['hosts']))}): "
            "a report copied from another node, or a card moved between them"
        )
    for h in duplicates.get("hosts") or []:
        say(
            f"[yellow]DUPLICATE HOST[/] {escape(h['hostname'])}: {len(h['sources'])} {escape(h['kind'])} reports "
            f"({escape(names(h['sources']))}): two machines with one name, or a copied report"
        )
    skipped = doc.get("skipped") or []
    if skipped:
        say(f"\n[bold]Skipped[/] ({len(skipped)})")
        for s in skipped:
            say(f"  {escape(s['source'])}: {escape(s['reason'])}")
    style = {"ok": "bold green", "warn": "bold yellow"}.get(doc.get("status", ""), "bold red")
    say(f"\n[{style}]{escape(str(summary.get('text', '')))}[/]  [dim]({doc.get('duration_s', 0.0):.1f} s)[/]")
    console.print("\n".join(lines), soft_wrap=soft)


def slow_lines(title: str, slow: list[dict[str, Any]], threshold: float) -> list[str]:
    """One line per slow device, every way to find it on one line (host and index, UUID, PCI bus id):
    what an admin greps for, and never folded by a narrow terminal as a nine-column table would be."""
    lines = [f"\n[bold]{title}[/] (more than {threshold:.0%} below the fleet median of their model)"]
    for f in slow:
        where = f["hostname"] if f.get("index") is None else f"{f['hostname']} GPU {f['index']}"
        ids = ", ".join(x for x in (f.get("uuid"), f.get("pci_bus_id")) if x)
        text = (
            f"{where}{f' ({ids})' if ids else ''} {f['id']}{' (--quick)' if f.get('quick') else ''} on {f['model']}: "
            f"{figure(f['value'])} {f['unit']}, "
            f"{f['shortfall']:.0%} below the median {figure(f['fleet_median'])}"
        )
        lines.append(f"  [bold red]SLOW[/] {escape(text)}")
    return lines


def fleet_markdown(doc: dict[str, Any]) -> list[str]:
    """The same sections as the text report, as Markdown tables."""
    from envcheck.render.markdown import ICONS, cell

    summary = doc.get("summary") or {}
    lines = [
        f"## envcheck fleet: {cell(summary.get('text', ''))}",
        "",
        f"{doc.get('generated_at', '')} · envcheck {doc.get('envcheck_version', '')} · "
        f"slow means more than {doc.get('threshold', 0):.0%} below the fleet median of the same model",
        "",
        "### Nodes",
        "",
        "| node | status | reports | failing | warnings | slow devices |",
        "|---|---|---|---|---|---|",
    ]
    problems = []
    for node in doc.get("nodes") or []:
        reports = ", ".join(f"{r['kind']} {r['status']}" for r in node.get("reports") or [])
        failing, warnings = node.get("failing") or [], node.get("warnings") or []
        lines.append(
            f"| {code_cell(node['hostname'])} | {ICONS.get(node['status'], node['status'])} | {cell(reports)} "
            f"| {len(failing)} | {len(warnings)} | {len(node.get('slow') or [])} |"
        )
        problems += [(node["hostname"], item) for item in [*failing, *warnings]]
    if problems:
        lines += [
            "",
            "### Failing checks and warnings",
            "",
            "| node | report | check | status | summary | fix |",
            "|---|---|---|---|---|---|",
        ]
        for hostname, item in problems:
            fix = item.get("fix") or {}
            fix_text = cell(fix.get("text")) + (f"<br>{code_cell(fix['command'])}" if fix.get("command") else "")
            lines.append(
                f"| {code_cell(hostname)} | {cell(item['report'])} | {code_cell(item['id'])} "
                f"| {ICONS.get(item['status'], item['status'])} | {cell(item['summary'])} | {fix_text} |"
            )
    drift = doc.get("drift") or []
    if drift:
        lines += ["", "### Drift", "", "| field | value | nodes | hosts |", "|---|---|---|---|"]
        for d in drift:
            shown = hosts_shown(d["values"])
            for i, v in enumerate(d["values"]):
                title = "" if i else f"**{cell(d['title'])}**"
                hosts = cell(names(v["hosts"])) if shown[i] else "(the majority)"
                lines.append(f"| {title} | {code_cell(value_text(v['value']))} | {v['count']} | {hosts} |")
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
                f"| {code_cell(f['hostname'])} | {cell(f.get('index'))} | {cell(f.get('uuid'))} "
                f"| {cell(f.get('pci_bus_id'))} | {code_cell(f['id'])} | {cell(f['model'])} "
                f"| {figure(f['value'])} {cell(f['unit'])} | {figure(f['fleet_median'])} | {f['shortfall']:.0%} |"
            )
    duplicates = doc.get("duplicates") or {}
    if duplicates.get("gpus") or duplicates.get("hosts"):
        lines += ["", "### Duplicates", "", "| what | seen on | sources |", "|---|---|---|"]
        for g in duplicates.get("gpus") or []:
            lines.append(f"| GPU {cell(g['uuid'])} | {cell(names(g['hosts']))} | {cell(names(g['sources']))} |")
        for h in duplicates.get("hosts") or []:
            seen = f"{len(h['sources'])} {cell(h['kind'])} reports"
            lines.append(f"| host {code_cell(h['hostname'])} | {seen} | {cell(names(h['sources']))} |")
    skipped = doc.get("skipped") or []
    if skipped:
        lines += ["", "### Skipped", "", "| source | reason |", "|---|---|"]
        lines += [f"| {cell(s['source'])} | {cell(s['reason'])} |" for s in skipped]
    return lines
