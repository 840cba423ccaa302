"""Column profiles of a table: types, nulls, distinct counts, statistics, histograms, top
values, and columns that look like personal data."""

from __future__ import annotations

import math
import re
from typing import Any

import polars as pl

HIST_BINS = 20
TOP_K = 5
PII_SAMPLE = 1000
PII_SHARE = 0.5
_PII_PATTERNS = {
    "email": re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$"),
    "phone": re.compile(r"^\+?[\d\s().-]{7,20}$"),
    "card_number": re.compile(r"^\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{1,7}$"),
}


def _luhn(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2
        total += (doubled - 9 if doubled > 9 else doubled) if i % 2 else digit
    return total % 10 == 0


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


# Above this many rows, quantiles come from an evenly spaced sample of about this many
# rows and distinct counts are HyperLogLog estimates: exact ones cost a sort per column,
# which dominated adding a large table.
EXACT_ROWS = 200_000


def profile_frame(lf: pl.LazyFrame) -> dict[str, Any]:
    """Profile every column of ``lf`` in a few passes over the data.

    Counts, nulls, min, max, mean and std are exact. For more than EXACT_ROWS rows, the
    quantiles are taken from an evenly spaced sample and ``distinct`` is an estimate
    (``distinct_approximate`` says so).
    """
    schema = lf.collect_schema()
    total_rows = int(lf.select(pl.len()).collect().item())
    approximate = total_rows > EXACT_ROWS
    every = max(1, total_rows // EXACT_ROWS)
    numeric = [c for c, t in schema.items() if t.is_numeric() and t != pl.Boolean]
    texty = [c for c, t in schema.items() if t in (pl.String, pl.Categorical) or t == pl.Enum]
    exprs: list[pl.Expr] = [pl.len().alias("__rows")]
    for c in schema:
        col = pl.col(c)
        distinct = col.approx_n_unique() if approximate else col.n_unique()
        exprs += [col.null_count().alias(f"{c}\0nulls"), distinct.alias(f"{c}\0distinct")]
    # Statistics leave nulls, NaN and ±inf out. Whole numbers are always finite, and a
    # float column seldom holds NaN or inf: those are counted here and only the columns
    # that have any pay for a second pass that filters them (filtering every value of
    # every column cost a third of profiling).
    for c in numeric:
        exprs += _moments(pl.col(c), c)
        if not schema[c].is_integer():
            exprs.append(pl.col(c).cast(pl.Float64).is_finite().not_().sum().alias(f"{c}\0odd"))
    for c in texty:
        lengths = pl.col(c).cast(pl.String).str.len_chars()
        exprs += [lengths.min().alias(f"{c}\0min_length"), lengths.max().alias(f"{c}\0max_length")]
    sampled = lf.gather_every(every) if every > 1 else lf
    if numeric:
        sample = sampled.select(pl.col(c).cast(pl.Float64) for c in numeric)
        stats_df, sample_df = pl.collect_all([lf.select(exprs), sample])
        stats = {**stats_df.row(0, named=True), **_quantiles(sample_df)}
    else:
        stats = lf.select(exprs).collect().row(0, named=True)
    rows = int(stats["__rows"])
    odd = [c for c in numeric if stats.get(f"{c}\0odd")]
    if odd:
        as_float = [pl.col(c).cast(pl.Float64) for c in odd]
        finite = [pl.when(col.is_finite()).then(col) for col in as_float]
        again = lf.select(
            e for c, col in zip(odd, finite, strict=True) for e in _moments(col, c, cast=False)
        )
        stats.update(again.collect().row(0, named=True))

    columns: dict[str, dict[str, Any]] = {}
    for c, dtype in schema.items():
        nulls = int(stats[f"{c}\0nulls"])
        columns[c] = {
            "type": str(dtype),
            "nulls": nulls,
            "null_fraction": round(nulls / rows, 6) if rows else 0.0,
            "distinct": int(stats[f"{c}\0distinct"]),
        }
        if approximate:
            columns[c]["distinct_approximate"] = True
    for c in numeric:
        columns[c].update(
            {
                k: _clean(stats[f"{c}\0{k}"])
                for k in ("min", "max", "mean", "std", "q5", "q25", "q50", "q75", "q95")
            }
        )
    for c in texty:
        columns[c].update({k: _clean(stats[f"{c}\0{k}"]) for k in ("min_length", "max_length")})

    queries: list[pl.LazyFrame] = []
    keys: list[tuple[str, str]] = []
    for c in numeric:
        lo, hi = columns[c]["min"], columns[c]["max"]
        if lo is None or hi is None:
            continue
        width = _bin_width(lo, hi)
        value = pl.col(c).cast(pl.Float64)
        # (value - lo) / width, computed so that it cannot overflow when the range is
        # wider than the largest float (which only happens near ±1.8e308)
        offset = (
            value - lo
            if math.isfinite(hi - lo)
            else (value / HIST_BINS - lo / HIST_BINS) * HIST_BINS
        )
        bin_idx = (offset / width).floor().clip(0, HIST_BINS - 1)
        if not schema[c].is_integer():  # whole numbers are never NaN or inf
            bin_idx = pl.when(value.is_finite()).then(bin_idx)
        # Nulls, NaN and ±inf fall in no bin. Counting each bin with a comparison is
        # about twice as fast as grouping by bin.
        queries.append(
            lf.select(bin_idx.cast(pl.Int8).alias("bin")).select(
                (pl.col("bin") == k).sum().alias(str(k)) for k in range(HIST_BINS)
            )
        )
        keys.append(("hist", c))
    for c, dtype in schema.items():
        if c in numeric and columns[c]["distinct"] > TOP_K * 4:
            continue
        if dtype.is_nested():
            continue
        queries.append(
            lf.select(pl.col(c))
            .drop_nulls()
            .group_by(c)
            .len()
            .sort(["len", c], descending=[True, False])
            .head(TOP_K)
        )
        keys.append(("top", c))
    for c in texty:
        queries.append(lf.select(pl.col(c).cast(pl.String)).drop_nulls().head(PII_SAMPLE))
        keys.append(("pii", c))
    results = pl.collect_all(queries) if queries else []
    for (kind, c), df in zip(keys, results, strict=True):
        if kind == "hist":
            lo, hi = columns[c]["min"], columns[c]["max"]
            width = _bin_width(lo, hi)
            columns[c]["histogram"] = {
                "edges": _edges(lo, hi, width),
                "counts": [int(n) for n in df.row(0)],
            }
        elif kind == "top":
            columns[c]["top"] = [{"value": _clean(v), "count": int(n)} for v, n in df.iter_rows()]
        else:
            kinds = detect_pii(df.get_column(c).to_list())
            if kinds:
                columns[c]["pii"] = kinds
    return {"rows": rows, "columns": columns}


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _bin_width(lo: float, hi: float) -> float:
    """The width of each of the HIST_BINS bins from ``lo`` to ``hi`` (1 when they are
    equal; finite even when ``hi - lo`` overflows)."""
    width = (hi - lo) / HIST_BINS
    if not math.isfinite(width):
        width = hi / HIST_BINS - lo / HIST_BINS
    return width or 1.0


def _edges(lo: float, hi: float, width: float) -> list[float]:
    if math.isfinite(hi - lo):
        return [lo + i * width for i in range(HIST_BINS + 1)]
    step = width / HIST_BINS  # scaled down so that no sum overflows
    return [(lo / HIST_BINS + i * step) * HIST_BINS for i in range(HIST_BINS + 1)]


def _moments(col: pl.Expr, name: str, *, cast: bool = True) -> list[pl.Expr]:
    """min, max, mean and std of ``col`` as floats."""
    value = col.cast(pl.Float64) if cast else col
    return [
        value.min().alias(f"{name}\0min"),
        value.max().alias(f"{name}\0max"),
        value.mean().alias(f"{name}\0mean"),
        value.std().alias(f"{name}\0std"),
    ]


def _quantiles(sample: pl.DataFrame) -> dict[str, float | None]:
    """Each column's QUANTILES over its finite values, interpolated linearly (as polars'
    and numpy's "linear" do). One partial sort per column for all five: polars' per-
    expression quantile sorts the column once per quantile."""
    import numpy as np

    found: dict[str, float | None] = {}
    for c in sample.columns:
        values = sample.get_column(c).to_numpy()
        values = values[np.isfinite(values)]
        empty: list[float | None] = [None] * len(QUANTILES)
        points = np.quantile(values, QUANTILES).tolist() if values.size else empty
        for q, point in zip(QUANTILES, points, strict=True):
            found[f"{c}\0q{int(q * 100)}"] = point
    return found


def detect_pii(values: list[str]) -> list[str]:
    """The kinds of personal data that at least half of ``values`` look like."""
    if not values:
        return []
    found = []
    for kind, pattern in _PII_PATTERNS.items():
        hits = 0
        for v in values:
            s = v.strip()
            if pattern.match(s) and (kind != "card_number" or _luhn(s)):
                hits += 1
        if hits / len(values) >= PII_SHARE:
            found.append(kind)
    if "card_number" in found and "phone" in found:
        found.remove("phone")
    return found
