"""Probe what ``torch.compile`` needs before its first compile, found the way Inductor and Triton find it:
the C and C++ compilers, the Python development headers, the CUDA driver library for the linker, and the
cache directories they write and load code from. Nothing here imports torch or triton.

Where each comes from (torch 2.x, Triton 3.x):

* Triton builds a small C launcher per kernel with ``CC``, else ``gcc``, else ``clang`` on ``PATH``
  (``triton/runtime/build.py``, ``_find_compiler``: "Failed to find C compiler. Please specify via CC
  environment variable."). Inductor's CPU backend compiles C++ with ``CXX``, else ``g++``, and uses it only
  if ``<compiler> --version`` runs (``torch/_inductor/cpp_builder.py``, ``cpp_compiler_search``).
* Both compile against ``Python.h`` of the interpreter that runs the job: here, the one envcheck runs in.
* Triton links the launcher against the driver library found in ``TRITON_LIBCUDA_PATH``, else in the
  directories ``ldconfig -p`` lists ``libcuda.so.1`` in, else in ``LD_LIBRARY_PATH``
  (``triton/backends/nvidia/driver.py``, ``libcuda_dirs``). Releases that link with ``-lcuda`` need the
  unversioned ``libcuda.so`` there: "/usr/bin/ld: cannot find -lcuda" (pytorch/pytorch#103417, #92745).
* Inductor writes to ``TORCHINDUCTOR_CACHE_DIR``, else ``torchinductor_<user>`` in the temp dir
  (``torch/_inductor/runtime/cache_dir_utils.py``); Triton to ``TRITON_CACHE_DIR``, else
  ``$TRITON_HOME/.triton/cache`` (home by default, ``triton/knobs.py``). Both load the shared objects they
  build from there, so a ``noexec`` mount breaks them as surely as a read-only one.

The compilers' ``--version`` and ``ldconfig -p`` run at once through :mod:`envcheck.core.proc`, each bounded;
this probe runs only in the full doctor, never in ``--quick``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from envcheck.core import proc
from envcheck.core.model import Fix
from envcheck.probes.registry import probe

#: A compiler's ``--version`` and ``ldconfig -p`` are quick; longer means something (NFS, a wrapper) hangs.
TOOL_TIMEOUT_S = 10.0
_MARGIN_S = 0.5
#: Where Triton runs ldconfig from, then the usual other places (``PATH`` often lacks the sbin directories).
LDCONFIG_PLACES = ("/sbin/ldconfig", "/usr/sbin/ldconfig", "/usr/bin/ldconfig")
#: ``libcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1``: the name and the path.
_LDCONFIG_LINE = re.compile(r"^\s*(libcuda\.so(?:\.1)?)\s+\(.*\)\s+=>\s+(\S+)\s*$")
_ST_NOEXEC = getattr(os, "ST_NOEXEC", 8)
_ST_RDONLY = getattr(os, "ST_RDONLY", 1)


@dataclass
class Compiler:
    """The compiler one of the two builders would use: ``language`` "c" (Triton) or "c++" (Inductor)."""

    language: str
    #: Where the choice came from: the variable (``CC``/``CXX``) or the name found on ``PATH``.
    source: str
    #: What would be run (the variable's value, or the path on ``PATH``); None: nothing found.
    command: str | None = None
    #: The first line of ``--version``; None when it did not run (then ``error`` says why).
    version: str | None = None
    error: str | None = None


@dataclass
class CacheDir:
    """A cache directory: where it is, why there, and whether code can be written and run from it."""

    owner: str  # "inductor" or "triton"
    path: str
    source: str  # the variable that set it, or "default"
    #: The directory itself or, when it does not exist yet, its nearest existing ancestor.
    nearest: str | None = None
    #: What stands in the way: "a file", "not writable", "read-only filesystem"; None when nothing does.
    blocked: str | None = None
    #: The filesystem is mounted noexec; None when its flags could not be read.
    noexec: bool | None = None
    error: str | None = None


@dataclass
class LibcudaInfo:
    #: ``TRITON_LIBCUDA_PATH`` as set (None: unset) and which of the two names it holds.
    env_path: str | None = None
    env_has: list[str] = field(default_factory=list)
    #: ``ldconfig -p``: libcuda.so / libcuda.so.1 -> the paths listed; None when ldconfig could not be read.
    ldconfig: dict[str, list[str]] | None = None
    ldconfig_error: str | None = None
    #: ``LD_LIBRARY_PATH`` entries holding libcuda.so.1 (Triton's fallback) -> whether libcuda.so is beside it.
    ld_library_path: dict[str, bool] = field(default_factory=dict)


@dataclass
class CompileInfo:
    compilers: list[Compiler] = field(default_factory=list)
    #: The interpreter whose headers were looked for (envcheck's own: the one whose packages are judged).
    python: str = sys.executable
    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    #: The installation it belongs to (``/usr`` for a distribution's Python, a conda prefix...): the fix differs.
    base_prefix: str = sys.base_prefix
    include_dir: str | None = None
    has_python_h: bool = False
    libcuda: LibcudaInfo = field(default_factory=LibcudaInfo)
    caches: list[CacheDir] = field(default_factory=list)


@probe(
    "compile",
    timeout_s=TOOL_TIMEOUT_S + 5,
    what="the compilers, headers, libcuda and cache directories torch.compile uses",
    hang_fix=Fix(
        "A compiler's --version or ldconfig -p did not finish: check for a wrapper or a hung network filesystem.",
        "timeout 10 gcc --version; timeout 10 ldconfig -p | grep libcuda",
    ),
)
def probe_compile(env: Mapping[str, str], *, deadline_s: float | None = None) -> CompileInfo:
    """Find the compilers and ldconfig, run them all at once (each for at most :data:`TOOL_TIMEOUT_S`, never
    past the doctor's deadline), and look at the headers and the cache directories meanwhile."""
    search_path = env.get("PATH", os.defpath)
    info = CompileInfo()
    info.compilers = [_choose("c", "CC", ("gcc", "clang"), env, search_path),
                      _choose("c++", "CXX", ("g++",), env, search_path)]  # fmt: skip
    ldconfig = next((p for p in LDCONFIG_PLACES if os.access(p, os.X_OK)), None) or shutil.which(
        "ldconfig", path=search_path
    )
    limit = TOOL_TIMEOUT_S if deadline_s is None else max(0.1, min(TOOL_TIMEOUT_S, deadline_s - _MARGIN_S))
    started = time.monotonic()
    commands = {c.command for c in info.compilers if c.command}
    running = {command: _start([command, "--version"], env) for command in commands}
    if ldconfig:
        running[ldconfig] = _start([ldconfig, "-p"], env)
    # While they run: the files.
    info.include_dir = sysconfig.get_paths().get("include")
    info.has_python_h = bool(info.include_dir) and (Path(info.include_dir) / "Python.h").is_file()
    info.caches = cache_dirs(env)
    info.libcuda = _libcuda_files(env)
    ended = {key: c if isinstance(c, OSError) else proc.wait(c, limit, started=started) for key, c in running.items()}
    for compiler in info.compilers:
        if compiler.command:
            compiler.version, compiler.error = _version(ended[compiler.command], limit)
    if ldconfig is None:
        info.libcuda.ldconfig_error = "no ldconfig in /sbin, /usr/sbin or on PATH"
    else:
        info.libcuda.ldconfig, info.libcuda.ldconfig_error = _ldconfig(ended[ldconfig], limit)
    return info


def _choose(language: str, variable: str, names: tuple[str, ...], env: Mapping[str, str], path: str) -> Compiler:
    """The compiler the builder would take: the variable as set (Triton runs it as given), else the first name
    on ``PATH``."""
    if env.get(variable):
        value = env[variable]
        return Compiler(language, variable, shutil.which(value, path=path) or value)
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return Compiler(language, name, found)
    return Compiler(language, " or ".join(names), error=f"no {' and no '.join(names)} on PATH")


def _start(argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes] | OSError:
    try:
        return proc.start(argv, env={**env, "LC_ALL": "C"})
    except OSError as exc:
        return exc


def _version(result: proc.Ended | OSError, limit: float) -> tuple[str | None, str | None]:
    if isinstance(result, OSError):
        return None, f"cannot run it: {result}"
    if result.timed_out:
        return None, f"`--version` did not finish within {limit:g} s"
    first = next((line.strip() for line in result.stdout.splitlines() if line.strip()), "")
    if result.returncode != 0 or not first:
        tail = (result.stdout + result.stderr).strip()[-200:]
        return None, f"`--version` exited {result.returncode}: {tail!r}"
    return first, None


def _ldconfig(result: proc.Ended | OSError, limit: float) -> tuple[dict[str, list[str]] | None, str | None]:
    if isinstance(result, OSError):
        return None, f"cannot run ldconfig: {result}"
    if result.timed_out:
        return None, f"`ldconfig -p` did not finish within {limit:g} s"
    if result.returncode != 0:
        return None, f"`ldconfig -p` exited {result.returncode}: {result.stderr.strip()[-200:]!r}"
    return parse_ldconfig(result.stdout), None


def parse_ldconfig(text: str) -> dict[str, list[str]]:
    """``libcuda.so`` and ``libcuda.so.1`` -> the paths ``ldconfig -p`` lists for each (every architecture)."""
    found: dict[str, list[str]] = {"libcuda.so": [], "libcuda.so.1": []}
    for line in text.splitlines():
        match = _LDCONFIG_LINE.match(line)
        if match:
            found[match[1]].append(match[2])
    return found


def _libcuda_files(env: Mapping[str, str]) -> LibcudaInfo:
    info = LibcudaInfo(env_path=env.get("TRITON_LIBCUDA_PATH") or None)
    if info.env_path:
        info.env_has = [n for n in ("libcuda.so", "libcuda.so.1") if (Path(info.env_path) / n).exists()]
    for entry in filter(None, env.get("LD_LIBRARY_PATH", "").split(":")):
        if (Path(entry) / "libcuda.so.1").exists():
            info.ld_library_path[entry] = (Path(entry) / "libcuda.so").exists()
    return info


def cache_dirs(env: Mapping[str, str]) -> list[CacheDir]:
    """Inductor's and Triton's cache directories as they would resolve under ``env``, each judged."""
    inductor = env.get("TORCHINDUCTOR_CACHE_DIR")
    triton = env.get("TRITON_CACHE_DIR")
    triton_home = env.get("TRITON_HOME") or _home(env)
    return [
        _judge_dir("inductor", inductor, "TORCHINDUCTOR_CACHE_DIR")
        if inductor
        else _judge_dir("inductor", os.path.join(_tempdir(env), f"torchinductor_{_user(env)}"), "default"),
        _judge_dir("triton", triton, "TRITON_CACHE_DIR")
        if triton
        else _judge_dir("triton", os.path.join(triton_home, ".triton", "cache"), "default"),
    ]


def _user(env: Mapping[str, str]) -> str:
    """``getpass.getuser()`` over ``env``, sanitised as Inductor does."""
    name = next((env[k] for k in ("LOGNAME", "USER", "LNAME", "USERNAME") if env.get(k)), None)
    if name is None:
        try:
            name = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            name = f"uid_{os.getuid()}"
    return re.sub(r'[\\/:*?"<>|]', "_", name)


def _home(env: Mapping[str, str]) -> str:
    if env.get("HOME"):
        return env["HOME"]
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return "/"


def _tempdir(env: Mapping[str, str]) -> str:
    """``tempfile.gettempdir()`` over ``env``: the first writable directory of its candidates."""
    for candidate in [*(env[k] for k in ("TMPDIR", "TEMP", "TMP") if env.get(k)), "/tmp", "/var/tmp", "/usr/tmp"]:
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return os.getcwd()


def _judge_dir(owner: str, path: str, source: str) -> CacheDir:
    result = CacheDir(owner, os.path.abspath(os.path.expanduser(path)), source)
    nearest = Path(result.path)
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    result.nearest = str(nearest)
    try:
        flags = os.statvfs(nearest).f_flag
    except OSError as exc:
        result.error = f"cannot read its filesystem: {exc}"
        flags = None
    if not nearest.is_dir():
        result.blocked = "a file" if str(nearest) == result.path else f"{nearest} is a file"
    elif flags is not None and flags & _ST_RDONLY:
        result.blocked = "read-only filesystem"
    elif not os.access(nearest, os.W_OK | os.X_OK):
        result.blocked = "not writable"
    result.noexec = None if flags is None else bool(flags & _ST_NOEXEC)
    return result
