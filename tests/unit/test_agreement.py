"""Inter-annotator agreement and consensus: hand-computed cases, scikit-learn parity."""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from modelcycle.core.errors import UsageError
from modelcycle.labeling.agreement import (
    agreement_report,
    box_agreement,
    box_iou,
    cohen_kappa,
    consensus,
    fleiss_kappa,
    krippendorff_alpha_interval,
    krippendorff_alpha_nominal,
)

# ---------------------------------------------------------------- Cohen's kappa


def test_cohen_kappa_two_by_two_by_hand() -> None:
    # 50 items: both "yes" 20, A yes/B no 5, A no/B yes 10, both "no" 15.
    # p_o = (20 + 15) / 50 = 0.7
    # A says yes 25/50 = 0.5, B says yes 30/50 = 0.6
    # p_e = 0.5·0.6 + 0.5·0.4 = 0.5
    # kappa = (0.7 − 0.5) / (1 − 0.5) = 0.4
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_cohen_kappa_equals_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(5, 400)), int(rng.integers(2, 7))
    a = rng.integers(0, k, n)
    b = np.where(rng.random(n) < rng.random(), a, rng.integers(0, k, n))
    names = np.array([f"c{i}" for i in range(k)])
    assert cohen_kappa(names[a].tolist(), names[b].tolist()) == pytest.approx(
        cohen_kappa_score(names[a], names[b]), abs=1e-9
    )
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-9)


def test_cohen_kappa_labels_filter_like_sklearn() -> None:
    a = ["x", "y", "z", "x", "y", "z", "x"]
    b = ["x", "y", "y", "z", "y", "x", "x"]
    expected = cohen_kappa_score(a, b, labels=["x", "y"])
    assert cohen_kappa(a, b, labels=["x", "y"]) == pytest.approx(expected, abs=1e-9)
    assert cohen_kappa(a, b) != pytest.approx(expected)


def test_cohen_kappa_single_shared_category_is_one() -> None:
    # sklearn returns nan (0/0) here; we call it perfect agreement.
    assert cohen_kappa(["cat"] * 4, ["cat"] * 4) == 1.0


def test_cohen_kappa_bad_input() -> None:
    with pytest.raises(UsageError, match="3 labels but b has 2"):
        cohen_kappa(["a", "b", "c"], ["a", "b"])
    with pytest.raises(UsageError, match="no items"):
        cohen_kappa([], [])
    with pytest.raises(UsageError, match="no items"):
        cohen_kappa(["a"], ["a"], labels=["z"])
    with pytest.raises(UsageError, match="sequence of labels"):
        cohen_kappa("abc", "abc")
    with pytest.raises(UsageError, match="hashable"):
        cohen_kappa([["a"]], [["a"]])


# ---------------------------------------------------------------- Fleiss' kappa

# Fleiss (1971), as worked on Wikipedia: 10 subjects, 5 categories, 14 raters each.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_wikipedia_example() -> None:
    # P̄ = 0.378, P_e = 0.213 → κ = (0.378 − 0.213) / (1 − 0.213) ≈ 0.210
    assert fleiss_kappa(np.array(FLEISS_TABLE)) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_kappa_varying_rater_counts_by_hand() -> None:
    # Items with 2, 3 and 2 raters. P_i: (4−2)/2 = 1, (9−3)/6 = 1, (1+1−2)/2 = 0 → P̄ = 2/3.
    # Category totals 3 and 4 of 7: P_e = 9/49 + 16/49 = 25/49.
    # κ = (2/3 − 25/49) / (1 − 25/49) = 23/72
    assert fleiss_kappa([[2, 0], [0, 3], [1, 1]]) == pytest.approx(23 / 72, abs=1e-12)


def test_fleiss_kappa_bad_input() -> None:
    with pytest.raises(UsageError, match="fewer than 2 ratings"):
        fleiss_kappa([[1, 0], [1, 1]])
    with pytest.raises(UsageError, match="whole numbers"):
        fleiss_kappa([[1.5, 0.5]])
    with pytest.raises(UsageError, match="2-D"):
        fleiss_kappa([1, 2, 3])


# ---------------------------------------------------------------- Krippendorff's alpha

N = None
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", example C:
# 4 observers (rows) × 12 units (columns), with missing values.
KRIPPENDORFF_OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]
KRIPPENDORFF_UNITS = [list(unit) for unit in zip(*KRIPPENDORFF_OBSERVERS, strict=True)]


def test_krippendorff_nominal_published_example() -> None:
    assert krippendorff_alpha_nominal(KRIPPENDORFF_UNITS) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_interval_published_example() -> None:
    assert krippendorff_alpha_interval(KRIPPENDORFF_UNITS) == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_accepts_arrays_with_nan() -> None:
    array = np.array(KRIPPENDORFF_UNITS, dtype=float)  # None → nan
    assert np.isnan(array).sum() == 7
    assert krippendorff_alpha_nominal(array) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha_interval(array) == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_ignores_units_with_one_rating() -> None:
    # Unit 12 in the example has a single rating; more such units change nothing.
    base = krippendorff_alpha_nominal(KRIPPENDORFF_UNITS)
    assert krippendorff_alpha_nominal([*KRIPPENDORFF_UNITS, [7], [N, 9, N]]) == base


def test_krippendorff_nominal_small_hand_case() -> None:
    # Units (a,a), (a,b), (b,b): coincidences o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n = 6,
    # n_a = n_b = 3. alpha = 1 − (n − 1)·(o_ab + o_ba) / (n_a·n_b + n_b·n_a) = 1 − 5·2/18
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(
        1 - 10 / 18, abs=1e-12
    )


def test_krippendorff_errors() -> None:
    with pytest.raises(UsageError, match="two or more ratings"):
        krippendorff_alpha_nominal([["a"], [N, "b"]])
    with pytest.raises(UsageError, match="expected a number"):
        krippendorff_alpha_interval([[1, "x"]])
    with pytest.raises(UsageError, match="not a list of ratings"):
        krippendorff_alpha_nominal([1, 2])


# ---------------------------------------------------------------- boxes


def box(x: float, y: float, w: float, h: float, label: str = "cat") -> dict[str, Any]:
    return {"label": label, "x": x, "y": y, "w": w, "h": h}


def test_box_iou_by_hand() -> None:
    # 10×10 boxes offset by (5, 5): intersection 5·5 = 25, union 100 + 100 − 25 = 175.
    assert box_iou(box(0, 0, 10, 10), box(5, 5, 10, 10)) == pytest.approx(25 / 175)
    assert box_iou(box(0, 0, 10, 10), box(0, 0, 5, 5)) == pytest.approx(0.25)
    assert box_iou(box(0, 0, 10, 10), box(10, 0, 10, 10)) == 0.0  # touching edges
    assert box_iou(box(3, 4, 5, 6), box(3, 4, 5, 6)) == 1.0


def test_box_agreement() -> None:
    # IoU of equal 10×10 boxes shifted by s along x: (10 − s) / (10 + s).
    a = [box(0, 0, 10, 10), box(2, 0, 10, 10)]
    b = [box(0, 0, 10, 10), box(3, 0, 10, 10)]
    # pairs by IoU: a0–b0 1.0, a1–b1 9/11, a1–b0 8/12, a0–b1 7/13 → two matches
    assert box_agreement(a, b) == 1.0
    # at 0.9 only a0–b0 qualifies: 2·1 / (2 + 2)
    assert box_agreement(a, b, iou_threshold=0.9) == 0.5
    # a different label never matches
    assert box_agreement([box(0, 0, 10, 10, "dog")], [box(0, 0, 10, 10, "cat")]) == 0.0
    # one box against two: 2·1 / 3
    assert box_agreement([box(0, 0, 10, 10)], b) == pytest.approx(2 / 3)
    assert box_agreement([], []) == 1.0
    assert box_agreement([], [box(0, 0, 1, 1)]) == 0.0


def test_box_errors() -> None:
    with pytest.raises(UsageError, match="has no 'w'"):
        box_iou({"x": 0, "y": 0, "h": 1}, box(0, 0, 1, 1))
    with pytest.raises(UsageError, match="must not be negative"):
        box_iou(box(0, 0, -1, 1), box(0, 0, 1, 1))
    with pytest.raises(UsageError, match="iou_threshold"):
        box_agreement([], [], iou_threshold=0)
    with pytest.raises(UsageError, match="expected a number"):
        box_iou(box(0, 0, 1, 1), {"x": "0", "y": 0, "w": 1, "h": 1})


# ---------------------------------------------------------------- reports

SMALL = [
    ("t1", "a", "x"),
    ("t1", "b", "x"),
    ("t1", "c", "y"),
    ("t2", "a", "y"),
    ("t2", "b", "x"),
    ("t3", "a", "x"),
]


def test_classification_report_by_hand() -> None:
    report = agreement_report(SMALL, "classification", ["x", "y", "z"])
    json.dumps(report, allow_nan=False)
    assert report["kind"] == "classification"
    assert report["tasks"] == 3
    assert report["tasks_with_overlap"] == 2
    assert report["annotators"] == ["a", "b", "c"]
    overall = report["overall"]
    # t1 (x, x, y): P = (2² + 1² − 3) / (3·2) = 1/3; t2 (y, x): P = 0 → P̄ = 1/6
    assert overall["percent_agreement"] == pytest.approx(1 / 6)
    # shares x 3/5, y 2/5 → P_e = 0.52 → κ = (1/6 − 0.52) / 0.48
    assert overall["fleiss_kappa"] == pytest.approx((1 / 6 - 0.52) / 0.48)
    # Krippendorff: Σ_u (m² − Σn²)/(m − 1) = (9 − 5)/2 + (4 − 2)/1 = 4; n = 5;
    # n² − Σ n_c² = 25 − 13 = 12 → α = 1 − 4·4/12
    assert overall["krippendorff_alpha"] == pytest.approx(1 - 16 / 12)
    pairs = {(p["a"], p["b"]): p for p in report["pairs"]}
    assert set(pairs) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert pairs[("a", "b")]["n"] == 2
    assert pairs[("a", "b")]["percent_agreement"] == 0.5
    # a–b: (x, x) and (y, x): p_o = 1/2; a is x/y half each, b always x → p_e = 1/2 → κ = 0
    assert pairs[("a", "b")]["cohen_kappa"] == 0.0
    assert overall["cohen_kappa_mean"] == pytest.approx(
        sum(p["cohen_kappa"] for p in pairs.values()) / 3
    )
    # Consensus of the others: in t1, a and b each see (x, y): a tie, undefined; c sees
    # (x, x) and disagrees. In t2 each sees the other's differing label.
    per = report["per_annotator"]
    assert per["a"] == {"n": 2, "agreement_with_others": 0.0, "agreement_with_consensus": 0.0}
    assert per["c"]["n"] == 1
    # Per label, positive specific agreement over rater pairs:
    # x: t1 has 2 of 3 raters on x, t2 1 of 2 → 2·1 / (2·2 + 1·1) = 2/5
    assert report["per_label"]["x"] == {"n": 3, "agreement": pytest.approx(0.4)}
    assert report["per_label"]["y"] == {"n": 2, "agreement": 0.0}
    assert report["per_label"]["z"] == {"n": 0, "agreement": None}


def test_classification_report_multi_label() -> None:
    records = [
        ("t1", "a", ["b", "a"]),
        ("t1", "b", ["a"]),
        ("t2", "a", ["b"]),
        ("t2", "b", ["b"]),
        ("t3", "a", ["a", "b"]),
        ("t3", "b", ["b", "a"]),
    ]
    report = agreement_report(records, "classification", ["a", "b"])
    # categories (a,b) (b) (a,b) vs (a) (b) (a,b): p_o = 2/3;
    # p_e = (2/3·1/3)[(a,b)] + (1/3·1/3)[(b)] = 3/9 → κ = (2/3 − 1/3) / (2/3) = 1/2
    assert report["pairs"][0]["cohen_kappa"] == pytest.approx(0.5)
    # label a: positive in both at t1 and t3 → 2·2 / (2 + 2) = 1
    # label b: t1 only a, t2 and t3 both → 2·2 / (1 + 2 + 2) = 4/5
    assert report["per_label"]["a"] == {"n": 4, "agreement": 1.0}
    assert report["per_label"]["b"] == {"n": 5, "agreement": pytest.approx(0.8)}


def random_records(seed: int, tasks: int = 300, annotators: int = 5) -> list[Any]:
    rng = random.Random(seed)
    names = [f"ann{i}" for i in range(annotators)]
    labels = ["p", "q", "r", "s"]
    records = []
    for t in range(tasks):
        truth = rng.choice(labels)
        for who in rng.sample(names, rng.randint(1, annotators)):
            value = truth if rng.random() < 0.7 else rng.choice(labels)
            records.append((f"task{t}", who, value))
    return records


@pytest.mark.parametrize("seed", range(3))
def test_classification_report_matches_direct_computation(seed: int) -> None:
    records = random_records(seed)
    report = agreement_report(records, "classification", ["p", "q", "r", "s"])
    by_task: dict[str, dict[str, str]] = {}
    for task, who, value in records:
        by_task.setdefault(task, {})[who] = value
    shared = {t: v for t, v in by_task.items() if len(v) >= 2}
    assert report["tasks_with_overlap"] == len(shared)
    for pair in report["pairs"]:
        common = [t for t, v in by_task.items() if pair["a"] in v and pair["b"] in v]
        assert pair["n"] == len(common)
        expected = cohen_kappa_score(
            [by_task[t][pair["a"]] for t in common], [by_task[t][pair["b"]] for t in common]
        )
        assert pair["cohen_kappa"] == pytest.approx(expected, abs=1e-9)
    counts = [[Counter(v.values())[c] for c in "pqrs"] for v in shared.values()]
    assert report["overall"]["fleiss_kappa"] == pytest.approx(fleiss_kappa(counts), abs=1e-12)
    assert report["overall"]["krippendorff_alpha"] == pytest.approx(
        krippendorff_alpha_nominal([list(v.values()) for v in by_task.values()]), abs=1e-12
    )
    # agreement with the others' unique most common label, counted the slow way
    for name, stats in report["per_annotator"].items():
        hits = tries = 0
        for values in shared.values():
            if name not in values:
                continue
            others = Counter(v for who, v in values.items() if who != name).most_common()
            if len(others) == 1 or others[0][1] > others[1][1]:
                tries += 1
                hits += others[0][0] == values[name]
        assert stats["agreement_with_consensus"] == (hits / tries if tries else None)


def test_number_report() -> None:
    records = [("t1", "a", 1.0), ("t1", "b", 2.0), ("t2", "a", 4.0), ("t2", "b", 4.0)]
    records += [("t2", "c", 7.0), ("t3", "c", 3.0)]
    report = agreement_report(records, "number")
    json.dumps(report, allow_nan=False)
    assert report["measure"] == "krippendorff_alpha"
    expected = krippendorff_alpha_interval([[1.0, 2.0], [4.0, 4.0, 7.0], [3.0]])
    assert report["overall"]["krippendorff_alpha"] == pytest.approx(expected)
    # |1−2|, |4−4|, |4−7|, |4−7| → 7/4
    assert report["overall"]["mean_abs_diff"] == pytest.approx(7 / 4)
    pairs = {(p["a"], p["b"]): p for p in report["pairs"]}
    assert pairs[("a", "b")]["mean_abs_diff"] == pytest.approx(0.5)
    assert pairs[("a", "b")]["krippendorff_alpha"] == pytest.approx(
        krippendorff_alpha_interval([[1.0, 2.0], [4.0, 4.0]])
    )
    # c against the others' mean in t2: |7 − 4| = 3
    assert report["per_annotator"]["c"]["mean_abs_diff_from_consensus"] == 3.0


def span(start: int, end: int, label: str) -> dict[str, Any]:
    return {"start": start, "end": end, "label": label}


def test_spans_report_exact_match_f1() -> None:
    records = [
        ("t1", "a", [span(0, 5, "PER"), span(10, 15, "ORG")]),
        ("t1", "b", [span(0, 5, "PER"), span(10, 14, "ORG")]),  # ORG end differs
        ("t2", "a", []),
        ("t2", "b", []),
        ("t3", "a", [span(2, 4, "LOC")]),
        ("t3", "b", [span(2, 4, "PER")]),  # label differs
    ]
    report = agreement_report(records, "spans", ["PER", "ORG", "LOC"])
    # pooled over tasks: matched 1 + 0 + 0, spans 4 + 0 + 2 → 2·1/6
    assert report["overall"]["span_f1"] == pytest.approx(1 / 3)
    assert report["pairs"] == [{"a": "a", "b": "b", "n": 3, "span_f1": pytest.approx(1 / 3)}]


def test_boxes_report_mean_of_box_agreement() -> None:
    records = [
        ("img1", "a", [box(0, 0, 10, 10)]),
        ("img1", "b", [box(1, 0, 10, 10)]),  # IoU 9/11, matched
        ("img2", "a", [box(0, 0, 10, 10)]),
        ("img2", "b", [box(0, 0, 10, 10), box(50, 50, 5, 5)]),  # 2·1/3
    ]
    report = agreement_report(records, "boxes", ["cat"])
    assert report["overall"]["box_agreement"] == pytest.approx((1 + 2 / 3) / 2)
    assert report["per_annotator"]["a"]["agreement_with_others"] == pytest.approx(5 / 6)


def test_report_without_overlap() -> None:
    report = agreement_report([("t1", "a", "x"), ("t2", "b", "y")], "classification", ["x", "y"])
    json.dumps(report, allow_nan=False)
    assert report["tasks_with_overlap"] == 0
    assert report["pairs"] == []
    assert all(value is None for value in report["overall"].values())
    assert report["per_annotator"]["a"] == {
        "n": 0,
        "agreement_with_others": None,
        "agreement_with_consensus": None,
    }


def test_report_later_record_replaces_earlier() -> None:
    records = [("t1", "a", "x"), ("t1", "b", "y"), ("t1", "b", "x")]
    assert agreement_report(records, "classification")["overall"]["percent_agreement"] == 1.0


def test_report_bad_input() -> None:
    with pytest.raises(UsageError, match="unknown label kind"):
        agreement_report([], "polygons")
    with pytest.raises(UsageError, match="record 0 is not"):
        agreement_report([("t1", "a")], "classification")
    with pytest.raises(UsageError, match="must be strings"):
        agreement_report([("t1", 7, "x")], "classification")
    with pytest.raises(UsageError, match="task 't1', annotator 'a'"):
        agreement_report([("t1", "a", 3)], "classification")
    with pytest.raises(UsageError, match="expected a number"):
        agreement_report([("t1", "a", "3")], "number")
    with pytest.raises(UsageError, match="span 0"):
        agreement_report([("t1", "a", [{"start": 0}])], "spans")
    with pytest.raises(UsageError, match="labels must be a list"):
        agreement_report([], "classification", "xy")


def test_classification_report_100k_tasks_is_fast() -> None:
    rng = random.Random(0)
    labels = ["a", "b", "c", "d", "e"]
    records = []
    for t in range(100_000):
        truth = rng.choice(labels)
        for who in ("ann1", "ann2", "ann3"):
            records.append((f"task{t}", who, truth if rng.random() < 0.8 else rng.choice(labels)))
    start = time.perf_counter()
    report = agreement_report(records, "classification", labels)
    elapsed = time.perf_counter() - start
    assert report["tasks_with_overlap"] == 100_000
    assert 0.5 < report["overall"]["fleiss_kappa"] < 0.8
    assert elapsed < 10


# ---------------------------------------------------------------- consensus


def test_classification_consensus_majority_ties_and_reviewers() -> None:
    records = [
        *[("t1", who, v) for who, v in (("a", "x"), ("b", "x"), ("c", "y"))],  # 2–1
        *[("t2", who, v) for who, v in (("a", "x"), ("b", "y"))],  # tie
        ("t3", "a", "z"),  # single annotation
        *[("t4", who, v) for who, v in (("a", "x"), ("b", "y"), ("c", "z"), ("d", "x"))],
    ]
    settled, conflicts = consensus(records, "classification")
    assert settled == {"t1": "x", "t3": "z", "t4": "x"}
    assert conflicts == ["t2"]
    # a reviewer settles the tie, overrides a majority, and may decide unlabeled tasks
    settled, conflicts = consensus(
        records, "classification", reviewer_decisions={"t2": "y", "t1": "y", "t9": "x"}
    )
    assert settled == {"t1": "y", "t2": "y", "t3": "z", "t4": "x", "t9": "x"}
    assert conflicts == []
    settled, conflicts = consensus(records, "classification", rule="unanimous")
    assert settled == {"t3": "z"}
    assert conflicts == ["t1", "t2", "t4"]


def test_classification_consensus_multi_label() -> None:
    records = [("t1", "a", ["b", "a"]), ("t1", "b", ["a", "b"]), ("t1", "c", ["a"])]
    assert consensus(records, "classification") == ({"t1": ["a", "b"]}, [])


def test_number_consensus_is_mean() -> None:
    records = [("t1", "a", 1.0), ("t1", "b", 2.0), ("t1", "c", 6), ("t2", "a", 5.5)]
    assert consensus(records, "number") == ({"t1": 3.0, "t2": 5.5}, [])
    assert consensus(records, "number", rule="unanimous") == ({"t2": 5.5}, ["t1"])


def test_spans_consensus_medoid() -> None:
    good = [span(0, 5, "PER"), span(10, 15, "ORG")]
    records = [
        ("t1", "a", good),
        ("t1", "b", [span(0, 5, "PER"), span(10, 14, "ORG")]),  # F1 with a: 0.5
        ("t1", "c", list(good)),  # F1 with a: 1
        ("t2", "a", [span(0, 3, "PER")]),
        ("t2", "b", [span(4, 9, "PER")]),  # F1 0: conflict
    ]
    settled, conflicts = consensus(records, "spans")
    # mean agreement: a (0.5 + 1)/2, b 0.5, c 0.75 → a, the first of the tied best
    assert settled == {"t1": good}
    assert conflicts == ["t2"]


def test_boxes_consensus_medoid_and_conflict() -> None:
    records = [
        ("img1", "a", [box(0, 0, 10, 10)]),
        ("img1", "b", [box(1, 0, 10, 10)]),
        ("img1", "c", [box(40, 40, 10, 10)]),  # agrees with nobody
        ("img2", "a", [box(0, 0, 10, 10, "cat")]),
        ("img2", "b", [box(0, 0, 10, 10, "dog")]),
    ]
    settled, conflicts = consensus(records, "boxes")
    assert settled == {"img1": [box(0, 0, 10, 10)]}
    assert conflicts == ["img2"]


def test_consensus_bad_input() -> None:
    with pytest.raises(UsageError, match="unknown consensus rule"):
        consensus([], "classification", rule="vote")
    with pytest.raises(UsageError, match="reviewer decision for task 't1'"):
        consensus([("t1", "a", "x")], "classification", reviewer_decisions={"t1": 5})


def test_pairs_cover_every_annotator_pair() -> None:
    records = [("t", name, "x") for name in "abcde"]
    report = agreement_report(records, "classification")
    got = [(p["a"], p["b"]) for p in report["pairs"]]
    assert got == list(itertools.combinations("abcde", 2))
    assert all(p["cohen_kappa"] == 1.0 for p in report["pairs"])
    assert not math.isnan(report["overall"]["krippendorff_alpha"])
