"""The lab spec's ``[burn]`` section: parsed and refused in one line, and judged against a run."""

from __future__ import annotations

import pytest

from envcheck.spec.burn import judge_burn
from envcheck.spec.parse import BurnSpec, SpecError, parse_spec_text


def burn_spec(text: str) -> BurnSpec | None:
    return parse_spec_text(text, "lab.toml").burn


def test_every_key_and_both_forms_of_min_sustained():
    spec = burn_spec(
        '[burn]\nmin_duration = "10m"\nallow_throttle = false\nmin_sustained = { min = 600, unit = "TFLOP/s" }'
    )
    assert spec == BurnSpec(600.0, False, {None: 600.0})
    per_dtype = burn_spec(
        '[burn]\nmin_sustained = { bf16 = { min = 600, unit = "TFLOP/s" }, fp32 = { min = 50000, unit = "GFLOP/s" } }'
    )
    assert per_dtype is not None and per_dtype.min_sustained == {"bf16": 600.0, "fp32": 50.0}
    assert burn_spec("[burn]\nmin_duration = 90").min_duration_s == 90.0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('min_duration = "0s"', "lab.toml: [burn] min_duration must be a duration above 0, got '0s'"),
        ('min_duration = "soon"', "lab.toml: [burn] min_duration is not a duration: 'soon'"),
        ("min_duration = nan", "lab.toml: [burn] min_duration must be a duration above 0, got nan"),
        ('allow_throttle = "no"', "lab.toml: [burn] allow_throttle must be true or false, got 'no'"),
        ("colour = 1", "lab.toml: [burn]: unknown key 'colour' (known: min_duration, allow_throttle, min_sustained)"),
        ('min_sustained = { min = 600, unit = "TB/s" }', "min_sustained.unit must be one of GFLOP/s, TFLOP/s"),
        ('min_sustained = { fp8 = { min = 1, unit = "TFLOP/s" } }', "min_sustained: unknown dtype 'fp8'"),
        ("min_sustained = 600", "min_sustained: must be a table"),
        ('min_sustained = { min = -1, unit = "TFLOP/s" }', "min_sustained.min must be a positive finite number"),
    ],
)
def test_a_bad_burn_section_is_one_line_naming_the_key(body, words):
    with pytest.raises(SpecError) as caught:
        parse_spec_text(f"[burn]\n{body}\n", "lab.toml")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def judged(text: str, **run) -> dict:
    spec = parse_spec_text(text, "lab.toml")
    defaults = {"dtype": "bf16", "interrupted": False, "load_s": {"cuda:0": 600.2}, "sustained": {"cuda:0": 650.0}}
    defaults["throttle"] = {"status": "ok", "summary": "no thermal or hardware slowdown"}
    verdicts = judge_burn(spec, **{**defaults, **run})
    return {(v.requirement, v.device): (v.passed, v.words) for v in verdicts}


def test_a_run_against_the_burn_requirements():
    spec = (
        '[burn]\nmin_duration = "10m"\nallow_throttle = false\n'
        'min_sustained = { bf16 = { min = 600, unit = "TFLOP/s" } }'
    )
    assert judged(spec) == {
        ("min_duration", None): (True, "every device loaded for 10 min ≥ spec minimum 10 min"),
        ("throttle", None): (True, "no thermal or hardware slowdown, as the spec requires"),
        ("min_sustained", "cuda:0"): (True, "bf16 sustained 650 TFLOP/s ≥ spec minimum 600 TFLOP/s"),
    }
    short = judged(spec, load_s={"cuda:0": 60.0}, sustained={"cuda:0": 500.0}, interrupted=True)
    assert short[("min_duration", None)] == (False, "the run was interrupted after 60 s (spec minimum 10 min)")
    assert short[("min_sustained", "cuda:0")][0] is False
    hot = judged(spec, throttle={"status": "fail", "summary": "GPU 0: HW thermal slowdown from 7:00"})
    assert hot[("throttle", None)] == (False, "the spec allows no slowdown: GPU 0: HW thermal slowdown from 7:00")
    cpu = judged(spec, dtype="fp32", throttle={"status": "skip", "summary": "no GPU telemetry"})
    assert cpu[("throttle", None)][0] is None and ("min_sustained", "cuda:0") not in cpu  # no fp32 minimum
