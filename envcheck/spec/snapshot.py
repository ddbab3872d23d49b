"""``envcheck snapshot``: describe this (known-good) machine as a lab spec people can read and edit.

The TOML is written by hand rather than by a TOML library because it carries a comment on every
requirement (where the number came from, how to loosen it); :func:`envcheck.spec.parse_spec_text`
reads it back, and a test holds the two to a round trip.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone

from packaging.utils import canonicalize_name
from packaging.version import Version

from envcheck.core.model import available
from envcheck.probes.host import DiskSpace, HostInfo
from envcheck.probes.nvml import NvmlState
from envcheck.probes.packages import PackagesState

#: Packages every lab spec pins when they are installed (torch itself is pinned by [torch]);
#: ``--package`` adds more.
KEY_PACKAGES = ("torchvision", "torchaudio", "numpy")
GiB = 1024**3


@dataclass
class BenchFigure:
    """The figure one benchmark reached here (its best case, slowest device), for ``[bench]``."""

    id: str
    value: float
    unit: str


@dataclass
class Machine:
    host: HostInfo
    disks: list[DiskSpace]
    packages: PackagesState
    nvml: NvmlState
    bench: list[BenchFigure] = field(default_factory=list)


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def _gib_floor(n: int, share: float = 1.0) -> str:
    return f"{max(1, math.floor(n * share / GiB))}GiB"


def _release(version: str) -> str:
    """'2.14.1+cu130' -> '2.14.1': the build flavour is pinned separately, by [torch] cuda."""
    return Version(version).public


def render_snapshot(machine: Machine, *, extra_packages: tuple[str, ...] = (), fraction: float = 0.9) -> str:
    host, pkgs, nvml = machine.host, machine.packages, machine.nvml
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# envcheck lab spec: what every machine of this lab must have.",
        f"# Written by `envcheck snapshot` on {platform.node()} at {now}, from that known-good machine.",
        "# Edit freely: every key is optional. Check a machine with `envcheck doctor --spec lab.toml`",
        "# and `envcheck bench --spec lab.toml`. Format: README.md, 'Lab spec'.",
        "",
        "[python]",
        "# The Python series the lab's code runs on (a specifier like '>=3.10,<3.13' works too).",
        f"version = {_q('.'.join(host.python.version.split('.')[:2]))}",
        "",
    ]
    torch = pkgs.torch
    if torch is not None:
        out += ["[torch]", "# The torch release and build flavour: a CUDA version like '13.0', 'cpu', or 'rocm6.2'."]
        out.append(f"version = {_q('==' + _release(torch.version))}")
        flavour = {"cuda": torch.accelerator_version, "cpu": "cpu", "rocm": f"rocm{torch.accelerator_version or ''}"}
        if flavour.get(torch.kind or ""):
            out.append(f"cuda = {_q(flavour[torch.kind])}")
        out.append("")
    gpus = [g for g in nvml.gpus if not g.lost] if nvml.available else []
    if nvml.available and nvml.driver_version:
        out += [
            "[driver]",
            "# The oldest NVIDIA driver allowed: the reference machine's.",
            f"min_version = {_q(nvml.driver_version)}",
            "",
        ]
    if gpus:
        names = sorted({str(g.name) for g in gpus})
        memory = min(g.memory_total_bytes for g in gpus if available(g.memory_total_bytes))
        ccs = [tuple(g.compute_capability) for g in gpus if available(g.compute_capability)]
        out += ["[gpu]", "# Shell-style pattern, case-insensitive: 'NVIDIA H100*' accepts every H100 variant."]
        out.append(f"name = {_q(names[0] if len(names) == 1 else '*')}")
        out.append(f"count = {len(gpus)}  # or min_count = N")
        out.append(f"min_memory = {_q(_gib_floor(memory))}  # per GPU, rounded down to whole GiB")
        if ccs:
            out.append(f"min_compute_capability = {_q('{}.{}'.format(*min(ccs)))}")
        out.append("")
    else:
        out += ["# No GPU answered on the reference machine, so there is no [gpu] section.", ""]
    out += ["[packages]", "# Distribution name = version specifier (packaging's syntax)."]
    for name in (*KEY_PACKAGES, *extra_packages):
        dist = pkgs.dists.get(canonicalize_name(name))
        if dist is not None:
            out.append(f"{_bare_or_quoted(name)} = {_q('==' + _release(dist.version))}")
        elif name in extra_packages:
            out.append(f"# {name}: not installed on the reference machine")
    out += ["", "[host]", "# Minimums, a little below the reference machine so that identical machines pass."]
    limit = host.memory.cgroup_limit_bytes
    ram = min(host.memory.total_bytes, limit) if limit else host.memory.total_bytes
    out.append(f"min_ram = {_q(_gib_floor(ram, 0.9))}  # 90% of its RAM")
    if host.shm is not None and host.shm.total_bytes:
        out.append(f"min_shm = {_q(_gib_floor(host.shm.total_bytes))}")
    work = next((d for d in machine.disks if "working directory" in d.labels and d.free_bytes), None)
    if work is not None:
        out.append(f"min_free_disk = {_q(_gib_floor(work.free_bytes, 0.5))}  # half of its free space")
    cores = host.cpu.affinity_cores or host.cpu.logical_cores
    if cores:
        out.append(f"min_cpus = {cores}")
    if machine.bench:
        out += [
            "",
            "[bench]",
            f"# Minimum figures: {fraction:g} of what the reference machine reached (its slowest device).",
            f"fraction = {fraction:g}",
        ]
        for fig in machine.bench:
            out.append(f"{_q(fig.id)} = {{ min = {fig.value * fraction:.4g}, unit = {_q(fig.unit)} }}")
    return "\n".join(out) + "\n"


def _bare_or_quoted(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else _q(key)
