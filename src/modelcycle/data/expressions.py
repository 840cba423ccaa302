"""Expressions in recipes and rules: SQL syntax (``age > 30 AND income < 1e6``), parsed by
polars, with unknown columns caught before any data is touched."""

from __future__ import annotations

import polars as pl

from modelcycle.core.errors import RecipeError
from modelcycle.data.yamlio import suggest


def parse_expr(text: str, columns: list[str], where: str) -> pl.Expr:
    if not isinstance(text, str) or not text.strip():
        raise RecipeError(
            f"{where}: the expression is empty",
            hint="write a SQL expression such as `age >= 18 AND income > 0`",
        )
    try:
        expr = pl.sql_expr(text)
        names = expr.meta.root_names()
    except (pl.exceptions.PolarsError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RecipeError(
            f"{where}: cannot parse the expression {text!r}: {first}",
            hint="write a SQL expression such as `age >= 18 AND income > 0`; "
            "quote column names with spaces in double quotes",
        ) from e
    for name in names:
        if name not in columns:
            raise RecipeError(
                f"{where}: the expression {text!r} names column {name!r}, which does not exist"
                f"{suggest(name, columns)}",
                hint=f"columns are: {', '.join(columns)}",
            )
    return expr


def evaluate_expr(df: pl.DataFrame, expr: pl.Expr, text: str, where: str) -> pl.Series:
    try:
        return df.select(expr).to_series()
    except pl.exceptions.PolarsError as e:
        first = str(e).strip().splitlines()[0]
        raise RecipeError(
            f"{where}: the expression {text!r} failed on the data: {first}",
            hint="check the column types it uses (add a `cast` step first)",
        ) from e
