"""The one text sanitiser (envcheck.render.safe.inert) and the Markdown helpers built on it, searched with
Hypothesis: for any text, nothing a terminal would obey comes out, and text with nothing to obey passes
unchanged."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from envcheck.core.model import displayable, to_jsonable
from envcheck.render.common import cell, code, escape
from envcheck.render.safe import inert

#: What no output may carry: C0 and C1 controls, DEL, bidirectional controls, line and paragraph
#: separators, lone surrogates (the newline only where lines are kept).
#: Characters that show as nothing, shown as escapes too: Unicode's default-ignorable code points
#: (DerivedCoreProperties.txt) less the bidirectional controls above.
INVISIBLE_RANGES = [
    (0xAD, 0xAD), (0x34F, 0x34F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200D),
    (0x2060, 0x2065), (0x206A, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
]  # fmt: skip
INVISIBLE = "".join(chr(c) for first, last in INVISIBLE_RANGES for c in range(first, last + 1))
OBEYED = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff"
    + "".join(f"{chr(first)}-{chr(last)}" for first, last in INVISIBLE_RANGES)
    + "]"
)
OBEYED_IN_LINES = re.compile(OBEYED.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))

#: Text of every kind, weighted toward what attacks a terminal: escape sequences, C1 controls, surrogates.
PIECES = st.one_of(
    st.characters(codec=None),
    st.sampled_from(
        ["\x1b", "\x9b", "\x07", "\r", "\n", "\b", "\x00", "\x7f", "\u202e", "\udcff", "\ud800"]
        + ["\u200b", "\ufe0f", "\U000e0041"]
    ),
    st.sampled_from(
        [
            "[2J",
            "]52;c;",
            "\x1b[31m",
            "<script>",
            "|",
            "`",
            "\\",
            "&",
            "<redacted>",
            "<img onerror=x>",
            "[click](https://x.example/p)",
            "![t](https://x.example/t.png)",
        ]
    ),
)
HOSTILE = st.lists(PIECES, max_size=40).map("".join)
#: Printable text: no character a terminal or a viewer obeys (letters, marks, symbols, spaces in any script).
PRINTABLE = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
        blacklist_characters="\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069" + INVISIBLE,
    ),
    max_size=80,
)
FAST = settings(max_examples=300, deadline=None)
MARKDOWN = MarkdownIt("commonmark").enable("table")


@FAST
@given(HOSTILE)
def test_nothing_obeyed_comes_out(text: str) -> None:
    assert not OBEYED.search(inert(text))
    assert not OBEYED_IN_LINES.search(inert(text, lines=True))
    assert not OBEYED.search(escape(text))
    assert inert(text, lines=True).count("\n") == text.count("\n")
    inert(text).encode("utf-8")  # every output is writable


@FAST
@given(PRINTABLE)
def test_printable_text_passes_unchanged(text: str) -> None:
    assert inert(text) == text
    assert inert(text, lines=True) == text
    assert displayable(text) == text


def test_two_names_that_print_alike_are_told_apart() -> None:
    """A host or process name with a character that shows as nothing reads as the name it poses as; each
    such character is shown, by its code, where it stands."""
    assert inert("node\u200b01") == "node\\u200b01"
    assert inert("node01\ufeff") == "node01\\ufeff"
    assert inert("py\U000e0041thon") == "py\\U000e0041thon"
    assert escape("gpu\u2060burn") == "gpu\\u2060burn"
    assert inert("node-00001\ufe0f") == "node-00001\\ufe0f" and inert("a\u00adb") == "a\\u00adb"
    assert inert("naïve 東京 ümlaut") == "naïve 東京 ümlaut"


@FAST
@given(HOSTILE)
def test_each_control_is_shown_where_it_was(text: str) -> None:
    """Nothing is dropped silently: what a control was is in the output, in order."""
    shown = inert(text)
    for char in text:
        if unicodedata.category(char) == "Cc":
            name = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")
            assert name in shown
    assert shown.count("\ufffd") == text.count("\ufffd") + sum(0xD800 <= ord(c) <= 0xDFFF for c in text)


@FAST
@given(st.lists(HOSTILE, min_size=1, max_size=4))
def test_a_markdown_row_keeps_its_cells_and_runs_no_html(values: list[str]) -> None:
    row = "| " + " | ".join([cell(v) for v in values] + [code(v) for v in values]) + " |"
    assert "\n" not in row and not OBEYED.search(row)
    head = "| " + " | ".join("h" * (len(values) * 2)) + " |\n|" + "---|" * (len(values) * 2) + "\n"
    page = MARKDOWN.render(head + row + "\n")
    assert page.count("<td") == len(values) * 2, page
    # Only the table's own tags: no link, no image, and the redactor's mark shown, not taken for a tag.
    assert not re.search(r"<(?!/?(table|thead|tbody|tr|th|td|code|br)\b)[a-zA-Z!?/]", page), page
    for v in values:
        if "<redacted>" in v:
            assert "&lt;redacted&gt;" in page


@FAST
@given(HOSTILE.filter(bool))
def test_code_spans_hold_their_text(text: str) -> None:
    """Whatever backticks a value holds, the span is one span with the value (shown) inside."""
    page = MARKDOWN.renderInline(code(text, in_table=False))
    assert page.startswith("<code>") and page.endswith("</code>") and page.count("<code>") == 1, page


@FAST
@given(
    st.recursive(
        st.one_of(HOSTILE, st.integers(), st.none()),
        lambda inner: st.lists(inner) | st.dictionaries(HOSTILE, inner),
        max_leaves=10,
    )
)
def test_every_report_value_is_writable(value: object) -> None:
    import json

    json.dumps(to_jsonable(value), ensure_ascii=False).encode("utf-8")


def test_envchecks_own_marks_reach_a_markdown_page_as_written() -> None:
    """A Markdown page is made inert once more as it is written: envcheck's own marks hold nothing that
    is shown by its code (a warning sign with the emoji variation selector came out as ``⚠\\ufe0f``)."""
    import io

    from rich.console import Console

    from envcheck.render.common import ICONS, icon, write_lines

    page = io.StringIO()
    write_lines(Console(file=page), [icon(status) for status in ICONS])
    assert page.getvalue().splitlines() == list(ICONS.values())
