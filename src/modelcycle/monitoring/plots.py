"""The drift report's plots, drawn with the evaluation report's SVG chart writer.

``histogram_plot`` draws one column: reference and current shares per bin (side by side
in each bin) or per category (horizontal bars); ``chunks_plot`` draws the multivariate
reconstruction error per chunk against its band.
"""

from __future__ import annotations

from markupsafe import Markup

from modelcycle.evaluation.svg import AXIS, MUTED, Chart, color, nice_ticks
from modelcycle.monitoring.drift import Histogram
from modelcycle.monitoring.multivariate import MultivariateResult

REFERENCE_COLOR = color(0)
CURRENT_COLOR = color(1)


def histogram_plot(plot_id: str, column: str, hist: Histogram) -> Markup:
    if hist.labels is not None:
        return _categories(plot_id, column, hist)
    assert hist.edges is not None
    edges = hist.edges
    top = max([*hist.reference, *hist.current, 0.0]) or 1.0
    chart = Chart(
        plot=plot_id,
        title=f"{column}: reference vs current",
        x_label=column,
        y_label="Share of rows",
        x_range=(edges[0], edges[-1]),
        y_range=(0.0, top * 1.08),
        width=520,
        height=300,
        legend=True,
        left=64,
    )
    for lo, hi, r, c in zip(edges[:-1], edges[1:], hist.reference, hist.current, strict=True):
        mid = (lo + hi) / 2
        span = f"{lo:.4g} to {hi:.4g}"
        if r:
            chart.rect(lo, 0.0, mid, r, REFERENCE_COLOR, title=f"{span}: reference {r:.2%}")
        if c:
            chart.rect(mid, 0.0, hi, c, CURRENT_COLOR, title=f"{span}: current {c:.2%}")
    chart.key("reference", REFERENCE_COLOR)
    chart.key("current", CURRENT_COLOR)
    return chart.render()


def _categories(plot_id: str, column: str, hist: Histogram) -> Markup:
    labels = hist.labels or []
    n = len(labels)
    top = max([*hist.reference, *hist.current, 0.0]) or 1.0
    chart = Chart(
        plot=plot_id,
        title=f"{column}: reference vs current",
        x_label="Share of rows",
        y_label="",
        x_range=(0.0, top * 1.08),
        y_range=(n - 0.5, -0.5),
        width=520,
        height=int(70 + 22 * max(n, 2)),
        left=150,
        legend=True,
        y_ticks=[],
        x_ticks=nice_ticks(0.0, top * 1.08, 4),
    )
    for i, (label, r, c) in enumerate(zip(labels, hist.reference, hist.current, strict=True)):
        chart.rect(0.0, i - 0.38, r, i, REFERENCE_COLOR, title=f"{label}: reference {r:.2%}")
        chart.rect(0.0, i, c, i + 0.38, CURRENT_COLOR, title=f"{label}: current {c:.2%}")
        chart.category(i, label, limit=20)
    chart.key("reference", REFERENCE_COLOR)
    chart.key("current", CURRENT_COLOR)
    return chart.render()


def chunks_plot(result: MultivariateResult) -> Markup:
    """Reconstruction error per chunk (reference, then current) and the band."""
    ref, cur = result.reference_chunks, result.current_chunks
    points = [*ref, *cur]
    values = [c.error for c in points] + [result.lower, result.upper]
    low, high = min(values), max(values)
    pad = (high - low) * 0.1 or 1.0
    chart = Chart(
        plot="multivariate",
        title="PCA reconstruction error per chunk",
        x_label="Chunk (reference, then current)",
        y_label="Reconstruction error",
        x_range=(-0.5, len(points) - 0.5),
        y_range=(low - pad, high + pad),
        width=620,
        height=300,
        legend=True,
        left=70,
    )
    xs = [float(i) for i in range(len(points))]
    chart.line([-0.5, len(points) - 0.5], [result.upper] * 2, MUTED, label="band", dashed=True)
    chart.line([-0.5, len(points) - 0.5], [result.lower] * 2, MUTED, dashed=True)
    chart.line(xs[: len(ref)], [c.error for c in ref], REFERENCE_COLOR, label="reference")
    if cur:
        chart.line(xs[len(ref) :], [c.error for c in cur], CURRENT_COLOR, label="current")
    alerts = [(x, c.error) for x, c in zip(xs, points, strict=True) if c.alert]
    if alerts:
        chart.points([a for a, _ in alerts], [b for _, b in alerts], color(2), radius=4)
    chart.line([len(ref) - 0.5] * 2, [low - pad, high + pad], AXIS, width=1)
    return chart.render()
