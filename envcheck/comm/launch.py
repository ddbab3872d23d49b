"""``envcheck comm`` on its own: start this node's ranks as child processes and wait for rank 0's report.

The parent never imports torch: each rank is ``python -m envcheck.comm PLAN`` supervised by
envcheck.core.workers (a session of its own, killed with its whole group at the end, past its deadline,
and when envcheck exits or is killed with SIGTERM), with the variables torchrun would set (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT=a free port). The ranks bound themselves (see
envcheck.comm.rank); the parent adds what only it can see: a rank whose process died, and with which
signal or exit code, and a rank 0 that stopped reporting progress altogether.

Ctrl-C: the ranks run in sessions of their own, so the terminal's SIGINT reaches only envcheck. It asks
rank 0 (a line on its stdin) to stop and report the steps every rank finished, waits a few seconds for
that report, then ends every rank; a second Ctrl-C ends them at once.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envcheck.comm import rank as rank_module
from envcheck.comm.plan import Plan
from envcheck.comm.world import LAUNCHED_BY_ENVCHECK
from envcheck.core.workers import Child, signal_name, supervise

#: After rank 0's report, how long the other ranks get to leave on their own before their groups are killed.
GRACE_S = 5.0
#: After Ctrl-C, how long rank 0 gets to send what finished before every rank is ended.
INTERRUPT_GRACE_S = 10.0
#: Variables of an outer launcher that would make a child think it belongs to another world.
_FOREIGN = ("TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "SLURM_STEP_NUM_TASKS")


def free_port() -> int:
    """A TCP port free on the loopback now (the kernel picks it), for rank 0's rendezvous store."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Launched:
    """Rank 0's raw report (None when it gave none) and what the parent saw of each rank's process."""

    raw: dict[str, Any] | None
    children: tuple[RankChild, ...]
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


@dataclass
class _Run:
    """What the ranks said as a whole: rank 0's report, when the run was over, and the ranks."""

    plan: Plan
    progress: Callable[[dict[str, Any]], None] | None
    children: list[RankChild] = field(default_factory=list)
    raw: dict[str, Any] | None = None
    interrupted: bool = False
    stalled: float | None = None

    def over(self, now: float, grace_s: float) -> None:
        """Rank 0 is done (or gone): the ranks get ``grace_s`` to leave (they do, once rank 0 is done)."""
        grace = 0.0 if self.interrupted else grace_s
        for child in self.children:
            child.end_by(now + grace)


@dataclass
class RankChild(Child):
    """One rank as the launcher sees it: ``python -m envcheck.comm PLAN`` with torchrun's variables. Only
    rank 0 has a deadline: each of its words moves it (:func:`stall_limit`); the others are bounded by
    their own watchdogs and end with the run."""

    rank: int = 0
    run: _Run | None = None
    port: int = 0
    last_word: float = 0.0

    @classmethod
    def of(cls, run: _Run, rank: int, nproc: int, port: int) -> RankChild:
        return cls(
            f"rank {rank}",
            stall_limit(run.plan) if rank == 0 else math.inf,
            [sys.executable, "-m", "envcheck.comm", run.plan.to_json()],
            stdin=rank == 0,  # rank 0 hears "stop" on it (Ctrl-C)
            last_words=None,  # a rank has no stack to give: the run's problems are in rank 0's report
            rank=rank,
            run=run,
            port=port,
        )

    @property
    def the_run(self) -> _Run:
        assert self.run is not None
        return self.run

    def command(self, python: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        self.last_word = time.monotonic()
        return list(self.argv), rank_env(env, self.rank, len(self.the_run.children), self.port)

    def on_event(self, event: dict[str, Any], now: float) -> None:
        run = self.the_run
        if self.rank == 0:
            self.last_word = now
            self.deadline = now + self.startup_s
        if event.get("event") == "report" and self.rank == 0:
            run.raw = event["report"]
            run.over(now, GRACE_S)
        elif event.get("event") == "error":
            self.error = str(event.get("error"))
        elif self.rank == 0 and run.progress is not None:
            run.progress(event)

    def on_interrupt(self, now: float) -> bool:
        """Ctrl-C: rank 0 is asked to stop early and report the steps every rank finished (a closed pipe: it
        has ended already); every rank gets :data:`INTERRUPT_GRACE_S` for that."""
        from envcheck.core import stop

        self.the_run.interrupted = True
        stdin = self.process.stdin if self.rank == 0 else None
        if stdin is not None:
            try:
                stdin.write(rank_module.stop_line(stop.stopped_words(stop.stopped_by(True))))
                stdin.flush()
            except OSError:
                pass
        self.end_by(now + INTERRUPT_GRACE_S)
        return True

    def ended_run(self) -> None:
        """Rank 0 ended (with or without a report), or went silent past its deadline and was killed."""
        run = self.the_run
        if self.hung_after is not None and self.dumped is not None:
            run.stalled = self.dumped - self.last_word
            run.over(self.dumped, 0.0)
        else:
            run.over(time.monotonic(), GRACE_S)


def launch(
    plan: Plan,
    nproc: int,
    *,
    env: Mapping[str, str] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Launched:
    """Start ``nproc`` ranks and wait for rank 0's report, the end of every rank, or rank 0's silence."""
    run = _Run(plan, progress)
    port = free_port()
    run.children = [RankChild.of(run, r, nproc, port) for r in range(nproc)]
    interrupted = supervise(
        run.children,
        env=dict(os.environ if env is None else env),
        finished=lambda child: child.ended_run() if child.rank == 0 else None,  # type: ignore[attr-defined]
    )
    return Launched(run.raw, tuple(run.children), run.stalled, interrupted or run.interrupted)


def exit_words(child: RankChild) -> str | None:
    """How a rank's process ended, when that says something about the rank (None when it ended well or
    only because the run was over: rank 0 gave up, its store went, or the parent ended it)."""
    code = child.returncode
    if code is None or code in (0, rank_module.EXIT_ABORTED, rank_module.EXIT_LOST) or child.killed:
        return None
    if code < 0:
        return f"its process was killed by {signal_name(-code)}"
    if code == rank_module.EXIT_STUCK:
        return "its process stopped itself: a step made no progress within the timeout"
    return f"its process exited with code {code}"
