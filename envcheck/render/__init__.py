"""Renderers: one module per output format, registered by format name, each reading the one structured
report (a plain JSON-like document, already redacted) and nothing else.

Adding a format (Prometheus, HTML) is one new module in this package with a ``@renderer("name")``
function: the registry imports every module here on first use.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from envcheck.core.registry import Registry

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class RenderOptions:
    verbose: bool = False


@dataclass(frozen=True)
class Renderer:
    """``fn(document, console, options)`` writes one report. ``binary_safe``: the output is meant for
    machines and files (no colour, no terminal width), so it is written to the stream as it is."""

    id: str
    fn: Callable[[dict[str, Any], Console, RenderOptions], None]
    description: str
    suffixes: tuple[str, ...] = ()


FORMATS: Registry[Renderer] = Registry("format", package="envcheck.render.all")


def renderer(
    name: str, description: str, *, suffixes: tuple[str, ...] = ()
) -> Callable[[Callable[[dict[str, Any], Console, RenderOptions], None]], Any]:
    def register(fn: Callable[[dict[str, Any], Console, RenderOptions], None]) -> Any:
        FORMATS.add(Renderer(name, fn, description, suffixes))
        return fn

    return register


def format_for_path(path: str) -> str | None:
    """The format a file name asks for by its suffix (``report.md`` → markdown), if any."""
    suffix = Path(path).suffix.lower()
    return next((r.id for r in FORMATS.ordered() if suffix in r.suffixes), None)


def make_console(file: IO[str] | None = None, *, for_file: bool = False) -> Console:
    """The one way envcheck makes a rich Console. In logs and pipes long lines are never hard-wrapped
    (``soft_wrap``); on a terminal rich wraps them between words, so a narrow terminal never splits a
    word across lines; for a file, no colour and no terminal width."""
    from rich.console import Console

    class ReportConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1 ("a check failed"); let envcheck.cli.terminal map it to SIGPIPE's 141.
            self.quiet = True
            raise BrokenPipeError

    if for_file:
        return ReportConsole(file=file, highlight=False, soft_wrap=True, color_system=None, width=100_000, emoji=False)
    console = ReportConsole(file=file, highlight=False, emoji=False)
    console.soft_wrap = not console.is_terminal
    return console


def render(document: dict[str, Any], fmt: str, console: Console, options: RenderOptions | None = None) -> None:
    FORMATS[fmt].fn(document, console, options or RenderOptions())


def write_atomically(path: str, document: dict[str, Any], fmt: str, options: RenderOptions | None = None) -> None:
    """Render ``document`` in ``fmt`` into ``path`` atomically (see :func:`write_text_atomically`)."""
    from io import StringIO

    buffer = StringIO()
    render(document, fmt, make_console(buffer, for_file=True), options)
    write_text_atomically(path, buffer.getvalue())


def write_text_atomically(path: str, text: str) -> None:
    """Write into a temporary file next to ``path`` and rename it over ``path``: a reader (a dashboard,
    a fleet merge, a doctor reading a lab spec) never sees half a file, and a failed write leaves the old
    file as it was."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
