"""What a user does in the web UI, end to end in a real browser (Debian's chromium driven
by Playwright) against the platform server under uvicorn on 127.0.0.1: sign in and out,
browse a dataset diff, label ten items with the keyboard, compare two runs, promote a
model (and be refused as a reader), watch a canary, acknowledge an alert.

One workspace is seeded for the module (training and monitoring take seconds) and one
browser is launched; each journey has its own browser context. Every journey ends with
a screenshot (saved in $MODELCYCLE_TEST_ARTIFACTS, else pytest's tmp_path) and checks
that no page logged a console error, threw, fetched from another host or failed a
request."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from integration_support import write_csv
from playwright.sync_api import Browser, Locator, expect
from ui_support import Journey, artifacts_folder, chromium, serve, sign_in

import modelcycle as mc

FEATURES = ["a", "b", "c", "d"]
LABELS = ["positive", "negative", "neutral"]
SENTIMENT = {"kind": "classification", "labels": LABELS, "field": "text"}
TEXTS = [
    "Loved it, works great",
    "Broke after a day",
    "It is a phone",
    "Best purchase this year",
    "Terrible battery",
    "Arrived on Tuesday",
    "Great screen, great price",
    "Awful support, never again",
    "Comes in a box",
    "Fantastic, would buy again",
    "Worst headphones ever",
    "Blue, as described",
]
TRUTH = ["positive", "negative", "neutral"] * 4


# -- the workspace ---------------------------------------------------------------------


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 0] += shift
    x[:, 1] += shift
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    out = pd.DataFrame(x, columns=FEATURES)
    out["target"] = y
    return out


def log_traffic(
    ws: mc.Workspace,
    data: pd.DataFrame,
    at: dt.datetime,
    *,
    version: int,
    prefix: str,
    spread: float = 600.0,
    feedback: bool = False,
) -> None:
    """One logged request per row of ``data``, spread over ``spread`` seconds before ``at``."""
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
                    "latency_ms": 2.0 * (1 + (i % 10) / 100),
                }
            )
    if feedback:
        ws.deployments.feedback.add(
            [{"request_id": f"{prefix}-{i}", "label": int(y)} for i, y in enumerate(data["target"])]
        )


def seed_data(ws: mc.Workspace, tmp: Path) -> dict[str, str]:
    """A table with two versions, a labeling project of 12 reviews for two annotators (ben
    has labeled four), and three runs with a loss series whose ``lr`` differs."""
    people = tmp / "people.csv"
    people.write_text(
        "id,age,city,score\n1,30,paris,0.5\n2,41,rome,0.7\n3,25,oslo,0.1\n4,,paris,0.9\n"
    )
    ws.datasets.add("people", people, message="first export")
    people.write_text(
        "id,age,city,score\n1,30,paris,0.5\n2,42,rome,0.7\n3,25,oslo,0.1\n"
        "5,60,lima,0.3\n6,61,lima,0.35\n"
    )
    ws.datasets.add("people", people, message="second export")

    reviews = write_csv(tmp / "reviews.csv", ["id", "text"], list(enumerate(TEXTS, start=1)))
    ws.datasets.add("reviews", reviews)
    ws.labels.create("reviews", "reviews@1", SENTIMENT, overlap=2, annotators=["ana", "ben"])
    ws.labels.assign("reviews", ["ana", "ben"])
    for key in range(4):
        ws.labels.annotate("reviews", str(key), "ben", TRUTH[key])

    ids = {}
    for name, lr in (("alpha", "0.1"), ("beta", "0.2"), ("gamma", "0.3")):
        with ws.start_run("tuning", name=name) as run:
            run.log_params({"lr": lr, "depth": "4"})
            offset = {"alpha": 0.0, "beta": 1.0, "gamma": 2.0}[name]
            run.log_batch([("loss", offset + 1.0 / (s + 1), s, 1000 + s) for s in range(200)])
            run.log_metric("auc", 0.8 + offset / 10)
            ids[name] = run.id
    return ids


def seed_ops(ws: mc.Workspace) -> dict[str, int]:
    """churn@1 in production behind a deployment with logged traffic; a monitor whose
    drift alert fired and started a maintenance run, now in its canary (churn@2 at 20%)."""
    tmp = ws.root
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
    (tmp / "train.yaml").write_text(yaml.safe_dump(spec))
    (tmp / "gate.yaml").write_text(yaml.safe_dump({"thresholds": {"accuracy": {"min": 0.6}}}))
    trained = ws.training.train(spec)
    ws.models.register(trained.run_id, "churn")
    ws.models.set_alias("churn", "champion", 1)
    ws.models.transition("churn@1", "production", reason="first release")
    ws.deployments.create("churn-live", "churn@champion")
    ws.monitors.create(
        "watch",
        deployment="churn-live",
        reference="churn-train@1",
        rules=["drift_share > 0.3"],
        window="1h",
    )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=3)
    alert_id = None
    for k, shift in ((2, 0.0), (1, 1.5), (0, 1.5)):  # calm, then drifted traffic
        at = now - dt.timedelta(hours=k)
        log_traffic(ws, frame(600, seed=10 + k, shift=shift), at, version=1, prefix=f"t{k}")
        result = ws.monitors.run("watch", now=at)
        assert result.result.error is None, result.result.error
        alert_id = alert_id or (result.fired[0].id if result.fired else None)
    assert alert_id is not None, "the drift alert did not fire"
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
    log_traffic(ws, canary.iloc[:80], check_at, version=1, prefix="champ", spread=55)
    log_traffic(ws, canary.iloc[80:], check_at, version=2, prefix="cand", spread=55)
    [run] = ws.maintenance.tick(now=check_at)
    assert run.running and run.steps[-1]["step"] == "canary_check", run.reason
    return {"maintenance_id": run.id, "alert_id": alert_id}


@dataclass
class Site:
    ws: mc.Workspace
    origin: str
    editor: str  # token secrets
    reader: str
    runs: dict[str, str]  # run ids by name
    maintenance_id: int
    alert_id: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("ui-journeys")
    ws = mc.Workspace.create(tmp / "ws")
    runs = seed_data(ws, tmp)
    ops = seed_ops(ws)
    # Before the server starts: its "is any token required?" answer is cached.
    _, editor = ws.tokens.create("ed", role="editor")
    _, reader = ws.tokens.create("rita", role="reader")
    try:
        with serve(ws.root) as origin:
            yield Site(ws, origin, editor, reader, runs, **ops)
    finally:
        ws.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def journey(
    request: pytest.FixtureRequest, browser: Browser, site: Site, tmp_path: Path
) -> Iterator[Journey]:
    name = request.node.name.removeprefix("test_")
    started = Journey.start(browser, name, site.origin, artifacts_folder(tmp_path))
    try:
        yield started
    finally:
        started.close()


def box_of(locator: Locator) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None, "not laid out"
    return dict(box)


def background(row: Locator) -> str:
    """The computed background colour of the row's first cell."""
    return str(row.locator("td").first.evaluate("td => getComputedStyle(td).backgroundColor"))


# -- the journeys ------------------------------------------------------------------------


def test_sign_in_with_a_token_and_out(journey: Journey, site: Site) -> None:
    page = journey.page
    # A browser without a token is sent to sign in, and comes back where it was going.
    page.goto(journey.url("/models"))
    assert journey.path() == "/login?next=/models"
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.locator("#token").fill(site.editor)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert journey.path() == "/models"
    expect(page.locator(".who")).to_contain_text("ed · editor")
    [cookie] = [c for c in journey.context.cookies() if c["name"] == "modelcycle_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    expect(page.get_by_role("link", name="churn", exact=True)).to_be_visible()

    # Signing out returns to the sign-in page.
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert journey.path() == "/login"
    assert not [c for c in journey.context.cookies() if c["name"] == "modelcycle_token"]

    # A wrong token: the form again, saying why, and no cookie.
    page.locator("#token").fill("mc_not-a-real-token")
    with page.expect_navigation() as refused:
        page.get_by_role("button", name="Sign in").click()
    response = refused.value
    assert response is not None and response.status == 401
    assert journey.path() == "/login"
    expect(page.get_by_role("alert")).to_have_text("the token is not known")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    assert not [c for c in journey.context.cookies() if c["name"] == "modelcycle_token"]
    # The right one after it signs in (to the home page: /login was asked for no other).
    page.locator("#token").fill(site.reader)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert journey.path() == "/"
    expect(page.locator(".who")).to_contain_text("rita · reader")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()

    # Signed out again, the pages are closed.
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert journey.path() == "/login"
    page.goto(journey.url("/runs"))
    assert journey.path() == "/login?next=/runs"
    journey.finish(expected_statuses=[(401, "/login")])


def test_browse_a_dataset_diff(journey: Journey, site: Site) -> None:
    page = journey.page
    sign_in(journey, site.reader, next_path="/datasets")
    page.get_by_role("link", name="people", exact=True).click()
    page.wait_for_url(journey.url("/datasets/people"))
    expect(page.get_by_role("link", name="v2", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="v1", exact=True)).to_be_visible()

    form = page.locator("form.diff-form")
    assert form.locator('select[name="a"]').input_value() == "1"  # previous → latest
    assert form.locator('select[name="b"]').input_value() == "2"
    form.locator('input[name="key"]').fill("id")
    with page.expect_navigation():
        form.get_by_role("button", name="Diff").click()
    assert journey.path() == "/datasets/people/diff?a=1&b=2&key=id"
    expect(page.get_by_role("heading", level=1)).to_have_text("Diff of people: people@1 → people@2")

    cards = page.locator(".cards.rows")
    changed = cards.locator(".card.changed")
    expect(changed).to_be_visible()
    expect(changed).to_have_text("1 changed")
    assert box_of(changed)["width"] > 20
    expect(cards.locator(".card.added")).to_have_text("2 added")
    expect(cards.locator(".card.removed")).to_have_text("1 removed")
    expect(page.get_by_role("heading", name="Rows (matched by id)")).to_be_visible()
    journey.finish()


def test_label_ten_items_with_the_keyboard(journey: Journey, site: Site) -> None:
    ws, page = site.ws, journey.page
    before = ws.labels.status("reviews")
    assert before["per_annotator"]["ana"]["done"] == 0 and before["labeled"] == 4

    sign_in(journey, site.editor, next_path="/labeling/reviews")
    page.locator('tr[data-annotator="ana"]').get_by_role("link", name="Annotate as ana").click()
    page.wait_for_url(re.compile(r"/labeling/reviews/annotate\?annotator=ana$"))

    pressed: dict[str, str] = {}
    for n in range(10):
        task = page.locator("#task-key")
        key = task.get_attribute("data-task")
        assert key == str(n), (n, key)  # the next unlabeled task, in order
        assert page.locator("#progress").get_attribute("data-done") == str(n)
        label = TRUTH[n] if n != 5 else "positive"  # one against the truth, on purpose
        digit = str(LABELS.index(label) + 1)
        choice = page.locator(f'input[name="value"][data-key="{digit}"]')
        expect(page.locator('input[name="value"]:checked')).to_have_count(0)
        page.keyboard.press(digit)
        expect(choice).to_be_checked()
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(rf"annotator=ana&after={key}$"))
        pressed[key] = label

    expect(page.locator("#progress")).to_have_attribute("data-done", "10")
    expect(page.locator("#task-key")).to_have_attribute("data-task", "10")

    page.get_by_role("link", name="reviews", exact=True).click()
    page.wait_for_url(journey.url("/labeling/reviews"))
    expect(page.locator("#count-labeled")).to_have_text("10")
    expect(page.locator('tr[data-annotator="ana"] td.done')).to_have_text("10")
    expect(page.locator('tr[data-annotator="ben"] td.done')).to_have_text("4")
    expect(page.locator("#agreement-pairs")).to_contain_text("ana · ben")

    project = ws.labels.get("reviews")
    by_task = {t.id: t.key for t in ws.labels.labels.tasks(project.record.id)}
    recorded = {
        by_task[a.task_id]: a.value
        for a in ws.labels.labels.annotations(project.record.id)
        if a.annotator == "ana"
    }
    assert recorded == pressed
    after = ws.labels.status("reviews")
    assert after["per_annotator"]["ana"]["done"] == 10
    journey.finish()


def test_compare_two_runs(journey: Journey, site: Site) -> None:
    page = journey.page
    sign_in(journey, site.reader, next_path="/runs")
    compare = page.locator("#compare-form button.compare").first
    expect(compare).to_be_disabled()  # runs.js: two runs are needed
    page.get_by_role("checkbox", name="compare alpha").check()
    expect(compare).to_be_disabled()
    page.get_by_role("checkbox", name="compare beta").check()
    expect(compare).to_be_enabled()
    expect(compare).to_have_text("Compare 2 selected")
    with page.expect_navigation():
        compare.click()
    ids = [site.runs["alpha"], site.runs["beta"]]
    assert journey.path() in {f"/runs/compare?ids={a}&ids={b}" for a, b in (ids, ids[::-1])}
    expect(page.get_by_role("heading", level=1)).to_have_text("Compare 2 runs")

    params = page.locator("table.compare.params")
    differing = params.locator("tr.differs")
    expect(differing).to_have_count(1)
    expect(differing.locator("th")).to_contain_text("lr")
    same = params.locator("tbody tr", has=page.locator("th", has_text="depth"))
    expect(same).to_have_count(1)
    expect(same).not_to_have_class(re.compile("differs"))
    # The difference is highlighted: its cells have a colour the others do not.
    assert background(differing) not in ("rgba(0, 0, 0, 0)", "transparent", background(same))

    charts = page.locator('svg[id^="plot-compare-"]')
    expect(charts).to_have_count(2)  # auc and loss, both runs on each
    loss = page.locator('svg[aria-label="loss"]')
    expect(loss).to_be_visible()
    box = box_of(loss)
    assert box["width"] > 200 and box["height"] > 100, box
    assert loss.locator("path[fill='none']").count() == 2  # one line per run
    journey.finish()


def test_promote_a_model_and_a_reader_cannot(journey: Journey, site: Site) -> None:
    ws, page = site.ws, journey.page
    assert ws.models.resolve("churn@2").stage == "registered"
    sign_in(journey, site.editor, next_path="/models")
    page.get_by_role("link", name="churn", exact=True).click()
    page.wait_for_url(journey.url("/models/churn"))
    page.locator("table.versions").get_by_role("link", name="v2", exact=True).click()
    page.wait_for_url(journey.url("/models/churn/2"))
    expect(page.locator("h1 .stage")).to_have_text("registered")

    form = page.locator('form[action="/models/churn/2/stage"]')
    form.get_by_label("Move to stage").select_option("staging")
    form.get_by_label("reason").fill("ready for a look")
    with page.expect_navigation():
        form.get_by_role("button", name="Move").click()
    assert journey.path() == "/models/churn/2"
    expect(page.locator("h1 .stage")).to_have_text("staging")
    expect(page.locator("ol.timeline")).to_contain_text("ready for a look")
    assert ws.models.resolve("churn@2").stage == "staging"

    # A reader sees no stage form; a post forged with the page's own CSRF value is refused.
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    sign_in(journey, site.reader, next_path="/models/churn/2")
    expect(page.locator(".who")).to_contain_text("rita · reader")
    expect(page.locator("h1 .stage")).to_have_text("staging")
    expect(page.locator('form[action="/models/churn/2/stage"]')).to_have_count(0)
    expect(page.get_by_role("button", name="Move")).to_have_count(0)
    csrf = page.locator('form[action="/logout"] input[name="csrf"]').input_value()
    assert len(csrf) > 20
    answer = page.request.post(
        journey.url("/models/churn/2/stage"),
        form={"csrf": csrf, "stage": "production", "reason": "forged"},
        max_redirects=0,
    )
    assert answer.status == 403, (answer.status, answer.text()[:300])
    assert "needs editor" in answer.text()
    assert ws.models.resolve("churn@2").stage == "staging"
    page.reload()
    expect(page.locator("h1 .stage")).to_have_text("staging")
    journey.finish()


def test_watch_a_canary(journey: Journey, site: Site) -> None:
    page = journey.page
    sign_in(journey, site.reader, next_path="/deployments")
    page.get_by_role("link", name="churn-live", exact=True).click()
    page.wait_for_url(journey.url("/deployments/churn-live"))

    routes = page.locator("table.routes tbody tr")
    expect(routes).to_have_count(2)
    cells = [routes.nth(i).locator("td").all_inner_texts()[:3] for i in range(2)]
    assert cells == [["churn@1", "80", "80%"], ["churn@2", "20", "20%"]], cells
    expect(routes.nth(1).get_by_role("link", name="v2")).to_be_visible()

    canary = page.locator(".canary")
    expect(canary).to_contain_text(f"Maintenance run {site.maintenance_id}")
    expect(canary.locator("b").first).to_have_text("canary")
    expect(canary).to_contain_text("at 20% of the traffic")
    expect(canary).to_contain_text("Last check")

    chart = page.locator("svg#plot-requests")
    expect(chart).to_be_visible()
    box = box_of(chart)
    assert box["width"] > 200 and box["height"] > 100, box
    assert chart.locator("path, rect, polyline").count() > 2
    expect(chart).to_contain_text("v2")
    journey.finish()


def test_acknowledge_an_alert(journey: Journey, site: Site) -> None:
    ws, page = site.ws, journey.page
    [before] = [a for a in ws.monitors.alerts(monitor="watch") if a.id == site.alert_id]
    assert before.acked_at is None
    sign_in(journey, site.editor, next_path="/monitors")
    page.get_by_role("link", name="watch", exact=True).first.click()
    page.wait_for_url(journey.url("/monitors/watch"))

    row = page.locator(f"#alert-{site.alert_id}")
    expect(row).to_contain_text("drift_share > 0.3")
    row.get_by_label("note").fill("retraining is under way")
    with page.expect_navigation():
        row.get_by_role("button", name="Acknowledge").click()
    assert journey.path() == "/monitors/watch"

    row = page.locator(f"#alert-{site.alert_id}")
    expect(row).to_contain_text("token:ed")
    expect(row.locator("q")).to_have_text("retraining is under way")
    expect(row.get_by_role("button", name="Acknowledge")).to_have_count(0)
    [after] = [a for a in ws.monitors.alerts(monitor="watch") if a.id == site.alert_id]
    assert (after.acked_by, after.ack_note) == ("token:ed", "retraining is under way")
    journey.finish()


# -- the checks themselves, and known bugs -----------------------------------------------


def test_the_checks_catch_a_misbehaving_page(journey: Journey, site: Site) -> None:
    """A page that logs an error, throws, fetches from another host and gets a 404 fails
    `Journey.finish`: the clean journeys above are worth something. (Served pages also
    have a CSP that blocks other hosts; a blank page has none, so the guard itself acts.)"""
    page = journey.page
    assert page.goto(journey.url("/static/nope.css")) is not None
    page.goto("about:blank")
    page.set_content(
        """<img src="http://example.invalid/pixel.png">
        <script>console.error("boom"); setTimeout(() => { throw new Error("bang"); });</script>"""
    )
    page.wait_for_load_state("networkidle")
    expect(page.locator("img")).to_have_count(1)
    with pytest.raises(AssertionError):
        journey.finish()
    assert journey.foreign == ["http://example.invalid/pixel.png"]
    assert journey.error_statuses == [(404, journey.url("/static/nope.css"))]
    assert [text for text, _ in journey.console_errors if text == "boom"] == ["boom"]
    assert any("bang" in e for e in journey.page_errors)


def test_signing_in_never_leads_to_another_site(journey: Journey, site: Site) -> None:
    page = journey.page
    page.goto(journey.url("/login?next=//example.invalid/phish"))
    page.locator("#token").fill(site.reader)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert journey.path() == "/"
    expect(page.locator(".who")).to_contain_text("rita · reader")
    journey.finish()


def test_a_wrong_token_keeps_the_destination(journey: Journey, site: Site) -> None:
    page = journey.page
    page.goto(journey.url("/runs"))
    assert journey.path() == "/login?next=/runs"
    page.locator("#token").fill("mc_not-a-real-token")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    page.locator("#token").fill(site.reader)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert journey.path() == "/runs"
