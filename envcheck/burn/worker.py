"""A burn worker: ``python -m envcheck.burn.worker PARENT_PID JOB_JSON`` loads one device
(envcheck.burn.plan.BurnJob) for its duration and streams what happens, one JSON object per line on stdout,
in the protocol of envcheck.core.workers (whose supervisor reads every kind of worker).

Why a process per device, as for the bench: every GPU is loaded at the same moment under the same power
and cooling, and a GPU whose kernel crashes the interpreter, hangs, or runs its process out of memory ends
its own device's burn, not the others'. The parent (envcheck.burn.app) starts it through
envcheck.core.workers, pinned to its GPU by ``CUDA_VISIBLE_DEVICES``; the worker dies with the parent.

Events: ``stage`` (``import``, ``describe``, ``allocate``); ``device`` (free memory as this process sees
it); ``plan`` (the working set: n, outputs, bytes, dtype, whether results are compared bit for bit or the
tolerance); ``started`` (the load begins; ``t`` on ``time.monotonic()``, one clock for every process);
``tick`` about once a second (``t`` and the throughput since the previous tick, in TFLOP/s); ``check``
(results compared with the reference, how many differed, the largest difference); ``error`` (the device
cannot be burned: torch does not import, CUDA does not start, the working set does not fit); ``done``.

It stops at its duration (within a batch, a fraction of a second, and the last check), or on SIGTERM or
SIGINT, after which it still makes its last check and says ``done``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any

from envcheck.core import workers
from envcheck.core.model import error_line
from envcheck.core.workers import emit


class _Stop:
    """Set by SIGTERM or SIGINT: the load loop ends at its next batch."""

    requested = False

    @classmethod
    def install(cls) -> None:
        def handler(signum: int, frame: Any) -> None:
            cls.requested = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)


def main(argv: list[str]) -> int:
    _Stop.install()
    workers.start(int(argv[1]))
    torch = workers.import_torch()
    if torch is None:
        return 0

    from envcheck.burn.plan import BurnJob

    job = BurnJob.from_json(json.loads(argv[2]))

    from envcheck.burn import load

    cuda = job.device.is_cuda
    try:
        if cuda:
            torch.cuda.init()
            free, total = torch.cuda.mem_get_info(0)
        else:
            free, total = job.device.free_bytes, job.device.total_bytes
    except Exception as exc:  # noqa: BLE001 - CUDA failing in any way is this device's error
        emit(event="error", error=f"CUDA cannot use {job.device.name} ({error_line(exc)})")
        return 0
    emit(event="device", free_bytes=free, total_bytes=total, threads=torch.get_num_threads())

    emit(event="stage", stage="allocate")
    try:
        shape = load.plan_shape(cuda=cuda, dtype=job.dtype, free_bytes=free, size=job.size)
        work = load.Load("cuda" if cuda else "cpu", job.dtype, shape)
    except (MemoryError, torch.OutOfMemoryError) as exc:
        emit(event="error", error=f"the working set does not fit on {job.device.name}: {error_line(exc)}")
        return 0
    emit(
        event="plan",
        n=shape.n,
        buffers=shape.buffers,
        bytes=shape.total_bytes,
        dtype=job.dtype,
        exact=work.exact,
        tolerance=work.tolerance,
    )
    burn(work, job)
    return 0


def burn(work: Any, job: Any) -> None:
    """Load the device until the duration is over or a stop is asked for, reporting throughput about every
    ``job.report_every_s`` and checking every ``job.check_every_s`` and at the end."""
    from envcheck.burn.load import BATCH_S

    start = time.monotonic()
    end = start + job.duration_s
    emit(event="started", t=start)
    count = 1
    window_steps, window_s = 0, 0.0
    next_report = start + job.report_every_s
    next_check = start + job.check_every_s
    while not _Stop.requested:
        now = time.monotonic()
        if now >= end:
            break
        took, ran = work.batch(count, until=end)
        window_steps += ran
        window_s += took
        # Size the next batch to about BATCH_S, and never past the end of the run.
        per = took / ran if took > 0 else BATCH_S
        left = max(end - time.monotonic(), 0.0)
        count = max(1, int(min(BATCH_S, left) / per)) if per > 0 else 1
        now = time.monotonic()
        if now >= next_report and window_s > 0:
            emit(event="tick", t=now, value=window_steps * work.shape.flops / window_s / 1e12, steps=window_steps)
            window_steps, window_s = 0, 0.0
            next_report = now + job.report_every_s
        if now >= next_check:
            _check(work)
            next_check = time.monotonic() + job.check_every_s
    if window_s > 0:
        now = time.monotonic()
        emit(event="tick", t=now, value=window_steps * work.shape.flops / window_s / 1e12, steps=window_steps)
    _check(work)
    emit(event="done", t=time.monotonic(), steps=work.steps, load_s=round(time.monotonic() - start, 3))


def _check(work: Any) -> None:
    result = work.check()
    emit(
        event="check",
        t=time.monotonic(),
        compared=result.compared,
        mismatched=result.mismatched,
        max_abs_diff=result.max_abs_diff if result.max_abs_diff != float("inf") else None,
    )


if __name__ == "__main__":
    workers.exit_now(main(sys.argv))
