"""The train spec: what ``modelcycle train spec.yaml`` trains, on which data, how it is
scored and (optionally) tuned.

.. code-block:: yaml

    experiment: cancer
    data: {train: cancer-train@1, validation: cancer-validation@1}
    target: target
    exclude: [id]                  # or features: [a, b, c]
    model:
      estimator: random_forest     # an alias, or a class path sklearn.ensemble.RandomForestClassifier
      params: {n_estimators: 200}
    metrics: [accuracy, f1, roc_auc]
    cv: 5
    seed: 0
    search:                        # optional: tune with Optuna, each trial a child run
      trials: 20
      metric: roc_auc              # cross-validated; maximized unless direction: minimize
      space:
        n_estimators: {int: [50, 400], log: true}
        max_depth: {int: [2, 16]}
        max_features: {choice: [sqrt, log2]}
    executor: local                # or ray, or ray://HOST:PORT

Every key is checked; a typo gets the list of valid keys and a "did you mean".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelcycle.core.errors import NotFoundError, UsageError
from modelcycle.core.text import suggest

# Short names for the estimators people reach for first: (flavor, class path, task).
ESTIMATORS: dict[str, tuple[str, str]] = {
    "logistic_regression": ("sklearn", "sklearn.linear_model.LogisticRegression"),
    "linear_regression": ("sklearn", "sklearn.linear_model.LinearRegression"),
    "ridge": ("sklearn", "sklearn.linear_model.Ridge"),
    "random_forest": ("sklearn", "sklearn.ensemble.RandomForest{Task}"),
    "extra_trees": ("sklearn", "sklearn.ensemble.ExtraTrees{Task}"),
    "gradient_boosting": ("sklearn", "sklearn.ensemble.HistGradientBoosting{Task}"),
    "decision_tree": ("sklearn", "sklearn.tree.DecisionTree{Task}"),
    "knn": ("sklearn", "sklearn.neighbors.KNeighbors{Task}"),
    "xgboost": ("xgboost", "xgboost.XGB{Task}"),
    "lightgbm": ("lightgbm", "lightgbm.LGBM{Task}"),
}
FLAVORS = ("sklearn", "xgboost", "lightgbm")
TASKS = ("classification", "regression")
CLASSIFICATION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "f1",
    "f1_macro",
    "precision",
    "recall",
    "roc_auc",
    "log_loss",
)
REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")
TOP_KEYS = (
    "experiment",
    "name",
    "data",
    "target",
    "features",
    "exclude",
    "model",
    "task",
    "metrics",
    "cv",
    "seed",
    "search",
    "executor",
    "workers",
)
MODEL_KEYS = ("estimator", "flavor", "params")
SEARCH_KEYS = ("trials", "metric", "direction", "space", "pruner", "timeout", "study")
SPACE_KINDS = ("int", "float", "choice")


def _keys(data: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in known:
            raise UsageError(
                f"{where}: unknown key {key!r}{suggest(str(key), known)}",
                hint=f"valid keys: {', '.join(known)}",
            )


@dataclass(frozen=True)
class Param:
    """One dimension of the search space."""

    name: str
    kind: str  # int / float / choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, name: str, data: Any, where: str) -> Param:
        if not isinstance(data, dict):
            raise UsageError(
                f"{where}: expected a mapping such as {{int: [1, 10]}}, got {data!r}",
                hint="use {int: [LOW, HIGH]}, {float: [LOW, HIGH], log: true} or {choice: [a, b]}",
            )
        kinds = [k for k in data if k in SPACE_KINDS]
        _keys(data, (*SPACE_KINDS, "log"), where)
        if len(kinds) != 1:
            raise UsageError(
                f"{where}: give exactly one of {', '.join(SPACE_KINDS)}",
                hint="e.g. max_depth: {int: [2, 16]}",
            )
        kind = kinds[0]
        value = data[kind]
        if kind == "choice":
            if not isinstance(value, list) or not value:
                raise UsageError(f"{where}: choice needs a non-empty list", hint="{choice: [a, b]}")
            return cls(name, kind, choices=tuple(value))
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or value[0] >= value[1]
        ):
            raise UsageError(
                f"{where}: {kind} needs [LOW, HIGH] with LOW < HIGH, got {value!r}",
                hint=f"e.g. {{{kind}: [1, 10]}}",
            )
        log = bool(data.get("log", False))
        if log and value[0] <= 0:
            raise UsageError(f"{where}: a log range must be positive", hint="raise LOW above 0")
        return cls(name, kind, float(value[0]), float(value[1]), log)


@dataclass(frozen=True)
class Search:
    trials: int
    metric: str  # "": the task's first default metric
    direction: str  # "": minimize for losses and errors, else maximize
    space: tuple[Param, ...]
    pruner: str = "median"
    timeout: float | None = None
    study: str | None = None


@dataclass(frozen=True)
class TrainSpec:
    experiment: str
    train: str
    target: str
    estimator: str  # a class path
    flavor: str
    task: str | None = None
    validation: str | None = None
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    cv: int = 5
    seed: int = 0
    name: str | None = None
    search: Search | None = None
    executor: str = "local"
    workers: int | None = None
    source: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainSpec:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise NotFoundError(f"{p} does not exist", hint="check the spec path") from None
        except yaml.YAMLError as e:
            raise UsageError(f"{p} is not valid YAML: {e}", hint="fix the YAML syntax") from e
        return cls.from_dict(data, str(p))

    @classmethod
    def from_dict(cls, data: Any, where: str = "train spec") -> TrainSpec:
        if not isinstance(data, dict):
            raise UsageError(f"{where} must be a mapping", hint="see `modelcycle train --help`")
        _keys(data, TOP_KEYS, where)
        for required in ("data", "target", "model"):
            if required not in data:
                raise UsageError(f"{where} has no {required!r}", hint=f"add `{required}:`")
        d = data["data"]
        if isinstance(d, str):
            d = {"train": d}
        if not isinstance(d, dict) or "train" not in d:
            raise UsageError(
                f"{where}: data needs a train ref", hint="data: {train: NAME@REF, validation: ...}"
            )
        _keys(d, ("train", "validation"), f"{where}: data")
        m = data["model"]
        if isinstance(m, str):
            m = {"estimator": m}
        if not isinstance(m, dict) or "estimator" not in m:
            raise UsageError(
                f"{where}: model needs an estimator",
                hint=f"an alias ({', '.join(ESTIMATORS)}) or a class path",
            )
        _keys(m, MODEL_KEYS, f"{where}: model")
        task = data.get("task")
        if task is not None and task not in TASKS:
            raise UsageError(
                f"{where}: task {task!r} is not known{suggest(str(task), TASKS)}",
                hint=f"use {' or '.join(TASKS)}",
            )
        estimator, flavor = _estimator(str(m["estimator"]), m.get("flavor"), where)
        metrics = data.get("metrics") or []
        if isinstance(metrics, str):
            metrics = [metrics]
        known_metrics = CLASSIFICATION_METRICS + REGRESSION_METRICS
        for metric in metrics:
            if metric not in known_metrics:
                raise UsageError(
                    f"{where}: unknown metric {metric!r}{suggest(str(metric), known_metrics)}",
                    hint=f"classification: {', '.join(CLASSIFICATION_METRICS)}; "
                    f"regression: {', '.join(REGRESSION_METRICS)}",
                )
        cv = data.get("cv", 5)
        if not isinstance(cv, int) or isinstance(cv, bool) or cv < 0 or cv == 1:
            raise UsageError(f"{where}: cv must be 0 (off) or at least 2, got {cv!r}", hint="")
        executor = str(data.get("executor", "local"))
        if executor not in {"local", "ray"} and not executor.startswith("ray://"):
            raise UsageError(
                f"{where}: unknown executor {executor!r}",
                hint="use local, ray, or ray://HOST:PORT",
            )
        params = m.get("params") or {}
        if not isinstance(params, dict):
            raise UsageError(f"{where}: model.params must be a mapping", hint="params: {a: 1}")
        return cls(
            experiment=str(data.get("experiment") or "default"),
            name=data.get("name"),
            train=str(d["train"]),
            validation=str(d["validation"]) if d.get("validation") else None,
            target=str(data["target"]),
            features=tuple(map(str, data["features"])) if data.get("features") else None,
            exclude=tuple(map(str, data.get("exclude") or ())),
            estimator=estimator,
            flavor=flavor,
            params=dict(params),
            task=task,
            metrics=tuple(metrics),
            cv=cv,
            seed=int(data.get("seed", 0)),
            search=_search(data.get("search"), f"{where}: search") if data.get("search") else None,
            executor=executor,
            workers=int(data["workers"]) if data.get("workers") else None,
            source=where,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "experiment": self.experiment,
            "name": self.name,
            "workers": self.workers,
            "data": {"train": self.train, "validation": self.validation},
            "target": self.target,
            "features": list(self.features) if self.features else None,
            "exclude": list(self.exclude),
            "model": {"estimator": self.estimator, "flavor": self.flavor, "params": self.params},
            "task": self.task,
            "metrics": list(self.metrics),
            "cv": self.cv,
            "seed": self.seed,
            "executor": self.executor,
        }
        if self.search:
            out["search"] = {
                "trials": self.search.trials,
                "metric": self.search.metric,
                "direction": self.search.direction,
                "pruner": self.search.pruner,
                "space": {
                    p.name: (
                        {"choice": list(p.choices)}
                        if p.kind == "choice"
                        else {p.kind: [p.low, p.high], "log": p.log}
                    )
                    for p in self.search.space
                },
            }
        return out


def _estimator(name: str, flavor: Any, where: str) -> tuple[str, str]:
    if name in ESTIMATORS:
        alias_flavor, path = ESTIMATORS[name]
        return path, str(flavor or alias_flavor)
    if "." not in name:
        raise UsageError(
            f"{where}: unknown estimator {name!r}{suggest(name, ESTIMATORS)}",
            hint=f"use an alias ({', '.join(ESTIMATORS)}) or a class path such as sklearn.svm.SVC",
        )
    root = name.split(".", 1)[0]
    inferred = {"sklearn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm"}.get(root)
    chosen = str(flavor or inferred or "sklearn")
    if chosen not in FLAVORS:
        raise UsageError(
            f"{where}: unknown flavor {chosen!r}{suggest(chosen, FLAVORS)}",
            hint=f"train specs take the flavors {', '.join(FLAVORS)}",
        )
    return name, chosen


def _search(data: Any, where: str) -> Search:
    if not isinstance(data, dict):
        raise UsageError(f"{where} must be a mapping", hint="search: {trials: 20, space: {...}}")
    _keys(data, SEARCH_KEYS, where)
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise UsageError(f"{where} needs a space", hint="space: {max_depth: {int: [2, 16]}}")
    trials = data.get("trials", 20)
    if not isinstance(trials, int) or trials < 1:
        raise UsageError(f"{where}: trials must be a positive whole number", hint="trials: 20")
    direction = str(data.get("direction") or "")  # "": by the metric (loss-like: minimize)
    if direction not in ("", "maximize", "minimize"):
        raise UsageError(
            f"{where}: direction {direction!r} is not maximize or minimize"
            f"{suggest(direction, ('maximize', 'minimize'))}",
            hint="direction: maximize",
        )
    pruner = str(data.get("pruner", "median"))
    if pruner not in ("median", "none"):
        raise UsageError(f"{where}: pruner {pruner!r} is not median or none", hint="")
    return Search(
        trials=trials,
        metric=str(data.get("metric") or ""),
        direction=direction,
        space=tuple(Param.parse(str(k), v, f"{where}: space.{k}") for k, v in space.items()),
        pruner=pruner,
        timeout=float(data["timeout"]) if data.get("timeout") else None,
        study=str(data["study"]) if data.get("study") else None,
    )
