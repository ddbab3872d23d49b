"""Probe the torch build in a child process: import it, read its build, initialise CUDA, run a matmul.

Why a child process: importing torch can raise (a missing ``libcudnn.so.9``), hang (CUDA
initialisation on a wedged driver, a stuck network filesystem) or crash the interpreter (SIGSEGV in a
native library). In a child, each of those becomes a :class:`TorchInfo` with a ``status`` that says
which, and the doctor goes on. The child runs :mod:`envcheck.probes.torch_child` *by path* with the
interpreter asked for, so a broken envcheck install cannot matter and another virtualenv's torch can
be judged.

The child is started through :mod:`envcheck.core.proc`: its own process group, killed whole on timeout
and when envcheck exits; a child whose envcheck was killed outright ends itself a moment after its own
time limit.

Two time limits, told apart in the verdict. The child's own timeout (``ENVCHECK_TORCH_TIMEOUT``,
default 40 s) is how long a healthy import and CUDA start may take: past it, the child is *hung*
(``timeout``). The doctor's ``--deadline`` can come first: then the child was still working when the
report was due, which says nothing about a hang (``unfinished``). Either way the child is never
interrupted before its limit, and at the limit it is asked for its stack (``SIGUSR1``, answered by
faulthandler) before it is killed, so the verdict names the step and the line it was in.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck.core import proc, workers
from envcheck.core.model import Fix
from envcheck.probes import torch_child
from envcheck.probes.registry import probe

CHILD_SCRIPT = Path(torch_child.__file__).resolve()

#: How long the runner waits for this probe at most.
PROBE_TIMEOUT_S = 45.0
#: How long the child may take by default: importing a CUDA torch from a cold page cache takes 5-15 s
#: on network filesystems, CUDA initialisation and one matmul per GPU a few seconds more.
DEFAULT_CHILD_TIMEOUT_S = 40.0
#: The child is stopped this much before the runner would give up on the probe (its timeout or the
#: doctor's deadline), so that the verdict can say which step it was in instead of only "no answer":
#: enough for its last words (the stack dump, :data:`envcheck.core.proc.LAST_WORDS_S`), the group kill,
#: reading its pipes and parsing what it said. Every tenth of a second more is one the import may use.
_MARGIN_S = 0.5
#: Whatever the limits, the child gets this long: a report that says less than "the interpreter did not
#: start" is no use.
_MIN_S = 0.5
TIMEOUT_ENV = "ENVCHECK_TORCH_TIMEOUT"

#: Makes cuBLAS compute fp32 matmuls in TF32. torch reads it with ``c10::utils::check_env``: "1" is on, "0" off,
#: and any other value is ignored with a warning, so only "1" forces TF32.
TF32_CUBLAS_OVERRIDE = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"


def tf32_cublas_forced(env: Mapping[str, str]) -> bool:
    """Whether torch will compute fp32 matmuls in TF32 whatever the code asks (the variable is "1")."""
    return env.get(TF32_CUBLAS_OVERRIDE) == "1"


STDERR_TAIL_CHARS = 2000


@dataclass
class TorchDevice:
    """One GPU as torch sees it (indices are after ``CUDA_VISIBLE_DEVICES``)."""

    index: int
    name: str | None = None
    capability: tuple[int, int] | None = None
    uuid: str | None = None
    #: Max relative error of a 64x64 fp32 matmul against a float64 CPU reference; None if it did not run.
    matmul_max_rel_error: float | None = None
    #: The CUDA error the matmul raised, quoted.
    matmul_error: str | None = None
    #: The error reading this device's properties raised, quoted.
    error: str | None = None
    #: L2 cache size and SM count (what the bench sizes its working sets by); None where not read.
    l2_bytes: int | None = None
    multiprocessors: int | None = None


@dataclass
class TorchInfo:
    """What the child found. ``status``: ``ok``, ``not_installed``, ``import_error``, ``crashed``,
    ``timeout`` (hung: past its own time limit), ``unfinished`` (still working when the doctor's deadline
    came), ``bad_output`` (exited cleanly without saying anything) or ``spawn_error`` (the interpreter could
    not be started). Fields the child never reached stay None."""

    status: str
    #: The real error: the exception line (``OSError: libcudnn.so.9: ...``), the signal, or what hung.
    error: str | None = None
    #: The step the child was in when it finished, hung or crashed (see :func:`stage_words`).
    stage: str | None = None
    stderr_tail: str = ""
    #: For a crash or hang, the innermost Python frame the child's faulthandler printed ("file:line in fn").
    where: str | None = None
    exit_code: int | None = None
    timeout_s: float | None = None
    duration_s: float = 0.0
    python: str | None = None
    executable: str | None = None
    #: CUDA_VISIBLE_DEVICES as the child saw it.
    cuda_visible_devices: str | None = None
    import_s: float | None = None
    version: str | None = None
    path: str | None = None
    cuda: str | None = None
    hip: str | None = None
    cudnn_version: int | None = None
    #: The cuDNN torch was compiled against, (major, minor, patch); ``cudnn_version`` is the one loaded.
    cudnn_compile_version: list[int] | None = None
    nccl_version: tuple[int, ...] | None = None
    #: The build's GPU targets: ``sm_XY`` (binary) and ``compute_XY`` (PTX), from ``_cuda_getArchFlags``.
    arch_list: list[str] = field(default_factory=list)
    #: Library -> error reading its version (``cudnn``, ``nccl``, ``arch_list``).
    lib_errors: dict[str, str] = field(default_factory=dict)
    cuda_available: bool | None = None
    device_count: int | None = None
    #: Why CUDA is not available, as torch said it (``Found no NVIDIA driver on your system ...``).
    cuda_init_error: str | None = None
    devices: list[TorchDevice] = field(default_factory=list)
    #: ``torch.version.debug``: a debug build is many times slower.
    debug: bool | None = None
    #: The CUDA runtime (libcudart) torch loaded, asked of the library (``"13.0"``); it can differ from
    #: ``cuda``, what torch was built against, when another copy is found first.
    cuda_runtime_version: str | None = None
    cuda_runtime_library: str | None = None
    #: The CUDA wheels next to torch (``nvidia-cudnn-cu12``, ``cuda-toolkit``...): canonical name -> version.
    cuda_wheels: dict[str, str] = field(default_factory=dict)
    #: triton (or pytorch-triton) next to torch: torch.compile's GPU compiler, pinned by each torch release.
    triton_version: str | None = None
    #: The scan for compiled modules linking torch's or CUDA's libraries (envcheck.probes.elf.scan, less its
    #: modules): files read, seconds, ``truncated`` and ``error``; None when the child never got there.
    extension_scan: dict[str, Any] | None = None
    #: Those modules: distribution, version, path, the torch/CUDA sonames they need.
    extension_modules: list[dict[str, Any]] = field(default_factory=list)
    #: What loading each after torch gave: index into ``extension_modules``, the loader's error or None, and
    #: for a module that loaded, ``targets``: the GPU targets of its fatbin (envcheck.probes.elf.fatbin_targets).
    extension_results: list[dict[str, Any]] = field(default_factory=list)
    #: The build records of xformers, DeepSpeed and bitsandbytes (envcheck.probes.stack.records).
    stack_records: dict[str, Any] | None = None
    #: The CUDA libraries mapped in the child after import and CUDA start: name, path, and the nvidia-* wheel's
    #: copy when the mapped one is another file; None when /proc/self/maps could not be read.
    libraries: list[dict[str, Any]] | None = None
    #: Loading a module ended the child (``{"index", "how": hung|crashed|unfinished, "error"}``): torch's
    #: facts were all said before, so torch is still judged on them.
    extension_stopped: dict[str, Any] | None = None

    @property
    def imported(self) -> bool:
        return self.status == "ok"


def stage_words(stage: str | None) -> str:
    """The child's step in words, for "hung during ..." and "crashed during ..."."""
    if stage is None:
        return "starting the Python interpreter"
    kind, _, index = stage.partition(":")
    return {
        "import": "import torch",
        "build": "reading torch's build information",
        "cuda_init": "CUDA initialisation (torch.cuda.is_available())",
        "device": f"reading the properties of GPU {index}",
        "matmul": f"the test matmul on GPU {index}",
        "libraries": "reading which CUDA libraries are loaded",
        "extensions": "scanning the installed compiled extensions",
        "extension": f"loading compiled extension {index}",
        "done": "finishing",
    }.get(kind, stage)


def child_timeout(
    env: Mapping[str, str],
    timeout_s: float | None = None,
    *,
    variable: str = TIMEOUT_ENV,
    default_s: float = DEFAULT_CHILD_TIMEOUT_S,
    probe_s: float = PROBE_TIMEOUT_S,
) -> float:
    """The child's own time limit, past which it is hung: the argument, else the variable
    (``ENVCHECK_TORCH_TIMEOUT``), else the default; never so long that the runner gives up on the probe
    (``probe_s``) first. The JAX child is bounded the same way, by its own variable."""
    if timeout_s is None:
        try:
            timeout_s = float(env.get(variable, default_s))
        except ValueError:
            timeout_s = default_s
    if not math.isfinite(timeout_s):
        timeout_s = default_s
    return max(_MIN_S, min(timeout_s, probe_s - _MARGIN_S))


def time_limit(own_s: float, deadline_s: float | None, *, elapsed_s: float = 0.0) -> tuple[float, bool]:
    """(seconds from the child's start until it is stopped, whether the doctor's deadline set them).

    ``deadline_s`` is what was left of the doctor's deadline ``elapsed_s`` after the child started; the
    child is stopped :data:`_MARGIN_S` before it, or at ``own_s``, whichever comes first.
    """
    if deadline_s is None or elapsed_s + deadline_s - _MARGIN_S >= own_s:
        return own_s, False
    return max(_MIN_S, round(elapsed_s + deadline_s - _MARGIN_S, 2)), True


@probe(
    "torch",
    timeout_s=PROBE_TIMEOUT_S,
    what="the torch child process (import torch, CUDA init)",
    hang_fix=Fix(
        "Importing torch or initialising CUDA did not finish: time the import by hand to see where it stops "
        "(a hung network filesystem under site-packages, or a wedged driver: then check the kernel log for Xid).",
        'python -X importtime -c "import torch; torch.cuda.is_available()"',
    ),
)
def probe_torch(
    env: Mapping[str, str] | None = None,
    *,
    python: str | None = None,
    timeout_s: float | None = None,
    deadline_s: float | None = None,
) -> TorchInfo:
    """Run the child with ``python`` (default: this interpreter) in ``env`` (default: ours), so that
    ``CUDA_VISIBLE_DEVICES``, ``PYTHONPATH`` and ``LD_LIBRARY_PATH`` apply exactly as in the user's jobs.

    ``deadline_s`` is what is left of the doctor's deadline (the runner passes it): the child is stopped
    a little before it, so the verdict names the step it was in and no child outlives the report."""
    child_env = dict(os.environ if env is None else env)
    interpreter = python or sys.executable
    own = child_timeout(child_env, timeout_s)
    early = _take_early(interpreter, child_env)
    if early is not None:
        child, started, told = early
        limit, by_deadline = time_limit(own, deadline_s, elapsed_s=time.monotonic() - started)
        # Never past the limit the child was told: past it, it ends itself (its orphan alarm).
        if told < limit:
            limit, by_deadline = told, told < own
    else:
        limit, by_deadline = time_limit(own, deadline_s)
        started = time.monotonic()
        try:
            child = _spawn(interpreter, child_env, limit)
        except OSError as exc:
            return TorchInfo(status="spawn_error", error=f"cannot start {interpreter}: {exc}", timeout_s=limit)
    ended = proc.wait(child, limit, started=started, last_words=workers.DUMP_SIGNAL)
    info = _parse(ended.stdout, ended.stderr, ended.returncode, ended.timed_out, limit, by_deadline=by_deadline)
    info.duration_s = ended.duration_s
    return info


def _spawn(interpreter: str, env: Mapping[str, str], limit: float) -> subprocess.Popen[bytes]:
    return proc.start([interpreter, str(CHILD_SCRIPT), f"{limit:g}"], env=env)


#: A child started by :func:`start_early`, waiting for the probe: (interpreter, env, process, start, limit).
_EARLY: list[tuple[str, dict[str, str], subprocess.Popen[bytes], float, float]] = []


def start_early(env: Mapping[str, str], deadline_s: float) -> None:
    """Start the torch child before the rest of envcheck is even imported.

    Importing torch is by far the slowest thing the doctor waits for, so the CLI calls this first thing;
    the probe then adopts the running child if it would have started the same one (same interpreter,
    same environment). Failing to start is left to the probe, which reports it properly. The child is
    told the whole deadline as its limit: the doctor's own clock starts a little later, and the probe
    stops the child a margin before that clock runs out.
    """
    child_env = dict(env)
    limit = min(child_timeout(child_env), max(_MIN_S, deadline_s))
    started = time.monotonic()
    try:
        child = _spawn(sys.executable, child_env, limit)
    except OSError:
        return
    _EARLY.append((sys.executable, child_env, child, started, limit))


def _take_early(interpreter: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], float, float] | None:
    for i, (python, early_env, child, started, limit) in enumerate(_EARLY):
        if python == interpreter and early_env == env:
            del _EARLY[i]
            return child, started, limit
    return None


def _parse(
    stdout: str, stderr: str, returncode: int | None, hung: bool, limit: float, *, by_deadline: bool = False
) -> TorchInfo:
    """Merge the child's marked JSON lines in order, then decide the status from how it ended.

    ``hung``: still running at ``limit`` (then killed); ``by_deadline``: that limit was the doctor's
    deadline rather than the child's own timeout."""
    end = workers.ScriptEnd.read(stdout, stderr, returncode, hung, CHILD_SCRIPT.name)
    fields = end.fields
    torch_done = bool(fields.pop("torch_done", False))
    devices = [_device(d) for d in fields.pop("devices", [])]
    nccl = fields.pop("nccl_version", None)
    info = TorchInfo(
        status="ok",
        stderr_tail=stderr[-STDERR_TAIL_CHARS:].strip(),
        exit_code=returncode,
        timeout_s=limit,
        devices=devices,
        nccl_version=tuple(nccl) if isinstance(nccl, list) else nccl,
        **end.known(TorchInfo, "status", "stderr_tail", "exit_code", "timeout_s"),
    )
    if end.finished:
        info.status = end.status  # type: ignore[assignment]
        return info
    if torch_done:
        _extension_stopped(info, end, by_deadline)
        return info
    info.where = end.where
    info.status, info.error = end.failure(stage_words(info.stage), limit, by_deadline)
    return info


def _extension_stopped(info: TorchInfo, end: workers.ScriptEnd, by_deadline: bool) -> None:
    """The child said everything about torch, then ended while loading (or scanning for) an extension: torch
    stays ``ok`` and the extension it was loading is the finding."""
    kind, _, index = (info.stage or "").partition(":")
    hung, returncode = end.hung, end.returncode
    how = "unfinished" if hung and by_deadline else "hung" if hung else "crashed"
    if returncode is not None and returncode < 0 and not hung:
        error = f"killed by {workers.signal_name(-returncode, described=True)}"
    elif hung:
        error = "still loading when the child was stopped"
    else:
        error = f"the interpreter exited with status {returncode}"
    info.extension_stopped = {
        "index": int(index) if kind == "extension" and index.isdigit() else None,
        "how": how,
        "error": error,
        "where": end.frame(),
    }


def _device(raw: dict[str, Any]) -> TorchDevice:
    capability = raw.get("capability")
    return TorchDevice(
        index=raw["index"],
        name=raw.get("name"),
        capability=tuple(capability) if capability else None,
        uuid=raw.get("uuid"),
        matmul_max_rel_error=raw.get("matmul_max_rel_error"),
        matmul_error=raw.get("matmul_error"),
        error=raw.get("error"),
        l2_bytes=raw.get("l2_bytes") if isinstance(raw.get("l2_bytes"), int) else None,
        multiprocessors=raw.get("multiprocessors") if isinstance(raw.get("multiprocessors"), int) else None,
    )
