"""The JSON renderer writes a document in pieces (envcheck.render.json.dump_pieces) so that a fleet's tens
of MB are never held whole: the pieces, joined, must be exactly the document as one call to the encoder
writes it, for any document. Searched with Hypothesis, with long lists and nested dicts (what is cut
into pieces), characters beyond ASCII and what orjson refuses (a lone surrogate, an integer past 64
bits), which the standard encoder writes instead."""

from __future__ import annotations

import json
import re

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from envcheck.render import json as json_render


def _whole(document: object) -> bytes:
    """The document as one call writes it: orjson indented, beyond-ASCII escaped; else the standard encoder."""
    try:
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(document, indent=2, allow_nan=False, ensure_ascii=True).encode("ascii")
    return re.sub(r"[^\x00-\x7f]", lambda m: json.dumps(m[0])[1:-1], data.decode()).encode("ascii")


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8"), max_size=8),
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
        assert json_render.dump_bytes(document) == _whole(document)
    finally:
        json_render.SLICE = original


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
    assert data == _whole(document)
    assert data.isascii()
    assert json.loads(data) == document
