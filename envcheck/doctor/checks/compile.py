"""``torch.compile`` readiness: what Inductor and Triton need before the first compile, judged without
importing torch (the ``compile`` probe reads the machine; :mod:`envcheck.probes.compile` says where each
thing is looked for and why there).

These are the failures users meet only at their first ``torch.compile``, minutes into a job: "Failed to
find C compiler. Please specify via CC environment variable", "fatal error: Python.h: No such file or
directory", "/usr/bin/ld: cannot find -lcuda", "failed to map segment from shared object" from a
``noexec`` /tmp. Where torch is not installed nothing here is used, and every check skips saying so.
"""

from __future__ import annotations

from typing import Any

from envcheck.core.model import SkipCheck, Verdict, fail, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.doctor.areas import check
from envcheck.doctor.reading import nvml_state
from envcheck.probes import compile as _compile_probe  # noqa: F401 - registers the "compile" probe
from envcheck.probes import packages as _packages_probe  # noqa: F401 - registers the "packages" probe
from envcheck.probes.compile import CacheDir, CompileInfo, Compiler
from envcheck.probes.nvml import inventory as _nvml_probe  # noqa: F401 - registers the "nvml" probe
from envcheck.probes.packages import PackagesState

COMPILER_FIX = (
    "Install a C/C++ compiler: `sudo apt-get install build-essential` (Debian/Ubuntu), "
    "`sudo dnf install gcc gcc-c++` (Fedora/RHEL), or in a conda environment "
    "`conda install -c conda-forge gcc gxx`; or point CC and CXX at one that is installed."
)


def _info(ctx: Context) -> CompileInfo:
    """The probe's data, once torch is known to be installed: without torch, nothing here is used."""
    packages: PackagesState = ctx.probe("packages")
    if packages.torch is None and not packages.torch_module:
        raise SkipCheck("torch is not installed (see packages.torch): torch.compile is not used here")
    return ctx.probe("compile")


def _gpus(ctx: Context) -> int | None:
    """How many NVIDIA GPUs answer NVML; None where NVML does not (driver.nvml judges that)."""
    state = nvml_state(ctx, consult=True)
    return len(state.gpus) if state is not None else None


def _said(compiler: Compiler) -> str:
    where = f"{compiler.source}={compiler.command}" if compiler.source in ("CC", "CXX") else compiler.command
    return f"{where} ({compiler.version})" if compiler.version else f"{where or compiler.source}: {compiler.error}"


@check("compile.compiler", "C/C++ compiler for torch.compile")
def check_compiler(ctx: Context) -> Verdict:
    """A C compiler for Triton's GPU kernels (CC, else gcc or clang) and a C++ compiler for Inductor's CPU code (CXX,
    else g++) run; without them torch.compile fails at the first call ("Failed to find C compiler").

    A missing compiler fails where torch.compile needs it on this machine: the C compiler where a GPU answers
    (Triton builds every kernel's launcher with it), the C++ compiler where none does (Inductor then compiles
    every graph to C++). The other one missing only warns: it is needed for the other kind of device, and a
    job that compiles for it (a CPU tensor on a GPU node) fails there. A set CC or CXX that does not run fails:
    both builders take the variable as given, without looking further.
    """
    info = _info(ctx)
    gpus = _gpus(ctx)
    by_language = {c.language: c for c in info.compilers}
    broken = [c for c in info.compilers if c.version is None]
    details: dict[str, Any] = {"compilers": [vars(c) for c in info.compilers], "gpus": gpus}
    summary = "; ".join(f"{c.language}: {_said(c)}" for c in info.compilers)
    if not broken:
        return ok(summary, **details)
    needed = "c" if gpus else "c++"
    set_but_broken = [c for c in broken if c.source in ("CC", "CXX")]
    if by_language[needed] in broken or set_but_broken:
        use = "Triton's GPU kernels" if needed == "c" else "Inductor's CPU code (no GPU answers NVML here)"
        return fail(f"torch.compile cannot build {use}: {summary}", COMPILER_FIX,
                    "sudo apt-get install build-essential", **details)  # fmt: skip
    other = "CPU tensors (Inductor's C++ code)" if needed == "c" else "GPU kernels (Triton's launchers)"
    return warn(f"torch.compile cannot build code for {other}: {summary}", COMPILER_FIX,
                "sudo apt-get install build-essential", **details)  # fmt: skip


@check("compile.python_headers", "Python development headers")
def check_python_headers(ctx: Context) -> Verdict:
    """Python.h of the interpreter envcheck runs in is installed: Triton and Inductor compile against it ("fatal error:
    Python.h: No such file or directory")."""
    info = _info(ctx)
    details = {"python": info.python, "include_dir": info.include_dir, "base_prefix": info.base_prefix}
    if info.include_dir is None:
        return skip(f"{info.python} names no include directory (sysconfig): headers not available to judge", **details)
    if info.has_python_h:
        return ok(f"{info.include_dir}/Python.h (Python {info.python_version} at {info.python}, envcheck's own)",
                  **details)  # fmt: skip
    version = info.python_version
    if info.base_prefix in ("/usr", "/usr/local"):
        fix = (f"Install the headers of the system's Python {version}: `sudo apt-get install python{version}-dev` "
               f"(Debian/Ubuntu) or `sudo dnf install python{version[0]}-devel` (Fedora/RHEL).")  # fmt: skip
        command = f"sudo apt-get install python{version}-dev"
    else:
        fix = (f"This Python {version} ({info.base_prefix}) was installed without its headers: reinstall it with them "
               f"(conda: `conda install --force-reinstall python={version}`; uv: `uv python install --reinstall "
               f"{version}`).")  # fmt: skip
        command = None
    return fail(f"no Python.h in {info.include_dir} (Python {version} at {info.python}, envcheck's own)", fix, command,
                **details)  # fmt: skip


@check("compile.libcuda", "libcuda.so for Triton's linker")
def check_libcuda(ctx: Context) -> Verdict:
    """Where a GPU answers, Triton finds the driver library to link its kernels' launchers with, and the unversioned
    libcuda.so beside it ("/usr/bin/ld: cannot find -lcuda").

    Triton looks in TRITON_LIBCUDA_PATH, else where ``ldconfig -p`` lists libcuda.so.1, else in LD_LIBRARY_PATH.
    No libcuda.so.1 there fails (Triton stops: "libcuda.so cannot found!"). libcuda.so.1 without an unversioned
    libcuda.so beside it warns: recent Triton links libcuda.so.1 by name, releases that link with ``-lcuda``
    fail. Without a GPU Triton's GPU backend is not used, and the check skips.
    """
    info = _info(ctx)
    gpus = _gpus(ctx)
    if not gpus:
        raise SkipCheck("no NVIDIA GPU answers NVML (see driver.nvml): Triton does not link libcuda here")
    lib = info.libcuda
    details: dict[str, Any] = {"libcuda": vars(lib)}
    symlink = "Make the unversioned name the linker looks for: `sudo ln -s libcuda.so.1 {dir}/libcuda.so`"
    if lib.env_path:
        if "libcuda.so" in lib.env_has:
            return ok(f"TRITON_LIBCUDA_PATH={lib.env_path} holds libcuda.so", **details)
        if "libcuda.so.1" in lib.env_has:
            return warn(f"TRITON_LIBCUDA_PATH={lib.env_path} holds libcuda.so.1 but no libcuda.so",
                        symlink.format(dir=lib.env_path) + ", or point TRITON_LIBCUDA_PATH at a directory that has it.",
                        f"sudo ln -s libcuda.so.1 {lib.env_path}/libcuda.so", **details)  # fmt: skip
        return fail(f"TRITON_LIBCUDA_PATH={lib.env_path} holds no libcuda.so or libcuda.so.1",
                    "Point TRITON_LIBCUDA_PATH at the directory holding the driver's libcuda.so "
                    "(`ldconfig -p | grep libcuda` lists it), or unset it.", "ldconfig -p | grep libcuda",
                    **details)  # fmt: skip
    if lib.ldconfig is None and not lib.ld_library_path:
        return skip(f"the linker's cache could not be read ({lib.ldconfig_error}): libcuda not available to judge",
                    **details)  # fmt: skip
    listed = lib.ldconfig or {"libcuda.so": [], "libcuda.so.1": []}
    dirs = sorted({p.rsplit("/", 1)[0] for p in listed["libcuda.so.1"]}) or list(lib.ld_library_path)
    if not dirs:
        return fail("the linker's cache (ldconfig -p) lists no libcuda.so.1, and no LD_LIBRARY_PATH entry holds it",
                    "Refresh the linker cache so it lists the driver's library (`sudo ldconfig`; in a container, start "
                    "it with the NVIDIA runtime), or export TRITON_LIBCUDA_PATH=<directory holding libcuda.so.1>.",
                    "sudo ldconfig", **details)  # fmt: skip
    beside = [d for d in dirs if any(p.rsplit("/", 1)[0] == d for p in listed["libcuda.so"])
              or lib.ld_library_path.get(d)]  # fmt: skip
    if beside:
        return ok(f"libcuda.so and libcuda.so.1 in {', '.join(beside)}", **details)
    return warn(f"libcuda.so.1 in {', '.join(dirs)}, but no unversioned libcuda.so (Triton releases that link with "
                "-lcuda fail: 'cannot find -lcuda')",
                symlink.format(dir=dirs[0]) + ", or export TRITON_LIBCUDA_PATH=<a directory holding libcuda.so>.",
                f"sudo ln -s libcuda.so.1 {dirs[0]}/libcuda.so", **details)  # fmt: skip


@check("compile.cache_dirs", "Inductor and Triton cache directories")
def check_cache_dirs(ctx: Context) -> Verdict:
    """Inductor's cache (TORCHINDUCTOR_CACHE_DIR, else torchinductor_<user> in the temp dir) and Triton's
    (TRITON_CACHE_DIR, else ~/.triton/cache) can be written and run code: both load the shared objects they build from
    there, so a read-only or noexec mount breaks torch.compile.

    A problem with Triton's cache only warns where no GPU answers (Triton's GPU backend is not used there);
    a filesystem whose flags could not be read is said, never taken as fine.
    """
    info = _info(ctx)
    gpus = _gpus(ctx)
    details: dict[str, Any] = {"caches": [vars(c) for c in info.caches]}
    problems: list[tuple[CacheDir, str]] = []
    unknown: list[CacheDir] = []
    for cache in info.caches:
        if cache.blocked:
            problems.append((cache, cache.blocked))
        elif cache.noexec:
            problems.append((cache, f"on a noexec filesystem ({cache.nearest})"))
        elif cache.noexec is None:
            unknown.append(cache)
    said = "; ".join(f"{c.owner}: {c.path} ({c.source})" for c in info.caches)
    if problems:
        words = "; ".join(f"{c.owner} cache {c.path} ({c.source}): {why}" for c, why in problems)
        variable = {"inductor": "TORCHINDUCTOR_CACHE_DIR", "triton": "TRITON_CACHE_DIR"}
        exports = " ".join(f"export {variable[c.owner]}=$HOME/.cache/{c.owner}" for c, _ in problems)
        fix = ("Point each at a directory you can write on a filesystem mounted with exec (not a noexec /tmp): "
               f"`{exports}`.")  # fmt: skip
        verdict = warn if not gpus and all(c.owner == "triton" for c, _ in problems) else fail
        return verdict(words, fix, exports, **details)
    if unknown:
        return skip(f"the filesystem of {', '.join(c.path for c in unknown)} could not be read: not available ({said})",
                    **details)  # fmt: skip
    return ok(said, **details)
