"""The healthcheck's dialects never drain, fail or go unknown for envcheck's own trouble, through the
installed command: an ``--output`` file that cannot be written is one line on stderr and every watcher
keeps the verdict it would have had; a node name or a spec path holding ``;`` and newlines still gives
one line, and a node name that is not one plain name is never handed to scontrol."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.test_terminal import run
from tests.doctor.test_slurm_health import one_line, scontrol  # noqa: F401 - scontrol is a fixture

DIALECTS = {"docker": [], "npd": ["--npd"], "slurm": ["--slurm", "--drain"]}
#: (scenario, what each dialect exits with on it): the verdicts the side file must not change.
VERDICTS = {
    "healthy_multi_gpu": {"docker": 0, "npd": 0, "slurm": 0},
    "ecc_uncorrected_row_remap": {"docker": 1, "npd": 1, "slurm": 1},
}


def unwritable(tmp_path: Path, how: str) -> Path:
    """A textfile path envcheck cannot write, made the way ``how`` says."""
    if how == "a directory":
        path = tmp_path / "envcheck.prom"
        path.mkdir()
        return path
    if how == "under a regular file":  # fails for root too
        (tmp_path / "textfile").write_text("not a directory")
        return tmp_path / "textfile" / "envcheck.prom"
    if os.geteuid() == 0:
        pytest.skip("root writes through chmod; the case under a regular file fails for root too")
    directory = tmp_path / "textfile"
    directory.mkdir()
    (directory / "envcheck.prom").write_text("# the last run's\n")
    (directory / "envcheck.prom").chmod(0o444)
    directory.chmod(0o555)
    return directory / "envcheck.prom"


@pytest.mark.parametrize("scenario", list(VERDICTS))
@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize("how", ["a directory", "under a regular file", "a read-only directory"])
def test_a_textfile_that_cannot_be_written_never_changes_the_verdict(scontrol, tmp_path, scenario, dialect, how):  # noqa: F811
    env, calls = scontrol
    path = unwritable(tmp_path, how)
    proc = run(
        "healthcheck", *DIALECTS[dialect], "-o", str(path),
        ENVCHECK_FAKE_NVML=scenario, SLURMD_NODENAME="gpu-07", **env,
    )  # fmt: skip
    try:
        line = one_line(proc)
        assert proc.returncode == VERDICTS[scenario][dialect], (proc.stdout, proc.stderr)
        assert "called wrongly" not in line and "unknown" not in line, line
        assert line.startswith("healthy: " if scenario == "healthy_multi_gpu" else ("gpu.ecc: ", "unhealthy: gpu.ecc:"))
        assert proc.stderr.startswith(f"envcheck: cannot write {path}: ") and proc.stderr.count("\n") == 1
        # Slurm drains for the judged failure, and only for it
        assert len(calls()) == (1 if dialect == "slurm" and scenario != "healthy_multi_gpu" else 0)
    finally:
        if path.parent.exists():
            path.parent.chmod(0o755)


@pytest.mark.parametrize("node", ["gpu-07;\nreboot", "gpu-07; drained gpu-01", "gpu[01-64]", "gpu-01,gpu-02"])
def test_a_node_name_that_is_not_one_plain_name_is_one_line_and_never_drained(scontrol, node):  # noqa: F811
    env, calls = scontrol
    proc = run(
        "healthcheck", "--slurm", "--drain",
        ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap", SLURMD_NODENAME=node, **env,
    )  # fmt: skip
    assert proc.returncode == 1  # the node failed a check: that verdict stands
    line = one_line(proc)
    assert line.startswith("unhealthy: gpu.ecc:")
    assert line.endswith(f"; could not drain {ascii(node)}: not one node's name (scontrol could read it as several)")
    assert calls() == []


def test_a_plain_node_name_is_still_drained_by_an_argv_list(scontrol):  # noqa: F811
    env, calls = scontrol
    proc = run(
        "healthcheck", "--slurm", "--drain",
        ENVCHECK_FAKE_NVML="gpu_lost", SLURMD_NODENAME="node_3.rack-2", **env,
    )  # fmt: skip
    assert proc.returncode == 1 and one_line(proc).endswith("; drained node_3.rack-2")
    [argv] = calls()
    assert argv[:3] == ["update", "nodename=node_3.rack-2", "state=drain"]


@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize(
    ("spec", "said"),
    [("[gpu]\ncount = 4\n", "healthy: "), ("[gpu]\ncount = 'eight'\n", "lab spec unusable: ")],
    ids=["spec met", "spec unusable"],
)
def test_a_spec_path_with_a_semicolon_and_newlines_gives_one_line_in_every_dialect(
    scontrol,  # noqa: F811
    tmp_path,
    dialect,
    spec,
    said,
):
    env, calls = scontrol
    odd = tmp_path / "lab;\nrm -rf\r\n"
    odd.mkdir()
    (odd / "lab.toml").write_text(spec)
    proc = run("healthcheck", *DIALECTS[dialect], "--spec", str(odd / "lab.toml"), SLURMD_NODENAME="n1", **env)
    assert said in one_line(proc)
    # an unusable spec is envcheck's own trouble: Docker unhealthy, NPD unknown, Slurm not judged (exit 0)
    expected = {"docker": 0, "npd": 0, "slurm": 0} if said == "healthy: " else {"docker": 1, "npd": 2, "slurm": 0}
    assert proc.returncode == expected[dialect]
    assert calls() == []
