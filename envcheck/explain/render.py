"""The explanation (``envcheck.explain/1``) as text, Markdown and an HTML page, each registered for its
schema.

Per known error: what it is and the first lines that showed it, what it means, then the verdict that
matters, *this machine shows the cause* (the failing checks with their fixes) or *not seen here* (what to
look at where it happened), the fix, and the public threads it was learnt from. Nothing matched: one plain
line, with ``envcheck doctor`` as the next step. Everything from the pasted text is escaped: a ``[`` in a
log line is never rich markup, a ``|`` never ends a Markdown cell, a ``<`` never HTML.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from envcheck.core.report import EXPLAIN_SCHEMA
from envcheck.render import RenderOptions, html, renders
from envcheck.render.common import CheckLines, cell, code, escape, icon, mark, unquoted, write_lines

if TYPE_CHECKING:
    from rich.console import Console

#: A match's mark: the worst check behind a cause shown here; a dash where it is not seen here.
VERDICT_WORDS = {
    "shown": "This machine shows the cause",
    "not_seen": "Not seen here",
    "unknown": "Not judged here (a check crashed: an envcheck bug)",
}


def shown_by(match: dict[str, Any]) -> list[str]:
    """The checks whose verdict shows the match's cause here (a document from before ``shown_by``: every
    check that fails or warns)."""
    if "shown_by" in match:
        return list(match.get("shown_by") or [])
    return [r.get("id") for r in match.get("results") or [] if r.get("status") in ("warn", "fail")]


def match_status(match: dict[str, Any]) -> str:
    """The status a match is marked with: its worst failing check where this machine shows the cause."""
    if match.get("verdict") == "shown":
        showing = shown_by(match)
        statuses = [r.get("status") for r in match.get("results") or [] if r.get("id") in showing]
        return "fail" if "fail" in statuses else "warn"
    return "crash" if match.get("verdict") == "unknown" else "skip"


def facts_lines(facts: dict[str, Any]) -> list[str]:
    """An analysed line's facts in words (an undefined symbol's package, its name and the side that is wrong)."""
    out = []
    if facts.get("demangled") or facts.get("symbol"):
        out.append(f"symbol: {facts.get('demangled') or facts['symbol']}")
    dist = facts.get("distribution")
    if isinstance(dist, dict):
        out.append(f"package: {dist.get('name')} {dist.get('version')} (in {dist.get('site_packages')})")
    elif facts.get("library"):
        out.append(f"library: {facts['library']} (no installed package here lists it)")
    if facts.get("why"):
        out.append(f"wrong side: {facts['why']}")
    if facts.get("abi"):
        out.append(f"C++ ABI: {facts['abi']}")
    if facts.get("torch_here"):
        out.append(f"torch here: {facts['torch_here']}")
    return out


def _lines(n: Any) -> str:
    n = n if isinstance(n, int) else 0
    return f"{n:,} line{'' if n == 1 else 's'}"


# -- text --------------------------------------------------------------------------------------------------


@renders("text", EXPLAIN_SCHEMA)
def render_text(doc: dict[str, Any], console: Console, options: RenderOptions | None = None) -> None:
    summary = doc.get("summary") or {}
    matches = doc.get("matches") or []
    if not matches:
        console.print(escape(f"envcheck explain: {summary.get('text', 'no known error')}"))
        return
    lines = CheckLines(console, verbose=bool(options and options.verbose))
    read = doc.get("input") or {}
    console.print(
        f"[bold]envcheck explain[/]: {escape(summary.get('text', ''))}  "
        f"[dim]({escape(', '.join(read.get('sources') or []))}; {_lines(read.get('lines'))} read)[/]"
    )
    for match in matches:
        console.print()
        title = f"[bold]{escape(match.get('title', ''))}[/]  [dim]{escape(match.get('id', ''))}[/]"
        lines.row(f"{mark(console, match_status(match))} ", title)
        for line in match.get("lines") or []:
            lines.indented(f"{line.get('source')}:{line.get('line')}:", line.get("text", ""))
        more = (match.get("count") or 0) - len(match.get("lines") or [])
        if more > 0:
            lines.indented("...", f"and {more} more")
        lines.indented("means:", match.get("meaning", ""))
        for fact in facts_lines(match.get("facts") or {}):
            lines.indented("found:", fact)
        verdict = match.get("verdict")
        checks = ", ".join(match.get("checks") or [])
        lines.row("      ", f"[bold]{escape(VERDICT_WORDS.get(verdict, str(verdict)))}[/] [dim]({escape(checks)})[/]:")
        commands = set()
        showing = shown_by(match)
        for result in match.get("results") or []:
            if verdict == "shown" and result.get("id") not in showing and result.get("status") != "crash":
                continue
            lines.row(
                f"        {mark(console, result.get('status', 'skip'))} ",
                escape(f"{result.get('title')}: {result.get('summary')}") + f"  [dim]{escape(result.get('id', ''))}[/]",
            )
            fix = result.get("fix") or {}
            if fix and result.get("status") in ("warn", "fail", "crash"):
                lines.row("            [cyan]fix:[/] ", escape(unquoted(fix.get("text", ""))))
                if fix.get("command"):
                    commands.add(fix["command"])
                    lines.command("            [cyan]run:[/] ", fix["command"])
            if lines.verbose and result.get("details"):
                for text in json.dumps(result["details"], indent=2, ensure_ascii=False).splitlines():
                    console.print(f"            [dim]{escape(text)}[/]")
        if verdict != "shown" and match.get("there"):
            lines.indented("where it happened:", match["there"])
        fix = match.get("fix") or {}
        lines.indented("fix:" if verdict != "shown" else "in general:", unquoted(fix.get("text", "")))
        if fix.get("command") and fix["command"] not in commands:
            lines.command("      [cyan]run:[/] ", fix["command"])
        lines.indented("learnt from:", ", ".join(match.get("sources") or []))


# -- markdown ----------------------------------------------------------------------------------------------


@renders("markdown", EXPLAIN_SCHEMA)
def render_markdown(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    write_lines(console, explain_markdown(doc))


def explain_markdown(doc: dict[str, Any]) -> list[str]:
    summary = doc.get("summary") or {}
    out = [f"## envcheck explain: {cell(summary.get('text', ''))}", ""]
    if not doc.get("matches"):
        return out
    for match in doc.get("matches") or []:
        title = f"{icon(match_status(match))} {cell(match.get('title'))}"
        out += [f"### {title} ({code(match.get('id'), in_table=False)})", ""]
        out += [f"    {line.get('source')}:{line.get('line')}: {line.get('text')}" for line in match.get("lines") or []]
        out += ["", f"**What it means:** {cell(match.get('meaning'))}", ""]
        out += [f"- {cell(fact)}" for fact in facts_lines(match.get("facts") or {})]
        out += ["", f"**{cell(VERDICT_WORDS.get(match.get('verdict'), match.get('verdict')))}**", ""]
        out += ["| check | status | summary |", "|---|---|---|"]
        out += [
            f"| {code(r.get('id'))} | {icon(r.get('status'))} | {cell(r.get('summary'))} |"
            for r in match.get("results") or []
        ]
        if match.get("verdict") != "shown" and match.get("there"):
            out += ["", f"**Where it happened:** {cell(match['there'])}"]
        fix = match.get("fix") or {}
        out += ["", f"**Fix:** {cell(fix.get('text'))}"]
        if fix.get("command"):
            out += ["", f"    {fix['command']}"]
        out += ["", f"Learnt from: {cell(', '.join(match.get('sources') or []))}", ""]
    return out


# -- html --------------------------------------------------------------------------------------------------


@renders("html", EXPLAIN_SCHEMA)
def render_html(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    html.write_page(console, doc, "explain", explain_header, [explain_matches])


def explain_header(doc: dict[str, Any]) -> tuple[str, str]:
    summary = html.dct(doc.get("summary"))
    return html.header("explain", str(summary.get("text") or "no verdict"), doc.get("status"), doc)


def explain_matches(doc: dict[str, Any]) -> str:
    """Each match, the causes this machine shows first (failing, then warning): its verdict and fix at the
    top, what it means, then the log's lines and the facts behind it folded (what a person opens to check
    the diagnosis)."""
    parts = []
    shown_first = {"fail": 0, "warn": 1}  # a cause this machine shows, before one it cannot tell
    matches = sorted(html.items(doc.get("matches")), key=lambda m: shown_first.get(match_status(m), 2))
    for match in matches:
        fix = html.dct(match.get("fix"))
        lines = "\n".join(
            f"{html.e(x.get('source'))}:{html.e(x.get('line'))}: {html.e(x.get('text'))}"
            for x in html.items(match.get("lines"))
        )
        facts = "".join(f"<li>{html.e(f)}</li>" for f in facts_lines(html.dct(match.get("facts"))))
        there = (
            f"<p>Where it happened: {html.e(match.get('there'))}</p>"
            if match.get("verdict") != "shown" and match.get("there")
            else ""
        )
        parts.append(
            html.section(
                f"{match.get('title')} ({match.get('id')})",
                f"<p>{html.badge(match_status(match))} {html.e(VERDICT_WORDS.get(match.get('verdict'), ''))}</p>",
                html.fix_line(fix.get("text")),
                f"<pre><code>{html.e(fix.get('command'))}</code></pre>" if fix.get("command") else "",
                f"<p>{html.e(match.get('meaning'))}</p>",
                there,
                html.problem_items(html.items(match.get("results"))),
                html.folded(
                    "the log's lines and the facts",
                    f"<pre><code>{lines}</code></pre>",
                    f"<ul>{facts}</ul>" if facts else "",
                    f'<p class="muted">learnt from: {html.e(", ".join(html.lst(match.get("sources"))))}</p>',
                ),
            )
        )
    return "\n".join(parts)
