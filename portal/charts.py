"""Server-rendered SVG charts: bars and lines with axes, labels, a legend and totals.

Pure functions from numbers to markup. No script, no inline style (the CSP forbids both), no
external font or resource: colours are SVG presentation attributes, text takes the page's font.
Every chart is an image with a role, a <title> and a <desc> that says what it shows in words;
pages show the same numbers in a table next to it, for screen readers and for copying.
Every piece of text is escaped. The words the charts add themselves ("in all", "from ... to ...")
go through gettext; the numbers are formatted by the caller's `fmt` (pass the locale's formats, like
portal.i18n.usd). Charts for phones take a narrower `width`: the SVG scales to its box, so a
narrow viewBox keeps the text large enough to read at 390 px.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from flask_babel import gettext as _
from markupsafe import Markup, escape

# Colour-blind-safe (Okabe-Ito) colours, in series order.
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")
WIDTH, HEIGHT = 640, 260
NARROW = 360  # a chart meant for phones first: about 1:1 on a 390-px screen
LEFT, RIGHT, TOP, BOTTOM = 72, 12, 12, 52  # room for the y labels, the x labels and the legend
MAX_X_LABELS = 10
FONT = 11
LABEL_ROOM = 52  # x-axis label spacing, at least: a short date or a round amount
CHAR = 0.6  # average glyph width, in ems, of the page's sans-serif font (for truncating names)


@dataclass(frozen=True)
class Series:
    """One named row of values, one per label."""

    name: str
    values: Sequence[int]


def _number(value: float) -> str:
    """A coordinate, short: SVG needs no more than a tenth of a pixel."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def nice_step(top: int, ticks: int = 4) -> int:
    """A round step (1, 2 or 5 times a power of ten, at least 1) that covers `top` in about `ticks` steps."""
    if top <= 0:
        return 1
    raw = top / ticks
    power = 1
    while power * 10 <= raw:
        power *= 10
    for factor in (1, 2, 5, 10):
        if power * factor >= raw:
            return power * factor
    return power * 10  # pragma: no cover (the loop always returns)


def _scale(series: Sequence[Series]) -> tuple[int, int]:
    """(axis top, tick step) for the largest value."""
    top = max((max(s.values, default=0) for s in series), default=0)
    step = nice_step(top)
    return max(step, -(-top // step) * step), step


def _frame(chart_id: str, title: str, description: str, body: list[str], legend: list[str], *,
           width: int = WIDTH, height: int = HEIGHT) -> Markup:
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    css_class = "plot narrow" if width <= NARROW else "plot"  # app.css keeps a phone's chart from growing tall
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" id="{escape(chart_id)}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{escape(title_id)} {escape(desc_id)}" '
        f'font-size="{FONT}">'
        f'<title id="{escape(title_id)}">{escape(title)}</title>'
        f'<desc id="{escape(desc_id)}">{escape(description)}</desc>'
        + "".join(body) + "".join(legend) + "</svg>")


def _axes(labels: Sequence[str], top: int, step: int, fmt: Callable[[int], str], width: int = WIDTH) -> list[str]:
    """Grid lines with the y values, the x axis and a thinned-out row of x labels."""
    plot_w, plot_h = width - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = []
    for value in range(0, top + 1, step):
        y = TOP + plot_h - plot_h * value / top
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{_number(y)}" y2="{_number(y)}" '
                     f'stroke="#ccc" stroke-width="1"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{_number(y + 4)}" text-anchor="end" fill="currentColor">'
                     f'{escape(fmt(value))}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="currentColor"/>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{width - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
                 f'stroke="currentColor"/>')
    n = len(labels)
    room = min(MAX_X_LABELS, max(2, int(plot_w // LABEL_ROOM)))  # fewer labels on a narrow chart
    every = max(1, -(-n // room))
    slot = plot_w / max(n, 1)
    for index, label in enumerate(labels):
        if index % every and index != n - 1:
            continue
        if index == n - 1 and index % every and n - 1 - (index // every) * every < every / 2:
            continue  # too close to the last regular label
        x = LEFT + slot * (index + 0.5)
        parts.append(f'<text class="label" x="{_number(x)}" y="{TOP + plot_h + 15}" text-anchor="middle" '
                     f'fill="currentColor">{escape(label)}</text>')
    return parts


def _legend(series: Sequence[Series], fmt: Callable[[int], str]) -> list[str]:
    parts, x = [], LEFT
    y = HEIGHT - 12
    for index, s in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        text = _("%(name)s: %(total)s in all", name=s.name, total=fmt(sum(s.values)))
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
                     f'<text class="legend" x="{x + 14}" y="{y}" fill="currentColor">{escape(text)}</text>')
        x += 24 + int(len(text) * FONT * 0.58)
    return parts


def _describe(title: str, labels: Sequence[str], series: Sequence[Series], fmt: Callable[[int], str]) -> str:
    if not labels:
        return _("%(title)s: nothing to show.", title=title)
    if len(labels) > 1:
        span = _("from %(first)s to %(last)s", first=labels[0], last=labels[-1])
    else:
        span = _("for %(label)s", label=labels[0])
    totals = _("; ").join(_("%(name)s %(total)s in all, at most %(peak)s", name=s.name, total=fmt(sum(s.values)),
                            peak=fmt(max(s.values, default=0))) for s in series)
    return _("%(title)s, %(span)s: %(totals)s.", title=title, span=span, totals=totals)


def bar_chart(chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series], *,
              fmt: Callable[[int], str] = str, width: int = WIDTH) -> Markup:
    """Bars per label, one per series side by side, on a y axis from zero."""
    _check(labels, series)
    top, step = _scale(series)
    plot_w, plot_h = width - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    bar = slot * 0.8 / max(len(series), 1)
    body = _axes(labels, top, step, fmt, width)
    for s_index, s in enumerate(series):
        colour = COLOURS[s_index % len(COLOURS)]
        for index, value in enumerate(s.values):
            if value <= 0:
                continue
            h = plot_h * value / top
            x = LEFT + slot * index + slot * 0.1 + bar * s_index
            body.append(f'<rect class="bar" x="{_number(x)}" y="{_number(TOP + plot_h - h)}" '
                        f'width="{_number(max(bar, 0.5))}" height="{_number(h)}" fill="{colour}">'
                        f'<title>{escape(labels[index])}, {escape(s.name)}: {escape(fmt(value))}</title></rect>')
    return _frame(chart_id, title, _describe(title, labels, series, fmt), body, _legend(series, fmt), width=width)


def line_chart(chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series], *,
               fmt: Callable[[int], str] = str, width: int = WIDTH) -> Markup:
    """A line per series through its values, on a y axis from zero; dots when there are few points."""
    _check(labels, series)
    top, step = _scale(series)
    plot_w, plot_h = width - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    body = _axes(labels, top, step, fmt, width)
    for s_index, s in enumerate(series):
        colour = COLOURS[s_index % len(COLOURS)]
        points = [(LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * max(v, 0) / top) for i, v in enumerate(s.values)]
        if len(points) > 1:
            body.append(f'<polyline class="line" fill="none" stroke="{colour}" stroke-width="2" points="'
                        + " ".join(f"{_number(x)},{_number(y)}" for x, y in points) + '"/>')
        if len(points) <= 31:
            for (x, y), label, value in zip(points, labels, s.values):
                body.append(f'<circle cx="{_number(x)}" cy="{_number(y)}" r="3" fill="{colour}">'
                            f'<title>{escape(label)}, {escape(s.name)}: {escape(fmt(value))}</title></circle>')
    return _frame(chart_id, title, _describe(title, labels, series, fmt), body, _legend(series, fmt), width=width)


def _shorten(name: str, room: float) -> str:
    """`name` cut to fit `room` pixels of text, with an ellipsis when cut (the full name goes in a <title>)."""
    fits = max(4, int(room // (FONT * CHAR)))
    return name if len(name) <= fits else name[:fits - 1].rstrip() + "\u2026"


def hbar_chart(chart_id: str, title: str, items: Sequence[tuple[str, int]], *, fmt: Callable[[int], str] = str,
               notes: Sequence[str] | None = None, width: int = NARROW) -> Markup:
    """A horizontal bar per named item (a model, a key), largest first as given, with its value, an x axis
    from zero with round ticks, and the total underneath.

    Each name sits on its own line above its bar with the value at the right, so long names get the
    whole width; a name still too long is cut with an ellipsis and given in full in the row's <title>
    (with `notes[i]`, when given: "12 calls").
    """
    if any(not isinstance(v, int) or isinstance(v, bool) for _name, v in items):
        raise TypeError("hbar_chart: values must be integers (micro-dollars, counts, ms)")
    pad, row, top_y = 4, 36, 4
    plot_w = width - 2 * pad
    top, step = _scale([Series("", [v for _name, v in items])])
    axis_y = top_y + row * len(items) + 2
    height = axis_y + 44
    body = []
    for value in range(0, top + 1, step):
        x = pad + plot_w * value / top
        anchor = "start" if value == 0 else "end" if value + step > top else "middle"
        body.append(f'<line class="grid" x1="{_number(x)}" x2="{_number(x)}" y1="{top_y}" y2="{axis_y}" '
                    f'stroke="#ccc" stroke-width="1"/>')
        body.append(f'<text class="tick" x="{_number(x)}" y="{axis_y + 14}" text-anchor="{anchor}" '
                    f'fill="currentColor">{escape(fmt(value))}</text>')
    body.append(f'<line class="axis" x1="{pad}" x2="{pad}" y1="{top_y}" y2="{axis_y}" stroke="currentColor"/>')
    body.append(f'<line class="axis" x1="{pad}" x2="{width - pad}" y1="{axis_y}" y2="{axis_y}" stroke="currentColor"/>')
    for index, (name, value) in enumerate(items):
        y = top_y + row * index
        shown = fmt(value)
        label = _shorten(name, plot_w - (len(shown) + 2) * FONT * CHAR - 6)
        full = f"{name}: {shown}" + (f" ({notes[index]})" if notes and notes[index] else "")
        bar = plot_w * max(value, 0) / top
        body.append(
            f'<g class="row"><title>{escape(full)}</title>'
            f'<text class="label" x="{pad + 4}" y="{y + 13}" fill="currentColor">{escape(label)}</text>'
            f'<text class="value" x="{width - pad}" y="{y + 13}" text-anchor="end" fill="currentColor">'
            f'{escape(shown)}</text>'
            f'<rect class="bar" x="{pad}" y="{y + 17}" width="{_number(max(bar, 0.5) if value else 0)}" height="13" '
            f'fill="{COLOURS[0]}"/></g>')
    total = fmt(sum(v for _name, v in items))
    body.append(f'<text class="total" x="{pad}" y="{height - 8}" fill="currentColor" font-weight="bold">'
                f'{escape(_("Total: %(total)s", total=total))}</text>')
    if items:
        parts = _("; ").join(f"{name} {fmt(value)}" for name, value in items)
        description = _("%(title)s: %(parts)s; %(total)s in all.", title=title, parts=parts, total=total)
    else:
        description = _("%(title)s: nothing to show.", title=title)
    return _frame(chart_id, title, description, body, [], width=width, height=height)


def _check(labels: Sequence[str], series: Sequence[Series]) -> None:
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(labels)} labels")
        if any(not isinstance(v, int) or isinstance(v, bool) for v in s.values):
            raise TypeError(f"series {s.name!r}: values must be integers (micro-dollars, counts, ms)")
