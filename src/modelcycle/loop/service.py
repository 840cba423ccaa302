"""The closed loop: alert → retrain → evaluate and gate → canary → promote or roll back.

`MaintenanceService.tick` is what the platform server's scheduler calls: it starts a
maintenance run for each deployment whose policy's trigger matches a new open alert,
and advances every running run as far as it can go now. A run goes through:

retrain
    when the policy says so, the window's feedback-labelled traffic is appended to the
    train spec's dataset as a new version; the spec is trained on it and the result is
    registered as the next version of the deployment's model (the candidate).
gate
    the candidate is evaluated on the pinned test set and checked against the gate
    (thresholds, change against the champion, slices). Refused: the run ends there.
canary
    the deployment routes ``weight`` % of its traffic to the candidate; every
    ``interval`` the candidate is compared with the champion on the traffic since the
    canary started (success rate, p99 latency, and accuracy where feedback exists).
    ``max_failed_checks`` failed checks, or too little traffic by ``max_duration``:
    rolled back (the routes are restored). ``min_requests`` answered with no more
    failed checks than that: promoted (the alias moves, the routes are restored, and a
    server following the alias hot-swaps to the candidate).

Every step, decision and reason is recorded on the run and in the event log. A failure
anywhere ends the run as ``failed`` with the champion serving as before (a canary in
progress is rolled back first), and is notified like the end of any run.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import logging
import math
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import ConflictError, ModelcycleError, NotFoundError, UsageError
from modelcycle.loop.policy import Policy
from modelcycle.store.maintenance import MaintenanceRow, MaintenanceStore, PolicyRow
from modelcycle.store.metadata import utcnow

if TYPE_CHECKING:
    from modelcycle.data.service import DatasetService
    from modelcycle.deploy.service import DeploymentService
    from modelcycle.evaluation.service import EvaluationService
    from modelcycle.monitoring.monitors import MonitorService
    from modelcycle.registry import RegistryService
    from modelcycle.store.monitors import AlertRow
    from modelcycle.training.service import TrainingService
    from modelcycle.training.spec import TrainSpec

log = logging.getLogger("modelcycle.loop")

Notify = Callable[[str, str, Mapping[str, Any]], None]
# How long a process may take to move a run on (a retrain included) before another
# process may take the run over; a lease is released as soon as its step is done.
LEASE_SECONDS = 3600.0


class MaintenanceService:
    def __init__(
        self,
        store: MaintenanceStore,
        *,
        root: Path,
        monitors: MonitorService,
        deployments: DeploymentService,
        registry: RegistryService,
        evaluations: EvaluationService,
        training: TrainingService,
        datasets: DatasetService,
        notify: Notify | None = None,
    ) -> None:
        self.store = store
        self.root = root
        self.monitors = monitors
        self.deployments = deployments
        self.registry = registry
        self.evaluations = evaluations
        self.training = training
        self.datasets = datasets
        self.notify = notify
        # Who advances runs: one process (one service) at a time holds a run's lease.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- policies --------------------------------------------------------------------------
    def set_policy(
        self, deployment: str, policy: Policy | Mapping[str, Any] | str | Path
    ) -> Policy:
        """Set the deployment's policy (a `Policy`, a mapping, or a YAML file), after
        checking everything it names exists."""
        from modelcycle.evaluation.gates import GatePolicy
        from modelcycle.training.spec import TrainSpec

        if isinstance(policy, str | Path):
            policy = Policy.load(policy, base=self.root)
        elif not isinstance(policy, Policy):
            policy = Policy.from_dict(policy, base=self.root)
        self.deployments.status(deployment)
        spec = TrainSpec.from_dict(policy.train, "retrain.train")
        self.datasets.resolve(spec.train)
        GatePolicy.from_dict(policy.gate, source="evaluate.gate")
        self.datasets.resolve(policy.test_data)
        known = {m.name for m in self.monitors.store.live()}
        for name in policy.monitors:
            if name not in known:
                raise NotFoundError(
                    f"trigger.monitors names {name!r}, which is not a monitor",
                    hint="create it first with `modelcycle monitor create`",
                )
        self.store.set_policy(deployment, policy.to_dict())
        return policy

    def policy(self, deployment: str) -> Policy:
        row = self._policy_row(deployment)
        return Policy.from_dict(row.spec, base=self.root)

    def _policy_row(self, deployment: str) -> PolicyRow:
        row = self.store.policy(deployment)
        if row is None:
            raise NotFoundError(
                f"deployment {deployment!r} has no maintenance policy",
                hint=f"set one with `modelcycle maintenance policy {deployment} --file policy.yaml`",
            )
        return row

    def delete_policy(self, deployment: str) -> None:
        self.store.delete_policy(deployment)

    def policies(self) -> builtins.list[PolicyRow]:
        return self.store.policies()

    # -- runs ------------------------------------------------------------------------------
    def list(
        self, *, deployment: str | None = None, limit: int = 50
    ) -> builtins.list[MaintenanceRow]:
        return self.store.runs(deployment=deployment, limit=limit)

    def get(self, run_id: int) -> MaintenanceRow:
        return self.store.require(run_id)

    def start(
        self,
        deployment: str,
        *,
        trigger: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> MaintenanceRow:
        """Start a maintenance run of ``deployment`` now (by hand, or for an alert), and
        advance it as far as it goes. ConflictError when one is running for the model
        or the last one started less than the policy's ``min_interval`` ago."""
        when = now or utcnow()
        policy = self.policy(deployment)
        status = self.deployments.status(deployment)
        run = self.store.start(
            deployment=deployment,
            model=status.model,
            trigger=dict(trigger or {"by": "hand"}),
            policy=policy.to_dict(),
            champion=self._main_version(deployment),
            min_interval_seconds=policy.min_interval_seconds,
            now=when,
            lease_owner=self.owner,
            lease_seconds=LEASE_SECONDS,
        )
        return self.advance(run, now=when)

    def tick(self, *, now: dt.datetime | None = None) -> builtins.list[MaintenanceRow]:
        """Start runs for new matching alerts, then advance every running run."""
        when = now or utcnow()
        touched: dict[int, MaintenanceRow] = {}
        for row in self.store.policies():
            alert = self._new_alert(row)
            if alert is None:
                continue
            try:
                run = self.start(
                    row.deployment,
                    trigger={
                        "alert": alert.id,
                        "monitor": alert.monitor,
                        "rule": alert.rule,
                        "value": alert.value,
                    },
                    now=when,
                )
            except ConflictError as e:
                log.info("maintenance of %s not started: %s", row.deployment, e.message)
                continue
            except ModelcycleError as e:
                log.error("maintenance of %s could not start: %s", row.deployment, e)
                continue
            touched[run.id] = run
        for run in self.store.runs(running=True, limit=1000):
            if run.id not in touched:
                touched[run.id] = self.advance(run, now=when)
        return list(touched.values())

    def _new_alert(self, row: PolicyRow) -> AlertRow | None:
        """The newest open alert matching the policy that no run was started for."""
        policy = Policy.from_dict(row.spec, base=self.root)
        handled = [
            int(r.trigger["alert"])
            for r in self.store.runs(deployment=row.deployment, limit=1000)
            if isinstance(r.trigger.get("alert"), int)
        ]
        after = max(handled, default=0)
        monitors = set(policy.monitors) or {
            m.name for m in self.monitors.store.live() if m.deployment == row.deployment
        }
        for alert in self.monitors.store.alerts(open_only=True, limit=1000):
            # By name and deployment: a monitor's name may be taken again, elsewhere.
            if alert.id <= after or alert.monitor not in monitors:
                continue
            if alert.deployment != row.deployment:
                continue
            if policy.rules and alert.rule not in policy.rules:
                continue
            return alert
        return None

    # -- advancing a run -------------------------------------------------------------------
    def advance(self, run: MaintenanceRow, *, now: dt.datetime | None = None) -> MaintenanceRow:
        """Take ``run`` as far as it can go now; it waits only in its canary. A run that
        another process is moving on is returned as it is."""
        claimed = self.store.claim(run.id, self.owner, LEASE_SECONDS)
        if claimed is None:
            return self.store.require(run.id)
        try:
            return self._advance(claimed, now or utcnow())
        finally:
            self.store.release(run.id, self.owner)

    def _advance(self, run: MaintenanceRow, when: dt.datetime) -> MaintenanceRow:
        steps = {"start": self._retrain, "retrain": self._gate, "gate": self._start_canary}
        while run.running:
            try:
                if run.phase in steps:
                    run = steps[run.phase](run, when)
                elif run.phase == "canary":
                    run = self._check_canary(run, when)
                    if run.running:
                        break  # the next check is due later
                else:
                    raise UsageError(f"maintenance run {run.id} is in unknown phase {run.phase}")
            except ModelcycleError as e:
                run = self._fail(run, f"{type(e).__name__}: {e.message}")
            except Exception as e:  # logged; the run ends as failed, the champion safe
                log.exception("maintenance run %s failed", run.id)
                run = self._fail(run, f"unexpected {type(e).__name__}: {e}")
        return run

    def _retrain(self, run: MaintenanceRow, now: dt.datetime) -> MaintenanceRow:
        from modelcycle.training.spec import TrainSpec

        policy = Policy.from_dict(run.policy, base=self.root)
        spec = TrainSpec.from_dict(policy.train, "retrain.train")
        base_ref, added = spec.train, 0
        if policy.feedback:
            fresh, added = self._with_feedback(run, spec, policy, now)
            if fresh is not None:
                spec = dataclasses.replace(spec, train=fresh)
        result = self.training.train(spec)
        version = self.registry.register(result.run_id, run.model)
        return self.store.update(
            run,
            phase="retrain",
            candidate=version.ref,
            step={
                "step": "retrained",
                "at": now.isoformat(),
                "candidate": version.ref,
                "run": result.run_id,
                "data": spec.train,
                "base_data": base_ref,
                "feedback_rows": added,
                "metrics": {k: v for k, v in result.metrics.items() if math.isfinite(v)},
            },
        )

    def _with_feedback(
        self, run: MaintenanceRow, spec: TrainSpec, policy: Policy, now: dt.datetime
    ) -> tuple[str | None, int]:
        """Append the window's feedback-labelled traffic to the training data as a new
        version of its dataset; (the new ref, rows added), or (None, 0) when there is
        none. Columns the spec does not train on (``exclude``, an ``id``) may be missing
        from the logged inputs: they are left empty in the new rows."""
        import pandas as pd
        import polars as pl

        from modelcycle.deploy.segments import INPUT_PREFIX

        since = now - dt.timedelta(seconds=policy.feedback_window_seconds)
        joined = self.deployments.feedback.join(run.deployment, since, now)
        if "route" in joined.columns:
            joined = joined.filter(pl.col("route") == "primary")
        joined = joined.filter(pl.col("label").is_not_null())
        if joined.height == 0:
            return None, 0
        base = self.datasets.resolve(spec.train)
        frame = self.datasets.to_pandas(base)
        target = spec.target
        inputs = {c[len(INPUT_PREFIX) :]: c for c in joined.columns if c.startswith(INPUT_PREFIX)}
        used = list(spec.features or [c for c in frame.columns if c not in spec.exclude])
        missing = [c for c in used if c != target and c not in inputs]
        if missing:
            raise UsageError(
                f"the logged traffic of {run.deployment} lacks column(s) {', '.join(missing)} "
                f"of {base.ref}, so its feedback cannot be added to the training data",
                hint="log whole records, or set retrain.feedback: false in the policy",
            )
        new = joined.select(
            [pl.col(inputs[c]).alias(c) for c in frame.columns if c in inputs and c != target]
            + [pl.col("label").alias(target)]
        ).to_pandas()
        present = list(new.columns)
        new = new.astype({c: frame[c].dtype for c in present})
        for column in frame.columns:
            if column in present:
                continue
            if pd.api.types.is_integer_dtype(frame[column].dtype):  # nullable, stays integer
                frame[column] = frame[column].astype("Int64")
            new[column] = pd.Series([None] * len(new), dtype=frame[column].dtype)
        new = new[list(frame.columns)]
        combined = pd.concat([frame, new], ignore_index=True)
        with tempfile.TemporaryDirectory(prefix="modelcycle-loop-") as tmp:
            path = Path(tmp) / f"{base.dataset}.parquet"
            combined.to_parquet(path, index=False)
            added = self.datasets.add(
                base.dataset,
                path,
                message=f"maintenance run {run.id}: {base.ref} + {len(new)} feedback-labelled "
                f"rows of {run.deployment}",
                source=f"{base.ref} + feedback-labelled traffic of deployment "
                f"{run.deployment} ({since.isoformat(timespec='seconds')} to "
                f"{now.isoformat(timespec='seconds')}), maintenance run {run.id}",
            )
        return added.version.ref, len(new)

    def _gate(self, run: MaintenanceRow, now: dt.datetime) -> MaintenanceRow:
        from modelcycle.evaluation.gates import GatePolicy

        policy = Policy.from_dict(run.policy, base=self.root)
        assert run.candidate is not None
        verdict = self.evaluations.gate(
            run.candidate,
            GatePolicy.from_dict(policy.gate, source="evaluate.gate"),
            policy.test_data,
        )
        step = {"step": "gated", "at": now.isoformat(), **verdict.to_dict()}
        if not verdict.passed:
            failed = "; ".join(
                f"{c.metric or c.kind}: needs {c.requirement}, got {c.observed}"
                for c in verdict.failed
            )
            run = self.store.update(
                run,
                phase="gate",
                step=step,
                state="refused",
                reason=f"the gate refused {run.candidate}: {failed}",
            )
            self._announce(run)
            return run
        return self.store.update(run, phase="gate", step=step)

    def _start_canary(self, run: MaintenanceRow, now: dt.datetime) -> MaintenanceRow:
        from modelcycle.monitoring import operations

        policy = Policy.from_dict(run.policy, base=self.root)
        status = self.deployments.status(run.deployment)
        original = [[r.ref, r.weight] for r in status.routes]
        champion = self._main_version(run.deployment)
        if champion is None:
            raise ConflictError(
                f"deployment {run.deployment} has no route that resolves to a version",
                hint="fix its routes with `modelcycle deploy route`",
            )
        assert run.candidate is not None
        weight = policy.canary.weight
        baseline = None
        if policy.canary.metrics_url:
            baseline = operations.scrape(policy.canary.metrics_url).to_dict()
        self.deployments.route(
            run.deployment,
            {champion: 100.0 - weight, run.candidate: weight},
            reason=f"maintenance run {run.id}: canary of {run.candidate} at {weight:g}%",
        )
        return self.store.update(
            run,
            phase="canary",
            data={
                "original_routes": original,
                "champion": champion,
                "canary_started_at": now.isoformat(),
                "next_check_at": (
                    now + dt.timedelta(seconds=policy.canary.interval_seconds)
                ).isoformat(),
                "baseline": baseline,
                "checks": 0,
                "failed_checks": 0,
            },
            step={
                "step": "canary_started",
                "at": now.isoformat(),
                "champion": champion,
                "candidate": run.candidate,
                "weight": weight,
            },
        )

    def _check_canary(self, run: MaintenanceRow, now: dt.datetime) -> MaintenanceRow:
        from modelcycle.loop.canary import analyse

        if now < dt.datetime.fromisoformat(run.data["next_check_at"]):
            return run
        policy = Policy.from_dict(run.policy, base=self.root)
        started = dt.datetime.fromisoformat(run.data["canary_started_at"])
        assert run.candidate is not None
        check = analyse(
            self.deployments,
            deployment=run.deployment,
            champion=run.data["champion"],
            candidate=run.candidate,
            canary=policy.canary,
            baseline=run.data.get("baseline"),
            since=started,
            now=now,
        )
        failed = run.data["failed_checks"] + (0 if check.passed else 1)
        checks = run.data["checks"] + 1
        step = {"step": "canary_check", "at": now.isoformat(), "n": checks, **check.to_dict()}
        data = {
            "checks": checks,
            "failed_checks": failed,
            "next_check_at": (
                now + dt.timedelta(seconds=policy.canary.interval_seconds)
            ).isoformat(),
        }
        run = self.store.update(run, step=step, data=data)
        if failed >= policy.canary.max_failed_checks:
            return self._rollback(
                run, now, f"{failed} failed canary check(s): {check.reason or 'see the steps'}"
            )
        if check.candidate_requests >= policy.canary.min_requests:
            return self._promote(run, now, check.candidate_requests, failed)
        if (now - started).total_seconds() >= policy.canary.max_duration_seconds:
            return self._rollback(
                run,
                now,
                f"the candidate answered {check.candidate_requests} requests in "
                f"{(now - started).total_seconds():.0f} s, fewer than min_requests "
                f"({policy.canary.min_requests}) before max_duration",
            )
        return run

    def _restore_routes(self, run: MaintenanceRow, reason: str) -> None:
        original = run.data.get("original_routes")
        if original:
            self.deployments.route(run.deployment, {ref: w for ref, w in original}, reason=reason)

    def _promote(
        self, run: MaintenanceRow, now: dt.datetime, requests: int, failed: int
    ) -> MaintenanceRow:
        policy = Policy.from_dict(run.policy, base=self.root)
        assert run.candidate is not None
        candidate = self.registry.resolve(run.candidate)
        reason = f"maintenance run {run.id}: canary passed"
        if policy.stage is not None and candidate.stage != policy.stage:
            self.registry.transition(candidate.ref, policy.stage, reason=reason)
        before = self._alias_version(run.model, policy.alias)
        self.registry.set_alias(run.model, policy.alias, candidate.version, reason=reason)
        original = run.data.get("original_routes") or []
        try:
            if any(_is_alias_ref(ref) for ref, _ in original):
                self._restore_routes(run, reason)
            else:  # routes named versions: send everything to the candidate
                self.deployments.route(run.deployment, {candidate.ref: 100.0}, reason=reason)
        except ModelcycleError:
            # The routes did not change: put the alias back so the run's failure leaves
            # the champion serving, as it says.
            if before is not None:
                self.registry.set_alias(
                    run.model, policy.alias, before, reason=f"maintenance run {run.id}: undone"
                )
            raise
        run = self.store.update(
            run,
            phase="done",
            state="promoted",
            step={
                "step": "promoted",
                "at": now.isoformat(),
                "candidate": candidate.ref,
                "alias": policy.alias,
                "stage": policy.stage,
                "canary_requests": requests,
                "failed_checks": failed,
            },
            reason=f"{candidate.ref} passed its canary ({requests} requests, {failed} failed "
            f"check(s)) and is now {policy.alias}",
        )
        self._announce(run)
        return run

    def _rollback(self, run: MaintenanceRow, now: dt.datetime, reason: str) -> MaintenanceRow:
        self._restore_routes(run, f"maintenance run {run.id}: rolled back")
        run = self.store.update(
            run,
            phase="done",
            state="rolled_back",
            step={"step": "rolled_back", "at": now.isoformat(), "reason": reason},
            reason=reason,
        )
        self._announce(run)
        return run

    def _fail(self, run: MaintenanceRow, reason: str) -> MaintenanceRow:
        """End ``run`` as failed, with the champion serving as before."""
        note = reason
        if run.phase == "canary":
            try:
                self._restore_routes(run, f"maintenance run {run.id}: failed, routes restored")
            except ModelcycleError as e:
                note += f"; restoring the routes failed too: {e.message}"
        run = self.store.update(
            run,
            state="failed",
            step={"step": "failed", "at": utcnow().isoformat(), "phase": run.phase, "reason": note},
            reason=note,
        )
        self._announce(run)
        return run

    def _announce(self, run: MaintenanceRow) -> None:
        """Tell the workspace's webhooks and the triggering monitor's channels."""
        payload = {
            "run": run.id,
            "deployment": run.deployment,
            "state": run.state,
            "champion": run.champion,
            "candidate": run.candidate,
            "reason": run.reason,
            "show": f"modelcycle maintenance show {run.id}",
        }
        if self.notify is not None:
            self.notify(f"maintenance.{run.state}", run.deployment, payload)
        monitor = run.trigger.get("monitor")
        if monitor:
            try:
                self.monitors.announce(str(monitor), payload)
            except ModelcycleError as e:
                log.error("could not notify monitor %s's channels: %s", monitor, e)

    # -- helpers ---------------------------------------------------------------------------
    def _alias_version(self, model: str, alias: str) -> int | None:
        try:
            return self.registry.resolve(f"{model}@{alias}").version
        except ModelcycleError:
            return None

    def _main_version(self, deployment: str) -> str | None:
        status = self.deployments.status(deployment)
        routes = [r for r in status.routes if r.version is not None and r.weight]
        if not routes:
            return None
        best = max(routes, key=lambda r: r.weight or 0.0)
        return f"{status.model}@{best.version}"


def _is_alias_ref(ref: str) -> bool:
    _, _, tail = ref.partition("@")
    return bool(tail) and not tail.isdigit()
