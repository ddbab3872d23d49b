"""What a check may ask of whoever runs it: probe data by name, and the errors that stand for a probe
that hung or broke. Checks depend on this contract, never on the runner that fulfils it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from envcheck.core.model import Fix


class ProbeTimeout(Exception):
    """The probe did not answer in time; ``what`` names what hung, ``fix`` says where to look."""

    def __init__(self, name: str, what: str, waited_s: float, fix: Fix | None = None) -> None:
        super().__init__(f"{what} did not answer within {waited_s:g} s")
        self.name, self.what, self.waited_s, self.fix = name, what, waited_s, fix


class ProbeFailed(Exception):
    """The probe raised: a bug in envcheck, or something below it that broke in a way nobody expected."""

    def __init__(self, name: str, what: str, error: BaseException) -> None:
        super().__init__(f"probing {what} raised {type(error).__name__}: {error}")
        self.name, self.what, self.error = name, what, error


class Context(Protocol):
    """What a check sees: probe data on demand (or :class:`ProbeTimeout` / :class:`ProbeFailed`), and
    the environment the run was started with."""

    @property
    def env(self) -> Mapping[str, str]: ...

    def probe(self, name: str) -> Any: ...
