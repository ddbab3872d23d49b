"""Probe the torch build in a child process: import it, read its build, initialise CUDA, run a matmul.

Why a child process: importing torch can raise (a missing ``libcudnn.so.9``), hang (CUDA
initialisation on a wedged driver, a stuck network filesystem) or crash the interpreter (SIGSEGV in a
native library). In a child, each of those becomes a :class:`TorchInfo` with a ``status`` that says
which, and the doctor goes on. The child runs :mod:`envcheck.probes.torch_child` *by path* with the
interpreter asked for, so a broken envcheck install cannot matter and another virtualenv's torch can
be judged.

The child gets its own session (process group): on timeout the whole group is killed, so a hung CUDA
initialisation leaves nothing behind. Children still running when envcheck exits (the doctor's
deadline came first) are killed at exit for the same reason, and a child whose envcheck was killed
outright (no exit handlers run) ends itself a moment after its own time limit.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck.core.model import Fix
from envcheck.core.registry import probe
from envcheck.probes import torch_child

CHILD_SCRIPT = Path(torch_child.__file__).resolve()

#: How long the runner waits for this probe at most.
PROBE_TIMEOUT_S = 45.0
#: How long the child may take by default: importing a CUDA torch from a cold page cache takes 5-15 s
#: on network filesystems, CUDA initialisation and one matmul per GPU a few seconds more.
DEFAULT_CHILD_TIMEOUT_S = 40.0
#: The child is killed this much before the runner would give up on the probe (its timeout or the
#: doctor's deadline), so that the verdict can say which step hung instead of only "no answer": enough to
#: kill the group, read its pipes and parse what it said.
_MARGIN_S = 1.0
TIMEOUT_ENV = "ENVCHECK_TORCH_TIMEOUT"
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


@dataclass
class TorchInfo:
    """What the child found. ``status``: ``ok``, ``not_installed``, ``import_error``, ``crashed``,
    ``timeout``, ``bad_output`` (exited cleanly without saying anything) or ``spawn_error`` (the
    interpreter could not be started). Fields the child never reached stay None."""

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
        "done": "finishing",
    }.get(kind, stage)


def child_timeout(env: Mapping[str, str], timeout_s: float | None = None, deadline_s: float | None = None) -> float:
    """The child's time limit: the argument, else ``ENVCHECK_TORCH_TIMEOUT``, else the default; never so
    long that the runner gives up on the probe first, whether at the probe's timeout or at the end of
    what is left of the doctor's deadline (``deadline_s``)."""
    if timeout_s is None:
        try:
            timeout_s = float(env.get(TIMEOUT_ENV, DEFAULT_CHILD_TIMEOUT_S))
        except ValueError:
            timeout_s = DEFAULT_CHILD_TIMEOUT_S
    runner_waits = PROBE_TIMEOUT_S if deadline_s is None else min(PROBE_TIMEOUT_S, round(deadline_s, 1))
    return max(0.5, min(timeout_s, runner_waits - _MARGIN_S))


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

    ``deadline_s`` is what is left of the doctor's deadline (the runner passes it): the child is killed
    a little before it, so the verdict names the step that hung and no child outlives the report."""
    child_env = dict(os.environ if env is None else env)
    interpreter = python or sys.executable
    early = _take_early(interpreter, child_env)
    if early is not None:
        proc, started, limit = early
    else:
        limit = child_timeout(child_env, timeout_s, deadline_s)
        started = time.monotonic()
        try:
            proc = _spawn(interpreter, child_env, limit)
        except OSError as exc:
            return TorchInfo(status="spawn_error", error=f"cannot start {interpreter}: {exc}", timeout_s=limit)
    hung = False
    try:
        out, err = proc.communicate(timeout=max(0.1, limit - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        # Still running: a real hang. Already exited: a grandchild kept the pipes open; judge the exit.
        hung = proc.poll() is None
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild that left the group still holds the pipes
            out, err = b"", b""
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    info = _parse(out.decode(errors="replace"), err.decode(errors="replace"), proc.returncode, hung, limit)
    info.duration_s = time.monotonic() - started
    return info


def _spawn(interpreter: str, env: Mapping[str, str], limit: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [interpreter, str(CHILD_SCRIPT), str(limit)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )
    with _LIVE_LOCK:
        _LIVE.add(proc)
    return proc


#: A child started by :func:`start_early`, waiting for the probe: (interpreter, env, proc, start, limit).
_EARLY: list[tuple[str, dict[str, str], subprocess.Popen[bytes], float, float]] = []


def start_early(env: Mapping[str, str], deadline_s: float) -> None:
    """Start the torch child before the rest of envcheck is even imported.

    Importing torch is by far the slowest thing the doctor waits for, so the CLI calls this first thing;
    the probe then adopts the running child if it would have started the same one (same interpreter,
    same environment). Failing to start is left to the probe, which reports it properly.
    """
    child_env = dict(env)
    limit = child_timeout(child_env, deadline_s=deadline_s)
    try:
        proc = _spawn(sys.executable, child_env, limit)
    except OSError:
        return
    _EARLY.append((sys.executable, child_env, proc, time.monotonic(), limit))


def _take_early(interpreter: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], float, float] | None:
    for i, (python, early_env, proc, started, limit) in enumerate(_EARLY):
        if python == interpreter and early_env == env:
            del _EARLY[i]
            return proc, started, limit
    return None


def _parse(stdout: str, stderr: str, returncode: int | None, hung: bool, limit: float) -> TorchInfo:
    """Merge the child's marked JSON lines in order, then decide the status from how it ended."""
    fields: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(torch_child.MARK):
            try:
                fields.update(json.loads(line[len(torch_child.MARK) :]))
            except ValueError:
                continue  # a line cut short by a crash
    done = bool(fields.pop("done", False))
    status = fields.pop("status", None)
    devices = [_device(d) for d in fields.pop("devices", [])]
    nccl = fields.pop("nccl_version", None)
    known = set(TorchInfo.__dataclass_fields__) - {"status", "stderr_tail", "exit_code", "timeout_s"}
    info = TorchInfo(
        status="ok",
        stderr_tail=stderr[-STDERR_TAIL_CHARS:].strip(),
        exit_code=returncode,
        timeout_s=limit,
        devices=devices,
        nccl_version=tuple(nccl) if isinstance(nccl, list) else nccl,
        **{k: v for k, v in fields.items() if k in known},
    )
    info.where = _innermost_frame(stderr) if (hung or (returncode or 0) < 0) else None
    if hung:
        info.status = "timeout"
        info.error = f"{stage_words(info.stage)} did not finish within {limit:g} s"
    elif done and status:
        info.status = status
    elif returncode is not None and returncode < 0:
        info.status = "crashed"
        info.error = f"the interpreter was killed by {_signal_name(-returncode)} during {stage_words(info.stage)}"
    elif returncode:
        info.status = "crashed"
        info.error = f"the interpreter exited with status {returncode} during {stage_words(info.stage)}"
    else:
        info.status = "bad_output"
        info.error = f"the child exited without reporting a result (last step: {stage_words(info.stage)})"
    return info


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<fn>\S+)')


def _innermost_frame(stderr: str) -> str | None:
    """The first frame of faulthandler's last dump ("most recent call first"), skipping the import
    machinery, so that a hang or crash can be pinned to the file and line of torch that did it."""
    dump = stderr.rpartition("(most recent call first):")[2]
    for line in dump.splitlines():
        match = _FRAME.match(line)
        if match and not match["file"].startswith("<frozen"):
            return f"{match['file']}:{match['line']} in {match['fn']}"
    return None


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
    )


def _signal_name(number: int) -> str:
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"signal {number}"
    description = signal.strsignal(sig)
    return f"{sig.name} ({description})" if description else sig.name


# Children whose result nobody is waiting for any more die with envcheck (see the module docstring).
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows has no process groups to kill
            proc.kill()
    except OSError:
        pass  # already gone


@atexit.register
def _kill_live_children() -> None:
    with _LIVE_LOCK:
        for proc in list(_LIVE):
            _kill_group(proc)
