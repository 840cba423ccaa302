"""The model server in operation: several workers scraped by a real Prometheus, graceful
shutdown, following an alias under load, and micro-batching. Each test starts its own
server process and stops it by PID."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from integration_support import cli_env
from test_serving_support import (
    HOST,
    ServingWorkspace,
    accepted_nodelay,
    iris_rows,
    metric,
    process_tree,
    read_response,
    records,
    running,
    serving_workspace,
    status_of,
    wait_for,
)

from servers import free_port

pytestmark = pytest.mark.slow

PROMETHEUS = "/usr/bin/prometheus"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> ServingWorkspace:
    return serving_workspace(tmp_path_factory)


# --------------------------------------------------------------------------- workers + Prometheus


@contextlib.contextmanager
def prometheus(target_port: int, folder: Path) -> Iterator[str]:
    """A real Prometheus scraping 127.0.0.1:target_port every second; yields its URL."""
    if not (os.path.isfile(PROMETHEUS) and os.access(PROMETHEUS, os.X_OK)):
        pytest.fail(f"{PROMETHEUS} is missing: install Debian's prometheus package")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: modelcycle\n    static_configs:\n"
        f"      - targets: ['{HOST}:{target_port}']\n"
    )
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={HOST}:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://{HOST}:{port}"
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited: {(folder / 'prometheus.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url + "/-/ready", timeout=2).status_code == 200
            return False

        wait_for(ready, 60, "prometheus to be ready")
        yield url
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        log.close()
        shutil.rmtree(folder / "data", ignore_errors=True)


def _query(url: str, expr: str) -> float | None:
    r = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=5)
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_two_workers_scraped_by_prometheus(ws: ServingWorkspace, tmp_path: Path) -> None:
    args = ["iris@champion", "diabetes", "--workers", "2"]
    with running(ws, args, tmp_path / "server") as server:
        workers = [p for p in process_tree(server.pid) if p != server.pid and _is_worker(p)]
        assert len(workers) == 2, workers
        with prometheus(server.port, tmp_path / "prometheus") as prom:
            sent = 0
            # many connections, so both workers answer some
            with ThreadPoolExecutor(8) as pool:
                bodies = [{"inputs": iris_rows(1 + i % 3).tolist()} for i in range(60)]

                def post(body: dict[str, Any]) -> int:
                    with httpx.Client(base_url=server.url) as c:
                        return c.post("/invocations", json=body).status_code

                statuses = list(pool.map(post, bodies))
            assert statuses == [200] * len(bodies)
            sent += len(bodies)
            with httpx.Client(base_url=server.url) as c:
                for _ in range(10):
                    r = c.post("/v1/models/diabetes/predict", json={"inputs": [[0.0] * 10]})
                    assert r.status_code == 200
                    sent += 1
            wait_for(
                lambda: _query(prom, "sum(modelcycle_requests_total)") == sent,
                60,
                f"prometheus to see {sent} requests",
            )
            by_endpoint = _query(prom, 'sum(modelcycle_requests_total{endpoint="invocations"})')
            assert by_endpoint == len(bodies)
            assert _query(prom, "sum(modelcycle_request_duration_seconds_count)") == sent
            assert _query(prom, 'sum(modelcycle_predictions_total{model="iris"})') == sum(
                len(b["inputs"]) for b in bodies
            )
        # accepted sockets have TCP_NODELAY in whichever worker took them (uvicorn's
        # multi-process socket is the case asyncio misses)
        for _ in range(4):
            with socket.create_connection((HOST, server.port)) as sock:
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                assert status_of(read_response(sock)) == 200
                assert accepted_nodelay(server, sock) == 1


def _is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"multiprocessing" in cmdline and b"spawn_main" in cmdline


# --------------------------------------------------------------------------- graceful shutdown


def test_sigterm_finishes_requests_in_flight(ws: ServingWorkspace, tmp_path: Path) -> None:
    with running(ws, ["sleepy", "--workers", "1", "--timeout-s", "20"], tmp_path) as server:
        result: dict[str, Any] = {}

        def slow_request() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                r = c.post("/v1/models/sleepy/predict", json={"inputs": [[1.5, 1, 1, 1]]})
                result["status"], result["body"] = r.status_code, r.json()

        thread = threading.Thread(target=slow_request)
        thread.start()
        wait_for(
            lambda: metric(server, "modelcycle_requests_in_flight") == 1, 10, "a request in flight"
        )
        os.kill(server.pid, signal.SIGTERM)
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert result == {
            "status": 200,
            "body": {
                "model": "sleepy",
                "version": 1,
                "predictions": [4.5],
                "request_id": result["body"]["request_id"],
            },
        }
        # uvicorn ends by raising the signal it caught again, once it has shut down
        assert server.process.wait(timeout=30) == -signal.SIGTERM
        log = server.log()
        assert "Application shutdown complete" in log and "Finished server process" in log
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/v2/health/live")


# --------------------------------------------------------------------------- hot swap


def test_moving_an_alias_under_load_fails_no_request(ws: ServingWorkspace, tmp_path: Path) -> None:
    args = ["swap@champion", "--workers", "1", "--poll-interval-s", "0.2"]
    with running(ws, args, tmp_path) as server, ws.open() as w:
        w.models.set_alias("swap", "champion", 1)
        seen: list[tuple[int, int | None]] = []
        stop = threading.Event()
        body = {"records": records(iris_rows()[::10])}

        def served_version() -> int:
            return int(httpx.get(server.url + "/v1/models/swap").json()["version"])

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                while not stop.is_set() and len(seen) < 20_000:
                    r = c.post("/v1/models/swap/predict", json=body)
                    seen.append((r.status_code, r.json().get("version")))

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: (200, 1) in seen, 30, "swap@1 to answer")
            for version in (2, 1, 2):
                w.models.set_alias("swap", "champion", version)
                wait_for(
                    lambda v=version: served_version() == v, 30, f"swap@{version} to be served"
                )
                mark = len(seen)
                wait_for(
                    lambda v=version, m=mark: (200, v) in seen[m:], 30, f"swap@{version} to answer"
                )
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        statuses = {s for s, _ in seen}
        assert statuses == {200}, f"{len(seen)} requests: {statuses}"
        versions = [v for _, v in seen]
        changes = sum(1 for a, b in itertools.pairwise(versions) if a != b)
        assert {1, 2} <= set(versions) and changes >= 3
        assert metric(server, "modelcycle_route_table_swaps_total") == 3
        assert httpx.get(server.url + "/v1/models/swap").json()["ref"] == "swap@champion"
    with ws.open() as w:
        w.models.set_alias("swap", "champion", 1)


# --------------------------------------------------------------------------- batching


def test_batching_gives_the_same_predictions(ws: ServingWorkspace, tmp_path: Path) -> None:
    """Concurrent requests batched together get what the model answers for each alone."""
    from sklearn.datasets import load_diabetes

    rng = np.random.default_rng(0)
    rows, drows = iris_rows(), load_diabetes().data
    requests = [rows[rng.choice(len(rows), size=1 + i % 4)] for i in range(80)]
    dreq = [drows[rng.choice(len(drows), size=1 + i % 3)] for i in range(40)]
    local = threading.local()
    clients: list[httpx.Client] = []
    args = ["iris@champion", "diabetes", "--workers", "1"]
    args += ["--max-batch-size", "32", "--max-latency-ms", "20"]
    with running(ws, args, tmp_path) as server:

        def post(path: str, x: np.ndarray[Any, Any]) -> Any:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=server.url, timeout=30)
                clients.append(local.client)
            r = local.client.post(path, json={"inputs": x.tolist()})
            assert r.status_code == 200, r.text
            return r.json()

        try:
            with ThreadPoolExecutor(16) as pool:
                iris = list(pool.map(lambda x: post("/v1/models/iris/predict", x), requests))
                diabetes = list(pool.map(lambda x: post("/invocations?model=diabetes", x), dreq))
        finally:
            for c in clients:
                c.close()
        rows_sent = sum(len(r) for r in requests) + sum(len(r) for r in dreq)
        assert metric(server, "modelcycle_batch_size_sum") == rows_sent
        assert 0 < metric(server, "modelcycle_batch_size_count") <= len(requests) + len(dreq)
        waits = metric(server, "modelcycle_batch_queue_wait_seconds_count")
        assert waits == len(requests) + len(dreq)
    with ws.open() as w:
        iris_model, diabetes_model = w.models.load("iris@1"), w.models.load("diabetes@1")
    # Classes are identical. Probabilities and regression values are the same numbers up to
    # the last bits: BLAS sums a row's products in an order that depends on the batch size.
    for got, x in zip(iris, requests, strict=True):
        assert got["predictions"] == iris_model.predict(x).tolist()
        assert (got["model"], got["version"], got["classes"]) == ("iris", 1, [0, 1, 2])
        want = iris_model.predict_proba(x)
        assert np.allclose(got["probabilities"], want, rtol=1e-12, atol=0)
    for got, x in zip(diabetes, dreq, strict=True):
        assert np.allclose(got["predictions"], diabetes_model.predict(x), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- the command


def test_the_command_fails_before_listening_with_a_clear_error(ws: ServingWorkspace) -> None:
    env = cli_env(MODELCYCLE_WORKSPACE=str(ws.root), PYTHONPATH=str(ws.models_dir))
    cases = [
        (["nope@1"], 3, "no model named 'nope'"),
        (["sleepy", "--workers", "2"], 2, "serve with --trust mc_serving_test_models:Sleepy"),
        (["iris@1", "iris@2"], 2, "serve one version per model"),
    ]
    for args, code, message in cases:
        cmd = [sys.executable, "-m", "modelcycle.serving", *args, "--port", str(free_port())]
        result = subprocess.run(
            cmd, env=env, cwd=ws.root, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == code, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- deployments


def test_a_deployment_is_served_with_its_shadow_logged(
    ws: ServingWorkspace, tmp_path: Path
) -> None:
    """``--deployment``: the deployment's routes and shadow, every prediction in the
    workspace's prediction log (written when the server stops), feedback joined to it."""
    with ws.open() as w:
        w.deployments.create("iris-live", "iris@1")
        w.deployments.shadow("iris-live", ["iris@2"])
    rows = iris_rows()[::30]
    with running(ws, ["--deployment", "iris-live", "--workers", "1"], tmp_path) as server:
        listing = httpx.get(server.url + "/v1/models").json()
        assert listing["deployment"] == "iris-live"
        (endpoint,) = listing["models"]
        assert endpoint["name"] == "iris-live"
        assert [(r["ref"], r["version"]) for r in endpoint["routes"]] == [("iris@1", 1)]
        assert [s["version"] for s in endpoint["shadows"]] == [2]
        with httpx.Client(base_url=server.url) as c:
            for i in range(3):
                r = c.post(
                    "/v1/models/iris-live/predict",
                    json={"records": records(rows)},
                    headers={"x-request-id": f"dep-{i}"},
                )
                assert r.status_code == 200 and r.json()["version"] == 1
            r = c.post("/v1/feedback", json=[{"request_id": "dep-0", "row": 1, "label": 0}])
            assert r.status_code == 202
            wait_for(
                lambda: metric(server, "modelcycle_requests_total", endpoint="shadow") == 3,
                30,
                "the shadow to answer three copies",
            )
    with ws.open() as w:
        logged = w.deployments.predictions("iris-live").to_pandas()
        joined = w.deployments.feedback.join("iris-live").to_pandas()
    assert len(logged) == 2 * 3 * len(rows)  # primary and shadow, one row per predicted row
    primary = logged[logged["route"] == "primary"]
    assert set(primary["version"]) == {1} and set(
        logged[logged["route"] == "shadow"]["version"]
    ) == {2}
    assert sorted(set(primary["request_id"])) == ["dep-0", "dep-1", "dep-2"]
    assert set(primary["endpoint"]) == {"iris-live"}
    labelled = joined[joined["route"] == "primary"]
    assert labelled[["request_id", "row", "label"]].values.tolist() == [["dep-0", 1, 0]]
