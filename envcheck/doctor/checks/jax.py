"""JAX: whether it imports, which backend it ends on, whether its CUDA plugin and the CUDA libraries it loads
pass JAX's own version checks, and whether importing torch first changes any of that.

JAX never raises when it cannot use the GPU: it logs a warning and runs on the CPU. The child processes of
:mod:`envcheck.probes.jax` run it and keep those warnings; the messages read here are the ones JAX itself
writes (``jax._src.xla_bridge``, ``jax_plugins/xla_cuda1x/__init__.py``, ``_check_cuda_versions``). Where JAX
is not installed every check skips and no child is started.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envcheck.core.model import SkipCheck, Verdict, fail, first_line, ok, skip, warn
from envcheck.core.probing import Context, ProbeFailed, ProbeTimeout
from envcheck.doctor.areas import check
from envcheck.doctor.checks.torch import cudnn_text
from envcheck.doctor.reading import nvml_state
from envcheck.probes import jax as _jax_probe  # noqa: F401 - registers the "jax" probe
from envcheck.probes import packages as _packages_probe  # noqa: F401 - registers the "packages" probe
from envcheck.probes.jax import ALONE, DEFAULT_CHILD_TIMEOUT_S, TIMEOUT_ENV, TORCH_FIRST, JaxInfo, JaxRun
from envcheck.probes.nvml import inventory as _nvml_probe  # noqa: F401 - registers the "nvml" probe
from envcheck.probes.packages import PackagesState

#: ``jax-cuda12-plugin``, ``jax-cuda13-pjrt``: the CUDA major and the part.
_PLUGIN_DIST = re.compile(r"^jax-cuda(\d+)-(plugin|pjrt)$")

# -- the messages JAX writes -------------------------------------------------------------------------------

#: jaxlib <= 0.4.2x: "Found cuDNN version 8700, but JAX was built against version 8800, which is newer."
_FOUND = re.compile(r"Found (cuDNN|cuBLAS|cuSPARSE|cuFFT|cuSOLVER|cuPTI|CUDA) version (\d+), but JAX was built "
                    r"against version (\d+)")  # fmt: skip
#: jax_plugins/xla_cuda1x ``_check_cuda_versions``: "Outdated cuDNN installation found.\nVersion JAX was built
#: against: 91200\nMinimum supported: 91200\nInstalled version: 90100"
_OUTDATED = re.compile(
    r"Outdated (\S+) installation found\.\s*Version JAX was built against: (\d+)\s*Minimum supported: (\d+)\s*"
    r"Installed version: (\d+)"
)
_UNLOADABLE = re.compile(r"Unable to load (\S+)\. Is it installed\?")
#: The known-bad combinations the plugin encodes (cuDNN 9.10.0's enums; cuDNN < 9.10.1 with cuBLASLt >= 12.9
#: on several GPUs; cuBLAS 12.8-13.1 freeing tensor memory twice on sm_100/sm_110).
_CUDNN_9100 = re.compile(r"cuDNN 9\.10\.0 had a binary backward-compatibility issue[^\n]*")
_CUDNN_MULTI_GPU = re.compile(r"cuDNN < 9\.10\.0 \((\d+) found\) had an issue[^\n]*")
_CUBLAS_TMEM = re.compile(r"cuBLAS < 13\.2 \((\d+) found\) has a known issue[^\n]*")
_NO_CUDA_JAXLIB = "CUDA-enabled jaxlib is not installed"
_INIT_FAILED = re.compile(r"CUDA backend failed to initialize: ([^\n]*)")
_PLUGIN_ERROR = re.compile(r"Jax plugin configuration error: [^\n]*")

#: The library -> the wheel that ships it: CUDA 12's carry a -cu12 suffix, CUDA 13's drop it (cuDNN's keeps it).
_WHEELS = {
    "cuDNN": "nvidia-cudnn",
    "cuBLAS": "nvidia-cublas",
    "cuSPARSE": "nvidia-cusparse",
    "cuFFT": "nvidia-cufft",
    "cuSOLVER": "nvidia-cusolver",
    "cuPTI": "nvidia-cuda-cupti",
    "CUDA": "nvidia-cuda-runtime",
}


def version_text(library: str, number: int) -> str:
    """The encoded version as a person writes it: cuDNN 8700 → 8.7.0, cuBLAS 120100 → 12.1.0, CUDA 12010 → 12.1."""
    if library == "cuDNN":
        return cudnn_text(number)
    if library == "CUDA":
        return f"{number // 1000}.{number % 1000 // 10}"
    if number >= 10000:
        return f"{number // 10000}.{number % 10000 // 100}.{number % 100}"
    return str(number)


def wheel_for(library: str, major: int) -> str:
    name = _WHEELS.get(library, f"nvidia-{library.lower()}")
    return name if major >= 13 and library != "cuDNN" else f"{name}-cu{major}"


@dataclass
class Finding:
    """One CUDA version problem JAX said: the library, the versions, the words, how bad."""

    library: str
    text: str
    installed: int | None = None
    needed: int | None = None
    #: "fail" or "warn" (the cuBLAS tensor-memory issue is a warning in JAX too: it corrupts data only under
    #: concurrent kernels).
    severity: str = "fail"

    def said(self) -> str:
        if self.installed is not None and self.needed is not None:
            return (f"{self.library} {version_text(self.library, self.installed)} is loaded, JAX needs at least "
                    f"{version_text(self.library, self.needed)}")  # fmt: skip
        return self.text

    def wheel(self, major: int) -> str | None:
        if self.needed is None:
            return None
        return f"{wheel_for(self.library, major)}>={version_text(self.library, self.needed)}"


def findings(text: str) -> list[Finding]:
    """The CUDA version problems in what a JAX run said, each once."""
    found: list[Finding] = []
    for m in _FOUND.finditer(text):
        found.append(Finding(m[1], m[0], int(m[2]), int(m[3])))
    for m in _OUTDATED.finditer(text):
        found.append(Finding(m[1], " ".join(m[0].split()), int(m[4]), int(m[3])))
    for m in _UNLOADABLE.finditer(text):
        found.append(Finding(m[1], m[0]))
    for m in _CUDNN_9100.finditer(text):
        found.append(Finding("cuDNN", m[0], 91000, 91001))
    for m in _CUDNN_MULTI_GPU.finditer(text):
        found.append(Finding("cuDNN", m[0], int(m[1]), 91001))
    for m in _CUBLAS_TMEM.finditer(text):
        found.append(Finding("cuBLAS", m[0], int(m[1]), 130200, severity="warn"))
    unique: dict[tuple[str, str], Finding] = {}
    for f in found:
        unique.setdefault((f.library, f.said()), f)
    return list(unique.values())


# -- shared helpers ----------------------------------------------------------------------------------------


def _info(ctx: Context) -> JaxInfo:
    """The probe's data once JAX is installed; without JAX the calling check skips."""
    try:
        info: JaxInfo = ctx.probe("jax")
    except (ProbeTimeout, ProbeFailed):
        raise SkipCheck("JAX could not be probed (see jax.backend)") from None
    if not info.installed:
        raise SkipCheck("JAX is not installed in this Python: nothing here uses it")
    return info


def _alone(ctx: Context) -> JaxRun:
    run = _info(ctx).runs[ALONE]
    if not run.answered:
        raise SkipCheck("JAX did not say which devices it uses (see jax.backend)")
    return run


def cpu_by_choice(env: Mapping[str, str]) -> str | None:
    """Why JAX is kept on the CPU on purpose, or None: ``JAX_PLATFORMS`` naming no GPU platform, or
    ``CUDA_VISIBLE_DEVICES`` hiding every GPU ("" or -1). A CPU backend then is what was asked for."""
    platforms = env.get("JAX_PLATFORMS")
    if platforms is not None and platforms.strip():
        named = {p.strip().lower() for p in platforms.split(",") if p.strip()}
        if not named & {"cuda", "gpu", "rocm"}:
            return f"JAX_PLATFORMS={platforms}"
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r}"
    return None


def _gpus(ctx: Context) -> tuple[int | None, tuple[int, int] | None]:
    """(NVIDIA GPUs NVML counts, the driver's CUDA major.minor); None where NVML does not answer."""
    state = nvml_state(ctx, consult=True)
    if state is None:
        return None, None
    cuda = re.match(r"(\d+)\.(\d+)", state.cuda_driver_version or "")
    return len(state.gpus), (int(cuda[1]), int(cuda[2])) if cuda else None


def _plugins(ctx: Context) -> dict[str, tuple[int, str]]:
    """The JAX CUDA plugin distributions installed: name -> (CUDA major, version)."""
    try:
        packages: PackagesState = ctx.probe("packages")
    except (ProbeTimeout, ProbeFailed):
        return {}
    found = {}
    for name, dist in packages.dists.items():
        m = _PLUGIN_DIST.match(name)
        if m:
            found[name] = (int(m[1]), dist.version)
    return found


def _cuda_major(driver_cuda: tuple[int, int] | None, plugins: dict[str, tuple[int, str]]) -> int:
    """The CUDA major to install JAX's plugin for: the newest the driver runs (JAX ships 12 and 13), else the
    installed plugin's, else 12."""
    if driver_cuda is not None:
        return 13 if driver_cuda[0] >= 13 else 12
    return max((major for major, _ in plugins.values()), default=12)


def _plugin_command(run: JaxRun, major: int) -> str:
    pin = f"=={run.jax_version}" if run.jax_version else ""
    return f'pip install -U "jax[cuda{major}]{pin}"'


def _pip(wheels: list[str]) -> str | None:
    return "pip install -U " + " ".join(f'"{w}"' for w in wheels) if wheels else None


def _on(run: JaxRun) -> str:
    n = len(run.devices)
    return f"{run.default_backend} ({n} device{'s' if n != 1 else ''})"


def _gpu_backend(run: JaxRun) -> bool:
    return run.default_backend in ("gpu", "cuda", "rocm")


def _failed_run(run: JaxRun, what: str) -> Verdict:
    """The verdict for a child that did not answer: hung, crashed, raised, or cut short by the deadline."""
    details = {"stage": run.stage, "where": run.where, "exit_code": run.exit_code,
               "stderr_tail": run.stderr_tail.splitlines()[-20:]}  # fmt: skip
    at = f" (at {run.where})" if run.where else ""
    if run.status == "unfinished":
        more = min(3600, max(60, math.ceil(2 * (run.timeout_s or 0))))
        return warn(f"{what} not judged: {run.error}{at}",
                    f"JAX was still working, which is not a hang (that takes {TIMEOUT_ENV}, "
                    f"{DEFAULT_CHILD_TIMEOUT_S:g} s by default): give the doctor more time.",
                    f"envcheck doctor --deadline {more}", **details)  # fmt: skip
    if run.status == "timeout":
        return fail(f"{what} hung: {run.error}{at}",
                    "Something blocks while JAX imports or loads its plugins: often a hung network filesystem under "
                    "site-packages, or a CUDA plugin waiting on a wedged driver (check whether `nvidia-smi` hangs).",
                    'python -X importtime -c "import jax; print(jax.devices())"', **details)  # fmt: skip
    if run.status == "crashed":
        return fail(f"{what} crashed the Python interpreter: {run.error}{at}",
                    "A native library crashed while JAX loaded: usually CUDA libraries of another version found "
                    "first (LD_LIBRARY_PATH, LD_PRELOAD) or jaxlib and its plugin out of step. Run it with "
                    "faulthandler to see where, then reinstall jax, jaxlib and the plugin together.",
                    'python -X faulthandler -c "import jax; print(jax.devices())"', **details)  # fmt: skip
    if run.status == "import_error":
        return fail(f"import jax failed: {first_line(run.error)}",
                    "Reinstall jax and jaxlib together, at one version: `pip install -U jax jaxlib` (with the CUDA "
                    'plugin: `pip install -U "jax[cuda12]"` or `"jax[cuda13]"`).',
                    "pip install -U --force-reinstall jax jaxlib", **details)  # fmt: skip
    return fail(f"the JAX probe failed: {run.error}",
                "Run it by hand in the same environment to see the error.",
                'python -c "import jax; print(jax.devices())"', **details)  # fmt: skip


# -- checks ------------------------------------------------------------------------------------------------


@check("jax.backend", "JAX imports and uses the GPUs")
def check_backend(ctx: Context) -> Verdict:
    """JAX imports in a fresh interpreter and ``jax.devices()`` returns the GPUs where NVML counts some: JAX does not
    raise when it cannot use them, it warns ("a CUDA-enabled jaxlib is not installed. Falling back to cpu") and
    the job runs on the CPU.

    On a machine without an NVIDIA GPU, JAX on the CPU is all there is: ok, saying so. Where NVML does not answer,
    whether a GPU is missed cannot be judged, and the check skips.
    """
    try:
        info: JaxInfo = ctx.probe("jax")
    except ProbeTimeout as exc:
        return fail(f"JAX did not finish importing and choosing its backend within the doctor's {exc.waited_s:.0f} s",
                    "Re-run with a longer --deadline; if it still does not finish, time the import by hand.",
                    'python -X importtime -c "import jax; print(jax.devices())"', timeout_s=exc.waited_s)  # fmt: skip
    if not info.installed:
        return skip("JAX is not installed in this Python: nothing here uses it")
    run = info.runs[ALONE]
    if run.status == "not_installed":
        return skip(f"no jax module can be imported ({run.error})")
    if run.status != "ok":
        return _failed_run(run, "JAX")
    plugins = _plugins(ctx)
    gpus, driver_cuda = _gpus(ctx)
    details: dict[str, Any] = {
        "jax": run.jax_version, "jaxlib": run.jaxlib_version, "import_s": run.import_s, "devices": run.devices,
        "default_backend": run.default_backend, "plugins": {k: v[1] for k, v in plugins.items()}, "gpus": gpus,
        "messages": run.messages, "duration_s": run.duration_s,
    }  # fmt: skip
    versions = f"jax {run.jax_version} (jaxlib {run.jaxlib_version})"
    if run.devices_error:
        return fail(f"{versions} imports, but jax.devices() raised: {first_line(run.devices_error)}",
                    "A backend named in JAX_PLATFORMS failed to start: see jax.cuda_plugin for the CUDA libraries, "
                    "or unset JAX_PLATFORMS to let JAX choose.", **details)  # fmt: skip
    if _gpu_backend(run):
        return ok(f"{versions} runs on {_on(run)} (imported in {run.import_s or 0:.1f} s)", **details)
    chosen = cpu_by_choice(ctx.env)
    if chosen:
        return ok(f"{versions} runs on {_on(run)}, as this environment asks ({chosen})", **details)
    if gpus is None:
        return skip(f"{versions} runs on {_on(run)}; NVML does not answer, so whether a GPU is missed cannot be "
                    "judged (see driver.nvml)", **details)  # fmt: skip
    if gpus == 0:
        return ok(f"{versions} runs on {_on(run)}; no NVIDIA GPU answers NVML, so the CPU is all there is", **details)
    major = _cuda_major(driver_cuda, plugins)
    said = findings(run.text())
    why = (
        "its CUDA plugin failed the version check (see jax.cuda_plugin): " + "; ".join(f.said() for f in said)
        if said
        else "its CUDA plugin failed to start (see jax.cuda_plugin)"
        if plugins
        else "no JAX CUDA plugin is installed"
    )
    fix = (
        f"Install JAX's CUDA {major} plugin at jaxlib's version, with the CUDA libraries it needs: "
        f"`{_plugin_command(run, major)}` (CUDA {major} is what this driver runs; the plugin brings its own "
        "nvidia-* wheels)."
    )
    return fail(f"{versions} runs on {_on(run)} while NVML counts {gpus} NVIDIA GPU{'s' if gpus != 1 else ''}: {why}",
                fix, _plugin_command(run, major), **details)  # fmt: skip


@check("jax.cuda_plugin", "JAX's CUDA plugin and its libraries")
def check_cuda_plugin(ctx: Context) -> Verdict:
    """The jax-cudaNN-plugin and jax-cudaNN-pjrt wheels are at jaxlib's version, for a CUDA the driver runs, and the
    cuDNN, cuBLAS, cuFFT, cuSPARSE and CUDA runtime they load pass JAX's own version checks, known-bad combinations
    included ("Found cuDNN version 8700, but JAX was built against version 8800"; "Outdated cuDNN installation
    found"; cuDNN 9.10.0; cuBLAS 12.8-13.1 on Blackwell).
    """
    run = _alone(ctx)
    plugins = _plugins(ctx)
    gpus, driver_cuda = _gpus(ctx)
    said = findings(run.text())
    details: dict[str, Any] = {"plugins": {k: v[1] for k, v in plugins.items()}, "jaxlib": run.jaxlib_version,
                               "driver_cuda": driver_cuda, "findings": [vars(f) for f in said]}  # fmt: skip
    major = _cuda_major(driver_cuda, plugins)
    wrong = [f for f in said if f.severity == "fail"]
    if wrong:
        wheels = [w for w in (f.wheel(major) for f in wrong) if w]
        command = _pip(wheels)
        return fail("JAX cannot use CUDA: " + "; ".join(f.said() for f in wrong),
                    "Align the CUDA wheels with what JAX was built against"
                    + (f": `{command}`" if command else "")
                    + f", or reinstall the plugin with its own (`{_plugin_command(run, major)}`); an LD_LIBRARY_PATH "
                    "entry with older copies of these libraries is found before the wheels'.",
                    command or _plugin_command(run, major), **details)  # fmt: skip
    if not plugins:
        return skip("no JAX CUDA plugin is installed (jax.backend judges whether this machine needs one)", **details)
    parts = {(major_, name.rsplit("-", 1)[1]): version for name, (major_, version) in plugins.items()}
    out_of_step = [
        f"{name} {version}"
        for name, (_, version) in sorted(plugins.items())
        if run.jaxlib_version and version != run.jaxlib_version
    ]
    if out_of_step:
        return fail(f"{', '.join(out_of_step)} beside jaxlib {run.jaxlib_version}: jax[cudaNN] pins the plugin to "
                    "jaxlib's version", f"Reinstall them together: `{_plugin_command(run, major)}`.",
                    _plugin_command(run, major), **details)  # fmt: skip
    majors = {m for m, _ in parts}
    halves = sorted(m for m in majors if (m, "plugin") not in parts or (m, "pjrt") not in parts)
    if halves:
        return fail(f"JAX's CUDA {halves[0]} plugin is half installed ({', '.join(sorted(plugins))})",
                    f"Install both halves: `{_plugin_command(run, halves[0])}`.", _plugin_command(run, halves[0]),
                    **details)  # fmt: skip
    too_new = sorted(m for m in majors if driver_cuda is not None and m > driver_cuda[0])
    if too_new and gpus and driver_cuda is not None:
        return fail(f"JAX's CUDA {too_new[0]} plugin is installed, but the driver runs CUDA "
                    f"{driver_cuda[0]}.{driver_cuda[1]}",
                    f"Install the plugin for the driver's CUDA (`{_plugin_command(run, driver_cuda[0])}`), or update "
                    "the driver.", _plugin_command(run, driver_cuda[0]), **details)  # fmt: skip
    versions = ", ".join(f"{name} {version}" for name, (_, version) in sorted(plugins.items()))
    tmem = [f for f in said if f.severity == "warn"]
    if tmem:
        return warn(f"{versions}: {tmem[0].said()} ({tmem[0].text})",
                    f"Upgrade cuBLAS to 13.2 or newer on these GPUs: `{_pip([str(tmem[0].wheel(major))])}`.",
                    _pip([str(tmem[0].wheel(major))]), **details)  # fmt: skip
    if _gpu_backend(run):
        return ok(f"{versions} at jaxlib's version; the CUDA libraries pass JAX's checks ({_on(run)})", **details)
    if not gpus:
        return skip(f"{versions} installed; no GPU answers here, so JAX did not check its CUDA libraries", **details)
    chosen = cpu_by_choice(ctx.env)
    if chosen:
        return skip(f"{versions} installed; this environment keeps JAX on the CPU ({chosen}), so JAX did not check "
                    "its CUDA libraries", **details)  # fmt: skip
    reason = next(iter(_PLUGIN_ERROR.findall(run.text()) + _INIT_FAILED.findall(run.text())), None)
    return fail(f"{versions} installed, but JAX runs on {_on(run)}" + (f": {first_line(reason)}" if reason else ""),
                "Run `python -c \"import jax; print(jax.devices())\"` with TF_CPP_MIN_LOG_LEVEL=0 to see why the "
                f"plugin did not start; reinstall it with its CUDA libraries: `{_plugin_command(run, major)}`.",
                _plugin_command(run, major), **details)  # fmt: skip


@check("jax.with_torch", "JAX after import torch")
def check_with_torch(ctx: Context) -> Verdict:
    """Importing torch before jax, as most scripts that use both do, leaves JAX on the same backend: torch loads its
    own cuDNN and cuBLAS into the process first, and JAX's plugin then finds those ("CUDA backend failed to
    initialize: Found cuDNN version 8700, but JAX was built against version 8800" only when torch comes first).
    """
    info = _info(ctx)
    if not info.torch_installed:
        raise SkipCheck("torch is not installed in this Python: JAX is used without it")
    alone = _alone(ctx)
    run = info.runs[TORCH_FIRST]
    if run.status == "torch_error":
        return skip(f"torch does not import here ({first_line(run.error)}; see torch.import)")
    if run.status != "ok":
        verdict = _failed_run(run, "import torch, then import jax,")
        if run.status in ("timeout", "crashed"):
            verdict.summary += f" (JAX alone runs on {_on(alone)})"
        return verdict
    details: dict[str, Any] = {"alone": {"backend": alone.default_backend, "devices": alone.devices},
                               "torch_first": {"backend": run.default_backend, "devices": run.devices,
                                               "messages": run.messages},
                               "torch": run.torch_version, "torch_cuda": run.torch_cuda}  # fmt: skip
    new = [f for f in findings(run.text()) if f.said() not in {g.said() for g in findings(alone.text())}]
    differs = (run.default_backend, len(run.devices)) != (alone.default_backend, len(alone.devices))
    if not differs and not new and not run.devices_error:
        return ok(f"torch {run.torch_version} imported first: JAX still runs on {_on(run)}, as alone", **details)
    why = "; ".join(f.said() for f in new) or first_line(run.devices_error or "") or "no message said why"
    libraries = sorted({f.library for f in new}) or ["cuDNN", "cuBLAS"]
    major = _cuda_major(_gpus(ctx)[1], _plugins(ctx))
    wheels = [w for w in (f.wheel(major) for f in new) if w]
    command = _pip(wheels)
    after = f"JAX runs on {_on(run)}" if run.default_backend else "jax.devices() raises"
    return fail(f"with torch {run.torch_version} imported first, {after}; alone it runs on {_on(alone)}: {why}",
                f"torch and JAX load one copy of {' and '.join(libraries)} into the process, and torch's comes first. "
                "Align the wheels so that one version satisfies both (the nvidia-* wheels torch pins against the "
                "minimum JAX was built against"
                + (f": `{command}`" if command else "")
                + "), or import jax before torch.", command, **details)  # fmt: skip
