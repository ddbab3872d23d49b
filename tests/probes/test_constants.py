"""The one clocks-event (throttle) bit table: the doctor's words, burn's failure mask, the samples' reason names
and the Prometheus ``reason`` label all come from it, so they cannot drift apart."""

from __future__ import annotations

from envcheck.burn import rules
from envcheck.probes.nvml.constants import CLOCKS_EVENT_REASONS, THROTTLE_MASK, THROTTLE_PROBLEMS, reason_names
from envcheck.render.prometheus import DoctorCollector


def test_every_reason_is_one_bit_of_its_own_in_bit_order():
    bits = [r.bit for r in CLOCKS_EVENT_REASONS]
    assert all(bit & (bit - 1) == 0 for bit in bits) and bits == sorted(set(bits))
    assert len({r.name for r in CLOCKS_EVENT_REASONS}) == len(bits)


def test_the_problems_are_dcgms_four_and_burn_fails_on_exactly_them():
    # DCGM's CheckForClocksEvent failure mask: HW slowdown, SW thermal, HW thermal, HW power brake.
    assert THROTTLE_MASK == 0x8 | 0x20 | 0x40 | 0x80 == rules.THROTTLE_MASK
    assert reason_names(THROTTLE_MASK) == ("hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake")
    assert THROTTLE_PROBLEMS[0x40] == "HW thermal slowdown"
    assert reason_names(0x804) == ("sw_power_cap", "unknown_0x800")


def test_prometheus_writes_one_series_per_named_reason():
    gpu = {"index": 0, "uuid": "GPU-0", "pci_bus_id": "00000000:18:00.0", "name": "H100", "clocks_event_reasons": 0x44}
    doc = {"checks": [], "gpus": [gpu], "host": {"hostname": "n1"}, "generated_at": "2026-01-01T00:00:00+00:00"}
    families = DoctorCollector(doc).collect()
    throttle = next(f for f in families if f.name == "envcheck_gpu_throttle_reason")
    written = {s.labels["reason"]: s.value for s in throttle.samples}
    assert list(written) == [r.name for r in CLOCKS_EVENT_REASONS]
    held = {name for name, value in written.items() if value}
    assert held == set(reason_names(0x44)) == {"sw_power_cap", "hw_thermal"}
