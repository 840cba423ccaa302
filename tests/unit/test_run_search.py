"""The run filter and order-by language."""

from __future__ import annotations

import pytest

from modelcycle.core.errors import UsageError
from modelcycle.store.runs import Clause, Order
from modelcycle.tracking.search import parse_filter, parse_order


def test_filter_clauses() -> None:
    got = parse_filter(
        "metrics.auc >= 0.9 and params.model = 'xgb' and tags.team != \"core\" "
        "and attributes.status = 'finished' and metrics.`val loss` < 1e-3 "
        "and params.name ILIKE '%Net%' and start_time > 5"
    )
    assert got == [
        Clause("metrics", "auc", ">=", 0.9),
        Clause("params", "model", "=", "xgb"),
        Clause("tags", "team", "!=", "core"),
        Clause("attributes", "status", "=", "finished"),
        Clause("metrics", "val loss", "<", 0.001),
        Clause("params", "name", "ILIKE", "%Net%"),
        Clause("attributes", "start_time", ">", 5.0),
    ]
    assert parse_filter(None) == [] and parse_filter("  ") == []
    assert parse_filter("metric.x = -inf") == [Clause("metrics", "x", "=", float("-inf"))]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("metrics.auc > 'high'", "compares with a number"),
        ("params.model = xgb", "quoted text"),
        ("metrics.auc > 0.9 or metrics.acc > 0.8", "expected 'and'"),
        ("metrics.auc >", "incomplete"),
        ("foo.bar = 'x'", "unknown field kind"),
        ("attributes.color = 'red'", "unknown attribute"),
        ("metrics.auc LIKE 0.5", "does not apply to numbers"),
        ("metrics.auc ~ 1", "cannot read it"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_filter(text)
    assert says in err.value.message
    assert err.value.hint


def test_order_by() -> None:
    assert parse_order(["metrics.auc DESC", "params.lr", "start_time asc"]) == [
        Order("metrics", "auc", True),
        Order("params", "lr", False),
        Order("attributes", "start_time", False),
    ]
    assert parse_order("metrics.a desc, metrics.b") == [
        Order("metrics", "a", True),
        Order("metrics", "b", False),
    ]
    with pytest.raises(UsageError):
        parse_order(["bogus DESC"])
