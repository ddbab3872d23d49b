"""The bounded reader behind lab specs and bench baselines: only regular files, a size cap, a time limit.

Each scenario is a thing a path can name that would hang, flood or crash a naive ``read_text``.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from envcheck.core import files
from envcheck.core.files import FileRefused


def test_a_regular_file_is_read_whole(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_bytes(b"[gpu]\ncount = 8\n")
    assert files.read_regular(path, 1024) == b"[gpu]\ncount = 8\n"


def test_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "lab.toml"
    os.mkfifo(fifo)
    refused: list[BaseException] = []

    def read() -> None:
        try:
            files.read_regular(fifo, 1024)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            refused.append(exc)

    # In a thread: a reader that waited for a writer would wait forever, and the test would hang with it.
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)  # at once, not after a writer came (never): a bound a loaded host keeps
    assert not reader.is_alive(), "the FIFO's reader waits for a writer"
    (exc,) = refused
    assert isinstance(exc, FileRefused)
    assert str(exc).startswith("is a FIFO or pipe (save what it carries to a file first), not a")


@pytest.mark.parametrize(
    ("scenario", "words"),
    [("directory", "is a directory, not a regular file"), ("dev_zero", "is a character device (like /dev/zero)")],
)
def test_what_is_not_a_regular_file_is_refused(tmp_path, scenario, words):
    path = tmp_path if scenario == "directory" else "/dev/zero"
    with pytest.raises(FileRefused) as refused:
        files.read_regular(path, 1024)
    assert str(refused.value).startswith(words)


def test_missing_file_says_so_and_is_marked_missing(tmp_path):
    with pytest.raises(FileRefused, match="^does not exist$") as refused:
        files.read_regular(tmp_path / "nope.toml", 1024)
    assert refused.value.missing


def test_a_sparse_10_gib_file_is_refused_by_its_size_without_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "huge.toml"
    with open(path, "wb") as f:
        f.truncate(10 * 1024**3)

    def read(*_: object) -> None:
        raise AssertionError("the file was read")

    monkeypatch.setattr(files, "chunks", read)
    with pytest.raises(FileRefused, match="^is bigger than 1 MiB$"):
        files.read_regular(path, 1024 * 1024)


def test_the_cap_is_exact(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_bytes(b"x" * 1024)
    assert len(files.read_regular(path, 1024)) == 1024
    path.write_bytes(b"x" * 1025)
    with pytest.raises(FileRefused):
        files.read_regular(path, 1024)


def test_a_read_that_hangs_is_abandoned_after_the_time_limit(tmp_path, monkeypatch):
    """A file on a hung NFS mount blocks read() in the kernel; here the read waits on an event."""
    release = threading.Event()

    def hung(fd, first=files.CHUNK):
        release.wait(30)
        yield b""

    monkeypatch.setattr(files, "chunks", hung)
    path = tmp_path / "lab.toml"
    path.write_bytes(b"[gpu]\n")
    started = time.monotonic()
    try:
        with pytest.raises(FileRefused, match=r"^could not be read within 0.2 s \(a hung network filesystem\?\)$"):
            files.within(0.2, lambda: files.read_regular(path, 1024))
        assert time.monotonic() - started < 10  # not the 30 s the read hangs for, on a loaded host too
    finally:
        release.set()


def test_within_hands_back_the_result_and_the_error():
    assert files.within(5, lambda: 42) == 42
    with pytest.raises(KeyError):
        files.within(5, lambda: {}["x"])


def test_bytes_that_are_not_utf8_name_their_line():
    with pytest.raises(FileRefused, match=r"^is not UTF-8 text \(line 3\)$"):
        files.decode(b"[gpu]\ncount = 8\nname = '\xff'\n")
    assert files.decode("\ufeff[gpu]\n".encode()) == "[gpu]\n"  # a Windows editor's byte-order mark


def test_deep_line_finds_where_nesting_runs_away_and_ignores_brackets_in_strings():
    text = 'name = "[[[["\n# [[[[ a comment\nx = ' + "[" * 150 + "]" * 150 + "\n"
    assert files.deep_line(text) == 3
    assert files.deep_line('a = "' + "[" * 500 + '"\n') is None


def test_long_number_line():
    assert files.long_number_line("a = 1\nb = " + "9" * 5000 + "\n") == 2
    assert files.long_number_line("a = " + "9" * 4299) is None


def test_shown_keeps_a_value_to_one_short_line():
    assert files.shown(True) == "true"
    assert files.shown(float("nan")) == "nan"
    assert files.shown("a\nb") == "'a\\nb'"
    assert len(files.shown("x" * 1_000_000)) < 80
    nested: list = []
    for _ in range(500):
        nested = [nested]
    assert files.shown(nested) == "[[[[...]]]]"
    assert files.path_shown("lab\n.toml") == "'lab\\n.toml'"
