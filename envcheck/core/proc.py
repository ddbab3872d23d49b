"""Every subprocess envcheck starts goes through here: in a session of its own, bounded in time, and
killed with everything it started when it times out or when envcheck exits.

Why one helper: a probe's command can hang (``nvcc`` on a dead network filesystem, CUDA initialisation
on a wedged driver) and can start processes of its own (a wrapper script, torch's helpers). Killing only
the process we started leaves those behind, holding a GPU or a mount. So each command gets its own
session, hence its own process group, and a kill is always sent to the whole group: on timeout, when
the command ends (anything it left running in its group goes too), and when envcheck exits, whether
normally (``atexit``), by Ctrl-C (``KeyboardInterrupt`` runs ``atexit`` too) or by ``SIGTERM``/``SIGHUP``
(a ``timeout`` wrapper, a scheduler, a closed terminal), which would otherwise end envcheck without
running any exit handler. A SIGKILLed envcheck runs nothing at all: there the kernel kills each child
as envcheck dies (``PR_SET_PDEATHSIG``, set in the child before it runs its command), and the torch child
also bounds itself (an alarm a little after its own time limit).

A new session also detaches the command from the terminal, so Ctrl-C reaches envcheck alone and
envcheck decides what happens to its children.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

#: After a timeout and the group kill, how long to keep reading the pipes. They close at once unless a
#: process that left the group (its own ``setsid``) still holds them; then its output is given up.
DRAIN_S = 1.0
#: How long a command asked for its last words (see :func:`wait`) gets to write them before the kill.
LAST_WORDS_S = 0.2


def _die_with_parent_hook() -> Callable[[], None] | None:
    """What a child runs between fork and exec so that the kernel kills it when envcheck dies, however
    envcheck dies (``PR_SET_PDEATHSIG``, Linux): a SIGKILLed envcheck runs no handler, and without this
    a hung ``nvcc`` on a dead mount, or a worker waiting on a peer, would outlive it. The call is resolved
    here, in the parent, so that the child only makes one system call before ``exec``; the signal comes
    when the thread that started the child ends: every child is started by a thread that outlives it (the
    main thread, or the probe or supervising thread that waits on it).
    None where there is no prctl (not Linux): there, children bound themselves in time."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    kill = int(signal.SIGKILL)

    def hook() -> None:
        prctl(pr_set_pdeathsig, kill, 0, 0, 0)

    return hook


_DIE_WITH_PARENT = _die_with_parent_hook() if hasattr(os, "fork") else None


@dataclass(frozen=True)
class Ended:
    """How a command ended. ``timed_out``: it was still running at its time limit and was killed then
    (a command that had exited while something it started kept its pipes open did not time out: its
    ``returncode`` is its own). Output is decoded leniently: a wrapper's stray bytes must not raise."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float


def start(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin_pipe: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with stdin closed (a pipe with ``stdin_pipe``, for a child envcheck
    talks to) and stdout/stderr piped, and remember it so that envcheck's exit kills its group. Raises
    :class:`OSError` when it cannot be started.

    The process is running before ``Popen`` returns, so starting and remembering it are one step under
    the lock that :func:`kill_all` takes: a SIGTERM that arrives in between cannot miss it.
    """
    return _remembered(
        lambda: subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_DIE_WITH_PARENT,
        )
    )


def _remembered(popen: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Start a process (``popen``) and remember it, as one step under the lock :func:`kill_all` takes; a
    signal that came meanwhile is acted on once it is remembered."""
    with _LIVE_LOCK:
        _STARTING.active = True
        try:
            proc = popen()
            _LIVE.add(proc)
        finally:
            _STARTING.active = False
    if _PENDING and threading.current_thread() is threading.main_thread():
        _terminate(_PENDING[0])
    return proc


def start_wrapped(argv: Sequence[str], *, own_group: bool = True) -> subprocess.Popen[bytes]:
    """Start a command envcheck wraps (``envcheck explain -- CMD``): stdin is envcheck's, stdout and stderr
    are piped (envcheck passes them on as they come). ``own_group``: it runs in a process group of its own, to
    which envcheck forwards the signals it gets (Ctrl-C, a scheduler's SIGTERM); without, it stays in
    envcheck's, the terminal's foreground group, so that it may read the terminal (a process in a background
    group that reads it is stopped) and gets Ctrl-C from it directly. Like every child, it dies with envcheck
    (:data:`_DIE_WITH_PARENT`, and envcheck's exit kills its group) until :func:`release`. Raises
    :class:`OSError` when it cannot be started."""
    die = _DIE_WITH_PARENT

    def prepare() -> None:
        if own_group:
            os.setpgid(0, 0)
        if die is not None:
            die()

    return _remembered(
        lambda: subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=prepare)
    )


def release(proc: subprocess.Popen[bytes]) -> None:
    """A wrapped command that ended is no longer envcheck's to kill: what it left running (a daemon it
    started on purpose) stays, as it would have without envcheck."""
    with _LIVE_LOCK:
        _LIVE.discard(proc)


def wait(
    proc: subprocess.Popen[bytes],
    timeout_s: float,
    *,
    started: float | None = None,
    last_words: signal.Signals | None = None,
) -> Ended:
    """Wait until ``timeout_s`` after ``started`` (default: now) for ``proc`` to end and its pipes to
    close; then kill its whole group.

    ``last_words``: a signal sent to the process alone, :data:`LAST_WORDS_S` before the kill, when it is
    still running at the limit, so that it can leave a report on stderr (the torch child answers
    ``SIGUSR1`` with faulthandler's dump of where it hangs). Nothing is sent to a process that ended.
    """
    started = time.monotonic() if started is None else started
    timed_out = False
    try:
        out, err = proc.communicate(timeout=max(0.0, started + timeout_s - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = proc.poll() is None
        if timed_out and last_words is not None:
            _signal(proc, last_words)
            time.sleep(LAST_WORDS_S)
        kill_group(proc)
        try:
            out, err = proc.communicate(timeout=DRAIN_S)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
            try:
                # A process in uninterruptible sleep (I/O on a dead NFS server) dies only when the I/O
                # returns: give up on it rather than hang with it.
                proc.wait(timeout=DRAIN_S)
            except subprocess.TimeoutExpired:
                pass
    finally:
        # Whatever the command left running in its group goes with it; then it is no longer ours to kill.
        kill_group(proc)
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    return Ended(proc.returncode, _text(out), _text(err), timed_out, time.monotonic() - started)


def _text(data: bytes | None) -> str:
    return (data or b"").decode(errors="replace")


def run(argv: Sequence[str], timeout_s: float, *, env: Mapping[str, str] | None = None) -> Ended:
    """Run ``argv`` to its end or to ``timeout_s``, whichever comes first (see :func:`start`)."""
    started = time.monotonic()
    return wait(start(argv, env=env), timeout_s, started=started)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``'s whole process group (its session: it leads both), or ``proc`` alone where it leads
    none (a wrapped job left in envcheck's group, :func:`start_wrapped`). Already gone is fine."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows has no process groups
            proc.kill()
    except ProcessLookupError:
        try:
            proc.kill()  # no group of its own: the process itself
        except OSError:
            pass
    except OSError:
        pass


def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        proc.send_signal(sig)
    except OSError:
        pass


# -- at exit ----------------------------------------------------------------------------------------------

_LIVE: set[subprocess.Popen[bytes]] = set()
# Reentrant: the SIGTERM handler runs in the main thread, possibly while that thread is inside start().
_LIVE_LOCK = threading.RLock()
#: Whether this thread is inside start(); and a terminating signal that came while the main thread was.
_STARTING = threading.local()
_PENDING: list[int] = []


def kill_all() -> None:
    """Kill the group of every command still running (envcheck is exiting)."""
    with _LIVE_LOCK:
        for proc in list(_LIVE):
            kill_group(proc)


atexit.register(kill_all)


def _on_terminate(signum: int, frame: object) -> None:
    """Kill our commands' groups, then die of the same signal as we would have without this handler, so
    that whoever sent it sees the usual exit status. Python runs this in the main thread; if that thread
    was inside :func:`start`, the process it is starting is not remembered yet: start() finishes first."""
    if getattr(_STARTING, "active", False):
        _PENDING.append(signum)
        return
    _terminate(signum)


def _terminate(signum: int) -> None:
    kill_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    """Catch SIGTERM and SIGHUP where nobody else does (a host application's own handler, or a SIGHUP
    ignored by ``nohup``, is left alone). Signal handlers can only be set from the main thread.

    Why a watcher thread as well: Python runs a handler only when the main thread runs Python code, and
    the doctor's main thread spends its time blocked, waiting for probes. A process-directed signal
    interrupts that wait only if the kernel hands it to the main thread; another thread (one waiting for
    a child's pipes, say) may take it first, and then the handler waits until the main thread wakes for
    another reason, a minute later. Whichever thread takes it, Python's low-level handler writes the
    signal's number to the wakeup fd: the watcher reads it, kills our children at once, and sends the
    signal again to the main thread alone, where it interrupts the wait and the handler ends envcheck.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    ours = [
        sig
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None))
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL
    ]
    for sig in ours:
        signal.signal(sig, _on_terminate)
    if not hasattr(signal, "pthread_kill"):
        return
    previous = signal.set_wakeup_fd(-1)
    if previous != -1:  # someone else (an event loop) listens there: leave it theirs
        signal.set_wakeup_fd(previous)
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    watcher = threading.Thread(
        target=_watch, args=(read_end, {int(s) for s in ours}), name="envcheck-signals", daemon=True
    )
    watcher.start()


#: Called from the watcher thread with each signal that reaches a Python handler, the moment it arrives,
#: whichever thread the kernel handed it to (envcheck.core.stop: the main thread may be blocked in a write).
SIGNAL_OBSERVERS: list[Callable[[int], None]] = []


def _watch(read_end: int, ours: set[int]) -> None:
    main = threading.main_thread().ident
    while True:
        try:
            numbers = os.read(read_end, 64)
        except OSError:
            return
        if not numbers:
            return
        for signum in numbers:
            for observer in list(SIGNAL_OBSERVERS):
                observer(signum)
        for signum in set(numbers) & ours:
            if signal.getsignal(signum) is _on_terminate and main is not None:
                kill_all()
                signal.pthread_kill(main, signum)


_install_signal_handlers()
