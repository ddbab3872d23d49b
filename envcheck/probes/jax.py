"""Probe JAX in child processes: import it, ask ``jax.devices()`` which backend it ended on, and keep the
warnings it logged on the way; then again with torch imported first.

Why: JAX never raises when it cannot use the GPU. A missing CUDA plugin, a plugin whose cuDNN or cuBLAS is
older than the one it was built against, or a torch imported first that put its own copies of those
libraries in the process: each is one logged warning ("CUDA backend failed to initialize: Found cuDNN version
8700, but JAX was built against version 8800", "An NVIDIA GPU may be present on this machine, but a
CUDA-enabled jaxlib is not installed. Falling back to cpu.") and a job that runs on the CPU
(jax-ml/jax#18032, #18027). Only running JAX shows it; :mod:`envcheck.probes.jax_child` does, by path, with
this interpreter, like the torch child (:mod:`envcheck.probes.torch`): bounded, its own process group, a
hang or a crash a status naming the step.

Nothing runs where JAX is not installed: whether it is comes from ``importlib.util.find_spec`` (a look at the
path, no import), so a machine without JAX pays nothing and envcheck itself never imports jax.
"""

from __future__ import annotations

import importlib.util
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
from envcheck.probes import jax_child
from envcheck.probes.registry import probe
from envcheck.probes.torch import STDERR_TAIL_CHARS, child_timeout, time_limit

CHILD_SCRIPT = Path(jax_child.__file__).resolve()

#: How long the runner waits for this probe at most.
PROBE_TIMEOUT_S = 40.0
#: How long a child may take by default: importing jax is about a second warm on two cores (jaxlib 0.10,
#: CPU), torch and jax together under three; a cold network filesystem and CUDA initialisation add seconds.
DEFAULT_CHILD_TIMEOUT_S = 30.0
TIMEOUT_ENV = "ENVCHECK_JAX_TIMEOUT"

#: The two runs: JAX alone, and torch imported first.
ALONE, TORCH_FIRST = "jax", "torch_first"


@dataclass
class JaxRun:
    """What one child found. ``status``: ``ok``, ``not_installed``, ``import_error``, ``torch_error`` (the
    torch-first run could not import torch), ``crashed``, ``timeout`` (hung past its own limit),
    ``unfinished`` (still working at the doctor's deadline), ``bad_output`` or ``spawn_error``."""

    mode: str
    status: str
    error: str | None = None
    stage: str | None = None
    where: str | None = None
    exit_code: int | None = None
    timeout_s: float | None = None
    duration_s: float = 0.0
    stderr_tail: str = ""
    executable: str | None = None
    import_s: float | None = None
    backend_s: float | None = None
    jax_version: str | None = None
    jaxlib_version: str | None = None
    torch_version: str | None = None
    torch_cuda: str | None = None
    #: ``{"id", "platform", "kind"}`` per device ``jax.devices()`` returned.
    devices: list[dict[str, Any]] = field(default_factory=list)
    default_backend: str | None = None
    #: What ``jax.devices()`` raised (``JAX_PLATFORMS=cuda`` with a plugin that fails).
    devices_error: str | None = None
    #: Every warning logged or warned while jax imported and chose its backend.
    messages: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """JAX imported and said which devices it uses."""
        return self.status == "ok" and self.default_backend is not None

    def text(self) -> str:
        """Everything the run said about why it ended where it did, to search for the known messages."""
        return "\n".join([*self.messages, self.devices_error or "", self.error or "", self.stderr_tail])


@dataclass
class JaxInfo:
    """``installed``: a ``jax`` module is on this interpreter's path; without it no child ran."""

    installed: bool
    #: Whether a ``torch`` module is on the path (the torch-first run needs one).
    torch_installed: bool = False
    runs: dict[str, JaxRun] = field(default_factory=dict)


def stage_words(stage: str | None) -> str:
    if stage is None:
        return "starting the Python interpreter"
    return {
        "import_torch": "import torch (before jax)",
        "import": "import jax",
        "backend": "jax.devices() (loading the plugins and choosing the backend)",
        "done": "finishing",
    }.get(stage, stage)


@probe(
    "jax",
    timeout_s=PROBE_TIMEOUT_S,
    what="the JAX child processes (import jax, jax.devices())",
    hang_fix=Fix(
        "Importing jax or choosing its backend did not finish: time it by hand to see where it stops (a hung "
        "network filesystem under site-packages, a CUDA plugin waiting on a wedged driver).",
        'python -X importtime -c "import jax; print(jax.devices())"',
    ),
)
def probe_jax(env: Mapping[str, str] | None = None, *, deadline_s: float | None = None) -> JaxInfo:
    """Start the JAX-alone child and, where torch is installed too, the torch-first child at once (each its
    own interpreter, so the import order is the only difference), then wait for both within the same limit."""
    if importlib.util.find_spec("jax") is None:
        return JaxInfo(installed=False)
    info = JaxInfo(installed=True, torch_installed=importlib.util.find_spec("torch") is not None)
    child_env = dict(os.environ if env is None else env)
    # XLA takes 75 % of every GPU's memory when its client starts: two children doing so beside the torch child and
    # a running job could fail for want of memory and read as a JAX on the CPU. A question needs none of it.
    child_env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    own = child_timeout(child_env, variable=TIMEOUT_ENV, default_s=DEFAULT_CHILD_TIMEOUT_S, probe_s=PROBE_TIMEOUT_S)
    limit, by_deadline = time_limit(own, deadline_s)
    started = time.monotonic()
    modes = [ALONE, TORCH_FIRST] if info.torch_installed else [ALONE]
    children: dict[str, subprocess.Popen[bytes]] = {}
    for mode in modes:
        argv = [sys.executable, str(CHILD_SCRIPT), f"{limit:g}", *(["torch"] if mode == TORCH_FIRST else [])]
        try:
            children[mode] = proc.start(argv, env=child_env)
        except OSError as exc:
            error = f"cannot start {sys.executable}: {exc}"
            info.runs[mode] = JaxRun(mode, "spawn_error", error=error, timeout_s=limit)
    for mode, child in children.items():
        ended = proc.wait(child, limit, started=started, last_words=workers.DUMP_SIGNAL)
        run = _parse(mode, ended.stdout, ended.stderr, ended.returncode, ended.timed_out, limit, by_deadline)
        run.duration_s = ended.duration_s
        info.runs[mode] = run
    return info


def _parse(
    mode: str, stdout: str, stderr: str, returncode: int | None, hung: bool, limit: float, by_deadline: bool
) -> JaxRun:
    """Merge the child's events in order, then decide the status from how it ended."""
    end = workers.ScriptEnd.read(stdout, stderr, returncode, hung, CHILD_SCRIPT.name)
    run = JaxRun(
        mode,
        "ok",
        stderr_tail=stderr[-STDERR_TAIL_CHARS:].strip(),
        exit_code=returncode,
        timeout_s=limit,
        **end.known(JaxRun, "mode", "status", "stderr_tail", "exit_code", "timeout_s"),
    )
    if end.finished:
        run.status = end.status  # type: ignore[assignment]
        return run
    run.where = end.where
    run.status, run.error = end.failure(stage_words(run.stage), limit, by_deadline)
    return run
