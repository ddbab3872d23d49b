"""Build the doctor's structured report (``envcheck.doctor/1``) from a finished run (the frozen
:class:`~envcheck.doctor.app.DoctorReport`, never the live probe runner), and judge it in words: the
verdict a person reads at the bottom of the text report is computed here, once, so that the text,
Markdown and JSON reports say the same thing.

Top-level ``status`` is the worst of the checks (a crashed check counts as ``fail``); ``gpus`` is empty
where there are none; ``driver`` is null without a working driver. Fields are only ever added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envcheck.core.exit import exit_code_for
from envcheck.core.model import NA, CheckResult, Status, available, counts, to_jsonable, worst
from envcheck.core.report import DOCTOR_SCHEMA, GpuIdentity, HostIdentity, Summary, envelope
from envcheck.doctor.areas import AREAS

if TYPE_CHECKING:
    from envcheck.doctor.app import DoctorReport
    from envcheck.probes.nvml.inventory import GpuInfo


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
    missing = next((r for r in results if r.id == "packages.torch" and r.status is Status.WARN), None)
    if missing is not None and missing.summary.startswith("torch is not installed"):
        # For a deep-learning readiness tool, the headline of a Python without torch is that, not "ready"
        where = (missing.details or {}).get("python")
        tail = f" ({where})" if isinstance(where, str) and where else ""
        return Summary(
            "warnings",
            f"torch is not installed in this Python{tail}: install it (see packages.torch), or run envcheck with "
            f"the Python your jobs use (`/path/to/that/python -m envcheck doctor`); {', '.join(parts)}",
        )
    if gpus_seen is False:
        tail = f", {', '.join(parts)}" if parts else ""
        return Summary("ready_cpu", f"ready for CPU work: no NVIDIA GPU found{tail}")
    if warned:
        return Summary("warnings", f"ready, with warnings: {', '.join(parts)}")
    return Summary("ready", "ready: no problems found")


def doctor_document(
    report: DoctorReport,
    *,
    wall_s: float,
    strict: bool = False,
    require_gpu: bool = False,
) -> dict[str, Any]:
    """The whole report as plain JSON values (strict RFC 8259: no NaN or Infinity anywhere), from the
    frozen report alone. ``wall_s`` is the wait the user saw (imports and the lab spec included)."""
    probed = report.probed
    nvml = probed.get("nvml")
    torch = probed.get("torch")
    host_info = probed.get("host")
    driver = None
    gpus: list[dict[str, Any]] = []
    identities: list[GpuIdentity] | None = None
    if nvml is not None and nvml.available:
        driver = {
            "version": nvml.driver_version,
            "cuda_version": nvml.cuda_driver_version,
            "nvml_version": nvml.nvml_version,
        }
        gpus = [gpu_document(g) for g in nvml.gpus]
        identities = [GpuIdentity(g["index"], g["name"], g["uuid"], g["pci_bus_id"]) for g in gpus]
    container = getattr(getattr(host_info, "container", None), "kind", None)
    doc = envelope(
        DOCTOR_SCHEMA,
        generated_at=report.generated_at,
        duration_s=wall_s,
        host=HostIdentity.here(container=container),
        gpus=identities,
    )
    if host_info is not None:
        details = to_jsonable(host_info)
        details["python_details"] = details.pop("python", None)
        doc["host"].update({k: v for k, v in details.items() if k not in doc["host"]})
    toolkit = probed.get("toolkit")
    if toolkit is not None:
        # The compilers a CUDA extension would be built with (what collect_env reports): full doctor only.
        doc["host"]["build_tools"] = to_jsonable(getattr(toolkit, "build_tools", None))
    statuses = [r.status for r in report.results]
    summary = summarize(list(report.results), gpus_seen=report.gpus_seen)
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
    doc["fabric"] = fabric_document(probed.get("fabric"))
    affinity = nic_affinity(report.results)
    if affinity:
        doc["fabric"] = {**(doc["fabric"] or {}), "nic_affinity": affinity}
    packages = probed.get("packages")
    if packages is not None:
        doc["packages"] = _package_versions(packages)
    return doc


def gpu_document(gpu: GpuInfo) -> dict[str, Any]:
    """One ``gpus[]`` entry, field by field. The names are the schema's and renderers (Prometheus,
    fleet) read them: written out here, a renamed probe field breaks at this one place instead of
    silently dropping a metric. A reading that is not available is null."""
    processes = gpu.processes
    return to_jsonable(
        {
            "index": gpu.index,
            "name": gpu.name,
            "uuid": gpu.uuid,
            "pci_bus_id": gpu.pci_bus_id,
            "compute_capability": gpu.compute_capability,
            "memory_total_bytes": gpu.memory_total_bytes,
            "memory_used_bytes": gpu.memory_used_bytes,
            "memory_free_bytes": gpu.memory_free_bytes,
            "processes": [{"pid": p.pid, "name": p.name, "used_bytes": p.used_bytes} for p in processes]
            if available(processes)
            else None,
            "utilization_gpu_pct": gpu.utilization_gpu_pct,
            "utilization_memory_pct": gpu.utilization_memory_pct,
            "temperature_c": gpu.temperature_c,
            "temperature_slowdown_c": gpu.temperature_slowdown_c,
            "power_draw_w": gpu.power_draw_w,
            "power_limit_w": gpu.power_limit_w,
            "power_default_limit_w": gpu.power_default_limit_w,
            "clocks_event_reasons": gpu.clocks_event_reasons,
            "pcie_width_current": gpu.pcie_width_current,
            "pcie_width_max": gpu.pcie_width_max,
            "pcie_gen_current": gpu.pcie_gen_current,
            "pcie_gen_max": gpu.pcie_gen_max,
            "pcie_gen_gpu_max": gpu.pcie_gen_gpu_max,
            "ecc_mode_current": gpu.ecc_mode_current,
            "ecc_mode_pending": gpu.ecc_mode_pending,
            "ecc_volatile_uncorrected": gpu.ecc_volatile_uncorrected,
            "ecc_aggregate_uncorrected": gpu.ecc_aggregate_uncorrected,
            "retired_pages_pending": gpu.retired_pages_pending,
            "remapped_rows_correctable": gpu.remapped_rows_correctable,
            "remapped_rows_uncorrectable": gpu.remapped_rows_uncorrectable,
            "remapped_rows_pending": gpu.remapped_rows_pending,
            "remapped_rows_failed": gpu.remapped_rows_failed,
            "persistence_mode": gpu.persistence_mode,
            "compute_mode": gpu.compute_mode,
            "mig_mode_current": gpu.mig_mode_current,
            "mig_mode_pending": gpu.mig_mode_pending,
            "lost": gpu.lost,
            "lost_error": gpu.lost_error,
            "refused": gpu.refused,
        }
    )


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


def nic_affinity(results: Any) -> list[dict[str, Any]]:
    """Each GPU's nearest NIC(s), as ``net.affinity`` judged them (from its details): a row per GPU, ``{gpu,
    pci_bus_id, nics: [{hca, ports, pci_bus_id}], nearness, label}`` (``label`` as ``nvidia-smi topo -m``: PIX,
    PHB, NODE, SYS), and ``down_nics`` (as ``nics``) where the GPU's own NIC on its PCIe switch has no port up and
    NCCL goes to ``nics`` instead. Empty where the check did not run, skipped (no NIC, no GPU) or placed no GPU."""
    found = next((r for r in results if r.id == "net.affinity"), None)
    details = found.details if found is not None else {}
    gpus, nics = details.get("gpus") or {}, details.get("nics") or {}

    def described(names: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "hca": name,
                "ports": (nics.get(name) or {}).get("ports") or [name],
                "pci_bus_id": (nics.get(name) or {}).get("bus_id"),
            }
            for name in names
        ]

    rows = []
    for index, entry in gpus.items():
        if not entry.get("nic"):
            continue
        row = {
            "gpu": int(index) if str(index).isdigit() else index,
            "pci_bus_id": entry.get("bus_id"),
            "nics": described(entry["nic"]),
            "nearness": entry.get("nearness"),
            "label": entry.get("label"),
        }
        if entry.get("down_nic"):
            row["down_nics"] = described(entry["down_nic"])
        rows.append(row)
    return rows


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
