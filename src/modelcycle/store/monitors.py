"""Records of monitors, their results and their alerts.

A monitor result and the alert changes it causes (alerts fired, alerts resolved) are
written in one transaction, after the result's detail blob is stored: a crash leaves
at most an unreferenced blob. Monitors are deleted softly (their results and alerts
stay for the audit); a deleted monitor's name can be used again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update

from modelcycle.core.errors import ConflictError, NotFoundError
from modelcycle.core.text import suggest
from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, _aware, utcnow


@dataclass(frozen=True)
class MonitorRow:
    id: int
    name: str
    deployment: str
    reference: str
    spec: dict[str, Any]
    schedule_seconds: float
    window_seconds: float
    next_run_at: dt.datetime
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


@dataclass(frozen=True)
class ResultRow:
    id: int
    monitor_id: int
    started_at: dt.datetime
    finished_at: dt.datetime
    window_start: dt.datetime
    window_end: dt.datetime
    status: str
    rows: int
    values: dict[str, Any]
    breaches: list[str]
    detail_oid: str | None
    snapshot: dict[str, Any] | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "window": [self.window_start.isoformat(), self.window_end.isoformat()],
            "status": self.status,
            "rows": self.rows,
            "values": self.values,
            "breaches": self.breaches,
            "error": self.error,
        }


@dataclass(frozen=True)
class AlertRow:
    id: int
    monitor_id: int
    monitor: str
    deployment: str
    result_id: int
    rule: str
    metric: str
    op: str
    threshold: float
    value: float | None
    severity: str
    message: str
    fired_at: dt.datetime
    last_result_id: int
    acked_at: dt.datetime | None
    acked_by: str | None
    ack_note: str | None
    resolved_at: dt.datetime | None

    @property
    def state(self) -> str:
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acked_at is not None else "firing"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "monitor": self.monitor,
            "deployment": self.deployment,
            "rule": self.rule,
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "value": self.value,
            "severity": self.severity,
            "state": self.state,
            "message": self.message,
            "fired_at": self.fired_at.isoformat(),
            "result_id": self.result_id,
            "last_result_id": self.last_result_id,
            "acked_at": self.acked_at.isoformat() if self.acked_at else None,
            "acked_by": self.acked_by,
            "ack_note": self.ack_note,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }


@dataclass(frozen=True)
class NewAlert:
    rule: str
    metric: str
    op: str
    threshold: float
    value: float | None
    severity: str
    message: str


@dataclass
class AlertChanges:
    """What one result does to the monitor's alerts."""

    fire: list[NewAlert] = field(default_factory=list)
    resolve: list[int] = field(default_factory=list)  # alert ids
    still_open: list[int] = field(default_factory=list)  # alert ids breached again


def _aware_all(data: dict[str, Any], keys: Sequence[str]) -> None:
    for key in keys:
        data[key] = _aware(data[key])


class MonitorStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # -- monitors --------------------------------------------------------------------------
    @staticmethod
    def _monitor(row: Any) -> MonitorRow:
        data = dict(row)
        _aware_all(data, ("next_run_at", "created_at", "updated_at", "deleted_at"))
        return MonitorRow(**data)

    def get(self, name: str) -> MonitorRow | None:
        m = t.monitors.c
        stmt = select(t.monitors).where(m.name == name, m.deleted_at.is_(None))
        with self.store.reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return self._monitor(row) if row else None

    def get_by_id(self, monitor_id: int) -> MonitorRow | None:
        with self.store.reading() as conn:
            row = (
                conn.execute(select(t.monitors).where(t.monitors.c.id == monitor_id))
                .mappings()
                .first()
            )
        return self._monitor(row) if row else None

    def require(self, name: str) -> MonitorRow:
        found = self.get(name)
        if found is None:
            names = [m.name for m in self.live()]
            raise NotFoundError(
                f"no monitor named {name!r}{suggest(name, names)}",
                hint="list monitors with `modelcycle monitor list`",
            )
        return found

    def live(self) -> list[MonitorRow]:
        m = t.monitors.c
        stmt = select(t.monitors).where(m.deleted_at.is_(None)).order_by(m.name)
        with self.store.reading() as conn:
            return [self._monitor(r) for r in conn.execute(stmt).mappings().all()]

    def create(
        self,
        *,
        name: str,
        deployment: str,
        reference: str,
        spec: dict[str, Any],
        schedule_seconds: float,
        window_seconds: float,
        next_run_at: dt.datetime,
    ) -> MonitorRow:
        m = t.monitors.c
        now = utcnow()
        with self.store.writing() as conn:
            taken = conn.execute(select(m.id).where(m.name == name, m.deleted_at.is_(None))).first()
            if taken is not None:
                raise ConflictError(
                    f"a monitor named {name!r} exists already",
                    hint=f"choose another name, or delete it first: modelcycle monitor delete "
                    f"{name}",
                )
            mid = conn.execute(
                insert(t.monitors).values(
                    name=name,
                    deployment=deployment,
                    reference=reference,
                    spec=spec,
                    schedule_seconds=schedule_seconds,
                    window_seconds=window_seconds,
                    next_run_at=next_run_at,
                    created_at=now,
                    created_by=self.store.actor,
                    updated_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            self.store.add_event(
                conn,
                "monitor.created",
                name,
                {
                    "deployment": deployment,
                    "reference": reference,
                    "checks": spec.get("checks"),
                    "rules": spec.get("rules"),
                    "channels": [c.get("type") for c in spec.get("channels", [])],
                },
            )
            row = conn.execute(select(t.monitors).where(m.id == mid)).mappings().one()
        return self._monitor(row)

    def delete(self, name: str) -> None:
        found = self.require(name)
        m = t.monitors.c
        with self.store.writing() as conn:
            conn.execute(update(t.monitors).where(m.id == found.id).values(deleted_at=utcnow()))
            self.store.add_event(conn, "monitor.deleted", name, {})

    def claim_due(self, now: dt.datetime) -> list[MonitorRow]:
        """Monitors due at ``now``; each one returned is moved to its next run time in the
        same step, so two schedulers sharing a store never run a monitor twice."""
        m = t.monitors.c
        claimed = []
        for monitor in self.live():
            if monitor.next_run_at > now:
                continue
            with self.store.writing() as conn:
                done = conn.execute(
                    update(t.monitors)
                    .where(
                        m.id == monitor.id,
                        m.next_run_at == monitor.next_run_at,
                        m.deleted_at.is_(None),
                    )
                    .values(next_run_at=now + dt.timedelta(seconds=monitor.schedule_seconds))
                )
            if done.rowcount == 1:
                claimed.append(monitor)
        return claimed

    # -- results ---------------------------------------------------------------------------
    @staticmethod
    def _result(row: Any) -> ResultRow:
        data = dict(row)
        _aware_all(data, ("started_at", "finished_at", "window_start", "window_end"))
        return ResultRow(**data)

    def results(self, monitor_id: int, *, limit: int = 50) -> list[ResultRow]:
        """The newest ``limit`` results of a monitor, newest first."""
        r = t.monitor_results.c
        stmt = (
            select(t.monitor_results)
            .where(r.monitor_id == monitor_id)
            .order_by(r.id.desc())
            .limit(limit)
        )
        with self.store.reading() as conn:
            return [self._result(x) for x in conn.execute(stmt).mappings().all()]

    def result(self, result_id: int) -> ResultRow | None:
        with self.store.reading() as conn:
            row = (
                conn.execute(select(t.monitor_results).where(t.monitor_results.c.id == result_id))
                .mappings()
                .first()
            )
        return self._result(row) if row else None

    def add_result(
        self,
        monitor: MonitorRow,
        *,
        started_at: dt.datetime,
        window_start: dt.datetime,
        window_end: dt.datetime,
        status: str,
        rows: int,
        values: dict[str, Any],
        breaches: list[str],
        detail_oid: str | None,
        snapshot: dict[str, Any] | None,
        error: str | None,
        changes: AlertChanges,
        at: dt.datetime | None = None,
    ) -> tuple[ResultRow, list[AlertRow]]:
        """Record a result and apply its alert changes in one transaction; returns the
        result and the alerts it fired. Alerts fire and resolve ``at`` (default: now)."""
        a = t.alerts.c
        now = utcnow()
        at = at or now
        with self.store.writing() as conn:
            rid = conn.execute(
                insert(t.monitor_results).values(
                    monitor_id=monitor.id,
                    started_at=started_at,
                    finished_at=now,
                    window_start=window_start,
                    window_end=window_end,
                    status=status,
                    rows=rows,
                    values=values,
                    breaches=breaches,
                    detail_oid=detail_oid,
                    snapshot=snapshot,
                    error=error,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            fired = []
            for new in changes.fire:
                aid = conn.execute(
                    insert(t.alerts).values(
                        monitor_id=monitor.id,
                        result_id=rid,
                        rule=new.rule,
                        metric=new.metric,
                        op=new.op,
                        threshold=new.threshold,
                        value=new.value,
                        severity=new.severity,
                        message=new.message,
                        fired_at=at,
                        last_result_id=rid,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                fired.append(int(aid))
                self.store.add_event(
                    conn,
                    "alert.fired",
                    monitor.name,
                    {"alert": aid, "rule": new.rule, "value": new.value, "result": rid},
                )
            if changes.still_open:
                conn.execute(
                    update(t.alerts).where(a.id.in_(changes.still_open)).values(last_result_id=rid)
                )
            for aid in changes.resolve:
                conn.execute(
                    update(t.alerts).where(a.id == aid).values(resolved_at=at, last_result_id=rid)
                )
                self.store.add_event(
                    conn, "alert.resolved", monitor.name, {"alert": aid, "result": rid}
                )
            self.store.add_event(
                conn,
                "monitor.ran",
                monitor.name,
                {"result": rid, "status": status, "rows": rows, "breaches": breaches},
            )
            result = self._result(
                conn.execute(select(t.monitor_results).where(t.monitor_results.c.id == rid))
                .mappings()
                .one()
            )
        return result, [self._alert_by_id(aid) for aid in fired]

    # -- alerts ----------------------------------------------------------------------------
    def _alert_select(self) -> Any:
        a, m = t.alerts.c, t.monitors.c
        return select(t.alerts, m.name.label("monitor"), m.deployment.label("deployment")).join(
            t.monitors, m.id == a.monitor_id
        )

    @staticmethod
    def _alert(row: Any) -> AlertRow:
        data = dict(row)
        _aware_all(data, ("fired_at", "acked_at", "resolved_at"))
        return AlertRow(**data)

    def _alert_by_id(self, alert_id: int) -> AlertRow:
        found = self.alert(alert_id)
        assert found is not None
        return found

    def alert(self, alert_id: int) -> AlertRow | None:
        with self.store.reading() as conn:
            row = (
                conn.execute(self._alert_select().where(t.alerts.c.id == alert_id))
                .mappings()
                .first()
            )
        return self._alert(row) if row else None

    def alerts(
        self,
        *,
        monitor_id: int | None = None,
        open_only: bool = False,
        limit: int = 100,
    ) -> list[AlertRow]:
        """Alerts, newest first."""
        a = t.alerts.c
        stmt = self._alert_select()
        if monitor_id is not None:
            stmt = stmt.where(a.monitor_id == monitor_id)
        if open_only:
            stmt = stmt.where(a.resolved_at.is_(None))
        stmt = stmt.order_by(a.id.desc()).limit(limit)
        with self.store.reading() as conn:
            return [self._alert(r) for r in conn.execute(stmt).mappings().all()]

    def last_alerts(self, monitor_id: int) -> dict[str, AlertRow]:
        """The newest alert of each rule of a monitor."""
        a = t.alerts.c
        stmt = self._alert_select().where(a.monitor_id == monitor_id).order_by(a.id)
        with self.store.reading() as conn:
            return {r.rule: r for r in map(self._alert, conn.execute(stmt).mappings())}

    def acknowledge(self, alert_id: int, *, note: str | None) -> AlertRow:
        found = self.alert(alert_id)
        if found is None:
            raise NotFoundError(
                f"no alert with id {alert_id}",
                hint="list alerts with `modelcycle alert list`",
            )
        if found.acked_at is not None:
            raise ConflictError(
                f"alert {alert_id} was acknowledged already by {found.acked_by} at "
                f"{found.acked_at.isoformat(timespec='seconds')}",
                hint="",
            )
        with self.store.writing() as conn:
            conn.execute(
                update(t.alerts)
                .where(t.alerts.c.id == alert_id)
                .values(acked_at=utcnow(), acked_by=self.store.actor, ack_note=note)
            )
            self.store.add_event(
                conn, "alert.acknowledged", found.monitor, {"alert": alert_id, "note": note}
            )
        return self._alert_by_id(alert_id)
