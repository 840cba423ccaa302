"""Tracked runs through the Python API, on both backend pairs."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from integration_support import write_iris

import modelcycle as mc
from modelcycle.core.errors import ConflictError, NotFoundError, UsageError
from modelcycle.store import runs as runs_store
from modelcycle.tracking import run as run_mod


@pytest.fixture(autouse=True)
def _fluent(workspace: mc.Workspace) -> object:
    mc.set_workspace(workspace)
    yield
    active = workspace.runs.active()
    if active is not None:
        active.end("killed")
    mc.set_workspace(None)


def test_fluent_run_records_everything(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    ws.datasets.add("iris", write_iris(tmp_path / "iris.csv", n=20))
    with mc.start_run(experiment="churn", name="first", tags={"team": "core"}) as run:
        assert mc.active_run() is run
        mc.log_params({"lr": 0.1, "model": "xgb"})
        mc.log_param("lr", 0.1)  # the same value again is fine
        for step in range(50):
            mc.log_metric("loss", 1.0 / (step + 1), step=step)
        mc.log_metrics({"auc": 0.91, "acc": 0.8}, step=49)
        mc.log_metric("weird", float("nan"), step=0)
        mc.log_metric("weird", float("inf"), step=1)
        mc.set_tag("stage", "dev")
        mc.log_input(ws.datasets.resolve("iris@1"))
        (tmp_path / "notes.txt").write_text("hello")
        assert mc.log_artifact(str(tmp_path / "notes.txt")) == ["notes.txt"]
    assert mc.active_run() is None
    stored = ws.runs.get(run.id)
    assert stored.status == "finished" and stored.name == "first"
    assert stored.experiment == "churn"
    assert stored.params == {"lr": "0.1", "model": "xgb"}
    assert stored.tags == {"team": "core", "stage": "dev"}
    assert stored.metrics["auc"] == pytest.approx(0.91)
    assert stored.metrics["loss"] == pytest.approx(1 / 50)
    assert math.isinf(stored.metrics["weird"])
    history = stored.metric_history("loss")
    assert [p.step for p in history] == list(range(50))
    assert history[3].value == pytest.approx(0.25)
    weird = stored.metric_history("weird")
    assert math.isnan(weird[0].value) and math.isinf(weird[1].value)
    assert stored.inputs() == [("iris@1", "train")]
    assert stored.artifacts() == [("notes.txt", 5)]
    assert stored.duration_s is not None and stored.duration_s >= 0
    env = stored.environment
    assert env["python"].count(".") == 2 and "packages" in env and "host" in env
    out = ws.runs.download_artifacts(run.id[:8], tmp_path / "dl")
    assert (out / "notes.txt").read_text() == "hello"
    with pytest.raises(NotFoundError) as missing:
        stored.metric_history("los")
    assert "did you mean 'loss'" in missing.value.message


def test_param_conflict_and_bad_names_are_clear(workspace: mc.Workspace) -> None:
    with mc.start_run(experiment="e") as run:
        run.log_param("alpha", 1)
        with pytest.raises(ConflictError) as err:
            run.log_param("alpha", 2)
        assert "'alpha'" in err.value.message and "'1'" in err.value.message
        with pytest.raises(UsageError):
            run.log_metric("bad\nname", 1.0)
        with pytest.raises(UsageError):
            mc.start_run(experiment="e")  # one is active already
    assert workspace.runs.get(run.id).params == {"alpha": "1"}


def test_failed_and_killed_runs(workspace: mc.Workspace) -> None:
    with pytest.raises(ZeroDivisionError), mc.start_run(experiment="e") as failing:
        mc.log_metric("x", 1.0)
        _ = 1 / 0
    stored = workspace.runs.get(failing.id)
    assert stored.status == "failed"
    assert "ZeroDivisionError" in (stored.error or "")
    assert stored.metrics == {"x": 1.0}  # logged before the crash, not lost
    with pytest.raises(KeyboardInterrupt), mc.start_run(experiment="e") as killed:
        raise KeyboardInterrupt
    assert workspace.runs.get(killed.id).status == "killed"


def test_no_point_lost_across_background_flushes(
    workspace: mc.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_mod, "FLUSH_POINTS", 997)  # many batches
    ws = workspace
    with ws.start_run("e") as run:
        for step in range(20_000):
            run.log_metric("a", step, step=step)
            if step % 5000 == 0:
                run.log_batch([("b", float(step + i), step + i, 1) for i in range(1000)])
        run.flush()
        # flush() means durable: a second connection sees every point while the run is open
        other = mc.Workspace.open(ws.root)
        try:
            assert len(other.runs.get(run.id).metric_history("a")) == 20_000
        finally:
            other.close()
    assert len(ws.runs.get(run.id).metric_history("b")) == 4000
    assert ws.runs.get(run.id).metrics["a"] == 19_999


def test_nested_runs_search_compare_move_delete(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    with ws.start_run("tune") as parent:
        for i, model in enumerate(["xgb", "lgbm", "xgb"]):
            with ws.start_run("tune", nested=True) as child:
                child.log_params({"model": model, "depth": i + 3})
                child.log_metrics({"auc": 0.8 + i / 20, "loss": 1 - i / 10})
        parent.log_metric("best_auc", 0.9)
    children = ws.runs.search("tune", parent=parent.id)
    assert len(children) == 3 and all(c.parent_id == parent.id for c in children)

    found = ws.runs.search("tune", filter="metrics.auc > 0.82 and params.model = 'xgb'")
    assert [r.params["depth"] for r in found] == ["5"]
    ordered = ws.runs.search("tune", filter="params.model LIKE '%g%'", order_by="metrics.auc DESC")
    assert [r.metrics["auc"] for r in ordered] == pytest.approx([0.9, 0.85, 0.8])
    assert ws.runs.search(filter="attributes.status = 'finished'", max_results=2)
    frame = ws.runs.search_frame("tune", order_by=["metrics.auc ASC"])
    assert list(frame["metrics.auc"].dropna()) == pytest.approx([0.8, 0.85, 0.9])
    with pytest.raises(UsageError) as bad:
        ws.runs.search("tune", filter="metrics.auc >> 1")
    assert "metrics.auc" in bad.value.message or "filter" in bad.value.message
    with pytest.raises(NotFoundError) as exp:
        ws.runs.search("tun")
    assert "did you mean 'tune'" in exp.value.message

    a, b = ordered[0].id, ordered[1].id
    cmp = ws.runs.compare([a, b])
    assert cmp["differing_params"] == ["depth", "model"]
    assert cmp["metrics"]["auc"] == pytest.approx([0.9, 0.85])

    moved = ws.runs.move(a, "finalists")
    assert moved.experiment == "finalists"
    assert [r.id for r in ws.runs.search("finalists")] == [a]

    art = tmp_path / "model.bin"
    art.write_bytes(b"\x00" * 1000)
    with ws.start_run("tune", parent=parent.id) as extra:
        extra.log_artifact(str(art), "weights")
    oid = ws.runs.store.artifacts(extra.id)[0][1]
    deleted = ws.runs.delete(parent.id)
    assert set(deleted) >= {parent.id, extra.id} and len(deleted) == 5
    with pytest.raises(NotFoundError):
        ws.runs.get(parent.id)
    report = ws.gc(grace_seconds=0)
    assert report.removed >= 1
    assert not ws.blobs.exists(oid)


def test_runs_from_threads_do_not_mix(workspace: mc.Workspace) -> None:
    ws = workspace
    ids: dict[int, str] = {}

    def work(n: int) -> None:
        with ws.start_run("threads") as run:  # each thread has its own active run
            for s in range(2000):
                run.log_metric("v", n, step=s)
            ids[n] = run.id

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(ids) == 4
    for n, rid in ids.items():
        points = ws.runs.get(rid).metric_history("v")
        assert len(points) == 2000 and {p.value for p in points} == {float(n)}


def test_a_script_that_never_ends_its_run_is_flushed_at_exit(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import modelcycle as mc
            mc.set_workspace({str(workspace.root)!r})
            run = mc.start_run(experiment="script")
            for s in range(30_000):
                mc.log_metric("loss", 1 / (s + 1), step=s)
            print(run.id)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    stored = workspace.runs.get(out.stdout.strip())
    assert stored.status == "finished"
    assert len(stored.metric_history("loss")) == 30_000


def test_downsampled_history_and_system_metrics(workspace: mc.Workspace) -> None:
    import time

    ws = workspace
    with ws.start_run("charts", system_metrics=0.2) as run:
        run.log_batch([("loss", float(s), s, 1000 + s) for s in range(10_000)])
        run.log_metric("loss", float("nan"), step=10_000)
        time.sleep(1.0)
    stored = ws.runs.get(run.id)
    down = stored.metric_history("loss", max_points=100)
    assert 95 <= len(down) <= 101
    # 10,001 steps in buckets of ceil(10001 / 100) = 101 steps: the first is 0..100
    assert down[0].step == 0 and down[0].value == pytest.approx(50.0)
    assert [p.step for p in down] == sorted(p.step for p in down)
    assert len(stored.metric_history("loss")) == 10_001
    cpu = stored.metric_history("system/cpu_percent")
    assert len(cpu) >= 2 and all(0 <= p.value <= 100 * 64 for p in cpu)
    assert stored.metrics["system/memory_used_mb"] > 0


def test_points_of_many_open_runs_are_all_written(
    workspace: mc.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A few rows per INSERT statement: every batch needs many statements and a short last one.
    monkeypatch.setattr(runs_store, "ROWS_PER_INSERT", 7)
    ws = workspace
    with ws.start_run("many") as root:
        runs = [ws.start_run("many", parent=root.id) for _ in range(12)]
        expected: dict[str, list[tuple[int, float]]] = {r.id: [] for r in runs}
        for step in range(1003):
            for n, run in enumerate(runs):
                value = n * 10_000.0 + step
                run.log_metric("v", value, step=step, timestamp=1000 + step)
                expected[run.id].append((step, value))
            if step % 250 == 0:
                runs[step % 12].flush()
        for n, run in enumerate(runs):
            # the last value is the highest step's, not the last logged; among equal steps
            # and times, the last logged
            run.log_metric("late", 1.0, step=9, timestamp=5)
            run.log_metric("late", 2.0, step=9, timestamp=5)
            run.log_metric("late", 3.0, step=2, timestamp=9)
            run.log_metric("odd", float("nan") if n % 2 else float("inf"), step=0)
        for run in reversed(runs):
            run.end()
    for run in runs:
        stored = ws.runs.get(run.id)
        assert stored.status == "finished"
        assert [(p.step, p.value) for p in stored.metric_history("v")] == expected[run.id]
        assert [p.timestamp for p in stored.metric_history("v")][:2] == [1000, 1001]
        assert stored.metrics["v"] == expected[run.id][-1][1]
        assert stored.metrics["late"] == 2.0
        assert len(stored.metric_history("late")) == 3
    odd = [ws.runs.get(r.id).metrics["odd"] for r in runs]
    assert all(math.isinf(v) for v in odd[0::2]) and all(math.isnan(v) for v in odd[1::2])


def test_points_logged_while_the_writer_writes_are_kept(workspace: mc.Workspace) -> None:
    ws = workspace
    with ws.start_run("race") as run:
        stop = threading.Event()

        def flush_all_the_time() -> None:
            while not stop.is_set():
                run.flush()

        flusher = threading.Thread(target=flush_all_the_time)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
        flusher.start()
        try:
            for step in range(30_000):
                run.log_metric("x", float(step), step=step)
        finally:
            stop.set()
            flusher.join(60)
            sys.setswitchinterval(interval)
    points = ws.runs.get(run.id).metric_history("x")
    assert [p.step for p in points] == list(range(30_000))
    assert all(p.value == p.step for p in points)


def test_a_failed_write_keeps_its_points_for_the_next(
    workspace: mc.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace
    with ws.start_run("fail") as run:
        run.log_metric("a", 1.0, step=0)
        run.log_params({"lr": 0.1})

        def disk_full(*args: object, **kwargs: object) -> None:
            raise OSError("disk full")

        with monkeypatch.context() as patch:
            patch.setattr(run.store, "write_batch", disk_full)
            with pytest.raises(OSError, match="disk full"):
                run.flush()
            run.log_metric("a", 2.0, step=1)
        run.flush()
        assert [(p.step, p.value) for p in ws.runs.get(run.id).metric_history("a")] == [
            (0, 1.0),
            (1, 2.0),
        ]
    stored = ws.runs.get(run.id)
    assert stored.params == {"lr": "0.1"} and stored.status == "finished"
    assert len(stored.metric_history("a")) == 2


def test_the_writer_is_woken_once_a_run_queues_flush_points(
    workspace: mc.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    class IdleWriter:  # records the wake-up call, writes nothing
        def __init__(self) -> None:
            self.wake = threading.Event()
            self.runs: set[object] = set()

        def add(self, run: object) -> None:
            self.runs.add(run)

        def discard(self, run: object) -> None:
            self.runs.discard(run)

    idle = IdleWriter()
    monkeypatch.setattr(run_mod, "_shared_writer", lambda: idle)
    monkeypatch.setattr(run_mod, "FLUSH_POINTS", 500)
    ws = workspace
    with ws.start_run("wake") as run:
        assert idle.runs == set()  # nothing to write yet
        for step in range(499):
            run.log_metric("x", float(step), step=step)
        assert idle.runs == {run} and not idle.wake.is_set()
        run.log_metric("x", 499.0, step=499)
        assert idle.wake.is_set()
    assert idle.runs == set()
    # the end wrote what the (idle) writer never did
    assert len(ws.runs.get(run.id).metric_history("x")) == 500


def test_the_writer_writes_without_a_flush(workspace: mc.Workspace) -> None:
    import time

    ws = workspace
    with ws.start_run("background") as run:
        for step in range(100):
            run.log_metric("x", float(step), step=step)
        deadline = time.monotonic() + 60
        while len(ws.runs.store.metric_history(run.id, "x")) < 100:
            assert time.monotonic() < deadline, "the background writer wrote nothing"
            time.sleep(0.05)
        assert run._points == []


def test_search_frame_columns_and_types(workspace: mc.Workspace) -> None:
    import pandas as pd

    ws = workspace
    with ws.start_run("frame", name="a") as a:
        a.log_params({"lr": 0.1, "model": "xgb"})
        a.log_metrics({"auc": 0.9, "loss": float("nan")})
    with ws.start_run("frame", name="b", tags={"team": "core"}) as b:
        b.log_metric("auc", 0.7)
    running = ws.start_run("frame", name="c")
    try:
        frame = ws.runs.search_frame("frame", order_by=["metrics.auc DESC"])
        runs = ws.runs.search("frame", order_by=["metrics.auc DESC"])
    finally:
        running.end()
    assert list(frame.columns) == [
        "run_id",
        "experiment",
        "name",
        "status",
        "start_time",
        "end_time",
        "metrics.auc",
        "metrics.loss",
        "params.lr",
        "params.model",
        "tags.team",
    ]
    assert frame["run_id"].tolist() == [r.id for r in runs] == [a.id, b.id, running.id]
    assert frame["name"].tolist() == ["a", "b", "c"]  # no auc: last
    assert frame["status"].tolist() == ["finished", "finished", "running"]
    assert frame["experiment"].tolist() == ["frame"] * 3
    assert str(frame["start_time"].dtype) == "datetime64[us, UTC]"
    assert frame["start_time"].tolist() == [
        pd.Timestamp(r.start_time, unit="ms", tz="UTC") for r in runs
    ]
    assert frame["end_time"].isna().tolist() == [False, False, True]
    assert frame.loc[0, "end_time"] == pd.Timestamp(runs[0].end_time, unit="ms", tz="UTC")
    assert frame["metrics.auc"].tolist()[:2] == [0.9, 0.7]
    assert math.isnan(frame.loc[2, "metrics.auc"])
    assert frame["metrics.loss"].isna().all()  # NaN logged, or not logged
    assert frame.loc[0, "params.lr"] == "0.1" and frame.loc[0, "params.model"] == "xgb"
    assert frame["params.lr"].isna().tolist() == [False, True, True]
    assert frame["tags.team"].isna().tolist() == [True, False, True]
    assert frame.loc[1, "tags.team"] == "core"

    filtered = ws.runs.search_frame("frame", filter="metrics.auc > 0.8")
    assert filtered["name"].tolist() == ["a"]
    empty = ws.runs.search_frame("frame", filter="metrics.auc > 2")
    assert len(empty) == 0
    assert list(empty.columns) == list(frame.columns)[:6]
