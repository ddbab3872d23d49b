"""The bench's live parts, on the command's side: the progress display on stderr while the suite runs
(not a report) and ``--list``. The human report itself is envcheck.bench.render.
"""

from __future__ import annotations

import contextlib
import sys
from typing import IO, TYPE_CHECKING, Any

from rich.markup import escape

from envcheck.bench.case import BenchResult, Progress
from envcheck.bench.render import num

if TYPE_CHECKING:
    from rich.console import Console

    from envcheck.bench.model import BenchSpec


def list_benchmarks(specs: list[BenchSpec], console: Console) -> None:
    from rich.table import Table

    table = Table(title="envcheck bench --list")
    table.add_column("id")
    table.add_column("measures")
    for s in specs:
        table.add_row(s.id, escape(s.measures))
    console.print(table)


def progress(stream: IO[str] | None = None) -> tuple[Progress, Any]:
    """A progress display on stderr while the workers run: on a terminal, one live line per device
    (its case and how many of its cases are done); otherwise plain lines, each starting with the device,
    since the devices' lines interleave (CI logs, pipes: ``grep cuda:3`` follows one card).

    Returns the callbacks and a context manager that owns the live display. Each device counts its own
    cases: ``[i/n]`` is that device's ith case of n.
    """
    import os

    from envcheck.core.redact import scrub

    stream = stream or sys.stderr
    if not stream.isatty():

        def started(i: int, n: int, bench_id: str, label: str, device: str) -> None:
            print(f"{device} [{i + 1}/{n}] {bench_id} {label} ...", file=stream, flush=True)

        def finished(r: BenchResult) -> None:
            figure = f"{num(r.value)} {r.unit}" if r.value is not None else ""
            # an error's words are the machine's: they may quote a secret, like everything in the report
            why = f" ({scrub(r.reason, os.environ)})" if r.reason else ""
            busy = " contended" if r.contended else ""
            line = f"{r.device} {r.status.value}: {r.id} {r.case} {figure}{why}{busy} [{r.duration_s:.1f} s]"
            print(" ".join(line.split()), file=stream, flush=True)

        return Progress(started, finished), contextlib.nullcontext()

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
    )
    lines: dict[str, TaskID] = {}

    def line(device: str) -> TaskID:
        if device not in lines:  # a device's line appears with its first news
            lines[device] = bar.add_task(escape(device), total=None)
        return lines[device]

    def started_live(i: int, n: int, bench_id: str, label: str, device: str) -> None:
        bar.update(line(device), total=n, completed=i, description=escape(f"{device} {bench_id} {label}"))

    def finished_live(r: BenchResult) -> None:
        bar.advance(line(r.device))

    return Progress(started_live, finished_live), bar
