"""How fast is the doctor, against its peers, measured in one run on one machine.

Runs each command several times as a real process (cold interpreter each time, as a user or a Docker
HEALTHCHECK would) and reports median and spread of wall time:

* ``envcheck doctor --quick``   (the healthcheck path; target < 0.6 s and < 1/4 of ``import torch``)
* ``python -c "import torch"``
* ``envcheck doctor``           (everything, torch child included; target < collect_env)
* ``python -m torch.utils.collect_env``
* ``envcheck healthcheck``      (the Docker HEALTHCHECK command; must stay far inside its --timeout)

Usage: ``python benchmarks/doctor_speed.py [--runs 7] [--json out.json]``. Figures go to
benchmarks/RESULTS-doctor.md by hand, with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def time_command(argv: list[str], runs: int) -> dict[str, object]:
    samples = []
    codes = set()
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        samples.append(time.perf_counter() - start)
        codes.add(proc.returncode)
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {
        "command": " ".join(argv),
        "median_s": statistics.median(samples),
        "iqr_s": q[2] - q[0],
        "min_s": min(samples),
        "samples_s": samples,
        "exit_codes": sorted(codes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    envcheck = shutil.which("envcheck") or os.path.join(os.path.dirname(sys.executable), "envcheck")
    py = sys.executable
    commands = {
        "doctor --quick": [envcheck, "doctor", "--quick", "--json"],
        "import torch": [py, "-c", "import torch"],
        "doctor (full)": [envcheck, "doctor", "--json"],
        "torch collect_env": [py, "-m", "torch.utils.collect_env"],
        "healthcheck": [envcheck, "healthcheck", "--deadline", "8"],
    }
    # Warm the page cache once so that the first measured run is not a disk benchmark.
    for argv in commands.values():
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    results = {name: time_command(argv, args.runs) for name, argv in commands.items()}

    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{'command':<22} {'median s':>9} {'IQR s':>7} {'min s':>7}  exit")
    for name, r in results.items():
        print(f"{name:<22} {r['median_s']:>9.3f} {r['iqr_s']:>7.3f} {r['min_s']:>7.3f}  {r['exit_codes']}")
    quick, torch_import = results["doctor --quick"]["median_s"], results["import torch"]["median_s"]
    full, collect = results["doctor (full)"]["median_s"], results["torch collect_env"]["median_s"]
    print(f"quick / import torch = {quick / torch_import:.2f}  (target < 0.25; quick target < 0.6 s)")
    print(f"full doctor / collect_env = {full / collect:.2f}  (target < 1)")
    dockerfile = Path(__file__).resolve().parent.parent / "Dockerfile"
    timeout = re.search(r"--timeout=(\d+)s", dockerfile.read_text())
    if timeout:
        health, limit = results["healthcheck"]["median_s"], float(timeout.group(1))
        print(f"healthcheck {health:.3f} s = {health / limit:.1%} of the Dockerfile's {limit:g} s timeout")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"machine": platform.node(), "cpus": os.cpu_count(), "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
