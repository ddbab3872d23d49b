"""Plan: a bench request and its resolved devices become a schedule, one :class:`Job` per device.

A job is plain data that travels to its bench worker as JSON (envcheck.bench.worker): the device as
the parent described it (the name, UUID and PCI bus id the report shows), the benchmarks to run, the
cases, the options, the time budget of a case, the device's datasheet entry, the
``CUDA_VISIBLE_DEVICES`` that pins the worker to its GPU, and the worker's deadlines. Planning runs the
benchmarks' own plan functions on the parent's description (no torch is imported for it), once: the
parent knows every device's cases before any worker starts (a device with none gets no worker at all,
and a worker that dies early leaves each of them its error), and the worker runs exactly these
(envcheck.bench.execute.ready_cases).

Deadlines. A worker is judged hung when it goes silent for longer than its current step may take:
envcheck.devices.resolve.startup_deadline until its cases are ready (importing torch, starting CUDA,
measuring the device), then :func:`case_deadline` from the start of each case (and more for a benchmark
that does untimed work once per case, ``BenchSpec.setup_s``: torch.compile's first compile,
:meth:`Job.case_limit`). The deadline moves with the worker because the whole schedule's sum (dozens of
cases of a minute's allowance each) would let a worker stuck in its first case hold its GPU, and the report,
for half an hour; a deadline per step catches it within about a minute and names the case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envcheck.bench import case, peaks
from envcheck.bench.harness import Budget
from envcheck.bench.model import BenchSpec, Options
from envcheck.bench.peaks import Peak
from envcheck.devices import resolve
from envcheck.devices.model import DeviceInfo

#: What a case may take on top of its timed budget (warm-up and measurement, once per out-of-memory
#: retry): allocating and filling its inputs, the float64 check of the answer (seconds for the largest
#: matmul), cuDNN's autotuning, and the first use of a library in the process (cuBLAS and cuDNN handles,
#: lazily loaded kernels). A healthy case never comes near it; a hung kernel or a wedged driver does.
CASE_SETUP_S = 60.0


def case_deadline(budget: Budget) -> float:
    """Seconds one case may take, from its start, before its worker is judged hung."""
    return round((budget.warmup_s + budget.measure_s) * (case.OOM_RETRIES + 1) + CASE_SETUP_S, 1)


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
    #: The device's datasheet entry (envcheck.bench.peaks.by_device), looked up once in the parent.
    datasheet: Peak | None = None
    #: Seconds a case of these benchmarks may take beyond ``case_s`` (BenchSpec.setup_s: a compile).
    setup_s: Mapping[str, float] = field(default_factory=dict)

    def case_limit(self, bench_id: str) -> float:
        """Seconds a case of ``bench_id`` may take, from its start, before the worker is judged hung."""
        return round(self.case_s + self.setup_s.get(bench_id, 0.0), 1)

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
            "datasheet": self.datasheet.to_json() if self.datasheet else None,
            "setup_s": dict(self.setup_s),
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
            Peak.from_json(data["datasheet"]) if data.get("datasheet") else None,
            dict(data.get("setup_s") or {}),
        )


def schedule(
    specs: list[BenchSpec],
    chosen: list[DeviceInfo],
    opts: Options,
    *,
    env: Mapping[str, str],
    budgets: Mapping[tuple[str, bool], Budget] | None = None,
    datasheets: Mapping[str, Peak | None] | None = None,
) -> list[Job]:
    """One job per device that has at least one case, in the devices' order. ``datasheets``: each device's
    entry by label (None: looked up here, envcheck.bench.peaks.by_device)."""
    budgets = budgets or case.BUDGETS
    datasheets = peaks.by_device(chosen) if datasheets is None else datasheets
    jobs = []
    for dev in chosen:
        cases = tuple((spec.id, plan.label) for spec in specs for plan in case.plans_for(spec, dev, opts))
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
                resolve.pin(dev, env),
                resolve.startup_deadline(env),
                case_deadline(budget),
                datasheets.get(dev.name),
                {spec.id: spec.setup_s for spec in specs if spec.setup_s and any(c[0] == spec.id for c in cases)},
            )
        )
    return jobs
