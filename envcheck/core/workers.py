"""Child processes that do envcheck's risky work, from both sides: the one supervisor (parent side) and the
one protocol its children speak (child side). The bench's and the burn's workers, the comm ranks this node
starts and the doctor's torch child all run through here.

Why children at all: importing torch can raise, hang (a wedged driver, a stuck network filesystem) or
crash the interpreter (SIGSEGV in a native library), and a process can be killed by the kernel's OOM
killer. In a child, each of those becomes one device's (or one probe's) failure, in words, and envcheck
goes on.

The protocol (child side). Every line the parent reads starts with :data:`MARK` followed by one JSON
object (:func:`emit`); torch and the CUDA libraries may print their own text to stdout, so unmarked lines
are ignored. :func:`start` gives a child its last words and its leash: faulthandler writes the Python stack
to stderr on a fatal signal and on :data:`DUMP_SIGNAL`, which the parent sends just before it kills a
child past its deadline, so that the report names the line it hung in; and the child dies with its parent
(:func:`die_with_parent`). :func:`exit_now` is how a child ends once everything is said: without the
interpreter's teardown, which takes most of a second with torch loaded and can hang on a bad GPU.

The supervisor (parent side). :func:`supervise` runs a list of :class:`Child` (all at once, or one after
another): each starts through envcheck.core.proc (its own process group, killed whole when envcheck
exits), its stdout and stderr are read here, in this thread, through one selector (so its events arrive the
moment they happen and no pipe ever fills), and a child silent past its deadline is asked for its stack,
then killed with its group. How a child that did not finish ended is said once, in :func:`ended_words`:
hung (and where), killed by SIGKILL (in practice the OOM killer), crashed with a signal (and the line
faulthandler printed), exited with a status (and its stderr's last line), or gone without a word.

This file is also loaded alone, by path, by the doctor's torch and JAX children (envcheck.probes.torch_child,
jax_child, through envcheck.probes.child_protocol), which must not import envcheck (a broken install must not
change what it finds): what they use (the marker, ``emit``, :func:`start_script`, :func:`error_text`) is
standard library only, and their output is read back once, for both, by :class:`ScriptEnd`. The bench and
burn workers' :func:`import_torch` and the parent side import envcheck where they need it (the one-line error,
envcheck.core.proc to start and end processes).
"""

from __future__ import annotations

import faulthandler
import json
import math
import os
import re
import selectors
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, NoReturn, Protocol, TypeVar

#: What starts every line a child writes for its parent.
MARK = "__envcheck__ "
#: The signal the parent sends for the stack of a hang, just before it kills the child.
DUMP_SIGNAL = getattr(signal, "SIGUSR1", None)


# -- the child's side ------------------------------------------------------------------------------------


def emit(**fields: Any) -> None:
    """One event for the parent."""
    # A leading newline keeps the mark at the start of a line even after a library's partial line.
    sys.stdout.write("\n" + MARK + json.dumps(fields) + "\n")
    sys.stdout.flush()


#: How long after its own time limit a child script ends itself (:func:`start_script`), should the parent not
#: have killed it. The parent always kills before the limit, so only a child whose envcheck died gets here.
ORPHAN_GRACE_S = 2


def error_text(exc: BaseException) -> str:
    """The exception as a person would quote it: ``OSError: libcudnn.so.9: cannot open ...`` (its whole message:
    a child's error is the finding, and the parent keeps it)."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def start_script(script: str, timeout_s: float) -> None:
    """What a child script run by path (the doctor's torch and JAX children) does first.

    Python puts the script's directory first on ``sys.path``, and that directory holds envcheck's own
    ``torch.py`` and ``jax.py`` probe modules: it is dropped before anything imports ``torch`` or ``jax``. Then
    :func:`start`'s last words, and the orphan alarm: the parent kills the child before ``timeout_s``, but a
    parent killed outright (SIGKILL, an OOM kill) runs no exit handler, and SIGALRM's default action, done by
    the kernel, then ends the child :data:`ORPHAN_GRACE_S` past its limit, so even a hang inside a C call
    holding the GIL cannot keep it (and the GPU) alive."""
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(script)):
        del sys.path[0]
    start()
    if timeout_s > 0 and hasattr(signal, "alarm"):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(math.ceil(timeout_s) + ORPHAN_GRACE_S)


def start(parent_pid: int | None = None) -> None:
    """What every child does first: a stack on fatal signals and on :data:`DUMP_SIGNAL`, and (given the
    parent's pid) die with the parent."""
    faulthandler.enable()
    if DUMP_SIGNAL is not None:
        faulthandler.register(DUMP_SIGNAL, all_threads=True, chain=False)
    if parent_pid is not None:
        die_with_parent(parent_pid)


def die_with_parent(parent_pid: int) -> None:
    """End this process when the parent dies, even by SIGKILL, which runs no handler in the parent: the
    kernel does it (``PR_SET_PDEATHSIG``, Linux); elsewhere a thread watches the parent's pid."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1  # <linux/prctl.h>
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent died before the prctl: nobody will signal us
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="envcheck-parent-watch", daemon=True).start()


def import_torch() -> Any | None:
    """Import torch between the ``import`` and ``describe`` stages (the step most likely to hang or crash
    is then named). Returns torch, or None after saying why it cannot be imported: the child then returns,
    the error is its device's."""
    from envcheck.core.model import error_line

    emit(event="stage", stage="import")
    started = time.monotonic()
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any exception: it is this device's error, said in one line
        emit(event="error", error=f"torch cannot be imported in the worker ({error_line(exc)})")
        return None
    emit(event="stage", stage="describe", import_s=round(time.monotonic() - started, 3))
    return torch


def exit_now(code: int) -> NoReturn:
    """End a child that has said everything: flush, then skip the interpreter's teardown (most of a second
    with torch loaded, and a CUDA context on a bad GPU can hang in it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def events(text: str) -> Iterator[dict[str, Any]]:
    """The events in a child's stdout, in order (unmarked lines and a line cut short by a crash skipped)."""
    for line in text.splitlines():
        event = _event(line)
        if event is not None:
            yield event


def _event(line: str) -> dict[str, Any] | None:
    if not line.startswith(MARK):
        return None
    try:
        event = json.loads(line[len(MARK) :])
    except ValueError:
        return None  # a line cut short by a crash
    return event if isinstance(event, dict) else None


# -- what a child's end says -------------------------------------------------------------------------------

_DUMP = re.compile(r"^(?P<header>.*)\(most recent call first\):\n(?P<frames>(?:[ \t]+.*\n?)*)", re.MULTILINE)
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<fn>\S+)')


def innermost_frame(stderr: str, *, thread_with: str | None = None) -> str | None:
    """Where faulthandler's last dump ("most recent call first") says the child was: its innermost Python
    frame outside the import machinery, as ``file:line in fn``.

    A dump lists every thread. By default the one that matters is the one faulthandler calls current (the
    thread that crashed, or took the signal); ``thread_with``: the thread whose stack mentions it (the
    child's main thread, for a hang, whichever thread took the signal)."""
    sections = [(m["header"], m["frames"]) for m in _DUMP.finditer(stderr)]
    if thread_with is not None:
        chosen = [frames for _, frames in sections if thread_with in frames]
    else:
        chosen = [frames for header, frames in sections if header.startswith("Current thread")]
    chosen = chosen or [frames for _, frames in sections]
    if not chosen:
        return None
    for line in chosen[-1].splitlines():
        match = _FRAME.match(line)
        if match and not match["file"].startswith("<frozen"):
            return f"{match['file']}:{match['line']} in {match['fn']}"
    return None


def signal_name(number: int, *, described: bool = False) -> str:
    """``SIGSEGV`` (``described``: ``SIGSEGV (Segmentation fault)``), or ``signal N`` for one without a name."""
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"signal {number}"
    description = signal.strsignal(sig) if described else None
    return f"{sig.name} ({description})" if description else sig.name


def last_line(stderr: str) -> str | None:
    """The last line a child wrote on stderr (a traceback's ends in the exception), at most 300 characters;
    a library's warning is never why a process ended, so warning lines are passed over."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "Warning" not in line]
    return lines[-1][:300] if lines else None


@dataclass(frozen=True)
class ScriptEnd:
    """A child script's output read back once it ended (the doctor's torch and JAX children, which run by path
    and say each step before it starts): its events merged in order, whether it said it was done, and how it
    ended. The probes build their own result from ``fields`` and, where the child did not finish, from
    :meth:`failure`, so that every such child's hang or crash is worded once.

    ``hung``: still running at its limit (then killed), or ended by ``SIGALRM``, which in these children is only
    ever their own timer (the orphan alarm, an extension's load bound)."""

    #: Every field the child emitted, the last value of each; ``done`` and ``status`` taken out.
    fields: dict[str, Any]
    done: bool
    status: str | None
    hung: bool
    returncode: int | None
    stderr: str
    #: The script's file name: for a hang, its main thread is the one whose stack starts in it.
    script: str

    @classmethod
    def read(cls, stdout: str, stderr: str, returncode: int | None, hung: bool, script: str) -> ScriptEnd:
        fields: dict[str, Any] = {}
        for event in events(stdout):
            fields.update(event)
        done = bool(fields.pop("done", False))
        status = fields.pop("status", None)
        hung = hung or returncode == -getattr(signal, "SIGALRM", -1)
        return cls(fields, done, status, hung, returncode, stderr, script)

    @property
    def finished(self) -> bool:
        """The child said everything: it is judged on what it said, however its process then ended."""
        return self.done and bool(self.status)

    def known(self, result: type, *taken: str) -> dict[str, Any]:
        """The fields that are ``result``'s (a dataclass), less those the caller sets itself."""
        names = set(getattr(result, "__dataclass_fields__", ())) - set(taken)
        return {k: v for k, v in self.fields.items() if k in names}

    def frame(self) -> str | None:
        """Where faulthandler's dump says the child was (:func:`innermost_frame`): for a crash the thread that
        crashed; for a hang the child's main thread, whichever thread took the signal."""
        return innermost_frame(self.stderr, thread_with=self.script if self.hung else None)

    @property
    def where(self) -> str | None:
        """:meth:`frame` where there is a dump to read (a hang, or a death by signal), else None."""
        return self.frame() if self.hung or (self.returncode or 0) < 0 else None

    def failure(self, stage: str, limit: float, by_deadline: bool) -> tuple[str, str]:
        """(status, error) of a child that did not finish, ``stage`` its last step in words: ``unfinished`` (still
        running at the doctor's deadline), ``timeout``, ``crashed`` or ``bad_output``."""
        code = self.returncode
        if self.hung and by_deadline:
            return "unfinished", (
                f"{stage} was still running when the doctor's deadline came, {limit:g} s after the child started"
            )
        if self.hung:
            return "timeout", f"{stage} did not finish within {limit:g} s"
        if code is not None and code < 0:
            return "crashed", f"the interpreter was killed by {signal_name(-code, described=True)} during {stage}"
        if code:
            return "crashed", f"the interpreter exited with status {code} during {stage}"
        return "bad_output", f"the child exited without reporting a result (last step: {stage})"


# -- the parent's side -------------------------------------------------------------------------------------

#: How long a child that has exited may keep its pipes open (a helper it started still holds them).
DRAIN_S = 1.0
#: The most the loop sleeps between looks at the deadlines.
TICK_S = 0.25
#: How much of a child's stderr is kept: enough for faulthandler's stack and a traceback's last line.
STDERR_KEEP = 16_000
#: Where the envcheck package lives: put on a worker's path, last, so that it imports this envcheck.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass
class Child:
    """One child process while it runs: the supervision's state, whatever the kind of child.

    It runs ``argv`` with ``env`` on top of the parent's environment (a kind of child that builds its command
    when it starts overrides :meth:`command`). Every marked line of its stdout is one event, handed to
    :meth:`on_event`. Until an event moves :attr:`deadline`, it has ``startup_s`` to say something."""

    name: str
    startup_s: float
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: A pipe to its stdin, for a child the parent talks to.
    stdin: bool = False
    #: Asked for its stack this long before the kill (None: killed at once, for a child with no faulthandler).
    last_words: signal.Signals | None = DUMP_SIGNAL
    process: Any = None  # subprocess.Popen[bytes]
    started: float = 0.0
    deadline: float = 0.0
    stage: str | None = None
    import_s: float | None = None
    error: str | None = None
    done: bool = False
    hung_after: float | None = None  # the deadline it went past
    dumped: float | None = None  # when it was asked for its stack
    #: When it is to be ended whatever it does (:meth:`end_by`), not being hung.
    ending: float | None = None
    #: Whether the supervisor killed it (past a deadline, at :attr:`ending`, or on Ctrl-C).
    killed: bool = False
    exited: float | None = None
    ended: float | None = None
    buffer: bytes = b""
    stderr_bytes: bytes = b""
    open_fds: set[int] = field(default_factory=set)

    def command(self, python: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) to start it with, given the interpreter and the parent's environment."""
        return list(self.argv), {**env, **self.env}

    def on_event(self, event: dict[str, Any], now: float) -> None:
        """What a kind of child does with one of its events (move :attr:`deadline` as it progresses)."""
        kind = event.get("event")
        if kind == "stage":
            self.stage = event.get("stage")
            self.import_s = event.get("import_s", self.import_s)
        elif kind == "error":
            self.error = str(event.get("error"))
        elif kind == "done":
            self.done = True

    def on_interrupt(self, now: float) -> bool:
        """Ctrl-C: True when it was asked to stop on its own (it is then supervised on, and a second Ctrl-C
        kills it); by default it is killed at once."""
        return False

    def end_by(self, when: float) -> None:
        """Kill it at ``when`` if it has not ended by then (the run is over; it is not hung)."""
        self.ending = when if self.ending is None else min(self.ending, when)

    def limit_s(self) -> float:
        """The silence it is allowed at this point (named when it goes past it)."""
        return self.startup_s

    def doing(self) -> str:
        """What it was doing, for "worker crashed with SIGSEGV during ..."."""
        return {
            None: "the start of the Python interpreter",
            "import": "import torch",
        }.get(self.stage, str(self.stage))

    def failure(self) -> str | None:
        """Why it did not finish its work, in one line; None when it did (``done``)."""
        return None if self.done and self.error is None else ended_words(self)

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode(errors="replace")

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    @property
    def duration_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started


class Job(Protocol):
    """What a worker's job offers its :class:`JobChild`: the device it is for and how it travels."""

    @property
    def device(self) -> Any: ...  # has a ``name``

    @property
    def visible(self) -> str: ...  # CUDA_VISIBLE_DEVICES for it

    @property
    def startup_s(self) -> float: ...

    def to_json(self) -> dict[str, Any]: ...


J = TypeVar("J", bound=Job)
C = TypeVar("C", bound="JobChild[Any]")


@dataclass
class JobChild(Child, Generic[J]):
    """A worker that runs one device's job: ``python -m module PARENT_PID JOB_JSON``, its device alone
    visible, this envcheck on its path."""

    module: str = ""
    job: J | None = None

    @classmethod
    def for_job(cls: type[C], job: J, module: str, **fields: Any) -> C:
        return cls(job.device.name, job.startup_s, module=module, job=job, **fields)

    @property
    def the_job(self) -> J:
        assert self.job is not None
        return self.job

    def command(self, python: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        full = {**env, "CUDA_VISIBLE_DEVICES": self.the_job.visible}
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), PACKAGE_ROOT]))
        return [python, "-m", self.module, str(os.getpid()), json.dumps(self.the_job.to_json())], full


def ended_words(w: Child) -> str:
    """How a child that did not finish ended, in one line: hung (and where), its own error, killed by a
    signal (SIGKILL: the OOM killer, in practice), a non-zero status (with its stderr's last line), or gone
    without a word."""
    if w.process is None:
        return w.error or "the worker could not be started"
    where = innermost_frame(w.stderr)
    at = f" (at {where})" if where else ""
    during = w.doing()
    code = w.process.returncode
    if w.hung_after is not None:
        return f"worker hung past its {w.hung_after:g} s deadline during {during}; killed{at}"
    if w.error is not None:
        return w.error
    if code is not None and code < 0:
        if -code == signal.SIGKILL:
            return (
                f"worker was killed (SIGKILL) during {during}, most often by the kernel's out-of-memory killer "
                "(`dmesg | grep -i oom` says)"
            )
        return f"worker crashed with {signal_name(-code)} during {during}{at}"
    if code:
        last = last_line(w.stderr)
        return f"worker exited with status {code} during {during}" + (f": {last}" if last else "")
    return f"worker exited without reporting {during}"


@dataclass(frozen=True)
class WorkerInfo:
    """How one device's worker went: for a report's ``workers`` and for debugging."""

    device: str
    pid: int | None
    #: Seconds after the run began that it was started.
    started_s: float
    wall_s: float
    #: Its exit status (negative: the signal that ended it); None if it could not be started.
    returncode: int | None
    #: How long importing torch took in it.
    import_s: float | None
    #: Why its device has error results (None: it did all its work).
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "pid": self.pid,
            "started_s": round(self.started_s, 3),
            "wall_s": round(self.wall_s, 3),
            "returncode": self.returncode,
            "import_s": self.import_s,
            "error": self.error,
        }


K = TypeVar("K", bound=Child)


def worker_infos(
    children: Sequence[K], began: float, error: Callable[[K], str | None] = lambda c: c.error
) -> list[WorkerInfo]:
    """A :class:`WorkerInfo` for each child that was started or failed to start; ``error``: why it failed."""
    return [
        WorkerInfo(
            c.name,
            c.process.pid if c.process is not None else None,
            c.started - began,
            c.duration_s,
            c.returncode,
            c.import_s,
            error(c),
        )
        for c in children
        if c.process is not None or c.error is not None
    ]


def supervise(
    children: Sequence[Child],
    *,
    env: Mapping[str, str] | None = None,
    serial: bool = False,
    python: str | None = None,
    finished: Callable[[Child], None] = lambda child: None,
    tick: Callable[[], None] = lambda: None,
) -> bool:
    """Run every child (one at a time with ``serial``) to its end, its deadline or Ctrl-C; ``finished`` is
    called as each one ends, ``tick`` at least every :data:`TICK_S` (a live display's clock). A child whose
    ``process`` is already running is adopted, not started again.

    Returns whether it was interrupted: a KeyboardInterrupt (Ctrl-C, or the first signal of an orderly stop,
    envcheck.core.stop) kills every child still running, except those :meth:`Child.on_interrupt` asked to
    stop on their own, which are supervised on to their own bound (a second KeyboardInterrupt kills them;
    an orderly stop raises only once); what they reported so far stays with them. The supervised run is
    a long command's run proper: when it is over, the orderly stop is settled (a later signal is noted,
    not raised, so that the report of what ran is written whole)."""
    base_env = dict(os.environ if env is None else env)
    python = python or sys.executable
    waiting = list(children)
    running: list[Child] = []
    selector = selectors.DefaultSelector()
    interrupted = False
    try:
        while True:
            try:
                _loop(waiting, running, selector, base_env, python, serial, finished, tick)
                break
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                now = time.monotonic()
                waiting.clear()
                polite = [w for w in running if w.process is not None and w.on_interrupt(now)]
                if not polite:
                    break
                for w in running:
                    if w not in polite and w.process is not None:
                        w.end_by(now)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        from envcheck.core import proc, stop

        try:
            stop.settle()
        except KeyboardInterrupt:  # a first signal landing just before the settle: the run was cut short
            interrupted = True
            stop.settle()

        for w in running:  # only after Ctrl-C (or a bug): stop them, keep what they finished
            if w.process is not None:
                w.killed = w.killed or w.process.poll() is None
                proc.kill_group(w.process)
                proc.wait(w.process, DRAIN_S)
            w.ended = w.ended or time.monotonic()
        selector.close()
    return interrupted


def _loop(
    waiting: list[Child],
    running: list[Child],
    selector: selectors.BaseSelector,
    base_env: dict[str, str],
    python: str,
    serial: bool,
    finished: Callable[[Child], None],
    tick: Callable[[], None],
) -> None:
    from envcheck.core import stop

    while waiting or running:
        while waiting and (not serial or not running):
            w = waiting.pop(0)
            running.append(w)  # before it starts: a Ctrl-C from here on stops it too
            _start(w, selector, base_env, python)
            if w.process is None:
                running.remove(w)
                finished(w)
        stop.check()  # a first signal that came while a worker was being started is raised here
        for key, _ in selector.select(_timeout(running)):
            _read(key.data, key.fd, selector)
        now = time.monotonic()
        for w in list(running):
            if _watch(w, now, selector):
                running.remove(w)
                finished(w)
        tick()


def _start(w: Child, selector: selectors.BaseSelector, base_env: dict[str, str], python: str) -> None:
    from envcheck.core import proc

    if w.process is None:
        argv, env = w.command(python, base_env)
        w.started = time.monotonic()
        try:
            w.process = proc.start(argv, env=env, stdin_pipe=w.stdin)
        except OSError as exc:
            w.error = f"the worker could not be started ({exc})"
            w.ended = time.monotonic()
            return
    w.deadline = w.started + w.startup_s
    assert w.process.stdout is not None and w.process.stderr is not None
    for pipe in (w.process.stdout, w.process.stderr):
        os.set_blocking(pipe.fileno(), False)
        selector.register(pipe.fileno(), selectors.EVENT_READ, w)
        w.open_fds.add(pipe.fileno())


def _timeout(running: list[Child]) -> float:
    if not running:
        return 0.02
    soonest = min(min(w.deadline, w.ending or w.deadline) for w in running)
    return max(0.02, min(TICK_S, soonest - time.monotonic()))


def _read(w: Child, fd: int, selector: selectors.BaseSelector) -> None:
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return
    except OSError:
        chunk = b""
    if not chunk:
        selector.unregister(fd)
        w.open_fds.discard(fd)
        return
    assert w.process is not None and w.process.stdout is not None
    if fd != w.process.stdout.fileno():
        w.stderr_bytes = (w.stderr_bytes + chunk)[-STDERR_KEEP:]
        return
    w.buffer += chunk
    *lines, w.buffer = w.buffer.split(b"\n")
    for line in lines:
        event = _event(line.decode(errors="replace"))
        if event is not None:
            w.on_event(event, time.monotonic())


def _watch(w: Child, now: float, selector: selectors.BaseSelector) -> bool:
    """Enforce the deadline and notice the end; True once the child is over and its pipes are read."""
    from envcheck.core import proc

    assert w.process is not None
    if w.exited is None and w.process.poll() is not None:
        w.exited = now
    if w.exited is not None:
        if w.open_fds and now - w.exited < DRAIN_S:
            return False
        for fd in list(w.open_fds):  # a helper it started still holds them: give up on its output
            selector.unregister(fd)
            w.open_fds.discard(fd)
        ended = proc.wait(w.process, DRAIN_S)  # kills what it left in its group; forgets it
        w.stderr_bytes = (w.stderr_bytes + ended.stderr.encode())[-STDERR_KEEP:]
        w.ended = now
        return True
    if w.ending is not None and now >= w.ending:
        w.killed = True
        proc.kill_group(w.process)
    elif w.dumped is None and now >= w.deadline:
        w.hung_after = w.limit_s()
        w.dumped = now
        w.killed = True
        if w.last_words is None:
            proc.kill_group(w.process)
        else:
            try:
                w.process.send_signal(w.last_words)
            except OSError:
                pass
    elif w.dumped is not None and now >= w.dumped + proc.LAST_WORDS_S:
        proc.kill_group(w.process)
    return False
