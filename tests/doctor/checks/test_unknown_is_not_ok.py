"""Unknown is not ok: a reading the driver did not give is "not available", never evidence of health. Over
named NVML scenarios that match real cards, through the installed ``envcheck doctor``: a check whose every
reading is missing on every GPU is ``skip`` with the reason; one that read only part says which part; a
refusal names exactly what was refused."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from click.testing import CliRunner

from envcheck.cli import main
from tests import fakenvml
from tests.doctor.test_nvml import ENVCHECK, NVML_SITE


def installed(scenario: str) -> dict[str, dict[str, Any]]:
    """The doctor's gpu and fabric checks, by id, from the installed command over ``scenario``."""
    env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": scenario}
    env["ENVCHECK_FABRIC_INTERVAL_S"] = "0.01"
    proc = subprocess.run(
        [ENVCHECK, "doctor", "gpu", "fabric", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode in (0, 1), proc.stderr
    return {c["id"]: c for c in json.loads(proc.stdout)["checks"]}


def test_mig_without_utilisation_is_not_called_idle():
    found = installed("mig_null_utilization")["gpu.utilization"]
    assert found["status"] == "skip", found
    assert "idle" not in found["summary"]
    assert found["summary"].startswith("GPU 0 (00000000:18:00.0): utilisation not available (not supported")


def test_a_geforce_without_row_remapping_is_not_said_to_have_nothing_pending():
    found = installed("geforce_no_ecc")
    remap, ecc = found["gpu.retired_memory"], found["gpu.ecc"]
    assert remap["status"] == "skip" and "nothing pending" not in remap["summary"], remap
    assert "page retirement or row remapping state not available" in remap["summary"]
    assert ecc["status"] == "skip" and "ECC mode or error counts not available" in ecc["summary"], ecc


def test_a_refusal_names_what_was_refused_and_nothing_else():
    """In MIG mode an unprivileged user is refused the memory reading, not the name or capability."""
    found = installed("readings_refused_mig")["gpu.inventory"]
    assert found["status"] == "warn"
    assert found["summary"] == "GPU 0 (00000000:18:00.0): the driver refused to read its memory size (no permission)"


def test_a_topology_the_driver_does_not_report_claims_no_socket_crossing():
    """Every pair's topology level is N/A: the check used to read that as "across the CPU socket (SYS)"."""
    found = installed("topology_not_reported")["fabric.topology"]
    assert found["status"] == "skip", found
    assert "SYS" not in found["summary"] and "socket" not in found["summary"]
    assert found["summary"] == "the driver did not say how the GPUs are joined (not supported by this GPU or driver)"


def test_a_check_that_read_only_part_says_which_part(monkeypatch):
    """GPU 1's default power limit is not reported (a GeForce): the power check judges what it read and
    says what it could not."""
    lib = fakenvml.FakeNvmlLib(
        [
            fakenvml.h100(0),
            fakenvml.h100(1, errors={"nvmlDeviceGetPowerManagementDefaultLimit": fakenvml.NOT_SUPPORTED}),
        ]
    )
    fakenvml.install(lib, monkeypatch)
    result = CliRunner().invoke(main, ["doctor", "gpu.power", "--json"])
    (found,) = json.loads(result.stdout)["checks"]
    assert found["status"] == "ok"
    assert found["summary"].endswith("(GPU 1 (00000000:19:00.0): not available: default_limit_w)"), found
