"""The audit page and the server's HTML error pages, against a real uvicorn server.

Error pages: a browser asking for a path that names no page gets the UI's 404 page, a
method a page does not take a 405 page with its ``Allow`` header, both with the
security headers and a way back; the JSON API, ``/openapi.json`` and clients that do
not ask for HTML keep FastAPI's JSON; a browser without a token is sent to sign in
whether the page exists or not.

Audit log: changes made through the API under two tokens show each token as the actor;
filters by actor, kind prefix, subject and time range, and pages of 50, are the same on
the page, in ``GET /api/v1/events`` and in ``modelcycle events``; a payload is shown
escaped. The event store's filters and offsets are also checked on both backends
(SQLite, PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd
import pytest
from integration_support import run_json
from sklearn.linear_model import LogisticRegression
from ui_support import serve

import modelcycle as mc
from modelcycle.store.metadata import acting_as

HTML = {"Accept": "text/html"}
TAGS = 60  # dataset.tag.set events: more than one page of 50
PAYLOAD = "<script>alert('audit')</script>"
SECURITY = ("x-frame-options", "x-content-type-options", "content-security-policy")
ROW = re.compile(r'<tr id="event-(\d+)">(.*?)</tr>', re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)


@dataclass
class Site:
    root: Path
    base_url: str
    admin: str  # token secrets: alice (admin), bob (editor), rita (reader)
    editor: str
    reader: str

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        cookies = {"modelcycle_token": token} if token else {}
        return httpx.Client(
            base_url=self.base_url, headers={**HTML, **headers}, cookies=cookies, timeout=60
        )

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )


@dataclass(frozen=True)
class Row:
    id: int
    at: str
    actor: str
    kind: str
    subject: str
    change: str  # the payload cell's text


def seed(root: Path) -> tuple[str, str, str]:
    """A model version (churn@1), a dataset tagged TAGS times, three tokens."""
    ws = mc.Workspace.create(root)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(80, 2)), columns=["a", "b"])
    y = (x["a"] > 0).astype(int)
    with ws.start_run("churn") as run:
        run.set_tags({"task": "classification", "target": "y"})
        model = LogisticRegression().fit(x, y)
        run.log_model(model, "model", input_example=x.head(2), register_as="churn")
    (root / "people.csv").write_text("id,age\n1,30\n2,41\n")
    ws.datasets.add("people", root / "people.csv")
    for i in range(TAGS):
        ws.datasets.tag("people@1", f"t{i:02d}")
    secrets = [ws.tokens.create(n, role=r)[1] for n, r in (("alice", "admin"), ("bob", "editor"))]
    _, reader = ws.tokens.create("rita", role="reader")
    ws.close()
    return secrets[0], secrets[1], reader


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("audit") / "ws"
    admin, editor, reader = seed(root)
    with serve(root) as base_url:
        site = Site(root, base_url, admin, editor, reader)
        with site.api(admin) as alice:  # changes under two tokens, through the API
            r = alice.post("/api/v1/tokens", json={"name": "ci-bot", "role": "reader"})
            assert r.status_code == 201, r.text
        with site.api(editor) as bob:
            r = bob.post("/api/v1/models/churn@1/stage", json={"to": "staging", "reason": PAYLOAD})
            assert r.status_code == 200, r.text
            r = bob.put("/api/v1/models/churn/aliases/champion", json={"version": 1})
            assert r.status_code == 200, r.text
        yield site


def page(client: httpx.Client, url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    assert 'style="' not in r.text and "<script>" not in r.text  # the CSP allows neither
    return r.text


def rows(text: str) -> list[Row]:
    out = []
    for number, body in ROW.findall(text):
        cells = [html.unescape(re.sub(r"<[^>]+>", " ", c)) for c in CELL.findall(body)]
        at, actor, kind, subject, change = (" ".join(c.split()) for c in cells)
        out.append(Row(int(number), at, actor, kind, subject, change))
    return out


# -- error pages ------------------------------------------------------------------------


def test_an_unknown_page_is_an_html_404_with_a_way_back(site: Site) -> None:
    with site.client(site.reader) as client:
        r = client.get("/no-such-page")
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        text = html.unescape(r.text)
        assert "<h1>there is no page at /no-such-page</h1>" in text
        assert "check the address" in text and '<a href="/">Home</a>' in text
        assert "<title>Not Found · modelcycle</title>" in text
        assert "rita · reader" in text  # the usual page, signed in: the menu and who
        for name in SECURITY:
            assert name in r.headers, name
        # Under a section, the way back leads to it; the path is shown escaped.
        r = client.get("/datasets/people/1/<b>x</b>")
        assert r.status_code == 404
        assert '<a href="/datasets">Back to Datasets</a>' in r.text
        assert "<b>x</b>" not in r.text and "&lt;b&gt;x&lt;/b&gt;" in r.text


def test_a_wrong_method_is_an_html_405_with_allow(site: Site) -> None:
    with site.client(site.reader) as client:
        r = client.post("/datasets", data={"x": "1"})
        assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")
        assert "GET" in [m.strip() for m in r.headers["allow"].split(",")]
        text = html.unescape(r.text)
        assert "<h1>/datasets does not take POST requests</h1>" in text
        assert "it takes only GET" in text and '<a href="/datasets">Back to the page</a>' in text
        for name in SECURITY:
            assert name in r.headers, name
        r = client.get("/logout")  # a form's target: posts only
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        assert "/logout does not take GET requests" in html.unescape(r.text)


def test_the_api_and_clients_that_do_not_ask_for_html_keep_json(site: Site) -> None:
    with site.client(site.reader) as client:
        for method, url, status in (
            ("GET", "/api/v1/no-such-thing", 404),
            ("POST", "/api/v1/events", 405),
            ("POST", "/openapi.json", 405),
        ):
            r = client.request(method, url, headers={"Authorization": f"Bearer {site.reader}"})
            assert r.status_code == status, (url, r.text)
            assert r.headers["content-type"] == "application/json", url
            assert r.json() == {"detail": "Not Found" if status == 404 else "Method Not Allowed"}
            if status == 405:
                assert r.headers["allow"]
    with site.api(site.reader) as api:
        r = api.get("/no-such-page", headers={"Accept": "application/json"})
        assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_a_browser_without_a_token_signs_in_first_whether_the_page_exists_or_not(
    site: Site,
) -> None:
    with site.client() as client:
        for url in ("/no-such-page", "/audit", "/audit?actor=token:bob"):
            r = client.get(url, follow_redirects=False)
            assert r.status_code == 303, url
            assert r.headers["location"] == "/login?next=" + quote(url, safe="/")
        r = client.post("/datasets", follow_redirects=False)
        assert r.status_code == 303
    with httpx.Client(base_url=site.base_url) as bare:
        assert bare.get("/no-such-page").status_code == 401


# -- the audit page ---------------------------------------------------------------------


def test_the_audit_page_shows_who_changed_what(site: Site) -> None:
    with site.client(site.reader) as client:
        text = page(client, "/audit")
    assert '<a href="/audit" aria-current="page">Audit</a>' in text  # in the menu
    found = rows(text)
    assert len(found) == 50
    assert [r.id for r in found] == sorted((r.id for r in found), reverse=True)  # newest first
    by = {(r.kind, r.subject): r for r in found}
    created = by["token.created", "ci-bot"]
    assert created.actor == "token:alice" and "role reader" in created.change
    staged = by["model.stage", "churn@1"]
    assert staged.actor == "token:bob"
    assert "registered → staging" in staged.change  # from/to as one change
    assert by["model.alias.set", "churn@1"].actor == "token:bob"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", staged.at)
    # The tokens themselves and the tags were made by the OS user, outside the server.
    user = {r.actor for r in found if r.kind == "dataset.tag.set"}
    assert len(user) == 1 and not user.pop().startswith("token:")
    assert by["token.created", "bob"].actor == by["dataset.tag.set", "people@1"].actor


def test_a_payload_is_escaped(site: Site) -> None:
    with site.client(site.reader) as client:
        r = client.get("/audit?kind=model.stage")
    assert r.status_code == 200
    assert PAYLOAD not in r.text and "<script>" not in r.text
    assert "&lt;script&gt;alert(&#39;audit&#39;)&lt;/script&gt;" in r.text
    [row] = rows(r.text)
    assert PAYLOAD in row.change


def test_filters_by_actor_kind_and_subject(site: Site) -> None:
    with site.client(site.reader) as client, site.api(site.reader) as api:
        bob = rows(page(client, "/audit?actor=token:bob"))
        assert [r.kind for r in bob] == ["model.alias.set", "model.stage"]
        assert {r.actor for r in bob} == {"token:bob"}
        alice = rows(page(client, "/audit?actor=token%3Aalice"))
        assert [(r.kind, r.subject) for r in alice] == [("token.created", "ci-bot")]
        assert rows(page(client, "/audit?actor=token:nobody")) == []
        assert "No event matches." in page(client, "/audit?actor=token:nobody")
        # kind by prefix, together with the actor
        models = rows(page(client, "/audit?kind=model."))
        assert {r.kind for r in models} == {"model.registered", "model.stage", "model.alias.set"}
        assert [r.kind for r in rows(page(client, "/audit?kind=model.&actor=token:bob"))] == [
            "model.alias.set",
            "model.stage",
        ]
        assert {r.subject for r in rows(page(client, "/audit?subject=churn"))} <= {
            "churn",
            "churn@1",
        }
        # the same through the API (oldest first there)
        got = api.get("/api/v1/events", params={"actor": "token:bob"}).json()
        assert [e["id"] for e in got] == [r.id for r in reversed(bob)]
        got = api.get("/api/v1/events", params={"actor": "token:bob", "kind": "model.stage"})
        assert [e["subject"] for e in got.json()] == ["churn@1"]
        # each cell links to its filter, keeping the others
        text = page(client, "/audit?kind=model.")
        assert 'href="/audit?actor=token%3Abob&amp;kind=model."' in text


def test_pages_of_fifty(site: Site) -> None:
    with site.client(site.reader) as client, site.api(site.reader) as api:
        first = page(client, "/audit?kind=dataset.tag")
        assert 'href="/audit?kind=dataset.tag&amp;page=2" rel="next"' in first
        second = page(client, "/audit?kind=dataset.tag&page=2")
        assert 'rel="next"' not in second and 'rel="prev"' in second
        one, two = rows(first), rows(second)
        assert len(one) == 50 and len(two) == TAGS - 50
        ids = [r.id for r in one + two]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == TAGS
        tags = [re.search(r"tag (t\d\d)", r.change) for r in one + two]
        assert [m.group(1) for m in tags if m] == [f"t{i:02d}" for i in reversed(range(TAGS))]
        assert "No events on page 3." in page(client, "/audit?kind=dataset.tag&page=3")
        page(client, "/audit?page=0", status=400)
        page(client, "/audit?page=x", status=400)
        # the API pages the same way with offset
        got = api.get("/api/v1/events", params={"kind": "dataset.tag", "limit": 50, "offset": 50})
        assert [e["id"] for e in got.json()] == [r.id for r in reversed(two)]
        assert api.get("/api/v1/events", params={"offset": -1}).status_code == 422


def test_time_range(site: Site) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    hour = dt.timedelta(hours=1)
    with site.client(site.reader) as client, site.api(site.reader) as api:
        window = f"since={(now - hour).isoformat()}&until={(now + hour).isoformat()}"
        assert len(rows(page(client, f"/audit?actor=token:bob&{window}"))) == 2
        assert rows(page(client, f"/audit?since={(now + hour).date()}T23:59")) == []
        assert rows(page(client, "/audit?until=2000-01-01")) == []
        text = page(client, f"/audit?since={now.date()}")  # a date is its midnight, UTC
        assert f'name="since" value="{now.date()}T00:00:00"' in text and rows(text)
        text = html.unescape(page(client, "/audit?since=yesterday&actor=token:bob", status=400))
        assert "since 'yesterday' is not a time" in text
        assert 'value="token:bob"' in text  # what was typed stays in the form
        # a zone is honoured: the page shows UTC
        text = page(client, "/audit?until=2030-01-01T02:00%2B02:00")
        assert 'name="until" value="2030-01-01T00:00:00"' in text
        got = api.get(
            "/api/v1/events",
            params={"actor": "token:bob", "since": (now + hour).isoformat() + "Z"},
        )
        assert got.status_code == 200 and got.json() == []


def test_the_cli_filters_by_actor(site: Site) -> None:
    got = run_json("events", "--actor", "token:bob", "--json", cwd=site.root)
    assert [(e["actor"], e["kind"]) for e in got] == [
        ("token:bob", "model.stage"),
        ("token:bob", "model.alias.set"),
    ]
    got = run_json(
        "events", "--kind", "dataset.tag", "--limit", "5", "--offset", "55", "--json", cwd=site.root
    )
    assert [e["subject"] for e in got] == ["people@1"] * 5


# -- the store, on both backends -----------------------------------------------------------


def test_event_filters_and_offsets_in_sql(workspace: mc.Workspace) -> None:
    for i in range(7):
        with acting_as(f"token:{'ab'[i % 2]}"):
            workspace.store.record_event("demo.step" if i < 5 else "other.step", f"s{i}", {"i": i})
    mine = workspace.events(kind="demo.")
    assert [e.payload["i"] for e in mine] == [0, 1, 2, 3, 4]
    assert [e.payload["i"] for e in workspace.events(actor="token:b")] == [1, 3, 5]
    page = workspace.events(kind="demo.", limit=2, offset=1)  # skip the newest
    assert [e.payload["i"] for e in page] == [2, 3]
    assert workspace.events(kind="demo.", offset=5) == []
    middle = mine[2].at
    assert [e.payload["i"] for e in workspace.events(kind="demo.", since=middle)] == [2, 3, 4]
    assert [e.payload["i"] for e in workspace.events(kind="demo.", until=middle)] == [0, 1]
    naive = middle.astimezone(dt.UTC).replace(tzinfo=None)  # naive is UTC
    assert [e.payload["i"] for e in workspace.events(kind="demo.", since=naive)] == [2, 3, 4]
    shifted = middle.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert [e.payload["i"] for e in workspace.events(kind="demo.", until=shifted)] == [0, 1]
    edge = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))
    assert len(workspace.events(kind="demo.", since=edge)) == 5  # before year 1 in UTC
    with pytest.raises(mc.UsageError):
        workspace.events(offset=-1)
