"""Parsing of ``modelcycle deploy`` arguments: weights and times."""

from __future__ import annotations

import datetime as dt

import pytest

from modelcycle.cli.deploy import parse_time, parse_weights
from modelcycle.core.errors import UsageError

NOW = dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC)


def test_weights() -> None:
    assert parse_weights(["m@7=90", "m@8=10"]) == {"m@7": 90.0, "m@8": 10.0}
    assert parse_weights(["m@champion"]) == {"m@champion": 100.0}
    assert parse_weights(["m@7=0.5"]) == {"m@7": 0.5}


@pytest.mark.parametrize(
    "items", [["m@7", "m@8"], ["m@7=x"], ["=5"], ["m@7=1", "m@7=2"], ["m@7=90", "m@8"]]
)
def test_bad_weights(items: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_weights(items)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - dt.timedelta(minutes=30)),
        ("2d", NOW - dt.timedelta(days=2)),
        ("1.5h", NOW - dt.timedelta(minutes=90)),
        ("2026-01-01T00:00:00", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        ("2026-01-01T02:00:00+02:00", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        (None, None),
    ],
)
def test_times(text: str | None, expected: dt.datetime | None) -> None:
    assert parse_time(text, NOW, "--since") == expected


def test_bad_time_names_the_option() -> None:
    with pytest.raises(UsageError, match="--until 'tomorrow'"):
        parse_time("tomorrow", NOW, "--until")
