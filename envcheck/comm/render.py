"""``--format text`` and ``--format markdown`` for an envcheck.comm/1 document (envcheck.render.text and
envcheck.render.markdown hand comm documents here).

Problems come first, each naming the rank and its host, because a person reading a failed run wants
"rank 5 on gpu-node-17 never joined" before any table. Then a table per op (size, time, algbw, busbw,
verified), the peak busbw per op, and the p2p matrix with slow pairs flagged. Everything that came from
a machine (host names, errors) is escaped, so a ``[`` in it is never rich markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from envcheck.core.units import human

if TYPE_CHECKING:
    from rich.console import Console

    from envcheck.render import RenderOptions


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
        console.print(
            "[bold]peak busbw[/]: " + ", ".join(f"{p['op']} {gb(p['busbw_gb_s'])} GB/s" for p in peaks), soft_wrap=True
        )
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
    table = Table(
        title=f"send/recv GB/s, {human(p2p['size_bytes'])} (row: sender, column: receiver)", title_justify="left"
    )
    table.add_column("")
    slow = {(s["src"], s["dst"]) for s in p2p.get("slow_pairs") or []}
    for rank in p2p["ranks"]:
        table.add_column(str(rank), justify="right")
    for src, row in zip(p2p["ranks"], p2p["matrix"], strict=True):
        cells = [
            ("[bold red]" + gb(v) + "[/]") if (src, dst) in slow else gb(v) if v is not None else "[dim]-[/]"
            for dst, v in zip(p2p["ranks"], row, strict=True)
        ]
        table.add_row(str(src), *cells)
    console.print(table)
    for s in p2p.get("slow_pairs") or []:
        console.print(
            f"[yellow]SLOW LINK[/] rank {s['src']} → rank {s['dst']}: {gb(s['gb_s'])} GB/s, {s['shortfall']:.0%} below "
            f"the median of the other pairs on its host ({gb(s['median_gb_s'])} GB/s)",
            soft_wrap=not console.is_terminal,
        )


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
    c = doc.get("summary") or {}
    parts = [f"{c.get('verified', 0)} of {c.get('results', 0)} results verified"]
    if c.get("problems"):
        parts.append(f"{c['problems']} problem(s)")
    if c.get("slow_pairs"):
        parts.append(f"{c['slow_pairs']} slow link(s)")
    if c.get("below_spec"):
        parts.append(f"{c['below_spec']} below spec")
    if not doc.get("completed"):
        parts.append("the run did not finish")
    style = "red" if doc.get("exit_code") else "green"
    return f"[{style}]{', '.join(parts)}[/] in {doc.get('duration_s', 0):.1f} s"


def comm_markdown(doc: dict[str, Any]) -> list[str]:
    """What to paste into an issue: the world, the problems, one table of every op and size, the matrix."""
    from envcheck.render.markdown import cell, code

    world = doc.get("world") or {}
    verdict = "problems found" if doc.get("exit_code") else "verified"
    lines = [
        f"## envcheck comm: {verdict}",
        "",
        f"`{cell((doc.get('host') or {}).get('hostname'))}` · {doc.get('generated_at', '')} · envcheck "
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
    if doc.get("results"):
        lines += ["", "| op | size | time | algbw GB/s | busbw GB/s | verified |", "|---|---|---|---|---|---|"]
        for r in doc["results"]:
            lines.append(
                f"| {code(r['op'])} | {human(r['size_bytes'])} | {seconds(r['time_s'])} | {gb(r['algbw_gb_s'])} | "
                f"{gb(r['busbw_gb_s'])} | {'yes' if r['verified'] else '**WRONG**'} |"
            )
    if doc.get("peaks"):
        lines += ["", "Peak busbw: " + ", ".join(f"{code(p['op'])} {gb(p['busbw_gb_s'])} GB/s" for p in doc["peaks"])]
    ref = reference_lines(doc.get("reference"))
    if ref:
        lines += ["", ref[0], "", *(f"- {cell(line.strip())}" for line in ref[1:])]
    p2p = doc.get("p2p")
    if p2p and p2p.get("size_bytes"):
        lines += ["", f"send/recv GB/s, {human(p2p['size_bytes'])} (row: sender, column: receiver)", ""]
        lines.append("| | " + " | ".join(str(r) for r in p2p["ranks"]) + " |")
        lines.append("|---|" + "---|" * len(p2p["ranks"]))
        for src, row in zip(p2p["ranks"], p2p["matrix"], strict=True):
            lines.append(f"| {src} | " + " | ".join(gb(v) if v is not None else "" for v in row) + " |")
        slow = p2p.get("slow_pairs") or []
        if slow:
            lines.append("")
        lines += [
            f"- **slow link** rank {s['src']} → rank {s['dst']}: {gb(s['gb_s'])} GB/s, {s['shortfall']:.0%} below "
            f"the median of the other pairs on its host ({gb(s['median_gb_s'])} GB/s)"
            for s in slow
        ]
    return lines
