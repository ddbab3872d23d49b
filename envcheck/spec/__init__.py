"""Lab specs: what every machine of a lab must have, written as TOML and checked by the doctor.

A spec is parsed and validated completely before anything runs: a file that cannot be read, does not
parse, names an unknown key or gives a value of the wrong type or out of range is a :class:`SpecError`
whose message is one line naming the file, the key (or line) and what is wrong, and the CLI exits 2.
A spec is read like every probe reads: bounded in time (a hung network mount) and in size, and only
from a regular file (a FIFO would block the doctor forever, /dev/zero never ends): see
:mod:`envcheck.core.files`.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envcheck.core import files
from envcheck.core.files import path_shown, shown
from envcheck.core.units import parse_rate, parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: A spec names a few dozen requirements in a few KiB; 1 MiB is hundreds of times that, and tomllib
#: parses the worst 1 MiB (one long array) in about 2 s, so the cap also bounds the time to parse.
SPEC_MAX_BYTES = 1024 * 1024


class SpecError(ValueError):
    """A spec that cannot be used; ``str()`` is the one line the user sees."""


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
    try:
        return validate(value)
    except ValueError as exc:
        raise SpecError(f"{where} {exc}") from None


def _text(data: bytes, path: str | os.PathLike[str]) -> str:
    try:
        return files.decode(data)
    except files.FileRefused as exc:
        raise SpecError(f"{path_shown(path)}: {exc}") from None


class _Missing(SpecError):
    """The spec file is not there: an error when named, nothing when the doctor merely looks."""


def _read(path: str | os.PathLike[str]) -> bytes:
    """The spec's bytes, read under the time and size bounds; every refusal is a :class:`SpecError`."""
    try:
        return files.within(files.READ_TIMEOUT_S, lambda: files.read_regular(path, SPEC_MAX_BYTES))
    except files.FileRefused as exc:
        raise (_Missing if exc.missing else SpecError)(f"{path_shown(path)}: {exc}") from None


def load_spec(path: str | os.PathLike[str]) -> LabSpec:
    """The spec in the file at ``path``; in a ``pyproject.toml``, the ``[tool.envcheck]`` table."""
    text = _text(_read(path), path)
    table = "tool.envcheck" if Path(path).name == "pyproject.toml" else None
    return parse_spec_text(text, os.fspath(path), table=table)


#: A spec installed for the whole machine or image (the Dockerfile copies docker/lab.toml here).
SYSTEM_SPEC = Path("/etc/envcheck/lab.toml")


def find_spec(
    explicit: str | None,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] = ".",
    system: Path = SYSTEM_SPEC,
) -> LabSpec | None:
    """The spec to enforce: ``--spec``, else ``ENVCHECK_SPEC``, else ``envcheck.toml`` or a
    ``[tool.envcheck]`` table in ``pyproject.toml`` in the working directory, else
    ``/etc/envcheck/lab.toml``, else none.

    A file named for envcheck (``envcheck.toml``, the system spec) that exists but is no usable spec
    (a directory, a FIFO, malformed) is an error; a ``pyproject.toml`` is someone else's file unless
    it holds the table, and is ignored otherwise, whatever it is.
    """
    if explicit:
        return load_spec(explicit)
    if env.get("ENVCHECK_SPEC"):
        return load_spec(env["ENVCHECK_SPEC"])
    here = Path(cwd)
    return _spec_if_there(here / "envcheck.toml") or _pyproject_spec(here / "pyproject.toml") or _spec_if_there(system)


def _spec_if_there(path: Path) -> LabSpec | None:
    try:
        data = _read(path)
    except _Missing:
        return None
    return parse_spec_text(_text(data, path), str(path))


# -- pyproject.toml: ours only if it holds [tool.envcheck] -----------------------------------------
_HEADER = re.compile(rb"[ \t]*\[\[?([^\]\n]*)\]")
_KEY_NOISE = re.compile(rb"[ \t\"']")
_OURS = b"tool.envcheck"
#: The start of a line is where its key is: a longer line split across two reads is judged by that.
_LINE_HEAD = 4096


def _ours(key: bytes) -> bool:
    return key == _OURS or key.startswith(_OURS + b".")


def _table_at(data: bytes, start: int, end: int, table: bytes) -> bytes:
    """The table in force at ``end``: that of the last header line in ``data[start:end]``, else ``table``.
    Searched backwards with ``bytes.rfind`` (a regular expression over every line of a 50 MB file takes
    seconds)."""
    at = data.rfind(b"[", start, end)
    while at >= 0:
        begin = max(start, data.rfind(b"\n", start, at) + 1)
        header = None if data[begin:at].strip(b" \t") else _HEADER.match(data, begin)
        if header:
            return _KEY_NOISE.sub(b"", header.group(1))
        at = data.rfind(b"[", start, begin)
    return table


def _claims(lines: bytes, table: bytes) -> tuple[bool, bytes]:
    """Whether these whole lines put anything under ``tool.envcheck``, and the table in force after them.

    Recognised: ``[tool.envcheck]``, ``[tool.envcheck.gpu]``, ``[[tool.envcheck...]]``, dotted keys
    (``tool.envcheck.gpu.count = 2`` at the top, ``envcheck.gpu.count = 2`` or ``envcheck = {...}``
    under ``[tool]``), an inline ``tool = { envcheck = ... }``, with quoted parts and spaces. A key
    spelled with escapes (``"\\u0065nvcheck"``) is not recognised. A line inside a multi-line string
    can be taken for a claim: parsing the file then settles it. Only lines that say ``envcheck`` are
    judged, so a file that never says it costs little more than reading it.
    """
    done, current = 0, table
    at = lines.find(b"envcheck")
    while at >= 0:
        begin = lines.rfind(b"\n", 0, at) + 1
        end = lines.find(b"\n", at)
        end = len(lines) if end < 0 else end
        current, done = _table_at(lines, done, begin, current), begin
        header = _HEADER.match(lines, begin, end)
        if header:
            key, value = _KEY_NOISE.sub(b"", header.group(1)), b""
        else:
            left, equals, value = lines[begin:end].partition(b"=")
            key = _KEY_NOISE.sub(b"", left) if equals else b""
            if key and current:
                key = current + b"." + key
        if _ours(key) or (key == b"tool" and b"envcheck" in value):
            return True, current
        at = lines.find(b"envcheck", end)
    return False, _table_at(lines, done, len(lines), current)


def _scan_pyproject(fd: int, claimed: list[bool]) -> None:
    """Read the whole file a chunk at a time (it may be huge and is probably not ours) until a line
    claims ``tool.envcheck``; sets ``claimed[0]``."""
    table, carry, skipping = b"", b"", False
    for chunk in files.chunks(fd):
        data = carry + chunk
        if skipping:  # the rest of a line whose head was judged already
            newline = data.find(b"\n")
            if newline < 0:
                carry = b""
                continue
            data, skipping = data[newline + 1 :], False
        cut = data.rfind(b"\n") + 1
        whole, carry = data[:cut], data[cut:]
        if len(carry) > _LINE_HEAD:
            whole, carry, skipping = whole + carry[:_LINE_HEAD] + b"\n", b"", True
        found, table = _claims(whole, table)
        if found:
            claimed[0] = True
            return
    if carry:
        claimed[0] = _claims(carry, table)[0]


def _pyproject_spec(path: Path) -> LabSpec | None:
    """The ``[tool.envcheck]`` table of ``path``, or None when the file does not hold one.

    The file is scanned as bytes for a line that puts something under ``tool.envcheck`` before it is
    read as a spec, so that a pyproject without one has no effect at all, even when it is huge, not
    UTF-8, not TOML, a FIFO or on a hung mount. Only a pyproject that claims the table must be a spec.
    """
    claimed = [False]

    def scan() -> None:
        fd = files.open_regular(path)
        try:
            _scan_pyproject(fd, claimed)
        finally:
            os.close(fd)

    try:
        files.within(files.READ_TIMEOUT_S, scan)
    except files.FileRefused as exc:
        if not claimed[0]:
            return None  # not known to be ours: someone else's file, unreadable as it may be
        raise SpecError(f"{path_shown(path)}: {exc}") from None
    if not claimed[0]:
        return None
    text = _text(_read(path), path)
    try:
        return parse_spec_text(text, str(path), table="tool.envcheck")
    except NoSpecTable:
        return None  # the line that looked like one was inside a string
