"""The web UI's registry, deployment and monitoring pages against a real uvicorn server:
every page reads with its charts as inline SVG; an editor promotes, sets an alias, rolls
back and acknowledges through the forms; a reader sees no buttons and a forged post is
refused (403) and changes nothing; a post without the CSRF token changes nothing;
unknown names are 404 pages.

One workspace is seeded for the module (a trained model with two versions, an
evaluation, a deployment with logged traffic, a monitor whose drift alert started a
maintenance run now in its canary) since training and monitoring take seconds; tests
that change something use their own objects or check before and after."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from platform_support import serve_app

import modelcycle as mc
from modelcycle.server import create_app

FEATURES = ["a", "b", "c", "d"]
HTML = {"Accept": "text/html"}


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 0] += shift
    x[:, 1] += shift
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    out = pd.DataFrame(x, columns=FEATURES)
    out["target"] = y
    return out


def log(
    ws: mc.Workspace,
    data: pd.DataFrame,
    at: dt.datetime,
    *,
    version: int,
    prefix: str,
    spread: float = 600.0,
    latency_ms: float = 2.0,
    feedback: bool = False,
) -> None:
    """One request per row, as a model server logs it, spread over ``spread`` seconds
    before ``at``; with ``feedback``, every request gets its label."""
    model = ws.models.load(f"churn@{version}")
    pred = np.asarray(model.predict(data[FEATURES]))
    proba = np.asarray(model.predict_proba(data[FEATURES]))
    with ws.deployments.logger("churn-live", flush_rows=100_000) as logger:
        for i in range(len(data)):
            logger.log(
                {
                    "request_id": f"{prefix}-{i}",
                    "ts": at - dt.timedelta(seconds=spread * i / len(data)),
                    "endpoint": "churn-live",
                    "model": "churn",
                    "version": version,
                    "route": "primary",
                    "inputs": {c: float(data[c].iloc[i]) for c in FEATURES},
                    "outputs": {"prediction": [int(pred[i])], "probabilities": [proba[i].tolist()]},
                    "latency_ms": latency_ms * (1 + (i % 10) / 100),
                }
            )
    if feedback:
        ws.deployments.feedback.add(
            [{"request_id": f"{prefix}-{i}", "label": int(y)} for i, y in enumerate(data["target"])]
        )


@dataclass
class Site:
    ws: mc.Workspace
    base_url: str
    editor: str  # token secrets
    reader: str
    run_id: str  # the run that trained churn@1
    evaluation_id: int
    maintenance_id: int
    alert_id: int

    def client(self, token: str | None) -> httpx.Client:
        cookies = {"modelcycle_token": token} if token else {}
        return httpx.Client(base_url=self.base_url, headers=HTML, cookies=cookies, timeout=60)


def seed(ws: mc.Workspace, tmp: Path) -> dict[str, object]:
    for name, data in (
        ("churn-train", frame(2000, seed=1)),
        ("churn-test", frame(1000, seed=2, shift=1.0)),
    ):
        data.to_parquet(tmp / f"{name}.parquet", index=False)
        ws.datasets.add(name, tmp / f"{name}.parquet")
    spec = {
        "experiment": "churn",
        "data": {"train": "churn-train@latest"},
        "target": "target",
        "model": {"estimator": "logistic_regression"},
        "metrics": ["accuracy"],
        "cv": 2,
    }
    (ws.root / "train.yaml").write_text(yaml.safe_dump(spec))
    (ws.root / "gate.yaml").write_text(yaml.safe_dump({"thresholds": {"accuracy": {"min": 0.6}}}))
    trained = ws.training.train(spec)
    ws.models.register(trained.run_id, "churn")
    ws.models.set_alias("churn", "champion", 1)
    ws.models.transition("churn@1", "production", reason="first release")
    evaluation = ws.evaluations.evaluate("churn@1", "churn-test@1")
    ws.deployments.create("churn-live", "churn@champion")
    ws.monitors.create(
        "watch",
        deployment="churn-live",
        reference="churn-train@1",
        rules=["drift_share > 0.3"],
        window="1h",
    )
    # Four monitor runs an hour apart: calm, calm, then drifted traffic (the alert).
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=3)
    alert_id = None
    for k, shift in ((3, 0.0), (2, 0.0), (1, 1.5), (0, 1.5)):
        at = now - dt.timedelta(hours=k)
        log(ws, frame(800, seed=10 + k, shift=shift), at, version=1, prefix=f"t{k}", feedback=True)
        result = ws.monitors.run("watch", now=at)
        assert result.result.error is None, result.result.error
        alert_id = alert_id or (result.fired[0].id if result.fired else None)
    assert alert_id is not None
    # The alert starts a maintenance run: retrained (churn@2), gated, canary at 20 %.
    ws.maintenance.set_policy(
        "churn-live",
        {
            "trigger": {"monitors": ["watch"]},
            "retrain": {"train": "train.yaml", "feedback": False},
            "evaluate": {"data": "churn-test@1", "gate": "gate.yaml"},
            "canary": {
                "weight": 20,
                "min_requests": 10_000,
                "interval": "1m",
                "max_duration": "1d",
                "max_failed_checks": 5,
            },
        },
    )
    [run] = ws.maintenance.tick(now=now)
    assert run.phase == "canary" and run.candidate == "churn@2", run.reason
    check_at = now + dt.timedelta(minutes=1)
    canary = frame(100, seed=20, shift=1.5)
    log(ws, canary.iloc[:70], check_at, version=1, prefix="champ", spread=55)
    log(ws, canary.iloc[70:], check_at, version=2, prefix="cand", spread=55)
    [run] = ws.maintenance.tick(now=check_at)
    assert run.running and run.steps[-1]["step"] == "canary_check", run.reason
    return {
        "run_id": trained.run_id,
        "evaluation_id": evaluation.row.id,
        "maintenance_id": run.id,
        "alert_id": alert_id,
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("ui-ops")
    ws = mc.Workspace.create(tmp / "ws")
    ids = seed(ws, tmp)
    _, editor = ws.tokens.create("ed", role="editor")
    _, reader = ws.tokens.create("ana", role="reader")
    try:
        with serve_app(create_app(ws.root)) as url:
            yield Site(ws, url, editor, reader, **ids)  # type: ignore[arg-type]
    finally:
        ws.close()


def page(client: httpx.Client, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def svg(html: str, plot: str) -> str:
    """The inline ``<svg id="plot-PLOT">`` of the page."""
    found = re.search(rf'<svg id="plot-{plot}".*?</svg>', html, re.S)
    assert found, f"no {plot} chart"
    return found.group(0)


# -- reading ---------------------------------------------------------------------------


def test_registry_pages(site: Site) -> None:
    with site.client(site.reader) as reader:
        html = page(reader, "/models")
        assert 'href="/models/churn"' in html
        assert 'class="stage production" href="/models/churn/1">v1</a>' in html
        assert "champion → v1" in html

        html = page(reader, "/models/churn")
        assert 'href="/models/churn/2">v2</a>' in html and 'href="/models/churn/1">v1</a>' in html
        stages = svg(html, "stages")
        assert "v1 production" in stages and "v2 registered" in stages
        assert "first release" in html  # the stage history with its reason

        html = page(reader, "/models/churn/1")
        assert f'href="/runs/{site.run_id}"' in html
        for feature in FEATURES:
            assert f"<td>{feature}</td>" in html  # the signature
        report = f"/models/churn/1/evaluations/{site.evaluation_id}/report"
        assert f'href="{report}"' in html
        lineage = svg(html, "lineage")
        assert "churn-train@1" in lineage and f'href="/runs/{site.run_id}"' in lineage
        assert 'href="/datasets/churn-train/1"' in lineage
        assert lineage.count('class="edge"') >= 2  # data → run → model
        assert "Move to stage" not in html and "/stage" not in html  # a reader: no forms

        # churn@2 was gated by the maintenance run: its verdict and conditions.
        html = page(reader, "/models/churn/2")
        assert f'href="/maintenance/{site.maintenance_id}"' in html
        assert '<td><span class="good">passed</span></td>' in html  # the gate's event
        assert "<td>accuracy &gt;= 0.6</td>" in html  # its condition, from the run

        r = reader.get(report)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "<svg" in r.text and "churn@1 on churn-test@1" in r.text
        assert "sandbox" in r.headers["content-security-policy"]
        # An alias is shown as its version's page.
        r = reader.get("/models/churn/champion", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/models/churn/1"


def test_deployment_pages(site: Site) -> None:
    with site.client(site.reader) as reader:
        html = page(reader, "/deployments")
        assert 'href="/deployments/churn-live"' in html
        assert f'href="/maintenance/{site.maintenance_id}"' in html

        html = page(reader, "/deployments/churn-live")
        # The canary's routes, resolved to versions.
        assert 'href="/models/churn/1">v1</a>' in html and 'href="/models/churn/2">v2</a>' in html
        assert "<td>churn@1</td>" in html and "<td>churn@2</td>" in html
        requests = svg(html, "requests")
        assert ">v1<" in requests and ">v2<" in requests
        latency = svg(html, "latency")
        assert "v2 p95" in latency and "<path" in latency
        # Canary status: the running maintenance run, its last check and conditions.
        assert f'href="/maintenance/{site.maintenance_id}">Maintenance run' in html
        assert "Last check" in html and "latency" in html and "30 candidate" in html
        assert "Roll back" not in html
        assert "canary of churn@2 at 20%" in html  # the history's reasons


def test_monitoring_pages(site: Site) -> None:
    with site.client(site.reader) as reader:
        html = page(reader, "/monitors")
        assert 'href="/monitors/watch"' in html and "breach" in html

        html = page(reader, "/monitors/watch")
        drift = svg(html, "drift")
        for feature in FEATURES:
            assert f">{feature}<" in drift
        assert ">drift_share<" in drift
        performance = svg(html, "performance")
        assert ">accuracy<" in performance and ">estimated_accuracy<" in performance
        assert "<path" in svg(html, "operations-requests")
        assert "<path" in svg(html, "operations-latency")
        # The newest result's drift per column: a and b shifted, c and d not.
        rows = re.findall(r'<tr class="(drifted|)">\s*<td>(\w)</td>', html)
        assert sorted(col for _, col in rows) == FEATURES
        assert {col for flag, col in rows if flag} == {"a", "b"}
        assert f'id="alert-{site.alert_id}"' in html and "drift_share &gt; 0.3" in html
        assert "Acknowledge" not in html
        assert f'href="/maintenance/{site.maintenance_id}"' in html

        html = page(reader, "/alerts")
        assert f'id="alert-{site.alert_id}"' in html

        html = page(reader, f"/maintenance/{site.maintenance_id}")
        for step in ("retrained", "gated", "canary started", "canary check"):
            assert f"{step} <time>" in html
        assert "needs accuracy &gt;= 0.6, got 0.9" in html  # the gate's condition
        assert "candidate p99 2.2 ms ≤ 1.2 × champion p99" in html  # a canary check's
        assert f'href="/alerts#alert-{site.alert_id}"' in html
        html = page(reader, "/maintenance")
        assert f'href="/maintenance/{site.maintenance_id}"' in html


@pytest.mark.parametrize(
    "url",
    [
        "/models/nope",
        "/models/churn/99",
        "/models/churn/nope",
        "/models/churn/1/evaluations/9999/report",
        "/deployments/nope",
        "/monitors/nope",
        "/maintenance/9999",
        "/maintenance/abc",
    ],
)
def test_unknown_names_are_404_pages(site: Site, url: str) -> None:
    with site.client(site.reader) as reader:
        r = reader.get(url)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "<h1>" in r.text and "NotFoundError" in r.text


def test_a_report_is_served_only_under_its_own_version(site: Site) -> None:
    with site.client(site.reader) as reader:
        r = reader.get(f"/models/churn/2/evaluations/{site.evaluation_id}/report")
    assert r.status_code == 404 and "churn@2 has no evaluation" in r.text


# -- changing --------------------------------------------------------------------------


def state(ws: mc.Workspace) -> tuple[object, ...]:
    return (
        [(v.version, v.stage) for v in ws.models.versions("churn")],
        ws.models.resolve("churn@champion").version,
        [(r.ref, r.weight) for r in ws.deployments.status("churn-live").routes],
        [(a.id, a.acked_at) for a in ws.monitors.alerts(monitor="watch")],
        len(ws.events(limit=10_000)),
    )


def forged_posts(site: Site, csrf: str | None) -> list[tuple[str, dict[str, str]]]:
    token = {} if csrf is None else {"csrf": csrf}
    return [
        ("/models/churn/2/stage", {**token, "stage": "staging"}),
        ("/models/churn/2/alias", {**token, "alias": "champion"}),
        ("/deployments/churn-live/rollback", {**token, "reason": "x"}),
        (f"/alerts/{site.alert_id}/ack", {**token, "note": "x"}),
    ]


def test_a_reader_sees_no_buttons_and_is_refused(site: Site) -> None:
    before = state(site.ws)
    with site.client(site.reader) as reader:
        csrf = csrf_of(page(reader, "/models/churn/2"))  # the sign-out form's token
        for url in ("/models/churn/2", "/deployments/churn-live", "/monitors/watch", "/alerts"):
            html = page(reader, url)
            for button in ("Move to stage", "Set alias", "Roll back", "Acknowledge"):
                assert button not in html, (url, button)
        for url, form in forged_posts(site, csrf):
            r = reader.post(url, data=form, follow_redirects=False)
            assert r.status_code == 403, (url, r.status_code)
            assert "PermissionDeniedError" in r.text and "needs editor" in r.text
    assert state(site.ws) == before


def test_a_post_without_the_csrf_token_changes_nothing(site: Site) -> None:
    before = state(site.ws)
    with site.client(site.editor) as editor:
        page(editor, "/models/churn/2")  # the CSRF cookie is set
        for csrf in (None, "forged"):
            for url, form in forged_posts(site, csrf):
                r = editor.post(url, data=form, follow_redirects=False)
                assert r.status_code == 400 and "CSRF" in r.text, (url, r.status_code)
    assert state(site.ws) == before


def test_an_editor_promotes_and_sets_an_alias(site: Site) -> None:
    with site.client(site.editor) as editor:
        html = page(editor, "/models/churn/2")
        assert 'action="/models/churn/2/stage"' in html and "Set alias" in html
        csrf = csrf_of(html)
        r = editor.post(
            "/models/churn/2/stage",
            data={"csrf": csrf, "stage": "staging", "reason": "try it"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/models/churn/2"
        assert site.ws.models.resolve("churn@2").stage == "staging"
        last = site.ws.models.history("churn")[-1]
        assert (last.to_stage, last.reason, last.actor) == ("staging", "try it", "token:ed")

        r = editor.post(
            "/models/churn/2/alias",
            data={"csrf": csrf, "alias": "challenger"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert site.ws.models.resolve("churn@challenger").version == 2
        html = page(editor, "/models/churn/2")
        assert '<span class="alias">challenger</span>' in html
        assert '<span class="stage staging">staging</span>' in html

        # A move the registry refuses is its error page, and changes nothing.
        r = editor.post("/models/churn/2/stage", data={"csrf": csrf, "stage": "staging"})
        assert r.status_code == 409 and "in staging already" in r.text


def test_an_editor_rolls_a_deployment_back(site: Site) -> None:
    ws = site.ws
    ws.deployments.create("churn-ab", "churn@1")
    ws.deployments.route("churn-ab", {"churn@1": 50, "churn@2": 50}, reason="a/b")
    with site.client(site.editor) as editor:
        html = page(editor, "/deployments/churn-ab")
        assert "Roll back" in html
        assert "No predictions logged" in html and 'id="plot-requests"' not in html
        r = editor.post(
            "/deployments/churn-ab/rollback",
            data={"csrf": csrf_of(html), "reason": "v2 is slow"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/deployments/churn-ab"
        status = ws.deployments.status("churn-ab")
        assert [(r.ref, r.weight) for r in status.routes] == [("churn@1", 100.0)]
        last = status.history[-1]
        assert (last.kind, last.reason, last.actor) == ("rollback", "v2 is slow", "token:ed")
        assert "v2 is slow" in page(editor, "/deployments/churn-ab")


def test_an_editor_acknowledges_an_alert(site: Site) -> None:
    with site.client(site.editor) as editor:
        html = page(editor, "/monitors/watch")
        assert f'action="/alerts/{site.alert_id}/ack"' in html
        # "next" leads back to a page of this site only: elsewhere, the alert's monitor.
        r = editor.post(
            f"/alerts/{site.alert_id}/ack",
            data={"csrf": csrf_of(html), "note": "retraining", "next": "//evil.example/x"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/monitors/watch"
        [alert] = [a for a in site.ws.monitors.alerts(monitor="watch") if a.id == site.alert_id]
        assert (alert.acked_by, alert.ack_note) == ("token:ed", "retraining")
        html = page(editor, "/monitors/watch")
        assert f'action="/alerts/{site.alert_id}/ack"' not in html and "retraining" in html
        # Twice is the registry's conflict, as a page.
        r = editor.post(f"/alerts/{site.alert_id}/ack", data={"csrf": csrf_of(html)})
        assert r.status_code == 409 and "acknowledged already" in r.text
