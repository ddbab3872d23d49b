"""Sources → node reports, and what was skipped and why.

A fleet's reports arrive however the lab collected them: one file per node, a directory a job array
wrote into, or a stream on stdin (``kubectl logs`` of every pod, ``srun envcheck doctor --json`` piped
straight in). So a source is a file, a directory (walked for ``*.json``) or ``-``, and a file or the
stream may hold one document or many (JSON lines, or pretty-printed documents one after another).

Whatever is wrong with one source — not JSON, cut short by a full disk, another tool's JSON, a schema
version this envcheck does not know, a FIFO — is a :class:`Skipped` with the source's name and one
line of reason, never a traceback and never the end of the merge: one bad node must not hide the
other thousand. A report of a kind this envcheck has no adapter for (a newer command's) is not
skipped: it is read by the envelope every report carries (see :mod:`envcheck.fleet.kinds`). Files go
through :mod:`envcheck.core.files`, so a FIFO, a device or a file on a hung network mount is refused
within seconds instead of blocking the merge.
"""

from __future__ import annotations

import codecs
import itertools
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypedDict

import msgspec
import orjson

from envcheck.core import files, machine
from envcheck.core.model import displayable
from envcheck.core.report import FLEET_SCHEMA, kind_of
from envcheck.fleet.kinds import ADAPTERS, MAX_HOSTNAME, Result, Scalar, json_words, schema_by_kind

#: The most one document may hold. A burn report keeps a timeline row per GPU per second (8 GPUs for an
#: hour is ~15 MiB); anything far beyond this is not a node's report.
MAX_BYTES = 256 * 1024**2

# --- bounds on a document's structure ------------------------------------------------------------------
# The byte cap bounds what is read, not what parsing it costs: parsed, a JSON value costs 24 to 100 bytes
# whatever its text (``{},`` is 3 bytes and a 64-byte dict), so a 200 MB array of ``{}`` became 5 GB of
# objects before it could be told apart from a report. So each document's structure is bounded too,
# measured on its text before it is parsed, in time linear in its bytes and at the speed of
# ``bytes.count``; a document past a bound is a skipped source with the bound in its reason. The real
# reports they are measured against: an 8-GPU doctor report is 155 KiB with ~5 000 values and strings of
# at most ~200 characters; a bench report 106 KiB; a burn of 8 GPUs adds ~430 000 values per hour of
# timeline (a row of ~15 values per GPU per second, ~15 MiB); comm's point-to-point matrix holds n²
# values for a world of n ranks (512 ranks: 262 144).

#: The most values (arrays, objects, their members and items) one document may hold. Counted as the
#: commas and opening brackets in its text, strings included (every value but the first in its
#: container follows a comma), so an upper bound; it allows an overnight burn (8 GPUs for 19 hours, 16
#: for 9: the timeline is not thinned), or comm's matrix of a 2 800-rank world, and keeps one parse under
#: ~800 MB (8 Mi values at up to 100 bytes). A longer burn's report is skipped, saying so.
MAX_VALUES = 8 * 1024**2

#: The most digits an integer may have. envcheck writes integers of at most 64 bits (20 digits: byte
#: counts, exit codes, indexes); up to 100 digits, float() of it is finite, and Python converts one in
#: linear time. The fast path (:data:`DECODER`) never builds a field the fleet does not read, so a wider
#: integer there costs nothing and skips nothing; where the fleet reads one, the document goes to the
#: general path, which skips it under this bound. A float of any length parses in linear time to a float
#: (1e400 is infinity, which the fleet reads as "not a figure"), so floats need no such bound.
MAX_INT_DIGITS = 100

# Strings need no bound of their own: parsed, a string costs about its bytes (a str of ASCII is its length
# plus 49 bytes; one character beyond U+FFFF makes it 4 bytes a character, as its UTF-8 was), so the byte
# cap bounds them. Nesting is bounded by the parsers themselves: msgspec and the standard parser refuse past the
# interpreter's recursion limit (~1 000), orjson past 1024 levels, all before memory grows; and the merge carries no
# nested value out of a document (envcheck.fleet.kinds keeps scalar field values only), so nothing
# deep reaches the code after the digest.

#: Bytes read from stdin at a time: large enough that a 50 KiB document parses in one go, small enough
#: that a stream of ten thousand is never held whole.
STDIN_CHUNK = 1024**2

STDIN = "-"

#: What may stand between documents: whitespace, and a byte-order mark (each document of a stream made by
#: ``cat``-ing files a Windows editor saved starts with one).
_SPACE = re.compile(r"[\s\ufeff]*")


@dataclass(frozen=True)
class NodeReport:
    """One envcheck document, where it came from, and which node it describes. ``document`` holds the
    fields the fleet reads (:class:`_Report`), or the whole document where it was read whole."""

    source: str
    kind: str
    hostname: str
    document: dict[str, Any]


@dataclass(frozen=True)
class Skipped:
    """A source (or one document in it) that was not merged, and why, in one line."""

    source: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason}


#: Why a fleet report is not merged (what envcheck.fleet.app passes over, found in a directory).
FLEET_REPORT = "is a fleet report, not a node's report (merge the nodes' own reports)"


class NotAReport(ValueError):
    """A JSON value that a fleet cannot merge, with the reason in words."""


def expand(names: Iterable[str]) -> Iterator[str | Skipped]:
    """The files to read, in order: a directory becomes the ``*.json`` files under it; ``-`` stays
    itself (stdin); a directory without any report is a :class:`Skipped`. Files are not opened here."""
    own = _own_output()
    for name in names:
        if name != STDIN and os.path.isdir(name):
            found = False
            for path in _walk(name, own):
                found = True
                yield path
            if not found:
                yield Skipped(files.path_shown(name), "is a directory without any *.json file in it")
        else:
            yield name


def read_stdin(stdin: IO[bytes] | None) -> Iterator[NodeReport | Skipped]:
    if stdin is None:
        yield Skipped("<stdin>", "stdin cannot be read here")
        return
    found = False
    for item in _documents(_stdin_chunks(stdin), "<stdin>", always_numbered=True):
        found = True
        yield item
    if not found:  # nothing but blank lines, or nothing at all: said, not "0 skipped"
        yield Skipped("<stdin>", "is empty: no JSON document came on stdin")


def _own_output() -> tuple[int, int] | None:
    """The device and inode of the file this process's stdout is, where it is a regular file, else None.

    ``envcheck fleet reports/ --json > reports/fleet.json`` is how a lab keeps a run for ``--since``: the
    shell makes ``fleet.json`` empty before the command starts, and the walk of ``reports/`` finds it. It
    is this run's own report, not a source: passed over without a word, as the fleet report it will be."""
    try:
        found = os.fstat(1)
    except OSError:
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISREG(found.st_mode) else None


def _walk(directory: str, own: tuple[int, int] | None = None) -> Iterator[str | Skipped]:
    """The ``*.json`` files under ``directory``, in a stable order (names sorted, a directory's files
    before its subdirectories, depth first), and each directory that cannot be listed as a
    :class:`Skipped` (its reports would be missing without a word otherwise).

    A symbolic link to a directory is followed (``node17 -> /scratch/run42/node17``, as a job array's
    output is often gathered), but each directory is listed once however many paths lead to it (a report
    reached twice is not a duplicate host), and a link to the directory given or to one above it is not
    followed at all (it cannot loop, nor walk a whole disk). ``own``: the file this run writes its report
    into (:func:`_own_output`), passed over. A stack, not recursion: any depth of directories is walked."""
    seen: set[tuple[int, int]] = set()
    root = os.path.realpath(directory)
    stack = [directory]
    while stack:
        top = stack.pop()
        try:
            found = os.stat(top)
            if (found.st_dev, found.st_ino) in seen:
                continue
            seen.add((found.st_dev, found.st_ino))
            with os.scandir(top) as listing:
                entries = list(listing)
        except OSError as exc:
            yield Skipped(files.path_shown(top), f"cannot be listed: {exc.strerror or exc}")
            continue
        names, below = [], []
        mine = own[1] if own is not None and own[0] == found.st_dev else None
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # a link to a directory is one
            except OSError:
                is_dir = False
            if mine is not None and not is_dir and entry.inode() == mine and not entry.is_symlink():
                continue
            if is_dir and entry.is_symlink():
                # A link up to the directory given or above it (``all -> ..``, a stray ``node -> /``) leads
                # to what is walked already, or to all of a disk that was not asked for: not followed.
                target = os.path.realpath(entry.path)
                if root == target or root.startswith(target.rstrip("/") + "/"):
                    continue
            (below if is_dir else names).append(entry.name)
        for name in sorted(names):
            if name.lower().endswith(".json"):
                yield os.path.join(top, name)
        stack.extend(os.path.join(top, name) for name in sorted(below, reverse=True))


def read_files(paths: Sequence[str]) -> Iterator[NodeReport | Skipped]:
    """The reports in each file, in order (see :func:`reads` for how each is read)."""
    for path, data in reads(paths):
        yield from _parse_file(files.path_shown(path), data)


#: Filesystems whose files come from this machine's own memory and disks. A file on one of them is read
#: where it is parsed (:func:`reads`); any other (on NFS, CIFS, Lustre, GPFS, a FUSE mount, a filesystem
#: not named here) goes through the reading thread of :func:`read_ahead`, which refuses a file whose
#: server never answers instead of waiting for it. So does a file on one of these types whose block
#: device is itself remote (:data:`REMOTE_BLOCK`).
LOCAL_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "bcachefs", "jfs", "reiserfs", "tmpfs", "ramfs"}
    | {"overlay", "squashfs", "iso9660", "vfat", "exfat", "ntfs3"}
)

#: Where sysfs places a block device whose blocks come over a network (``/sys/dev/block/MAJ:MIN`` resolved):
#: NBD and Ceph RBD devices, an iSCSI session's disks, an NVMe over fabrics (TCP, RDMA, FC) controller's
#: disks. An NVMe disk of a multipath subsystem (``nvme-subsystem/nvme-subsysN/nvmeXnY``) is remote unless
#: each of its controllers is on PCIe; a partition is as remote as its disk; a loop device over a file that
#: is not local, and a device-mapper or md device built on any of these, are remote too
#: (:meth:`_Local._remote`).
REMOTE_BLOCK = re.compile(r"/(?:nbd|rbd)\d+(?:/|$)|/session\d+/|/nvme-fabrics/")

#: How deep device-mapper, md and loop devices are followed down to the devices they are built on; a
#: stack deeper than this is counted as remote (read through the thread: slower, never stuck).
MAX_STACK = 8


def reads(paths: Sequence[str]) -> Iterator[tuple[str, bytes | files.FileRefused]]:
    """Each path's bytes, or why it was refused, in order.

    A regular file on a local filesystem is read here (:class:`_Local` says which), with the same bounds
    on its size and values as the thread's reads but no timeout (nothing on its way is remote); every
    other path, in runs, through :func:`read_ahead`. Handing every file to a thread and back cost a
    tenth of the merge (the files read ahead had gone cold in the CPU's caches before they were parsed:
    benchmarks/RESULTS-fleet.md), and a local disk's read is not what the thread guards against: a
    network filesystem whose server stopped answering."""
    local = _Local()
    run: list[str] = []
    for path in paths:
        out = local.read(path)
        if out is None:
            run.append(path)
            continue
        if run:
            yield from read_ahead(run)
            run = []
        yield path, out
    if run:
        yield from read_ahead(run)


class _Local:
    """Reads a file here when nothing on its way can be a network filesystem: its path, as the real path
    of its directory, lies under a visible local mount (a file bind-mounted on its own is a mount of its
    own, and a mount hidden by a later one over it does not count), and, once opened without following a
    symbolic link, it is a regular file on a device of such a mount. A mount is local when its type is
    (:data:`LOCAL_FILESYSTEMS`) and its block device, if it has one, is not remote (:meth:`_remote`).
    Anything else is left to the reading thread (:meth:`read` returns None)."""

    def __init__(self) -> None:
        self.mounts: list[machine.Mount] | None = None  # the visible mounts, the longest point first
        self.points: dict[str, bool] = {}  # mount point -> whether it is local
        self.devices: set[int] = set()
        self.directories: dict[str, str | None] = {}  # a directory as given -> its real path, if local
        self.parents: dict[str, tuple[str, bool] | None] = {}  # a parent as given -> its real path, local?
        self.remote: dict[tuple[int, int], bool] = {}

    def read(self, path: str) -> bytes | files.FileRefused | None:
        directory, name = os.path.split(path)
        real = self.directories.get(directory, "")
        if real == "":
            real = self.directories[directory] = self._real_if_local(directory)
        if real is None:
            return None
        # In a local directory, a file lies on its directory's mount unless it is a mount point itself (a
        # file bind-mounted on its own): then its own mount decides.
        if self.points.get(os.path.join(real, name)) is False:
            return None
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError:
            return None  # a link, a missing file...: the thread's read says why
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode) or found.st_dev not in self.devices:
                return None
            return files.read_open(fd, MAX_BYTES, _ValueCount().check)
        except files.FileRefused as exc:
            return exc
        except OSError:
            return None
        finally:
            os.close(fd)

    def _real_if_local(self, directory: str) -> str | None:
        """``directory``'s real path where it lies on a local mount, else None. A fleet is ten thousand
        directories under one: a directory that is no link is its parent's real path and its own name, on
        its parent's mount unless it is a mount point itself, which one lstat says (the full resolution
        took an lstat per part of the path and a walk of the mount table, a tenth of a file's cost)."""
        parent, name = os.path.split(directory)
        if parent and name not in ("", ".", ".."):
            up = self.parents.get(parent, "")
            if up == "":
                up = self.parents[parent] = self._resolved(parent)
            if up is not None:
                try:
                    own = os.lstat(directory)
                except (OSError, ValueError):
                    return None
                if stat.S_ISDIR(own.st_mode):  # not a link: nothing in its name to resolve
                    real = os.path.join(up[0], name)
                    local = self.points.get(real, up[1])
                    return real if local else None
        found = self._resolved(directory or ".")
        return found[0] if found is not None and found[1] else None

    def _resolved(self, directory: str) -> tuple[str, bool] | None:
        """``directory``'s real path and whether its mount is local; None where it cannot be resolved."""
        try:
            real = os.path.realpath(directory, strict=True)
        except (OSError, RuntimeError, ValueError):
            return None
        return real, self._on_local(real)

    def _on_local(self, real: str) -> bool:
        if self.mounts is None:
            self._visible()
        mount = self._mount_of(real)
        return mount is not None and self.points[mount.point]

    def _visible(self) -> None:
        """The mounts a path can reach (a mount made over a directory hides those made under it before),
        each with whether it is local."""
        shown: dict[str, machine.Mount] = {}
        for mount in machine.mounts():
            under = mount.point.rstrip("/") + "/"
            for point in [p for p in shown if p == mount.point or p.startswith(under)]:
                del shown[point]
            shown[mount.point] = mount
        self.mounts = sorted(shown.values(), key=lambda m: -len(m.point))
        for mount in self.mounts:
            local = mount.kind in LOCAL_FILESYSTEMS and not self._remote(mount.device)
            self.points[mount.point] = local
            if local:
                self.devices.add(os.makedev(*mount.device))

    def _mount_of(self, real: str) -> machine.Mount | None:
        """The visible mount a real path lies on (the longest point first)."""
        for mount in self.mounts or ():
            if real == mount.point or real.startswith(mount.point.rstrip("/") + "/"):
                return mount
        return None

    def _remote(self, device: tuple[int, int], depth: int = 0) -> bool:
        """Whether reading a block device may wait on a network (:data:`REMOTE_BLOCK`; a loop device over
        a file that is not on a local mount; a device-mapper or md device with such a device below it). A
        device sysfs does not show counts as remote: the thread's read is slower, never stuck. A device
        numbered 0:N is no block device (tmpfs, overlay, btrfs, ZFS): its filesystem's type decides."""
        if device[0] == 0:
            return False
        found = self.remote.get(device)
        if found is None:
            self.remote[device] = True  # while it is being judged: a loop back to it counts as remote
            found = self.remote[device] = depth >= MAX_STACK or self._judge(device, depth)
        return found

    def _judge(self, device: tuple[int, int], depth: int) -> bool:
        path = machine.link_target(machine.sysfs(None, "dev", "block", f"{device[0]}:{device[1]}"))
        if path is None:
            return True
        if machine.read_text(path / "partition") is not None:
            path = path.parent  # a partition: its disk decides (md0p1's array is built on md0's devices)
        if REMOTE_BLOCK.search(path.as_posix()):
            return True
        if path.parent.parent.name == "nvme-subsystem":
            # A multipath NVMe disk: the subsystem's controllers say how it is reached. A controller's
            # transport is "pcie" for a local drive (one with two ports is multipath too), else "tcp",
            # "rdma" or "fc"; none readable: not known to be local.
            ways = [machine.read_text(path.parent / c / "transport") for c in machine.listdir(path.parent)]
            ways = [w.strip() for w in ways if w is not None]
            return not ways or any(w not in ("pcie", "loop") for w in ways)
        if path.name.startswith("loop"):
            # Its file, as the kernel names it. In a container that is the host's path, which this mount
            # table may not show as it is: a file of the host's NFS can look like one of the overlay's.
            backing = (machine.read_text(path / "loop" / "backing_file") or "").strip()
            mount = self._mount_of(backing.removesuffix(" (deleted)")) if backing.startswith("/") else None
            return mount is None or mount.kind not in LOCAL_FILESYSTEMS or self._remote(mount.device, depth + 1)
        for below in machine.listdir(path / "slaves"):
            numbers = (machine.read_text(path / "slaves" / below / "dev") or "").strip().split(":")
            try:
                if self._remote((int(numbers[0]), int(numbers[1])), depth + 1):
                    return True
            except (IndexError, ValueError):
                return True
        return False


def _parse_file(shown: str, data: bytes | files.FileRefused) -> Iterator[NodeReport | Skipped]:
    """The reports in one file. The common case, one report, is decoded in one call of msgspec straight
    into the fields the fleet reads (:class:`_Report`), whatever the file's layout (compact, indented by
    any amount, keys in any order, fields added): the parts no fleet question reads (the doctor's fabric
    matrices, the bench's raw samples, most of every check's details) are stepped over, never built,
    which makes it several times as fast as building the whole document (benchmarks/RESULTS-fleet.md).
    A document it refuses is read whole, as before: by orjson where it is one JSON value (a read field of
    an unexpected shape, which the adapters read around; nesting past msgspec's depth but within
    orjson's 1 024 levels; not an envcheck report at all), else by the general path (several documents,
    JSON lines, a broken or truncated file, a byte-order mark, NaN, an integer beyond 64 bits), which
    reads what the standard parser reads and says why the rest is refused. So what a document merges
    as does not depend on which path read it (but for a wide integer where the fleet reads nothing:
    :data:`MAX_INT_DIGITS`)."""
    if isinstance(data, files.FileRefused):
        yield Skipped(shown, str(data))
        return
    # More values than one document may hold (:class:`_ValueCount` let it through: many JSON lines): no
    # parse of the whole file at once, each document bounded as the general path reads it.
    if len(data) > MAX_VALUES and _values(data) > MAX_VALUES:
        try:
            yield from _documents(_text_chunks(data), shown, always_numbered=False)
        except files.FileRefused as exc:
            yield Skipped(shown, str(exc))
        return
    try:
        value = DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError):
        pass
    else:
        yield _report(shown, value)
        return
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        yield _report(shown, value)
        return
    try:
        text = files.decode(data)
    except files.FileRefused as exc:
        yield Skipped(shown, str(exc))
        return
    if not text.strip():
        yield Skipped(shown, "is empty")
        return
    yield from _documents(iter((text,)), shown, always_numbered=False)


def _text_chunks(data: bytes) -> Iterator[str]:
    """``data`` as UTF-8 text (as :func:`envcheck.core.files.decode` reads it), a chunk at a time, as
    stdin is read: a file of many documents is never held as text whole (one character past Latin-1 made
    168 MB of JSON lines 700 MB of text), and each document is parsed once it is whole and bounded.
    :class:`~envcheck.core.files.FileRefused` where the bytes are not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    view = memoryview(data)
    for at in range(0, len(data), STDIN_CHUNK):
        try:
            yield decoder.decode(view[at : at + STDIN_CHUNK], final=at + STDIN_CHUNK >= len(data))
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, at + exc.start) + 1
            raise files.FileRefused(f"is not UTF-8 text (line {line})") from None


# --- what the fleet reads of a report ------------------------------------------------------------------
# Every field any adapter of envcheck.fleet.kinds reads, in one shape over all the kinds (the doctor's
# checks, the bench's results and devices, burn's verdicts, comm's problems; ``spec`` is an object in
# the bench's and burn's reports and a list in comm's). A field the adapters read must be named here,
# or the fast path never sees it: tests/fleet/test_read.py digests every kind's real reports both ways.
# Each is optional (an absent field reads as the adapters' default, as before) and may be null; a value
# the fleet reads is a scalar, and an integer there fits in 64 bits (as the standard path's bound, a
# wider one sends the document to it, which says why it is skipped). Whatever else a document holds
# is skipped without being built: a new field, a foreign tool's additions, a bulky subtree.

#: A leaf the adapters read: any JSON scalar; integers within 64 bits (see :data:`MAX_INT_DIGITS`).
_Scalar = Scalar


class _Text(TypedDict, total=False):
    text: _Scalar
    command: _Scalar


class _Details(TypedDict, total=False):
    #: A spec.package check's version (a string); other checks hold lists here (torch.nvcc's finds).
    found: Any


class _Check(TypedDict, total=False):
    id: _Scalar
    status: _Scalar
    summary: _Scalar
    title: _Scalar
    fix: _Text | None
    details: _Details | None


class _Steady(TypedDict, total=False):
    throughput: _Scalar


class _Device(TypedDict, total=False):
    name: _Scalar
    kind: _Scalar
    model: _Scalar
    uuid: _Scalar
    index: _Scalar
    pci_bus_id: _Scalar
    dtype: _Scalar
    contended: _Scalar
    noisy: _Scalar
    steady: _Steady | None


class _Verdict(TypedDict, total=False):
    passed: _Scalar
    id: _Scalar
    op: _Scalar
    summary: _Scalar


class _Spec(TypedDict, total=False):
    verdicts: list[_Verdict] | None


class _Problem(TypedDict, total=False):
    rank: _Scalar
    what: _Scalar
    host: _Scalar


class _Gpu(TypedDict, total=False):
    uuid: _Scalar
    name: _Scalar


class _Host(TypedDict, total=False):
    hostname: _Scalar
    python: _Scalar


class _Torch(TypedDict, total=False):
    version: _Scalar
    cuda: _Scalar
    hip: _Scalar
    cuda_runtime_version: _Scalar
    cudnn_version: _Scalar
    nccl_version: _Scalar


class _Driver(TypedDict, total=False):
    version: _Scalar
    cuda_version: _Scalar


class _Options(TypedDict, total=False):
    quick: _Scalar


class _Report(TypedDict, total=False):
    schema: _Scalar
    exit_code: _Scalar
    status: _Scalar
    interrupted: _Scalar
    generated_at: _Scalar
    unit: _Scalar
    host: _Host | None
    summary: _Text | None
    gpus: list[_Gpu] | None
    torch: _Torch | None
    driver: _Driver | None
    packages: dict[str, _Scalar] | None
    checks: list[_Check] | None
    preflight: list[_Check] | None
    verdicts: list[_Check] | None
    results: list[Result] | None  # structs: envcheck.fleet.kinds.Result says why
    devices: list[_Device] | None
    options: _Options | None
    spec: _Spec | list[_Verdict] | None
    problems: list[_Problem] | None


#: Decodes a report's bytes into plain dicts and lists of the fields above (what the adapters read).
DECODER = msgspec.json.Decoder(_Report)


#: The most bytes of files read ahead and not yet handed over (besides the one file that crosses it): a
#: batch of reports is a few MiB, and a directory of files near :data:`MAX_BYTES` is read one at a time.
READ_AHEAD_BYTES = 64 * 1024**2


def read_ahead(
    paths: Sequence[str],
    *,
    depth: int = 16,
    timeout_s: float = files.READ_TIMEOUT_S,
    budget: int = READ_AHEAD_BYTES,
) -> Iterator[tuple[str, bytes | files.FileRefused]]:
    """Each path's bytes, or why it was refused, in order.

    The same bounds as :func:`envcheck.core.files.within` around :func:`~envcheck.core.files.read_regular`
    (a regular file only, at most :data:`MAX_BYTES`, and at most ``timeout_s`` without progress on any
    one file), but with one reading thread for all the files instead of one per file: starting a thread
    costs more than reading a report from the page cache, and ten thousand of them add seconds.

    The thread reads up to ``depth`` files (and up to ``budget`` bytes) while the caller waits, then
    waits while the caller parses them. Reading while the caller parsed (as this once did) made the two
    threads trade the interpreter at every system call of every read: a third as much again as parsing
    the file, for reads that take microseconds from the page cache (benchmarks/RESULTS-fleet.md). When
    a file keeps the caller waiting past ``timeout_s`` (a hung network filesystem), that file is
    refused, the thread stuck on it is abandoned (a daemon, it cannot hold the process) and a new one
    carries on with the next file.
    """
    cond = threading.Condition()
    done: dict[int, bytes | files.FileRefused] = {}
    # limit: the last file the reader may read now; held: the bytes read and not handed over; idle: the
    # reader waits for the caller; at: when the reader last made progress or was set going, what the
    # caller's timeout counts from.
    state: dict[str, Any] = {"generation": 0, "limit": -1, "held": 0, "idle": False, "at": time.monotonic()}

    def reader(start: int, generation: int) -> None:
        for i in range(start, len(paths)):
            with cond:
                while (i > state["limit"] or state["held"] > budget) and state["generation"] == generation:
                    state["idle"] = True  # what was asked for is here, or there is no room: the caller's turn
                    cond.notify_all()
                    cond.wait()
                if state["generation"] != generation:
                    return
            try:
                out: bytes | files.FileRefused = files.read_regular(paths[i], MAX_BYTES, _ValueCount().check)
            except files.FileRefused as exc:
                out = exc
            with cond:
                if state["generation"] != generation:
                    return
                done[i] = out
                state["held"] += len(out) if isinstance(out, bytes) else 0
                state["at"] = time.monotonic()
        with cond:
            if state["generation"] == generation:
                state["idle"] = True
                cond.notify_all()

    def start(at: int) -> None:
        state["generation"] += 1
        state["idle"] = False
        state["at"] = time.monotonic()
        thread = threading.Thread(target=reader, args=(at, state["generation"]), name="envcheck-fleet-read")
        thread.daemon = True
        thread.start()

    with cond:
        start(0)
    try:
        for i, path in enumerate(paths):
            with cond:
                if i not in done:
                    if i > state["limit"]:  # ask for the next files
                        state["limit"] = min(i + depth, len(paths)) - 1
                    if state["idle"]:  # set it going (it is the reader's turn now)
                        state["idle"] = False
                        state["at"] = time.monotonic()
                        cond.notify_all()
                    # Wait until the reader stops (what was asked for is here, the budget is full, no files
                    # are left), or has made no progress for timeout_s: then the file it is on is refused
                    # (below) and a new reader goes on from the next.
                    while not state["idle"] and (left := state["at"] + timeout_s - time.monotonic()) > 0:
                        cond.wait(left)
                out = done.pop(i, None)
                if out is None:
                    start(i + 1)
                elif isinstance(out, bytes):
                    state["held"] -= len(out)
            if out is None:
                out = files.FileRefused(f"could not be read within {timeout_s:g} s (a hung network filesystem?)")
            yield path, out
    finally:
        with cond:
            state["generation"] += 1  # the caller stopped early: let the reader go
            cond.notify_all()


def _values(text: bytes | bytearray | str, start: int = 0) -> int:
    """An upper bound on the values in ``text[start:]`` (see :data:`MAX_VALUES`), at the speed of a copy."""
    if isinstance(text, str):
        return text.count(",", start) + text.count("[", start) + text.count("{", start)
    return text.count(b",", start) + text.count(b"[", start) + text.count(b"{", start)


def _too_many_values() -> str:
    return f"holds more than {MAX_VALUES:,} JSON values, far more than any envcheck report"


class _ValueCount:
    """A file's values counted as it is read (the check of :func:`envcheck.core.files.read_regular`),
    so that a file past :data:`MAX_VALUES` is refused a few MiB in, not after all of it is held. A file
    of fewer bytes than the bound holds fewer values too and is not counted: a report costs nothing.

    The bound is a document's: a file where a line starts with ``{`` may hold many (a thousand nodes'
    reports as JSON lines, well within :data:`MAX_BYTES`), so it is read whole and each of its documents
    bounded as it is parsed (:func:`_parse_file`)."""

    def __init__(self) -> None:
        self.counted = 0
        self.values = 0
        self.lines = False

    def check(self, data: bytes | bytearray) -> None:
        if len(data) <= MAX_VALUES or self.lines:
            return
        self.lines = data.find(b"\n{", max(0, self.counted - 1)) >= 0
        self.values += _values(data, self.counted)
        self.counted = len(data)
        if self.values > MAX_VALUES and not self.lines:
            raise files.FileRefused(_too_many_values())


class _Absurd(ValueError):
    """A value no report holds, found while parsing: the document's reason to be skipped, as worded."""


def _integer(digits: str) -> int:
    """The standard parser's integers, bounded (:data:`MAX_INT_DIGITS`)."""
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _Absurd(f"holds an integer of {len(digits.lstrip('-'))} digits, which no envcheck report writes")
    return int(digits)


def _stdin_chunks(stream: IO[bytes]) -> Iterator[str]:
    """stdin as text, a chunk at a time; bytes that are not UTF-8 become U+FFFD (a report is ASCII, so
    they can only sit inside a document that will be refused anyway)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    read = getattr(stream, "read1", stream.read)
    while True:
        data = read(STDIN_CHUNK)
        if not data:
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            return
        yield decoder.decode(data)


def _documents(chunks: Iterator[str], label: str, *, always_numbered: bool) -> Iterator[NodeReport | Skipped]:
    """The reports in one file or stream, each judged; sources are ``label`` alone for a file holding
    one document, else ``label:LINE`` (the line the document starts on)."""
    items: Iterable[tuple[int, Any, str | None]] = _json_values(chunks)
    numbered = always_numbered
    if not always_numbered:  # whether a second one follows, without holding the rest (a thousand nodes' lines)
        values = iter(items)
        first = list(itertools.islice(values, 2))
        numbered = len(first) > 1
        items = itertools.chain(first, values)
    for line, value, error in items:
        source = f"{label}:{line}" if numbered else label
        yield Skipped(source, error) if error is not None else _report(source, _displayable(value))


def _displayable(value: Any) -> Any:
    """``value`` with every string made displayable (:func:`envcheck.core.model.displayable`), in place.
    The standard parser, unlike msgspec and orjson, accepts a lone surrogate (``"\\udc80"``), which no
    UTF-8 writer can write; the fleet document is built from what the readers decoded without another
    walk over it (envcheck.fleet.report), so the one reader that can produce one cleans its documents
    here. Iterative: a document may nest as deep as the parser allows."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(key.isascii() for key in item):
                cleaned = {displayable(key): inner for key, inner in item.items()}
                item.clear()
                item.update(cleaned)
            pairs: Iterable[tuple[Any, Any]] = item.items()
        elif isinstance(item, list):
            pairs = enumerate(item)
        else:
            continue
        for at, inner in list(pairs):
            if isinstance(inner, str):
                if not inner.isascii():
                    item[at] = displayable(inner)
            elif isinstance(inner, (dict, list)):
                stack.append(inner)
    return displayable(value) if isinstance(value, str) else value


#: The characters a JSON value starts with (NaN and Infinity too, which the standard parser reads).
_VALUE_STARTS = frozenset('{["-0123456789tfnNI')
#: Stretches that are not JSON after which a stream is left unread (``yes x | envcheck fleet -``): each is a
#: skipped source the report lists, and no stream of envcheck reports is mostly not JSON.
MAX_BROKEN = 10_000


def _json_values(chunks: Iterator[str]) -> Iterator[tuple[int, Any, str | None]]:
    """(line, value, None) for each JSON value in the text, or (line, None, reason) for each stretch
    that is not one; after a broken stretch, reading resumes at the next line that starts with ``{``
    (where the next JSON line or pretty-printed document begins).

    The text is consumed a chunk at a time; a value is parsed once it is whole. A parse error on the
    last, unfinished line of what has been read so far only means "read more"; an error before it is
    a real one (JSON strings cannot hold a raw newline, so a complete line cannot be continued).

    An unfinished document is parsed again only once the text after its start has doubled (by at most
    :data:`MAX_VALUES` characters; or the stream ended), and the chunks read meanwhile are joined once: a
    pipe gives 64 KiB a read, and parsing (and copying) the whole unfinished document at every read made a
    10 MB document take 20 s. A document parsed whole at once is so never longer than that, or a chunk.
    """
    decoder = json.JSONDecoder(parse_int=_integer)
    buf, pos, line, eof = "", 0, 1, False
    # Chunks read but not yet joined to buf, and their length.
    pending: list[str] = []
    held = 0
    # The length of buf[pos:] (pending included) before the unfinished document at pos is parsed again.
    waiting = 0
    # The values of the unfinished document at pos counted so far, in buf[pos:counted] (MAX_VALUES): it
    # is read on only while it stays within the bound. counted < pos: not counted.
    counted, values = -1, 0
    broken_stretches = 0

    def more() -> bool:
        nonlocal eof, held
        chunk = next(chunks, None)
        if chunk is None:
            eof = True
            return False
        pending.append(chunk)
        held += len(chunk)
        return True

    def joined() -> None:
        nonlocal buf, pos, counted, held
        if pending:
            buf, pos, counted = buf[pos:] + "".join(pending), 0, counted - pos
            pending.clear()
            held = 0

    while True:
        joined()
        end = _SPACE.match(buf, pos).end()  # type: ignore[union-attr]
        line += buf.count("\n", pos, end)
        pos = end
        if pos == len(buf):
            if not more():
                return
            continue
        reason = None
        if waiting:
            while len(buf) - pos + held < waiting and more():
                pass
            joined()
        if buf[pos] not in _VALUE_STARTS:
            # what no text that follows makes a value of (NUL bytes, a word): said without a parse, whose
            # error counts the lines from the start of all that was read (a stream of such lines was
            # quadratic)
            column = pos - buf.rfind("\n", 0, pos)
            reason = f"is not JSON (Expecting value at line 1 of the document, column {column})"
        if reason is None:
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                unfinished = not eof and exc.pos > buf.rfind("\n") and len(buf) - pos <= MAX_BYTES
                if unfinished:
                    if counted < pos:
                        counted, values = pos, 0
                    values += _values(buf, counted)  # all of it: it is all this unfinished document
                    counted = len(buf)
                if unfinished and values <= MAX_VALUES:
                    # Twice as much, but no more characters than the values it may still hold under the
                    # bound (a chunk at least): a parse never holds much more than MAX_VALUES values, this
                    # document's or those that follow it in what is read meanwhile.
                    more_at_most = max(STDIN_CHUNK, MAX_VALUES - values)
                    waiting = min(2 * (len(buf) - pos), len(buf) - pos + more_at_most, MAX_BYTES + 1)
                    more()
                    continue
                reason = _too_many_values() if unfinished else broken(exc, buf, pos, eof)
            except (RecursionError, ValueError) as exc:  # nesting too deep; a number too long
                if isinstance(exc, RecursionError):
                    reason = "nests too deeply"
                else:
                    reason = str(exc) if isinstance(exc, _Absurd) else f"is not valid JSON ({exc})"
            else:
                yield line, value, None
                line += buf.count("\n", pos, end)
                pos, waiting, counted, values = end, 0, -1, 0
                continue
        yield line, None, reason
        counted, values, waiting = -1, 0, 0
        broken_stretches += 1
        if broken_stretches > MAX_BROKEN:
            yield (
                line,
                None,
                f"is followed by more than {MAX_BROKEN:,} stretches that are not JSON: the rest is not read",
            )
            return
        # Skip the broken stretch: a JSON line is one line; anything else runs to the next line that starts
        # a document. Read on if its end is not here yet, but not past MAX_BYTES (/dev/zero has no end).
        needle = "\n" if _one_line(buf, pos) else "\n{"
        skipped = 0
        while True:
            found = buf.find(needle, pos)
            if found >= 0:
                line += buf.count("\n", pos, found + 1)
                pos = found + 1
                break
            line += buf.count("\n", pos, len(buf) - 1)
            rest = len(buf) - 1 if buf.endswith("\n") else len(buf)
            skipped += rest - pos
            pos = rest
            if skipped > MAX_BYTES:
                yield line, None, f"is followed by {MAX_BYTES // 1024**2} MiB without a document: the rest is not read"
                return
            if not more():
                pos = len(buf)
                break
            joined()


def broken(exc: json.JSONDecodeError, buf: str, start: int, eof: bool) -> str:
    """Why the value starting at ``start`` did not parse, in words a person acts on ("is truncated: ...",
    "is not JSON (...)"); ``eof``: ``buf`` holds the whole text. ``--since`` says the same of its file."""
    if len(buf) - start > MAX_BYTES:
        return f"holds a document bigger than {MAX_BYTES // 1024**2} MiB"
    last_line = buf.rfind("\n", 0, len(buf.rstrip()))
    if eof and exc.pos > last_line:
        # The text ran out inside the value: it began on an earlier line, or ends in mid-string or at
        # the very end. A value that is wrong within its own last line is not JSON, not truncated.
        if start <= last_line or exc.pos >= len(buf.rstrip()) or exc.msg.startswith("Unterminated string"):
            return "is truncated: the JSON ends before the document does (a full disk or a killed writer?)"
    # (at its newline: the line ended inside a string, where a newline is a control character)
    if _one_line(buf, start) and exc.pos >= buf.find("\n", start) >= 0:
        return "is truncated: a JSON line ends before its document does"
    line = buf.count("\n", start, exc.pos) + 1
    what = exc.msg.removesuffix(" at")  # "Invalid control character at": the place follows
    return f"is not JSON ({what} at line {line} of the document, column {exc.colno})"


def _one_line(buf: str, start: int) -> bool:
    """Whether the value at ``start`` is written as one line (a JSON line) rather than indented over
    many (whose first line is its opening bracket alone)."""
    end = buf.find("\n", start)
    return buf[start : end if end >= 0 else len(buf)].strip() not in ("{", "[")


def _report(source: str, value: Any) -> NodeReport | Skipped:
    """A parsed document as a node's report, or the source skipped with why it is not one."""
    try:
        kind, hostname = classify(value)
    except NotAReport as exc:
        return Skipped(source, str(exc))
    return NodeReport(source, kind, hostname, value)


#: The kind of each schema an adapter reads (``envcheck.doctor/1`` -> ``doctor``), made once: classifying
#: a file asked every adapter's schema again, a tenth of a file's cost past its parse.
_KINDS: dict[str, str] = {schema: kind_of(schema) or schema for schema in ADAPTERS}


def classify(value: Any) -> tuple[str, str]:
    """(kind, hostname) of an envcheck node report, or :class:`NotAReport` saying why it is not one."""
    if not isinstance(value, dict):
        raise NotAReport(f"is not an envcheck report (a JSON {_json_type(value)}, not an object)")
    schema = value.get("schema")
    if schema is None:
        said = 'its "schema" is null' if "schema" in value else 'it has no "schema" field'
        raise NotAReport(f"is not an envcheck report ({said})")
    if not isinstance(schema, str) or not schema.startswith("envcheck."):
        raise NotAReport(f"is not an envcheck report (its schema is {json_words(schema)})")
    kind = _KINDS.get(schema) or kind_of(schema)
    if schema == FLEET_SCHEMA or schema[len("envcheck.") :].partition("/")[0] == "fleet":
        raise NotAReport(FLEET_REPORT)
    if schema in _KINDS:
        pass  # a schema this envcheck reads (every file of a fleet, as a rule): nothing more to ask
    elif kind is None:
        listed = ", ".join(schema_by_kind().values())
        raise NotAReport(
            f"has an unknown schema {files.shown(schema)} (this envcheck reads {listed}, and any other "
            "envcheck.<kind>/<version> by its envelope)"
        )
    elif kind in (known := schema_by_kind()) and schema not in ADAPTERS:
        raise NotAReport(
            f"has schema {files.shown(schema)}, a version this envcheck cannot read (it reads "
            f"{known[kind]}): merge it with the envcheck that wrote it"
        )
    host = value.get("host")
    hostname = host.get("hostname") if isinstance(host, dict) else None
    if not isinstance(hostname, str) or not hostname.strip():
        raise NotAReport("has no host.hostname, so it cannot be told which node it describes")
    if len(hostname) > MAX_HOSTNAME:
        raise NotAReport(
            f"has a host.hostname of {len(hostname):,} characters, which names no host (a host name is at "
            f"most {MAX_HOSTNAME}), so it cannot be told which node it describes"
        )
    return kind, hostname


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
