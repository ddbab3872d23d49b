"""The bench's fan-out, on the CPU: one worker process per device, their results merged in suite order,
and a worker that crashes, hangs past its deadline, is SIGKILLed (as by the OOM killer) or exits early
becoming that device's error results while the other devices' figures are kept. Several CPU "devices"
(cpu:0, cpu:1, ...) stand in for a node's GPUs; the faults are injected into the workers from
tests/bench/worker_faults/sitecustomize.py, never from envcheck. Each worker imports torch (a second or
two here), so the workers of a test run at once and the tests are few."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import torch

from envcheck.bench import case, plan, run
from envcheck.bench.harness import Budget, Measurement
from envcheck.bench.model import BENCHMARKS, BenchSpec, Check, Options, Plan, Unsupported
from envcheck.core.model import Status
from envcheck.devices import resolve
from envcheck.devices.model import DeviceInfo
from envcheck.probes.contention import Contention
from tests.bench.conftest import run_here

FAULTS = Path(__file__).resolve().parent / "worker_faults"
TINY = {("cpu", True): Budget(measure_s=0.02, warmup_s=0.0, min_samples=3, min_warmup=1)}
#: matmul.fp32, then a two-shape sweep, then a copy: a fault in the sweep leaves a case before and after.
SPECS = ["matmul.fp32", "matmul.sweep", "memory.d2d"]


def jobs_for(names: list[str], specs: list[str] = SPECS) -> list[plan.Job]:
    BENCHMARKS.load()
    cpus = [replace(resolve.cpu_here(), name=name) for name in names]
    return plan.schedule([BENCHMARKS[s] for s in specs], cpus, Options(quick=True), env={}, budgets=TINY)


def with_faults(faults: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "ENVCHECK_TEST_WORKER_FAULTS": faults}


def by_device(results: list[case.BenchResult]) -> dict[str, list[case.BenchResult]]:
    grouped: dict[str, list[case.BenchResult]] = {}
    for r in results:
        grouped.setdefault(r.device, []).append(r)
    return grouped


# -- what crosses between parent and worker ---------------------------------------------------------


def test_a_result_comes_back_from_its_worker_whole():
    result = case.BenchResult(
        "matmul.fp32",
        "fp32",
        "fp32 512x512x512",
        "cuda:3",
        "NVIDIA H100 80GB HBM3",
        "fp32",
        Status.FAIL,
        51.2,
        "TFLOP/s",
        67.0,
        0.7642,
        "NVIDIA H100 datasheet",
        Check(False, float("nan"), 1e-5, "float64", "2 non-finite values"),
        Measurement((1e-3, 1.2e-3, 0.9e-3), 4, 7, "CudaEventTimer"),
        {"m": 512, "shape": [512, 512]},
        {"images/s": 10.0},
        "wrong result: 2 non-finite values",
        ("out of memory at scale 1: OutOfMemoryError",),
        duration_s=1.25,
        contention=Contention(0.5, 2.0, 1.0, 1.2, 0.7),
    )
    back = case.BenchResult.from_json(result.to_json())
    assert back.to_json() == result.to_json()
    assert back.measurement == result.measurement  # every raw sample, not only the statistics
    assert back.contention == result.contention and back.status is Status.FAIL and back.verified is False


def test_a_job_travels_to_its_worker_as_json():
    [job] = jobs_for(["cpu:1"])
    assert plan.Job.from_json(job.to_json()) == job
    assert job.visible == "" and job.cases[0] == ("matmul.fp32", "fp32")
    assert job.case_s == plan.case_deadline(TINY[("cpu", True)]) == 60.1


def test_a_gpu_worker_is_pinned_by_uuid_else_through_the_users_visible_devices():
    gpu = DeviceInfo("cuda:1", "cuda", "H100", 1, uuid="GPU-00000003-aaaa")
    assert resolve.pin(gpu, {"CUDA_VISIBLE_DEVICES": "2,3"}) == "GPU-00000003-aaaa"
    anonymous = replace(gpu, uuid=None)
    assert resolve.pin(anonymous, {"CUDA_VISIBLE_DEVICES": "2,3"}) == "3"  # CUDA's device 1 is the 2nd entry
    assert resolve.pin(anonymous, {}) == "1"
    assert resolve.pin(resolve.cpu_here(), {}) == ""  # a CPU worker never starts CUDA


# -- one device in one process: torch's flags ---------------------------------------------------------


def test_tf32_cases_run_last_so_the_flag_changes_once_and_the_report_keeps_suite_order(cpu):
    seen: list[tuple[str, bool]] = []

    def recording(label: str) -> Plan:
        def build(scale: float):
            seen.append((label, torch.backends.cuda.matmul.allow_tf32))
            raise Unsupported(f"{label} recorded")

        return Plan(label, label.split()[0], build)

    first = BenchSpec("matmul.a", "a", "a", lambda d, o: [recording("fp32 a"), recording("tf32 a")])
    second = BenchSpec("matmul.b", "b", "b", lambda d, o: [recording("bf16 b"), recording("tf32 b")])
    results = run_here([first, second], cpu, Options(quick=True), budgets=TINY)
    assert seen == [("fp32 a", False), ("bf16 b", False), ("tf32 a", True), ("tf32 b", True)]
    assert [r.case for r in results] == ["fp32 a", "tf32 a", "bf16 b", "tf32 b"]
    assert torch.backends.cudnn.benchmark is True
    torch.backends.cuda.matmul.allow_tf32 = False  # torch's defaults, for the tests that follow
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = True, False


# -- the fan-out ----------------------------------------------------------------------------------------


def test_a_worker_runs_under_the_parents_description_and_plan_and_describes_nothing_again():
    """The parent describes the device once and plans its cases once; the job carries both to the worker,
    which adds torch's thread count and reports under the parent's label and model (a worker that described
    its CPU again would report this machine's own model)."""
    BENCHMARKS.load()
    parents = replace(resolve.cpu_here(), name="cpu:7", model="the CPU as the parent described it")
    [job] = plan.schedule([BENCHMARKS["memory.d2d"]], [parents], Options(quick=True), env={}, budgets=TINY)
    out = run.run([job])
    [measured] = out.devices
    assert (measured.name, measured.model, measured.threads) == (parents.name, parents.model, torch.get_num_threads())
    assert measured.free_bytes == parents.free_bytes  # the parent's reading, not a second one
    [result] = out.results
    assert (result.device, result.device_model, result.status) == ("cpu:7", parents.model, Status.OK)
    assert [(c[0], c[1]) for c in job.cases] == [("memory.d2d", result.label)] and out.planned == 1


def test_every_device_has_its_worker_and_the_results_merge_device_by_device_in_suite_order():
    out = run.run(jobs_for(["cpu:0", "cpu:1", "cpu:2"]))
    assert [(r.device, r.id) for r in out.results] == [(f"cpu:{i}", s) for i in range(3) for s in SPECS]
    assert all(r.status is Status.OK and r.verified and r.measurement.samples_s for r in out.results)
    sweep = out.results[1]
    assert sweep.case == "fp32 best of 2 shapes" and len(sweep.params["sweep"]) == 2
    assert out.planned == 3 * 4 and not out.interrupted
    assert [(w.device, w.returncode, w.error) for w in out.workers] == [(f"cpu:{i}", 0, None) for i in range(3)]
    assert len({w.pid for w in out.workers}) == 3 and all(w.import_s for w in out.workers)
    # described by the worker (torch's thread count), under the parent's name
    assert [(d.name, d.threads) for d in out.devices] == [(f"cpu:{i}", torch.get_num_threads()) for i in range(3)]
    # all at once: each started before any other had finished
    assert max(w.started_s for w in out.workers) < min(w.started_s + w.wall_s for w in out.workers)


def test_a_crashed_hung_oom_killed_or_failed_worker_is_its_devices_errors_and_the_rest_is_kept(left_behind):
    jobs = jobs_for(["cpu:0", "cpu:1", "cpu:2", "cpu:3", "cpu:4"])
    jobs[2] = replace(jobs[2], case_s=4.0)  # cpu:2 hangs: a short deadline for it alone
    faults = "cpu:1=segv@matmul.sweep,cpu:2=hang@matmul.sweep,cpu:3=sigkill@matmul.sweep,cpu:4=exit@matmul.sweep"
    shown: list[case.BenchResult] = []
    started = time.monotonic()
    out = run.run(jobs, env=with_faults(faults), progress=case.Progress(finished=shown.append))
    took = time.monotonic() - started
    results = by_device(out.results)
    assert [r.status for r in results["cpu:0"]] == [Status.OK] * 3
    for device in ("cpu:1", "cpu:2", "cpu:3", "cpu:4"):
        matmul, sweep, copy = results[device]
        assert matmul.status is Status.OK and matmul.value > 0  # finished before the fault: kept
        assert sweep.status is Status.CRASH and copy.status is Status.CRASH
        assert sweep.case == "fp32 best of 2 shapes"  # the sweep reports its shapes' worst: the crash
        assert copy.reason == f"not run: {sweep.reason}" and copy.case == "copy"
    segv, hung, killed, failed = (results[f"cpu:{i}"][1].reason for i in range(1, 5))
    assert segv.startswith("worker crashed with SIGSEGV during matmul.sweep fp32 256x256x256 (at ")
    assert "sitecustomize.py" in segv
    assert hung.startswith("worker hung past its 4 s deadline during matmul.sweep fp32 256x256x256; killed (at ")
    assert hung.endswith(" in _act)")  # faulthandler's answer to SIGUSR1: the line it slept in
    assert killed == (
        "worker was killed (SIGKILL) during matmul.sweep fp32 256x256x256, most often by the kernel's "
        "out-of-memory killer (`dmesg | grep -i oom` says)"
    )
    assert failed == "worker exited with status 3 during matmul.sweep fp32 256x256x256: injected: the worker gives up"
    workers = {w.device: w for w in out.workers}
    assert workers["cpu:0"].error is None and workers["cpu:1"].returncode == -signal.SIGSEGV
    assert workers["cpu:2"].error == hung and workers["cpu:3"].returncode == -signal.SIGKILL
    # every error result was shown as it was made, and the hang was cut at its deadline, not waited out
    assert sum(r.status is Status.CRASH for r in shown) == 4 * 3  # 2 sweep shapes and the copy, per worker
    assert took < 40
    assert not left_behind()  # no worker left behind


def test_serial_runs_one_worker_after_another():
    out = run.run(jobs_for(["cpu:0", "cpu:1"], ["memory.d2d"]), serial=True)
    first, second = out.workers
    assert second.started_s >= first.started_s + first.wall_s
    assert [(r.device, r.status) for r in out.results] == [("cpu:0", Status.OK), ("cpu:1", Status.OK)]


PARENT = """
import sys
from envcheck.bench import case
from envcheck.bench import plan
from envcheck.bench import run
job = plan.Job.from_json(__import__("json").loads(sys.argv[1]))
run.run([job], progress=case.Progress(started=lambda *a: print("started", flush=True)))
"""


def test_no_worker_outlives_a_parent_killed_outright():
    """SIGKILL runs no handler in the parent: the kernel ends the worker (PR_SET_PDEATHSIG)."""
    import json

    [job] = jobs_for(["cpu:0"], ["memory.d2d"])
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, json.dumps(job.to_json())],
        stdout=subprocess.PIPE,
        text=True,
        env=with_faults("cpu:0=hang"),
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "started"
        workers = psutil.Process(parent.pid).children(recursive=True)
        assert workers
        parent.kill()
        parent.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, [p.pid for p in alive]
    finally:
        if parent.poll() is None:
            parent.kill()
