"""Small vector charts as SVG strings, inlined in report HTML.

WeasyPrint draws inline SVG as PDF paths and text, so charts stay sharp and
searchable and add no raster image. One user unit is one millimetre. Every piece
of text is XML-escaped here, which is what makes it safe for the template to
mark the result as trusted markup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from xinfang.reports.fonts import HEI, KAI, font_stack
from xinfang.reports.formatting import fmt_number

LABEL_FONT = font_stack(KAI)
TITLE_FONT = font_stack(HEI)
AXIS_COLOUR = "#333333"
GRID_COLOUR = "#d0d0d0"
BAR_COLOUR = "#9e1b1b"
SERIES_COLOURS = ("#9e1b1b", "#1f4e79", "#6b6b6b", "#b7791f", "#2f6b3a")
PT = 25.4 / 72  # millimetres per point


def _x(text: object) -> str:
    return escape(str(text), quote=True)


def _n(value: float) -> str:
    # Compact coordinates keep the SVG (and the PDF content stream) small.
    return f"{value:.2f}".rstrip("0").rstrip(".")


def text_width_mm(text: str, size_pt: float) -> float:
    """Rough advance width: CJK and fullwidth characters are 1 em, the rest about 0.55 em."""
    em = size_pt * PT
    return sum(em if ord(ch) >= 0x2E80 else 0.55 * em for ch in text)


def nice_ticks(max_value: float, target: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least ``max_value`` (steps of 1, 2, 2.5 or 5 × 10^k)."""
    if max_value <= 0 or not math.isfinite(max_value):
        return [0.0, 1.0]
    raw = max_value / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = math.ceil(max_value / step - 1e-9)
    return [i * step for i in range(count + 1)]


def _svg_open(width_mm: float, height_mm: float, title: str) -> list[str]:
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{_n(width_mm)}mm" '
        f'height="{_n(height_mm)}mm" viewBox="0 0 {_n(width_mm)} {_n(height_mm)}" role="img">'
    )
    return [svg, f"<title>{_x(title)}</title>"]


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size_pt: float,
    anchor: str = "start",
    font: str = LABEL_FONT,
    fill: str = AXIS_COLOUR,
) -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" font-family="{_x(font)}" font-size="{_n(size_pt * PT)}" '
        f'text-anchor="{anchor}" fill="{fill}">{_x(text)}</text>'
    )


def _axes(left: float, top: float, right: float, bottom: float) -> list[str]:
    """The x axis along the bottom and the y axis along the left of a plot area."""
    return [
        f'<line x1="{_n(left)}" y1="{_n(bottom)}" x2="{_n(right)}" y2="{_n(bottom)}" '
        f'stroke="{AXIS_COLOUR}" stroke-width="0.3"/>',
        f'<line x1="{_n(left)}" y1="{_n(top)}" x2="{_n(left)}" y2="{_n(bottom)}" stroke="{AXIS_COLOUR}" '
        f'stroke-width="0.3"/>',
    ]


def bar_chart_svg(
    categories: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    unit: str,
    width_mm: float = 150,
    height_mm: float | None = None,
    label_pt: float = 10.5,
) -> str:
    """Horizontal bars, one per category, each with its value at the bar's end.

    Horizontal bars keep long Chinese district names readable without rotating
    them. Without ``height_mm`` the chart grows with the number of bars.
    """
    if len(categories) != len(values):
        raise ValueError("categories and values differ in length")
    n = len(categories)
    label_h = label_pt * PT
    title_h = 2.0 * label_h
    axis_h = 1.7 * label_h
    row_h = 1.5 * label_h
    if height_mm is None:
        height_mm = title_h + max(n, 1) * row_h + axis_h + 1
    left = min(max((text_width_mm(c, label_pt) for c in categories), default=0) + 2.5, width_mm * 0.35)
    value_room = text_width_mm(fmt_number(max(values, default=0)), label_pt) + 2
    right = width_mm - value_room
    top, bottom = title_h, height_mm - axis_h
    plot_w = max(right - left, 1)
    ticks = nice_ticks(max(values, default=0))
    scale = plot_w / ticks[-1]
    row = (bottom - top) / max(n, 1)
    bar_h = row * 0.62

    out = _svg_open(width_mm, height_mm, title)
    out.append(
        _text(
            width_mm / 2,
            label_h * 1.2,
            f"{title}（单位：{unit}）",
            size_pt=label_pt,
            anchor="middle",
            font=TITLE_FONT,
        )
    )
    for tick in ticks:
        x = left + tick * scale
        out.append(
            f'<line x1="{_n(x)}" y1="{_n(top)}" x2="{_n(x)}" y2="{_n(bottom)}" stroke="{GRID_COLOUR}" '
            f'stroke-width="0.2"/>'
        )
        out.append(
            _text(x, bottom + label_h * 1.3, fmt_number(tick), size_pt=label_pt * 0.85, anchor="middle")
        )
    for i, (category, value) in enumerate(zip(categories, values, strict=True)):
        y = top + i * row + (row - bar_h) / 2
        w = max(value, 0) * scale
        out.append(
            f'<rect x="{_n(left)}" y="{_n(y)}" width="{_n(w)}" height="{_n(bar_h)}" fill="{BAR_COLOUR}"/>'
        )
        baseline = y + bar_h / 2 + label_h * 0.35
        out.append(_text(left - 1.5, baseline, category, size_pt=label_pt, anchor="end"))
        out.append(_text(left + w + 1, baseline, fmt_number(value), size_pt=label_pt))
    out.append(
        f'<line x1="{_n(left)}" y1="{_n(top)}" x2="{_n(left)}" y2="{_n(bottom)}" stroke="{AXIS_COLOUR}" '
        f'stroke-width="0.3"/>'
    )
    out.append(
        f'<line x1="{_n(left)}" y1="{_n(bottom)}" x2="{_n(right)}" y2="{_n(bottom)}" '
        f'stroke="{AXIS_COLOUR}" stroke-width="0.3"/>'
    )
    out.append("</svg>")
    return "\n".join(out)


def line_chart_svg(
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    unit: str,
    width_mm: float = 150,
    height_mm: float = 60,
    label_pt: float = 10.5,
) -> str:
    """A trend: one polyline per series, broken where a value is None, with a legend."""
    for name, points in series.items():
        if len(points) != len(x_labels):
            raise ValueError(f"series {name!r} has {len(points)} points for {len(x_labels)} labels")
    label_h = label_pt * PT
    present = [v for points in series.values() for v in points if v is not None]
    ticks = nice_ticks(max(present, default=0))
    left = text_width_mm(fmt_number(ticks[-1]), label_pt * 0.85) + 3
    right = width_mm - 3
    top = 2.4 * label_h + (1.6 * label_h if len(series) > 1 else 0)
    bottom = height_mm - 1.9 * label_h
    scale = (bottom - top) / ticks[-1]
    step = (right - left) / max(len(x_labels) - 1, 1)

    def px(i: int) -> float:
        return left + i * step if len(x_labels) > 1 else (left + right) / 2

    out = _svg_open(width_mm, height_mm, title)
    out.append(
        _text(
            width_mm / 2,
            label_h * 1.2,
            f"{title}（单位：{unit}）",
            size_pt=label_pt,
            anchor="middle",
            font=TITLE_FONT,
        )
    )
    for tick in ticks:
        y = bottom - tick * scale
        out.append(
            f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(right)}" y2="{_n(y)}" stroke="{GRID_COLOUR}" '
            f'stroke-width="0.2"/>'
        )
        out.append(
            _text(left - 1.2, y + label_h * 0.3, fmt_number(tick), size_pt=label_pt * 0.85, anchor="end")
        )
    for i, label in enumerate(x_labels):
        out.append(_text(px(i), bottom + label_h * 1.3, label, size_pt=label_pt * 0.85, anchor="middle"))
    legend_x = left
    for k, (name, points) in enumerate(series.items()):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(points):
            if value is None:
                runs.append([])
                continue
            xy = (px(i), bottom - value * scale)
            runs[-1].append(xy)
            out.append(f'<circle cx="{_n(xy[0])}" cy="{_n(xy[1])}" r="0.7" fill="{colour}"/>')
        for run in runs:
            if len(run) > 1:
                d = " ".join(f"{'M' if j == 0 else 'L'}{_n(x)} {_n(y)}" for j, (x, y) in enumerate(run))
                out.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="0.45"/>')
        if len(series) > 1:
            y = 2.4 * label_h + label_h * 0.6
            out.append(
                f'<line x1="{_n(legend_x)}" y1="{_n(y)}" x2="{_n(legend_x + 6)}" y2="{_n(y)}" '
                f'stroke="{colour}" stroke-width="0.6"/>'
            )
            out.append(_text(legend_x + 7.5, y + label_h * 0.35, name, size_pt=label_pt * 0.85))
            legend_x += 7.5 + text_width_mm(name, label_pt * 0.85) + 5
    out.extend(_axes(left, top, right, bottom))
    out.append("</svg>")
    return "\n".join(out)


BAND_95 = "#f2d7d5"
BAND_80 = "#e0a9a4"


def band_chart_svg(
    x_labels: Sequence[str],
    actual: Sequence[float | None],
    bands: Sequence[Mapping[str, float] | None],
    *,
    title: str,
    unit: str,
    width_mm: float = 150,
    height_mm: float = 62,
    label_pt: float = 10.5,
    label_every: int = 3,
) -> str:
    """A trend with forecast bands: the 95 % and 80 % intervals as shaded areas,
    the forecast mean dashed, the actual counts as a solid line.

    ``bands[i]`` holds ``lo95, lo80, mean, hi80, hi95`` for month ``i`` or None
    (no forecast that month). Both the one-step backtest forecasts of past
    months and the forecasts of coming months are drawn the same way, so the
    reader sees how often past months fell inside their band.
    """
    if not (len(x_labels) == len(actual) == len(bands)):
        raise ValueError("x_labels, actual and bands differ in length")
    label_h = label_pt * PT
    values = [v for v in actual if v is not None] + [b["hi95"] for b in bands if b]
    ticks = nice_ticks(max(values, default=0))
    left = text_width_mm(fmt_number(ticks[-1]), label_pt * 0.85) + 3
    # Room for half of the last month's label, which is centred on the last point.
    right = width_mm - max(3.0, text_width_mm(x_labels[-1] if x_labels else "", label_pt * 0.8) / 2 + 1)
    top = 4.0 * label_h
    bottom = height_mm - 1.9 * label_h
    scale = (bottom - top) / ticks[-1]
    step = (right - left) / max(len(x_labels) - 1, 1)

    def px(i: int) -> float:
        return left + i * step

    def py(v: float) -> float:
        return bottom - v * scale

    out = _svg_open(width_mm, height_mm, title)
    out.append(
        _text(width_mm / 2, label_h * 1.2, f"{title}（单位：{unit}）", size_pt=label_pt, anchor="middle",
              font=TITLE_FONT)
    )  # fmt: skip
    for tick in ticks:
        out.append(
            f'<line x1="{_n(left)}" y1="{_n(py(tick))}" x2="{_n(right)}" y2="{_n(py(tick))}" '
            f'stroke="{GRID_COLOUR}" stroke-width="0.2"/>'
        )
        out.append(
            _text(
                left - 1.2, py(tick) + label_h * 0.3, fmt_number(tick), size_pt=label_pt * 0.85, anchor="end"
            )
        )
    # Contiguous runs of months with a band, each drawn as two closed areas.
    runs: list[list[int]] = [[]]
    for i, band in enumerate(bands):
        if band is None:
            runs.append([])
        else:
            runs[-1].append(i)
    for run in (r for r in runs if r):
        for lo, hi, colour in (("lo95", "hi95", BAND_95), ("lo80", "hi80", BAND_80)):
            if len(run) == 1:
                i = run[0]
                out.append(
                    f'<rect x="{_n(px(i) - step * 0.25)}" y="{_n(py(bands[i][hi]))}" '
                    f'width="{_n(step * 0.5)}" '
                    f'height="{_n(max(py(bands[i][lo]) - py(bands[i][hi]), 0.1))}" fill="{colour}"/>'
                )
                continue
            upper = [f"{_n(px(i))} {_n(py(bands[i][hi]))}" for i in run]
            lower = [f"{_n(px(i))} {_n(py(bands[i][lo]))}" for i in reversed(run)]
            out.append(f'<path d="M{" L".join(upper + lower)} Z" fill="{colour}" stroke="none"/>')
        if len(run) > 1:
            d = " L".join(f"{_n(px(i))} {_n(py(bands[i]['mean']))}" for i in run)
            out.append(f'<path d="M{d}" fill="none" stroke="{SERIES_COLOURS[1]}" stroke-width="0.35" '
                       f'stroke-dasharray="1.2 0.8"/>')  # fmt: skip
    points = [(px(i), py(v)) for i, v in enumerate(actual) if v is not None]
    if len(points) > 1:
        d = " L".join(f"{_n(x)} {_n(y)}" for x, y in points)
        out.append(f'<path d="M{d}" fill="none" stroke="{SERIES_COLOURS[0]}" stroke-width="0.5"/>')
    for x, y in points:
        out.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="0.6" fill="{SERIES_COLOURS[0]}"/>')
    for i, label in enumerate(x_labels):
        if i % label_every == 0 or i == len(x_labels) - 1:
            out.append(_text(px(i), bottom + label_h * 1.3, label, size_pt=label_pt * 0.8, anchor="middle"))
    # Legend.
    y = 2.5 * label_h
    x = left
    for name, kind, colour in (("实际", "line", SERIES_COLOURS[0]), ("预测", "dash", SERIES_COLOURS[1]),
                               ("80%区间", "box", BAND_80), ("95%区间", "box", BAND_95)):  # fmt: skip
        if kind == "box":
            out.append(f'<rect x="{_n(x)}" y="{_n(y - 1.2)}" width="5" height="2.4" fill="{colour}"/>')
        else:
            dash = ' stroke-dasharray="1.2 0.8"' if kind == "dash" else ""
            out.append(
                f'<line x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x + 5)}" y2="{_n(y)}" stroke="{colour}" '
                f'stroke-width="0.5"{dash}/>'
            )
        out.append(_text(x + 6.5, y + label_h * 0.35, name, size_pt=label_pt * 0.85))
        x += 6.5 + text_width_mm(name, label_pt * 0.85) + 5
    out.extend(_axes(left, top, right, bottom))
    out.append("</svg>")
    return "\n".join(out)
