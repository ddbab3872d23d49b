"""``--format json``: the report as exactly one strict JSON object (RFC 8259: no NaN or Infinity, which
``allow_nan=False`` enforces; the report builders already turned non-finite numbers into null), ASCII
only so that any output encoding (``LC_ALL=C``, ``PYTHONIOENCODING=ascii``) carries it unchanged. It
is the same for every kind of report: the document is the report."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from envcheck.render import RenderOptions, output_format, renders

if TYPE_CHECKING:
    from rich.console import Console

FORMAT = output_format("json", "one object", suffixes=(".json",))


def dumps(document: Any) -> str:
    """The document as indented JSON, ASCII only (:func:`dump_bytes`, as text)."""
    return dump_bytes(document).decode("ascii")


def dump_bytes(document: Any) -> bytes:
    """The document as indented JSON, ASCII only: :func:`dump_pieces` joined."""
    return b"".join(dump_pieces(document))


#: Lists longer than this are written a slice at a time (:func:`dump_pieces`): a fleet's 10 000 nodes
#: in forty pieces of 0.7 MB rather than one of 30 MB.
SLICE = 256

#: How deep a document's dicts are opened to find such lists: the fleet's ``figures.values`` is two down.
OPENED_DEPTH = 2


def dump_pieces(document: Any) -> Iterator[bytes]:
    """The document as indented JSON, ASCII only, in pieces: joined, they are what one call of orjson
    writes for the whole. A fleet's document of 10 000 nodes is 45 MB of JSON: written whole it was held
    in memory beside the document, a quarter of the command's peak; in pieces, the largest is a slice of
    :data:`SLICE` items.

    Each piece is written by orjson (the standard library's encoder, which is pure Python once asked to
    indent, took seconds), then any character beyond ASCII escaped as the standard library would
    (``\\u00e9``, a surrogate pair beyond U+FFFF): JSON text holds such characters only inside strings.
    A piece orjson refuses (an integer beyond 64 bits, a key that is not a string, a lone surrogate) is
    written by the standard library's encoder instead: the same layout and values, though a few numbers
    and characters are spelled its way (``1e-07`` for ``1e-7``, DEL escaped), in that piece only. A NaN or
    infinity, which the report builders already turned into null, is null where orjson writes it and
    refused where the standard encoder does, so none slips through as ``NaN``."""
    yield from _pieces(document, 0)


def _pieces(value: Any, depth: int) -> Iterator[bytes]:
    # a dict with a key that is not a string goes whole to the encoders, whose rules (and errors) it meets
    if type(value) is dict and value and depth <= OPENED_DEPTH and all(type(key) is str for key in value):
        pad = b"\n" + b"  " * (depth + 1)
        first = True
        for key, item in value.items():
            yield (b"{" if first else b",") + pad + _dump(key, 0) + b": "
            first = False
            yield from _pieces(item, depth + 1)
        yield b"\n" + b"  " * depth + b"}"
    elif type(value) is list and len(value) > SLICE:
        pad = b"  " * depth
        yield b"["
        for start in range(0, len(value), SLICE):
            # "[\n  a,\n  b\n]" without its brackets, each item line indented to this depth
            body = _dump(value[start : start + SLICE], depth)[2 : -(2 + len(pad))]
            yield (b",\n" if start else b"\n") + body
        yield b"\n" + pad + b"]"
    else:
        yield _dump(value, depth)


def _dump(value: Any, depth: int) -> bytes:
    """``value`` as indented JSON, ASCII only, its lines after the first indented ``depth`` levels."""
    import orjson  # here, not at the top: every command's --help loads this module

    try:
        # Dataclasses and datetimes are passed through (to the fallback, which refuses them, as it always
        # did): a report holds JSON values only, and one that does not must not be written half-redacted.
        option = orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
        data = orjson.dumps(value, option=option)
        if not data.isascii():
            data = _NON_ASCII.sub(_escape, data.decode()).encode("ascii")
    except (TypeError, orjson.JSONEncodeError):
        data = json.dumps(value, indent=2, allow_nan=False, ensure_ascii=True).encode("ascii")
    return data.replace(b"\n", b"\n" + b"  " * depth) if depth else data


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _escape(match: re.Match[str]) -> str:
    return json.dumps(match[0])[1:-1]


#: Encodings in which ASCII text is its own bytes: a document may go to such a stream's bytes unchanged.
_ASCII_SAFE = {"utf-8", "ascii", "iso8859-1", "cp1252"}


#: How much of a document is made before any of it is written: every report but a large fleet's is
#: written whole or not at all (a value no encoder takes is a bug, and it must not leave half a
#: document in ``> report.json``); past this, a fleet's pieces go out as they are made.
HELD_BYTES = 8 << 20


@renders("json")
def render_json(document: dict[str, Any], console: Console, options: RenderOptions) -> None:
    out = console.file
    binary = getattr(out, "buffer", None)
    if binary is not None and _ascii_safe(getattr(out, "encoding", None)):
        # Straight to the stream's bytes: a fleet's document is tens of MB, which as text was decoded
        # here and encoded again by the stream.
        # (On a pipe, envcheck.cli.terminal.whole_writes makes each write all or an error.)
        out.flush()
        write: Any = binary.write
    else:
        write = lambda piece: out.write(piece.decode("ascii"))  # noqa: E731
    held: list[bytes] | None = []
    size = 0
    for piece in dump_pieces(document):
        if held is None:
            write(piece)
            continue
        held.append(piece)
        size += len(piece)
        if size > HELD_BYTES:
            for made in held:
                write(made)
            held = None
    for made in held or ():  # piece by piece: joined, they were a second copy of the report
        write(made)
    write(b"\n")


def _ascii_safe(encoding: object) -> bool:
    if not isinstance(encoding, str):
        return False
    try:
        return codecs.lookup(encoding).name in _ASCII_SAFE
    except LookupError:
        return False
