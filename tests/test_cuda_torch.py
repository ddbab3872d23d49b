"""The switch for the tests against a real CUDA build of torch: how they skip, and that CI cannot skip them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import cuda_torch

ROOT = Path(__file__).resolve().parent.parent


def test_without_an_interpreter_the_reason_says_how_to_enable_them(monkeypatch):
    monkeypatch.setattr(cuda_torch, "CUDA_TORCH_PYTHON", None)
    reason = cuda_torch.missing_reason()
    assert reason == (
        "no CUDA build of torch named: run scripts/test.sh, or set ENVCHECK_CUDA_TORCH_PYTHON to the python of an "
        "environment with a CUDA build of torch"
    )


def test_an_interpreter_that_cannot_run_is_named(monkeypatch, tmp_path):
    missing = str(tmp_path / "nothing" / "python")
    monkeypatch.setattr(cuda_torch, "CUDA_TORCH_PYTHON", missing)
    assert cuda_torch.missing_reason().startswith(f"ENVCHECK_CUDA_TORCH_PYTHON is not an executable python ({missing})")
    monkeypatch.setattr(cuda_torch, "CUDA_TORCH_PYTHON", sys.executable)
    assert cuda_torch.missing_reason() is None


@pytest.mark.parametrize(("ci", "code"), [("true", 4), ("", 0)])
def test_under_ci_a_missing_cuda_build_stops_the_run(ci, code):
    env = {k: v for k, v in os.environ.items() if k != cuda_torch.ENV} | {"CI": ci}
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"{__file__}::test_an_interpreter_that_cannot_run_is_named",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    if code:
        assert "CI needs the CUDA build of torch: no CUDA build of torch named" in proc.stderr
