"""Store records as JSON, and back, for calls between a remote workspace and its server.

JSON has no tuples, datetimes, bytes, sets, NaN or dataclasses; the stores use all of
them. A value of such a type travels as a one-key object whose key starts with ``$``:

======================  ===========================================
``{"$t": [...]}``       tuple
``{"$s": [...]}``       set
``{"$dt": "ISO"}``      datetime (``{"$d": "ISO"}`` a date)
``{"$b": "base64"}``    bytes
``{"$f": "nan"}``       a float JSON cannot hold: nan, inf, -inf
``{"$m": [[k, v]]}``    a dict whose keys are not all strings, or that has a ``$`` key
``{"$c": NAME, "f"}``   a record (dataclass) of the metadata stores, by name
======================  ===========================================

Decoding builds only the record classes of `modelcycle.store`, found by name in a
fixed table (`RECORDS`): a request can never make the server import or call anything
else.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import importlib
import math
from collections.abc import Mapping
from typing import Any

from modelcycle.core.errors import UsageError
from modelcycle.store import STORE_NAMES


def _records() -> dict[str, type[Any]]:
    """The dataclasses of every store module: what may travel between a client and the
    server."""
    found: dict[str, type[Any]] = {}
    for name in STORE_NAMES:
        module = importlib.import_module(f"modelcycle.store.{name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and dataclasses.is_dataclass(value)
                and value.__module__ == module.__name__
            ):
                found[value.__name__] = value
    return found


RECORDS: dict[str, type[Any]] = _records()
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode(value: Any) -> Any:
    """``value`` as plain JSON data (see the module's table)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$t": [encode(v) for v in value]}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$m": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$d": value.isoformat()}
    if isinstance(value, set | frozenset):
        return {"$s": [encode(v) for v in value]}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if RECORDS.get(name) is not type(value):
            raise TypeError(f"{name} is not a store record and cannot be sent")
        return {
            "$c": name,
            "f": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and type(value).__module__ == "numpy":
        return encode(item())
    if hasattr(value, "__iter__") and not isinstance(value, str | bytes):
        return [encode(v) for v in value]  # generators and other iterables: a list
    raise TypeError(f"a {type(value).__name__} cannot be sent to the server")


def decode(data: Any) -> Any:
    """The value `encode` made ``data`` from. Raises UsageError on anything else."""
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        raise _bad(f"a {type(data).__name__}")
    tag = next(iter(data), None) if data else None
    if not (isinstance(tag, str) and tag.startswith("$")):
        return {k: decode(v) for k, v in data.items()}
    body = data[tag]
    try:
        if tag == "$c" and set(data) == {"$c", "f"}:
            return _record(body, data["f"])
        if len(data) != 1:
            raise _bad(f"an object with the tag {tag!r} and other keys")
        if tag == "$t":
            return tuple(decode(v) for v in _list(body))
        if tag == "$s":
            return {decode(v) for v in _list(body)}
        if tag == "$m":
            return {decode(k): decode(v) for k, v in (_pair(p) for p in _list(body))}
        if tag == "$dt":
            return dt.datetime.fromisoformat(_str(body))
        if tag == "$d":
            return dt.date.fromisoformat(_str(body))
        if tag == "$b":
            return base64.b64decode(_str(body), validate=True)
        if tag == "$f" and body in _FLOATS:
            return _FLOATS[body]
    except (ValueError, TypeError) as e:
        raise _bad(f"a malformed {tag!r} value ({e})") from e
    raise _bad(f"the unknown tag {tag!r}")


def _record(name: Any, fields: Any) -> Any:
    cls = RECORDS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise _bad(f"the unknown record {name!r}")
    if not isinstance(fields, dict):
        raise _bad(f"record {name} without its fields")
    known = {f.name: f for f in dataclasses.fields(cls)}
    if set(fields) != set(known):
        missing, extra = sorted(set(known) - set(fields)), sorted(set(fields) - set(known))
        raise _bad(f"record {name} with missing fields {missing} or unknown fields {extra}")
    values = {k: decode(v) for k, v in fields.items()}
    made = cls(**{k: v for k, v in values.items() if known[k].init})
    for k, v in values.items():
        if not known[k].init:
            object.__setattr__(made, k, v)
    return made


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _pair(value: Any) -> tuple[Any, Any]:
    if not (isinstance(value, list) and len(value) == 2):
        raise TypeError("expected [key, value] pairs")
    return value[0], value[1]


def _bad(what: str) -> UsageError:
    return UsageError(
        f"the request carries {what}, which is not a value modelcycle sends",
        hint="call the server through modelcycle's own client (Workspace.connect)",
    )
