"""Probe the NVIDIA driver and every GPU through NVML (NVIDIA's ``nvidia-ml-py``, imported as pynvml).

Every NVML call goes through :func:`query`, the one funnel that maps NVML's errors (cf. nvitop's
``nvmlQuery``): a reading the card or driver does not offer becomes :class:`NA` (GeForce has no ECC;
an older driver lacks newer functions), a reading the driver refuses to this user becomes an NA whose
reason the GPU checks turn into a warning, a lost GPU becomes a flag on that GPU so the others are still
reported. Failures of ``nvmlInit`` itself are classified into the distinct situations users meet, each
with its own fix in ``checks/driver.py``. GPUs are read through NVML only, never through torch, so
this probe works without torch and cannot initialise CUDA.

The ``pynvml`` module found at run time may not be nvidia-ml-py: the deprecated ``pynvml`` distribution
and old vendored copies install one that lacks functions, constants and error classes, or that does not
import at all. So nothing here uses an optional pynvml name at import time or by attribute: functions are
looked up by name (a missing one is a reading that is not available), NVML's constants and return codes
are the C values from ``nvml.h`` (the same in every binding), and errors are told apart by their return
code, not by the binding's exception classes. What the module lacked is kept in :class:`Bindings` for
``packages.pynvml_deprecated``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.model import NA, Fix
from envcheck.core.registry import probe

# Why a reading is missing, in words a person reads next to "N/A".
NOT_SUPPORTED = "not supported by this GPU or driver"
OLDER_DRIVER = "function missing from this (older) driver"
NO_PERMISSION = "no permission"
NOT_IN_BINDINGS = "function missing from the installed pynvml module"

# NVML return codes (nvml.h, ``nvmlReturn_t``): part of the C ABI, so they hold for every binding.
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_LIB_RM_VERSION_MISMATCH = 18

# Selector arguments (nvml.h): ``nvmlTemperatureSensors_t``, ``nvmlTemperatureThresholds_t``,
# ``nvmlMemoryErrorType_t`` and ``nvmlEccCounterType_t``.
TEMPERATURE_GPU = 0
TEMPERATURE_THRESHOLD_SLOWDOWN = 1
MEMORY_ERROR_TYPE_UNCORRECTED = 1
VOLATILE_ECC = 0  # since the last driver load (reboot or GPU reset)
AGGREGATE_ECC = 1  # over the GPU's life, kept in its InfoROM

#: The pynvml functions the probe calls; without the first five nothing can be read at all.
CORE_FUNCTIONS = ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "NVMLError")
READ_FUNCTIONS = (
    "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion", "nvmlSystemGetNVMLVersion",
    "nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo", "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses",
    "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureThreshold",
    "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementDefaultLimit",
    "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetCurrPcieLinkWidth", "nvmlDeviceGetMaxPcieLinkWidth", "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetEccMode", "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceGetRemappedRows", "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetComputeMode", "nvmlDeviceGetMigMode",
)  # fmt: skip
#: r535 renamed the throttle reasons to clocks-event reasons; bindings older than that only have the old name.
OPTIONAL_FUNCTIONS = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")


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
    #: The driver refused to open this GPU for this user (NVML_ERROR_NO_PERMISSION on its handle).
    refused: bool = False

    @property
    def answers(self) -> bool:
        """The GPU is there and the driver lets this user read it (neither lost nor refused)."""
        return not self.lost and not self.refused


@dataclass
class Bindings:
    """The ``pynvml`` module this process imported, and what of it envcheck could not use."""

    path: str | None = None
    #: ``ImportError: ...`` when importing pynvml raised (nothing could be read then).
    import_error: str | None = None
    #: Functions envcheck calls that the module does not have.
    missing: list[str] = field(default_factory=list)
    #: Function -> the error (not an NVML error) it raised: a broken or mismatched copy of the bindings.
    failing: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Everything envcheck calls is there and behaved."""
        return self.import_error is None and not self.failing and not self.missing

    @property
    def lacking(self) -> list[str]:
        """The missing functions whose readings are lost: of the two throttle-reason names one is enough."""
        optional_found = [n for n in OPTIONAL_FUNCTIONS if n not in self.missing]
        return [n for n in self.missing if not (n in OPTIONAL_FUNCTIONS and optional_found)]


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


#: nvmlInit return code -> the status the driver check judges.
INIT_FAILURES = {
    ERROR_LIBRARY_NOT_FOUND: "no_library",
    ERROR_DRIVER_NOT_LOADED: "driver_not_loaded",
    ERROR_LIB_RM_VERSION_MISMATCH: "driver_library_mismatch",
    ERROR_NO_PERMISSION: "no_permission",
}

COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


def nvml_code(exc: BaseException) -> int | None:
    """The NVML return code an exception from the bindings carries, or None when it is not an NVML error.

    Every pynvml raises ``NVMLError(code)`` (a subclass per code where the binding has them) with the code in
    ``.value``; the class is recognised by name so that a copy lacking the subclasses is read the same way.
    """
    if not any(cls.__name__ == "NVMLError" for cls in type(exc).__mro__):
        return None
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def query(
    fn: Callable[..., Any],
    *args: Any,
    missing: list[str] | None = None,
    failing: dict[str, str] | None = None,
    name: str | None = None,
) -> Any:
    """Call one NVML function and map its errors: the one funnel every reading goes through.

    A lost GPU raises :class:`GpuLost`; every other failure is an :class:`NA` saying why. An exception that
    is not an NVML error comes from a broken copy of the bindings: it is kept in ``failing`` (under ``name``,
    else the function's own), not raised.
    """
    name = name or getattr(fn, "__name__", repr(fn))
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a foreign pynvml may raise anything; the reading is then N/A
        code = nvml_code(exc)
        if code == ERROR_GPU_IS_LOST:
            raise GpuLost(str(exc)) from exc
        if code == ERROR_NOT_SUPPORTED:
            return NA(NOT_SUPPORTED)
        if code == ERROR_FUNCTION_NOT_FOUND or type(exc).__name__ == "NVMLLibraryMismatchError":
            # nvidia-ml-py raises NVMLLibraryMismatchError when an unversioned wrapper's _vN is not in the driver.
            if missing is not None and name not in missing:
                missing.append(name)
            return NA(OLDER_DRIVER)
        if code == ERROR_NO_PERMISSION:
            return NA(NO_PERMISSION)
        if code is not None:
            return NA(f"NVML error: {exc}")
        if failing is not None:
            failing[name] = f"{type(exc).__name__}: {exc}"
        return NA(f"the pynvml module failed: {type(exc).__name__}: {exc}")


def as_text(value: Any) -> Any:
    """NVML strings come back as bytes from some bindings and str from others."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _cuda_version(code: int) -> str:
    """NVML encodes CUDA 12.4 as 12040."""
    return f"{code // 1000}.{(code % 1000) // 10}"


def _module_path(module: Any = None) -> str | None:
    """Where the pynvml module is (or would be imported from, when its import fails)."""
    path = getattr(module, "__file__", None)
    if path:
        return str(path)
    import importlib.util

    try:
        spec = importlib.util.find_spec("pynvml")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin != "namespace":
        return spec.origin
    return next(iter(spec.submodule_search_locations or []), None)


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
    with nvml_session() as (pynvml, state):
        if pynvml is not None:
            _read_all(pynvml, state)
        return state


@contextmanager
def nvml_session() -> Iterator[tuple[Any, NvmlState]]:
    """Import pynvml and start NVML: yields (the module, a state whose status is ``ok``), or (None, the state
    saying why NVML did not start); NVML is shut down on leaving. Every probe that reads NVML opens its
    session here, so each way NVML fails to start is classified once (NVML counts its initialisations, so
    two probes may hold sessions at once)."""
    pynvml, state = _open()
    try:
        yield pynvml, state
    finally:
        if pynvml is not None:
            try:
                pynvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting down is best effort
                pass


def _open() -> tuple[Any, NvmlState]:
    try:
        import pynvml
    except ModuleNotFoundError as exc:
        if exc.name == "pynvml":
            return None, NvmlState(status="no_bindings", error="no pynvml module (nvidia-ml-py is not installed)")
        return None, _broken_import(exc)
    except Exception as exc:  # noqa: BLE001 - whatever a foreign pynvml raises at import is reported, not raised
        return None, _broken_import(exc)
    bindings = Bindings(path=_module_path(pynvml))
    bindings.missing = [n for n in (*CORE_FUNCTIONS, *READ_FUNCTIONS) if not callable(getattr(pynvml, n, None))]
    core_missing = [n for n in CORE_FUNCTIONS if n in bindings.missing]
    if core_missing:
        error = f"the pynvml module lacks {', '.join(core_missing)}"
        return None, NvmlState(status="bindings_broken", error=error, bindings=bindings)
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - see nvml_code: NVML errors by code, anything else is the module's
        code = nvml_code(exc)
        if code is None:
            bindings.failing["nvmlInit"] = f"{type(exc).__name__}: {exc}"
            return None, NvmlState(status="bindings_broken", error=bindings.failing["nvmlInit"], bindings=bindings)
        status = INIT_FAILURES.get(code, "error")
        return None, NvmlState(status=status, error=f"{type(exc).__name__}: {exc}", bindings=bindings)
    return pynvml, NvmlState(status="ok", bindings=bindings)


def _broken_import(exc: BaseException) -> NvmlState:
    error = f"{type(exc).__name__}: {exc}"
    bindings = Bindings(path=_module_path(), import_error=error)
    return NvmlState(status="bindings_broken", error=f"import pynvml failed: {error}", bindings=bindings)


class Reader:
    """Calls pynvml functions by name through :func:`query`, so that a function the module lacks is a
    reading that is not available rather than an AttributeError."""

    def __init__(self, pynvml: Any, state: NvmlState) -> None:
        self.pynvml, self.state = pynvml, state

    def __call__(self, name: str, *args: Any) -> Any:
        fn = getattr(self.pynvml, name, None)
        if not callable(fn):
            return NA(NOT_IN_BINDINGS)
        state = self.state
        return query(fn, *args, missing=state.missing_functions, failing=state.bindings.failing, name=name)


def _read_all(pynvml: Any, state: NvmlState) -> NvmlState:
    read = Reader(pynvml, state)
    version = read("nvmlSystemGetDriverVersion")
    state.driver_version = as_text(version) if not isinstance(version, NA) else None
    cuda = read("nvmlSystemGetCudaDriverVersion")
    state.cuda_driver_version = _cuda_version(cuda) if not isinstance(cuda, NA) else None
    nvml_version = read("nvmlSystemGetNVMLVersion")
    state.nvml_version = as_text(nvml_version) if not isinstance(nvml_version, NA) else None
    count = read("nvmlDeviceGetCount")
    if isinstance(count, NA):
        state.status, state.error = "error", f"cannot count GPUs: {count.reason}"
        return state
    for index in range(count):
        gpu = GpuInfo(index=index)
        try:
            _read_gpu(pynvml, read, index, gpu)
        except GpuLost as exc:
            gpu.lost, gpu.lost_error = True, str(exc)
        state.gpus.append(gpu)
    return state


class GpuRefused(Exception):
    """The driver refused to open this GPU for this user (NVML_ERROR_NO_PERMISSION on its handle)."""


def open_handle(pynvml: Any, read: Reader, index: int) -> Any:
    """The GPU's NVML handle; None when the bindings broke opening it. Raises :class:`GpuLost` for a GPU that
    is lost or cannot be opened, :class:`GpuRefused` for one whose device node this user may not open."""
    try:
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:  # noqa: BLE001 - mapped by NVML code below
        code = nvml_code(exc)
        if code == ERROR_NO_PERMISSION:
            # The device node (/dev/nvidiaN) is not open to this user: not lost, refused.
            raise GpuRefused(str(exc)) from exc
        if code == ERROR_GPU_IS_LOST:
            raise GpuLost(str(exc)) from exc
        if code is None:
            # Not an NVML error: the bindings are broken (packages.pynvml_deprecated says which copy), and
            # that says nothing about the card, so it is not called lost. Its readings stay not available.
            read.state.bindings.failing["nvmlDeviceGetHandleByIndex"] = f"{type(exc).__name__}: {exc}"
            return None
        # A GPU NVML counts but cannot open is as good as lost for work; say what NVML said.
        raise GpuLost(f"cannot open GPU {index}: {exc}") from exc


def _read_gpu(pynvml: Any, read: Reader, index: int, gpu: GpuInfo) -> None:
    try:
        handle = open_handle(pynvml, read, index)
    except GpuRefused:
        gpu.refused = True
        return
    if handle is None:
        return

    def q(name: str, *args: Any) -> Any:
        return read(name, handle, *args)

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
    """The process's name where this PID namespace can see it (inside a container it often cannot)."""
    import psutil

    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError):
        return None
