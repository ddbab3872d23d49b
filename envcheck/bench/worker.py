"""A bench worker: ``python -m envcheck.bench.worker PARENT_PID JOB_JSON`` runs one device's job
(envcheck.bench.plan.Job) and streams what happens, one JSON object per line on stdout.

Why a process per device: siblings measured at the same time run under the same power and thermal
conditions, a node's suite takes the time of one GPU, and a case that crashes the interpreter
(SIGSEGV in a kernel library), hangs (a wedged driver) or is killed by the OOM killer takes down one
device's remaining cases, not the run. The parent (envcheck.bench.run) starts the worker through
envcheck.core.proc, in its own process group, with ``CUDA_VISIBLE_DEVICES`` naming its one GPU: CUDA in
here sees that card alone, as cuda:0. The job carries the device as the parent described it and the
cases the parent planned; the worker adds only what it alone can measure (envcheck.devices.resolve.
measure_here) and runs those cases (envcheck.bench.execute.run_job), under the parent's label.

Protocol (envcheck.core.workers: every line the parent reads is one marked JSON object) with an ``event``:

* ``stage`` (``import``, ``describe``, ``plan``): the step that might hang or crash comes next;
  ``describe`` carries ``import_s``, how long importing torch took here;
* ``device``: the parent's description with what this process measured (free memory under its CUDA
  context, L2 size, SM count, threads);
* ``plan``: the parent's cases are ready here, ``[benchmark id, label, dtype]`` in suite order;
* ``started`` / ``finished``: a case, by its suite ``position``; ``finished`` carries the result
  (envcheck.bench.case.BenchResult.to_json, raw samples included);
* ``error``: the device cannot be benchmarked at all (torch does not import here, CUDA cannot use the
  card); the worker then exits;
* ``done``: every case has reported.

Its last words (a stack on a fatal signal, and on the parent's SIGUSR1 before a kill past its deadline)
and its death with the parent come from envcheck.core.workers.start.
"""

from __future__ import annotations

import json
import sys

from envcheck.core import workers
from envcheck.core.model import error_line
from envcheck.core.workers import emit


def main(argv: list[str]) -> int:
    workers.start(int(argv[1]))
    if workers.import_torch() is None:
        return 0

    from envcheck.bench.plan import Job

    job = Job.from_json(json.loads(argv[2]))

    from envcheck.bench import execute
    from envcheck.devices import resolve
    from envcheck.probes import contention

    try:
        # The parent's description, pinned (CUDA's device 0 here), with what only this process can tell.
        dev = resolve.measure_here(job.device.pinned())
    except Exception as exc:  # noqa: BLE001 - a DeviceError, or CUDA failing in any other way
        emit(event="error", error=error_line(exc) if not isinstance(exc, resolve.DeviceError) else str(exc))
        return 0
    emit(event="device", device=dev.to_json())

    emit(event="stage", stage="plan")
    execute.run_job(
        job,
        dev,
        cpus=None if dev.is_cuda else contention.Cpus.here(),
        ready=lambda cases: emit(event="plan", cases=[[c.spec.id, c.plan.label, c.plan.dtype] for c in cases]),
        started=lambda case, i, n: emit(event="started", position=case.position),
        finished=lambda case, result: emit(event="finished", position=case.position, result=result.to_json()),
    )
    emit(event="done")
    return 0


if __name__ == "__main__":
    workers.exit_now(main(sys.argv))
