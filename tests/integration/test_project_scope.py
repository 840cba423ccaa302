"""Project-scoped tokens (`token create --project`): a token limited to ``fraud-*`` sees
and changes only those names, through a remote workspace, the REST API and the pages,
and what it is refused leaves the server's stores as they were."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """Two projects' worth of records (churn-*, fraud-*) and tokens limited to fraud-*."""
    ws = mc.Workspace.create(tmp_path / "server")
    csv = tmp_path / "data.csv"
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
    } == owners.kinds
    for kind in owners.kinds - {"run", "monitor_name"}:
        assert owners.owner(kind, 987654) is None, kind
    assert owners.owner("run", "f" * 32) is None
    assert owners.owner("monitor_name", "nope") is None
