"""Measure envcheck bench against a plain hand-written timing loop, in the same run, at the same size.

The question this answers: are envcheck's figures as trustworthy as what a careful engineer would get
with ``for _ in range(n): step()`` between two synchronizations? For matmul and device copy it runs
envcheck's own case (harness, budget, median) and a raw loop over the same operation at the same size,
interleaved round by round so that drift (clock boost, other load) hits both alike, and prints the ratio
envcheck / raw of the median figures. A ratio near 1 (>= 0.95) means the harness adds no overhead and
no optimism. It also times the whole suite (``--quick`` and default) as a user would run it.

    python benchmarks/bench_vs_raw.py --device cpu [--rounds 5] [--threads N] [--no-suite] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from envcheck.bench import case as bench_case
from envcheck.bench import peaks
from envcheck.bench.model import BENCHMARKS, Options
from envcheck.core.model import Status
from envcheck.devices import resolve
from envcheck.devices.model import DeviceInfo


def raw_seconds_per_step(step: Callable[[], Any], device: str, seconds: float) -> float:
    """The hand-written loop: warm up, pick n for ~``seconds``, then one timed loop of n steps."""
    # Synchronize the benchmarked GPU by name: the bare call waits only for the current one (cuda:0).
    sync = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    step()
    sync()
    one = time.perf_counter() - t0
    n = max(3, int(seconds / max(one, 1e-6)))
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - t0) / n


def raw_matmul(dev: DeviceInfo, dtype: torch.dtype, size: int, seconds: float) -> float:
    a = torch.randn(size, size, dtype=dtype, device=dev.torch_device)
    b = torch.randn(size, size, dtype=dtype, device=dev.torch_device)
    c = torch.empty(size, size, dtype=dtype, device=dev.torch_device)
    per_step = raw_seconds_per_step(lambda: torch.matmul(a, b, out=c), dev.torch_device, seconds)
    return 2 * size**3 / per_step / (1e12 if dev.is_cuda else 1e9)


def raw_copy(dev: DeviceInfo, nbytes: int, seconds: float) -> float:
    src = torch.randn(nbytes // 4, device=dev.torch_device)
    dst = torch.empty_like(src)
    per_step = raw_seconds_per_step(lambda: dst.copy_(src), dev.torch_device, seconds)
    return 2 * nbytes / per_step / 1e9


def envcheck_figure(bench_id: str, dev: DeviceInfo) -> bench_case.BenchResult:
    spec = BENCHMARKS[bench_id]
    (plan,) = spec.plans(dev, Options())
    datasheet = peaks.by_device([dev])[dev.name]
    return bench_case.run_plan(spec, plan, dev, bench_case.BUDGETS[(dev.kind, False)], datasheet=datasheet)


def compare_figures(dev: DeviceInfo, rounds: int) -> list[dict[str, Any]]:
    """Paired rounds: envcheck and the raw loop back to back, in alternating order, so that drift in the
    machine (boost clocks, a neighbour's load) hits both sides of each ratio alike; the ratio reported is
    the median of the per-round ratios."""
    matmul_id = "matmul.bf16" if dev.is_cuda else "matmul.fp32"
    seconds = bench_case.BUDGETS[(dev.kind, False)].measure_s
    rows = []
    for bench_id in (matmul_id, "memory.d2d"):
        ours: list[float] = []
        raw: list[float] = []
        case, unit, params = "", "", {}
        for i in range(rounds):
            # Round 0 runs envcheck first, so the raw loop always has the size envcheck's case ran at
            # (after any out-of-memory shrink) in params.
            for side in ("envcheck", "raw") if i % 2 == 0 else ("raw", "envcheck"):
                if side == "envcheck":
                    result = envcheck_figure(bench_id, dev)
                    assert result.value is not None and result.status is Status.OK, result.reason
                    ours.append(result.value)
                    case, unit, params = result.case, result.unit or "", result.params
                elif bench_id.startswith("matmul"):
                    dtype = torch.bfloat16 if dev.is_cuda else torch.float32
                    raw.append(raw_matmul(dev, dtype, params["m"], seconds))
                else:
                    raw.append(raw_copy(dev, params["bytes"], seconds))
                bench_case.free_memory(dev)
        ratios = [o / r for o, r in zip(ours, raw, strict=True)]
        rows.append(
            {
                "benchmark": bench_id,
                "case": case,
                "unit": unit,
                "envcheck_median": statistics.median(ours),
                "raw_median": statistics.median(raw),
                "ratio": statistics.median(ratios),
                "round_ratios": ratios,
                "envcheck_rounds": ours,
                "raw_rounds": raw,
                "params": params,
            }
        )
    return rows


def suite_wall(device: str, quick: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "envcheck", "bench", "--device", device, "--json", *(["--quick"] if quick else [])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    doc = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return {
        "mode": "--quick" if quick else "default",
        "wall_s": round(wall, 1),
        "exit_code": proc.returncode,
        "summary": doc.get("summary"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-suite", action="store_true", help="skip timing the whole suite")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--threads", type=int, help="torch CPU threads (fewer = less exposed to a busy host)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    BENCHMARKS.load()
    try:
        # NVML identity is not needed here: the first device the bench would run on, resolved from the torch
        # child's report as the bench resolves it, with what its worker would measure (measured in this process).
        from envcheck.probes.torch import probe_torch

        probed = {"torch": probe_torch(os.environ), "nvml": None}
        chosen, _ = resolve.from_probes(resolve.parse(args.device), probed.__getitem__, os.environ)
        dev = resolve.measure_here(chosen[0])
    except resolve.DeviceError as exc:
        print(f"bench_vs_raw: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    name = dev.name
    print(f"device: {dev.name} ({dev.model}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = compare_figures(dev, args.rounds)
    print(f"\n{'benchmark':14} {'case':26} {'envcheck':>12} {'raw loop':>12} {'ratio':>7}  (medians; ratio of pairs)")
    for r in rows:
        print(
            f"{r['benchmark']:14} {r['case']:26} {r['envcheck_median']:12.1f} {r['raw_median']:12.1f} "
            f"{r['ratio']:7.3f}  {r['unit']}  rounds: {' '.join(f'{x:.2f}' for x in r['round_ratios'])}"
        )
    suites = [] if args.no_suite else [suite_wall(name, quick=True), suite_wall(name, quick=False)]
    for s in suites:
        print(f"suite {s['mode']:8} on {name}: {s['wall_s']:.1f} s wall (exit {s['exit_code']}) {s['summary']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"device": dev.to_json(), "torch": torch.__version__, "figures": rows, "suite": suites}, fh, indent=2
            )
    worst = min(r["ratio"] for r in rows)
    print(f"\nworst ratio envcheck/raw: {worst:.3f} ({'ok' if worst >= 0.95 else 'BELOW 0.95'})")
    return 0 if worst >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
