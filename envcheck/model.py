"""The result model every layer shares: statuses, fixes, check results, and "not available".

These are plain frozen dataclasses so that probes, checks and renderers can pass them around without
importing each other, and so that the JSON contract is derived from one place.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """Verdict of one check. ``crash`` is a check that raised: it counts as a failure, but is shown
    apart so that a bug in envcheck is never mistaken for a problem with the machine."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    CRASH = "crash"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.SKIP: 0, Status.OK: 0, Status.WARN: 1, Status.FAIL: 2, Status.CRASH: 2}


@dataclass(frozen=True)
class NA:
    """A reading that is not available (unsupported card, older driver, no permission).

    It is falsy and prints as ``N/A`` so formatting code never crashes on it; ``reason`` says why.
    """

    reason: str = "not available"

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return "N/A"


def available(value: Any) -> bool:
    """True when ``value`` is a real reading (not None and not :class:`NA`)."""
    return value is not None and not isinstance(value, NA)


@dataclass(frozen=True)
class Fix:
    """What a person should do: prose, and where there is one, a command to run."""

    text: str
    command: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "command": self.command}


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. Every warn and fail carries a fix; ``details`` is free-form JSON data."""

    id: str
    title: str
    status: Status
    summary: str
    fix: Fix | None = None
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "fix": self.fix.to_json() if self.fix else None,
            "details": to_jsonable(self.details),
            "duration_s": round(self.duration_s, 4),
        }


def worst(statuses: list[Status]) -> Status:
    """The overall status: ``fail`` if any failed or crashed, else ``warn`` if any warned, else ``ok``."""
    level = max((s.severity for s in statuses), default=0)
    return {0: Status.OK, 1: Status.WARN, 2: Status.FAIL}[level]


class ExitCode(enum.IntEnum):
    """The whole exit-code policy (cf. black's ``report.py``): scripts and CI rely on it."""

    OK = 0
    FAILED = 1
    USAGE = 2


def exit_code_for(statuses: list[Status], *, strict: bool = False) -> ExitCode:
    """0 without failures (warnings allowed), 1 with any failure or crash; ``strict`` fails warnings too."""
    overall = worst(statuses)
    if overall is Status.FAIL or (strict and overall is Status.WARN):
        return ExitCode.FAILED
    return ExitCode.OK


def to_jsonable(value: Any) -> Any:
    """Turn probe data (dataclasses, NA, tuples, enums) into plain JSON values; NA becomes null."""
    import dataclasses

    if isinstance(value, NA) or value is None:
        return None
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
