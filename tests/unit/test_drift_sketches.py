"""Column kinds (Evidently's rules) and sketches: building, storing, reading back."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from modelcycle.monitoring import kinds as k
from modelcycle.monitoring.sketches import (
    EXACT_DISTINCT,
    ColumnProblem,
    category_keys,
    from_bytes,
    infer_column_kind,
    numeric_values,
    sketch_series,
    to_bytes,
)


@pytest.mark.parametrize(
    ("series", "kind"),
    [
        (pl.Series([1.5, 2.5, None]), k.NUMERICAL),
        (pl.Series([1, 2, 3] * 4), k.CATEGORICAL),  # at most 10 distinct integers
        (pl.Series(list(range(11))), k.NUMERICAL),
        (pl.Series(["a", "b"] * 3 + [None]), k.CATEGORICAL),
        (pl.Series(["a", "b", "c", "d"]), k.TEXT),  # more than half distinct
        (pl.Series([True, False]), k.CATEGORICAL),
        (pl.Series(["x", "y"], dtype=pl.Categorical), k.CATEGORICAL),
        (pl.Series([[0.1, 0.2], [0.3, 0.4]]), k.EMBEDDING),
        (pl.Series([None, None], dtype=pl.Null), k.EMPTY),
        (pl.Series([None, None], dtype=pl.String), k.EMPTY),
        (pl.Series([b"\x00"]), k.UNSUPPORTED),
        (pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 1, 3), eager=True), k.DATETIME),
    ],
)
def test_kinds_follow_evidentlys_inference(series: pl.Series, kind: str) -> None:
    assert infer_column_kind(series) == kind


def test_numeric_values_leave_out_missing_nan_and_infinities() -> None:
    values, left_out = numeric_values(pl.Series([3.0, None, float("nan"), 1.0, float("inf")]))
    assert values.tolist() == [1.0, 3.0]
    assert left_out == 3


def test_numbers_written_as_text_are_parsed_and_other_text_is_refused() -> None:
    values, left_out = numeric_values(pl.Series(["1.5", " 2", None]))
    assert (values.tolist(), left_out) == ([1.5, 2.0], 1)
    with pytest.raises(ColumnProblem, match=r"2 values are not numbers \(first: 'n/a', 'x'\)"):
        numeric_values(pl.Series(["1", "n/a", "x"]))


def test_whole_floats_are_the_same_category_as_integers() -> None:
    assert category_keys(pl.Series([1.0, 2.5, None])).to_list() == ["1", "2.5", None]
    assert category_keys(pl.Series([1, 2])).to_list() == ["1", "2"]
    assert category_keys(pl.Series([True])).to_list() == ["true"]


def test_a_numeric_sketch_keeps_values_and_stores_cells() -> None:
    rng = np.random.default_rng(0)
    few = sketch_series("few", pl.Series(rng.integers(0, 5, 1000).astype(float)), k.NUMERICAL)
    many = sketch_series("many", pl.Series(rng.normal(size=50_000)), k.NUMERICAL)
    assert few.distinct == 5 and few.has_data and few.values is not None
    stored_few = few.for_storage()
    assert stored_few.values is None and stored_few.cells is not None and stored_few.cells.exact
    assert stored_few.has_data  # exact cells are the data
    assert stored_few.sorted_values().tolist() == few.sorted_values().tolist()
    stored_many = many.for_storage()
    assert many.distinct > EXACT_DISTINCT
    assert stored_many.cells is not None and not stored_many.cells.exact
    assert not stored_many.has_data
    assert stored_many.cells.n == 50_000


def test_sketches_round_trip_through_bytes() -> None:
    rng = np.random.default_rng(1)
    sketches = [
        sketch_series("x", pl.Series(rng.normal(size=20_000)), k.NUMERICAL),
        sketch_series("c", pl.Series(["a", "b", None, "a"]), k.CATEGORICAL),
        sketch_series("t", pl.Series(["some words", "more words"]), k.TEXT),
        sketch_series("e", pl.Series([None, None], dtype=pl.Float64), k.NUMERICAL),
    ]
    data = to_bytes(sketches, {"epsilon": 1e-6})
    back, options = from_bytes(data)
    assert options == {"epsilon": 1e-6}
    assert [s.name for s in back] == ["x", "c", "t", "e"]
    x, c, t, e = back
    assert (x.rows, x.nulls, x.distinct) == (20_000, 0, sketches[0].distinct)
    assert x.std == pytest.approx(float(np.std(sketches[0].sorted_values())))
    assert x.cells is not None and x.cells.n == 20_000
    assert c.categories == {"a": 2, "b": 1} and c.nulls == 1
    assert t.kind == k.TEXT and t.raw is None and not t.has_data
    assert (e.rows, e.nulls, e.cells) == (2, 2, None)
    with pytest.raises(ValueError, match="drift sketch"):
        from_bytes(to_bytes([], {}).replace(b"modelcycle-drift-sketch", b"modelcycle-other-sketch"))


def test_embeddings_become_a_matrix() -> None:
    sketch = sketch_series("e", pl.Series([[1.0, 2.0], None, [3.0, 4.0]]), k.EMBEDDING)
    assert sketch.raw.shape == (2, 2) and sketch.nulls == 1
    with pytest.raises(ColumnProblem, match="different lengths"):
        sketch_series("e", pl.Series([[1.0, 2.0], [3.0]]), k.EMBEDDING)
