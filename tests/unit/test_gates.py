"""Gate files: parsing, typos caught, and each kind of condition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelcycle.core.errors import UsageError
from modelcycle.evaluation.gates import (
    GatePolicy,
    check_champion,
    check_slices,
    check_thresholds,
    greater_is_better,
)


def test_parse_the_documented_shape(tmp_path: Path) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text(
        "thresholds: {roc_auc: {min: 0.9}, log_loss: {max: 0.4}}\n"
        "champion: {roc_auc: {min_absolute_change: 0.01}}\n"
        "slices: {by: [region], max_regression: {accuracy: 0.05}}\n"
        "validation: rules.yaml\n"
    )
    policy = GatePolicy.load(f)
    assert policy.thresholds == {"roc_auc": {"min": 0.9}, "log_loss": {"max": 0.4}}
    assert policy.champion["roc_auc"] == {"min_absolute_change": 0.01, "greater_is_better": True}
    assert policy.slice_by == ("region",)
    assert policy.validation == str(tmp_path / "rules.yaml")
    assert policy.metrics == {"roc_auc", "log_loss", "accuracy"}
    assert policy.needs_champion


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"treshold": {}}, "unknown section 'treshold' (did you mean 'thresholds'?)"),
        ({"thresholds": {"auc": {"minimum": 1}}}, "unknown key 'minimum'"),
        ({"thresholds": {"auc": {"min": "high"}}}, "must be a number"),
        ({"thresholds": {"auc": {}}}, "sets no bound"),
        ({"thresholds": {"auc": 0.9}}, "must be a mapping"),
        ({"champion": {"auc": {"greater_is_better": "yes"}}}, "true or false"),
        ({"slices": {"max_regression": {"accuracy": 0.1}}}, "needs slices.by"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_gate_files_name_the_problem(doc: object, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        GatePolicy.from_dict(doc)


def test_unknown_metric_is_an_error_with_a_suggestion() -> None:
    policy = GatePolicy.from_dict({"thresholds": {"roc_aux": {"min": 0.9}}})
    with pytest.raises(UsageError, match="unknown metric 'roc_aux' \\(did you mean 'roc_auc'"):
        policy.check_metrics_known({"roc_auc", "accuracy"})


def test_missing_gate_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        GatePolicy.load(tmp_path / "nope.yaml")


def test_thresholds_min_and_max() -> None:
    policy = GatePolicy.from_dict(
        {"thresholds": {"roc_auc": {"min": 0.9}, "log_loss": {"max": 0.3}}}
    )
    good = check_thresholds(policy, {"roc_auc": 0.95, "log_loss": 0.2})
    assert [c.passed for c in good] == [True, True]
    bad = check_thresholds(policy, {"roc_auc": 0.85, "log_loss": 0.31})
    assert [c.passed for c in bad] == [False, False]
    assert bad[0].requirement == "roc_auc >= 0.9" and bad[0].observed == "0.85"
    nan = check_thresholds(policy, {"roc_auc": float("nan"), "log_loss": 0.2})
    assert not nan[0].passed


def test_champion_absolute_and_relative_change() -> None:
    policy = GatePolicy.from_dict(
        {
            "champion": {
                "roc_auc": {"min_absolute_change": 0.01},
                "rmse": {"min_relative_change": 0.05},
            }
        }
    )
    assert not greater_is_better("rmse")
    ok = check_champion(
        policy, {"roc_auc": 0.93, "rmse": 9.0}, "m@1", {"roc_auc": 0.91, "rmse": 10}
    )
    assert [c.passed for c in ok] == [True, True]  # +0.02 auc, rmse 10% lower
    bad = check_champion(
        policy, {"roc_auc": 0.915, "rmse": 9.8}, "m@1", {"roc_auc": 0.91, "rmse": 10}
    )
    assert [c.passed for c in bad] == [False, False]  # +0.005 auc, rmse only 2% lower
    assert "m@1" in bad[0].observed


def test_slice_regression_takes_the_worst_shared_slice() -> None:
    policy = GatePolicy.from_dict(
        {"slices": {"by": ["region"], "max_regression": {"accuracy": 0.05}}}
    )
    old = [
        {"slice": "region", "value": "north", "n": 10, "metrics": {"accuracy": 0.90}},
        {"slice": "region", "value": "south", "n": 10, "metrics": {"accuracy": 0.80}},
    ]
    new_ok = [
        {"slice": "region", "value": "north", "n": 10, "metrics": {"accuracy": 0.88}},
        {"slice": "region", "value": "south", "n": 10, "metrics": {"accuracy": 0.85}},
    ]
    new_bad = [
        {"slice": "region", "value": "north", "n": 10, "metrics": {"accuracy": 0.95}},
        {"slice": "region", "value": "south", "n": 10, "metrics": {"accuracy": 0.70}},
    ]
    assert check_slices(policy, new_ok, "m@1", old)[0].passed
    [bad] = check_slices(policy, new_bad, "m@1", old)
    assert not bad.passed and "region=south" in bad.observed


def test_a_slice_the_candidate_cannot_be_scored_on_is_a_regression() -> None:
    policy = GatePolicy.from_dict(
        {"slices": {"by": ["region"], "max_regression": {"roc_auc": 0.5}}}
    )
    old = [{"slice": "region", "value": "north", "n": 10, "metrics": {"roc_auc": 0.9}}]
    new = [{"slice": "region", "value": "north", "n": 10, "metrics": {"roc_auc": float("nan")}}]
    [condition] = check_slices(policy, new, "m@1", old)
    assert not condition.passed and "region=north" in condition.observed
