"""Prometheus metrics of the model server, served at ``GET /metrics``.

With several worker processes the metrics live in prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by `modelcycle.serving.run` before the workers start)
and a scrape adds up every worker's files. Label children are cached: a request costs a
few dict look-ups and increments.

=====================================  =========  ==========================================
metric                                 type       labels
=====================================  =========  ==========================================
modelcycle_requests_total              counter    model, version, endpoint, status
modelcycle_request_duration_seconds    histogram  model, version, endpoint
modelcycle_requests_in_flight          gauge      (none)
modelcycle_batch_size                  histogram  model, version (rows per batch)
modelcycle_batch_queue_wait_seconds    histogram  model, version
modelcycle_predictions_total           counter    model, version, class (classifiers)
modelcycle_prediction_value            histogram  model, version (regressors)
modelcycle_model_load_seconds          histogram  model, version
modelcycle_route_table_swaps_total     counter    (none)
modelcycle_route_refresh_errors_total  counter    (none)
modelcycle_shadow_dropped_total        counter    (none)
=====================================  =========  ==========================================

``endpoint`` is ``v1`` (``/v1/models/NAME/predict``), ``invocations`` (MLflow), ``v2``
(Open Inference Protocol), ``shadow`` (mirrored copies) or ``feedback``. ``status`` 499
counts clients that went away before the answer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
VALUE_BUCKETS = (-1e4, -1e3, -100, -10, -1, 0, 1, 10, 100, 1e3, 1e4, 1e5)
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: per model version; more classes than this are counted under class="other"
MAX_CLASSES = 100
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServingMetrics:
    """The server's metrics, in a registry of their own (several apps can live in one
    process, as in tests)."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        # In multiprocess mode values go to files; a scrape reads them all back.
        own = None if self.multiprocess else CollectorRegistry()
        self._registry = own
        labels = ("model", "version", "endpoint")
        self.requests = Counter(
            "modelcycle_requests_total",
            "Prediction requests answered, by model version, endpoint and HTTP status.",
            (*labels, "status"),
            registry=own,
        )
        self.duration = Histogram(
            "modelcycle_request_duration_seconds",
            "Time from the request's arrival to its answer.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.in_flight = Gauge(
            "modelcycle_requests_in_flight",
            "Requests being answered now.",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "modelcycle_batch_size",
            "Rows per micro-batch.",
            ("model", "version"),
            buckets=BATCH_BUCKETS,
            registry=own,
        )
        self.queue_wait = Histogram(
            "modelcycle_batch_queue_wait_seconds",
            "Time a request waited in the batch queue.",
            ("model", "version"),
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.predictions = Counter(
            "modelcycle_predictions_total",
            "Predicted rows of classifiers, by predicted class.",
            ("model", "version", "class"),
            registry=own,
        )
        self.values = Histogram(
            "modelcycle_prediction_value",
            "Predicted values of regressors.",
            ("model", "version"),
            buckets=VALUE_BUCKETS,
            registry=own,
        )
        self.load_seconds = Histogram(
            "modelcycle_model_load_seconds",
            "Time to load a model version.",
            ("model", "version"),
            buckets=LOAD_BUCKETS,
            registry=own,
        )
        self.swaps = Counter(
            "modelcycle_route_table_swaps_total",
            "Times the served routes changed (an alias moved, a deployment changed).",
            registry=own,
        )
        self.refresh_errors = Counter(
            "modelcycle_route_refresh_errors_total",
            "Failed attempts to read or load new routes (the current ones stay served).",
            registry=own,
        )
        self.shadow_dropped = Counter(
            "modelcycle_shadow_dropped_total",
            "Shadow predictions skipped because too many were pending.",
            registry=own,
        )
        self._request_children: dict[tuple[str, str, str, int], Any] = {}
        self._duration_children: dict[tuple[str, str, str], Any] = {}
        self._class_children: dict[tuple[str, str], dict[Any, Any]] = {}

    def request(self, model: str, version: str, endpoint: str, status: int, seconds: float) -> None:
        key = (model, version, endpoint, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(
                model, version, endpoint, str(status)
            )
        child.inc()
        dkey = (model, version, endpoint)
        timer = self._duration_children.get(dkey)
        if timer is None:
            timer = self._duration_children[dkey] = self.duration.labels(*dkey)
        timer.observe(seconds)

    def batch(self, model: str, version: str, rows: int, waits: Sequence[float]) -> None:
        self.batch_size.labels(model, version).observe(rows)
        wait = self.queue_wait.labels(model, version)
        for w in waits:
            wait.observe(w)

    def predicted(
        self, model: str, version: str, values: np.ndarray[Any, Any], classes: bool
    ) -> None:
        if not values.size:
            return
        if not classes:
            if values.dtype.kind in "iuf":
                hist = self.values.labels(model, version)
                for v in values.ravel()[:1000].tolist():
                    hist.observe(v)
            return
        if values.ndim != 1:
            return  # several outputs per row: no single class to count
        children = self._class_children.setdefault((model, version), {})
        if len(values) == 1:
            pairs: list[tuple[Any, int]] = [(values[0].item(), 1)]
        else:
            kinds, counts = np.unique(values, return_counts=True)
            pairs = list(zip(kinds.tolist(), counts.tolist(), strict=True))
        for cls, n in pairs:
            child = children.get(cls)
            if child is None:
                label = str(cls) if len(children) < MAX_CLASSES else "other"
                child = children[cls] = self.predictions.labels(model, version, label)
            child.inc(n)

    def loaded(self, model: str, version: str, seconds: float) -> None:
        self.load_seconds.labels(model, version).observe(seconds)

    def render(self) -> bytes:
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def worker_exited(self) -> None:
        """Drop this process's live gauges (multiprocess mode) when it stops."""
        if self.multiprocess:
            prom_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
