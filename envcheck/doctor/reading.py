"""How a check reads a probe it shares with other checks: here, NVML.

It lives beside the checks rather than among them so that a lab spec's checks (envcheck.spec.checks) read
NVML the same way without importing the doctor's check modules (importing one imports them all).
"""

from __future__ import annotations

from envcheck.core.model import SkipCheck
from envcheck.core.probing import Context, ProbeFailed, ProbeTimeout
from envcheck.probes.nvml.inventory import NvmlState


def nvml_state(
    ctx: Context, *, started: bool = True, consult: bool = False, skip: str | None = None
) -> NvmlState | None:
    """The ``nvml`` probe's state: the one way a check reads NVML, so that every check treats NVML's absence
    the same way and ``driver.nvml`` alone judges it.

    ``started``: the check needs NVML running; when it did not start, the check skips ("NVML unavailable
    (...); see driver.nvml"), or, consulting, gets None. Without it the state comes whatever its status.
    ``consult``: the check judges something else and only consults NVML, so a hung or broken probe gives None
    (``driver.nvml`` gives that verdict) instead of becoming this check's verdict.
    ``skip``: consulting, skip with these words where there would be None.
    """
    state: NvmlState | None
    try:
        state = ctx.probe("nvml")
    except (ProbeTimeout, ProbeFailed):
        if not consult:
            raise
        state = None
    if state is not None and started and not state.available:
        if not consult:
            raise SkipCheck(f"NVML unavailable ({state.status.replace('_', ' ')}); see driver.nvml")
        state = None
    if state is None and skip is not None:
        raise SkipCheck(skip)
    return state
