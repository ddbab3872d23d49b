"""A fake ``libnvidia-ml.so.1`` at the C-function boundary, and named scenarios built on it.

The binding's ``nvmlLib`` is replaced by :class:`FakeNvmlLib`, whose attributes are the C functions, each a
Python callable that fills its ctypes arguments the way the driver would and returns an NVML return
code. The real nvidia-ml-py wrappers (argument marshalling, error classes, version fallbacks) run on
top, so the bugs users meet in the binding layer are met here too.

Like the driver, the fake answers each selector argument on its own: ECC counts per error type and
counter, temperature thresholds per kind, the temperature only for the GPU sensor (any other is
NVML_ERROR_INVALID_ARGUMENT). A probe that asks for the wrong one gets a different number, or an error,
and a test fails.

The fake's constants are the C values from ``nvml.h``, not the binding's names, so that it also runs under
a ``pynvml`` module that lacks some of them (tests of the deprecated and vendored copies).

Most readings are fixed numbers; a reading that changes while it is watched (an error counter that rises
between the doctor's two readings) is a :class:`Rising`, which advances by each read and, if asked, by elapsed
time on its own clock. A burn-in's telemetry changes over minutes: there a reading is a :class:`Timed`, a
schedule on the scenario's :class:`FakeClock` (``lib.clock``), which the test steps and hands to the sampler as
its clock, so "GPU 2 slows down at minute 7" happens at exactly 420 s of fake time, without waiting. Xid events
(``nvmlEventSet*``) and a GPU that falls off the bus mid-run follow the same clock.

Scenario names follow what they simulate (cf. gpustat's test_gpustat.py).
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pynvml

GiB = 1024**3

# nvml.h, nvmlReturn_t.
SUCCESS = 0
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
INSUFFICIENT_SIZE = 7
DRIVER_NOT_LOADED = 9
GPU_IS_LOST = 15
LIB_RM_VERSION_MISMATCH = 18
# nvml.h, nvmlTemperatureSensors_t and nvmlTemperatureThresholds_t.
TEMPERATURE_GPU = 0
THRESHOLD_SHUTDOWN, THRESHOLD_SLOWDOWN, THRESHOLD_MEM_MAX, THRESHOLD_GPU_MAX = 0, 1, 2, 3
THRESHOLD_COUNT = 8
# nvml.h, nvmlMemoryErrorType_t and nvmlEccCounterType_t.
CORRECTED, UNCORRECTED = 0, 1
VOLATILE, AGGREGATE = 0, 1
# nvml.h, nvmlClocksEventReason* bits.
REASON_NONE = 0x0
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4
REASON_HW_SLOWDOWN = 0x8
REASON_SW_THERMAL = 0x20
REASON_HW_THERMAL = 0x40
REASON_HW_POWER_BRAKE = 0x80
# nvml.h, nvmlClockType_t; the field id NVML_FI_DEV_MEMORY_TEMP and nvmlValueType_t's unsigned int.
CLOCK_SM, CLOCK_MEM = 1, 2
FI_DEV_MEMORY_TEMP = 82
VALUE_TYPE_UNSIGNED_INT = 1
# nvml.h, nvmlEventTypeXidCriticalError, and NVML_ERROR_TIMEOUT (what nvmlEventSetWait answers when no event came).
EVENT_TYPE_XID = 0x8
TIMEOUT = 10
COMPUTEMODE_DEFAULT = 0
COMPUTEMODE_EXCLUSIVE_PROCESS = 3  # nvml.h NVML_COMPUTEMODE_EXCLUSIVE_PROCESS
ARGUMENT_VERSION_MISMATCH = 25
# nvml.h, nvmlIntNvLinkDeviceType_t, nvmlNvlinkVersion_t and nvmlNvLinkErrorCounter_t.
NVLINK_REMOTE_GPU, NVLINK_REMOTE_SWITCH = 0, 2
NVLINK_VERSION_4_0 = 6
NVLINK_VERSION_5_0 = 7
NVLINK_REPLAY, NVLINK_RECOVERY, NVLINK_CRC_FLIT, NVLINK_CRC_DATA, NVLINK_ECC_DATA = 0, 1, 2, 3, 4
# nvml.h, nvmlGpuTopologyLevel_t.
TOPOLOGY_INTERNAL, TOPOLOGY_SINGLE, TOPOLOGY_MULTIPLE, TOPOLOGY_HOSTBRIDGE, TOPOLOGY_NODE, TOPOLOGY_SYSTEM = (
    0, 10, 20, 30, 40, 50,
)  # fmt: skip
# nvml.h, nvmlGpuP2PCapsIndex_t and nvmlGpuP2PStatus_t.
P2P_CAPS_READ, P2P_CAPS_WRITE, P2P_CAPS_NVLINK, P2P_CAPS_ATOMICS, P2P_CAPS_PCI = 0, 1, 2, 3, 4
P2P_OK, P2P_CHIPSET_NOT_SUPPORTED, P2P_GPU_NOT_SUPPORTED, P2P_IOH_TOPOLOGY_NOT_SUPPORTED = 0, 1, 2, 3
P2P_DISABLED_BY_REGKEY, P2P_NOT_SUPPORTED = 4, 5
# nvml.h, nvmlGpuFabricState_t, nvmlGpuFabricInfo_v2 (the versioned struct's version word) and the
# health mask's degraded-bandwidth field (bits 0-1: 1 degraded, 2 not degraded).
FABRIC_NOT_SUPPORTED, FABRIC_NOT_STARTED, FABRIC_IN_PROGRESS, FABRIC_COMPLETED = 0, 1, 2, 3
FABRIC_INFO_V2 = 0x02000024
HEALTH_DEGRADED_BW_TRUE, HEALTH_DEGRADED_BW_FALSE = 1, 2


def ecc_counts(
    *, volatile_unc: int = 0, aggregate_unc: int = 0, volatile_corr: int = 12, aggregate_corr: int = 340
) -> dict[tuple[int, int], int]:
    """ECC counters keyed as the driver keys them, (error type, counter type). Corrected errors are normal
    on a healthy HBM GPU, so they are not zero by default: a probe asking for them instead of uncorrected
    ones reports errors on a healthy card."""
    return {
        (UNCORRECTED, VOLATILE): volatile_unc,
        (UNCORRECTED, AGGREGATE): aggregate_unc,
        (CORRECTED, VOLATILE): volatile_corr,
        (CORRECTED, AGGREGATE): aggregate_corr,
    }


def thresholds(*, slowdown: int = 87, shutdown: int = 92, gpu_max: int = 85, mem_max: int = 95) -> dict[int, int]:
    """Temperature thresholds by kind, each a different number so that asking for the wrong kind shows."""
    return {
        THRESHOLD_SHUTDOWN: shutdown,
        THRESHOLD_SLOWDOWN: slowdown,
        THRESHOLD_MEM_MAX: mem_max,
        THRESHOLD_GPU_MAX: gpu_max,
    }


@dataclass
class Rising:
    """A reading that changes while it is watched: ``start``, plus ``per_read`` for every earlier read, plus
    ``per_second`` for the time since the first read by ``clock`` (injectable, so a test can step time).
    Counters that rise between the doctor's two readings use ``per_read``, so a test's interval can be as
    short as it likes; a telemetry sampler over time can use ``per_second``."""

    start: int
    per_read: int = 0
    per_second: float = 0.0
    clock: Callable[[], float] = time.monotonic
    reads: int = 0
    _since: float | None = None

    def read(self) -> int:
        now = self.clock()
        if self._since is None:
            self._since = now
        value = self.start + self.per_read * self.reads + int(self.per_second * (now - self._since))
        self.reads += 1
        return value


class FakeClock:
    """A scenario's clock: seconds that pass only when a test says so (``advance``). Handed to the telemetry
    sampler as its clock, so the sampler's ``t_s`` and the scenario's schedule are the same seconds."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Timed:
    """A reading that follows a schedule on a clock: ``start`` until the first change, then each ``(at_s,
    value)`` from ``at_s`` on. With ``ramp`` the reading moves linearly from one point to the next instead of
    stepping (a temperature that climbs), holding the last value after the last point."""

    start: float
    changes: tuple[tuple[float, float], ...] = ()
    clock: Callable[[], float] = time.monotonic
    ramp: bool = False

    def at(self, t: float) -> int:
        before_t, before_v = 0.0, self.start
        for at_s, value in self.changes:
            if t < at_s:
                if not self.ramp or at_s <= before_t:
                    return round(before_v)
                share = (t - before_t) / (at_s - before_t)
                return round(before_v + share * (value - before_v))
            before_t, before_v = at_s, value
        return round(before_v)

    def read(self) -> int:
        return self.at(self.clock())


def reading(value: int | Rising | Timed) -> int:
    """A fixed number, or the next reading of a :class:`Rising` or :class:`Timed` one."""
    return value.read() if isinstance(value, (Rising, Timed)) else value


def nvlink_errors(**counts: int | Rising) -> dict[int, int | Rising]:
    """A link's data-link error counters by nvml.h selector, zero unless given (``replay=Rising(3, per_read=2)``)."""
    names = {"replay": NVLINK_REPLAY, "recovery": NVLINK_RECOVERY, "crc_flit": NVLINK_CRC_FLIT}
    names.update(crc_data=NVLINK_CRC_DATA, ecc_data=NVLINK_ECC_DATA)
    return {selector: counts.get(name, 0) for name, selector in names.items()}


@dataclass
class FakeLink:
    """One NVLink: up or not, what is at its far end, and its error counters (a selector not in ``errors`` is
    not supported on this GPU)."""

    active: bool = True
    version: int = NVLINK_VERSION_4_0
    remote_type: int = NVLINK_REMOTE_SWITCH
    remote_bus_id: str = "00000000:00:00.0"
    errors: dict[int, int | Rising] = field(default_factory=nvlink_errors)


@dataclass
class FakeFabric:
    """What ``nvmlDeviceGetGpuFabricInfo[V]`` fills in on a GPU attached to NVSwitches."""

    state: int = FABRIC_COMPLETED
    status: int = SUCCESS
    clique_id: int = 0
    health_mask: int = HEALTH_DEGRADED_BW_FALSE


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    pci_bus_id: str = "00000000:18:00.0"
    cc: tuple[int, int] = (9, 0)
    memory_total: int = 80 * GiB
    memory_used: int = 1 * GiB
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, used bytes)
    util: tuple[int | Timed, int | Timed] = (0, 0)
    temp: int | Timed = 34
    #: HBM temperature (NVML_FI_DEV_MEMORY_TEMP); None: the board has no memory sensor (NotSupported).
    mem_temp: int | Timed | None = 32
    #: Threshold kind -> °C; a kind not in here is not supported by the board.
    temp_thresholds: dict[int, int] = field(default_factory=thresholds)
    power_mw: int | Timed = 70_000
    power_limit_mw: int = 700_000
    power_default_limit_mw: int = 700_000
    clocks_reasons: int | Timed = REASON_GPU_IDLE
    #: Current SM and memory clocks (nvmlDeviceGetClockInfo). Illustrative figures for an idle H100 SXM: the
    #: SM clock parks low at idle; HBM3 runs at one clock.
    sm_clock_mhz: int | Timed = 345
    mem_clock_mhz: int | Timed = 2619
    pcie_width: tuple[int, int] = (16, 16)
    pcie_gen: tuple[int, int] = (5, 5)
    #: The GPU's own highest PCIe generation (None: the link's, ``pcie_gen[1]``).
    pcie_gen_gpu_max: int | None = None
    ecc_mode: tuple[int, int] = (1, 1)
    #: (error type, counter type) -> count.
    ecc: dict[tuple[int, int], int | Timed] = field(default_factory=ecc_counts)
    retired_pending: int = 0
    # correctable, uncorrectable, pending, failed
    remapped_rows: tuple[int | Timed, int | Timed, int | Timed, int | Timed] = (0, 0, 0, 0)
    persistence: int = 1
    compute_mode: int = COMPUTEMODE_DEFAULT
    mig: tuple[int, int] = (0, 0)
    #: NVLinks in link order; None: the GPU has no NVLink (the driver answers NotSupported).
    nvlinks: list[FakeLink] | None = None
    pcie_replay: int | Rising = 0
    #: None: the GPU is on no NVSwitch fabric (the driver answers NotSupported).
    fabric: FakeFabric | None = None
    #: Where it sits on PCIe: its CPU socket, and the PCIe switch it shares with others (None: a root port of
    #: its own). Topology between two GPUs follows from these.
    socket: int = 0
    pcie_switch: int | None = None
    lost: bool = False
    #: Lost from this second of the scenario's clock on (it falls off the bus mid-run).
    lost_after_s: float | None = None
    #: Xid events this GPU raises, ``(at_s, xid)`` on the scenario's clock, delivered through nvmlEventSet*.
    xids: list[tuple[float, int]] = field(default_factory=list)
    #: False: the driver offers no Xid events on this GPU (NotSupported on registering, as in some VMs).
    xid_events: bool = True
    #: C function name -> NVML return code this GPU answers instead of data.
    errors: dict[str, int] = field(default_factory=dict)


class _Fn:
    """A C function: callable, and accepts attribute assignment as ctypes function pointers do
    (pynvml sets ``restype`` on ``nvmlErrorString``)."""

    def __init__(self, name: str, impl: Callable[..., Any]) -> None:
        self.__name__ = name
        self._impl = impl

    def __call__(self, *args: Any) -> Any:
        return self._impl(*args)


def _out(arg: Any) -> Any:
    """The object behind a ``byref(...)`` argument."""
    return arg._obj


def _value(arg: Any) -> int:
    """An enum argument: pynvml passes a ctypes integer (``_nvmlEccCounterType_t(1)``), C passes an int."""
    return int(getattr(arg, "value", arg))


class FakeNvmlLib:
    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
        init_error: int | None = None,
        missing: frozenset[str] | set[str] = frozenset(),
        p2p: Callable[[FakeGpu, FakeGpu, int], int] | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.gpus = gpus
        #: The scenario's time: :class:`Timed` readings, Xid events and ``lost_after_s`` follow it.
        self.clock = clock or FakeClock()
        #: C function name -> called before that function answers (a test makes one hang here).
        self.before: dict[str, Callable[[], None]] = {}
        #: Event sets created and not freed: id -> (registered GPU indices, Xid events delivered).
        self.event_sets: dict[int, tuple[set[int], set[tuple[int, int]]]] = {}
        self._event_structs: dict[int, Any] = {}
        #: P2P status between two GPUs for a capability; by default P2P works over PCIe everywhere, and over
        #: NVLink between GPUs an NVLink joins (:meth:`nvlinked`).
        self.p2p = p2p
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.init_error = init_error
        self.missing = set(missing)
        self.calls: list[str] = []
        self._handles = [pynvml.struct_c_nvmlDevice_t() for _ in gpus]

    def __getattr__(self, name: str) -> _Fn:
        if name.startswith("_") or name in self.missing:
            raise AttributeError(name)
        impl = getattr(type(self), "c_" + name, None)
        if impl is None:
            raise AttributeError(name)

        def call(*args: Any) -> Any:
            self.calls.append(name)
            hook = self.before.get(name)
            if hook is not None:
                hook()
            return impl(self, *args)

        return _Fn(name, call)

    # -- helpers ---------------------------------------------------------------------------------
    def _gpu(self, handle: Any) -> FakeGpu:
        address = ctypes.addressof(handle.contents)
        for gpu, h in zip(self.gpus, self._handles, strict=True):
            if ctypes.addressof(h) == address:
                return gpu
        raise AssertionError("unknown handle")

    def is_lost(self, gpu: FakeGpu) -> bool:
        return gpu.lost or (gpu.lost_after_s is not None and self.clock() >= gpu.lost_after_s)

    def nvlinked(self, a: FakeGpu, b: FakeGpu) -> bool:
        """An active NVLink joins them: directly, or both reach the NVSwitches."""
        up_a = [link for link in a.nvlinks or [] if link.active]
        up_b = [link for link in b.nvlinks or [] if link.active]
        if any(link.remote_type == NVLINK_REMOTE_GPU and link.remote_bus_id == b.pci_bus_id for link in up_a):
            return True
        on_switch = [any(link.remote_type == NVLINK_REMOTE_SWITCH for link in up) for up in (up_a, up_b)]
        return all(on_switch)

    def _link(self, gpu: FakeGpu, link: Any) -> FakeLink | int:
        """The link, or the code the driver answers: NotSupported without NVLink, InvalidArgument past the last."""
        if gpu.nvlinks is None:
            return NOT_SUPPORTED
        number = _value(link)
        return gpu.nvlinks[number] if 0 <= number < len(gpu.nvlinks) else INVALID_ARGUMENT

    def _device(self, name: str, handle: Any, fill: Callable[[FakeGpu], int | None]) -> int:
        """Answer for the GPU behind ``handle``: ``fill`` writes the outputs, or returns an error code."""
        gpu = self._gpu(handle)
        if self.is_lost(gpu):
            return GPU_IS_LOST
        if name in gpu.errors:
            return gpu.errors[name]
        answer = fill(gpu)
        return SUCCESS if answer is None else answer

    # -- system ----------------------------------------------------------------------------------
    def c_nvmlInitWithFlags(self, flags: int) -> int:
        return self.init_error if self.init_error is not None else SUCCESS

    def c_nvmlShutdown(self) -> int:
        return SUCCESS

    def c_nvmlErrorString(self, code: int) -> bytes:
        return f"fake NVML error {code}".encode()

    def c_nvmlSystemGetDriverVersion(self, buf: Any, size: Any) -> int:
        buf.value = self.driver_version.encode()
        return SUCCESS

    def c_nvmlSystemGetNVMLVersion(self, buf: Any, size: Any) -> int:
        buf.value = ("12." + self.driver_version).encode()
        return SUCCESS

    def c_nvmlSystemGetCudaDriverVersion(self, out: Any) -> int:
        _out(out).value = self.cuda_version
        return SUCCESS

    def c_nvmlDeviceGetCount_v2(self, out: Any) -> int:
        _out(out).value = len(self.gpus)
        return SUCCESS

    def c_nvmlDeviceGetHandleByIndex_v2(self, index: Any, out: Any) -> int:
        i = index.value
        if i >= len(self.gpus):
            return INVALID_ARGUMENT
        # The driver refuses a GPU whose device node this user may not open before it hands out a handle.
        refused = self.gpus[i].errors.get("nvmlDeviceGetHandleByIndex_v2")
        if refused is not None:
            return refused
        _out(out).contents = self._handles[i]
        return SUCCESS

    # -- per device ------------------------------------------------------------------------------
    def c_nvmlDeviceGetName(self, h: Any, buf: Any, size: Any) -> int:
        return self._device("nvmlDeviceGetName", h, lambda g: setattr(buf, "value", g.name.encode()))

    def c_nvmlDeviceGetUUID(self, h: Any, buf: Any, size: Any) -> int:
        return self._device("nvmlDeviceGetUUID", h, lambda g: setattr(buf, "value", g.uuid.encode()))

    def c_nvmlDeviceGetPciInfo_v3(self, h: Any, out: Any) -> int:
        return self._device("nvmlDeviceGetPciInfo_v3", h, lambda g: setattr(_out(out), "busId", g.pci_bus_id.encode()))

    def c_nvmlDeviceGetCudaComputeCapability(self, h: Any, major: Any, minor: Any) -> int:
        def fill(g: FakeGpu) -> None:
            _out(major).value, _out(minor).value = g.cc

        return self._device("nvmlDeviceGetCudaComputeCapability", h, fill)

    def c_nvmlDeviceGetMemoryInfo(self, h: Any, out: Any) -> int:
        def fill(g: FakeGpu) -> None:
            mem = _out(out)
            mem.total, mem.used, mem.free = g.memory_total, g.memory_used, g.memory_total - g.memory_used

        return self._device("nvmlDeviceGetMemoryInfo", h, fill)

    def _processes(self, name: str, h: Any, count: Any, array: Any, procs: Callable[[FakeGpu], list]) -> int:
        gpu = self._gpu(h)
        if self.is_lost(gpu):
            return GPU_IS_LOST
        if name in gpu.errors:
            return gpu.errors[name]
        listed = procs(gpu)
        if not listed:
            _out(count).value = 0
            return SUCCESS
        if array is None or _out(count).value < len(listed):
            _out(count).value = len(listed)
            return INSUFFICIENT_SIZE
        for i, (pid, used) in enumerate(listed):
            array[i].pid, array[i].usedGpuMemory = pid, used
        _out(count).value = len(listed)
        return SUCCESS

    def c_nvmlDeviceGetComputeRunningProcesses_v3(self, h: Any, count: Any, array: Any) -> int:
        return self._processes("nvmlDeviceGetComputeRunningProcesses_v3", h, count, array, lambda g: g.processes)

    def c_nvmlDeviceGetGraphicsRunningProcesses_v3(self, h: Any, count: Any, array: Any) -> int:
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses_v3", h, count, array, lambda g: [])

    def c_nvmlDeviceGetUtilizationRates(self, h: Any, out: Any) -> int:
        def fill(g: FakeGpu) -> None:
            _out(out).gpu, _out(out).memory = (reading(v) for v in g.util)

        return self._device("nvmlDeviceGetUtilizationRates", h, fill)

    def c_nvmlDeviceGetTemperature(self, h: Any, sensor: Any, out: Any) -> int:
        def fill(g: FakeGpu) -> int | None:
            if _value(sensor) != TEMPERATURE_GPU:  # the only sensor nvml.h defines
                return INVALID_ARGUMENT
            _out(out).value = reading(g.temp)
            return None

        return self._device("nvmlDeviceGetTemperature", h, fill)

    def c_nvmlDeviceGetTemperatureThreshold(self, h: Any, kind: Any, out: Any) -> int:
        def fill(g: FakeGpu) -> int | None:
            if not 0 <= _value(kind) < THRESHOLD_COUNT:
                return INVALID_ARGUMENT
            if _value(kind) not in g.temp_thresholds:
                return NOT_SUPPORTED
            _out(out).value = g.temp_thresholds[_value(kind)]
            return None

        return self._device("nvmlDeviceGetTemperatureThreshold", h, fill)

    def c_nvmlDeviceGetPowerUsage(self, h: Any, out: Any) -> int:
        return self._device("nvmlDeviceGetPowerUsage", h, lambda g: setattr(_out(out), "value", reading(g.power_mw)))

    def c_nvmlDeviceGetEnforcedPowerLimit(self, h: Any, out: Any) -> int:
        return self._device(
            "nvmlDeviceGetEnforcedPowerLimit", h, lambda g: setattr(_out(out), "value", g.power_limit_mw)
        )

    def c_nvmlDeviceGetPowerManagementDefaultLimit(self, h: Any, out: Any) -> int:
        name = "nvmlDeviceGetPowerManagementDefaultLimit"
        return self._device(name, h, lambda g: setattr(_out(out), "value", g.power_default_limit_mw))

    def c_nvmlDeviceGetCurrentClocksEventReasons(self, h: Any, out: Any) -> int:
        return self._device(
            "nvmlDeviceGetCurrentClocksEventReasons",
            h,
            lambda g: setattr(_out(out), "value", reading(g.clocks_reasons)),
        )

    def c_nvmlDeviceGetCurrentClocksThrottleReasons(self, h: Any, out: Any) -> int:
        return self._device(
            "nvmlDeviceGetCurrentClocksThrottleReasons",
            h,
            lambda g: setattr(_out(out), "value", reading(g.clocks_reasons)),
        )

    def c_nvmlDeviceGetCurrPcieLinkWidth(self, h: Any, out: Any) -> int:
        return self._device("nvmlDeviceGetCurrPcieLinkWidth", h, lambda g: setattr(_out(out), "value", g.pcie_width[0]))

    def c_nvmlDeviceGetMaxPcieLinkWidth(self, h: Any, out: Any) -> int:
        return self._device("nvmlDeviceGetMaxPcieLinkWidth", h, lambda g: setattr(_out(out), "value", g.pcie_width[1]))

    def c_nvmlDeviceGetCurrPcieLinkGeneration(self, h: Any, out: Any) -> int:
        return self._device(
            "nvmlDeviceGetCurrPcieLinkGeneration", h, lambda g: setattr(_out(out), "value", g.pcie_gen[0])
        )

    def c_nvmlDeviceGetMaxPcieLinkGeneration(self, h: Any, out: Any) -> int:
        return self._device(
            "nvmlDeviceGetMaxPcieLinkGeneration", h, lambda g: setattr(_out(out), "value", g.pcie_gen[1])
        )

    def c_nvmlDeviceGetGpuMaxPcieLinkGeneration(self, h: Any, out: Any) -> int:
        def fill(g: FakeGpu) -> None:
            _out(out).value = g.pcie_gen[1] if g.pcie_gen_gpu_max is None else g.pcie_gen_gpu_max

        return self._device("nvmlDeviceGetGpuMaxPcieLinkGeneration", h, fill)

    def c_nvmlDeviceGetEccMode(self, h: Any, current: Any, pending: Any) -> int:
        def fill(g: FakeGpu) -> None:
            _out(current).value, _out(pending).value = g.ecc_mode

        return self._device("nvmlDeviceGetEccMode", h, fill)

    def c_nvmlDeviceGetTotalEccErrors(self, h: Any, error_type: Any, counter: Any, out: Any) -> int:
        def fill(g: FakeGpu) -> int | None:
            key = (_value(error_type), _value(counter))
            if key not in g.ecc:  # an error or counter type nvml.h does not define
                return INVALID_ARGUMENT
            _out(out).value = reading(g.ecc[key])
            return None

        return self._device("nvmlDeviceGetTotalEccErrors", h, fill)

    def c_nvmlDeviceGetRetiredPagesPendingStatus(self, h: Any, out: Any) -> int:
        return self._device(
            "nvmlDeviceGetRetiredPagesPendingStatus", h, lambda g: setattr(_out(out), "value", g.retired_pending)
        )

    def c_nvmlDeviceGetRemappedRows(self, h: Any, corr: Any, unc: Any, pending: Any, failed: Any) -> int:
        def fill(g: FakeGpu) -> None:
            for arg, value in zip((corr, unc, pending, failed), g.remapped_rows, strict=True):
                _out(arg).value = reading(value)

        return self._device("nvmlDeviceGetRemappedRows", h, fill)

    def c_nvmlDeviceGetPersistenceMode(self, h: Any, out: Any) -> int:
        return self._device("nvmlDeviceGetPersistenceMode", h, lambda g: setattr(_out(out), "value", g.persistence))

    def c_nvmlDeviceGetComputeMode(self, h: Any, out: Any) -> int:
        return self._device("nvmlDeviceGetComputeMode", h, lambda g: setattr(_out(out), "value", g.compute_mode))

    def c_nvmlDeviceGetMigMode(self, h: Any, current: Any, pending: Any) -> int:
        def fill(g: FakeGpu) -> None:
            _out(current).value, _out(pending).value = g.mig

        return self._device("nvmlDeviceGetMigMode", h, fill)

    # -- telemetry: clocks, memory temperature, Xid events -------------------------------------------
    def c_nvmlDeviceGetClockInfo(self, h: Any, kind: Any, out: Any) -> int:
        def fill(g: FakeGpu) -> int | None:
            clocks = {CLOCK_SM: g.sm_clock_mhz, CLOCK_MEM: g.mem_clock_mhz}
            if _value(kind) not in clocks:  # graphics and video clocks: not faked, so not supported
                return NOT_SUPPORTED
            _out(out).value = reading(clocks[_value(kind)])
            return None

        return self._device("nvmlDeviceGetClockInfo", h, fill)

    def c_nvmlDeviceGetFieldValues(self, h: Any, count: Any, values: Any) -> int:
        """Like the driver, the call succeeds and each field carries its own return code: only the memory
        temperature is faked; every other field id is NotSupported."""

        def fill(g: FakeGpu) -> None:
            array = _out(values)
            for i in range(_value(count)):
                fv = array[i]
                if fv.fieldId == FI_DEV_MEMORY_TEMP and g.mem_temp is not None:
                    fv.valueType, fv.nvmlReturn = VALUE_TYPE_UNSIGNED_INT, SUCCESS
                    fv.value.uiVal = reading(g.mem_temp)
                else:
                    fv.nvmlReturn = NOT_SUPPORTED

        return self._device("nvmlDeviceGetFieldValues", h, fill)

    def c_nvmlDeviceGetSupportedEventTypes(self, h: Any, out: Any) -> int:
        return self._device(
            "nvmlDeviceGetSupportedEventTypes",
            h,
            lambda g: setattr(_out(out), "value", EVENT_TYPE_XID if g.xid_events else 0),
        )

    def c_nvmlEventSetCreate(self, out: Any) -> int:
        event_set = pynvml.struct_c_nvmlEventSet_t()
        key = ctypes.addressof(event_set)
        self._event_structs[key] = event_set
        self.event_sets[key] = (set(), set())
        _out(out).contents = event_set
        return SUCCESS

    def c_nvmlDeviceRegisterEvents(self, h: Any, types: Any, event_set: Any) -> int:
        def fill(g: FakeGpu) -> int | None:
            if _value(types) & ~EVENT_TYPE_XID or not g.xid_events:  # only Xid events are faked
                return NOT_SUPPORTED
            self.event_sets[ctypes.addressof(event_set.contents)][0].add(self.gpus.index(g))
            return None

        return self._device("nvmlDeviceRegisterEvents", h, fill)

    def c_nvmlEventSetWait_v2(self, event_set: Any, data: Any, timeout_ms: Any) -> int:
        """The next Xid due by the scenario's clock on a registered GPU, each once per set, in time order
        (a lost GPU's Xid 79 too); NVML_ERROR_TIMEOUT at once when none is due (the fake never blocks)."""
        registered, delivered = self.event_sets[ctypes.addressof(event_set.contents)]
        due = [
            (at_s, index, n, xid)
            for index in sorted(registered)
            for n, (at_s, xid) in enumerate(self.gpus[index].xids)
            if at_s <= self.clock() and (index, n) not in delivered
        ]
        if not due:
            return TIMEOUT
        _, index, n, xid = min(due)
        delivered.add((index, n))
        event = _out(data)
        event.device = ctypes.pointer(self._handles[index])
        event.eventType, event.eventData = EVENT_TYPE_XID, xid
        return SUCCESS

    def c_nvmlEventSetFree(self, event_set: Any) -> int:
        key = ctypes.addressof(event_set.contents)
        self.event_sets.pop(key)
        self._event_structs.pop(key)
        return SUCCESS

    # -- fabric: NVLink, PCIe replays, topology, P2P, the NVSwitch fabric -------------------------------
    def _on_link(self, name: str, h: Any, link: Any, fill: Callable[[FakeLink], int | None]) -> int:
        def on_gpu(g: FakeGpu) -> int | None:
            found = self._link(g, link)
            return found if isinstance(found, int) else fill(found)

        return self._device(name, h, on_gpu)

    def c_nvmlDeviceGetNvLinkState(self, h: Any, link: Any, out: Any) -> int:
        return self._on_link("nvmlDeviceGetNvLinkState", h, link, lambda k: setattr(_out(out), "value", int(k.active)))

    def c_nvmlDeviceGetNvLinkVersion(self, h: Any, link: Any, out: Any) -> int:
        return self._on_link("nvmlDeviceGetNvLinkVersion", h, link, lambda k: setattr(_out(out), "value", k.version))

    def c_nvmlDeviceGetNvLinkRemoteDeviceType(self, h: Any, link: Any, out: Any) -> int:
        name = "nvmlDeviceGetNvLinkRemoteDeviceType"
        return self._on_link(name, h, link, lambda k: setattr(_out(out), "value", k.remote_type))

    def c_nvmlDeviceGetNvLinkRemotePciInfo_v2(self, h: Any, link: Any, out: Any) -> int:
        name = "nvmlDeviceGetNvLinkRemotePciInfo_v2"
        return self._on_link(name, h, link, lambda k: setattr(_out(out), "busId", k.remote_bus_id.encode()))

    def c_nvmlDeviceGetNvLinkErrorCounter(self, h: Any, link: Any, counter: Any, out: Any) -> int:
        def fill(k: FakeLink) -> int | None:
            if not 0 <= _value(counter) <= NVLINK_ECC_DATA:  # nvml.h defines no other counter
                return INVALID_ARGUMENT
            if _value(counter) not in k.errors:
                return NOT_SUPPORTED
            _out(out).value = reading(k.errors[_value(counter)])
            return None

        return self._on_link("nvmlDeviceGetNvLinkErrorCounter", h, link, fill)

    def c_nvmlDeviceGetPcieReplayCounter(self, h: Any, out: Any) -> int:
        return self._device(
            "nvmlDeviceGetPcieReplayCounter", h, lambda g: setattr(_out(out), "value", reading(g.pcie_replay))
        )

    def _fabric(self, name: str, h: Any, arg: Any, *, versioned: bool) -> int:
        def fill(g: FakeGpu) -> int | None:
            if g.fabric is None:
                return NOT_SUPPORTED
            info = _out(arg)
            if versioned and info.version != FABRIC_INFO_V2:
                return ARGUMENT_VERSION_MISMATCH
            info.state, info.status, info.cliqueId = g.fabric.state, g.fabric.status, g.fabric.clique_id
            if versioned:
                info.healthMask = g.fabric.health_mask
            return None

        return self._device(name, h, fill)

    def c_nvmlDeviceGetGpuFabricInfoV(self, h: Any, arg: Any) -> int:
        return self._fabric("nvmlDeviceGetGpuFabricInfoV", h, arg, versioned=True)

    def c_nvmlDeviceGetGpuFabricInfo(self, h: Any, arg: Any) -> int:
        return self._fabric("nvmlDeviceGetGpuFabricInfo", h, arg, versioned=False)

    def _pair(self, name: str, h1: Any, h2: Any, fill: Callable[[FakeGpu, FakeGpu], int]) -> int:
        a, b = self._gpu(h1), self._gpu(h2)
        if self.is_lost(a) or self.is_lost(b):
            return GPU_IS_LOST
        if name in a.errors:
            return a.errors[name]
        return fill(a, b)

    def c_nvmlDeviceGetTopologyCommonAncestor(self, h1: Any, h2: Any, out: Any) -> int:
        def fill(a: FakeGpu, b: FakeGpu) -> int:
            if a is b:
                return INVALID_ARGUMENT
            if a.socket != b.socket:
                level = TOPOLOGY_SYSTEM
            elif a.pcie_switch is not None and a.pcie_switch == b.pcie_switch:
                level = TOPOLOGY_SINGLE
            else:
                level = TOPOLOGY_NODE
            _out(out).value = level
            return SUCCESS

        return self._pair("nvmlDeviceGetTopologyCommonAncestor", h1, h2, fill)

    def c_nvmlDeviceGetP2PStatus(self, h1: Any, h2: Any, caps: Any, out: Any) -> int:
        def fill(a: FakeGpu, b: FakeGpu) -> int:
            index = _value(caps)
            if not 0 <= index <= P2P_CAPS_PCI:
                return INVALID_ARGUMENT
            if self.p2p is not None:
                status = self.p2p(a, b, index)
            elif index == P2P_CAPS_NVLINK:
                status = P2P_OK if self.nvlinked(a, b) else P2P_NOT_SUPPORTED
            else:
                status = P2P_OK
            _out(out).value = status
            return SUCCESS

        return self._pair("nvmlDeviceGetP2PStatus", h1, h2, fill)


# -- named scenarios --------------------------------------------------------------------------------


def h100(i: int, **kw: Any) -> FakeGpu:
    return replace(
        FakeGpu(uuid=f"GPU-{i:08d}-aaaa-bbbb-cccc-000000000000", pci_bus_id=f"00000000:{0x18 + i:02X}:00.0"), **kw
    )


def healthy_multi_gpu() -> FakeNvmlLib:
    return FakeNvmlLib([h100(i) for i in range(4)])


def ecc_uncorrected_row_remap() -> FakeNvmlLib:
    return FakeNvmlLib([h100(0), h100(1, ecc=ecc_counts(volatile_unc=3, aggregate_unc=7), remapped_rows=(0, 2, 1, 0))])


def thermal_throttle_pcie_downgrade() -> FakeNvmlLib:
    reasons = REASON_HW_THERMAL | REASON_SW_THERMAL
    return FakeNvmlLib([h100(0, temp=91, clocks_reasons=reasons, pcie_width=(8, 16), util=(100, 60)), h100(1)])


def gpu_lost() -> FakeNvmlLib:
    return FakeNvmlLib([h100(0), h100(1, lost=True), h100(2)])


def driver_library_mismatch() -> FakeNvmlLib:
    return FakeNvmlLib([], init_error=LIB_RM_VERSION_MISMATCH)


def driver_not_loaded() -> FakeNvmlLib:
    return FakeNvmlLib([], init_error=DRIVER_NOT_LOADED)


def no_permission() -> FakeNvmlLib:
    return FakeNvmlLib([], init_error=NO_PERMISSION)


def geforce_no_ecc() -> FakeNvmlLib:
    no_ecc = {
        name: NOT_SUPPORTED
        for name in (
            "nvmlDeviceGetEccMode",
            "nvmlDeviceGetRetiredPagesPendingStatus",
            "nvmlDeviceGetRemappedRows",
            "nvmlDeviceGetMigMode",
        )
    }
    return FakeNvmlLib(
        [
            FakeGpu(
                name="NVIDIA GeForce RTX 4090",
                uuid="GPU-4090aaaa-0000-0000-0000-000000000000",
                cc=(8, 9),
                memory_total=24 * GiB,
                memory_used=GiB // 2,
                power_limit_mw=450_000,
                power_default_limit_mw=450_000,
                pcie_gen=(4, 4),
                errors=no_ecc,
            )
        ],
        driver_version="560.35.03",
        cuda_version=12060,
    )


def mig_enabled() -> FakeNvmlLib:
    a100 = {"name": "NVIDIA A100-SXM4-80GB", "cc": (8, 0), "pcie_gen": (4, 4)}
    return FakeNvmlLib(
        [
            replace(h100(0), mig=(1, 1), **a100),
            replace(h100(1), mig=(0, 1), **a100),
        ]
    )


def mig_null_utilization() -> FakeNvmlLib:
    """An A100 in MIG mode: the driver does not report the whole GPU's utilisation there (NVML reference,
    nvmlDeviceGetUtilizationRates: not supported in MIG mode), so nothing says whether it is idle."""
    a100 = {"name": "NVIDIA A100-SXM4-80GB", "cc": (8, 0), "pcie_gen": (4, 4)}
    mig = {"nvmlDeviceGetUtilizationRates": NOT_SUPPORTED}
    return FakeNvmlLib([h100(0, mig=(1, 1), errors=mig, **a100), h100(1, mig=(1, 1), errors=mig, **a100)])


def topology_not_reported() -> FakeNvmlLib:
    """Two PCIe GPUs on one socket whose driver (a VM's passthrough, a vGPU) does not report how they are
    joined: every topology query is not supported, so nothing says whether they cross the CPU socket."""
    unknown = {"nvmlDeviceGetTopologyCommonAncestor": NOT_SUPPORTED}
    return FakeNvmlLib([h100(0, errors=unknown), h100(1, errors=unknown)])


def exclusive_process_busy() -> FakeNvmlLib:
    """GPU 1 is in EXCLUSIVE_PROCESS compute mode and another job's process holds it: CUDA refuses a second
    context there ("CUDA-capable device(s) is/are busy or unavailable"); the GPU is busy, not broken."""
    held = h100(1, compute_mode=COMPUTEMODE_EXCLUSIVE_PROCESS, memory_used=40 * GiB, processes=[(4343, 40 * GiB)])
    return FakeNvmlLib([h100(0), held, h100(2), h100(3)])


def other_process_memory() -> FakeNvmlLib:
    return FakeNvmlLib([h100(0, memory_used=72 * GiB, processes=[(4242, 70 * GiB)], util=(97, 80)), h100(1)])


#: What a process on the GPU named itself (the kernel keeps 15 bytes; any user may set them): a screen clear,
#: a window-title write ended by BEL, the C1 CSI (UTF-8 c2 9b) and a byte that is not UTF-8.
HOSTILE_PROCESS_NAME = b"\x1b[2J\x1b]0;x\x07\xc2\x9b\xff"


def hostile_process_name() -> FakeNvmlLib:
    """GPU 0's memory is held by another user's process that named itself with terminal sequences
    (``prctl(PR_SET_NAME)``, Linux). The process is real, so that the doctor reads its name from /proc as
    it would any other: a child that renames itself, says so, and lives until this process exits (its
    stdin, a pipe from here, closes then)."""
    import subprocess

    code = (
        f"import ctypes, sys; ctypes.CDLL(None).prctl(15, {HOSTILE_PROCESS_NAME!r}, 0, 0, 0); "  # PR_SET_NAME
        "print('named', flush=True); sys.stdin.read()"
    )
    # -I: the child ignores PYTHONPATH, so tests/nvml_site's sitecustomize never builds this scenario again in it.
    child = subprocess.Popen([sys.executable, "-I", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"named\n"
    return FakeNvmlLib([h100(0, memory_used=72 * GiB, processes=[(child.pid, 70 * GiB)], util=(97, 80)), h100(1)])


def old_driver() -> FakeNvmlLib:
    """A 470-series driver (CUDA 11.4): predates the clocks-event and v3 process functions."""
    return FakeNvmlLib(
        [h100(0, name="Tesla V100-SXM2-32GB", cc=(7, 0), memory_total=32 * GiB, pcie_gen=(3, 3))],
        driver_version="470.82.01",
        cuda_version=11040,
        missing={
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetGraphicsRunningProcesses_v3",
        },
    )


def missing_functions() -> FakeNvmlLib:
    """A current driver missing a few functions the bindings know (older branch, stripped build)."""
    return FakeNvmlLib(
        [h100(0)],
        missing={"nvmlDeviceGetRemappedRows", "nvmlDeviceGetMigMode", "nvmlSystemGetCudaDriverVersion"},
    )


def ecc_lifetime_only() -> FakeNvmlLib:
    """Uncorrected ECC errors in the lifetime (aggregate) counter only: they happened before the last reboot
    or GPU reset, none since (the volatile counter is zero)."""
    return FakeNvmlLib([h100(0), h100(1, ecc=ecc_counts(volatile_unc=0, aggregate_unc=5))])


def readings_refused_mig() -> FakeNvmlLib:
    """An A100 in MIG mode seen by an unprivileged user (a container given one MIG instance): the driver
    answers most queries but refuses the whole GPU's memory and process readings with
    NVML_ERROR_NO_PERMISSION (NVML reference, nvmlDeviceGetMemoryInfo_v2: "In MIG mode, if device handle is
    provided, the API returns aggregate information, only if the caller has appropriate privileges")."""
    refused = {
        name: NO_PERMISSION
        for name in (
            "nvmlDeviceGetMemoryInfo",
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetGraphicsRunningProcesses_v3",
        )
    }
    a100 = {"name": "NVIDIA A100-SXM4-80GB", "cc": (8, 0), "pcie_gen": (4, 4)}
    return FakeNvmlLib([h100(0, mig=(1, 1), errors=refused, **a100), h100(1, **a100)])


def device_node_refused() -> FakeNvmlLib:
    """GPU 1's device node is not open to this user: the driver counts the GPU but refuses to open it."""
    return FakeNvmlLib([h100(0), h100(1, errors={"nvmlDeviceGetHandleByIndex_v2": NO_PERMISSION})])


def no_gpus() -> FakeNvmlLib:
    return FakeNvmlLib([])


def mixed_generations() -> FakeNvmlLib:
    """A Hopper card next to a new Blackwell workstation card (compute capability 12.0), on an r570
    driver (CUDA 12.8): the machine where an older torch build has no kernel for the new card."""
    blackwell = {"name": "NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "cc": (12, 0), "memory_total": 96 * GiB}
    return FakeNvmlLib([h100(0), h100(1, **blackwell)], driver_version="570.124.06", cuda_version=12080)


# -- the GPU fabric: NVLink, NVSwitch, PCIe topology and P2P ----------------------------------------------

#: NVLink4 links per H100 SXM5 (NVIDIA H100 Tensor Core GPU datasheet: 18 links, 900 GB/s).
H100_SXM_NVLINKS = 18
#: NVSwitch chips on an HGX H100 8-GPU baseboard (NVIDIA DGX H100 User Guide, "Hardware Overview": four
#: third-generation NVSwitches). Bus ids are made up; the split of links over the switches is illustrative.
HGX_NVSWITCHES = [f"00000000:{bus:02X}:00.0" for bus in (0x05, 0x06, 0x07, 0x08)]


def hgx_gpu(i: int, **kw: Any) -> FakeGpu:
    """GPU ``i`` of an HGX H100 board: 18 NVLinks up to the NVSwitches, fabric registered, GPUs 0-3 on CPU
    socket 0 and 4-7 on socket 1, each on a PCIe switch of its own."""
    links = [FakeLink(remote_bus_id=HGX_NVSWITCHES[n % len(HGX_NVSWITCHES)]) for n in range(H100_SXM_NVLINKS)]
    return h100(i, nvlinks=links, fabric=FakeFabric(), socket=i // 4, pcie_switch=i, **kw)


def hgx_8gpu() -> FakeNvmlLib:
    """8 × H100 SXM on NVSwitches, all healthy: every pair NV18, P2P everywhere, fabric registered."""
    return FakeNvmlLib([hgx_gpu(i) for i in range(8)], driver_version="550.90.07")


def hgx_7_of_8() -> FakeNvmlLib:
    """The HGX board whose eighth GPU (0000:1F:00.0) the driver did not take at boot: NVML enumerates seven,
    while the PCI bus still shows eight."""
    lib = hgx_8gpu()
    lib.gpus.pop()
    return lib


def hgx_nvlink_down() -> FakeNvmlLib:
    """The HGX board with GPU 3's link 7 down, and GPU 5's link 2 counting replays and CRC errors now (each
    read of those counters finds more)."""
    lib = hgx_8gpu()
    lib.gpus[3].nvlinks[7].active = False
    lib.gpus[5].nvlinks[2].errors = nvlink_errors(replay=Rising(120, per_read=7), crc_flit=Rising(40, per_read=3))
    return lib


def nvlink5_counters_na() -> FakeNvmlLib:
    """An HGX B200 board: NVLink 5, whose data-link error counts moved to field values, so the per-link
    counters NVML offers answer not supported on every link. Nothing here says whether links count errors."""
    lib = hgx_8gpu()
    for gpu in lib.gpus:
        gpu.name, gpu.cc = "NVIDIA B200", (10, 0)
        for link in gpu.nvlinks or []:
            link.version, link.errors = NVLINK_VERSION_5_0, {}
    return lib


def fabric_manager_not_running() -> FakeNvmlLib:
    """An HGX node whose nvidia-fabricmanager service is not running: the GPUs are not registered with the
    NVSwitch fabric, so their NVLinks are not trained (all down) and CUDA fails to start (error 802)."""
    lib = hgx_8gpu()
    for gpu in lib.gpus:
        gpu.fabric = FakeFabric(state=FABRIC_NOT_STARTED)
        for link in gpu.nvlinks or []:
            link.active = False
    return lib


def fabric_manager_in_progress() -> FakeNvmlLib:
    """The fabric manager has started and is still training the fabric (the minute after boot)."""
    lib = fabric_manager_not_running()
    for gpu in lib.gpus:
        gpu.fabric = FakeFabric(state=FABRIC_IN_PROGRESS)
    return lib


def fabric_manager_dead() -> FakeNvmlLib:
    """An HGX node whose fabric manager died (or never matched the driver): NVML leaves the GPUs' fabric state
    at In Progress indefinitely, not Not Started; what tells it from the minute after boot is the time since
    boot. CUDA fails with error 802 meanwhile."""
    return fabric_manager_in_progress()


def fabric_manager_failed() -> FakeNvmlLib:
    """The fabric manager ran but could not register GPU 2 (status an NVML error, here NVML_ERROR_UNKNOWN)."""
    lib = hgx_8gpu()
    lib.gpus[2].fabric = FakeFabric(status=999)
    return lib


def l40s(i: int, **kw: Any) -> FakeGpu:
    """An L40S: PCIe Gen4 x16, 48 GB GDDR6, 350 W, no NVLink (NVIDIA L40S datasheet)."""
    return replace(
        h100(i),
        name="NVIDIA L40S",
        cc=(8, 9),
        memory_total=48 * GiB,
        power_limit_mw=350_000,
        power_default_limit_mw=350_000,
        pcie_gen=(4, 4),
        **kw,
    )


def _pcie_p2p(a: FakeGpu, b: FakeGpu, caps: int) -> int:
    """P2P only between GPUs behind one PCIe switch: across switches on one socket the chipset path is refused
    (IOMMU/ACS), across sockets the topology does not support it; never over NVLink (there is none)."""
    if caps == P2P_CAPS_NVLINK:
        return P2P_NOT_SUPPORTED
    if a.socket != b.socket:
        return P2P_IOH_TOPOLOGY_NOT_SUPPORTED
    return P2P_OK if a.pcie_switch == b.pcie_switch else P2P_CHIPSET_NOT_SUPPORTED


def pcie_only_p2p_off() -> FakeNvmlLib:
    """8 × L40S on PCIe only: two PCIe switches per CPU socket, two GPUs per switch; P2P works within a
    switch and nowhere else."""
    return FakeNvmlLib([l40s(i, socket=i // 4, pcie_switch=i // 2) for i in range(8)], p2p=_pcie_p2p)


def pcie_replay_rising() -> FakeNvmlLib:
    """Two H100 PCIe cards; GPU 1's PCIe link is replaying packets now (a marginal link: riser, seating)."""
    # 350 W: the H100 PCIe's maximum power (NVIDIA H100 Tensor Core GPU datasheet, "Max thermal design power").
    pcie = {"name": "NVIDIA H100 PCIe", "power_limit_mw": 350_000, "power_default_limit_mw": 350_000}
    return FakeNvmlLib([h100(0, **pcie), h100(1, pcie_replay=Rising(310, per_read=45), **pcie)])


def old_steady_replays() -> FakeNvmlLib:
    """A healthy HGX board after weeks of uptime: a few NVLink recoveries and replays and some PCIe replays were
    counted while the links trained at boot, and nothing counts now (each read finds the same numbers)."""
    lib = hgx_8gpu()
    lib.gpus[1].nvlinks[4].errors = nvlink_errors(recovery=2)
    lib.gpus[6].nvlinks[0].errors = nvlink_errors(replay=5)
    lib.gpus[3].pcie_replay = 12
    return lib


def geforce(i: int, **kw: Any) -> FakeGpu:
    """An RTX 4090: 24 GB GDDR6X, 450 W, PCIe Gen4 x16, no NVLink, no ECC (NVIDIA GeForce RTX 4090 specs)."""
    no_ecc = {name: NOT_SUPPORTED for name in ("nvmlDeviceGetEccMode", "nvmlDeviceGetRemappedRows")}
    card = {"name": "NVIDIA GeForce RTX 4090", "cc": (8, 9), "memory_total": 24 * GiB, "pcie_gen": (4, 4)}
    return h100(i, power_limit_mw=450_000, power_default_limit_mw=450_000, errors=no_ecc, **card, **kw)


def geforce_p2p_disabled() -> FakeNvmlLib:
    """Two RTX 4090s on one CPU socket: the stock driver does not enable P2P between GeForce cards. Which status
    NVML gives for it differs between drivers; here "chipset not supported" (``CNS`` in ``nvidia-smi topo -p2p
    r``), the status an IOMMU or ACS problem also gives, so only the cards tell the causes apart."""
    return FakeNvmlLib(
        [geforce(0), geforce(1)], p2p=lambda a, b, caps: P2P_CHIPSET_NOT_SUPPORTED, driver_version="560.35.03"
    )


#: Link indices an H100 NVL has (the H100 die's 18), and those a pair's three NVLink bridges join: 12 links of
#: NVLink 4, 600 GB/s (NVIDIA H100 NVL product brief). Which indices a bridge takes is illustrative.
H100_NVL_LINKS, H100_NVL_BRIDGE_LINKS = 18, 4


def nvl_card(i: int, peer: int, bridges: int) -> FakeGpu:
    """An H100 NVL PCIe card joined to GPU ``peer`` by ``bridges`` NVLink bridges (a pair takes three); link
    indices without a bridge are inactive. No NVSwitch, so no fabric."""
    peer_bus = f"00000000:{0x18 + peer:02X}:00.0"
    links = [
        FakeLink(active=n < bridges * H100_NVL_BRIDGE_LINKS, remote_type=NVLINK_REMOTE_GPU, remote_bus_id=peer_bus)
        for n in range(H100_NVL_LINKS)
    ]
    card = {"name": "NVIDIA H100 NVL", "memory_total": 94 * GiB, "power_limit_mw": 400_000}
    return h100(i, nvlinks=links, power_default_limit_mw=400_000, socket=i // 2, pcie_switch=i // 2, **card)


def nvl_partially_bridged() -> FakeNvmlLib:
    """Four H100 NVL cards as two bridged pairs: GPUs 0 and 1 with all three bridges, GPUs 2 and 3 with one
    (two came loose, or were never fitted): 4 links between them where their twins have 12."""
    return FakeNvmlLib([nvl_card(0, 1, 3), nvl_card(1, 0, 3), nvl_card(2, 3, 1), nvl_card(3, 2, 1)])


# -- burn-in: readings that change over a run, on the scenario's clock ----------------------------------------

#: Illustrative readings of an H100 SXM under a sustained matmul load: SM clock at its boost (1980 MHz, the
#: H100 SXM's maximum SM clock as nvidia-smi reports it), power near the 700 W limit (the H100 SXM's maximum
#: TDP, NVIDIA H100 Tensor Core GPU datasheet), full utilisation, the GPU warming from 35 °C to a steady 68 °C
#: over the first two minutes and its HBM to 72 °C. The thresholds are the fake's (slowdown 87 °C, memory
#: max 95 °C: :func:`thresholds`).
BURN_SM_CLOCK_MHZ = 1980
#: How long the burn scenarios' runs last, in seconds of fake time, and the second GPU 2 slows down at in
#: :func:`burn_throttle_after_warmup` (minute 7).
BURN_RUN_S = 600.0
BURN_THROTTLE_AT_S = 420.0


def burn_gpu(i: int, clock: FakeClock, **kw: Any) -> FakeGpu:
    """GPU ``i`` of an HGX H100 board under a steady burn, its readings on ``clock``."""
    loaded = {
        "util": (100, Timed(55, clock=clock)),
        "temp": Timed(35, ((120.0, 68),), clock=clock, ramp=True),
        "mem_temp": Timed(38, ((120.0, 72),), clock=clock, ramp=True),
        "power_mw": 690_000,
        "clocks_reasons": REASON_NONE,
        "sm_clock_mhz": BURN_SM_CLOCK_MHZ,
        "memory_used": 70 * GiB,
    }
    loaded.update(kw)
    return hgx_gpu(i, **loaded)


def burn_healthy_8gpu() -> FakeNvmlLib:
    """Eight GPUs burning steadily for the whole run. GPU 0 runs at its power limit now and then (the SW power
    cap: normal under a matmul load, not a fault), and every GPU counts corrected ECC errors (normal on HBM)."""
    clock = FakeClock()
    gpus = [burn_gpu(i, clock) for i in range(8)]
    gpus[0].clocks_reasons = Timed(REASON_NONE, ((200.0, REASON_SW_POWER_CAP), (230.0, REASON_NONE)), clock=clock)
    return FakeNvmlLib(gpus, driver_version="550.90.07", clock=clock)


def burn_throttle_after_warmup() -> FakeNvmlLib:
    """GPU 2's cooling cannot keep up: its temperature climbs to the 87 °C slowdown threshold by minute 7
    (:data:`BURN_THROTTLE_AT_S`), when HW thermal slowdown engages and its SM clock drops 30 % (1980 -> 1386
    MHz) to the end of the run; its siblings stay cool and fast."""
    lib = burn_healthy_8gpu()
    clock, at = lib.clock, BURN_THROTTLE_AT_S
    lib.gpus[0].clocks_reasons = REASON_NONE
    lib.gpus[2] = burn_gpu(
        2,
        clock,
        temp=Timed(35, ((120.0, 70), (at, 87)), clock=clock, ramp=True),
        clocks_reasons=Timed(REASON_NONE, ((at, REASON_HW_THERMAL),), clock=clock),
        sm_clock_mhz=Timed(BURN_SM_CLOCK_MHZ, ((at, round(BURN_SM_CLOCK_MHZ * 0.7)),), clock=clock),
        power_mw=Timed(690_000, ((at, 480_000),), clock=clock),
    )
    return lib


def burn_temperature_climbs() -> FakeNvmlLib:
    """GPU 5 never settles: its temperature climbs all run, from 35 °C to 84 °C at the end (3 °C short of the
    87 °C slowdown threshold), without slowing down yet; its HBM climbs to 91 °C (4 °C short of 95 °C)."""
    lib = burn_healthy_8gpu()
    clock = lib.clock
    lib.gpus[0].clocks_reasons = REASON_NONE
    lib.gpus[5].temp = Timed(35, ((BURN_RUN_S, 84),), clock=clock, ramp=True)
    lib.gpus[5].mem_temp = Timed(38, ((BURN_RUN_S, 91),), clock=clock, ramp=True)
    return lib


def burn_xid() -> FakeNvmlLib:
    """Mid-run GPU 1 reports Xid 48 (a double-bit ECC error) at 5:00, and GPU 6 reports Xid 79 at 7:30 and
    falls off the bus: from then on every read of it answers GPU_IS_LOST."""
    lib = burn_healthy_8gpu()
    lib.gpus[0].clocks_reasons = REASON_NONE
    lib.gpus[1].xids = [(300.0, 48)]
    lib.gpus[6].xids = [(450.0, 79)]
    lib.gpus[6].lost_after_s = 450.0
    return lib


def burn_ecc_midrun() -> FakeNvmlLib:
    """GPU 3's volatile uncorrected ECC count goes from 0 to 2 at 4:00 of the run (HBM failing under load)."""
    lib = burn_healthy_8gpu()
    lib.gpus[0].clocks_reasons = REASON_NONE
    lib.gpus[3].ecc = ecc_counts(volatile_unc=Timed(0, ((240.0, 2),), clock=lib.clock), aggregate_unc=0)
    return lib


def burn_row_remap_pending() -> FakeNvmlLib:
    """At 3:00 of the run GPU 4's memory needs a row remapped (an uncorrectable error): the remap is pending
    until the GPU is reset."""
    lib = burn_healthy_8gpu()
    lib.gpus[0].clocks_reasons = REASON_NONE
    step = Timed(0, ((180.0, 1),), clock=lib.clock)
    lib.gpus[4].remapped_rows = (0, step, step, 0)
    return lib


def burn_power_capped_sibling() -> FakeNvmlLib:
    """GPU 7's power limit was lowered to 450 W by someone: it runs at its power cap all run (SW power cap, not
    a fault by itself) with its SM clock at 1600 MHz, 19 % below its siblings'."""
    lib = burn_healthy_8gpu()
    lib.gpus[0].clocks_reasons = REASON_NONE
    lib.gpus[7] = burn_gpu(
        7, lib.clock, power_limit_mw=450_000, power_mw=449_000, clocks_reasons=REASON_SW_POWER_CAP, sm_clock_mhz=1600
    )
    return lib


SCENARIOS: dict[str, Callable[[], FakeNvmlLib]] = {
    f.__name__: f
    for f in (
        healthy_multi_gpu,
        hgx_7_of_8,
        ecc_uncorrected_row_remap,
        thermal_throttle_pcie_downgrade,
        gpu_lost,
        driver_library_mismatch,
        driver_not_loaded,
        no_permission,
        geforce_no_ecc,
        mig_enabled,
        mig_null_utilization,
        nvlink5_counters_na,
        exclusive_process_busy,
        fabric_manager_dead,
        topology_not_reported,
        other_process_memory,
        hostile_process_name,
        old_driver,
        missing_functions,
        ecc_lifetime_only,
        readings_refused_mig,
        device_node_refused,
        no_gpus,
        mixed_generations,
        hgx_8gpu,
        hgx_nvlink_down,
        fabric_manager_not_running,
        fabric_manager_in_progress,
        fabric_manager_failed,
        pcie_only_p2p_off,
        pcie_replay_rising,
        old_steady_replays,
        geforce_p2p_disabled,
        nvl_partially_bridged,
        burn_healthy_8gpu,
        burn_throttle_after_warmup,
        burn_temperature_climbs,
        burn_xid,
        burn_ecc_midrun,
        burn_row_remap_pending,
        burn_power_capped_sibling,
    )
}


def bindings_globals() -> dict[str, Any]:
    """The namespace the binding's wrappers read ``nvmlLib`` and the function-pointer cache from.

    nvidia-ml-py is one module, ``pynvml``; the deprecated pynvml distribution's package re-exports
    ``pynvml.nvml`` with ``import *``, which leaves those private globals behind in ``pynvml.nvml``; a copy
    of the functions in another module object still reads the globals they were defined in.
    """
    return pynvml.nvmlInit.__globals__


def fresh_session(monkeypatch: Any) -> None:
    """Forget the process's NVML session (envcheck.probes.nvml.session.shared), so that the next reader starts
    NVML again: over a newly installed library, or a newly imported pynvml module. Where envcheck's session
    module is not loaded yet there is none to forget (a child process's sitecustomize), and it is left
    unloaded: loading it here would order its exit-time shutdown before the child's own exit handlers."""
    session = sys.modules.get("envcheck.probes.nvml.session")
    if session is not None:
        monkeypatch.setattr(session, "_shared", None)


def install(lib: FakeNvmlLib | None, monkeypatch: Any) -> None:
    """Make the real pynvml talk to ``lib``; ``None`` simulates a machine without the library."""
    fresh_session(monkeypatch)
    namespace = bindings_globals()
    monkeypatch.setitem(namespace, "nvmlLib", lib)
    monkeypatch.setitem(namespace, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setitem(namespace, "_nvmlLib_refcount", 0)
    if lib is None:

        def no_library(name: str, *args: Any, **kwargs: Any) -> Any:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")

        monkeypatch.setitem(namespace, "CDLL", no_library)


def activate(lib: FakeNvmlLib | None) -> None:
    """:func:`install` without pytest, for a child process (see tests/nvml_site/sitecustomize.py)."""

    class _Patch:
        def setitem(self, target: dict[str, Any], name: str, value: Any) -> None:
            target[name] = value

        def setattr(self, target: Any, name: str, value: Any) -> None:
            setattr(target, name, value)

    install(lib, _Patch())
