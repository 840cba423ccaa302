"""Monitors on a deployment's logged traffic: drift, realized and estimated performance,
operations from the prediction log; alert rules with debounce, cool-down, acknowledge
and resolve; no-data windows; bad settings refused with nothing stored."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import modelcycle as mc
from modelcycle.core.errors import ConflictError, InputDataError, NotFoundError, UsageError
from modelcycle.monitoring.rules import parse_duration, parse_rule

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
FEATURES = ["a", "b", "c", "d"]


def make_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 0] += shift
    x[:, 1] += shift
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.7, size=n) > 0).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["target"] = y
    return frame


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    ws = mc.Workspace.create(tmp_path / "ws")
    reference = make_frame(3000, seed=1)
    reference.to_parquet(tmp_path / "ref.parquet")
    ws.datasets.add("churn-ref", tmp_path / "ref.parquet")
    model = LogisticRegression().fit(reference[FEATURES], reference["target"])
    with ws.start_run("churn") as run:
        run.set_tag("task", "classification")
        run.set_tag("target", "target")
        run.log_model(
            model, "model", input_example=reference[FEATURES].head(3), register_as="churn"
        )
    ws.deployments.create("churn-live", "churn@1")
    yield ws, model
    ws.close()


def log_traffic(
    ws: mc.Workspace,
    model: LogisticRegression,
    frame: pd.DataFrame,
    at: dt.datetime,
    *,
    prefix: str,
    latency_ms: float = 2.0,
) -> list[str]:
    """Log one request per row, as a model server would, ``at`` minus up to 10 minutes."""
    x = frame[FEATURES]
    pred = model.predict(x)
    proba = model.predict_proba(x)
    ids = []
    with ws.deployments.logger("churn-live", flush_rows=100_000) as logger:
        for i in range(len(frame)):
            rid = f"{prefix}-{i}"
            ids.append(rid)
            logger.log(
                {
                    "request_id": rid,
                    "ts": at - dt.timedelta(seconds=600 * i / len(frame)),
                    "endpoint": "churn-live",
                    "model": "churn",
                    "version": 1,
                    "route": "primary",
                    "inputs": {c: float(frame[c].iloc[i]) for c in FEATURES},
                    "outputs": {"prediction": [int(pred[i])], "probabilities": [proba[i].tolist()]},
                    "latency_ms": latency_ms,
                }
            )
    return ids


def test_drift_alert_debounce_ack_resolve_and_cooldown(setup: Any, tmp_path: Path) -> None:
    ws, model = setup
    alerts_file = tmp_path / "alerts" / "alerts.jsonl"
    info = ws.monitors.create(
        "churn-watch",
        deployment="churn-live",
        reference="churn-ref@latest",
        checks=["drift", "operations"],
        rules=[{"rule": "drift_share > 0.3", "for": 2, "cooldown": "3h"}, "rows < 1"],
        window="1h",
        channels=[f"file={alerts_file}"],
    )
    assert info.row.reference == "churn-ref@1"  # pinned when created
    assert info.to_dict()["channels"] == [{"type": "file", "target": f"file {alerts_file}"}]
    assert [r.text for r in info.rules] == ["drift_share > 0.3", "rows < 1"]

    # 1. Traffic like the reference: no drift, nothing fires.
    log_traffic(ws, model, make_frame(800, seed=2), T0, prefix="calm")
    run = ws.monitors.run("churn-watch", now=T0)
    assert run.status == "ok", run.result.error
    assert run.result.rows == 800 and run.result.values["requests"] == 800
    assert run.result.values["drift_share"] < 0.3 and not run.fired
    assert run.result.values["p99_latency_seconds"] == pytest.approx(0.002)
    drift = run.detail["drift"]
    assert {c["column"] for c in drift["columns"]} == set(FEATURES)

    # 2. Two of four columns shifted: breached, but `for: 2` waits for a second run.
    t1 = T0 + dt.timedelta(hours=2)
    log_traffic(ws, model, make_frame(800, seed=3, shift=1.5), t1, prefix="drift1")
    run = ws.monitors.run("churn-watch", now=t1)
    assert run.status == "breach" and run.result.breaches == ["drift_share > 0.3"]
    assert run.result.values["drift_share"] == pytest.approx(0.5)
    assert run.result.values["drift.a"] > 0.1 and run.result.values["drift.c"] < 0.1
    assert run.fired == []

    t2 = t1 + dt.timedelta(minutes=15)
    run = ws.monitors.run("churn-watch", now=t2)  # same window mostly: still drifted
    assert [a.rule for a in run.fired] == ["drift_share > 0.3"]
    alert = run.fired[0]
    assert alert.state == "firing" and alert.value == pytest.approx(0.5)
    assert "drift_share is 0.5" in alert.message and "churn-live" in alert.message

    # The file channel got the alert with its evidence; the event log too.
    lines = [json.loads(x) for x in alerts_file.read_text().splitlines()]
    assert [x["id"] for x in lines] == [alert.id]
    assert lines[0]["evidence"]["result_id"] == run.result.id
    assert any(e.kind == "alert.fired" for e in ws.events(kind="alert.fired"))

    # 3. Still breached: the open alert stays, no second one.
    run = ws.monitors.run("churn-watch", now=t2 + dt.timedelta(minutes=1))
    assert run.fired == [] and run.result.breaches == ["drift_share > 0.3"]
    assert len(ws.monitors.alerts(monitor="churn-watch")) == 1

    # 4. Acknowledged: still open; twice is refused.
    acked = ws.monitors.acknowledge(alert.id, note="looking")
    assert acked.state == "acknowledged" and acked.acked_by == ws.actor
    with pytest.raises(ConflictError, match="acknowledged already"):
        ws.monitors.acknowledge(alert.id)
    with pytest.raises(NotFoundError):
        ws.monitors.acknowledge(alert.id + 100)

    # 5. Traffic back to normal: the alert resolves.
    t3 = t2 + dt.timedelta(hours=2)
    log_traffic(ws, model, make_frame(800, seed=4), t3, prefix="calm2")
    run = ws.monitors.run("churn-watch", now=t3)
    assert run.status == "ok" and run.resolved == [alert.id]
    assert ws.monitors.alerts(monitor="churn-watch", open_only=True) == []

    # 6. Drift again within the cool-down (3 h since the alert fired): breached, no alert.
    t4 = t3 + dt.timedelta(minutes=50)
    log_traffic(ws, model, make_frame(800, seed=5, shift=1.5), t4, prefix="drift2")
    run = ws.monitors.run("churn-watch", now=t4)
    t5 = t4 + dt.timedelta(minutes=5)
    run = ws.monitors.run("churn-watch", now=t5)
    assert run.result.breaches == ["drift_share > 0.3"] and run.fired == []
    # After the cool-down it fires again.
    t6 = t2 + dt.timedelta(hours=3, minutes=1)
    log_traffic(ws, model, make_frame(400, seed=6, shift=1.5), t6, prefix="drift3")
    run = ws.monitors.run("churn-watch", now=t6)
    assert [a.rule for a in run.fired] == ["drift_share > 0.3"]

    # 7. A window without traffic: "no data"; the drift rule is neither checked nor
    # cleared (its alert stays open), and only the rule asking about traffic fires.
    t7 = t6 + dt.timedelta(days=1)
    run = ws.monitors.run("churn-watch", now=t7)
    assert run.status == "no_data" and run.result.rows == 0
    assert "drift_share" not in run.result.values and run.resolved == []
    assert [a.rule for a in run.fired] == ["rows < 1"]
    open_rules = {a.rule for a in ws.monitors.alerts(monitor="churn-watch", open_only=True)}
    assert open_rules == {"drift_share > 0.3", "rows < 1"}

    results = ws.monitors.results("churn-watch")
    assert [r.status for r in results][:2] == ["no_data", "breach"]
    assert ws.monitors.get("churn-watch").last is not None


def test_realized_and_estimated_performance(setup: Any) -> None:
    ws, model = setup
    ws.monitors.create(
        "churn-perf",
        deployment="churn-live",
        reference="churn-ref@1",
        checks=["performance", "estimated_performance"],
        rules=["accuracy < 0.8"],
    )
    # Covariate shift: the model's accuracy drops; labels arrive for every request.
    frame = make_frame(2000, seed=7, shift=-1.0)
    ids = log_traffic(ws, model, frame, T0, prefix="p")
    run = ws.monitors.run("churn-perf", now=T0)
    assert run.status == "ok", run.result.error
    assert "accuracy" not in run.result.values and run.result.values["labelled_rows"] == 0
    estimated = run.result.values["estimated_accuracy"]
    assert 0.5 < estimated < 1.0

    # Labels for every request; a fifth flipped so the realized accuracy is low.
    truth = frame["target"].to_numpy().copy()
    flip = np.arange(len(truth)) % 5 == 0
    truth[flip] = 1 - truth[flip]
    ws.deployments.feedback.add(
        [{"request_id": rid, "label": int(y)} for rid, y in zip(ids, truth, strict=True)]
    )
    run = ws.monitors.run("churn-perf", now=T0 + dt.timedelta(minutes=1))
    expected = float((model.predict(frame[FEATURES]) == truth).mean())
    assert run.result.values["labelled_rows"] == 2000
    assert run.result.values["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert expected < 0.8 and [a.rule for a in run.fired] == ["accuracy < 0.8"]
    # Without flipped labels the estimate tracks the realized accuracy.
    honest = float((model.predict(frame[FEATURES]) == frame["target"]).mean())
    assert abs(run.result.values["estimated_accuracy"] - honest) < 0.03


def test_channel_secrets_are_never_shown(setup: Any) -> None:
    ws, _ = setup
    info = ws.monitors.create(
        "quiet",
        deployment="churn-live",
        reference="churn-ref@1",
        channels=[
            {"type": "webhook", "url": "https://hooks.example/a/SECRETPATH", "secret": "S3CR3T"},
            "slack=https://hooks.slack.com/services/T000/B000/XXXXSECRET",
        ],
    )
    shown = json.dumps(info.to_dict()) + json.dumps([e.payload for e in ws.events()])
    for secret in ("S3CR3T", "SECRETPATH", "XXXXSECRET"):
        assert secret not in shown
    assert [c["type"] for c in info.to_dict()["channels"]] == ["webhook", "slack"]


def test_bad_settings_are_refused_and_store_nothing(setup: Any) -> None:
    ws, _ = setup
    ok = {"deployment": "churn-live", "reference": "churn-ref@1"}
    with pytest.raises(UsageError, match="unknown metric 'drift_shar'"):
        ws.monitors.create("m", rules=["drift_shar > 0.3"], **ok)
    with pytest.raises(UsageError, match="cannot read alert rule"):
        ws.monitors.create("m", rules=["drift_share >> 0.3"], **ok)
    with pytest.raises(UsageError, match=r"unknown check 'drfit'.*drift"):
        ws.monitors.create("m", checks=["drfit"], **ok)
    with pytest.raises(UsageError, match="not a duration"):
        ws.monitors.create("m", schedule="soon", **ok)
    with pytest.raises(NotFoundError):
        ws.monitors.create("m", deployment="nope", reference="churn-ref@1")
    with pytest.raises(NotFoundError):
        ws.monitors.create("m", deployment="churn-live", reference="nope@1")
    assert ws.monitors.list() == []
    ws.monitors.create("m", **ok)
    with pytest.raises(ConflictError, match="exists already"):
        ws.monitors.create("m", **ok)
    ws.monitors.delete("m")
    assert ws.monitors.list() == []
    with pytest.raises(NotFoundError, match="no monitor named 'm'"):
        ws.monitors.run("m")
    ws.monitors.create("m", **ok)  # a deleted monitor's name can be used again


def test_a_failing_check_is_recorded_and_the_scheduler_goes_on(setup: Any) -> None:
    ws, model = setup
    ws.monitors.create(
        "ops",
        deployment="churn-live",
        reference="churn-ref@1",
        checks=["operations"],
        metrics_url="http://127.0.0.1:9/metrics",  # nothing listens on the discard port
        schedule="10m",
    )
    ws.monitors.create("drift", deployment="churn-live", reference="churn-ref@1", checks=["drift"])
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)  # both are due from creation
    log_traffic(ws, model, make_frame(300, seed=8), now, prefix="s")
    runs = {r.monitor: r for r in ws.monitors.run_due(now=now)}
    assert runs["ops"].status == "error" and "127.0.0.1:9" in (runs["ops"].result.error or "")
    assert runs["drift"].status == "ok"
    # Claimed: not due again until its schedule comes round.
    assert ws.monitors.run_due(now=now + dt.timedelta(minutes=5)) == []
    again = ws.monitors.run_due(now=now + dt.timedelta(minutes=10))
    assert [r.monitor for r in again] == ["ops"]


def test_rules_and_durations_parse() -> None:
    rule = parse_rule({"rule": "p99_latency_seconds>0.5", "for": 3, "severity": "critical"})
    assert (rule.metric, rule.op, rule.threshold, rule.debounce) == (
        "p99_latency_seconds",
        ">",
        0.5,
        3,
    )
    assert rule.breached(0.6) is True and rule.breached(0.5) is False
    assert rule.breached(None) is None and rule.breached(float("nan")) is None
    assert parse_duration("15m", "x") == 900 and parse_duration("1.5h", "x") == 5400
    assert parse_duration(30, "x") == 30
    with pytest.raises(UsageError, match="whole number"):
        parse_rule({"rule": "rows < 1", "for": 0})
    with pytest.raises(UsageError, match="severity"):
        parse_rule({"rule": "rows < 1", "severity": "loud"})
    with pytest.raises(UsageError, match="unknown key 'cooldwn'"):
        parse_rule({"rule": "rows < 1", "cooldwn": "1h"})


def test_drift_against_a_deployments_logged_traffic(setup: Any) -> None:
    ws, model = setup
    two_minutes_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    log_traffic(ws, model, make_frame(600, seed=9, shift=1.5), two_minutes_ago, prefix="live")
    result = ws.drift("churn-ref@1", "deployment:churn-live")
    assert [c.column for c in result.checked] == FEATURES
    assert result.current_rows == 600 and result.drifted_columns == ["a", "b"]
    assert result.drift_share == pytest.approx(0.5)
    with pytest.raises(UsageError, match="names no deployment"):
        ws.drift("churn-ref@1", "deployment:")
    with pytest.raises(InputDataError, match="logged no prediction in the last 1s"):
        ws.drift("churn-ref@1", "deployment:churn-live:1s")
