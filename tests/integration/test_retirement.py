"""The retirement policy: archived versions unused for a while are retired, then gc'd."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from integration_support import run_cli, run_json, stored_oids
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelcycle as mc
from modelcycle.core.errors import NotFoundError, UsageError
from modelcycle.data.manifest import load_manifest
from modelcycle.registry.retirement import last_prediction_at

POLICY = "retirement policy: archived 45 days ago, no traffic for 30 days"


def _register(ws: mc.Workspace, versions: int, name: str = "iris") -> None:
    x, y = load_iris(return_X_y=True, as_frame=True)
    for i in range(versions):
        model = LogisticRegression(C=1.0 / (i + 1), max_iter=1000).fit(x, y)
        with ws.start_run(name) as run:
            run.log_model(model, "model", input_example=x.head(3), register_as=name)


def _traffic(ws: mc.Workspace, model: str, version: int, *times: dt.datetime) -> None:
    """Log one prediction of ``model@version`` at each of ``times``, written at once."""
    logger = ws.deployments.logger(flush_seconds=3600)
    for i, ts in enumerate(times):
        logger.log({"model": model, "version": version, "ts": ts, "request_id": f"r{i}"})
    logger.close()
    assert ws.deployments.store.has_segments(model=model, version=version)


def _wired(ws: mc.Workspace) -> mc.Workspace:
    # The workspace wires the prediction log into the registry; until it does, do it here.
    if ws.models.last_traffic is None:
        ws.models.last_traffic = last_prediction_at(ws.deployments.store)
    return ws


def _package_oids(ws: mc.Workspace, ref: str) -> set[str]:
    v = ws.models.resolve(ref)
    return {v.manifest_oid} | load_manifest(ws.blobs.read_bytes(v.manifest_oid), ref).oids()


def _stages(ws: mc.Workspace, name: str = "iris") -> dict[int, str]:
    return {v.version: v.stage for v in ws.models.versions(name)}


def test_old_unused_versions_are_retired_and_gc_frees_their_packages(
    workspace: mc.Workspace,
) -> None:
    ws = _wired(workspace)
    _register(ws, 3)
    _register(ws, 1, name="other")
    for ref in ("iris@1", "iris@2", "other@1"):
        ws.models.transition(ref, "archived", reason="superseded")
    ws.models.transition("iris@3", "production")
    start = dt.datetime.now(dt.UTC)  # after the moves: "45 days ago" is exact to the day
    now = start + dt.timedelta(days=45)
    # iris@2 served until an hour ago; iris@1 never served.
    _traffic(ws, "iris", 2, start - dt.timedelta(hours=2), start - dt.timedelta(hours=1))
    retired_oids = _package_oids(ws, "iris@1") | _package_oids(ws, "iris@2")
    live_oids = _package_oids(ws, "iris@3") | _package_oids(ws, "other@1")
    doomed = retired_oids - live_oids
    assert doomed and doomed <= stored_oids(ws)
    run_1 = ws.models.resolve("iris@1").run_id

    report = ws.models.retire_stale(older_than_days=30, model="iris", now=now)

    assert not report.dry_run and report.now == now and report.older_than_days == 30
    assert [(i.ref, i.reason) for i in report.retired] == [
        ("iris@1", POLICY),
        ("iris@2", POLICY),
    ]
    assert report.skipped == []  # iris@3 is in production: not the policy's business
    assert _stages(ws) == {1: "retired", 2: "retired", 3: "production"}
    assert _stages(ws, "other") == {1: "archived"}  # another model than the one asked for
    last = ws.models.history("iris")[-1]
    assert (last.version, last.to_stage, last.reason) == (2, "retired", POLICY)
    event = ws.events(kind="model.stage", subject="iris@1")[-1]
    assert event.payload["to"] == "retired" and event.payload["reason"] == POLICY

    gc = ws.gc(grace_seconds=0)
    assert gc.removed >= len(doomed)
    after = stored_oids(ws)
    assert not doomed & after
    assert live_oids <= after
    # The metadata and lineage of a retired version stay; live versions still load.
    assert ws.models.resolve("iris@1").stage == "retired"
    lineage = ws.models.lineage("iris@1")
    assert lineage["run"]["id"] == run_1 and lineage["stage"] == "retired"
    x, _ = load_iris(return_X_y=True, as_frame=True)
    assert ws.models.load("iris@3").predict(x.head(4)).shape == (4,)
    assert ws.fsck().ok

    again = ws.models.retire_stale(older_than_days=30, now=now, reason="quarterly clean-up")
    assert [(i.ref, i.reason) for i in again.retired] == [
        ("other@1", f"{POLICY}; quarterly clean-up")
    ]
    assert again.skipped == []


def test_versions_in_use_or_recently_archived_are_kept(workspace: mc.Workspace) -> None:
    ws = _wired(workspace)
    _register(ws, 5)
    ws.deployments.create("live", "iris@2")
    for ref in ("iris@1", "iris@2", "iris@3", "iris@4"):
        ws.models.transition(ref, "archived")
    ws.models.transition("iris@5", "production")
    ws.models.set_alias("iris", "backup", 1)
    start = dt.datetime.now(dt.UTC)  # after the moves: "N days ago" is exact to the day
    now = start + dt.timedelta(days=45)
    _traffic(ws, "iris", 3, now - dt.timedelta(days=20), now - dt.timedelta(days=2))

    recent = ws.models.retire_stale(older_than_days=30, now=start + dt.timedelta(days=10))
    assert recent.retired == []
    assert [(i.ref, i.reason) for i in recent.skipped] == [
        (f"iris@{n}", "archived 10 days ago, less than 30 days") for n in (1, 2, 3, 4)
    ]
    assert all(
        i.archived_at is not None and start - dt.timedelta(minutes=5) < i.archived_at <= start
        for i in recent.skipped
    )

    before = (_stages(ws), ws.models.store.aliases(ws.models.resolve("iris").model_id))
    history, events = len(ws.models.history("iris")), ws.events(limit=1)[-1].id
    dry = ws.models.retire_stale(older_than_days=30, now=now, dry_run=True)
    assert dry.dry_run and dry.to_dict()["dry_run"] is True
    assert [(i.ref, i.reason) for i in dry.retired] == [("iris@4", POLICY)]
    kept = {i.ref: i.reason for i in dry.skipped}
    assert kept["iris@1"] == "alias backup points at it"
    assert kept["iris@2"].startswith("iris@2 receives traffic from deployment live")
    assert kept["iris@3"] == "a prediction was logged 2 days ago, within 30 days"
    assert list(kept) == ["iris@1", "iris@2", "iris@3"]
    # A dry run changes nothing: no stage, alias, transition or event.
    assert (_stages(ws), ws.models.store.aliases(ws.models.resolve("iris").model_id)) == before
    assert len(ws.models.history("iris")) == history
    assert ws.events(limit=1)[-1].id == events

    done = ws.models.retire_stale(older_than_days=30, now=now)
    assert [i.ref for i in done.retired] == ["iris@4"]
    assert {i.ref: i.reason for i in done.skipped} == kept
    assert _stages(ws) == {
        1: "archived",
        2: "archived",
        3: "archived",
        4: "retired",
        5: "production",
    }
    assert ws.models.resolve("iris@backup").version == 1

    # Traffic older than the period does not keep a version.
    short = ws.models.retire_stale(older_than_days=1, model="iris", now=now, dry_run=True)
    assert [i.ref for i in short.retired] == ["iris@3"]


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_bad_arguments_are_usage_errors(workspace: mc.Workspace) -> None:
    ws = _wired(workspace)
    assert ws.models.retire_stale(older_than_days=30).to_dict()["retired"] == []
    for bad in (0, -1, math.nan, math.inf, 1e12, True):
        with pytest.raises(UsageError) as e:
            ws.models.retire_stale(older_than_days=bad)
        assert "older_than_days" in e.value.message
    _register(ws, 1)
    with pytest.raises(NotFoundError) as typo:
        ws.models.retire_stale(older_than_days=30, model="irs")
    assert "did you mean 'iris'" in typo.value.message
    ws.models.last_traffic = None
    with pytest.raises(UsageError) as unwired:
        ws.models.retire_stale(older_than_days=30)
    assert "prediction log" in unwired.value.message


def test_retire_stale_cli(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    run_cli("init", ".", cwd=root)
    ws = mc.Workspace.open(root)
    try:
        _register(ws, 2)
        ws.models.transition("iris@1", "archived")
        ws.models.transition("iris@2", "archived")
        ws.models.set_alias("iris", "backup", 2)
    finally:
        ws.close()

    out = run_json("model", "retire-stale", "--older-than", "30d", "--json", cwd=root)
    assert out["dry_run"] is False and out["older_than_days"] == 30 and out["retired"] == []
    assert [s["ref"] for s in out["skipped"]] == ["iris@1", "iris@2"]
    for s in out["skipped"]:
        assert s["reason"].startswith("archived ") and s["reason"].endswith(
            " ago, less than 30 days"
        )
        assert dt.datetime.fromisoformat(s["archived_at"]) <= dt.datetime.now(dt.UTC)

    # 0.001m is 60 ms: the versions were archived before this process started.
    dry = run_cli(
        "model", "retire-stale", "--older-than", "0.001m", "--model", "iris", "--dry-run", cwd=root
    )
    assert "Would retire 1 version(s) of 'iris'; nothing was changed." in dry.stdout
    assert [v["stage"] for v in run_json("model", "versions", "iris", "--json", cwd=root)] == [
        "archived",
        "archived",
    ]
    done = run_cli("model", "retire-stale", "--older-than", "0.001m", "-m", "cleanup", cwd=root)
    assert "Retired 1 version(s); run `modelcycle gc` to free their packages." in done.stdout
    assert [v["stage"] for v in run_json("model", "versions", "iris", "--json", cwd=root)] == [
        "retired",
        "archived",
    ]
    history = run_json("model", "history", "iris", "--json", cwd=root)["history"]
    assert history[-1]["to"] == "retired" and history[-1]["version"] == 1
    assert history[-1]["reason"].startswith("retirement policy: archived ")
    assert history[-1]["reason"].endswith(", no traffic for 0.06 seconds; cleanup")

    for bad in ("30x", "30", "d", "0d"):
        err = run_cli("model", "retire-stale", "--older-than", bad, cwd=root, expect=2)
        assert f"--older-than {bad!r}" in err.stderr and "hint:" in err.stderr
    typo = run_cli(
        "model", "retire-stale", "--older-than", "30d", "--model", "irs", cwd=root, expect=3
    )
    assert "did you mean 'iris'" in typo.stderr
