"""A monitor's results over time as charts: drift per column and the share of drifted
columns, realized performance against the estimate, and operations (traffic, latency).

The figures are the ones each result stored (`ResultRow.values`, named as alert rules
name them); a figure a result lacks (no traffic, no feedback yet) is a gap in its line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from modelcycle.evaluation.svg import AXIS, color
from modelcycle.server.ui._ops_charts import Series, time_chart

if TYPE_CHECKING:
    from modelcycle.store.monitors import ResultRow

#: the drift chart draws at most this many columns (drifted ones first)
MAX_DRIFT_LINES = 10
#: realized metric → the estimate of the same metric (estimated from probabilities)
ESTIMATES = {"accuracy": "estimated_accuracy", "f1": "estimated_f1", "roc_auc": "estimated_roc_auc"}
#: the realized scores the performance chart draws (every figure is in the results table)
SCORES = ("accuracy", "f1", "f1_macro", "roc_auc")
#: the regression errors the error chart draws
ERRORS = ("rmse", "mae")


@dataclass
class MonitorCharts:
    drift: Markup | None = None
    drift_columns: int = 0
    drift_shown: list[str] = field(default_factory=list)
    performance: Markup | None = None
    errors: Markup | None = None
    requests: Markup | None = None
    latency: Markup | None = None

    @classmethod
    def of(cls, results: Sequence[ResultRow], newest: Mapping[str, Any]) -> MonitorCharts:
        """Charts of ``results`` (oldest first); ``newest`` is the newest one's detail."""
        out = cls()
        usable = [r for r in results if r.status != "error"]
        if not usable:
            return out
        times = [r.window_end for r in usable]
        end = times[-1]

        def line(key: str, label: str | None = None, **kw: Any) -> Series:
            return Series(label or key, times, [_value(r.values.get(key)) for r in usable], **kw)

        columns = list(dict.fromkeys(k for r in usable for k in r.values if k.startswith("drift.")))
        out.drift_columns = len(columns)
        drifted = {
            f"drift.{c['column']}"
            for c in (newest.get("drift") or {}).get("columns", [])
            if c.get("drifted")
        }
        shown = sorted(columns, key=lambda k: k not in drifted)[:MAX_DRIFT_LINES]
        out.drift_shown = [k.removeprefix("drift.") for k in shown]
        drift = [line(k, k.removeprefix("drift."), stroke=color(i)) for i, k in enumerate(shown)]
        if any(r.values.get("drift_share") is not None for r in usable):
            drift.append(line("drift_share", dashed=True, stroke=AXIS))
        out.drift = time_chart(
            "drift", "Drift per column (test score) and drift share", "score", drift, end=end
        )

        present = {k for r in usable for k in r.values}
        scores = [m for m in SCORES if m in present or ESTIMATES.get(m, "") in present]
        if "f1" in scores and "f1_macro" in scores:
            scores.remove("f1_macro")  # two classes: f1 is the positive class's, as estimated
        performance: list[Series] = []
        for i, metric in enumerate(scores):
            if metric in present:
                performance.append(line(metric, stroke=color(i)))
            estimate = ESTIMATES.get(metric)
            if estimate in present:
                performance.append(line(estimate, dashed=True, stroke=color(i)))
        out.performance = time_chart(
            "performance",
            "Performance: realized (solid) and estimated (dashed)",
            "score",
            performance,
            end=end,
            y_range=(0.0, 1.02),
        )
        out.errors = time_chart(
            "errors",
            "Regression errors (realized)",
            "error",
            [line(k, stroke=color(i)) for i, k in enumerate(m for m in ERRORS if m in present)],
            end=end,
        )

        out.requests = time_chart(
            "operations-requests", "Requests per window", "requests", [line("requests")], end=end
        )
        latency = [
            Series(
                f"p{q}",
                times,
                [_ms(r.values.get(f"p{q}_latency_seconds")) for r in usable],
                dashed=q != 50,
                stroke=color(i),
            )
            for i, q in enumerate((50, 95, 99))
        ]
        out.latency = time_chart("operations-latency", "Latency", "milliseconds", latency, end=end)
        return out


def _value(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _ms(v: Any) -> float | None:
    seconds = _value(v)
    return None if seconds is None else seconds * 1000.0
