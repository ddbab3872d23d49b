"""How long ``envcheck fleet`` takes over a large fleet: N synthetic nodes, each with a doctor report and
a bench report of 8 GPUs, merged through the real code path.

The documents are real ones made bigger, not invented shapes: the doctor's is the installed command's
own report over the fake NVML's 8-GPU HGX scenario (tests/fakenvml.py, ``hgx_8gpu``), about 150 KiB
as the command writes it; the bench's is a real CPU bench report whose device and results are copied
onto 8 GPUs and six benchmarks. Each node gets its own hostname and GPU UUIDs; 1 % of the nodes run
another driver (drift), and one GPU of every 1000th node is 20 % slow. Every node's doctor fails one
check (torch.cuda_build: this machine's torch is CPU-only, the fake GPUs are not): the worst case for
the fleet report's size, every node listed with its failing check and fix. The files are written into a
temporary directory (one per node, as a job array would leave them) and read back warm from the page
cache. Not a test: a measurement, written to RESULTS-fleet.md.

The floor is the same files read and parsed with the fleet's parser and nothing else, in a worker per
usable CPU; floor and command alternate, ``--repeat`` rounds, and the medians are compared.

    python benchmarks/fleet_merge.py [--nodes 10000] [--dir DIR] [--repeat 3] [--write benchmarks/RESULTS-fleet.md]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

from envcheck.core.report import utc_now
from envcheck.fleet.app import CHUNK, merge_sources, usable_cpus
from envcheck.fleet.read import DECODER, expand
from envcheck.fleet.report import fleet_document
from envcheck.render.json import dumps

ROOT = Path(__file__).resolve().parents[1]
GPUS = 8
BENCH_IDS = ("matmul.bf16", "matmul.fp16", "matmul.tf32", "memory.d2d", "memory.h2d", "attention.sdpa")
MODEL = "NVIDIA H100 80GB HBM3"
KINDS = ("doctor", "bench")


def envcheck(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "envcheck", *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    return json.loads(run.stdout)


def templates() -> tuple[dict[str, Any], dict[str, Any]]:
    env = {**os.environ, "ENVCHECK_FAKE_NVML": "hgx_8gpu", "PYTHONPATH": f"{ROOT / 'tests' / 'nvml_site'}:{ROOT}"}
    doctor = envcheck("doctor", "--json", env=env)
    cpu = envcheck("bench", "--device", "cpu", "--quick", "--only", "matmul.fp32", "--json")
    result = cpu["results"][0]
    devices, results = [], []
    for i in range(GPUS):
        name = f"cuda:{i}"
        devices.append({**cpu["devices"][0], "name": name, "kind": "cuda", "model": MODEL, "index": i})
        for n, bench_id in enumerate(BENCH_IDS):
            value = 700.0 + 10 * n
            unit = "GB/s" if bench_id.startswith("memory.") else result["unit"]
            # The CPU run's marks are this machine's (a loaded machine marks its figures contended or
            # noisy); the synthetic GPU figures are calm ones, compared like a real fleet's.
            results.append(
                {
                    **result,
                    "id": bench_id,
                    "device": name,
                    "device_model": MODEL,
                    "value": value,
                    "unit": unit,
                    "contended": False,
                    "noisy": False,
                }
            )
    bench = {**cpu, "devices": devices, "results": results}
    return doctor, bench


def node_documents(doctor: dict[str, Any], bench: dict[str, Any], i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    hostname = f"node-{i:05d}"
    uuids = [f"GPU-{i:08x}-0000-4000-8000-{j:012x}" for j in range(GPUS)]
    d = {**doctor, "host": {**doctor["host"], "hostname": hostname}}
    d["gpus"] = [{**g, "uuid": uuids[j]} for j, g in enumerate(doctor["gpus"])]
    if i % 100 == 42:
        d["driver"] = {**doctor["driver"], "version": "535.161.08"}
    b = {**bench, "host": {**bench["host"], "hostname": hostname}}
    b["devices"] = [
        {**dev, "uuid": uuids[j], "pci_bus_id": f"00000000:{j:02x}:00.0"} for j, dev in enumerate(bench["devices"])
    ]
    if i % 1000 == 7:
        b["results"] = [{**r, "value": r["value"] * 0.8} if r["device"] == "cuda:3" else r for r in bench["results"]]
    return d, b


def generate(directory: Path, nodes: int) -> int:
    doctor, bench = templates()
    size = 0
    for i in range(nodes):
        node_dir = directory / f"node-{i:05d}"
        node_dir.mkdir()
        for kind, doc in zip(("doctor", "bench"), node_documents(doctor, bench, i), strict=True):
            text = dumps(doc) + "\n"  # as `--json` writes it
            (node_dir / f"{kind}.json").write_text(text)
            size += len(text)
    return size


def merge_in_process(directory: Path, workers: int | None) -> dict[str, float]:
    """Read, digest and merge through the function the command calls; then build the document and
    render it as JSON. Each phase timed."""
    started, cpu = time.perf_counter(), time.process_time()
    report = merge_sources([str(directory)], workers=workers)
    merged, cpu = time.perf_counter(), time.process_time() - cpu
    document = fleet_document(report, generated_at=utc_now(), duration_s=merged - started)
    text = dumps(document)
    rendered = time.perf_counter()
    assert not report.skipped, report.skipped[:3]
    return {
        "read_digest_merge_s": merged - started,
        # CPU time of this process (its reading thread included; not the workers'): on a machine shared
        # with other work it moves far less than the wall-clock time.
        "cpu_s": cpu,
        "document_json_s": rendered - merged,
        "reports": report.reports_read,
        "slow_gpus": len(report.slow_gpus),
        "drift_fields": len(report.drifting),
        "json_mb": len(text) / 1e6,
    }


#: Runs the command given as its arguments, its output to /dev/null, and prints its wall-clock seconds and
#: peak RSS (KiB). A small process of its own forks the command: Linux keeps the largest RSS a process
#: had before exec, so a command forked from this benchmark (which has held gigabytes by then) would be
#: charged with the benchmark's memory.
_MEASURE = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
_, _, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss)
"""


def command(directory: Path, *args: str) -> tuple[float, float]:
    """The whole command's wall-clock seconds, and the peak RSS in MB of its largest process (the
    command or one of its workers: ``wait4`` reports the most any of them held), measured by a small
    process that starts it (:data:`_MEASURE` says why)."""
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, "-m", "envcheck", "fleet", str(directory), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    seconds, rss_kib = run.stdout.split()
    return float(seconds), int(rss_kib) / 1024


#: The parsers compared (``--parsers``): the fleet's (msgspec decoding only the fields the fleet reads)
#: and three that build the whole document.
PARSERS: dict[str, Callable[[bytes], Any]] = {
    "json (standard library), whole document": json.loads,
    "orjson, whole document": orjson.loads,
    "msgspec, whole document": msgspec.json.Decoder().decode,
    "msgspec, the fleet's fields only (envcheck.fleet.read.DECODER)": DECODER.decode,
}
FLEET_PARSER = "msgspec, the fleet's fields only (envcheck.fleet.read.DECODER)"
WHOLE_ORJSON = "orjson, whole document"


def _floor_batch(paths: list[str], parse: str) -> int:
    """Read each file and parse it, nothing else: the floor's work in one worker."""
    decode = PARSERS[parse]
    for path in paths:
        with open(path, "rb") as f:
            decode(f.read())
    return len(paths)


def floor(directory: Path, parse: str = FLEET_PARSER) -> float:
    """Seconds to read and parse every file of the fleet and nothing else, in a worker per usable CPU
    started the way the command starts its workers (their start is counted: the command pays it too).
    ``parse``: one of :data:`PARSERS`, by default the fleet's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    paths = [p for p in expand([str(directory)]) if isinstance(p, str)]
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    # Started as the command starts its workers: forkserver, the cyclic collector off (the floor is the
    # fastest this reading can be, not a handicapped one).
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(usable_cpus(), mp_context=context, initializer=gc.disable) as pool:
        batches = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
        done = sum(pool.map(_floor_batch, batches, [parse] * len(batches)))
    assert done == len(paths)
    return time.perf_counter() - started


def compare_parsers(directory: Path, sample: int = 400) -> list[str]:
    """Per parser: the time to parse one doctor and one bench report (the best of three passes over
    ``sample`` files of each, read beforehand), the memory the parsed document holds (tracemalloc, one
    file), and the whole fleet read and parsed in a worker per CPU (as the floor)."""
    import tracemalloc

    paths = [p for p in expand([str(directory)]) if isinstance(p, str)]
    data = {kind: [Path(p).read_bytes() for p in paths if p.endswith(f"{kind}.json")][:sample] for kind in KINDS}
    rows = ["| parser | doctor, per file | bench, per file | held, doctor / bench | whole fleet, read + parse |"]
    rows.append("|---|---|---|---|---|")
    for name, parse in PARSERS.items():
        cells = []
        for kind in KINDS:
            best = math.inf
            for _ in range(3):
                started = time.perf_counter()
                for text in data[kind]:
                    parse(text)
                best = min(best, (time.perf_counter() - started) / len(data[kind]))
            cells.append(f"{best * 1e3:.3f} ms")
        held = []
        for kind in KINDS:
            tracemalloc.start()
            kept = parse(data[kind][0])
            held.append(f"{tracemalloc.get_traced_memory()[0] / 1024:.0f}")
            tracemalloc.stop()
            del kept
        cells.append(" / ".join(held) + " KiB")
        cells.append(f"{floor(directory, name):.2f} s")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def busy_cpu() -> tuple[float, float]:
    """(CPU seconds this machine has spent busy, CPU seconds the hypervisor stole from it) so far, from
    /proc/stat. On a shared virtual machine a run's wall-clock time moves with its neighbours' work (here by
    up to half between identical runs); the CPU time the run itself took moves much less, so the floor and
    the command are compared by both. Nothing else of this benchmark runs meanwhile, so the machine's busy
    time is theirs (and their workers')."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return math.nan, math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    ticks = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / ticks, steal / ticks


def measured(run: Callable[[], Any]) -> tuple[Any, float, float]:
    """``run()``'s result, with the busy and the stolen CPU seconds of this machine while it ran."""
    cpu, stolen = busy_cpu()
    out = run()
    cpu_after, stolen_after = busy_cpu()
    return out, cpu_after - cpu, stolen_after - stolen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--write", metavar="FILE", help="Append the figures to this Markdown file.")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds of the floor and the command (medians).")
    parser.add_argument("--parsers", action="store_true", help="Compare the JSON parsers on the fleet's files instead.")
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="Generate the fleet into DIR and keep it; a DIR that holds one already is read again as it is "
        "(generating 10 000 nodes takes minutes, measuring them seconds).",
    )
    args = parser.parse_args()
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="envcheck-fleet-"))
    try:
        started = time.perf_counter()
        if args.dir and directory.is_dir() and any(directory.iterdir()):
            size, made = sum(p.stat().st_size for p in directory.rglob("*.json")), "generated by an earlier run"
        else:
            directory.mkdir(parents=True, exist_ok=True)
            size = generate(directory, args.nodes)
            made = f"generated in {time.perf_counter() - started:.0f} s"
        load = os.getloadavg()[0]
        if args.parsers:
            lines = [f"load average {load:.1f} before, {args.nodes} nodes:", *compare_parsers(directory)]
            lines.append(f"load average {os.getloadavg()[0]:.1f} after")
            print("\n".join(lines))
            if args.write:
                with open(args.write, "a", encoding="utf-8") as out:
                    out.write("\n" + "\n".join(lines) + "\n")
            return
        one = merge_in_process(directory, workers=1)
        pooled = merge_in_process(directory, workers=None)
        # Floor and command alternate, so a burst of other work on the shared cores hits both alike.
        rounds: dict[str, list[float]] = {"floor": [], "floor_orjson": [], "json": [], "text": [], "load": []}
        cpu: dict[str, list[float]] = {"floor": [], "json": [], "text": [], "stolen": []}
        rss: dict[str, float] = {}
        for _ in range(args.repeat):
            rounds["load"].append(os.getloadavg()[0])
            seconds, busy, stolen = measured(lambda: floor(directory))
            rounds["floor"].append(seconds)
            cpu["floor"].append(busy)
            cpu["stolen"].append(stolen)
            rounds["floor_orjson"].append(floor(directory, WHOLE_ORJSON))
            (seconds, rss["json"]), busy, stolen = measured(lambda: command(directory, "--json"))
            rounds["json"].append(seconds)
            cpu["json"].append(busy)
            cpu["stolen"][-1] += stolen
            (seconds, rss["text"]), busy, stolen = measured(lambda: command(directory))
            rounds["text"].append(seconds)
            cpu["text"].append(busy)
            cpu["stolen"][-1] += stolen
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rounds.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}

    def spread(key: str) -> str:
        return f"median {med[key]:.2f} s of {args.repeat} ({', '.join(f'{v:.2f}' for v in rounds[key])})"

    lines = [
        f"{args.nodes} nodes, {pooled['reports']} reports ({size / 1e9:.2f} GB of JSON as `--json` writes it, "
        f"{made}), {usable_cpus()} usable CPUs, no GPU, "
        f"{platform.python_implementation()} {platform.python_version()}, files warm in the page cache, "
        f"load average {load:.1f} before the runs, {', '.join(f'{v:.1f}' for v in rounds['load'])} before each round:",
        f"- read + parse + digest + merge, one process: {one['read_digest_merge_s']:.1f} s "
        f"({one['cpu_s']:.1f} s of CPU)",
        f"- the same with a worker per CPU (what the command does): {pooled['read_digest_merge_s']:.1f} s",
        f"- fleet document + its JSON ({pooled['json_mb']:.1f} MB): {pooled['document_json_s']:.2f} s",
        f"- floor, read + parse with the fleet's parser (msgspec, its fields), a worker per CPU: {spread('floor')}",
        f"- read + parse of whole documents with orjson, a worker per CPU: {spread('floor_orjson')}",
        f"- `envcheck fleet DIR --json > /dev/null`, the whole command: {spread('json')}, "
        f"{med['json'] / med['floor']:.2f}× the floor, peak RSS {rss['json']:.0f} MB",
        f"- `envcheck fleet DIR > /dev/null` (text), the whole command: {spread('text')}, "
        f"{med['text'] / med['floor']:.2f}× the floor, peak RSS {rss['text']:.0f} MB",
        f"- CPU time, medians (the machine's busy seconds while each ran, workers included): floor "
        f"{cpu_med['floor']:.2f} s, `--json` {cpu_med['json']:.2f} s ({cpu_med['json'] / cpu_med['floor']:.2f}× the "
        f"floor's), text {cpu_med['text']:.2f} s ({cpu_med['text'] / cpu_med['floor']:.2f}×); stolen by the "
        f"hypervisor in each round: {', '.join(f'{v:.1f}' for v in cpu['stolen'])} s",
        f"- found: {pooled['slow_gpus']} slow GPU figures, {pooled['drift_fields']} drifting field(s)",
    ]
    print("\n".join(lines))
    if args.write:
        with open(args.write, "a", encoding="utf-8") as out:
            out.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
