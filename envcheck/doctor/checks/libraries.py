"""The CUDA libraries torch really loaded: which files the loader mapped, judged in the torch child after
import and CUDA start.

torch says which cuDNN, cuBLAS and NCCL it was built with; the loader decides which files serve them. Two
failures live only in that gap, and only the mapped paths show them:

- a library from outside the nvidia-* wheels torch was installed with, usually a system CUDA first on
  ``LD_LIBRARY_PATH``: ``libnvJitLink.so.12: undefined symbol: __nvJitLinkComplete_12_4`` (pytorch/pytorch#111469),
  ``CUDNN_STATUS_VERSION_MISMATCH``;
- two majors of one library in one process, one loaded by another package before torch (CTranslate2's cuDNN 8
  beside torch's cuDNN 9: ``Could not load library libcudnn_ops_infer.so.8``, FAILURES.md row 10).

``env.ld_library_path`` says what *could* shadow torch's libraries; this check says what did.
"""

from __future__ import annotations

import os
import re
from typing import Any

from envcheck.core.model import Verdict, fail, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.doctor.areas import check
from envcheck.doctor.checks.torch import _cuda_torch, _version, cudnn_parts
from envcheck.probes.torch import TorchInfo

#: File-name stem -> what users call the library. cuDNN 9's sub-libraries (libcudnn_graph, libcudnn_cnn...) are
#: one family with libcudnn.
NAMES = {
    "libcudnn": "cuDNN",
    "libcublas": "cuBLAS",
    "libcublasLt": "cuBLASLt",
    "libcudart": "the CUDA runtime",
    "libnccl": "NCCL",
    "libnvJitLink": "nvJitLink",
    "libcusparse": "cuSPARSE",
    "libcusparseLt": "cuSPARSELt",
    "libcufft": "cuFFT",
    "libcurand": "cuRAND",
    "libcusolver": "cuSOLVER",
    "libnvrtc": "NVRTC",
    "libcupti": "CUPTI",
}


def family(name: str) -> tuple[str, int | None]:
    """``"libcudnn_ops_infer.so.8"`` -> ("libcudnn", 8); ``"libcublasLt.so.13"`` -> ("libcublasLt", 13)."""
    stem, _, rest = name.partition(".so")
    major = rest.lstrip(".").split(".", 1)[0]
    base = "libcudnn" if stem.startswith("libcudnn") else stem
    return base, int(major) if major.isdigit() else None


@check("torch.libraries", "CUDA libraries torch loaded")
def check_libraries(ctx: Context) -> Verdict:
    """Every CUDA library mapped in torch's process comes from where torch was installed to find it (the nvidia-*
    wheels, or the one CUDA install it was built for) and no library is mapped in two majors."""
    info = _cuda_torch(ctx, ": it loads no CUDA library")
    libraries = info.libraries
    if libraries is None:
        return skip("the torch child could not read which libraries it had mapped (/proc/self/maps)")
    if not libraries:
        return skip("the torch child had no CUDA library mapped after import (nothing to judge)")
    details: dict[str, Any] = {"libraries": libraries}
    majors: dict[str, dict[int, list[str]]] = {}
    for lib in libraries:
        base, major = family(lib["name"])
        if major is not None:
            majors.setdefault(base, {}).setdefault(major, []).append(lib["path"])
    twins = {base: found for base, found in majors.items() if len(found) > 1}
    shadowed = [lib for lib in libraries if lib.get("wheel_copy")]
    ld_path = [e for e in ctx.env.get("LD_LIBRARY_PATH", "").split(":") if e]
    findings, fixes, command = [], [], None
    for base, found in sorted(twins.items()):
        what = NAMES.get(base, base)
        listed = "; ".join(f"{what} {major}: {paths[0]}" for major, paths in sorted(found.items()))
        findings.append(
            f"two majors of {what} are loaded in one process ({listed}): each package must find "
            "its own, or a call fails with 'Could not load library' or a version mismatch"
        )
        fixes.append(
            f"One process can use one {what} major: find the package that loads the other one (an old nvidia-* "
            f"wheel for another CUDA, CTranslate2, TensorFlow, an old JAX) and install its build for {what} "
            f"{max(found)}, or run it in a process of its own."
        )
    if shadowed:
        preload = [e for e in re.split(r"[:\s]+", ctx.env.get("LD_PRELOAD", "")) if e]
        on_path = [lib for lib in shadowed if _dir_on(lib["path"], ld_path)]
        preloaded = [lib for lib in shadowed if any(os.path.basename(e) == lib["name"] for e in preload)]
        listed = "; ".join(f"{lib['name']} from {os.path.dirname(lib['path'])}" for lib in shadowed)
        wheel_dirs = sorted({os.path.dirname(lib["wheel_copy"]) for lib in shadowed})
        where = " (on LD_LIBRARY_PATH)" if on_path else " (LD_PRELOAD)" if preloaded else ""
        findings.append(
            f"torch loaded {listed}{where}, not the copies its nvidia-* wheels ship ({', '.join(wheel_dirs)}): "
            "a version mismatch there gives 'undefined symbol: __nvJitLinkComplete_…' or "
            "CUDNN_STATUS_VERSION_MISMATCH"
        )
        if on_path:
            bad = {os.path.realpath(os.path.dirname(lib["path"])) for lib in on_path}
            kept = [e for e in ld_path if os.path.realpath(e) not in bad]
            command = f"export LD_LIBRARY_PATH={':'.join(kept)}" if kept else "unset LD_LIBRARY_PATH"
            fixes.append(
                "The loader searched LD_LIBRARY_PATH before the paths torch was linked with: drop "
                f"{', '.join(sorted(bad))} from it for Python jobs (torch finds its wheels' libraries itself)."
            )
        elif preloaded:
            kept = [e for e in preload if not any(os.path.basename(e) == lib["name"] for lib in preloaded)]
            command = f"export LD_PRELOAD={':'.join(kept)}" if kept else "unset LD_PRELOAD"
            fixes.append("LD_PRELOAD loads these before anything else: drop them from it for Python jobs.")
        else:
            fixes.append(
                "Another package loaded these before torch (a sitecustomize, a library imported first): import "
                "torch first, or install that package's build for the same CUDA libraries as torch's wheels."
            )
    mismatch, behind = versions_against_build(info)
    details["versions"] = {"mismatch": mismatch, "behind": behind}
    if mismatch:
        return fail("; ".join(mismatch + findings),
                    "torch loads a library of another major than it was built with: reinstall torch with its own "
                    "nvidia-* wheels, and keep other copies of these libraries off LD_LIBRARY_PATH and LD_PRELOAD."
                    + (" " + " ".join(fixes) if fixes else ""), command, **details)  # fmt: skip
    findings += behind
    if behind and not fixes:
        fixes.append(
            "Upgrade the nvidia-* wheel of that library to at least the version torch was built with (the one "
            "`pip show torch` requires), or drop the older copy from the path."
        )
    if twins or shadowed or behind:
        # A warning, not a failure: each was measured loaded, not measured broken. The libraries version their
        # symbols (cudaMalloc@@libcudart.so.13), so two majors can serve two packages side by side, and a copy
        # of the same version elsewhere works; the errors these cause appear at the first call that crosses.
        return warn("; ".join(findings), " ".join(fixes), command, **details)
    loaded = sorted({(family(lib["name"])[0], family(lib["name"])[1]) for lib in libraries}, key=str)
    names = ", ".join(f"{NAMES.get(base, base)} {major}" for base, major in loaded if major is not None)
    dirs = sorted({os.path.dirname(lib["path"]) for lib in libraries})
    source = "the nvidia-* wheels" if all(f"{os.sep}nvidia{os.sep}" in d for d in dirs) else ", ".join(dirs)
    pairs = (("cuDNN", info.cudnn_version and info.cudnn_compile_version),
             ("the CUDA runtime", info.cuda_runtime_version and info.cuda))  # fmt: skip
    compared = [name for name, known in pairs if known]
    built = f"; {' and '.join(compared)} of the version torch was built with" if compared else ""
    return ok(f"{names}: each in one major, from {source}{built}", **details)


def versions_against_build(info: TorchInfo) -> tuple[list[str], list[str]]:
    """(another major than built: fails at first use, older than built: may lack what torch calls) for the loaded
    cuDNN and CUDA runtime against what torch was compiled with."""
    mismatch: list[str] = []
    behind: list[str] = []
    pairs = []
    if info.cudnn_version and info.cudnn_compile_version:
        loaded = cudnn_parts(info.cudnn_version)
        pairs.append(("cuDNN", loaded, tuple(info.cudnn_compile_version[:3])))
    runtime = _version(info.cuda_runtime_version)
    built = _version(info.cuda)
    if runtime and built:
        pairs.append(("the CUDA runtime", runtime, built))
    for name, loaded, compiled in pairs:
        said = f"{name} {'.'.join(map(str, loaded))} is loaded, torch was built with {'.'.join(map(str, compiled))}"
        if loaded[0] != compiled[0]:
            mismatch.append(said)
        elif loaded[: len(compiled)] < compiled[: len(loaded)]:
            behind.append(said + " (older)")
    return mismatch, behind


def _dir_on(path: str, entries: list[str]) -> bool:
    """Whether the directory holding ``path`` is one of the ``LD_LIBRARY_PATH`` entries."""
    where = os.path.realpath(os.path.dirname(path))
    return any(os.path.realpath(e) == where for e in entries)
