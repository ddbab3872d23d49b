"""``envcheck comm`` on its own: start this node's ranks as child processes and wait for rank 0's report.

The parent never imports torch: each rank is ``python -m envcheck.comm PLAN`` started through
envcheck.core.proc (a session of its own, killed with its whole group at the end, on timeout, and when
envcheck exits or is killed with SIGTERM), with the variables torchrun would set (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT=a free port). The ranks bound themselves (see
envcheck.comm.rank); the parent adds what only it can see: a rank whose process died, and with which
signal or exit code, and a rank 0 that stopped reporting progress altogether.

Ctrl-C: the ranks run in sessions of their own, so the terminal's SIGINT reaches only envcheck. It asks
rank 0 (a line on its stdin) to stop and report the steps every rank finished, waits a few seconds for
that report, then ends every rank; a second Ctrl-C ends them at once.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envcheck.comm import rank as rank_module
from envcheck.comm.plan import Plan
from envcheck.comm.world import LAUNCHED_BY_ENVCHECK
from envcheck.core import proc

#: After rank 0's report, how long the other ranks get to leave on their own before their groups are killed.
GRACE_S = 5.0
#: After Ctrl-C, how long rank 0 gets to send what finished before every rank is ended.
INTERRUPT_GRACE_S = 10.0
STDERR_TAIL_CHARS = 4000
#: Variables of an outer launcher that would make a child think it belongs to another world.
_FOREIGN = ("TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "SLURM_STEP_NUM_TASKS")


def free_port() -> int:
    """A TCP port free on the loopback now (the kernel picks it), for rank 0's rendezvous store."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    rank: int
    popen: subprocess.Popen[bytes]
    stderr: str = ""
    error: str | None = None
    returncode: int | None = None
    killed_by_us: bool = False
    readers: list[threading.Thread] = field(default_factory=list)


@dataclass(frozen=True)
class Launched:
    """Rank 0's raw report (None when it gave none) and what the parent saw of each rank's process."""

    raw: dict[str, Any] | None
    children: tuple[Child, ...]
    stalled_s: float | None = None
    interrupted: bool = False


def rank_env(env: Mapping[str, str], rank: int, nproc: int, port: int) -> dict[str, str]:
    child = {k: v for k, v in env.items() if k not in _FOREIGN}
    child.update(
        RANK=str(rank),
        WORLD_SIZE=str(nproc),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(nproc),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        PYTHONUNBUFFERED="1",
        **{LAUNCHED_BY_ENVCHECK: "1"},
    )
    return child


def stall_limit(plan: Plan) -> float:
    """How long rank 0 may go without a word before the parent gives up on the run: each of its steps
    is bounded by the timeout (twice, with the diagnosis after a failure), and its first word comes after
    importing torch, which on a cold network filesystem takes a minute."""
    return 2 * plan.timeout_s + 60.0


def launch(
    plan: Plan,
    nproc: int,
    *,
    env: Mapping[str, str] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Launched:
    """Start ``nproc`` ranks and wait for rank 0's report, the end of every rank, or rank 0's silence."""
    env = dict(os.environ if env is None else env)
    port = free_port()
    events: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
    children: list[Child] = []
    for r in range(nproc):
        popen = proc.start(
            [sys.executable, "-m", "envcheck.comm", plan.to_json()],
            env=rank_env(env, r, nproc, port),
            stdin_pipe=r == 0,  # rank 0 hears "stop" on it (Ctrl-C)
        )
        child = Child(r, popen)
        child.readers = [
            threading.Thread(target=_read_events, args=(child, events), daemon=True),
            threading.Thread(target=_read_stderr, args=(child,), daemon=True),
        ]
        for t in child.readers:
            t.start()
        children.append(child)
    state = _Waiting()
    try:
        try:
            _wait(state, events, children, plan, progress, until=None)
        except KeyboardInterrupt:
            state.interrupted = True
            _ask_to_stop(children[0])
            _wait(state, events, children, plan, progress, until=time.monotonic() + INTERRUPT_GRACE_S)
        finishing = (state.raw is not None or state.ended) and not state.interrupted
        _wind_down(children, grace_s=GRACE_S if finishing else 0.0)
    finally:
        for child in children:
            _reap(child)
    return Launched(state.raw, tuple(children), state.stalled, state.interrupted)


@dataclass
class _Waiting:
    raw: dict[str, Any] | None = None
    stalled: float | None = None
    ended: int = 0
    rank0_ended: bool = False
    interrupted: bool = False
    last_word: float = field(default_factory=time.monotonic)


def _wait(
    state: _Waiting,
    events: queue.Queue[tuple[int, dict[str, Any] | None]],
    children: list[Child],
    plan: Plan,
    progress: Callable[[dict[str, Any]], None] | None,
    *,
    until: float | None,
) -> None:
    """Take the ranks' events until rank 0's report, the end of every rank or of rank 0, rank 0's silence,
    or ``until`` (after Ctrl-C)."""
    while state.ended < len(children) and state.raw is None and not state.rank0_ended:
        if until is not None and time.monotonic() >= until:
            return
        try:
            rank, event = events.get(timeout=0.2)
        except queue.Empty:
            if time.monotonic() - state.last_word > stall_limit(plan):
                state.stalled = time.monotonic() - state.last_word
                return
            continue
        if event is None:  # this rank's stdout closed: it ended
            state.ended += 1
            state.rank0_ended = state.rank0_ended or rank == 0
            continue
        if rank == 0:
            state.last_word = time.monotonic()
        if event.get("event") == "report" and rank == 0:
            state.raw = event["report"]
        elif event.get("event") == "error":
            children[rank].error = str(event.get("error"))
        elif rank == 0 and progress is not None:
            progress(event)


def _ask_to_stop(child: Child) -> None:
    """Ask rank 0 to stop early and report what finished (a closed pipe: it has ended already)."""
    stdin = child.popen.stdin
    if stdin is None:
        return
    try:
        stdin.write(rank_module.STOP_LINE)
        stdin.flush()
    except OSError:
        pass


def _read_events(child: Child, events: queue.Queue[tuple[int, dict[str, Any] | None]]) -> None:
    assert child.popen.stdout is not None
    for line in iter(child.popen.stdout.readline, b""):
        text = line.decode(errors="replace")
        if text.startswith(rank_module.MARK):
            try:
                events.put((child.rank, json.loads(text[len(rank_module.MARK) :])))
            except json.JSONDecodeError:
                pass
    events.put((child.rank, None))


def _read_stderr(child: Child) -> None:
    assert child.popen.stderr is not None
    for line in iter(child.popen.stderr.readline, b""):
        child.stderr = (child.stderr + line.decode(errors="replace"))[-STDERR_TAIL_CHARS:]


def _wind_down(children: list[Child], *, grace_s: float) -> None:
    """Give the ranks still running ``grace_s`` to leave (they do, once rank 0 is done), then kill."""
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.killed_by_us = True
            proc.kill_group(child.popen)


def _reap(child: Child) -> None:
    """Kill the rank's group (anything it left behind), collect its exit status, and forget it."""
    if child.popen.poll() is None:
        child.killed_by_us = True
    proc.kill_group(child.popen)
    for t in child.readers:
        t.join(timeout=proc.DRAIN_S)
    proc.wait(child.popen, proc.DRAIN_S)
    child.returncode = child.popen.returncode


def exit_words(child: Child) -> str | None:
    """How a rank's process ended, when that says something about the rank (None when it ended well or
    only because the run was over: rank 0 gave up, its store went, or the parent ended it)."""
    code = child.returncode
    if code is None or code in (0, rank_module.EXIT_ABORTED, rank_module.EXIT_LOST) or child.killed_by_us:
        return None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"its process was killed by {name}"
    if code == rank_module.EXIT_STUCK:
        return "its process stopped itself: a step made no progress within the timeout"
    return f"its process exited with code {code}"


def last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip() and "Warning" not in line]
    return lines[-1][:300] if lines else None
