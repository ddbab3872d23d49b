"""What an ``undefined symbol`` or a missing CUDA library in an error says: which installed distribution
owns the library, the symbol demangled, and which side is wrong (the extension was built against another
torch, another CUDA, another Python).

A flash-attn wheel chosen for another torch fails at import with ``flash_attn_2_cuda...so: undefined
symbol: _ZN3c104cuda9SetDeviceEi`` (Dao-AILab/flash-attention#723, #853); vLLM after torch was replaced,
``_ZN5torch3jit17parseSchemaOrNameERKSsb`` (vllm-project/vllm#13608). The mangled namespace says which
library the symbol came from (``3c10`` is ``c10``), and the path says which package to reinstall.

Demangling uses ``c++filt`` where it is on PATH (binutils); without it the nested name is read here, enough
to name the namespace and the function.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

#: The namespaces of torch's C++ libraries (libc10, libtorch, libtorch_cpu/cuda): a symbol in one of them
#: that a module cannot find means the module was built against another torch.
TORCH_NAMESPACES = ("c10", "at", "torch", "caffe2")
#: How long ``c++filt`` may take (it answers in milliseconds; a wedged PATH entry must not hang explain).
DEMANGLE_TIMEOUT_S = 5.0
#: ``St`` and ``Sa``... standard abbreviations that may open a nested name (Itanium C++ ABI, 5.1.8).
_STD = {"St": "std", "Sa": "std::allocator", "Sb": "std::basic_string", "Ss": "std::string"}
_SITE = re.compile(r"(?:^|/)(?:site|dist)-packages/")
#: ``[ImportError: ]LIB: undefined symbol: SYMBOL[, version ...]`` in one line.
UNDEFINED = re.compile(r"(?:(?P<lib>[^\s:'\"]+\.so[^\s:'\"]*): )?undefined symbol: (?P<symbol>[A-Za-z_][\w.$@]*)")
#: ``libcudart.so.11.0: cannot open shared object file``: a CUDA library of one major version.
#: The CUDA libraries a compiled module links by their major version (``libcudart.so.12``).
CUDA_LIBRARIES = ("cudart", "cublas", "cublasLt", "cufft", "curand", "cusparse", "cusolver", "nvrtc", "nvJitLink")
MISSING_CUDA = re.compile(
    rf"lib(?P<name>{'|'.join(CUDA_LIBRARIES)})\.so\.(?P<major>\d+)(?P<minor>[.\d]*)[^\n]{{0,40}}"
    r"cannot open shared object file"
)


def undefined_symbol(line: str) -> dict[str, Any]:
    """The facts behind ``LIB: undefined symbol: SYMBOL`` in ``line``: the symbol demangled and its
    namespace, the distribution that owns LIB (from its path, or the file lists of this Python's
    distributions), which side is wrong and the install that fixes it."""
    match = UNDEFINED.search(line)
    if match is None:
        return {}
    symbol = match["symbol"]
    library = match["lib"]
    demangled = demangle(symbol)
    namespace = namespace_of(symbol, demangled)
    owner = owner_of(library) if library else None
    side, why = _side(symbol, namespace)
    facts: dict[str, Any] = {
        "symbol": symbol,
        "demangled": demangled,
        "namespace": namespace,
        "library": library,
        "distribution": owner,
        "wrong_side": side,
        "why": why,
    }
    abi = _abi_note(symbol)
    if abi:
        facts["abi"] = abi
    torch = installed_torch()
    facts["torch_here"] = torch
    if side == "torch":
        facts["fix"] = _rebuild_fix(owner, torch, library)
    elif side == "cuda":
        facts["fix"] = (
            f"Install {_package_words(owner, library)} built for the CUDA this torch uses"
            f"{_cuda_words(torch)}, and keep LD_LIBRARY_PATH from putting another CUDA's libraries first."
        )
    elif side == "python":
        facts["fix"] = f"Reinstall {_package_words(owner, library)} for this Python ({_python_words()})."
    return facts


def missing_cuda_library(line: str) -> dict[str, Any]:
    """A ``libcudart.so.N``-style library that cannot be opened in ``line``: the module was built for CUDA N."""
    match = MISSING_CUDA.search(line)
    if match is None:
        return {}
    torch = installed_torch()
    major = int(match["major"])
    library = f"lib{match['name']}.so.{major}{match['minor']}"
    facts: dict[str, Any] = {"library": library, "cuda_major": major, "torch_here": torch, "wrong_side": "cuda"}
    cuda = _torch_cuda(torch)
    facts["why"] = f"the module that needs {library} was built for CUDA {major}" + (
        f"; this torch ({torch}) uses CUDA {cuda[0]}.{cuda[1]}" if cuda else ""
    )
    if cuda is not None and cuda[0] != major:
        facts["fix"] = (
            f"Install the failing package's build for CUDA {cuda[0]} (the one this torch uses), not CUDA {major}."
        )
    return facts


# -- demangling --------------------------------------------------------------------------------------------


def demangle(symbol: str) -> str | None:
    """``symbol`` demangled by ``c++filt`` where it is on PATH, else the nested name read here (its
    namespaces and name, without argument types); None for a name that is not mangled C++."""
    if not symbol.startswith("_Z"):
        return None
    found = _cxxfilt(symbol)
    return found if found is not None else nested_name(symbol)


def _cxxfilt(symbol: str) -> str | None:
    tool = shutil.which("c++filt")
    if tool is None:
        return None
    from envcheck.core.proc import run

    ended = run([tool, symbol], DEMANGLE_TIMEOUT_S)
    text = ended.stdout.strip()
    if ended.returncode != 0 or not text or text == symbol:
        return None
    return text


def nested_name(symbol: str) -> str | None:
    """The qualified name at the start of a mangled symbol, ``_ZN3c104cuda9SetDeviceEi`` → ``c10::cuda::
    SetDevice``: the Itanium ABI's ``N [CV-qualifiers] <length><identifier>... E``, or a plain
    ``_Z<length><identifier>``. Templates and operators end the reading (what was read is returned)."""
    rest = symbol[2:]
    if rest.startswith("L"):  # internal linkage
        rest = rest[1:]
    parts: list[str] = []
    if rest.startswith("N"):
        rest = rest[1:].lstrip("rVKRO")
        if rest[:2] in _STD:
            parts.append(_STD[rest[:2]])
            rest = rest[2:]
    while rest and rest[0].isdigit():
        digits = re.match(r"\d+", rest)
        assert digits is not None
        length = int(digits[0])
        start = len(digits[0])
        name = rest[start : start + length]
        if len(name) < length:
            break
        parts.append(name)
        rest = rest[start + length :]
        if rest[:1] == "B":  # an ABI tag (B5cxx11) belongs to the name before it
            tag = re.match(r"B(\d+)", rest)
            if tag is None:
                break
            rest = rest[len(tag[0]) + int(tag[1]) :]
    return "::".join(parts) or None


def namespace_of(symbol: str, demangled: str | None) -> str | None:
    """The outermost namespace of a C++ symbol (``c10``, ``at``, ``torch``, ``std``); None for a C name."""
    name = nested_name(symbol) if symbol.startswith("_Z") else None
    name = name or demangled
    if not name or "::" not in name:
        return None
    return name.split("::", 1)[0].split("(")[0] or None


def _side(symbol: str, namespace: str | None) -> tuple[str, str]:
    """Which side is wrong, and why, in words."""
    if namespace in TORCH_NAMESPACES:
        return "torch", f"{namespace}:: is torch's own C++ library: the module was built against another torch"
    if re.match(r"_?_?(?:cuda|cu[A-Z]|cublas|cudnn|cufft|curand|cusparse|cusolver|nccl|nvrtc|nvJitLink)", symbol):
        return (
            "cuda",
            "the symbol is a CUDA library's: the module was built for another CUDA (or another CUDA "
            "library is loaded first, from LD_LIBRARY_PATH)",
        )
    if re.match(r"_?Py|PyInit_", symbol):
        return "python", "the symbol is CPython's: the module was built for another Python version"
    return "unknown", "the module was built against another version of a library it links"


def _abi_note(symbol: str) -> str | None:
    """torch wheels since 2.7 use the C++11 ABI; older ones did not (``torch._C._GLIBCXX_USE_CXX11_ABI``): a
    symbol naming the old ``std::string`` (``Ss``) or the new one (``__cxx11``) tells which the module wants."""
    if "cxx11" in symbol:
        return "the module wants the C++11 ABI (std::__cxx11): a torch built with _GLIBCXX_USE_CXX11_ABI=1"
    if symbol.startswith("_Z") and re.search(r"E[RPK]*Ss", symbol):
        return "the module wants the pre-C++11 ABI (std::string as Ss): a torch built with _GLIBCXX_USE_CXX11_ABI=0"
    return None


# -- which distribution owns a library ---------------------------------------------------------------------


def owner_of(library: str) -> dict[str, Any] | None:
    """The installed distribution that ships ``library``: from a path under ``site-packages`` (that
    directory's distributions, even when it is not this Python's), else by file name among this Python's
    distributions. None when none lists it."""
    path = PurePosixPath(library)
    found = _SITE.search(library) if path.is_absolute() else None
    if found is not None:
        site = library[: found.end()].rstrip("/")
        inside = library[found.end() :]
        for dist in _distributions([site]):
            if any(str(f) == inside for f in dist.files or ()):
                return _dist_facts(dist, site)
        return None
    name = path.name  # a bare file name, or a path outside any site-packages: by name in this Python
    for dist in _distributions(None):
        if any(PurePosixPath(str(f)).name == name for f in dist.files or ()):
            return _dist_facts(dist, None)
    return None


def _distributions(path: list[str] | None) -> list[metadata.Distribution]:
    try:
        return list(metadata.distributions(path=path) if path is not None else metadata.distributions())
    except OSError:
        return []


def _dist_facts(dist: metadata.Distribution, site: str | None) -> dict[str, Any]:
    where = site or str(Path(str(dist.locate_file(""))))
    return {"name": dist.metadata["Name"], "version": dist.version, "site_packages": where}


def installed_torch() -> str | None:
    """This Python's torch version from its metadata (``2.13.0+cu128``), without importing torch."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def _torch_cuda(torch: str | None) -> tuple[int, int] | None:
    """(major, minor) of the CUDA a torch version's local tag names (``+cu128`` → (12, 8))."""
    tag = re.search(r"\+cu(\d+)(\d)$", torch or "")
    return (int(tag[1]), int(tag[2])) if tag else None


def _cuda_words(torch: str | None) -> str:
    cuda = _torch_cuda(torch)
    return f" (CUDA {cuda[0]}.{cuda[1]})" if cuda else ""


def _python_words() -> str:
    import sys

    return f"Python {sys.version_info.major}.{sys.version_info.minor}"


def _package_words(owner: dict[str, Any] | None, library: str | None) -> str:
    if owner is not None:
        return f"{owner['name']}"
    return f"the package that ships {os.path.basename(library)}" if library else "the failing package"


def _rebuild_fix(owner: dict[str, Any] | None, torch: str | None, library: str | None) -> str:
    """The install that fixes a module built against another torch."""
    package = _package_words(owner, library)
    name = owner["name"] if owner is not None else "PACKAGE"
    here = ""
    if torch:
        base = torch.split("+", 1)[0]
        major_minor = ".".join(base.split(".")[:2])
        here = f" (the wheel for torch {major_minor}{_cuda_words(torch)}, or built against it)"
    return (
        f"Reinstall {package} for the torch installed here{here}: "
        f"`pip install --no-build-isolation --force-reinstall --no-deps {name}`."
    )
