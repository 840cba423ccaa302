"""Monitor figures as Prometheus gauges, the alerting rules generated on them, and the
Grafana dashboard that queries them.

The rules file is checked by Debian's ``promtool`` (shipped with the prometheus package
that ``scripts/test`` installs): ``check rules`` for validity, ``test rules`` for when
each alert fires on given gauge series. The expected gauge names and selectors are
written out here by hand, so a renamed gauge fails these tests.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import modelcycle as mc
from modelcycle.monitoring.prometheus import dump_rules, prometheus_duration, rules_file
from modelcycle.monitoring.rules import parse_rule
from modelcycle.server.metrics import MonitorCollector
from modelcycle.store.monitors import AlertChanges, MonitorRow, NewAlert

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "grafana-monitoring.json"
METRIC = re.compile(r"\bmodelcycle_[a-z_]+\b")
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
# Every kind of figure a monitor result holds, as the monitor service stores them.
VALUES: dict[str, Any] = {
    "rows": 600,
    "requests": 600,
    "p99_latency_seconds": 0.25,
    "drift_share": 0.5,
    "drifted_columns": 2,
    "dataset_drift": 1.0,
    "drift.age": 0.31,
    "drift.plan type": 0.02,
    "prediction_drift": 0.12,
    "labelled_rows": 600,
    "accuracy": 0.91,
    "f1_macro": 0.88,
    "rmse": 1.5,
    "estimated_accuracy": 0.9,
    "estimated_roc_auc": 0.95,
    "error_rate": None,  # a figure without a value is left out
}


def monitor_row(
    name: str,
    rules: Sequence[str | dict[str, Any]],
    *,
    schedule: float = 900.0,
    deployment: str = "churn-live",
    monitor_id: int = 1,
) -> MonitorRow:
    """A monitor as the store returns it (rules stored as `Rule.to_dict` makes them)."""
    return MonitorRow(
        id=monitor_id,
        name=name,
        deployment=deployment,
        reference="churn-ref@1",
        spec={"rules": [parse_rule(r).to_dict() for r in rules]},
        schedule_seconds=schedule,
        window_seconds=3600.0,
        next_run_at=T0,
        created_at=T0,
        created_by="tester",
        updated_at=T0,
        deleted_at=None,
    )


def promtool() -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None
    )
    if found is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (scripts/test does)")
    return found


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# --------------------------------------------------------------------------- the rules


def test_each_rule_watches_the_gauge_that_carries_its_figure() -> None:
    monitor = monitor_row(
        "churn-watch",
        [
            "drift_share > 0.3",
            "drifted_columns >= 2",
            "dataset_drift == 1",
            {"rule": "drift.age >= 0.2", "for": 3, "severity": "critical"},
            "prediction_drift > 0.2",
            "accuracy < 0.8",
            "estimated_accuracy < 0.75",
            "rmse > 2.5",
            "p99_latency_seconds > 0.5",
            "error_rate > 0.01",
            "rows < 1",
        ],
        schedule=900,
    )
    (group,) = rules_file([monitor])["groups"]
    assert group["name"] == "modelcycle-monitor-churn-watch"
    got = {
        r["labels"].get("rule", "stale"): (r["alert"], r["expr"], r["for"]) for r in group["rules"]
    }
    sel = 'monitor="churn-watch"'
    last = f"modelcycle_monitor_last_run_timestamp_seconds{{{sel}}}"
    assert got == {
        "drift_share > 0.3": (
            "ModelcycleDriftShare",
            f"modelcycle_monitor_drift_share{{{sel}}} > 0.3",
            "15m",
        ),
        "drifted_columns >= 2": (
            "ModelcycleDriftedColumns",
            f"modelcycle_monitor_drifted_columns{{{sel}}} >= 2.0",
            "15m",
        ),
        "dataset_drift == 1": (
            "ModelcycleDatasetDrift",
            f"modelcycle_monitor_dataset_drift{{{sel}}} == 1.0",
            "15m",
        ),
        "drift.age >= 0.2": (
            "ModelcycleColumnDrift",
            f'modelcycle_monitor_column_drift_score{{{sel},column="age"}} >= 0.2',
            "45m",  # for: 3 runs of every 15 minutes
        ),
        "prediction_drift > 0.2": (
            "ModelcyclePredictionDrift",
            f"modelcycle_monitor_prediction_drift_score{{{sel}}} > 0.2",
            "15m",
        ),
        "accuracy < 0.8": (
            "ModelcycleAccuracy",
            f'modelcycle_monitor_performance{{{sel},metric="accuracy",kind="realized"}} < 0.8',
            "15m",
        ),
        "estimated_accuracy < 0.75": (
            "ModelcycleEstimatedAccuracy",
            f'modelcycle_monitor_performance{{{sel},metric="accuracy",kind="estimated"}} < 0.75',
            "15m",
        ),
        "rmse > 2.5": (
            "ModelcycleRmse",
            f'modelcycle_monitor_performance{{{sel},metric="rmse",kind="realized"}} > 2.5',
            "15m",
        ),
        "p99_latency_seconds > 0.5": (
            "ModelcycleP99LatencySeconds",
            f'modelcycle_monitor_value{{{sel},figure="p99_latency_seconds"}} > 0.5',
            "15m",
        ),
        "error_rate > 0.01": (
            "ModelcycleErrorRate",
            f'modelcycle_monitor_value{{{sel},figure="error_rate"}} > 0.01',
            "15m",
        ),
        "rows < 1": (
            "ModelcycleRows",
            f'modelcycle_monitor_value{{{sel},figure="rows"}} < 1.0',
            "15m",
        ),
        "stale": (
            "ModelcycleMonitorStale",
            f"time() - {last} > 2700.0 or absent_over_time({last}[45m])",
            "15m",
        ),
    }
    for rule in group["rules"]:
        assert {"severity", "monitor", "deployment"} <= set(rule["labels"])
        assert rule["labels"]["monitor"] == "churn-watch"
        assert rule["labels"]["deployment"] == "churn-live"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    critical = [r for r in group["rules"] if r["labels"]["severity"] == "critical"]
    assert [r["labels"]["rule"] for r in critical] == ["drift.age >= 0.2"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (1.5, "1s500ms"), (90, "1m30s"), (2700, "45m"), (5400, "1h30m"), (86400, "24h")],
)
def test_durations_are_written_as_prometheus_reads_them(seconds: float, text: str) -> None:
    assert prometheus_duration(seconds) == text


def test_one_group_per_monitor_sorted_and_an_empty_file_for_none() -> None:
    monitors = [
        monitor_row("b-watch", ["rows < 1"], schedule=60, monitor_id=2),
        monitor_row("a-watch", [], schedule=1.5),
    ]
    groups = rules_file(monitors)["groups"]
    assert [g["name"] for g in groups] == [
        "modelcycle-monitor-a-watch",
        "modelcycle-monitor-b-watch",
    ]
    # a monitor without alert rules still gets its staleness rule
    assert [r["alert"] for r in groups[0]["rules"]] == ["ModelcycleMonitorStale"]
    assert groups[0]["rules"][0]["for"] == "1s500ms"
    assert [r["alert"] for r in groups[1]["rules"]] == ["ModelcycleRows", "ModelcycleMonitorStale"]
    assert rules_file([]) == {"groups": []}
    text = dump_rules(rules_file(monitors))
    assert text.startswith("# Prometheus alerting rules") and yaml.safe_load(text) == rules_file(
        monitors
    )


def test_promtool_accepts_the_rules_file(tmp_path: Path) -> None:
    monitors = [
        monitor_row(
            "churn-watch",
            ["drift_share > 0.3", {"rule": "drift.plan-type >= 0.2", "for": 2}, "rows < 1"],
        ),
        monitor_row("churn.perf_2", ["estimated_roc_auc < 0.7", "accuracy != 1"], monitor_id=2),
    ]
    (tmp_path / "rules.yml").write_text(dump_rules(rules_file(monitors)))
    result = run_promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout
    # and promtool does refuse a broken one: a label value left unquoted
    broken = rules_file(monitors)
    rule = broken["groups"][0]["rules"][0]
    rule["expr"] = rule["expr"].replace('"churn-watch"', "churn-watch")
    (tmp_path / "broken.yml").write_text(dump_rules(broken))
    result = run_promtool("check", "rules", "broken.yml", cwd=tmp_path)
    assert result.returncode != 0 and "parse error" in result.stdout + result.stderr


def test_alerts_fire_after_debounce_runs_and_when_a_monitor_goes_stale(tmp_path: Path) -> None:
    """promtool evaluates the rules on gauge series written by hand: one sample a minute,
    a monitor that runs every minute."""
    monitors = [
        monitor_row(
            "churn-watch",
            [
                "drift_share > 0.3",
                {"rule": "drift.age >= 0.2", "for": 3, "severity": "critical"},
                "estimated_accuracy < 0.8",
            ],
            schedule=60,
        ),
        monitor_row("never-ran", ["rows < 1"], schedule=60, deployment="other", monitor_id=2),
    ]
    (tmp_path / "rules.yml").write_text(dump_rules(rules_file(monitors)))
    watch = {"monitor": "churn-watch", "deployment": "churn-live"}
    labels = 'monitor="churn-watch",deployment="churn-live"'

    def fired(alert: str, rule: str, value: str, severity: str = "warning", **extra: str) -> Any:
        runs = "1 run" if alert != "ModelcycleColumnDrift" else "3 runs in a row"
        metric = {"ModelcycleColumnDrift": "drift.age"}.get(alert, rule.split(maxsplit=1)[0])
        return {
            "exp_labels": {**watch, **extra, "severity": severity, "rule": rule},
            "exp_annotations": {
                "summary": f"{rule} on deployment churn-live (monitor churn-watch)",
                "description": f"{metric} is {value} ({rule}) on deployment churn-live, "
                f"through {runs} of monitor churn-watch (every 1m); see `modelcycle monitor "
                "show churn-watch`.",
            },
        }

    def stale(monitor: str, deployment: str, **extra: str) -> Any:
        return {
            "exp_labels": {
                "monitor": monitor,
                "deployment": deployment,
                "severity": "warning",
                **extra,
            },
            "exp_annotations": {
                "summary": f"monitor {monitor} has not run for 3m",
                "description": f"The newest result of monitor {monitor} (deployment "
                f"{deployment}, every 1m) is older than 3m, or none was scraped for 3m. Is "
                "`modelcycle server` running with its scheduler?",
            },
        }

    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # drifted from minute 1 on
                    {
                        "series": f"modelcycle_monitor_drift_share{{{labels}}}",
                        "values": "0.1 0.5 0.5 0.5 0.5 0.5 0.5 0.5",
                    },
                    # the column drifts at minute 1, recovers at 3, drifts again from 4 on
                    {
                        "series": f'modelcycle_monitor_column_drift_score{{{labels},column="age"}}',
                        "values": "0.1 0.3 0.3 0.1 0.3 0.3 0.3 0.3 0.3",
                    },
                    # the estimate stays good: never fires
                    {
                        "series": "modelcycle_monitor_performance"
                        f'{{{labels},metric="accuracy",kind="estimated"}}',
                        "values": "0.9x8",
                    },
                    # realized accuracy of the same monitor is not what the rule watches
                    {
                        "series": "modelcycle_monitor_performance"
                        f'{{{labels},metric="accuracy",kind="realized"}}',
                        "values": "0.5x8",
                    },
                    # runs every minute until minute 3 (its result at 180 s), then stops
                    {
                        "series": f"modelcycle_monitor_last_run_timestamp_seconds{{{labels}}}",
                        "values": "0 60 120 180 180 180 180 180 180 180 180 180",
                    },
                ],
                "alert_rule_test": [
                    # debounce 1 × 1m: pending at minute 1, firing at minute 2
                    {"eval_time": "1m", "alertname": "ModelcycleDriftShare", "exp_alerts": []},
                    {
                        "eval_time": "2m",
                        "alertname": "ModelcycleDriftShare",
                        "exp_alerts": [fired("ModelcycleDriftShare", "drift_share > 0.3", "0.5")],
                    },
                    # debounce 3 × 1m: the run from minute 1 to 2 is broken at 3; the one
                    # from minute 4 fires at 7, not before
                    {"eval_time": "3m", "alertname": "ModelcycleColumnDrift", "exp_alerts": []},
                    {"eval_time": "6m", "alertname": "ModelcycleColumnDrift", "exp_alerts": []},
                    {
                        "eval_time": "7m",
                        "alertname": "ModelcycleColumnDrift",
                        "exp_alerts": [
                            fired(
                                "ModelcycleColumnDrift",
                                "drift.age >= 0.2",
                                "0.3",
                                severity="critical",
                                column="age",
                            )
                        ],
                    },
                    {
                        "eval_time": "7m",
                        "alertname": "ModelcycleEstimatedAccuracy",
                        "exp_alerts": [],
                    },
                    # churn-watch: last result at 180 s, older than 3 m from 7 m on (pending),
                    # firing a schedule later. never-ran: no result at all, firing throughout.
                    {
                        "eval_time": "6m",
                        "alertname": "ModelcycleMonitorStale",
                        "exp_alerts": [stale("never-ran", "other")],
                    },
                    {
                        "eval_time": "7m",
                        "alertname": "ModelcycleMonitorStale",
                        "exp_alerts": [stale("never-ran", "other")],
                    },
                    {
                        "eval_time": "8m",
                        "alertname": "ModelcycleMonitorStale",
                        "exp_alerts": [
                            stale("churn-watch", "churn-live"),
                            stale("never-ran", "other"),
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


# --------------------------------------------------------------------------- the gauges


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    """The samples /metrics exports for a workspace with two monitors: one whose newest
    result holds every kind of figure and has two open alerts (one acknowledged), one that
    never ran."""
    ws = mc.Workspace.create(tmp_path_factory.mktemp("gauges") / "ws")
    try:
        store = ws.monitors.store
        watch = store.create(
            name="churn-watch",
            deployment="churn-live",
            reference="churn-ref@1",
            spec={"rules": []},
            schedule_seconds=900,
            window_seconds=3600,
            next_run_at=T0,
        )
        store.create(
            name="idle",
            deployment="other",
            reference="churn-ref@1",
            spec={"rules": []},
            schedule_seconds=900,
            window_seconds=3600,
            next_run_at=T0,
        )

        def result(status: str, values: dict[str, Any], fire: Sequence[str] = ()) -> Any:
            changes = AlertChanges(
                fire=[
                    NewAlert(
                        rule=r,
                        metric=r.split()[0],
                        op=">",
                        threshold=0.3,
                        value=0.5,
                        severity="critical" if r.startswith("drift.") else "warning",
                        message="m",
                    )
                    for r in fire
                ]
            )
            return store.add_result(
                watch,
                started_at=T0,
                window_start=T0 - dt.timedelta(hours=1),
                window_end=T0,
                status=status,
                rows=600,
                values=values,
                breaches=list(fire),
                detail_oid=None,
                snapshot=None,
                error=None,
                changes=changes,
            )

        result("ok", {"drift_share": 0.0, "rows": 10})  # an older result: not exported
        _, fired = result("breach", VALUES, fire=["drift_share > 0.3", "drift.age > 0.3"])
        store.acknowledge(fired[0].id, note=None)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MonitorCollector(store))
        text = generate_latest(registry).decode()
        yield [s for family in text_string_to_metric_families(text) for s in family.samples]
    finally:
        ws.close()


def test_the_newest_result_is_exported_one_gauge_per_kind_of_figure(exported: list[Any]) -> None:
    base = {"monitor": "churn-watch", "deployment": "churn-live"}

    def labels(**extra: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({**base, **extra}.items()))

    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in exported}
    last_run = got.pop(("modelcycle_monitor_last_run_timestamp_seconds", labels()))
    assert abs(last_run - dt.datetime.now(dt.UTC).timestamp()) < 600
    assert got == {
        ("modelcycle_monitor_drift_share", labels()): 0.5,
        ("modelcycle_monitor_drifted_columns", labels()): 2.0,
        ("modelcycle_monitor_dataset_drift", labels()): 1.0,
        ("modelcycle_monitor_column_drift_score", labels(column="age")): 0.31,
        ("modelcycle_monitor_column_drift_score", labels(column="plan type")): 0.02,
        ("modelcycle_monitor_prediction_drift_score", labels()): 0.12,
        ("modelcycle_monitor_performance", labels(metric="accuracy", kind="realized")): 0.91,
        ("modelcycle_monitor_performance", labels(metric="f1_macro", kind="realized")): 0.88,
        ("modelcycle_monitor_performance", labels(metric="rmse", kind="realized")): 1.5,
        ("modelcycle_monitor_performance", labels(metric="accuracy", kind="estimated")): 0.9,
        ("modelcycle_monitor_performance", labels(metric="roc_auc", kind="estimated")): 0.95,
        ("modelcycle_monitor_value", labels(figure="rows")): 600.0,
        ("modelcycle_monitor_value", labels(figure="requests")): 600.0,
        ("modelcycle_monitor_value", labels(figure="labelled_rows")): 600.0,
        ("modelcycle_monitor_value", labels(figure="p99_latency_seconds")): 0.25,
        ("modelcycle_monitor_status", labels(status="ok")): 0.0,
        ("modelcycle_monitor_status", labels(status="breach")): 1.0,
        ("modelcycle_monitor_status", labels(status="no_data")): 0.0,
        ("modelcycle_monitor_status", labels(status="error")): 0.0,
        (
            "modelcycle_alerts_open",
            labels(rule="drift_share > 0.3", severity="warning", state="acknowledged"),
        ): 1.0,
        (
            "modelcycle_alerts_open",
            labels(rule="drift.age > 0.3", severity="critical", state="firing"),
        ): 1.0,
    }


def test_every_rule_selects_a_series_the_collector_exports(exported: list[Any]) -> None:
    """The rules and the collector agree on names and labels, for every kind of figure."""
    figures = [k for k, v in VALUES.items() if v is not None and " " not in k]
    monitor = monitor_row("churn-watch", [f"{f} > 0" for f in figures])
    rules = rules_file([monitor])["groups"][0]["rules"]
    selector = re.compile(r"(\w+)\{([^}]*)\}")
    for rule in rules:
        match = selector.search(rule["expr"])
        assert match is not None, rule["expr"]
        name = match.group(1)
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        assert any(s.name == name and wanted.items() <= s.labels.items() for s in exported), (
            f"{rule['labels'].get('rule')}: nothing exported matches {rule['expr']}"
        )
    assert len(rules) == len(figures) + 1


# --------------------------------------------------------------------------- the dashboard


def _queries(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "definition") and isinstance(v, str)]
        return found + [q for v in node.values() for q in _queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in _queries(v)]
    return []


def test_the_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "modelcycle-monitoring" and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"deployment", "monitor"} <= set(variables)
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 8
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("drift share", "column", "realized", "estimated", "latency", "alerts"):
        assert topic in titles, topic
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert all('monitor=~"$monitor"' in t["expr"] for t in panel["targets"]), panel["title"]


def test_every_metric_the_dashboard_queries_is_exported(exported: list[Any]) -> None:
    queried = {m for q in _queries(json.loads(DASHBOARD.read_text())) for m in METRIC.findall(q)}
    assert len(queried) >= 8
    assert queried - {s.name for s in exported} == set()
