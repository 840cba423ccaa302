"""The model registry: register, alias, promote, history, rollback, retire, gc, package."""

from __future__ import annotations

import datetime as dt
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from integration_support import run_cli, run_json
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelcycle as mc
from modelcycle.core.errors import ConflictError, NotFoundError


def _log(ws: mc.Workspace, c: float, register_as: str | None = "iris") -> tuple[str, object]:
    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    with ws.start_run("iris") as run:
        run.log_metric("accuracy", float(model.score(x, y)))
        result = run.log_model(model, "model", input_example=x.head(3), register_as=register_as)
    return run.id, result


def test_register_promote_history_rollback_retire_gc(workspace: mc.Workspace) -> None:
    ws = workspace
    _, v1 = _log(ws, 1.0)
    _, v2 = _log(ws, 0.1)
    assert v1.ref == "iris@1" and v2.ref == "iris@2"  # type: ignore[attr-defined]
    shown = ws.models.show("iris@2")
    assert shown["version"] == 2 and shown["stage"] == "registered"
    assert shown["metrics"]["accuracy"] > 0.8
    assert "model.toml" in [f["path"] for f in shown["files"]]
    assert shown["signature"] is not None

    ws.models.transition("iris@1", "production", reason="first release")
    time.sleep(0.05)
    t_v1 = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    result = ws.models.transition("iris@2", "production", reason="better")
    assert result["archived"] == ["iris@1"]
    assert ws.models.resolve("iris@1").stage == "archived"
    t_v2 = dt.datetime.now(dt.UTC)
    assert ws.models.in_stage_at("iris", t_v1) == 1
    assert ws.models.in_stage_at("iris", t_v2) == 2
    assert ws.models.in_stage_at("iris", t_v1 - dt.timedelta(hours=1)) is None

    ws.models.set_alias("iris", "champion", 2)
    assert ws.models.resolve("iris@champion").version == 2
    with pytest.raises(NotFoundError):
        ws.models.set_alias("iris", "champion", 9)

    back = ws.models.rollback("iris", reason="v2 misbehaves")
    assert back == {"from": "iris@2", "to": "iris@1"}
    assert ws.models.resolve("iris@1").stage == "production"
    history = ws.models.history("iris")
    assert [h.to_stage for h in history if h.kind == "stage"] == [
        "production",
        "archived",
        "production",
        "archived",
        "production",
    ]
    assert history[-1].reason == "v2 misbehaves" or any(
        h.reason == "v2 misbehaves" for h in history
    )

    with pytest.raises(ConflictError):
        ws.models.retire("iris@1")  # in production
    files = ws.models.show("iris@2")["files"]
    retired = ws.models.retire("iris@2", reason="superseded")
    assert retired.ref == "iris@2"
    assert "champion" not in ws.models.store.aliases(retired.model_id)
    with pytest.raises(ConflictError) as again:
        ws.models.transition("iris@2", "production")
    assert "retired" in again.value.message
    report = ws.gc(grace_seconds=0)
    assert report.removed >= 1
    # iris@1 stays loadable; iris@2's model file is gone, its metadata stays
    loaded = ws.models.load("iris@1")
    x, _ = load_iris(return_X_y=True, as_frame=True)
    assert loaded.predict(x.head(5)).shape == (5,)
    assert ws.models.resolve("iris@2").stage == "retired"
    assert len(files) >= 3
    assert ws.fsck().ok


def test_package_and_load_model(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    _log(ws, 1.0)
    out = ws.models.package("iris@latest", tmp_path / "pkg")
    meta = tomllib.loads((out / "model.toml").read_text())
    assert meta["flavor"] == "sklearn"
    assert (out / "Dockerfile").is_file() and (out / "requirements.txt").is_file()
    mc.set_workspace(ws)
    try:
        model = mc.load_model("iris@1")
    finally:
        mc.set_workspace(None)
    x, y = load_iris(return_X_y=True, as_frame=True)
    assert np.mean(model.predict(x) == y) > 0.9
    with pytest.raises(ConflictError):
        ws.models.package("iris@1", out)  # not empty


def test_registry_errors(workspace: mc.Workspace) -> None:
    ws = workspace
    run_id, _ = _log(ws, 1.0, register_as=None)
    with pytest.raises(NotFoundError) as no_pkg:
        ws.models.register(run_id, "iris", path="models/other")
    assert "models/model" in (no_pkg.value.hint or "")
    v = ws.models.register(run_id, "iris")
    assert v.ref == "iris@1"
    with pytest.raises(NotFoundError) as typo:
        ws.models.resolve("irs@1")
    assert "did you mean 'iris'" in typo.value.message
    with pytest.raises(NotFoundError):
        ws.models.resolve("iris@champion")
    with pytest.raises(ConflictError):
        ws.models.rollback("iris")


def test_model_cli(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    run_cli("init", ".", cwd=root)
    ws = mc.Workspace.open(root)
    try:
        run_a, _ = _log(ws, 1.0, register_as=None)
        run_b, _ = _log(ws, 0.2, register_as=None)
    finally:
        ws.close()
    assert (
        run_json("model", "register", run_a, "--name", "iris", "--json", cwd=root)["ref"]
        == "iris@1"
    )
    run_cli("model", "register", run_b[:8], "--name", "iris", cwd=root)
    run_cli("model", "promote", "iris@1", "--to", "production", cwd=root)
    run_cli("model", "promote", "iris@2", "--to", "production", "-m", "newer", cwd=root)
    run_cli("model", "alias", "set", "iris", "champion", "2", cwd=root)
    shown = run_json("model", "show", "iris@champion", "--json", cwd=root)
    assert shown["version"] == 2 and shown["stage"] == "production"
    assert "champion" in run_cli("model", "list", cwd=root).stdout
    out = run_cli("model", "rollback", "iris", cwd=root).stdout
    assert "iris@2 -> iris@1" in out
    hist = run_json(
        "model", "history", "iris", "--at", dt.datetime.now(dt.UTC).isoformat(), "--json", cwd=root
    )
    assert hist["production_at"] == 1
    run_cli("model", "package", "iris@1", tmp_path / "pkg", cwd=root)
    assert (tmp_path / "pkg" / "model.toml").is_file()
    run_cli("model", "retire", "iris@2", cwd=root)
    bad = run_cli("model", "promote", "iris@2", "--to", "staging", cwd=root, expect=4)
    assert "retired" in bad.stderr
    missing = run_cli("model", "alias", "set", "iris", "best", "7", cwd=root, expect=3)
    assert "iris@7 does not exist" in missing.stderr
    stage = run_cli("model", "promote", "iris@1", "--to", "producton", cwd=root, expect=2)
    assert "did you mean 'production'" in stage.stderr


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_concurrent_first_loads_of_a_version_share_one_cached_package(
    workspace: mc.Workspace,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _log(workspace, 1.0)
    x, _ = load_iris(return_X_y=True, as_frame=True)
    with ThreadPoolExecutor(8) as pool:
        loaded = list(pool.map(lambda _: workspace.models.load("iris@1"), range(8)))
    first = loaded[0].predict(x)
    assert all((m.predict(x) == first).all() for m in loaded)
    cache = workspace.models.cache_dir
    assert not [p for p in cache.iterdir() if p.name.endswith(".mc-tmp")]
