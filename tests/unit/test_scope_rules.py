"""Project scoping's rule table stays complete and right as the stores grow: every
public store method is either checked or closed on purpose, and every rule names
parameters the method really has."""

from __future__ import annotations

import inspect

import pytest

from modelcycle.access.guard import CLOSED, RULES, public_methods
from modelcycle.access.scope import Scope, check_patterns
from modelcycle.api.workspace import STORE_CLASSES
from modelcycle.core.errors import PermissionDeniedError, UsageError
from modelcycle.store.metadata import MetadataStore

STORES = {"metadata": MetadataStore, **STORE_CLASSES}


@pytest.mark.parametrize("store", sorted(STORES))
def test_every_store_method_is_checked_or_closed_on_purpose(store: str) -> None:
    methods = set(public_methods(STORES[store]))
    ruled, closed = set(RULES.get(store, {})), set(CLOSED.get(store, {}))
    assert not ruled & closed, f"{store}: both checked and closed: {sorted(ruled & closed)}"
    assert methods - ruled - closed == set(), f"{store}: no rule for {methods - ruled - closed}"
    assert (ruled | closed) - methods == set(), f"{store}: rules for no method"


@pytest.mark.parametrize("store", sorted(STORES))
def test_rules_name_parameters_the_methods_have(store: str) -> None:
    for method, rule in RULES.get(store, {}).items():
        params = inspect.signature(getattr(STORES[store], method)).parameters
        missing = set(rule.args) - set(params)
        assert not missing, f"{store}.{method}: no parameter {sorted(missing)}"


def test_a_scope_covers_names_by_glob() -> None:
    scope = Scope("ci", ("fraud-*", "shared-data"))
    assert scope.covers("fraud-tx") and scope.covers("shared-data")
    assert (
        not scope.covers("shared-data-2") and not scope.covers("churn") and not scope.covers(None)
    )
    scope.require("fraud-model")
    with pytest.raises(PermissionDeniedError, match="'churn' is outside") as refused:
        scope.require("churn")
    assert refused.value.details["projects"] == ["fraud-*", "shared-data"]


def test_patterns_are_checked() -> None:
    assert check_patterns(["a-*", "b", "a-*"]) == ("a-*", "b")
    for bad, message in (("*", "every name"), ("?*", "every name"), ("a/b", "not valid")):
        with pytest.raises(UsageError, match=message):
            check_patterns([bad])
    with pytest.raises(UsageError, match="at most 50"):
        check_patterns([f"p{i}" for i in range(51)])


def test_every_list_of_stores_names_the_same_stores() -> None:
    import typing

    from modelcycle.server.rpc import METHODS, StoreName
    from modelcycle.store import STORE_NAMES

    names = set(STORE_NAMES)
    assert set(STORES) == names
    assert set(typing.get_args(StoreName)) == names
    assert set(METHODS) == names
    assert set(RULES) == names
