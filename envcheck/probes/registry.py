"""The probe registry: a probe registers itself where it is defined (``@probe("nvml", ...)``), and the
registry fills itself on first use by importing :mod:`envcheck.probes.all`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envcheck.core.model import Fix
from envcheck.core.registry import Registry


@dataclass(frozen=True)
class ProbeSpec:
    """A probe: ``fn(env)`` returns data. ``what`` names the thing that hung when it times out, and
    ``hang_fix`` says where to look then (a hung NFS mount and a wedged driver need different advice)."""

    id: str
    fn: Callable[..., Any]
    timeout_s: float
    what: str
    hang_fix: Fix | None = None

    @property
    def name(self) -> str:
        return self.id


PROBES: Registry[ProbeSpec] = Registry("probe", package="envcheck.probes.all")


def probe(
    name: str, *, timeout_s: float, what: str, hang_fix: Fix | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        PROBES.add(ProbeSpec(name, fn, timeout_s, what, hang_fix))
        return fn

    return register
