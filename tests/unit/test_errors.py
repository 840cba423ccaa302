"""The error tree, its exit codes and HTTP statuses, and the public API's exports."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import pytest

import modelcycle as mc
from modelcycle.core import errors
from modelcycle.core.errors import (
    ERROR_TABLE,
    BlobCorruptedError,
    ModelcycleError,
    StorageError,
    UsageError,
    exit_code,
    http_status,
)

EXPECTED = {
    "ModelcycleError": (1, 500),
    "UsageError": (2, 400),
    "RefError": (2, 400),
    "RecipeError": (2, 400),
    "RulesError": (2, 400),
    "NotFoundError": (3, 404),
    "WorkspaceNotFoundError": (3, 404),
    "ConflictError": (4, 409),
    "InputDataError": (5, 422),
    "ValidationFailed": (6, 422),
    "GateRefused": (6, 422),
    "StorageError": (7, 503),
    "BlobCorruptedError": (8, 500),
    "IntegrityError": (9, 500),
    "AuthenticationError": (10, 401),
    "PermissionDeniedError": (11, 403),
    "PayloadTooLargeError": (12, 413),
}


def _defined_error_classes() -> list[type[ModelcycleError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, ModelcycleError) and cls.__module__ == errors.__name__
    ]


@pytest.mark.parametrize("cls", list(ERROR_TABLE), ids=lambda c: c.__name__)
def test_each_class_maps_to_its_exit_code_and_status(cls: type[ModelcycleError]) -> None:
    error = cls("boom")
    assert (exit_code(error), http_status(error)) == ERROR_TABLE[cls]
    assert ERROR_TABLE[cls] == EXPECTED[cls.__name__]


def test_the_table_lists_exactly_the_expected_classes() -> None:
    assert {cls.__name__ for cls in ERROR_TABLE} == set(EXPECTED)


def test_every_error_class_in_the_module_is_in_the_table() -> None:
    defined = _defined_error_classes()
    assert len(defined) == len(EXPECTED)
    assert set(defined) == set(ERROR_TABLE)


def test_exit_codes_are_distinct_per_branch() -> None:
    # Only UsageError's own subclasses, WorkspaceNotFoundError and GateRefused (a failed
    # check like ValidationFailed) share their parent's code.
    sharing = {cls for cls in ERROR_TABLE if ERROR_TABLE[cls] == ERROR_TABLE.get(cls.__mro__[1])}
    assert {cls.__name__ for cls in sharing} == {
        "RefError",
        "RecipeError",
        "RulesError",
        "WorkspaceNotFoundError",
        "GateRefused",
    }


def test_a_subclass_inherits_the_code_of_its_nearest_listed_parent() -> None:
    class TornBlob(BlobCorruptedError):
        pass

    class OutOfQuota(StorageError):
        pass

    class BadFlag(UsageError):
        pass

    class Custom(ModelcycleError):
        pass

    assert (exit_code(TornBlob("x")), http_status(TornBlob("x"))) == (8, 500)
    assert (exit_code(OutOfQuota("x")), http_status(OutOfQuota("x"))) == (7, 503)
    assert (exit_code(BadFlag("x")), http_status(BadFlag("x"))) == (2, 400)
    assert (exit_code(Custom("x")), http_status(Custom("x"))) == (1, 500)


def test_blob_corrupted_is_a_storage_error_with_its_own_code() -> None:
    error = BlobCorruptedError("bad")
    assert isinstance(error, StorageError)
    assert exit_code(error) == 8
    assert exit_code(StorageError("x")) == 7


def test_the_docstring_tree_agrees_with_the_table() -> None:
    doc = errors.__doc__ or ""
    found = {
        m.group(1): (int(m.group(2)), int(m.group(3)))
        for m in re.finditer(
            r"(\w+Error|ValidationFailed|GateRefused)\s+exit (\d+)\s+HTTP (\d+)", doc
        )
    }
    assert found == {cls.__name__: codes for cls, codes in ERROR_TABLE.items()}


def test_str_shows_the_hint_on_its_own_line() -> None:
    assert str(UsageError("bad flag")) == "bad flag"
    assert str(UsageError("bad flag", hint="use --good")) == "bad flag\n  hint: use --good"


def test_to_dict_minimal() -> None:
    assert UsageError("bad flag").to_dict() == {"error": "UsageError", "message": "bad flag"}


def test_to_dict_with_hint_and_details_made_plain() -> None:
    error = BlobCorruptedError(
        "blob x is corrupted",
        hint="restore it",
        oid="abc",
        path=Path("/some/where"),
        sizes=(1, 2),
        nested={1: [Path("p"), None, 2.5, True]},
    )
    assert error.to_dict() == {
        "error": "BlobCorruptedError",
        "message": "blob x is corrupted",
        "hint": "restore it",
        "details": {
            "oid": "abc",
            "path": "/some/where",
            "sizes": [1, 2],
            "nested": {"1": ["p", None, 2.5, True]},
        },
    }
    assert error.details["path"] == Path("/some/where")  # the original stays untouched


# ---------------------------------------------------------------- the public API


def test_all_is_sorted_without_duplicates() -> None:
    assert mc.__all__ == sorted(mc.__all__)
    assert len(set(mc.__all__)) == len(mc.__all__)


@pytest.mark.parametrize("name", mc.__all__)
def test_every_name_in_all_is_importable(name: str) -> None:
    assert getattr(mc, name) is not None


def test_exported_members() -> None:
    """Every public object defined by modelcycle and bound in the package is in __all__."""
    public = {
        name
        for name, value in vars(mc).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", "").startswith("modelcycle")
    }
    assert public <= set(mc.__all__)
    # Workspace, Recipe and the tracking calls are loaded lazily (they need SQLAlchemy
    # and polars).
    lazy = {"Recipe", "Workspace", "__version__", *mc._FLUENT}
    assert set(mc.__all__) - public <= lazy


def test_every_error_class_is_exported() -> None:
    for cls in ERROR_TABLE:
        assert cls.__name__ in mc.__all__
        assert getattr(mc, cls.__name__) is cls


def test_star_import_gives_all() -> None:
    namespace: dict[str, object] = {}
    exec("from modelcycle import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(mc.__all__)


def test_recipe_is_loaded_lazily_and_is_the_real_class() -> None:
    from modelcycle.data.recipes import Recipe

    assert mc.Recipe is Recipe


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = mc.Nope  # type: ignore[attr-defined]


def test_version_is_a_string() -> None:
    assert isinstance(mc.__version__, str)
    assert re.match(r"^\d+\.\d+", mc.__version__)
