"""Probe the kernel log for what a GPU node's silent failures leave there: NVIDIA Xids and NVSwitch SXids, a GPU
that fell off the bus, PCIe AER errors, nvidia-peermem's "invalid context", segfaults in NCCL or CUDA, the OOM
killer taking a training process, and a driver whose kernel module and libraries disagree.

The log is read through :func:`envcheck.core.machine.read_kernel_log` (a saved file under ``ENVCHECK_KERNEL_LOG``,
else ``journalctl -k`` over this boot and a few before it, else ``dmesg``), never as root. Four shapes of line
are understood, so that a log saved on another node reads the same as this one's:

- ``journalctl -k -o short-iso``: ``2024-08-30T11:43:09+0000 node01 kernel: NVRM: Xid ...``, boots separated by
  ``-- Boot <id> --`` (or ``-- Reboot --`` from older systemd);
- ``dmesg --time-format iso``: ``2024-08-30T11:43:09,859532+00:00 NVRM: Xid ...``;
- ``dmesg -T``: ``[Fri Aug 30 11:43:09 2024] NVRM: Xid ...``;
- plain ``dmesg``: ``[ 5107.644336] NVRM: Xid ...`` (seconds since boot), and syslog's ``kern.log``
  (``Aug 30 11:43:09 node01 kernel: [ 5107.644336] ...``).

In dmesg's shapes a boot starts where the kernel says ``Linux version`` (its first message). Events are returned
with the boot they belong to, counted back from the newest boot in the log (0, -1, -2...), which is this boot
when the log is this machine's. Nothing is judged here.

The healthcheck (``doctor --quick``) reads less: this boot only, from where its last run stopped
(:func:`since_last_run`). A small state file keeps this boot's id, that position (a journal cursor, or the time of
the last line read from ``dmesg`` or a saved log) and this boot's GPU events read so far, so that an Xid found
once goes on being judged at every later run of this boot: a Docker HEALTHCHECK turns unhealthy only after
several failures in a row, and an Xid that failed one run and vanished from the next would never get there.

The state file survives a reboot, and so it also keeps, per earlier boot id, the Xids and SXids the healthcheck saw
on each device (:data:`HISTORY_BOOTS` boots, :data:`XIDS_PER_DEVICE` codes a device), so that the healthcheck
escalates an Xid back after reboots as the full doctor does from the journal's earlier boots.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from envcheck.core import files
from envcheck.core.machine import (
    KERNEL_LOG_DEADLINE_S,
    KERNEL_LOG_ENV,
    KernelLog,
    boot_id,
    boot_time,
    read_kernel_log,
)
from envcheck.core.model import Fix
from envcheck.probes.registry import probe

#: A PCI address as the kernel writes it: domain, bus, device, and the function where there is one.
_PCI = r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?"

_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:[,.]\d+)?([+-]\d\d:?\d\d|Z)?\s+(.*)")
_CTIME = re.compile(r"\[(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\]\s?(.*)")
_MONOTONIC = re.compile(r"\[\s*(\d+\.\d+)\]\s?(.*)")
_SYSLOG = re.compile(r"(\w{3} [ \d]\d \d\d:\d\d:\d\d) \S+ kernel: (.*)")
_JOURNAL_HOST = re.compile(r"\S+ kernel: (.*)")

_XID = re.compile(rf"NVRM: Xid \((?:PCI:)?({_PCI})\): (\d+),?\s*(.*)")
_GPU_AT = re.compile(rf"NVRM: GPU at PCI:({_PCI}): (GPU-[0-9a-fA-F-]+)")
_OFF_BUS = re.compile(rf"NVRM: GPU (?:at )?(?:PCI:)?({_PCI}):? (?:GPU )?has fallen off the bus")
_SXID = re.compile(rf"SXid \(PCI:({_PCI})\): (\d+), (Fatal|Non-fatal|Nonfatal)\b,?\s*(.*)", re.IGNORECASE)
_AER = re.compile(
    rf"(\S+) ({_PCI}): (?:AER: )?PCIe Bus Error: severity=(Corrected|Correctable|Uncorrected|Uncorrectable)"
    r"(?: \((Non-Fatal|Fatal)\))?"
)
_AER_RECEIVED = re.compile(
    r"AER: (?:Multiple )?(Corrected|Correctable|Uncorrected|Uncorrectable)(?: \((Non-Fatal|Fatal)\))? error "
    rf"(?:message )?received:? (?:from )?({_PCI})"
)
_PEERMEM = re.compile(r"nvidia-peermem \S+ ERROR detected invalid context")
_SEGFAULT = re.compile(r"(\S+)\[(\d+)\]: segfault at \S+ ip \S+ sp \S+ error \S+ in (\S+?)\[")
_OOM_KILL = re.compile(r"(?:Memory cgroup )?[Oo]ut of memory: Killed process (\d+) \(([^)]*)\)")
_API_MISMATCH = re.compile(r"NVRM: API mismatch: (.*)")

#: Libraries whose segfaults are a GPU job's (NCCL, the CUDA driver and runtime, the NVIDIA driver's own).
_GPU_LIBRARIES = re.compile(r"libnccl|libcuda|libnvidia")


@dataclass(frozen=True)
class KernelEvent:
    """One line of the log that matters. ``kind``: ``xid``, ``off_bus``, ``sxid``, ``aer`` (a device's own AER
    line), ``aer_received`` (a root port naming the device), ``peermem``, ``segfault``, ``oom_kill``,
    ``api_mismatch``, or ``gpu_init`` (the driver naming a GPU by bus id and UUID: ``detail`` is the UUID).
    ``device``: the PCI address the line names; ``code``: the Xid or SXid; ``detail``: the
    severity (AER: ``corrected``, ``non_fatal``, ``fatal``; SXid: ``fatal``, ``non_fatal``), the library that
    crashed, the process killed; ``driver``: the driver that wrote an AER line (``nvidia``, ``mlx5_core``);
    ``at``: the line's time as a number that orders the lines of one log (seconds), None where it has none."""

    kind: str
    boot: int
    time: str | None
    line: str
    device: str | None = None
    code: int | None = None
    detail: str | None = None
    driver: str | None = None
    at: float | None = None


@dataclass
class KernelLogInfo:
    """The kernel log as the checks read it: whether and where it was read, how many boots it spans (``boots``;
    the newest is boot 0), and its events, oldest first. ``gpu_uuids``: bus address (``0000:18:00``) -> UUID, as
    the driver names each GPU before an Xid, for a log read without NVML. ``boots_read`` and ``ran_out``: the
    journal's boots read, and whether the read's deadline ended it early.

    The healthcheck's read (:func:`since_last_run`) sets ``since``: which part of the log was read (``this boot``,
    or ``since <time>, N new lines``), ``state``: where the position is kept, or why none could be, and
    ``resumed``: the events include those of earlier runs of this boot (``lines`` counts the new lines only),
    ``history``: the Xids, SXids and GPUs off the bus the state file kept from earlier boots, one event per device
    and code, their ``boot`` counted back from this one over the boots the healthcheck ran in (-1 the last before
    this one; a boot it never ran in is not counted), and ``history_boots``: how many earlier boots it kept. The full
    doctor sets ``history`` too, from the same state file, where its log holds this boot alone."""

    readable: bool
    source: str
    tried: list[str] = field(default_factory=list)
    refused: bool = False
    cut: bool = False
    boots: int = 0
    lines: int = 0
    events: list[KernelEvent] = field(default_factory=list)
    gpu_uuids: dict[str, str] = field(default_factory=dict)
    boots_read: list[int] = field(default_factory=list)
    ran_out: bool = False
    since: str | None = None
    state: str | None = None
    resumed: bool = False
    history: list[KernelEvent] = field(default_factory=list)
    history_boots: int = 0


@probe(
    "kernel_log",
    timeout_s=20.0,
    what="the kernel log (journalctl -k, dmesg)",
    hang_fix=Fix(
        "journalctl did not answer in time: a very large or damaged journal. Check it with "
        "`journalctl --verify`, limit its size (SystemMaxUse= in journald.conf) or read a saved log with "
        "ENVCHECK_KERNEL_LOG=FILE.",
        "journalctl --disk-usage",
    ),
)
def probe_kernel_log(env: Mapping[str, str], deadline_s: float | None = None, quick: bool = False) -> KernelLogInfo:
    """The kernel log over recent boots, within what is left of the run's deadline; in the healthcheck
    (``quick``), this boot since the last run (:func:`since_last_run`)."""
    budget = KERNEL_LOG_DEADLINE_S if deadline_s is None else max(0.5, min(KERNEL_LOG_DEADLINE_S, deadline_s - 2.0))
    if quick:
        return since_last_run(env, min(budget, QUICK_READ_S))
    log = read_kernel_log(env, deadline_s=budget)
    info = _info(log)
    if log.text is not None:
        parse(log.text, info)
        if info.boots <= 1:
            _earlier_from_state(env, info, log.source)
    return info


def _earlier_from_state(env: Mapping[str, str], info: KernelLogInfo, source: str) -> None:
    """Where the log holds this boot alone (a journal kept in memory, dmesg's ring buffer), the Xids the
    healthcheck's state file kept from the boots it ran in before (:func:`since_last_run`): the full doctor
    then judges an Xid back after reboots as the healthcheck does, instead of calling for a reboot where the
    healthcheck calls for inspection. Only read: the healthcheck's place stays where its last run left it. A
    saved log is another machine's, and is judged by itself; so is a state another node left in a state directory
    they share (:func:`_load_state`)."""
    if env.get(KERNEL_LOG_ENV):
        return
    directory = state_dir(env)
    if directory is None:
        return
    try:
        # a home directory on a network filesystem whose server stopped answering must not hold the probe
        previous = files.within(STATE_READ_S, lambda: _load_state(directory / STATE_FILE))
    except (files.FileRefused, OSError, RuntimeError):
        return
    history = _history(previous, boot_id(env), source)
    _hand_on(info, history)


def _hand_on(info: KernelLogInfo, history: list[tuple[str, list[KernelEvent]]]) -> None:
    """The earlier boots' Xids (newest boot first) as ``info.history``, each boot counted back from this one."""
    info.history = [replace(e, boot=-n) for n, (_, events) in enumerate(history, 1) for e in events]
    info.history_boots = len(history)


def _info(log: KernelLog) -> KernelLogInfo:
    return KernelLogInfo(
        log.text is not None, log.source, list(log.tried), log.refused, log.cut,
        boots_read=list(log.boots_read), ran_out=log.ran_out,
    )  # fmt: skip


def pci_key(address: str) -> str:
    """A PCI address reduced to what every writer of it agrees on: a 4-digit domain, bus and device, lower case
    (NVML's ``00000000:18:00.0``, the Xid line's ``PCI:0000:18:00`` and AER's ``0000:18:00.0`` all give
    ``0000:18:00``). The function is dropped: an Xid names the GPU without it."""
    address = address.lower().removeprefix("pci:")
    domain, _, rest = address.partition(":")
    return f"{domain[-4:].rjust(4, '0')}:{rest.split('.')[0]}"


def moment(stamp: str | None) -> float | None:
    """A line's time (as :func:`split_line` gives it) as seconds that order the lines of one log: ISO times with a
    zone as Unix time, without one (``dmesg -T``) as if UTC, syslog's (no year) in a fixed year, dmesg's seconds
    after boot as they are. Only times of one log's one shape are ever compared."""
    if not stamp:
        return None
    if stamp.endswith(" s after boot"):
        return float(stamp.split()[0])
    iso = re.sub(r"([+-]\d\d):?(\d\d)$", r"\1:\2", stamp.replace("Z", "+00:00"))
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        try:
            when = datetime.strptime(f"2000 {stamp}", "%Y %b %d %H:%M:%S")
        except ValueError:
            return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def split_line(line: str) -> tuple[str | None, str]:
    """A log line's time (ISO where the line gives a date, else as the line gives it) and its message."""
    m = _ISO.match(line)
    if m:
        stamp, zone, rest = m.groups()
        host = _JOURNAL_HOST.match(rest)
        message = host.group(1) if host else rest
        inner = _MONOTONIC.match(message)  # a journal line that carries dmesg's own stamp too
        return stamp + (zone or ""), inner.group(2) if inner else message
    m = _CTIME.match(line)
    if m:
        try:
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y").isoformat()
        except ValueError:
            stamp = m.group(1)
        return stamp, m.group(2)
    m = _SYSLOG.match(line)
    if m:
        inner = _MONOTONIC.match(m.group(2))
        return " ".join(m.group(1).split()), inner.group(2) if inner else m.group(2)
    m = _MONOTONIC.match(line)
    if m:
        return f"{int(float(m.group(1)))} s after boot", m.group(2)
    return None, line


def parse(text: str, info: KernelLogInfo) -> None:
    """Fill ``info`` with the events of ``text`` and the number of boots and lines it spans."""
    boot, in_boot, lines = 0, False, 0
    events: list[KernelEvent] = []
    for raw in text.splitlines():
        if raw.startswith(("-- Boot ", "-- Reboot --")):
            if in_boot:
                boot, in_boot = boot + 1, False
            continue
        if not raw.strip() or raw.startswith(("-- ", " ", "\t")):  # journalctl's notes, continuation lines
            continue
        time, message = split_line(raw)
        if message.startswith("Linux version ") and in_boot:
            boot += 1
        in_boot, lines = True, lines + 1
        event = _event(message, boot, time, info)
        if event is not None:
            events.append(replace(event, at=moment(time)))
    last = boot
    info.boots = last + 1 if lines else 0
    info.lines = lines
    info.events = [replace(e, boot=e.boot - last) for e in events]


def _event(message: str, boot: int, time: str | None, info: KernelLogInfo) -> KernelEvent | None:
    """The event one message is, if any. Each pattern's literal is tested first: most lines are none of these."""
    line = message[:300]
    if "NVRM: " in message:
        if m := _XID.search(message):
            return KernelEvent("xid", boot, time, line, pci_key(m.group(1)), int(m.group(2)), m.group(3)[:200])
        if m := _GPU_AT.search(message):
            info.gpu_uuids[pci_key(m.group(1))] = m.group(2)
            return KernelEvent("gpu_init", boot, time, line, pci_key(m.group(1)), detail=m.group(2))
        if m := _OFF_BUS.search(message):
            return KernelEvent("off_bus", boot, time, line, pci_key(m.group(1)))
        if m := _API_MISMATCH.search(message):
            return KernelEvent("api_mismatch", boot, time, line, detail=m.group(1)[:200])
        return None
    if "SXid" in message and (m := _SXID.search(message)):
        severity = "fatal" if m.group(3).lower() == "fatal" else "non_fatal"
        return KernelEvent("sxid", boot, time, line, m.group(1).lower(), int(m.group(2)), severity)
    if "AER" in message or "PCIe Bus Error" in message:
        if m := _AER.search(message):
            severity = _severity(m.group(3), m.group(4))
            return KernelEvent("aer", boot, time, line, m.group(2).lower(), detail=severity, driver=m.group(1))
        if m := _AER_RECEIVED.search(message):
            severity = _severity(m.group(1), m.group(2))
            return KernelEvent("aer_received", boot, time, line, m.group(3).lower(), detail=severity)
        return None
    if "nvidia-peermem" in message and _PEERMEM.search(message):
        return KernelEvent("peermem", boot, time, line)
    if "segfault at" in message and (m := _SEGFAULT.search(message)) and _GPU_LIBRARIES.match(m.group(3)):
        return KernelEvent("segfault", boot, time, line, detail=m.group(3), driver=m.group(1))
    if "Killed process" in message and (m := _OOM_KILL.search(message)):
        return KernelEvent("oom_kill", boot, time, line, detail=m.group(2))
    return None


def _severity(kind: str, qualifier: str | None) -> str:
    """AER's severity words (``Corrected``; ``Uncorrected (Non-Fatal)``; ``Uncorrected (Fatal)``; older kernels
    say ``Correctable``/``Uncorrectable``) as one word."""
    if kind.lower().startswith("correct"):
        return "corrected"
    return "fatal" if qualifier == "Fatal" else "non_fatal"


# -- the healthcheck's read: this boot, since the last run -------------------------------------------------------

#: The healthcheck's read of the log is bounded to this: it runs every 30 s in Docker within an 8 s deadline.
QUICK_READ_S = 2.0
STATE_ENV = "ENVCHECK_STATE_DIR"
STATE_FILE = "kernel-log.json"
#: How long the full doctor waits for the healthcheck's state file (a home directory on a network filesystem).
STATE_READ_S = 2.0
STATE_SCHEMA = "envcheck.kernel_log_state/1"
#: The events a run hands on to the next: what kernel.xid judges (the GPU's Xids, SXids, a GPU off the bus, and the
#: driver naming a GPU, which is how a reset shows). Of each (kind, device, code) the newest are kept: a flood of
#: one Xid must not grow the file.
KEPT_KINDS = ("xid", "off_bus", "sxid", "gpu_init")
KEPT_PER_KIND = 20
#: The earlier boots whose Xids the state file keeps (gpud's rule needs the two before this one; a few more let a
#: boot without the Xid come between), and the distinct codes kept per device and boot, newest first: eight, so
#: that the four application Xids (13, 31, 43, 45) cannot crowd out a hardware one.
HISTORY_BOOTS = 5
XIDS_PER_DEVICE = 8
#: The events that history keeps: those whose action kernel.xid escalates when they come back after reboots.
HISTORY_KINDS = ("xid", "off_bus", "sxid")


def state_dir(env: Mapping[str, str]) -> Path | None:
    """Where envcheck keeps what one healthcheck run hands to the next: ``ENVCHECK_STATE_DIR``, else
    ``$XDG_STATE_HOME/envcheck``, else ``~/.local/state/envcheck`` (the XDG Base Directory's state directory)."""
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"], "envcheck")
    home = env.get("HOME")
    if not home:
        try:
            home = str(Path.home())
        except RuntimeError:
            return None  # no home directory (an arbitrary user id in a container) and no variable naming one
    return Path(home, ".local", "state", "envcheck")


def _load_state(path: Path | None) -> dict[str, Any] | None:
    """The state a previous run left, or None where there is none, or it is damaged or not envcheck's: then it is
    ignored (and replaced by this run's), never a crash. Every field is checked for its type and range here, so
    that the read and the checks after it can trust what they are given: one wrong value (a time that is text or
    NaN, a device that is a list) would otherwise fail every run, or skip every new line, until someone deleted
    the file."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            state = json.loads(f.read(1 << 20))
        if not _valid_top(state) or state.get("host") not in (None, _HOST):
            return None  # not envcheck's, or another node's (a home directory shared between nodes)
        events = [_event_from(e, KEPT_KINDS) for e in state["events"]]
        rows = [_history_from(row) for row in state.get("history") or []]
        return {**state, "events": events, "history": rows}
    except (OSError, ValueError, RecursionError):
        return None


def _valid_top(state: Any) -> bool:
    """Whether the state's own fields (all but its events' and history's rows) are envcheck's, of their types."""
    if not isinstance(state, dict) or state.get("schema") != STATE_SCHEMA or not isinstance(state.get("source"), str):
        return False
    position = state.get("position")
    if position is not None and not (
        isinstance(position, dict) and position.get("at") is not None and _is_time(position["at"])
        and _is_int(position.get("same")) and position["same"] >= 1
    ):  # fmt: skip
        return False
    return (
        all(_is_text(state.get(name)) for name in ("boot", "cursor", "last"))
        and isinstance(state.get("events"), list)
        and isinstance(state.get("history"), list | None)
        and (state.get("btime") is None or _is_int(state["btime"]))
        and _is_text(state.get("host"))
    )


#: This node's name, kept in the state: a state directory shared by several nodes (a home directory on NFS) must not
#: hand one node's place or Xids to another, whose boots it would take for its own earlier ones.
_HOST = socket.gethostname()


def _history_from(row: Any) -> tuple[str, list[KernelEvent]]:
    """One earlier boot's row of the history (its id, and its Xids without lines), or ValueError."""
    if not isinstance(row, dict) or not isinstance(row.get("boot"), str) or not isinstance(row.get("xids"), list):
        raise ValueError("not a boot")
    if not all(isinstance(e, dict) for e in row["xids"]):
        raise ValueError("not an event")
    return row["boot"], [_event_from({**e, "boot": 0, "time": None, "line": ""}, HISTORY_KINDS) for e in row["xids"]]


def _is_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_int(value: Any) -> bool:
    """An integer, and not JSON's ``true``/``false`` (which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_time(value: Any) -> bool:
    """None, or a finite number of seconds (a NaN compares false with every line's time, and would skip them all)."""
    if value is None:
        return True
    try:
        return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


#: How each field of a saved :class:`KernelEvent` must look; the first four are required.
_EVENT_FIELDS = {
    "kind": lambda v: isinstance(v, str), "boot": _is_int, "time": _is_text, "line": lambda v: isinstance(v, str),
    "device": _is_text, "code": lambda v: v is None or _is_int(v), "detail": _is_text, "driver": _is_text,
    "at": _is_time,
}  # fmt: skip


def _event_from(row: Any, kinds: tuple[str, ...]) -> KernelEvent:
    """A saved event of this boot, or ValueError where it is not one of ``kinds`` (those a run saves) or a field is
    missing or of the wrong type."""
    if not isinstance(row, dict) or any(name not in row for name in ("kind", "boot", "time", "line")):
        raise ValueError("not an event")
    if row["kind"] not in kinds or row["boot"] != 0:  # kept events are this boot's
        raise ValueError("not an event")
    if not all(valid(row[name]) for name, valid in _EVENT_FIELDS.items() if name in row):
        raise ValueError("not an event")
    event = KernelEvent(**{name: row[name] for name in _EVENT_FIELDS if name in row})
    # Every kept kind names its device, and an Xid or SXid its code: the checks group and sort by both.
    if event.device is None or (event.code is None) == (event.kind in ("xid", "sxid")):
        raise ValueError("not an event")
    return event


def _save_state(path: Path, state: dict[str, Any]) -> str | None:
    """Write the state whole or not at all (a temporary file renamed over the old one: a healthcheck killed midway
    leaves the previous state); None when written, else why not."""
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".kernel-log.")
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return exc.strerror or str(exc)
    return None


def _kept(events: list[KernelEvent]) -> list[KernelEvent]:
    """The events handed to the next run, oldest first: the newest :data:`KEPT_PER_KIND` of each kind of event
    :data:`KEPT_KINDS` names."""
    counts: Counter[tuple[Any, ...]] = Counter()
    kept = []
    for event in reversed(events):
        if event.kind not in KEPT_KINDS:
            continue
        key = (event.kind, event.device, event.code)
        counts[key] += 1
        if counts[key] <= KEPT_PER_KIND:
            kept.append(replace(event, boot=0))
    return kept[::-1]


def _history(
    previous: dict[str, Any] | None, this_boot: str | None, source: str
) -> list[tuple[str, list[KernelEvent]]]:
    """The earlier boots' Xids to judge this boot's by, newest boot first: those the previous state kept, and, where
    that state was of another boot, that boot's own. Only a state of this machine counts: the live log (journal or
    ring buffer, whichever read it) or the same saved log; without this boot's id there is no telling boots apart."""
    saved = f"{KERNEL_LOG_ENV}="
    if previous is None or this_boot is None:
        return []
    if previous["source"] != source and (previous["source"].startswith(saved) or source.startswith(saved)):
        return []
    history: list[tuple[str, list[KernelEvent]]] = previous["history"]
    if previous.get("boot") != this_boot:
        history = [(str(previous.get("boot")), _device_xids(previous["events"])), *history]
    return [(boot, events) for boot, events in history if boot != this_boot][:HISTORY_BOOTS]


def _device_xids(events: list[KernelEvent]) -> list[KernelEvent]:
    """One boot's Xids, SXids and GPUs off the bus as history keeps them: one event per device and code, the newest
    :data:`XIDS_PER_DEVICE` codes of each device, without their lines."""
    kept: dict[tuple[Any, ...], KernelEvent] = {}
    per_device: Counter[str | None] = Counter()
    for event in reversed(events):
        key = (event.kind, event.device, event.code)
        if event.kind not in HISTORY_KINDS or key in kept or per_device[event.device] >= XIDS_PER_DEVICE:
            continue
        per_device[event.device] += 1
        kept[key] = KernelEvent(event.kind, 0, None, "", event.device, event.code)
    return list(kept.values())[::-1]


def _newest_boot(text: str) -> tuple[str | None, list[str]]:
    """The newest boot's identity in a saved log or the ring buffer (journalctl's ``-- Boot <id> --``, else that
    boot's first line) and its lines, by the same boot boundaries :func:`parse` uses."""
    key: str | None = None
    lines: list[str] = []
    for raw in text.splitlines():
        if raw.startswith(("-- Boot ", "-- Reboot --")):
            key, lines = raw, []
            continue
        if not raw.strip() or raw.startswith(("-- ", " ", "\t")):
            continue
        if split_line(raw)[1].startswith("Linux version ") and lines:
            key, lines = None, []
        lines.append(raw)
    if key is None or key.startswith("-- Reboot"):
        key = lines[0] if lines else None
    return key, lines


def _after(lines: list[str], position: dict[str, Any] | None) -> tuple[list[str], dict[str, Any] | None]:
    """The lines after ``position`` (the time of the last line read and how many lines of that same time were read:
    lines of one second cannot be told apart by their time alone), and the position after them. A line without a
    time takes the time of the line before it."""
    at: float | None = None
    same = 0
    new: list[str] = []
    for raw in lines:
        when = moment(split_line(raw)[0])
        if when is not None and when != at:
            at, same = when, 0
        same += 1
        if position is None or at is None or (at, same) > (position["at"], position["same"]):
            new.append(raw)
    return new, ({"at": at, "same": same} if at is not None else position)


def since_last_run(env: Mapping[str, str], budget_s: float) -> KernelLogInfo:
    """This boot's kernel log from where the healthcheck's last run stopped, with the GPU events of the earlier runs
    of this boot; the position and the events are saved for the next run.

    The journal goes on from its cursor (``--after-cursor``), or reads this boot again where it no longer holds
    the cursor (the earlier runs' events are kept: their lines may have gone with the rotated file); ``dmesg``
    and a saved log are read whole (the ring buffer is small; the file is bounded) and their lines kept from after
    the last one read, by time. A state of another boot, another source or another shape is ignored. Where the
    state cannot be written (a read-only filesystem), every run reads this boot's whole log, and says so. A state
    of another boot hands on its Xids as history (:func:`_history`), for kernel.xid's rule on Xids back after
    reboots."""
    directory = state_dir(env)
    path = directory / STATE_FILE if directory is not None else None
    state = previous = _load_state(path)
    saved = env.get(KERNEL_LOG_ENV)
    this_boot = None if saved else boot_id(env)
    booted = None if saved else boot_time(env)
    if state is not None and not saved and (this_boot is None or state.get("boot") != this_boot):
        state = None
    cursor = state.get("cursor") if state and state.get("source") == "journalctl -k" else None
    log = read_kernel_log(env, boots=1, deadline_s=budget_s, after_cursor=cursor if isinstance(cursor, str) else None)
    info = _info(log)
    if log.text is None:
        return info
    before = state["source"] if state is not None else None
    if state is not None and before != log.source:
        # The journal failed once and dmesg read this boot (or the other way round): the place is the other
        # reader's, but the events kept are this boot's, and an Xid that has since left dmesg's small ring buffer
        # must go on failing. Only a saved log is another machine's.
        live = not saved and not before.startswith(f"{KERNEL_LOG_ENV}=")
        state = {**state, "cursor": None, "position": None} if live else None
    # This boot read again from its start, though an earlier run read part of it: the journal no longer had the
    # cursor (its file rotated away), or another reader read it last. The events of the earlier runs, whose lines
    # may have gone (with that file, or out of the ring buffer), are kept, and those read again not counted twice.
    if log.source == "journalctl -k":
        reread = state is not None and not log.resumed
    else:
        reread = state is not None and state.get("position") is None
    behind = False
    if log.source == "journalctl -k":
        new, position = log.text, None
    else:
        key, lines = _newest_boot(log.text)
        if saved:
            this_boot = key
        if state is not None and state.get("boot") != this_boot:
            state = None
        place = state.get("position") if state else None
        kept_lines, position = _after(lines, place)
        # Read again after the log: a clock set while dmesg ran moved the lines it printed too.
        after = None if saved else boot_time(env)
        if place is not None and (
            _wall_clock(lines)
            and (_clock_moved(state.get("btime"), booted) or _clock_moved(booted, after))
            or position is not None
            and (position["at"], position["same"]) < (place["at"], place["same"])
        ):
            # dmesg prints each line's time from the wall clock, so setting the clock moves every line's time, the
            # old ones' too: set forward, the lines already read would look new and be counted again; set back,
            # the new ones would look old and be skipped for the rest of the boot. Where the boot's wall-clock
            # start moved since the last run (whole seconds: a step of less than a second may not show), or the
            # newest line is older than where that run stopped, the boot is read again; what the earlier runs
            # kept is not counted twice.
            kept_lines, position = _after(lines, None)
            reread = behind = True
        booted = after if after is not None else booted
        new = "\n".join(kept_lines) + "\n"
    parse(new, info)
    new_events = [e for e in info.events if e.boot == 0]
    earlier = state["events"] if state else []
    if reread:
        new_events = _unseen(new_events, earlier)
    info.events = earlier + new_events
    history = _history(previous, this_boot, log.source)
    _hand_on(info, history)
    info.boots = 1
    info.resumed = state is not None
    for event in earlier:
        if event.kind == "gpu_init" and event.device and event.detail:
            info.gpu_uuids.setdefault(event.device, event.detail)
    last = state.get("last") if state else None
    info.since = f"since {last or 'the last run'}, {info.lines} new line(s)" if state else "this boot"
    if reread and before != log.source:
        info.since = f"this boot again (read by {log.source}; the last run read {before})"
    elif behind:
        info.since = "this boot again (the wall clock was set since the last run, and dmesg's times moved with it)"
    elif reread:
        info.since = "this boot again (the journal no longer holds where the last run stopped)"
    if info.ran_out:
        info.since += f" (cut short after {budget_s:g} s: the rest is read at the next run)"
        return info
    if this_boot is None:
        info.state = "this boot's id cannot be read (/proc/sys/kernel/random/boot_id): this boot's whole log read"
        return info
    record = {
        "schema": STATE_SCHEMA, "source": log.source, "boot": this_boot, "cursor": log.cursor,
        "host": _HOST, "position": position, "btime": booted, "last": _last_time(new) or last,
        "events": [asdict(e) for e in _kept(info.events)],
        "history": [{"boot": boot, "xids": [{"kind": e.kind, "device": e.device, "code": e.code} for e in events]}
                    for boot, events in history],
    }  # fmt: skip
    if path is None:
        info.state = (
            "no state could be kept (no home directory, and neither ENVCHECK_STATE_DIR nor XDG_STATE_HOME is "
            "set): this boot's whole log read"
        )
        return info
    why = _save_state(path, record)
    if why is None:
        info.state = f"kept in {path}"
    elif state is None:
        info.state = f"no state could be written to {path.parent} ({why}): this boot's whole log read"
    else:
        info.state = f"the state could not be saved to {path} ({why}): the next run reads from the same point"
    return info


def _clock_moved(before: int | None, now: int | None) -> bool:
    """Whether the wall clock was set between two readings of the boot's wall-clock start (``btime``: the kernel
    moves it only when the clock is stepped; NTP's slewing leaves it be)."""
    return before is not None and now is not None and now != before


def _wall_clock(lines: list[str]) -> bool:
    """Whether the log's times are the wall clock's (``dmesg --time-format iso``), not seconds after boot
    (busybox's plain ``dmesg``), which a clock set does not move."""
    for raw in lines:
        stamp = split_line(raw)[0]
        if stamp:
            return not stamp.endswith(" s after boot")
    return False


def _unseen(new: list[KernelEvent], earlier: list[KernelEvent]) -> list[KernelEvent]:
    """The events of a read again that the earlier runs did not keep: each kept event stands for one line read
    again. They are told apart by what the line says, not its time: the journal and dmesg print the same line's
    time differently."""
    left = Counter(_said(e) for e in earlier)
    unseen = []
    for event in new:
        if left[_said(event)] > 0:
            left[_said(event)] -= 1
        else:
            unseen.append(event)
    return unseen


def _said(event: KernelEvent) -> tuple[Any, ...]:
    return event.kind, event.device, event.code, event.detail, event.driver, event.line


def _last_time(text: str) -> str | None:
    """The time of the last line of ``text`` that has one."""
    for raw in reversed(text.splitlines()):
        if raw and not raw.startswith("-- "):
            stamp = split_line(raw)[0]
            if stamp:
                return stamp
    return None
