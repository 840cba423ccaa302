"""The quick CLI path (`modelcycle.cli.quick`): ``dataset status`` and ``dataset add`` of a
folder without typer, SQLAlchemy, polars or pandas, and of a table file with polars but
without typer or SQLAlchemy, writing and printing exactly what the ordinary CLI writes and
prints, and stepping aside whenever it is not the plain case.

Each command runs as a child process. ``QUICK`` runs the installed entry point and reports
which heavy modules the process had imported when it exited; ``ORDINARY`` runs the typer
application directly, as the entry point does after the quick path declines.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from integration_support import CLI_TIMEOUT, cli_env, random_files, run_cli, write_files

from modelcycle.cli.quick import run_quick
from modelcycle.core.text import human_bytes
from modelcycle.store.quickwrite import QuickWriteRefused, check_writable

HEAVY = ("sqlalchemy", "alembic", "polars", "pandas", "pyarrow", "numpy", "typer", "rich")

_REPORT = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('\\nIMPORTED ' + ' '.join(\n"
    f"    m for m in {HEAVY!r} if m in sys.modules) + '\\n'))\n"
)
QUICK = _REPORT + "from modelcycle.cli import main\nmain()\n"
ORDINARY = _REPORT + "from modelcycle.cli.main import main\nmain()\n"


def cli(
    entry: str, *args: str | os.PathLike[str], cwd: Path, expect: int = 0
) -> tuple[str, str, list[str]]:
    """(stdout, stderr without the report, heavy modules imported) of one command."""
    done = subprocess.run(
        [sys.executable, "-c", entry, *map(str, args)],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    stderr, _, report = done.stderr.rpartition("\nIMPORTED ")
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout, stderr, report.split()


def new_workspace(root: Path) -> Path:
    root.mkdir(parents=True)
    run_cli("init", ".", cwd=root)
    return root


def rows(root: Path) -> dict[str, list[dict[str, Any]]]:
    """What the store holds about datasets, with times checked and dropped and the
    workspace's own path replaced by ROOT."""
    conn = sqlite3.connect(root / ".modelcycle" / "metadata.db")
    conn.row_factory = sqlite3.Row
    stored_time = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        for table, time_columns in (
            ("datasets", ("created_at",)),
            ("dataset_versions", ("created_at",)),
            ("version_parents", ()),
            ("events", ("at",)),
        ):
            found = []
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                record = dict(row)
                if table == "events" and record["kind"] == "workspace.created":
                    continue
                for column in time_columns:
                    assert stored_time.fullmatch(record.pop(column)), (table, dict(row))
                for column, value in record.items():
                    if isinstance(value, str):
                        record[column] = value.replace(str(root), "ROOT")
                found.append(record)
            out[table] = found
    finally:
        conn.close()
    return out


def test_quick_add_and_status_match_the_ordinary_cli(tmp_path: Path) -> None:
    quick, ordinary = new_workspace(tmp_path / "quick"), new_workspace(tmp_path / "ordinary")
    files = random_files(40, size=300)
    for root in (quick, ordinary):
        write_files(root / "data", files)
        for path in (root / "data").rglob("*"):
            os.utime(path, (1_000_000_000, 1_000_000_000))  # old enough for the stat cache

    def both(*args: str, expect_quick: bool = True) -> str:
        out_q, err_q, heavy_q = cli(QUICK, *args, cwd=quick)
        out_o, err_o, heavy_o = cli(ORDINARY, *args, cwd=ordinary)
        assert (out_q, err_q) == (out_o, err_o), args
        assert "sqlalchemy" in heavy_o and "typer" in heavy_o  # the comparison is real
        if expect_quick:
            assert heavy_q == [], (args, heavy_q)
        return out_q

    added = both("dataset", "add", "docs", "data", "-m", "first")
    again = json.loads(both("dataset", "add", "docs", "data", "--json"))
    assert (again["ref"], again["created"], again["files_hashed"]) == ("docs@1", False, 0)
    size = human_bytes(sum(map(len, files.values())))
    assert added == (
        f"Added docs@1 ({again['content_hash'][:12]}): 40 files, {size}; "
        f"{size} new, 0 B deduplicated.\n"
    )
    assert both("dataset", "add", "docs", "data") == (
        f"docs@1 unchanged: the content equals the latest version ({again['content_hash'][:12]}).\n"
    )
    assert both("dataset", "status", "docs", "data") == "data: up to date with docs\n"

    for root in (quick, ordinary):
        (root / "data" / "file00.bin").write_bytes(b"changed")
        (root / "data" / "file01.bin").rename(root / "data" / "moved.bin")
        (root / "data" / "file02.bin").unlink()
        (root / "data" / "new.txt").write_text("new\n")
    status = both("dataset", "status", "docs", "data", "--json")
    assert json.loads(status) == {
        "clean": False,
        "added": ["new.txt"],
        "removed": ["file02.bin"],
        "modified": ["file00.bin"],
        "renamed": [{"from": "file01.bin", "to": "moved.bin"}],
    }
    assert both("dataset", "status", "docs", "data").splitlines() == [
        "  + new.txt",
        "  - file02.bin",
        "  ~ file00.bin",
        "  → file01.bin -> moved.bin",
    ]
    added = json.loads(both("dataset", "add", "docs", "data", "--message", "second", "--json"))
    assert (added["ref"], added["created"], added["files_added"]) == ("docs@2", True, 2)
    both("dataset", "add", "other", "data/nested", "--format", "files")

    assert rows(quick) == rows(ordinary)
    assert [e["kind"] for e in rows(quick)["events"]] == [
        "dataset.created",
        "dataset.version.created",
        "dataset.version.created",
        "dataset.created",
        "dataset.version.created",
    ]
    # The ordinary CLI reads what the quick path wrote.
    listed = run_cli("dataset", "versions", "docs", "--json", cwd=quick).stdout
    assert [(v["version"], v["message"]) for v in json.loads(listed)["versions"]] == [
        (1, "first"),
        (2, "second"),
    ]
    fsck = json.loads(run_cli("fsck", "--json", cwd=quick).stdout)
    assert fsck["ok"] and fsck["versions"] == 3


TABLE_HEAVY = {"polars", "numpy"}  # what adding a table needs; nothing else of HEAVY


def test_quick_table_add_matches_the_ordinary_cli(tmp_path: Path) -> None:
    quick, ordinary = new_workspace(tmp_path / "quick"), new_workspace(tmp_path / "ordinary")
    people = "id,age,email,city\n" + "".join(
        f"{i},{'' if i % 7 == 0 else 20 + i % 50},user{i}@example.com,{'abc'[i % 3]}\n"
        for i in range(300)
    )
    for root in (quick, ordinary):
        (root / "people.csv").write_text(people)
        (root / "more.tsv").write_text(people.replace(",", "\t") + "300\t33\tx@y.org\tb\n")
        (root / "ragged.csv").write_text("id,age\n1,2\n3,4,5\n")

    def both(*args: str, expect: int = 0) -> tuple[str, str]:
        out_q, err_q, heavy_q = cli(QUICK, *args, cwd=quick, expect=expect)
        out_o, err_o, heavy_o = cli(ORDINARY, *args, cwd=ordinary, expect=expect)
        assert (out_q, err_q) == (out_o, err_o), args
        assert "sqlalchemy" in heavy_o and "typer" in heavy_o  # the comparison is real
        # An error is printed with the ordinary CLI's console.
        assert set(heavy_q) <= TABLE_HEAVY | ({"rich"} if expect else set()), (args, heavy_q)
        return out_q, err_q

    out, _ = both("dataset", "add", "people", "people.csv", "-m", "first")
    assert out.startswith("Added people@1 (") and ": 300 rows, " in out
    again = json.loads(both("dataset", "add", "people", "people.csv", "--json")[0])
    assert (again["ref"], again["created"], again["bytes_added"]) == ("people@1", False, 0)
    out, _ = both("dataset", "add", "people", "more.tsv", "--format", "tsv", "--message", "2")
    assert out.startswith("Added people@2 (") and ": 301 rows, " in out
    # A file polars cannot read: the same error, reported once, and nothing stored.
    blobs_before = sorted(p.name for p in (quick / ".modelcycle" / "blobs").rglob("*"))
    _, err = both("dataset", "add", "people", "ragged.csv", expect=5)
    assert "line 3 has 3 fields, the header 2" in err
    assert sorted(p.name for p in (quick / ".modelcycle" / "blobs").rglob("*")) == blobs_before
    assert not list((quick / ".modelcycle" / "tmp").iterdir()), "scratch files left behind"

    assert rows(quick) == rows(ordinary)
    versions = rows(quick)["dataset_versions"]
    assert [(v["version"], v["kind"], v["num_rows"]) for v in versions] == [
        (1, "table", 300),
        (2, "table", 301),
    ]
    assert json.loads(versions[0]["profile"])["columns"]["email"]["pii"] == ["email"]
    shown = json.loads(run_cli("dataset", "show", "people@1", "--json", cwd=quick).stdout)
    assert shown["num_rows"] == 300 and shown["profile"]["columns"]["age"]["nulls"] == 43
    fsck = json.loads(run_cli("fsck", "--json", cwd=quick).stdout)
    assert fsck["ok"] and fsck["versions"] == 2


def test_status_and_re_add_import_no_heavy_module(tmp_path: Path) -> None:
    ws = new_workspace(tmp_path / "ws")
    write_files(ws / "data", random_files(30))
    for args in (
        ("dataset", "add", "docs", "data"),
        ("dataset", "status", "docs", "data"),
        ("dataset", "add", "docs", "data", "--json"),
        ("dataset", "status", "docs", "data", "--json"),
    ):
        _, _, heavy = cli(QUICK, *args, cwd=ws)
        assert heavy == [], (args, heavy)


def test_the_ordinary_cli_answers_what_the_quick_path_does_not(tmp_path: Path) -> None:
    ws = new_workspace(tmp_path / "ws")
    write_files(ws / "data", random_files(5))
    (ws / "people.csv").write_text("id,age\n1,30\n2,40\n")
    _, _, heavy = cli(QUICK, "dataset", "add", "people", "people.csv", cwd=ws)
    assert "polars" in heavy and "sqlalchemy" not in heavy  # a table: the quick path
    _, err, heavy = cli(QUICK, "dataset", "add", "people", "data", cwd=ws, expect=4)
    assert "holds table versions" in err and "sqlalchemy" in heavy
    _, err, heavy = cli(QUICK, "dataset", "add", "bad name", "data", cwd=ws, expect=2)
    assert "not a valid dataset name" in err and "typer" in heavy
    _, err, heavy = cli(QUICK, "dataset", "status", "nope", "data", cwd=ws, expect=3)
    assert "no dataset named 'nope'" in err and "sqlalchemy" in heavy
    _, err, heavy = cli(QUICK, "dataset", "add", "docs", "missing", cwd=ws, expect=3)
    assert "does not exist" in err and "sqlalchemy" in heavy
    for args in (
        ("dataset", "add", "docs", "data", "--message=x"),  # a spelling left to click
        ("dataset", "add", "docs", "data", "-m", "a", "-m", "b"),
        ("dataset", "add", "docs", "data", "--format", "csv"),  # a folder is no CSV
        ("dataset", "add", "people", "people.csv", "--format", "excel"),
        ("dataset", "add", "people", "people.csv", "--format", "csv", "--format", "tsv"),
        ("dataset", "status", "docs", "data", "extra"),
        ("dataset", "add", "docs", "--help"),
    ):
        assert run_quick(list(args)) is None, args


def test_the_quick_path_steps_aside_for_another_workspace_or_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = new_workspace(tmp_path / "ws")
    write_files(ws / "data", random_files(5))
    monkeypatch.chdir(ws)
    monkeypatch.delenv("MODELCYCLE_WORKSPACE", raising=False)
    monkeypatch.setenv("MODELCYCLE_URL", "http://127.0.0.1:9")  # a platform server's
    assert run_quick(["dataset", "add", "docs", "data"]) is None
    monkeypatch.delenv("MODELCYCLE_URL")

    db = ws / ".modelcycle" / "metadata.db"
    check_writable(db)
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE dataset_versions ADD COLUMN extra TEXT")
    conn.close()
    with pytest.raises(QuickWriteRefused, match="dataset_versions has columns"):
        check_writable(db)
    assert run_quick(["dataset", "add", "docs", "data"]) is None
    assert not list((ws / ".modelcycle" / "blobs").glob("*/*")), "stepped aside after storing"
