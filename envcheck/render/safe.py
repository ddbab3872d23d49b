"""Other people's text made inert before it reaches a terminal or a Markdown page.

A report shows text that other people chose: a GPU process's name (any user can name a process), a node's
host name and its checks' fixes in a fleet merge (any file on a shared disk), an environment variable.
Written raw, an ESC sequence in it clears the reader's screen, moves the cursor over a failing line, sets
the window title, or writes the reader's clipboard (OSC 52); a carriage return or a backspace overprints
what came before; a newline forges a line of the report. :func:`inert` shows each such character as an
escape a person can read (``\\x1b``, ``\\n``), so the text is seen and never obeyed. The text and Markdown
renderers take every machine string through this, by way of :mod:`envcheck.render.common` (``escape``,
``cell``, ``code``); the HTML page too, before its own escaping (``envcheck.render.html.e``).

One rule, the same everywhere: C0 controls, DEL and C1 controls (``\\x9b`` is CSI on a terminal that reads
8-bit controls) are shown as ``\\xNN`` (``\\n``, ``\\r``, ``\\t`` by their names); the Unicode controls that
reorder or break a line in a viewer (bidirectional overrides and isolates, the line and paragraph
separators) and the characters that show as nothing (a zero-width space, the tag characters) as ``\\uNNNN``
(``\\UNNNNNNNN`` past U+FFFF); a byte that was not UTF-8 (a lone surrogate) as U+FFFD, as
:func:`envcheck.core.model.displayable` shows it. Everything else, printable text in any script, passes
unchanged. A backslash is left as it is: the result is for reading, not for parsing back.
"""

from __future__ import annotations

import re

from envcheck.core.model import displayable

#: Bidirectional marks, embeddings, overrides and isolates (Unicode 15, UAX #9): they reorder what a viewer
#: shows, so that a name can read as something else ("Trojan Source", CVE-2021-42574).
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
#: Line and paragraph separators: a new line to many viewers and to ``str.splitlines``.
_SEPARATORS = "\u2028\u2029"
#: Characters that show as nothing: Unicode's default-ignorable code points (DerivedCoreProperties.txt),
#: less those above that reorder a line: a soft hyphen, the combining grapheme joiner, the Hangul fillers,
#: Khmer's inherent vowels, the Mongolian free variation selectors and vowel separator, the zero-width
#: space, joiners and non-joiner, the word joiner, invisible operators and deprecated format characters,
#: the variation selectors, the byte-order mark, the half-width Hangul filler, Duployan's format controls,
#: the musical symbols' beam controls, and the tag characters and their plane's unassigned rest (tags spell
#: ASCII invisibly). ``node\u200b01`` and ``node01\ufe0f`` print as ``node01``: two hosts of a fleet, or a
#: process and the one it poses as, would read as one.
_INVISIBLE = (
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200d\u2060-\u2065\u206a-\u206f\u3164"
    "\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_OTHERS = f"{_BIDI}{_SEPARATORS}{_INVISIBLE}"
#: Every character :func:`inert` shows as an escape: in a one-line field, and in a block of lines.
_ONE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_OTHERS}]")
_LINES = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_OTHERS}]")


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0xA0:  # C0 and C1 controls, DEL
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def inert(value: object, *, lines: bool = False) -> str:
    """``value`` as text that shows every control character instead of obeying it (see the module). A
    one-line field (a name, a summary, a table cell) shows a newline as ``\\n``; ``lines=True`` keeps
    newlines for a block that is meant to have several lines, and still shows every other control."""
    text = displayable(value if isinstance(value, str) else str(value))
    return (_LINES if lines else _ONE_LINE).sub(_shown, text)
