"""The closed loop in one process: an alert starts a maintenance run that retrains on
the data plus feedback-labelled traffic, gates, canaries, then promotes or rolls back;
a refused gate and a failed retrain leave the champion serving; runs are debounced.

The canary's traffic is logged here as a model server would log it, with latencies
chosen per version; `test_loop_e2e.py` drives the same loop through real servers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import modelcycle as mc
from modelcycle.core.errors import ConflictError, NotFoundError, UsageError
from modelcycle.loop.policy import Policy

FEATURES = ["a", "b", "c", "d"]
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=5)


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 0] += shift
    x[:, 1] += shift
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    out = pd.DataFrame(x, columns=FEATURES)
    out["target"] = y
    return out


def add(ws: mc.Workspace, name: str, data: pd.DataFrame, tmp: Path) -> None:
    path = tmp / f"{name}.parquet"
    data.to_parquet(path, index=False)
    ws.datasets.add(name, path)


@pytest.fixture
def loop(tmp_path: Path) -> Any:
    ws = mc.Workspace.create(tmp_path / "ws")
    add(ws, "churn-train", frame(2000, seed=1), tmp_path)
    add(ws, "churn-test", frame(1000, seed=2, shift=1.0), tmp_path)
    spec = {
        "experiment": "churn",
        "data": {"train": "churn-train@latest"},
        "target": "target",
        "model": {"estimator": "logistic_regression"},
        "metrics": ["accuracy"],
        "cv": 2,
    }
    (ws.root / "train.yaml").write_text(yaml.safe_dump(spec))
    (ws.root / "gate.yaml").write_text(
        yaml.safe_dump({"thresholds": {"accuracy": {"min": 0.6}}, "champion_ref": "champion"})
    )
    result = ws.training.train(spec)
    ws.models.register(result.run_id, "churn")
    ws.models.set_alias("churn", "champion", 1)
    ws.deployments.create("churn-live", "churn@champion")
    ws.monitors.create(
        "watch",
        deployment="churn-live",
        reference="churn-train@1",
        checks=["drift"],
        rules=["drift_share > 0.3"],
        window="1h",
        channels=[f"file={tmp_path / 'alerts.jsonl'}"],
    )
    yield ws, tmp_path
    ws.close()


def log(
    ws: mc.Workspace,
    data: pd.DataFrame,
    at: dt.datetime,
    *,
    version: int,
    prefix: str,
    latency_ms: float = 2.0,
    feedback: bool = True,
) -> None:
    model = ws.models.load(f"churn@{version}")
    pred = np.asarray(model.predict(data[FEATURES]))
    with ws.deployments.logger("churn-live", flush_rows=100_000) as logger:
        for i in range(len(data)):
            logger.log(
                {
                    "request_id": f"{prefix}-{i}",
                    "ts": at - dt.timedelta(seconds=60 * i / len(data)),
                    "endpoint": "churn-live",
                    "model": "churn",
                    "version": version,
                    "route": "primary",
                    "inputs": {c: float(data[c].iloc[i]) for c in FEATURES},
                    "outputs": {"prediction": [int(pred[i])]},
                    "latency_ms": latency_ms * (1 + (i % 10) / 100),
                }
            )
    if feedback:
        ws.deployments.feedback.add(
            [{"request_id": f"{prefix}-{i}", "label": int(y)} for i, y in enumerate(data["target"])]
        )


def set_policy(ws: mc.Workspace, **canary: Any) -> None:
    ws.maintenance.set_policy(
        "churn-live",
        {
            "trigger": {"monitors": ["watch"]},
            "retrain": {"train": "train.yaml", "feedback": True, "feedback_window": "1d"},
            "evaluate": {"data": "churn-test@1", "gate": "gate.yaml"},
            "canary": {
                "weight": 20,
                "min_requests": 100,
                "interval": "1m",
                "max_duration": "30m",
                "max_failed_checks": 2,
                **canary,
            },
            "min_interval": "10m",
        },
    )


def drift_alert(ws: mc.Workspace) -> int:
    log(ws, frame(600, seed=3, shift=1.0), T0, version=1, prefix="drifted")
    run = ws.monitors.run("watch", now=T0)
    assert [a.rule for a in run.fired] == ["drift_share > 0.3"]
    return run.fired[0].id


def routes(ws: mc.Workspace) -> list[tuple[str, float | None]]:
    return [(r.ref, r.weight) for r in ws.deployments.status("churn-live").routes]


def test_drift_alert_to_promotion(loop: Any) -> None:
    ws, tmp = loop
    set_policy(ws)
    alert_id = drift_alert(ws)

    # The alert starts a run; it retrains on data + feedback, passes the gate and
    # starts a canary, all in one tick.
    [run] = ws.maintenance.tick(now=T0)
    assert run.state == "running" and run.phase == "canary", run.reason
    assert run.trigger["alert"] == alert_id and run.champion == "churn@1"
    assert run.candidate == "churn@2"
    retrained = run.steps[0]
    assert retrained["step"] == "retrained" and retrained["feedback_rows"] == 600
    assert retrained["data"] == "churn-train@2" and retrained["base_data"] == "churn-train@latest"
    assert ws.datasets.resolve("churn-train@2").num_rows == 2600
    assert run.steps[1]["step"] == "gated" and run.steps[1]["passed"] is True
    assert routes(ws) == [("churn@1", 80.0), ("churn@2", 20.0)]

    # Not due before its interval: nothing happens.
    [same] = ws.maintenance.tick(now=T0 + dt.timedelta(seconds=30))
    assert same.phase == "canary" and len(same.steps) == len(run.steps)

    # Canary traffic: the candidate answers as fast as the champion and more accurately.
    drifted = frame(400, seed=4, shift=1.0)
    t1 = T0 + dt.timedelta(minutes=1)
    log(ws, drifted.iloc[:300], t1, version=1, prefix="champ")
    log(ws, drifted.iloc[300:], t1, version=2, prefix="cand")
    [run] = ws.maintenance.tick(now=t1)
    assert run.state == "promoted", run.reason
    check = next(s for s in run.steps if s["step"] == "canary_check")
    assert check["passed"] and check["candidate_requests"] == 100
    names = {c["name"]: c["passed"] for c in check["conditions"]}
    assert names["latency"] is True and names["accuracy"] is True
    assert ws.models.resolve("churn@champion").version == 2
    assert ws.models.resolve("churn@2").stage == "production"
    assert routes(ws) == [("churn@champion", 100.0)]  # restored: the alias moved
    assert [s["step"] for s in run.steps] == [
        "retrained",
        "gated",
        "canary_started",
        "canary_check",
        "promoted",
    ]
    kinds = [e.kind for e in ws.events(limit=200) if e.kind.startswith("maintenance.")]
    assert kinds == [
        "maintenance.policy_set",
        "maintenance.started",
        "maintenance.retrained",
        "maintenance.gated",
        "maintenance.canary_started",
        "maintenance.canary_check",
        "maintenance.promoted",
    ]
    notices = [json.loads(x) for x in (tmp / "alerts.jsonl").read_text().splitlines()]
    assert notices[-1]["maintenance"]["state"] == "promoted"

    # The same alert does not start a second run.
    assert ws.maintenance.tick(now=t1 + dt.timedelta(hours=1)) == []


def test_a_slow_candidate_is_rolled_back(loop: Any) -> None:
    ws, _ = loop
    set_policy(ws)
    drift_alert(ws)
    [run] = ws.maintenance.tick(now=T0)
    assert run.phase == "canary"
    drifted = frame(200, seed=5, shift=1.0)
    for k in (1, 2):  # two checks, the candidate 5x slower each time
        at = T0 + dt.timedelta(minutes=k)
        log(ws, drifted.iloc[:150], at, version=1, prefix=f"c{k}", feedback=False)
        log(ws, drifted.iloc[150:], at, version=2, prefix=f"n{k}", latency_ms=10.0, feedback=False)
        [run] = ws.maintenance.tick(now=at)
    assert run.state == "rolled_back"
    assert "2 failed canary check(s)" in (run.reason or "") and "p99" in (run.reason or "")
    assert routes(ws) == [("churn@champion", 100.0)]
    assert ws.models.resolve("churn@champion").version == 1  # untouched


def test_not_enough_canary_traffic_rolls_back_at_the_deadline(loop: Any) -> None:
    ws, _ = loop
    set_policy(ws, max_duration="5m")
    drift_alert(ws)
    [run] = ws.maintenance.tick(now=T0)
    [run] = ws.maintenance.tick(now=T0 + dt.timedelta(minutes=6))
    assert run.state == "rolled_back" and "fewer than min_requests" in (run.reason or "")
    assert routes(ws) == [("churn@champion", 100.0)]


def test_a_refused_gate_ends_the_run_and_changes_nothing(loop: Any) -> None:
    ws, _ = loop
    (ws.root / "gate.yaml").write_text(yaml.safe_dump({"thresholds": {"accuracy": {"min": 0.999}}}))
    set_policy(ws)
    drift_alert(ws)
    [run] = ws.maintenance.tick(now=T0)
    assert run.state == "refused" and "accuracy" in (run.reason or "")
    assert run.candidate == "churn@2" and routes(ws) == [("churn@champion", 100.0)]
    assert ws.models.resolve("churn@champion").version == 1


def test_a_failed_retrain_leaves_the_champion_and_is_announced(loop: Any) -> None:
    ws, tmp = loop
    set_policy(ws)
    spec = yaml.safe_load((ws.root / "train.yaml").read_text())
    spec["model"]["params"] = {"C": -1.0}  # LogisticRegression refuses it when fitting
    ws.maintenance.set_policy(
        "churn-live",
        {
            **ws.maintenance.policy("churn-live").to_dict(),
            "retrain": {"train": spec, "feedback": False},
        },
    )
    drift_alert(ws)
    [run] = ws.maintenance.tick(now=T0)
    assert run.state == "failed" and run.phase == "start"
    assert run.steps[-1]["step"] == "failed" and run.candidate is None
    assert routes(ws) == [("churn@champion", 100.0)]
    assert [v.version for v in ws.models.versions("churn")] == [1]
    notices = [json.loads(x) for x in (tmp / "alerts.jsonl").read_text().splitlines()]
    assert notices[-1]["maintenance"]["state"] == "failed"
    assert notices[-1]["severity"] == "critical"


def test_runs_are_debounced_and_policies_checked(loop: Any) -> None:
    ws, _ = loop
    set_policy(ws)
    drift_alert(ws)
    [run] = ws.maintenance.tick(now=T0)
    assert run.running
    with pytest.raises(ConflictError, match="still running"):
        ws.maintenance.start("churn-live", now=T0)
    with pytest.raises(NotFoundError, match="no maintenance policy"):
        ws.maintenance.start("nope")
    with pytest.raises(UsageError, match="unknown key 'wieght'"):
        ws.maintenance.set_policy(
            "churn-live",
            {**ws.maintenance.policy("churn-live").to_dict(), "canary": {"wieght": 5}},
        )
    with pytest.raises(NotFoundError, match="not a monitor"):
        ws.maintenance.set_policy(
            "churn-live",
            {**ws.maintenance.policy("churn-live").to_dict(), "trigger": {"monitors": ["x"]}},
        )
    with pytest.raises(UsageError, match="between 0 and 100"):
        Policy.from_dict(
            {
                "retrain": {"train": {}},
                "evaluate": {"data": "a@1", "gate": {}},
                "canary": {"weight": 100},
            },
            base=ws.root,
        )
