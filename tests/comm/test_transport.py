"""The comm report's transport: each rank's parsed NCCL log, injected where rank 0's raw account enters
the report (no GPU here), judged into findings that name the doctor's net checks and the fix."""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from envcheck.comm.app import CommRequest, build_report
from envcheck.comm.report import comm_document
from envcheck.core.model import Status
from envcheck.probes import nccl_log
from envcheck.render import RenderOptions, make_console, render
from tests import nettree

LOGS = Path(__file__).parents[1] / "probes" / "nccl_logs"


def accounts(name: str, hcas: list[str]) -> list[dict]:
    """What each rank sends rank 0: its own process of the saved log, and its node's HCAs."""
    return [
        {"rank": p.to_json()["rank"], "host": p.host, "hcas": hcas, "log": "read", "processes": [p.to_json()]}
        for p in nccl_log.parse((LOGS / name).read_text())
    ]


def build(nccl, backend="nccl"):
    raw = {
        "world": {"size": 2, "backend": backend, "launcher": "torchrun",
                  "ranks": [{"rank": r, "host": f"gpu{19 + r}", "device": "cuda:0"} for r in range(2)]},
        "records": [], "problems": [], "completed": True, "nccl": nccl,
    }  # fmt: skip
    request = CommRequest.parse(device="cuda", ops_text="all_reduce")
    return build_report(request, raw, generated_at=datetime.now(timezone.utc), started=time.monotonic())


def test_ib_with_gdr_is_reported_per_rank_with_no_finding():
    report = build(accounts("ib_gdr.log", ["mlx5_0", "mlx5_1"]))
    doc = comm_document(report)
    t = doc["transport"]
    assert t["captured"] is True and t["findings"] == []
    assert [(r["rank"], r["host"], r["network"], r["hcas_used"], r["gdr_links"]) for r in t["ranks"]] == [
        (0, "gpu19", "IB", ["mlx5_0", "mlx5_1"], 4),
        (1, "gpu20", "IB", ["mlx5_0", "mlx5_1"], 4),
    ]
    assert t["ranks"][0]["peers"][0]["transport"] == "IB" and report.status is Status.OK


def test_sockets_while_the_node_has_hcas_is_a_finding_naming_net_ports_and_the_fix():
    report = build(accounts("socket_fallback.log", ["mlx5_0"]))
    (finding,) = report.transport.findings
    assert finding.host == "node03" and finding.ranks == (0,)
    assert "NET/Socket" in finding.what and "mlx5_0" in finding.what
    assert {"net.ports", "net.gpudirect"} <= set(finding.checks)
    assert "envcheck doctor net.ports net.gpudirect" in finding.fix and "/dev/infiniband" in finding.fix
    assert report.status is Status.WARN
    assert comm_document(report)["summary"]["transport_findings"] == 1


def node_accounts(name: str, env: dict[str, str]) -> list[dict]:
    """As :func:`accounts`, with what a rank reads of its node (a captured tree, its NCCL_IB_HCA) as it reads it."""
    return [
        {"rank": p.to_json()["rank"], "host": p.host, **nccl_log.rdma_on_node(env), "log": "read",
         "processes": [p.to_json()]}
        for p in nccl_log.parse((LOGS / name).read_text())
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "named"),
    [("^mlx5", ""), ("=mlx5_8,mlx5_9", ", naming mlx5_8, mlx5_9, which it does not have"), ("mlx4", ", naming mlx4")],
)
def test_sockets_because_nccl_ib_hca_leaves_out_every_hca_name_it_as_the_cause_and_the_fix(tmp_path, value, named):
    env = {**nettree.hgx_ndr(tmp_path), "NCCL_IB_HCA": value}
    report = build(node_accounts("socket_fallback.log", env))
    (finding,) = report.transport.findings
    assert finding.host == "node03" and finding.ranks == (0,)
    assert f"NCCL_IB_HCA={value} leaves out every one of them{named}" in finding.what
    assert "NET/Socket" in finding.what and finding.checks == ("net.ports",)
    assert finding.fix.startswith("Unset NCCL_IB_HCA") and "mlx5_0, mlx5_1" in finding.fix
    assert "ibv_devices" in finding.fix and "/dev/infiniband" not in finding.fix
    (rank,) = comm_document(report)["transport"]["ranks"]
    assert rank["nccl_ib_hca"] == value and rank["hcas_kept"] == [] and ["mlx5_7", 1] in rank["hca_ports"]


@pytest.mark.parametrize("value", [None, "mlx5_0:1", "^=mlx5_0", "=mlx5_3,mlx5_9"])
def test_sockets_where_nccl_ib_hca_keeps_an_hca_keep_the_port_and_peermem_causes(tmp_path, value):
    env = nettree.hgx_port_down(tmp_path) | ({"NCCL_IB_HCA": value} if value else {})
    (finding,) = build(node_accounts("socket_fallback.log", env)).transport.findings
    assert "NCCL_IB_HCA" not in finding.what and "/dev/infiniband" in finding.fix
    assert {"net.ports", "net.gpudirect"} <= set(finding.checks)


def test_sockets_on_a_node_without_hcas_is_no_finding():
    assert build(accounts("socket_fallback.log", [])).transport.findings == ()


def test_gdr_off_is_a_finding_per_host_naming_net_gpudirect():
    report = build(accounts("ib_no_gdr.log", ["mlx5_0", "mlx5_1"]))
    assert [(f.host, f.checks) for f in report.transport.findings] == [
        ("gpu19", ("net.gpudirect",)),
        ("gpu20", ("net.gpudirect",)),
    ]
    assert "mlx5_0, mlx5_1" in report.transport.findings[0].what
    assert "modprobe nvidia-peermem" in report.transport.findings[0].fix


def test_the_text_and_markdown_reports_show_the_transport_and_the_finding():
    doc = comm_document(build(accounts("socket_fallback.log", ["mlx5_0"])))
    for fmt in ("text", "markdown"):
        buffer = io.StringIO()
        render(doc, fmt, make_console(buffer, for_file=True), RenderOptions())
        out = buffer.getvalue()
        assert "Socket 4 link(s)" in out and "net.ports" in out, fmt


def test_gloo_writes_no_nccl_log_and_the_report_says_so():
    t = comm_document(build(None, backend="gloo"))["transport"]
    assert t == {"captured": False, "note": "gloo writes no NCCL log: no transport to read", "ranks": [],
                 "findings": []}  # fmt: skip


def test_an_nccl_run_whose_log_is_empty_says_nccl_wrote_none():
    t = build([{"rank": 0, "host": "h", "hcas": [], "log": "none", "processes": []}]).transport
    assert t.findings == () and "wrote no log" in (t.note or "")
