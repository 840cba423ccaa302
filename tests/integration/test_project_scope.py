"""Project-scoped tokens (`token create --project`): a token limited to ``fraud-*`` sees
and changes only those names, through a remote workspace, the REST API and the pages,
and what it is refused leaves the server's stores as they were."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from integration_support import run_cli, run_json
from platform_support import serve_app
from sklearn.linear_model import LogisticRegression

import modelcycle as mc
from modelcycle.server import create_app

LABELS = {"kind": "classification", "labels": ["no", "yes"]}


@dataclass
class Platform:
    ws: mc.Workspace
    url: str
    tokens: dict[str, str]
    runs: dict[str, str]
    csv: Path


def _frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": (x[:, 0] > 0).astype(int)})


def _seed(ws: mc.Workspace, csv: Path) -> dict[str, str]:
    """Two projects' worth of records, churn-* and fraud-*; their runs' ids."""
    frame = _frame()
    frame.to_csv(csv, index=False)
    runs: dict[str, str] = {}
    for project in ("churn", "fraud"):
        ws.datasets.add(f"{project}-tx", csv)
        with ws.start_run(f"{project}-train") as run:
            run.log_metric("acc", 0.9)
            model = LogisticRegression().fit(frame[["a", "b"]], frame["y"])
            run.log_model(model, "model", input_example=frame[["a", "b"]].head(2))
        runs[project] = run.id
        ws.models.register(run.id, f"{project}-model")
        ws.labels.create(f"{project}-labels", f"{project}-tx@1", LABELS)
        ws.deployments.create(f"{project}-api", f"{project}-model@1")
        ws.monitors.create(
            f"{project}-drift", deployment=f"{project}-api", reference=f"{project}-tx@1"
        )
    return runs


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """Two projects' worth of records (churn-*, fraud-*) and tokens limited to fraud-*."""
    ws = mc.Workspace.create(tmp_path / "server")
    csv = tmp_path / "data.csv"
    runs = _seed(ws, csv)
    tokens = {
        "admin": ws.tokens.create("root", role="admin")[1],
        "editor": ws.tokens.create("fraud-ci", role="editor", projects=["fraud-*"])[1],
        "reader": ws.tokens.create("fraud-viewer", role="reader", projects=["fraud-*"])[1],
        "scoped-admin": ws.tokens.create("fraud-lead", role="admin", projects=["fraud-*"])[1],
    }
    with serve_app(create_app(ws.root, allow_open=False)) as url:
        yield Platform(ws, url, tokens, runs, csv)
    ws.close()


def test_a_scoped_remote_workspace_sees_and_changes_only_its_projects(
    platform: Platform, tmp_path: Path
) -> None:
    server = platform.ws
    before = {d["name"] for d in server.datasets.catalog()}
    events_before = len(server.events(limit=10_000))
    with mc.Workspace.connect(
        platform.url, token=platform.tokens["editor"], cache=tmp_path / "client"
    ) as ws:
        # Lists leave the other project out.
        assert [d["name"] for d in ws.datasets.catalog()] == ["fraud-tx"]
        assert [m["name"] for m in ws.models.models()] == ["fraud-model"]
        assert {r.experiment for r in ws.runs.search()} == {"fraud-train"}
        assert [p["name"] for p in ws.labels.projects()] == ["fraud-labels"]
        assert [d.name for d in ws.deployments.list()] == ["fraud-api"]
        assert [m.name for m in ws.monitors.list()] == ["fraud-drift"]
        assert ws.events(limit=1000), "its own project's events are shown"
        assert all(e.subject.startswith("fraud-") for e in ws.events(limit=1000))

        # Its own project reads and changes as usual.
        assert ws.datasets.load("fraud-tx").shape == (60, 3)
        added = ws.datasets.add("fraud-more", platform.csv)
        assert added.version.ref == "fraud-more@1"
        with ws.start_run("fraud-train") as run:
            run.log_metric("acc", 0.95)
        assert ws.runs.get(platform.runs["fraud"]).experiment == "fraud-train"

        # The other project is refused, by name and by id, and nothing changes.
        with pytest.raises(mc.PermissionDeniedError, match="'churn-tx' is outside"):
            ws.datasets.load("churn-tx")
        with pytest.raises(mc.PermissionDeniedError, match="outside"):
            ws.datasets.add("churn-more", platform.csv)
        with pytest.raises(mc.PermissionDeniedError, match="outside"):
            ws.runs.get(platform.runs["churn"])
        with pytest.raises(mc.PermissionDeniedError, match="outside"):
            ws.start_run("churn-train")
        with pytest.raises(mc.PermissionDeniedError, match="outside"):
            ws.models.resolve("churn-model@1")
        with pytest.raises(mc.PermissionDeniedError, match="outside"):
            ws.models.register(platform.runs["churn"], "fraud-stolen")
        with pytest.raises(mc.PermissionDeniedError, match="outside"):
            ws.labels.create("fraud-copy", "churn-tx@1", LABELS)
        with pytest.raises(mc.PermissionDeniedError, match="outside"):
            ws.deployments.route("churn-api", {"fraud-model@1": 100})
        with pytest.raises(mc.PermissionDeniedError, match="outside"):
            ws.monitors.results("churn-drift")
    assert {d["name"] for d in server.datasets.catalog()} == before | {"fraud-more"}
    assert [m["name"] for m in server.models.models()] == ["churn-model", "fraud-model"]
    assert {p["name"] for p in server.labels.projects()} == {"churn-labels", "fraud-labels"}
    assert server.runs.search(experiment="churn-train")[0].id == platform.runs["churn"]
    assert [r.ref for r in server.deployments.status("churn-api").routes] == ["churn-model@1"]
    new_events = server.events(limit=10_000)[events_before:]
    assert new_events and all(e.actor == "token:fraud-ci" for e in new_events)
    assert not any("churn" in e.subject for e in new_events)


def test_the_rest_api_and_pages_obey_the_scope(platform: Platform) -> None:
    reader = {"Authorization": f"Bearer {platform.tokens['reader']}"}
    admin = {"Authorization": f"Bearer {platform.tokens['admin']}"}
    with httpx.Client(base_url=platform.url, timeout=30) as http:
        datasets = http.get("/api/v1/datasets", headers=reader)
        assert datasets.status_code == 200
        assert [d["name"] for d in datasets.json()] == ["fraud-tx"]
        assert len(http.get("/api/v1/datasets", headers=admin).json()) == 2
        refused = http.get("/api/v1/datasets/churn-tx", headers=reader)
        assert refused.status_code == 403
        body = refused.json()
        assert body["error"] == "PermissionDeniedError" and "fraud-*" in body["message"]
        assert body["details"]["projects"] == ["fraud-*"]
        assert http.get("/api/v1/datasets/fraud-tx", headers=reader).status_code == 200
        assert [m["name"] for m in http.get("/api/v1/models", headers=reader).json()] == [
            "fraud-model"
        ]
        runs = http.get("/api/v1/runs", headers=reader).json()
        assert runs and {r["experiment"] for r in runs} == {"fraud-train"}
        assert http.get(f"/api/v1/runs/{platform.runs['churn']}", headers=reader).status_code == 403
        whoami = http.get("/api/v1/whoami", headers=reader).json()
        assert whoami["projects"] == ["fraud-*"]

        # Pages: the list leaves churn out, its page is refused.
        page = http.get("/datasets", headers={**reader, "Accept": "text/html"})
        assert page.status_code == 200
        assert "fraud-tx" in page.text and "churn-tx" not in page.text
        models = http.get("/models", headers={**reader, "Accept": "text/html"})
        assert "fraud-model" in models.text and "churn-model" not in models.text
        assert (
            http.get("/datasets/churn-tx", headers={**reader, "Accept": "text/html"}).status_code
            == 403
        )
        for path in (
            "/",
            "/runs",
            "/labeling",
            "/audit",
            "/deployments",
            "/deployments/fraud-api",
            "/monitors",
            "/monitors/fraud-drift",
            "/alerts",
        ):
            shown = http.get(path, headers={**reader, "Accept": "text/html"})
            assert shown.status_code == 200, (path, shown.text[:500])
            assert "churn-" not in shown.text, path
        assert "churn-" in http.get("/audit", headers={**admin, "Accept": "text/html"}).text

        # Webhook notices only for its own projects' changes.
        editor = {"Authorization": f"Bearer {platform.tokens['editor']}"}
        notice = {"kind": "model.stage", "payload": {"to": "production"}}
        spoof = http.post(
            "/api/v1/notify", json={**notice, "subject": "churn-model@1"}, headers=editor
        )
        assert spoof.status_code == 403
        own = http.post(
            "/api/v1/notify", json={**notice, "subject": "fraud-model@1"}, headers=editor
        )
        assert own.status_code == 202

        # A scoped admin cannot mint an unscoped token, nor list tokens.
        lead = {"Authorization": f"Bearer {platform.tokens['scoped-admin']}"}
        minted = http.post("/api/v1/tokens", json={"name": "escape", "role": "admin"}, headers=lead)
        assert minted.status_code == 403 and "closed to such tokens" in minted.json()["message"]
        assert http.get("/api/v1/tokens", headers=lead).status_code == 403
    assert "escape" not in {t.name for t in platform.ws.tokens.list()}


def test_token_create_takes_project_patterns(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    run_cli("init", root, cwd=tmp_path)
    made = run_cli(
        "token",
        "create",
        "ci",
        "--role",
        "editor",
        "--project",
        "fraud-*",
        "--project",
        "ops",
        cwd=root,
    )
    assert "projects fraud-*, ops" in made.stdout
    listed = run_json("token", "list", "--json", cwd=root)
    assert [t["projects"] for t in listed] == [["fraud-*", "ops"]]
    bad = run_cli("token", "create", "x", "--project", "*", cwd=root, expect=2)
    assert "matches every name" in bad.stderr
    bad = run_cli("token", "create", "x", "--project", "a/b", cwd=root, expect=2)
    assert "is not valid" in bad.stderr
    with mc.Workspace.open(root) as ws:
        assert [t.name for t in ws.tokens.list()] == ["ci"]


def test_owners_name_what_each_record_hangs_under(workspace: mc.Workspace, tmp_path: Path) -> None:
    """The id lookups scoping relies on, on SQLite and on PostgreSQL."""
    from modelcycle.store.owners import Owners

    ws = workspace
    frame = _frame()
    csv = tmp_path / "d.csv"
    frame.to_csv(csv, index=False)
    version = ws.datasets.add("fraud-tx", csv).version
    with ws.start_run("fraud-train") as run:
        model = LogisticRegression().fit(frame[["a", "b"]], frame["y"])
        run.log_model(model, "model", input_example=frame[["a", "b"]].head(2))
    registered = ws.models.register(run.id, "fraud-model")
    ws.deployments.create("fraud-api", "fraud-model@1")
    ws.monitors.create("drift", deployment="fraud-api", reference="fraud-tx@1")
    ws.labels.create("fraud-labels", "fraud-tx@1", LABELS)
    stores = ws.stores
    owners = Owners(ws.store).remembering()
    expected = {
        ("dataset", stores["metadata"].get_dataset("fraud-tx").id): "fraud-tx",
        ("dataset_version", version.id): "fraud-tx",
        ("run", run.id): "fraud-train",
        ("experiment", stores["runs"].experiment_id("fraud-train", create=False)): "fraud-train",
        ("model", registered.model_id): "fraud-model",
        ("model_version", registered.id): "fraud-model",
        ("deployment", stores["deployments"].get("fraud-api").id): "fraud-api",
        ("monitor", stores["monitors"].get("drift").id): "fraud-api",
        ("monitor_name", "drift"): "fraud-api",
        ("label_project", stores["labels"].get_project("fraud-labels").id): "fraud-labels",
    }
    for (kind, key_), name in expected.items():
        assert owners.owner(kind, key_) == name, kind
    assert {kind for kind, _ in expected} | {
        "evaluation",
        "alert",
        "monitor_result",
        "maintenance",
        "pipeline_run",
        "sketch",
        "label_task",
    } == owners.kinds
    for kind in owners.kinds - {"run", "monitor_name"}:
        assert owners.owner(kind, 987654) is None, kind
    assert owners.owner("run", "f" * 32) is None
    assert owners.owner("monitor_name", "nope") is None


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[mc.Workspace, mc.Workspace]]:
    """A seeded workspace, and the same workspace opened as the server opens it."""
    from modelcycle.core.config import WorkspaceConfig

    ws = mc.Workspace.create(tmp_path / "ws")
    _seed(ws, tmp_path / "data.csv")
    server = mc.Workspace(WorkspaceConfig.load(ws.root), guarded=True)
    try:
        yield ws, server
    finally:
        server.close()
        ws.close()


def _fraud_only() -> Any:
    from modelcycle.access.scope import Scope, limited_to

    return limited_to(Scope("fraud-ci", ("fraud-*",)))


def _fraud_monitor(monitors: Any, name: str, spec: dict[str, Any], now: Any) -> Any:
    """A monitor of the fraud deployment, created through the (maybe guarded) store."""
    return monitors.create(
        name=name,
        deployment="fraud-api",
        reference="fraud-tx@1",
        spec=spec,
        schedule_seconds=60.0,
        window_seconds=60.0,
        next_run_at=now,
    )


def _add_result(store: Any, monitor: Any, changes: Any, breaches: list[str] | None = None) -> Any:
    """A monitor result at this moment, with ``changes`` to its alerts."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    return store.add_result(
        monitor,
        started_at=now,
        window_start=now,
        window_end=now,
        status="ok",
        rows=1,
        values={},
        breaches=breaches or [],
        detail_oid=None,
        snapshot=None,
        error=None,
        changes=changes,
    )


def test_records_sent_whole_are_judged_by_their_ids_and_their_names(
    guarded: tuple[mc.Workspace, mc.Workspace],
) -> None:
    """What a client sends about one project's records cannot touch another's: ids
    inside changes, names carried by records, refs routed to, refs events name."""
    import dataclasses
    import datetime as dt

    from modelcycle.store.deployments import DeploymentState, NewSegment
    from modelcycle.store.monitors import AlertChanges, NewAlert

    ws, server = guarded
    stores = server.stores
    fraud_v = ws.stores["metadata"].version_by_number(
        ws.stores["metadata"].get_dataset("fraud-tx").id, 1
    )
    churn_monitor = ws.stores["monitors"].get("churn-drift")
    fraud_monitor = ws.stores["monitors"].get("fraud-drift")
    now = dt.datetime.now(dt.UTC)
    breach = NewAlert("drift_share > 0.3", "drift_share", ">", 0.3, 0.9, "warning", "drift")
    _, fired = _add_result(
        ws.stores["monitors"], churn_monitor, AlertChanges(fire=[breach]), ["drift_share > 0.3"]
    )
    churn_task_project = ws.stores["labels"].get_project("churn-labels").id
    churn_task = ws.stores["labels"].tasks(churn_task_project)[0]
    ws.labels.decide("churn-labels", churn_task.key, "yes", reviewer="ana")
    fraud_project = ws.stores["labels"].get_project("fraud-labels")
    events_before = len(ws.events(limit=10_000))

    with _fraud_only():
        refused = {
            "resolve churn's alert": lambda: _add_result(
                stores["monitors"], fraud_monitor, AlertChanges(resolve=[fired[0].id])
            ),
            "a monitor named as churn's": lambda: _add_result(
                stores["monitors"],
                dataclasses.replace(fraud_monitor, name="churn-drift"),
                AlertChanges(),
            ),
            "decide churn's task": lambda: stores["labels"].decide(
                fraud_project, churn_task.id, "no", "mallory"
            ),
            "a version named as churn's": lambda: stores["metadata"].set_tag(
                dataclasses.replace(fraud_v, dataset="churn-tx"), "gold"
            ),
            "route to churn's model": lambda: stores["deployments"].change(
                "fraud-api",
                "route",
                DeploymentState((("churn-model@1", 100.0),)),
                expect_generation=1,
                reason=None,
            ),
            "traffic logged as churn's model": lambda: stores["deployments"].add_segments(
                [NewSegment("fraud-api", "churn-model", 1, now, now, 1, 1, "0" * 64)]
            ),
            "an evaluation of churn's model": lambda: stores["evaluations"].add(
                model_version_id=ws.models.resolve("fraud-model@1").id,
                model_ref="churn-model@1",
                dataset_version_id=fraud_v.id,
                options_key="k",
                options={},
                task="classification",
                num_rows=1,
                metrics={},
                result_oid="0" * 64,
                seconds=0.0,
            ),
            "a monitor writing a file on the server": lambda: _fraud_monitor(
                stores["monitors"],
                "fraud-watch",
                {"channels": [{"type": "file", "path": "modelcycle.toml"}]},
                now,
            ),
            "a monitor fetching a URL": lambda: _fraud_monitor(
                stores["monitors"],
                "fraud-watch",
                {"channels": [], "options": {"metrics_url": "http://10.0.0.1/"}},
                now,
            ),
            "a monitor created under a churn name": lambda: _fraud_monitor(
                stores["monitors"], "churn-watch", {"channels": []}, now
            ),
            "start maintenance": lambda: stores["maintenance"].start(
                deployment="fraud-api",
                model="fraud-model",
                trigger={},
                policy={"retrain": {"train": {"train": "churn-tx@1"}}},
                champion=None,
                min_interval_seconds=0.0,
                now=now,
                lease_owner="x",
                lease_seconds=60.0,
            ),
        }
        for what, attempt in refused.items():
            with pytest.raises(mc.PermissionDeniedError):
                attempt()
                pytest.fail(f"not refused: {what}")

    alert = ws.stores["monitors"].alert(fired[0].id)
    assert alert is not None and alert.resolved_at is None
    assert list(ws.stores["labels"].decisions(churn_task_project).values()) == [("yes", "ana")]
    assert ws.stores["metadata"].tags(fraud_v.dataset_id) == {}
    assert [r.ref for r in ws.deployments.status("fraud-api").routes] == ["fraud-model@1"]
    assert not ws.stores["deployments"].has_segments(model="churn-model")
    assert ws.stores["maintenance"].runs() == []
    assert [m.name for m in ws.stores["monitors"].live()] == ["churn-drift", "fraud-drift"]
    assert len(ws.events(limit=10_000)) == events_before

    # Without channels or a metrics URL, a project token's monitor is its own.
    with _fraud_only():
        _fraud_monitor(
            stores["monitors"],
            "fraud-quiet",
            {"channels": [], "options": {"metrics_url": None}},
            now,
        )
        stores["monitors"].delete("fraud-quiet")
        with pytest.raises(mc.UsageError, match="limit counts from 1"):
            stores["metadata"].events(limit=0)


def test_scoped_listings_fill_their_pages(guarded: tuple[mc.Workspace, mc.Workspace]) -> None:
    """A page of events holds ``limit`` events in scope however many of other
    projects' are newer, and paging back goes through the scope's events only."""
    ws, server = guarded
    for i in range(300):
        ws.store.record_event("dataset.validated", "churn-tx@1", {"i": i})
        if i % 60 == 0:
            ws.store.record_event("dataset.validated", "fraud-tx@1", {"i": i})
    ws.store.record_event("pipeline.run.finished", "9" * 25, {})  # no such run
    fraud = [e for e in ws.events(limit=10_000) if e.subject.startswith("fraud-")]
    assert len(fraud) >= 12
    with _fraud_only():
        page = server.events(limit=5)
        older = server.events(limit=5, offset=5)
    assert [e.id for e in page] == [e.id for e in fraud[-5:]]
    assert [e.id for e in older] == [e.id for e in fraud[-10:-5]]


def test_a_policy_starts_only_on_its_own_deployments_alerts(
    guarded: tuple[mc.Workspace, mc.Workspace],
) -> None:
    """Monitor names can be taken again once deleted: a policy naming a monitor reacts
    to that monitor's alerts on its own deployment only, not to a namesake elsewhere."""
    import datetime as dt

    from modelcycle.store.monitors import AlertChanges, NewAlert

    ws, _ = guarded
    ws.stores["maintenance"].set_policy(
        "churn-api",
        {
            "trigger": {"monitors": ["shared-watch"]},
            "retrain": {"train": {"model": "sklearn.linear_model.LogisticRegression"}},
            "evaluate": {"data": "churn-tx@1", "gate": {"rules": []}},
        },
    )
    now = dt.datetime.now(dt.UTC)
    namesake = _fraud_monitor(ws.stores["monitors"], "shared-watch", {"channels": []}, now)
    breach = NewAlert("rows >= 0", "rows", ">=", 0.0, 1.0, "warning", "rows")
    _add_result(ws.stores["monitors"], namesake, AlertChanges(fire=[breach]), ["rows >= 0"])
    (policy,) = ws.stores["maintenance"].policies()
    assert ws.stores["monitors"].alerts(open_only=True)[0].monitor == "shared-watch"
    assert ws.maintenance._new_alert(policy) is None
