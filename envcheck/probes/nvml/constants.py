"""The NVML constants envcheck uses, as the C values of ``nvml.h``: one table, read by every NVML reader.

C values rather than the binding's names because the ``pynvml`` module found at run time may not be
nvidia-ml-py: the deprecated ``pynvml`` distribution and old vendored copies lack some names (or, as some
nvidia-ml-py releases do with ``NVML_P2P_CAPS_INDEX_READ``, define one as the tuple ``(0,)``), while the C
values are the ABI and hold for every binding. Each group names the ``nvml.h`` type it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from envcheck.core.model import NA, available

# -- nvmlReturn_t: errors are told apart by these codes, never by the binding's exception classes ------------
SUCCESS = 0
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_LIB_RM_VERSION_MISMATCH = 18

# -- selectors -------------------------------------------------------------------------------------------------
#: nvmlTemperatureSensors_t.
TEMPERATURE_GPU = 0
#: nvmlTemperatureThresholds_t.
TEMPERATURE_THRESHOLD_SHUTDOWN = 0
TEMPERATURE_THRESHOLD_SLOWDOWN = 1
TEMPERATURE_THRESHOLD_MEM_MAX = 2
TEMPERATURE_THRESHOLD_GPU_MAX = 3
#: nvmlMemoryErrorType_t.
MEMORY_ERROR_TYPE_CORRECTED = 0
MEMORY_ERROR_TYPE_UNCORRECTED = 1
#: nvmlEccCounterType_t.
VOLATILE_ECC = 0  # since the last driver load (reboot or GPU reset)
AGGREGATE_ECC = 1  # over the GPU's life, kept in its InfoROM
#: nvmlClockType_t.
CLOCK_SM = 1
CLOCK_MEM = 2
#: nvmlComputeMode_t, by the names the report uses.
COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}

# -- field values and events -----------------------------------------------------------------------------------
#: The field id NVML_FI_DEV_MEMORY_TEMP: HBM temperature, which is not a sensor of nvmlDeviceGetTemperature.
FIELD_MEMORY_TEMP = 82
#: nvmlValueType_t -> the member of the nvmlValue_t union that holds it.
VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
#: nvmlEventTypeXidCriticalError.
EVENT_TYPE_XID = 0x8

# -- NVLink, topology, P2P and the NVSwitch fabric ---------------------------------------------------------------
#: ``NVML_NVLINK_MAX_LINKS`` (36 since the Blackwell-era headers; 18 before): the most links NVML numbers on one
#: GPU. Links are asked for in order until the driver says a link does not exist.
NVLINK_MAX_LINKS = 36
#: nvmlNvLinkErrorCounter_t: the data-link error counters, by the names the report uses.
NVLINK_COUNTERS = {"replay": 0, "recovery": 1, "crc_flit": 2, "crc_data": 3, "ecc_data": 4}
#: nvmlIntNvLinkDeviceType_t: what is at the far end of a link.
NVLINK_REMOTE_TYPES = {0: "gpu", 1: "ibmnpu", 2: "switch", 0xFF: "unknown"}
#: nvmlNvlinkVersion_t: nvmlDeviceGetNvLinkVersion answers this enum, not the version number (an A100 answers
#: 5, NVLink 3.1: NVML API reference, "nvmlNvlinkVersion_t"; hwloc issue #658).
NVLINK_VERSIONS = {1: "1.0", 2: "2.0", 3: "2.2", 4: "3.0", 5: "3.1", 6: "4.0", 7: "5.0", 8: "6.0"}
#: nvmlGpuTopologyLevel_t.
TOPOLOGY_LEVELS = {0: "internal", 10: "single", 20: "multiple", 30: "hostbridge", 40: "node", 50: "system"}
#: nvmlGpuP2PCapsIndex_t: the capability asked about.
P2P_CAPS_READ = 0
P2P_CAPS_NVLINK = 2
#: nvmlGpuP2PStatus_t.
P2P_STATUSES = {
    0: "ok",
    1: "chipset_not_supported",
    2: "gpu_not_supported",
    3: "ioh_topology_not_supported",
    4: "disabled_by_regkey",
    5: "not_supported",
    6: "unknown",
}
#: nvmlGpuFabricState_t.
FABRIC_STATES = {0: "not_supported", 1: "not_started", 2: "in_progress", 3: "completed"}
#: ``NVML_GPU_FABRIC_HEALTH_MASK_*_DEGRADED_BW``: bits 0-1 of healthMask; 1 means bandwidth degraded.
HEALTH_DEGRADED_BW_SHIFT, HEALTH_DEGRADED_BW_WIDTH, HEALTH_DEGRADED_BW_TRUE = 0, 0x3, 1


# -- clocks-event (throttle) reasons ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ClocksEventReason:
    """One bit of nvml.h's ``nvmlClocksEventReason*`` mask (``nvmlClocksThrottleReason*`` before r535: the
    same bits)."""

    bit: int
    #: The name samples, reports and the Prometheus ``reason`` label use.
    name: str
    #: What a person reads in a verdict.
    words: str
    #: The GPU is slowed by a fault or by heat. DCGM's diagnostic fails a GPU on exactly these four
    #: (``DcgmRecorder::CheckForClocksEvent``'s failure mask: HW slowdown, SW thermal, HW thermal, HW power
    #: brake). Idle, application clocks, the SW power cap (running at the configured power limit), sync
    #: boost and display clocks are normal operation.
    problem: bool = False


#: Every clocks-event reason envcheck names, in bit order.
CLOCKS_EVENT_REASONS = (
    ClocksEventReason(0x1, "gpu_idle", "GPU idle"),
    ClocksEventReason(0x2, "applications_clocks", "application clocks setting"),
    ClocksEventReason(0x4, "sw_power_cap", "SW power cap"),
    ClocksEventReason(0x8, "hw_slowdown", "HW slowdown (power brake or overheating signalled by the board)", True),
    ClocksEventReason(0x10, "sync_boost", "sync boost"),
    ClocksEventReason(0x20, "sw_thermal", "SW thermal slowdown", True),
    ClocksEventReason(0x40, "hw_thermal", "HW thermal slowdown", True),
    ClocksEventReason(0x80, "hw_power_brake", "HW power brake (external power supply signal)", True),
    ClocksEventReason(0x100, "display_clocks", "display clocks setting"),
    ClocksEventReason(0x200, "board_limit", "board limit"),
    ClocksEventReason(0x400, "reliability", "reliability limit"),
)
#: The reasons that mean a fault or heat (see :attr:`ClocksEventReason.problem`): bit -> words.
THROTTLE_PROBLEMS = {r.bit: r.words for r in CLOCKS_EVENT_REASONS if r.problem}
#: Their bits together: what fails the doctor (SW thermal alone warns there) and a burn. The SW power cap is
#: normal under a matmul load and left out, as DCGM leaves it out; a GPU slowed by a lowered limit shows up
#: against its siblings.
THROTTLE_MASK = sum(THROTTLE_PROBLEMS)


def reason_names(mask: int | NA) -> tuple[str, ...]:
    """The names of the bits set in a clocks-event mask (``unknown_0x800`` for a bit nvml.h adds later)."""
    if not available(mask):
        return ()
    names = [r.name for r in CLOCKS_EVENT_REASONS if mask & r.bit]
    rest = mask & ~sum(r.bit for r in CLOCKS_EVENT_REASONS)
    names += [f"unknown_{1 << b:#x}" for b in range(64) if rest >> b & 1]
    return tuple(names)


#: Warn this many degrees before the driver's slowdown threshold (NVML_TEMPERATURE_THRESHOLD_SLOWDOWN): the
#: doctor's gpu.temperature and the burn's temperature rule judge against the same margin.
TEMPERATURE_MARGIN_C = 5
