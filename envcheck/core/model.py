"""The result model every layer shares: statuses, fixes, verdicts, results, and "not available".

These are plain frozen dataclasses so that probes, checks, benchmarks and renderers can pass them around
without importing each other, and so that the JSON contract is derived from one place.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """Verdict of one check or one benchmark case. ``crash`` is an item that raised (a check with a bug,
    a benchmark case whose kernel threw): it counts as a failure, but is shown apart so that an exception
    is never mistaken for a judged problem with the machine."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    CRASH = "crash"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def is_problem(self) -> bool:
        """A failure or a crash: what makes a run exit 1."""
        return self in (Status.FAIL, Status.CRASH)


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
class Verdict:
    """What a check function returns; the runner adds id, title and timing."""

    status: Status
    summary: str
    fix: Fix | None = None
    details: dict[str, Any] = field(default_factory=dict)


class SkipCheck(Exception):
    """Raised inside a check when what it judges is not there (no GPUs, no NVML): becomes ``skip``."""

    def __init__(self, summary: str, **details: Any) -> None:
        super().__init__(summary)
        self.summary, self.details = summary, details


def ok(summary: str, **details: Any) -> Verdict:
    return Verdict(Status.OK, summary, None, details)


def skip(summary: str, **details: Any) -> Verdict:
    return Verdict(Status.SKIP, summary, None, details)


def warn(summary: str, fix: str, command: str | None = None, **details: Any) -> Verdict:
    return Verdict(Status.WARN, summary, Fix(fix, command), details)


def fail(summary: str, fix: str, command: str | None = None, **details: Any) -> Verdict:
    return Verdict(Status.FAIL, summary, Fix(fix, command), details)


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
            "summary": displayable(self.summary),
            "fix": to_jsonable(self.fix.to_json()) if self.fix else None,
            "details": to_jsonable(self.details),
            "duration_s": round(self.duration_s, 4),
        }


def worst(statuses: list[Status]) -> Status:
    """The overall status: ``fail`` if any failed or crashed, else ``warn`` if any warned, else ``ok``."""
    level = max((s.severity for s in statuses), default=0)
    return {0: Status.OK, 1: Status.WARN, 2: Status.FAIL}[level]


def counts(statuses: list[Status]) -> dict[str, int]:
    """How many of each status, every status named (the JSON ``counts`` object)."""
    return {s.value: sum(1 for x in statuses if x is s) for s in Status}


def first_line(error: BaseException | str | None, limit: int = 300) -> str:
    """The first line of an error (CUDA errors run to a dozen lines), cut to ``limit`` characters; an
    exception without a message gives its type's name."""
    if isinstance(error, BaseException):
        text = str(error).strip()
        if not text:
            return type(error).__name__
    else:
        text = (error or "").strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def one_line(text: str) -> str:
    """Whitespace, newlines included, collapsed to single spaces: for a watcher or a log that keeps one
    line (a Docker healthcheck, node-problem-detector, ``envcheck COMMAND: error: ...``)."""
    return " ".join(text.split())


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message``: where the type matters (OutOfMemoryError vs RuntimeError, a
    worker's error for its device); an exception without a message is its type's name alone."""
    text = first_line(exc)
    return text if text == type(exc).__name__ else f"{type(exc).__name__}: {text}"


#: A lone surrogate: what Python makes of a byte that is not UTF-8 in a string from the OS (a host name, an
#: environment variable, a process name: 0xff becomes U+DCFF, PEP 383), and what a JSON file's ``"\\ud800"``
#: gives. No UTF-8 writer can write one: ``-o report.md`` would stop with UnicodeEncodeError.
_SURROGATE = re.compile("[\ud800-\udfff]")


def displayable(text: str) -> str:
    """``text`` with each byte that was not UTF-8 shown as U+FFFD, the replacement character every
    UTF-8 reader shows for such a byte: what a report, a terminal or a JSON reader can hold. Strings from
    the OS are decoded this way once, where they enter (the host name, a GPU process's name); a path used
    to open a file keeps its bytes instead (``os.fsencode`` gives them back)."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def to_jsonable(value: Any) -> Any:
    """Turn probe data (dataclasses, NA, tuples, enums) into strict JSON values (RFC 8259).

    NA and non-finite floats become null: JSON has no NaN or Infinity, and a reading that is NaN is a
    reading that is not available. Callers that must say *why* a number is missing (a matmul that
    returned NaN) say it in words next to it. A string is made :func:`displayable`: a byte from the OS
    that is not UTF-8 is U+FFFD in every report, whichever probe forgot to decode it.
    """
    # The plain JSON types first, by exact type: a fleet document holds millions of them, and the
    # isinstance chain below (an ABC check among them) cost more than the rest of writing it.
    kind = type(value)
    if kind is str:
        return displayable(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {displayable(str(k)): to_jsonable(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) is int else to_jsonable(v) for v in value]
    import dataclasses

    if isinstance(value, NA):
        return None
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {displayable(str(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return displayable(value)
    if isinstance(value, (int, bool)):
        return value
    return displayable(str(value))
