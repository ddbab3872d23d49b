"""Registries of probes and checks, filled where each is defined (cf. brew's diagnostic checks).

A probe touches the world and returns plain data; a check is a small function from probed data to a
:class:`Verdict`. Both are registered by decorator so that adding one touches one file, and
``--list-checks`` and "run only these" come for free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envcheck.model import Fix, Status

if TYPE_CHECKING:
    from envcheck.runner import Context

#: Areas in the order the report shows them.
AREAS: dict[str, str] = {
    "host": "Host",
    "packages": "Packages",
    "driver": "Driver and NVML",
    "gpu": "GPUs",
    "torch": "torch and CUDA",
    "env": "Environment variables",
    "spec": "Lab spec",
}

#: Areas that ``--quick`` (the Docker healthcheck) runs: none of them imports or spawns torch.
QUICK_AREAS = ("host", "driver", "gpu")


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
class ProbeSpec:
    """A probe: ``fn(env)`` returns data. ``what`` names the thing that hung when it times out, and
    ``hang_fix`` says where to look then (a hung NFS mount and a wedged driver need different advice)."""

    name: str
    fn: Callable[..., Any]
    timeout_s: float
    what: str
    hang_fix: Fix | None = None


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    fn: Callable[[Context], Verdict]
    doc: str

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]


PROBES: dict[str, ProbeSpec] = {}
CHECKS: dict[str, CheckSpec] = {}


def probe(
    name: str, *, timeout_s: float, what: str, hang_fix: Fix | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        PROBES[name] = ProbeSpec(name, fn, timeout_s, what, hang_fix)
        return fn

    return register


def check(check_id: str, title: str) -> Callable[[Callable[[Context], Verdict]], Callable[[Context], Verdict]]:
    """Register a check. Its docstring's first paragraph is what ``--list-checks`` shows."""

    def register(fn: Callable[[Context], Verdict]) -> Callable[[Context], Verdict]:
        if check_id in CHECKS:
            raise ValueError(f"duplicate check id {check_id}")
        if check_id.split(".", 1)[0] not in AREAS:
            raise ValueError(f"check {check_id} is in no known area")
        # The docstring's first paragraph, on one line, is what --list-checks and the README show.
        doc = " ".join((fn.__doc__ or title).strip().split("\n\n")[0].split())
        CHECKS[check_id] = CheckSpec(check_id, title, fn, doc)
        return fn

    return register


def load_all() -> None:
    """Import every probe and check module so that they register themselves."""
    import envcheck.checks  # noqa: F401


def ordered_checks() -> list[CheckSpec]:
    """All checks, grouped by area in report order, registration order within an area."""
    load_all()
    order = {area: i for i, area in enumerate(AREAS)}
    return sorted(CHECKS.values(), key=lambda c: order[c.area])


class UnknownSelection(ValueError):
    """A check id or area the user named that does not exist (exit code 2)."""


def select(names: list[str] | tuple[str, ...], *, quick: bool = False) -> list[CheckSpec]:
    """Resolve the user's selection (check ids or area names) to checks, in report order.

    ``quick`` keeps the areas the healthcheck may run; naming a check outside them is a usage error
    rather than a silently empty run."""
    every = ordered_checks()
    pool = [c for c in every if c.area in QUICK_AREAS] if quick else every
    if not names:
        return pool
    known = {c.id for c in every}
    wanted: set[str] = set()
    for name in names:
        if name in AREAS:
            wanted.update(c.id for c in every if c.area == name)
        elif name in known:
            wanted.add(name)
        else:
            raise UnknownSelection(
                f"unknown check or area {name!r}; areas: {', '.join(AREAS)}; see `envcheck doctor --list-checks`"
            )
    chosen = [c for c in pool if c.id in wanted]
    left_out = sorted(wanted - {c.id for c in chosen})
    if left_out:
        raise UnknownSelection(f"--quick runs only the {', '.join(QUICK_AREAS)} areas, not {', '.join(left_out)}")
    return chosen
