"""Workspace configuration: ``modelcycle.toml`` and how commands find it."""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelcycle.core.errors import UsageError, WorkspaceNotFoundError
from modelcycle.core.text import suggest

CONFIG_NAME = "modelcycle.toml"
STATE_DIR = ".modelcycle"
ENV_WORKSPACE = "MODELCYCLE_WORKSPACE"
# A platform server to work against instead of a local workspace, and the token to use.
ENV_URL = "MODELCYCLE_URL"
ENV_TOKEN = "MODELCYCLE_TOKEN"
# Where a client of a server keeps its cache and local state (default: ~/.cache/modelcycle).
ENV_CACHE = "MODELCYCLE_CACHE"
DEFAULT_STORE = f"sqlite:///{STATE_DIR}/metadata.db"
DEFAULT_BLOBS = f"{STATE_DIR}/blobs"


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (every control character escaped)."""
    out = []
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


WEBHOOK_EVENTS_DEFAULT = ("model.*",)
WEBHOOK_MAX_ATTEMPTS_DEFAULT = 5
WEBHOOK_TIMEOUT_DEFAULT = 5.0
_WEBHOOK_KEYS = ("url", "events", "secret", "secret_env", "max_attempts", "timeout_seconds")
# Headers a webhook request always carries as modelcycle sets them (every X-Modelcycle-*
# name too), or that would break the request if replaced.
WEBHOOK_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding", "connection"}
)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
_HEADER_HINT = "give each header as a name and a value, e.g. Authorization: Bearer …"


def check_webhook_headers(
    headers: Iterable[tuple[object, object]], where: str
) -> tuple[tuple[str, str], ...]:
    """``headers`` (name, value pairs) checked as a webhook's extra request headers.

    Raises `UsageError` starting with ``where`` when a name is not an HTTP token, is
    reserved (`WEBHOOK_RESERVED_HEADERS`, ``X-Modelcycle-*``) or given twice, or when a
    value is not text on one line that HTTP can carry (Latin-1). Values are never shown:
    they often hold tokens.
    """
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for pair in headers:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise UsageError(f"{where} must be (name, value) pairs", hint=_HEADER_HINT)
        name, value = pair
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise UsageError(f"{where}: {name!r} is not a header name", hint=_HEADER_HINT)
        lowered = name.lower()
        if lowered in WEBHOOK_RESERVED_HEADERS or lowered.startswith("x-modelcycle-"):
            raise UsageError(
                f"{where}: {name} is set by modelcycle and cannot be changed",
                hint="remove it; the body is always JSON, and X-Modelcycle-Signature comes "
                "from secret or secret_env",
            )
        if lowered in seen:
            raise UsageError(
                f"{where}: {name} is given twice (header names ignore case)",
                hint="keep one of them",
            )
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise UsageError(
                f"{where}: the value of {name} must be text on one line", hint=_HEADER_HINT
            )
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise UsageError(
                f"{where}: the value of {name} has characters an HTTP header cannot carry",
                hint="use ASCII (or Latin-1) text; percent- or base64-encode anything else",
            ) from None
        seen.add(lowered)
        out.append((name, value))
    return tuple(out)


@dataclass(frozen=True)
class WebhookConfig:
    """One ``[[webhooks]]`` table: where to POST which events, and how hard to try.

    ``events`` are glob patterns over event kinds (``model.*`` matches every registry
    event). The signing secret comes from ``secret`` or, better, from the environment
    variable named by ``secret_env`` so it stays out of the file.

    The last three fields are for hooks built in Python (the monitors' alert channels);
    ``modelcycle.toml`` does not hold them. ``headers`` are added to every request
    (checked by `check_webhook_headers`; they cannot replace modelcycle's own).
    ``envelope=False`` sends the payload itself as the body instead of modelcycle's
    ``{"id", "kind", …, "data"}`` envelope (a signature then covers that body).
    ``label`` names the hook in logs and failure reports instead of ``webhooks[N]``.
    """

    url: str
    events: tuple[str, ...] = WEBHOOK_EVENTS_DEFAULT
    secret: str | None = field(default=None, repr=False)
    secret_env: str | None = None
    max_attempts: int = WEBHOOK_MAX_ATTEMPTS_DEFAULT
    timeout_seconds: float = WEBHOOK_TIMEOUT_DEFAULT
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # often credentials
    envelope: bool = True
    label: str | None = None

    def __post_init__(self) -> None:
        if self.headers:
            where = f"webhook {self.url_for_display()} headers"
            object.__setattr__(self, "headers", check_webhook_headers(self.headers, where))
        if self.label is not None and (not isinstance(self.label, str) or not self.label.strip()):
            raise UsageError(
                f"webhook {self.url_for_display()}: label must be non-empty text, "
                f"got {self.label!r}",
                hint="leave label out to have the hook called webhooks[N]",
            )

    def resolve_secret(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The signing secret, reading ``secret_env`` from ``environ`` (the process's
        environment by default); None when the hook is not signed."""
        if self.secret_env is None:
            return self.secret
        value = (os.environ if environ is None else environ).get(self.secret_env)
        if not value:
            raise UsageError(
                f"webhook {self.url_for_display()} takes its secret from ${self.secret_env}, "
                "which is not set",
                hint=f"export {self.secret_env}=… before running modelcycle, or remove "
                "`secret_env` from the webhook",
            )
        return value

    def url_for_display(self) -> str:
        """The URL without credentials, query or path (which often hold tokens)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        rest = "/…" if parts.path.strip("/") or parts.query else ""
        return f"{parts.scheme}://{host}{port}{rest}"

    def to_toml(self) -> str:
        python_only = [
            name
            for name, is_set in (
                ("headers", bool(self.headers)),
                ("envelope", not self.envelope),
                ("label", self.label is not None),
            )
            if is_set
        ]
        if python_only:
            raise UsageError(
                f"webhook {self.url_for_display()} sets {', '.join(python_only)}, which "
                f"{CONFIG_NAME} cannot hold",
                hint="leave these out of hooks saved to the workspace configuration",
            )
        lines = [
            "[[webhooks]]",
            f"url = {toml_string(self.url)}",
            f"events = [{', '.join(toml_string(e) for e in self.events)}]",
        ]
        if self.secret is not None:
            lines.append(f"secret = {toml_string(self.secret)}")
        if self.secret_env is not None:
            lines.append(f"secret_env = {toml_string(self.secret_env)}")
        if self.max_attempts != WEBHOOK_MAX_ATTEMPTS_DEFAULT:
            lines.append(f"max_attempts = {self.max_attempts}")
        if self.timeout_seconds != WEBHOOK_TIMEOUT_DEFAULT:
            lines.append(f"timeout_seconds = {float(self.timeout_seconds)!r}")
        return "\n".join(lines)


def _webhook_error(where: str, message: str, hint: str) -> UsageError:
    return UsageError(f"{CONFIG_NAME}: {where} {message}", hint=hint)


def parse_webhooks(value: object) -> tuple[WebhookConfig, ...]:
    """The ``webhooks`` array of tables of a parsed ``modelcycle.toml``, checked."""
    if not isinstance(value, list):
        raise _webhook_error(
            "webhooks", "must be an array of tables", "write each hook as a [[webhooks]] table"
        )
    return tuple(_parse_webhook(i, table) for i, table in enumerate(value))


def _parse_webhook(index: int, table: object) -> WebhookConfig:
    where = f"webhooks[{index}]"
    if not isinstance(table, dict):
        raise _webhook_error(where, "must be a table", "write each hook as a [[webhooks]] table")
    for key in table:
        if key not in _WEBHOOK_KEYS:
            raise _webhook_error(
                where,
                f"has an unknown field {key!r}{suggest(key, _WEBHOOK_KEYS)}",
                f"fields: {', '.join(_WEBHOOK_KEYS)}",
            )
    url = table.get("url")
    if url is None:
        raise _webhook_error(where, "has no url", 'add url = "https://…"')
    if not isinstance(url, str) or not _is_http_url(url):
        raise _webhook_error(
            f"{where}.url",
            f"must be an http:// or https:// URL with a host, got {url!r}",
            'write it as url = "https://host/path"',
        )
    events = table.get("events", list(WEBHOOK_EVENTS_DEFAULT))
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(e, str) and e.strip() for e in events)
    ):
        raise _webhook_error(
            f"{where}.events",
            f"must be a non-empty list of event kind patterns, got {events!r}",
            'for example events = ["model.*"]; remove the table to turn the hook off',
        )
    secret = _optional_text(table, "secret", where)
    secret_env = _optional_text(table, "secret_env", where)
    if secret is not None and secret_env is not None:
        raise _webhook_error(
            where,
            "sets both secret and secret_env",
            "keep secret_env (the secret then stays out of the file) and remove secret",
        )
    attempts = table.get("max_attempts", WEBHOOK_MAX_ATTEMPTS_DEFAULT)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise _webhook_error(
            f"{where}.max_attempts",
            f"must be a whole number of at least 1, got {attempts!r}",
            f"the default is {WEBHOOK_MAX_ATTEMPTS_DEFAULT}",
        )
    timeout = table.get("timeout_seconds", WEBHOOK_TIMEOUT_DEFAULT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise _webhook_error(
            f"{where}.timeout_seconds",
            f"must be a number of seconds above 0, got {timeout!r}",
            f"the default is {WEBHOOK_TIMEOUT_DEFAULT:g}",
        )
    return WebhookConfig(
        url=url,
        events=tuple(events),
        secret=secret,
        secret_env=secret_env,
        max_attempts=attempts,
        timeout_seconds=float(timeout),
    )


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _optional_text(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None or (isinstance(value, str) and value):
        return value
    shown = "" if key == "secret" else f", got {value!r}"  # never echo a secret
    raise _webhook_error(
        f"{where}.{key}",
        f"must be a non-empty string{shown}",
        "secret_env names an environment variable that holds the secret, e.g. "
        'secret_env = "MC_WEBHOOK_SECRET"',
    )


SERVER_DEFAULTS: dict[str, int] = {
    "max_upload_bytes": 16 << 30,
    "upload_chunk_bytes": 8 << 20,
    "max_request_bytes": 64 << 20,
}
# An S3 part is at most 5 GiB, so a chunk (which becomes one part) is too.
MAX_CHUNK_BYTES = 5 << 30


@dataclass(frozen=True)
class ServerConfig:
    """The ``[server]`` table: limits of the platform server (`modelcycle server`).

    ``max_upload_bytes``: the largest blob a client may upload (413 above it).
    ``upload_chunk_bytes``: the size of the chunks (or S3 parts, at least 5 MiB) a
    blob is uploaded in; a chunk request may not carry more.
    ``max_request_bytes``: the largest body of any other request (JSON calls, forms).
    """

    max_upload_bytes: int = SERVER_DEFAULTS["max_upload_bytes"]
    upload_chunk_bytes: int = SERVER_DEFAULTS["upload_chunk_bytes"]
    max_request_bytes: int = SERVER_DEFAULTS["max_request_bytes"]

    def __post_init__(self) -> None:
        for key, default in SERVER_DEFAULTS.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(
                    f"{CONFIG_NAME}: server.{key} must be a whole number of bytes above 0, "
                    f"got {value!r}",
                    hint=f"the default is {default} (leave it out to use it)",
                )
        if self.upload_chunk_bytes > MAX_CHUNK_BYTES:
            raise UsageError(
                f"{CONFIG_NAME}: server.upload_chunk_bytes must be at most {MAX_CHUNK_BYTES} "
                f"(5 GiB, the largest S3 part), got {self.upload_chunk_bytes}",
                hint=f"the default is {SERVER_DEFAULTS['upload_chunk_bytes']}",
            )

    def to_toml(self) -> str:
        """The ``[server]`` table with the settings that differ from the defaults; empty
        when none does."""
        changed = [
            f"{key} = {getattr(self, key)}"
            for key, default in SERVER_DEFAULTS.items()
            if getattr(self, key) != default
        ]
        return "\n".join(["[server]", *changed]) if changed else ""


def parse_server(value: object) -> ServerConfig:
    """The ``server`` table of a parsed ``modelcycle.toml``, checked."""
    if not isinstance(value, dict):
        raise UsageError(
            f"{CONFIG_NAME}: server must be a table", hint="write it as a [server] table"
        )
    for key in value:
        if key not in SERVER_DEFAULTS:
            raise UsageError(
                f"{CONFIG_NAME}: server has an unknown field {key!r}{suggest(key, SERVER_DEFAULTS)}",
                hint=f"fields: {', '.join(SERVER_DEFAULTS)}",
            )
    return ServerConfig(**value)


@dataclass(frozen=True)
class WorkspaceConfig:
    """Where a workspace keeps its metadata and its blobs.

    Relative paths in ``store_url`` (``sqlite:///relative.db``) and ``blobs_url`` are
    resolved against ``root``.
    """

    root: Path
    store_url: str = DEFAULT_STORE
    blobs_url: str = DEFAULT_BLOBS
    blobs_options: dict[str, str] = field(default_factory=dict)
    webhooks: tuple[WebhookConfig, ...] = ()
    server: ServerConfig = field(default_factory=ServerConfig)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def resolved_store_url(self) -> str:
        url = self.store_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix) :]
            if rest and rest != ":memory:":
                return prefix + str(self.root / rest)
        return url

    def resolved_blobs_url(self) -> str:
        url = self.blobs_url
        if "://" in url:
            return url
        path = Path(url).expanduser()
        return str(path if path.is_absolute() else self.root / path)

    def to_toml(self) -> str:
        lines = [
            "# modelcycle workspace. Relative paths are relative to this file's folder.",
            "[store]",
            f"url = {toml_string(self.store_url)}",
            "",
            "[blobs]",
            f"url = {toml_string(self.blobs_url)}",
        ]
        lines += [
            f"{toml_string(key)} = {toml_string(value)}"
            for key, value in self.blobs_options.items()
            if key != "url"
        ]
        if server := self.server.to_toml():
            lines += ["", server]
        for hook in self.webhooks:
            lines += ["", hook.to_toml()]
        return "\n".join(lines) + "\n"

    @classmethod
    def load(cls, root: Path) -> WorkspaceConfig:
        path = root / CONFIG_NAME
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WorkspaceNotFoundError(
                f"no workspace at {root} ({CONFIG_NAME} is missing)",
                hint="run `modelcycle init` there, or point MODELCYCLE_WORKSPACE at a workspace",
            ) from None
        except tomllib.TOMLDecodeError as e:
            raise UsageError(
                f"{path} is not valid TOML: {e}", hint="fix the file or re-create it with init"
            ) from None
        store = data.get("store", {})
        blobs = dict(data.get("blobs", {}))
        blobs_url = str(blobs.pop("url", DEFAULT_BLOBS))
        return cls(
            root=root,
            store_url=str(store.get("url", DEFAULT_STORE)),
            blobs_url=blobs_url,
            blobs_options={k: str(v) for k, v in blobs.items()},
            webhooks=parse_webhooks(data["webhooks"]) if "webhooks" in data else (),
            server=parse_server(data["server"]) if "server" in data else ServerConfig(),
        )


def find_workspace_root(start: Path | None = None) -> Path:
    """The workspace named by MODELCYCLE_WORKSPACE, else the nearest one at or above ``start``."""
    env = os.environ.get(ENV_WORKSPACE)
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / CONFIG_NAME).is_file():
            raise WorkspaceNotFoundError(
                f"{ENV_WORKSPACE}={env} but there is no {CONFIG_NAME} there",
                hint=f"run `modelcycle init {env}` or unset {ENV_WORKSPACE}",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise WorkspaceNotFoundError(
        f"no modelcycle workspace in {here} or any folder above it",
        hint="run `modelcycle init` to create one, or set MODELCYCLE_WORKSPACE",
    )
