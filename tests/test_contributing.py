"""CONTRIBUTING.md's recipes must stay true: every file and module it names exists, and its example check,
pasted into a file of its own, registers and runs through the doctor like any other."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "CONTRIBUTING.md").read_text()


#: The recipe's example command, which is to be written, not found.
EXAMPLE = "storage"


def _source(module: str) -> Path | None:
    path = ROOT / module.replace(".", "/")
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_every_path_and_module_it_names_exists() -> None:
    paths = {p for p in re.findall(r"`((?:envcheck|tests|scripts)/[\w/.]+)`", TEXT) if EXAMPLE not in p}
    modules = {m for m in re.findall(r"`(envcheck(?:\.\w+)+)`", TEXT) if EXAMPLE not in m}
    assert paths and modules
    missing = [p for p in sorted(paths) if not (ROOT / p.rstrip("/")).exists()]
    for module in sorted(modules):
        if _source(module) is None:
            # a name in a module (envcheck.cli.terminal.finish): defined there
            owner, _, name = module.rpartition(".")
            source = _source(owner)
            if source is None or not re.search(rf"^(def|class) {name}\b|^{name}\b", source.read_text(), re.M):
                missing.append(module)
    assert missing == []


def test_the_example_check_runs_through_the_doctor(tmp_path: Path) -> None:
    example = re.search(r"^## Adding a check\n.*?^```python\n(.*?)^```", TEXT, flags=re.M | re.S).group(1)
    check_id = re.search(r'@check\("([\w.]+)"', example).group(1)
    (tmp_path / "example_check.py").write_text(example)
    script = (
        "import sys, example_check\n"
        "from envcheck.doctor.app import DoctorRequest, run_doctor\n"
        f"[r] = run_doctor(DoctorRequest(selection=({check_id!r},))).results\n"
        "print(r.id, r.status.value)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    got_id, status = done.stdout.split()
    assert got_id == check_id and status in ("ok", "warn")
