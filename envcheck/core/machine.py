"""The one place envcheck reads the machine's kernel-side state from: ``/sys``, ``/proc`` and the kernel log.

Why one place: a node's silent failures (an Xid in the kernel log, an InfiniBand port down, ACS redirect on a
PCIe bridge, a GPU the bus shows but the driver does not) are judged from files, and the same judgement must
run over another node's captured state (a support bundle, a saved log) and over the tests' realistic trees.
So every such read goes through here, and two variables point it elsewhere:

- ``ENVCHECK_SYSFS=DIR``: ``DIR`` stands for ``/sys`` (``DIR/class/infiniband``, ``DIR/bus/pci/devices``,
  ``DIR/module``...); ``DIR/../proc`` is not implied: ``/proc`` files are read from ``ENVCHECK_PROCFS``.
- ``ENVCHECK_PROCFS=DIR``: ``DIR`` stands for ``/proc`` (``DIR/cmdline``, ``DIR/modules``...).
- ``ENVCHECK_DEVFS=DIR``: ``DIR`` stands for ``/dev`` (``DIR/infiniband/uverbs0``): what a container was given.
- ``ENVCHECK_KERNEL_LOG=FILE``: the kernel log is this saved file (``journalctl -k -o short-iso`` or ``dmesg
  -T`` text) instead of the running kernel's.

Nothing here judges: it returns paths and text, and says when something could not be read.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

SYSFS_ENV = "ENVCHECK_SYSFS"
PROCFS_ENV = "ENVCHECK_PROCFS"
KERNEL_LOG_ENV = "ENVCHECK_KERNEL_LOG"
DEVFS_ENV = "ENVCHECK_DEVFS"


def sysfs(env: Mapping[str, str] | None = None, *parts: str) -> Path:
    """``/sys/<parts>``, or under ``ENVCHECK_SYSFS`` when set."""
    root = (env if env is not None else os.environ).get(SYSFS_ENV) or "/sys"
    return Path(root, *parts)


def procfs(env: Mapping[str, str] | None = None, *parts: str) -> Path:
    """``/proc/<parts>``, or under ``ENVCHECK_PROCFS`` when set."""
    root = (env if env is not None else os.environ).get(PROCFS_ENV) or "/proc"
    return Path(root, *parts)


def devfs(env: Mapping[str, str] | None = None, *parts: str) -> Path:
    """``/dev/<parts>``, or under ``ENVCHECK_DEVFS`` when set."""
    root = (env if env is not None else os.environ).get(DEVFS_ENV) or "/dev"
    return Path(root, *parts)


def captured(env: Mapping[str, str] | None = None) -> bool:
    """Whether any of the machine's state is read from a captured tree or file rather than this machine."""
    env = env if env is not None else os.environ
    return any(env.get(name) for name in (SYSFS_ENV, PROCFS_ENV, DEVFS_ENV, KERNEL_LOG_ENV))


def read_text(path: Path, limit: int = 1 << 20) -> str | None:
    """A small kernel file's text (sysfs attributes are one line; /proc files a few KiB), at most ``limit``
    bytes; None when it does not exist or cannot be read (a permission, a vanished device)."""
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def listdir(path: Path) -> list[str]:
    """A directory's entries, sorted; empty when it does not exist or cannot be listed."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


class Mount(NamedTuple):
    """One line of ``/proc/self/mountinfo``: where, what type, and the device number its files report
    (``st_dev``, as (major, minor))."""

    point: str
    kind: str
    device: tuple[int, int]


def mounts(env: Mapping[str, str] | None = None) -> list[Mount]:
    """This process's mounts in the order they were made (a later one may hide an earlier one under
    it), as ``/proc/self/mountinfo`` states them (``27 1 254:0 / / rw,relatime - ext4 /dev/vda rw``).
    Read as bytes and split on the single spaces and newlines the kernel writes (a mount point may hold
    any other character, escaped or not, and need not be UTF-8: it is decoded as the filesystem's paths
    are). Empty when it cannot be read; a line of another shape is left out."""
    data = read_bytes(procfs(env, "self", "mountinfo"), limit=16 << 20) or b""
    out = []
    for line in data.split(b"\n"):
        fields = line.split(b" ")
        try:
            major, minor = fields[2].split(b":")
            kind = fields[fields.index(b"-", 6) + 1]
            point = _OCTAL.sub(lambda m: bytes([int(m[1], 8)]), fields[4])
            out.append(Mount(os.fsdecode(point), os.fsdecode(kind), (int(major), int(minor))))
        except (IndexError, ValueError):
            continue
    return out


# the kernel writes a space, tab, newline and backslash in a mount point as octal escapes
_OCTAL = re.compile(rb"\\([0-7]{3})")


def read_bytes(path: Path, limit: int = 4096) -> bytes | None:
    """A binary kernel file's first ``limit`` bytes (a PCI device's ``config``: 64 bytes to a non-root reader,
    4096 to root); None when it does not exist or cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def link_target(path: Path) -> Path | None:
    """Where a sysfs link leads (``class/infiniband/mlx5_0/device`` -> the PCI device's directory), resolved
    within the same tree; None when it is not there."""
    try:
        return Path(os.path.realpath(path, strict=True))
    except OSError:
        return None


# -- the kernel log ---------------------------------------------------------------------------------------------

#: The most of the kernel log envcheck keeps (the newest part): a node's log with years of AER noise or a flood of
#: the same Xid must not stall the doctor or fill its memory. 8 MiB is some 60 000 lines of kernel messages.
KERNEL_LOG_MAX_BYTES = 8 << 20
#: Boots read from the journal: this one and up to four before it (enough to see a hardware Xid come back after
#: two reboots, the rule kernel.xid applies), each at most this many lines (its newest).
KERNEL_LOG_BOOTS = 5
KERNEL_LOG_LINES_PER_BOOT = 20_000
#: Each command's time limit, and the whole read's: the journal is read boot by boot, each call given what is left
#: of one deadline, so that six slow calls cannot overrun the probe's own 20 s limit.
KERNEL_LOG_COMMAND_S = 5.0
KERNEL_LOG_DEADLINE_S = 15.0
#: The line a boot starts with where envcheck joins the journal's boots (``journalctl`` prints the same shape
#: between boots when it reads several at once).
BOOT_MARKER = "-- Boot {} --"

#: What journalctl and dmesg say when the user may not read the kernel log (systemd's journalctl, util-linux's
#: dmesg), matched case-insensitively against their stderr.
_JOURNAL_REFUSED = ("insufficient permissions", "not seeing messages from other users and the system")
_DMESG_REFUSED = ("operation not permitted", "permission denied")
#: journalctl's line where it shows nothing.
_NO_ENTRIES = "-- No entries --"


@dataclass(frozen=True)
class KernelLog:
    """The kernel log's text, oldest line first (``None`` when it could not be read), where it came from, and the
    reasons each way of reading it failed, in the words of the tool that refused (``tried``). ``refused``: at least
    one of them failed for want of permission (not for want of a journal): the user can be allowed to read it.
    ``cut``: the text is the newest :data:`KERNEL_LOG_MAX_BYTES` of a longer log. ``boots_read``: the journal's
    boots read (0 this one, -1 the one before...); ``ran_out``: the read's deadline ended it, before every boot the
    journal lists (or, for this boot alone, before its end) was read. ``cursor``: where a journal read of this boot
    stopped (``journalctl --show-cursor``), for the next read to go on from (``after_cursor``); ``resumed``: the
    text is what came after that cursor, not the whole boot."""

    text: str | None
    source: str
    tried: tuple[str, ...] = ()
    refused: bool = False
    cut: bool = False
    boots_read: tuple[int, ...] = ()
    ran_out: bool = False
    cursor: str | None = None
    resumed: bool = False


def read_kernel_log(
    env: Mapping[str, str] | None = None,
    *,
    boots: int = KERNEL_LOG_BOOTS,
    deadline_s: float = KERNEL_LOG_DEADLINE_S,
    after_cursor: str | None = None,
) -> KernelLog:
    """The kernel log: ``ENVCHECK_KERNEL_LOG`` when set; else the journal's kernel messages of this boot and up to
    ``boots - 1`` before it (``journalctl -k``, which members of the ``systemd-journal`` and ``adm`` groups may
    read); else the kernel's ring buffer (``dmesg``, readable without root where ``kernel.dmesg_restrict`` is 0).
    The whole read ends within ``deadline_s``: what was read by then is kept, and ``ran_out`` says so.
    ``after_cursor`` (with ``boots=1``): only this boot's messages after that journal cursor, where the journal
    still has it. Never raises: a log that cannot be read says why in ``tried``."""
    env = env if env is not None else os.environ
    saved = env.get(KERNEL_LOG_ENV)
    if saved:
        return _read_saved(Path(saved))
    end = time.monotonic() + deadline_s
    tried: list[str] = []
    refused = False
    journal = _read_journal(env, boots, end, after_cursor)
    if journal.text is not None:
        return replace(journal, tried=tuple(tried))
    why = journal.tried[0] if journal.tried else "unreadable"
    tried.append(why if why.startswith("journalctl") else f"journalctl: {why}")
    refused |= journal.refused
    ring, why, denied = _read_dmesg(env, end)
    if ring is not None:
        return _bounded(ring, "dmesg", tuple(tried))
    tried.append(why if why.startswith("dmesg") else f"dmesg: {why}")
    return KernelLog(None, "", tuple(tried), refused or denied)


def boot_id(env: Mapping[str, str] | None = None) -> str | None:
    """This boot's identity (``/proc/sys/kernel/random/boot_id``, a new random UUID at every boot; the journal's
    ``-- Boot <id> --`` is the same id without dashes); None where it cannot be read."""
    text = read_text(procfs(env, "sys", "kernel", "random", "boot_id"), 128)
    return text.strip().replace("-", "") or None if text else None


def boot_time(env: Mapping[str, str] | None = None) -> int | None:
    """When this boot began by the wall clock (``btime`` of ``/proc/stat``, seconds since the epoch), as the
    kernel works it out from the clock now: setting the clock moves it by as much, which is how a reader of
    ``dmesg``'s wall-clock times tells that every line's time has moved. None where it cannot be read."""
    # whole: btime follows a line per CPU and the interrupt counts, past 64 KiB on a machine of hundreds of CPUs
    text = read_text(procfs(env, "stat"), 16 << 20)
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == "btime":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def _read_saved(path: Path) -> KernelLog:
    """A saved log's newest :data:`KERNEL_LOG_MAX_BYTES` (the end of the file), from the start of a line."""
    source = f"{KERNEL_LOG_ENV}={path}"
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - KERNEL_LOG_MAX_BYTES))
            data = f.read(KERNEL_LOG_MAX_BYTES)
    except OSError as exc:
        return KernelLog(None, source, (f"{path}: {exc.strerror or exc}",), isinstance(exc, PermissionError))
    text = data.decode("utf-8", "replace")
    if size > KERNEL_LOG_MAX_BYTES:
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return KernelLog(text, source, cut=size > KERNEL_LOG_MAX_BYTES)


def _bounded(text: str, source: str, tried: tuple[str, ...]) -> KernelLog:
    if len(text) <= KERNEL_LOG_MAX_BYTES:
        return KernelLog(text, source, tried)
    tail = text[-KERNEL_LOG_MAX_BYTES:]
    return KernelLog(tail.split("\n", 1)[1] if "\n" in tail else "", source, tried, cut=True)


def _command_env(env: Mapping[str, str]) -> dict[str, str]:
    """The run's environment with the C locale: the tools' refusals are matched in English."""
    return {**env, "LC_ALL": "C"}


def _refusal(stderr: str, words: tuple[str, ...]) -> bool:
    low = stderr.lower()
    return any(w in low for w in words)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _left(end: float) -> float:
    """The seconds left before ``end``, each command's limit (never more than :data:`KERNEL_LOG_COMMAND_S`)."""
    return max(0.0, min(KERNEL_LOG_COMMAND_S, end - time.monotonic()))


def _read_journal(env: Mapping[str, str], boots: int, end: float, after_cursor: str | None) -> KernelLog:
    """The journal's kernel messages, oldest boot first, each boot after a :data:`BOOT_MARKER` line; or no text,
    why (``tried``) and whether the reason is a permission (``refused``). This boot is read first, then the boots
    before it, newest first, while time is left: a deadline that ends the read keeps the newest boots."""
    from envcheck.core import proc

    run_env = _command_env(env)
    offsets = [0]
    if boots > 1:
        try:
            listed = proc.run(["journalctl", "--list-boots", "--no-pager"], _left(end), env=run_env)
        except OSError as exc:
            return KernelLog(None, "journalctl -k", (f"not found ({exc.strerror or exc})",))
        found = [int(m.group(1)) for m in re.finditer(r"(?m)^\s*(-?\d+)\s+[0-9a-f]{32}\b", listed.stdout)]
        offsets = sorted({o for o in found if o <= 0}, reverse=True)[:boots] or [0]
    parts: dict[int, str] = {}
    cursor, ran_out, resumed = None, False, after_cursor is not None
    for offset in offsets:
        if offset != 0 and _left(end) <= 0:
            ran_out = True
            break
        argv = ["journalctl", "-k", "-b", str(offset), "--no-pager", "-o", "short-iso"]
        if offset == 0:
            argv.append("--show-cursor")
        resume = offset == 0 and resumed
        argv += [f"--after-cursor={after_cursor}"] if resume else ["-n", str(KERNEL_LOG_LINES_PER_BOOT)]
        try:
            ended = proc.run(argv, _left(end), env=run_env)
        except OSError as exc:
            return KernelLog(None, "journalctl -k", (f"not found ({exc.strerror or exc})",))
        if _refusal(ended.stderr + ended.stdout, _JOURNAL_REFUSED):
            return KernelLog(None, "journalctl -k", (_first_line(ended.stderr) or "insufficient permissions",), True)
        lines = [line for line in ended.stdout.splitlines() if line and not line.startswith("-- ")]
        # Nothing new after the cursor: systemd 247 says so ("-- No entries --") with exit status 1, and prints no
        # cursor, as later versions do not either; that is a quiet journal, not a lost cursor.
        quiet = offset == 0 and resumed and not lines and _NO_ENTRIES in ended.stdout.splitlines()
        if offset == 0 and resumed and ended.returncode not in (0, None) and not ended.timed_out and not quiet:
            # The cursor is gone (its journal file rotated away): read the whole boot instead.
            return _read_journal(env, boots, end, None)
        if ended.timed_out:
            if offset == 0 and not lines:
                return KernelLog(None, "journalctl -k", (f"did not answer within {_seconds(ended.duration_s)} s",))
            ran_out = True
        elif offset == 0:
            found_cursor = re.search(r"(?m)^-- cursor: (\S+)", ended.stdout)
            # Where none is printed (nothing came after the cursor), the place is still the cursor read after.
            cursor = found_cursor.group(1) if found_cursor else after_cursor
            if (ended.returncode != 0 and not quiet) or not (lines or resumed):
                words = _first_line(ended.stderr) or _first_line(ended.stdout) or f"exit status {ended.returncode}"
                return KernelLog(None, "journalctl -k", (f"no kernel messages for this boot ({words})",))
        if lines or offset == 0:
            parts[offset] = "\n".join([BOOT_MARKER.format(offset), *lines])
        if ended.timed_out:
            break
    text = "\n".join(parts[o] for o in sorted(parts)) + "\n"
    read = tuple(sorted(parts, reverse=True))
    bounded = _bounded(text, "journalctl -k", ())
    return replace(bounded, boots_read=read, ran_out=ran_out, cursor=None if ran_out else cursor, resumed=resumed)


def _seconds(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _read_dmesg(env: Mapping[str, str], end: float) -> tuple[str | None, str, bool]:
    """The kernel's ring buffer with ISO times (util-linux), or plain where the option is not known (busybox)."""
    from envcheck.core import proc

    run_env = _command_env(env)
    why = ""
    for argv in (["dmesg", "--time-format", "iso"], ["dmesg"]):
        try:
            ended = proc.run(argv, max(_left(end), 1.0), env=run_env)
        except OSError as exc:
            return None, f"not found ({exc.strerror or exc})", False
        if _refusal(ended.stderr, _DMESG_REFUSED):
            return None, _first_line(ended.stderr), True
        if ended.returncode == 0 and not ended.timed_out:
            return ended.stdout, "", False
        why = _first_line(ended.stderr) or ("timed out" if ended.timed_out else f"exit status {ended.returncode}")
    return None, why, False
