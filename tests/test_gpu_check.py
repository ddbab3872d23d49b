"""benchmarks/gpu_check.sh and benchmarks/gpu_compare.py, dry-run here (no GPU): the script parses, stops
with one clear line and a summary before any step where it could measure nothing (no driver, a driver too
old, a CPU torch), and picks the torch build from the driver; the comparison against nvidia-smi agrees with
the doctor's own report and names a field that differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
COMPARE = ROOT / "benchmarks" / "gpu_compare.py"
NVML_SITE = ROOT / "tests" / "nvml_site"

#: A stand-in for nvidia-smi: the driver version from $FAKE_DRIVER, --query-gpu rows from $FAKE_ROWS (a JSON
#: list of {field: text}), no compute process.
FAKE_SMI = """#!{python}
import json, os, sys
args = " ".join(sys.argv[1:])
if "driver_version" in args:
    print(os.environ.get("FAKE_DRIVER", "580.65.06"))
elif "--query-gpu=" in args:
    fields = args.split("--query-gpu=")[1].split()[0].split(",")
    for row in json.load(open(os.environ["FAKE_ROWS"])):
        print(", ".join(row.get(f, "[N/A]") for f in fields))
elif "--query-compute-apps" in args:
    pass
"""


@pytest.fixture
def fake_smi(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI.format(python=sys.executable))
    smi.chmod(0o755)
    return bin_dir


def check(tmp_path: Path, path: str, **env: str) -> tuple[subprocess.CompletedProcess[str], dict | None]:
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": path, "HOME": str(tmp_path), "OUT": str(out), **env},
    )
    summary = out / "summary.json"
    return proc, json.loads(summary.read_text()) if summary.exists() else None


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_a_cpu_torch_stops_it_at_the_cuda_check_with_one_line(tmp_path, fake_smi):
    path = f"{fake_smi}:{os.environ['PATH']}"
    proc, summary = check(tmp_path, path, PYTHON=sys.executable)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("gpu_check: torch ")
    assert "is a CPU build: install the cu130 build for driver 580.65.06" in line
    assert summary is not None and summary["ok"] is False and summary["steps"] == []
    assert summary["stopped"] == line.removeprefix("gpu_check: ") and summary["torch_variant"] == "cu130"


@pytest.mark.parametrize(
    ("driver", "words"),
    [
        ("550.54.15", "install the cu126 build for driver 550.54.15"),  # r550: CUDA 12 builds, no driver upgrade
        ("470.82.01", "driver 470.82.01 is older than 525.60.13"),
        ("", "nvidia-smi answers no driver version"),
    ],
)
def test_the_torch_build_follows_the_driver(tmp_path, fake_smi, driver, words):
    proc, summary = check(tmp_path, f"{fake_smi}:{os.environ['PATH']}", PYTHON=sys.executable, FAKE_DRIVER=driver)
    assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert summary is not None and words in summary["stopped"]


def test_without_a_driver_it_says_so_in_one_line(tmp_path):
    python_only = tmp_path / "python_only"
    python_only.mkdir()
    (python_only / "python3").symlink_to(sys.executable)
    proc, summary = check(tmp_path, f"{python_only}:/usr/bin:/bin")
    assert proc.returncode == 2
    assert proc.stderr == "gpu_check: no nvidia-smi on PATH: no NVIDIA driver here, so no GPU to check\n"
    assert summary is not None and summary["ok"] is False


def doctor_json(tmp_path: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "healthy_multi_gpu"}
    out = tmp_path / "doctor.json"
    subprocess.run(
        [sys.executable, "-m", "envcheck", "doctor", "gpu", "-o", str(out)], env=env, timeout=120, capture_output=True
    )
    return out


def smi_rows(doc: dict) -> list[dict[str, str]]:
    """What nvidia-smi would print for the doctor's GPUs (MiB, W, its words for the modes)."""
    rows = []
    for g in doc["gpus"]:
        rows.append(
            {
                "uuid": g["uuid"],
                "pci.bus_id": g["pci_bus_id"].lower(),
                "name": g["name"],
                "memory.total": str(g["memory_total_bytes"] // 2**20),
                "memory.used": str(g["memory_used_bytes"] // 2**20),
                "power.limit": f"{g['power_limit_w']:.2f}",
                "power.default_limit": f"{g['power_default_limit_w']:.2f}",
                "power.draw": f"{g['power_draw_w'] + 3.5:.2f}",  # moved a little between two readings
                "temperature.gpu": str(g["temperature_c"] + 1),
                "pcie.link.width.current": str(g["pcie_width_current"]),
                "pcie.link.width.max": str(g["pcie_width_max"]),
                "pcie.link.gen.max": str(g["pcie_gen_max"]),
                "ecc.errors.uncorrected.volatile.total": str(g["ecc_volatile_uncorrected"]),
                "ecc.errors.uncorrected.aggregate.total": str(g["ecc_aggregate_uncorrected"]),
                "persistence_mode": "Enabled" if g["persistence_mode"] else "Disabled",
                "mig.mode.current": "[N/A]",
            }
        )
    return rows


def compare(tmp_path: Path, fake_smi: Path, rows: list[dict[str, str]], doctor: Path) -> tuple[int, dict]:
    table = tmp_path / "rows.json"
    table.write_text(json.dumps(rows))
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "nvml-vs-smi", str(doctor), "--nvidia-smi", str(fake_smi / "nvidia-smi")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FAKE_ROWS": str(table)},
    )
    return proc.returncode, json.loads(proc.stdout)


def test_nvml_readings_agree_with_nvidia_smi_and_a_difference_is_named(tmp_path, fake_smi):
    doctor = doctor_json(tmp_path)
    doc = json.loads(doctor.read_text())
    rows = smi_rows(doc)
    code, same = compare(tmp_path, fake_smi, rows, doctor)
    assert code == 0 and same["ok"] is True and same["gpus"] == 4, same
    assert same["compared"] == 4 * 14 and same["mismatches"] == []  # every field but MIG (N/A here)
    assert same["only_envcheck_read"][0]["field"] == "mig.mode.current"  # envcheck read what smi did not
    rows[2]["power.limit"] = "400.00"  # a power cap envcheck did not see
    code, differ = compare(tmp_path, fake_smi, rows, doctor)
    assert code == 1 and differ["ok"] is False
    assert differ["mismatches"] == [
        {"uuid": rows[2]["uuid"], "field": "power.limit", "envcheck": 700.0, "nvidia_smi": 400.0}
    ]
