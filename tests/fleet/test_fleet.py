"""``envcheck fleet`` through the installed command, over real reports (see conftest: the hostnames, and
where a copy is edited, are said where it happens)."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from envcheck.core.report import HostIdentity, utc_now
from tests.fleet.conftest import ENVCHECK, ROOT, as_node, env_with, envcheck, fleet, gpu_bench, write

ENVELOPE = ("schema", "envcheck_version", "generated_at", "duration_s", "host")


@pytest.fixture(scope="module")
def rack(real: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Six nodes in one directory, each with the reports a lab would collect:

    * cpu-1, cpu-2, cpu-3: this machine's full doctor and CPU bench (cpu-1 also its comm run); cpu-3's
      bench figures edited 20 % down (a slower CPU of the same model);
    * gpu-a (4 healthy H100), gpu-b (2 H100 with uncorrected ECC errors: it fails), gpu-c (4 healthy
      H100, its doctor's driver edited to another version: drift): the quick doctor over the fake NVML,
      each node's GPUs given their own UUIDs, and a GPU bench made from the real CPU bench (conftest's
      gpu_bench) where gpu-c's GPU 2 is 20 % slower than the other H100s.
    """
    docs: dict[str, dict[str, Any]] = {}
    for host in ("cpu-1", "cpu-2", "cpu-3"):
        docs[f"{host}/doctor"] = as_node(real["doctor"], host)
        docs[f"{host}/bench"] = as_node(real["bench_cpu"], host)
    for r in docs["cpu-3/bench"]["results"]:
        r["value"] *= 0.8
    docs["cpu-1/comm"] = as_node(real["comm_cpu"], "cpu-1")
    for host, name in (("gpu-a", "h100x4"), ("gpu-b", "ecc"), ("gpu-c", "h100x4")):
        doctor = as_node(real[name], host, uuid_prefix=host)
        docs[f"{host}/doctor"] = doctor
        docs[f"{host}/bench"] = gpu_bench(real["bench_cpu"], doctor)
    docs["gpu-c/doctor"]["driver"]["version"] = "535.161.08"
    for r in docs["gpu-c/bench"]["results"]:
        if r["device"] == "cuda:2":
            r["value"] *= 0.8
    directory = tmp_path_factory.mktemp("rack")
    write(directory, docs)
    proc, doc = fleet(str(directory))
    assert doc is not None, proc.stderr
    return {"dir": directory, "proc": proc, "doc": doc, "docs": docs}


def node(doc: dict[str, Any], hostname: str) -> dict[str, Any]:
    return next(n for n in doc["nodes"] if n["hostname"] == hostname)


def test_every_node_with_its_worst_status_failing_first(rack: dict[str, Any]) -> None:
    doc = rack["doc"]
    assert rack["proc"].returncode == 1 and doc["exit_code"] == 1 and doc["status"] == "fail"
    assert {n["hostname"] for n in doc["nodes"]} == {"cpu-1", "cpu-2", "cpu-3", "gpu-a", "gpu-b", "gpu-c"}
    # Failing first: gpu-b fails its doctor; cpu-3 and gpu-c have a slow device, which fails a node too.
    assert [n["hostname"] for n in doc["nodes"][:3]] == ["cpu-3", "gpu-b", "gpu-c"]
    assert {n["status"] for n in doc["nodes"][:3]} == {"fail"}
    gpu_b = node(doc, "gpu-b")
    failing = {f["id"]: f for f in gpu_b["failing"]}
    assert {"gpu.ecc", "gpu.retired_memory"} <= set(failing)
    ecc = failing["gpu.ecc"]
    assert ecc["report"] == "doctor" and ecc["status"] == "fail" and ecc["source"].endswith("gpu-b/doctor.json")
    assert ecc["summary"] and ecc["fix"]["text"]  # the doctor's own words and fix, carried over
    assert node(doc, "gpu-a")["status"] == "ok" and node(doc, "gpu-a")["failing"] == []
    kinds = sorted(r["kind"] for r in node(doc, "cpu-1")["reports"])
    assert kinds == ["bench", "comm", "doctor"]
    assert doc["summary"]["nodes"] == 6 and doc["summary"]["failing"] == 3
    assert doc["summary"]["reports_read"] == 13 and doc["summary"]["skipped"] == 0


def test_drift_names_each_value_and_its_hosts_majority_first(rack: dict[str, Any]) -> None:
    drift = {d["field"]: d for d in rack["doc"]["drift"]}
    driver = drift["driver.version"]["values"]
    # cpu nodes have no driver (null), two GPU nodes 550.54.15, one 535.161.08
    assert [v["value"] for v in driver] == [None, "550.54.15", "535.161.08"]
    assert driver[0]["hosts"] == ["cpu-1", "cpu-2", "cpu-3"] and driver[0]["count"] == 3
    assert driver[2]["hosts"] == ["gpu-c"]
    counts = {v["value"]: v["hosts"] for v in drift["gpu.count"]["values"]}
    assert counts == {0: ["cpu-1", "cpu-2", "cpu-3"], 4: ["gpu-a", "gpu-c"], 2: ["gpu-b"]}
    assert drift["driver.version"]["title"] == "NVIDIA driver"
    uniform = {u["field"]: u for u in rack["doc"]["uniform"]}
    assert uniform["python"]["nodes"] == 6  # every node's envelope states it, and they agree
    assert "torch.version" in uniform  # the full doctors and every bench report agree on torch


def test_a_slow_gpu_is_named_by_host_index_uuid_and_bus_id(rack: dict[str, Any]) -> None:
    doc = rack["doc"]
    slow = doc["slow_gpus"]
    assert {(s["hostname"], s["index"]) for s in slow} == {("gpu-c", 2)}
    assert {s["id"] for s in slow} == {"matmul.fp32", "memory.d2d"}  # each benchmark it is slow in
    s = slow[0]
    gpu = next(g for g in rack["docs"]["gpu-c/doctor"]["gpus"] if g["index"] == 2)
    assert s["uuid"] == gpu["uuid"] == "GPU-gpu-c-0002" and s["pci_bus_id"] == gpu["pci_bus_id"]
    assert s["model"] == "NVIDIA H100 80GB HBM3" and s["value"] == pytest.approx(560.0)
    assert s["fleet_median"] == pytest.approx(700.0) and s["shortfall"] == pytest.approx(0.2)
    gpu_c = node(doc, "gpu-c")
    assert [(f["index"], f["id"]) for f in gpu_c["slow"]] == [(2, "matmul.fp32"), (2, "memory.d2d")]
    assert gpu_c["status"] == "fail" and gpu_c["failing"] == []  # its checks passed; its GPU 2 is slow
    # What a chart draws: every H100's figure, the median and the line below which a GPU is slow.
    assert s["quick"] is True  # the bench copies come from a --quick run: compared with --quick runs only
    h100 = next(c for c in doc["comparisons"] if c["id"] == "matmul.fp32" and c["device_kind"] == "gpu")
    assert h100["devices"] == 10 and h100["slow"] == 1 and len(h100["values"]) == 10
    assert h100["values"] == sorted(h100["values"]) and h100["slow_below"] == pytest.approx(630.0)


def test_cpu_figures_are_compared_by_cpu_model(rack: dict[str, Any]) -> None:
    slow = rack["doc"]["slow_cpus"]
    assert {(s["hostname"], s["id"]) for s in slow} == {("cpu-3", "matmul.fp32"), ("cpu-3", "memory.d2d")}
    cpu_model = rack["docs"]["cpu-1/bench"]["devices"][0]["model"]
    for s in slow:
        assert s["model"] == cpu_model and s["index"] is None and s["uuid"] is None
        assert s["shortfall"] == pytest.approx(0.2)  # the median is the two unedited copies' figure


def test_threshold_moves_the_line_and_is_checked(rack: dict[str, Any]) -> None:
    proc, doc = fleet(str(rack["dir"]), "--threshold", "0.25")
    assert doc is not None and doc["threshold"] == 0.25
    assert doc["slow_gpus"] == [] and doc["slow_cpus"] == []
    assert proc.returncode == 1  # gpu-b still fails its doctor
    for bad in ("0", "1", "1.5", "-0.1", "nan", "inf", "ten"):
        proc = envcheck("fleet", str(rack["dir"]), "--threshold", bad)
        assert proc.returncode == 2 and proc.stdout == "", bad
        assert "--threshold" in proc.stderr and "Traceback" not in proc.stderr


def test_healthy_fleet_exits_0(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    docs = {f"gpu-{i}": as_node(real["h100x4"], f"gpu-{i}", uuid_prefix=f"n{i}") for i in range(3)}
    proc, doc = fleet(*write(tmp_path, docs))
    assert proc.returncode == 0 and doc is not None and doc["exit_code"] == 0 and doc["status"] == "ok"
    assert doc["drift"] == [] and doc["slow_gpus"] == [] and doc["duplicates"] == {"hosts": [], "gpus": []}


def test_a_gpu_on_two_hosts_and_a_host_twice_are_called_out(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    docs = {
        # Two nodes whose reports carry the same GPU UUIDs: one report copied from the other, or cards moved.
        "a": as_node(real["h100x4"], "node-a", uuid_prefix="same"),
        "b": as_node(real["h100x4"], "node-b", uuid_prefix="same"),
        # One host with two doctor reports: two machines answering to one name.
        "c1": as_node(real["h100x4"], "node-c", uuid_prefix="c"),
        "c2": as_node(real["h100x4"], "node-c", uuid_prefix="c"),
    }
    proc, doc = fleet(*write(tmp_path, docs))
    assert doc is not None and proc.returncode == 0  # called out, not a failure by itself
    assert doc["status"] == "warn"
    gpus = doc["duplicates"]["gpus"]
    assert [g["uuid"] for g in gpus] == [f"GPU-same-{i:04d}" for i in range(4)]
    assert all(g["hosts"] == ["node-a", "node-b"] for g in gpus)
    hosts = doc["duplicates"]["hosts"]
    assert [(h["hostname"], h["kind"], len(h["sources"])) for h in hosts] == [("node-c", "doctor", 2)]
    text = envcheck("fleet", *(str(tmp_path / f"{n}.json") for n in docs)).stdout
    # the four cards of one copied report are one line and one duplicate, not four
    (line,) = [x for x in text.splitlines() if x.startswith("DUPLICATE 4 GPUs")]
    assert line.startswith(
        "DUPLICATE 4 GPUs (GPU-same-0000, GPU-same-0001, GPU-same-0002, GPU-same-0003) on 2 hosts (node-a, node-b): "
        "a report copied from another node, or cards moved between them"
    ), line
    assert "DUPLICATE HOST node-c: 2 doctor reports" in text
    assert "2 duplicates" in text.splitlines()[1] and "5 duplicates" not in text


def test_the_lab_specs_packages_drift(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    one = as_node(real["doctor_spec"], "node-1")
    other = as_node(real["doctor_spec"], "node-2")
    installed = next(c for c in one["checks"] if c["id"] == "spec.package.numpy")
    assert installed["status"] == "ok"
    version = installed["summary"].split()[1]
    # node-2 is edited to fail the spec with another numpy, as the spec check words it (details.found).
    check = next(c for c in other["checks"] if c["id"] == "spec.package.numpy")
    check.update(status="fail", summary="expected numpy >=3, found 1.26.4", details={"found": "1.26.4"})
    _, doc = fleet(*write(tmp_path, {"one": one, "two": other}))
    assert doc is not None
    numpy = next(d for d in doc["drift"] if d["field"] == "package.numpy")
    assert numpy["title"] == "package numpy"
    assert {v["value"]: v["hosts"] for v in numpy["values"]} == {version: ["node-1"], "1.26.4": ["node-2"]}


def test_skipped_sources_are_named_with_a_reason(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    good = write(tmp_path / "good", {"n1": as_node(real["h100x4"], "n1", uuid_prefix="n1")})[0]
    text = json.dumps(real["doctor"], indent=2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notjson.json").write_text("this is a log, not a report\n")
    (bad / "truncated.json").write_text(text[: len(text) // 2])
    (bad / "future.json").write_text(json.dumps({**real["doctor"], "schema": "envcheck.doctor/2"}))
    # Not a schema name envcheck writes (a kind it has no adapter for, envcheck.scan/1, is read by its
    # envelope: test_a_kind_without_an_adapter_is_read_by_its_envelope).
    (bad / "unknown.json").write_text(json.dumps({**real["doctor"], "schema": "envcheck.scan"}))
    (bad / "other.json").write_text(json.dumps({"name": "some other tool's JSON"}))
    (bad / "null.json").write_text(json.dumps({**real["doctor"], "schema": None}))
    (bad / "nohost.json").write_text(json.dumps({**real["doctor"], "host": {}}))
    (bad / "empty.json").write_text("")
    (bad / "ignored.log").write_text("not *.json: a directory's other files are not read")
    (tmp_path / "emptydir").mkdir()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    started = time.monotonic()
    proc, doc = fleet(good, str(bad), str(fifo), str(tmp_path / "missing.json"), str(tmp_path / "emptydir"))
    assert time.monotonic() - started < 30  # a FIFO without a writer is refused, not waited on
    assert doc is not None and proc.returncode == 0
    reasons = {Path(s["source"]).name: s["reason"] for s in doc["skipped"]}
    assert "not JSON" in reasons["notjson.json"]
    assert reasons["truncated.json"].startswith("is truncated")
    assert "envcheck.doctor/2" in reasons["future.json"] and "cannot read" in reasons["future.json"]
    assert "unknown schema" in reasons["unknown.json"]
    assert reasons["other.json"] == 'is not an envcheck report (it has no "schema" field)'
    assert reasons["null.json"] == 'is not an envcheck report (its "schema" is null)'
    assert "host.hostname" in reasons["nohost.json"]
    assert reasons["empty.json"] == "is empty"
    assert "FIFO" in reasons["fifo.json"]
    assert reasons["missing.json"] == "does not exist"
    assert reasons["emptydir"] == "is a directory without any *.json file in it"
    assert "ignored.log" not in reasons
    assert doc["summary"]["reports_read"] == 1 and doc["summary"]["skipped"] == len(doc["skipped"]) == 11
    assert "1 report read, 11 skipped" in doc["summary"]["text"]
    # Each skip is one line on stderr too, never a traceback.
    assert proc.stderr.count("envcheck: fleet: skipped ") == 11 and "Traceback" not in proc.stderr


def test_no_readable_report_is_exit_2_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[]")
    proc = envcheck("fleet", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == "envcheck: fleet: no envcheck report could be read (1 skipped)"
    assert envcheck("fleet").returncode == 2  # no REPORT at all: click's usage error


def test_stdin_json_lines_and_pretty_documents(real: dict[str, dict[str, Any]]) -> None:
    lines = [json.dumps(as_node(real["h100x4"], f"s{i}", uuid_prefix=f"s{i}")) for i in range(3)]
    # two lines cut off: between two values, and inside a string (its newline a control character there)
    between = lines[1][: lines[1].index(", ", 200) + 1]
    within = lines[1][: lines[1].index('"hostname": "') + len('"hostname": "s')]
    stream = "\n".join([lines[0], between, within, "not json", lines[2]]) + "\n"
    # a pretty-printed document after the JSON lines (`envcheck doctor --json` as one node prints it)
    stream += json.dumps(as_node(real["old_driver"], "s3", uuid_prefix="s3"), indent=2) + "\n"
    proc, doc = fleet("-", stdin=stream)
    assert doc is not None, proc.stderr
    assert sorted(n["hostname"] for n in doc["nodes"]) == ["s0", "s2", "s3"]
    assert [(s["source"], s["reason"].split(":")[0]) for s in doc["skipped"]] == [
        ("<stdin>:2", "is truncated"),
        ("<stdin>:3", "is truncated"),
        ("<stdin>:4", "is not JSON (Expecting value at line 1 of the document, column 1)"),
    ]
    assert {r["source"] for n in doc["nodes"] for r in n["reports"]} == {"<stdin>:1", "<stdin>:5", "<stdin>:6"}


def test_the_json_contract(rack: dict[str, Any]) -> None:
    doc = rack["doc"]
    assert doc["schema"] == "envcheck.fleet/1" and all(k in doc for k in ENVELOPE)
    json.loads(rack["proc"].stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    for n in doc["nodes"]:
        assert set(n) >= {"hostname", "status", "reports", "failing", "warnings", "slow"}
        for item in n["failing"] + n["warnings"]:
            assert set(item) == {"report", "source", "id", "status", "summary", "fix"}
    for d in doc["drift"]:
        assert set(d) == {"field", "title", "by_model", "values"} and len(d["values"]) > 1
        # each value's GPU models, where they differ by model (pools built apart) alone
        assert all(
            set(v) == {"value", "count", "hosts"} | ({"models"} if d["by_model"] else set()) for v in d["values"]
        )
        counts = [v["count"] for v in d["values"]]
        assert counts == sorted(counts, reverse=True)
    keys = {"hostname", "index", "uuid", "pci_bus_id", "id", "model", "value", "fleet_median", "shortfall"}
    for s in doc["slow_gpus"] + doc["slow_cpus"]:
        assert set(s) >= keys
        assert math.isclose(s["shortfall"], 1 - s["value"] / s["fleet_median"], abs_tol=1e-4)
    assert set(doc["duplicates"]) == {"hosts", "gpus"} and doc["skipped"] == []
    assert set(doc["summary"]) >= {"nodes", "failing", "reports_read", "skipped", "slow_gpus", "text"}


def test_text_report(rack: dict[str, Any]) -> None:
    proc = envcheck("fleet", str(rack["dir"]))
    assert proc.returncode == 1
    out = proc.stdout
    assert out.index("gpu-b") < out.index("Drift") < out.index("Slow GPUs") < out.index("Slow CPUs")
    assert "[FAIL]  doctor gpu.ecc:" in out and "fix:" in out
    # No value is the majority here, so every value names its hosts.
    assert (
        "NVIDIA driver: none on 3 (cpu-1, cpu-2, cpu-3); 550.54.15 on 2 (gpu-a, gpu-b); 535.161.08 on 1 (gpu-c)" in out
    )
    assert "GPU-gpu-c-0002" in out and "20%" in out
    # Healthy nodes share one line; cpu-3 and gpu-c are slow, so shown apart. (The CPU nodes may warn:
    # their bench judged this machine's CPU load, which varies.)
    healthy = next(line for line in out.splitlines() if " ok: " in line)
    assert healthy.startswith("[ok]") and "gpu-a" in healthy and "gpu-c" not in healthy and "cpu-3" not in healthy
    last = out.rstrip().splitlines()[-1]
    # Slow devices are counted as devices (issue 20): gpu-c's GPU 2 and cpu-3's CPU, each slow in both figures.
    assert last.startswith("6 nodes: 3 failing, ")
    assert "1 slow GPU in 2 figures, 1 slow CPU in 2 figures, 4 fields drifting" in last
    assert "SLOW gpu-c GPU 2 (GPU-gpu-c-0002, " in out


def test_markdown_report(rack: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "fleet.md"
    proc = envcheck("fleet", str(rack["dir"]), "--output", str(target))
    assert proc.returncode == 1
    md = target.read_text()
    assert md.startswith("## envcheck fleet: 6 nodes: 3 failing")
    for heading in ("### Nodes", "### Failing checks and warnings", "### Drift", "### Slow GPUs", "### Slow CPUs"):
        assert f"\n{heading}\n" in md
    assert "| `gpu-b` | ❌ fail |" in md
    assert "| **NVIDIA driver** | `none` | 3 | cpu-1, cpu-2, cpu-3 |" in md
    assert "| `535.161.08` | 1 | gpu-c |" in md
    assert "| `gpu-c` | 2 | GPU-gpu-c-0002 |" in md
    # a slow figure's median in its unit, and a --quick run's figure marked so, as text and HTML say them
    slow_row = next(line for line in md.splitlines() if line.startswith("| `gpu-c` | 2 | GPU-gpu-c-0002 |"))
    unit = rack["doc"]["slow_gpus"][0]["unit"]
    assert slow_row.count(f" {unit} |") == 2 and "` (--quick) |" in slow_row, slow_row
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            # every row of a table has its columns (a | inside a value is escaped)
            assert line.count(" | ") - line.count("\\|") >= 1


def test_a_report_failing_by_exit_code_or_comm_problem(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    comm = as_node(real["comm_cpu"], "rank0-host")
    # A comm run in which a rank on another node never joined, as comm reports it (edited in).
    comm["problems"] = [{"rank": 3, "host": "node-x", "what": "never joined within 60 s"}]
    comm["exit_code"] = 1
    bench = as_node(real["bench_cpu"], "node-y")
    bench.update(exit_code=130, interrupted=True)  # interrupted: its figures are not all there
    _, doc = fleet(*write(tmp_path, {"comm": comm, "bench": bench}))
    assert doc is not None
    x = node(doc, "node-x")
    assert x["status"] == "fail" and x["reports"] == []  # named only by rank 0's report
    assert x["failing"][0]["summary"] == "rank 3: never joined within 60 s"
    y = node(doc, "node-y")
    assert y["status"] == "fail" and "interrupted" in y["failing"][0]["summary"]
    assert "exit code 130" in y["failing"][0]["summary"]


def test_a_comm_problem_on_a_host_named_past_any_host_name_stays_on_rank_0s_node(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A rank's host is a node of the fleet (the one that never joined): one named by 200 000 characters is
    no host, so the problem stays on the node of the report that states it, saying why, and no node is
    named so in any line of the report."""
    comm = as_node(real["comm_cpu"], "rank0-host")
    comm["problems"] = [
        {"rank": 3, "host": "h" * 200_000, "what": "never joined within 60 s"},
        {"rank": 2, "host": " \t", "what": "never joined within 60 s"},  # a blank name is none either
    ]
    comm["exit_code"] = 1
    proc, doc = fleet(*write(tmp_path, {"comm": comm}))
    assert doc is not None, proc.stderr
    assert [n["hostname"] for n in doc["nodes"]] == ["rank0-host"]
    assert [f["summary"] for f in node(doc, "rank0-host")["failing"]] == [
        "rank 3: (its host's name is 200,000 characters long, which names no host) never joined within 60 s",
        "rank 2: never joined within 60 s",
    ]
    assert len(envcheck("fleet", str(tmp_path)).stdout) < 5_000


def test_merging_is_fast_enough_for_a_fleet(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """200 nodes (doctor + bench of 4 GPUs each) through the command; benchmarks/fleet_merge.py measures
    10 000. Generous bound: this only catches a merge that went quadratic."""
    docs: dict[str, dict[str, Any]] = {}
    for i in range(200):
        doctor = as_node(real["h100x4"], f"n{i:03d}", uuid_prefix=f"n{i}")
        docs[f"n{i:03d}-doctor"], docs[f"n{i:03d}-bench"] = doctor, gpu_bench(real["bench_cpu"], doctor)
    write(tmp_path, docs)
    started = time.monotonic()
    proc, doc = fleet(str(tmp_path))
    assert doc is not None and doc["summary"]["reports_read"] == 400
    assert time.monotonic() - started < 20


def test_a_hung_file_is_refused_and_the_rest_still_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read stuck in the kernel (a hung NFS mount) stands in as a read that never returns."""
    from envcheck.core import files
    from envcheck.fleet import read

    paths = [str(tmp_path / f"{i}.json") for i in range(3)]
    for p in paths:
        Path(p).write_text("{}")
    release = threading.Event()
    real_read = files.read_regular

    def read_regular(path: str, max_bytes: int, *check: Any) -> bytes:
        if path == paths[1]:
            release.wait(30)
        return real_read(path, max_bytes, *check)

    monkeypatch.setattr(files, "read_regular", read_regular)
    try:
        got = list(read.read_ahead(paths, timeout_s=0.5))
    finally:
        release.set()
    assert [p for p, _ in got] == paths
    assert got[0][1] == b"{}" and got[2][1] == b"{}"
    assert isinstance(got[1][1], files.FileRefused) and "within 0.5 s" in str(got[1][1])


def test_the_writers_layout_does_not_change_the_fleet_report(rack: dict[str, Any], tmp_path: Path) -> None:
    """The rack's reports written compact, indented by 4 and by 2 (as --json writes them), and as JSON lines
    on one line each: the same fleet report (but for when it was made)."""
    from envcheck.fleet.app import merge_sources
    from envcheck.fleet.report import fleet_document

    directory = tmp_path / "rack"
    layouts = {"compact": {"separators": (",", ":")}, "indent4": {"indent": 4}, "indent2": {"indent": 2}}
    made = {}
    for name, layout in layouts.items():
        shutil.rmtree(directory, ignore_errors=True)
        for path, doc in rack["docs"].items():
            target = directory / f"{path}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(doc, **layout))
        report = merge_sources([str(directory)], workers=1)
        made[name] = fleet_document(report, generated_at=utc_now(), duration_s=0.0)
        assert report.reports_read == len(rack["docs"]) and not report.skipped, name
    for doc in made.values():
        doc.pop("generated_at")
    assert made["compact"] == made["indent4"] == made["indent2"]
    # ... and what the command made of them, but for where the files lay
    nodes = json.dumps(made["indent2"]["nodes"]).replace(str(directory), str(rack["dir"]))
    assert json.loads(nodes) == rack["doc"]["nodes"]


def test_a_kind_without_an_adapter_is_read_by_its_envelope(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """A report of a command this envcheck does not know (made up here: a storage check) is merged by the
    envelope every report carries: its node and verdict, its summary's words, its Python, its GPUs."""
    from envcheck.core.report import envelope

    def storage(hostname: str, status: str, exit_code: int, text: str) -> dict[str, Any]:
        doc = as_node(real["h100x4"], hostname, uuid_prefix=hostname)
        made: dict[str, Any] = envelope(
            "envcheck.storage/1", generated_at=utc_now(), duration_s=1.0, host=HostIdentity.here()
        )
        made.update(host=doc["host"], gpus=doc["gpus"], status=status, exit_code=exit_code)
        made.update(summary={"text": text}, drives=[{"path": "/dev/nvme0n1", "read_gb_s": 0.4}])
        return made

    docs = {
        "st-1": storage("st-1", "fail", 1, "1 of 8 NVMe drives below 1 GB/s"),
        "st-2": storage("st-2", "ok", 0, "8 NVMe drives above 1 GB/s"),
        "st-2-doctor": as_node(real["h100x4"], "st-2", uuid_prefix="st-1"),  # st-1's GPUs: a copied report
    }
    proc, doc = fleet(*write(tmp_path, docs))
    assert doc is not None and doc["skipped"] == [], proc.stderr
    assert proc.returncode == 1 and doc["exit_code"] == 1 and doc["status"] == "fail"
    st1 = node(doc, "st-1")
    assert st1["status"] == "fail" and [r["kind"] for r in st1["reports"]] == ["storage"]
    (failing,) = st1["failing"]
    assert failing["report"] == "storage" and failing["summary"] == (
        "the storage report's status is fail (exit code 1): 1 of 8 NVMe drives below 1 GB/s"
    )
    # st-2's doctor report names st-1's GPUs: both nodes warn of it (st-1 fails anyway)
    assert node(doc, "st-2")["status"] == "warn" and [w["id"] for w in node(doc, "st-2")["warnings"]] == ["gpu.shared"]
    assert {g["uuid"] for g in doc["duplicates"]["gpus"]} == {f"GPU-st-1-{i:04d}" for i in range(4)}
    assert {u["field"]: u["nodes"] for u in doc["uniform"]}["python"] == 2


def test_help_stays_light() -> None:
    """Loading the command (``envcheck fleet --help``; the group's own --help loads none) imports only its
    click module: not the reader, the merge, msgspec or orjson."""
    code = (
        "import sys; from envcheck.cli import main; main.get_command(None, 'fleet'); "
        "print(sorted(m for m in sys.modules if m.startswith(('envcheck.fleet', 'msgspec', 'orjson'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout.replace("'", '"')) == ["envcheck.fleet", "envcheck.fleet.cli"]


def test_copy_of_a_document_is_not_changed_by_merging(real: dict[str, dict[str, Any]]) -> None:
    from envcheck.fleet.merge import merge
    from envcheck.fleet.read import NodeReport

    doc = as_node(real["ecc"], "n")
    before = copy.deepcopy(doc)
    report = merge([NodeReport("x", "doctor", "n", doc)])
    assert doc == before and report.nodes[0].status.value == "fail"


def test_drift_names_the_odd_ones_out_when_one_value_is_the_majority() -> None:
    from envcheck.fleet.render import hosts_shown

    assert hosts_shown([{"count": 9}, {"count": 1}]) == [False, True]
    assert hosts_shown([{"count": 3}, {"count": 2}, {"count": 1}]) == [True, True, True]


#: Values of every JSON type, for a document shaped unlike any envcheck writes.
ODD = (None, True, 0, -1.5, "x", [], {}, [None], [1, "x"], {"a": None}, [{"id": 1, "status": "fail"}])


def test_oddly_shaped_documents_never_crash_the_merge(real: dict[str, dict[str, Any]]) -> None:
    """Each field of each real report (and of its first list item) replaced by every JSON type: the
    merge reads what it can and never raises (a hand-edited or foreign report must not end the merge)."""
    from envcheck.fleet.merge import merge
    from envcheck.fleet.read import NodeReport, classify
    from envcheck.fleet.report import fleet_document

    variants = []
    for doc in real.values():
        for key, value in doc.items():
            if key in ("schema", "host"):
                continue
            for odd in ODD:
                variants.append({**doc, key: odd})
            if isinstance(value, list) and value and isinstance(value[0], dict):
                for inner in value[0]:
                    for odd in ODD:
                        variants.append({**doc, key: [{**value[0], inner: odd}, *value[1:]]})
    reports = []
    for i, doc in enumerate(variants):
        doc = {**doc, "host": {**doc["host"], "hostname": f"n{i}"}}
        kind, hostname = classify(doc)
        reports.append(NodeReport(f"v{i}", kind, hostname, doc))
    report = merge(reports)
    assert report.reports_read == len(variants) > 1000
    from envcheck.core.report import utc_now

    document = fleet_document(report, generated_at=utc_now(), duration_s=0.0)
    json.dumps(document, allow_nan=False)
    from envcheck.render import make_console, render

    for fmt in ("text", "markdown"):
        render(document, fmt, make_console(io.StringIO(), for_file=True))


def test_burn_reports_verdicts_and_sustained_figures(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Three CPU burns as three nodes: burn-3's steady throughput edited 20 % down (slow next to the
    others of its CPU model), burn-2's result check edited to a failure with its fix."""
    docs = {f"burn-{i}": as_node(real["burn_cpu"], f"burn-{i}") for i in (1, 2, 3)}
    docs["burn-3"]["devices"][0]["steady"]["throughput"] *= 0.8
    mismatch = next(v for v in docs["burn-2"]["verdicts"] if v["id"] == "burn.mismatch")
    mismatch.update(status="fail", summary="cpu: 1 of 5 results differed", fix={"text": "Replace it.", "command": None})
    docs["burn-2"].update(status="fail", exit_code=1)
    proc, doc = fleet(*write(tmp_path, docs))
    assert doc is not None and proc.returncode == 1
    failing = node(doc, "burn-2")["failing"]
    assert [(f["report"], f["id"], f["summary"]) for f in failing] == [
        ("burn", "burn.mismatch", "cpu: 1 of 5 results differed")
    ]
    assert failing[0]["fix"] == {"text": "Replace it.", "command": None}
    dtype = real["burn_cpu"]["devices"][0]["dtype"]
    assert [(s["hostname"], s["id"], s["unit"]) for s in doc["slow_cpus"]] == [("burn-3", f"burn.{dtype}", "TFLOP/s")]
    assert node(doc, "burn-1")["status"] in ("ok", "warn") and node(doc, "burn-3")["status"] == "fail"


def test_a_contended_cpu_burn_is_listed_not_called_slow(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """burn-3's figure is 20 % down, but its burn says other work held the CPUs meanwhile: that measures the
    sharing, so the fleet lists it and calls nobody slow."""
    docs = {f"burn-{i}": as_node(real["burn_cpu"], f"burn-{i}") for i in (1, 2, 3)}
    docs["burn-3"]["devices"][0]["steady"]["throughput"] *= 0.8
    docs["burn-3"]["devices"][0]["contended"] = True
    proc, doc = fleet(*write(tmp_path, docs))
    assert doc is not None and doc["slow_cpus"] == [], proc.stdout
    dtype = real["burn_cpu"]["devices"][0]["dtype"]
    assert [(c["hostname"], c["id"]) for c in doc["contended"]] == [("burn-3", f"burn.{dtype}")]


def test_quick_and_full_bench_figures_are_not_compared(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """A --quick bench runs smaller cases: its lower figures must not make a node look slow next to
    full runs. Two nodes' copies marked as full runs (edited), with figures 30 % higher than the quick one."""
    docs = {f"q{i}": as_node(real["bench_cpu"], f"q{i}") for i in range(2)}
    for i in (1, 2):
        full = as_node(real["bench_cpu"], f"full{i}")
        full["options"]["quick"] = False
        for r in full["results"]:
            r["value"] *= 1.3
        docs[f"full{i}"] = full
    _, doc = fleet(*write(tmp_path, docs))
    assert doc is not None and doc["slow_cpus"] == []
    matmul = [c for c in doc["comparisons"] if c["id"] == "matmul.fp32"]
    assert sorted((c["quick"], c["devices"]) for c in matmul) == [(False, 2), (True, 2)]


def test_contended_figures_are_listed_and_never_compared(real: dict[str, Any], tmp_path: Path) -> None:
    """Three CPU nodes; node2's figures were all taken while other work held its CPUs (the bench marked
    them ``contended``) and are 37 % lower. They used to make node2 "slow" (exit 1) with no word of the
    contention: now they are left out of the comparison, listed as contended, and node2 is not failed."""
    bench = real["bench_cpu"]
    docs = {}
    for host in ("node1", "node2", "node3"):
        doc = as_node(bench, host)
        for r in doc["results"]:
            r["contended"] = host == "node2"  # the real run's own mark depends on this machine's load
            if host == "node2" and isinstance(r.get("value"), (int, float)):
                r["value"] *= 0.63
        docs[host] = doc
    proc, doc = fleet(*write(tmp_path, docs))
    assert proc.returncode == 0 and doc is not None, proc.stderr
    assert doc["slow_cpus"] == []
    assert {c["hostname"] for c in doc["contended"]} == {"node2"}
    assert {c["id"] for c in doc["contended"]} == {"matmul.fp32", "memory.d2d"}
    assert doc["summary"]["contended"] == 2 and "2 contended figures not compared" in doc["summary"]["text"]
    compared = next(c for c in doc["comparisons"] if c["id"] == "matmul.fp32")
    assert compared["devices"] == 2  # node1 and node3 only
    text = envcheck("fleet", *write(tmp_path / "again", docs)).stdout
    assert "Not compared: taken while other work held the CPUs (2 figures on 1 device)" in text
    assert "  node2 cpu: matmul.fp32, memory.d2d" in text


def test_the_footer_is_the_wait_since_the_command_started(real, tmp_path, monkeypatch):
    """Reading a few reports takes milliseconds: the footer said "(0.0 s)" after a run the user waited for.
    It counts from when envcheck started (envcheck.cli.STARTED), as the doctor's does."""
    from click.testing import CliRunner

    from envcheck import cli
    from envcheck.cli import main

    write(tmp_path, {"cpu-1/doctor": as_node(real["doctor"], "cpu-1")})
    monkeypatch.setattr(cli, "STARTED", time.monotonic() - 2.5)
    shown = CliRunner().invoke(main, ["fleet", str(tmp_path)])
    footer = re.search(r"\((\d+\.\d) s\)$", shown.output.rstrip())
    assert footer is not None and 2.5 <= float(footer[1]) < 60, shown.output
    as_json = CliRunner().invoke(main, ["fleet", str(tmp_path), "--json"])
    assert 2.5 <= json.loads(as_json.output)["duration_s"] < 60


@pytest.mark.parametrize(("share", "slow"), [(0.80, True), (0.85, False)])
def test_a_group_of_exactly_two_nodes(real: dict[str, Any], tmp_path: Path, share: float, slow: bool) -> None:
    """Two nodes of one CPU model: the fleet median is the mean of the two figures. Node b at 80 % of a is
    1 - 0.8 / 0.9 = 11.1 % below that median (slow at the 10 % line); at 85 %, 1 - 0.85 / 0.925 = 8.1 % (not).
    Node a, above the median, is never slow."""
    a = as_node(real["bench_cpu"], "node-a")
    b = as_node(real["bench_cpu"], "node-b")
    for r in b["results"]:
        if isinstance(r.get("value"), (int, float)):
            r["value"] *= share
    proc, doc = fleet(*write(tmp_path, {"node-a": a, "node-b": b}))
    assert doc is not None
    compared = [c for c in doc["comparisons"] if c["device_kind"] != "gpu"]
    assert compared, doc["comparisons"]
    expected = 1 - share / ((1 + share) / 2)
    for c in compared:
        assert c["devices"] == 2 and c["slow"] == (1 if slow else 0), c
    slow_ones = doc["slow_cpus"]
    assert {s["hostname"] for s in slow_ones} == ({"node-b"} if slow else set())
    for s in slow_ones:
        assert s["shortfall"] == pytest.approx(expected, abs=1e-4)
    assert proc.returncode == (1 if slow else 0)
    assert node(doc, "node-a")["status"] != "fail"


def test_a_skipped_source_degrades_a_healthy_fleet_to_a_warning(real: dict[str, Any], tmp_path: Path) -> None:
    docs = {f"gpu-{i}": as_node(real["h100x4"], f"gpu-{i}", uuid_prefix=f"n{i}") for i in range(2)}
    paths = write(tmp_path / "ok", docs)
    proc, doc = fleet(*paths)
    assert doc is not None and (doc["status"], proc.returncode) == ("ok", 0)
    proc, doc = fleet(*paths, str(tmp_path / "missing.json"))
    # One node's report could not be read: the fleet is not known to be healthy, but nothing failed either.
    assert doc is not None and (doc["status"], proc.returncode) == ("warn", 0)


def test_hung_files_within_one_batch_of_reads_are_refused_each_and_the_rest_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader reads a batch of files while the caller waits: two hung files in one batch, and one at
    the start of the next, are each refused, and every other file of both batches is read in order."""
    from envcheck.core import files
    from envcheck.fleet import read

    paths = [str(tmp_path / f"{i}.json") for i in range(10)]
    for i, p in enumerate(paths):
        Path(p).write_text(f'{{"n": {i}}}')
    hung = {paths[1], paths[3], paths[4]}
    release = threading.Event()
    real_read = files.read_regular

    def read_regular(path: str, max_bytes: int, *check: Any) -> bytes:
        if path in hung:
            release.wait(30)
        return real_read(path, max_bytes, *check)

    monkeypatch.setattr(files, "read_regular", read_regular)
    try:
        got = list(read.read_ahead(paths, depth=4, timeout_s=0.3))
    finally:
        release.set()
    assert [p for p, _ in got] == paths
    for path, out in got:
        if path in hung:
            assert isinstance(out, files.FileRefused) and "within 0.3 s" in str(out)
        else:
            assert out == Path(path).read_bytes()


def test_read_ahead_holds_at_most_its_budget_beyond_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files read ahead and not yet handed over stay within the byte budget but for the one file that
    crosses it (a directory of near-limit files is read one at a time), and every file still arrives
    whole and in order, a hung one among them refused."""
    from envcheck.core import files
    from envcheck.fleet import read

    paths = [str(tmp_path / f"{i}.json") for i in range(12)]
    for i, p in enumerate(paths):
        Path(p).write_text(json.dumps({"n": i, "pad": "x" * (1000 + i)}))
    held: list[int] = []
    handed = 0
    release = threading.Event()
    real_read = files.read_regular

    def read_regular(path: str, max_bytes: int, *check: Any) -> bytes:
        if path == paths[7]:
            release.wait(30)
        data = real_read(path, max_bytes, *check)
        held.append(paths.index(path) - handed)  # files read ahead of the caller, this one included
        return data

    monkeypatch.setattr(files, "read_regular", read_regular)
    got = []
    try:
        for path, out in read.read_ahead(paths, depth=8, timeout_s=0.3, budget=2500):
            got.append((path, out))
            handed += 1
    finally:
        release.set()
    assert [p for p, _ in got] == paths
    assert all(out == Path(p).read_bytes() for p, out in got if p != paths[7])
    assert isinstance(got[7][1], files.FileRefused)
    assert max(held) <= 3  # 2 500 bytes hold two of these files; the third crosses the budget


@pytest.mark.parametrize("streamed", [False, True], ids=["listed-whole", "listed-as-sent"])
def test_pooled_batches_keep_skips_and_stdin_in_their_places(
    real: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """Through the workers (two, forkserver, as the command runs them), with the directories listed as
    the batches are sent (a small CHUNK makes this fleet big enough) or whole first: a skipped file, an
    empty directory and stdin between two directories stand where they were named, and the report is
    the one read in this process."""
    from envcheck.fleet import app
    from envcheck.fleet.report import fleet_document

    if streamed:
        monkeypatch.setattr(app, "CHUNK", 4)
        monkeypatch.setattr(app, "BATCHES_PER_WORKER", 1)
    docs = {"doctor": real["h100x4"], "bench": gpu_bench(real["bench_cpu"], real["h100x4"])}
    for part in ("a", "b"):
        for i in range(40):
            host = f"{part}{i:02d}"
            write(tmp_path / part / host, {k: as_node(d, host, uuid_prefix=host) for k, d in docs.items()})
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    stdin = json.dumps(as_node(real["ecc"], "piped", uuid_prefix="piped")).encode()
    sources = [str(tmp_path / "a"), str(tmp_path / "bad.json"), "-", str(tmp_path / "b"), str(tmp_path / "empty")]
    made = {}
    for workers in (1, 2):
        report = app.merge_sources(sources, io.BytesIO(stdin), workers=workers)
        assert [s.source for s in report.skipped] == [str(tmp_path / "bad.json"), str(tmp_path / "empty")]
        assert report.reports_read == 161
        made[workers] = fleet_document(report, generated_at=utc_now(), duration_s=0.0)
        made[workers].pop("generated_at")
    assert made[1] == made[2]
    assert "piped" in [n["hostname"] for n in made[2]["nodes"]]


def test_a_worker_that_dies_leaves_its_batches_and_the_rest_to_this_process(
    real: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker OOM-killed mid-merge breaks the pool: the batch it held and every batch after it are read
    in this process, and the report is the one read here from the start (not an internal error)."""
    import concurrent.futures
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from envcheck.fleet import app
    from envcheck.fleet.report import fleet_document

    class DyingPool:
        """Runs the first two batches; the third one's worker dies, and the pool then refuses work."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.submitted = 0

        def submit(self, fn: Any, batch: list[str]) -> Future[Any]:
            self.submitted += 1
            if self.submitted > 3:
                raise BrokenProcessPool("A child process terminated abruptly")
            future: Future[Any] = Future()
            if self.submitted == 3:
                future.set_exception(BrokenProcessPool("A child process terminated abruptly"))
            else:
                future.set_result(fn(batch))
            return future

        def shutdown(self, *args: Any, **kwargs: Any) -> None:
            pass

    monkeypatch.setattr(app, "CHUNK", 8)
    monkeypatch.setattr(app, "BATCHES_PER_WORKER", 1)
    docs = {"doctor": real["h100x4"], "bench": gpu_bench(real["bench_cpu"], real["h100x4"])}
    for i in range(40):
        host = f"n{i:02d}"
        write(tmp_path / "rack" / host, {k: as_node(d, host, uuid_prefix=host) for k, d in docs.items()})
    made = {}
    for workers in (1, 2):
        if workers == 2:
            monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", DyingPool)
        report = app.merge_sources([str(tmp_path / "rack")], workers=workers)
        assert report.reports_read == 80 and not report.skipped
        made[workers] = fleet_document(report, generated_at=utc_now(), duration_s=0.0)
        made[workers].pop("generated_at")
    assert made[1] == made[2]


def test_a_reader_gone_part_way_through_a_large_report_is_exit_141(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """``envcheck fleet DIR --json | head -c 80``: the report is megabytes, far past the pipe's buffer. The
    buffered stream takes what the pipe held and drops the rest without an error; the command must go on
    writing, meet the closed pipe and exit 141 as SIGPIPE would, not 1 ("a node fails") as if it had all
    been read."""
    from tests.fleet.conftest import ENVCHECK, env_with

    docs = {f"n{i:04d}/doctor": as_node(real["ecc"], f"node-{i:04d}", uuid_prefix=f"{i:04d}") for i in range(400)}
    write(tmp_path / "fleet", docs)
    whole = envcheck("fleet", str(tmp_path / "fleet"), "--json")
    assert whole.returncode == 1 and len(whole.stdout) > 4 * 65536  # a node fails; far more than a pipe holds
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'"{ENVCHECK}" fleet "{tmp_path / "fleet"}" --json | head -c 80 >/dev/null; echo "${{PIPESTATUS[0]}}"',
        ],
        capture_output=True,
        text=True,
        env=env_with(),
        timeout=180,
    )
    assert proc.stdout.strip() == "141", proc.stderr
    assert proc.stderr == ""


def test_linked_node_directories_are_read_once_and_one_that_cannot_be_listed_is_named(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Node directories gathered as symbolic links (``node1 -> /scratch/run42/node1``) are read; a link
    back up the tree does not loop, and two paths to one directory read its reports once (no duplicate
    host). A directory that cannot be listed is named among the skipped sources, never left out in
    silence. Run without the capabilities that let root read any directory, where the tests run as root."""
    from tests.fleet.conftest import ENVCHECK, env_with

    fleet_dir, store = tmp_path / "fleet", tmp_path / "store"
    write(fleet_dir / "n0", {"doctor": as_node(real["h100x4"], "n0", uuid_prefix="n0")})
    write(store / "n1", {"doctor": as_node(real["h100x4"], "n1", uuid_prefix="n1")})
    (fleet_dir / "n1").symlink_to(store / "n1")
    (fleet_dir / "n1-again").symlink_to(store / "n1")
    (fleet_dir / "n0" / "up").symlink_to(fleet_dir)
    (fleet_dir / "n0" / "root").symlink_to("/")  # a stray link to the whole disk: not walked
    locked = fleet_dir / "locked"
    write(locked, {"doctor": as_node(real["h100x4"], "n2", uuid_prefix="n2")})
    locked.chmod(0)
    unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    try:
        proc = subprocess.run(
            [*unprivileged, ENVCHECK, "fleet", str(fleet_dir), "--json"],
            capture_output=True,
            text=True,
            env=env_with(),
            timeout=180,
        )
    finally:
        locked.chmod(0o755)
    doc = json.loads(proc.stdout)
    assert sorted(n["hostname"] for n in doc["nodes"]) == ["n0", "n1"], proc.stderr
    assert doc["duplicates"]["hosts"] == []
    assert doc["skipped"] == [{"source": str(locked), "reason": "cannot be listed: Permission denied"}]
    assert f"skipped {locked}: cannot be listed: Permission denied" in proc.stderr


def test_the_verdict_says_why_a_fleet_of_passing_nodes_warns(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Every node passes, but a report named on the command line is missing: the first line says so, so that a
    mistyped path or a lost report never reads as a ready fleet."""
    (good,) = write(tmp_path / "a", {"doctor": as_node(real["h100x4"], "n0", uuid_prefix="n0")})
    alone = envcheck("fleet", good)
    assert alone.returncode == 0 and "[ok]    Ready: the one node passes" in alone.stdout, alone.stdout
    proc = envcheck("fleet", good, str(tmp_path / "typo.json"))
    assert proc.returncode == 0, proc.stderr
    assert "[warn]  Ready, with warnings: 1 node, none failing; 1 source skipped" in proc.stdout, proc.stdout


def test_a_hosts_newest_report_of_a_kind_decides_its_verdict(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Last week's doctor report, which failed ECC, left beside today's, which passes: the node's verdict is
    today's, and the duplicate is named with the one that decides. Two reports of one time (or one
    without a time) cannot be told apart: both count, as before."""
    today = as_node(real["h100x4"], "node-a", uuid_prefix="a")
    old = as_node(real["ecc"], "node-a", uuid_prefix="a")
    today["generated_at"], old["generated_at"] = "2026-12-07T08:00:00+00:00", "2026-11-30T08:00:00+00:00"
    paths = write(tmp_path / "one", {"doctor": today, "doctor-old": old})
    proc, doc = fleet(str(tmp_path / "one"))
    assert doc is not None and proc.returncode == 0, proc.stdout
    (node,) = doc["nodes"]
    assert node["status"] != "fail" and node["failing"] == [] and [r["source"] for r in node["reports"]] == [paths[0]]
    (dup,) = doc["duplicates"]["hosts"]
    assert dup["sources"] == paths and dup["newest"] == paths[0]
    text = envcheck("fleet", str(tmp_path / "one")).stdout
    assert f"DUPLICATE HOST node-a: 2 doctor reports ({paths[0]}, {paths[1]})" in text
    assert f"the newest decides: {paths[0]}" in text
    old["generated_at"] = today["generated_at"]
    write(tmp_path / "same", {"doctor": today, "doctor-old": old})
    proc, doc = fleet(str(tmp_path / "same"))
    assert doc is not None and proc.returncode == 1 and doc["duplicates"]["hosts"][0]["newest"] is None


def test_one_file_named_twice_still_fails_its_node(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """``envcheck fleet reports reports/n1``: n1's failing report is read twice, from one path. That is not
    a copy to leave out: the node fails, as it did."""
    write(tmp_path / "reports" / "n1", {"doctor": as_node(real["ecc"], "n1", uuid_prefix="n1")})
    proc, doc = fleet(str(tmp_path / "reports"), str(tmp_path / "reports" / "n1"))
    assert doc is not None and proc.returncode == 1, proc.stderr
    assert doc["nodes"][0]["status"] == "fail" and doc["nodes"][0]["failing"]


def test_a_copied_report_counts_once(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """``cp node5/doctor.json node5/doctor-copy.json``: one report twice, to the microsecond. Its failure is
    listed once on the node and counted once in its problem; the duplicate is still named, as copies of one
    report (not "the newest decides": neither is newer), the first copy deciding; a host whose doctor and
    bench reports are both copied is one duplicate host. A copy from another machine (other GPUs) is not
    one: both count."""
    ecc = as_node(real["ecc"], "node-a", uuid_prefix="a")
    bench = as_node(real["bench_cpu"], "node-a")
    paths = write(tmp_path / "copy", {"doctor": ecc, "doctor-copy": copy.deepcopy(ecc)})
    write(tmp_path / "copy" / "b", {"bench": bench, "bench-copy": copy.deepcopy(bench)})
    proc, doc = fleet(str(tmp_path / "copy"))
    assert doc is not None and proc.returncode == 1, proc.stderr
    (node,) = doc["nodes"]
    assert [r["source"] for r in node["reports"] if r["kind"] == "doctor"] == [paths[1]]  # doctor-copy sorts first
    ids = [p["id"] for p in node["failing"]]
    assert ids and len(ids) == len(set(ids)), ids
    dup = next(d for d in doc["duplicates"]["hosts"] if d["kind"] == "doctor")
    assert dup["newest"] == paths[1] and sorted(dup["sources"]) == sorted(paths) and dup["copies"] is True
    assert len(doc["duplicates"]["hosts"]) == 2 and doc["summary"]["duplicate_hosts"] == 1
    text = envcheck("fleet", str(tmp_path / "copy")).stdout
    assert f"copies of one report (the same time, GPUs and verdict), counted once: {paths[1]}" in text
    assert "newest decides" not in text and "1 duplicate" in text and "2 duplicates" not in text
    other = as_node(real["ecc"], "node-a", uuid_prefix="b")
    other["generated_at"] = ecc["generated_at"]
    write(tmp_path / "two", {"doctor": ecc, "doctor-other": other})
    _, doc = fleet(str(tmp_path / "two"))
    assert doc is not None and len(doc["nodes"][0]["reports"]) == 2 and doc["duplicates"]["hosts"][0]["newest"] is None
    assert "copies" not in doc["duplicates"]["hosts"][0]


def test_a_node_directory_copied_whole_is_one_duplicate_line(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """``cp -r node-a node-a.old``: the node's doctor and bench reports twice. Each format says it in one line
    naming the two directories, not a line per kind naming each file; the JSON keeps an entry per kind."""
    reports = {"doctor": as_node(real["ecc"], "node-a", uuid_prefix="a"), "bench": as_node(real["bench_cpu"], "node-a")}
    write(tmp_path / "r" / "node-a", reports)
    write(tmp_path / "r" / "node-a.old", copy.deepcopy(reports))
    proc, doc = fleet(str(tmp_path / "r"))
    assert doc is not None and proc.returncode == 1, proc.stderr
    assert sorted(d["kind"] for d in doc["duplicates"]["hosts"]) == ["bench", "doctor"]
    assert doc["summary"]["duplicate_hosts"] == 1
    dirs = f"{tmp_path / 'r' / 'node-a'}, {tmp_path / 'r' / 'node-a.old'}"
    said = "copies of one node's reports (the same times, GPUs and verdicts), counted once: those in"
    text = envcheck("fleet", str(tmp_path / "r")).stdout
    (line,) = [x for x in text.splitlines() if "DUPLICATE HOST" in x]
    assert line.startswith(f"DUPLICATE HOST node-a: 2 bench and 2 doctor reports ({dirs}): {said}"), line
    markdown = envcheck("fleet", str(tmp_path / "r"), "--format", "markdown").stdout
    (row,) = [x for x in markdown.splitlines() if x.startswith("| host ")]
    assert "2 bench and 2 doctor reports" in row and dirs in row and said in row, row
    page = envcheck("fleet", str(tmp_path / "r"), "--format", "html").stdout
    assert page.count("host <code>node-a</code>") == 1 and "2 bench and 2 doctor reports" in page
    # another directory for each kind: each kind keeps its own line, naming its files
    write(tmp_path / "s" / "x", {"doctor": reports["doctor"]})
    write(tmp_path / "s" / "y", {"doctor": copy.deepcopy(reports["doctor"]), "bench": reports["bench"]})
    write(tmp_path / "s" / "z", {"bench": copy.deepcopy(reports["bench"])})
    text = envcheck("fleet", str(tmp_path / "s")).stdout
    lines = [x for x in text.splitlines() if "DUPLICATE HOST" in x]
    assert len(lines) == 2 and all("counted once" in x and ".json" in x for x in lines), lines


def test_a_fleet_report_kept_among_the_nodes_reports_is_passed_over(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """``envcheck fleet reports/ --json > reports/fleet.json``, then the next run over reports/ with --since:
    the fleet report is no node's report and is passed over without a warning; named on its own, it is
    skipped with the reason."""
    reports = tmp_path / "reports"
    write(reports / "n0", {"doctor": as_node(real["h100x4"], "n0", uuid_prefix="n0")})
    first = envcheck("fleet", str(reports), "--json")
    assert first.returncode == 0, first.stderr
    (reports / "fleet.json").write_text(first.stdout)
    proc, doc = fleet(str(reports), "--since", str(reports / "fleet.json"))
    assert doc is not None and proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert doc["skipped"] == [] and doc["status"] == "ok" and doc["since"]["new"] == []
    named, _ = fleet(str(reports / "fleet.json"))
    assert named.returncode == 2 and "is a fleet report, not a node's report" in named.stderr


def test_the_runs_own_output_in_the_directory_it_reads_is_passed_over(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """README's recipe, ``envcheck fleet reports/ --json > reports/fleet.json``: the shell makes the file,
    empty, before the command lists reports/. It is this run's own report: no skip, no warning, and the
    fleet's verdict is the nodes' alone. Run again the same way, the file holds the last report."""
    reports = tmp_path / "reports"
    write(reports / "n0", {"doctor": as_node(real["h100x4"], "n0", uuid_prefix="n0")})
    for _ in range(2):
        with open(reports / "fleet.json", "w") as out:
            proc = subprocess.run(
                [ENVCHECK, "fleet", str(reports), "--json"], stdout=out, stderr=subprocess.PIPE, text=True,
                env=env_with(), timeout=180, cwd=ROOT,
            )  # fmt: skip
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        doc = json.loads((reports / "fleet.json").read_text())
        assert doc["skipped"] == [] and doc["status"] == "ok" and doc["summary"]["reports_read"] == 1
    # another file that is empty in the same directory is still said to be empty
    (reports / "other.json").write_text("")
    proc, doc = fleet(str(reports))
    assert doc is not None and [s["reason"] for s in doc["skipped"]] == ["is empty"]


def test_a_report_whose_own_verdict_is_unknown_is_not_ok() -> None:
    """A report whose status is no verdict envcheck knows ("banana", "FAIL", null, none at all) does not make
    its node ok: it warns, quoting what it said. A bool where the exit code goes is no exit code."""
    lines = []
    for i, status in enumerate(["banana", "FAIL", None, "missing"]):
        doc: dict[str, Any] = {
            "schema": "envcheck.doctor/1",
            "host": {"hostname": f"h{i}"},
            "exit_code": 0,
            "checks": [],
        }
        if status != "missing":
            doc["status"] = status
        lines.append(json.dumps(doc))
    lines.append(
        json.dumps({"schema": "envcheck.doctor/1", "host": {"hostname": "h9"}, "status": "ok", "exit_code": True})
    )
    proc, doc = fleet("-", stdin="\n".join(lines) + "\n")
    assert doc is not None and proc.returncode == 0, proc.stderr
    words = {n["hostname"]: (n["status"], [w["summary"] for w in n["warnings"]]) for n in doc["nodes"]}
    assert words == {
        "h0": (
            "warn",
            ['the doctor report\'s status is "banana", which this envcheck does not know: its verdict is not read'],
        ),
        "h1": (
            "warn",
            ['the doctor report\'s status is "FAIL", which this envcheck does not know: its verdict is not read'],
        ),
        "h2": ("warn", ["the doctor report states no status: its verdict is not read"]),
        "h3": ("warn", ["the doctor report states no status: its verdict is not read"]),
        "h9": ("ok", []),
    }


def test_documents_each_with_a_byte_order_mark_one_after_another_are_each_read(real: dict[str, dict[str, Any]]) -> None:
    """``cat a.json b.json c.json | envcheck fleet -`` over files a Windows editor saved: each document starts
    with a byte-order mark, which stands between documents as whitespace does."""
    docs = [json.dumps(as_node(real["h100x4"], f"b{i}", uuid_prefix=f"b{i}"), indent=2) for i in range(3)]
    proc, doc = fleet("-", stdin="".join("\ufeff" + d + "\n" for d in docs))
    assert doc is not None and doc["skipped"] == [], proc.stderr
    assert sorted(n["hostname"] for n in doc["nodes"]) == ["b0", "b1", "b2"]


def test_an_empty_stdin_is_said_to_be_empty() -> None:
    proc = envcheck("fleet", "-", stdin="\n\n")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "skipped <stdin>: is empty: no JSON document came on stdin" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "envcheck: fleet: no envcheck report could be read (1 skipped)"
