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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from envcheck.core.machine import read_kernel_log
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
    line), ``aer_received`` (a root port naming the device), ``peermem``, ``segfault``, ``oom_kill`` or
    ``api_mismatch``. ``device``: the PCI address the line names; ``code``: the Xid or SXid; ``detail``: the
    severity (AER: ``corrected``, ``non_fatal``, ``fatal``; SXid: ``fatal``, ``non_fatal``), the library that
    crashed, the process killed; ``driver``: the driver that wrote an AER line (``nvidia``, ``mlx5_core``)."""

    kind: str
    boot: int
    time: str | None
    line: str
    device: str | None = None
    code: int | None = None
    detail: str | None = None
    driver: str | None = None


@dataclass
class KernelLogInfo:
    """The kernel log as the checks read it: whether and where it was read, how many boots it spans (``boots``;
    the newest is boot 0), and its events, oldest first. ``gpu_uuids``: bus address (``0000:18:00``) -> UUID, as
    the driver names each GPU before an Xid, for a log read without NVML."""

    readable: bool
    source: str
    tried: list[str] = field(default_factory=list)
    refused: bool = False
    cut: bool = False
    boots: int = 0
    lines: int = 0
    events: list[KernelEvent] = field(default_factory=list)
    gpu_uuids: dict[str, str] = field(default_factory=dict)


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
def probe_kernel_log(env: Mapping[str, str]) -> KernelLogInfo:
    log = read_kernel_log(env)
    info = KernelLogInfo(log.text is not None, log.source, list(log.tried), log.refused, log.cut)
    if log.text is not None:
        parse(log.text, info)
    return info


def pci_key(address: str) -> str:
    """A PCI address reduced to what every writer of it agrees on: a 4-digit domain, bus and device, lower case
    (NVML's ``00000000:18:00.0``, the Xid line's ``PCI:0000:18:00`` and AER's ``0000:18:00.0`` all give
    ``0000:18:00``). The function is dropped: an Xid names the GPU without it."""
    address = address.lower().removeprefix("pci:")
    domain, _, rest = address.partition(":")
    return f"{domain[-4:].rjust(4, '0')}:{rest.split('.')[0]}"


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
            events.append(event)
    last = boot
    info.boots = last + 1 if lines else 0
    info.lines = lines
    info.events = [
        KernelEvent(e.kind, e.boot - last, e.time, e.line, e.device, e.code, e.detail, e.driver) for e in events
    ]


def _event(message: str, boot: int, time: str | None, info: KernelLogInfo) -> KernelEvent | None:
    """The event one message is, if any. Each pattern's literal is tested first: most lines are none of these."""
    line = message[:300]
    if "NVRM: " in message:
        if m := _XID.search(message):
            return KernelEvent("xid", boot, time, line, pci_key(m.group(1)), int(m.group(2)), m.group(3)[:200])
        if m := _GPU_AT.search(message):
            info.gpu_uuids[pci_key(m.group(1))] = m.group(2)
            return None
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
