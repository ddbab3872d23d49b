"""The bench's live parts, on the command's side: the progress display on stderr while the suite runs
(not a report) and ``--list``. The human report itself is envcheck.render.bench_text.
"""

from __future__ import annotations

import contextlib
import sys
from typing import IO, TYPE_CHECKING, Any

from rich.markup import escape

from envcheck.bench.runner import BenchResult, Progress
from envcheck.render.bench_text import num

if TYPE_CHECKING:
    from rich.console import Console

    from envcheck.bench.registry import BenchSpec


def list_benchmarks(specs: list[BenchSpec], console: Console) -> None:
    from rich.table import Table

    table = Table(title="envcheck bench --list")
    table.add_column("id")
    table.add_column("measures")
    for s in specs:
        table.add_row(s.id, escape(s.measures))
    console.print(table)


def progress(stream: IO[str] | None = None) -> tuple[Progress, Any]:
    """A progress display on stderr: a live bar on a terminal, plain lines otherwise (CI logs, pipes).

    Returns the callbacks and a context manager that owns the live display.
    """
    import os

    from envcheck.redact import scrub

    stream = stream or sys.stderr
    if not stream.isatty():

        def started(i: int, n: int, bench_id: str, label: str, device: str) -> None:
            print(f"[{i + 1}/{n}] {device} {bench_id} {label} ...", file=stream, flush=True)

        def finished(r: BenchResult) -> None:
            figure = f"{num(r.value)} {r.unit}" if r.value is not None else ""
            # an error's words are the machine's: they may quote a secret, like everything in the report
            why = f" ({scrub(r.reason, os.environ)})" if r.reason else ""
            busy = " contended" if r.contended else ""
            line = f"        {r.status.value}: {r.case} {figure}{why}{busy} [{r.duration_s:.1f} s]"
            print(line, file=stream, flush=True)

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
        bar.update(task, total=n, completed=i, description=escape(f"{device} {bench_id} {label}"))

    def finished_live(r: BenchResult) -> None:
        bar.advance(task)

    return Progress(started_live, finished_live), bar
