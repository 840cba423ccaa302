"""Column kinds for drift: numbers, categories, text, embeddings, and what is not checked.

The rules are Evidently's (`Dataset.from_pandas` type inference), so that a column gets
the same kind, hence the same default test, in both tools:

- floating-point columns are numerical;
- integer columns are categorical when they hold at most 10 distinct values, else
  numerical;
- string columns are text when more than half of their non-missing values are distinct,
  else categorical;
- booleans and categorical/enum columns are categorical;
- dates and times are not checked; nor are nested or binary columns, except lists or
  arrays of numbers, which are embeddings (checked with a domain classifier).

One difference: modelcycle decides from the reference (the fixed baseline, whose sketch
records the kind once), Evidently from the current data. `DriftService.drift` takes
``kinds={"column": "categorical"}`` to override either way.
"""

from __future__ import annotations

from typing import Final

import polars as pl

NUMERICAL: Final = "numerical"
CATEGORICAL: Final = "categorical"
TEXT: Final = "text"
EMBEDDING: Final = "embedding"
DATETIME: Final = "datetime"
EMPTY: Final = "empty"
UNSUPPORTED: Final = "unsupported"

#: the kinds a drift test can check
CHECKED = (NUMERICAL, CATEGORICAL, TEXT, EMBEDDING)
#: the kinds a user may force with ``kinds=``
FORCEABLE = CHECKED

INTEGER_CATEGORY_LIMIT = 10
TEXT_DISTINCT_SHARE = 0.5


def dtype_family(dtype: pl.DataType) -> str:
    """A coarse family of a polars type: float, integer, string, boolean, category,
    temporal, vector, null or other."""
    if dtype == pl.Null:
        return "null"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    if dtype.is_integer():
        return "integer"
    if dtype == pl.String:
        return "string"
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return "category"
    if dtype.is_temporal():
        return "temporal"
    if isinstance(dtype, pl.List | pl.Array):
        inner = dtype.inner
        if inner is not None and inner.is_numeric():
            return "vector"
    return "other"


def infer_kind(dtype: pl.DataType, distinct: int | None, count: int) -> str:
    """The kind of a column of type ``dtype`` with ``distinct`` distinct values (None: it
    was not counted; needed for integers and strings) among ``count`` non-missing ones."""
    family = dtype_family(dtype)
    if family == "float":
        return NUMERICAL
    if family == "integer":
        if distinct is None:
            raise ValueError("integer columns need their distinct count")
        return CATEGORICAL if distinct <= INTEGER_CATEGORY_LIMIT else NUMERICAL
    if family == "string":
        if count == 0:
            return EMPTY
        if distinct is None:
            raise ValueError("string columns need their distinct count")
        return TEXT if distinct > count * TEXT_DISTINCT_SHARE else CATEGORICAL
    if family in ("boolean", "category"):
        return CATEGORICAL
    if family == "temporal":
        return DATETIME
    if family == "vector":
        return EMBEDDING
    if family == "null":
        return EMPTY
    return UNSUPPORTED


def needs_distinct(dtype: pl.DataType) -> bool:
    """Whether `infer_kind` needs the distinct count for this type."""
    return dtype_family(dtype) in ("integer", "string")
