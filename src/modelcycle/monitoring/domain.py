"""The domain-classifier test for text and embedding columns.

A classifier learns to tell reference rows (label 0) from current rows (label 1) on half
of them and is scored by ROC AUC on the other half. 0.5 means it cannot tell them apart;
the larger the AUC, the stronger the drift. Two rules turn the AUC into a verdict
(Evidently's, for text):

- absolute, for references of more than 1000 rows: drift when AUC > 0.55;
- percentile, for smaller ones (where an AUC of 0.55 happens by chance): drift when the
  AUC is above the 95th percentile of the AUCs that 1000 draws of random scores get on
  the same held-out labels.

Text is turned into TF-IDF features (words, sublinear term frequency); embeddings are
standardised. The classifier is an L2-regularised logistic regression. At most
`MAX_ROWS` rows of each side are used (drawn at random, seeded), so the cost stays
bounded on large tables; the split and the draws are seeded too, so a run repeats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelcycle.monitoring import kinds as k
from modelcycle.monitoring.sketches import ColumnProblem, FloatArray

MAX_ROWS = 10_000
RANDOM_DRAWS = 1000
SEED = 42
MIN_ROWS = 4


@dataclass(frozen=True)
class DomainResult:
    auc: float
    test_labels: Any = field(repr=False)

    def random_auc_quantile(self, q: float, draws: int = RANDOM_DRAWS) -> float:
        """The ``q`` quantile of the ROC AUC of random scores on the held-out labels."""
        return float(np.quantile(random_aucs(self.test_labels, draws), q))


def random_aucs(labels: Any, draws: int, seed: int = SEED) -> FloatArray:
    """ROC AUCs of ``draws`` random score vectors for ``labels`` (0/1): with random
    scores the positives' ranks are a random subset of 1..N (ties have probability 0)."""
    y = np.asarray(labels)
    n, pos = len(y), int(y.sum())
    neg = n - pos
    rng = np.random.default_rng(seed)
    aucs = np.empty(draws)
    for start in range(0, draws, 100):
        stop = min(draws, start + 100)
        ranks = np.argsort(rng.random((stop - start, n)), axis=1)[:, :pos] + 1
        aucs[start:stop] = (ranks.sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)
    return aucs


def _sample(rows: Any, rng: np.random.Generator) -> Any:
    n = len(rows)
    if n <= MAX_ROWS:
        return rows
    pick = np.sort(rng.choice(n, MAX_ROWS, replace=False))
    return rows[pick] if isinstance(rows, np.ndarray) else rows.gather(pick)


def domain_classifier(reference: Any, current: Any, kind: str) -> DomainResult:
    """Train the classifier on half the rows and return its held-out ROC AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    if reference is None or current is None:
        raise ColumnProblem("the domain classifier needs the rows of both sides")
    if len(reference) < MIN_ROWS or len(current) < MIN_ROWS:
        raise ColumnProblem(
            f"too few rows for a domain classifier ({len(reference)} and {len(current)}; "
            f"at least {MIN_ROWS} on each side)"
        )
    rng = np.random.default_rng(SEED)
    ref, cur = _sample(reference, rng), _sample(current, rng)
    labels = np.concatenate([np.zeros(len(ref), dtype=np.int8), np.ones(len(cur), dtype=np.int8)])
    order = np.arange(len(labels))
    train, test = train_test_split(order, test_size=0.5, random_state=SEED, stratify=labels)
    if kind == k.TEXT:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = np.asarray(ref.to_list() + cur.to_list(), dtype=object)
        vectorizer = TfidfVectorizer(sublinear_tf=True, max_features=100_000)
        try:
            x_train = vectorizer.fit_transform(texts[train])
        except ValueError as e:  # no words at all
            raise ColumnProblem(f"the text has no words to learn from ({e})") from e
        x_test = vectorizer.transform(texts[test])
    else:
        from sklearn.preprocessing import StandardScaler

        matrix = np.vstack([ref, cur])
        scaler = StandardScaler().fit(matrix[train])
        x_train, x_test = scaler.transform(matrix[train]), scaler.transform(matrix[test])
    model = LogisticRegression(max_iter=1000)
    model.fit(x_train, labels[train])
    auc = float(roc_auc_score(labels[test], model.predict_proba(x_test)[:, 1]))
    return DomainResult(auc, labels[test])
