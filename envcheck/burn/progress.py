"""The burn's live display on stderr while it runs (not a report; the report is envcheck.burn.render).

On a terminal, one line per device, redrawn about once a second: its throughput, temperature, SM clock, power
and mismatches so far, and how far into the run it is. In pipes and logs, where a redrawn line would be
noise, one plain line per device when its load begins (a log shows at once that the burn is under way, not
only after the first interval) and then every :data:`PIPE_EVERY_S`, each starting with the device
(``grep cuda:3`` follows one card). Nothing goes to stdout, so ``--format json`` prints only the report there.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from envcheck.core.model import available
from envcheck.core.units import clock

if TYPE_CHECKING:
    from envcheck.burn.app import BurnChild, Watch
    from envcheck.probes.nvml.telemetry import Sample, Sampler

#: Seconds between the plain lines in a pipe.
PIPE_EVERY_S = 10.0
#: Seconds between redraws on a terminal.
REDRAW_S = 1.0


def line(child: BurnChild, sample: Sample | None, now: float) -> str:
    """One device's state in one line."""
    job = child.the_job
    parts = [child.name]
    loaded = child.loaded_s(now)
    if child.error is not None:
        parts.append(f"error: {child.error}")
    elif child.ended is not None and child.failure() is not None:
        parts.append(f"stopped: {child.failure()}")
    elif loaded is None:
        parts.append(f"starting ({child.doing()})")
    else:
        parts.append(f"{clock(min(loaded, job.duration_s))}/{clock(job.duration_s)}")
        if child.last_value is not None:
            parts.append(f"{child.last_value:,.3g} TFLOP/s")
    if sample is not None and not sample.lost:
        for value, unit in (
            (sample.temperature_c, "°C"),
            (sample.sm_clock_mhz, "MHz"),
            (sample.power_w, "W"),
        ):
            if available(value):
                parts.append(f"{value:.0f} {unit}")
    elif sample is not None:
        parts.append("GPU LOST")
    if loaded is not None:
        parts.append(f"mismatches {child.mismatched}" + (f" of {child.compared}" if child.compared else ""))
    return "  ".join(parts)


def _latest(sampler: Sampler | None) -> dict[Any, Sample]:
    if sampler is None:
        return {}
    telemetry = sampler.telemetry()
    return {index: samples[-1] for index, samples in telemetry.samples.items() if samples}


def display(stream: IO[str] | None = None) -> tuple[Watch, Any]:
    """The watch callback for :func:`envcheck.burn.app.run_burn` and the context manager that owns the
    display (a live region on a terminal, nothing in a pipe)."""
    stream = stream or sys.stderr
    last = [0.0]
    if not stream.isatty():
        last[0] = time.monotonic()

        announced: set[str] = set()

        def plain(children: Sequence[BurnChild], sampler: Sampler | None) -> None:
            now = time.monotonic()
            if now - last[0] < PIPE_EVERY_S:
                started = [c for c in children if c.load_started is not None and c.name not in announced]
                if started:
                    latest = _latest(sampler)
                    for child in started:
                        announced.add(child.name)
                        print(line(child, latest.get(child.key), now), file=stream, flush=True)
                return
            last[0] = now
            latest = _latest(sampler)
            for child in children:
                if child.load_started is not None:
                    announced.add(child.name)
                print(line(child, latest.get(child.key), now), file=stream, flush=True)

        return plain, contextlib.nullcontext()

    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    live = Live(Text(""), console=Console(file=stream), transient=True, auto_refresh=False)

    def redraw(children: Sequence[BurnChild], sampler: Sampler | None) -> None:
        now = time.monotonic()
        if now - last[0] < REDRAW_S:
            return
        last[0] = now
        latest = _latest(sampler)
        live.update(Text("\n".join(line(c, latest.get(c.key), now) for c in children)), refresh=True)

    return redraw, live
