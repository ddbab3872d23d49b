"""Driver and NVML: does the NVIDIA driver answer, which version is it, and how new a CUDA can it run.

Each way NVML fails to start is its own verdict with its own fix, because the causes are unrelated:
no driver at all (fine on a CPU box), a driver whose kernel module is not loaded, a user-space library
newer than the loaded kernel module (the classic "upgraded the driver, didn't reboot"), or a device
node the user may not open.
"""

from __future__ import annotations

from envcheck.core.model import Verdict, fail, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.doctor.areas import check
from envcheck.doctor.reading import nvml_state
from envcheck.probes.nvml import inventory as _nvml_probe  # noqa: F401 - registers the probe

#: Oldest CUDA that current PyTorch releases are built for. PyTorch 2.6+ dropped CUDA 11.8 wheels
#: from the default set (PyTorch release notes / "Get Started" matrix); 12.x needs driver ≥ 525.60.13
#: (CUDA Compatibility guide, minor-version compatibility table).
CURRENT_TORCH_MIN_CUDA = (12, 0)
CUDA_12_MIN_DRIVER = "525.60.13"


def container_expects_gpus(env: dict[str, str] | object) -> bool:
    """NVIDIA_VISIBLE_DEVICES asks the NVIDIA Container Toolkit for GPUs, so this is meant to be a GPU box."""
    value = getattr(env, "get", lambda _k: None)("NVIDIA_VISIBLE_DEVICES")
    return bool(value) and value not in ("void", "none")


@check("driver.nvml", "NVIDIA driver answers (NVML)")
def nvml_loads(ctx: Context) -> Verdict:
    """The NVIDIA management library loads and initialises; each failure mode has its own fix."""
    state = nvml_state(ctx, started=False)
    details = {"status": state.status, "error": state.error}
    if state.status == "ok":
        return ok(
            f"NVML {state.nvml_version or '?'} answers; {len(state.gpus)} GPU(s)",
            **details,
            missing_functions=state.missing_functions,
        )
    if state.status == "no_library":
        if container_expects_gpus(ctx.env):
            return warn(
                "no NVIDIA driver library in this container, although NVIDIA_VISIBLE_DEVICES asks for GPUs",
                "Start the container with GPU access through the NVIDIA Container Toolkit "
                "(`docker run --gpus all …`, or the nvidia runtime / device plugin on Kubernetes).",
                "docker run --gpus all --shm-size=16g IMAGE envcheck doctor",
                **details,
            )
        return skip("no NVIDIA driver installed (libnvidia-ml.so.1 not found): a CPU-only machine", **details)
    if state.status == "driver_not_loaded":
        return fail(
            "NVIDIA driver installed but its kernel module is not loaded",
            "Load the module and look for why it did not load (Secure Boot refusing an unsigned module, "
            "a kernel upgraded without rebuilding the DKMS module): `sudo modprobe nvidia`, then "
            "`sudo dmesg | grep -i nvidia`; reinstall the driver for the running kernel if it will not load.",
            "sudo modprobe nvidia && sudo dmesg | grep -i nvidia | tail",
            **details,
        )
    if state.status == "driver_library_mismatch":
        return fail(
            "driver/library version mismatch: the NVIDIA user-space library is newer than the loaded kernel module",
            "The driver was upgraded without reloading its kernel module. Reboot the machine, or stop "
            "everything using the GPUs and reload the modules.",
            "sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia",
            **details,
        )
    if state.status in ("no_bindings", "bindings_broken"):
        # Not the driver's fault, and the driver may be fine: say so, and leave the why to the packages check.
        return warn(
            f"cannot ask the driver: {state.error}",
            "envcheck reads the driver through NVIDIA's NVML bindings (nvidia-ml-py, imported as pynvml), and the "
            "pynvml module here is missing or broken; packages.pynvml_deprecated names the copy at fault. "
            "Reinstall nvidia-ml-py once that copy is gone.",
            "pip install --force-reinstall nvidia-ml-py",
            **details,
            module=state.bindings.path,
        )
    if state.status == "no_permission":
        return fail(
            "no permission to open the NVIDIA devices",
            "Your user may not open /dev/nvidia*: check their group (often `video`) and add yourself to it; "
            "in a container, give it the GPUs through the NVIDIA Container Toolkit instead of bind mounts.",
            "ls -l /dev/nvidia* && sudo usermod -aG video $USER",
            **details,
        )
    return fail(
        f"NVML failed to start: {state.error}",
        "Run `nvidia-smi`: if it fails the same way, the driver installation is broken; "
        "check `sudo dmesg | grep -iE 'nvrm|xid'` and reinstall the driver.",
        "nvidia-smi",
        **details,
    )


@check("driver.version", "Driver version and its CUDA support")
def driver_version(ctx: Context) -> Verdict:
    """The driver version and the newest CUDA it can run; an old driver limits every torch build."""
    state = nvml_state(ctx)
    details = {
        "driver_version": state.driver_version,
        "cuda_driver_version": state.cuda_driver_version,
        "missing_functions": state.missing_functions,
    }
    if state.cuda_driver_version is None:
        return warn(
            f"driver {state.driver_version}: cannot tell which CUDA version it supports",
            "This driver lacks nvmlSystemGetCudaDriverVersion, so it is very old or broken; "
            "`nvidia-smi` shows 'CUDA Version' in its header. Upgrade to a current driver branch.",
            "nvidia-smi",
            **details,
        )
    major, minor = (int(x) for x in state.cuda_driver_version.split("."))
    summary = f"driver {state.driver_version}, supports CUDA ≤ {state.cuda_driver_version}"
    if (major, minor) < CURRENT_TORCH_MIN_CUDA:
        return warn(
            f"{summary}: too old for current PyTorch builds (CUDA 12.x needs driver ≥ {CUDA_12_MIN_DRIVER})",
            f"Upgrade the NVIDIA driver to a current branch (≥ {CUDA_12_MIN_DRIVER} for CUDA 12.x), or keep an "
            f"older torch built for CUDA {major}.x.",
            **details,
        )
    if state.missing_functions:
        return ok(
            f"{summary} (older than the NVML bindings: {len(state.missing_functions)} readings not available)",
            **details,
        )
    return ok(summary, **details)
