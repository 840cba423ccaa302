"""Evaluate a model's predictions on a table: metrics, curves, slices, feature importance.

`evaluate` calls the model once for predictions (and once for probabilities), then
computes everything from those arrays; only permutation importance calls it again, on a
seeded sample. The result is plain data (`EvaluationResult.to_dict` is JSON) so it can be
stored and compared without recomputing.

Metrics are never NaN: a metric undefined on the data is absent from ``metrics`` and
``skipped`` maps its name to the reason. The same holds in each slice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.evaluation import curves as cv
from modelcycle.evaluation.importance import permutation_importance
from modelcycle.evaluation.metrics import (
    BINARY_METRICS,
    CLASSIFICATION_METRICS,
    PROBA_METRICS,
    REGRESSION_METRICS,
    Scores,
    encode,
    higher_is_better,
    label_array,
    numbers,
    probabilities,
    resolve_classes,
    score_encoded,
    score_regression,
)
from modelcycle.evaluation.slices import SliceSpec, slice_groups

__all__ = ["FORMAT", "EvaluationResult", "SliceSpec", "evaluate", "infer_task"]

#: version of the `EvaluationResult.to_dict` layout
FORMAT = 1
CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)
#: integer targets with at most this many distinct values count as class labels
MAX_INFERRED_CLASSES = 20

Array = np.ndarray[Any, Any]


@dataclass
class EvaluationResult:
    """Everything an evaluation computed, as JSON-ready data.

    ``metrics`` holds finite floats only; ``skipped`` says why any metric is missing.
    ``curves`` keys: ``roc``, ``pr``, ``calibration`` (lists, one entry per drawn class;
    for two classes only the positive class ``classes[1]``) for classification with
    probabilities; ``residuals`` and ``predicted_vs_actual`` for regression.
    ``slices`` entries: ``{"slice", "kind", "value", "n", "metrics", "skipped"}``; a filter
    slice's value is the filter text.
    """

    task: str
    n_rows: int
    metrics: dict[str, float]
    classes: list[Any] | None
    confusion_matrix: list[list[int]] | None
    curves: dict[str, Any]
    importance: list[dict[str, Any]]
    slices: list[dict[str, Any]]
    skipped: dict[str, str] = field(default_factory=dict)
    #: the metric importance is measured with and gates compare first
    primary_metric: str | None = None
    #: the metric importance was measured with (the primary one unless undefined on the sample)
    importance_metric: str | None = None
    #: rows importance was computed on
    importance_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (`from_dict` reads it back)."""
        out = asdict(self)
        out["format"] = FORMAT
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        """Read what `to_dict` wrote (possibly by an older modelcycle)."""
        fmt = data.get("format")
        if not isinstance(fmt, int):
            raise InputDataError("the stored evaluation has no format number")
        if fmt > FORMAT:
            raise UsageError(
                f"the evaluation was stored in format {fmt}; this modelcycle reads up to {FORMAT}",
                hint="upgrade modelcycle: pip install -U modelcycle",
            )
        try:
            task = str(data["task"])
            n_rows = int(data["n_rows"])
            metrics = {str(k): float(v) for k, v in data["metrics"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputDataError(f"the stored evaluation is malformed: {e!r}") from e
        matrix = data.get("confusion_matrix")
        return cls(
            task=task,
            n_rows=n_rows,
            metrics=metrics,
            classes=None if data.get("classes") is None else list(data["classes"]),
            confusion_matrix=None if matrix is None else [[int(v) for v in r] for r in matrix],
            curves=dict(data.get("curves") or {}),
            importance=[dict(r) for r in data.get("importance") or []],
            slices=[dict(s) for s in data.get("slices") or []],
            skipped={str(k): str(v) for k, v in (data.get("skipped") or {}).items()},
            primary_metric=data.get("primary_metric"),
            importance_metric=data.get("importance_metric"),
            importance_rows=int(data.get("importance_rows") or 0),
            notes=[str(n) for n in data.get("notes") or []],
        )


def infer_task(y: Any, has_proba: bool, *, y_pred: Any = None) -> str:
    """``"classification"`` or ``"regression"`` for the target ``y``.

    Classification when the model has probabilities, or ``y`` holds strings, booleans or
    categories, or whole numbers with at most `MAX_INFERRED_CLASSES` distinct values (and
    the predictions, if given, are whole numbers too); otherwise regression.
    """
    if has_proba:
        return CLASSIFICATION
    arr = _column(y)
    if arr.dtype.kind not in "iuf":
        return CLASSIFICATION
    if not _whole(arr) or (y_pred is not None and not _whole(_column(y_pred))):
        return REGRESSION
    return CLASSIFICATION if len(pd.unique(arr)) <= MAX_INFERRED_CLASSES else REGRESSION


def evaluate(
    predict: Callable[[pd.DataFrame], Any],
    X: pd.DataFrame,
    y: Any,
    *,
    predict_proba: Callable[[pd.DataFrame], Any] | None = None,
    task: str | None = None,
    classes: Sequence[Any] | None = None,
    slices: Sequence[SliceSpec] = (),
    slice_frame: pd.DataFrame | None = None,
    importance: bool = True,
    importance_rows: int = 5000,
    importance_repeats: int = 5,
    primary_metric: str | None = None,
    seed: int = 0,
) -> EvaluationResult:
    """Evaluate ``predict`` (and ``predict_proba``) on features ``X`` against targets ``y``.

    ``classes`` is the model's class order, the column order of ``predict_proba`` (a
    scikit-learn model's ``classes_``); by default the sorted labels of ``y`` and the
    predictions. ``slices`` may use the columns of ``X`` and of ``slice_frame`` (same rows,
    e.g. columns the model does not take). Permutation importance shuffles each column of
    ``X`` on a seeded sample of ``importance_rows`` rows, ``importance_repeats`` times, and
    measures the drop of ``primary_metric`` (default: ``roc_auc`` when there are
    probabilities, else ``accuracy``; ``r2`` for regression).
    """
    frame = _frame(X)
    n = len(frame)
    if n == 0:
        raise UsageError("there are no rows to evaluate on", hint="pass a non-empty table")
    if importance_rows < 2 or importance_repeats < 1:
        raise UsageError(
            "importance_rows must be at least 2 and importance_repeats at least 1",
            hint="the defaults are 5000 rows and 5 repeats",
        )
    frames = [frame]
    if slice_frame is not None:
        if len(slice_frame) != n:
            raise UsageError(
                f"slice_frame has {len(slice_frame)} rows but the features have {n}",
                hint="pass the columns of the same rows",
            )
        frames = [slice_frame.reset_index(drop=True), frame]
    if task is not None and task not in TASKS:
        raise UsageError(f"unknown task {task!r}", hint="use 'classification' or 'regression'")
    y_arr = _column(y)
    if len(y_arr) != n:
        raise UsageError(
            f"y has {len(y_arr)} values but X has {n} rows", hint="pass one target per row"
        )
    y_pred = _predictions(predict(frame), n, "predict")
    if task is None:
        task = infer_task(y_arr, predict_proba is not None, y_pred=y_pred)
    if task == CLASSIFICATION:
        return _ClassificationRun(frame, y_arr, y_pred, predict, predict_proba, classes, seed).run(
            frames, slices, importance, importance_rows, importance_repeats, primary_metric
        )
    return _RegressionRun(frame, y_arr, y_pred, predict, seed).run(
        frames, slices, importance, importance_rows, importance_repeats, primary_metric
    )


class _Run(ABC):
    """What the two tasks share: slices, importance and assembling the result."""

    task: ClassVar[str]
    #: the metric importance falls back to; defined on any non-empty sample
    fallback_metric: ClassVar[str]
    frame: pd.DataFrame
    seed: int
    notes: list[str]

    @abstractmethod
    def scores(self, rows: Array | None) -> Scores:
        """Metrics on all rows, or on the rows at positions ``rows``."""

    @abstractmethod
    def default_metric(self, scores: Scores) -> str:
        """The primary metric when none is asked for, given the scores on all rows."""

    @abstractmethod
    def allowed_metrics(self) -> tuple[str, ...]:
        """Metrics that may be asked for as the primary metric."""

    @abstractmethod
    def importance_scorer(
        self, metric: str, rows: Array
    ) -> tuple[Callable[[pd.DataFrame], Array], Callable[[Array], Scores]]:
        """A predict function and a scorer of its output against the targets at ``rows``."""

    @abstractmethod
    def details(self) -> dict[str, Any]:
        """The task's fields of the result: classes, confusion matrix, curves."""

    def run(
        self,
        frames: Sequence[pd.DataFrame],
        slices: Sequence[SliceSpec],
        importance: bool,
        importance_rows: int,
        importance_repeats: int,
        primary_metric: str | None,
    ) -> EvaluationResult:
        overall = self.scores(None)
        allowed = self.allowed_metrics()
        if primary_metric is not None and primary_metric not in allowed:
            raise UsageError(
                f"{primary_metric!r} is not a {self.task} metric here",
                hint=f"choose one of: {', '.join(allowed)}",
            )
        primary = primary_metric or self.default_metric(overall)
        n = len(self.frame)
        sliced = [
            self.slice_row(spec, value, rows)
            for spec in slices
            for value, rows in slice_groups(spec, frames, n)
        ]
        ranking: list[dict[str, Any]] = []
        used: str | None = None
        sample_size = 0
        if importance and len(self.frame.columns):
            ranking, used, sample_size = self.importance(
                primary, importance_rows, importance_repeats
            )
        details = self.details()  # before `notes` is read: it may add to them
        return EvaluationResult(
            task=self.task,
            n_rows=n,
            metrics=overall.metrics,
            skipped=overall.skipped,
            primary_metric=primary,
            importance=ranking,
            importance_metric=used,
            importance_rows=sample_size,
            slices=sliced,
            notes=list(self.notes),
            **details,
        )

    def slice_row(self, spec: SliceSpec, value: Any, rows: Array) -> dict[str, Any]:
        got = self.scores(rows)
        return {
            "slice": spec.label,
            "kind": spec.kind,
            "value": value,
            "n": len(rows),
            "metrics": got.metrics,
            "skipped": got.skipped,
        }

    def importance(
        self, primary: str, max_rows: int, repeats: int
    ) -> tuple[list[dict[str, Any]], str, int]:
        n = len(self.frame)
        rng = np.random.default_rng(self.seed)
        rows = (
            np.sort(rng.choice(n, size=max_rows, replace=False)) if n > max_rows else np.arange(n)
        )
        metric = primary
        predict, scorer = self.importance_scorer(metric, rows)
        sample = self.frame.iloc[rows].reset_index(drop=True)
        on_sample = scorer(predict(sample))
        if metric not in on_sample.metrics:
            why = on_sample.skipped.get(metric, "undefined")
            self.notes.append(
                f"importance uses {self.fallback_metric}: {metric} is undefined on the "
                f"{len(rows)}-row sample ({why})"
            )
            metric = self.fallback_metric
            predict, scorer = self.importance_scorer(metric, rows)

        def score(predictions: Array) -> float:
            got = scorer(predictions)
            if metric not in got.metrics:
                raise UsageError(
                    f"permutation importance: {metric} became undefined after shuffling a "
                    f"column ({got.skipped.get(metric, 'no reason given')})",
                    hint="pass importance=False or another primary_metric",
                )
            return got.metrics[metric]

        ranking = permutation_importance(
            predict,
            score,
            sample,
            repeats=repeats,
            rng=rng,
            higher_is_better=higher_is_better(metric),
        )
        return ranking, metric, len(rows)


class _ClassificationRun(_Run):
    task = CLASSIFICATION
    fallback_metric = "accuracy"

    def __init__(
        self,
        frame: pd.DataFrame,
        y: Array,
        y_pred: Array,
        predict: Callable[[pd.DataFrame], Any],
        predict_proba: Callable[[pd.DataFrame], Any] | None,
        classes: Sequence[Any] | None,
        seed: int,
    ) -> None:
        self.frame, self.seed, self.notes = frame, seed, []
        self.predict_fn, self.proba_fn = predict, predict_proba
        n = len(frame)
        truth = label_array(y, "y")
        pred = label_array(y_pred, "the predictions")
        self.proba = None
        if predict_proba is not None:
            self.proba = probabilities(_array(predict_proba(frame)), n)
        #: classes ``proba`` has columns for (labels only in the data come after them)
        self.n_known = None if self.proba is None else self.proba.shape[1]
        self.classes = resolve_classes(truth, pred, classes, self.n_known)
        self.y = encode(truth, self.classes)
        self.y_pred = encode(pred, self.classes)

    def scores(self, rows: Array | None) -> Scores:
        if rows is None:
            return score_encoded(
                self.y, self.y_pred, self.proba, self.classes, n_known=self.n_known
            )
        return score_encoded(
            self.y[rows],
            self.y_pred[rows],
            None if self.proba is None else self.proba[rows],
            self.classes,
            n_known=self.n_known,
        )

    def allowed_metrics(self) -> tuple[str, ...]:
        allowed = [
            m
            for m in CLASSIFICATION_METRICS
            if (self.proba is not None or m not in PROBA_METRICS)
            and (len(self.classes) == 2 or m not in BINARY_METRICS)
        ]
        return tuple(allowed)

    def default_metric(self, scores: Scores) -> str:
        if "roc_auc" in scores.metrics:
            return "roc_auc"
        return "accuracy"

    def importance_scorer(
        self, metric: str, rows: Array
    ) -> tuple[Callable[[pd.DataFrame], Array], Callable[[Array], Scores]]:
        truth = self.y[rows]
        if metric in PROBA_METRICS:
            proba_fn = self.proba_fn
            assert proba_fn is not None
            labels = self.y_pred[rows]
            n_known = self.n_known

            def predict_proba(data: pd.DataFrame) -> Array:
                return probabilities(_array(proba_fn(data)), len(data))

            def score_proba(proba: Array) -> Scores:
                return score_encoded(
                    truth, labels, proba, self.classes, n_known=n_known, only={metric}
                )

            return predict_proba, score_proba

        def predict_codes(data: pd.DataFrame) -> Array:
            labels = label_array(
                _predictions(self.predict_fn(data), len(data), "predict"), "the predictions"
            )
            return encode(labels, self.classes)

        def score_labels(codes: Array) -> Scores:
            return score_encoded(truth, codes, None, self.classes, only={metric})

        return predict_codes, score_labels

    def details(self) -> dict[str, Any]:
        k = len(self.classes)
        matrix = skm.confusion_matrix(self.y, self.y_pred, labels=list(range(k)))
        curves: dict[str, Any] = {}
        proba = self.proba
        usable = proba is not None and proba.shape[1] == k and k >= 2
        if usable and proba is not None:
            finite = bool(np.isfinite(proba).all())
            shown = cv.curve_classes(self.y, k) if finite else []
            labels = [_json_label(c) for c in self.classes]
            if shown:
                curves["roc"] = cv.roc_curves(self.y, proba, labels, shown)
                curves["pr"] = cv.pr_curves(self.y, proba, labels, shown)
                if proba.min() >= 0 and proba.max() <= 1:
                    curves["calibration"] = cv.calibration_curves(self.y, proba, labels, shown)
            if not shown:
                self.notes.append(
                    "no ROC, PR or calibration curves: they need rows in and out of a class"
                )
            elif k > 2 and len(shown) < k:
                self.notes.append(
                    f"curves show {len(shown)} of {k} classes (the most frequent that have "
                    "rows both in and out of the class)"
                )
        return {
            "classes": [_json_label(c) for c in self.classes],
            "confusion_matrix": matrix.astype(int).tolist(),
            "curves": curves,
        }


class _RegressionRun(_Run):
    task = REGRESSION
    fallback_metric = "rmse"

    def __init__(
        self,
        frame: pd.DataFrame,
        y: Array,
        y_pred: Array,
        predict: Callable[[pd.DataFrame], Any],
        seed: int,
    ) -> None:
        self.frame, self.seed, self.notes = frame, seed, []
        self.predict_fn = predict
        self.y = numbers(y, "y")
        self.y_pred = numbers(y_pred, "the predictions")

    def scores(self, rows: Array | None) -> Scores:
        if rows is None:
            return score_regression(self.y, self.y_pred)
        return score_regression(self.y[rows], self.y_pred[rows])

    def allowed_metrics(self) -> tuple[str, ...]:
        return REGRESSION_METRICS

    def default_metric(self, scores: Scores) -> str:
        return "r2" if "r2" in scores.metrics else "rmse"

    def importance_scorer(
        self, metric: str, rows: Array
    ) -> tuple[Callable[[pd.DataFrame], Array], Callable[[Array], Scores]]:
        truth = self.y[rows]

        def predict_numbers(data: pd.DataFrame) -> Array:
            return numbers(
                _predictions(self.predict_fn(data), len(data), "predict"), "the predictions"
            )

        def score(pred: Array) -> Scores:
            return score_regression(truth, pred, only={metric})

        return predict_numbers, score

    def details(self) -> dict[str, Any]:
        return {
            "classes": None,
            "confusion_matrix": None,
            "curves": {
                "residuals": cv.residual_histogram(self.y, self.y_pred),
                "predicted_vs_actual": cv.scatter_sample(self.y, self.y_pred, self.seed),
            },
        }


# -- input shapes --------------------------------------------------------------------------


def _frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X.reset_index(drop=True)
    to_pandas = getattr(X, "to_pandas", None)
    if callable(to_pandas):
        converted = to_pandas()
        if isinstance(converted, pd.DataFrame):
            return converted
    raise UsageError(
        f"X must be a pandas DataFrame, not {type(X).__name__}",
        hint="pass the feature columns as a DataFrame",
    )


def _array(values: Any) -> Array:
    if isinstance(values, pd.DataFrame | pd.Series):
        return values.to_numpy()
    to_numpy = getattr(values, "to_numpy", None)
    if callable(to_numpy) and not isinstance(values, np.ndarray):
        return np.asarray(to_numpy())
    return np.asarray(values)


def _column(values: Any) -> Array:
    arr = _array(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise UsageError(f"the target must be one value per row; got shape {arr.shape}")
    return arr


def _predictions(values: Any, n: int, what: str) -> Array:
    arr = _column(values)
    if len(arr) != n:
        raise UsageError(
            f"{what} returned {len(arr)} values for {n} rows",
            hint="the model must return one prediction per input row",
        )
    return arr


def _whole(arr: Array) -> bool:
    if arr.dtype.kind in "iub":
        return True
    if arr.dtype.kind != "f":
        return False
    finite = arr[np.isfinite(arr)]
    return bool(np.all(finite == np.round(finite)))


def _json_label(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
