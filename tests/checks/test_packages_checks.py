"""Package checks, fed by the real packages probe reading fake ``*.dist-info`` trees (nothing is installed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from packaging.version import Version

from envcheck.checks import packages as _packages_checks  # noqa: F401 - registers the packages checks
from envcheck.checks.packages import dependency_problems, expected_companion
from envcheck.core.model import CheckResult, Status
from envcheck.core.registry import CHECKS, ProbeSpec
from envcheck.probes.packages import probe_packages
from envcheck.runner import ProbeContext as Context
from envcheck.runner import ProbeRunner, run_check
from tests.probes.test_packages_probe import make_dist


def judge(check_id: str, site: Path | None) -> CheckResult:
    """Run one check on the distributions in ``site`` (None: this venv)."""
    paths = None if site is None else [str(site)]
    probes = {"packages": ProbeSpec("packages", lambda env: probe_packages(env, paths), 5.0, "installed packages")}
    env = dict(os.environ) if site is None else {}
    return run_check(CHECKS[check_id], Context(ProbeRunner(env, 10.0, probes=probes), env))


def cuda_stack(site: Path, torch: str = "2.5.1+cu124", vision: str | None = "0.20.1+cu124", pin: str | None = "2.5.1"):
    make_dist(site, "torch", torch, ("filelock", "numpy; extra == 'numpy'"))
    make_dist(site, "filelock", "3.16.1")
    make_dist(site, "numpy", "2.1.3")
    if vision:
        make_dist(site, "torchvision", vision, (f"torch=={pin}",) if pin else ("numpy",))


@pytest.mark.parametrize(
    "check_id",
    ["packages.torch", "packages.companions", "packages.numpy", "packages.pynvml_deprecated", "packages.dependencies"],
)
def test_this_venv_passes(check_id):
    assert judge(check_id, None).status is Status.OK


def test_this_venv_reports_cpu_only_torch():
    result = judge("packages.torch", None)
    assert "CPU-only" in result.summary and result.details["kind"] == "cpu"


def test_torch_missing_warns_with_install_command(tmp_path):
    make_dist(tmp_path, "numpy", "2.1.3")
    result = judge("packages.torch", tmp_path)
    assert result.status is Status.WARN and result.fix.command == "pip install torch"


def test_cuda_torch_flavour_is_in_the_summary(tmp_path):
    cuda_stack(tmp_path)
    result = judge("packages.torch", tmp_path)
    assert result.status is Status.OK and result.summary == "torch 2.5.1+cu124, CUDA 12.4 (from version label)"


def test_shadowed_torch_is_named_in_details(tmp_path):
    cuda_stack(tmp_path / "venv")
    make_dist(tmp_path / "user", "torch", "2.3.0+cpu")
    paths = [str(tmp_path / "venv"), str(tmp_path / "user")]
    probes = {"packages": ProbeSpec("packages", lambda env: probe_packages(env, paths), 5.0, "installed packages")}
    result = run_check(CHECKS["packages.torch"], Context(ProbeRunner({}, 5.0, probes=probes), {}))
    assert result.details["shadowed"] == [f"2.3.0+cpu at {tmp_path / 'user'}"]


@pytest.mark.parametrize(
    "torch, vision, audio",
    [("2.5.1", "0.20", "2.5"), ("2.13.0", "0.28", "2.13"), ("2.14.1", "0.29", "2.14"), ("1.13.1", "0.14", "0.13")],
)
def test_companion_version_rule(torch, vision, audio):
    assert expected_companion("torchvision", Version(torch)) == vision
    assert expected_companion("torchaudio", Version(torch)) == audio


def test_matching_companions_are_ok(tmp_path):
    cuda_stack(tmp_path)
    make_dist(tmp_path, "torchaudio", "2.5.1+cu124", ("torch==2.5.1",))
    result = judge("packages.companions", tmp_path)
    assert result.status is Status.OK
    assert result.summary == "torchvision 0.20.1+cu124, torchaudio 2.5.1+cu124: match torch 2.5.1+cu124"


def test_torchvision_pinned_to_another_torch_fails(tmp_path):
    cuda_stack(tmp_path, vision="0.19.1+cu124", pin="2.4.1")
    result = judge("packages.companions", tmp_path)
    assert result.status is Status.FAIL
    assert "torchvision 0.19.1+cu124 requires torch==2.4.1, but torch 2.5.1+cu124 is installed" in result.summary
    assert result.fix.command == 'pip install "torch==2.5.1" "torchvision==0.20.*"'


def test_torchvision_without_a_pin_is_judged_by_the_version_rule(tmp_path):
    cuda_stack(tmp_path, torch="2.13.0+cu130", vision="0.27.0", pin=None)
    result = judge("packages.companions", tmp_path)
    assert result.status is Status.FAIL and "torch 2.13.0 needs 0.28.x" in result.summary


def test_companion_of_another_flavour_warns(tmp_path):
    cuda_stack(tmp_path, torch="2.14.1+cu130", vision="0.29.1+cpu", pin="2.14.1")
    result = judge("packages.companions", tmp_path)
    assert result.status is Status.WARN
    assert "torchvision 0.29.1+cpu: different build flavour from torch 2.14.1+cu130" in result.summary
    assert "same index" in result.fix.text


def test_companion_without_torch_fails(tmp_path):
    make_dist(tmp_path, "torchvision", "0.20.1", ("torch==2.5.1",))
    result = judge("packages.companions", tmp_path)
    assert result.status is Status.FAIL and "without torch" in result.summary


def test_numpy_missing_warns(tmp_path):
    make_dist(tmp_path, "torch", "2.5.1+cpu")
    result = judge("packages.numpy", tmp_path)
    assert result.status is Status.WARN
    assert "Failed to initialize NumPy" in result.fix.text and result.fix.command == "pip install numpy"


def test_numpy2_with_torch_built_for_numpy1_warns(tmp_path):
    make_dist(tmp_path, "torch", "2.2.2+cu121")
    make_dist(tmp_path, "numpy", "2.0.1")
    result = judge("packages.numpy", tmp_path)
    assert result.status is Status.WARN and result.fix.command == 'pip install "numpy<2"'


def test_numpy2_with_recent_torch_is_ok(tmp_path):
    cuda_stack(tmp_path)
    assert judge("packages.numpy", tmp_path).status is Status.OK


def test_deprecated_pynvml_warns_and_names_who_needs_it(tmp_path):
    make_dist(tmp_path, "pynvml", "11.5.3")
    make_dist(tmp_path, "nvidia-ml-py", "12.560.30")
    make_dist(tmp_path, "gpustat", "1.0.0", ("pynvml>=11.5.0",))
    result = judge("packages.pynvml_deprecated", tmp_path)
    assert result.status is Status.WARN
    assert "shadows NVIDIA's nvidia-ml-py" in result.summary
    assert result.fix.command == "pip uninstall -y pynvml && pip install --force-reinstall nvidia-ml-py"
    assert result.details["required_by"] == ["gpustat"]


def test_pynvml_shim_also_warns(tmp_path):
    make_dist(tmp_path, "pynvml", "12.0.0", ("nvidia-ml-py>=12.0.0",))
    result = judge("packages.pynvml_deprecated", tmp_path)
    assert result.status is Status.WARN and "deprecated shim" in result.summary


def test_missing_dependency_of_the_torch_stack_fails(tmp_path):
    make_dist(tmp_path, "torch", "2.5.1+cu124", ("filelock", "sympy==1.13.1"))
    make_dist(tmp_path, "filelock", "3.16.1")
    result = judge("packages.dependencies", tmp_path)
    assert result.status is Status.FAIL
    assert result.summary == "1 broken requirement: torch requires sympy==1.13.1, which is not installed"
    assert result.fix.command == "pip check"


def test_version_conflict_elsewhere_warns(tmp_path):
    make_dist(tmp_path, "jupyterlab", "4.2.0", ("tornado>=6.2",))
    make_dist(tmp_path, "tornado", "6.1")
    result = judge("packages.dependencies", tmp_path)
    assert result.status is Status.WARN
    assert "jupyterlab requires tornado>=6.2, but tornado 6.1 is installed" in result.summary
    assert result.details["problems"] == [
        {"kind": "conflict", "requirer": "jupyterlab", "requirement": "tornado>=6.2", "installed": "tornado 6.1"}
    ]


def test_unparseable_requirement_is_reported_not_raised(tmp_path):
    make_dist(tmp_path, "oddball", "1.0", ("this is not a requirement!!",))
    result = judge("packages.dependencies", tmp_path)
    assert result.status is Status.WARN and "unparseable requirement" in result.summary
    assert "broken metadata" in result.fix.text


def test_markers_and_extras_that_do_not_apply_are_ignored(tmp_path):
    make_dist(tmp_path, "tool", "1.0", ("colorama; sys_platform == 'win32'", "pytest; extra == 'test'",
                                         "Typing_Extensions>=4.0"))  # fmt: skip
    make_dist(tmp_path, "typing-extensions", "4.12.2")
    assert judge("packages.dependencies", tmp_path).status is Status.OK


def test_requirements_pulled_in_through_an_extra_are_checked(tmp_path):
    """torch 2.14 requires cuda-toolkit[cublas]; cuda-toolkit requires nvidia-cublas only under that extra."""
    make_dist(tmp_path, "torch", "2.14.1", ("cuda-toolkit[cublas]==13.0.3",))
    make_dist(tmp_path, "cuda-toolkit", "13.0.3", ("nvidia-cublas==13.1.1.3.*; extra == 'cublas'",
                                                   "nvidia-cufft==12.0.0.61.*; extra == 'cufft'"))  # fmt: skip
    problems = dependency_problems(probe_packages({}, [str(tmp_path)]).dists)
    assert [str(p) for p in problems] == [
        "cuda-toolkit[cublas] requires nvidia-cublas==13.1.1.3.*, which is not installed"
    ]
    make_dist(tmp_path, "nvidia-cublas", "13.1.1.3")
    assert judge("packages.dependencies", tmp_path).status is Status.OK


def test_shadowed_copies_warn(tmp_path):
    make_dist(tmp_path / "venv", "numpy", "2.1.3")
    make_dist(tmp_path / "user", "numpy", "1.26.4")
    paths = [str(tmp_path / "venv"), str(tmp_path / "user")]
    probes = {"packages": ProbeSpec("packages", lambda env: probe_packages(env, paths), 5.0, "installed packages")}
    result = run_check(CHECKS["packages.dependencies"], Context(ProbeRunner({}, 5.0, probes=probes), {}))
    assert result.status is Status.WARN and "numpy 1.26.4 at" in result.summary and "~/.local" in result.fix.text
    json.dumps(result.to_json())  # the details are plain JSON
