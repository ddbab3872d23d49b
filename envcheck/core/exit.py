"""The whole exit-code policy, in one place (cf. black's ``report.py``): scripts, CI and Docker rely on it.

| code | meaning |
|---|---|
| 0 | no failure (warnings allowed) |
| 1 | something was judged a failure, or crashed (with ``strict``: or warned) |
| 2 | usage error: an option, a selection, a spec or a baseline that cannot be used |
| 74 | the report could not be written (a full disk, ``/dev/full``): sysexits' EX_IOERR |
| 130 | interrupted (Ctrl-C): what was measured so far is still reported |
| 141 | the reader of stdout went away (``envcheck doctor | head -1``): the shell's code for SIGPIPE |
| 143 | stopped by SIGTERM (a scheduler's stop, ``timeout``); a long command reports what ran (envcheck.core.stop) |
| 129 | stopped by SIGHUP (the terminal closed); likewise |

The healthcheck speaks Docker's dialect, where only 0 and 1 mean anything: :meth:`ExitCode.for_docker`.
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Iterable

from envcheck.core.model import Status, worst


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    OUTPUT_ERROR = 74
    INTERRUPTED = 128 + signal.SIGINT
    BROKEN_PIPE = 128 + signal.SIGPIPE
    TERMINATED = 128 + signal.SIGTERM
    HANGUP = 128 + getattr(signal, "SIGHUP", 1)

    def for_docker(self) -> int:
        """Docker reads 0 as healthy, 1 as unhealthy and reserves 2: anything but 0 is unhealthy."""
        return 0 if self is ExitCode.OK else 1


def exit_code_for(
    statuses: Iterable[Status], *, strict: bool = False, interrupted: bool = False, stopped_by: str | None = None
) -> ExitCode:
    """0 without failures (warnings allowed), 1 with any failure or crash; ``strict`` fails warnings too.
    An interrupted run is 130 whatever it found so far: it did not finish; ``stopped_by`` a signal's name,
    128 + that signal (143 for SIGTERM: the code a process killed by it has, so a scheduler sees what it
    asked for)."""
    if stopped_by is not None:
        try:
            return ExitCode(128 + int(getattr(signal.Signals, stopped_by, signal.SIGINT)))
        except ValueError:  # a signal the long commands do not take
            return ExitCode.INTERRUPTED
    if interrupted:
        return ExitCode.INTERRUPTED
    overall = worst(list(statuses))
    if overall is Status.FAIL or (strict and overall is Status.WARN):
        return ExitCode.FAILED
    return ExitCode.OK
