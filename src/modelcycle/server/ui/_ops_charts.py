"""SVG charts for the registry and operations pages: figures over time (traffic per
minute, monitor results) and a model's stage timeline, drawn on the server with
`modelcycle.evaluation.svg.Chart`. Time runs along x as minutes, hours or days before
the chart's end, so tick labels stay short numbers and the axis names the end time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from modelcycle.evaluation.svg import AXIS, Chart, color, nice_ticks

#: at most this many points per series get a marker with a tooltip
MAX_MARKERS = 60
#: the stage timeline draws the newest this many versions
MAX_LANES = 30
STAGE_COLORS = {
    "registered": "#bab0ac",
    "staging": "#edc948",
    "production": "#59a14f",
    "archived": "#9c755f",
    "retired": "#444444",
}


@dataclass(frozen=True)
class Series:
    """One line: ``values[i]`` at ``times[i]``; None (or not finite) leaves a gap."""

    label: str
    times: Sequence[dt.datetime]
    values: Sequence[float | None]
    dashed: bool = False
    stroke: str | None = None


def time_unit(span_seconds: float) -> tuple[str, float]:
    """The unit a time axis spanning ``span_seconds`` reads best in."""
    if span_seconds <= 3 * 3600:
        return "minutes", 60.0
    if span_seconds <= 4 * 86400:
        return "hours", 3600.0
    return "days", 86400.0


def time_chart(
    plot: str,
    title: str,
    y_label: str,
    series: Sequence[Series],
    *,
    end: dt.datetime,
    start: dt.datetime | None = None,
    y_range: tuple[float, float] | None = None,
    width: int = 600,
    height: int = 280,
    legend: bool | None = None,
) -> Markup | None:
    """A line chart of ``series`` over time, or None when no series has a value; the
    legend shows when asked, else when there are several series."""
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    if not values:
        return None
    if start is None:
        start = min(t for s in series for t in s.times)
    span = max((end - start).total_seconds(), 60.0)
    unit, seconds = time_unit(span)

    def x(t: dt.datetime) -> float:
        return (t - end).total_seconds() / seconds

    if y_range is None:
        low, high = min(*values, 0.0), max(values)
        if high <= low:
            high = low + 1.0
        y_range = (low, high + (high - low) * 0.06)
    chart = Chart(
        plot=plot,
        title=title,
        x_label=f"{unit} before {end.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC",
        y_label=y_label,
        x_range=(-span / seconds, 0.0),
        y_range=y_range,
        width=width,
        height=height,
        legend=len(series) > 1 if legend is None else legend,
        y_ticks=nice_ticks(*y_range),
    )
    for i, s in enumerate(series):
        stroke = s.stroke or color(i)
        shown = [
            (t, v)
            for t, v in zip(s.times, s.values, strict=True)
            if v is not None and math.isfinite(v)
        ]
        markers = len(shown) <= MAX_MARKERS
        keyed = False
        for segment in _segments(s.times, s.values):
            xs = [x(t) for t, _ in segment]
            ys = [v for _, v in segment]
            if len(segment) > 1:
                chart.line(xs, ys, stroke, label=None if keyed else s.label, dashed=s.dashed)
            else:
                if not keyed:
                    chart.key(s.label, stroke, s.dashed)
                if not markers:
                    chart.points(xs, ys, stroke, radius=2.5)
            keyed = True
        if markers:
            chart.points(
                [x(t) for t, _ in shown],
                [v for _, v in shown],
                stroke,
                radius=2.5,
                titles=[f"{s.label}: {v:.4g} at {t:%Y-%m-%d %H:%M:%S}" for t, v in shown],
            )
    return chart.render()


def _segments(
    times: Sequence[dt.datetime], values: Sequence[float | None]
) -> Iterable[list[tuple[dt.datetime, float]]]:
    run: list[tuple[dt.datetime, float]] = []
    for t, v in zip(times, values, strict=True):
        if v is not None and math.isfinite(v):
            run.append((t, float(v)))
        elif run:
            yield run
            run = []
    if run:
        yield run


@dataclass(frozen=True)
class StageSpan:
    version: int
    stage: str
    start: dt.datetime
    end: dt.datetime


def stage_spans(
    versions: Sequence[tuple[int, dt.datetime]],
    moves: Sequence[tuple[int, str, dt.datetime]],
    now: dt.datetime,
) -> list[StageSpan]:
    """Each version's stages as time spans, from its registration (``versions``: number,
    created) and its stage moves (``moves``: number, new stage, when; oldest first)."""
    current = {v: ("registered", at) for v, at in versions}
    spans: list[StageSpan] = []
    for version, stage, at in moves:
        if version not in current:
            continue
        held, since = current[version]
        if stage == held:
            continue
        if at > since:
            spans.append(StageSpan(version, held, since, at))
        current[version] = (stage, at)
    for version, (stage, since) in current.items():
        spans.append(StageSpan(version, stage, since, max(now, since)))
    return spans


def stage_timeline(spans: Sequence[StageSpan], now: dt.datetime) -> Markup | None:
    """One lane per version (newest at the top, at most `MAX_LANES`), coloured by stage
    over time."""
    numbers = sorted({s.version for s in spans}, reverse=True)[:MAX_LANES]
    spans = [s for s in spans if s.version in numbers]
    if not spans:
        return None
    lane = {v: i for i, v in enumerate(numbers)}
    start = min(s.start for s in spans)
    span = max((now - start).total_seconds(), 60.0)
    unit, seconds = time_unit(span)

    def x(t: dt.datetime) -> float:
        return (t - now).total_seconds() / seconds

    chart = Chart(
        plot="stages",
        title="Stages over time",
        x_label=f"{unit} before {now.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC",
        y_label="",
        x_range=(-span / seconds, 0.0),
        y_range=(len(numbers) - 0.5, -0.5),
        width=720,
        height=int(70 + 26 * len(numbers)),
        left=70,
        legend=True,
        y_ticks=[],
    )
    for s in spans:
        i = lane[s.version]
        chart.rect(
            x(s.start),
            i - 0.34,
            x(s.end),
            i + 0.34,
            STAGE_COLORS.get(s.stage, AXIS),
            title=f"v{s.version} {s.stage}: {s.start:%Y-%m-%d %H:%M:%S} → {s.end:%Y-%m-%d %H:%M:%S}",
        )
    for v, i in lane.items():
        chart.category(i, f"v{v}")
    for stage, fill in STAGE_COLORS.items():
        if any(s.stage == stage for s in spans):
            chart.key(stage, fill)
    return chart.render()
