"""Monitor figures as Prometheus gauges, and alerting rules that watch those gauges.

Every figure of a monitor result (`modelcycle.monitoring.monitors`) is carried by one
gauge, which `series` names; the platform server's ``/metrics`` exports them
(`modelcycle.server.metrics`) and `rules_file` turns each monitor's alert rules into
Prometheus alerting rules on the same gauges, for teams that route alerts through
Alertmanager:

==========================  ==========================================================
figure                      gauge (besides the labels ``monitor`` and ``deployment``)
==========================  ==========================================================
``drift_share``             ``modelcycle_monitor_drift_share``
``drifted_columns``         ``modelcycle_monitor_drifted_columns``
``dataset_drift``           ``modelcycle_monitor_dataset_drift``
``drift.COLUMN``            ``modelcycle_monitor_column_drift_score{column="COLUMN"}``
``prediction_drift``        ``modelcycle_monitor_prediction_drift_score``
``accuracy``, ``rmse`` …    ``modelcycle_monitor_performance{metric, kind="realized"}``
``estimated_accuracy`` …    ``modelcycle_monitor_performance{metric, kind="estimated"}``
anything else               ``modelcycle_monitor_value{figure="…"}`` (``rows``,
                            ``requests``, ``error_rate``, ``p99_latency_seconds`` …)
==========================  ==========================================================

A rule ``METRIC OP NUMBER`` becomes ``GAUGE{monitor="…", …} OP NUMBER``. Prometheus sees
a figure for as long as its result is the monitor's newest, about one schedule, so a
rule's ``for`` (debounce: that many breaching runs in a row) becomes ``for: debounce ×
schedule``: Prometheus fires no sooner than modelcycle does and at most one schedule
later. Each monitor also gets a staleness rule, ``ModelcycleMonitorStale``: its newest
result is older than `STALE_AFTER_RUNS` schedules, or none was scraped for as long (the
server or its scheduler is down, or the monitor never ran), and that for one more
schedule.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelcycle.monitoring.rules import Rule, parse_rule

if TYPE_CHECKING:
    from modelcycle.store.monitors import MonitorRow

__all__ = [
    "GAUGES",
    "LABELS",
    "LAST_RUN",
    "OPEN_ALERTS",
    "STALE_AFTER_RUNS",
    "STATUS",
    "Gauge",
    "Series",
    "dump_rules",
    "prometheus_duration",
    "rules_file",
    "series",
]

PREFIX = "modelcycle_monitor_"
STALE_AFTER_RUNS = 3
LABELS = ("monitor", "deployment")


@dataclass(frozen=True)
class Gauge:
    """One exported gauge: its name, help text and labels beyond ``monitor`` and
    ``deployment``."""

    name: str
    help: str
    labels: tuple[str, ...] = ()


DRIFT_SHARE = Gauge(PREFIX + "drift_share", "share of the monitored columns that drifted (0 to 1)")
DRIFTED_COLUMNS = Gauge(PREFIX + "drifted_columns", "number of monitored columns that drifted")
DATASET_DRIFT = Gauge(
    PREFIX + "dataset_drift",
    "1 when the share of drifted columns reached the monitor's dataset threshold, else 0",
)
COLUMN_DRIFT = Gauge(
    PREFIX + "column_drift_score",
    "drift score of one column (the statistic its test compares with its threshold)",
    ("column",),
)
PREDICTION_DRIFT = Gauge(
    PREFIX + "prediction_drift_score", "drift score of the model's predictions"
)
PERFORMANCE = Gauge(
    PREFIX + "performance",
    "model performance in the window: realized (from feedback) or estimated (from the "
    "logged probabilities)",
    ("metric", "kind"),
)
VALUE = Gauge(
    PREFIX + "value",
    "every other figure of the newest result (rows, requests, latency seconds, error rate …)",
    ("figure",),
)
LAST_RUN = Gauge(
    PREFIX + "last_run_timestamp_seconds",
    "when the monitor's newest result was made, in seconds since the epoch",
)
STATUS = Gauge(
    PREFIX + "status",
    "1 for the status of the monitor's newest result (ok, breach, no_data, error), else 0",
    ("status",),
)
OPEN_ALERTS = Gauge(
    "modelcycle_alerts_open",
    "1 for each alert not resolved yet; state is firing or acknowledged",
    ("rule", "severity", "state"),
)
#: every gauge, in the order ``/metrics`` lists them
GAUGES = (
    DRIFT_SHARE,
    DRIFTED_COLUMNS,
    DATASET_DRIFT,
    COLUMN_DRIFT,
    PREDICTION_DRIFT,
    PERFORMANCE,
    VALUE,
    LAST_RUN,
    STATUS,
    OPEN_ALERTS,
)
_BY_FIGURE = {
    "drift_share": DRIFT_SHARE,
    "drifted_columns": DRIFTED_COLUMNS,
    "dataset_drift": DATASET_DRIFT,
    "prediction_drift": PREDICTION_DRIFT,
}


@dataclass(frozen=True)
class Series:
    """The gauge carrying one figure and the values of its labels beyond ``monitor`` and
    ``deployment``, in the gauge's label order."""

    gauge: Gauge
    values: tuple[str, ...] = ()

    def selector(self, monitor: str) -> str:
        """The PromQL selector of this figure of ``monitor``."""
        pairs = [("monitor", monitor), *zip(self.gauge.labels, self.values, strict=True)]
        inner = ",".join(f"{k}={_promql_string(v)}" for k, v in pairs)
        return f"{self.gauge.name}{{{inner}}}"


@functools.cache
def _realized_metrics() -> frozenset[str]:
    from modelcycle.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

    return frozenset((*CLASSIFICATION_METRICS, *REGRESSION_METRICS))


def series(figure: str) -> Series:
    """The gauge series that carries the monitor figure ``figure``."""
    if figure in _BY_FIGURE:
        return Series(_BY_FIGURE[figure])
    if figure.startswith("drift."):
        return Series(COLUMN_DRIFT, (figure[len("drift.") :],))
    if figure.startswith("estimated_"):
        return Series(PERFORMANCE, (figure[len("estimated_") :], "estimated"))
    if figure in _realized_metrics():
        return Series(PERFORMANCE, (figure, "realized"))
    return Series(VALUE, (figure,))


# -- the alerting rules file ---------------------------------------------------------------
def rules_file(monitors: Sequence[MonitorRow]) -> dict[str, Any]:
    """Prometheus alerting rules (the content of a rules file) for ``monitors``: one group
    per monitor with a rule per alert rule of the monitor, and a staleness rule."""
    return {"groups": [_group(m) for m in sorted(monitors, key=lambda m: m.name)]}


def dump_rules(rules: dict[str, Any]) -> str:
    """``rules`` as the YAML text of a rules file, with a header saying where it came from."""
    import yaml

    header = (
        "# Prometheus alerting rules for modelcycle monitors, written by\n"
        "# `modelcycle monitor prometheus-rules`. Write it again after monitors change.\n"
    )
    body = yaml.safe_dump(rules, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def _group(monitor: MonitorRow) -> dict[str, Any]:
    rules = [parse_rule(r) for r in monitor.spec.get("rules", [])]
    return {
        "name": f"modelcycle-monitor-{monitor.name}",
        "rules": [*(_alert(monitor, r) for r in rules), _stale(monitor)],
    }


def _alert(monitor: MonitorRow, rule: Rule) -> dict[str, Any]:
    picked = series(rule.metric)
    every = prometheus_duration(monitor.schedule_seconds)
    runs = "1 run" if rule.debounce == 1 else f"{rule.debounce} runs in a row"
    return {
        "alert": _alert_name(rule.metric),
        "expr": f"{picked.selector(monitor.name)} {rule.op} {rule.threshold!r}",
        "for": prometheus_duration(rule.debounce * monitor.schedule_seconds),
        "labels": {
            "severity": rule.severity,
            "monitor": monitor.name,
            "deployment": monitor.deployment,
            "rule": rule.text,
        },
        "annotations": {
            "summary": f"{rule.text} on deployment {monitor.deployment} (monitor {monitor.name})",
            "description": f'{rule.metric} is {{{{ printf "%.4g" $value }}}} ({rule.text}) '
            f"on deployment {monitor.deployment}, through {runs} of monitor {monitor.name} "
            f"(every {every}); see `modelcycle monitor show {monitor.name}`.",
        },
    }


def _stale(monitor: MonitorRow) -> dict[str, Any]:
    after = prometheus_duration(STALE_AFTER_RUNS * monitor.schedule_seconds)
    selector = Series(LAST_RUN).selector(monitor.name)
    return {
        "alert": "ModelcycleMonitorStale",
        "expr": f"time() - {selector} > {float(STALE_AFTER_RUNS * monitor.schedule_seconds)!r} "
        f"or absent_over_time({selector}[{after}])",
        # a schedule's grace: just after Prometheus starts, nothing is scraped yet
        "for": prometheus_duration(monitor.schedule_seconds),
        "labels": {
            "severity": "warning",
            "monitor": monitor.name,
            "deployment": monitor.deployment,
        },
        "annotations": {
            "summary": f"monitor {monitor.name} has not run for {after}",
            "description": f"The newest result of monitor {monitor.name} (deployment "
            f"{monitor.deployment}, every {prometheus_duration(monitor.schedule_seconds)}) "
            f"is older than {after}, or none was scraped for {after}. Is `modelcycle "
            f"server` running with its scheduler?",
        },
    }


def _alert_name(metric: str) -> str:
    """``drift_share`` → ``ModelcycleDriftShare``; a column's drift → ``ModelcycleColumnDrift``
    (its column is a label of the series): CamelCase letters and digits, as is usual."""
    if metric.startswith("drift."):
        return "ModelcycleColumnDrift"
    words = re.split(r"[^A-Za-z0-9]+", metric)
    return "Modelcycle" + "".join(w[:1].upper() + w[1:] for w in words if w)


def prometheus_duration(seconds: float) -> str:
    """``seconds`` as a Prometheus duration: ``45m``, ``1h30m``, ``1s500ms``, ``0s``."""
    left = round(seconds * 1000)
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _promql_string(value: str) -> str:
    # PromQL strings follow Go's escaping, which JSON's is a subset of.
    return json.dumps(value, ensure_ascii=False)
