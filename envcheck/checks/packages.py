"""Package checks: the torch build, its companions, numpy, the deprecated pynvml, and broken dependencies.

All of them judge the ``packages`` probe (installed metadata only; nothing is imported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envcheck.core.model import Verdict, fail, ok, warn
from envcheck.core.probing import Context
from envcheck.core.registry import check
from envcheck.probes import packages as _packages_probe  # noqa: F401 - registers the "packages" probe
from envcheck.probes.packages import Dist, PackagesState


def _state(ctx: Context) -> PackagesState:
    return ctx.probe("packages")


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _label(version: str) -> str:
    return version.partition("+")[2]


@check("packages.torch", "torch")
def check_torch(ctx: Context) -> Verdict:
    """torch is installed, and which build it is (CUDA x.y, ROCm, CPU-only) — read from metadata, not imported."""
    state = _state(ctx)
    build = state.torch
    if build is None:
        return warn(
            "torch is not installed in this Python",
            f"Install the torch build for your GPU and driver into this Python ({state.python}).",
            "pip install torch",
            python=state.python,
        )
    how = f" (from {build.source})" if build.source else ""
    details: dict[str, Any] = {"version": build.version, "flavour": build.flavour, "kind": build.kind,
                               "accelerator_version": build.accelerator_version, "source": build.source,
                               "location": build.location}  # fmt: skip
    if "torch" in state.shadowed:
        details["shadowed"] = [f"{d.version} at {d.location}" for d in state.shadowed["torch"]]
    return ok(f"torch {build.version}, {build.flavour}{how}", **details)


# torchvision 0.(minor+15) pairs with torch 2.minor, torchaudio 2.minor with torch 2.minor; for torch 1.x,
# torchvision 0.(minor+1) and torchaudio 0.minor. Source: the compatibility tables in the READMEs of
# pytorch/vision and pytorch/audio.
def expected_companion(companion: str, torch_version: Version) -> str | None:
    """The ``major.minor`` of ``companion`` built for ``torch_version``, or None when there is no rule."""
    major, minor = torch_version.major, torch_version.minor
    if companion == "torchvision":
        return f"0.{minor + 15}" if major == 2 else f"0.{minor + 1}" if major == 1 else None
    if companion == "torchaudio":
        return f"2.{minor}" if major == 2 else f"0.{minor}" if major == 1 else None
    return None


COMPANIONS = ("torchvision", "torchaudio")


@check("packages.companions", "torchvision / torchaudio")
def check_companions(ctx: Context) -> Verdict:
    """torchvision and torchaudio, where installed, were built for this torch (a mismatch fails at import)."""
    state = _state(ctx)
    torch = state.dists.get("torch")
    torch_version = _version(torch.version) if torch else None
    if torch is None or torch_version is None:
        present = [n for n in COMPANIONS if n in state.dists]
        if present and torch is None:
            return fail(
                f"{', '.join(present)} installed without torch",
                "Install torch together with them, from the same index, so the versions match.",
                "pip install torch " + " ".join(present),
            )
        return ok("torch not installed or its version unreadable: nothing to match", installed=present)
    found, mismatched, flavour_mismatched = {}, [], []
    for name in COMPANIONS:
        dist = state.dists.get(name)
        if dist is None:
            continue
        found[name] = dist.version
        why = _mismatch(dist, torch_version)
        if why:
            mismatched.append((dist, why))
        elif _label(dist.version) and _label(torch.version) and _label(dist.version) != _label(torch.version):
            flavour_mismatched.append(dist)
    summary = ", ".join(f"{n} {v}" for n, v in found.items()) or "neither torchvision nor torchaudio installed"
    details = {"torch": torch.version, "installed": found}
    expected = {n: expected_companion(n, torch_version) for n in found}
    pins = " ".join(f'"{n}=={e}.*"' if e else n for n, e in expected.items())
    command = f'pip install "torch=={torch_version.public}" {pins}'
    if mismatched:
        return fail(
            f"{'; '.join(why for _, why in mismatched)}",
            f"Install the {'/'.join(d.name for d, _ in mismatched)} built for torch {torch_version.public}, "
            "from the same index torch came from (its CUDA/CPU flavour must match too).",
            command,
            **details,
        )
    if flavour_mismatched:
        names = ", ".join(f"{d.name} {d.version}" for d in flavour_mismatched)
        return warn(
            f"{names}: different build flavour from torch {torch.version}",
            "Reinstall them from the same index as torch, so their compiled ops use the same CUDA (or CPU) build.",
            command,
            **details,
        )
    return ok(f"{summary}: match torch {torch.version}" if found else summary, **details)


def _mismatch(dist: Dist, torch_version: Version) -> str | None:
    """Why ``dist`` does not fit this torch, or None. Its own pin on torch, where it has one, is the most
    reliable word (torchvision/torchaudio wheels pin torch exactly); else the version rule."""
    for text in dist.requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == "torch" and req.specifier and not req.marker:
            if req.specifier.contains(torch_version, prereleases=True):
                return None
            return f"{dist.name} {dist.version} requires torch{req.specifier}, but torch {torch_version} is installed"
    expected = expected_companion(dist.name, torch_version)
    version = _version(dist.version)
    if expected is None or version is None or f"{version.major}.{version.minor}" == expected:
        return None
    return f"{dist.name} {dist.version} is built for another torch (torch {torch_version.public} needs {expected}.x)"


# torch <= 2.2 wheels were compiled against NumPy 1.x and cannot use NumPy 2 (pytorch/pytorch#107302:
# ".numpy() and .from_numpy() will ONLY work if the version of NumPy installed is <2.0"); 2.3 is built
# against NumPy 2.
NUMPY2_FIRST_TORCH = Version("2.3")


@check("packages.numpy", "numpy")
def check_numpy(ctx: Context) -> Verdict:
    """numpy is installed, and of a major version this torch was built for."""
    state = _state(ctx)
    numpy = state.dists.get("numpy")
    torch = state.dists.get("torch")
    if numpy is None:
        return warn(
            "numpy is not installed",
            "torch warns 'Failed to initialize NumPy' at import and `.numpy()` / `torch.from_numpy()` fail; "
            "most data pipelines need it too.",
            "pip install numpy",
        )
    numpy_version, torch_version = _version(numpy.version), _version(torch.version) if torch else None
    details = {"version": numpy.version, "torch": torch.version if torch else None}
    if numpy_version and torch_version and numpy_version.major >= 2 and torch_version < NUMPY2_FIRST_TORCH:
        return warn(
            f"numpy {numpy.version} with torch {details['torch']}: this torch was built against NumPy 1.x",
            "torch before 2.3 cannot use NumPy 2 ('A module that was compiled using NumPy 1.x cannot be run in "
            "NumPy 2'): install numpy<2, or upgrade torch.",
            'pip install "numpy<2"',
            **details,
        )
    return ok(f"numpy {numpy.version}", **details)


@check("packages.pynvml_deprecated", "pynvml (deprecated)")
def check_pynvml(ctx: Context) -> Verdict:
    """The deprecated ``pynvml`` distribution is not installed (NVIDIA's ``nvidia-ml-py`` provides the module)."""
    state = _state(ctx)
    pynvml = state.dists.get("pynvml")
    if pynvml is None:
        official = state.dists.get("nvidia-ml-py")
        return ok(f"not installed (nvidia-ml-py {official.version if official else 'not installed either'})")
    requirers = sorted(d.name for d in state.dists.values() if any(_requires_name(r) == "pynvml" for r in d.requires))
    version = _version(pynvml.version)
    # pynvml up to 11.x ships its own pynvml.py, which overwrites or shadows nvidia-ml-py's newer bindings;
    # 12 and later are shims over nvidia-ml-py whose import (torch.cuda imports pynvml) raises a FutureWarning
    # "The pynvml package is deprecated. Please install nvidia-ml-py instead."
    effect = (
        "its own old copy of the pynvml module shadows NVIDIA's nvidia-ml-py"
        if version is not None and version.major < 12
        else "a deprecated shim: importing it (torch.cuda does) warns 'The pynvml package is deprecated'"
    )
    details = {"version": pynvml.version, "required_by": requirers}
    needed = f" ({', '.join(requirers)} still list it: upgrade those)" if requirers else ""
    return warn(
        f"the deprecated `pynvml` {pynvml.version} is installed: {effect}",
        "Uninstall it and depend on `nvidia-ml-py` instead; both own the file pynvml.py, so reinstall "
        f"nvidia-ml-py afterwards{needed}.",
        "pip uninstall -y pynvml && pip install --force-reinstall nvidia-ml-py",
        **details,
    )


def _requires_name(text: str) -> str | None:
    try:
        return canonicalize_name(Requirement(text).name)
    except InvalidRequirement:
        return None


@dataclass(frozen=True)
class DependencyProblem:
    #: ``missing``, ``conflict`` or ``invalid`` (a requirement that does not parse).
    kind: str
    #: The distribution that requires it, with the extra that pulled the requirement in (``cuda-toolkit[cublas]``).
    requirer: str
    requirement: str
    installed: str | None = None

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"{self.requirer} requires {self.requirement}, which is not installed"
        if self.kind == "conflict":
            return f"{self.requirer} requires {self.requirement}, but {self.installed} is installed"
        return f"{self.requirer} has an unparseable requirement {self.requirement!r}"


def dependency_problems(dists: dict[str, Dist]) -> list[DependencyProblem]:
    """What ``pip check`` finds, in-process: every requirement whose marker applies must be installed in a
    version its specifier allows.

    Like pip, markers are evaluated for this interpreter with no extra. Unlike pip, requirements that
    come in through an extra another distribution asked for (torch requires ``cuda-toolkit[cublas]``,
    which requires ``nvidia-cublas`` under ``extra == "cublas"``) are checked too: a missing one breaks
    ``import torch`` just the same.
    """
    problems: list[DependencyProblem] = []
    queue: list[tuple[str, str]] = [(name, "") for name in dists]
    done: set[tuple[str, str]] = set(queue)
    parsed: dict[str, Requirement | None] = {}  # one distribution is visited once per extra: parse once
    while queue:
        name, extra = queue.pop()
        dist = dists[name]
        requirer = f"{dist.name}[{extra}]" if extra else dist.name
        for text in dist.requires:
            if extra and "extra" not in text:
                continue  # checked already, in the pass without extras
            if text not in parsed:
                try:
                    parsed[text] = Requirement(text)
                except InvalidRequirement:
                    parsed[text] = None
            req = parsed[text]
            if req is None:
                if not extra:
                    problems.append(DependencyProblem("invalid", requirer, text))
                continue
            if req.marker is not None and not _marker_applies(req, extra):
                continue
            target = dists.get(canonicalize_name(req.name))
            wanted_text = f"{req.name}{req.specifier}"  # without the marker, which applied
            if target is None:
                problems.append(DependencyProblem("missing", requirer, wanted_text))
                continue
            version = _version(target.version)
            if req.specifier and (version is None or not req.specifier.contains(version, prereleases=True)):
                problems.append(DependencyProblem("conflict", requirer, wanted_text, f"{target.name} {target.version}"))
            for wanted in req.extras:
                key = (target.name, canonicalize_name(wanted))
                if key not in done:
                    done.add(key)
                    queue.append(key)
    return sorted(set(problems), key=lambda p: (p.requirer, p.requirement))


def _marker_applies(req: Requirement, extra: str) -> bool:
    """With an extra, only the requirements that extra adds count (the others were checked without it)."""
    assert req.marker is not None
    try:
        if not extra:
            return req.marker.evaluate({"extra": ""})
        return req.marker.evaluate({"extra": extra}) and not req.marker.evaluate({"extra": ""})
    except (UndefinedComparison, UndefinedEnvironmentName):
        return False


_SHOWN = 8


def _torch_stack(dists: dict[str, Dist]) -> set[str]:
    """torch, its companions, and what torch requires directly (the CUDA wheels, triton)."""
    stack = {"torch", *COMPANIONS}
    torch = dists.get("torch")
    for text in torch.requires if torch else []:
        name = _requires_name(text)
        if name:
            stack.add(name)
    return stack


@check("packages.dependencies", "Dependency metadata")
def check_dependencies(ctx: Context) -> Verdict:
    """Every installed distribution's requirements are installed in versions they allow (like `pip check`)."""
    state = _state(ctx)
    problems = dependency_problems(state.dists)
    # A second copy of the same version (an editable checkout's egg-info next to its dist-info) is harmless;
    # another version hidden behind the first is what confuses pip and people.
    shadowed = {
        name: [f"{d.version} at {d.location}" for d in copies if d.version != state.dists[name].version]
        for name, copies in state.shadowed.items()
    }
    shadowed = {name: copies for name, copies in shadowed.items() if copies}
    details: dict[str, Any] = {
        "distributions": len(state.dists),
        "problems": [
            {"kind": p.kind, "requirer": p.requirer, "requirement": p.requirement, "installed": p.installed}
            for p in problems
        ],  # fmt: skip
        "shadowed": shadowed,
        "unreadable": state.unreadable,
    }
    if problems:
        shown = "; ".join(str(p) for p in problems[:_SHOWN])
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        fix = (
            "Install or upgrade the named packages to versions their dependants allow; a `pip install` of the "
            "requiring package usually resolves it."
        )
        if any(p.kind == "invalid" for p in problems):
            fix += " An unparseable requirement means broken metadata: reinstall that package."
        # Broken requirements of the torch stack break `import torch`; elsewhere they may be harmless pins.
        stack = _torch_stack(state.dists)
        verdict = fail if any(p.requirer.partition("[")[0] in stack for p in problems) else warn
        s = "s" if len(problems) != 1 else ""
        return verdict(f"{len(problems)} broken requirement{s}: {shown}{more}", fix, "pip check", **details)
    if shadowed or state.unreadable:
        parts = [f"{name} {', '.join(copies)}" for name, copies in shadowed.items()]
        parts += [f"unreadable metadata in {path}" for path in state.unreadable]
        return warn(
            f"{len(state.dists)} distributions, requirements met; but shadowed or broken copies: {'; '.join(parts)}",
            "A second copy of a package later on sys.path (often ~/.local from `pip install --user`) is hidden by "
            "the first, and pip may upgrade the wrong one: uninstall the copy you do not use.",
            "python -m pip list -v",
            **details,
        )
    return ok(f"{len(state.dists)} distributions, all requirements met", **details)
