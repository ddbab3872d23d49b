"""Bench figures in a lab spec: what ``snapshot --with-bench`` records and ``bench --spec`` enforces.

Both sides work on the bench's JSON results (the ``envcheck.bench/1`` contract), reduced the same
way: a benchmark's *headline* on a device is its best verified case there (case names carry sizes
that follow each device's free memory, so they are not stable across machines; the benchmark id is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envcheck.spec.parse import LabSpec
from envcheck.spec.snapshot import BenchFigure


def headlines(
    results: list[dict[str, Any]], *, contended: bool | None = None
) -> dict[tuple[str, str], tuple[float, str]]:
    """(benchmark id, device) -> (best verified value, unit). ``contended``: None takes every figure; False
    only those taken with the CPUs to themselves; True only those the bench marked ``contended`` (other
    work held the CPUs: a figure that judges nothing, envcheck.probes.contention)."""
    best: dict[tuple[str, str], tuple[float, str]] = {}
    for r in results:
        value = r.get("value")
        if r.get("status") != "ok" or r.get("verified") is not True or not isinstance(value, (int, float)):
            continue
        if contended is not None and (r.get("contended") is True) != contended:
            continue
        key = (r["id"], r["device"])
        if key not in best or value > best[key][0]:
            best[key] = (float(value), r["unit"])
    return best


def bench_figures(document: dict[str, Any]) -> list[BenchFigure]:
    """Per benchmark, the figure of the slowest device (a spec must pass every device of this machine). A
    figure the bench marked contended is never a minimum: other work held the CPUs while it was taken
    (:func:`contended_ids` names what was left out)."""
    per_id: dict[str, BenchFigure] = {}
    for (bench_id, _device), (value, unit) in sorted(headlines(document.get("results", []), contended=False).items()):
        if bench_id not in per_id or value < per_id[bench_id].value:
            per_id[bench_id] = BenchFigure(bench_id, value, unit)
    return list(per_id.values())


def contended_ids(document: dict[str, Any]) -> list[str]:
    """The benchmarks :func:`bench_figures` left out: measured only while other work held the CPUs."""
    kept = {bench_id for bench_id, _ in headlines(document.get("results", []), contended=False)}
    return sorted({bench_id for bench_id, _ in headlines(document.get("results", []), contended=True)} - kept)


@dataclass(frozen=True)
class BenchVerdict:
    id: str
    device: str | None
    minimum: float
    unit: str
    value: float | None
    #: None when this run did not measure it: neither passed nor failed.
    passed: bool | None
    words: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device": self.device,
            "min": self.minimum,
            "unit": self.unit,
            "value": self.value,
            "passed": self.passed,
            "summary": self.words,
        }


def judge_bench(spec: LabSpec, results: list[dict[str, Any]]) -> list[BenchVerdict]:
    """Each spec minimum against each device that ran that benchmark in this run.

    A benchmark the spec names but this run did not measure (``--only``, a CPU run against a GPU spec)
    is reported as not measured (neither passed nor failed); a figure in another unit cannot be compared
    and fails.
    """
    best = headlines(results)
    verdicts = []
    for need in spec.bench:
        measured = {dev: vu for (bid, dev), vu in best.items() if bid == need.id}
        if not measured:
            verdicts.append(BenchVerdict(need.id, None, need.value, need.unit, None, None, "not measured in this run"))
            continue
        for dev, (value, unit) in sorted(measured.items()):
            if unit != need.unit:
                words = f"measured in {unit}, the spec wants {need.unit} (a different kind of device?)"
                verdicts.append(BenchVerdict(need.id, dev, need.value, need.unit, value, False, words))
                continue
            passed = value >= need.value
            words = f"{value:.4g} {unit} {'≥' if passed else '<'} spec minimum {need.value:.4g} {unit}"
            verdicts.append(BenchVerdict(need.id, dev, need.value, need.unit, value, passed, words))
    return verdicts
