"""torch and CUDA: does the installed torch import, and can it use every GPU this machine has?

The facts come from the torch probe (a child process, so a crash or hang in torch is a verdict, not
the end of the doctor), NVML (the GPUs and the driver, read without torch) and the toolkit probe
(nvcc). Only ``torch.import`` reports a torch that did not import; the other checks then skip, so one
broken torch gives one failure, not seven.
"""

from __future__ import annotations

import math
import re

from envcheck.core.model import Fix, SkipCheck, Status, Verdict, available, fail, first_line, ok, skip, warn
from envcheck.core.probing import Context, ProbeFailed, ProbeTimeout
from envcheck.doctor.areas import check
from envcheck.doctor.checks.packages import (
    TORCH_CUDA_VARIANTS,
    capabilities_of,
    choose_variant,
    torch_install_command,
    torch_variant_for,
    variant_advice,
    variant_name,
)
from envcheck.doctor.reading import nvml_state
from envcheck.probes import toolkit as _toolkit_probe  # noqa: F401 - registers the "toolkit" probe
from envcheck.probes.nvml import inventory as _nvml_probe  # noqa: F401 - registers the "nvml" probe
from envcheck.probes.toolkit import ToolkitInfo
from envcheck.probes.torch import (
    DEFAULT_CHILD_TIMEOUT_S,
    TF32_CUBLAS_OVERRIDE,
    TIMEOUT_ENV,
    TorchInfo,
    stage_words,
    tf32_cublas_forced,
)
from envcheck.probes.torch_child import MATMUL_N
from envcheck.probes.visible import VISIBLE, device_order_note, parse_visible_devices

# -- reference data ----------------------------------------------------------------------------------

#: CUDA toolkit -> the Linux x86_64 driver it ships with, i.e. the driver that runs it with every feature.
#: Source: CUDA Toolkit Release Notes, table "CUDA Toolkit and Corresponding Driver Versions" (GA rows).
TOOLKIT_DRIVER: dict[tuple[int, int], str] = {
    (11, 8): "520.61.05",
    (12, 1): "530.30.02",
    (12, 4): "550.54.14",
    (12, 6): "560.28.03",
    (12, 8): "570.26",
    (12, 9): "575.51.03",
    (13, 0): "580.65.06",
}

#: CUDA major -> the oldest Linux driver that runs any toolkit of that major through minor-version
#: compatibility (without PTX JIT of newer PTX). Source: CUDA Compatibility guide, "Minor Version
#: Compatibility", and the CUDA Toolkit Release Notes' table of minimum drivers for it.
MINOR_COMPAT_DRIVER: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580"}
#: How CUDA says a GPU in EXCLUSIVE_PROCESS mode is held by another process (cudaErrorDevicesUnavailable, 46).
BUSY = re.compile(r"busy or unavailable|cudaErrorDevicesUnavailable", re.IGNORECASE)
#: PyTorch's variable that makes cuBLAS compute fp32 matmuls in TF32 (torch/csrc/Context: allow_tf32 override).
#: How CUDA says error 802 (cudaErrorSystemNotReady): the NVSwitch fabric is not set up.
SYSTEM_NOT_READY = re.compile(r"system not yet initialized|\b802\b|cudaErrorSystemNotReady", re.IGNORECASE)

#: Compute capability -> the first CUDA toolkit that compiles for it. Source: CUDA Toolkit Release Notes
#: (11.0: Ampere 8.0; 11.1: 8.6; 11.8: Ada 8.9 and Hopper 9.0; 12.8: Blackwell 10.0 and 12.0;
#: 12.9: 10.3 and 12.1).
FIRST_CUDA_FOR_CC: dict[tuple[int, int], tuple[int, int]] = {
    (8, 0): (11, 0),
    (8, 6): (11, 1),
    (8, 9): (11, 8),
    (9, 0): (11, 8),
    (10, 0): (12, 8),
    (12, 0): (12, 8),
    (10, 3): (12, 9),
    (12, 1): (12, 9),
}

#: CUDA 13.0 dropped compute capabilities below 7.5 (Maxwell, Pascal, Volta). Source: CUDA 13.0
#: release notes, "Deprecated or Dropped Architectures". PyTorch's cu126 wheels still carry sm_50..sm_90.
CUDA13_MIN_CC = (7, 5)
OLD_CARD_VARIANT = "cu126"

#: A 64x64 fp32 matmul with TF32 off differs from the float64 reference by ~1e-7 relative; TF32 would
#: give ~1e-3. Anything above this is a wrong result, not rounding.
MATMUL_TOLERANCE = 1e-3

ARCH_LIST_COMMAND = "python -c 'import torch; print(torch.cuda.get_arch_list())'"
DMESG = "sudo dmesg -T | grep -iE 'nvrm|xid' | tail"
REINSTALL_TORCH = "python -m pip install --force-reinstall torch"

# -- shared helpers ----------------------------------------------------------------------------------


def _torch(ctx: Context) -> TorchInfo:
    """torch's facts when it imported; otherwise the calling check skips (torch.import says why)."""
    try:
        info: TorchInfo = ctx.probe("torch")
    except (ProbeTimeout, ProbeFailed):
        raise SkipCheck("torch could not be probed (see torch.import)") from None
    if info.status == "not_installed":
        raise SkipCheck("torch is not installed (see packages.torch)")
    if info.status == "unfinished":
        raise SkipCheck("torch had not finished importing when the report was due (see torch.import)")
    if not info.imported:
        raise SkipCheck("torch did not import (see torch.import)")
    return info


def _cuda_torch(ctx: Context, otherwise: str) -> TorchInfo:
    """A CUDA build of torch that imported; a CPU-only or ROCm build skips the check: "torch is a
    <flavour>" followed by ``otherwise`` (torch.cuda_build judges the flavour itself)."""
    info = _torch(ctx)
    if not info.cuda or info.hip:
        raise SkipCheck(f"torch is a {_flavour(info)}{otherwise}")
    return info


NO_NVML = "NVML is not available, so there is no driver or GPU to compare with (see the driver checks)"


def _version(text: str | None) -> tuple[int, int] | None:
    """``"12.4"`` -> (12, 4)."""
    match = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2])) if match else None


def _driver_tuple(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text or ""))


def _flavour(info: TorchInfo) -> str:
    if info.hip:
        return f"ROCm {info.hip} build"
    if info.cuda:
        return f"CUDA {info.cuda} build"
    return "CPU-only build"


# -- arch coverage -----------------------------------------------------------------------------------

_ARCH = re.compile(r"^(sm|compute)_(\d+)(\d)([af]?)$")


def _arch_target(flag: str) -> tuple[str, tuple[int, int], str] | None:
    """``"sm_100a"`` -> ("sm", (10, 0), "a"); None for what is not a CUDA target (``gfx90a``)."""
    match = _ARCH.match(flag)
    return (match[1], (int(match[2]), int(match[3])), match[4]) if match else None


def covering_target(capability: tuple[int, int], arch_list: list[str]) -> str | None:
    """The build target that runs on a GPU of ``capability``, or None ("no kernel image").

    Rules (CUDA C++ Programming Guide, "Binary Compatibility" and "Application Compatibility"): a cubin
    ``sm_XY`` runs on X.Z for Z >= Y (same major only); an arch-specific ``sm_XYa`` only on exactly X.Y; a
    family-specific ``sm_XYf`` on the same major with Z >= Y; PTX ``compute_XY`` is JIT-compiled by the
    driver for any capability >= X.Y (``compute_XYa`` only for X.Y). Binary targets are preferred.
    """
    # The closest target wins: the highest binary one that fits, else the highest PTX.
    binary: tuple[tuple[int, int], str] | None = None
    ptx: tuple[tuple[int, int], str] | None = None
    for flag in arch_list:
        parsed = _arch_target(flag)
        if parsed is None:
            continue
        kind, target, suffix = parsed
        if suffix == "a":
            fits = target == capability
        elif kind == "sm" or suffix == "f":
            fits = target[0] == capability[0] and target[1] <= capability[1]
        else:
            fits = target <= capability
        if not fits:
            continue
        if kind == "sm":
            binary = max(binary, (target, flag)) if binary else (target, flag)
        else:
            ptx = max(ptx, (target, flag)) if ptx else (target, flag)
    if binary is not None:
        return binary[1]
    return f"{ptx[1]} (PTX, compiled by the driver at first use)" if ptx else None


def _arch_fix(capability: tuple[int, int], info: TorchInfo) -> str:
    wanted = f"sm_{capability[0]}{capability[1]}"
    built = sorted(parsed[1] for parsed in map(_arch_target, info.arch_list) if parsed is not None)
    if built and capability < built[0]:
        why = ""
        if capability < CUDA13_MIN_CC and (_version(info.cuda) or (0, 0)) >= (13, 0):
            why = " CUDA 13 dropped compute capabilities below 7.5 (CUDA 13.0 release notes)."
        return (
            f"This card is older than every target in the build.{why} Install a torch build whose arch list "
            f"includes {wanted} — PyTorch's {OLD_CARD_VARIANT} wheels carry sm_50 to sm_90 — and confirm "
            "with the command below."
        )
    first = FIRST_CUDA_FOR_CC.get(capability)
    if first is not None:
        variant = next((variant_name(v) for v in TORCH_CUDA_VARIANTS if v >= first), variant_name(first))
        newer = f"a build for CUDA {first[0]}.{first[1]} or newer (e.g. the {variant} wheels)"
    else:
        newer = "a build for a newer CUDA variant"
    return (
        f"Install a torch build whose arch list includes {wanted}: {newer}, with a driver that supports that "
        "CUDA version; then confirm with the command below."
    )


# -- checks ------------------------------------------------------------------------------------------


@check("torch.import", "torch imports")
def check_import(ctx: Context) -> Verdict:
    """torch imports in a fresh interpreter, without raising, crashing or hanging."""
    try:
        info: TorchInfo = ctx.probe("torch")
    except ProbeTimeout as exc:
        return fail(
            f"torch did not finish importing and initialising CUDA within the doctor's {exc.waited_s:.0f} s",
            "Re-run with a longer --deadline; if it still does not finish, time the import by hand to see "
            "where it stops (a hung network filesystem, a wedged driver).",
            'python -X importtime -c "import torch; torch.cuda.is_available()"',
            timeout_s=exc.waited_s,
        )
    details = {
        "python": info.executable,
        "stage": info.stage,
        "exit_code": info.exit_code,
        "where": info.where,
        "stderr_tail": info.stderr_tail.splitlines(),
    }
    at = f" (at {info.where})" if info.where else ""
    if info.status == "ok":
        return ok(
            f"torch {info.version} ({_flavour(info)}) imports in {info.import_s or 0:.1f} s",
            python=info.executable,
            path=info.path,
            version=info.version,
            cuda=info.cuda,
            hip=info.hip,
        )
    if info.status == "not_installed":
        # packages.torch says it, with the wheel that fits this machine: one warning, not two.
        return skip(f"torch is not installed for {info.executable or 'this Python'} (see packages.torch)", **details)
    if info.status == "unfinished":
        # The doctor's --deadline, not the child's own hang timeout, ended the wait: slow is not hung.
        more = min(3600, max(60, math.ceil(2 * (info.timeout_s or 0))))  # click caps --deadline at 3600
        return warn(
            f"torch not judged: {info.error}{at}",
            f"torch was still working, which is not a hang (that takes {TIMEOUT_ENV}, {DEFAULT_CHILD_TIMEOUT_S:g} s "
            "by default): give the doctor more time.",
            f"envcheck doctor --deadline {more}",
            **details,
        )
    if info.status == "import_error":
        return fail(f"import torch failed: {first_line(info.error)}", *_import_error_fix(info.error or ""), **details)
    if info.status == "crashed":
        return fail(
            f"torch crashed the Python interpreter: {info.error}{at}",
            *_crash_fix(info.stage),
            **details,
        )
    if info.status == "timeout":
        return fail(f"torch hung: {info.error}{at}", *_hang_fix(info.stage), **details)
    return fail(
        f"the torch probe failed: {info.error}",
        "Run the import by hand in the same environment to see the error.",
        'python -c "import torch; print(torch.__version__, torch.cuda.is_available())"',
        **details,
    )


def _import_error_fix(error: str) -> tuple[str, str]:
    if "undefined symbol" in error:
        return (
            "torch loaded a library of another version than it was built with — usually LD_LIBRARY_PATH "
            "pointing at a system or conda CUDA, or nvidia-* packages out of step with torch. Try the import "
            "without LD_LIBRARY_PATH; if that works, remove the entry; else reinstall torch.",
            'env -u LD_LIBRARY_PATH python -c "import torch"',
        )
    if "cannot open shared object file" in error or re.search(r"lib(cu|nv|nccl)\w*\.so", error):
        return (
            "A CUDA library torch needs is missing or shadowed. torch's pip wheels bring cuDNN, NCCL and the "
            "CUDA runtime as nvidia-* packages: reinstall torch so that they match it, and check that "
            "LD_LIBRARY_PATH does not point at another CUDA.",
            REINSTALL_TORCH,
        )
    return ("Reinstall torch in this environment; the error says which part of it is broken.", REINSTALL_TORCH)


def _in_cuda(stage: str | None) -> bool:
    """Whether the child had got past ``import torch`` into CUDA itself (the driver stack, not a library)."""
    return bool(stage) and stage.startswith(("cuda_init", "device", "matmul"))


def _crash_fix(stage: str | None) -> tuple[str, str]:
    if _in_cuda(stage):
        return (
            f"The crash happened during {stage_words(stage)}, inside the CUDA driver stack: look for Xid "
            "errors in the kernel log and check whether `nvidia-smi` works; a GPU in a bad state usually needs "
            "a reset or a reboot.",
            DMESG,
        )
    return (
        "A native library crashed while torch was imported — usually mismatched CUDA libraries on "
        "LD_LIBRARY_PATH or LD_PRELOAD, or a broken install. Run the import with faulthandler to see where, "
        "then reinstall torch.",
        'python -X faulthandler -c "import torch"',
    )


def _hang_fix(stage: str | None) -> tuple[str, str]:
    if _in_cuda(stage):
        return (
            f"{stage_words(stage)} blocks: usually a wedged driver or a GPU in a bad state (check whether "
            "`nvidia-smi` hangs too, and the kernel log for Xid errors); it needs the GPU reset or the node "
            "rebooted.",
            DMESG,
        )
    return (
        "Something in torch's import blocks: often a slow or hung network filesystem under site-packages or "
        "$HOME, or a stale lock. Time the import by hand to see which module stops.",
        'python -X importtime -c "import torch"',
    )


@check("torch.cuda_build", "torch build matches the GPUs")
def check_cuda_build(ctx: Context) -> Verdict:
    """A CPU-only or ROCm torch on a machine with NVIDIA GPUs cannot use them."""
    info = _torch(ctx)
    state = nvml_state(ctx, consult=True)
    if state is None or not state.gpus:
        where = "no NVIDIA GPU found" if state else "NVML not available (see the driver checks)"
        return ok(f"torch {info.version}: {_flavour(info)}; {where}", cuda=info.cuda, hip=info.hip)
    gpus = state.gpus
    if info.cuda and not info.hip:
        return ok(f"torch {info.version}: {_flavour(info)} for {len(gpus)} NVIDIA GPU(s)", cuda=info.cuda)
    choice = choose_variant(_version(state.cuda_driver_version) or (0, 0), capabilities_of(state))
    variant = choice.variant
    if variant is None:
        text, command = variant_advice(choice, state.driver_version, state.cuda_driver_version)
        return fail(
            f"torch {info.version} is a {_flavour(info)}, but this machine has {len(gpus)} NVIDIA GPU(s)",
            text[0].upper() + text[1:],
            command,
            cuda=info.cuda,
            hip=info.hip,
            gpus=len(gpus),
        )
    return fail(
        f"torch {info.version} is a {_flavour(info)}, but this machine has {len(gpus)} NVIDIA GPU(s)",
        f"Install a CUDA build of torch (the {variant_name(variant)} variant matches this driver: driver "
        f"{state.driver_version} supports CUDA {state.cuda_driver_version}). On Linux x86_64 the default torch "
        "wheel is a CUDA build; a CPU build usually comes from a CPU-only index set in pip.conf, PIP_INDEX_URL "
        "or a requirements file.",
        torch_install_command(variant_name(variant)),
        cuda=info.cuda,
        hip=info.hip,
        gpus=len(gpus),
    )


@check("torch.driver_compat", "Driver runs torch's CUDA")
def check_driver_compat(ctx: Context) -> Verdict:
    """The driver must support the CUDA version torch was built with (or at least its major version)."""
    info = _cuda_torch(ctx, ": no CUDA runtime to match with the driver")
    state = nvml_state(ctx, consult=True, skip=NO_NVML)
    driver_cuda, torch_cuda = _version(state.cuda_driver_version), _version(info.cuda)
    if driver_cuda is None or torch_cuda is None:
        return skip(f"cannot compare: driver CUDA {state.cuda_driver_version}, torch CUDA {info.cuda}")
    details = {
        "driver_version": state.driver_version,
        "driver_cuda": state.cuda_driver_version,
        "torch_cuda": info.cuda,
        "cuda_init_error": info.cuda_init_error,
    }
    said = f" (torch says: {first_line(info.cuda_init_error)})" if info.cuda_init_error else ""
    full_driver = TOOLKIT_DRIVER.get(torch_cuda)
    minimum = MINOR_COMPAT_DRIVER.get(torch_cuda[0])
    variant = torch_variant_for(driver_cuda, capabilities_of(state))
    alternative = (
        f", or install the torch {variant_name(variant)} variant, which driver {state.driver_version} runs"
        if variant and variant != torch_cuda
        else ""
    )
    if driver_cuda[0] < torch_cuda[0]:
        need = f">= {full_driver}" if full_driver else f"of the {torch_cuda[0]}.x series"
        compat = (
            f" (any >= {minimum} runs CUDA {torch_cuda[0]}.x through minor-version compatibility)" if minimum else ""
        )
        return fail(
            f"torch is built for CUDA {info.cuda}, but driver {state.driver_version} supports CUDA only up to "
            f"{state.cuda_driver_version}: CUDA cannot start{said}",
            f"Upgrade the NVIDIA driver to {need}{compat}{alternative}.",
            None,
            **details,
        )
    if driver_cuda < torch_cuda:
        if minimum and _driver_tuple(state.driver_version) < _driver_tuple(minimum):
            return fail(
                f"driver {state.driver_version} is older than {minimum}, the minimum for CUDA {torch_cuda[0]}.x "
                f"minor-version compatibility; torch needs CUDA {info.cuda}{said}",
                f"Upgrade the NVIDIA driver to >= {full_driver or minimum}{alternative}.",
                None,
                **details,
            )
        return warn(
            f"driver {state.driver_version} supports CUDA {state.cuda_driver_version}, older than torch's "
            f"{info.cuda}: it runs through minor-version compatibility, but PTX compiled for {info.cuda} cannot "
            "be JIT-compiled and newer CUDA features are unavailable",
            f"Upgrade the NVIDIA driver to >= {full_driver or 'the one shipped with CUDA ' + info.cuda}{alternative}.",
            None,
            **details,
        )
    return ok(
        f"driver {state.driver_version} (CUDA {state.cuda_driver_version}) runs torch's CUDA {info.cuda}", **details
    )


@check("torch.devices", "torch sees every GPU")
def check_devices(ctx: Context) -> Verdict:
    """torch's device count equals NVML's, after CUDA_VISIBLE_DEVICES, and that variable is well-formed."""
    info = _cuda_torch(ctx, " (see torch.cuda_build)")
    state = nvml_state(ctx, consult=True, skip=NO_NVML)
    if not state.gpus:
        return skip("NVML sees no GPU")
    value = ctx.env.get(VISIBLE)
    visibility = parse_visible_devices(value, state.gpus)
    seen = info.device_count if info.cuda_available else 0
    driver_cuda, torch_cuda = _version(state.cuda_driver_version), _version(info.cuda)
    if seen == 0 and driver_cuda and torch_cuda and driver_cuda[0] < torch_cuda[0]:
        # One cause, one failure: torch.driver_compat already says the driver cannot run this torch.
        return skip(f"driver {state.driver_version} cannot run torch's CUDA {info.cuda} (see torch.driver_compat)")
    findings = list(visibility.problems)
    notes: list[str] = [n for n in [device_order_note(ctx.env, state.gpus)] if n]
    expected: int | None = None
    if visibility.indices is not None:
        visible = [state.gpus[i] for i in visibility.indices]
        if any(g.mig_mode_current is True for g in visible):
            notes.append("MIG is on: CUDA shows MIG instances, which NVML's GPU list does not count")
        else:
            lost = [g.index for g in visible if g.lost]
            if lost:
                notes.append(f"lost GPU(s) {', '.join(map(str, lost))} not counted (see the gpu checks)")
            expected = len(visible) - len(lost)
    cause = f": {first_line(info.cuda_init_error)}" if info.cuda_init_error else ""
    if expected is not None and seen != expected:
        scope = f" (after {VISIBLE}={value})" if value is not None else ""
        findings.append((Status.FAIL, f"torch sees {seen} GPU(s) but {expected} should be visible{scope}{cause}"))
    elif expected is None and seen == 0 and not visibility.hidden_on_purpose:
        findings.append((Status.FAIL, f"torch sees no GPU{cause}"))
    details = {
        "torch_device_count": seen,
        "expected": expected,
        "nvml_gpus": len(state.gpus),
        VISIBLE: value,
        "visible_nvml_indices": visibility.indices,
        "cuda_init_error": info.cuda_init_error,
        "notes": notes,
    }
    if not findings:
        scope = f" ({VISIBLE}={value})" if value is not None else ""
        return ok(f"torch sees {seen} GPU(s), as NVML does{scope}" + "".join(f"; {n}" for n in notes), **details)
    status = max((s for s, _ in findings), key=lambda s: s.severity)
    summary = "; ".join(sentence for _, sentence in findings)
    if any(VISIBLE in sentence for _, sentence in findings):
        fix = (
            f"Fix or unset {VISIBLE}: a comma-separated list of GPU indices (0 to {len(state.gpus) - 1}) or "
            "GPU-/MIG- UUIDs from `nvidia-smi -L`, each once; leave it unset to use every GPU."
        )
        command = f"unset {VISIBLE}"
    elif info.cuda_init_error and "insufficient" in info.cuda_init_error:
        fix, command = "The driver is too old for this torch: see torch.driver_compat.", None
    elif info.cuda_init_error and SYSTEM_NOT_READY.search(info.cuda_init_error):
        # error 802: an NVSwitch system whose fabric manager has not set up the fabric (fabric.manager)
        from envcheck.doctor.checks.fabric import FABRIC_MANAGER_FIX

        fix, command = FABRIC_MANAGER_FIX.format(driver=""), "systemctl status nvidia-fabricmanager"
    else:
        fix = (
            "CUDA cannot open every GPU NVML lists. In a container, pass the GPUs in (`--gpus all`, or the "
            "device plugin's limit); check that /dev/nvidia* are readable by this user, that no GPU is lost or "
            "in a bad state (see the gpu checks), and the kernel log for Xid errors."
        )
        command = "ls -l /dev/nvidia*"
    return Verdict(status, summary, Fix(fix, command), details)


@check("torch.arch", "torch has kernels for every GPU")
def check_arch(ctx: Context) -> Verdict:
    """Every GPU's compute capability must be in torch's arch list, or CUDA ops fail with
    "no kernel image is available for execution on the device" (typical with brand-new cards)."""
    info = _cuda_torch(ctx, ": no CUDA arch list to judge")
    if not info.arch_list:
        reason = info.lib_errors.get("arch_list")
        return skip("the torch build did not report its arch list" + (f" ({reason})" if reason else ""))
    cards = _cards(ctx, info)
    if not cards:
        return skip("no GPU with a known compute capability to judge")
    covered: dict[str, str] = {}
    uncovered: list[tuple[str, tuple[int, int]]] = []
    for gpu, name, capability in cards:
        target = covering_target(capability, info.arch_list)
        label = f"{gpu} ({name}, compute capability {capability[0]}.{capability[1]})"
        if target is None:
            uncovered.append((label, capability))
        else:
            covered[label] = target
    state = nvml_state(ctx, consult=True)
    order_note = device_order_note(ctx.env, state.gpus) if state is not None else None
    details = {"arch_list": info.arch_list, "covered_by": covered, "note": order_note}
    arch = " ".join(info.arch_list)
    if uncovered:
        return fail(
            f"{', '.join(label for label, _ in uncovered)}: not in torch {info.version}'s arch list ({arch}); "
            'CUDA ops fail with "no kernel image is available for execution on the device"',
            _arch_fix(uncovered[0][1], info) + (f" Note: {order_note}." if order_note else ""),
            ARCH_LIST_COMMAND,
            **details,
        )
    capabilities = [f"{c[0]}.{c[1]}" for c in sorted({c for _, _, c in cards})]
    return ok(f"compute capability {', '.join(capabilities)} covered by torch's arch list ({arch})", **details)


def _cards(ctx: Context, info: TorchInfo) -> list[tuple[str, str, tuple[int, int]]]:
    """(which GPU, its name, its compute capability) for the GPUs this process can use: from NVML
    (after CUDA_VISIBLE_DEVICES), else from torch itself."""
    state = nvml_state(ctx, consult=True)
    if state is not None and state.gpus:
        visibility = parse_visible_devices(ctx.env.get(VISIBLE), state.gpus)
        # When CUDA's indices may not be NVML's (see device_order_note), judge every GPU rather than a guess.
        known = visibility.indices is not None and device_order_note(ctx.env, state.gpus) is None
        gpus = [state.gpus[i] for i in visibility.indices] if known and visibility.indices is not None else state.gpus
        return [(f"GPU {g.index}", str(g.name), g.compute_capability) for g in gpus if available(g.compute_capability)]
    return [(f"GPU {d.index}", str(d.name), d.capability) for d in info.devices if d.capability is not None]


def cudnn_parts(version: int) -> tuple[int, int, int]:
    """cuDNN encodes 9.x as MAJOR*10000 + MINOR*100 + PATCH, and 8.x as MAJOR*1000 + MINOR*100 + PATCH
    (``CUDNN_VERSION`` in cudnn_version.h)."""
    if version >= 10000:
        return version // 10000, version % 10000 // 100, version % 100
    return version // 1000, version % 1000 // 100, version % 100


def cudnn_text(version: int) -> str:
    """``90100`` -> ``"9.1.0"``."""
    return ".".join(map(str, cudnn_parts(version)))


@check("torch.libs", "cuDNN and NCCL")
def check_libs(ctx: Context) -> Verdict:
    """cuDNN (convolutions, attention) and NCCL (multi-GPU training) load and report their versions."""
    info = _cuda_torch(ctx, ": no cuDNN or NCCL to check")
    details = {
        "cudnn_version": info.cudnn_version,
        "nccl_version": list(info.nccl_version) if info.nccl_version else None,
        "errors": info.lib_errors,
        # The libcudart torch loaded: another copy first on LD_LIBRARY_PATH shows up here.
        "cuda_runtime_version": info.cuda_runtime_version,
        "cuda_runtime_library": info.cuda_runtime_library,
    }
    cudnn = cudnn_text(info.cudnn_version) if info.cudnn_version else None
    nccl = ".".join(map(str, info.nccl_version)) if info.nccl_version else None
    if cudnn is None and "cudnn" in info.lib_errors:
        return fail(
            f"cuDNN does not load: {first_line(info.lib_errors['cudnn'])}",
            "Reinstall torch so that its nvidia-cudnn package matches, and check that LD_LIBRARY_PATH does "
            "not put another libcudnn first.",
            REINSTALL_TORCH,
            **details,
        )
    if cudnn is None:
        return warn(
            f"torch {info.version} has no cuDNN: convolutions and some attention kernels fall back to slow paths",
            "Install an official CUDA build of torch, which bundles cuDNN.",
            REINSTALL_TORCH,
            **details,
        )
    if nccl is None:
        state = nvml_state(ctx, consult=True)
        if state is not None and len(state.gpus) > 1:
            reason = f" ({first_line(info.lib_errors['nccl'])})" if "nccl" in info.lib_errors else ""
            return warn(
                f"cuDNN {cudnn}, but NCCL is missing{reason}: multi-GPU training with the nccl backend "
                f"(DDP, FSDP) fails on these {len(state.gpus)} GPUs",
                "Install an official Linux CUDA build of torch, which bundles NCCL.",
                REINSTALL_TORCH,
                **details,
            )
        return ok(f"cuDNN {cudnn}; no NCCL (only needed for multi-GPU training)", **details)
    return ok(f"cuDNN {cudnn}, NCCL {nccl}", **details)


@check("torch.matmul", "A matmul on every GPU is right")
def check_matmul(ctx: Context) -> Verdict:
    """A small fp32 matmul on every visible GPU matches a float64 CPU reference: catches broken kernels,
    wrong-arch builds and faulty GPUs before a long job does."""
    info = _torch(ctx)
    if not (info.cuda or info.hip):
        return skip(f"torch is a {_flavour(info)}: no GPU to test")
    if not info.cuda_available or not info.devices:
        return skip("torch has no usable GPU to run on (see torch.devices)")
    problems: list[str] = []
    busy: list[str] = []
    errors: dict[int, float | str | None] = {}
    tf32_forced = tf32_cublas_forced(ctx.env)
    for device in info.devices:
        label = f"GPU {device.index}" + (f" ({device.name})" if device.name else "")
        error = device.matmul_max_rel_error
        errors[device.index] = device.matmul_error or error
        if device.matmul_error and BUSY.search(device.matmul_error):
            busy.append(label)  # another job holds it in EXCLUSIVE_PROCESS mode: busy, not broken
        elif device.matmul_error:
            problems.append(f"{label}: {first_line(device.matmul_error)}")
        elif error is None or not math.isfinite(error) or error > MATMUL_TOLERANCE:
            shown = "did not run" if error is None else f"max relative error {error:.2g} vs the CPU"
            problems.append(f"{label}: wrong result ({shown}; tolerance {MATMUL_TOLERANCE:g})")
    details = {"max_rel_error": errors, "tolerance": MATMUL_TOLERANCE, "size": MATMUL_N}
    if problems and tf32_forced and all("wrong result (max relative error" in p for p in problems):
        # cuBLAS told to use TF32 for fp32 matmuls: a right TF32 result misses an fp32 tolerance
        return warn(
            f"{'; '.join(problems)}, with {TF32_CUBLAS_OVERRIDE}={ctx.env[TF32_CUBLAS_OVERRIDE]} set",
            f"{TF32_CUBLAS_OVERRIDE} makes cuBLAS compute fp32 matmuls in TF32 (10-bit mantissa), so an fp32 "
            "result differs from the CPU's by about 1e-3: that is the variable, not the GPU. Unset it to check "
            "fp32 correctness (and to get fp32 precision in your jobs).",
            f"unset {TF32_CUBLAS_OVERRIDE}",
            **details,
        )
    if busy and not problems:
        return warn(
            f"{', '.join(busy)}: busy, held by another process (EXCLUSIVE_PROCESS compute mode)",
            "Another job holds these GPUs, and their compute mode lets one process at a time use them: they "
            "are busy, not broken. Choose free GPUs with CUDA_VISIBLE_DEVICES, or wait for the job to end.",
            "nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv",
            **details,
        )
    if busy:
        problems += [f"{label}: busy (held by another process)" for label in busy]
    if problems:
        if any("no kernel image" in p for p in problems):
            fix = "torch has no kernel for this GPU's architecture: see torch.arch for the build to install."
            command = None
        else:
            fix = (
                "A GPU that computes wrong results or raises CUDA errors on a tiny matmul is not fit for work: "
                "check the kernel log for Xid errors and the gpu checks (ECC, remapped rows), then drain the "
                "GPU and run NVIDIA's diagnostics (`dcgmi diag -r 2`)."
            )
            command = DMESG
        return fail("; ".join(problems), fix, command, **details)
    worst = max(e for e in errors.values() if isinstance(e, float))
    return ok(
        f"{MATMUL_N}x{MATMUL_N} fp32 matmul on {len(info.devices)} GPU(s) matches the CPU (max relative error "
        f"{worst:.1g})",
        **details,
    )


@check("torch.nvcc", "nvcc matches torch's CUDA")
def check_nvcc(ctx: Context) -> Verdict:
    """The CUDA toolkit torch would build extensions with must have torch's CUDA major version; this only
    matters for building CUDA extensions (flash-attn, apex, custom ops), never for running torch."""
    toolkit: ToolkitInfo = ctx.probe("toolkit")
    nvcc = toolkit.for_extensions
    others = [n for n in toolkit.found if n is not nvcc and n.version]
    details = {
        "cuda_home": toolkit.cuda_home,
        "cuda_home_source": toolkit.cuda_home_source,
        "found": toolkit.found,
    }
    if nvcc is None:
        return skip(
            "no CUDA toolkit (nvcc) via CUDA_HOME, CUDA_PATH, PATH or /usr/local/cuda; only needed to build "
            "CUDA extensions",
            **details,
        )
    where = f"{nvcc.path} (from {nvcc.source})"
    found = f"nvcc {nvcc.version} at {where}" if nvcc.version else f"nvcc at {where} ({nvcc.error})"
    try:
        info = _torch(ctx)
    except SkipCheck as exc:
        return skip(f"{found}; nothing to compare with: {exc.summary}", **details)
    if not info.cuda or info.hip:
        # Only a CUDA torch builds CUDA extensions with nvcc: a CPU-only or ROCm build has nothing to match.
        return skip(f"{found}; torch is a {_flavour(info)}: nothing to compare with", **details)
    torch_cuda = _version(info.cuda)
    if nvcc.error or nvcc.version is None:
        return warn(
            f"the toolkit torch would build extensions with has a broken nvcc: {where}: {nvcc.error}",
            f"Point CUDA_HOME at a working CUDA {info.cuda} toolkit (only needed to build CUDA extensions).",
            f"export CUDA_HOME=/usr/local/cuda-{info.cuda}",
            **details,
        )
    also = "".join(
        f"; {n.source} has nvcc {n.version}" for n in others if _version(n.version) != _version(nvcc.version)
    )
    if torch_cuda is None:
        return skip(f"{found}; torch's CUDA version {info.cuda!r} cannot be read: nothing to compare with", **details)
    nvcc_cuda = _version(nvcc.version)
    if nvcc_cuda is not None and nvcc_cuda[0] != torch_cuda[0]:
        return warn(
            f"nvcc {nvcc.version} at {where} but torch is built with CUDA {info.cuda}: building CUDA extensions "
            f"fails (torch rejects a toolkit of another major version){also}",
            f"Only matters if you build CUDA extensions: install a CUDA {torch_cuda[0]}.x toolkit and point "
            "CUDA_HOME at it.",
            f"export CUDA_HOME=/usr/local/cuda-{info.cuda}",
            **details,
        )
    minor = "" if nvcc_cuda == torch_cuda else " (minor versions differ: torch only warns)"
    return ok(f"nvcc {nvcc.version} at {where} matches torch's CUDA {info.cuda}{minor}{also}", **details)
