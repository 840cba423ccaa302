"""Signatures: inference from examples and outputs, storage in TOML, checks of requests."""

from __future__ import annotations

import datetime as dt
import tomllib

import numpy as np
import pandas as pd
import polars as pl
import pytest

from modelcycle.core.errors import InputDataError
from modelcycle.flavors import Signature, Spec
from modelcycle.flavors.toml_writer import dumps


def test_infer_from_pandas_frame() -> None:
    frame = pd.DataFrame(
        {
            "age": np.array([31, 45], dtype="int32"),
            "income": [1.5, 2.5],
            "city": ["a", "b"],
            "plan": pd.Categorical(["x", "y"]),
            "active": [True, False],
            "seen": pd.to_datetime(["2024-01-01", "2024-02-01"]),
            "score": pd.array([1, None], dtype="Int64"),
        }
    )
    sig = Signature.infer(frame, np.array([0.5, 0.7]))
    assert sig.kind == "columns"
    assert {s.name: s.dtype for s in sig.inputs} == {
        "age": "int32",
        "income": "float64",
        "city": "string",
        "plan": "category",
        "active": "bool",
        "seen": "datetime",
        "score": "int64",
    }
    assert sig.outputs == (Spec("prediction", "float64", (-1,)),)


def test_infer_from_polars_dicts_records_and_arrays() -> None:
    frame = pl.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [dt.date(2024, 1, 1)] * 2})
    assert [s.dtype for s in Signature.infer(frame).inputs] == ["int64", "string", "date"]
    columns = Signature.infer({"a": [1, None, 3], "b": [0.5, 1, 2], "v": [[1, 2], [3, 4], [5, 6]]})
    assert columns.inputs == (
        Spec("a", "int64"),
        Spec("b", "float64"),
        Spec("v", "int64", (-1, 2)),
    )
    records = Signature.infer([{"a": 1, "b": "x"}, {"a": 2}])
    assert records.inputs == (Spec("a", "int64"), Spec("b", "string"))
    tensor = Signature.infer(np.zeros((3, 28, 28), dtype="float32"), np.zeros((3, 10)))
    assert tensor.kind == "tensor"
    assert tensor.inputs == (Spec(None, "float32", (-1, 28, 28)),)
    assert tensor.outputs == (Spec("prediction", "float64", (-1, 10)),)


def test_round_trip_through_model_toml() -> None:
    sig = Signature.infer(
        pd.DataFrame({"a": [1], "b c": ["x"]}), pd.DataFrame({"p": [0.1], "label": ["y"]})
    )
    text = dumps({"signature": sig.to_dict()})
    assert Signature.from_dict(tomllib.loads(text)["signature"]) == sig
    tensor = Signature.infer(np.zeros((2, 3)))
    assert Signature.from_dict(tomllib.loads(dumps({"s": tensor.to_dict()}))["s"]) == tensor
    with pytest.raises(InputDataError, match="kind"):
        Signature.from_dict({"kind": "tabular"})
    with pytest.raises(InputDataError, match="malformed"):
        Signature.from_dict({"kind": "columns", "inputs": [{"name": "a"}]})


def test_check_columns() -> None:
    sig = Signature.infer(pd.DataFrame({"age": [30], "income": [1.5], "city": ["a"]}))
    sig.check(pd.DataFrame({"age": [1], "income": [2], "city": ["b"], "extra": [0]}))
    sig.check({"age": [1, 2], "income": [1, 2.5], "city": ["a", "b"]})
    sig.check(pl.DataFrame({"age": [1], "income": [1.0], "city": ["x"]}))
    with pytest.raises(InputDataError) as caught:
        sig.check({"age": [1.5], "city": [3]})
    message = str(caught.value)
    assert "missing column 'income'" in message
    assert "column 'age' should be int64 but is float64" in message
    assert "column 'city' should be string but is int64" in message
    assert caught.value.details["problems"] and "age (int64)" in (caught.value.hint or "")
    with pytest.raises(InputDataError, match="expected named columns"):
        sig.check(np.zeros((2, 3)))


def test_check_tensor() -> None:
    sig = Signature.infer(np.zeros((4, 3), dtype="float32"))
    sig.check(np.ones((1, 3), dtype="float32"))
    sig.check([[1, 2, 3]])  # ints where floats are expected
    sig.check(pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]}))
    with pytest.raises(InputDataError, match=r"shape \[-1, 3\] but has \[-1, 4\]"):
        sig.check(np.zeros((2, 4)))
    with pytest.raises(InputDataError, match="should be float32 but is string"):
        sig.check([["a", "b", "c"]])


def test_toml_writer_values() -> None:
    data = {
        "s": 'quote " and \\ and \n',
        "n": 3,
        "f": 0.1,
        "nan": float("nan"),
        "inf": float("-inf"),
        "b": True,
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "list": [1, "two", {"three": 3}],
        "none": None,
        "table": {"nested": {"deep": [1, 2]}, "x y": 1},
        "rows": [{"a": 1, "inner": {"b": 2}}, {"a": 2}],
    }
    back = tomllib.loads(dumps(data))
    assert back["s"] == data["s"]
    assert np.isnan(back["nan"]) and back["inf"] == float("-inf")
    assert back["when"] == data["when"]
    assert "none" not in back
    assert back["list"] == [1, "two", {"three": 3}]
    assert back["table"] == {"nested": {"deep": [1, 2]}, "x y": 1}
    assert back["rows"] == [{"a": 1, "inner": {"b": 2}}, {"a": 2}]
    with pytest.raises(TypeError):
        dumps({"x": object()})
