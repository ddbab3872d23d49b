"""The fabric probe over the fake NVML library (tests/fakenvml.py), through the real nvidia-ml-py wrappers: the
fake answers each NVLink, topology, P2P and fabric call the way the driver does, and the probe reads links until
the driver says there are no more, reads counters twice only where something could rise, and reports a missing
function as not available."""

from __future__ import annotations

import pytest

from envcheck.core.model import NA
from envcheck.probes.nvml.fabric import INTERVAL_ENV, NVLINK_MAX_LINKS, bus_key, interval, probe_fabric
from envcheck.probes.nvml.session import NOT_SUPPORTED, OLDER_DRIVER
from tests import fakenvml


class Sleeps:
    """Stands in for time.sleep: records the waits, waits for none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def read(**kw):
    sleeps = Sleeps()
    return probe_fabric(interval_s=0.25, sleep=sleeps, **kw), sleeps


def handle(index: int = 0):
    import pynvml

    pynvml.nvmlInit()
    return pynvml.nvmlDeviceGetHandleByIndex(index)


# -- the fake answers like the driver ------------------------------------------------------------------------


def test_fake_nvlink_state_is_not_supported_without_nvlink_and_invalid_past_the_last_link(nvml):
    import pynvml

    lib = nvml("hgx_8gpu")
    lib.gpus[1].nvlinks = None
    assert pynvml.nvmlDeviceGetNvLinkState(handle(0), 17) == 1
    with pytest.raises(pynvml.NVMLError) as past:
        pynvml.nvmlDeviceGetNvLinkState(handle(0), 18)
    assert past.value.value == 2  # NVML_ERROR_INVALID_ARGUMENT
    with pytest.raises(pynvml.NVMLError) as none:
        pynvml.nvmlDeviceGetNvLinkState(handle(1), 0)
    assert none.value.value == 3  # NVML_ERROR_NOT_SUPPORTED


def test_fake_p2p_answers_per_capability(nvml):
    import pynvml

    nvml("pcie_only_p2p_off")
    # nvml.h: caps index 0 read, 2 NVLink; status 0 OK, 1 chipset not supported, 3 topology, 5 not supported.
    assert pynvml.nvmlDeviceGetP2PStatus(handle(0), handle(1), 0) == 0
    assert pynvml.nvmlDeviceGetP2PStatus(handle(0), handle(1), 2) == 5
    assert pynvml.nvmlDeviceGetP2PStatus(handle(0), handle(2), 0) == 1
    assert pynvml.nvmlDeviceGetP2PStatus(handle(0), handle(4), 0) == 3


def test_fake_versioned_fabric_info_checks_the_struct_version(nvml):
    import ctypes

    import pynvml

    nvml("hgx_8gpu")
    info = pynvml.c_nvmlGpuFabricInfo_v2_t()
    pynvml.nvmlDeviceGetGpuFabricInfoV(handle(), ctypes.byref(info))
    assert (info.state, info.status, info.healthMask) == (3, 0, 2)  # completed, success, bandwidth not degraded
    old = pynvml.c_nvmlGpuFabricInfo_v2_t()
    old.version = 0x01000020
    with pytest.raises(pynvml.NVMLError) as mismatch:
        pynvml.nvmlDeviceGetGpuFabricInfoV(handle(), ctypes.byref(old))
    assert mismatch.value.value == 25  # NVML_ERROR_ARGUMENT_VERSION_MISMATCH


def test_rising_reading_advances_per_read_and_with_its_clock():
    now = [100.0]
    counter = fakenvml.Rising(10, per_read=2, per_second=4.0, clock=lambda: now[0])
    assert counter.read() == 10
    now[0] += 0.5
    assert counter.read() == 10 + 2 + 2
    now[0] += 1.0
    assert counter.read() == 10 + 4 + 6


# -- the probe -----------------------------------------------------------------------------------------------


def test_hgx_links_topology_p2p_and_fabric(nvml):
    nvml("hgx_8gpu")
    info, sleeps = read()
    assert info.status == "ok" and len(info.gpus) == 8 and len(info.pairs) == 8 * 7
    gpu = info.gpus[0]
    assert gpu.pci_bus_id == "00000000:18:00.0"
    assert len(gpu.nvlinks) == 18 and all(link.active for link in gpu.nvlinks)
    link = gpu.nvlinks[5]
    assert (link.version, link.remote_type, link.remote_bus_id) == ("4.0", "switch", "00000000:06:00.0")
    assert set(link.counters) == {"replay", "recovery", "crc_flit", "crc_data", "ecc_data"}
    assert gpu.fabric.state == "completed" and gpu.fabric.status == 0 and gpu.fabric.degraded_bandwidth is False
    assert info.pair(0, 1).label == "NV18" and info.pair(0, 1).p2p_nvlink == "ok"
    assert info.pair(0, 4).topology == "system" and info.pair(0, 1).topology == "node"
    # Eight GPUs with NVLinks: one wait for all of them, then every counter read a second time.
    assert sleeps.waits == [0.25] and info.interval_s == 0.25
    assert link.counters["replay"].later == 0 and gpu.pcie_replay.later == 0


def test_a_counter_rising_between_the_readings(nvml):
    nvml("hgx_nvlink_down")
    info, _ = read()
    replay = info.gpus[5].nvlinks[2].counters["replay"]
    assert (replay.first, replay.later, replay.rising) == (120, 127, True)
    assert not info.gpus[5].nvlinks[3].counters["replay"].rising
    down = info.gpus[3].nvlinks[7]
    assert not down.active and down.counters == {} and isinstance(down.version, NA)
    assert info.pair(3, 0).nvlinks == 17 and info.pair(0, 3).label == "NV17" and info.pair(0, 1).nvlinks == 18


def test_pcie_only_node_is_read_once_and_pays_no_wait(nvml):
    nvml("pcie_only_p2p_off")
    info, sleeps = read()
    assert sleeps.waits == [] and info.interval_s is None
    gpu = info.gpus[0]
    assert gpu.nvlinks == NA(NOT_SUPPORTED) and gpu.fabric.state == NA(NOT_SUPPORTED)
    assert gpu.pcie_replay.first == 0 and gpu.pcie_replay.later is None
    indices = list(range(8))
    assert info.topology_matrix(indices)[0] == ["X", "PIX", "NODE", "NODE", "SYS", "SYS", "SYS", "SYS"]
    assert info.p2p_matrix(indices)[0] == ["X", "OK", "CNS", "CNS", "TNS", "TNS", "TNS", "TNS"]
    assert info.p2p_matrix(indices, "p2p_nvlink")[1] == ["NS", "X", "NS", "NS", "NS", "NS", "NS", "NS"]


def test_a_nonzero_pcie_replay_count_is_watched_even_without_nvlink(nvml):
    nvml("pcie_replay_rising")
    info, sleeps = read()
    assert sleeps.waits == [0.25]
    assert (info.gpus[1].pcie_replay.first, info.gpus[1].pcie_replay.later) == (310, 355)


def test_links_are_read_no_further_than_nvml_numbers_them(nvml):
    lib = nvml("hgx_8gpu")
    lib.gpus[0].nvlinks = [fakenvml.FakeLink(active=False) for _ in range(NVLINK_MAX_LINKS + 4)]
    info, _ = read()
    assert len(info.gpus[0].nvlinks) == NVLINK_MAX_LINKS
    states = [c for c in lib.calls if c == "nvmlDeviceGetNvLinkState"]
    assert len(states) == NVLINK_MAX_LINKS + 7 * 19  # GPU 0 stops at the bound; the others ask for link 18 too


def test_an_older_driver_falls_back_to_the_first_fabric_call(nvml):
    lib = nvml("fabric_manager_not_running")
    lib.missing = {"nvmlDeviceGetGpuFabricInfoV"}
    info, _ = read()
    assert info.gpus[0].fabric.state == "not_started"
    assert info.gpus[0].fabric.degraded_bandwidth == NA()  # the first struct has no health mask
    assert "nvmlDeviceGetGpuFabricInfoV" in info.missing_functions
    lib = nvml("fabric_manager_not_running")  # a fresh library: the binding caches the functions it found
    lib.missing = {"nvmlDeviceGetGpuFabricInfoV", "nvmlDeviceGetGpuFabricInfo", "nvmlDeviceGetP2PStatus"}
    info, _ = read()
    assert info.gpus[0].fabric.state == NA(OLDER_DRIVER)
    assert info.pair(0, 1).p2p_read == NA(OLDER_DRIVER) and info.pair(0, 1).topology == "node"


def test_a_lost_gpu_is_left_out_of_the_pairs(nvml):
    nvml("gpu_lost")
    info, _ = read()
    assert [g.answers for g in info.gpus] == [True, False, True]
    assert info.gpus[1].unreadable.startswith("lost")
    assert {(p.a, p.b) for p in info.pairs} == {(0, 2), (2, 0)}


def test_fabric_registration_failure_keeps_the_drivers_words(nvml):
    nvml("fabric_manager_failed")
    info, _ = read()
    assert info.gpus[2].fabric.status == 999 and info.gpus[2].fabric.status_text == "fake NVML error 999"
    assert info.gpus[0].fabric.status_text is None


def test_no_library_is_a_status_not_an_exception(nvml):
    nvml("no_library")
    info, sleeps = read()
    assert info.status == "no_library" and info.gpus == [] and sleeps.waits == []


@pytest.mark.parametrize(
    "value, seconds", [(None, 0.5), ("0.05", 0.05), ("-1", 0.0), ("600", 5.0), ("soon", 0.5), ("nan", 0.5)]
)
def test_interval_from_the_environment_is_bounded(value, seconds):
    env = {} if value is None else {INTERVAL_ENV: value}
    assert interval(env) == seconds


def test_bus_ids_compare_by_number():
    assert bus_key("00000000:1B:00.0") == bus_key("0000:1b:00.0") == (0, 0x1B, 0, 0)
    assert bus_key(NA()) is None and bus_key("garbage") is None
