"""Ctrl-C, through the installed command: the bench stops, prints and saves what it measured so far
(--save and --output too), marked interrupted, and exits 130."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
#: What a finished case's progress line starts with (stderr is a pipe: plain lines, one per case,
#: each starting with its device).
FINISHED = ("cpu ok:", "cpu fail:", "cpu crash:", "cpu skip:")


def test_ctrl_c_keeps_what_finished_and_exits_130(tmp_path):
    saved, markdown = tmp_path / "run.json", tmp_path / "run.md"
    # four convolution cases of over a second each (the default budget): Ctrl-C lands after the first.
    args = ["bench", "--device", "cpu", "--only", "conv", "--save", str(saved)]
    proc = subprocess.Popen(
        [ENVCHECK, *args, "--output", str(markdown)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background commands with SIGINT ignored; a terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        progress = []
        assert proc.stderr is not None
        for line in proc.stderr:
            progress.append(line)
            if line.strip().startswith(FINISHED):
                break
        else:
            raise AssertionError(f"no case finished: {''.join(progress)[-2000:]}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    doc = json.loads(saved.read_text())
    assert doc["interrupted"] is True and doc["exit_code"] == 130
    first = doc["results"][0]
    assert (first["id"], first["status"], first["verified"]) == ("conv.fwd", "ok", True) and first["value"] > 0
    finished, planned = doc["summary"]["finished"], doc["summary"]["planned"]
    assert 1 <= finished < planned == 4
    assert f"interrupted by Ctrl-C after {finished} of 4 cases: " in out  # the terminal's text report
    assert "conv.fwd" in out
    assert markdown.read_text().startswith("## envcheck bench: interrupted")  # --output, Markdown by its suffix
