"""The reader's fast path (msgspec, only the fields the fleet reads) against the whole document: any
layout of the same reports merges the same, every kind's real report takes the fast path and digests as
the whole document does, and a report of an odd shape is read around or skipped with its reason."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcheck.core.report import utc_now
from envcheck.fleet import read
from envcheck.fleet.app import merge_sources
from envcheck.fleet.merge import digest, merge
from envcheck.fleet.read import DECODER, NodeReport, Skipped, _parse_file
from envcheck.fleet.report import fleet_document
from tests.fleet.conftest import as_node, gpu_bench
from tests.fleet.test_absurd import documents


class _Refuses:
    """A decoder that refuses every document: the reader as it was, reading each whole."""

    def decode(self, data: bytes) -> Any:
        raise msgspec.DecodeError("refused")


def read_whole(text: bytes, name: str = "doc.json") -> list[NodeReport | Skipped]:
    with mock.patch.object(read, "DECODER", _Refuses()):
        return list(_parse_file(name, text))


def outcome(items: list[NodeReport | Skipped]) -> list[Any]:
    """What the merge gets of a file: each node's digest, or the skip's reason."""
    return [digest(i) if isinstance(i, NodeReport) else i.reason for i in items]


def the_fleet(real: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Two nodes of every kind's real report (a doctor of 4 GPUs, their bench)."""
    docs = {}
    for n in range(2):
        host = f"node-{n}"
        for name in ("doctor", "doctor_spec", "comm_cpu", "burn_cpu", "bench_cpu", "h100x4", "ecc", "old_driver"):
            docs[f"{host}/{name}"] = as_node(real[name], host, uuid_prefix=host)
        docs[f"{host}/gpu_bench"] = gpu_bench(real["bench_cpu"], docs[f"{host}/h100x4"])
    return docs


def shuffled(value: Any, depth: int = 0) -> Any:
    """``value`` with every object's keys in reverse order and a field no envcheck writes added to each."""
    if isinstance(value, dict):
        out = {k: shuffled(value[k], depth + 1) for k in reversed(list(value))}
        out[f"x_added_{depth}"] = {"nested": [1, 2.5, "three", None, {"four": [True]}]}
        return out
    if isinstance(value, list):
        return [shuffled(v, depth + 1) for v in value]
    return value


#: The same documents as other writers would lay them out.
LAYOUTS = {
    "as --json writes it": lambda doc: json.dumps(doc, indent=2) + "\n",
    "compact": lambda doc: json.dumps(doc, separators=(",", ":")),
    "one line, spaced": lambda doc: json.dumps(doc, separators=(" , ", " : ")),
    "tabs, keys sorted": lambda doc: json.dumps(doc, indent="\t", sort_keys=True),
    "keys reversed, fields added": lambda doc: json.dumps(shuffled(doc), indent=5),
    "CRLF, leading blank lines": lambda doc: "\r\n\r\n" + json.dumps(doc, indent=1).replace("\n", "\r\n"),
}


WHEN = utc_now()


def merged(directory: Path, docs: dict[str, dict[str, Any]], layout: str) -> dict[str, Any]:
    for name, doc in docs.items():
        path = directory / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(LAYOUTS[layout](doc))
    report = merge_sources([str(directory)], workers=1)
    out = fleet_document(report, generated_at=WHEN, duration_s=0.0)
    # Where the files lie is the one difference between the runs.
    return json.loads(json.dumps(out).replace(str(directory), "DIR"))


def test_any_layout_of_the_same_reports_merges_the_same(real: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Every kind's real reports, written in each of LAYOUTS (indents, separators, key order, fields no
    envcheck writes, CRLF): the fleet document is the same for each, and it holds every node."""
    docs = the_fleet(real)
    first = merged(tmp_path / "0", docs, next(iter(LAYOUTS)))
    assert {n["hostname"] for n in first["nodes"]} == {"node-0", "node-1"} and not first["skipped"]
    for i, layout in enumerate(LAYOUTS):
        assert merged(tmp_path / str(i + 1), docs, layout) == first, layout


def test_real_reports_take_the_fast_path_and_digest_as_whole(real: dict[str, dict[str, Any]]) -> None:
    """Every kind's real report is decoded by the fast path (so the fleet's speed holds for what envcheck
    writes), and its digest is the digest of the whole document: a field an adapter of
    envcheck.fleet.kinds reads that the fast path's shape (envcheck.fleet.read._Report) leaves out
    fails here."""
    for name, doc in the_fleet(real).items():
        text = json.dumps(doc, indent=2).encode()
        DECODER.decode(text)  # raises if a real report does not fit the shape
        assert outcome(list(_parse_file("doc.json", text))) == outcome(read_whole(text)), name


@pytest.mark.parametrize(
    ("case", "edit", "expected"),
    [
        # Fields no envcheck writes, anywhere: read as if they were not there.
        (
            "extra fields",
            lambda d: d.update(future={"x": [1] * 5}, checks=[{**c, "new": {}} for c in d["checks"]]),
            None,
        ),
        # Optional fields missing: read with the adapters' defaults.
        ("no checks", lambda d: d.pop("checks"), None),
        ("no driver, torch or gpus", lambda d: [d.pop(k) for k in ("driver", "torch", "gpus")], None),
        ("null lists", lambda d: d.update(checks=None, gpus=None, packages=None), None),
        # Wrong types where the fleet reads: read around (the whole document's path), never a traceback.
        ("checks a string", lambda d: d.update(checks="oops"), None),
        ("a check a number", lambda d: d["checks"].append(7), None),
        ("status a list", lambda d: d["checks"][0].update(status=["fail"]), None),
        ("fix a string", lambda d: d["checks"][0].update(fix="reboot"), None),
        ("gpu uuid an object", lambda d: d["gpus"][0].update(uuid={"a": 1}), None),
        ("exit_code a string", lambda d: d.update(exit_code="1"), None),
        # What makes it no node's report: skipped, with the reason.
        ("no host", lambda d: d.pop("host"), "has no host.hostname, so it cannot be told which node it describes"),
        ("hostname a number", lambda d: d["host"].update(hostname=5), "has no host.hostname"),
        ("hostname the longest", lambda d: d["host"].update(hostname="n" * 253), None),
        (
            "hostname too long",
            lambda d: d["host"].update(hostname="n" * 254),
            "has a host.hostname of 254 characters, which names no host (a host name is at most 253)",
        ),
        ("schema a number", lambda d: d.update(schema=1), "is not an envcheck report (its schema is 1)"),
    ],
)
def test_odd_shapes_are_read_around_or_skipped_with_a_reason(
    real: dict[str, dict[str, Any]], case: str, edit: Any, expected: str | None
) -> None:
    """A doctor report with unknown extra fields, missing optional fields or values of the wrong type:
    merged as the whole document would be (the fast path and the whole path agree), or skipped with the
    reason in one line; never an exception."""
    doc = as_node(real["h100x4"], "odd")
    edit(doc)
    text = json.dumps(doc).encode()
    items = list(_parse_file("odd.json", text))
    assert len(items) == 1
    assert outcome(items) == outcome(read_whole(text, "odd.json")), case
    if expected is None:
        assert isinstance(items[0], NodeReport) and items[0].hostname == doc["host"]["hostname"], case
    else:
        assert isinstance(items[0], Skipped) and items[0].reason.startswith(expected), (case, items[0])
    report = merge([i for i in items if isinstance(i, NodeReport)], [i for i in items if isinstance(i, Skipped)])
    json.dumps(fleet_document(report, generated_at=utc_now(), duration_s=0.0))  # and its document renders


def narrowed(value: Any) -> Any:
    """``value`` with every integer wider than 64 bits made 0."""
    if isinstance(value, dict):
        return {k: narrowed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [narrowed(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return 0
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_document_reads_as_the_whole_document_does(value: Any) -> None:
    """Any JSON document (a report of any kind with any values in the fields the adapters read, or any
    JSON value): the fast path's node or skip is the whole document's. The one difference is meant: an
    integer wider than 64 bits skips a document only where the fleet reads it (the fast path steps over
    the fields it does not read without building them, so such a number costs nothing there); where it
    is not read, the document reads as it would with the number narrowed."""
    text = json.dumps(value).encode()
    whole = outcome(read_whole(text))
    if isinstance(whole[0], str) and whole[0].startswith("holds an integer of"):
        fast = outcome(list(_parse_file("doc.json", text)))
        assert fast in (whole, outcome(read_whole(json.dumps(narrowed(value)).encode())))
    else:
        assert outcome(list(_parse_file("doc.json", text))) == whole


def test_the_fast_path_leaves_out_what_no_question_reads(real: dict[str, dict[str, Any]]) -> None:
    """The bulky parts (the doctor's GPU inventory and check details, the bench's raw samples) are
    stepped over, not built: the decoded report is a fraction of the whole."""
    doctor = as_node(real["h100x4"], "n")
    for doc in (doctor, gpu_bench(real["bench_cpu"], doctor)):
        text = json.dumps(doc).encode()
        assert len(msgspec.json.encode(DECODER.decode(text))) * 2 < len(text), doc["schema"]


def _headline_readings(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The bench's headlines per mark as the lab spec picks them (envcheck.spec.bench.headlines, three
    passes: calm, contended, noisy, each left out where an earlier mark has the key): what the fleet's
    one-pass reader must give."""
    from envcheck.fleet.kinds import figure_value
    from envcheck.spec.bench import headlines

    results = [
        r
        for r in doc["results"]
        if isinstance(r.get("id"), str)
        and isinstance(r.get("unit"), str)
        and isinstance(r.get("device"), str)
        and figure_value(r.get("value")) is not None
    ]
    quiet = [r for r in results if r.get("noisy") is not True]
    calm = headlines(quiet, contended=False)
    contended = {k: v for k, v in headlines(quiet, contended=True).items() if k not in calm}
    noisy = {
        k: v
        for k, v in headlines([r for r in results if r.get("noisy") is True]).items()
        if k not in calm and k not in contended
    }
    return [
        (bench_id, name, value, unit, mark)
        for table, mark in ((calm, None), (contended, "contended"), (noisy, "noisy"))
        for (bench_id, name), (value, unit) in table.items()
    ]


_RESULT = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["matmul.bf16", "memory.d2d", 7]),
        "device": st.sampled_from(["cuda:0", "cuda:1", "cpu", None]),
        "unit": st.sampled_from(["TFLOP/s", "GB/s"]),
        "status": st.sampled_from(["ok", "ok", "fail"]),
        "verified": st.sampled_from([True, True, False, None]),
        "value": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**30), st.booleans()),
        "contended": st.sampled_from([True, False, None]),
        "noisy": st.sampled_from([True, False, None]),
    },
    optional={"host_bound": st.sampled_from([True, False, None, "yes"]), "reason": st.sampled_from(["hung", 3])},
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_RESULT, max_size=12))
def test_the_bench_headlines_are_read_in_one_pass_as_the_lab_spec_picks_them(results: list[dict[str, Any]]) -> None:
    from envcheck.fleet.kinds import Adapter, Bench, pack

    doc = {"results": results, "devices": [{"name": "cuda:0", "kind": "cuda", "model": "H100", "uuid": "GPU-0"}]}
    got = [(r.group.id, r.device, r.value, r.group.unit, r.set_apart) for r in Bench().readings(doc)]
    assert got == _headline_readings(doc)
    # What the merge gets: the same figures packed, and the one-pass digest is each reading's in turn.
    assert Bench().figures(doc) == pack(Bench().readings(doc))
    assert Bench().digest("b.json", "bench", "n", doc) == Adapter.digest(Bench(), "b.json", "bench", "n", doc)


def _mountinfo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str], blocks: dict[str, str] | None = None
) -> Path:
    """This process's mounts as a captured /proc states them, and its block devices as a captured /sys
    places them (envcheck.core.machine reads both there): ``blocks`` maps a device number to where sysfs
    puts it; any other device the lines name is a local SATA disk. Returns the captured /sys."""
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "mountinfo").write_bytes(os.fsencode("\n".join(lines) + "\n"))
    monkeypatch.setenv("ENVCHECK_PROCFS", str(tmp_path / "proc"))
    sysfs = tmp_path / "sys"
    (sysfs / "dev" / "block").mkdir(parents=True)
    placed = dict(blocks or {})
    for n, line in enumerate(lines):
        number = line.split(" ")[2]
        if not number.startswith("0:"):
            placed.setdefault(
                number, f"devices/pci0000:00/0000:00:1f.2/ata{n}/host{n}/target{n}:0:0/{n}:0:0:0/block/sd{n}"
            )
    for number, where in placed.items():
        (sysfs / where).mkdir(parents=True, exist_ok=True)
        (sysfs / where / "dev").write_text(number + "\n")
        (sysfs / "dev" / "block" / number).symlink_to(Path("../..", where))
    monkeypatch.setenv("ENVCHECK_SYSFS", str(sysfs))
    return sysfs


def test_mounts_are_read_with_their_types_devices_and_escapes() -> None:
    """Fields are split on the single spaces and newlines the kernel writes, so a mount point may hold a
    no-break space, a line separator or bytes that are not UTF-8; its escapes are undone."""
    from envcheck.core.machine import Mount, mounts

    lines = [
        b"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
        b"40 27 0:50 / /mnt/lab\\040reports rw shared:7 - nfs4 server:/export rw,vers=4.2",
        "41 27 0:51 / /mnt/a\u00a0b\u2028c rw - nfs4 s:/x rw".encode(),
        b"42 27 0:52 / /mnt/caf\xe9 rw - nfs4 s:/y rw",
        b"not a mountinfo line",
        b"43 27 0:53 / /broken rw no separator here",
    ]
    with tempfile.TemporaryDirectory() as d:
        Path(d, "self").mkdir()
        Path(d, "self", "mountinfo").write_bytes(b"\n".join(lines))
        assert mounts({"ENVCHECK_PROCFS": d}) == [
            Mount("/", "ext4", (254, 0)),
            Mount("/mnt/lab reports", "nfs4", (0, 50)),
            Mount("/mnt/a\u00a0b\u2028c", "nfs4", (0, 51)),
            Mount(os.fsdecode(b"/mnt/caf\xe9"), "nfs4", (0, 52)),
        ]
        assert mounts({"ENVCHECK_PROCFS": str(Path(d, "none"))}) == []


def _device(path: Path) -> str:
    found = os.stat(path).st_dev
    return f"{os.major(found)}:{os.minor(found)}"


@pytest.mark.parametrize(
    ("kind", "threaded"), [("ext4", False), ("nfs4", True), ("fuse.sshfs", True), ("lustre", True)]
)
def test_files_on_a_network_filesystem_go_through_the_reading_thread_and_local_ones_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, threaded: bool
) -> None:
    """The reading thread refuses a file whose server never answers; a local disk's files are read where
    they are parsed. A symbolic link (which may lead onto any filesystem) and a FIFO take the thread
    wherever they lie; every file's bytes or reason is the same either way, in order."""
    from envcheck.fleet import read

    data = tmp_path / "data"
    data.mkdir()
    real = os.path.realpath(data)
    _mountinfo(
        tmp_path, monkeypatch, ["1 0 8:1 / / rw - ext4 /dev/sda1 rw", f"2 1 {_device(data)} / {real} rw - {kind} x rw"]
    )
    paths = []
    for name in ("a", "b"):
        (data / f"{name}.json").write_text(f'{{"{name}": 1}}')
        paths.append(str(data / f"{name}.json"))
    (data / "link.json").symlink_to(data / "a.json")
    os.mkfifo(data / "fifo.json")
    paths = [paths[0], str(data / "link.json"), str(data / "fifo.json"), paths[1]]
    through_thread = _watch_the_thread(monkeypatch)
    got = list(read.reads(paths))
    assert [p for p, _ in got] == paths
    assert [g if isinstance(g, bytes) else "refused" for _, g in got] == [
        b'{"a": 1}',
        b'{"a": 1}',
        "refused",
        b'{"b": 1}',
    ]
    assert "FIFO" in str(got[2][1])
    assert through_thread == (paths if threaded else paths[1:3])


def _watch_the_thread(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths read_ahead is given from now on."""
    from envcheck.fleet import read

    through_thread: list[str] = []
    ahead = read.read_ahead

    def watched(run: list[str], **kw: Any) -> Any:
        through_thread.extend(run)
        return ahead(run, **kw)

    monkeypatch.setattr(read, "read_ahead", watched)
    return through_thread


def test_a_file_mounted_on_its_own_or_under_a_hiding_mount_takes_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file bind-mounted from NFS into a local directory is a mount of its own; a local mount made
    under a directory before NFS was mounted over that directory is hidden (what a path reaches is the
    NFS). Only the file on the visible local mount is read where it is parsed."""
    from envcheck.fleet import read

    plain, own, hidden = (tmp_path / n for n in ("plain", "own", "hidden"))
    for d in (plain, own, hidden / "below"):
        d.mkdir(parents=True)
    root, dev = os.path.realpath(tmp_path), _device(tmp_path)
    _mountinfo(
        tmp_path,
        monkeypatch,
        [
            f"1 0 {dev} / / rw - ext4 /dev/sda1 rw",
            f"2 1 0:70 / {root}/own/f.json rw - nfs4 s:/f.json rw",
            f"3 1 {dev} / {root}/hidden/below rw - ext4 /dev/sda1 rw",
            f"4 1 0:71 / {root}/hidden rw - nfs4 s:/h rw",
        ],
    )
    paths = [str(plain / "f.json"), str(own / "f.json"), str(hidden / "below" / "f.json")]
    for p in paths:
        Path(p).write_text("{}")
    through_thread = _watch_the_thread(monkeypatch)
    assert [g for _, g in read.reads(paths)] == [b"{}"] * 3
    assert through_thread == paths[1:]


def test_a_file_on_a_device_no_local_mount_names_takes_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path says local, but the opened file's device is none of the local mounts' (a btrfs
    subvolume, an overlay's lower layer on NFS, a path swapped while it was read): not read here."""
    from envcheck.fleet import read

    _mountinfo(tmp_path, monkeypatch, ["1 0 8:99 / / rw - ext4 /dev/sdz1 rw"])
    path = tmp_path / "f.json"
    path.write_text("{}")
    through_thread = _watch_the_thread(monkeypatch)
    assert [g for _, g in read.reads([str(path)])] == [b"{}"]
    assert through_thread == [str(path)]


ISCSI_DISK = "devices/platform/host3/session1/target3:0:0/3:0:0:0/block/sdb"


@pytest.mark.parametrize(
    ("where", "remote"),
    [
        ("devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", False),
        ("devices/pci0000:00/0000:00:02.0/virtio1/block/vda", False),
        ("devices/virtual/block/nbd0", True),
        ("devices/virtual/block/nbd0/nbd0p1", True),
        ("devices/virtual/block/rbd3", True),
        (ISCSI_DISK, True),
        ("devices/virtual/nvme-fabrics/ctl/nvme1/nvme1n1", True),
        (None, True),  # sysfs does not show it: envcheck cannot tell
    ],
    ids=["nvme", "virtio", "nbd", "nbd-partition", "rbd", "iscsi", "nvme-over-tcp", "unknown"],
)
def test_a_block_device_is_remote_where_sysfs_places_it_on_a_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str | None, remote: bool
) -> None:
    from envcheck.fleet import read

    sysfs = _mountinfo(tmp_path, monkeypatch, ["1 0 0:20 / / rw - tmpfs t rw"], {} if where is None else {"9:1": where})
    assert (sysfs / "dev" / "block" / "9:1").exists() is (where is not None)
    local = read._Local()
    local._visible()
    assert local._remote((9, 1)) is remote
    assert local._remote((0, 40)) is False  # no block device: its filesystem's type decides


def test_loop_device_mapper_and_md_devices_are_judged_by_what_they_are_built_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop device is as remote as its file's mount; a dm or md device as the devices below it, however
    deep, and a stack that leads back to itself or past MAX_STACK counts as remote."""
    from envcheck.fleet import read

    blocks = {
        "8:16": ISCSI_DISK,
        "8:0": "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda",
        "7:0": "devices/virtual/block/loop0",  # its file on NFS
        "7:1": "devices/virtual/block/loop1",  # its file on the local disk
        "7:2": "devices/virtual/block/loop1/loop1p1",  # a partition of that loop device
        "252:0": "devices/virtual/block/dm-0",  # on the iSCSI disk
        "252:1": "devices/virtual/block/dm-1",  # on the local disk and loop1
        "9:0": "devices/virtual/block/md0",  # on dm-1
        "252:2": "devices/virtual/block/dm-2",  # on itself
    }
    sysfs = _mountinfo(
        tmp_path,
        monkeypatch,
        ["1 0 8:0 / / rw - ext4 /dev/sda rw", "2 1 0:60 / /mnt/nfs rw - nfs4 s:/e rw"],
        blocks,
    )
    (sysfs / "devices/virtual/block/loop1/loop1p1/partition").write_text("1\n")
    for loop, image in (("loop0", "/mnt/nfs/images/a.ext4"), ("loop1", "/var/images/b.img (deleted)")):
        (sysfs / "devices/virtual/block" / loop / "loop").mkdir()
        (sysfs / "devices/virtual/block" / loop / "loop" / "backing_file").write_text(image + "\n")
    for dm, below in (("dm-0", ["sdb"]), ("dm-1", ["sda", "loop1"]), ("md0", ["dm-1"]), ("dm-2", ["dm-2"])):
        for name in below:
            number = {"sdb": "8:16", "sda": "8:0", "loop1": "7:1", "dm-1": "252:1", "dm-2": "252:2"}[name]
            (sysfs / "devices/virtual/block" / dm / "slaves" / name).mkdir(parents=True)
            (sysfs / "devices/virtual/block" / dm / "slaves" / name / "dev").write_text(number + "\n")
    # partitions: as their disk (an md partition is as remote as the disks its array is built on)
    for disk, part, number in (
        ("dm-0", "dm-0p1", "259:10"),
        ("md0", "md0p1", "259:11"),
        ("loop1", "loop1p2", "259:12"),
    ):
        where = f"devices/virtual/block/{disk}/{part}"
        (sysfs / where).mkdir(parents=True)
        (sysfs / where / "partition").write_text("1\n")
        (sysfs / "dev" / "block" / number).symlink_to(Path("../..", where))
        blocks[number] = where
    local = read._Local()
    local._visible()
    judged = {n: local._remote(tuple(map(int, n.split(":")))) for n in blocks}
    assert judged == {
        "8:16": True,
        "8:0": False,
        "7:0": True,
        "7:1": False,
        "7:2": False,
        "252:0": True,
        "252:1": False,
        "9:0": False,
        "252:2": True,
        "259:10": True,
        "259:11": False,
        "259:12": False,
    }
    monkeypatch.setattr(read, "MAX_STACK", 1)
    deep = read._Local()
    deep._visible()
    assert deep._remote((9, 0)) is True  # md0 -> dm-1 -> sda is deeper than one level


@pytest.mark.parametrize(
    ("transports", "remote"),
    [(["pcie"], False), (["pcie", "pcie"], False), (["tcp", "tcp"], True), (["pcie", "rdma"], True), ([], True)],
    ids=["one-pcie-port", "dual-port-pcie", "nvme-tcp", "mixed", "no-controller-readable"],
)
def test_a_multipath_nvme_disk_is_as_remote_as_its_controllers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transports: list[str], remote: bool
) -> None:
    """With the kernel's native NVMe multipath (the default on current distributions) a disk sits under
    its subsystem, not its controller: a local dual-port drive and an NVMe/TCP target look alike by path,
    and each controller's transport tells them apart. Its partitions follow it."""
    from envcheck.fleet import read

    subsystem = "devices/virtual/nvme-subsystem/nvme-subsys1"
    sysfs = _mountinfo(
        tmp_path,
        monkeypatch,
        ["1 0 0:20 / / rw - tmpfs t rw"],
        {"259:0": f"{subsystem}/nvme1n1", "259:1": f"{subsystem}/nvme1n1/nvme1n1p1"},
    )
    (sysfs / subsystem / "nvme1n1" / "nvme1n1p1" / "partition").write_text("1\n")
    (sysfs / subsystem / "model").write_text("a model\n")
    for n, transport in enumerate(transports):
        (sysfs / subsystem / f"nvme{n + 1}").mkdir()
        (sysfs / subsystem / f"nvme{n + 1}" / "transport").write_text(transport + "\n")
    local = read._Local()
    local._visible()
    assert local._remote((259, 0)) is remote
    assert local._remote((259, 1)) is remote


def test_a_local_filesystem_on_a_remote_block_device_takes_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ext4 on an NBD or iSCSI disk is ext4 by its type, but a read of it waits on the network: its files go
    through the reading thread, which gives up on a disk that stopped answering."""
    from envcheck.fleet import read

    data = tmp_path / "data"
    data.mkdir()
    number = _device(data)
    if number.startswith("0:"):
        pytest.skip("the test's directory is on a filesystem without a block device, which no sysfs can place")
    path = data / "f.json"
    path.write_text("{}")
    lines = [f"1 0 {number} / / rw - ext4 /dev/sdz rw"]
    for where, threaded in ((ISCSI_DISK, True), ("devices/pci0000:00/0000:00:1f.2/ata1/block/sda", False)):
        with monkeypatch.context() as m:
            case = tmp_path / ("remote" if threaded else "local")
            case.mkdir()
            _mountinfo(case, m, lines, {number: where})
            through_thread = _watch_the_thread(m)
            assert [g for _, g in read.reads([str(path)])] == [b"{}"]
            assert through_thread == ([str(path)] if threaded else [])


def test_a_hand_edited_bench_result_reads_as_it_did_whatever_its_shape() -> None:
    """A bench result whose words are not words (an id, a case or a device that is a list): the document is
    read whole, its results made into the fleet's structs with their values as they are, and the problem
    names them as the dict did; a string in a control character is said to be one, once."""
    doc = {
        "schema": "envcheck.bench/1",
        "host": {"hostname": "n"},
        "status": "fail",
        "results": [
            {"id": [1], "case": [2], "device": {"x": 1}, "status": "crash", "check": {"detail": ["d"]}},
            {"id": "cnn.step", "case": "c", "device": "cpu", "status": "fail", "check": "no", "reason": 5},
            7,
        ],
    }
    (item,) = list(_parse_file("b.json", json.dumps(doc).encode()))
    d = digest(item)
    assert [(p.id, p.summary) for _, p in d.problems] == [
        ("[1]", "[2] on {'x': 1}: crash"),
        ("cnn.step", "c on cpu: fail"),
    ]
    assert outcome([item]) == outcome(read_whole(json.dumps(doc).encode(), "b.json"))
    (skipped,) = list(_parse_file("c.json", b'{"schema": "envcheck.bench/1", "x": "a\x01b"}'))
    assert skipped.reason.startswith("is not JSON (Invalid control character at line 1"), skipped.reason


def test_each_node_directory_is_judged_by_its_own_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet directory's node directories are resolved from their parent's (one lstat each, not a walk of
    the path and the mount table), so each must still be judged by the mount it is: a node directory that
    is an NFS mount point, one below it, and a local mount made inside the NFS one."""
    from envcheck.fleet import read

    fleet = tmp_path / "fleet"
    dirs = [fleet / "plain", fleet / "nfs", fleet / "nfs" / "below", fleet / "nfs" / "local"]
    for d in dirs:
        d.mkdir(parents=True)
    root, dev = os.path.realpath(tmp_path), _device(tmp_path)
    _mountinfo(
        tmp_path,
        monkeypatch,
        [
            f"1 0 {dev} / / rw - ext4 /dev/sda1 rw",
            f"2 1 0:70 / {root}/fleet/nfs rw - nfs4 s:/n rw",
            f"3 2 {dev} / {root}/fleet/nfs/local rw - ext4 /dev/sda1 rw",
        ],
    )
    paths = [str(d / "doctor.json") for d in dirs]
    for p in paths:
        Path(p).write_text("{}")
    through_thread = _watch_the_thread(monkeypatch)
    assert [g for _, g in read.reads(paths)] == [b"{}"] * 4
    assert through_thread == paths[1:3]


def test_a_file_of_many_json_lines_is_bounded_per_document_not_as_a_whole(
    real: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The value bound (MAX_VALUES, made small here) is a document's: a file of many nodes' JSON lines that
    holds more values in all is read, each document bounded as it is parsed; one document past the bound,
    among them or alone, is still skipped."""
    assert read.STDIN_CHUNK <= read.MAX_VALUES  # so a chunk's whole documents are within the bound
    monkeypatch.setattr(read, "MAX_VALUES", 3_000)
    monkeypatch.setattr(read, "STDIN_CHUNK", 1_000)  # fewer characters than the bound, as they are
    line = json.dumps(real["doctor"])
    assert 300 < read._values(line) < 3_000
    many = tmp_path / "many.jsonl"
    big = json.dumps({**real["doctor"], "pad": [{}] * 5_000})
    many.write_text("\n".join([line] * 8 + [big] + [line] * 3) + "\n")
    found = list(read.read_files([str(many)]))
    assert [type(f).__name__ for f in found] == ["NodeReport"] * 8 + ["Skipped"] + ["NodeReport"] * 3
    assert found[8].source == f"{many}:9" and "JSON values" in found[8].reason
    alone = tmp_path / "alone.json"
    alone.write_text(big)
    (skipped,) = read.read_files([str(alone)])
    assert isinstance(skipped, Skipped) and "JSON values" in skipped.reason


def test_a_document_coming_in_small_pieces_is_parsed_a_few_times_not_at_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipe gives 64 KiB a read: a 2 MB document in 4 KiB pieces is parsed again only when what came
    has doubled (a dozen parses), not once a piece (five hundred), and comes out whole."""
    calls = []
    real_decode = json.JSONDecoder.raw_decode

    def counted(self: json.JSONDecoder, s: str, idx: int = 0) -> tuple[Any, int]:
        calls.append(idx)
        return real_decode(self, s, idx)

    monkeypatch.setattr(json.JSONDecoder, "raw_decode", counted)
    doc = {"schema": "envcheck.doctor/1", "host": {"hostname": "h"}, "status": "ok", "pad": ["x" * 100] * 20_000}
    text = json.dumps(doc) + "\n"
    pieces = [text[i : i + 4096] for i in range(0, len(text), 4096)]
    assert len(pieces) > 400
    (item,) = list(read._json_values(iter(pieces)))
    assert item[1] == doc and item[2] is None
    assert len(calls) < 20, len(calls)


def test_a_stream_without_end_or_document_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """``envcheck fleet - < /dev/zero``: what cannot start a value is not JSON at once, and the stretch after
    it is skipped only as far as MAX_BYTES (made small here), then the stream is left unread."""
    import itertools

    monkeypatch.setattr(read, "MAX_BYTES", 1024**2)
    found = list(read._json_values(itertools.repeat("\0" * 65536)))
    assert [reason for _, _, reason in found] == [
        "is not JSON (Expecting value at line 1 of the document, column 1)",
        "is followed by 1 MiB without a document: the rest is not read",
    ]


def test_documents_that_share_a_line_are_each_bounded_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two documents on one line, each within the value bound (made small here) and over it together,
    coming in small pieces: each is read; the bound is a document's, not its line's."""
    monkeypatch.setattr(read, "MAX_VALUES", 3_000)
    monkeypatch.setattr(read, "STDIN_CHUNK", 500)
    a = {"schema": "envcheck.doctor/1", "host": {"hostname": "a"}, "pad": [{}] * 1_000}
    b = {"schema": "envcheck.doctor/1", "host": {"hostname": "b"}, "pad": [{}] * 1_000}
    text = json.dumps(a) + " " + json.dumps(b) + "\n"
    assert read._values(text) > 3_000
    found = list(read._json_values(iter([text[i : i + 500] for i in range(0, len(text), 500)])))
    assert [(value or {}).get("host") for _, value, _ in found] == [{"hostname": "a"}, {"hostname": "b"}]


def test_a_stream_of_what_is_not_json_is_given_up_after_so_many_stretches(monkeypatch: pytest.MonkeyPatch) -> None:
    """``yes x | envcheck fleet -``: each line is a stretch that is not JSON, said at once (no parse), and
    after MAX_BROKEN of them (made small here) the rest of the stream is left unread."""
    import itertools

    monkeypatch.setattr(read, "MAX_BROKEN", 5)
    found = list(read._json_values(itertools.repeat("x\n" * 1000)))
    assert [reason for _, _, reason in found[:6]] == [
        "is not JSON (Expecting value at line 1 of the document, column 1)"
    ] * 6
    assert found[-1][2] == "is followed by more than 5 stretches that are not JSON: the rest is not read"
    assert len(found) == 7


def test_a_schema_that_is_no_word_is_quoted_with_its_controls_escaped() -> None:
    """The reason a document is skipped goes to stderr: a schema holding a terminal's control (C1 CSI) or a
    right-to-left override is quoted as JSON escapes it, never written raw."""
    with pytest.raises(read.NotAReport) as caught:
        read.classify({"schema": "x\u009b2J\u202eevil", "host": {"hostname": "h"}})
    assert str(caught.value) == 'is not an envcheck report (its schema is "x\\u009b2J\\u202eevil")'
    assert str(caught.value).isprintable()


def test_nodes_sharing_gpus_are_worded_once_naming_a_few() -> None:
    """An image built with a report in it: two thousand nodes name the same eight GPUs. Each warns, in the
    same words, naming four of them and counting the rest (words naming all, on each node, were quadratic)."""
    from envcheck.core.model import Status
    from envcheck.fleet.kinds import ReportRef
    from envcheck.fleet.merge import DuplicateGpu, _shared_gpus

    hosts = tuple(f"n{i:04d}" for i in range(2000))
    found = _shared_gpus(
        [DuplicateGpu(f"GPU-{u}", hosts, hosts) for u in range(8)],
        {h: [ReportRef(f"{h}/doctor.json", "doctor", Status.OK, 0, None)] for h in hosts},
    )
    assert len(found) == 2000 and {p.summary for (p,) in found.values()} == {
        "8 GPU UUIDs in the reports of 2000 nodes (n0000, n0001, n0002, n0003 and 1996 more) alike: "
        "a copied report, or cards moved between them"
    }


def test_since_a_fleet_of_no_figures_says_nothing_of_figures() -> None:
    """A previous report without figures is said to keep none only where this run has some to compare."""
    from envcheck.fleet.since import changes

    none = {"nodes": [{"hostname": "a", "failing": []}], "figures": {"devices": [], "hosts": [], "values": {}}}
    some = {**none, "figures": {"devices": ["GPU-1"], "hosts": ["a"], "values": {"matmul.bf16": [1.0]}}}
    assert changes(none, none, 0.1)["previous"]["figures_known"] is True
    assert changes(none, some, 0.1)["previous"]["figures_known"] is False
    assert changes(some, some, 0.1)["previous"]["figures_known"] is True


def test_since_reads_a_hand_edited_slow_item_and_figures_without_failing() -> None:
    """A previous report's failing item with a device that is not a string, and figures of another shape:
    the item is compared by its words alone, and no device is said to be measured for the first time (a
    report whose figures cannot be read cannot say which devices it measured)."""
    from envcheck.fleet.since import changes

    slow = {"report": "fleet", "id": "slow.gpu", "status": "fail", "summary": "slow GPU 1", "device_key": "GPU-1"}
    current = {
        "nodes": [{"hostname": "a", "failing": [slow]}],
        "figures": {"devices": ["GPU-1"], "hosts": ["a"], "values": {"matmul.bf16": [1.0]}},
    }
    edited = {"nodes": [{"hostname": "a", "failing": [{**slow, "device_key": [1]}]}], "figures": {"devices": "x"}}
    found = changes(edited, current, 0.1)
    assert found["new"] == [] and found["first_measured"] == [] and found["resolved"] == []
    for figures in ({"devices": "x"}, {"devices": [], "values": {"matmul.bf16": "x"}}):
        fresh = {"nodes": [{"hostname": "a", "failing": []}], "figures": figures}
        found = changes(fresh, current, 0.1)
        assert [g["id"] for g in found["new"]] == ["slow.gpu"] and found["first_measured"] == [], figures
        assert found["previous"]["figures_kept"] is False
    # a previous run of no bench keeps figures, none: the slow device is at its first measure
    fresh = {"nodes": [{"hostname": "a", "failing": []}], "figures": {"devices": [], "hosts": [], "values": {}}}
    found = changes(fresh, current, 0.1)
    assert [g["id"] for g in found["first_measured"]] == ["slow.gpu"] and found["new"] == []
    assert found["previous"]["figures_kept"] is True and found["previous"]["figures_known"] is False
