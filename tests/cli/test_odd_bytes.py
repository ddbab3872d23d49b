"""Bytes that are not UTF-8 are data, not crashes: a host name the kernel holds as any bytes reaches every
format through the installed command, each undecodable byte shown as U+FFFD, and no command stops with
"internal error: UnicodeEncodeError ... surrogates not allowed"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
SITE = ROOT / "tests" / "oddhost_site"

#: name as Python gives it -> as every report shows it.
NAMES = {
    "n\udcffode": "n\ufffdode",  # 0xff: never in UTF-8
    "gpu-\udc80-1": "gpu-\ufffd-1",  # 0x80: a continuation byte with nothing to continue
    "caf\udcc3": "caf\ufffd",  # 0xc3 alone: the first byte of "é" without its second
    "x\udce2\udc82y": "x\ufffd\ufffdy",  # a three-byte sequence cut short
    "hi\ud800gh": "hi\ufffdgh",  # a lone high surrogate (a JSON "\ud800" escape)
}


def run(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env.update(PYTHONPATH=str(SITE), ENVCHECK_FAKE_HOSTNAME=json.dumps(name), PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [ENVCHECK, *args], capture_output=True, text=True, encoding="utf-8", env=env, cwd=tmp_path, timeout=120
    )


@pytest.mark.parametrize("name", NAMES, ids=[ascii(n) for n in NAMES])
def test_every_format_shows_an_undecodable_host_name_replaced(tmp_path: Path, name: str) -> None:
    shown = NAMES[name]
    runs = {
        "healthcheck": ["healthcheck"],
        "prometheus": ["healthcheck", "--format", "prometheus"],
        "healthcheck json": ["healthcheck", "--format", "json"],
        "json": ["doctor", "--quick", "--json"],
        "html": ["doctor", "--quick", "-o", "report.html"],
        "markdown": ["doctor", "--quick", "-o", "report.md"],
    }
    with ThreadPoolExecutor(4) as pool:
        done = dict(zip(runs, pool.map(lambda args: run(tmp_path, name, *args), runs.values()), strict=True))
    for what, proc in done.items():
        assert "internal error" not in proc.stderr, (what, proc.stderr)
        assert proc.returncode in (0, 1), (what, proc.returncode, proc.stderr)
    assert "healthy" in done["healthcheck"].stdout
    assert f'Hostname="{shown}"' in done["prometheus"].stdout
    for what in ("json", "healthcheck json"):
        doc = json.loads(done[what].stdout)
        assert doc["host"]["hostname"] == shown, what
    assert shown in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f"`{shown}`" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_a_node_name_from_the_environment_that_is_not_utf8(tmp_path: Path) -> None:
    """NODE_NAME (what a Kubernetes DaemonSet sets) names the node in the Prometheus textfile: its bytes are
    the OS's too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env["NODE_NAME"] = "rack\udcff7"  # os.fsencode: the byte 0xff in the child's environment
    proc = subprocess.run(
        [ENVCHECK, "healthcheck", "--format", "prometheus", "-o", "node.prom"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert "internal error" not in proc.stderr and proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("healthy")
    assert 'Hostname="rack\ufffd7"' in (tmp_path / "node.prom").read_text(encoding="utf-8")
