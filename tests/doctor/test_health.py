"""The healthcheck's answers are redacted once, as they are delivered: every dialect's line (Docker's, which
``docker inspect`` shows; node-problem-detector's, which ``kubectl describe node`` shows; Slurm's, and the
drain reason ``sinfo -R`` shows) is built from one redacted judgement, through the installed command."""

from __future__ import annotations

import pytest

from tests.cli.test_terminal import run

#: A Hugging Face token shape: secret whatever holds it (envcheck.core.redact).
TOKEN = "hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2"


@pytest.mark.parametrize("dialect", [[], ["--npd"], ["--slurm"]], ids=["docker", "npd", "slurm"])
@pytest.mark.parametrize(
    ("spec", "said"),
    [("[gpu]\ncount = 4\n", "healthy: "), ("[gpu]\ncount = 'eight'\n", "lab spec unusable: ")],
    ids=["spec met", "spec unusable"],
)
def test_a_token_in_the_spec_path_is_redacted_in_every_dialect(tmp_path, dialect, spec, said):
    (tmp_path / TOKEN).mkdir()
    (tmp_path / TOKEN / "lab.toml").write_text(spec)
    proc = run("healthcheck", *dialect, "--spec", f"{TOKEN}/lab.toml", cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    line = proc.stdout.strip()
    assert said in line and "<redacted>/lab.toml" in line, line
    assert TOKEN not in proc.stdout + proc.stderr


def test_the_footer_is_the_wait_the_watcher_saw_not_the_checks_alone():
    from envcheck.doctor.health import Health, docker_line, slurm_verdict

    # The quick checks take milliseconds ("(0.0 s)"); the watcher waited for Python, the imports and the probes.
    document = {"duration_s": 2.46, "checks_duration_s": 0.012, "checks": [], "gpus": []}
    healthy, line = docker_line(Health(document))
    assert healthy and line.endswith("(2.5 s)"), line
    assert slurm_verdict(Health(document)).line.endswith("(2.5 s)")
