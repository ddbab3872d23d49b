"""Run probes concurrently under timeouts and a global deadline, then judge them with guarded checks.

Design (cf. flutter doctor's validators and pytest's ``CallInfo.from_call``):

* every probe runs in its own *daemon* thread, so a probe stuck inside a C call (a wedged driver in
  NVML, a hung NFS mount under ``statvfs``) can neither block the report nor keep the interpreter
  alive at exit; the torch probe additionally lives in a child process that is killed on timeout;
* a probe that times out or raises becomes a verdict naming what hung or what broke;
* a check that raises becomes a ``crash`` result and the run goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.calls import BUG_FIX, Outcome, short_traceback
from envcheck.core.model import CheckResult, Fix, SkipCheck, Status, Verdict
from envcheck.core.probing import ProbeFailed, ProbeTimeout
from envcheck.core.registry import CheckSpec
from envcheck.doctor.areas import AREA_PROBES
from envcheck.probes.registry import PROBES

DEFAULT_DEADLINE_S = 60.0
#: How long past the deadline a probe told it (the torch and JAX children) is still waited for. It stops its
#: child before the deadline and then kills it, reads its last words and parses them, all bounded; on a
#: loaded host that last step can end just after the deadline, and "no answer in time" replaced the step the
#: child was in, a warning read as a failure.
TOLD_GRACE_S = 2.0


@dataclass
class _Slot:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None
    started: float = 0.0


class ProbeRunner:
    """Starts probes on demand in daemon threads and hands their data to checks, within time bounds."""

    def __init__(
        self,
        env: Mapping[str, str],
        deadline_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        probes: Mapping[str, Any] | None = None,
        quick: bool = False,
    ) -> None:
        self.env = env
        self.quick = quick
        self.clock = clock
        self.deadline = clock() + deadline_s
        self.deadline_s = deadline_s
        if probes is None:
            PROBES.load()
        self._probes = probes if probes is not None else PROBES
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()

    def start(self, name: str) -> None:
        with self._lock:
            if name in self._slots:
                return
            slot = self._slots[name] = _Slot(started=self.clock())
        spec = self._probes[name]

        # A probe that can bound its own work (the torch child) is told how much of the deadline is left.
        kwargs: dict[str, Any] = {"deadline_s": self.deadline - slot.started} if _accepts(spec.fn, "deadline_s") else {}
        # A probe that reads less for the healthcheck (the kernel log since the last run) is told it runs there.
        if self.quick and _accepts(spec.fn, "quick"):
            kwargs["quick"] = True

        def work() -> None:
            try:
                slot.value = spec.fn(self.env, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - any probe failure becomes a verdict
                slot.error = exc
            finally:
                slot.done.set()

        threading.Thread(target=work, name=f"envcheck-probe-{name}", daemon=True).start()

    def get(self, name: str) -> Any:
        """The probe's data, or :class:`ProbeTimeout` / :class:`ProbeFailed`."""
        self.start(name)
        spec = self._probes[name]
        slot = self._slots[name]
        grace = TOLD_GRACE_S if _accepts(spec.fn, "deadline_s") else 0.0
        budget = min(spec.timeout_s - (self.clock() - slot.started), self.deadline + grace - self.clock())
        if not _wait(slot.done, max(budget, 0.0)):
            raise ProbeTimeout(name, spec.what, min(spec.timeout_s, self.deadline_s), spec.hang_fix)
        if slot.error is not None:
            raise ProbeFailed(name, spec.what, slot.error)
        return slot.value

    def running(self) -> list[tuple[str, str, float]]:
        """(name, what it is, seconds so far) of every probe started and not finished: what a progress
        display shows, so that a 3 s CUDA start never looks like a hung GPU probe."""
        now = self.clock()
        with self._lock:
            slots = list(self._slots.items())
        return [(name, self._probes[name].what, now - slot.started) for name, slot in slots if not slot.done.is_set()]

    def finished(self) -> dict[str, Any]:
        """The data of every probe that finished successfully so far: what a report captures."""
        with self._lock:
            slots = list(self._slots.items())
        return {name: slot.value for name, slot in slots if slot.done.is_set() and slot.error is None}


def _wait(event: threading.Event, timeout_s: float) -> bool:
    """``event.wait`` in short slices: a Ctrl-C that the kernel delivered to a probe thread is only acted on
    when the main thread wakes, and one long wait would keep the user waiting for the whole probe."""
    end = time.monotonic() + timeout_s
    while True:
        left = end - time.monotonic()
        if event.wait(min(max(left, 0.0), 0.2)):
            return True
        if left <= 0.2:
            return event.is_set()


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class ProbeContext:
    """What a check sees (the :class:`~envcheck.core.probing.Context` contract): probe data on demand
    from a :class:`ProbeRunner`, and the environment."""

    probes: ProbeRunner
    env: Mapping[str, str]

    def probe(self, name: str) -> Any:
        return self.probes.get(name)


def run_check(spec: CheckSpec, ctx: ProbeContext, clock: Callable[[], float] = time.monotonic) -> CheckResult:
    """Run one check under the one guard (:class:`envcheck.core.calls.Outcome`); a hung or broken
    probe, or a bug in the check, becomes its verdict."""
    outcome = Outcome.from_call(lambda: spec.fn(ctx), clock=clock)
    exc = outcome.error
    if exc is None:
        verdict: Verdict = outcome.value  # type: ignore[assignment]
        status, summary, fix, details = verdict.status, verdict.summary, verdict.fix, verdict.details
    elif isinstance(exc, SkipCheck):
        status, summary, fix, details = Status.SKIP, exc.summary, None, exc.details
    elif isinstance(exc, ProbeTimeout):
        status, summary = Status.FAIL, f"{exc.what} hung: no answer within {exc.waited_s:g} s"
        fix = exc.fix or Fix(
            f"Something below envcheck is stuck ({exc.what}): see whether the same operation hangs by hand, "
            "and what the kernel log says.",
            "sudo dmesg -T | tail -50",
        )
        details = {"probe": exc.name, "timeout_s": exc.waited_s}
    elif isinstance(exc, ProbeFailed):
        status = Status.CRASH
        summary = f"probe {exc.name!r} crashed: {type(exc.error).__name__}: {exc.error}"
        fix = BUG_FIX
        details = {"probe": exc.name, "traceback": short_traceback(exc.error)}
    else:  # a buggy check must not end the run
        status, summary, fix = Status.CRASH, f"check crashed: {outcome.words()}", BUG_FIX
        details = {"traceback": outcome.short_traceback()}
    return CheckResult(spec.id, spec.title, status, summary, fix, details, outcome.duration_s)


#: Which probes each area leans on; started eagerly so that they overlap (torch's child process runs
#: while NVML and the host are probed).
def probes_for(specs: list[CheckSpec]) -> list[str]:
    """The probes the checks' areas lean on, the slowest first: what a run starts before judging."""
    names: list[str] = []
    # torch first: it is the slowest (a child process that imports torch), so it starts first.
    for area in sorted({s.area for s in specs}, key=lambda a: a != "torch"):
        for name in AREA_PROBES.get(area, []):
            if name not in names and name in PROBES:
                names.append(name)
    return names
