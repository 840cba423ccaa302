"""The drift tests, by name, and the default choice of test for a column.

The default choice reproduces Evidently's documented rules (``DataDriftPreset`` with no
options), so both tools reach the same verdicts. With ``n`` the reference's non-missing
values and ``v`` the distinct values of reference and current together:

=====================  ==========================================  ===================
column                 n ≤ 1000                                    n > 1000
=====================  ==========================================  ===================
numerical, v > 5       Kolmogorov–Smirnov, drift if p ≤ 0.05       Wasserstein distance
                                                                   / std(reference)
                                                                   ≥ 0.1
numerical, v ≤ 5       chi-square (v > 2) or Z-test (v ≤ 2),       Jensen–Shannon
                       drift if p < 0.05                           distance ≥ 0.1
categorical            chi-square (v > 2) or Z-test (v ≤ 2)        Jensen–Shannon ≥ 0.1
text, embedding        domain classifier, ROC AUC above the 95th   domain classifier,
                       percentile of random scores' AUC            ROC AUC > 0.55
=====================  ==========================================  ===================

Missing values, NaN and ±inf are left out on both sides first. The binned tests (PSI, KL,
Jensen–Shannon, Hellinger, TVD) use one bin per value, or, for a numerical column with
more than 20 distinct reference values, Sturges' bins over the range of both sides; PSI
and KL replace empty bins by a small share (Evidently's rule: 1e-4, or a millionth of the
smallest non-empty share when that is below 1e-4).

Where modelcycle differs from Evidently's tests of the same name (all documented in
``TESTS``): Mann–Whitney is two-sided (Evidently's is one-sided, ``less``); energy
distance is divided by the reference's standard deviation like Wasserstein (Evidently's
is unscaled, so its 0.1 threshold depends on the column's units); Hellinger and TVD are
distances on the bins above (Evidently's TVD is a permutation-test p-value).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelcycle.core.errors import UsageError
from modelcycle.core.text import suggest
from modelcycle.monitoring import kinds as k
from modelcycle.monitoring.sketches import ColumnSketch, FloatArray

SMALL_REFERENCE = 1000
FEW_VALUES = 5
BINARY_VALUES = 2
BINNED_DISTINCT = 20
STD_FLOOR = 0.001


@dataclass(frozen=True)
class Outcome:
    """What a test found. ``score`` is the number compared with the threshold (the
    p-value of a hypothesis test, else the distance). ``lower``/``upper`` bound the score
    when it was computed from a compressed sketch; ``decided`` says whether the verdict
    is the same anywhere between them (if not, it needs the reference's rows)."""

    statistic: float
    p_value: float | None
    score: float
    drifted: bool
    lower: float | None = None
    upper: float | None = None
    decided: bool = True
    note: str | None = None

    @property
    def undecided(self) -> bool:
        return not self.decided


Runner = Callable[[ColumnSketch, ColumnSketch, float], Outcome]


@dataclass(frozen=True)
class StatTest:
    name: str
    title: str
    kinds: tuple[str, ...]
    threshold: float
    p_value: bool  # drift when the p-value is below the threshold (else: distance above)
    needs_data: bool  # needs the reference's rows when its sketch is compressed
    run: Runner
    about: str

    def check(self, ref: ColumnSketch, cur: ColumnSketch, threshold: float | None) -> Outcome:
        return self.run(ref, cur, self.threshold if threshold is None else threshold)


# -- binning ---------------------------------------------------------------------------------
def _binned(ref: ColumnSketch, cur: ColumnSketch, fill_zeroes: bool) -> tuple[Any, Any]:
    """Shares per bin of both sides (see the module docstring)."""
    if ref.kind == k.NUMERICAL and ref.distinct > BINNED_DISTINCT:
        a, b = ref.sorted_values(), cur.sorted_values()
        lo, hi = min(a[0], b[0]), max(a[-1], b[-1])
        edges = sturges_edges(float(lo), float(hi), len(a) + len(b))
        p = np.histogram(a, edges)[0] / len(a)
        q = np.histogram(b, edges)[0] / len(b)
    else:
        fr, fc = ref.frequencies(), cur.frequencies()
        keys = list(fr.keys() | fc.keys())
        p = np.array([fr.get(key, 0) for key in keys], dtype=np.float64) / ref.n
        q = np.array([fc.get(key, 0) for key in keys], dtype=np.float64) / cur.n
    if fill_zeroes:
        p, q = _fill_zeroes(p), _fill_zeroes(q)
    return p, q


def sturges_edges(lo: float, hi: float, n: int) -> FloatArray:
    """Bin edges by Sturges' rule over [lo, hi] for ``n`` values (as numpy computes them)."""
    if hi == lo:
        return np.linspace(lo - 0.5, hi + 0.5, 2)
    width = (hi - lo) / (math.log2(n) + 1.0)
    bins = math.ceil((hi - lo) / width)
    return np.linspace(lo, hi, bins + 1)


def _fill_zeroes(p: FloatArray) -> FloatArray:
    nonzero = p[p != 0]
    if len(nonzero) == len(p) or not len(nonzero):
        return p
    smallest = float(nonzero.min())
    return np.where(p == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, p)


def _distance(value: float, threshold: float, strict: bool = False) -> Outcome:
    drifted = value > threshold if strict else value >= threshold
    return Outcome(value, None, value, bool(drifted))


def _norm(ref: ColumnSketch) -> float:
    return max(ref.std or 0.0, STD_FLOOR)


# -- tests -----------------------------------------------------------------------------------
def _ks(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    from scipy import stats

    res = stats.ks_2samp(ref.sorted_values(), cur.sorted_values())
    p = float(res.pvalue)
    return Outcome(float(res.statistic), p, p, p <= threshold)


def _chisquare(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    from scipy import stats

    fr, fc = ref.frequencies(), cur.frequencies()
    keys = list(fr.keys() | fc.keys())
    observed = np.array([fc.get(key, 0) for key in keys], dtype=np.float64)
    expected = np.array([fr.get(key, 0) for key in keys], dtype=np.float64) * (cur.n / ref.n)
    if (expected == 0).any():  # a category the reference never had
        statistic = math.inf
    else:
        statistic = float(((observed - expected) ** 2 / expected).sum())
    dof = len(keys) - 1
    p = float(stats.chi2.sf(statistic, dof)) if dof > 0 else 1.0
    return Outcome(statistic, p, p, p < threshold)


def _z(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    from scipy import stats

    fr, fc = ref.frequencies(), cur.frequencies()
    if len(fr) == 1 and len(fc) == 1 and fr.keys() == fc.keys():
        return Outcome(0.0, 1.0, 1.0, False)
    first = sorted(fr.keys() | fc.keys())[0]
    n1, n2 = ref.n, cur.n
    p1 = (n1 - fr.get(first, 0)) / n1
    p2 = (n2 - fc.get(first, 0)) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p = float(2 * stats.norm.sf(abs(z)))
    return Outcome(z, p, p, p < threshold)


def _wasserstein(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    from modelcycle.monitoring.wasserstein import wasserstein, wasserstein_sorted

    norm = _norm(ref)
    if ref.has_data:
        score = wasserstein_sorted(ref.sorted_values(), cur.sorted_values()) / norm
        return Outcome(score, None, score, score >= threshold)
    assert ref.cells is not None
    d = wasserstein(ref.cells, cur.sorted_values())
    score = d.value / norm
    if d.exact:
        return Outcome(score, None, score, score >= threshold)
    lower, upper = d.lower / norm, d.upper / norm
    decided = (lower >= threshold) == (upper >= threshold)
    return Outcome(score, None, score, score >= threshold, lower, upper, decided)


def _jensenshannon(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    p, q = _binned(ref, cur, fill_zeroes=False)
    return _distance(jensen_shannon(p, q), threshold)


def jensen_shannon(p: FloatArray, q: FloatArray) -> float:
    """Jensen–Shannon distance (natural log) of two count or share vectors, as
    ``scipy.spatial.distance.jensenshannon`` computes it; numpy only, because this is
    the default test of large references and importing scipy costs a monitor run ~0.3 s."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def relative_entropy(x: FloatArray) -> float:
        present = x > 0  # 0 · log 0 = 0; m > 0 wherever x > 0
        return float(np.sum(x[present] * np.log(x[present] / m[present])))

    return math.sqrt(max(relative_entropy(p) + relative_entropy(q), 0.0) / 2)


def _psi(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    p, q = _binned(ref, cur, fill_zeroes=True)
    return _distance(float(np.sum((p - q) * np.log(p / q))), threshold)


def _kl_div(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    from scipy import stats

    p, q = _binned(ref, cur, fill_zeroes=True)
    return _distance(float(stats.entropy(p, q)), threshold)


def _hellinger(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    p, q = _binned(ref, cur, fill_zeroes=False)
    overlap = float(np.clip(np.sum(np.sqrt(p / p.sum() * q / q.sum())), 0.0, 1.0))
    return _distance(math.sqrt(1.0 - overlap), threshold)


def _tvd(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    p, q = _binned(ref, cur, fill_zeroes=False)
    return _distance(float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum()), threshold)


def _anderson(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    from scipy import stats

    # scipy caps the p-value to [0.001, 0.25] and warns when it does; the cap is noted.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.anderson_ksamp([ref.sorted_values(), cur.sorted_values()])
    p = float(res.pvalue)
    note = "p-value capped by scipy to [0.001, 0.25]" if caught else None
    return Outcome(float(res.statistic), p, p, p < threshold, note=note)


def _cramer_von_mises(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    from scipy import stats

    res = stats.cramervonmises_2samp(ref.sorted_values(), cur.sorted_values())
    p = float(res.pvalue)
    return Outcome(float(res.statistic), p, p, p <= threshold)


def _mann_whitney(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    from scipy import stats

    res = stats.mannwhitneyu(ref.sorted_values(), cur.sorted_values(), alternative="two-sided")
    p = float(res.pvalue)
    return Outcome(float(res.statistic), p, p, p < threshold)


def _energy(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
    from scipy import stats

    value = float(stats.energy_distance(ref.sorted_values(), cur.sorted_values())) / _norm(ref)
    return _distance(value, threshold)


def _domain(percentile: bool) -> Runner:
    def run(ref: ColumnSketch, cur: ColumnSketch, threshold: float) -> Outcome:
        from modelcycle.monitoring.domain import domain_classifier

        found = domain_classifier(ref.raw, cur.raw, ref.kind)
        if percentile:
            cut = found.random_auc_quantile(threshold)
            note = f"ROC AUC of random scores: {threshold:.0%} quantile {cut:.4f}"
            return Outcome(found.auc, None, found.auc, found.auc > cut, note=note)
        return Outcome(found.auc, None, found.auc, found.auc > threshold)

    return run


NUM, CAT = (k.NUMERICAL,), (k.CATEGORICAL,)
NUM_CAT = (k.NUMERICAL, k.CATEGORICAL)
TEXTISH = (k.TEXT, k.EMBEDDING)
_ALL = [
    StatTest("ks", "Kolmogorov–Smirnov", NUM, 0.05, True, True, _ks, "p-value ≤ threshold"),
    StatTest("chisquare", "chi-square", NUM_CAT, 0.05, True, True, _chisquare, "p < threshold"),
    StatTest("z", "Z-test (proportions)", NUM_CAT, 0.05, True, True, _z, "p < threshold"),
    StatTest(
        "wasserstein",
        "Wasserstein distance (normed)",
        NUM,
        0.1,
        False,
        False,
        _wasserstein,
        "W1 / std(reference) ≥ threshold",
    ),
    StatTest(
        "jensenshannon",
        "Jensen–Shannon distance",
        NUM_CAT,
        0.1,
        False,
        True,
        _jensenshannon,
        "distance ≥ threshold (natural log)",
    ),
    StatTest("psi", "PSI", NUM_CAT, 0.1, False, True, _psi, "index ≥ threshold"),
    StatTest("kl_div", "Kullback–Leibler divergence", NUM_CAT, 0.1, False, True, _kl_div, "≥"),
    StatTest("hellinger", "Hellinger distance", NUM_CAT, 0.1, False, True, _hellinger, "≥"),
    StatTest("tvd", "total variation distance", NUM_CAT, 0.1, False, True, _tvd, "≥"),
    StatTest("anderson", "Anderson–Darling", NUM, 0.1, True, True, _anderson, "p < threshold"),
    StatTest(
        "cramer_von_mises", "Cramér–von Mises", NUM, 0.1, True, True, _cramer_von_mises, "p ≤"
    ),
    StatTest("mannw", "Mann–Whitney U (two-sided)", NUM, 0.05, True, True, _mann_whitney, "p <"),
    StatTest("energy", "energy distance (normed)", NUM, 0.1, False, True, _energy, "≥"),
    StatTest(
        "domain_classifier",
        "domain classifier ROC AUC",
        TEXTISH,
        0.55,
        False,
        True,
        _domain(percentile=False),
        "ROC AUC > threshold",
    ),
    StatTest(
        "domain_classifier_percentile",
        "domain classifier ROC AUC vs random",
        TEXTISH,
        0.95,
        False,
        True,
        _domain(percentile=True),
        "ROC AUC > this quantile of random scores' ROC AUC",
    ),
]
TESTS: dict[str, StatTest] = {t.name: t for t in _ALL}
ALIASES = {
    "ks_2samp": "ks",
    "chi2": "chisquare",
    "chi-square": "chisquare",
    "z_test": "z",
    "wasserstein_norm": "wasserstein",
    "js": "jensenshannon",
    "jensen_shannon": "jensenshannon",
    "kl": "kl_div",
    "tv": "tvd",
    "ad": "anderson",
    "anderson_darling": "anderson",
    "cvm": "cramer_von_mises",
    "mann_whitney": "mannw",
    "ed": "energy",
    "energy_distance": "energy",
    "domain": "domain_classifier",
}


def get_test(name: str) -> StatTest:
    """The test called ``name`` (or one of its aliases); UsageError when none is."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in TESTS:
        raise UsageError(
            f"no drift test named {name!r}{suggest(key, list(TESTS) + list(ALIASES))}",
            hint=f"the tests: {', '.join(TESTS)}",
        )
    return TESTS[key]


def default_test(ref: ColumnSketch, cur: ColumnSketch) -> StatTest:
    """Evidently's default choice for this column (see the module docstring)."""
    if ref.kind in (k.TEXT, k.EMBEDDING):
        small = ref.n <= SMALL_REFERENCE
        return TESTS["domain_classifier_percentile" if small else "domain_classifier"]
    values = _union_distinct(ref, cur)
    if ref.n <= SMALL_REFERENCE:
        if ref.kind == k.NUMERICAL and values > FEW_VALUES:
            return TESTS["ks"]
        return TESTS["chisquare" if values > BINARY_VALUES else "z"]
    if ref.kind == k.NUMERICAL and values > FEW_VALUES:
        return TESTS["wasserstein"]
    return TESTS["jensenshannon"]


def _union_distinct(ref: ColumnSketch, cur: ColumnSketch) -> int:
    """Distinct values of both sides together, exactly when it is small (≤ FEW_VALUES),
    else any number above it."""
    if ref.kind == k.CATEGORICAL:
        return len(ref.frequencies().keys() | cur.frequencies().keys())
    if ref.distinct > FEW_VALUES or cur.distinct > FEW_VALUES:
        return max(ref.distinct, cur.distinct)
    mine = ref.distinct_values()
    theirs = cur.distinct_values()
    assert mine is not None and theirs is not None
    return len(mine | theirs)
