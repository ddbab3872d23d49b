"""``--format html``, without a browser: each kind of report through the installed command, parsed with
``html.parser``. The page must be one self-contained file (nothing with a ``src``, no stylesheet link, no
``url(`` or ``@import`` in its CSS, a CSP that fetches nothing), carry the charts its data calls for (and
none where the data is missing), escape every string from the machine, and never fail on a document that
is truncated or oddly shaped. The Markdown report gains the same facts as tables.

Real documents come from the installed command, once per module: the doctor over the fake NVML scenario
``hgx_nvlink_down`` (its fabric areas, no torch), a CPU bench of two benchmarks, a CPU comm of 2 ranks, a
CPU burn of 3 s, and a fleet over copies of them (tests/fleet/conftest: hostnames rewritten, and a GPU
bench made from the CPU bench with one GPU 20 % slower, because this machine has no GPU to benchmark).
A GPU burn's timeline comes from the fake NVML on a fake clock (tests/burn/test_run.py's ``gpu_run``).
"""

from __future__ import annotations

import copy
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from html import escape
from html.parser import HTMLParser
from io import StringIO
from typing import Any

import pytest

from envcheck.render import RenderOptions, make_console, render
from envcheck.render.html import BROKEN, CSP, prose
from tests.fleet.conftest import NVML_SITE, ROOT, as_node, envcheck, gpu_bench, write

FAKE_GPUS = {"ENVCHECK_FAKE_NVML": "hgx_nvlink_down", "PYTHONPATH": f"{NVML_SITE}{os.pathsep}{ROOT}"}
DOCTOR = ["doctor", "host", "driver", "gpu", "fabric"]
BENCH = ["bench", "--device", "cpu", "--quick", "--only", "matmul.fp32,memory.d2d"]
COMM = ["comm", "--device", "cpu", "--nproc", "2", "--ops", "all_reduce,broadcast,p2p"]
BURN = ["burn", "--device", "cpu", "--duration", "3"]


class Page(HTMLParser):
    """What a test asks of a page: its elements with their attributes, its text, its charts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.raw = text
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        (self.styles if self._in_style else self.text).append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.elements if t == tag]

    def charts(self) -> list[str]:
        return [str(a.get("data-chart")) for a in self.all("svg") if "chart" in (a.get("class") or "").split()]

    def headings(self) -> list[str]:
        return re.findall(r"<h2>(.*?)</h2>", self.raw)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse(text: str) -> Page:
    return Page(text)


def html_of(doc: dict[str, Any]) -> str:
    buffer = StringIO()
    render(doc, "html", make_console(buffer, for_file=True), RenderOptions())
    return buffer.getvalue()


def markdown_of(doc: dict[str, Any]) -> str:
    buffer = StringIO()
    render(doc, "markdown", make_console(buffer, for_file=True), RenderOptions())
    return buffer.getvalue()


def fleet_docs(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Two CPU nodes and two GPU nodes: gpu-b's GPU 1 benchmarks 20 % below the other H100s."""
    nodes: dict[str, dict[str, Any]] = {}
    for host in ("cpu-1", "cpu-2"):
        nodes[f"{host}/bench"] = as_node(docs["bench"], host)
        nodes[f"{host}/burn"] = as_node(docs["burn"], host)
    nodes["cpu-1/comm"] = as_node(docs["comm"], "cpu-1")
    for host in ("gpu-a", "gpu-b"):
        doctor = as_node(docs["doctor"], host, uuid_prefix=host)
        nodes[f"{host}/doctor"] = doctor
        nodes[f"{host}/bench"] = gpu_bench(docs["bench"], doctor)
    for r in nodes["gpu-b/bench"]["results"]:
        if r["device"] == "cuda:1":
            r["value"] *= 0.8
    return nodes


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each kind's JSON document and its ``--format html`` page from the installed command (run
    concurrently), and the fleet's, over copies of the documents."""
    runs: dict[str, tuple[list[str], dict[str, str]]] = {
        "doctor": (DOCTOR, FAKE_GPUS),
        "bench": (BENCH, {}),
        "comm": (COMM, {}),
        "burn": (BURN, {}),
    }
    jobs = {f"{k}.json": ([*a, "--json"], env) for k, (a, env) in runs.items()}
    jobs |= {f"{k}.html": ([*a, "--format", "html"], env) for k, (a, env) in runs.items()}
    with ThreadPoolExecutor(4) as pool:
        procs = dict(zip(jobs, pool.map(lambda job: envcheck(*job[0], **job[1]), jobs.values()), strict=True))
    for name, proc in procs.items():
        assert proc.returncode in (0, 1), (name, proc.stderr[-2000:])
    docs = {k: json.loads(procs[f"{k}.json"].stdout) for k in runs}
    pages = {k: procs[f"{k}.html"].stdout for k in runs}
    directory = tmp_path_factory.mktemp("fleet")
    write(directory, fleet_docs(docs))
    report = tmp_path_factory.mktemp("out") / "fleet.html"
    fleet_json = envcheck("fleet", str(directory), "--json")
    fleet_html = envcheck("fleet", str(directory), "--format", "html")
    by_suffix = envcheck("fleet", str(directory), "-o", str(report))
    docs["fleet"] = json.loads(fleet_json.stdout)
    pages["fleet"] = fleet_html.stdout
    return {"docs": docs, "pages": pages, "by_suffix": (by_suffix, report), "fleet_dir": directory}


CHARTS = {
    "doctor": set(),
    "bench": {"throughput"},
    "comm": {"busbw", "p2p"},
    "burn": {"telemetry"},
    "fleet": {"slow-gpus", "distribution"},  # and a distribution per compared figure
}


@pytest.mark.parametrize("kind", list(CHARTS))
def test_each_command_writes_one_self_contained_page(made: dict[str, Any], kind: str) -> None:
    text = made["pages"][kind]
    page = parse(text)
    assert text.startswith("<!doctype html>\n") and text.rstrip().endswith("</html>")
    (html_tag,) = page.all("html")
    assert html_tag["data-report"] == kind
    metas = page.all("meta")
    assert {"charset": "utf-8"} in metas
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in metas
    assert {"http-equiv": "Content-Security-Policy", "content": CSP} in metas
    assert "default-src 'none'" in CSP and "script-src" not in CSP
    # nothing to fetch: no element with a source, no stylesheet link, no script, nothing in the CSS
    for tag, attrs in page.elements:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        assert "src" not in attrs and "srcset" not in attrs, (tag, attrs)
        href = attrs.get("href")
        assert href is None or not re.match(r"\s*(https?:|//)", href), (tag, href)
    css = "".join(page.styles)
    assert "url(" not in css and "@import" not in css and "prefers-color-scheme" in css
    # tables scroll inside their own box, charts scale to the screen
    assert ".table{overflow-x:auto" in css and "svg.chart{display:block;width:100%" in css
    assert BROKEN not in text
    assert set(page.charts()) == CHARTS[kind], page.charts()


def test_every_chart_has_a_kind_a_name_a_title_and_a_viewbox(made: dict[str, Any]) -> None:
    for kind, text in made["pages"].items():
        for svg in re.findall(r"<svg [^>]*>.*?</svg>", text, flags=re.S):
            opening = parse(svg).all("svg")[0]
            assert opening["role"] == "img" and opening["aria-label"], (kind, opening)
            assert re.fullmatch(r"0 0 \d+ [\d.]+", opening["viewbox"] or ""), opening
            assert re.search(r"<svg [^>]*>\s*<title>[^<]+</title>", svg), kind
            assert opening["data-chart"] in CHARTS[kind]


def test_doctor_page_has_a_table_per_area_the_fixes_the_fabric_and_versions(made: dict[str, Any]) -> None:
    page = parse(made["pages"]["doctor"])
    doc = made["docs"]["doctor"]
    headings = page.headings()
    for area in ("Host", "Driver and NVML", "GPUs", "GPU fabric (NVLink, P2P, topology)"):
        assert area in headings, headings
    assert {"Fixes", "GPU fabric", "Versions"} <= set(headings)
    words = page.words
    assert f"envcheck doctor ✗ {doc['summary']['text']} host vm" in words
    nvlink = next(c for c in doc["checks"] if c["id"] == "fabric.nvlink")
    # The page and the JSON are two runs: each says the time between its own two readings of the counters.
    watched = re.compile(r" in [0-9.e-]+ s\b")
    assert "✗ fail" in words and watched.sub(" in T s", nvlink["summary"]) in watched.sub(" in T s", words)
    assert nvlink["fix"]["command"] in words
    # GPU 3's link 7 is down: its row in the NVLink table says so, and its topology cells stand out
    assert re.search(r"GPU 3 \S+ ✗ fail 17 of 18 4\.0 7", words), words
    assert words.count("NV17 !") == 14  # GPU 3's row and column of the 8 × 8 topology
    assert "NVIDIA driver: 550.90.07" in words


def test_bench_page_charts_every_figure_and_tables_them(made: dict[str, Any]) -> None:
    text = made["pages"]["bench"]
    page = parse(text)
    doc = made["docs"]["bench"]
    assert {"Devices", "Throughput", "Results", "Workers"} <= set(page.headings())
    figures = [r for r in doc["results"] if r["value"] is not None]
    units = {r["unit"] for r in figures}
    assert page.charts().count("throughput") == len(units)
    assert "No datasheet peak is known for these devices" in page.words  # a CPU has none
    charts = re.findall(r'<svg class="chart" data-chart="throughput".*?</svg>', text, flags=re.S)
    assert sum(c.count('class="bar bar-') for c in charts) == len(figures)


def bench_with_peaks(doc: dict[str, Any]) -> dict[str, Any]:
    """The CPU bench as if its device were a card in the datasheet table: each figure's peak 4 × its value."""
    out = copy.deepcopy(doc)
    for r in out["results"]:
        if r["value"] is not None:
            r["peak"], r["peak_fraction"] = r["value"] * 4, 0.25
    return out


def test_bench_bars_are_drawn_against_the_datasheet_peak(made: dict[str, Any]) -> None:
    doc = bench_with_peaks(made["docs"]["bench"])
    text = html_of(doc)
    figures = [r for r in doc["results"] if r["value"] is not None]
    assert text.count('<line class="reference"') == len(figures) + len({r["unit"] for r in figures})  # + legends
    assert "25% of the datasheet peak" in text and "against the datasheet peak" in text
    markdown = markdown_of(doc)
    assert "### Against the datasheet peak" in markdown
    first = figures[0]
    unit = first["unit"]
    assert (
        f"| `cpu` | `{first['id']}` | {first['label']} | {first['value']:.4g} {unit} "
        f"| {first['value'] * 4:.4g} {unit} | 25% |" in markdown
    )
    assert "### Against the datasheet peak" not in markdown_of(made["docs"]["bench"])  # a CPU: no peak, no table


def test_comm_page_has_busbw_per_op_against_size_and_the_p2p_heatmap(made: dict[str, Any]) -> None:
    text = made["pages"]["comm"]
    doc = made["docs"]["comm"]
    page = parse(text)
    assert {"World", "Bus bandwidth", "Results", "Point to point"} <= set(page.headings())
    busbw = re.search(r'<svg class="chart" data-chart="busbw".*?</svg>', text, flags=re.S).group(0)
    ops = {r["op"] for r in doc["results"]}
    assert busbw.count('<path class="line') == len(ops) == 2  # one line per op
    assert "KiB" in busbw  # sizes on the x axis
    heat = re.search(r'<svg class="chart" data-chart="p2p".*?</svg>', text, flags=re.S).group(0)
    n = len(doc["p2p"]["ranks"])
    assert heat.count('class="cell-none"') == n and heat.count('<rect class="cell') == n * n  # diagonal: no value
    assert len(page.all("table")) >= 3  # ranks, results, the matrix's numbers


def test_comm_heatmap_flags_a_slow_link_in_words_not_colour_alone(made: dict[str, Any]) -> None:
    doc = copy.deepcopy(made["docs"]["comm"])
    doc["p2p"]["slow_pairs"] = [{"src": 1, "dst": 0, "gb_s": 0.01, "median_gb_s": 0.05, "shortfall": 0.8}]
    text = html_of(doc)
    heat = re.search(r'<svg class="chart" data-chart="p2p".*?</svg>', text, flags=re.S).group(0)
    assert heat.count("cell-flagged") == 1 and ">!</text>" in heat and "(slow)" in heat
    assert "slow link rank 1 → rank 0: 0.01 GB/s, 80% below" in parse(text).words
    assert "- **slow link** rank 1 → rank 0: 0.01 GB/s, 80% below" in markdown_of(doc)


def test_no_p2p_matrix_no_heatmap(made: dict[str, Any]) -> None:
    doc = {**made["docs"]["comm"], "p2p": None}
    assert parse(html_of(doc)).charts() == ["busbw"]


def test_cpu_burn_charts_what_its_timeline_holds(made: dict[str, Any]) -> None:
    text = made["pages"]["burn"]
    page = parse(text)
    assert {"Steady state", "Telemetry over time"} <= set(page.headings())
    # a CPU burn: its throughput and the host's load, no GPU telemetry
    assert "Throughput (TFLOP/s)" in page.headings() or "Throughput (TFLOP/s)" in page.words
    assert "Host CPU load (%)" in page.words and "SM clock" not in page.words
    assert page.charts() == ["telemetry", "telemetry"]


def test_gpu_burn_charts_each_metric_with_a_line_per_gpu(nvml: Any) -> None:
    from tests.burn.test_run import gpu_run

    doc = gpu_run(nvml, "burn_throttle_after_warmup")
    text = html_of(doc)
    page = parse(text)
    titles = [a["aria-label"] for a in page.all("svg")]
    for metric in ("Throughput (TFLOP/s)", "GPU temperature (°C)", "SM clock (MHz)", "Power draw (W)"):
        assert any(t.startswith(metric) for t in titles), titles
    charts = re.findall(r'<svg class="chart" data-chart="telemetry".*?</svg>', text, flags=re.S)
    assert all(c.count('<path class="line') == 8 for c in charts)  # 8 GPUs
    assert "HW thermal slowdown from 7:00" in page.words and "✗ fail" in page.words
    markdown = markdown_of(doc)
    table = markdown.split("### Telemetry (12 of 121 sampling rounds)", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`cuda:" in line]
    assert len(rows) == 12 * 8
    assert "| time | device | Throughput (TFLOP/s) | GPU temperature (°C) | SM clock (MHz) | Power draw (W)" in table
    assert any(line.startswith("| 10:00 | `cuda:2` | 554.4 | ") for line in rows), rows[-8:]


def test_an_interrupted_burn_says_so(nvml: Any) -> None:
    from tests.burn.test_run import gpu_run

    page = parse(html_of(gpu_run(nvml, "burn_healthy_8gpu", interrupted=True)))
    assert "! interrupted by SIGINT: the report covers what ran" in page.words


def test_fleet_page_names_the_slow_gpu_against_its_fleet_median(made: dict[str, Any]) -> None:
    text = made["pages"]["fleet"]
    doc = made["docs"]["fleet"]
    page = parse(text)
    assert {"Counts", "Nodes", "Slow GPUs"} <= set(page.headings())
    slow = doc["slow_gpus"]
    assert slow and {(f["hostname"], f["index"]) for f in slow} == {("gpu-b", 1)}
    chart = re.search(r'<svg class="chart" data-chart="slow-gpus".*?</svg>', text, flags=re.S).group(0)
    # one card slow in two figures: one bar (its worst figure), one slow GPU
    devices = [d for h in doc["slow_devices"] for d in h["devices"]]
    assert len(devices) == 1 < len(slow)
    assert chart.count('class="bar bar-fail"') == len(devices) and chart.count('class="track"') == len(devices) + 1
    assert "gpu-b GPU 1 (" in chart and "20% below the median" in chart and "1 more slow figure" in chart
    assert "fabric.nvlink" in page.words  # each node's failing check, with its fix
    assert "nvidia-smi nvlink -s -i 3" in page.words


def test_a_fleet_without_slow_gpus_says_so_instead_of_a_chart(made: dict[str, Any]) -> None:
    doc = {**made["docs"]["fleet"], "slow_gpus": [], "slow_devices": []}
    page = parse(html_of(doc))
    assert "slow-gpus" not in page.charts()
    assert "No slow GPU (more than 10% below the fleet median of their model)." in page.words


def test_output_file_gets_html_by_its_suffix(made: dict[str, Any]) -> None:
    proc, report = made["by_suffix"]
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stdout.startswith("envcheck fleet")  # the terminal keeps the text report
    text = report.read_text()
    assert text.startswith("<!doctype html>") and 'data-report="fleet"' in text


def test_htm_suffix_and_help_name_the_format() -> None:
    from envcheck.render import format_for_path

    assert format_for_path("r.HTML") == "html" and format_for_path("r.htm") == "html"
    for command in ("doctor", "bench", "comm", "burn", "fleet"):
        helped = envcheck(command, "--help").stdout
        assert "html (one self-contained page with charts)" in " ".join(helped.split()), command
    # the healthcheck keeps its own formats (a line for Docker, Prometheus, JSON): no page there
    refused = envcheck("healthcheck", "--format", "html")
    assert (
        refused.returncode != 0
        and "'html' is not one of 'line', 'prometheus', 'json'" in refused.stdout + refused.stderr
    )


HOSTILE = '<script>alert(\'x\')</script>"onload="x" & <img src=//evil.example/a.png>'


def hostile(value: Any) -> Any:
    """Every string of a document replaced by a hostile one that keeps the original in front."""
    if isinstance(value, str):
        return value + HOSTILE
    if isinstance(value, list):
        return [hostile(v) for v in value]
    if isinstance(value, dict):
        return {k: (v if k == "schema" else hostile(v)) for k, v in value.items()}
    return value


@pytest.mark.parametrize("kind", list(CHARTS))
def test_every_string_from_the_machine_is_escaped(made: dict[str, Any], kind: str) -> None:
    doc = hostile(made["docs"][kind])
    text = html_of(doc)
    page = parse(text)
    assert not page.all("script") and not page.all("img"), kind
    assert "<script>" not in text and "<img" not in text and '"onload="' not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    for tag, attrs in page.elements:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    assert doc["host"]["hostname"] in page.words


#: Values of every JSON type, for a document shaped unlike any envcheck writes (as tests/fleet's).
ODD = (None, True, 0, -1.5, float("nan"), "x", [], {}, [None], [1, "x"], {"a": None}, [{"id": 1, "status": "fail"}])


def variants(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each field of ``doc``, of its first list item, and of its dicts, replaced by every odd value; and the
    document cut down to its envelope."""
    out = [{k: doc[k] for k in ("schema", "envcheck_version", "generated_at") if k in doc}]
    for key, value in doc.items():
        if key == "schema":
            continue
        out += [{**doc, key: odd} for odd in ODD]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for inner in value[0]:
                out += [{**doc, key: [{**value[0], inner: odd}, *value[1:]]} for odd in ODD]
        if isinstance(value, dict):
            for inner in value:
                out += [{**doc, key: {**value, inner: odd}} for odd in ODD]
    return out


@pytest.mark.parametrize("kind", list(CHARTS))
def test_oddly_shaped_documents_still_give_a_whole_page(made: dict[str, Any], kind: str) -> None:
    """Every variant renders, and no section gives up: each reads the fields it needs defensively."""
    given_up = []
    docs = variants(made["docs"][kind])
    assert len(docs) > 100
    for doc in docs:
        text = html_of(doc)
        assert text.startswith("<!doctype html>") and text.endswith("</html>\n")
        if BROKEN in text:
            given_up.append(next((k for k in doc if doc[k] is not made["docs"][kind].get(k)), "?"))
    assert given_up == [], sorted(set(given_up))


def test_not_a_report_at_all_is_a_doctor_page_that_says_nothing_was_judged() -> None:
    for doc in ({}, {"schema": "envcheck.other/9"}, {"schema": []}, {"checks": "x", "host": []}):
        text = html_of(doc)
        assert 'data-report="doctor"' in text and BROKEN not in text
        assert "no verdict" in text


def comm_sized(top_exponent: int) -> dict[str, Any]:
    """A comm report whose messages double from 2**(top - 4) bytes to 2**top bytes (64 KiB on CPU ranks, up
    to gigabytes on GPUs): the busbw chart's last x label is the largest size, at the axis's right end."""
    sizes = [2**e for e in range(top_exponent - 4, top_exponent + 1)]
    results = [
        {"op": op, "size_bytes": size, "busbw_gb_s": 1.0 + i, "verified": True}
        for op in ("all_reduce", "broadcast")
        for i, size in enumerate(sizes)
    ]
    return {"schema": "envcheck.comm/1", "results": results, "peaks": [{"op": "all_reduce", "busbw_gb_s": 5.0}]}


@pytest.mark.parametrize("top_exponent", [16, 33], ids=["64 KiB", "8 GiB"])
def test_the_comm_charts_last_size_label_has_room_inside_the_chart(top_exponent: int) -> None:
    from envcheck.core.units import human
    from envcheck.render.svg import CHAR_WIDTH, FONT, LABEL_ROOM, WIDTH

    svg = re.search(r'<svg class="chart" data-chart="busbw".*?</svg>', html_of(comm_sized(top_exponent)), re.S)
    assert svg is not None
    last = human(2**top_exponent)
    label = re.search(rf'<text x="([\d.]+)"[^>]*text-anchor="middle"[^>]*>{re.escape(last)}</text>', svg[0])
    assert label is not None, f"no x label {last!r}"
    assert "textLength" not in label[0]  # drawn at its size, not squeezed to fit
    # its estimated right end leaves room for a font wider than the average
    assert float(label[1]) + len(last) * FONT * CHAR_WIDTH / 2 + LABEL_ROOM <= WIDTH


def test_each_page_puts_what_to_act_on_first_and_folds_the_raw_tables(made: dict[str, Any]) -> None:
    """Under the verdict: the problems with their fixes; the inventory, every check's table, raw results
    and versions come after, each a closed <details> (no script opens them)."""
    doctor = made["pages"]["doctor"]
    first_section = re.search(r"<section[^>]*>\s*(?:<details>\s*<summary>)?<h2>(.*?)</h2>", doctor)
    assert first_section is not None and first_section[1] == "Fixes"
    folded = re.findall(r"<details>\s*<summary><h2>(.*?)</h2></summary>", doctor)
    assert {"GPU inventory", "Host", "GPU fabric", "Versions"} <= set(folded), folded
    # the failing check's fix comes before the warning's (the most severe first)
    fixes = made["docs"]["doctor"]["checks"]
    failing = next(c for c in fixes if c["status"] == "fail" and c.get("fix"))
    warned = next(c for c in fixes if c["status"] == "warn" and c.get("fix"))
    assert doctor.index(prose(failing["fix"]["text"])) < doctor.index(prose(warned["fix"]["text"]))
    for kind, raw in (("bench", "Results"), ("bench", "Devices"), ("comm", "Results"), ("burn", "Steady state")):
        assert raw in re.findall(r"<details>\s*<summary><h2>(.*?)</h2></summary>", made["pages"][kind]), (kind, raw)
    assert "<script" not in doctor


def test_every_table_cell_carries_its_columns_name_for_the_phones_cards() -> None:
    """At a phone's width the header row is out of sight: each cell names its column (data-label),
    what the card shows beside the value; markup in a header is left out of the label."""
    from envcheck.render.html import STYLE, table

    text = table(["device", "<b>peak</b>", 'a "quoted" name'], [["cuda:0", ("n", "1,958"), "x"]], (1,))
    assert '<td data-label="device">cuda:0</td>' in text
    assert '<td class="n" data-label="peak">1,958</td>' in text
    assert '<td data-label="a &quot;quoted&quot; name">x</td>' in text
    assert "@media (max-width:640px)" in STYLE and "content:attr(data-label)" in STYLE


def test_a_fleets_distribution_stays_small_and_marks_the_slow_devices() -> None:
    """10 000 devices draw as many columns as 100 do; each slow device is marked under the axis."""
    from envcheck.render.svg import BINS, distribution_chart

    def chart(n: int, slow: int) -> str:
        values = [700.0 + (i % 13) for i in range(n - slow)] + [560.0 + i for i in range(slow)]
        return distribution_chart("distribution", "matmul.bf16", values, median=706.0, slow_below=635.4, unit="TFLOP/s")

    small, big = chart(100, 3), chart(10_000, 3)
    assert big.count("<rect") <= BINS and abs(len(big) - len(small)) < 200
    assert big.count('class="slow-mark"') == 3 and 'class="bin bin-slow"' in big
    assert "<title>3 slow devices</title>" in big and 'class="threshold"' in big and 'class="median"' in big
    assert 'class="slow-mark"' not in chart(100, 0)


def test_a_narrow_bins_range_is_told_with_the_digits_that_part_its_ends() -> None:
    """Figures sitting close together make narrow bins: each bin's range says two different numbers
    ("19.1k–19.1k" said nothing)."""
    from envcheck.render.svg import distribution_chart

    values = [19_100.0 + i / 10 for i in range(300)]
    chart = distribution_chart("distribution", "matmul", values, median=19_115.0, slow_below=None, unit="GFLOP/s")
    ranges = re.findall(r"devices? at (\S+)–(\S+) GFLOP/s", chart)
    assert len(ranges) > 10 and all(low != high for low, high in ranges), ranges


def test_the_fleets_since_line_is_right_under_the_verdict(made: dict[str, Any]) -> None:
    """With --since, what changed is counted in one line right under the verdict, as the text and Markdown
    reports put it, not in a section further down; that section lists each change."""
    from envcheck.fleet.render import since_line, verdict

    since = {
        "previous": {"source": "monday.json", "generated_at": "2025-01-06T08:00:00Z"},
        "new": [{"report": "doctor", "id": "gpu.ecc", "status": "fail", "count": 1, "nodes": ["gpu-a"]}],
        "resolved": [],
        "appeared": ["gpu-b"],
        "vanished": [],
        "slower": [],
    }
    doc = {**made["docs"]["fleet"], "since": since}
    text = html_of(doc)
    head = f"<p><b>{escape(verdict(doc))}</b></p>"
    line = f"<p>{escape(since_line(since))}</p>"
    assert re.search(re.escape(head) + r"\s*" + re.escape(line), text), "the since line is not under the verdict"
    problems = text[text.index('<section id="problems">') :]
    assert problems.index(line) < problems.index("<li>") and text.count(escape(since_line(since))) == 1
    assert "NEW doctor gpu.ecc fail on 1 node: gpu-a" in parse(text).words


def test_the_fleets_counts_leave_out_zeros_and_follow_the_slow_gpus(made: dict[str, Any]) -> None:
    """The slow devices come before the counts; a count of 0 is left out, but for the node totals."""
    doc = copy.deepcopy(made["docs"]["fleet"])
    doc["summary"].update(failing=0, skipped=0, duplicate_hosts=0, slow_cpus=0)
    text = html_of(doc)
    assert text.index("<h2>Slow GPUs</h2>") < text.index("<h2>Counts</h2>")
    counts = text[text.index("<h2>Counts</h2>") :].split("</section>")[0]
    labels = re.findall(r'<td data-label="">(.*?)</td>', counts)
    assert {"nodes", "failing", "with warnings", "ok", "slow GPUs"} <= set(labels), labels
    assert not {"skipped", "duplicate hosts", "slow CPUs"} & set(labels), labels
    values = re.findall(r'<td class="n" data-label="count">(\d+)</td>', counts)
    zeros = {label for v, label in zip(values, labels, strict=True) if v == "0"}
    assert "failing" in zeros and zeros <= {"failing", "with warnings", "ok"}, zeros  # only the node totals'


def test_the_fleets_slow_gpus_are_one_row_per_device_with_its_figures_in_one_cell(made: dict[str, Any]) -> None:
    """A card slow in six benchmarks is one row (host and index, model, UUID and PCI bus id) with its six
    figures in one cell, and one bar: the table counts devices, as the summary does."""
    doc = copy.deepcopy(made["docs"]["fleet"])
    (host,) = doc["slow_devices"]
    (device,) = host["devices"]
    template = device["figures"][0]
    device["figures"] = [
        {**template, "id": f"bench.{i}", "shortfall": s, "value": template["fleet_median"] * (1 - s)}
        for i, s in enumerate(0.1 + i / 100 for i in range(6))
    ]
    doc["slow_gpus"] = [{**f, "hostname": host["hostname"], "index": device["index"]} for f in device["figures"]]
    text = html_of(doc)
    section = text[text.index("<h2>Slow GPUs</h2>") :].split("</section>")[0]
    rows = re.findall(r"<tr><td.*?</tr>", section)
    assert len(rows) == 1, rows
    cells = re.findall(r'<td[^>]*data-label="([^"]*)"[^>]*>(.*?)</td>', rows[0])
    assert len(cells) <= 5, cells
    assert all(f"<code>bench.{i}</code>" in rows[0] for i in range(6))
    assert device["uuid"] in rows[0] and device["pci_bus_id"] in rows[0] and escape(device["model"]) in rows[0]
    chart = re.search(r'<svg class="chart" data-chart="slow-gpus".*?</svg>', text, flags=re.S).group(0)
    assert chart.count('class="bar bar-fail"') == 1 and "bench.5" in chart  # its worst figure: 15 % below


#: A fix's words as the checks write them, a code span around a command, and one around markup.
CODE_FIX = "Refresh the linker cache (`sudo ldconfig`), then `<img src=x onerror=alert(1)>` & run it again"


def with_code_fix(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with a failing check (a fleet's problem, a comm's transport finding) whose fix is
    :data:`CODE_FIX`."""
    doc = copy.deepcopy(doc)
    failing = {"id": "gpu.ecc", "title": "ECC", "status": "fail", "summary": "uncorrected ECC errors"}
    fix = {"text": CODE_FIX, "command": "sudo ldconfig"}
    if kind == "doctor":
        next(c for c in doc["checks"] if c["status"] == "fail" and c.get("fix"))["fix"] = fix
    elif kind == "fleet":
        group = next(g for g in doc["problems"] if g.get("fix"))
        group["fix"], group["fixes"] = fix, [{"fix": fix, "nodes": group["nodes"]}]
    elif kind == "bench":
        doc["preflight"] = [*doc.get("preflight", []), {**failing, "fix": fix}]
    elif kind == "burn":
        doc["verdicts"] = [{**failing, "fix": fix}]
    elif kind == "comm":
        finding = {"host": "cpu-1", "ranks": [0, 1], "what": "sockets", "checks": ["net.ib"], "fix": CODE_FIX}
        doc["transport"] = {"findings": [finding]}
    return doc


@pytest.mark.parametrize("kind", list(CHARTS))
def test_a_fixs_code_spans_are_code_on_the_page_and_bare_in_text(made: dict[str, Any], kind: str) -> None:
    """The checks write commands in a fix's words as Markdown code spans: every kind's page shows them as
    <code>, escaped (a span holding markup is text, the page's CSP unchanged), and its text report as the
    bare command, no backtick left showing."""
    doc = with_code_fix(kind, made["docs"][kind])
    page = html_of(doc)
    assert "(<code>sudo ldconfig</code>), then <code>&lt;img src=x onerror=alert(1)&gt;</code> &amp; run" in page
    assert "`" not in "".join(re.findall(r'<p class="fix">.*?</p>', page)) and "<img" not in page
    assert f'content="{CSP}"' in page
    buffer = StringIO()
    render(doc, "text", make_console(buffer, for_file=True), RenderOptions())
    text = " ".join(buffer.getvalue().split())
    assert "Refresh the linker cache (sudo ldconfig), then <img src=x onerror=alert(1)> & run it again" in text
    assert "`" not in text


@pytest.mark.parametrize(
    "values",
    [
        [560.0, *(700.0 + i % 13 for i in range(60))],  # one slow card far below the round ticks
        [612.3, 640.0, 655.5, 701.7],
        [0.0351, 0.0402, 0.0398, 0.041],
        [1958.0, 1960.0],  # a healthy model: its devices side by side, far above the slow threshold
    ],
)
def test_a_distributions_lowest_and_highest_devices_are_labelled_under_its_axis(values: list[float]) -> None:
    from envcheck.render.svg import distribution_chart, short

    median = sorted(values)[len(values) // 2]
    svg = distribution_chart("distribution", "figure", values, median=median, slow_below=median * 0.9, unit="x")
    labels = re.findall(r'<text x="[\d.]+" y="([\d.]+)"[^>]*class="muted"[^>]*>([^<]*)</text>', svg)
    axis_y = max(float(y) for y, _ in labels)
    under_axis = [text for y, text in labels if float(y) == axis_y]
    low, high = short(min(values)), short(max(values))
    assert (low in under_axis and high in under_axis) or f"{low}–{high}" in under_axis, under_axis
    boxes = sorted(float(x) for x in re.findall(rf'<text x="([\d.]+)" y="{axis_y:g}"', svg))
    assert len(boxes) == len(set(boxes)), "two labels at one place"
