"""The platform server's JSON API in-process: tokens and roles on every route, the audit
actor, error bodies from the shared error table, and the committed OpenAPI document."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from integration_support import run_cli
from platform_support import serve_app

import modelcycle as mc
from modelcycle.access.tokens import ROLES, role_allows
from modelcycle.server import create_app
from modelcycle.server.openapi import render
from modelcycle.server.routes import api_router

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[mc.Workspace, httpx.Client]]:
    """The app under uvicorn on a free 127.0.0.1 port, in a thread of this process."""
    ws = mc.Workspace.create(tmp_path / "ws")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n")
    ws.datasets.add("tiny", tmp_path / "t.csv")
    try:
        with (
            serve_app(create_app(ws.root)) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            yield ws, client
    finally:
        ws.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_open_until_a_token_exists_then_tokens_and_roles(
    served: tuple[mc.Workspace, httpx.Client],
) -> None:
    ws, client = served
    # No token yet: the workspace is open (the CLI allows that on loopback only).
    assert [d["name"] for d in client.get("/api/v1/datasets").json()] == ["tiny"]

    _, admin = ws.tokens.create("root", role="admin")
    _, reader = ws.tokens.create("ana", role="reader")
    time.sleep(ws.tokens.ttl + 0.1)  # the server's "any token?" answer is cached that long
    r = client.get("/api/v1/datasets")
    assert r.status_code == 401 and r.json()["error"] == "AuthenticationError"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.get("/api/v1/datasets", headers=bearer("mc_not-a-token"))
    assert r.status_code == 401 and "not known" in r.json()["message"]
    assert "mc_not-a-token" not in r.text
    assert client.get("/api/v1/datasets", headers=bearer(reader)).status_code == 200
    # health and metrics stay open
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200

    # A reader cannot create tokens: 403 naming the role needed.
    r = client.post("/api/v1/tokens", json={"name": "x", "role": "reader"}, headers=bearer(reader))
    assert r.status_code == 403
    assert r.json()["error"] == "PermissionDeniedError" and r.json()["details"]["needed"] == "admin"
    # An admin can; the new token works at once and is recorded with who made it.
    r = client.post("/api/v1/tokens", json={"name": "ci", "role": "editor"}, headers=bearer(admin))
    assert r.status_code == 201 and r.json()["role"] == "editor"
    editor = r.json()["token"]
    assert client.get("/api/v1/runs", headers=bearer(editor)).status_code == 200
    [created] = [e for e in ws.events(kind="token.created") if e.subject == "ci"]
    assert created.actor == "token:root"
    # Malformed bodies are 422 naming the field.
    r = client.post("/api/v1/tokens", json={"role": "reader"}, headers=bearer(admin))
    assert r.status_code == 422 and "name" in r.text
    # Unknown role: the workspace's own UsageError, 400.
    r = client.post("/api/v1/tokens", json={"name": "y", "role": "boss"}, headers=bearer(admin))
    assert r.status_code == 400 and r.json()["error"] == "UsageError"

    # Revoked: refused at once by this server.
    assert client.delete("/api/v1/tokens/ci", headers=bearer(admin)).status_code == 200
    r = client.get("/api/v1/runs", headers=bearer(editor))
    assert r.status_code == 401 and "revoked" in r.json()["message"]

    # Expired.
    _, brief = ws.tokens.create("brief", role="reader", expires_in=0.05)
    time.sleep(0.2)
    r = client.get("/api/v1/datasets", headers=bearer(brief))
    assert r.status_code == 401 and "expired" in r.json()["message"]

    # The login cookie signs pages in (the API wants the header: it has no CSRF tokens).
    client.cookies.set("modelcycle_token", reader)
    assert client.get("/", headers={"accept": "text/html"}).status_code == 200
    assert client.get("/api/v1/datasets").status_code == 401
    client.cookies.clear()


def test_every_route_enforces_its_role(served: tuple[mc.Workspace, httpx.Client]) -> None:
    """The role matrix: every /api/v1 route × every role → allowed (not 401/403) or 403."""
    ws, client = served
    tokens = {role: ws.tokens.create(f"t-{role}", role=role)[1] for role in ROLES}
    time.sleep(ws.tokens.ttl + 0.1)
    routes = [r for r in api_router(lambda: ws).routes if isinstance(r, APIRoute)]
    assert len(routes) >= 20
    checked = 0
    for route in routes:
        needed = [
            d.call.__name__.removeprefix("needs_")
            for d in route.dependant.dependencies
            if d.call is not None and d.call.__name__.startswith("needs_")
        ]
        assert len(needed) == 1, f"{route.path} declares no role"
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in route.methods:
            for role, token in tokens.items():
                r = client.request(method, path, headers=bearer(token), json={})
                if role_allows(role, needed[0]):
                    assert r.status_code not in (401, 403), (method, path, role, r.text)
                else:
                    assert r.status_code == 403, (method, path, role, r.status_code)
                checked += 1
    assert checked >= 3 * len(routes)


def test_changes_are_audited_under_the_tokens_name(
    served: tuple[mc.Workspace, httpx.Client], tmp_path: Path
) -> None:
    ws, client = served
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    with ws.start_run("m") as run:
        run.log_model(model, "model", register_as="m")
    _, editor = ws.tokens.create("eve", role="editor")
    _, reader = ws.tokens.create("rex", role="reader")
    time.sleep(ws.tokens.ttl + 0.1)
    r = client.post("/api/v1/models/m@1/stage", json={"to": "staging"}, headers=bearer(reader))
    assert r.status_code == 403
    assert ws.models.resolve("m@1").stage == "registered"  # nothing changed
    r = client.post(
        "/api/v1/models/m@1/stage",
        json={"to": "staging", "reason": "looks good"},
        headers=bearer(editor),
    )
    assert r.status_code == 200, r.text
    assert ws.models.resolve("m@1").stage == "staging"
    [event] = [e for e in ws.events(kind="model.stage") if e.subject.startswith("m@1")][-1:]
    assert event.actor == "token:eve"
    r = client.get("/api/v1/models/m@9", headers=bearer(reader))
    assert r.status_code == 404 and r.json()["error"] == "NotFoundError"


def test_the_committed_openapi_document_matches_the_app(
    served: tuple[mc.Workspace, httpx.Client],
) -> None:
    _, client = served
    served_doc = client.get("/openapi.json").json()
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert served_doc == committed, (
        "docs/openapi.json is out of date: python -m modelcycle.server.openapi > docs/openapi.json"
    )
    assert json.loads(render()) == committed
    assert "/api/v1/datasets" in committed["paths"] and "/api/v1/tokens" in committed["paths"]


def test_the_cli_refuses_an_open_server_on_a_public_address(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    mc.Workspace.create(root).close()
    r = run_cli("server", "--host", "0.0.0.0", "--port", "1", cwd=root, expect=2)
    assert r.returncode == 2
    assert "no API token" in r.stderr and "modelcycle token create" in r.stderr


def test_token_cli_prints_the_token_last(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    mc.Workspace.create(root).close()
    out = run_cli("token", "create", "ana", "--role", "editor", cwd=root).stdout
    token = out.strip().splitlines()[-1].split()[-1]
    assert token.startswith("mc_") and len(token) > 40
    with mc.Workspace.open(root) as ws:
        assert ws.tokens.authenticate(token).role == "editor"
    listed: list[dict[str, Any]] = json.loads(run_cli("token", "list", "--json", cwd=root).stdout)
    assert [t["name"] for t in listed] == ["ana"] and token not in json.dumps(listed)
    r = run_cli("token", "create", "bob", "--role", "boss", cwd=root, expect=2)
    assert r.returncode == 2 and "unknown role" in r.stderr
    r = run_cli("token", "create", "bob", "--expires", "99999999d", cwd=root, expect=2)
    assert "within 100 years" in r.stderr and "Traceback" not in r.stderr


def test_a_public_server_never_turns_open_and_other_sites_are_refused(tmp_path: Path) -> None:
    """`allow_open=False` (a server on a public address): with no usable token left
    (none made, or the last one expired), requests still need one. And a loopback
    server answers only its own host name, and refuses changes from other origins."""
    ws = mc.Workspace.create(tmp_path / "ws")
    app = create_app(ws.root, allow_open=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/api/v1/datasets").status_code == 401  # no token exists
            ws.tokens.create("brief", role="admin", expires_in=0.05)
            time.sleep(ws.tokens.ttl + 0.2)
            r = client.post("/api/v1/tokens", json={"name": "x", "role": "admin"})
            assert r.status_code == 401  # the only token expired: still closed
            _, admin = ws.tokens.create("admin", role="admin")
            auth = bearer(admin)
            assert client.get("/api/v1/datasets", headers=auth).status_code == 200
            # DNS rebinding: another host name for this loopback server.
            r = client.get("/api/v1/datasets", headers={**auth, "Host": "evil.example"})
            assert r.status_code == 403 and "does not answer for host" in r.json()["message"]
            # Changes from another origin (a page of another site) are refused.
            for extra in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
                r = client.post("/api/v1/tokens", json={"name": "y"}, headers={**auth, **extra})
                assert r.status_code == 403
            assert [t.name for t in ws.tokens.list()] == ["admin", "brief"]  # no "y"
            # The login cookie is for pages; the API wants the header.
            client.cookies.set("modelcycle_token", admin)
            assert client.get("/api/v1/datasets").status_code == 401
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        ws.close()
