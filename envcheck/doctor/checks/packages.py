"""Package checks: the torch build, its companions, numpy, the pynvml module, and broken dependencies.

All of them judge the ``packages`` probe (installed metadata only; nothing is imported). Two also read the
``nvml`` probe: a missing torch's fix names the wheel that fits this machine's GPUs and driver, and the
pynvml check says what the imported module lacked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envcheck.core.model import Verdict, available, fail, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.doctor.areas import check
from envcheck.doctor.checks.driver import container_expects_gpus
from envcheck.doctor.reading import nvml_state
from envcheck.probes import packages as _packages_probe  # noqa: F401 - registers the "packages" probe
from envcheck.probes.nvml.inventory import Bindings, NvmlState
from envcheck.probes.packages import Dist, ModuleFile, PackagesState


def _state(ctx: Context) -> PackagesState:
    return ctx.probe("packages")


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _label(version: str) -> str:
    return version.partition("+")[2]


@dataclass(frozen=True)
class TorchVariant:
    """One CUDA variant of current torch wheels: its CUDA version, the GPU architectures it carries kernels
    for, and where that list comes from."""

    cuda: tuple[int, int]
    archs: tuple[tuple[int, int], ...]
    source: str

    def runs_on(self, driver_cuda: tuple[int, int]) -> bool:
        """Whether a driver supporting CUDA up to ``driver_cuda`` runs it: any newer CUDA major, and within
        one major any minor, through minor-version compatibility (NVIDIA's CUDA Compatibility guide: a
        CUDA 12.x build runs on any driver >= 525.60.13, a 13.x build on any >= 580)."""
        return self.cuda[0] <= driver_cuda[0]

    def has_kernels_for(self, capability: tuple[int, int]) -> bool:
        """Whether it carries a kernel image a GPU of ``capability`` runs: an sm_XY binary runs on GPUs of
        the same major and an equal or higher minor (CUDA C Programming Guide, "Binary Compatibility")."""
        return any(a[0] == capability[0] and a[1] <= capability[1] for a in self.archs)


#: The CUDA variants of current PyTorch releases (the ``cuXYZ`` indexes; torch 2.14 is built for CUDA 12.6,
#: 13.0 and 13.2: pytorch/pytorch RELEASE.md, "Release Compatibility Matrix"), each with its arch list.
#: Update it when a release changes the set.
TORCH_VARIANTS: tuple[TorchVariant, ...] = (
    TorchVariant(
        (12, 6),
        ((5, 0), (6, 0), (7, 0), (7, 5), (8, 0), (8, 6), (9, 0)),
        "pytorch/pytorch .ci/manywheel/build_cuda.sh, TORCH_CUDA_ARCH_LIST for CUDA 12.6 (no Blackwell)",
    ),
    TorchVariant(
        (13, 0),
        ((7, 5), (8, 0), (8, 6), (9, 0), (10, 0), (12, 0)),
        "torch.cuda.get_arch_list() of the torch 2.14.1+cu130 wheel (CUDA 13 dropped capabilities below 7.5)",
    ),
    TorchVariant(
        (13, 2),
        ((7, 5), (8, 0), (8, 6), (9, 0), (10, 0), (12, 0)),
        "as the CUDA 13.0 variant (pytorch/pytorch .ci/manywheel/build_cuda.sh builds both from one list)",
    ),
)
#: Their CUDA versions, oldest first.
TORCH_CUDA_VARIANTS: tuple[tuple[int, int], ...] = tuple(v.cuda for v in TORCH_VARIANTS)
#: PyTorch's own wheel index: ``cpu`` and each ``cuXYZ`` variant are directories of it.
TORCH_INDEX = "https://download.pytorch.org/whl"


def variant_name(cuda: tuple[int, int]) -> str:
    """(13, 0) -> ``cu130``."""
    return f"cu{cuda[0]}{cuda[1]}"


@dataclass(frozen=True)
class VariantChoice:
    """Which torch wheel fits a machine, from its driver *and* every GPU's compute capability."""

    #: The newest variant the driver runs with kernels for every GPU (None: there is none).
    variant: tuple[int, int] | None
    #: Else the oldest variant with kernels for every GPU, which needs a newer driver (None: none has them).
    needs_driver_for: tuple[int, int] | None = None
    #: Capabilities no current variant carries kernels for (a card older than every build).
    no_kernels: tuple[tuple[int, int], ...] = ()


def choose_variant(driver_cuda: tuple[int, int], capabilities: Iterable[tuple[int, int]] = ()) -> VariantChoice:
    """The torch wheel for a driver supporting CUDA up to ``driver_cuda`` and GPUs of ``capabilities``:
    Blackwell (sm_100, sm_120) on an r570 driver gets no CUDA 12.6 build (it has no kernels for them, "no
    kernel image is available") but the advice to move to r580 for CUDA 13; r550 gets the CUDA 12.6 build
    without a driver upgrade (minor-version compatibility)."""
    wanted = sorted(set(capabilities))
    carried = [v for v in TORCH_VARIANTS if all(v.has_kernels_for(cc) for cc in wanted)]
    # The newest build the driver supports in full; else, within the driver's CUDA major, the closest one
    # minor-version compatibility runs.
    full = [v for v in carried if v.cuda <= driver_cuda]
    if full:
        return VariantChoice(full[-1].cuda)
    minor = [v for v in carried if v.runs_on(driver_cuda)]
    if minor:
        return VariantChoice(minor[0].cuda)
    if carried:
        return VariantChoice(None, carried[0].cuda)
    missing = tuple(cc for cc in wanted if not any(v.has_kernels_for(cc) for v in TORCH_VARIANTS))
    return VariantChoice(None, None, missing)


def torch_variant_for(
    driver_cuda: tuple[int, int], capabilities: Iterable[tuple[int, int]] = ()
) -> tuple[int, int] | None:
    """The newest current torch CUDA variant the driver runs with kernels for every GPU (:func:`choose_variant`)."""
    return choose_variant(driver_cuda, capabilities).variant


def capabilities_of(nvml: NvmlState | None) -> list[tuple[int, int]]:
    """Every GPU's compute capability NVML read."""
    if nvml is None:
        return []
    return [tuple(g.compute_capability) for g in nvml.gpus if available(g.compute_capability)]  # type: ignore[misc]


def variant_advice(choice: VariantChoice, driver: str | None, driver_cuda: str | None) -> tuple[str, str | None]:
    """The words and the command when no current variant fits as the machine stands."""
    if choice.needs_driver_for is not None:
        need = choice.needs_driver_for
        minimum = {12: "525.60.13", 13: "580"}.get(need[0], f"one for CUDA {need[0]}.x")
        return (
            f"driver {driver} supports CUDA {driver_cuda}, and the current torch builds it runs have no kernels "
            f"for these GPUs: upgrade the NVIDIA driver to {minimum} or newer, then install the "
            f"{variant_name(need)} build, the oldest with kernels for every GPU here.",
            torch_install_command(variant_name(need)),
        )
    cards = ", ".join(f"sm_{a}{b}" for a, b in choice.no_kernels) or "these GPUs"
    return (
        f"no current torch build carries kernels for {cards} (current builds: CUDA "
        f"{', '.join(f'{a}.{b}' for a, b in TORCH_CUDA_VARIANTS)}): use an older torch release whose arch list "
        "has them, or newer GPUs.",
        None,
    )


def torch_install_command(variant: str) -> str:
    """The pip command for one variant of the torch wheel (``cpu``, ``cu130``)."""
    return f"pip install torch --index-url {TORCH_INDEX}/{variant}"


def torch_install_fix(nvml: NvmlState | None, env: Any) -> tuple[str, str | None]:
    """How to install torch on this machine: the CPU build where NVML finds no NVIDIA GPU, the CUDA build
    this driver supports where it finds some, and where NVML cannot tell, what to fix first."""
    cpu = torch_install_command("cpu")
    if nvml is not None and nvml.status == "no_library" and not container_expects_gpus(env):
        return "No NVIDIA driver here (libnvidia-ml.so.1 not found): install the CPU build of torch.", cpu
    if nvml is not None and nvml.available and not nvml.gpus:
        return "NVML finds no NVIDIA GPU on this machine: install the CPU build of torch.", cpu
    if nvml is None or not nvml.available:
        why = "NVML did not answer" if nvml is None else f"NVML did not start ({nvml.status.replace('_', ' ')})"
        return (
            f"{why}, so envcheck cannot tell which torch build fits this machine: fix that first (driver.nvml "
            "says how), then run `envcheck doctor packages` again for the build that matches the driver.",
            None,
        )
    gpus = f"{len(nvml.gpus)} NVIDIA GPU(s)"
    variants = ", ".join(f"{major}.{minor}" for major, minor in TORCH_CUDA_VARIANTS)
    oldest = TORCH_CUDA_VARIANTS[0]
    match = re.match(r"(\d+)\.(\d+)", nvml.cuda_driver_version or "")
    if match is None:
        return (
            f"This machine has {gpus}, but the driver does not say which CUDA it supports (`nvidia-smi` shows it "
            f"as 'CUDA Version'). Install the CUDA build of torch at or below that version (current builds: "
            f"CUDA {variants}); the {variant_name(oldest)} build below runs on any driver for CUDA "
            f"{oldest[0]}.x.",
            torch_install_command(variant_name(oldest)),
        )
    driver_cuda = (int(match[1]), int(match[2]))
    choice = choose_variant(driver_cuda, capabilities_of(nvml))
    variant = choice.variant
    if variant is None:
        text, command = variant_advice(choice, nvml.driver_version, nvml.cuda_driver_version)
        return f"This machine has {gpus}, and {text}", command
    return (
        f"This machine has {gpus} and driver {nvml.driver_version} supports CUDA {nvml.cuda_driver_version}: "
        f"install the CUDA {variant[0]}.{variant[1]} build ({variant_name(variant)}), the newest of current "
        f"torch's CUDA builds (CUDA {variants}) that this driver runs with kernels for every GPU here.",
        torch_install_command(variant_name(variant)),
    )


@check("packages.torch", "torch")
def check_torch(ctx: Context) -> Verdict:
    """torch is installed, and which build it is (CUDA x.y, ROCm, CPU-only) — read from metadata, not imported.

    This is the one check that says torch is missing (torch.import then skips), and its fix is the wheel
    that fits this machine: CPU-only without NVIDIA GPUs, else the CUDA variant the driver supports.
    """
    state = _state(ctx)
    build = state.torch
    if build is None and state.torch_module:
        return ok(
            f"torch at {state.torch_module} without installed package metadata (a source checkout or a "
            "PYTHONPATH entry): torch.import judges it",
            path=state.torch_module,
        )
    if build is None:
        text, command = torch_install_fix(nvml_state(ctx, started=False, consult=True), ctx.env)
        return warn("torch is not installed in this Python", text, command, python=state.python)
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
    if numpy is None and torch is None and not state.torch_module:
        # what numpy's absence breaks is torch's: without torch here, that warning does not apply
        return skip("numpy is not installed (no torch in this Python to need it: see packages.torch)")
    if numpy is None:
        return warn(
            "numpy is not installed",
            "Install numpy: without it torch warns 'Failed to initialize NumPy' at import and `.numpy()` / "
            "`torch.from_numpy()` fail, and most data pipelines need it too.",
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


@check("packages.pynvml_deprecated", "pynvml module (nvidia-ml-py)")
def check_pynvml(ctx: Context) -> Verdict:
    """The deprecated ``pynvml`` distribution is not installed (NVIDIA's ``nvidia-ml-py`` provides the module).

    Nor any other copy: the ``pynvml`` module Python imports must be nvidia-ml-py's, with what envcheck reads
    through it. A module from elsewhere (the deprecated distribution up to 11.x, nvidia-ml-py3, a vendored copy) may
    lack functions or not import at all; the report is still produced, with those readings not available,
    and this check says which copy it is, where it came from and how to replace it.
    """
    state = _state(ctx)
    nvml = nvml_state(ctx, started=False, consult=True)
    bindings = nvml.bindings if nvml is not None else None
    module = state.pynvml_module
    deprecated = state.dists.get("pynvml")
    requirers = sorted(d.name for d in state.dists.values() if any(_requires_name(r) == "pynvml" for r in d.requires))
    official = state.dists.get("nvidia-ml-py")
    details: dict[str, Any] = {
        "module": module.path if module else None,
        "from": f"{module.owner.display_name} {module.owner.version}" if module and module.owner else None,
        "nvidia_ml_py": official.version if official else None,
        "pynvml": deprecated.version if deprecated else None,
        "required_by": requirers,
    }
    if module is None or (nvml is not None and nvml.status == "no_bindings"):
        return warn(
            "no pynvml module in this Python: envcheck cannot read the NVIDIA driver or GPUs",
            "Install NVIDIA's NVML bindings, nvidia-ml-py (a dependency of envcheck that has gone missing).",
            "pip install nvidia-ml-py",
            **details,
        )
    if bindings is not None and not bindings.complete:
        return _foreign_module(module, bindings, requirers, details)
    if deprecated is None:
        where = f"nvidia-ml-py {official.version}" if official else "nvidia-ml-py"
        return ok(f"pynvml module from {where}; the deprecated pynvml is not installed", **details)
    version = _version(deprecated.version)
    # pynvml up to 11.x ships its own pynvml package, which shadows nvidia-ml-py's pynvml.py; 12 and later
    # depend on nvidia-ml-py and install a start-up hook (_pynvml_redirector.pth) that warns "The pynvml
    # package is deprecated" whenever pynvml is imported (torch.cuda does).
    effect = (
        "its own old copy of the pynvml module shadows NVIDIA's nvidia-ml-py"
        if version is not None and version.major < 12
        else "a deprecated shim: importing pynvml (torch.cuda does) warns 'The pynvml package is deprecated'"
    )
    return warn(
        f"the deprecated `pynvml` {deprecated.version} is installed: {effect}",
        *_replace_with_nvidia_ml_py("pynvml", requirers),
        **details,
    )


def _replace_with_nvidia_ml_py(name: str, requirers: list[str]) -> tuple[str, str]:
    """Uninstalling a distribution that owns a pynvml module; nvidia-ml-py3 owns the very file pynvml.py
    that nvidia-ml-py installs, so its uninstall removes nvidia-ml-py's too: reinstall that afterwards."""
    needed = f" ({', '.join(requirers)} still list pynvml: upgrade those)" if requirers and name == "pynvml" else ""
    return (
        f"Uninstall `{name}` and depend on `nvidia-ml-py` instead; uninstalling can take the file pynvml.py with "
        f"it, so reinstall nvidia-ml-py afterwards{needed}.",
        f"pip uninstall -y {name} && pip install --force-reinstall nvidia-ml-py",
    )


def _foreign_module(module: ModuleFile, bindings: Bindings, requirers: list[str], details: dict[str, Any]) -> Verdict:
    """The pynvml module does not import, lacks functions envcheck reads, or fails in them."""
    owner = module.owner
    origin = (
        f"from {owner.display_name} {owner.version}"
        if owner
        else "installed by no distribution: a vendored copy, or a directory on PYTHONPATH"
    )
    if bindings.import_error:
        what = f"fails to import ({bindings.import_error}): the driver and GPUs could not be read"
    else:
        parts = []
        if bindings.lacking:
            parts.append(f"lacks {', '.join(bindings.lacking)}")
        stood_in = [name for name in bindings.missing if name not in bindings.lacking]
        if stood_in:
            parts.append(f"lacks {', '.join(stood_in)} (envcheck read the older name instead)")
        by_error: dict[str, list[str]] = {}
        for name, error in bindings.failing.items():
            by_error.setdefault(error, []).append(name)
        parts += [f"{' and '.join(names)} raised {error}" for error, names in by_error.items()]
        lost = ": those readings are not available" if bindings.lacking or bindings.failing else ""
        what = "; ".join(parts) + lost
    details.update(import_error=bindings.import_error, missing=bindings.missing, failing=bindings.failing)
    summary = f"the pynvml module at {module.path} ({origin}) {what}"
    if owner is None:
        return warn(
            summary,
            f"Move {module.path} out of the way: it is found before NVIDIA's module on sys.path. Then make sure "
            "NVIDIA's nvidia-ml-py is installed.",
            "pip install --force-reinstall nvidia-ml-py",
            **details,
        )
    if owner.name == "nvidia-ml-py":
        if bindings.import_error:
            fix = "Reinstall nvidia-ml-py: its pynvml.py is damaged.", "pip install --force-reinstall nvidia-ml-py"
        else:
            fix = "Upgrade nvidia-ml-py: this version predates what envcheck reads.", "pip install -U nvidia-ml-py"
        return warn(summary, *fix, **details)
    return warn(summary, *_replace_with_nvidia_ml_py(owner.name, requirers), **details)


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
