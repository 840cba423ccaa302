"""A canary deployment served by a real model server: over 10,000 requests each version's
share of the traffic is within 3 percentage points of its configured weight, with one
worker and with two; with a sticky header every value always gets the same version,
whichever worker answers, and the values split by the weights too. The server's request
counters agree with what the client saw. Each test starts its own server process and
stops it by PID.

The requests go over a few keep-alive connections written by hand (one prepared request,
the response read by its Content-Length): httpx spends ten times the CPU per request,
and on a loaded two-core machine the cores are better spent on the server."""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serving_support import (
    HOST,
    Server,
    ServingWorkspace,
    _socket_inode,
    metric,
    process_tree,
    read_response,
    running,
    status_of,
)

import modelcycle as mc

pytestmark = pytest.mark.slow

MODEL = "canary"
REQUESTS = 10_000
TOLERANCE = 0.03  # |share - weight| for each version
BODY = json.dumps({"inputs": [[5.1, 3.5, 1.4, 0.2]]}).encode()
NO_ANSWER = (0, None)  # the connection broke: no status, no version

Headers = dict[str, str] | None
Result = tuple[int, Any]  # (status, the version that answered)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> ServingWorkspace:
    """A workspace with canary@1 and canary@2, two logistic regressions on iris."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    base = tmp_path_factory.mktemp("canary")
    (base / "code").mkdir()  # no model code of ours to import: both are sklearn models
    x, y = load_iris(return_X_y=True, as_frame=True)
    workspace = mc.Workspace.create(base / "ws")
    try:
        for c in (1.0, 0.05):
            model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
            with workspace.start_run(MODEL) as run:
                run.log_model(model, "model", input_example=x.head(3), register_as=MODEL)
    finally:
        workspace.close()
    return ServingWorkspace(base / "ws", base / "code")


def deploy(
    ws: ServingWorkspace, name: str, weights: Mapping[int, float], sticky_header: str | None = None
) -> None:
    with ws.open() as w:
        w.deployments.create(name, f"{MODEL}@1", sticky_header=sticky_header)
        w.deployments.route(name, {f"{MODEL}@{v}": weight for v, weight in weights.items()})


# --------------------------------------------------------------------------- the client


class Connection:
    """One keep-alive HTTP/1.1 connection to the server, and the server process (the
    worker, with several) that accepted it."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection((HOST, server.port), timeout=30)
        self.sock.sendall(f"GET /v2/health/ready HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert status_of(read_response(self.sock)) == 200  # so the server has accepted it
        self.worker = _accepting_process(server, self.sock)
        self.broken = False

    def predict(self, path: str, headers: Headers) -> Result:
        """POST one row to ``path``: the status and the version in the answer
        (``NO_ANSWER`` if the connection broke, and on it from then on)."""
        if self.broken:
            return NO_ANSWER
        head = f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head += f"Content-Length: {len(BODY)}\r\n\r\n"
        try:
            self.sock.sendall(head.encode() + BODY)
            response = read_response(self.sock)
            answer = json.loads(response.partition(b"\r\n\r\n")[2])
            return status_of(response), answer.get("version")
        except (OSError, ValueError, IndexError, AttributeError):
            self.broken = True
            return NO_ANSWER


def _accepting_process(server: Server, sock: socket.socket) -> int:
    """The PID of the process of ``server`` holding the accepted end of ``sock``."""
    inode = _socket_inode(server.port, sock.getsockname()[1])
    assert inode is not None, "the accepted connection is not in /proc/net/tcp"
    target = f"socket:[{inode}]"
    for pid in process_tree(server.pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no process of server {server.pid} holds {target}")


@contextmanager
def connections(server: Server, workers: int, per_worker: int) -> Iterator[list[Connection]]:
    """``per_worker`` connections accepted by each of the ``workers`` processes, in
    turn: worker A's first, worker B's first, A's second... (the kernel hands a new
    connection to whichever worker accepts first, so this opens connections until each
    has enough; the extra ones stay idle until the end)."""
    with ExitStack() as stack:
        by_worker: dict[int, list[Connection]] = {}
        for _ in range(20 * workers * per_worker):
            if len(by_worker) == workers and all(len(c) >= per_worker for c in by_worker.values()):
                break
            conn = Connection(server)
            stack.callback(conn.sock.close)
            by_worker.setdefault(conn.worker, []).append(conn)
        counts = {pid: len(c) for pid, c in by_worker.items()}
        assert len(by_worker) == workers, f"connections by accepting process: {counts}"
        assert all(len(c) >= per_worker for c in by_worker.values()), counts
        yield [c for i in range(per_worker) for c in (cs[i] for cs in by_worker.values())]


def send_all(
    conns: Sequence[Connection], path: str, requests: Sequence[tuple[int, Headers]]
) -> list[Result]:
    """Each request ``(k, headers)`` on connection ``conns[k]``, the connections all at
    once; the result of each, in order."""
    results: list[Result] = [NO_ANSWER] * len(requests)
    lanes: list[list[int]] = [[] for _ in conns]
    for i, (k, _) in enumerate(requests):
        lanes[k].append(i)

    def work(k: int) -> None:
        for i in lanes[k]:
            results[i] = conns[k].predict(path, requests[i][1])

    with ThreadPoolExecutor(len(conns)) as pool:
        list(pool.map(work, range(len(conns))))
    return results


def spread(conns: Sequence[Connection], headers: Sequence[Headers]) -> list[tuple[int, Headers]]:
    """Request ``i`` on connection ``i % len(conns)``."""
    return [(i % len(conns), h) for i, h in enumerate(headers)]


# --------------------------------------------------------------------------- checks


def assert_all_ok(results: Sequence[Result]) -> None:
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: len(results)}, f"statuses of {len(results)} requests: {statuses}"


def assert_split(versions: Sequence[Any], weights: Mapping[int, float], what: str) -> None:
    """Each version's share of ``versions`` is within ``TOLERANCE`` of its weight."""
    total = sum(weights.values())
    counts = Counter(versions)
    assert set(counts) <= set(weights), f"{what}: versions {dict(counts)}"
    shares = {v: counts[v] / len(versions) for v in weights}
    assert all(abs(shares[v] - w / total) <= TOLERANCE for v, w in weights.items()), (
        f"{what}: {dict(counts)} of {len(versions)}, shares {shares}, weights {weights}"
    )


def assert_listed(
    server: Server, name: str, weights: Mapping[int, float], sticky_header: str | None
) -> None:
    """The server serves ``name`` with the configured routes (so a split that holds is
    the server's doing, not a deployment that never reached it)."""
    listing = httpx.get(server.url + "/v1/models", timeout=10).json()
    assert listing["deployment"] == name
    (endpoint,) = listing["models"]
    assert endpoint["name"] == name and endpoint["sticky_header"] == sticky_header
    routes = [(r["version"], r["weight"]) for r in endpoint["routes"]]
    assert routes == [(v, float(w)) for v, w in weights.items()]


def assert_counted(server: Server, versions: Sequence[Any]) -> None:
    """The server's request counters by version match the client's counts (polled: the
    counter goes up just after the response is sent, and with two workers a scrape may
    reach the other one first)."""

    def counted() -> dict[Any, float]:
        labels = {"model": MODEL, "endpoint": "v1", "status": "200"}
        return {
            v: metric(server, "modelcycle_requests_total", version=str(v), **labels) for v in (1, 2)
        }

    client = Counter(versions)
    want = {v: float(client[v]) for v in (1, 2)}
    deadline = time.monotonic() + 15
    while counted() != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counted() == want
    assert metric(server, "modelcycle_requests_total") == len(versions)


# --------------------------------------------------------------------------- weighted split


@pytest.mark.parametrize(
    ("weights", "workers"),
    [
        pytest.param({1: 90, 2: 10}, 1, id="90-10-one-worker"),
        pytest.param({1: 70, 2: 30}, 2, id="70-30-two-workers"),
    ],
)
def test_a_canary_split_holds_over_10000_requests(
    ws: ServingWorkspace, tmp_path: Path, weights: Mapping[int, float], workers: int
) -> None:
    name = f"canary-{'-'.join(str(w) for w in weights.values())}-w{workers}"
    deploy(ws, name, weights)
    args = ["--deployment", name, "--workers", str(workers)]
    with (
        running(ws, args, tmp_path) as server,
        connections(server, workers, 8 // workers) as conns,
    ):
        assert_listed(server, name, weights, None)
        results = send_all(conns, f"/v1/models/{name}/predict", spread(conns, [None] * REQUESTS))
        assert_all_ok(results)
        versions = [version for _, version in results]
        assert_split(versions, weights, f"{REQUESTS} requests")
        assert_counted(server, versions)


# --------------------------------------------------------------------------- sticky routing


def test_a_sticky_header_keeps_each_value_on_one_version(
    ws: ServingWorkspace, tmp_path: Path
) -> None:
    """5,000 users send two requests each, to different workers: each user gets one
    version both times, and the users split by the weights. The header's name is
    case-insensitive; requests without it are split at random."""
    name, weights, users = "canary-sticky", {1: 80, 2: 20}, REQUESTS // 2
    deploy(ws, name, weights, sticky_header="X-User-Id")  # stored lowercased
    path = f"/v1/models/{name}/predict"
    once: list[Headers] = [{"X-User-Id": f"user-{u}"} for u in range(users)]
    with (
        running(ws, ["--deployment", name, "--workers", "2"], tmp_path) as server,
        connections(server, 2, 4) as conns,
    ):
        assert_listed(server, name, weights, "x-user-id")
        # user u's first request goes on connection u % 8 and the second on the next
        # one, (u + 1) % 8, which the other worker accepted
        assert all(c.worker != conns[(k + 1) % len(conns)].worker for k, c in enumerate(conns))
        requests = spread(conns, once) + [((k + 1) % len(conns), h) for k, h in spread(conns, once)]
        results = send_all(conns, path, requests)
        assert_all_ok(results)
        first, second = results[:users], results[users:]
        moved = [u for u in range(users) if first[u] != second[u]]
        assert not moved, (
            f"{len(moved)} of {users} users were answered by both versions, e.g. "
            + ", ".join(f"user-{u}: {first[u][1]} then {second[u][1]}" for u in moved[:5])
        )
        assert_split([v for _, v in first], weights, f"{users} distinct header values")

        again = [{"x-USER-id": f"user-{u}"} for u in range(0, users, 10)]
        again_results = send_all(conns, path, spread(conns, again))
        assert again_results == first[::10]

        plain = send_all(conns, path, spread(conns, [None] * 1000))
        assert_all_ok(plain)
        assert {v for _, v in plain} == {1, 2}
        assert_counted(server, [v for _, v in results + again_results + plain])
