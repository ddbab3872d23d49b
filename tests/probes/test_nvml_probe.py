"""The NVML probe over the fake library (tests/fakenvml.py): the fake answers each selector the way the
driver does, the probe asks for the right ones, and a pynvml module that is not nvidia-ml-py (one that
lacks names, fails to import, or is not there) is reported, never raised."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from envcheck.core.model import NA
from envcheck.probes.nvml.inventory import probe_nvml
from tests import fakenvml


def handle(index: int = 0):
    import pynvml

    pynvml.nvmlInit()
    return pynvml.nvmlDeviceGetHandleByIndex(index)


# -- the fake honours selector arguments, through the real nvidia-ml-py wrappers -----------------------


def test_fake_ecc_counts_differ_by_error_type_and_counter(nvml):
    import pynvml

    nvml("healthy_multi_gpu").gpus[0].ecc = fakenvml.ecc_counts(
        volatile_unc=1, aggregate_unc=2, volatile_corr=3, aggregate_corr=4
    )
    h = handle()
    # nvml.h: error type 0 corrected, 1 uncorrected; counter 0 volatile, 1 aggregate.
    assert [pynvml.nvmlDeviceGetTotalEccErrors(h, t, c) for t in (1, 0) for c in (0, 1)] == [1, 2, 3, 4]
    with pytest.raises(pynvml.NVMLError) as bad:
        pynvml.nvmlDeviceGetTotalEccErrors(h, 1, 2)
    assert bad.value.value == 2  # NVML_ERROR_INVALID_ARGUMENT


def test_fake_temperature_thresholds_differ_by_kind(nvml):
    import pynvml

    nvml("healthy_multi_gpu").gpus[0].temp_thresholds = fakenvml.thresholds(
        shutdown=92, slowdown=90, gpu_max=83, mem_max=95
    )
    h = handle()
    # nvml.h: 0 shutdown, 1 slowdown, 2 memory max, 3 GPU max.
    assert [pynvml.nvmlDeviceGetTemperatureThreshold(h, kind) for kind in (0, 1, 2, 3)] == [92, 90, 95, 83]
    with pytest.raises(pynvml.NVMLError) as unsupported:
        pynvml.nvmlDeviceGetTemperatureThreshold(h, 4)  # acoustic minimum: not on this board
    assert unsupported.value.value == 3  # NVML_ERROR_NOT_SUPPORTED
    with pytest.raises(pynvml.NVMLError) as bad:
        pynvml.nvmlDeviceGetTemperatureThreshold(h, 8)  # past NVML_TEMPERATURE_THRESHOLD_COUNT
    assert bad.value.value == 2


def test_fake_temperature_answers_only_the_gpu_sensor(nvml):
    import pynvml

    nvml("healthy_multi_gpu").gpus[0].temp = 41
    h = handle()
    assert pynvml.nvmlDeviceGetTemperature(h, 0) == 41  # NVML_TEMPERATURE_GPU, the only sensor nvml.h defines
    with pytest.raises(pynvml.NVMLError) as bad:
        pynvml.nvmlDeviceGetTemperature(h, 1)
    assert bad.value.value == 2


# -- the probe asks for the right ones ------------------------------------------------------------------


def test_probe_reads_the_slowdown_threshold_not_shutdown_or_max(nvml):
    nvml("healthy_multi_gpu").gpus[0].temp_thresholds = fakenvml.thresholds(
        shutdown=92, slowdown=90, gpu_max=83, mem_max=95
    )
    gpu = probe_nvml().gpus[0]
    assert (gpu.temperature_c, gpu.temperature_slowdown_c) == (34, 90)


def test_probe_reads_uncorrected_errors_from_each_counter(nvml):
    nvml("healthy_multi_gpu").gpus[0].ecc = fakenvml.ecc_counts(
        volatile_unc=1, aggregate_unc=2, volatile_corr=3, aggregate_corr=4
    )
    gpu = probe_nvml().gpus[0]
    assert (gpu.ecc_volatile_uncorrected, gpu.ecc_aggregate_uncorrected) == (1, 2)


# -- readings the driver refuses ------------------------------------------------------------------------


def test_refused_readings_are_kept_apart_from_unsupported_ones(nvml):
    nvml("readings_refused_mig")
    gpu, other = probe_nvml().gpus
    assert gpu.memory_used_bytes == NA("no permission") and gpu.processes == NA("no permission")
    assert gpu.temperature_c == 34 and gpu.mig_mode_current is True
    assert other.memory_used_bytes == 1024**3 and other.processes == []


def test_a_gpu_the_driver_refuses_to_open_is_not_lost(nvml):
    nvml("device_node_refused")
    gpus = probe_nvml().gpus
    assert [(g.lost, g.refused) for g in gpus] == [(False, False), (False, True)]


# -- a pynvml module that is not nvidia-ml-py --------------------------------------------------------


@pytest.fixture
def foreign_pynvml(monkeypatch):
    """The pynvml this process imports becomes a copy of nvidia-ml-py's without ``lacks`` (as an old
    or vendored copy is); its functions still talk to the fake library."""
    import pynvml

    def use(lacks: set[str], path: str = "vendored/pynvml/__init__.py") -> types.ModuleType:
        copy = types.ModuleType("pynvml")
        copy.__dict__.update({k: v for k, v in vars(pynvml).items() if k not in lacks and not k.startswith("__")})
        copy.__file__ = path
        monkeypatch.setitem(sys.modules, "pynvml", copy)
        fakenvml.fresh_session(monkeypatch)
        return copy

    return use


OLD_COPY_LACKS = {
    # What pynvml 11.x and older vendored copies do not have: the r535 names, the version-mismatch error,
    # the per-code error classes.
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlClocksEventReasonGpuIdle",
    "nvmlClocksEventReasonHwSlowdown",
    "NVMLLibraryMismatchError",
    "NVMLError_NotSupported",
    "NVMLError_NoPermission",
    "NVMLError_GpuIsLost",
    "NVMLError_FunctionNotFound",
    "nvmlDeviceGetMigMode",
}


def test_a_module_lacking_names_still_reads_what_it_can(nvml, foreign_pynvml):
    lib = nvml("thermal_throttle_pcie_downgrade")
    foreign_pynvml(OLD_COPY_LACKS)
    state = probe_nvml()
    assert state.available and len(state.gpus) == 2
    gpu = state.gpus[0]
    assert gpu.name == "NVIDIA H100 80GB HBM3" and gpu.temperature_c == 91
    # The throttle reasons come through the pre-r535 name; the bits are the same (0x20 | 0x40).
    assert gpu.clocks_event_reasons == 0x60 and "nvmlDeviceGetCurrentClocksThrottleReasons" in lib.calls
    assert gpu.mig_mode_current == NA("function missing from the installed pynvml module")
    assert state.bindings.missing == ["nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetMigMode"]
    assert state.bindings.lacking == ["nvmlDeviceGetMigMode"]
    assert state.bindings.path == "vendored/pynvml/__init__.py"


def test_errors_are_told_apart_by_code_without_the_error_classes(nvml, foreign_pynvml):
    nvml("geforce_no_ecc")
    foreign_pynvml(OLD_COPY_LACKS)
    gpu = probe_nvml().gpus[0]
    assert gpu.ecc_mode_current == NA("not supported by this GPU or driver")
    nvml("gpu_lost")
    assert [g.lost for g in probe_nvml().gpus] == [False, True, False]
    nvml("readings_refused_mig")
    assert probe_nvml().gpus[0].processes == NA("no permission")


def test_a_module_lacking_the_core_functions_is_broken_not_a_crash(nvml, foreign_pynvml):
    nvml("healthy_multi_gpu")
    foreign_pynvml({"nvmlInit", "nvmlDeviceGetCount"})
    state = probe_nvml()
    assert state.status == "bindings_broken" and state.error == "the pynvml module lacks nvmlInit, nvmlDeviceGetCount"
    assert state.gpus == []


def test_a_wrapper_that_raises_something_else_is_a_reading_not_available(nvml, foreign_pynvml):
    nvml("healthy_multi_gpu")
    copy = foreign_pynvml(set())

    def broken(handle):
        raise NameError("name 'nvmlDeviceGetComputeRunningProcesses_v3' is not defined")

    copy.nvmlDeviceGetComputeRunningProcesses = broken
    state = probe_nvml()
    assert isinstance(state.gpus[0].processes, NA) and state.gpus[0].memory_used_bytes == 1024**3
    error = "NameError: name 'nvmlDeviceGetComputeRunningProcesses_v3' is not defined"
    assert state.bindings.failing == {"nvmlDeviceGetComputeRunningProcesses": error}


def test_a_module_that_raises_on_import_is_reported(tmp_path: Path, monkeypatch):
    (tmp_path / "pynvml").mkdir()
    (tmp_path / "pynvml" / "__init__.py").write_text("raise RuntimeError('this copy needs a newer Python')\n")
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    fakenvml.fresh_session(monkeypatch)
    state = probe_nvml()
    assert state.status == "bindings_broken"
    assert state.bindings.import_error == "RuntimeError: this copy needs a newer Python"
    assert state.bindings.path == str(tmp_path / "pynvml" / "__init__.py")


def test_no_pynvml_module_at_all(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail as if it were not installed
    fakenvml.fresh_session(monkeypatch)
    state = probe_nvml()
    assert state.status == "no_bindings" and state.bindings.import_error is None
