"""The GPU and driver checks' thresholds and verdicts, pinned in numbers a person can check by hand, over
the fake NVML library (tests/fakenvml.py) and the real probe: where each check tips from ok to a warning,
what a refused reading does, and ECC errors that only the lifetime counter holds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from envcheck.cli import main
from tests import fakenvml


def checks(*areas: str) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(main, ["doctor", *(areas or ("driver", "gpu")), "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return {c["id"]: c for c in json.loads(result.stdout)["checks"]}


# -- thresholds ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "temp, status",
    # warn from 5 °C below the 87 °C slowdown threshold; above it the GPU is slowing down now: fail
    [(81, "ok"), (82, "warn"), (87, "warn"), (88, "fail"), (95, "fail")],
)
def test_temperature_warns_five_degrees_before_slowdown_and_fails_above_it(nvml, temp, status):
    nvml("healthy_multi_gpu").gpus[0].temp = temp
    result = checks()["gpu.temperature"]
    assert result["status"] == status
    if status == "warn":
        assert result["summary"] == f"GPU 0 (00000000:18:00.0): {temp} °C, slowdown at 87 °C"
    if status == "fail":
        assert result["summary"] == f"GPU 0 (00000000:18:00.0): {temp} °C, above its slowdown threshold of 87 °C"


def test_temperature_is_judged_against_slowdown_not_shutdown_or_max_operating(nvml):
    # 86 °C is within 5 °C of the 90 °C slowdown (warn), not of the 92 °C shutdown (would be ok), and
    # the summary names 90 °C, not the 83 °C maximum operating temperature.
    lib = nvml("healthy_multi_gpu")
    lib.gpus[0].temp_thresholds = fakenvml.thresholds(slowdown=90, shutdown=92, gpu_max=83, mem_max=95)
    lib.gpus[0].temp = 86
    assert checks()["gpu.temperature"]["summary"] == "GPU 0 (00000000:18:00.0): 86 °C, slowdown at 90 °C"
    lib.gpus[0].temp = 84  # above the 83 °C maximum, but 6 °C below slowdown: fine
    assert checks()["gpu.temperature"]["status"] == "ok"


@pytest.mark.parametrize(
    "limit_mw, status",
    [(665_000, "ok"), (664_000, "warn")],  # 95 % of the 700 W default is 665 W
)
def test_power_cap_warns_below_95_percent_of_the_default(nvml, limit_mw, status):
    nvml("healthy_multi_gpu").gpus[0].power_limit_mw = limit_mw
    result = checks()["gpu.power"]
    assert result["status"] == status
    if status == "warn":
        assert result["summary"] == "GPU 0 (00000000:18:00.0): power capped at 664 W of the default 700 W"


@pytest.mark.parametrize("used_gib, status", [(39, "ok"), (40, "warn")])  # half of 80 GiB is 40 GiB
def test_memory_held_by_another_process_warns_from_half_the_gpu(nvml, used_gib, status):
    gpu = nvml("healthy_multi_gpu").gpus[0]
    gpu.memory_used, gpu.processes = (used_gib + 1) * 1024**3, [(4242, used_gib * 1024**3)]
    result = checks()["gpu.memory"]
    assert result["status"] == status
    if status == "warn":
        assert result["summary"].startswith("GPU 0 (00000000:18:00.0): 40.0 GiB of 80.0 GiB held by pid 4242")
        assert result["summary"].count("40.0 GiB") == 1  # one process: its figure is said once


def test_memory_held_by_several_processes_names_each_share(nvml):
    gpu = nvml("healthy_multi_gpu").gpus[0]
    gpu.memory_used, gpu.processes = 61 * 1024**3, [(4242, 40 * 1024**3), (4343, 20 * 1024**3)]
    summary = checks()["gpu.memory"]["summary"]
    assert summary.startswith("GPU 0 (00000000:18:00.0): 60.0 GiB of 80.0 GiB held by pid 4242 (")
    assert ") 40.0 GiB, pid 4343 (" in summary and summary.endswith(") 20.0 GiB")


@pytest.mark.parametrize("busy, status", [(49, "ok"), (50, "warn")])
def test_utilization_warns_from_half_busy(nvml, busy, status):
    nvml("healthy_multi_gpu").gpus[0].util = (busy, 10)
    assert checks()["gpu.utilization"]["status"] == status


def test_memory_sizes_are_binary_gibibytes(nvml):
    # A card of 24 GB (decimal, 24 * 1000**3 bytes) is 22.35 GiB: shown in GiB, rounded down to a tenth.
    lib = nvml("geforce_no_ecc")
    lib.gpus[0].memory_total = 24 * 1000**3
    assert checks()["gpu.inventory"]["summary"] == "1 × NVIDIA GeForce RTX 4090 (cc 8.9, 22.3 GiB)"
    lib.gpus[0].memory_total = 24 * 1024**3
    assert checks()["gpu.inventory"]["summary"] == "1 × NVIDIA GeForce RTX 4090 (cc 8.9, 24.0 GiB)"


@pytest.mark.parametrize(
    "cuda, status",
    [(12000, "ok"), (11080, "warn")],  # current torch builds need a CUDA 12 driver (minor-version compat)
)
def test_driver_too_old_for_current_torch_from_cuda_below_12(nvml, cuda, status):
    nvml("healthy_multi_gpu").cuda_version = cuda
    result = checks()["driver.version"]
    assert result["status"] == status
    if status == "warn":
        assert "supports CUDA ≤ 11.8: too old for current PyTorch builds" in result["summary"]
        assert "525.60.13" in result["fix"]["text"]


# -- ECC errors in the lifetime counter only ---------------------------------------------------------------


def test_ecc_errors_only_over_the_gpus_life_warn_with_their_count(nvml):
    nvml("ecc_lifetime_only")
    ecc = checks()["gpu.ecc"]
    assert ecc["status"] == "warn"
    assert ecc["summary"] == "GPU 1 (00000000:19:00.0): 5 uncorrected ECC errors over its life, none since boot"
    assert "A reset cannot clear this count" in ecc["fix"]["text"]
    assert ecc["fix"]["command"] == "nvidia-smi -q -d ECC,ROW_REMAPPER"
    assert ecc["details"]["gpus"]["1"]["aggregate_uncorrected"] == 5
    assert ecc["details"]["gpus"]["1"]["volatile_uncorrected"] == 0


def test_ecc_errors_since_boot_fail_even_when_corrected_errors_are_many(nvml):
    gpu = nvml("healthy_multi_gpu").gpus[2]
    gpu.ecc = fakenvml.ecc_counts(volatile_unc=1, aggregate_unc=1, volatile_corr=900, aggregate_corr=9000)
    ecc = checks()["gpu.ecc"]
    assert ecc["status"] == "fail"
    assert ecc["summary"] == "GPU 2 (00000000:1A:00.0): 1 uncorrected ECC errors since boot, 1 over its life"
    assert ecc["fix"]["text"].startswith("Uncorrected ECC errors since boot: stop using this GPU")


def test_corrected_ecc_errors_alone_are_fine(nvml):
    gpu = nvml("healthy_multi_gpu").gpus[0]
    gpu.ecc = fakenvml.ecc_counts(volatile_corr=5000, aggregate_corr=80000)
    assert checks()["gpu.ecc"]["status"] == "ok"


# -- readings the driver refuses ---------------------------------------------------------------------------


def test_refused_memory_and_process_readings_warn_and_say_how_to_get_them(nvml):
    nvml("readings_refused_mig")
    memory = checks()["gpu.memory"]
    assert memory["status"] == "warn"
    assert memory["summary"] == (
        "GPU 0 (00000000:18:00.0): the driver refused to read its memory use or its processes (no permission)"
    )
    assert "Insufficient Permissions" in memory["fix"]["text"] and "MIG-enabled GPU" in memory["fix"]["text"]
    assert memory["fix"]["command"] == "sudo nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv"
    assert memory["details"]["gpus"]["0"]["processes"] == "refused"
    assert memory["details"]["gpus"]["1"]["processes"] == []


def test_a_refusal_next_to_a_real_problem_keeps_both(nvml):
    lib = nvml("readings_refused_mig")
    lib.gpus[1].memory_used, lib.gpus[1].processes = 72 * 1024**3, [(4242, 70 * 1024**3)]
    memory = checks()["gpu.memory"]
    assert "GPU 1 (00000000:19:00.0): 70.0 GiB of 80.0 GiB held by pid 4242" in memory["summary"]
    assert "GPU 0 (00000000:18:00.0): the driver refused" in memory["summary"]
    assert memory["fix"]["text"].startswith("Someone else's job holds this GPU")
    assert "Insufficient Permissions" in memory["fix"]["text"]


def test_every_refused_per_gpu_reading_is_a_warning_in_the_check_that_needs_it(nvml):
    lib = nvml("healthy_multi_gpu")
    per_gpu = [name[2:] for name in dir(fakenvml.FakeNvmlLib) if name.startswith("c_nvmlDevice")]
    per_gpu = [n for n in per_gpu if n not in ("nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2")]
    lib.gpus[0].errors = dict.fromkeys(per_gpu, fakenvml.NO_PERMISSION)
    results = checks("gpu")
    judged = {i: c for i, c in results.items() if i != "gpu.required"}
    assert judged and {c["status"] for c in judged.values()} == {"warn"}
    for result in judged.values():
        assert "GPU 0 (00000000:18:00.0)" not in result["summary"]  # its bus id was refused too
        assert "refused" in result["summary"] and "no permission" in result["summary"]
        assert "Insufficient Permissions" in result["fix"]["text"]
        assert result["fix"]["command"].split()[:2] == ["sudo", "nvidia-smi"]  # the same query, as root


def test_a_gpu_the_driver_refuses_to_open_is_a_warning_not_a_lost_gpu(nvml):
    nvml("device_node_refused")
    results = checks()
    inventory = results["gpu.inventory"]
    assert inventory["status"] == "warn"
    assert inventory["summary"] == "the driver refused to open GPU 1 (no permission); 1 of 2 GPUs answer"
    assert "/dev/nvidia" in inventory["fix"]["text"] and "lost" not in inventory["summary"]
    assert set(results["gpu.ecc"]["details"]["gpus"]) == {"0"}


def test_gpu_required_counts_only_gpus_that_answer(nvml):
    lib = nvml("device_node_refused")
    assert checks("gpu.required")["gpu.required"]["summary"] == "1 GPU(s) answer"
    lib.gpus[0].errors["nvmlDeviceGetHandleByIndex_v2"] = lib.gpus[1].errors["nvmlDeviceGetHandleByIndex_v2"]
    required = checks("gpu.required")
    assert list(required) == ["gpu.required"]  # naming the opt-in check runs it, and only it
    assert required["gpu.required"]["status"] == "fail"
    assert "each is lost or refused to this user" in required["gpu.required"]["summary"]


def test_a_broken_binding_opening_a_gpu_is_not_a_lost_card(nvml, monkeypatch):
    import pynvml

    nvml("healthy_multi_gpu")

    def broken(index):
        raise TypeError("an old vendored copy cannot marshal this")

    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", broken)
    results = checks("gpu.inventory")
    assert "lost" not in results["gpu.inventory"]["summary"]
    assert results["gpu.inventory"]["status"] != "fail"


def test_a_gen5_gpu_in_a_gen4_slot_warns_even_at_idle(nvml):
    """The generation the link runs at now drops at idle, but the highest it can reach (the lower of the
    GPU's and the slot's) does not: a Gen5 H100 in a Gen4 slot gets half its host bandwidth."""
    lib = nvml("healthy_multi_gpu")
    lib.gpus[1].pcie_gen, lib.gpus[1].pcie_gen_gpu_max = (1, 4), 5  # idle (Gen1 now), slot Gen4, GPU Gen5
    pcie = checks()["gpu.pcie"]
    assert pcie["status"] == "warn"
    assert pcie["summary"] == "GPU 1 (00000000:19:00.0): the slot allows Gen4, the GPU Gen5"
    assert "older PCIe generation" in pcie["fix"]["text"]


@pytest.mark.parametrize(
    ("reasons", "status"),
    [
        (fakenvml.REASON_SW_THERMAL, "warn"),  # the driver easing off: clears by itself
        (fakenvml.REASON_HW_THERMAL, "fail"),  # the hardware slowing the GPU now, as DCGM and the burn fail it
        (fakenvml.REASON_HW_THERMAL | fakenvml.REASON_SW_THERMAL, "fail"),
    ],
)
def test_a_hardware_slowdown_fails_and_a_software_one_alone_warns(nvml, reasons, status):
    nvml("healthy_multi_gpu").gpus[2].clocks_reasons = reasons
    assert checks()["gpu.throttle"]["status"] == status
