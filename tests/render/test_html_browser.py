"""The HTML reports in a real browser: the distribution's Chromium, driven by Playwright.

A page ``--format html`` writes is opened where people open it: in a browser, often offline, often on a
phone. So each page must load with no console error or warning and no uncaught exception; fetch nothing
(it is one self-contained file: a request would hang where there is no network, or carry the report's
host names off the machine), and its Content-Security-Policy must refuse a fetch if a script tried; draw
every chart it promises with a real size and an accessible name; and fit a phone's width (a wide table
scrolls inside its own box, never the whole page). A full-page screenshot is taken of each, and checked
to be a PNG with something drawn on it.

The pages are made once for the module by the installed command: the doctor over the fake NVML scenario
``hgx_nvlink_down`` (tests/fakenvml.py), the CPU bench, comm and burn, and two fleets over their JSON
reports (one with a slow GPU, one without). The tests at the end prove the harness can fail: a page that
makes a request, throws, logs a warning, overflows a phone, draws a chart of no size or cuts off a chart's
text, or a blank screenshot, is caught.

The browser is the distribution's Chromium (``scripts/test.sh`` installs it when run as root), never a
browser Playwright downloads. Without Chromium or Playwright these tests skip, except under CI
(``CI=true``) or with ``ENVCHECK_REQUIRE_BROWSER=1``: there a missing browser is a failure, so CI can never
pass by skipping them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import string
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fleet.conftest import NVML_SITE, ROOT, as_node, envcheck, gpu_bench, write
from tests.render.test_html import html_of

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Request, Route

REQUIRED = os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("ENVCHECK_REQUIRE_BROWSER") == "1"
HOW_TO_INSTALL = (
    "run scripts/test.sh as root (it installs the distribution's chromium), or install the package `chromium`; "
    "Playwright comes with pip install -e '.[test]'"
)

#: How Chromium is started. Headless (Playwright adds --headless); --no-sandbox because CI runs as root,
#: where Chromium refuses to start its sandbox; --disable-gpu because there is no display to draw on (and
#: on a GPU machine the GPUs are left alone). The rest keep the browser itself off the network (updates,
#: sync, field trials, QUIC probes): every request seen is then the page's own, and a closed network costs
#: no timeouts; --disable-dev-shm-usage because a container's small /dev/shm crashes the renderer on a long
#: page. Each page gets a fresh context; Playwright gives the browser a fresh profile directory.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}  # an iPhone X-sized CSS viewport

#: The page's facts, read in the page: its report kind, its meta tags, its width, and each chart's kind,
#: accessible name and rendered size, and the text it draws outside its box (an SVG cuts that off).
MEASURE = """() => ({
  report: document.documentElement.dataset.report ?? null,
  csp: document.querySelector('meta[http-equiv="Content-Security-Policy" i]')?.content ?? null,
  viewport: document.querySelector('meta[name="viewport"]')?.content ?? null,
  scrollWidth: document.documentElement.scrollWidth,
  clientWidth: document.documentElement.clientWidth,
  charts: [...document.querySelectorAll("svg.chart")].map(svg => {
    const box = svg.getBoundingClientRect();
    const outside = text => {
      const r = text.getBoundingClientRect();
      return r.width > 0 && (r.left < box.left - 1 || r.right > box.right + 1
                             || r.top < box.top - 1 || r.bottom > box.bottom + 1);
    };
    return {kind: svg.dataset.chart ?? null, role: svg.getAttribute("role"), label: svg.getAttribute("aria-label"),
            title: svg.querySelector(":scope > title")?.textContent.trim() || null,
            width: box.width, height: box.height,
            clipped: [...svg.querySelectorAll("text")].filter(outside).map(t => t.textContent.trim())};
  }),
})"""

#: Whether the page's Content-Security-Policy stops a script's fetch: the violated directive, or null when
#: nothing stopped it within a second (the route then refuses the request, and the visit records it).
CSP_PROBE = """async () => {
  const violated = new Promise(resolve =>
    document.addEventListener("securitypolicyviolation", e => resolve(e.effectiveDirective), {once: true}));
  fetch("http://127.0.0.1:9/csp-probe").catch(() => null);
  return await Promise.race([violated, new Promise(resolve => setTimeout(() => resolve(null), 1000))]);
}"""


def chromium_path() -> str | None:
    """The distribution's Chromium (``ENVCHECK_CHROMIUM`` names another), or None."""
    for candidate in (os.environ.get("ENVCHECK_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_browser() -> str | None:
    """Why no browser can be driven here, or None when one can."""
    if importlib.util.find_spec("playwright") is None:
        return f"Playwright for Python is not installed: {HOW_TO_INSTALL}"
    if chromium_path() is None:
        return f"no Chromium (`chromium` is not on PATH): {HOW_TO_INSTALL}"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module (about half a second to start)."""
    reason = missing_browser()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"the browser tests must run here (CI or ENVCHECK_REQUIRE_BROWSER=1): {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS, headless=True)
        yield chromium
        chromium.close()


@dataclass
class Visit:
    """What one page did and showed in the browser."""

    url: str
    console: list[str] = field(default_factory=list)  # console errors and warnings, as "type: text"
    errors: list[str] = field(default_factory=list)  # uncaught exceptions
    requests: list[str] = field(default_factory=list)  # every request but the page's own file
    facts: dict[str, Any] = field(default_factory=dict)  # what MEASURE read
    csp_stops: str | None = None  # the directive that stopped CSP_PROBE's fetch (desktop visit only)

    def on_request(self, request: Request) -> None:
        if request.url != self.url:
            self.requests.append(f"{request.method} {request.url}")

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def charts(self) -> list[str]:
        """The kinds of the page's charts, in page order."""
        return [c["kind"] for c in self.facts["charts"]]


def visit(browser: Browser, path: Path, *, phone: bool = False, screenshot: Path | None = None) -> Visit:
    """Open ``path`` at a desktop or phone viewport; record what it logs, throws and requests, read its
    facts, and on the desktop also take ``screenshot`` and try a fetch against its CSP."""
    url = path.resolve().as_uri()
    seen = Visit(url)
    context = browser.new_context(
        viewport=PHONE if phone else DESKTOP, is_mobile=phone, has_touch=phone, service_workers="block"
    )
    try:
        context.set_default_timeout(15_000)

        # Everything but the page itself is refused at once: a page that reaches out fails the test on
        # its request, where the network would otherwise hang it.
        def only_the_page(route: Route) -> None:
            if route.request.url == url:
                route.continue_()
            else:
                route.abort("blockedbyclient")

        context.route("**/*", only_the_page)
        page = context.new_page()
        page.on("request", seen.on_request)
        page.on("websocket", lambda ws: seen.requests.append(f"websocket {ws.url}"))
        page.on("console", seen.on_console)
        page.on("pageerror", lambda error: seen.errors.append(str(error)))
        page.goto(url, wait_until="load")
        if not phone:
            page.wait_for_load_state("networkidle")  # a script's request after the load event counts too
        seen.facts = page.evaluate(MEASURE)
        if not phone:
            if screenshot is not None:
                page.screenshot(path=screenshot, full_page=True)
            # Last, and out of the record: the probe's own fetch would otherwise count as the page's.
            page.remove_listener("request", seen.on_request)
            page.remove_listener("console", seen.on_console)
            seen.csp_stops = page.evaluate(CSP_PROBE)
    finally:
        context.close()
    return seen


def problems(browser: Browser, path: Path, screenshot: Path) -> tuple[list[str], Visit]:
    """Everything wrong with the page whatever its report (empty when it is fine), and its desktop visit."""
    desk = visit(browser, path, screenshot=screenshot)
    phone = visit(browser, path, phone=True)
    found: list[str] = []
    for where, seen in (("desktop", desk), ("phone", phone)):
        found += [f"{where} console {m}" for m in seen.console]
        found += [f"{where} uncaught exception: {e}" for e in seen.errors]
        found += [f"{where} request: {r}" for r in seen.requests]
    if desk.facts["csp"] is None:
        found.append("no Content-Security-Policy meta tag")
    if desk.csp_stops is None:
        found.append("the Content-Security-Policy lets a script fetch http://127.0.0.1:9/")
    if desk.facts["viewport"] is None:
        found.append("no viewport meta tag")
    for chart in desk.facts["charts"]:
        name = f"chart {chart['kind']!r}"
        if not chart["kind"]:
            found.append("an svg.chart without data-chart")
        if chart["role"] != "img" or not chart["label"] or not chart["title"]:
            found.append(f"{name} lacks role=img, an aria-label or a <title>: {chart}")
        if not (chart["width"] > 0 and chart["height"] > 0):
            found.append(f"{name} has no rendered size: {chart['width']}x{chart['height']}")
        if chart["clipped"]:
            found.append(f"{name} has text outside its box (cut off): {chart['clipped']}")
    # The layout viewport (clientWidth; a phone browser zooms out over wide content, so innerWidth would
    # grow with it) is the phone's only when the viewport meta tag works; then nothing may be wider.
    width, inner = phone.facts["scrollWidth"], phone.facts["clientWidth"]
    if inner != PHONE["width"]:
        found.append(f"at a phone's width the layout viewport is {inner}px, not {PHONE['width']}px")
    if width > inner + 1:
        found.append(f"at a phone's width the page is {width}px wide (a horizontal scroll of {width - inner}px)")
    found += screenshot_problems(screenshot)
    return found, desk


def screenshot_problems(path: Path) -> list[str]:
    """What is wrong with a full-page screenshot: not a PNG, not the page's width, or blank. Blank is
    judged without an image library: a blank page's filtered rows compress to a handful of byte values, a
    page with text (anti-aliased) or charts to well over a hundred."""
    data = path.read_bytes() if path.is_file() else b""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return [f"the screenshot is not a PNG ({len(data)} bytes)"]
    width, height = struct.unpack(">II", data[16:24])
    idat, offset = b"", 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    found = []
    if width != DESKTOP["width"] or height < DESKTOP["height"]:
        found.append(f"the screenshot is {width}x{height}, not a full {DESKTOP['width']}px-wide page")
    distinct = len(set(zlib.decompress(idat)))
    if distinct < 32:
        found.append(f"the screenshot looks blank ({distinct} distinct byte values)")
    return found


# -- the real pages --------------------------------------------------------------------------------------------

#: Each page: its <html data-report> and the kinds of chart it draws (the renderer's contract: p2p only where
#: comm measured a P2P matrix, slow-gpus only where a fleet has slow GPUs; the doctor draws none).
PAGES: dict[str, tuple[str, set[str]]] = {
    "doctor": ("doctor", set()),
    "bench": ("bench", {"throughput"}),
    "comm": ("comm", {"busbw", "p2p"}),  # two CPU ranks on one host: comm measures their P2P matrix
    "burn": ("burn", {"telemetry"}),
    # gpu-b's GPU 2 is 20 % slower than the other fifteen H100s; each compared figure's distribution
    "fleet": ("fleet", {"slow-gpus", "distribution"}),
    "fleet_healthy": ("fleet", {"distribution"}),  # no slow GPU: a sentence says so, no slow-gpus chart
    "explain": ("explain", set()),
}
DOCTOR_ENV = {
    "ENVCHECK_FAKE_NVML": "hgx_nvlink_down",
    "PYTHONPATH": f"{NVML_SITE}{os.pathsep}{ROOT}",
    "ENVCHECK_FABRIC_INTERVAL_S": "0.01",  # the NVLink counters' second reading at once
}
BENCH = ["bench", "--device", "cpu", "--quick", "--only", "matmul.fp32,memory.d2d"]
COMM = ["comm", "--device", "cpu", "--nproc", "2"]
BURN = ["burn", "--device", "cpu", "--duration", "5s"]
#: A log line whose cause the fake NVML shows (driver.nvml fails), and one this machine cannot tell.
EXPLAIN = [
    "explain",
    "Failed to initialize NVML: Driver/library version mismatch",
    "RuntimeError: CUDA error: no kernel image is available for execution on the device",
]
EXPLAIN_ENV = {"ENVCHECK_FAKE_NVML": "driver_library_mismatch", "PYTHONPATH": f"{NVML_SITE}{os.pathsep}{ROOT}"}


def made(args: list[str], out: Path | None = None, **env: str) -> str:
    """Run the installed command; its stdout. ``out``: the file it must have written."""
    proc = envcheck(*args, **env)
    assert "Traceback" not in proc.stderr, (args, proc.stderr[-3000:])
    assert out is None or out.is_file(), (args, proc.returncode, proc.stderr[-3000:])
    return proc.stdout


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each page of :data:`PAGES`, written by ``--format html -o NAME.html``. A command's HTML run and its
    JSON run (what the fleets read) go side by side; the bench writes both in one run (--save)."""
    out = tmp_path_factory.mktemp("html")
    html = {name: out / f"{name}.html" for name in PAGES}

    def as_html(name: str) -> list[str]:
        return ["--format", "html", "-o", str(html[name])]

    jobs = {  # the longest first: the two burns take about 10 s each
        "burn.html": lambda: made([*BURN, *as_html("burn")], html["burn"]),
        "burn.json": lambda: made([*BURN, "--json"]),
        "bench": lambda: made([*BENCH, *as_html("bench"), "--save", str(out / "bench.json")], html["bench"]),
        "comm.html": lambda: made([*COMM, *as_html("comm")], html["comm"]),
        "comm.json": lambda: made([*COMM, "--json"]),
        "doctor.html": lambda: made(["doctor", *as_html("doctor")], html["doctor"], **DOCTOR_ENV),
        "doctor.json": lambda: made(["doctor", "--json"], **DOCTOR_ENV),
        "explain": lambda: made([*EXPLAIN, *as_html("explain")], html["explain"], **EXPLAIN_ENV),
    }
    with ThreadPoolExecutor(3) as pool:
        results = dict(zip(jobs, pool.map(lambda job: job(), jobs.values()), strict=True))
    doctor = json.loads(results["doctor.json"])
    bench = json.loads((out / "bench.json").read_text())
    assert doctor["gpus"] and bench["results"]

    # Two nodes of eight fake H100s each (their benchmarks made from the CPU bench, as tests/fleet does) and
    # this machine as a third node with its CPU bench, comm and burn.
    nodes: dict[str, dict[str, Any]] = {}
    for host in ("gpu-a", "gpu-b"):
        nodes[f"{host}/doctor"] = as_node(doctor, host, uuid_prefix=host)
        nodes[f"{host}/bench"] = gpu_bench(bench, nodes[f"{host}/doctor"])
    nodes["cpu-1/bench"] = as_node(bench, "cpu-1")
    nodes["cpu-1/comm"] = as_node(json.loads(results["comm.json"]), "cpu-1")
    nodes["cpu-1/burn"] = as_node(json.loads(results["burn.json"]), "cpu-1")
    write(out / "healthy", nodes)
    for r in nodes["gpu-b/bench"]["results"]:
        if r["device"] == "cuda:2":
            r["value"] *= 0.8
    write(out / "slow", nodes)
    made(["fleet", str(out / "slow"), *as_html("fleet")], html["fleet"])
    made(["fleet", str(out / "healthy"), *as_html("fleet_healthy")], html["fleet_healthy"])
    # The CPU runs found nothing to fix: the same reports with a failing check added, as a machine with the
    # problem writes them (a preflight check, a burn verdict, a transport finding, each with its fix), so
    # that every kind's first screen is judged with a fix on it.
    fix = next(c for c in doctor["checks"] if c["id"] == "fabric.nvlink")["fix"]  # a long one: the worst case
    failing = {"id": "gpu.ecc", "title": "ECC", "status": "fail", "summary": "uncorrected ECC errors", "fix": fix}
    docs = {
        "bench": {**bench, "preflight": [*bench.get("preflight", []), failing]},
        "burn": {**json.loads(results["burn.json"]), "verdicts": [failing]},
        "comm": {
            **json.loads(results["comm.json"]),
            "transport": {
                "findings": [
                    {
                        "host": "cpu-1",
                        "ranks": [0, 1],
                        "what": "NCCL fell back to sockets",
                        "checks": ["net.ib"],
                        "fix": fix["text"],
                    }
                ]
            },
        },
    }
    for kind, doc in docs.items():
        html[f"{kind}_failing"] = out / f"{kind}_failing.html"
        html[f"{kind}_failing"].write_text(html_of(doc))
    return html


@pytest.mark.parametrize("name", PAGES)
def test_a_report_page_in_the_browser(browser: Browser, pages: dict[str, Path], name: str, tmp_path: Path) -> None:
    report, charts = PAGES[name]
    found, seen = problems(browser, pages[name], tmp_path / f"{name}.png")
    assert found == [], f"{pages[name]}: " + "\n".join(found)
    assert seen.facts["report"] == report
    assert set(seen.charts()) == charts, f"charts drawn: {seen.charts()}"


#: The viewports a person opens a report in: a laptop's, and a phone's (an iPhone 12 to 15's CSS size).
FIRST_SCREENS = {"1280x800": {"width": 1280, "height": 800}, "390x844": {"width": 390, "height": 844}}

#: Where the verdict (the header's h1) and the page's first fix are, as the page is opened (its <details>
#: closed), and how wide the page is; then, every <details> opened, how wide it is and the narrowest table
#: cell (a card's line on a phone).
FIRST_SCREEN = r"""() => {
  const box = el => {
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return {text: el.textContent.trim(), top: r.top, bottom: r.bottom, left: r.left, right: r.right,
            inside: r.width > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth};
  };
  const fixes = [...document.querySelectorAll("main .fix")];
  const severe = f => !!f.closest("li, section")?.querySelector(".badge.s-fail, .badge.s-crash");
  const seen = {verdict: box(document.querySelector("header h1")), fix: box(fixes[0] ?? null),
                firstFixSevere: fixes.length ? severe(fixes[0]) : null, anySevereFix: fixes.some(severe),
                closed: document.querySelectorAll("details:not([open])").length,
                scrollWidth: document.documentElement.scrollWidth, width: document.documentElement.clientWidth};
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const cells = [...document.querySelectorAll("td")].filter(td => td.getClientRects().length);
  seen.openScrollWidth = document.documentElement.scrollWidth;
  seen.narrowest = Math.min(...cells.map(td => td.getBoundingClientRect().width), Infinity);
  seen.cells = cells.length;
  // Each cell with a run of words laid out one word per line (a column squeezed to a word's width).
  const range = document.createRange();
  const wordPerLine = text => {
    const words = [...text.textContent.matchAll(/\S+/g)];
    const tops = new Set(words.map(w => {
      range.setStart(text, w.index);
      range.setEnd(text, w.index + w[0].length);
      return Math.round(range.getClientRects()[0]?.top ?? 0);
    }));
    return words.length >= 2 && tops.size === words.length;
  };
  seen.wordPerLine = cells.filter(td => {
    const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
    for (let text = walker.nextNode(); text; text = walker.nextNode()) if (wordPerLine(text)) return true;
    return false;
  }).map(td => td.textContent.trim().slice(0, 80));
  return seen;
}"""

#: The pages with a failing check and its fix: every kind.
WITH_A_FIX = ("doctor", "fleet", "explain", "bench_failing", "burn_failing", "comm_failing")
#: Every page the browser opens: the commands' own, and the CPU reports with a failing check added.
NAMES = [*PAGES, "bench_failing", "burn_failing", "comm_failing"]


@pytest.fixture(scope="module")
def first_screens(browser: Browser, pages: dict[str, Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """:data:`FIRST_SCREEN` of every page at each of :data:`FIRST_SCREENS`, measured once for the module."""
    seen = {}
    for size, viewport in FIRST_SCREENS.items():
        phone = viewport["width"] < 640
        context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone)
        try:
            for name, path in pages.items():
                tab = context.new_page()
                tab.goto(path.resolve().as_uri(), wait_until="load")
                seen[name, size] = tab.evaluate(FIRST_SCREEN)
                tab.close()
        finally:
            context.close()
    return seen


@pytest.mark.parametrize("size", FIRST_SCREENS)
@pytest.mark.parametrize("name", NAMES)
def test_the_first_screen_holds_the_verdict_and_the_first_fix(
    first_screens: dict[tuple[str, str], dict[str, Any]], name: str, size: str
) -> None:
    """As the page opens, without a scroll: the verdict, and the fix of the most severe problem (a fail's
    before a warning's), whole inside the viewport."""
    seen = first_screens[name, size]
    assert seen["verdict"]["inside"], seen["verdict"]
    if name in WITH_A_FIX:
        assert seen["fix"] is not None, f"{name}: no fix on the page"
        assert seen["fix"]["inside"], f"{name} at {size}: the first fix is at {seen['fix']}"
        assert seen["fix"]["text"].startswith("fix: ")
        assert seen["firstFixSevere"] or not seen["anySevereFix"], f"{name}: a warning's fix before a failure's"


@pytest.mark.parametrize("name", NAMES)
def test_at_a_phones_width_nothing_is_off_screen_and_tables_are_cards(
    first_screens: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    """At 390 px the page is no wider than the screen, closed or with every <details> open; each table row
    is a card whose cells take the card's width (no column off-screen, no cell a word wide)."""
    seen = first_screens[name, "390x844"]
    assert seen["scrollWidth"] <= seen["width"] == 390, seen
    assert seen["openScrollWidth"] <= seen["width"], seen
    if seen["cells"]:
        assert seen["narrowest"] >= 0.8 * (390 - 2 * 10), seen  # the page's padding aside, a card's width


def test_at_a_laptops_width_no_fleet_cell_is_one_word_per_line(
    browser: Browser, pages: dict[str, Path], tmp_path: Path
) -> None:
    """At 1280 px, every <details> open, no cell of the fleet's tables is squeezed to a word per line (a
    model's name down a column of a nine-column table): the slow GPUs' table has the columns a laptop's
    width holds, here with the slow card's figures named as a --quick run names them (the longest) and its
    UUID as long as a real one."""
    proc = envcheck("fleet", str(pages["fleet"].parent / "slow"), "--json")
    doc = json.loads(proc.stdout)
    uuid = "GPU-3f9c2a7e-51d4-4b8e-9a06-c2d7e18f4b90"
    for device in [*doc["slow_gpus"], *(d for h in doc["slow_devices"] for d in h["devices"])]:
        device["uuid"] = uuid
        for f in device.get("figures", [device]):
            f.update(id=f"{f['id']}_fwd_bwd", quick=True)
    path = tmp_path / "fleet.html"
    path.write_text(html_of(doc))
    context = browser.new_context(viewport=FIRST_SCREENS["1280x800"])
    try:
        tab = context.new_page()
        tab.goto(path.resolve().as_uri(), wait_until="load")
        seen = tab.evaluate(FIRST_SCREEN)
    finally:
        context.close()
    assert seen["cells"] and seen["wordPerLine"] == [], f"cells one word per line: {seen['wordPerLine']}"


def test_the_raw_tables_are_folded_and_the_fleet_charts_each_figure(
    first_screens: dict[tuple[str, str], dict[str, Any]], pages: dict[str, Path]
) -> None:
    """Inventories, raw tables and versions are closed <details> as the page opens; the fleet draws one
    distribution per compared figure, CPU figures included."""
    for name in ("doctor", "bench", "comm", "burn"):
        assert first_screens[name, "1280x800"]["closed"] >= 1, name
    text = pages["fleet"].read_text()
    assert "GPU figures" in text and "CPU figures" in text
    assert text.count('data-chart="distribution"') >= 2


# -- the harness can fail -------------------------------------------------------------------------------------

#: A page that keeps the contract: CSP, viewport, one chart with its name, a wide table scrolling in its box.
GOOD = string.Template("""<!doctype html>
<html lang="en" data-report="bench"><head><meta charset="utf-8">$csp
<meta name="viewport" content="width=device-width, initial-scale=1"><title>bench</title>
<style>body{font-family:sans-serif;margin:1rem} .wrap{overflow-x:auto}
svg.chart{width:100%;height:auto;max-width:40rem}</style>
</head><body><h1>Throughput of cpu</h1><p>Every figure verified; matmul.fp32 at 41 % of the datasheet peak.</p>
<svg class="chart" data-chart="throughput" role="img" aria-label="Throughput per device" viewBox="0 0 400 120">
<title>Throughput per device against its datasheet peak</title><rect x="10" y="10" width="250" height="30" fill="#36c"/>
<rect x="10" y="60" width="380" height="30" fill="none" stroke="#333"/><text x="270" y="30">250 GFLOP/s</text></svg>
<div class="wrap"><table><tr>$cells</tr></table></div>
$extra</body></html>
""")
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def page(tmp_path: Path, *, body: str = "", script: str = "", csp: bool = True) -> Path:
    """The :data:`GOOD` page with ``body`` added, ``script`` run, and (``csp=False``) no CSP."""
    path = tmp_path / "page.html"
    path.write_text(
        GOOD.substitute(
            csp=f'\n<meta http-equiv="Content-Security-Policy" content="{CSP}">' if csp else "",
            cells="".join(f"<td>matmul.fp32&nbsp;{i}&nbsp;GFLOP/s</td>" for i in range(12)),
            extra=body + (f"<script>{script}</script>" if script else ""),
        )
    )
    return path


def test_a_page_that_keeps_the_contract_passes(browser: Browser, tmp_path: Path) -> None:
    found, seen = problems(browser, page(tmp_path), tmp_path / "good.png")
    assert found == []
    assert seen.facts["report"] == "bench" and seen.charts() == ["throughput"]
    assert seen.csp_stops == "connect-src"  # the CSP (default-src 'none') refused the probe's fetch


IMAGE = '<img src="http://127.0.0.1:9/x.png" alt="">'
HIDDEN_CHART = '<svg class="chart" data-chart="busbw" role="img" aria-label="x" style="display:none"><title/></svg>'
UNNAMED_CHART = '<svg class="chart" data-chart="p2p" width="50" height="50"></svg>'
CUT_CHART = (
    '<svg class="chart" data-chart="slow-gpus" role="img" aria-label="x" viewBox="0 0 100 20" style="width:100px">'
    '<title>x</title><text x="60" y="15">560.0 GB/s · 20 % below</text></svg>'
)


@pytest.mark.parametrize(
    ("fault", "caught"),
    [
        # The CSP refuses the image, and the attempt is still a request (the browser tried).
        ({"body": IMAGE}, ["request: GET http://127.0.0.1:9/x.png", "violates the following Content Security Policy"]),
        # Without a CSP a script's fetch after the load event leaves the page (the route refuses it).
        (
            {"script": "setTimeout(() => fetch('http://127.0.0.1:9/late'), 100)", "csp": False},
            ["request: GET http://127.0.0.1:9/late", "no Content-Security-Policy", "lets a script fetch"],
        ),
        (
            {"script": "console.warn('deprecated'); throw new Error('chart data missing')"},
            ["console warning: deprecated", "uncaught exception: chart data missing"],
        ),
        ({"body": '<div style="width:1000px">wide</div>'}, ["at a phone's width the page is 1017px wide"]),
        (
            {"body": HIDDEN_CHART + UNNAMED_CHART + CUT_CHART},
            [
                "chart 'busbw' has no rendered size",
                "chart 'p2p' lacks role=img",
                "chart 'slow-gpus' has text outside its box (cut off): ['560.0 GB/s · 20 % below']",
            ],
        ),
    ],
    ids=["image", "fetch-after-load", "script-errors", "phone-overflow", "bad-charts"],
)
def test_the_harness_catches_a_faulty_page(
    browser: Browser, tmp_path: Path, fault: dict[str, Any], caught: list[str]
) -> None:
    found, _ = problems(browser, page(tmp_path, **fault), tmp_path / "faulty.png")
    for what in caught:
        assert any(what in problem for problem in found), (what, found)


def test_a_blank_or_broken_screenshot_is_caught(browser: Browser, tmp_path: Path) -> None:
    empty = tmp_path / "empty.html"
    empty.write_text('<!doctype html><html><body style="background:#eee"></body></html>')
    visit(browser, empty, screenshot=tmp_path / "blank.png")  # Chromium's own PNG of a page with nothing on it
    assert [p for p in screenshot_problems(tmp_path / "blank.png") if "looks blank" in p]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"<html>not an image</html>")
    assert screenshot_problems(broken) == ["the screenshot is not a PNG (25 bytes)"]


#: The busbw chart's x labels as the browser lays them out: each one's text, and its box's right end, in
#: the chart's own (viewBox) units, with the viewBox's width.
X_LABELS = """() => {
  const svg = document.querySelector('svg.chart[data-chart="busbw"]');
  const labels = [...svg.querySelectorAll('text[text-anchor="middle"]')].filter(t => /^\\d/.test(t.textContent));
  return {width: svg.viewBox.baseVal.width,
          labels: labels.map(t => { const b = t.getBBox(); return [t.textContent, b.x + b.width]; })};
}"""


@pytest.mark.parametrize("top_exponent", [16, 33], ids=["64 KiB", "8 GiB"])
def test_the_comm_charts_last_size_label_ends_inside_the_chart(
    browser: Browser, tmp_path: Path, top_exponent: int
) -> None:
    from envcheck.core.units import human
    from tests.render.test_html import comm_sized, html_of

    path = tmp_path / "comm.html"
    path.write_text(html_of(comm_sized(top_exponent)))
    context = browser.new_context(viewport=DESKTOP)
    try:
        tab = context.new_page()
        tab.goto(path.as_uri())
        laid_out = tab.evaluate(X_LABELS)
    finally:
        context.close()
    text, right = laid_out["labels"][-1]
    assert text == human(2**top_exponent)
    # inside the viewBox with room to spare: a wider font than this Chromium's still fits
    assert right <= laid_out["width"] - 4, laid_out
