"""Slices: subsets of the evaluation rows, by the values of a column or by a filter.

A column slice yields one group per distinct value (the most frequent `MAX_SLICE_VALUES`,
the rest pooled as ``(other)``, missing values as ``(missing)``). A filter slice yields one
group: the rows where a boolean SQL expression such as ``age > 60 AND sex = 'F'`` holds
(parsed by polars; rows where it is null are left out).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from modelcycle.core.errors import UsageError
from modelcycle.core.text import suggest

MAX_SLICE_VALUES = 50
OTHER = "(other)"
MISSING = "(missing)"

Array = np.ndarray[Any, Any]

_NAMED = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*=\s*(column|filter):(.*)$", re.DOTALL)
_FILTER_HINT = (
    "write a SQL expression such as `age > 60 AND sex = 'F'`; "
    "quote column names with spaces in double quotes"
)


@dataclass(frozen=True)
class SliceSpec:
    """How to slice the rows: by each value of ``column``, or by the rows ``filter`` keeps.

    Exactly one of ``column`` and ``filter`` is set. ``name`` labels the slice in reports
    (default: the column name or the filter text).
    """

    column: str | None = None
    filter: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.column is None) == (self.filter is None):
            raise UsageError(
                "a slice needs exactly one of column= and filter=",
                hint="slice by a column (`column:region`) or by a filter (`filter:age > 60`)",
            )
        text = self.column if self.column is not None else self.filter
        if not isinstance(text, str) or not text.strip():
            raise UsageError(
                "a slice's column or filter is empty",
                hint="slice by a column (`column:region`) or by a filter (`filter:age > 60`)",
            )

    @property
    def kind(self) -> str:
        """``"column"`` or ``"filter"``."""
        return "column" if self.column is not None else "filter"

    @property
    def label(self) -> str:
        """The slice's name in reports."""
        if self.name:
            return self.name
        return self.column if self.column is not None else str(self.filter)

    @classmethod
    def parse(cls, text: str) -> SliceSpec:
        """Read ``column:NAME``, ``filter:EXPR``, ``LABEL=column:NAME``, ``LABEL=filter:EXPR``
        or a bare column name (as given to ``--slice``)."""
        stripped = text.strip()
        if not stripped:
            raise UsageError(
                "empty --slice", hint="use `column:region`, `filter:age > 60` or `region`"
            )
        name = None
        named = _NAMED.match(stripped)
        if named and not stripped.startswith(("column:", "filter:")):
            name, kind, body = named.group(1), named.group(2), named.group(3).strip()
        elif stripped.startswith(("column:", "filter:")):
            kind, _, body = stripped.partition(":")
            body = body.strip()
        else:
            kind, body = "column", stripped
        if kind == "column":
            return cls(column=body, name=name)
        return cls(filter=body, name=name)

    def __str__(self) -> str:
        prefix = f"{self.name}=" if self.name else ""
        return f"{prefix}{self.kind}:{self.column if self.column is not None else self.filter}"


def slice_groups(
    spec: SliceSpec, frames: Sequence[pd.DataFrame], n_rows: int
) -> list[tuple[Any, Array]]:
    """``(value, row positions)`` for each group of ``spec``; ``frames`` hold the columns
    slices may use (``n_rows`` rows each, looked up in order)."""
    if spec.column is not None:
        return _column_groups(_find_column(spec.column, frames))
    assert spec.filter is not None
    return [(spec.filter, np.flatnonzero(_filter_mask(spec.filter, frames, n_rows)))]


def _find_column(name: str, frames: Sequence[pd.DataFrame]) -> pd.Series[Any]:
    for frame in frames:
        if name in frame.columns:
            found = frame[name]
            if isinstance(found, pd.DataFrame):
                raise UsageError(f"slice column {name!r} appears more than once in the data")
            return found
    columns = [str(c) for f in frames for c in f.columns]
    raise UsageError(
        f"cannot slice by column {name!r}: no such column{suggest(name, columns)}",
        hint=f"columns are: {', '.join(columns)}",
    )


def _column_groups(values: pd.Series[Any]) -> list[tuple[Any, Array]]:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    order = np.argsort(-counts, kind="stable")
    top, rest = order[:MAX_SLICE_VALUES], order[MAX_SLICE_VALUES:]
    groups: list[tuple[Any, Array]] = [
        (_plain(uniques[c]), np.flatnonzero(codes == c)) for c in top
    ]
    if len(rest):
        groups.append((_unused_label(OTHER, uniques), np.flatnonzero(np.isin(codes, rest))))
    if (codes < 0).any():
        groups.append((_unused_label(MISSING, uniques), np.flatnonzero(codes < 0)))
    return groups


def _unused_label(label: str, uniques: Any) -> str:
    taken = {str(u) for u in uniques}
    while label in taken:
        label = f"({label})"
    return label


def _filter_mask(text: str, frames: Sequence[pd.DataFrame], n_rows: int) -> Array:
    try:
        expr = pl.sql_expr(text)
        names = expr.meta.root_names()
    except (pl.exceptions.PolarsError, ValueError, TypeError) as e:
        raise UsageError(
            f"cannot parse the slice filter {text!r}: {_first_line(e)}", hint=_FILTER_HINT
        ) from e
    columns: dict[str, pd.Series[Any]] = {}
    available = [str(c) for f in frames for c in f.columns]
    for col in names:
        if col not in available:
            raise UsageError(
                f"the slice filter {text!r} names column {col!r}, which does not exist"
                f"{suggest(col, available)}",
                hint=f"columns are: {', '.join(available)}",
            )
        columns[col] = _find_column(col, frames)
    try:
        table = pl.from_pandas(pd.DataFrame(columns).reset_index(drop=True))
        result = table.select(expr).to_series()
    except (pl.exceptions.PolarsError, ValueError, TypeError) as e:
        raise UsageError(
            f"the slice filter {text!r} failed on the data: {_first_line(e)}",
            hint="check the types of the columns it uses",
        ) from e
    if result.dtype != pl.Boolean:
        raise UsageError(
            f"the slice filter {text!r} gives {result.dtype} values, not true/false",
            hint="write a condition such as `age > 60`",
        )
    if len(result) == 1 and n_rows != 1:
        result = pl.repeat(result[0], n_rows, eager=True)
    mask: Array = result.fill_null(False).to_numpy()
    return mask.astype(bool)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
