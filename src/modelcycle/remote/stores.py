"""Metadata stores whose methods run on a platform server.

`RemoteStore` stands in for a store class of `modelcycle.store` (``RunStore``,
``RegistryStore``, …): each method call is one ``POST /api/v1/rpc/{store}/{method}``, its
arguments and result carried by `modelcycle.remote.codec`, its errors raised as the
workspace errors the server answered with. The domain services cannot tell the
difference: they call the same methods with the same records.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from modelcycle.core.errors import UsageError
from modelcycle.remote import codec
from modelcycle.remote.http import Connection

IDEMPOTENCY_HEADER = "Idempotency-Key"

# Methods that change nothing, or whose change the store makes once however often it is
# sent (a lease claimed again by its owner): safe to retry as they are. Every other call
# carries an idempotency key, so that the server applies a retried call only once.
_SAFE_PREFIXES = ("get", "list", "version", "find", "search", "live", "require", "alert")
_SAFE = frozenset(
    {
        "artifacts",
        "aliases",
        "annotations",
        "annotators",
        "any_usable",
        "assignments",
        "by_hash",
        "changes",
        "children",
        "counts",
        "decisions",
        "events",
        "experiments",
        "feedback_for",
        "for_model_version",
        "for_version",
        "has_segments",
        "inputs",
        "key_values",
        "last_alerts",
        "latest_metrics",
        "metric_buckets",
        "metric_history",
        "metric_keys",
        "model_id",
        "models",
        "names",
        "parents",
        "policies",
        "policy",
        "predictions",
        "result",
        "results",
        "retired_sources",
        "runs",
        "runs_by_prefix",
        "runs_reading",
        "segments",
        "stage_state",
        "tag_target",
        "tags",
        "tasks",
        "transitions",
        "claim",
        "release",
    }
)
# A batch of metric points is sent in pieces of at most this many (a body stays a few
# MB, far below the server's request limit however long the writer was kept waiting).
POINTS_PER_CALL = 20_000


class RemoteStore:
    """The store ``name`` of the server behind ``conn``."""

    def __init__(self, conn: Connection, name: str, metadata: RemoteMetadataStore) -> None:
        self._conn = conn
        self._name = name
        self.store = metadata  # as a local store's ``.store``: the metadata store it uses

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return self._method(method)

    def _method(self, method: str) -> Callable[..., Any]:
        path = f"/api/v1/rpc/{self._name}/{method}"
        safe = method in _SAFE or method.startswith(_SAFE_PREFIXES)

        def call(*args: Any, **kwargs: Any) -> Any:
            body = orjson.dumps({"args": codec.encode(list(args)), "kwargs": codec.encode(kwargs)})
            headers = {"Content-Type": "application/json"}
            if not safe:
                headers[IDEMPOTENCY_HEADER] = uuid.uuid4().hex
            response = self._conn.request("POST", path, content=body, headers=headers)
            return codec.decode(orjson.loads(response.content)["result"])

        call.__name__ = method
        call.__qualname__ = f"RemoteStore[{self._name}].{method}"
        return call

    def __repr__(self) -> str:
        return f"RemoteStore({self._name!r}, {self._conn.url!r})"


class RemoteRunStore(RemoteStore):
    """The server's run store; long metric batches go in pieces."""

    def write_batch(
        self,
        run_id: str,
        points: Sequence[Any],
        params: Sequence[tuple[str, str]] = (),
        tags: Sequence[tuple[str, str]] = (),
        end: Any = None,
    ) -> None:
        send = self._method("write_batch")
        points = list(points)
        while len(points) > POINTS_PER_CALL:  # params, tags and the end go with the last
            send(run_id, points[:POINTS_PER_CALL])
            points = points[POINTS_PER_CALL:]
        send(run_id, points, params, tags, end)


class RemoteMetadataStore(RemoteStore):
    """The server's metadata store: datasets, versions, tags and the event log."""

    def __init__(self, conn: Connection, actor: str) -> None:
        super().__init__(conn, "metadata", self)
        self.url = conn.url
        self._actor = actor

    @property
    def actor(self) -> str:
        """Who the server records changes under: ``token:NAME``."""
        return self._actor

    def side_schema_url(self, schema: str) -> str:
        raise UsageError(
            "a remote workspace has no database of its own for side schemas",
            hint="use in-memory storage, or run this where the server's store is reachable",
        )

    def close(self) -> None:
        """Nothing to close: the connection belongs to the workspace."""
