"""Random requests at every endpoint of a running model server, for a bounded time: no
answer may be a 5xx except from the model that fails on purpose, and the server must
still be live afterwards."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_serving_support import (
    IRIS_COLUMNS,
    Server,
    ServingWorkspace,
    running,
    serving_workspace,
)

pytestmark = pytest.mark.slow

SECONDS = 10.0
MAX_REQUESTS = 3000
NAMES = ["iris", "diabetes", "mixed", "broken", "nope", "", "iris/../x", "%00"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/csv",
    "application/octet-stream",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/vnd.api+json",
    "",
    "\u00e9/\u00e8".encode().decode("latin-1"),  # UTF-8 bytes in a header
]
DATATYPES = ["FP64", "FP32", "FP16", "INT64", "INT8", "UINT8", "BOOL", "BYTES", "FP99", 7, None]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    ws: ServingWorkspace = serving_workspace(tmp_path_factory)
    args = ["iris@champion", "diabetes", "mixed", "broken", "--workers", "1", "--timeout-s", "5"]
    with running(ws, args, tmp_path_factory.mktemp("fuzz-server")) as s:
        yield s


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, -(2**63) - 1, 7, 10**30])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e-320, 3.14, 1e300])
    if kind == 4:
        return rng.choice(["", "x", "1.5", "large", "\u2603", "a" * 300])
    if kind == 5:
        return rng.choice([*IRIS_COLUMNS, "size", "inputs", "records", "data", "shape"])
    if kind in (6, 7):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    keys = [*IRIS_COLUMNS, "inputs", "records", "columns", "data", "shape", "name", "datatype"]
    return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randrange(5))}


def _tensor(rng: random.Random) -> dict[str, Any]:
    shape = [rng.randrange(4) for _ in range(rng.randrange(1, 4))]
    n = 1
    for d in shape:
        n *= d
    if rng.random() < 0.3:
        n += rng.choice([-1, 1])
    data: Any = [rng.choice([0.5, 1, True, "a", None]) if rng.random() < 0.1 else 0.25] * max(n, 0)
    tensor: dict[str, Any] = {
        "name": rng.choice([*IRIS_COLUMNS, "input", "size", "x"]),
        "datatype": rng.choice(DATATYPES),
        "shape": shape if rng.random() < 0.9 else "bad",
        "data": data,
    }
    if rng.random() < 0.2:
        tensor["parameters"] = {"binary_data_size": rng.choice([0, 8, 10**9, -1, "x"])}
    return tensor


def _body(rng: random.Random, path: str) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(64))
    if kind == 1:
        return b""
    if kind == 2 and path.endswith("/infer"):
        body = {"inputs": [_tensor(rng) for _ in range(rng.randrange(1, 5))]}
        if rng.random() < 0.3:
            body["outputs"] = [{"name": rng.choice(["prediction", "probabilities", "x"])}]
        return json.dumps(body).encode()
    if kind == 3:
        rows = [[rng.choice([5.1, 3, "x", None, True]) for _ in range(rng.randrange(6))]]
        key = rng.choice(["inputs", "instances", "dataframe_split", "dataframe_records"])
        return json.dumps({key: rows if key != "dataframe_split" else {"data": rows}}).encode()
    if kind == 4:
        record = {c: rng.choice([5.0, "5", None, [1]]) for c in IRIS_COLUMNS if rng.random() < 0.9}
        return json.dumps({"records": [record] * rng.randrange(3)}).encode()
    if kind == 5:
        return (
            b"a,b\n1,2\n" if rng.random() < 0.5 else ",".join(IRIS_COLUMNS).encode() + b"\n1,x,,3\n"
        )
    text = json.dumps(_value(rng))
    if rng.random() < 0.2:
        text = text[: rng.randrange(len(text) + 1)]
    return text.encode()


def _request(rng: random.Random) -> tuple[str, str, dict[str, str], bytes]:
    name = rng.choice(NAMES)
    path = rng.choice(
        [
            f"/v1/models/{name}/predict",
            f"/v1/models/{name}",
            "/v1/models",
            "/v1/feedback",
            "/invocations",
            f"/invocations?model={name}",
            f"/v2/models/{name}/infer",
            f"/v2/models/{name}/versions/{rng.choice(['1', '2', 'x', ''])}/infer",
            f"/v2/models/{name}/ready",
            f"/v2/models/{name}",
            "/v2",
            "/v2/health/ready",
            "/metrics",
            "/ping",
            "/version",
            "/" + "".join(rng.choice("abv12/") for _ in range(rng.randrange(12))),
        ]
    )
    method = rng.choice(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH"])
    headers = {}
    content_type = rng.choice(CONTENT_TYPES)
    if content_type:
        headers["content-type"] = content_type
    if rng.random() < 0.1:
        headers["inference-header-content-length"] = str(rng.choice([0, 5, 10**6, -3]))
    if rng.random() < 0.1:
        headers["x-request-id"] = rng.choice(["ok-1", "bad id", "x" * 500])
    if rng.random() < 0.05:
        headers["x-modelcycle-model"] = rng.choice(NAMES)
    return method, path, headers, _body(rng, path)


def _may_fail(path: str, headers: dict[str, str]) -> bool:
    return "broken" in path or headers.get("x-modelcycle-model") == "broken"


def test_random_requests_get_no_server_error(server: Server) -> None:
    rng = random.Random(20261123)
    deadline = time.monotonic() + SECONDS
    sent, errors, seen = 0, [], set()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        while time.monotonic() < deadline and sent < MAX_REQUESTS:
            method, path, headers, body = _request(rng)
            try:
                raw = {k: v.encode("latin-1") for k, v in headers.items()}
                r = client.request(method, path, headers=raw, content=body)
            except httpx.InvalidURL:
                continue  # the client refuses to send it: nothing reached the server
            sent += 1
            seen.add(r.status_code)
            if r.status_code >= 500 and not _may_fail(path, headers):
                errors.append((method, path, headers, body[:200], r.status_code, r.text[:300]))
            assert r.headers.get("x-request-id")
        live = client.get("/v2/health/live")
    assert sent > 100
    # the requests reached every layer: routing, content types, parsing, signatures, models
    assert {200, 400, 404, 405, 415, 422} <= seen, seen
    assert errors == []
    assert live.status_code == 200
    log = server.log()
    assert "Exception in ASGI application" not in log
    # every traceback logged is the failing model's
    assert log.count("Traceback") == log.count("RuntimeError: deliberate failure inside predict")
