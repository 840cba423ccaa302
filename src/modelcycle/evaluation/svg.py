"""A small SVG chart writer for the evaluation report: axes with ticks, lines, points,
bars, a legend. Output is static markup (no scripts), every piece of text escaped.

Coordinates are rounded to 0.1 px so a plot of a few hundred points stays a few kB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

#: Tableau 10: distinct, legible on white, kind to common colour-vision deficiencies
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
AXIS = "#444"
GRID = "#e6e6e6"
MUTED = "#888"
FONT = 12
LEGEND_WIDTH = 150


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high], about ``count`` of them (steps of 1, 2, 5)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` written with as many decimals as the tick spacing needs."""
    if abs(value) < 1e-12:
        return "0"
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value)
    if abs(value) >= 1e5 or step < 1e-4:
        return f"{value:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if step * 10**decimals % 1 > 1e-6:
        decimals += 1
    return f"{value:,.{decimals}f}"


def padded_range(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    """The span of ``values`` widened by ``pad`` of its width on each side."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if low == high:
        return low - 1, high + 1
    extra = (high - low) * pad
    return low - extra, high + extra


def _n(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


@dataclass
class Chart:
    """One plot: call the drawing methods, then `render`."""

    plot: str
    title: str
    x_label: str
    y_label: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    width: int = 460
    height: int = 340
    legend: bool = False
    x_ticks: Sequence[float] | None = None
    y_ticks: Sequence[float] | None = None
    left: int = 60
    bottom: int = 46
    top: int = 14
    right: int = 16
    _body: list[str] = field(default_factory=list)
    _keys: list[tuple[str, str, bool]] = field(default_factory=list)
    _labels: list[str] = field(default_factory=list)

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right - (LEGEND_WIDTH if self.legend else 0)

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom

    def sx(self, x: float) -> float:
        x0, x1 = self.x_range
        return self.left + (x - x0) / (x1 - x0) * self.plot_width

    def sy(self, y: float) -> float:
        y0, y1 = self.y_range
        return self.top + self.plot_height - (y - y0) / (y1 - y0) * self.plot_height

    def line(
        self,
        xs: Sequence[float],
        ys: Sequence[float],
        stroke: str,
        *,
        label: str | None = None,
        dashed: bool = False,
        width: float = 2,
        title: str | None = None,
    ) -> None:
        if not xs:
            return
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{_n(self.sx(x))},{_n(self.sy(y))}"
            for i, (x, y) in enumerate(zip(xs, ys, strict=True))
        )
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        tip = f"<title>{escape(title or label or '')}</title>" if (title or label) else ""
        self._body.append(
            f'<path d="{path}" fill="none" stroke="{stroke}" stroke-width="{width}"'
            f' stroke-linejoin="round"{dash}>{tip}</path>'
        )
        if label is not None:
            self._keys.append((label, stroke, dashed))

    def points(
        self,
        xs: Sequence[float],
        ys: Sequence[float],
        fill: str,
        *,
        radius: float = 3,
        opacity: float = 1.0,
        titles: Sequence[str] | None = None,
    ) -> None:
        alpha = f' fill-opacity="{opacity}"' if opacity < 1 else ""
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            tip = f"<title>{escape(titles[i])}</title>" if titles else ""
            self._body.append(
                f'<circle cx="{_n(self.sx(x))}" cy="{_n(self.sy(y))}" r="{radius}"'
                f' fill="{fill}"{alpha}>{tip}</circle>'
            )

    def rect(
        self, x0: float, y0: float, x1: float, y1: float, fill: str, title: str | None = None
    ) -> None:
        """A rectangle between data corners (x0, y0) and (x1, y1)."""
        left, right = sorted((self.sx(x0), self.sx(x1)))
        top, bottom = sorted((self.sy(y0), self.sy(y1)))
        tip = f"<title>{escape(title)}</title>" if title else ""
        self._body.append(
            f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(max(right - left, 0.5))}"'
            f' height="{_n(max(bottom - top, 0.5))}" fill="{fill}">{tip}</rect>'
        )

    def category(self, y: float, text: str, limit: int = 24) -> None:
        """A label left of the plot area at data height ``y`` (for categorical y axes)."""
        self._labels.append(
            f'<text x="{self.left - 6}" y="{_n(self.sy(y))}" dy="0.32em" text-anchor="end"'
            f' fill="{AXIS}">{escape(shorten(text, limit))}<title>{escape(text)}</title></text>'
        )

    def key(self, label: str, stroke: str, dashed: bool = False) -> None:
        """A legend entry that no `line` call added."""
        self._keys.append((label, stroke, dashed))

    def render(self) -> Markup:
        parts = [
            f'<svg id="plot-{escape(self.plot)}"'
            f' data-plot="{escape(self.plot)}" class="plot" role="img"'
            f' aria-label="{escape(self.title)}" viewBox="0 0 {self.width} {self.height}"'
            f' width="{self.width}" height="{self.height}" font-size="{FONT}">',
            f"<title>{escape(self.title)}</title>",
            *self._grid_and_axes(),
            *self._labels,
            f'<g clip-path="url(#clip-{escape(self.plot)})">',
            *self._body,
            "</g>",
            *self._legend(),
            "</svg>",
        ]
        return Markup("".join(parts))

    def _grid_and_axes(self) -> list[str]:
        x_ticks = list(nice_ticks(*self.x_range) if self.x_ticks is None else self.x_ticks)
        y_ticks = list(nice_ticks(*self.y_range) if self.y_ticks is None else self.y_ticks)
        left, top = self.left, self.top
        right, bottom = left + self.plot_width, top + self.plot_height
        out = [
            f'<defs><clipPath id="clip-{escape(self.plot)}"><rect x="{left - 4}" y="{top - 4}"'
            f' width="{_n(self.plot_width + 8)}" height="{_n(self.plot_height + 8)}"/>'
            "</clipPath></defs>"
        ]
        for t in x_ticks:
            if not self.x_range[0] - 1e-9 <= t <= self.x_range[1] + 1e-9:
                continue
            x = _n(self.sx(t))
            out.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{_n(bottom)}" stroke="{GRID}"/>')
            out.append(
                f'<text x="{x}" y="{_n(bottom + 16)}" text-anchor="middle" fill="{AXIS}">'
                f"{escape(tick_label(t, x_ticks))}</text>"
            )
        for t in y_ticks:
            if not self.y_range[0] - 1e-9 <= t <= self.y_range[1] + 1e-9:
                continue
            y = _n(self.sy(t))
            out.append(f'<line x1="{left}" y1="{y}" x2="{_n(right)}" y2="{y}" stroke="{GRID}"/>')
            out.append(
                f'<text x="{left - 6}" y="{y}" dy="0.32em" text-anchor="end" fill="{AXIS}">'
                f"{escape(tick_label(t, y_ticks))}</text>"
            )
        out.append(
            f'<rect x="{left}" y="{top}" width="{_n(self.plot_width)}"'
            f' height="{_n(self.plot_height)}" fill="none" stroke="{AXIS}"/>'
        )
        out.append(
            f'<text x="{_n(left + self.plot_width / 2)}" y="{self.height - 8}"'
            f' text-anchor="middle" fill="{AXIS}" font-weight="600">{escape(self.x_label)}</text>'
        )
        mid = _n(top + self.plot_height / 2)
        out.append(
            f'<text transform="translate(14 {mid}) rotate(-90)" text-anchor="middle"'
            f' fill="{AXIS}" font-weight="600">{escape(self.y_label)}</text>'
        )
        return out

    def _legend(self) -> list[str]:
        if not self.legend or not self._keys:
            return []
        x = self.width - LEGEND_WIDTH + 4
        out = [f'<g class="legend" transform="translate({x} {self.top + 4})">']
        for i, (label, stroke, dashed) in enumerate(self._keys):
            y = i * 18
            dash = ' stroke-dasharray="5 4"' if dashed else ""
            out.append(
                f'<line x1="0" y1="{y + 6}" x2="18" y2="{y + 6}" stroke="{stroke}"'
                f' stroke-width="2.5"{dash}/>'
                f'<text x="24" y="{y + 6}" dy="0.32em" fill="{AXIS}">'
                f"{escape(shorten(label, 20))}<title>{escape(label)}</title></text>"
            )
        out.append("</g>")
        return out


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
