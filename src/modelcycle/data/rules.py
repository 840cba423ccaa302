"""Validation rules: declarative checks on a table, all evaluated, every failure reported.

A rule names a column (or none, for table-level checks) and one or more checks::

    rules:
      - {column: age, not_null: true}
      - {column: label, allowed: [0, 1]}
      - {column: income, range: {min: 0, max: 1000000}, mostly: 0.99}
      - {row_count: {min: 100}}
      - {expr: "income >= spend", mostly: 0.95}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from modelcycle.core.errors import RulesError
from modelcycle.data.expressions import parse_expr
from modelcycle.data.yamlio import load_yaml, suggest

CHECKS = ("exists", "type", "not_null", "unique", "range", "allowed", "regex", "expr", "row_count")
MODIFIERS = ("column", "mostly", "name")
EXAMPLES = 5
_TYPE_GROUPS: dict[str, Callable[[pl.DataType], bool]] = {
    "int": lambda t: t.is_integer(),
    "integer": lambda t: t.is_integer(),
    "float": lambda t: t.is_float(),
    "numeric": lambda t: t.is_numeric(),
    "number": lambda t: t.is_numeric(),
    "string": lambda t: t == pl.String,
    "str": lambda t: t == pl.String,
    "bool": lambda t: t == pl.Boolean,
    "boolean": lambda t: t == pl.Boolean,
    "date": lambda t: t == pl.Date,
    "datetime": lambda t: isinstance(t, pl.Datetime),
}


@dataclass(frozen=True)
class Rule:
    index: int
    column: str | None
    check: str
    arg: Any
    mostly: float


@dataclass
class Failure:
    rule: int
    check: str
    column: str | None
    failing: int
    total: int
    examples: list[Any]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "check": self.check,
            "column": self.column,
            "failing": self.failing,
            "total": self.total,
            "examples": self.examples,
            "message": self.message,
        }


def load_rules(path: str | Path) -> list[dict[str, Any]]:
    doc = load_yaml(path, RulesError)
    return parse_rules_doc(doc, str(path))


def parse_rules_doc(doc: Any, where: str = "rules") -> list[dict[str, Any]]:
    if isinstance(doc, dict) and "rules" in doc:
        extra = set(doc) - {"rules"}
        if extra:
            raise RulesError(
                f"{where}: unknown top-level key {sorted(extra)[0]!r}",
                hint="a rule file has one key, `rules:`, holding a list",
            )
        doc = doc["rules"]
    if not isinstance(doc, list) or not doc:
        raise RulesError(f"{where} has no rules", hint="write `rules:` followed by a list of rules")
    parse_rules(doc, where)
    return doc


def parse_rules(items: list[Any], where: str = "rules") -> list[Rule]:
    """Check the shape of every rule; raise RulesError naming the first mistake."""
    out: list[Rule] = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise RulesError(
                f"{where}: rule {i} must be a mapping, got {item!r}",
                hint="write each rule as {column: NAME, CHECK: VALUE}",
            )
        for key in item:
            if key not in CHECKS and key not in MODIFIERS:
                raise RulesError(
                    f"{where}: rule {i} has an unknown key {key!r}{suggest(key, CHECKS + MODIFIERS)}",
                    hint=f"checks are: {', '.join(CHECKS)}; modifiers: {', '.join(MODIFIERS)}",
                )
        checks = [k for k in item if k in CHECKS]
        if not checks:
            raise RulesError(
                f"{where}: rule {i} has no check", hint=f"add one of: {', '.join(CHECKS)}"
            )
        column = item.get("column")
        if column is not None and not isinstance(column, str):
            raise RulesError(f"{where}: rule {i}: column must be a name, got {column!r}")
        mostly = item.get("mostly", 1.0)
        if not isinstance(mostly, int | float) or not 0 <= mostly <= 1:
            raise RulesError(
                f"{where}: rule {i}: mostly must be a fraction between 0 and 1",
                hint="e.g. mostly: 0.99",
            )
        for check in checks:
            arg = item[check]
            _check_arg(where, i, check, arg, column)
            out.append(Rule(i, column, check, arg, float(mostly)))
    return out


def _check_arg(where: str, i: int, check: str, arg: Any, column: str | None) -> None:
    def bad(msg: str, hint: str) -> RulesError:
        return RulesError(f"{where}: rule {i} ({check}): {msg}", hint=hint)

    needs_column = check not in ("row_count", "expr")
    if needs_column and column is None:
        raise bad("needs a column", "add `column: NAME` to the rule")
    if check in ("exists", "not_null", "unique") and not isinstance(arg, bool):
        raise bad(f"expects true or false, got {arg!r}", f"write `{check}: true`")
    if check in ("range", "row_count"):
        if not isinstance(arg, dict) or not arg or set(arg) - {"min", "max"}:
            raise bad(f"expects {{min: X, max: Y}}, got {arg!r}", "give min, max or both")
        for k, v in arg.items():
            if not isinstance(v, int | float):
                raise bad(f"{k} must be a number, got {v!r}", "write numbers without quotes")
    if check == "allowed" and not isinstance(arg, list):
        raise bad(f"expects a list of values, got {arg!r}", "write e.g. `allowed: [0, 1]`")
    if check == "type" and str(arg).lower() not in _TYPE_GROUPS:
        raise bad(
            f"unknown type {arg!r}{suggest(str(arg), list(_TYPE_GROUPS))}",
            f"use one of: {', '.join(_TYPE_GROUPS)}",
        )
    if check in ("regex", "expr") and not isinstance(arg, str):
        raise bad(f"expects a string, got {arg!r}", "quote the pattern or expression")
    if check == "regex":
        import re

        try:
            re.compile(arg)
        except re.error as e:
            raise bad(f"bad regular expression: {e}", "fix the pattern") from e


def evaluate(df: pl.DataFrame, items: list[dict[str, Any]]) -> list[Failure]:
    """Run every rule on ``df``; returns all failures (empty when the data passes)."""

    failures: list[Failure] = []
    total = df.height
    for rule in parse_rules(items):
        col = rule.column
        if rule.check == "row_count":
            lo, hi = rule.arg.get("min"), rule.arg.get("max")
            if (lo is not None and total < lo) or (hi is not None and total > hi):
                failures.append(
                    Failure(
                        rule.index,
                        "row_count",
                        None,
                        1,
                        1,
                        [total],
                        f"{total} rows, expected between {lo} and {hi}",
                    )
                )
            continue
        if col is not None and col not in df.columns:
            if rule.check == "exists" and rule.arg is False:
                continue
            failures.append(
                Failure(
                    rule.index,
                    rule.check,
                    col,
                    total,
                    total,
                    [],
                    f"column {col!r} does not exist{suggest(col, df.columns)}",
                )
            )
            continue
        if rule.check == "exists":
            if rule.arg is False:
                failures.append(
                    Failure(
                        rule.index, "exists", col, 1, 1, [], f"column {col!r} exists but should not"
                    )
                )
            continue
        if rule.check == "type":
            assert col is not None
            dtype = df.schema[col]
            if not _TYPE_GROUPS[str(rule.arg).lower()](dtype):
                failures.append(
                    Failure(
                        rule.index,
                        "type",
                        col,
                        total,
                        total,
                        [],
                        f"column {col!r} is {dtype}, expected {rule.arg}",
                    )
                )
            continue
        try:
            bad_mask = _bad_rows(df, rule, parse_expr)
            if bad_mask is not None and bad_mask.dtype != pl.Boolean:
                raise pl.exceptions.InvalidOperationError(
                    "the expression is not a true/false condition"
                )
        except pl.exceptions.PolarsError as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = f"column {col!r} ({df.schema[col]})" if col else "the table"
            failures.append(
                Failure(
                    rule.index,
                    rule.check,
                    col,
                    total,
                    total,
                    [],
                    f"cannot check {rule.check} on {where}: {reason}",
                )
            )
            continue
        if bad_mask is None:
            continue
        failing = int(bad_mask.sum())
        if failing == 0 or (total and (total - failing) / total >= rule.mostly and rule.mostly < 1):
            continue
        shown = df.filter(bad_mask).head(EXAMPLES)
        examples = shown.get_column(col).to_list() if col else shown.to_dicts()
        share = f" ({failing / total:.1%})" if total else ""
        need = f"; at least {rule.mostly:.1%} must pass" if rule.mostly < 1 else ""
        failures.append(
            Failure(
                rule.index,
                rule.check,
                col,
                failing,
                total,
                examples,
                f"{failing} of {total} rows fail{share}{need}",
            )
        )
    return failures


def _bad_rows(
    df: pl.DataFrame, rule: Rule, parse_expr: Callable[[str, list[str], str], pl.Expr]
) -> pl.Series | None:
    if rule.check == "expr":
        expr = parse_expr(rule.arg, df.columns, f"rule {rule.index}")
        return df.select((~expr).fill_null(True)).to_series()
    assert rule.column is not None
    c = pl.col(rule.column)
    if rule.check == "not_null":
        return df.select(c.is_null()).to_series() if rule.arg else None
    if rule.check == "unique":
        return df.select(c.is_duplicated()).to_series() if rule.arg else None
    if rule.check == "range":
        expr = pl.lit(False)
        if "min" in rule.arg:
            expr = expr | (c < rule.arg["min"])
        if "max" in rule.arg:
            expr = expr | (c > rule.arg["max"])
        return df.select(expr.fill_null(False)).to_series()
    if rule.check == "allowed":
        allowed = pl.Series(rule.arg).cast(df.schema[rule.column], strict=False).drop_nulls()
        return df.select((~c.is_in(allowed.implode())).fill_null(False)).to_series()
    if rule.check == "regex":
        return df.select((~c.cast(pl.String).str.contains(rule.arg)).fill_null(False)).to_series()
    return None
