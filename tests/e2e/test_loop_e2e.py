"""The closed loop with real processes, both branches.

A model server (``modelcycle serve --deployment``) answers drifted traffic from client
threads that also send the ground truth back (``POST /v1/feedback``); the platform
server (``modelcycle server``) runs the drift monitor and the maintenance loop on its
scheduler. The monitor alerts, the policy retrains on the data plus the feedback, the
candidate passes the gate, gets a canary share of the traffic and is promoted: the
alias moves and the model server swaps to it. Then a deliberately slow candidate (a
random forest of 800 trees, ~30× the champion's latency) is started by hand: its canary
fails the latency check and it is rolled back. No client request fails at any point.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

import modelcycle as mc
from servers import free_port

HOST = "127.0.0.1"
FEATURES = ["a", "b", "c", "d"]
START_TIMEOUT = 90.0
LOOP_TIMEOUT = 240.0
MODELCYCLE = [sys.executable, "-c", "from modelcycle.cli import main; main()"]


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 0] += shift
    x[:, 1] += shift
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    out = pd.DataFrame(x, columns=FEATURES)
    out["target"] = y
    return out


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


@contextlib.contextmanager
def started(args: list[str], root: Path, ready: str, name: str) -> Iterator[Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELCYCLE_")}
    env["MODELCYCLE_WORKSPACE"] = str(root)
    port = free_port()
    log_path = root.parent / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*MODELCYCLE, *args, "--host", HOST, "--port", str(port)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    proc = Process(process, f"http://{HOST}:{port}", log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited early:\n{proc.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(proc.url + ready, timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not become ready:\n{proc.log()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.stop()


@dataclass
class Traffic:
    """Client threads sending one drifted row per request, then its label."""

    url: str
    data: pd.DataFrame
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, worker: int) -> None:
        labels: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            i = worker
            while not self.stop.is_set():
                row = self.data.iloc[i % len(self.data)]
                rid = f"w{worker}-{i}"
                try:
                    r = client.post(
                        "/v1/models/churn-live/predict",
                        json={"records": [{c: float(row[c]) for c in FEATURES}]},
                        headers={"x-request-id": rid},
                    )
                except httpx.HTTPError as e:
                    with self.lock:
                        self.failures.append(f"{rid}: {type(e).__name__}: {e}")
                    continue
                with self.lock:
                    self.statuses[r.status_code] += 1
                    if r.status_code == 200:
                        self.versions[int(r.json()["version"])] += 1
                    else:
                        self.failures.append(f"{rid}: {r.status_code} {r.text[:200]}")
                labels.append({"request_id": rid, "label": int(row["target"])})
                if len(labels) >= 25:
                    fb = client.post("/v1/feedback", json=labels)
                    if fb.status_code != 202:
                        with self.lock:
                            self.failures.append(f"feedback: {fb.status_code} {fb.text[:200]}")
                    labels = []
                i += 2
                time.sleep(0.002)

    @contextlib.contextmanager
    def running(self) -> Iterator[Traffic]:
        threads = [threading.Thread(target=self.run, args=(w,), daemon=True) for w in (0, 1)]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=60)

    def answered_by(self) -> dict[int, int]:
        with self.lock:
            return dict(self.versions)


def wait_for_run(root: Path, state: str, after: int, what: str) -> Any:
    deadline = time.monotonic() + LOOP_TIMEOUT
    while time.monotonic() < deadline:
        with mc.Workspace.open(root) as ws:
            runs = [r for r in ws.maintenance.list() if r.id > after]
        done = [r for r in runs if not r.running]
        if done:
            assert done[0].state == state, (done[0].state, done[0].reason, done[0].steps)
            return done[0]
        time.sleep(0.5)
    pytest.fail(f"timed out after {LOOP_TIMEOUT} s waiting for {what}; runs: {runs}")


def test_drift_retrain_canary_promote_then_a_slow_candidate_is_rolled_back(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ws"
    ws = mc.Workspace.create(root)
    for name, data in (
        ("churn-train", frame(2000, seed=1)),
        ("churn-test", frame(1000, seed=2, shift=1.0)),
    ):
        data.to_parquet(tmp_path / f"{name}.parquet", index=False)
        ws.datasets.add(name, tmp_path / f"{name}.parquet")
    spec = {
        "experiment": "churn",
        "data": {"train": "churn-train@latest"},
        "target": "target",
        "model": {"estimator": "logistic_regression"},
        "cv": 2,
    }
    slow = {**spec, "model": {"estimator": "random_forest", "params": {"n_estimators": 800}}}
    slow["model"]["params"]["max_depth"] = 8
    (root / "train.yaml").write_text(yaml.safe_dump(spec))
    (root / "train-slow.yaml").write_text(yaml.safe_dump(slow))
    (root / "gate.yaml").write_text(yaml.safe_dump({"thresholds": {"accuracy": {"min": 0.6}}}))
    ws.models.register(ws.training.train(spec).run_id, "churn")
    ws.models.set_alias("churn", "champion", 1)
    ws.deployments.create("churn-live", "churn@champion")
    ws.close()

    serve_args = ["serve", "--deployment", "churn-live", "--workers", "1"]
    serve_args += ["--poll-interval-s", "0.2"]
    with started(serve_args, root, "/v2/health/ready", "serve") as model_server:
        with mc.Workspace.open(root) as ws:
            ws.monitors.create(
                "watch",
                deployment="churn-live",
                reference="churn-train@1",
                checks=["drift"],
                rules=["drift_share > 0.3"],
                schedule="1s",
                window="1h",
            )
            canary: dict[str, Any] = {
                "weight": 25,
                "min_requests": 60,
                "interval": "1s",
                "max_duration": "3m",
                "p99_factor": 3.0,
                "max_failed_checks": 2,
                "metrics_url": model_server.url + "/metrics",
            }
            policy = {
                "trigger": {"monitors": ["watch"]},
                "retrain": {"train": "train.yaml", "feedback": True, "feedback_window": "1h"},
                "evaluate": {"data": "churn-test@1", "gate": "gate.yaml"},
                "canary": canary,
                "min_interval": "1s",
            }
            ws.maintenance.set_policy("churn-live", policy)

        traffic = Traffic(model_server.url, frame(5000, seed=3, shift=1.5))
        platform_args = ["server", "--tick", "0.5s"]
        with started(platform_args, root, "/health", "platform"), traffic.running():
            # Branch 1: the drift alert starts a run; the retrained candidate is promoted.
            promoted = wait_for_run(root, "promoted", 0, "the first maintenance run")
            assert promoted.trigger["rule"] == "drift_share > 0.3"
            assert promoted.candidate == "churn@2" and promoted.champion == "churn@1"
            assert promoted.steps[0]["feedback_rows"] > 0
            seen = traffic.answered_by()
            assert seen.get(2, 0) >= 60  # the canary, then everything once promoted
            before = seen.get(2, 0)
            deadline = time.monotonic() + 30
            while traffic.answered_by().get(2, 0) < before + 50:
                assert time.monotonic() < deadline, "the server did not swap to churn@2"
                time.sleep(0.1)

            # Branch 2: a slow candidate, started by hand, fails its canary.
            with mc.Workspace.open(root) as ws:
                assert ws.models.resolve("churn@champion").version == 2
                # Far more requests than it could serve before the checks decide: on a
                # busy machine one latency check may pass (the champion's p99 over a
                # second's requests jumps too), and 60 requests were then enough to promote.
                slow_policy = {
                    **policy,
                    "retrain": {"train": "train-slow.yaml", "feedback": False},
                    "canary": {**canary, "min_requests": 1000},
                }
                ws.maintenance.set_policy("churn-live", slow_policy)
                started_run = ws.maintenance.start("churn-live")
                assert started_run.phase == "canary", (started_run.reason, started_run.steps)
                assert started_run.candidate == "churn@3"
            rolled = wait_for_run(root, "rolled_back", promoted.id, "the slow candidate's run")
            assert "p99" in (rolled.reason or "")
            assert traffic.answered_by().get(3, 0) > 0  # the canary did get traffic
            time.sleep(1.0)  # requests in flight when the routes were restored finish

        with mc.Workspace.open(root) as ws:
            assert ws.models.resolve("churn@champion").version == 2
            status = ws.deployments.status("churn-live")
            assert [(r.ref, r.weight) for r in status.routes] == [("churn@champion", 100.0)]
            alerts = ws.monitors.alerts(monitor="watch")
            assert alerts and alerts[-1].rule == "drift_share > 0.3"
        assert traffic.failures == [], traffic.failures[:5]
        assert set(traffic.statuses) == {200} and traffic.statuses[200] > 200
