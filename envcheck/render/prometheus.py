"""``--format prometheus``: the doctor's document as node_exporter's textfile collector reads it (the
Prometheus text exposition format), for ``doctor`` and ``healthcheck``.

The metric families are built here and written by the official client (``prometheus_client``), so the
format, the escaping of label values and the ``# HELP``/``# TYPE`` lines are the library's, not ours.

Labels. Per-GPU series carry dcgm-exporter's label names (``gpu``, ``UUID``, ``pci_bus_id``,
``modelName``, ``Hostname``) with the same values NVML gives dcgm-exporter (index, ``GPU-...`` uuid,
``00000000:18:00.0`` bus id, product name), so a dashboard that already shows ``DCGM_FI_DEV_*`` joins
envcheck's series on them. ``Hostname`` is ``NODE_NAME`` where it is set (a Kubernetes DaemonSet sets it
from ``spec.nodeName``, as dcgm-exporter's does: a pod's own host name is the pod's), else the report's
host name.

Checks. ``envcheck_check_status`` has one series per check *and per possible status* (ok, warn, fail,
skip, crash), 1 on the current one and 0 on the others: node_exporter's convention for enum-like states
(``node_systemd_unit_state{state=...}``). Why: the set of series stays the same from run to run, so an
alert on ``envcheck_check_status{status="fail"} == 1`` resolves when the value drops to 0 instead of
when a series vanishes (which Prometheus only notices as staleness), and ``sum by (status)`` counts work.

A reading the GPU or driver does not offer (null in the document) is left out rather than written as
NaN: "not available" is not a number, and an absent series is what PromQL's ``absent()`` is for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from envcheck.core.model import Status, displayable
from envcheck.core.report import DOCTOR_SCHEMA
from envcheck.probes.nvml.constants import CLOCKS_EVENT_REASONS
from envcheck.render import RenderOptions, output_format, renders

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily
    from rich.console import Console

#: dcgm-exporter's label names for a GPU, in its order.
GPU_LABELS = ("gpu", "UUID", "pci_bus_id", "modelName", "Hostname")
STATUSES = tuple(s.value for s in Status)

#: (metric, help, the GPU's field in the doctor's document): one gauge per reading. The fields are the
#: document's, written one by one in envcheck.doctor.report.gpu_document, never a probe's attribute names.
GPU_GAUGES = (
    ("envcheck_gpu_temperature_celsius", "GPU core temperature.", "temperature_c"),
    ("envcheck_gpu_slowdown_temperature_celsius", "Temperature at which the GPU slows down.", "temperature_slowdown_c"),
    ("envcheck_gpu_memory_used_bytes", "GPU memory in use.", "memory_used_bytes"),
    ("envcheck_gpu_memory_total_bytes", "GPU memory in all.", "memory_total_bytes"),
    ("envcheck_gpu_power_watts", "Power draw.", "power_draw_w"),
    ("envcheck_gpu_power_limit_watts", "Enforced power limit.", "power_limit_w"),
    ("envcheck_gpu_utilization_ratio", "Share of the last sample period a kernel ran (0-1).", "utilization_gpu_pct"),
    ("envcheck_gpu_pcie_link_width", "Current PCIe link width (lanes).", "pcie_width_current"),
    ("envcheck_gpu_pcie_link_width_max", "Maximum PCIe link width (lanes).", "pcie_width_max"),
    ("envcheck_gpu_pcie_link_generation", "Current PCIe link generation.", "pcie_gen_current"),
    ("envcheck_gpu_pcie_link_generation_max", "Maximum PCIe link generation.", "pcie_gen_max"),
    ("envcheck_gpu_row_remap_pending", "1 when a row remap waits for a GPU reset.", "remapped_rows_pending"),
    ("envcheck_gpu_row_remap_failed", "1 when a row remap failed (the GPU needs service).", "remapped_rows_failed"),
)
#: ``envcheck_gpu_ecc_errors{type=...}``: uncorrected ECC error counts, since the driver loaded and lifetime.
ECC_COUNTS = (
    ("volatile_uncorrected", "ecc_volatile_uncorrected"),
    ("aggregate_uncorrected", "ecc_aggregate_uncorrected"),
)
#: ``envcheck_gpu_remapped_rows{type=...}``: rows remapped for correctable and uncorrectable errors.
REMAPPED_ROWS = (("correctable", "remapped_rows_correctable"), ("uncorrectable", "remapped_rows_uncorrectable"))
#: Percent readings in the document that Prometheus' convention wants as ratios.
PERCENT_FIELDS = frozenset({"utilization_gpu_pct"})


def _number(value: Any) -> float | None:
    """A document value as a sample value: numbers and booleans (0/1); None (not available) stays None."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return None


def hostname(document: dict[str, Any]) -> str:
    # NODE_NAME is the OS's string, any bytes: decoded for display once, here where it enters.
    return displayable(os.environ.get("NODE_NAME") or str(document.get("host", {}).get("hostname") or ""))


class DoctorCollector:
    """A prometheus_client collector over one finished doctor document (it never changes)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.host = hostname(document)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily

        doc, host = self.document, self.host
        driver = doc.get("driver") or {}
        info = GaugeMetricFamily(
            "envcheck_info", "envcheck's version and the driver it saw (1).",
            labels=["version", "driver_version", "cuda_driver_version", "Hostname"],
        )  # fmt: skip
        info.add_metric(
            [str(doc.get("envcheck_version", "")), str(driver.get("version") or ""),
             str(driver.get("cuda_version") or ""), host],
            1,
        )  # fmt: skip
        yield info

        checks = doc.get("checks", [])
        status = GaugeMetricFamily(
            "envcheck_check_status",
            "1 on the check's status, 0 on the others (one series per possible status).",
            labels=["check", "area", "status", "Hostname"],
        )
        for check in checks:
            for candidate in STATUSES:
                status.add_metric(
                    [check["id"], check["id"].split(".", 1)[0], candidate, host],
                    1 if check["status"] == candidate else 0,
                )
        yield status

        counts = GaugeMetricFamily(
            "envcheck_checks", "Checks by status in the last run.", labels=["status", "Hostname"]
        )
        for candidate in STATUSES:
            counts.add_metric([candidate, host], sum(c["status"] == candidate for c in checks))
        yield counts

        healthy = not any(c["status"] in (Status.FAIL.value, Status.CRASH.value) for c in checks)
        yield _single(
            "envcheck_node_healthy", "1 when no check failed or crashed in the last run.", 1 if healthy else 0, host
        )
        generated = datetime.fromisoformat(str(doc["generated_at"])).timestamp()
        yield _single("envcheck_last_run_timestamp_seconds", "When the last run started (Unix time).", generated, host)
        yield _single(
            "envcheck_run_duration_seconds", "How long the last run took.", float(doc.get("duration_s", 0.0)), host
        )
        yield from self._gpus()

    def _gpus(self) -> Iterator[GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily

        gpus = [(self._labels(g), g) for g in self.document.get("gpus", [])]
        up = GaugeMetricFamily(
            "envcheck_gpu_up", "1 when the GPU answers; 0 when it is lost or refused to this user.", labels=GPU_LABELS
        )
        for labels, gpu in gpus:
            up.add_metric(labels, 0 if gpu.get("lost") or gpu.get("refused") else 1)
        yield up
        for name, help_text, field in GPU_GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=GPU_LABELS)
            for labels, gpu in gpus:
                value = _number(gpu.get(field))
                if value is not None:
                    family.add_metric(labels, value / 100 if field in PERCENT_FIELDS else value)
            yield family
        for name, help_text, pairs in (
            ("envcheck_gpu_ecc_errors", "Uncorrected ECC errors (volatile: since the driver loaded).", ECC_COUNTS),
            ("envcheck_gpu_remapped_rows", "Rows remapped, by the kind of error that caused it.", REMAPPED_ROWS),
        ):
            family = GaugeMetricFamily(name, help_text, labels=[*GPU_LABELS, "type"])
            for labels, gpu in gpus:
                for kind, field in pairs:
                    value = _number(gpu.get(field))
                    if value is not None:
                        family.add_metric([*labels, kind], value)
            yield family
        throttle = GaugeMetricFamily(
            "envcheck_gpu_throttle_reason",
            "1 when this clocks-event (throttle) reason holds the GPU's clocks now, else 0.",
            labels=[*GPU_LABELS, "reason"],
        )
        for labels, gpu in gpus:
            mask = gpu.get("clocks_event_reasons")
            if isinstance(mask, int) and not isinstance(mask, bool):
                # Every reason for every GPU that reports the mask, 0 or 1 (see the module's docstring).
                for reason in CLOCKS_EVENT_REASONS:
                    throttle.add_metric([*labels, reason.name], 1 if mask & reason.bit else 0)
        yield throttle

    def _labels(self, gpu: dict[str, Any]) -> list[str]:
        return [
            str(gpu["index"]),
            str(gpu.get("uuid") or ""),
            str(gpu.get("pci_bus_id") or ""),
            str(gpu.get("name") or ""),
            self.host,
        ]


def _single(name: str, help_text: str, value: float, host: str) -> GaugeMetricFamily:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, help_text, labels=["Hostname"])
    family.add_metric([host], value)
    return family


def exposition(document: dict[str, Any]) -> str:
    """The document in the Prometheus text format, through the official client's writer."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DoctorCollector(document))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


#: Only the doctor's document (doctor, healthcheck) is a node's health: the commands offer it by name.
FORMAT = output_format("prometheus", "node_exporter's textfile collector", suffixes=(".prom",), common=False)


@renders("prometheus", DOCTOR_SCHEMA)
def render_prometheus(document: dict[str, Any], console: Console, options: RenderOptions) -> None:
    console.file.write(exposition(document))
