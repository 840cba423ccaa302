"""The HTML evaluation report: self-contained, escaped, with every plot, and small."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression

from modelcycle.evaluation.engine import EvaluationResult, SliceSpec, evaluate
from modelcycle.evaluation.report import fmt, render_report
from modelcycle.evaluation.svg import nice_ticks, tick_label

CLASSIFICATION_PLOTS = {"roc", "pr", "confusion", "calibration", "importance"}
REGRESSION_PLOTS = {"residuals", "predicted-vs-actual", "importance"}


def binary_result(labels: tuple[str, str] = ("no", "yes"), seed: int = 0) -> EvaluationResult:
    X, y = make_classification(n_samples=800, n_features=5, flip_y=0.1, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"feature_{i}" for i in range(5)])
    frame["region"] = np.random.default_rng(seed).choice(["north", "south"], len(frame))
    target = np.array(labels)[y]
    features = [f"feature_{i}" for i in range(5)]
    model = LogisticRegression().fit(frame[features], target)
    return evaluate(
        lambda d: model.predict(d[features]),
        frame,
        target,
        predict_proba=lambda d: model.predict_proba(d[features]),
        slices=[SliceSpec(column="region"), SliceSpec(filter="feature_0 > 0")],
        importance_rows=300,
    )


def multiclass_result(names: list[str]) -> EvaluationResult:
    X, y = make_classification(
        n_samples=900, n_features=6, n_informative=4, n_classes=len(names), random_state=1
    )
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    target = np.array(names, dtype=object)[y]
    model = LogisticRegression(max_iter=500).fit(frame, target)
    return evaluate(
        model.predict,
        frame,
        target,
        predict_proba=model.predict_proba,
        classes=list(model.classes_),
        importance_rows=200,
    )


def regression_result() -> EvaluationResult:
    X, y = make_regression(n_samples=1200, n_features=4, noise=10.0, random_state=2)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = LinearRegression().fit(frame, y)
    return evaluate(model.predict, frame, y, importance_rows=300)


def render(result: EvaluationResult, **kw: Any) -> str:
    return render_report(
        result, title="churn model", model_ref="churn@3", dataset_ref="customers@7", **kw
    )


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = _Collector()
    collector.feed(html)
    return collector.tags


def plots_in(html: str) -> dict[str, str]:
    """data-plot name -> the whole <svg> element, each parsed as XML to prove it is
    well formed."""
    out = {}
    for svg in re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL):
        element = ET.fromstring(svg)
        name = element.get("data-plot")
        assert name is not None and name not in out
        assert element.get("id") == f"plot-{name}"
        assert element.get("aria-label") and element.find("title") is not None
        out[name] = svg
    return out


def table(html: str, table_id: str) -> str:
    return html.split(f'<table id="{table_id}">', 1)[1].split("</table>", 1)[0]


def metric_row(html: str, key: str) -> str:
    rows = table(html, "metrics-table").split("<tr")
    (row,) = [r for r in rows if f'data-metric="{key}"' in r]
    return row


def assert_self_contained(html: str) -> None:
    tags = tags_of(html)
    assert not [t for t, _ in tags if t in {"script", "link", "img", "iframe", "object"}]
    for _, attrs in tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), (key, value)
    assert "http://" not in html and "https://" not in html
    assert "@import" not in html and "url(" not in html.replace("url(#clip-", "")


def test_binary_report_has_every_plot_and_is_self_contained() -> None:
    result = binary_result()
    html = render(result, created_at="2025-01-02T03:04:05+00:00")
    assert set(plots_in(html)) == CLASSIFICATION_PLOTS
    assert_self_contained(html)
    assert f'data-metric="accuracy">{fmt(result.metrics["accuracy"])}' in html
    assert "churn@3" in html and "customers@7" in html and "2025-01-02T03:04:05+00:00" in html
    assert "positive class: yes" in html
    slices = table(html, "slices-table")
    assert slices.count("<td>region</td>") == 2
    assert "<td>filter</td>" in slices and "<code>feature_0 &gt; 0</code>" in slices


def test_multiclass_report_has_a_legend_entry_per_class() -> None:
    names = ["alpha", "beta", "gamma", "delta"]
    html = render(multiclass_result(names))
    plots = plots_in(html)
    assert set(plots) == CLASSIFICATION_PLOTS
    legend = plots["roc"].split('class="legend"')[1]
    for name in names:
        assert f">{name} (" in legend
    confusion = ET.fromstring(plots["confusion"])
    cells = [e for e in confusion.iter("rect")]
    assert len(cells) == len(names) ** 2


def test_regression_report_has_residuals_and_scatter() -> None:
    result = regression_result()
    html = render(result)
    plots = plots_in(html)
    assert set(plots) == REGRESSION_PLOTS
    assert_self_contained(html)
    assert plots["predicted-vs-actual"].count("<circle") == 500
    assert f'data-metric="rmse">{fmt(result.metrics["rmse"])}' in html
    assert "500 of 1,200 rows, sampled at random" in html


def test_every_text_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    result = multiclass_result([evil, "b&c", 'q"uote'])
    html = render_report(
        result,
        title=evil,
        model_ref=evil,
        dataset_ref="d@1",
        extra={evil: evil},
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert set(plots_in(html)) == CLASSIFICATION_PLOTS  # still well-formed XML


def test_champion_column_shows_deltas_in_the_right_direction() -> None:
    challenger = binary_result(seed=0)
    champion = binary_result(seed=0)
    champion.metrics = {
        **champion.metrics,
        "accuracy": challenger.metrics["accuracy"] - 0.05,
        "log_loss": challenger.metrics["log_loss"] - 0.1,
    }
    html = render(challenger, champion=("churn@2", champion))
    assert '<th class="num">Champion</th>' in html and "churn@2" in html
    accuracy = metric_row(html, "accuracy")
    assert f'data-champion-metric="accuracy">{fmt(champion.metrics["accuracy"])}<' in accuracy
    assert '<td class="num better">+0.05</td>' in accuracy  # higher than the champion's
    assert '<td class="num worse">+0.1</td>' in metric_row(html, "log_loss")  # a higher loss
    assert '<td class="num ">+0</td>' in metric_row(html, "f1_macro")


def test_skipped_metrics_and_notes_are_explained() -> None:
    result = binary_result()
    result.metrics.pop("roc_auc")
    result.skipped["roc_auc"] = "y_true holds only class 'no'"
    result.notes.append("curves show 10 of 12 classes")
    html = render(result)
    assert "ROC AUC is not reported: y_true holds only class &#39;no&#39;." in html
    assert "<li>curves show 10 of 12 classes</li>" in html


def test_report_without_probabilities_or_importance_still_renders() -> None:
    X, y = make_classification(n_samples=300, random_state=3)
    frame = pd.DataFrame(X).add_prefix("x")
    model = LogisticRegression().fit(frame, y)
    result = evaluate(model.predict, frame, y, importance=False)
    html = render(result)
    assert set(plots_in(html)) == {"confusion"}
    assert "no probabilities" in html


@pytest.mark.slow
def test_report_for_a_million_rows_is_under_two_megabytes() -> None:
    n = 1_000_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"x{i}" for i in range(6)])
    frame["shop"] = rng.integers(0, 80, n).astype(str)
    weights = np.linspace(-1, 1, 6)

    def proba(d: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-(d[[f"x{i}" for i in range(6)]].to_numpy() @ weights)))
        return np.column_stack([1 - p, p])

    def predict(d: pd.DataFrame) -> np.ndarray:
        return (proba(d)[:, 1] > 0.5).astype(int)

    y = (rng.random(n) < proba(frame)[:, 1]).astype(int)
    result = evaluate(
        predict,
        frame,
        y,
        predict_proba=proba,
        slices=[SliceSpec(column="shop"), SliceSpec(filter="x0 > 1")],
    )
    html = render(result)
    size = len(html.encode("utf-8"))
    assert size < 2_000_000, size
    assert set(plots_in(html)) == CLASSIFICATION_PLOTS
    assert len(result.slices) == 52  # 50 shops, "(other)", the filter
    assert result.importance[0]["feature"] in {"x0", "x5"}  # the largest |weight|


def test_nice_ticks_and_labels() -> None:
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-3.2, 7.9) == [-2.5, 0, 2.5, 5, 7.5]
    assert nice_ticks(0, 1234) == [0, 250, 500, 750, 1000]
    ticks = nice_ticks(0, 0.01)
    assert [tick_label(t, ticks) for t in ticks] == [
        "0",
        "0.002",
        "0.004",
        "0.006",
        "0.008",
        "0.010",
    ]
    assert [tick_label(t, [-2.5, 0, 2.5]) for t in (-2.5, 0, 2.5)] == ["-2.5", "0", "2.5"]
    assert tick_label(2500.0, [0, 2500]) == "2,500"
