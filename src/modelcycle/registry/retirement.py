"""The retirement policy: archived versions nobody uses any more are retired.

A version qualifies when it is ``archived``, has been archived for at least the policy's
period (the time of its last move to archived, from the transitions the registry keeps),
no alias points at it, no retire guard refuses it (a live deployment routing traffic or
shadow copies to it), and no prediction was logged for it within the period. Qualifying
versions go through `RegistryService.retire`, so the events and webhooks are those of
``model retire``; ``gc`` then frees their packages while their metadata and lineage stay.

Checks run cheapest first and stop at the first that keeps a version: the prediction log
is only read for versions that passed every other check.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import ConflictError, UsageError
from modelcycle.store.deployments import DeploymentStore
from modelcycle.store.registry import ModelVersionRow, Transition

if TYPE_CHECKING:
    from modelcycle.registry import RegistryService

# (model, version, since) -> when the newest prediction logged at or after ``since`` was
# made, or None when there is none.
LastTraffic = Callable[[str, int, dt.datetime], dt.datetime | None]

_MAX_DAYS = 36500  # a century; far longer would overflow datetime arithmetic
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


@dataclass(frozen=True)
class RetirementItem:
    """One archived version the policy looked at, and why it was retired or kept."""

    model: str
    version: int
    archived_at: dt.datetime | None
    reason: str

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "model": self.model,
            "version": self.version,
            "archived_at": self.archived_at.isoformat() if self.archived_at else None,
            "reason": self.reason,
        }


@dataclass
class RetirementReport:
    """What `retire_stale` retired (or, in a dry run, would retire) and what it kept."""

    older_than_days: float
    now: dt.datetime
    dry_run: bool = False
    retired: list[RetirementItem] = field(default_factory=list)
    skipped: list[RetirementItem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "older_than_days": self.older_than_days,
            "now": self.now.isoformat(),
            "retired": [i.to_dict() for i in self.retired],
            "skipped": [i.to_dict() for i in self.skipped],
        }


def last_prediction_at(store: DeploymentStore) -> LastTraffic:
    """A `LastTraffic` reading the prediction log segments of ``store``."""

    def last(model: str, version: int, since: dt.datetime) -> dt.datetime | None:
        found = store.segments(model=model, version=version, since=since)
        return max((s.max_ts for s in found), default=None)

    return last


def retire_stale(
    registry: RegistryService,
    *,
    older_than_days: float,
    model: str | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    reason: str | None = None,
) -> RetirementReport:
    """Apply the retirement policy (see the module's docstring) to ``model``'s archived
    versions, or every model's; with ``dry_run``, report and change nothing."""
    if isinstance(older_than_days, bool) or not (
        isinstance(older_than_days, int | float)
        and math.isfinite(older_than_days)
        and 0 < older_than_days <= _MAX_DAYS
    ):
        raise UsageError(
            f"older_than_days is {older_than_days!r}; it must be a number above 0 "
            f"and at most {_MAX_DAYS}",
            hint="e.g. 30 retires versions archived a month ago and unused since",
        )
    last_traffic = registry.last_traffic
    if last_traffic is None:
        raise UsageError(
            "the registry has no prediction log to check traffic with",
            hint="open it through modelcycle.Workspace, or set RegistryService.last_traffic",
        )
    now = _utc(now or dt.datetime.now(dt.UTC))
    period = dt.timedelta(days=older_than_days)
    policy = _span(period.total_seconds(), exact=True)
    report = RetirementReport(older_than_days, now, dry_run)
    names = [model] if model is not None else [m["name"] for m in registry.store.models()]
    for name in names:
        archived = [v for v in registry.versions(name) if v.stage == "archived"]
        if not archived:
            continue
        moved = _archived_at(registry.store.transitions(archived[0].model_id))
        aliases = registry.store.aliases(archived[0].model_id)
        for v in archived:
            at = moved.get(v.version)
            kept = _keep_reason(registry, v, at, aliases, now, period, policy, last_traffic)
            if kept is not None:
                report.skipped.append(RetirementItem(v.model, v.version, at, kept))
                continue
            assert at is not None
            why = (
                f"retirement policy: archived {_span((now - at).total_seconds())} ago, "
                f"no traffic for {policy}" + (f"; {reason}" if reason else "")
            )
            if not dry_run:
                try:
                    registry.retire(v.ref, reason=why)
                except ConflictError as e:  # changed since we looked (promoted, routed …)
                    report.skipped.append(RetirementItem(v.model, v.version, at, e.message))
                    continue
            report.retired.append(RetirementItem(v.model, v.version, at, why))
    return report


def _keep_reason(
    registry: RegistryService,
    v: ModelVersionRow,
    archived_at: dt.datetime | None,
    aliases: dict[str, int],
    now: dt.datetime,
    period: dt.timedelta,
    policy: str,
    last_traffic: LastTraffic,
) -> str | None:
    """Why ``v`` must stay, or None when the policy retires it."""
    if archived_at is None:
        return "no record of when it was archived"
    if now - archived_at < period:
        return f"archived {_span((now - archived_at).total_seconds())} ago, less than {policy}"
    names = sorted(a for a, n in aliases.items() if n == v.version)
    if names:
        return f"alias {', '.join(names)} points at it"
    for guard in registry.retire_guards:
        try:
            guard(v)
        except ConflictError as e:
            return e.message
    last = last_traffic(v.model, v.version, now - period)
    if last is not None:
        return f"a prediction was logged {_span((now - last).total_seconds())} ago, within {policy}"
    return None


def _archived_at(transitions: list[Transition]) -> dict[int, dt.datetime]:
    """version -> when it last moved to archived (transitions come oldest first)."""
    out: dict[int, dt.datetime] = {}
    for tr in transitions:
        if tr.kind == "stage" and tr.to_stage == "archived" and tr.version is not None:
            out[tr.version] = tr.at
    return out


def _utc(when: dt.datetime) -> dt.datetime:
    # modelcycle stores UTC; a naive time is read the same way.
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def _span(seconds: float, *, exact: bool = False) -> str:
    """'45 days', '36 hours', '90 minutes'. With ``exact``, the largest unit that divides
    ``seconds`` (a policy's period is shown as given); else the largest unit that counts
    at least two, rounded down (how long ago something happened)."""
    s = max(seconds, 0.0)
    for unit, size in _UNITS:
        n = s / size
        whole = abs(n - round(n)) < 1e-6
        if (exact and whole and n >= 1) or (not exact and (n >= 2 or size == 1)):
            k = round(n) if exact else int(n)
            return f"{k} {unit}{'' if k == 1 else 's'}"
    return f"{s:g} seconds"
