"""Renderers: the JSON document, the human report (rich), and the progress display.

They read the same :class:`~envcheck.bench.runner.BenchResult` objects; nothing here measures or
judges. The human table is benchmark × device: one row per (benchmark, case), one column per device.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import IO, Any

from envcheck import __version__
from envcheck.bench.compare import SCHEMA, Delta
from envcheck.bench.registry import BenchSpec, DeviceInfo
from envcheck.bench.runner import ERROR, FAILED, OK, SKIPPED, BenchResult, Progress
from envcheck.core.exit import ExitCode
from envcheck.core.model import CheckResult


@dataclass
class Run:
    """Everything one ``envcheck bench`` produced, in the order it is reported."""

    devices: list[DeviceInfo]
    results: list[BenchResult]
    preflight: list[CheckResult] = field(default_factory=list)
    preflight_note: str | None = None
    deltas: list[Delta] | None = None
    baseline: str | None = None
    threshold: float | None = None
    spec_path: str | None = None
    spec_verdicts: list[Any] | None = None  # envcheck.spec.bench.BenchVerdict
    options: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    exit_code: ExitCode = ExitCode.OK

    def counts(self) -> dict[str, int]:
        return {
            "figures": sum(r.value is not None for r in self.results),
            "verified": sum(r.status == OK for r in self.results),
            "failed": sum(r.status == FAILED for r in self.results),
            "errors": sum(r.status == ERROR for r in self.results),
            "skipped": sum(r.status == SKIPPED for r in self.results),
            "noisy": sum(r.noisy for r in self.results),
            "slow_vs_siblings": sum(r.sibling is not None for r in self.results),
            "regressions": sum(d.regressed for d in self.deltas or []),
            "below_spec": sum(v.passed is False for v in self.spec_verdicts or []),
        }


def to_json(run: Run) -> dict[str, Any]:
    from envcheck.bench import peaks

    devices = []
    for d in run.devices:
        entry = peaks.lookup(d.model) if d.is_cuda else None
        devices.append(
            {**d.to_json(), "datasheet": entry.model if entry else None, "peak_source": entry.source if entry else None}
        )
    return {
        "schema": SCHEMA,
        "envcheck_version": __version__,
        "options": run.options,
        "devices": devices,
        "preflight": [r.to_json() for r in run.preflight],
        "preflight_note": run.preflight_note,
        "results": [r.to_json() for r in run.results],
        "comparison": None
        if run.deltas is None
        else {
            "baseline": run.baseline,
            "threshold": run.threshold,
            "deltas": [d.to_json() for d in run.deltas],
        },
        "spec": None
        if run.spec_verdicts is None
        else {"path": run.spec_path, "verdicts": [v.to_json() for v in run.spec_verdicts]},
        "summary": run.counts(),
        "wall_s": round(run.wall_s, 2),
        "exit_code": int(run.exit_code),
    }


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def cell(r: BenchResult) -> str:
    """One table cell: the figure, its share of peak, the spread, and any flag, in rich markup."""
    if r.status == SKIPPED:
        return f"[dim]skipped: {r.reason}[/]"
    if r.status == ERROR:
        return f"[bold red]ERROR[/] {r.reason}"
    assert r.value is not None and r.measurement is not None
    text = f"{_num(r.value)} {r.unit}"
    if r.peak_fraction is not None:
        text += f" [cyan]{r.peak_fraction:.0%}[/]"
    text += f" [dim]±{r.measurement.relative_iqr / 2:.0%}[/]"
    for unit, rate in r.rates.items():
        text += f" [dim]{_num(rate)} {unit}[/]"
    if "backend" in r.params:
        text += f" [magenta]{r.params['backend']}[/]"
    if r.noisy:
        text += " [yellow]noisy[/]"
    if r.sibling:
        text += f" [bold red]SLOW {-r.sibling['shortfall']:.0%} vs siblings[/]"
    if r.status == FAILED:
        text = f"[bold red]WRONG RESULT[/] {text}"
    return text


def render_human(run: Run, console: Any) -> None:
    from rich.table import Table

    if run.preflight or run.preflight_note:
        console.print("[bold]Preflight[/] (doctor checks for the GPUs)")
        marks = {
            "ok": "[green]✓[/]",
            "warn": "[yellow]![/]",
            "fail": "[red]✗[/]",
            "skip": "[dim]-[/]",
            "crash": "[red]☠[/]",
        }
        for c in run.preflight:
            console.print(f"  {marks.get(c.status.value, '?')} {c.id}: {c.summary}")
            if c.fix and c.status.value in ("warn", "fail", "crash"):
                console.print(f"      fix: {c.fix.text}" + (f"  [dim]$ {c.fix.command}[/]" if c.fix.command else ""))
        if run.preflight_note:
            console.print(f"  [dim]{run.preflight_note}[/]")
    names = [d.name for d in run.devices]
    table = Table(title="envcheck bench", show_lines=False)
    table.add_column("benchmark")
    table.add_column("case")
    for d in run.devices:
        table.add_column(f"{d.name}\n[dim]{d.model}[/]")
    rows: dict[tuple[str, str], dict[str, BenchResult]] = {}
    for r in run.results:
        rows.setdefault((r.id, r.case if len(names) == 1 else r.label), {})[r.device] = r
    for (bench_id, case), by_device in rows.items():
        table.add_row(bench_id, case, *[cell(by_device[n]) if n in by_device else "" for n in names])
    console.print(table)
    console.print("[dim]value, [cyan]share of datasheet peak[/], ±half the IQR of the samples[/]")
    _render_findings(run, console)


def _render_findings(run: Run, console: Any) -> None:
    for r in run.results:
        if r.status == FAILED:
            console.print(f"[bold red]WRONG RESULT[/] {r.device} ({r.device_model}) {r.id} {r.case}: {r.reason}")
        elif r.status == ERROR:
            console.print(f"[bold red]ERROR[/] {r.device} {r.id} {r.case}: {r.reason}")
        if r.sibling:
            console.print(
                f"[bold red]SLOW[/] {r.device} ({r.device_model}) {r.id} {r.case}: {_num(r.value or 0)} {r.unit}, "
                f"{r.sibling['shortfall']:.0%} below the median of its siblings ({_num(r.sibling['sibling_median'])})"
            )
    for d in [d for d in run.deltas or [] if d.regressed]:
        console.print(
            f"[bold red]REGRESSION[/] {d.device} {d.id} {d.case}: {_num(d.after)} {d.unit}, "
            f"{-d.change:.0%} below the baseline's {_num(d.before)}"
        )
    for v in run.spec_verdicts or []:
        mark = {True: "[green]spec ✓[/]", False: "[bold red]BELOW SPEC[/]", None: "[dim]spec -[/]"}[v.passed]
        console.print(" ".join(filter(None, (mark, v.device, f"{v.id}: {v.words}"))))
    c = run.counts()
    parts = [f"{c['verified']} verified"]
    for key, word in (
        ("failed", "WRONG"),
        ("errors", "errors"),
        ("skipped", "skipped"),
        ("noisy", "noisy"),
        ("slow_vs_siblings", "slow vs siblings"),
        ("regressions", "regressions"),
        ("below_spec", "below spec"),
    ):
        if c[key]:
            parts.append(f"{c[key]} {word}")
    if run.deltas is not None:
        parts.append(f"compared with {run.baseline} ({len(run.deltas)} figures, threshold {run.threshold:.0%})")
    style = "red" if run.exit_code else "green"
    console.print(f"[{style}]{', '.join(parts)}[/] on {len(run.devices)} device(s) in {run.wall_s:.0f} s")


def list_benchmarks(specs: list[BenchSpec], console: Any) -> None:
    from rich.table import Table

    table = Table(title="envcheck bench --list")
    table.add_column("id")
    table.add_column("measures")
    for s in specs:
        table.add_row(s.id, s.measures)
    console.print(table)


def progress(stream: IO[str] | None = None) -> tuple[Progress, Any]:
    """A progress display on stderr: a live bar on a terminal, plain lines otherwise (CI logs, pipes).

    Returns the callbacks and a context manager that owns the live display.
    """
    import contextlib

    stream = stream or sys.stderr
    if not stream.isatty():

        def started(i: int, n: int, bench_id: str, label: str, device: str) -> None:
            print(f"[{i + 1}/{n}] {device} {bench_id} {label} ...", file=stream, flush=True)

        def finished(r: BenchResult) -> None:
            figure = f"{_num(r.value)} {r.unit}" if r.value is not None else ""
            why = f" ({r.reason})" if r.reason else ""
            print(f"        {r.status}: {r.case} {figure}{why} [{r.duration_s:.1f} s]", file=stream, flush=True)

        return Progress(started, finished), contextlib.nullcontext()

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
    )
    task = bar.add_task("benchmarking", total=None)  # the first started() sets it

    def started_live(i: int, n: int, bench_id: str, label: str, device: str) -> None:
        bar.update(task, total=n, completed=i, description=f"{device} {bench_id} {label}")

    def finished_live(r: BenchResult) -> None:
        bar.advance(task)

    return Progress(started_live, finished_live), bar
