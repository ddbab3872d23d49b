"""How fast is the doctor, against its peers, measured in one run on one machine.

Runs each command several times as a real process (cold interpreter each time, as a user or a Docker
HEALTHCHECK would) and reports median and spread of wall time:

* ``envcheck doctor --quick``   (the healthcheck path: must stay under 1/4 of ``import torch``)
* ``python -c "import torch"``  (the floor: the full doctor cannot be faster than the import it judges)
* ``envcheck doctor``           (everything, torch child included: within 1.1x ``import torch`` and
  under 0.85x ``collect_env``)
* ``python -m torch.utils.collect_env``  (what PyTorch's bug template asks for, the peer)
* ``envcheck healthcheck``      (the Docker HEALTHCHECK command; must stay far inside its --timeout)

The commands take turns (one run of each, then the next round), so that a change in the machine's load
during the run weighs on all of them alike; the ratios are what the targets are about. The load average
is printed before and after: figures taken with a load above the number of CPUs are noisy.

``--extensions N`` also times the full doctor with N compiled extensions installed (a site on PYTHONPATH
that this script builds with gcc): each module links libc10 and libtorch_cpu, references
:data:`EXTENSION_SYMBOLS` of libtorch_cpu's functions (relocations the loader resolves when
``packages.extensions`` loads it with RTLD_NOW, as an import would) and carries a fatbin of
:data:`FATBIN_ENTRIES` entries (which ``packages.extension_arch`` walks): the work a flash-attn or xformers module
costs the doctor, without CUDA. ``--explain`` also times ``envcheck explain`` with one pasted error whose check
needs no torch (NVML's version mismatch) and one whose check does (no kernel image).

Usage: ``python benchmarks/doctor_speed.py [--runs 7] [--extensions 5] [--explain] [--json out.json]``; exit
status 1 when a target is missed. Figures go to benchmarks/RESULTS.md by hand, with the machine they were
measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: (name, numerator, denominator, the ratio must stay below this). Targets from the issue that set them.
TARGETS = [
    ("doctor --quick / import torch", "doctor --quick", "import torch", 0.25),
    ("doctor (full) / import torch", "doctor (full)", "import torch", 1.10),
    ("doctor (full) / collect_env", "doctor (full)", "torch collect_env", 0.85),
]


#: Functions of libtorch_cpu each built extension references, and the entries of its fatbin.
EXTENSION_SYMBOLS = 3000
FATBIN_ENTRIES = 2000


def time_once(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, env=env)
    return time.perf_counter() - start, proc.returncode


def build_extensions(count: int, root: Path) -> Path:
    """A site-packages with ``count`` distributions, each one compiled module as described above."""
    import importlib.util
    import struct

    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.submodule_search_locations, "torch is not installed"
    lib = Path(spec.submodule_search_locations[0]) / "lib"
    names = subprocess.run(
        ["nm", "-D", "--defined-only", str(lib / "libtorch_cpu.so")], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    symbols = [f.split()[-1] for f in names if f.split()[1:2] == ["T"]][:EXTENSION_SYMBOLS]
    entries = b""
    for i in range(FATBIN_ENTRIES):
        header = bytearray(64)
        struct.pack_into("<HHIQ", header, 0, 2, 0x0101, 64, 16384)
        struct.pack_into("<I", header, 28, (80, 90)[i % 2])
        entries += bytes(header) + bytes(16384)
    fatbin = struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(entries)) + entries
    (root / "fatbin.bin").write_bytes(fatbin)
    source = root / "ext.c"
    source.write_text(
        "".join(f'extern void s{i}(void) __asm__("{name}");\n' for i, name in enumerate(symbols))
        + "__attribute__((used)) void *torch_refs[] = {"
        + ", ".join(f"(void *)s{i}" for i in range(len(symbols)))
        + "};\n"
        + '__asm__(".section .nv_fatbin, \\"a\\"\\n.incbin \\"'
        + str(root / "fatbin.bin")
        + '\\"\\n.text");\n'
    )
    site = root / "site"
    site.mkdir()
    built = root / "ext.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(built), str(source), f"-L{lib}", "-Wl,--no-as-needed", "-lc10",
         "-ltorch_cpu"], check=True, capture_output=True,
    )  # fmt: skip
    for n in range(count):
        name, module = f"speed_ext{n}", f"speed_ext{n}/_C.cpython-311-x86_64-linux-gnu.so"
        (site / name).mkdir()
        shutil.copy(built, site / module)
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "RECORD").write_text(f"{module},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    return site


def summary(name: str, argv: list[str], samples: list[float], codes: set[int]) -> dict[str, object]:
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {
        "command": " ".join(argv),
        "median_s": statistics.median(samples),
        "iqr_s": q[2] - q[0],
        "min_s": min(samples),
        "samples_s": samples,
        "exit_codes": sorted(codes),
    }


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--extensions", type=int, default=0, help="also time the doctor with N extensions installed")
    parser.add_argument("--explain", action="store_true", help="also time explain with one match")
    args = parser.parse_args()

    envcheck = shutil.which("envcheck") or os.path.join(os.path.dirname(sys.executable), "envcheck")
    py = sys.executable
    commands = {
        "doctor --quick": [envcheck, "doctor", "--quick", "--json"],
        "import torch": [py, "-c", "import torch"],
        "doctor (full)": [envcheck, "doctor", "--json"],
        "torch collect_env": [py, "-m", "torch.utils.collect_env"],
        "healthcheck": [envcheck, "healthcheck", "--deadline", "8"],
    }
    envs: dict[str, dict[str, str]] = {}
    targets = list(TARGETS)
    scratch = None
    if args.extensions:
        import tempfile

        scratch = tempfile.TemporaryDirectory()
        site = build_extensions(args.extensions, Path(scratch.name))
        label = f"doctor + {args.extensions} ext"
        commands[label] = [envcheck, "doctor", "--json"]
        envs[label] = {**os.environ, "PYTHONPATH": str(site)}
        targets.append((f"{label} / import torch", label, "import torch", 1.10))
    if args.explain:
        nvml = "Failed to initialize NVML: Driver/library version mismatch"
        commands["explain, no torch"] = [envcheck, "explain", nvml]
        commands["explain, torch"] = [
            envcheck,
            "explain",
            "CUDA error: no kernel image is available for execution on the device",
        ]
        targets.append(("explain, no torch / doctor (full)", "explain, no torch", "doctor (full)", 1.0))
        targets.append(("explain, torch / doctor (full)", "explain, torch", "doctor (full)", 1.0))
    load_before = load()
    # Warm the page cache once so that the first measured run is not a disk benchmark.
    for name, argv in commands.items():
        time_once(argv, envs.get(name))
    samples: dict[str, list[float]] = {name: [] for name in commands}
    codes: dict[str, set[int]] = {name: set() for name in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            seconds, code = time_once(argv, envs.get(name))
            samples[name].append(seconds)
            codes[name].add(code)
    if scratch is not None:
        scratch.cleanup()
    results = {name: summary(name, argv, samples[name], codes[name]) for name, argv in commands.items()}

    cpus = os.cpu_count()
    print(f"machine: {platform.node()} {platform.machine()}, {cpus} CPUs, Python {platform.python_version()}")
    print(f"load average before: {load_before}; after: {load()}")
    print(f"{'command':<22} {'median s':>9} {'IQR s':>7} {'min s':>7}  exit")
    for name, r in results.items():
        print(f"{name:<22} {r['median_s']:>9.3f} {r['iqr_s']:>7.3f} {r['min_s']:>7.3f}  {r['exit_codes']}")
    missed = 0
    ratios = {}
    for label, top, bottom, limit in targets:
        ratio = results[top]["median_s"] / results[bottom]["median_s"]  # type: ignore[operator]
        # Best of N against best of N: what is left when the other load on the machine is least.
        best = results[top]["min_s"] / results[bottom]["min_s"]  # type: ignore[operator]
        ratios[label] = {"median": ratio, "min": best}
        verdict = "ok" if ratio < limit else "MISSED"
        missed += verdict != "ok"
        print(f"{label:<36} = {ratio:.2f}  (target < {limit:g}: {verdict}; best of {args.runs}: {best:.2f})")
    dockerfile = Path(__file__).resolve().parent.parent / "Dockerfile"
    timeout = re.search(r"--timeout=(\d+)s", dockerfile.read_text()) if dockerfile.exists() else None
    if timeout:
        health, limit_s = results["healthcheck"]["median_s"], float(timeout.group(1))
        print(f"healthcheck {health:.3f} s = {health / limit_s:.1%} of the Dockerfile's {limit_s:g} s timeout")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            document = {"machine": platform.node(), "cpus": cpus, "results": results, "ratios": ratios}
            json.dump(document, fh, indent=2)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
