"""Environment-variable checks: the variables that change how CUDA, NCCL and torch behave, and
``LD_LIBRARY_PATH`` entries that shadow the CUDA libraries torch ships.

Values pass through :mod:`envcheck.core.redact` before they reach a summary or details, so the report is safe
to paste into a public issue.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from envcheck.core.model import Status, Verdict, fail, ok, warn
from envcheck.core.probing import Context
from envcheck.core.redact import redact_env
from envcheck.doctor.areas import check
from envcheck.doctor.reading import nvml_state
from envcheck.probes import packages as _packages_probe  # noqa: F401 - registers the "packages" probe
from envcheck.probes.nvml import inventory as _nvml_probe  # noqa: F401 - registers the "nvml" probe
from envcheck.probes.packages import PackagesState
from envcheck.probes.visible import VISIBLE, device_order_note, parse_visible_devices

#: Exact names and prefixes of variables that change GPU behaviour (CUDA runtime, cuBLAS/cuDNN, NCCL,
#: torch, the NVIDIA container runtime, ROCm's device masks) or which libraries get loaded.
GPU_VAR_NAMES = frozenset({"OMP_NUM_THREADS", "LD_PRELOAD", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"})
GPU_VAR_PREFIXES = ("CUDA_", "CUBLAS_", "CUBLASLT_", "CUDNN_", "NCCL_", "PYTORCH_", "TORCH_", "TORCHINDUCTOR_",
                    "NVIDIA_", "TF32_")  # fmt: skip


def gpu_vars(env: Mapping[str, str]) -> dict[str, str]:
    """The GPU-relevant variables of ``env``, sorted, with secret-looking values redacted."""
    chosen = {k: v for k, v in env.items() if k in GPU_VAR_NAMES or k.startswith(GPU_VAR_PREFIXES)}
    return dict(sorted(redact_env(chosen).items()))


@check("env.gpu_vars", "GPU environment variables")
def check_gpu_vars(ctx: Context) -> Verdict:
    """Shows the variables that change GPU behaviour and flags the ones that hide GPUs or slow everything."""
    shown = gpu_vars(ctx.env)
    details: dict[str, Any] = {"variables": shown}
    nvml = nvml_state(ctx, consult=True)
    gpus = nvml.gpus if nvml else []
    problems: list[str] = []
    fixes: list[str] = []
    unset: list[str] = []
    for name, harm in _DEBUG_FLAGS.items():
        if ctx.env.get(name, "").strip() == "1":
            problems.append(f"{name}=1 {harm}")
            unset.append(name)
    if unset:
        fixes.append(f"Unset {', '.join(unset)} outside debugging sessions.")
    # Without NVML there are no GPUs to resolve indices and UUIDs against: the variable is only shown.
    visibility = parse_visible_devices(ctx.env[VISIBLE], gpus).problems if nvml and VISIBLE in ctx.env else []
    if visibility:
        problems.extend(sentence for _, sentence in visibility)
        fixes.append(f"Fix or unset {VISIBLE} (`nvidia-smi -L` lists the GPUs' indices and UUIDs).")
    notes = [n for n in [device_order_note(ctx.env, gpus)] if n]
    for name, hint in _SLOWING_FLAGS.items():
        if ctx.env.get(name, "").strip() == "1":
            notes.append(f"{name}=1: {hint}")
    listing = ", ".join(f"{k}={v}" for k, v in shown.items())
    summary = f"{len(shown)} set: {listing}" if shown else "none of the GPU-related variables is set"
    if notes:
        details["notes"] = notes
        summary += "; note: " + "; ".join(notes)
    if problems:
        command = f"unset {' '.join(unset)}" if unset else None
        verdict = fail if any(status is Status.FAIL for status, _ in visibility) else warn
        return verdict(f"{'; '.join(problems)} ({summary})", " ".join(fixes), command, **details)
    return ok(summary, **details)


#: Debugging switches that cost a lot of speed when left on.
_DEBUG_FLAGS = {
    "CUDA_LAUNCH_BLOCKING": "serialises every kernel launch (for debugging; everything runs much slower)",
    "PYTORCH_NO_CUDA_MEMORY_CACHING": "turns off torch's caching allocator (for debugging; allocations get slow)",
}


#: Variables often left over from debugging a network problem; legitimate as workarounds, so only noted.
_SLOWING_FLAGS = {
    "NCCL_P2P_DISABLE": "GPU-to-GPU traffic goes through host memory instead of NVLink/PCIe peer-to-peer",
    "NCCL_IB_DISABLE": "NCCL will not use InfiniBand/RoCE and falls back to TCP sockets",
    "NCCL_SHM_DISABLE": "NCCL will not use shared memory between processes on a node",
}


@check("env.ld_library_path", "LD_LIBRARY_PATH")
def check_ld_library_path(ctx: Context) -> Verdict:
    """No LD_LIBRARY_PATH entry holds other copies of the CUDA libraries torch ships (they would load first)."""
    state: PackagesState = ctx.probe("packages")
    entries = state.ld_library_path
    if not entries:
        return ok("LD_LIBRARY_PATH is not set")
    torch = state.torch
    own_dirs = set(torch.own_lib_dirs) if torch else set()
    own_libs = set(torch.own_libs) if torch else set()
    foreign = [e for e in entries if e.cuda_libs and os.path.realpath(e.path or ".") not in own_dirs]
    # The loader only substitutes a file of the same name (soname): libcudart.so.12 cannot stand in for torch's
    # libcudart.so.13. Where torch's own files are unknown, any CUDA library is suspect.
    clashes = {e.path: [lib for lib in e.cuda_libs if not own_libs or lib in own_libs] for e in foreign}
    shadowing = [e for e in foreign if clashes[e.path]]
    other_versions = [e for e in foreign if not clashes[e.path]]
    missing = [e.path for e in entries if not e.exists]
    details: dict[str, Any] = {
        "entries": [{"path": e.path, "exists": e.exists, "cuda_libs": e.cuda_libs} for e in entries],
        "torch_flavour": torch.flavour if torch else None,
    }
    summary = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: " + ", ".join(
        repr(e.path) if not e.path else e.path for e in entries[:_LISTED]
    )
    if len(entries) > _LISTED:
        summary += f", … {len(entries) - _LISTED} more"
    cuda_torch = torch is not None and torch.kind == "cuda"
    notes = []
    if missing:
        notes.append(f"entries that do not exist: {', '.join(repr(p) for p in missing)}")
    if any(e.path == "" for e in entries):
        notes.append("an empty entry makes the loader search the current directory")
    if shadowing and not cuda_torch:
        notes.append(f"CUDA libraries in {', '.join(e.path for e in shadowing)} (no CUDA build of torch to shadow)")
    if other_versions and cuda_torch:
        paths = ", ".join(e.path for e in other_versions)
        notes.append(f"CUDA libraries of other versions in {paths} (not the files this torch loads)")
    if notes:
        details["notes"] = notes
        summary += "; " + "; ".join(notes)
    if shadowing and cuda_torch:
        libs = "; ".join(f"{e.path}: {', '.join(_short(clashes[e.path]))}" for e in shadowing)
        return warn(
            f"CUDA libraries that can load before torch's own ({details['torch_flavour']}): {libs} ({summary})",
            "The loader searches LD_LIBRARY_PATH before a library's RUNPATH, so these copies can replace the CUDA "
            "libraries torch ships (errors like 'undefined symbol' or 'CUDNN_STATUS_VERSION_MISMATCH'); "
            "torch.libraries says which files torch really loaded. Remove these entries for Python jobs (or unset "
            "LD_LIBRARY_PATH).",
            "unset LD_LIBRARY_PATH",
            **details,
        )
    return ok(summary, **details)


_LISTED = 6


def _short(libs: list[str], limit: int = 4) -> list[str]:
    return libs[:limit] + ([f"… {len(libs) - limit} more"] if len(libs) > limit else [])
