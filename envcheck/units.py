"""Byte sizes as people write and read them ("80 GiB", "24 GB"), in one place for every layer."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """``"80GiB"`` -> 85899345920, ``"24 GB"`` -> 24000000000; ValueError on anything else."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write e.g. '80GiB', '24 GB', '512MiB')")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def gib(n: float | int) -> str:
    """Binary gibibytes, which is what nvidia-smi and free -g show."""
    value = n / 1024**3
    return f"{value:.0f} GiB" if value >= 10 else f"{value:.1f} GiB"


def human(n: float | int) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
