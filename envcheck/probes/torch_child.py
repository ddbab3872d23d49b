"""The script the torch probe runs in a child process: ``python torch_child.py LIMIT_S``, where LIMIT_S
is when the parent will have stopped it at the latest (past that, only an orphan is still running).

Why a separate process: importing torch can raise (a missing ``libcudnn.so.9``), hang (a wedged
driver during CUDA initialisation, a stuck network filesystem) or kill the interpreter outright
(SIGSEGV/SIGABRT in a native library). Run here, each of those is a fact the parent reports instead
of the end of the doctor.

This file never imports envcheck, so a broken or half-installed envcheck cannot change what it finds,
and any interpreter (another virtualenv's python) can run it by path. The one file it takes from envcheck,
by path, is envcheck/core/workers.py (standard library only): the protocol every child of envcheck speaks.

Protocol (envcheck.core.workers): every line the parent reads is one marked JSON object; the parent
merges them in order. A ``{"stage": ...}`` line comes before each step that might hang or crash, so that
the parent can say *what* hung or crashed; the last line carries ``"done": true``.

Nothing here interrupts the work on a timer before LIMIT_S: a slow import that finishes is a slow import,
and the only judge of "too slow" is the parent. When it gives up it first sends :data:`DUMP_SIGNAL`, which
faulthandler answers by writing every thread's stack to stderr (from the signal handler, in C, so even a
hang inside a C call holding the GIL answers), and then kills the process group.
"""

import os
import re
import signal
import sys
import time

if __package__:
    from envcheck.probes.child_protocol import load
else:  # run by path: this file's directory is first on sys.path (until main drops it)
    from child_protocol import load

workers = load()
MARK = workers.MARK
emit = workers.emit
error_text = workers.error_text

#: The matmul every visible GPU runs: small enough to take milliseconds, big enough that a broken
#: kernel, bad memory or a wrong-arch fallback shows up as a wrong number.
MATMUL_N = 64

#: How long past its own limit the child ends itself, should the parent not have killed it.
ORPHAN_GRACE_S = workers.ORPHAN_GRACE_S

#: Distributions that ship CUDA's libraries to a pip-installed torch (nvidia-cudnn-cu12, nvidia-nccl-cu12;
#: CUDA 13 wheels drop the suffix, and cuda-toolkit pulls them in) and triton, the compiler behind
#: torch.compile, whose version must match torch's: what PyTorch's bug template asks for.
CUDA_WHEEL_PREFIXES = ("nvidia-", "cuda-")
#: nvidia-* distributions that hold no CUDA library: NVML's Python bindings, NVIDIA's index helper.
NOT_CUDA_WHEELS = ("nvidia-ml-py", "nvidia-ml-py3", "nvidia-pyindex")
TRITON_NAMES = ("triton", "pytorch-triton", "pytorch-triton-rocm", "pytorch-triton-xpu")


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
        # torch.version.debug: a debug build runs many times slower (collect_env's "Is debug build").
        "debug": None,
    }
    debug = getattr(getattr(torch, "version", None), "debug", None)
    info["debug"] = bool(debug) if debug is not None else None
    info.update(runtime_info(torch, info["path"]))
    try:
        info["cudnn_version"] = torch.backends.cudnn.version()
    except Exception as exc:  # noqa: BLE001 - a CUDA build whose libcudnn cannot load says so here
        info["lib_errors"]["cudnn"] = error_text(exc)
    # The cuDNN torch was compiled against, beside the one loaded (cudnn.version() asks the loaded library).
    compiled = getattr(getattr(getattr(torch, "_C", None), "_cudnn", None), "getCompileVersion", None)
    try:
        info["cudnn_compile_version"] = list(compiled()) if compiled is not None else None
    except Exception:  # noqa: BLE001 - a build without cuDNN: nothing compiled against
        info["cudnn_compile_version"] = None
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


def runtime_info(torch, torch_dir):
    """The CUDA runtime torch loaded and the CUDA wheels and triton installed next to it.

    ``torch.version.cuda`` is what torch was built against; the libcudart actually loaded can differ
    (another copy first on ``LD_LIBRARY_PATH``, a mismatched nvidia-cuda-runtime wheel). Its version is
    asked of the library itself: ``cudaRuntimeGetVersion`` only reports the runtime's own version, it
    neither initialises CUDA nor talks to the driver, so it is safe where CUDA cannot start.
    """
    info = {"cuda_runtime_version": None, "cuda_runtime_library": None, "cuda_wheels": {}, "triton_version": None}
    library = loaded_library("libcudart.so")
    if library is not None:
        info["cuda_runtime_library"] = library
        try:
            import ctypes

            version = ctypes.c_int(0)
            if ctypes.CDLL(library).cudaRuntimeGetVersion(ctypes.byref(version)) == 0 and version.value:
                # CUDART_VERSION is 1000 * major + 10 * minor (cuda_runtime_api.h): 12040 is 12.4.
                info["cuda_runtime_version"] = f"{version.value // 1000}.{version.value % 1000 // 10}"
        except (OSError, AttributeError, ValueError):
            pass  # not a CUDA runtime after all, or one without the function: the version stays unknown
    info["cuda_wheels"], info["triton_version"] = wheels_next_to(os.path.dirname(torch_dir))
    return info


def loaded_library(prefix):
    """The path of the first mapped shared object whose file name starts with ``prefix`` (Linux only)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.rstrip("\n").split(None, 5)  # address perms offset dev inode [path]
                if len(fields) == 6 and os.path.basename(fields[5]).startswith(prefix):
                    return fields[5]
    except OSError:
        pass
    return None


#: The CUDA libraries whose mapped copies the child reports: what torch, cuDNN and NCCL load at import and at
#: CUDA start (libcudnn_* are cuDNN 9's sub-libraries, loaded by libcudnn.so.9 as needed).
CUDA_LIBRARY = re.compile(
    r"^lib(cudnn\w*|cublas|cublasLt|cudart|nccl|nvJitLink|cusparse|cusparseLt|cufft|curand|cusolver|nvrtc|cupti)"
    r"\.so(\.\d+)*$"
)


def mapped_cuda_libraries(site_dir):
    """Every CUDA library this process has mapped, where from, and the copy the nvidia-* wheels ship when the
    mapped one is another (``LD_LIBRARY_PATH`` or ``LD_PRELOAD`` first, a library another package loaded
    before torch): [{"name", "path", "wheel_copy"}], in the order the loader mapped them.

    Why the mapped files and not what torch reports: torch says which versions it was built with; the loader
    decides which files serve them. A ``libnvJitLink.so.12`` from a system CUDA shadowing the wheel's gives
    ``undefined symbol: __nvJitLinkComplete_12_4``, two cuDNN majors in one process give "Could not load library
    libcudnn_ops_infer.so.8" (FAILURES.md rows 9-10), and only the mapped paths show either."""
    wheels = {}
    nvidia = os.path.join(site_dir, "nvidia")
    try:
        for package in sorted(os.listdir(nvidia)):
            lib = os.path.join(nvidia, package, "lib")
            for name in os.listdir(lib) if os.path.isdir(lib) else ():
                wheels.setdefault(name, os.path.join(lib, name))
    except OSError:
        pass
    found, seen = [], set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.rstrip("\n").split(None, 5)  # address perms offset dev inode [path]
                if len(fields) < 6 or fields[5] in seen:
                    continue
                path = fields[5]
                name = os.path.basename(path)
                if not CUDA_LIBRARY.match(name):
                    continue
                seen.add(path)
                copy = wheels.get(name)
                same = copy is not None and _same_file(copy, path)
                found.append({"name": name, "path": path, "wheel_copy": None if same else copy})
    except OSError:
        return None
    return found


def _same_file(a, b, edge=1 << 16):
    """Whether ``a`` and ``b`` are one library: the same file, or a copy of the same size whose first and last
    64 KiB match (a byte-for-byte copy of the wheel's file in another directory is harmless; a cuBLASLt is half a
    gigabyte, too much to compare whole on the doctor's path)."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        size = os.path.getsize(a)
        if size != os.path.getsize(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            if fa.read(edge) != fb.read(edge):
                return False
            fa.seek(max(size - edge, 0))
            fb.seek(max(size - edge, 0))
            return fa.read(edge) == fb.read(edge)
    except OSError:
        return False


def wheels_next_to(site_dir):
    """({canonical name: version} of the CUDA wheels, triton's version) from the ``*.dist-info``
    directories in ``site_dir``. Their names are ``{name}-{version}.dist-info`` with neither part holding
    a ``-`` (the wheel spec), so one directory listing says it all, without reading any metadata."""
    wheels, triton = {}, None
    try:
        entries = sorted(os.listdir(site_dir))
    except OSError:
        return wheels, triton
    for entry in entries:
        if not entry.endswith(".dist-info") or "-" not in entry:
            continue
        name, _, version = entry[: -len(".dist-info")].partition("-")
        name = name.lower().replace("_", "-").replace(".", "-")
        if name.startswith(CUDA_WHEEL_PREFIXES) and name not in NOT_CUDA_WHEELS:
            wheels[name] = version
        elif name in TRITON_NAMES and triton is None:
            triton = version
    return wheels, triton


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
            # What a benchmark sizes its work by (the memory-copy working set is a multiple of the L2), read
            # here once so that the parent describes the device whole and no worker describes it again.
            device["l2_bytes"] = getattr(props, "L2_cache_size", None)
            device["multiprocessors"] = getattr(props, "multi_processor_count", None)
        except Exception as exc:  # noqa: BLE001 - every error is a finding to report
            device["error"] = error_text(exc)
        emit(stage=f"matmul:{index}")
        try:
            device["matmul_max_rel_error"] = matmul_error(torch, f"cuda:{index}")
        except Exception as exc:  # noqa: BLE001 - every error is a finding to report
            device["matmul_error"] = error_text(exc)
        info["devices"].append(device)
    return info


def load_extensions(timeout_s):
    """Load, after torch, every compiled module that links torch's or CUDA's libraries (envcheck/probes/elf.py
    finds them), the way Python's import would: ``dlopen`` with ``RTLD_NOW``, so an undefined ``c10::``
    symbol or a missing ``libcudart.so.12`` fails here with the loader's own words.

    Why here and not in a second child: the modules need torch's libraries already loaded (they find
    ``libc10.so`` by its soname, as when ``import torch`` comes first in a job), and a second child would
    import torch a second time, doubling the doctor's slowest step. The risk (a module whose static
    constructors hang or crash) is bounded instead: every fact about torch is said before this starts, each
    load announces itself as a stage, and each runs under a timer whose SIGALRM ends the process (the
    default action, done by the kernel, so a hang inside C cannot hold it). The parent then judges torch on
    what it said and names the module that hung or crashed. ``ctypes`` rather than ``import``: the
    loader's verdict is what matters, and no package's Python (its imports, its side effects) runs.
    """
    import ctypes
    from importlib import metadata

    elf = load("probes", "elf")
    distributions = list(metadata.distributions())
    try:
        emit(stack_records=load("probes", "stack").records(distributions))
    except Exception as exc:  # noqa: BLE001 - a record that cannot be read is said, and loading goes on
        emit(stack_records={"error": error_text(exc)})
    found = elf.scan(distributions)
    modules = found.pop("modules")
    emit(extension_scan=found, extension_modules=modules)
    ends = time.monotonic() + timeout_s if timeout_s > 0 else None
    stage_ends = time.monotonic() + EXTENSIONS_S
    results = []
    for index, module in enumerate(modules):
        left = stage_ends - time.monotonic()
        if left <= 0:
            emit(extension_scan={**found, "truncated": f"loading stopped after {EXTENSIONS_S:g} s"})
            break
        emit(stage=f"extension:{index}")
        bound = min(left, EXTENSION_LOAD_S)
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, bound)
        started = time.monotonic()
        error = None
        try:
            ctypes.CDLL(module["path"], mode=os.RTLD_NOW | os.RTLD_LOCAL)
        except OSError as exc:
            error = str(exc)
        finally:
            if hasattr(signal, "setitimer"):
                # Back to the orphan alarm (the same timer): what is left of the child's own limit.
                rest = ends - time.monotonic() + ORPHAN_GRACE_S if ends is not None else 0
                signal.setitimer(signal.ITIMER_REAL, max(rest, 0.01) if ends is not None else 0)
        result = {"index": index, "error": error, "seconds": round(time.monotonic() - started, 3)}
        if error is None:
            # Which GPUs its kernels can run on: read from its fatbin, inside the same time budget.
            result["targets"] = elf.fatbin_targets(module["path"])
        results.append(result)
        emit(extension_results=results)


#: How long loading one extension module may take, and all of them together: a load is milliseconds, so a
#: module still loading after this is hung (its static constructors waiting on something).
EXTENSION_LOAD_S = 5.0
EXTENSIONS_S = 8.0


def main(argv):
    timeout_s = float(argv[1]) if len(argv) > 1 else 0.0
    # Off this directory's sys.path entry (envcheck's own torch.py), a stack on stderr for a native crash and
    # for the parent's "where are you stuck?", and the orphan alarm. (A parent killed outright takes us with
    # it: the kernel does that for every child of envcheck, envcheck.core.proc.start; the alarm is the bound
    # elsewhere.)
    workers.start_script(__file__, timeout_s)
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
    emit(stage="libraries")
    emit(libraries=mapped_cuda_libraries(os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))))
    # Everything about torch is said: from here a crash or hang is an extension's, and the parent still
    # judges torch on what it said (``torch_done``).
    emit(stage="extensions", torch_done=True)
    load_extensions(timeout_s)
    emit(stage="done", status="ok", done=True)
    return 0


if __name__ == "__main__":
    # Everything is said: skip the interpreter's teardown. With torch (and a CUDA context) loaded it takes
    # most of a second on a busy 2-vCPU machine (torch 2.13 CPU), which the doctor would wait for nothing,
    # and a teardown that hangs (a CUDA context on a bad GPU) would hold up a finished report.
    workers.exit_now(main(sys.argv))
