"""--compare: deltas, the threshold, and the one-line errors for a malformed or mismatched baseline."""

from __future__ import annotations

import json

import pytest

from envcheck.bench import compare
from envcheck.bench.compare import SCHEMA, BaselineError


def result(bench_id="matmul.bf16", case="bf16 8192x8192x8192", device="cuda:0", value=700.0, unit="TFLOP/s"):
    return {"id": bench_id, "case": case, "device": device, "value": value, "unit": unit}


def baseline(*results):
    return {"schema": SCHEMA, "results": list(results)}


def test_a_drop_beyond_the_threshold_is_a_regression():
    (d,) = compare.compare([result(value=600.0)], baseline(result(value=700.0)), 0.10)
    assert d.regressed and d.change == pytest.approx(-1 / 7)
    assert d.to_json()["regressed"] is True


def test_a_drop_within_the_threshold_or_a_gain_is_not():
    deltas = compare.compare(
        [result(value=640.0), result(device="cuda:1", value=800.0)],
        baseline(result(value=700.0), result(device="cuda:1", value=700.0)),
        0.10,
    )
    assert [d.regressed for d in deltas] == [False, False]


def test_figures_only_meet_on_the_same_case_device_and_unit():
    current = [
        result(case="bf16 4096x4096x4096", value=1.0),
        result(value=700.0),
        result(bench_id="memory.d2d", case="copy 1024 MiB", unit="GB/s", value=3000.0),
    ]
    old = baseline(result(value=700.0), result(bench_id="memory.d2d", case="copy 1024 MiB", unit="TB/s", value=3.0))
    deltas = compare.compare(current, old)
    assert [(d.id, d.case) for d in deltas] == [("matmul.bf16", "bf16 8192x8192x8192")]


def test_nothing_in_common_is_a_mismatch():
    with pytest.raises(BaselineError, match="shares no figure"):
        compare.compare([result(device="cuda:1")], baseline(result(device="cpu")), path="b.json")


@pytest.mark.parametrize(("saved_quick", "quick", "words"), [
    (True, False, "it was saved by a --quick run (other cases) and this is a full one; run the bench --quick"),
    (False, True, "it was saved by a full run (other cases) and this is a --quick one; run the bench without --quick"),
])  # fmt: skip
def test_a_baseline_of_the_other_kind_says_why_nothing_is_shared(saved_quick, quick, words):
    """`bench --compare` against a --quick baseline used to say only "shares no figure"."""
    old = {**baseline(result(case="bf16 4096x4096x4096")), "options": {"quick": saved_quick}}
    with pytest.raises(BaselineError) as caught:
        compare.compare([result()], old, path="b.json", quick=quick)
    assert str(caught.value).endswith(f"{words} to compare") and "\n" not in str(caught.value)


def test_precheck_catches_a_mismatch_before_running():
    with pytest.raises(BaselineError, match="no figure for the selected benchmarks on cpu"):
        compare.precheck(baseline(result()), ["matmul.bf16"], ["cpu"])
    compare.precheck(baseline(result()), ["matmul.bf16"], ["cuda:0"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        (json.dumps({"schema": "envcheck.doctor/1", "results": []}), "is not an `envcheck bench --save` file"),
        (json.dumps([1, 2]), "is not an `envcheck bench --save` file"),
        (json.dumps({"schema": SCHEMA, "results": [{"id": "x"}]}), "malformed results list"),
        (json.dumps({"schema": SCHEMA}), "malformed results list"),
        (json.dumps(baseline(result(case={"m": 8192}))), "malformed results list"),
        (json.dumps(baseline(result(device=["cuda:0"]))), "malformed results list"),
        (json.dumps(baseline(result(value="700"))), "malformed results list"),
        (json.dumps(baseline(result(value=float("nan")))), r"holds NaN at results\[0\]\.value"),
        (json.dumps(baseline(result(value=float("inf")))), r"holds Infinity at results\[0\]\.value"),
    ],
)
def test_malformed_baselines_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=message) as err:
        compare.load_baseline(path)
    assert "\n" not in str(err.value)


def test_missing_baseline(tmp_path):
    with pytest.raises(BaselineError, match="does not exist"):
        compare.load_baseline(tmp_path / "nope.json")


def test_a_saved_run_with_skipped_figures_loads(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(baseline(result(), result(bench_id="matmul.fp8", value=None, unit=None))))
    assert len(compare.load_baseline(path)["results"]) == 2


def test_a_figure_that_failed_verification_is_compared_with_nothing():
    # A wrong answer is fast for no good reason: as a baseline it would call a healthy 700 a 30 % regression,
    # and as this run's figure it would call a wrong kernel "no regression". Neither side's figure judges.
    wrong = {**result(value=1000.0), "status": "fail", "verified": False}
    healthy = {**result(value=700.0), "status": "ok", "verified": True}
    other = {**result(device="cuda:1", value=700.0), "status": "ok", "verified": True}
    deltas = compare.compare([healthy, other], baseline(wrong, {**other, "value": 700.0}), 0.10)
    assert [(d.device, d.regressed) for d in deltas] == [("cuda:1", False)]
    deltas = compare.compare([wrong, other], baseline(healthy, other), 0.10)
    assert [d.device for d in deltas] == ["cuda:1"]
    # A baseline whose only shared figure failed verification shares nothing to judge by.
    with pytest.raises(BaselineError, match="shares no figure"):
        compare.compare([healthy], baseline(wrong), 0.10)
    # A figure from a report without the fields (hand-written, older) is still compared.
    assert len(compare.compare([result(value=700.0)], baseline(result(value=700.0)), 0.10)) == 1
