"""What a model takes and returns: named columns, or one tensor with a shape.

A signature is inferred from an input example and the model's output on it, stored in
``model.toml``, and checked against requests before they reach the model. Dtypes are
plain names: ``bool``, ``int8`` … ``int64``, ``uint8`` … ``uint64``, ``float16`` …
``float64``, ``string``, ``bytes``, ``category``, ``datetime``, ``date``, ``duration``,
``object``. A dimension of ``-1`` in a shape is any length (the batch dimension always is).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modelcycle.core.errors import InputDataError
from modelcycle.flavors.inputs import (
    is_columns,
    is_instance,
    is_pandas_frame,
    is_polars_frame,
    is_records,
    to_numpy,
)

Kind = Literal["columns", "tensor"]
DEFAULT_OUTPUT = "prediction"

_INTS = {f"int{n}" for n in (8, 16, 32, 64)} | {f"uint{n}" for n in (8, 16, 32, 64)}
_FLOATS = {"float16", "float32", "float64"}
# expected dtype -> what else a request may send for it without losing meaning
_ACCEPTS: dict[str, set[str]] = {
    **{f: _FLOATS | _INTS for f in _FLOATS},
    **{i: set(_INTS) for i in _INTS},
    "category": {"string"},
    "datetime": {"date"},
}


@dataclass(frozen=True)
class Spec:
    """One input column, one output, or the single input tensor (``name`` None)."""

    name: str | None
    dtype: str
    shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.name is None else {"name": self.name}
        out["dtype"] = self.dtype
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spec:
        shape = data.get("shape")
        name = data.get("name")
        return cls(
            name=None if name is None else str(name),
            dtype=str(data["dtype"]),
            shape=None if shape is None else tuple(int(d) for d in shape),
        )

    def describe(self) -> str:
        shape = "" if self.shape is None else f"[{', '.join(map(str, self.shape))}]"
        return f"{self.name or 'tensor'} ({self.dtype}{shape})"


@dataclass(frozen=True)
class Signature:
    """Inputs (columns or one tensor) and outputs of a model."""

    kind: Kind
    inputs: tuple[Spec, ...]
    outputs: tuple[Spec, ...] = ()

    @classmethod
    def infer(cls, example: Any, output: Any = None) -> Signature:
        """The signature of ``example`` and, when given, the model's ``output`` on it."""
        kind, inputs = describe(example)
        outputs: tuple[Spec, ...] = ()
        if output is not None:
            out_kind, outputs = describe(output)
            if out_kind == "tensor":
                outputs = tuple(Spec(DEFAULT_OUTPUT, s.dtype, s.shape) for s in outputs)
        return cls(kind, inputs, outputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        kind = data.get("kind")
        if kind not in ("columns", "tensor"):
            raise InputDataError(
                f"signature kind must be 'columns' or 'tensor', not {kind!r}",
                hint="fix the [signature] table of model.toml or save the package again",
            )
        try:
            return cls(
                kind=kind,
                inputs=tuple(Spec.from_dict(s) for s in data.get("inputs", [])),
                outputs=tuple(Spec.from_dict(s) for s in data.get("outputs", [])),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputDataError(
                f"malformed signature ({e!r})",
                hint="fix the [signature] table of model.toml or save the package again",
            ) from e

    def check(self, data: Any) -> None:
        """Raise `InputDataError` naming every missing column and wrong dtype in ``data``.

        Extra columns are allowed (models ignore or select them); integers are accepted where
        floats are expected.
        """
        problems = self.problems(data)
        if problems:
            expected = ", ".join(s.describe() for s in self.inputs)
            raise InputDataError(
                "input does not match the model's signature: " + "; ".join(problems),
                hint=f"the model takes {expected}",
                problems=problems,
            )

    def problems(self, data: Any) -> list[str]:
        """What in ``data`` does not fit: missing columns, wrong dtypes (empty if it fits)."""
        kind, specs = describe(data)
        if self.kind == "tensor":
            if kind == "columns":
                specs = describe(to_numpy(data))[1]
            return _tensor_problems(self.inputs[0], specs[0]) if self.inputs else []
        if kind != "columns":
            names = ", ".join(repr(s.name) for s in self.inputs)
            return [f"expected named columns ({names}), got an unnamed array"]
        actual = {s.name: s for s in specs}
        problems: list[str] = []
        for spec in self.inputs:
            got = actual.get(spec.name)
            if got is None:
                problems.append(f"missing column {spec.name!r}")
            elif not compatible(spec.dtype, got.dtype):
                problems.append(f"column {spec.name!r} should be {spec.dtype} but is {got.dtype}")
        return problems


def compatible(expected: str, actual: str) -> bool:
    """True if data of dtype ``actual`` can be given where ``expected`` is declared."""
    return expected in (actual, "object") or actual in _ACCEPTS.get(expected, ())


def describe(data: Any) -> tuple[Kind, tuple[Spec, ...]]:
    """Whether ``data`` is columns or a tensor, and its specs."""
    if is_pandas_frame(data):
        return "columns", tuple(Spec(str(c), _pandas_dtype(data[c])) for c in data.columns)
    if is_polars_frame(data):
        return "columns", tuple(Spec(c, _polars_dtype(t)) for c, t in data.schema.items())
    if is_instance(data, "pandas", "Series") and data.name is not None:
        return "columns", (Spec(str(data.name), _pandas_dtype(data)),)
    if is_columns(data):
        return "columns", tuple(_column_spec(str(k), v) for k, v in data.items())
    if is_records(data):
        keys = dict.fromkeys(k for record in data for k in record)
        return "columns", tuple(_column_spec(str(k), [r.get(k) for r in data]) for k in keys)
    array = to_numpy(data)
    shape = (-1, *array.shape[1:]) if array.ndim else ()
    return "tensor", (Spec(None, numpy_dtype(array), shape),)


def numpy_dtype(array: np.ndarray[Any, Any]) -> str:
    """The signature dtype of a numpy array (object arrays by their non-null values)."""
    kind = array.dtype.kind
    if kind == "b":
        return "bool"
    if kind in "iuf":
        return str(array.dtype.name)
    if kind == "U":
        return "string"
    if kind == "S":
        return "bytes"
    if kind == "M":
        return "datetime"
    if kind == "m":
        return "duration"
    return _object_dtype(array.ravel().tolist())


def _object_dtype(values: Sequence[Any]) -> str:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return "object"
    if all(isinstance(v, bool | np.bool_) for v in present):
        return "bool"
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in present):
        return "int64"
    if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in present):
        return "float64"
    if all(isinstance(v, str) for v in present):
        return "string"
    if all(isinstance(v, bytes) for v in present):
        return "bytes"
    return "object"


def _column_spec(name: str, values: Any) -> Spec:
    array = to_numpy(values)
    if array.dtype.kind == "O" and array.ndim == 1:
        return Spec(name, _object_dtype(list(values)))
    shape = (-1, *array.shape[1:]) if array.ndim > 1 else None
    return Spec(name, numpy_dtype(array), shape)


def _pandas_dtype(series: Any) -> str:
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return str(dtype).lower()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "duration"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "string"
    return _object_dtype(series.tolist())


_POLARS = {
    "Boolean": "bool",
    "String": "string",
    "Utf8": "string",
    "Binary": "bytes",
    "Categorical": "category",
    "Enum": "category",
    "Datetime": "datetime",
    "Date": "date",
    "Duration": "duration",
}


def _polars_dtype(dtype: Any) -> str:
    text = str(dtype)
    base = text.partition("(")[0]
    if base in _POLARS:
        return _POLARS[base]
    if base.startswith(("Int", "UInt", "Float")):
        return base.lower()
    return "object"


def _tensor_problems(expected: Spec, actual: Spec) -> list[str]:
    problems = []
    if not compatible(expected.dtype, actual.dtype):
        problems.append(f"the input should be {expected.dtype} but is {actual.dtype}")
    if expected.shape is not None and actual.shape is not None:
        fits = len(expected.shape) == len(actual.shape) and all(
            e in (-1, a) for e, a in zip(expected.shape, actual.shape, strict=True)
        )
        if not fits:
            problems.append(
                f"the input should have shape {list(expected.shape)} but has {list(actual.shape)}"
            )
    return problems
