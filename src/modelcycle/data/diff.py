"""Differences between two table versions: schema, rows and column distributions."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from modelcycle.core.errors import UsageError
from modelcycle.data.yamlio import suggest

EXAMPLES = 5


def schema_changes(a: pl.Schema, b: pl.Schema) -> dict[str, Any]:
    return {
        "added": [c for c in b if c not in a],
        "removed": [c for c in a if c not in b],
        "type_changed": [
            {"column": c, "from": str(a[c]), "to": str(b[c])} for c in a if c in b and a[c] != b[c]
        ],
    }


def row_changes(a: pl.DataFrame, b: pl.DataFrame, key: str | None) -> dict[str, Any]:
    shared = [c for c in a.columns if c in b.columns and a.schema[c] == b.schema[c]]
    if key is not None:
        for side, df in (("first", a), ("second", b)):
            if key not in df.columns:
                raise UsageError(
                    f"key column {key!r} is not in the {side} version{suggest(key, df.columns)}",
                    hint="pass --key with a column both versions have",
                )
        ka = a.select(key, pl.struct(shared).hash().alias("__h"))
        kb = b.select(key, pl.struct(shared).hash().alias("__h"))
        joined = ka.join(kb, on=key, how="full", coalesce=True, suffix="_b")
        added_rows = joined.filter(pl.col("__h").is_null())
        removed_rows = joined.filter(pl.col("__h_b").is_null())
        changed_rows = joined.filter(
            pl.col("__h").is_not_null()
            & pl.col("__h_b").is_not_null()
            & (pl.col("__h") != pl.col("__h_b"))
        )
        return {
            "by": key,
            "added": added_rows.height,
            "removed": removed_rows.height,
            "changed": changed_rows.height,
            "unchanged": joined.height
            - added_rows.height
            - removed_rows.height
            - changed_rows.height,
            "examples": {
                "added": added_rows.get_column(key).head(EXAMPLES).to_list(),
                "removed": removed_rows.get_column(key).head(EXAMPLES).to_list(),
                "changed": changed_rows.get_column(key).head(EXAMPLES).to_list(),
            },
        }
    ha = a.select(pl.struct(shared).hash().alias("h")).group_by("h").len()
    hb = b.select(pl.struct(shared).hash().alias("h")).group_by("h").len()
    j = ha.join(hb, on="h", how="full", coalesce=True, suffix="_b").fill_null(0)
    diff = j.select((pl.col("len_b").cast(pl.Int64) - pl.col("len").cast(pl.Int64)).alias("d"))
    added = int(diff.filter(pl.col("d") > 0).sum().item() or 0)
    removed = int(-(diff.filter(pl.col("d") < 0).sum().item() or 0))
    return {
        "by": "row hash"
        + (
            ""
            if len(shared) == len(a.columns) == len(b.columns)
            else f" over the {len(shared)} shared columns"
        ),
        "added": added,
        "removed": removed,
        "unchanged": a.height - removed,
    }


def distribution_changes(pa: dict[str, Any], pb: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    ca, cb = pa.get("columns", {}), pb.get("columns", {})
    for col in ca:
        if col not in cb:
            continue
        x, y = ca[col], cb[col]
        row: dict[str, Any] = {"column": col}
        for k in ("null_fraction", "distinct", "mean", "std", "min", "max", "q50"):
            if x.get(k) is not None and y.get(k) is not None and not _same(x[k], y[k]):
                row[k] = {"from": x[k], "to": y[k]}
        if "top" in x and "top" in y:
            tx = {str(t["value"]): t["count"] for t in x["top"]}
            ty = {str(t["value"]): t["count"] for t in y["top"]}
            if tx != ty:
                row["top"] = {"from": x["top"], "to": y["top"]}
        if len(row) > 1:
            out.append(row)
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal, floats up to rounding in their last bits (profiles computed by different
    releases may round a quantile or a mean differently)."""
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return bool(a == b)
    return bool(a == b)
