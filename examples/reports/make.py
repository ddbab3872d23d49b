"""Make the example HTML reports in this directory from real runs on this machine.

    .venv/bin/python examples/reports/make.py        # from the repository root, a few minutes on 2 cores

Each report is the JSON document the installed ``envcheck`` command writes with ``--json``, rendered by
the same renderer as ``--format html`` after two edits that keep the examples from describing the machine
they were made on:

* host names become ``gpu-node-1`` and the like, as in a lab's fleet;
* paths of the machine (this checkout, the virtual environment, the temporary directory, the home
  directory) become neutral ones (``/opt/envcheck``, ``/scratch``), and its kernel's release a generic
  one (``6.8.0-generic``).

What ran:

* ``doctor.html``: the doctor over the fake NVML scenario ``hgx_nvlink_down`` (tests/fakenvml.py: an
  8 × H100 HGX board with one NVLink down and one link counting replays), without the torch area (this
  machine's torch is a CPU build, which the fake GPUs would fail on), so the fabric's sections show;
* ``bench.html``: ``envcheck bench --device cpu --quick``;
* ``comm.html``: ``envcheck comm --device cpu --nproc 4`` (gloo, 4 ranks on this machine);
* ``burn.html``: ``envcheck burn --device cpu --duration 10``;
* ``explain.html``: ``envcheck explain`` over two log lines, over the fake NVML scenario
  ``driver_library_mismatch`` (so that this machine shows the first one's cause);
* ``fleet.html``: ``envcheck fleet`` over copies of those reports as five nodes. This machine has no GPU
  to benchmark, so the GPU nodes' bench reports are the CPU bench's figures copied onto the fake GPUs
  (tests/fleet/conftest.py's ``gpu_bench``), and ``gpu-node-2``'s GPU 5 is edited 20 % down so that the
  slow-GPU chart has a card to show. Everything else is as the commands wrote it.

The script refuses to write a report that still holds one of the machine's paths or a package index's
host name.

Beside each page, what a person sees first when opening it (no scroll): ``KIND-1280.png`` on a laptop
(1280 × 800) and ``KIND-390.png`` on a phone (390 × 844), taken in the distribution's Chromium through
Playwright (as tests/render/test_html_browser.py does); without them the pages are still written.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from envcheck.render import write_atomically  # noqa: E402
from tests.fleet.conftest import ENVCHECK, NVML_SITE, as_node, env_with, envcheck, gpu_bench, write  # noqa: E402

FAKE_GPUS = {"ENVCHECK_FAKE_NVML": "hgx_nvlink_down", "PYTHONPATH": f"{NVML_SITE}{os.pathsep}{ROOT}"}
RUNS: dict[str, tuple[list[str], dict[str, str]]] = {
    "doctor": (["doctor", "host", "packages", "driver", "gpu", "fabric", "env"], FAKE_GPUS),
    "bench": (["bench", "--device", "cpu", "--quick"], {}),
    "comm": (["comm", "--device", "cpu", "--nproc", "4"], {}),
    "burn": (["burn", "--device", "cpu", "--duration", "10"], {}),
    "explain": (
        [
            "explain",
            "Failed to initialize NVML: Driver/library version mismatch",
            "RuntimeError: CUDA error: no kernel image is available for execution on the device",
        ],
        {"ENVCHECK_FAKE_NVML": "driver_library_mismatch", "PYTHONPATH": f"{NVML_SITE}{os.pathsep}{ROOT}"},
    ),
}
#: The first screens kept beside each page: a laptop's and a phone's viewport (CSS pixels).
SCREENS = {"1280": {"width": 1280, "height": 800}, "390": {"width": 390, "height": 844}}
#: Words that must not be in an example: package indexes' hosts (a fix may name one).
FORBIDDEN_WORDS = ("pypi", "pythonhosted", "download.pytorch.org", "index-url")


def run(args: list[str], env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """One command's JSON document, with ``workdir`` as its temporary directory."""
    proc = envcheck(*args, "--json", TMPDIR=str(workdir), **env)
    if not proc.stdout.startswith("{"):
        raise SystemExit(f"envcheck {' '.join(args)} wrote no report: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def neutral(value: Any, replacements: list[tuple[str, str]], hostnames: dict[str, str]) -> Any:
    """``value`` with the machine's paths replaced and its host name (a whole string) renamed."""
    if isinstance(value, str):
        if value in hostnames:
            return hostnames[value]
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [neutral(v, replacements, hostnames) for v in value]
    if isinstance(value, dict):
        return {k: neutral(v, replacements, hostnames) for k, v in value.items()}
    return value


def machine_words(workdir: Path) -> list[tuple[str, str]]:
    """The machine's own paths and kernel release, longest first (a venv inside the checkout is replaced
    as a whole)."""
    paths = {
        platform.release(): "6.8.0-generic",
        str(Path(sys.prefix).resolve()): "/opt/envcheck/.venv",
        sys.prefix: "/opt/envcheck/.venv",
        str(ROOT): "/opt/envcheck",
        str(workdir.resolve()): "/scratch",
        str(workdir): "/scratch",
        tempfile.gettempdir(): "/scratch",
        str(Path.home()): "/srv/lab",
    }
    return sorted(((k, v) for k, v in paths.items() if k not in ("", "/")), key=lambda kv: -len(kv[0]))


def check(name: str, text: str, leaks: list[str]) -> None:
    for word in [*leaks, *FORBIDDEN_WORDS]:
        if word in text:
            raise SystemExit(f"{name} still holds {word!r}: not written")


def main() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with tempfile.TemporaryDirectory(prefix="envcheck-examples-") as tmp:
        workdir = Path(tmp)
        # The CPU runs one after another: on a small machine they would slow each other down.
        with ThreadPoolExecutor(1) as pool:
            docs = dict(zip(RUNS, pool.map(lambda r: run(r[0], r[1], workdir), RUNS.values()), strict=True))
        this_host = docs["bench"]["host"]["hostname"]
        replacements = machine_words(workdir)
        leaks = [old for old, _ in replacements] + ["/root", "/home/"]
        names = {
            "doctor": "gpu-node-1",
            "bench": "cpu-node-1",
            "comm": "cpu-node-1",
            "burn": "cpu-node-1",
            "explain": "gpu-node-1",
        }
        docs = {k: neutral(doc, replacements, {this_host: names[k]}) for k, doc in docs.items()}

        nodes: dict[str, dict[str, Any]] = {}
        for host in ("gpu-node-1", "gpu-node-2", "gpu-node-3"):
            doctor = as_node(docs["doctor"], host, uuid_prefix=host)
            nodes[f"{host}/doctor"] = doctor
            nodes[f"{host}/bench"] = gpu_bench(docs["bench"], doctor)
        for r in nodes["gpu-node-2/bench"]["results"]:
            if r["device"] == "cuda:5" and r["value"] is not None:
                r["value"] *= 0.8
        for host in ("cpu-node-1", "cpu-node-2"):
            for kind in ("bench", "comm", "burn"):
                nodes[f"{host}/{kind}"] = neutral(copy.deepcopy(docs[kind]), [], {"cpu-node-1": host})
        fleet_dir = workdir / "reports"
        write(fleet_dir, nodes)
        # Run where the reports are, so that each source is named by its relative path.
        fleet = subprocess.run(
            [ENVCHECK, "fleet", "reports", "--json"], capture_output=True, text=True, env=env_with(), cwd=workdir
        )
        docs["fleet"] = neutral(json.loads(fleet.stdout), replacements, {this_host: "admin-1"})

        for kind, doc in docs.items():
            target = HERE / f"{kind}.html"
            check(kind, json.dumps(doc, ensure_ascii=False), leaks)
            write_atomically(str(target), doc, "html")
            check(target.name, target.read_text(), leaks)
            print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size:,} bytes)")
    screenshots(list(docs))


def screenshots(kinds: list[str]) -> None:
    """Each page's first screen at :data:`SCREENS`' sizes, as ``KIND-WIDTH.png`` beside it."""
    from tests.render.test_html_browser import LAUNCH_ARGS, chromium_path, missing_browser

    if (reason := missing_browser()) is not None:
        print(f"no screenshots: {reason}")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS, headless=True)
        try:
            for width, viewport in SCREENS.items():
                phone = viewport["width"] < 640
                context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone)
                for kind in kinds:
                    tab = context.new_page()
                    tab.goto((HERE / f"{kind}.html").as_uri(), wait_until="load")
                    target = HERE / f"{kind}-{width}.png"
                    tab.screenshot(path=target)
                    tab.close()
                    print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size:,} bytes)")
                context.close()
        finally:
            browser.close()


if __name__ == "__main__":
    main()
