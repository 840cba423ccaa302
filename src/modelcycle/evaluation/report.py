"""The evaluation report: one self-contained HTML file.

Styles are inline, plots are inline SVG (`modelcycle.evaluation.plots`), there are no
scripts and no links to fetch anything, so the file opens offline and can be mailed or
stored as an artifact. Its size depends on the number of classes, features and slices,
not on the number of rows: curves are thinned when they are computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jinja2
from markupsafe import Markup

from modelcycle.evaluation import plots
from modelcycle.evaluation.engine import EvaluationResult
from modelcycle.evaluation.metrics import higher_is_better, known_metrics

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("modelcycle.evaluation", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

METRIC_NAMES = {
    "accuracy": "Accuracy",
    "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)",
    "f1_macro": "F1 (macro)",
    "precision_weighted": "Precision (weighted)",
    "recall_weighted": "Recall (weighted)",
    "f1_weighted": "F1 (weighted)",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC (average precision)",
    "log_loss": "Log loss",
    "brier": "Brier score",
    "mae": "MAE",
    "mse": "MSE",
    "rmse": "RMSE",
    "r2": "R²",
    "mape": "MAPE",
    "max_error": "Max error",
}
FIGURE_TITLES = {
    "roc": "ROC curve",
    "pr": "Precision–recall curve",
    "confusion": "Confusion matrix",
    "calibration": "Calibration (reliability diagram)",
    "residuals": "Residuals",
    "predicted-vs-actual": "Predicted vs actual",
}
#: metrics shown as columns of the slices table, after the primary one
_SLICE_COLUMNS = {
    "classification": ("accuracy", "f1_macro", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


def render_report(
    result: EvaluationResult,
    *,
    title: str,
    model_ref: str,
    dataset_ref: str,
    created_at: str | None = None,
    champion: tuple[str, EvaluationResult] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The HTML report of ``result``; ``champion`` adds a column of its metrics and deltas
    (and its curves for binary classification); ``extra`` adds rows to the details table."""
    champ_ref, champ = champion if champion is not None else (None, None)
    curves = result.curves
    champ_curves = champ.curves if champ is not None and champ.task == result.task else {}
    figures: list[dict[str, Any]] = []

    def figure(name: str, svg: Markup, caption: str = "") -> None:
        figures.append(
            {"name": name, "heading": FIGURE_TITLES[name], "svg": svg, "caption": caption}
        )

    if result.task == "classification":
        if curves.get("roc"):
            positive = _positive(curves["roc"])
            figure("roc", plots.roc_plot(curves["roc"], champ_curves.get("roc")), positive)
        if curves.get("pr"):
            figure(
                "pr", plots.pr_plot(curves["pr"], champ_curves.get("pr")), _positive(curves["pr"])
            )
        if result.classes and result.confusion_matrix:
            cut = plots.matrix_is_cut(result.confusion_matrix)
            figure(
                "confusion",
                plots.confusion_plot(result.classes, result.confusion_matrix),
                f"the {plots.MAX_MATRIX_CLASSES} most frequent of {len(result.classes)} classes; "
                "shading is the share of each true class"
                if cut
                else "shading is the share of each true class (row)",
            )
        if curves.get("calibration"):
            figure(
                "calibration",
                plots.calibration_plot(curves["calibration"]),
                "10 equal-width bins of predicted probability",
            )
    else:
        if "residuals" in curves:
            hist = curves["residuals"]
            outside = hist.get("below", 0) + hist.get("above", 0)
            figure(
                "residuals",
                plots.residuals_plot(hist),
                f"mean {fmt(hist['mean'])}, std {fmt(hist['std'])}"
                + (f"; {outside:,} outlying rows beyond the axis" if outside else ""),
            )
        if "predicted_vs_actual" in curves:
            sample = curves["predicted_vs_actual"]
            shown = len(sample["actual"])
            figure(
                "predicted-vs-actual",
                plots.scatter_plot(sample),
                f"{shown:,} of {sample['n_rows']:,} rows"
                + (", sampled at random" if shown < sample["n_rows"] else ""),
            )
    importance_svg = None
    if result.importance:
        importance_svg = plots.importance_plot(
            result.importance, metric_name(result.importance_metric or "score")
        )
    return _ENV.get_template("report.html").render(
        title=title,
        model_ref=model_ref,
        dataset_ref=dataset_ref,
        created_at=created_at,
        result=result,
        headline=_headline(result),
        metric_rows=_metric_rows(result, champ),
        champion_ref=champ_ref,
        figures=figures,
        importance_svg=importance_svg,
        importance_rows=result.importance[:200],
        importance_cut=len(result.importance) > 200,
        bars_cut=len(result.importance) > plots.MAX_IMPORTANCE_BARS,
        max_bars=plots.MAX_IMPORTANCE_BARS,
        slice_columns=_slice_columns(result),
        slice_rows=_slice_rows(result),
        extra=[(str(k), _text(v)) for k, v in (extra or {}).items()],
        fmt=fmt,
        name_of=metric_name,
    )


def fmt(value: float | None) -> str:
    """A metric value for people: four decimals, thousands separators, no NaN."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.1f}"
    if magnitude >= 0.01:
        return f"{value:.4f}"
    return f"{value:.3g}"


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, key)


def _headline(result: EvaluationResult) -> list[dict[str, Any]]:
    keys = [result.primary_metric] if result.primary_metric else []
    if result.task == "classification":
        keys += ["accuracy", "f1_macro", "roc_auc", "log_loss"]
    else:
        keys += ["rmse", "mae", "r2"]
    seen: list[str] = []
    for key in keys:
        if key and key in result.metrics and key not in seen:
            seen.append(key)
    return [{"key": k, "name": metric_name(k), "value": fmt(result.metrics[k])} for k in seen[:4]]


def _metric_rows(
    result: EvaluationResult, champion: EvaluationResult | None
) -> list[dict[str, Any]]:
    order = list(known_metrics(result.task))
    keys = [k for k in order if k in result.metrics or k in result.skipped]
    keys += [k for k in result.metrics if k not in keys]
    rows = []
    for key in keys:
        value = result.metrics.get(key)
        other = None if champion is None else champion.metrics.get(key)
        delta = None if value is None or other is None else value - other
        verdict = ""
        if delta is not None and delta != 0:
            better = (delta > 0) == higher_is_better(key)
            verdict = "better" if better else "worse"
        rows.append(
            {
                "key": key,
                "name": metric_name(key),
                "value": fmt(value),
                "why": result.skipped.get(key, ""),
                "champion": fmt(other),
                "delta": "" if delta is None else f"{delta:+.4g}",
                "verdict": verdict,
                "primary": key == result.primary_metric,
            }
        )
    return rows


def _slice_columns(result: EvaluationResult) -> list[str]:
    columns = [result.primary_metric] if result.primary_metric else []
    for key in _SLICE_COLUMNS.get(result.task, ()):
        if key not in columns and any(key in s.get("metrics", {}) for s in result.slices):
            columns.append(key)
    return [c for c in columns if c]


def _slice_rows(result: EvaluationResult) -> list[dict[str, Any]]:
    columns = _slice_columns(result)
    primary = result.primary_metric
    overall = result.metrics.get(primary) if primary else None
    rows = []
    for entry in result.slices:
        values = entry.get("metrics", {})
        skipped = entry.get("skipped", {})
        cells = [
            {"value": fmt(values.get(c)), "why": skipped.get(c, "") if c not in values else ""}
            for c in columns
        ]
        delta, verdict = "", ""
        mine = values.get(primary) if primary else None
        if primary and mine is not None and overall is not None:
            diff = mine - overall
            delta = f"{diff:+.4f}" if abs(diff) >= 1e-4 or diff == 0 else f"{diff:+.2g}"
            if diff:
                verdict = "better" if (diff > 0) == higher_is_better(primary) else "worse"
        rows.append(
            {
                "slice": _slice_label(entry),
                "kind": str(entry.get("kind", "")),
                "value": _text(entry.get("value")),
                "n": int(entry.get("n", 0)),
                "cells": cells,
                "delta": delta,
                "verdict": verdict,
            }
        )
    return rows


def _slice_label(entry: Mapping[str, Any]) -> str:
    label = str(entry.get("slice", ""))
    # an unnamed filter slice is labelled by its text, which the value column shows
    if entry.get("kind") == "filter" and label == _text(entry.get("value")):
        return "filter"
    return label


def _positive(curves: list[dict[str, Any]]) -> str:
    return f"positive class: {curves[0]['label']}" if len(curves) == 1 else "each class vs rest"


def _text(value: Any) -> str:
    return "" if value is None else str(value)
