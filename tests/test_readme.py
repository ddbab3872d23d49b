"""The README is part of the product: its check list, set-up commands, install name and shell completion
must stay true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from envcheck import __version__
from envcheck.doctor.areas import CHECKS

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_lists_every_check_with_its_description():
    for spec in CHECKS.ordered():
        assert f"| `{spec.id}` | {spec.doc.replace('|', chr(92) + '|')} |" in README, spec.id


def setup_commands() -> list[str]:
    """The commands of the README's "Set up" block: (1) install and run the doctor, (2) run the tests."""
    block = re.search(r"^## Set up\n.*?^```sh\n(.*?)^```", README, flags=re.M | re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_setup_is_two_commands_and_ci_runs_the_second():
    main_job, tests = setup_commands()
    assert main_job == "python3 -m venv .venv && . .venv/bin/activate && pip install . && envcheck doctor"
    assert tests == "bash scripts/test.sh"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == tests  # exactly the README's command, last, after `set -e` and `cd`


def test_the_test_command_installs_the_torch_builds_the_readme_names():
    script = (ROOT / "scripts" / "test.sh").read_text()
    cpu = re.search(r"^CPU_TORCH=(\S+)$", script, flags=re.M).group(1)
    cuda = re.search(r"^CUDA_TORCH=(\S+)$", script, flags=re.M).group(1)
    assert f"the CPU build of torch {cpu}" in README and f"the CUDA build of torch {cuda}" in README
    assert cpu == "2.13.0" and cuda == "2.14.1"
    assert "ENVCHECK_CUDA_TORCH_PYTHON" in script and ".venv-cuda" in script
    assert ".venv-cuda/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_install_name_is_the_distributions_name():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "envcheck-gpu"
    assert project["scripts"] == {"envcheck": "envcheck.cli:main"}
    assert "pip install envcheck-gpu " in README and "pip install 'envcheck-gpu[torch]'" in README
    # The installed distribution carries the package's version (pyproject reads it from envcheck/__init__.py).
    assert metadata.version("envcheck-gpu") == __version__


def test_no_paths_of_a_development_machine():
    for path in (README, (ROOT / "scripts" / "test.sh").read_text(), (ROOT / ".ci" / "run").read_text()):
        assert not re.search(r"(?<![\w.~])/(work|root|tmp|opt)/", path)


needs_script = pytest.mark.skipif(
    not (Path(sys.executable).parent / "envcheck").is_file(), reason="the envcheck console script is not installed"
)


@needs_script
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_commands_in_the_readme_print_a_completion_script(shell):
    assert f"_ENVCHECK_COMPLETE={shell}_source envcheck" in README
    script = completion(f"{shell}_source")
    assert "_envcheck_completion" in script and "_ENVCHECK_COMPLETE=" in script


@needs_script
def test_bash_completion_completes_commands_and_options():
    script = completion("bash_source")
    # What bash does on <TAB>: the completion function fills COMPREPLY from `envcheck` itself.
    probe = 'eval "$1"; COMP_WORDS=($2); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _envcheck_completion envcheck; '
    probe += 'printf "%s\\n" "${COMPREPLY[@]}"'
    for words, expected in (("envcheck do", ["doctor"]), ("envcheck doctor --qui", ["--quick"])):
        proc = subprocess.run(
            ["bash", "-c", probe, "bash", script, words], capture_output=True, text=True, env=script_env(), timeout=60
        )
        assert proc.stdout.split() == expected, (words, proc.stdout, proc.stderr)


def script_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def completion(kind: str) -> str:
    env = {**script_env(), "_ENVCHECK_COMPLETE": kind}
    proc = subprocess.run(["envcheck"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
