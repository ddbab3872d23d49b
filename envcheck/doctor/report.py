"""Build the doctor's structured report (``envcheck.doctor/1``) from a finished run, and judge it in
words: the verdict a person reads at the bottom of the text report is computed here, once, so that the
text, Markdown and JSON reports say the same thing.

Top-level ``status`` is the worst of the checks (a crashed check counts as ``fail``); ``gpus`` is empty
where there are none; ``driver`` is null without a working driver. Fields are only ever added.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from envcheck.core.exit import exit_code_for
from envcheck.core.model import NA, CheckResult, Status, counts, to_jsonable, worst
from envcheck.core.report import DOCTOR_SCHEMA, GpuIdentity, HostIdentity, envelope
from envcheck.doctor.areas import AREAS
from envcheck.doctor.runner import Report


@dataclass(frozen=True)
class Summary:
    """The run in one line. ``verdict``: ``ready``, ``ready_cpu`` (fine, but no NVIDIA GPU was found),
    ``warnings``, ``not_ready``, or ``nothing_checked`` (every selected check was skipped)."""

    verdict: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"verdict": self.verdict, "text": self.text}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def summarize(results: list[CheckResult], *, gpus_seen: bool | None) -> Summary:
    """``gpus_seen``: True/False when NVML was asked, None when no check asked it (then nothing is
    claimed about GPUs). A crash counts as a problem and says it is envcheck's."""
    failed = sum(r.status is Status.FAIL for r in results)
    crashed = sum(r.status is Status.CRASH for r in results)
    warned = sum(r.status is Status.WARN for r in results)
    parts = []
    if failed:
        parts.append(_plural(failed, "problem"))
    if crashed:
        parts.append(f"{_plural(crashed, 'check')} crashed (envcheck bug)")
    if warned:
        parts.append(_plural(warned, "warning"))
    if failed or crashed:
        return Summary("not_ready", f"not ready: {', '.join(parts)}")
    if results and all(r.status is Status.SKIP for r in results):
        return Summary("nothing_checked", f"nothing checked: all {_plural(len(results), 'selected check')} skipped")
    if not results:
        return Summary("nothing_checked", "nothing checked: no check selected")
    if gpus_seen is False:
        tail = f", {', '.join(parts)}" if parts else ""
        return Summary("ready_cpu", f"ready for CPU work: no NVIDIA GPU found{tail}")
    if warned:
        return Summary("warnings", f"ready, with warnings: {', '.join(parts)}")
    return Summary("ready", "ready: no problems found")


def gpus_seen(report: Report) -> bool | None:
    nvml = report.probes.peek("nvml")
    if nvml is None:
        return None
    return bool(nvml.available and nvml.gpus)


def doctor_document(
    report: Report,
    *,
    generated_at: datetime,
    wall_s: float,
    strict: bool = False,
    require_gpu: bool = False,
) -> dict[str, Any]:
    """The whole report as plain JSON values (strict RFC 8259: no NaN or Infinity anywhere)."""
    nvml = report.probes.peek("nvml")
    torch = report.probes.peek("torch")
    host_info = report.probes.peek("host")
    driver = None
    gpus: list[dict[str, Any]] = []
    identities: list[GpuIdentity] | None = None
    if nvml is not None and nvml.available:
        driver = {
            "version": nvml.driver_version,
            "cuda_version": nvml.cuda_driver_version,
            "nvml_version": nvml.nvml_version,
        }
        gpus = [to_jsonable(g) for g in nvml.gpus]
        identities = [GpuIdentity(g["index"], g.get("name"), g.get("uuid"), g.get("pci_bus_id")) for g in gpus]
    container = getattr(getattr(host_info, "container", None), "kind", None)
    doc = envelope(
        DOCTOR_SCHEMA,
        generated_at=generated_at,
        duration_s=wall_s,
        host=HostIdentity.here(container=container),
        gpus=identities,
    )
    if host_info is not None:
        details = to_jsonable(host_info)
        details["python_details"] = details.pop("python", None)
        doc["host"].update({k: v for k, v in details.items() if k not in doc["host"]})
    toolkit = report.probes.peek("toolkit")
    if toolkit is not None:
        # The compilers a CUDA extension would be built with (what collect_env reports): full doctor only.
        doc["host"]["build_tools"] = to_jsonable(getattr(toolkit, "build_tools", None))
    statuses = [r.status for r in report.results]
    summary = summarize(report.results, gpus_seen=gpus_seen(report))
    doc.update(
        {
            "status": worst(statuses).value,
            "summary": summary.to_json(),
            "exit_code": int(exit_code_for(statuses, strict=strict)),
            "strict": strict,
            "require_gpu": require_gpu,
            "deadline_s": report.deadline_s,
            "checks_duration_s": round(report.duration_s, 3),
            "counts": counts(statuses),
            "areas": {a: AREAS[a] for a in dict.fromkeys(r.area for r in report.results) if a in AREAS},
            "checks": [r.to_json() for r in report.results],
            "driver": driver,
            "gpus": gpus,
            "torch": to_jsonable(torch) if torch is not None else None,
        }
    )
    doc["fabric"] = fabric_document(report.probes.peek("fabric"))
    packages = report.probes.peek("packages")
    if packages is not None:
        doc["packages"] = _package_versions(packages)
    return doc


def fabric_document(fabric: Any) -> dict[str, Any] | None:
    """The GPU fabric (the ``fabric`` area's probe), null when it was not probed or NVML did not start.

    ``gpus`` are the NVML indices of the GPUs that answered, the order of the matrices' rows and columns;
    ``topology`` is labelled as ``nvidia-smi topo -m`` (X, NV#, PIX, PXB, PHB, NODE, SYS), ``p2p`` as
    ``nvidia-smi topo -p2p r`` (OK, CNS, GNS, TNS, NS, U; DIS: disabled by a driver registry key), row to
    column. Error counters keep both readings (``first``, ``later``: null when read once), ``interval_s``
    apart."""
    if fabric is None or not fabric.available:
        return None
    gpus = [g for g in fabric.gpus if g.answers]
    indices = [g.index for g in gpus]
    return {
        "gpus": indices,
        "topology": fabric.topology_matrix(indices),
        "p2p": {"read": fabric.p2p_matrix(indices, "p2p_read"), "nvlink": fabric.p2p_matrix(indices, "p2p_nvlink")},
        "nvlink": {str(g.index): _nvlink_document(g) for g in gpus},
        "pcie_replay": {str(g.index): to_jsonable(g.pcie_replay) for g in gpus},
        "fabric_manager": {str(g.index): to_jsonable(g.fabric) for g in gpus},
        "interval_s": fabric.interval_s,
    }


def _nvlink_document(gpu: Any) -> dict[str, Any] | None:
    """One GPU's NVLinks: null without NVLink; else how many are up, their version(s), and every link."""
    if isinstance(gpu.nvlinks, NA):
        return None
    versions = sorted({link.version for link in gpu.active_links if not isinstance(link.version, NA)})
    return {
        "pci_bus_id": to_jsonable(gpu.pci_bus_id),
        "links_up": len(gpu.active_links),
        "links_total": len(gpu.nvlinks),
        "version": "/".join(versions) or None,
        "links": to_jsonable(gpu.nvlinks),
    }


#: Distributions whose versions belong in a bug report next to torch (what PyTorch's issue template asks
#: for via collect_env), besides the nvidia-* CUDA wheels, which are listed whatever their names.
_REPORTED = ("torch", "torchvision", "torchaudio", "numpy", "triton", "nvidia-ml-py", "pynvml", "envcheck-gpu")


def _package_versions(packages: Any) -> dict[str, str]:
    dists = getattr(packages, "dists", None) or {}
    out: dict[str, str] = {}
    for name, dist in sorted(dists.items()):
        key = str(name).lower()
        if key in _REPORTED or key.startswith("nvidia-"):
            out[key] = str(getattr(dist, "version", dist))
    return out
