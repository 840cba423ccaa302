"""The model server over real HTTP on 127.0.0.1: the three protocols, the official Open
Inference Protocol client, input validation, every error status, request ids, bearer
tokens, a client that disconnects, and TCP_NODELAY on accepted connections.

One server (one worker, bearer tokens on, a 1.5 s timeout) serves iris@champion,
diabetes, mixed, sleepy and broken for the whole module.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from test_serving_support import (
    HOST,
    IRIS_COLUMNS,
    TOKEN,
    Server,
    ServingWorkspace,
    accepted_nodelay,
    body_of,
    iris_rows,
    metric,
    mixed_frame,
    raw_http,
    read_response,
    records,
    running,
    serving_workspace,
    status_of,
    wait_for,
)
from tritonclient.utils import InferenceServerException

import modelcycle

SERVED = ["iris", "diabetes", "mixed", "sleepy", "broken"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> ServingWorkspace:
    return serving_workspace(tmp_path_factory)


@pytest.fixture(scope="module")
def server(ws: ServingWorkspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["iris@champion", "diabetes", "mixed", "sleepy", "broken"]
    args += ["--workers", "1", "--timeout-s", "1.5"]
    with running(ws, args, tmp_path_factory.mktemp("main-server"), token=TOKEN) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def local(ws: ServingWorkspace) -> dict[str, Any]:
    """The served versions loaded in this process, to compare answers with."""
    with ws.open() as w:
        return {ref: w.models.load(ref) for ref in ("iris@1", "diabetes@1", "mixed@1")}


def _diabetes_rows(n: int = 5) -> np.ndarray[Any, Any]:
    from sklearn.datasets import load_diabetes

    data: np.ndarray[Any, Any] = load_diabetes().data
    return data[:n]


# --------------------------------------------------------------------------- v1


def test_v1_predict_takes_records_columns_and_rows(
    client: httpx.Client, local: dict[str, Any]
) -> None:
    rows = iris_rows()[::15]
    model = local["iris@1"]
    frame = model.input_example().iloc[:0].reindex(range(len(rows)))
    frame[IRIS_COLUMNS] = rows
    expected = model.predict(frame).tolist()
    expected_proba = model.predict_proba(frame)
    bodies = [
        {"records": records(rows)},
        {"columns": {c: rows[:, i].tolist() for i, c in enumerate(IRIS_COLUMNS)}},
        {"inputs": rows.tolist()},
        records(rows),
    ]
    for body in bodies:
        r = client.post("/v1/models/iris/predict", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["model"] == "iris" and got["version"] == 1
        assert got["predictions"] == expected
        assert np.allclose(got["probabilities"], expected_proba, rtol=0, atol=1e-12)
        assert got["classes"] == [0, 1, 2]
        assert got["request_id"] == r.headers["x-request-id"]
    r = client.post(
        "/v1/models/iris/predict", json={"records": records(rows), "probabilities": False}
    )
    assert "probabilities" not in r.json() and r.json()["predictions"] == expected


def test_v1_regressor_and_mixed_types(client: httpx.Client, local: dict[str, Any]) -> None:
    rows = _diabetes_rows()
    r = client.post("/v1/models/diabetes/predict", json={"inputs": rows.tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == local["diabetes@1"].predict(rows).tolist()
    assert "probabilities" not in r.json()

    from sklearn.datasets import load_iris

    frame = mixed_frame(load_iris(as_frame=True).data).iloc[::30]
    r = client.post("/v1/models/mixed/predict", json={"records": frame.to_dict("records")})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == local["mixed@1"].predict(frame).tolist()


def test_v1_lists_and_describes_models(client: httpx.Client) -> None:
    listing = client.get("/v1/models").json()
    assert [m["name"] for m in listing["models"]] == SERVED
    assert listing["deployment"] is None and listing["revision"]
    iris = client.get("/v1/models/iris").json()
    assert iris["ref"] == "iris@champion" and iris["version"] == 1
    assert [s["name"] for s in iris["signature"]["inputs"]] == IRIS_COLUMNS
    assert iris["routes"] == [
        {
            "ref": "iris@champion",
            "model": "iris",
            "version": 1,
            "manifest_oid": iris["routes"][0]["manifest_oid"],
            "flavor": "sklearn",
            "signature": iris["signature"],
            "classes": [0, 1, 2],
            "weight": 1.0,
        }
    ]
    assert iris["shadows"] == [] and iris["sticky_header"] is None


# --------------------------------------------------------------------------- MLflow


def test_mlflow_invocations_accepts_every_mlflow_format(
    client: httpx.Client, local: dict[str, Any]
) -> None:
    rows = iris_rows()[::25]
    model = local["iris@1"]
    expected = model.predict(np.asarray(rows)).tolist()
    columns = {c: rows[:, i].tolist() for i, c in enumerate(IRIS_COLUMNS)}
    shuffled = [IRIS_COLUMNS[i] for i in (2, 0, 3, 1)]
    bodies = [
        {"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows.tolist()}},
        {"dataframe_split": {"columns": shuffled, "data": rows[:, [2, 0, 3, 1]].tolist()}},
        {"dataframe_records": records(rows)},
        {"instances": records(rows)},
        {"inputs": rows.tolist()},
        {"inputs": columns, "params": {"ignored": True}},
    ]
    for body in bodies:
        r = client.post("/invocations", json=body)
        assert r.status_code == 200, (body, r.text)
        assert r.json() == {"predictions": expected}
    csv_text = ",".join(IRIS_COLUMNS) + "\n"
    csv_text += "".join(",".join(map(str, row)) + "\n" for row in rows)
    r = client.post("/invocations", content=csv_text, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected}


def test_mlflow_invocations_picks_the_model_by_header_or_query(
    client: httpx.Client, local: dict[str, Any]
) -> None:
    rows = _diabetes_rows(3)
    expected = {"predictions": local["diabetes@1"].predict(rows).tolist()}
    body = {"inputs": rows.tolist()}
    by_header = client.post("/invocations", json=body, headers={"x-modelcycle-model": "diabetes"})
    assert by_header.json() == expected
    assert client.post("/invocations?model=diabetes", json=body).json() == expected
    # without either: the first model served (iris), which takes four columns
    assert client.post("/invocations", json=body).status_code == 422
    unknown = client.post("/invocations?model=nope", json=body)
    assert unknown.status_code == 404 and unknown.json()["details"]["served"] == SERVED


def test_mlflow_health_and_version(server: Server) -> None:
    for path in ("/ping", "/health"):
        r = httpx.get(server.url + path)  # open without a token
        assert r.status_code == 200 and r.text == "\n"
    assert httpx.get(server.url + "/version").text == modelcycle.__version__


# --------------------------------------------------------------------------- Open Inference Protocol


@pytest.fixture(scope="module")
def oip(server: Server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url=f"{HOST}:{server.port}")
    try:
        yield c
    finally:
        c.close()


def _auth(server: Server) -> dict[str, str]:
    # a new dict per call: tritonclient writes its own headers into the one it is given
    return server.headers()


def test_oip_health_and_metadata_with_tritonclient(
    oip: triton.InferenceServerClient, server: Server
) -> None:
    assert oip.is_server_live() and oip.is_server_ready()
    assert oip.is_model_ready("iris", headers=_auth(server))
    assert oip.is_model_ready("iris", "1", headers=_auth(server))
    assert not oip.is_model_ready("nope", headers=_auth(server))
    meta = oip.get_server_metadata(headers=_auth(server))
    assert meta["name"] == "modelcycle" and "binary_tensor_data" in meta["extensions"]
    iris = oip.get_model_metadata("iris", headers=_auth(server))
    # a tabular model: one input per column, named after it
    assert [i["name"] for i in iris["inputs"]] == IRIS_COLUMNS
    assert {(i["datatype"], tuple(i["shape"])) for i in iris["inputs"]} == {("FP64", (-1,))}
    assert iris["versions"] == ["1"]
    assert [(o["name"], o["datatype"]) for o in iris["outputs"]] == [
        ("prediction", "INT64"),
        ("probabilities", "FP64"),
    ]
    diabetes = oip.get_model_metadata("diabetes", headers=_auth(server))
    assert diabetes["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 10]}]
    mixed = oip.get_model_metadata("mixed", headers=_auth(server))
    assert [(i["name"], i["datatype"]) for i in mixed["inputs"]] == [
        ("size", "BYTES"),
        ("sepal length (cm)", "FP64"),
        ("petal width (cm)", "FP64"),
    ]


def test_oip_infer_with_tritonclient(
    oip: triton.InferenceServerClient, server: Server, local: dict[str, Any]
) -> None:
    rows = iris_rows()[::10]
    model = local["iris@1"]
    expected = model.predict(np.asarray(rows))
    expected_proba = model.predict_proba(np.asarray(rows))

    # one input per column, binary tensors (the client's default)
    inputs = []
    for i, name in enumerate(IRIS_COLUMNS):
        tensor = triton.InferInput(name, [len(rows)], "FP64")
        tensor.set_data_from_numpy(np.ascontiguousarray(rows[:, i]))
        inputs.append(tensor)
    result = oip.infer("iris", inputs, headers=_auth(server))
    assert result.as_numpy("prediction").tolist() == expected.tolist()
    assert np.allclose(result.as_numpy("probabilities"), expected_proba, rtol=0, atol=1e-12)
    response = result.get_response()
    assert response["model_name"] == "iris" and response["model_version"] == "1"

    # one 2-D input, as JSON, asking for one output in JSON and pinning the version
    matrix = triton.InferInput("features", list(rows.shape), "FP64")
    matrix.set_data_from_numpy(rows, binary_data=False)
    wanted = [triton.InferRequestedOutput("prediction", binary_data=False)]
    result = oip.infer("iris", [matrix], model_version="1", outputs=wanted, headers=_auth(server))
    assert result.as_numpy("prediction").tolist() == expected.tolist()
    assert result.as_numpy("probabilities") is None

    # a tensor model and a regressor; FP32 is accepted where float64 is declared
    drows = _diabetes_rows(4)
    tensor = triton.InferInput("input", list(drows.shape), "FP64")
    tensor.set_data_from_numpy(drows)
    got = oip.infer("diabetes", [tensor], headers=_auth(server)).as_numpy("prediction")
    assert got.tolist() == local["diabetes@1"].predict(drows).tolist()

    # strings as BYTES
    from sklearn.datasets import load_iris

    frame = mixed_frame(load_iris(as_frame=True).data).iloc[::40]
    mixed_inputs = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        dtype = "BYTES" if name == "size" else "FP64"
        tensor = triton.InferInput(name, [len(frame)], dtype)
        tensor.set_data_from_numpy(values.astype(object if dtype == "BYTES" else np.float64))
        mixed_inputs.append(tensor)
    got = oip.infer("mixed", mixed_inputs, headers=_auth(server)).as_numpy("prediction")
    assert got.tolist() == local["mixed@1"].predict(frame).tolist()


def test_oip_wrong_shape_datatype_and_model(
    oip: triton.InferenceServerClient, server: Server
) -> None:
    wrong_shape = triton.InferInput("input", [2, 9], "FP64")
    wrong_shape.set_data_from_numpy(np.zeros((2, 9)))
    with pytest.raises(InferenceServerException) as e:
        oip.infer("diabetes", [wrong_shape], headers=_auth(server))
    assert e.value.status() == "422"
    wrong_type = triton.InferInput("input", [2, 10], "BYTES")
    wrong_type.set_data_from_numpy(np.array([["a"] * 10] * 2, dtype=object))
    with pytest.raises(InferenceServerException) as e:
        oip.infer("diabetes", [wrong_type], headers=_auth(server))
    assert e.value.status() == "422"
    good = triton.InferInput("input", [1, 10], "FP64")
    good.set_data_from_numpy(np.zeros((1, 10)))
    with pytest.raises(InferenceServerException) as e:
        oip.infer("nope", [good], headers=_auth(server))
    assert e.value.status() == "404"
    with pytest.raises(InferenceServerException) as e:
        oip.infer("diabetes", [good], model_version="9", headers=_auth(server))
    assert e.value.status() == "404"


def test_oip_malformed_tensors_are_400(client: httpx.Client) -> None:
    def infer(tensor: dict[str, Any]) -> httpx.Response:
        return client.post("/v2/models/diabetes/infer", json={"inputs": [tensor]})

    base = {"name": "input", "datatype": "FP64", "shape": [1, 10], "data": [0.0] * 10}
    assert infer(base).status_code == 200
    assert infer({**base, "data": [0.0] * 9}).status_code == 400  # does not fill the shape
    assert infer({**base, "datatype": "FP99"}).status_code == 400
    assert infer({**base, "shape": "1x10"}).status_code == 400
    assert infer({**base, "data": ["a"] * 10}).status_code == 400
    assert infer({**base, "datatype": "INT8", "data": [1000] * 10}).status_code == 400
    # nested data in the shape's layout is the same tensor
    nested = client.post(
        "/v2/models/diabetes/infer", json={"inputs": [{**base, "data": [[0.0] * 10]}]}
    )
    assert nested.json()["outputs"][0]["data"] == infer(base).json()["outputs"][0]["data"]
    server_meta = client.get("/v2").json()
    assert server_meta["name"] == "modelcycle"


# --------------------------------------------------------------------------- validation


def _problem(r: httpx.Response) -> str:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "InputDataError"
    assert set(body) <= {"error", "message", "hint", "details"}
    return str(body["message"])


def test_missing_extra_and_mistyped_fields_are_422_naming_the_field(client: httpx.Client) -> None:
    good = records(iris_rows(1))[0]
    url = "/v1/models/iris/predict"
    missing = {k: v for k, v in good.items() if k != "petal width (cm)"}
    assert "missing field 'petal width (cm)'" in _problem(client.post(url, json=[missing]))
    extra = {**good, "colour": "blue"}
    assert "unexpected field 'colour'" in _problem(client.post(url, json=[extra]))
    for bad in ("7.5", True, None, [1.0]):
        message = _problem(client.post(url, json=[{**good, "sepal width (cm)": bad}]))
        assert "'sepal width (cm)'" in message
    message = _problem(
        client.post("/invocations", json={"dataframe_split": {"columns": ["a"], "data": [[1]]}})
    )
    assert "missing field 'sepal length (cm)'" in message and "unexpected field 'a'" in message
    mixed = {"size": 3, "sepal length (cm)": 5.0, "petal width (cm)": 0.2}
    assert "'size' should be string" in _problem(
        client.post("/v1/models/mixed/predict", json=[mixed])
    )
    # a tensor model: the wrong number of values per row
    assert "shape" in _problem(
        client.post("/v1/models/diabetes/predict", json={"inputs": [[1.0] * 9]})
    )


def test_error_statuses(client: httpx.Client, server: Server) -> None:
    url = "/v1/models/iris/predict"
    r = client.post(url, content=b'{"records": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "MalformedRequest"
    r = client.post(url, content=b"a,b\n1,2\n", headers={"content-type": "text/csv"})
    assert r.status_code == 415 and r.json()["error"] == "UnsupportedMediaType"
    r = client.post("/invocations", content=b"x", headers={"content-type": "image/png"})
    assert r.status_code == 415
    r = client.post("/v1/models/nope/predict", json=[])
    assert r.status_code == 404
    assert r.json()["details"]["served"] == SERVED and "iris" in r.json()["hint"]
    assert client.get("/no/such/path").status_code == 404
    r = client.get(url)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_a_body_over_the_limit_is_413_without_being_read(server: Server) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    head = (
        b"POST /v1/models/iris/predict HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Type: "
        b"application/json\r\nContent-Length: 10485760\r\n"
    )
    # the client announces 10 MB and waits for 100-continue: the answer comes at once
    response = raw_http(server.port, head + b"Expect: 100-continue\r\n\r\n")
    assert status_of(response) == 413
    assert body_of(response)["error"] == "PayloadTooLarge"
    # a client that sends all 10 MB gets the 413 too, and the server stays up
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=60) as c:
        r = c.post(
            "/v1/models/iris/predict",
            content=b"[" + b" " * (10 * 1024 * 1024) + b"]",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        # a chunked body (no Content-Length) is cut off once it passes the limit
        chunks = (b" " * (1024 * 1024) for _ in range(10))
        r = c.post("/invocations", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.get("/v2/health/live").status_code == 200


def test_a_model_that_raises_is_500_with_an_error_id_and_counted(
    client: httpx.Client, server: Server
) -> None:
    before = metric(server, "modelcycle_requests_total", model="broken", status="500")
    r = client.post("/v1/models/broken/predict", json={"inputs": [[1, 2, 3, 4]]})
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "ModelFailed" and "RuntimeError" in body["message"]
    error_id = body["details"]["error_id"]
    assert body["details"]["request_id"] == r.headers["x-request-id"]
    wait_for(lambda: error_id in server.log(), 10, "the error id in the server log")
    log = server.log()
    assert "deliberate failure inside predict" in log and "Traceback" in log
    after = metric(server, "modelcycle_requests_total", model="broken", status="500")
    assert after == before + 1
    # the server keeps serving
    assert client.post("/invocations", json={"inputs": iris_rows(2).tolist()}).status_code == 200


def test_a_slow_model_is_504_after_the_timeout(client: httpx.Client, server: Server) -> None:
    # the model would answer 200 after 3 s; the server answers first, at its 1.5 s timeout
    r = client.post("/v1/models/sleepy/predict", json={"inputs": [[3.0, 0, 0, 0]]})
    assert r.status_code == 504 and r.json()["error"] == "PredictTimeout"
    # other requests are served while the slow one is still running in its thread
    assert client.post("/invocations", json={"inputs": iris_rows(1).tolist()}).status_code == 200
    assert metric(server, "modelcycle_requests_total", model="sleepy", status="504") >= 1
    ok = client.post("/v1/models/sleepy/predict", json={"inputs": [[0.0, 1, 2, 3]]})
    assert ok.status_code == 200 and ok.json()["predictions"] == [6.0]


def test_a_client_that_disconnects_is_counted_and_the_server_goes_on(server: Server) -> None:
    labels = {"model": "sleepy", "status": "499"}
    before = metric(server, "modelcycle_requests_total", **labels)
    body = b'{"inputs": [[1.0, 0, 0, 0]]}'
    request = (
        b"POST /v1/models/sleepy/predict HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    sock = socket.create_connection((HOST, server.port))
    sock.sendall(request)
    wait_for(
        lambda: metric(server, "modelcycle_requests_in_flight") >= 1, 10, "the request in flight"
    )
    sock.close()  # gone while the model sleeps
    wait_for(
        lambda: metric(server, "modelcycle_requests_total", **labels) == before + 1,
        10,
        "the disconnect to be counted as 499",
    )
    # a client that stops halfway through its body
    partial = request.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 1000")
    with socket.create_connection((HOST, server.port)) as sock:
        sock.sendall(partial)
        wait_for(
            lambda: metric(server, "modelcycle_requests_in_flight") >= 1, 10, "the partial body"
        )
    wait_for(
        lambda: metric(server, "modelcycle_requests_total", **labels) == before + 2,
        10,
        "the second disconnect to be counted",
    )
    assert httpx.get(server.url + "/v2/health/live").status_code == 200


# --------------------------------------------------------------------------- ids and auth


def test_every_response_carries_a_request_id(client: httpx.Client, server: Server) -> None:
    r = client.post(
        "/invocations", json={"inputs": iris_rows(1).tolist()}, headers={"x-request-id": "abc-123"}
    )
    assert r.headers["x-request-id"] == "abc-123"
    bad = client.post("/invocations", json={}, headers={"x-request-id": "abc-124"})
    assert bad.status_code == 400 and bad.headers["x-request-id"] == "abc-124"
    ids = {client.get("/v2/health/live").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
    weird = client.get("/v2/health/live", headers={"x-request-id": "no spaces allowed"})
    assert weird.headers["x-request-id"] != "no spaces allowed"
    assert httpx.get(server.url + "/no/such").headers["x-request-id"]


def test_bearer_tokens(server: Server) -> None:
    body = {"inputs": iris_rows(1).tolist()}
    r = httpx.post(server.url + "/invocations", json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="modelcycle"'
    assert r.json()["error"] == "Unauthorized"
    r = httpx.post(server.url + "/invocations", json=body, headers={"Authorization": "Bearer x"})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert (
        httpx.get(server.url + "/v1/models", headers={"Authorization": "Basic x"}).status_code
        == 401
    )
    ok = httpx.post(server.url + "/invocations", json=body, headers=server.headers())
    assert ok.status_code == 200
    other = httpx.post(
        server.url + "/invocations", json=body, headers={"Authorization": "Bearer some-other-token"}
    )
    assert other.status_code == 200
    for path in ("/metrics", "/v2/health/live", "/v2/health/ready", "/ping", "/health"):
        assert httpx.get(server.url + path).status_code == 200, path
    assert httpx.get(server.url + "/v2").status_code == 401


# --------------------------------------------------------------------------- sockets


def test_accepted_connections_have_tcp_nodelay(server: Server) -> None:
    with socket.create_connection((HOST, server.port)) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(read_response(sock)) == 200
        assert accepted_nodelay(server, sock) == 1
