"""A bench worker: ``python -m envcheck.bench.worker PARENT_PID JOB_JSON`` runs one device's job
(envcheck.bench.plan.Job) and streams what happens, one JSON object per line on stdout.

Why a process per device: siblings measured at the same time run under the same power and thermal
conditions, a node's suite takes the time of one GPU, and a case that crashes the interpreter
(SIGSEGV in a kernel library), hangs (a wedged driver) or is killed by the OOM killer takes down one
device's remaining cases, not the run. The parent (envcheck.bench.run) starts the worker through
envcheck.core.proc, in its own process group, with ``CUDA_VISIBLE_DEVICES`` naming its one GPU: CUDA in
here sees that card alone, as cuda:0, and the worker reports under the name, UUID and PCI bus id the
parent gave it.

Protocol (envcheck.core.workers: every line the parent reads is one marked JSON object) with an ``event``:

* ``stage`` (``import``, ``describe``, ``plan``): the step that might hang or crash comes next;
  ``describe`` carries ``import_s``, how long importing torch took here;
* ``device``: the device as this process describes it (free memory, L2 size, threads);
* ``plan``: the cases it will run, ``[benchmark id, label, dtype]`` in suite order;
* ``started`` / ``finished``: a case, by its suite ``position``; ``finished`` carries the result
  (runner.BenchResult.to_json, raw samples included);
* ``error``: the device cannot be benchmarked at all (torch does not import here, CUDA cannot use the
  card); the worker then exits;
* ``done``: every case has reported.

Its last words (a stack on a fatal signal, and on the parent's SIGUSR1 before a kill past its deadline)
and its death with the parent come from envcheck.core.workers.start.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

from envcheck.core import workers
from envcheck.core.model import error_line
from envcheck.core.workers import emit


def main(argv: list[str]) -> int:
    workers.start(int(argv[1]))
    if workers.import_torch() is None:
        return 0

    from envcheck.bench.plan import Job

    job = Job.from_json(json.loads(argv[2]))
    shown = job.device

    from envcheck.bench import contention, execute
    from envcheck.devices import resolve as devices

    try:
        if shown.is_cuda:
            known = devices.Identity(shown.uuid, shown.pci_bus_id)
            local = devices.describe_gpu(0, None, os.environ, shown_as=shown.name, known=known)
        else:
            local = devices.describe_cpu()
    except Exception as exc:  # noqa: BLE001 - a DeviceError, or CUDA failing in any other way
        emit(event="error", error=error_line(exc) if not isinstance(exc, devices.DeviceError) else str(exc))
        return 0
    # What this process measured, under the name and identity the parent knows the device by.
    identity = {"name": shown.name, "index": shown.index}
    described = replace(local, **identity, uuid=shown.uuid, pci_bus_id=shown.pci_bus_id)
    emit(event="device", device=described.to_json())

    emit(event="stage", stage="plan")
    cases = execute.plan_cases(execute.specs_for(job.benchmarks), local, job.options)
    emit(event="plan", cases=[[c.spec.id, c.plan.label, c.plan.dtype] for c in cases])
    execute.run_cases(
        cases,
        local,
        job.budget,
        cpus=None if local.is_cuda else contention.Cpus.here(),
        started=lambda case, i, n: emit(event="started", position=case.position),
        finished=lambda case, result: emit(
            event="finished", position=case.position, result=replace(result, device=shown.name).to_json()
        ),
    )
    emit(event="done")
    return 0


if __name__ == "__main__":
    workers.exit_now(main(sys.argv))
