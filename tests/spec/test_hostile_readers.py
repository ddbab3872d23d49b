"""The readers of files other people write, searched by Hypothesis rather than by example: a lab spec and a
bench baseline, as bytes (anything), as TOML or JSON text of odd shapes (every known key, with values of
every type and size), and through the installed-command path. The invariant: the reader returns what it
read or raises its own one-line error (exit 2); never another exception, so never "internal error"."""

from __future__ import annotations

import json
import math
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from envcheck.bench import compare
from envcheck.cli import main
from envcheck.spec.find import load_spec
from envcheck.spec.parse import SCHEMA, SpecError

PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: The tables and keys a spec knows, and some it does not.
TABLES = [*SCHEMA, "packages", "bench", "comm", "burn", "tool", "", "gpu.extra", "x" * 300]
KEYS = sorted({k for keys in SCHEMA.values() for k in keys}) + [
    "fraction", "min_duration", "allow_throttle", "min_sustained", "all_reduce", "matmul.bf16", "torch", "",
]  # fmt: skip

#: Values of every TOML type and absurd sizes, as TOML literals.
SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: "nan" if math.isnan(f) else repr(f).replace("inf", "inf")
    ),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=300).map(json.dumps),  # JSON strings are TOML basic strings
    st.sampled_from(['"80GiB"', '"1e400 GB/s"', '"9.0"', '">=2.5,<2.7"', '"-1"', '"10m"', '"0"', '"cuda:99"']),
    st.just("1979-05-27T07:32:00Z"),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"))


def toml_key(key: str) -> str:
    return json.dumps(key)  # a quoted key is always valid TOML


@st.composite
def specs(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        table = draw(st.sampled_from(TABLES))
        lines.append("[" + ".".join(toml_key(part) for part in table.split(".")) + "]" if table else "")
        for _ in range(draw(st.integers(0, 4))):
            key = draw(st.one_of(st.sampled_from(KEYS), st.text(max_size=20)))
            lines.append(f"{toml_key(key)} = {draw(VALUES)}")
    return "\n".join(lines)


def read_spec(path: Path) -> None:
    try:
        load_spec(path)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)


@PROFILE
@given(text=specs())
@example(text='["burn"]\n"min_duration" = 1979-05-27T07:32:00Z')  # found by this test: a TOML date, once a crash
@example(text='[burn]\nmin_duration = ["10m"]')
def test_a_spec_of_any_shape_is_read_or_refused_in_one_line(tmp_path, text):
    path = tmp_path / "lab.toml"
    path.write_text(text, encoding="utf-8")
    read_spec(path)


@PROFILE
@given(data=st.binary(max_size=2000))
def test_a_spec_of_any_bytes_is_read_or_refused_in_one_line(tmp_path, data):
    path = tmp_path / "lab.toml"
    path.write_bytes(data)
    read_spec(path)


#: A saved result's fields, with values of every JSON type.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
RESULT_KEYS = ["id", "case", "device", "value", "unit", "status", "verified"]


@st.composite
def baselines(draw: st.DrawFn) -> str:
    results = draw(
        st.lists(
            st.dictionaries(st.sampled_from(RESULT_KEYS) | st.text(max_size=5), JSON_VALUES, max_size=7) | JSON_VALUES,
            max_size=5,
        )
    )
    doc = {"schema": draw(st.sampled_from([compare.SCHEMA, "envcheck.bench/2", None])), "results": results}
    if draw(st.booleans()):
        doc = draw(st.dictionaries(st.sampled_from(["schema", "results", "devices"]), JSON_VALUES)) | doc
    text = json.dumps(doc)
    # and literals json.dumps never writes: non-finite numbers, a 400-digit integer
    return draw(st.sampled_from([text, text.replace("null", "NaN", 1), text.replace("0", "1" + "0" * 400, 1)]))


def read_baseline(path: Path) -> None:
    try:
        data = compare.load_baseline(path)
    except compare.BaselineError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    # what was accepted can be compared with a run without surprises
    current = [{"id": "matmul.fp32", "case": "fp32", "device": "cpu", "value": 1.0, "unit": "GFLOP/s"}]
    try:
        compare.precheck(data, ["matmul.fp32"], ["cpu"], path=str(path))
        compare.compare(current, data, path=str(path))
    except compare.BaselineError as exc:
        assert "\n" not in str(exc)


@PROFILE
@given(text=baselines())
def test_a_baseline_of_any_shape_is_read_or_refused_in_one_line(tmp_path, text):
    path = tmp_path / "run.json"
    path.write_text(text, encoding="utf-8")
    read_baseline(path)


@PROFILE
@given(data=st.binary(max_size=2000))
def test_a_baseline_of_any_bytes_is_read_or_refused_in_one_line(tmp_path, data):
    path = tmp_path / "run.json"
    path.write_bytes(data)
    read_baseline(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=specs())
def test_the_doctor_given_any_spec_runs_or_says_one_line_and_exit_2(tmp_path, text):
    """Through the command: the spec is read before anything runs (only the spec area here, which the
    spec may fail): exit 0 or 1 with a report, or 2 with one line; never a bug's line."""
    path = tmp_path / "lab.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["doctor", "spec", "--spec", str(path), "--json"])
    assert "internal error" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 2:
        assert result.stderr.count("\n") == 1 and "--spec" not in result.stdout, result.stderr
    else:
        assert result.exit_code in (0, 1) and json.loads(result.stdout)["schema"] == "envcheck.doctor/1"
