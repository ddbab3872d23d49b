"""Absurd values in node reports, through the installed ``envcheck fleet``: the one bad document is a
skipped source with its reason (or is read without its odd field), every good node is kept, and the exit
is the merge's own, never an internal error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcheck.fleet.read import MAX_VALUES
from tests.fleet.conftest import ENVCHECK, as_node, env_with, fleet, write

#: Number literals no envcheck report writes, each spliced into a document's text as it is.
ABSURD = {
    "int400": "1" + "0" * 400,
    "negint400": "-" + "9" * 400,
    "inf_text": "1e400",
    "neginf_text": "-1e400",
    "float5000": "1" + "0" * 5000 + ".5",
    "tiny": "1e-400",
    "negzero": "-0",
    "huge": "1.7976931348623157e308",  # finite, and far past any throughput (kinds.MAX_FIGURE)
}

#: Where the numbers go: fields every kind's adapter reads (figures, exit codes, indexes, versions).
BENCH_FIELDS = (("results", 0, "value"), ("devices", 0, "index"), ("exit_code",), ("torch", "cudnn_version"))
DOCTOR_FIELDS = (("exit_code",), ("gpus", 0, "index"), ("driver", "version"), ("checks", 0, "details"))


def spliced(doc: dict[str, Any], path: tuple[Any, ...], literal: str) -> str:
    """``doc`` as JSON text with ``literal`` written at ``path`` (json.dumps cannot write most of them)."""
    out = json.loads(json.dumps(doc))
    inner = out
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = "@@ABSURD@@"
    return json.dumps(out, indent=2).replace('"@@ABSURD@@"', literal)


def test_absurd_numbers_skip_or_ignore_only_their_document(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Each absurd number in each field of a bench and a doctor report, beside twelve good nodes (a
    doctor and a bench each): the good nodes are all merged, the bad document is skipped with a reason
    or read without its field, and the exit code is the merge's."""
    good = {f"good-{i}/doctor": as_node(real["doctor"], f"good-{i}") for i in range(12)}
    good.update({f"good-{i}/bench": as_node(real["bench_cpu"], f"good-{i}") for i in range(12)})
    write(tmp_path, good)
    bad = tmp_path / "bad"
    bad.mkdir()
    for kind, fields in (("bench_cpu", BENCH_FIELDS), ("h100x4", DOCTOR_FIELDS)):
        for f, path in enumerate(fields):
            for name, literal in ABSURD.items():
                host = f"bad-{kind}-{f}-{name}"
                (bad / f"{host}.json").write_text(spliced(as_node(real[kind], host, uuid_prefix=host), path, literal))
    proc, doc = fleet(str(tmp_path))
    assert doc is not None, proc.stderr[-2000:]
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.returncode == doc["exit_code"] in (0, 1)
    hosts = {n["hostname"] for n in doc["nodes"]}
    assert {f"good-{i}" for i in range(12)} <= hosts
    skipped = {Path(s["source"]).stem: s["reason"] for s in doc["skipped"]}
    for f in range(len(BENCH_FIELDS)):
        for kind in ("bench_cpu", "h100x4"):
            for name in ABSURD:
                host = f"bad-{kind}-{f}-{name}"
                assert (host in hosts) != (host in skipped), host  # read, or skipped: never both, never lost
    # The wide integers are refused by the reader, saying why, in one line each.
    assert skipped["bad-bench_cpu-0-int400"] == "holds an integer of 401 digits, which no envcheck report writes"
    assert all("\n" not in r for r in skipped.values())
    # An infinite, wide or astronomical figure is no figure: the good nodes' comparison is the good nodes'
    # alone, so none of them is slow against it.
    for c in doc["comparisons"]:
        assert all(isinstance(v, float) and v <= 1e12 for v in c["values"])
    assert doc["slow_cpus"] == [] and doc["slow_gpus"] == []


def test_ten_thousand_levels_of_nesting(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Deep nesting as a whole document and inside a report's field, beside a good node."""
    write(tmp_path, {"good": as_node(real["doctor"], "good")})
    (tmp_path / "deep.json").write_text("[" * 10_000 + "]" * 10_000)
    (tmp_path / "deepfield.json").write_text(
        spliced(as_node(real["bench_cpu"], "deepfield"), ("torch", "nccl_version"), "[" * 10_000 + "]" * 10_000)
    )
    # Just under what the parsers accept: read, and the nested field is not carried into the merge.
    (tmp_path / "deep900.json").write_text(
        spliced(as_node(real["bench_cpu"], "deep900"), ("torch", "cudnn_version"), "[" * 1000 + "]" * 1000)
    )
    proc, doc = fleet(str(tmp_path))
    assert doc is not None, proc.stderr[-2000:]
    assert "internal error" not in proc.stderr
    reasons = {Path(s["source"]).name: s["reason"] for s in doc["skipped"]}
    assert reasons["deep.json"] == reasons["deepfield.json"] == "nests too deeply"
    assert {"good", "deep900"} <= {n["hostname"] for n in doc["nodes"]}


#: Peak memory of reading a 50 MB array of ``{}``: the bound's parse is ~400 MB at most (MAX_VALUES),
#: and the file is refused a few MiB in; before the bound, it took 1.3 GB.
MEMORY_BOUND_MB = 300

MEASURE = """
import resource, sys
from envcheck.fleet.app import merge_sources
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = merge_sources(sys.argv[1:], sys.stdin.buffer, workers=1)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, [s.reason for s in report.skipped], report.reports_read)
"""


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_50mb_array_of_empty_objects_is_skipped_in_bounded_memory(
    real: dict[str, dict[str, Any]], tmp_path: Path, how: str
) -> None:
    """The peak memory of the merge in a process of its own grows by less than MEMORY_BOUND_MB over a
    50 MB document of ``[{},{},...]`` (as a file, and on stdin), which is skipped; the good node is read."""
    good = write(tmp_path, {"good": as_node(real["doctor"], "good")})[0]
    big = tmp_path / "big.json"
    big.write_bytes(b"[" + b"{}," * (50 * 1024**2 // 3) + b"{}]")
    if how == "file":
        args, stdin = [good, str(big)], None
    else:
        args, stdin = [good, "-"], big.open("rb")
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *args], stdin=stdin, capture_output=True, text=True, env=env_with(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    grown, reasons, read = proc.stdout.split(" ", 1)[0], proc.stdout.split(" ", 1)[1], proc.stdout.split()[-1]
    assert int(grown) < MEMORY_BOUND_MB, proc.stdout
    assert "JSON values, far more than any envcheck report" in reasons and read == "1"


def test_the_command_skips_it_with_one_line(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    good = write(tmp_path, {"good": as_node(real["doctor"], "good")})[0]
    big = tmp_path / "big.json"
    big.write_bytes(b"[" + b"{}," * (20 * 1024**2 // 3) + b"{}]")
    proc = subprocess.run([ENVCHECK, "fleet", good, str(big), "--json"], capture_output=True, text=True, timeout=120)
    doc = json.loads(proc.stdout)
    assert proc.returncode == doc["exit_code"] and [n["hostname"] for n in doc["nodes"]] == ["good"]
    assert doc["skipped"][0]["reason"].startswith(f"holds more than {MAX_VALUES:,} JSON values")


# --- any JSON document: never raises, a node or a skip ----------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**450), max_value=10**450)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
SCHEMAS = ("envcheck.doctor/1", "envcheck.bench/1", "envcheck.burn/1", "envcheck.comm/1", "envcheck.scan/1")
#: The fields the adapters read, at the top of a report and in the items of its lists.
KEYS = ("status", "exit_code", "checks", "results", "devices", "gpus", "torch", "driver", "problems", "verdicts")
KEYS += ("spec", "options", "summary", "interrupted", "unit", "packages", "preflight", "generated_at")
ITEM_KEYS = ("id", "status", "value", "unit", "device", "verified", "uuid", "index", "name", "steady", "details")
ITEM_KEYS += ("fix", "summary", "rank", "host", "passed", "kind", "model", "throughput", "version", "found")
ITEM_KEYS += ("case", "reason", "check", "detail", "host_bound", "noisy", "contended")
WORDS = st.sampled_from(["ok", "fail", "warn", "cpu", "cuda", "matmul.fp32", "GB/s", "spec.package.numpy"])
ITEMS = st.lists(st.dictionaries(st.sampled_from(ITEM_KEYS), JSON | WORDS, max_size=8), max_size=3)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """A report of a kind with any JSON values in its fields and its items' fields; or any JSON value."""
    doc: dict[str, Any] = {"schema": draw(st.sampled_from(SCHEMAS)), "host": {"hostname": "n", "python": draw(JSON)}}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=6)):
        doc[key] = draw(JSON | ITEMS)
    return draw(st.just(doc) | JSON)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_json_document_is_a_node_or_a_skip(value: Any) -> None:
    """Any JSON document given to the reader and the merge never raises and is either a node or a skip."""
    from envcheck.fleet.merge import merge
    from envcheck.fleet.read import NodeReport, Skipped, _parse_file

    text = json.dumps(value).encode()
    items = list(_parse_file("doc.json", text))
    assert len(items) == 1 and isinstance(items[0], (NodeReport, Skipped))
    report = merge([i for i in items if isinstance(i, NodeReport)], [i for i in items if isinstance(i, Skipped)])
    assert report.reports_read + len(report.skipped) == 1
    from envcheck.core.report import utc_now
    from envcheck.fleet.report import fleet_document
    from envcheck.render.json import dumps

    json.loads(dumps(fleet_document(report, generated_at=utc_now(), duration_s=0.0)))
