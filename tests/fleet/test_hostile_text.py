"""Other people's text cannot drive the reader's terminal: a node report's host name, a failing check's
summary and its fix, carrying terminal sequences, control characters and HTML, reach ``envcheck fleet``'s
text and Markdown shown and inert, through the installed command."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from tests.fleet.conftest import NVML_SITE, envcheck

#: Characters no report may hand a terminal raw: C0 controls but the newline that ends a line, DEL, C1
#: controls (``\x9b`` is CSI), bidirectional overrides.
OBEYED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

HOSTILE = {
    "host": "n1\x1b[2J\x1b[H\x1b]52;c;cm0gLXJmIH4=\x07<script>alert(1)</script>|x\nforged-node\r\b\x9b6n",
    "summary": "3 errors\x1b[1A\x1b[K\x1b[32mall fine\x1b[0m\u202egnp.exe\x1b]0;pwned\x1b\\",
    "fix": "Reboot.\n\x1b[8mhidden\x1b[28m <img src=x onerror=alert(1)> | <iframe src=//evil> \x00\x7f\x1bP+q\x1b\\",
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two nodes' reports: one as the command wrote it, one edited the way a hostile node would."""
    made = envcheck(
        "doctor", "--quick", "--json", ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap", PYTHONPATH=f"{NVML_SITE}"
    )
    doc: dict[str, Any] = json.loads(made.stdout)
    folder = tmp_path_factory.mktemp("hostile")
    good = copy.deepcopy(doc)
    good["host"]["hostname"] = "n2"
    evil = copy.deepcopy(doc)
    evil["host"]["hostname"] = HOSTILE["host"]
    failing = [c for c in evil["checks"] if c["status"] == "fail"]
    assert failing
    for check in failing:
        check["summary"] = HOSTILE["summary"]
        check["fix"]["text"] = HOSTILE["fix"]
    (folder / "good.json").write_text(json.dumps(good))
    (folder / "evil.json").write_text(json.dumps(evil))
    return folder


def test_text_shows_every_control_character_and_obeys_none(hostile: Path) -> None:
    proc = envcheck("fleet", str(hostile))
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert not OBEYED.findall(out)
    # Shown, where the reader can see what the node sent, on the node's own line.
    assert "n1\\x1b[2J\\x1b[H\\x1b]52;c;cm0gLXJmIH4=\\x07<script>" in out
    assert "|x\\nforged-node\\r\\x08\\x9b6n" in out
    assert not any(line.startswith("forged-node") for line in out.splitlines())
    assert "\\x1b[32mall fine" in out and "\\u202egnp.exe" in out
    assert "fix: Reboot.\\n\\x1b[8mhidden" in out


@pytest.mark.parametrize("where", ["stdout", "file"])
def test_markdown_keeps_html_and_controls_as_text(hostile: Path, tmp_path: Path, where: str) -> None:
    report = tmp_path / "fleet.md"
    args = ["--format", "markdown"] if where == "stdout" else ["-o", str(report)]
    proc = envcheck("fleet", str(hostile), *args)
    assert proc.returncode == 1, proc.stderr
    text = proc.stdout if where == "stdout" else report.read_text(encoding="utf-8")
    assert not OBEYED.findall(text)
    page = MarkdownIt("commonmark").enable("table").render(text)  # raw HTML passes through: as GitHub's would
    for tag in ("<script", "<img", "<iframe"):
        assert tag not in page, tag
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    # The table keeps its shape: a pipe or a newline from the node never adds a cell or a row.
    for table in re.findall(r"<table>.*?</table>", page, re.S):
        head = len(re.findall("<th[ >]", table.split("</thead>")[0]))
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[-1], re.S):
            assert len(re.findall("<td[ >]", row)) == head, row
    assert "forged-node" not in {line.strip() for line in text.splitlines()}


def test_html_shows_every_control_character_and_runs_nothing(hostile: Path, tmp_path: Path) -> None:
    """The page escapes markup, and shows control characters as the text report does: an override in a
    node's name would reorder what the browser shows, an ESC or a NUL is text no one could see."""
    page = tmp_path / "fleet.html"
    proc = envcheck("fleet", str(hostile), "-o", str(page))
    assert proc.returncode == 1, proc.stderr
    html = page.read_text(encoding="utf-8")
    assert not OBEYED.findall(html.replace("\n", "").replace("\t", ""))
    assert "<script>alert" not in html and "<img src=x" not in html and "<iframe" not in html
    assert "n1\\x1b[2J\\x1b[H\\x1b]52;c;cm0gLXJmIH4=\\x07&lt;script&gt;" in html
    assert "\\u202egnp.exe" in html


def test_host_names_holding_backticks_stay_names_in_markdown(hostile: Path, tmp_path: Path) -> None:
    """Two nodes named with a backtick each, failing alike (a report copied: their GPUs shared) are named
    with their backticks literal, in the line naming them and in the words that name them, never a code
    span that swallows what stands between two names."""
    doc = json.loads(next(p for p in hostile.iterdir() if p.name == "good.json").read_text())
    for name in ("a`1", "b`2"):
        doc["host"]["hostname"] = name
        (tmp_path / f"{name.replace('`', '_')}.json").write_text(json.dumps(doc))
    proc = envcheck("fleet", str(tmp_path), "--format", "markdown")
    assert proc.returncode == 1, proc.stderr
    page = MarkdownIt("commonmark").enable("table").render(proc.stdout)
    assert "(above): a`1, b`2" in page and "reports of a`1 and b`2 alike" in page
    assert "<code>1" not in page
