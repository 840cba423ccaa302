"""Durations written by people: ``90s``, ``15m``, ``1h``, ``7d``, ``2w``."""

from __future__ import annotations

import math
import re
from typing import Any

from modelcycle.core.errors import UsageError

__all__ = ["format_duration", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_HINT = "write a number with a unit: ms, s, m, h, d or w (e.g. 90s, 15m, 1h, 7d)"


def parse_duration(value: Any, what: str, *, require_unit: bool = False) -> float:
    """Seconds in ``value``: text such as ``90s``, ``15m``, ``1.5h``, ``7d``, or (unless
    ``require_unit``) a bare number of seconds. Raises UsageError naming ``what``."""
    if isinstance(value, bool):
        raise UsageError(f"{what} is {value!r}, not a duration", hint=_HINT)
    if isinstance(value, int | float) and not require_unit:
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None or (require_unit and match.group(2) is None):
            raise UsageError(f"{what} {str(value)!r} is not a duration", hint=_HINT)
        seconds = float(match.group(1)) * _UNIT[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{what} is {value!r}; it must be zero or more", hint=_HINT)
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact text for ``seconds``: ``1h``, ``90s``, ``1.5s``."""
    for unit in ("w", "d", "h", "m"):
        size = _UNIT[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
