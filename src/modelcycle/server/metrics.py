"""Prometheus gauges of every monitor's newest result, read from the store at each scrape.

=====================================================  ========================================
``modelcycle_monitor_drift_share``                     share of drifted columns (0 to 1)
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

Every series has the labels ``monitor`` and ``deployment``. Which gauge carries which
figure is decided in one place, `modelcycle.monitoring.prometheus.series`, which the
generated alerting rules use too. Figures a result does not have (no data in the window,
a check that is off) are left out rather than exported as zero, so a dashboard shows a
gap, not a false value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelcycle.monitoring.prometheus import (
    GAUGES,
    LABELS,
    LAST_RUN,
    OPEN_ALERTS,
    STATUS,
    Gauge,
    series,
)

if TYPE_CHECKING:
    from modelcycle.store.monitors import MonitorStore

STATUSES = ("ok", "breach", "no_data", "error")


class MonitorCollector(Collector):
    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {g.name: _family(g) for g in GAUGES}
        for monitor in self.store.live():
            labels = [monitor.name, monitor.deployment]
            for alert in self.store.alerts(monitor_id=monitor.id, open_only=True, limit=10_000):
                families[OPEN_ALERTS.name].add_metric(
                    [*labels, alert.rule, alert.severity, alert.state], 1.0
                )
            results = self.store.results(monitor.id, limit=1)
            if not results:
                continue
            result = results[0]
            families[LAST_RUN.name].add_metric(labels, result.finished_at.timestamp())
            for s in STATUSES:
                families[STATUS.name].add_metric([*labels, s], 1.0 if result.status == s else 0.0)
            for key, number in _numbers(result.values):
                found = series(key)
                families[found.gauge.name].add_metric([*labels, *found.values], number)
        yield from families.values()


def _family(gauge: Gauge) -> GaugeMetricFamily:
    return GaugeMetricFamily(gauge.name, gauge.help, labels=[*LABELS, *gauge.labels])


def _numbers(values: dict[str, Any]) -> Iterator[tuple[str, float]]:
    for key, number in sorted(values.items()):
        if isinstance(number, int | float) and not isinstance(number, bool):
            yield key, float(number)
