"""The node's health, said where each watcher looks: Docker's HEALTHCHECK, Kubernetes' node-problem-detector,
Slurm's HealthCheckProgram and Prolog, and (through the ``prometheus`` renderer) node_exporter's textfile.

All of them judge the same thing: the quick doctor (host, driver, GPUs; never torch) and the lab spec in
force (its checks found by the CLI and handed in), built into the doctor's own document by the doctor's
own code (:func:`assess`). What differs is only how each watcher wants the answer, and each function here
speaks one dialect. Nothing here redacts: the CLI redacts a :class:`Health` once, as it delivers it
(:meth:`Health.redacted`), and every dialect's answer is built from that.

* Docker (:func:`docker_line`) keeps the last few outputs in ``docker inspect`` and reads exit 0 as
  healthy, anything else as unhealthy: one line that leads with the failing check, exit 0 or 1.
* node-problem-detector (:func:`npd_verdict`) runs a custom plugin and reads exit 0 as OK, 1 as a problem
  and anything else as unknown; it keeps at most ``max_output_length`` bytes of stdout as the condition's
  message (80 by default), so the message is cut to 80 bytes here, where the cut can be clean.
* Slurm (:func:`slurm_verdict`, :func:`drain_node`) ignores a HealthCheckProgram's exit code (the program
  must drain the node itself, with ``scontrol``) and drains a node whose Prolog exits non-zero. So exit 1
  means a judged failure of this node, and envcheck's own trouble (a crash, a lab spec it cannot read) is
  said in the line but exits 0 and never drains: a bug in envcheck or a typo in a spec must not take a
  whole cluster out of service. Slurm kills the program after 60 s: the run is bounded well inside that.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envcheck.core.model import error_line, one_line
from envcheck.doctor.app import DoctorRequest, run_doctor

if TYPE_CHECKING:
    from envcheck.core.registry import CheckSpec

#: node-problem-detector's default ``max_output_length`` (pkg/custompluginmonitor/types/config.go):
#: it cuts a plugin's stdout to this many bytes for the condition message.
NPD_MAX_OUTPUT = 80
#: NPD's plugin protocol (pkg/custompluginmonitor/types/types.go): OK 0, NonOK 1, Unknown 2.
NPD_OK, NPD_PROBLEM, NPD_UNKNOWN = 0, 1, 2

#: Slurm kills a HealthCheckProgram that runs longer than 60 s (slurm.conf(5), HealthCheckProgram). The
#: checks' deadline, ``scontrol`` and Python's start-up must fit in it with room to spare.
SLURM_MAX_DEADLINE_S = 30.0
SCONTROL_TIMEOUT_S = 10.0
#: ``sinfo -R`` shows the start of a reason: it leads with the check id, and stays short.
DRAIN_REASON_MAX = 120


@dataclass(frozen=True)
class Health:
    """One judgement of this node. ``document`` is the doctor's document (``envcheck.doctor/1``) of the
    quick checks; it is None when nothing could be judged, and ``error`` says why."""

    document: dict[str, Any] | None
    spec_path: str | None = None
    error: str | None = None

    @classmethod
    def crashed(cls, exc: Exception) -> Health:
        """envcheck itself broke while judging: a verdict of its own (each dialect says it), never a
        traceback."""
        return cls(None, error=f"envcheck crashed: {error_line(exc)}")

    def redacted(self, env: Mapping[str, str]) -> Health:
        """The judgement with every secret of ``env`` (and every token shape) taken out of the document,
        the spec's path and the error: what may be printed to a watcher, which shows it to anyone who can
        see the container or the node (``docker inspect``, ``kubectl describe node``, ``sinfo -R``)."""
        from envcheck.core.redact import redact_tree, scrub

        return Health(
            redact_tree(self.document, env) if self.document is not None else None,
            scrub(self.spec_path, env) if self.spec_path is not None else None,
            scrub(self.error, env) if self.error is not None else None,
        )

    def checks(self, *statuses: str) -> list[dict[str, Any]]:
        """The checks with one of these statuses, in the report's order."""
        return [c for c in (self.document or {}).get("checks", []) if c["status"] in statuses]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Judged failures of this node: what NPD calls a problem and what ``--drain`` drains for."""
        return self.checks("fail")

    @property
    def problems(self) -> list[dict[str, Any]]:
        """Failures and crashed checks: what makes the doctor (and Docker's healthcheck) say not ready."""
        return self.checks("fail", "crash")


def assess(
    deadline_s: float,
    *,
    require_gpu: bool = False,
    lab_checks: tuple[CheckSpec, ...] = (),
    spec_path: str | None = None,
    started: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Health:
    """Run the quick doctor and the lab spec's checks (``lab_checks``, read from ``spec_path`` by the
    caller) under ``deadline_s`` and build the doctor's document.

    Never raises: envcheck crashing is a :class:`Health` whose ``error`` says so (each dialect decides what
    that means for its watcher). ``started`` is when the process started (``time.monotonic()``), so the
    document's duration is the wait the watcher saw."""
    started = time.monotonic() if started is None else started
    request = DoctorRequest(
        quick=True,
        opt_in=("gpu.required",) if require_gpu else (),
        extra=lab_checks,
        env=env,
        deadline_s=deadline_s,
    )
    try:
        from envcheck.doctor.report import doctor_document

        report = run_doctor(request)
        document = doctor_document(report, wall_s=time.monotonic() - started, require_gpu=require_gpu)
    except Exception as exc:  # noqa: BLE001 - a crash is a verdict of its own, never a traceback
        return Health.crashed(exc)
    return Health(document, spec_path)


def _took(document: dict[str, Any]) -> str:
    """The wait the watcher saw (the document's ``duration_s``: starting Python and importing envcheck
    included), as the doctor's footer says it; the checks alone take a few milliseconds."""
    return f"({document.get('duration_s', 0.0):.1f} s)"


def _first_problem(problems: list[dict[str, Any]]) -> str:
    """``gpu.ecc: <summary>; 2 more problem(s): a, b``: the first problem in full, the others by id."""
    first = f"{problems[0]['id']}: {problems[0]['summary']}"
    if len(problems) > 1:
        first += f"; {len(problems) - 1} more problem(s): {', '.join(p['id'] for p in problems[1:])}"
    return first


def _healthy_words(health: Health) -> str:
    """``4 GPU(s) answer, lab spec lab.toml met, 1 warning(s): gpu.pcie``."""
    document = health.document or {}
    count = sum(1 for g in document.get("gpus", []) if not g.get("lost") and not g.get("refused"))
    words = f"{count} GPU(s) answer" if count else "no NVIDIA GPUs"
    if health.spec_path is not None:
        words += f", lab spec {health.spec_path} met"
    warned = health.checks("warn")
    if warned:
        words += f", {len(warned)} warning(s): {', '.join(c['id'] for c in warned)}"
    return words


def docker_line(health: Health) -> tuple[bool, str]:
    """(healthy, the line to print) for Docker. A broken spec is unhealthy: the lab asked for something we
    cannot read; a crash is unhealthy too (a crashed check counts as a problem, as in the doctor)."""
    if health.error is not None or health.document is None:
        return False, one_line(f"unhealthy: {health.error}")
    took = _took(health.document)
    if health.problems:
        return False, one_line(f"unhealthy: {_first_problem(health.problems)} {took}")
    return True, one_line(f"healthy: {_healthy_words(health)} {took}")


def fit_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, ending in ``...`` when cut. NPD cuts bytes, not
    characters, so its own cut could split a character (``°C``, ``≤``) and leave an invalid message."""
    if len(text.encode()) <= limit:
        return text
    cut = text.encode()[: max(0, limit - 3)].decode(errors="ignore").rstrip()
    return cut + "..."


def npd_verdict(health: Health) -> tuple[int, str]:
    """(exit code, message) for a node-problem-detector custom plugin: 0 OK, 1 a check failed on this
    node, 2 unknown (envcheck crashed, a check crashed, the lab spec cannot be read: nothing was judged
    wrong with the node, but it was not judged right either). The message fits in NPD's 80 bytes."""
    if health.error is not None or health.document is None:
        return NPD_UNKNOWN, fit_bytes(one_line(f"unknown: {health.error}"), NPD_MAX_OUTPUT)
    if health.failed:
        more = f" (+{len(health.failed) - 1} more)" if len(health.failed) > 1 else ""
        # The id and the count must survive the cut; the summary gives way.
        head, summary = f"{health.failed[0]['id']}: ", one_line(health.failed[0]["summary"])
        room = NPD_MAX_OUTPUT - len(head.encode()) - len(more.encode())
        return NPD_PROBLEM, head + fit_bytes(summary, room) + more
    crashed = health.checks("crash")
    if crashed:
        ids = ", ".join(c["id"] for c in crashed)
        return NPD_UNKNOWN, fit_bytes(f"unknown: check(s) crashed (envcheck bug): {ids}", NPD_MAX_OUTPUT)
    return NPD_OK, fit_bytes(one_line(f"healthy: {_healthy_words(health)}"), NPD_MAX_OUTPUT)


@dataclass(frozen=True)
class SlurmVerdict:
    """What the Slurm mode prints and exits with; ``drain_reason`` is set only for a judged failure."""

    exit_code: int
    line: str
    drain_reason: str | None = None


def slurm_verdict(health: Health) -> SlurmVerdict:
    """Exit 1 only for a judged failure of this node (a Prolog exiting non-zero drains the node and
    requeues the job); envcheck's own trouble is said and exits 0 (see the module's docstring)."""
    if health.error is not None or health.document is None:
        return SlurmVerdict(0, one_line(f"envcheck could not judge this node: {health.error}"))
    took = _took(health.document)
    if health.failed:
        first = health.failed[0]
        reason = drain_reason(f"envcheck: {first['id']}: {first['summary']}")
        return SlurmVerdict(1, one_line(f"unhealthy: {_first_problem(health.failed)} {took}"), reason)
    crashed = health.checks("crash")
    if crashed:
        ids = ", ".join(c["id"] for c in crashed)
        return SlurmVerdict(
            0, one_line(f"envcheck could not judge this node: check(s) crashed (envcheck bug): {ids} {took}")
        )
    return SlurmVerdict(0, one_line(f"healthy: {_healthy_words(health)} {took}"))


def drain_reason(text: str) -> str:
    """A reason ``scontrol`` and ``sinfo -R`` show as it is: one line, no control characters, double
    quotes made single (the reason is passed as one argv word, never through a shell), and short."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text).replace('"', "'")
    return fit_bytes(one_line(text), DRAIN_REASON_MAX)


def slurm_node_name(env: Mapping[str, str]) -> str:
    """This node's name in Slurm: ``SLURMD_NODENAME`` where slurmd sets it (Prolog, HealthCheckProgram),
    else the short host name (what slurm.conf's NodeName usually is)."""
    return env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


#: One node's name as slurm.conf's NodeName spells it. Anything else is not drained: a comma or brackets
#: would make scontrol read a list of nodes (``gpu[01-64]``), and odd characters are no node of Slurm's.
_PLAIN_NODE = re.compile(r"[A-Za-z0-9._-]+")


def node_shown(node: str) -> str:
    """A node name as the Slurm line shows it: as it is when it is one plain name, else quoted with its
    odd characters escaped, so that a name holding a newline or ``; drained gpu-01`` can neither split the
    one line Slurm logs nor pass for envcheck's own words."""
    return node if _PLAIN_NODE.fullmatch(node) else ascii(node)


def drain_node(reason: str, env: Mapping[str, str]) -> tuple[bool, str]:
    """Drain this node with ``reason`` through ``scontrol update``, bounded in time. Returns (drained, what
    happened in words): a missing, failing or hanging scontrol is said, never raised. scontrol gets an argv
    list, never a shell line, and only a name that is one node (see :data:`_PLAIN_NODE`)."""
    from envcheck.core import proc

    name = slurm_node_name(env)
    node = node_shown(name)
    if not _PLAIN_NODE.fullmatch(name):
        return False, f"could not drain {node}: not one node's name (scontrol could read it as several)"
    argv = ["scontrol", "update", f"nodename={name}", "state=drain", f"reason={reason}"]
    try:
        ended = proc.run(argv, SCONTROL_TIMEOUT_S, env=env)
    except OSError as exc:
        return False, f"could not drain {node}: cannot run scontrol: {exc.strerror or exc}"
    if ended.timed_out:
        return False, f"could not drain {node}: scontrol did not answer within {SCONTROL_TIMEOUT_S:g} s"
    if ended.returncode != 0:
        said = one_line(ended.stderr or ended.stdout)[:200]
        return False, f"could not drain {node}: scontrol exited {ended.returncode}" + (f": {said}" if said else "")
    return True, f"drained {node}"
