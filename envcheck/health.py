"""The Docker healthcheck's judgement, as one line: ``healthy: ...`` or ``unhealthy: <the first problem>``.

Docker keeps only the last few outputs of a healthcheck in ``docker inspect``, so the line leads with
what an operator needs: which check failed and why, then how many more there are.
"""

from __future__ import annotations

import os

from envcheck.core import registry
from envcheck.core.model import Status
from envcheck.runner import run_checks
from envcheck.spec import SpecError, find_spec


def healthcheck_line(deadline_s: float, *, require_gpu: bool = False, spec_path: str | None = None) -> tuple[bool, str]:
    """(healthy, the line to print). A broken spec is unhealthy: the lab asked for something we cannot read.
    With ``require_gpu`` a container whose GPUs are gone (started without ``--gpus``) is unhealthy too: the
    same ``gpu.required`` check as ``doctor --require-gpu``."""
    try:
        spec = find_spec(spec_path, os.environ)
    except SpecError as exc:
        return False, f"unhealthy: lab spec unusable: {exc}"
    specs = registry.select_checks([], quick=True, opt_in=("gpu.required",) if require_gpu else ())
    if spec is not None:
        from envcheck.spec.checks import spec_checks

        specs += spec_checks(spec)
    report = run_checks(specs, deadline_s=deadline_s)
    bad = [r for r in report.results if r.status.is_problem]
    warned = [r for r in report.results if r.status is Status.WARN]
    took = f"({report.duration_s:.1f} s)"
    if bad:
        more = f"; {len(bad) - 1} more problem(s): {', '.join(r.id for r in bad[1:])}" if len(bad) > 1 else ""
        return False, f"unhealthy: {bad[0].id}: {bad[0].summary}{more} {took}"
    nvml = report.probes.peek("nvml")
    count = sum(1 for g in nvml.gpus if g.answers) if nvml is not None and nvml.available else 0
    gpus = f"{count} GPU(s) answer" if count else "no NVIDIA GPUs"
    with_spec = f", lab spec {spec.path} met" if spec is not None else ""
    warnings = f", {len(warned)} warning(s): {', '.join(r.id for r in warned)}" if warned else ""
    return True, f"healthy: {gpus}{with_spec}{warnings} {took}"
