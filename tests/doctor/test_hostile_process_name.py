"""Another user's GPU process names itself with terminal sequences and a byte that is not UTF-8: the doctor
names that process in its report, through the installed command, shown and never obeyed (NVML faked at
the C boundary, the process real: tests/fakenvml.py's ``hostile_process_name``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
#: C0 controls but the newline, DEL, C1 controls.
OBEYED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
SHOWN = "(\\x1b[2J\\x1b]0;x\\x07\\x9b\ufffd)"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_NAME) is Linux's")


def doctor(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env.update(ENVCHECK_FAKE_NVML="hostile_process_name", PYTHONPATH=str(ROOT / "tests" / "nvml_site"))
    return subprocess.run(
        [ENVCHECK, "doctor", "--quick", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_text_and_markdown_show_the_process_name_inert(tmp_path: Path) -> None:
    text = doctor(tmp_path, "-o", "report.md")
    assert text.returncode == 0 and "internal error" not in text.stderr, text.stderr
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    for out in (text.stdout, markdown):
        assert not OBEYED.findall(out)
    assert SHOWN in text.stdout
    # a Markdown backslash and bracket, escaped: each reads as itself
    assert SHOWN.replace("\\", "\\\\").replace("[", "\\[") in markdown


def test_json_carries_the_name_decoded(tmp_path: Path) -> None:
    proc = doctor(tmp_path, "--json")
    doc = json.loads(proc.stdout)
    memory = next(c for c in doc["checks"] if c["id"] == "gpu.memory")
    for processes in (doc["gpus"][0]["processes"], memory["details"]["gpus"]["0"]["processes"]):
        assert [p["name"] for p in processes] == ["\x1b[2J\x1b]0;x\x07\x9b\ufffd"]
