"""The NVML session over the fake library (tests/fakenvml.py), counted at the C boundary: NVML is started once
for every reader of a process, each GPU is classified in one place, and NVML is shut down once, never under a
call in flight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from envcheck.core.model import NA
from envcheck.probes.nvml.fabric import probe_fabric
from envcheck.probes.nvml.inventory import probe_nvml
from envcheck.probes.nvml.session import NoCount, NvmlGpu, NvmlSession, shared
from envcheck.probes.nvml.telemetry import Sampler
from tests import fakenvml

NVML_SITE = Path(__file__).resolve().parents[1] / "nvml_site"
INIT = "nvmlInitWithFlags"


def test_one_doctor_run_starts_nvml_once_and_shuts_it_down_once(tmp_path):
    """The nvml and fabric probes run at once in their own threads: one nvmlInit serves both, and NVML is
    shut down once, when the process ends (a real envcheck process over the fake library)."""
    calls = tmp_path / "calls.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(NVML_SITE),
        "ENVCHECK_FAKE_NVML": "hgx_8gpu",
        "ENVCHECK_FAKE_NVML_CALLS": str(calls),
        "ENVCHECK_FABRIC_INTERVAL_S": "0",
    }
    command = [sys.executable, "-m", "envcheck", "doctor", "driver", "gpu", "fabric", "--json"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    checks = {c["id"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["gpu.inventory"]["status"] == "ok" and checks["fabric.nvlink"]["status"] == "ok", proc.stderr
    made = json.loads(calls.read_text())
    assert made.count(INIT) == 1 and made.count("nvmlShutdown") == 1
    assert made.index("nvmlShutdown") > max(i for i, name in enumerate(made) if name.startswith("nvmlDevice"))


def test_readers_in_one_process_share_the_session(nvml):
    lib = nvml("hgx_8gpu")
    inventory = probe_nvml()
    fabric = probe_fabric(interval_s=0.0, sleep=lambda s: None)
    assert len(inventory.gpus) == len(fabric.gpus) == 8
    assert lib.calls.count(INIT) == 1 and "nvmlShutdown" not in lib.calls
    assert shared() is shared()


def test_a_failed_start_is_not_kept(nvml):
    lib = nvml("driver_not_loaded")
    assert probe_nvml().status == "driver_not_loaded"
    lib.init_error = None  # the module is loaded now (modprobe nvidia)
    assert probe_nvml().status == "ok"
    assert lib.calls.count(INIT) == 2


def test_each_gpu_is_classified_once_lost_refused_or_open(nvml):
    lib = nvml("device_node_refused")
    lib.gpus[0].errors["nvmlDeviceGetHandleByIndex_v2"] = fakenvml.GPU_IS_LOST
    with NvmlSession.open() as session:
        read = session.reader()
        lost, refused = session.gpus(read)
        assert (lost.index, lost.handle, refused.index, refused.handle) == (0, None, 1, None)
        assert "GPU is lost" in lost.lost and refused.lost is None
        assert "Insufficient Permissions" in refused.refused
        lib.gpus[0].errors = {}
        (opened,) = session.gpus(read, [0])
        assert opened.handle is not None and opened.lost is opened.refused is None


def test_a_binding_that_breaks_opening_a_gpu_neither_loses_nor_refuses_it(nvml, monkeypatch):
    import pynvml

    nvml("healthy_multi_gpu")

    def broken(index):
        raise TypeError("an old vendored copy cannot marshal this")

    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", broken)
    with NvmlSession.open() as session:
        read = session.reader()
        assert session.gpus(read, [2]) == [NvmlGpu(2)]
        assert read.failing == {"nvmlDeviceGetHandleByIndex": "TypeError: an old vendored copy cannot marshal this"}


def test_a_count_nvml_cannot_give_says_why(nvml, monkeypatch):
    import pynvml

    nvml("healthy_multi_gpu")

    def refused():
        raise pynvml.NVMLError(fakenvml.NO_PERMISSION)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", refused)
    with NvmlSession.open() as session:
        try:
            session.gpus(session.reader())
        except NoCount as exc:
            assert str(exc) == "cannot count GPUs: no permission"
        else:
            raise AssertionError("a count NVML refused was taken as a count")
    assert probe_nvml().error == probe_fabric(interval_s=0.0).error == "cannot count GPUs: no permission"


def test_the_session_is_shut_down_once_and_never_under_a_call_in_flight(nvml):
    lib = nvml("healthy_multi_gpu")
    entered, release = threading.Event(), threading.Event()

    def hang() -> None:
        entered.set()
        release.wait(10.0)

    lib.before["nvmlDeviceGetName"] = hang
    session = NvmlSession.open()
    read = session.reader()
    (gpu,) = session.gpus(read, [0])
    reading = threading.Thread(target=read.on(gpu.handle), args=("nvmlDeviceGetName",), daemon=True)
    reading.start()
    try:
        assert entered.wait(5.0)
        assert session.close() is False and "nvmlShutdown" not in lib.calls  # a wedged driver: left alone
    finally:
        release.set()
    reading.join(5.0)
    assert session.close() is True and session.close() is True
    assert lib.calls.count("nvmlShutdown") == 1 and session.closed


def test_a_sampler_handed_a_session_reads_through_it_and_leaves_it_open(nvml):
    lib = nvml("burn_healthy_8gpu")
    session = shared()
    identity = probe_nvml()  # who the GPUs are, as burn asks before it watches them
    sampler = Sampler([identity.gpus[2].uuid], clock=lib.clock, host=False, session=session)
    sampler.open()
    (sample,) = sampler.sample()
    sampler.close()
    assert sample.device == 2 and sample.temperature_c != NA()
    assert lib.calls.count(INIT) == 1 and "nvmlShutdown" not in lib.calls
    assert not session.closed
