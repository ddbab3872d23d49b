"""The explanation as a document: ``explain_document(report)``, the envcheck.explain/1 JSON contract.

It starts with the envelope every envcheck report carries, then:

* ``status``: the worst verdict of the checks behind the causes this machine shows (``ok`` when it shows
  none), and ``exit_code``;
* ``input``: what was read (``sources``, ``bytes``, ``lines``; ``command`` and ``command_exit`` for
  ``explain -- CMD``);
* ``matches``: one per signature found, in the table's order: its ``id``, ``title``, ``meaning``, the first
  ``lines`` that showed it and ``count`` (every match), ``checks`` (the ids it names) with their
  ``results``, the ``verdict`` (``shown``, ``not_seen``, ``unknown``) and ``shown_by`` (the checks whose
  verdict shows this cause here), ``fix`` (text and command),
  ``there`` (what to look at where it happened), ``sources`` (public threads) and ``facts`` (what its own
  reading of the line found: an undefined symbol's package, demangled name and wrong side);
* ``next_step``: ``envcheck doctor`` when nothing matched (``envcheck explain -f PATH`` where the one text
  argument was the name of a file); ``summary``: the counts and the one line.

The pasted text in ``lines`` is redacted with the rest of the document when it is delivered
(envcheck.cli.terminal), before anything is printed or written.
"""

from __future__ import annotations

from typing import Any

from envcheck.core.model import Status, to_jsonable, worst
from envcheck.core.report import EXPLAIN_SCHEMA, HostIdentity, Summary, envelope
from envcheck.explain.app import ExplainReport, Match

#: What to run when nothing in the text is known.
NEXT_STEP = "envcheck doctor"


def explain_document(report: ExplainReport) -> dict[str, Any]:
    doc = envelope(
        EXPLAIN_SCHEMA, generated_at=report.generated_at, duration_s=report.duration_s, host=HostIdentity.here()
    )
    input_: dict[str, Any] = {"sources": list(report.sources), "bytes": report.bytes_read, "lines": report.lines_read}
    if report.command is not None:
        input_ |= {"command": list(report.command), "command_exit": report.command_exit}
    doc.update(
        {
            "status": status(report).value,
            "exit_code": report.exit_code,
            "input": input_,
            "matches": [_match(m) for m in report.matches],
            "next_step": None if report.matches else report.read_instead or NEXT_STEP,
            "summary": summary(report),
        }
    )
    result: dict[str, Any] = to_jsonable(doc)
    return result


def status(report: ExplainReport) -> Status:
    """The worst verdict behind the causes shown here; ``ok`` where this machine shows none."""
    return worst([r.status for m in report.shown for r in m.showing])


def _match(m: Match) -> dict[str, Any]:
    s = m.hit.signature
    fix_text = m.facts.get("fix") or s.fix
    return {
        "id": s.id,
        "title": s.title,
        "meaning": s.meaning,
        "verdict": m.verdict,
        "shown_by": [r.id for r in m.showing],
        "lines": [line.to_json() for line in m.lines],
        "count": m.hit.count,
        "checks": list(s.checks),
        "results": [r.to_json() for r in m.results],
        "fix": {"text": fix_text, "command": s.command},
        "there": s.there,
        "sources": list(s.sources),
        "facts": m.facts,
    }


def summary(report: ExplainReport) -> dict[str, Any]:
    shown = len(report.shown)
    unknown = sum(m.verdict == "unknown" for m in report.matches)
    not_seen = len(report.matches) - shown - unknown
    counts = {"matches": len(report.matches), "shown": shown, "not_seen": not_seen, "unknown": unknown}
    if not report.matches and report.read_instead:
        return Summary(
            "nothing_matched",
            f"no known error in the text given: it is the name of a file; to read the file, run "
            f"`{report.read_instead}`",
            counts,
        ).to_json()
    if not report.matches:
        return Summary(
            "nothing_matched",
            f"no known error in what was read; next: run `{NEXT_STEP}` on the machine where it happened",
            counts,
        ).to_json()
    parts = []
    if shown:
        ids = ", ".join(dict.fromkeys(r.id for m in report.shown for r in m.showing))
        parts.append(f"{shown} shown on this machine ({ids})")
    if not_seen:
        parts.append(f"{not_seen} not seen here")
    if unknown:
        parts.append(f"{unknown} not judged (a check crashed)")
    known = f"{len(report.matches)} known error{'s' if len(report.matches) != 1 else ''}"
    return Summary("cause_shown" if shown else "not_seen", f"{known}: {', '.join(parts)}", counts).to_json()
