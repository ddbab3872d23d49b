"""``--device``: parse what the user asked for, resolve it against what is there, and describe devices.

Parsing is pure (testable without torch); resolution takes the GPU inventory as data; only
:func:`inventory` and :func:`describe` touch torch. A request that cannot be met is a
:class:`DeviceError` whose message is one line and names what *is* available.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass

from envcheck.bench.common import first_line
from envcheck.bench.registry import DeviceInfo
from envcheck.core.exit import ExitCode

ACCEPTED = "auto, cpu, cuda, cuda:N or cuda:N,M,..."


class DeviceError(Exception):
    """A ``--device`` that cannot be used. ``exit_code`` is USAGE for a malformed or unknown string and
    FAILED for a well-formed request the machine cannot meet (no GPU, a missing index)."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Request:
    kind: str  # "auto", "cpu" or "cuda"
    indices: tuple[int, ...] | None = None  # None: every visible GPU


_CUDA_LIST = re.compile(r"^cuda:(\d+)((?:,(?:cuda:)?\d+)*)$")


def parse(text: str) -> Request:
    """Parse ``--device``. Accepts ``cuda:0,1`` and ``cuda:0,cuda:1``; rejects anything else with USAGE."""
    spec = text.strip().lower()
    if spec in ("auto", "cpu", "cuda"):
        return Request(spec)
    match = _CUDA_LIST.match(spec.replace(" ", ""))
    if not match:
        raise DeviceError(f"unknown device {text!r}; use {ACCEPTED}", ExitCode.USAGE)
    rest = [r.removeprefix("cuda:") for r in match.group(2).split(",") if r]
    indices = tuple(int(i) for i in [match.group(1), *rest])
    if len(set(indices)) != len(indices):
        raise DeviceError(f"device {text!r} names a GPU twice", ExitCode.USAGE)
    return Request("cuda", indices)


@dataclass(frozen=True)
class Inventory:
    """The GPUs torch can see, and why there are none when there are none."""

    names: tuple[str, ...]
    why_none: str = ""

    def available(self) -> str:
        gpus = [f"cuda:{i} ({n})" for i, n in enumerate(self.names)]
        return ", ".join(["cpu", *gpus])


def resolve(request: Request, inv: Inventory) -> list[str]:
    """The device names to benchmark, or a :class:`DeviceError` naming what is available."""
    count = len(inv.names)
    if request.kind == "cpu":
        return ["cpu"]
    if request.kind == "auto":
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    if count == 0:
        raise DeviceError(f"no CUDA device is visible ({inv.why_none}); available: cpu", ExitCode.FAILED)
    if request.indices is None:
        return [f"cuda:{i}" for i in range(count)]
    missing = [i for i in request.indices if i >= count]
    if missing:
        raise DeviceError(
            f"cuda:{missing[0]} does not exist: {count} GPU{'s' if count != 1 else ''} visible"
            f"{_visible_note()}; available: {inv.available()}",
            ExitCode.FAILED,
        )
    return [f"cuda:{i}" for i in request.indices]


def _visible_note() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""


def inventory() -> Inventory:
    """Ask torch which GPUs it sees; the reason for none names the likely cause."""
    import torch

    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return Inventory((), f"torch {torch.__version__} is a CPU-only build")
    try:
        count = torch.cuda.device_count()
    except RuntimeError as exc:  # a broken driver makes device_count raise in some torch versions
        return Inventory((), f"CUDA could not initialise: {first_line(exc)}")
    if count == 0:
        return Inventory(
            (),
            f"torch {torch.__version__} built for CUDA {torch.version.cuda} sees no GPU{_visible_note()}"
            "; `envcheck doctor` says why",
        )
    return Inventory(tuple(torch.cuda.get_device_name(i) for i in range(count)))


def describe(name: str) -> DeviceInfo:
    """Probe one device: model, compute capability, memory, L2 size (sizes problems and picks the peak)."""
    import torch

    if name == "cpu":
        return DeviceInfo("cpu", "cpu", cpu_model(), threads=torch.get_num_threads())
    index = int(name.split(":", 1)[1])
    try:
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
    except RuntimeError as exc:  # counted but unusable: busy in exclusive mode, lost, a failed CUDA init
        raise DeviceError(
            f"{name} is visible but cannot be used ({first_line(exc)}); `envcheck doctor` says why",
            ExitCode.FAILED,
        ) from None
    return DeviceInfo(
        name,
        "cuda",
        props.name,
        index=index,
        capability=(props.major, props.minor),
        total_bytes=total,
        free_bytes=free,
        l2_bytes=getattr(props, "L2_cache_size", None),
        multiprocessors=props.multi_processor_count,
    )


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
