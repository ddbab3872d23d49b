"""Compiled extensions above torch: does every installed module linked against torch's or CUDA's libraries
load against the torch here?

A flash-attn, vLLM or xformers wheel built for another torch installs cleanly and fails at the first
import, in the middle of a job (``undefined symbol: _ZN3c104cuda9SetDeviceEi``, Dao-AILab/flash-attention#723;
``libcudart.so.12: cannot open shared object file``, Dao-AILab/flash-attention#853). The torch child finds
these modules by their ELF dependencies and loads each after torch (envcheck.probes.torch_child); this
check names the distribution, what the loader said in C++ words, and the reinstall that fixes it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from envcheck.core.model import Verdict, fail, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.doctor.areas import check
from envcheck.doctor.checks.torch import _torch
from envcheck.probes import symbols
from envcheck.probes.torch import TorchInfo

_CUDART = re.compile(r"^libcudart\.so\.(\d+)")


@check("packages.extensions", "Compiled extensions (flash-attn, xformers, vLLM...)")
def check_extensions(ctx: Context) -> Verdict:
    """Every installed compiled module linked against torch's libraries (libc10, libtorch*) or a CUDA runtime
    loads after torch: no undefined ``c10::``/``at::``/``torch::`` symbol (built for another torch), no missing
    ``libcudart.so.N`` (built for another CUDA)."""
    info = _torch(ctx)
    scan = info.extension_scan
    if scan is None:
        return skip("the torch child did not reach the scan for compiled extensions (see torch.import)")
    if scan.get("error"):
        return skip(f"the scan for compiled extensions could not run: {scan['error']}")
    modules = info.extension_modules
    note = f" (scan {scan['truncated']}: the rest unchecked)" if scan.get("truncated") else ""
    if not modules:
        return skip(f"no installed distribution ships a compiled module linked against torch or CUDA{note}")
    details: dict[str, Any] = {"torch": info.version, "torch_cuda": info.cuda, "scan": scan, "modules": modules}
    results = {r["index"]: r for r in info.extension_results}
    failures = [_failure(info, m, i, results.get(i)) for i, m in enumerate(modules)]
    found = [f for f in failures if f is not None]
    if found:
        details["failures"] = [f["facts"] for f in found]
        return fail("; ".join(f["summary"] for f in found), " ".join(f["fix"] for f in found),
                    " && ".join(dict.fromkeys(f["command"] for f in found if f["command"])) or None,
                    **details)  # fmt: skip
    loaded = [modules[i] for i in results]
    others = [m for m in loaded if _cuda_major_differs(m, info)]
    dists = sorted({m["distribution"] for m in loaded})
    if others:
        names = ", ".join(sorted({m["distribution"] for m in others}))
        return warn(
            f"{names} load but link another CUDA runtime than torch's (CUDA {info.cuda or 'none: CPU-only'}): "
            "two CUDA runtimes in one process",
            f"Install the builds of {names} for the CUDA torch uses.",
            **details,
        )
    unloaded = len(modules) - len(loaded)
    rest = f"; {unloaded} not loaded in time" if unloaded else ""
    return ok(f"{len(loaded)} compiled module(s) of {', '.join(dists)} load against torch {info.version}{rest}{note}",
              **details)  # fmt: skip


def _failure(
    info: TorchInfo, module: dict[str, Any], index: int, result: dict[str, Any] | None
) -> dict[str, Any] | None:
    """What went wrong loading ``module`` (summary, fix, command, facts), or None when it loaded (or was
    never reached: the scan's note says so)."""
    dist, name = module["distribution"], os.path.basename(module["path"])
    command = reinstall_command(dist)
    stopped = info.extension_stopped
    if stopped is not None and stopped.get("index") == index:
        return {
            "summary": f"{dist} {module['version']}: loading {name} after torch {stopped['how']} ({stopped['error']})",
            "fix": f"Reinstall {dist} for torch {info.version}; until then, jobs that import it {stopped['how']} too.",
            "command": command,
            "facts": {"distribution": dist, "path": module["path"], **stopped},
        }
    error = (result or {}).get("error")
    if not error:
        return None
    facts: dict[str, Any] = {"distribution": dist, "version": module["version"], "path": module["path"], "error": error}
    undefined = symbols.undefined_symbol(error)
    if undefined:
        facts.update({k: undefined[k] for k in ("symbol", "demangled", "namespace", "wrong_side", "why")})
        what = undefined["demangled"] or undefined["symbol"]
        if undefined["wrong_side"] == "torch":
            return {
                "summary": f"{dist} {module['version']}: {name} has an undefined symbol {what}: built for another "
                f"torch than {info.version}",
                "fix": f"Reinstall {dist} built for torch {_major_minor(info.version)} (the wheel for it, or built "
                "against it with --no-build-isolation).",
                "command": command,
                "facts": facts,
            }
        return {
            "summary": f"{dist} {module['version']}: {name} has an undefined symbol {what} ({undefined['why']})",
            "fix": f"Reinstall {dist} for this environment.",
            "command": command,
            "facts": facts,
        }
    missing = symbols.missing_cuda_library(error)
    if missing:
        facts.update(library=missing["library"], cuda_major=missing["cuda_major"])
        torch_cuda = f"CUDA {info.cuda}" if info.cuda else "no CUDA (a CPU-only build)"
        return {
            "summary": f"{dist} {module['version']}: {name} needs {missing['library']}, which is not found: built "
            f"for CUDA {missing['cuda_major']}, while torch {info.version} has {torch_cuda}",
            "fix": f"Install the {dist} build for the CUDA torch uses ({torch_cuda}), or a torch for CUDA "
            f"{missing['cuda_major']} if that is what the job needs.",
            "command": command,
            "facts": facts,
        }
    return {
        "summary": f"{dist} {module['version']}: {name} does not load after torch: {error}",
        "fix": f"Reinstall {dist} for this torch and Python.",
        "command": command,
        "facts": facts,
    }


def reinstall_command(dist: str) -> str:
    """The reinstall that rebuilds (or fetches the wheel of) ``dist`` against the torch installed here."""
    return f"pip install --force-reinstall --no-build-isolation --no-deps {dist}"


def _major_minor(version: str | None) -> str:
    return ".".join((version or "?").split("+", 1)[0].split(".")[:2])


def _cuda_major_differs(module: dict[str, Any], info: TorchInfo) -> bool:
    majors = {int(m[1]) for n in module["needs"] if (m := _CUDART.match(n))}
    if not majors or not info.cuda:
        return False
    return int(info.cuda.split(".", 1)[0]) not in majors
