"""Bad input through the CLI: the right exit code, one message with a hint (never a
traceback), and a store left exactly as it was."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration_support import (
    blob_tree,
    cli_env,
    random_files,
    run_cli,
    run_json,
    write_files,
    write_iris,
)

import modelcycle as mc
from modelcycle.core.errors import (
    ERROR_TABLE,
    InputDataError,
    ModelcycleError,
    NotFoundError,
    RecipeError,
    RulesError,
    StorageError,
    UsageError,
    WorkspaceNotFoundError,
)
from servers import free_port

# Wide enough that no message is wrapped; the default width has its own test below.
WIDE = {"COLUMNS": "1000"}


def code(error: type[ModelcycleError]) -> int:
    return ERROR_TABLE[error][0]


@dataclass(frozen=True)
class Snapshot:
    datasets: Any
    events: int
    blobs: dict[str, bytes]


def snapshot(root: Path) -> Snapshot:
    # The event count is read in-process: one CLI start-up less per test.
    with mc.Workspace.open(root) as ws:
        events = len(ws.events(limit=1_000_000))
    return Snapshot(run_json("dataset", "list", "--json", cwd=root), events, blob_tree(root))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Snapshot]:
    """A workspace holding iris@1 and a file dataset, and its snapshot; tests get copies
    (the default workspace uses relative paths, so a copy is a whole workspace)."""
    root = tmp_path_factory.mktemp("template") / "ws"
    root.mkdir()
    run_cli("init", ".", cwd=root)
    write_iris(root / "iris.csv")
    run_cli("dataset", "add", "iris", "iris.csv", "-m", "raw", cwd=root)
    write_files(root / "docs", random_files(3))
    run_cli("dataset", "add", "docs", "docs", cwd=root)
    return root, snapshot(root)


@pytest.fixture
def ws(template: tuple[Path, Snapshot], tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(template[0], root, symlinks=True)
    return root


def check_error(stderr: str, exit_code: int, expected: int, *mentions: str) -> str:
    """The one-line message of a failed command; checks its shape and what it names."""
    assert exit_code == expected, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip("\n").splitlines()
    assert len(lines) == 2, f"expected an error line and a hint line, got:\n{stderr}"
    message, hint = lines
    assert message.startswith("error: "), stderr
    assert hint.strip().startswith("hint: "), stderr
    assert len(hint.strip()) > len("hint: ")
    for text in mentions:
        assert re.search(text, message), f"{text!r} not in {message!r}"
    return message


def assert_unchanged(root: Path, before: Snapshot) -> None:
    after = snapshot(root)
    assert after.datasets == before.datasets
    assert after.events == before.events
    assert sorted(after.blobs) == sorted(before.blobs)
    assert after.blobs == before.blobs
    scratch = root / ".modelcycle" / "tmp"
    assert not scratch.exists() or not any(scratch.iterdir()), list(scratch.iterdir())


# --------------------------------------------------------------------------- cases

Setup = Callable[[Path], None]


def _write(rel: str, data: str | bytes) -> Setup:
    def setup(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)

    return setup


def _empty_folder(root: Path) -> None:
    (root / "nothing" / "inside" / "here").mkdir(parents=True)


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    error: type[ModelcycleError]
    mentions: tuple[str, ...]
    setup: Setup | None = None
    hint: str | None = None


CASES = [
    Case(
        "ragged-csv",
        ("dataset", "add", "ragged", "ragged.csv"),
        InputDataError,
        ("ragged.csv", r"\bline 4\b|\brow 3\b"),
        _write("ragged.csv", "a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n11,12,13\n"),
        hint="field",
    ),
    Case(
        "non-utf8-csv",
        ("dataset", "add", "latin", "latin.csv"),
        InputDataError,
        ("latin.csv",),
        _write("latin.csv", "name,city\nJosé,Zürich\nFrançois,Besançon\n".encode("latin-1")),
        hint="UTF-8",
    ),
    Case(
        "unknown-format",
        ("dataset", "add", "iris2", "iris.csv", "--format", "xls"),
        UsageError,
        ("'xls'",),
        hint="csv",
    ),
    Case(
        "empty-file",
        ("dataset", "add", "empty", "empty.csv"),
        InputDataError,
        ("empty.csv", "empty"),
        _write("empty.csv", b""),
    ),
    Case(
        "missing-path",
        ("dataset", "add", "ghost", "no/such/file.csv"),
        NotFoundError,
        ("no/such/file.csv", "does not exist"),
    ),
    Case(
        "folder-without-files",
        ("dataset", "add", "nothing", "nothing"),
        InputDataError,
        ("nothing", "no files"),
        _empty_folder,
    ),
    Case(
        "recipe-unknown-step",
        ("dataset", "apply", "iris@1", "unknown_step.yaml"),
        RecipeError,
        ("unknown_step.yaml", "step 2", "'drop_duplicate'", "did you mean 'drop_duplicates'"),
        _write(
            "unknown_step.yaml",
            "steps:\n  - drop_nulls: {}\n  - drop_duplicate: {}\n",
        ),
    ),
    Case(
        "recipe-bad-expression",
        ("dataset", "apply", "iris@1", "bad_expr.yaml"),
        RecipeError,
        ("bad_expr.yaml", "step 1", "filter", re.escape("sepal_length >>> AND 3")),
        _write("bad_expr.yaml", 'steps:\n  - filter: {expr: "sepal_length >>> AND 3"}\n'),
    ),
    Case(
        "recipe-missing-column",
        ("dataset", "apply", "iris@1", "missing_col.yaml"),
        RecipeError,
        ("missing_col.yaml", "step 2", "'petal_lenght'", "did you mean 'petal_length'"),
        _write(
            "missing_col.yaml",
            "steps:\n  - drop_duplicates: {}\n"
            "  - fill_nulls: {columns: [petal_lenght], strategy: median}\n",
        ),
    ),
    Case(
        "recipe-missing-column-in-expression",
        ("dataset", "apply", "iris@1", "expr_col.yaml"),
        RecipeError,
        ("expr_col.yaml", "step 1", "'sepal_lenght'", "did you mean 'sepal_length'"),
        _write("expr_col.yaml", 'steps:\n  - filter: {expr: "sepal_lenght > 5"}\n'),
    ),
    Case(
        "recipe-invalid-yaml",
        ("dataset", "apply", "iris@1", "broken.yaml"),
        RecipeError,
        ("broken.yaml", r"line 3, column 17\b"),
        _write("broken.yaml", "steps:\n  - drop_nulls: {}\n  - filter: expr: a > 1\n"),
    ),
    Case(
        "rules-typo-key",
        ("dataset", "validate", "iris@1", "typo_rules.yaml"),
        RulesError,
        ("typo_rules.yaml", "rule 2", "'not_nul'", "did you mean 'not_null'"),
        _write(
            "typo_rules.yaml",
            "rules:\n  - {column: species, allowed: [setosa, versicolor, virginica]}\n"
            "  - {column: sepal_width, not_nul: true}\n",
        ),
    ),
    Case(
        "cast-fails",
        ("dataset", "apply", "iris@1", "cast.yaml"),
        RecipeError,
        ("cast.yaml", "step 1", "'species'", r"row 1\b", "'setosa'"),
        _write("cast.yaml", "steps:\n  - cast: {columns: {species: int}}\n"),
        hint="errors: null",
    ),
    Case(
        "unknown-dataset",
        ("dataset", "show", "nope@3"),
        NotFoundError,
        ("'nope'",),
    ),
    Case(
        "unknown-version",
        ("dataset", "show", "iris@99"),
        NotFoundError,
        ("iris@99",),
        hint="dataset versions iris",
    ),
    Case(
        "unknown-tag-or-hash",
        ("dataset", "show", "iris@zzzz"),
        NotFoundError,
        ("iris@zzzz",),
    ),
    Case(
        "unparseable-ref",
        ("dataset", "show", "iris@"),
        UsageError,
        ("iris@",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(
    case: Case, ws: Path, template: tuple[Path, Snapshot], tmp_path: Path
) -> None:
    if case.setup is not None:
        case.setup(ws)
    result = run_cli(*case.args, cwd=ws, env=cli_env(**WIDE), expect=None)
    check_error(result.stderr, result.returncode, code(case.error), *case.mentions)
    if case.hint is not None:
        assert case.hint in result.stderr.splitlines()[1]
    assert result.stdout == ""
    assert_unchanged(ws, template[1])


def test_outside_any_workspace(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "t.csv").write_text("a,b\n1,2\n")
    for args in (("dataset", "list"), ("dataset", "add", "t", "t.csv"), ("fsck",)):
        result = run_cli(*args, cwd=empty, env=cli_env(**WIDE), expect=None)
        message = check_error(
            result.stderr, result.returncode, code(WorkspaceNotFoundError), "no modelcycle"
        )
        assert str(empty.resolve()) in message
        assert "modelcycle init" in result.stderr
    assert sorted(p.name for p in empty.iterdir()) == ["t.csv"]


def _point_blobs_under_a_file(root: Path) -> None:
    """Make the blob folder impossible to create. (Tests may run as root, for whom
    permission bits do not stop a write, so a regular file stands in the way instead.)"""
    (root / "blocker").write_text("a file where a folder is needed\n")
    config = root / "modelcycle.toml"
    text = config.read_text()
    assert 'url = ".modelcycle/blobs"' in text
    config.write_text(text.replace('url = ".modelcycle/blobs"', 'url = "blocker/blobs"'))


@pytest.mark.parametrize("what", ["table", "folder"])
def test_unwritable_blob_store(
    what: str, ws: Path, template: tuple[Path, Snapshot], tmp_path: Path
) -> None:
    write_iris(ws / "more.csv", n=40, seed=7)
    write_files(ws / "newdocs", random_files(4, seed=9))
    _point_blobs_under_a_file(ws)
    args = {
        "table": ("dataset", "add", "more", "more.csv"),
        "folder": ("dataset", "add", "newdocs", "newdocs"),
    }[what]
    result = run_cli(*args, cwd=ws, env=cli_env(**WIDE), expect=None)
    check_error(result.stderr, result.returncode, code(StorageError), "blocker/blobs")
    assert (ws / "blocker").is_file()
    assert_unchanged(ws, template[1])


def test_error_messages_are_not_wrapped_at_the_default_width(ws: Path) -> None:
    """Piped stderr must keep each message on one line, whatever its length, so that
    logs and `grep` see the whole of it."""
    deep = ws / ("a-rather-long-folder-name-" * 3) / "with-a-long-file-name.csv"
    deep.parent.mkdir(parents=True)
    deep.write_text("a,b,c\n1,2,3\n4,5,6,7\n")
    rel = deep.relative_to(ws)
    result = run_cli("dataset", "add", "wrapped", rel, cwd=ws, expect=None)
    message = check_error(result.stderr, result.returncode, code(InputDataError))
    assert str(rel) in message


def test_unreachable_s3_is_a_storage_error(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = cli_env(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        **WIDE,
    )
    run_cli(
        "init", ".", "--blobs", "s3://bucket/prefix", "--endpoint-url", nobody, cwd=root, env=env
    )
    write_iris(root / "iris.csv", n=20)
    write_files(root / "docs", random_files(2))
    before = run_json("events", "--json", cwd=root, env=env)
    for args in (("dataset", "add", "iris", "iris.csv"), ("dataset", "add", "docs", "docs")):
        result = run_cli(*args, cwd=root, env=env, expect=None)
        check_error(result.stderr, result.returncode, code(StorageError), "s3://bucket/prefix")
        assert "endpoint_url" in result.stderr.splitlines()[1]
    assert run_json("dataset", "list", "--json", cwd=root, env=env) == {"datasets": []}
    assert run_json("events", "--json", cwd=root, env=env) == before
