"""What the bench's fan-out costs by itself: starting N workers, streaming their events, merging.

Each worker gets an empty schedule (no case), so what it does is what every worker does before its
first case and after its last: start an interpreter, import envcheck and torch, describe its device,
plan, report, exit. Importing torch is the part the fan-out cannot avoid (a worker needs torch), so
the figure that matters is the rest, per worker: its wall time as the parent saw it, minus the torch
import it timed itself. The parent's own share is the time from the fan-out's start to the merged
result that no worker accounts for. Not a test: a measurement, written to RESULTS-fanout.md.

    python benchmarks/fanout_cost.py [--repeats 3] [--write benchmarks/RESULTS-fanout.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace

from envcheck.bench import run
from envcheck.bench.harness import Budget
from envcheck.bench.model import Options
from envcheck.bench.plan import Job
from envcheck.devices import resolve

COUNTS = (1, 2, 4, 8)


def empty_jobs(n: int) -> list[Job]:
    cpu = resolve.cpu_here()
    budget = Budget(measure_s=0.01, warmup_s=0.0)
    return [Job(replace(cpu, name=f"cpu:{i}"), (), (), Options(quick=True), budget, "", 120.0, 60.0) for i in range(n)]


def torch_import_s() -> float:
    """Wall time of ``import torch`` in a fresh interpreter, less the interpreter's own start."""

    def wall(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - started

    return wall("import torch") - wall("pass")


def one_run(n: int) -> dict[str, float]:
    started = time.perf_counter()
    out = run.run(empty_jobs(n))
    total = time.perf_counter() - started
    assert all(w.returncode == 0 and w.error is None for w in out.workers), out.workers
    beyond = [w.wall_s - (w.import_s or 0.0) for w in out.workers]
    last_end = max(w.started_s + w.wall_s for w in out.workers)
    return {
        "total": total,
        "import": statistics.median(w.import_s or 0.0 for w in out.workers),
        "beyond_median": statistics.median(beyond),
        "beyond_max": max(beyond),
        "parent": total - last_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", metavar="FILE")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    reference = statistics.median(torch_import_s() for _ in range(args.repeats))
    rows = []
    for n in COUNTS:
        runs = [one_run(n) for _ in range(args.repeats)]
        row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        rows.append((n, row))
        print(n, {k: round(v, 3) for k, v in row.items()}, flush=True)
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        "# The bench's fan-out: its own cost",
        "",
        f"Measured by `benchmarks/fanout_cost.py` (median of {args.repeats} runs) on {cores} CPU cores, "
        f"no GPU, torch {torch.__version__}, Python {platform.python_version()}. Each worker has an empty "
        "schedule: it starts, imports envcheck and torch, describes its device, plans nothing, reports and "
        "exits. *Beyond torch* is a worker's wall time as the parent saw it minus the torch import it timed "
        "itself; *parent* is the time from the fan-out's start to the merged result that no worker "
        "accounts for (starting the processes, the last reads, merging).",
        "",
        f"Importing torch in one fresh interpreter, alone: {reference:.2f} s. The machine is shared: its "
        f"1-minute load average was {load_before:.1f} before the runs and {os.getloadavg()[0]:.1f} after, so "
        "every figure carries other processes' CPU use.",
        "",
        "| workers | total wall (s) | torch import per worker (s) | beyond torch per worker, median / max (s) "
        "| parent (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, row in rows:
        lines.append(
            f"| {n} | {row['total']:.2f} | {row['import']:.2f} | {row['beyond_median']:.2f} / "
            f"{row['beyond_max']:.2f} | {row['parent']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
