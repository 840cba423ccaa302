"""The checks a monitor runs on a window of a deployment's logged traffic.

Each check adds its figures to ``values`` (what alert rules test; see
`modelcycle.monitoring.monitors` for the names) and its full result to ``detail``
(stored as the result's blob). The reference scored by the deployment's main model
version (its predictions and probabilities, for prediction drift and estimated
performance) is computed once and kept for the next runs.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import UsageError
from modelcycle.store.metadata import utcnow
from modelcycle.store.monitors import MonitorRow, ResultRow

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from modelcycle.data.service import DatasetService
    from modelcycle.deploy.service import DeploymentService
    from modelcycle.evaluation.service import EvaluationService
    from modelcycle.monitoring.service import DriftService

OPERATION_METRICS = (
    "requests",
    "requests_per_second",
    "p50_latency_seconds",
    "p95_latency_seconds",
    "p99_latency_seconds",
    "mean_latency_seconds",
    "error_rate",
    "client_error_rate",
    "volume_zscore",
)
_SCORED_CACHE = 4


@dataclass(frozen=True)
class _Scored:
    """The reference scored by one model version (for prediction drift and estimates)."""

    predictions: pl.Series
    proba: np.ndarray[Any, Any] | None
    classes: list[Any] | None
    target: pl.Series | None


class Checks:
    def __init__(
        self,
        *,
        deployments: DeploymentService,
        drifts: DriftService,
        evaluations: EvaluationService,
        datasets: DatasetService,
    ) -> None:
        self.deployments = deployments
        self.drifts = drifts
        self.evaluations = evaluations
        self.datasets = datasets
        self._scored: OrderedDict[tuple[str, str], _Scored] = OrderedDict()
        self._lock = threading.Lock()

    def window(self, deployment: str, since: dt.datetime, until: dt.datetime) -> pl.DataFrame:
        import polars as pl

        frame = self.deployments.predictions(deployment, since, until)
        if "route" in frame.columns:
            frame = frame.filter(pl.col("route") == "primary")
        return frame

    def traffic(self, deployment: str, seconds: float) -> pl.DataFrame:
        """The inputs ``deployment`` logged over the last ``seconds``, one column per
        feature (what drift compares)."""
        until = utcnow()
        return self.features(self.window(deployment, until - dt.timedelta(seconds=seconds), until))

    def features(self, frame: pl.DataFrame) -> pl.DataFrame:
        from modelcycle.deploy.segments import INPUT_PREFIX

        cols = [c for c in frame.columns if c.startswith(INPUT_PREFIX)]
        return frame.select(cols).rename({c: c[len(INPUT_PREFIX) :] for c in cols})

    def drift(
        self,
        monitor: MonitorRow,
        frame: pl.DataFrame,
        values: dict[str, Any],
        detail: dict[str, Any],
    ) -> None:
        import polars as pl

        features = self.features(frame)
        schema = self.datasets.resolve(monitor.reference).schema or []
        reference_columns = [c["name"] for c in schema]
        columns = [c for c in reference_columns if c in features.columns]
        if not columns:
            raise UsageError(
                f"the logged inputs of {monitor.deployment} share no column with "
                f"{monitor.reference}",
                hint="log requests as records or columns, and monitor against the data the "
                "model was trained on",
            )
        options = monitor.spec.get("options", {})
        result = self.drifts.drift(
            monitor.reference,
            features.select(columns),
            columns=columns,
            drift_share=float(options.get("drift_share", 0.5)),
        )
        values["drift_share"] = result.drift_share
        values["drifted_columns"] = len(result.drifted_columns)
        values["dataset_drift"] = 1.0 if result.dataset_drift else 0.0
        for column in result.checked:
            values[f"drift.{column.column}"] = column.score
        detail["drift"] = result.to_dict(histograms=True)
        scored = self.scored_reference(monitor)
        if scored is not None and "prediction" in frame.columns:
            current = frame["prediction"].drop_nulls()
            reference = scored.predictions
            if current.dtype != reference.dtype:
                common = (
                    pl.Float64
                    if current.dtype.is_numeric() and reference.dtype.is_numeric()
                    else pl.String
                )
                current, reference = current.cast(common), reference.cast(common)
            if current.len():
                pred = self.drifts.drift(
                    pl.DataFrame({"prediction": reference}),
                    pl.DataFrame({"prediction": current}),
                    prediction="prediction",
                )
                column = pred.column("prediction")
                values["prediction_drift"] = column.score
                detail["prediction_drift"] = column.to_dict()

    def performance(
        self,
        monitor: MonitorRow,
        since: dt.datetime,
        until: dt.datetime,
        values: dict[str, Any],
        detail: dict[str, Any],
    ) -> None:
        import polars as pl

        from modelcycle.evaluation.metrics import score_classification, score_regression

        joined = self.deployments.feedback.join(monitor.deployment, since, until)
        if "route" in joined.columns:
            joined = joined.filter(pl.col("route") == "primary")
        joined = joined.filter(pl.col("label").is_not_null() & pl.col("prediction").is_not_null())
        values["labelled_rows"] = joined.height
        if joined.height == 0:
            return
        task = self.task(monitor)
        truth, pred = joined["label"].to_list(), joined["prediction"].to_list()
        if task == "regression":
            scores = score_regression(truth, pred)
        else:
            scores = score_classification(truth, pred)
        values.update(scores.metrics)
        detail["performance"] = {
            "labelled_rows": joined.height,
            "task": task or "classification",
            "metrics": scores.metrics,
            "skipped": scores.skipped,
        }

    def estimate(
        self,
        monitor: MonitorRow,
        frame: pl.DataFrame,
        values: dict[str, Any],
        detail: dict[str, Any],
    ) -> None:
        import numpy as np
        import polars as pl

        from modelcycle.monitoring.estimate import estimate_performance

        if self.task(monitor) == "regression" or "probability" not in frame.columns:
            return
        scored = self.scored_reference(monitor)
        if scored is None or scored.proba is None or scored.target is None:
            return
        probs = frame["probability"].drop_nulls()
        if probs.len() == 0 or not isinstance(probs.dtype, pl.List | pl.Array):
            return
        current = np.asarray(probs.to_list(), dtype=float)
        if current.ndim != 2 or current.shape[1] != scored.proba.shape[1]:
            return
        if current.shape[1] == 2:
            names = ["score"]
            ref = {"score": pl.Series(scored.proba[:, 1])}
            cur = {"score": pl.Series(current[:, 1])}
        else:
            names = [f"score_{i}" for i in range(current.shape[1])]
            ref = {n: pl.Series(scored.proba[:, i]) for i, n in enumerate(names)}
            cur = {n: pl.Series(current[:, i]) for i, n in enumerate(names)}
        ref["__target__"] = scored.target
        estimate = estimate_performance(
            ref, cur, target="__target__", scores=names, classes=scored.classes
        )
        for metric in ("accuracy", "f1", "roc_auc"):
            if metric in estimate.estimated:
                values[f"estimated_{metric}"] = estimate.estimated[metric]
        detail["estimated_performance"] = estimate.to_dict()

    def operations(
        self,
        monitor: MonitorRow,
        frame: pl.DataFrame,
        history: Sequence[ResultRow],
        values: dict[str, Any],
        detail: dict[str, Any],
    ) -> dict[str, Any] | None:
        import polars as pl

        from modelcycle.monitoring import operations

        snapshot = None
        url = monitor.spec.get("options", {}).get("metrics_url")
        if url:
            after = operations.scrape(url)
            previous = next((r.snapshot for r in history if r.snapshot), None)
            before = operations.Snapshot.from_dict(previous) if previous else None
            stats = operations.window(before, after, model=monitor.spec["options"].get("model"))
            values.update({k: v for k, v in stats.to_dict().items() if k in OPERATION_METRICS})
            snapshot = after.to_dict()
        else:
            requests = frame["request_id"].n_unique() if frame.height else 0
            values["requests"] = requests
            values["requests_per_second"] = requests / monitor.window_seconds
            if requests and "latency_ms" in frame.columns:
                per_request = frame.group_by("request_id").agg(pl.col("latency_ms").first())
                latency = per_request["latency_ms"].drop_nulls() / 1000.0
                if latency.len():
                    for q in (50, 95, 99):
                        values[f"p{q}_latency_seconds"] = latency.quantile(
                            q / 100, interpolation="linear"
                        )
                    values["mean_latency_seconds"] = latency.mean()
        past = [r.values.get("requests") for r in history if r.status != "error"]
        anomaly = operations.volume_anomaly(
            [float(v) for v in reversed(past) if v is not None], float(values["requests"])
        )
        if anomaly.score is not None:
            values["volume_zscore"] = anomaly.score
        detail["operations"] = {
            "source": url or "prediction log",
            "values": {k: values.get(k) for k in OPERATION_METRICS},
            "volume": anomaly.to_dict(),
        }
        return snapshot

    def primary_version(self, monitor: MonitorRow) -> str | None:
        status = self.deployments.status(monitor.deployment)
        routes = [r for r in status.routes if r.version is not None and r.weight]
        if not routes:
            return None
        best = max(routes, key=lambda r: r.weight or 0.0)
        return f"{status.model}@{best.version}"

    def task(self, monitor: MonitorRow) -> str | None:
        ref = self.primary_version(monitor)
        if ref is None:
            return None
        return self.evaluations.task_of(self.evaluations.registry.resolve(ref))

    def scored_reference(self, monitor: MonitorRow) -> _Scored | None:
        """The reference scored by the deployment's main model version, kept for the
        next runs (a few of them)."""
        import polars as pl

        ref = self.primary_version(monitor)
        if ref is None:
            return None
        key = (monitor.reference, ref)
        with self._lock:
            if key in self._scored:
                self._scored.move_to_end(key)
                return self._scored[key]
        version = self.evaluations.registry.resolve(ref)
        frame = self.datasets.to_pandas(self.datasets.resolve(monitor.reference))
        columns = list(frame.columns)
        target = monitor.spec.get("options", {}).get("target")
        try:
            target = target or self.evaluations.target_of(version, columns)
        except UsageError:
            target = None
        loaded = self.evaluations.registry.load(ref)
        inputs = self.evaluations.inputs_of(version, frame, target)
        features = frame[inputs]
        predictions = pl.Series("prediction", loaded.predict(features))
        proba = classes = None
        if loaded.has_predict_proba and self.evaluations.task_of(version) != "regression":
            import numpy as np

            proba = np.asarray(loaded.predict_proba(features), dtype=float)
            found = getattr(loaded.native, "classes_", None)
            classes = None if found is None else list(found)
        scored = _Scored(
            predictions,
            proba,
            classes,
            pl.Series("target", frame[target]) if target else None,
        )
        with self._lock:
            self._scored[key] = scored
            while len(self._scored) > _SCORED_CACHE:
                self._scored.popitem(last=False)
        return scored
