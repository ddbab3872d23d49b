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
