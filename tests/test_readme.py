"""The README is part of the product: its check list and its set-up commands must stay true."""

from __future__ import annotations

import re
from pathlib import Path

from envcheck.core.registry import CHECKS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_lists_every_check_with_its_description():
    for spec in CHECKS.ordered():
        assert f"| `{spec.id}` | {spec.doc.replace('|', chr(92) + '|')} |" in README, spec.id


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^python3 -m venv .*$", README, flags=re.M)
    assert len(commands) >= 2
    main_job, tests = commands[0], commands[1]
    assert main_job.endswith("pip install . && envcheck doctor")
    assert "torch==2.13.0" in tests and tests.endswith("python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text()
    # .ci/run installs quietly (-q) but is otherwise the README's command, character for character.
    assert tests.replace("pip install ", "pip install -q ") in ci
