"""Lab specs as text → a validated :class:`LabSpec`: what every machine of a lab must have, written as TOML.

A spec is parsed and validated completely before anything runs: a file that does not parse, names an
unknown key or gives a value of the wrong type or out of range is a :class:`SpecError` whose message is
one line naming the file, the key (or line) and what is wrong, and the CLI exits 2. Nothing here reads
a file: finding and reading one is :mod:`envcheck.spec.find`.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envcheck.core import files
from envcheck.core.errors import CommandError
from envcheck.core.exit import ExitCode
from envcheck.core.files import path_shown, shown
from envcheck.core.units import parse_rate, parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class SpecError(CommandError, ValueError):
    """A spec that cannot be used; ``str()`` is the one line the user sees. A command that was given one
    stops with it as a usage error (exit 2), said by the command group like every :class:`CommandError`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)


class NoSpecTable(SpecError):
    """A ``pyproject.toml`` read as a spec holds no ``[tool.envcheck]`` table."""


# -- showing what the user wrote, in one line of bounded length ------------------------------------
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_shown(key: str) -> str:
    """A TOML key as the user would write it: bare when TOML allows, else quoted with its escapes."""
    return key if _BARE_KEY.fullmatch(key) else shown(key)


# -- value validators: each returns the normalised value or raises ValueError with the reason ------
#: Longest text value: GPU names, specifiers and units are short; a longer one is a mistake and would
#: flood every line that quotes it.
MAX_TEXT = 200
#: Largest count (GPUs, CPU cores): Linux supports at most 8192 CPUs (NR_CPUS), so no machine comes near.
MAX_COUNT = 65536


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {shown(value)}")
    if len(value) > MAX_TEXT or not value.isprintable():
        raise ValueError(f"must be one line of printable text of at most {MAX_TEXT} characters, got {shown(value)}")
    return value.strip()


def _specifier(value: Any) -> str:
    text = _str(value)
    if text[0].isdigit():  # "3.11" or "2.14.1" means that release series / that version
        text = f"=={text}.*" if text.count(".") == 1 else f"=={text}"
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        raise ValueError(
            f"is not a version specifier: {shown(value)} (write e.g. '>=2.5,<2.7' or '==2.14.1')"
        ) from None
    return text


def _version(value: Any) -> str:
    text = _str(value)
    try:
        Version(text)
    except InvalidVersion:
        raise ValueError(f"is not a version: {shown(value)}") from None
    return text


def _count(value: Any) -> int:
    """A number of things a spec requires: 0 would require nothing, which is a mistake, not a wish."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise ValueError(f"must be a whole number from 1 to {MAX_COUNT}, got {shown(value)}")
    return value


def _size(value: Any) -> int:
    """A size in bytes, above 0 (a minimum of 0 requires nothing); sizes are whole bytes, so no floats."""
    what = f"must be a size above 0 like '80GiB' or '24 GB', got {shown(value)}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(what)
    try:
        size = parse_size(value)
    except ValueError:
        raise ValueError(what) from None
    if size <= 0:
        raise ValueError(what)
    return size


def _capability(value: Any) -> str:
    text = _str(value) if isinstance(value, str) else None
    if text is None or not re.fullmatch(r"[0-9]{1,2}\.[0-9]{1,2}", text):
        raise ValueError(f"must be a compute capability like '9.0', got {shown(value)}")
    return text


def _number(value: Any) -> float | None:
    """An int or a float that is finite (TOML has ``nan`` and ``inf``); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return number if math.isfinite(number) else None


def _fraction(value: Any) -> float:
    number = _number(value)
    if number is None or not 0 < number <= 1:
        raise ValueError(f"must be a number in (0, 1], got {shown(value)}")
    return number


def _positive(value: Any) -> float:
    number = _number(value)
    if number is None or number <= 0:
        raise ValueError(f"must be a positive finite number, got {shown(value)}")
    return number


#: A distribution name as PEP 508 ("Names") allows it; anything else names no package and would
#: make a check id no one can select.
_DIST_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)
#: A benchmark id (``matmul.bf16``, ``memory.h2d_pinned``).
_BENCH_ID = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def is_distribution_name(name: str) -> bool:
    return bool(_DIST_NAME.fullmatch(name))


def is_benchmark_id(name: str) -> bool:
    return len(name) <= MAX_TEXT and bool(_BENCH_ID.fullmatch(name))


def is_text(value: Any) -> bool:
    """Whether ``value`` is a text value a spec accepts (a name, a unit): one printable line, not too long."""
    try:
        _str(value)
    except ValueError:
        return False
    return True


#: The format, section by section: key -> (validator, what it means). The README documents the same.
SCHEMA: dict[str, dict[str, tuple[Callable[[Any], Any], str]]] = {
    "python": {"version": (_specifier, "Python version: '3.11' (that series) or a specifier")},
    "torch": {
        "version": (_specifier, "torch version specifier, e.g. '==2.14.1' or '>=2.5,<2.7'"),
        "cuda": (_str, "build flavour: CUDA version like '13.0', 'cpu', or 'rocm6.2'"),
    },
    "driver": {"min_version": (_version, "minimum NVIDIA driver version, e.g. '580.65.06'")},
    "gpu": {
        "name": (_str, "GPU model pattern (shell-style, case-insensitive), e.g. 'NVIDIA H200*'"),
        "count": (_count, "exact number of GPUs"),
        "min_count": (_count, "minimum number of GPUs"),
        "min_memory": (_size, "minimum memory per GPU, e.g. '80GiB'"),
        "min_compute_capability": (_capability, "minimum compute capability, e.g. '9.0'"),
    },
    "host": {
        "min_ram": (_size, "minimum total RAM, e.g. '64GiB'"),
        "min_shm": (_size, "minimum /dev/shm size, e.g. '16GiB'"),
        "min_free_disk": (_size, "minimum free disk in the working directory, e.g. '100GiB'"),
        "min_cpus": (_count, "minimum usable CPU cores"),
    },
    "net": {
        "ports": (_count, "number of InfiniBand/RoCE ports up (ACTIVE, LinkUp)"),
        "rate_gbps": (_positive, "rate every port must run at, in Gb/s, e.g. 400"),
    },
}
#: Sections whose keys are free (a package name, a benchmark id) with one kind of value each.
FREE_SECTIONS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "packages": (_specifier, "distribution name = version specifier, e.g. numpy = '>=1.26'"),
}


@dataclass
class BenchMinimum:
    """A figure the bench must reach: ``value`` in ``unit``, by benchmark id (``matmul.bf16``)."""

    id: str
    value: float
    unit: str


#: The operations ``envcheck comm`` measures, as a ``[comm]`` section names them.
COMM_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "send_recv")


@dataclass(frozen=True)
class CommMinimum:
    """A bus bandwidth ``envcheck comm`` must reach for one operation, in GB/s (nccl-tests' busbw)."""

    op: str
    min_busbw_gb_s: float


#: Throughput units a ``[burn]`` minimum may be written in, as TFLOP/s.
FLOPS_UNITS = {"GFLOP/s": 1e-3, "TFLOP/s": 1.0, "PFLOP/s": 1e3}
#: The dtypes ``envcheck burn --dtype`` takes (envcheck.burn.plan.DTYPES).
BURN_DTYPES = ("bf16", "fp16", "tf32", "fp32")


@dataclass(frozen=True)
class BurnSpec:
    """What a lab requires of a burn-in (``envcheck burn --spec``): how long it ran uninterrupted, whether a
    thermal or hardware slowdown is tolerated, and the throughput each device must sustain."""

    #: The burn must have loaded every device at least this long, uninterrupted.
    min_duration_s: float | None = None
    #: False: a slowdown fails the spec too; True: the lab tolerates it (``burn.throttle`` only warns);
    #: None: not said (``burn.throttle`` fails as the burn's own rule does).
    allow_throttle: bool | None = None
    #: dtype (None: whatever the run's) -> the steady-state TFLOP/s every device must sustain.
    min_sustained: dict[str | None, float] = field(default_factory=dict)


@dataclass
class LabSpec:
    path: str
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    bench_fraction: float | None = None
    bench: list[BenchMinimum] = field(default_factory=list)
    comm: list[CommMinimum] = field(default_factory=list)
    burn: BurnSpec | None = None

    def get(self, section: str, key: str) -> Any:
        return self.sections.get(section, {}).get(key)


def parse_spec_text(text: str, path: str, *, table: str | None = None) -> LabSpec:
    """Parse and validate a spec; ``table`` is the dotted table holding it (``tool.envcheck`` in pyproject)."""
    path = path_shown(path)
    try:
        data: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        line = files.deep_line(text)
        at = f"line {line}: " if line else ""
        raise SpecError(f"{path}: {at}nested too deeply (a lab spec nests tables two levels deep)") from None
    except ValueError:  # Python's int-str limit: a literal of more than 4300 digits
        line = files.long_number_line(text)
        at = f"line {line}: " if line else ""
        raise SpecError(f"{path}: {at}a number too long to read (more than 4300 digits)") from None
    prefix = ""
    if table:
        for part in table.split("."):
            if not isinstance(data, dict) or part not in data:
                raise NoSpecTable(f"{path}: no [{table}] table (a lab spec in pyproject.toml lives there)")
            data = data[part]
        if not isinstance(data, dict):
            raise SpecError(f"{path}: '{table}' must be a table ([{table}]), got {shown(data)}")
        prefix = table + "."
    spec = LabSpec(path=path)
    for section, body in data.items():
        name = key_shown(section)
        where = f"{path}: [{prefix}{name}]"
        if not isinstance(body, dict):
            raise SpecError(f"{path}: '{prefix}{name}' must be a table ([{prefix}{name}]), got {shown(body)}")
        if section == "bench":
            _parse_bench(spec, body, where)
            continue
        if section == "packages":
            _parse_packages(spec, body, where)
            continue
        if section == "comm":
            _parse_comm(spec, body, where)
            continue
        if section == "burn":
            spec.burn = _parse_burn(body, where)
            continue
        known = SCHEMA.get(section)
        if known is None:
            sections = ", ".join([*SCHEMA, *FREE_SECTIONS, "bench", "comm", "burn"])
            raise SpecError(f"{path}: unknown section [{prefix}{name}] (known: {sections})")
        values = {}
        for key, value in body.items():
            if key not in known:
                raise SpecError(f"{where}: unknown key {shown(key)} (known: {', '.join(known)})")
            values[key] = _checked(known[key][0], value, f"{where} {key}")
        spec.sections[section] = values
    if spec.get("gpu", "count") is not None and spec.get("gpu", "min_count") is not None:
        raise SpecError(f"{path}: [{prefix}gpu] give either count or min_count, not both")
    return spec


def _parse_packages(spec: LabSpec, body: dict[str, Any], where: str) -> None:
    validate, _ = FREE_SECTIONS["packages"]
    seen: dict[str, str] = {}
    for key, value in body.items():
        name = key_shown(key)
        if not is_distribution_name(key):
            raise SpecError(f"{where} {name}: not a distribution name (letters, digits, '.', '-', '_')")
        canonical = canonicalize_name(key)
        if canonical in seen:
            raise SpecError(f"{where} {name}: names the same distribution as {key_shown(seen[canonical])}")
        seen[canonical] = key
        spec.packages[key] = _checked(validate, value, f"{where} {name}")


def _parse_bench(spec: LabSpec, body: dict[str, Any], where: str) -> None:
    for key, value in body.items():
        if key == "fraction":
            spec.bench_fraction = _checked(_fraction, value, f"{where} fraction")
            continue
        name = key_shown(key)
        if not is_benchmark_id(key):
            raise SpecError(f"{where} {name}: not a benchmark id (like 'matmul.bf16'; see `envcheck bench --list`)")
        if not isinstance(value, dict) or set(value) != {"min", "unit"}:
            raise SpecError(
                f"{where} {shown(key)}: must be a table {{ min = <number>, unit = '<unit>' }}, got {shown(value)}"
            )
        minimum = _checked(_positive, value["min"], f"{where} {name}.min")
        spec.bench.append(BenchMinimum(key, minimum, _checked(_str, value["unit"], f"{where} {name}.unit")))


def _parse_comm(spec: LabSpec, body: dict[str, Any], where: str) -> None:
    """``"all_reduce" = { min_busbw = "400 GB/s" }``: the bus bandwidth (nccl-tests' busbw, which is
    comparable across world sizes) each operation must reach at its best size."""
    for key, value in body.items():
        name = key_shown(key)
        if key not in COMM_OPS:
            raise SpecError(f"{where}: unknown operation {shown(key)} (known: {', '.join(COMM_OPS)})")
        if not isinstance(value, dict) or set(value) != {"min_busbw"}:
            raise SpecError(f"{where} {name}: must be a table {{ min_busbw = '<rate>' }}, got {shown(value)}")
        spec.comm.append(CommMinimum(key, _checked(_rate, value["min_busbw"], f"{where} {name}.min_busbw")))


BURN_KEYS = ("min_duration", "allow_throttle", "min_sustained")


def _parse_burn(body: dict[str, Any], where: str) -> BurnSpec:
    """``min_duration = "10m"``, ``allow_throttle = false``, and ``min_sustained = { min = 600, unit =
    "TFLOP/s" }`` for any dtype or ``min_sustained = { bf16 = { min = 600, unit = "TFLOP/s" }, ... }`` per
    dtype."""
    from envcheck.core.units import parse_duration

    duration, throttle, sustained = None, None, {}
    for key, value in body.items():
        if key not in BURN_KEYS:
            raise SpecError(f"{where}: unknown key {shown(key)} (known: {', '.join(BURN_KEYS)})")
        if key == "min_duration":
            duration = _checked(parse_duration, value, f"{where} min_duration")
        elif key == "allow_throttle":
            if not isinstance(value, bool):
                raise SpecError(f"{where} allow_throttle must be true or false, got {shown(value)}")
            throttle = value
        elif isinstance(value, dict) and set(value) == {"min", "unit"}:
            sustained[None] = _flops(value, f"{where} min_sustained")
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            for dtype, minimum in value.items():
                if dtype not in BURN_DTYPES:
                    raise SpecError(
                        f"{where} min_sustained: unknown dtype {shown(dtype)} (known: {', '.join(BURN_DTYPES)})"
                    )
                sustained[dtype] = _flops(minimum, f"{where} min_sustained.{dtype}")
        else:
            raise SpecError(
                f"{where} min_sustained: must be a table {{ min = <number>, unit = 'TFLOP/s' }} or one such table "
                f"per dtype, got {shown(value)}"
            )
    return BurnSpec(duration, throttle, sustained)


def _flops(value: Any, where: str) -> float:
    """``{ min = 600, unit = "TFLOP/s" }`` as TFLOP/s."""
    if not isinstance(value, dict) or set(value) != {"min", "unit"}:
        raise SpecError(f"{where}: must be a table {{ min = <number>, unit = 'TFLOP/s' }}, got {shown(value)}")
    minimum = _checked(_positive, value["min"], f"{where}.min")
    unit = value["unit"]
    if unit not in FLOPS_UNITS:
        raise SpecError(f"{where}.unit must be one of {', '.join(FLOPS_UNITS)}, got {shown(unit)}")
    return minimum * FLOPS_UNITS[unit]


def _rate(value: Any) -> float:
    what = f"must be a bandwidth above 0 like '400 GB/s' (or a number of GB/s), got {shown(value)}"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(what)
    try:
        return parse_rate(value)
    except (ValueError, OverflowError):  # OverflowError: an integer beyond any float
        raise ValueError(what) from None


def _checked(validate: Callable[[Any], Any], value: Any, where: str) -> Any:
    """``validate(value)``, or the spec error that names ``where``. A validator that meets a value of a type
    it did not expect (a TOML date, a table) raises TypeError or OverflowError: that is still the spec's
    fault, said in one line, never an internal error."""
    try:
        return validate(value)
    except ValueError as exc:
        raise SpecError(f"{where} {exc}") from None
    except (TypeError, OverflowError):
        raise SpecError(f"{where} cannot be {shown(value)} ({type(value).__name__})") from None
