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

Protocol: every line the parent reads starts with :data:`MARK` (torch and CUDA libraries may print to
stdout too) followed by one JSON object with an ``event``:

* ``stage`` (``import``, ``describe``, ``plan``): the step that might hang or crash comes next;
  ``describe`` carries ``import_s``, how long importing torch took here;
* ``device``: the parent's description with what this process measured (free memory under its CUDA
  context, L2 size, SM count, threads);
* ``plan``: the parent's cases are ready here, ``[benchmark id, label, dtype]`` in suite order;
* ``started`` / ``finished``: a case, by its suite ``position``; ``finished`` carries the result
  (runner.BenchResult.to_json, raw samples included);
* ``error``: the device cannot be benchmarked at all (torch does not import here, CUDA cannot use the
  card); the worker then exits;
* ``done``: every case has reported.

Last words and orphans. faulthandler writes the Python stack to stderr on a fatal signal, and on
SIGUSR1, which the parent sends just before it kills a worker past its deadline, so that the report can
name the line it hung in. A worker must never outlive its parent: the parent kills its group at exit, on
SIGTERM and on Ctrl-C, and should the parent itself be killed outright (SIGKILL runs no handler), the
kernel ends the worker too (``PR_SET_PDEATHSIG``, Linux; elsewhere a thread watches the parent's pid).
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time
from typing import Any

MARK = "__envcheck_bench__ "
#: The signal the parent sends for the stack of a hang, just before it kills the worker.
DUMP_SIGNAL = getattr(signal, "SIGUSR1", None)


def emit(event: str, **fields: Any) -> None:
    # A leading newline keeps the mark at the start of a line even after a library's partial line.
    sys.stdout.write("\n" + MARK + json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def die_with_parent(parent_pid: int) -> None:
    """End this process when the parent dies, even by SIGKILL (see the module docstring)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1  # <linux/prctl.h>
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent died before the prctl: nobody will signal us
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="envcheck-parent-watch", daemon=True).start()


def start(parent_pid: int) -> Any | None:
    """What every worker (the bench's, the burn's) does first: a stack on fatal signals and on
    :data:`DUMP_SIGNAL` (the parent asks for one before it kills a hung worker), die with the parent, then
    import torch between the ``import`` and ``describe`` stages. Returns torch, or None after saying why it
    cannot be imported (the worker then returns: the error is this device's)."""
    faulthandler.enable()
    if DUMP_SIGNAL is not None:
        faulthandler.register(DUMP_SIGNAL, all_threads=True, chain=False)
    die_with_parent(parent_pid)

    from envcheck.bench.common import error_line

    emit("stage", stage="import")
    started = time.monotonic()
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any exception: it is this device's error, said in one line
        emit("error", error=f"torch cannot be imported in the worker ({error_line(exc)})")
        return None
    emit("stage", stage="describe", import_s=round(time.monotonic() - started, 3))
    return torch


def main(argv: list[str]) -> int:
    if start(int(argv[1])) is None:
        return 0

    from envcheck.bench.common import error_line
    from envcheck.bench.plan import Job

    job = Job.from_json(json.loads(argv[2]))

    from envcheck.bench import contention, execute
    from envcheck.devices import resolve as devices

    try:
        # The parent's description, pinned (CUDA's device 0 here), with what only this process can tell.
        dev = devices.measure_here(job.device.pinned())
    except Exception as exc:  # noqa: BLE001 - a DeviceError, or CUDA failing in any other way
        emit("error", error=error_line(exc) if not isinstance(exc, devices.DeviceError) else str(exc))
        return 0
    emit("device", device=dev.to_json())

    emit("stage", stage="plan")
    execute.run_job(
        job,
        dev,
        cpus=None if dev.is_cuda else contention.Cpus.here(),
        ready=lambda cases: emit("plan", cases=[[c.spec.id, c.plan.label, c.plan.dtype] for c in cases]),
        started=lambda case, i, n: emit("started", position=case.position),
        finished=lambda case, result: emit("finished", position=case.position, result=result.to_json()),
    )
    emit("done")
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is said: skip the interpreter's teardown (most of a second with torch loaded, and a CUDA
    # context on a bad GPU can hang in it), as the doctor's torch child does.
    os._exit(code)
