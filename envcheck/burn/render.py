"""The burn's reports (``envcheck.burn/1``): text, Markdown and the HTML page's sections (with the
telemetry charts), each registered for the burn's schema.

Problems first, each with its fix, because a person reading a failed burn wants "GPU 2: HW thermal slowdown
from 7:00..." and what to do before any table; then one row per device with its steady state (the medians
over the run's last minute); the lab spec's verdicts; one summary line. Everything that came from the machine
is escaped, so a ``[`` in it is never rich markup and a ``<`` never HTML.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from envcheck.core.model import available
from envcheck.core.report import BURN_SCHEMA
from envcheck.core.units import clock, duration_text
from envcheck.render import RenderOptions, html, renders
from envcheck.render.common import (
    PIPE_WIDTH,
    cell,
    code,
    escape,
    icon,
    print_items,
    print_wide,
    unquoted,
    write_lines,
)
from envcheck.render.live import Live
from envcheck.render.svg import Series, finite, line_chart

if TYPE_CHECKING:
    from rich.console import Console

    from envcheck.burn.app import BurnChild, Watch
    from envcheck.probes.nvml.telemetry import Sample, Sampler

PROBLEM = ("warn", "fail", "crash")
STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "crash": "bold magenta", "skip": "dim"}
COLUMNS = ("device", "model", "dtype", "TFLOP/s", "SM MHz", "power W", "temp °C (peak)", "mismatches", "status")
#: The columns the text table says once above itself when every device has the same value, and how.
SHARED = {"model": "of", "dtype": "in"}


#: The timeline's fields that the HTML report charts and the Markdown report tabulates, in order:
#: (field, title, unit; None: the document's throughput unit). A CPU burn has only ``value`` and the host's.
TELEMETRY = (
    ("value", "Throughput", None),
    ("temperature_c", "GPU temperature", "°C"),
    ("sm_clock_mhz", "SM clock", "MHz"),
    ("power_w", "Power draw", "W"),
    ("memory_temperature_c", "Memory temperature", "°C"),
    ("utilization_gpu_pct", "GPU utilisation", "%"),
    ("cpu_pct", "Host CPU load", "%"),
    ("cpu_temperature_c", "CPU temperature", "°C"),
)

#: The Markdown report's telemetry table shows this many sampling rounds at most, evenly spread over the run
#: (a 10-minute burn of 8 GPUs has about a thousand rows; the JSON and the HTML charts have every one).
TELEMETRY_ROUNDS = 12


def figure(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if value >= 10 else f"{value:.3g}"


def rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per device, as plain strings (both formats use them)."""
    out = []
    for d in doc.get("devices") or []:
        steady = d.get("steady") or {}
        temp = steady.get("temperature_c")
        peak = steady.get("temperature_peak_c")
        temperature = "-" if temp is None else f"{temp:.0f} ({peak:.0f})" if peak is not None else f"{temp:.0f}"
        power = figure(steady.get("power_w"))
        if steady.get("power_limit_w") is not None and steady.get("power_w") is not None:
            power += f" / {steady['power_limit_w']:.0f}"
        out.append(
            (
                str(d.get("name")),
                str(d.get("model")),
                str(d.get("dtype")),
                figure(steady.get("throughput"), 1),
                figure(steady.get("sm_clock_mhz")),
                power,
                temperature,
                f"{d.get('mismatches', 0)} of {d.get('checked', 0)}",
                str(d.get("status")),
            )
        )
    return out


def headline(doc: dict[str, Any]) -> str:
    options = doc.get("options") or {}
    devices = doc.get("devices") or []
    return (
        f"envcheck burn: {len(devices)} device(s), {options.get('duration_s', 0):g} s asked, "
        f"sampled every {doc.get('interval_s', 1):g} s"
    )


@renders("text", BURN_SCHEMA)
def render_text(doc: dict[str, Any], console: Console, options: RenderOptions | None = None) -> None:
    soft = not console.is_terminal
    console.print(f"[bold]{escape(headline(doc))}[/]", soft_wrap=soft)
    for v in doc.get("verdicts") or []:
        if v["status"] not in PROBLEM:
            continue
        console.print(
            f"[{STYLE[v['status']]}]{v['status'].upper()}[/] {escape(v['title'])}: {escape(v['summary'])}  "
            f"[dim]{escape(v['id'])}[/]",
            soft_wrap=soft,
        )
        fix = v.get("fix") or {}
        if fix.get("text"):
            console.print(f"      [cyan]fix:[/] {escape(unquoted(fix['text']))}", soft_wrap=soft)
        if fix.get("command"):
            console.print(f"      [cyan]run:[/] {escape(fix['command'])}", soft_wrap=True)  # never split
    steady_table(doc, console)
    passed = [v for v in doc.get("verdicts") or [] if v["status"] == "ok"]
    if passed:
        console.print("[green]ok[/]: " + escape(", ".join(v["id"] for v in passed)), soft_wrap=soft)
    for v in (doc.get("spec") or {}).get("verdicts") or []:
        mark = {True: "[green]spec ✓[/]", False: "[bold red]BELOW SPEC[/]", None: "[dim]spec -[/]"}[v.get("passed")]
        where = f" {v['device']}" if v.get("device") else ""
        console.print(f"{mark} {escape(v['requirement'] + where)}: {escape(v['summary'])}", soft_wrap=soft)
    summary = doc.get("summary") or {}
    style = {"passed": "bold green", "warnings": "bold yellow"}.get(summary.get("verdict", ""), "bold red")
    console.print(f"[{style}]{escape(summary.get('text', ''))}[/]  [dim]({doc.get('duration_s', 0):.1f} s)[/]")


def steady_table(doc: dict[str, Any], console: Console) -> None:
    """The devices' steady state, one row each, fitting an 80-column terminal with nothing cut. What every
    row shares (a node's GPUs are one model, burnt in one dtype) is said once above the table rather than on
    every row. A terminal too narrow for the table still (GPUs of different models) gets each device as a
    line of its own, each figure named, broken between figures."""
    from rich.measure import Measurement
    from rich.table import Table

    table_rows = rows(doc)
    shared = {
        name: values.pop()
        for i, name in enumerate(COLUMNS)
        if name in SHARED and len(values := {row[i] for row in table_rows}) == 1
    }
    said = "".join(f" {SHARED[name]} {escape(value)}" for name, value in shared.items())
    console.print(f"[italic]steady state{said} (medians over {escape(steady_window(doc))})[/]", soft_wrap=True)
    shown = [i for i in range(1, len(COLUMNS) - 1) if COLUMNS[i] not in shared]
    table = Table()
    for name in ("device", *(COLUMNS[i] for i in shown), "status"):
        table.add_column(name, justify="left" if name in ("device", "model", "dtype", "status") else "right")
    for row in table_rows:
        status = f"[{STYLE.get(row[-1], '')}]{escape(row[-1])}[/]"
        table.add_row(escape(row[0]), *(escape(row[i]) for i in shown), status)
    natural = Measurement.get(console, console.options.update(max_width=PIPE_WIDTH), table).maximum
    if not console.is_terminal or natural <= console.width:
        print_wide(console, table)
        return
    name_width, status_width = (max(len(row[i]) for row in table_rows) for i in (0, -1))
    for row in table_rows:
        pad = " " * (status_width - len(row[-1]))
        lead = f"{escape(row[0].ljust(name_width))} [{STYLE.get(row[-1], '')}]{escape(row[-1])}[/]:{pad} "
        print_items(console, lead, [f"{COLUMNS[i]} {escape(row[i])}" for i in shown], sep="; ")


@renders("markdown", BURN_SCHEMA)
def render_markdown(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    write_lines(console, burn_markdown(doc))


def burn_markdown(doc: dict[str, Any]) -> list[str]:
    """What to paste into an issue: the verdict, the problems with their fixes, the devices' steady state."""
    summary = doc.get("summary") or {}
    lines = [
        f"## envcheck burn: {cell(summary.get('verdict', ''))}",
        "",
        f"{code((doc.get('host') or {}).get('hostname') or '')} · {doc.get('generated_at', '')} · envcheck "
        f"{doc.get('envcheck_version', '')} · {doc.get('duration_s', 0):.1f} s",
        "",
        cell(summary.get("text", "")),
    ]
    problems = [v for v in doc.get("verdicts") or [] if v["status"] in PROBLEM]
    if problems:
        lines += ["", "### Problems", ""]
        for v in problems:
            lines.append(f"- {icon(v['status'])} {code(v['id'])}: {cell(v['summary'])}")
            fix = v.get("fix") or {}
            if fix.get("text"):
                lines.append(f"  - fix: {cell(fix['text'])}")
            if fix.get("command"):
                lines.append(f"  - run: {code(fix['command'], in_table=False)}")
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows(doc)]
    lines += telemetry_table(doc)
    spec = (doc.get("spec") or {}).get("verdicts") or []
    if spec:
        lines += ["", "### Lab spec", ""]
        for v in spec:
            mark = {True: "✅", False: "❌", None: "➖"}[v.get("passed")]
            where = f" {v['device']}" if v.get("device") else ""
            lines.append(f"- {mark} {code(v['requirement'])}{cell(where)}: {cell(v['summary'])}")
    return lines


def telemetry_table(doc: dict[str, Any]) -> list[str]:
    """The timeline as a short table: at most :data:`TELEMETRY_ROUNDS` sampling rounds (the first, the last
    and evenly between), one row per device each, and only the fields that hold a reading."""

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    timeline = [r for r in doc.get("timeline") or [] if isinstance(r, dict) and number(r.get("t_s")) is not None]
    fields = [f for f in TELEMETRY if any(number(r.get(f[0])) is not None for r in timeline)]
    if not fields:
        return []
    times = sorted({number(r["t_s"]) for r in timeline})
    if len(times) > TELEMETRY_ROUNDS:
        step = (len(times) - 1) / (TELEMETRY_ROUNDS - 1)
        times = sorted({times[round(i * step)] for i in range(TELEMETRY_ROUNDS)})
    chosen = set(times)
    unit = str(doc.get("unit") or "TFLOP/s")
    heads = [f"{title} ({field_unit or unit})" for _, title, field_unit in fields]
    lines = [
        "",
        f"### Telemetry ({len(chosen)} of {len({r['t_s'] for r in timeline})} sampling rounds)",
        "",
        "| time | device | " + " | ".join(cell(h) for h in heads) + " |",
        "|---|---|" + "---|" * len(fields),
    ]
    for r in timeline:
        if number(r["t_s"]) in chosen:
            values = [figure(number(r.get(f[0])), 1 if f[0] == "value" else 0) for f in fields]
            lines.append(f"| {clock(number(r['t_s']) or 0.0)} | {code(r.get('device'))} | " + " | ".join(values) + " |")
    return lines


# -- html ------------------------------------------------------------------------------------------------


@renders("html", BURN_SCHEMA)
def render_html(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    html.write_page(console, doc, "burn", burn_header, BURN_SECTIONS)


def burn_header(doc: dict[str, Any]) -> tuple[str, str]:
    summary = html.dct(doc.get("summary"))
    status = "warn" if doc.get("interrupted") else doc.get("status")
    return html.header("burn", str(summary.get("text") or summary.get("verdict") or "no verdict"), status, doc)


def burn_problems(doc: dict[str, Any]) -> str:
    problems = [v for v in html.items(doc.get("verdicts")) if v.get("status") in PROBLEM]
    lead = ""
    if doc.get("interrupted"):
        lead = (
            f'<p><span class="badge s-warn">! interrupted</span> by {html.e(doc.get("stopped_by") or "a signal")}: '
            "the report covers what ran.</p>"
        )
    return html.section("Problems", lead, html.problem_items(problems))


def burn_devices(doc: dict[str, Any]) -> str:
    devices = html.items(doc.get("devices"))
    if not devices:
        return ""
    # rows() formats what it finds: give it only numbers where it expects them.
    steady = [{k: v for k, v in html.dct(d.get("steady")).items() if finite(v) is not None} for d in devices]
    safe = {**doc, "devices": [{**d, "steady": s} for d, s in zip(devices, steady, strict=True)]}
    body = []
    for row in rows(safe):
        *rest, status = row
        body.append([html.e(x) for x in rest] + [html.badge(status)])
    return html.section(
        "Steady state",
        f'<p class="muted">Medians over {html.e(steady_window(doc))}; '
        f"throughput in {html.e(doc.get('unit') or 'TFLOP/s')}.</p>",
        html.table(COLUMNS, body, (3, 4, 5, 6, 7)),
        collapsed=True,
    )


def burn_charts(doc: dict[str, Any]) -> str:
    """One chart per telemetry field the timeline holds (a CPU burn has throughput and host load only),
    one line per device, time on the x axis."""
    timeline = html.items(doc.get("timeline"))
    times = [t for t in (finite(row.get("t_s")) for row in timeline) if t is not None]
    if not times:
        return ""
    charts = []
    unit = str(doc.get("unit") or "TFLOP/s")
    for field, title, field_unit in TELEMETRY:
        by_device: dict[str, list[tuple[float, float | None]]] = {}
        for row in timeline:
            t = finite(row.get("t_s"))
            if t is None:
                continue
            by_device.setdefault(str(row.get("device")), []).append((t, finite(row.get(field))))
        series = [
            Series(d, sorted(p, key=lambda q: q[0])) for d, p in by_device.items() if any(y is not None for _, y in p)
        ]
        if not series:
            continue
        if field.startswith("cpu_"):
            series = series[:1]  # the host's reading, the same on every device's rows
            series = [Series("host", series[0].points)]
        shown_unit = field_unit or unit
        charts.append(f"<h3>{html.e(title)} ({html.e(shown_unit)})</h3>")
        charts.append(
            line_chart(
                "telemetry",
                f"{title} ({shown_unit}) over the run",
                series,
                x_label="time since the start (m:ss)",
                y_label=shown_unit,
                x_text=clock,
                x_range=(min(times), max(times)),
                summary=f"{len(series)} device(s)",
            )
        )
    if not charts:
        return ""
    return html.section("Telemetry over time", *charts)


def burn_passed(doc: dict[str, Any]) -> str:
    passed = [v for v in html.items(doc.get("verdicts")) if v.get("status") in ("ok", "skip")]
    if not passed:
        return ""
    return html.section("Other verdicts", html.checks_table(passed), collapsed=True)


def burn_spec(doc: dict[str, Any]) -> str:
    return html.section(
        "Lab spec", html.spec_list(html.items(html.dct(doc.get("spec")).get("verdicts")), "requirement")
    )


#: What to act on first (problems with their fixes, the spec), the charts; then, collapsed, the tables.
BURN_SECTIONS = (burn_problems, burn_spec, burn_charts, burn_devices, burn_passed)


# --- the live display while the burn runs (not the report) -------------------------------------

#: Seconds between the plain lines in a pipe.
PIPE_EVERY_S = 10.0
#: Seconds between redraws on a terminal.
REDRAW_S = 1.0


def steady_window(doc: dict[str, Any]) -> str:
    """What the steady-state medians cover, as the report measured it: "the last minute" of a long run,
    "the last 8 s" of a 10 s one (each device's steady ``window_s``)."""
    windows = [
        d.get("steady", {}).get("window_s")
        for d in doc.get("devices") or []
        if isinstance(d, dict) and isinstance(d.get("steady"), dict)
    ]
    longest = max((w for w in windows if isinstance(w, (int, float)) and w > 0), default=None)
    if longest is None:
        return "the run's last window"
    if longest >= 59.5:
        return "the last minute" if longest < 60.5 else f"the last {duration_text(round(longest))}"
    return f"the last {longest:.0f} s"


def line(child: BurnChild, sample: Sample | None, now: float) -> str:
    """One device's state in one line."""
    job = child.the_job
    parts = [child.name]
    loaded = child.loaded_s(now)
    if child.error is not None:
        parts.append(f"error: {child.error}")
    elif child.ended is not None and child.failure() is not None:
        parts.append(f"stopped: {child.failure()}")
    elif loaded is None:
        parts.append(f"starting ({child.doing()})")
    else:
        parts.append(f"{clock(min(loaded, job.duration_s))}/{clock(job.duration_s)}")
        if child.last_value is not None:
            parts.append(f"{child.last_value:,.3g} TFLOP/s")
    if sample is not None and not sample.lost:
        for value, unit in (
            (sample.temperature_c, "°C"),
            (sample.sm_clock_mhz, "MHz"),
            (sample.power_w, "W"),
        ):
            if available(value):
                parts.append(f"{value:.0f} {unit}")
    elif sample is not None:
        parts.append("GPU LOST")
    if loaded is not None:
        parts.append(f"mismatches {child.mismatched}" + (f" of {child.compared}" if child.compared else ""))
    return "  ".join(parts)


def _latest(sampler: Sampler | None) -> dict[Any, Sample]:
    if sampler is None:
        return {}
    telemetry = sampler.telemetry()
    return {index: samples[-1] for index, samples in telemetry.samples.items() if samples}


def display(stream: IO[str] | None = None) -> tuple[Watch, Live]:
    """The burn's share of the live display (:class:`envcheck.render.live.Live`) while it runs, and the
    watch callback for :func:`envcheck.burn.app.run_burn`.

    On a terminal, one row per device, redrawn about once a second: its throughput, temperature, SM clock,
    power and mismatches so far, and how far into the run it is. In pipes and logs, one plain line per
    device when its load begins (a log shows at once that the burn is under way, not only after the first
    interval) and then every :data:`PIPE_EVERY_S`, each starting with the device (``grep cuda:3`` follows
    one card)."""
    live = Live(stream)
    last = [0.0 if live.terminal else time.monotonic()]
    announced: set[str] = set()

    def watch(children: Sequence[BurnChild], sampler: Sampler | None) -> None:
        now = time.monotonic()
        if live.terminal:
            if now - last[0] >= REDRAW_S:
                last[0] = now
                latest = _latest(sampler)
                for child in children:
                    live.row(child.name, line(child, latest.get(child.key), now))
            return
        due = now - last[0] >= PIPE_EVERY_S
        shown = [c for c in children if due or (c.load_started is not None and c.name not in announced)]
        if due:
            last[0] = now
        latest = _latest(sampler) if shown else {}
        for child in shown:
            if child.load_started is not None:
                announced.add(child.name)
            live.say(line(child, latest.get(child.key), now))

    return watch, live
