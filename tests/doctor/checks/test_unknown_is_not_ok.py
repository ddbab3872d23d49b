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


# -- the same rule in-process, over hand-built cards: each combination of a problem, a reading not given and a
# reading refused, with the exact words and details (the installed command's tests above cannot tell a
# mutation-testing tool what they saw)


def judged(lib: fakenvml.FakeNvmlLib, check_id: str, monkeypatch) -> dict[str, Any]:
    fakenvml.install(lib, monkeypatch)
    result = CliRunner().invoke(main, ["doctor", check_id, "--json"])
    (found,) = json.loads(result.stdout)["checks"]
    return found


NOT_SUPPORTED = {"nvmlDeviceGetUtilizationRates": fakenvml.NOT_SUPPORTED}
REFUSED = {"nvmlDeviceGetUtilizationRates": fakenvml.NO_PERMISSION}
UNREAD = "utilisation not available (not supported by this GPU or driver)"


def test_no_gpu_read_is_a_skip_with_each_gpus_reason(monkeypatch):
    lib = fakenvml.FakeNvmlLib([fakenvml.h100(0, errors=NOT_SUPPORTED), fakenvml.h100(1, errors=NOT_SUPPORTED)])
    found = judged(lib, "gpu.utilization", monkeypatch)
    assert found["status"] == "skip"
    assert found["summary"] == f"GPU 0 (00000000:18:00.0): {UNREAD}; GPU 1 (00000000:19:00.0): {UNREAD}"
    assert found["details"]["gpus"] == {
        "0": {"gpu_pct": None, "memory_pct": None},
        "1": {"gpu_pct": None, "memory_pct": None},
    }


def test_one_gpu_read_and_one_not_is_ok_for_the_one_and_says_the_other(monkeypatch):
    lib = fakenvml.FakeNvmlLib([fakenvml.h100(0), fakenvml.h100(1, errors=NOT_SUPPORTED)])
    found = judged(lib, "gpu.utilization", monkeypatch)
    assert found["status"] == "ok" and found["summary"] == f"idle (GPU 1 (00000000:19:00.0): {UNREAD})"
    assert found["details"]["gpus"]["0"] == {"gpu_pct": 0, "memory_pct": 0}


def test_a_problem_and_a_reading_not_given_are_both_said_problem_first(monkeypatch):
    lib = fakenvml.FakeNvmlLib([fakenvml.h100(0, util=(97, 50)), fakenvml.h100(1, errors=NOT_SUPPORTED)])
    found = judged(lib, "gpu.utilization", monkeypatch)
    assert found["status"] == "warn"
    assert found["summary"] == f"GPU 0 (00000000:18:00.0): 97% busy; GPU 1 (00000000:19:00.0): {UNREAD}"
    assert found["details"]["gpus"]["0"] == {"gpu_pct": 97, "memory_pct": 50}
    assert found["fix"]["text"].startswith("Another job is computing on this GPU")
    assert "Insufficient Permissions" not in found["fix"]["text"]  # nothing was refused here


def test_a_refused_reading_alone_gives_the_way_to_read_it_as_root(monkeypatch):
    lib = fakenvml.FakeNvmlLib([fakenvml.h100(0, errors=REFUSED), fakenvml.h100(1)])
    found = judged(lib, "gpu.utilization", monkeypatch)
    assert found["status"] == "warn"
    assert found["summary"] == "GPU 0 (00000000:18:00.0): the driver refused to read its utilisation (no permission)"
    assert found["fix"]["command"] == "sudo nvidia-smi" and "Insufficient Permissions" in found["fix"]["text"]


def test_a_refusal_beside_a_real_problem_keeps_the_checks_own_fix_first(monkeypatch):
    lib = fakenvml.FakeNvmlLib([fakenvml.h100(0, util=(97, 50)), fakenvml.h100(1, errors=REFUSED)])
    found = judged(lib, "gpu.utilization", monkeypatch)
    assert found["summary"] == (
        "GPU 0 (00000000:18:00.0): 97% busy; "
        "GPU 1 (00000000:19:00.0): the driver refused to read its utilisation (no permission)"
    )
    text = found["fix"]["text"]
    assert text.index("Another job is computing") < text.index("Insufficient Permissions")
    assert found["fix"]["command"] == "nvidia-smi"


def test_a_partial_reading_names_the_parts_not_given(monkeypatch):
    errors = {"nvmlDeviceGetPowerManagementDefaultLimit": fakenvml.NOT_SUPPORTED}
    lib = fakenvml.FakeNvmlLib([fakenvml.h100(0), fakenvml.h100(1, errors=errors)])
    found = judged(lib, "gpu.power", monkeypatch)
    assert found["status"] == "ok"
    assert found["summary"].endswith("(GPU 1 (00000000:19:00.0): not available: default_limit_w)")
    assert found["details"]["gpus"]["1"]["default_limit_w"] is None
    assert found["details"]["gpus"]["0"]["default_limit_w"] == 700


def test_no_gpu_that_answers_is_a_skip_that_says_so(monkeypatch):
    lib = fakenvml.FakeNvmlLib([fakenvml.h100(0, lost=True)])
    found = judged(lib, "gpu.utilization", monkeypatch)
    assert found["status"] == "skip" and found["summary"] == "no working GPUs to judge"


def test_every_gpu_read_and_fine_is_ok_in_the_checks_own_word(monkeypatch):
    found = judged(fakenvml.FakeNvmlLib([fakenvml.h100(0), fakenvml.h100(1)]), "gpu.utilization", monkeypatch)
    assert (found["status"], found["summary"]) == ("ok", "idle")


def test_two_refusals_name_both_gpus(monkeypatch):
    lib = fakenvml.FakeNvmlLib([fakenvml.h100(0, errors=REFUSED), fakenvml.h100(1, errors=REFUSED)])
    found = judged(lib, "gpu.utilization", monkeypatch)
    assert found["summary"] == (
        "GPU 0 (00000000:18:00.0): the driver refused to read its utilisation (no permission); "
        "GPU 1 (00000000:19:00.0): the driver refused to read its utilisation (no permission)"
    )
