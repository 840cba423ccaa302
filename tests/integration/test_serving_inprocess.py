"""The model server's ASGI app driven in-process through httpx.ASGITransport, with route
tables the CLI cannot express yet (weights, sticky routing, shadows), in-memory sinks for
predictions and feedback, and route changes applied on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from test_serving_support import (
    MODELS_MODULE,
    ServingWorkspace,
    iris_rows,
    metric_in,
    records,
    serving_workspace,
)

from modelcycle.deploy.routes import Endpoint, Route, RouteTable, Target
from modelcycle.serving import (
    MemoryFeedbackSink,
    MemoryPredictionSink,
    ModelServer,
    ServeSettings,
    create_app,
)

Scenario = Callable[[ModelServer, httpx.AsyncClient], Awaitable[None]]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> ServingWorkspace:
    return serving_workspace(tmp_path_factory)


def target(ws: ServingWorkspace, ref: str) -> Target:
    with ws.open() as w:
        row = w.models.resolve(ref)
    return Target(ref, row.model, row.version, row.manifest_oid)


def run(app: ModelServer, scenario: Scenario, *, start: bool = True) -> None:
    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
            if start:
                await app.startup()
            try:
                await scenario(app, client)
            finally:
                if start:
                    await app.shutdown()

    asyncio.run(main())


def make_app(
    ws: ServingWorkspace, table: RouteTable | Callable[[], RouteTable], **options: Any
) -> ModelServer:
    settings = ServeSettings(
        deployment="test",
        workspace=str(ws.root),
        trusted=(f"{MODELS_MODULE}.*",),
        log_sample_rate=options.pop("log_sample_rate", 1.0),
    )
    source = table if callable(table) else (lambda: table)
    return create_app(settings, route_source=source, **options)


def test_weights_and_sticky_routing(ws: ServingWorkspace) -> None:
    v1, v2 = target(ws, "iris@1"), target(ws, "iris@2")
    table = RouteTable(
        {"iris": Endpoint("iris", (Route(v1, 1.0), Route(v2, 3.0)), sticky_header="x-user")},
        deployment="test",
    )
    body = {"records": records(iris_rows(1))}

    async def scenario(app: ModelServer, client: httpx.AsyncClient) -> None:
        by_user: dict[str, set[int]] = {}
        for i in range(200):
            user = f"user-{i % 40}"
            r = await client.post("/v1/models/iris/predict", json=body, headers={"x-user": user})
            assert r.status_code == 200
            by_user.setdefault(user, set()).add(r.json()["version"])
        assert all(len(v) == 1 for v in by_user.values())  # one user, one version
        assert set.union(*by_user.values()) == {1, 2}
        unsticky = set()
        for _ in range(100):
            r = await client.post("/v1/models/iris/predict", json=body)
            unsticky.add(r.json()["version"])
        assert unsticky == {1, 2}
        # a version can be asked for by number (Open Inference Protocol)
        meta = await client.get("/v2/models/iris")
        assert meta.json()["versions"] == ["1", "2"]
        pinned = await client.get("/v2/models/iris/versions/2")
        assert pinned.json()["versions"] == ["2"]

    run(make_app(ws, table), scenario)


def test_shadows_see_every_request_off_the_answer(ws: ServingWorkspace) -> None:
    primary, shadow = target(ws, "iris@1"), target(ws, "iris@2")
    broken = target(ws, "broken@1")
    table = RouteTable(
        {"iris": Endpoint("iris", (Route(primary, 1.0),), shadows=(shadow, broken))},
        deployment="test",
    )
    sink = MemoryPredictionSink()
    rows = iris_rows()[::50]

    async def scenario(app: ModelServer, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/models/iris/predict",
            json={"inputs": rows.tolist()},  # rows: what the iris and the broken model both take
            headers={"x-request-id": "req-1"},
        )
        assert r.status_code == 200 and r.json()["version"] == 1
        await app.shutdown()  # waits for the shadows and flushes the records
        assert sink.closed
        text = (await client.get("/metrics")).text
        assert metric_in(text, "modelcycle_requests_total", endpoint="shadow", model="iris") == 1
        assert metric_in(text, "modelcycle_requests_total", endpoint="shadow", status="500") == 1
        await app.startup()

    run(make_app(ws, table, prediction_sink=sink), scenario)
    by_route = {(r["route"], r["version"]): r for r in sink.records if r["model"] == "iris"}
    assert set(by_route) == {("primary", 1), ("shadow", 2)}
    for record in by_route.values():
        assert record["request_id"] == "req-1" and record["endpoint"] == "iris"
        assert record["protocol"] == "v1"
        assert record["inputs"]["petal width (cm)"] == rows[:, 3].tolist()
        assert len(record["outputs"]["prediction"]) == len(rows)
        assert len(record["outputs"]["probabilities"][0]) == 3
        assert record["latency_ms"] >= 0 and record["time"] > 0
    assert not [r for r in sink.records if r["model"] == "broken"]  # it never answered


def test_prediction_log_sampling_and_protocols(ws: ServingWorkspace) -> None:
    table = RouteTable.single([target(ws, "iris@1")])
    for rate, expected in ((1.0, ["v1", "mlflow", "v2"]), (0.0, [])):
        sink = MemoryPredictionSink()

        async def scenario(app: ModelServer, client: httpx.AsyncClient) -> None:
            rows = iris_rows(2).tolist()
            assert (await client.post("/v1/models/iris/predict", json={"inputs": rows})).is_success
            assert (await client.post("/invocations", json={"inputs": rows})).is_success
            tensor = {"name": "x", "datatype": "FP64", "shape": [2, 4], "data": rows}
            infer = await client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
            assert infer.is_success

        run(make_app(ws, table, prediction_sink=sink, log_sample_rate=rate), scenario)
        assert [r["protocol"] for r in sink.records] == expected
        assert all(r["outputs"]["prediction"] == [0, 0] for r in sink.records)


def test_feedback_goes_to_the_feedback_sink(ws: ServingWorkspace) -> None:
    feedback = MemoryFeedbackSink()

    async def scenario(app: ModelServer, client: httpx.AsyncClient) -> None:
        one = {"request_id": "req-1", "label": 2}
        r = await client.post("/v1/feedback", json=one)
        assert r.status_code == 202 and r.json()["accepted"] == 1
        many = [{"request_id": "req-2", "value": 1.5, "row": 1}, {"request_id": "r3", "label": 0}]
        assert (await client.post("/v1/feedback", json=many)).status_code == 202
        for bad, field in (
            ({"label": 1}, "'request_id'"),
            ({"request_id": "x", "label": 1, "value": 2}, "'label' and 'value'"),
            ({"request_id": "x", "label": 1, "colour": 2}, "'colour'"),
            ({"request_id": "x", "label": 1, "row": -1}, "'row'"),
        ):
            r = await client.post("/v1/feedback", json=bad)
            assert r.status_code == 422 and field in r.json()["message"], r.text
        r = await client.post("/v1/feedback", content=b"x", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        text = (await client.get("/metrics")).text
        assert metric_in(text, "modelcycle_requests_total", endpoint="feedback", status="202") == 2

    table = RouteTable.single([target(ws, "iris@1")])
    run(make_app(ws, table, feedback_sink=feedback), scenario)
    assert feedback.items == [
        {"request_id": "req-1", "label": 2},
        {"request_id": "req-2", "value": 1.5, "row": 1},
        {"request_id": "r3", "label": 0},
    ]


def test_a_route_change_is_loaded_then_swapped_in(ws: ServingWorkspace) -> None:
    tables = {"now": RouteTable.single([target(ws, "iris@1")])}
    body = {"records": records(iris_rows(1))}

    async def scenario(app: ModelServer, client: httpx.AsyncClient) -> None:
        assert (await client.post("/v1/models/iris/predict", json=body)).json()["version"] == 1
        assert await app.refresh_routes() is False  # nothing changed
        tables["now"] = RouteTable.single([target(ws, "iris@2"), target(ws, "diabetes@1")])
        assert await app.refresh_routes() is True
        assert (await client.post("/v1/models/iris/predict", json=body)).json()["version"] == 2
        listing = (await client.get("/v1/models")).json()
        assert [m["name"] for m in listing["models"]] == ["iris", "diabetes"]
        # a source that fails leaves the current routes served
        tables["now"] = None  # type: ignore[assignment]
        assert await app.refresh_routes() is False
        assert (await client.post("/v1/models/iris/predict", json=body)).json()["version"] == 2
        text = (await client.get("/metrics")).text
        assert metric_in(text, "modelcycle_route_table_swaps_total") == 1
        assert metric_in(text, "modelcycle_route_refresh_errors_total") == 1

    def source() -> RouteTable:
        table = tables["now"]
        if table is None:
            raise RuntimeError("the store is down")
        return table

    run(make_app(ws, source), scenario)


def test_nothing_is_served_before_startup(ws: ServingWorkspace) -> None:
    async def scenario(app: ModelServer, client: httpx.AsyncClient) -> None:
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.get("/ping")).status_code == 503
        r = await client.post("/invocations", json={"inputs": [[1, 2, 3, 4]]})
        assert r.status_code == 503 and r.json()["error"] == "NotReady"

    run(make_app(ws, RouteTable.single([target(ws, "iris@1")])), scenario, start=False)
