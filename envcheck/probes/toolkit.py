"""Probe the tools torch's extension builder uses: the CUDA compiler ``nvcc``, found the way torch finds
it, and the host compilers and CMake (the versions PyTorch's bug template asks for, via collect_env).

torch wheels carry their own CUDA runtime, so nvcc matters only for building CUDA extensions
(``torch.utils.cpp_extension``, flash-attn, apex, DeepSpeed ops); there a toolkit whose major version
differs from torch's CUDA fails the build. torch looks for the toolkit in this order
(``torch/utils/cpp_extension.py``, ``_find_cuda_home``): ``CUDA_HOME``, then ``CUDA_PATH``, then the
directory above ``nvcc`` on ``PATH``, then ``/usr/local/cuda``. Every place that holds an nvcc is
reported, so a check can also say when ``PATH`` and ``CUDA_HOME`` disagree.

Every tool runs through :mod:`envcheck.core.proc` (its own process group, killed whole on timeout and at
envcheck's exit), all at once, and only in the full doctor: this probe is never part of ``--quick``,
which a healthcheck runs every few seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from envcheck.core import proc
from envcheck.core.model import Fix
from envcheck.probes.registry import probe

DEFAULT_CUDA_HOME = "/usr/local/cuda"
#: ``nvcc --version`` (and ``gcc --version``...) start a small binary; if it takes longer, something
#: (NFS, a wrapper) hangs.
NVCC_TIMEOUT_S = 10.0
#: The probe stops its commands this much before the doctor's deadline, to report them as hung itself
#: (the kill, reading the pipes) rather than be reported as hung as a whole.
_MARGIN_S = 0.5
_RELEASE = re.compile(r"release (\d+)\.(\d+)")

#: Build tool -> what follows this pattern in its ``--version`` output: the same patterns as PyTorch's
#: collect_env (``torch/utils/collect_env.py``: get_gcc_version, get_clang_version, get_cmake_version), so
#: that both report the same words ("(Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0"); cmake's "version" dropped.
BUILD_TOOLS: dict[str, re.Pattern[str]] = {
    "gcc": re.compile(r"gcc (.*)"),
    "clang": re.compile(r"clang version (.*)"),
    "cmake": re.compile(r"cmake version (.*)"),
}


@dataclass
class Nvcc:
    """One nvcc: where it was found (``CUDA_HOME``, ``CUDA_PATH``, ``PATH`` or the default home)."""

    source: str
    path: str
    #: ``"12.4"``; None when ``nvcc --version`` failed (then ``error`` says how) or the file is missing.
    version: str | None = None
    error: str | None = None


@dataclass
class ToolkitInfo:
    #: Every nvcc found, in torch's search order, the same binary listed once.
    found: list[Nvcc] = field(default_factory=list)
    #: The toolkit torch's extension builder would use (None when it would find none).
    cuda_home: str | None = None
    #: Where ``cuda_home`` came from, in torch's order.
    cuda_home_source: str | None = None
    #: ``gcc``, ``clang``, ``cmake`` -> the version the tool on ``PATH`` prints; None when it is not there,
    #: does not answer in time or prints no version.
    build_tools: dict[str, str | None] = field(default_factory=dict)

    @property
    def for_extensions(self) -> Nvcc | None:
        """The nvcc inside the toolkit torch would build extensions with."""
        return next((n for n in self.found if n.source == self.cuda_home_source), None)


@probe(
    "toolkit",
    timeout_s=NVCC_TIMEOUT_S + 5,
    what="nvcc --version (the CUDA toolkit) and the host compilers",
    hang_fix=Fix(
        "Running nvcc did not finish: check whether the CUDA toolkit lives on a slow or hung network filesystem.",
        "timeout 10 nvcc --version",
    ),
)
def probe_toolkit(
    env: Mapping[str, str] | None = None,
    *,
    default_home: str = DEFAULT_CUDA_HOME,
    deadline_s: float | None = None,
) -> ToolkitInfo:
    """Find every nvcc and the build tools on ``PATH``, then run all their ``--version`` at once, each for
    at most :data:`NVCC_TIMEOUT_S` and never past what is left of the doctor's deadline (``deadline_s``)."""
    env = os.environ if env is None else env
    search_path = env.get("PATH", os.defpath)
    on_path = shutil.which("nvcc", path=search_path)
    homes = [
        ("CUDA_HOME", env.get("CUDA_HOME") or None),
        ("CUDA_PATH", env.get("CUDA_PATH") or None),
        ("PATH", str(Path(on_path).parent.parent) if on_path else None),
        (default_home, default_home if Path(default_home).is_dir() else None),
    ]
    info = ToolkitInfo()
    seen: set[str] = set()
    nvccs: list[tuple[str, str]] = []
    for source, home in homes:
        if home is None:
            continue
        if info.cuda_home is None:
            info.cuda_home, info.cuda_home_source = home, source
        nvcc = on_path if source == "PATH" else str(Path(home) / "bin" / "nvcc")
        if not os.access(nvcc, os.X_OK):
            if source == info.cuda_home_source:
                info.found.append(Nvcc(source, nvcc, error="no nvcc in this toolkit directory"))
            continue
        real = os.path.realpath(nvcc)
        if real in seen:
            continue
        seen.add(real)
        nvccs.append((source, nvcc))
    tools = {name: shutil.which(name, path=search_path) for name in BUILD_TOOLS}
    limit = NVCC_TIMEOUT_S if deadline_s is None else max(0.1, min(NVCC_TIMEOUT_S, deadline_s - _MARGIN_S))
    started = time.monotonic()
    running = {("nvcc", source, path): _start(path, env) for source, path in nvccs}
    running.update({("tool", name, path): _start(path, env) for name, path in tools.items() if path})
    ended = {key: child if isinstance(child, OSError) else proc.wait(child, limit, started=started)
             for key, child in running.items()}  # fmt: skip
    for (kind, source, path), result in ended.items():
        if kind == "nvcc":
            info.found.append(_nvcc(source, path, result, limit))
    for name in BUILD_TOOLS:
        result = ended.get(("tool", name, tools[name] or ""))
        info.build_tools[name] = _tool_version(name, result) if result is not None else None
    return info


def _start(path: str, env: Mapping[str, str]) -> subprocess.Popen[bytes] | OSError:
    try:
        return proc.start([path, "--version"], env=env)
    except OSError as exc:
        return exc


def _nvcc(source: str, nvcc: str, result: proc.Ended | OSError, limit: float) -> Nvcc:
    if isinstance(result, OSError):
        return Nvcc(source, nvcc, error=f"cannot run nvcc: {result}")
    if result.timed_out:
        return Nvcc(source, nvcc, error=f"`nvcc --version` did not finish within {limit:g} s")
    match = _RELEASE.search(result.stdout)
    if match is None:
        tail = (result.stdout + result.stderr).strip()[-300:]
        return Nvcc(source, nvcc, error=f"`nvcc --version` exited {result.returncode} without a release: {tail!r}")
    return Nvcc(source, nvcc, version=f"{match[1]}.{match[2]}")


def _tool_version(name: str, result: proc.Ended | OSError) -> str | None:
    if isinstance(result, OSError) or result.timed_out or result.returncode != 0:
        return None
    match = BUILD_TOOLS[name].search(result.stdout)
    return match[1].strip() if match else None
