"""Hand-written inline SVG charts: small, crisp in print, no fonts or scripts to fetch.

Every text that comes from the data (attribute values, label values, column names) goes
through :func:`markupsafe.escape`, because the chart is inserted into the page as markup.
Every chart carries ``role="img"`` and a ``<title>`` so screen readers announce it.

>>> svg = bar_chart([("erm", 0.8, 0.05)], title="Worst-group accuracy", x_label="accuracy")
>>> svg.startswith("<svg") and "<title>" in svg
True
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
INK = "#1a1a1a"
MUTED = "#555"
DEFICIT = "#b3261e"     # deficit marks (contrast 6.5:1 on white)
SURPLUS = "#0b57d0"
BAR = "#3b5b92"


def _t(text) -> str:
    return str(escape(str(text)))


def _open(width: float, height: float, title: str, desc: str = "") -> str:
    d = f"<desc>{_t(desc)}</desc>" if desc else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" style="{FONT};max-width:100%;height:auto">'
            f"<title>{_t(title)}</title>{d}")


def _mix(c1: tuple[int, int, int], c2: tuple[int, int, int], t: float) -> str:
    t = max(0.0, min(1.0, t))
    r, g, b = (round(a + (b - a) * t) for a, b in zip(c1, c2, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(rows: Sequence[str], cols: Sequence[str], observed: Sequence[Sequence[float]],
            expected: Sequence[Sequence[float]], *, row_title: str, col_title: str,
            deficits: set[tuple[str, str]] = frozenset(), title: str = "") -> Markup:
    """Observed vs expected counts per (attribute value, label value) cell.

    Cells are coloured by how far they are from independence (red: fewer than expected,
    blue: more), each shows "observed / expected", and the audit's deficit cells get a
    thick dashed border and a ▼ mark, so the claim can be read without the colours.
    """
    cw, ch = 118, 40
    left = min(190, 14 + 7.2 * max([len(str(r)) for r in rows] + [len(row_title)]))
    top = 58
    width = left + cw * len(cols) + 16
    height = top + ch * len(rows) + 40
    desc = "; ".join(
        f"{col_title}={c} & {r}: {observed[i][j]:.0f} seen, {expected[i][j]:.0f} expected"
        for i, r in enumerate(rows) for j, c in enumerate(cols))
    parts = [_open(width, height, title or f"{row_title} by {col_title}: observed vs expected counts", desc)]
    parts.append(f'<text x="{left + cw * len(cols) / 2:.0f}" y="16" text-anchor="middle" font-size="13" '
                 f'fill="{INK}" font-weight="600">{_t(col_title)}</text>')
    for j, c in enumerate(cols):
        parts.append(f'<text x="{left + cw * j + cw / 2:.0f}" y="{top - 10}" text-anchor="middle" font-size="13" '
                     f'fill="{INK}">{_t(c)}</text>')
    parts.append(f'<text x="{left - 8:.0f}" y="{top - 10}" text-anchor="end" font-size="12" fill="{MUTED}" '
                 f'font-style="italic">{_t(row_title)}</text>')
    for i, r in enumerate(rows):
        y = top + ch * i
        parts.append(f'<text x="{left - 8:.0f}" y="{y + ch / 2 + 5:.0f}" text-anchor="end" font-size="13" '
                     f'fill="{INK}">{_t(r)}</text>')
        for j, c in enumerate(cols):
            o, e = observed[i][j], expected[i][j]
            ratio = (o - e) / max(e, 1.0)
            fill = _mix((255, 255, 255), (244, 180, 170), -ratio) if ratio < 0 else \
                _mix((255, 255, 255), (180, 205, 245), ratio / 2)
            x = left + cw * j
            is_deficit = (str(r), str(c)) in deficits
            stroke = (f'stroke="{DEFICIT}" stroke-width="3" stroke-dasharray="6 3"' if is_deficit
                      else 'stroke="#999" stroke-width="1"')
            weight = ' font-weight="700"' if is_deficit else ""
            parts.append(f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" fill="{fill}" {stroke}/>')
            mark = "▼ " if is_deficit else ""
            parts.append(f'<text x="{x + cw / 2:.0f}" y="{y + ch / 2 + 5:.0f}" text-anchor="middle" font-size="13" '
                         f'fill="{DEFICIT if is_deficit else INK}"{weight}>{mark}{o:,.0f} / {e:,.0f}</text>')
    y = top + ch * len(rows) + 18
    parts.append(f'<text x="{left}" y="{y}" font-size="12" fill="{MUTED}">observed / expected</text>')
    parts.append(f'<text x="{left}" y="{y + 15}" font-size="12" fill="{DEFICIT}" font-weight="700">'
                 f'▼ dashed: deficit</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(items: Sequence[tuple[str, float, float | tuple[float, float] | None]], *, title: str,
              x_label: str, x_max: float = 1.0, highlight: str | None = None) -> Markup:
    """Horizontal bars with error bars: ``(name, value, std)`` or ``(name, value, (lo, hi))``."""
    bh, gap = 24, 10
    left = min(260, 16 + 7.0 * max([len(str(n)) for n, _, _ in items] + [4]))
    plot_w = 380
    width = left + plot_w + 70
    height = 30 + (bh + gap) * len(items) + 40
    desc = "; ".join(f"{n}: {v:.3f}" for n, v, _ in items)
    parts = [_open(width, height, title, desc)]
    x0 = left

    def sx(v: float) -> float:
        return x0 + plot_w * max(0.0, min(1.0, v / x_max if x_max else 0.0))

    for k in range(0, 6):
        v = x_max * k / 5
        parts.append(f'<line x1="{sx(v):.1f}" y1="22" x2="{sx(v):.1f}" y2="{height - 36}" stroke="#ddd"/>')
        parts.append(f'<text x="{sx(v):.1f}" y="{height - 22}" text-anchor="middle" font-size="11" '
                     f'fill="{MUTED}">{v:.2g}</text>')
    parts.append(f'<text x="{x0 + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" font-size="12" '
                 f'fill="{INK}">{_t(x_label)}</text>')
    for i, (name, value, err) in enumerate(items):
        y = 26 + i * (bh + gap)
        colour = DEFICIT if highlight is not None and name == highlight else BAR
        parts.append(f'<text x="{x0 - 8}" y="{y + bh / 2 + 5:.0f}" text-anchor="end" font-size="13" '
                     f'fill="{INK}">{_t(name)}</text>')
        parts.append(f'<rect x="{x0}" y="{y}" width="{max(0.5, sx(value) - x0):.1f}" height="{bh}" fill="{colour}"/>')
        lo = hi = None
        if isinstance(err, (tuple, list)) and len(err) == 2 and None not in err:
            lo, hi = float(err[0]), float(err[1])
        elif isinstance(err, (int, float)) and err == err:
            lo, hi = value - err, value + err
        if lo is not None:
            yc = y + bh / 2
            parts.append(f'<line x1="{sx(lo):.1f}" y1="{yc}" x2="{sx(hi):.1f}" y2="{yc}" stroke="{INK}" '
                         f'stroke-width="1.5"/>')
            for v in (lo, hi):
                parts.append(f'<line x1="{sx(v):.1f}" y1="{yc - 6}" x2="{sx(v):.1f}" y2="{yc + 6}" '
                             f'stroke="{INK}" stroke-width="1.5"/>')
        parts.append(f'<text x="{max(sx(value), sx(hi) if hi is not None else 0) + 6:.1f}" y="{y + bh / 2 + 5:.0f}" '
                     f'font-size="12" fill="{INK}">{value:.3f}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def coverage_bars(items: Sequence[tuple[str, float]], *, title: str) -> Markup:
    """Share of images in which each part is present, as short bars."""
    return bar_chart([(n, v, None) for n, v in items], title=title, x_label="share of usable images with the part")
