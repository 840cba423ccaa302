"""The platform server as a real process: ``modelcycle server`` on 127.0.0.1 runs monitors
on schedule and answers its JSON API; a real Prometheus (Debian's, as in
``test_serving_ops``) scrapes its /metrics, loads the rules ``modelcycle monitor
prometheus-rules`` wrote (checked by promtool) and fires them; every query of the Grafana
dashboard runs on it.
Every process is started here and stopped by its PID."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from integration_support import cli_env, modelcycle_exe
from sklearn.linear_model import LogisticRegression
from test_serving_support import wait_for
from typer.testing import CliRunner

import modelcycle as mc
from modelcycle.cli.monitor import app as monitor_cli
from modelcycle.store.monitors import AlertChanges
from servers import free_port

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "grafana-monitoring.json"
FEATURES = ["a", "b", "c", "d"]
WATCH = "churn-watch"  # drift rules that fire on the logged traffic
CALM = "churn-calm"  # a rule that does not
FIRING = {
    ("ModelcycleDriftShare", "drift_share > 0.3", "warning"),
    ("ModelcycleColumnDrift", "drift.a > 0.5", "critical"),
}
# The dashboard panel that stays empty here: no monitor has metrics_url (error rates).
EMPTY_PANELS = {"Error rate"}
STOP_TIMEOUT = 30.0


def make_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, :2] += shift
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.7, size=n) > 0).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["target"] = y
    return frame


def build_workspace(base: Path) -> Path:
    """A reference table, a model deployed as churn-live, the last five minutes of its
    traffic (columns a and b shifted) with feedback, and two monitors (one with a history
    of five results)."""
    ws = mc.Workspace.create(base / "ws")
    try:
        reference = make_frame(3000, seed=1)
        reference.to_parquet(base / "ref.parquet")
        ws.datasets.add("churn-ref", base / "ref.parquet")
        model = LogisticRegression().fit(reference[FEATURES], reference["target"])
        with ws.start_run("churn") as run:
            run.set_tag("task", "classification")
            run.set_tag("target", "target")
            run.log_model(
                model, "model", input_example=reference[FEATURES].head(3), register_as="churn"
            )
        ws.deployments.create("churn-live", "churn@1")
        traffic = make_frame(600, seed=3, shift=1.5)
        pred, proba = model.predict(traffic[FEATURES]), model.predict_proba(traffic[FEATURES])
        now = dt.datetime.now(dt.UTC)
        with ws.deployments.logger("churn-live", flush_rows=100_000) as logger:
            for i in range(len(traffic)):
                logger.log(
                    {
                        "request_id": f"r-{i}",
                        "ts": now - dt.timedelta(seconds=300 * i / len(traffic)),
                        "endpoint": "churn-live",
                        "model": "churn",
                        "version": 1,
                        "route": "primary",
                        "inputs": {c: float(traffic[c].iloc[i]) for c in FEATURES},
                        "outputs": {
                            "prediction": [int(pred[i])],
                            "probabilities": [proba[i].tolist()],
                        },
                        "latency_ms": 2.0 + i % 5,
                    }
                )
        ws.deployments.feedback.add(
            [{"request_id": f"r-{i}", "label": int(y)} for i, y in enumerate(traffic["target"])]
        )
        ws.monitors.create(
            WATCH,
            deployment="churn-live",
            reference="churn-ref@1",
            rules=[
                "drift_share > 0.3",
                {"rule": "drift.a > 0.5", "severity": "critical"},
                "estimated_accuracy < 0.5",
                "p99_latency_seconds > 10",
            ],
            schedule="5s",
            window="1h",
        )
        # Five earlier windows of the same traffic: the next run has a volume z-score.
        watch = ws.monitors.store.require(WATCH)
        for hours in range(6, 1, -1):
            ended = now - dt.timedelta(hours=hours)
            ws.monitors.store.add_result(
                watch,
                started_at=ended,
                window_start=ended - dt.timedelta(hours=1),
                window_end=ended,
                status="ok",
                rows=600,
                values={"rows": 600, "requests": 600},
                breaches=[],
                detail_oid=None,
                snapshot=None,
                error=None,
                changes=AlertChanges(),
                at=ended,
            )
        ws.monitors.create(
            CALM,
            deployment="churn-live",
            reference="churn-ref@1",
            checks=["operations"],
            rules=["rows < 1"],
            schedule="1h",
        )
    finally:
        ws.close()
    return base / "ws"


# --------------------------------------------------------------------------- processes


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM by PID, SIGKILL if it does not exit in time; its exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)
        return self.process.returncode


def _spawn(cmd: list[str], log_path: Path, **options: Any) -> Process:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **options,
        )
    return Process(process, log_path)


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


@contextlib.contextmanager
def platform_server(root: Path, folder: Path) -> Iterator[tuple[str, Process]]:
    """``modelcycle server`` for the workspace at ``root`` on a free port, its scheduler
    ticking every 0.2 s; yields its URL and process."""
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        port = free_port()
        cmd = [modelcycle_exe(), "server", "--host", HOST, "--port", str(port), "--tick", "0.2s"]
        server = _spawn(cmd, folder / f"server-{attempt}.log", cwd=root, env=cli_env())
        url = f"http://{HOST}:{port}"
        try:
            wait_for(
                lambda s=server, u=url: s.process.poll() is not None or _answers(u + "/health"),
                45,
                "modelcycle server to answer /health",
            )
        except BaseException:
            server.stop()
            raise
        if server.process.poll() is None:
            break
        if "address already in use" not in server.log():  # only a port clash is retried
            pytest.fail(f"modelcycle server exited:\n{server.log()[-3000:]}")
    else:
        pytest.fail("modelcycle server found no free port in 3 attempts")
    try:
        yield url, server
    finally:
        server.stop()


@contextlib.contextmanager
def prometheus(target: str, rules: Path, folder: Path) -> Iterator[str]:
    """A real Prometheus scraping ``target`` (host:port) every second and evaluating
    ``rules`` every half second; yields its URL."""
    if not (os.path.isfile(PROMETHEUS) and os.access(PROMETHEUS, os.X_OK)):
        pytest.fail(f"{PROMETHEUS} is missing: install Debian's prometheus package")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "  evaluation_interval: 500ms\n"
        f"rule_files:\n  - {json.dumps(str(rules))}\n"
        "scrape_configs:\n  - job_name: modelcycle-platform\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    prom = _spawn(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={HOST}:{port}",
        ],
        folder / "prometheus.log",
    )
    url = f"http://{HOST}:{port}"
    try:
        wait_for(
            lambda: prom.process.poll() is not None or _answers(url + "/-/ready"),
            45,
            "prometheus to be ready",
        )
        if prom.process.poll() is not None:
            pytest.fail(f"prometheus exited:\n{prom.log()[-3000:]}")
        yield url
    finally:
        prom.stop()
        shutil.rmtree(folder / "data", ignore_errors=True)


# --------------------------------------------------------------------------- queries


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    """An instant PromQL query's result; fails the test on a query error."""
    body = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def value(prom: str, expr: str) -> float | None:
    result = query(prom, expr)
    assert len(result) <= 1, (expr, result)
    return float(result[0]["value"][1]) if result else None


def firing(prom: str) -> set[tuple[str, str, str]]:
    alerts = httpx.get(prom + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return {
        (a["labels"]["alertname"], a["labels"].get("rule", ""), a["labels"]["severity"])
        for a in alerts
        if a["state"] == "firing"
    }


def newest(api: httpx.Client, monitor: str) -> dict[str, Any] | None:
    r = api.get(f"/api/v1/monitors/{monitor}", params={"limit": 1})
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results[0] if results else None


# --------------------------------------------------------------------------- the test


def test_server_runs_monitors_and_prometheus_scrapes_its_gauges_and_fires_its_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build_workspace(tmp_path)
    with (
        platform_server(root, tmp_path / "server") as (url, server),
        httpx.Client(base_url=url, timeout=10) as api,
    ):
        # The scheduler runs both monitors: they are due from their creation.
        def ran(monitor: str, figure: str) -> bool:
            found = newest(api, monitor)
            return found is not None and figure in found["values"]

        wait_for(
            lambda: ran(WATCH, "drift_share") and ran(CALM, "requests"),
            30,
            "the scheduler to run both monitors",
        )
        health = api.get("/health").json()
        assert health["status"] == "ok" and health["version"] == mc.__version__
        assert health["scheduler"]["tick_seconds"] == 0.2
        assert health["scheduler"]["ticks"] >= 1 and health["scheduler"]["errors"] == 0

        watch = newest(api, WATCH)
        assert watch is not None and watch["status"] == "breach", watch
        stored = watch["values"]
        assert watch["breaches"] == ["drift_share > 0.3", "drift.a > 0.5"]
        assert stored["drift_share"] > 0.3 and stored["drift.a"] > 0.5
        assert stored["estimated_accuracy"] > 0.5 and stored["labelled_rows"] == 600
        assert stored["volume_zscore"] == 0.0  # the same traffic as in the five windows before
        calm = newest(api, CALM)
        assert calm is not None and calm["status"] == "ok" and calm["breaches"] == []

        # Alerts: the two drift rules fired once each (the runs since keep them open).
        alerts = api.get("/api/v1/alerts", params={"monitor": WATCH}).json()
        assert {(a["rule"], a["severity"], a["state"]) for a in alerts} == {
            ("drift_share > 0.3", "warning", "firing"),
            ("drift.a > 0.5", "critical", "firing"),
        }
        assert len(alerts) == 2
        by_rule = {a["rule"]: a for a in alerts}
        assert by_rule["drift_share > 0.3"]["value"] == stored["drift_share"]
        assert api.get("/api/v1/alerts", params={"monitor": CALM}).json() == []

        # Acknowledge one: it stays open; twice is a conflict; an unknown id is a 404.
        drift_alert = by_rule["drift_share > 0.3"]["id"]
        r = api.post(f"/api/v1/alerts/{drift_alert}/ack", json={"note": "retraining"})
        assert r.status_code == 200, r.text
        acked = r.json()
        assert acked["state"] == "acknowledged" and acked["ack_note"] == "retraining"
        assert acked["acked_by"] and acked["resolved_at"] is None
        r = api.post(f"/api/v1/alerts/{drift_alert}/ack")
        assert r.status_code == 409 and r.json()["error"] == "ConflictError", r.text
        unknown = max(a["id"] for a in alerts) + 1000
        r = api.post(f"/api/v1/alerts/{unknown}/ack")
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "NotFoundError"
        assert r.json()["message"] == f"no alert with id {unknown}" and r.json()["hint"]
        open_alerts = api.get("/api/v1/alerts", params={"open": "true"}).json()
        assert {a["state"] for a in open_alerts} == {"firing", "acknowledged"}
        events = api.get("/api/v1/events", params={"kind": "alert.acknowledged"}).json()
        assert [e["subject"] for e in events] == [WATCH]

        # The rules file for Alertmanager users, checked by promtool.
        rules = tmp_path / "modelcycle-rules.yml"
        monkeypatch.setenv("MODELCYCLE_WORKSPACE", str(root))
        written = CliRunner().invoke(monitor_cli, ["prometheus-rules", "--output", str(rules)])
        assert written.exit_code == 0, (written.output, written.exception)
        assert "Wrote 7 alerting rules for 2 monitor(s)" in written.stdout
        printed = CliRunner().invoke(monitor_cli, ["prometheus-rules"])
        assert printed.exit_code == 0 and printed.stdout == rules.read_text()
        check = subprocess.run(
            [PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, check

        target = url.removeprefix("http://")
        with prometheus(target, rules, tmp_path / "prometheus") as prom:
            # The gauges hold the newest stored figures, to the last digit.
            def agrees(expr: str, figure: str) -> bool:
                found = newest(api, WATCH)
                return found is not None and value(prom, expr) == found["values"][figure]

            sel = f'monitor="{WATCH}"'
            for expr, figure in [
                (f"modelcycle_monitor_drift_share{{{sel}}}", "drift_share"),
                (f'modelcycle_monitor_column_drift_score{{{sel},column="a"}}', "drift.a"),
                (
                    f'modelcycle_monitor_performance{{{sel},metric="accuracy",kind="realized"}}',
                    "accuracy",
                ),
                (
                    f'modelcycle_monitor_performance{{{sel},metric="accuracy",kind="estimated"}}',
                    "estimated_accuracy",
                ),
                (
                    f'modelcycle_monitor_value{{{sel},figure="p99_latency_seconds"}}',
                    "p99_latency_seconds",
                ),
            ]:
                wait_for(lambda e=expr, f=figure: agrees(e, f), 20, f"{expr} to equal {figure}")
            assert value(prom, f"count(modelcycle_alerts_open{{{sel}}})") == 2
            assert value(prom, 'count(modelcycle_alerts_open{state="acknowledged"})') == 1
            assert value(prom, f'count(modelcycle_alerts_open{{monitor="{CALM}"}})') is None
            assert value(prom, f'modelcycle_monitor_status{{{sel},status="breach"}}') == 1
            assert value(prom, f'modelcycle_monitor_status{{monitor="{CALM}",status="ok"}}') == 1
            age = value(prom, f"time() - modelcycle_monitor_last_run_timestamp_seconds{{{sel}}}")
            assert age is not None and -1 < age < 15

            # Prometheus fires the two drift rules after their `for` (1 run × 5 s) and
            # nothing else: not the rules that hold, not staleness.
            wait_for(lambda: firing(prom) == FIRING, 30, f"prometheus to fire {FIRING}")
            alerts = httpx.get(prom + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            column = next(a for a in alerts if a["labels"]["alertname"] == "ModelcycleColumnDrift")
            assert column["labels"]["monitor"] == WATCH
            assert column["labels"]["deployment"] == "churn-live"
            assert column["labels"]["column"] == "a"
            assert column["annotations"]["summary"] == (
                f"drift.a > 0.5 on deployment churn-live (monitor {WATCH})"
            )
            assert column["annotations"]["description"].startswith(
                f"drift.a is {stored['drift.a']:.4g} (drift.a > 0.5) on deployment churn-live"
            )

            # Every query of the Grafana dashboard runs, and shows data where there is some.
            dashboard = json.loads(DASHBOARD.read_text())
            empty = set()
            for panel in dashboard["panels"]:
                for t in panel["targets"]:
                    expr = re.sub(r"\$(monitor|deployment|metric)\b", ".*", t["expr"])
                    if not query(prom, expr):
                        empty.add(panel["title"])
            assert empty == EMPTY_PANELS

        # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught
        assert server.stop() == -signal.SIGTERM
        log = server.log()
        assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]
