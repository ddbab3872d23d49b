"""CUDA's reading of ``CUDA_VISIBLE_DEVICES``, shared by the torch and env checks.

``torch.devices`` and ``torch.arch`` need to know which of NVML's GPUs CUDA will show; ``env.gpu_vars``
needs to know whether the variable, as set, hides GPUs by mistake. Both get the same answer from here, so
the rules CUDA applies (and the words a user reads about them) live in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from envcheck.core.model import Status, available
from envcheck.probes.nvml.inventory import GpuInfo

VISIBLE = "CUDA_VISIBLE_DEVICES"


@dataclass
class Visibility:
    """Which NVML GPUs CUDA will show, as CUDA reads ``CUDA_VISIBLE_DEVICES``.

    ``indices`` are NVML indices in CUDA's order; None when they cannot be told from NVML (MIG
    instances). ``problems`` are (status, sentence) pairs naming the variable."""

    indices: list[int] | None
    problems: list[tuple[Status, str]] = field(default_factory=list)
    #: The user hid every GPU on purpose (``""`` or ``-1``), as opposed to by a mistake.
    hidden_on_purpose: bool = False


def parse_visible_devices(value: str | None, gpus: list[GpuInfo]) -> Visibility:
    """Read ``CUDA_VISIBLE_DEVICES`` the way CUDA does.

    CUDA's rules, as PyTorch mirrors them (``torch/cuda/__init__.py``: ``_parse_visible_devices`` and
    ``_transform_uuid_to_ordinals``) and NVIDIA documents them (CUDA C++ Programming Guide, "CUDA
    Environment Variables"): entries are indices or ``GPU-``/``MIG-`` UUIDs, where a unique prefix of a
    UUID is enough; the first invalid entry (out of range, unknown, ambiguous, negative) ends the list
    and hides every entry after it; a GPU named twice hides *every* GPU. Indices count in CUDA's order,
    which matches NVML's when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and, for GPUs of one model, in practice.
    """
    if value is None:
        return Visibility(list(range(len(gpus))))
    if not value.strip():
        return Visibility([], [(Status.WARN, f"{VISIBLE} is set but empty, which hides every GPU")], True)
    entries = [e.strip() for e in value.split(",")]
    if entries[0].startswith("MIG-"):
        return Visibility(None)  # MIG instances: NVML's GPU list cannot say which exist
    indices: list[int] = []
    problems: list[tuple[Status, str]] = []
    for position, entry in enumerate(entries):
        index, why = _resolve(entry, gpus)
        if index is None:
            if position == 0 and re.fullmatch(r"-\d+", entry):
                return Visibility([], [(Status.WARN, f"{VISIBLE}={value} hides every GPU")], True)
            if position == len(entries) - 1 and (entry == "" or re.fullmatch(r"-\d+", entry)):
                break  # a trailing comma or "-1" only ends the list after every GPU meant: harmless
            ignored = ", ".join(entries[position:])
            sentence = f"{VISIBLE} entry {entry!r} {why}; CUDA ignores it and all after it ({ignored})"
            problems.append((Status.WARN, sentence))
            break
        if index in indices:
            sentence = f"{VISIBLE}={value} names GPU {index} twice, and CUDA then shows no GPU at all"
            problems.append((Status.FAIL, sentence))
            return Visibility([], problems)
        indices.append(index)
    if not indices and problems:
        problems = [(Status.FAIL, sentence) for _, sentence in problems]
    return Visibility(indices, problems)


def device_order_note(env: Mapping[str, str], gpus: list[GpuInfo]) -> str | None:
    """Why indices in CUDA_VISIBLE_DEVICES may not be nvidia-smi's, when that is so.

    CUDA numbers GPUs fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (CUDA C++ Programming Guide,
    "CUDA Environment Variables"); NVML and nvidia-smi number them by PCI bus. On a machine with one
    GPU model the two orders agree; with mixed models, index 0 may be a different card."""
    value = env.get(VISIBLE)
    if value is None or env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" or len({str(g.name) for g in gpus}) < 2:
        return None
    if not any(re.fullmatch(r"\d+", e.strip()) for e in value.split(",")):
        return None
    return (
        f"GPUs of different models and {VISIBLE} by index: CUDA numbers them fastest first, so its indices "
        "may not be nvidia-smi's (set CUDA_DEVICE_ORDER=PCI_BUS_ID to make them agree)"
    )


def _resolve(entry: str, gpus: list[GpuInfo]) -> tuple[int | None, str]:
    """One entry -> NVML index, or None and why CUDA would reject it."""
    if entry.startswith(("GPU-", "MIG-")):
        if entry.startswith("MIG-"):
            return None, "is a MIG instance among whole GPUs"
        matches = [g.index for g in gpus if available(g.uuid) and str(g.uuid).startswith(entry)]
        if not matches:
            return None, "matches no GPU's UUID (list them with `nvidia-smi -L`)"
        if len(matches) > 1:
            return None, f"is ambiguous: it starts the UUIDs of GPUs {', '.join(map(str, matches))}"
        return matches[0], ""
    if not re.fullmatch(r"[+-]?\d+", entry):
        return None, "is neither a GPU index nor a GPU-/MIG- UUID"
    number = int(entry)
    if number < 0:
        return None, "is negative"
    if number >= len(gpus):
        return None, f"is out of range: this machine has {len(gpus)} GPU(s), 0 to {len(gpus) - 1}"
    return number, ""
