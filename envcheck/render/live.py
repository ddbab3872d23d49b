"""The one live display every command shows on stderr while it works: the doctor's probes still running,
the bench's case per device, the burn's state per GPU, the step comm's rank 0 is at.

On a terminal it is one rich live region, one row per key (a device, a probe list, a step), removed when
the report prints (``transient``), redrawn about eight times a second; a row may carry a count (the
bench's ``[i/n]`` cases) and then shows a bar. In pipes and logs a redrawn row would be noise: rows are not
drawn, and a command says what a log should keep with :meth:`Live.say`, one plain line each. Nothing of
this goes to stdout, so ``--format json`` prints only the report there.

rich is imported only when a terminal is there to draw on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any


class Live:
    """A context manager owning the display. ``counted``: rows may carry a count (then a bar, ``i/n`` and
    the time so far are drawn after the text; else nothing pads the text). ``poll``, if given, is called
    before each redraw, so a row can show what is true now (how long each probe has been running) without
    a thread of its own."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        enabled: bool = True,
        counted: bool = False,
        poll: Callable[[Live], None] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.terminal = bool(enabled and self.stream.isatty())
        self._rows: dict[str, Any] = {}
        self._bar: Any = None
        self._poll = poll
        self._polling = False
        if self.terminal:
            self._bar = _bar(self.stream, self._polled, counted=counted)

    def _polled(self) -> None:
        # rich asks for the first frame while the display is being made (rows come from the second on), and
        # a row added while polling asks for a frame again: poll once per frame
        if self._poll is None or self._bar is None or self._polling:
            return
        self._polling = True
        try:
            self._poll(self)
        finally:
            self._polling = False

    def __enter__(self) -> Live:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Remove the display (again: a no-op), before a report prints below it."""
        if self._bar is not None:
            self._bar.stop()

    def row(self, key: str, text: str, *, completed: int | None = None, total: int | None = None) -> None:
        """Show ``text`` on the row ``key`` (added with its first news), with ``completed`` of ``total``
        when the row counts something. Text from the machine is escaped: it is never rich markup."""
        if self._bar is None:
            return
        from rich.markup import escape

        if key not in self._rows:
            self._rows[key] = self._bar.add_task(escape(text), total=total, completed=completed or 0)
            return
        counts = {"completed": completed, "total": total} if total is not None else {}
        self._bar.update(self._rows[key], description=escape(text), **counts)

    def advance(self, key: str) -> None:
        """One more of the row's count done (a row not shown yet appears, named by its key)."""
        if self._bar is None:
            return
        if key not in self._rows:
            self.row(key, key)
        self._bar.advance(self._rows[key])

    def say(self, line: str) -> None:
        """One plain line for a pipe or a log; on a terminal the rows say it already."""
        if not self.terminal:
            print(line, file=self.stream, flush=True)

    @property
    def tasks(self) -> list[Any]:
        """The rows as rich draws them (description, completed, total): what a test of a display reads."""
        return list(self._bar.tasks) if self._bar is not None else []


def _bar(stream: IO[str], poll: Callable[[], None], *, counted: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class Counted(ProgressColumn):
        """A column drawn only on a row that counts something (a bare row is a line of text)."""

        def __init__(self, inner: ProgressColumn) -> None:
            super().__init__()
            self.inner = inner

        def render(self, task: Any) -> Any:
            return self.inner.render(task) if task.total is not None else Text("")

    class Polled(Progress):
        def get_renderables(self) -> Any:
            poll()
            yield from super().get_renderables()

    counts = (Counted(BarColumn()), Counted(MofNCompleteColumn()), Counted(TimeElapsedColumn())) if counted else ()
    return Polled(
        SpinnerColumn(style="cyan"),
        TextColumn("{task.description}"),
        *counts,
        console=Console(file=stream),
        transient=True,
        refresh_per_second=8,
    )
