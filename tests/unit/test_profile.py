"""Column profiles: statistics that agree with numpy/polars, histograms, top values, PII."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from modelcycle.data.profile import HIST_BINS, _luhn, detect_pii, profile_frame

AGES = [23.0, 35.0, None, 41.0, 29.0, 35.0, 62.0, 18.0]


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "age": AGES,
            "n": [1, 2, 2, 3, 3, 3, 4, 4],
            "city": ["Oslo", "Rome", "Oslo", None, "Lima", "Oslo", "Rome", "Oslo"],
            "email": [
                "ann@example.com",
                "bob@mail.example.org",
                "cy+tag@x.io",
                "dee@example.com",
                "not an email",
                "eve@example.net",
                None,
                "fay@example.com",
            ],
            "flag": [True, False, True, True, None, False, True, True],
        }
    )


@pytest.fixture(scope="module")
def prof(frame: pl.DataFrame) -> dict[str, Any]:
    return profile_frame(frame.lazy())


def test_rows_types_nulls(prof: dict[str, Any], frame: pl.DataFrame) -> None:
    assert prof["rows"] == 8
    assert list(prof["columns"]) == frame.columns
    for name, dtype in frame.schema.items():
        col = prof["columns"][name]
        assert col["type"] == str(dtype)
        assert col["nulls"] == frame[name].null_count()
        assert col["null_fraction"] == pytest.approx(frame[name].null_count() / 8)


def test_distinct_counts(prof: dict[str, Any]) -> None:
    assert prof["columns"]["n"]["distinct"] == 4


def test_numeric_stats_match_numpy(prof: dict[str, Any]) -> None:
    values = np.array([v for v in AGES if v is not None])
    col = prof["columns"]["age"]
    assert col["min"] == values.min()
    assert col["max"] == values.max()
    assert col["mean"] == pytest.approx(values.mean())
    assert col["std"] == pytest.approx(values.std(ddof=1))
    for q in (5, 25, 50, 75, 95):
        assert col[f"q{q}"] == pytest.approx(np.quantile(values, q / 100)), q


def test_integer_stats_match_polars(prof: dict[str, Any], frame: pl.DataFrame) -> None:
    s = frame["n"]
    col = prof["columns"]["n"]
    assert (col["min"], col["max"]) == (s.min(), s.max())
    assert col["mean"] == pytest.approx(s.mean())
    assert col["std"] == pytest.approx(s.std())
    assert col["q50"] == pytest.approx(s.quantile(0.5, "linear"))


def test_histogram_counts_every_value_once(prof: dict[str, Any]) -> None:
    values = np.array([v for v in AGES if v is not None])
    hist = prof["columns"]["age"]["histogram"]
    assert len(hist["edges"]) == HIST_BINS + 1
    assert hist["edges"][0] == values.min()
    assert hist["edges"][-1] == pytest.approx(values.max())
    assert len(hist["counts"]) == HIST_BINS
    assert sum(hist["counts"]) == len(values)
    expected, _ = np.histogram(values, bins=hist["edges"])
    assert hist["counts"] == expected.tolist()


def test_histogram_of_a_constant_column() -> None:
    prof = profile_frame(pl.DataFrame({"c": [5.0, 5.0, 5.0]}).lazy())
    col = prof["columns"]["c"]
    assert col["std"] == 0.0
    assert sum(col["histogram"]["counts"]) == 3


def test_infinities_and_nan_are_left_out_of_the_statistics() -> None:
    df = pl.DataFrame({"x": [1.0, 2.0, float("inf"), float("-inf"), float("nan"), 3.0]})
    col = profile_frame(df.lazy())["columns"]["x"]
    assert (col["min"], col["max"], col["mean"]) == (1.0, 3.0, 2.0)
    assert col["std"] == pytest.approx(1.0)


def test_infinities_are_left_out_of_the_histogram() -> None:
    df = pl.DataFrame({"x": [1.0, 2.0, float("inf"), float("-inf"), float("nan"), 3.0]})
    hist = profile_frame(df.lazy())["columns"]["x"]["histogram"]
    assert sum(hist["counts"]) == 3  # only the finite values: 1, 2 and 3


def test_nulls_are_left_out_of_every_column_kind() -> None:
    df = pl.DataFrame(
        {"i": [1, None, 3, None, 9], "f": [1.0, None, 2.0, float("nan"), 3.0]},
        schema={"i": pl.Int64, "f": pl.Float64},
    )
    cols = profile_frame(df.lazy())["columns"]
    assert sum(cols["i"]["histogram"]["counts"]) == 3 and cols["i"]["nulls"] == 2
    assert (cols["i"]["min"], cols["i"]["max"], cols["i"]["q50"]) == (1.0, 9.0, 3.0)
    assert sum(cols["f"]["histogram"]["counts"]) == 3 and cols["f"]["mean"] == 2.0


def test_top_values_are_most_frequent_first(prof: dict[str, Any], frame: pl.DataFrame) -> None:
    top = prof["columns"]["city"]["top"]
    assert top == [
        {"value": "Oslo", "count": 4},
        {"value": "Rome", "count": 2},
        {"value": "Lima", "count": 1},
    ]
    counts = frame["city"].drop_nulls().value_counts(sort=True)
    assert top[0]["count"] == counts["count"][0]


def test_top_values_break_ties_by_value(prof: dict[str, Any]) -> None:
    assert prof["columns"]["n"]["top"] == [
        {"value": 3, "count": 3},
        {"value": 2, "count": 2},
        {"value": 4, "count": 2},
        {"value": 1, "count": 1},
    ]


def test_top_values_are_left_out_for_many_distinct_numbers() -> None:
    prof = profile_frame(pl.DataFrame({"x": list(range(100))}).lazy())
    assert "top" not in prof["columns"]["x"]
    assert "histogram" in prof["columns"]["x"]


def test_text_lengths(prof: dict[str, Any], frame: pl.DataFrame) -> None:
    col = prof["columns"]["email"]
    lengths = frame["email"].drop_nulls().str.len_chars()
    assert (col["min_length"], col["max_length"]) == (lengths.min(), lengths.max())


def test_booleans_are_not_numeric(prof: dict[str, Any]) -> None:
    col = prof["columns"]["flag"]
    assert "mean" not in col
    assert "histogram" not in col
    assert col["top"][0] == {"value": True, "count": 5}


def test_pii_is_flagged_for_an_email_column(prof: dict[str, Any]) -> None:
    assert prof["columns"]["email"]["pii"] == ["email"]
    assert "pii" not in prof["columns"]["city"]


def test_an_empty_table() -> None:
    prof = profile_frame(
        pl.DataFrame({"x": [], "s": []}, schema={"x": pl.Float64, "s": pl.String}).lazy()
    )
    assert prof["rows"] == 0
    assert prof["columns"]["x"]["null_fraction"] == 0.0
    assert prof["columns"]["x"]["min"] is None
    assert "histogram" not in prof["columns"]["x"]


# ---------------------------------------------------------------- PII detection

VALID_CARDS = ["4111 1111 1111 1111", "4012888888881881", "5555-5555-5555-4444", "378282246310005"]


@pytest.mark.parametrize("number", [c.replace(" ", "").replace("-", "") for c in VALID_CARDS])
def test_luhn_accepts_valid_card_numbers(number: str) -> None:
    assert _luhn(number)


@pytest.mark.parametrize(
    "number", ["4111111111111112", "1234567812345678", "0000000000001", "12345", "4" * 20]
)
def test_luhn_rejects_other_numbers(number: str) -> None:
    assert not _luhn(number)


def test_luhn_ignores_separators() -> None:
    assert _luhn("4111 1111 1111 1111")
    assert _luhn("4111-1111-1111-1111")


def test_detect_emails() -> None:
    assert detect_pii(["a@b.co", "first.last+x@sub.example.org", "nope"]) == ["email"]


def test_detect_cards_only_when_luhn_passes() -> None:
    assert detect_pii(VALID_CARDS[:3]) == ["card_number"]  # and not "phone"
    assert "card_number" not in detect_pii(["1234567812345678", "1111222233334445"])


def test_detect_needs_half_the_values() -> None:
    emails = ["a@b.io", "c@d.io"]
    assert detect_pii([*emails, "x", "y"]) == ["email"]  # exactly half
    assert detect_pii([*emails, "x", "y", "z"]) == []


def test_detect_phone_numbers() -> None:
    assert detect_pii(["+47 22 33 44 55", "(555) 123-4567", "020 7946 0958"]) == ["phone"]


def test_detect_nothing() -> None:
    assert detect_pii([]) == []
    assert detect_pii(["Oslo", "Rome"]) == []


def test_a_range_wider_than_the_largest_float_still_gets_a_histogram() -> None:
    import json

    profile = profile_frame(pl.DataFrame({"x": [-1.7e308, 0.0, 1.7e308, None]}).lazy())
    hist = profile["columns"]["x"]["histogram"]
    assert hist["counts"] == [1] + [0] * 9 + [1] + [0] * 8 + [1]
    assert hist["edges"][0] == -1.7e308 and hist["edges"][-1] == pytest.approx(1.7e308)
    assert all(a < b for a, b in zip(hist["edges"], hist["edges"][1:], strict=False))
    json.dumps(profile, allow_nan=False)  # no inf or NaN left to store
