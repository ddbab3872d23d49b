"""The comparisons of the first real-GPU run (benchmarks/gpu_check.sh), each against a source envcheck does
not share code with, each writing one JSON verdict (``{"check", "ok", "compared", "mismatches", ...}``):

    python benchmarks/gpu_compare.py nvml-vs-smi DOCTOR_JSON     # envcheck's NVML readings vs nvidia-smi
    python benchmarks/gpu_compare.py uuids DOCTOR_JSON           # CUDA's device UUIDs vs NVML's, index by index
    python benchmarks/gpu_compare.py leftovers                   # no compute process left on any GPU

``nvml-vs-smi`` asks ``nvidia-smi --query-gpu`` (the same driver, another client) for the fields the doctor
reports and compares them GPU by GPU, by UUID, with a tolerance only where the value moves between two
readings (power draw, temperature, memory used). ``uuids`` imports torch (run it with the CUDA torch).
Standard library only, except torch for ``uuids``: it runs in the environment gpu_check.sh made.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

#: nvidia-smi field -> (the doctor's gpus[] key, how to turn the nvidia-smi text into the doctor's value,
#: the tolerance: None exact, else the largest difference that is still the same reading).
FIELDS: dict[str, tuple[str, Callable[[str], Any], float | None]] = {
    "pci.bus_id": ("pci_bus_id", lambda s: s.upper(), None),
    "name": ("name", str, None),
    "memory.total": ("memory_total_bytes", lambda s: int(float(s)) * 1024 * 1024, None),
    "memory.used": ("memory_used_bytes", lambda s: int(float(s)) * 1024 * 1024, 512 * 1024 * 1024),
    "power.limit": ("power_limit_w", float, 1.0),
    "power.default_limit": ("power_default_limit_w", float, 1.0),
    "power.draw": ("power_draw_w", float, 60.0),
    "temperature.gpu": ("temperature_c", int, 3),
    "pcie.link.width.current": ("pcie_width_current", int, None),
    "pcie.link.width.max": ("pcie_width_max", int, None),
    "pcie.link.gen.max": ("pcie_gen_max", int, None),
    "ecc.errors.uncorrected.volatile.total": ("ecc_volatile_uncorrected", int, None),
    "ecc.errors.uncorrected.aggregate.total": ("ecc_aggregate_uncorrected", int, None),
    "persistence_mode": ("persistence_mode", lambda s: s.strip().lower() == "enabled", None),
    "mig.mode.current": ("mig_mode_current", lambda s: s.strip().lower() == "enabled", None),
}
#: What nvidia-smi prints where it has no value.
NOT_A_VALUE = {"[n/a]", "n/a", "[not supported]", "not supported", "[unknown error]", ""}


def smi(fields: list[str], *, smi_path: str = "nvidia-smi", timeout_s: float = 30) -> list[dict[str, str]]:
    """``nvidia-smi --query-gpu=uuid,FIELDS --format=csv,noheader,nounits``, one dict per GPU."""
    out = subprocess.run(
        [smi_path, f"--query-gpu=uuid,{','.join(fields)}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        if line.strip():
            values = [v.strip() for v in line.split(",")]
            rows.append(dict(zip(["uuid", *fields], values, strict=False)))
    return rows


def nvml_vs_smi(doctor: dict[str, Any], *, smi_path: str = "nvidia-smi") -> dict[str, Any]:
    """Every field of every GPU, envcheck's value beside nvidia-smi's; a mismatch names both."""
    ours = {g.get("uuid"): g for g in doctor.get("gpus") or []}
    compared, mismatches, not_read = 0, [], []
    rows = smi(list(FIELDS), smi_path=smi_path)
    for row in rows:
        gpu = ours.get(row["uuid"])
        if gpu is None:
            mismatches.append({"uuid": row["uuid"], "field": "uuid", "envcheck": None, "nvidia_smi": row["uuid"]})
            continue
        for field, (key, convert, tolerance) in FIELDS.items():
            text, mine = row.get(field, ""), gpu.get(key)
            if text.lower() in NOT_A_VALUE:
                if mine is not None:
                    not_read.append({"uuid": row["uuid"], "field": field, "envcheck": mine})
                continue
            theirs = convert(text)
            compared += 1
            same = mine == theirs if tolerance is None else mine is not None and abs(mine - theirs) <= tolerance
            if not same:
                mismatches.append({"uuid": row["uuid"], "field": field, "envcheck": mine, "nvidia_smi": theirs})
    if len(rows) != len(ours):
        mismatches.append({"field": "gpu count", "envcheck": len(ours), "nvidia_smi": len(rows)})
    return {
        "check": "nvml-vs-smi",
        "ok": not mismatches and compared > 0,
        "gpus": len(rows),
        "compared": compared,
        "mismatches": mismatches,
        # envcheck read a value where nvidia-smi says N/A: worth a look, not a failure
        "only_envcheck_read": not_read,
    }


def uuids(doctor: dict[str, Any]) -> dict[str, Any]:
    """CUDA device i's UUID (torch) against NVML's, in CUDA's order (CUDA_VISIBLE_DEVICES as set)."""
    import torch

    nvml = {str(g.get("uuid", "")).removeprefix("GPU-"): g for g in doctor.get("gpus") or []}
    rows, mismatches = [], []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = str(getattr(props, "uuid", ""))
        gpu = nvml.get(uuid)
        rows.append({"cuda_index": i, "uuid": uuid, "nvml_index": gpu.get("index") if gpu else None})
        if gpu is None:
            mismatches.append({"cuda_index": i, "uuid": uuid, "why": "no NVML GPU has this UUID"})
    return {"check": "uuids", "ok": bool(rows) and not mismatches, "devices": rows, "mismatches": mismatches}


def leftovers(*, smi_path: str = "nvidia-smi", wait_s: float = 30) -> dict[str, Any]:
    """Compute processes still on any GPU, waited for up to ``wait_s`` (a GPU frees its context late)."""
    started = time.monotonic()
    deadline = started + wait_s
    while True:
        out = subprocess.run(
            [smi_path, "--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        apps = [line.strip() for line in out.splitlines() if line.strip()]
        if not apps or time.monotonic() >= deadline:
            waited = round(time.monotonic() - started, 1)
            return {"check": "leftovers", "ok": not apps, "processes": apps, "waited_s": waited}
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("check", choices=["nvml-vs-smi", "uuids", "leftovers"])
    parser.add_argument("doctor_json", nargs="?")
    parser.add_argument("--nvidia-smi", default=shutil.which("nvidia-smi") or "nvidia-smi")
    args = parser.parse_args(argv)
    if args.check == "leftovers":
        result = leftovers(smi_path=args.nvidia_smi)
    else:
        if not args.doctor_json:
            parser.error(f"{args.check} needs the doctor's JSON report")
        with open(args.doctor_json, encoding="utf-8") as fh:
            doctor = json.load(fh)
        result = nvml_vs_smi(doctor, smi_path=args.nvidia_smi) if args.check == "nvml-vs-smi" else uuids(doctor)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
