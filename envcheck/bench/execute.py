"""Execute: one device's cases, in this process. A bench worker (envcheck.bench.worker) runs this for
its one device; tests and tools that want no subprocess call :func:`run_device`.

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

from envcheck.bench import case as runner
from envcheck.bench import common, contention
from envcheck.bench.case import BenchResult, Progress
from envcheck.bench.harness import Budget
from envcheck.bench.model import BENCHMARKS, BenchSpec, DeviceInfo, Options, Plan


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


def plan_cases(specs: Sequence[BenchSpec], dev: DeviceInfo, opts: Options) -> list[Case]:
    """Every case of ``specs`` on ``dev``, in suite order."""
    plans = [(spec, plan) for spec in specs for plan in runner.plans_for(spec, dev, opts)]
    return [Case(i, spec, plan) for i, (spec, plan) in enumerate(plans)]


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
    started: Callable[[Case, int, int], None] = lambda case, i, n: None,
    finished: Callable[[Case, BenchResult], None] = lambda case, result: None,
) -> dict[int, BenchResult]:
    """Run ``cases`` on ``dev`` grouped by the flags they need; results by their suite position. A
    case's exception is its result (runner.run_plan); KeyboardInterrupt ends the run."""
    results: dict[int, BenchResult] = {}
    done = 0
    cpus = None if dev.is_cuda else cpus
    for tf32, group in flag_groups(cases):
        common.set_torch_flags(tf32=tf32)
        with _device_context(dev):
            for case in group:
                started(case, done, len(cases))
                # each shape of a sweep only has to find the best: a third of a case's time
                shape = replace(budget, measure_s=budget.measure_s * runner.SWEEP_FRACTION)
                result = runner.watched(case.spec, case.plan, dev, shape if case.spec.best_of else budget, cpus)
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


def entries(cases: Sequence[Case]) -> list[Entry]:
    return [Entry(c.position, c.spec.id, c.spec.best_of) for c in cases]


def merge(planned: Sequence[Entry], results: dict[int, BenchResult]) -> list[BenchResult]:
    """The results in suite order, a sweep reduced to its best shape (runner.best_of) from the shapes
    that have a result; a case without one is left out (the caller says why, or the run was stopped)."""
    merged: list[BenchResult] = []
    for _, group in _by_benchmark(sorted(planned, key=lambda e: e.position)):
        got = [results[e.position] for e in group if e.position in results]
        if group[0].best_of and got:
            merged.append(runner.best_of(got))
        else:
            merged.extend(got)
    return merged


def _by_benchmark(planned: list[Entry]) -> Iterator[tuple[str, list[Entry]]]:
    import itertools

    for bench_id, group in itertools.groupby(planned, key=lambda e: e.bench_id):
        yield bench_id, list(group)


def run_device(
    specs: Sequence[BenchSpec],
    dev: DeviceInfo,
    opts: Options,
    *,
    budgets: dict[tuple[str, bool], Budget] | None = None,
    cpus: contention.Cpus | None = None,
    progress: Progress | None = None,
) -> list[BenchResult]:
    """Every case of ``specs`` on ``dev`` in this process, merged in suite order (what a worker does,
    without the worker)."""
    progress = progress or Progress()
    budget = (budgets or runner.BUDGETS)[(dev.kind, opts.quick)]
    if cpus is None and not dev.is_cuda:
        cpus = contention.Cpus.here()
    cases = plan_cases(specs, dev, opts)
    results = run_cases(
        cases,
        dev,
        budget,
        cpus=cpus,
        started=lambda case, i, n: progress.started(i, n, case.spec.id, case.plan.label, dev.name),
        finished=lambda case, result: progress.finished(result),
    )
    return merge(entries(cases), results)


def specs_for(ids: Sequence[str]) -> list[BenchSpec]:
    """The registered benchmarks of a job, by id."""
    BENCHMARKS.load()
    return [BENCHMARKS[i] for i in ids]


def _device_context(dev: DeviceInfo) -> Any:
    """Make ``dev`` the current CUDA device (events and default streams follow it)."""
    if not dev.is_cuda:
        return contextlib.nullcontext()
    import torch

    return torch.cuda.device(dev.index)
