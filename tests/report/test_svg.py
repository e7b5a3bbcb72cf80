"""Inline SVG charts: deficits marked without relying on colour, data escaped, accessible."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from biasaudit.report import svg

NS = "{http://www.w3.org/2000/svg}"


def test_heatmap_marks_the_deficit_cells_and_shows_observed_over_expected():
    out = svg.heatmap(["blond", "black"], ["0", "1"], [[10, 90], [90, 10]], [[50, 50], [50, 50]],
                      row_title="hair colour", col_title="Smiling", deficits={("blond", "0"), ("black", "1")})
    root = ET.fromstring(str(out))  # well-formed XML
    assert root.get("role") == "img" and root.find(f"{NS}title") is not None
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "▼ 10 / 50" in texts and "▼ 10 / 50" in texts and "90 / 50" in texts
    dashed = [r for r in root.iter(f"{NS}rect") if r.get("stroke-dasharray")]
    assert len(dashed) == 2


def test_chart_text_from_the_data_is_escaped():
    evil = "<script>alert(2)</script>"
    out = str(svg.heatmap([evil], ["<img src=x onerror=alert(1)>"], [[1]], [[1]], row_title=evil, col_title=evil))
    assert "<script>" not in out and "<img" not in out
    assert "&lt;script&gt;" in out
    ET.fromstring(out)
    bars = str(svg.bar_chart([(evil, 0.5, 0.1)], title=evil, x_label=evil))
    assert "<script>" not in bars
    ET.fromstring(bars)


def test_bar_chart_draws_error_bars_from_std_or_interval():
    out = svg.bar_chart([("a", 0.5, 0.1), ("b", 0.4, (0.3, 0.45)), ("c", 0.2, None)], title="t", x_label="x")
    root = ET.fromstring(str(out))
    lines = [ln for ln in root.iter(f"{NS}line") if ln.get("stroke-width") == "1.5"]
    assert len(lines) == 6  # a and b: one bar and two caps each; c: none
