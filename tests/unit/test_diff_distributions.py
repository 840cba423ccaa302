"""Distribution changes between two versions' profiles."""

from __future__ import annotations

from modelcycle.data.diff import distribution_changes


def _profile(q50: float, mean: float) -> dict[str, object]:
    return {"columns": {"x": {"q50": q50, "mean": mean, "distinct": 3}}}


def test_rounding_in_the_last_bits_is_no_change() -> None:
    """Profiles made by different releases may round a quantile differently."""
    assert distribution_changes(_profile(-81.8, 2.5), _profile(-81.80000000000001, 2.5)) == []


def test_a_real_change_is_reported() -> None:
    changes = distribution_changes(_profile(1.0, 2.5), _profile(1.5, 2.5))
    assert changes == [{"column": "x", "q50": {"from": 1.0, "to": 1.5}}]
