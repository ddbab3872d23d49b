"""What every rank runs: the options of ``envcheck comm`` as one JSON-able value (no torch here).

The launcher hands it to the ranks it starts on their command line; ranks of a torchrun or srun world
each parse the same options themselves. Sizes left open are filled in by rank 0 once it knows the
device and the free memory of every rank (:func:`sweep`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from envcheck.comm.ops import OPS

#: The matrix of send/recv between every ordered pair of ranks on one host.
P2P = "p2p"
ALL_OPS = (*OPS, P2P)

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@dataclass(frozen=True)
class Defaults:
    """Per device kind: a GPU sweep as nccl-tests' usual ``-b 32K -e 1G -f 2``; on CPUs (gloo over
    loopback, a CI runner) small sizes and few iterations, so that the whole run takes seconds.

    ``iters`` is the number of timed runs per op and size (each rank's figure is the median over them);
    each run is :func:`calls_per_run` back-to-back calls between one pair of clock readings, as
    nccl-tests times its ``-n`` iterations, so that a small message's figure is the time of the call
    and not of starting one (on a GPU, Python and c10d spend tens of µs launching each call: timed one
    by one, that launch was inside every small-size figure)."""

    min_size: int
    max_size: int
    iters: int
    warmup: int
    p2p_size: int
    p2p_iters: int
    #: About how many bytes one timed run moves: small sizes get up to ``max_calls`` calls a run, sizes
    #: past ``run_bytes`` one call, whose own length hides the launch (the runs follow one another on
    #: the stream).
    run_bytes: int
    max_calls: int


GPU_DEFAULTS = Defaults(32 * KiB, 1 * GiB, 20, 5, 64 * MiB, 10, 256 * MiB, 50)
CPU_DEFAULTS = Defaults(4 * KiB, 64 * KiB, 5, 1, 256 * KiB, 3, 64 * KiB, 4)
#: The largest total buffer of a sweep is at most this share of the free memory of the fullest rank:
#: all_gather holds its input, the gathered output and the expected output (about 2 S + S/n).
FREE_MEMORY_SHARE = 8
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Plan:
    """``device``: ``auto``, ``cpu`` or ``cuda``. ``None`` sizes and counts take the device's defaults."""

    device: str = "auto"
    ops: tuple[str, ...] = ALL_OPS
    min_size: int | None = None
    max_size: int | None = None
    iters: int | None = None
    warmup: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        data["ops"] = tuple(data["ops"])
        return cls(**data)

    def defaults(self, cuda: bool) -> Defaults:
        return GPU_DEFAULTS if cuda else CPU_DEFAULTS

    def collectives(self) -> tuple[str, ...]:
        return tuple(op for op in self.ops if op in OPS)


def sweep(plan: Plan, *, cuda: bool, free_bytes: int | None) -> list[int]:
    """The sizes ``S`` to measure: powers of two from the minimum to the maximum (both included when
    given), the largest capped by :data:`FREE_MEMORY_SHARE` of ``free_bytes`` (the smallest over the
    ranks). Never empty: a cap below the minimum still measures the minimum."""
    d = plan.defaults(cuda)
    low = plan.min_size if plan.min_size is not None else d.min_size
    high = plan.max_size if plan.max_size is not None else d.max_size
    if free_bytes is not None and free_bytes > 0:
        high = min(high, free_bytes // FREE_MEMORY_SHARE)
    sizes = []
    size = max(1, low)
    while size <= high:
        sizes.append(size)
        size *= 2
    if plan.max_size is not None and sizes and sizes[-1] < high == plan.max_size:
        sizes.append(high)
    return sizes or [max(1, low)]


def calls_per_run(defaults: Defaults, size_bytes: int) -> int:
    """Back-to-back calls in one timed run at ``size_bytes``: as many as fit in the device's
    ``run_bytes``, between 1 and ``max_calls``, so a run stays short at every size (the whole sweep's
    time is bounded as nccl-tests' ``-n`` bounds it) and a small message is timed over many calls."""
    return max(1, min(defaults.max_calls, defaults.run_bytes // max(1, size_bytes)))
