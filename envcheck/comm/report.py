"""The ``envcheck.comm/1`` document: the envelope every report carries, then the world, the results, the
p2p matrix, the problems and the lab spec's verdicts. Renderers (text, JSON, Markdown) read this one
document, never the live report.

Fields are only ever added under this schema name. Non-finite numbers are null (strict JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envcheck.comm.app import CommReport
from envcheck.comm.reference import references
from envcheck.core.report import COMM_SCHEMA, GpuIdentity, HostIdentity, Summary, envelope, p2p_nodes, verdict_of


def comm_document(report: CommReport) -> dict[str, Any]:
    host = HostIdentity.here()
    gpus = [
        GpuIdentity(int(r.device.split(":")[1]), r.gpu_name, r.gpu_uuid, None)
        for r in report.ranks
        if r.host == host.hostname and r.device and r.device.startswith("cuda:")
    ]
    peaks = report.peaks()
    doc = {
        **envelope(
            COMM_SCHEMA,
            generated_at=report.generated_at,
            duration_s=report.duration_s,
            host=host,
            gpus=gpus or None,
        ),
        "options": report.request.describe(),
        "world": {
            "size": report.size,
            "backend": report.backend,
            "launcher": report.launcher,
            "ranks": [r.to_json() for r in report.ranks],
        },
        "iters": report.iters,
        "warmup": report.warmup,
        "results": [r.to_json() for r in report.results],
        "peaks": peaks,
        "latency": report.latencies(),
        "reference": references(
            {p["op"]: p["busbw_gb_s"] for p in peaks if p.get("busbw_gb_s") is not None},
            [r.gpu_name for r in report.ranks],
            len({r.host for r in report.ranks}),
        ),
        "p2p": report.p2p.to_json() if report.p2p else None,
        "problems": [p.to_json() for p in report.problems],
        # Added: NCCL's own account of its transport per rank, and what is wrong with it.
        "transport": report.transport.to_json() if report.transport else None,
        "spec": [v.to_json() for v in report.spec_verdicts] if report.spec_verdicts is not None else None,
        "completed": report.completed,
        "interrupted": report.interrupted,
        "stopped_by": report.stopped_by,
        # Added to the schema: every other kind states its status; comm's is that of its verdicts.
        "status": report.status.value,
        "exit_code": int(report.exit_code),
        "summary": summary(report),
    }
    return doc


def summary(report: CommReport) -> dict[str, Any]:
    """How many results verified and what went wrong, and the verdict and line every format ends with
    (envcheck.core.report.Summary)."""
    counts = {
        "results": len(report.results),
        "verified": sum(r.verified for r in report.results),
        "wrong": sum(not r.verified for r in report.results),
        "problems": len(report.problems),
        "slow_pairs": len(report.p2p.slow_pairs) if report.p2p else 0,
        "below_spec": sum(getattr(v, "passed", None) is False for v in report.spec_verdicts or ()),
        "transport_findings": len(report.transport.findings) if report.transport else 0,
    }
    text = ", ".join(summary_words(counts, completed=report.completed))
    return Summary(verdict_of([report.status], interrupted=report.interrupted), text, counts).to_json()


def summary_words(counts: Mapping[str, Any], *, completed: object) -> list[str]:
    """'30 of 30 results verified', '1 problem(s)', ...: from the summary's counts (also a document's, read
    back by the renderers)."""
    parts = [f"{counts.get('verified', 0)} of {counts.get('results', 0)} results verified"]
    if counts.get("problems"):
        parts.append(f"{counts['problems']} problem(s)")
    if counts.get("slow_pairs"):
        parts.append(f"{counts['slow_pairs']} slow link(s)")
    if counts.get("below_spec"):
        parts.append(f"{counts['below_spec']} below spec")
    if counts.get("transport_findings"):
        parts.append(f"{counts['transport_findings']} transport finding(s)")
    if not completed:
        parts.append("the run did not finish")
    return parts


#: Past this many nodes, the text, Markdown and HTML reports show only the nodes with a slow link (JSON
#: holds every node's block).
P2P_NODES_SHOWN = 4


def p2p_shown(p2p: Any) -> tuple[list[dict[str, Any]], int]:
    """The P2P blocks a human report shows, and how many it leaves out (:data:`P2P_NODES_SHOWN`): every
    node of a small world; of a large one, the nodes with a slow link."""
    nodes = p2p_nodes(p2p)
    if len(nodes) <= P2P_NODES_SHOWN:
        return nodes, 0
    slow = {s.get("src") for s in (p2p.get("slow_pairs") or []) if isinstance(s, dict)}
    shown = [n for n in nodes if slow & set(n["ranks"])]
    return shown, len(nodes) - len(shown)
