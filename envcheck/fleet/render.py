"""The fleet's reports (``envcheck.fleet/1``): text, Markdown and the HTML page's sections, each
registered for the fleet's schema.

The order is the admin's: the failing nodes first, each failing item with its fix, then what drifted,
the slow devices, duplicates and skipped sources, and the one summary line. Healthy nodes are counted
and named in one line, not listed one per line: a rack of healthy nodes is no news. Everything that came
from a node (host names, summaries, versions) is escaped, so a ``[`` in it is never rich markup and a
``|`` never breaks a Markdown table, a ``<`` never HTML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envcheck.core.report import FLEET_SCHEMA
from envcheck.render import RenderOptions, html, renders
from envcheck.render.common import cell, code, escape, icon, mark, write_lines
from envcheck.render.svg import Bar, bar_chart, finite

if TYPE_CHECKING:
    from rich.console import Console

#: Host names shown in one line (the healthy nodes, the hosts of a drifting value) before "and N more".
NAMES_SHOWN = 20


def names(hosts: list[str], limit: int = NAMES_SHOWN) -> str:
    shown = ", ".join(hosts[:limit])
    return shown + (f" and {len(hosts) - limit} more" if len(hosts) > limit else "")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


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
    contended = [c for c in doc.get("contended") or [] if isinstance(c, dict)]
    if contended:
        say(f"\n[bold]Not compared: taken while other work held the CPUs[/] ({len(contended)})")
        for c in contended:
            say(f"  {escape(str(c.get('hostname')))} {escape(str(c.get('id')))} on {escape(str(c.get('device')))}")
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


@renders("markdown", FLEET_SCHEMA)
def render_markdown(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    write_lines(console, fleet_markdown(doc))


def fleet_markdown(doc: dict[str, Any]) -> list[str]:
    """The same sections as the text report, as Markdown tables."""
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
            f"| {code(node['hostname'])} | {icon(node['status'])} | {cell(reports)} "
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
            fix_text = cell(fix.get("text")) + (f"<br>{code(fix['command'])}" if fix.get("command") else "")
            lines.append(
                f"| {code(hostname)} | {cell(item['report'])} | {code(item['id'])} "
                f"| {icon(item['status'])} | {cell(item['summary'])} | {fix_text} |"
            )
    drift = doc.get("drift") or []
    if drift:
        lines += ["", "### Drift", "", "| field | value | nodes | hosts |", "|---|---|---|---|"]
        for d in drift:
            shown = hosts_shown(d["values"])
            for i, v in enumerate(d["values"]):
                title = "" if i else f"**{cell(d['title'])}**"
                hosts = cell(names(v["hosts"])) if shown[i] else "(the majority)"
                lines.append(f"| {title} | {code(value_text(v['value']))} | {v['count']} | {hosts} |")
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
                f"| {code(f['hostname'])} | {cell(f.get('index'))} | {cell(f.get('uuid'))} "
                f"| {cell(f.get('pci_bus_id'))} | {code(f['id'])} | {cell(f['model'])} "
                f"| {figure(f['value'])} {cell(f['unit'])} | {figure(f['fleet_median'])} | {f['shortfall']:.0%} |"
            )
    duplicates = doc.get("duplicates") or {}
    if duplicates.get("gpus") or duplicates.get("hosts"):
        lines += ["", "### Duplicates", "", "| what | seen on | sources |", "|---|---|---|"]
        for g in duplicates.get("gpus") or []:
            lines.append(f"| GPU {cell(g['uuid'])} | {cell(names(g['hosts']))} | {cell(names(g['sources']))} |")
        for h in duplicates.get("hosts") or []:
            seen = f"{len(h['sources'])} {cell(h['kind'])} reports"
            lines.append(f"| host {code(h['hostname'])} | {seen} | {cell(names(h['sources']))} |")
    contended = [c for c in doc.get("contended") or [] if isinstance(c, dict)]
    if contended:
        lines += ["", "### Not compared: taken while other work held the CPUs", "", "| host | figure | device |"]
        lines.append("|---|---|---|")
        lines += [
            f"| {code(str(c.get('hostname')))} | {cell(c.get('id'))} | {cell(c.get('device'))} |" for c in contended
        ]
    skipped = doc.get("skipped") or []
    if skipped:
        lines += ["", "### Skipped", "", "| source | reason |", "|---|---|"]
        lines += [f"| {cell(s['source'])} | {cell(s['reason'])} |" for s in skipped]
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
    words = (
        ("nodes", "nodes"),
        ("failing", "failing"),
        ("warnings", "with warnings"),
        ("ok", "ok"),
        ("reports_read", "reports read"),
        ("skipped", "skipped"),
        ("drift_fields", "fields drifting"),
        ("slow_gpus", "slow GPUs"),
        ("slow_cpus", "slow CPU figures"),
        ("duplicate_hosts", "duplicate hosts"),
        ("duplicate_gpus", "duplicate GPUs"),
    )
    rows = [[html.e(word), html.e(c.get(key))] for key, word in words if isinstance(c.get(key), int)]
    return html.section("Counts", html.table(["", "count"], rows, (1,))) if rows else ""


def fleet_nodes(doc: dict[str, Any]) -> str:
    nodes = html.items(doc.get("nodes"))
    if not nodes:
        return ""
    rows, problems = [], []
    for node in nodes:
        reports = ", ".join(f"{r.get('kind')} {r.get('status')}" for r in html.items(node.get("reports")))
        failing, warnings, slow = (
            html.items(node.get("failing")),
            html.items(node.get("warnings")),
            html.items(node.get("slow")),
        )
        rows.append(
            [
                html.code(node.get("hostname")),
                html.badge(node.get("status")),
                html.e(reports),
                html.e(len(failing)),
                html.e(len(warnings)),
                html.e(len(slow)),
            ]
        )
        for item in [*failing, *warnings]:
            problems.append({**item, "id": f"{item.get('report')} {item.get('id')}", "where": node.get("hostname")})
    parts = [html.table(["node", "status", "reports", "failing", "warnings", "slow devices"], rows, (3, 4, 5))]
    if problems:
        parts += ["<h3>Failing checks and warnings, with their fixes</h3>", html.problem_items(problems)]
    return html.section("Nodes", *parts)


def fleet_drift(doc: dict[str, Any]) -> str:
    rows = []
    for d in html.items(doc.get("drift")):
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


def slow_where(f: dict[str, Any]) -> str:
    return f"{f.get('hostname')}" + (
        f" GPU {f.get('index')}" if f.get("index") is not None else f" {f.get('device') or ''}".rstrip()
    )


def fleet_slow_gpus(doc: dict[str, Any]) -> str:
    """Each slow GPU's figure against its model's fleet median (the track and tick), then the table with
    every way to find the card (host and index, UUID, PCI bus id)."""
    slow = html.items(doc.get("slow_gpus"))
    if not slow:
        threshold = finite(doc.get("threshold"))
        limit = f" (more than {threshold:.0%} below the fleet median of their model)" if threshold is not None else ""
        return html.section("Slow GPUs", f"<p>No slow GPU{html.e(limit)}.</p>")
    bars = []
    for f in slow:
        value, median = finite(f.get("value")), finite(f.get("fleet_median"))
        if value is None:
            continue
        if median is None or median <= 0:
            continue
        unit = f.get("unit") or ""
        note = f"{html.num(value)} {unit}, {html.pct(f.get('shortfall'))} below the median {html.num(median)} {unit}"
        # Each bar is its figure as a share of its own median: figures in GFLOP/s, GB/s and images/s
        # share one chart, and every median is the same tick.
        bars.append(Bar(f"{slow_where(f)} · {f.get('id')} ({f.get('model')})", value / median, note, 1.0, "fail"))
    chart = (
        bar_chart(
            "slow-gpus",
            "Slow GPUs: each one's figure as a share of the fleet median of its model",
            bars,
            summary=f"{len(bars)} slow GPU figure(s)",
            reference_name="fleet median of the same model",
        )
        if bars
        else ""
    )
    return html.section("Slow GPUs", chart, slow_table(slow))


def slow_table(slow: list[dict[str, Any]]) -> str:
    rows = [
        [
            html.code(f.get("hostname")),
            html.e(f.get("index") if f.get("index") is not None else f.get("device")),
            html.code(f.get("uuid")),
            html.code(f.get("pci_bus_id")),
            html.code(f.get("id")) + (" (--quick)" if f.get("quick") else ""),
            html.e(f.get("model")),
            f"{html.num(f.get('value'))} {html.e(f.get('unit'))}",
            html.num(f.get("fleet_median")),
            html.pct(f.get("shortfall")),
        ]
        for f in slow
    ]
    return html.table(
        ["host", "index", "UUID", "PCI bus id", "benchmark", "model", "value", "fleet median", "below"], rows, (6, 7, 8)
    )


def fleet_slow_cpus(doc: dict[str, Any]) -> str:
    slow = html.items(doc.get("slow_cpus"))
    return html.section("Slow CPUs", slow_table(slow)) if slow else ""


def fleet_duplicates(doc: dict[str, Any]) -> str:
    duplicates = html.dct(doc.get("duplicates"))
    lines = [
        f"<li>{html.badge('warn')} GPU {html.code(g.get('uuid'))} on {len(html.lst(g.get('hosts')))} hosts "
        f"({html.e(names([str(h) for h in html.lst(g.get('hosts'))]))}): a report copied from another node, "
        "or a card moved between them</li>"
        for g in html.items(duplicates.get("gpus"))
    ]
    lines += [
        f"<li>{html.badge('warn')} host {html.code(h.get('hostname'))}: {len(html.lst(h.get('sources')))} "
        f"{html.e(h.get('kind'))} reports ({html.e(names([str(s) for s in html.lst(h.get('sources'))]))}): "
        "two machines with one name, or a copied report</li>"
        for h in html.items(duplicates.get("hosts"))
    ]
    return html.section("Duplicates", f"<ul>{''.join(lines)}</ul>") if lines else ""


def fleet_skipped(doc: dict[str, Any]) -> str:
    rows = [[html.code(s.get("source")), html.e(s.get("reason"))] for s in html.items(doc.get("skipped"))]
    return html.section("Skipped", html.table(["source", "reason"], rows)) if rows else ""


FLEET_SECTIONS = (
    fleet_counts,
    fleet_nodes,
    fleet_drift,
    fleet_slow_gpus,
    fleet_slow_cpus,
    fleet_duplicates,
    fleet_skipped,
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
        summary = f"median {html.num(median)} {unit}, {plural(slow, 'slow device')}"
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
