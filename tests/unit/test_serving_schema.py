"""Request data checked against a model's signature, and the wire protocols' decoding."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modelcycle.core.errors import InputDataError
from modelcycle.flavors.signature import Signature
from modelcycle.serving.errors import MalformedRequest, UnsupportedMediaType
from modelcycle.serving.protocol_mlflow import MLflow
from modelcycle.serving.protocol_v1 import V1
from modelcycle.serving.protocol_v2 import V2
from modelcycle.serving.schema import ColumnsSchema, TensorSchema, schema_for
from modelcycle.serving.values import ModelInput, Prediction, concat

NUMERIC = Signature.from_dict(
    {
        "kind": "columns",
        "inputs": [{"name": "age", "dtype": "int64"}, {"name": "x", "dtype": "float64"}],
    }
)
MIXED = Signature.from_dict(
    {
        "kind": "columns",
        "inputs": [
            {"name": "plan", "dtype": "string"},
            {"name": "x", "dtype": "float64"},
            {"name": "vip", "dtype": "bool"},
        ],
    }
)
TENSOR = Signature.from_dict({"kind": "tensor", "inputs": [{"dtype": "float32", "shape": [-1, 3]}]})
JSON_HEADERS = {b"content-type": b"application/json"}


def columns(sig: Signature) -> ColumnsSchema:
    schema = schema_for(sig)
    assert isinstance(schema, ColumnsSchema)
    return schema


def problems(call: Any, *args: Any) -> list[str]:
    with pytest.raises(InputDataError) as e:
        call(*args)
    found: list[str] = e.value.details["problems"]
    return found


def test_numeric_tables_become_one_array_in_signature_order() -> None:
    schema = columns(NUMERIC)
    expected = [[31.0, 1.5], [45.0, 2.0]]
    for data in (
        schema.from_records([{"x": 1.5, "age": 31}, {"age": 45, "x": 2}]),
        schema.from_columns({"x": [1.5, 2], "age": [31, 45]}),
        schema.from_rows([[31, 1.5], [45, 2]]),
        schema.from_rows([[1.5, 31], [2, 45]], ["x", "age"]),
        schema.from_tensors({"age": np.array([31, 45]), "x": np.array([[1.5], [2.0]])}),
        schema.from_tensors({"features": np.array([[31, 1.5], [45, 2.0]])}),
    ):
        assert isinstance(data.data, np.ndarray) and data.data.dtype == np.float64
        assert data.data.tolist() == expected and data.rows == 2 and data.names == ("age", "x")
        assert data.to_log() == {"age": [31.0, 45.0], "x": [1.5, 2.0]}


def test_each_wrong_field_is_named() -> None:
    schema = columns(NUMERIC)
    assert problems(schema.from_records, [{"age": 1}]) == ["missing field 'x'"]
    assert problems(schema.from_records, [{"age": 1, "x": 1, "y": 2}]) == ["unexpected field 'y'"]
    found = problems(schema.from_records, [{"age": 1.5, "x": "a"}, {"age": True, "x": None}])
    assert found == [
        "field 'age' should be int64 but row 0 holds 1.5",
        "field 'x' should be float64 but row 0 holds the string 'a'",
    ]
    assert problems(schema.from_records, [{"age": 1, "x": None}]) == [
        "field 'x' is null at row 0 (the model takes no missing values)"
    ]
    assert problems(schema.from_records, [{"age": 2**70, "x": 1.0}])[0].startswith("field 'age'")
    assert (
        "record 1 is the string 'x', not an object" in problems(schema.from_records, [{}, "x"])[0]
    )
    assert problems(schema.from_rows, [[1, 2, 3]])[0].startswith("row 0 is not a list of 2")
    assert problems(schema.from_columns, {"age": [1, 2], "x": [1.0]}) == [
        "the columns have different lengths"
    ]
    assert problems(schema.from_tensors, {"age": np.array([True]), "x": np.array([1.0])}) == [
        "input 'age' should be int64 but is bool"
    ]


def test_nulls_become_nan_only_for_models_that_take_them() -> None:
    schema = columns(NUMERIC).with_missing(True)
    data = schema.from_records([{"age": 1, "x": None}])
    assert isinstance(data.data, np.ndarray) and np.isnan(data.data[0, 1])
    assert problems(schema.from_records, [{"age": None, "x": 1.0}])[0].startswith("field 'age'")


def test_tables_with_text_stay_columns() -> None:
    schema = columns(MIXED)
    data = schema.from_records(
        [{"plan": "pro", "x": 1, "vip": False}, {"plan": None, "x": 2.5, "vip": True}]
    )
    assert isinstance(data.data, dict)
    assert data.data["plan"].tolist() == ["pro", None] and data.data["x"].dtype == np.float64
    assert data.data["vip"].tolist() == [False, True]
    assert schema.frame(data).columns.tolist() == ["plan", "x", "vip"]
    assert problems(schema.from_records, [{"plan": 3, "x": 1.0, "vip": 1}]) == [
        "field 'plan' should be string but row 0 holds 3",
        "field 'vip' should be bool but row 0 holds 1",
    ]
    text = schema.from_tensors(
        {"plan": np.array([b"pro"], dtype=object), "x": np.array([1.0]), "vip": np.array([True])}
    )
    assert isinstance(text.data, dict) and text.data["plan"].tolist() == ["pro"]
    assert "one input per column" in problems(schema.from_tensors, {"m": np.zeros((1, 3))})[0]


def test_tensor_models_take_rows_of_the_right_shape() -> None:
    schema = schema_for(TENSOR)
    assert isinstance(schema, TensorSchema)
    data = schema.from_rows([[1, 2, 3], [4, 5, 6.5]])
    assert isinstance(data.data, np.ndarray) and data.data.dtype == np.float32
    assert problems(schema.from_rows, [[1, 2]]) == [
        "the input should have shape [-1, 3] but has [1, 2]"
    ]
    assert problems(schema.from_rows, [[1, True, 3]]) == [
        "the input should be float32 but holds booleans"
    ]
    assert problems(schema.from_rows, [[1, "a", 3]]) == [
        "the input should be float32 but holds strings"
    ]
    assert "different lengths" in problems(schema.from_rows, [[1, 2, 3], [1]])[0]
    assert "records" in problems(schema.from_records, [{"a": 1}])[0]
    assert problems(schema.from_tensors, {"t": np.full((1, 3), np.nan)}) == [
        "the input holds NaN (the model takes no missing values)"
    ]


def test_concat_and_split_keep_request_order() -> None:
    schema = columns(NUMERIC)
    parts = [schema.from_rows([[1, 1.0]]), schema.from_rows([[2, 2.0], [3, 3.0]])]
    merged = concat(parts)
    assert merged.rows == 3 and np.asarray(merged.data)[:, 0].tolist() == [1.0, 2.0, 3.0]
    split = Prediction(np.array([10, 20, 30]), np.eye(3)).split([1, 2])
    assert [p.values.tolist() for p in split] == [[10], [20, 30]]
    assert split[1].probabilities is not None and split[1].probabilities.shape == (2, 3)
    mixed = columns(MIXED)
    rows = concat([mixed.from_records([{"plan": "a", "x": 1, "vip": True}])] * 2)
    assert isinstance(rows.data, dict) and rows.data["plan"].tolist() == ["a", "a"]


def test_v1_and_mlflow_bodies() -> None:
    schema = columns(NUMERIC)
    v1, mlflow = V1(), MLflow()
    body = json.dumps({"records": [{"age": 1, "x": 2.0}], "probabilities": False}).encode()
    decoded = v1.decode(body, JSON_HEADERS, schema)
    assert decoded.want_proba is False and decoded.input.rows == 1
    with pytest.raises(MalformedRequest):
        v1.decode(b'{"records": [], "rows": []}', JSON_HEADERS, schema)
    with pytest.raises(UnsupportedMediaType):
        v1.decode(body, {b"content-type": b"text/csv"}, schema)
    csv_body = b"x,age\n2.5,1\n,2\n"
    nan_schema = schema.with_missing(True)
    data = mlflow.decode(csv_body, {b"content-type": b"text/csv; charset=utf-8"}, nan_schema).input
    assert np.asarray(data.data)[0].tolist() == [1.0, 2.5] and np.isnan(np.asarray(data.data)[1, 1])
    with pytest.raises(InputDataError):
        mlflow.decode(b"x,age\nabc,1\n", {b"content-type": b"text/csv"}, schema)
    encoded = mlflow.encode("m", 1, Prediction(np.array([1, 0])), decoded, "r", None)
    assert json.loads(encoded.body) == {"predictions": [1, 0]}


def test_v2_binary_tensors_round_trip() -> None:
    import tritonclient.http as triton

    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    header = json.dumps(
        {"inputs": [tensor._get_tensor()], "parameters": {"binary_data_output": True}}
    )
    raw = tensor._get_binary_data()
    assert raw is not None
    body = header.encode() + raw
    headers = {b"inference-header-content-length": str(len(header)).encode()}
    v2 = V2()
    decoded = v2.decode(body, headers, schema_for(TENSOR))
    assert np.asarray(decoded.input.data).tolist() == x.tolist()
    labels = np.array(["cat", "dog"], dtype=object)
    encoded = v2.encode("m", 3, Prediction(labels, np.eye(2)), decoded, "rid", ["cat", "dog"])
    size = int(dict(encoded.headers)[b"inference-header-content-length"])
    result = triton.InferResult.from_response_body(encoded.body, header_length=size)
    assert result.as_numpy("prediction").tolist() == [b"cat", b"dog"]
    assert result.as_numpy("probabilities").tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert result.get_response()["model_version"] == "3"
    with pytest.raises(MalformedRequest, match="claims"):
        v2.decode(body[:-4], headers, schema_for(TENSOR))


def test_model_input_logs_tensors_as_lists() -> None:
    data = ModelInput(1, np.zeros((1, 2)))
    assert data.to_log() == {"tensor": [[0.0, 0.0]]}
