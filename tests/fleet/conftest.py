"""Real node reports, made once per test session by the installed command, and helpers to run
``envcheck fleet`` on copies of them.

All the reports come from this one machine, so every copy is told apart the way nodes are: by
``host.hostname`` in its envelope, which the helpers rewrite in each copy. Where a test needs what one
machine cannot produce (a second driver version, GPUs that benchmark, a slower card) it edits a copy and
says so; everything else in the documents is as the command wrote it.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
NVML_SITE = ROOT / "tests" / "nvml_site"


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVCHECK_", "RANK", "WORLD_SIZE", "MASTER_"))}
    env.update(extra)
    return env


def envcheck(*args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENVCHECK, *args], capture_output=True, text=True, env=env_with(**extra), input=stdin, timeout=180, cwd=ROOT
    )


#: What each real report is made of: the command's arguments, and the fake NVML scenario it runs over
#: (tests/fakenvml.py; None: this machine as it is). The fake GPUs' doctor is the quick one (host, driver,
#: GPUs): the full one would fail each of them on this machine's CPU-only torch.
MADE: dict[str, tuple[list[str], str | None]] = {
    "doctor": (["doctor", "--json"], None),
    "doctor_spec": (["doctor", "--quick", "--json", "--spec", "{spec}"], None),
    "bench_cpu": (["bench", "--device", "cpu", "--quick", "--only", "matmul.fp32,memory.d2d", "--json"], None),
    "comm_cpu": (["comm", "--device", "cpu", "--nproc", "2", "--json"], None),
    "burn_cpu": (["burn", "--device", "cpu", "--duration", "3", "--json"], None),
    "h100x4": (["doctor", "--quick", "--json"], "healthy_multi_gpu"),
    "ecc": (["doctor", "--quick", "--json"], "ecc_uncorrected_row_remap"),
    "old_driver": (["doctor", "--quick", "--json"], "old_driver"),
}


@pytest.fixture(scope="session")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each report of :data:`MADE`, by name, made concurrently (a few seconds in all)."""
    spec = tmp_path_factory.mktemp("spec") / "lab.toml"
    spec.write_text('[packages]\nnumpy = ">=1"\n')

    def make(made: tuple[list[str], str | None]) -> dict[str, Any]:
        args, scenario = made
        env = (
            {} if scenario is None else {"ENVCHECK_FAKE_NVML": scenario, "PYTHONPATH": f"{NVML_SITE}{os.pathsep}{ROOT}"}
        )
        proc = envcheck(*(a.format(spec=spec) for a in args), **env)
        assert proc.stdout.startswith("{"), (args, proc.stderr[-2000:])
        return json.loads(proc.stdout)

    with ThreadPoolExecutor(len(MADE)) as pool:
        made = dict(zip(MADE, pool.map(make, MADE.values()), strict=True))
    for name, doc in made.items():
        assert doc["schema"].startswith("envcheck."), name
    # Whether the real CPU bench marked its figures contended or noisy depends on how busy this machine
    # was: the fleet leaves such figures out of its comparisons, so the tests that compare figures start
    # from calm ones (test_contended_figures_are_listed_and_never_compared and the burn's marks their own).
    for r in made["bench_cpu"]["results"]:
        r["contended"] = r["noisy"] = False
    for d in made["burn_cpu"]["devices"]:
        d["contended"] = False
    return made


def as_node(doc: dict[str, Any], hostname: str, *, uuid_prefix: str | None = None) -> dict[str, Any]:
    """A copy of ``doc`` as node ``hostname`` reports it. The fake NVML gives every scenario's GPUs the
    same UUIDs, as one machine would: ``uuid_prefix`` gives this node's GPUs their own (a real fleet's
    cards each have one)."""
    out = copy.deepcopy(doc)
    out["host"]["hostname"] = hostname
    if uuid_prefix is not None:
        for g in out.get("gpus") or []:
            g["uuid"] = f"GPU-{uuid_prefix}-{g['index']:04d}"
        for d in out.get("devices") or []:
            if d.get("index") is not None:
                d["uuid"] = f"GPU-{uuid_prefix}-{d['index']:04d}"
    return out


def gpu_bench(cpu_bench: dict[str, Any], doctor: dict[str, Any], value: float = 700.0) -> dict[str, Any]:
    """A bench report of ``doctor``'s GPUs, made from a real CPU bench report (this machine has no GPU
    to benchmark): the device and its results copied onto each GPU, with its model, UUID and PCI bus id
    from the doctor, and a GPU-sized figure."""
    out = copy.deepcopy(cpu_bench)
    out["host"] = copy.deepcopy(doctor["host"])
    template, devices, results = cpu_bench["devices"][0], [], []
    for g in doctor["gpus"]:
        name = f"cuda:{g['index']}"
        devices.append(
            {
                **template,
                "name": name,
                "kind": "cuda",
                "model": g["name"],
                "index": g["index"],
                "uuid": g["uuid"],
                "pci_bus_id": g["pci_bus_id"],
            }
        )
        for r in cpu_bench["results"]:
            # a GPU figure is not taken on the CPUs, so the CPU run's contention and noise marks do not carry over
            copied = {**copy.deepcopy(r), "device": name, "device_model": g["name"], "value": value}
            results.append({**copied, "contended": False, "noisy": False})
    out["devices"], out["results"] = devices, results
    # The CPU bench's preflight judges this machine's CPU load at the time, not the GPUs: not carried over.
    out["preflight"], out["status"] = [], "ok"
    out["gpus"] = [{k: g[k] for k in ("index", "name", "uuid", "pci_bus_id")} for g in doctor["gpus"]]
    return out


def write(directory: Path, docs: dict[str, dict[str, Any]]) -> list[str]:
    """Each document as ``NAME.json`` in ``directory``, indented as ``--json`` writes it; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in docs.items():
        path = directory / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        paths.append(str(path))
    return paths


def fleet(*args: str, stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """``envcheck fleet ARGS --json``: the process and its document (None when stdout held none)."""
    proc = envcheck("fleet", *args, "--json", stdin=stdin)
    return proc, json.loads(proc.stdout) if proc.stdout.strip() else None
