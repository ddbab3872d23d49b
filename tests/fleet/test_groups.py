"""What the fleet report says first, through the installed command: problems grouped across the fleet
(one entry per check and verdict with its nodes and fix), slow devices counted as devices, and what
changed since a previous run (``--since``).

The fleet is 1 000 nodes made from the real quick doctor over the fake NVML's four healthy H100s
(conftest: each node its own hostname and GPU UUIDs), with three kinds of problems edited in, each said
where it is made: ``gpu.ecc`` fails on 3 nodes (the check as the ECC scenario's doctor wrote it), every
node warns ``host.ulimits`` (a fleet-wide setting), and 20 nodes carry a GPU bench (conftest's
gpu_bench) where one GPU on each of 2 hosts is 20 % slower in both benchmarks.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest

from envcheck.doctor.signatures import SIGNATURES
from tests.fleet.conftest import as_node, envcheck, fleet, gpu_bench, write

NODES = 1000
ECC_NODES = ("node0005", "node0017", "node0099")
SLOW = {"node0003": 1, "node0011": 2}  # host -> its slow GPU's index
BENCHED = [f"node{i:04d}" for i in range(20)]
ULIMITS_FIX = {"text": "Raise the open files limit to 1048576 in the node image", "command": "ulimit -n 1048576"}


def small(doc: dict[str, Any]) -> dict[str, Any]:
    """The doctor's report without what the fleet does not read (its areas and fabric): 1 000 of them stay
    a few MiB."""
    out = {k: v for k, v in doc.items() if k not in ("areas", "fabric")}
    out["checks"] = [c for c in doc["checks"] if c["id"].startswith(("gpu.", "host.ulimits", "driver."))]
    return out


def passing(real: dict[str, dict[str, Any]], host: str) -> dict[str, Any]:
    """A small doctor report of ``host`` (its own GPUs) whose every check passes."""
    doctor = as_node(small(real["h100x4"]), host, uuid_prefix=host)
    doctor["checks"] = [c for c in doctor["checks"] if c["status"] == "ok"]
    doctor.update(status="ok", exit_code=0)
    return doctor


def fleet_docs(real: dict[str, dict[str, Any]], nodes: int = NODES) -> dict[str, dict[str, Any]]:
    template = small(real["h100x4"])
    ecc = next(c for c in real["ecc"]["checks"] if c["id"] == "gpu.ecc")
    docs: dict[str, dict[str, Any]] = {}
    for i in range(nodes):
        host = f"node{i:04d}"
        doctor = as_node(template, host, uuid_prefix=host)
        for c in doctor["checks"]:
            if c["id"] == "host.ulimits":  # edited in: a limit every node shares
                c.update(status="warn", summary="open files limit 1024 is below 65536", fix=dict(ULIMITS_FIX))
            if c["id"] == "gpu.ecc" and host in ECC_NODES:
                c.update(copy.deepcopy(ecc))
        doctor["status"], doctor["exit_code"] = ("fail", 1) if host in ECC_NODES else ("warn", 0)
        docs[f"{host}/doctor"] = doctor
        if host in BENCHED:
            bench = gpu_bench(real["bench_cpu"], doctor)
            for r in bench["results"]:
                if r["device"] == f"cuda:{SLOW.get(host)}":
                    r["value"] *= 0.8
            docs[f"{host}/bench"] = bench
    return docs


@pytest.fixture(scope="module")
def thousand(real: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("thousand")
    docs = fleet_docs(real)
    write(directory, docs)
    proc, doc = fleet(str(directory))
    assert doc is not None, proc.stderr
    return {"dir": directory, "doc": doc, "proc": proc, "docs": docs}


def test_three_kinds_of_problems_are_three_groups_in_json(thousand: dict[str, Any]) -> None:
    doc = thousand["doc"]
    assert thousand["proc"].returncode == 1 and doc["summary"]["nodes"] == NODES
    groups = doc["problems"]
    assert [(g["report"], g["id"], g["status"], g["count"]) for g in groups] == [
        ("doctor", "gpu.ecc", "fail", 3),  # the worst first, then the most common
        ("fleet", "slow.gpu", "fail", 2),
        ("doctor", "host.ulimits", "warn", NODES),
    ]
    ecc, slow, ulimits = groups
    assert ecc["nodes"] == list(ECC_NODES) and ecc["fix"]["command"] == "nvidia-smi -q -d ECC"
    assert [f["nodes"] for f in ecc["fixes"]] == [list(ECC_NODES)]  # one fix, said once
    assert ulimits["fix"] == ULIMITS_FIX and len(ulimits["fixes"]) == 1 and ulimits["more_fixes"] == 0
    # Counted as devices: 2 slow GPUs (one per host), each slow in both benchmarks: 4 figures.
    assert (slow["devices"], slow["figures"], sorted(slow["nodes"])) == (2, 4, sorted(SLOW))
    assert doc["summary"]["slow_gpus"] == 2 and doc["summary"]["slow_gpu_figures"] == len(doc["slow_gpus"]) == 4
    assert "2 slow GPUs in 4 figures" in doc["summary"]["text"] and doc["summary"]["problems"] == 3
    by_host = {h["hostname"]: [d["index"] for d in h["devices"]] for h in doc["slow_devices"]}
    assert by_host == {host: [index] for host, index in SLOW.items()}
    assert all(len(d["figures"]) == 2 for h in doc["slow_devices"] for d in h["devices"])
    # Each node's own list is still there behind the groups.
    node = next(n for n in doc["nodes"] if n["hostname"] == "node0005")
    assert {p["id"] for p in node["failing"]} == {"gpu.ecc"} and {p["id"] for p in node["warnings"]} == {"host.ulimits"}


def first_screen(text: str) -> list[str]:
    return text.splitlines()[:25]


def test_text_first_screen_is_the_verdict_and_three_groups_with_their_fixes(thousand: dict[str, Any]) -> None:
    proc = envcheck("fleet", str(thousand["dir"]))
    assert proc.returncode == 1
    screen = first_screen(proc.stdout)
    assert screen[1].startswith("[FAIL]") and "Not ready: 5 of 1000 nodes failing" in screen[1], screen
    groups = [line for line in screen if re.match(r"^\[(FAIL|warn)\]\s+(doctor|fleet|slow) ", line)]
    assert [g.split()[1:3] for g in groups] == [["doctor", "gpu.ecc"], ["slow", "GPU"], ["doctor", "host.ulimits"]]
    assert "on 3 nodes: node0005, node0017, node0099" in groups[0]
    assert "on 2 hosts: node0003 GPU 1, node0011 GPU 2" in groups[1]
    assert groups[2].endswith("on all 1000 nodes")  # a fleet-wide setting is one line, not 1 000
    joined = "\n".join(screen)
    assert "fix: Uncorrected ECC errors since boot" in joined and "run: ulimit -n 1048576" in joined
    # Each fix is said once in the whole report, not once per node.
    assert proc.stdout.count("ulimit -n 1048576") == 1
    assert "2 GPUs of NVIDIA H100 80GB HBM3 more than 10% below the fleet median of their model (4 figures)" in joined
    # The details follow: the failing nodes' own lists, nodes whose lists say the same word for word as one
    # (node0099 ran no bench: its list is its own).
    assert proc.stdout.index("\n[FAIL]  2 nodes: node0005, node0017  bench ok, doctor fail\n") > proc.stdout.index(
        "run: ulimit"
    )
    assert "\n[FAIL]  node0099  doctor fail\n" in proc.stdout


def test_markdown_and_html_show_the_same_three_groups(thousand: dict[str, Any], tmp_path: Path) -> None:
    md_path, html_path = tmp_path / "fleet.md", tmp_path / "fleet.html"
    assert envcheck("fleet", str(thousand["dir"]), "--output", str(md_path)).returncode == 1
    md = md_path.read_text()
    fix_first = md[md.index("### Fix first") : md.index("### Nodes")]
    rows = [line for line in fix_first.splitlines() if line.startswith("| ") and not line.startswith("| status")]
    assert len(rows) == 3
    assert "`doctor gpu.ecc fail`" in rows[0] and "on 3 nodes: node0005, node0017, node0099" in rows[0]
    assert "`slow GPU (NVIDIA H100 80GB HBM3)`" in rows[1] and "node0003 GPU 1" in rows[1]
    assert "`doctor host.ulimits warn`" in rows[2] and "on all 1000 nodes" in rows[2]
    assert md.count("ulimit -n 1048576") == 1
    assert envcheck("fleet", str(thousand["dir"]), "--output", str(html_path)).returncode == 1
    page = html_path.read_text()
    first = page[page.index('<section id="problems">') : page.index("</section>", page.index('id="problems"'))]
    assert first.count("<li>") == 3 and "on all 1000 nodes" in first and "nvidia-smi -q -d ECC" in first
    # The grouped problems come before everything else; each node's table is collapsed after them.
    nodes = page.index("<h2>Nodes</h2>")
    assert page.index('id="problems"') < page.index("<h2>Counts</h2>") < nodes
    assert page.index("<details>", nodes) < page.index("<table", nodes)
    assert page.count("ulimit -n 1048576") == 1


def test_a_rack_with_xid_79_on_three_nodes_reads_as_one_group(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """kernel.xid as the doctor writes it for a GPU that fell off the bus (the kernel log test's
    words), on 3 of 8 nodes, each naming its own GPU: one entry with its 3 nodes and one fix."""
    docs = {}
    for i in range(8):
        doc = as_node(small(real["h100x4"]), f"rack-{i}", uuid_prefix=f"rack-{i}")
        if i in (1, 4, 6):
            doc["checks"].append(
                {
                    "id": "kernel.xid",
                    "title": "Xid errors in the kernel log",
                    "status": "fail",
                    "summary": f"Xid 79 (GPU has fallen off the bus) on GPU {i % 4}: hardware inspection",
                    "fix": {
                        "text": "Drain the node; 2 or more reboots seen it",
                        "command": "sudo nvidia-bug-report.sh",
                    },
                }
            )
            doc["status"] = "fail"
        docs[f"rack-{i}"] = doc
    proc, doc = fleet(*write(tmp_path, docs))
    assert doc is not None and proc.returncode == 1
    xid = [g for g in doc["problems"] if g["id"] == "kernel.xid"]
    assert len(xid) == 1 and xid[0]["nodes"] == ["rack-1", "rack-4", "rack-6"] and len(xid[0]["fixes"]) == 1
    text = envcheck("fleet", *write(tmp_path / "again", docs)).stdout
    assert len([line for line in text.splitlines() if "kernel.xid fail on 3 nodes" in line]) == 1


def test_distinct_fixes_are_kept_with_their_nodes(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Nodes whose reports give the same check different fixes (two envcheck versions in one fleet): each
    fix is kept with its nodes, the most common first, and one past the few kept is only counted. The text's
    first screen says the first fix with the nodes it is for (it is not every node's) and where the others
    are; the details say each fix with its nodes, not the problem's words again."""
    docs = {}
    for i in range(8):
        doc = as_node(small(real["h100x4"]), f"n{i}", uuid_prefix=f"n{i}")
        for c in doc["checks"]:
            if c["id"] == "host.ulimits":
                c.update(status="warn", summary="low", fix={"text": f"fix {min(i, 4)}", "command": None})
        docs[f"n{i}"] = doc
    paths = write(tmp_path, docs)
    _, doc = fleet(*paths)
    assert doc is not None
    (group,) = [g for g in doc["problems"] if g["id"] == "host.ulimits"]
    assert [f["nodes"] for f in group["fixes"]] == [["n4", "n5", "n6", "n7"], ["n0"], ["n1"]]
    assert group["more_fixes"] == 2 and group["fix"]["text"] == "fix 4"
    text = envcheck("fleet", *paths).stdout
    first, details = text.split("More on the problems across the fleet")
    more = "(2 other fixes below, 2 more: each node's fix is in the JSON report)"
    assert f"on n4, n5, n6, n7:\n            fix: fix 4\n          {more}" in first
    assert "fix 0" not in first and text.count("host.ulimits warn on all 8 nodes") == 1
    assert "doctor host.ulimits warn (above): its other fixes, each with its nodes" in details
    for fix, nodes in (("fix 0", "n0"), ("fix 1", "n1")):
        assert f"on {nodes}:\n            fix: {fix}\n" in details
    assert "fix 4" not in details  # said above, with its nodes
    assert "and 2 other fixes: each node's fix is in the JSON report" in details


def test_noisy_figures_are_listed_apart_and_never_compared(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """node2's figures are 40 % lower but their samples spread too widely (the bench marked them noisy):
    not compared, so not slow, and listed apart with why."""
    docs = {}
    for host in ("node1", "node2", "node3"):
        doc = as_node(real["bench_cpu"], host)
        for r in doc["results"]:
            r["noisy"] = host == "node2"
            if host == "node2":
                r["value"] *= 0.6
        docs[host] = doc
    proc, doc = fleet(*write(tmp_path, docs))
    assert doc is not None and doc["slow_cpus"] == [] and proc.returncode == 0, proc.stderr
    assert {(c["hostname"], c["why"]) for c in doc["contended"]} == {("node2", "noisy")}
    assert doc["summary"]["noisy"] == 2 and "2 noisy figures not compared" in doc["summary"]["text"]
    text = envcheck("fleet", *write(tmp_path / "again", docs)).stdout
    assert "Not compared: too noisy to judge by" in text and "  node2 cpu: matmul.fp32, memory.d2d" in text
    page = envcheck("fleet", str(tmp_path / "again"), "--format", "html").stdout
    assert "<h3>Not compared: too noisy to judge by" in page and "noisy figures, not compared" in page


# -- --since ------------------------------------------------------------------------------------------------


def test_since_a_previous_run(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Two runs of a 40-node fleet. Between them node0005's ECC failure was fixed, node0030 started to fail
    gpu.ecc, node0039 vanished, node0040 appeared, node0003's slow GPU is back to its siblings' pace, and
    one card (node0002's GPU 0) moved to node0040 and is now 15 % slower than it was there, which makes it
    a slow GPU there (the other benched GPUs unchanged)."""
    before = fleet_docs(real, 40)
    first = tmp_path / "first.json"
    proc = envcheck("fleet", str(_dir(tmp_path / "run1", before)), "--output", str(first))
    assert proc.returncode == 1 and json.loads(first.read_text())["figures"]
    after = copy.deepcopy(before)
    for c in after["node0005/doctor"]["checks"]:
        if c["id"] == "gpu.ecc":
            c.update(status="ok", summary="no ECC errors", fix=None)
    after["node0005/doctor"].update(status="warn", exit_code=0)
    after["node0030/doctor"]["checks"] = copy.deepcopy(after["node0017/doctor"]["checks"])
    del after["node0039/doctor"]
    for r in after["node0003/bench"]["results"]:
        if r["device"] == f"cuda:{SLOW['node0003']}":
            r["value"] /= 0.8
    moved = after.pop("node0002/bench")
    card = next(d for d in moved["devices"] if d["index"] == 0)
    moved["host"]["hostname"] = "node0040"
    moved["results"] = [r for r in moved["results"] if r["device"] == card["name"]]
    moved["devices"] = [card]
    for r in moved["results"]:
        r["value"] *= 0.85
    after["node0040/bench"] = moved
    proc, doc = fleet(str(_dir(tmp_path / "run2", after)), "--since", str(first))
    assert doc is not None, proc.stderr
    since = doc["since"]
    assert [(g["id"], g["nodes"]) for g in since["new"]] == [("gpu.ecc", ["node0030"]), ("slow.gpu", ["node0040"])]
    # (in the order the previous report's nodes listed them)
    assert [(g["id"], g["nodes"]) for g in since["resolved"]] == [("slow.gpu", ["node0003"]), ("gpu.ecc", ["node0005"])]
    assert since["resolved"][0]["summary"] == f"slow GPU {SLOW['node0003']} (below the fleet median)"
    assert (since["appeared"], since["vanished"]) == (["node0040"], ["node0039"])
    assert {(s["device"], s["hostname"], s["previous_hostname"]) for s in since["slower"]} == {
        (card["uuid"], "node0040", "node0002")
    }
    assert all(s["fall"] == pytest.approx(0.15, abs=1e-3) for s in since["slower"]) and len(since["slower"]) == 2
    text = envcheck("fleet", str(tmp_path / "run2"), "--since", str(first)).stdout
    screen = "\n".join(first_screen(text))
    assert (
        "2 new failures on 2 nodes, 2 resolved failures on 2 nodes, 1 node appeared, 1 node vanished, "
        "1 device slower in 2 figures" in screen
    )
    assert "NEW doctor gpu.ecc fail on 1 node: node0030" in text and "VANISHED 1 node: node0039" in text
    # and "Fix first" says which of a problem's nodes are new
    assert "doctor gpu.ecc fail on 2 nodes: node0017, node0030 (new since the previous report on node0030)" in text
    for form in ("markdown", "html"):
        said = envcheck("fleet", str(tmp_path / "run2"), "--since", str(first), "--format", form).stdout
        assert "node0017, node0030 (new since the previous report on node0030)" in said, form
    # a node that no longer reports is in the verdict, as a slower card is
    assert (
        "1 node vanished since the previous report, 1 device slower than in the previous report" in text.splitlines()[1]
    )
    assert "1 node vanished since the previous report" in doc["summary"]["text"]
    assert f"SLOWER {card['uuid']} on node0040 (was on node0002)" in text
    assert text.count("SLOWER ") == 1  # one card, two figures: one line naming both
    assert all(f"{s['id']} " in text.split("SLOWER ")[1].splitlines()[0] for s in since["slower"])


def _dir(directory: Path, docs: dict[str, dict[str, Any]]) -> Path:
    write(directory, docs)
    return directory


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            '{"schema": "envcheck.doctor/1", "nodes": []}',
            "is not an envcheck fleet report (its schema is envcheck.doctor/1)",
        ),
        ('{"schema": "envcheck.fleet/2", "nodes": []}', "is a fleet report of a newer envcheck (envcheck.fleet/2;"),
        ("[1, 2", "is truncated: the JSON ends before the document does"),
        ('{"schema": "envcheck.fleet/1", "nodes": [', "is truncated"),
        ('{"a": 1} and more', "is not one JSON document: more follows it at line 1, column 10"),
        (
            '{"schema": "envcheck.fleet/1", "nodes": []}\nstray line\n',
            "is not one JSON document: more follows it at line 2",
        ),
        ("\n\n", "is empty"),
        ("[]", "is not an envcheck fleet report (it has no envcheck schema)"),
    ],
)
def test_since_refuses_what_is_not_a_fleet_report(
    real: dict[str, dict[str, Any]], tmp_path: Path, content: str, words: str
) -> None:
    previous = tmp_path / "previous.json"
    previous.write_text(content)
    paths = write(tmp_path / "n", {"n": as_node(real["h100x4"], "n")})
    proc = envcheck("fleet", *paths, "--since", str(previous))
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert words in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    missing = envcheck("fleet", *paths, "--since", str(tmp_path / "gone.json"))
    assert missing.returncode == 2 and "cannot read --since" in missing.stderr and "Traceback" not in missing.stderr
    # read as a source is: a FIFO nobody writes to, or /dev/zero, is refused at once, never waited on or
    # read into memory
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for odd, words in ((fifo, "it is a FIFO or pipe"), ("/dev/zero", "it is a character device")):
        proc = envcheck("fleet", *paths, "--since", str(odd))
        assert proc.returncode == 2 and f"cannot read --since {odd}: {words}" in proc.stderr, proc.stderr


# -- what the details leave out: each thing said once ------------------------------------------------------


def test_a_gpu_slow_in_two_figures_is_one_slow_device_in_every_nodes_list(thousand: dict[str, Any]) -> None:
    """node0003's GPU 1 is slow in both benchmarks: each format's per-node list counts it as one slow
    device and the text names it once, with both figures."""
    from envcheck.fleet.render import fleet_markdown, fleet_nodes

    doc = thousand["doc"]
    node = next(n for n in doc["nodes"] if n["hostname"] == "node0003")
    assert len(node["slow"]) == 2  # two figures of one card
    row = next(line for line in fleet_markdown(doc) if line.startswith("| `node0003` |"))  # the Nodes table's
    assert row.endswith("| 0 | 1 | 1 |"), row  # failing, warnings, slow devices
    page = fleet_nodes(doc)
    cells = page[page.index("<code>node0003</code>") :].split("</tr>")[0]
    assert cells.endswith('<td class="n" data-label="slow devices">1</td>'), cells
    text = envcheck("fleet", str(thousand["dir"])).stdout
    own = text[text.index("node0003  ") :].split("\n\n")[0].splitlines()
    slow = [line for line in own if "slow GPU" in line]
    assert len(slow) == 1 and "slow GPU 1: " in slow[0], own
    assert all(f"{c['id']} 20%" in slow[0] for c in node["slow"]), slow


#: The checks that warn on one node only, each with its own fix: with the fleet-wide failure, more
#: problems than the text's first screen holds.
ONE_NODE_WARNINGS = ("gpu.temperature", "gpu.power", "gpu.throttle", "gpu.pcie", "gpu.persistence")


def test_nodes_whose_every_problem_is_fleet_wide_are_one_line_and_no_problem_is_said_twice(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Every node fails host.ulimits (a fleet-wide setting), and n7 alone also warns five other checks.
    The seven nodes with only the fleet-wide failure are named in one line, not a section each repeating
    it; the problem that does not fit the first screen follows it, and the ones shown are not said again."""
    docs = {}
    for i in range(8):
        doc = as_node(small(real["h100x4"]), f"n{i}", uuid_prefix=f"n{i}")
        assert {c["id"] for c in doc["checks"]} >= {"host.ulimits", *ONE_NODE_WARNINGS}
        for c in doc["checks"]:
            if c["id"] == "host.ulimits":
                c.update(status="fail", summary="open files limit 1024 is below 65536", fix=dict(ULIMITS_FIX))
            if i == 7 and c["id"] in ONE_NODE_WARNINGS:
                c.update(status="warn", summary=f"odd {c['id']}", fix={"text": f"see {c['id']}", "command": "true"})
        doc.update(status="fail", exit_code=1)
        docs[f"n{i}"] = doc
    write(tmp_path, docs)
    proc = envcheck("fleet", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    text = proc.stdout
    assert "[FAIL]  7 nodes with only the problems every node shares (above): n0, n1, n2, n3, n4, n5, n6" in text
    assert not [line for line in text.splitlines() if re.match(r"\[FAIL\]\s+n[0-6]\s", line)]
    assert "n7  doctor fail" in text and text.count("host.ulimits: open files limit") == 1  # n7's own list
    assert "... and 1 more problem below" in text
    for check in ("host.ulimits fail on all 8 nodes", *(f"{c} warn on 1 node: n7" for c in ONE_NODE_WARNINGS)):
        assert len([line for line in text.splitlines() if check in line]) == 1, check
    md = envcheck("fleet", str(tmp_path), "--format", "markdown").stdout
    own = md[md.index("### Failing checks and warnings") :].split("\n\n")[1].splitlines()[2:]
    assert len(own) == 6 and all(line.startswith("| `n7` |") for line in own), own
    # As in the text: a row for n7 alone, the seven others one line of names
    rows = md[md.index("### Nodes") :].split("\n\n")[1].splitlines()[2:]
    assert len(rows) == 1 and rows[0].startswith("| `n7` | ❌ fail |"), rows
    assert "- ❌ fail 7 nodes with only the problems every node shares (above): n0, n1, n2, n3, n4, n5, n6" in md


def test_a_problem_every_node_has_in_its_own_words_keeps_each_nodes_words(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Every node fails gpu.ecc, six of them on GPU 5 and two each on its own GPU with its own fix. The group
    shows each wording with the nodes that say it (one wording shown for all would send an admin to the
    wrong GPU on the others), and the fixes after the first say whose they are. The two odd nodes keep their
    own lists; the six that say what most say are one line, as a problem every node shares is."""
    docs = {}
    for i in range(8):
        doc = as_node(small(real["h100x4"]), f"n{i}", uuid_prefix=f"n{i}")
        for c in doc["checks"]:
            if c["id"] == "gpu.ecc":
                gpu = 5 if i >= 2 else i  # n2..n7 on GPU 5: the most common fix
                c.update(status="fail", summary=f"GPU {gpu}: uncorrected ECC errors", fix={"text": f"drain GPU {gpu}"})
        doc.update(status="fail", exit_code=1)
        docs[f"n{i}"] = doc
    write(tmp_path, docs)
    _, doc = fleet(str(tmp_path))
    assert doc is not None
    (group,) = [g for g in doc["problems"] if g["id"] == "gpu.ecc"]
    assert group["count"] == 8 and group["wordings"] == 3
    assert group["summary"] == "GPU 5: uncorrected ECC errors" and group["fix"]["text"] == "drain GPU 5"
    assert group["odd"] == ["n0", "n1"]
    text = envcheck("fleet", str(tmp_path)).stdout
    assert "6 nodes with only the problems every node shares (above): n2, n3, n4, n5, n6, n7" in text
    for i in range(2):  # each odd node's own words, under its own name
        assert re.search(rf"^\S+\s+n{i}\s+doctor fail\n\s+\S+\s+doctor gpu.ecc: GPU {i}:", text, re.M), i
    assert group["words"] == [
        {"summary": "GPU 5: uncorrected ECC errors", "nodes": ["n2", "n3", "n4", "n5", "n6", "n7"]},
        {"summary": "GPU 0: uncorrected ECC errors", "nodes": ["n0"]},
        {"summary": "GPU 1: uncorrected ECC errors", "nodes": ["n1"]},
    ]
    first = text[text.index("Fix first") :]
    assert (
        "on all 8 nodes\n"
        "          on n2, n3, n4, n5, n6, n7: GPU 5: uncorrected ECC errors\n"
        "          on n0: GPU 0: uncorrected ECC errors\n"
        "          on n1: GPU 1: uncorrected ECC errors\n"
    ) in first
    assert "(2 other fixes below)" in text and "other wording" not in text
    md = envcheck("fleet", str(tmp_path), "--format", "markdown").stdout
    row = next(line for line in md.splitlines() if "`doctor gpu.ecc fail`" in line)
    assert "on n2, n3, n4, n5, n6, n7: drain GPU 5<br>on n0: drain GPU 0<br>on n1: drain GPU 1" in row
    assert "<br>on n0: GPU 0: uncorrected ECC errors<br>on n1: GPU 1: uncorrected ECC errors" in row
    page = envcheck("fleet", str(tmp_path), "--format", "html").stdout
    assert "<br>on n0: GPU 0: uncorrected ECC errors<br>on n1: GPU 1: uncorrected ECC errors" in page
    # a fourth wording is counted, each node's list saying it
    docs["n8"] = copy.deepcopy(docs["n1"])
    docs["n8"]["host"]["hostname"] = "n8"
    for c in docs["n8"]["checks"]:
        if c["id"] == "gpu.ecc":
            c["summary"] = "GPU 3: uncorrected ECC errors"
    text = envcheck("fleet", *write(tmp_path / "more", docs)).stdout
    assert "          (and 1 other wording: each node's own list)\n" in text
    own = md[md.index("### Failing checks and warnings") :]
    assert all((f"| `n{i}` | doctor | `gpu.ecc` |" in own) == (i < 2) for i in range(8))


def test_a_hand_edited_previous_report_with_odd_values_inside_is_compared_or_passed_over(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A previous report edited by hand: a failing item's words, a report's kind or a node's name made a
    list, a dict, a number or null. Each is still compared with (what cannot be matched is passed over),
    never an internal error: through the command once, then each edit through the comparison itself."""
    from envcheck.fleet.since import changes, check_previous

    docs = fleet_docs(real, 6)
    first = tmp_path / "first.json"
    envcheck("fleet", str(_dir(tmp_path / "run", docs)), "--output", str(first))
    base = json.loads(first.read_text())
    failing = next(n for n in base["nodes"] if n["failing"])
    edits = [("hostname", None, odd) for odd in ([], {}, 7, None)]
    for odd in ([], {}, 7, None):
        edits += [("failing", key, odd) for key in ("report", "id", "status", "summary")]
        edits += [("reports", key, odd) for key in ("kind", "source", "status")]
    for i, (part, key, odd) in enumerate(edits):
        doc = copy.deepcopy(base)
        node = next(n for n in doc["nodes"] if n["hostname"] == failing["hostname"])
        if part == "hostname":
            node["hostname"] = odd
        else:
            node[part][0][key] = odd
        edited = json.dumps(doc).encode()
        since = changes(check_previous(edited, "edited.json"), base, 0.1)
        assert all(isinstance(since[k], list) for k in ("new", "resolved", "appeared", "vanished")), (part, key)
        if i == 0:
            (tmp_path / "edited.json").write_bytes(edited)
            proc, out = fleet(str(tmp_path / "run"), "--since", str(tmp_path / "edited.json"))
            assert out is not None and "internal error" not in proc.stderr, proc.stderr


def test_a_previous_report_read_in_part_compares_as_one_read_whole(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The previous report is decoded in part (only what the comparison reads, each text kept once): it
    compares as the whole document does, a document the typed decoder refuses (a node that is not an
    object, a report that is a string, NaN, UTF-16) is read whole, and neither is an internal error."""
    from envcheck.fleet.since import changes, check_previous

    docs = fleet_docs(real, 6)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    envcheck("fleet", str(_dir(tmp_path / "run", docs)), "--output", str(first))
    for key in [k for k in docs if k.endswith("/doctor")]:
        for c in docs[key]["checks"]:
            if c["id"] == "gpu.ecc" and c["status"] == "fail":  # the ECC fixed: resolved, since the first
                c.update(status="ok", fix=None)
                docs[key]["status"], docs[key]["exit_code"] = "warn", 0
    del docs["node0000/bench"]  # and a report gone
    envcheck("fleet", str(_dir(tmp_path / "run2", docs)), "--output", str(second))
    base, now = json.loads(first.read_text()), json.loads(second.read_text())
    whole = changes(check_previous(first.read_text(), "p"), now, 0.1)
    assert whole["resolved"] and changes(check_previous(first.read_bytes(), "p"), now, 0.1) == whole
    odd = [("nodes", 0, "a node as a string"), ("reports", 0, "a report as a string"), ("figures", None, math.nan)]
    for part, at, value in odd:
        doc = copy.deepcopy(base)
        if part == "nodes":
            doc["nodes"].append(value)
        elif part == "reports":
            doc["nodes"][at]["reports"][0] = value
        else:
            doc["figures"]["values"][next(iter(doc["figures"]["values"]))][0] = value
        text = json.dumps(doc)
        said = changes(check_previous(text.encode(), "p"), now, 0.1)
        assert said == changes(check_previous(text, "p"), now, 0.1), part
        assert said["resolved"] == whole["resolved"], part
    wide = json.dumps(base).encode("utf-16")
    assert changes(check_previous(wide, "p"), now, 0.1) == whole


def test_since_says_only_what_changed_in_the_singular_where_one() -> None:
    """The one-line count leaves out what did not change ("0 nodes appeared") and says one as one ("1 node
    appeared"); with nothing changed, it says what it compared (a node's warnings are not among it)."""
    from envcheck.fleet.render import since_line

    previous = {"source": "monday.json", "generated_at": "2025-01-06T08:00:00Z"}
    group = {"report": "doctor", "id": "gpu.ecc", "status": "fail"}
    since = {
        "previous": previous,
        "new": [{**group, "count": 2, "nodes": ["a", "b"]}],
        "resolved": [],
        "appeared": ["c"],
        "vanished": [],
        "slower": [],
    }
    assert since_line(since) == "Since monday.json (2025-01-06T08:00:00Z): 1 new failure on 2 nodes, 1 node appeared"
    nothing = {"previous": previous, "new": [], "resolved": [], "appeared": [], "vanished": [], "slower": []}
    assert since_line(nothing).endswith(": no failure new or resolved, no node came or went, no device slower")
    # a previous report that keeps no figures (written before the fleet kept them, or of no bench) cannot
    # say that no device got slower
    unknown = {**nothing, "previous": {**previous, "figures_known": False}}
    assert since_line(unknown).endswith(
        ": no failure new or resolved, no node came or went; figures not compared (the previous report keeps none)"
    )
    assert since_line({**since, "previous": unknown["previous"]}).endswith(
        ": 1 new failure on 2 nodes, 1 node appeared; figures not compared (the previous report keeps none)"
    )
    # one that keeps figures as the fleet writes them, and kept none: its run measured none
    none_measured = {**nothing, "previous": {**previous, "figures_known": False, "figures_kept": True}}
    assert since_line(none_measured).endswith(
        ": no failure new or resolved, no node came or went; figures not compared (the previous report measured none)"
    )


def test_a_host_bound_figure_is_charted_but_never_judged_slow(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """A host copy depends on the CPU socket the worker ran on, and the bench marks it host-bound (it
    compares none among a node's GPUs): across the fleet it is charted, never a slow GPU. The same
    shortfall in a device-bound figure is."""
    assert all(r["host_bound"] is False for r in real["bench_cpu"]["results"])  # the bench writes the mark
    docs = {}
    for i in range(4):
        doctor = as_node(small(real["h100x4"]), f"n{i}", uuid_prefix=f"n{i}")
        bench = gpu_bench(real["bench_cpu"], doctor)
        d2d = [r for r in bench["results"] if r["id"] == "memory.d2d"]
        bench["results"] += [{**r, "id": "memory.h2d_pinned", "host_bound": True} for r in d2d]
        for r in bench["results"]:
            if i == 0 and r["device"] == "cuda:1" and r["id"] in ("memory.h2d_pinned", "matmul.fp32"):
                r["value"] *= 0.7
            if i == 3 and r["id"] == "matmul.fp32":  # one hand-edited report cannot switch off a judgement
                r["host_bound"] = True
        docs[f"n{i}/doctor"], docs[f"n{i}/bench"] = doctor, bench
    write(tmp_path, docs)
    _, doc = fleet(str(tmp_path))
    assert doc is not None
    assert {(f["hostname"], f["index"], f["id"]) for f in doc["slow_gpus"]} == {("n0", 1, "matmul.fp32")}
    charted = {c["id"]: c for c in doc["comparisons"]}
    assert charted["memory.h2d_pinned"]["host_bound"] is True and charted["memory.h2d_pinned"]["slow"] == 0
    assert min(charted["memory.h2d_pinned"]["values"]) < 0.8 * charted["memory.h2d_pinned"]["fleet_median"]
    assert charted["matmul.fp32"]["host_bound"] is False and charted["matmul.fp32"]["slow"] == 1
    assert charted["memory.h2d_pinned"]["slow_below"] is None  # no line for a chart to judge by
    page = tmp_path / "fleet.html"
    envcheck("fleet", str(tmp_path), "-o", str(page))
    assert "host-bound, not judged" in page.read_text(encoding="utf-8")


def test_a_fleet_wide_slowdown_since_the_previous_run_warns(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Every GPU 15 % slower than in the previous run (a driver rolled out everywhere): no median of this run
    shows it, every node passes, and the comparison with the previous run is what says it, as a warning in
    the verdict; the devices are named the worst first, a few of them, and the JSON lists every figure."""
    docs = {}
    for i in range(6):
        doctor = passing(real, f"n{i}")
        docs[f"n{i}/doctor"], docs[f"n{i}/bench"] = doctor, gpu_bench(real["bench_cpu"], doctor)
    first = tmp_path / "first.json"
    proc = envcheck("fleet", str(_dir(tmp_path / "run1", docs)), "--output", str(first))
    assert proc.returncode == 0, proc.stdout
    for name, doc in docs.items():
        if name.endswith("/bench"):
            for r in doc["results"]:
                r["value"] *= 0.85
    proc, doc = fleet(str(_dir(tmp_path / "run2", docs)), "--since", str(first))
    assert doc is not None and proc.returncode == 0, proc.stderr
    assert doc["slow_gpus"] == [] and doc["status"] == "warn" and doc["summary"]["verdict"] == "warnings"
    devices = {s["device"] for s in doc["since"]["slower"]}
    assert len(devices) == 24 and len(doc["since"]["slower"]) == 48
    # the line every format ends with (the HTML page's title) says it too
    assert doc["summary"]["text"].startswith("6 nodes: none failing, 24 devices slower than in the previous report (")
    assert {(s["id"], s["quick"]) for s in doc["since"]["slower"]} == {("matmul.fp32", True), ("memory.d2d", True)}
    text = envcheck("fleet", str(tmp_path / "run2"), "--since", str(first)).stdout
    assert "Ready, with warnings: 6 nodes, none failing; 24 devices slower than in the previous report" in text
    assert "24 devices slower in 48 figures" in text
    assert text.count("SLOWER ") == 20 and "... and 4 more devices slower (the JSON report lists all)" in text
    assert "matmul.fp32 --quick " in text


def test_a_fleet_benched_while_busy_lists_a_few_figures_apart_not_each(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Thirty nodes benched while other work held their CPUs: sixty figures on thirty devices set apart. Text,
    Markdown and HTML name the first twenty devices, each once with its figures, and count the rest; the
    JSON keeps every figure."""
    docs = {}
    for i in range(30):
        doc = as_node(real["bench_cpu"], f"n{i:02d}")
        for r in doc["results"]:
            r["contended"] = True
        docs[f"n{i:02d}"] = doc
    write(tmp_path, docs)
    _, doc = fleet(str(tmp_path))
    assert doc is not None and len(doc["contended"]) == 60
    text = envcheck("fleet", str(tmp_path)).stdout
    heading = "Not compared: taken while other work held the CPUs (60 figures on 30 devices)"
    listed = text[text.index(heading) :].splitlines()[1:22]
    assert listed[:20] == [f"  n{i:02d} cpu: matmul.fp32, memory.d2d" for i in range(20)]
    assert listed[20] == "  ... and 10 more devices (the JSON report lists every figure)"
    md = envcheck("fleet", str(tmp_path), "--format", "markdown").stdout
    assert f"### {heading}" in md and md.count(" | cpu | matmul.fp32, memory.d2d |") == 20
    assert "... and 10 more devices (the JSON report lists every figure)" in md
    page = envcheck("fleet", str(tmp_path), "--format", "html").stdout
    assert f"<h3>{heading}</h3>" in page and page.count(">matmul.fp32, memory.d2d</td>") == 20
    assert "... and 10 more devices" in page and "contended figures, not compared" in page


def test_a_problems_nodes_are_named_in_order_of_their_names(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """host.ulimits warns on both nodes; node-z also fails another check, so it comes first among the nodes.
    The problem names its nodes by name, as an admin looks for one, not in the order of their verdicts."""
    docs = {}
    for host in ("node-z", "node-a"):
        doc = as_node(small(real["h100x4"]), host, uuid_prefix=host)
        for c in doc["checks"]:
            if c["id"] == "host.ulimits":
                c.update(status="warn", summary="low", fix=dict(ULIMITS_FIX))
            if c["id"] == "gpu.ecc" and host == "node-z":
                c.update(status="fail", summary="ECC", fix={"text": "drain"})
        docs[host] = doc
    _, doc = fleet(*write(tmp_path, docs))
    assert doc is not None and [n["hostname"] for n in doc["nodes"]] == ["node-z", "node-a"]
    (group,) = [g for g in doc["problems"] if g["id"] == "host.ulimits"]
    assert group["nodes"] == ["node-a", "node-z"] and group["fixes"][0]["nodes"] == ["node-a", "node-z"]


def test_a_node_one_gpu_short_of_its_models_fleet_warns(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """n2's doctor sees 3 of its 4 H100s (one fell off the bus) and passes its own checks: the fleet, where
    most nodes of the model have 4, warns on it with what to look for. A fleet of mixed sizes, where no
    count is most nodes', warns of nothing."""
    docs = {}
    for i in range(4):
        doc = as_node(small(real["h100x4"]), f"n{i}", uuid_prefix=f"n{i}")
        doc["checks"] = [c for c in doc["checks"] if c["status"] == "ok"]
        doc.update(status="ok", exit_code=0)
        if i == 2:
            doc["gpus"] = doc["gpus"][:3]
        docs[f"n{i}"] = doc
    proc, doc = fleet(*write(tmp_path / "short", docs))
    assert doc is not None and proc.returncode == 0, proc.stderr
    (group,) = [g for g in doc["problems"] if g["id"] == "gpu.count"]
    assert (group["report"], group["status"], group["nodes"]) == ("fleet", "warn", ["n2"])
    assert group["summary"] == "3 GPUs (NVIDIA H100 80GB HBM3) where 3 of the 4 nodes with this model have 4"
    assert group["fix"]["command"] == "nvidia-smi -L"
    assert node_of(doc, "n2")["status"] == "warn" and node_of(doc, "n0")["status"] == "ok"
    text = envcheck("fleet", str(tmp_path / "short")).stdout
    assert "[warn]  fleet gpu.count warn on 1 node: n2" in text
    docs["n3"]["gpus"] = docs["n3"]["gpus"][:3]  # two of four with 3: a fleet of two sizes
    _, mixed = fleet(*write(tmp_path / "mixed", docs))
    assert mixed is not None and not [g for g in mixed["problems"] if g["id"] == "gpu.count"]


def node_of(doc: dict[str, Any], hostname: str) -> dict[str, Any]:
    return next(n for n in doc["nodes"] if n["hostname"] == hostname)


def test_a_warning_on_all_but_a_few_nodes_is_said_once_naming_the_nodes_without_it(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """host.ulimits warns on 11 of 12 nodes (n07's limit was raised): said once as on all but n07, and the
    11 nodes whose only item it is are one line, not a section each; n07, ok, is among the healthy. On 8
    of 12 it is an ordinary problem, its nodes each in their section."""

    def fleet_of(warned: set[int]) -> Path:
        docs = {}
        for i in range(12):
            doc = as_node(small(real["h100x4"]), f"n{i:02d}", uuid_prefix=f"n{i:02d}")
            doc["checks"] = [c for c in doc["checks"] if c["status"] == "ok" or c["id"] == "host.ulimits"]
            for c in doc["checks"]:
                if c["id"] == "host.ulimits":
                    ok = i not in warned
                    c.update(status="ok" if ok else "warn", summary="open files limit 1024 is below 65536")
                    c["fix"] = None if ok else dict(ULIMITS_FIX)
            doc.update(status="ok" if i not in warned else "warn", exit_code=0)
            docs[f"n{i:02d}"] = doc
        directory = tmp_path / f"fleet{len(warned)}"
        write(directory, docs)
        return directory

    text = envcheck("fleet", str(fleet_of(set(range(12)) - {7}))).stdout
    assert "[warn]  doctor host.ulimits warn on 11 of 12 nodes: all but n07\n" in text
    assert (
        "11 nodes with only the warnings nearly every node shares (above): n00, n01, n02, n03, n04, n05, n06, n08"
        in text
    )
    assert "1 node ok: n07" in text and not re.search(r"^\S+\s+n00\s+doctor", text, re.M)
    md = envcheck("fleet", str(tmp_path / "fleet11"), "--format", "markdown").stdout
    assert "on 11 of 12 nodes: all but n07" in md and "nearly every node shares (above)" in md
    text = envcheck("fleet", str(fleet_of(set(range(8))))).stdout
    assert "warn on 8 nodes: n00, n01, n02, n03, n04, n05, n06, n07" in text and "all but" not in text
    # not nearly every node's: said in the nodes' own lists, the eight alike as one
    assert "\n[warn]  8 nodes: n00, n01, n02, n03, n04, n05, n06, n07  doctor warn\n" in text
    md = envcheck("fleet", str(tmp_path / "fleet8"), "--format", "markdown").stdout
    rows = [line for line in md.splitlines() if line.startswith("| 8 nodes: n00, n01, n02, n03, n04, n05, n06, n07 |")]
    assert len(rows) == 2 and "| doctor ok |" not in md, rows  # its row among the nodes, and its warning's


def test_words_that_differ_in_a_number_alone_are_one_problem_said_once(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Every node warns host.ulimits with its own number and the same fix: that is one fleet-wide setting,
    said once, not a section per node (only words naming a different device on each node are shown
    node by node), in words true of each node: the numbers that differ as their span."""
    docs = {}
    for i in range(6):
        doc = as_node(small(real["h100x4"]), f"n{i}", uuid_prefix=f"n{i}")
        for c in doc["checks"]:
            if c["id"] == "host.ulimits":
                c.update(status="warn", summary=f"open files limit {1024 + i} is below 65536", fix=dict(ULIMITS_FIX))
        docs[f"n{i}"] = doc
    write(tmp_path, docs)
    _, doc = fleet(str(tmp_path))
    assert doc is not None
    (group,) = [g for g in doc["problems"] if g["id"] == "host.ulimits"]
    assert group["wordings"] == 6 and group["own_words"] is False
    assert group["summary"] == "open files limit 1024 is below 65536"  # the first node's, as it said them
    assert group["said"] == "open files limit 1024–1029 is below 65536"
    text = envcheck("fleet", str(tmp_path)).stdout
    assert "6 nodes with only the warnings every node shares (above): n0, n1, n2, n3, n4, n5" in text
    assert "open files limit 1024–1029 is below 65536" in text
    assert "open files limit 1024 is below" not in text and "other wording" not in text
    assert not re.search(r"^\S+\s+n0\s+doctor", text, re.M)


def test_since_follows_each_slow_device_and_resolves_only_what_was_measured_again(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """node0003's GPU 1 is back to pace while its GPU 2 turned slow: one resolved, one new, on the same
    node. node0011's bench report is missing from the next run: its slow GPU was not measured, so it is not
    resolved; nor is a doctor failure resolved on a node whose doctor report is missing."""
    before = fleet_docs(real, 20)
    first = tmp_path / "first.json"
    envcheck("fleet", str(_dir(tmp_path / "run1", before)), "--output", str(first))
    after = copy.deepcopy(before)
    for r in after["node0003/bench"]["results"]:
        if r["device"] == "cuda:1":
            r["value"] /= 0.8
        if r["device"] == "cuda:2":
            r["value"] *= 0.8
    del after["node0011/bench"]
    del after["node0005/doctor"]  # node0005 failed gpu.ecc; without its doctor report nothing says it is fixed
    proc, doc = fleet(str(_dir(tmp_path / "run2", after)), "--since", str(first))
    assert doc is not None, proc.stderr
    since = doc["since"]
    assert [(g["id"], g["summary"], g["nodes"]) for g in since["new"]] == [
        ("slow.gpu", "slow GPU 2 (below the fleet median)", ["node0003"])
    ]
    assert [(g["id"], g["summary"], g["nodes"]) for g in since["resolved"]] == [
        ("slow.gpu", "slow GPU 1 (below the fleet median)", ["node0003"])
    ]
    text = envcheck("fleet", str(tmp_path / "run2"), "--since", str(first)).stdout
    assert "RESOLVED fleet slow.gpu fail: slow GPU 1 (below the fleet median) on 1 node: node0003" in text
    # node0003's slow GPU 2 is swapped with node0007's GPU 3: the slow card is on node0007 now, still slow,
    # and node0003's new card is at pace. It is one card, followed by its UUID: neither resolved on
    # node0003 nor new on node0007.
    second = tmp_path / "second.json"
    envcheck("fleet", str(tmp_path / "run2"), "--output", str(second))
    swapped = copy.deepcopy(after)
    a, b = swapped["node0003/bench"], swapped["node0007/bench"]
    card_a = next(d for d in a["devices"] if d["name"] == "cuda:2")
    card_b = next(d for d in b["devices"] if d["name"] == "cuda:3")
    card_a["uuid"], card_b["uuid"] = card_b["uuid"], card_a["uuid"]
    slow_values = {r["id"]: r["value"] for r in a["results"] if r["device"] == "cuda:2"}
    for r in a["results"]:
        if r["device"] == "cuda:2":
            r["value"] /= 0.8
    for r in b["results"]:
        if r["device"] == "cuda:3":
            r["value"] = slow_values[r["id"]]
    for node in ("node0003", "node0007"):  # the doctor reports see the swapped cards too
        gpus = {g["index"]: g for g in swapped[f"{node}/doctor"]["gpus"]}
        gpus[2 if node == "node0003" else 3]["uuid"] = (card_a if node == "node0003" else card_b)["uuid"]
    proc, doc = fleet(str(_dir(tmp_path / "run3", swapped)), "--since", str(second))
    assert doc is not None, proc.stderr
    assert {(f["hostname"], f["index"]) for f in doc["slow_gpus"]} == {("node0007", 3)}
    assert [g for g in doc["since"]["new"] if g["id"] == "slow.gpu"] == []
    assert [g for g in doc["since"]["resolved"] if g["id"] == "slow.gpu"] == []
    # but the move is said: the card the admin was told of is on another node now
    moved = {"device": card_b["uuid"], "previous_hostname": "node0003", "hostname": "node0007"}
    assert doc["since"]["moved"] == [moved]
    text = envcheck("fleet", str(tmp_path / "run3"), "--since", str(second)).stdout
    assert f"MOVED slow {card_b['uuid']} from node0003 to node0007: the same card, still slow" in text
    assert "1 slow device moved to another node" in text


def test_a_superseded_report_neither_judges_nor_measures_nor_names_a_value(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """n0 keeps last week's doctor and bench reports beside today's. Today's decide everything: its GPU 1,
    30 % slow today but fine last week, is slow; last week's driver is no drift. Two machines answering
    to one name (no GPU in common) are not one machine's old and new report: both count."""
    docs: dict[str, dict[str, Any]] = {}
    for i in range(4):
        doctor = as_node(small(real["h100x4"]), f"n{i}", uuid_prefix=f"n{i}")
        doctor["checks"] = [c for c in doctor["checks"] if c["status"] == "ok"]
        doctor.update(status="ok", exit_code=0, generated_at="2026-12-07T08:00:00+00:00")
        bench = gpu_bench(real["bench_cpu"], doctor)
        bench["generated_at"] = "2026-12-07T08:05:00+00:00"
        docs[f"n{i}/doctor"], docs[f"n{i}/bench"] = doctor, bench
    old_doctor, old_bench = copy.deepcopy(docs["n0/doctor"]), copy.deepcopy(docs["n0/bench"])
    old_doctor.update(generated_at="2026-11-30T08:00:00+00:00")
    old_doctor["driver"]["version"] = "535.0"
    old_bench["generated_at"] = "2026-11-30T08:05:00+00:00"
    docs["n0/doctor-old"], docs["n0/bench-old"] = old_doctor, old_bench
    for r in docs["n0/bench"]["results"]:
        if r["device"] == "cuda:1":
            r["value"] *= 0.7
    proc, doc = fleet(*write(tmp_path / "a", docs))
    assert doc is not None and proc.returncode == 1, proc.stderr
    assert {(f["hostname"], f["index"]) for f in doc["slow_gpus"]} == {("n0", 1)}
    assert "driver.version" not in {d["field"] for d in doc["drift"]}
    # another machine named n9, its GPUs its own, failing last week: not superseded by today's n9
    other = as_node(real["ecc"], "n9", uuid_prefix="elsewhere")
    other["generated_at"] = "2026-11-30T08:00:00+00:00"
    today = as_node(small(real["h100x4"]), "n9", uuid_prefix="n9")
    today["checks"] = [c for c in today["checks"] if c["status"] == "ok"]
    today.update(status="ok", exit_code=0, generated_at="2026-12-07T08:00:00+00:00")
    _, two = fleet(*write(tmp_path / "b", {"today": today, "other": other}))
    assert two is not None and two["nodes"][0]["status"] == "fail"
    assert two["duplicates"]["hosts"][0]["newest"] is None


def test_a_node_without_the_report_most_nodes_have_is_not_ok(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Five nodes with a doctor and a bench report; n3's bench is missing and n4's was cut off by a full
    disk. Neither node reads "ok" on its doctor alone: each warns that its bench report is missing, as one
    problem across the fleet. A kind only a minority runs (one node's burn) warns of nothing."""
    docs: dict[str, dict[str, Any]] = {}
    for i in range(5):
        doctor = passing(real, f"n{i}")
        docs[f"n{i}/doctor"] = doctor
        if i != 3:
            docs[f"n{i}/bench"] = gpu_bench(real["bench_cpu"], doctor)
    docs["n0/burn"] = as_node(real["burn_cpu"], "n0")
    write(tmp_path, docs)
    truncated = tmp_path / "n4" / "bench.json"
    truncated.write_text(truncated.read_text()[:5000])
    proc, doc = fleet(str(tmp_path))
    assert doc is not None and proc.returncode == 0, proc.stderr
    (group,) = [g for g in doc["problems"] if g["report"] == "fleet"]  # (the real burn may warn of this machine)
    assert (group["report"], group["id"], group["status"], group["nodes"]) == (
        "fleet",
        "report.missing",
        "warn",
        ["n3", "n4"],
    )
    assert group["summary"] == "no bench report, where 3 of the 5 nodes have one"
    assert group["fix"]["command"] == "envcheck bench --json"
    statuses = {n["hostname"]: n["status"] for n in doc["nodes"]}
    assert statuses["n3"] == statuses["n4"] == "warn" and statuses["n1"] == statuses["n2"] == "ok"


def test_a_cloned_nodes_report_is_a_problem_not_a_healthy_node(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """n3's report copied as n9's (only the host name changed): its eight GPUs' UUIDs are n3's. Both nodes
    warn, as one problem with one wording, and neither reads as a healthy node."""
    docs: dict[str, dict[str, Any]] = {}
    for i in range(4):
        doctor = passing(real, f"n{i}")
        docs[f"n{i}"] = doctor
    clone = copy.deepcopy(docs["n3"])
    clone["host"]["hostname"] = "n9"
    docs["n9"] = clone
    proc, doc = fleet(*write(tmp_path, docs))
    assert doc is not None and proc.returncode == 0, proc.stderr
    (group,) = doc["problems"]
    gpus = len(clone["gpus"])
    assert (group["id"], group["status"], group["nodes"], group["wordings"]) == ("gpu.shared", "warn", ["n3", "n9"], 1)
    assert (
        group["summary"]
        == f"{gpus} GPU UUIDs in the reports of n3 and n9 alike: a copied report, or cards moved between them"
    )
    assert {n["hostname"]: n["status"] for n in doc["nodes"]} == {
        "n0": "ok",
        "n1": "ok",
        "n2": "ok",
        "n3": "warn",
        "n9": "warn",
    }
    assert len(doc["duplicates"]["gpus"]) == gpus


def test_a_node_of_mixed_gpus_one_short_warns_too(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Nodes of one A100 and three H100s; n1 lost an H100. Its model reads "1× ... + 2× ...", not the
    others' "1× ... + 3× ...": it is the same kind of node, one GPU short."""
    docs = {}
    for i in range(3):
        doc = as_node(small(real["h100x4"]), f"n{i}", uuid_prefix=f"n{i}")
        doc["checks"] = [c for c in doc["checks"] if c["status"] == "ok"]
        doc.update(status="ok", exit_code=0)
        doc["gpus"][0]["name"] = "NVIDIA A100-SXM4-80GB"
        if i == 1:
            doc["gpus"] = doc["gpus"][:3]
        docs[f"n{i}"] = doc
    _, doc = fleet(*write(tmp_path, docs))
    assert doc is not None
    (group,) = [g for g in doc["problems"] if g["id"] == "gpu.count"]
    assert group["nodes"] == ["n1"]
    assert group["summary"] == (
        "3 GPUs (NVIDIA A100-SXM4-80GB + NVIDIA H100 80GB HBM3) where 2 of the 3 nodes with this model have 4"
    )


def test_a_slow_device_not_measured_before_is_a_first_measure_not_a_new_failure(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """node0011's bench did not run last time: its slow GPU may always have been slow, so --since says it
    is slow at its first measure rather than newly slow; node0003's GPU, measured at pace last time and slow
    now, is a new failure."""
    after = fleet_docs(real, 20)
    before = copy.deepcopy(after)
    del before["node0011/bench"]
    for r in before["node0003/bench"]["results"]:
        r["value"] = 700.0  # every GPU of node0003 at pace last time
    first = tmp_path / "first.json"
    envcheck("fleet", str(_dir(tmp_path / "run1", before)), "--output", str(first))
    proc, doc = fleet(str(_dir(tmp_path / "run2", after)), "--since", str(first))
    assert doc is not None, proc.stderr
    since = doc["since"]
    assert [(g["id"], g["summary"], g["nodes"]) for g in since["new"]] == [
        ("slow.gpu", f"slow GPU {SLOW['node0003']} (below the fleet median)", ["node0003"])
    ]
    assert [(g["id"], g["summary"], g["nodes"]) for g in since["first_measured"]] == [
        ("slow.gpu", f"slow GPU {SLOW['node0011']} (below the fleet median)", ["node0011"])
    ]
    for fmt, marker in (("text", ""), ("markdown", "- ")):
        out = envcheck("fleet", "--format", fmt, str(tmp_path / "run2"), "--since", str(first)).stdout
        assert "1 new failure on 1 node, 1 slow device measured for the first time" in out, fmt
        line = f"{marker}FIRST MEASURED fleet slow.gpu fail: slow GPU {SLOW['node0011']} (below the fleet median)"
        assert line + " on 1 node: node0011" in out.replace("\\", ""), fmt
    # A previous report that keeps no figures at all (written before the fleet kept them) cannot tell a
    # first measure from a change: the slow GPU is listed as new, and the figures as not compared.
    old = json.loads(first.read_text())
    del old["figures"]
    first.write_text(json.dumps(old))
    _, doc = fleet(str(tmp_path / "run2"), "--since", str(first))
    assert doc is not None and doc["since"]["first_measured"] == []
    assert {g["nodes"][0] for g in doc["since"]["new"]} == {"node0003", "node0011"}


def test_a_gpu_that_crashes_every_benchmark_is_one_entry_in_each_format(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """GPUs that crash in every benchmark run on them (the bench's words for a kernel that threw): two on
    gpu1, each with its own error, and one on gpu4, of 6 nodes. The JSON keeps one group per benchmark, which
    ``--since`` compares, each with every GPU's words (gpu1's second GPU too) and the one fix envcheck explain
    knows for both errors (a kernel's fault). Text, Markdown and HTML say
    them as one entry naming each benchmark in the order they ran, counted once (the verdict, the HTML's
    counts, ``--since``'s line), so the fleet's other problem (a limit every node warns of) stays in view."""
    before: dict[str, dict[str, Any]] = {}
    for i in range(6):
        host = f"gpu{i}"
        doctor = as_node(small(real["h100x4"]), host, uuid_prefix=host)
        for c in doctor["checks"]:
            if c["id"] == "host.ulimits":
                c.update(status="warn", summary="open files limit 1024 is below 65536", fix=dict(ULIMITS_FIX))
        before[f"{host}/doctor"] = doctor
        bench = before[f"{host}/bench"] = gpu_bench(real["bench_cpu"], doctor)
        bench["results"].reverse()  # run in an order that is not the alphabet's, to be said in it
    ran = list(dict.fromkeys(r["id"] for r in before["gpu0/bench"]["results"]))
    assert len(ran) > 1 and ran != sorted(ran)
    after = copy.deepcopy(before)
    illegal, launch = "CUDA error: an illegal memory access was encountered", "CUDA error: unspecified launch failure"
    for host, index, reason in (("gpu1", 0, launch), ("gpu1", 2, illegal), ("gpu4", 3, illegal)):
        for r in after[f"{host}/bench"]["results"]:
            if r["device"] == f"cuda:{index}":
                r.update(status="crash", value=None, reason=reason)
        after[f"{host}/bench"]["status"] = "fail"
    first = tmp_path / "first.json"
    assert envcheck("fleet", str(_dir(tmp_path / "run1", before)), "--output", str(first)).returncode == 0
    run2 = _dir(tmp_path / "run2", after)
    proc, doc = fleet(str(run2), "--since", str(first))
    assert doc is not None, proc.stderr
    # both errors are a kernel's fault envcheck explain knows: one fix for every GPU
    kernel_fault = next(s for s in SIGNATURES if s.id == "cuda.kernel_fault")
    fault = {"text": f"{kernel_fault.title}: {kernel_fault.fix}", "command": kernel_fault.command}
    crashed = [g for g in doc["problems"] if g["status"] == "crash"]
    assert sorted(g["id"] for g in crashed) == sorted(ran) and sorted(g["id"] for g in doc["since"]["new"]) == sorted(
        ran
    )
    for g in crashed:
        assert g["nodes"] == ["gpu1", "gpu4"] and g["wordings"] == 3 and g["own_words"] and g["fix"] == fault
        said = {(w["summary"].rsplit(" on ", 1)[1], tuple(w["nodes"])) for w in g["words"]}
        assert said == {
            (f"cuda:0: {launch}", ("gpu1",)),
            (f"cuda:2: {illegal}", ("gpu1",)),
            (f"cuda:3: {illegal}", ("gpu4",)),
        }

    title = f"bench {', '.join(ran)} crash"
    text = envcheck("fleet", str(run2), "--since", str(first)).stdout
    screen = first_screen(text)
    assert "2 problems across the fleet" in screen[1] and "1 new failure on 2 nodes" in screen[2]
    assert [line for line in screen if line.startswith("[CRASH]")] == [
        f"[CRASH] {title} on 2 nodes (new since the previous report)"
    ]
    for device, reason in (("cuda:0", launch), ("cuda:2", illegal)):  # gpu1's second GPU is not left out
        assert any(line.strip().startswith("on gpu1:") and f"{device}: {reason}" in line for line in screen)
    assert any("host.ulimits warn on all 6 nodes" in line for line in screen)
    assert [line.strip() for line in text.splitlines() if line.strip().startswith("NEW ")] == [
        f"NEW {title} on 2 nodes: gpu1, gpu4"
    ]
    # each node's own list keeps every benchmark's words on every GPU
    assert text.count(illegal) >= 2 * len(ran) and text.count(launch) >= len(ran)

    markdown = tmp_path / "fleet.md"
    html_page = tmp_path / "fleet.html"
    for out in (markdown, html_page):
        envcheck("fleet", str(run2), "--since", str(first), "--output", str(out))
    fix_first = markdown.read_text().split("### Fix first")[1].split("###")[0]
    rows = [line for line in fix_first.splitlines() if line.startswith("| ") and " crash" in line]
    assert len(rows) == 1 and f"`{title}`" in rows[0]
    page = html_page.read_text()
    problems = page.split('id="problems"')[1].split("</section>")[0]
    assert problems.count("<li>") == 2 and problems.count(" crash</code>") == 1
    assert re.search(r"problems across the fleet</td><td[^>]*>2</td>", page), "the counts say what the verdict says"


def test_a_check_resolved_under_one_verdict_and_new_under_another_is_not_said_fixed() -> None:
    """A benchmark that crashed on a and b last time, and on b now fails its check instead: resolved under
    the one verdict and new under the other. Its RESOLVED line says where it now fails, so that it does not
    read as fixed there; a check resolved with nothing in its place says only that it is."""
    from envcheck.fleet.render import since_lines

    bench = {"report": "bench", "id": "matmul.bf16"}
    since = {
        "previous": {"source": "monday.json"},
        "new": [{**bench, "status": "fail", "count": 1, "nodes": ["b"]}],
        "resolved": [
            {**bench, "status": "crash", "count": 2, "nodes": ["a", "b"]},
            {"report": "doctor", "id": "gpu.ecc", "status": "fail", "count": 1, "nodes": ["c"]},
        ],
        "appeared": [],
        "vanished": [],
        "slower": [],
    }
    assert since_lines(since, 0.1) == [
        "NEW bench matmul.bf16 fail on 1 node: b",
        "RESOLVED bench matmul.bf16 crash on 2 nodes: a, b (now fail on 1 node of them: see NEW)",
        "RESOLVED doctor gpu.ecc fail on 1 node: c",
    ]


def test_benchmarks_that_failed_otherwise_are_not_folded_and_a_fleet_wide_crash_is_said_once(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """On every node of 4, GPU 0 fails two benchmarks with different errors: two entries, each error on the
    first screen (a problem on every node leaves the nodes' own lists out, so an error said only there would
    be said nowhere). Then every GPU of every node crashes alike in one benchmark: one entry on all 4 nodes,
    not a section per node, though each node names its four GPUs."""
    docs: dict[str, dict[str, Any]] = {}
    for i in range(4):
        doctor = passing(real, f"n{i}")
        docs[f"n{i}/doctor"] = doctor
        docs[f"n{i}/bench"] = gpu_bench(real["bench_cpu"], doctor)
    ran = list(dict.fromkeys(r["id"] for r in docs["n0/bench"]["results"]))
    errors = {ran[0]: "CUDA error: an illegal memory access was encountered", ran[1]: "FlashAttention needs sm80"}
    differ = copy.deepcopy(docs)
    for i in range(4):
        for r in differ[f"n{i}/bench"]["results"]:
            if r["device"] == "cuda:0" and r["id"] in errors:
                r.update(status="crash", value=None, reason=errors[r["id"]])
    text = envcheck("fleet", *write(tmp_path / "differ", differ)).stdout
    screen = first_screen(text)
    assert [line.split(" on ")[0] for line in screen if line.startswith("[CRASH]")] == [
        f"[CRASH] bench {ran[0]} crash",
        f"[CRASH] bench {ran[1]} crash",
    ], text
    assert all(any(error in line for line in screen) for error in errors.values())

    everywhere = copy.deepcopy(docs)
    for i in range(4):
        for r in everywhere[f"n{i}/bench"]["results"]:
            if r["id"] == ran[0]:
                r.update(status="crash", value=None, reason="CUDA error: unspecified launch failure")
    proc, doc = fleet(*write(tmp_path / "everywhere", everywhere))
    assert doc is not None, proc.stderr
    (group,) = [g for g in doc["problems"] if g["status"] == "crash"]
    assert group["wordings"] == 4 and not group["own_words"]  # cuda:0 to cuda:3 on each: the same on all
    text = envcheck("fleet", str(tmp_path / "everywhere")).stdout
    assert f"[CRASH] bench {ran[0]} crash on all 4 nodes" in text
    assert "4 nodes with only the problems every node shares (above): n0, n1, n2, n3" in text
    # the GPUs every node names are said with their nodes (three, then how many more)
    for gpu in range(3):
        assert re.search(rf"on n0, n1, n2, n3: .+ on cuda:{gpu}: CUDA error: unspecified launch failure\n", text)
    assert "(and 1 other wording: each node's words are in the JSON report)" in text
    assert not re.search(r"^\[FAIL\]\s+n\d ", text, re.M)  # no section of its own for any node


def test_groups_a_hand_edited_report_holds_are_folded_only_when_they_read_alike() -> None:
    """What folded reads may have been edited by hand: a bench group on no node, or with nodes that are not
    a list, or anything but a group, is never folded (nor indexed); two that read alike but for the case are."""
    from envcheck.fleet.render import folded

    crash = {"report": "bench", "status": "crash", "fix": None, "fixes": [{"fix": None, "nodes": ["a"]}]}
    odd = [
        {**crash, "id": "x", "nodes": []},
        {**crash, "id": "y", "nodes": []},
        {**crash, "id": "z", "nodes": "a"},
        {**crash, "id": "w"},
        "not a group",
        3,
    ]
    assert folded(odd, nodes="not a list") == odd
    pair = [{**crash, "id": i, "nodes": ["a"], "summary": "x on cuda:0: oom"} for i in ("p", "q")]
    assert [g.get("also") for g in folded(pair, nodes="not a list")] == [["q"]]
    # an unhashable count (a hand-edited document) is no trouble
    assert [g.get("also") for g in folded([{**g, "wordings": [1]} for g in pair])] == [["q"]]
    alike = [
        {**crash, "id": "matmul", "nodes": ["a"], "summary": "bf16 4096 on cuda:1: CUDA error: out of memory"},
        {**crash, "id": "memory", "nodes": ["a"], "summary": "copy 64 MiB on cuda:1: CUDA error: out of memory"},
        {**crash, "id": "sdpa", "nodes": ["a"], "summary": "sdpa on cuda:2: CUDA error: out of memory"},
        {**crash, "id": "spec.matmul", "nodes": ["a"], "summary": "x on cuda:1: CUDA error: out of memory"},
    ]
    assert [(g["id"], g.get("also")) for g in folded(alike)] == [
        ("matmul", ["memory"]),
        ("sdpa", None),
        ("spec.matmul", None),
    ]


def test_benchmarks_that_crashed_alike_on_two_gpus_with_two_fixes_fold_as_one() -> None:
    """One GPU faulted, another ran out of memory: every benchmark on the node says both errors, each with
    its fix. They read the same but for the case (a benchmark after the crash says "not run: " and the same
    error), so they are one entry, not one per benchmark; a benchmark whose second fix has other nodes is not
    folded with them."""
    from envcheck.fleet.render import folded

    fault, oom = {"text": "kernel fault", "command": "dmesg"}, {"text": "out of memory", "command": "nvidia-smi"}
    fixes = [{"fix": fault, "nodes": ["a"]}, {"fix": oom, "nodes": ["a"]}]

    def crashed(bench: str, prefix: str = "") -> dict[str, Any]:
        return {
            "report": "bench",
            "id": bench,
            "status": "crash",
            "nodes": ["a"],
            "fix": fault,
            "fixes": fixes,
            "summary": f"fp32 on cuda:2: {prefix}CUDA error: an illegal memory access",
            "words": [
                {"summary": f"fp32 on cuda:2: {prefix}CUDA error: an illegal memory access", "nodes": ["a"]},
                {"summary": f"fp32 on cuda:5: {prefix}CUDA out of memory. Tried 2 GiB", "nodes": ["a"]},
            ],
            "wordings": 2,
        }

    groups = [crashed("matmul"), crashed("memory", "not run: "), crashed("sdpa", "not run: ")]
    other = {**crashed("copy", "not run: "), "fixes": [fixes[0], {"fix": oom, "nodes": ["a", "b"]}]}
    assert [(g["id"], g.get("also")) for g in folded([*groups, other])] == [
        ("matmul", ["memory", "sdpa"]),
        ("copy", None),
    ]


def test_a_benchmark_that_failed_with_an_error_envcheck_explain_knows_carries_its_fix(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A crash whose words envcheck explain knows (CUDA out of memory, on two of three nodes) is a problem
    with that fix, said once in Fix first with its command, its benchmarks that failed alike folded as
    before; an error it does not know has no fix."""
    from envcheck.fleet.kinds import known_fix

    oom = next(s for s in SIGNATURES if s.id == "cuda.out_of_memory")
    docs: dict[str, dict[str, Any]] = {}
    for i in range(3):
        doctor = passing(real, f"n{i}")
        docs[f"n{i}/doctor"] = doctor
        docs[f"n{i}/bench"] = gpu_bench(real["bench_cpu"], doctor)
    for host in ("n0", "n2"):
        for k, r in enumerate(docs[f"{host}/bench"]["results"]):
            if r["device"] == "cuda:1":  # each case tried its own size: the same error
                r.update(
                    status="crash", value=None, reason=f"torch.OutOfMemoryError: CUDA out of memory. Tried {k} GiB"
                )
    paths = write(tmp_path, docs)
    proc, doc = fleet(*paths)
    assert doc is not None, proc.stderr
    fix = {"text": f"{oom.title}: {oom.fix}", "command": oom.command}
    crashed = [g for g in doc["problems"] if g["status"] == "crash"]
    ran = list(dict.fromkeys(r["id"] for r in docs["n0/bench"]["results"]))
    assert sorted(g["id"] for g in crashed) == sorted(ran)
    assert all(g["nodes"] == ["n0", "n2"] and g["fix"] == fix and len(g["fixes"]) == 1 for g in crashed)
    text = envcheck("fleet", *paths).stdout
    screen = "\n".join(first_screen(text))
    assert f"[CRASH] bench {', '.join(ran)} crash on 2 nodes: n0, n2" in screen
    assert screen.count(f"fix: {oom.title}: ") == 1 and f"run: {oom.command}" in screen
    assert known_fix("CUDA error: something envcheck has never seen") is None


def _crashed(docs: dict[str, dict[str, Any]], host: str, device: str, reason: str, ids: Any = None) -> None:
    for r in docs[f"{host}/bench"]["results"]:
        if r["device"] == device and (ids is None or r["id"] in ids):
            r.update(status="crash", value=None, reason=reason)


def _benched(real: dict[str, dict[str, Any]], nodes: int) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for i in range(nodes):
        doctor = passing(real, f"n{i}")
        docs[f"n{i}/doctor"] = doctor
        docs[f"n{i}/bench"] = gpu_bench(real["bench_cpu"], doctor)
    return docs


def test_one_gpu_that_fails_otherwise_among_a_fleet_wide_crash_keeps_its_own_words_and_fix(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Every GPU of 5 nodes crashes one benchmark alike (a software fault), but n3's GPU 2 reports ECC errors
    instead. The many are said once, their nodes one line; n3 is odd: its own list says its GPU 2's ECC
    errors, and the ECC fix is kept with it."""
    docs = _benched(real, 5)
    benchmark = docs["n0/bench"]["results"][0]["id"]
    fault, ecc = (
        "CUDA error: an illegal memory access was encountered",
        "CUDA error: uncorrectable ECC error encountered",
    )
    for i in range(5):
        for gpu in range(4):
            _crashed(docs, f"n{i}", f"cuda:{gpu}", ecc if (i, gpu) == (3, 2) else fault, {benchmark})
    paths = write(tmp_path, docs)
    proc, doc = fleet(*paths)
    assert doc is not None, proc.stderr
    (group,) = [g for g in doc["problems"] if g["status"] == "crash"]
    assert group["count"] == 5 and group["own_words"] and group["odd"] == ["n3"]
    assert [f["nodes"] for f in group["fixes"]] == [["n0", "n1", "n2", "n3", "n4"], ["n3"]]
    assert group["fixes"][1]["fix"]["text"].startswith("GPU memory (ECC) errors: ")
    text = envcheck("fleet", *paths).stdout
    assert f"[CRASH] bench {benchmark} crash on all 5 nodes" in text
    assert "4 nodes with only the problems every node shares (above): n0, n1, n2, n4" in text
    own = text[text.index("[FAIL]  n3 ") :].split("\n\n")[0]
    assert f"on cuda:2: {ecc}" in own and own.count(fault) == 3
    assert "run: nvidia-smi -q -d ECC,ROW_REMAPPER,PAGE_RETIREMENT" in text


def test_since_says_the_benchmarks_new_alike_in_one_line_as_fix_first_does(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Two benchmarks crash on n0 and n1 since the last run: the first on GPU 0 of both, the second on GPU 0
    of n0 and GPU 1 of n1. Fix first says them apart (their words differ), and so do the NEW lines and the
    count. The cases a crashed worker never ran ("not run: ERROR") fold with the one that crashed."""
    before = _benched(real, 3)
    first = tmp_path / "first.json"
    assert envcheck("fleet", str(_dir(tmp_path / "run1", before)), "--output", str(first)).returncode == 0
    after = copy.deepcopy(before)
    ran = list(dict.fromkeys(r["id"] for r in before["n0/bench"]["results"]))
    fault = "CUDA error: an illegal memory access was encountered"
    _crashed(after, "n0", "cuda:0", fault, set(ran[:2]))
    _crashed(after, "n1", "cuda:0", fault, {ran[0]})
    _crashed(after, "n1", "cuda:1", fault, {ran[1]})
    text = envcheck("fleet", str(_dir(tmp_path / "run2", after)), "--since", str(first)).stdout
    entries = [line for line in text.splitlines() if line.startswith("[CRASH]")]
    # (the second's lines name its two nodes with their words, cuda:0 on one, cuda:1 on the other: its title
    # counts them)
    assert entries == [
        f"[CRASH] bench {ran[0]} crash on 2 nodes: n0, n1 (new since the previous report)",
        f"[CRASH] bench {ran[1]} crash on 2 nodes (new since the previous report)",
    ]
    new = [line.strip() for line in text.splitlines() if line.strip().startswith("NEW ")]
    assert new == [f"NEW bench {ran[0]} crash on 2 nodes: n0, n1", f"NEW bench {ran[1]} crash on 2 nodes: n0, n1"]
    assert "2 new failures on 2 nodes" in text
    # n2's worker died in the first benchmark: the rest of its GPU 3's were never run
    died = copy.deepcopy(before)
    _crashed(died, "n2", "cuda:3", "worker exited with status 1: " + fault, {ran[0]})
    _crashed(died, "n2", "cuda:3", "not run: worker exited with status 1: " + fault, set(ran[1:]))
    text = envcheck("fleet", str(_dir(tmp_path / "run3", died)), "--since", str(first)).stdout
    entries = [line for line in text.splitlines() if line.startswith("[CRASH]")]
    assert entries == [f"[CRASH] bench {', '.join(ran)} crash on 1 node: n2 (new since the previous report)"], text
    assert [line.strip() for line in text.splitlines() if line.strip().startswith("NEW ")] == [
        f"NEW bench {', '.join(ran)} crash on 1 node: n2"
    ]
    words = text[text.index(entries[0]) :].splitlines()[1]
    assert "not run" not in words and "worker exited with status 1: " in words  # the one that crashed


def test_benchmarks_resolved_alike_are_named_in_the_order_they_ran(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A GPU crashed every benchmark in the last run and passes now: the RESOLVED line names the benchmarks in
    the order they ran (the previous report's list), as the NEW line named them, not by name."""
    healthy = _benched(real, 3)
    for i in range(3):  # run in an order that is not the names' order
        healthy[f"n{i}/bench"]["results"].reverse()
    ran = list(dict.fromkeys(r["id"] for r in healthy["n0/bench"]["results"]))
    assert ran != sorted(ran)
    crashed = copy.deepcopy(healthy)
    fault = "CUDA error: an illegal memory access was encountered"
    _crashed(crashed, "n2", "cuda:3", "worker exited with status 1: " + fault, {ran[0]})
    _crashed(crashed, "n2", "cuda:3", "not run: worker exited with status 1: " + fault, set(ran[1:]))
    first = tmp_path / "first.json"
    envcheck("fleet", str(_dir(tmp_path / "run1", crashed)), "--output", str(first))
    text = envcheck("fleet", str(_dir(tmp_path / "run2", healthy)), "--since", str(first)).stdout
    assert [line.strip() for line in text.splitlines() if line.strip().startswith("RESOLVED ")] == [
        f"RESOLVED bench {', '.join(ran)} crash on 1 node: n2"
    ], text


def test_a_failed_benchmarks_fix_is_looked_up_in_its_first_line_for_a_few_errors_a_report() -> None:
    """Only the first line of a failed benchmark's words is searched, as far as KNOWN_FIX_CHARS (some of the
    signatures' patterns cost the square of a line made to look like many); a report's first few distinct
    errors are looked up, the rest left without a fix."""
    from envcheck.fleet.kinds import KNOWN_FIX_CHARS, KNOWN_FIX_PER_REPORT, Bench, _scan_results, known_fix

    assert known_fix("CUDA error: out of memory" + " x" * 5000) is not None
    assert known_fix("the worker stopped\nCUDA error: out of memory") is None
    assert known_fix("x" * KNOWN_FIX_CHARS + " CUDA error: out of memory") is None
    results = [
        {"id": f"b{i}", "device": "cuda:0", "status": "crash", "reason": f"CUDA error: out of memory ({'x' * i})"}
        for i in range(KNOWN_FIX_PER_REPORT + 3)
    ]
    doc = {"results": results}
    items = Bench._items("s", "bench", doc, _scan_results(results))
    fixed = [p.fix is not None for _, p in items]
    assert fixed == [True] * KNOWN_FIX_PER_REPORT + [False] * 3


def test_what_most_nodes_say_in_words_that_differ_in_numbers_is_never_left_out(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Every node of 10 fails gpu.ecc: seven on GPU 0, each with its own count of errors, three each on
    another GPU. What the seven say is one thing (their words differ in a number alone) and is shown first
    with its seven nodes, however many wordings the three have; the three keep their own lists."""
    docs = {}
    for i in range(10):
        doc = passing(real, f"n{i}")
        gpu = i - 6 if i >= 7 else 0
        doc["checks"].append(
            {"id": "gpu.ecc", "status": "fail", "summary": f"GPU {gpu}: {i + 1} uncorrected ECC errors since boot"}
        )
        doc.update(status="fail", exit_code=1)
        docs[f"n{i}"] = doc
    paths = write(tmp_path, docs)
    proc, doc = fleet(*paths)
    assert doc is not None, proc.stderr
    (group,) = [g for g in doc["problems"] if g["id"] == "gpu.ecc"]
    assert group["wordings"] == 10 and group["odd"] == ["n7", "n8", "n9"]
    assert group["words"][0] == {
        "summary": "GPU 0: 1 uncorrected ECC errors since boot",
        "said": "GPU 0: 1–7 uncorrected ECC errors since boot",
        "wordings": 7,
        "nodes": [f"n{i}" for i in range(7)],
    }
    text = envcheck("fleet", *paths).stdout
    # true of each of the seven (n6 had seven errors, not one), and the three others' words beside
    assert "on n0, n1, n2, n3, n4, n5, n6: GPU 0: 1–7 uncorrected ECC errors since boot" in text
    assert "on n7: GPU 1: 8 uncorrected" in text and "on n8: GPU 2: 9 uncorrected" in text
    assert "(and 1 other wording: each node's own list)" in text  # n9's, in its list below
    assert "7 nodes with only the problems every node shares (above): n0, n1, n2, n3, n4, n5, n6" in text
    assert all(re.search(rf"^\S+\s+n{i}\s+doctor fail\n.*GPU {i - 6}:", text, re.M) for i in (7, 8, 9))


def test_a_known_error_whose_numbers_differ_by_case_carries_its_fix_on_every_case() -> None:
    """Out of memory in each of 12 cases, each with its own sizes: one error, looked up once, so every case
    carries its fix (the bound on lookups a report counts errors, not their numbers)."""
    from envcheck.fleet.kinds import KNOWN_FIX_PER_REPORT, Bench, _scan_results

    results = [
        {
            "id": f"b{i}",
            "device": "cuda:0",
            "status": "crash",
            "reason": f"CUDA out of memory. Tried to allocate {i} GiB",
        }
        for i in range(KNOWN_FIX_PER_REPORT + 4)
    ]
    items = Bench._items("s", "bench", {"results": results}, _scan_results(results))
    assert len(items) == len(results) and all(p.fix is not None for _, p in items)


def test_a_thing_said_in_a_few_wordings_is_said_in_each_with_its_node(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Two nodes' GPU 1 have ECC errors in different counts, a third node's GPU 5: there is room to say each
    wording with its node, so none reads "1 or 3 errors since boot, 7 or 40 over its life" (which node had
    forty?); past a few wordings, their numbers are said as spans (the tests above)."""
    docs = {}
    for host, words in (
        ("n0", "GPU 1: 3 uncorrected ECC errors since boot, 7 over its life"),
        ("n1", "GPU 1: 1 uncorrected ECC errors since boot, 40 over its life"),
        ("n2", "GPU 5: 12 uncorrected ECC errors since boot, 12 over its life"),
        ("n3", None),
    ):
        doc = passing(real, host)
        if words:
            doc["checks"].append({"id": "gpu.ecc", "status": "fail", "summary": words})
            doc.update(status="fail", exit_code=1)
        docs[host] = doc
    paths = write(tmp_path, docs)
    proc, doc = fleet(*paths)
    assert doc is not None, proc.stderr
    (group,) = [g for g in doc["problems"] if g["id"] == "gpu.ecc"]
    assert [(w["nodes"], w["summary"], w.get("said")) for w in group["words"]] == [
        (["n0"], "GPU 1: 3 uncorrected ECC errors since boot, 7 over its life", None),
        (["n1"], "GPU 1: 1 uncorrected ECC errors since boot, 40 over its life", None),
        (["n2"], "GPU 5: 12 uncorrected ECC errors since boot, 12 over its life", None),
    ]
    text = envcheck("fleet", *paths).stdout
    assert "on n1: GPU 1: 1 uncorrected ECC errors since boot, 40 over its life" in text
    assert " or " not in text.split("More on")[0].split("Fix first")[1]


def test_nodes_off_the_stack_most_of_the_fleet_runs_warn_as_one_group(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A rack on an older driver and a node on another Python too, in a fleet of ten: each such node warns (it
    is not "ok": it runs the same job otherwise), once, naming every field it differs in (not the CUDA its
    driver supports: that follows the driver), and those that differ alike read as one thing said. A node
    whose driver is not stated is no difference. A fleet split half and half has no stack most of it runs:
    its drift is listed, and no node warns."""
    docs = {f"n{i}": passing(real, f"n{i}") for i in range(10)}
    usual_driver, usual_python = docs["n0"]["driver"]["version"], docs["n0"]["host"]["python"]
    model, usual_cuda = docs["n0"]["gpus"][0]["name"], docs["n0"]["driver"]["cuda_version"]
    for host in ("n8", "n9"):
        docs[host]["driver"].update(version="535.54.03", cuda_version="12.2")
    docs["n9"]["host"]["python"] = "3.9.0"
    docs["n7"]["driver"]["version"] = None  # not found: its own checks say so
    paths = write(tmp_path / "day", docs)
    proc, doc = fleet(*paths)
    assert doc is not None, proc.stderr
    (group,) = [g for g in doc["problems"] if g["key"] == "fleet stack warn"]
    assert group["nodes"] == ["n8", "n9"] and group["fix"]["text"].startswith("Bring this node's stack")
    driver = f"NVIDIA driver 535.54.03 where 7 of the 9 nodes of {model} have {usual_driver}"
    assert [(w["nodes"], w["summary"]) for w in group["words"]] == [
        (["n8"], driver),
        (["n9"], f"{driver}; Python 3.9.0 where 9 of the 10 nodes of {model} have {usual_python}"),
    ]
    by_host = {n["hostname"]: n for n in doc["nodes"]}
    assert [by_host[h]["status"] for h in ("n0", "n7", "n9")] == ["ok", "ok", "warn"]
    text = envcheck("fleet", *paths).stdout
    assert f"on n8: {driver}" in text and "CUDA the driver supports 12.2 where" not in text
    # half and half: drift, no warning
    for i in range(10):
        docs[f"n{i}"]["driver"].update(version="535.54.03" if i < 5 else usual_driver, cuda_version=usual_cuda)
    docs["n9"]["host"]["python"] = usual_python
    proc, doc = fleet(*write(tmp_path / "split", docs))
    assert doc is not None, proc.stderr
    assert "driver.version" in [d["field"] for d in doc["drift"]]
    assert not [g for g in doc["problems"] if g["key"] == "fleet stack warn"]


def test_benchmarks_folded_as_one_error_whose_numbers_differ_say_so() -> None:
    """Two benchmarks out of memory on the same two nodes fold into one entry (one error, whatever it tried to
    allocate); the entry says the first one's numbers, so it says that the others' differ, rather than
    giving the first benchmark's sizes as the second's. Where every benchmark says the same, it does not."""
    from envcheck.fleet.render import folded, wordings

    def group(bench: str, sizes: tuple[str, str]) -> dict[str, Any]:
        said = [f"{bench} case on cuda:0: CUDA out of memory. Tried to allocate {size} GiB" for size in sizes]
        return {
            "report": "bench",
            "id": bench,
            "status": "crash",
            "summary": said[0],
            "nodes": ["n0", "n1"],
            "fix": None,
            "fixes": [{"fix": None, "nodes": ["n0", "n1"]}],
            "wordings": 2,
            "words": [{"summary": said[0], "nodes": ["n0"]}, {"summary": said[1], "nodes": ["n1"]}],
        }

    (entry,) = folded([group("matmul", ("2.00", "4.00")), group("conv", ("16.00", "32.00"))])
    assert entry["also"] == ["conv"] and entry["numbers_differ"] is True
    assert wordings(entry)[-1] == ("", "(the numbers differ by benchmark: each node's own list has each)")
    (entry,) = folded([group("matmul", ("2.00", "4.00")), group("conv", ("2.00", "4.00"))])
    assert entry["also"] == ["conv"] and "numbers_differ" not in entry
    assert [w for _, w in wordings(entry)] == [
        "matmul case on cuda:0: CUDA out of memory. Tried to allocate 2.00 GiB",
        "matmul case on cuda:0: CUDA out of memory. Tried to allocate 4.00 GiB",
    ]


def test_words_holding_a_secret_are_never_said_as_one(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Every node's words hold a token whose digits differ by node: said as one ("hf_x12 or hf_x34…"), its
    pieces would no longer read as a token to the redactor. They are not: the first node's words, redacted,
    are said, and no node's token is anywhere in the report."""
    tokens = {f"n{i}": f"hf_{'a' * 20}{i}{i}{i}{'b' * 6}" for i in range(6)}
    docs = {}
    for host, token in tokens.items():
        doc = as_node(small(real["h100x4"]), host, uuid_prefix=host)
        for c in doc["checks"]:
            if c["id"] == "host.ulimits":
                c.update(status="warn", summary=f"the job's environment holds {token}", fix=dict(ULIMITS_FIX))
        docs[host] = doc
    paths = write(tmp_path, docs)
    proc, doc = fleet(*paths)
    assert doc is not None, proc.stderr
    (group,) = [g for g in doc["problems"] if g["id"] == "host.ulimits"]
    assert "said" not in group and group["wordings"] == 6 and "hf_" not in json.dumps(doc)
    for args in ((), ("--format", "markdown")):
        out = envcheck("fleet", *args, *paths).stdout
        assert not any(token[3:13] in out for token in tokens.values()) and "aaaaaaaaaa" not in out


def test_the_details_give_every_fix_of_a_problem_the_first_screen_left_out() -> None:
    """A problem with two fixes: where the first screen said it with its first fix, the details give the
    other; where it did not fit there, the details give both, each with its nodes."""
    from rich.console import Console

    from envcheck.fleet.render import group_lines

    fixes = [{"fix": {"text": "fix A", "command": None}, "nodes": ["a", "b"]}]
    fixes.append({"fix": {"text": "fix B", "command": "run b"}, "nodes": ["c"]})
    group = {"report": "doctor", "id": "host.ulimits", "status": "warn", "count": 3, "nodes": ["a", "b", "c"]}
    group.update(summary="low", fix=fixes[0]["fix"], fixes=fixes, more_fixes=0)
    console = Console(width=200)
    first = "\n".join(group_lines(console, group, 10, every_fix=False))
    assert "on a, b:" in first and "fix A" in first and "fix B" not in first and "1 other fix below" in first
    details = "\n".join(group_lines(console, group, 10, every_fix=True))
    assert "on a, b:" in details and "fix A" in details and "on c:" in details and "run b" in details
    rest = "\n".join(group_lines(console, group, 10, every_fix=True, fixes_only=True))
    assert "fix A" not in rest and "on c:" in rest and "fix B" in rest and "low" not in rest


def test_a_text_of_many_lines_is_its_first_line_and_a_count_in_the_text_report() -> None:
    """A crash's words can hold a traceback: the text report says its first line and how many more there are
    (each node's report and the JSON keep them), not one line of thousands of characters with each newline
    shown as \\n."""
    from envcheck.fleet.render import one_line

    assert one_line("CUDA error: device-side assert\nCUDA kernel errors might be\n\nCompile with\n") == (
        "CUDA error: device-side assert (and 2 more lines: in the JSON report)"
    )
    assert one_line("one line") == "one line" and one_line("one line\n") == "one line"
    assert one_line("a\nb") == "a (and 1 more line: in the JSON report)"


A100 = "NVIDIA A100-SXM4-80GB"


def drifting_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in doc["drift"] if not d["by_model"]]


def by_model_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields listed by GPU model: in ``drift`` (which holds every field of several values, as ever)."""
    return [d for d in doc["drift"] if d["by_model"]]


def test_pools_of_two_gpu_models_on_their_own_stacks_are_listed_by_model_not_drift(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """An H100 pool and an A100 pool built apart, each on its own driver: every node of a model agrees, so
    the fleet is ready (no field drifting, no warning) and the fields that differ are listed by model, with
    each value's models, in each format. A driver that differs inside one pool is drift again, the field's
    every value listed, and the node off its pool's stack warns."""
    docs = {f"n{i}": passing(real, f"n{i}") for i in range(10)}
    h100, usual = docs["n0"]["gpus"][0]["name"], docs["n0"]["driver"]["version"]
    for i in range(6, 10):
        docs[f"n{i}"]["driver"].update(version="535.54.03")
        for g in docs[f"n{i}"]["gpus"]:
            g["name"] = A100
    paths = write(tmp_path / "pools", docs)
    proc, doc = fleet(*paths)
    assert doc is not None, proc.stderr
    assert drifting_of(doc) == [] and doc["status"] == "ok" and doc["summary"]["drift_fields"] == 0
    assert doc["summary"]["by_model_fields"] == 2
    by_model = {d["field"]: d["values"] for d in by_model_of(doc)}
    assert [(v["value"], v["count"], v["models"]) for v in by_model["driver.version"]] == [
        (usual, 6, [h100]),
        ("535.54.03", 4, [A100]),
    ]
    assert [(v["value"], v["models"]) for v in by_model["gpu.model"]] == [(h100, [h100]), (A100, [A100])]
    assert by_model["driver.version"][1]["hosts"] == ["n6", "n7", "n8", "n9"]
    text = envcheck("fleet", *paths).stdout
    assert text.splitlines()[1].endswith("Ready: all 10 nodes pass") and "Drift" not in text
    assert f"  NVIDIA driver: {usual} on 6 ({h100}); 535.54.03 on 4 ({A100})\n" in text
    assert f"  GPU model: {h100} on 6; {A100} on 4\n" in text
    md = envcheck("fleet", "--format", "markdown", *paths).stdout
    assert "### By GPU model" in md and f"| **NVIDIA driver** | `{usual}` | 6 | {h100} |" in md
    assert "Drift" not in md
    page = envcheck("fleet", "--format", "html", *paths).stdout
    assert "By GPU model</h2>" in page and f'"GPU models">{A100}</td>' in page and "Drift</h2>" not in page
    # one H100 node on the A100s' driver: drift among the H100s, every value of the field listed
    docs["n1"]["driver"]["version"] = "535.54.03"
    proc, doc = fleet(*write(tmp_path / "drifted", docs))
    assert doc is not None, proc.stderr
    (drifted,) = [d for d in drifting_of(doc) if d["field"] == "driver.version"]
    assert sorted((v["value"], v["count"]) for v in drifted["values"]) == sorted([(usual, 5), ("535.54.03", 5)])
    assert "models" not in drifted["values"][0] and doc["status"] == "warn"
    assert [d["field"] for d in by_model_of(doc)] == ["gpu.model"]
    assert node_of(doc, "n1")["status"] == "warn"


def test_a_node_in_no_pool_on_a_value_no_pool_has_keeps_the_field_drifting(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Two H100 nodes and two A100 nodes, each pair on its own driver, and a node of mixed GPUs: on a driver
    neither pool runs, its driver drifts (every value listed); on the A100s' driver, nothing drifts (its GPU
    model is listed by model, in no pool, and it warns of its mixed GPUs itself). A model only one node has
    is no pool: that node on a driver of its own drifts, and so does its GPU model."""
    docs = {f"n{i}": passing(real, f"n{i}") for i in range(5)}
    for host in ("n2", "n3"):
        for g in docs[host]["gpus"]:
            g["name"] = A100
        docs[host]["driver"]["version"] = "535.54.03"
    docs["n4"]["gpus"][0]["name"] = A100  # mixed: "1× A100 + 3× H100"
    docs["n4"]["driver"]["version"] = "525.60.13"
    proc, doc = fleet(*write(tmp_path / "third", docs))
    assert doc is not None, proc.stderr
    assert [d["field"] for d in drifting_of(doc)] == ["driver.version"]
    assert [d["field"] for d in by_model_of(doc)] == ["gpu.model"]  # the mixed node warns of itself
    (driver,) = [d for d in drifting_of(doc) if d["field"] == "driver.version"]
    assert sorted(v["hosts"] for v in driver["values"]) == [["n0", "n1"], ["n2", "n3"], ["n4"]]
    assert doc["status"] == "warn"
    docs["n4"]["driver"]["version"] = "535.54.03"
    proc, doc = fleet(*write(tmp_path / "pools", docs))
    assert doc is not None, proc.stderr
    assert drifting_of(doc) == [] and doc["status"] == "warn"
    assert [d["field"] for d in by_model_of(doc)] == ["driver.version", "gpu.model"]
    # the A100 "pool" of one node: no pool, the fleet one of H100s, its driver drift
    del docs["n2"], docs["n4"]
    proc, doc = fleet(*write(tmp_path / "one", docs))
    assert doc is not None, proc.stderr
    assert {d["field"] for d in drifting_of(doc)} == {"driver.version", "gpu.model"} and by_model_of(doc) == []


def test_a_verified_figure_that_is_not_a_measurement_is_said_not_dropped(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A verified figure of 0 or below has no place in the comparison: the device is not compared in that
    benchmark, and its node warns, as the fleet's finding (the bench report's own verdict stays ok), one
    problem for every such figure across the fleet, naming each with its fix (it was left out without a
    word, a device read as compared that was not). A value of any shape is said in a few characters (a list
    nested nearly as deep as the reader takes, whose repr overflowed the stack and ended the merge)."""
    docs = _benched(real, 4)
    first, second = docs["n2/bench"]["results"][0], docs["n2/bench"]["results"][-1]
    assert first["id"] != second["id"]
    for host, device, bench_id, value in (("n2", "cuda:1", first["id"], 0.0), ("n3", "cuda:2", second["id"], -5.0)):
        for r in docs[f"{host}/bench"]["results"]:
            if r["device"] == device and r["id"] == bench_id:
                r["value"] = value
    proc, doc = fleet(*write(tmp_path / "zero", docs))
    assert doc is not None, proc.stderr
    (warned,) = node_of(doc, "n2")["warnings"]
    assert (warned["report"], warned["id"], warned["fix"]["command"]) == (
        "fleet",
        "figure.invalid",
        "envcheck bench --json",
    )
    assert warned["summary"] == (
        f"{first['id']} {first['case']} on cuda:1: 0.0 {first['unit']}, a verified figure that is not a measurement "
        "(0 or below, past any device's, or not a number): not compared"
    )
    assert [r["status"] for r in node_of(doc, "n2")["reports"]] == ["ok", "ok"]
    assert node_of(doc, "n2")["status"] == node_of(doc, "n3")["status"] == "warn"
    assert node_of(doc, "n1")["status"] == "ok"
    (group,) = [g for g in doc["problems"] if g["id"] == "figure.invalid"]
    assert group["nodes"] == ["n2", "n3"] and group["status"] == "warn"
    assert [c["devices"] for c in doc["comparisons"] if c["id"] in (first["id"], second["id"])] == [15, 15]
    text = envcheck("fleet", str(tmp_path / "zero")).stdout
    assert f"-5.0 {second['unit']}, a verified figure" in text
    for r in docs["n3/bench"]["results"]:
        if r["device"] == "cuda:2" and r["id"] == second["id"]:
            r.update(value="DEEP", case=["x" * 100_000])
    paths = write(tmp_path / "deep", docs)
    for path in map(Path, paths):  # nested as deep as the reader takes (json.dumps would overflow first)
        path.write_text(path.read_text().replace('"DEEP"', "[" * 980 + "0.0" + "]" * 980))
    proc, doc = fleet(*paths)
    assert doc is not None and "internal error" not in proc.stderr, proc.stderr
    (warned,) = node_of(doc, "n3")["warnings"]
    assert warned["summary"].startswith(f'{second["id"]} ["xxxxx') and len(warned["summary"]) < 300


def _pools_benched(
    real: dict[str, dict[str, Any]], nodes: int, *, a100_from: int, benched: range
) -> dict[str, dict[str, Any]]:
    """``nodes`` doctor reports, H100 nodes then A100 ones from ``a100_from``, and a bench report of those
    ``benched``."""
    docs: dict[str, dict[str, Any]] = {}
    for i in range(nodes):
        doctor = passing(real, f"n{i}")
        if i >= a100_from:
            for g in doctor["gpus"]:
                g["name"] = A100
        docs[f"n{i}/doctor"] = doctor
        if i in benched:
            docs[f"n{i}/bench"] = gpu_bench(real["bench_cpu"], doctor)
    return docs


def test_a_pool_benched_apart_is_held_to_its_own_pool_for_a_missing_report(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Six H100 nodes benched, three A100 nodes never meant to be: the A100s do not warn of a bench report
    most of the fleet has (a fleet-wide majority warned each of them), and an H100 node whose bench is
    missing warns, held to its pool's nodes. A pool benched on a sample of its nodes warns of nothing."""
    docs = _pools_benched(real, 9, a100_from=6, benched=range(5))
    write(tmp_path, docs)
    proc, doc = fleet(str(tmp_path))
    assert doc is not None, proc.stderr
    (group,) = [g for g in doc["problems"] if g["id"] == "report.missing"]
    h100 = docs["n0/doctor"]["gpus"][0]["name"]
    assert group["nodes"] == ["n5"]
    assert group["summary"] == f"no bench report, where 5 of the 6 nodes of {h100} have one"
    assert [node_of(doc, f"n{i}")["status"] for i in (5, 6, 7, 8)] == ["warn", "ok", "ok", "ok"]
    # an A100 pool benched on a sample (one node of five): its others are not missing a bench either
    docs = _pools_benched(real, 11, a100_from=6, benched=range(7))
    proc, doc = fleet(*write(tmp_path / "sample", docs))
    assert doc is not None, proc.stderr
    assert [g["nodes"] for g in doc["problems"] if g["id"] == "report.missing"] == []


def _pools_fleet(real: dict[str, dict[str, Any]], **odd: str) -> dict[str, dict[str, Any]]:
    """Six H100 nodes on one driver and four A100 nodes on another, and each of ``odd``'s nodes (name ->
    GPU name, ``mixed`` for half of each model) on the A100s' driver."""
    docs = {f"h{i}": passing(real, f"h{i}") for i in range(6)} | {f"a{i}": passing(real, f"a{i}") for i in range(4)}
    docs |= {host: passing(real, host) for host in odd}
    for host, doc in docs.items():
        if host.startswith("h") and host not in odd:
            continue
        doc["driver"]["version"] = "535.54.03"
        name = odd.get(host, A100)
        for g in doc["gpus"]:
            g["name"] = (
                A100
                if name == "mixed" and g["index"] % 2
                else docs["h0"]["gpus"][0]["name"]
                if name == "mixed"
                else name
            )
    return docs


def test_one_odd_node_neither_undoes_the_pools_nor_passes_as_a_pool_of_its_own(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Beside an H100 pool and an A100 pool built apart: a node of mixed GPUs on the A100s' driver leaves
    the pools as they are (it undid them: every pool difference read as drift) and warns of its mixed GPUs;
    an H100 node whose GPU name an older driver spells otherwise (no "NVIDIA ", another case) is an H100
    node, off its pool's driver, not a pool of its own that passes; one node of a model no other node has,
    on a driver no pool runs, drifts; GPUs with no name are no pool; a name holding " + " is one model."""
    h100 = passing(real, "x")["gpus"][0]["name"]

    def run(name: str, **odd: str) -> dict[str, Any]:
        proc, doc = fleet(*write(tmp_path / name, _pools_fleet(real, **odd)))
        assert doc is not None, proc.stderr
        return doc

    doc = run("mixed", m0="mixed")
    # nothing drifts: the mixed node is listed under its GPU model, of no pool, and warns of itself
    assert drifting_of(doc) == [] and doc["status"] == "warn"
    (model,) = [d for d in by_model_of(doc) if d["field"] == "gpu.model"]
    assert ("2× " + A100 + " + 2× " + h100, ["m0"], []) in [
        (v["value"], v["hosts"], v["models"]) for v in model["values"]
    ]
    (driver,) = [d for d in by_model_of(doc) if d["field"] == "driver.version"]
    assert [(v["value"], v["count"], v["models"]) for v in driver["values"]] == [
        (passing(real, "x")["driver"]["version"], 6, [h100]),
        ("535.54.03", 5, [A100]),
    ]
    (mixed,) = node_of(doc, "m0")["warnings"]
    assert (mixed["report"], mixed["id"]) == ("fleet", "gpu.model")
    assert (
        mixed["summary"] == f"GPUs of several models (2× {A100} + 2× {h100}), where 10 of the 11 nodes have one model"
    )
    # an older driver's spelling of the H100: in the H100 pool, off its driver
    doc = run("spelled", h9=h100.removeprefix("NVIDIA ").lower())
    assert "driver.version" in [d["field"] for d in drifting_of(doc)] and doc["status"] == "warn"
    (driver,) = [d for d in drifting_of(doc) if d["field"] == "driver.version"]
    assert driver["values"][1]["hosts"][0] == "h9"  # named first among the A100s it shares the driver with
    (stack,) = [g for g in doc["problems"] if g["id"] == "stack"]
    usual = passing(real, "x")["driver"]["version"]
    assert stack["nodes"] == ["h9"] and stack["summary"] == (
        f"NVIDIA driver 535.54.03 where 6 of the 7 nodes of {h100} have {usual} (as the nodes of {A100} have)"
    )
    # a model of one node, on a driver no pool runs: not a pool, its driver drift
    docs = _pools_fleet(real, p0="NVIDIA H100 PCIe")
    docs["p0"]["driver"]["version"] = "470.256.02"
    proc, doc = fleet(*write(tmp_path / "one", docs))
    assert doc is not None, proc.stderr
    assert {"driver.version", "gpu.model"} <= {d["field"] for d in drifting_of(doc)} and doc["status"] == "warn"
    # GPUs with no name: no pool of ""
    doc = run("unnamed", e0="", e1="", e2="")
    assert [v["models"] for d in by_model_of(doc) for v in d["values"] if "(unnamed GPU)" in v["models"]] == []
    assert "(unnamed GPU)" in [v["value"] for d in doc["drift"] if d["field"] == "gpu.model" for v in d["values"]]
    # a name holding " + ": a pool like any other
    doc = run("plus", **{f"p{i}": "NVIDIA A100 + NVLink bridge" for i in range(2)})
    assert "NVIDIA A100 + NVLink bridge" in [m for d in by_model_of(doc) for v in d["values"] for m in v["models"]]


def test_a_hosts_slow_gpus_are_named_together() -> None:
    """Every GPU of one node slow is one name and a range ("hold GPUs 0–7": the node, its power or cooling),
    not eight names of one host; other hosts' and lone GPUs as they are."""
    from envcheck.fleet.render import on_nodes, with_devices

    def devices(*indexes: int) -> list[dict[str, Any]]:
        return [{"index": i, "device_kind": "gpu", "model": "H100"} for i in indexes]

    doc = {
        "nodes": [{"hostname": h} for h in ("hold", "n1", "n2", "n3")],
        "slow_devices": [
            {"hostname": "hold", "devices": devices(*range(8))},
            {"hostname": "n1", "devices": devices(2)},
            {"hostname": "n2", "devices": devices(0, 1, 4)},
        ],
        "problems": [{"report": "fleet", "id": "slow.gpu", "model": "H100", "count": 3, "nodes": ["hold", "n1", "n2"]}],
    }
    (group,) = with_devices(doc)
    assert on_nodes(group, 4) == "on 3 hosts: hold GPUs 0–7, n1 GPU 2, n2 GPUs 0, 1, 4"


def test_gpus_a_driver_names_otherwise_are_compared_with_their_models_fleet(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A node whose driver names its H100s without "NVIDIA " and in lower case, every GPU 30 % slow: its
    figures are compared with the other H100s' and each of its GPUs is slow (compared only among
    themselves, they were all at their median and the node passed)."""
    docs: dict[str, dict[str, Any]] = {}
    for i in range(4):
        doctor = passing(real, f"n{i}")
        if i == 3:
            for g in doctor["gpus"]:
                g["name"] = g["name"].removeprefix("NVIDIA ").lower()
        docs[f"n{i}/doctor"] = doctor
        docs[f"n{i}/bench"] = gpu_bench(real["bench_cpu"], doctor, value=700.0 * (0.7 if i == 3 else 1.0))
    proc, doc = fleet(*write(tmp_path, docs))
    assert doc is not None, proc.stderr
    h100 = docs["n0/doctor"]["gpus"][0]["name"]
    assert {c["model"] for c in doc["comparisons"]} == {h100}
    assert doc["summary"]["slow_gpus"] == 4 and node_of(doc, "n3")["status"] == "fail"
    assert {f["hostname"] for f in doc["slow_gpus"]} == {"n3"}
    # and one GPU short of that model's nodes, spelled so, warns as any of them would
    docs["n3/doctor"]["gpus"] = docs["n3/doctor"]["gpus"][:-1]
    proc, doc = fleet(*write(tmp_path / "short", docs))
    assert doc is not None, proc.stderr
    (short,) = [g for g in doc["problems"] if g["id"] == "gpu.count"]
    assert (
        short["nodes"] == ["n3"]
        and short["summary"] == f"3 GPUs ({h100}) where 3 of the 4 nodes with this model have 4"
    )


def test_a_pool_that_runs_a_kind_warns_of_a_node_without_it_however_small(
    real: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Eight H100 nodes and two A100 nodes, all benched but one A100: a pool of two whose one bench is lost
    is no majority of its pool, and the node warns as it would in a fleet of one model (held to the fleet)."""
    docs = _pools_benched(real, 10, a100_from=8, benched=range(9))
    write(tmp_path, docs)
    proc, doc = fleet(str(tmp_path))
    assert doc is not None, proc.stderr
    (group,) = [g for g in doc["problems"] if g["id"] == "report.missing"]
    assert group["nodes"] == ["n9"] and group["summary"] == "no bench report, where 9 of the 10 nodes have one"


def test_gpus_whose_names_nvml_could_not_read_are_no_pool(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Ten H100 nodes and two whose GPUs have no name (null: NVML could not read it) on another driver: no
    pool "None" agrees with itself; the driver drifts and the fleet warns."""
    docs = {f"n{i}": passing(real, f"n{i}") for i in range(12)}
    for host in ("n10", "n11"):
        docs[host]["driver"]["version"] = "470.1"
        for g in docs[host]["gpus"]:
            g["name"] = None
    proc, doc = fleet(*write(tmp_path, docs))
    assert doc is not None, proc.stderr
    assert {"driver.version", "gpu.model"} <= {d["field"] for d in drifting_of(doc)} and by_model_of(doc) == []
    (model,) = [d for d in doc["drift"] if d["field"] == "gpu.model"]
    assert model["values"][1]["value"] == "(unnamed GPU)" and doc["status"] == "warn"
    # one GPU of a node unnamed among pools: no mixed node that warns of itself, its GPU model drifts
    docs = _pools_fleet(real, x0="NVIDIA A100-SXM4-80GB")
    docs["x0"]["gpus"][0]["name"] = None
    proc, doc = fleet(*write(tmp_path / "one-unnamed", docs))
    assert doc is not None, proc.stderr
    assert [d["field"] for d in drifting_of(doc)] == ["gpu.model"] and doc["status"] == "warn"


def test_a_stack_value_is_said_as_another_pools_only_of_a_pool() -> None:
    """A node off its pool's driver, on the driver a node of mixed GPUs and a node of unnamed GPUs run: no
    pool runs it, so the warning credits none ("as the nodes of (unnamed GPU), 1× A + 3× B have" read as if
    they were pools)."""
    from envcheck.core.model import Status
    from envcheck.fleet.kinds import ReportRef
    from envcheck.fleet.merge import _off_stack

    def node(model: str, driver: str) -> dict[str, tuple[tuple[int, float], Any]]:
        return {"gpu.model": ((0, 0.0), model), "driver.version": ((0, 0.0), driver)}

    fields = {f"h{i}": node("H100", "550") for i in range(9)} | {
        "h9": node("H100", "535"),
        "m0": node("1× A100 + 3× H100", "535"),
        "u0": node("(unnamed GPU)", "535"),
    }
    refs = {h: [ReportRef(f"{h}.json", "doctor", Status.OK, 0, None)] for h in fields}
    (warned,) = _off_stack(fields, refs)["h9"]
    assert warned.summary == "NVIDIA driver 535 where 9 of the 10 nodes of H100 have 550"
    # two A100 nodes on it are a pool: said as theirs
    fields |= {"a0": node("A100", "535"), "a1": node("A100", "535")}
    (warned,) = _off_stack(fields, refs | {h: refs["h0"] for h in ("a0", "a1")})["h9"]
    assert warned.summary.endswith("have 550 (as the nodes of A100 have)")


def test_benchmarks_new_on_other_nodes_since_the_previous_report_are_not_folded() -> None:
    """Two benchmarks that crashed alike, one of them new since the previous report: one entry said "new"
    would be wrong of the other, so they are two."""
    from envcheck.fleet.render import folded

    def crashed(bench: str, new: list[str] | None) -> dict[str, Any]:
        words = f"{bench} fp32 on cuda:3: CUDA error: an illegal memory access"
        group = {"report": "bench", "id": bench, "status": "crash", "nodes": ["n2"], "summary": words}
        return group | ({"new_nodes": new} if new is not None else {})

    assert [g["id"] for g in folded([crashed("matmul", None), crashed("memory", ["n2"])])] == ["matmul", "memory"]
    assert [(g["id"], g.get("also")) for g in folded([crashed("matmul", ["n2"]), crashed("memory", ["n2"])])] == [
        ("matmul", ["memory"])
    ]
