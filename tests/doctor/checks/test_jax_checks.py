"""The jax area through the installed command: the real JAX (CPU jaxlib, installed for the session into a
directory put on PYTHONPATH) with no GPU and over fake NVML GPUs, a JAX whose import hangs or crashes, and the
messages of jax-ml/jax#18032 and of JAX's CUDA version check (tests/fake_jax), which no CPU machine shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_terminal import ENVCHECK, NVML_SITE

FAKE_JAX = Path(__file__).resolve().parents[2] / "fake_jax"


#: The JAX these tests install: the release whose CPU build and version checks they were written against.
JAX_VERSION = "0.10.2"


def _unavailable(reason: str) -> None:
    """Skip where pip cannot get JAX; under CI fail instead, so that a CI that lost it does not pass quietly."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs the real JAX for these tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_jax(request: pytest.FixtureRequest) -> Path:
    """A directory holding the real jax and jaxlib (CPU) and the two small packages they import (numpy is the
    test environment's), installed once and kept in pytest's cache; the tests skip where pip cannot get them
    (and fail under CI)."""
    site = Path(request.config.cache.mkdir(f"real-jax-site-{JAX_VERSION}"))
    if not (site / "jax" / "__init__.py").is_file() or not (site / "jaxlib").is_dir():
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                 f"jax=={JAX_VERSION}", f"jaxlib=={JAX_VERSION}", "ml_dtypes", "opt_einsum"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            _unavailable("pip could not install jax and jaxlib within 10 minutes")
        if proc.returncode:
            _unavailable(f"pip could not install jax and jaxlib: {proc.stderr.strip().splitlines()[-1:]}")
    check = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(site)}, timeout=120)  # fmt: skip
    if check.returncode:
        _unavailable(f"the installed jax does not import here: {check.stderr.strip().splitlines()[-1:]}")
    return site


def doctor(*paths: Path | str, scenario: str | None = "no_gpus", **extra: str) -> tuple[dict[str, dict], dict]:
    """``envcheck doctor jax --json`` with ``paths`` on PYTHONPATH (and the fake NVML ``scenario``): by check id,
    and the whole report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVCHECK_", "JAX_", "FAKE_JAX"))}
    path = [str(p) for p in paths] + ([str(NVML_SITE)] if scenario else [])
    env.update(PYTHONPATH=os.pathsep.join(path), **({"ENVCHECK_FAKE_NVML": scenario} if scenario else {}), **extra)
    env.pop("PYTHONPATH") if not path else None
    proc = subprocess.run([ENVCHECK, "doctor", "jax", "--json"], capture_output=True, text=True, env=env,
                          timeout=120, cwd="/")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    return {c["id"]: c for c in report["checks"]}, report


def test_without_jax_every_check_skips_saying_so() -> None:
    checks, report = doctor(scenario="healthy_multi_gpu")
    assert set(checks) == {"jax.backend", "jax.cuda_plugin", "jax.with_torch"}
    for result in checks.values():
        assert result["status"] == "skip" and "JAX is not installed" in result["summary"], result
    assert report["exit_code"] == 0


def test_real_jax_on_a_machine_without_a_gpu_runs_on_the_cpu(real_jax: Path) -> None:
    checks, _ = doctor(real_jax, scenario="no_gpus")
    backend = checks["jax.backend"]
    assert backend["status"] == "ok", backend
    assert "runs on cpu (1 device)" in backend["summary"] and "no NVIDIA GPU" in backend["summary"]
    # JAX did not look at any CUDA library: nothing is claimed about them.
    assert checks["jax.cuda_plugin"]["status"] == "skip"
    assert "no JAX CUDA plugin" in checks["jax.cuda_plugin"]["summary"]
    # torch (the test environment's CPU build) imported first changes nothing here.
    assert checks["jax.with_torch"]["status"] == "ok", checks["jax.with_torch"]
    assert "torch 2." in checks["jax.with_torch"]["summary"] and "as alone" in checks["jax.with_torch"]["summary"]
    print(f"jax child: {backend['details']['duration_s']:.2f} s, import {backend['details']['import_s']:.2f} s")


def test_real_cpu_jax_beside_a_gpu_fails_with_the_plugin_for_the_drivers_cuda(real_jax: Path) -> None:
    checks, report = doctor(real_jax, scenario="healthy_multi_gpu")
    backend = checks["jax.backend"]
    version = backend["details"]["jax"]
    assert backend["status"] == "fail" and report["exit_code"] == 1
    assert "runs on cpu (1 device) while NVML counts 4 NVIDIA GPUs" in backend["summary"]
    assert "no JAX CUDA plugin is installed" in backend["summary"]
    # The fake driver runs CUDA 12: the CUDA 12 plugin, at the installed jax's version.
    assert backend["fix"]["command"] == f'pip install -U "jax[cuda12]=={version}"'


def test_a_jax_kept_on_the_cpu_on_purpose_is_not_a_failure(real_jax: Path) -> None:
    for setting in ({"JAX_PLATFORMS": "cpu"}, {"CUDA_VISIBLE_DEVICES": "-1"}):
        checks, _ = doctor(real_jax, scenario="healthy_multi_gpu", **setting)
        backend = checks["jax.backend"]
        assert backend["status"] == "ok" and "as this environment asks" in backend["summary"], (setting, backend)


def test_without_nvml_a_cpu_jax_is_not_judged_against_a_gpu(real_jax: Path) -> None:
    checks, _ = doctor(real_jax, scenario="no_library")
    assert checks["jax.backend"]["status"] == "skip" and "cannot be judged" in checks["jax.backend"]["summary"]


@pytest.mark.parametrize(
    ("mode", "words"),
    [("hang", "JAX hung: import jax did not finish within 3 s"), ("crash", "JAX crashed the Python interpreter")],
)
def test_a_jax_that_hangs_or_crashes_at_import_is_a_verdict(mode: str, words: str) -> None:
    started = time.monotonic()
    checks, report = doctor(FAKE_JAX, FAKE_JAX=mode, ENVCHECK_JAX_TIMEOUT="3")
    assert time.monotonic() - started < 60
    backend = checks["jax.backend"]
    assert backend["status"] == "fail" and words in backend["summary"], backend
    assert "fake_jax/jax/__init__.py" in (backend["details"]["where"] or ""), backend["details"]
    if mode == "crash":
        assert "SIGSEGV" in backend["summary"]
    # JAX alone never answered: the other checks have nothing to compare or read, and say where the verdict is.
    for other in ("jax.with_torch", "jax.cuda_plugin"):
        assert checks[other]["status"] == "skip" and "see jax.backend" in checks[other]["summary"], checks[other]


def test_torch_imported_first_pushing_jax_to_the_cpu_fails_naming_the_order_and_cudnn() -> None:
    checks, _ = doctor(FAKE_JAX, scenario="healthy_multi_gpu", FAKE_JAX="torch_cudnn")
    assert checks["jax.backend"]["status"] == "ok" and "gpu (4 devices)" in checks["jax.backend"]["summary"]
    result = checks["jax.with_torch"]
    assert result["status"] == "fail", result
    assert "imported first, JAX runs on cpu (1 device); alone it runs on gpu (4 devices)" in result["summary"]
    assert "cuDNN 8.7.0 is loaded, JAX needs at least 8.8.0" in result["summary"]
    assert result["fix"]["command"] == 'pip install -U "nvidia-cudnn-cu12>=8.8.0"'
    assert "import jax before torch" in result["fix"]["text"]


def test_jaxs_own_cuda_version_check_fails_naming_the_versions_and_the_wheel() -> None:
    checks, _ = doctor(FAKE_JAX, scenario="healthy_multi_gpu", FAKE_JAX="outdated")
    plugin = checks["jax.cuda_plugin"]
    assert plugin["status"] == "fail", plugin
    assert "cuDNN 9.1.0 is loaded, JAX needs at least 9.12.0" in plugin["summary"]
    assert plugin["fix"]["command"] == 'pip install -U "nvidia-cudnn-cu12>=9.12.0"'
    backend = checks["jax.backend"]
    assert backend["status"] == "fail" and "failed the version check" in backend["summary"]


@pytest.mark.parametrize(
    ("message", "signature", "checks"),
    [
        ("CUDA backend failed to initialize: Found cuDNN version 8700, but JAX was built against version 8800",
         "jax.cuda_backend", {"jax.cuda_plugin", "jax.with_torch"}),
        ("An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not installed. Falling back to "
         "cpu.", "jax.cuda_backend", {"jax.backend", "jax.cuda_plugin"}),
    ],
)  # fmt: skip
def test_explain_names_the_jax_checks_for_the_pasted_messages(message: str, signature: str, checks: set) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    proc = subprocess.run([ENVCHECK, "explain", message, "--json"], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    [match] = json.loads(proc.stdout)["matches"]
    assert match["id"] == signature and checks <= set(match["checks"])
    # JAX is not installed here: the checks skip, and the cause is not claimed seen.
    assert match["verdict"] == "not_seen" and proc.returncode == 0
