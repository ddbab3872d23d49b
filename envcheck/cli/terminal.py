"""The terminal: deliver a report: redact it once, then render it where the user asked, and turn what can go wrong
on the way out (a closed pipe, a full disk, an encoding that cannot hold a character) into the exit
policy's codes instead of a traceback.

Every command that prints a report goes through :func:`deliver`; renderers never see unredacted data.
"""

from __future__ import annotations

import atexit
import errno
import io
import os
import stat
import sys
from collections.abc import Collection, Mapping
from typing import IO, Any, NoReturn

import click

from envcheck.core.exit import ExitCode


def redacted(
    document: dict[str, Any], env: Mapping[str, str] | None = None, *, done: Collection[str] = ()
) -> dict[str, Any]:
    """The document redacted, but for its top-level parts named in ``done``: those its command built
    through the same redactor already (the fleet's nodes and figures, millions of values at 10 000
    nodes, envcheck.fleet.report), which a second walk would only make slower."""
    from envcheck.core.redact import redact_tree

    clean = redact_tree({k: v for k, v in document.items() if k not in done}, os.environ if env is None else env)
    return {key: document[key] if key in done else clean[key] for key in document}


def deliver(
    document: dict[str, Any],
    *,
    stdout_format: str,
    file_format: str | None,
    output: str | None,
    verbose: bool,
    save: str | None = None,
    stream: IO[str] | None = None,
    redacted_parts: Collection[str] = (),
) -> ExitCode | None:
    """Redact once, write the --output file and the bench's --save baseline (JSON) if asked, then render
    to stdout (or ``stream``: ``explain -- CMD`` leaves stdout to the command). Returns an exit code that
    overrides the run's own when a write failed (74), else None.
    Each file is written by what its path is (a file replaced atomically, a FIFO or device written through,
    a directory or socket refused: :func:`envcheck.render.write_text_atomically`)."""
    from envcheck.core.files import path_shown
    from envcheck.render import RenderOptions, make_console, render, write_atomically

    document = redacted(document, done=redacted_parts)
    options = RenderOptions(verbose=verbose)
    files = [(output, file_format, ""), (save, "json", "--save file ")]
    failed = False
    for path, fmt, what in files:
        if path is None or fmt is None:
            continue
        try:
            write_atomically(path, document, fmt, options)
        except OSError as exc:
            error(f"cannot write {what}{path_shown(path)}: {exc.strerror or exc}")
            failed = True
    render(document, stdout_format, make_console(stream), options)
    (stream or sys.stdout).flush()
    return ExitCode.OUTPUT_ERROR if failed else None


def delivered(
    document: dict[str, Any],
    exit_code: int,
    *,
    stdout_format: str,
    file_format: str | None,
    output: str | None,
    verbose: bool = False,
    save: str | None = None,
    stream: IO[str] | None = None,
    redacted_parts: Collection[str] = (),
) -> int:
    """The tail of every reporting command: deliver its document (:func:`deliver`); the code to exit
    with, the run's own or 74 when a file could not be written, or 128 + the signal when an orderly stop
    took one (envcheck.core.stop: a signal that came once the run was over still says it came)."""
    from envcheck.core import stop

    override = deliver(
        document,
        stdout_format=stdout_format,
        file_format=file_format,
        output=output,
        verbose=verbose,
        save=save,
        stream=stream,
        redacted_parts=redacted_parts,
    )
    code = int(override if override is not None else exit_code)
    in_force = stop.current()
    return code if in_force is None else in_force.exit_code(code)


def finish(document: dict[str, Any], exit_code: int, **how: Any) -> NoReturn:
    """:func:`delivered`, then exit with its code."""
    sys.exit(delivered(document, exit_code, **how))


def fail(command: str, message: str, code: int) -> NoReturn:
    """A command that cannot run: one line on stderr, ``envcheck COMMAND: error: ...``, and exit ``code``.
    Secrets are scrubbed (an import error may quote a URL with a token) and the message is kept to one line
    (a torch error may span several)."""
    from envcheck.core.model import one_line
    from envcheck.core.redact import scrub

    click.echo(f"envcheck {command}: error: {one_line(scrub(message, os.environ))}", err=True)
    sys.exit(int(code))


def error(message: str) -> None:
    """One line on stderr, never a traceback (stderr itself may be gone: then say nothing)."""
    try:
        click.echo(f"envcheck: {message}", err=True)
    except OSError:
        pass


class ReaderGone(Exception):  # noqa: N818 - what happened, not an error of envcheck's
    """stdout's reader went away while a command wrote its report. Raised in place of the command's
    BrokenPipeError (:meth:`envcheck.cli._Commands.invoke`): click's main answers EPIPE with exit 1, the
    code for "a check failed", even when asked not to stand alone, and lets anything else through."""


def reader_gone(exc: OSError) -> bool:
    """Whether a failed write means its reader went away: a pipe's (EPIPE) or a socket's peer (ECONNRESET)."""
    return isinstance(exc, (BrokenPipeError, ConnectionResetError)) or exc.errno in (errno.EPIPE, errno.ECONNRESET)


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader went away (the kernel flags its write end with POLLERR) or a
    socket whose peer closed (POLLHUP): an EPIPE is stdout's only then. A stdout with no descriptor to ask
    (a test's capture) is taken to be it."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


def run_guarded(main: Any) -> None:
    """Run the click group and map what can go wrong while printing to the exit policy:

    * the reader went away (``envcheck doctor | head -1``): exit 141 as a process killed by SIGPIPE
      would, silently, without a traceback, and without Python's second error at shutdown (click's own
      handling would exit 1, the code for "a check failed");
    * stdout cannot be written (``> /dev/full``, a full disk): one line on stderr, exit 74;
    * a character the output encoding cannot hold is replaced, not fatal (see :func:`tolerant_streams`);
    * Ctrl-C outside a command that handles it: exit 130 with one line; a bug: one line, exit 1.
    """
    whole_writes()
    tolerant_streams()
    stderr = sys.stderr
    sys.stderr = ScrubbedStream(stderr)  # type: ignore[assignment]
    try:
        try:
            code = main(standalone_mode=False)
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except click.exceptions.Abort as exc:  # click's word for a KeyboardInterrupt in a command
            code = _stopped(exc.__cause__)
        sys.stdout.flush()
    except SystemExit as exc:
        _flush_or_exit()
        raise exc
    except KeyboardInterrupt as exc:
        sys.exit(_stopped(exc))
    except ReaderGone:
        _quiet_stdout()
        sys.exit(int(ExitCode.BROKEN_PIPE))
    except OSError as exc:
        _quiet_stdout()
        if reader_gone(exc):
            sys.exit(int(ExitCode.BROKEN_PIPE))
        error(f"cannot write the report: {exc.strerror or exc}")
        sys.exit(int(ExitCode.OUTPUT_ERROR))
    except Exception as exc:  # noqa: BLE001 - a bug in envcheck is one line, not a traceback
        if os.environ.get("ENVCHECK_DEBUG"):
            raise
        error(
            f"internal error: {type(exc).__name__}: {exc} "
            "(a bug in envcheck: please report it; ENVCHECK_DEBUG=1 shows the traceback)"
        )
        sys.exit(int(ExitCode.FAILED))
    finally:
        sys.stderr = stderr
    sys.exit(code if isinstance(code, int) else 0)


def _stopped(exc: BaseException | None) -> int:
    """A command stopped before it had anything to report: one line, and the signal's exit code (130 for
    Ctrl-C; 143 for the first SIGTERM of an orderly stop, envcheck.core.stop)."""
    from envcheck.core.stop import Stopped, exit_code, stopped_words

    if isinstance(exc, Stopped):
        error(f"stopped by {stopped_words(str(exc))} before there was anything to report")
        return exit_code(exc.signum)
    error("interrupted")
    return int(ExitCode.INTERRUPTED)


class ScrubbedStream:
    """stderr as every command writes to it, with the environment's secrets and credential shapes scrubbed
    from each write. Reports are redacted as a document (:func:`deliver`), but stderr carries text no
    document holds: error lines quoting a path or an exception (``cannot write /run/<token>/x.json``,
    ``internal error: ...``), click's usage errors quoting a bad value, the live display's progress lines,
    Python's warnings. Scrubbing them where they are written covers every command, today's and the next,
    without each line having to remember it.

    The environment's secrets are read once, when the command starts. ``buffer`` is not offered, so that
    nothing (click re-wrapping a stream it finds misconfigured for ASCII, say) can write past the scrub.
    """

    def __init__(self, stream: Any) -> None:
        from envcheck.core.redact import scrubber

        self._stream = stream
        self._scrub = scrubber(dict(os.environ))

    def write(self, text: str) -> int:
        self._stream.write(self._scrub(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        if name == "buffer":
            raise AttributeError(name)
        return getattr(self._stream, name)


def _flush_or_exit() -> None:
    """A command ended with sys.exit: its output may still sit in the buffer, and flushing it is where
    a closed pipe or a full disk shows up."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        _quiet_stdout()
        if reader_gone(exc):
            raise SystemExit(int(ExitCode.BROKEN_PIPE)) from None
        error(f"cannot write the report: {exc.strerror or exc}")
        raise SystemExit(int(ExitCode.OUTPUT_ERROR)) from None


def tolerant_streams() -> None:
    """With ``PYTHONIOENCODING=ascii`` or ``LC_ALL=C`` the streams cannot hold ✓, × or a GPU name in
    another script: replace what they cannot hold rather than die with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) not in ("replace", "backslashreplace"):
            try:
                reconfigure(errors="replace")
            except (OSError, ValueError):
                pass


class _WholeWrites(io.BufferedWriter):
    """A buffered writer that writes all it is given or raises. Python's own, on a pipe whose reader goes
    away part-way through a large write, returns the bytes the pipe took and drops the rest without an
    error, and the text layer above it ignores the count: a report of megabytes piped to ``head`` ended
    as if it had all been read (exit 1 or 0 instead of 141). Here the rest is written again, and the
    next write meets the closed pipe."""

    #: The stream it replaces wrote straight to its descriptor (``python -u``, ``PYTHONUNBUFFERED``): so
    #: does this, so that what a child process writes to the same descriptor keeps its place.
    unbuffered = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            written = super().write(view)
            if not written:  # a non-blocking stream that took nothing: not a report's stdout
                raise OSError(errno.EAGAIN, "the output took no bytes")
            view = view[written:]
        if self.unbuffered:
            self.flush()
        return total


def whole_writes() -> None:
    """Where stdout is a pipe or a socket, write it through :class:`_WholeWrites`: a new text stream, as
    stdout's was (encoding, error handling, line buffering), over a duplicate of its descriptor (so the
    original stream, which the interpreter still holds, keeps a descriptor of its own)."""
    stream = sys.stdout
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return
        stream.flush()
        raw = io.FileIO(os.dup(fd), "w", closefd=True)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return
    writer = _WholeWrites(raw)
    writer.unbuffered = isinstance(getattr(stream, "buffer", None), io.RawIOBase)
    sys.stdout = ours = io.TextIOWrapper(
        writer,
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=stream.line_buffering,
        write_through=getattr(stream, "write_through", False),
    )
    # Closed at exit, after everything else (atexit runs the first registered last): the interpreter
    # flushes stdout at shutdown but would leave its descriptor to the collector ("ResourceWarning:
    # unclosed file" under python -X dev).
    atexit.register(_close, ours)


def _close(stream: IO[str]) -> None:
    try:
        stream.close()
    except (OSError, ValueError):
        pass  # the reader is gone: said already, by the exit code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
