"""Charts as inline SVG, drawn on the server: no JavaScript, no library, and they print.

Every text that reaches the SVG (metric names, versions, environment names) comes from a registry, so it
goes through `text()`: control characters made visible, then HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from modelpack.text import clean


# terminal escapes made visible (modelpack/text.py, the CLI's rule too), then HTML-escaped
def text(value: object) -> Markup:
    return escape(clean(value))


@dataclass(frozen=True)
class Point:
    label: str  # the x axis: a version, or an event's time
    value: float | None  # None: not measured there (a gap in the line)
    marks: tuple[str, ...] = ()  # environments at this point


W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 220, 56, 16, 22, 48


def line_chart(title: str, points: Sequence[Point], *, css_class: str = "chart") -> Markup:
    """A line of `points` (left to right), with a dot per value and a flag per environment mark."""
    values = [p.value for p in points if p.value is not None]
    head = (
        f'<svg class="{css_class}" role="img" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'xmlns="http://www.w3.org/2000/svg" data-metric="{text(title)}">'
        f"<title>{text(title)}</title>"
        f'<text x="{PAD_L}" y="14" class="chart-title">{text(title)}</text>'
    )
    if not values:
        return Markup(head + f'<text x="{PAD_L}" y="{H // 2}">no values</text></svg>')
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - (abs(lo) * 0.05 or 0.5), hi + (abs(hi) * 0.05 or 0.5)
    n = len(points)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x(i: int) -> float:
        return PAD_L + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return PAD_T + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [head]
    parts.append(
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{W - PAD_R}" y2="{PAD_T + plot_h}"/>'
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{PAD_T + plot_h}"/>'
        f'<text class="tick" x="{PAD_L - 4}" y="{y(hi) + 4:.1f}" text-anchor="end">{hi:.4g}</text>'
        f'<text class="tick" x="{PAD_L - 4}" y="{y(lo) + 4:.1f}" text-anchor="end">{lo:.4g}</text>'
    )
    segment: list[str] = []
    for i, p in enumerate(points):
        if p.value is None:
            parts.append(_polyline(segment))
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(p.value):.1f}")
    parts.append(_polyline(segment))
    step = max(1, n // 12)  # at most a dozen labels: 200 versions stay readable
    for i, p in enumerate(points):
        if p.value is not None:
            parts.append(
                f'<circle class="point" cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="3">'
                f"<title>{text(p.label)}: {p.value:.6g}</title></circle>"
            )
        # labels stay inside the chart: the right half's run leftwards, the edges' away from the edge
        right = x(i) > PAD_L + plot_w / 2
        for k, env in enumerate(p.marks):
            at = f'x="{x(i) - 3:.1f}" text-anchor="end"' if right else f'x="{x(i) + 3:.1f}"'
            parts.append(
                f'<g class="env-mark" data-env="{text(env)}">'
                f'<line x1="{x(i):.1f}" y1="{PAD_T}" x2="{x(i):.1f}" y2="{PAD_T + plot_h}"/>'
                f'<text {at} y="{PAD_T + 10 + 11 * k}">{text(env)}</text></g>'
            )
        if i % step == 0 or i == n - 1:
            anchor = "start" if i == 0 and n > 1 else ("end" if i == n - 1 and n > 1 else "middle")
            parts.append(
                f'<text class="tick" x="{x(i):.1f}" y="{H - PAD_B + 16}" text-anchor="{anchor}">'
                f"{text(_short(p.label))}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


MAX_POINTS = 400  # per series: a 100k-step history draws as its shape, not as 100k SVG points


def curves_chart(
    title: str, x_name: str, series: Sequence[tuple[str, Sequence[tuple[float, float]]]]
) -> Markup:
    """Lines of (x, value) pairs over a numeric x (a training step or epoch), one per series, overlaid,
    with a legend naming each series when there are several (two versions compared)."""
    drawn = [(name, _thin(points)) for name, points in series]
    xs = [x for _, pts in drawn for x, _ in pts]
    ys = [v for _, pts in drawn for _, v in pts]
    head = (
        f'<svg class="chart curves" role="img" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'xmlns="http://www.w3.org/2000/svg" data-metric="{text(title)}">'
        f"<title>{text(title)} over {text(x_name)}</title>"
        f'<text x="{PAD_L}" y="14" class="chart-title">{text(title)}</text>'
    )
    if not ys:
        return Markup(head + f'<text x="{PAD_L}" y="{H // 2}">no values</text></svg>')
    parts, px, py = _axes(head, x_name, min(xs), max(xs), min(ys), max(ys))
    for i, (name, pts) in enumerate(drawn):
        coords = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in pts)
        if len(pts) > 1:
            parts.append(f'<polyline class="line series-{i}" data-series="{text(name)}" points="{coords}"/>')
        elif pts:  # one value: a dot, a line needs two
            parts.append(
                f'<circle class="point series-{i}" data-series="{text(name)}" '
                f'cx="{px(pts[0][0]):.1f}" cy="{py(pts[0][1]):.1f}" r="3"/>'
            )
    if len(drawn) > 1:
        for i, (name, _) in enumerate(drawn):
            lx = PAD_L + 8 + 150 * i
            parts.append(
                f'<g class="legend" data-series="{text(name)}"><rect class="series-{i}" x="{lx}" '
                f'y="{H - 18}" width="12" height="4"/><text x="{lx + 16}" y="{H - 13}">'
                f"{text(_short(name))}</text></g>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))



def _axes(
    head: str, x_name: str, x_lo: float, x_hi: float, lo: float, hi: float
) -> tuple[list[str], Callable[[float], float], Callable[[float], float]]:
    """The frame every x/y chart shares (axes, min and max ticks, the x name) and its two scales; a flat
    series gets a band around its value so it is drawn, not divided by zero."""
    if hi == lo:
        lo, hi = lo - (abs(lo) * 0.05 or 0.5), hi + (abs(hi) * 0.05 or 0.5)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def px(x: float) -> float:
        return PAD_L + (plot_w * (x - x_lo) / (x_hi - x_lo) if x_hi > x_lo else plot_w / 2)

    def py(v: float) -> float:
        return PAD_T + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [
        head,
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{W - PAD_R}" y2="{PAD_T + plot_h}"/>'
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{PAD_T + plot_h}"/>'
        f'<text class="tick" x="{PAD_L - 4}" y="{py(hi) + 4:.1f}" text-anchor="end">{hi:.4g}</text>'
        f'<text class="tick" x="{PAD_L - 4}" y="{py(lo) + 4:.1f}" text-anchor="end">{lo:.4g}</text>'
        f'<text class="tick" x="{PAD_L}" y="{H - PAD_B + 16}">{x_lo:.6g}</text>'
        f'<text class="tick" x="{W - PAD_R}" y="{H - PAD_B + 16}" text-anchor="end">{x_hi:.6g}</text>'
        f'<text class="tick" x="{PAD_L + plot_w / 2:.1f}" y="{H - PAD_B + 16}" '
        f'text-anchor="middle">{text(x_name)}</text>',
    ]
    return parts, px, py

def _thin(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return list(points)
    step = -(-len(points) // MAX_POINTS)
    return [*points[::step], *([points[-1]] if (len(points) - 1) % step else [])]


def _polyline(segment: list[str]) -> str:
    return f'<polyline class="line" points="{" ".join(segment)}"/>' if len(segment) > 1 else ""


def _short(label: str) -> str:
    return label if len(label) <= 12 else label[:11] + "…"


def lineage_graph(columns: Sequence[tuple[str, Sequence[str]]], edges: Mapping[str, Sequence[str]]) -> Markup:
    """Boxes in columns (datasets, versions, images, environments) and an edge from each node to those it
    feeds; node ids are `column:label`, so one label may sit in two columns."""
    box_w, box_h, gap_x, gap_y, top = 180.0, 24.0, 60.0, 10.0, 30.0
    rows = max((len(nodes) for _, nodes in columns), default=0)
    width = len(columns) * (box_w + gap_x)
    height = top + rows * (box_h + gap_y) + 10
    where: dict[str, tuple[float, float]] = {}
    parts = [
        f'<svg class="lineage" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>lineage</title>'
    ]
    for c, (name, nodes) in enumerate(columns):
        cx = c * (box_w + gap_x) + 4
        parts.append(f'<text class="col-title" x="{cx}" y="16">{text(name)}</text>')
        for r, label in enumerate(nodes):
            cy = top + r * (box_h + gap_y)
            where[f"{name}:{label}"] = (cx, cy)
    for src, dests in edges.items():
        if src not in where:
            continue
        sx, sy = where[src]
        for d in dests:
            if d in where:
                dx, dy = where[d]
                parts.append(
                    f'<line class="edge" x1="{sx + box_w:.0f}" y1="{sy + box_h / 2:.0f}" '
                    f'x2="{dx:.0f}" y2="{dy + box_h / 2:.0f}"/>'
                )
    for node, (cx, cy) in where.items():
        label = node.split(":", 1)[1]
        parts.append(
            f'<g class="node" data-node="{text(node)}"><rect x="{cx}" y="{cy}" width="{box_w}" '
            f'height="{box_h}" rx="4"/><text x="{cx + 6}" y="{cy + 16}">{text(_short_id(label))}</text>'
            f"<title>{text(label)}</title></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _short_id(label: str) -> str:
    return label if len(label) <= 24 else label[:23] + "…"


def scatter_chart(title: str, x_name: str, y_name: str, points: Sequence[tuple[float, float, str]]) -> Markup:
    """One dot per run at (param, metric): which value of a param gave the best metric. Each dot names
    its run (`data-run`)."""
    head = (
        f'<svg class="chart scatter" role="img" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'xmlns="http://www.w3.org/2000/svg" data-x="{text(x_name)}" data-y="{text(y_name)}">'
        f"<title>{text(title)}</title>"
        f'<text x="{PAD_L}" y="14" class="chart-title">{text(title)}</text>'
    )
    if not points:
        return Markup(head + f'<text x="{PAD_L}" y="{H // 2}">no values</text></svg>')
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    parts, px, py = _axes(head, x_name, min(xs), max(xs), min(ys), max(ys))
    for x, v, run in points[:MAX_POINTS]:
        parts.append(
            f'<circle class="point" data-run="{text(run)}" cx="{px(x):.1f}" cy="{py(v):.1f}" r="3">'
            f"<title>{text(run)}: {text(x_name)}={x:.6g}, {text(y_name)}={v:.6g}</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
