"""Label-error detection: confident learning on out-of-fold probabilities."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import load_digits

from modelcycle.core.errors import UsageError
from modelcycle.labeling.issues import (
    detect_label_issues,
    features_from_frame,
    find_label_issues,
    out_of_fold_probabilities,
)


def flip_labels(
    y: np.ndarray, fraction: float, classes: int, seed: int
) -> tuple[np.ndarray, set[int]]:
    """Move ``fraction`` of the labels to a different class, chosen at random."""
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(y), int(fraction * len(y)), replace=False)
    noisy = y.copy()
    noisy[flipped] = (noisy[flipped] + rng.integers(1, classes, len(flipped))) % classes
    assert (noisy[flipped] != y[flipped]).all()
    return noisy, set(flipped.tolist())


# ---------------------------------------------------------------- the rule, by hand


def test_find_label_issues_by_hand() -> None:
    labels = ["a", "a", "a", "b", "b"]
    probs = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.4, 0.6], [0.1, 0.9]]
    # t_a = (0.9 + 0.8 + 0.2) / 3 ≈ 0.633; t_b = (0.6 + 0.9) / 2 = 0.75.
    # Row 2 (given a): only b reaches its threshold (0.8 ≥ 0.75) → flagged, b suggested.
    # Row 3 (given b): a 0.4 < 0.633 and b 0.6 < 0.75 → no confident class.
    issues = find_label_issues(labels, probs, ["a", "b"], strict=True)
    assert issues == [{"index": 2, "given": "a", "suggested": "b", "score": pytest.approx(0.8)}]
    # One rule hit → one lowest-p(given) row is added, if another class is likelier:
    # the lowest is row 2 itself, so nothing new.
    assert find_label_issues(labels, probs, ["a", "b"]) == issues


def test_find_label_issues_adds_low_self_confidence_rows() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    probs = [
        [0.9, 0.05, 0.05],
        [0.9, 0.05, 0.05],
        [0.05, 0.9, 0.05],  # class 1 reaches its threshold → the rule flags it
        [0.3, 0.6, 0.1],  # class 1 likelier than 0, but under its threshold
        [0.05, 0.9, 0.05],
        [0.05, 0.9, 0.05],
        [0.05, 0.75, 0.2],
        [0.05, 0.05, 0.9],
        [0.05, 0.05, 0.9],
        [0.1, 0.15, 0.75],
    ]
    # t_0 = (0.9 + 0.9 + 0.05 + 0.3) / 4 = 0.5375, t_1 = t_2 = (0.9 + 0.9 + 0.75) / 3 = 0.85
    strict = find_label_issues(labels, probs, [0, 1, 2], strict=True)
    assert [i["index"] for i in strict] == [2]
    # The rule flagged 1 row, so the 1 row of lowest p(given) is added: row 2 (0.05)
    # again, nothing new.
    assert find_label_issues(labels, probs, [0, 1, 2]) == strict
    # Row 9 now also meets the rule: class 0 at 0.6 ≥ t_0 (t_2 = 2.15/3 ≈ 0.717 > 0.35).
    probs[9] = [0.6, 0.05, 0.35]
    strict = find_label_issues(labels, probs, [0, 1, 2], strict=True)
    assert [i["index"] for i in strict] == [2, 9]
    # Two rule hits → the two rows of lowest p(given), 2 (0.05) and 3 (0.3); row 3 is
    # new, suggested class 1. Sorted by 1 − p(given): 0.95, 0.7, 0.65.
    issues = find_label_issues(labels, probs, [0, 1, 2])
    assert [(i["index"], i["suggested"]) for i in issues] == [(2, 1), (3, 1), (9, 0)]
    assert [i["score"] for i in issues] == pytest.approx([0.95, 0.7, 0.65])


def test_find_label_issues_bad_input() -> None:
    with pytest.raises(UsageError, match="shape"):
        find_label_issues(["a", "b"], [[0.5, 0.5]], ["a", "b"])
    with pytest.raises(UsageError, match="'c' of row 1 is not one of the classes"):
        find_label_issues(["a", "c"], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"])
    with pytest.raises(UsageError, match="probabilities"):
        find_label_issues(["a"], [[1.5, -0.5]], ["a", "b"])
    with pytest.raises(UsageError, match="more than once"):
        find_label_issues(["a"], [[0.5, 0.5]], ["a", "a"])


# ---------------------------------------------------------------- on real data


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_digits_with_flipped_labels(seed: int) -> None:
    digits = load_digits()
    noisy, flipped = flip_labels(digits.target, 0.05, 10, seed)
    issues = detect_label_issues(digits.data, noisy, seed=0)
    json.dumps(issues)
    flagged = {issue["index"] for issue in issues}
    caught = flagged & flipped
    recall, precision = len(caught) / len(flipped), len(caught) / len(flagged)
    assert recall >= 0.8, (recall, precision)
    assert precision >= 0.5, (recall, precision)
    for issue in issues:
        if issue["index"] in caught:
            assert issue["given"] == noisy[issue["index"]]
    # most suggestions for caught rows are the true digit
    right = sum(digits.target[i["index"]] == i["suggested"] for i in issues if i["index"] in caught)
    assert right >= 0.9 * len(caught)


def test_strict_flags_a_subset() -> None:
    digits = load_digits()
    noisy, flipped = flip_labels(digits.target, 0.05, 10, 3)
    probs, classes = out_of_fold_probabilities(digits.data, noisy, seed=0)
    assert classes == list(range(10))
    assert probs.shape == (len(noisy), 10)
    assert np.allclose(probs.sum(axis=1), 1.0)
    strict = {i["index"] for i in find_label_issues(noisy, probs, classes, strict=True)}
    loose = {i["index"] for i in find_label_issues(noisy, probs, classes)}
    assert strict < loose
    assert len(loose & flipped) > len(strict & flipped)


TOPICS = {
    "cooking": "recipe oven flour sugar butter bake simmer garlic onion pan salt dough sauce",
    "sports": "goal match team player score coach league season referee stadium ball striker",
    "tech": "software laptop server code bug release python database cloud network chip app",
}
FILLER = [
    "the",
    "a",
    "and",
    "of",
    "to",
    "in",
    "with",
    "for",
    "on",
    "this",
    "that",
    "was",
    "is",
    "very",
    "really",
]


def test_text_with_flipped_labels() -> None:
    rng = np.random.default_rng(0)
    names = sorted(TOPICS)
    texts, labels = [], []
    for i in range(450):
        topic = names[i % 3]
        words = [*rng.choice(TOPICS[topic].split(), 6), *rng.choice(FILLER, 6)]
        words.append(str(rng.choice(TOPICS[names[(i + 1) % 3]].split())))  # a stray word
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(topic)
    truth = np.array([names.index(t) for t in labels])
    noisy_codes, flipped = flip_labels(truth, 0.05, 3, 1)
    noisy = [names[c] for c in noisy_codes]
    issues = detect_label_issues(texts, noisy, seed=0)
    flagged = {i["index"] for i in issues}
    assert len(flagged & flipped) >= 0.8 * len(flipped)
    assert len(flagged & flipped) >= 0.5 * len(flagged)
    assert all(i["suggested"] == names[truth[i["index"]]] for i in issues if i["index"] in flipped)


# ---------------------------------------------------------------- folds and inputs


def test_folds_shrink_to_the_smallest_class() -> None:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (20, 3)), rng.normal(5, 1, (3, 3))])
    y = ["big"] * 20 + ["small"] * 3
    probs, classes = out_of_fold_probabilities(X, y, folds=5)
    assert classes == ["big", "small"]
    assert probs.shape == (23, 2)
    assert (probs[:20, 0] > 0.5).all() and (probs[20:, 1] > 0.5).all()


def test_single_member_class_is_an_error() -> None:
    X = np.arange(12.0).reshape(6, 2)
    with pytest.raises(UsageError, match="class 'lonely' has a single example"):
        out_of_fold_probabilities(X, ["a"] * 5 + ["lonely"])


def test_out_of_fold_bad_input() -> None:
    X = np.arange(12.0).reshape(6, 2)
    with pytest.raises(UsageError, match="6 rows but y has 5"):
        out_of_fold_probabilities(X, ["a", "b"] * 2 + ["a"])
    with pytest.raises(UsageError, match="only one class"):
        out_of_fold_probabilities(X, ["a"] * 6)
    with pytest.raises(UsageError, match="missing label at row 2"):
        out_of_fold_probabilities(X, ["a", "b", None, "a", "b", "a"])
    with pytest.raises(UsageError, match="rows × features"):
        out_of_fold_probabilities(np.arange(6.0), ["a", "b"] * 3)
    X[1, 1] = np.nan
    with pytest.raises(UsageError, match="first in row 1"):
        out_of_fold_probabilities(X, ["a", "b"] * 3)
    with pytest.raises(UsageError, match="folds"):
        out_of_fold_probabilities(np.ones((6, 2)), ["a", "b"] * 3, folds=1)


def test_features_from_frame_numeric() -> None:
    df = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "x": [1.0, None, 3.0, float("nan")],
            "flag": [True, False, None, True],
            "name": ["a", "b", "c", "d"],
            "label": ["p", "q", "p", "q"],
        }
    )
    X = features_from_frame(df, ["id", "label"])
    assert isinstance(X, np.ndarray)
    # x: median of 1 and 3 fills both gaps; flag: median of 1, 0, 1 is 1; text is ignored
    assert X.tolist() == [[1.0, 1.0], [2.0, 0.0], [3.0, 1.0], [2.0, 1.0]]


def test_features_from_frame_text() -> None:
    df = pl.DataFrame({"text": ["good", None, "bad"], "label": ["p", "q", "p"]})
    assert features_from_frame(df, ["label"]) == ["good", "", "bad"]
    both = df.with_columns(n=pl.lit(1.0))
    assert features_from_frame(both, ["label"], text_column="text") == ["good", "", "bad"]
    two = df.with_columns(other=pl.lit("x"))
    with pytest.raises(UsageError, match="2 text columns"):
        features_from_frame(two, ["label"])
    with pytest.raises(UsageError, match="no column 'nope'"):
        features_from_frame(df, ["nope"])
    with pytest.raises(UsageError, match="not text"):
        features_from_frame(both, ["label"], text_column="n")
