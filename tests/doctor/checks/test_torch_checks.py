"""torch.* checks: verdicts and fixes from torch facts, NVML (fake library at the C boundary) and nvcc.

Unit tests build :class:`TorchInfo` directly (the torch probe's plain data) and combine it with a fake
NVML scenario; end-to-end tests run the real child process against broken fake torches through the
runner and the CLI.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

import envcheck.doctor.checks.torch as torch_checks
from envcheck.core.exit import ExitCode, exit_code_for
from envcheck.core.model import CheckResult, Status
from envcheck.doctor.app import DoctorRequest, run_doctor
from envcheck.doctor.areas import CHECKS
from envcheck.doctor.runner import ProbeContext as Context
from envcheck.doctor.runner import ProbeRunner, run_check
from envcheck.probes.registry import PROBES, ProbeSpec
from envcheck.probes.toolkit import Nvcc, ToolkitInfo
from envcheck.probes.torch import TorchDevice, TorchInfo, probe_torch
from tests import fakenvml
from tests.cuda_torch import CUDA_TORCH_PYTHON, needs_cuda_torch
from tests.probes.test_torch_probe import FAKE_TORCH

TORCH_CHECKS = [spec for check_id, spec in CHECKS.items() if check_id.startswith("torch.")]

#: What the CUDA 13.0 build that scripts/test.sh installs reports without a GPU (see the probe tests).
CU130_ARCH = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
#: PyTorch's cu126 wheels: Maxwell to Hopper, no Blackwell.
CU126_ARCH = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


def cuda_torch(cuda: str = "12.4", *, gpus: int = 0, arch: list[str] | None = None, **changes: Any) -> TorchInfo:
    """A CUDA build of torch that imported fine and sees ``gpus`` healthy H100s."""
    devices = [TorchDevice(i, "NVIDIA H100 80GB HBM3", (9, 0), matmul_max_rel_error=2e-7) for i in range(gpus)]
    info = TorchInfo(
        status="ok",
        stage="done",
        version=f"2.6.0+cu{cuda.replace('.', '')}",
        cuda=cuda,
        cudnn_version=90100,
        nccl_version=(2, 21, 5),
        arch_list=CU126_ARCH if arch is None else arch,
        cuda_available=gpus > 0,
        device_count=gpus,
        devices=devices,
        import_s=1.2,
        executable="/venv/bin/python",
    )
    return dataclasses.replace(info, **changes)


CPU_TORCH = TorchInfo(status="ok", stage="done", version="2.13.0+cpu", cuda_available=False, device_count=0)


def spec(name: str, value: Any) -> ProbeSpec:
    return ProbeSpec(name, lambda env: value, 5.0, name)


def judge(
    check_id: str,
    torch: TorchInfo | ProbeSpec,
    *,
    env: dict[str, str] | None = None,
    toolkit: ToolkitInfo | None = None,
) -> CheckResult:
    """Run one check over ``torch`` and whatever fake NVML the test installed."""
    probes = {
        "torch": torch if isinstance(torch, ProbeSpec) else spec("torch", torch),
        "nvml": PROBES["nvml"],
        "toolkit": spec("toolkit", toolkit or ToolkitInfo()),
    }
    env = env or {}
    return run_check(CHECKS[check_id], Context(ProbeRunner(env, 10.0, probes=probes), env))


@pytest.fixture
def no_nvml(nvml: Callable[[str], Any]) -> None:
    nvml("no_library")


# -- torch.import ------------------------------------------------------------------------------------


def test_import_ok_names_version_and_build(no_nvml: None) -> None:
    result = judge("torch.import", cuda_torch("12.4"))
    assert result.status is Status.OK
    assert result.summary == "torch 2.6.0+cu124 (CUDA 12.4 build) imports in 1.2 s"


def test_not_installed_skips_and_leaves_the_one_warning_to_packages_torch(no_nvml: None) -> None:
    """packages.torch warns with the wheel that fits the machine; torch.import saying it again, with a
    different command, would be two warnings for one cause."""
    result = judge("torch.import", TorchInfo(status="not_installed", executable="/venv/bin/python"))
    assert result.status is Status.SKIP
    assert result.summary == "torch is not installed for /venv/bin/python (see packages.torch)"
    assert result.fix is None


def test_import_error_quotes_the_error_and_says_how_to_fix_libraries(no_nvml: None) -> None:
    error = "OSError: libcudnn.so.9: cannot open shared object file: No such file or directory"
    result = judge("torch.import", TorchInfo(status="import_error", error=error, stage="import"))
    assert result.status is Status.FAIL
    assert result.summary == f"import torch failed: {error}"
    assert result.fix is not None and "LD_LIBRARY_PATH" in result.fix.text
    assert result.fix.command == "python -m pip install --force-reinstall torch"


def test_undefined_symbol_points_at_ld_library_path(no_nvml: None) -> None:
    error = "ImportError: libtorch_cuda.so: undefined symbol: ncclCommRegister"
    result = judge("torch.import", TorchInfo(status="import_error", error=error))
    assert result.fix is not None and result.fix.command == 'env -u LD_LIBRARY_PATH python -c "import torch"'


def test_crash_during_cuda_init_points_at_the_driver(no_nvml: None) -> None:
    info = TorchInfo(
        status="crashed",
        stage="cuda_init",
        error="the interpreter was killed by SIGSEGV (Segmentation fault) during CUDA initialisation",
    )
    result = judge("torch.import", info)
    assert result.status is Status.FAIL and "SIGSEGV" in result.summary
    assert result.fix is not None and "dmesg" in (result.fix.command or "")


def test_hang_names_what_hung(no_nvml: None) -> None:
    info = TorchInfo(status="timeout", stage="import", error="import torch did not finish within 40 s")
    result = judge("torch.import", info)
    assert result.summary == "torch hung: import torch did not finish within 40 s"
    assert result.fix is not None and result.fix.command == 'python -X importtime -c "import torch"'


def test_unfinished_at_the_deadline_warns_and_asks_for_more_time(no_nvml: None) -> None:
    """The doctor's deadline came while torch was still importing: not judged, not called a hang."""
    info = TorchInfo(
        status="unfinished",
        stage="import",
        timeout_s=2.5,
        error="import torch was still running when the doctor's deadline came, 2.5 s after the child started",
        where="/venv/lib/python3.11/site-packages/torch/_dynamo/__init__.py:3 in <module>",
    )
    result = judge("torch.import", info)
    assert result.status is Status.WARN
    assert result.summary == (
        "torch not judged: import torch was still running when the doctor's deadline came, 2.5 s after the child "
        "started (at /venv/lib/python3.11/site-packages/torch/_dynamo/__init__.py:3 in <module>)"
    )
    assert result.fix is not None and result.fix.command == "envcheck doctor --deadline 60"
    assert "not a hang" in result.fix.text and "ENVCHECK_TORCH_TIMEOUT" in result.fix.text
    # A deadline that was already long gets doubled rather than shortened.
    longer = judge("torch.import", dataclasses.replace(info, timeout_s=99.5))
    assert longer.fix is not None and longer.fix.command == "envcheck doctor --deadline 199"


def test_runner_deadline_before_the_child_timeout_is_a_torch_verdict(no_nvml: None) -> None:
    def slow(env: Any) -> TorchInfo:
        time.sleep(5)
        return CPU_TORCH

    result = judge("torch.import", ProbeSpec("torch", slow, 0.3, "the torch child process"))
    assert result.status is Status.FAIL
    assert "did not finish importing and initialising CUDA within the doctor's" in result.summary
    assert result.fix is not None and "--deadline" in result.fix.text


@pytest.mark.parametrize(
    "info",
    [
        TorchInfo(status="import_error", error="OSError: boom"),
        TorchInfo(status="crashed", error="killed by SIGABRT"),
        TorchInfo(status="timeout", error="import torch did not finish within 3 s"),
        TorchInfo(status="unfinished", error="import torch was still running when the doctor's deadline came"),
        TorchInfo(status="not_installed"),
    ],
    ids=lambda i: i.status,
)
def test_a_broken_torch_fails_once_and_the_other_checks_skip(nvml: Callable[[str], Any], info: TorchInfo) -> None:
    nvml("healthy_multi_gpu")
    for check_id in ["torch.cuda_build", "torch.driver_compat", "torch.devices", "torch.arch", "torch.libs"]:
        assert judge(check_id, info).status is Status.SKIP, check_id
    assert judge("torch.matmul", info).status is Status.SKIP


# -- torch.cuda_build --------------------------------------------------------------------------------


def test_cpu_torch_on_a_gpu_machine_fails_naming_the_variant(nvml: Callable[[str], Any]) -> None:
    lib = nvml("healthy_multi_gpu")
    lib.cuda_version = 13010  # a driver that supports CUDA 13.1: cu130 is the newest build it runs
    result = judge("torch.cuda_build", CPU_TORCH)
    assert result.status is Status.FAIL
    assert result.summary == "torch 2.13.0+cpu is a CPU-only build, but this machine has 4 NVIDIA GPU(s)"
    assert result.fix is not None and "cu130" in result.fix.text and "PIP_INDEX_URL" in result.fix.text
    assert result.fix.command == "pip install torch --index-url https://download.pytorch.org/whl/cu130"


def test_cpu_torch_on_r550_is_told_the_cuda_12_6_build_without_a_driver_upgrade(
    nvml: Callable[[str], Any],
) -> None:
    """Driver 550.54.15 supports CUDA 12.4 and current torch starts at CUDA 12.6: the cu126 build runs on it
    through minor-version compatibility (any driver >= 525.60.13), so no driver upgrade is advised."""
    nvml("healthy_multi_gpu")
    result = judge("torch.cuda_build", CPU_TORCH)
    assert result.status is Status.FAIL
    assert result.fix is not None and result.fix.text.startswith("Install a CUDA build of torch (the cu126 variant")
    assert "Upgrade" not in result.fix.text and "upgrade" not in result.fix.text
    assert result.fix.command == "pip install torch --index-url https://download.pytorch.org/whl/cu126"


def test_cpu_torch_with_blackwell_on_r570_is_told_the_driver_the_right_build_needs(
    nvml: Callable[[str], Any],
) -> None:
    """An RTX PRO 6000 Blackwell (sm_120) on r570: cu126 has no kernels for it ("no kernel image"), so the
    advice is the r580 driver and the cu130 build, not cu126."""
    nvml("mixed_generations")
    result = judge("torch.cuda_build", CPU_TORCH)
    assert result.fix is not None
    assert result.fix.text.startswith("Driver 570.124.06 supports CUDA 12.8, and the current torch builds it runs")
    assert "upgrade the NVIDIA driver to 580 or newer, then install the cu130 build" in result.fix.text
    assert result.fix.command == "pip install torch --index-url https://download.pytorch.org/whl/cu130"


def test_rocm_torch_on_nvidia_fails(nvml: Callable[[str], Any]) -> None:
    nvml("geforce_no_ecc")
    rocm = dataclasses.replace(CPU_TORCH, version="2.6.0+rocm6.2", hip="6.2.41133")
    assert judge("torch.cuda_build", rocm).status is Status.FAIL


@pytest.mark.parametrize("scenario", ["no_gpus", "no_library"])
def test_cpu_torch_without_gpus_is_fine(nvml: Callable[[str], Any], scenario: str) -> None:
    nvml(scenario)
    assert judge("torch.cuda_build", CPU_TORCH).status is Status.OK


def test_cuda_torch_on_gpus_is_ok(nvml: Callable[[str], Any]) -> None:
    nvml("healthy_multi_gpu")
    assert judge("torch.cuda_build", cuda_torch("12.4", gpus=4)).status is Status.OK


# -- torch.driver_compat -----------------------------------------------------------------------------


def test_driver_too_old_for_torchs_cuda_major(nvml: Callable[[str], Any]) -> None:
    nvml("healthy_multi_gpu")  # driver 550.54.15 supports CUDA 12.4
    info = cuda_torch("13.0", cuda_init_error="RuntimeError: The NVIDIA driver on your system is too old")
    result = judge("torch.driver_compat", info)
    assert result.status is Status.FAIL
    assert "torch is built for CUDA 13.0, but driver 550.54.15 supports CUDA only up to 12.4" in result.summary
    assert "too old" in result.summary  # torch's own words are quoted
    assert result.fix is not None
    # Or, without the upgrade, the cu126 build, which this CUDA 12.4 driver runs (minor-version compatibility).
    assert ">= 580.65.06" in result.fix.text
    assert "or install the torch cu126 variant, which driver 550.54.15 runs" in result.fix.text


def test_same_major_older_minor_warns(nvml: Callable[[str], Any]) -> None:
    nvml("healthy_multi_gpu")
    result = judge("torch.driver_compat", cuda_torch("12.6"))
    assert result.status is Status.WARN
    assert "minor-version compatibility" in result.summary
    assert result.fix is not None and ">= 560.28.03" in result.fix.text and "variant" not in result.fix.text


@pytest.mark.parametrize(("scenario", "cuda"), [("healthy_multi_gpu", "12.4"), ("geforce_no_ecc", "12.1")])
def test_driver_new_enough(nvml: Callable[[str], Any], scenario: str, cuda: str) -> None:
    nvml(scenario)
    assert judge("torch.driver_compat", cuda_torch(cuda)).status is Status.OK


def test_cuda11_driver_with_cuda12_torch(nvml: Callable[[str], Any]) -> None:
    nvml("old_driver")  # 470.82.01, CUDA 11.4
    result = judge("torch.driver_compat", cuda_torch("12.4"))
    assert result.status is Status.FAIL
    assert result.fix is not None and ">= 550.54.14" in result.fix.text and ">= 525.60.13" in result.fix.text
    # No torch variant runs on CUDA 11.4 (the oldest is cu118), so none is offered.
    assert "variant" not in result.fix.text
    assert judge("torch.driver_compat", cuda_torch("11.8")).status is Status.WARN


@pytest.mark.parametrize(
    ("driver", "status"),
    [
        # CUDA 11.0.2 GA's driver (CUDA Toolkit Release Notes, table 3): CUDA 11.0, and below 450.80.02, the
        # minimum the CUDA Compatibility guide gives for 11.x minor-version compatibility on Linux.
        ("450.51.06", Status.FAIL),
        # 450.80.02 itself also reports CUDA 11.0, but is the minimum: torch cu118 runs, with a warning.
        ("450.80.02", Status.WARN),
    ],
)
def test_driver_below_the_minor_version_compatibility_minimum(
    monkeypatch: pytest.MonkeyPatch, driver: str, status: Status
) -> None:
    a100 = fakenvml.h100(0, name="NVIDIA A100-SXM4-40GB", cc=(8, 0))
    fakenvml.install(fakenvml.FakeNvmlLib([a100], driver_version=driver, cuda_version=11000), monkeypatch)
    result = judge("torch.driver_compat", cuda_torch("11.8"))
    assert result.status is status
    assert result.fix is not None and ">= 520.61.05" in result.fix.text  # CUDA 11.8 GA's driver
    if status is Status.FAIL:
        assert result.summary.startswith(
            "driver 450.51.06 is older than 450.80.02, the minimum for CUDA 11.x minor-version compatibility; "
            "torch needs CUDA 11.8"
        )


def test_driver_compat_skips_for_cpu_torch_and_without_nvml(nvml: Callable[[str], Any]) -> None:
    nvml("no_library")
    assert judge("torch.driver_compat", cuda_torch("12.4")).status is Status.SKIP
    assert judge("torch.driver_compat", CPU_TORCH).status is Status.SKIP


# -- torch.devices and CUDA_VISIBLE_DEVICES ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "torch_sees", "status", "words"),
    [
        (None, 4, Status.OK, "torch sees 4 GPU(s), as NVML does"),
        ("0,1", 2, Status.OK, "(CUDA_VISIBLE_DEVICES=0,1)"),
        ("GPU-00000002", 1, Status.OK, "torch sees 1 GPU(s)"),
        ("3, 1", 2, Status.OK, "torch sees 2 GPU(s)"),
        ("0,7", 1, Status.WARN, "entry '7' is out of range: this machine has 4 GPU(s), 0 to 3"),
        ("1,foo,2", 1, Status.WARN, "CUDA ignores it and all after it (foo, 2)"),
        ("0,0", 0, Status.FAIL, "names GPU 0 twice, and CUDA then shows no GPU at all"),
        ("7", 0, Status.FAIL, "entry '7' is out of range"),
        ("GPU-0000000", 0, Status.FAIL, "is ambiguous: it starts the UUIDs of GPUs 0, 1, 2, 3"),
        ("GPU-deadbeef", 0, Status.FAIL, "matches no GPU's UUID"),
        ("", 0, Status.WARN, "CUDA_VISIBLE_DEVICES is set but empty, which hides every GPU"),
        ("-1", 0, Status.WARN, "CUDA_VISIBLE_DEVICES=-1 hides every GPU"),
        ("0,1", 1, Status.FAIL, "torch sees 1 GPU(s) but 2 should be visible (after CUDA_VISIBLE_DEVICES=0,1)"),
    ],
)
def test_visible_devices(
    nvml: Callable[[str], Any], value: str | None, torch_sees: int, status: Status, words: str
) -> None:
    nvml("healthy_multi_gpu")
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    result = judge("torch.devices", cuda_torch("12.4", gpus=torch_sees), env=env)
    assert result.status is status, result.summary
    assert words in result.summary
    if status is not Status.OK:
        assert result.fix is not None
        if "CUDA_VISIBLE_DEVICES" in result.summary:
            assert result.fix.command == "unset CUDA_VISIBLE_DEVICES"


def test_torch_sees_no_gpu_quotes_cuda(nvml: Callable[[str], Any]) -> None:
    nvml("healthy_multi_gpu")
    error = "RuntimeError: Found no NVIDIA driver on your system."
    result = judge("torch.devices", cuda_torch("12.4", cuda_init_error=error))
    assert result.status is Status.FAIL
    assert result.summary == f"torch sees 0 GPU(s) but 4 should be visible: {error}"
    assert result.fix is not None and "/dev/nvidia" in (result.fix.command or "")


def test_error_802_routes_to_the_fabric_manager_not_to_container_flags(nvml: Callable[[str], Any]) -> None:
    """CUDA's "system not yet initialized" (802) on an HGX node is the fabric manager's, not a container's
    missing `--gpus all` or an unreadable /dev/nvidia*."""
    nvml("fabric_manager_dead")
    error = "RuntimeError: CUDA error: system not yet initialized (802)"
    result = judge("torch.devices", cuda_torch("12.4", cuda_init_error=error))
    assert result.status is Status.FAIL and result.fix is not None
    assert "nvidia-fabricmanager" in result.fix.text and "--gpus all" not in result.fix.text
    assert "must match the driver's exactly" in result.fix.text
    assert result.fix.command == "systemctl status nvidia-fabricmanager"


def test_lost_gpu_is_not_expected(nvml: Callable[[str], Any]) -> None:
    nvml("gpu_lost")  # GPU 1 of 3 is lost
    result = judge("torch.devices", cuda_torch("12.4", gpus=2))
    assert result.status is Status.OK and "lost GPU(s) 1 not counted" in result.summary


def test_mig_makes_the_count_unknowable_but_zero_still_fails(nvml: Callable[[str], Any]) -> None:
    nvml("mig_enabled")
    assert judge("torch.devices", cuda_torch("12.4", gpus=3)).status is Status.OK
    mig_env = {"CUDA_VISIBLE_DEVICES": "MIG-11111111-2222-3333-4444-555555555555"}
    assert judge("torch.devices", cuda_torch("12.4", gpus=1), env=mig_env).status is Status.OK
    assert judge("torch.devices", cuda_torch("12.4", gpus=0), env=mig_env).status is Status.FAIL


def test_devices_skip_for_cpu_torch_and_without_nvml(nvml: Callable[[str], Any]) -> None:
    nvml("healthy_multi_gpu")
    assert judge("torch.devices", CPU_TORCH).status is Status.SKIP
    nvml("no_library")
    assert judge("torch.devices", cuda_torch("12.4", gpus=4)).status is Status.SKIP


# -- torch.arch --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capability", "arch", "target"),
    [
        ((9, 0), CU126_ARCH, "sm_90"),
        ((8, 9), ["sm_80", "sm_86"], "sm_86"),  # binary compatible within major 8
        ((8, 6), ["sm_80", "sm_86", "sm_90"], "sm_86"),
        ((9, 0), ["sm_80", "sm_90a"], "sm_90a"),
        ((12, 0), CU126_ARCH, None),  # the "no kernel image" case for new cards
        ((12, 0), [*CU126_ARCH, "compute_90"], "compute_90 (PTX, compiled by the driver at first use)"),
        ((10, 3), ["sm_100a"], None),  # arch-specific code runs on exactly 10.0
        ((10, 3), ["sm_100f"], "sm_100f"),  # family-specific code runs across 10.x
        ((10, 0), ["compute_90a"], None),
        ((7, 0), CU130_ARCH, None),  # Volta under a CUDA 13 build
        ((9, 0), ["gfx90a", "sm_90"], "sm_90"),
        ((8, 0), ["sm_8", "sm_80"], "sm_80"),  # not a target (one digit): skipped, not a crash
    ],
)
def test_covering_target(capability: tuple[int, int], arch: list[str], target: str | None) -> None:
    assert torch_checks.covering_target(capability, arch) == target


def test_new_card_without_kernels_fails_with_the_no_kernel_image_explanation(nvml: Callable[[str], Any]) -> None:
    nvml("mixed_generations")  # GPU 0 an H100 (9.0), GPU 1 a Blackwell RTX PRO 6000 (12.0)
    result = judge("torch.arch", cuda_torch("12.6", arch=CU126_ARCH))
    assert result.status is Status.FAIL
    assert "GPU 1 (NVIDIA RTX PRO 6000 Blackwell Workstation Edition, compute capability 12.0)" in result.summary
    assert "no kernel image is available for execution on the device" in result.summary
    assert result.fix is not None and "sm_120" in result.fix.text and "cu130" in result.fix.text


@pytest.mark.parametrize(
    "env",
    [
        {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        {"CUDA_VISIBLE_DEVICES": "GPU-00000000"},  # a UUID names the card whatever the order
    ],
)
def test_arch_judges_only_the_visible_gpus(nvml: Callable[[str], Any], env: dict[str, str]) -> None:
    nvml("mixed_generations")
    result = judge("torch.arch", cuda_torch("12.6", arch=CU126_ARCH), env=env)
    assert result.status is Status.OK and "9.0" in result.summary


def test_mixed_gpus_by_index_in_cudas_default_order_judges_every_gpu(nvml: Callable[[str], Any]) -> None:
    """CUDA numbers GPUs fastest first by default, so "0" may be the Blackwell card: judge both, and say why."""
    nvml("mixed_generations")
    result = judge("torch.arch", cuda_torch("12.6", arch=CU126_ARCH), env={"CUDA_VISIBLE_DEVICES": "0"})
    assert result.status is Status.FAIL
    assert result.fix is not None and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in result.fix.text
    devices = judge("torch.devices", cuda_torch("12.6", gpus=1), env={"CUDA_VISIBLE_DEVICES": "0"})
    assert devices.status is Status.OK and "fastest first" in devices.summary


def test_old_card_under_a_cuda13_build(nvml: Callable[[str], Any]) -> None:
    nvml("old_driver")  # a V100, compute capability 7.0
    result = judge("torch.arch", cuda_torch("13.0", arch=CU130_ARCH))
    assert result.status is Status.FAIL
    assert result.fix is not None and "CUDA 13 dropped" in result.fix.text and "cu126" in result.fix.text


def test_arch_falls_back_to_torchs_own_device_list(nvml: Callable[[str], Any]) -> None:
    nvml("no_library")
    assert judge("torch.arch", cuda_torch("12.6", gpus=2)).status is Status.OK
    assert judge("torch.arch", cuda_torch("12.6")).status is Status.SKIP  # nothing to judge


# -- torch.libs --------------------------------------------------------------------------------------


def test_libs_report_versions(nvml: Callable[[str], Any]) -> None:
    nvml("healthy_multi_gpu")
    runtime = "/venv/lib/python3.11/site-packages/nvidia/cu13/lib/libcudart.so.13"
    info = cuda_torch("13.0", cudnn_version=92400, nccl_version=(2, 30, 7), cuda_runtime_version="13.0",
                      cuda_runtime_library=runtime)  # fmt: skip
    result = judge("torch.libs", info)
    assert (result.status, result.summary) == (Status.OK, "cuDNN 9.24.0, NCCL 2.30.7")
    assert result.details["cuda_runtime_version"] == "13.0" and result.details["cuda_runtime_library"] == runtime
    assert torch_checks.cudnn_text(8907) == "8.9.7"


def test_cudnn_that_does_not_load_fails(nvml: Callable[[str], Any]) -> None:
    nvml("healthy_multi_gpu")
    error = "RuntimeError: cuDNN version incompatibility: PyTorch was compiled against (9, 1, 0)"
    result = judge("torch.libs", cuda_torch(cudnn_version=None, lib_errors={"cudnn": error}))
    assert result.status is Status.FAIL and error in result.summary


def test_missing_nccl_matters_on_multi_gpu_machines(nvml: Callable[[str], Any]) -> None:
    nvml("healthy_multi_gpu")
    assert judge("torch.libs", cuda_torch(nccl_version=None)).status is Status.WARN
    nvml("geforce_no_ecc")
    assert judge("torch.libs", cuda_torch(nccl_version=None)).status is Status.OK


# -- torch.matmul ------------------------------------------------------------------------------------


def test_matmul_ok_on_every_gpu(no_nvml: None) -> None:
    result = judge("torch.matmul", cuda_torch(gpus=4))
    assert result.status is Status.OK
    assert result.summary == "64x64 fp32 matmul on 4 GPU(s) matches the CPU (max relative error 2e-07)"


@pytest.mark.parametrize(
    ("device", "words"),
    [
        (TorchDevice(1, "H100", matmul_max_rel_error=0.5), "GPU 1 (H100): wrong result (max relative error 0.5"),
        (TorchDevice(1, "H100", matmul_max_rel_error=float("nan")), "wrong result (max relative error nan"),
        (
            TorchDevice(1, "H100", matmul_error="RuntimeError: CUDA error: an illegal memory access was encountered"),
            "GPU 1 (H100): RuntimeError: CUDA error: an illegal memory access",
        ),
    ],
)
def test_matmul_wrong_result_or_cuda_error_fails(no_nvml: None, device: TorchDevice, words: str) -> None:
    info = cuda_torch(gpus=2)
    info.devices[1] = device
    result = judge("torch.matmul", info)
    assert result.status is Status.FAIL and words in result.summary
    assert result.fix is not None and "dcgmi diag" in result.fix.text


def test_a_gpu_held_in_exclusive_process_mode_is_busy_not_broken(nvml: Callable[[str], Any]) -> None:
    """Another job holds GPU 1 in EXCLUSIVE_PROCESS mode: the doctor's matmul cannot open it. That used to
    read "computes wrong results ... drain and run dcgmi diag"."""
    nvml("exclusive_process_busy")
    info = cuda_torch(gpus=4)
    busy = "RuntimeError: CUDA error: CUDA-capable device(s) is/are busy or unavailable"
    info.devices[1] = TorchDevice(1, "NVIDIA H100 80GB HBM3", (9, 0), matmul_error=busy)
    result = judge("torch.matmul", info)
    assert result.status is Status.WARN
    assert (
        result.summary
        == "GPU 1 (NVIDIA H100 80GB HBM3): busy, held by another process (EXCLUSIVE_PROCESS compute mode)"
    )
    assert result.fix is not None and "dcgmi" not in result.fix.text and "busy, not broken" in result.fix.text


def test_the_tf32_override_variable_is_named_not_the_gpu(no_nvml: None) -> None:
    """TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 makes cuBLAS compute the fp32 matmul in TF32: ~1e-3 off, a right
    answer for TF32. A warning about the variable, not "wrong results, drain the GPU"."""
    info = cuda_torch(gpus=2)
    info.devices[1] = TorchDevice(1, "H100", (9, 0), matmul_max_rel_error=1.2e-3)
    result = judge("torch.matmul", info, env={"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"})
    assert result.status is Status.WARN
    assert result.summary.endswith("with TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 set")
    assert result.fix is not None and result.fix.command == "unset TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"
    assert judge("torch.matmul", info).status is Status.FAIL  # without the variable it is a wrong result


def test_no_kernel_image_points_at_torch_arch(no_nvml: None) -> None:
    info = cuda_torch(gpus=1)
    info.devices[0] = TorchDevice(
        0, "RTX 5090", matmul_error="RuntimeError: CUDA error: no kernel image is available for execution on the device"
    )
    result = judge("torch.matmul", info)
    assert result.fix is not None and "torch.arch" in result.fix.text


def test_matmul_skips_without_gpus(no_nvml: None) -> None:
    assert judge("torch.matmul", CPU_TORCH).status is Status.SKIP


# -- torch.nvcc --------------------------------------------------------------------------------------


def toolkit(*found: tuple[str, str | None]) -> ToolkitInfo:
    nvccs = [Nvcc(source, f"/opt/{source}/bin/nvcc", version) for source, version in found]
    return ToolkitInfo(nvccs, f"/opt/{found[0][0]}" if found else None, found[0][0] if found else None)


def test_nvcc_major_mismatch_warns_only_for_extensions(no_nvml: None) -> None:
    result = judge("torch.nvcc", cuda_torch("13.0"), toolkit=toolkit(("CUDA_HOME", "12.4"), ("PATH", "13.0")))
    assert result.status is Status.WARN
    assert "nvcc 12.4 at /opt/CUDA_HOME/bin/nvcc (from CUDA_HOME) but torch is built with CUDA 13.0" in result.summary
    assert "PATH has nvcc 13.0" in result.summary
    assert result.fix is not None and result.fix.command == "export CUDA_HOME=/usr/local/cuda-13.0"
    assert "Only matters if you build CUDA extensions" in result.fix.text


def test_nvcc_same_major(no_nvml: None) -> None:
    result = judge("torch.nvcc", cuda_torch("12.4"), toolkit=toolkit(("PATH", "12.6")))
    assert result.status is Status.OK and "minor versions differ" in result.summary


def test_no_nvcc_skips_saying_why_it_rarely_matters(no_nvml: None) -> None:
    result = judge("torch.nvcc", cuda_torch("12.4"), toolkit=toolkit())
    assert result.status is Status.SKIP and "only needed to build CUDA extensions" in result.summary


@pytest.mark.parametrize(
    ("torch", "why"),
    [
        (CPU_TORCH, "torch is a CPU-only build: nothing to compare with"),
        (dataclasses.replace(cuda_torch(), cuda=None, hip="6.2"), "torch is a ROCm 6.2 build: nothing to compare with"),
        (TorchInfo(status="import_error", error="OSError: boom"), "nothing to compare with: torch did not import"),
        (TorchInfo(status="not_installed"), "nothing to compare with: torch is not installed"),
    ],
    ids=["cpu_only", "rocm", "import_error", "not_installed"],
)
def test_nvcc_without_a_cuda_torch_to_match_skips(no_nvml: None, torch: TorchInfo, why: str) -> None:
    """nvcc only builds CUDA extensions for a CUDA build of torch: with none, there is nothing to judge."""
    result = judge("torch.nvcc", torch, toolkit=toolkit(("PATH", "12.8")))
    assert result.status is Status.SKIP
    assert result.summary.startswith(f"nvcc 12.8 at /opt/PATH/bin/nvcc (from PATH); {why}")


def test_broken_nvcc_warns(no_nvml: None) -> None:
    broken = ToolkitInfo([Nvcc("CUDA_HOME", "/opt/cuda/bin/nvcc", error="no nvcc in this toolkit directory")])
    broken.cuda_home, broken.cuda_home_source = "/opt/cuda", "CUDA_HOME"
    result = judge("torch.nvcc", cuda_torch("12.4"), toolkit=broken)
    assert result.status is Status.WARN and result.fix is not None


# -- the real CUDA build ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cuda_torch() -> TorchInfo:
    info = probe_torch(dict(os.environ), python=CUDA_TORCH_PYTHON)
    assert info.status == "ok", info.error
    return info


@needs_cuda_torch
def test_real_cuda13_build_against_fake_machines(nvml: Callable[[str], Any], real_cuda_torch: TorchInfo) -> None:
    """The real 2.14.1+cu130 build's facts judged against NVML scenarios: an r550 driver is too old,
    a Blackwell card is covered by its sm_120, a V100 is not."""
    if real_cuda_torch.cuda != "13.0":
        pytest.skip(f"this test is about a CUDA 13.0 build, not {real_cuda_torch.cuda}")
    nvml("healthy_multi_gpu")
    assert judge("torch.driver_compat", real_cuda_torch).status is Status.FAIL
    assert judge("torch.libs", real_cuda_torch).status is Status.OK
    # No GPU can start here, so torch sees none; the too-old driver is the one failure, not two.
    devices = judge("torch.devices", real_cuda_torch)
    assert devices.status is Status.SKIP and "see torch.driver_compat" in devices.summary
    nvml("mixed_generations")
    assert judge("torch.arch", real_cuda_torch).status is Status.OK
    nvml("old_driver")
    assert judge("torch.arch", real_cuda_torch).status is Status.FAIL


# -- end to end: broken torches through the runner and the CLI -----------------------------------------


def fake_torch_env(scenario: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(FAKE_TORCH / scenario)
    env["ENVCHECK_TORCH_TIMEOUT"] = "2"
    return env


BROKEN = {
    "raises": "import torch failed: OSError: libcudnn.so.9: cannot open shared object file",
    "hangs": "torch hung: import torch did not finish within 2 s",
    "crashes": "torch crashed the Python interpreter: the interpreter was killed by SIGSEGV",
}


@pytest.mark.parametrize("scenario", sorted(BROKEN))
def test_broken_torch_fails_once_through_the_runner(nvml: Callable[[str], Any], scenario: str) -> None:
    nvml("healthy_multi_gpu")
    report = run_doctor(DoctorRequest(("torch",), env=fake_torch_env(scenario), deadline_s=5.0))
    by_id = {r.id: r for r in report.results}
    assert by_id["torch.import"].status is Status.FAIL
    assert by_id["torch.import"].summary.startswith(BROKEN[scenario])
    assert all(by_id[i].status is Status.SKIP for i in by_id if i not in ("torch.import", "torch.nvcc"))
    assert exit_code_for([r.status for r in report.results]) is ExitCode.FAILED


def test_deadline_shorter_than_the_child_timeout(nvml: Callable[[str], Any]) -> None:
    """The doctor's deadline wins over the child's own timeout: the runner tells the probe what is left,
    so the child is stopped in time; the verdict names the step it was in and does not call it a hang,
    since the child's own limit had not come."""
    nvml("no_library")
    env = fake_torch_env("hangs") | {"ENVCHECK_TORCH_TIMEOUT": "4"}
    report = run_doctor(DoctorRequest(("torch",), env=env, deadline_s=1.5))
    assert report.results[0].status is Status.WARN
    summary = report.results[0].summary
    assert summary.startswith("torch not judged: import torch was still running when the doctor's deadline came")
    assert summary.endswith("hangs/torch/__init__.py:5 in <module>)")


@pytest.mark.parametrize("scenario", sorted(BROKEN))
def test_cli_doctor_torch_exits_1(scenario: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from envcheck.cli import main

    for key, value in fake_torch_env(scenario).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["doctor", "torch", "--deadline", "8"])
    assert result.exit_code == 1, result.output
    assert "torch.import" in result.output or "torch imports" in result.output
    assert BROKEN[scenario].split(": ", 1)[1][:30] in " ".join(result.output.split())


def test_fake_torches_exist() -> None:
    for scenario in BROKEN:
        assert (FAKE_TORCH / scenario / "torch" / "__init__.py").is_file()


def test_torch_area_probes_are_registered() -> None:
    assert {"torch", "toolkit", "nvml"} <= set(PROBES)
    assert [s.id for s in TORCH_CHECKS] == [
        "torch.import",
        "torch.cuda_build",
        "torch.driver_compat",
        "torch.devices",
        "torch.arch",
        "torch.libs",
        "torch.matmul",
        "torch.nvcc",
        "torch.libraries",
    ]


def test_same_major_newer_torch_offers_the_variant_this_driver_runs(nvml: Callable[[str], Any]) -> None:
    lib = nvml("healthy_multi_gpu")
    lib.driver_version, lib.cuda_version = "580.95.05", 13010  # supports CUDA 13.1; torch is built for 13.2
    result = judge("torch.driver_compat", cuda_torch("13.2"))
    assert result.status is Status.WARN
    assert result.fix is not None and "install the torch cu130 variant" in result.fix.text


@pytest.mark.parametrize(
    ("driver", "status"),
    [
        # 525.105.17 is newer than 525.60.13 (105 > 60), though it sorts first as text: minor-version
        # compatibility runs torch's CUDA 12.4 on it, with a warning.
        ("525.105.17", Status.WARN),
        ("525.60.13", Status.WARN),  # the minimum itself
        ("525.60.9", Status.FAIL),  # 9 < 13: one below the minimum, though "9" sorts after "13" as text
        ("525.53.99", Status.FAIL),
    ],
)
def test_driver_versions_are_compared_as_numbers(monkeypatch: pytest.MonkeyPatch, driver: str, status: Status) -> None:
    h100 = fakenvml.h100(0)
    fakenvml.install(fakenvml.FakeNvmlLib([h100], driver_version=driver, cuda_version=12000), monkeypatch)
    result = judge("torch.driver_compat", cuda_torch("12.4"))
    assert result.status is status, result.summary
    if status is Status.FAIL:
        assert result.summary.startswith(f"driver {driver} is older than 525.60.13, the minimum for CUDA 12.x")
