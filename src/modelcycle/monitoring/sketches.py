"""Column sketches: what drift needs to know about one side of a comparison.

A numerical column is summarised by *cells*: its sorted values cut into runs of
consecutive ranks, each run kept as (lowest value, highest value, count, sum). When every
cell holds one distinct value the cells are the data itself (a column with at most
`EXACT_DISTINCT` distinct values is always stored so). Otherwise 1,024 equal-count runs
are halved until ``count × (highest − lowest) ≤ EPSILON × std × rows`` for each, which
keeps the sparse tails as single values and lets the Wasserstein distance be computed
with a guaranteed error bound (see `modelcycle.monitoring.wasserstein`): 2,000–3,100
cells for a million normal, lognormal or uniform values, whatever the row count. A categorical column is
its category counts, which are exact. Text and embedding columns keep only their counts:
their test needs the rows.

Sketches of a stored dataset version are written once as one Arrow IPC blob (zstd) and
reused by every later comparison against that version.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from modelcycle.monitoring import kinds as k

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: columns with at most this many distinct values are stored value by value
EXACT_DISTINCT: Final = 4096
#: the error budget of a compressed run, as a share of the reference's standard deviation
EPSILON: Final = 1e-6
_INITIAL_CELLS: Final = 1024
_SPLIT: Final = 2
SKETCH_FORMAT: Final = "modelcycle-drift-sketch"
SKETCH_VERSION: Final = 1


class ColumnProblem(Exception):
    """A column that cannot be compared as it is (reported on the column, not raised)."""


@dataclass(frozen=True)
class Cells:
    """Sorted runs of a numerical column: value range, count and sum of each run."""

    lo: FloatArray
    hi: FloatArray
    count: IntArray
    total: FloatArray

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def exact(self) -> bool:
        """True when each run holds one distinct value: the cells are the data."""
        return bool(np.array_equal(self.lo, self.hi))

    def values(self) -> FloatArray:
        """The sorted values (only for exact cells)."""
        if not self.exact:
            raise ValueError("compressed cells do not hold the values")
        return np.repeat(self.lo, self.count)


def empty_cells() -> Cells:
    return Cells(np.empty(0), np.empty(0), np.empty(0, dtype=np.int64), np.empty(0))


def runs(values: FloatArray) -> Cells:
    """Exact cells of sorted ``values``: one per distinct value."""
    n = len(values)
    if n == 0:
        return empty_cells()
    starts = np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1))
    counts = np.diff(np.append(starts, n)).astype(np.int64)
    lo = values[starts]
    return Cells(lo, lo.copy(), counts, lo * counts)


def compress(values: FloatArray, std: float, epsilon: float = EPSILON) -> Cells:
    """Cells of sorted ``values`` with ``count × width ≤ epsilon × std × n`` each."""
    n = len(values)
    if n == 0:
        return empty_cells()
    budget = epsilon * std * n
    bounds = np.unique((np.arange(_INITIAL_CELLS + 1, dtype=np.int64) * n) // _INITIAL_CELLS)
    while True:
        starts, ends = bounds[:-1], bounds[1:]
        counts = ends - starts
        widths = values[ends - 1] - values[starts]
        bad = (counts > 1) & (counts * widths > budget)
        if not bad.any():
            break
        first, size = starts[bad], counts[bad]
        pieces = np.minimum(_SPLIT, size)
        cuts = pieces - 1
        owner = np.repeat(np.arange(len(first)), cuts)
        rank = np.arange(int(cuts.sum())) - np.repeat(np.cumsum(cuts) - cuts, cuts) + 1
        bounds = np.union1d(bounds, first[owner] + (rank * size[owner]) // pieces[owner])
    starts, ends = bounds[:-1], bounds[1:]
    return Cells(
        values[starts],
        values[ends - 1],
        (ends - starts).astype(np.int64),
        np.add.reduceat(values, starts),
    )


@dataclass
class ColumnSketch:
    """One column of one side: its kind, counts, and the summary its tests read.

    ``values`` (sorted finite numbers), ``raw`` (text or embedding rows) are present when
    the data itself is at hand, never in a stored sketch. ``nulls`` counts the values left
    out: missing, NaN and ±inf, as Evidently leaves them out.
    """

    name: str
    kind: str
    dtype: str
    rows: int
    nulls: int
    distinct: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    cells: Cells | None = None
    categories: dict[str, int] | None = None
    values: FloatArray | None = None
    raw: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Values compared (rows minus those left out)."""
        return self.rows - self.nulls

    @property
    def has_data(self) -> bool:
        """Whether the rows (not only a summary) are at hand."""
        if self.kind == k.NUMERICAL:
            return self.values is not None or (self.cells is not None and self.cells.exact)
        if self.kind in (k.TEXT, k.EMBEDDING):
            return self.raw is not None
        return True

    def sorted_values(self) -> FloatArray:
        if self.values is not None:
            return self.values
        if self.cells is not None and self.cells.exact:
            return self.cells.values()
        raise ValueError(f"the sketch of {self.name!r} does not hold its values")

    def frequencies(self) -> dict[Any, int]:
        """Counts per distinct value (categories, or numbers of a column with few values)."""
        if self.categories is not None:
            return self.categories
        if self.kind == k.NUMERICAL:
            cells = runs(self.values) if self.values is not None else self.cells
            if cells is None or not cells.exact:
                raise ValueError(f"the sketch of {self.name!r} does not hold its values")
            return {float(v): int(c) for v, c in zip(cells.lo, cells.count, strict=True)}
        raise ValueError(f"{self.name!r} is a {self.kind} column and has no frequencies")

    def distinct_values(self) -> set[Any] | None:
        """The distinct values when they are known and few (else None)."""
        if self.categories is not None:
            return set(self.categories)
        if self.kind != k.NUMERICAL or self.distinct > EXACT_DISTINCT:
            return None
        return set(self.frequencies())

    def for_storage(self) -> ColumnSketch:
        """This sketch without the rows (what a stored sketch holds)."""
        cells = self.cells
        if self.kind == k.NUMERICAL and cells is None and self.values is not None:
            cells = summarise(self.values, self.std or 0.0, self.distinct)
        return replace(self, cells=cells, values=None, raw=None, notes=list(self.notes))


def summarise(values: FloatArray, std: float, distinct: int) -> Cells:
    """The stored cells of sorted ``values``: exact when there are few distinct values."""
    if distinct <= EXACT_DISTINCT or std == 0:
        return runs(values)
    return compress(values, std)


# -- building from data ----------------------------------------------------------------------
def numeric_values(series: pl.Series) -> tuple[FloatArray, int]:
    """(sorted finite values as float64, count left out) of ``series``.

    Strings are parsed as numbers; a value that is not one raises `ColumnProblem`.
    """
    family = k.dtype_family(series.dtype)
    if family in ("float", "integer", "boolean", "null"):
        floats = series.cast(pl.Float64)
    elif family == "string":
        floats = series.str.strip_chars().cast(pl.Float64, strict=False)
        bad = series.is_not_null() & floats.is_null()
        n_bad = int(bad.sum())
        if n_bad:
            first = series.filter(bad).head(3).to_list()
            raise ColumnProblem(
                f"{n_bad:,} values are not numbers (first: "
                + ", ".join(repr(v) for v in first)
                + "); clean the column or compare it as categorical"
            )
    else:
        raise ColumnProblem(f"a {series.dtype} column cannot be compared as numerical")
    # polars sorts a million floats in about 60 % of numpy's CPU time
    finite = floats.filter(floats.is_finite()).sort()
    values = finite.to_numpy().astype(np.float64, copy=False)
    return values, len(series) - len(values)


def category_keys(series: pl.Series) -> pl.Series:
    """The values of ``series`` as category names: strings, whole numbers without '.0'."""
    family = k.dtype_family(series.dtype)
    if family == "float":
        x = series.cast(pl.Float64)
        keys = (
            pl.select(
                pl.when(x.is_finite() & (x == x.floor()) & (x.abs() < 2.0**53))
                .then(x.cast(pl.Int64, strict=False).cast(pl.String))
                .otherwise(pl.when(x.is_finite()).then(x.cast(pl.String)))
                .alias(series.name)
            )
            .to_series()
            .rename(series.name)
        )
        return keys
    if family in ("temporal", "vector", "other"):
        raise ColumnProblem(f"a {series.dtype} column cannot be compared as categorical")
    return series.cast(pl.String)


def sketch_series(name: str, series: pl.Series, kind: str, *, moments: bool = True) -> ColumnSketch:
    """The sketch of one column's data as ``kind``, holding the data (``values``/``raw``).

    ``moments=False`` skips a numerical column's mean and standard deviation (the tests
    only need the reference's)."""
    rows = len(series)
    dtype = str(series.dtype)
    if kind == k.NUMERICAL:
        values, nulls = numeric_values(series)
        sketch = ColumnSketch(name, kind, dtype, rows, nulls, values=values)
        if len(values):
            distinct = 1 + int(np.count_nonzero(values[1:] != values[:-1]))
            sketch.distinct = distinct
            if moments:
                sketch.mean = float(np.mean(values))
                sketch.std = float(np.std(values))
            sketch.min, sketch.max = float(values[0]), float(values[-1])
        return sketch
    if kind == k.CATEGORICAL:
        keys = category_keys(series).drop_nulls()
        counts = keys.value_counts(sort=True, name="n")
        categories = dict(zip(counts[keys.name].to_list(), counts["n"].to_list(), strict=True))
        return ColumnSketch(
            name,
            kind,
            dtype,
            rows,
            rows - len(keys),
            distinct=len(categories),
            categories={str(c): int(v) for c, v in categories.items()},
        )
    if kind == k.TEXT:
        if k.dtype_family(series.dtype) not in ("string", "category"):
            raise ColumnProblem(f"a {series.dtype} column cannot be compared as text")
        text = series.cast(pl.String).drop_nulls()
        return ColumnSketch(
            name, kind, dtype, rows, rows - len(text), distinct=text.n_unique(), raw=text
        )
    if kind == k.EMBEDDING:
        matrix, nulls = embedding_matrix(series)
        return ColumnSketch(name, kind, dtype, rows, nulls, distinct=len(matrix), raw=matrix)
    return ColumnSketch(name, kind, dtype, rows, rows)


def embedding_matrix(series: pl.Series) -> tuple[FloatArray, int]:
    """(rows × dimensions float64 matrix of the non-missing vectors, count left out)."""
    if k.dtype_family(series.dtype) != "vector":
        raise ColumnProblem(f"a {series.dtype} column is not a list of numbers")
    present = series.drop_nulls()
    if isinstance(present.dtype, pl.List):
        lengths = present.list.len()
        shortest, longest = (int(lengths.min()), int(lengths.max())) if len(present) else (0, 0)  # type: ignore[arg-type]
        if shortest != longest:
            raise ColumnProblem(f"embeddings have different lengths ({shortest} to {longest})")
        width = int(lengths[0]) if len(present) else 0
        present = present.list.to_array(width)
    matrix = present.cast(pl.Array(pl.Float64, present.dtype.size)).to_numpy()  # type: ignore[attr-defined]
    matrix = np.asarray(matrix, dtype=np.float64).reshape(len(present), -1)
    keep = np.isfinite(matrix).all(axis=1)
    return matrix[keep], len(series) - int(keep.sum())


def infer_column_kind(series: pl.Series) -> str:
    """`kinds.infer_kind` for a column's data."""
    distinct = None
    count = len(series) - series.null_count()
    if k.needs_distinct(series.dtype):
        distinct = series.drop_nulls().n_unique()
    return k.infer_kind(series.dtype, distinct, count)


# -- storage -----------------------------------------------------------------------------------
_META_KEYS = ("name", "kind", "dtype", "rows", "nulls", "distinct", "mean", "std", "min", "max")


def to_bytes(sketches: list[ColumnSketch], options: dict[str, Any]) -> bytes:
    """One Arrow IPC file (zstd) holding the sketches of a table's columns."""
    import pyarrow as pa

    names: list[str] = []
    values: list[str | None] = []
    lo: list[FloatArray] = []
    hi: list[FloatArray] = []
    counts: list[IntArray] = []
    totals: list[FloatArray] = []
    meta = []
    for s in sketches:
        stored = s.for_storage()
        meta.append({key: getattr(stored, key) for key in _META_KEYS} | {"notes": stored.notes})
        if stored.cells is not None:
            c = stored.cells
            names += [s.name] * len(c.lo)
            values += [None] * len(c.lo)
            lo.append(c.lo)
            hi.append(c.hi)
            counts.append(c.count)
            totals.append(c.total)
        if stored.categories is not None:
            m = len(stored.categories)
            names += [s.name] * m
            values += list(stored.categories)
            nan = np.full(m, np.nan)
            lo.append(nan)
            hi.append(nan)
            counts.append(np.fromiter(stored.categories.values(), dtype=np.int64, count=m))
            totals.append(nan)
    table = pa.table(
        {
            "column": pa.array(names, pa.string()),
            "value": pa.array(values, pa.string()),
            "lo": pa.array(_cat(lo), pa.float64()),
            "hi": pa.array(_cat(hi), pa.float64()),
            "count": pa.array(_cat(counts, np.int64), pa.int64()),
            "total": pa.array(_cat(totals), pa.float64()),
        }
    )
    doc = {"format": SKETCH_FORMAT, "version": SKETCH_VERSION, "options": options, "columns": meta}
    table = table.replace_schema_metadata({"modelcycle": json.dumps(doc, allow_nan=False)})
    sink = io.BytesIO()
    with pa.ipc.new_file(
        sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")
    ) as w:
        w.write_table(table)
    return sink.getvalue()


def _cat(parts: list[Any], dtype: type = np.float64) -> Any:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def from_bytes(data: bytes) -> tuple[list[ColumnSketch], dict[str, Any]]:
    """The sketches and options stored by `to_bytes`."""
    import pyarrow as pa

    table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    doc = json.loads(table.schema.metadata[b"modelcycle"])
    if doc.get("format") != SKETCH_FORMAT or doc.get("version") != SKETCH_VERSION:
        raise ValueError(f"not a version-{SKETCH_VERSION} drift sketch")
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    groups = {key[0]: part for key, part in frame.group_by("column", maintain_order=True)}
    out = []
    for meta in doc["columns"]:
        notes = meta.pop("notes", [])
        sketch = ColumnSketch(**meta, notes=notes)
        part = groups.get(sketch.name)
        if part is not None and sketch.kind == k.NUMERICAL:
            sketch.cells = Cells(
                part["lo"].to_numpy().astype(np.float64),
                part["hi"].to_numpy().astype(np.float64),
                part["count"].to_numpy().astype(np.int64),
                part["total"].to_numpy().astype(np.float64),
            )
        elif part is not None and sketch.kind == k.CATEGORICAL:
            sketch.categories = dict(
                zip(part["value"].to_list(), part["count"].to_list(), strict=True)
            )
        elif sketch.kind == k.CATEGORICAL:
            sketch.categories = {}
        out.append(sketch)
    return out, dict(doc["options"])
