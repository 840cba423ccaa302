"""Route tables: weighted picks (canary, A/B), sticky routing, revisions, round trips."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from modelcycle.deploy.routes import Endpoint, Route, RouteTable, Target

PICKS = 10_000
TOLERANCE = 0.03  # ±3 points of traffic share; ~10 standard deviations at 10,000 picks


def _target(version: int, oid: str | None = None) -> Target:
    return Target(f"churn@{version}", "churn", version, oid or f"oid{version}")


def _endpoint(weights: dict[int, float], sticky: str | None = None) -> Endpoint:
    routes = tuple(Route(_target(v), w) for v, w in weights.items())
    return Endpoint("churn", routes, sticky_header=sticky)


def _shares(counts: Counter[int], total: int) -> dict[int, float]:
    return {v: n / total for v, n in counts.items()}


@pytest.mark.parametrize(
    "weights",
    [{7: 90, 8: 10}, {7: 50, 8: 50}, {1: 70, 2: 20, 3: 10}, {7: 1, 8: 3}],
    ids=["canary-90-10", "ab-50-50", "three-way", "weights-not-summing-to-100"],
)
def test_random_picks_follow_the_weights(weights: dict[int, float]) -> None:
    endpoint = _endpoint(weights)
    rng = random.Random(20260131)
    counts = Counter(endpoint.pick(rng=rng).version for _ in range(PICKS))
    total = sum(weights.values())
    shares = _shares(counts, PICKS)
    for version, weight in weights.items():
        assert abs(shares.get(version, 0.0) - weight / total) <= TOLERANCE, (version, shares)


def test_sticky_values_spread_by_weight_and_never_move() -> None:
    endpoint = _endpoint({7: 90, 8: 10}, sticky="x-user-id")
    first = {f"user-{i}": endpoint.pick(f"user-{i}").version for i in range(PICKS)}
    shares = _shares(Counter(first.values()), PICKS)
    assert abs(shares[7] - 0.9) <= TOLERANCE and abs(shares[8] - 0.1) <= TOLERANCE
    # The same value takes the same route every time, whatever the random state, and in
    # another process or replica (a fresh but equal endpoint).
    rng = random.Random(1)
    again = _endpoint({7: 90, 8: 10}, sticky="x-user-id")
    for user, version in list(first.items())[:2000]:
        assert endpoint.pick(user, rng=rng).version == version
        assert again.pick(user).version == version


def test_raising_the_canary_moves_only_users_towards_it() -> None:
    """Users on the canary at 10% stay on it at 30%: the hash bounds only grow."""
    small = _endpoint({7: 90, 8: 10}, sticky="x-user-id")
    large = _endpoint({7: 70, 8: 30}, sticky="x-user-id")
    users = [f"user-{i}" for i in range(5000)]
    on_canary = {u for u in users if small.pick(u).version == 8}
    assert on_canary
    assert all(large.pick(u).version == 8 for u in on_canary)


def test_one_route_takes_everything() -> None:
    endpoint = _endpoint({7: 5})
    assert {endpoint.pick(rng=random.Random(i)).version for i in range(100)} == {7}
    assert endpoint.pick("anyone").version == 7


@pytest.mark.parametrize("weights", [{7: 0}, {7: 90, 8: -1}, {}])
def test_an_endpoint_refuses_bad_weights(weights: dict[int, float]) -> None:
    with pytest.raises(ValueError):
        _endpoint(weights)


def test_revision_changes_with_anything_served() -> None:
    base = RouteTable({"churn": _endpoint({7: 90, 8: 10})}, deployment="churn")
    same = RouteTable({"churn": _endpoint({7: 90, 8: 10})}, deployment="churn")
    assert base.revision == same.revision
    reweighted = RouteTable({"churn": _endpoint({7: 80, 8: 20})})
    moved = RouteTable({"churn": Endpoint("churn", (Route(_target(7), 90), Route(_target(9), 10)))})
    repackaged = RouteTable(
        {"churn": Endpoint("churn", (Route(_target(7, "other"), 90), Route(_target(8), 10)))}
    )
    shadowed = RouteTable(
        {"churn": Endpoint("churn", base.endpoints["churn"].routes, (_target(9),))}
    )
    sticky = RouteTable({"churn": _endpoint({7: 90, 8: 10}, sticky="x-user-id")})
    revisions = {t.revision for t in (base, reweighted, moved, repackaged, shadowed, sticky)}
    assert len(revisions) == 6


def test_round_trip_through_dicts() -> None:
    endpoint = Endpoint(
        "churn",
        (Route(_target(7), 90.0), Route(_target(8), 10.0)),
        (_target(9),),
        "x-user-id",
    )
    table = RouteTable({"churn": endpoint}, deployment="churn")
    again = RouteTable.from_dict(table.to_dict())
    assert again == table and again.revision == table.revision
    assert [t.resolved for t in table.targets()] == ["churn@7", "churn@8", "churn@9"]
