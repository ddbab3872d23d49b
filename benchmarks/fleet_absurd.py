"""What one absurd document costs ``envcheck fleet``: a 200 MB file holding one array of ``{}`` (67
million empty objects), read as a file and on stdin, beside nothing else. Each case runs in a process of
its own, which reports its wall time, its CPU time and its peak memory (``ru_maxrss``) over the read and
merge. Not a test: a measurement, written to RESULTS-fleet.md.

    python benchmarks/fleet_absurd.py [--mb 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = """
import json, resource, sys, time
from envcheck.fleet.app import merge_sources
started, cpu = time.monotonic(), time.process_time()
report = merge_sources(sys.argv[1:], sys.stdin.buffer, workers=1)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": round(time.monotonic() - started, 2), "cpu_s": round(time.process_time() - cpu, 2),
                  "peak_rss_mb": usage.ru_maxrss // 1024, "skipped": [s.reason for s in report.skipped]}))
"""


def measure(args: list[str], stdin: Path | None = None) -> dict[str, object]:
    with open(stdin or "/dev/null", "rb") as feed:
        run = subprocess.run([sys.executable, "-c", MEASURE, *args], stdin=feed, capture_output=True, text=True)
    if run.returncode:
        return {"error": f"exit {run.returncode}", "stderr": run.stderr.strip().splitlines()[-1:]}
    result: dict[str, object] = json.loads(run.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.json"
        with big.open("wb") as out:
            out.write(b"[")
            row = b"{}," * (1024**2 // 3)
            for _ in range(options.mb):
                out.write(row)
            out.write(b"{}]")
        size = big.stat().st_size / 1e6
        print(f"one array of {{}}, {size:.0f} MB; the interpreter alone: {measure([])}")
        print(f"as a file: {measure([str(big)])}")
        print(f"on stdin:  {measure(['-'], stdin=big)}")


if __name__ == "__main__":
    main()
