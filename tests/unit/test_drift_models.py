"""The model-based checks: the domain classifier (text, embeddings), multivariate drift by
PCA reconstruction error, and classifier performance estimated without labels (CBPE)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

from modelcycle.monitoring.domain import random_aucs
from modelcycle.monitoring.drift import DriftOptions, Reference, compare
from modelcycle.monitoring.estimate import ASSUMPTIONS, estimate_performance
from modelcycle.monitoring.multivariate import multivariate_drift
from modelcycle.monitoring.sources import FrameSource

WORDS = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta",
    "eta", "theta", "iota", "kappa", "lambda", "mu",
]  # fmt: skip


def sentences(rng: np.random.Generator, n: int, words: list[str]) -> list[str]:
    return [" ".join(rng.choice(words, 6)) + f" #{i}" for i, _ in enumerate(range(n))]


@pytest.mark.parametrize(
    ("n", "test"), [(400, "domain_classifier_percentile"), (1500, "domain_classifier")]
)
def test_text_drift_by_domain_classifier(n: int, test: str) -> None:
    rng = np.random.default_rng(1)
    ref = pl.DataFrame({"review": sentences(rng, n, WORDS[:8])})
    same = pl.DataFrame({"review": sentences(rng, n, WORDS[:8])})
    moved = pl.DataFrame({"review": sentences(rng, n, WORDS[4:])})
    stable, _ = compare(Reference(FrameSource(ref), None), FrameSource(same), DriftOptions())
    drifted, _ = compare(Reference(FrameSource(ref), None), FrameSource(moved), DriftOptions())
    for result in (stable, drifted):
        column = result.column("review")
        assert (column.kind, column.test, column.status) == ("text", test, "ok")
    assert not stable.column("review").drifted
    assert drifted.column("review").drifted
    assert drifted.column("review").score == pytest.approx(1.0, abs=0.02)


def test_embedding_drift_by_domain_classifier() -> None:
    rng = np.random.default_rng(2)
    ref = pl.DataFrame({"vec": rng.normal(size=(2000, 8)).tolist()})
    same = pl.DataFrame({"vec": rng.normal(size=(2000, 8)).tolist()})
    moved = pl.DataFrame(
        {"vec": (rng.normal(size=(2000, 8)) + np.array([0.5] + [0.0] * 7)).tolist()}
    )
    stable, _ = compare(Reference(FrameSource(ref), None), FrameSource(same), DriftOptions())
    drifted, _ = compare(Reference(FrameSource(ref), None), FrameSource(moved), DriftOptions())
    assert stable.column("vec").kind == "embedding"
    assert not stable.column("vec").drifted
    assert drifted.column("vec").drifted


def test_random_scores_auc_is_centred_on_one_half() -> None:
    labels = np.array([0] * 200 + [1] * 200)
    aucs = random_aucs(labels, 1000)
    assert aucs.mean() == pytest.approx(0.5, abs=0.01)
    # Mann-Whitney's null standard deviation for 200 + 200
    assert aucs.std() == pytest.approx(np.sqrt(401 / (12 * 200 * 200)), rel=0.1)


# -- multivariate ------------------------------------------------------------------------------
def correlated(rng: np.random.Generator, n: int, rho: float) -> pl.DataFrame:
    a = rng.normal(size=n)
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=n)
    c = rng.normal(size=n)
    return pl.DataFrame({"a": a, "b": b, "c": c, "group": rng.choice(["x", "y"], n).tolist()})


def test_multivariate_drift_sees_a_flipped_correlation_the_columns_hide() -> None:
    rng = np.random.default_rng(3)
    ref = correlated(rng, 20_000, 0.9)
    same = correlated(rng, 5_000, 0.9)
    flipped = correlated(rng, 5_000, -0.9)
    per_column, _ = compare(Reference(FrameSource(ref), None), FrameSource(flipped), DriftOptions())
    assert per_column.drifted_columns == []  # each column keeps its distribution
    stable = multivariate_drift(FrameSource(ref), FrameSource(same))
    drifted = multivariate_drift(FrameSource(ref), FrameSource(flipped))
    assert stable.status == drifted.status == "ok"
    assert stable.columns == ["a", "b", "c", "group"]
    assert len(stable.reference_chunks) == 10  # of 2,000 rows
    assert [c.rows for c in stable.current_chunks] == [2000, 2000, 1000]
    assert stable.lower <= stable.current_error <= stable.upper and not stable.drifted
    assert drifted.drifted and drifted.current_error > drifted.upper
    assert all(c.alert for c in drifted.current_chunks)


def test_multivariate_drift_without_current_rows() -> None:
    rng = np.random.default_rng(4)
    ref = correlated(rng, 1000, 0.5)
    result = multivariate_drift(FrameSource(ref), FrameSource(ref.head(0)))
    assert result.status == "no_data" and not result.drifted
    assert result.to_dict()["current_error"] is None


# -- performance estimation --------------------------------------------------------------------
def _population(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Covariate shift: x moves, P(y | x) stays (a fixed logistic model)."""
    x = rng.normal(size=(n, 3)) + np.array([shift, -shift / 2, 0.0])
    logits = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.5 * x[:, 2] - 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    return x, y


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_estimated_accuracy_tracks_the_realized_one_under_covariate_shift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x_train, y_train = _population(rng, 5_000, 0.0)
    model = LogisticRegression().fit(x_train, y_train)
    x_ref, y_ref = _population(rng, 20_000, 0.0)
    reference = {"y": pl.Series(y_ref), "p": pl.Series(model.predict_proba(x_ref)[:, 1])}
    for shift in (0.0, 0.8, 1.6):
        x_cur, y_cur = _population(rng, 10_000, shift)
        current = {"y": pl.Series(y_cur), "p": pl.Series(model.predict_proba(x_cur)[:, 1])}
        est = estimate_performance(reference, current, target="y", scores=["p"])
        assert est.realized is not None
        assert abs(est.estimated["accuracy"] - est.realized["accuracy"]) <= 0.03
        assert abs(est.estimated["f1"] - est.realized["f1"]) <= 0.05
        assert abs(est.estimated["roc_auc"] - est.realized["roc_auc"]) <= 0.03
    assert est.assumptions == ASSUMPTIONS and len(est.assumptions) >= 3


def test_estimate_for_three_classes_and_per_chunk() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(12_000, 2))
    logits = np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in probs])
    names = ["cat", "dog", "fox"]
    frame = {n: pl.Series(probs[:, i]) for i, n in enumerate(names)}
    frame["label"] = pl.Series(np.array(names)[y])
    ref = {k: v[:8000] for k, v in frame.items()}
    cur = {k: v[8000:] for k, v in frame.items()}
    est = estimate_performance(ref, cur, target="label", scores=names, chunk_size=1000)
    assert est.classes == names and len(est.chunks) == 4
    assert est.realized is not None
    assert abs(est.estimated["accuracy"] - est.realized["accuracy"]) <= 0.03
    assert abs(est.estimated["roc_auc"] - est.realized["roc_auc"]) <= 0.03
