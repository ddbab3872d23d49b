"""``--format prometheus`` through the installed command over fake NVML scenarios, read back with the
official client's text parser (what a Prometheus server reading node_exporter's textfile collector
accepts), and the textfile written atomically."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.test_terminal import run

GPU_LABELS = {"gpu", "UUID", "pci_bus_id", "modelName", "Hostname"}
STATUSES = ("ok", "warn", "fail", "skip", "crash")


def families(text: str) -> dict[str, list]:
    """Metric name -> its samples, as the official parser reads them (it raises on anything malformed)."""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(samples: list, **labels: str) -> float:
    """The one sample whose labels include ``labels``."""
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (labels, found)
    return found[0]


def scrape(*args: str, scenario: str, code: int | None = None, **env: str) -> dict[str, list]:
    proc = run(*args, "--format", "prometheus", ENVCHECK_FAKE_NVML=scenario, **env)
    assert "Traceback" not in proc.stderr, proc.stderr
    if code is not None:
        assert proc.returncode == code, proc.stderr
    return families(proc.stdout)


def test_a_failing_check_and_its_gpu_readings():
    metrics = scrape("doctor", "--quick", scenario="ecc_uncorrected_row_remap", code=1, NODE_NAME="gpu-node-17")
    status = metrics["envcheck_check_status"]
    # One series per check and per possible status, 1 on the current one (node_exporter's enum convention).
    assert {s.labels["status"] for s in status if s.labels["check"] == "gpu.ecc"} == set(STATUSES)
    assert value(status, check="gpu.ecc", status="fail") == 1
    assert value(status, check="gpu.ecc", status="ok") == 0
    assert value(status, check="gpu.ecc", status="fail", area="gpu", Hostname="gpu-node-17") == 1
    assert sum(s.value for s in status) == len({s.labels["check"] for s in status})  # exactly one 1 per check
    assert value(metrics["envcheck_node_healthy"]) == 0
    assert value(metrics["envcheck_checks"], status="fail") >= 1
    # GPU 1 of this scenario has 3 volatile and 7 lifetime uncorrected errors (tests/fakenvml.py).
    ecc = metrics["envcheck_gpu_ecc_errors"]
    assert value(ecc, gpu="1", type="volatile_uncorrected") == 3
    assert value(ecc, gpu="1", type="aggregate_uncorrected") == 7
    assert value(ecc, gpu="0", type="volatile_uncorrected") == 0
    # dcgm-exporter's label names and values, so dashboards join on them; NODE_NAME is the Hostname.
    temperature = metrics["envcheck_gpu_temperature_celsius"]
    assert all(set(s.labels) == GPU_LABELS for s in temperature)
    gpu1 = next(s.labels for s in temperature if s.labels["gpu"] == "1")
    assert gpu1["pci_bus_id"] == "00000000:19:00.0" and gpu1["UUID"].startswith("GPU-")
    assert gpu1["modelName"] == "NVIDIA H100 80GB HBM3" and gpu1["Hostname"] == "gpu-node-17"


def test_throttle_reasons_temperature_and_memory_of_a_hot_gpu():
    metrics = scrape("doctor", "--quick", scenario="thermal_throttle_pcie_downgrade", code=1)  # throttling: fail
    throttle = metrics["envcheck_gpu_throttle_reason"]
    # GPU 0 is held by software and hardware thermal slowdown (mask 0x60); GPU 1 only idles (0x1).
    assert value(throttle, gpu="0", reason="sw_thermal") == 1 and value(throttle, gpu="0", reason="hw_thermal") == 1
    assert value(throttle, gpu="0", reason="hw_slowdown") == 0
    assert value(throttle, gpu="1", reason="gpu_idle") == 1 and value(throttle, gpu="1", reason="sw_thermal") == 0
    assert value(metrics["envcheck_gpu_temperature_celsius"], gpu="0") == 91
    assert value(metrics["envcheck_gpu_slowdown_temperature_celsius"], gpu="0") == 87
    assert value(metrics["envcheck_gpu_memory_total_bytes"], gpu="0") == 80 * 2**30
    assert value(metrics["envcheck_gpu_memory_used_bytes"], gpu="0") == 2**30
    assert value(metrics["envcheck_gpu_power_watts"], gpu="0") == 70
    assert value(metrics["envcheck_gpu_pcie_link_width"], gpu="0") == 8
    assert value(metrics["envcheck_check_status"], check="gpu.temperature", status="fail") == 1
    assert value(metrics["envcheck_node_healthy"]) == 0  # a GPU slowing down now is not healthy
    info = metrics["envcheck_info"][0].labels
    assert info["driver_version"] == "550.54.15" and info["version"]
    assert abs(value(metrics["envcheck_last_run_timestamp_seconds"]) - time.time()) < 120
    assert 0 < value(metrics["envcheck_run_duration_seconds"]) < 60


def test_a_lost_gpu_is_down_and_has_no_readings():
    metrics = scrape("doctor", "--quick", scenario="gpu_lost", code=1)
    assert value(metrics["envcheck_gpu_up"], gpu="1") == 0
    assert value(metrics["envcheck_gpu_up"], gpu="0") == 1
    # "not available" is left out, never written as a number
    assert {s.labels["gpu"] for s in metrics["envcheck_gpu_temperature_celsius"]} == {"0", "2"}


def test_no_gpu_means_no_gpu_series_but_every_check():
    metrics = scrape("doctor", "--quick", scenario="no_library", code=0)
    assert metrics["envcheck_gpu_up"] == [] and metrics["envcheck_gpu_temperature_celsius"] == []
    assert value(metrics["envcheck_check_status"], check="driver.nvml", status="skip") in (0, 1)
    assert value(metrics["envcheck_node_healthy"]) == 1


def test_the_healthcheck_renders_the_same_document():
    metrics = scrape("healthcheck", scenario="ecc_uncorrected_row_remap", code=1)
    assert value(metrics["envcheck_check_status"], check="gpu.ecc", status="fail") == 1
    assert value(metrics["envcheck_gpu_ecc_errors"], gpu="1", type="volatile_uncorrected") == 3
    # the healthcheck is the quick doctor: torch is never judged
    assert not any(s.labels["check"].startswith("torch.") for s in metrics["envcheck_check_status"])


def test_label_values_are_escaped_by_the_library():
    from envcheck.render.prometheus import exposition

    name = 'Weird "GPU" \\ with\na newline'
    document = {
        "schema": "envcheck.doctor/1",
        "envcheck_version": "0",
        "generated_at": "2025-01-01T00:00:00+00:00",
        "duration_s": 1.5,
        "host": {"hostname": 'host"1'},
        "checks": [{"id": "gpu.inventory", "status": "ok"}],
        "gpus": [{"index": 0, "name": name, "uuid": "GPU-x", "pci_bus_id": "0", "temperature_c": None}],
    }
    metrics = families(exposition(document))
    up = metrics["envcheck_gpu_up"][0]
    assert up.labels["modelName"] == name and up.value == 1
    assert metrics["envcheck_gpu_temperature_celsius"] == []
    assert value(metrics["envcheck_last_run_timestamp_seconds"]) == 1735689600


def test_the_textfile_is_written_atomically(tmp_path, monkeypatch):
    """node_exporter reads every *.prom file in its directory: the temporary file must sit in the same
    directory (so the rename is atomic on one filesystem), not end in .prom, and be renamed over the target."""
    import os

    from envcheck.render import write_atomically
    from envcheck.render.prometheus import exposition

    document = {
        "schema": "envcheck.doctor/1",
        "generated_at": "2025-01-01T00:00:00+00:00",
        "host": {"hostname": "h"},
        "checks": [],
        "gpus": [],
    }
    renames: list[tuple[Path, Path, str]] = []
    real_replace = os.replace

    def replace(src, dst):
        renames.append((Path(src), Path(dst), Path(src).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "envcheck.prom"
    target.write_text("old\n")
    write_atomically(str(target), document, "prometheus")
    [(src, dst, written)] = renames
    assert dst == target and src.parent == tmp_path and not src.name.endswith(".prom")
    assert written == target.read_text() == exposition(document)  # complete before the rename
    assert [p.name for p in tmp_path.iterdir()] == ["envcheck.prom"]


def test_output_by_suffix_from_the_installed_command(tmp_path):
    textfile = tmp_path / "envcheck.prom"
    proc = run("healthcheck", "--output", str(textfile), ENVCHECK_FAKE_NVML="healthy_multi_gpu")
    assert proc.returncode == 0 and proc.stdout.startswith("healthy: 4 GPU(s) answer")  # stdout keeps the line
    metrics = families(textfile.read_text())
    assert len(metrics["envcheck_gpu_up"]) == 4 and value(metrics["envcheck_node_healthy"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["envcheck.prom"]
    doctor = run("doctor", "--quick", "-o", str(tmp_path / "d.prom"), ENVCHECK_FAKE_NVML="healthy_multi_gpu")
    assert doctor.returncode == 0 and "ready: no problems found" in doctor.stdout
    assert len(families((tmp_path / "d.prom").read_text())["envcheck_gpu_up"]) == 4


@pytest.mark.parametrize(
    "args",
    [("bench", "--format", "prometheus"), ("bench", "-o", "x.prom"), ("comm", "-o", "x.prom")],
    ids=["bench --format", "bench -o .prom", "comm -o .prom"],
)
def test_prometheus_on_a_command_it_does_not_apply_to_is_a_usage_error(args, tmp_path):
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "prometheus" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_documented_family_has_a_sample_for_every_gpu_of_a_healthy_machine():
    """The renderer reads the doctor's document by the document's field names: a reading that went missing
    from the document (a renamed probe field) would leave a family empty here instead of failing."""
    from envcheck.render.prometheus import exposition

    empty = {"schema": "envcheck.doctor/1", "generated_at": "2025-01-01T00:00:00+00:00", "checks": [], "gpus": []}
    documented = set(families(exposition(empty)))  # every family the renderer declares, with or without data
    metrics = scrape("doctor", "--quick", scenario="healthy_multi_gpu", code=0)
    assert set(metrics) == documented
    for name in sorted(documented):
        samples = metrics[name]
        assert samples, f"{name} has no sample"
        if name.startswith("envcheck_gpu_"):
            assert {s.labels["gpu"] for s in samples} == {"0", "1", "2", "3"}, name


# -- values read back as numbers, from hand-built documents ---------------------------------------------------


def document(checks: list[tuple[str, str]], gpus: list[dict] | None = None) -> dict:
    return {
        "schema": "envcheck.doctor/1",
        "generated_at": "2026-01-02T03:04:05+00:00",
        "duration_s": 2.5,
        "host": {"hostname": "node-a"},
        "checks": [{"id": i, "status": s, "summary": ""} for i, s in checks],
        "gpus": gpus or [],
    }


def exposed(doc: dict, monkeypatch) -> dict[str, list]:
    from envcheck.render.prometheus import exposition

    monkeypatch.delenv("NODE_NAME", raising=False)
    return families(exposition(doc))


@pytest.mark.parametrize(
    ("checks", "healthy"),
    [
        ([("gpu.ecc", "ok"), ("gpu.pcie", "warn"), ("host.cpu", "skip")], 1),
        ([("gpu.ecc", "ok"), ("gpu.nvlink", "crash")], 0),  # a crashed check alone: not healthy
        ([("gpu.ecc", "fail"), ("gpu.pcie", "warn")], 0),
    ],
)
def test_node_health_and_the_counts_read_back_as_numbers(monkeypatch, checks, healthy):
    metrics = exposed(document(checks), monkeypatch)
    assert value(metrics["envcheck_node_healthy"], Hostname="node-a") == healthy
    for status in STATUSES:
        assert value(metrics["envcheck_checks"], status=status) == sum(s == status for _, s in checks)
    for check_id, status in checks:
        assert value(metrics["envcheck_check_status"], check=check_id, status=status, area=check_id.split(".")[0]) == 1
    assert value(metrics["envcheck_run_duration_seconds"]) == 2.5
    assert value(metrics["envcheck_last_run_timestamp_seconds"]) == 1767323045.0  # 2026-01-02 03:04:05 UTC


def test_gpu_readings_are_numbers_percentages_are_ratios_and_flags_are_0_or_1(monkeypatch):
    gpu = {
        "index": 0, "uuid": "GPU-1", "pci_bus_id": "00000000:18:00.0", "name": "NVIDIA H100 80GB HBM3",
        "utilization_gpu_pct": 37, "temperature_c": 61, "power_draw_w": 312.5, "memory_used_bytes": 3 * 2**30,
        "remapped_rows_pending": True, "remapped_rows_failed": False, "ecc_volatile_uncorrected": 2,
        "ecc_aggregate_uncorrected": None, "remapped_rows_correctable": 4, "clocks_event_reasons": 0x8,
    }  # fmt: skip
    lost = {"index": 1, "lost": True}
    metrics = exposed(document([("gpu.ecc", "ok")], [gpu, lost]), monkeypatch)
    assert value(metrics["envcheck_gpu_utilization_ratio"], gpu="0") == pytest.approx(0.37)
    assert value(metrics["envcheck_gpu_temperature_celsius"], gpu="0") == 61
    assert value(metrics["envcheck_gpu_power_watts"], gpu="0") == 312.5
    assert value(metrics["envcheck_gpu_memory_used_bytes"], gpu="0") == 3 * 2**30
    assert value(metrics["envcheck_gpu_row_remap_pending"], gpu="0") == 1
    assert value(metrics["envcheck_gpu_row_remap_failed"], gpu="0") == 0
    assert value(metrics["envcheck_gpu_ecc_errors"], gpu="0", type="volatile_uncorrected") == 2
    assert [s for s in metrics["envcheck_gpu_ecc_errors"] if s.labels["type"] == "aggregate_uncorrected"] == []
    assert value(metrics["envcheck_gpu_remapped_rows"], gpu="0", type="correctable") == 4
    assert value(metrics["envcheck_gpu_throttle_reason"], gpu="0", reason="hw_slowdown") == 1
    assert value(metrics["envcheck_gpu_throttle_reason"], gpu="0", reason="sw_power_cap") == 0
    assert (value(metrics["envcheck_gpu_up"], gpu="0"), value(metrics["envcheck_gpu_up"], gpu="1")) == (1, 0)
    assert {s.labels["gpu"] for s in metrics["envcheck_gpu_temperature_celsius"]} == {"0"}


def test_every_other_status_of_a_check_is_0_and_its_area_is_before_the_first_dot(monkeypatch):
    metrics = exposed(document([("gpu.nvlink.replay", "warn"), ("host.cpu", "ok")]), monkeypatch)
    samples = metrics["envcheck_check_status"]
    assert {(s.labels["check"], s.labels["status"]): s.value for s in samples} == {
        **{("gpu.nvlink.replay", s): float(s == "warn") for s in STATUSES},
        **{("host.cpu", s): float(s == "ok") for s in STATUSES},
    }
    assert {s.labels["check"]: s.labels["area"] for s in samples} == {"gpu.nvlink.replay": "gpu", "host.cpu": "host"}
    assert {s.labels["Hostname"] for s in samples} == {"node-a"}
    assert {s.labels["status"]: s.labels["Hostname"] for s in metrics["envcheck_checks"]} == dict.fromkeys(
        STATUSES, "node-a"
    )


def test_the_info_series_names_the_version_and_the_driver_it_saw(monkeypatch):
    doc = {**document([]), "envcheck_version": "0.3.1", "driver": {"version": "550.54.15", "cuda_version": "12.4"}}
    (info,) = exposed(doc, monkeypatch)["envcheck_info"]
    assert info.labels == {
        "version": "0.3.1",
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "Hostname": "node-a",
    }
    assert info.value == 1
    (bare,) = exposed({**document([]), "driver": None}, monkeypatch)["envcheck_info"]
    assert bare.labels == {"version": "", "driver_version": "", "cuda_driver_version": "", "Hostname": "node-a"}


def test_node_name_wins_over_the_reports_host_name_and_a_missing_one_is_empty(monkeypatch):
    from envcheck.render.prometheus import exposition

    monkeypatch.setenv("NODE_NAME", "k8s-node-7")
    metrics = families(exposition(document([("gpu.ecc", "ok")], [{"index": 0, "uuid": "GPU-1"}])))
    every = [s for samples in metrics.values() for s in samples]
    assert every and {s.labels["Hostname"] for s in every} == {"k8s-node-7"}
    monkeypatch.delenv("NODE_NAME")
    nameless = {k: v for k, v in document([]).items() if k != "host"}
    assert {s.labels["Hostname"] for s in families(exposition(nameless))["envcheck_node_healthy"]} == {""}


def test_a_document_without_checks_gpus_or_duration_is_a_healthy_node_with_zero_counts(monkeypatch):
    doc = {"schema": "envcheck.doctor/1", "generated_at": "2026-01-02T03:04:05+00:00", "host": {"hostname": "n"}}
    metrics = exposed(doc, monkeypatch)
    assert value(metrics["envcheck_node_healthy"]) == 1
    assert value(metrics["envcheck_run_duration_seconds"]) == 0.0
    assert [value(metrics["envcheck_checks"], status=s) for s in STATUSES] == [0] * len(STATUSES)
    assert metrics["envcheck_check_status"] == [] and metrics["envcheck_gpu_up"] == []


def test_a_gpu_refused_to_this_user_is_down_and_missing_labels_are_empty(monkeypatch):
    gpus = [{"index": 0, "refused": True}, {"index": 1, "uuid": "GPU-b", "pci_bus_id": "0:3b", "name": "H100"}]
    up = exposed(document([], gpus), monkeypatch)["envcheck_gpu_up"]
    assert [(s.labels, s.value) for s in up] == [
        ({"gpu": "0", "UUID": "", "pci_bus_id": "", "modelName": "", "Hostname": "node-a"}, 0),
        ({"gpu": "1", "UUID": "GPU-b", "pci_bus_id": "0:3b", "modelName": "H100", "Hostname": "node-a"}, 1),
    ]


def test_each_family_says_what_it_measures(monkeypatch):
    """The HELP line is what a dashboard's author reads in Prometheus' metric explorer."""
    helps = {f.name: f.documentation for f in text_string_to_metric_families(_exposition_of_nothing(monkeypatch))}
    assert helps == {
        "envcheck_info": "envcheck's version and the driver it saw (1).",
        "envcheck_check_status": "1 on the check's status, 0 on the others (one series per possible status).",
        "envcheck_checks": "Checks by status in the last run.",
        "envcheck_node_healthy": "1 when no check failed or crashed in the last run.",
        "envcheck_last_run_timestamp_seconds": "When the last run started (Unix time).",
        "envcheck_run_duration_seconds": "How long the last run took.",
        "envcheck_gpu_up": "1 when the GPU answers; 0 when it is lost or refused to this user.",
        **GPU_GAUGE_HELP,
        "envcheck_gpu_ecc_errors": "Uncorrected ECC errors (volatile: since the driver loaded).",
        "envcheck_gpu_remapped_rows": "Rows remapped, by the kind of error that caused it.",
        "envcheck_gpu_throttle_reason": (
            "1 when this clocks-event (throttle) reason holds the GPU's clocks now, else 0."
        ),
    }


def _exposition_of_nothing(monkeypatch) -> str:
    from envcheck.render.prometheus import exposition

    monkeypatch.delenv("NODE_NAME", raising=False)
    return exposition(document([]))


#: The per-reading gauges' HELP, as a dashboard's author reads it.
GPU_GAUGE_HELP = {
    "envcheck_gpu_temperature_celsius": "GPU core temperature.",
    "envcheck_gpu_slowdown_temperature_celsius": "Temperature at which the GPU slows down.",
    "envcheck_gpu_memory_used_bytes": "GPU memory in use.",
    "envcheck_gpu_memory_total_bytes": "GPU memory in all.",
    "envcheck_gpu_power_watts": "Power draw.",
    "envcheck_gpu_power_limit_watts": "Enforced power limit.",
    "envcheck_gpu_utilization_ratio": "Share of the last sample period a kernel ran (0-1).",
    "envcheck_gpu_pcie_link_width": "Current PCIe link width (lanes).",
    "envcheck_gpu_pcie_link_width_max": "Maximum PCIe link width (lanes).",
    "envcheck_gpu_pcie_link_generation": "Current PCIe link generation.",
    "envcheck_gpu_pcie_link_generation_max": "Maximum PCIe link generation.",
    "envcheck_gpu_row_remap_pending": "1 when a row remap waits for a GPU reset.",
    "envcheck_gpu_row_remap_failed": "1 when a row remap failed (the GPU needs service).",
}
