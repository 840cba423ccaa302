"""Several processes writing one dataset at once get distinct version numbers, lose nothing.

Real ``modelcycle dataset add`` processes are started together against one workspace,
whose metadata store is SQLite (the default) or PostgreSQL, and must all succeed: the
versions are exactly 1..N, each holds what one of the processes added, the audit log has
one event per version, and ``fsck`` is clean. Each process's ``--json`` answer says which
version it got; ``dataset get`` of that version must give back exactly its input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _crash_cli import (
    LibraryChecker,
    fsck,
    init_workspace,
    run_json,
    spawn,
    tree_digest,
    versions,
    write_csv,
    write_file_tree,
)

pytestmark = pytest.mark.slow

N_WRITERS = 6

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=STORES)
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A fresh workspace whose metadata store is SQLite or PostgreSQL."""
    if request.param == "sqlite":
        return init_workspace(tmp_path / "ws")
    return init_workspace(tmp_path / "ws", "--store", request.getfixturevalue("postgres_url"))


def add_all_at_once(workspace: Path, adds: list[tuple[str, Path]]) -> list[dict[str, Any]]:
    """Start ``dataset add NAME PATH --json`` for every pair together; each one's result."""
    procs = [spawn(workspace, "dataset", "add", name, str(path), "--json") for name, path in adds]
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    try:
        for (name, path), proc in zip(adds, procs, strict=True):
            stdout, stderr = proc.communicate(timeout=300)
            if proc.returncode != 0:
                failures.append(f"add {name} {path.name} exited {proc.returncode}:\n{stderr}")
            else:
                results.append(json.loads(stdout))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not failures, "\n\n".join(failures)
    return results


def events(workspace: Path, kind: str) -> list[dict[str, Any]]:
    return list(run_json(workspace, "events", "--kind", kind, "--limit", "100000"))


# -- inputs: one per writer, all different -------------------------------------------------------


def csv_sources(root: Path, n: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = root / f"part-{i}.csv"
        write_csv(path, 500 + 100 * i, seed=i, start=10_000 * i)
        paths.append(path)
    return paths


def folder_sources(root: Path, n: int) -> list[Path]:
    """Folders sharing most files (so writers race to store the same blobs) but each with
    its own ``writer.txt`` and a few files of its own."""
    paths = []
    for i in range(n):
        path = root / f"folder-{i}"
        write_file_tree(path / "shared", 200, seed=0)
        write_file_tree(path / "own", 20, seed=100 + i)
        (path / "writer.txt").write_text(f"writer {i}\n")
        paths.append(path)
    return paths


def csv_digest(path: Path) -> str:
    df = pl.read_csv(path) if path.suffix == ".csv" else pl.read_parquet(path)
    return f"{df.height}:{df.hash_rows(seed=0).sum()}"


def materialized(workspace: Path, ref: str, dest: Path, kind: str) -> str:
    if kind == "csv":
        dest = dest.with_suffix(".parquet")
        LibraryChecker(workspace).get(ref, dest)
        return csv_digest(dest)
    LibraryChecker(workspace).get(ref, dest)
    return tree_digest(dest)


SOURCES: dict[str, tuple[Callable[[Path, int], list[Path]], Callable[[Path], str]]] = {
    "csv": (csv_sources, csv_digest),
    "folder": (folder_sources, tree_digest),
}


# -- the tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "folder"])
def test_concurrent_adds_to_one_dataset_get_distinct_versions(
    workspace: Path, tmp_path: Path, kind: str
) -> None:
    make, digest = SOURCES[kind]
    sources = make(tmp_path / "inputs", N_WRITERS)
    expected = {digest(p): p for p in sources}
    assert len(expected) == N_WRITERS  # every writer adds different content

    results = add_all_at_once(workspace, [("same", p) for p in sources])

    numbers = sorted(r["version"] for r in results)
    assert numbers == list(range(1, N_WRITERS + 1)), results
    assert all(r["created"] for r in results), results

    listed = versions(workspace, "same")
    assert [v["version"] for v in listed] == list(range(1, N_WRITERS + 1)), listed
    by_number = {r["version"]: r for r in results}
    for v in listed:
        assert v["content_hash"] == by_number[v["version"]]["content_hash"], (v, results)

    assert len({v["content_hash"] for v in listed}) == N_WRITERS, listed

    # Each version holds exactly what the process that got its number added.
    for source, result in zip(sources, results, strict=True):
        n = result["version"]
        got = materialized(workspace, f"same@{n}", tmp_path / f"get-{n}", kind)
        assert got == digest(source), f"same@{n} does not hold {source.name}, which got it"
        assert got in expected

    created = [
        e for e in events(workspace, "dataset.version.created") if e["subject"].startswith("same@")
    ]
    assert sorted(e["subject"] for e in created) == sorted(f"same@{n}" for n in numbers)
    assert len(events(workspace, "dataset.created")) == 1

    report = fsck(workspace)
    assert report["versions"] == N_WRITERS
    assert report["unreferenced_blobs"] == 0, report


def test_concurrent_adds_creating_the_same_datasets_all_succeed(
    workspace: Path, tmp_path: Path
) -> None:
    names = ["alpha", "beta", "gamma"]
    per_name = 3
    sources = csv_sources(tmp_path / "inputs", len(names) * per_name)
    adds = [(names[i % len(names)], p) for i, p in enumerate(sources)]

    results = add_all_at_once(workspace, adds)

    assert len(results) == len(adds)
    assert all(r["created"] for r in results), results
    listing = run_json(workspace, "dataset", "list")["datasets"]
    assert sorted(d["name"] for d in listing) == names, listing
    assert all((d["versions"], d["latest"]) == (per_name, per_name) for d in listing), listing
    for name in names:
        listed = versions(workspace, name)
        assert [v["version"] for v in listed] == list(range(1, per_name + 1)), (name, listed)
        mine = {csv_digest(p) for n, p in adds if n == name}
        got = {
            materialized(
                workspace, f"{name}@{v['version']}", tmp_path / f"{name}-{v['version']}", "csv"
            )
            for v in listed
        }
        assert got == mine, f"{name} does not hold exactly what was added to it"

    created = events(workspace, "dataset.created")
    assert sorted(e["subject"] for e in created) == names, created
    version_events = events(workspace, "dataset.version.created")
    assert len(version_events) == len(adds)
    fsck(workspace)
