"""The ``envcheck.comm/1`` document: the envelope every report carries, then the world, the results, the
p2p matrix, the problems and the lab spec's verdicts. Renderers (text, JSON, Markdown) read this one
document, never the live report.

Fields are only ever added under this schema name. Non-finite numbers are null (strict JSON).
"""

from __future__ import annotations

from typing import Any

from envcheck.comm.app import CommReport
from envcheck.comm.reference import references
from envcheck.core.report import COMM_SCHEMA, GpuIdentity, HostIdentity, envelope


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
        "reference": references(
            {p["op"]: p["busbw_gb_s"] for p in peaks if p.get("busbw_gb_s") is not None},
            [r.gpu_name for r in report.ranks],
            len({r.host for r in report.ranks}),
        ),
        "p2p": report.p2p.to_json() if report.p2p else None,
        "problems": [p.to_json() for p in report.problems],
        "spec": [v.to_json() for v in report.spec_verdicts] if report.spec_verdicts is not None else None,
        "completed": report.completed,
        "interrupted": report.interrupted,
        # Added to the schema: every other kind states its status; comm's is that of its verdicts.
        "status": report.status.value,
        "exit_code": int(report.exit_code),
        "summary": {
            "results": len(report.results),
            "verified": sum(r.verified for r in report.results),
            "wrong": sum(not r.verified for r in report.results),
            "problems": len(report.problems),
            "slow_pairs": len(report.p2p.slow_pairs) if report.p2p else 0,
            "below_spec": sum(getattr(v, "passed", None) is False for v in report.spec_verdicts or ()),
        },
    }
    return doc
