"""The doctor's driver and GPU areas against named NVML scenarios, through the real CLI and the real
nvidia-ml-py wrappers (the fake sits at the C-function boundary: see tests/fakenvml.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from envcheck.cli import main


def doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["doctor", "driver", "gpu", "--json", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doc["checks"]}


def test_healthy_multi_gpu(nvml):
    nvml("healthy_multi_gpu")
    code, doc = doctor()
    checks = by_id(doc)
    assert code == 0
    assert doc["schema"] == "envcheck.doctor/1" and doc["status"] == "ok"
    # gpu.count reads this machine's PCI bus, which holds no NVIDIA GPU: it says so rather than pass.
    assert {c["status"] for c in doc["checks"] if c["id"] != "gpu.count"} == {"ok"}
    assert checks["gpu.count"]["status"] == "skip" and "no NVIDIA GPU on the PCI bus" in checks["gpu.count"]["summary"]
    assert checks["gpu.inventory"]["summary"] == "4 × NVIDIA H100 80GB HBM3 (cc 9.0, 80.0 GiB)"
    assert checks["driver.version"]["summary"] == "driver 550.54.15, supports CUDA ≤ 12.4"
    assert doc["driver"] == {"version": "550.54.15", "cuda_version": "12.4", "nvml_version": "12.550.54.15"}
    assert [g["index"] for g in doc["gpus"]] == [0, 1, 2, 3]
    first = doc["gpus"][0]
    assert first["uuid"] == "GPU-00000000-aaaa-bbbb-cccc-000000000000"
    assert first["pci_bus_id"] == "00000000:18:00.0"
    assert first["memory_total_bytes"] == 80 * 1024**3
    assert first["compute_capability"] == [9, 0]


def test_ecc_uncorrected_with_pending_row_remap_fails(nvml):
    nvml("ecc_uncorrected_row_remap")
    code, doc = doctor()
    checks = by_id(doc)
    assert code == 1 and doc["status"] == "fail"
    ecc = checks["gpu.ecc"]
    assert ecc["status"] == "fail"
    assert ecc["summary"] == "GPU 1 (00000000:19:00.0): 3 uncorrected ECC errors since boot, 7 over its life"
    assert "RMA" in ecc["fix"]["text"] and ecc["fix"]["command"] == "nvidia-smi -q -d ECC"
    remap = checks["gpu.retired_memory"]
    assert remap["status"] == "fail"
    assert "row remapping pending: a GPU reset is needed" in remap["summary"]
    assert "GPU 0" not in remap["summary"]
    assert "reset the GPU" in remap["fix"]["text"]


def test_a_gpu_throttling_now_fails_and_a_narrow_link_warns(nvml):
    """91 °C against an 87 °C slowdown threshold, with HW and SW thermal slowdown active: the GPU is slowing
    down now, a failure (as the burn and DCGM judge it), where it used to be a warning that left the
    healthcheck saying healthy."""
    nvml("thermal_throttle_pcie_downgrade")
    code, doc = doctor()
    checks = by_id(doc)
    assert code == 1 and doc["status"] == "fail"
    assert checks["gpu.throttle"]["status"] == "fail" and checks["gpu.temperature"]["status"] == "fail"
    assert checks["gpu.pcie"]["status"] == "warn"
    assert "HW thermal slowdown" in checks["gpu.throttle"]["summary"]
    assert "SW thermal slowdown" in checks["gpu.throttle"]["summary"]
    assert checks["gpu.pcie"]["summary"] == "GPU 0 (00000000:18:00.0): link x8 of x16"
    assert "reseat" in checks["gpu.pcie"]["fix"]["text"]
    assert checks["gpu.temperature"]["summary"] == (
        "GPU 0 (00000000:18:00.0): 91 °C, above its slowdown threshold of 87 °C"
    )


def test_idle_and_sw_power_cap_are_not_throttling(nvml):
    import pynvml

    lib = nvml("healthy_multi_gpu")
    lib.gpus[0].clocks_reasons = pynvml.nvmlClocksEventReasonGpuIdle | pynvml.nvmlClocksEventReasonSwPowerCap
    _, doc = doctor()
    assert by_id(doc)["gpu.throttle"]["status"] == "ok"


def test_pcie_generation_judged_only_under_load(nvml):
    lib = nvml("healthy_multi_gpu")
    lib.gpus[0].pcie_gen = (1, 5)  # idle: the link trains down to save power
    assert by_id(doctor()[1])["gpu.pcie"]["status"] == "ok"
    lib.gpus[0].util = (90, 40)
    pcie = by_id(doctor()[1])["gpu.pcie"]
    assert pcie["status"] == "warn" and "Gen1 of Gen5 under load" in pcie["summary"]


def test_gpu_lost_fails_and_other_gpus_still_reported(nvml):
    nvml("gpu_lost")
    code, doc = doctor()
    checks = by_id(doc)
    assert code == 1
    inventory = checks["gpu.inventory"]
    assert inventory["status"] == "fail"
    assert inventory["summary"].startswith("GPU 1 lost (fallen off the bus); 2 of 3 GPUs answer")
    assert "Xid 79" in inventory["fix"]["text"]
    assert [g["lost"] for g in doc["gpus"]] == [False, True, False]
    assert doc["gpus"][2]["name"] == "NVIDIA H100 80GB HBM3"
    # The healthy GPUs are still judged by every other check.
    assert checks["gpu.ecc"]["status"] == "ok" and set(checks["gpu.ecc"]["details"]["gpus"]) == {"0", "2"}


@pytest.mark.parametrize(
    ("scenario", "summary", "fix_words", "command"),
    [
        (
            "driver_library_mismatch",
            "driver/library version mismatch",
            "Reboot the machine",
            "sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia",
        ),
        ("driver_not_loaded", "kernel module is not loaded", "Secure Boot", "sudo modprobe nvidia"),
        ("no_permission", "no permission to open the NVIDIA devices", "/dev/nvidia*", "ls -l /dev/nvidia*"),
    ],
)
def test_nvml_init_failures_each_have_their_fix(nvml, scenario, summary, fix_words, command):
    nvml(scenario)
    code, doc = doctor()
    checks = by_id(doc)
    assert code == 1
    verdict = checks["driver.nvml"]
    assert verdict["status"] == "fail"
    assert summary in verdict["summary"]
    assert fix_words in verdict["fix"]["text"]
    assert verdict["fix"]["command"].startswith(command)
    assert doc["driver"] is None and doc["gpus"] == []
    # Every GPU check skips, pointing at driver.nvml, instead of repeating the failure.
    gpu_checks = [c for c in doc["checks"] if c["id"].startswith("gpu.")]
    assert gpu_checks and all(c["status"] == "skip" and "see driver.nvml" in c["summary"] for c in gpu_checks)


def test_no_library_is_a_cpu_machine_not_a_failure(nvml):
    nvml("no_library")
    code, doc = doctor(env={"NVIDIA_VISIBLE_DEVICES": ""})
    assert code == 0
    nvml_check = by_id(doc)["driver.nvml"]
    assert nvml_check["status"] == "skip"
    assert "CPU-only machine" in nvml_check["summary"]
    assert doc["driver"] is None and doc["gpus"] == []


def test_no_library_in_a_gpu_container_warns(nvml):
    nvml("no_library")
    code, doc = doctor(env={"NVIDIA_VISIBLE_DEVICES": "all"})
    nvml_check = by_id(doc)["driver.nvml"]
    assert code == 0 and nvml_check["status"] == "warn"
    assert "--gpus all" in nvml_check["fix"]["text"]


def test_geforce_without_ecc_is_not_available_not_failed(nvml):
    nvml("geforce_no_ecc")
    code, doc = doctor()
    checks = by_id(doc)
    assert code == 0 and doc["status"] == "ok"
    # not available is not "ok": each check that could read nothing says so, as a skip with the reason
    assert checks["gpu.ecc"]["status"] == "skip"
    assert "ECC mode or error counts not available (not supported" in checks["gpu.ecc"]["summary"]
    assert checks["gpu.ecc"]["details"]["gpus"]["0"]["mode"] == "not available"
    assert checks["gpu.retired_memory"]["status"] == "skip"
    assert checks["gpu.mig"]["status"] == "skip" and "MIG mode not available" in checks["gpu.mig"]["summary"]
    assert doc["gpus"][0]["ecc_mode_current"] is None


def test_mig_enabled_reported_and_pending_change_warned(nvml):
    nvml("mig_enabled")
    code, doc = doctor()
    mig = by_id(doc)["gpu.mig"]
    assert code == 0
    assert mig["status"] == "warn"
    assert mig["summary"] == "GPU 1 (00000000:19:00.0): MIG off, on pending a GPU reset"
    assert mig["details"]["gpus"]["0"] == {"current": True, "pending": True}


def test_other_process_holding_memory_warns_with_pid(nvml):
    nvml("other_process_memory")
    code, doc = doctor()
    checks = by_id(doc)
    assert code == 0
    memory = checks["gpu.memory"]
    assert memory["status"] == "warn"
    assert "GPU 0 (00000000:18:00.0): 70.0 GiB of 80.0 GiB held by pid 4242" in memory["summary"]
    assert "CUDA_VISIBLE_DEVICES" in memory["fix"]["text"]
    procs = memory["details"]["gpus"]["0"]["processes"]
    assert procs == [{"pid": 4242, "name": None, "used_bytes": 70 * 1024**3}]
    assert checks["gpu.utilization"]["summary"] == "GPU 0 (00000000:18:00.0): 97% busy"


def test_old_driver_warns_and_falls_back_to_older_functions(nvml):
    lib = nvml("old_driver")
    code, doc = doctor()
    checks = by_id(doc)
    assert code == 0
    version = checks["driver.version"]
    assert version["status"] == "warn"
    assert "driver 470.82.01, supports CUDA ≤ 11.4: too old" in version["summary"]
    assert "525.60.13" in version["fix"]["text"]
    assert "nvmlDeviceGetCurrentClocksEventReasons" in version["details"]["missing_functions"]
    # The throttle reasons still come through the pre-r535 function name.
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in lib.calls
    assert checks["gpu.throttle"]["status"] == "ok"
    assert checks["gpu.memory"]["details"]["gpus"]["0"]["processes"] == "not available"


def test_functions_missing_from_driver_are_not_available(nvml):
    nvml("missing_functions")
    code, doc = doctor()
    checks = by_id(doc)
    assert code == 0
    assert checks["driver.version"]["status"] == "warn"
    assert "cannot tell which CUDA version" in checks["driver.version"]["summary"]
    assert doc["driver"]["cuda_version"] is None
    assert checks["gpu.retired_memory"]["status"] == "ok"  # pages read; the rows not: it says so
    assert "not available: remapped_rows_pending" in checks["gpu.retired_memory"]["summary"]
    assert checks["gpu.mig"]["status"] == "skip"  # nothing read: not "ok"
    assert {"nvmlDeviceGetRemappedRows", "nvmlDeviceGetMigMode"} <= set(
        checks["driver.nvml"]["details"]["missing_functions"]
    )


def test_driver_answers_but_no_gpus(nvml):
    nvml("no_gpus")
    code, doc = doctor()
    assert by_id(doc)["gpu.inventory"]["status"] == "warn"
    assert code == 0


def test_text_report_for_a_failing_machine(nvml):
    nvml("ecc_uncorrected_row_remap")
    result = CliRunner().invoke(main, ["doctor", "driver", "gpu"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "Driver and NVML" in lines and "GPUs" in lines
    assert any(line.startswith("  [FAIL]  ECC memory errors: GPU 1") for line in lines)
    assert any("fix: Uncorrected ECC errors since boot: stop using this GPU" in line for line in lines)
    assert "run: nvidia-smi -q -d ECC" in result.stdout
    assert lines[-1].startswith("not ready: 2 problems")


# -- a pynvml module that is not nvidia-ml-py, through the installed command ---------------------------------

NVML_SITE = Path(__file__).parent.parent / "nvml_site"
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))

#: What an old copy of the bindings (the deprecated pynvml 11.x, a vendored file) does not have: the r535
#: clocks-event names, the version-mismatch error, per-code error classes, the _v3 process functions.
OLD_COPY_LACKS = (
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlClocksEventReasonGpuIdle",
    "nvmlClocksEventReasonHwSlowdown",
    "nvmlClocksEventReasonSwThermalSlowdown",
    "NVMLLibraryMismatchError",
    "NVMLError_NotSupported",
    "NVMLError_NoPermission",
    "NVMLError_GpuIsLost",
    "NVMLError_FunctionNotFound",
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetGraphicsRunningProcesses_v3",
    "nvmlDeviceGetMigMode",
)


def run_doctor(site: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The installed ``envcheck doctor --json`` with ``site`` first on PYTHONPATH (and the fake NVML after it)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    full.update({"PYTHONPATH": os.pathsep.join((str(site), str(NVML_SITE))), "NVIDIA_VISIBLE_DEVICES": "", **env})
    proc = subprocess.run([ENVCHECK, "doctor", "--json"], capture_output=True, text=True, env=full, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)  # strict: a NaN would fail here too
    assert proc.returncode == (1 if doc["status"] == "fail" else 0), proc.stderr
    assert not [c["id"] for c in doc["checks"] if c["status"] == "crash"]
    return proc, doc


def test_the_deprecated_pynvml_11_lacking_names_still_gives_the_report(tmp_path):
    import pynvml

    # The layout of pynvml 11.x: a package re-exporting pynvml/nvml.py, which shadows nvidia-ml-py's
    # pynvml.py; here nvml.py is nvidia-ml-py's own code without the names an old copy lacks.
    source = Path(pynvml.__file__).read_text()
    package = tmp_path / "pynvml"
    package.mkdir()
    (package / "__init__.py").write_text("from .nvml import *\n")
    (package / "nvml.py").write_text(source + "\n" + "".join(f"del {name}\n" for name in OLD_COPY_LACKS))
    info = tmp_path / "pynvml-11.4.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pynvml\nVersion: 11.4.1\n")
    (info / "RECORD").write_text("pynvml/__init__.py,,\npynvml/nvml.py,,\npynvml-11.4.1.dist-info/METADATA,,\n")

    _, doc = run_doctor(tmp_path, ENVCHECK_FAKE_NVML="thermal_throttle_pcie_downgrade")
    checks = by_id(doc)
    verdict = checks["packages.pynvml_deprecated"]
    assert verdict["status"] == "warn"
    assert verdict["summary"].startswith(f"the pynvml module at {package / '__init__.py'} (from pynvml 11.4.1) ")
    assert "lacks nvmlDeviceGetMigMode; " in verdict["summary"]
    assert (
        "nvmlDeviceGetComputeRunningProcesses and nvmlDeviceGetGraphicsRunningProcesses raised NameError"
        in (verdict["summary"])
    )
    assert verdict["summary"].endswith(": those readings are not available")
    assert verdict["details"]["missing"] == ["nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetMigMode"]
    assert verdict["fix"]["command"] == "pip uninstall -y pynvml && pip install --force-reinstall nvidia-ml-py"
    # What can be read is read: the GPUs, and the throttle reasons through the pre-r535 name.
    assert checks["gpu.inventory"]["summary"] == "2 × NVIDIA H100 80GB HBM3 (cc 9.0, 80.0 GiB)"
    assert checks["gpu.temperature"]["summary"] == (
        "GPU 0 (00000000:18:00.0): 91 °C, above its slowdown threshold of 87 °C"
    )
    assert "HW thermal slowdown" in checks["gpu.throttle"]["summary"]
    assert checks["gpu.memory"]["details"]["gpus"]["0"]["processes"] == "not available"
    assert (
        checks["gpu.mig"]["summary"].startswith(
            "GPU 0 (00000000:18:00.0): MIG mode not available (function missing from the installed pynvml"
        )
        and doc["gpus"][0]["mig_mode_current"] is None
    )


def test_a_pynvml_that_raises_on_import_still_gives_the_report(tmp_path):
    (tmp_path / "pynvml").mkdir()
    (tmp_path / "pynvml" / "__init__.py").write_text("raise ImportError('vendored NVML bindings: build first')\n")
    _, doc = run_doctor(tmp_path)
    checks = by_id(doc)
    verdict = checks["packages.pynvml_deprecated"]
    assert verdict["status"] == "warn"
    assert verdict["summary"] == (
        f"the pynvml module at {tmp_path / 'pynvml' / '__init__.py'} (installed by no distribution: a vendored "
        "copy, or a directory on PYTHONPATH) fails to import (ImportError: vendored NVML bindings: build first): "
        "the driver and GPUs could not be read"
    )
    assert verdict["fix"]["text"].startswith(f"Move {tmp_path / 'pynvml' / '__init__.py'} out of the way")
    driver = checks["driver.nvml"]
    assert driver["status"] == "warn" and "packages.pynvml_deprecated" in driver["fix"]["text"]
    assert all(c["status"] == "skip" for i, c in checks.items() if i.startswith("gpu."))
    assert doc["gpus"] == [] and doc["driver"] is None
