"""One guarded call for every unit envcheck runs (a doctor check, a burn rule, a bench case, a renderer's
section): run it, time it, and capture what it raised into the result instead of ending the run. Only
control flow (Ctrl-C, SystemExit) is re-raised. Each caller maps an :class:`Outcome` to its own result
type, so a crash reads the same wherever it happened (cf. pytest's ``CallInfo.from_call``).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from envcheck.core.model import Fix

T = TypeVar("T")

#: The fix for a unit that crashed: a bug in envcheck, never the machine's fault.
BUG_FIX = Fix(
    "This is a bug in envcheck, not a problem with your machine: please report it with `envcheck doctor --json`."
)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one call gave: its ``value``, or the exception it raised (``error``), and how long it took."""

    value: T | None
    error: BaseException | None
    duration_s: float

    @property
    def crashed(self) -> bool:
        return self.error is not None

    @classmethod
    def from_call(
        cls,
        fn: Callable[[], T],
        *,
        reraise: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit),
        clock: Callable[[], float] = time.monotonic,
    ) -> Outcome[T]:
        start = clock()
        try:
            value = fn()
        except reraise:
            raise
        except BaseException as exc:  # noqa: BLE001 - whatever a unit raises becomes its result
            return cls(None, exc, clock() - start)
        return cls(value, None, clock() - start)

    def words(self) -> str:
        """``TypeError: message``: the crash as one line for a summary."""
        return f"{type(self.error).__name__}: {self.error}" if self.error is not None else ""

    def short_traceback(self, limit: int = 6) -> list[str]:
        """The innermost frames of the crash, for a report's details."""
        if self.error is None:
            return []
        return short_traceback(self.error, limit)


def short_traceback(error: BaseException, limit: int = 6) -> list[str]:
    """The last ``limit`` lines of ``error``'s traceback (the innermost frames and the error), for a
    report's details."""
    return traceback.format_exception(type(error), error, error.__traceback__)[-limit:]
