"""Killing ``modelcycle dataset add`` at any moment leaves no partial version visible.

A real ``modelcycle dataset add`` process is SIGKILLed at many moments: at delays spread
over the duration of an unkilled run, and right when its blob batch starts writing temp
files, when it starts renaming blobs into place and when its version row is committed.
After every kill the workspace must show either no new version or a complete one
(``dataset get`` gives back exactly what was added), ``fsck`` must be clean (only
unreferenced blobs may be left over), ``gc --grace 0`` must remove those and every blob
temp file, and ``fsck`` must be clean again. A final unkilled ``add`` must then get the
next version number.

The checks after the kills at chosen moments, and after the final add, run the CLI
commands; after the timed kills the same checks go through the library, which keeps the
test's run time reasonable (each CLI command pays the interpreter's start-up).
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _crash_cli import (
    CliChecker,
    LibraryChecker,
    append_csv_rows,
    init_workspace,
    spawn,
    stored_blob_count,
    temp_leftovers,
    tree_digest,
    write_csv,
    write_file_tree,
)

pytestmark = pytest.mark.slow

N_FILES = 2_000
N_ROWS = 200_000
N_TIMED_KILLS = 8
KILLED = -signal.SIGKILL

Trigger = Callable[[], bool]


# -- the two kinds of input ----------------------------------------------------------------


class Source:
    """An input whose content changes on every attempt, so every add makes a new version."""

    name: str
    path: Path

    def prepare(self, attempt: int) -> str:
        """Write this attempt's content; return its digest."""
        raise NotImplementedError

    def get_dest(self, dest: Path) -> Path:
        """Where to ``dataset get`` a version to, given a fresh path."""
        return dest

    def materialized_digest(self, dest: Path) -> str:
        """The digest of what ``dataset get`` wrote at ``get_dest(dest)``."""
        raise NotImplementedError

    def check_listing(self, version: dict[str, Any]) -> None:
        """What ``dataset versions --json`` must say about a complete version."""
        raise NotImplementedError

    def triggers(self, workspace: Path) -> list[tuple[str, Callable[[], Trigger]]]:
        """Named moments to kill at; each factory is called right before its add starts."""
        raise NotImplementedError


def blob_triggers(workspace: Path) -> list[tuple[str, Callable[[], Trigger]]]:
    def writing_temp_files() -> Trigger:
        return lambda: bool(temp_leftovers(workspace))

    def renaming() -> Trigger:
        before = stored_blob_count(workspace)
        return lambda: stored_blob_count(workspace) > before

    def committed() -> Trigger:
        before = committed_versions(workspace)
        return lambda: committed_versions(workspace) > before

    return [
        ("blob temp files appear", writing_temp_files),
        ("blobs get renamed", renaming),
        ("the version is committed", committed),
    ]


def committed_versions(workspace: Path) -> int:
    """Rows in the SQLite store's version table, read without taking any lock for long."""
    db = workspace / ".modelcycle" / "metadata.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("select count(*) from dataset_versions").fetchone()[0])
    finally:
        conn.close()


class FolderSource(Source):
    def __init__(self, root: Path) -> None:
        self.name = "folder"
        self.root = root / "folders"
        self.path = self.root

    def prepare(self, attempt: int) -> str:
        # A new folder each time (rewriting files in place is slow on a busy disk). Every
        # file has new bytes except every 4th, which is the same in all of them (later
        # versions share those blobs with version 1).
        self.path = self.root / f"attempt-{attempt}"
        write_file_tree(self.path, N_FILES, seed=attempt, keep_every=4)
        return tree_digest(self.path)

    def materialized_digest(self, dest: Path) -> str:
        return tree_digest(dest)

    def check_listing(self, version: dict[str, Any]) -> None:
        assert version["kind"] == "files"
        assert version["num_files"] == N_FILES

    def triggers(self, workspace: Path) -> list[tuple[str, Callable[[], Trigger]]]:
        return blob_triggers(workspace)


def frame_digest(df: pl.DataFrame) -> str:
    hashes = df.hash_rows(seed=0).to_numpy().tobytes()
    return f"{df.height}:{hashlib.sha256(hashes).hexdigest()}"


class CsvSource(Source):
    def __init__(self, root: Path) -> None:
        self.name = "table"
        self.base = root / "base.csv"
        self.path = root / "table.csv"
        write_csv(self.base, N_ROWS)

    def prepare(self, attempt: int) -> str:
        # ``attempt`` extra rows: the row count tells the attempts apart.
        shutil.copyfile(self.base, self.path)
        append_csv_rows(self.path, attempt, start=N_ROWS, seed=attempt)
        df = pl.read_csv(self.path)
        assert df.height == N_ROWS + attempt
        return frame_digest(df)

    def get_dest(self, dest: Path) -> Path:
        return dest.with_suffix(".parquet")

    def materialized_digest(self, dest: Path) -> str:
        return frame_digest(pl.read_parquet(dest.with_suffix(".parquet")))

    def check_listing(self, version: dict[str, Any]) -> None:
        assert version["kind"] == "table"
        assert version["num_rows"] > N_ROWS

    def triggers(self, workspace: Path) -> list[tuple[str, Callable[[], Trigger]]]:
        scratch = workspace / ".modelcycle" / "tmp"

        def converting() -> Trigger:
            old = set(scratch.iterdir()) if scratch.is_dir() else set()

            def fire() -> bool:
                return scratch.is_dir() and any(
                    (d / "part-0.parquet").exists() for d in scratch.iterdir() if d not in old
                )

            return fire

        return [("the CSV is being converted", converting), *blob_triggers(workspace)]


# -- one kill and the checks after it ---------------------------------------------------------


@dataclass
class Outcome:
    label: str
    returncode: int
    new_version: int | None
    debris: bool  # unreferenced blobs or temp files were left for gc


@dataclass
class Session:
    workspace: Path
    source: Source
    work: Path
    listing: list[dict[str, Any]] = field(default_factory=list)  # visible versions
    expected: dict[int, str] = field(default_factory=dict)  # version -> content digest
    outcomes: list[Outcome] = field(default_factory=list)
    attempt: int = 0
    duration: float = 0.0  # wall time of the last add process

    def add(
        self,
        label: str,
        *,
        delay: float | None = None,
        trigger: Trigger | None = None,
        cli: bool = True,
    ) -> Outcome:
        """One ``dataset add``, SIGKILLed after ``delay`` or when ``trigger`` fires (or never),
        then checked through the CLI (``cli``) or the library."""
        self.attempt += 1
        digest = self.source.prepare(self.attempt)
        started = time.monotonic()
        proc = spawn(self.workspace, "dataset", "add", self.source.name, str(self.source.path))
        try:
            if delay is not None:
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.kill()
            elif trigger is not None:
                deadline = started + 120
                while proc.poll() is None and time.monotonic() < deadline:
                    if trigger():
                        proc.kill()
                        break
                    time.sleep(0.001)
            stdout, stderr = proc.communicate(timeout=120)
            self.duration = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode in (0, KILLED), (
            f"{label}: add exited {proc.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        )
        checker = CliChecker(self.workspace) if cli else LibraryChecker(self.workspace)
        outcome = self.check(
            f"{label} [checked via {checker.via}]", proc.returncode, digest, checker
        )
        self.outcomes.append(outcome)
        return outcome

    def check(
        self, label: str, returncode: int, digest: str, checker: CliChecker | LibraryChecker
    ) -> Outcome:
        ws, name, before = self.workspace, self.source.name, self.listing
        after = checker.versions(name)
        key = [(v["version"], v["content_hash"]) for v in before]
        assert [(v["version"], v["content_hash"]) for v in after[: len(before)]] == key, (
            f"{label}: versions that existed before the add changed: {after}"
        )
        new = after[len(before) :]
        assert len(new) <= 1, f"{label}: one add made {len(new)} versions: {new}"
        if returncode == 0:
            assert new, f"{label}: a finished add of new content made no version"

        # Every visible version's blobs exist and hash right; unreferenced ones are allowed.
        report = checker.fsck()
        assert report["ok"] is True and report["problems"] == [], (label, report)
        assert report["versions"] == len(after), (label, report, after)
        debris = report["unreferenced_blobs"] > 0 or bool(temp_leftovers(ws))

        new_number = None
        if new:
            version = new[0]
            new_number = version["version"]
            assert new_number == (before[-1]["version"] + 1 if before else 1), (label, version)
            self.source.check_listing(version)
            dest = self.source.get_dest(self.work / f"get-{self.attempt}")
            checker.get(f"{name}@{new_number}", dest)
            got = self.source.materialized_digest(dest)
            assert got == digest, f"{label}: {name}@{new_number} differs from what was added"
            self.expected[new_number] = digest

        gc = checker.gc()
        assert gc["removed"] == report["unreferenced_blobs"], (label, gc, report)
        assert temp_leftovers(ws) == [], f"{label}: gc left blob temp files"
        legacy_tmp = ws / ".modelcycle" / "blobs" / "tmp"
        assert not legacy_tmp.is_dir() or not any(legacy_tmp.iterdir()), label
        # gc only deletes: whether every needed blob is still there is what it could break.
        again = checker.fsck(quick=True)
        assert again["ok"] is True and again["problems"] == [], (label, again)
        assert again["unreferenced_blobs"] == 0, (label, again)
        assert again["versions"] == len(after), (label, again)
        self.listing = after
        return Outcome(label, returncode, new_number, debris)


def kill_at_many_moments(tmp_path: Path, source: Source) -> Session:
    session = Session(init_workspace(tmp_path / "ws"), source, tmp_path / "work")
    session.work.mkdir()

    # Two unkilled adds first: versions 1 and 2, and how long an add takes (the shorter of
    # the two, so that a busy moment of the machine does not push the kills past the end).
    assert session.add("unkilled", cli=False).new_version == 1
    first = session.duration
    assert session.add("unkilled again", cli=False).new_version == 2
    duration = min(first, session.duration)

    # Every kill is checked: through the CLI after the kills at chosen moments, through the
    # library (the same checks without the start-up cost of five commands) after the rest.
    delays = [duration * i / (N_TIMED_KILLS - 1) for i in range(N_TIMED_KILLS)]
    triggers = source.triggers(session.workspace)
    for i, delay in enumerate(delays):
        session.add(f"kill after {delay:.3f}s of {duration:.3f}s", delay=delay, cli=False)
        if i % 3 == 2 and triggers:
            label, make = triggers.pop(0)
            session.add(f"kill when {label}", trigger=make())
    for label, make in triggers:
        session.add(f"kill when {label}", trigger=make())

    # Left alone, the next add gets the next number.
    last = max(session.expected)
    final = session.add("final")
    assert (final.returncode, final.new_version) == (0, last + 1), session.outcomes

    numbers = [v["version"] for v in session.listing]
    assert numbers == list(range(1, last + 2)) == sorted(session.expected)
    # Version 1 went through every gc above and still gives back exactly its content.
    cli = CliChecker(session.workspace)
    dest = source.get_dest(session.work / "first-again")
    cli.get(f"{source.name}@1", dest)
    assert source.materialized_digest(dest) == session.expected[1]
    report = cli.fsck()
    assert report["ok"] is True and report["versions"] == len(numbers), report
    assert report["unreferenced_blobs"] == 0, report

    killed = [o for o in session.outcomes if o.returncode == KILLED]
    assert len(killed) >= 3, f"too few kills landed before the add ended: {session.outcomes}"
    return session


def test_killing_add_of_a_folder_leaves_no_partial_version(tmp_path: Path) -> None:
    session = kill_at_many_moments(tmp_path, FolderSource(tmp_path))
    mid_write = [o for o in session.outcomes if o.returncode == KILLED and o.debris]
    assert mid_write, f"no kill landed while blobs were written: {session.outcomes}"


def test_killing_add_of_a_csv_leaves_no_partial_version(tmp_path: Path) -> None:
    session = kill_at_many_moments(tmp_path, CsvSource(tmp_path))
    killed = [o for o in session.outcomes if o.returncode == KILLED]
    assert any(o.new_version is None for o in killed), session.outcomes
