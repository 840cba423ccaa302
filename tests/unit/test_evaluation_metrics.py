"""Evaluation metrics equal scikit-learn's on the same predictions; the engine's slices,
curves, importance and serialisation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import label_binarize

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.evaluation.curves import MAX_CURVE_POINTS, thin
from modelcycle.evaluation.engine import EvaluationResult, SliceSpec, evaluate, infer_task
from modelcycle.evaluation.metrics import (
    classification_metrics,
    regression_metrics,
    score_classification,
    score_regression,
)
from modelcycle.evaluation.slices import MAX_SLICE_VALUES, MISSING, OTHER

TOL = 1e-12


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(b))


# -- datasets: (y_true, y_pred, proba, classes) as a fitted model gives them ----------------


def _fitted(X: np.ndarray, y: np.ndarray) -> tuple[Any, Any, Any, list[Any]]:
    model = LogisticRegression(max_iter=1000).fit(X, y)
    return y, model.predict(X), model.predict_proba(X), list(model.classes_)


def binary_ints() -> tuple[Any, Any, Any, list[Any]]:
    X, y = make_classification(n_samples=700, n_features=6, flip_y=0.2, random_state=1)
    return _fitted(X, y)


def binary_strings() -> tuple[Any, Any, Any, list[Any]]:
    X, y = make_classification(n_samples=600, n_features=5, flip_y=0.3, random_state=2)
    return _fitted(X, np.array(["no", "yes"])[y])


def multiclass_ints() -> tuple[Any, Any, Any, list[Any]]:
    X, y = make_classification(
        n_samples=900, n_features=8, n_informative=5, n_classes=4, random_state=3
    )
    return _fitted(X, y)


def multiclass_strings() -> tuple[Any, Any, Any, list[Any]]:
    iris = load_iris()
    return _fitted(iris.data, iris.target_names[iris.target])


DATASETS = {
    "binary-ints": binary_ints,
    "binary-strings": binary_strings,
    "multiclass-ints": multiclass_ints,
    "multiclass-strings": multiclass_strings,
}


def sklearn_classification(y: Any, pred: Any, proba: Any, classes: list[Any]) -> dict[str, float]:
    """Every metric straight from scikit-learn, on the raw labels."""
    out = {"accuracy": skm.accuracy_score(y, pred)}
    for avg in ("macro", "weighted"):
        kw: dict[str, Any] = {"labels": classes, "average": avg, "zero_division": 0}
        out[f"precision_{avg}"] = skm.precision_score(y, pred, **kw)
        out[f"recall_{avg}"] = skm.recall_score(y, pred, **kw)
        out[f"f1_{avg}"] = skm.f1_score(y, pred, **kw)
    out["log_loss"] = skm.log_loss(y, proba, labels=classes)
    if len(classes) == 2:
        pos = classes[1]
        for name, fn in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            out[name] = fn(y, pred, pos_label=pos, zero_division=0)
        out["roc_auc"] = skm.roc_auc_score(y == pos, proba[:, 1])
        out["pr_auc"] = skm.average_precision_score(y, proba[:, 1], pos_label=pos)
        out["brier"] = skm.brier_score_loss(y, proba[:, 1], pos_label=pos)
    else:
        out["roc_auc"] = skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
        out["pr_auc"] = skm.average_precision_score(label_binarize(y, classes=classes), proba)
        out["brier"] = skm.brier_score_loss(y, proba, labels=classes)
    return {k: float(v) for k, v in out.items()}


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_classification_metrics_equal_sklearn(dataset: str) -> None:
    y, pred, proba, classes = DATASETS[dataset]()
    ours = classification_metrics(y, pred, proba, classes)
    expected = sklearn_classification(y, pred, proba, classes)
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert close(ours[key], value), (key, ours[key], value)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_default_classes_are_the_sorted_labels(dataset: str) -> None:
    y, pred, proba, classes = DATASETS[dataset]()
    assert classification_metrics(y, pred, proba) == classification_metrics(y, pred, proba, classes)


def test_multiclass_brier_and_pr_auc_match_sklearn_multiclass_forms() -> None:
    y, pred, proba, classes = multiclass_strings()
    ours = classification_metrics(y, pred, proba, classes)
    # the multiclass Brier score is scikit-learn's: the sum over classes of each
    # one-vs-rest Brier score
    per_class = [skm.brier_score_loss(y == c, proba[:, i]) for i, c in enumerate(classes)]
    assert close(ours["brier"], float(np.sum(per_class)))
    assert close(ours["pr_auc"], float(skm.average_precision_score(y, proba)))


def test_positive_class_is_the_second_of_the_given_classes() -> None:
    rng = np.random.default_rng(0)
    y = rng.choice(["b", "a"], 300)
    p_a = np.clip(np.where(y == "a", 0.7, 0.35) + rng.normal(0, 0.2, 300), 0, 1)
    proba = np.column_stack([1 - p_a, p_a])  # model order: ["b", "a"]
    pred = np.where(p_a > 0.5, "a", "b")
    ours = classification_metrics(y, pred, proba, classes=["b", "a"])
    assert close(ours["roc_auc"], skm.roc_auc_score(y == "a", p_a))
    assert close(ours["precision"], skm.precision_score(y, pred, pos_label="a"))
    assert close(ours["brier"], skm.brier_score_loss(y == "a", p_a))


def test_one_dimensional_probabilities_are_the_positive_class() -> None:
    y, pred, proba, classes = binary_ints()
    assert classification_metrics(y, pred, proba[:, 1], classes) == classification_metrics(
        y, pred, proba, classes
    )


def test_class_missing_from_y_true() -> None:
    y, pred, proba, classes = multiclass_ints()
    keep = y != 2
    y, pred, proba = y[keep], pred[keep], proba[keep]
    got = score_classification(y, pred, proba, classes)
    for key in ("accuracy", "f1_macro", "precision_weighted", "recall_macro"):
        assert key in got.metrics
    assert close(
        got.metrics["f1_macro"],
        skm.f1_score(y, pred, labels=classes, average="macro", zero_division=0),
    )
    assert close(got.metrics["log_loss"], skm.log_loss(y, proba, labels=classes))
    assert close(got.metrics["brier"], skm.brier_score_loss(y, proba, labels=classes))
    assert "roc_auc" not in got.metrics and "pr_auc" not in got.metrics
    assert "class 2 has no rows in y_true" in got.skipped["roc_auc"]


def test_single_class_y_has_no_roc_auc_and_a_reason() -> None:
    y = np.array(["a"] * 20)
    p_b = np.linspace(0.05, 0.95, 20)
    proba = np.column_stack([1 - p_b, p_b])
    pred = np.where(p_b > 0.5, "b", "a")
    got = score_classification(y, pred, proba, classes=["a", "b"])
    assert "roc_auc" not in got.metrics
    assert got.skipped["roc_auc"].startswith("y_true holds only class 'a'")
    assert "pr_auc" not in got.metrics and "positive class 'b'" in got.skipped["pr_auc"]
    assert close(got.metrics["accuracy"], skm.accuracy_score(y, pred))
    assert close(got.metrics["log_loss"], skm.log_loss(y, proba, labels=["a", "b"]))
    assert close(got.metrics["brier"], skm.brier_score_loss(y == "b", p_b))


def test_probabilities_that_do_not_sum_to_one_skip_log_loss_without_a_warning() -> None:
    y, pred, proba, classes = multiclass_ints()
    scaled = proba * 0.9
    got = score_classification(y, pred, scaled, classes)
    assert "log_loss" not in got.metrics and "sum to one" in got.skipped["log_loss"]
    assert "brier" not in got.metrics
    assert "pr_auc" in got.metrics  # a ranking metric does not need normalised scores


def test_probabilities_outside_unit_interval_are_named() -> None:
    y, pred, proba, classes = binary_ints()
    bad = proba.copy()
    bad[5] = [-0.5, 1.5]
    got = score_classification(y, pred, bad, classes)
    assert got.skipped["roc_auc"] == "probabilities lie outside [0, 1] (first at row 5)"


def test_no_probabilities_gives_label_metrics_only() -> None:
    y, pred, _, classes = binary_strings()
    got = score_classification(y, pred, None, classes)
    assert "accuracy" in got.metrics and "roc_auc" not in got.metrics
    assert "predict_proba" in got.skipped["roc_auc"]


def test_bad_classification_inputs_raise_usage_errors() -> None:
    y, pred, proba, classes = multiclass_ints()
    with pytest.raises(UsageError, match="4 columns but 3 classes"):
        classification_metrics(y, pred, proba, classes[:3])
    with pytest.raises(UsageError, match="column order is unknown"):
        classification_metrics(y[y < 3], pred[y < 3] % 3, proba[y < 3])
    with pytest.raises(UsageError, match="has 1 missing labels"):
        classification_metrics(np.array(["a", None, "b"], dtype=object), ["a", "a", "b"])
    with pytest.raises(UsageError, match="y_true has 3 rows but y_pred has 2"):
        classification_metrics([1, 2, 3], [1, 2])


def test_empty_input_skips_every_metric() -> None:
    got = score_classification([], [])
    assert got.metrics == {} and set(got.skipped.values()) == {"no rows"}
    assert score_regression([], []).skipped["rmse"] == "no rows"


def regression_sets() -> list[tuple[np.ndarray, np.ndarray]]:
    X, y = make_regression(n_samples=500, n_features=5, noise=20.0, random_state=4)
    fitted = LinearRegression().fit(X, y).predict(X)
    rng = np.random.default_rng(5)
    positive = rng.gamma(2.0, 3.0, 400) + 0.5
    return [(y, fitted), (positive, positive * rng.normal(1, 0.2, 400))]


@pytest.mark.parametrize("which", [0, 1])
def test_regression_metrics_equal_sklearn(which: int) -> None:
    y, pred = regression_sets()[which]
    ours = regression_metrics(y, pred)
    expected = {
        "mae": skm.mean_absolute_error(y, pred),
        "mse": skm.mean_squared_error(y, pred),
        "rmse": skm.root_mean_squared_error(y, pred),
        "r2": skm.r2_score(y, pred),
        "mape": skm.mean_absolute_percentage_error(y, pred),
        "max_error": skm.max_error(y, pred),
    }
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert close(ours[key], float(value)), key


def test_r2_of_one_row_is_skipped_with_a_reason() -> None:
    got = score_regression([3.0], [2.5])
    assert got.metrics["mae"] == 0.5 and "r2" not in got.metrics
    assert got.skipped["r2"] == "R² needs at least two rows"


def test_regression_rejects_missing_targets() -> None:
    with pytest.raises(UsageError, match=r"1 missing or infinite values \(first at row 1\)"):
        regression_metrics([1.0, np.nan], [1.0, 2.0])


# -- task inference ------------------------------------------------------------------------


def test_infer_task() -> None:
    assert infer_task([0.5, 1.5, 2.25], has_proba=False) == "regression"
    assert infer_task([0.5, 1.5], has_proba=True) == "classification"
    assert infer_task(["a", "b"], has_proba=False) == "classification"
    assert infer_task([True, False], has_proba=False) == "classification"
    assert infer_task([0, 1, 2, 1], has_proba=False) == "classification"
    assert infer_task(np.arange(100), has_proba=False) == "regression"
    assert infer_task([1, 2, 3], has_proba=False, y_pred=[1.2, 2.1, 2.9]) == "regression"
    assert infer_task(pd.Series([1.0, 0.0, 1.0]), has_proba=False) == "classification"


# -- slices --------------------------------------------------------------------------------


def test_slice_spec_parse() -> None:
    assert SliceSpec.parse("region") == SliceSpec(column="region")
    assert SliceSpec.parse("column:region") == SliceSpec(column="region")
    assert SliceSpec.parse("filter:age > 60 AND sex = 'F'") == SliceSpec(
        filter="age > 60 AND sex = 'F'"
    )
    named = SliceSpec.parse("elderly=filter:age > 60")
    assert named == SliceSpec(filter="age > 60", name="elderly")
    assert named.label == "elderly"
    assert SliceSpec.parse(str(named)) == named
    assert SliceSpec.parse("filter:a = 1").filter == "a = 1"
    with pytest.raises(UsageError):
        SliceSpec(column="a", filter="b > 1")
    with pytest.raises(UsageError):
        SliceSpec.parse("  ")


def _binary_model_data(n: int = 2000) -> tuple[pd.DataFrame, np.ndarray, LogisticRegression]:
    rng = np.random.default_rng(7)
    X = pd.DataFrame({"signal": rng.normal(size=n), "noise": rng.normal(size=n)})
    y = (X["signal"] + rng.normal(0, 0.8, n) > 0).astype(int).to_numpy()
    return X, y, LogisticRegression().fit(X, y)


def test_slice_metrics_equal_metrics_on_the_subset() -> None:
    X, y, model = _binary_model_data()
    rng = np.random.default_rng(8)
    extra = pd.DataFrame({"region": rng.choice(["north", "south", "east"], len(X))})
    result = evaluate(
        model.predict,
        X,
        y,
        predict_proba=model.predict_proba,
        slices=[SliceSpec(column="region"), SliceSpec(filter="signal > 0.5", name="high")],
        slice_frame=extra,
        importance=False,
    )
    by_value = {s["value"]: s for s in result.slices}
    assert set(by_value) == {"north", "south", "east", "signal > 0.5"}
    for value, mask in [
        ("north", extra["region"] == "north"),
        ("signal > 0.5", X["signal"] > 0.5),
    ]:
        rows = mask.to_numpy()
        entry = by_value[value]
        assert entry["n"] == int(rows.sum())
        expected = classification_metrics(
            y[rows], model.predict(X[rows]), model.predict_proba(X[rows]), [0, 1]
        )
        assert entry["metrics"] == pytest.approx(expected, rel=TOL, abs=TOL)
    assert by_value["signal > 0.5"]["slice"] == "high"
    assert by_value["signal > 0.5"]["kind"] == "filter"


def test_column_slices_keep_the_most_frequent_values_and_pool_the_rest() -> None:
    n_values = MAX_SLICE_VALUES + 10
    values = [f"v{i:03d}" for i in range(n_values) for _ in range(n_values - i)]
    values += [None] * 5
    X = pd.DataFrame({"x": np.zeros(len(values)), "group": values})
    y = np.zeros(len(values))
    result = evaluate(
        lambda d: np.zeros(len(d)),
        X,
        y,
        task="regression",
        slices=[SliceSpec(column="group")],
        importance=False,
    )
    names = [s["value"] for s in result.slices]
    assert names[:MAX_SLICE_VALUES] == [f"v{i:03d}" for i in range(MAX_SLICE_VALUES)]
    assert names[MAX_SLICE_VALUES:] == [OTHER, MISSING]
    other = result.slices[MAX_SLICE_VALUES]
    assert other["n"] == sum(n_values - i for i in range(MAX_SLICE_VALUES, n_values))
    assert result.slices[-1]["n"] == 5
    assert sum(s["n"] for s in result.slices) == len(values)


def test_bad_slices_raise_usage_errors_naming_them() -> None:
    X, y, model = _binary_model_data(200)

    def run(spec: SliceSpec) -> None:
        evaluate(model.predict, X, y, slices=[spec], importance=False)

    with pytest.raises(UsageError, match=r"cannot parse the slice filter 'signal >>> 1'"):
        run(SliceSpec(filter="signal >>> 1"))
    with pytest.raises(UsageError, match=r"names column 'signl'.*did you mean 'signal'"):
        run(SliceSpec(filter="signl > 1"))
    with pytest.raises(UsageError, match=r"gives .* values, not true/false"):
        run(SliceSpec(filter="signal + 1"))
    with pytest.raises(UsageError, match=r"cannot slice by column 'regoin'"):
        run(SliceSpec(column="regoin"))


def test_an_empty_slice_has_no_metrics_and_says_why() -> None:
    X, y, model = _binary_model_data(200)
    result = evaluate(
        model.predict, X, y, slices=[SliceSpec(filter="signal > 100")], importance=False
    )
    assert result.slices[0]["n"] == 0
    assert result.slices[0]["metrics"] == {}
    assert result.slices[0]["skipped"]["accuracy"] == "no rows"


# -- importance ----------------------------------------------------------------------------


def test_permutation_importance_ranks_the_feature_the_model_uses() -> None:
    X, y, _ = _binary_model_data()

    def only_signal(d: pd.DataFrame) -> np.ndarray:
        return (d["signal"] > 0).astype(int).to_numpy()

    result = evaluate(only_signal, X, y, importance_rows=500, importance_repeats=3, seed=1)
    assert result.primary_metric == "accuracy" and result.importance_metric == "accuracy"
    assert result.importance_rows == 500
    first, second = result.importance
    assert first["feature"] == "signal" and first["mean"] > 0.2
    # the model ignores `noise`, so shuffling it changes nothing at all
    assert second == {"feature": "noise", "mean": 0.0, "std": 0.0}


def test_importance_is_seeded() -> None:
    X, y, model = _binary_model_data()

    def run(seed: int) -> list[dict[str, Any]]:
        return evaluate(
            model.predict,
            X,
            y,
            predict_proba=model.predict_proba,
            importance_rows=300,
            seed=seed,
        ).importance

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_importance_of_a_lower_is_better_metric_is_positive_when_it_matters() -> None:
    X, y, model = _binary_model_data()
    result = evaluate(
        model.predict,
        X,
        y,
        predict_proba=model.predict_proba,
        primary_metric="log_loss",
        importance_rows=500,
    )
    assert result.importance_metric == "log_loss"
    assert result.importance[0]["feature"] == "signal" and result.importance[0]["mean"] > 0


def test_unknown_primary_metric_is_a_usage_error() -> None:
    X, y, model = _binary_model_data(100)
    with pytest.raises(UsageError, match="'rmse' is not a classification metric"):
        evaluate(model.predict, X, y, primary_metric="rmse")
    with pytest.raises(UsageError, match="'roc_auc' is not a classification metric"):
        evaluate(model.predict, X, y, primary_metric="roc_auc")  # no probabilities


# -- the whole result ----------------------------------------------------------------------


def test_classification_result_has_curves_matrix_and_metrics() -> None:
    X, y, model = _binary_model_data()
    result = evaluate(model.predict, X, y, predict_proba=model.predict_proba, importance=False)
    pred, proba = model.predict(X), model.predict_proba(X)
    assert result.task == "classification" and result.n_rows == len(X)
    assert result.classes == [0, 1]
    assert result.confusion_matrix == skm.confusion_matrix(y, pred).tolist()
    assert result.primary_metric == "roc_auc"
    assert result.metrics == classification_metrics(y, pred, proba)
    (roc,) = result.curves["roc"]
    assert close(roc["auc"], result.metrics["roc_auc"])
    assert len(roc["fpr"]) <= MAX_CURVE_POINTS + 2 and roc["fpr"][0] == 0 and roc["tpr"][-1] == 1
    (pr,) = result.curves["pr"]
    assert close(pr["average_precision"], result.metrics["pr_auc"])
    (cal,) = result.curves["calibration"]
    true_frac, mean_pred = calibration_curve(y, proba[:, 1], n_bins=10)
    assert cal["fraction_positive"] == pytest.approx(true_frac, abs=1e-5)
    assert cal["mean_predicted"] == pytest.approx(mean_pred, abs=1e-5)
    assert sum(cal["count"]) == len(X)


def test_multiclass_curves_are_per_class_and_capped() -> None:
    X, y = make_classification(
        n_samples=3000, n_features=10, n_informative=8, n_classes=12, random_state=9
    )
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    labels = np.array([f"c{i}" for i in range(12)])[y]
    model = LogisticRegression(max_iter=300).fit(frame, labels)
    result = evaluate(
        model.predict, frame, labels, predict_proba=model.predict_proba, importance=False
    )
    assert len(result.curves["roc"]) == 10
    assert any("curves show 10 of 12 classes" in n for n in result.notes)
    assert all(len(c["fpr"]) <= MAX_CURVE_POINTS + 2 for c in result.curves["roc"])


def test_regression_result() -> None:
    X, y = make_regression(n_samples=1500, n_features=3, noise=5.0, random_state=10)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = LinearRegression().fit(frame, y)
    result = evaluate(model.predict, frame, y, importance_rows=400)
    assert result.task == "regression" and result.primary_metric == "r2"
    assert result.metrics == regression_metrics(y, model.predict(frame))
    hist = result.curves["residuals"]
    assert sum(hist["counts"]) + hist["below"] + hist["above"] == len(y)
    scatter = result.curves["predicted_vs_actual"]
    assert len(scatter["actual"]) == 500 and scatter["n_rows"] == 1500
    assert {r["feature"] for r in result.importance} == {"a", "b", "c"}


def test_result_round_trips_through_json() -> None:
    X, y, _ = _binary_model_data(500)
    labels = np.array(["neg", "pos"])[y]
    text_model = LogisticRegression().fit(X, labels)
    result = evaluate(
        text_model.predict,
        X,
        labels,
        predict_proba=text_model.predict_proba,
        slices=[SliceSpec(filter="noise > 0")],
        importance_rows=100,
    )
    payload = json.dumps(result.to_dict(), allow_nan=False)
    assert EvaluationResult.from_dict(json.loads(payload)) == result
    assert result.classes == ["neg", "pos"]
    assert result.slices[0]["value"] == "noise > 0"


def test_result_from_a_newer_format_is_refused() -> None:
    X, y, model = _binary_model_data(100)
    data = evaluate(model.predict, X, y, importance=False).to_dict()
    data["format"] = 99
    with pytest.raises(UsageError, match="format 99"):
        EvaluationResult.from_dict(data)
    with pytest.raises(InputDataError):
        EvaluationResult.from_dict({"format": 1})


def test_predictions_of_the_wrong_length_are_a_usage_error() -> None:
    X, y, _ = _binary_model_data(100)
    with pytest.raises(UsageError, match="returned 99 values for 100 rows"):
        evaluate(lambda d: np.zeros(len(d) - 1), X, y)


def test_thin_keeps_the_ends_and_at_most_max_points() -> None:
    x = np.linspace(0, 1, 10_000)
    y = np.sqrt(x)
    keep = thin(x, y, 50)
    assert keep[0] == 0 and keep[-1] == len(x) - 1
    assert len(keep) <= 52 and np.all(np.diff(keep) > 0)
    assert list(thin(x[:10], y[:10], 50)) == list(range(10))


def test_importance_falls_back_when_the_primary_metric_is_undefined_on_the_sample() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    X = pd.DataFrame({"signal": rng.normal(size=n), "noise": rng.normal(size=n)})
    y = np.where(X["signal"] > 0, "up", "down").astype(object)
    y[:2] = "rare"  # two rows of a third class: a 50-row sample almost surely misses it
    model = LogisticRegression(max_iter=500).fit(X, y)
    result = evaluate(
        model.predict,
        X,
        y,
        predict_proba=model.predict_proba,
        classes=list(model.classes_),
        importance_rows=50,
        seed=0,
    )
    assert result.primary_metric == "roc_auc" and "roc_auc" in result.metrics
    assert result.importance_metric == "accuracy"
    assert any(
        n.startswith("importance uses accuracy: roc_auc is undefined on the 50-row sample")
        for n in result.notes
    )
    assert result.importance[0]["feature"] == "signal"


def test_labels_the_model_does_not_know_keep_label_metrics_and_explain_the_rest() -> None:
    y, pred, proba, classes = binary_strings()
    y = y.astype(object)
    y[:10] = "maybe"
    got = score_classification(y, pred, proba, classes)
    assert close(
        got.metrics["f1_macro"],
        skm.f1_score(y, pred, labels=[*classes, "maybe"], average="macro", zero_division=0),
    )
    assert "roc_auc" not in got.metrics
    assert got.skipped["log_loss"] == (
        "the data holds labels the model has no probability for: 'maybe'"
    )
