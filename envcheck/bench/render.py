"""The bench's human output (``envcheck.bench/1``): the text report, Markdown and the HTML page's sections,
each registered for the bench's schema; and, while the suite runs, the live progress on stderr and
``bench --list``.

The reports read the same redacted dict as the JSON, never the live results, so what a person reads and
what a machine parses cannot disagree. The table is benchmark × device: one row per (benchmark, case), one
column per device. Every text that came from the machine (a model name, an error) is escaped, so a ``[``
in it is never taken for rich markup and a ``<`` never HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from envcheck.bench.case import BenchResult, Progress
from envcheck.bench.harness import NOISY_RELATIVE_IQR
from envcheck.bench.report import summary_words
from envcheck.core.report import BENCH_SCHEMA
from envcheck.core.stop import stopped_words
from envcheck.render import RenderOptions, html, renders
from envcheck.render.common import CheckLines, cell, code, escape, icon, print_wide, write_lines
from envcheck.render.live import Live
from envcheck.render.svg import Bar, bar_chart, finite

if TYPE_CHECKING:
    from rich.console import Console

    from envcheck.bench.model import BenchSpec


# -- text ------------------------------------------------------------------------------------------------


def num(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def noisy_range(r: dict[str, Any]) -> tuple[float, float] | None:
    """The figure over the middle half of a noisy result's samples (from its slowest quartile's time to its
    fastest's), or None for a quiet one (or where the report lacks the quartiles).

    A quiet result's spread reads as ±half its IQR, a few percent of the figure. A noisy one's does not:
    ``±1122%`` of a throughput that cannot fall below zero (a CPU bench sharing its cores) says nothing a
    reader can use, while the figures the samples gave ("12–410 GFLOP/s") show how far the figure can be
    trusted. Noisy is the bench's own mark (envcheck.bench.harness.NOISY_RELATIVE_IQR)."""
    stats = html.dct(r.get("stats"))
    spread = finite(stats.get("relative_iqr"))
    if not (r.get("noisy") or (spread is not None and spread > NOISY_RELATIVE_IQR)):
        return None
    value, median, q1, q3 = (
        finite(x) for x in (r.get("value"), stats.get("median_s"), stats.get("q1_s"), stats.get("q3_s"))
    )
    if value is None or median is None or q1 is None or q3 is None or min(q1, q3) <= 0:
        return None
    # The figure is work / median time, so a sample of time t gives value × median / t.
    return value * median / q3, value * median / q1


def spread_text(r: dict[str, Any], number: Callable[[Any], str]) -> str:
    """The spread of a result as the reports show it: ``±3%`` where it is quiet, ``noisy 12–410`` (the
    figure over the middle half of the samples, :func:`noisy_range`) where it is not, ``noisy`` alone where
    the report lacks the quartiles, and nothing where it has no statistics."""
    between = noisy_range(r)
    if between is not None:
        return f"noisy {number(between[0])}–{number(between[1])}"
    if r.get("noisy"):
        return "noisy"
    spread = finite(html.dct(r.get("stats")).get("relative_iqr"))
    return "" if spread is None else f"±{spread / 2:.0%}"


def compile_words(r: dict[str, Any]) -> list[str]:
    """What a compiled figure adds (envcheck.bench.benchmarks.compile): its speed over its baseline's and the
    time its first compile took, e.g. ``["0.92× vs eager", "compiled in 12.5 s"]``; nothing for other results."""
    params = html.dct(r.get("params"))
    words = []
    speedup = finite(params.get("speedup"))
    if speedup is not None:
        words.append(f"{speedup:.2f}× vs {params.get('baseline') or 'baseline'}")
    compile_s = finite(params.get("compile_s"))
    if compile_s is not None:
        words.append(f"compiled in {compile_s:.1f} s")
    return words


def text_cell(r: dict[str, Any]) -> str:
    """One table cell: the figure, its share of peak, the spread, and any flag, in rich markup."""
    status, reason = r["status"], escape(r.get("reason") or "")
    if status == "skip":
        return f"[dim]skipped: {reason}[/]"
    if status == "crash":
        return f"[bold red]CRASHED[/] {reason}"
    text = f"{num(r['value'])} {escape(r['unit'] or '')}"
    if r.get("peak_fraction") is not None:
        text += f" [cyan]{r['peak_fraction']:.0%}[/]"
    spread = spread_text(r, num)
    if spread.startswith("±"):
        text += f" [dim]{spread}[/]"
    for unit, rate in (r.get("rates") or {}).items():
        text += f" [dim]{num(rate)} {escape(unit)}[/]"
    backend = (r.get("params") or {}).get("backend")
    if backend:
        text += f" [magenta]{escape(str(backend))}[/]"
    for word in compile_words(r):
        text += f" [dim]{escape(word)}[/]"
    if spread.startswith("noisy"):
        text += f" [yellow]{spread}[/]"
    if r.get("contended"):
        text += " [yellow]contended[/]"
    if r.get("slow_vs_siblings"):
        text += f" [bold red]SLOW {-r['slow_vs_siblings']['shortfall']:.0%} vs siblings[/]"
    if status == "fail":
        text = f"[bold red]WRONG RESULT[/] {text}"
    return text


@renders("text", BENCH_SCHEMA)
def render_text(doc: dict[str, Any], console: Console, options: RenderOptions | None = None) -> None:
    """The human report of one bench document: preflight, the table, the findings, one summary line."""
    from rich.table import Table

    if doc.get("preflight"):
        # The preflight's checks read exactly like the doctor's (they are the doctor's, and the CPU one).
        console.print("[bold]Preflight[/]")
        checks = CheckLines(console)
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
        table.add_row(
            escape(bench_id), escape(case), *[text_cell(by_device[n]) if n in by_device else "" for n in names]
        )
    print_wide(console, table)
    legend = "value, [cyan]share of datasheet peak[/], ±half the IQR of the samples"
    if any(noisy_range(r) for r in doc.get("results", [])):
        legend += "; [yellow]noisy[/] a–b: the samples spread over 10%, a–b is the figure over their middle half"
    if any(r.get("contended") for r in doc.get("results", [])):
        legend += "; [yellow]contended[/]: other processes took CPU time while it ran"
    _say(console, f"[dim]{legend}[/]")
    _findings(doc, console)
    _say(console, summary_line(doc))


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
    c = html.dct(doc.get("summary"))
    parts = [escape(word) for word in summary_words(c)]
    comparison = doc.get("comparison")
    if comparison is not None:
        parts.append(
            f"compared with {escape(comparison['baseline'])} ({len(comparison['deltas'])} figures, "
            f"threshold {comparison['threshold']:.0%})"
        )
    head = ""
    if doc.get("interrupted"):
        by = stopped_words(doc.get("stopped_by") if isinstance(doc.get("stopped_by"), str) else None)
        done, planned = c.get("finished", 0), c.get("planned", 0)
        head = f"[bold yellow]interrupted[/] by {escape(by)} after {done} of {planned} cases: "
    style = "red" if doc.get("exit_code") else "green"
    devices = len(doc.get("devices", []))
    return f"{head}[{style}]{', '.join(parts)}[/] on {devices} device(s) in {doc.get('wall_s', 0):.0f} s"


# -- markdown --------------------------------------------------------------------------------------------


@renders("markdown", BENCH_SCHEMA)
def render_markdown(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    write_lines(console, bench_markdown(doc))


def bench_markdown(doc: dict[str, Any]) -> list[str]:
    devices = doc.get("devices", [])
    names = [d.get("name") for d in devices]
    summary = doc.get("summary", {})
    verdict = "interrupted" if doc.get("interrupted") else ("problems found" if doc.get("exit_code") else "verified")
    lines = [
        f"## envcheck bench: {verdict}",
        "",
        f"{code(doc.get('host', {}).get('hostname') or '')} · {doc.get('generated_at', '')} · "
        f"envcheck {doc.get('envcheck_version', '')} · {doc.get('wall_s', 0):.0f} s",
        "",
        "| device | model | uuid | PCI bus |",
        "|---|---|---|---|",
    ]
    for d in devices:
        lines.append(
            f"| {code(d.get('name'))} | {cell(d.get('model'))} | {cell(d.get('uuid'))} | {cell(d.get('pci_bus_id'))} |"
        )
    if doc.get("preflight"):
        lines += ["", "### Preflight", "", "| | check | result | id |", "|---|---|---|---|"]
        for c in doc["preflight"]:
            lines.append(
                f"| {icon(c['status'])} | {cell(c.get('title'))} | {cell(c.get('summary'))} | {code(c['id'])} |"
            )
    lines += [
        "",
        "| benchmark | case | " + " | ".join(cell(n) for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in doc.get("results", []):
        rows.setdefault((r["id"], r.get("label") or r.get("case")), {})[r.get("device")] = r
    for (bench_id, case), by_device in rows.items():
        cells = [_bench_cell(by_device.get(n)) for n in names]
        lines.append(f"| {code(bench_id)} | {cell(case)} | " + " | ".join(cells) + " |")
    lines += peak_table(doc)
    problems = [r for r in doc.get("results", []) if r.get("status") in ("fail", "crash")]
    if problems:
        lines += ["", "### Problems", ""]
        lines += [f"- {code(r['id'])} on {code(r.get('device'))}: {cell(r.get('reason'))}" for r in problems]
    comparison = doc.get("comparison") or {}
    if comparison.get("note"):
        lines += ["", f"Comparison with {code(comparison.get('baseline'))}: {cell(comparison['note'])}"]
    if summary:
        counted = {k: v for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool) and v}
        lines += ["", "Summary: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counted.items())]
    return lines


def peak_table(doc: dict[str, Any]) -> list[str]:
    """What the HTML report's throughput chart shows, as a table: each figure of a card whose datasheet
    peak envcheck knows, next to that peak and its share of it (nothing on a CPU, or a card not in the table)."""
    rows = [
        r
        for r in doc.get("results") or []
        if isinstance(r, dict) and isinstance(r.get("value"), (int, float)) and isinstance(r.get("peak"), (int, float))
    ]
    if not rows:
        return []
    lines = [
        "",
        "### Against the datasheet peak",
        "",
        "| device | benchmark | case | measured | peak | of peak |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        unit = cell(r.get("unit") or "")
        fraction = r.get("peak_fraction")
        share = f"{fraction:.0%}" if isinstance(fraction, (int, float)) else ""
        lines.append(
            f"| {code(r.get('device'))} | {code(r.get('id'))} | {cell(r.get('label') or r.get('case'))} "
            f"| {r['value']:.4g} {unit} | {r['peak']:.4g} {unit} | {share} |"
        )
    return lines


def _num4(value: Any) -> str:
    return f"{value:.4g}"


def _bench_cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    if r.get("value") is None:
        return cell(f"{r.get('status')}: {r.get('reason') or ''}".strip(": "))
    text = f"{r['value']:.4g} {r.get('unit') or ''}".strip()
    if r.get("peak_fraction") is not None:
        text += f" ({r['peak_fraction']:.0%} of peak)"
    for word in compile_words(r):
        text += f" ({word})"
    if r.get("contended"):
        text += " (contended)"
    if spread_text(r, _num4).startswith("noisy"):
        text += f" ({spread_text(r, _num4)})"
    if r.get("status") != "ok":
        text = f"**{r.get('status')}** {text}"
    return cell(text)


# -- html ------------------------------------------------------------------------------------------------


@renders("html", BENCH_SCHEMA)
def render_html(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    html.write_page(console, doc, "bench", bench_header, BENCH_SECTIONS)


def bench_header(doc: dict[str, Any]) -> tuple[str, str]:
    verdict = "interrupted" if doc.get("interrupted") else ("problems found" if doc.get("exit_code") else "verified")
    status = "warn" if doc.get("interrupted") else ("fail" if doc.get("exit_code") else "ok")
    return html.header("bench", verdict, status, doc, bench_summary(doc))


def bench_summary(doc: dict[str, Any]) -> str:
    c = html.dct(doc.get("summary"))
    words = ", ".join(
        f"{v} {k.replace('_', ' ')}"
        for k, v in c.items()
        if isinstance(v, int) and v and k not in ("planned", "finished", "figures")
    )
    return html.e(words)


def bench_devices(doc: dict[str, Any]) -> str:
    rows = [
        [
            html.code(d.get("name")),
            html.e(d.get("model")),
            html.e(d.get("datasheet") or "not in envcheck's table"),
            html.code(d.get("uuid")),
            html.code(d.get("pci_bus_id")),
        ]
        for d in html.items(doc.get("devices"))
    ]
    return (
        html.section("Devices", html.table(["device", "model", "datasheet", "UUID", "PCI bus"], rows), collapsed=True)
        if rows
        else ""
    )


def bench_preflight(doc: dict[str, Any]) -> str:
    checks = html.items(doc.get("preflight"))
    if not checks:
        return ""
    return html.section("Preflight", html.checks_table(checks), collapsed=True)


def bench_flags(r: dict[str, Any]) -> list[str]:
    flags = []
    if r.get("status") == "fail":
        flags.append("WRONG RESULT")
    if r.get("contended"):
        flags.append("contended")
    if r.get("noisy"):
        flags.append("noisy")
    slow = html.dct(r.get("slow_vs_siblings"))
    if slow:
        flags.append(f"SLOW {html.pct(slow.get('shortfall'))} below its siblings")
    return flags


def bench_chart(doc: dict[str, Any]) -> str:
    """One bar chart per unit (GFLOP/s, GB/s, images/s): every figure, with its datasheet peak as a track
    and tick where envcheck knows the card's peak (on a CPU, or a card not in the table, the bars alone)."""
    results = [r for r in html.items(doc.get("results")) if finite(r.get("value")) is not None]
    if not results:
        return ""
    several = len({str(r.get("device")) for r in results}) > 1
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_unit.setdefault(str(r.get("unit") or ""), []).append(r)
    charts = []
    any_peak = any(finite(r.get("peak")) is not None for r in results)
    for unit, rs in by_unit.items():
        bars = []
        for r in rs:
            label = f"{r.get('id')} {r.get('label') or r.get('case') or ''}".strip()
            if several:
                label += f" · {r.get('device')}"
            peak = finite(r.get("peak"))
            note = f"{html.num(r.get('value'))} {unit}".strip()
            if finite(r.get("peak_fraction")) is not None:
                note += f" · {html.pct(r.get('peak_fraction'))} of the datasheet peak"
                note += f" {html.num(peak)} {unit}" if peak is not None else ""
            flags = bench_flags(r)
            if flags:
                note += " · " + ", ".join(flags)
            status = "fail" if r.get("status") == "fail" or r.get("slow_vs_siblings") else "ok"
            bars.append(Bar(label, finite(r.get("value")) or 0.0, note, peak, status))
        title = f"Throughput in {unit}" + (" against the datasheet peak" if any_peak else "")
        with_peak = sum(b.reference is not None for b in bars)
        summary = f"{len(bars)} figures" + (
            f", {with_peak} with a datasheet peak" if with_peak else ", no datasheet peak known"
        )
        charts.append(f"<h3>{html.e(unit or 'figures')}</h3>")
        charts.append(bar_chart("throughput", title, bars, summary=summary, reference_name="datasheet peak"))
    lead = (
        '<p class="muted">Each bar is a measured figure; where envcheck knows the card\'s datasheet peak, the grey '
        "track and the tick mark the peak and the words give the share of it.</p>"
        if any_peak
        else '<p class="muted">No datasheet peak is known for these devices (a CPU, or a card not in envcheck\'s '
        "table): the bars compare the figures with each other.</p>"
    )
    return html.section("Throughput", lead, *charts)


def bench_results(doc: dict[str, Any]) -> str:
    rows = []
    for r in html.items(doc.get("results")):
        value = (
            f"{html.num(r.get('value'))} {html.e(r.get('unit') or '')}" if finite(r.get("value")) is not None else "-"
        )
        rows.append(
            [
                html.code(r.get("id")),
                html.e(r.get("label") or r.get("case")),
                html.code(r.get("device")),
                value,
                html.num(r.get("peak")),
                html.pct(r.get("peak_fraction")),
                html.e(spread_text(r, html.num) or "-"),
                html.badge(r.get("status")),
                html.e(", ".join(compile_words(r) + bench_flags(r)) or r.get("reason") or ""),
            ]
        )
    if not rows:
        return ""
    return html.section(
        "Results",
        html.table(
            ["benchmark", "case", "device", "figure", "peak", "of peak", "spread", "status", "notes"],
            rows,
            (3, 4, 5, 6),
        ),
        collapsed=True,
    )


def bench_problems(doc: dict[str, Any]) -> str:
    """What to act on, first under the verdict: the preflight's checks that did not pass (with their fixes),
    the figures that failed, and the devices slower than their siblings."""
    preflight = [c for c in html.items(doc.get("preflight")) if c.get("status") in ("warn", "fail", "crash")]
    results = html.items(doc.get("results"))
    lines = [
        f"<li>{html.badge(r.get('status'))} {html.code(r.get('id'))} on {html.code(r.get('device'))}: "
        f"{html.e(r.get('reason'))}</li>"
        for r in results
        if r.get("status") in ("fail", "crash")
    ]
    lines += [
        f"<li>{html.badge('warn')} slow device {html.code(r.get('device'))}: {html.code(r.get('id'))} "
        f"{html.e(r.get('label') or r.get('case') or '')} {html.num(r.get('value'))} {html.e(r.get('unit') or '')}, "
        f"{html.pct(html.dct(r.get('slow_vs_siblings')).get('shortfall'))} below its siblings</li>"
        for r in results
        if html.dct(r.get("slow_vs_siblings"))
    ]
    return html.section(
        "Problems", html.problem_items(preflight), f'<ul class="problems">{"".join(lines)}</ul>' if lines else ""
    )


def bench_comparison(doc: dict[str, Any]) -> str:
    comparison = html.dct(doc.get("comparison"))
    if not comparison:
        return ""
    parts = [
        f"<p>Compared with {html.code(comparison.get('baseline'))}, "
        f"threshold {html.pct(comparison.get('threshold'))}.</p>"
    ]
    if comparison.get("note"):
        parts.append(f'<p><span class="badge s-fail">✗ not compared</span> {html.e(comparison["note"])}</p>')
    rows = [
        [
            html.code(d.get("device")),
            html.code(d.get("id")),
            html.e(d.get("case")),
            f"{html.num(d.get('before'))} {html.e(d.get('unit'))}",
            f"{html.num(d.get('after'))} {html.e(d.get('unit'))}",
            f"{finite(d.get('change')) or 0:+.0%}" if finite(d.get("change")) is not None else "-",
            html.badge("fail") + " regression" if d.get("regressed") else html.badge("ok"),
        ]
        for d in html.items(comparison.get("deltas"))
    ]
    if rows:
        parts.append(html.table(["device", "benchmark", "case", "baseline", "now", "change", ""], rows, (3, 4, 5)))
    return html.section("Comparison with the baseline", *parts)


def bench_spec(doc: dict[str, Any]) -> str:
    return html.section("Lab spec", html.spec_list(html.items(html.dct(doc.get("spec")).get("verdicts"))))


def bench_workers(doc: dict[str, Any]) -> str:
    rows = [
        [
            html.code(w.get("device")),
            html.e(w.get("pid")),
            html.seconds_text(w.get("wall_s")),
            html.seconds_text(w.get("import_s")),
            html.e(w.get("returncode")),
            html.e(w.get("error") or ""),
        ]
        for w in html.items(doc.get("workers"))
    ]
    return (
        html.section(
            "Workers",
            html.table(["device", "pid", "wall", "torch import", "exit", "error"], rows, (2, 3, 4)),
            collapsed=True,
        )
        if rows
        else ""
    )


#: What to act on first (problems, regressions, the spec), the chart; then, collapsed, the raw tables.
BENCH_SECTIONS = (
    bench_problems,
    bench_comparison,
    bench_spec,
    bench_chart,
    bench_results,
    bench_preflight,
    bench_devices,
    bench_workers,
)


# -- while the suite runs --------------------------------------------------------------------------------


def list_benchmarks(specs: list[BenchSpec], console: Console) -> None:
    from rich.table import Table

    table = Table(title="envcheck bench --list")
    table.add_column("id")
    table.add_column("measures")
    for s in specs:
        table.add_row(s.id, escape(s.measures))
    console.print(table)


def progress(stream: IO[str] | None = None) -> tuple[Progress, Live]:
    """The bench's share of the live display (:class:`envcheck.render.live.Live`) while the workers run:
    on a terminal, one row per device (its case and how many of its cases are done); otherwise plain
    lines, each starting with the device, since the devices' lines interleave (CI logs, pipes:
    ``grep cuda:3`` follows one card).

    Returns the callbacks and the display, a context manager. Each device counts its own cases: ``[i/n]``
    is that device's ith case of n.
    """
    import os

    from envcheck.core.redact import scrub

    live = Live(stream, counted=True)

    def started(i: int, n: int, bench_id: str, label: str, device: str) -> None:
        live.row(device, f"{device} {bench_id} {label}", completed=i, total=n)
        live.say(f"{device} [{i + 1}/{n}] {bench_id} {label} ...")

    def finished(r: BenchResult) -> None:
        if live.terminal:
            live.advance(r.device)
            return
        figure = f"{num(r.value)} {r.unit}" if r.value is not None else ""
        # an error's words are the machine's: they may quote a secret, like everything in the report
        why = f" ({scrub(r.reason, os.environ)})" if r.reason else ""
        busy = " contended" if r.contended else ""
        line = f"{r.device} {r.status.value}: {r.id} {r.case} {figure}{why}{busy} [{r.duration_s:.1f} s]"
        live.say(" ".join(line.split()))

    return Progress(started, finished), live
