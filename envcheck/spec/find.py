"""Which lab spec applies, and reading it: ``--spec``, ``ENVCHECK_SPEC``, ``envcheck.toml`` or a
``[tool.envcheck]`` table in ``pyproject.toml`` in the working directory, the system spec.

A spec is read like every probe reads: bounded in time (a hung network mount) and in size, and only
from a regular file (a FIFO would block the doctor forever, /dev/zero never ends): see
:mod:`envcheck.core.files`. Parsing what was read is :mod:`envcheck.spec.parse`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from envcheck.core import files
from envcheck.core.files import path_shown
from envcheck.spec.parse import LabSpec, NoSpecTable, SpecError, parse_spec_text

#: A spec names a few dozen requirements in a few KiB; 1 MiB is hundreds of times that, and tomllib
#: parses the worst 1 MiB (one long array) in about 2 s, so the cap also bounds the time to parse.
SPEC_MAX_BYTES = 1024 * 1024


def _text(data: bytes, path: str | os.PathLike[str]) -> str:
    try:
        return files.decode(data)
    except files.FileRefused as exc:
        raise SpecError(f"{path_shown(path)}: {exc}") from None


class _Missing(SpecError):
    """The spec file is not there: an error when named, nothing when the doctor merely looks."""


def _read(path: str | os.PathLike[str]) -> bytes:
    """The spec's bytes, read under the time and size bounds; every refusal is a :class:`SpecError`."""
    try:
        return files.within(files.READ_TIMEOUT_S, lambda: files.read_regular(path, SPEC_MAX_BYTES))
    except files.FileRefused as exc:
        raise (_Missing if exc.missing else SpecError)(f"{path_shown(path)}: {exc}") from None


def load_spec(path: str | os.PathLike[str]) -> LabSpec:
    """The spec in the file at ``path``; in a ``pyproject.toml``, the ``[tool.envcheck]`` table."""
    text = _text(_read(path), path)
    table = "tool.envcheck" if Path(path).name == "pyproject.toml" else None
    return parse_spec_text(text, os.fspath(path), table=table)


#: A spec installed for the whole machine or image (the Dockerfile copies docker/lab.toml here).
SYSTEM_SPEC = Path("/etc/envcheck/lab.toml")


def find_spec(
    explicit: str | None,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] = ".",
    system: Path = SYSTEM_SPEC,
) -> LabSpec | None:
    """The spec to enforce: ``--spec``, else ``ENVCHECK_SPEC``, else ``envcheck.toml`` or a
    ``[tool.envcheck]`` table in ``pyproject.toml`` in the working directory, else
    ``/etc/envcheck/lab.toml``, else none.

    A file named for envcheck (``envcheck.toml``, the system spec) that exists but is no usable spec
    (a directory, a FIFO, malformed) is an error; a ``pyproject.toml`` is someone else's file unless
    it holds the table, and is ignored otherwise, whatever it is.
    """
    if explicit:
        return load_spec(explicit)
    if env.get("ENVCHECK_SPEC"):
        return load_spec(env["ENVCHECK_SPEC"])
    here = Path(cwd)
    return _spec_if_there(here / "envcheck.toml") or _pyproject_spec(here / "pyproject.toml") or _spec_if_there(system)


def _spec_if_there(path: Path) -> LabSpec | None:
    try:
        data = _read(path)
    except _Missing:
        return None
    return parse_spec_text(_text(data, path), str(path))


# -- pyproject.toml: ours only if it holds [tool.envcheck] -----------------------------------------
_HEADER = re.compile(rb"[ \t]*\[\[?([^\]\n]*)\]")
_KEY_NOISE = re.compile(rb"[ \t\"']")
_OURS = b"tool.envcheck"
#: The start of a line is where its key is: a longer line split across two reads is judged by that.
_LINE_HEAD = 4096


def _ours(key: bytes) -> bool:
    return key == _OURS or key.startswith(_OURS + b".")


def _table_at(data: bytes, start: int, end: int, table: bytes) -> bytes:
    """The table in force at ``end``: that of the last header line in ``data[start:end]``, else ``table``.
    Searched backwards with ``bytes.rfind`` (a regular expression over every line of a 50 MB file takes
    seconds)."""
    at = data.rfind(b"[", start, end)
    while at >= 0:
        begin = max(start, data.rfind(b"\n", start, at) + 1)
        header = None if data[begin:at].strip(b" \t") else _HEADER.match(data, begin)
        if header:
            return _KEY_NOISE.sub(b"", header.group(1))
        at = data.rfind(b"[", start, begin)
    return table


def _claims(lines: bytes, table: bytes) -> tuple[bool, bytes]:
    """Whether these whole lines put anything under ``tool.envcheck``, and the table in force after them.

    Recognised: ``[tool.envcheck]``, ``[tool.envcheck.gpu]``, ``[[tool.envcheck...]]``, dotted keys
    (``tool.envcheck.gpu.count = 2`` at the top, ``envcheck.gpu.count = 2`` or ``envcheck = {...}``
    under ``[tool]``), an inline ``tool = { envcheck = ... }``, with quoted parts and spaces. A key
    spelled with escapes (``"\\u0065nvcheck"``) is not recognised. A line inside a multi-line string
    can be taken for a claim: parsing the file then settles it. Only lines that say ``envcheck`` are
    judged, so a file that never says it costs little more than reading it.
    """
    done, current = 0, table
    at = lines.find(b"envcheck")
    while at >= 0:
        begin = lines.rfind(b"\n", 0, at) + 1
        end = lines.find(b"\n", at)
        end = len(lines) if end < 0 else end
        current, done = _table_at(lines, done, begin, current), begin
        header = _HEADER.match(lines, begin, end)
        if header:
            key, value = _KEY_NOISE.sub(b"", header.group(1)), b""
        else:
            left, equals, value = lines[begin:end].partition(b"=")
            key = _KEY_NOISE.sub(b"", left) if equals else b""
            if key and current:
                key = current + b"." + key
        if _ours(key) or (key == b"tool" and b"envcheck" in value):
            return True, current
        at = lines.find(b"envcheck", end)
    return False, _table_at(lines, done, len(lines), current)


def _scan_pyproject(fd: int, claimed: list[bool]) -> None:
    """Read the whole file a chunk at a time (it may be huge and is probably not ours) until a line
    claims ``tool.envcheck``; sets ``claimed[0]``."""
    table, carry, skipping = b"", b"", False
    for chunk in files.chunks(fd):
        data = carry + chunk
        if skipping:  # the rest of a line whose head was judged already
            newline = data.find(b"\n")
            if newline < 0:
                carry = b""
                continue
            data, skipping = data[newline + 1 :], False
        cut = data.rfind(b"\n") + 1
        whole, carry = data[:cut], data[cut:]
        if len(carry) > _LINE_HEAD:
            whole, carry, skipping = whole + carry[:_LINE_HEAD] + b"\n", b"", True
        found, table = _claims(whole, table)
        if found:
            claimed[0] = True
            return
    if carry:
        claimed[0] = _claims(carry, table)[0]


def _pyproject_spec(path: Path) -> LabSpec | None:
    """The ``[tool.envcheck]`` table of ``path``, or None when the file does not hold one.

    The file is scanned as bytes for a line that puts something under ``tool.envcheck`` before it is
    read as a spec, so that a pyproject without one has no effect at all, even when it is huge, not
    UTF-8, not TOML, a FIFO or on a hung mount. Only a pyproject that claims the table must be a spec.
    """
    claimed = [False]

    def scan() -> None:
        fd = files.open_regular(path)
        try:
            _scan_pyproject(fd, claimed)
        finally:
            os.close(fd)

    try:
        files.within(files.READ_TIMEOUT_S, scan)
    except files.FileRefused as exc:
        if not claimed[0]:
            return None  # not known to be ours: someone else's file, unreadable as it may be
        raise SpecError(f"{path_shown(path)}: {exc}") from None
    if not claimed[0]:
        return None
    text = _text(_read(path), path)
    try:
        return parse_spec_text(text, str(path), table="tool.envcheck")
    except NoSpecTable:
        return None  # the line that looked like one was inside a string
