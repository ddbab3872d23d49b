"""The burn-in's verdicts, exactly: from timelines the sampler took over the fake NVML's burn scenarios (a whole
10-minute run on the fake clock, in a fraction of a second), and from hand-built timelines at the edges of
each rule."""

from __future__ import annotations

import json

import pytest

from envcheck.burn.rules import RULES, Limits, Rule, Timeline, episodes, judge, summarize
from envcheck.core.model import NA, Status, Verdict
from envcheck.probes.nvml.telemetry import Point, Sample, Sampler
from tests import fakenvml

#: Fake seconds between the sampler's rounds over a scenario.
STEP_S = 5.0
#: What each GPU's worker does per MHz of SM clock: its throughput follows its clocks, as a matmul's does.
TFLOPS_PER_MHZ = 0.4


def burn(nvml, scenario: str, *, checked: int = 100, mismatches: dict | None = None) -> Timeline:
    """Run ``scenario`` for its 10 minutes on its clock; each GPU's throughput follows its SM clock."""
    lib = nvml(scenario)
    sampler = Sampler(clock=lib.clock, host=False)
    sampler.open()
    while lib.clock() <= fakenvml.BURN_RUN_S:
        for sample in sampler.sample():
            if not sample.lost:
                sampler.record(sample.device, sample.sm_clock_mhz * TFLOPS_PER_MHZ, sample.t_s)
        lib.clock.advance(STEP_S)
    sampler.close()
    counts = {i: checked for i in range(len(lib.gpus))}
    return Timeline.from_telemetry(sampler.telemetry(), mismatches=mismatches or {}, checked=counts)


def verdicts(timeline: Timeline, limits: Limits | None = None) -> dict[str, tuple[str, str]]:
    return {r.id: (r.status.value, r.summary) for r in judge(timeline, limits)}


def problems(timeline: Timeline) -> dict[str, tuple[str, str]]:
    return {k: v for k, v in verdicts(timeline).items() if v[0] != "ok"}


# -- over the fake NVML's scenarios ---------------------------------------------------------------------------


def test_a_healthy_run_passes_every_rule_and_a_power_cap_is_no_slowdown(nvml):
    timeline = burn(nvml, "burn_healthy_8gpu")
    results = judge(timeline)
    assert [r.id for r in results] == [
        "burn.mismatch",
        "burn.lost",
        "burn.xid",
        "burn.ecc",
        "burn.row_remap",
        "burn.throttle",
        "burn.siblings",
        "burn.decay",
        "burn.temperature",
        "burn.pcie_replay",
    ]
    assert all(r.status is Status.OK and r.fix is None for r in results), [(r.id, r.summary) for r in results]
    said = verdicts(timeline)
    assert said["burn.mismatch"][1] == "every result matched (800 checked)"
    assert said["burn.temperature"][1] == "hottest 68 °C, more than 5 °C below slowdown"
    assert said["burn.siblings"][1] == (
        "every device within 10 % of its siblings (throughput, SM clock, over the last 60 s)"
    )
    # GPU 0 ran at its power cap from 3:20 to 3:50: seen, and not a failure.
    assert any(s.reasons == ("sw_power_cap",) for s in timeline.samples[0])


def test_throttle_after_warmup_names_when_for_how_long_and_what_the_clock_did(nvml):
    timeline = burn(nvml, "burn_throttle_after_warmup")
    assert problems(timeline) == {
        "burn.throttle": (
            "fail",
            "GPU 2: HW thermal slowdown from 7:00 to the end of the run (3.0 min), at 87 °C; "
            "SM clock 1980 → 1386 MHz (-30 %)",
        ),
        "burn.siblings": (
            "fail",
            "GPU 2: throughput 554 TFLOP/s, 30 % below its siblings' median 792 TFLOP/s; "
            "SM clock 1386 MHz, 30 % below its siblings' median 1980 MHz",
        ),
        "burn.decay": ("warn", "GPU 2: 792 → 554 TFLOP/s from the first minute to the last (-30 %)"),
        "burn.temperature": ("warn", "GPU 2: 87 °C at 6:55, at its 87 °C slowdown threshold"),
    }
    throttle = next(r for r in judge(timeline) if r.id == "burn.throttle")
    assert throttle.fix.text.startswith("Thermal slowdown: check the cooling") and "PSU" not in throttle.fix.text
    assert throttle.details["devices"]["2"]["episodes"] == [
        {"start_s": 420.0, "duration_s": 180.0, "reasons": ["hw_thermal"], "to_end": True}
    ]


def test_a_temperature_that_climbs_warns_before_it_throttles(nvml):
    assert problems(burn(nvml, "burn_temperature_climbs")) == {
        "burn.temperature": (
            "warn",
            "GPU 5: 84 °C at 9:55, 3 °C below its 87 °C slowdown threshold; "
            "its memory 91 °C at 9:55, 4 °C below its 95 °C maximum memory temperature",
        )
    }


def test_xids_and_a_gpu_that_falls_off_the_bus(nvml):
    timeline = burn(nvml, "burn_xid")
    said = problems(timeline)
    assert said == {
        "burn.lost": ("fail", "GPU 6: lost at 7:30 (GPU is lost)"),
        "burn.xid": (
            "fail",
            "GPU 1: Xid 48 at 5:00 (double-bit ECC error); GPU 6: Xid 79 at 7:30 (GPU has fallen off the bus)",
        ),
    }
    xid = next(r for r in judge(timeline) if r.id == "burn.xid")
    assert xid.fix.text.startswith("Drain the node") and "dmesg" in xid.fix.command
    # The lost GPU's throughput stopped with it; it is not called slow for it.
    assert summarize(timeline)[6].lost and summarize(timeline)[6].sm_clock_mhz is None


def test_ecc_errors_that_appear_mid_run(nvml):
    timeline = burn(nvml, "burn_ecc_midrun")
    assert problems(timeline) == {"burn.ecc": ("fail", "GPU 3: 2 new uncorrected ECC errors, the first at 4:00")}
    ecc = next(r for r in judge(timeline) if r.id == "burn.ecc")
    assert ecc.details["devices"]["3"] == {"before": 0, "after": 2, "first_new_at_s": 240.0}
    assert ecc.fix.command == "nvidia-smi -q -d ECC,ROW_REMAPPER"


def test_a_row_remap_that_becomes_pending(nvml):
    timeline = burn(nvml, "burn_row_remap_pending")
    assert problems(timeline) == {
        "burn.row_remap": ("fail", "GPU 4: row remap pending since 3:00: a GPU reset applies it")
    }
    fix = next(r for r in judge(timeline) if r.id == "burn.row_remap").fix
    assert "RMA" not in fix.text and fix.command == "nvidia-smi -q -d ROW_REMAPPER"


def test_a_power_capped_sibling_is_slow_without_a_slowdown_reason(nvml):
    assert problems(burn(nvml, "burn_power_capped_sibling")) == {
        "burn.siblings": (
            "fail",
            "GPU 7: throughput 640 TFLOP/s, 19 % below its siblings' median 792 TFLOP/s; "
            "SM clock 1600 MHz, 19 % below its siblings' median 1980 MHz",
        )
    }


def test_mismatches_fail_and_name_the_device(nvml):
    timeline = burn(nvml, "burn_healthy_8gpu", mismatches={5: 3})
    assert problems(timeline) == {
        "burn.mismatch": ("fail", "GPU 5: 3 of 100 results did not match the reference"),
    }


def test_without_xid_events_the_rule_skips_and_says_why(nvml):
    lib_gpus = nvml("burn_healthy_8gpu").gpus
    for gpu in lib_gpus:
        gpu.xid_events = False
    sampler = Sampler(clock=lambda: 0.0, host=False)
    sampler.open()
    sampler.sample()
    sampler.close()
    said = verdicts(Timeline.from_telemetry(sampler.telemetry()))
    assert said["burn.xid"] == (
        "skip",
        "Xid events not available from this driver (not supported by this GPU or driver): read the driver's log",
    )


def test_the_results_are_strict_json(nvml):
    results = judge(burn(nvml, "burn_throttle_after_warmup"))
    text = json.dumps([r.to_json() for r in results], allow_nan=False)
    assert '"burn.throttle"' in text


# -- hand-built timelines: the edges of each rule ------------------------------------------------------------


def gpu(device: int, t_s: float, **kw) -> Sample:
    defaults = {
        "sm_clock_mhz": 1980,
        "temperature_c": 60,
        "slowdown_c": 87,
        "clocks_event_reasons": 0,
        "ecc_volatile_uncorrected": 0,
        "xids": (),
    }
    return Sample(device, t_s, **{**defaults, **kw})


def series(device: int, n: int, step: float = 1.0, **changes) -> list[Sample]:
    """``n`` samples, ``step`` apart; ``changes`` maps a field to ``{from_index: value}``."""
    out = []
    for k in range(n):
        kw = {}
        for name, schedule in changes.items():
            for start, value in sorted(schedule.items()):
                if k >= start:
                    kw[name] = value
        out.append(gpu(device, k * step, **kw))
    return out


def test_throttle_episodes_start_end_and_a_blip_lasts_one_interval():
    samples = series(0, 10, clocks_event_reasons={2: 0x8, 4: 0, 7: 0x80 | 0x4})
    found = episodes(samples)
    assert [(e.start_s, e.end_s, e.reasons, e.to_end) for e in found] == [
        (2.0, 4.0, ("hw_slowdown",), False),
        (7.0, 9.0, ("hw_power_brake",), True),
    ]
    blip = episodes(series(0, 5, clocks_event_reasons={4: 0x40}))
    assert [(e.start_s, e.duration_s) for e in blip] == [(4.0, 1.0)]
    said = verdicts(Timeline(samples={0: samples}))["burn.throttle"]
    assert said == ("fail", "GPU 0: HW slowdown (power brake or overheating signalled by the board), HW power brake "
                    "(external power supply signal) 2 times, first at 0:02, 4 s in all, at 60 °C; "
                    "SM clock held at 1980 MHz")  # fmt: skip


def test_the_sw_power_cap_and_idle_are_not_slowdowns():
    samples = series(0, 10, clocks_event_reasons={0: 0x1 | 0x4 | 0x10})
    assert episodes(samples) == []
    assert verdicts(Timeline(samples={0: samples}))["burn.throttle"][0] == "ok"


def test_siblings_ten_percent_is_the_line():
    def timeline(slow: float) -> Timeline:
        points = {k: [Point(t, 100.0) for t in range(10)] for k in range(3)}
        points[2] = [Point(t, slow) for t in range(10)]
        return Timeline(throughput=points)

    assert verdicts(timeline(90.0))["burn.siblings"][0] == "ok"
    assert verdicts(timeline(89.0))["burn.siblings"] == (
        "fail",
        "GPU 2: throughput 89 TFLOP/s, 11 % below its siblings' median 100 TFLOP/s",
    )
    assert verdicts(Timeline(throughput={0: [Point(0, 1.0)]}))["burn.siblings"][0] == "skip"


def test_siblings_are_compared_within_their_model_and_over_the_steady_state():
    # Two H100s and a slower L40S: the L40S is not called slow. GPU 1 was slow only in its first minute.
    clocks = {0: [1980] * 200, 1: [1500] * 60 + [1980] * 140, 2: [1400] * 200}
    samples = {d: [gpu(d, float(t), sm_clock_mhz=c) for t, c in enumerate(v)] for d, v in clocks.items()}
    models = {0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA H100 80GB HBM3", 2: "NVIDIA L40S"}
    assert verdicts(Timeline(samples=samples, models=models))["burn.siblings"][0] == "ok"
    assert verdicts(Timeline(samples=samples))["burn.siblings"][0] == "fail"


def test_decay_compares_the_first_minute_with_the_last():
    def timeline(end: float) -> Timeline:
        return Timeline(throughput={"cpu": [Point(float(t), 100.0 if t < 300 else end) for t in range(600)]})

    assert verdicts(timeline(90.0))["burn.decay"][0] == "ok"
    assert verdicts(timeline(85.0))["burn.decay"] == (
        "warn",
        "cpu: 100 → 85 TFLOP/s from the first minute to the last (-15 %)",
    )
    # A short run compares its halves.
    short = Timeline(throughput={0: [Point(0.0, 100.0), Point(10.0, 100.0), Point(20.0, 50.0), Point(30.0, 50.0)]})
    assert verdicts(short)["burn.decay"] == ("warn", "GPU 0: 100 → 50 TFLOP/s from the first 15 s to the last (-50 %)")
    assert verdicts(Timeline())["burn.decay"][0] == "skip"
    # A CPU's figures are small: they keep three significant digits instead of reading as 0 → 0.
    cpu = Timeline(throughput={"cpu": [Point(float(t), 0.0238 if t < 20 else 0.0031) for t in (0, 10, 20, 30)]})
    said = "cpu: 0.0238 → 0.0031 TFLOP/s from the first 15 s to the last (-87 %)"
    assert verdicts(cpu)["burn.decay"] == ("warn", said)


def test_temperature_margin_is_five_degrees():
    def peak(c: int) -> str:
        return verdicts(Timeline(samples={0: series(0, 5, temperature_c={3: c})}))["burn.temperature"][0]

    assert (peak(81), peak(82), peak(90)) == ("ok", "warn", "warn")
    hot = Timeline(samples={0: series(0, 5, temperature_c={3: 90})})
    assert verdicts(hot)["burn.temperature"][1] == "GPU 0: 90 °C at 0:03, 3 °C above its 87 °C slowdown threshold"
    assert verdicts(hot, Limits(temperature_margin_c=2))["burn.temperature"][0] == "warn"
    cool = Timeline(samples={0: series(0, 5, temperature_c={3: 83})})
    assert verdicts(cool, Limits(temperature_margin_c=2))["burn.temperature"][0] == "ok"


def test_ecc_already_counted_before_the_run_is_not_new():
    samples = series(0, 5, ecc_volatile_uncorrected={0: 4})
    assert verdicts(Timeline(samples={0: samples}))["burn.ecc"] == ("ok", "no new uncorrected ECC errors")
    no_ecc = series(0, 3, ecc_volatile_uncorrected={0: NA("ECC is off on this GPU")})
    assert verdicts(Timeline(samples={0: no_ecc}))["burn.ecc"] == ("ok", "ECC not available on these GPUs")


def test_row_remap_pending_before_the_run_and_failed():
    pending = series(0, 3, row_remap_pending={0: True})
    failed = series(1, 3, row_remap_failed={1: True})
    results = {r.id: r for r in judge(Timeline(samples={0: pending, 1: failed}))}
    remap = results["burn.row_remap"]
    assert remap.summary == (
        "GPU 0: row remap pending since before the run: a GPU reset applies it; "
        "GPU 1: row remapping failed since 0:01: the GPU has run out of spare rows"
    )
    assert remap.fix.text.endswith("A failed row remap means the GPU needs an RMA.")


def test_pcie_replays_over_dcgm_s_limit_warn():
    def rise(n: int) -> str:
        return verdicts(Timeline(samples={0: series(0, 3, pcie_replay={0: 10, 2: 10 + n})}))["burn.pcie_replay"][0]

    assert (rise(80), rise(81)) == ("ok", "warn")


def test_a_cpu_burn_skips_the_gpu_rules():
    timeline = Timeline(throughput={"cpu": [Point(float(t), 1.0) for t in range(10)]}, checked={"cpu": 10})
    said = verdicts(timeline)
    assert said["burn.mismatch"] == ("ok", "every result matched (10 checked)")
    for rule_id in ("burn.lost", "burn.xid", "burn.ecc", "burn.row_remap", "burn.throttle", "burn.temperature"):
        assert said[rule_id] == ("skip", "no GPU telemetry (a CPU burn, or NVML not available)")
    assert said["burn.siblings"][0] == "skip" and said["burn.decay"][0] == "ok"


def test_a_rule_that_raises_is_a_crash_of_its_own(monkeypatch):
    def broken(timeline: Timeline, limits: Limits) -> Verdict:
        raise ZeroDivisionError("division by zero\nmore")

    monkeypatch.setitem(RULES._items, "burn.zz_broken", Rule("burn.zz_broken", "Broken", broken, ""))
    results = {r.id: r for r in judge(Timeline())}
    assert results["burn.zz_broken"].status is Status.CRASH
    assert results["burn.zz_broken"].summary == "ZeroDivisionError: division by zero"
    assert results["burn.mismatch"].status is Status.SKIP


def test_a_crashing_rule_reads_like_a_crashed_doctor_check_with_the_bug_fix_and_its_traceback(monkeypatch):
    """The one guard (envcheck.core.calls.Outcome) runs every rule: a crash is the rule's own verdict, says it
    is envcheck's bug (the doctor's fix for a crashed check), and keeps where it happened."""
    from envcheck.core.calls import BUG_FIX

    def broken(timeline: Timeline, limits: Limits) -> Verdict:
        return {}["no such device"]

    monkeypatch.setitem(RULES._items, "burn.zz_broken", Rule("burn.zz_broken", "Broken", broken, ""))
    crashed = {r.id: r for r in judge(Timeline())}["burn.zz_broken"]
    assert crashed.status is Status.CRASH and crashed.summary == "KeyError: 'no such device'"
    assert crashed.fix == BUG_FIX and "bug in envcheck" in crashed.fix.text
    assert "in broken" in "".join(crashed.details["traceback"])
    assert crashed.to_json()["fix"] is not None


def test_summary_is_the_steady_state_of_the_last_window():
    samples = series(0, 200, sm_clock_mhz={0: 1980, 150: 1400}, temperature_c={0: 60, 100: 80, 150: 70})
    points = [Point(float(t), 800.0 if t < 150 else 600.0) for t in range(200)]
    summary = summarize(Timeline(samples={0: samples}, throughput={0: points}))[0]
    assert (summary.sm_clock_mhz, summary.temperature_c, summary.temperature_peak_c) == (1400, 70, 80)
    assert (summary.throughput, summary.window_s, summary.samples, summary.lost) == (600.0, 60.0, 200, False)
    assert summary.to_json()["device"] == 0


@pytest.mark.parametrize("scenario", [name for name in fakenvml.SCENARIOS if name.startswith("burn_")])
def test_every_burn_scenario_judges_without_a_crash(nvml, scenario):
    assert all(r.status is not Status.CRASH for r in judge(burn(nvml, scenario)))


def test_a_run_stopped_before_any_check_claims_no_match():
    """Ctrl-C before the first comparison: 0 checked is not "every result matched"."""
    timeline = Timeline(throughput={"cpu": [Point(0.0, 1.0)]}, checked={"cpu": 0})
    assert verdicts(timeline)["burn.mismatch"] == ("skip", "no results were compared with the reference")


@pytest.mark.parametrize(
    ("windows", "words"),
    [([8.2], "the last 8 s"), ([60.0, 59.8], "the last minute"), ([], "the run's last window")],
)
def test_the_steady_state_says_the_window_it_measured(windows, words):
    """A 10 s run's table used to say "medians over the last minute"."""
    from envcheck.burn.render import steady_window

    doc = {"devices": [{"steady": {"window_s": w}} for w in windows]}
    assert steady_window(doc) == words


# -- exactly two devices, and several GPUs with different events ------------------------------------------


def test_two_siblings_each_is_compared_with_the_other_alone():
    # With two GPUs each one's "siblings' median" is the other's figure: 100 vs 89 is 11 % below, so GPU 1
    # fails; GPU 0 is above its one sibling and passes. 100 vs 90 is exactly 10 % below: within the line.
    def two(slow: float, key=1) -> Timeline:
        points = {0: [Point(float(t), 100.0) for t in range(10)], key: [Point(float(t), slow) for t in range(10)]}
        return Timeline(throughput=points)

    assert verdicts(two(89.0))["burn.siblings"] == (
        "fail",
        "GPU 1: throughput 89 TFLOP/s, 11 % below its siblings' median 100 TFLOP/s",
    )
    result = {r.id: r for r in judge(two(89.0))}["burn.siblings"]
    assert result.details["problems"] == {"1": "throughput 89 TFLOP/s, 11 % below its siblings' median 100 TFLOP/s"}
    assert result.details["devices"]["0"]["throughput"] == {"steady": 100.0, "siblings_median": 89.0}
    assert verdicts(two(90.0))["burn.siblings"][0] == "ok"
    # Two GPUs by SM clock alone (no throughput), one 20 % slower: named by its clock.
    clocks = {0: series(0, 10, sm_clock_mhz={0: 2000}), 1: series(1, 10, sm_clock_mhz={0: 1600})}
    assert verdicts(Timeline(samples=clocks))["burn.siblings"] == (
        "fail",
        "GPU 1: SM clock 1600 MHz, 20 % below its siblings' median 2000 MHz",
    )
    # Two GPUs of different models have no sibling at all.
    models = {0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA L40S"}
    assert verdicts(Timeline(samples=clocks, models=models))["burn.siblings"][0] == "ok"


def test_fatal_and_ordinary_xids_on_different_gpus_are_each_named_with_their_own_words():
    def seen(device: int, at: int, xid: int) -> list[Sample]:
        return [gpu(device, float(t), xids=(xid,) if t == at else ()) for t in range(4)]

    samples = {
        0: seen(0, 2, 79),  # fallen off the bus: fatal
        1: seen(1, 1, 13),  # a graphics engine exception: not on DCGM's fatal list
        2: series(2, 4),
    }
    result = {r.id: r for r in judge(Timeline(samples=samples))}["burn.xid"]
    assert result.status is Status.FAIL
    assert result.summary == "GPU 0: Xid 79 at 0:02 (GPU has fallen off the bus); GPU 1: Xid 13 at 0:01"
    assert set(result.details["problems"]) == {"0", "1"}
    # One fatal Xid anywhere makes the fix the drain.
    assert result.fix.text.startswith("Drain the node: this Xid means the GPU or its memory failed")
    ordinary = {r.id: r for r in judge(Timeline(samples={1: samples[1], 2: samples[2]}))}["burn.xid"]
    assert ordinary.status is Status.FAIL and ordinary.fix.text.startswith("Read the driver's log around that time")


def test_a_fatal_event_on_one_gpu_and_a_warning_on_another_are_judged_per_gpu():
    samples = {
        0: series(0, 5, ecc_volatile_uncorrected={0: 2, 3: 5}),  # 3 new uncorrected ECC errors: fail
        1: series(1, 5, temperature_c={2: 84}),  # 3 °C below its 87 °C slowdown: warn
        2: series(2, 5, pcie_replay={0: 0, 4: 81}),  # 81 replays: one over DCGM's 80, warn
        3: series(3, 5, row_remap_pending={4: True}),  # pending from 0:04: fail
    }
    results = {r.id: r for r in judge(Timeline(samples=samples))}
    assert (results["burn.ecc"].status, results["burn.ecc"].summary) == (
        Status.FAIL,
        "GPU 0: 3 new uncorrected ECC errors, the first at 0:03",
    )
    assert results["burn.temperature"].summary == "GPU 1: 84 °C at 0:02, 3 °C below its 87 °C slowdown threshold"
    assert results["burn.temperature"].status is Status.WARN
    assert results["burn.pcie_replay"].summary == "GPU 2: 81 PCIe replays during the run (more than 80)"
    assert results["burn.row_remap"].summary == "GPU 3: row remap pending since 0:04: a GPU reset applies it"
    assert not results["burn.row_remap"].fix.text.endswith("RMA.")  # pending alone: no RMA
    assert results["burn.ecc"].details["devices"]["1"] == {"before": 0, "after": 0, "first_new_at_s": None}


def test_a_gpu_that_is_lost_is_named_alone_and_its_readings_after_that_are_not_judged():
    gone = [Sample(0, t, lost=True, error="GPU is lost") for t in (3.0, 4.0)]
    lost = [*series(0, 3), *gone]
    results = {r.id: r for r in judge(Timeline(samples={0: lost, 1: series(1, 5)}))}
    assert results["burn.lost"].summary == "GPU 0: lost at 0:03 (GPU is lost)"
    assert results["burn.lost"].details["devices"]["1"] == {"lost_at_s": None, "error": None}
    before = [Sample(0, 0.0, lost=True, error="GPU is lost")]
    assert verdicts(Timeline(samples={0: before}))["burn.lost"] == ("fail", "GPU 0: lost before the run (GPU is lost)")


def test_mismatches_name_only_the_wrong_device_with_its_count():
    timeline = Timeline(
        throughput={0: [Point(0.0, 1.0)], 1: [Point(0.0, 1.0)]},
        mismatches={0: 0, 1: 3},
        checked={0: 40, 1: 40},
    )
    result = {r.id: r for r in judge(timeline)}["burn.mismatch"]
    assert (result.status, result.summary) == (Status.FAIL, "GPU 1: 3 of 40 results did not match the reference")
    assert result.details["devices"] == {"0": {"mismatches": 0, "checked": 40}, "1": {"mismatches": 3, "checked": 40}}
    # Mismatches counted where no total is known still fail, without an invented total.
    said = verdicts(Timeline(mismatches={"cpu": 2}))["burn.mismatch"]
    assert said == ("fail", "cpu: 2 results did not match the reference")


# -- the steady state of every reading, episodes at their edges, the words of spans ----------------------------


def test_summary_takes_every_reading_s_median_over_the_last_window_and_the_peak_over_the_run():
    # From t=100 to the lost sample at t=201: the last window is the second half, 50.5 s, from t=150.5 on.
    samples = [
        gpu(0, float(t), mem_clock_mhz=2619, power_w=300.0 if t < 150 else 650.0, power_limit_w=700.0,
            memory_temperature_c=70 if t < 150 else 75, utilization_gpu_pct=100, temperature_c=90 if t == 120 else 60)
        for t in range(100, 201)
    ]  # fmt: skip
    samples.append(Sample(0, 201.0, lost=True, error="GPU is lost"))
    points = [Point(float(t), 1.0 if t < 150 else 3.0) for t in range(100, 201)]
    timeline = Timeline(samples={0: samples}, throughput={0: points, "cpu": points})
    summary = summarize(timeline)
    gpu0 = summary[0]
    assert gpu0.window_s == 50.5  # (201 - 100) / 2
    assert (gpu0.mem_clock_mhz, gpu0.power_w, gpu0.power_limit_w) == (2619, 650.0, 700.0)
    assert (gpu0.memory_temperature_c, gpu0.utilization_gpu_pct, gpu0.temperature_peak_c) == (75, 100, 90)
    assert (gpu0.throughput, gpu0.lost, gpu0.samples) == (3.0, True, 102)
    # A CPU worker has no GPU samples, whatever its key: its row is its throughput alone.
    cpu = summary["cpu"]
    assert (cpu.samples, cpu.sm_clock_mhz, cpu.temperature_peak_c, cpu.throughput) == (0, None, None, 3.0)
    assert cpu.to_json()["device"] == "cpu" and gpu0.to_json()["device"] == 0


def test_a_summary_of_a_gpu_without_readings_or_throughput_is_empty_not_a_crash():
    timeline = Timeline(samples={0: [Sample(0, 0.0, temperature_c=NA("not supported"))]})
    summary = summarize(timeline)[0]
    assert (summary.temperature_peak_c, summary.throughput, summary.samples) == (None, None, 1)


def test_episode_edges_one_sample_reasons_that_change_and_a_lost_sample():
    # A single readable sample with a reason: an episode of no length (no interval to count).
    [one] = episodes([gpu(0, 5.0, clocks_event_reasons=0x8)])
    assert (one.start_s, one.end_s, one.to_end) == (5.0, 5.0, True)
    # Reasons that change within one episode are all named.
    changing = [gpu(0, 0.0), gpu(0, 1.0, clocks_event_reasons=0x8), gpu(0, 2.0, clocks_event_reasons=0x40),
                gpu(0, 3.0)]  # fmt: skip
    [both] = episodes(changing)
    assert (both.start_s, both.end_s, both.reasons) == (1.0, 3.0, ("hw_slowdown", "hw_thermal"))
    # A lost sample is no reading: it neither ends nor starts an episode.
    lost = [*changing[:2], Sample(0, 1.5, lost=True, error="lost"), *changing[2:]]
    assert [(e.start_s, e.end_s) for e in episodes(lost)] == [(1.0, 3.0)]


def test_throttle_words_for_an_episode_that_ended_and_the_clock_it_cost():
    # Slowdown from 0:02 to 0:04 (the first sample without it), clock 2000 before, 1500 during, at 85 °C.
    def run(during_mhz: int, hot: int | NA) -> str:
        samples = [
            gpu(0, float(t), sm_clock_mhz=during_mhz if t in (2, 3) else 2000,
                clocks_event_reasons=0x8 if t in (2, 3) else 0, temperature_c=hot if t == 2 else 60)
            for t in range(6)
        ]  # fmt: skip
        return verdicts(Timeline(samples={0: samples}))["burn.throttle"][1]

    assert run(1500, 85) == (
        "GPU 0: HW slowdown (power brake or overheating signalled by the board) from 0:02 to 0:04 (2 s), at 85 °C; "
        "SM clock 2000 → 1500 MHz (-25 %)"
    )
    # A temperature NVML does not give is left out; a clock 1 % lower is a change, less than 1 % is "held".
    assert run(1980, NA("not supported")).endswith("from 0:02 to 0:04 (2 s); SM clock 2000 → 1980 MHz (-1 %)")
    assert run(1990, 70).endswith(", at 70 °C; SM clock held at 2000 MHz")


def test_a_run_that_starts_late_on_the_clock_takes_its_steady_window_from_its_own_start():
    # 20 s from t=1000: halves of 10 s. Steady from t=1010, not from 1020 - 10 - 1000.
    points = {k: [Point(1000.0 + t, 100.0 if k == 0 or t >= 10 else 50.0) for t in range(21)] for k in (0, 1)}
    assert Timeline(throughput=points).steady_from(Limits()) == 1010.0
    assert verdicts(Timeline(throughput=points))["burn.siblings"][0] == "ok"


@pytest.mark.parametrize(
    ("seconds", "words"), [(119.4, "119 s"), (120.0, "2.0 min"), (150.0, "2.5 min"), (600.0, "10.0 min")]
)
def test_spans_are_seconds_below_two_minutes(seconds, words):
    from envcheck.burn.rules import span

    assert span(seconds) == words


def test_each_result_carries_its_rule_s_title():
    titles = {r.id: r.title for r in judge(Timeline())}
    assert titles["burn.mismatch"] == "Results match the reference"
    assert titles["burn.siblings"] == "Every GPU keeps up with its siblings"


def test_the_timeline_of_a_sampler_takes_nvml_s_names_as_models_and_the_unit(nvml):
    timeline = burn(nvml, "burn_healthy_8gpu")
    assert timeline.models[0] == "NVIDIA H100 80GB HBM3" and timeline.unit == "TFLOP/s"
    lib = nvml("burn_healthy_8gpu")
    sampler = Sampler(clock=lib.clock, host=False)
    sampler.open()
    sampler.sample()
    sampler.close()
    made = Timeline.from_telemetry(sampler.telemetry(), models={0: "something else", "cpu": "a CPU"}, unit="GB/s")
    assert made.models[0] == "NVIDIA H100 80GB HBM3" and made.models["cpu"] == "a CPU" and made.unit == "GB/s"
    # With every result matched and the devices named, the healthy run's checks still say so.
    assert {r.id: r.details for r in judge(timeline)}["burn.lost"]["devices"]["0"] == {"lost_at_s": None, "error": None}


def test_the_steady_window_includes_the_sample_on_its_edge():
    # 100 s from t=100 to t=200: steady from t=150 exactly. After it, 25 readings of each of two values; the one
    # at t=150 is 10 times higher and, being in the window, moves each median from the mean of the two middle
    # readings (475, 3.0) to the upper one (650, 4.0).
    def value(t: int, low: float, high: float) -> float:
        return high * 10 if t == 150 else low if t % 2 else high

    samples = [gpu(0, float(t), power_w=value(t, 300.0, 650.0)) for t in range(100, 201)]
    points = [Point(float(t), value(t, 2.0, 4.0)) for t in range(100, 201)]
    summary = summarize(Timeline(samples={0: samples}, throughput={0: points}))[0]
    assert (summary.power_w, summary.throughput) == (650.0, 4.0)


def test_throttle_words_take_the_clock_before_the_first_episode_and_during_each():
    # t=0 at 2000 MHz; slowdown at t=1 (1400) and t=2 (1500); none from t=3 (1800).
    def run(clocks: list[int], reasons: list[int]) -> str:
        pairs = enumerate(zip(clocks, reasons, strict=True))
        samples = [gpu(0, float(t), sm_clock_mhz=c, clocks_event_reasons=r) for t, (c, r) in pairs]
        return verdicts(Timeline(samples={0: samples}))["burn.throttle"][1]

    said = run([2000, 1400, 1500, 1800, 1800], [0, 0x8, 0x8, 0, 0])
    assert said.endswith("from 0:01 to 0:03 (2 s), at 60 °C; SM clock 2000 → 1450 MHz (-28 %)")
    assert run([2000, 200, 200, 2000], [0, 0x8, 0x8, 0]).endswith("SM clock 2000 → 200 MHz (-90 %)")
    # Throttled from the first sample: no clock before it to compare with, so no clock words.
    assert run([1400, 1500, 2000], [0x8, 0x8, 0]).endswith("from 0:00 to 0:02 (2 s), at 60 °C")
