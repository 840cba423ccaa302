"""Deployments: create, route (canary/A-B), shadow, status, history, rollback, delete, route
tables that follow aliases, and the guard that keeps routed versions from retiring."""

from __future__ import annotations

import itertools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelcycle as mc
from modelcycle.core.errors import ConflictError, NotFoundError, RefError, UsageError
from modelcycle.deploy.service import DeploymentService


def deployments_of(ws: mc.Workspace) -> DeploymentService:
    return ws.deployments


def register_iris(ws: mc.Workspace, versions: int = 3, name: str = "iris") -> None:
    x, y = load_iris(return_X_y=True, as_frame=True)
    for i in range(versions):
        model = LogisticRegression(C=1.0 / (i + 1), max_iter=1000).fit(x, y)
        with ws.start_run("iris") as run:
            run.log_model(model, "model", input_example=x.head(3), register_as=name)


def _snapshot(svc: DeploymentService, name: str) -> dict[str, Any]:
    st = svc.status(name)
    return {
        "routes": [(r.ref, r.weight) for r in st.routes],
        "shadows": [s.ref for s in st.shadows],
        "generation": st.generation,
        "history": len(st.history),
    }


def test_create_route_shadow_status_history(workspace: mc.Workspace) -> None:
    ws = workspace
    register_iris(ws)
    ws.models.set_alias("iris", "champion", 1)
    svc = deployments_of(ws)

    st = svc.create("iris-live", "iris@champion", sticky_header="X-User-Id", reason="launch")
    assert st.model == "iris" and st.sticky_header == "x-user-id"
    assert [(r.ref, r.version, r.share) for r in st.routes] == [("iris@champion", 1, 1.0)]
    assert st.revision is not None and st.generation == 1 and not st.problems

    st = svc.route("iris-live", {"iris@1": 90, "iris@2": 10}, reason="canary v2")
    assert [(r.ref, r.version, r.weight, r.share) for r in st.routes] == [
        ("iris@1", 1, 90.0, 0.9),
        ("iris@2", 2, 10.0, 0.1),
    ]
    st = svc.shadow("iris-live", ["iris@3"])
    assert [(s.ref, s.version) for s in st.shadows] == [("iris@3", 3)]

    table = svc.route_table("iris-live")
    assert table.deployment == "iris-live" and list(table.endpoints) == ["iris-live"]
    endpoint = table.endpoints["iris-live"]
    assert endpoint.sticky_header == "x-user-id"
    assert [(r.target.resolved, r.weight) for r in endpoint.routes] == [
        ("iris@1", 90.0),
        ("iris@2", 10.0),
    ]
    for route in endpoint.routes:
        assert route.target.manifest_oid == ws.models.resolve(route.target.resolved).manifest_oid
    assert [s.resolved for s in endpoint.shadows] == ["iris@3"]
    assert table.revision == svc.status("iris-live").revision

    # A change that changes nothing records nothing.
    before = _snapshot(svc, "iris-live")
    svc.route("iris-live", {"iris@1": 90.0, "iris@2": 10.0})
    svc.shadow("iris-live", ["iris@3"])
    assert _snapshot(svc, "iris-live") == before

    history = svc.history("iris-live")
    assert [h.kind for h in history] == ["created", "route", "shadow"]
    assert [h.generation for h in history] == [1, 2, 3]
    assert all(h.actor == ws.actor for h in history)
    assert history[0].before is None and history[0].reason == "launch"
    assert history[1].before is not None
    assert history[1].before.routes == (("iris@champion", 100.0),)
    assert history[1].after.routes == (("iris@1", 90.0), ("iris@2", 10.0))
    assert history[1].reason == "canary v2"
    events = ws.events(kind="deployment.", subject="iris-live")
    assert [e.kind for e in events] == [
        "deployment.created",
        "deployment.routed",
        "deployment.shadowed",
    ]
    assert events[1].payload["after"]["routes"][1] == {"ref": "iris@2", "weight": 10.0}

    st = svc.remove_shadow("iris-live")
    assert st.shadows == [] and svc.history("iris-live")[-1].kind == "shadow"
    assert [d.name for d in svc.list()] == ["iris-live"]


def test_bad_routes_are_refused_and_change_nothing(workspace: mc.Workspace) -> None:
    ws = workspace
    register_iris(ws)
    register_iris(ws, versions=1, name="other")
    svc = deployments_of(ws)
    svc.create("live", "iris@1")
    svc.route("live", {"iris@1": 90, "iris@2": 10})
    ws.models.retire("iris@3", reason="bad")
    unchanged = _snapshot(svc, "live")

    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({}, UsageError, "no routes"),
        ({"iris@1": 100, "iris@2": 0}, UsageError, "must be positive"),
        ({"iris@1": -5}, UsageError, "must be positive"),
        ({"iris@1": math.nan}, UsageError, "must be positive"),
        ({"iris@1": math.inf}, UsageError, "must be positive"),
        ({"iris@1": "ten"}, UsageError, "not a number"),
        ({"iris@1": True}, UsageError, "not a number"),
        ({"iris@1": 50, "iris@01": 50}, UsageError, "given twice"),
        ({"iris@1": 90, "iris@9": 10}, NotFoundError, "iris@9 does not exist"),
        ({"iris@1": 90, "iris@nope": 10}, NotFoundError, "no version or alias 'nope'"),
        ({"iris@1": 90, "iris@3": 10}, ConflictError, "retired"),
        ({"iris@1": 90, "other@1": 10}, UsageError, "not a version of 'iris'"),
        ({"iris@1": 90, "bad name": 10}, RefError, "not a valid"),
    ]
    for weights, error, words in bad:
        with pytest.raises(error) as caught:
            svc.route("live", weights)
        assert words in str(caught.value), (weights, str(caught.value))
        assert _snapshot(svc, "live") == unchanged, weights

    with pytest.raises(ConflictError, match="retired"):
        svc.shadow("live", ["iris@3"])
    with pytest.raises(UsageError, match="already takes traffic"):
        svc.shadow("live", ["iris@2"])
    with pytest.raises(NotFoundError, match="has no shadow"):
        svc.remove_shadow("live", ["iris@1"])
    assert _snapshot(svc, "live") == unchanged

    with pytest.raises(ConflictError, match="exists already"):
        svc.create("live", "iris@1")
    with pytest.raises(ConflictError, match="retired"):
        svc.create("second", "iris@3")
    with pytest.raises(UsageError, match="not an HTTP header"):
        svc.create("second", "iris@1", sticky_header="x user")
    with pytest.raises(RefError):
        svc.create("no/slashes", "iris@1")
    with pytest.raises(NotFoundError, match="did you mean 'live'"):
        svc.route("lve", {"iris@1": 1})
    assert [d.name for d in svc.list()] == ["live"]
    assert [e.kind for e in ws.events(kind="deployment.")] == [
        "deployment.created",
        "deployment.routed",
    ]


def test_route_table_follows_an_alias_move(workspace: mc.Workspace) -> None:
    ws = workspace
    register_iris(ws, versions=2)
    ws.models.set_alias("iris", "champion", 1)
    svc = deployments_of(ws)
    svc.create("live", "iris@champion")
    first = svc.route_table("live")
    assert first.endpoints["live"].routes[0].target.resolved == "iris@1"
    assert svc.route_table("live").revision == first.revision  # nothing moved

    ws.models.set_alias("iris", "champion", 2)
    moved = svc.route_table("live")
    target = moved.endpoints["live"].routes[0].target
    assert (target.ref, target.resolved) == ("iris@champion", "iris@2")
    assert target.manifest_oid == ws.models.resolve("iris@2").manifest_oid
    assert moved.revision != first.revision
    # The deployment itself did not change: an alias move is not a deployment change.
    assert svc.status("live").generation == 1 and len(svc.history("live")) == 1

    ws.models.remove_alias("iris", "champion")
    st = svc.status("live")
    assert st.revision is None and "no version or alias 'champion'" in st.problems[0]
    with pytest.raises(ConflictError, match="cannot be served"):
        svc.route_table("live")


def test_rollback_restores_the_previous_routes(workspace: mc.Workspace) -> None:
    ws = workspace
    register_iris(ws)
    svc = deployments_of(ws)
    svc.create("live", "iris@1")
    with pytest.raises(ConflictError, match="no earlier routes"):
        svc.rollback("live")

    svc.route("live", {"iris@1": 90, "iris@2": 10})
    svc.shadow("live", ["iris@3"])
    svc.route("live", {"iris@2": 100}, reason="promote canary")
    st = svc.rollback("live", reason="v2 misbehaves")
    assert [(r.ref, r.weight) for r in st.routes] == [("iris@1", 90.0), ("iris@2", 10.0)]
    assert [s.ref for s in st.shadows] == ["iris@3"]  # shadows are not routes
    last = svc.history("live")[-1]
    assert (last.kind, last.reason) == ("rollback", "v2 misbehaves")
    # Rolling back the rollback returns to where it was, as `model rollback` does.
    st = svc.rollback("live")
    assert [(r.ref, r.weight) for r in st.routes] == [("iris@2", 100.0)]
    assert [h.kind for h in svc.history("live")] == [
        "created",
        "route",
        "shadow",
        "route",
        "rollback",
        "rollback",
    ]

    # A rollback to a version retired since is refused, and changes nothing.
    svc.remove_shadow("live")
    svc.route("live", {"iris@3": 100})
    ws.models.retire("iris@2")
    unchanged = _snapshot(svc, "live")
    with pytest.raises(ConflictError, match="cannot roll 'live' back"):
        svc.rollback("live")
    assert _snapshot(svc, "live") == unchanged


def test_routed_versions_refuse_retirement_until_deleted(workspace: mc.Workspace) -> None:
    ws = workspace
    register_iris(ws)
    ws.models.set_alias("iris", "champion", 2)
    svc = deployments_of(ws)
    svc.create("live", "iris@champion")
    svc.create("canary", "iris@1")
    svc.route("canary", {"iris@1": 95, "iris@champion": 5})
    svc.shadow("live", ["iris@3"])
    assert svc.routed_versions() == {("iris", 1), ("iris", 2), ("iris", 3)}

    with pytest.raises(ConflictError) as through_alias:
        svc.check_not_routed(ws.models.resolve("iris@2"))
    message = through_alias.value.message
    assert "iris@2 receives traffic from deployment" in message
    assert "live (iris@champion, 100%)" in message and "canary (iris@champion, 5%)" in message
    assert through_alias.value.details["deployments"] == ["canary", "live"]
    with pytest.raises(ConflictError, match=r"live \(shadow iris@3\)"):
        svc.check_not_routed(ws.models.resolve("iris@3"))
    with pytest.raises(ConflictError, match="receives traffic"):
        ws.models.retire("iris@3")  # the registry asks the deployments first
    assert ws.models.resolve("iris@3").stage == "registered"

    # Moving the alias moves the traffic: iris@2 is free, nothing else changed.
    ws.models.set_alias("iris", "champion", 1)
    svc.check_not_routed(ws.models.resolve("iris@2"))
    assert svc.routed_versions() == {("iris", 1), ("iris", 3)}

    svc.delete("live", reason="done")
    svc.delete("canary")
    assert svc.routed_versions() == set()
    for version in (1, 2, 3):
        svc.check_not_routed(ws.models.resolve(f"iris@{version}"))
    with pytest.raises(NotFoundError):
        svc.status("live")
    assert svc.list() == []
    assert svc.history("live")[-1].kind == "deleted"

    # The name can be used again; its history goes on.
    st = svc.create("live", "iris@3")
    assert st.generation == 4 and [r.version for r in st.routes] == [3]
    assert [h.kind for h in svc.history("live")] == [
        "created",
        "shadow",
        "deleted",
        "created",
    ]


def test_concurrent_changes_are_all_applied_in_turn(workspace: mc.Workspace) -> None:
    """Writers that race retry on a changed generation: no change is lost or merged."""
    ws = workspace
    register_iris(ws, versions=2)
    svc = deployments_of(ws)
    svc.create("live", "iris@1")
    writers = 12
    start = threading.Barrier(writers)

    def work(i: int) -> None:
        start.wait()
        svc.route("live", {"iris@1": 100 - i - 1, "iris@2": i + 1}, reason=f"writer {i}")

    with ThreadPoolExecutor(writers) as pool:
        for future in [pool.submit(work, i) for i in range(writers)]:
            future.result()  # re-raises a writer's error
    history = svc.history("live")
    assert [h.generation for h in history] == list(range(1, writers + 2))
    assert {h.reason for h in history[1:]} == {f"writer {i}" for i in range(writers)}
    for earlier, later in itertools.pairwise(history):
        assert later.before == earlier.after  # each change saw the one before it
    assert svc.status("live").routes[1].weight == history[-1].after.routes[1][1]

    # A change computed from an old generation is not applied.
    stale = svc.store.change("live", "route", history[0].after, expect_generation=1, reason="stale")
    assert stale is None and len(svc.history("live")) == writers + 1
