"""Probe the CUDA toolkit's compiler, ``nvcc``, the way torch's extension builder would find it.

torch wheels carry their own CUDA runtime, so nvcc matters only for building CUDA extensions
(``torch.utils.cpp_extension``, flash-attn, apex, DeepSpeed ops); there a toolkit whose major version
differs from torch's CUDA fails the build. torch looks for the toolkit in this order
(``torch/utils/cpp_extension.py``, ``_find_cuda_home``): ``CUDA_HOME``, then ``CUDA_PATH``, then the
directory above ``nvcc`` on ``PATH``, then ``/usr/local/cuda``. Every place that holds an nvcc is
reported, so a check can also say when ``PATH`` and ``CUDA_HOME`` disagree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from envcheck.core.model import Fix
from envcheck.core.registry import probe

DEFAULT_CUDA_HOME = "/usr/local/cuda"
#: ``nvcc --version`` starts a small binary; if it takes longer, something (NFS, a wrapper) hangs.
NVCC_TIMEOUT_S = 10.0
_RELEASE = re.compile(r"release (\d+)\.(\d+)")


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

    @property
    def for_extensions(self) -> Nvcc | None:
        """The nvcc inside the toolkit torch would build extensions with."""
        return next((n for n in self.found if n.source == self.cuda_home_source), None)


@probe(
    "toolkit",
    timeout_s=4 * NVCC_TIMEOUT_S + 5,
    what="nvcc --version (the CUDA toolkit)",
    hang_fix=Fix(
        "Running nvcc did not finish: check whether the CUDA toolkit lives on a slow or hung network filesystem.",
        "timeout 10 nvcc --version",
    ),
)
def probe_toolkit(env: Mapping[str, str] | None = None, *, default_home: str = DEFAULT_CUDA_HOME) -> ToolkitInfo:
    env = os.environ if env is None else env
    on_path = shutil.which("nvcc", path=env.get("PATH", os.defpath))
    homes = [
        ("CUDA_HOME", env.get("CUDA_HOME") or None),
        ("CUDA_PATH", env.get("CUDA_PATH") or None),
        ("PATH", str(Path(on_path).parent.parent) if on_path else None),
        (default_home, default_home if Path(default_home).is_dir() else None),
    ]
    info = ToolkitInfo()
    seen: set[str] = set()
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
        info.found.append(_read_version(source, nvcc, env))
    return info


def _read_version(source: str, nvcc: str, env: Mapping[str, str]) -> Nvcc:
    try:
        done = subprocess.run(
            [nvcc, "--version"],
            capture_output=True,
            text=True,
            errors="replace",  # a wrapper's stray bytes must not make the probe raise
            timeout=NVCC_TIMEOUT_S,
            env=dict(env),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Nvcc(source, nvcc, error=f"`nvcc --version` did not finish within {NVCC_TIMEOUT_S:g} s")
    except OSError as exc:
        return Nvcc(source, nvcc, error=f"cannot run nvcc: {exc}")
    match = _RELEASE.search(done.stdout)
    if match is None:
        tail = (done.stdout + done.stderr).strip()[-300:]
        return Nvcc(source, nvcc, error=f"`nvcc --version` exited {done.returncode} without a release: {tail!r}")
    return Nvcc(source, nvcc, version=f"{match[1]}.{match[2]}")
