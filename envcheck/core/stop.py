"""How every long command stops on a signal: one orderly stop, whatever comes after it.

A bench, a burn or a comm run is stopped by people and by machines: Ctrl-C (often twice, quickly), a
scheduler's SIGTERM (Slurm sends it, then SIGKILL after ``KillWait``; ``timeout`` sends it; Kubernetes
sends it, then SIGKILL after the grace period), a closed terminal's SIGHUP. The promise, the same for
every long command (README, "Stopping a run"):

* the **first** SIGINT, SIGTERM or SIGHUP starts an orderly stop: the run is cut short where it is
  (:class:`Stopped`, a ``KeyboardInterrupt``, is raised in the main thread while the run is still
  *armed*), the workers are stopped, and the report of what ran is written, marked interrupted, with the
  exit code ``128 + the signal`` (130, 143, 129), the code a shell gives a process that signal ended;
* **further** signals during that stop are noted and never raised: the stop goes on and the report is
  still written (a second Ctrl-C 50 ms after the first used to end the command with nothing);
* a **hard bound**: should the stop itself hang (a report written into a FIFO nobody reads, a worker that
  will not die), the command ends :data:`STOP_BOUND_S` after the first signal with one line on stderr,
  its children killed, and the same exit code.

Once the run proper is over (:func:`settle`), a signal is only noted: the report of a finished run is
written whole and the exit code still says which signal came. A signal that the command inherited as
ignored (SIGINT in a background job, SIGHUP under ``nohup``) stays ignored.

Why not Python's own handlers: the default SIGINT raises ``KeyboardInterrupt`` on *every* Ctrl-C, so a
second one lands wherever the first stop happens to be (rendering, writing), and the default SIGTERM
(envcheck.core.proc's, outside a long command) kills the children and dies without a report.

Why a watchdog thread that polls: the handler runs in the main thread between two bytecodes, possibly
while that thread holds a lock (threading's, a buffered stream's); so it only sets plain attributes, and
everything else (the notice, the hard stop) happens in a thread of its own that takes no lock the main
thread could hold. The hard stop writes its line from yet another thread, so that a stderr nobody reads
cannot hold the end up either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.workers import signal_name

#: How long an orderly stop may take, from the first signal, before the command is ended without it. Above
#: the longest stop a healthy run needs (comm gives rank 0 ten seconds to report), below the SIGKILL a
#: scheduler sends next (Slurm's default KillWait is 30 s; Kubernetes' grace period 30 s).
STOP_BOUND_S = 25.0
#: The variable that sets another bound, in seconds (a site whose scheduler waits less; the tests).
BOUND_VARIABLE = "ENVCHECK_STOP_BOUND_S"
#: The signals an orderly stop takes (those the platform has).
SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
#: How often the watchdog looks at the stop.
POLL_S = 0.1


class Stopped(KeyboardInterrupt):
    """The first signal of an orderly stop, raised in the main thread while the run is armed. A
    ``KeyboardInterrupt``, so that every place that already ends a run on Ctrl-C (the one supervisor, the
    bench's cases) ends it on SIGTERM and SIGHUP the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def exit_code(signum: int) -> int:
    """The code a shell reports for a process that ``signum`` ended: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


@dataclass
class OrderlyStop:
    """One command's stop. Its handler only sets attributes (see the module's docstring)."""

    bound_s: float = STOP_BOUND_S
    #: The first signal (None: none came).
    signum: int | None = None
    #: Every signal that came, the first included.
    count: int = 0
    #: When the first came (monotonic).
    first_at: float | None = None
    #: Whether the first signal is raised in the main thread (the run can still be cut short).
    armed: bool = True
    _done: bool = False
    _raised: bool = False
    _handled: int = 0
    _seen: int = 0
    _noticed: int = 1
    _previous: dict[int, Any] = field(default_factory=dict)
    #: The main thread's signal mask before :func:`settle` blocked the stop's signals there.
    _mask: set[int] | None = None

    @property
    def stopped_by(self) -> str | None:
        """The first signal's name (``SIGTERM``), or None."""
        return None if self.signum is None else signal_name(self.signum)

    def exit_code(self, code: int) -> int:
        """The command's exit code once a signal came: ``128 + signal`` instead of a verdict (0, 1) or of
        a plain Ctrl-C's 130, so that whoever sent it sees what it asked for; a usage error or a failed
        write (2, 74) says more and is kept."""
        if self.signum is None or code not in (0, 1, 130):
            return code
        return exit_code(self.signum)

    def _on_signal(self, signum: int, frame: object) -> None:
        """The handler, in the main thread: note the signal; raise the first one while armed (once). Not
        while the main thread is inside envcheck.core.proc.start: the process it is starting is not
        remembered yet, and would outlive the stop; :func:`check` raises it at the supervisor's next turn."""
        from envcheck.core import proc

        self._handled += 1
        self._note(signum)
        if getattr(proc._STARTING, "active", False):
            return
        self._raise_now()

    def _raise_now(self) -> None:
        if self.armed and not self._raised and self.signum is not None:
            self._raised = True
            raise Stopped(self.signum)

    def observe(self, signum: int) -> None:
        """envcheck.core.proc's watcher thread saw ``signum`` arrive: note it at once, even while the main
        thread is blocked (in a report write, where the handler cannot run), so that the hard bound runs
        from the first signal."""
        if signum in self._previous:
            self._seen += 1
            self._note(signum)

    def _note(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self.first_at = time.monotonic()
        self.count = max(self._handled, self._seen)

    def _watch(self) -> None:
        while not self._done:
            time.sleep(POLL_S)
            if self.first_at is None or self._done:
                continue
            if self.count > self._noticed:
                self._noticed = self.count
                left = max(0.0, self.first_at + self.bound_s - time.monotonic())
                _say(
                    f"envcheck: already stopping ({self.stopped_by}): the report of what ran is being written; "
                    f"the command ends within {left:.0f} s whatever happens"
                )
            if time.monotonic() - self.first_at >= self.bound_s:
                self._hard_stop()

    def _hard_stop(self) -> None:
        """The stop itself hung: kill every child, say so in one line, and end now."""

        assert self.signum is not None
        # kill_all takes the lock proc.start holds while a process execs: a thread stuck there (a command
        # on a dead mount) must not hold the bound up, so the kill gets a second and no more.
        killer = threading.Thread(target=_kill_all_quietly, name="envcheck-stop-kill", daemon=True)
        killer.start()
        killer.join(1.0)
        said = _say(
            f"envcheck: the stop after {self.stopped_by} did not finish within {self.bound_s:g} s: "
            "ended now, its workers killed; the report may be missing or cut short"
        )
        said.join(0.5)
        os._exit(exit_code(self.signum))


def _kill_all_quietly() -> None:
    from envcheck.core import proc

    with contextlib.suppress(Exception):
        proc.kill_all()


def _say(line: str) -> threading.Thread:
    """Write one line to stderr from a thread of its own (a stderr nobody reads must not hold us)."""

    def write() -> None:
        with contextlib.suppress(OSError):
            os.write(2, (line + "\n").encode("utf-8", "replace"))

    thread = threading.Thread(target=write, name="envcheck-stop-say", daemon=True)
    thread.start()
    return thread


#: The stop of the command running now (one command per process).
_current: OrderlyStop | None = None


def bound_from(env: dict[str, str] | os._Environ[str]) -> float:
    """:data:`STOP_BOUND_S`, or the positive number of seconds :data:`BOUND_VARIABLE` gives."""
    try:
        value = float(env.get(BOUND_VARIABLE, ""))
    except ValueError:
        return STOP_BOUND_S
    return value if 0 < value < float("inf") else STOP_BOUND_S


@contextlib.contextmanager
def orderly(bound_s: float | None = None) -> Iterator[OrderlyStop]:
    """Take SIGINT, SIGTERM and SIGHUP for a long command's whole life (run, report, write), as the module
    says. Outside the main thread (where no handler can be set) the stop is a plain record."""
    global _current
    from envcheck.core import proc  # its watcher thread, which tells the stop of each signal, starts at import

    stop = OrderlyStop(bound_s=bound_from(os.environ) if bound_s is None else bound_s)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    outer, _current = _current, stop
    try:
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if previous is signal.SIG_IGN:  # inherited as ignored (a background job's SIGINT, nohup's SIGHUP)
                continue
            stop._previous[sig] = previous
            signal.signal(sig, stop._on_signal)
        watchdog = threading.Thread(target=stop._watch, name="envcheck-stop", daemon=True)
        watchdog.start()
        proc.SIGNAL_OBSERVERS.append(stop.observe)
        yield stop
    finally:
        stop.armed = False  # from here on nothing raises: the restore below must run whole
        stop._done = True
        _current = outer
        with contextlib.suppress(ValueError):
            proc.SIGNAL_OBSERVERS.remove(stop.observe)
        for sig, previous in stop._previous.items():
            # Once a signal came, the command is ending with the report written: a further one must not
            # reach the previous handler on the way out (Ctrl-C's KeyboardInterrupt, envcheck.core.proc's
            # kill-and-die), nor the default action Python puts back for its own handlers as it shuts
            # down (the process would die of it instead of exiting 128 + the first signal). Ignored
            # handlers are the ones Python leaves alone then.
            signal.signal(sig, previous if stop.signum is None else signal.SIG_IGN)
        if stop._mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, stop._mask)


def check() -> None:
    """Raise the first signal now if it came while it could not be raised (the main thread was starting a
    process) and the run is still armed: the one supervisor calls this at each turn of its loop."""
    if _current is not None:
        _current._raise_now()


def current() -> OrderlyStop | None:
    """The orderly stop in force, if a command installed one."""
    return _current


def settle() -> None:
    """The run proper is over: from now on a signal is only noted, so that the report of what ran is
    written whole. (No-op where no orderly stop is in force.)

    Noting is not enough on its own: a signal that the kernel hands to the main thread while it is
    blocked writing the report into a pipe (a reader slower than the report) cuts that ``write`` short,
    and Python's buffered stdout then loses the rest of the report without an error. So the main thread
    blocks the stop's signals from here on; the kernel hands them to another thread (the watchdog and
    envcheck.core.proc's watcher keep them open), which tells the stop at once; the handler still runs and
    counts them once the main thread is free, and the hard bound still holds. (A child started from the
    main thread after this would inherit the blocked mask; none is.)"""
    if _current is None:
        return
    _current.armed = False
    main = threading.current_thread() is threading.main_thread()
    if main and hasattr(signal, "pthread_sigmask") and _current._previous and _current._mask is None:
        _current._mask = signal.pthread_sigmask(signal.SIG_BLOCK, list(_current._previous))


def stopped_by(interrupted: bool) -> str | None:
    """The name of the signal that cut the run short, for its report (None: it was not): the orderly
    stop's first signal, or SIGINT for a run interrupted by a plain ``KeyboardInterrupt`` (a caller
    without an orderly stop). A signal that came once the run was over cut nothing: the cli's exit code
    says it (:meth:`OrderlyStop.exit_code`)."""
    if not interrupted:
        return None
    if _current is not None and _current.signum is not None:
        return _current.stopped_by
    return "SIGINT"


def stopped_words(name: str | None) -> str:
    """How a report's sentence names the signal: ``Ctrl-C`` for SIGINT (what a person pressed), else its
    name (``SIGTERM``: what a scheduler sent)."""
    return "Ctrl-C" if name in (None, "SIGINT") else name
