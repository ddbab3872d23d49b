"""Probe the NVIDIA driver and every GPU through NVML (NVIDIA's ``nvidia-ml-py``, imported as pynvml).

A reader over the process's NVML session (:mod:`envcheck.probes.nvml.session`): NVML is started there, the GPUs
are opened and classified there (lost, refused to this user), and every reading goes through its funnel, which
turns what the card or driver does not offer into :class:`NA`. This probe turns the readings into one
:class:`GpuInfo` per GPU, so that a lost GPU is a flag on that GPU and the others are still reported. GPUs are
read through NVML only, never through torch, so this probe works without torch and cannot initialise CUDA.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.model import NA, Fix, displayable
from envcheck.probes.nvml.constants import (
    AGGREGATE_ECC,
    COMPUTE_MODES,
    MEMORY_ERROR_TYPE_UNCORRECTED,
    TEMPERATURE_GPU,
    TEMPERATURE_THRESHOLD_SLOWDOWN,
    VOLATILE_ECC,
)
from envcheck.probes.nvml.session import (
    NO_PERMISSION,
    NOT_IN_BINDINGS,
    OLDER_DRIVER,
    Bindings,
    GpuLost,
    NoCount,
    NvmlSession,
    as_text,
    shared,
)
from envcheck.probes.registry import probe


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
    #: The GPU's own highest generation; ``pcie_gen_max`` is the link's (the lower of the GPU's and the slot's).
    pcie_gen_gpu_max: int | NA = NA()
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
    #: The driver refused to open this GPU for this user (NVML_ERROR_NO_PERMISSION on its handle).
    refused: bool = False

    @property
    def answers(self) -> bool:
        """The GPU is there and the driver lets this user read it (neither lost nor refused)."""
        return not self.lost and not self.refused


@dataclass
class NvmlState:
    """What NVML said. ``status`` is ``ok`` or one of the ways NVML fails to start (``no_bindings`` and
    ``bindings_broken``: the pynvml module is missing, or does not import, or lacks NVML's core functions)."""

    status: str
    error: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)
    #: NVML functions this driver lacks (older than the bindings); said in details, never a failure.
    missing_functions: list[str] = field(default_factory=list)
    bindings: Bindings = field(default_factory=Bindings)

    @property
    def available(self) -> bool:
        return self.status == "ok"


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
    session = shared()
    state = NvmlState(status=session.status, error=session.error, bindings=session.bindings.copy())
    if session.available:
        _read_all(session, state)
    return state


def _read_all(session: NvmlSession, state: NvmlState) -> NvmlState:
    read = session.reader(missing=state.missing_functions, failing=state.bindings.failing)
    version = read("nvmlSystemGetDriverVersion")
    state.driver_version = as_text(version) if not isinstance(version, NA) else None
    cuda = read("nvmlSystemGetCudaDriverVersion")
    state.cuda_driver_version = _cuda_version(cuda) if not isinstance(cuda, NA) else None
    nvml_version = read("nvmlSystemGetNVMLVersion")
    state.nvml_version = as_text(nvml_version) if not isinstance(nvml_version, NA) else None
    try:
        opened = session.gpus(read)
    except NoCount as exc:
        state.status, state.error = "error", str(exc)
        return state
    for nvml_gpu in opened:
        gpu = GpuInfo(index=nvml_gpu.index, refused=nvml_gpu.refused is not None)
        lost = nvml_gpu.lost
        if lost is None and nvml_gpu.handle is not None:
            try:
                _read_gpu(read.on(nvml_gpu.handle), gpu)
            except GpuLost as exc:
                lost = str(exc)
        gpu.lost, gpu.lost_error = lost is not None, lost
        state.gpus.append(gpu)
    return state


def _cuda_version(code: int) -> str:
    """NVML encodes CUDA 12.4 as 12040."""
    return f"{code // 1000}.{(code % 1000) // 10}"


def _read_gpu(q: Callable[..., Any], gpu: GpuInfo) -> None:
    gpu.name = as_text(q("nvmlDeviceGetName"))
    gpu.uuid = as_text(q("nvmlDeviceGetUUID"))
    pci = q("nvmlDeviceGetPciInfo")
    gpu.pci_bus_id = as_text(pci.busId) if not isinstance(pci, NA) else pci
    cc = q("nvmlDeviceGetCudaComputeCapability")
    gpu.compute_capability = tuple(cc) if not isinstance(cc, NA) else cc
    mem = q("nvmlDeviceGetMemoryInfo")
    if not isinstance(mem, NA):
        gpu.memory_total_bytes, gpu.memory_used_bytes, gpu.memory_free_bytes = mem.total, mem.used, mem.free
    else:
        gpu.memory_total_bytes = gpu.memory_used_bytes = gpu.memory_free_bytes = mem
    gpu.processes = _processes(q)
    util = q("nvmlDeviceGetUtilizationRates")
    if not isinstance(util, NA):
        gpu.utilization_gpu_pct, gpu.utilization_memory_pct = util.gpu, util.memory
    else:
        gpu.utilization_gpu_pct = gpu.utilization_memory_pct = util
    gpu.temperature_c = q("nvmlDeviceGetTemperature", TEMPERATURE_GPU)
    gpu.temperature_slowdown_c = q("nvmlDeviceGetTemperatureThreshold", TEMPERATURE_THRESHOLD_SLOWDOWN)
    gpu.power_draw_w = watts(q("nvmlDeviceGetPowerUsage"))
    gpu.power_limit_w = watts(q("nvmlDeviceGetEnforcedPowerLimit"))
    gpu.power_default_limit_w = watts(q("nvmlDeviceGetPowerManagementDefaultLimit"))
    gpu.clocks_event_reasons = clocks_event_reasons(q)
    gpu.pcie_width_current = q("nvmlDeviceGetCurrPcieLinkWidth")
    gpu.pcie_width_max = q("nvmlDeviceGetMaxPcieLinkWidth")
    gpu.pcie_gen_current = q("nvmlDeviceGetCurrPcieLinkGeneration")
    gpu.pcie_gen_max = q("nvmlDeviceGetMaxPcieLinkGeneration")
    gpu.pcie_gen_gpu_max = q("nvmlDeviceGetGpuMaxPcieLinkGeneration")
    ecc = q("nvmlDeviceGetEccMode")
    if not isinstance(ecc, NA):
        gpu.ecc_mode_current, gpu.ecc_mode_pending = bool(ecc[0]), bool(ecc[1])
        if gpu.ecc_mode_current:
            unc = MEMORY_ERROR_TYPE_UNCORRECTED
            gpu.ecc_volatile_uncorrected = q("nvmlDeviceGetTotalEccErrors", unc, VOLATILE_ECC)
            gpu.ecc_aggregate_uncorrected = q("nvmlDeviceGetTotalEccErrors", unc, AGGREGATE_ECC)
    else:
        gpu.ecc_mode_current = gpu.ecc_mode_pending = ecc
    pending = q("nvmlDeviceGetRetiredPagesPendingStatus")
    gpu.retired_pages_pending = bool(pending) if not isinstance(pending, NA) else pending
    rows = q("nvmlDeviceGetRemappedRows")
    if not isinstance(rows, NA):
        corr, unc_rows, pend, failed = rows
        gpu.remapped_rows_correctable, gpu.remapped_rows_uncorrectable = corr, unc_rows
        gpu.remapped_rows_pending, gpu.remapped_rows_failed = bool(pend), bool(failed)
    else:
        gpu.remapped_rows_correctable = gpu.remapped_rows_uncorrectable = rows
        gpu.remapped_rows_pending = gpu.remapped_rows_failed = rows
    if sys.platform.startswith("linux"):
        persistence = q("nvmlDeviceGetPersistenceMode")
        gpu.persistence_mode = bool(persistence) if not isinstance(persistence, NA) else persistence
    mode = q("nvmlDeviceGetComputeMode")
    gpu.compute_mode = COMPUTE_MODES.get(mode, str(mode)) if not isinstance(mode, NA) else mode
    mig = q("nvmlDeviceGetMigMode")
    if not isinstance(mig, NA):
        gpu.mig_mode_current, gpu.mig_mode_pending = bool(mig[0]), bool(mig[1])
    else:
        gpu.mig_mode_current = gpu.mig_mode_pending = mig


def watts(milliwatts: Any) -> Any:
    """NVML reports power in milliwatts."""
    return milliwatts / 1000.0 if not isinstance(milliwatts, NA) else milliwatts


def clocks_event_reasons(q: Callable[..., Any]) -> int | NA:
    """The clocks-event (throttle) reasons bitmask through ``q`` (a reader bound to one GPU's handle).

    Drivers before r535, and bindings from before then, only know the old name
    (``nvmlDeviceGetCurrentClocksThrottleReasons``); the bits are the same."""
    reasons = q("nvmlDeviceGetCurrentClocksEventReasons")
    if isinstance(reasons, NA) and reasons.reason in (OLDER_DRIVER, NOT_IN_BINDINGS):
        reasons = q("nvmlDeviceGetCurrentClocksThrottleReasons")
    return reasons


def _processes(q: Callable[..., Any]) -> list[ProcessUse] | NA:
    """Compute and graphics processes holding memory on this GPU, merged by pid.

    Without the compute list there is no list: training jobs are compute processes, and half a list would
    make a GPU full of someone else's work look free. For the same reason a refused graphics list refuses
    the whole reading; one the GPU does not support is left out.
    """
    compute = q("nvmlDeviceGetComputeRunningProcesses")
    graphics = q("nvmlDeviceGetGraphicsRunningProcesses")
    if isinstance(graphics, NA) and graphics.reason == NO_PERMISSION and not isinstance(compute, NA):
        return graphics
    if isinstance(compute, NA):
        return compute
    merged: dict[int, ProcessUse] = {}
    for proc in [*compute, *(graphics if not isinstance(graphics, NA) else [])]:
        if proc.pid not in merged:
            merged[proc.pid] = ProcessUse(proc.pid, _process_name(proc.pid), proc.usedGpuMemory)
    return list(merged.values())


def _process_name(pid: int) -> str | None:
    """The process's name where this PID namespace can see it (inside a container it often cannot). Another
    user chose it, any bytes: decoded once for display (:func:`displayable`); the terminal's control
    characters in it are the renderers' to make inert."""
    import psutil

    try:
        return displayable(psutil.Process(pid).name())
    except (psutil.Error, OSError):
        return None
