"""The store API a remote workspace speaks: ``POST /api/v1/rpc/{store}/{method}``.

A workspace opened with `Workspace.connect` runs the domain services on the client and
sends each metadata-store call here (`modelcycle.remote.stores`). Only the methods in
`METHODS` answer, each with the role it needs (deleting needs admin; tokens are admin
only); every argument is checked against the method's type hints before the call, so a
request cannot reach the database with a value the store does not expect. Changes are
recorded under the token's name like every other request's.

Body ``{"args": [...], "kwargs": {...}}`` and answer ``{"result": ...}``, both in the
encoding of `modelcycle.remote.codec`.
"""

from __future__ import annotations

import collections
import collections.abc as cabc
import dataclasses
import datetime as dt
import functools
import inspect
import logging
import threading
import time
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from modelcycle import __version__
from modelcycle.access import scope as projects
from modelcycle.access.tokens import TokenService
from modelcycle.core.errors import ModelcycleError, NotFoundError, UsageError
from modelcycle.remote import codec
from modelcycle.remote.stores import IDEMPOTENCY_HEADER
from modelcycle.server import rpc_guards
from modelcycle.server.auth import needs
from modelcycle.server.routes import ERRORS

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace

log = logging.getLogger(__name__)

Role = str | Callable[[inspect.BoundArguments], str]


def _when(flag: str, then: str, otherwise: str) -> Callable[[inspect.BoundArguments], str]:
    def role(bound: inspect.BoundArguments) -> str:
        return then if bound.arguments.get(flag) else otherwise

    return role


R, E, A = "reader", "editor", "admin"

# store -> method -> the role it needs. A method not listed does not answer remotely.
METHODS: dict[str, dict[str, Role]] = {
    "metadata": {
        **dict.fromkeys(
            (
                "children",
                "events",
                "get_dataset",
                "list_datasets",
                "parents",
                "tag_target",
                "tags",
                "version_by_cache_key",
                "version_by_id",
                "version_by_number",
                "versions",
                "versions_by_hash_prefix",
            ),
            R,
        ),
        **dict.fromkeys(("create_version", "record_event", "set_tag", "remove_tag"), E),
        "delete_versions": A,
    },
    "runs": {
        **dict.fromkeys(
            (
                "artifacts",
                "children",
                "experiments",
                "get_run",
                "inputs",
                "key_values",
                "latest_metrics",
                "metric_buckets",
                "metric_history",
                "metric_keys",
                "runs_by_prefix",
                "runs_reading",
                "search",
                "search_table",
            ),
            R,
        ),
        "experiment_id": _when("create", E, R),
        **dict.fromkeys(("add_artifacts", "add_inputs", "create_run", "set_state"), E),
        "write_batch": E,
        "delete_runs": A,
    },
    "registry": {
        **dict.fromkeys(
            ("aliases", "model_id", "models", "retired_sources", "transitions", "version"), R
        ),
        "versions": R,
        **dict.fromkeys(("register", "remove_alias", "set_alias", "set_stage"), E),
    },
    "deployments": {
        **dict.fromkeys(
            ("changes", "feedback_for", "get", "has_segments", "live", "names", "segments"), R
        ),
        **dict.fromkeys(("add_feedback", "add_segments", "create"), E),
        "change": _when("delete", A, E),
    },
    "evaluations": {**dict.fromkeys(("find", "for_model_version", "get"), R), "add": E},
    "labels": {
        **dict.fromkeys(
            (
                "annotations",
                "annotators",
                "assignments",
                "counts",
                "decisions",
                "get_project",
                "list_projects",
                "predictions",
                "tasks",
            ),
            R,
        ),
        **dict.fromkeys(("apply", "create_project", "decide"), E),
    },
    "maintenance": {
        **dict.fromkeys(("get", "policies", "policy", "require", "runs"), R),
        **dict.fromkeys(("claim", "release", "start", "update"), E),
        # A policy makes the server's scheduler retrain and fetch canary metrics: admins.
        **dict.fromkeys(("set_policy", "delete_policy"), A),
    },
    "monitors": {
        **dict.fromkeys(
            (
                "alert",
                "alerts",
                "get",
                "get_by_id",
                "last_alerts",
                "live",
                "require",
                "result",
                "results",
            ),
            R,
        ),
        **dict.fromkeys(("acknowledge", "add_result", "claim_due"), E),
        # A monitor's channels make the server's scheduler write files and send
        # requests: only admins set them.
        **dict.fromkeys(("create", "delete"), A),
    },
    "pipelines": {
        **dict.fromkeys(("runs", "stage_state"), R),
        **dict.fromkeys(("finish_run", "save_stage", "start_run"), E),
    },
    "sketches": {**dict.fromkeys(("find", "for_version", "live"), R), "add": E, "replace": E},
    "tokens": dict.fromkeys(("any_usable", "by_hash", "create", "live", "revoke"), A),
}

# Keyword arguments a method takes through ``**values``, and which it accepts.
OPEN_KEYWORDS: dict[tuple[str, str], dict[str, Any]] = {
    ("runs", "set_state"): {
        "experiment_id": int,
        "name": str,
        "status": str,
        "end_time": int | None,
        "error": str | None,
    }
}

StoreName = Literal[
    "metadata",
    "runs",
    "registry",
    "deployments",
    "evaluations",
    "labels",
    "maintenance",
    "monitors",
    "pipelines",
    "sketches",
    "tokens",
]


class RpcCall(BaseModel):
    """A store call's arguments, encoded as `modelcycle.remote.codec` does."""

    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class RpcResult(BaseModel):
    """The call's return value, encoded as `modelcycle.remote.codec` does."""

    result: Any = None


class Notice(BaseModel):
    """A change a remote client made, for the server's webhooks (`[[webhooks]]`)."""

    kind: str = Field(
        pattern=r"^(model|deployment|maintenance)\.[a-z_.]{1,60}$", examples=["model.stage"]
    )
    subject: str = Field(max_length=500)
    payload: dict[str, Any] = Field(default_factory=dict)


class Whoami(BaseModel):
    """Who the token is, what it may do, and the server's version."""

    actor: str
    role: str
    version: str
    stores: list[str]
    projects: list[str] | None = Field(
        default=None, description="The name patterns the token is limited to; null: all"
    )


class Replays:
    """Answers of recent changing calls by idempotency key: a call a client sends again
    (its first answer was lost) gets the first answer, and is not applied twice.
    Kept per server process for ``ttl`` seconds, at most ``size`` of them."""

    def __init__(self, ttl: float = 600.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._lock = threading.Lock()
        self._answers: collections.OrderedDict[tuple[str, str], tuple[float, bytes]] = (
            collections.OrderedDict()
        )

    def get(self, key: tuple[str, str]) -> bytes | None:
        with self._lock:
            hit = self._answers.get(key)
            if hit is None or time.monotonic() - hit[0] > self.ttl:
                return None
            return hit[1]

    def put(self, key: tuple[str, str], answer: bytes) -> None:
        with self._lock:
            self._answers[key] = (time.monotonic(), answer)
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)


def rpc_router(ws: Callable[[], Workspace]) -> APIRouter:
    replays = Replays()
    api = APIRouter(prefix="/api/v1", tags=["remote"], responses=ERRORS)

    @api.get("/whoami", dependencies=[Depends(needs("reader"))])
    def whoami(request: Request) -> Whoami:
        row = request.state.token
        return Whoami(
            actor=f"token:{row.name}" if row is not None else ws().actor,
            role=row.role if row is not None else "admin",
            version=__version__,
            stores=sorted(METHODS),
            projects=list(row.projects) or None if row is not None else None,
        )

    @api.post("/notify", status_code=202, dependencies=[Depends(needs("editor"))])
    def notify(request: Request, notice: Notice) -> dict[str, bool]:
        """Send the server's webhooks for a change a remote client made (the registry
        and deployment services run on the client; the hooks are configured here)."""
        token = request.state.token
        actor = f"token:{token.name}" if token is not None else ws().actor
        limits = projects.current()
        if limits is not None:  # its subject is a model's or a deployment's ref
            limits.require(notice.subject.partition("@")[0])
        ws().webhooks.notify(notice.kind, notice.subject, notice.payload, actor=actor)
        return {"queued": True}

    @api.post(
        "/rpc/{store}/{method}",
        response_model=RpcResult,
        dependencies=[Depends(needs("reader"))],
    )
    def call(
        request: Request,
        store: StoreName,
        method: typing.Annotated[str, Path(pattern=r"^[a-z][a-z_]{0,63}$")],
        body: RpcCall,
    ) -> Response:
        """Call one metadata-store method for a remote workspace."""
        token = request.state.token
        key = request.headers.get(IDEMPOTENCY_HEADER)
        replay_key = (token.name if token is not None else "", key[:128]) if key else None
        if replay_key is not None and (answer := replays.get(replay_key)) is not None:
            return Response(answer, media_type="application/json")
        role = METHODS[store].get(method)
        if role is None:
            raise NotFoundError(
                f"store {store!r} has no method {method!r} that answers remotely",
                hint=f"methods: {', '.join(sorted(METHODS[store]))}",
            )
        if isinstance(role, str):  # before decoding what a refused call sent
            TokenService.authorize(token, role)
        target = getattr(ws().stores[store], method)
        args = codec.decode(body.args)
        kwargs = codec.decode(body.kwargs)
        bound = _bind(store, method, target, args, kwargs)
        if not isinstance(role, str):
            TokenService.authorize(token, role(bound))
        rpc_guards.check(ws(), store, method, token, bound)
        try:
            result = target(*bound.args, **bound.kwargs)
        except ModelcycleError:
            raise
        except Exception as e:  # a bug or a broken store: said as such, logged in full
            log.exception("%s.%s failed", store, method)
            raise ModelcycleError(
                f"{store}.{method} failed on the server: {type(e).__name__}: {e}",
                hint="this is a bug or a broken store; the server's log has the traceback",
            ) from e
        answer = orjson.dumps({"result": codec.encode(rpc_guards.shown(token, store, result))})
        if replay_key is not None:
            replays.put(replay_key, answer)
        return Response(answer, media_type="application/json")

    return api


def _bind(
    store: str, method: str, target: Callable[..., Any], args: Any, kwargs: Any
) -> inspect.BoundArguments:
    where = f"{store}.{method}"
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise UsageError(f"{where}: args must be a list and kwargs an object")
    try:
        signature = inspect.signature(target)
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        raise UsageError(f"{where}: {e}", hint="check the call's arguments") from e
    hints = _hints(target)
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            allowed = OPEN_KEYWORDS.get((store, method), {})
            for key, item in value.items():
                if key not in allowed or not conforms(item, allowed[key]):
                    raise UsageError(
                        f"{where}: keyword {key!r} is not accepted or has the wrong type",
                        hint=f"accepted: {', '.join(sorted(allowed))}",
                    )
        elif name in hints and not conforms(value, hints[name]):
            raise UsageError(
                f"{where}: argument {name!r} is not a {_show(hints[name])}",
                hint="check the call's arguments",
            )
    return bound


@functools.cache
def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    func = getattr(target, "__func__", target)
    return typing.get_type_hints(func)


@functools.cache
def _field_hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _show(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


_SEQUENCES = {list, cabc.Sequence, cabc.Iterable, cabc.Collection, cabc.MutableSequence}
_MAPPINGS = {dict, cabc.Mapping, cabc.MutableMapping}
_INT64 = 2**63


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` names (the forms the stores use; any
    other form is accepted as it stands)."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(conforms(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str) and "\x00" not in value
    if hint is dt.datetime:
        return isinstance(value, dt.datetime)
    if origin is None:
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            fields = _field_hints(hint)
            return isinstance(value, hint) and all(
                conforms(getattr(value, f.name), fields.get(f.name, Any))
                for f in dataclasses.fields(hint)
            )
        return not isinstance(hint, type) or isinstance(value, hint)
    if origin in _SEQUENCES or origin in (set, frozenset, cabc.Set):
        container = (list, tuple, set, frozenset) if origin not in _SEQUENCES else (list, tuple)
        return isinstance(value, container) and all(conforms(v, args[0]) for v in value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            conforms(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin in _MAPPINGS:
        return isinstance(value, dict) and all(
            conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items()
        )
    return True
