"""Environment-variable checks: GPU variables shown (never a secret), hidden GPUs, debug switches left on,
and LD_LIBRARY_PATH entries that shadow torch's CUDA libraries."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from envcheck.core.model import CheckResult, Status
from envcheck.core.redact import REDACTED
from envcheck.doctor.areas import CHECKS
from envcheck.doctor.checks import env as _env_checks  # noqa: F401 - registers the env checks
from envcheck.doctor.checks.env import gpu_vars
from envcheck.doctor.runner import ProbeContext as Context
from envcheck.doctor.runner import ProbeRunner, run_check
from envcheck.probes.nvml.inventory import GpuInfo, NvmlState
from envcheck.probes.packages import PackagesState, TorchBuild, scan_library_path
from envcheck.probes.registry import ProbeSpec

H100 = [GpuInfo(0, name="NVIDIA H100 80GB HBM3", uuid="GPU-1111aaaa-0000"),
        GpuInfo(1, name="NVIDIA H100 80GB HBM3", uuid="GPU-2222bbbb-0000")]  # fmt: skip
MIXED = [
    GpuInfo(0, name="NVIDIA RTX A6000", uuid="GPU-aaaa"),
    GpuInfo(1, name="NVIDIA GeForce RTX 4090", uuid="GPU-bbbb"),
]


def judge(check_id: str, env: dict[str, str], gpus: list[GpuInfo] | None = H100, packages: PackagesState | None = None,
          nvml_fn=None) -> CheckResult:  # fmt: skip
    nvml = NvmlState("ok", gpus=gpus) if gpus is not None else NvmlState("no_library", error="libnvidia-ml.so.1")
    probes = {
        "nvml": ProbeSpec("nvml", nvml_fn or (lambda e: nvml), 0.2, "NVML (the NVIDIA driver library)"),
        "packages": ProbeSpec("packages", lambda e: packages or PackagesState("python", {}), 1.0, "packages"),
    }
    return run_check(CHECKS[check_id], Context(ProbeRunner(env, 5.0, probes=probes), env))


def test_nothing_set_is_ok():
    result = judge("env.gpu_vars", {"PATH": "/usr/bin", "HOME": "/root"})
    assert result.status is Status.OK and result.summary == "none of the GPU-related variables is set"


def test_gpu_variables_are_listed_and_others_are_not():
    env = {"CUDA_VISIBLE_DEVICES": "0,1", "NCCL_DEBUG": "INFO", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
           "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "HOME": "/root", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    result = judge("env.gpu_vars", env)
    assert result.status is Status.OK
    assert result.details["variables"] == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "NCCL_DEBUG": "INFO",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    }
    assert result.summary.startswith("4 set: CUBLAS_WORKSPACE_CONFIG=:4096:8, CUDA_VISIBLE_DEVICES=0,1")


def test_secrets_never_reach_the_report():
    secret, password = "nvapi-Zq8s3cr3tV4lu3xx", "hunter2hunter2"
    env = {"NVIDIA_API_KEY": secret, "HF_TOKEN": "hf_" + "x" * 34, "NCCL_DEBUG": "WARN",
           "TORCHINDUCTOR_REDIS_URL": f"redis://cache:{password}@redis.internal:6379"}  # fmt: skip
    for extra in ({}, {"CUDA_LAUNCH_BLOCKING": "1"}):  # the ok and the warn summary both list the variables
        result = judge("env.gpu_vars", {**env, **extra})
        dumped = json.dumps(result.to_json())
        assert "NVIDIA_API_KEY" in result.summary and secret not in dumped and password not in dumped
        assert "hf_xxx" not in dumped
    assert result.details["variables"]["NVIDIA_API_KEY"] == REDACTED
    assert result.details["variables"]["TORCHINDUCTOR_REDIS_URL"] == f"redis://{REDACTED}@redis.internal:6379"
    assert "HF_TOKEN" not in result.details["variables"]  # not a GPU variable: not shown at all


def test_cuda_launch_blocking_warns():
    result = judge("env.gpu_vars", {"CUDA_LAUNCH_BLOCKING": "1"})
    assert result.status is Status.WARN
    assert "serialises every kernel launch" in result.summary and result.fix.command == "unset CUDA_LAUNCH_BLOCKING"
    assert result.summary.endswith("(1 set: CUDA_LAUNCH_BLOCKING=1)")
    assert result.details["variables"] == {"CUDA_LAUNCH_BLOCKING": "1"}


def test_debug_switches_are_unset_together():
    result = judge("env.gpu_vars", {"CUDA_LAUNCH_BLOCKING": "1", "PYTORCH_NO_CUDA_MEMORY_CACHING": "1"})
    assert result.fix.command == "unset CUDA_LAUNCH_BLOCKING PYTORCH_NO_CUDA_MEMORY_CACHING"


@pytest.mark.parametrize("value", ["", "-1", " "])
def test_empty_visible_devices_hides_every_gpu(value):
    result = judge("env.gpu_vars", {"CUDA_VISIBLE_DEVICES": value})
    assert result.status is Status.WARN and "hides every GPU" in result.summary and "nvidia-smi -L" in result.fix.text


def test_visible_device_beyond_the_gpu_count_warns():
    result = judge("env.gpu_vars", {"CUDA_VISIBLE_DEVICES": "0,5"})
    assert result.status is Status.WARN
    assert result.summary == (
        "CUDA_VISIBLE_DEVICES entry '5' is out of range: this machine has 2 GPU(s), 0 to 1; CUDA ignores it and all "
        "after it (5) (1 set: CUDA_VISIBLE_DEVICES=0,5)"
    )
    assert result.fix.text == "Fix or unset CUDA_VISIBLE_DEVICES (`nvidia-smi -L` lists the GPUs' indices and UUIDs)."
    assert result.fix.command is None


@pytest.mark.parametrize(
    "value, problem",
    [
        ("GPU-9999", "CUDA_VISIBLE_DEVICES entry 'GPU-9999' matches no GPU's UUID"),
        ("0,0", "CUDA_VISIBLE_DEVICES=0,0 names GPU 0 twice, and CUDA then shows no GPU at all"),
        ("cuda:0", "CUDA_VISIBLE_DEVICES entry 'cuda:0' is neither a GPU index nor a GPU-/MIG- UUID"),
    ],
)
def test_visible_devices_that_leave_no_gpu_fail(value, problem):
    """The shared parser's verdict stands: a variable that leaves CUDA no GPU at all is a failure."""
    result = judge("env.gpu_vars", {"CUDA_VISIBLE_DEVICES": value})
    assert result.status is Status.FAIL and result.summary.startswith(problem) and "nvidia-smi -L" in result.fix.text


@pytest.mark.parametrize("value", ["1,0", "GPU-2222", "MIG-5f3c"])
def test_valid_visible_devices_are_only_shown(value):
    result = judge("env.gpu_vars", {"CUDA_VISIBLE_DEVICES": value})
    assert result.status is Status.OK and result.summary == f"1 set: CUDA_VISIBLE_DEVICES={value}"


def test_visible_devices_without_nvml_are_only_shown():
    result = judge("env.gpu_vars", {"CUDA_VISIBLE_DEVICES": "3"}, gpus=None)
    assert result.status is Status.OK and result.details["variables"] == {"CUDA_VISIBLE_DEVICES": "3"}


def test_debug_switch_and_bad_visible_devices_share_one_verdict():
    result = judge("env.gpu_vars", {"CUDA_LAUNCH_BLOCKING": "1", "CUDA_VISIBLE_DEVICES": "0,0"})
    assert result.status is Status.FAIL and result.fix.command == "unset CUDA_LAUNCH_BLOCKING"
    assert result.summary.startswith("CUDA_LAUNCH_BLOCKING=1 serialises every kernel launch")
    assert result.fix.text == (
        "Unset CUDA_LAUNCH_BLOCKING outside debugging sessions. "
        "Fix or unset CUDA_VISIBLE_DEVICES (`nvidia-smi -L` lists the GPUs' indices and UUIDs)."
    )


def test_hung_nvml_does_not_fail_the_env_check():
    release = threading.Event()
    try:
        result = judge("env.gpu_vars", {"CUDA_VISIBLE_DEVICES": "0,7"}, nvml_fn=lambda e: release.wait(60))
    finally:
        release.set()
    assert result.status is Status.OK  # the index cannot be judged without NVML; the driver checks report the hang


def test_mixed_gpus_without_pci_bus_order_get_a_note():
    result = judge("env.gpu_vars", {"CUDA_VISIBLE_DEVICES": "0"}, gpus=MIXED)
    assert result.status is Status.OK and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in result.details["notes"][0]
    assert result.details["notes"][0].startswith("GPUs of different models and CUDA_VISIBLE_DEVICES by index")
    ordered = {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert "notes" not in judge("env.gpu_vars", ordered, gpus=MIXED).details
    assert "notes" not in judge("env.gpu_vars", {"CUDA_VISIBLE_DEVICES": "0"}, gpus=H100).details
    # The shared note is about indices in CUDA_VISIBLE_DEVICES: with the variable unset there is nothing to misread.
    assert "notes" not in judge("env.gpu_vars", {}, gpus=MIXED).details


def test_nccl_workarounds_are_noted():
    result = judge("env.gpu_vars", {"NCCL_P2P_DISABLE": "1"})
    assert result.status is Status.OK and "NVLink" in result.details["notes"][0]
    assert result.summary.startswith("1 set: NCCL_P2P_DISABLE=1; note: NCCL_P2P_DISABLE=1: GPU-to-GPU traffic")


def test_gpu_vars_helper_redacts():
    assert gpu_vars({"NCCL_IB_SECRET": "abc", "NCCL_IB_HCA": "mlx5"}) == {
        "NCCL_IB_HCA": "mlx5",
        "NCCL_IB_SECRET": REDACTED,
    }


# --- LD_LIBRARY_PATH ------------------------------------------------------------------------------------------


def system_cuda(tmp_path: Path) -> Path:
    lib = tmp_path / "usr" / "local" / "cuda-12.2" / "lib64"
    lib.mkdir(parents=True)
    for name in ("libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12", "libcupti.so.12", "libnvrtc.so.12"):
        (lib / name).write_text("")
    return lib


def packages(ld_path: str, kind: str | None = "cuda", own: list[str] | None = None, own_libs=()) -> PackagesState:
    torch = None
    if kind is not None:
        accelerator = "12.4" if kind == "cuda" else None
        torch = TorchBuild("2.5.1", kind, accelerator, "test", "/site", own or [], list(own_libs))
    return PackagesState("python", {}, torch=torch, ld_library_path=scan_library_path(ld_path))


def test_unset_ld_library_path_is_ok():
    assert judge("env.ld_library_path", {}, packages=packages("")).summary == "LD_LIBRARY_PATH is not set"


def test_system_cuda_libraries_shadowing_torch_warn(tmp_path):
    lib = system_cuda(tmp_path)
    result = judge("env.ld_library_path", {}, packages=packages(f"/opt/other:{lib}"))
    assert result.status is Status.WARN
    assert str(lib) in result.summary and "libcublas.so.12" in result.summary and "CUDA 12.4" in result.summary
    assert "… 1 more" in result.summary
    assert result.fix.command == "unset LD_LIBRARY_PATH" and "undefined symbol" in result.fix.text
    assert result.details["entries"][0] == {"path": "/opt/other", "exists": False, "cuda_libs": []}
    assert "'/opt/other'" in result.details["notes"][0]


def test_only_libraries_with_torchs_own_file_names_shadow(tmp_path):
    """torch 2.5.1+cu124 loads libcudart.so.12: a CUDA 12 toolkit's copy replaces it, a CUDA 11 one cannot."""
    cuda12, cuda11 = system_cuda(tmp_path), tmp_path / "cuda-11.8" / "lib64"
    cuda11.mkdir(parents=True)
    (cuda11 / "libcudart.so.11.0").write_text("")
    own_libs = ["libcublas.so.12", "libcudart.so.12", "libcudnn.so.9"]
    result = judge("env.ld_library_path", {}, packages=packages(f"{cuda11}:{cuda12}", own_libs=own_libs))
    assert result.status is Status.WARN
    assert f"{cuda12}: libcublas.so.12, libcudart.so.12 (" in result.summary  # not libcublasLt, libcupti, libnvrtc
    assert f"CUDA libraries of other versions in {cuda11}" in result.details["notes"][0]
    only_old = judge("env.ld_library_path", {}, packages=packages(str(cuda11), own_libs=own_libs))
    assert only_old.status is Status.OK and "other versions" in only_old.summary


def test_torch_own_library_directory_is_not_shadowing(tmp_path):
    lib = system_cuda(tmp_path)
    result = judge("env.ld_library_path", {}, packages=packages(str(lib), own=[str(lib)]))
    assert result.status is Status.OK


def test_cuda_libraries_without_a_cuda_torch_are_only_noted(tmp_path):
    lib = system_cuda(tmp_path)
    result = judge("env.ld_library_path", {}, packages=packages(str(lib), kind="cpu"))
    assert result.status is Status.OK and "no CUDA build of torch" in result.summary


def test_empty_entry_is_noted(tmp_path):
    result = judge("env.ld_library_path", {}, packages=packages(f"{tmp_path}::", kind=None))
    assert result.status is Status.OK and "current directory" in result.summary
