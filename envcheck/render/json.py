"""The doctor's JSON contract (``envcheck.doctor/1``), which other tools rely on.

Top-level ``status`` is the worst of the checks (a crashed check counts as ``fail``); ``gpus`` is empty
where there are none; ``driver`` is null without a working driver. Additive changes keep the schema
version; anything that removes or renames a field bumps it.
"""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from typing import Any

from envcheck import __version__
from envcheck.core.model import to_jsonable
from envcheck.runner import Report

SCHEMA = "envcheck.doctor/1"


def doctor_document(report: Report) -> dict[str, Any]:
    nvml = report.probes.peek("nvml")
    torch = report.probes.peek("torch")
    driver = None
    gpus: list[dict[str, Any]] = []
    if nvml is not None and nvml.available:
        driver = {
            "version": nvml.driver_version,
            "cuda_version": nvml.cuda_driver_version,
            "nvml_version": nvml.nvml_version,
        }
        gpus = [to_jsonable(g) for g in nvml.gpus]
    counts = {s: sum(1 for r in report.results if r.status.value == s) for s in ("ok", "warn", "fail", "skip", "crash")}
    return {
        "schema": SCHEMA,
        "status": report.status.value,
        "envcheck_version": __version__,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"hostname": platform.node(), "python": sys.version.split()[0], "platform": platform.platform()},
        "duration_s": round(report.duration_s, 3),
        "deadline_s": report.deadline_s,
        "counts": counts,
        "checks": [r.to_json() for r in report.results],
        "driver": driver,
        "gpus": gpus,
        "torch": to_jsonable(torch) if torch is not None else None,
    }
