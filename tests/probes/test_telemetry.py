"""The telemetry sampler over the fake NVML library (tests/fakenvml.py), through the real nvidia-ml-py wrappers.

Most tests drive the sampler by hand on the scenario's fake clock (``lib.clock``): step the clock, take a
round, look at the samples; so a reading that changes at 7:00 changes at exactly 420 s of fake time, and no
test waits. The thread itself is tested with tiny real intervals, and a hung NVML call with a hook that blocks.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from envcheck.core.model import NA
from envcheck.probes.nvml.session import NOT_SUPPORTED, OLDER_DRIVER
from envcheck.probes.nvml.telemetry import Point, Sample, Sampler, reason_names
from tests import fakenvml


def opened(lib: fakenvml.FakeNvmlLib, devices=None, **kw) -> Sampler:
    sampler = Sampler(devices, clock=lib.clock, host=False, **kw)
    sampler.open()
    return sampler


def run(sampler: Sampler, lib: fakenvml.FakeNvmlLib, *, until_s: float, step_s: float) -> None:
    while lib.clock() <= until_s:
        sampler.sample()
        lib.clock.advance(step_s)


def test_a_round_reads_every_field_of_every_gpu(nvml):
    lib = nvml("burn_healthy_8gpu")
    lib.clock.advance(200.0)  # GPU 0 at its power cap now; everyone warmed up
    sampler = opened(lib)
    taken = sampler.sample()
    sampler.close()
    assert [s.device for s in taken] == list(range(8))
    assert taken[0] == Sample(
        device=0,
        t_s=0.0,
        sm_clock_mhz=1980,
        mem_clock_mhz=2619,
        power_w=690.0,
        power_limit_w=700.0,
        temperature_c=68,
        memory_temperature_c=72,
        slowdown_c=87,
        memory_max_c=95,
        utilization_gpu_pct=100,
        utilization_memory_pct=55,
        clocks_event_reasons=0x4,
        ecc_volatile_uncorrected=0,
        ecc_volatile_corrected=12,  # the fake's corrected count, not the uncorrected one
        row_remap_pending=False,
        row_remap_failed=False,
        rows_remapped_correctable=0,
        rows_remapped_uncorrectable=0,
        pcie_replay=0,
        xids=(),
    )
    assert taken[0].reasons == ("sw_power_cap",) and taken[1].reasons == ()
    gpu = sampler.gpus[3]
    assert (gpu.index, gpu.name, gpu.pci_bus_id) == (3, "NVIDIA H100 80GB HBM3", "00000000:1B:00.0")
    # Each threshold by its own kind: slowdown, shutdown, GPU max, memory max.
    assert (gpu.slowdown_c, gpu.shutdown_c, gpu.gpu_max_c, gpu.memory_max_c) == (87, 92, 85, 95)
    assert gpu.xid_events is True


def test_samples_are_stamped_on_the_sampler_clock_and_follow_the_scenario(nvml):
    lib = nvml("burn_throttle_after_warmup")
    sampler = opened(lib, [2])
    run(sampler, lib, until_s=600.0, step_s=10.0)
    sampler.close()
    samples = sampler.telemetry().samples[2]
    assert [s.t_s for s in samples] == [10.0 * k for k in range(61)]
    at = {s.t_s: s for s in samples}
    assert at[410.0].reasons == () and at[410.0].sm_clock_mhz == 1980
    assert at[420.0].reasons == ("hw_thermal",) and at[420.0].sm_clock_mhz == 1386 and at[420.0].temperature_c == 87
    assert at[0.0].temperature_c == 35 and at[60.0].temperature_c == round(35 + (70 - 35) / 2)


def test_the_funnel_turns_what_the_card_lacks_into_na(nvml):
    lib = nvml("geforce_no_ecc")
    lib.gpus[0].mem_temp = None  # GDDR: no memory temperature sensor
    sample = opened(lib).sample()[0]
    assert sample.ecc_volatile_uncorrected == NA(NOT_SUPPORTED)
    assert sample.row_remap_pending == NA(NOT_SUPPORTED) and sample.rows_remapped_uncorrectable == NA(NOT_SUPPORTED)
    assert sample.memory_temperature_c == NA(NOT_SUPPORTED)
    assert sample.temperature_c == 34 and sample.sm_clock_mhz == 345  # the rest is still read


def test_an_older_driver_answers_the_old_throttle_reasons_and_lacks_what_it_lacks(nvml):
    lib = nvml("old_driver")
    lib.missing |= {"nvmlDeviceGetFieldValues", "nvmlEventSetCreate"}
    lib.gpus[0].clocks_reasons = fakenvml.REASON_HW_SLOWDOWN
    sampler = opened(lib)
    sample = sampler.sample()[0]
    assert sample.reasons == ("hw_slowdown",) and "nvmlDeviceGetCurrentClocksThrottleReasons" in lib.calls
    assert sample.memory_temperature_c == NA(OLDER_DRIVER)
    assert sample.xids == NA(OLDER_DRIVER) and sampler.gpus[0].xid_events == NA(OLDER_DRIVER)
    assert "nvmlDeviceGetFieldValues" in sampler.telemetry().missing_functions


def test_xid_events_reach_the_sample_of_their_gpu_once(nvml):
    lib = nvml("burn_xid")
    sampler = opened(lib, [0, 1])
    run(sampler, lib, until_s=400.0, step_s=1.0)
    sampler.close()
    samples = sampler.telemetry().samples
    assert [(s.t_s, s.xids) for s in samples[1] if s.xids] == [(300.0, (48,))]
    assert all(s.xids == () for s in samples[0])
    assert lib.event_sets == {}  # the event set was freed on close
    assert lib.calls.count("nvmlEventSetCreate") == 1 and lib.calls.count("nvmlShutdown") == 1


def test_a_gpu_without_xid_events_says_so_in_every_sample(nvml):
    lib = nvml("burn_healthy_8gpu")
    lib.gpus[1].xid_events = False
    sampler = opened(lib, [0, 1])
    s0, s1 = sampler.sample()
    assert s0.xids == () and s1.xids == NA(NOT_SUPPORTED)
    assert sampler.gpus[1].xid_events == NA(NOT_SUPPORTED)


def test_a_gpu_lost_mid_run_becomes_lost_samples_and_the_others_go_on(nvml):
    lib = nvml("burn_xid")
    sampler = opened(lib)
    run(sampler, lib, until_s=460.0, step_s=10.0)
    calls_before = len(lib.calls)
    sampler.sample()
    last_round = lib.calls[calls_before:]
    sampler.close()
    gpu6 = sampler.telemetry().samples[6]
    first_lost = next(s for s in gpu6 if s.lost)
    assert first_lost.t_s == 450.0 and first_lost.xids == (79,)  # its last words come with it
    assert "GPU is lost" in first_lost.error and first_lost.sm_clock_mhz == NA()
    assert all(s.lost for s in gpu6 if s.t_s >= 450.0) and not any(s.lost for s in gpu6 if s.t_s < 450.0)
    assert all(not s.lost for s in sampler.telemetry().samples[5])
    # A lost GPU is not asked again: a round reads the seven others.
    assert last_round.count("nvmlDeviceGetPowerUsage") == 7


def test_gpus_chosen_by_index_or_uuid_in_the_order_asked(nvml):
    lib = nvml("burn_healthy_8gpu")
    sampler = opened(lib, [5, "GPU-00000002", "3", "GPU-ffff", 9])
    assert [g.index for g in sampler.gpus] == [5, 2, 3]
    assert sampler.telemetry().unresolved == ("GPU-ffff", "9")
    assert [s.device for s in sampler.sample()] == [5, 2, 3]


def test_a_gpu_this_user_may_not_open_is_named_and_not_sampled(nvml):
    lib = nvml("device_node_refused")
    sampler = opened(lib)
    assert "refused" in sampler.gpus[1].error and sampler.gpus[0].error is None
    assert [s.device for s in sampler.sample()] == [0]


def test_values_are_recorded_on_the_same_clock(nvml):
    lib = nvml("burn_healthy_8gpu")
    lib.clock.advance(1000.0)
    sampler = opened(lib, [0])
    lib.clock.advance(7.5)
    assert sampler.now() == 7.5 and sampler.since_start(1010.0) == 10.0
    assert sampler.record(0, 812.5) == Point(7.5, 812.5)
    sampler.record("cpu", 1.5, t_s=3.0)
    assert sampler.telemetry().values == {0: (Point(7.5, 812.5),), "cpu": (Point(3.0, 1.5),)}


def test_telemetry_is_strict_json_with_reason_names(nvml):
    lib = nvml("geforce_no_ecc")
    sampler = opened(lib)
    sampler.sample()
    sampler.record(0, 100.0)
    data = json.loads(json.dumps(sampler.telemetry().to_json(), allow_nan=False))
    sample = data["samples"]["0"][0]
    assert sample["ecc_volatile_uncorrected"] is None and sample["reasons"] == ["gpu_idle"]
    assert data["values"]["0"] == [{"t_s": 0.0, "value": 100.0}] and data["status"] == "ok"


def test_reason_names_decode_every_bit():
    assert reason_names(0x8 | 0x40 | 0x80) == ("hw_slowdown", "hw_thermal", "hw_power_brake")
    assert reason_names(0x4 | 0x800) == ("sw_power_cap", "unknown_0x800")
    assert reason_names(NA()) == ()


def test_a_cpu_burn_samples_the_host_without_nvml(nvml):
    lib = nvml("burn_healthy_8gpu")
    sampler = Sampler([], clock=lib.clock)
    sampler.open()
    lib.clock.advance(2.0)
    assert sampler.sample() == []
    sampler.close()
    telemetry = sampler.telemetry()
    assert telemetry.status == "unused" and telemetry.gpus == () and lib.calls == []
    (host,) = telemetry.host
    assert host.t_s == 2.0 and 0.0 <= host.cpu_pct <= 100.0


def test_without_nvml_the_sampler_says_why_and_still_runs(nvml):
    nvml("driver_not_loaded")
    sampler = Sampler(host=False)
    sampler.open()
    assert sampler.sample() == []
    sampler.close()
    assert sampler.telemetry().status == "driver_not_loaded"


def test_the_thread_samples_until_stopped(nvml):
    nvml("burn_healthy_8gpu")
    with Sampler([0, 1], interval_s=0.01, host=False) as sampler:
        deadline = time.monotonic() + 5.0
        while len(sampler.telemetry().samples[0]) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
    samples = sampler.telemetry().samples[0]
    times = [s.t_s for s in samples]
    assert len(samples) >= 3 and times == sorted(times) and len(set(times)) == len(times)
    assert not sampler.hung and sampler.telemetry().thread_error is None


def test_stop_interrupts_the_wait_between_rounds(nvml):
    nvml("burn_healthy_8gpu")
    sampler = Sampler([0], interval_s=60.0, host=False)
    sampler.open()
    sampler.start()
    time.sleep(0.05)
    began = time.monotonic()
    assert sampler.stop() is True
    assert time.monotonic() - began < 1.0
    sampler.close()


def test_a_hung_nvml_call_does_not_hang_the_caller(nvml):
    lib = nvml("burn_healthy_8gpu")
    entered, release = threading.Event(), threading.Event()

    def hang() -> None:
        entered.set()
        release.wait(10.0)

    lib.before["nvmlDeviceGetPowerUsage"] = hang
    sampler = Sampler([0], interval_s=0.01, host=False)
    sampler.open()
    sampler.start()
    try:
        assert entered.wait(5.0)
        began = time.monotonic()
        assert sampler.stop(timeout_s=0.2) is False
        assert time.monotonic() - began < 1.0
        sampler.record(0, 1.0)  # recording never waits on NVML
        sampler.close()  # NVML is left alone while a call is in flight
        assert sampler.hung and sampler.telemetry().hung and "nvmlShutdown" not in lib.calls
        assert sampler._thread is not None and sampler._thread.daemon
    finally:
        release.set()
    assert sampler.stop(timeout_s=5.0) is True


def test_interval_must_be_positive():
    with pytest.raises(ValueError):
        Sampler(interval_s=0)
