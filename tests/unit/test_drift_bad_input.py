"""Drift on awkward data: missing columns, empty and constant columns, mixed types, no
rows. Nothing crashes; each problem is reported on its column and the rest is checked."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from modelcycle.core.errors import UsageError
from modelcycle.monitoring.drift import DriftOptions, DriftResult, Reference, compare
from modelcycle.monitoring.sources import FrameSource

rng = np.random.default_rng(0)
N = 400


def reference_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "age": rng.normal(40, 10, N),
            "city": rng.choice(["paris", "lyon", "nice"], N).tolist(),
            "empty": pl.Series([None] * N, dtype=pl.Float64),
            "constant": np.full(N, 7.0),
            "when": [dt.date(2024, 1, 1)] * N,
            "score": rng.random(N),
        }
    )


def run(ref: pl.DataFrame, cur: pl.DataFrame, **options: object) -> DriftResult:
    result, _ = compare(
        Reference(FrameSource(ref, "reference"), None),
        FrameSource(cur, "current"),
        DriftOptions(**options),  # type: ignore[arg-type]
    )
    json.dumps(result.to_dict(), allow_nan=False)  # always valid JSON
    return result


def test_each_problem_is_reported_and_the_rest_is_checked() -> None:
    ref = reference_frame()
    cur = ref.with_columns(
        pl.Series("age", rng.normal(60, 10, N)),
        pl.Series("extra", np.ones(N)),
    ).drop("city")
    result = run(ref, cur)
    status = {c.column: (c.status, c.message) for c in result.columns}
    assert status["city"] == ("missing", "not in the current data")
    assert status["empty"] == ("no_data", "every reference value is missing")
    assert status["when"] == ("skipped", "dates and times are not checked for drift")
    assert status["constant"][0] == "ok" and "constant" in (status["constant"][1] or "")
    assert [c.column for c in result.checked] == ["age", "constant", "score"]
    assert result.drifted_columns == ["age"]
    assert result.drift_share == pytest.approx(1 / 3)
    assert not result.dataset_drift
    assert result.extra_columns == ["extra"]
    assert result.to_dict()["not_checked"] == {
        "city": "missing",
        "empty": "no_data",
        "when": "skipped",
    }


def test_a_column_missing_only_in_the_current_data() -> None:
    ref = reference_frame()
    cur = ref.with_columns(pl.Series("score", [None] * N, dtype=pl.Float64))
    column = run(ref, cur).column("score")
    assert (column.status, column.message) == ("no_data", "every current value is missing")


def test_text_in_a_numerical_column_is_an_error_of_that_column() -> None:
    ref = reference_frame()
    cur = ref.with_columns(
        pl.Series("age", ["n/a" if i % 50 == 0 else str(40 + i % 7) for i in range(N)])
    )
    result = run(ref, cur)
    age = result.column("age")
    assert age.status == "error"
    assert age.message is not None and "8 values are not numbers (first: 'n/a'" in age.message
    assert result.column("score").status == "ok"


def test_numbers_sent_as_text_are_compared_as_numbers() -> None:
    ref = reference_frame()
    cur = ref.with_columns(pl.col("age").cast(pl.String))
    age = run(ref, cur).column("age")
    assert age.status == "ok" and age.test == "ks" and not age.drifted


def test_no_current_rows_is_no_data_and_no_drift() -> None:
    ref = reference_frame()
    result = run(ref, ref.head(0))
    assert result.status == "no_data"
    assert not result.dataset_drift and result.drift_share == 0.0
    assert {c.status for c in result.columns} == {"no_data", "skipped"}
    assert result.column("age").message == "the current data has no rows"


def test_no_reference_rows_is_no_data() -> None:
    ref = reference_frame()
    result = run(ref.head(0), ref)
    assert result.status == "no_data"
    assert not result.dataset_drift


def test_pandas_frames_with_mixed_object_columns() -> None:
    ref = pd.DataFrame({"code": ["a", "b", 3, None] * 50, "x": np.arange(200.0)})
    cur = pd.DataFrame({"code": ["a", "b", "3", None] * 50, "x": np.arange(200.0)})
    result, _ = compare(Reference(FrameSource(ref), None), FrameSource(cur), DriftOptions())
    code = result.column("code")
    assert code.status == "ok" and code.kind == "categorical" and not code.drifted


def test_options_are_checked_before_any_work() -> None:
    ref = reference_frame()
    with pytest.raises(UsageError, match=r"no column 'agee'.*did you mean 'age'"):
        run(ref, ref, columns=["agee"])
    with pytest.raises(UsageError, match="no drift test named 'kss'"):
        run(ref, ref, test="kss")
    with pytest.raises(UsageError, match="not a kind"):
        run(ref, ref, kinds={"age": "number"})
    with pytest.raises(UsageError, match="drift_share"):
        run(ref, ref, drift_share=0.0)


def test_tests_thresholds_kinds_and_the_prediction_column() -> None:
    ref = reference_frame()
    cur = ref.with_columns(pl.col("age") + 3)
    result = run(
        ref,
        cur,
        columns=["age", "city", "score"],
        test="psi",
        tests={"score": "ks"},
        thresholds={"age": 0.5},
        kinds={"score": "numerical"},
        prediction="score",
    )
    age, city, score = result.columns
    assert (age.test, age.threshold) == ("psi", 0.5)
    assert (city.test, city.threshold) == ("psi", 0.1)
    assert (score.test, score.role) == ("ks", "prediction")
    assert result.prediction is score
    assert result.to_dict()["prediction_drift"] is False
    wrong = run(ref, cur, columns=["city"], tests={"city": "ks"}).column("city")
    assert wrong.status == "error" and "ks cannot check a categorical column" in (
        wrong.message or ""
    )


def test_drift_share_sets_the_dataset_verdict() -> None:
    ref = reference_frame()
    cur = ref.with_columns(pl.col("age") + 30)
    assert not run(ref, cur).dataset_drift
    assert run(ref, cur, drift_share=0.25).dataset_drift  # 1 of age, city, constant, score
