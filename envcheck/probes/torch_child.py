"""The script the torch probe runs in a child process: ``python torch_child.py TIMEOUT_S``.

Why a separate process: importing torch can raise (a missing ``libcudnn.so.9``), hang (a wedged
driver during CUDA initialisation, a stuck network filesystem) or kill the interpreter outright
(SIGSEGV/SIGABRT in a native library). Run here, each of those is a fact the parent reports instead
of the end of the doctor.

This file is self-contained on purpose: it never imports envcheck, so a broken or half-installed
envcheck cannot change what it finds, and any interpreter (another virtualenv's python) can run it by
path.

Protocol: every line the parent reads starts with :data:`MARK` followed by one JSON object; the parent
merges them in order. Torch and the CUDA libraries may print their own text to stdout, so unmarked
lines are ignored. A ``{"stage": ...}`` line comes before each step that might hang or crash, so that
the parent can say *what* hung or crashed; the last line carries ``"done": true``.
"""

import faulthandler
import json
import math
import os
import signal
import sys
import time

MARK = "__envcheck_torch__ "

#: The matmul every visible GPU runs: small enough to take milliseconds, big enough that a broken
#: kernel, bad memory or a wrong-arch fallback shows up as a wrong number.
MATMUL_N = 64

#: How long after its own time limit the child ends itself, should the parent not have killed it.
ORPHAN_GRACE_S = 2


def emit(**fields):
    # A leading newline keeps the mark at the start of a line even after a library's partial line.
    sys.stdout.write("\n" + MARK + json.dumps(fields) + "\n")
    sys.stdout.flush()


def error_text(exc):
    """The exception as a person would quote it: ``OSError: libcudnn.so.9: cannot open ...``."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def build_info(torch):
    """What the torch build is: versions, libraries, and the GPU architectures it was compiled for."""
    info = {
        "version": str(getattr(torch, "__version__", "")) or None,
        "path": os.path.dirname(os.path.abspath(getattr(torch, "__file__", "") or ".")),
        "cuda": getattr(getattr(torch, "version", None), "cuda", None),
        "hip": getattr(getattr(torch, "version", None), "hip", None),
        "cudnn_version": None,
        "nccl_version": None,
        "arch_list": [],
        "lib_errors": {},
    }
    try:
        info["cudnn_version"] = torch.backends.cudnn.version()
    except Exception as exc:  # noqa: BLE001 - a CUDA build whose libcudnn cannot load says so here
        info["lib_errors"]["cudnn"] = error_text(exc)
    if info["cuda"] or info["hip"]:
        try:
            nccl = torch.cuda.nccl.version()
            info["nccl_version"] = list(nccl) if isinstance(nccl, tuple) else nccl
        except Exception as exc:  # noqa: BLE001 - every error is a finding to report
            info["lib_errors"]["nccl"] = error_text(exc)
        # torch.cuda.get_arch_list() is empty when no GPU is usable, but the build's list is compiled in.
        try:
            flags = getattr(torch._C, "_cuda_getArchFlags", None)
            arch = flags() if flags is not None else " ".join(torch.cuda.get_arch_list())
        except Exception as exc:  # noqa: BLE001 - every error is a finding to report
            info["lib_errors"]["arch_list"] = error_text(exc)
            arch = ""
        info["arch_list"] = (arch or "").split()
    return info


def matmul_error(torch, device):
    """Max relative error of a float32 matmul on ``device`` against a float64 CPU reference.

    TF32 is switched off so that the tolerance can stay tight: with it, fp32 matmuls on Ampere and
    later legitimately differ by ~1e-3.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(MATMUL_N, MATMUL_N, generator=generator, dtype=torch.float32)
    b = torch.randn(MATMUL_N, MATMUL_N, generator=generator, dtype=torch.float32)
    reference = a.double() @ b.double()
    result = (a.to(device) @ b.to(device)).to("cpu").double()
    scale = reference.abs().max().item() or 1.0
    return (result - reference).abs().max().item() / scale


def cuda_info(torch, gpu_build):
    """CUDA availability, per-device facts and the matmul, each step announced as a stage first."""
    info = {"cuda_available": False, "device_count": 0, "cuda_init_error": None, "devices": []}
    emit(stage="cuda_init")
    try:
        info["cuda_available"] = bool(torch.cuda.is_available())
        if not info["cuda_available"] and gpu_build:
            # is_available() swallows the reason; init() raises it ("Found no NVIDIA driver ...",
            # "CUDA driver version is insufficient for CUDA runtime version").
            torch.cuda.init()
        info["device_count"] = int(torch.cuda.device_count())
    except Exception as exc:  # noqa: BLE001 - every error is a finding to report
        info["cuda_init_error"] = error_text(exc)
    if not info["cuda_available"]:
        return info
    for index in range(info["device_count"]):
        emit(stage=f"device:{index}")
        device = {
            "index": index,
            "name": None,
            "capability": None,
            "uuid": None,
            "matmul_max_rel_error": None,
            "matmul_error": None,
            "error": None,
        }
        try:
            props = torch.cuda.get_device_properties(index)
            device["name"] = props.name
            device["capability"] = [props.major, props.minor]
            uuid = getattr(props, "uuid", None)
            device["uuid"] = str(uuid) if uuid is not None else None
        except Exception as exc:  # noqa: BLE001 - every error is a finding to report
            device["error"] = error_text(exc)
        emit(stage=f"matmul:{index}")
        try:
            device["matmul_max_rel_error"] = matmul_error(torch, f"cuda:{index}")
        except Exception as exc:  # noqa: BLE001 - every error is a finding to report
            device["matmul_error"] = error_text(exc)
        info["devices"].append(device)
    return info


def main(argv):
    # Run by path, Python puts this file's directory first on sys.path, and that directory holds
    # envcheck's own ``torch.py`` probe module: drop it before anything imports ``torch``.
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    timeout_s = float(argv[1]) if len(argv) > 1 else 0.0
    faulthandler.enable()  # a native crash leaves the Python stack on stderr for the parent to quote
    if timeout_s > 0:
        # Just before the parent kills us for hanging, leave the stack of the hang on stderr.
        faulthandler.dump_traceback_later(max(timeout_s - 1.0, timeout_s * 0.8), exit=False)
        if hasattr(signal, "alarm"):
            # The parent kills us at the limit, but a parent killed itself (SIGTERM from `timeout`, a
            # scheduler, a closed terminal) runs no atexit: then SIGALRM's default action ends us, done by
            # the kernel, so even a hang inside a C call holding the GIL cannot keep us (and the GPU) alive.
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(math.ceil(timeout_s) + ORPHAN_GRACE_S)
    emit(
        python=sys.version.split()[0],
        executable=sys.executable,
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    emit(stage="import")
    started = time.monotonic()
    try:
        import torch
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            emit(status="not_installed", error=error_text(exc), done=True)
            return 0
        emit(status="import_error", error=error_text(exc), done=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from a broken torch too
        emit(status="import_error", error=error_text(exc), done=True)
        return 0
    emit(import_s=round(time.monotonic() - started, 3))
    emit(stage="build")
    build = build_info(torch)
    emit(**build)
    emit(**cuda_info(torch, gpu_build=bool(build["cuda"] or build["hip"])))
    emit(stage="done", status="ok", done=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
