"""Workspace configuration: modelcycle.toml, and finding the workspace."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelcycle.core.config import (
    CONFIG_NAME,
    DEFAULT_BLOBS,
    DEFAULT_STORE,
    ENV_WORKSPACE,
    STATE_DIR,
    WorkspaceConfig,
    find_workspace_root,
)
from modelcycle.core.errors import UsageError, WorkspaceNotFoundError


@pytest.fixture(autouse=True)
def _no_workspace_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_WORKSPACE, raising=False)


def save(config: WorkspaceConfig) -> Path:
    path = config.root / CONFIG_NAME
    path.write_text(config.to_toml())
    return path


# ---------------------------------------------------------------- the file


def test_defaults(tmp_path: Path) -> None:
    config = WorkspaceConfig(tmp_path)
    assert config.store_url == DEFAULT_STORE
    assert config.blobs_url == DEFAULT_BLOBS
    assert config.blobs_options == {}
    assert config.state_dir == tmp_path / STATE_DIR


def test_toml_round_trip(tmp_path: Path) -> None:
    config = WorkspaceConfig(
        tmp_path,
        store_url="postgresql+psycopg://user@db:5432/mc",
        blobs_url="s3://bucket/prefix",
        blobs_options={"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-north-1"},
    )
    save(config)
    assert WorkspaceConfig.load(tmp_path) == config


def test_the_file_is_commented_toml(tmp_path: Path) -> None:
    text = WorkspaceConfig(tmp_path).to_toml()
    assert text.startswith("# ")
    assert "[store]" in text
    assert "[blobs]" in text
    assert text.endswith("\n")


toml_text = st.text(
    st.characters(blacklist_categories=("Cs",)),  # lone surrogates are not text
    max_size=30,
)
bare_keys = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=12).filter(
    lambda k: k != "url"
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(toml_text, toml_text, st.dictionaries(bare_keys, toml_text, max_size=3))
def test_any_urls_and_options_round_trip(
    tmp_path: Path, store_url: str, blobs_url: str, options: dict[str, str]
) -> None:
    config = WorkspaceConfig(tmp_path, store_url, blobs_url, options)
    save(config)
    assert WorkspaceConfig.load(tmp_path) == config


@pytest.mark.parametrize(
    "blobs_url",
    ["blobs/café", 'with "quotes" and \\ backslash', "tab\tand\nnewline", "blobs/\U0001f600"],
)
def test_unusual_characters_round_trip(tmp_path: Path, blobs_url: str) -> None:
    config = WorkspaceConfig(tmp_path, blobs_url=blobs_url)
    save(config)
    assert WorkspaceConfig.load(tmp_path).blobs_url == blobs_url


def test_load_fills_in_defaults(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text('[blobs]\nurl = "elsewhere"\nretries = 3\n')
    config = WorkspaceConfig.load(tmp_path)
    assert config.store_url == DEFAULT_STORE
    assert config.blobs_url == "elsewhere"
    assert config.blobs_options == {"retries": "3"}
    (tmp_path / CONFIG_NAME).write_text("")
    assert WorkspaceConfig.load(tmp_path) == WorkspaceConfig(tmp_path)


def test_load_without_a_file(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceNotFoundError) as info:
        WorkspaceConfig.load(tmp_path)
    assert CONFIG_NAME in info.value.message
    assert info.value.hint


def test_load_of_bad_toml(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text("[store\nurl = 1\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        WorkspaceConfig.load(tmp_path)


@pytest.mark.parametrize(
    ("store_url", "expected"),
    [
        ("sqlite:///.modelcycle/metadata.db", "sqlite:///{root}/.modelcycle/metadata.db"),
        ("sqlite:///meta.db", "sqlite:///{root}/meta.db"),
        ("sqlite:////abs/meta.db", "sqlite:////abs/meta.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_resolved_store_url(tmp_path: Path, store_url: str, expected: str) -> None:
    config = WorkspaceConfig(tmp_path, store_url=store_url)
    assert config.resolved_store_url() == expected.format(root=tmp_path)


def test_resolved_blobs_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert WorkspaceConfig(tmp_path).resolved_blobs_url() == str(tmp_path / DEFAULT_BLOBS)
    assert WorkspaceConfig(tmp_path, blobs_url="/abs/b").resolved_blobs_url() == "/abs/b"
    assert WorkspaceConfig(tmp_path, blobs_url="s3://b/p").resolved_blobs_url() == "s3://b/p"
    assert WorkspaceConfig(tmp_path, blobs_url="~/b").resolved_blobs_url() == str(
        tmp_path / "home" / "b"
    )


# ---------------------------------------------------------------- finding the workspace


def make_workspace(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    save(WorkspaceConfig(root))
    return root


def test_find_at_the_start_folder(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    assert find_workspace_root(root) == root.resolve()


def test_find_walks_upwards(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_workspace_root(deep) == root.resolve()


def test_find_takes_the_nearest_workspace(tmp_path: Path) -> None:
    outer = make_workspace(tmp_path / "outer")
    inner = make_workspace(outer / "projects" / "inner")
    (inner / "data").mkdir()
    assert find_workspace_root(inner / "data") == inner.resolve()
    assert find_workspace_root(outer / "projects") == outer.resolve()


def test_find_starts_at_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "ws")
    (root / "sub").mkdir()
    monkeypatch.chdir(root / "sub")
    assert find_workspace_root() == root.resolve()


def test_a_folder_named_like_the_config_does_not_count(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    (root / "inner" / CONFIG_NAME).mkdir(parents=True)
    assert find_workspace_root(root / "inner") == root.resolve()


def test_find_without_a_workspace(tmp_path: Path) -> None:
    start = tmp_path / "nothing" / "here"
    start.mkdir(parents=True)
    with pytest.raises(WorkspaceNotFoundError) as info:
        find_workspace_root(start)
    assert str(start.resolve()) in info.value.message
    assert info.value.hint is not None
    assert ENV_WORKSPACE in info.value.hint


def test_the_environment_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = make_workspace(tmp_path / "named")
    here = make_workspace(tmp_path / "here")
    monkeypatch.setenv(ENV_WORKSPACE, str(named))
    assert find_workspace_root(here) == named.resolve()


def test_the_environment_variable_expands_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_workspace(tmp_path / "home" / "ws")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(ENV_WORKSPACE, "~/ws")
    assert find_workspace_root(tmp_path) == (tmp_path / "home" / "ws").resolve()


def test_the_environment_variable_must_name_a_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_workspace(tmp_path / "ws")
    monkeypatch.setenv(ENV_WORKSPACE, str(tmp_path / "empty"))
    with pytest.raises(WorkspaceNotFoundError) as info:
        find_workspace_root(tmp_path / "ws")  # no fallback to the search
    assert ENV_WORKSPACE in info.value.message
    assert str(tmp_path / "empty") in info.value.message


def test_an_empty_environment_variable_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_workspace(tmp_path / "ws")
    monkeypatch.setenv(ENV_WORKSPACE, "")
    assert find_workspace_root(root) == root.resolve()
