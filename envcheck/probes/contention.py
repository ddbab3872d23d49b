"""How busy the CPUs are with *other* work: before the CPU bench and during each of its cases, and over a CPU
burn (whose load runs in worker processes, counted as its own).

A CPU figure taken while other processes compete for the same cores measures the sharing, not the
CPU: torch spreads every operation over all its threads, so one busy neighbour on a 2-core machine
halves the figure and makes the samples noisy. The bench warns in its preflight and marks each figure
taken under contention, so that nobody files a "slow CPU" or a regression that was a neighbour's job.

What is measured: the CPU time spent busy on the CPUs this process may run on (psutil's per-CPU
counters, the same as ``top``), minus this process's own CPU time, over a window. That is "other
processes' use" in cores. Where a cgroup quota lets this process use fewer cores than it may run on
(``docker --cpus=2`` on a 16-CPU host), the others may use the spare CPUs freely; only what they take
beyond that competes. The load average is reported alongside, but does not decide: it trails by a
minute and counts this process's own earlier work (a second bench run right after a first would warn).

A limit of the model: under a quota, processes in this process's own cgroup (a second job in the same
container) take from the quota, yet are counted like any neighbour, against the spare CPUs first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from envcheck.core.model import CheckResult, Fix, Status

#: Other processes taking this share of the cores the bench may use mark a figure (and the preflight) as
#: contended. A quarter of the cores moves a figure by more than --compare's 10 % threshold, and stays
#: well above what psutil's 10 ms clock-tick accounting can misread over a 0.2 s case (about 0.1 core).
CONTENDED_SHARE = 0.25
#: The preflight's sample: long enough to see a neighbour, short enough not to be noticed.
SAMPLE_S = 0.5

#: The per-CPU counters that are work (steal is time a hypervisor gave to other VMs: contention too).
_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


@dataclass(frozen=True)
class Cpus:
    """The CPUs this process may run on, and how many cores' worth of time it may use on them."""

    ids: tuple[int, ...]
    usable_cores: float

    @classmethod
    def here(cls) -> Cpus:
        from envcheck.probes.host import read_cpu

        try:
            ids = tuple(sorted(os.sched_getaffinity(0)))
        except (AttributeError, OSError):  # macOS has no sched_getaffinity
            ids = tuple(range(psutil.cpu_count() or 1))
        quota = read_cpu().cgroup_quota_cores
        return cls(ids, min(float(len(ids)), quota) if quota else float(len(ids)))

    @property
    def spare_cores(self) -> float:
        """CPUs this process may run on beyond what its quota lets it use: others use them for free."""
        return max(0.0, len(self.ids) - self.usable_cores)


@dataclass(frozen=True)
class Sample:
    at_s: float  # monotonic clock
    busy_s: float  # CPU seconds spent busy on our CPUs, by anyone
    own_s: float  # CPU seconds this process (every thread) spent


def sample(cpus: Cpus, clock: Callable[[], float] = time.monotonic, *, with_children: bool = False) -> Sample:
    """One reading of the CPUs' busy time and this process's own. ``with_children``: its children's time is its
    own too, those it has waited for (a burn's workers, sampled once they have ended) and those still running."""
    per_cpu: list[Any] = psutil.cpu_times(percpu=True)
    chosen = [per_cpu[i] for i in cpus.ids if i < len(per_cpu)] or per_cpu
    busy = sum(getattr(t, name, 0.0) for t in chosen for name in _BUSY_FIELDS)
    me = psutil.Process()
    times = me.cpu_times()
    own = times.user + times.system
    if with_children:
        own += times.children_user + times.children_system
        for child in me.children(recursive=True):
            try:
                t = child.cpu_times()
            except psutil.Error:  # it ended between the listing and the reading
                continue
            own += t.user + t.system
    return Sample(clock(), busy, own)


@dataclass(frozen=True)
class Contention:
    """Other processes' CPU use over a window, judged against what this process may use."""

    others_cores: float
    usable_cores: float
    spare_cores: float
    window_s: float
    load_average: float | None = None

    @property
    def share(self) -> float:
        """The share of this process's usable cores that the others took (0 = all ours, 1 = none left)."""
        taken = max(0.0, self.others_cores - self.spare_cores)
        return min(1.0, taken / self.usable_cores) if self.usable_cores > 0 else 0.0

    @property
    def contended(self) -> bool:
        return self.share >= CONTENDED_SHARE

    def words(self, what: str = "benchmark") -> str:
        load = f", load average {self.load_average:.1f}" if self.load_average is not None else ""
        return (
            f"other processes used {self.others_cores:.1f} of the {_cores(self.usable_cores)} CPU cores this "
            f"{what} may use ({self.share:.0%}) over {self.window_s:.1f} s{load}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "others_cores": round(self.others_cores, 3),
            "usable_cores": self.usable_cores,
            "share": round(self.share, 3),
            "window_s": round(self.window_s, 3),
            "load_average": self.load_average,
            "spare_cores": self.spare_cores,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Contention:
        """Back from :meth:`to_json` (a bench worker sends its results to the parent this way)."""
        return cls(
            data["others_cores"],
            data["usable_cores"],
            data.get("spare_cores") or 0.0,
            data["window_s"],
            data.get("load_average"),
        )


def _cores(n: float) -> str:
    return f"{n:.0f}" if n == int(n) else f"{n:.1f}"


def between(before: Sample, after: Sample, cpus: Cpus, load_average: float | None = None) -> Contention:
    """Contention over the window between two samples (this process's own work subtracted)."""
    window = max(after.at_s - before.at_s, 1e-9)
    others = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / window
    return Contention(others, cpus.usable_cores, cpus.spare_cores, window, load_average)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has none
        return None


def measure(cpus: Cpus, seconds: float = SAMPLE_S, sleep: Callable[[float], None] = time.sleep) -> Contention:
    """Sit idle for ``seconds`` and see how much CPU the rest of the machine used meanwhile."""
    before = sample(cpus)
    sleep(seconds)
    return between(before, sample(cpus), cpus, load_average())


PREFLIGHT_ID = "bench.cpu_contention"
PREFLIGHT_TITLE = "CPU free for the benchmark"


def judged(
    found: Contention, check_id: str, title: str, *, what: str, consequence: str, took_s: float = 0.0
) -> CheckResult:
    """The one verdict on CPU contention, for the bench's preflight and the burn: a warning (never a failure,
    the CPU is not at fault) when other processes took a quarter of the cores, with what it does to the
    figures (``consequence``) and how to get the cores back; else ok with the numbers."""
    if not found.contended:
        return CheckResult(check_id, title, Status.OK, found.words(what), None, found.to_json(), took_s)
    return CheckResult(
        check_id,
        title,
        Status.WARN,
        f"{found.words(what)}: {consequence}",
        Fix(
            f"Run the {what} while the machine is otherwise idle: stop or wait for the other work (`top` shows "
            f"it), or give the {what} cores of its own (taskset, --cpuset-cpus).",
            "top -b -n 1 | head -20",
        ),
        found.to_json(),
        took_s,
    )


def preflight(cpus: Cpus, seconds: float = SAMPLE_S) -> CheckResult:
    """The CPU bench's precondition, reported with the doctor's GPU preconditions: a warning (never a
    failure) when other processes already take a share of the cores, since every CPU figure would then
    be low and noisy; the figures still run, and those taken under contention are marked."""
    started = time.monotonic()
    found = measure(cpus, seconds)
    consequence = "CPU figures will be low and noisy; those taken under contention are marked"
    return judged(
        found,
        PREFLIGHT_ID,
        PREFLIGHT_TITLE,
        what="benchmark",
        consequence=consequence,
        took_s=time.monotonic() - started,
    )
