"""The SVG charts of the dataset and run pages, drawn on the server with the evaluation
report's `Chart`: a column's histogram, and metric series against their step."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from modelcycle.evaluation.svg import Chart, color, padded_range

# Points per series on a chart: the store averages equal-width step buckets down to this.
RUN_CHART_POINTS = 500
COMPARE_CHART_POINTS = 300


@dataclass(frozen=True)
class Series:
    label: str
    steps: Sequence[float]
    values: Sequence[float]


def histogram(plot: str, column: str, hist: Mapping[str, Any]) -> Markup | None:
    """Bars of a profile's histogram (``{"edges": [...], "counts": [...]}``), or None
    when it has no bins."""
    edges, counts = list(hist.get("edges") or []), list(hist.get("counts") or [])
    if not counts or len(edges) != len(counts) + 1:
        return None
    low, high = float(edges[0]), float(edges[-1])
    if high <= low:  # one distinct value: a single bar of unit width around it
        low, high = low - 0.5, high + 0.5
        edges = [low, high]
        counts = [sum(counts)]
    chart = Chart(
        plot=plot,
        title=f"Distribution of {column}",
        x_label=column,
        y_label="rows",
        x_range=(low, high),
        y_range=(0.0, max(*counts, 1) * 1.08),
        width=300,
        height=170,
        left=46,
        bottom=38,
    )
    for i, count in enumerate(counts):
        if count:
            tip = f"{edges[i]:.4g} to {edges[i + 1]:.4g}: {count:,} rows"
            chart.rect(edges[i], 0.0, edges[i + 1], count, color(0), title=tip)
    return chart.render()


def metric_chart(
    plot: str, key: str, series: Sequence[Series], *, width: int = 460, legend: bool = False
) -> Markup:
    """Lines of ``key`` against the step, one per series; NaN and infinite points are
    left out (a gap in the line), and a series of one point is drawn as a dot."""
    finite = [_finite_runs(s) for s in series]
    xs = [x for pieces in finite for piece in pieces for x in piece[0]]
    ys = [y for pieces in finite for piece in pieces for y in piece[1]]
    x_range = padded_range(xs, 0.0) if xs else (0.0, 1.0)
    if x_range[0] == x_range[1]:
        x_range = (x_range[0] - 1, x_range[1] + 1)
    chart = Chart(
        plot=plot,
        title=key,
        x_label="step",
        y_label=key,
        x_range=x_range,
        y_range=padded_range(ys),
        width=width + (150 if legend else 0),
        height=260,
        legend=legend,
    )
    for i, (s, pieces) in enumerate(zip(series, finite, strict=True)):
        stroke = color(i)
        for px, py in pieces:
            if len(px) == 1:
                chart.points(px, py, stroke, titles=[f"{s.label}: step {px[0]:g}, {py[0]:.6g}"])
            else:
                chart.line(px, py, stroke, title=s.label)
        if legend:
            chart.key(s.label, stroke)
    return chart.render()


def _finite_runs(s: Series) -> list[tuple[list[float], list[float]]]:
    """The series cut into stretches of finite points."""
    pieces: list[tuple[list[float], list[float]]] = []
    current: tuple[list[float], list[float]] = ([], [])
    for x, y in zip(s.steps, s.values, strict=True):
        if math.isfinite(y):
            current[0].append(float(x))
            current[1].append(float(y))
        elif current[0]:
            pieces.append(current)
            current = ([], [])
    if current[0]:
        pieces.append(current)
    return pieces
