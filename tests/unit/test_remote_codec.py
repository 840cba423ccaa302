"""The encoding of store records between a remote workspace and its server, and the
server's check of every argument against the store method's type hints."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import orjson
import pytest

from modelcycle.core.errors import UsageError
from modelcycle.remote import codec
from modelcycle.server.rpc import METHODS, _bind, conforms
from modelcycle.store.metadata import VersionRecord
from modelcycle.store.runs import Clause, RunEnd, RunStore


def _round_trip(value: Any) -> Any:
    return codec.decode(orjson.loads(orjson.dumps(codec.encode(value))))


def _version() -> VersionRecord:
    return VersionRecord(
        id=3,
        dataset_id=1,
        dataset="iris",
        version=2,
        kind="table",
        hash_algorithm="blake3",
        content_hash="ab" * 32,
        manifest_oid="cd" * 32,
        num_rows=150,
        num_files=None,
        size_bytes=4096,
        schema=[{"name": "x", "type": "Float64"}],
        profile={"rows": 150},
        step={"op": "add"},
        cache_key=None,
        message="m",
        created_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        created_by="ana",
        deleted_at=None,
    )


def test_records_and_the_types_json_lacks_survive_the_round_trip() -> None:
    value = {
        "record": _version(),
        "tuple": (1, "a", None),
        "set": {1, 2},
        "when": dt.datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        "naive": dt.datetime(2026, 5, 6),
        "day": dt.date(2026, 5, 6),
        "bytes": b"\x00\xff",
        "inf": math.inf,
        "keys": {1: "int key", ("a", 2): "tuple key"},
        "$dollar": "a key that looks like a tag",
        "nested": [RunEnd(status="finished", end_time=5), Clause("metric", "acc", ">", 0.5)],
    }
    back = _round_trip(value)
    assert back == value
    assert type(back["record"]) is VersionRecord
    assert type(back["tuple"]) is tuple
    nan = _round_trip([math.nan])[0]
    assert isinstance(nan, float) and math.isnan(nan)


@pytest.mark.parametrize(
    "data",
    [
        {"$c": "Popen", "f": {}},  # not a store record
        {"$c": "VersionRecord", "f": {"id": 1}},  # fields missing
        {"$t": [1], "extra": 2},
        {"$dt": "yesterday"},
        {"$b": "not base64!"},
        {"$f": "1e999"},
        {"$zz": 1},
    ],
)
def test_anything_else_is_refused_as_bad_input(data: Any) -> None:
    with pytest.raises(UsageError, match="not a value modelcycle sends"):
        codec.decode(data)


def test_only_store_records_are_sent() -> None:
    class Local:
        pass

    with pytest.raises(TypeError):
        codec.encode(Local())


def test_arguments_are_checked_against_the_methods_hints() -> None:
    runs = RunStore.__new__(RunStore)
    bound = _bind("runs", "write_batch", runs.write_batch, ["r1", [("loss", 0.5, 1, 2)]], {})
    assert bound.arguments["run_id"] == "r1"
    for args, kwargs, needle in [
        ([5, []], {}, "argument 'run_id'"),  # an int where a str goes
        (["r1", [("loss", "high", 1, 2)]], {}, "argument 'points'"),
        (["r1", []], {"end": {"status": "x"}}, "argument 'end'"),  # a dict, not a RunEnd
        (["r1"], {}, "missing a required argument"),
        (["r1", [], [], [], None, "extra"], {}, "too many"),
    ]:
        with pytest.raises(UsageError, match=needle):
            _bind("runs", "write_batch", runs.write_batch, args, kwargs)
    with pytest.raises(UsageError, match="keyword 'deleted_at'"):
        _bind("runs", "set_state", runs.set_state, ["r1"], {"deleted_at": None})
    assert conforms(2**63 - 1, int) and not conforms(2**63, int)
    assert not conforms("a\x00b", str)
    assert not conforms(True, int)


def test_every_method_in_the_role_table_exists_and_no_private_one_answers() -> None:
    from modelcycle.api.workspace import STORE_CLASSES
    from modelcycle.store.metadata import MetadataStore

    classes = {"metadata": MetadataStore, **STORE_CLASSES}
    assert set(METHODS) == set(classes)
    for store, methods in METHODS.items():
        for name in methods:
            assert callable(getattr(classes[store], name)), f"{store}.{name}"
    for hidden in ("reading", "writing", "add_event", "allocating", "side_schema_url", "close"):
        assert hidden not in METHODS["metadata"]
    assert set(METHODS["tokens"].values()) == {"admin"}
