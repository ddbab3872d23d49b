"""What ``envcheck bench`` does, between parsing its options (cli.py) and printing (render.py).

Order matters for the user's time: everything that can be wrong with the *request* (an unknown
benchmark, dtype or device string, a baseline file that is unreadable or cannot match) is found before
the first kernel runs, and reported as one line with exit code 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from envcheck.bench import compare as comparing
from envcheck.bench import devices as devs
from envcheck.bench import registry, render
from envcheck.bench.registry import DTYPES, Options
from envcheck.core.exit import ExitCode
from envcheck.core.model import CheckResult, Status

#: The doctor checks that decide whether a GPU can be benchmarked at all: the torch build has kernels
#: for the card, and no other process holds most of its memory.
PREFLIGHT_IDS = ("torch.arch", "gpu.memory")
PREFLIGHT_DEADLINE_S = 45.0


def split_list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def parse_dtypes(text: str | None) -> frozenset[str] | None:
    names = split_list(text)
    unknown = [n for n in names if n not in DTYPES]
    if unknown:
        raise ValueError(f"unknown dtype {unknown[0]!r}; choose from {', '.join(DTYPES)}")
    return frozenset(names) or None


def preflight() -> tuple[list[CheckResult], str | None]:
    """Run the doctor's GPU preconditions; ids not registered (yet) are named, never fatal."""
    from envcheck.core.registry import CHECKS
    from envcheck.runner import run_checks

    try:
        CHECKS.load()
        specs = [CHECKS[i] for i in PREFLIGHT_IDS if i in CHECKS]
        missing = [i for i in PREFLIGHT_IDS if i not in CHECKS]
        note = f"doctor checks not available in this envcheck: {', '.join(missing)}" if missing else None
        if not specs:
            return [], note
        return run_checks(specs, deadline_s=PREFLIGHT_DEADLINE_S).results, note
    except Exception as exc:  # noqa: BLE001 - a broken preflight must not stop the benchmark
        return [], f"preflight could not run: {type(exc).__name__}: {exc}"


def exit_code(run: render.Run) -> ExitCode:
    """1 for a wrong answer, a crash, a slow sibling, a regression, a failed preflight or a figure below
    the lab spec's minimum; else 0."""
    problems = (
        any(r.is_problem for r in run.results)
        or any(d.regressed for d in run.deltas or [])
        or any(c.status in (Status.FAIL, Status.CRASH) for c in run.preflight)
        or any(v.passed is False for v in run.spec_verdicts or [])
    )
    return ExitCode.FAILED if problems else ExitCode.OK


def main(
    *,
    device: str = "auto",
    only: str | None = None,
    dtype: str | None = None,
    quick: bool = False,
    as_json: bool = False,
    save: str | None = None,
    baseline_path: str | None = None,
    threshold: float = comparing.DEFAULT_THRESHOLD,
    spec_path: str | None = None,
    list_only: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Run ``envcheck bench``; returns the exit code."""
    from rich.console import Console

    out = out or sys.stdout
    err = err or sys.stderr
    console = Console(file=out, soft_wrap=False, width=None if out.isatty() else 200)

    def fail(message: str, code: ExitCode) -> int:
        print(f"envcheck bench: error: {message}", file=err)
        return int(code)

    try:
        specs = registry.select(split_list(only))
        dtypes = parse_dtypes(dtype)
    except ValueError as exc:
        return fail(str(exc), ExitCode.USAGE)
    if list_only:
        if as_json:
            print(
                json.dumps([{"id": s.id, "title": s.title, "measures": s.measures} for s in specs], indent=2), file=out
            )
        else:
            render.list_benchmarks(specs, console)
        return int(ExitCode.OK)
    if not 0 < threshold < 1:
        return fail(f"--threshold must be between 0 and 1 (a fraction), not {threshold}", ExitCode.USAGE)
    from envcheck.spec import SpecError, load_spec

    try:
        request = devs.parse(device)
        baseline = comparing.load_baseline(baseline_path) if baseline_path else None
        lab = load_spec(spec_path) if spec_path else None
    except devs.DeviceError as exc:
        return fail(str(exc), exc.exit_code)
    except (comparing.BaselineError, SpecError) as exc:
        return fail(str(exc), ExitCode.USAGE)
    try:
        import torch  # noqa: F401 - the benchmarks need it; say so plainly if it is missing
    except (ImportError, OSError) as exc:  # OSError: a CUDA library the wheel links against is missing
        from envcheck.bench.common import first_line

        return fail(f"torch cannot be imported ({first_line(exc)}); `envcheck doctor` says why", ExitCode.FAILED)
    try:
        names = devs.resolve(request, devs.inventory())
        if baseline is not None:
            comparing.precheck(baseline, [s.id for s in specs], names, path=str(baseline_path))
        infos = [devs.describe(n) for n in names]
    except devs.DeviceError as exc:
        return fail(str(exc), exc.exit_code)
    except comparing.BaselineError as exc:
        return fail(str(exc), ExitCode.USAGE)

    started = time.perf_counter()
    checks, note = preflight() if any(n.startswith("cuda") for n in names) else ([], None)
    opts = Options(quick=quick, dtypes=dtypes)
    callbacks, live = render.progress(stream=err)
    from envcheck.bench.runner import run_suite

    with live:
        results = run_suite(specs, infos, opts, progress=callbacks)
    run = render.Run(
        infos,
        results,
        checks,
        note,
        options={
            "device": device,
            "only": split_list(only),
            "dtype": sorted(dtypes) if dtypes else None,
            "quick": quick,
            "threshold": threshold if baseline is not None else None,
            "spec": spec_path,
        },
        wall_s=time.perf_counter() - started,
    )
    usage_error = None
    if baseline is not None:
        try:
            run.deltas = comparing.compare([r.to_json() for r in results], baseline, threshold, path=str(baseline_path))
            run.baseline, run.threshold = str(baseline_path), threshold
        except comparing.BaselineError as exc:
            usage_error = str(exc)
    if lab is not None:
        from envcheck.spec.bench import judge_bench

        run.spec_path = str(spec_path)
        run.spec_verdicts = judge_bench(lab, [r.to_json() for r in results])
    run.exit_code = exit_code(run)
    document = render.to_json(run)
    if save:
        try:
            _save(Path(save), document)
        except OSError as exc:
            usage_error = f"cannot write --save file {save}: {exc.strerror or exc}"
    if as_json:
        print(json.dumps(document, indent=2), file=out)
    else:
        render.render_human(run, console)
    if usage_error:
        return fail(usage_error, ExitCode.USAGE)
    return int(run.exit_code)


def _save(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
