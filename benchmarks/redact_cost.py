"""What redaction costs per byte on hostile text: the shapes that made its patterns backtrack.

envcheck redacts every string of every report (``redact_tree``) and every error line (``scrub``), and the
strings come from other people: host names, GPU process names, environment variables, report files from a
thousand nodes. A pattern that backtracks turns one long string into minutes (a 1 MiB host name stopped
``envcheck fleet``), so the figure that matters is the time per MB, and that it stays the same as the text
grows: linear time. Not a test: a measurement, written to RESULTS.md.

The corpus is 10 MB in cases, each one hostile shape: long runs of letters (one huge string), of ``a:``,
``@`` and ``//``, near-miss tokens (``hf_`` too short, ``sk-`` without a boundary, ``token=`` unquoted),
unterminated quotes, and many small strings in one report. Each case is redacted at growing sizes, from
64 KiB to its full size (best of three runs at each), and stops growing once one run takes more than
``--budget`` seconds (a quadratic
pattern would otherwise take hours): ``growth`` is the time per MB at the largest size over that at the
smallest, about 1 for linear time and about the size ratio for quadratic.

    python benchmarks/redact_cost.py [--budget 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

from envcheck.core.redact import redact_tree, scrub

MB = 1_000_000
SMALLEST = 64 * 1024

#: Secrets of the environment scrub looks for: their forms are searched in every string.
ENV = {
    "HF_TOKEN": "hf_" + "Zq8" * 12,
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef",
    "DB_PASSWORD": 'p"a\\ss-wörd\nsecond-line',
    "PATH": "/usr/bin",
}


def repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


#: name -> (share of the 10 MB, a function from a size to one hostile string of that size)
HUGE: dict[str, tuple[int, Callable[[int], str]]] = {
    "letters (one host name)": (2 * MB, lambda n: repeat("a", n)),
    "digits and letters": (MB, lambda n: repeat("1a", n)),
    "a: runs": (MB, lambda n: repeat("a:", n)),
    "@ runs after a scheme": (MB, lambda n: "a://" + repeat("@", n - 4)),
    "// runs": (MB, lambda n: repeat("a://", n)),
    "near-miss tokens": (
        MB,
        lambda n: repeat("hf_short sk-x ghp_ AKIA12 xoxb-1 glpat- token= https://host/ a@b ", n),
    ),
    "token prefix runs": (MB, lambda n: repeat("sk-hf_xoxb-", n)),
    "unterminated quotes": (MB, lambda n: 'token="' + repeat("x\\'", n - 7)),
}
SMALL_SHARE = MB  # many small strings in one report: ~20 000 of ~50 bytes
SMALL = [
    "gpu0 NVIDIA H100 80GB HBM3",
    "https://pkgs.corp/simple/torch",
    "host-a:b@c",
    "CUDA_VISIBLE_DEVICES=0,1,2,3",
    "ok",
    "token=abc",
]


def timed(fn: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def sizes(full: int) -> list[int]:
    out, size = [], SMALLEST
    while size < full:
        out.append(size)
        size *= 4
    return [*out, full]


def redaction_s(text: str) -> float:
    """Seconds to scrub ``text`` and to redact a report holding it twice (as a value and in a list)."""
    return timed(scrub, text, ENV) + timed(redact_tree, {"host": text, text[:64]: [text]}, ENV)


def measure(make: Callable[[int], str], full: int, budget: float) -> tuple[int, float, float, bool]:
    """(largest size measured, seconds per MB there, growth, reached the full size)"""
    first = last = 0.0
    size = 0
    for size in sizes(full):
        text = make(size)
        seconds = redaction_s(text)
        if seconds <= budget:  # best of three, so that a burst of load does not pass for growth
            seconds = min(seconds, redaction_s(text), redaction_s(text))
        last = seconds / 3 / (size / MB)  # the tree holds the text twice, scrub reads it once
        first = first or last
        if seconds > budget:
            return size, last, last / first, size == full
    return size, last, last / first, True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=5.0, help="stop growing a case past this many seconds")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'case':28} {'measured':>10} {'s per MB':>10} {'growth':>8}")
    total_bytes, total_s, complete = 0, 0.0, True
    for name, (full, make) in HUGE.items():
        size, per_mb, growth, whole = measure(make, full, args.budget)
        complete &= whole
        total_bytes += full
        total_s += per_mb * full / MB
        note = "" if whole else "  (stopped: over budget; the rest would take longer still)"
        print(f"{name:28} {size / MB:8.2f}MB {per_mb:10.4f} {growth:8.1f}{note}")
    strings = [f"{SMALL[i % len(SMALL)]} #{i}" for i in range(SMALL_SHARE // 24)]
    small_bytes = sum(map(len, strings))
    seconds = timed(redact_tree, {"results": strings}, ENV)
    total_bytes += small_bytes
    total_s += seconds
    print(f"{'many small strings':28} {small_bytes / MB:8.2f}MB {seconds / (small_bytes / MB):10.4f} {'':>8}")
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    bound = "at least " if not complete else ""
    per_mb = total_s / (total_bytes / MB)
    print(f"total: {total_bytes / MB:.1f} MB, {bound}{total_s:.2f} s, {bound}{per_mb:.4f} s per MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
