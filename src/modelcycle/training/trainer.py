"""Train a spec as a tracked run: load the data, cross-validate, fit, score, log the model.

Pieces that run elsewhere (a cross-validation fold on a Ray worker, a tuning worker) are
module-level functions over plain data so that they pickle.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelcycle.core.errors import ModelcycleError, NotFoundError, UsageError
from modelcycle.training.spec import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    TrainSpec,
)

if TYPE_CHECKING:
    import pandas as pd

    from modelcycle.data.service import DatasetService
    from modelcycle.store.metadata import VersionRecord
    from modelcycle.tracking.run import ActiveRun
    from modelcycle.tracking.service import RunService

LOWER_IS_BETTER = ("log_loss", "rmse", "mae", "mape")


@dataclass
class Data:
    x: pd.DataFrame
    y: np.ndarray[Any, Any]
    version: VersionRecord


@dataclass
class TrainResult:
    run_id: str
    task: str
    metrics: dict[str, float]
    params: dict[str, Any]
    model: Any = field(repr=False)
    children: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "task": self.task,
            "metrics": {k: (v if math.isfinite(v) else str(v)) for k, v in self.metrics.items()},
            "params": self.params,
            "trials": len(self.children),
        }


# -- data ---------------------------------------------------------------------------------
def load_data(datasets: DatasetService, ref: str, spec: TrainSpec) -> Data:
    version = datasets.resolve(ref)
    if version.kind != "table":
        raise UsageError(
            f"{version.ref} is a file dataset; train specs read tables",
            hint="train on a table version (CSV, Parquet, ...)",
        )
    df = datasets.load(version)
    if spec.target not in df.columns:
        from modelcycle.data.yamlio import suggest

        raise NotFoundError(
            f"{version.ref} has no target column {spec.target!r}{suggest(spec.target, df.columns)}",
            hint=f"its columns are: {', '.join(df.columns)}",
        )
    for col in (*(spec.features or ()), *spec.exclude):
        if col not in df.columns:
            raise NotFoundError(
                f"{version.ref} has no column {col!r} (named in features/exclude)",
                hint=f"its columns are: {', '.join(df.columns)}",
            )
    features = (
        list(spec.features)
        if spec.features
        else [c for c in df.columns if c != spec.target and c not in spec.exclude]
    )
    if not features:
        raise UsageError(f"{version.ref}: no feature columns left", hint="check features/exclude")
    y = df[spec.target]
    if y.null_count():
        raise UsageError(
            f"{version.ref}: the target {spec.target!r} has {y.null_count()} missing values",
            hint="drop or fill them with a recipe before training",
        )
    x = df.select(features).to_pandas()
    for col in x.columns:
        if x[col].dtype == object or str(x[col].dtype) in ("string", "str"):
            x[col] = x[col].astype("category")
    return Data(x, y.to_numpy(), version)


def infer_task(y: np.ndarray[Any, Any]) -> str:
    if y.dtype.kind in "OUSb":
        return "classification"
    if y.dtype.kind in "iu" and len(np.unique(y)) <= 20:
        return "classification"
    return "regression"


# -- estimators -----------------------------------------------------------------------------
def estimator_path(spec: TrainSpec, task: str) -> str:
    """The estimator's class path, with an alias's ``{Task}`` filled in."""
    return spec.estimator.replace(
        "{Task}", "Classifier" if task == "classification" else "Regressor"
    )


def make_estimator(spec: TrainSpec, params: dict[str, Any], task: str, x: pd.DataFrame) -> Any:
    path = estimator_path(spec, task)
    module_name, _, cls_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except ModuleNotFoundError as e:
        extra = {"xgboost": "xgboost", "lightgbm": "lightgbm"}.get(module_name.split(".")[0])
        raise UsageError(
            f"cannot import {path}: {e}",
            hint=f"pip install 'modelcycle[{extra}]'" if extra else "check the class path",
        ) from e
    except AttributeError as e:
        raise UsageError(f"{module_name} has no {cls_name}", hint="check the class path") from e
    accepted = inspect.signature(cls).parameters
    kwargs = dict(params)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    for key in kwargs:
        if key not in accepted and not takes_any:
            from modelcycle.data.yamlio import suggest

            raise UsageError(
                f"{cls_name} takes no parameter {key!r}{suggest(key, accepted)}",
                hint=f"its parameters: {', '.join(accepted)}",
            )
    if "random_state" in accepted and "random_state" not in kwargs:
        kwargs["random_state"] = spec.seed
    if spec.flavor == "xgboost" and "enable_categorical" not in kwargs:
        kwargs["enable_categorical"] = True
    if spec.flavor == "lightgbm" and "verbosity" not in kwargs:
        kwargs["verbosity"] = -1
    try:
        estimator = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UsageError(f"cannot build {cls_name}({kwargs}): {e}", hint="check the params") from e
    categorical = [c for c in x.columns if str(x[c].dtype) == "category"]
    if categorical and spec.flavor == "sklearn":
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        encode = ColumnTransformer(
            [("categories", OneHotEncoder(handle_unknown="ignore"), categorical)],
            remainder="passthrough",
        )
        return make_pipeline(encode, estimator)
    return estimator


# -- metrics --------------------------------------------------------------------------------
def default_metrics(task: str) -> tuple[str, ...]:
    return (
        ("accuracy", "f1_macro", "roc_auc") if task == "classification" else ("rmse", "mae", "r2")
    )


def score(model: Any, metric: str, x: Any, y: np.ndarray[Any, Any], task: str) -> float:
    from sklearn import metrics as m

    if task == "classification" and metric not in CLASSIFICATION_METRICS:
        raise UsageError(f"{metric} is a regression metric; the task is classification", hint="")
    if task == "regression" and metric not in REGRESSION_METRICS:
        raise UsageError(f"{metric} is a classification metric; the task is regression", hint="")
    if metric in ("roc_auc", "log_loss"):
        if not hasattr(model, "predict_proba"):
            return math.nan
        proba = model.predict_proba(x)
        classes = list(model.classes_)
        if metric == "log_loss":
            return float(m.log_loss(y, proba, labels=classes))
        if len(classes) == 2:
            return float(m.roc_auc_score(y, proba[:, 1]))
        if len(set(y.tolist())) < len(classes):
            return math.nan
        return float(m.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    pred = model.predict(x)
    if metric == "accuracy":
        return float(m.accuracy_score(y, pred))
    if metric == "balanced_accuracy":
        return float(m.balanced_accuracy_score(y, pred))
    if metric in ("f1", "precision", "recall"):
        binary = len(np.unique(y)) <= 2
        fn = {"f1": m.f1_score, "precision": m.precision_score, "recall": m.recall_score}[metric]
        average = "binary" if binary else "weighted"
        pos = model.classes_[-1] if binary and hasattr(model, "classes_") else 1
        kwargs: dict[str, Any] = {"average": average, "zero_division": 0}
        if binary:
            kwargs["pos_label"] = pos
        return float(fn(y, pred, **kwargs))
    if metric == "f1_macro":
        return float(m.f1_score(y, pred, average="macro", zero_division=0))
    if metric == "rmse":
        return float(math.sqrt(m.mean_squared_error(y, pred)))
    if metric == "mae":
        return float(m.mean_absolute_error(y, pred))
    if metric == "r2":
        return float(m.r2_score(y, pred))
    if metric == "mape":
        return float(m.mean_absolute_percentage_error(y, pred))
    raise UsageError(f"unknown metric {metric!r}", hint="")


# -- cross-validation -----------------------------------------------------------------------
def folds(y: np.ndarray[Any, Any], k: int, seed: int, task: str) -> list[tuple[Any, Any]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if task == "classification":
        counts = np.unique(y, return_counts=True)[1]
        if counts.min() >= k:
            return list(
                StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
            )
    return list(KFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y))))


def fit_fold(
    spec: TrainSpec,
    params: dict[str, Any],
    task: str,
    x: pd.DataFrame,
    y: np.ndarray[Any, Any],
    train_idx: Any,
    test_idx: Any,
    metrics: Sequence[str],
) -> dict[str, float]:
    """Fit on one fold's training part and score its held-out part (runs anywhere)."""
    model = make_estimator(spec, params, task, x)
    fit(model, x.iloc[train_idx], y[train_idx])
    return {m: score(model, m, x.iloc[test_idx], y[test_idx], task) for m in metrics}


def fit(model: Any, x: Any, y: np.ndarray[Any, Any]) -> None:
    try:
        model.fit(x, y)
    except (ValueError, TypeError, MemoryError, ArithmeticError) as e:
        raise ModelTrainingError(f"{type(model).__name__} failed to train: {e}") from e


class ModelTrainingError(ModelcycleError):
    """The estimator raised while fitting (bad params for the data, degenerate data)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="check the params and the data; the run is marked failed")


# -- one training run -----------------------------------------------------------------------
def train(
    runs: RunService,
    datasets: DatasetService,
    spec: TrainSpec,
    *,
    params: dict[str, Any] | None = None,
    parent: str | None = None,
    map_folds: Callable[..., list[dict[str, float]]] | None = None,
    on_fold: Callable[[int, dict[str, float]], None] | None = None,
    log_model: bool = True,
    data: tuple[Data, Data | None] | None = None,
) -> TrainResult:
    """Train ``spec`` (with ``params`` over the spec's params) as one tracked run."""
    train_data, val_data = data or (
        load_data(datasets, spec.train, spec),
        load_data(datasets, spec.validation, spec) if spec.validation else None,
    )
    task = spec.task or infer_task(train_data.y)
    metrics = spec.metrics or default_metrics(task)
    all_params = {**spec.params, **(params or {})}
    # Bad params fail here, before a run is recorded.
    estimator = make_estimator(spec, all_params, task, train_data.x)
    with runs.start_run(
        spec.experiment,
        name=spec.name if parent is None else None,
        parent=parent,
        tags={
            "estimator": estimator_path(spec, task),
            "task": task,
            "flavor": spec.flavor,
            "target": spec.target,
        },
    ) as run:
        run.log_params({**all_params, "cv": spec.cv, "seed": spec.seed})
        run.log_input(train_data.version, "train")
        if val_data is not None:
            run.log_input(val_data.version, "validation")
        results = _cross_validate(
            spec, all_params, task, train_data, metrics, run, map_folds, on_fold
        )
        model = estimator
        fit(model, train_data.x, train_data.y)
        for m in metrics:
            results[f"train_{m}"] = score(model, m, train_data.x, train_data.y, task)
        if val_data is not None:
            for m in metrics:
                results[f"val_{m}"] = score(model, m, val_data.x, val_data.y, task)
        run.log_metrics(results)
        if log_model:
            run.log_model(model, "model", input_example=train_data.x.head(5))
    return TrainResult(run.id, task, results, all_params, model)


def _cross_validate(
    spec: TrainSpec,
    params: dict[str, Any],
    task: str,
    data: Data,
    metrics: Sequence[str],
    run: ActiveRun,
    map_folds: Callable[..., list[dict[str, float]]] | None,
    on_fold: Callable[[int, dict[str, float]], None] | None,
) -> dict[str, float]:
    if not spec.cv:
        return {}
    splits = folds(data.y, spec.cv, spec.seed, task)
    if map_folds is not None and on_fold is None:
        scores = map_folds(spec, params, task, data.x, data.y, splits, list(metrics))
    else:
        scores = []
        for i, (tr, te) in enumerate(splits):
            fold_scores = fit_fold(spec, params, task, data.x, data.y, tr, te, metrics)
            scores.append(fold_scores)
            if on_fold is not None:
                on_fold(i, fold_scores)
    out: dict[str, float] = {}
    for i, s in enumerate(scores):
        for m, v in s.items():
            run.log_metric(f"cv_{m}", v, step=i)
    for m in metrics:
        values = np.array([s[m] for s in scores], dtype=float)
        out[f"cv_{m}_mean"] = float(np.nanmean(values)) if not np.isnan(values).all() else math.nan
        out[f"cv_{m}_std"] = float(np.nanstd(values)) if not np.isnan(values).all() else math.nan
    return out
