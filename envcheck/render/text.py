"""``--format text``: the human report. One line per check, grouped by area, fixes under problems, one
summary line; for the bench, its table (envcheck.bench.progress lays it out).

It reads the structured, already-redacted document, never live objects. On a terminal lines wrap at
word boundaries with a hanging indent; in pipes and logs lines are never wrapped, colour is dropped and
the marks become ASCII words, so pasted reports stay readable.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from envcheck.core.report import BENCH_SCHEMA, BURN_SCHEMA, COMM_SCHEMA, FLEET_SCHEMA
from envcheck.render import RenderOptions, renderer

if TYPE_CHECKING:
    from rich.console import Console

MARKS = {
    "ok": ("✓", "[ok]", "green"),
    "warn": ("!", "[warn]", "yellow"),
    "fail": ("✗", "[FAIL]", "bold red"),
    "skip": ("-", "[skip]", "dim"),
    "crash": ("☠", "[CRASH]", "bold magenta"),
}

VERDICT_STYLE = {
    "ready": "bold green",
    "ready_cpu": "bold green",
    "warnings": "bold yellow",
    "not_ready": "bold red",
    "nothing_checked": "bold yellow",
}


@renderer("text", "the human report (colour and ✓ marks on a terminal, ASCII words in pipes)", suffixes=(".txt",))
def render_text(document: dict[str, Any], console: Console, options: RenderOptions) -> None:
    if document.get("schema") == BENCH_SCHEMA:
        from envcheck.bench.render import render_text as render_bench

        render_bench(document, console, options)
        return
    if document.get("schema") == COMM_SCHEMA:
        from envcheck.comm.render import render_text as render_comm

        render_comm(document, console, options)
        return
    if document.get("schema") == BURN_SCHEMA:
        from envcheck.burn.render import render_text as render_burn

        render_burn(document, console, options)
        return
    if document.get("schema") == FLEET_SCHEMA:
        from envcheck.fleet.render import render_text as render_fleet

        render_fleet(document, console, options)
        return
    DoctorText(console, verbose=options.verbose).report(document)


def mark(console: Console, status: str) -> str:
    fancy, plain, style = MARKS[status]
    if console.is_terminal:
        return f"[{style}]{fancy}[/]"
    return escape(plain.ljust(7))


class DoctorText:
    def __init__(self, console: Console, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose

    def report(self, doc: dict[str, Any]) -> None:
        areas: dict[str, str] = doc.get("areas", {})
        area = None
        skipped: list[dict[str, Any]] = []
        for result in doc.get("checks", []):
            this_area = result["id"].split(".", 1)[0]
            if this_area != area:
                self._skipped(skipped)
                skipped = []
                area = this_area
                self.console.print(f"\n[bold]{escape(areas.get(area, area))}[/]")
            # Checks skipped for one shared reason (no NVML: every GPU check) read better as one line.
            if result["status"] == "skip" and not self.verbose:
                if skipped and skipped[0]["summary"] != result["summary"]:
                    self._skipped(skipped)
                    skipped = []
                skipped.append(result)
                continue
            self._skipped(skipped)
            skipped = []
            self.result(result)
        self._skipped(skipped)
        self.console.print()
        summary = doc.get("summary") or {"verdict": "ready", "text": ""}
        head, _, rest = summary["text"].partition(": ")
        style = VERDICT_STYLE.get(summary["verdict"], "bold")
        line = f"[{style}]{escape(head)}[/]" + (f": {escape(rest)}" if rest else "")
        self.console.print(f"{line}  [dim]({doc.get('duration_s', 0.0):.1f} s)[/]")

    def result(self, result: dict[str, Any]) -> None:
        self._line(result["status"], result["title"], result["summary"], result["id"])
        fix = result.get("fix")
        if fix and result["status"] in ("warn", "fail", "crash"):
            self._indented("fix:", fix["text"])
            if fix.get("command"):
                self._indented("run:", fix["command"])
        if self.verbose and result.get("details"):
            for text in json.dumps(result["details"], indent=2, ensure_ascii=False).splitlines():
                self.console.print(f"      [dim]{escape(text)}[/]")

    def _skipped(self, skipped: list[dict[str, Any]]) -> None:
        if len(skipped) == 1:
            self.result(skipped[0])
        elif skipped:
            title = f"{len(skipped)} checks skipped"
            used = len(f"  - {title}: {skipped[0]['summary']}  ")
            self._line("skip", title, skipped[0]["summary"], _ids(self.console, skipped, used))

    def _line(self, status: str, title: str, summary: str, ids: str) -> None:
        self._row(f"  {mark(self.console, status)} ", f"{escape(title)}: {escape(summary)}  [dim]{escape(ids)}[/]")

    def _indented(self, label: str, text: str) -> None:
        self._row(f"      [cyan]{label}[/] ", escape(text))

    def _row(self, lead: str, text: str) -> None:
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


def _ids(console: Console, skipped: list[dict[str, Any]], used: int) -> str:
    """The folded line's ids; on a terminal as many as fit in what is left of the line (``used``
    columns are taken) with the count of the rest, so that the folded line stays one line (``-v``
    lists every skipped check)."""
    ids = [r["id"] for r in skipped]
    if not console.is_terminal:
        return ", ".join(ids)
    room = console.width - used - 1
    shown: list[str] = []
    for i, item in enumerate(ids):
        rest = len(ids) - i - 1
        candidate = ", ".join([*shown, item]) + (f", … +{rest}" if rest else "")
        if len(candidate) > room:
            if shown:
                return ", ".join(shown) + f", … +{len(ids) - len(shown)}"
            areas = {i.split(".", 1)[0] for i in ids}
            return f"{areas.pop()}.*" if len(areas) == 1 else f"+{len(ids)}"
        shown.append(item)
    return ", ".join(shown)


def list_checks(console: Console, checks: list[dict[str, Any]]) -> None:
    area = None
    for spec in checks:
        if spec["area"] != area:
            area = spec["area"]
            console.print(f"\n[bold]{escape(spec['area_title'])}[/] ({area})")
        console.print(f"  {spec['id']:<28} {escape(spec['doc'])}")
