"""Prediction log internals that need no store: column typing and segment choice."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pyarrow as pa
import pytest

from modelcycle.deploy.segments import arrow_column, newest
from modelcycle.store.deployments import SegmentRow

T0 = dt.datetime(2026, 1, 31, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, None], pa.int64()),
        ([1, 2.5], pa.float64()),
        ([np.int64(3), np.float32(1.5)], pa.float64()),
        (["a", None], pa.string()),
        ([[0.1, 0.9], np.array([0.2, 0.8])], pa.list_(pa.float64())),
        ([None, None], pa.null()),
    ],
)
def test_values_arrow_can_type_stay_typed(values: list[object], expected: pa.DataType) -> None:
    assert arrow_column(values).type == expected


@pytest.mark.parametrize(
    ("values", "text"),
    [
        (["a", 1], ['"a"', "1"]),
        ([True, 2], ["true", "2"]),
        ([{"a": 1}, {"b": [1, 2]}], ['{"a":1}', '{"b":[1,2]}']),
        ([[{"a": 1}], None], ['[{"a":1}]', None]),
        ([1, 2**70], ["1", "1180591620717411303424"]),
    ],
)
def test_other_values_become_json_text(values: list[object], text: list[str | None]) -> None:
    column = arrow_column(values)
    assert column.type == pa.string() and column.to_pylist() == text


def _segment(i: int, start: int, end: int, rows: int) -> SegmentRow:
    return SegmentRow(
        i,
        "d",
        "m",
        1,
        T0 + dt.timedelta(seconds=start),
        T0 + dt.timedelta(seconds=end),
        rows,
        100,
        f"oid{i}",
        T0,
    )


def _newest_rows(segments: list[SegmentRow], rows_of: dict[int, list[int]], n: int) -> list[int]:
    return sorted(t for s in segments for t in rows_of[s.id])[-n:] if n else []


def test_newest_segments_hold_the_newest_rows() -> None:
    """Whatever the overlap of segments, those chosen for `limit` hold the newest rows."""
    rng = random.Random(7)
    for _ in range(200):
        segments, rows_of = [], {}
        for i in range(rng.randint(1, 12)):
            times = sorted(rng.sample(range(1000), rng.randint(1, 20)))
            rows_of[i] = times
            segments.append(_segment(i, times[0], times[-1], len(times)))
        limit = rng.randint(1, 60)
        chosen = newest(segments, limit)
        assert _newest_rows(chosen, rows_of, limit) == _newest_rows(segments, rows_of, limit)
        assert [s.min_ts for s in chosen] == sorted(s.min_ts for s in chosen)


def test_newest_reads_few_segments_when_they_do_not_overlap() -> None:
    segments = [_segment(i, 10 * i, 10 * i + 9, 10) for i in range(100)]
    assert [s.id for s in newest(segments, 15)] == [98, 99]


def test_a_request_of_numpy_arrays_splits_into_rows() -> None:
    from modelcycle.deploy.segments import rows_of

    rows = rows_of(
        {
            "request_id": "r",
            "ts": 0.0,
            "model": "m",
            "version": 1,
            "inputs": {"x": np.array([1.0, 2.0]), "tensor": np.array([[1, 2], [3, 4]])},
            "outputs": {"prediction": np.array([7, 8]), "probabilities": np.eye(2)},
        }
    )
    assert [(r["row"], r["prediction"]) for r in rows] == [(0, 7), (1, 8)]
    assert rows[1]["inputs"]["x"] == 2.0
    assert list(rows[1]["inputs"]["tensor"]) == [3, 4]
    assert list(rows[0]["probability"]) == [1.0, 0.0]


def test_inputs_that_do_not_match_the_rows_are_kept_whole() -> None:
    from modelcycle.deploy.segments import rows_of

    rows = rows_of(
        {
            "request_id": "r",
            "ts": 0.0,
            "model": "m",
            "version": 1,
            "inputs": {"x": [1.0, 2.0, 3.0]},
            "outputs": {"prediction": [1, 2]},
        }
    )
    assert [r["inputs"] for r in rows] == [{"x": [1.0, 2.0, 3.0]}] * 2
