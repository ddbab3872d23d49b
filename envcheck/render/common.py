"""What every kind's text and Markdown reports share: the status marks, a check's line with its fix, a
table that keeps its width in a pipe, and Markdown's cells and code spans. Kinds' render modules import
this, never each other, so a report kind can be added or removed without touching another's renderer.

Each helper takes what came from a machine through :func:`envcheck.render.safe.inert`, so that no kind's
report can forget it: a control character is shown, never obeyed, and Markdown's HTML and table syntax in
a value is text.

Nothing here imports rich at module level: the format modules of this package are loaded to build
``--help``, which must stay instant.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from envcheck.render.safe import inert

if TYPE_CHECKING:
    from rich.console import Console

# -- text --------------------------------------------------------------------------------------------------

#: A code span in a fix's words, as the checks write them ("`sudo ldconfig`"): Markdown, which the Markdown
#: reports keep as it is, the page shows as <code> (envcheck.render.html.prose) and the text report as the
#: bare command (:func:`unquoted`), never with half its Markdown showing.
CODE_SPAN = re.compile(r"`([^`\n]+)`")


def unquoted(text: Any) -> str:
    """A fix's words for the text report: each code span without its backticks."""
    return CODE_SPAN.sub(r"\1", "" if text is None else str(text))


#: status -> (mark on a terminal, word in a pipe or a log, style).
MARKS = {
    "ok": ("✓", "[ok]", "green"),
    "warn": ("!", "[warn]", "yellow"),
    "fail": ("✗", "[FAIL]", "bold red"),
    "skip": ("-", "[skip]", "dim"),
    "crash": ("☠", "[CRASH]", "bold magenta"),
}

#: The widest a table row may be where there is no terminal to ask (a row wider than this wraps).
PIPE_WIDTH = 400


def escape(text: str) -> str:
    """``text`` on one line, its control characters shown (:func:`inert`) and rich markup made literal:
    everything from a machine goes through this."""
    from rich.markup import escape as rich_escape

    return rich_escape(inert(text))


def mark(console: Console, status: str) -> str:
    fancy, plain, style = MARKS[status]
    if console.is_terminal:
        return f"[{style}]{fancy}[/]"
    return escape(plain.ljust(7))


def print_wide(console: Console, table: Any) -> None:
    """On a terminal the table fits the window; in a pipe or a file it keeps its natural width (one line
    per row, as a log wants), not the 80 columns rich assumes where it cannot ask a terminal."""
    if console.is_terminal:
        console.print(table)
        return
    width = console.width
    console.width = max(width, PIPE_WIDTH)
    try:
        console.print(table)
    finally:
        console.width = width


def print_items(console: Console, lead: str, items: Sequence[str], sep: str = ", ") -> None:
    """``lead`` and then ``items`` joined by ``sep`` (rich markup, each item escaped by the caller).

    In a pipe or a file: one line, as a log wants. On a terminal: broken only between items, the separator
    kept at the end of a line and each further line indented under the first item, so that no line starts
    with a comma and no figure is parted from its unit, as they are when the terminal (or rich, between any
    two words) wraps the joined line. An item wider than the terminal on its own is wrapped between its words.
    """
    from rich.text import Text

    if not console.is_terminal:
        console.print(lead + sep.join(items), soft_wrap=True)
        return
    width = console.width
    indent = Text.from_markup(lead).cell_len
    if indent > width // 2:
        indent = 4
    tail = sep.rstrip()
    line, used = lead, Text.from_markup(lead).cell_len
    for i, item in enumerate(items):
        size = Text.from_markup(item).cell_len
        if i == 0:
            line, used = line + item, used + size
            continue
        after = len(tail) if i < len(items) - 1 else 0
        if used + len(sep) + size + after > width:
            console.print(line + tail, overflow="fold")
            line, used = " " * indent + item, indent + size
        else:
            line, used = line + sep + item, used + len(sep) + size
    console.print(line, overflow="fold")


class Unwrapped(str):
    """A line of a text report that is never wrapped, even on a terminal: a command to run. Rich wraps a long
    line between words with a real line break, and a command copied from a narrow terminal then reaches the
    shell as two lines, the first run alone; printed whole, the terminal folds it for the eye and copies it
    as one line."""

    __slots__ = ()


def print_lines(console: Console, lines: list[str], *, soft: bool) -> None:
    """``lines`` printed at once (rich costs about as much per print as per line of a long text), those
    that are :class:`Unwrapped` never wrapped; the rest wrap between words where ``soft`` is false (a
    terminal)."""
    if soft or not any(type(line) is Unwrapped for line in lines):
        console.print("\n".join(lines), soft_wrap=soft)
        return
    run: list[str] = []
    for line in lines:
        if type(line) is Unwrapped:
            if run:
                console.print("\n".join(run))
                run = []
            console.print(line, soft_wrap=True)
        else:
            run.append(line)
    if run:
        console.print("\n".join(run))


class CheckLines:
    """A check's result as the doctor prints it: mark, title, summary and id on one line, the fix (and
    the command to run) under a problem, the details with ``-v``. Every report that carries checks (the
    doctor's, the bench's preflight) prints them this way."""

    def __init__(self, console: Console, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose

    def result(self, result: dict[str, Any]) -> None:
        self.line(result["status"], result["title"], result["summary"], result["id"])
        fix = result.get("fix")
        if fix and result["status"] in ("warn", "fail", "crash"):
            self.indented("fix:", unquoted(fix["text"]))
            if fix.get("command"):
                self.command("      [cyan]run:[/] ", fix["command"])
        if self.verbose and result.get("details"):
            # json.dumps shows C0 controls as escapes but leaves C1 controls (``\x9b``) raw: escape() sees them.
            for text in json.dumps(result["details"], indent=2, ensure_ascii=False).splitlines():
                self.console.print(f"      [dim]{escape(text)}[/]")

    def line(self, status: str, title: str, summary: str, ids: str) -> None:
        self.row(f"  {mark(self.console, status)} ", f"{escape(title)}: {escape(summary)}  [dim]{escape(ids)}[/]")

    def indented(self, label: str, text: str) -> None:
        self.row(f"      [cyan]{label}[/] ", escape(text))

    def command(self, lead: str, command: str) -> None:
        """A command to run, after its ``lead`` (markup): one line however narrow the terminal
        (:class:`Unwrapped` says why)."""
        self.console.print(lead + escape(command), soft_wrap=True)

    def row(self, lead: str, text: str) -> None:
        """On a terminal, a grid so that a long line wraps between words under its own text, never under
        the mark; elsewhere one unwrapped line."""
        if not self.console.is_terminal:
            self.console.print(lead + text)
            return
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=0)
        lead_text = Text.from_markup(lead)
        grid.add_column(width=lead_text.cell_len, no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row(lead_text, Text.from_markup(text))
        self.console.print(grid)


# -- markdown ----------------------------------------------------------------------------------------------

#: Each verdict's mark in Markdown. The warning sign is written without the emoji variation selector
#: (U+FE0F) that would make it a coloured emoji: :func:`write_lines` shows every character that prints as
#: nothing by its code (envcheck.render.safe), and the selector is one.
ICONS = {"ok": "✅ ok", "warn": "⚠ warn", "fail": "❌ fail", "skip": "➖ skip", "crash": "💥 crash"}


def icon(status: Any) -> str:
    """A status in a Markdown report: its icon, or a status no icon knows (a hand-made report's) as text."""
    return ICONS.get(status) or cell(status) if isinstance(status, str) else cell(status)


#: What Markdown would read as syntax in a value, made literal by a backslash (CommonMark: any ASCII
#: punctuation may be escaped). ``<`` and ``&``: raw HTML (``<img onerror=...>``, ``<script>``) and entities,
#: the redactor's own ``<redacted>`` too (a viewer takes it for a tag and shows nothing where the secret
#: was); ``[``: a link or an image (``![t](https://tracker/p.png)`` in a host name would load it, ``[click
#: me](...)`` would link it); ``|``: the end of a table cell; ``\\``: so that a value's own backslash
#: escapes nothing.
_MARKDOWN_SYNTAX = re.compile(r"[\\|&<\[]")


def cell(value: Any) -> str:
    """Markdown text from a machine, for a table cell or a line: its control characters shown, HTML and
    pipes literal, newlines as <br>, so one value never breaks the table or the page."""
    if value is None:
        return ""
    text = _MARKDOWN_SYNTAX.sub(r"\\\g<0>", inert(str(value).replace("\r\n", "\n"), lines=True))
    return "<br>".join(part.strip() for part in text.split("\n"))


def code(value: Any, *, in_table: bool = True) -> str:
    """Inline code from a machine, on one line (its control characters shown), that survives backticks
    inside it: the fence is longer than any run of backticks in the text. GitHub ends a table cell at any
    ``|``, even inside backticks (the rest of the value would be Markdown, HTML included), so a pipe is
    escaped, which a table shows as ``|``; a span outside a table (``in_table=False``) keeps it as it is."""
    text = inert(value)
    if in_table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def write_lines(console: Console, lines: list[str]) -> None:
    """A Markdown report, written as it is (rich would take its ``[`` for markup). Each line is made
    :func:`inert` once more, keeping the report's own line breaks: a control character that reached a
    heading or a code block without :func:`cell` or :func:`code` is still shown, not obeyed."""
    console.file.write(inert("\n".join(lines), lines=True) + "\n")
