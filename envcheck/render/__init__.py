"""Renderers, keyed by (format, report kind): each reads the one structured report (a plain JSON-like
document, already redacted) and nothing else.

Two things are registered, each where it belongs, so that neither a new format nor a new kind of report
edits a dispatcher:

* A **format** (text, markdown, html, json, prometheus) is one module of this package that declares its id,
  the words ``--help`` gives it and the file suffixes that ask for it, once (:func:`output_format`); every
  module here is imported on first use. A format that reads any document (json) registers its renderer
  for every kind (``@renders("json")``).
* A **kind's renderers** live in the package that writes that kind, ``envcheck.<kind>.render``, each
  registered for (format, schema) (``@renders("text", BENCH_SCHEMA)``). The module is found from the
  document's schema by convention (:func:`envcheck.core.report.kind_of`): nothing here names a kind.

A document that names no kind with renderers (hand-made, truncated, from a newer envcheck, or no schema at
all) is read as the doctor's report, the most general one, whose renderers read every field defensively:
it still gives a report (and an HTML page) rather than an error.
"""

from __future__ import annotations

import errno
import importlib
import importlib.machinery
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import envcheck
from envcheck.core.files import path_shown
from envcheck.core.registry import Registry
from envcheck.core.report import DOCTOR_SCHEMA, kind_of

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class RenderOptions:
    verbose: bool = False


RenderFn = Callable[[dict[str, Any], "Console", RenderOptions], None]


@dataclass(frozen=True)
class Format:
    """An output format. ``description``: what ``--format``'s help says of it ("text (for people)");
    ``suffixes``: the file names that ask for it (``-o report.md``), the first one named in ``--output``'s
    help; ``common``: every reporting command offers it, where a format for one kind of report
    (prometheus: the doctor's node health) is offered only by the commands that name it."""

    id: str
    description: str
    suffixes: tuple[str, ...] = ()
    common: bool = True


#: What stdout shows when nothing else is asked for, and the first format ``--help`` lists.
DEFAULT_FORMAT = "text"

#: A document of no known kind is rendered as this kind's report (see the module's docstring).
FALLBACK_SCHEMA = DOCTOR_SCHEMA

FORMATS: Registry[Format] = Registry("format", package="envcheck.render.all")

#: (format, schema) -> renderer; schema None: the format's renderer for every document.
RENDERERS: dict[tuple[str, str | None], RenderFn] = {}


def output_format(id: str, description: str, *, suffixes: tuple[str, ...] = (), common: bool = True) -> Format:
    """Declare a format (once, in its own module of this package)."""
    return FORMATS.add(Format(id, description, suffixes, common))


def renders(fmt: str, schema: str | None = None) -> Callable[[Any], Any]:
    """Register ``fn(document, console, options)`` as the ``fmt`` report of ``schema``'s documents, or of
    every document when no schema is given."""

    def register(fn: Any) -> Any:
        if (fmt, schema) in RENDERERS:
            raise ValueError(f"a {fmt} renderer for {schema or 'every document'} is registered twice")
        RENDERERS[(fmt, schema)] = fn
        return fn

    return register


def formats() -> list[Format]:
    """Every format: the default first, then by name (the order of ``--format``'s choices)."""
    return sorted(FORMATS.ordered(), key=lambda f: (f.id != DEFAULT_FORMAT, f.id))


def format_for_path(path: str) -> str | None:
    """The format a file name asks for by its suffix (``report.md`` → markdown), if any."""
    suffix = Path(path).suffix.lower()
    return next((f.id for f in formats() if suffix in f.suffixes), None)


def kind_module(schema: object) -> str | None:
    """Import the render module of the kind ``schema`` names (``envcheck.bench/1`` →
    ``envcheck.bench.render``) and return its name; None, importing nothing, when ``schema`` is not one of
    envcheck's schema names or that kind has no render module. The module is looked for on disk before
    anything is imported, so a document naming ``envcheck.cli/1`` cannot load ``envcheck.cli``."""
    kind = kind_of(schema)
    if kind is None:
        return None
    name = f"envcheck.{kind}.render"
    if name in sys.modules:
        return name
    places = [str(Path(p) / kind) for p in envcheck.__path__]
    if importlib.machinery.PathFinder.find_spec(name, places) is None:
        return None
    importlib.import_module(name)
    return name


def renderer_for(document: dict[str, Any], fmt: str) -> RenderFn:
    """The renderer of ``document`` in ``fmt``: its kind's, else the format's for every document, else (a
    document no kind claims) the fallback kind's. A kind that has renderers but none in ``fmt``
    (``prometheus`` for a bench) is an error: the CLI offers a format only where it applies."""
    if fmt not in FORMATS:  # (loading the formats registers their own renderers)
        raise KeyError(f"no format {fmt}")
    schema = document.get("schema") if isinstance(document, dict) else None
    if not isinstance(schema, str) or kind_module(schema) is None:
        schema = None
    found = RENDERERS.get((fmt, schema)) or RENDERERS.get((fmt, None))
    if found is not None:
        return found
    if schema is not None and any(s == schema for _, s in RENDERERS):
        raise ValueError(f"the {fmt} format has no report for {schema} documents")
    kind_module(FALLBACK_SCHEMA)
    return RENDERERS[(fmt, FALLBACK_SCHEMA)]


def render(document: dict[str, Any], fmt: str, console: Console, options: RenderOptions | None = None) -> None:
    renderer_for(document, fmt)(document, console, options or RenderOptions())


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


def write_atomically(path: str, document: dict[str, Any], fmt: str, options: RenderOptions | None = None) -> None:
    """Render ``document`` in ``fmt`` into ``path`` (see :func:`write_text_atomically`)."""
    from io import StringIO

    buffer = StringIO()
    render(document, fmt, make_console(buffer, for_file=True), options)
    write_text_atomically(path, buffer.getvalue())


#: How long a FIFO given to ``-o`` may stay without a reader before the write is given up: long enough for
#: a reader that is starting (``cat FIFO &`` then envcheck), short enough to end a healthcheck in time.
FIFO_READER_WAIT_S = 5.0

#: What ``-o`` refuses, by what the path is: renaming a report over any of these would destroy something
#: that is not a report (a socket a daemon listens on, a disk, a directory's files).
_REFUSED = (
    (stat.S_ISDIR, errno.EISDIR, "is a directory, not a file: name a file in it"),
    (stat.S_ISSOCK, errno.EINVAL, "is a socket, not a file: envcheck writes reports only to files, FIFOs and devices"),
    (stat.S_ISBLK, errno.EINVAL, "is a block device, not a file: envcheck never writes a report onto a disk"),
)


def write_text_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` by what ``path`` is, never destroying what is not a report (README, "Where
    the report goes"):

    * a regular file, or nothing yet: written into a temporary file next to it and renamed over it, so a
      reader (a dashboard, a fleet merge, a doctor reading a lab spec) never sees half a file, and a failed
      write leaves the old file as it was;
    * a symbolic link: its target, by these same rules; the link stays a link. A link to nothing is
      refused: creating a file where the command line never named one would be a surprise (and, in a
      shared directory, someone else's trap); so is another user's link in a shared sticky directory
      (:func:`_someone_elses_link`);
    * a FIFO or a character device (``/dev/null``, ``/dev/stdout``, a terminal): written through, never
      replaced; a FIFO with no reader is waited for :data:`FIFO_READER_WAIT_S`, then refused;
    * a directory, a socket or a block device: refused.

    A refusal is an :class:`OSError` whose ``strerror`` is one line without the path, as the callers say
    every failed write (``cannot write PATH: ...``, exit 74)."""
    linked = os.path.islink(path)
    if linked:
        _check_links(path)
    try:
        # the kernel follows the links itself: /dev/stdout → /proc/self/fd/1 → a pipe has no path to resolve
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        if linked:
            missing = path_shown(os.path.realpath(path))
            raise OSError(errno.ENOENT, f"is a symbolic link to {missing}, which does not exist") from None
        mode = None
    if mode is not None:
        for test, code, words in _REFUSED:
            if test(mode):
                raise OSError(code, words)
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            _write_through(path, text)
            return
    _replace(os.path.realpath(path) if linked else path, text)


#: Links followed at most, as the kernel's own limit (ELOOP past 40).
MAX_LINKS = 40


def _check_links(path: str) -> None:
    """Every link on the way from ``path`` to what it names, one at a time: none may be another user's link
    in a shared directory (:func:`_someone_elses_link`), and a loop ends. The walk stops where the next name
    is not a link (a file, nothing, or what a magic link such as /proc/self/fd/1 names: ``pipe:[…]``)."""
    current = path
    for _ in range(MAX_LINKS):
        if not os.path.islink(current):
            return
        if _someone_elses_link(current):
            raise OSError(errno.EPERM, "is a symbolic link another user left in a shared directory: not followed")
        current = os.path.join(os.path.dirname(os.path.abspath(current)), os.readlink(current))
    raise OSError(errno.ELOOP, "is a chain of too many symbolic links")


def _someone_elses_link(path: str) -> bool:
    """The kernel's own rule for following links (``fs.protected_symlinks``), which envcheck applies itself
    because it resolves the link before opening: in a sticky, world-writable directory (``/tmp``) a link is
    followed only when it belongs to this user or to the directory's owner. Else a root envcheck told
    ``-o /tmp/report.json`` would write wherever another user's planted link points (``/etc/passwd``)."""
    try:
        link = os.lstat(path)
        directory = os.stat(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    shared = bool(directory.st_mode & stat.S_ISVTX) and bool(directory.st_mode & stat.S_IWOTH)
    return shared and link.st_uid not in (os.geteuid(), directory.st_uid)


def _replace(path: str, text: str) -> None:
    """Write into a temporary file next to ``path``, then rename it over ``path`` (atomic on one filesystem)."""
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


def _write_through(path: str, text: str) -> None:
    """Open a FIFO or character device for writing and write ``text`` into it. The open is non-blocking (a
    FIFO without a reader would block it forever) and retried until a reader comes or
    :data:`FIFO_READER_WAIT_S` has passed; once open, writes block as usual, so a slow reader gets it all."""
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    give_up = time.monotonic() + FIFO_READER_WAIT_S
    while True:
        try:
            fd = os.open(path, flags)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: a FIFO that nobody reads yet
                raise
            if time.monotonic() >= give_up:
                raise OSError(errno.ENXIO, f"is a FIFO and nothing read it within {FIFO_READER_WAIT_S:g} s") from None
        time.sleep(0.05)
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):  # replaced since it was looked at: never write into it
            raise OSError(errno.EAGAIN, "changed while it was being written: try again")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
