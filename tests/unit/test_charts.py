"""SVG charts: well-formed, accessible, escaped, and drawn to scale."""
import xml.etree.ElementTree as ET

import pytest

from portal import charts
from portal.charts import Series
from portal.money import format_usd

pytestmark = pytest.mark.one_backend
SVG = "{http://www.w3.org/2000/svg}"


def parse(markup):
    return ET.fromstring(str(markup))


@pytest.mark.parametrize("draw", [charts.bar_chart, charts.line_chart])
def test_a_chart_is_an_accessible_image_with_a_title_and_a_description(draw):
    svg = parse(draw("c1", "Spend per day", ["06-14", "06-15"], [Series("Spend", [1_500_000, 250_000])],
                     fmt=format_usd))
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "c1-title c1-desc"
    assert svg.find(f"{SVG}title").text == "Spend per day"
    assert svg.find(f"{SVG}title").get("id") == "c1-title"
    desc = svg.find(f"{SVG}desc").text
    assert "from 06-14 to 06-15" in desc and "Spend $1.75 in all, at most $1.50" in desc
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "Spend: $1.75 in all" in texts  # the legend carries the total
    assert "06-14" in texts and "06-15" in texts
    assert "$0.00" in texts  # the y axis starts at zero
    assert not list(svg.iter(f"{SVG}script")) and "style=" not in str(draw("c", "t", [], []))


@pytest.mark.parametrize("draw", [charts.bar_chart, charts.line_chart])
def test_every_text_is_escaped(draw):
    evil = '<script>alert("x")</script> & co'
    markup = str(draw('id"><script>', evil, [evil], [Series(evil, [5])]))
    assert "<script>" not in markup
    svg = parse(markup)  # still well-formed XML
    assert svg.find(f"{SVG}title").text == evil
    assert any(t.text == evil for t in svg.iter(f"{SVG}text"))  # the x label, as given


def test_bars_are_drawn_to_scale_side_by_side():
    svg = parse(charts.bar_chart("b", "Calls and errors", ["alpha", "beta"],
                                 [Series("Calls", [400, 100]), Series("Errors", [20, 0])]))
    bars = [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert len(bars) == 3  # a zero draws no bar
    heights = [float(r.get("height")) for r in bars]
    assert heights[0] == pytest.approx(4 * heights[1]) and heights[0] == pytest.approx(20 * heights[2])
    calls_alpha, calls_beta, errors_alpha = bars
    assert float(errors_alpha.get("x")) > float(calls_alpha.get("x"))  # beside its group's first bar
    assert float(calls_beta.get("x")) > float(errors_alpha.get("x"))
    assert calls_alpha.get("fill") != errors_alpha.get("fill")
    assert calls_alpha.find(f"{SVG}title").text == "alpha, Calls: 400"
    # The axis ends on a round number at or above the largest value.
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks == ["0", "100", "200", "300", "400"]


def test_a_line_goes_through_every_point_and_dots_only_when_there_are_few():
    labels = [f"d{n}" for n in range(90)]
    svg = parse(charts.line_chart("l", "Revenue", labels, [Series("Top-ups", list(range(90)))]))
    points = svg.find(f"{SVG}polyline").get("points").split()
    assert len(points) == 90
    assert not list(svg.iter(f"{SVG}circle"))
    shown = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "label"]
    assert len(shown) <= charts.MAX_X_LABELS + 1 and shown[0] == "d0" and shown[-1] == "d89"
    few = parse(charts.line_chart("l", "Revenue", labels[:7], [Series("Top-ups", [1] * 7)]))
    assert len(list(few.iter(f"{SVG}circle"))) == 7


def test_an_empty_chart_still_draws_its_axes():
    svg = parse(charts.bar_chart("e", "Nothing", [], [Series("Spend", [])]))
    assert svg.find(f"{SVG}desc").text == "Nothing: nothing to show."
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "tick"] == ["0", "1"]


@pytest.mark.parametrize("top, step", [(0, 1), (1, 1), (4, 1), (5, 2), (9, 5), (400, 100), (401, 200),
                                       (123_456_789, 50_000_000), (10**12, 500_000_000_000)])
def test_nice_steps(top, step):
    assert charts.nice_step(top) == step


def test_values_must_be_integers_one_per_label():
    with pytest.raises(ValueError):
        charts.bar_chart("x", "t", ["a", "b"], [Series("s", [1])])
    with pytest.raises(TypeError):
        charts.line_chart("x", "t", ["a"], [Series("s", [1.5])])


def test_a_horizontal_bar_chart_fits_a_phone_and_names_every_bar_in_full():
    long = "vendor-model-with-a-very-long-name-2025-06-30-preview"
    svg = parse(charts.hbar_chart("h", "Spend by model", [(long, 3_000_000), ("<b>short</b>", 1_000_000)],
                                  fmt=format_usd, notes=["12 calls", "3 calls"]))
    assert svg.get("viewBox").split()[2] == str(charts.NARROW) and svg.get("class") == "plot narrow"
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "label"]
    assert labels[1] == "<b>short</b>"  # escaped, and whole when it fits
    assert labels[0].endswith("…") and long.startswith(labels[0][:-1]) and len(labels[0]) < len(long)
    titles = [g.find(f"{SVG}title").text for g in svg.iter(f"{SVG}g")]
    assert titles == [f"{long}: $3.00 (12 calls)", "<b>short</b>: $1.00 (3 calls)"]
    bars = [float(r.get("width")) for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert bars[0] == pytest.approx(3 * bars[1], abs=0.2)  # to scale (coordinates to a tenth of a pixel)
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks[0] == "$0.00" and ticks[-1] == "$3.00"  # an x axis from zero to a round top
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "total"] == ["Total: $4.00"]
    assert svg.find(f"{SVG}desc").text == f"Spend by model: {long} $3.00; <b>short</b> $1.00; $4.00 in all."
    for text in svg.iter(f"{SVG}text"):  # nothing drawn outside the picture
        assert 0 <= float(text.get("x")) <= charts.NARROW


def test_an_empty_horizontal_chart_says_so():
    svg = parse(charts.hbar_chart("h", "Spend by key", [], fmt=format_usd))
    assert svg.find(f"{SVG}desc").text == "Spend by key: nothing to show."
    with pytest.raises(TypeError):
        charts.hbar_chart("h", "t", [("a", 1.5)])


def test_a_narrow_chart_shows_fewer_x_labels():
    labels = [f"d{n}" for n in range(30)]
    wide = parse(charts.bar_chart("w", "t", labels, [Series("s", [1] * 30)]))
    narrow = parse(charts.bar_chart("n", "t", labels, [Series("s", [1] * 30)], width=charts.NARROW))
    count = lambda svg: len([t for t in svg.iter(f"{SVG}text") if t.get("class") == "label"])  # noqa: E731
    assert count(narrow) < count(wide) and count(narrow) <= 6
    assert narrow.get("viewBox") == f"0 0 {charts.NARROW} {charts.HEIGHT}"
