"""Time the packages probe and the in-process `pip check` on this environment and on 300 synthetic
distributions (the size of a big research venv). Usage: ``python benchmarks/packages_probe.py``."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from envcheck.doctor.checks.packages import dependency_problems
from envcheck.probes.packages import probe_packages


def make_dist(site: Path, name: str, requires: list[str]) -> None:
    info = site / f"{name}-1.0.0.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0.0", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def timed(fn, runs: int = 9) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples)


def main() -> None:
    def this_env() -> None:
        dependency_problems(probe_packages(os.environ).dists)

    median, best = timed(this_env)
    n = len(probe_packages(os.environ).dists)
    print(
        f"this environment ({n} dists): probe + dependency check median {median * 1000:.1f} ms, "
        f"min {best * 1000:.1f} ms"
    )
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        for i in range(300):
            make_dist(site, f"pkg{i}", [f"pkg{(i + 1) % 300}>=1.0", f"pkg{(i + 7) % 300}; python_version >= '3'"])

        def synthetic() -> None:
            dependency_problems(probe_packages(os.environ, paths=[tmp]).dists)

        median, best = timed(synthetic)
        print(f"300 synthetic dists: probe + dependency check median {median * 1000:.1f} ms, min {best * 1000:.1f} ms")


if __name__ == "__main__":
    main()
