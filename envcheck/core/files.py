"""Reading a file a user points envcheck at (a lab spec, a bench baseline), bounded in time and in size.

A path can name anything. Opening a FIFO for reading blocks until a writer comes, which may be never;
a directory opens fine on Linux and then fails to read; ``/dev/zero`` never ends; a file on a hung
NFS or FUSE mount blocks ``open`` or ``read`` in the kernel; and a regular file can hold gigabytes.
So a file is opened with ``O_NONBLOCK`` (a FIFO opens at once), judged by ``fstat`` on the open
descriptor (no race with a rename), refused unless it is a regular file, read only up to a cap, and
the whole read runs in a daemon thread that the caller waits for at most a few seconds, as every probe
is waited for. Parsing stays outside the time limit: the size cap bounds its cost, and a slow parse on
a busy machine must not be reported as a hung filesystem.

Every refusal is a :class:`FileRefused` whose text is one line without the path: callers put the path
(and their own words, "lab spec" or "baseline") in front.
"""

from __future__ import annotations

import os
import re
import reprlib
import stat
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: How long reading one file may take. A local file of a few MiB reads in milliseconds; this is only
#: ever reached by a hung network filesystem (the doctor's disk probe allows 10 s for a ``statvfs``).
READ_TIMEOUT_S = 5.0
CHUNK = 1024 * 1024

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO or pipe (save what it carries to a file first)"),
    (stat.S_ISCHR, "a character device (like /dev/zero)"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlong = 40
_repr.maxlevel = 3


def shown(value: object) -> str:
    """A value from a file as an error quotes it: its repr cut short (a file can hold a 1 MiB string or
    300 nested arrays), ``true``/``false`` as TOML and JSON write them; repr escapes newlines, so the
    message stays one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _repr.repr(value)


def path_shown(path: str | os.PathLike[str]) -> str:
    """A path as a message shows it: as given, or escaped if it holds a newline or other control character."""
    text = os.fspath(path)
    return text if text.isprintable() else ascii(text)


class FileRefused(ValueError):
    """Why a file was not read, in one line without its path. ``missing`` tells "not there" apart, for
    callers that look in several places and may find nothing."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing


def open_regular(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of ``path`` if it is a regular file; :class:`FileRefused` otherwise."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileRefused("does not exist", missing=True) from None
    except OSError as exc:
        raise FileRefused(f"cannot be opened: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise FileRefused(f"cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((words for test, words in _KINDS if test(mode)), "not a regular file")
        raise FileRefused(f"is {kind}, not a regular file")
    return fd


def chunks(fd: int, first: int = CHUNK) -> Iterator[bytes]:
    """The file's bytes, a chunk at a time, to its end (a regular file always has one); ``first``: the
    size of the first read (a file's size and one more byte reads a small file in one chunk of its own
    size, which is kept as it is)."""
    size = first
    while True:
        try:
            chunk = os.read(fd, size)
        except OSError as exc:
            raise FileRefused(f"cannot be read: {exc.strerror or exc}") from None
        if not chunk:
            return
        yield chunk
        size = CHUNK


def _too_big(max_bytes: int) -> FileRefused:
    return FileRefused(f"is bigger than {max_bytes // 1024**2} MiB")


def read_regular(
    path: str | os.PathLike[str], max_bytes: int, check: Callable[[bytes | bytearray], None] | None = None
) -> bytes:
    """The whole file, refused if it is not a regular file or holds more than ``max_bytes``.

    The size is checked as it is read, not only by ``fstat``: files in /proc report a size of 0.
    ``check`` sees what has been read after each chunk and may refuse it (raise :class:`FileRefused`):
    a reader that bounds more than the size (the fleet bounds how many values a document holds) stops
    reading a file as soon as it is past its bound, instead of holding all of it first.
    """
    fd = open_regular(path)
    try:
        return read_open(fd, max_bytes, check)
    finally:
        os.close(fd)


def read_open(fd: int, max_bytes: int, check: Callable[[bytes | bytearray], None] | None = None) -> bytes:
    """:func:`read_regular` of a descriptor already opened (and left open): a caller that opened the file
    its own way, and checked what it is."""
    size = os.fstat(fd).st_size
    if size > max_bytes:
        raise _too_big(max_bytes)
    data: bytes | bytearray = b""
    for chunk in chunks(fd, min(size + 1, CHUNK) if size else CHUNK):
        # A file that fits in one chunk (every report) is returned as read, never copied: a copy, and
        # a 1 MiB buffer per file, made the fleet's reads half as slow again (benchmarks/RESULTS-fleet.md).
        if not data:
            data = chunk
        else:
            if not isinstance(data, bytearray):
                data = bytearray(data)
            data += chunk
        if len(data) > max_bytes:
            raise _too_big(max_bytes)
        if check is not None:
            check(data)
    return bytes(data) if isinstance(data, bytearray) else data


def within(timeout_s: float, work: Callable[[], T]) -> T:
    """``work()``, or :class:`FileRefused` if it has not returned after ``timeout_s``.

    It runs in a daemon thread, so a read stuck in the kernel is abandoned rather than waited for and
    cannot keep the process from exiting. Exceptions from ``work`` are raised here.
    """
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name="envcheck-read", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        raise FileRefused(f"could not be read within {timeout_s:g} s (a hung network filesystem?)")
    done, value = outcome[0]
    if not done:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def decode(data: bytes) -> str:
    """UTF-8 text (a leading byte-order mark, as some Windows editors write, is dropped); bytes that are
    not UTF-8 are :class:`FileRefused` naming the line, as TOML and JSON both require UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileRefused(f"is not UTF-8 text (line {line})") from None


#: Strings and comments (whose brackets do not nest) or one bracket; good enough for TOML and JSON.
_TOKENS = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]')


def deep_line(text: str, limit: int = 100) -> int | None:
    """The line where brackets first nest deeper than ``limit``: where to look when a parser gave up
    with RecursionError (a real spec or baseline nests a few levels). None if no such line is found."""
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return text.count("\n", 0, match.start()) + 1
        elif token in ("]", "}"):
            depth = max(0, depth - 1)
    return None


def long_number_line(text: str, digits: int = 4300) -> int | None:
    """The line of the first number too long for Python to convert (its int-str limit is 4300 digits)."""
    match = re.search(rf"[0-9_]{{{digits},}}", text)
    return text.count("\n", 0, match.start()) + 1 if match else None
