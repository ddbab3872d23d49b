"""The bench's structured report: ``bench_document(report)``, the envcheck.bench/1 JSON contract.

Every renderer (text, JSON, Markdown) and ``--save`` read this one document, after redaction, never the
live result objects. It starts with the envelope every envcheck report carries (schema, version, time,
duration, host, the GPUs benchmarked), then the bench's own fields. Fields are only ever added under
envcheck.bench/1, so baselines saved by earlier versions still load for ``--compare``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from envcheck.bench.app import BenchReport
from envcheck.bench.peaks import Peak
from envcheck.core.model import Status, counts, to_jsonable, worst
from envcheck.core.report import BENCH_SCHEMA, GpuIdentity, HostIdentity, Summary, envelope, verdict_of
from envcheck.core.stop import stopped_words
from envcheck.devices.model import DeviceInfo

if TYPE_CHECKING:
    from envcheck.probes.torch import TorchInfo


def bench_document(report: BenchReport) -> dict[str, Any]:
    """The whole run as strict JSON values (no NaN or Infinity: a figure that is not a number is null)."""
    gpus = [GpuIdentity(d.index, d.model, d.uuid, d.pci_bus_id) for d in report.devices if d.index is not None]
    doc = envelope(
        BENCH_SCHEMA,
        generated_at=report.generated_at,
        duration_s=report.duration_s,
        host=HostIdentity.here(container=report.container),
        gpus=gpus or None,
    )
    statuses = report.statuses()
    comparison = report.comparison
    doc.update(
        {
            "status": worst(statuses).value,
            "interrupted": report.interrupted,
            "stopped_by": report.stopped_by,
            "options": report.request.describe(),
            "torch": _torch(report.torch),
            "devices": [_device(d, report.datasheets.get(d.name)) for d in report.devices],
            "preflight": [c.to_json() for c in report.preflight],
            # Kept for readers of envcheck.bench/1; the preflight's checks always load now, so nothing is
            # ever missing from it.
            "preflight_note": None,
            "results": list(report.figures),
            # One process per device ran its cases: how each went (an error names why that device's
            # remaining cases are errors).
            "workers": [w.to_json() for w in report.workers],
            "comparison": None
            if comparison is None
            else {
                "baseline": comparison.baseline,
                "threshold": comparison.threshold,
                "deltas": [d.to_json() for d in comparison.deltas],
                "note": comparison.note,
            },
            "spec": None
            if report.spec_verdicts is None
            else {"path": report.request.spec_path, "verdicts": [v.to_json() for v in report.spec_verdicts]},
            "summary": summary(report),
            "counts": counts(statuses),
            "wall_s": round(report.wall_s, 2),
            "exit_code": int(report.exit_code),
        }
    )
    result: dict[str, Any] = to_jsonable(doc)
    return result


#: What the report says of the torch build: a figure is only comparable with one from the same build.
TORCH_FIELDS = ("version", "cuda", "hip", "cudnn_version", "nccl_version", "debug", "cuda_runtime_version")


def _torch(info: TorchInfo | None) -> dict[str, Any] | None:
    return None if info is None else {name: getattr(info, name, None) for name in TORCH_FIELDS}


def _device(d: DeviceInfo, entry: Peak | None) -> dict[str, Any]:
    return {**d.to_json(), "datasheet": entry.model if entry else None, "peak_source": entry.source if entry else None}


def summary(report: BenchReport) -> dict[str, Any]:
    """How many figures of each kind, and the verdict and line every format ends with (envcheck.core.report.
    Summary)."""
    results = report.results
    comparison = report.comparison
    counts = {
        "figures": sum(r.value is not None for r in results),
        "verified": sum(r.status is Status.OK for r in results),
        "failed": sum(r.status is Status.FAIL for r in results),
        "errors": sum(r.status is Status.CRASH for r in results),
        "skipped": sum(r.status is Status.SKIP for r in results),
        "noisy": sum(r.noisy for r in results),
        "contended": sum(r.contended is True for r in results),
        "slow_vs_siblings": sum(r.sibling is not None for r in results),
        "regressions": sum(d.regressed for d in comparison.deltas) if comparison else 0,
        "below_spec": sum(v.passed is False for v in report.spec_verdicts or ()),
        "planned": report.planned,
        # a sweep is reported as one result but ran each of its shapes
        "finished": sum(len(r.params["sweep"]) if r.params.get("sweep") else 1 for r in results),
    }
    text = f"{', '.join(summary_words(counts))} on {len(report.devices)} device(s)"
    if report.interrupted:
        by = stopped_words(report.stopped_by)
        text = f"interrupted by {by} after {counts['finished']} of {counts['planned']} cases: {text}"
    return Summary(verdict_of(report.statuses(), interrupted=report.interrupted), text, counts).to_json()


#: The counts the summary line names, and the word each is said with (``verified`` always comes first).
SUMMARY_WORDS = (
    ("failed", "WRONG"),
    ("errors", "crashed"),
    ("skipped", "skipped"),
    ("noisy", "noisy"),
    ("contended", "contended"),
    ("slow_vs_siblings", "slow vs siblings"),
    ("regressions", "regression"),
    ("below_spec", "below spec"),
)


def summary_words(counts: Mapping[str, Any]) -> list[str]:
    """'12 verified', '1 WRONG', '3 skipped': the counts a person reads, from the summary's counts (also a
    document's, read back by the renderers)."""
    return [f"{counts.get('verified', 0)} verified"] + [
        f"{counts[key]} {word}{'s' if word in NOUNS and counts[key] != 1 else ''}"
        for key, word in SUMMARY_WORDS
        if counts.get(key)
    ]


#: The words of :data:`SUMMARY_WORDS` that take a plural ("1 regression", "2 regressions"; "2 skipped").
NOUNS = frozenset({"regression"})
