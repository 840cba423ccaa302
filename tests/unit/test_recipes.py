"""Recipes: parsing with errors that name the step, hashing, and applying to tables."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from modelcycle.core.errors import NotFoundError, RecipeError, UsageError, ValidationFailed
from modelcycle.data.recipes import CAST_TYPES, STEPS, Recipe, StepReport, apply_recipe


def run(df: pl.DataFrame, *steps: dict[str, Any]) -> tuple[pl.DataFrame, list[StepReport]]:
    return apply_recipe(df, Recipe.from_steps(list(steps)))


def run_one(df: pl.DataFrame, step: dict[str, Any]) -> tuple[pl.DataFrame, StepReport]:
    out, [report] = run(df, step)
    return out, report


# ================================================================ parsing


def test_from_steps_keeps_order_names_and_params() -> None:
    recipe = Recipe.from_steps(
        [
            {"drop_duplicates": {}},
            {"fill_nulls": {"columns": ["age"], "strategy": "median"}},
            "drop_nulls",
        ]
    )
    assert [s.name for s in recipe.steps] == ["drop_duplicates", "fill_nulls", "drop_nulls"]
    assert [s.index for s in recipe.steps] == [1, 2, 3]
    assert recipe.steps[1].params == {"columns": ["age"], "strategy": "median"}
    assert recipe.steps[2].params == {}
    assert recipe.steps[1].where == "<python>: step 2 (fill_nulls)"
    assert recipe.kind == "table"


def test_a_single_column_name_becomes_a_list() -> None:
    recipe = Recipe.from_steps([{"drop_nulls": {"columns": "age"}}])
    assert recipe.steps[0].params == {"columns": ["age"]}


def test_params_may_be_null() -> None:
    assert Recipe.from_steps([{"drop_duplicates": None}]).steps[0].params == {}


def test_from_steps_does_not_change_the_callers_params() -> None:
    params: dict[str, Any] = {"columns": "age"}
    Recipe.from_steps([{"drop_nulls": params}])
    assert params == {"columns": "age"}


def test_an_augment_step_makes_a_files_recipe() -> None:
    assert Recipe.from_steps([{"augment": {"ops": ["flip"], "copies": 2}}]).kind == "files"


@pytest.mark.parametrize("steps", [[], None, {"drop_nulls": {}}, "drop_nulls"])
def test_a_recipe_needs_a_list_of_steps(steps: Any) -> None:
    with pytest.raises(RecipeError, match="has no steps"):
        Recipe.from_steps(steps)


def test_an_unknown_step_suggests_the_closest() -> None:
    with pytest.raises(RecipeError) as info:
        Recipe.from_steps([{"drop_nulls": {}}, {"drop_dupes": {}}], source="r.yaml")
    error = info.value
    assert isinstance(error, UsageError)
    assert "r.yaml: step 2 is unknown: 'drop_dupes'" in error.message
    assert "(did you mean 'drop_duplicates'?)" in error.message
    assert error.hint is not None
    assert "drop_duplicates" in error.hint


@pytest.mark.parametrize(
    ("step", "in_message"),
    [
        ({"drop_nulls": {"colums": ["a"]}}, "unknown parameter 'colums' (did you mean 'columns'?)"),
        ({"fill_nulls": {"strategy": "mean", "valeu": 1}}, "did you mean 'value'?"),
        ({"filter": {}}, "missing parameter 'expr'"),
        ({"derive": {"expr": "a + 1"}}, "missing parameter 'column'"),
        ({"cast": {"errors": "null"}}, "missing parameter 'columns'"),
        ({"fill_nulls": {"strategy": "average"}}, "strategy must be one of"),
        ({"drop_duplicates": {"keep": "any"}}, "keep must be one of first, last, none"),
        ({"normalize": {"columns": ["a"], "method": "robust"}}, "method must be one of"),
        ({"encode": {"columns": ["a"], "method": "hash"}}, "method must be one of"),
        ({"cast": {"columns": {"a": "int"}, "errors": "ignore"}}, "errors must be one of"),
        ({"drop_outliers": {"columns": ["a"], "method": "mad"}}, "method must be one of"),
        ({"cast": {"columns": ["a"]}}, "columns must map column -> type"),
        ({"cast": {"columns": {"a": "integer"}}}, "unknown type 'integer'"),
        ({"rename": {"columns": ["a"]}}, "columns must map old name -> new name"),
        ({"select": {"columns": [1, 2]}}, "columns must be a list of column names"),
        ({"drop": {"columns": {"a": 1}}}, "columns must be a list of column names"),
        ({"filter": {"expr": 5}}, "expr must be a string"),
        ({"filter": {"expr": "   "}}, "the expression is empty"),
        ({"filter": {"expr": "age >> "}}, "cannot parse the expression 'age >> '"),
        ({"filter": {"expr": "age > (3"}}, "cannot parse the expression"),
        ({"derive": {"column": "x", "expr": "a +* b"}}, "cannot parse the expression 'a +* b'"),
        ({"validate": {}}, "give `rules: [...]` or `file: rules.yaml`"),
        ({"augment": {"ops": ["flipp"]}}, "did you mean 'flip'"),
        ({"augment": {"ops": []}}, "ops must be a non-empty list"),
        ({"drop_nulls": {}, "fill_nulls": {}}, "must be one `name: {params}` mapping"),
        ({"drop_nulls": [1]}, "needs a mapping of parameters"),
        (42, "must be one `name: {params}` mapping"),
    ],
)
def test_bad_steps_raise_recipe_error(step: Any, in_message: str) -> None:
    with pytest.raises(RecipeError) as info:
        Recipe.from_steps([step])
    assert in_message in info.value.message
    assert "step 1" in info.value.message
    assert info.value.hint


def test_a_bad_cast_type_suggests_a_known_one() -> None:
    with pytest.raises(RecipeError, match="did you mean 'float'"):
        Recipe.from_steps([{"cast": {"columns": {"a": "flaot"}}}])


@pytest.mark.parametrize("typ", sorted(CAST_TYPES))
def test_every_cast_type_parses_in_any_case(typ: str) -> None:
    assert Recipe.from_steps([{"cast": {"columns": {"a": typ.upper()}}}]).steps[0].name == "cast"


def test_validate_with_inline_rules() -> None:
    rules = [{"column": "age", "not_null": True}]
    recipe = Recipe.from_steps([{"validate": {"rules": rules}}])
    assert recipe.steps[0].params == {"rules": rules}


def test_validate_with_bad_inline_rules_names_the_step() -> None:
    with pytest.raises(UsageError) as info:
        Recipe.from_steps(
            [{"drop_nulls": {}}, {"validate": {"rules": [{"column": "a", "nul": 1}]}}]
        )
    assert "step 2 (validate)" in info.value.message


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_validate_file_is_relative_to_the_recipe_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe_path = _write(
        tmp_path / "recipes" / "clean.yaml",
        """\
        description: clean it
        steps:
          - drop_nulls: {}
          - validate: {file: checks/rules.yaml}
        """,
    )
    _write(
        tmp_path / "recipes" / "checks" / "rules.yaml",
        "rules:\n  - {column: age, range: {min: 0}}\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = Recipe.load(recipe_path)
    assert recipe.source == str(recipe_path)
    assert recipe.steps[1].params == {"rules": [{"column": "age", "range": {"min": 0}}]}


def test_validate_file_can_be_absolute(tmp_path: Path) -> None:
    rules = _write(tmp_path / "abs" / "rules.yaml", "- {column: a, not_null: true}\n")
    recipe = Recipe.from_steps([{"validate": {"file": str(rules)}}], base=tmp_path / "other")
    assert recipe.steps[0].params["rules"] == [{"column": "a", "not_null": True}]


def test_validate_file_that_is_missing(tmp_path: Path) -> None:
    recipe_path = _write(tmp_path / "r.yaml", "steps:\n  - validate: {file: nope.yaml}\n")
    with pytest.raises(NotFoundError, match=r"nope\.yaml"):
        Recipe.load(recipe_path)


def test_the_content_hash_follows_the_rules_file(tmp_path: Path) -> None:
    recipe_path = _write(tmp_path / "r.yaml", "steps:\n  - validate: {file: rules.yaml}\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {column: a, not_null: true}\n")
    before = Recipe.load(recipe_path).content_hash
    rules.write_text("- {column: a, unique: true}\n")
    assert Recipe.load(recipe_path).content_hash != before


def test_load_a_recipe_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "r.yaml",
        """\
        steps:
          - drop_duplicates
          - filter: {expr: "age >= 18"}
        """,
    )
    recipe = Recipe.load(path)
    assert recipe.to_list() == [{"drop_duplicates": {}}, {"filter": {"expr": "age >= 18"}}]


def test_load_rejects_an_unknown_top_level_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.yaml", "step:\n  - drop_nulls: {}\n")
    with pytest.raises(RecipeError, match="no `steps:` list"):
        Recipe.load(path)
    path = _write(tmp_path / "r.yaml", "steps: [drop_nulls]\nstepz: []\n")
    with pytest.raises(RecipeError, match="unknown top-level key 'stepz' \\(did you mean 'steps'"):
        Recipe.load(path)


def test_load_names_the_line_of_bad_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.yaml", "steps:\n  - filter: {expr: 'a > 1'\n")
    with pytest.raises(RecipeError) as info:
        Recipe.load(path)
    assert str(path) in info.value.message
    assert "line 3" in info.value.message or "line 2" in info.value.message


def test_load_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        Recipe.load(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- content hash

STEPS_A = [{"drop_duplicates": {}}, {"fill_nulls": {"columns": ["age"], "strategy": "median"}}]


def test_content_hash_is_stable() -> None:
    a = Recipe.from_steps(STEPS_A)
    b = Recipe.from_steps([dict(s) for s in STEPS_A], source="elsewhere.yaml")
    assert a.content_hash == b.content_hash
    assert len(a.content_hash) == 64
    assert int(a.content_hash, 16) >= 0


def test_content_hash_ignores_the_order_of_params() -> None:
    a = Recipe.from_steps([{"fill_nulls": {"columns": ["age"], "strategy": "median"}}])
    b = Recipe.from_steps([{"fill_nulls": {"strategy": "median", "columns": ["age"]}}])
    assert a.content_hash == b.content_hash


def test_content_hash_depends_on_the_order_of_steps() -> None:
    a = Recipe.from_steps(STEPS_A)
    b = Recipe.from_steps(list(reversed(STEPS_A)))
    assert a.content_hash != b.content_hash


def test_content_hash_depends_on_params() -> None:
    a = Recipe.from_steps([{"fill_nulls": {"strategy": "median"}}])
    b = Recipe.from_steps([{"fill_nulls": {"strategy": "mean"}}])
    assert a.content_hash != b.content_hash


# ---------------------------------------------------------------- random valid recipes

COLS = st.sampled_from(["a", "b", "c", "age", "income"])
COL_LISTS = st.lists(COLS, min_size=1, max_size=3, unique=True)
EXPRS = st.sampled_from(["a > 1", "age >= 18 AND income < 1e6", "b = 'x'", "a + c", "income * 2"])
RULES = st.lists(
    st.one_of(
        st.builds(lambda c: {"column": c, "not_null": True}, COLS),
        st.builds(lambda c, m: {"column": c, "range": {"min": m}}, COLS, st.integers(-5, 5)),
        st.builds(lambda c, m: {"column": c, "unique": True, "mostly": m}, COLS, st.floats(0, 1)),
        st.builds(lambda n: {"row_count": {"min": n}}, st.integers(0, 100)),
    ),
    min_size=1,
    max_size=3,
)


def _with_optional(required: dict[str, Any], optional: dict[str, Any]) -> Any:
    return st.fixed_dictionaries(required, optional=optional)


STEP_PARAMS: dict[str, Any] = {
    "drop_nulls": _with_optional({}, {"columns": COL_LISTS}),
    "fill_nulls": _with_optional(
        {},
        {
            "columns": COL_LISTS,
            "strategy": st.sampled_from(STEPS["fill_nulls"].choices["strategy"]),
            "value": st.integers(),
        },
    ),
    "drop_duplicates": _with_optional(
        {}, {"columns": COL_LISTS, "keep": st.sampled_from(["first", "last", "none"])}
    ),
    "filter": _with_optional({"expr": EXPRS}, {}),
    "cast": _with_optional(
        {"columns": st.dictionaries(COLS, st.sampled_from(sorted(CAST_TYPES)), min_size=1)},
        {"errors": st.sampled_from(["raise", "null"])},
    ),
    "clip_outliers": _with_optional(
        {"columns": COL_LISTS},
        {"method": st.sampled_from(["iqr", "zscore"]), "factor": st.floats(0.5, 3)},
    ),
    "drop_outliers": _with_optional(
        {"columns": COL_LISTS},
        {"method": st.sampled_from(["iqr", "zscore"]), "threshold": st.floats(0.5, 4)},
    ),
    "normalize": _with_optional(
        {"columns": COL_LISTS}, {"method": st.sampled_from(["zscore", "minmax"])}
    ),
    "encode": _with_optional(
        {"columns": COL_LISTS},
        {"method": st.sampled_from(["onehot", "ordinal"]), "drop_original": st.booleans()},
    ),
    "rename": _with_optional({"columns": st.dictionaries(COLS, COLS, min_size=1)}, {}),
    "select": _with_optional({"columns": st.one_of(COL_LISTS, COLS)}, {}),
    "drop": _with_optional({"columns": COL_LISTS}, {}),
    "mask": _with_optional(
        {"columns": COL_LISTS},
        {"keep_last": st.integers(0, 4), "char": st.sampled_from(["*", "#"])},
    ),
    "hash": _with_optional({"columns": COL_LISTS}, {"salt": st.text(max_size=5)}),
    "derive": _with_optional({"column": COLS, "expr": EXPRS}, {}),
    "validate": _with_optional({"rules": RULES}, {}),
    "augment": _with_optional(
        {},
        {
            "ops": st.lists(st.sampled_from(["flip", "vflip", "rotate"]), min_size=1),
            "copies": st.integers(1, 3),
            "seed": st.integers(0, 99),
        },
    ),
}


def test_the_strategies_cover_every_step() -> None:
    assert set(STEP_PARAMS) == set(STEPS)


step_specs = st.sampled_from(sorted(STEP_PARAMS)).flatmap(
    lambda name: STEP_PARAMS[name].map(lambda params: {name: params})
)


@settings(max_examples=150, deadline=None)
@given(st.lists(step_specs, min_size=1, max_size=6))
def test_random_valid_recipes_parse_and_hash_deterministically(
    steps: list[dict[str, Any]],
) -> None:
    recipe = Recipe.from_steps(steps)
    assert [s.name for s in recipe.steps] == [next(iter(s)) for s in steps]
    again = Recipe.from_steps(steps)
    assert again.content_hash == recipe.content_hash
    assert Recipe.from_steps(recipe.to_list()).content_hash == recipe.content_hash
    assert recipe.kind == ("files" if any("augment" in s for s in steps) else "table")


@settings(max_examples=50, deadline=None)
@given(st.lists(step_specs, min_size=2, max_size=5, unique_by=repr))
def test_reordering_distinct_steps_changes_the_hash(steps: list[dict[str, Any]]) -> None:
    recipe = Recipe.from_steps(steps)
    rotated = Recipe.from_steps(steps[1:] + steps[:1])
    if recipe.to_list() != rotated.to_list():
        assert recipe.content_hash != rotated.content_hash


# ================================================================ applying


@pytest.fixture
def people() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "age": [25, None, 40, 17, 35, None],
            "city": ["Oslo", "Rome", None, "Oslo", "Lima", "Oslo"],
            "income": [10.0, 20.0, 30.0, None, 50.0, 60.0],
        }
    )


def test_reports_count_rows_in_and_out_per_step(people: pl.DataFrame) -> None:
    out, reports = run(
        people,
        {"drop_nulls": {"columns": ["age"]}},
        {"filter": {"expr": "age >= 18"}},
        {"select": {"columns": ["id"]}},
    )
    assert [(r.index, r.name, r.rows_in, r.rows_out) for r in reports] == [
        (1, "drop_nulls", 6, 4),
        (2, "filter", 4, 3),
        (3, "select", 3, 3),
    ]
    assert out["id"].to_list() == [1, 3, 5]
    assert reports[0].to_dict() == {"step": 1, "name": "drop_nulls", "rows_in": 6, "rows_out": 4}


def test_drop_nulls_all_columns(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"drop_nulls": {}})
    assert out["id"].to_list() == [1, 5]
    assert (report.rows_in, report.rows_out) == (6, 2)


def test_drop_nulls_some_columns(people: pl.DataFrame) -> None:
    out, _ = run_one(people, {"drop_nulls": {"columns": ["city", "income"]}})
    assert out["id"].to_list() == [1, 2, 5, 6]


def test_fill_nulls_mean(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"fill_nulls": {"columns": ["income"], "strategy": "mean"}})
    expected = float(np.mean([10.0, 20.0, 30.0, 50.0, 60.0]))
    assert out["income"].to_list() == [10.0, 20.0, 30.0, expected, 50.0, 60.0]
    assert report.fitted == {"income": expected}


def test_fill_nulls_median_keeps_an_integer_column_integer(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"fill_nulls": {"columns": ["age"], "strategy": "median"}})
    assert report.fitted == {"age": 30.0}  # median of 17, 25, 35, 40
    assert out.schema["age"] == pl.Int64
    assert out["age"].to_list() == [25, 30, 40, 17, 35, 30]


def test_fill_nulls_defaults_to_median_of_every_numeric_column(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"fill_nulls": {}})
    assert set(report.fitted) == {"id", "age", "income"}
    assert out["income"].null_count() == 0
    assert out["city"].null_count() == 1  # text is not numeric: left alone


def test_fill_nulls_mode(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"fill_nulls": {"columns": ["city"], "strategy": "mode"}})
    assert report.fitted == {"city": "Oslo"}
    assert out["city"].to_list() == ["Oslo", "Rome", "Oslo", "Oslo", "Lima", "Oslo"]


def test_fill_nulls_mode_breaks_ties_by_the_smallest_value() -> None:
    df = pl.DataFrame({"x": [3, 1, 3, 1, None]})
    out, report = run_one(df, {"fill_nulls": {"columns": ["x"], "strategy": "mode"}})
    assert report.fitted == {"x": 1}
    assert out["x"].to_list() == [3, 1, 3, 1, 1]


def test_fill_nulls_constant(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"fill_nulls": {"columns": ["city"], "value": "unknown"}})
    assert out["city"].to_list()[2] == "unknown"
    assert report.fitted == {"city": "unknown"}
    out, _ = run_one(
        people, {"fill_nulls": {"columns": ["age"], "strategy": "constant", "value": 0}}
    )
    assert out["age"].to_list() == [25, 0, 40, 17, 35, 0]
    assert out.schema["age"] == pl.Int64


def test_fill_nulls_zero(people: pl.DataFrame) -> None:
    out, _ = run_one(people, {"fill_nulls": {"columns": ["income"], "strategy": "zero"}})
    assert out["income"].to_list() == [10.0, 20.0, 30.0, 0.0, 50.0, 60.0]


def test_fill_nulls_constant_needs_a_value(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError, match="needs `value`"):
        run(people, {"fill_nulls": {"columns": ["age"], "strategy": "constant"}})


def test_fill_nulls_mean_of_text_suggests_a_cast(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError) as info:
        run(people, {"fill_nulls": {"columns": ["city"], "strategy": "mean"}})
    assert "'city' is String, not numeric" in info.value.message
    assert info.value.hint is not None
    assert "cast" in info.value.hint


DUPES = pl.DataFrame({"k": [1, 1, 2, 3, 3], "v": ["a", "b", "c", "d", "d"]})


@pytest.mark.parametrize(
    ("params", "expected_v"),
    [
        ({}, ["a", "b", "c", "d"]),
        ({"columns": ["k"]}, ["a", "c", "d"]),
        ({"columns": ["k"], "keep": "last"}, ["b", "c", "d"]),
        ({"columns": ["k"], "keep": "none"}, ["c"]),
    ],
)
def test_drop_duplicates(params: dict[str, Any], expected_v: list[str]) -> None:
    out, report = run_one(DUPES, {"drop_duplicates": params})
    assert out["v"].to_list() == expected_v
    assert (report.rows_in, report.rows_out) == (5, len(expected_v))


def test_filter_drops_rows_where_the_condition_is_null(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"filter": {"expr": "age >= 18 AND city = 'Oslo'"}})
    assert out["id"].to_list() == [1]
    assert (report.rows_in, report.rows_out) == (6, 1)


def test_filter_with_an_unknown_column_suggests_one(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError, match=r"'agee'.*did you mean 'age'"):
        run(people, {"filter": {"expr": "agee > 1"}})


def test_filter_needs_a_condition(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError, match="not a true/false condition"):
        run(people, {"filter": {"expr": "age + 1"}})


def test_cast_strings_to_numbers_strips_spaces() -> None:
    df = pl.DataFrame({"n": ["1", " 2 ", None, "40"], "f": ["1.5", "2", "3e2", " -1 "]})
    out, report = run_one(df, {"cast": {"columns": {"n": "int", "f": "float"}}})
    assert out.schema == pl.Schema({"n": pl.Int64, "f": pl.Float64})
    assert out["n"].to_list() == [1, 2, None, 40]
    assert out["f"].to_list() == [1.5, 2.0, 300.0, -1.0]
    assert report.fitted == {"n": {"type": "int", "nulled": 0}, "f": {"type": "float", "nulled": 0}}


def test_cast_errors_raise_names_the_column_and_first_bad_row() -> None:
    df = pl.DataFrame({"n": ["1", None, "2", "x", "y", "5"]})
    with pytest.raises(RecipeError) as info:
        run(df, {"cast": {"columns": {"n": "int"}}})
    message = info.value.message
    assert "step 1 (cast)" in message
    assert "'n'" in message
    assert "2 values" in message
    assert "row 4" in message  # 1-based, the original null does not count as bad
    assert "'x'" in message
    assert info.value.hint is not None
    assert "errors: null" in info.value.hint


def test_cast_errors_null_turns_bad_values_into_nulls() -> None:
    df = pl.DataFrame({"n": ["1", None, "2", "x", "y", "5"]})
    out, report = run_one(df, {"cast": {"columns": {"n": "int"}, "errors": "null"}})
    assert out["n"].to_list() == [1, None, 2, None, None, 5]
    assert report.fitted == {"n": {"type": "int", "nulled": 2}}


def test_cast_numbers_to_text() -> None:
    out, _ = run_one(pl.DataFrame({"n": [1, 2]}), {"cast": {"columns": {"n": "str"}}})
    assert out["n"].to_list() == ["1", "2"]


def test_cast_text_to_date() -> None:
    df = pl.DataFrame({"d": ["2024-01-05", "not a date", None]})
    out, report = run_one(df, {"cast": {"columns": {"d": "date"}, "errors": "null"}})
    assert out.schema["d"] == pl.Date
    assert out["d"].cast(pl.String).to_list() == ["2024-01-05", None, None]
    assert report.fitted == {"d": {"type": "date", "nulled": 1}}


def test_cast_of_an_unknown_column(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError, match="'agee' does not exist"):
        run(people, {"cast": {"columns": {"agee": "int"}}})


OUTLIERS = pl.DataFrame({"x": [1, 2, 3, 4, 100, None], "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})


def _iqr_bounds(values: list[float], k: float = 1.5) -> tuple[float, float]:
    s = pl.Series(values, dtype=pl.Float64)
    q1, q3 = float(s.quantile(0.25)), float(s.quantile(0.75))  # type: ignore[arg-type]
    return q1 - k * (q3 - q1), q3 + k * (q3 - q1)


def test_clip_outliers_iqr() -> None:
    out, report = run_one(OUTLIERS, {"clip_outliers": {"columns": ["x"]}})
    lo, hi = _iqr_bounds([1, 2, 3, 4, 100])
    assert report.fitted == {"x": {"lower": lo, "upper": hi}}
    assert out["x"].to_list() == [1, 2, 3, 4, int(hi), None]
    assert report.rows_out == 6


def test_clip_outliers_with_a_fractional_bound_gives_floats() -> None:
    df = pl.DataFrame({"x": [1, 2, 4, 8, 100]})
    out, report = run_one(df, {"clip_outliers": {"columns": ["x"], "factor": 0.25}})
    lo, hi = _iqr_bounds([1, 2, 4, 8, 100], 0.25)
    assert report.fitted == {"x": {"lower": lo, "upper": hi}}
    assert hi % 1
    assert out.schema["x"] == pl.Float64
    assert out["x"].to_list() == [max(lo, 1.0), 2.0, 4.0, 8.0, hi]


def test_drop_outliers_iqr_keeps_nulls() -> None:
    out, report = run_one(OUTLIERS, {"drop_outliers": {"columns": ["x"], "method": "iqr"}})
    assert out["x"].to_list() == [1, 2, 3, 4, None]
    assert (report.rows_in, report.rows_out) == (6, 5)
    assert set(report.fitted) == {"x"}


def test_drop_outliers_zscore() -> None:
    values = [1, 2, 3, 4, 100]
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    out, report = run_one(
        OUTLIERS, {"drop_outliers": {"columns": ["x"], "method": "zscore", "threshold": 1}}
    )
    assert report.fitted["x"]["lower"] == pytest.approx(mean - std)
    assert report.fitted["x"]["upper"] == pytest.approx(mean + std)
    assert out["x"].to_list() == [1, 2, 3, 4, None]
    out, _ = run_one(OUTLIERS, {"drop_outliers": {"columns": ["x"], "method": "zscore"}})
    assert out.height == 6  # nothing is 3 standard deviations out


def test_normalize_zscore_records_its_parameters() -> None:
    out, report = run_one(OUTLIERS, {"normalize": {"columns": ["y"]}})
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    mean, std = float(y.mean()), float(y.std(ddof=1))
    assert report.fitted == {"y": {"method": "zscore", "mean": mean, "std": pytest.approx(std)}}
    np.testing.assert_allclose(out["y"].to_numpy(), (y - mean) / std)
    assert out["x"].to_list() == OUTLIERS["x"].to_list()


def test_normalize_minmax_records_its_parameters() -> None:
    out, report = run_one(OUTLIERS, {"normalize": {"columns": ["x"], "method": "minmax"}})
    assert report.fitted == {"x": {"method": "minmax", "min": 1.0, "max": 100.0}}
    expected = [(v - 1) / 99 for v in (1, 2, 3, 4, 100)]
    assert out["x"].to_list()[:5] == pytest.approx(expected)
    assert out["x"][5] is None


def test_normalize_a_constant_column_does_not_divide_by_zero() -> None:
    df = pl.DataFrame({"c": [5.0, 5.0, 5.0]})
    out, _ = run_one(df, {"normalize": {"columns": ["c"]}})
    assert out["c"].to_list() == [0.0, 0.0, 0.0]
    out, _ = run_one(df, {"normalize": {"columns": ["c"], "method": "minmax"}})
    assert out["c"].to_list() == [0.0, 0.0, 0.0]


def test_normalize_text_is_refused(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError, match="not numeric"):
        run(people, {"normalize": {"columns": ["city"]}})


def test_encode_onehot(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"encode": {"columns": ["city"]}})
    assert report.fitted == {"city": {"method": "onehot", "categories": ["Lima", "Oslo", "Rome"]}}
    assert "city" not in out.columns
    assert out["city_Oslo"].to_list() == [1, 0, 0, 1, 0, 1]
    assert out["city_Rome"].to_list() == [0, 1, 0, 0, 0, 0]
    assert out["city_Lima"].to_list() == [0, 0, 0, 0, 1, 0]


def test_encode_onehot_can_keep_the_original(people: pl.DataFrame) -> None:
    out, _ = run_one(people, {"encode": {"columns": ["city"], "drop_original": False}})
    assert out["city"].to_list() == people["city"].to_list()
    assert {"city_Lima", "city_Oslo", "city_Rome"} <= set(out.columns)


def test_encode_ordinal(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"encode": {"columns": ["city"], "method": "ordinal"}})
    assert report.fitted["city"]["categories"] == ["Lima", "Oslo", "Rome"]
    assert out["city"].to_list() == [1, 2, None, 1, 0, 1]


def test_rename(people: pl.DataFrame) -> None:
    out, _ = run_one(people, {"rename": {"columns": {"city": "town", "id": "key"}}})
    assert out.columns == ["key", "age", "town", "income"]


def test_rename_an_unknown_column(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError, match=r"'cty' does not exist.*did you mean 'city'"):
        run(people, {"rename": {"columns": {"cty": "town"}}})


def test_select_keeps_the_given_order(people: pl.DataFrame) -> None:
    out, _ = run_one(people, {"select": {"columns": ["income", "id"]}})
    assert out.columns == ["income", "id"]
    assert out.height == 6


def test_drop(people: pl.DataFrame) -> None:
    out, _ = run_one(people, {"drop": {"columns": "income"}})
    assert out.columns == ["id", "age", "city"]


def test_mask_hides_every_character(people: pl.DataFrame) -> None:
    out, _ = run_one(people, {"mask": {"columns": ["city"]}})
    assert out["city"].to_list() == ["****", "****", None, "****", "****", "****"]


def test_mask_keep_last_and_char() -> None:
    df = pl.DataFrame({"card": ["4111111111111111", "12345", None]})
    out, _ = run_one(df, {"mask": {"columns": ["card"], "keep_last": 4, "char": "#"}})
    assert out["card"].to_list() == ["############1111", "#2345", None]


_MASK_SHORT_VALUES = textwrap.dedent(
    """\
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    import polars as pl
    from modelcycle.data.recipes import Recipe, apply_recipe
    df = pl.DataFrame({"s": ["abcdef", "ab", ""]})
    out, _ = apply_recipe(df, Recipe.from_steps([{"mask": {"columns": ["s"], "keep_last": 4}}]))
    print(out["s"].to_list())
    """
)


def test_mask_keep_last_longer_than_the_value_shows_it_whole() -> None:
    # Run in a child process with a memory cap: a wrong length computation here can try to
    # build strings of billions of characters.
    result = subprocess.run(
        [sys.executable, "-c", _MASK_SHORT_VALUES],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "['**cdef', 'ab', '']"


def test_hash_is_salted_sha256_and_keeps_nulls() -> None:
    df = pl.DataFrame({"email": ["a@b.io", None]})
    out, _ = run_one(df, {"hash": {"columns": ["email"], "salt": "pepper"}})
    expected = hashlib.sha256(b"peppera@b.io").hexdigest()[:32]
    assert out["email"].to_list() == [expected, None]
    unsalted, _ = run_one(df, {"hash": {"columns": ["email"]}})
    assert unsalted["email"][0] == hashlib.sha256(b"a@b.io").hexdigest()[:32]


def test_derive_adds_a_column(people: pl.DataFrame) -> None:
    out, report = run_one(people, {"derive": {"column": "monthly", "expr": "income / 12"}})
    assert out.columns == [*people.columns, "monthly"]
    assert out["monthly"].to_list()[0] == pytest.approx(10.0 / 12)
    assert out["monthly"][3] is None
    assert (report.rows_in, report.rows_out) == (6, 6)


def test_derive_can_replace_a_column(people: pl.DataFrame) -> None:
    out, _ = run_one(people, {"derive": {"column": "id", "expr": "id * 10"}})
    assert out["id"].to_list() == [10, 20, 30, 40, 50, 60]


def test_derive_type_error_is_a_recipe_error(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError, match="step 1 \\(derive\\)"):
        run(people, {"derive": {"column": "x", "expr": "city + 1"}})


def test_validate_passing_records_the_rule_count(people: pl.DataFrame) -> None:
    out, report = run_one(
        people,
        {"validate": {"rules": [{"column": "id", "unique": True}, {"row_count": {"min": 1}}]}},
    )
    assert_frame_equal(out, people)
    assert report.fitted == {"rules_passed": 2}


def test_validate_failure_stops_the_recipe_with_the_failures(people: pl.DataFrame) -> None:
    steps = [
        {"drop_nulls": {"columns": ["city"]}},
        {"validate": {"rules": [{"column": "age", "not_null": True}, {"row_count": {"min": 9}}]}},
        {"select": {"columns": ["id"]}},
    ]
    with pytest.raises(ValidationFailed) as info:
        apply_recipe(people, Recipe.from_steps(steps))
    error = info.value
    assert "step 2 (validate)" in error.message
    assert "2 rule(s) failed" in error.message
    failures = error.details["failures"]
    assert [(f["rule"], f["check"]) for f in failures] == [(1, "not_null"), (2, "row_count")]
    assert failures[0]["failing"] == 2  # ids 2 and 6 have no age
    assert failures[0]["total"] == 5  # the row without a city was dropped first
    assert error.to_dict()["details"]["failures"] == failures


def test_a_files_step_cannot_run_on_a_table(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError, match="works on file datasets"):
        run(people, {"augment": {}})


def test_an_unknown_column_names_the_step_and_suggests(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError) as info:
        run(people, {"drop_nulls": {}}, {"select": {"columns": ["incme"]}})
    assert "step 2 (select)" in info.value.message
    assert "did you mean 'income'" in info.value.message
    assert info.value.hint == "columns are: id, age, city, income"


def test_a_polars_error_becomes_a_recipe_error_naming_the_step(people: pl.DataFrame) -> None:
    with pytest.raises(RecipeError, match="step 1 \\(rename\\) failed"):
        run(people, {"rename": {"columns": {"city": "id"}}})


def test_applying_does_not_change_the_input(people: pl.DataFrame) -> None:
    before = people.clone()
    run(
        people,
        {"fill_nulls": {}},
        {"normalize": {"columns": ["income"]}},
        {"drop": {"columns": ["id"]}},
    )
    assert_frame_equal(people, before)


def test_a_long_recipe_end_to_end(people: pl.DataFrame) -> None:
    out, reports = run(
        people,
        {"fill_nulls": {"columns": ["city"], "value": "Unknown"}},
        {"drop_nulls": {"columns": ["age"]}},
        {"derive": {"column": "adult", "expr": "age >= 18"}},
        {"encode": {"columns": ["city"], "method": "ordinal"}},
        {"normalize": {"columns": ["income"], "method": "minmax"}},
        {"validate": {"rules": [{"column": "adult", "type": "bool"}]}},
    )
    assert [r.rows_out for r in reports] == [6, 4, 4, 4, 4, 4]
    assert out["adult"].to_list() == [True, True, False, True]
    # Rome's only row had no age: categories are fitted on the rows that reach the step.
    assert reports[3].fitted["city"]["categories"] == ["Lima", "Oslo", "Unknown"]
    assert out["city"].to_list() == [1, 2, 1, 0]
    assert out["income"].to_list()[0] == 0.0
