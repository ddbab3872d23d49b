"""Plan: a bench request and its resolved devices become a schedule, one :class:`Job` per device.

A job is plain data that travels to its bench worker as JSON (envcheck.bench.worker): the device as
the parent resolved it (the name, UUID and PCI bus id the report shows), the benchmarks to run, the
cases the parent expects, the options, the time budget of a case, the ``CUDA_VISIBLE_DEVICES`` that
pins the worker to its GPU, and the worker's deadlines. Planning runs the benchmarks' own plan
functions on the parent's view of the device (no torch is imported for it), so the parent knows how
many cases each device has before any worker starts, and a device with none gets no worker at all.
The worker plans again with its own, fuller description (free memory as its CUDA context leaves it,
the L2 size) and reports the cases it will really run: where memory changes a size, its labels win.

Deadlines. A worker is judged hung when it goes silent for longer than its current step may take:
:func:`startup_deadline` until it has described its device and planned (importing torch and starting
CUDA), then :func:`case_deadline` from the start of each case. The deadline moves with the worker
because the whole schedule's sum (dozens of cases of a minute's allowance each) would let a worker
stuck in its first case hold its GPU, and the report, for half an hour; a deadline per step catches it
within about a minute and names the case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envcheck.bench import case as runner
from envcheck.bench.harness import Budget
from envcheck.bench.model import BenchSpec, DeviceInfo, Options
from envcheck.devices import resolve as devices

#: What a case may take on top of its timed budget (warm-up and measurement, once per out-of-memory
#: retry): allocating and filling its inputs, the float64 check of the answer (seconds for the largest
#: matmul), cuDNN's autotuning, and the first use of a library in the process (cuBLAS and cuDNN handles,
#: lazily loaded kernels). A healthy case never comes near it; a hung kernel or a wedged driver does.
CASE_SETUP_S = 60.0
#: On top of twice the torch child's own limit for the same steps (importing torch, starting CUDA):
#: describing the device and planning. Twice, because every worker of a node imports torch at the same
#: time, sharing the disk (often a network filesystem) and the CPUs.
STARTUP_EXTRA_S = 10.0


def case_deadline(budget: Budget) -> float:
    """Seconds one case may take, from its start, before its worker is judged hung."""
    return round((budget.warmup_s + budget.measure_s) * (runner.OOM_RETRIES + 1) + CASE_SETUP_S, 1)


def startup_deadline(env: Mapping[str, str]) -> float:
    """Seconds a worker may take to import torch, start CUDA, describe its device and plan. It follows
    ``ENVCHECK_TORCH_TIMEOUT``, the limit the doctor's torch child has for the same steps (40 s by default:
    90 s here)."""
    from envcheck.probes.torch import child_timeout

    return 2 * child_timeout(env) + STARTUP_EXTRA_S


@dataclass(frozen=True)
class Job:
    """One device's share of the bench, for one worker process."""

    device: DeviceInfo
    #: Benchmark ids in suite order.
    benchmarks: tuple[str, ...]
    #: (benchmark id, case label) as the parent planned them, in suite order.
    cases: tuple[tuple[str, str], ...]
    options: Options
    budget: Budget
    #: ``CUDA_VISIBLE_DEVICES`` for the worker: its GPU alone ("" for a CPU bench).
    visible: str
    startup_s: float
    case_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device.to_json(),
            "benchmarks": list(self.benchmarks),
            "cases": [list(c) for c in self.cases],
            "options": {
                "quick": self.options.quick,
                "dtypes": sorted(self.options.dtypes) if self.options.dtypes is not None else None,
            },
            "budget": dataclasses.asdict(self.budget),
            "visible": self.visible,
            "startup_s": self.startup_s,
            "case_s": self.case_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        options = data["options"]
        dtypes = options.get("dtypes")
        return cls(
            DeviceInfo.from_json(data["device"]),
            tuple(data["benchmarks"]),
            tuple((bench_id, label) for bench_id, label in data["cases"]),
            Options(quick=bool(options.get("quick")), dtypes=frozenset(dtypes) if dtypes is not None else None),
            Budget(**data["budget"]),
            data["visible"],
            float(data["startup_s"]),
            float(data["case_s"]),
        )


def schedule(
    specs: list[BenchSpec],
    chosen: list[DeviceInfo],
    opts: Options,
    *,
    env: Mapping[str, str],
    budgets: Mapping[tuple[str, bool], Budget] | None = None,
) -> list[Job]:
    """One job per device that has at least one case, in the devices' order."""
    budgets = budgets or runner.BUDGETS
    jobs = []
    for dev in chosen:
        cases = tuple((spec.id, plan.label) for spec in specs for plan in runner.plans_for(spec, dev, opts))
        if not cases:
            continue
        budget = budgets[(dev.kind, opts.quick)]
        jobs.append(
            Job(
                dev,
                tuple(spec.id for spec in specs),
                cases,
                opts,
                budget,
                devices.pin(dev, env),
                startup_deadline(env),
                case_deadline(budget),
            )
        )
    return jobs
