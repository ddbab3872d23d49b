"""Lab specs: what every machine of a lab must have, written as TOML and checked by the doctor.

A spec is parsed and validated completely before anything runs: a file that does not parse, names an
unknown key or gives a value of the wrong type is a :class:`SpecError` whose message is one line
naming the file, the key (or line) and what is wrong, and the CLI exits 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from envcheck.units import parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class SpecError(ValueError):
    """A spec that cannot be used; ``str()`` is the one line the user sees."""


# -- value validators: each returns the normalised value or raises ValueError with the reason ------
def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value.strip()


def _specifier(value: Any) -> str:
    text = _str(value)
    if text[0].isdigit():  # "3.11" or "2.14.1" means that release series / that version
        text = f"=={text}.*" if text.count(".") == 1 else f"=={text}"
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        raise ValueError(f"is not a version specifier: {value!r} (write e.g. '>=2.5,<2.7' or '==2.14.1')") from None
    return text


def _version(value: Any) -> str:
    text = _str(value)
    try:
        Version(text)
    except InvalidVersion:
        raise ValueError(f"is not a version: {value!r}") from None
    return text


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number ≥ 0, got {value!r}")
    return value


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"must be a size like '80GiB' or '24 GB', got {value!r}")
    try:
        return parse_size(value)
    except ValueError:
        raise ValueError(f"must be a size like '80GiB' or '24 GB', got {value!r}") from None


def _capability(value: Any) -> str:
    text = _str(value) if isinstance(value, str) else None
    if text is None or len(text.split(".")) != 2 or not all(p.isdigit() for p in text.split(".")):
        raise ValueError(f"must be a compute capability like '9.0', got {value!r}")
    return text


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"must be a number in (0, 1], got {value!r}")
    return float(value)


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return float(value)


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


@dataclass
class LabSpec:
    path: str
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    bench_fraction: float | None = None
    bench: list[BenchMinimum] = field(default_factory=list)

    def get(self, section: str, key: str) -> Any:
        return self.sections.get(section, {}).get(key)


def parse_spec_text(text: str, path: str, *, table: str | None = None) -> LabSpec:
    """Parse and validate a spec; ``table`` is the dotted table holding it (``tool.envcheck`` in pyproject)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    prefix = ""
    if table:
        for part in table.split("."):
            data = data.get(part, {}) if isinstance(data, dict) else {}
        prefix = table + "."
    spec = LabSpec(path=path)
    for section, body in data.items():
        where = f"{path}: [{prefix}{section}]"
        if not isinstance(body, dict):
            raise SpecError(f"{path}: '{prefix}{section}' must be a table ([{section}]), got {body!r}")
        if section == "bench":
            _parse_bench(spec, body, where)
            continue
        if section in FREE_SECTIONS:
            validate, _ = FREE_SECTIONS[section]
            for key, value in body.items():
                spec.packages[key] = _checked(validate, value, f"{where} {key}")
            continue
        known = SCHEMA.get(section)
        if known is None:
            sections = ", ".join([*SCHEMA, *FREE_SECTIONS, "bench"])
            raise SpecError(f"{path}: unknown section [{prefix}{section}] (known: {sections})")
        values = {}
        for key, value in body.items():
            if key not in known:
                raise SpecError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
            values[key] = _checked(known[key][0], value, f"{where} {key}")
        spec.sections[section] = values
    if spec.get("gpu", "count") is not None and spec.get("gpu", "min_count") is not None:
        raise SpecError(f"{path}: [{prefix}gpu] give either count or min_count, not both")
    return spec


def _parse_bench(spec: LabSpec, body: dict[str, Any], where: str) -> None:
    for key, value in body.items():
        if key == "fraction":
            spec.bench_fraction = _checked(_fraction, value, f"{where} fraction")
            continue
        if not isinstance(value, dict) or set(value) != {"min", "unit"}:
            raise SpecError(f"{where} {key!r}: must be a table {{ min = <number>, unit = '<unit>' }}, got {value!r}")
        minimum = _checked(_positive, value["min"], f"{where} {key}.min")
        spec.bench.append(BenchMinimum(key, minimum, _checked(_str, value["unit"], f"{where} {key}.unit")))


def _checked(validate: Callable[[Any], Any], value: Any, where: str) -> Any:
    try:
        return validate(value)
    except ValueError as exc:
        raise SpecError(f"{where} {exc}") from None


def load_spec(path: str | os.PathLike[str]) -> LabSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{p}: cannot read spec: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a text file") from None
    if p.name == "pyproject.toml":
        return parse_spec_text(text, str(p), table="tool.envcheck")
    return parse_spec_text(text, str(p))


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
    ``/etc/envcheck/lab.toml``, else none."""
    if explicit:
        return load_spec(explicit)
    if env.get("ENVCHECK_SPEC"):
        return load_spec(env["ENVCHECK_SPEC"])
    here = Path(cwd)
    if (here / "envcheck.toml").is_file():
        return load_spec(here / "envcheck.toml")
    pyproject = here / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            return None  # someone else's broken pyproject is not our spec
        if isinstance(data.get("tool"), dict) and "envcheck" in data["tool"]:
            return load_spec(pyproject)
    if system.is_file():
        return load_spec(system)
    return None
