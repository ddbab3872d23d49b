"""``envcheck snapshot``: describe this (known-good) machine as a lab spec people can read and edit.

The TOML is written by hand rather than by a TOML library because it carries a comment on every
requirement (where the number came from, how to loosen it). Whatever this machine reports (a package
name that needs quoting, a version that is not PEP 440, a GPU name with odd characters), the result
must be a spec its own doctor accepts: every value goes through the parser's own validator before it
is written (one that would not pass becomes a comment saying why), and :func:`render_snapshot` reads
its text back with :func:`envcheck.spec.parse_spec_text` before returning it.
"""

from __future__ import annotations

import math
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envcheck.core.model import available
from envcheck.probes.host import DiskSpace, HostInfo, usable_cores, usable_ram
from envcheck.probes.nvml.inventory import NvmlState
from envcheck.probes.packages import PackagesState
from envcheck.spec.parse import FREE_SECTIONS, SCHEMA, is_benchmark_id, is_distribution_name, is_text, parse_spec_text

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
    """A TOML basic string. TOML forbids control characters (U+007F too) and surrogates in a string and
    in a ``\\u`` escape, so those are written as ``\\u`` escapes or replaced; the rest stays as it is
    (the file is UTF-8). JSON's escaping is not TOML's: it writes emoji as surrogate pairs."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\uFFFD")  # a lone surrogate (undecodable bytes): no TOML string can hold it
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _comment(text: str) -> str:
    """Text for a ``#`` comment: one line, without the control characters TOML forbids in comments."""
    return "".join(c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else "?" for c in text)


#: A key TOML accepts unquoted.
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    """A key as TOML needs it: bare when only ASCII letters, digits, ``-`` and ``_``; else quoted
    (``"zope.interface"``: a bare dotted key would mean a table ``zope`` holding ``interface``)."""
    return name if _BARE.fullmatch(name) else _q(name)


def _accepted(validate: Callable[[Any], Any], value: Any) -> bool:
    try:
        validate(value)
    except ValueError:
        return False
    return True


def _gib_floor(n: int, share: float = 1.0) -> str:
    return f"{max(1, math.floor(n * share / GiB))}GiB"


def _pin(version: str) -> str | None:
    """'2.14.1+cu130' -> '==2.14.1' (the build flavour is pinned separately, by [torch] cuda); None for a
    version that is not PEP 440 (an old sdist's '2004d'), which no specifier can pin."""
    try:
        return "==" + Version(version).public
    except InvalidVersion:
        return None


def render_snapshot(machine: Machine, *, extra_packages: tuple[str, ...] = (), fraction: float = 0.9) -> str:
    host, pkgs, nvml = machine.host, machine.packages, machine.nvml
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# envcheck lab spec: what every machine of this lab must have.",
        f"# Written by `envcheck snapshot` on {_comment(platform.node())} at {now}, from that known-good machine.",
        "# Edit freely: every key is optional. Check a machine with `envcheck doctor --spec lab.toml`",
        "# and `envcheck bench --spec lab.toml`. Format: README.md, 'Lab spec'.",
        "",
    ]
    series = ".".join(host.python.version.split(".")[:2])
    if _accepted(SCHEMA["python"]["version"][0], series):
        out += [
            "[python]",
            "# The Python series the lab's code runs on (a specifier like '>=3.10,<3.13' works too).",
            f"version = {_q(series)}",
            "",
        ]
    torch = pkgs.torch
    if torch is not None:
        out += ["[torch]", "# The torch release and build flavour: a CUDA version like '13.0', 'cpu', or 'rocm6.2'."]
        pin = _pin(torch.version)
        out.append(
            f"version = {_q(pin)}" if pin else f"# version: {_comment(torch.version)!r} is not a PEP 440 version"
        )
        flavour = {"cuda": torch.accelerator_version, "cpu": "cpu", "rocm": f"rocm{torch.accelerator_version or ''}"}
        cuda = flavour.get(torch.kind or "")
        if cuda and _accepted(SCHEMA["torch"]["cuda"][0], cuda):
            out.append(f"cuda = {_q(cuda)}")
        out.append("")
    gpus = [g for g in nvml.gpus if not g.lost] if nvml.available else []
    if nvml.available and nvml.driver_version and _accepted(SCHEMA["driver"]["min_version"][0], nvml.driver_version):
        out += [
            "[driver]",
            "# The oldest NVIDIA driver allowed: the reference machine's.",
            f"min_version = {_q(nvml.driver_version)}",
            "",
        ]
    if gpus:
        out += _gpu_section(gpus)
    else:
        out += ["# No GPU answered on the reference machine, so there is no [gpu] section.", ""]
    out += ["[packages]", "# Distribution name = version specifier (packaging's syntax)."]
    out += _package_lines(pkgs, extra_packages)
    out += ["", "[host]", "# Minimums, a little below the reference machine so that identical machines pass."]
    out.append(f"min_ram = {_q(_gib_floor(usable_ram(host.memory), 0.9))}  # 90% of its RAM (a container's limit)")
    if host.shm is not None and host.shm.total_bytes:
        out.append(f"min_shm = {_q(_gib_floor(host.shm.total_bytes))}")
    work = next((d for d in machine.disks if "working directory" in d.labels and d.free_bytes), None)
    if work is not None and work.free_bytes:
        out.append(f"min_free_disk = {_q(_gib_floor(work.free_bytes, 0.5))}  # half of its free space")
    cores = usable_cores(host.cpu)
    if cores:
        out.append(f"min_cpus = {cores}  # usable by this process (affinity, container quota)")
    if machine.bench:
        if not (math.isfinite(fraction) and 0 < fraction <= 1):  # the CLI's option must refuse it first
            raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
        out += [
            "",
            "[bench]",
            f"# Minimum figures: {fraction:g} of what the reference machine reached (its slowest device).",
            f"fraction = {fraction:g}",
        ]
        out += _bench_lines(machine.bench, fraction)
    text = "\n".join(out) + "\n"
    parse_spec_text(text, "the snapshot")  # a spec its own doctor refuses is a bug here, not the user's problem
    return text


def _gpu_section(gpus: list[Any]) -> list[str]:
    names = sorted({str(g.name) for g in gpus})
    pattern = names[0] if len(names) == 1 and _accepted(SCHEMA["gpu"]["name"][0], names[0]) else "*"
    if pattern != "*":  # fnmatch reads [ ] * ? in a name as wildcards: escape them so it matches itself
        pattern = re.sub(r"([][*?])", r"[\1]", pattern)
    out = ["[gpu]", "# Shell-style pattern, case-insensitive: 'NVIDIA H100*' accepts every H100 variant."]
    out.append(f"name = {_q(pattern)}")
    out.append(f"count = {len(gpus)}  # or min_count = N")
    memories = [g.memory_total_bytes for g in gpus if available(g.memory_total_bytes) and g.memory_total_bytes > 0]
    if memories:
        out.append(f"min_memory = {_q(_gib_floor(min(memories)))}  # per GPU, rounded down to whole GiB")
    ccs = [tuple(g.compute_capability) for g in gpus if available(g.compute_capability)]
    if ccs and _accepted(SCHEMA["gpu"]["min_compute_capability"][0], "{}.{}".format(*min(ccs))):
        out.append(f"min_compute_capability = {_q('{}.{}'.format(*min(ccs)))}")
    out.append("")
    return out


def _package_lines(pkgs: PackagesState, extra_packages: tuple[str, ...]) -> list[str]:
    """One pin per distribution (``--package NumPy`` and ``numpy`` are one), as the doctor reads them."""
    out, seen = [], set()
    validate = FREE_SECTIONS["packages"][0]
    for name in (*KEY_PACKAGES, *extra_packages):
        if not is_distribution_name(name):
            out.append(f"# {_comment(repr(name))}: not a distribution name, so not pinned")
            continue
        canonical = canonicalize_name(name)
        if canonical in seen:
            continue
        seen.add(canonical)
        dist = pkgs.dists.get(canonical)
        pin = _pin(dist.version) if dist is not None else None
        if pin is not None and _accepted(validate, pin):
            out.append(f"{_key(name)} = {_q(pin)}")
        elif dist is not None:
            out.append(f"# {name}: installed version {_comment(repr(dist.version))} is not PEP 440, so not pinned")
        elif name in extra_packages:
            out.append(f"# {name}: not installed on the reference machine")
    return out


def _bench_lines(figures: list[BenchFigure], fraction: float) -> list[str]:
    out = []
    for fig in figures:
        minimum = fig.value * fraction
        if not is_benchmark_id(fig.id) or not is_text(fig.unit):
            out.append(f"# {_comment(repr(fig.id))}: not recorded (an id or unit a spec cannot hold)")
        elif not (math.isfinite(minimum) and minimum > 0):
            out.append(f"# {_q(fig.id)}: not recorded (its figure here, {fig.value!r}, is no minimum)")
        else:
            out.append(f"{_q(fig.id)} = {{ min = {minimum:.4g}, unit = {_q(fig.unit)} }}")
    return out
