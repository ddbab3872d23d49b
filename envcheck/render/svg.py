"""Inline SVG charts for the HTML report, written by hand: a bar chart, a line chart (linear or log-2 x
axis), a heatmap, and a distribution (a fleet's devices on one figure).

Why by hand: a report must open from a file on a laptop, a phone or an air-gapped cluster's login node
with nothing fetched (no CDN, no script), and envcheck's base install stays light, so a plotting library
is out. The three shapes the reports need are a few hundred lines of SVG.

How the charts stay readable:

* Each chart is an ``<svg class="chart" data-chart=KIND role="img" aria-label=...>`` with a ``<title>``:
  a screen reader announces it, and a test (or a person's script) finds it by its kind. The numbers are
  always in a table next to it too, so nothing is said by the chart alone.
* Sizes come from a ``viewBox`` and CSS ``width: 100%``: a chart shrinks to a 375-pixel phone and grows
  on a desktop without being drawn twice. Charts are narrow (420 units) so that their text stays legible
  when scaled down; labels sit above the bars rather than beside them, and a label too long for the
  width is squeezed into it rather than cut off.
* Colours come from CSS classes (``series-N``, ``bar-fail``), so one stylesheet serves light and dark
  mode; series also differ by dash pattern, and a status is said in words next to its colour.
* Every string is escaped (``html.escape``): host names, GPU names and errors come from machines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from html import escape

#: The width of every chart, in viewBox units: narrow enough that 12-unit text is still about 10 pixels on
#: a 375-pixel phone, wide enough for a 40-character label.
WIDTH = 420
FONT = 12
#: Series beyond this many reuse colours (their dash patterns and the legend still tell them apart).
SERIES_STYLES = 8
DASHES = ("", "6 3", "2 2", "8 3 2 3", "", "6 3", "2 2", "8 3 2 3")


def _f(x: float) -> str:
    """A coordinate, short: SVG files of big timelines stay small."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _open(kind: str, title: str, height: float, summary: str = "") -> list[str]:
    label = f"{title}. {summary}" if summary else title
    return [
        f'<svg class="chart" data-chart="{escape(kind)}" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {_f(height)}" preserveAspectRatio="xMinYMin meet" font-size="{FONT}">',
        f"<title>{escape(title)}</title>",
    ]


#: About how wide a character of 12-unit text is, on average, in the sans-serif fonts browsers pick: used
#: to see that a label might not fit, never to lay text out exactly.
CHAR_WIDTH = 0.6
#: Room beyond a label's estimated half-width at a chart's right edge, for fonts wider than the average.
LABEL_ROOM = 8.0


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start", *, size: float = FONT) -> str:
    """A text element. One that may be wider than the chart (a long GPU or host name) is squeezed into
    it (``textLength``) rather than cut off at the edge."""
    attrs = f' class="{cls}"' if cls else ""
    if anchor != "start":
        attrs += f' text-anchor="{anchor}"'
    if size != FONT:
        attrs += f' font-size="{_f(size)}"'
    room = {"start": WIDTH - x, "end": x, "middle": 2 * min(x, WIDTH - x)}[anchor]
    if len(text) * size * CHAR_WIDTH > room > 0:
        attrs += f' textLength="{_f(room - 2)}" lengthAdjust="spacingAndGlyphs"'
    return f'<text x="{_f(x)}" y="{_f(y)}"{attrs}>{escape(text)}</text>'


def finite(value: object) -> float | None:
    """A number to plot, or None: JSON null, a bool, a string or a non-finite float is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``top`` (1, 2 or 5 times a power of ten apart)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def short(value: float, digits: int = 3) -> str:
    """An axis label: 0.05, 2.5, 40, 1.2k, 3.4M (``digits`` significant)."""
    if value == 0:
        return "0"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.{digits}g}{suffix}"
    return f"{value:.{digits}g}"


def bin_span(low: float, high: float) -> str:
    """``low–high`` with the digits that tell them apart: a narrow bin of a fleet whose figures sit close
    together read "19.1k–19.1k"."""
    digits = 3
    while short(low, digits) == short(high, digits) and digits < 8:
        digits += 1
    return f"{short(low, digits)}–{short(high, digits)}"


# -- bars ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One bar: ``label`` above it, ``value`` its length, ``reference`` (a datasheet peak, a fleet median)
    drawn as a track and a tick, ``note`` the words after it, ``status`` its colour class."""

    label: str
    value: float
    note: str = ""
    reference: float | None = None
    status: str = "ok"


def bar_chart(kind: str, title: str, bars: Sequence[Bar], *, summary: str = "", reference_name: str = "") -> str:
    """Horizontal bars on one scale, one row each: the label, the note under it, then the bar across the
    chart's whole width (a phone has no room for text beside a bar)."""
    row_h, top = 52.0, 4.0
    legend = 20.0 if reference_name and any(b.reference is not None for b in bars) else 0.0
    height = top + legend + row_h * len(bars) + 4
    track_w = WIDTH - 2
    scale_max = max([b.value for b in bars] + [b.reference or 0.0 for b in bars] + [1e-30])
    out = _open(kind, title, height, summary)
    y = top
    if legend:
        out.append(f'<rect class="track" x="0" y="{_f(y + 3)}" width="14" height="9"/>')
        out.append(f'<line class="reference" x1="14" y1="{_f(y + 1)}" x2="14" y2="{_f(y + 14)}"/>')
        out.append(_text(20, y + 12, reference_name, "muted"))
        y += legend
    for b in bars:
        out.append(_text(0, y + FONT, b.label))
        out.append(_text(0, y + FONT + 14, b.note, "muted", size=FONT - 1))
        bar_y = y + FONT + 24  # below the note's descenders
        if b.reference is not None:
            ref_x = track_w * b.reference / scale_max
            out.append(f'<rect class="track" x="0" y="{_f(bar_y)}" width="{_f(ref_x)}" height="10"/>')
        width = max(track_w * b.value / scale_max, 1.0 if b.value > 0 else 0.0)
        out.append(
            f'<rect class="bar bar-{escape(b.status)}" x="0" y="{_f(bar_y)}" width="{_f(width)}" height="10">'
            f"<title>{escape(f'{b.label}: {b.note}')}</title></rect>"
        )
        if b.reference is not None:
            ref_x = track_w * b.reference / scale_max
            out.append(
                f'<line class="reference" x1="{_f(ref_x)}" y1="{_f(bar_y - 3)}" '
                f'x2="{_f(ref_x)}" y2="{_f(bar_y + 13)}"/>'
            )
        y += row_h
    out.append("</svg>")
    return "\n".join(out)


# -- lines -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line: its name (in the legend) and its points; a None y breaks the line there."""

    name: str
    points: Sequence[tuple[float, float | None]]


def line_chart(
    kind: str,
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    log2_x: bool = False,
    x_text: Callable[[float], str] = short,
    x_range: tuple[float, float] | None = None,
    summary: str = "",
) -> str:
    """Lines over a shared x axis (log 2 where sizes double), y from 0, a legend below. ``x_range``: the x
    axis's ends, when several charts must line up (a burn's metrics over the same run)."""
    left, top, plot_h = 46.0, 30.0, 180.0
    xs = [x for s in series for x, y in s.points if y is not None and (x > 0 or not log2_x)]
    ys = [y for s in series for _, y in s.points if y is not None]
    if not xs:
        xs, ys = [1.0], [0.0]
    if x_range is not None:
        xs = [*xs, *x_range]
    x_ticks = _x_tick_values(xs, log2_x)
    # The last x label is centred on its tick, which may be the axis's end: the right margin holds half of
    # it and some room for a font wider than CHAR_WIDTH's average ("8.0 GiB" cut at the chart's edge).
    right = max(26.0, len(x_text(x_ticks[-1])) * FONT * CHAR_WIDTH / 2 + LABEL_ROOM)
    plot_w = WIDTH - left - right

    def tx(x: float) -> float:
        return math.log2(x) if log2_x else x

    lo, hi = tx(min(xs)), tx(max(xs))
    span = hi - lo or 1.0
    ticks = nice_ticks(max(ys) if ys else 1.0)
    y_top = ticks[-1] or 1.0

    def px(x: float) -> float:
        return left + plot_w * (tx(x) - lo) / span

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_top)

    legend_rows = math.ceil(len(series) / 2)
    height = top + plot_h + 38 + 18 * legend_rows
    out = _open(kind, title, height, summary)
    out.append(_text(0, 12, y_label, "muted"))
    for t in ticks:
        out.append(f'<line class="grid" x1="{_f(left)}" y1="{_f(py(t))}" x2="{_f(WIDTH - right)}" y2="{_f(py(t))}"/>')
        out.append(_text(left - 4, py(t) + 4, short(t), "muted", "end"))
    axis = top + plot_h
    for v in x_ticks:
        out.append(f'<line class="axis" x1="{_f(px(v))}" y1="{_f(axis)}" x2="{_f(px(v))}" y2="{_f(axis + 4)}"/>')
        out.append(_text(px(v), axis + 17, x_text(v), "muted", "middle"))
    out.append(_text(left + plot_w / 2, top + plot_h + 32, x_label, "muted", "middle"))
    for i, s in enumerate(series):
        style = i % SERIES_STYLES
        dash = f' stroke-dasharray="{DASHES[style]}"' if DASHES[style] else ""
        path, pen_down = [], False
        for x, y in s.points:
            if y is None or (log2_x and x <= 0):
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{_f(px(x))} {_f(py(y))}")
            pen_down = True
        out.append(
            f'<path class="line series-{style}"{dash} d="{" ".join(path)}"><title>{escape(s.name)}</title></path>'
        )
        if len([p for p in s.points if p[1] is not None]) <= 32:
            for x, y in s.points:
                if y is not None and not (log2_x and x <= 0):
                    out.append(f'<circle class="dot series-{style}" cx="{_f(px(x))}" cy="{_f(py(y))}" r="2.5"/>')
        lx = 0 if i % 2 == 0 else WIDTH / 2
        ly = top + plot_h + 50 + 18 * (i // 2)
        out.append(
            f'<line class="line series-{style}"{dash} x1="{_f(lx)}" y1="{_f(ly - 4)}" '
            f'x2="{_f(lx + 22)}" y2="{_f(ly - 4)}"/>'
        )
        out.append(_text(lx + 28, ly, s.name))
    out.append("</svg>")
    return "\n".join(out)


def _x_tick_values(xs: list[float], log2_x: bool) -> list[float]:
    """At most six labelled ticks: each power of two present (log axis), else round values."""
    lo, hi = min(xs), max(xs)
    if log2_x:
        first, last = math.ceil(math.log2(lo)), math.floor(math.log2(hi))
        values = [2.0**e for e in range(first, last + 1)] or [lo]
        step = math.ceil(len(values) / 6)
        return values[::step]
    ticks = [t + lo for t in nice_ticks(hi - lo, 5)] if hi > lo else [lo]
    return [t for t in ticks if t <= hi + 1e-9]


# -- heatmap ---------------------------------------------------------------------------------------------


def heatmap(
    kind: str,
    title: str,
    labels: Sequence[str],
    matrix: Sequence[Sequence[float | None]],
    *,
    cell_text: Callable[[float], str],
    flagged: Collection[tuple[int, int]] = (),
    row_name: str = "row",
    column_name: str = "column",
    summary: str = "",
) -> str:
    """An n × n grid: darker is more; a missing value (the diagonal) is grey with a dash; a flagged cell (a
    slow link) has a thick outline and a "!" so that it is found without telling colours apart."""
    n = len(labels)
    left, top = 64.0, 44.0
    cell = min(44.0, (WIDTH - left - 4) / max(n, 1))
    values = [v for row in matrix for v in row if v is not None]
    top_value = max(values) if values else 1.0
    height = top + cell * n + 8
    out = _open(kind, title, height, summary)
    out.append(_text(left, 12, f"{column_name} →", "muted"))
    out.append(_text(0, top - 6, f"{row_name} ↓", "muted"))
    show_numbers = cell >= 30
    # With many ranks, every k-th rank is named (each name needs about 16 units of room).
    every = math.ceil(16 / cell)
    for j, name in enumerate(labels):
        if j % every == 0:
            out.append(_text(left + cell * (j + 0.5), top - 6, name, "muted", "middle"))
    for i, row in enumerate(matrix):
        y = top + cell * i
        if i % every == 0:
            out.append(_text(left - 6, y + max(cell, 16) / 2 + 4, labels[i], "muted", "end"))
        for j, v in enumerate(row):
            x = left + cell * j
            tip = f"{labels[i]} → {labels[j]}: " + ("-" if v is None else cell_text(v))
            if v is None:
                out.append(
                    f'<rect class="cell-none" x="{_f(x)}" y="{_f(y)}" width="{_f(cell)}" height="{_f(cell)}">'
                    f"<title>{escape(tip)}</title></rect>"
                )
                continue
            share = max(0.08, v / top_value) if top_value > 0 else 0.08
            flag = (i, j) in flagged
            cls = "cell cell-flagged" if flag else "cell"
            out.append(
                f'<rect class="{cls}" x="{_f(x)}" y="{_f(y)}" width="{_f(cell)}" height="{_f(cell)}" '
                f'fill-opacity="{share:.2f}"><title>{escape(tip + (" (slow)" if flag else ""))}</title></rect>'
            )
            cls = "cell-text-dark" if share > 0.55 else "cell-text"
            if show_numbers:
                out.append(
                    f'<text x="{_f(x + cell / 2)}" y="{_f(y + cell / 2 + 4)}" class="{cls}" '
                    f'text-anchor="middle" font-size="10">{escape(cell_text(v))}</text>'
                )
            if flag:
                out.append(
                    f'<text x="{_f(x + 3)}" y="{_f(y + 11)}" class="{cls}" font-size="11" font-weight="bold">!</text>'
                )
    out.append("</svg>")
    return "\n".join(out)


# -- distribution ----------------------------------------------------------------------------------------

#: Columns of a distribution's histogram: fine enough to show a cluster of slow cards apart from the
#: rest, coarse enough that each column is a few units wide on a phone.
BINS = 48
#: At most this many slow devices get their own mark under the axis; past that, their columns (drawn in
#: the fail colour) say where they are, and the page stays the same size whatever the fleet's.
SLOW_MARKS = 200


def _round_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values inside [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _axis_labels(values: Sequence[float], ticks: list[float], px: Callable[[float], float]) -> list[tuple[float, str]]:
    """The labels under a distribution's axis, each with where it stands: its lowest and highest device
    always (where the slow ones and the fastest are: round ticks alone may fall short of both; one
    "low–high" label where the two are too close for a label each), and the round ticks that leave room."""

    def span(at: float, text: str) -> tuple[float, float]:
        half = len(text) * FONT * CHAR_WIDTH / 2 + 2
        x = min(max(px(at), half), WIDTH - half)  # as drawn: a label at an edge is anchored inside
        return x - half - 3, x + half + 3

    def clear(at: float, text: str, shown: list[tuple[float, str]]) -> bool:
        lo, hi = span(at, text)
        return all(hi <= span(*o)[0] or lo >= span(*o)[1] for o in shown)

    shown: list[tuple[float, str]] = []
    if values:
        low, high = values[0], values[-1]
        shown = [(low, short(low))]
        if short(high) != short(low):
            if clear(high, short(high), shown):
                shown.append((high, short(high)))
            else:
                shown = [((low + high) / 2, f"{short(low)}–{short(high)}")]
    for t in ticks:
        if clear(t, short(t), shown):
            shown.append((t, short(t)))
    return sorted(shown)


def distribution_chart(
    kind: str,
    title: str,
    values: Sequence[float],
    *,
    median: float,
    slow_below: float | None = None,
    unit: str = "",
    summary: str = "",
) -> str:
    """Where a fleet's devices sit on one figure: a histogram of every device's value (a column per range,
    its height the count), the fleet median as a solid line, the slow threshold as a dashed one, the
    columns below it in the fail colour and each slow device (up to :data:`SLOW_MARKS`) as a mark under the
    axis. Its size does not grow with the fleet: 10 000 devices draw :data:`BINS` columns."""
    values = sorted(v for v in values if finite(v) is not None)
    slow = [v for v in values if slow_below is not None and v < slow_below]
    ends = [*values[:1], *values[-1:], median, *([slow_below] if slow_below is not None else [])]
    lo, hi = min(ends), max(ends)
    pad = (hi - lo) * 0.03 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    legend, top, plot_h = 20.0, 26.0, 72.0
    axis = top + plot_h
    height = axis + (38 if slow else 24)
    width = WIDTH - 2

    def px(x: float) -> float:
        return 1 + width * (x - lo) / (hi - lo)

    counts = [0] * BINS
    for v in values:
        counts[min(int((v - lo) / (hi - lo) * BINS), BINS - 1)] += 1
    tallest = max(counts) or 1
    out = _open(kind, title, height, summary)
    out.append(f'<line class="median" x1="0" y1="{_f(legend - 6)}" x2="16" y2="{_f(legend - 6)}"/>')
    out.append(_text(20, legend - 2, f"fleet median {short(median)} {unit}".strip(), "muted"))
    if slow_below is not None:
        out.append(f'<line class="threshold" x1="220" y1="{_f(legend - 6)}" x2="236" y2="{_f(legend - 6)}"/>')
        out.append(_text(240, legend - 2, f"slow below {short(slow_below)}", "muted"))
    column = width / BINS
    for i, n in enumerate(counts):
        if not n:
            continue
        start = lo + (hi - lo) * i / BINS
        end = start + (hi - lo) / BINS
        is_slow = slow_below is not None and (start + end) / 2 < slow_below
        h = max(plot_h * n / tallest, 5.0)  # one device is still seen beside ten thousand
        out.append(
            f'<rect class="{"bin bin-slow" if is_slow else "bin"}" x="{_f(px(start) + 0.5)}" y="{_f(axis - h)}" '
            f'width="{_f(max(column - 1, 1))}" height="{_f(h)}">'
            f"<title>{n} device{'s' if n != 1 else ''} at {bin_span(start, end)} {escape(unit)}</title></rect>"
        )
    out.append(f'<line class="axis" x1="0" y1="{_f(axis)}" x2="{_f(WIDTH)}" y2="{_f(axis)}"/>')
    out.append(f'<line class="median" x1="{_f(px(median))}" y1="{_f(top)}" x2="{_f(px(median))}" y2="{_f(axis)}"/>')
    if slow_below is not None:
        x = px(slow_below)
        out.append(f'<line class="threshold" x1="{_f(x)}" y1="{_f(top)}" x2="{_f(x)}" y2="{_f(axis)}"/>')
    for t, label in _axis_labels(values, _round_ticks(lo, hi), px):
        x = px(t)
        out.append(f'<line class="axis" x1="{_f(x)}" y1="{_f(axis)}" x2="{_f(x)}" y2="{_f(axis + 4)}"/>')
        half = len(label) * FONT * CHAR_WIDTH / 2 + 2
        anchor = "start" if x < half else "end" if x > WIDTH - half else "middle"
        out.append(_text(x, axis + 17, label, "muted", anchor))
    if slow:
        marks = sorted({round(px(v)) for v in slow})[:SLOW_MARKS]
        y = axis + 26
        out.append(
            '<g class="slow-marks">'
            + "".join(f'<line class="slow-mark" x1="{x}" y1="{_f(y)}" x2="{x}" y2="{_f(y + 9)}"/>' for x in marks)
            + f"<title>{len(slow)} slow device{'s' if len(slow) != 1 else ''}</title></g>"
        )
    out.append("</svg>")
    return "\n".join(out)
