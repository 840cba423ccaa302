"""Validation rules: parsing (errors that name the mistake) and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from modelcycle.core.errors import ModelcycleError, NotFoundError, RulesError, UsageError
from modelcycle.data import rules as rules_mod
from modelcycle.data.rules import Failure, Rule, evaluate, load_rules, parse_rules, parse_rules_doc


@pytest.fixture
def df() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "age": [25, None, 40, 17, 130],
            "label": ["a", "b", "a", "c", None],
            "email": ["x@y.io", "bad", "z@w.org", "q@r.net", "p@q.com"],
            "income": [10.0, 20.0, 30.0, 40.0, 50.0],
            "spend": [5.0, 25.0, 10.0, 50.0, 1.0],
        }
    )


def failures_of(df: pl.DataFrame, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f.to_dict() for f in evaluate(df, rules)]


# ---------------------------------------------------------------- parsing


def test_parse_gives_one_rule_per_check() -> None:
    parsed = parse_rules(
        [
            {"column": "age", "not_null": True, "range": {"min": 0}, "mostly": 0.9},
            {"row_count": {"min": 1}},
        ]
    )
    assert parsed == [
        Rule(1, "age", "not_null", True, 0.9),
        Rule(1, "age", "range", {"min": 0}, 0.9),
        Rule(2, None, "row_count", {"min": 1}, 1.0),
    ]


def test_a_typo_in_a_key_suggests_the_right_one() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules([{"column": "age", "not_nul": True}], "my.yaml")
    message = str(info.value)
    assert "my.yaml" in message
    assert "rule 1" in message
    assert "'not_nul'" in message
    assert "did you mean 'not_null'" in message
    assert isinstance(info.value, UsageError)


def test_a_typo_in_a_modifier_suggests_the_right_one() -> None:
    with pytest.raises(RulesError, match="did you mean 'mostly'"):
        parse_rules([{"column": "age", "not_null": True, "mosty": 0.5}])


def test_the_error_names_the_rule_that_is_wrong() -> None:
    with pytest.raises(RulesError, match="rule 3"):
        parse_rules(
            [
                {"column": "a", "not_null": True},
                {"column": "a", "unique": True},
                {"column": "a", "uniq": True},
            ]
        )


@pytest.mark.parametrize(
    ("rule", "in_message"),
    [
        ({"column": "age", "range": {"min": "0"}}, "min must be a number"),
        ({"column": "age", "range": {"low": 0}}, "expects {min: X, max: Y}"),
        ({"column": "age", "range": {}}, "expects {min: X, max: Y}"),
        ({"column": "age", "range": [0, 10]}, "expects {min: X, max: Y}"),
        ({"row_count": {"min": 1, "most": 3}}, "expects {min: X, max: Y}"),
        ({"column": "age", "not_null": True, "mostly": 1.5}, "mostly must be a fraction"),
        ({"column": "age", "not_null": True, "mostly": -0.1}, "mostly must be a fraction"),
        ({"column": "age", "not_null": True, "mostly": "most"}, "mostly must be a fraction"),
        ({"not_null": True}, "needs a column"),
        ({"range": {"min": 0}}, "needs a column"),
        ({"column": "age"}, "has no check"),
        ({"column": 3, "not_null": True}, "column must be a name"),
        ({"column": "age", "not_null": "yes"}, "expects true or false"),
        ({"column": "age", "unique": 1}, "expects true or false"),
        ({"column": "age", "allowed": "a,b"}, "expects a list of values"),
        ({"column": "age", "type": "intt"}, "did you mean 'int'"),
        ({"column": "age", "regex": "("}, "bad regular expression"),
        ({"column": "age", "regex": 5}, "expects a string"),
        ({"expr": 5}, "expects a string"),
    ],
)
def test_malformed_rules_raise_rules_error(rule: dict[str, Any], in_message: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules([rule])
    assert in_message in str(info.value)


def test_a_rule_that_is_not_a_mapping_is_rejected() -> None:
    with pytest.raises(RulesError, match="must be a mapping"):
        parse_rules(["not_null"])


def test_parse_rules_doc_accepts_a_list_or_a_rules_key() -> None:
    rules = [{"column": "age", "not_null": True}]
    assert parse_rules_doc(rules) == rules
    assert parse_rules_doc({"rules": rules}) == rules


@pytest.mark.parametrize("doc", [[], None, {"rules": []}, "rules", {"column": "a"}])
def test_parse_rules_doc_without_rules(doc: Any) -> None:
    with pytest.raises(RulesError, match="has no rules"):
        parse_rules_doc(doc)


def test_parse_rules_doc_rejects_extra_top_level_keys() -> None:
    with pytest.raises(RulesError, match="unknown top-level key 'extra'"):
        parse_rules_doc({"rules": [{"row_count": {"min": 1}}], "extra": 1})


def test_load_rules_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {column: age, not_null: true}\n  - {row_count: {min: 1}}\n")
    assert load_rules(path) == [{"column": "age", "not_null": True}, {"row_count": {"min": 1}}]


def test_load_rules_names_the_file_and_line_of_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {column: age, not_null: true\n")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert str(path) in info.value.message
    assert "line" in info.value.message


def test_load_rules_names_the_file_of_a_bad_rule(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {column: age, not_nul: true}\n")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert str(path) in info.value.message
    assert "did you mean 'not_null'" in info.value.message


def test_load_rules_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_rules(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- evaluation


def test_passing_rules_give_no_failures(df: pl.DataFrame) -> None:
    rules = [
        {"column": "id", "exists": True},
        {"column": "nope", "exists": False},
        {"column": "id", "type": "int"},
        {"column": "income", "type": "float"},
        {"column": "income", "type": "numeric"},
        {"column": "label", "type": "string"},
        {"column": "id", "not_null": True},
        {"column": "id", "unique": True},
        {"column": "income", "range": {"min": 10, "max": 50}},
        {"column": "label", "allowed": ["a", "b", "c"]},
        {"column": "id", "allowed": [1, 2, 3, 4, 5]},
        {"column": "label", "regex": "^[abc]$"},
        {"expr": "income > 0"},
        {"row_count": {"min": 5, "max": 5}},
        {"column": "age", "not_null": False},
        {"column": "label", "unique": False},
    ]
    assert evaluate(df, rules) == []


def test_not_null_failure_counts_and_examples(df: pl.DataFrame) -> None:
    assert failures_of(df, [{"column": "age", "not_null": True}]) == [
        {
            "rule": 1,
            "check": "not_null",
            "column": "age",
            "failing": 1,
            "total": 5,
            "examples": [None],
            "message": "1 of 5 rows fail (20.0%)",
        }
    ]


def test_unique_failure_reports_every_duplicate(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"column": "label", "unique": True}])
    assert failure["check"] == "unique"
    assert failure["failing"] == 2
    assert failure["examples"] == ["a", "a"]


def test_range_failure_reports_values_below_and_above(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"column": "age", "range": {"min": 18, "max": 120}}])
    assert failure["failing"] == 2
    assert failure["examples"] == [17, 130]  # the null is not out of range


def test_range_with_only_a_min(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"column": "age", "range": {"min": 18}}])
    assert failure["examples"] == [17]


def test_allowed_failure(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"column": "label", "allowed": ["a", "b"]}])
    assert failure["check"] == "allowed"
    assert (failure["failing"], failure["total"]) == (1, 5)
    assert failure["examples"] == ["c"]


def test_allowed_values_are_cast_to_the_column_type(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"column": "id", "allowed": ["1", "2", "3", "4"]}])
    assert failure["examples"] == [5]


def test_regex_failure(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"column": "email", "regex": r"^[^@]+@[^@]+\.\w+$"}])
    assert failure["check"] == "regex"
    assert failure["examples"] == ["bad"]


def test_expr_failure_examples_are_whole_rows(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"expr": "income >= spend"}])
    assert failure["check"] == "expr"
    assert failure["column"] is None
    assert failure["failing"] == 2
    assert [row["id"] for row in failure["examples"]] == [2, 4]


def test_examples_are_capped(df: pl.DataFrame) -> None:
    big = pl.DataFrame({"x": [None] * 50}, schema={"x": pl.Int64})
    [failure] = failures_of(big, [{"column": "x", "not_null": True}])
    assert failure["failing"] == 50
    assert len(failure["examples"]) == rules_mod.EXAMPLES


def test_type_failure(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"column": "label", "type": "int"}])
    assert failure["check"] == "type"
    assert "String" in failure["message"]
    assert "expected int" in failure["message"]


def test_exists_false_fails_when_the_column_is_there(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"column": "email", "exists": False}])
    assert failure["check"] == "exists"
    assert "exists but should not" in failure["message"]


@pytest.mark.parametrize(
    "rule",
    [
        {"column": "agee", "exists": True},
        {"column": "agee", "not_null": True},
        {"column": "agee", "range": {"min": 0}},
        {"column": "agee", "type": "int"},
    ],
)
def test_a_missing_column_is_reported_as_a_failure(df: pl.DataFrame, rule: dict[str, Any]) -> None:
    [failure] = failures_of(df, [rule])
    assert failure["column"] == "agee"
    assert failure["failing"] == failure["total"] == 5
    assert "'agee' does not exist" in failure["message"]
    assert "did you mean 'age'" in failure["message"]


def test_a_missing_column_is_still_a_failure_with_mostly(df: pl.DataFrame) -> None:
    assert len(evaluate(df, [{"column": "agee", "not_null": True, "mostly": 0.1}])) == 1


def test_row_count_failures(df: pl.DataFrame) -> None:
    [low] = failures_of(df, [{"row_count": {"min": 10}}])
    assert low["check"] == "row_count"
    assert low["examples"] == [5]
    assert "5 rows" in low["message"]
    [high] = failures_of(df, [{"row_count": {"max": 4}}])
    assert high["examples"] == [5]


def test_row_count_of_an_empty_table() -> None:
    empty = pl.DataFrame({"x": []}, schema={"x": pl.Int64})
    assert evaluate(empty, [{"column": "x", "not_null": True}]) == []
    [failure] = failures_of(empty, [{"row_count": {"min": 1}}])
    assert failure["examples"] == [0]


@pytest.mark.parametrize(
    ("mostly", "fails"),
    [(1.0, True), (0.81, True), (0.8, False), (0.5, False), (0.0, False)],
)
def test_mostly_is_the_share_of_rows_that_must_pass(
    df: pl.DataFrame, mostly: float, fails: bool
) -> None:
    # 4 of 5 ages are not null: 80 % pass.
    failures = evaluate(df, [{"column": "age", "not_null": True, "mostly": mostly}])
    assert bool(failures) is fails


def test_mostly_is_named_in_the_message(df: pl.DataFrame) -> None:
    [failure] = failures_of(df, [{"column": "age", "range": {"min": 18}, "mostly": 0.9}])
    assert "at least 90.0% must pass" in failure["message"]


def test_every_failure_is_reported_not_just_the_first(df: pl.DataFrame) -> None:
    failures = evaluate(
        df,
        [
            {"column": "age", "not_null": True},
            {"column": "id", "unique": True},
            {"column": "label", "allowed": ["a"], "not_null": True},
            {"row_count": {"min": 100}},
        ],
    )
    assert [(f.rule, f.check) for f in failures] == [
        (1, "not_null"),
        (3, "allowed"),
        (3, "not_null"),
        (4, "row_count"),
    ]
    assert all(isinstance(f, Failure) for f in failures)


def test_evaluate_checks_the_rules_first(df: pl.DataFrame) -> None:
    with pytest.raises(RulesError):
        evaluate(df, [{"column": "age", "not_nul": True}])


def test_an_expr_naming_a_missing_column_is_a_usage_error(df: pl.DataFrame) -> None:
    with pytest.raises(UsageError, match="'agee'"):
        evaluate(df, [{"expr": "agee > 1"}])


@pytest.mark.parametrize(
    "rule",
    [
        {"column": "label", "range": {"min": 0}},  # comparing text with a number
        {"expr": "label + 1 > 2"},  # arithmetic on text
        {"expr": "income"},  # not a true/false condition
    ],
)
def test_a_rule_that_does_not_fit_the_data_is_reported_not_crashed(
    df: pl.DataFrame, rule: dict[str, Any]
) -> None:
    """No raw polars/Python exception escapes: either a failure or a modelcycle error."""
    try:
        failures = evaluate(df, [rule])
    except ModelcycleError as e:
        assert "rule 1" in str(e)
    else:
        assert [f.rule for f in failures] == [1]
