"""Execute: one device's job, in this process. A bench worker (envcheck.bench.worker) runs
:func:`run_job` for its one device; tests call the same function in their own process.

The parent planned the job (envcheck.bench.plan): which cases, in which order. A plan's ``build`` is a
closure and cannot travel, so :func:`ready_cases` asks each benchmark's plan function again for the
builds, over the description the parent planned from (pinned: the torch device is this process's), and
takes the parent's cases from them by label. The answer is the parent's plan by construction; nothing is
decided again here.

torch's process-wide flags. TF32 (``torch.backends.cuda.matmul.allow_tf32`` and its cuDNN twin) and
cuDNN's benchmark mode belong to the whole process, so they are set here, by the process that runs the
cases, and never flipped back and forth around each case. Only the ``tf32`` cases want TF32 on; every
other case runs with it off (an "fp32" figure is true fp32; bf16, fp16 and fp8 math ignores the flag).
So a device's cases run in two groups (:func:`flag_groups`): first every case with TF32 off, then the
``tf32`` cases with it on, and the flag changes at most once in a worker's life. The alternative, a
second worker for the same GPU after the first, would pay another torch import and CUDA start (seconds,
and the memory of a second context) to save nothing: every result carries its place in the suite, and
:func:`merge` puts the report back in suite order. cuDNN's benchmark mode is on for every case.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from envcheck.bench import common
from envcheck.bench.case import SWEEP_FRACTION, BenchResult, best_of, plans_for, watched
from envcheck.bench.harness import Budget
from envcheck.bench.model import BENCHMARKS, BenchSpec, Plan, Workload
from envcheck.bench.peaks import Peak
from envcheck.bench.plan import Job
from envcheck.devices.model import DeviceInfo
from envcheck.probes import contention


@dataclass(frozen=True)
class Case:
    """A planned case and its place in the suite (the report's order, whatever order it runs in)."""

    position: int
    spec: BenchSpec
    plan: Plan

    @property
    def tf32(self) -> bool:
        """Whether it computes with TF32 on; a case that is skipped computes nothing."""
        return self.plan.dtype == "tf32" and self.plan.build is not None and not self.plan.skip


def ready_cases(job: Job, specs: Sequence[BenchSpec]) -> list[Case]:
    """The parent's cases of ``job`` at their suite positions, with the builds of its benchmarks' plans over
    the parent's description (:meth:`DeviceInfo.pinned`: the sizes the parent planned, on this process's
    CUDA device). A case the plan function no longer offers (a benchmark whose plans are not a function of
    the description: a bug) becomes that case's error, not a silently shorter suite."""
    dev = job.device.pinned()
    by_id = {spec.id: spec for spec in specs}
    offered = {(spec.id, plan.label): plan for spec in specs for plan in plans_for(spec, dev, job.options)}
    cases = []
    for position, (bench_id, label) in enumerate(job.cases):
        plan = offered.get((bench_id, label)) or Plan(label, None, _not_offered(bench_id, label))
        cases.append(Case(position, by_id[bench_id], plan))
    return cases


def _not_offered(bench_id: str, label: str) -> Callable[[float], Workload]:
    def build(scale: float) -> Workload:
        raise RuntimeError(f"{bench_id} no longer offers the case {label!r} its parent planned (a bug in envcheck)")

    return build


def run_job(
    job: Job,
    dev: DeviceInfo,
    specs: Sequence[BenchSpec] | None = None,
    *,
    cpus: contention.Cpus | None = None,
    ready: Callable[[list[Case]], None] = lambda cases: None,
    started: Callable[[Case, int, int], None] = lambda case, i, n: None,
    finished: Callable[[Case, BenchResult], None] = lambda case, result: None,
) -> tuple[list[Case], dict[int, BenchResult]]:
    """Run ``job`` on ``dev`` (the parent's description with what this process measured, pinned): its cases
    (:func:`ready_cases`; ``ready`` is told them before the first runs) and their results by position.
    ``specs``: the job's benchmarks (None: the registered ones its ids name)."""
    cases = ready_cases(job, specs_for(job.benchmarks) if specs is None else specs)
    ready(cases)
    results = run_cases(cases, dev, job.budget, cpus=cpus, datasheet=job.datasheet, started=started, finished=finished)
    return cases, results


def flag_groups(cases: Sequence[Case]) -> list[tuple[bool, list[Case]]]:
    """(TF32 on?, cases) in the order they run: TF32 off first, then on; empty groups left out."""
    groups = [(False, [c for c in cases if not c.tf32]), (True, [c for c in cases if c.tf32])]
    return [(tf32, group) for tf32, group in groups if group]


def run_cases(
    cases: Sequence[Case],
    dev: DeviceInfo,
    budget: Budget,
    *,
    cpus: contention.Cpus | None = None,
    datasheet: Peak | None = None,
    started: Callable[[Case, int, int], None] = lambda case, i, n: None,
    finished: Callable[[Case, BenchResult], None] = lambda case, result: None,
) -> dict[int, BenchResult]:
    """Run ``cases`` on ``dev`` grouped by the flags they need; results by their suite position. A
    case's exception is its result (envcheck.bench.case.run_plan); KeyboardInterrupt ends the run. ``datasheet``: the
    device's entry, for each figure's fraction of peak."""
    results: dict[int, BenchResult] = {}
    done = 0
    cpus = None if dev.is_cuda else cpus
    for tf32, group in flag_groups(cases):
        common.set_torch_flags(tf32=tf32)
        with _device_context(dev):
            for case in group:
                started(case, done, len(cases))
                # each shape of a sweep only has to find the best: a third of a case's time
                shape = replace(budget, measure_s=budget.measure_s * SWEEP_FRACTION)
                chosen = shape if case.spec.best_of else budget
                result = watched(case.spec, case.plan, dev, chosen, cpus, datasheet)
                results[case.position] = result
                done += 1
                finished(case, result)
    return results


@dataclass(frozen=True)
class Entry:
    """A case as the merge needs it: its place, its benchmark, and whether that benchmark is a sweep."""

    position: int
    bench_id: str
    best_of: bool


def merge(planned: Sequence[Entry], results: dict[int, BenchResult]) -> list[BenchResult]:
    """The results in suite order, a sweep reduced to its best shape (envcheck.bench.case.best_of) from the shapes
    that have a result; a case without one is left out (the caller says why, or the run was stopped)."""
    merged: list[BenchResult] = []
    for _, group in _by_benchmark(sorted(planned, key=lambda e: e.position)):
        got = [results[e.position] for e in group if e.position in results]
        if group[0].best_of and got:
            merged.append(best_of(got))
        else:
            merged.extend(got)
    return merged


def _by_benchmark(planned: list[Entry]) -> Iterator[tuple[str, list[Entry]]]:
    import itertools

    for bench_id, group in itertools.groupby(planned, key=lambda e: e.bench_id):
        yield bench_id, list(group)


def specs_for(ids: Sequence[str]) -> list[BenchSpec]:
    """The registered benchmarks of a job, by id."""
    BENCHMARKS.load()
    return [BENCHMARKS[i] for i in ids]


def _device_context(dev: DeviceInfo) -> Any:
    """Make ``dev`` the current CUDA device (events and default streams follow it)."""
    if not dev.is_cuda:
        return contextlib.nullcontext()
    import torch

    return torch.cuda.device(dev.cuda_index)
