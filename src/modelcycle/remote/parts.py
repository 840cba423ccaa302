"""What a remote workspace is made of: a connection, the server's stores, its blobs."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from modelcycle.blobs.base import BlobStore
from modelcycle.core.config import STATE_DIR
from modelcycle.core.errors import ModelcycleError
from modelcycle.remote.http import Connection
from modelcycle.remote.stores import RemoteMetadataStore, RemoteRunStore, RemoteStore

log = logging.getLogger(__name__)


@dataclass
class RemoteParts:
    """The pieces `Workspace.connect` assembles a workspace from."""

    connection: Connection
    metadata: RemoteMetadataStore
    blobs: BlobStore
    token: str | None
    role: str
    server_version: str
    _stores: dict[str, RemoteStore] = field(default_factory=dict)

    def store(self, name: str) -> RemoteStore:
        if name not in self._stores:
            cls = RemoteRunStore if name == "runs" else RemoteStore
            self._stores[name] = cls(self.connection, name, self.metadata)
        return self._stores[name]

    def notify(self, kind: str, subject: str, payload: Mapping[str, Any]) -> None:
        """Have the server send its webhooks for a change made here. Never raises, like
        a local workspace's webhooks: a notice that cannot be sent is logged."""
        try:
            self.connection.request(
                "POST",
                "/api/v1/notify",
                content=orjson.dumps(
                    {"kind": kind, "subject": subject, "payload": payload},
                    default=str,
                ),
                headers={"Content-Type": "application/json"},
                idempotent=False,
            )
        except ModelcycleError as e:
            log.warning("the server did not take the %s notice for %s: %s", kind, subject, e)

    @property
    def worker(self) -> dict[str, Any]:
        """What a worker process needs to connect the same way (see `open_parts`)."""
        return {"url": self.connection.url, "token": self.token}

    def close(self) -> None:
        try:
            close = getattr(self.blobs, "close", None)
            if close is not None:
                close()
        finally:
            self.connection.close()


def default_cache(url: str) -> Path:
    """Where a client keeps what it fetched from the server at ``url``: blobs (verified,
    content-addressed, so valid forever) and local state such as the stat cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    parsed = urlparse(url)
    name = f"{parsed.hostname or 'server'}-{parsed.port or 0}"
    digest = hashlib.blake2s(url.encode(), digest_size=4).hexdigest()
    return Path(base) / "modelcycle" / "remote" / f"{name}-{digest}"


def open_parts(url: str, token: str | None, cache: Path) -> RemoteParts:
    """Connect to the server at ``url``: the token is checked now (AuthenticationError
    at once for a bad one), not at the first call."""
    from modelcycle.remote.blobs import RemoteBlobStore

    conn = Connection(url, token)
    try:
        who = conn.json("GET", "/api/v1/whoami")
        metadata = RemoteMetadataStore(conn, str(who["actor"]))
        blobs = RemoteBlobStore(conn, cache / STATE_DIR / "blobs")
    except BaseException:
        conn.close()
        raise
    return RemoteParts(
        connection=conn,
        metadata=metadata,
        blobs=blobs,
        token=token,
        role=str(who["role"]),
        server_version=str(who["version"]),
    )
