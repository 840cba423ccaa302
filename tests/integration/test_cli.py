"""The ``modelcycle`` executable, run as a user runs it: a child process in a workspace."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import polars as pl
import pytest
from integration_support import (
    DOC_RECIPE,
    DOC_RULES,
    folder_bytes,
    hash_prefix,
    modelcycle_exe,
    random_files,
    run_cli,
    run_json,
    write_files,
    write_people,
)
from polars.testing import assert_frame_equal

from modelcycle.blobs import shard
from servers import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY, S3Location

ESC = "\x1b"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace made by `modelcycle init .`, holding the docs' recipe and rules."""
    root = tmp_path / "ws"
    root.mkdir()
    out = run_cli("init", ".", cwd=root)
    assert "Created workspace" in out.stdout
    assert (root / "modelcycle.toml").is_file()
    (root / "clean.yaml").write_text(DOC_RECIPE)
    (root / "rules.yaml").write_text(DOC_RULES)
    write_people(root / "raw" / "people.csv")
    return root


def test_init_refuses_an_existing_workspace(ws: Path) -> None:
    again = run_cli("init", ".", cwd=ws, expect=4)
    assert "already" in again.stderr
    assert "Traceback" not in again.stderr


def test_add_versions_show_list(ws: Path) -> None:
    added = run_cli("dataset", "add", "people", "raw/people.csv", "-m", "raw export", cwd=ws)
    assert "people@1" in added.stdout

    unchanged = run_cli("dataset", "add", "people", "raw/people.csv", cwd=ws)
    assert "unchanged" in unchanged.stdout

    versions = run_json("dataset", "versions", "people", "--json", cwd=ws)
    assert [v["version"] for v in versions["versions"]] == [1]
    v1 = versions["versions"][0]
    assert (v1["num_rows"], v1["message"], v1["step"]) == (210, "raw export", "add")

    shown = run_json("dataset", "show", "people@1", "--json", cwd=ws)
    assert shown["ref"] == "people@1"
    assert shown["num_rows"] == 210
    assert [c["name"] for c in shown["schema"]] == ["id", "age", "income", "label"]
    assert shown["profile"]["columns"]["age"]["nulls"] == 5
    assert shown["parents"] == []
    assert shown["content_hash"] == v1["content_hash"]
    by_hash = run_json(
        "dataset", "show", f"people@{hash_prefix(v1['content_hash'])}", "--json", cwd=ws
    )
    assert by_hash["version"] == 1

    text = run_cli("dataset", "show", "people", cwd=ws).stdout
    assert "people@1" in text
    assert "age" in text

    listed = run_json("dataset", "list", "--json", cwd=ws)
    assert [(d["name"], d["kind"], d["versions"], d["latest"]) for d in listed["datasets"]] == [
        ("people", "table", 1, 1)
    ]


def test_validate_apply_validate(ws: Path) -> None:
    run_cli("dataset", "add", "people", "raw/people.csv", "-m", "raw export", cwd=ws)

    failed = run_cli("dataset", "validate", "people@1", "rules.yaml", cwd=ws, expect=6)
    assert "FAIL rule 1" in failed.stdout
    assert "age" in failed.stdout
    assert "hint:" in failed.stderr
    assert "Traceback" not in failed.stderr
    report = json.loads(
        run_cli("dataset", "validate", "people@1", "rules.yaml", "--json", cwd=ws, expect=6).stdout
    )
    assert not report["ok"]
    assert [(f["rule"], f["check"], f["failing"]) for f in report["failures"]] == [
        (1, "not_null", 5)
    ]

    applied = run_cli("dataset", "apply", "people@1", "clean.yaml", "-m", "cleaned", cwd=ws)
    assert "people@2" in applied.stdout
    assert "drop_duplicates" in applied.stdout
    shown = run_json("dataset", "show", "people@2", "--json", cwd=ws)
    assert shown["parents"] == [{"ref": "people@1", "role": "input"}]
    assert shown["message"] == "cleaned"
    step = shown["step"]
    assert step["op"] == "recipe"
    assert len(step["recipe_hash"]) == 64
    assert [(s["name"], s["rows_in"], s["rows_out"]) for s in step["steps"]] == [
        ("drop_duplicates", 210, 200),
        ("fill_nulls", 200, 200),
        ("drop_outliers", 200, 198),
    ]
    assert shown["num_rows"] == 198

    again = run_cli("dataset", "apply", "people@1", "clean.yaml", "-m", "cleaned", cwd=ws)
    assert "already" in again.stdout
    versions = run_json("dataset", "versions", "people", "--json", cwd=ws)["versions"]
    assert [v["version"] for v in versions] == [1, 2]

    passed = run_cli("dataset", "validate", "people@2", "rules.yaml", cwd=ws)
    assert "all 3 rules pass" in passed.stdout
    assert passed.stderr == ""


def test_split_diff_get_lineage(ws: Path, tmp_path: Path) -> None:
    run_cli("dataset", "add", "people", "raw/people.csv", cwd=ws)
    run_cli("dataset", "apply", "people@1", "clean.yaml", "-m", "cleaned", cwd=ws)

    split = ("dataset", "split", "people@2", "--ratios", "0.7,0.15,0.15", "--seed", "0")
    text = run_cli(*split, cwd=ws).stdout
    assert "people-train@1" in text
    parts = run_json(*split, "--json", cwd=ws)["parts"]
    assert [(p["ref"], p["part"]) for p in parts] == [
        ("people-train@1", "train"),
        ("people-validation@1", "validation"),
        ("people-test@1", "test"),
    ]
    assert sum(p["num_rows"] for p in parts) == 198
    for part, ratio in zip(parts, (0.7, 0.15, 0.15), strict=True):
        assert abs(part["num_rows"] - ratio * 198) <= 1
    assert run_json(*split, "--json", cwd=ws)["parts"] == parts  # same split, same hashes
    names = [d["name"] for d in run_json("dataset", "list", "--json", cwd=ws)["datasets"]]
    assert sorted(names) == ["people", "people-test", "people-train", "people-validation"]

    diff_text = run_cli("dataset", "diff", "people@1", "people@2", cwd=ws).stdout
    assert "people@1 → people@2" in diff_text
    assert "rows" in diff_text
    diff = run_json("dataset", "diff", "people@1", "people@2", "--key", "id", "--json", cwd=ws)
    assert diff["rows"]["by"] == "id"
    assert (diff["rows"]["from_count"], diff["rows"]["to_count"]) == (210, 198)
    assert diff["rows"]["removed"] == 2  # the duplicates share their ids with the originals
    assert diff["rows"]["changed"] == 5  # the five filled-in ages

    out = tmp_path / "export" / "people.csv"
    got = run_cli("dataset", "get", "people@2", out, cwd=ws)
    assert out.name in got.stdout
    parquet = tmp_path / "export" / "people.parquet"
    run_cli("dataset", "get", "people@2", parquet, cwd=ws)
    assert_frame_equal(pl.read_csv(out), pl.read_parquet(parquet))
    assert pl.read_csv(out).height == 198

    tree = run_cli("lineage", "people-train@1", cwd=ws).stdout.splitlines()
    assert tree[0].startswith("people-train@1")
    assert "split: people@2" in tree[1]
    assert "input: people@1" in tree[2]
    assert "added from" in tree[2]
    as_json = run_json("lineage", "people-train@1", "--json", cwd=ws)
    assert as_json["parents"][0]["parents"][0]["step"]["op"] == "add"


def test_files_status_get_diff(ws: Path, tmp_path: Path) -> None:
    files = random_files(8)
    src = write_files(tmp_path / "photos", files)
    added = run_json("dataset", "add", "photos", src, "--json", cwd=ws)
    assert added["created"]
    assert added["files_added"] == 8

    status = run_json("dataset", "status", "photos", src, "--json", cwd=ws)
    assert status == {"clean": True, "added": [], "removed": [], "modified": [], "renamed": []}
    (src / "file00.bin").write_bytes(b"changed")
    (src / "extra.txt").write_text("new file\n")
    status = run_json("dataset", "status", "photos", src, "--json", cwd=ws)
    assert not status["clean"]
    assert (status["added"], status["modified"]) == (["extra.txt"], ["file00.bin"])

    run_cli("dataset", "add", "photos", src, "-m", "second", cwd=ws)
    diff = run_json("dataset", "diff", "photos@1", "photos@2", "--json", cwd=ws)
    assert diff["files"]["added"] == ["extra.txt"]
    assert diff["files"]["modified"] == ["file00.bin"]

    run_cli("dataset", "get", "photos@1", tmp_path / "v1", cwd=ws)
    assert folder_bytes(tmp_path / "v1") == files
    run_cli("dataset", "get", "photos@latest", tmp_path / "v2", cwd=ws)
    assert folder_bytes(tmp_path / "v2") == folder_bytes(src)


def test_fsck_gc_events(ws: Path, tmp_path: Path) -> None:
    run_cli("dataset", "add", "people", "raw/people.csv", "-m", "raw export", cwd=ws)
    src = write_files(tmp_path / "docs", {"a.txt": b"alpha" * 100, "b.txt": b"beta" * 100})
    run_cli("dataset", "add", "docs", src, cwd=ws)
    assert "OK" in run_cli("fsck", cwd=ws).stdout
    report = run_json("fsck", "--json", cwd=ws)
    assert report["ok"]
    assert report["versions"] == 2

    events = run_json("events", "--json", cwd=ws)
    created = [e for e in events if e["kind"] == "dataset.version.created"]
    assert [e["subject"] for e in created] == ["people@1", "docs@1"]
    assert all(e["actor"] for e in created)
    assert events[0]["kind"] == "workspace.created"

    run_cli("dataset", "delete", "docs", cwd=ws)
    gc = run_json("gc", "--grace", "0", "--json", cwd=ws)
    assert gc["removed"] == 3  # two files and the manifest
    assert "Removed 0 blob(s)" in run_cli("gc", cwd=ws).stdout
    assert run_json("fsck", "--json", cwd=ws)["ok"]

    shown = run_json("dataset", "show", "people", "--json", cwd=ws)
    manifest_path = ws / ".modelcycle" / "blobs" / shard(shown["content_hash"])
    manifest_path.chmod(0o644)
    manifest_path.write_bytes(manifest_path.read_bytes() + b" ")
    broken = run_cli("fsck", cwd=ws, expect=9)
    assert shown["content_hash"] in broken.stdout
    assert "hint:" in broken.stderr
    assert "Traceback" not in broken.stderr
    kinds = [e["kind"] for e in run_json("events", "--json", "--limit", "1000", cwd=ws)]
    assert "dataset.version.deleted" in kinds
    assert "gc" in kinds


def test_workspace_from_environment_variable(ws: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_cli("dataset", "add", "people", ws / "raw" / "people.csv", cwd=ws)

    env = {**os.environ, "MODELCYCLE_WORKSPACE": str(ws)}
    env.pop("COLUMNS", None)
    listed = run_json("dataset", "list", "--json", cwd=elsewhere, env=env)
    assert [d["name"] for d in listed["datasets"]] == ["people"]
    (elsewhere / "more.csv").write_text("x,y\n1,2\n")
    run_cli("dataset", "add", "more", "more.csv", cwd=elsewhere, env=env)
    names = [d["name"] for d in run_json("dataset", "list", "--json", cwd=ws)["datasets"]]
    assert sorted(names) == ["more", "people"]
    assert not (elsewhere / "modelcycle.toml").exists()
    assert not (elsewhere / ".modelcycle").exists()

    from_subfolder = run_json("dataset", "list", "--json", cwd=ws / "raw")
    assert len(from_subfolder["datasets"]) == 2

    bad = {**env, "MODELCYCLE_WORKSPACE": str(elsewhere)}
    missing = run_cli("dataset", "list", cwd=ws, env=bad, expect=3)
    assert "MODELCYCLE_WORKSPACE" in missing.stderr


# --------------------------------------------------------------------------- piped output


def _colourful_env() -> dict[str, str]:
    """An environment in which a careless program would print colours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELCYCLE_", "NO_COLOR"))}
    env.update(TERM="xterm-256color", COLORTERM="truecolor")
    env.pop("FORCE_COLOR", None)
    return env


def test_piped_output_has_no_progress_bar_or_escape_codes(ws: Path, tmp_path: Path) -> None:
    src = write_files(tmp_path / "many", random_files(300, size=200))
    env = _colourful_env()
    commands = [
        ("dataset", "add", "many", src, "-m", "many files"),
        ("dataset", "add", "people", "raw/people.csv"),
        ("dataset", "list"),
        ("dataset", "versions", "many"),
        ("dataset", "show", "people"),
        ("dataset", "apply", "people@1", "clean.yaml"),
        ("dataset", "get", "many", tmp_path / "out"),
        ("lineage", "people@2"),
        ("fsck",),
        ("events",),
        ("dataset", "show", "nope"),
    ]
    for args in commands:
        result = run_cli(*args, cwd=ws, env=env, expect=None)
        assert ESC not in result.stdout, args
        assert ESC not in result.stderr, args
        assert "\r" not in result.stdout + result.stderr, args
        if args[-1] == "nope":
            assert result.returncode == 3
            assert result.stderr.startswith("error: no dataset named 'nope'")
        else:
            assert result.returncode == 0, (args, result.stderr)
            assert result.stderr == "", args  # where a progress bar would have gone


def test_stdout_stays_clean_when_only_stderr_is_a_terminal(ws: Path, tmp_path: Path) -> None:
    src = write_files(tmp_path / "many", random_files(400, size=300))
    master, slave = os.openpty()
    seen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        result = subprocess.run(
            [modelcycle_exe(), "dataset", "add", "many", str(src)],
            cwd=ws,
            env=_colourful_env(),
            stdout=subprocess.PIPE,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    stdout = result.stdout.decode()
    assert result.returncode == 0, b"".join(seen).decode(errors="replace")
    assert "many@1" in stdout
    assert ESC not in stdout
    assert "\r" not in stdout


# --------------------------------------------------------------------------- scaled out


@pytest.mark.postgres
@pytest.mark.s3
def test_cli_on_postgres_and_s3(
    postgres_url: str, s3_bucket_url: S3Location, tmp_path: Path
) -> None:
    root = tmp_path / "remote"
    root.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MODELCYCLE_", "AWS_"))},
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    run_cli(
        "init",
        ".",
        "--store",
        postgres_url,
        "--blobs",
        s3_bucket_url.url,
        "--endpoint-url",
        s3_bucket_url.endpoint_url,
        cwd=root,
        env=env,
    )
    assert not (root / ".modelcycle" / "metadata.db").exists()
    write_people(root / "people.csv")
    (root / "clean.yaml").write_text(DOC_RECIPE)
    run_cli("dataset", "add", "people", "people.csv", cwd=root, env=env)
    run_cli("dataset", "apply", "people@1", "clean.yaml", cwd=root, env=env)
    shown = run_json("dataset", "show", "people@2", "--json", cwd=root, env=env)
    assert shown["num_rows"] == 198
    assert run_json("fsck", "--json", cwd=root, env=env)["blobs_checked"] == 2
    run_cli("dataset", "get", "people@2", tmp_path / "p.parquet", cwd=root, env=env)
    assert pl.read_parquet(tmp_path / "p.parquet").height == 198
