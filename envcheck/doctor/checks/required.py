"""Checks a user opts into with a flag rather than selects by area: they turn "fine for this kind of
machine" into "not what this job needs". Ids are stable like every check's."""

from __future__ import annotations

from envcheck.core.model import Verdict, fail, ok
from envcheck.core.probing import Context
from envcheck.doctor.areas import check
from envcheck.doctor.reading import nvml_state
from envcheck.probes.nvml import inventory as _nvml_probe  # noqa: F401 - registers the "nvml" probe


@check("gpu.required", "A GPU answers (--require-gpu)")
def gpu_required(ctx: Context) -> Verdict:
    """Run with ``--require-gpu``: a machine (or a GPU container started without ``--gpus``) where no
    NVIDIA GPU answers fails, instead of being judged ready for CPU work."""
    state = nvml_state(ctx, started=False)
    answering = sum(1 for g in state.gpus if g.answers) if state.available else 0
    if answering:
        return ok(f"{answering} GPU(s) answer", count=answering)
    why = {
        "ok": "the driver counts no GPU"
        if not state.gpus
        else "no GPU answers: each is lost or refused to this user (see gpu.inventory)",
        "no_library": "no NVIDIA driver library (libnvidia-ml.so.1) is installed or mounted",
    }.get(state.status, f"NVML did not start ({state.status.replace('_', ' ')}; see driver.nvml)")
    return fail(
        f"no NVIDIA GPU answers, and --require-gpu asks for one: {why}",
        "On a GPU machine see driver.nvml and gpu.inventory; in a container, start it with GPU access "
        "(`docker run --gpus all …`, or the NVIDIA device plugin's `nvidia.com/gpu` resource on Kubernetes).",
        "nvidia-smi -L",
        status=state.status,
    )
