"""The committed sbatch file, run as Slurm would run it, with a fake ``scontrol`` and a fake ``srun`` on
PATH (no Slurm runs here): ``srun`` starts ``SLURM_NTASKS`` local tasks with the variables Slurm gives
each task of a step, so the script's rendezvous address, the world envcheck reads from those variables,
and rank 0's one report are all real; only the scheduler is not."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.comm.test_comm import ENVCHECK, check_contract, env_with, free_port

SBATCH = Path(__file__).resolve().parents[2] / "examples" / "slurm" / "envcheck-comm.sbatch"

FAKE_SCONTROL = """#!/bin/bash
# scontrol show hostnames LIST: one host per line; this allocation is the loopback host.
[ "$1 $2" = "show hostnames" ] || { echo "fake scontrol: unsupported: $*" >&2; exit 2; }
echo 127.0.0.1
"""

FAKE_SRUN = """#!/bin/bash
# srun [--option=value]... COMMAND: SLURM_NTASKS tasks of one step on this host, as Slurm sets them up.
while [[ "$1" == --* ]]; do echo "$1" >> "$SRUN_LOG"; shift; done
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS=$SLURM_NTASKS "$@" > "out.$i" 2> "err.$i" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""


def test_the_sbatch_file_runs_one_world_and_rank_0_writes_the_report(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = env_with(
        PATH=f"{bin_dir}{os.pathsep}{Path(ENVCHECK).parent}{os.pathsep}{os.environ['PATH']}",
        SLURM_JOB_ID="4242",
        SLURM_JOB_NODELIST="gpu-[01-02]",
        SLURM_NTASKS="3",
        MASTER_PORT=str(free_port()),
        SRUN_LOG=str(tmp_path / "srun.log"),
    )
    # arguments after the file name go to envcheck comm, as `sbatch FILE ARGS...` passes them
    proc = subprocess.run(
        ["bash", str(SBATCH), "--device", "cpu", "--timeout", "30"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stderr, [(tmp_path / f"err.{i}").read_text() for i in range(3)])
    document = json.loads((tmp_path / "envcheck-comm-4242.json").read_text())
    check_contract(document, 3)
    # rank 0 alone reports: its stdout holds the text report, the other ranks print nothing
    assert "3 ranks" in (tmp_path / "out.0").read_text()
    assert (tmp_path / "out.1").read_text() == (tmp_path / "out.2").read_text() == ""
    assert "--kill-on-bad-exit=1" in (tmp_path / "srun.log").read_text()
