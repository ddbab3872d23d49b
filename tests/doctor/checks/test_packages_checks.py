"""Package checks, fed by the real packages probe reading fake ``*.dist-info`` trees (nothing is installed)."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
from packaging.version import Version

from envcheck.core.model import CheckResult, Status
from envcheck.doctor.areas import CHECKS
from envcheck.doctor.checks import packages as _packages_checks  # noqa: F401 - registers the packages checks
from envcheck.doctor.checks.packages import dependency_problems, expected_companion
from envcheck.doctor.runner import ProbeContext as Context
from envcheck.doctor.runner import ProbeRunner, run_check
from envcheck.probes.nvml.inventory import probe_nvml
from envcheck.probes.packages import probe_packages
from envcheck.probes.registry import ProbeSpec
from tests import fakenvml
from tests.probes.test_packages_probe import make_dist


def judge(check_id: str, site: Path | None, env: dict[str, str] | None = None) -> CheckResult:
    """Run one check on the distributions in ``site`` (None: this venv), with NVML as the test's fake says."""
    paths = None if site is None else [str(site)]
    probes = {
        "packages": ProbeSpec("packages", lambda env: probe_packages(env, paths), 5.0, "installed packages"),
        "nvml": ProbeSpec("nvml", probe_nvml, 5.0, "NVML"),
    }
    env = env if env is not None else dict(os.environ) if site is None else {}
    return run_check(CHECKS[check_id], Context(ProbeRunner(env, 10.0, probes=probes), env))


@pytest.fixture
def foreign_pynvml(monkeypatch):
    """``foreign_pynvml(path, lacks=...)``: the pynvml module this process imports becomes a copy of
    nvidia-ml-py's at ``path`` without the names in ``lacks``, as an old or vendored copy would be."""
    import pynvml

    def use(path: Path, lacks: set[str]) -> types.ModuleType:
        copy = types.ModuleType("pynvml")
        copy.__dict__.update({k: v for k, v in vars(pynvml).items() if k not in lacks and not k.startswith("__")})
        copy.__file__ = str(path)
        monkeypatch.setitem(sys.modules, "pynvml", copy)
        fakenvml.fresh_session(monkeypatch)
        return copy

    return use


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


CPU_WHEEL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize("scenario", ["no_library", "no_gpus"])
def test_torch_missing_without_nvidia_gpus_installs_the_cpu_build(tmp_path, nvml, scenario):
    make_dist(tmp_path, "numpy", "2.1.3")
    nvml(scenario)
    result = judge("packages.torch", tmp_path)
    assert result.status is Status.WARN and result.summary == "torch is not installed in this Python"
    assert result.fix.command == CPU_WHEEL
    assert "CPU build" in result.fix.text


@pytest.mark.parametrize(
    "driver_cuda, index, words",
    [
        # The newest of torch 2.14's CUDA 12.6 / 13.0 / 13.2 builds that is not newer than the driver's CUDA.
        (12060, "cu126", "install the CUDA 12.6 build (cu126)"),
        (12080, "cu126", "install the CUDA 12.6 build (cu126)"),
        (13000, "cu130", "install the CUDA 13.0 build (cu130)"),
        (13010, "cu130", "install the CUDA 13.0 build (cu130)"),
        (13020, "cu132", "install the CUDA 13.2 build (cu132)"),
        (13050, "cu132", "install the CUDA 13.2 build (cu132)"),
        # r550 (CUDA 12.4) runs cu126 through minor-version compatibility: no driver upgrade is advised.
        (12040, "cu126", "install the CUDA 12.6 build (cu126)"),
        # Older than every build's CUDA major: upgrade the driver, to what the suggested build needs.
        (11040, "cu126", "upgrade the NVIDIA driver to 525.60.13 or newer, then install the cu126 build"),
    ],
)
def test_torch_missing_on_a_gpu_machine_installs_the_cuda_build_the_driver_supports(
    tmp_path, nvml, driver_cuda, index, words
):
    nvml("healthy_multi_gpu").cuda_version = driver_cuda
    result = judge("packages.torch", tmp_path)
    assert result.status is Status.WARN
    assert result.fix.command == f"pip install torch --index-url https://download.pytorch.org/whl/{index}"
    assert words in result.fix.text and "4 NVIDIA GPU(s)" in result.fix.text


@pytest.mark.parametrize(
    ("driver_cuda", "index", "words"),
    [
        # Blackwell (sm_120) on r570 (CUDA 12.8): cu126 has no kernels for it; cu130 needs r580.
        (12080, "cu130", "upgrade the NVIDIA driver to 580 or newer, then install the cu130 build"),
        # on r580 the CUDA 13.0 build carries sm_120
        (13000, "cu130", "install the CUDA 13.0 build (cu130)"),
    ],
)
def test_the_wheel_follows_every_gpus_compute_capability_as_well_as_the_driver(
    tmp_path, nvml, driver_cuda, index, words
):
    nvml("mixed_generations").cuda_version = driver_cuda  # an H100 beside an RTX PRO 6000 Blackwell
    result = judge("packages.torch", tmp_path)
    assert result.fix.command == f"pip install torch --index-url https://download.pytorch.org/whl/{index}"
    assert words in result.fix.text, result.fix.text


def test_the_variant_table_says_where_each_arch_list_comes_from():
    from envcheck.doctor.checks.packages import TORCH_VARIANTS, choose_variant

    assert [v.cuda for v in TORCH_VARIANTS] == [(12, 6), (13, 0), (13, 2)] and all(v.source for v in TORCH_VARIANTS)
    assert choose_variant((12, 8), [(9, 0)]).variant == (12, 6)  # Hopper on r570: cu126 has sm_90
    assert choose_variant((12, 8), [(10, 0)]).needs_driver_for == (13, 0)  # B200 on r570
    assert choose_variant((13, 0), [(3, 5)]).no_kernels == ((3, 5),)  # Kepler: no current build
    assert choose_variant((13, 0), [(6, 1)]).variant == (12, 6)  # Pascal: only cu126 still has sm_60


def test_torch_missing_where_the_driver_does_not_start_says_to_fix_it_first(tmp_path, nvml):
    nvml("driver_not_loaded")
    result = judge("packages.torch", tmp_path)
    assert result.status is Status.WARN and result.fix.command is None
    assert "NVML did not start (driver not loaded)" in result.fix.text and "driver.nvml" in result.fix.text


def test_torch_missing_in_a_gpu_container_without_the_driver_is_not_sent_to_the_cpu_build(tmp_path, nvml):
    nvml("no_library")
    result = judge("packages.torch", tmp_path, env={"NVIDIA_VISIBLE_DEVICES": "all"})
    assert result.status is Status.WARN and result.fix.command != CPU_WHEEL
    assert "fix that first" in result.fix.text


def test_torch_without_metadata_is_left_to_torch_import(tmp_path, nvml):
    nvml("no_library")
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("")
    result = judge("packages.torch", tmp_path)
    assert result.status is Status.OK and "without installed package metadata" in result.summary


def test_torch_missing_is_one_warning_in_the_whole_report(tmp_path, nvml, monkeypatch):
    """packages.torch and torch.import both see a missing torch; only one of them warns, with one command."""
    from click.testing import CliRunner

    from envcheck.cli import main
    from envcheck.probes.registry import PROBES
    from envcheck.probes.torch import TorchInfo

    PROBES.load()
    nvml("no_library")
    make_dist(tmp_path, "numpy", "2.1.3")
    packages = ProbeSpec("packages", lambda env: probe_packages(env, [str(tmp_path)]), 5.0, "packages")
    monkeypatch.setitem(PROBES, "packages", packages)
    monkeypatch.setitem(
        PROBES, "torch", ProbeSpec("torch", lambda env: TorchInfo(status="not_installed"), 5.0, "torch")
    )
    result = CliRunner().invoke(main, ["doctor", "packages", "torch", "--json"], env={"NVIDIA_VISIBLE_DEVICES": ""})
    doc = json.loads(result.stdout)
    about_torch = [
        c for c in doc["checks"] if c["status"] in ("warn", "fail") and "torch is not installed" in c["summary"]
    ]
    assert [c["id"] for c in about_torch] == ["packages.torch"]
    assert about_torch[0]["fix"]["command"] == CPU_WHEEL
    assert result.exit_code == 0


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


@pytest.mark.parametrize("torch, status", [("2.2.2", Status.WARN), ("2.3.0", Status.OK)])
def test_numpy2_needs_torch_2_3_or_newer(tmp_path, torch, status):
    # torch 2.3 is the first release built against NumPy 2 (pytorch/pytorch#107302).
    make_dist(tmp_path, "torch", torch)
    make_dist(tmp_path, "numpy", "2.0.0")
    assert judge("packages.numpy", tmp_path).status is status


def test_numpy2_with_recent_torch_is_ok(tmp_path):
    cuda_stack(tmp_path)
    assert judge("packages.numpy", tmp_path).status is Status.OK


def nvidia_ml_py(site: Path, version: str = "12.560.30") -> None:
    make_dist(site, "nvidia-ml-py", version, files={"pynvml.py": ""})


def test_deprecated_pynvml_warns_and_names_who_needs_it(tmp_path, nvml):
    nvml("no_library")
    nvidia_ml_py(tmp_path)
    make_dist(tmp_path, "pynvml", "11.5.3", files={"pynvml/__init__.py": "from .nvml import *\n"})
    make_dist(tmp_path, "gpustat", "1.0.0", ("pynvml>=11.5.0",))
    result = judge("packages.pynvml_deprecated", tmp_path)
    assert result.status is Status.WARN
    assert "shadows NVIDIA's nvidia-ml-py" in result.summary
    assert result.fix.command == "pip uninstall -y pynvml && pip install --force-reinstall nvidia-ml-py"
    assert result.details["required_by"] == ["gpustat"]
    assert result.details["from"] == "pynvml 11.5.3"


def test_pynvml_shim_also_warns(tmp_path, nvml):
    nvml("no_library")
    nvidia_ml_py(tmp_path)
    make_dist(tmp_path, "pynvml", "12.0.0", ("nvidia-ml-py>=12.0.0",))
    result = judge("packages.pynvml_deprecated", tmp_path)
    assert result.status is Status.WARN and "deprecated shim" in result.summary
    assert result.details["from"] == "nvidia-ml-py 12.560.30"


def test_nvidia_ml_py_alone_is_ok(tmp_path, nvml):
    nvml("no_library")
    nvidia_ml_py(tmp_path)
    result = judge("packages.pynvml_deprecated", tmp_path)
    assert result.status is Status.OK
    assert result.summary == "pynvml module from nvidia-ml-py 12.560.30; the deprecated pynvml is not installed"


def test_no_pynvml_module_says_to_install_nvidia_ml_py(tmp_path, nvml):
    nvml("no_library")
    result = judge("packages.pynvml_deprecated", tmp_path)
    assert result.status is Status.WARN and result.fix.command == "pip install nvidia-ml-py"


def test_nvidia_ml_py3_owns_the_module_and_is_replaced(tmp_path, nvml, foreign_pynvml):
    """nvidia-ml-py3 (2017) installs pynvml.py too, without the functions of newer drivers."""
    make_dist(tmp_path, "nvidia-ml-py3", "7.352.0", files={"pynvml.py": ""})
    foreign_pynvml(tmp_path / "pynvml.py", lacks={"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetMigMode"})
    nvml("healthy_multi_gpu")
    result = judge("packages.pynvml_deprecated", tmp_path)
    assert result.status is Status.WARN
    assert result.summary == (
        f"the pynvml module at {tmp_path / 'pynvml.py'} (from nvidia-ml-py3 7.352.0) lacks nvmlDeviceGetMigMode; "
        "lacks nvmlDeviceGetCurrentClocksEventReasons (envcheck read the older name instead): those readings are "
        "not available"
    )
    assert result.fix.command == "pip uninstall -y nvidia-ml-py3 && pip install --force-reinstall nvidia-ml-py"


def test_an_old_nvidia_ml_py_is_upgraded(tmp_path, nvml, foreign_pynvml):
    nvidia_ml_py(tmp_path, "11.450.51")
    foreign_pynvml(tmp_path / "pynvml.py", lacks={"nvmlDeviceGetRemappedRows"})
    nvml("healthy_multi_gpu")
    result = judge("packages.pynvml_deprecated", tmp_path)
    assert result.status is Status.WARN and "lacks nvmlDeviceGetRemappedRows" in result.summary
    assert result.fix.command == "pip install -U nvidia-ml-py"


def test_a_vendored_copy_is_named_with_its_path(tmp_path, nvml, foreign_pynvml):
    (tmp_path / "pynvml.py").write_text("")
    foreign_pynvml(tmp_path / "pynvml.py", lacks={"nvmlDeviceGetMigMode"})
    nvml("healthy_multi_gpu")
    result = judge("packages.pynvml_deprecated", tmp_path)
    assert result.status is Status.WARN
    assert "installed by no distribution: a vendored copy, or a directory on PYTHONPATH" in result.summary
    assert result.fix.text.startswith(f"Move {tmp_path / 'pynvml.py'} out of the way")


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


def test_without_torch_numpy_s_absence_is_not_a_warning(tmp_path, nvml):
    """numpy matters here for what torch does with it: in a Python without torch its absence judges nothing."""
    nvml("no_library")
    result = judge("packages.numpy", tmp_path)
    assert result.status is Status.SKIP
    assert result.summary == "numpy is not installed (no torch in this Python to need it: see packages.torch)"


def test_a_python_without_torch_is_the_headline_not_ready_for_cpu_work(tmp_path, nvml):
    """A deep-learning readiness tool run in a Python without torch (the system one, not the job's venv) must
    say that first, name the Python, and say how to run it where the jobs run."""
    from envcheck.doctor.report import summarize

    nvml("no_library")
    torch = judge("packages.torch", tmp_path, env={"PATH": "/usr/bin"})
    summary = summarize([torch], gpus_seen=False)
    assert summary.verdict == "warnings"
    assert summary.text.startswith(f"torch is not installed in this Python ({torch.details['python']}): ")
    assert "`/path/to/that/python -m envcheck doctor`" in summary.text
    assert "ready for CPU work" not in summary.text
