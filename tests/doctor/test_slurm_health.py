"""``envcheck healthcheck --slurm [--drain]`` and the Slurm examples, with fakes: no Slurm runs here. The
installed command runs over the fake NVML with a fake ``scontrol`` first on PATH that records its argv
(and can fail or hang); the sbatch file runs under a fake ``srun`` that plays two nodes on this host;
slurm.conf lines are read statically."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envcheck.doctor import health
from envcheck.doctor.health import SCONTROL_TIMEOUT_S, SLURM_MAX_DEADLINE_S, drain_node, drain_reason, slurm_node_name
from tests.cli.test_terminal import ENVCHECK, env_with, run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "slurm"
ECC_REASON = "envcheck: gpu.ecc: GPU 1 (00000000:19:00.0): 3 uncorrected ECC errors since boot, 7 over its life"

FAKE_SCONTROL = """#!/bin/bash
# records its argv (one word per line, then a blank line) and answers as $SCONTROL_MODE says
printf '%s\\n' "$@" >> "$SCONTROL_LOG"; echo >> "$SCONTROL_LOG"
case "${SCONTROL_MODE:-ok}" in
    fail) echo "slurm_update error: Invalid node name specified" >&2; exit 1 ;;
    hang) sleep 60 ;;
esac
"""


@pytest.fixture
def scontrol(tmp_path):
    """A fake scontrol on PATH; returns (PATH value, a function giving the argv of every call)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    log = tmp_path / "scontrol.log"

    def calls() -> list[list[str]]:
        text = log.read_text() if log.exists() else ""
        return [block.split("\n") for block in text.split("\n\n") if block.strip()]

    path = f"{bin_dir}{os.pathsep}{Path(ENVCHECK).parent}{os.pathsep}{os.environ['PATH']}"
    return {"PATH": path, "SCONTROL_LOG": str(log)}, calls


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return lines[0]


def test_a_failed_check_drains_this_node_with_the_check_as_the_reason(scontrol):
    env, calls = scontrol
    proc = run(
        "healthcheck", "--slurm", "--drain",
        ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap", SLURMD_NODENAME="gpu-07", **env,
    )  # fmt: skip
    assert proc.returncode == 1
    line = one_line(proc)
    assert line.startswith("unhealthy: gpu.ecc: GPU 1 (00000000:19:00.0): 3 uncorrected ECC errors")
    assert line.endswith("; drained gpu-07")
    # argv, not a shell line: the reason is one word, spaces and all
    assert calls() == [["update", "nodename=gpu-07", "state=drain", f"reason={ECC_REASON}"]]


def test_without_drain_a_failure_is_exit_1_and_scontrol_is_never_run(scontrol):
    env, calls = scontrol
    proc = run("healthcheck", "--slurm", ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap", **env)
    assert proc.returncode == 1 and one_line(proc).startswith("unhealthy: gpu.ecc:")
    assert calls() == []


def test_a_healthy_node_is_exit_0_and_not_drained(scontrol):
    env, calls = scontrol
    proc = run("healthcheck", "--slurm", "--drain", ENVCHECK_FAKE_NVML="healthy_multi_gpu", **env)
    assert proc.returncode == 0 and one_line(proc).startswith("healthy: 4 GPU(s) answer")
    assert calls() == []


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"ENVCHECK_FAKE_CRASH": "1"}, "envcheck could not judge this node: envcheck crashed: RuntimeError"),
        ({"ENVCHECK_SPEC": "/nonexistent/lab.toml"}, "envcheck could not judge this node: lab spec unusable"),
    ],
    ids=["envcheck crashed", "spec unusable"],
)
def test_envcheck_s_own_trouble_never_drains_and_exits_0(scontrol, extra, says):
    """A Prolog exiting non-zero drains the node: a bug in envcheck or a typo in a spec must not drain
    every node of the cluster."""
    env, calls = scontrol
    proc = run("healthcheck", "--slurm", "--drain", ENVCHECK_FAKE_NVML="healthy_multi_gpu", **env, **extra)
    assert proc.returncode == 0 and one_line(proc).startswith(says)
    assert calls() == []


def test_a_failing_scontrol_is_reported_not_a_traceback(scontrol):
    env, calls = scontrol
    proc = run(
        "healthcheck", "--slurm", "--drain",
        ENVCHECK_FAKE_NVML="gpu_lost", SLURMD_NODENAME="gpu-07", SCONTROL_MODE="fail", **env,
    )  # fmt: skip
    assert proc.returncode == 1
    assert one_line(proc).endswith(
        "; could not drain gpu-07: scontrol exited 1: slurm_update error: Invalid node name specified"
    )
    assert len(calls()) == 1


def test_a_hanging_or_missing_scontrol_is_bounded_and_said(scontrol, monkeypatch):
    env, _ = scontrol
    monkeypatch.setattr(health, "SCONTROL_TIMEOUT_S", 0.5)
    started = time.monotonic()
    drained, said = drain_node(
        "envcheck: x: y", {**os.environ, **env, "SCONTROL_MODE": "hang", "SLURMD_NODENAME": "n1"}
    )
    assert not drained and said == "could not drain n1: scontrol did not answer within 0.5 s"
    assert time.monotonic() - started < 20  # not the 60 s the fake scontrol sleeps, on a loaded host too
    drained, said = drain_node("r", {"PATH": "/nonexistent", "SLURMD_NODENAME": "n1"})
    assert not drained and said.startswith("could not drain n1: cannot run scontrol:")


def test_the_reason_is_one_short_line_whatever_the_summary_holds():
    reason = drain_reason('envcheck: spec.x: a "quoted"\nsecond line\twith a tab ' + "x" * 300)
    assert "\n" not in reason and "\t" not in reason and '"' not in reason
    assert reason.startswith("envcheck: spec.x: a 'quoted' second line with a tab x")
    assert len(reason.encode()) <= 120 and reason.endswith("...")


def test_the_node_name_is_slurmd_s_else_the_short_host_name():
    import socket

    assert slurm_node_name({"SLURMD_NODENAME": "gpu-07"}) == "gpu-07"
    assert slurm_node_name({}) == socket.gethostname().split(".")[0]


def test_the_run_is_bounded_well_inside_slurm_s_60_s():
    # the checks' deadline, then scontrol's bound, then start-up and the report: 30 + 10 leaves 20 s
    assert SLURM_MAX_DEADLINE_S + SCONTROL_TIMEOUT_S <= 40
    refused = run("healthcheck", "--slurm", "--deadline", "45", ENVCHECK_FAKE_NVML="healthy_multi_gpu")
    # a wrong call is envcheck's own trouble: said, never a drain (a Prolog's non-zero exit drains)
    assert refused.returncode == 0 and "at most 30 s" in one_line(refused)
    assert one_line(refused).startswith("envcheck could not judge this node: envcheck healthcheck was called wrongly")
    started = time.monotonic()
    ok = run("healthcheck", "--slurm", "--deadline", "30", ENVCHECK_FAKE_NVML="healthy_multi_gpu")
    assert ok.returncode == 0 and time.monotonic() - started < 30


@pytest.mark.parametrize("wrong", [["--bogus"], ["--deadline", "nan"], ["--deadline", "-5"], ["--format", "yaml"]])
def test_a_wrong_call_with_slurm_never_drains_and_says_so_on_stderr(scontrol, wrong):
    env, calls = scontrol
    proc = run("healthcheck", "--slurm", "--drain", *wrong, ENVCHECK_FAKE_NVML="gpu_lost", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert one_line(proc).startswith("envcheck could not judge this node: envcheck healthcheck was called wrongly")
    assert proc.stderr.startswith("envcheck: error: ") and proc.stderr.count("\n") == 1
    assert calls() == []


def test_drain_needs_slurm():
    proc = run("healthcheck", "--drain", ENVCHECK_FAKE_NVML="healthy_multi_gpu")
    assert proc.returncode == 1 and "--drain drains a Slurm node: it needs --slurm" in one_line(proc)


# -- the examples ------------------------------------------------------------------------------------------


def slurm_conf() -> dict[str, str]:
    """slurm.conf.example's settings (``Key=value`` lines; comments and blank lines skipped)."""
    settings = {}
    for line in (EXAMPLES / "slurm.conf.example").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_slurm_conf_runs_the_wrapper_as_health_check_and_prolog():
    conf = slurm_conf()
    assert set(conf) == {"HealthCheckProgram", "HealthCheckInterval", "HealthCheckNodeState", "Prolog"}
    assert Path(conf["HealthCheckProgram"]).name == "envcheck-healthcheck.sh" == Path(conf["Prolog"]).name
    assert conf["HealthCheckProgram"].startswith("/")  # slurmd runs it without a PATH search
    assert int(conf["HealthCheckInterval"]) >= 60
    # slurm.conf(5): HealthCheckNodeState takes these words, comma-separated
    states = conf["HealthCheckNodeState"].split(",")
    assert set(states) <= {"ALLOC", "ANY", "CYCLE", "IDLE", "NONDRAINED_IDLE", "MIXED"}


def test_the_wrapper_drains_through_the_installed_command(scontrol, tmp_path):
    env, calls = scontrol
    wrapper = EXAMPLES / "envcheck-healthcheck.sh"
    assert subprocess.run(["bash", "-n", str(wrapper)], timeout=30).returncode == 0
    textfile = tmp_path / "envcheck.prom"
    proc = subprocess.run(
        [str(wrapper)], capture_output=True, text=True, timeout=60, cwd="/",
        env=env_with(
            ENVCHECK=ENVCHECK, ENVCHECK_FAKE_NVML="gpu_lost", SLURMD_NODENAME="gpu-03",
            ENVCHECK_TEXTFILE=str(textfile), **env,
        ),
    )  # fmt: skip
    assert proc.returncode == 1 and one_line(proc).endswith("; drained gpu-03")
    [argv] = calls()
    assert argv[:3] == ["update", "nodename=gpu-03", "state=drain"] and argv[3].startswith("reason=envcheck: gpu.")
    assert "envcheck_gpu_up" in textfile.read_text()  # the same run also refreshed the textfile


def wrapper_options() -> list[str]:
    """The envcheck options the wrapper passes (its ``args=(...)`` and ``args+=(...)`` lines)."""
    text = (EXAMPLES / "envcheck-healthcheck.sh").read_text()
    words = " ".join(re.findall(r"args\+?=\(([^)]*)\)", text)).split()
    return [w for w in words if w.startswith("--")]


def test_every_option_the_examples_use_exists():
    from click.testing import CliRunner

    from envcheck.cli import main

    sbatch = (EXAMPLES / "envcheck-onboard.sbatch").read_text()
    used = {
        "healthcheck": wrapper_options(),
        "doctor": re.findall(r"envcheck doctor .*?(--\w[\w-]*)", sbatch),
        "bench": re.findall(r"envcheck bench .*?(--\w[\w-]*)", sbatch),
        "fleet": re.findall(r"envcheck fleet (--\w[\w-]*)", sbatch),
    }
    assert used["healthcheck"] == ["--slurm", "--drain", "--require-gpu", "--deadline", "--output"]
    for command, options in used.items():
        assert options, command
        helped = CliRunner().invoke(main, [command, "--help"])
        assert helped.exit_code == 0, helped.output
        for option in options:
            assert option in helped.output, (command, option)


FAKE_SRUN = """#!/bin/bash
# srun [--option=value]... COMMAND: one task on each of $FAKE_NODES, one after another, on this host, each
# with the NVML scenario the test gave that node (FAKE_SCENARIO_<node>) and the variables srun sets.
while [[ "$1" == --* ]]; do echo "$1" >> "$SRUN_LOG"; shift; done
rc=0
i=0
for node in $FAKE_NODES; do
    scenario="FAKE_SCENARIO_$node"
    SLURMD_NODENAME=$node SLURM_NODEID=$i SLURM_PROCID=$i ENVCHECK_FAKE_NVML=${!scenario} "$@" > "out.$node" 2>&1 \\
        || rc=$?
    i=$((i + 1))
done
exit $rc
"""


def test_the_onboarding_sbatch_runs_doctor_and_bench_per_node_then_fleet(tmp_path):
    sbatch = EXAMPLES / "envcheck-onboard.sbatch"
    assert subprocess.run(["bash", "-n", str(sbatch)], timeout=30).returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = env_with(
        PATH=f"{bin_dir}{os.pathsep}{Path(ENVCHECK).parent}{os.pathsep}{os.environ['PATH']}",
        SLURM_JOB_ID="4242",
        FAKE_NODES="node1 node2",
        FAKE_SCENARIO_node1="healthy_multi_gpu",
        FAKE_SCENARIO_node2="ecc_uncorrected_row_remap",
        SRUN_LOG=str(tmp_path / "srun.log"),
        # what these tests can afford: the quick doctor, and one short benchmark on the CPU
        ENVCHECK_DOCTOR_ARGS="--quick",
        ENVCHECK_BENCH_ARGS="--device cpu --quick --only memory.d2d",
    )
    proc = subprocess.run(["bash", str(sbatch)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    reports = tmp_path / "envcheck-onboard-4242"
    names = sorted(p.name for p in reports.iterdir())
    assert names == ["node1.bench.json", "node1.doctor.json", "node2.bench.json", "node2.doctor.json"], (
        proc.stderr,
        [(tmp_path / f"out.{n}").read_text() for n in ("node1", "node2")],
    )
    assert json.loads((reports / "node1.doctor.json").read_text())["status"] == "ok"
    assert json.loads((reports / "node2.doctor.json").read_text())["status"] == "fail"
    assert json.loads((reports / "node2.bench.json").read_text())["schema"] == "envcheck.bench/1"
    # node2 failed its doctor: the script goes on to the fleet, whose exit code is the job's
    assert "some nodes reported problems" in proc.stderr
    assert "--kill-on-bad-exit=0" in (tmp_path / "srun.log").read_text()
    fleet = json.loads((tmp_path / "envcheck-onboard-4242.fleet.json").read_text())
    assert fleet["schema"].startswith("envcheck.fleet/")
    assert proc.returncode == 1 and "gpu.ecc" in proc.stdout, proc.stdout[-2000:]


def test_the_wrapper_and_sbatch_files_are_executable_scripts():
    for name in ("envcheck-healthcheck.sh", "envcheck-onboard.sbatch"):
        path = EXAMPLES / name
        assert path.read_text().startswith("#!/bin/bash\n") and os.access(path, os.X_OK), name
    assert sys.platform != "win32"
