"""Operational figures scraped from a real model server: two workers, good requests and
bad ones, two scrapes, and the window between them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from test_serving_support import (
    ServingWorkspace,
    iris_rows,
    running,
    serving_workspace,
    wait_for,
)

from modelcycle.core.errors import StorageError
from modelcycle.monitoring.operations import Snapshot, scrape, window

pytestmark = pytest.mark.slow

WARM_UP = 3
GOOD = 40
BAD = 6


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> ServingWorkspace:
    return serving_workspace(tmp_path_factory)


def _scrape_when(url: str, requests: int) -> Snapshot:
    """A scrape that counts ``requests`` of iris@1 since the start: the server records a
    request just after answering it, so the last answers may need a moment to show."""
    found: list[Snapshot] = []

    def counted() -> bool:
        found[:] = [scrape(url)]
        return window(None, found[0], model="iris", version=1).requests == requests

    wait_for(counted, 30, f"the server's metrics to count {requests} requests")
    return found[0]


def test_window_between_two_scrapes_of_a_real_server(ws: ServingWorkspace, tmp_path: Path) -> None:
    with running(ws, ["iris@champion", "--workers", "2"], tmp_path / "server") as server:
        body = {"inputs": iris_rows(2).tolist()}
        with server.client() as c:
            for _ in range(WARM_UP):
                assert c.post("/v1/models/iris/predict", json=body).status_code == 200
        first = _scrape_when(server.url, WARM_UP)

        def post(i: int) -> int:
            # a connection each, so that both workers answer some
            with server.client() as c:
                if i < BAD:
                    content = b'{"inputs": [[1.0, 2.0'  # cut short: not JSON
                    headers = {"Content-Type": "application/json"}
                    r = c.post("/v1/models/iris/predict", content=content, headers=headers)
                    return r.status_code
                return c.post("/v1/models/iris/predict", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, range(GOOD + BAD)))
        assert sorted(statuses) == [200] * GOOD + [400] * BAD
        second = _scrape_when(server.url + "/metrics", WARM_UP + GOOD + BAD)

        stats = window(first, second, model="iris", version=1)
        assert not stats.counter_reset
        assert stats.requests == GOOD + BAD
        assert stats.statuses == {200: GOOD, 400: BAD}
        assert (stats.errors, stats.client_errors) == (0, BAD)
        assert stats.error_rate == 0.0
        assert stats.client_error_rate == pytest.approx(BAD / (GOOD + BAD))
        assert stats.window_seconds is not None
        assert stats.window_seconds > 0
        assert stats.requests_per_second == pytest.approx((GOOD + BAD) / stats.window_seconds)
        p50, p95, p99 = (
            stats.p50_latency_seconds,
            stats.p95_latency_seconds,
            stats.p99_latency_seconds,
        )
        assert p50 is not None
        assert p95 is not None
        assert p99 is not None
        assert 0 < p50 <= p95 <= p99 <= 30.0
        assert stats.mean_latency_seconds is not None
        assert stats.mean_latency_seconds > 0
        # the champion is version 1; nothing else answered
        assert window(first, second, model="iris", version=2).requests == 0
        assert window(first, second).requests == GOOD + BAD
        assert window(None, second, model="iris").requests == WARM_UP + GOOD + BAD

    with pytest.raises(StorageError, match="cannot read metrics from") as info:
        scrape(server.url, timeout=2.0)
    assert "modelcycle serve" in (info.value.hint or "")
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/metrics", timeout=2.0)
