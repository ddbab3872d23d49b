"""Run: start one bench worker per job (envcheck.bench.worker), all at once or one after another
(``--serial``), stream their progress into one display, and merge their results in suite order.

The workers are supervised by envcheck.core.workers (the one supervisor of every child envcheck runs its
work in: a fresh interpreter in its own process group, killed with the whole group when envcheck exits, on
SIGTERM and on Ctrl-C, and dying with this process should it be SIGKILLed; stdout and stderr read through
one selector, so a worker's progress reaches the display the moment it happens). This module is only the
bench's adapter: what a bench worker's events mean and what it was doing when it failed.

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

import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envcheck.bench import execute
from envcheck.bench.case import BenchResult, Progress
from envcheck.bench.execute import Entry
from envcheck.bench.model import BENCHMARKS, SCRATCH
from envcheck.bench.plan import Job
from envcheck.core.model import Status
from envcheck.core.workers import JobChild, WorkerInfo, ended_words, supervise, worker_infos
from envcheck.devices.model import DeviceInfo


@dataclass(frozen=True)
class Workers:
    """What the workers produced: results device by device in suite order (not yet compared across
    devices: envcheck.bench.case.flag_slow_siblings), the devices as the workers described them, and each
    worker."""

    results: list[BenchResult]
    devices: list[DeviceInfo]
    workers: list[WorkerInfo]
    planned: int
    interrupted: bool = False


@dataclass
class _Worker(JobChild[Job]):
    """A bench worker: one job's cases, and what it has said of them."""

    progress: Progress = field(default_factory=Progress)
    #: (benchmark id, label, dtype) by suite position: the worker's own plan once it sent it.
    cases: dict[int, tuple[str, str, str | None]] = field(default_factory=dict)
    planned: bool = False
    results: dict[int, BenchResult] = field(default_factory=dict)
    running: int | None = None  # the position of the case in progress
    described: DeviceInfo | None = None

    @classmethod
    def of(cls, job: Job, progress: Progress) -> _Worker:
        return cls.for_job(
            job,
            "envcheck.bench.worker",
            progress=progress,
            cases={i: (bench_id, label, None) for i, (bench_id, label) in enumerate(job.cases)},
        )

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
            bench_id, label, _ = self.cases[self.running]
            self.deadline = now + job.case_limit(bench_id)
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
        job = self.the_job
        if self.running is not None:
            return job.case_limit(self.cases[self.running][0])
        return job.startup_s if not self.planned else job.case_s

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
) -> Workers:
    """Run every job in its own worker (one at a time with ``serial``) and merge what they report."""
    progress = progress or Progress()
    began = time.monotonic()
    everyone = [_Worker.of(job, progress) for job in jobs]
    # The run's scratch directory (SCRATCH) is removed here, after every worker has ended, so that what a
    # worker wrote there (torch.compile's caches) is gone even when the worker was killed.
    with tempfile.TemporaryDirectory(prefix="envcheck-bench-", ignore_cleanup_errors=True) as scratch:
        interrupted = supervise(
            everyone,
            env={**(os.environ if env is None else env), SCRATCH: scratch},
            serial=serial,
            python=python,
            finished=lambda w: _finish(w, progress),  # type: ignore[arg-type]
        )
    return _merge(everyone, began, interrupted)


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


def _merge(workers: list[_Worker], began: float, interrupted: bool) -> Workers:
    BENCHMARKS.load()
    results: list[BenchResult] = []
    for w in workers:
        entries = [Entry(i, bench_id, _best_of(bench_id)) for i, (bench_id, _, _) in w.cases.items()]
        results.extend(execute.merge(entries, w.results))
    return Workers(
        results,
        [w.described for w in workers if w.described is not None],
        worker_infos(workers, began),
        sum(len(w.cases) for w in workers),
        interrupted,
    )


def _best_of(bench_id: str) -> bool:
    spec = BENCHMARKS.get(bench_id)
    return bool(spec and spec.best_of)
