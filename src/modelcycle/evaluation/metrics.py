"""Metrics on arrays of labels, predictions and probabilities: pure functions over numpy.

Every value comes from the scikit-learn function of the same meaning, called on the same
predictions, so a number here equals what scikit-learn reports. Labels are first encoded
as integer positions in ``classes`` (the model's class order, which is also the column
order of ``proba``); the metrics are invariant to that encoding and it makes a million
string labels cheap.

A metric that is undefined on the data (ROC AUC when ``y_true`` holds one class, R² on one
row) is never NaN: it is left out of ``Scores.metrics`` and ``Scores.skipped`` says why.
Nothing here warns: conditions under which scikit-learn would warn are checked first.

Classification keys: ``accuracy``, ``precision_macro``, ``recall_macro``, ``f1_macro``,
``precision_weighted``, ``recall_weighted``, ``f1_weighted``; for two classes also
``precision``, ``recall``, ``f1`` of the positive class ``classes[1]``; with probabilities
``roc_auc``, ``pr_auc`` (average precision), ``log_loss``, ``brier``.
Regression keys: ``mae``, ``mse``, ``rmse``, ``r2``, ``mape``, ``max_error``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from modelcycle.core.errors import UsageError

CLASSIFICATION_METRICS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
)
#: classification metrics that need ``proba``
PROBA_METRICS = frozenset({"roc_auc", "pr_auc", "log_loss", "brier"})
#: classification metrics defined for two classes only (of the positive class)
BINARY_METRICS = frozenset({"precision", "recall", "f1"})
REGRESSION_METRICS = ("mae", "mse", "rmse", "r2", "mape", "max_error")
_LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mae", "mse", "rmse", "mape", "max_error"})

Array = np.ndarray[Any, Any]


def higher_is_better(metric: str) -> bool:
    """True if a larger value of ``metric`` means a better model."""
    return metric not in _LOWER_IS_BETTER


def known_metrics(task: str) -> tuple[str, ...]:
    """Every metric key `score_classification` or `score_regression` may return."""
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


@dataclass(frozen=True)
class Scores:
    """Metric values, and for each metric that could not be computed, the reason."""

    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


# -- classification ------------------------------------------------------------------------


def classification_metrics(
    y_true: Any, y_pred: Any, proba: Any = None, classes: Sequence[Any] | None = None
) -> dict[str, float]:
    """Classification metrics (keys in the module docstring); undefined ones are left out.

    ``classes`` lists the labels in the column order of ``proba``; by default the sorted
    labels found in ``y_true`` and ``y_pred`` (scikit-learn's ``classes_`` order). For two
    classes the positive class is ``classes[1]``.
    """
    return score_classification(y_true, y_pred, proba, classes).metrics


def score_classification(
    y_true: Any,
    y_pred: Any,
    proba: Any = None,
    classes: Sequence[Any] | None = None,
    *,
    only: Collection[str] | None = None,
) -> Scores:
    """Like `classification_metrics`, with the reason for each metric left out.

    ``only`` restricts the work to the named metrics (permutation importance scores one).
    """
    truth = label_array(y_true, "y_true")
    pred = label_array(y_pred, "y_pred")
    if len(truth) != len(pred):
        raise UsageError(
            f"y_true has {len(truth)} rows but y_pred has {len(pred)}",
            hint="predict on the same rows the labels belong to",
        )
    probs = None if proba is None else probabilities(proba, len(truth))
    labels = resolve_classes(truth, pred, classes, None if probs is None else probs.shape[1])
    return score_encoded(
        encode(truth, labels),
        encode(pred, labels),
        probs,
        labels,
        n_known=None if probs is None else probs.shape[1],
        only=only,
    )


def resolve_classes(
    y_true: Array, y_pred: Array, classes: Sequence[Any] | None, n_proba_columns: int | None
) -> list[Any]:
    """The class labels in order: ``classes`` if given (labels seen only in the data are
    appended, sorted), else the sorted labels of ``y_true`` and ``y_pred``."""
    if classes is not None:
        known = [_plain(c) for c in classes]
        if len(set(map(_key, known))) != len(known):
            raise UsageError(f"classes {known!r} lists a label twice", hint="list each class once")
        if n_proba_columns is not None and n_proba_columns != len(known):
            raise UsageError(
                f"proba has {n_proba_columns} columns but {len(known)} classes were given",
                hint="pass the model's classes in the order of its probability columns",
            )
        seen = _unique(np.concatenate([y_true, y_pred]))
        at = pd.Index(known, dtype=object).get_indexer(pd.Index(seen, dtype=object))
        return known + [v for v, i in zip(seen, at, strict=True) if i < 0]
    found = _unique(np.concatenate([y_true, y_pred]))
    if n_proba_columns is not None and n_proba_columns != len(found):
        raise UsageError(
            f"proba has {n_proba_columns} columns but the labels and predictions hold "
            f"{len(found)} classes ({_show(found)}), so the column order is unknown",
            hint="pass classes= in the order of the model's probability columns "
            "(a scikit-learn model's classes_)",
        )
    return found


def encode(values: Array, classes: Sequence[Any]) -> Array:
    """Positions of ``values`` in ``classes`` (every value must be one of them)."""
    codes: Array = pd.Index(list(classes), dtype=object).get_indexer(values.astype(object))
    if len(codes) and codes.min() < 0:
        missing = values[codes < 0][0]
        raise UsageError(f"label {missing!r} is not one of the classes {_show(classes)}")
    return codes.astype(np.int64)


def score_encoded(
    y_true: Array,
    y_pred: Array,
    proba: Array | None,
    classes: Sequence[Any],
    *,
    n_known: int | None = None,
    only: Collection[str] | None = None,
) -> Scores:
    """Classification metrics on labels already encoded as positions in ``classes``.

    ``n_known`` is the number of leading classes ``proba`` has columns for (labels after
    them appear in the data but not in the model).
    """
    wanted = set(CLASSIFICATION_METRICS if only is None else only)
    out = Scores()
    if len(y_true) == 0:
        out.skipped.update(dict.fromkeys(sorted(wanted & set(CLASSIFICATION_METRICS)), "no rows"))
        return out
    k = len(classes)
    labels = list(range(k))
    binary = k == 2

    def put(name: str, compute: Callable[[], float]) -> None:
        if name in wanted:
            _store(out, name, compute)

    put("accuracy", partial(skm.accuracy_score, y_true, y_pred))
    for average in ("macro", "weighted"):
        for name, fn in _PRF.items():
            put(
                f"{name}_{average}",
                partial(fn, y_true, y_pred, labels=labels, average=average, zero_division=0),
            )
    if binary:
        for name, fn in _PRF.items():
            put(name, partial(fn, y_true, y_pred, pos_label=1, average="binary", zero_division=0))
    wanted_proba = wanted & PROBA_METRICS
    if not wanted_proba:
        return out
    reason = _proba_reason(proba, classes, y_true, n_known)
    if reason is not None:
        out.skipped.update(dict.fromkeys(sorted(wanted_proba), reason))
        return out
    assert proba is not None
    unnormalised = _not_normalised(proba)
    present = np.bincount(y_true, minlength=k) > 0
    if binary:
        positive = proba[:, 1]
        is_pos = y_true == 1
        if "roc_auc" in wanted:
            if present.all():
                put("roc_auc", lambda: skm.roc_auc_score(is_pos, positive))
            else:
                out.skipped["roc_auc"] = (
                    f"y_true holds only class {classes[int(present.argmax())]!r}; "
                    "ROC AUC needs rows of both classes"
                )
        if "pr_auc" in wanted:
            if present[1]:
                put("pr_auc", lambda: skm.average_precision_score(is_pos, positive))
            else:
                out.skipped["pr_auc"] = (
                    f"y_true has no rows of the positive class {classes[1]!r}; "
                    "average precision needs at least one"
                )
    else:
        missing = [classes[int(i)] for i in np.flatnonzero(~present)]

        def why(metric: str) -> str:
            more = f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""
            return (
                f"class {missing[0]!r} has no rows in y_true{more}; "
                f"one-vs-rest {metric} needs rows of every class"
            )

        if "roc_auc" in wanted:
            if missing:
                out.skipped["roc_auc"] = why("ROC AUC")
            elif unnormalised:
                out.skipped["roc_auc"] = unnormalised
            else:
                put(
                    "roc_auc",
                    lambda: skm.roc_auc_score(
                        y_true, proba, multi_class="ovr", average="macro", labels=labels
                    ),
                )
        if "pr_auc" in wanted:
            if missing:
                out.skipped["pr_auc"] = why("average precision")
            else:
                put(
                    "pr_auc",
                    lambda: skm.average_precision_score(
                        _one_hot(y_true, k), proba, average="macro"
                    ),
                )
    for name in ("log_loss", "brier"):
        if name in wanted and unnormalised:
            out.skipped[name] = unnormalised
    if unnormalised:
        return out
    put("log_loss", lambda: skm.log_loss(y_true, proba, labels=labels))
    if binary:
        put("brier", lambda: skm.brier_score_loss(y_true, proba[:, 1], pos_label=1))
    else:
        put("brier", lambda: skm.brier_score_loss(y_true, proba, labels=labels))
    return out


_PRF: dict[str, Callable[..., float]] = {
    "precision": skm.precision_score,
    "recall": skm.recall_score,
    "f1": skm.f1_score,
}


def probabilities(proba: Any, n_rows: int) -> Array:
    """``proba`` as a 2-D float array; a 1-D array is the positive class of two."""
    arr = np.asarray(proba)
    if arr.dtype.kind not in "fiub":
        raise UsageError(f"probabilities must be numbers, not {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = np.column_stack([1 - arr, arr])
    if arr.ndim != 2 or arr.shape[0] != n_rows:
        raise UsageError(
            f"probabilities have shape {arr.shape}; expected ({n_rows}, number of classes)",
            hint="predict_proba should return one row per input row, one column per class",
        )
    return arr


def _proba_reason(
    proba: Array | None, classes: Sequence[Any], y_true: Array, n_known: int | None
) -> str | None:
    if proba is None:
        return "no probabilities (the model has no predict_proba)"
    known = proba.shape[1] if n_known is None else n_known
    if known < len(classes):
        return f"the data holds labels the model has no probability for: {_show(classes[known:])}"
    if len(classes) < 2:
        return "probability metrics need at least two classes"
    if not np.isfinite(proba).all():
        row = int(np.flatnonzero(~np.isfinite(proba).all(axis=1))[0])
        return f"probabilities are not finite (first at row {row})"
    if proba.min() < 0 or proba.max() > 1:
        bad = (proba < 0) | (proba > 1)
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        return f"probabilities lie outside [0, 1] (first at row {row})"
    return None


def _not_normalised(proba: Array) -> str | None:
    # Half scikit-learn's own tolerance, so that nothing that passes here makes it warn.
    eps = float(np.finfo(proba.dtype).eps)
    sums = proba.sum(axis=1)
    bad = np.abs(sums - 1) > 0.5 * (1e-8 + math.sqrt(eps))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        return (
            f"probabilities do not sum to one (row {row} sums to {float(sums[row]):.6g}); "
            "log loss and Brier score need probabilities"
        )
    return None


def _one_hot(codes: Array, k: int) -> Array:
    out = np.zeros((len(codes), k), dtype=np.int8)
    out[np.arange(len(codes)), codes] = 1
    return out


# -- regression ----------------------------------------------------------------------------


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Regression metrics: ``mae``, ``mse``, ``rmse``, ``r2``, ``mape``, ``max_error``."""
    return score_regression(y_true, y_pred).metrics


def score_regression(y_true: Any, y_pred: Any, *, only: Collection[str] | None = None) -> Scores:
    """Like `regression_metrics`, with the reason for each metric left out."""
    truth = numbers(y_true, "y_true")
    pred = numbers(y_pred, "y_pred")
    if len(truth) != len(pred):
        raise UsageError(
            f"y_true has {len(truth)} rows but y_pred has {len(pred)}",
            hint="predict on the same rows the targets belong to",
        )
    wanted = set(REGRESSION_METRICS if only is None else only)
    out = Scores()
    if len(truth) == 0:
        out.skipped.update(dict.fromkeys(sorted(wanted & set(REGRESSION_METRICS)), "no rows"))
        return out

    def put(name: str, compute: Callable[[], float]) -> None:
        if name in wanted:
            _store(out, name, compute)

    put("mae", lambda: skm.mean_absolute_error(truth, pred))
    put("mse", lambda: skm.mean_squared_error(truth, pred))
    put("rmse", lambda: skm.root_mean_squared_error(truth, pred))
    if len(truth) < 2:
        if "r2" in wanted:
            out.skipped["r2"] = "R² needs at least two rows"
    else:
        put("r2", lambda: skm.r2_score(truth, pred))
    put("mape", lambda: skm.mean_absolute_percentage_error(truth, pred))
    put("max_error", lambda: skm.max_error(truth, pred))
    return out


def numbers(values: Any, what: str) -> Array:
    """``values`` as a 1-D float array without missing values."""
    arr = _one_dim(values, what)
    if arr.dtype.kind not in "fiub":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise UsageError(
                f"{what} must be numbers for regression metrics: {e}",
                hint="pass task='classification' if the target holds class labels",
            ) from e
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise UsageError(
            f"{what} has {int(bad.sum())} missing or infinite values "
            f"(first at row {int(np.flatnonzero(bad)[0])})",
            hint="drop those rows or fill them before evaluating",
        )
    return arr


# -- helpers -------------------------------------------------------------------------------


def label_array(values: Any, what: str) -> Array:
    """``values`` as a 1-D array of class labels without missing values."""
    arr = _one_dim(values, what)
    missing = pd.isna(arr)
    if missing.any():
        raise UsageError(
            f"{what} has {int(missing.sum())} missing labels "
            f"(first at row {int(np.flatnonzero(missing)[0])})",
            hint="drop rows without a label before evaluating",
        )
    return arr


def _one_dim(values: Any, what: str) -> Array:
    arr: Array
    if isinstance(values, pd.Series | pd.Index):
        arr = values.to_numpy()
    elif hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        arr = np.asarray(values.to_numpy())  # polars Series
    else:
        arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise UsageError(f"{what} must be one value per row; got shape {arr.shape}")
    if isinstance(arr.dtype, pd.api.extensions.ExtensionDtype):
        arr = np.asarray(arr, dtype=object)
    return arr


def _unique(values: Array) -> list[Any]:
    distinct = pd.unique(values.astype(object) if values.dtype.kind in "OUS" else values)
    try:
        found = sorted(_plain(v) for v in distinct)
    except TypeError as e:
        kinds = sorted({type(v).__name__ for v in distinct})
        raise UsageError(
            f"labels mix types that cannot be ordered ({', '.join(kinds)})",
            hint="make labels and predictions the same type, or pass classes=",
        ) from e
    return found


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)


def _show(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "")


def _store(out: Scores, name: str, compute: Callable[[], float]) -> None:
    value = float(compute())
    if math.isfinite(value):
        out.metrics[name] = value
    else:
        out.skipped[name] = f"{name} is not finite on this data ({value})"
