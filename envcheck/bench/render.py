"""``--format text`` for an envcheck.bench/1 document (envcheck.render.text hands bench documents here).

It reads the same redacted dict as the JSON and Markdown renderers, never the live results, so what a
person reads and what a machine parses cannot disagree. The table is benchmark × device: one row per
(benchmark, case), one column per device. Every text that came from the machine (a model name, an error)
is escaped, so a ``[`` in it is never taken for rich markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

    from envcheck.render import RenderOptions


#: The widest a table row may be where there is no terminal to ask (a row wider than this wraps).
PIPE_WIDTH = 400


def num(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def cell(r: dict[str, Any]) -> str:
    """One table cell: the figure, its share of peak, the spread, and any flag, in rich markup."""
    status, reason = r["status"], escape(r.get("reason") or "")
    if status == "skip":
        return f"[dim]skipped: {reason}[/]"
    if status == "crash":
        return f"[bold red]CRASHED[/] {reason}"
    text = f"{num(r['value'])} {escape(r['unit'] or '')}"
    if r.get("peak_fraction") is not None:
        text += f" [cyan]{r['peak_fraction']:.0%}[/]"
    spread = (r.get("stats") or {}).get("relative_iqr")
    if spread is not None:
        text += f" [dim]±{spread / 2:.0%}[/]"
    for unit, rate in (r.get("rates") or {}).items():
        text += f" [dim]{num(rate)} {escape(unit)}[/]"
    backend = (r.get("params") or {}).get("backend")
    if backend:
        text += f" [magenta]{escape(str(backend))}[/]"
    if r.get("noisy"):
        text += " [yellow]noisy[/]"
    if r.get("contended"):
        text += " [yellow]contended[/]"
    if r.get("slow_vs_siblings"):
        text += f" [bold red]SLOW {-r['slow_vs_siblings']['shortfall']:.0%} vs siblings[/]"
    if status == "fail":
        text = f"[bold red]WRONG RESULT[/] {text}"
    return text


def render_text(doc: dict[str, Any], console: Console, options: RenderOptions | None = None) -> None:
    """The human report of one bench document: preflight, the table, the findings, one summary line."""
    from rich.table import Table

    from envcheck.render.text import DoctorText

    if doc.get("preflight"):
        # The preflight's checks read exactly like the doctor's (they are the doctor's, and the CPU one).
        console.print("[bold]Preflight[/]")
        checks = DoctorText(console)
        for c in doc["preflight"]:
            checks.result(c)
    devices = doc.get("devices", [])
    names = [d["name"] for d in devices]
    table = Table(title="envcheck bench", show_lines=False)
    table.add_column("benchmark")
    table.add_column("case")
    for d in devices:
        table.add_column(f"{escape(d['name'])}\n[dim]{escape(d['model'])}[/]")
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in doc.get("results", []):
        rows.setdefault((r["id"], r["case"] if len(names) == 1 else r["label"]), {})[r["device"]] = r
    for (bench_id, case), by_device in rows.items():
        table.add_row(escape(bench_id), escape(case), *[cell(by_device[n]) if n in by_device else "" for n in names])
    print_wide(console, table)
    legend = "value, [cyan]share of datasheet peak[/], ±half the IQR of the samples"
    if any(r.get("contended") for r in doc.get("results", [])):
        legend += "; [yellow]contended[/]: other processes took CPU time while it ran"
    _say(console, f"[dim]{legend}[/]")
    _findings(doc, console)
    _say(console, summary_line(doc))


def print_wide(console: Console, table: Any) -> None:
    """On a terminal the table fits the window; in a pipe or a file it keeps its natural width (one line
    per row, as a log wants), not the 80 columns rich assumes where it cannot ask a terminal."""
    if console.is_terminal:
        console.print(table)
        return
    width = console.width
    console.width = max(width, PIPE_WIDTH)
    try:
        console.print(table)
    finally:
        console.width = width


def _say(console: Console, text: str) -> None:
    """One finding or summary: word-wrapped to a terminal's width (a narrow terminal must not split a
    word), one unwrapped line in a pipe or a file."""
    console.print(text, soft_wrap=not console.is_terminal)


def _findings(doc: dict[str, Any], console: Console) -> None:
    for r in doc.get("results", []):
        where = f"{escape(r['device'])} ({escape(r['device_model'])}) {escape(r['id'])} {escape(r['case'])}"
        if r["status"] == "fail":
            _say(console, f"[bold red]WRONG RESULT[/] {where}: {escape(r.get('reason') or '')}")
        elif r["status"] == "crash":
            _say(console, f"[bold red]CRASHED[/] {where}: {escape(r.get('reason') or '')}")
        sibling = r.get("slow_vs_siblings")
        if sibling:
            _say(
                console,
                f"[bold red]SLOW[/] {where}: {num(r.get('value') or 0)} {escape(r.get('unit') or '')}, "
                f"{sibling['shortfall']:.0%} below the median of its siblings ({num(sibling['sibling_median'])})",
            )
    comparison = doc.get("comparison") or {}
    for d in comparison.get("deltas", []):
        if d["regressed"]:
            _say(
                console,
                f"[bold red]REGRESSION[/] {escape(d['device'])} {escape(d['id'])} {escape(d['case'])}: "
                f"{num(d['after'])} {escape(d['unit'])}, {-d['change']:.0%} below the baseline's {num(d['before'])}",
            )
    if comparison.get("note"):
        _say(console, f"[bold red]NOT COMPARED[/] {escape(comparison['note'])}")
    for v in (doc.get("spec") or {}).get("verdicts", []):
        words = {True: "[green]spec ✓[/]", False: "[bold red]BELOW SPEC[/]", None: "[dim]spec -[/]"}[v["passed"]]
        what = f"{escape(v['id'])}: {escape(v['summary'])}"
        _say(console, " ".join(filter(None, (words, escape(v["device"] or ""), what))))


def summary_line(doc: dict[str, Any]) -> str:
    """'12 verified, 1 WRONG, 3 skipped on 1 device(s) in 42 s', red when the run exits non-zero."""
    c = doc.get("summary", {})
    parts = [f"{c.get('verified', 0)} verified"]
    for key, word in (
        ("failed", "WRONG"),
        ("errors", "crashed"),
        ("skipped", "skipped"),
        ("noisy", "noisy"),
        ("contended", "contended"),
        ("slow_vs_siblings", "slow vs siblings"),
        ("regressions", "regressions"),
        ("below_spec", "below spec"),
    ):
        if c.get(key):
            parts.append(f"{c[key]} {word}")
    comparison = doc.get("comparison")
    if comparison is not None:
        parts.append(
            f"compared with {escape(comparison['baseline'])} ({len(comparison['deltas'])} figures, "
            f"threshold {comparison['threshold']:.0%})"
        )
    head = ""
    if doc.get("interrupted"):
        head = f"[bold yellow]interrupted[/] after {c.get('finished', 0)} of {c.get('planned', 0)} cases: "
    style = "red" if doc.get("exit_code") else "green"
    devices = len(doc.get("devices", []))
    return f"{head}[{style}]{', '.join(parts)}[/] on {devices} device(s) in {doc.get('wall_s', 0):.0f} s"
