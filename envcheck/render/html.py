"""``--format html``: one self-contained page per report, with charts where a person would rather look
than read.

Why it is shaped this way:

* **Nothing is fetched.** The page is mailed, attached to a ticket, opened from a cluster's shared disk
  or on a machine with no internet. Styles are inline, charts are inline SVG (envcheck.render.svg), there
  is no script, font or image, and a Content-Security-Policy (``default-src 'none'``) makes sure the
  browser fetches nothing even if a report's text tried to make it.
* **The answer comes first.** The header holds the verdict; the first sections are what to act on (the
  failing checks with their fixes, the slow devices), so that the first screen, on a desktop or a phone,
  answers "is it ready, and what do I fix". Inventories, raw tables and versions follow, each collapsed in a
  ``<details>`` (:func:`section` with ``collapsed=True``): open with a click, no script.
* **A phone can read it.** The viewport is the device's; on a wide screen a table scrolls sideways inside
  its own box, and on a narrow one (under 640 px) each row becomes a card, every cell a line labelled with
  its column (``data-label`` and CSS, no script), so that no column is off-screen and no cell is squeezed
  to a word per line. Charts scale with their ``viewBox``. Light and dark follow the reader's setting.
* **Colour never says anything alone.** Each status is a mark and a word (``✗ fail``) as well as a
  colour; each chart has a title and an ``aria-label``, and its numbers are in a table next to it.
* **Everything from a machine is escaped.** Host names, GPU names, errors and fixes go through
  ``html.escape``; a report cannot inject markup into the page.
* **A strange document still gives a page.** Every field is read defensively (a hand-edited or truncated
  report is missing things); a section that still fails to draw says so in place (:data:`BROKEN`) and the
  rest of the page is drawn.

This module is the page: its shell, style, CSP, escaping and the pieces every section is built of (tables,
badges, the header, a problem list with its fixes). Each kind's sections live with the kind
(``envcheck.<kind>.render``), mirror its text and Markdown reports, and add charts (envcheck.render.svg)
where a person would rather look: per-device throughput against the datasheet peak (bench), busbw against
message size and the P2P matrix (comm), telemetry over time (burn), the fleet's slow GPUs against their
fleet median (fleet). Each chart is an ``<svg class="chart" data-chart=KIND>`` (KIND: throughput, busbw,
p2p, telemetry, slow-gpus), drawn only where its data exists; ``<html data-report=KIND>`` names the report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from html import escape
from typing import TYPE_CHECKING, Any

from envcheck.render import output_format
from envcheck.render.common import CODE_SPAN
from envcheck.render.safe import inert
from envcheck.render.svg import finite

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console

FORMAT = output_format("html", "one self-contained page with charts", suffixes=(".html", ".htm"))

#: A section of a page: the HTML it draws from the document ("" for nothing to show).
Section = Callable[[dict[str, Any]], str]
#: The page's header: (its HTML, the page's title).
Header = Callable[[dict[str, Any]], tuple[str, str]]

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
svg.chart .bin{fill:var(--accent)}
svg.chart .bin-slow{fill:var(--fail)}
svg.chart .slow-mark{stroke:var(--fail);stroke-width:2}
svg.chart .median{stroke:var(--fg);stroke-width:2}
svg.chart .threshold{stroke:var(--fail);stroke-width:1.5;stroke-dasharray:4 3}
details{margin:1.2em 0 0}
details>summary{cursor:pointer;padding:.2em 0;border-bottom:1px solid var(--line)}
details>summary>h2{display:inline;border:0;margin:0;padding:0}
details[open]>summary{margin-bottom:.5em}
.problems{padding-left:1.2em}
.problems li{margin:.2em 0 .6em}
@media (max-width:640px){
header,main,footer{padding:0 10px}
.table{overflow-x:visible}
.table table,.table tbody,.table tr,.table td{display:block;width:100%}
.table thead{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}
.table tr{border:1px solid var(--line);border-radius:6px;margin:0 0 .5em;padding:3px 0}
.table td,.table td.n{display:flex;gap:.7em;border:0;padding:2px 10px;text-align:left;white-space:normal;
overflow-wrap:anywhere}
.table td::before{content:attr(data-label);flex:0 0 36%;color:var(--muted);font-weight:600}
.table td[data-label=""]::before{content:none}
.table td:first-child{font-weight:600}
td code{white-space:normal}
}
""" + "".join(
    f"svg.chart .series-{i}{{stroke:var(--s{i})}}svg.chart .dot.series-{i}{{fill:var(--s{i})}}" for i in range(8)
)


def write_page(console: Console, doc: dict[str, Any], kind: str, header: Header, sections: Sequence[Section]) -> None:
    """A kind's ``--format html`` renderer writes its page with this."""
    console.file.write(page(doc, kind, header, sections))


def page(doc: dict[str, Any], kind: str, header: Header, sections: Sequence[Section]) -> str:
    """The whole page for one report document: ``kind``'s header and sections, each drawn on its own."""
    doc = doc if isinstance(doc, dict) else {}
    schema = doc.get("schema") if isinstance(doc.get("schema"), str) else None
    top = guarded(header, doc)
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
    """Text for the page, escaped (quotes too: it may land in an attribute); nothing for None. Control
    characters are shown as escapes first, as the text and Markdown reports show them
    (envcheck.render.safe): a bidirectional override in a node's name reorders what the browser shows
    ("Trojan Source"), and an ESC or a NUL is text no reader can see. Newlines stay: a block of lines is
    one where the page keeps them."""
    return "" if value is None else escape(inert(value, lines=True), quote=True)


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


def prose(value: Any) -> str:
    """Words for the page with their code spans ("`sudo ldconfig`") as <code>: each part escaped on its own,
    so what a span holds is text, never markup."""
    parts = CODE_SPAN.split("" if value is None else str(value))
    return "".join(code(part) if i % 2 else e(part) for i, part in enumerate(parts))


def fix_line(text: Any, lead: str = "") -> str:
    """A problem's fix in words, every kind's page alike (``lead``: HTML before it, such as its nodes)."""
    return f'<p class="fix">{lead}fix: {prose(text)}</p>'


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], numeric: Iterable[int] = ()) -> str:
    """A table in its own sideways-scrolling box (a card per row on a phone); cells are HTML already
    (escape text with :func:`e`). Each cell carries its column's name as ``data-label``: what a card shows
    beside the value once the header row is out of sight."""
    right = set(numeric)
    headers = list(headers)
    head = "".join(f"<th{' class=n' if i in right else ''}>{h}</th>" for i, h in enumerate(headers))
    labels = [label_of(h) for h in headers]
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = c[0] if isinstance(c, tuple) else ("n" if i in right else "")
            text = c[1] if isinstance(c, tuple) else c
            label = f' data-label="{labels[i]}"' if i < len(labels) else ""
            cells.append(f'<td class="{cls}"{label}>{text}</td>' if cls else f"<td{label}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def label_of(header: str) -> str:
    """A column header (HTML already) as an attribute's value: its text, markup left out."""
    return re.sub(r"<[^>]*>", "", header).replace('"', "&quot;")


def section(title: str, *parts: str, anchor: str = "", collapsed: bool = False) -> str:
    """A titled section; ``collapsed``: folded in a ``<details>`` (its title the one line shown), for what a
    person opens only to dig: inventories, raw tables, versions."""
    content = "\n".join(p for p in parts if p)
    if not content:
        return ""
    ident = f' id="{e(anchor)}"' if anchor else ""
    if collapsed:
        return f"<section{ident}>\n<details>\n<summary><h2>{e(title)}</h2></summary>\n{content}\n</details>\n</section>"
    return f"<section{ident}>\n<h2>{e(title)}</h2>\n{content}\n</section>"


def folded(title: str, *parts: str) -> str:
    """Part of a section folded under a one-line title (``<details>``): the numbers behind a chart."""
    content = "\n".join(p for p in parts if p)
    return f"<details>\n<summary>{e(title)}</summary>\n{content}\n</details>" if content else ""


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


#: The order problems are listed in: what stops the work first.
SEVERITY = {"crash": 0, "fail": 1, "warn": 2}


def problem_items(results: list[dict[str, Any]]) -> str:
    """Each problem with its fix, where it has one, in words and as a command to run; the most severe
    first (a stable sort: within a status, the report's order), so that the first fix on the page is the
    one to do first."""
    out = []
    for r in sorted(results, key=lambda r: SEVERITY.get(str(r.get("status")), len(SEVERITY))):
        fix = dct(r.get("fix"))
        where = f" on {code(r.get('where'))}" if r.get("where") else ""
        text = fix_line(fix["text"]) if fix.get("text") else ""
        command = f"<pre><code>{e(fix['command'])}</code></pre>" if fix.get("command") else ""
        out.append(
            f"<li>{badge(r.get('status'))} {code(r.get('id'))}{where}: {e(r.get('summary'))}{text}{command}</li>"
        )
    return f'<ul class="problems">{"".join(out)}</ul>' if out else ""


def checks_table(results: list[dict[str, Any]]) -> str:
    rows = [[badge(r.get("status")), e(r.get("title")), e(r.get("summary")), code(r.get("id"))] for r in results]
    return table(["status", "check", "result", "id"], rows)


def spec_list(verdicts: list[dict[str, Any]], name: str = "id") -> str:
    """A lab spec's verdicts, each passed, below spec or not judged (``name``: the field naming what was
    required: a benchmark id, a requirement, an op)."""
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
