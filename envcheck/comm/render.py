"""The comm's reports (``envcheck.comm/1``): text, Markdown and the HTML page's sections, each registered
for the comm's schema.

Problems come first, each naming the rank and its host, because a person reading a failed run wants
"rank 5 on gpu-node-17 never joined" before any table. Then a table per op (size, time, algbw, busbw,
verified), the peak busbw per op, and the p2p matrix with slow pairs flagged. Everything that came from
a machine (host names, errors) is escaped, so a ``[`` in it is never rich markup and a ``<`` never HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from envcheck.comm.report import p2p_shown, summary_words
from envcheck.comm.transport import transport_words
from envcheck.core.report import COMM_SCHEMA
from envcheck.core.units import human
from envcheck.render import RenderOptions, html, renders
from envcheck.render.common import cell, code, escape, print_items, unquoted, write_lines
from envcheck.render.svg import Series, finite, heatmap, line_chart

if TYPE_CHECKING:
    from rich.console import Console


def gb(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.3g} ms" if value >= 1e-3 else f"{value * 1e6:.3g} µs"


def where(p: dict[str, Any]) -> str:
    if p.get("rank") is None:
        return "the run"
    return f"rank {p['rank']} ({p.get('host') or 'host unknown'})"


@renders("text", COMM_SCHEMA)
def render_text(doc: dict[str, Any], console: Console, options: RenderOptions | None = None) -> None:
    from rich.table import Table

    world = doc.get("world") or {}
    ranks = world.get("ranks") or []
    hosts = sorted({r.get("host") or "?" for r in ranks})
    console.print(
        f"[bold]envcheck comm[/]: {world.get('size')} ranks on {len(hosts)} host(s) "
        f"({escape(', '.join(hosts))}), {escape(str(world.get('backend')))}, "
        f"launched by {escape(str(world.get('launcher')))}",
        soft_wrap=not console.is_terminal,
    )
    for p in doc.get("problems") or []:
        console.print(
            f"[bold red]PROBLEM[/] {escape(where(p))}: {escape(p['what'])}", soft_wrap=not console.is_terminal
        )
    for line in transport_lines(doc.get("transport"), fix_words=unquoted):
        console.print(escape(line), soft_wrap=not console.is_terminal)
    by_op: dict[str, list[dict[str, Any]]] = {}
    for r in doc.get("results") or []:
        by_op.setdefault(r["op"], []).append(r)
    for op, rows in by_op.items():
        table = Table(title=f"{op} (busbw = algbw × {rows[0]['busbw_factor']:.3g})", title_justify="left")
        for name in ("size", "time", "algbw GB/s", "busbw GB/s", "verified"):
            table.add_column(name, justify="left" if name in ("size", "verified") else "right")
        for r in rows:
            ok = (
                "[green]yes[/]"
                if r["verified"]
                else f"[bold red]WRONG on rank {', '.join(str(w['rank']) for w in r['wrong'])}[/]"
            )
            table.add_row(human(r["size_bytes"]), seconds(r["time_s"]), gb(r["algbw_gb_s"]), gb(r["busbw_gb_s"]), ok)
        console.print(table)
    peaks = doc.get("peaks") or []
    if peaks:
        print_items(console, "[bold]peak busbw[/]: ", [f"{escape(p['op'])} {gb(p['busbw_gb_s'])} GB/s" for p in peaks])
    latency = latency_line(doc.get("latency"))
    if latency:
        console.print(f"[bold]latency[/] {escape(latency)}", soft_wrap=not console.is_terminal)
    for line in reference_lines(doc.get("reference")):
        console.print(escape(line), soft_wrap=not console.is_terminal)
    _matrix(doc.get("p2p"), console)
    for v in doc.get("spec") or []:
        mark = {True: "[green]spec ✓[/]", False: "[bold red]BELOW SPEC[/]", None: "[dim]spec -[/]"}[v.get("passed")]
        console.print(
            f"{mark} {escape(str(v.get('op')))}: {escape(str(v.get('summary')))}", soft_wrap=not console.is_terminal
        )
    console.print(summary_line(doc), soft_wrap=not console.is_terminal)


def _matrix(p2p: dict[str, Any] | None, console: Console) -> None:
    from rich.table import Table

    if not p2p or not p2p.get("size_bytes"):
        return
    nodes, left_out = p2p_shown(p2p)
    slow = {(s["src"], s["dst"]) for s in p2p.get("slow_pairs") or []}
    for node in nodes:
        on = f" on {escape(str(node['host']))}" if node.get("host") else ""
        # The title is a line of its own: as the table's title it would wrap to the width of a two-rank table.
        console.print(
            f"[italic]send/recv GB/s{on}, {human(p2p['size_bytes'])} (row: sender, column: receiver)[/]",
            soft_wrap=not console.is_terminal,
        )
        table = Table()
        table.add_column("")
        for rank in node["ranks"]:
            table.add_column(str(rank), justify="right")
        for src, row in zip(node["ranks"], node["matrix"], strict=False):
            cells = [
                ("[bold red]" + gb(v) + "[/]") if (src, dst) in slow else gb(v) if v is not None else "[dim]-[/]"
                for dst, v in zip(node["ranks"], row, strict=False)
            ]
            table.add_row(str(src), *cells)
        console.print(table)
    if left_out:
        console.print(f"send/recv on {left_out} other node(s): no slow link (every figure is in the JSON report)")
    for s in p2p.get("slow_pairs") or []:
        console.print(
            f"[yellow]SLOW LINK[/] rank {s['src']} → rank {s['dst']}: {gb(s['gb_s'])} GB/s, {s['shortfall']:.0%} below "
            f"the median of the other pairs on its host ({gb(s['median_gb_s'])} GB/s)",
            soft_wrap=not console.is_terminal,
        )


def transport_lines(transport: Any, *, fix_words: Callable[[Any], str] = str) -> list[str]:
    """NCCL's transport per rank and each finding with its checks and fix (text and Markdown alike;
    ``fix_words``: the fix's words as the format says them, its code spans unquoted in text)."""
    if not isinstance(transport, dict):
        return []
    if transport.get("note"):
        return [f"transport: {transport['note']}"]
    lines = [
        f"transport: rank {v.get('rank')} ({v.get('host') or '?'}): {transport_words(v)}"
        for v in transport.get("ranks") or []
        if isinstance(v, dict)
    ]
    for f in transport.get("findings") or []:
        ranks = ", ".join(str(r) for r in f.get("ranks") or [])
        lines.append(
            f"TRANSPORT {f.get('host') or '?'} (rank {ranks}): {f.get('what')} (checks: "
            f"{', '.join(f.get('checks') or [])}). Fix: {fix_words(f.get('fix'))}"
        )
    return lines


def latency_line(latency: Any) -> str | None:
    """'at the smallest size (4.0 KiB): all_reduce 52.1 µs, broadcast 31.0 µs': each op's time per call at
    its smallest size, what nccl-tests' small-message rows show (the ops that count S over every rank's
    buffer round it to a multiple of the ranks: a range then). None when no op has one."""
    rows = [r for r in latency or [] if isinstance(r, dict) and isinstance(r.get("latency_us"), (int, float))]
    if not rows:
        return None
    sizes = list(dict.fromkeys(human(b) for b in sorted({r.get("size_bytes") for r in rows} - {None})))
    where = f" ({sizes[0]})" if len(sizes) == 1 else f" ({sizes[0]}–{sizes[-1]})" if sizes else ""
    figures = ", ".join(f"{r.get('op')} {seconds(r['latency_us'] / 1e6)}" for r in rows)
    return f"at the smallest size{where}: {figures}"


#: The figures a reference line needs of each op (a hand-edited report may lack them: that op is left out).
NUMBERS = ("busbw_gb_s", "line_rate_fraction")


def reference_lines(ref: dict[str, Any] | None) -> list[str]:
    """Each op's peak busbw as a fraction of the link's line rate and of what NCCL typically measures on
    that fabric (envcheck/comm/reference.py, every figure with its source); nothing where it is unknown."""
    if not isinstance(ref, dict) or not isinstance(ref.get("line_rate_gb_s"), (int, float)):
        return []
    lines = [f"{ref.get('title')}: line rate {gb(ref['line_rate_gb_s'])} GB/s per direction ({ref.get('source')})"]
    ops = ref.get("ops") if isinstance(ref.get("ops"), dict) else {}
    for op, r in ops.items():
        if not (isinstance(r, dict) and all(isinstance(r.get(k), (int, float)) for k in NUMBERS)):
            continue
        typical = (
            f", {r['typical_fraction']:.0%} of the typical {gb(r['typical_gb_s'])} GB/s"
            if isinstance(r.get("typical_fraction"), (int, float)) and isinstance(r.get("typical_gb_s"), (int, float))
            else ""
        )
        lines.append(f"  {op}: busbw {gb(r['busbw_gb_s'])} GB/s = {r['line_rate_fraction']:.0%} of line rate{typical}")
    return lines


def summary_line(doc: dict[str, Any]) -> str:
    parts = [escape(word) for word in summary_words(html.dct(doc.get("summary")), completed=doc.get("completed"))]
    style = "red" if doc.get("exit_code") else "green"
    return f"[{style}]{', '.join(parts)}[/] in {doc.get('duration_s', 0):.1f} s"


@renders("markdown", COMM_SCHEMA)
def render_markdown(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    write_lines(console, comm_markdown(doc))


def comm_markdown(doc: dict[str, Any]) -> list[str]:
    """What to paste into an issue: the world, the problems, one table of every op and size, the matrix."""
    world = doc.get("world") or {}
    verdict = "problems found" if doc.get("exit_code") else "verified"
    lines = [
        f"## envcheck comm: {verdict}",
        "",
        f"{code((doc.get('host') or {}).get('hostname') or '')} · {doc.get('generated_at', '')} · envcheck "
        f"{doc.get('envcheck_version', '')} · {world.get('size')} ranks, {cell(world.get('backend'))} · "
        f"{doc.get('duration_s', 0):.1f} s",
        "",
        "| rank | host | device | GPU | uuid |",
        "|---|---|---|---|---|",
    ]
    for r in world.get("ranks") or []:
        lines.append(
            f"| {r['rank']} | {cell(r.get('host'))} | {cell(r.get('device'))} | {cell(r.get('gpu_name'))} | "
            f"{cell(r.get('gpu_uuid'))} |"
        )
    if doc.get("problems"):
        lines += ["", "### Problems", ""]
        lines += [f"- {cell(where(p))}: {cell(p['what'])}" for p in doc["problems"]]
    transport = transport_lines(doc.get("transport"))
    if transport:
        lines += ["", "### Transport (NCCL)", ""]
        lines += [f"- {cell(line)}" for line in transport]
    if doc.get("results"):
        lines += ["", "| op | size | time | algbw GB/s | busbw GB/s | verified |", "|---|---|---|---|---|---|"]
        for r in doc["results"]:
            lines.append(
                f"| {code(r['op'])} | {human(r['size_bytes'])} | {seconds(r['time_s'])} | {gb(r['algbw_gb_s'])} | "
                f"{gb(r['busbw_gb_s'])} | {'yes' if r['verified'] else '**WRONG**'} |"
            )
    if doc.get("peaks"):
        lines += ["", "Peak busbw: " + ", ".join(f"{code(p['op'])} {gb(p['busbw_gb_s'])} GB/s" for p in doc["peaks"])]
    latency = latency_line(doc.get("latency"))
    if latency:
        lines += ["", f"Latency {cell(latency)}"]
    ref = reference_lines(doc.get("reference"))
    if ref:
        lines += ["", ref[0], "", *(f"- {cell(line.strip())}" for line in ref[1:])]
    p2p = doc.get("p2p")
    if p2p and p2p.get("size_bytes"):
        nodes, left_out = p2p_shown(p2p)
        for node in nodes:
            on = f" on {code(str(node['host']))}" if node.get("host") else ""
            lines += ["", f"send/recv GB/s{on}, {human(p2p['size_bytes'])} (row: sender, column: receiver)", ""]
            lines.append("| | " + " | ".join(str(r) for r in node["ranks"]) + " |")
            lines.append("|---|" + "---|" * len(node["ranks"]))
            for src, row in zip(node["ranks"], node["matrix"], strict=False):
                lines.append(f"| {src} | " + " | ".join(gb(v) if v is not None else "" for v in row) + " |")
        if left_out:
            lines += ["", f"send/recv on {left_out} other node(s): no slow link (every figure is in the JSON report)"]
        slow = p2p.get("slow_pairs") or []
        if slow:
            lines.append("")
        lines += [
            f"- **slow link** rank {s['src']} → rank {s['dst']}: {gb(s['gb_s'])} GB/s, {s['shortfall']:.0%} below "
            f"the median of the other pairs on its host ({gb(s['median_gb_s'])} GB/s)"
            for s in slow
        ]
    return lines


# -- html ------------------------------------------------------------------------------------------------


@renders("html", COMM_SCHEMA)
def render_html(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    html.write_page(console, doc, "comm", comm_header, COMM_SECTIONS)


def comm_header(doc: dict[str, Any]) -> tuple[str, str]:
    world = html.dct(doc.get("world"))
    verdict = "problems found" if doc.get("exit_code") else "verified"
    if not doc.get("completed", True):
        verdict += " (the run did not finish)"
    extra = (
        f"{html.e(world.get('size'))} ranks, {html.e(world.get('backend'))}, "
        f"launched by {html.e(world.get('launcher'))}"
    )
    return html.header("comm", verdict, "fail" if doc.get("exit_code") else "ok", doc, extra)


def comm_world(doc: dict[str, Any]) -> str:
    world = html.dct(doc.get("world"))
    ranks = html.items(world.get("ranks"))
    hosts = sorted({str(r.get("host") or "?") for r in ranks})
    lead = f"<p>{len(ranks)} ranks on {len(hosts)} host(s): {html.e(', '.join(hosts))}</p>" if ranks else ""
    rows = [
        [
            html.e(r.get("rank")),
            html.code(r.get("host")),
            html.code(r.get("device")),
            html.e(r.get("gpu_name") or ""),
            html.code(r.get("gpu_uuid")),
            html.badge("ok") if r.get("joined") is not False else html.badge("fail") + " never joined",
        ]
        for r in ranks
    ]
    parts = [lead, html.table(["rank", "host", "device", "GPU", "UUID", "joined"], rows) if rows else ""]
    return html.section("World", *parts, collapsed=True)


def comm_problems(doc: dict[str, Any]) -> str:
    """What to act on, first under the verdict: the run's problems, NCCL's transport findings with their
    fixes, wrong results and slow links."""
    lines = [
        f"<li>{html.badge('fail')} {html.e(where(p))}: {html.e(p.get('what'))}</li>"
        for p in html.items(doc.get("problems"))
    ]
    for r in html.items(doc.get("results")):
        if r.get("verified") is False:
            wrong = ", ".join(str(w.get("rank")) for w in html.items(r.get("wrong")))
            lines.append(
                f"<li>{html.badge('fail')} {html.code(r.get('op'))} at {html.size_text(r.get('size_bytes'))}: "
                f"WRONG result{' on rank ' + html.e(wrong) if wrong else ''}</li>"
            )
    for f in html.items(html.dct(doc.get("transport")).get("findings")):
        ranks = ", ".join(str(r) for r in html.lst(f.get("ranks")))
        checks = ", ".join(str(c) for c in html.lst(f.get("checks")))
        lines.append(
            f"<li>{html.badge('warn')} transport on {html.code(f.get('host') or '?')} (rank {html.e(ranks)}): "
            f"{html.e(f.get('what'))}{f' (checks: {html.e(checks)})' if checks else ''}"
            f"{html.fix_line(f.get('fix'))}</li>"
        )
    lines += slow_link_items(doc)
    return html.section("Problems", f'<ul class="problems">{"".join(lines)}</ul>') if lines else ""


def slow_link_items(doc: dict[str, Any]) -> list[str]:
    """Each slow link as a list item: under the verdict with the problems, and beside the matrix whose "!"
    cells it explains."""
    return [
        f"<li>{html.badge('warn')} slow link rank {html.e(s.get('src'))} → rank {html.e(s.get('dst'))}: "
        f"{html.e(gb(finite(s.get('gb_s'))))} GB/s, {html.pct(s.get('shortfall'))} below the median of the other "
        f"pairs on its host ({html.e(gb(finite(s.get('median_gb_s'))))} GB/s)</li>"
        for s in html.items(html.dct(doc.get("p2p")).get("slow_pairs"))
    ]


def comm_chart(doc: dict[str, Any]) -> str:
    """busbw against message size, one line per op, on a log-2 size axis (sizes double)."""
    by_op: dict[str, list[tuple[float, float | None]]] = {}
    for r in html.items(doc.get("results")):
        size = finite(r.get("size_bytes"))
        if size is None or size <= 0:
            continue
        by_op.setdefault(str(r.get("op")), []).append((size, finite(r.get("busbw_gb_s"))))
    series = [Series(op, sorted(points)) for op, points in by_op.items() if any(y is not None for _, y in points)]
    if not series:
        return ""
    peaks = ", ".join(f"{p.get('op')} {html.num(p.get('busbw_gb_s'))} GB/s" for p in html.items(doc.get("peaks")))
    chart = line_chart(
        "busbw",
        "Bus bandwidth (GB/s) against message size, per collective",
        series,
        x_label="message size (log 2)",
        y_label="busbw GB/s",
        log2_x=True,
        x_text=lambda x: human(int(x)),
        summary=f"peak busbw: {peaks}" if peaks else "",
    )
    lead = (
        "<p class=\"muted\">busbw is the algorithm bandwidth scaled by each collective's factor (NCCL-tests' "
        "convention), so that every op is compared with the link's speed.</p>"
    )
    tail = f"<p>Peak busbw: {html.e(peaks)}</p>" if peaks else ""
    return html.section("Bus bandwidth", lead, chart, tail)


def comm_results(doc: dict[str, Any]) -> str:
    rows = []
    for r in html.items(doc.get("results")):
        wrong = ", ".join(str(w.get("rank")) for w in html.items(r.get("wrong")))
        verified = (
            "yes"
            if r.get("verified") is True
            else f'<span class="badge s-fail">✗ WRONG</span> {("on rank " + html.e(wrong)) if wrong else ""}'
        )
        rows.append(
            [
                html.code(r.get("op")),
                html.size_text(r.get("size_bytes")),
                html.e(seconds(finite(r.get("time_s")))),
                html.e(gb(finite(r.get("algbw_gb_s")))),
                html.e(gb(finite(r.get("busbw_gb_s")))),
                verified,
            ]
        )
    if not rows:
        return ""
    return html.section(
        "Results",
        html.table(["op", "size", "time", "algbw GB/s", "busbw GB/s", "verified"], rows, (1, 2, 3, 4)),
        collapsed=True,
    )


def comm_reference(doc: dict[str, Any]) -> str:
    lines = reference_lines(doc.get("reference"))
    if not lines:
        return ""
    return html.section(
        "Against the fabric's reference",
        f"<p>{html.e(lines[0])}</p>",
        "<ul>" + "".join(f"<li>{html.e(x.strip())}</li>" for x in lines[1:]) + "</ul>",
    )


def comm_p2p(doc: dict[str, Any]) -> str:
    """Each node's send/recv bandwidth between its ranks as a heatmap (and the numbers as a table); slow
    links flagged."""
    p2p = html.dct(doc.get("p2p"))
    slow_pairs = html.items(p2p.get("slow_pairs"))
    nodes, left_out = p2p_shown(p2p)
    slow = slow_link_items(doc)
    parts = [_p2p_node(node, p2p, slow_pairs, several=len(nodes) + left_out > 1) for node in nodes]
    parts = [p for p in parts if p]
    if not parts:
        return ""
    others = (
        f'<p class="muted">send/recv on {left_out} other node(s): no slow link (every figure is in the JSON '
        "report).</p>"
        if left_out
        else ""
    )
    return html.section(
        "Point to point",
        '<p class="muted">Row: the sender; column: the receiver. Darker is faster; a cell marked "!" is a slow '
        "link.</p>",
        *parts,
        others,
        f"<ul>{''.join(slow)}</ul>" if slow else "",
    )


def _p2p_node(node: dict[str, Any], p2p: dict[str, Any], slow_pairs: list[Any], *, several: bool) -> str:
    ranks = html.lst(node.get("ranks"))
    matrix = [[finite(v) for v in html.lst(row)] for row in html.lst(node.get("matrix"))]
    if not ranks or len(matrix) != len(ranks) or any(len(row) != len(ranks) for row in matrix):
        return ""
    if all(v is None for row in matrix for v in row):
        return ""
    index = {r: i for i, r in enumerate(ranks)}
    flagged = {
        (index[s.get("src")], index[s.get("dst")])
        for s in slow_pairs
        if s.get("src") in index and s.get("dst") in index
    }
    labels = [str(r) for r in ranks]
    size = html.size_text(p2p.get("size_bytes"))
    host = str(node.get("host")) if several and node.get("host") else ""
    chart = heatmap(
        "p2p",
        f"Send/recv bandwidth between ranks{' on ' + host if host else ''} (GB/s, {size} messages)",
        labels,
        matrix,
        cell_text=gb,
        flagged=flagged,
        row_name="sender",
        column_name="receiver",
        summary=f"{len(labels)} ranks, {len(flagged)} slow link(s)",
    )
    rows = []
    for i, src in enumerate(labels):
        rows.append(
            [
                f"<b>{html.e(src)}</b>",
                *(
                    ("odd", html.e(gb(v)) + " !") if (i, j) in flagged else html.e(gb(v)) if v is not None else "-"
                    for j, v in enumerate(matrix[i])
                ),
            ]
        )
    grid = html.folded(
        "the figures",
        html.table(["sender ↓ receiver →", *(html.e(x) for x in labels)], rows, range(1, len(labels) + 1)),
    )
    return (f"<h3>{html.e(host)}</h3>" if host else "") + chart + grid


def comm_spec(doc: dict[str, Any]) -> str:
    return html.section("Lab spec", html.spec_list(html.items(doc.get("spec")), "op"))


def comm_summary(doc: dict[str, Any]) -> str:
    parts = [html.e(word) for word in summary_words(html.dct(doc.get("summary")), completed=True)]
    return f"<p><b>{', '.join(parts)}</b></p>"


#: What to act on first (problems with their fixes, the spec), the charts and the judgement against the
#: fabric; then, collapsed, the raw tables.
COMM_SECTIONS = (
    comm_problems,
    comm_spec,
    comm_summary,
    comm_chart,
    comm_p2p,
    comm_reference,
    comm_results,
    comm_world,
)
