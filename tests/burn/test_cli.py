"""``envcheck burn`` through the installed command on the CPU: a short run keeps its duration and leaves a
timeline; Ctrl-C (SIGINT) and SIGTERM leave a complete report of what ran, marked interrupted, and exit 130
and 143; a malformed option is one line and exit 2."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from envcheck.cli import main

ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))


def test_a_five_second_burn_keeps_its_duration_and_samples_every_second(tmp_path):
    out = tmp_path / "burn.json"
    started = time.monotonic()
    run = subprocess.run(
        [ENVCHECK, "burn", "--device", "cpu", "--duration", "5s", "--json", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    doc = json.loads(out.read_text())
    # 5-15 s, not counting the worker's import of torch (seconds more when other work shares a small machine:
    # that is torch's time, not the burn's).
    assert 5 <= took - doc["devices"][0]["worker"]["import_s"] <= 15, (took, doc["devices"][0]["worker"])
    # ok, or a warning where other work on a small CI runner made the throughput decay
    assert doc["schema"] == "envcheck.burn/1" and doc["status"] in ("ok", "warn") and doc["interrupted"] is False
    [device] = doc["devices"]
    assert device["name"] == "cpu" and device["mismatches"] == 0 and device["checked"] > 0
    assert 5.0 <= device["load_s"] < 8.0
    assert device["working_set"]["exact"] is False and device["working_set"]["tolerance"] == 1e-5
    rows = [r for r in doc["timeline"] if r["device"] == "cpu"]
    times = [r["t_s"] for r in rows]
    assert len(rows) >= 4 and times == sorted(set(times))
    assert sum(r["value"] is not None for r in rows) >= 4 and "cpu_pct" in rows[0]
    assert next(v for v in doc["verdicts"] if v["id"] == "burn.mismatch")["status"] == "ok"
    assert doc["exit_code"] == 0 and doc["summary"]["verdict"] in ("passed", "warnings")
    # the terminal's text report on stdout, the JSON in the file
    assert "burn-in passed" in run.stdout


@pytest.mark.parametrize(
    ("sig", "code", "by", "to_file"), [(signal.SIGINT, 130, "SIGINT", True), (signal.SIGTERM, 143, "SIGTERM", False)]
)
def test_a_signal_ends_the_run_with_a_whole_report_of_what_ran(tmp_path, sig, code, by, to_file):
    """Ctrl-C with the report going to --output; SIGTERM with --json alone: stdout is the report and nothing
    else (the progress goes to stderr)."""
    out = tmp_path / "burn.json"
    where = ["--output", str(out)] if to_file else []
    process = subprocess.Popen(
        [ENVCHECK, "burn", "--device", "cpu", "--duration", "10m", "--json", *where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        # a shell without job control starts background commands with SIGINT ignored; a terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Once the load has reported a throughput: a pipe's plain lines (one when the load begins, then one
        # every 10 s) carry the latest figure; on a busy machine the first may take a while, so the test
        # waits for it rather than for a fixed time.
        assert _wait_for_line(process.stderr, "cpu ", within_s=90, containing="TFLOP/s"), "no throughput said"
        workers = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, stderr
    doc = json.loads(out.read_text() if to_file else stdout)
    assert doc["interrupted"] is True and doc["stopped_by"] == by and doc["exit_code"] == code
    assert doc["summary"]["verdict"] == "interrupted"
    assert [d["name"] for d in doc["devices"]] == ["cpu"] and doc["devices"][0]["error"] is None
    assert next(v for v in doc["verdicts"] if v["id"] == "burn.worker")["status"] == "ok"
    assert doc["timeline"] and "interrupted by" in stdout
    assert any(r["value"] is not None for r in doc["timeline"])  # the load ran, and its throughput is there
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--duration", "0"], "--duration must be a duration above 0"),
        (["--duration", "nan"], "--duration is not a duration: 'nan'"),
        (["--duration", "-1m"], "--duration is not a duration: '-1m'"),
        (["--duration", "soon"], "--duration is not a duration: 'soon'"),
        (["--dtype", "fp8"], "unknown dtype 'fp8'"),
        (["--device", "gpu"], "unknown device 'gpu'"),
    ],
)
def test_a_malformed_option_is_one_line_and_exit_2(args, words):
    result = CliRunner().invoke(main, ["burn", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("envcheck burn: error: ") and words in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_help_names_the_default_duration_and_the_exit_codes():
    result = CliRunner().invoke(main, ["burn", "--help"])
    assert result.exit_code == 0
    assert "[default: 10m]" in result.output and "143 by SIGTERM" in " ".join(result.output.split())


def _wait_for_line(stream, start: str, *, within_s: float, containing: str = "") -> bool:
    """Read ``stream`` line by line (in a thread, so a line never waits in a buffer unseen) until one starts
    with ``start`` (and holds ``containing``); False if none does in time. The rest of the stream is left
    for ``communicate``."""
    import threading

    found = threading.Event()

    def read() -> None:
        for said in iter(stream.readline, ""):
            if said.startswith(start) and containing in said:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    return found.wait(within_s)


def test_a_cpu_burn_beside_other_work_says_so_and_its_figure_judges_nothing(tmp_path):
    """Two busy loops hold this machine's cores through the burn: the burn samples that as the bench does,
    warns (burn.contention), marks the CPU's figure contended, and a lab minimum it misses is not judged."""
    spec = tmp_path / "lab.toml"
    spec.write_text('[burn]\nmin_sustained = { min = 1e6, unit = "TFLOP/s" }\n')  # no CPU meets a million
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(psutil.cpu_count() or 2)]
    try:
        run = subprocess.run(
            [ENVCHECK, "burn", "--device", "cpu", "--duration", "2", "--spec", str(spec), "--json"],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=tmp_path,
        )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    doc = json.loads(run.stdout)
    busy = next(v for v in doc["verdicts"] if v["id"] == "burn.contention")
    assert busy["status"] == "warn" and doc["contention"]["share"] >= 0.25, doc["contention"]
    assert "this burn may use" in busy["summary"] and "measures the sharing" in busy["summary"]
    assert doc["devices"][0]["contended"] is True
    [minimum] = doc["spec"]["verdicts"]
    assert minimum["passed"] is None and "not judged (burn.contention)" in minimum["summary"], minimum
    assert run.returncode == 0, run.stderr  # a warning, and a spec figure not judged: nothing failed


@pytest.mark.parametrize("columns", [80, 120])
def test_the_steady_state_table_fits_the_terminal_with_nothing_cut(tmp_path, columns):
    import os
    import re

    from tests.cli.test_terminal import read_pty

    out = tmp_path / "burn.json"
    args = [ENVCHECK, "burn", "--device", "cpu", "--duration", "3", "-o", str(out)]
    shown = read_pty(args, {**os.environ, "TERM": "xterm"}, columns)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).replace("\r", "")
    lines = plain.split("\n")
    report = lines[next(i for i, line in enumerate(lines) if line.startswith("envcheck burn:")) :]
    assert all(len(line.rstrip()) <= columns for line in report), "\n".join(report)
    assert "…" not in plain  # rich's mark of a cut cell
    [device] = json.loads(out.read_text())["devices"]
    # the model and dtype every row shares are said once, above the table
    assert f"steady state of {device['model']} in {device['dtype']} (medians over" in plain
    head = next(line for line in report if "device" in line and "status" in line)
    for name in ("TFLOP/s", "SM MHz", "power W", "temp °C (peak)", "mismatches"):
        assert name in head, head
    row = next(line for line in report if line.startswith("│ cpu "))
    assert f"{device['mismatches']} of {device['checked']}" in row
