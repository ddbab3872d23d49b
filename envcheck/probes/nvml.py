"""Probe the NVIDIA driver and every GPU through NVML (NVIDIA's ``nvidia-ml-py``, imported as pynvml).

Every NVML call goes through :func:`query`, the one funnel that maps NVML's errors (cf. nvitop's
``nvmlQuery``): a reading the card or driver does not offer becomes :class:`NA` (GeForce has no ECC;
an older driver lacks newer functions), a lost GPU becomes a flag on that GPU so the others are still
reported. Failures of ``nvmlInit`` itself are classified into the distinct situations users meet, each
with its own fix in ``checks/driver.py``. GPUs are read through NVML only, never through torch, so
this probe works without torch and cannot initialise CUDA.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.model import NA, Fix
from envcheck.core.registry import probe

# Why a reading is missing, in words a person reads next to "N/A".
NOT_SUPPORTED = "not supported by this GPU or driver"
OLDER_DRIVER = "function missing from this (older) driver"
NO_PERMISSION = "no permission"


class GpuLost(Exception):
    """NVML says the GPU is lost (fallen off the bus, Xid 79): nothing more can be read from it."""


@dataclass
class ProcessUse:
    pid: int
    name: str | None
    used_bytes: int | None


@dataclass
class GpuInfo:
    index: int
    name: str | NA = NA()
    uuid: str | NA = NA()
    pci_bus_id: str | NA = NA()
    compute_capability: tuple[int, int] | NA = NA()
    memory_total_bytes: int | NA = NA()
    memory_used_bytes: int | NA = NA()
    memory_free_bytes: int | NA = NA()
    processes: list[ProcessUse] | NA = NA()
    utilization_gpu_pct: int | NA = NA()
    utilization_memory_pct: int | NA = NA()
    temperature_c: int | NA = NA()
    temperature_slowdown_c: int | NA = NA()
    power_draw_w: float | NA = NA()
    power_limit_w: float | NA = NA()
    power_default_limit_w: float | NA = NA()
    clocks_event_reasons: int | NA = NA()
    pcie_width_current: int | NA = NA()
    pcie_width_max: int | NA = NA()
    pcie_gen_current: int | NA = NA()
    pcie_gen_max: int | NA = NA()
    ecc_mode_current: bool | NA = NA()
    ecc_mode_pending: bool | NA = NA()
    ecc_volatile_uncorrected: int | NA = NA()
    ecc_aggregate_uncorrected: int | NA = NA()
    retired_pages_pending: bool | NA = NA()
    remapped_rows_correctable: int | NA = NA()
    remapped_rows_uncorrectable: int | NA = NA()
    remapped_rows_pending: bool | NA = NA()
    remapped_rows_failed: bool | NA = NA()
    persistence_mode: bool | NA = NA()
    compute_mode: str | NA = NA()
    mig_mode_current: bool | NA = NA()
    mig_mode_pending: bool | NA = NA()
    lost: bool = False
    lost_error: str | None = None


@dataclass
class NvmlState:
    """What NVML said. ``status`` is ``ok`` or one of the ways NVML fails to start."""

    status: str
    error: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)
    #: NVML functions this driver lacks (older than the bindings); said in details, never a failure.
    missing_functions: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.status == "ok"


#: nvmlInit error class name -> the status the driver check judges.
INIT_FAILURES = {
    "NVMLError_LibraryNotFound": "no_library",
    "NVMLError_DriverNotLoaded": "driver_not_loaded",
    "NVMLError_LibRmVersionMismatch": "driver_library_mismatch",
    "NVMLError_NoPermission": "no_permission",
}

COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


def query(fn: Any, *args: Any, missing: list[str] | None = None) -> Any:
    """Call one NVML function and map its errors: the one funnel every reading goes through."""
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError_GpuIsLost as exc:
        raise GpuLost(str(exc)) from exc
    except pynvml.NVMLError_NotSupported:
        return NA(NOT_SUPPORTED)
    except (pynvml.NVMLError_FunctionNotFound, pynvml.NVMLLibraryMismatchError):
        if missing is not None and fn.__name__ not in missing:
            missing.append(fn.__name__)
        return NA(OLDER_DRIVER)
    except pynvml.NVMLError_NoPermission:
        return NA(NO_PERMISSION)
    except pynvml.NVMLError as exc:
        return NA(f"NVML error: {exc}")


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _cuda_version(code: int) -> str:
    """NVML encodes CUDA 12.4 as 12040."""
    return f"{code // 1000}.{(code % 1000) // 10}"


@probe(
    "nvml",
    timeout_s=15.0,
    what="NVML (the NVIDIA driver library)",
    hang_fix=Fix(
        "The NVIDIA driver is not answering. Check `dmesg` for driver errors (Xid) and whether `nvidia-smi` "
        "hangs too; a wedged driver usually needs the node drained and rebooted.",
        "sudo dmesg -T | grep -iE 'nvrm|xid' | tail",
    ),
)
def probe_nvml(env: Any = None) -> NvmlState:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        status = INIT_FAILURES.get(type(exc).__name__, "error")
        return NvmlState(status=status, error=f"{type(exc).__name__}: {exc}")
    try:
        return _read_all(pynvml)
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _read_all(pynvml: Any) -> NvmlState:
    missing: list[str] = []
    state = NvmlState(status="ok", missing_functions=missing)
    version = query(pynvml.nvmlSystemGetDriverVersion, missing=missing)
    state.driver_version = _text(version) if not isinstance(version, NA) else None
    cuda = query(pynvml.nvmlSystemGetCudaDriverVersion, missing=missing)
    state.cuda_driver_version = _cuda_version(cuda) if not isinstance(cuda, NA) else None
    nvml_version = query(pynvml.nvmlSystemGetNVMLVersion, missing=missing)
    state.nvml_version = _text(nvml_version) if not isinstance(nvml_version, NA) else None
    count = query(pynvml.nvmlDeviceGetCount, missing=missing)
    if isinstance(count, NA):
        state.status, state.error = "error", f"cannot count GPUs: {count.reason}"
        return state
    for index in range(count):
        gpu = GpuInfo(index=index)
        try:
            _read_gpu(pynvml, index, gpu, missing)
        except GpuLost as exc:
            gpu.lost, gpu.lost_error = True, str(exc)
        state.gpus.append(gpu)
    return state


def _read_gpu(pynvml: Any, index: int, gpu: GpuInfo, missing: list[str]) -> None:
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except pynvml.NVMLError_GpuIsLost as exc:
        raise GpuLost(str(exc)) from exc
    except pynvml.NVMLError as exc:
        # A GPU NVML counts but cannot open is as good as lost for work; say what NVML said.
        raise GpuLost(f"cannot open GPU {index}: {exc}") from exc

    def q(fn: Any, *args: Any) -> Any:
        return query(fn, handle, *args, missing=missing)

    gpu.name = _text(q(pynvml.nvmlDeviceGetName))
    gpu.uuid = _text(q(pynvml.nvmlDeviceGetUUID))
    pci = q(pynvml.nvmlDeviceGetPciInfo)
    if not isinstance(pci, NA):
        gpu.pci_bus_id = _text(pci.busId)
    cc = q(pynvml.nvmlDeviceGetCudaComputeCapability)
    gpu.compute_capability = tuple(cc) if not isinstance(cc, NA) else cc
    mem = q(pynvml.nvmlDeviceGetMemoryInfo)
    if not isinstance(mem, NA):
        gpu.memory_total_bytes, gpu.memory_used_bytes, gpu.memory_free_bytes = mem.total, mem.used, mem.free
    gpu.processes = _processes(q, pynvml)
    util = q(pynvml.nvmlDeviceGetUtilizationRates)
    if not isinstance(util, NA):
        gpu.utilization_gpu_pct, gpu.utilization_memory_pct = util.gpu, util.memory
    gpu.temperature_c = q(pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU)
    gpu.temperature_slowdown_c = q(pynvml.nvmlDeviceGetTemperatureThreshold, pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
    gpu.power_draw_w = _watts(q(pynvml.nvmlDeviceGetPowerUsage))
    gpu.power_limit_w = _watts(q(pynvml.nvmlDeviceGetEnforcedPowerLimit))
    gpu.power_default_limit_w = _watts(q(pynvml.nvmlDeviceGetPowerManagementDefaultLimit))
    reasons = q(pynvml.nvmlDeviceGetCurrentClocksEventReasons)
    if isinstance(reasons, NA) and reasons.reason == OLDER_DRIVER:
        # Drivers before r535 only know the old name; the bit values are the same.
        reasons = q(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons)
    gpu.clocks_event_reasons = reasons
    gpu.pcie_width_current = q(pynvml.nvmlDeviceGetCurrPcieLinkWidth)
    gpu.pcie_width_max = q(pynvml.nvmlDeviceGetMaxPcieLinkWidth)
    gpu.pcie_gen_current = q(pynvml.nvmlDeviceGetCurrPcieLinkGeneration)
    gpu.pcie_gen_max = q(pynvml.nvmlDeviceGetMaxPcieLinkGeneration)
    ecc = q(pynvml.nvmlDeviceGetEccMode)
    if not isinstance(ecc, NA):
        gpu.ecc_mode_current, gpu.ecc_mode_pending = bool(ecc[0]), bool(ecc[1])
        if gpu.ecc_mode_current:
            unc = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
            gpu.ecc_volatile_uncorrected = q(pynvml.nvmlDeviceGetTotalEccErrors, unc, pynvml.NVML_VOLATILE_ECC)
            gpu.ecc_aggregate_uncorrected = q(pynvml.nvmlDeviceGetTotalEccErrors, unc, pynvml.NVML_AGGREGATE_ECC)
    else:
        gpu.ecc_mode_current = gpu.ecc_mode_pending = ecc
    pending = q(pynvml.nvmlDeviceGetRetiredPagesPendingStatus)
    gpu.retired_pages_pending = bool(pending) if not isinstance(pending, NA) else pending
    rows = q(pynvml.nvmlDeviceGetRemappedRows)
    if not isinstance(rows, NA):
        corr, unc_rows, pend, failed = rows
        gpu.remapped_rows_correctable, gpu.remapped_rows_uncorrectable = corr, unc_rows
        gpu.remapped_rows_pending, gpu.remapped_rows_failed = bool(pend), bool(failed)
    else:
        gpu.remapped_rows_pending = gpu.remapped_rows_failed = rows
    if sys.platform.startswith("linux"):
        persistence = q(pynvml.nvmlDeviceGetPersistenceMode)
        gpu.persistence_mode = bool(persistence) if not isinstance(persistence, NA) else persistence
    mode = q(pynvml.nvmlDeviceGetComputeMode)
    gpu.compute_mode = COMPUTE_MODES.get(mode, str(mode)) if not isinstance(mode, NA) else mode
    mig = q(pynvml.nvmlDeviceGetMigMode)
    if not isinstance(mig, NA):
        gpu.mig_mode_current, gpu.mig_mode_pending = bool(mig[0]), bool(mig[1])
    else:
        gpu.mig_mode_current = gpu.mig_mode_pending = mig


def _watts(milliwatts: Any) -> Any:
    return milliwatts / 1000.0 if not isinstance(milliwatts, NA) else milliwatts


def _processes(q: Any, pynvml: Any) -> list[ProcessUse] | NA:
    """Compute and graphics processes holding memory on this GPU, merged by pid."""
    merged: dict[int, ProcessUse] = {}
    answers = [q(pynvml.nvmlDeviceGetComputeRunningProcesses), q(pynvml.nvmlDeviceGetGraphicsRunningProcesses)]
    if all(isinstance(a, NA) for a in answers):
        return answers[0]
    for answer in answers:
        if isinstance(answer, NA):
            continue
        for proc in answer:
            if proc.pid not in merged:
                merged[proc.pid] = ProcessUse(proc.pid, _process_name(proc.pid), proc.usedGpuMemory)
    return list(merged.values())


def _process_name(pid: int) -> str | None:
    """The process's name where this PID namespace can see it (inside a container it often cannot)."""
    import psutil

    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError):
        return None
