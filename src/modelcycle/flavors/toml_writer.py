"""Write nested dicts as TOML (``tomllib`` reads it back; the standard library has no writer).

Dicts become ``[tables]``, lists of dicts ``[[arrays of tables]]``, deeper dicts inline
tables. ``None`` has no TOML form: keys whose value is ``None`` are left out.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from modelcycle.core.config import toml_string

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` as a TOML document."""
    lines: list[str] = []
    _table(lines, (), data, header=False)
    return "\n".join(lines).strip() + "\n"


def _table(
    lines: list[str], path: tuple[str, ...], table: Mapping[str, Any], *, header: bool
) -> None:
    items = [(str(k), v) for k, v in table.items() if v is not None]
    tables = [(k, v) for k, v in items if isinstance(v, Mapping)]
    arrays = [(k, v) for k, v in items if _is_table_array(v)]
    nested = {k for k, _ in tables} | {k for k, _ in arrays}
    plain = [(k, v) for k, v in items if k not in nested]
    if header:
        lines.extend(["", f"[{_dotted(path)}]"])
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in plain)
    for k, v in tables:
        _table(lines, (*path, k), v, header=True)
    for k, v in arrays:
        for item in v:
            lines.extend(["", f"[[{_dotted((*path, k))}]]"])
            lines.extend(f"{_key(ik)} = {_value(iv)}" for ik, iv in item.items() if iv is not None)


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(_key(p) for p in path)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        inner = ", ".join(
            f"{_key(str(k))} = {_value(v)}" for k, v in value.items() if v is not None
        )
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    raise TypeError(f"{type(value).__name__} has no TOML form: {value!r}")
