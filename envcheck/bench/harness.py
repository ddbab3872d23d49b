"""The timing harness: timers, the budget loop, and :class:`Measurement` (raw samples, derived stats).

Modelled on ``torch.utils.benchmark`` (``common.py``): a measurement keeps every raw sample and derives
median, IQR and a "noisy" flag from them, so that a figure can always be re-judged from the JSON. The
clock and the timer are injected, so the loop is tested exactly with a fake timer and no hardware.

Why each piece exists:

* GPU work is asynchronous: a host clock around a kernel launch measures the launch, not the kernel.
  :class:`CudaEventTimer` records CUDA events on the stream around the region and waits for the end
  event.
* The first calls pay for cuBLAS handle creation, cuDNN autotuning and lazy module loading, so a warm-up
  phase runs before anything is kept.
* One sample times several back-to-back steps (``steps_per_sample``) so that the launch gap and timer
  resolution are amortised, the way a hand-written ``for _ in range(n)`` loop amortises them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: A sample spread (IQR / median) above this marks a figure as noisy. torch.utils.benchmark warns at
#: the same 10 % (``_IQR_WARN_THRESHOLD`` in its ``common.py``).
NOISY_RELATIVE_IQR = 0.10

Step = Callable[[], Any]


class Timer(Protocol):
    """Times ``n`` back-to-back calls of ``fn`` and returns the elapsed seconds for all of them."""

    def time(self, fn: Step, n: int) -> float: ...


class CpuTimer:
    """Host work: ``perf_counter`` around the loop is the right clock (CPU ops in torch are synchronous)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock

    def time(self, fn: Step, n: int) -> float:
        start = self.clock()
        for _ in range(n):
            fn()
        return self.clock() - start


class CudaEventTimer:
    """Times GPU work with CUDA events recorded on the current stream of ``device``.

    The synchronize before the start event keeps earlier queued work (e.g. input generation) out of the
    region; the end event is waited on so the elapsed time covers the kernels, not their launches. The
    events go on ``device``'s stream by name, not on whichever GPU happens to be current: recorded on
    another GPU's idle stream they would bracket nothing and time only the host's launch loop.
    """

    def __init__(self, device: Any) -> None:
        import torch

        self.torch = torch
        self.device = device

    def time(self, fn: Step, n: int) -> float:
        torch = self.torch
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        stream = torch.cuda.current_stream(self.device)
        torch.cuda.synchronize(self.device)
        start.record(stream)
        for _ in range(n):
            fn()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / 1000.0


@dataclass(frozen=True)
class Budget:
    """How long to measure one case. ``warmup_s`` is spent before any sample is kept."""

    measure_s: float
    warmup_s: float
    min_samples: int = 5
    max_samples: int = 500
    #: A sample should last about this long, so that launch gaps and timer resolution are amortised.
    sample_s: float = 0.010
    #: At least this many warm-up calls, however long they take (the first one autotunes).
    min_warmup: int = 2


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of an already sorted, non-empty sequence."""
    if not sorted_values:
        raise ValueError("quantile of no samples")
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Measurement:
    """Raw per-step times of one case; every statistic is derived from ``samples_s``, never stored apart."""

    samples_s: tuple[float, ...]
    steps_per_sample: int
    warmup_steps: int
    timer: str

    @property
    def _sorted(self) -> list[float]:
        return sorted(self.samples_s)

    @property
    def median_s(self) -> float:
        return quantile(self._sorted, 0.5)

    @property
    def q1_s(self) -> float:
        return quantile(self._sorted, 0.25)

    @property
    def q3_s(self) -> float:
        return quantile(self._sorted, 0.75)

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s

    @property
    def relative_iqr(self) -> float:
        """Spread as a fraction of the median (0.05 = the middle half of the samples lie within 5 %)."""
        median = self.median_s
        return self.iqr_s / median if median > 0 else math.inf

    @property
    def noisy(self) -> bool:
        return self.relative_iqr > NOISY_RELATIVE_IQR

    def to_json(self) -> dict[str, Any]:
        return {
            "median_s": self.median_s,
            "iqr_s": self.iqr_s,
            "q1_s": self.q1_s,
            "q3_s": self.q3_s,
            "min_s": min(self.samples_s),
            "max_s": max(self.samples_s),
            "relative_iqr": round(self.relative_iqr, 4),
            "noisy": self.noisy,
            "samples": len(self.samples_s),
            "steps_per_sample": self.steps_per_sample,
            "warmup_steps": self.warmup_steps,
            "timer": self.timer,
            "samples_s": list(self.samples_s),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        """Back from :meth:`to_json`: the raw samples are all a measurement is; the rest is derived."""
        return cls(tuple(data["samples_s"]), data["steps_per_sample"], data["warmup_steps"], data["timer"])


def measure(
    step: Step,
    timer: Timer,
    budget: Budget,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Warm up, pick how many steps make one sample, then sample until the budget is spent.

    The loop stops when at least ``min_samples`` samples are kept and ``measure_s`` of wall time (by
    ``clock``) has passed, or at ``max_samples``. Each sample is the mean time of ``steps_per_sample``
    consecutive steps; the spread between samples is what the IQR reports.
    """
    warmup_steps = 0
    start = clock()
    last = 0.0
    while warmup_steps < budget.min_warmup or clock() - start < budget.warmup_s:
        last = timer.time(step, 1)
        warmup_steps += 1
    steps = max(1, math.ceil(budget.sample_s / last)) if last > 0 else 1
    samples: list[float] = []
    start = clock()
    while len(samples) < budget.max_samples and (
        len(samples) < budget.min_samples or clock() - start < budget.measure_s
    ):
        samples.append(timer.time(step, steps) / steps)
    return Measurement(tuple(samples), steps, warmup_steps, type(timer).__name__)
