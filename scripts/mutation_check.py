# ruff: noqa: E501 - the mutants are literal source lines
"""A hand mutation check of envcheck's core: apply one small wrong change at a time, run the suite, and
say which changes no test noticed.

    python scripts/mutation_check.py            # every mutant, the whole suite each (stops at the first failure)
    python scripts/mutation_check.py -k exit    # only mutants whose name contains "exit"

Each mutant is a (file, original text, wrong text) triple; the original must occur exactly once. The
working tree is restored after every mutant, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MUTANTS: list[tuple[str, str, str, str]] = [
    ("model: a warning is as harmless as ok", "envcheck/core/model.py",
     "Status.WARN: 1, Status.FAIL: 2", "Status.WARN: 0, Status.FAIL: 2"),
    ("model: worst is the mildest", "envcheck/core/model.py",
     "level = max((s.severity for s in statuses), default=0)", "level = min((s.severity for s in statuses), default=0)"),
    ("model: a crash is not a problem", "envcheck/core/model.py",
     "return self in (Status.FAIL, Status.CRASH)", "return self in (Status.FAIL,)"),
    ("model: NaN passes into JSON", "envcheck/core/model.py",
     "return value if math.isfinite(value) else None", "return value"),
    ("model: first_line takes the last line", "envcheck/core/model.py",
     "line = text.splitlines()[0] if text else \"\"", "line = text.splitlines()[-1] if text else \"\""),
    ("exit: --strict ignored", "envcheck/core/exit.py",
     "or (strict and overall is Status.WARN)", "or (False and overall is Status.WARN)"),
    ("exit: an interrupted run exits as if finished", "envcheck/core/exit.py",
     "    if interrupted:\n        return ExitCode.INTERRUPTED\n", ""),
    ("exit: docker sees 2", "envcheck/core/exit.py",
     "return 0 if self is ExitCode.OK else 1", "return int(self)"),
    ("registry: duplicate ids allowed", "envcheck/core/registry.py",
     "        if item.id in self._items:\n            raise ValueError", "        if False:\n            raise ValueError"),
    ("registry: a name outside the pool is silently dropped", "envcheck/core/registry.py",
     "        if left_out:\n            raise", "        if False:\n            raise"),
    ("registry: opt-in checks run by area", "envcheck/core/registry.py",
     "every = [item for item in self.ordered() if item.id not in exclude]", "every = self.ordered()"),
    ("areas: --quick runs every area", "envcheck/doctor/areas.py",
     "(c.area in QUICK_AREAS or not quick)", "(True or not quick)"),
    ("reporting: all skipped reads as ready", "envcheck/doctor/report.py",
     "    if results and all(r.status is Status.SKIP for r in results):", "    if False:"),
    ("reporting: no GPU probe claims CPU-only", "envcheck/doctor/report.py",
     "    if gpus_seen is False:", "    if not gpus_seen:"),
    ("reporting: exit code ignores --strict", "envcheck/doctor/report.py",
     "exit_code_for(statuses, strict=strict)", "exit_code_for(statuses)"),
    ("output: --output sends the file format to the terminal", "envcheck/cli/options.py",
     "    return DEFAULT_FORMAT, file_format", "    return file_format, file_format"),
    ("output: closed pipe exits 1", "envcheck/cli/terminal.py",
     "            sys.exit(int(ExitCode.BROKEN_PIPE))\n        error(", "            sys.exit(1)\n        error("),
    ("output: no redaction before rendering", "envcheck/cli/terminal.py",
     "    document = redacted(document)\n", ""),
    ("markdown: pipes not escaped", "envcheck/render/common.py",
     '.replace("|", "\\\\|")', ""),
    ("runner: a hung probe is only a warning", "envcheck/doctor/runner.py",
     "status, summary = Status.FAIL, f\"{exc.what} hung", "status, summary = Status.WARN, f\"{exc.what} hung"),
    ("runner: a crashed check is a failure, not a crash", "envcheck/doctor/runner.py",
     "status, summary, fix = Status.CRASH, f\"check crashed", "status, summary, fix = Status.FAIL, f\"check crashed"),
    ("health: warnings are unhealthy", "envcheck/doctor/health.py",
     'return self.checks("fail", "crash")', 'return self.checks("fail", "crash", "warn")'),
    ("report: envelope drops the GPUs", "envcheck/core/report.py",
     '        doc["gpus"] = [g.to_json() for g in gpus]', "        pass"),
    ("redact: glued secret names (AUTHTOKEN) shown", "envcheck/core/redact.py",
     "p in _SECRET_PARTS or p.endswith(_SECRET_SUFFIXES)", "p in _SECRET_PARTS"),
]  # fmt: skip


def run_suite(args: list[str]) -> tuple[bool, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (e.g. a test directory)")
    options = parser.parse_args()
    survivors: list[str] = []
    stale: list[str] = []  # a mutant whose code moved: it tests nothing until it is pointed at the new code
    for name, rel, original, wrong in MUTANTS:
        if options.k not in name:
            continue
        path = ROOT / rel
        text = path.read_text()
        if text.count(original) != 1:
            print(f"?? {name}: the original text occurs {text.count(original)} times in {rel}", flush=True)
            stale.append(name)
            continue
        try:
            path.write_text(text.replace(original, wrong))
            passed, took = run_suite(options.pytest_args)
        finally:
            path.write_text(text)
        print(f"{'SURVIVED' if passed else 'killed  '} {name}  ({took:.0f} s)", flush=True)
        if passed:
            survivors.append(name)
    print(f"\n{len(survivors)} survived: {', '.join(survivors) or 'none'}")
    if stale:
        print(f"{len(stale)} could not be applied (their code moved): {', '.join(stale)}")
    return 1 if survivors or stale else 0


if __name__ == "__main__":
    sys.exit(main())
