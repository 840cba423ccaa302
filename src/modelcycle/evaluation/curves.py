"""Curves for plots, computed on every row and thinned to a few hundred points.

A curve is a plain dict of lists of floats so it stores as JSON. Thinning keeps points
evenly spaced along the curve's length, so corners survive and a million-row ROC curve
draws the same as the full one while staying a few kilobytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

Array = np.ndarray[Any, Any]

MAX_CURVE_POINTS = 200
MAX_SCATTER_POINTS = 500
CALIBRATION_BINS = 10
HISTOGRAM_BINS = 40
#: multiclass curves are drawn for at most this many classes (the most frequent)
MAX_CURVE_CLASSES = 10
_DIGITS = 6


def thin(x: Array, y: Array, max_points: int = MAX_CURVE_POINTS) -> Array:
    """Indices of at most ``max_points`` points spread evenly along the path (x, y)."""
    n = len(x)
    if n <= max_points:
        return np.arange(n)
    step = np.hypot(np.diff(x), np.diff(y))
    length = np.concatenate([[0.0], np.cumsum(step)])
    if length[-1] == 0:
        return np.array([0, n - 1])
    targets = np.linspace(0.0, length[-1], max_points)
    picked = np.searchsorted(length, targets, side="left").clip(0, n - 1)
    return np.unique(np.concatenate([[0], picked, [n - 1]]))


def curve_classes(y_true: Array, n_classes: int) -> list[int]:
    """Positions of the classes to draw curves for: the positive one of two, else the most
    frequent present classes (both of their rows and of other rows are needed)."""
    counts = np.bincount(y_true, minlength=n_classes)
    drawable = (counts > 0) & (counts < len(y_true))
    if n_classes == 2:
        return [1] if drawable[1] else []
    order = np.argsort(-counts, kind="stable")
    return sorted(int(i) for i in order[:MAX_CURVE_CLASSES] if drawable[i])


def roc_curves(
    y_true: Array, proba: Array, classes: Sequence[Any], shown: Sequence[int]
) -> list[dict[str, Any]]:
    """One ROC curve per class in ``shown`` (one-vs-rest), with its AUC."""
    out = []
    for i in shown:
        fpr, tpr, _ = skm.roc_curve(y_true == i, proba[:, i])
        keep = thin(fpr, tpr)
        out.append(
            {
                "label": classes[i],
                "auc": float(skm.auc(fpr, tpr)),
                "fpr": _round(fpr[keep]),
                "tpr": _round(tpr[keep]),
            }
        )
    return out


def pr_curves(
    y_true: Array, proba: Array, classes: Sequence[Any], shown: Sequence[int]
) -> list[dict[str, Any]]:
    """One precision-recall curve per class in ``shown``, with its average precision and
    the share of positives (a random model's precision)."""
    out = []
    for i in shown:
        positive = y_true == i
        precision, recall, _ = skm.precision_recall_curve(
            positive, proba[:, i], drop_intermediate=True
        )
        keep = thin(recall, precision)
        out.append(
            {
                "label": classes[i],
                "average_precision": float(skm.average_precision_score(positive, proba[:, i])),
                "prevalence": float(positive.mean()),
                "recall": _round(recall[keep]),
                "precision": _round(precision[keep]),
            }
        )
    return out


def calibration_curves(
    y_true: Array,
    proba: Array,
    classes: Sequence[Any],
    shown: Sequence[int],
    n_bins: int = CALIBRATION_BINS,
) -> list[dict[str, Any]]:
    """Reliability diagram data per class in ``shown``: for each non-empty bin of equal
    width, the mean predicted probability, the fraction of positives and the row count.
    Bins match ``sklearn.calibration.calibration_curve(strategy="uniform")``."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = []
    for i in shown:
        p = proba[:, i].astype(np.float64)
        ids = np.searchsorted(edges[1:-1], p)
        total = np.bincount(ids, minlength=n_bins)
        sums = np.bincount(ids, weights=p, minlength=n_bins)
        hits = np.bincount(ids, weights=(y_true == i).astype(np.float64), minlength=n_bins)
        full = total > 0
        out.append(
            {
                "label": classes[i],
                "mean_predicted": _round(sums[full] / total[full]),
                "fraction_positive": _round(hits[full] / total[full]),
                "count": [int(c) for c in total[full]],
            }
        )
    return out


def residual_histogram(
    y_true: Array, y_pred: Array, n_bins: int = HISTOGRAM_BINS
) -> dict[str, Any]:
    """Histogram of residuals (actual − predicted). Its range covers the middle 99.8% of
    residuals so a few outliers do not flatten it; ``below``/``above`` count the rest."""
    residuals = y_true - y_pred
    low, high = (float(v) for v in np.quantile(residuals, [0.001, 0.999]))
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(residuals, bins=n_bins, range=(low, high))
    return {
        "edges": _round(edges),
        "counts": [int(c) for c in counts],
        "below": int((residuals < low).sum()),
        "above": int((residuals > high).sum()),
        "mean": float(residuals.mean()),
        "std": float(residuals.std()),
    }


def scatter_sample(
    y_true: Array, y_pred: Array, seed: int, max_points: int = MAX_SCATTER_POINTS
) -> dict[str, Any]:
    """A seeded random sample of (actual, predicted) pairs for a scatter plot."""
    n = len(y_true)
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    return {"actual": _round(y_true[rows]), "predicted": _round(y_pred[rows]), "n_rows": n}


def _round(values: Array) -> list[float]:
    return [float(f"{v:.{_DIGITS}g}") for v in values.tolist()]
