"""Workspace configuration: ``modelcycle.toml`` and how commands find it."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from modelcycle.core.errors import UsageError, WorkspaceNotFoundError

CONFIG_NAME = "modelcycle.toml"
STATE_DIR = ".modelcycle"
ENV_WORKSPACE = "MODELCYCLE_WORKSPACE"
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
