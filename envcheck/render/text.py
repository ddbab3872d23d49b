"""The human report: one line per check, grouped by area, fixes under problems, one summary line.

All output goes through one rich Console. When stdout is not a terminal rich drops colour and
the marks fall back to ASCII words, so logs and pasted issues stay readable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

from envcheck.core.model import CheckResult, Status
from envcheck.core.registry import AREAS, CheckSpec

MARKS = {
    Status.OK: ("✓", "[ok]", "green"),
    Status.WARN: ("!", "[warn]", "yellow"),
    Status.FAIL: ("✗", "[FAIL]", "bold red"),
    Status.SKIP: ("-", "[skip]", "dim"),
    Status.CRASH: ("☠", "[CRASH]", "bold magenta"),
}


def make_console(*, stderr: bool = False) -> Console:
    # soft_wrap: never hard-wrap lines in logs and pipes; the terminal wraps what it must.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


class TextRenderer:
    """Prints results as they arrive (so a slow probe shows progress) and the summary at the end."""

    def __init__(self, console: Console, *, verbose: bool = False, clean: Callable[[str], str] = str) -> None:
        self.console = console
        self.verbose = verbose
        #: Applied to every text that came from the machine (see envcheck.redact.scrub): the report must
        #: be safe to paste into a public issue.
        self.clean = clean
        self._area: str | None = None
        self._skipped: list[CheckResult] = []

    def mark(self, status: Status) -> str:
        fancy, plain, style = MARKS[status]
        if self.console.is_terminal:
            return f"[{style}]{fancy}[/]"
        return escape(plain.ljust(7))

    def result(self, result: CheckResult) -> None:
        if result.area != self._area:
            self._flush_skipped()
            self._area = result.area
            self.console.print(f"\n[bold]{AREAS.get(result.area, result.area)}[/]")
        # Checks skipped for one shared reason (no NVML: every GPU check) read better as one line.
        if result.status is Status.SKIP and not self.verbose:
            if self._skipped and self._skipped[0].summary != result.summary:
                self._flush_skipped()
            self._skipped.append(result)
            return
        self._flush_skipped()
        self._line(result.status, result.title, result.summary, result.id)
        if result.fix and result.status in (Status.WARN, Status.FAIL, Status.CRASH):
            self.console.print(f"      [cyan]fix:[/] {escape(self.clean(result.fix.text))}")
            if result.fix.command:
                self.console.print(f"      [cyan]run:[/] {escape(self.clean(result.fix.command))}")
        if self.verbose and result.details:
            text = self.clean(json.dumps(_plain(result.details), indent=2, default=str))
            for line in text.splitlines():
                self.console.print(f"      [dim]{escape(line)}[/]")

    def _flush_skipped(self) -> None:
        skipped, self._skipped = self._skipped, []
        if len(skipped) == 1:
            self._line(Status.SKIP, skipped[0].title, skipped[0].summary, skipped[0].id)
        elif skipped:
            ids = ", ".join(r.id for r in skipped)
            self._line(Status.SKIP, f"{len(skipped)} checks skipped", skipped[0].summary, ids)

    def _line(self, status: Status, title: str, summary: str, ids: str) -> None:
        self.console.print(f"  {self.mark(status)} {escape(title)}: {escape(self.clean(summary))}  [dim]{ids}[/]")

    def summary(self, results: list[CheckResult], duration_s: float) -> None:
        self._flush_skipped()
        self.console.print()
        self.console.print(summary_line(results) + f"  [dim]({duration_s:.1f} s)[/]")


def summary_line(results: list[CheckResult]) -> str:
    """'2 problems, 1 warning' or 'ready' — crashes count as problems, and say they are envcheck's."""
    failed = sum(1 for r in results if r.status is Status.FAIL)
    crashed = sum(1 for r in results if r.status is Status.CRASH)
    warned = sum(1 for r in results if r.status is Status.WARN)
    parts = []
    if failed:
        parts.append(f"{failed} problem{'s' if failed != 1 else ''}")
    if crashed:
        parts.append(f"{crashed} check{'s' if crashed != 1 else ''} crashed (envcheck bug)")
    if warned:
        parts.append(f"{warned} warning{'s' if warned != 1 else ''}")
    if not parts:
        return "[bold green]ready[/]: no problems found"
    head = "[bold red]not ready[/]" if failed or crashed else "[bold yellow]ready, with warnings[/]"
    return f"{head}: {', '.join(parts)}"


def list_checks(console: Console, checks: list[CheckSpec]) -> None:
    area = None
    for spec in checks:
        if spec.area != area:
            area = spec.area
            console.print(f"\n[bold]{AREAS[area]}[/] ({area})")
        console.print(f"  {spec.id:<28} {escape(spec.doc)}")


def _plain(value: Any) -> Any:
    from envcheck.core.model import to_jsonable

    return to_jsonable(value)
