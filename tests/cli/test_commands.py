"""The CLI contract: exit codes, --json on stdout only, --list-checks, selection, and the real console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from envcheck.cli import main
from envcheck.doctor.areas import CHECKS


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_unknown_check_is_a_usage_error_exit_2():
    result = invoke("doctor", "gpu.nope")
    assert result.exit_code == 2
    assert "unknown check or area 'gpu.nope'" in result.output
    assert "Traceback" not in result.output


def test_unknown_option_exit_2():
    result = invoke("doctor", "--frobnicate")
    assert result.exit_code == 2 and "No such option" in result.output


def test_bad_deadline_exit_2():
    result = invoke("doctor", "--deadline", "soon")
    assert result.exit_code == 2 and "--deadline" in result.output


def test_list_checks_lists_every_id():
    result = invoke("doctor", "--list-checks")
    assert result.exit_code == 0
    for spec in CHECKS.ordered():
        assert spec.id in result.output
    assert "Driver and NVML (driver)" in result.output


def test_list_checks_for_one_area():
    result = invoke("doctor", "gpu", "--list-checks")
    assert "gpu.ecc" in result.output and "driver.nvml" not in result.output


def test_json_is_exactly_one_object_on_stdout(nvml):
    nvml("healthy_multi_gpu")
    result = CliRunner().invoke(main, ["doctor", "--quick", "--json"])
    doc = json.loads(result.stdout)  # raises if anything else is on stdout
    assert doc["schema"] == "envcheck.doctor/1"
    # the healthcheck's areas, and of the kernel log's checks only kernel.xid (this boot's Xids)
    assert {c["id"].split(".")[0] for c in doc["checks"]} <= {"host", "driver", "gpu", "kernel"}
    assert [c["id"] for c in doc["checks"] if c["id"].startswith("kernel.")] == ["kernel.xid"]
    assert result.exit_code == (1 if doc["status"] == "fail" else 0)
    assert doc["counts"]["crash"] == 0
    for check in doc["checks"]:
        assert set(check) >= {"id", "title", "status", "summary", "fix", "details"}
        if check["status"] in ("warn", "fail"):
            assert check["fix"]["text"], check["id"]


def test_selected_checks_only(nvml):
    nvml("gpu_lost")
    result = invoke("doctor", "gpu.inventory", "--json")
    doc = json.loads(result.stdout)
    assert [c["id"] for c in doc["checks"]] == ["gpu.inventory"]
    assert result.exit_code == 1


def test_verbose_shows_details(nvml):
    nvml("other_process_memory")
    result = invoke("doctor", "gpu.memory", "-v")
    assert '"pid": 4242' in result.output


SCRIPT = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))


@pytest.mark.skipif(not Path(SCRIPT).is_file(), reason="the envcheck console script is not installed")
def test_installed_console_script_runs_quick_doctor_as_a_real_process():
    env = {k: v for k, v in os.environ.items() if k not in ("ENVCHECK_SPEC",)}
    proc = subprocess.run(
        [SCRIPT, "doctor", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "envcheck.doctor/1"
    assert proc.returncode == (1 if doc["status"] == "fail" else 0)
    # This machine has no NVIDIA driver, or a real one: either way NVML's verdict is there.
    assert any(c["id"] == "driver.nvml" for c in doc["checks"])
    # --quick must never import torch: the healthcheck runs every 30 s.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, envcheck.cli, envcheck.doctor.checks; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "False"


def test_python_dash_m_envcheck():
    proc = subprocess.run([sys.executable, "-m", "envcheck", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "envcheck" in proc.stdout


def test_secret_values_never_reach_the_report(nvml, monkeypatch):
    """Even where a secret leaks into a probe's text (here: a fix command that echoes an environment
    variable), the JSON and text reports print it redacted."""
    nvml("healthy_multi_gpu")
    secret = "hf_abcdefghijklmnopqrstuvwxyz0123"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"GPU-{secret}")
    for args in (["doctor", "--json"], ["doctor", "-v"]):
        result = CliRunner().invoke(main, args)
        assert secret not in result.output
        assert "<redacted>" in result.output


def test_the_command_list_is_each_commands_own_help_without_importing_it() -> None:
    """``envcheck --help`` lists the commands from the lines in envcheck.cli.COMMANDS (so it imports none of
    them): each line must stay the start of that command's own help, and every command must load."""
    from envcheck.cli import COMMANDS, main

    ctx = click.Context(main)
    for name, (_, line) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        assert " ".join((command.help or "").split()).startswith(line.rstrip(".")), name


def test_envcheck_alone_shows_help_and_exits_0() -> None:
    """What a new user types first is not a usage error."""
    result = invoke()
    assert result.exit_code == 0 and result.output.startswith("Usage: ") and "Commands:" in result.output


def test_the_command_list_says_each_line_whole_at_80_columns() -> None:
    from envcheck.cli import COMMANDS

    result = CliRunner().invoke(main, ["--help"], terminal_width=80)
    listing = " ".join(result.output.split("Commands:")[1].split())
    assert "..." not in listing
    for name, (_, line) in COMMANDS.items():
        assert f"{name} {line}" in listing, name


def test_the_text_report_starts_with_a_heading_and_each_area_has_one(nvml):
    """``envcheck doctor | head -1`` shows a heading, not an empty line; --require-gpu adds its check under
    the one GPUs heading; --list-checks shows docstrings without reStructuredText's double backticks."""
    nvml("healthy_multi_gpu")
    result = invoke("doctor", "--quick", "--require-gpu")
    lines = result.output.splitlines()
    assert lines[0] == "Host"
    headings = [line for line in lines if line and not line.startswith(" ") and "(" not in line]
    assert len(headings) == len(set(headings)) and "GPUs" in headings, headings
    listed = invoke("doctor", "--list-checks").output
    assert listed.splitlines()[0].startswith("Host") and "``" not in listed
