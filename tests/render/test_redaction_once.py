"""Redaction happens once, on the structured report, before any renderer runs: a secret cannot survive
because a renderer escaped it (JSON's \\" and \\n, Markdown's \\|, non-ASCII as \\u escapes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envcheck.render import RenderOptions, make_console, render

NVML_SITE = Path(__file__).resolve().parents[1] / "nvml_site"
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))

#: A secret with every character a renderer escapes: a quote, a backslash, a pipe, non-ASCII, a newline.
SECRET = 'Sx7"q\\w|é9-first\nsecond-line-of-it'


def forms(secret: str) -> list[str]:
    """Every way the secret could appear in output: raw, JSON-escaped (ASCII or not), each line."""
    return [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        *[line for line in secret.splitlines() if len(line) >= 6],
    ]


@pytest.mark.parametrize("fmt", ["json", "markdown", "text"])
def test_a_secret_in_a_check_summary_is_gone_from_every_format(fmt, tmp_path):
    torch_pkg = tmp_path / "torch"
    torch_pkg.mkdir()
    # A torch whose import error quotes a credential from the environment, as some plugin loaders do.
    (torch_pkg / "__init__.py").write_text(
        "import os\nraise RuntimeError('login (token=' + os.environ['MODEL_HUB_TOKEN'] + '), refused')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(NVML_SITE)]),
            "ENVCHECK_FAKE_NVML": "no_library",
            "MODEL_HUB_TOKEN": SECRET,
        }
    )
    proc = subprocess.run(
        [ENVCHECK, "doctor", "torch", "--format", fmt], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    # The words and punctuation around the secret are kept (the summary is the error's first line); in
    # Markdown the mark is escaped, so that a viewer shows it rather than take it for a tag.
    assert ("login (token=\\<redacted>" if fmt == "markdown" else "login (token=<redacted>") in out
    for form in forms(SECRET):
        assert form not in out, (fmt, form)


def test_renderers_only_ever_see_the_document_they_are_given():
    # The renderers themselves do not redact: they print what the one redaction pass left. So a document
    # that still held a secret would show it; deliver() is what must never hand them one.
    doc = {
        "schema": "envcheck.doctor/1",
        "summary": {"verdict": "ready", "text": "ready: no problems found"},
        "checks": [{"id": "env.gpu_vars", "title": "t", "status": "ok", "summary": "plain-value-xyz", "fix": None}],
        "host": {},
    }
    for fmt in ("json", "markdown", "text"):
        from io import StringIO

        buffer = StringIO()
        render(doc, fmt, make_console(buffer, for_file=True), RenderOptions())
        assert "plain-value-xyz" in buffer.getvalue()
