"""Request data → model input, checked against the model's signature.

Every protocol ends here: records (``[{"age": 31}]``), dicts of columns
(``{"age": [31]}``), rows of values (``[[31, 2.5]]``, optionally with column names) and
typed tensors (Open Inference Protocol). A mismatch raises `InputDataError` (HTTP 422)
naming every missing, unexpected or mistyped field.

The rules, for a model whose signature has named columns:

- every column must be present and no other field may be (a misspelt field is an error,
  not a silently missing one);
- numeric columns take JSON numbers, never booleans or strings; integer columns take
  whole numbers only; ``null`` in a float column is accepted as NaN only when the model
  was found to predict on NaN when it was loaded;
- string and category columns take strings (or null); bool columns take booleans.

Numeric-only tables become one 2-D array (columns in signature order), the form models
are fastest on; tables with other columns become a dict of 1-D arrays.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelcycle.core.errors import InputDataError
from modelcycle.flavors.signature import Signature, Spec, compatible, numpy_dtype
from modelcycle.serving.values import ModelInput

FLOATS = frozenset({"float16", "float32", "float64"})
INTS = frozenset({f"{s}int{n}" for s in ("", "u") for n in (8, 16, 32, 64)})
NUMERIC = FLOATS | INTS
TEXT = frozenset({"string", "category"})
MAX_PROBLEMS = 20


class Problems:
    """Collects what is wrong with a request, then raises one `InputDataError`.

    ``expected`` (what the model takes, for the hint) is a string or something with a
    ``describe()``, asked only when there is a problem."""

    def __init__(self, expected: Any) -> None:
        self.expected = expected
        self.items: list[str] = []

    def add(self, problem: str) -> None:
        if len(self.items) < MAX_PROBLEMS and problem not in self.items:
            self.items.append(problem)

    def error(self) -> InputDataError:
        expected = self.expected if isinstance(self.expected, str) else self.expected.describe()
        return InputDataError(
            "input does not match the model's signature: " + "; ".join(self.items),
            hint=f"the model takes {expected}",
            problems=self.items,
        )

    def raise_any(self) -> None:
        if self.items:
            raise self.error()


def invalid(problem: str, expected: str) -> InputDataError:
    p = Problems(expected)
    p.add(problem)
    return p.error()


def show(value: Any) -> str:
    """How a JSON value is named in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def _has_bool(rows: Sequence[Any]) -> bool:
    """Whether a JSON boolean hides among the values of ``rows`` (lists of values)."""
    return bool in map(type, itertools.chain.from_iterable(rows))


class _BadValue(Exception):
    def __init__(self, row: int, value: Any) -> None:
        self.row = row
        self.value = value


def _first_bad(values: Sequence[Any], ok: Any) -> None:
    for i, v in enumerate(values):
        if not ok(v):
            raise _BadValue(i, v)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and v.__class__ is not bool


def _is_whole(v: Any) -> bool:
    return (isinstance(v, int) and v.__class__ is not bool) or (
        isinstance(v, float) and v.is_integer()
    )


def column_array(
    name: str, dtype: str, values: Sequence[Any], accepts_missing: bool
) -> np.ndarray[Any, Any]:
    """``values`` as a 1-D array of ``dtype``; `InputDataError` naming ``name`` if they do not fit."""
    try:
        return _column_array(dtype, values, accepts_missing)
    except _BadValue as bad:
        raise invalid(_bad_message(name, dtype, bad), f"{name!r} as {dtype}") from None


def _bad_message(name: str, dtype: str, bad: _BadValue) -> str:
    if bad.value is None and dtype in NUMERIC:
        return f"field {name!r} is null at row {bad.row} (the model takes no missing values)"
    return f"field {name!r} should be {dtype} but row {bad.row} holds {show(bad.value)}"


def _column_array(dtype: str, values: Sequence[Any], accepts_missing: bool) -> np.ndarray[Any, Any]:
    if dtype in NUMERIC:
        return _numeric_column(dtype, values, accepts_missing)
    if dtype == "bool":
        _first_bad(values, lambda v: v.__class__ is bool)
        return np.array(values, dtype=bool)
    if dtype in TEXT:
        _first_bad(values, lambda v: v is None or isinstance(v, str))
        return np.array(values, dtype=object)
    if dtype == "bytes":
        _first_bad(values, lambda v: v is None or isinstance(v, str | bytes))
        return np.array([v.encode() if isinstance(v, str) else v for v in values], dtype=object)
    if dtype in ("datetime", "date"):
        _first_bad(values, lambda v: v is None or isinstance(v, str))
        for i, v in enumerate(values):
            try:
                np.datetime64(v)
            except ValueError:
                raise _BadValue(i, v) from None
        return np.array(values, dtype="datetime64[ns]")
    return np.array(values, dtype=object)


def _numeric_column(
    dtype: str, values: Sequence[Any], accepts_missing: bool
) -> np.ndarray[Any, Any]:
    is_float = dtype in FLOATS
    arr = np.array(values) if values else np.empty(0)
    kind = arr.dtype.kind
    fits = arr.ndim == 1 and (kind in "iu" or (kind == "f" and is_float))
    if fits and bool not in map(type, values):
        return _narrow(arr, dtype, values)
    if is_float:
        _first_bad(values, lambda v: _is_number(v) or (v is None and accepts_missing))
        return np.array([np.nan if v is None else v for v in values], dtype=dtype)
    _first_bad(values, _is_whole)
    return _narrow(np.array([int(v) for v in values]), dtype, values)


def _narrow(arr: np.ndarray[Any, Any], dtype: str, values: Sequence[Any]) -> np.ndarray[Any, Any]:
    if dtype in INTS and arr.size and arr.dtype.name != dtype:
        info = np.iinfo(dtype)
        if arr.dtype.kind == "f" or arr.min() < info.min or arr.max() > info.max:
            bad = next(
                i
                for i, v in enumerate(values)
                if not _is_whole(v) or not info.min <= int(v) <= info.max
            )
            raise _BadValue(bad, values[bad])
    return arr.astype(dtype, copy=False)


class InputSchema:
    """Turns the shapes of request data into `ModelInput`; one per model version."""

    kind: str = "free"

    def describe(self) -> str:
        return "any table or array (the model has no signature)"

    def from_records(self, records: Any) -> ModelInput:
        raise NotImplementedError

    def from_columns(self, columns: Any) -> ModelInput:
        raise NotImplementedError

    def from_rows(self, rows: Any, names: Sequence[str] | None = None) -> ModelInput:
        raise NotImplementedError

    def from_tensors(self, tensors: Mapping[str, np.ndarray[Any, Any]]) -> ModelInput:
        raise NotImplementedError

    def frame(self, data: ModelInput) -> Any:
        """``data`` as a pandas DataFrame (for models that need one)."""
        import pandas as pd

        if isinstance(data.data, dict):
            return pd.DataFrame(data.data)
        if data.names is not None:
            return pd.DataFrame(data.data, columns=list(data.names))
        return pd.DataFrame(data.data)

    def _check_records(self, records: Any) -> list[Mapping[str, Any]]:
        if not isinstance(records, list) or not records:
            raise invalid("expected a non-empty list of records (JSON objects)", self.describe())
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise invalid(f"record {i} is {show(r)}, not an object", self.describe())
        return records

    def _check_columns(self, columns: Any) -> dict[str, list[Any]]:
        if not isinstance(columns, dict) or not columns:
            raise invalid("expected an object of columns (name -> list of values)", self.describe())
        lengths = set()
        for name, values in columns.items():
            if not isinstance(values, list):
                raise invalid(f"column {name!r} is {show(values)}, not a list", self.describe())
            lengths.add(len(values))
        if len(lengths) > 1:
            raise invalid("the columns have different lengths", self.describe())
        if lengths == {0}:
            raise invalid("the columns hold no rows", self.describe())
        return columns

    def _check_rows(self, rows: Any) -> list[Any]:
        if not isinstance(rows, list) or not rows:
            raise invalid("expected a non-empty list of rows", self.describe())
        return rows


@dataclass(frozen=True)
class ColumnsSchema(InputSchema):
    """A model that takes named columns."""

    specs: tuple[Spec, ...]
    accepts_missing: bool = False

    kind = "columns"

    def __post_init__(self) -> None:
        names = tuple(str(s.name) for s in self.specs)
        numeric = all(s.dtype in NUMERIC and s.shape is None for s in self.specs)
        dtype = np.result_type(*[s.dtype for s in self.specs]) if numeric else None
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})
        object.__setattr__(self, "numeric", numeric)
        object.__setattr__(self, "matrix_dtype", dtype)

    names: tuple[str, ...] = dataclasses.field(init=False)
    numeric: bool = dataclasses.field(init=False)
    matrix_dtype: Any = dataclasses.field(init=False, repr=False)
    _index: dict[str, int] = dataclasses.field(init=False, repr=False)

    def with_missing(self, accepts: bool) -> ColumnsSchema:
        return dataclasses.replace(self, accepts_missing=accepts)

    def describe(self) -> str:
        return "fields " + ", ".join(s.describe() for s in self.specs)

    def _field_problems(self, keys: Sequence[Any], where: str, problems: Problems) -> None:
        present = set(keys)
        for n in self.names:
            if n not in present:
                problems.add(f"missing field {n!r}{where}")
        for k in keys:
            if k not in self._index:
                problems.add(f"unexpected field {k!r}{where}")

    def from_records(self, records: Any) -> ModelInput:
        names = self.names
        if self.numeric and isinstance(records, list) and records:
            try:
                rows = [[r[n] for n in names] for r in records]
            except (KeyError, TypeError):
                rows = None
            width = len(names)
            if rows is not None and all(len(r) == width for r in records):
                return ModelInput(len(rows), self._matrix(rows), names)
        checked = self._check_records(records)
        problems = Problems(self)
        for i, r in enumerate(checked):
            self._field_problems(list(r), f" (record {i})" if len(checked) > 1 else "", problems)
        problems.raise_any()
        return self._from_lists({n: [r[n] for r in checked] for n in names}, len(checked))

    def from_columns(self, columns: Any) -> ModelInput:
        checked = self._check_columns(columns)
        problems = Problems(self)
        self._field_problems(list(checked), "", problems)
        problems.raise_any()
        n = len(next(iter(checked.values())))
        return self._from_lists({name: checked[name] for name in self.names}, n)

    def from_rows(self, rows: Any, names: Sequence[str] | None = None) -> ModelInput:
        checked = self._check_rows(rows)
        width = len(self.names)
        if names is None:
            order = list(range(width))
            where = f"{width} values per row, in the order {', '.join(map(repr, self.names))}"
        else:
            problems = Problems(self)
            if len(set(names)) != len(names):
                problems.add("a column name is given twice")
            self._field_problems(list(names), "", problems)
            problems.raise_any()
            position = {n: i for i, n in enumerate(names)}
            order = [position[n] for n in self.names]
            width = len(names)
            where = f"{width} values per row (one per column given)"
        for i, row in enumerate(checked):
            if not isinstance(row, list) or len(row) != width:
                raise invalid(f"row {i} is not a list of {where}", self.describe())
        if names is None and self.numeric:
            return ModelInput(len(checked), self._matrix(checked), self.names)
        columns = {n: [row[j] for row in checked] for n, j in zip(self.names, order, strict=True)}
        return self._from_lists(columns, len(checked))

    def from_tensors(self, tensors: Mapping[str, np.ndarray[Any, Any]]) -> ModelInput:
        if len(tensors) == 1:
            name, array = next(iter(tensors.items()))
            if name not in self._index and array.ndim == 2:
                return self._from_matrix_tensor(name, array)
        problems = Problems(self)
        self._field_problems(list(tensors), "", problems)
        problems.raise_any()
        columns: dict[str, np.ndarray[Any, Any]] = {}
        lengths = set()
        for spec in self.specs:
            name = str(spec.name)
            array = tensors[name]
            if array.ndim == 2 and array.shape[1] == 1:
                array = array[:, 0]
            if array.ndim != 1:
                problems.add(f"input {name!r} should have shape [-1] but has {list(array.shape)}")
                continue
            columns[name] = self._typed(name, spec.dtype, array, problems)
            lengths.add(len(array))
        problems.raise_any()
        if len(lengths) != 1 or 0 in lengths:
            raise invalid(
                "the inputs must hold the same number of rows (at least one)", self.describe()
            )
        n = lengths.pop()
        if self.numeric:
            return ModelInput(n, np.column_stack([columns[k] for k in self.names]), self.names)
        return ModelInput(n, columns)

    def _from_matrix_tensor(self, name: str, array: np.ndarray[Any, Any]) -> ModelInput:
        if not self.numeric:
            raise invalid(
                f"input {name!r} is one 2-D tensor, but the model takes one input per column "
                f"({', '.join(map(repr, self.names))})",
                self.describe(),
            )
        problems = Problems(self)
        if array.shape[1] != len(self.names) or array.shape[0] == 0:
            problems.add(
                f"input {name!r} should have shape [-1, {len(self.names)}] "
                f"but has {list(array.shape)}"
            )
        problems.raise_any()
        typed = self._typed(name, str(np.dtype(self.matrix_dtype).name), array, problems)
        problems.raise_any()
        return ModelInput(len(array), typed, self.names)

    def _typed(
        self, name: str, dtype: str, array: np.ndarray[Any, Any], problems: Problems
    ) -> np.ndarray[Any, Any]:
        if dtype in TEXT and array.dtype.kind in "OS":
            try:
                values = [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
            except UnicodeDecodeError:
                problems.add(f"input {name!r} holds bytes that are not UTF-8 text")
                return array
            array = np.array(values, dtype=object)
        actual = numpy_dtype(array) if array.size else dtype
        if not compatible(dtype, actual):
            problems.add(f"input {name!r} should be {dtype} but is {actual}")
            return array
        missing = dtype in NUMERIC and array.dtype.kind == "f" and not self.accepts_missing
        if missing and np.isnan(array).any():
            problems.add(f"input {name!r} holds NaN (the model takes no missing values)")
        return array.astype(dtype, copy=False) if dtype in NUMERIC else array

    def _matrix(self, rows: list[Any]) -> np.ndarray[Any, Any]:
        try:
            arr = np.array(rows)
        except ValueError:
            arr = None
        if arr is not None and arr.ndim == 2:
            kind = arr.dtype.kind
            fits = kind in "iu" or (kind == "f" and self.matrix_dtype.kind == "f")
            if fits and not _has_bool(rows):
                return arr.astype(self.matrix_dtype, copy=False)
        problems = Problems(self)
        columns = []
        for j, spec in enumerate(self.specs):
            values = [row[j] for row in rows]
            try:
                columns.append(_column_array(spec.dtype, values, self.accepts_missing))
            except _BadValue as bad:
                problems.add(_bad_message(str(spec.name), spec.dtype, bad))
        problems.raise_any()
        return np.column_stack(columns).astype(self.matrix_dtype, copy=False)

    def _from_lists(self, columns: dict[str, list[Any]], rows: int) -> ModelInput:
        problems = Problems(self)
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for spec in self.specs:
            name = str(spec.name)
            values = columns[name]
            try:
                if spec.shape is not None:
                    arrays[name] = self._shaped(spec, values)
                else:
                    arrays[name] = _column_array(spec.dtype, values, self.accepts_missing)
            except _BadValue as bad:
                problems.add(_bad_message(name, spec.dtype, bad))
            except InputDataError as e:
                problems.add(e.message)
        problems.raise_any()
        if self.numeric:
            matrix = np.column_stack([arrays[n] for n in self.names])
            return ModelInput(rows, matrix.astype(self.matrix_dtype, copy=False), self.names)
        return ModelInput(rows, arrays)

    def _shaped(self, spec: Spec, values: list[Any]) -> np.ndarray[Any, Any]:
        assert spec.shape is not None
        name = str(spec.name)
        try:
            arr = np.array(values)
        except ValueError:
            raise invalid(f"field {name!r} holds values of different shapes", "") from None
        want = spec.shape[1:]
        if arr.ndim != len(spec.shape) or any(
            w not in (-1, a) for w, a in zip(want, arr.shape[1:], strict=True)
        ):
            raise invalid(
                f"field {name!r} should have shape {list(spec.shape)} but has "
                f"{[-1, *arr.shape[1:]]}",
                "",
            )
        actual = numpy_dtype(arr)
        if not compatible(spec.dtype, actual) or (spec.dtype in NUMERIC and _has_bool_deep(values)):
            raise invalid(f"field {name!r} should be {spec.dtype} but is {actual}", "")
        return arr.astype(spec.dtype, copy=False) if spec.dtype in NUMERIC else arr


def _has_bool_deep(values: Any) -> bool:
    if values.__class__ is bool:
        return True
    if isinstance(values, list):
        return any(_has_bool_deep(v) for v in values)
    return False


@dataclass(frozen=True)
class TensorSchema(InputSchema):
    """A model that takes one array (the first dimension is the rows)."""

    spec: Spec
    accepts_missing: bool = False

    kind = "tensor"

    def with_missing(self, accepts: bool) -> TensorSchema:
        return dataclasses.replace(self, accepts_missing=accepts)

    def describe(self) -> str:
        shape = "any shape" if self.spec.shape is None else f"shape {list(self.spec.shape)}"
        return f"one {self.spec.dtype} tensor of {shape} (rows as lists)"

    def from_records(self, records: Any) -> ModelInput:
        raise invalid("records (objects with named fields) were sent", self.describe())

    def from_columns(self, columns: Any) -> ModelInput:
        if isinstance(columns, dict) and len(columns) == 1:
            return self.from_rows(next(iter(columns.values())))
        raise invalid("named columns were sent", self.describe())

    def from_rows(self, rows: Any, names: Sequence[str] | None = None) -> ModelInput:
        if names is not None:
            raise invalid("column names were sent", self.describe())
        checked = self._check_rows(rows)
        try:
            arr = np.array(checked)
        except ValueError:
            raise invalid("the rows have different lengths or shapes", self.describe()) from None
        problems = Problems(self)
        dtype = self.spec.dtype
        if dtype in NUMERIC:
            kind = arr.dtype.kind
            fits = (kind in "iu" or (kind == "f" and dtype in FLOATS)) and not _rows_have_bool(
                checked, arr.ndim
            )
            if not fits and kind == "O" and dtype in FLOATS and self.accepts_missing:
                arr, fits = _with_nan(checked, arr)
            if not fits:
                problems.add(f"the input should be {dtype} but holds {_tensor_kind(arr, checked)}")
        elif not compatible(dtype, numpy_dtype(arr)):
            problems.add(f"the input should be {dtype} but is {numpy_dtype(arr)}")
        self._shape_problems(list(arr.shape), problems)
        problems.raise_any()
        return ModelInput(len(arr), arr.astype(dtype, copy=False) if dtype in NUMERIC else arr)

    def from_tensors(self, tensors: Mapping[str, np.ndarray[Any, Any]]) -> ModelInput:
        if len(tensors) != 1:
            raise invalid(f"{len(tensors)} inputs were sent", self.describe())
        array = next(iter(tensors.values()))
        problems = Problems(self)
        actual = numpy_dtype(array) if array.size else self.spec.dtype
        if not compatible(self.spec.dtype, actual):
            problems.add(f"the input should be {self.spec.dtype} but is {actual}")
        elif array.dtype.kind == "f" and not self.accepts_missing and np.isnan(array).any():
            problems.add("the input holds NaN (the model takes no missing values)")
        self._shape_problems(list(array.shape), problems)
        problems.raise_any()
        if self.spec.dtype in NUMERIC:
            array = array.astype(self.spec.dtype, copy=False)
        return ModelInput(len(array), array)

    def _shape_problems(self, shape: list[int], problems: Problems) -> None:
        want = self.spec.shape
        if not shape or shape[0] == 0:
            problems.add("the input holds no rows")
        elif want is not None and (
            len(want) != len(shape)
            or any(w not in (-1, a) for w, a in zip(want[1:], shape[1:], strict=True))
        ):
            problems.add(f"the input should have shape {list(want)} but has {shape}")


def _rows_have_bool(rows: list[Any], ndim: int) -> bool:
    """Whether JSON booleans hide among numbers (numpy would turn them into 0 and 1)."""
    if ndim == 1:
        return bool in map(type, rows)
    if ndim == 2:
        return _has_bool(rows)
    return False  # deeper tensors (images) are not scanned value by value


def _with_nan(rows: list[Any], arr: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], bool]:
    """Rows holding nulls as a float array with NaN, if everything else is a number."""
    try:
        filled = np.array(rows, dtype=np.float64)
    except (ValueError, TypeError):
        return arr, False
    return filled, not _rows_have_bool(rows, filled.ndim)


def _tensor_kind(arr: np.ndarray[Any, Any], rows: Any) -> str:
    if arr.dtype.kind in "US":
        return "strings"
    if arr.dtype.kind == "b" or _has_bool_deep(rows):
        return "booleans"
    if arr.dtype.kind == "f":
        return "fractional numbers"
    return "values that are not numbers (nulls or nested lists)"


class FreeSchema(InputSchema):
    """A model saved without a signature: data goes through as sent."""

    def from_records(self, records: Any) -> ModelInput:
        checked = self._check_records(records)
        keys = list(dict.fromkeys(k for r in checked for k in r))
        return self.from_columns({k: [r.get(k) for r in checked] for k in keys})

    def from_columns(self, columns: Any) -> ModelInput:
        checked = self._check_columns(columns)
        arrays = {}
        for k, v in checked.items():
            try:
                arr = np.array(v)
            except ValueError:
                arr = np.array(v, dtype=object)
            arrays[str(k)] = arr.astype(object) if arr.dtype.kind == "U" else arr
        return ModelInput(len(next(iter(arrays.values()))), arrays)

    def from_rows(self, rows: Any, names: Sequence[str] | None = None) -> ModelInput:
        checked = self._check_rows(rows)
        if names is not None:
            if any(not isinstance(r, list) or len(r) != len(names) for r in checked):
                raise invalid(f"every row must hold {len(names)} values", self.describe())
            return self.from_columns({n: [r[i] for r in checked] for i, n in enumerate(names)})
        try:
            arr = np.array(checked)
        except ValueError:
            raise invalid("the rows have different lengths or shapes", self.describe()) from None
        return ModelInput(len(arr), arr)

    def from_tensors(self, tensors: Mapping[str, np.ndarray[Any, Any]]) -> ModelInput:
        if len(tensors) == 1:
            array = next(iter(tensors.values()))
            return ModelInput(len(array), array)
        lengths = {len(a) for a in tensors.values()}
        if len(lengths) != 1:
            raise invalid("the inputs hold different numbers of rows", self.describe())
        return ModelInput(
            lengths.pop(), {k: v.reshape(len(v), -1)[:, 0] for k, v in tensors.items()}
        )


def schema_for(signature: Signature | None) -> InputSchema:
    """The schema that checks requests for a model with ``signature``."""
    if signature is None or not signature.inputs:
        return FreeSchema()
    if signature.kind == "tensor":
        return TensorSchema(signature.inputs[0])
    return ColumnsSchema(signature.inputs)
