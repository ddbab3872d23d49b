"""``-o PATH`` (and ``bench --save``) never destroys what is not a report, through the installed command:
a regular file is replaced atomically, a symlink's target is written and the link kept, a FIFO or a
character device is written through and stays what it is, and a directory, a socket or a link to nothing
is refused with one line and exit 74, left as it was."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.test_terminal import run

DOCTOR = ("doctor", "--quick")
#: README, "Where the report goes": a FIFO that nobody reads within 5 s is given up.
FIFO_READER_WAIT_S = 5.0
BENCH = ("bench", "--device", "cpu", "--quick", "--only", "memory.d2d")


def refused(proc: subprocess.CompletedProcess[str], path: Path, words: str) -> None:
    """Exit 74, one line of envcheck's on stderr naming the path and why (after any progress lines the
    command prints there), no traceback."""
    assert proc.returncode == 74, (proc.returncode, proc.stderr)
    said = [line for line in proc.stderr.splitlines() if line.startswith("envcheck")]
    assert len(said) == 1 and proc.stderr.endswith(said[0] + "\n"), proc.stderr
    assert said[0].startswith("envcheck: cannot write ") and f" {path}: " in said[0] and words in said[0], said[0]


@pytest.fixture
def char_device(tmp_path: Path) -> Path:
    """A character device to write through: a private twin of /dev/null (major 1, minor 3) where this user
    may make one, else /dev/null itself. (The twin keeps a run of the old code, which renamed a file over
    the path, from replacing the system's /dev/null when the tests run as root.)"""
    twin = tmp_path / "null"
    try:
        os.mknod(twin, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError:
        return Path("/dev/null")
    return twin


@pytest.fixture
def fifo_reader(tmp_path: Path) -> Iterator[Callable[[str], tuple[Path, Callable[[], str]]]]:
    """A FIFO named ``name`` with a reader (``cat``) already waiting on it; returns the FIFO and a function
    giving what the reader read (bounded: a FIFO nobody wrote is unblocked by opening it once)."""
    readers: list[subprocess.Popen[str]] = []

    def make(name: str) -> tuple[Path, Callable[[], str]]:
        fifo = tmp_path / name
        os.mkfifo(fifo)
        reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
        readers.append(reader)

        def read() -> str:
            try:
                return reader.communicate(timeout=10)[0]
            except subprocess.TimeoutExpired:
                reader.kill()
                return reader.communicate()[0]

        return fifo, read

    yield make
    for reader in readers:
        if reader.poll() is None:
            reader.kill()
            reader.wait()


def test_a_fifo_with_a_reader_gets_the_report_and_stays_a_fifo(fifo_reader):
    fifo, read = fifo_reader("report.json")
    proc = run(*DOCTOR, "-o", str(fifo))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(read())["schema"] == "envcheck.doctor/1"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_bench_save_into_a_fifo_with_a_reader_writes_the_json_through_it(fifo_reader):
    fifo, read = fifo_reader("baseline")
    proc = run(*BENCH, "--save", str(fifo))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(read())["schema"] == "envcheck.bench/1"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_fifo_nobody_reads_is_given_up_in_bounded_time_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "nobody.prom"
    os.mkfifo(fifo)
    started = time.monotonic()
    proc = run("healthcheck", "--format", "prometheus", "-o", str(fifo))  # the line on stdout, the file aside
    took = time.monotonic() - started
    assert proc.returncode == 0 and proc.stdout.startswith("healthy: "), proc.stderr
    assert proc.stderr == f"envcheck: cannot write {fifo}: is a FIFO and nothing read it within 5 s\n"
    assert FIFO_READER_WAIT_S <= took < FIFO_READER_WAIT_S + 30
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    proc = run(*DOCTOR, "-o", str(fifo))
    refused(proc, fifo, "nothing read it")


@pytest.mark.parametrize("fmt", [(), ("--format", "json")], ids=["text", "json"])
def test_a_character_device_is_written_through_and_stays_a_device(char_device, fmt):
    proc = run(*DOCTOR, *fmt, "-o", str(char_device))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(char_device.lstat().st_mode)
    assert os.major(char_device.lstat().st_rdev) == 1 and os.minor(char_device.lstat().st_rdev) == 3


def test_a_symlink_to_a_file_writes_the_file_and_stays_a_link(tmp_path):
    target = tmp_path / "reports" / "doctor.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    proc = run(*DOCTOR, "-o", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["schema"] == "envcheck.doctor/1"
    assert sorted(p.name for p in target.parent.iterdir()) == ["doctor.json"]  # no temporary file left


def test_a_symlink_to_a_fifo_writes_through_the_fifo(fifo_reader, tmp_path):
    fifo, read = fifo_reader("pipe")
    link = tmp_path / "report.json"
    link.symlink_to(fifo)
    proc = run(*DOCTOR, "-o", str(link))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(read())["schema"] == "envcheck.doctor/1"
    assert link.is_symlink() and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_symlink_to_nothing_is_refused_and_nothing_is_created(tmp_path):
    missing = tmp_path / "elsewhere" / "doctor.json"
    link = tmp_path / "report.json"
    link.symlink_to(missing)
    proc = run(*DOCTOR, "-o", str(link))
    refused(proc, link, f"is a symbolic link to {missing}, which does not exist")
    assert link.is_symlink() and os.readlink(link) == str(missing)
    assert not missing.parent.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a link to another user needs root")
def test_another_users_link_in_a_shared_sticky_directory_is_not_followed(tmp_path):
    """As the kernel's fs.protected_symlinks does: a root envcheck told to write /tmp/report.json must not
    write wherever another user's planted link points."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    link = shared / "report.json"
    link.symlink_to(victim)
    os.lchown(link, 65534, 65534)
    proc = run(*DOCTOR, "-o", str(link))
    refused(proc, link, "is a symbolic link another user left in a shared directory: not followed")
    assert victim.read_text() == "root:x:0:0\n" and link.is_symlink()


def test_dev_stdout_into_a_pipe_is_written_through():
    """/dev/stdout is a link to /proc/self/fd/1, whose target (``pipe:[…]``) is no path: the kernel follows
    it, and the report goes down the pipe."""
    proc = run(*DOCTOR, "--format", "json", "-o", "/dev/stdout")
    assert proc.returncode == 0, proc.stderr
    assert '"schema": "envcheck.doctor/1"' in proc.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a link to another user needs root")
def test_another_users_link_further_down_a_chain_is_not_followed(tmp_path):
    """Every link on the way is checked, not only the first: root's own link to another user's planted link
    in a shared directory is refused as that link is."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    planted = shared / "planted"
    planted.symlink_to(victim)
    os.lchown(planted, 65534, 65534)
    mine = shared / "report.json"
    mine.symlink_to(planted)
    proc = run(*DOCTOR, "-o", str(mine))
    refused(proc, mine, "is a symbolic link another user left in a shared directory: not followed")
    assert victim.read_text() == "root:x:0:0\n"


def unix_socket(path: Path) -> socket.socket:
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(path))
    listening.listen()
    return listening


def node_report(tmp_path: Path) -> Path:
    report = tmp_path / "node1.json"
    assert run(*DOCTOR, "-o", str(report)).returncode == 0
    return report


@pytest.mark.parametrize(
    ("command", "option"),
    [(DOCTOR, "-o"), (("fleet",), "-o"), (BENCH, "--save")],
    ids=["doctor -o", "fleet -o", "bench --save"],
)
@pytest.mark.parametrize("what", ["directory", "socket"])
def test_a_directory_or_a_socket_is_refused_with_one_line_and_left_as_it_was(tmp_path, command, option, what):
    if command == ("fleet",):
        command = ("fleet", str(node_report(tmp_path)))
    path = tmp_path / "out.json"
    held = None
    if what == "directory":
        path.mkdir()
        (path / "kept").write_text("mine")
    else:
        held = unix_socket(path)
    try:
        proc = run(*command, option, str(path))
        refused(proc, path, f"is a {what}, not a file")
        assert proc.stdout  # the terminal still got its report
        if what == "directory":
            assert path.is_dir() and (path / "kept").read_text() == "mine"
        else:
            assert stat.S_ISSOCK(path.lstat().st_mode)
    finally:
        if held is not None:
            held.close()


def test_a_regular_file_is_still_replaced(tmp_path):
    report = tmp_path / "doctor.json"
    report.write_text("old")
    assert run(*DOCTOR, "-o", str(report)).returncode == 0
    assert json.loads(report.read_text())["schema"] == "envcheck.doctor/1"
    assert stat.S_ISREG(report.lstat().st_mode)


def test_a_path_with_a_newline_is_said_on_one_line(tmp_path):
    odd = tmp_path / "a\nb"
    odd.mkdir()
    proc = run(*DOCTOR, "-o", str(odd))
    assert proc.returncode == 74 and proc.stderr.count("\n") == 1, proc.stderr
    assert "\\n" in proc.stderr and "is a directory" in proc.stderr
