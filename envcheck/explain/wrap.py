"""``envcheck explain -- CMD ...``: run a job as it would run without envcheck, and keep what it printed
for the explanation.

Its stdout and stderr are passed on unchanged, byte for byte, as they come (to envcheck's own stdout and
stderr), and fed to the scanner on the way, so nothing but the first lines of each known error is held.
Signals envcheck gets while the job runs (Ctrl-C, a scheduler's SIGTERM, a closed terminal's SIGHUP) are
forwarded to the job's process group, and the job decides what they mean; if envcheck itself is killed,
the kernel kills the job (envcheck.core.proc). The exit status is the job's own: its code, or 128 + the
signal that ended it, as a shell reports it.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from envcheck.core.errors import CommandError
from envcheck.core.exit import ExitCode
from envcheck.explain.scan import Scanner

#: Read size from the job's pipes.
READ = 1 << 16
#: After the job exits, how long to keep reading pipes that something it started still holds open.
DRAIN_S = 1.0
#: The signals forwarded to the job while it runs.
FORWARDED = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


def run_wrapped(argv: Sequence[str], scanner: Scanner) -> int:
    """Run ``argv`` to its end, passing its output through and scanning it; its exit status."""
    from envcheck.core.proc import release, start_wrapped

    _flush_ours()
    # On a terminal the job stays in its foreground process group, as it would run without envcheck: it may
    # read the terminal (a wandb login prompt, pdb) and gets Ctrl-C from it directly. Elsewhere (a batch
    # job, a pipe) it gets a group of its own, and envcheck forwards what it is sent.
    foreground = _on_terminal()
    try:
        proc = start_wrapped(argv, own_group=not foreground)
    except OSError as exc:
        raise CommandError(f"cannot run {argv[0]}: {exc.strerror or exc}", ExitCode.USAGE) from None
    assert proc.stdout is not None and proc.stderr is not None
    outputs = {proc.stdout.fileno(): (1, scanner.source("stdout")), proc.stderr.fileno(): (2, scanner.source("stderr"))}
    broken: set[int] = set()
    selector = selectors.DefaultSelector()
    for fd in outputs:
        selector.register(fd, selectors.EVENT_READ)
    ended_at: float | None = None
    try:
        with _forwarding(proc.pid, foreground=foreground):
            while outputs:
                if ended_at is None and proc.poll() is not None:
                    ended_at = time.monotonic()
                if ended_at is not None and time.monotonic() - ended_at > DRAIN_S:
                    break
                for key, _ in selector.select(timeout=0.1):
                    fd = key.fd
                    data = os.read(fd, READ)
                    target, feed = outputs[fd]
                    if not data:
                        selector.unregister(fd)
                        feed.close()
                        del outputs[fd]
                        continue
                    feed.write(data)
                    if target not in broken:
                        try:
                            _write_all(target, data)
                        except OSError:  # our reader went away: the job runs on, still scanned
                            broken.add(target)
            for _, feed in outputs.values():
                feed.close()
            returncode = proc.wait()
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
        release(proc)
    return returncode if returncode >= 0 else 128 - returncode


def _on_terminal() -> bool:
    """Whether envcheck runs in the foreground of a terminal (its stdin is one, and its group is the one
    the terminal signals)."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


@contextmanager
def _forwarding(pid: int, *, foreground: bool = False) -> Iterator[None]:
    """While the job runs, each forwarded signal that reaches envcheck goes to the job instead of ending
    envcheck (the previous handlers come back after): to the job's group, or, in the terminal's foreground
    group (``foreground``), to the job alone, since the terminal's own Ctrl-C already reached it."""

    def forward(signum: int, frame: object) -> None:
        if foreground and signum == signal.SIGINT:
            return  # the terminal sent it to the whole foreground group: the job has it already
        try:
            if foreground:
                os.kill(pid, signum)
            else:
                os.killpg(pid, signum)
        except OSError:
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush_ours() -> None:
    """Anything envcheck buffered goes out before the job's first byte."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
