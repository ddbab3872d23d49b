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

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from envcheck.core.model import Verdict, fail, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.doctor.areas import check
from envcheck.doctor.checks.torch import _cards, _torch, covering_target
from envcheck.doctor.reading import nvml_state
from envcheck.probes import symbols
from envcheck.probes import toolkit as _toolkit_probe  # noqa: F401 - registers the "toolkit" probe
from envcheck.probes.toolkit import ToolkitInfo
from envcheck.probes.torch import TorchInfo

_CUDART = re.compile(r"^libcudart\.so\.(\d+)")
#: The driver's user-space libraries, which no pip package ships: a module linking one loads only where the driver is.
_DRIVER_LIBRARY = re.compile(r"lib(?:cuda|nvidia-ml)\.so\.1: cannot open shared object file")


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
    # A module that needs the NVIDIA driver's own library (vLLM's allocator links libcuda.so.1) cannot load on a
    # machine without the driver; that is the driver checks' finding, not the package's, where NVML agrees.
    driverless = set()
    if nvml_state(ctx, consult=True) is None:
        driverless = {i for i, r in results.items() if _DRIVER_LIBRARY.search(r.get("error") or "")}
    spare = alternatives_not_needed(modules, results)
    if spare:
        details["alternatives_not_loaded"] = [modules[i]["path"] for i in sorted(spare)]
    skipped = driverless | spare
    failures = [_failure(info, m, i, results.get(i)) for i, m in enumerate(modules) if i not in skipped]
    found = [f for f in failures if f is not None]
    if found:
        details["failures"] = [f["facts"] for f in found]
        return fail("; ".join(f["summary"] for f in found), " ".join(f["fix"] for f in found),
                    " && ".join(dict.fromkeys(f["command"] for f in found if f["command"])) or None,
                    **details)  # fmt: skip
    loaded = [modules[i] for i in results if i not in skipped]
    if driverless:
        names = ", ".join(sorted({modules[i]["distribution"] for i in driverless}))
        note += f"; {len(driverless)} module(s) of {names} need the NVIDIA driver's library, absent here (not judged)"
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
    unloaded = len(modules) - len(results)
    rest = f"; {unloaded} not loaded in time" if unloaded else ""
    if not loaded:
        return skip(f"no compiled module could be judged{rest}{note}", **details)
    return ok(f"{len(loaded)} compiled module(s) of {', '.join(dists)} load against torch {info.version}{rest}{note}",
              **details)  # fmt: skip


_NUMBERED = re.compile(r"^(?P<stem>.*\D)\d+$")


def alternatives_not_needed(modules: list[dict[str, Any]], results: dict[int, dict[str, Any]]) -> set[int]:
    """The modules that are one of a set of alternatives of which another loaded: torchaudio's
    ``libtorio_ffmpeg4/5/6.so`` (one per FFmpeg major: only the installed FFmpeg's loads), torchcodec's
    ``libtorchcodec_core4``-``8``. A set is the modules of one distribution in one directory whose names differ
    only in a number before the first dot; the others failing to load is how they are meant to be."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for index, module in enumerate(modules):
        directory, name = os.path.split(module["path"])
        match = _NUMBERED.match(name.split(".", 1)[0])
        if match:
            groups.setdefault((module["distribution"], directory, match["stem"]), []).append(index)
    spare: set[int] = set()
    for members in groups.values():
        loaded = [i for i in members if i in results and not results[i].get("error")]
        if len(members) > 1 and loaded:
            spare |= {i for i in members if i not in loaded}
    return spare


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


# -- build records -------------------------------------------------------------------------------------------

#: xformers' first release built on torch's stable ABI: it needs a torch at least as new as the one it was built
#: with, not that exact one (facebookresearch/xformers#1353; FAILURES.md, "Third-party CUDA extensions").
XFORMERS_STABLE_ABI = Version("0.0.34")
BNB_CUDA_VERSION = "BNB_CUDA_VERSION"


@check("packages.extension_builds", "Build records of xformers, DeepSpeed, bitsandbytes")
def check_extension_builds(ctx: Context) -> Verdict:
    """What xformers, DeepSpeed and bitsandbytes wrote down about their build matches the torch here. These fail
    without an undefined symbol to show: xformers imports and only warns its fast kernels are gone, DeepSpeed's
    prebuilt ops refuse another torch at first use, bitsandbytes finds no library for torch's CUDA."""
    info = _torch(ctx)
    records = info.stack_records
    if records is None:
        return skip("the torch child did not reach the build records (see torch.import)")
    if "error" in records and not isinstance(records.get("error"), dict):
        return skip(f"the build records could not be read: {records['error']}")
    if not records:
        return skip("none of xformers, DeepSpeed and bitsandbytes is installed")
    judges = {"xformers": _xformers, "deepspeed": _deepspeed, "bitsandbytes": _bitsandbytes}
    findings = [_judged(judges[n], n, ctx, info, entry) for n, entry in sorted(records.items()) if n in judges]
    details: dict[str, Any] = {"records": records, "torch": info.version, "torch_cuda": info.cuda}
    for level, verdict in (("fail", fail), ("warn", warn)):
        bad = [f for f in findings if f["level"] == level]
        if bad:
            commands = [f["command"] for f in bad if f.get("command")]
            return verdict("; ".join(f["summary"] for f in bad), " ".join(f["fix"] for f in bad),
                           " && ".join(dict.fromkeys(commands)) or None, **details)  # fmt: skip
    said = "; ".join(f["summary"] for f in findings)
    if all(f["level"] == "unknown" for f in findings):
        return skip(said, **details)
    return ok(said, **details)


def _judged(judge: Any, name: str, ctx: Context, info: TorchInfo, entry: Any) -> dict[str, Any]:
    """``judge``'s finding, or "unknown" where the record is not of the shape the package writes (a hand-edited
    file, a future format): a record that cannot be read says nothing, and never stops the check."""
    version = entry.get("version") if isinstance(entry, dict) else None
    try:
        return judge(ctx, info, entry)
    except (TypeError, AttributeError, ValueError, KeyError, IndexError) as exc:
        return _finding("unknown", f"{name} {version}: build record of an unexpected shape ({type(exc).__name__})")


def _finding(level: str, summary: str, fix: str = "", command: str | None = None) -> dict[str, Any]:
    return {"level": level, "summary": summary, "fix": fix, "command": command}


def _unread(name: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    if entry.get("error"):
        return _finding("unknown", f"{name} {entry['version']}: build record unreadable ({entry['error']})")
    if entry.get("record") is None:
        return _finding("unknown", f"{name} {entry['version']}: no build record in {entry['path']}")
    return None


def _xformers(ctx: Context, info: TorchInfo, entry: dict[str, Any]) -> dict[str, Any]:
    """cpp_lib.json against the torch, CUDA and Python here, the way xformers' own warning compares them."""
    record = entry.get("record")
    if record is None and not entry.get("error"):
        return _finding("ok", f"xformers {entry['version']}: no C++ library (a Python-only build: nothing to mismatch)")
    if isinstance(record, dict) and record.get("version") is None and record.get("compiled"):
        return _finding("unknown", f"xformers {entry['version']}: compiled modules but no cpp_lib.json (its build "
                        "is not recorded: packages.extensions judges whether they load)")  # fmt: skip
    unread = _unread("xformers", entry)
    if unread:
        return unread
    built = record["version"]
    torch_built, cuda_built, python_built = (_text(built.get(k)) for k in ("torch", "cuda", "python"))
    cuda_built = int(cuda_built) if cuda_built and cuda_built.isdigit() else None
    here, stable = _public(info.version), _at_least(entry["version"], XFORMERS_STABLE_ABI)
    problems = []
    if torch_built and here:
        wanted = _public(torch_built)
        if (stable and _older(here, wanted)) or (not stable and here != wanted):
            problems.append(f"PyTorch {torch_built} (you have {info.version})")
    cuda_text = f"{cuda_built // 100}.{cuda_built % 100}" if cuda_built else None
    if cuda_text and (not info.cuda or info.cuda.split(".")[0] != cuda_text.split(".")[0]):
        has = f"CUDA {info.cuda}" if info.cuda else "none: a CPU-only build"
        problems.append(f"CUDA {cuda_text} (torch has {has})")
    if python_built and info.python and python_built.split(".")[:2] != info.python.split(".")[:2]:
        problems.append(f"Python {python_built} (you have {info.python})")
    if not problems:
        return _finding("ok", f"xformers {entry['version']} built for torch {torch_built}")
    return _finding(
        "fail",
        f"xformers {entry['version']} was built for {', '.join(problems)}: it imports, but its C++/CUDA kernels "
        "(memory-efficient attention, SwiGLU) are silently unavailable",
        f"Install the xformers build for torch {info.version}: each release is built for one torch and pins it "
        "(see its Requires-Dist), so install the release for this torch from the index torch came from, then "
        "confirm that `python -m xformers.info` lists its kernels as available.",
        "python -m xformers.info",
    )


def _deepspeed(ctx: Context, info: TorchInfo, entry: dict[str, Any]) -> dict[str, Any]:
    """DeepSpeed's prebuilt ops against torch's major.minor and CUDA (its ``assert_torch_info``); without prebuilt
    ops, the nvcc its just-in-time builds need."""
    unread = _unread("deepspeed", entry)
    if unread:
        return unread
    record = entry["record"]
    ops, torch_info = record.get("installed_ops") or {}, record.get("torch_info") or {}
    if not isinstance(ops, dict) or not isinstance(torch_info, dict):
        return _finding("unknown", f"deepspeed {entry['version']}: build record of an unexpected shape")
    prebuilt = sorted(str(op) for op, built in ops.items() if built)
    torch_info = {k: _text(v) for k, v in torch_info.items()}
    here = ".".join((_public(info.version) or "").split(".")[:2])
    cuda_here = ".".join((info.cuda or "").split(".")[:2])
    name = f"deepspeed {entry['version']}"
    if prebuilt:
        problems = []
        if torch_info.get("version") and torch_info["version"] != here:
            problems.append(f"torch {torch_info['version']} (runtime torch {here})")
        built_cuda = torch_info.get("cuda_version")
        if built_cuda and built_cuda != "0.0" and info.cuda and built_cuda != cuda_here:
            problems.append(f"CUDA {built_cuda} (torch's CUDA {cuda_here})")
        if problems:
            return _finding(
                "fail",
                f"{name}'s prebuilt ops ({', '.join(prebuilt[:4])}{'…' if len(prebuilt) > 4 else ''}) were compiled "
                f"for {' and '.join(problems)}: DeepSpeed raises 'version mismatch! DeepSpeed ops were compiled and "
                "installed with a different version than what is being used at runtime' when they load",
                f"Reinstall DeepSpeed with its ops built against torch {here}: DS_BUILD_OPS=1 builds them at install "
                "(needs nvcc); without it, they are compiled at first use.",
                "pip install --force-reinstall --no-build-isolation --no-deps --no-cache-dir deepspeed",
            )
        return _finding("ok", f"{name}: {len(prebuilt)} prebuilt op(s) built for torch {here}")
    if not info.cuda:
        return _finding("ok", f"{name}: no prebuilt ops; torch is CPU-only, so no CUDA op is compiled")
    toolkit: ToolkitInfo = ctx.probe("toolkit")
    nvcc = toolkit.for_extensions
    if nvcc is None:
        return _finding(
            "warn",
            f"{name} compiles its CUDA ops at first use (none prebuilt) and there is no CUDA toolkit (nvcc, "
            "CUDA_HOME): 'MissingCUDAException: CUDA_HOME does not exist, unable to compile CUDA op(s)', at import "
            "in some releases (deepspeedai/DeepSpeed#2772)",
            f"Install the CUDA toolkit for CUDA {cuda_here} (its nvcc) and set CUDA_HOME to it, or install DeepSpeed "
            "with its ops prebuilt (DS_BUILD_OPS=1) where a toolkit is.",
            None,
        )
    return _finding("ok", f"{name}: ops compiled at first use with nvcc {nvcc.version or '(version unknown)'}")


def _bitsandbytes(ctx: Context, info: TorchInfo, entry: dict[str, Any]) -> dict[str, Any]:
    """The library bitsandbytes will load (``libbitsandbytes_cuda{MAJOR}{MINOR}``, from torch's CUDA or
    ``BNB_CUDA_VERSION``) is among those it ships."""
    unread = _unread("bitsandbytes", entry)
    if unread:
        return unread
    shipped = entry["record"].get("libraries") or []
    if not isinstance(shipped, list) or not all(isinstance(lib, str) for lib in shipped):
        return _finding("unknown", f"bitsandbytes {entry['version']}: build record of an unexpected shape")
    name = f"bitsandbytes {entry['version']}"
    if info.hip:
        return _finding("unknown", f"{name}: ROCm builds not judged ({len(shipped)} libraries shipped)")
    override = (ctx.env.get(BNB_CUDA_VERSION) or "").strip()
    torch_cuda = "".join((info.cuda or "").split(".")[:2])
    if not shipped:
        return _finding("unknown", f"{name}: ships no native library under a known name")
    wanted = f"cuda{override}" if override and info.cuda else f"cuda{torch_cuda}" if info.cuda else "cpu"
    have = any(lib.startswith(f"libbitsandbytes_{wanted}.") or lib.startswith(f"libbitsandbytes_{wanted}_")
               for lib in shipped)  # fmt: skip
    cudas = sorted(lib.split("_", 1)[1].split(".")[0] for lib in shipped)
    if not have:
        why = f"{BNB_CUDA_VERSION}={override}" if override and info.cuda else (
            f"torch's CUDA {info.cuda}" if info.cuda else "a CPU-only torch")  # fmt: skip
        fix = (
            f"Unset {BNB_CUDA_VERSION} (bitsandbytes then picks torch's CUDA), or set it to one it ships."
            if override and info.cuda
            else "Install a bitsandbytes release that ships a library for this CUDA (newer ones cover newer CUDA)."
        )
        command = f"unset {BNB_CUDA_VERSION}" if override and info.cuda else "pip install -U bitsandbytes"
        return _finding(
            "fail",
            f"{name} has no libbitsandbytes_{wanted} for {why} (it ships {', '.join(cudas)}): it fails with 'CUDA "
            "Setup failed despite GPU being available'",
            fix,
            command,
        )
    if override and info.cuda and override != torch_cuda:
        return _finding(
            "warn",
            f"{name}: {BNB_CUDA_VERSION}={override} makes it load libbitsandbytes_cuda{override}, not the library "
            f"for torch's CUDA {info.cuda}: two CUDA runtimes in one process",
            f"Unset {BNB_CUDA_VERSION} unless it is a deliberate workaround.",
            f"unset {BNB_CUDA_VERSION}",
        )
    return _finding("ok", f"{name} ships libbitsandbytes_{wanted} for {'CUDA ' + info.cuda if info.cuda else 'CPU'}")


def _text(value: Any) -> str | None:
    """A record's value as text (a hand-written 2.3 is "2.3"); None for nothing or a structure."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    return str(value)


def _public(version: str | None) -> str | None:
    """``"2.3.1+cu121"`` -> ``"2.3.1"``."""
    return version.split("+", 1)[0] if version else None


def _at_least(version: str | None, floor: Version) -> bool:
    try:
        return Version(version or "") >= floor
    except InvalidVersion:
        return False


def _older(here: str, wanted: str) -> bool:
    try:
        return Version(here) < Version(wanted)
    except InvalidVersion:
        return here != wanted


# -- GPU targets -------------------------------------------------------------------------------------------------

#: Distribution -> (versions the floor applies to, the oldest compute capability they run on, why, what to use
#: instead), from the packages' own documentation: where the package itself refuses a GPU before any kernel is
#: looked for. flash-attn 1.x ran on Turing; FlashAttention-3's build also carries sm_80 kernels by default, so
#: its fatbin, not a floor, decides.
CAPABILITY_FLOORS: dict[str, tuple[SpecifierSet, tuple[int, int], str, str]] = {
    "flash-attn": (
        SpecifierSet(">=2"),
        (8, 0),
        "FlashAttention-2 supports Ampere GPUs or newer ('FlashAttention only supports Ampere GPUs or newer', "
        "Dao-AILab/flash-attention#762)",
        'Use PyTorch\'s scaled_dot_product_attention on this GPU (transformers: attn_implementation="sdpa"), or '
        "flash-attn 1.x for Turing.",
    ),
}
#: Packages whose build reads its own variable for the GPU targets (beside torch's TORCH_CUDA_ARCH_LIST), and
#: downloads a prebuilt wheel unless told to build: flash-attn's setup.py (FLASH_ATTENTION_FORCE_BUILD,
#: FLASH_ATTN_CUDA_ARCHS).
BUILD_VARIABLES = {"flash-attn": 'FLASH_ATTENTION_FORCE_BUILD=TRUE FLASH_ATTN_CUDA_ARCHS="{arch}" '}


def build_command(dist: str, capability: tuple[int, int]) -> str:
    """The build of ``dist`` from source for a GPU of ``capability``: ``--no-binary`` so pip cannot fetch the
    same wheel again, and the package's own target variable where it has one."""
    canonical = dist.lower().replace("_", "-")
    arch = f"{capability[0]}{capability[1]}"
    extra = BUILD_VARIABLES.get(canonical, "").format(arch=arch)
    return (
        f'{extra}TORCH_CUDA_ARCH_LIST="{capability[0]}.{capability[1]}" pip install --force-reinstall '
        f"--no-build-isolation --no-deps --no-binary {dist} {dist}"
    )


@check("packages.extension_arch", "Compiled extensions have kernels for every GPU")
def check_extension_arch(ctx: Context) -> Verdict:
    """Every GPU is one the loaded extensions can run on: the package's own floor (flash-attn 2 needs compute
    capability 8.0), and the targets of the CUDA code in its binaries (their fatbins' cubins and PTX), by the
    same rule as torch.arch. A package is judged as a whole: many ship optional modules for one architecture
    (xformers' FlashAttention-3 module, vLLM's Hopper-only kernels), so a GPU fails only where none of the
    package's modules has kernels for it. Without it the first kernel fails mid-job: "no kernel image is
    available"."""
    info = _torch(ctx)
    modules = info.extension_modules
    results = {r["index"]: r for r in info.extension_results}
    loaded = [(m, results[i]) for i, m in enumerate(modules) if i in results and not results[i].get("error")]
    if not loaded:
        return skip("no compiled extension loaded to judge (see packages.extensions)")
    cards = _cards(ctx, info)
    if not cards:
        return skip("no GPU with a known compute capability to judge the extensions against")
    by_dist: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for module, result in loaded:
        by_dist.setdefault(module["distribution"], []).append((module, result))
    problems: list[str] = []
    fixes: list[str] = []
    covered: dict[str, dict[str, str]] = {}
    unread: list[str] = []
    judged: list[str] = []
    for dist, members in sorted(by_dist.items()):
        version = members[0][0]["version"]
        label = f"{dist} {version}"
        floor = CAPABILITY_FLOORS.get(dist.lower().replace("_", "-"))
        floored = floor is not None and _in(version, floor[0])
        if floor is not None and floored:
            low = [f"{gpu} ({name}, {c[0]}.{c[1]})" for gpu, name, c in cards if c < floor[1]]
            if low:
                problems.append(f"{label} on {', '.join(low)}: {floor[2]}")
                fixes.append(floor[3])
        with_code = [(m, r["targets"]) for m, r in members if r.get("targets")]
        unread += [f"{label}: {os.path.basename(m['path'])}" for m, r in members if r.get("targets") is None]
        if floored or with_code:
            judged.append(label)
        if not with_code:
            continue
        missing: dict[tuple[str, tuple[int, int]], list[str]] = {}
        for gpu, name, capability in cards:
            running = [(m, t) for m, ts in with_code if (t := covering_target(capability, ts)) is not None]
            if running:
                covered.setdefault(label, {})[gpu] = f"{os.path.basename(running[0][0]['path'])}: {running[0][1]}"
            else:
                missing.setdefault((name, capability), []).append(gpu)
        targets = " ".join(sorted({t for _, ts in with_code for t in ts}, key=_target_order))
        for (name, capability), gpus in missing.items():
            problems.append(
                f"{label}: no kernels for {', '.join(gpus)} ({name}, compute capability "
                f"{capability[0]}.{capability[1]}) in any of its {len(with_code)} module(s) with CUDA code: "
                f"built for {targets}"
            )
            fixes.append(
                f"Install a {dist} build whose targets include sm_{capability[0]}{capability[1]} (usually a "
                f"build for a newer CUDA), or build it here: `{build_command(dist, capability)}`."
            )
    details: dict[str, Any] = {"covered_by": covered, "gpus": [f"{g} ({n})" for g, n, _ in cards]}
    if unread:
        details["fatbin_unread"] = unread
    if problems:
        return fail("; ".join(problems), " ".join(dict.fromkeys(fixes)), **details)
    if not judged:
        return skip(f"none of the {len(loaded)} loaded compiled module(s) has CUDA code or a known GPU floor",
                    **details)  # fmt: skip
    capabilities = ", ".join(f"{c[0]}.{c[1]}" for c in sorted({c for _, _, c in cards}))
    note = f" ({len(unread)} module(s) whose CUDA code could not be read: not judged)" if unread else ""
    return ok(f"{', '.join(judged)} run on compute capability {capabilities}{note}", **details)


def _target_order(flag: str) -> tuple[bool, int, str]:
    """``sm_80`` before ``sm_90a`` before ``compute_90``: binaries first, then by target."""
    kind, _, rest = flag.partition("_")
    digits = "".join(c for c in rest if c.isdigit())
    return kind != "sm", int(digits or 0), rest


def _in(version: str | None, spec: SpecifierSet) -> bool:
    try:
        return Version(version or "") in spec
    except InvalidVersion:
        return False
