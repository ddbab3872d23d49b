"""The JSON renderer writes a document in pieces (envcheck.render.json.dump_pieces) so that a fleet's tens
of MB are never held whole: the pieces, joined, must be exactly the document as one call to the encoder
writes it, for any document. Searched with Hypothesis, with long lists and nested dicts (what is cut
into pieces), characters beyond ASCII and what orjson refuses (a lone surrogate, an integer past 64
bits), which the standard encoder writes instead."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envcheck.render import RenderOptions
from envcheck.render import json as json_render


def _whole(document: object) -> bytes | None:
    """The document as one call of orjson writes it, indented, beyond-ASCII escaped; None where orjson
    refuses it (the pieces it refuses are the standard encoder's, whose spelling of some numbers differs)."""
    try:
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    except (TypeError, orjson.JSONEncodeError):
        return None
    return re.sub(r"[^\x00-\x7f]", lambda m: json.dumps(m[0])[1:-1], data.decode()).encode("ascii")


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers().filter(lambda n: abs(n) >= 2**64),  # beyond orjson: the standard encoder's piece
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from(["\udcff", "a\ud800b", "\x7f"]),  # lone surrogates (beyond orjson) and DEL
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=12),
        st.dictionaries(st.text(max_size=6), inner, max_size=6),
    ),
    max_leaves=60,
)


@settings(max_examples=200, deadline=None)
@given(document=st.dictionaries(st.text(max_size=6), VALUES, max_size=6), slice_=st.integers(1, 4))
def test_the_pieces_joined_are_the_document_written_whole(document, slice_):
    # a slice of a few items, so that Hypothesis's short lists are cut as a fleet's 10 000 nodes are
    original = json_render.SLICE
    json_render.SLICE = slice_
    try:
        data = json_render.dump_bytes(document)
    finally:
        json_render.SLICE = original
    assert data.isascii()
    whole = _whole(document)
    if whole is not None:
        assert data == whole
    else:  # some piece is the standard encoder's: the same document, indented alike
        assert json.loads(data) == document
        indents = [len(line) - len(line.lstrip()) for line in data.splitlines()]
        standard = json.dumps(document, indent=2, ensure_ascii=True).splitlines()
        assert indents == [len(line) - len(line.lstrip()) for line in standard]


def test_a_fleet_sized_list_is_written_in_pieces_no_larger_than_a_slice():
    nodes = [{"hostname": f"node-{i:05d}", "status": "fail", "failing": [{"id": "gpu.ecc"}]} for i in range(2000)]
    document = {"schema": "envcheck.fleet/1", "nodes": nodes, "figures": {"values": {"m": [1.5] * 3000}}}
    pieces = list(json_render.dump_pieces(document))
    whole = _whole(document)
    assert b"".join(pieces) == whole
    largest = max(len(p) for p in pieces)
    assert largest < len(whole) / 5, (largest, len(whole))  # no piece is the document, nor its nodes whole
    assert len(pieces) > 2000 // json_render.SLICE


def test_what_orjson_refuses_is_written_by_the_standard_encoder_in_place():
    # a lone surrogate (orjson refuses it) in one slice of a long list, and an integer past 64 bits
    nodes = [{"name": "ok"}] * 600 + [{"name": "\udcff"}] + [{"big": 2**70}] + [{"name": "é"}] * 10
    document = {"nodes": nodes, "deep": {"a": {"b": [2**80]}}}
    data = json_render.dump_bytes(document)
    assert data.isascii()
    assert json.loads(data) == document
    # only the slice holding the surrogate and the list holding the wide integers leave orjson
    assert data.count(b'"ok"') == 600 and data.count(b"\\u00e9") == 10


class _Console:
    def __init__(self, file: io.TextIOBase) -> None:
        self.file = file


@pytest.mark.parametrize("binary", [True, False], ids=["bytes stream", "text stream"])
def test_a_report_is_written_whole_or_not_at_all(binary):
    """A value no encoder takes (a bug: a report holds JSON values only) after hundreds of list items
    leaves nothing on the stream, not half a document in ``> report.json``; a valid one comes whole."""
    stream: io.TextIOBase = io.TextIOWrapper(io.BytesIO(), encoding="utf-8") if binary else io.StringIO()
    bad = {"checks": [{"id": f"c{i}"} for i in range(600)] + [{"when": datetime.now(tz=timezone.utc)}]}
    with pytest.raises(TypeError):
        json_render.render_json(bad, _Console(stream), RenderOptions())
    stream.flush()
    written = stream.buffer.getvalue() if binary else stream.getvalue().encode()  # type: ignore[attr-defined]
    assert written == b""
    good = {"checks": [{"id": f"c{i}"} for i in range(600)]}
    json_render.render_json(good, _Console(stream), RenderOptions())
    stream.flush()
    written = stream.buffer.getvalue() if binary else stream.getvalue().encode()  # type: ignore[attr-defined]
    assert written == _whole(good) + b"\n"


def test_a_fleet_sized_document_is_written_as_it_is_made(monkeypatch):
    """Past HELD_BYTES the pieces go out as they are made: the stream sees many writes, none of them the
    whole document."""
    monkeypatch.setattr(json_render, "HELD_BYTES", 4096)
    writes: list[int] = []

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(len(text))
            return super().write(text)

    stream = Stream()
    document = {"nodes": [{"hostname": f"node-{i:05d}", "status": "ok"} for i in range(3000)]}
    json_render.render_json(document, _Console(stream), RenderOptions())
    assert stream.getvalue().encode() == _whole(document) + b"\n"
    assert len(writes) > 3000 // json_render.SLICE and max(writes) < len(stream.getvalue()) / 4
