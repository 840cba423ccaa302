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
    ServerConfig,
    WebhookConfig,
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


# ---------------------------------------------------------------- webhooks


def test_webhooks_default_to_none(tmp_path: Path) -> None:
    assert WorkspaceConfig(tmp_path).webhooks == ()
    assert "webhooks" not in WorkspaceConfig(tmp_path).to_toml()


def test_webhooks_round_trip(tmp_path: Path) -> None:
    config = WorkspaceConfig(
        tmp_path,
        webhooks=(
            WebhookConfig("https://ci.example.com/hooks/modelcycle", secret_env="MC_HOOK_SECRET"),
            WebhookConfig(
                "http://127.0.0.1:8080/x?token=a",
                events=("model.alias.*", "model.stage"),
                secret='s3"cr\\et',
                max_attempts=2,
                timeout_seconds=0.5,
            ),
        ),
    )
    save(config)
    assert WorkspaceConfig.load(tmp_path) == config


def test_webhook_defaults_fill_in(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text(
        '[[webhooks]]\nurl = "https://example.com/hook"\ntimeout_seconds = 2\n'
    )
    (hook,) = WorkspaceConfig.load(tmp_path).webhooks
    assert hook == WebhookConfig("https://example.com/hook", timeout_seconds=2.0)
    assert hook.events == ("model.*",)
    assert hook.max_attempts == 5
    assert hook.secret is None
    assert hook.secret_env is None


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(toml_text.filter(lambda e: e.strip() != ""), min_size=1, max_size=3),
    toml_text.filter(bool),
)
def test_any_webhook_patterns_and_secrets_round_trip(
    tmp_path: Path, events: list[str], secret: str
) -> None:
    config = WorkspaceConfig(
        tmp_path, webhooks=(WebhookConfig("https://h/", events=tuple(events), secret=secret),)
    )
    save(config)
    assert WorkspaceConfig.load(tmp_path) == config


GOOD_HOOK = '[[webhooks]]\nurl = "https://example.com/hook"\n'


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ('[webhooks]\nurl = "https://x"\n', "webhooks", "array of tables"),
        ("webhooks = [1]\n", "webhooks[0]", "must be a table"),
        ("[[webhooks]]\nevents = ['model.*']\n", "webhooks[0]", "has no url"),
        ('[[webhooks]]\nurl = "ftp://example.com/x"\n', "webhooks[0].url", "'ftp://"),
        ('[[webhooks]]\nurl = "example.com/hook"\n', "webhooks[0].url", "http"),
        ('[[webhooks]]\nurl = "https://"\n', "webhooks[0].url", "host"),
        ('[[webhooks]]\nurl = "http://h:99999/"\n', "webhooks[0].url", "99999"),
        ("[[webhooks]]\nurl = 3\n", "webhooks[0].url", "got 3"),
        (GOOD_HOOK + GOOD_HOOK + "[[webhooks]]\nurl = 'gopher://x'\n", "webhooks[2].url", ""),
        (GOOD_HOOK + "events = []\n", "webhooks[0].events", "non-empty"),
        (GOOD_HOOK + 'events = "model.*"\n', "webhooks[0].events", "list"),
        (GOOD_HOOK + 'events = ["model.*", ""]\n', "webhooks[0].events", "list"),
        (GOOD_HOOK + "max_attempts = 0\n", "webhooks[0].max_attempts", "at least 1"),
        (GOOD_HOOK + "max_attempts = 2.5\n", "webhooks[0].max_attempts", "whole number"),
        (GOOD_HOOK + "max_attempts = true\n", "webhooks[0].max_attempts", "whole number"),
        (GOOD_HOOK + "timeout_seconds = 0\n", "webhooks[0].timeout_seconds", "above 0"),
        (GOOD_HOOK + 'timeout_seconds = "5"\n', "webhooks[0].timeout_seconds", "number"),
        (GOOD_HOOK + "timeout_seconds = nan\n", "webhooks[0].timeout_seconds", "number"),
        (GOOD_HOOK + "timeout_seconds = inf\n", "webhooks[0].timeout_seconds", "number"),
        (GOOD_HOOK + 'secret_env = ""\n', "webhooks[0].secret_env", "non-empty"),
        (GOOD_HOOK + "secret = 'a'\nsecret_env = 'B'\n", "webhooks[0]", "both"),
        (GOOD_HOOK + "evnets = ['model.*']\n", "webhooks[0]", "did you mean 'events'"),
    ],
)
def test_bad_webhooks_are_named_in_the_error(
    tmp_path: Path, text: str, where: str, fragment: str
) -> None:
    (tmp_path / CONFIG_NAME).write_text(text)
    with pytest.raises(UsageError) as info:
        WorkspaceConfig.load(tmp_path)
    assert f"{CONFIG_NAME}: {where} " in info.value.message
    assert fragment in info.value.message
    assert info.value.hint


def test_a_bad_secret_is_not_echoed(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text(GOOD_HOOK + "secret = 123456789\n")
    with pytest.raises(UsageError, match=r"webhooks\[0\]\.secret") as info:
        WorkspaceConfig.load(tmp_path)
    assert "123456789" not in str(info.value)


def test_webhook_secret_from_the_environment() -> None:
    assert WebhookConfig("https://h/", secret="inline").resolve_secret({}) == "inline"
    assert WebhookConfig("https://h/").resolve_secret({}) is None
    hook = WebhookConfig("https://h/", secret_env="MC_HOOK_SECRET")
    assert hook.resolve_secret({"MC_HOOK_SECRET": "x"}) == "x"
    with pytest.raises(UsageError, match=r"\$MC_HOOK_SECRET, which is not set"):
        hook.resolve_secret({})
    with pytest.raises(UsageError, match="not set"):
        hook.resolve_secret({"MC_HOOK_SECRET": ""})


def test_webhook_secrets_stay_out_of_repr() -> None:
    assert "hunter2" not in repr(WebhookConfig("https://h/", secret="hunter2"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@hooks.example.com/services/T0/B0/XYZ", "https://hooks.example.com/…"),
        ("http://127.0.0.1:8080/hook?token=abc", "http://127.0.0.1:8080/…"),
        ("https://example.com", "https://example.com"),
        ("https://example.com/", "https://example.com"),
        ("http://[::1]:9000/x", "http://[::1]:9000/…"),
    ],
)
def test_webhook_urls_are_shown_without_secrets(url: str, shown: str) -> None:
    assert WebhookConfig(url).url_for_display() == shown


# ---------------------------------------------------------------- [server]


def test_server_limits_default_and_stay_out_of_the_file(tmp_path: Path) -> None:
    config = WorkspaceConfig(tmp_path)
    assert config.server == ServerConfig()
    assert config.server.max_upload_bytes == 16 << 30
    assert config.server.upload_chunk_bytes == 8 << 20
    assert config.server.max_request_bytes == 64 << 20
    assert "[server]" not in config.to_toml()


def test_server_limits_round_trip(tmp_path: Path) -> None:
    config = WorkspaceConfig(
        tmp_path,
        blobs_options={"endpoint_url": "http://127.0.0.1:9000"},
        server=ServerConfig(max_upload_bytes=1 << 30, upload_chunk_bytes=1 << 20),
        webhooks=(WebhookConfig(url="https://hooks.example/x"),),
    )
    text = save(config).read_text()
    assert "[server]\nmax_upload_bytes = 1073741824\nupload_chunk_bytes = 1048576\n" in text
    assert "max_request_bytes" not in text  # still the default
    assert WorkspaceConfig.load(tmp_path) == config


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("max_upload_bytes = 0", "server.max_upload_bytes must be a whole number of bytes"),
        ('max_upload_bytes = "1G"', "server.max_upload_bytes must be a whole number of bytes"),
        ("max_request_bytes = true", "server.max_request_bytes must be a whole number"),
        ("upload_chunk_bytes = 6442450944", "at most 5368709120"),
        (
            "max_upload_byte = 10",
            "unknown field 'max_upload_byte' (did you mean 'max_upload_bytes'?)",
        ),
    ],
)
def test_bad_server_limits_are_refused_clearly(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / CONFIG_NAME).write_text(f"[server]\n{table}\n")
    with pytest.raises(UsageError) as info:
        WorkspaceConfig.load(tmp_path)
    assert message in info.value.message
    assert info.value.hint


def test_server_must_be_a_table(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text('server = "big"\n')
    with pytest.raises(UsageError, match="server must be a table"):
        WorkspaceConfig.load(tmp_path)
