"""modelcycle reaches Evidently's verdicts: the same test, score and verdict per column.

The fixtures (``tests/fixtures/drift/evidently_*.json``) hold Evidently 0.7's results on
data regenerated here from seeds (``cases.py``). The 1,000,000-row W3 fixture is checked
by ``bench/drift.py`` only (too slow for the suite); 100,000 rows are checked here, from
data in memory, from Parquet files, and through a stored (compressed) reference sketch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from modelcycle.monitoring.drift import DriftOptions, DriftResult, Reference, compare
from modelcycle.monitoring.sketches import from_bytes, to_bytes
from modelcycle.monitoring.sources import FrameSource, ParquetSource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "drift"


def _cases() -> Any:
    spec = importlib.util.spec_from_file_location("drift_cases", FIXTURES / "cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cases = _cases()
SMALL = json.loads((FIXTURES / "evidently_small.json").read_text())
W3 = json.loads((FIXTURES / "evidently_w3_n100000.json").read_text())


def frame(columns: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            name: pl.Series(name, values.tolist() if values.dtype == object else values)
            for name, values in columns.items()
        }
    )


def assert_same(result: DriftResult, expected: dict[str, Any], *, rel: float = 1e-7) -> None:
    got = {c.column: c for c in result.columns}
    assert set(got) == set(expected["columns"])
    for name, want in expected["columns"].items():
        column = got[name]
        assert column.status == "ok", (name, column.message)
        assert column.kind == expected["kinds"][name], name
        assert column.test == want["test"], name
        assert column.threshold == want["threshold"], name
        assert column.drifted is want["drifted"], (name, column.score, want)
        score = float(want["score"])
        assert column.score is not None
        assert math.isclose(column.score, score, rel_tol=rel, abs_tol=1e-12), (
            name,
            column.score,
            score,
        )
    assert len(result.drifted_columns) == expected["drifted_count"]
    assert result.drift_share == pytest.approx(expected["drift_share"])
    assert result.dataset_drift is expected["dataset_drift"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_tables_get_evidently_verdicts(name: str) -> None:
    ref, cur = cases.small(name)
    result, _ = compare(
        Reference(FrameSource(frame(ref)), None), FrameSource(frame(cur)), DriftOptions()
    )
    assert_same(result, SMALL[name])


@pytest.fixture(scope="module")
def w3_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ref, cur = cases.w3(W3["n"], W3["seed"])
    folder = tmp_path_factory.mktemp("w3")
    frame(ref).write_parquet(folder / "reference.parquet")
    frame(cur).write_parquet(folder / "current.parquet")
    return folder / "reference.parquet", folder / "current.parquet"


def test_w3_100k_from_parquet_gets_evidently_verdicts(w3_files: tuple[Path, Path]) -> None:
    ref_path, cur_path = w3_files
    result, fresh = compare(
        Reference(ParquetSource([str(ref_path)], "reference"), None),
        ParquetSource([str(cur_path)], "current"),
        DriftOptions(),
        keep=True,
    )
    assert_same(result, W3)
    assert all(c.exact for c in result.columns)
    assert set(fresh) == set(W3["columns"])


def test_w3_100k_from_a_stored_sketch_keeps_every_verdict(w3_files: tuple[Path, Path]) -> None:
    """From the compressed sketch, each Wasserstein distance is exact or lies within its
    stated bounds (less than 1e-3 apart), and every verdict is Evidently's; no column
    needed the reference's rows (no bound straddled the threshold)."""
    ref_path, cur_path = w3_files
    reference = ParquetSource([str(ref_path)], "reference")
    _, fresh = compare(
        Reference(reference, None), ParquetSource([str(cur_path)], "c"), DriftOptions(), keep=True
    )
    stored, _ = from_bytes(to_bytes([fresh[c] for c in reference.schema()], {}))
    result, again = compare(
        Reference(None, stored), ParquetSource([str(cur_path)], "current"), DriftOptions()
    )
    assert again == {}
    for column in result.columns:
        want = W3["columns"][column.column]
        assert column.drifted is want["drifted"], column.column
        score = float(want["score"])
        if column.exact:  # also a compressed cell's distance, when no cell is crossed
            assert column.score == pytest.approx(score, rel=1e-9)
        else:
            assert column.test == "wasserstein" and column.bounds is not None
            low, high = column.bounds
            assert low <= score * (1 + 1e-9) and score <= high * (1 + 1e-9)
            assert high - low < 1e-3
            assert column.score == pytest.approx(score, abs=1e-5)
    assert {c.column for c in result.columns if not c.exact} >= {"num_10", "num_15"}
    assert result.dataset_drift is W3["dataset_drift"]


def test_the_fixture_data_is_what_the_benchmark_generates() -> None:
    """Pin the generated data: a change to the generator (or to numpy's random streams)
    shows here before it shows as a verdict mismatch. The digest was taken when the
    data matched the benchmark's Parquet files bit for bit."""
    ref, cur = cases.w3(1000)
    digest = hashlib.sha256()
    for side in (ref, cur):
        for name, values in side.items():
            digest.update(name.encode())
            digest.update(values.tobytes() if values.dtype != object else "|".join(values).encode())
    assert ref["num_00"][0] == 0.6479062041731867
    assert digest.hexdigest() == (
        "6be2516922324bbd4630f7cd035cd0b7d89f02962b85ede0079f78738265b63e"
    )
