"""``--format html``: one self-contained page per report (doctor, bench, comm, burn, fleet), with charts
where a person would rather look than read.

Why it is shaped this way:

* **Nothing is fetched.** The page is mailed, attached to a ticket, opened from a cluster's shared disk
  or on a machine with no internet. Styles are inline, charts are inline SVG (envcheck.render.svg), there
  is no script, font or image, and a Content-Security-Policy (``default-src 'none'``) makes sure the
  browser fetches nothing even if a report's text tried to make it.
* **A phone can read it.** The viewport is the device's; tables scroll sideways inside their own box
  instead of widening the page; charts scale with their ``viewBox``. Light and dark follow the reader's
  setting.
* **Colour never says anything alone.** Each status is a mark and a word (``✗ fail``) as well as a
  colour; each chart has a title and an ``aria-label``, and its numbers are in a table next to it.
* **Everything from a machine is escaped.** Host names, GPU names, errors and fixes go through
  ``html.escape``; a report cannot inject markup into the page.
* **A strange document still gives a page.** Every field is read defensively (a hand-edited or truncated
  report is missing things); a section that still fails to draw says so in place (:data:`BROKEN`) and the
  rest of the page is drawn.

The sections mirror the text and Markdown reports of the same document; the charts add per-device
throughput against the datasheet peak (bench), busbw against message size and the P2P matrix (comm),
telemetry over time (burn) and the fleet's slow GPUs against their fleet median (fleet). Each chart is an
``<svg class="chart" data-chart=KIND>`` (KIND: throughput, busbw, p2p, telemetry, slow-gpus), drawn only
where its data exists; ``<html data-report=KIND>`` names the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from html import escape
from typing import TYPE_CHECKING, Any

from envcheck.core.report import BENCH_SCHEMA, BURN_SCHEMA, COMM_SCHEMA, FLEET_SCHEMA
from envcheck.render import RenderOptions, renderer
from envcheck.render.svg import Bar, Series, bar_chart, finite, heatmap, line_chart

if TYPE_CHECKING:
    from rich.console import Console

#: What a section says in place of itself when the document is too odd to draw it from.
BROKEN = "This section could not be drawn from the report"

#: Fetch nothing, run nothing: only the inline styles (and data: images, of which there are none).
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

MARKS = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "–", "crash": "☠"}

#: Colours as CSS variables; dark mode swaps the variables, not the rules. Series colours are the
#: Okabe-Ito palette (told apart with the common colour-vision deficiencies), darkened a little for
#: contrast on white.
STYLE = """
:root{color-scheme:light dark;--fg:#1f2328;--bg:#ffffff;--muted:#59636e;--line:#d1d9e0;--track:#e8ebef;
--ok:#1a7f37;--warn:#9a6700;--fail:#cf222e;--crash:#8250df;--skip:#59636e;--accent:#0969da;
--s0:#0072b2;--s1:#d55e00;--s2:#009e73;--s3:#cc79a7;--s4:#8a6d00;--s5:#56b4e9;--s6:#e69f00;--s7:#444}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#3d444d;
--track:#262c36;--ok:#3fb950;--warn:#d29922;--fail:#f85149;--crash:#ab7df8;--skip:#9198a1;--accent:#4493f8;
--s0:#56b4e9;--s1:#e69f00;--s2:#3fb98f;--s3:#e08cc0;--s4:#f0e442;--s5:#9ad0f5;--s6:#ff9e4a;--s7:#ccc}}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:var(--bg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header,main,footer{max-width:980px;margin:0 auto;padding:0 14px}
header{padding-top:14px}
h1{font-size:1.3rem;margin:.2em 0}
h2{font-size:1.08rem;margin:1.6em 0 .5em;padding-bottom:.2em;border-bottom:1px solid var(--line)}
h3{font-size:.98rem;margin:1.2em 0 .4em}
p{margin:.4em 0}
.kind{margin:0;color:var(--muted);font-size:.85rem;letter-spacing:.04em;text-transform:uppercase}
.meta,.muted,footer{color:var(--muted);font-size:.85rem}
footer{margin-top:2em;padding-bottom:2em}
.table{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:.4em 0 1em}
table{border-collapse:collapse;font-size:.88rem}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td code{white-space:nowrap}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
pre{overflow-x:auto;padding:8px 10px;background:var(--track);border-radius:4px}
ul{padding-left:1.2em}
li{margin:.3em 0}
.badge{white-space:nowrap;font-weight:600}
.s-ok{color:var(--ok)}.s-warn{color:var(--warn)}.s-fail{color:var(--fail)}.s-crash{color:var(--crash)}
.s-skip,.s-unknown{color:var(--skip)}
td.odd{color:var(--fail);font-weight:600}
.fix{margin:.2em 0 .8em}
.broken{color:var(--fail)}
svg.chart{display:block;width:100%;max-width:680px;height:auto;margin:.6em 0 1.2em}
svg.chart text{fill:var(--fg)}
svg.chart text.muted{fill:var(--muted)}
svg.chart .bar{fill:var(--accent)}
svg.chart .bar-warn{fill:var(--warn)}
svg.chart .bar-fail,svg.chart .bar-crash{fill:var(--fail)}
svg.chart .track{fill:var(--track)}
svg.chart .reference{stroke:var(--fg);stroke-width:2}
svg.chart .grid{stroke:var(--line);stroke-width:1}
svg.chart .axis{stroke:var(--muted);stroke-width:1}
svg.chart .line{fill:none;stroke-width:2;stroke-linejoin:round}
svg.chart .cell{fill:var(--accent)}
svg.chart .cell-none{fill:var(--track)}
svg.chart .cell-flagged{stroke:var(--fail);stroke-width:3}
svg.chart text.cell-text-dark{fill:#fff}
""" + "".join(
    f"svg.chart .series-{i}{{stroke:var(--s{i})}}svg.chart .dot.series-{i}{{fill:var(--s{i})}}" for i in range(8)
)


@renderer(
    "html", "one self-contained HTML page with charts (no network, readable on a phone)", suffixes=(".html", ".htm")
)
def render_html(document: dict[str, Any], console: Console, options: RenderOptions) -> None:
    console.file.write(page(document))


def page(doc: dict[str, Any]) -> str:
    """The whole page for one report document (any of the five kinds)."""
    doc = doc if isinstance(doc, dict) else {}
    schema = doc.get("schema") if isinstance(doc.get("schema"), str) else None
    kind, sections = {
        BENCH_SCHEMA: ("bench", BENCH_SECTIONS),
        COMM_SCHEMA: ("comm", COMM_SECTIONS),
        BURN_SCHEMA: ("burn", BURN_SECTIONS),
        FLEET_SCHEMA: ("fleet", FLEET_SECTIONS),
    }.get(schema, ("doctor", DOCTOR_SECTIONS))
    top = guarded(HEADERS[kind], doc)
    head_html, title = top if isinstance(top, tuple) else (top, f"envcheck {kind}")
    body = "\n".join(part for part in (guarded(fn, doc) for fn in sections) if part)
    footer = (
        f"<footer>Written by envcheck {e(doc.get('envcheck_version'))} "
        f"({e(schema or 'no schema')}). "
        "This page loads nothing from the network; the same report as JSON: <code>--json</code>.</footer>"
    )
    return (
        "<!doctype html>\n"
        f'<html lang="en" data-report="{kind}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{head_html}\n<main>\n{body}\n</main>\n{footer}\n</body>\n</html>\n"
    )


def guarded(fn: Callable[[dict[str, Any]], Any], doc: dict[str, Any]) -> Any:
    """One section, drawn on its own: a field too odd to read costs that section, never the page."""
    try:
        return fn(doc)
    except Exception as exc:  # noqa: BLE001 - a report that is not envcheck's shape must still give a page
        return (
            f'<p class="broken">{BROKEN} ({e(type(exc).__name__)}); the JSON report (<code>--json</code>) has it.</p>'
        )


# -- reading a document that may be odd ------------------------------------------------------------------


def e(value: Any) -> str:
    """Text for the page, escaped (quotes too: it may land in an attribute); nothing for None."""
    return "" if value is None else escape(str(value), quote=True)


def lst(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def dct(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[dict[str, Any]]:
    """The dict entries of a list field (a hand-edited report may hold anything)."""
    return [x for x in lst(value) if isinstance(x, dict)]


def num(value: Any, digits: int = 3) -> str:
    """A figure as a person reads it: 1,958 / 31.5 / 2.10 / 0.0351; '-' where there is none."""
    x = finite(value)
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}g}"


def pct(value: Any) -> str:
    x = finite(value)
    return "-" if x is None else f"{x:.0%}"


def seconds_text(value: Any) -> str:
    x = finite(value)
    return "-" if x is None else f"{x:.1f} s"


def size_text(value: Any) -> str:
    from envcheck.core.units import human

    x = finite(value)
    return "-" if x is None or x < 0 else human(int(x))


def badge(status: Any) -> str:
    word = str(status) if status is not None else "unknown"
    known = word if word in MARKS else "unknown"
    return f'<span class="badge s-{known}">{MARKS.get(word, "?")} {e(word)}</span>'


def code(value: Any) -> str:
    return f"<code>{e(value)}</code>" if value not in (None, "") else ""


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], numeric: Iterable[int] = ()) -> str:
    """A table in its own sideways-scrolling box; cells are HTML already (escape text with :func:`e`)."""
    right = set(numeric)
    head = "".join(f"<th{' class=n' if i in right else ''}>{h}</th>" for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = c[0] if isinstance(c, tuple) else ("n" if i in right else "")
            text = c[1] if isinstance(c, tuple) else c
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def section(title: str, *parts: str, anchor: str = "") -> str:
    content = "\n".join(p for p in parts if p)
    if not content:
        return ""
    ident = f' id="{e(anchor)}"' if anchor else ""
    return f"<section{ident}>\n<h2>{e(title)}</h2>\n{content}\n</section>"


def header(kind: str, headline: str, status: Any, doc: dict[str, Any], extra: str = "") -> tuple[str, str]:
    """The page's top: which report, its verdict (mark, word and colour), where and when it ran."""
    host = dct(doc.get("host"))
    meta = " · ".join(
        x
        for x in (
            f"host <code>{e(host.get('hostname'))}</code>" if host.get("hostname") else "",
            e(doc.get("generated_at")),
            f"envcheck {e(doc.get('envcheck_version'))}" if doc.get("envcheck_version") else "",
            seconds_text(doc.get("duration_s")) if finite(doc.get("duration_s")) is not None else "",
            extra,
        )
        if x
    )
    status_word = status if isinstance(status, str) and status in MARKS else "unknown"
    html = (
        f'<header>\n<p class="kind">envcheck {kind}</p>\n'
        f'<h1 class="s-{status_word}">{MARKS.get(status_word, "")} {e(headline)}</h1>\n'
        f'<p class="meta">{meta}</p>\n</header>'
    )
    return html, f"envcheck {kind}: {headline}"


def problem_items(results: list[dict[str, Any]]) -> str:
    """Each problem with its fix, where it has one, in words and as a command to run."""
    out = []
    for r in results:
        fix = dct(r.get("fix"))
        where = f" on {code(r.get('where'))}" if r.get("where") else ""
        text = f'<p class="fix">fix: {e(fix["text"])}</p>' if fix.get("text") else ""
        command = f"<pre><code>{e(fix['command'])}</code></pre>" if fix.get("command") else ""
        out.append(
            f"<li>{badge(r.get('status'))} {code(r.get('id'))}{where}: {e(r.get('summary'))}{text}{command}</li>"
        )
    return f"<ul>{''.join(out)}</ul>" if out else ""


def checks_table(results: list[dict[str, Any]]) -> str:
    rows = [[badge(r.get("status")), e(r.get("title")), e(r.get("summary")), code(r.get("id"))] for r in results]
    return table(["status", "check", "result", "id"], rows)


# -- doctor ----------------------------------------------------------------------------------------------


def doctor_header(doc: dict[str, Any]) -> tuple[str, str]:
    summary = dct(doc.get("summary"))
    counts = dct(doc.get("counts"))
    tally = ", ".join(f"{v} {k}" for k, v in counts.items() if isinstance(v, int) and v)
    return header(
        "doctor", str(summary.get("text") or doc.get("status") or "no verdict"), doc.get("status"), doc, tally
    )


def doctor_gpus(doc: dict[str, Any]) -> str:
    driver = dct(doc.get("driver"))
    gpus = items(doc.get("gpus"))
    if not gpus and not driver:
        return ""
    lead = ""
    if driver:
        lead = (
            f"<p>NVIDIA driver {e(driver.get('version') or '-')}, CUDA ≤ {e(driver.get('cuda_version') or '-')}, "
            f"NVML {e(driver.get('nvml_version') or '-')}</p>"
        )
    rows = []
    for g in gpus:
        used, total = finite(g.get("memory_used_bytes")), finite(g.get("memory_total_bytes"))
        memory = f"{size_text(used)} of {size_text(total)}" if total is not None else "-"
        power = f"{num(g.get('power_draw_w'))} / {num(g.get('power_limit_w'))}"
        lost = ' <span class="badge s-fail">✗ lost</span>' if g.get("lost") is True else ""
        rows.append(
            [
                e(g.get("index")),
                e(g.get("name")) + lost,
                code(g.get("pci_bus_id")),
                memory,
                num(g.get("temperature_c")),
                power,
                num(g.get("utilization_gpu_pct")),
            ]
        )
    grid = (
        table(["GPU", "name", "PCI bus", "memory used", "°C", "power W", "util %"], rows, (3, 4, 5, 6)) if rows else ""
    )
    return section("GPU inventory", lead, grid)


def doctor_areas(doc: dict[str, Any]) -> str:
    areas = dct(doc.get("areas"))
    by_area: dict[str, list[dict[str, Any]]] = {}
    for r in items(doc.get("checks")):
        by_area.setdefault(str(r.get("id") or "?").split(".", 1)[0], []).append(r)
    return "\n".join(
        section(str(areas.get(area) or area), checks_table(rs), anchor=f"area-{area}") for area, rs in by_area.items()
    )


def doctor_fixes(doc: dict[str, Any]) -> str:
    problems = [
        r for r in items(doc.get("checks")) if r.get("status") in ("warn", "fail", "crash") and dct(r.get("fix"))
    ]
    return section("Fixes", problem_items(problems), anchor="fixes")


def doctor_fabric(doc: dict[str, Any]) -> str:
    """NVLink topology (nvidia-smi topo -m's letters) and each GPU's links: a link down stands out."""
    fabric = dct(doc.get("fabric"))
    gpus = lst(fabric.get("gpus"))
    parts = []
    topology = [lst(row) for row in lst(fabric.get("topology"))]
    if gpus and topology:
        counts: dict[str, int] = {}
        for row in topology:
            for v in row:
                if v != "X":
                    counts[str(v)] = counts.get(str(v), 0) + 1
        common = max(counts, key=lambda k: counts[k]) if counts else None
        rows = []
        for gpu, row in zip(gpus, topology, strict=False):  # a short row is drawn short
            cells: list[Any] = [f"GPU {e(gpu)}"]
            for v in row:
                odd = v != "X" and str(v) != common
                cells.append(("odd", e(v) + " !") if odd else e(v))
            rows.append(cells)
        parts.append("<h3>Topology</h3>")
        if common:
            parts.append(f'<p class="muted">Most pairs: {e(common)}; a pair marked "!" differs.</p>')
        parts.append(table(["", *(f"GPU {e(g)}" for g in gpus)], rows))
    nvlink = dct(fabric.get("nvlink"))
    if nvlink:
        rows = []
        for index, entry in nvlink.items():
            entry = dct(entry)
            links = items(entry.get("links"))
            down = [str(link.get("link")) for link in links if link.get("active") is False]
            up, total = entry.get("links_up"), entry.get("links_total")
            state = badge("ok") if up == total else badge("fail")
            rows.append(
                [
                    f"GPU {e(index)}",
                    code(entry.get("pci_bus_id")),
                    state,
                    f"{e(up)} of {e(total)}",
                    e(entry.get("version")),
                    e(", ".join(down)) if down else "-",
                ]
            )
        parts += ["<h3>NVLink</h3>", table(["GPU", "PCI bus", "", "links up", "version", "links down"], rows, (3,))]
    return section("GPU fabric", *parts)


def doctor_versions(doc: dict[str, Any]) -> str:
    from envcheck.render.markdown import versions_block

    return section("Versions", f"<pre>{e(chr(10).join(versions_block(doc)))}</pre>")


# -- bench -----------------------------------------------------------------------------------------------


def bench_header(doc: dict[str, Any]) -> tuple[str, str]:
    verdict = "interrupted" if doc.get("interrupted") else ("problems found" if doc.get("exit_code") else "verified")
    status = "warn" if doc.get("interrupted") else ("fail" if doc.get("exit_code") else "ok")
    return header("bench", verdict, status, doc, bench_summary(doc))


def bench_summary(doc: dict[str, Any]) -> str:
    c = dct(doc.get("summary"))
    words = ", ".join(
        f"{v} {k.replace('_', ' ')}"
        for k, v in c.items()
        if isinstance(v, int) and v and k not in ("planned", "finished", "figures")
    )
    return e(words)


def bench_devices(doc: dict[str, Any]) -> str:
    rows = [
        [
            code(d.get("name")),
            e(d.get("model")),
            e(d.get("datasheet") or "not in envcheck's table"),
            code(d.get("uuid")),
            code(d.get("pci_bus_id")),
        ]
        for d in items(doc.get("devices"))
    ]
    return section("Devices", table(["device", "model", "datasheet", "UUID", "PCI bus"], rows)) if rows else ""


def bench_preflight(doc: dict[str, Any]) -> str:
    checks = items(doc.get("preflight"))
    if not checks:
        return ""
    problems = [c for c in checks if c.get("status") in ("warn", "fail", "crash")]
    return section("Preflight", checks_table(checks), problem_items(problems))


def bench_flags(r: dict[str, Any]) -> list[str]:
    flags = []
    if r.get("status") == "fail":
        flags.append("WRONG RESULT")
    if r.get("contended"):
        flags.append("contended")
    if r.get("noisy"):
        flags.append("noisy")
    slow = dct(r.get("slow_vs_siblings"))
    if slow:
        flags.append(f"SLOW {pct(slow.get('shortfall'))} below its siblings")
    return flags


def bench_chart(doc: dict[str, Any]) -> str:
    """One bar chart per unit (GFLOP/s, GB/s, images/s): every figure, with its datasheet peak as a track
    and tick where envcheck knows the card's peak (on a CPU, or a card not in the table, the bars alone)."""
    results = [r for r in items(doc.get("results")) if finite(r.get("value")) is not None]
    if not results:
        return ""
    several = len({str(r.get("device")) for r in results}) > 1
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_unit.setdefault(str(r.get("unit") or ""), []).append(r)
    charts = []
    any_peak = any(finite(r.get("peak")) is not None for r in results)
    for unit, rs in by_unit.items():
        bars = []
        for r in rs:
            label = f"{r.get('id')} {r.get('label') or r.get('case') or ''}".strip()
            if several:
                label += f" · {r.get('device')}"
            peak = finite(r.get("peak"))
            note = f"{num(r.get('value'))} {unit}".strip()
            if finite(r.get("peak_fraction")) is not None:
                note += f" · {pct(r.get('peak_fraction'))} of the datasheet peak"
                note += f" {num(peak)} {unit}" if peak is not None else ""
            flags = bench_flags(r)
            if flags:
                note += " · " + ", ".join(flags)
            status = "fail" if r.get("status") == "fail" or r.get("slow_vs_siblings") else "ok"
            bars.append(Bar(label, finite(r.get("value")) or 0.0, note, peak, status))
        title = f"Throughput in {unit}" + (" against the datasheet peak" if any_peak else "")
        with_peak = sum(b.reference is not None for b in bars)
        summary = f"{len(bars)} figures" + (
            f", {with_peak} with a datasheet peak" if with_peak else ", no datasheet peak known"
        )
        charts.append(f"<h3>{e(unit or 'figures')}</h3>")
        charts.append(bar_chart("throughput", title, bars, summary=summary, reference_name="datasheet peak"))
    lead = (
        '<p class="muted">Each bar is a measured figure; where envcheck knows the card\'s datasheet peak, the grey '
        "track and the tick mark the peak and the words give the share of it.</p>"
        if any_peak
        else '<p class="muted">No datasheet peak is known for these devices (a CPU, or a card not in envcheck\'s '
        "table): the bars compare the figures with each other.</p>"
    )
    return section("Throughput", lead, *charts)


def bench_results(doc: dict[str, Any]) -> str:
    rows = []
    for r in items(doc.get("results")):
        spread = finite(dct(r.get("stats")).get("relative_iqr"))
        value = f"{num(r.get('value'))} {e(r.get('unit') or '')}" if finite(r.get("value")) is not None else "-"
        rows.append(
            [
                code(r.get("id")),
                e(r.get("label") or r.get("case")),
                code(r.get("device")),
                value,
                num(r.get("peak")),
                pct(r.get("peak_fraction")),
                "-" if spread is None else f"±{spread / 2:.0%}",
                badge(r.get("status")),
                e(", ".join(bench_flags(r)) or r.get("reason") or ""),
            ]
        )
    if not rows:
        return ""
    return section(
        "Results",
        table(
            ["benchmark", "case", "device", "figure", "peak", "of peak", "spread", "status", "notes"],
            rows,
            (3, 4, 5, 6),
        ),
    )


def bench_problems(doc: dict[str, Any]) -> str:
    problems = [r for r in items(doc.get("results")) if r.get("status") in ("fail", "crash")]
    lines = [
        f"<li>{badge(r.get('status'))} {code(r.get('id'))} on {code(r.get('device'))}: {e(r.get('reason'))}</li>"
        for r in problems
    ]
    return section("Problems", f"<ul>{''.join(lines)}</ul>" if lines else "")


def bench_comparison(doc: dict[str, Any]) -> str:
    comparison = dct(doc.get("comparison"))
    if not comparison:
        return ""
    parts = [f"<p>Compared with {code(comparison.get('baseline'))}, threshold {pct(comparison.get('threshold'))}.</p>"]
    if comparison.get("note"):
        parts.append(f'<p><span class="badge s-fail">✗ not compared</span> {e(comparison["note"])}</p>')
    rows = [
        [
            code(d.get("device")),
            code(d.get("id")),
            e(d.get("case")),
            f"{num(d.get('before'))} {e(d.get('unit'))}",
            f"{num(d.get('after'))} {e(d.get('unit'))}",
            f"{finite(d.get('change')) or 0:+.0%}" if finite(d.get("change")) is not None else "-",
            badge("fail") + " regression" if d.get("regressed") else badge("ok"),
        ]
        for d in items(comparison.get("deltas"))
    ]
    if rows:
        parts.append(table(["device", "benchmark", "case", "baseline", "now", "change", ""], rows, (3, 4, 5)))
    return section("Comparison with the baseline", *parts)


def spec_list(verdicts: list[dict[str, Any]], name: str = "id") -> str:
    lines = []
    for v in verdicts:
        passed = v.get("passed")
        mark = (
            badge("ok") + " spec"
            if passed is True
            else badge("fail") + " BELOW SPEC"
            if passed is False
            else badge("skip")
        )
        where = f" {code(v.get('device'))}" if v.get("device") else ""
        lines.append(f"<li>{mark} {code(v.get(name) or v.get('op'))}{where}: {e(v.get('summary'))}</li>")
    return f"<ul>{''.join(lines)}</ul>" if lines else ""


def bench_spec(doc: dict[str, Any]) -> str:
    return section("Lab spec", spec_list(items(dct(doc.get("spec")).get("verdicts"))))


def bench_workers(doc: dict[str, Any]) -> str:
    rows = [
        [
            code(w.get("device")),
            e(w.get("pid")),
            seconds_text(w.get("wall_s")),
            seconds_text(w.get("import_s")),
            e(w.get("returncode")),
            e(w.get("error") or ""),
        ]
        for w in items(doc.get("workers"))
    ]
    return (
        section("Workers", table(["device", "pid", "wall", "torch import", "exit", "error"], rows, (2, 3, 4)))
        if rows
        else ""
    )


# -- comm ------------------------------------------------------------------------------------------------


def comm_header(doc: dict[str, Any]) -> tuple[str, str]:
    world = dct(doc.get("world"))
    verdict = "problems found" if doc.get("exit_code") else "verified"
    if not doc.get("completed", True):
        verdict += " (the run did not finish)"
    extra = f"{e(world.get('size'))} ranks, {e(world.get('backend'))}, launched by {e(world.get('launcher'))}"
    return header("comm", verdict, "fail" if doc.get("exit_code") else "ok", doc, extra)


def comm_world(doc: dict[str, Any]) -> str:
    from envcheck.comm.render import where

    world = dct(doc.get("world"))
    ranks = items(world.get("ranks"))
    hosts = sorted({str(r.get("host") or "?") for r in ranks})
    lead = f"<p>{len(ranks)} ranks on {len(hosts)} host(s): {e(', '.join(hosts))}</p>" if ranks else ""
    rows = [
        [
            e(r.get("rank")),
            code(r.get("host")),
            code(r.get("device")),
            e(r.get("gpu_name") or ""),
            code(r.get("gpu_uuid")),
            badge("ok") if r.get("joined") is not False else badge("fail") + " never joined",
        ]
        for r in ranks
    ]
    problems = [f"<li>{badge('fail')} {e(where(p))}: {e(p.get('what'))}</li>" for p in items(doc.get("problems"))]
    parts = [lead, table(["rank", "host", "device", "GPU", "UUID", "joined"], rows) if rows else ""]
    if problems:
        parts.append(f"<h3>Problems</h3><ul>{''.join(problems)}</ul>")
    return section("World", *parts)


def comm_chart(doc: dict[str, Any]) -> str:
    """busbw against message size, one line per op, on a log-2 size axis (sizes double)."""
    from envcheck.core.units import human

    by_op: dict[str, list[tuple[float, float | None]]] = {}
    for r in items(doc.get("results")):
        size = finite(r.get("size_bytes"))
        if size is None or size <= 0:
            continue
        by_op.setdefault(str(r.get("op")), []).append((size, finite(r.get("busbw_gb_s"))))
    series = [Series(op, sorted(points)) for op, points in by_op.items() if any(y is not None for _, y in points)]
    if not series:
        return ""
    peaks = ", ".join(f"{p.get('op')} {num(p.get('busbw_gb_s'))} GB/s" for p in items(doc.get("peaks")))
    chart = line_chart(
        "busbw",
        "Bus bandwidth (GB/s) against message size, per collective",
        series,
        x_label="message size (log 2)",
        y_label="busbw GB/s",
        log2_x=True,
        x_text=lambda x: human(int(x)),
        summary=f"peak busbw: {peaks}" if peaks else "",
    )
    lead = (
        "<p class=\"muted\">busbw is the algorithm bandwidth scaled by each collective's factor (NCCL-tests' "
        "convention), so that every op is compared with the link's speed.</p>"
    )
    tail = f"<p>Peak busbw: {e(peaks)}</p>" if peaks else ""
    return section("Bus bandwidth", lead, chart, tail)


def comm_results(doc: dict[str, Any]) -> str:
    from envcheck.comm.render import gb, seconds

    rows = []
    for r in items(doc.get("results")):
        wrong = ", ".join(str(w.get("rank")) for w in items(r.get("wrong")))
        verified = (
            "yes"
            if r.get("verified") is True
            else f'<span class="badge s-fail">✗ WRONG</span> {("on rank " + e(wrong)) if wrong else ""}'
        )
        rows.append(
            [
                code(r.get("op")),
                size_text(r.get("size_bytes")),
                e(seconds(finite(r.get("time_s")))),
                e(gb(finite(r.get("algbw_gb_s")))),
                e(gb(finite(r.get("busbw_gb_s")))),
                verified,
            ]
        )
    if not rows:
        return ""
    return section("Results", table(["op", "size", "time", "algbw GB/s", "busbw GB/s", "verified"], rows, (1, 2, 3, 4)))


def comm_reference(doc: dict[str, Any]) -> str:
    from envcheck.comm.render import reference_lines

    lines = reference_lines(doc.get("reference"))
    if not lines:
        return ""
    return section(
        "Against the fabric's reference",
        f"<p>{e(lines[0])}</p>",
        "<ul>" + "".join(f"<li>{e(x.strip())}</li>" for x in lines[1:]) + "</ul>",
    )


def comm_p2p(doc: dict[str, Any]) -> str:
    """Every rank pair's send/recv bandwidth as a heatmap (and the numbers as a table); slow links flagged."""
    from envcheck.comm.render import gb

    p2p = dct(doc.get("p2p"))
    ranks = lst(p2p.get("ranks"))
    matrix = [[finite(v) for v in lst(row)] for row in lst(p2p.get("matrix"))]
    if not ranks or len(matrix) != len(ranks) or any(len(row) != len(ranks) for row in matrix):
        return ""
    if all(v is None for row in matrix for v in row):
        return ""
    index = {r: i for i, r in enumerate(ranks)}
    slow_pairs = items(p2p.get("slow_pairs"))
    flagged = {
        (index[s.get("src")], index[s.get("dst")])
        for s in slow_pairs
        if s.get("src") in index and s.get("dst") in index
    }
    labels = [str(r) for r in ranks]
    size = size_text(p2p.get("size_bytes"))
    chart = heatmap(
        "p2p",
        f"Send/recv bandwidth between ranks (GB/s, {size} messages)",
        labels,
        matrix,
        cell_text=gb,
        flagged=flagged,
        row_name="sender",
        column_name="receiver",
        summary=f"{len(labels)} ranks, {len(flagged)} slow link(s)",
    )
    rows = []
    for i, src in enumerate(labels):
        rows.append(
            [
                f"<b>{e(src)}</b>",
                *(
                    ("odd", e(gb(v)) + " !") if (i, j) in flagged else e(gb(v)) if v is not None else "-"
                    for j, v in enumerate(matrix[i])
                ),
            ]
        )
    grid = table(["sender ↓ receiver →", *(e(x) for x in labels)], rows, range(1, len(labels) + 1))
    slow = [
        f"<li>{badge('warn')} slow link rank {e(s.get('src'))} → rank {e(s.get('dst'))}: "
        f"{e(gb(finite(s.get('gb_s'))))} GB/s, {pct(s.get('shortfall'))} below the median of the other pairs on "
        f"its host ({e(gb(finite(s.get('median_gb_s'))))} GB/s)</li>"
        for s in slow_pairs
    ]
    return section(
        "Point to point",
        '<p class="muted">Row: the sender; column: the receiver. Darker is faster; a cell marked "!" is a slow '
        "link.</p>",
        chart,
        grid,
        f"<ul>{''.join(slow)}</ul>" if slow else "",
    )


def comm_spec(doc: dict[str, Any]) -> str:
    return section("Lab spec", spec_list(items(doc.get("spec")), "op"))


def comm_summary(doc: dict[str, Any]) -> str:
    c = dct(doc.get("summary"))
    parts = [f"{e(c.get('verified', 0))} of {e(c.get('results', 0))} results verified"]
    for key, word in (("problems", "problem(s)"), ("slow_pairs", "slow link(s)"), ("below_spec", "below spec")):
        if c.get(key):
            parts.append(f"{e(c[key])} {word}")
    return f"<p><b>{', '.join(parts)}</b></p>"


# -- burn ------------------------------------------------------------------------------------------------


def burn_header(doc: dict[str, Any]) -> tuple[str, str]:
    summary = dct(doc.get("summary"))
    status = "warn" if doc.get("interrupted") else doc.get("status")
    return header("burn", str(summary.get("text") or summary.get("verdict") or "no verdict"), status, doc)


def burn_problems(doc: dict[str, Any]) -> str:
    from envcheck.burn.render import PROBLEM

    problems = [v for v in items(doc.get("verdicts")) if v.get("status") in PROBLEM]
    lead = ""
    if doc.get("interrupted"):
        lead = (
            f'<p><span class="badge s-warn">! interrupted</span> by {e(doc.get("stopped_by") or "a signal")}: '
            "the report covers what ran.</p>"
        )
    return section("Problems", lead, problem_items(problems))


def burn_devices(doc: dict[str, Any]) -> str:
    from envcheck.burn.render import COLUMNS, rows

    devices = items(doc.get("devices"))
    if not devices:
        return ""
    # rows() formats what it finds: give it only numbers where it expects them.
    steady = [{k: v for k, v in dct(d.get("steady")).items() if finite(v) is not None} for d in devices]
    safe = {**doc, "devices": [{**d, "steady": s} for d, s in zip(devices, steady, strict=True)]}
    body = []
    for row in rows(safe):
        *rest, status = row
        body.append([e(x) for x in rest] + [badge(status)])
    return section(
        "Steady state",
        f'<p class="muted">Medians over the run\'s last minute; throughput in {e(doc.get("unit") or "TFLOP/s")}.</p>',
        table(COLUMNS, body, (3, 4, 5, 6, 7)),
    )


def burn_charts(doc: dict[str, Any]) -> str:
    """One chart per telemetry field the timeline holds (a CPU burn has throughput and host load only),
    one line per device, time on the x axis."""
    from envcheck.burn.render import TELEMETRY, clock

    timeline = items(doc.get("timeline"))
    times = [t for t in (finite(row.get("t_s")) for row in timeline) if t is not None]
    if not times:
        return ""
    charts = []
    unit = str(doc.get("unit") or "TFLOP/s")
    for field, title, field_unit in TELEMETRY:
        by_device: dict[str, list[tuple[float, float | None]]] = {}
        for row in timeline:
            t = finite(row.get("t_s"))
            if t is None:
                continue
            by_device.setdefault(str(row.get("device")), []).append((t, finite(row.get(field))))
        series = [
            Series(d, sorted(p, key=lambda q: q[0])) for d, p in by_device.items() if any(y is not None for _, y in p)
        ]
        if not series:
            continue
        if field.startswith("cpu_"):
            series = series[:1]  # the host's reading, the same on every device's rows
            series = [Series("host", series[0].points)]
        shown_unit = field_unit or unit
        charts.append(f"<h3>{e(title)} ({e(shown_unit)})</h3>")
        charts.append(
            line_chart(
                "telemetry",
                f"{title} ({shown_unit}) over the run",
                series,
                x_label="time since the start (m:ss)",
                y_label=shown_unit,
                x_text=clock,
                x_range=(min(times), max(times)),
                summary=f"{len(series)} device(s)",
            )
        )
    if not charts:
        return ""
    return section("Telemetry over time", *charts)


def burn_passed(doc: dict[str, Any]) -> str:
    passed = [v for v in items(doc.get("verdicts")) if v.get("status") in ("ok", "skip")]
    if not passed:
        return ""
    return section("Other verdicts", checks_table(passed))


def burn_spec(doc: dict[str, Any]) -> str:
    return section("Lab spec", spec_list(items(dct(doc.get("spec")).get("verdicts")), "requirement"))


# -- fleet -----------------------------------------------------------------------------------------------


def fleet_header(doc: dict[str, Any]) -> tuple[str, str]:
    summary = dct(doc.get("summary"))
    threshold = finite(doc.get("threshold"))
    extra = f"slow: more than {threshold:.0%} below the fleet median of the same model" if threshold is not None else ""
    return header("fleet", str(summary.get("text") or "no verdict"), doc.get("status"), doc, extra)


def fleet_counts(doc: dict[str, Any]) -> str:
    c = dct(doc.get("summary"))
    words = (
        ("nodes", "nodes"),
        ("failing", "failing"),
        ("warnings", "with warnings"),
        ("ok", "ok"),
        ("reports_read", "reports read"),
        ("skipped", "skipped"),
        ("drift_fields", "fields drifting"),
        ("slow_gpus", "slow GPUs"),
        ("slow_cpus", "slow CPU figures"),
        ("duplicate_hosts", "duplicate hosts"),
        ("duplicate_gpus", "duplicate GPUs"),
    )
    rows = [[e(word), e(c.get(key))] for key, word in words if isinstance(c.get(key), int)]
    return section("Counts", table(["", "count"], rows, (1,))) if rows else ""


def fleet_nodes(doc: dict[str, Any]) -> str:
    nodes = items(doc.get("nodes"))
    if not nodes:
        return ""
    rows, problems = [], []
    for node in nodes:
        reports = ", ".join(f"{r.get('kind')} {r.get('status')}" for r in items(node.get("reports")))
        failing, warnings, slow = items(node.get("failing")), items(node.get("warnings")), items(node.get("slow"))
        rows.append(
            [
                code(node.get("hostname")),
                badge(node.get("status")),
                e(reports),
                e(len(failing)),
                e(len(warnings)),
                e(len(slow)),
            ]
        )
        for item in [*failing, *warnings]:
            problems.append({**item, "id": f"{item.get('report')} {item.get('id')}", "where": node.get("hostname")})
    parts = [table(["node", "status", "reports", "failing", "warnings", "slow devices"], rows, (3, 4, 5))]
    if problems:
        parts += ["<h3>Failing checks and warnings, with their fixes</h3>", problem_items(problems)]
    return section("Nodes", *parts)


def fleet_drift(doc: dict[str, Any]) -> str:
    from envcheck.fleet.render import hosts_shown, names, value_text

    rows = []
    for d in items(doc.get("drift")):
        values = [v for v in items(d.get("values")) if isinstance(v.get("count"), int)]
        if not values:
            continue
        shown = hosts_shown(values)
        for i, v in enumerate(values):
            hosts = e(names([str(h) for h in lst(v.get("hosts"))])) if shown[i] else "(the majority)"
            rows.append(
                [
                    f"<b>{e(d.get('title'))}</b>" if i == 0 else "",
                    code(value_text(v.get("value"))),
                    e(v.get("count")),
                    hosts,
                ]
            )
    return (
        section(
            "Drift",
            '<p class="muted">Fields that should be the same on every node.</p>',
            table(["field", "value", "nodes", "hosts"], rows, (2,)),
        )
        if rows
        else ""
    )


def slow_where(f: dict[str, Any]) -> str:
    return f"{f.get('hostname')}" + (
        f" GPU {f.get('index')}" if f.get("index") is not None else f" {f.get('device') or ''}".rstrip()
    )


def fleet_slow_gpus(doc: dict[str, Any]) -> str:
    """Each slow GPU's figure against its model's fleet median (the track and tick), then the table with
    every way to find the card (host and index, UUID, PCI bus id)."""
    slow = items(doc.get("slow_gpus"))
    if not slow:
        threshold = finite(doc.get("threshold"))
        limit = f" (more than {threshold:.0%} below the fleet median of their model)" if threshold is not None else ""
        return section("Slow GPUs", f"<p>No slow GPU{e(limit)}.</p>")
    bars = []
    for f in slow:
        value, median = finite(f.get("value")), finite(f.get("fleet_median"))
        if value is None:
            continue
        if median is None or median <= 0:
            continue
        unit = f.get("unit") or ""
        note = f"{num(value)} {unit}, {pct(f.get('shortfall'))} below the median {num(median)} {unit}"
        # Each bar is its figure as a share of its own median: figures in GFLOP/s, GB/s and images/s
        # share one chart, and every median is the same tick.
        bars.append(Bar(f"{slow_where(f)} · {f.get('id')} ({f.get('model')})", value / median, note, 1.0, "fail"))
    chart = (
        bar_chart(
            "slow-gpus",
            "Slow GPUs: each one's figure as a share of the fleet median of its model",
            bars,
            summary=f"{len(bars)} slow GPU figure(s)",
            reference_name="fleet median of the same model",
        )
        if bars
        else ""
    )
    return section("Slow GPUs", chart, slow_table(slow))


def slow_table(slow: list[dict[str, Any]]) -> str:
    rows = [
        [
            code(f.get("hostname")),
            e(f.get("index") if f.get("index") is not None else f.get("device")),
            code(f.get("uuid")),
            code(f.get("pci_bus_id")),
            code(f.get("id")) + (" (--quick)" if f.get("quick") else ""),
            e(f.get("model")),
            f"{num(f.get('value'))} {e(f.get('unit'))}",
            num(f.get("fleet_median")),
            pct(f.get("shortfall")),
        ]
        for f in slow
    ]
    return table(
        ["host", "index", "UUID", "PCI bus id", "benchmark", "model", "value", "fleet median", "below"], rows, (6, 7, 8)
    )


def fleet_slow_cpus(doc: dict[str, Any]) -> str:
    slow = items(doc.get("slow_cpus"))
    return section("Slow CPUs", slow_table(slow)) if slow else ""


def fleet_duplicates(doc: dict[str, Any]) -> str:
    from envcheck.fleet.render import names

    duplicates = dct(doc.get("duplicates"))
    lines = [
        f"<li>{badge('warn')} GPU {code(g.get('uuid'))} on {len(lst(g.get('hosts')))} hosts "
        f"({e(names([str(h) for h in lst(g.get('hosts'))]))}): a report copied from another node, or a card moved "
        "between them</li>"
        for g in items(duplicates.get("gpus"))
    ]
    lines += [
        f"<li>{badge('warn')} host {code(h.get('hostname'))}: {len(lst(h.get('sources')))} {e(h.get('kind'))} reports "
        f"({e(names([str(s) for s in lst(h.get('sources'))]))}): two machines with one name, or a copied report</li>"
        for h in items(duplicates.get("hosts"))
    ]
    return section("Duplicates", f"<ul>{''.join(lines)}</ul>") if lines else ""


def fleet_skipped(doc: dict[str, Any]) -> str:
    rows = [[code(s.get("source")), e(s.get("reason"))] for s in items(doc.get("skipped"))]
    return section("Skipped", table(["source", "reason"], rows)) if rows else ""


HEADERS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "doctor": doctor_header,
    "bench": bench_header,
    "comm": comm_header,
    "burn": burn_header,
    "fleet": fleet_header,
}
DOCTOR_SECTIONS = (doctor_gpus, doctor_areas, doctor_fixes, doctor_fabric, doctor_versions)
BENCH_SECTIONS = (
    bench_devices,
    bench_preflight,
    bench_chart,
    bench_results,
    bench_problems,
    bench_comparison,
    bench_spec,
    bench_workers,
)
COMM_SECTIONS = (comm_world, comm_chart, comm_results, comm_reference, comm_p2p, comm_spec, comm_summary)
BURN_SECTIONS = (burn_problems, burn_devices, burn_charts, burn_passed, burn_spec)
FLEET_SECTIONS = (
    fleet_counts,
    fleet_nodes,
    fleet_drift,
    fleet_slow_gpus,
    fleet_slow_cpus,
    fleet_duplicates,
    fleet_skipped,
)
