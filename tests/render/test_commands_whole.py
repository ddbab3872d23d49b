"""A fix's command is printed on one line however narrow the terminal. Rich wraps a long line between
words with a real line break; a command copied from a narrow terminal then reaches the shell as two
lines, and the first half runs alone (``sudo systemctl restart`` without the service). The terminal
folds the whole line for the eye and copies it as one."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest

from envcheck.core.model import Status
from envcheck.core.report import utc_now
from envcheck.fleet.kinds import NO_FIGURES, Digest, Problem, ReportRef
from envcheck.fleet.merge import merge_digests
from envcheck.fleet.report import fleet_document
from envcheck.render import render
from tests.render.test_markdown import doctor_doc

COMMAND = "sudo systemctl restart nvidia-fabricmanager && sudo nvidia-smi -q -d ECC --loop-ms=1000 -f /tmp/e.log"


def on_terminal(doc: dict[str, Any], columns: int) -> list[str]:
    from rich.console import Console

    out = StringIO()
    console = Console(file=out, force_terminal=True, width=columns, color_system=None, highlight=False, emoji=False)
    render(doc, "text", console)
    return out.getvalue().split("\n")


def fleet_doc() -> dict[str, Any]:
    fix = {"text": "Restart the fabric manager, then watch the ECC counters for a while.", "command": COMMAND}
    digests = []
    for host in ("node-a", "node-b"):
        ref = ReportRef(f"{host}.json", "doctor", Status.FAIL, 1, "2026-12-01T10:00:00+00:00")
        problem = Problem(f"{host}.json", "doctor", "gpu.ecc", Status.FAIL, "GPU 1: 3 uncorrected errors", fix)
        digests.append(Digest(f"{host}.json", "doctor", host, ref, ((None, problem),), (), NO_FIGURES, frozenset(), 0))
    return fleet_document(merge_digests(digests), generated_at=utc_now(), duration_s=0.0)


def explain_doc() -> dict[str, Any]:
    """``envcheck explain``'s report on a known error, its cause's fix given a long command."""
    from tests.explain.test_explain_cli import NO_KERNEL, document

    _, doc = document(NO_KERNEL)
    doc["matches"][0]["fix"]["command"] = COMMAND
    return doc


@pytest.mark.parametrize("kind", ["doctor", "fleet", "explain"])
@pytest.mark.parametrize("columns", [40, 80])
def test_a_fix_command_is_one_line_on_a_narrow_terminal(kind: str, columns: int) -> None:
    doc = {"doctor": doctor_doc, "fleet": fleet_doc, "explain": explain_doc}[kind]()
    if kind == "doctor":
        doc["checks"][0]["fix"]["command"] = COMMAND
    shown = on_terminal(doc, columns)
    runs = [line for line in shown if line.lstrip().startswith("run:")]
    assert runs and all(line.strip() == f"run: {COMMAND}" for line in runs), shown
    # the words around it still wrap to the terminal
    assert all(len(line) <= columns for line in shown if line not in runs)
