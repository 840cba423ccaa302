"""Prediction logs and feedback: buffered logging from many threads, flushing by rows and
by time, sampling, reading by deployment/model/time window, gc and fsck, feedback joins."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
import pytest
from integration_support import LOCAL
from test_deploy import register_iris

import modelcycle as mc
from modelcycle.core.errors import InputDataError, StorageError, UsageError
from modelcycle.deploy.predlog import PredictionLogger
from modelcycle.deploy.segments import read_predictions
from modelcycle.store.deployments import DeploymentStore, NewSegment

EMBEDDED = pytest.mark.parametrize("backend", [LOCAL], indirect=True)
WAIT_SECONDS = 60.0  # an upper bound for background work; tests never assert durations
T0 = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)


def _logger(ws: mc.Workspace, **options: Any) -> PredictionLogger:
    return PredictionLogger(ws.blobs, DeploymentStore(ws.store), **options)


def _rows_written(ws: mc.Workspace, **where: Any) -> int:
    return sum(s.num_rows for s in DeploymentStore(ws.store).segments(**where))


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {WAIT_SECONDS} s waiting for {what}")
        time.sleep(0.02)


def _record(i: int, *, version: int = 1, route: str = "primary", **extra: Any) -> dict[str, Any]:
    return {
        "request_id": f"req-{i}",
        "ts": T0 + dt.timedelta(seconds=i),
        "model": "iris",
        "version": version,
        "route": route,
        "inputs": {"sepal_length": 5.0 + i % 7, "petal_width": 0.1 * (i % 11), "site": "a"},
        "prediction": f"class-{i % 3}",
        "probability": [0.2, 0.3, 0.5],
        "latency_ms": 1.5,
        **extra,
    }


def _reader(ws: mc.Workspace) -> Any:
    return ws.deployments


def test_many_threads_log_then_read_by_scope_and_window(workspace: mc.Workspace) -> None:
    ws = workspace
    register_iris(ws, versions=2)
    svc = _reader(ws)
    threads, per_thread = 8, 250
    logger = _logger(ws, deployment="iris-live", flush_rows=300, flush_seconds=3600)
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for j in range(per_thread):
            i = t * per_thread + j
            logger.log(_record(i, version=1 + i % 2, route="shadow" if i % 5 == 0 else "primary"))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    logger.close()
    total = threads * per_thread
    stats = logger.stats()
    assert (stats["logged"], stats["rows_written"], stats["dropped"]) == (total, total, 0)

    segments = DeploymentStore(ws.store).segments(deployment="iris-live")
    assert sum(s.num_rows for s in segments) == total
    assert {s.version for s in segments} == {1, 2}  # one model version per segment
    assert len({s.oid for s in segments}) == len(segments)

    df = svc.predictions("iris-live")
    assert df.height == total and df["request_id"].n_unique() == total
    assert df.columns[:11] == [
        "request_id",
        "row",
        "ts",
        "deployment",
        "endpoint",
        "model",
        "version",
        "route",
        "prediction",
        "probability",
        "latency_ms",
    ]
    assert {"inputs.sepal_length", "inputs.petal_width", "inputs.site"} <= set(df.columns)
    assert df.schema["ts"] == pl.Datetime("us", "UTC")
    assert df.schema["inputs.sepal_length"] == pl.Float64
    assert df.schema["probability"] == pl.List(pl.Float64)
    assert df["ts"].is_sorted()
    row = df.filter(pl.col("request_id") == "req-10").row(0, named=True)
    assert row["ts"] == T0 + dt.timedelta(seconds=10)
    assert (row["version"], row["route"], row["prediction"]) == (1, "shadow", "class-1")
    assert row["inputs.petal_width"] == pytest.approx(1.0)

    latest = svc.predictions("iris@latest")  # resolved through the registry: iris@2
    assert latest.height == total // 2 and set(latest["version"].to_list()) == {2}
    assert svc.predictions("iris").height == total  # a model name: all its versions
    # A time window is inclusive at both ends, and naive times are UTC.
    window = svc.predictions(
        "iris-live",
        T0 + dt.timedelta(seconds=100),
        (T0 + dt.timedelta(seconds=199)).replace(tzinfo=None),
    )
    assert sorted(window["request_id"].to_list()) == sorted(f"req-{i}" for i in range(100, 200))
    newest = svc.predictions("iris-live", limit=7)
    assert newest["request_id"].to_list() == [f"req-{i}" for i in range(total - 7, total)]
    assert svc.predictions("iris-live", T0 + dt.timedelta(days=1)).height == 0

    # gc keeps every segment; fsck verifies them.
    report = ws.gc(grace_seconds=0)
    assert report.kept >= len(segments)
    assert svc.predictions("iris-live").height == total
    assert ws.fsck().ok


@EMBEDDED
def test_flush_by_rows_before_the_time_is_up(workspace: mc.Workspace) -> None:
    ws = workspace
    logger = _logger(ws, deployment="d", flush_rows=100, flush_seconds=3600)
    for i in range(250):
        logger.log(_record(i))
    # Only the row count can have triggered a write: the clock's flush is an hour away.
    _wait_for(lambda: _rows_written(ws, deployment="d") >= 100, "a flush by rows")
    logger.close()
    assert _rows_written(ws, deployment="d") == 250


@EMBEDDED
def test_flush_by_time_when_rows_are_few(workspace: mc.Workspace) -> None:
    ws = workspace
    logger = _logger(ws, deployment="d", flush_rows=1_000_000, flush_seconds=0.2)
    for i in range(5):
        logger.log(_record(i))
    _wait_for(lambda: _rows_written(ws, deployment="d") == 5, "a flush by time")
    logger.log(_record(5))
    _wait_for(lambda: _rows_written(ws, deployment="d") == 6, "a second flush by time")
    logger.close()
    assert logger.stats()["segments_written"] == 2


@EMBEDDED
def test_flush_now_and_close_write_everything(workspace: mc.Workspace) -> None:
    ws = workspace
    logger = _logger(ws, deployment="d", flush_rows=1_000_000, flush_seconds=3600)
    for i in range(3):
        logger.log(_record(i))
    assert logger.flush(timeout=WAIT_SECONDS)
    assert _rows_written(ws, deployment="d") == 3
    logger.log(_record(3))
    logger.close()
    assert _rows_written(ws, deployment="d") == 4
    logger.close()  # twice is harmless
    logger.log(_record(4))  # after close: dropped, never raised on a server's hot path
    assert logger.stats()["dropped"] == 1


@EMBEDDED
def test_a_bad_record_is_left_out_and_holds_nothing_back(workspace: mc.Workspace) -> None:
    ws = workspace
    logger = _logger(ws, deployment="d", flush_rows=1_000_000)
    logger.log(_record(0))
    logger.log({**_record(1), "ts": 1e300})  # passes log()'s cheap checks, not the writer's
    logger.log({**_record(2), "row": "first"})
    logger.log(_record(3))
    assert logger.flush(timeout=WAIT_SECONDS)
    stats = logger.stats()
    assert (stats["rows_written"], stats["invalid"], stats["write_failures"]) == (2, 2, 0)
    logger.log(_record(4))
    with pytest.raises(InputDataError, match="2 prediction records could not be logged"):
        logger.close()
    assert sorted(_reader(ws).predictions("d")["request_id"]) == ["req-0", "req-3", "req-4"]


class FailingOnce(DeploymentStore):
    """A store whose first segment transaction fails, as when the database is down."""

    failed = False

    def add_segments(self, segments: Sequence[NewSegment]) -> None:
        if not self.failed:
            self.failed = True
            raise StorageError("cannot write the metadata store: down", hint="")
        super().add_segments(segments)


@EMBEDDED
def test_a_failed_write_is_retried_and_leaves_only_an_unreferenced_blob(
    workspace: mc.Workspace,
) -> None:
    ws = workspace
    logger = PredictionLogger(ws.blobs, FailingOnce(ws.store), deployment="d", flush_rows=1_000_000)
    for i in range(3):
        logger.log(_record(i))
    with pytest.raises(StorageError, match="down"):
        logger.flush(timeout=WAIT_SECONDS)
    stats = logger.stats()
    assert (stats["write_failures"], stats["buffered"], stats["rows_written"]) == (1, 3, 0)
    orphans = set(ws.blobs.iter_oids())  # the failed attempt's blob: stored, unreferenced
    assert len(orphans) == 1 and ws.fsck().unreferenced == 1
    logger.log(_record(3))
    logger.close()  # writes the kept batch and the new record, once each
    assert _rows_written(ws, deployment="d") == 4
    assert sorted(_reader(ws).predictions("d")["request_id"]) == [f"req-{i}" for i in range(4)]
    report = ws.gc(grace_seconds=0)
    assert report.removed == 1 and not orphans & set(ws.blobs.iter_oids())
    assert ws.fsck().ok and _reader(ws).predictions("d").height == 4


@EMBEDDED
def test_sample_rate_keeps_a_fraction_and_keeps_requests_whole(
    workspace: mc.Workspace,
) -> None:
    ws = workspace
    n, rate = 4000, 0.25
    with _logger(ws, deployment="d", sample_rate=rate, flush_rows=10_000) as logger:
        for i in range(n):
            logger.log(_record(i))
            logger.log(_record(i, version=2, route="shadow"))
    stats = logger.stats()
    kept = stats["logged"] // 2
    # Binomial(4000, 0.25): sd = 27.4, so ±6 sd = ±165 leaves no room for flakiness.
    assert abs(kept - n * rate) <= 165, kept
    assert stats["sampled_out"] == 2 * (n - kept)
    df = _reader(ws).predictions("d")
    per_request = df.group_by("request_id").agg(pl.col("route").sort())
    assert per_request.height == kept
    assert set(map(tuple, per_request["route"].to_list())) == {("primary", "shadow")}


@EMBEDDED
def test_records_of_any_shape_are_kept(workspace: mc.Workspace) -> None:
    ws = workspace
    with _logger(ws, deployment=None, flush_rows=10_000) as logger:
        logger.log({"model": "m", "version": 1, "inputs": [[1.0, 2.0]], "prediction": 3})
        logger.log({"model": "m", "version": 1, "inputs": {"nested": {"a": 1}}, "prediction": "x"})
        logger.log({"model": "m", "version": 1, "prediction": {"label": 1}, "trace": "t-1"})
        with pytest.raises(UsageError, match="needs 'model'"):
            logger.log({"version": 1})
        with pytest.raises(UsageError, match="route"):
            logger.log({"model": "m", "version": 1, "route": "canary"})
        with pytest.raises(UsageError, match="ts"):
            logger.log({"model": "m", "version": 1, "ts": "yesterday"})
    # "m" is not a registered model (a server may serve a package folder): its logs are
    # found by the names in the segments.
    got = _reader(ws).predictions("m")
    assert _reader(ws).predictions("m@1").equals(got)
    assert got.equals(read_predictions(ws.blobs, DeploymentStore(ws.store), model="m"))
    assert got.height == 3 and got["deployment"].null_count() == 3
    assert got["request_id"].n_unique() == 3  # made up when missing
    # Mixed shapes become JSON text rather than failing the segment.
    assert got.schema["prediction"] == pl.String
    assert got["prediction"].to_list() == ["3", '"x"', '{"label":1}']
    assert got["inputs"].to_list() == ["[[1.0,2.0]]", '{"nested":{"a":1}}', None]
    assert got["extra"].to_list() == [None, None, '{"trace":"t-1"}']


@EMBEDDED
def test_a_servers_request_records_become_one_row_per_prediction(
    workspace: mc.Workspace,
) -> None:
    """The records ``modelcycle serve`` hands its prediction sink: one per request, with
    columnar inputs and outputs; they are logged as is, split into rows."""
    ws = workspace
    svc = _reader(ws)
    base = {"endpoint": "live", "model": "iris", "version": 1, "protocol": "v1"}
    with _logger(ws, deployment="live") as logger:
        logger.log(
            {
                **base,
                "request_id": "batch",
                "time": T0.timestamp(),
                "route": "primary",
                "inputs": {"sepal_length": [5.1, 6.2, 7.3], "site": ["a", "b", "c"]},
                "outputs": {
                    "prediction": [0, 1, 2],
                    "probabilities": [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]],
                },
                "latency_ms": 4.0,
            }
        )
        logger.log(
            {
                **base,
                "request_id": "tensor",
                "time": T0.timestamp() + 1,
                "route": "shadow",
                "inputs": {"tensor": [[1.0, 2.0], [3.0, 4.0]]},
                "outputs": {"prediction": [1, 0], "classes": ["a", "b"]},
                "latency_ms": 2.0,
            }
        )
    assert logger.stats()["rows_written"] == 5
    df = svc.predictions("live")
    assert df.select("request_id", "row", "prediction").rows() == [
        ("batch", 0, 0),
        ("batch", 1, 1),
        ("batch", 2, 2),
        ("tensor", 0, 1),
        ("tensor", 1, 0),
    ]
    batch = df.filter(pl.col("request_id") == "batch")
    assert batch["inputs.sepal_length"].to_list() == [5.1, 6.2, 7.3]
    assert batch["inputs.site"].to_list() == ["a", "b", "c"]
    assert batch["probability"].to_list()[1] == [0.1, 0.8, 0.1]
    assert set(batch["ts"].to_list()) == {T0} and set(batch["endpoint"]) == {"live"}
    tensor = df.filter(pl.col("request_id") == "tensor")
    assert tensor["inputs.tensor"].to_list() == [[1.0, 2.0], [3.0, 4.0]]
    assert tensor["probability"].null_count() == 2
    assert tensor["extra"].to_list() == ['{"protocol":"v1","outputs":{"classes":["a","b"]}}'] * 2

    # Feedback names a row of a request; a row left out means row 0.
    svc.feedback.add(
        [
            {"request_id": "batch", "row": 2, "label": 2},
            {"request_id": "batch", "label": 1},
            {"request_id": "tensor", "row": 1, "label": 0},
        ]
    )
    joined = svc.feedback.join("live").sort("request_id", "row")
    assert joined.select("request_id", "row", "prediction", "label").rows() == [
        ("batch", 0, 0, 1),
        ("batch", 2, 2, 2),
        ("tensor", 1, 0, 0),
    ]
    with pytest.raises(UsageError, match="row"):
        svc.feedback.add([{"request_id": "batch", "row": -1, "label": 1}])


def test_feedback_joins_predictions_last_one_wins(workspace: mc.Workspace) -> None:
    ws = workspace
    svc = _reader(ws)
    with _logger(ws, deployment="live") as logger:
        for i in range(10):
            logger.log(_record(i))
    assert (
        svc.feedback.add([{"request_id": f"req-{i}", "label": f"class-{i % 3}"} for i in range(5)])
        == 5
    )
    svc.feedback.add(
        [
            {"request_id": "req-0", "label": "class-2", "ts": "2026-02-01T00:00:00Z"},
            {"request_id": "not-logged", "value": 1.5, "ts": 1_769_904_000},
        ]
    )
    bad: list[list[Any]] = [
        [{"request_id": "req-9", "label": 1}, {"label": 1}],
        [{"request_id": "req-9", "label": 1, "value": 2}],
        [{"request_id": "req-9"}],
        [{"request_id": "req-9", "label": 1, "ts": "soon"}],
        [{"request_id": "req-9", "label": 1, "score": 3}],
        ["req-9"],
    ]
    for items in bad:
        with pytest.raises(UsageError):
            svc.feedback.add(items)

    joined = svc.feedback.join("live").sort("request_id")
    assert joined["request_id"].to_list() == [f"req-{i}" for i in range(5)]  # none of req-9
    assert joined["label"].to_list() == ["class-2", "class-1", "class-2", "class-0", "class-1"]
    first = joined.row(0, named=True)
    assert first["label_ts"] == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    assert (joined["prediction"] == joined["label"]).sum() == 4  # realized accuracy 4/5
    left = svc.feedback.join("live", how="left")
    assert left.height == 10 and left["label"].null_count() == 5
    window = svc.feedback.join("live", T0, T0 + dt.timedelta(seconds=2))
    assert sorted(window["request_id"].to_list()) == ["req-0", "req-1", "req-2"]
    assert [e.payload for e in ws.events(kind="feedback.")] == [{"items": 5}, {"items": 2}]
