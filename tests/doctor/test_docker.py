"""The Dockerfile, tested without a Docker engine (none runs here): it parses, its base is pinned, it
runs as a non-root user, holds no secrets, and its HEALTHCHECK command — run for real, through
``sh -c`` exactly as Docker runs it — only ever exits 0 or 1 and prints one line."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from envcheck.core.redact import is_secret_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
NVML_SITE = Path(__file__).resolve().parents[1] / "nvml_site"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped (Dockerfile syntax)."""
    parsed, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        parsed.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return parsed


def one(name: str) -> str:
    found = [args for word, args in instructions() if word == name]
    assert len(found) == 1, f"expected one {name}, found {len(found)}"
    return found[0]


def seconds(text: str) -> float:
    return sum(float(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", text))


def healthcheck_parts() -> tuple[dict[str, str], str]:
    options, command = one("HEALTHCHECK").split(" CMD ", 1)
    return dict(re.findall(r"--([a-z-]+)=(\S+)", options)), command.strip()


def test_dockerfile_parses_into_known_instructions():
    known = {"FROM", "LABEL", "ENV", "ARG", "COPY", "RUN", "USER", "WORKDIR", "HEALTHCHECK", "CMD", "ENTRYPOINT"}
    words = [word for word, _ in instructions()]
    assert words[0] == "FROM" and set(words) <= known


def test_base_image_is_an_official_pytorch_cuda_runtime_pinned_by_tag():
    image = one("FROM")
    repo, _, tag = image.partition(":")
    assert repo == "pytorch/pytorch"
    assert tag and tag != "latest" and re.fullmatch(r"\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", tag), tag


def test_runs_as_a_non_root_user_after_installing():
    words = [word for word, _ in instructions()]
    user = one("USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")


def test_installing_envcheck_cannot_replace_the_images_torch():
    run = one("RUN")
    assert "--constraint /tmp/keep-torch.txt" in run and 'test "$before" = "$after"' in run
    install = re.search(r"pip install ([^;]+);", run).group(1)
    assert "torch" not in install.replace("keep-torch", "")


def test_nothing_secret_in_the_image():
    for word, args in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_.]*)=", args):
                assert not is_secret_name(name), f"{word} {name} looks like a secret"
    text = DOCKERFILE.read_text()
    assert not re.search(r"(?i)(token|password|secret|api[_-]?key)\s*=", text)


def test_healthcheck_declares_timing_that_the_quick_doctor_fits():
    options, command = healthcheck_parts()
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    deadline = float(re.search(r"--deadline (\d+(?:\.\d+)?)", command).group(1))
    # The doctor's own deadline ends well before Docker kills the check, so a hung probe is reported.
    assert deadline + 5 <= seconds(options["timeout"]) < seconds(options["interval"])
    assert command.startswith("envcheck healthcheck") and command.endswith("|| exit 1")


def run_healthcheck(extra_env: dict[str, str], command: str | None = None) -> subprocess.CompletedProcess:
    """The HEALTHCHECK CMD, through `sh -c` as Docker runs it, with the installed envcheck on PATH."""
    command = command or healthcheck_parts()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVCHECK_", "NVIDIA_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(NVML_SITE)
    env.update(extra_env)
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=120, cwd="/")


needs_script = pytest.mark.skipif(
    not (Path(sys.executable).parent / "envcheck").is_file(), reason="the envcheck console script is not installed"
)


@needs_script
@pytest.mark.parametrize(
    ("condition", "env", "code", "starts"),
    [
        ("healthy", {"ENVCHECK_FAKE_NVML": "healthy_multi_gpu"}, 0, "healthy: 4 GPU(s) answer"),
        ("failing", {"ENVCHECK_FAKE_NVML": "ecc_uncorrected_row_remap"}, 1, "unhealthy: gpu.ecc: GPU 1"),
        ("gpu lost", {"ENVCHECK_FAKE_NVML": "gpu_lost"}, 1, "unhealthy: gpu.inventory: GPU 1 lost"),
        (
            "no gpus passed in",
            {"ENVCHECK_FAKE_NVML": "no_library"},
            1,
            "unhealthy: gpu.required: no NVIDIA GPU answers",
        ),
        (
            "crashed",
            {"ENVCHECK_FAKE_NVML": "healthy_multi_gpu", "ENVCHECK_FAKE_CRASH": "1"},
            1,
            "unhealthy: envcheck crashed: RuntimeError: simulated crash",
        ),
    ],  # fmt: skip
)
def test_healthcheck_exit_codes(condition, env, code, starts):
    proc = run_healthcheck(env)
    assert proc.returncode == code, (condition, proc.stdout, proc.stderr)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), proc.stdout


@needs_script
def test_healthcheck_with_a_broken_spec_is_unhealthy_not_2(tmp_path):
    spec = tmp_path / "lab.toml"
    spec.write_text("[gpu]\ncount = 'eight'\n")
    proc = run_healthcheck({"ENVCHECK_FAKE_NVML": "healthy_multi_gpu", "ENVCHECK_SPEC": str(spec)})
    assert proc.returncode == 1
    assert (
        proc.stdout.strip()
        == f"unhealthy: lab spec unusable: {spec}: [gpu] count must be a whole number from 1 to 65536, got 'eight'"
    )


@needs_script
def test_healthcheck_enforces_the_spec(tmp_path):
    spec = tmp_path / "lab.toml"
    spec.write_text('[gpu]\ncount = 8\nname = "NVIDIA H100*"\n')
    proc = run_healthcheck({"ENVCHECK_FAKE_NVML": "healthy_multi_gpu", "ENVCHECK_SPEC": str(spec)})
    assert proc.returncode == 1
    assert proc.stdout.startswith("unhealthy: spec.gpu_count: expected 8 GPUs, found 4 GPUs")


@needs_script
def test_healthcheck_usage_error_still_exits_1():
    proc = run_healthcheck({"ENVCHECK_FAKE_NVML": "healthy_multi_gpu"}, "envcheck healthcheck --no-such-flag || exit 1")
    assert proc.returncode == 1 and proc.stdout.startswith("unhealthy: envcheck healthcheck was called wrongly")


def test_the_shell_guard_maps_any_other_exit_to_1():
    # What `|| exit 1` is for: a command that dies with 2 (or is missing: 127) still reads as unhealthy.
    _, command = healthcheck_parts()
    guarded = command.replace("envcheck healthcheck --require-gpu --deadline 8", "sh -c 'exit 2'")
    assert subprocess.run(["sh", "-c", guarded], timeout=30).returncode == 1
    missing = command.replace("envcheck", shlex.quote("/nonexistent/envcheck"), 1)
    assert subprocess.run(["sh", "-c", missing], capture_output=True, timeout=30).returncode == 1


def test_the_image_copies_everything_the_package_build_reads():
    copied = " ".join(args for word, args in instructions() if word == "COPY")
    for needed in ("pyproject.toml", "README.md", "LICENSE", "envcheck"):
        assert needed in copied.split(), needed
