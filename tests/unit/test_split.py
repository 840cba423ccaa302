"""Deterministic train/validation/test splits: plain, stratified and grouped."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcycle.core.errors import UsageError
from modelcycle.data.split import _allocate, assign, parse_ratios

RATIOS_3 = [0.7, 0.15, 0.15]


def frame(n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": list(range(n)), "label": [["a", "b", "c"][i % 3] for i in range(n)]})


def counts(parts: np.ndarray, k: int) -> list[int]:
    return np.bincount(parts, minlength=k).tolist()


# ---------------------------------------------------------------- ratios


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.7,0.15,0.15", [0.7, 0.15, 0.15]),
        ("0.8,0.2", [0.8, 0.2]),
        (" 0.5 , 0.5 ", [0.5, 0.5]),
        ([0.6, 0.4], [0.6, 0.4]),
    ],
)
def test_parse_ratios(text: str | list[float], expected: list[float]) -> None:
    assert parse_ratios(text) == expected


@pytest.mark.parametrize(
    ("text", "in_message"),
    [
        ("a,b", "comma-separated numbers"),
        ("0.7;0.3", "comma-separated numbers"),
        ("", "comma-separated numbers"),
        ("1", "2 or 3 positive numbers"),
        ("0.5,0.6", "adding up to 1"),
        ("0.25,0.25,0.25,0.25", "2 or 3 positive numbers"),
        ("1.5,-0.5", "positive"),
        ("1,0", "positive"),
        ([0.2, 0.2], "adding up to 1"),
    ],
)
def test_bad_ratios_are_a_usage_error(text: str | list[float], in_message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_ratios(text)
    assert in_message in info.value.message
    assert info.value.hint


@pytest.mark.parametrize(
    ("n", "ratios", "expected"),
    [
        (100, RATIOS_3, [70, 15, 15]),
        (10, [0.5, 0.5], [5, 5]),
        (7, [0.5, 0.5], [4, 3]),
        (10, [0.75, 0.25], [8, 2]),  # 7.5 / 2.5: the tie goes to the first part
        (3, [0.8, 0.2], [2, 1]),  # 2.4 / 0.6: the larger remainder wins
        (0, RATIOS_3, [0, 0, 0]),
        (1, RATIOS_3, [1, 0, 0]),
    ],
)
def test_allocate_uses_largest_remainder(n: int, ratios: list[float], expected: list[int]) -> None:
    assert _allocate(n, ratios) == expected


ratio_lists = st.one_of(
    st.integers(1, 99).map(lambda a: [a / 100, 1 - a / 100]),
    st.tuples(st.integers(1, 98), st.integers(1, 98))
    .filter(lambda t: t[0] + t[1] < 100)
    .map(lambda t: [t[0] / 100, t[1] / 100, 1 - (t[0] + t[1]) / 100]),
)


@given(st.integers(0, 5000), ratio_lists)
def test_allocate_adds_up_and_stays_within_one_of_the_ratio(n: int, ratios: list[float]) -> None:
    got = _allocate(n, ratios)
    assert sum(got) == n
    for count, r in zip(got, ratios, strict=True):
        assert abs(count - r * n) < 1


# ---------------------------------------------------------------- plain split


def test_the_same_seed_gives_the_same_split() -> None:
    df = frame(200)
    first = assign(df, RATIOS_3, seed=7)
    assert np.array_equal(first, assign(df, RATIOS_3, seed=7))
    assert not np.array_equal(first, assign(df, RATIOS_3, seed=8))


def test_plain_split_respects_the_ratios() -> None:
    parts = assign(frame(101), RATIOS_3, seed=3)
    assert parts.shape == (101,)
    assert set(parts.tolist()) <= {0, 1, 2}
    assert counts(parts, 3) == _allocate(101, RATIOS_3) == [71, 15, 15]


def test_plain_split_shuffles() -> None:
    parts = assign(frame(100), [0.5, 0.5], seed=1)
    assert parts[:50].tolist() != [0] * 50  # not simply the first half


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 300), ratio_lists, st.integers(0, 2**32 - 1))
def test_plain_split_counts_match_the_ratios(n: int, ratios: list[float], seed: int) -> None:
    parts = assign(frame(n), ratios, seed=seed)
    got = counts(parts, len(ratios))
    assert sum(got) == n
    for count, r in zip(got, ratios, strict=True):
        assert abs(count - r * n) < 1


def test_an_empty_table_gives_no_parts() -> None:
    assert assign(frame(0), RATIOS_3, seed=0).tolist() == []


# ---------------------------------------------------------------- stratified


def test_stratify_keeps_every_class_share_in_every_part() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    df = pl.DataFrame({"y": labels})
    parts = assign(df, RATIOS_3, seed=11, stratify="y")
    y = np.array(labels)
    for label, n in (("a", 50), ("b", 30), ("c", 20)):
        got = counts(parts[y == label], 3)
        assert sum(got) == n
        for count, r in zip(got, RATIOS_3, strict=True):
            assert abs(count - r * n) < 1, (label, got)


def test_stratify_treats_null_as_its_own_class() -> None:
    df = pl.DataFrame({"y": [None] * 10 + ["a"] * 10})
    parts = assign(df, [0.5, 0.5], seed=0, stratify="y")
    assert counts(parts[:10], 2) == [5, 5]
    assert counts(parts[10:], 2) == [5, 5]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=200),
    ratio_lists,
    st.integers(0, 1000),
)
def test_stratified_class_counts_follow_the_ratios(
    labels: list[str], ratios: list[float], seed: int
) -> None:
    parts = assign(pl.DataFrame({"y": labels}), ratios, seed=seed, stratify="y")
    y = np.array(labels)
    for label in set(labels):
        got = counts(parts[y == label], len(ratios))
        n = int((y == label).sum())
        assert got == _allocate(n, ratios)


def test_stratify_is_deterministic() -> None:
    df = frame(90)
    a = assign(df, RATIOS_3, seed=5, stratify="label")
    assert np.array_equal(a, assign(df, RATIOS_3, seed=5, stratify="label"))


# ---------------------------------------------------------------- grouped


def _groups_are_whole(groups: list[object], parts: np.ndarray) -> bool:
    part_of: dict[object, set[int]] = {}
    for g, p in zip(groups, parts.tolist(), strict=True):
        part_of.setdefault(g, set()).add(p)
    return all(len(ps) == 1 for ps in part_of.values())


def test_group_keeps_each_group_in_one_part() -> None:
    groups = [i // 5 for i in range(200)]  # 40 groups of 5
    parts = assign(pl.DataFrame({"g": groups}), [0.8, 0.2], seed=2, group="g")
    assert _groups_are_whole(groups, parts)
    got = counts(parts, 2)
    assert got[0] % 5 == 0
    assert abs(got[0] - 160) <= 5  # within one group of the target


def test_group_treats_null_as_one_group() -> None:
    groups = [None, None, None, "a", "a", "b", "b", "c", "c", "d"]
    parts = assign(pl.DataFrame({"g": groups}), [0.5, 0.5], seed=4, group="g")
    assert _groups_are_whole(groups, parts)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 30), min_size=1, max_size=300),
    ratio_lists,
    st.integers(0, 1000),
)
def test_groups_are_never_split(groups: list[int], ratios: list[float], seed: int) -> None:
    df = pl.DataFrame({"g": groups})
    parts = assign(df, ratios, seed=seed, group="g")
    assert len(parts) == len(groups)
    assert set(parts.tolist()) <= set(range(len(ratios)))
    assert _groups_are_whole(groups, parts)
    assert np.array_equal(parts, assign(df, ratios, seed=seed, group="g"))


# ---------------------------------------------------------------- mistakes


def test_an_unknown_column_suggests_one() -> None:
    with pytest.raises(UsageError) as info:
        assign(frame(10), RATIOS_3, seed=0, stratify="lable")
    assert "'lable' does not exist" in info.value.message
    assert "did you mean 'label'" in info.value.message
    with pytest.raises(UsageError, match="'grp' does not exist"):
        assign(frame(10), RATIOS_3, seed=0, group="grp")


def test_stratify_and_group_cannot_be_combined() -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        assign(frame(10), RATIOS_3, seed=0, stratify="label", group="id")
