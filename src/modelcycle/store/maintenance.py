"""Records of the closed loop: maintenance policies and maintenance runs.

A run's steps are appended as the loop advances, each change in one transaction with
its event, so the audit log and the run always agree; a crash between two steps leaves
the run ``running`` at its last recorded step, and the loop resumes from there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelcycle.core.errors import ConflictError, NotFoundError
from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, _aware, utcnow

FINAL_STATES = ("promoted", "rolled_back", "refused", "failed", "cancelled")


@dataclass(frozen=True)
class PolicyRow:
    id: int
    deployment: str
    spec: dict[str, Any]
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


@dataclass(frozen=True)
class MaintenanceRow:
    id: int
    deployment: str
    model: str
    trigger: dict[str, Any]
    policy: dict[str, Any]
    state: str
    phase: str
    champion: str | None
    candidate: str | None
    steps: list[dict[str, Any]]
    data: dict[str, Any]
    reason: str | None
    started_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    started_by: str
    lease_owner: str | None = None
    lease_until: dt.datetime | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "model": self.model,
            "state": self.state,
            "phase": self.phase,
            "champion": self.champion,
            "candidate": self.candidate,
            "trigger": self.trigger,
            "reason": self.reason,
            "steps": self.steps,
            "started_at": self.started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "started_by": self.started_by,
        }


class MaintenanceStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # -- policies --------------------------------------------------------------------------
    @staticmethod
    def _policy(row: Any) -> PolicyRow:
        data = dict(row)
        for key in ("created_at", "updated_at", "deleted_at"):
            data[key] = _aware(data[key])
        return PolicyRow(**data)

    def policy(self, deployment: str) -> PolicyRow | None:
        p = t.maintenance_policies.c
        stmt = select(t.maintenance_policies).where(
            p.deployment == deployment, p.deleted_at.is_(None)
        )
        with self.store.reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return self._policy(row) if row else None

    def policies(self) -> list[PolicyRow]:
        p = t.maintenance_policies.c
        stmt = select(t.maintenance_policies).where(p.deleted_at.is_(None)).order_by(p.deployment)
        with self.store.reading() as conn:
            return [self._policy(r) for r in conn.execute(stmt).mappings().all()]

    def set_policy(self, deployment: str, spec: dict[str, Any]) -> PolicyRow:
        """Create or replace the deployment's policy."""
        p = t.maintenance_policies.c
        now = utcnow()
        with self.store.writing() as conn:
            old = conn.execute(
                select(p.id, p.spec).where(p.deployment == deployment, p.deleted_at.is_(None))
            ).first()
            if old is None:
                conn.execute(
                    insert(t.maintenance_policies).values(
                        deployment=deployment,
                        spec=spec,
                        created_at=now,
                        created_by=self.store.actor,
                        updated_at=now,
                    )
                )
            else:
                conn.execute(
                    update(t.maintenance_policies)
                    .where(p.id == old[0])
                    .values(spec=spec, updated_at=now)
                )
            self.store.add_event(
                conn,
                "maintenance.policy_set",
                deployment,
                {"before": None if old is None else old[1], "after": spec},
            )
        found = self.policy(deployment)
        assert found is not None
        return found

    def delete_policy(self, deployment: str) -> None:
        p = t.maintenance_policies.c
        with self.store.writing() as conn:
            done = conn.execute(
                update(t.maintenance_policies)
                .where(p.deployment == deployment, p.deleted_at.is_(None))
                .values(deleted_at=utcnow())
            )
            if done.rowcount == 0:
                raise NotFoundError(
                    f"deployment {deployment!r} has no maintenance policy",
                    hint="list policies with `modelcycle maintenance policies`",
                )
            self.store.add_event(conn, "maintenance.policy_deleted", deployment, {})

    # -- runs ------------------------------------------------------------------------------
    @staticmethod
    def _run(row: Any) -> MaintenanceRow:
        data = dict(row)
        for key in ("started_at", "updated_at", "finished_at", "lease_until"):
            data[key] = _aware(data[key])
        return MaintenanceRow(**data)

    def get(self, run_id: int) -> MaintenanceRow | None:
        with self.store.reading() as conn:
            row = (
                conn.execute(select(t.maintenance_runs).where(t.maintenance_runs.c.id == run_id))
                .mappings()
                .first()
            )
        return self._run(row) if row else None

    def require(self, run_id: int) -> MaintenanceRow:
        found = self.get(run_id)
        if found is None:
            raise NotFoundError(
                f"no maintenance run {run_id}",
                hint="list them with `modelcycle maintenance list`",
            )
        return found

    def runs(
        self, *, deployment: str | None = None, running: bool = False, limit: int = 50
    ) -> list[MaintenanceRow]:
        """Runs, newest first."""
        r = t.maintenance_runs.c
        stmt = select(t.maintenance_runs)
        if deployment is not None:
            stmt = stmt.where(r.deployment == deployment)
        if running:
            stmt = stmt.where(r.state == "running")
        stmt = stmt.order_by(r.id.desc()).limit(limit)
        with self.store.reading() as conn:
            return [self._run(x) for x in conn.execute(stmt).mappings().all()]

    def start(
        self,
        *,
        deployment: str,
        model: str,
        trigger: dict[str, Any],
        policy: dict[str, Any],
        champion: str | None,
        min_interval_seconds: float,
        now: dt.datetime,
        lease_owner: str,
        lease_seconds: float,
    ) -> MaintenanceRow:
        """A new running run, leased to ``lease_owner``, unless one is running for the model or one started less
        than ``min_interval_seconds`` ago (ConflictError saying which)."""
        r = t.maintenance_runs.c
        with self.store.writing() as conn:
            last = (
                conn.execute(
                    select(r.id, r.state, r.started_at)
                    .where(r.model == model)
                    .order_by(r.id.desc())
                    .limit(1)
                    .with_for_update()
                )
                .mappings()
                .first()
            )
            if last is not None:
                if last["state"] == "running":
                    raise ConflictError(
                        f"maintenance run {last['id']} of {model} is still running",
                        hint="at most one runs per model; see `modelcycle maintenance show "
                        f"{last['id']}`",
                    )
                since = (now - _aware(last["started_at"])).total_seconds()  # type: ignore[operator]
                if since < min_interval_seconds:
                    raise ConflictError(
                        f"the last maintenance run of {model} ({last['id']}) started "
                        f"{since:.0f} s ago, less than the policy's min_interval "
                        f"({min_interval_seconds:.0f} s)",
                        hint="wait, or lower min_interval in the policy",
                    )
            try:
                rid = conn.execute(
                    insert(t.maintenance_runs).values(
                        deployment=deployment,
                        model=model,
                        trigger=trigger,
                        policy=policy,
                        state="running",
                        phase="start",
                        champion=champion,
                        steps=[],
                        data={},
                        started_at=now,
                        updated_at=now,
                        started_by=self.store.actor,
                        lease_owner=lease_owner,
                        lease_until=utcnow() + dt.timedelta(seconds=lease_seconds),
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            except SAIntegrityError:
                raise ConflictError(
                    f"a maintenance run of {model} has just been started by another process",
                    hint="at most one runs per model; see `modelcycle maintenance list`",
                ) from None
            self.store.add_event(
                conn,
                "maintenance.started",
                deployment,
                {"run": rid, "trigger": trigger, "champion": champion},
            )
            row = conn.execute(select(t.maintenance_runs).where(r.id == rid)).mappings().one()
        return self._run(row)

    def claim(self, run_id: int, owner: str, seconds: float) -> MaintenanceRow | None:
        """Lease a running run to ``owner`` for ``seconds`` unless another owner holds an
        unexpired lease; the run as claimed, or None."""
        r = t.maintenance_runs.c
        now = utcnow()
        with self.store.writing() as conn:
            done = conn.execute(
                update(t.maintenance_runs)
                .where(
                    r.id == run_id,
                    r.state == "running",
                    (r.lease_owner.is_(None))
                    | (r.lease_owner == owner)
                    | (r.lease_until.is_(None))
                    | (r.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=seconds))
            )
        return self.get(run_id) if done.rowcount == 1 else None

    def release(self, run_id: int, owner: str) -> None:
        r = t.maintenance_runs.c
        with self.store.writing() as conn:
            conn.execute(
                update(t.maintenance_runs)
                .where(r.id == run_id, r.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def update(
        self,
        run: MaintenanceRow,
        *,
        phase: str | None = None,
        step: dict[str, Any] | None = None,
        state: str | None = None,
        candidate: str | None = None,
        data: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> MaintenanceRow:
        """Append a step and/or change the run; a final ``state`` ends it."""
        r = t.maintenance_runs.c
        now = utcnow()
        values: dict[str, Any] = {"updated_at": now}
        if phase is not None:
            values["phase"] = phase
        if step is not None:
            values["steps"] = [*run.steps, step]
        if state is not None:
            values["state"] = state
            if state in FINAL_STATES:
                values["finished_at"] = now
        if candidate is not None:
            values["candidate"] = candidate
        if data is not None:
            values["data"] = {**run.data, **data}
        if reason is not None:
            values["reason"] = reason
        with self.store.writing() as conn:
            conn.execute(update(t.maintenance_runs).where(r.id == run.id).values(**values))
            if step is not None:
                self.store.add_event(
                    conn,
                    f"maintenance.{step['step']}",
                    run.deployment,
                    {"run": run.id, **{k: v for k, v in step.items() if k != "step"}},
                )
            if state in FINAL_STATES and (step is None or step["step"] != state):
                self.store.add_event(
                    conn,
                    f"maintenance.{state}",
                    run.deployment,
                    {"run": run.id, "candidate": candidate or run.candidate, "reason": reason},
                )
            row = conn.execute(select(t.maintenance_runs).where(r.id == run.id)).mappings().one()
        return self._run(row)
