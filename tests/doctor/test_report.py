"""The verdict in words, computed once for every format, and the healthcheck's judgement of a crash."""

from __future__ import annotations

import pytest

from envcheck.core.model import CheckResult, Status
from envcheck.doctor.report import summarize
from tests import fakenvml


def results(*statuses: Status) -> list[CheckResult]:
    return [CheckResult(f"host.c{i}", "t", s, "s") for i, s in enumerate(statuses)]


@pytest.mark.parametrize(
    ("statuses", "gpus_seen", "verdict", "text"),
    [
        ((Status.OK, Status.OK), True, "ready", "ready: no problems found"),
        ((Status.OK, Status.SKIP), False, "ready_cpu", "ready for CPU work: no NVIDIA GPU found"),
        ((Status.OK, Status.WARN), False, "ready_cpu", "ready for CPU work: no NVIDIA GPU found, 1 warning"),
        ((Status.OK, Status.WARN, Status.WARN), True, "warnings", "ready, with warnings: 2 warnings"),
        ((Status.OK, Status.WARN), None, "warnings", "ready, with warnings: 1 warning"),
        ((Status.FAIL, Status.WARN), True, "not_ready", "not ready: 1 problem, 1 warning"),
        ((Status.CRASH,), True, "not_ready", "not ready: 1 check crashed (envcheck bug)"),
        (
            (Status.FAIL, Status.FAIL, Status.CRASH),
            False,
            "not_ready",
            "not ready: 2 problems, 1 check crashed (envcheck bug)",
        ),
        (
            (Status.SKIP, Status.SKIP, Status.SKIP),
            False,
            "nothing_checked",
            "nothing checked: all 3 selected checks skipped",
        ),
        ((), None, "nothing_checked", "nothing checked: no check selected"),
    ],
)
def test_summary_words(statuses, gpus_seen, verdict, text):
    summary = summarize(results(*statuses), gpus_seen=gpus_seen)
    assert (summary.verdict, summary.text) == (verdict, text)


def test_a_check_that_crashes_inside_the_healthcheck_is_unhealthy(monkeypatch, nvml, tmp_path):
    from click.testing import CliRunner

    from envcheck.cli import main
    from envcheck.core.registry import CheckSpec
    from envcheck.doctor.areas import CHECKS

    nvml("healthy_multi_gpu")

    def broken(ctx):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(CHECKS, "host.os", CheckSpec("host.os", "Operating system", broken, "doc"))
    monkeypatch.delenv("ENVCHECK_SPEC", raising=False)
    monkeypatch.chdir(tmp_path)  # no envcheck.toml or pyproject.toml here: no lab spec
    result = CliRunner().invoke(main, ["healthcheck", "--deadline", "8"])
    healthy, line = result.exit_code == 0, result.output.strip()
    assert healthy is False
    assert line.startswith("unhealthy: host.os: check crashed: ZeroDivisionError: division by zero")


def test_a_gpu_whose_matmul_returns_nan_is_a_fail_in_strict_json(nvml):
    """The case the strict-JSON rule exists for: the torch child measured NaN on a GPU."""
    import json
    from io import StringIO

    from envcheck.doctor.app import DoctorRequest, run_doctor
    from envcheck.doctor.report import doctor_document
    from envcheck.doctor.runner import ProbeRunner
    from envcheck.probes.registry import PROBES, ProbeSpec
    from envcheck.probes.torch import TorchDevice, TorchInfo
    from envcheck.render import RenderOptions, make_console, render

    nvml("healthy_multi_gpu")
    info = TorchInfo(
        status="ok",
        stage="done",
        version="2.9.1+cu128",
        cuda="12.8",
        cuda_available=True,
        device_count=1,
        devices=[TorchDevice(0, "NVIDIA H100 80GB HBM3", (9, 0), matmul_max_rel_error=float("nan"))],
    )
    probes = {
        "torch": ProbeSpec("torch", lambda env: info, 5.0, "torch"),
        "nvml": PROBES["nvml"],
        "toolkit": ProbeSpec("toolkit", lambda env: None, 5.0, "toolkit"),
    }
    report = run_doctor(DoctorRequest(("torch.matmul",)), runner=ProbeRunner({}, 10.0, probes=probes))
    doc = doctor_document(report, wall_s=1.0)
    buffer = StringIO()
    render(doc, "json", make_console(buffer, for_file=True), RenderOptions())

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in the JSON")

    parsed = json.loads(buffer.getvalue(), parse_constant=no_constants)
    check = parsed["checks"][0]
    assert check["status"] == "fail" and parsed["exit_code"] == 1
    assert "GPU 0 (NVIDIA H100 80GB HBM3): wrong result (max relative error nan vs the CPU" in check["summary"]
    assert check["details"]["max_rel_error"] == {"0": None}
    assert parsed["torch"]["devices"][0]["matmul_max_rel_error"] is None


@pytest.mark.parametrize("scenario", sorted(fakenvml.SCENARIOS))
def test_every_gpu_reading_is_in_the_document_under_its_name(nvml, scenario):
    """``gpus[]`` is written field by field (renderers read those names); it still carries every reading
    the NVML probe makes, under the probe's name and as its JSON value, in every named scenario."""
    from envcheck.core.model import to_jsonable
    from envcheck.doctor.report import gpu_document
    from envcheck.probes.registry import PROBES

    nvml(scenario)
    PROBES.load()
    state = PROBES["nvml"].fn({})
    for gpu in state.gpus:
        assert gpu_document(gpu) == to_jsonable(gpu)
