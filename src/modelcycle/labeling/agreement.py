"""Inter-annotator agreement, and consensus labels from several annotators.

What is measured, by label kind:

- ``classification``: Cohen's kappa per annotator pair, Fleiss' kappa, Krippendorff's
  alpha (nominal) and percent agreement. A multi-label value is one category: the
  sorted tuple of its labels.
- ``number``: Krippendorff's alpha (interval) and the mean absolute difference.
- ``spans``: exact-span F1; a span matches when start, end and label are all equal.
- ``boxes``: F1 of boxes matched one-to-one, same label and IoU ≥ a threshold.

A chance-corrected measure that is 0/0 because every rating falls in one category is
1.0 here (the raters agree perfectly); scikit-learn returns nan. Measures that cannot be
computed (no task rated twice) are ``None`` in reports.

Classification and numbers are computed with numpy over integer codes; 100,000 tasks ×
3 annotators take about a second, most of it spent checking the records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelcycle.core.errors import UsageError
from modelcycle.labeling.schema import KINDS

__all__ = [
    "agreement_report",
    "box_agreement",
    "box_iou",
    "cohen_kappa",
    "consensus",
    "fleiss_kappa",
    "krippendorff_alpha_interval",
    "krippendorff_alpha_nominal",
]

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Rect = tuple[float, float, float, float]
LabeledRect = tuple[Any, Rect]

RULES = ("majority", "unanimous")
MEASURES = {
    "classification": "cohen_kappa",
    "number": "krippendorff_alpha",
    "spans": "span_f1",
    "boxes": "box_agreement",
}


# -- classification measures --------------------------------------------------------------
def cohen_kappa(a: Sequence[Any], b: Sequence[Any], labels: Sequence[Any] | None = None) -> float:
    """Cohen's kappa between two raters' labels for the same items, in the same order.

    Equals ``sklearn.metrics.cohen_kappa_score``, except when both raters put every item
    in one category: sklearn returns nan (0/0), this returns 1.0. ``labels``, if given,
    keeps only the items both raters labeled with one of them, as sklearn does.
    """
    xs, ys = _label_list(a, "a"), _label_list(b, "b")
    if len(xs) != len(ys):
        raise UsageError(
            f"cohen_kappa: a has {len(xs)} labels but b has {len(ys)}",
            hint="pass one label per item from each rater, items in the same order",
        )
    codes, categories = _factorize(xs + ys, "cohen_kappa")
    ca, cb = codes[: len(xs)], codes[len(xs) :]
    if labels is not None:
        wanted = set(_factorize(_label_list(labels, "labels"), "cohen_kappa labels")[1])
        allowed = np.array([c in wanted for c in categories], dtype=bool)
        keep = allowed[ca] & allowed[cb]
        ca, cb = ca[keep], cb[keep]
    if len(ca) == 0:
        raise UsageError(
            "cohen_kappa: no items to compare",
            hint="pass non-empty label lists (and `labels` that occur in them)",
        )
    kappa, _, _ = _kappas(np.zeros(len(ca), dtype=np.int64), ca, cb, 1)
    return float(kappa[0])


def fleiss_kappa(counts: npt.ArrayLike) -> float:
    """Fleiss' kappa from an items × categories table of how many raters chose each.

    Items may have different numbers of raters (at least 2 each): item agreement uses the
    item's own rater count n_i, P_i = (Σ_j n_ij² − n_i) / (n_i (n_i − 1)), and category
    shares are over all ratings; with a constant rater count this is Fleiss (1971).
    """
    try:
        table = np.asarray(counts, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise UsageError(
            f"fleiss_kappa: counts is not a table of numbers ({e})",
            hint="pass an items × categories array of rater counts",
        ) from None
    if table.ndim != 2 or table.size == 0:
        raise UsageError(
            f"fleiss_kappa: counts must be a non-empty 2-D table, got shape {table.shape}",
            hint="pass an items × categories array of rater counts",
        )
    if not np.isfinite(table).all() or (table < 0).any() or (table != np.round(table)).any():
        raise UsageError(
            "fleiss_kappa: counts must be non-negative whole numbers",
            hint="each cell is how many raters put that item in that category",
        )
    raters = table.sum(axis=1)
    short = np.flatnonzero(raters < 2)
    if len(short):
        raise UsageError(
            f"fleiss_kappa: {len(short)} items have fewer than 2 ratings (first: row {short[0]})",
            hint="drop items rated by fewer than two raters",
        )
    return _fleiss(raters, (table**2).sum(axis=1), table.sum(axis=0))


def krippendorff_alpha_nominal(units: Any) -> float:
    """Krippendorff's alpha for nominal labels.

    ``units`` is one list of ratings per item (any lengths), or an items × raters array;
    None and NaN are missing ratings. Items with fewer than two ratings are ignored.
    """
    unit, values = _units(units)
    codes, _ = _factorize(values, "krippendorff_alpha_nominal")
    alpha = _alpha_nominal(*_category_stats(unit, codes))
    if alpha is None:
        raise UsageError(
            "krippendorff_alpha_nominal: no item has two or more ratings",
            hint="alpha needs items rated by at least two raters",
        )
    return alpha


def krippendorff_alpha_interval(units: Any) -> float:
    """Krippendorff's alpha for numbers (interval metric, squared differences).

    Same input as :func:`krippendorff_alpha_nominal`; every rating must be a number.
    Gives 1.0 when all pairable ratings are equal.
    """
    unit, values = _units(units)
    x = np.array(
        [_number(v, f"units[{u}]") for u, v in zip(unit.tolist(), values, strict=True)],
        dtype=np.float64,
    )
    alpha = _alpha_interval(unit, x)
    if alpha is None:
        raise UsageError(
            "krippendorff_alpha_interval: no item has two or more ratings",
            hint="alpha needs items rated by at least two raters",
        )
    return alpha


# -- boxes --------------------------------------------------------------------------------
def box_iou(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Intersection over union of two boxes ``{"x", "y", "w", "h"}`` (pixels, top-left)."""
    return _iou(_rect(a, "box a"), _rect(b, "box b"))


def box_agreement(
    boxes_a: Sequence[Mapping[str, Any]],
    boxes_b: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.5,
) -> float:
    """F1 of two annotators' boxes for one image: 2·matched / (len(a) + len(b)).

    Boxes match one-to-one when their labels are equal and IoU ≥ ``iou_threshold``,
    greedily from the highest IoU. Two empty lists agree (1.0).
    """
    threshold = _threshold(iou_threshold)
    a, b = _box_list(boxes_a, "boxes_a"), _box_list(boxes_b, "boxes_b")
    return _f1(*_match_boxes(a, b, threshold))


# -- reports and consensus ----------------------------------------------------------------
def agreement_report(
    records: Iterable[tuple[str, str, Any]],
    kind: str,
    labels: Sequence[str] = (),
    *,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """Agreement between annotators, as a JSON-able dict.

    ``records`` are ``(task_key, annotator, value)``; a later record for the same task
    and annotator replaces an earlier one. Only tasks with two or more annotators count.
    The keys: ``kind``, ``measure`` (the pair measure's name), ``tasks``,
    ``tasks_with_overlap``, ``annotators``, ``overall``, ``pairs`` (one per annotator pair
    that shares a task), ``per_annotator`` and ``per_label``.

    - classification: ``overall`` has ``cohen_kappa_mean`` (mean over pairs),
      ``fleiss_kappa`` (rater counts may vary by task), ``krippendorff_alpha`` (nominal)
      and ``percent_agreement`` (share of agreeing rater pairs, averaged over tasks).
      ``per_label`` gives each label's positive specific agreement over all rater pairs,
      2·both / (count_a + count_b) where a rating is positive when it contains the label;
      ``labels`` sets the order, labels found only in the data follow.
    - number: ``krippendorff_alpha`` (interval) and ``mean_abs_diff`` over rater pairs.
    - spans: ``span_f1``, micro-averaged over rater pairs (pooled span counts).
    - boxes: ``box_agreement``, the mean of :func:`box_agreement` over rater pairs.

    ``per_annotator[name]``: ``n`` (its annotations on shared tasks),
    ``agreement_with_others`` (mean of its pairs' measure) and
    ``agreement_with_consensus``: for classification the share of its labels equal to the
    others' most common label, where that is unique; for spans and boxes the mean
    agreement with the others' medoid value; for numbers None, and
    ``mean_abs_diff_from_consensus`` (from the others' mean) instead.
    """
    if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
        raise UsageError("labels must be a list of label names", hint='e.g. ["cat", "dog"]')
    table = _table(records, kind)
    if kind == "classification":
        body = _classification_report(table, labels)
    elif kind == "number":
        body = _number_report(table)
    else:
        body = _set_report(table, kind, _matcher(kind, iou_threshold))
    overlap = int(np.count_nonzero(table.sizes >= 2))
    return {
        "kind": kind,
        "measure": MEASURES[kind],
        "tasks": len(table.tasks),
        "tasks_with_overlap": overlap,
        "annotators": list(table.annotators),
        **body,
    }


def consensus(
    records: Iterable[tuple[str, str, Any]],
    kind: str,
    rule: str = "majority",
    reviewer_decisions: Mapping[str, Any] | None = None,
    *,
    iou_threshold: float = 0.5,
) -> tuple[dict[str, Any], list[str]]:
    """One value per task from several annotations; returns (settled values, conflicts).

    A task is either settled (in the dict) or conflicted (in the list), never both. A
    task with one annotation is settled with that value. With ``rule="majority"``:

    - classification: the most common value; a tie for first place is a conflict.
    - number: the mean.
    - spans and boxes: the medoid, the value with the highest mean agreement (F1) with
      the others (ties: first annotator by name); a conflict when that mean is < 0.5.

    ``rule="unanimous"`` makes any disagreement a conflict. A reviewer's decision always
    wins, also for tasks that have no annotations.
    """
    if rule not in RULES:
        raise UsageError(f"unknown consensus rule {rule!r}", hint=f"use one of: {', '.join(RULES)}")
    table = _table(records, kind)
    if kind == "classification":
        pairs = _classification_consensus(table, rule)
    elif kind == "number":
        pairs = _number_consensus(table, rule)
    else:
        pairs = _set_consensus(table, rule, _matcher(kind, iou_threshold))
    settled: dict[str, Any] = {}
    conflicts: list[str] = []
    for task_key, value in pairs:
        if value is _CONFLICT:
            conflicts.append(task_key)
        else:
            settled[task_key] = value
    if reviewer_decisions is not None:
        if not isinstance(reviewer_decisions, Mapping) or not all(
            isinstance(k, str) for k in reviewer_decisions
        ):
            raise UsageError(
                "reviewer_decisions must map task keys (text) to values",
                hint='e.g. {"task-1": "cat"}',
            )
        normalize = _NORMALIZERS[kind]
        for task_key, value in reviewer_decisions.items():
            normalize(value, f"reviewer decision for task {task_key!r}")
            settled[task_key] = value
        conflicts = [k for k in conflicts if k not in reviewer_decisions]
    return settled, conflicts


# -- records ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Table:
    """One annotation per (task, annotator), sorted by task and then annotator."""

    tasks: list[str]  # task index -> key, in order of first appearance
    annotators: list[str]  # sorted
    task: Ints  # per annotation
    annotator: Ints
    raw: list[Any]  # values as given
    value: list[Any]  # normalized by kind
    starts: Ints  # per task: its first annotation
    sizes: Ints  # per task: how many annotations


def _table(records: Iterable[tuple[str, str, Any]], kind: str) -> _Table:
    if kind not in KINDS:
        raise UsageError(f"unknown label kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
    if isinstance(records, str | bytes | Mapping) or not isinstance(records, Iterable):
        raise UsageError(
            "records must be a list of (task_key, annotator, value)",
            hint='e.g. [("task-1", "alice", "cat"), ("task-1", "bob", "dog")]',
        )
    latest: dict[tuple[str, str], Any] = {}
    for i, record in enumerate(records):
        if not isinstance(record, Sequence) or isinstance(record, str | bytes) or len(record) != 3:
            raise UsageError(
                f"record {i} is not a (task_key, annotator, value) triple: {record!r:.80}",
                hint='e.g. ("task-1", "alice", "cat")',
            )
        task_key, who, value = record
        if not isinstance(task_key, str) or not isinstance(who, str):
            raise UsageError(
                f"record {i}: task_key and annotator must be strings, "
                f"got {type(task_key).__name__} and {type(who).__name__}",
                hint="convert row numbers and user ids to text",
            )
        latest[(task_key, who)] = value
    normalize = _NORMALIZERS[kind]
    annotators = sorted({who for _, who in latest})
    who_index = {name: i for i, name in enumerate(annotators)}
    task_index: dict[str, int] = {}
    task_ids, who_ids, raw, value = [], [], [], []
    for (task_key, who), v in latest.items():
        task_ids.append(task_index.setdefault(task_key, len(task_index)))
        who_ids.append(who_index[who])
        raw.append(v)
        value.append(normalize(v, f"task {task_key!r}, annotator {who!r}"))
    task = np.array(task_ids, dtype=np.int64)
    annotator = np.array(who_ids, dtype=np.int64)
    order = np.lexsort((annotator, task))
    task, annotator = task[order], annotator[order]
    index = order.tolist()
    starts = np.flatnonzero(np.r_[True, task[1:] != task[:-1]]) if len(task) else task
    sizes = np.diff(np.r_[starts, len(task)]).astype(np.int64)
    return _Table(
        tasks=list(task_index),
        annotators=annotators,
        task=task,
        annotator=annotator,
        raw=[raw[i] for i in index],
        value=[value[i] for i in index],
        starts=starts.astype(np.int64),
        sizes=sizes,
    )


def _pairs(table: _Table) -> tuple[Ints, Ints]:
    """Annotation index pairs (i, j), i < j, for every two annotations of the same task."""
    n = len(table.task)
    size_of = np.repeat(table.sizes, table.sizes)
    position = np.arange(n) - np.repeat(table.starts, table.sizes)
    lefts, rights = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    candidates = np.flatnonzero(size_of > 1)
    offset = 1
    while len(candidates):
        candidates = candidates[position[candidates] + offset < size_of[candidates]]
        lefts.append(candidates)
        rights.append(candidates + offset)
        offset += 1
    return np.concatenate(lefts).astype(np.int64), np.concatenate(rights).astype(np.int64)


def _pair_ids(table: _Table, i: Ints, j: Ints) -> tuple[list[tuple[int, int]], Ints]:
    """The distinct annotator pairs among (i, j), and each comparison's pair id."""
    count = len(table.annotators)
    keys, pair_id = np.unique(table.annotator[i] * count + table.annotator[j], return_inverse=True)
    return [(int(k) // count, int(k) % count) for k in keys], pair_id.astype(np.int64)


def _per_annotator(
    table: _Table, pairs: list[tuple[int, int]], measure: list[float | None]
) -> dict[str, dict[str, Any]]:
    overlap = table.sizes[table.task] >= 2
    n = np.bincount(table.annotator[overlap], minlength=len(table.annotators))
    total = [0.0] * len(table.annotators)
    count = [0] * len(table.annotators)
    for (a, b), m in zip(pairs, measure, strict=True):
        if m is not None:
            for x in (a, b):
                total[x] += m
                count[x] += 1
    return {
        name: {
            "n": int(n[x]),
            "agreement_with_others": total[x] / count[x] if count[x] else None,
        }
        for x, name in enumerate(table.annotators)
    }


# -- classification -----------------------------------------------------------------------
def _classification_report(table: _Table, labels: Sequence[str]) -> dict[str, Any]:
    codes, categories = _factorize(table.value, "classification")
    i, j = _pairs(table)
    pairs, pair_id = _pair_ids(table, i, j)
    kappa, observed, n = _kappas(pair_id, codes[i], codes[j], len(pairs))
    kappas = [_float(k) for k in kappa]
    raters, sum_sq, totals = _category_stats(table.task, codes)
    defined = [k for k in kappas if k is not None]
    overall = {
        "cohen_kappa_mean": sum(defined) / len(defined) if defined else None,
        "fleiss_kappa": _fleiss(raters, sum_sq, totals) if len(raters) else None,
        "krippendorff_alpha": _alpha_nominal(raters, sum_sq, totals),
        "percent_agreement": (
            float(np.mean((sum_sq - raters) / (raters * (raters - 1)))) if len(raters) else None
        ),
    }
    per_annotator = _per_annotator(table, pairs, kappas)
    agree, defined_mask = _agrees_with_others(table, codes)
    hits = np.bincount(table.annotator, weights=agree, minlength=len(table.annotators))
    tries = np.bincount(table.annotator, weights=defined_mask, minlength=len(table.annotators))
    for a, name in enumerate(table.annotators):
        per_annotator[name]["agreement_with_consensus"] = (
            float(hits[a] / tries[a]) if tries[a] else None
        )
    return {
        "overall": overall,
        "pairs": [
            {
                "a": table.annotators[a],
                "b": table.annotators[b],
                "n": int(n[p]),
                "cohen_kappa": kappas[p],
                "percent_agreement": _float(observed[p]),
            }
            for p, (a, b) in enumerate(pairs)
        ],
        "per_annotator": per_annotator,
        "per_label": _per_label(table, codes, categories, labels),
    }


def _plurality(table: _Table, codes: Ints) -> tuple[Ints, Ints, Ints, Ints, Ints]:
    """Counts of values within tasks.

    Returns per annotation its value's count in its task; per task the top count, how
    many values have it, the second-highest count, and the code of the unique most
    common value (-1 on a tie).
    """
    k = int(codes.max(initial=0)) + 1
    keys, inverse, counts = np.unique(
        table.task * k + codes, return_inverse=True, return_counts=True
    )
    key_task = keys // k
    starts = np.flatnonzero(np.r_[True, key_task[1:] != key_task[:-1]]) if len(keys) else keys
    tasks = len(table.tasks)
    top = np.maximum.reduceat(counts, starts) if len(keys) else counts
    is_top = counts == top[key_task]
    ties = np.bincount(key_task, weights=is_top, minlength=tasks).astype(np.int64)
    lower = np.where(is_top, 0, counts)
    second = np.maximum.reduceat(lower, starts) if len(keys) else counts
    winner = np.full(tasks, -1, dtype=np.int64)
    unique_top = is_top & (ties[key_task] == 1)
    winner[key_task[unique_top]] = keys[unique_top] % k
    return counts[inverse.ravel()], top, ties, second, winner


def _agrees_with_others(table: _Table, codes: Ints) -> tuple[Floats, Floats]:
    """Per annotation: equals the other annotators' unique most common value; is it defined."""
    own, top, ties, second, _ = _plurality(table, codes)
    t = table.task
    top_t, ties_t = top[t], ties[t]
    # Leaving one's own vote out lowers its value's count by one. If its value was the
    # unique top, the others agree with it unless that ties it with the runner-up;
    # otherwise the others have a unique top only if exactly one other value holds it.
    unique_top = (own == top_t) & (ties_t == 1)
    agree = unique_top & (top_t - 1 > second[t])
    defined = np.where(unique_top, agree, np.where(own == top_t, ties_t == 2, ties_t == 1))
    defined &= table.sizes[t] >= 2
    return agree.astype(np.float64), defined.astype(np.float64)


def _per_label(
    table: _Table, codes: Ints, categories: list[Any], labels: Sequence[str]
) -> dict[str, dict[str, Any]]:
    members = [(c,) if isinstance(c, str) else tuple(c) for c in categories]
    names = list(dict.fromkeys(labels))
    known = set(names)
    names += sorted({x for m in members for x in m if x not in known})
    index = {name: i for i, name in enumerate(names)}
    lengths = np.array([len(m) for m in members], dtype=np.int64)
    flat = np.array([index[x] for m in members for x in m], dtype=np.int64)
    first = np.cumsum(lengths) - lengths
    shared = np.flatnonzero(table.sizes[table.task] >= 2)
    category = codes[shared]
    repeats = lengths[category]
    record = np.repeat(shared, repeats)
    within = np.arange(len(record)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    label = flat[np.repeat(first[category], repeats) + within]
    count = max(len(names), 1)
    keys, c = np.unique(table.task[record] * count + label, return_counts=True)
    key_label = keys % count
    raters = table.sizes[keys // count]
    both = np.bincount(key_label, weights=c * (c - 1.0), minlength=len(names))
    either = np.bincount(key_label, weights=c * (raters - 1.0), minlength=len(names))
    n = np.bincount(key_label, weights=c, minlength=len(names))
    return {
        name: {"n": int(n[x]), "agreement": float(both[x] / either[x]) if either[x] else None}
        for x, name in enumerate(names)
    }


def _classification_consensus(table: _Table, rule: str) -> list[tuple[str, Any]]:
    codes, categories = _factorize(table.value, "classification")
    _, top, _, _, winner = _plurality(table, codes)
    out: list[tuple[str, Any]] = []
    for t, task_key in enumerate(table.tasks):
        w = int(winner[t])
        if w < 0 or (rule == "unanimous" and top[t] < table.sizes[t]):
            out.append((task_key, _CONFLICT))
        else:
            value = categories[w]
            out.append((task_key, value if isinstance(value, str) else list(value)))
    return out


# -- numbers ------------------------------------------------------------------------------
def _number_report(table: _Table) -> dict[str, Any]:
    x = np.array(table.value, dtype=np.float64)
    i, j = _pairs(table)
    pairs, pair_id = _pair_ids(table, i, j)
    diff = np.abs(x[i] - x[j])
    n = np.bincount(pair_id, minlength=len(pairs))
    mad = np.bincount(pair_id, weights=diff, minlength=len(pairs)) / np.maximum(n, 1)
    order = np.argsort(pair_id, kind="stable")
    alphas: list[float | None] = []
    for chunk in np.split(order, np.cumsum(n)[:-1]) if len(pairs) else []:
        values = np.column_stack([x[i[chunk]], x[j[chunk]]]).ravel()
        alphas.append(_alpha_interval(np.repeat(np.arange(len(chunk)), 2), values))
    per_annotator = _per_annotator(table, pairs, alphas)
    shared = table.sizes[table.task] >= 2
    m = table.sizes[table.task].astype(np.float64)
    task_sum = np.bincount(table.task, weights=x, minlength=len(table.tasks))
    others_mean = (task_sum[table.task] - x) / np.maximum(m - 1, 1)
    gap = np.bincount(
        table.annotator[shared],
        weights=np.abs(x - others_mean)[shared],
        minlength=len(table.annotators),
    )
    count = np.bincount(table.annotator[shared], minlength=len(table.annotators))
    for a, name in enumerate(table.annotators):
        per_annotator[name]["agreement_with_consensus"] = None
        per_annotator[name]["mean_abs_diff_from_consensus"] = (
            float(gap[a] / count[a]) if count[a] else None
        )
    return {
        "overall": {
            "krippendorff_alpha": _alpha_interval(table.task, x),
            "mean_abs_diff": float(diff.mean()) if len(diff) else None,
        },
        "pairs": [
            {
                "a": table.annotators[a],
                "b": table.annotators[b],
                "n": int(n[p]),
                "krippendorff_alpha": alphas[p],
                "mean_abs_diff": float(mad[p]),
            }
            for p, (a, b) in enumerate(pairs)
        ],
        "per_annotator": per_annotator,
        "per_label": {},
    }


def _number_consensus(table: _Table, rule: str) -> list[tuple[str, Any]]:
    x = np.array(table.value, dtype=np.float64)
    if not len(x):
        return []
    mean = np.bincount(table.task, weights=x) / table.sizes
    spread = np.maximum.reduceat(x, table.starts) - np.minimum.reduceat(x, table.starts)
    return [
        (task_key, _CONFLICT if rule == "unanimous" and spread[t] > 0 else float(mean[t]))
        for t, task_key in enumerate(table.tasks)
    ]


# -- spans and boxes ----------------------------------------------------------------------
Matcher = Callable[[Any, Any], tuple[int, int]]  # (matched, len(a) + len(b))


def _matcher(kind: str, iou_threshold: float) -> Matcher:
    if kind == "spans":
        return lambda a, b: (len(a & b), len(a) + len(b))
    threshold = _threshold(iou_threshold)
    return lambda a, b: _match_boxes(a, b, threshold)


def _task_scores(values: list[Any], match: Matcher) -> tuple[list[list[float]], list[Any]]:
    """The pairwise F1 matrix of one task's values, and (p, q, matched, total) per pair."""
    m = len(values)
    scores = [[1.0] * m for _ in range(m)]
    pairs = []
    for p in range(m):
        for q in range(p + 1, m):
            matched, total = match(values[p], values[q])
            scores[p][q] = scores[q][p] = _f1(matched, total)
            pairs.append((p, q, matched, total))
    return scores, pairs


def _medoid(scores: list[list[float]], members: list[int]) -> tuple[int, float]:
    """The member with the highest mean score against the other members (first on ties)."""
    if len(members) == 1:
        return members[0], 1.0
    best, best_mean = members[0], -1.0
    for p in members:
        mean = sum(scores[p][q] for q in members if q != p) / (len(members) - 1)
        if mean > best_mean:
            best, best_mean = p, mean
    return best, best_mean


def _set_report(table: _Table, kind: str, match: Matcher) -> dict[str, Any]:
    spans = kind == "spans"
    who = table.annotator.tolist()
    sums: dict[tuple[int, int], list[float]] = {}  # pair -> [n, matched, total, Σ F1]
    near = [0.0] * len(table.annotators)
    near_n = [0] * len(table.annotators)
    for start, size in zip(table.starts.tolist(), table.sizes.tolist(), strict=True):
        if size < 2:
            continue
        scores, pairs = _task_scores(table.value[start : start + size], match)
        for p, q, matched, total in pairs:
            acc = sums.setdefault((who[start + p], who[start + q]), [0, 0, 0, 0.0])
            acc[0] += 1
            acc[1] += matched
            acc[2] += total
            acc[3] += _f1(matched, total)
        for p in range(size):
            medoid, _ = _medoid(scores, [q for q in range(size) if q != p])
            near[who[start + p]] += scores[p][medoid]
            near_n[who[start + p]] += 1
    pairs = sorted(sums)
    measure = [
        _f1(int(sums[k][1]), int(sums[k][2])) if spans else sums[k][3] / sums[k][0] for k in pairs
    ]
    name = MEASURES[kind]
    if not pairs:
        overall = None
    elif spans:
        overall = _f1(int(sum(s[1] for s in sums.values())), int(sum(s[2] for s in sums.values())))
    else:
        overall = sum(s[3] for s in sums.values()) / sum(s[0] for s in sums.values())
    per_annotator = _per_annotator(table, pairs, list(measure))
    for a, annotator in enumerate(table.annotators):
        per_annotator[annotator]["agreement_with_consensus"] = (
            near[a] / near_n[a] if near_n[a] else None
        )
    return {
        "overall": {name: overall},
        "pairs": [
            {"a": table.annotators[a], "b": table.annotators[b], "n": int(sums[(a, b)][0]), name: m}
            for (a, b), m in zip(pairs, measure, strict=True)
        ],
        "per_annotator": per_annotator,
        "per_label": {},
    }


def _set_consensus(table: _Table, rule: str, match: Matcher) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    floor = 1.0 if rule == "unanimous" else 0.5
    for task_key, start, size in zip(
        table.tasks, table.starts.tolist(), table.sizes.tolist(), strict=True
    ):
        scores, _ = _task_scores(table.value[start : start + size], match)
        medoid, mean = _medoid(scores, list(range(size)))
        out.append((task_key, _CONFLICT if mean < floor else table.raw[start + medoid]))
    return out


# -- the arithmetic -----------------------------------------------------------------------
def _kappas(pair: Ints, ca: Ints, cb: Ints, n_pairs: int) -> tuple[Floats, Floats, Floats]:
    """Cohen's kappa, observed agreement and item count for each pair id."""
    n = np.bincount(pair, minlength=n_pairs).astype(np.float64)
    agree = np.bincount(pair, weights=(ca == cb).astype(np.float64), minlength=n_pairs)
    k = int(max(ca.max(initial=0), cb.max(initial=0))) + 1
    keys_a, count_a = np.unique(pair * k + ca, return_counts=True)
    keys_b, count_b = np.unique(pair * k + cb, return_counts=True)
    common, ia, ib = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
    # n²·p_e: per pair, Σ over categories of a's count × b's count
    chance = np.bincount(
        common // k, weights=(count_a[ia] * count_b[ib]).astype(np.float64), minlength=n_pairs
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = agree / n
        # (p_o − p_e) / (1 − p_e), multiplied through by n²; one shared category → 1.0
        kappa = np.where(chance < n * n, (agree * n - chance) / (n * n - chance), 1.0)
    kappa[n == 0] = np.nan
    return kappa, observed, n


def _fleiss(raters: Floats, sum_sq: Floats, totals: Floats) -> float:
    p_bar = float(np.mean((sum_sq - raters) / (raters * (raters - 1))))
    if np.count_nonzero(totals) <= 1:
        return 1.0
    shares = totals / totals.sum()
    p_e = float(np.sum(shares**2))
    return (p_bar - p_e) / (1 - p_e)


def _category_stats(unit: Ints, codes: Ints) -> tuple[Floats, Floats, Floats]:
    """For items with ≥ 2 ratings: rating count m_u and Σ_c n_uc²; per category, its total."""
    raters = np.bincount(unit)
    keep = raters[unit] >= 2
    unit, codes = unit[keep], codes[keep]
    k = int(codes.max(initial=0)) + 1
    keys, n_uc = np.unique(unit * k + codes, return_counts=True)
    sum_sq = np.bincount(keys // k, weights=n_uc.astype(np.float64) ** 2, minlength=len(raters))
    rated = raters >= 2
    totals = np.bincount(codes, minlength=k).astype(np.float64)
    return raters[rated].astype(np.float64), sum_sq[rated].astype(np.float64), totals


def _alpha_nominal(raters: Floats, sum_sq: Floats, totals: Floats) -> float | None:
    n = float(totals.sum())
    if n == 0:
        return None
    observed = float(np.sum((raters**2 - sum_sq) / (raters - 1)))  # Σ_u Σ_c≠k n_uc n_uk / (m_u − 1)
    expected = n * n - float(np.sum(totals**2))  # Σ_c≠k n_c n_k
    if expected == 0:
        return 1.0
    return 1 - (n - 1) * observed / expected


def _alpha_interval(unit: Ints, x: Floats) -> float | None:
    raters = np.bincount(unit)
    keep = raters[unit] >= 2
    unit, x = unit[keep], x[keep]
    if not len(x):
        return None
    if np.ptp(x) == 0:
        return 1.0
    m = raters[unit].astype(np.float64)
    unit_mean = np.bincount(unit, weights=x, minlength=len(raters)) / np.maximum(raters, 1)
    deviation = x - unit_mean[unit]
    # Σ_{i≠j} (x_i − x_j)² within a unit = 2 m_u Σ_i (x_i − x̄_u)²; centered to keep precision
    observed = float(np.sum(2 * m * deviation**2 / (m - 1)))
    n = len(x)
    expected = 2 * n * float(np.sum((x - x.mean()) ** 2))
    return 1 - (n - 1) * observed / expected


def _iou(a: Rect, b: Rect) -> float:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = width * height if width > 0 and height > 0 else 0.0
    union = a[2] * a[3] + b[2] * b[3] - inter
    if union <= 0:  # two boxes without area
        return 1.0 if a == b else 0.0
    return inter / union


def _match_boxes(a: list[LabeledRect], b: list[LabeledRect], threshold: float) -> tuple[int, int]:
    candidates = []
    for i, (label_a, rect_a) in enumerate(a):
        for j, (label_b, rect_b) in enumerate(b):
            if label_a == label_b:
                iou = _iou(rect_a, rect_b)
                if iou >= threshold:
                    candidates.append((-iou, i, j))
    candidates.sort()
    used_a: set[int] = set()
    used_b: set[int] = set()
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
    return len(used_a), len(a) + len(b)


def _f1(matched: int, total: int) -> float:
    return 2 * matched / total if total else 1.0


# -- input checks -------------------------------------------------------------------------
_CONFLICT = object()


def _float(x: Any) -> float | None:
    value = float(x)
    return None if math.isnan(value) else value


def _label_list(values: Any, name: str) -> list[Any]:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise UsageError(
                f"{name} must be one-dimensional, got shape {values.shape}",
                hint="pass one label per item",
            )
        return list(values.tolist())
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence):
        raise UsageError(
            f"{name} must be a sequence of labels, got {type(values).__name__}",
            hint="pass a list or a 1-D array",
        )
    return list(values)


def _factorize(values: Sequence[Any], what: str) -> tuple[Ints, list[Any]]:
    """Integer codes for values, numbered in order of first appearance."""
    index: dict[Any, int] = {}
    try:
        codes = np.fromiter(
            (index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values)
        )
    except TypeError as e:
        raise UsageError(
            f"{what}: labels must be hashable ({e})", hint="use text or numbers"
        ) from None
    return codes, list(index)


def _units(units: Any) -> tuple[Ints, list[Any]]:
    """Item index and value of every rating that is not missing (None or NaN)."""
    if isinstance(units, np.ndarray):
        if units.ndim != 2:
            raise UsageError(
                f"units must be an items × raters array, got shape {units.shape}",
                hint="or pass a list with one list of ratings per item",
            )
        rows: list[Any] = units.tolist()
    elif isinstance(units, str | bytes | Mapping) or not isinstance(units, Iterable):
        raise UsageError(
            f"units must be a list of rating lists, got {type(units).__name__}",
            hint="one list of ratings per item, None for a missing rating",
        )
    else:
        rows = list(units)
    unit: list[int] = []
    values: list[Any] = []
    for i, item in enumerate(rows):
        row = item.tolist() if isinstance(item, np.ndarray) else item
        if isinstance(row, str | bytes | Mapping) or not isinstance(row, Iterable):
            raise UsageError(
                f"units[{i}] is not a list of ratings: {row!r:.80}",
                hint="one list of ratings per item, None for a missing rating",
            )
        for v in row:
            if v is None or (isinstance(v, float | np.floating) and math.isnan(v)):
                continue
            unit.append(i)
            values.append(v)
    return np.array(unit, dtype=np.int64), values


def _number(value: Any, where: str) -> float:
    if type(value) in (float, int) and -1e300 < value < 1e300:  # the common case, fast
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise UsageError(f"{where}: expected a number, got {value!r:.80}", hint="give a number")
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise UsageError(f"{where}: {value} is not a finite number", hint="give a real number")
    return x


def _threshold(value: float) -> float:
    threshold = _number(value, "iou_threshold")
    if not 0 < threshold <= 1:
        raise UsageError(
            f"iou_threshold must be in (0, 1], got {threshold}", hint="0.5 is the usual choice"
        )
    return threshold


def _rect(box: Any, where: str) -> Rect:
    if type(box) is not dict and not isinstance(box, Mapping):
        raise UsageError(
            f"{where}: a box must be a mapping with x, y, w, h",
            hint='e.g. {"label": "cat", "x": 10, "y": 20, "w": 50, "h": 40} (pixels)',
        )
    try:
        x, y, w, h = box["x"], box["y"], box["w"], box["h"]
    except KeyError as e:
        raise UsageError(
            f"{where}: box has no {e.args[0]!r}", hint="give x, y, w, h in pixels"
        ) from None
    x, y = _number(x, f"{where}: x"), _number(y, f"{where}: y")
    w, h = _number(w, f"{where}: w"), _number(h, f"{where}: h")
    if w < 0 or h < 0:
        raise UsageError(
            f"{where}: width {w} and height {h} must not be negative",
            hint="x, y is the top-left corner; w, h the size",
        )
    return (x, y, w, h)


def _box_list(value: Any, where: str) -> list[LabeledRect]:
    if not isinstance(value, list | tuple):
        raise UsageError(
            f"{where}: boxes must be a list of mappings, got {type(value).__name__}",
            hint='e.g. [{"label": "cat", "x": 10, "y": 20, "w": 50, "h": 40}]',
        )
    out: list[LabeledRect] = []
    for i, box in enumerate(value):
        rect = _rect(box, f"{where}, box {i}")  # checks that box is a mapping
        out.append((box.get("label"), rect))
    return out


def _classification_value(value: Any, where: str) -> str | tuple[str, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(x, str) for x in value):
        return tuple(sorted(set(value)))
    raise UsageError(
        f"{where}: a classification value is a label name or a list of names, got {value!r:.80}",
        hint='e.g. "cat", or ["cat", "indoor"] for multi-label',
    )


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise UsageError(
            f"{where}: start and end must be whole numbers, got {value!r:.80}",
            hint="character offsets, end exclusive",
        )
    return int(value)


def _spans_value(value: Any, where: str) -> frozenset[tuple[int, int, str]]:
    if not isinstance(value, list | tuple):
        raise UsageError(
            f"{where}: spans must be a list, got {type(value).__name__}",
            hint='e.g. [{"start": 0, "end": 5, "label": "PER"}]',
        )
    out = set()
    for i, span in enumerate(value):
        try:
            start, end, label = span["start"], span["end"], span["label"]
        except (KeyError, TypeError, IndexError):
            raise UsageError(
                f"{where}, span {i}: a span is a mapping with start, end and label",
                hint='e.g. {"start": 0, "end": 5, "label": "PER"}',
            ) from None
        if type(start) is not int or type(end) is not int:
            start, end = _whole(start, f"{where}, span {i}"), _whole(end, f"{where}, span {i}")
        if type(label) is not str:
            raise UsageError(f"{where}, span {i}: label must be text, got {label!r:.80}", hint="")
        out.add((start, end, label))
    return frozenset(out)


_NORMALIZERS: dict[str, Callable[[Any, str], Any]] = {
    "classification": _classification_value,
    "number": _number,
    "spans": _spans_value,
    "boxes": _box_list,
}
