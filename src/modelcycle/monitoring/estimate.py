"""A classifier's performance estimated without labels (confidence-based, "CBPE").

Labels often arrive weeks after predictions. If the model's probabilities are calibrated
(among rows scored 0.8, 80 % are positive), the expected confusion matrix of unlabelled
rows follows from the probabilities alone: a row predicted positive with calibrated
probability p is a true positive with probability p and a false positive with 1 − p.
Summing over rows gives expected accuracy, precision, recall, F1; the ROC curve follows
the same way (each row counts p as a positive and 1 − p as a negative), hence ROC AUC.

Calibration is learned on a labelled reference: isotonic regression of the label on the
score (one-vs-rest per class for more than two classes, rows renormalised). The
estimate is only as good as `ASSUMPTIONS`, which every result lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from modelcycle.core.errors import InputDataError, UsageError

ASSUMPTIONS = (
    "no concept drift: the chance of each label given the model's inputs is the same in "
    "the current data as in the reference; only the inputs' distribution may change "
    "(covariate shift)",
    "the scores, calibrated on the reference (isotonic regression), stay calibrated on "
    "the current data: the reference covers the score range the current data uses "
    "(scores beyond it are clipped to its ends)",
    "the reference's labels are right and the reference is large enough to calibrate on "
    "(a few thousand rows per class)",
    "the predicted class is the one with the highest score (two classes: score ≥ 0.5 "
    "for the positive class)",
)
METRICS = ("accuracy", "f1", "roc_auc")


@dataclass
class PerformanceEstimate:
    classes: list[Any]
    rows: int
    estimated: dict[str, float]
    standard_error: dict[str, float]
    reference: dict[str, float]
    realized: dict[str, float] | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    assumptions: tuple[str, ...] = ASSUMPTIONS

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "confidence_based (isotonic calibration on the reference)",
            "classes": [str(c) for c in self.classes],
            "rows": self.rows,
            "estimated": self.estimated,
            "standard_error": self.standard_error,
            "reference": self.reference,
            "realized": self.realized,
            "chunks": self.chunks,
            "assumptions": list(self.assumptions),
        }


def estimate_performance(
    reference: Mapping[str, pl.Series],
    current: Mapping[str, pl.Series],
    *,
    target: str,
    scores: Sequence[str],
    classes: Sequence[Any] | None = None,
    chunk_size: int | None = None,
) -> PerformanceEstimate:
    """Estimate accuracy, F1 and ROC AUC on ``current`` from its ``scores`` columns.

    Two classes: one score column, the positive class's probability (``classes`` =
    [negative, positive], default: the target's sorted values). More: one score column
    per class, in the order of ``classes``. ``current[target]``, when present, gives the
    realized metrics beside the estimates.
    """
    y_ref = reference[target]
    labels = _classes(y_ref, classes, len(scores))
    s_ref = _scores(reference, scores, labels)
    s_cur = _scores(current, scores, labels)
    y_idx = _label_index(y_ref, labels)
    if (y_idx < 0).any():
        raise InputDataError(
            f"the reference's {target!r} has values that are not among the classes {labels}",
            hint="pass classes= in the order of the score columns",
        )
    calibrate = _calibrator(s_ref, y_idx, len(labels))
    p_cur = calibrate(s_cur)
    estimated, errors = _expected(s_cur, p_cur)
    out = PerformanceEstimate(
        classes=list(labels),
        rows=len(s_cur),
        estimated=estimated,
        standard_error=errors,
        reference=_realized(s_ref, y_idx),
    )
    if target in current:
        known = current[target]
        if known.null_count() < len(known):
            idx = _label_index(known, labels)
            keep = idx >= 0
            out.realized = _realized(s_cur[keep], idx[keep])
    if chunk_size:
        for start in range(0, len(s_cur), chunk_size):
            part = slice(start, start + chunk_size)
            est, err = _expected(s_cur[part], p_cur[part])
            out.chunks.append(
                {"start": start, "rows": len(s_cur[part]), "estimated": est, "standard_error": err}
            )
    return out


def _classes(y: pl.Series, classes: Sequence[Any] | None, n_scores: int) -> list[Any]:
    found = sorted(y.drop_nulls().unique().to_list())
    labels = list(classes) if classes is not None else found
    wanted = 2 if n_scores == 1 else n_scores
    if len(labels) != wanted:
        raise UsageError(
            f"{n_scores} score column(s) need {wanted} classes; the target has {len(found)} "
            f"({', '.join(map(str, found[:10]))})",
            hint="one score column (the positive class's probability) for two classes, "
            "else one per class with classes= in the same order",
        )
    return labels


def _scores(frame: Mapping[str, pl.Series], names: Sequence[str], labels: list[Any]) -> Any:
    cols = []
    for name in names:
        values = frame[name].cast(pl.Float64).to_numpy()
        if not np.isfinite(values).all():
            raise InputDataError(
                f"score column {name!r} has missing or non-finite values",
                hint="drop those rows or fill them before estimating",
            )
        cols.append(values)
    matrix = np.column_stack(cols)
    if matrix.shape[1] == 1:  # binary: [P(negative), P(positive)]
        matrix = np.column_stack([1 - matrix[:, 0], matrix[:, 0]])
    return matrix


def _label_index(y: pl.Series, labels: list[Any]) -> Any:
    lookup = {label: i for i, label in enumerate(labels)}
    return np.array([lookup.get(v, -1) for v in y.to_list()], dtype=np.int64)


def _calibrator(scores: Any, y: Any, n_classes: int) -> Any:
    from sklearn.isotonic import IsotonicRegression

    columns = [1] if n_classes == 2 else list(range(n_classes))
    models = {
        c: IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            scores[:, c], (y == c).astype(float)
        )
        for c in columns
    }

    def apply(s: Any) -> Any:
        if n_classes == 2:
            p = models[1].predict(s[:, 1])
            return np.column_stack([1 - p, p])
        p = np.column_stack([models[c].predict(s[:, c]) for c in columns])
        total = p.sum(axis=1, keepdims=True)
        return np.where(total > 0, p / np.where(total > 0, total, 1), 1 / n_classes)

    return apply


def _expected(scores: Any, p: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Expected metrics (and the accuracy's standard error) from calibrated ``p``."""
    n, n_classes = p.shape
    if n == 0:
        return {m: math.nan for m in METRICS}, {"accuracy": math.nan}
    pred = scores.argmax(axis=1)
    correct = p[np.arange(n), pred]
    out = {"accuracy": float(correct.mean())}
    f1s, aucs = [], []
    for c in [1] if n_classes == 2 else range(n_classes):
        chosen = pred == c
        tp = float(p[chosen, c].sum())
        fp = float((1 - p[chosen, c]).sum())
        fn = float(p[~chosen, c].sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else math.nan)
        aucs.append(_soft_auc(scores[:, c], p[:, c]))
    out["f1"] = float(np.mean(f1s))
    out["roc_auc"] = float(np.mean(aucs))
    return out, {"accuracy": float(math.sqrt(float((correct * (1 - correct)).sum())) / n)}


def _soft_auc(score: Any, positive: Any) -> float:
    """ROC AUC with fractional labels: each row is ``positive`` a positive and
    1 − ``positive`` a negative (ties count half)."""
    order = np.argsort(score, kind="stable")
    s, w_pos = score[order], positive[order]
    w_neg = 1 - w_pos
    starts = np.concatenate(([0], np.flatnonzero(s[1:] != s[:-1]) + 1))
    pos_g = np.add.reduceat(w_pos, starts)
    neg_g = np.add.reduceat(w_neg, starts)
    neg_below = np.concatenate(([0.0], np.cumsum(neg_g)[:-1]))
    total = float(pos_g.sum() * neg_g.sum())
    if total == 0:
        return math.nan
    return float((pos_g * (neg_below + neg_g / 2)).sum() / total)


def _realized(scores: Any, y: Any) -> dict[str, float]:
    from sklearn.metrics import f1_score, roc_auc_score

    if len(y) == 0:
        return {m: math.nan for m in METRICS}
    n_classes = scores.shape[1]
    pred = scores.argmax(axis=1)
    out = {"accuracy": float((pred == y).mean())}
    if n_classes == 2:
        out["f1"] = float(f1_score(y, pred, zero_division=0.0))
        auc = roc_auc_score(y, scores[:, 1]) if len(set(y.tolist())) == 2 else math.nan
    else:
        out["f1"] = float(f1_score(y, pred, average="macro", zero_division=0.0))
        present = np.unique(y)
        auc = math.nan
        if len(present) == n_classes:
            norm = scores / scores.sum(axis=1, keepdims=True)
            auc = roc_auc_score(y, norm, multi_class="ovr", average="macro")
    out["roc_auc"] = float(auc)
    return out
