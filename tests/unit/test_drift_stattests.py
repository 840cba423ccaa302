"""Drift tests: the Wasserstein distance from cells, each named test, the default choice."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from modelcycle.core.errors import UsageError
from modelcycle.monitoring.sketches import ColumnSketch, compress, runs, sketch_series
from modelcycle.monitoring.stattests import (
    TESTS,
    default_test,
    get_test,
    jensen_shannon,
    sturges_edges,
)
from modelcycle.monitoring.wasserstein import wasserstein, wasserstein_sorted


def numeric(values: list[float] | np.ndarray, name: str = "x") -> ColumnSketch:
    return sketch_series(name, pl.Series(name, values, dtype=pl.Float64), "numerical")


def categorical(values: list[str | None], name: str = "c") -> ColumnSketch:
    return sketch_series(name, pl.Series(name, values, dtype=pl.String), "categorical")


# -- Wasserstein from cells --------------------------------------------------------------------
small_samples = st.lists(
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 1)), min_size=1, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(small_samples, small_samples)
def test_wasserstein_from_exact_cells_equals_scipy(a: list[float], b: list[float]) -> None:
    x, y = np.sort(np.array(a)), np.sort(np.array(b))
    expected = stats.wasserstein_distance(x, y)
    d = wasserstein(runs(x), y)
    assert d.exact
    assert d.value == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert wasserstein_sorted(x, y) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.1, 1.0])
@pytest.mark.parametrize("draw", ["normal", "lognormal", "integers"])
def test_compressed_cells_bound_the_distance(draw: str, shift: float) -> None:
    rng = np.random.default_rng(7)
    make = {
        "normal": lambda n: rng.normal(0, 1, n),
        "lognormal": lambda n: rng.lognormal(1.9, 1.35, n),
        "integers": lambda n: rng.integers(0, 100_000, n).astype(float),
    }[draw]
    ref = np.sort(make(200_000))
    cur = np.sort(make(150_000) + shift * ref.std())
    exact = stats.wasserstein_distance(ref, cur)
    cells = compress(ref, float(ref.std()))
    assert len(cells.lo) < 10_000
    # the construction's promise: count x width <= 1e-6 x std x n, or a single value
    budget = 1e-6 * ref.std() * len(ref)
    assert ((cells.count * (cells.hi - cells.lo) <= budget * (1 + 1e-9)) | (cells.count == 1)).all()
    assert cells.count.sum() == len(ref)
    assert cells.total.sum() == pytest.approx(ref.sum(), rel=1e-12)
    d = wasserstein(cells, cur)
    assert d.lower <= exact * (1 + 1e-9) and exact <= d.upper * (1 + 1e-9)
    assert (d.upper - d.lower) / ref.std() < 2e-3
    assert abs(d.value - exact) / ref.std() < 1e-4


def test_wasserstein_needs_values_on_both_sides() -> None:
    with pytest.raises(ValueError):
        wasserstein(runs(np.array([1.0])), np.array([]))
    with pytest.raises(ValueError):
        wasserstein_sorted(np.array([]), np.array([1.0]))


# -- the named tests ---------------------------------------------------------------------------
def test_ks_is_scipys_two_sample_test_and_flags_p_at_or_below_the_threshold() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 300), rng.normal(0.4, 1, 200)
    out = TESTS["ks"].check(numeric(a), numeric(b), None)
    ref = stats.ks_2samp(a, b)
    assert (out.statistic, out.p_value) == pytest.approx((ref.statistic, ref.pvalue))
    assert out.drifted
    same = TESTS["ks"].check(numeric(a), numeric(a), out.score)
    assert not same.drifted
    at_threshold = TESTS["ks"].check(numeric(a), numeric(b), out.score)
    assert at_threshold.drifted  # p <= threshold


def test_chisquare_scales_the_reference_and_a_new_category_is_infinite() -> None:
    ref = categorical(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    cur = categorical(["a"] * 20 + ["b"] * 20 + ["c"] * 20 + [None] * 5)
    out = TESTS["chisquare"].check(ref, cur, None)
    expected = stats.chisquare([20, 20, 20], [30, 18, 12])
    assert out.statistic == pytest.approx(expected.statistic)
    assert out.p_value == pytest.approx(expected.pvalue)
    new = TESTS["chisquare"].check(ref, categorical(["a", "b", "d"]), None)
    assert math.isinf(new.statistic) and new.p_value == 0.0 and new.drifted


def test_z_test_of_two_proportions() -> None:
    ref = categorical(["no"] * 60 + ["yes"] * 40)
    cur = categorical(["no"] * 40 + ["yes"] * 60)
    out = TESTS["z"].check(ref, cur, None)
    p1, p2, pooled = 0.4, 0.6, 0.5
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 100))
    assert out.statistic == pytest.approx(z)
    assert out.p_value == pytest.approx(2 * stats.norm.sf(abs(z)))
    constant = TESTS["z"].check(categorical(["x"] * 5), categorical(["x"] * 9), None)
    assert (constant.p_value, constant.drifted) == (1.0, False)


def test_binned_tests_on_categories() -> None:
    ref = categorical(["a"] * 50 + ["b"] * 50)
    cur = categorical(["a"] * 80 + ["b"] * 10 + ["c"] * 10)
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.8, 0.1, 0.1])
    js = TESTS["jensenshannon"].check(ref, cur, None)
    assert js.score == pytest.approx(distance.jensenshannon(p, q))
    filled = np.array([0.5, 0.5, 1e-4])
    assert TESTS["psi"].check(ref, cur, None).score == pytest.approx(
        np.sum((filled - q) * np.log(filled / q))
    )
    assert TESTS["kl_div"].check(ref, cur, None).score == pytest.approx(stats.entropy(filled, q))
    assert TESTS["tvd"].check(ref, cur, None).score == pytest.approx(0.4)
    hellinger = math.sqrt(1 - (math.sqrt(0.5 * 0.8) + math.sqrt(0.5 * 0.1)))
    assert TESTS["hellinger"].check(ref, cur, None).score == pytest.approx(hellinger)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=12),
    st.lists(st.integers(0, 50), min_size=1, max_size=12),
)
def test_jensen_shannon_is_scipys(a: list[int], b: list[int]) -> None:
    size = max(len(a), len(b))
    p = np.array(a + [0] * (size - len(a)), dtype=float)
    q = np.array(b + [0] * (size - len(b)), dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return
    assert jensen_shannon(p, q) == pytest.approx(distance.jensenshannon(p, q), abs=1e-12)


def test_binned_numbers_use_sturges_bins_over_both_sides() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 500), rng.normal(0.5, 1, 400)
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
    assert sturges_edges(min(a.min(), b.min()), max(a.max(), b.max()), 900) == pytest.approx(edges)
    p = np.histogram(a, edges)[0] / 500
    q = np.histogram(b, edges)[0] / 400
    got = TESTS["jensenshannon"].check(numeric(a), numeric(b), None).score
    assert got == pytest.approx(distance.jensenshannon(p, q))


@pytest.mark.parametrize(
    ("name", "scipy_p"),
    [
        ("anderson", lambda a, b: stats.anderson_ksamp([a, b]).pvalue),
        ("cramer_von_mises", lambda a, b: stats.cramervonmises_2samp(a, b).pvalue),
        ("mannw", lambda a, b: stats.mannwhitneyu(a, b, alternative="two-sided").pvalue),
    ],
)
def test_rank_tests_are_scipys(name: str, scipy_p: object) -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 400), rng.normal(0.3, 1, 300)
    out = TESTS[name].check(numeric(a), numeric(b), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anderson_ksamp warns when it caps its p-value
        expected = scipy_p(np.sort(a), np.sort(b))  # type: ignore[operator]
    assert out.p_value == pytest.approx(expected)
    assert out.drifted


def test_energy_distance_is_normed_by_the_reference_std() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.normal(0, 10, 300), rng.normal(5, 10, 300)
    out = TESTS["energy"].check(numeric(a), numeric(b), None)
    assert out.score == pytest.approx(stats.energy_distance(a, b) / np.std(a))


def test_tests_by_alias_and_unknown_names() -> None:
    assert get_test("PSI").name == "psi"
    assert get_test("ed").name == "energy"
    assert get_test("kl").name == "kl_div"
    with pytest.raises(UsageError, match="did you mean 'wasserstein'"):
        get_test("wasserstien")


# -- the default choice ------------------------------------------------------------------------
def _default(ref: ColumnSketch, cur: ColumnSketch) -> str:
    return default_test(ref, cur).name


def test_default_choice_follows_evidentlys_rules() -> None:
    rng = np.random.default_rng(8)
    big, small = rng.normal(size=1001), rng.normal(size=1000)
    assert _default(numeric(small), numeric(small)) == "ks"
    assert _default(numeric(big), numeric(small)) == "wasserstein"
    few = [0.0, 1.0, 2.0, 3.0] * 250
    assert _default(numeric(few), numeric(few)) == "chisquare"  # 4 values, 1000 rows
    assert _default(numeric([*few, 0.0]), numeric(few)) == "jensenshannon"  # 1001 rows
    # 3 values on each side, but 6 together: more than 5 → KS
    assert _default(numeric([0.0, 1.0, 2.0] * 10), numeric([3.0, 4.0, 5.0] * 10)) == "ks"
    assert _default(numeric([0.0, 1.0] * 10), numeric([1.0] * 10)) == "z"
    assert _default(numeric([0.0, 1.0] * 10), numeric([2.0] * 10)) == "chisquare"
    two = categorical(["a", "b"] * 10)
    assert _default(two, categorical(["a"] * 5)) == "z"
    assert _default(two, categorical(["c"] * 5)) == "chisquare"
    assert _default(categorical(["a", "b"] * 501), two) == "jensenshannon"
