"""The drift report: self-contained HTML, one histogram per checked column, escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import polars as pl

from modelcycle.monitoring.drift import DriftOptions, DriftResult, Reference, compare
from modelcycle.monitoring.multivariate import multivariate_drift
from modelcycle.monitoring.report import fmt, render_report
from modelcycle.monitoring.sources import FrameSource

TRICKY = "<b>tax & fees</b>"


def result() -> DriftResult:
    rng = np.random.default_rng(0)
    n = 3000
    ref = pl.DataFrame(
        {
            "income": rng.lognormal(10, 1, n),
            TRICKY: rng.normal(0, 1, n),
            "plan": rng.choice(["basic", "pro", "team"], n).tolist(),
            "many": rng.choice([f"k{i}" for i in range(40)], n).tolist(),
            "gone": rng.normal(size=n),
        }
    )
    cur = ref.with_columns(pl.col("income") * 1.5, pl.col(TRICKY) + 0.01).drop("gone")
    out, _ = compare(
        Reference(FrameSource(ref, "train@3"), None), FrameSource(cur, "live"), DriftOptions()
    )
    out.multivariate = multivariate_drift(FrameSource(ref), FrameSource(cur))
    return out


def test_the_report_is_self_contained_and_has_a_plot_per_checked_column() -> None:
    html = render_report(result())
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert TRICKY not in html and "&lt;b&gt;tax &amp; fees&lt;/b&gt;" in html
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(svgs) == 5  # income, TRICKY, plan, many, and the multivariate chunks
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    assert 'data-verdict="no_drift"' in html
    assert 'data-column="income" data-status="ok" data-drifted="true"' in html
    assert 'data-column="gone" data-status="missing"' in html
    assert "40 others" not in html and "20 others" in html  # 20 shown, the rest gathered
    assert len(html) < 200_000


def test_scores_for_people() -> None:
    assert fmt(None) == "—"
    assert fmt(float("inf")) == "∞"
    assert fmt(0.123456) == "0.1235"
    assert fmt(1.2e-9) == "1.2e-09"
