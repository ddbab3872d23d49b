"""Whatever ``envcheck snapshot`` writes is a spec its own doctor accepts (exit 0 or 1, never 2).

The packages are real distributions on ``sys.path`` (a fake site with ``.dist-info`` folders), the
GPUs the fake NVML's, and the commands the installed console script.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcheck.cli import main
from envcheck.spec.find import load_spec
from tests.spec.test_pathological import envcheck, needs_script

NVML_SITE = Path(__file__).resolve().parents[1] / "nvml_site"
#: (distribution name as its METADATA spells it, version)
INSTALLED = [
    ("zope.interface", "7.2"),
    ("backports.zoneinfo", "0.2.1"),
    ("Foo_Bar-baz.Qux", "1.0.post2"),
    ("oldpkg", "2004d"),  # an old sdist's version, not PEP 440: no specifier can pin it
]
ASKED = [
    "zope.interface",
    "backports.zoneinfo",
    "Foo_Bar-baz.Qux",
    "foo-bar-baz-qux",  # the same distribution again, as pip normalises it
    "oldpkg",
    "NumPy",  # also a key package, in other case
    "not-installed-pkg",
    "a b",
    "x\ny",
    "café",
]


def fake_site(where: Path) -> Path:
    site = where / "site"
    for name, version in INSTALLED:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return site


def package_args(names: list[str]) -> list[str]:
    return [arg for name in names for arg in ("--package", name)]


@needs_script
def test_snapshot_with_names_that_need_quoting_is_accepted_by_its_own_doctor(tmp_path):
    env = {"PYTHONPATH": f"{fake_site(tmp_path)}{os.pathsep}{NVML_SITE}", "ENVCHECK_FAKE_NVML": "healthy_multi_gpu"}
    written = envcheck("snapshot", "-o", "lab.toml", *package_args(ASKED), cwd=tmp_path, **env)
    assert written.returncode == 0, written.stderr
    text = (tmp_path / "lab.toml").read_text()
    lines = text.splitlines()
    assert '"zope.interface" = "==7.2"' in lines
    assert '"backports.zoneinfo" = "==0.2.1"' in lines
    assert '"Foo_Bar-baz.Qux" = "==1.0.post2"' in lines
    assert "# oldpkg: installed version '2004d' is not PEP 440, so not pinned" in lines
    assert "# not-installed-pkg: not installed on the reference machine" in lines
    assert "# 'a b': not a distribution name, so not pinned" in lines
    assert "# 'x\\ny': not a distribution name, so not pinned" in lines
    assert "# 'café': not a distribution name, so not pinned" in lines
    assert sum(line.lower().startswith("numpy =") for line in lines) == 1
    assert sum("foo" in line.lower() for line in lines) == 1

    doctor = envcheck("doctor", "--quick", "--json", "--spec", "lab.toml", cwd=tmp_path, **env)
    assert doctor.returncode in (0, 1) and doctor.stderr == ""
    checks = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}
    for check_id in (
        "spec.package.zope-interface",
        "spec.package.backports-zoneinfo",
        "spec.package.foo-bar-baz-qux",
        "spec.package.numpy",
        "spec.gpu_name",
        "spec.gpu_count",
        "spec.driver",
        "spec.host_ram",
    ):
        assert checks[check_id]["status"] == "ok", checks[check_id]  # fmt: skip

    # Another machine, without those packages and GPUs: the same spec fails there (1), it is not unusable (2).
    elsewhere = envcheck("doctor", "--quick", "--json", "--spec", "lab.toml", cwd=tmp_path)
    assert elsewhere.returncode == 1 and elsewhere.stderr == ""
    checks = {c["id"]: c for c in json.loads(elsewhere.stdout)["checks"]}
    assert checks["spec.package.zope-interface"]["summary"] == "expected zope.interface ==7.2, found none installed"


@needs_script
@pytest.mark.parametrize("scenario", ["no_library", "mig_enabled", "old_driver"])
def test_snapshot_of_each_kind_of_machine_is_accepted_by_its_own_doctor(tmp_path, scenario):
    env = {"PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": scenario}
    written = envcheck("snapshot", "-o", "lab.toml", "--package", "click", cwd=tmp_path, **env)
    assert written.returncode == 0, written.stderr
    doctor = envcheck("doctor", "--quick", "--spec", "lab.toml", cwd=tmp_path, **env)
    assert doctor.returncode in (0, 1), doctor.stderr
    assert "envcheck:" not in doctor.stderr


def test_odd_gpu_names_host_names_and_driver_versions_round_trip(tmp_path, nvml, monkeypatch):
    """Quotes, a backslash, brackets fnmatch would read as a set, DEL, an emoji (JSON would write a
    surrogate pair TOML refuses) in the GPU name; a newline in the host name; a driver version that is
    not a version. The spec parses, and its GPU pattern matches the very GPUs it was taken from."""
    lib = nvml("healthy_multi_gpu")
    odd = 'NVIDIA "H100" [SXM] \\ * ? \x7f 🚀'
    for gpu in lib.gpus:
        gpu.name = odd
    lib.driver_version = "r550_00"
    monkeypatch.setattr("platform.node", lambda: "lab\nhost")
    out = tmp_path / "lab.toml"
    assert CliRunner().invoke(main, ["snapshot", "-o", str(out)]).exit_code == 0
    spec = load_spec(out)
    assert spec.get("driver", "min_version") is None  # not written: the doctor would refuse it
    assert "# Written by `envcheck snapshot` on lab?host at" in out.read_text()
    result = CliRunner().invoke(main, ["doctor", "spec", "--json", "--spec", str(out)])
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["spec.gpu_name"]["status"] == "ok", checks["spec.gpu_name"]
    assert checks["spec.gpu_count"]["summary"] == "4 GPUs, spec wants 4"
