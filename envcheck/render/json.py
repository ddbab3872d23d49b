"""``--format json``: the report as exactly one strict JSON object (RFC 8259: no NaN or Infinity, which
``allow_nan=False`` enforces; the report builders already turned non-finite numbers into null), ASCII
only so that any output encoding (``LC_ALL=C``, ``PYTHONIOENCODING=ascii``) carries it unchanged. It
is the same for every kind of report: the document is the report."""

from __future__ import annotations

import codecs
import json
import re
from typing import TYPE_CHECKING, Any

from envcheck.render import RenderOptions, output_format, renders

if TYPE_CHECKING:
    from rich.console import Console

FORMAT = output_format("json", "one object", suffixes=(".json",))


def dumps(document: Any) -> str:
    """The document as indented JSON, ASCII only (:func:`dump_bytes`, as text)."""
    return dump_bytes(document).decode("ascii")


def dump_bytes(document: Any) -> bytes:
    """The document as indented JSON, ASCII only. Written by orjson (a fleet's report of 10 000 nodes is
    tens of MB: the standard library's encoder, which is pure Python once asked to indent, took seconds),
    then any character beyond ASCII escaped as the standard library would (``\\u00e9``, a surrogate pair
    beyond U+FFFF): JSON text holds such characters only inside strings. What orjson refuses (an integer
    beyond 64 bits, a key that is not a string, a lone surrogate) goes to the standard library's encoder.
    A NaN or infinity, which the report builders already turned into null, is written as null either way
    (orjson's rule; the standard encoder is told to refuse it, so none slips through as ``NaN``)."""
    import orjson  # here, not at the top: every command's --help loads this module

    try:
        # Dataclasses and datetimes are passed through (to the fallback, which refuses them, as it always
        # did): a report holds JSON values only, and one that does not must not be written half-redacted.
        option = orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
        data = orjson.dumps(document, option=option)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(document, indent=2, allow_nan=False, ensure_ascii=True).encode("ascii")
    return data if data.isascii() else _NON_ASCII.sub(_escape, data.decode()).encode("ascii")


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _escape(match: re.Match[str]) -> str:
    return json.dumps(match[0])[1:-1]


#: Encodings in which ASCII text is its own bytes: a document may go to such a stream's bytes unchanged.
_ASCII_SAFE = {"utf-8", "ascii", "iso8859-1", "cp1252"}


@renders("json")
def render_json(document: dict[str, Any], console: Console, options: RenderOptions) -> None:
    data = dump_bytes(document)
    out = console.file
    binary = getattr(out, "buffer", None)
    if binary is not None and _ascii_safe(getattr(out, "encoding", None)):
        # Straight to the stream's bytes: a fleet's document is tens of MB, which as text was decoded
        # here and encoded again by the stream, and held three times over at once.
        out.flush()
        binary.write(data)
        binary.write(b"\n")
        return
    out.write(data.decode("ascii"))  # not + "\n": tens of MB to copy
    out.write("\n")


def _ascii_safe(encoding: object) -> bool:
    if not isinstance(encoding, str):
        return False
    try:
        return codecs.lookup(encoding).name in _ASCII_SAFE
    except LookupError:
        return False
