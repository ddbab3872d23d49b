"""Sizes, rates and durations as people write and read them ("80 GiB", "24 GB", "10m", "7:00"), in one
place for every layer.

Sizes are *shown* in binary units (GiB = 1024³ bytes), which is what ``free``, ``df -h`` and
nvidia-smi (MiB) show; a size the user writes may use either convention ("24 GB" is 24 × 1000³).
A reading of this machine is shown rounded down and a minimum it must meet rounded up, so that a
machine below a minimum can never be shown as having it ("expected ≥ 64.0 GiB, found 64.0 GiB").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from fractions import Fraction

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip

#: Digits are bounded so that "1" followed by 400 zeros is "not a size", not a float overflow.
_SIZE = re.compile(r"^\s*(\d{1,20}(?:\.\d{1,20})?)\s*([a-zA-Z]*)\s*$")
#: The largest size: what a signed 64-bit counter holds (the kernel, statvfs and NVML count bytes so).
MAX_SIZE = 2**63 - 1
_BINARY = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def parse_size(text: str | int) -> int:
    """``"80GiB"`` -> 85899345920, ``"24 GB"`` -> 24000000000, ``"1.5 KiB"`` -> 1536 (fractions of a
    byte are dropped); ValueError on anything else, a negative number, or more than :data:`MAX_SIZE`."""
    if isinstance(text, int):
        size = text
    else:
        match = _SIZE.match(text)
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"not a size: {text[:40]!r} (write e.g. '80GiB', '24 GB', '512MiB')")
        size = math.floor(Fraction(match.group(1)) * _UNITS[match.group(2).lower()])
    if not 0 <= size <= MAX_SIZE:
        raise ValueError(f"not a size: {size} bytes is out of range (0 to {MAX_SIZE})")
    return size


def _tenths(n: int | float, size: int, up: bool) -> str:
    scaled = Fraction(n) * 10 / size  # exact: a float would turn 64 GiB - 1 byte into "64.0"
    tenths = math.ceil(scaled) if up else math.floor(scaled)
    return f"{tenths // 10}.{tenths % 10}"


def human(n: float | int, *, up: bool = False) -> str:
    """``n`` bytes in the largest binary unit it fills, to a tenth: rounded down (a reading: never shown
    as more than there is), or with ``up`` rounded up (a minimum: never shown as less than required)."""
    for unit, size in _BINARY:
        if n >= size:
            return f"{_tenths(n, size, up)} {unit}"
    return f"{math.ceil(n) if up else int(n)} B"


def _whole_binary(n: int) -> tuple[int, str]:
    """``n`` bytes rounded up to whole GiB, or below 1 GiB to whole MiB: (count, "G" or "M")."""
    if n >= 1024**3:
        return -(-n // 1024**3), "G"
    return max(1, -(-n // 1024**2)), "M"


def docker_size(n: int) -> str:
    """The smallest ``docker run --shm-size``/``--memory`` value of at least ``n`` bytes, in whole GiB
    (``16g``) or, below 1 GiB, whole MiB (``96m``). Docker reads these suffixes as powers of 1024
    (docker/go-units ``RAMInBytes``), so ``16g`` is 16 GiB; so does ``mount -o size=`` for tmpfs."""
    count, unit = _whole_binary(n)
    return f"{count}{unit.lower()}"


def kubernetes_quantity(n: int) -> str:
    """The same rounding as :func:`docker_size` as a Kubernetes quantity: ``16Gi``, ``96Mi``."""
    count, unit = _whole_binary(n)
    return f"{count}{unit}i"


# -- bandwidths ------------------------------------------------------------------------------------
#: Rates in GB/s (10⁹ bytes per second, the unit nccl-tests and NVIDIA's datasheets use). A network
#: port is usually quoted in bits ("400 Gb/s" for an NDR InfiniBand port), so bits are accepted too,
#: and the case of the "B" matters: "Gb/s" is an eighth of "GB/s".
_RATE_UNITS = {
    "MB/s": 1e-3, "GB/s": 1.0, "TB/s": 1e3,
    "MiB/s": 1024**2 / 1e9, "GiB/s": 1024**3 / 1e9, "TiB/s": 1024**4 / 1e9,
    "Mb/s": 1e-3 / 8, "Gb/s": 1 / 8, "Tb/s": 1e3 / 8,
    "Mbit/s": 1e-3 / 8, "Gbit/s": 1 / 8, "Tbit/s": 1e3 / 8,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,12})?)\s*([A-Za-z]+/s)\s*$")


def parse_rate(text: str | int | float) -> float:
    """``"400 GB/s"`` -> 400.0, ``"400 Gb/s"`` -> 50.0, ``"1.5 TB/s"`` -> 1500.0: a bandwidth in GB/s.
    A bare number is GB/s. ValueError for anything else, and for a rate that is not above 0."""
    if isinstance(text, bool):
        raise ValueError(f"not a bandwidth: {text!r}")
    if isinstance(text, (int, float)):
        rate = float(text)
    else:
        match = _RATE.match(text)
        if not match or match.group(2) not in _RATE_UNITS:
            raise ValueError(f"not a bandwidth: {text[:40]!r} (write e.g. '400 GB/s' or '400 Gb/s')")
        rate = float(match.group(1)) * _RATE_UNITS[match.group(2)]
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"not a bandwidth above 0: {text!r}")
    return rate


# --- durations --------------------------------------------------------------------------------

_SECONDS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(?P<number>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(?P<unit>s|sec|m|min|h)?\s*$", re.I)


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``"10m"``, ``"90s"``, ``"1h"``, ``"1.5h"`` or a plain number of seconds. Refuses zero,
    negatives, NaN and infinity (a ValueError whose text is the one line the user sees)."""
    if isinstance(text, bool):
        raise ValueError(f"is not a duration: {text!r} (write e.g. '10m', '90s' or '1h')")
    if isinstance(text, (int, float)):
        seconds = float(text)
    elif not isinstance(text, str):  # a TOML date, a list, a table: anything a spec may hold
        raise ValueError(f"is not a duration: {type(text).__name__} (write e.g. '10m', '90s' or '1h')")
    else:
        match = _DURATION.match(text)
        if not match:
            raise ValueError(f"is not a duration: {text!r} (write e.g. '10m', '90s' or '1h')")
        seconds = float(match["number"]) * _SECONDS[(match["unit"] or "s").lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a duration above 0, got {text!r}")
    return seconds


def duration_text(seconds: float) -> str:
    """A duration as a person writes it: 45 s, 10 min, 1.5 h."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def clock(seconds: float) -> str:
    """Time into a run as m:ss ("7:00", "12:05"), rounded to the nearest second, the same live and in the
    report (a truncating clock showed 59.6 s as 0:59 live and 1:00 in the report)."""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def runs(indices: Iterable[int]) -> list[list[int]]:
    """Indices (of GPUs, say) as runs of consecutive ones, ascending and each once: what "0-3, 6" and
    "GPUs 0–7" are written from, by the doctor's fabric checks and the fleet's slow devices alike."""
    out: list[list[int]] = []
    for i in sorted(set(indices)):
        if out and i == out[-1][-1] + 1:
            out[-1].append(i)
        else:
            out.append([i])
    return out
