"""The drift report: one self-contained HTML file.

Like the evaluation report: styles inline, plots inline SVG, no scripts, nothing fetched,
so it opens offline and can be mailed or stored. Its size depends on the number of
columns (a histogram of at most 20 bins or categories each), not on the number of rows.
"""

from __future__ import annotations

import math
from typing import Any

import jinja2
from markupsafe import Markup

from modelcycle.monitoring import plots
from modelcycle.monitoring.drift import ColumnDrift, DriftResult

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("modelcycle.monitoring", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def fmt(value: float | None) -> str:
    """A score for people: four significant digits, small p-values in e-notation."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.4g}"


def render_report(result: DriftResult, *, created_at: str | None = None) -> str:
    rows = [_row(i, c) for i, c in enumerate(result.columns)]
    figures = [r for r in rows if r["svg"] is not None]
    mv = result.multivariate
    return _ENV.get_template("drift.html").render(
        title=f"Drift: {result.current} vs {result.reference}",
        result=result,
        rows=rows,
        figures=figures,
        multivariate=mv,
        multivariate_svg=plots.chunks_plot(mv) if mv is not None and mv.status == "ok" else None,
        created_at=created_at,
        fmt=fmt,
    )


def _row(i: int, c: ColumnDrift) -> dict[str, Any]:
    svg: Markup | None = None
    if c.histogram is not None:
        svg = plots.histogram_plot(f"column-{i}", c.column, c.histogram)
    if c.status != "ok":
        verdict = {"missing": "missing", "no_data": "no data", "skipped": "not checked"}.get(
            c.status, "error"
        )
    else:
        verdict = "drift" if c.drifted else "no drift"
    return {
        "index": i,
        "column": c.column,
        "kind": c.kind,
        "role": c.role,
        "status": c.status,
        "test": c.test_title or c.test or "",
        "score": fmt(c.score),
        "statistic": fmt(c.statistic),
        "threshold": fmt(c.threshold),
        "is_p_value": c.p_value is not None,
        "verdict": verdict,
        "drifted": c.drifted,
        "message": c.message or "",
        "rows": f"{c.reference_rows:,} / {c.current_rows:,}",
        "bounds": _bounds(c.bounds),
        "svg": svg,
    }


def _bounds(bounds: tuple[float, float] | None) -> str:
    """The bounds of an approximate score, when they differ at the precision shown."""
    if bounds is None or fmt(bounds[0]) == fmt(bounds[1]):
        return ""
    return f"{fmt(bounds[0])} to {fmt(bounds[1])}"
