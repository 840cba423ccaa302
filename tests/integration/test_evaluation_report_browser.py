"""The evaluation report opens in a real browser (Debian's chromium, driven by Playwright):
no console errors, no network requests, every plot drawn with a non-zero size."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, sync_playwright
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression

from modelcycle.evaluation.engine import EvaluationResult, SliceSpec, evaluate
from modelcycle.evaluation.report import fmt, render_report

CLASSIFICATION_PLOTS = ["roc", "pr", "confusion", "calibration", "importance"]
REGRESSION_PLOTS = ["residuals", "predicted-vs-actual", "importance"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed; these tests need Debian's chromium package")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Visit:
    page: Page
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


def open_report(browser: Browser, path: Path) -> Visit:
    """Open ``path``, letting through only the request for the file itself."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    visit = Visit(page)
    url = path.as_uri()

    def guard(route: Route) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            visit.blocked.append(route.request.url)
            route.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            visit.console_errors.append(message.text)

    page.route("**/*", guard)
    page.on("request", lambda r: visit.requests.append(r.url))
    page.on("console", console)
    page.on("pageerror", lambda e: visit.page_errors.append(str(e)))
    page.goto(url, wait_until="load")
    return visit


def assert_clean(visit: Visit, path: Path) -> None:
    assert visit.requests == [path.as_uri()]
    assert visit.blocked == []
    assert visit.console_errors == []
    assert visit.page_errors == []


def assert_plots_drawn(page: Page, names: list[str]) -> None:
    for name in names:
        svg = page.locator(f'svg[data-plot="{name}"]')
        assert svg.count() == 1, name
        box = svg.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50, (name, box)
        assert svg.is_visible(), name
        marks = svg.locator("path, rect, circle").count()
        assert marks > 2, (name, marks)


def classification_result() -> EvaluationResult:
    X, y = make_classification(
        n_samples=1500, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    frame["segment"] = np.random.default_rng(0).choice(["a", "b", "c"], len(frame))
    labels = np.array(["bronze", "silver", "gold"])[y]
    features = [f"f{i}" for i in range(6)]
    model = LogisticRegression(max_iter=500).fit(frame[features], labels)
    return evaluate(
        lambda d: model.predict(d[features]),
        frame,
        labels,
        predict_proba=lambda d: model.predict_proba(d[features]),
        classes=list(model.classes_),
        slices=[SliceSpec(column="segment"), SliceSpec(filter="f0 > 0.5", name="high f0")],
        importance_rows=400,
    )


def regression_result() -> EvaluationResult:
    X, y = make_regression(n_samples=1500, n_features=4, noise=15.0, random_state=1)
    frame = pd.DataFrame(X, columns=["rooms", "area", "age", "floor"])
    model = LinearRegression().fit(frame, y)
    return evaluate(model.predict, frame, y, importance_rows=400)


def test_classification_report_renders_in_chromium(browser: Browser, tmp_path: Path) -> None:
    result = classification_result()
    champion = classification_result()
    path = tmp_path / "report.html"
    path.write_text(
        render_report(
            result,
            title="tier model",
            model_ref="tier@2",
            dataset_ref="customers@5",
            champion=("tier@1", champion),
        ),
        encoding="utf-8",
    )
    visit = open_report(browser, path)
    try:
        assert_clean(visit, path)
        page = visit.page
        assert page.title() == "tier model"
        assert_plots_drawn(page, CLASSIFICATION_PLOTS)
        accuracy = page.locator('#metrics-table td[data-metric="accuracy"]')
        assert accuracy.is_visible()
        assert accuracy.inner_text().strip() == fmt(result.metrics["accuracy"])
        assert page.get_by_role("img", name="ROC curve").is_visible()
        slices = page.locator("#slices-table tbody tr")
        assert slices.count() == 4  # three segments and the filter
        legend = page.locator('svg[data-plot="roc"] .legend').text_content() or ""
        for label in ("bronze", "silver", "gold"):
            assert label in legend
    finally:
        visit.page.close()


def test_regression_report_renders_in_chromium(browser: Browser, tmp_path: Path) -> None:
    result = regression_result()
    path = tmp_path / "report.html"
    path.write_text(
        render_report(result, title="price model", model_ref="price@1", dataset_ref="homes@1"),
        encoding="utf-8",
    )
    visit = open_report(browser, path)
    try:
        assert_clean(visit, path)
        assert_plots_drawn(visit.page, REGRESSION_PLOTS)
        rmse = visit.page.locator('#metrics-table td[data-metric="rmse"]')
        assert rmse.is_visible() and rmse.inner_text().strip() == fmt(result.metrics["rmse"])
    finally:
        visit.page.close()


def test_the_guard_catches_a_page_that_fetches_something(browser: Browser, tmp_path: Path) -> None:
    # The checks above are only worth something if a fetching page would fail them.
    html = render_report(
        regression_result(), title="t", model_ref="m@1", dataset_ref="d@1"
    ).replace("</body>", '<img src="https://example.invalid/pixel.png"></body>')
    path = tmp_path / "fetching.html"
    path.write_text(html, encoding="utf-8")
    visit = open_report(browser, path)
    try:
        assert visit.blocked == ["https://example.invalid/pixel.png"]
        with pytest.raises(AssertionError):
            assert_clean(visit, path)
    finally:
        visit.page.close()
