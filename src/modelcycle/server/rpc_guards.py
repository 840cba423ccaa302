"""What the server checks in a remote workspace's store calls beyond the role table.

The domain services run on the client; the server cannot trust their arguments any
more than the token that sent them. So before a call: records the client passes are
replaced by the server's own rows, found by their ids (a client cannot relabel a
version of one model as another's); stage moves follow the registry's rules (retiring
or forcing needs admin); only the event kinds a client records are accepted; a new
version's manifest must be stored already; ``now`` is the server's clock, within a few
minutes; leases are bounded. After a call: readers see monitors with their alert
channels redacted (webhook secrets and headers are credentials).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelcycle.access.tokens import TokenService
from modelcycle.core.errors import ConflictError, NotFoundError, UsageError
from modelcycle.store.monitors import MonitorRow
from modelcycle.store.tokens import TokenRow

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace

Guard = Callable[["Workspace", TokenRow | None, inspect.BoundArguments], None]

# Event kinds the client-side services record themselves (gate verdicts, validation
# reports, alert deliveries, failed webhooks). Every other event is written by the
# store methods, on the server.
CLIENT_EVENTS = frozenset(
    {"model.gate", "dataset.validated", "alert.notified", "alert.delivery_failed", "webhook.failed"}
)
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_LEASE_SECONDS = 24 * 3600.0


def _server_version(ws: Workspace, record: Any) -> Any:
    row = ws.stores["registry"].version(record.model_id, record.version)
    if row is None or row.id != record.id or row.model != record.model:
        raise NotFoundError(
            f"model version {record.model}@{record.version} (id {record.id}) does not exist",
            hint="read the version again; it may have been removed",
        )
    return row


def _set_alias(ws: Workspace, token: TokenRow | None, bound: inspect.BoundArguments) -> None:
    bound.arguments["version"] = _server_version(ws, bound.arguments["version"])


def _set_stage(ws: Workspace, token: TokenRow | None, bound: inspect.BoundArguments) -> None:
    from modelcycle.registry import MOVES, STAGES

    args = bound.arguments
    version = args["version"] = _server_version(ws, args["version"])
    stage = args["stage"]
    if stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r}", hint=f"stages: {', '.join(STAGES)}")
    if stage == "retired" or args.get("forced"):
        TokenService.authorize(token, "admin")  # retiring frees packages: like deleting
    elif stage not in MOVES[version.stage]:
        raise ConflictError(
            f"{version.ref} cannot move from {version.stage} to {stage}",
            hint=f"from {version.stage}: {', '.join(MOVES[version.stage]) or 'nothing'}",
        )
    args["exclusive"] = stage == "production"


def _set_tag(ws: Workspace, token: TokenRow | None, bound: inspect.BoundArguments) -> None:
    record = bound.arguments["version"]
    row = ws.store.version_by_id(record.id)
    if row is None or row.dataset_id != record.dataset_id:
        raise NotFoundError(f"dataset version id {record.id} does not exist", hint="")
    bound.arguments["version"] = row


def _record_event(ws: Workspace, token: TokenRow | None, bound: inspect.BoundArguments) -> None:
    kind = bound.arguments["kind"]
    if kind not in CLIENT_EVENTS:
        raise UsageError(
            f"event kind {kind!r} is recorded by the server itself, not sent by a client",
            hint=f"a client may record: {', '.join(sorted(CLIENT_EVENTS))}",
        )


def _label_event(ws: Workspace, token: TokenRow | None, bound: inspect.BoundArguments) -> None:
    kind = str(bound.arguments["event"])
    if not kind.startswith("label.") or len(kind) > 100:
        raise UsageError(
            f"labeling changes cannot be recorded as a {kind!r} event",
            hint="their event kinds start with 'label.'",
        )


def _create_version(ws: Workspace, token: TokenRow | None, bound: inspect.BoundArguments) -> None:
    new = bound.arguments["new"]
    oid = getattr(new, "manifest_oid", None)
    if oid and not ws.blobs.exists(oid):
        raise ConflictError(
            f"the manifest {oid} of the new version of {new.dataset!r} is not stored",
            hint="upload the version's blobs before its record",
        )


REGISTER_KEYS = frozenset(
    {
        "run_id",
        "source",
        "manifest_oid",
        "flavor",
        "signature",
        "metrics",
        "needs_trust",
        "description",
    }
)


def _register(ws: Workspace, token: TokenRow | None, bound: inspect.BoundArguments) -> None:
    values = bound.arguments["values"]
    extra = sorted(set(values) - REGISTER_KEYS)
    if extra:
        raise UsageError(
            f"a new model version cannot set {', '.join(extra)}",
            hint=f"it takes: {', '.join(sorted(REGISTER_KEYS))}",
        )
    oid = values.get("manifest_oid")
    if not isinstance(oid, str) or not ws.blobs.exists(oid):
        raise ConflictError(
            f"the package manifest {oid!r} of the new version of {bound.arguments['name']!r} "
            "is not stored",
            hint="upload the package's blobs before registering it",
        )


def _lease(ws: Workspace, token: TokenRow | None, bound: inspect.BoundArguments) -> None:
    for name in ("seconds", "lease_seconds"):
        seconds = bound.arguments.get(name)
        if seconds is not None and not 0 < seconds <= MAX_LEASE_SECONDS:
            raise UsageError(
                f"a lease of {seconds} s is out of bounds",
                hint=f"leases last more than 0 s and at most {MAX_LEASE_SECONDS:.0f} s",
            )


GUARDS: dict[tuple[str, str], Guard] = {
    ("registry", "set_alias"): _set_alias,
    ("registry", "set_stage"): _set_stage,
    ("metadata", "set_tag"): _set_tag,
    ("metadata", "record_event"): _record_event,
    ("labels", "apply"): _label_event,
    ("metadata", "create_version"): _create_version,
    ("registry", "register"): _register,
    ("maintenance", "claim"): _lease,
    ("maintenance", "start"): _lease,
}


def check(
    ws: Workspace, store: str, method: str, token: TokenRow | None, bound: inspect.BoundArguments
) -> None:
    """Refuse (or correct) a call whose arguments the server cannot take as sent."""
    for name, value in bound.arguments.items():
        if isinstance(value, dt.datetime):
            bound.arguments[name] = _check_time(name, value)
    guard = GUARDS.get((store, method))
    if guard is not None:
        guard(ws, token, bound)


def _check_time(name: str, value: dt.datetime) -> dt.datetime:
    """``value`` with its zone (a time without one is UTC, as everywhere in the API)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if name == "now" and abs(value - dt.datetime.now(dt.UTC)) > MAX_CLOCK_SKEW:
        raise UsageError(
            f"now is {value.isoformat(timespec='seconds')}, more than "
            f"{MAX_CLOCK_SKEW.seconds // 60} minutes from the server's clock",
            hint="set this machine's clock (NTP), or run this on the server",
        )
    return value


def shown(token: TokenRow | None, store: str, result: Any) -> Any:
    """``result`` as ``token`` may see it: readers get monitors without channel secrets."""
    if store != "monitors" or token is None or token.role != "reader":
        return result
    if isinstance(result, MonitorRow):
        return _redacted(result)
    if isinstance(result, list):
        return [_redacted(r) if isinstance(r, MonitorRow) else r for r in result]
    return result


def _redacted(row: MonitorRow) -> MonitorRow:
    from modelcycle.monitoring.monitors import shown_channels

    spec = dict(row.spec)
    if spec.get("channels"):
        spec["channels"] = shown_channels(spec["channels"])
    return dataclasses.replace(row, spec=spec)
