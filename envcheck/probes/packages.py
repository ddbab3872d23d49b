"""Probe the installed Python distributions from their metadata — without importing any of them.

Importing torch takes seconds and can crash or initialise CUDA, so this probe only reads
``*.dist-info`` metadata through :mod:`importlib.metadata` (what pip itself reads). torch's build
flavour comes, in order of trust, from its version's local label (``2.5.1+cu124``), from
``torch/version.py`` read as *text*, or from the CUDA wheels it requires (``nvidia-*-cu12``). The
torch child probe, elsewhere, does the importing.

It also finds, without importing them, where ``pynvml`` and ``torch`` would be imported from, and which
installed distribution put ``pynvml`` there: three distributions install a module of that name, and a
vendored copy may come first on the path.

It also lists what each ``LD_LIBRARY_PATH`` entry holds of the CUDA libraries torch ships, because the
dynamic loader searches those directories before the RUNPATH that points torch at its own copies.

``paths`` is the seam for tests: fake ``*.dist-info`` directories in a temporary directory stand for
an environment without installing anything.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from envcheck.probes.registry import probe


@dataclass
class Dist:
    """One installed distribution, as its metadata says."""

    name: str  # canonical (PEP 503): "nvidia-ml-py"
    display_name: str
    version: str
    requires: list[str]
    location: str | None


@dataclass
class TorchBuild:
    version: str
    #: ``cuda``, ``rocm``, ``cpu``, ``xpu`` or None when nothing said which.
    kind: str | None
    #: "13.0" for CUDA, "6.2" for ROCm; None otherwise or unknown.
    accelerator_version: str | None
    #: How the flavour was learned: ``version label``, ``torch/version.py`` or ``requirements``.
    source: str | None
    location: str | None
    #: Directories holding the CUDA libraries this torch loads (torch/lib, site-packages/nvidia/*/lib).
    own_lib_dirs: list[str] = field(default_factory=list)
    #: The CUDA library file names in those directories (``libcudart.so.13``): a same-named file found
    #: earlier by the loader is what replaces them.
    own_libs: list[str] = field(default_factory=list)

    @property
    def flavour(self) -> str:
        """What a person calls it: "CUDA 13.0", "ROCm 6.2", "CPU-only", "XPU" or "unknown build"."""
        if self.kind == "cuda":
            return f"CUDA {self.accelerator_version}" if self.accelerator_version else "CUDA"
        if self.kind == "rocm":
            return f"ROCm {self.accelerator_version}" if self.accelerator_version else "ROCm"
        return {"cpu": "CPU-only", "xpu": "XPU"}.get(self.kind or "", "unknown build")


@dataclass
class LibraryDir:
    """One ``LD_LIBRARY_PATH`` entry and the CUDA libraries in it that torch also ships."""

    path: str
    exists: bool
    cuda_libs: list[str] = field(default_factory=list)


@dataclass
class ModuleFile:
    """Where Python would import a top-level module from, found without importing it."""

    path: str
    #: The installed distribution whose file list (RECORD) holds that file; None for a copy no distribution
    #: installed (vendored into a project, or a directory on PYTHONPATH).
    owner: Dist | None = None


@dataclass
class PackagesState:
    python: str
    #: The distribution importlib (and so Python) uses for each canonical name: the first on the path.
    dists: dict[str, Dist]
    #: Further copies of the same name later on the path, hidden by the first (a ~/.local torch, say).
    shadowed: dict[str, list[Dist]] = field(default_factory=dict)
    #: ``*.dist-info`` directories without a readable Name or Version.
    unreadable: list[str] = field(default_factory=list)
    torch: TorchBuild | None = None
    ld_library_path: list[LibraryDir] = field(default_factory=list)
    #: The ``pynvml`` module Python would import (None: there is none).
    pynvml_module: ModuleFile | None = None
    #: Where ``torch`` would be imported from when no torch distribution is installed (a source checkout on
    #: PYTHONPATH): None when there is a distribution, or no torch at all.
    torch_module: str | None = None


#: Libraries torch's CUDA wheels ship (in torch/lib or nvidia-* wheels); another copy found first by the
#: loader breaks torch with "undefined symbol" or version errors.
#: Distributions known to install a top-level ``pynvml``: NVIDIA's nvidia-ml-py (pynvml.py), the deprecated
#: pynvml (its own pynvml/ package up to 11.x; from 12 a shim over nvidia-ml-py) and the older unofficial
#: nvidia-ml-py3 (pynvml.py, the same file name as nvidia-ml-py's).
PYNVML_DISTRIBUTIONS = ("nvidia-ml-py", "pynvml", "nvidia-ml-py3")

CUDA_LIB_PREFIXES = (
    "libcudart.so", "libcublas.so", "libcublasLt.so", "libcudnn", "libnccl.so", "libcusparse.so", "libcufft.so",
    "libcurand.so", "libcusolver.so", "libnvJitLink.so", "libnvrtc.so", "libcupti.so", "libnvToolsExt.so",
)  # fmt: skip


@probe("packages", timeout_s=15.0, what="installed Python packages (importlib.metadata)")
def probe_packages(env: Mapping[str, str], paths: Sequence[str] | None = None) -> PackagesState:
    state = PackagesState(python=sys.executable, dists={})
    seen: set[str] = set()
    pynvml_owners: list[tuple[Dist, metadata.Distribution]] = []
    for dist in metadata.distributions(path=list(paths) if paths is not None else sys.path):
        where = getattr(dist, "_path", None)
        where = os.path.realpath(where) if where is not None else repr(dist)
        if where in seen:  # the same directory reached through two sys.path entries
            continue
        seen.add(where)
        try:
            meta = dist.metadata
            name, version = (meta["Name"] or "") if meta else "", (meta["Version"] or "") if meta else ""
            requires = list(dist.requires or [])
        except (OSError, ValueError):  # unreadable or undecodable metadata is reported, not raised
            name = version = ""
        if not name or not version:
            state.unreadable.append(where)
            continue
        entry = Dist(canonicalize_name(name), name, version, requires, _location(dist))
        if entry.name in PYNVML_DISTRIBUTIONS:
            pynvml_owners.append((entry, dist))
        if entry.name in state.dists:
            state.shadowed.setdefault(entry.name, []).append(entry)
        else:
            state.dists[entry.name] = entry
    torch = state.dists.get("torch")
    if torch is not None:
        state.torch = torch_build(torch, state.dists)
    else:
        state.torch_module = find_module("torch", paths, packages_only=True)
    pynvml_path = find_module("pynvml", paths)
    if pynvml_path is not None:
        state.pynvml_module = ModuleFile(pynvml_path, _owner(pynvml_path, pynvml_owners))
    state.ld_library_path = scan_library_path(env.get("LD_LIBRARY_PATH", ""))
    return state


def _location(dist: metadata.Distribution) -> str | None:
    try:
        return str(dist.locate_file(""))
    except (NotImplementedError, AttributeError):
        return None


def find_module(name: str, paths: Sequence[str] | None, *, packages_only: bool = False) -> str | None:
    """The file (or, for a namespace package, the directory) ``import name`` would load, found the way
    Python's path finder finds it, without executing it. ``packages_only`` ignores a bare directory of that
    name, which is an importable but empty namespace package (a folder called torch in the working tree)."""
    from importlib.machinery import PathFinder

    try:
        spec = PathFinder.find_spec(name, list(paths) if paths is not None else None)
    except (ImportError, ValueError, OSError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin != "namespace":
        return spec.origin
    if packages_only:
        return None
    return next(iter(spec.submodule_search_locations or []), None)


def _owner(path: str, candidates: list[tuple[Dist, metadata.Distribution]]) -> Dist | None:
    """The distribution whose RECORD lists ``path`` (only the few known to install pynvml are read)."""
    target = os.path.realpath(path)
    for entry, dist in candidates:
        try:
            files = dist.files or []
        except (OSError, ValueError):
            continue
        for file in files:
            if file.parts and file.parts[0] in ("pynvml", "pynvml.py"):
                if os.path.realpath(dist.locate_file(file)) == target:
                    return entry
    return None


_CUDA_LABEL = re.compile(r"^cu(\d+)(\d)$")  # cu130 -> 13.0, cu118 -> 11.8
_ROCM_LABEL = re.compile(r"^rocm(\d+(?:\.\d+)*)$")
_VERSION_PY = re.compile(r"^(cuda|hip|rocm|xpu)\s*(?::[^=]*)?=\s*(?:'([^']*)'|\"([^\"]*)\"|None)", re.MULTILINE)
#: torch 2.x requires e.g. nvidia-cuda-runtime-cu12==12.4.127, or (CUDA 13) cuda-toolkit[...]==13.0.3.
_CUDA_RUNTIME_REQ = re.compile(
    r"^(?:nvidia-cuda-runtime(?:-cu\d+)?|cuda-toolkit)\s*(?:\[[^\]]*\])?\s*==\s*(\d+)\.(\d+)"
)
_CU_SUFFIX = re.compile(r"^nvidia-[a-z0-9-]+-cu(\d+)\b")


def torch_build(torch: Dist, dists: Mapping[str, Dist]) -> TorchBuild:
    """Work out torch's build flavour without importing it (see the module docstring for the order)."""
    build = TorchBuild(torch.version, None, None, None, torch.location)
    _, _, label = torch.version.partition("+")
    if label:
        if m := _CUDA_LABEL.match(label):
            build.kind, build.accelerator_version = "cuda", f"{m[1]}.{m[2]}"
        elif m := _ROCM_LABEL.match(label):
            build.kind, build.accelerator_version = "rocm", m[1]
        elif label in ("cpu", "xpu"):
            build.kind = label
        if build.kind:
            build.source = "version label"
    if build.kind is None and torch.location:
        _from_version_py(build, Path(torch.location) / "torch" / "version.py")
    if build.kind is None:
        _from_requirements(build, torch.requires)
    if build.kind == "cuda" and torch.location:
        build.own_lib_dirs = _own_lib_dirs(Path(torch.location))
        build.own_libs = sorted({name for d in build.own_lib_dirs for name in cuda_libs_in(d) or []})
    return build


def _from_version_py(build: TorchBuild, path: Path) -> None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    values = {m[1]: (m[2] if m[2] is not None else m[3]) for m in _VERSION_PY.finditer(text)}
    if values.get("hip"):
        build.kind, build.accelerator_version = "rocm", values.get("rocm") or values["hip"]
    elif values.get("cuda"):
        build.kind, build.accelerator_version = "cuda", values["cuda"]
    elif values.get("xpu"):
        build.kind = "xpu"
    elif "cuda" in values:  # the file says cuda = None and names no other accelerator
        build.kind = "cpu"
    if build.kind:
        build.source = "torch/version.py"


def _from_requirements(build: TorchBuild, requires: list[str]) -> None:
    for req in requires:
        if m := _CUDA_RUNTIME_REQ.match(req):
            build.kind, build.accelerator_version, build.source = "cuda", f"{m[1]}.{m[2]}", "requirements"
            return
    for req in requires:
        if m := _CU_SUFFIX.match(req):
            # Only the major version is in the name (nvidia-cudnn-cu12): say "12.x" rather than guess.
            build.kind, build.accelerator_version, build.source = "cuda", f"{m[1]}.x", "requirements"
            return


def _own_lib_dirs(site: Path) -> list[str]:
    dirs = [site / "torch" / "lib", *sorted(site.glob("nvidia/*/lib"))]
    # conda's torch links against the CUDA libraries of its environment: <prefix>/lib/pythonX.Y/site-packages.
    prefix = site.parent.parent.parent
    if site.name == "site-packages" and (prefix / "conda-meta").is_dir():
        dirs.append(prefix / "lib")
    return [os.path.realpath(d) for d in dirs if d.is_dir()]


def scan_library_path(value: str) -> list[LibraryDir]:
    """Each ``LD_LIBRARY_PATH`` entry, whether it exists, and which of torch's CUDA libraries it holds.

    An empty entry means the current directory to the loader, so it is reported as ``""``.
    """
    result = []
    for entry in value.split(os.pathsep) if value else []:
        libs = cuda_libs_in(entry or ".")
        result.append(LibraryDir(entry, libs is not None, libs or []))
    return result


def cuda_libs_in(directory: str | Path) -> list[str] | None:
    """The CUDA shared libraries (of the kinds torch ships) in ``directory``; None if it cannot be listed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    return sorted(n for n in names if n.startswith(CUDA_LIB_PREFIXES) and ".so" in n)
