"""Prometheus gauges of every monitor's newest result, read from the store at each scrape.

=====================================================  ========================================
``modelcycle_monitor_drift_share``                     share of drifted columns
``modelcycle_monitor_drifted_columns``                 how many columns drifted
``modelcycle_monitor_dataset_drift``                   1 when the dataset drifted, else 0
``modelcycle_monitor_column_drift_score{column}``      each column's drift score
``modelcycle_monitor_prediction_drift_score``          the predictions' drift score
``modelcycle_monitor_performance{metric,kind}``        ``kind`` realized (from feedback) or
                                                       estimated (from probabilities)
``modelcycle_monitor_value{figure}``                   every other figure (rows, requests,
                                                       error_rate, p99_latency_seconds …)
``modelcycle_monitor_last_run_timestamp_seconds``      when the newest result was made
``modelcycle_monitor_status{status}``                  1 for the newest result's status
``modelcycle_alerts_open{rule,severity,state}``        1 for each alert not resolved
=====================================================  ========================================

Every series has the labels ``monitor`` and ``deployment``. Figures a result does not
have (no data in the window, a check that is off) are left out rather than exported as
zero, so a dashboard shows a gap, not a false value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelcycle.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

if TYPE_CHECKING:
    from modelcycle.store.monitors import MonitorStore

PREFIX = "modelcycle_monitor_"
STATUSES = ("ok", "breach", "no_data", "error")
_DRIFT = {
    "drift_share": "share of the monitored columns that drifted",
    "drifted_columns": "number of columns that drifted",
    "dataset_drift": "1 when the share of drifted columns reached the dataset threshold",
}
_PERFORMANCE = frozenset((*CLASSIFICATION_METRICS, *REGRESSION_METRICS))


class MonitorCollector(Collector):
    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        base = ["monitor", "deployment"]
        drift = {k: GaugeMetricFamily(PREFIX + k, doc, labels=base) for k, doc in _DRIFT.items()}
        column = GaugeMetricFamily(
            PREFIX + "column_drift_score",
            "drift score of one column (the statistic its test compares to the threshold)",
            labels=[*base, "column"],
        )
        prediction = GaugeMetricFamily(
            PREFIX + "prediction_drift_score", "drift score of the predictions", labels=base
        )
        performance = GaugeMetricFamily(
            PREFIX + "performance",
            "model performance in the window: realized from feedback, or estimated",
            labels=[*base, "metric", "kind"],
        )
        value = GaugeMetricFamily(
            PREFIX + "value", "other figures of the newest result", labels=[*base, "figure"]
        )
        last_run = GaugeMetricFamily(
            PREFIX + "last_run_timestamp_seconds",
            "when the newest result was made (seconds since the epoch)",
            labels=base,
        )
        status = GaugeMetricFamily(
            PREFIX + "status", "1 for the status of the newest result", labels=[*base, "status"]
        )
        alerts = GaugeMetricFamily(
            "modelcycle_alerts_open",
            "1 for each alert not resolved",
            labels=[*base, "rule", "severity", "state"],
        )
        for monitor in self.store.live():
            labels = [monitor.name, monitor.deployment]
            for alert in self.store.alerts(monitor_id=monitor.id, open_only=True):
                alerts.add_metric([*labels, alert.rule, alert.severity, alert.state], 1.0)
            results = self.store.results(monitor.id, limit=1)
            if not results:
                continue
            result = results[0]
            last_run.add_metric(labels, result.finished_at.timestamp())
            for s in STATUSES:
                status.add_metric([*labels, s], 1.0 if result.status == s else 0.0)
            for key, number in _numbers(result.values):
                if key in drift:
                    drift[key].add_metric(labels, number)
                elif key.startswith("drift."):
                    column.add_metric([*labels, key[len("drift.") :]], number)
                elif key == "prediction_drift":
                    prediction.add_metric(labels, number)
                elif key.startswith("estimated_"):
                    performance.add_metric([*labels, key[len("estimated_") :], "estimated"], number)
                elif key in _PERFORMANCE:
                    performance.add_metric([*labels, key, "realized"], number)
                else:
                    value.add_metric([*labels, key], number)
        yield from drift.values()
        yield from (column, prediction, performance, value, last_run, status, alerts)


def _numbers(values: dict[str, Any]) -> Iterator[tuple[str, float]]:
    for key, number in sorted(values.items()):
        if isinstance(number, int | float) and not isinstance(number, bool):
            yield key, float(number)
