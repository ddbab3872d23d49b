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
from collections.abc import Mapping
from pathlib import Path

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
