"""Recipes: declarative steps that turn one table version into the next.

A recipe is YAML (or built in Python with `Recipe.from_steps`)::

    steps:
      - drop_duplicates: {}
      - fill_nulls: {columns: [age], strategy: median}
      - drop_outliers: {columns: [age], method: iqr}

Parsing checks every step's name and parameters before any data is read. Applying
records, per step, the rows in and out and any fitted parameters (normalize, encode), so
the same transformation can be replayed at serving time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from modelcycle.core.errors import RecipeError, ValidationFailed
from modelcycle.core.hashing import hash_text
from modelcycle.data import rules as rules_mod
from modelcycle.data.expressions import evaluate_expr, parse_expr
from modelcycle.data.yamlio import load_yaml, suggest

Params = dict[str, Any]


@dataclass(frozen=True)
class StepDef:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ("table",)
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)


STEPS: dict[str, StepDef] = {
    "drop_nulls": StepDef(optional=("columns",)),
    "fill_nulls": StepDef(
        optional=("columns", "strategy", "value"),
        choices={"strategy": ("constant", "mean", "median", "mode", "zero")},
    ),
    "drop_duplicates": StepDef(
        optional=("columns", "keep"), choices={"keep": ("first", "last", "none")}
    ),
    "filter": StepDef(required=("expr",)),
    "cast": StepDef(
        required=("columns",), optional=("errors",), choices={"errors": ("raise", "null")}
    ),
    "clip_outliers": StepDef(
        required=("columns",),
        optional=("method", "factor", "threshold"),
        choices={"method": ("iqr", "zscore")},
    ),
    "drop_outliers": StepDef(
        required=("columns",),
        optional=("method", "factor", "threshold"),
        choices={"method": ("iqr", "zscore")},
    ),
    "normalize": StepDef(
        required=("columns",), optional=("method",), choices={"method": ("zscore", "minmax")}
    ),
    "encode": StepDef(
        required=("columns",),
        optional=("method", "drop_original"),
        choices={"method": ("onehot", "ordinal")},
    ),
    "rename": StepDef(required=("columns",)),
    "select": StepDef(required=("columns",)),
    "drop": StepDef(required=("columns",)),
    "mask": StepDef(required=("columns",), optional=("keep_last", "char")),
    "hash": StepDef(required=("columns",), optional=("salt",)),
    "derive": StepDef(required=("column", "expr")),
    "validate": StepDef(optional=("rules", "file")),
    "augment": StepDef(optional=("ops", "copies", "seed", "include_original"), kinds=("files",)),
}
CAST_TYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "int64": pl.Int64(),
    "int32": pl.Int32(),
    "float": pl.Float64(),
    "float64": pl.Float64(),
    "float32": pl.Float32(),
    "str": pl.String(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime(),
    "category": pl.Categorical(),
}


@dataclass(frozen=True)
class Step:
    index: int
    name: str
    params: Params
    source: str = "<python>"

    @property
    def where(self) -> str:
        return f"{self.source}: step {self.index} ({self.name})"


@dataclass(frozen=True)
class Recipe:
    steps: tuple[Step, ...]
    source: str = "<python>"

    @classmethod
    def from_steps(
        cls, steps: list[dict[str, Any]], source: str = "<python>", base: Path | None = None
    ) -> Recipe:
        if not isinstance(steps, list) or not steps:
            raise RecipeError(f"{source} has no steps", hint="write `steps:` followed by a list")
        parsed = []
        for i, item in enumerate(steps, 1):
            parsed.append(_parse_step(i, item, source, base))
        return cls(tuple(parsed), source)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        path = Path(path)
        doc = load_yaml(path, RecipeError)
        if not isinstance(doc, dict) or "steps" not in doc:
            raise RecipeError(
                f"{path} has no `steps:` list",
                hint="a recipe file looks like `steps:\\n  - drop_duplicates: {}`",
            )
        extra = set(doc) - {"steps", "description"}
        if extra:
            key = sorted(extra)[0]
            raise RecipeError(
                f"{path}: unknown top-level key {key!r}{suggest(key, ['steps'])}",
                hint="a recipe has `steps:` and optionally `description:`",
            )
        return cls.from_steps(doc["steps"], str(path), path.parent)

    def to_list(self) -> list[dict[str, Any]]:
        return [{s.name: s.params} for s in self.steps]

    @property
    def content_hash(self) -> str:
        return hash_text(json.dumps(self.to_list(), sort_keys=True, default=str))

    @property
    def kind(self) -> str:
        return "files" if any(s.name == "augment" for s in self.steps) else "table"


def _parse_step(i: int, item: Any, source: str, base: Path | None) -> Step:
    if isinstance(item, str):
        item = {item: {}}
    if not isinstance(item, dict) or len(item) != 1:
        raise RecipeError(
            f"{source}: step {i} must be one `name: {{params}}` mapping, got {item!r}",
            hint="write e.g. `- drop_duplicates: {}`",
        )
    name, params = next(iter(item.items()))
    if name not in STEPS:
        raise RecipeError(
            f"{source}: step {i} is unknown: {name!r}{suggest(str(name), STEPS)}",
            hint=f"known steps: {', '.join(STEPS)}",
        )
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise RecipeError(
            f"{source}: step {i} ({name}) needs a mapping of parameters, got {params!r}",
            hint=f"write `- {name}: {{...}}`",
        )
    spec = STEPS[name]
    where = f"{source}: step {i} ({name})"
    for key in params:
        if key not in spec.required + spec.optional:
            raise RecipeError(
                f"{where}: unknown parameter {key!r}{suggest(key, spec.required + spec.optional)}",
                hint=f"{name} takes: {', '.join(spec.required + spec.optional) or 'nothing'}",
            )
    for key in spec.required:
        if key not in params:
            raise RecipeError(
                f"{where}: missing parameter {key!r}",
                hint=f"{name} takes: {', '.join(spec.required + spec.optional)}",
            )
    for key, allowed in spec.choices.items():
        if key in params and params[key] not in allowed:
            raise RecipeError(
                f"{where}: {key} must be one of {', '.join(map(str, allowed))}, got {params[key]!r}",
                hint=f"e.g. `{key}: {allowed[0]}`",
            )
    params = dict(params)
    if name == "validate":
        if "file" in params:
            path = Path(params.pop("file"))
            params["rules"] = rules_mod.load_rules(
                path if path.is_absolute() or base is None else base / path
            )
        if "rules" not in params:
            raise RecipeError(
                f"{where}: give `rules: [...]` or `file: rules.yaml`",
                hint="see `modelcycle dataset validate --help` for the rule syntax",
            )
        rules_mod.parse_rules(params["rules"], where)
    if name == "cast":
        if not isinstance(params["columns"], dict):
            raise RecipeError(f"{where}: columns must map column -> type", hint="e.g. {age: int}")
        for col, typ in params["columns"].items():
            if str(typ).lower() not in CAST_TYPES:
                raise RecipeError(
                    f"{where}: unknown type {typ!r} for {col!r}{suggest(str(typ), CAST_TYPES)}",
                    hint=f"types: {', '.join(CAST_TYPES)}",
                )
    if name == "rename" and not isinstance(params["columns"], dict):
        raise RecipeError(f"{where}: columns must map old name -> new name", hint="e.g. {old: new}")
    if name in ("filter", "derive"):
        text = params["expr"]
        if not isinstance(text, str):
            raise RecipeError(f"{where}: expr must be a string", hint="quote the expression")
        parse_expr(text, _ALL_COLUMNS, where)  # syntax only; columns checked when applied
    if "columns" in params and name not in ("cast", "rename"):
        cols = params["columns"]
        if isinstance(cols, str):
            params["columns"] = [cols]
        elif not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise RecipeError(
                f"{where}: columns must be a list of column names", hint="e.g. [age, income]"
            )
    if name == "augment":
        from modelcycle.data.augment import check_ops

        check_ops(params.get("ops", ["flip"]), where)
    return Step(i, name, params, source)


class _AnyColumns(list[str]):
    def __contains__(self, item: object) -> bool:
        return True


_ALL_COLUMNS = _AnyColumns()


@dataclass
class StepReport:
    index: int
    name: str
    rows_in: int
    rows_out: int
    fitted: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.index,
            "name": self.name,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
        }
        if self.fitted:
            out["fitted"] = self.fitted
        return out


def apply_recipe(df: pl.DataFrame, recipe: Recipe) -> tuple[pl.DataFrame, list[StepReport]]:
    """Run every step; raise RecipeError / ValidationFailed naming the step that failed."""
    reports = []
    for step in recipe.steps:
        if step.name not in _APPLY:
            raise RecipeError(
                f"{step.where} works on file datasets, not tables",
                hint="apply this recipe to a file dataset",
            )
        rows_in = df.height
        fitted: dict[str, Any] = {}
        try:
            df = _APPLY[step.name](df, step, fitted)
        except pl.exceptions.PolarsError as e:
            first = str(e).strip().splitlines()[0]
            raise RecipeError(
                f"{step.where} failed: {first}",
                hint="check the column types this step uses (a `cast` step may help)",
            ) from e
        reports.append(StepReport(step.index, step.name, rows_in, df.height, fitted))
    return df, reports


def _columns(
    df: pl.DataFrame, step: Step, default_all: bool = False, numeric: bool = False
) -> list[str]:
    cols = step.params.get("columns")
    if cols is None:
        if not default_all:
            raise RecipeError(
                f"{step.where}: give `columns: [...]`", hint="name the columns to change"
            )
        cols = [c for c, t in df.schema.items() if t.is_numeric()] if numeric else df.columns
    for c in cols:
        if c not in df.columns:
            raise RecipeError(
                f"{step.where}: column {c!r} does not exist{suggest(c, df.columns)}",
                hint=f"columns are: {', '.join(df.columns)}",
            )
        if numeric and not df.schema[c].is_numeric():
            raise RecipeError(
                f"{step.where}: column {c!r} is {df.schema[c]}, not numeric",
                hint=f"add a `cast` step before it, e.g. `cast: {{columns: {{{c}: float}}}}`",
            )
    return list(cols)


def _drop_nulls(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    return df.drop_nulls(subset=_columns(df, step, default_all=True))


def _fill_nulls(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    strategy = step.params.get("strategy", "constant" if "value" in step.params else "median")
    numeric = strategy in ("mean", "median", "zero")
    cols = _columns(df, step, default_all=True, numeric=numeric)
    exprs = []
    for c in cols:
        if strategy == "constant":
            if "value" not in step.params:
                raise RecipeError(
                    f"{step.where}: strategy constant needs `value`", hint="e.g. value: 0"
                )
            value = step.params["value"]
        elif strategy == "zero":
            value = 0
        elif strategy == "mean":
            value = df.get_column(c).mean()
        elif strategy == "median":
            value = df.get_column(c).median()
        else:
            modes = df.get_column(c).drop_nulls().mode().sort()
            value = modes[0] if len(modes) else None
        fitted[c] = value if not hasattr(value, "item") else value.item()
        exprs.append(
            pl.col(c).fill_null(pl.lit(value)).cast(df.schema[c], strict=False)
            if strategy != "mean"
            else pl.col(c).fill_null(pl.lit(value))
        )
    return df.with_columns(exprs)


def _drop_duplicates(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    cols = step.params.get("columns")
    subset = _columns(df, step) if cols else None
    return df.unique(subset=subset, keep=step.params.get("keep", "first"), maintain_order=True)


def _filter(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    text = step.params["expr"]
    mask = evaluate_expr(df, parse_expr(text, df.columns, step.where), text, step.where)
    if mask.dtype != pl.Boolean:
        raise RecipeError(
            f"{step.where}: {text!r} is not a true/false condition",
            hint="write a comparison such as `age >= 18`",
        )
    return df.filter(mask.fill_null(False))


def _cast(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    strict = step.params.get("errors", "raise") == "raise"
    mapping = step.params["columns"]
    _columns(df, Step(step.index, step.name, {"columns": list(mapping)}, step.source))
    out = df
    for c, typ in mapping.items():
        target = CAST_TYPES[str(typ).lower()]
        col = pl.col(c)
        if df.schema[c] == pl.String and target in (
            pl.Int64(),
            pl.Int32(),
            pl.Float64(),
            pl.Float32(),
        ):
            col = col.str.strip_chars()
        if df.schema[c] == pl.String and target == pl.Date():
            col = col.str.strip_chars().str.to_date(strict=False)
        elif df.schema[c] == pl.String and target == pl.Datetime():
            col = col.str.strip_chars().str.to_datetime(strict=False)
        elif df.schema[c] == pl.String and target == pl.Boolean():
            lowered = col.str.strip_chars().str.to_lowercase()
            col = (
                pl.when(lowered.is_in(["true", "1", "yes", "y", "t"]))
                .then(True)
                .when(lowered.is_in(["false", "0", "no", "n", "f"]))
                .then(False)
                .otherwise(None)
            )
        casted = df.select(col.cast(target, strict=False).alias(c)).to_series()
        bad = casted.is_null() & df.get_column(c).is_not_null()
        n_bad = int(bad.sum())
        if n_bad and strict:
            first_row = int(bad.arg_true()[0])
            raise RecipeError(
                f"{step.where}: column {c!r} has {n_bad} values that are not {typ} "
                f"(first at row {first_row + 1}: {df.get_column(c)[first_row]!r})",
                hint="add `errors: null` to turn them into nulls, or fix the source",
            )
        fitted[c] = {"type": str(typ), "nulled": n_bad}
        out = out.with_columns(casted.alias(c))
    return out


def _bounds(series: pl.Series, step: Step) -> tuple[float, float]:
    method = step.params.get("method", "iqr")
    if method == "iqr":
        q1, q3 = series.quantile(0.25), series.quantile(0.75)
        if q1 is None or q3 is None:
            return float("-inf"), float("inf")
        k = float(step.params.get("factor", 1.5))
        return float(q1) - k * (float(q3) - float(q1)), float(q3) + k * (float(q3) - float(q1))
    mean, std = series.mean(), series.std()
    if mean is None or std is None:
        return float("-inf"), float("inf")
    z = float(step.params.get("threshold", 3.0))
    return float(mean) - z * float(std), float(mean) + z * float(std)  # type: ignore[arg-type]


def _clip_outliers(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    exprs = []
    for c in _columns(df, step, numeric=True):
        lo, hi = _bounds(df.get_column(c), step)
        fitted[c] = {"lower": lo, "upper": hi}
        exprs.append(
            pl.col(c).cast(pl.Float64).clip(lo, hi)
            if df.schema[c].is_float() or lo % 1 or hi % 1
            else pl.col(c).clip(int(lo), int(hi))
        )
    return df.with_columns(exprs)


def _drop_outliers(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    keep = pl.lit(True)
    for c in _columns(df, step, numeric=True):
        lo, hi = _bounds(df.get_column(c), step)
        fitted[c] = {"lower": lo, "upper": hi}
        keep = keep & (pl.col(c).is_null() | pl.col(c).is_between(lo, hi))
    return df.filter(keep)


def _normalize(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    method = step.params.get("method", "zscore")
    exprs = []
    for c in _columns(df, step, numeric=True):
        s = df.get_column(c).cast(pl.Float64)
        if method == "zscore":
            mean, std = s.mean() or 0.0, s.std() or 0.0
            scale = std if std else 1.0
            fitted[c] = {"method": "zscore", "mean": mean, "std": std}
            exprs.append(((pl.col(c).cast(pl.Float64) - mean) / scale).alias(c))
        else:
            lo, hi = s.min() or 0.0, s.max() or 0.0
            span = (hi - lo) or 1.0  # type: ignore[operator]
            fitted[c] = {"method": "minmax", "min": lo, "max": hi}
            exprs.append(((pl.col(c).cast(pl.Float64) - lo) / span).alias(c))
    return df.with_columns(exprs)


def _encode(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    method = step.params.get("method", "onehot")
    out = df
    for c in _columns(df, step):
        categories = sorted(df.get_column(c).drop_nulls().unique().cast(pl.String).to_list())
        fitted[c] = {"method": method, "categories": categories}
        as_text = pl.col(c).cast(pl.String)
        if method == "ordinal":
            mapping = {v: i for i, v in enumerate(categories)}
            out = out.with_columns(
                as_text.replace_strict(mapping, default=None, return_dtype=pl.Int64).alias(c)
            )
        else:
            out = out.with_columns(
                [
                    (as_text == v).fill_null(False).cast(pl.Int8).alias(f"{c}_{v}")
                    for v in categories
                ]
            )
            if step.params.get("drop_original", True):
                out = out.drop(c)
    return out


def _rename(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    mapping = step.params["columns"]
    _columns(df, Step(step.index, step.name, {"columns": list(mapping)}, step.source))
    return df.rename(mapping)


def _select(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    return df.select(_columns(df, step))


def _drop(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    return df.drop(_columns(df, step))


def _mask(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    keep = int(step.params.get("keep_last", 0))
    char = str(step.params.get("char", "*"))[:1] or "*"
    exprs = []
    for c in _columns(df, step):
        s = pl.col(c).cast(pl.String)
        n = s.str.len_chars().cast(pl.Int64)  # UInt32 would wrap below zero
        hidden = pl.lit(char).repeat_by((n - keep).clip(0)).list.join("")
        exprs.append(
            (hidden + s.str.slice((n - keep).clip(0))).alias(c) if keep else hidden.alias(c)
        )
    return df.with_columns(exprs)


def _hash(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    import hashlib

    salt = str(step.params.get("salt", ""))

    def digest(value: str | None) -> str | None:
        return None if value is None else hashlib.sha256((salt + value).encode()).hexdigest()[:32]

    exprs = [
        pl.col(c).cast(pl.String).map_elements(digest, return_dtype=pl.String).alias(c)
        for c in _columns(df, step)
    ]
    return df.with_columns(exprs)


def _derive(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    text = step.params["expr"]
    values = evaluate_expr(df, parse_expr(text, df.columns, step.where), text, step.where)
    return df.with_columns(values.alias(str(step.params["column"])))


def _validate(df: pl.DataFrame, step: Step, fitted: Params) -> pl.DataFrame:
    failures = rules_mod.evaluate(df, step.params["rules"])
    if failures:
        raise ValidationFailed(
            f"{step.where}: {len(failures)} rule(s) failed, the recipe stopped",
            hint="fix the data or the steps before it; `modelcycle dataset validate` shows details",
            failures=[f.to_dict() for f in failures],
        )
    fitted["rules_passed"] = len(step.params["rules"])
    return df


_APPLY: dict[str, Callable[[pl.DataFrame, Step, Params], pl.DataFrame]] = {
    "drop_nulls": _drop_nulls,
    "fill_nulls": _fill_nulls,
    "drop_duplicates": _drop_duplicates,
    "filter": _filter,
    "cast": _cast,
    "clip_outliers": _clip_outliers,
    "drop_outliers": _drop_outliers,
    "normalize": _normalize,
    "encode": _encode,
    "rename": _rename,
    "select": _select,
    "drop": _drop,
    "mask": _mask,
    "hash": _hash,
    "derive": _derive,
    "validate": _validate,
}
