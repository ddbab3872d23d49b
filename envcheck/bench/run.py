"""Run: start one bench worker per job (envcheck.bench.worker), all at once or one after another
(``--serial``), stream their progress into one display, and merge their results in suite order.

Each worker is started through envcheck.core.proc: a fresh interpreter (spawned, not forked: nothing of
this process, least of all a CUDA state, is inherited), in its own process group, killed with the whole
group when envcheck exits, on SIGTERM, and on Ctrl-C; the worker also dies with this process should it
be SIGKILLed (see envcheck.bench.worker). Its stdout and stderr are read here, in this thread, through
one selector, so a worker's progress reaches the display the moment it happens and no pipe ever fills.

A worker that fails becomes that device's error results, and only that device's:

* silent past its deadline (envcheck.bench.plan: startup, then each case) — asked for its stack
  (SIGUSR1, answered by faulthandler), then its group is killed: "worker hung past its 65 s deadline
  during matmul.bf16 bf16 8192x8192x8192; killed";
* killed by a signal it did not get from us — SIGKILL is, in practice, the kernel's OOM killer; any
  other (SIGSEGV, SIGABRT, SIGBUS) is a crash, with the Python line faulthandler printed;
* exited without reporting everything, or said it cannot use its device at all.

The case it was in gets that reason, the cases it never reached get "not run: ..." (both ``crash``),
and every result it reported before is kept. Ctrl-C kills every worker and keeps what finished, as a
run stopped early (no error results are made up for it).

The supervision itself (start, read, deadlines, last words, the kill, how a worker ended) knows nothing of
benchmarks: :class:`Child` is one worker process of any kind and :func:`supervise` runs a list of them, so
``envcheck burn``'s workers (envcheck.burn) are supervised by the same code. A kind of worker subclasses
:class:`Child` with what its events mean and what it was doing when it failed.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck.bench import execute, worker
from envcheck.bench.case import BenchResult, Progress
from envcheck.bench.execute import Entry
from envcheck.bench.model import BENCHMARKS
from envcheck.bench.plan import Job
from envcheck.core import proc
from envcheck.core.model import Status
from envcheck.devices.model import DeviceInfo
from envcheck.probes.visible import VISIBLE

#: How long a worker that has exited may keep its pipes open (a helper it started still holds them).
DRAIN_S = 1.0
#: The most the loop sleeps between looks at the deadlines.
TICK_S = 0.25
#: How much of a worker's stderr is kept: enough for faulthandler's stack and a traceback's last line.
STDERR_KEEP = 16_000
#: Where the envcheck package lives: put on the worker's path, last, so that it imports this envcheck.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class WorkerInfo:
    """How one device's worker went: for the report (envcheck.bench/1 ``workers``) and for debugging."""

    device: str
    pid: int | None
    #: Seconds after the fan-out began that it was started.
    started_s: float
    wall_s: float
    #: Its exit status (negative: the signal that ended it); None if it could not be started.
    returncode: int | None
    #: How long importing torch took in it.
    import_s: float | None
    #: Why its device has error results (None: it reported every case).
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


@dataclass(frozen=True)
class FanOut:
    """What the workers produced: results device by device in suite order (not yet compared across
    devices: runner.flag_slow_siblings), the devices as the workers described them, and each worker."""

    results: list[BenchResult]
    devices: list[DeviceInfo]
    workers: list[WorkerInfo]
    planned: int
    interrupted: bool = False


@dataclass
class Child:
    """One worker process while it runs: the supervision's state, whatever the kind of worker.

    ``module`` runs as ``python -m module PARENT_PID PAYLOAD_JSON`` under ``CUDA_VISIBLE_DEVICES=visible``;
    every line of its stdout that starts with ``mark`` is one JSON event, handed to :meth:`on_event`.
    Until its first event moves :attr:`deadline`, it has ``startup_s`` to say something."""

    name: str
    module: str
    payload: dict[str, Any]
    visible: str
    startup_s: float
    mark: str = worker.MARK
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    deadline: float = 0.0
    stage: str | None = None
    import_s: float | None = None
    error: str | None = None
    done: bool = False
    hung_after: float | None = None  # the deadline it went past
    dumped: float | None = None  # when it was asked for its stack
    exited: float | None = None
    ended: float | None = None
    buffer: bytes = b""
    stderr: bytes = b""
    open_fds: set[int] = field(default_factory=set)

    def on_event(self, event: dict[str, Any], now: float) -> None:
        """What a kind of worker does with one of its events (move :attr:`deadline` as it progresses)."""
        kind = event.get("event")
        if kind == "stage":
            self.stage = event.get("stage")
            self.import_s = event.get("import_s", self.import_s)
        elif kind == "error":
            self.error = str(event.get("error"))
        elif kind == "done":
            self.done = True

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


def ended_words(w: Child) -> str:
    """How a worker that did not finish ended, in one line: hung (and where), its own error, killed by a
    signal (SIGKILL: the OOM killer, in practice), a non-zero status (with its stderr's last line), or gone
    without a word."""
    if w.process is None:
        return w.error or "the worker could not be started"
    where = _where(w.stderr.decode(errors="replace"))
    at = f" (at {where})" if where else ""
    during = w.doing()
    code = w.process.returncode
    if w.hung_after is not None:
        return f"worker hung past its {w.hung_after:g} s deadline during {during}; killed{at}"
    if w.error is not None:
        return w.error
    if code is not None and code < 0:
        name = _signal_name(-code)
        if -code == signal.SIGKILL:
            return (
                f"worker was killed (SIGKILL) during {during}, most often by the kernel's out-of-memory killer "
                "(`dmesg | grep -i oom` says)"
            )
        return f"worker crashed with {name} during {during}{at}"
    if code:
        last = _last_line(w.stderr.decode(errors="replace"))
        return f"worker exited with status {code} during {during}" + (f": {last}" if last else "")
    return f"worker exited without reporting {during}"


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
    called as each one ends, ``tick`` at least every :data:`TICK_S` (a live display's clock). Returns
    whether it was interrupted: a KeyboardInterrupt (Ctrl-C, or a signal handler that raises one) kills
    every child still running, and what they reported so far stays with them."""
    base_env = dict(os.environ if env is None else env)
    python = python or sys.executable
    waiting = list(children)
    running: list[Child] = []
    selector = selectors.DefaultSelector()
    interrupted = False
    try:
        while waiting or running:
            while waiting and (not serial or not running):
                w = waiting.pop(0)
                running.append(w)  # before it starts: a Ctrl-C from here on stops it too
                _start(w, selector, base_env, python)
                if w.process is None:
                    running.remove(w)
                    finished(w)
            for key, _ in selector.select(_timeout(running)):
                _read(key.data, key.fd, selector)
            now = time.monotonic()
            for w in list(running):
                if _watch(w, now, selector):
                    running.remove(w)
                    finished(w)
            tick()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for w in running:  # only after Ctrl-C (or a bug): stop them, keep what they finished
            if w.process is not None:
                proc.kill_group(w.process)
                proc.wait(w.process, DRAIN_S)
            w.ended = w.ended or time.monotonic()
        selector.close()
    return interrupted


@dataclass
class _Worker(Child):
    """A bench worker: one job's cases, and what it has said of them."""

    job: Job | None = None
    progress: Progress = field(default_factory=Progress)
    #: (benchmark id, label, dtype) by suite position: the worker's own plan once it sent it.
    cases: dict[int, tuple[str, str, str | None]] = field(default_factory=dict)
    planned: bool = False
    results: dict[int, BenchResult] = field(default_factory=dict)
    running: int | None = None  # the position of the case in progress
    described: DeviceInfo | None = None

    @classmethod
    def of(cls, job: Job, progress: Progress) -> _Worker:
        return cls(
            job.device.name,
            "envcheck.bench.worker",
            job.to_json(),
            job.visible,
            job.startup_s,
            job=job,
            progress=progress,
            cases={i: (bench_id, label, None) for i, (bench_id, label) in enumerate(job.cases)},
        )

    @property
    def the_job(self) -> Job:
        assert self.job is not None
        return self.job

    def on_event(self, event: dict[str, Any], now: float) -> None:
        super().on_event(event, now)
        kind = event.get("event")
        job = self.the_job
        if kind == "device":
            self.described = DeviceInfo.from_json(event["device"])
        elif kind == "plan":
            self.cases = {i: (bench_id, label, dtype) for i, (bench_id, label, dtype) in enumerate(event["cases"])}
            self.planned = True
            self.deadline = now + job.case_s
        elif kind == "started":
            self.running = int(event["position"])
            self.deadline = now + job.case_s
            bench_id, label, _ = self.cases[self.running]
            self.progress.started(len(self.results), len(self.cases), bench_id, label, job.device.name)
        elif kind == "finished":
            result = BenchResult.from_json(event["result"])
            self.results[int(event["position"])] = result
            self.running = None
            self.deadline = now + job.case_s
            self.progress.finished(result)
        elif kind == "done":
            self.deadline = now + job.case_s

    def limit_s(self) -> float:
        return self.the_job.startup_s if self.running is None and not self.planned else self.the_job.case_s

    def doing(self) -> str:
        if self.running is not None:
            bench_id, label, _ = self.cases[self.running]
            return f"{bench_id} {label}"
        if self.planned:
            return "the step between two cases" if self.results else "the start of its first case"
        device = self.the_job.device
        return {
            "describe": f"the start of CUDA on {device.name}" if device.is_cuda else "describing the CPU",
            "plan": "planning its cases",
        }.get(self.stage or "", super().doing())

    def failure(self) -> str | None:
        missing = any(position not in self.results for position in self.cases)
        if not missing and self.done:
            return None
        return ended_words(self)


def run(
    jobs: Sequence[Job],
    *,
    progress: Progress | None = None,
    env: Mapping[str, str] | None = None,
    serial: bool = False,
    python: str | None = None,
) -> FanOut:
    """Run every job in its own worker (one at a time with ``serial``) and merge what they report."""
    progress = progress or Progress()
    began = time.monotonic()
    everyone = [_Worker.of(job, progress) for job in jobs]
    interrupted = supervise(
        everyone,
        env=env,
        serial=serial,
        python=python,
        finished=lambda w: _finish(w, progress),  # type: ignore[arg-type]
    )
    return _merge(everyone, began, interrupted)


def _start(w: Child, selector: selectors.BaseSelector, base_env: dict[str, str], python: str) -> None:
    env = {**base_env, VISIBLE: w.visible}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [base_env.get("PYTHONPATH"), PACKAGE_ROOT]))
    argv = [python, "-m", w.module, str(os.getpid()), json.dumps(w.payload)]
    w.started = time.monotonic()
    w.deadline = w.started + w.startup_s
    try:
        w.process = proc.start(argv, env=env)
    except OSError as exc:
        w.error = f"the worker could not be started ({exc})"
        w.ended = time.monotonic()
        return
    assert w.process.stdout is not None and w.process.stderr is not None
    for pipe in (w.process.stdout, w.process.stderr):
        os.set_blocking(pipe.fileno(), False)
        selector.register(pipe.fileno(), selectors.EVENT_READ, w)
        w.open_fds.add(pipe.fileno())


def _timeout(running: list[Child]) -> float:
    if not running:
        return 0.02
    soonest = min(w.deadline for w in running)
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
        w.stderr = (w.stderr + chunk)[-STDERR_KEEP:]
        return
    w.buffer += chunk
    *lines, w.buffer = w.buffer.split(b"\n")
    for line in lines:
        text = line.decode(errors="replace")
        if text.startswith(w.mark):
            try:
                event = json.loads(text[len(w.mark) :])
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(event, dict):
                w.on_event(event, time.monotonic())


def _watch(w: Child, now: float, selector: selectors.BaseSelector) -> bool:
    """Enforce the deadline and notice the end; True once the worker is over and its pipes are read."""
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
        w.stderr = (w.stderr + ended.stderr.encode())[-STDERR_KEEP:]
        w.ended = now
        return True
    if w.dumped is None and now >= w.deadline:
        w.hung_after = w.limit_s()
        w.dumped = now
        if worker.DUMP_SIGNAL is not None:
            try:
                w.process.send_signal(worker.DUMP_SIGNAL)
            except OSError:
                pass
    elif w.dumped is not None and now >= w.dumped + proc.LAST_WORDS_S:
        proc.kill_group(w.process)
    return False


def _finish(w: _Worker, progress: Progress) -> None:
    """Turn what a failed worker did not report into its device's error results (and show them)."""
    reason = w.failure()
    if reason is None:
        return
    w.error = reason
    for position in sorted(w.cases):
        if position in w.results:
            continue
        bench_id, label, dtype = w.cases[position]
        words = reason if position == w.running or (w.running is None and not w.results) else f"not run: {reason}"
        result = BenchResult(
            bench_id,
            label,
            label,
            w.the_job.device.name,
            (w.described or w.the_job.device).model,
            dtype,
            Status.CRASH,
            reason=words,
        )
        w.results[position] = result
        progress.finished(result)


def _where(stderr: str) -> str | None:
    """The innermost Python frame of faulthandler's last dump ("File "x", line N in fn" → x:N in fn),
    from the thread it calls current (the one that crashed, or took SIGUSR1: the main thread)."""
    import re

    sections = re.findall(r"^(.*)\(most recent call first\):\n((?:[ \t]+.*\n?)*)", stderr, re.MULTILINE)
    chosen = [frames for header, frames in sections if header.startswith("Current thread")] or [
        frames for _, frames in sections
    ]
    if not chosen:
        return None
    for line in chosen[-1].splitlines():
        match = re.match(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<fn>\S+)', line)
        if match and not match["file"].startswith("<frozen"):
            return f"{match['file']}:{match['line']} in {match['fn']}"
    return None


def _last_line(stderr: str) -> str | None:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:300] if lines else None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _merge(workers: list[_Worker], began: float, interrupted: bool) -> FanOut:
    BENCHMARKS.load()
    results: list[BenchResult] = []
    infos: list[WorkerInfo] = []
    for w in workers:
        entries = [Entry(i, bench_id, _best_of(bench_id)) for i, (bench_id, _, _) in w.cases.items()]
        results.extend(execute.merge(entries, w.results))
        if w.process is not None or w.error is not None:
            infos.append(
                WorkerInfo(
                    w.name,
                    w.process.pid if w.process is not None else None,
                    w.started - began,
                    (w.ended or time.monotonic()) - w.started,
                    w.process.returncode if w.process is not None else None,
                    w.import_s,
                    w.error,
                )
            )
    return FanOut(
        results,
        [w.described for w in workers if w.described is not None],
        infos,
        sum(len(w.cases) for w in workers),
        interrupted,
    )


def _best_of(bench_id: str) -> bool:
    spec = BENCHMARKS.get(bench_id)
    return bool(spec and spec.best_of)
