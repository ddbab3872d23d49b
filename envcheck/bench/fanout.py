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
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck.bench import execute, worker
from envcheck.bench.execute import Entry
from envcheck.bench.plan import Job
from envcheck.bench.registry import BENCHMARKS, DeviceInfo
from envcheck.bench.runner import BenchResult, Progress
from envcheck.checks.visible import VISIBLE
from envcheck.core import proc
from envcheck.core.model import Status

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
class _Worker:
    """One job's worker while it runs: its process, its stream, and what it has said."""

    job: Job
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    deadline: float = 0.0
    #: (benchmark id, label, dtype) by suite position: the worker's own plan once it sent it.
    cases: dict[int, tuple[str, str, str | None]] = field(default_factory=dict)
    planned: bool = False
    results: dict[int, BenchResult] = field(default_factory=dict)
    running: int | None = None  # the position of the case in progress
    stage: str | None = None
    described: DeviceInfo | None = None
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

    def __post_init__(self) -> None:
        self.cases = {i: (bench_id, label, None) for i, (bench_id, label) in enumerate(self.job.cases)}


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
    base_env = dict(os.environ if env is None else env)
    python = python or sys.executable
    began = time.monotonic()
    waiting = [_Worker(job) for job in jobs]
    everyone = list(waiting)
    running: list[_Worker] = []
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
                    _finish(w, progress)
            for key, _ in selector.select(_timeout(running)):
                _read(key.data, key.fd, selector, progress)
            now = time.monotonic()
            for w in list(running):
                if _watch(w, now, selector):
                    running.remove(w)
                    _finish(w, progress)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for w in running:  # only after Ctrl-C (or a bug): stop them, keep what they finished
            if w.process is not None:
                proc.kill_group(w.process)
                proc.wait(w.process, DRAIN_S)
            w.ended = w.ended or time.monotonic()
        selector.close()
    return _merge(everyone, began, interrupted)


def _start(w: _Worker, selector: selectors.BaseSelector, base_env: dict[str, str], python: str) -> None:
    env = {**base_env, VISIBLE: w.job.visible}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [base_env.get("PYTHONPATH"), PACKAGE_ROOT]))
    argv = [python, "-m", "envcheck.bench.worker", str(os.getpid()), json.dumps(w.job.to_json())]
    w.started = time.monotonic()
    w.deadline = w.started + w.job.startup_s
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


def _timeout(running: list[_Worker]) -> float:
    if not running:
        return 0.02
    soonest = min(w.deadline for w in running)
    return max(0.02, min(TICK_S, soonest - time.monotonic()))


def _read(w: _Worker, fd: int, selector: selectors.BaseSelector, progress: Progress) -> None:
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
        if text.startswith(worker.MARK):
            try:
                event = json.loads(text[len(worker.MARK) :])
            except ValueError:
                continue  # a line cut short by a crash
            _on_event(w, event, progress)


def _on_event(w: _Worker, event: dict[str, Any], progress: Progress) -> None:
    kind = event.get("event")
    now = time.monotonic()
    if kind == "stage":
        w.stage = event.get("stage")
        w.import_s = event.get("import_s", w.import_s)
    elif kind == "device":
        w.described = DeviceInfo.from_json(event["device"])
    elif kind == "plan":
        w.cases = {i: (bench_id, label, dtype) for i, (bench_id, label, dtype) in enumerate(event["cases"])}
        w.planned = True
        w.deadline = now + w.job.case_s
    elif kind == "started":
        w.running = int(event["position"])
        w.deadline = now + w.job.case_s
        bench_id, label, _ = w.cases[w.running]
        progress.started(len(w.results), len(w.cases), bench_id, label, w.job.device.name)
    elif kind == "finished":
        result = BenchResult.from_json(event["result"])
        w.results[int(event["position"])] = result
        w.running = None
        w.deadline = now + w.job.case_s
        progress.finished(result)
    elif kind == "error":
        w.error = str(event.get("error"))
    elif kind == "done":
        w.done = True
        w.deadline = now + w.job.case_s


def _watch(w: _Worker, now: float, selector: selectors.BaseSelector) -> bool:
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
        w.hung_after = w.job.startup_s if w.running is None and not w.planned else w.job.case_s
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
    reason = _failure(w)
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
            w.job.device.name,
            (w.described or w.job.device).model,
            dtype,
            Status.CRASH,
            reason=words,
        )
        w.results[position] = result
        progress.finished(result)


def _failure(w: _Worker) -> str | None:
    """Why the worker did not report every case, in one line; None when it did."""
    if w.process is None:
        return w.error
    missing = any(position not in w.results for position in w.cases)
    if not missing and w.done:
        return None
    where = _where(w.stderr.decode(errors="replace"))
    at = f" (at {where})" if where else ""
    during = _doing(w)
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


def _doing(w: _Worker) -> str:
    if w.running is not None:
        bench_id, label, _ = w.cases[w.running]
        return f"{bench_id} {label}"
    if w.planned:
        return "the step between two cases" if w.results else "the start of its first case"
    return {
        None: "the start of the Python interpreter",
        "import": "import torch",
        "describe": f"the start of CUDA on {w.job.device.name}" if w.job.device.is_cuda else "describing the CPU",
        "plan": "planning its cases",
    }.get(w.stage, str(w.stage))


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
                    w.job.device.name,
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
