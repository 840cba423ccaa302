"""Monitors: a deployment's logged traffic checked on a schedule, and alerts.

A monitor watches one deployment over a sliding window (``window``, e.g. the last hour)
every ``schedule`` (e.g. 15 minutes). Its checks, each giving figures that alert rules
(`modelcycle.monitoring.rules`) test:

drift
    the logged inputs against the reference dataset version, per column with the default
    tests (`modelcycle.monitoring.drift`): ``drift_share``, ``drifted_columns``,
    ``dataset_drift`` (1 or 0), ``drift.<column>`` (the column's score); and the logged
    predictions against the model's predictions on the reference: ``prediction_drift``.
performance
    realized metrics on the window's predictions that received feedback (``accuracy``,
    ``f1_macro``, ``rmse`` … as `modelcycle evaluate` names them) and ``labelled_rows``.
estimated_performance
    a classifier's ``estimated_accuracy``, ``estimated_f1`` and ``estimated_roc_auc``
    from its logged probabilities, calibrated on the reference (`estimate`).
operations
    ``requests``, ``requests_per_second``, ``p50/p95/p99_latency_seconds`` and
    ``volume_zscore`` (traffic against the monitor's own history); with ``metrics_url``
    (the model server's ``/metrics``) also ``error_rate`` and ``client_error_rate``,
    from the request counters' increase since the previous run.

A window without traffic gives status ``no_data``: rules on the missing figures neither
fire nor clear. Every run is stored (figures, breached rules, full detail as a blob) in
one transaction with the alerts it fires or resolves; alerts then go to the monitor's
channels (`modelcycle.monitoring.channels`) and always to the event log.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from modelcycle.core.durations import format_duration, parse_duration
from modelcycle.core.errors import ModelcycleError, UsageError
from modelcycle.core.hashing import hash_bytes
from modelcycle.core.text import suggest
from modelcycle.monitoring.checks import OPERATION_METRICS, Checks
from modelcycle.monitoring.rules import Rule, check_metrics, parse_rule
from modelcycle.store.metadata import utcnow
from modelcycle.store.monitors import (
    AlertChanges,
    AlertRow,
    MonitorRow,
    MonitorStore,
    NewAlert,
    ResultRow,
)

log = logging.getLogger("modelcycle.monitoring")

if TYPE_CHECKING:
    from pathlib import Path

    from modelcycle.blobs import BlobStore
    from modelcycle.data.service import DatasetService
    from modelcycle.deploy.service import DeploymentService
    from modelcycle.evaluation.service import EvaluationService
    from modelcycle.monitoring.channels import AlertDispatcher
    from modelcycle.monitoring.service import DriftService

CHECKS = ("drift", "performance", "estimated_performance", "operations")
DRIFT_METRICS = ("drift_share", "drifted_columns", "dataset_drift", "prediction_drift")
ESTIMATED_METRICS = ("estimated_accuracy", "estimated_f1", "estimated_roc_auc")
OTHER_METRICS = ("rows", "labelled_rows")
RULE_METRICS_HINT = (
    "metrics: drift_share, drifted_columns, dataset_drift, prediction_drift, drift.<column>; "
    "accuracy, f1_macro, roc_auc, rmse … and labelled_rows; estimated_accuracy, "
    "estimated_f1, estimated_roc_auc; requests, error_rate, p95_latency_seconds, "
    "p99_latency_seconds, volume_zscore; rows"
)


def shown_channels(channels: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Channels as they may be shown to any reader: type and a redacted target (no
    secrets, headers or webhook paths, which are credentials)."""
    from modelcycle.monitoring.channels import parse_channel

    return [{"type": str(c["type"]), "target": parse_channel(c).describe()} for c in channels]


def known_metric(metric: str) -> bool:
    from modelcycle.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

    return metric.startswith("drift.") or metric in {
        *DRIFT_METRICS,
        *ESTIMATED_METRICS,
        *OPERATION_METRICS,
        *OTHER_METRICS,
        *CLASSIFICATION_METRICS,
        *REGRESSION_METRICS,
    }


@dataclass(frozen=True)
class MonitorInfo:
    """A monitor as configured, with its newest result and open alerts."""

    row: MonitorRow
    last: ResultRow | None
    open_alerts: list[AlertRow]

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def rules(self) -> list[Rule]:
        return [parse_rule(r) for r in self.row.spec.get("rules", [])]

    def to_dict(self) -> dict[str, Any]:
        spec = self.row.spec
        return {
            "name": self.row.name,
            "deployment": self.row.deployment,
            "reference": self.row.reference,
            "checks": spec.get("checks", []),
            "rules": spec.get("rules", []),
            "channels": shown_channels(spec.get("channels", [])),
            "options": spec.get("options", {}),
            "schedule": format_duration(self.row.schedule_seconds),
            "window": format_duration(self.row.window_seconds),
            "next_run_at": self.row.next_run_at.isoformat(),
            "created_at": self.row.created_at.isoformat(),
            "created_by": self.row.created_by,
            "last_result": self.last.to_dict() if self.last else None,
            "open_alerts": [a.to_dict() for a in self.open_alerts],
        }


@dataclass(frozen=True)
class MonitorRun:
    """What one run of a monitor found and did."""

    monitor: str
    result: ResultRow
    fired: list[AlertRow] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.result.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            **self.result.to_dict(),
            "fired": [a.to_dict() for a in self.fired],
            "resolved": self.resolved,
        }


RecordEvent = Callable[[str, str, dict[str, Any]], None]


class MonitorService:
    """Create, run and schedule monitors; list and acknowledge their alerts."""

    def __init__(
        self,
        store: MonitorStore,
        *,
        deployments: DeploymentService,
        drift: DriftService,
        evaluations: EvaluationService,
        datasets: DatasetService,
        blobs: BlobStore,
        root: Path,
        record_event: RecordEvent,
    ) -> None:
        self.store = store
        self.root = root
        self.record_event = record_event
        self._dispatchers: dict[int, tuple[str, AlertDispatcher]] = {}
        self.deployments = deployments
        self.drift = drift
        self.evaluations = evaluations
        self.datasets = datasets
        self.blobs = blobs
        self._lock = threading.Lock()
        self.checks = Checks(
            deployments=deployments, drifts=drift, evaluations=evaluations, datasets=datasets
        )

    # -- configuring -----------------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        deployment: str,
        reference: str,
        checks: Sequence[str] | None = None,
        rules: Sequence[str | Mapping[str, Any]] = (),
        schedule: str | float = "15m",
        window: str | float = "1h",
        debounce: int = 1,
        cooldown: str | float = 0,
        severity: str = "warning",
        channels: Sequence[str | Mapping[str, Any]] = (),
        metrics_url: str | None = None,
        target: str | None = None,
        drift_share: float = 0.5,
    ) -> MonitorInfo:
        """A new monitor of ``deployment`` against the table version ``reference``
        (resolved now: ``churn@latest`` is pinned to its current number). ``checks``
        default to all that apply; ``rules`` as in `modelcycle.monitoring.rules`, with
        ``debounce``, ``cooldown`` and ``severity`` as defaults for rules that do not say;
        ``channels`` as in `modelcycle.monitoring.channels` (the event log is always one).
        The first run is due at once."""
        from modelcycle.monitoring.channels import parse_channels

        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise UsageError(
                f"monitor name {name!r} is not valid",
                hint="use letters, digits, '-', '_' and '.'",
            )
        status = self.deployments.status(deployment)  # NotFoundError names the deployments
        version = self.datasets.resolve(reference)
        if version.kind != "table":
            raise UsageError(
                f"{version.ref} is a file dataset; a monitor's reference must be a table",
                hint="give the table version the model was trained or validated on",
            )
        picked = list(checks) if checks else list(CHECKS)
        for check in picked:
            if check not in CHECKS:
                raise UsageError(
                    f"unknown check {check!r}{suggest(check, CHECKS)}",
                    hint=f"checks: {', '.join(CHECKS)}",
                )
        cooldown_seconds = parse_duration(cooldown, "cooldown")
        parsed = [
            parse_rule(r, debounce=debounce, cooldown_seconds=cooldown_seconds, severity=severity)
            for r in rules
        ]
        check_metrics(parsed, known_metric, RULE_METRICS_HINT)
        texts = [r.text for r in parsed]
        if len(set(texts)) != len(texts):
            raise UsageError("the same alert rule is given twice", hint="give each rule once")
        schedule_seconds = parse_duration(schedule, "schedule")
        window_seconds = parse_duration(window, "window")
        if schedule_seconds < 1 or window_seconds < 1:
            raise UsageError(
                "schedule and window must be at least 1 second",
                hint="e.g. --schedule 15m --window 1h",
            )
        if not 0 < drift_share <= 1:
            raise UsageError(f"drift_share is {drift_share}; it must be in (0, 1]", hint="")
        if metrics_url is not None and not metrics_url.startswith(("http://", "https://")):
            raise UsageError(
                f"metrics URL {metrics_url!r} is not http(s)",
                hint="give the model server's /metrics URL, e.g. http://127.0.0.1:8000/metrics",
            )
        if target is not None and target not in [c["name"] for c in version.schema or []]:
            raise UsageError(f"{version.ref} has no column {target!r}", hint="check --target")
        spec = {
            "checks": picked,
            "rules": [r.to_dict() for r in parsed],
            "channels": [c.to_dict() for c in parse_channels(channels)],
            "options": {
                "metrics_url": metrics_url,
                "target": target,
                "drift_share": drift_share,
                "model": status.model,
            },
        }
        self.store.create(
            name=name,
            deployment=deployment,
            reference=version.ref,
            spec=spec,
            schedule_seconds=schedule_seconds,
            window_seconds=window_seconds,
            next_run_at=utcnow(),
        )
        return self.get(name)

    def create_from_spec(self, spec: Mapping[str, Any]) -> MonitorInfo:
        """A monitor from a mapping (a YAML file's content) with the keywords of `create`
        and ``name``."""
        allowed = {
            "name",
            "deployment",
            "reference",
            "checks",
            "rules",
            "schedule",
            "window",
            "debounce",
            "cooldown",
            "severity",
            "channels",
            "metrics_url",
            "target",
            "drift_share",
        }
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise UsageError(
                f"unknown monitor key {unknown[0]!r}{suggest(unknown[0], sorted(allowed))}",
                hint=f"keys: {', '.join(sorted(allowed))}",
            )
        for key in ("name", "deployment", "reference"):
            if not spec.get(key):
                raise UsageError(f"the monitor spec has no {key!r}", hint="")
        options = {k: v for k, v in spec.items() if k != "name"}
        return self.create(str(spec["name"]), **options)

    def get(self, name: str) -> MonitorInfo:
        row = self.store.require(name)
        results = self.store.results(row.id, limit=1)
        return MonitorInfo(
            row,
            results[0] if results else None,
            self.store.alerts(monitor_id=row.id, open_only=True),
        )

    def list(self) -> list[MonitorInfo]:
        return [self.get(m.name) for m in self.store.live()]

    def delete(self, name: str) -> None:
        self.store.delete(name)

    def results(self, name: str, *, limit: int = 50) -> builtins.list[ResultRow]:
        """The newest results of a monitor, newest first."""
        return self.store.results(self.store.require(name).id, limit=limit)

    def detail(self, result: ResultRow) -> dict[str, Any]:
        """A result's full detail (drift per column, performance, estimate, operations)."""
        if result.detail_oid is None:
            return {}
        loaded: dict[str, Any] = json.loads(self.blobs.read_bytes(result.detail_oid))
        return loaded

    # -- alerts ----------------------------------------------------------------------------
    def alerts(
        self, *, monitor: str | None = None, open_only: bool = False, limit: int = 100
    ) -> builtins.list[AlertRow]:
        mid = self.store.require(monitor).id if monitor else None
        return self.store.alerts(monitor_id=mid, open_only=open_only, limit=limit)

    def acknowledge(self, alert_id: int, *, note: str | None = None) -> AlertRow:
        return self.store.acknowledge(alert_id, note=note)

    # -- running ---------------------------------------------------------------------------
    def run(self, name: str, *, now: dt.datetime | None = None) -> MonitorRun:
        """Run a monitor once over the window that ends ``now``."""
        return self._run(self.store.require(name), now or utcnow())

    def run_due(self, *, now: dt.datetime | None = None) -> builtins.list[MonitorRun]:
        """Run every monitor whose time has come (what the platform server's scheduler
        calls). A monitor that fails is recorded as an ``error`` result; the others run."""
        when = now or utcnow()
        runs = []
        for monitor in self.store.claim_due(when):
            try:  # one monitor that cannot be recorded must not hold up the others
                runs.append(self._run(monitor, when))
            except ModelcycleError as e:
                log.error("monitor %s could not run: %s", monitor.name, e)
        return runs

    def _run(self, monitor: MonitorRow, now: dt.datetime) -> MonitorRun:
        started = utcnow()
        since = now - dt.timedelta(seconds=monitor.window_seconds)
        rules = [parse_rule(r) for r in monitor.spec.get("rules", [])]
        depth = max([50, *(r.debounce for r in rules)])  # enough for the longest `for`
        history = self.store.results(monitor.id, limit=depth)
        values: dict[str, Any] = {}
        detail: dict[str, Any] = {}
        snapshot: dict[str, Any] | None = None
        error = None
        rows = 0
        try:
            frame = self.checks.window(monitor.deployment, since, now)
            rows = frame.height
            values["rows"] = rows
            checks = monitor.spec.get("checks", CHECKS)
            if "operations" in checks:
                snapshot = self.checks.operations(monitor, frame, history, values, detail)
            if rows and "drift" in checks:
                self.checks.drift(monitor, frame, values, detail)
            if "performance" in checks:
                self.checks.performance(monitor, since, now, values, detail)
            if rows and "estimated_performance" in checks:
                self.checks.estimate(monitor, frame, values, detail)
        except ModelcycleError as e:
            error = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - recorded as the result's error: a bug in one
            # check must not stop the scheduler or the other monitors
            error = f"unexpected {type(e).__name__}: {e}"
        breaches, changes = decide(
            rules, values, history, self.store.last_alerts(monitor.id), now, monitor
        )
        if error is not None:
            status = "error"
        elif rows == 0 and not values.get("requests"):
            status = "no_data"
        else:
            status = "breach" if breaches else "ok"
        detail_oid = None
        if detail:
            payload = orjson.dumps(
                detail,
                default=_jsonable,
                option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
            )
            detail_oid = hash_bytes(payload)
            with self.blobs.batch() as batch:
                batch.put_bytes(payload, detail_oid)
        result, fired = self.store.add_result(
            monitor,
            started_at=started,
            window_start=since,
            window_end=now,
            status=status,
            rows=rows,
            values=_clean(values),
            breaches=breaches,
            detail_oid=detail_oid,
            snapshot=snapshot,
            error=error,
            changes=changes,
            at=now,
        )
        for alert in fired:
            self._dispatcher(monitor).deliver(alert_payload(alert, result))
        return MonitorRun(monitor.name, result, fired, list(changes.resolve), detail)

    # -- delivering ------------------------------------------------------------------------
    def _dispatcher(self, monitor: MonitorRow) -> AlertDispatcher:
        """The monitor's channels (kept while its channel settings stay the same)."""
        from modelcycle.monitoring.channels import AlertDispatcher, parse_channels

        channels = monitor.spec.get("channels", [])
        key = json.dumps(channels, sort_keys=True)
        with self._lock:
            held = self._dispatchers.get(monitor.id)
            if held is not None and held[0] == key:
                return held[1]
            name = monitor.name

            def failed(failure: Any) -> None:
                self.record_event("alert.delivery_failed", name, failure.to_dict())

            dispatcher = AlertDispatcher(
                parse_channels(channels),
                base_dir=self.root,
                record_event=self.record_event,
                on_failure=failed,
            )
            if held is not None:
                held[1].close(timeout=0.0)
            self._dispatchers[monitor.id] = (key, dispatcher)
            return dispatcher

    def announce(self, name: str, payload: Mapping[str, Any]) -> None:
        """Send a notice that is not an alert (the end of a maintenance run) to a
        monitor's channels, shaped like an alert so every channel can show it."""
        monitor = self.store.require(name)
        deployment = payload.get("deployment", monitor.deployment)
        if monitor.deployment != deployment:  # the name was taken again, elsewhere
            log.warning(
                "not announcing maintenance of %s to monitor %s, which now watches %s",
                deployment,
                name,
                monitor.deployment,
            )
            return
        state = str(payload.get("state", "notice"))
        self._dispatcher(monitor).deliver(
            {
                "id": f"maintenance-{payload.get('run')}",
                "monitor": name,
                "deployment": deployment,
                "rule": f"maintenance run {payload.get('run')}",
                "state": state,
                "severity": "info" if state == "promoted" else "critical",
                "message": str(payload.get("reason") or state),
                "fired_at": utcnow().isoformat(),
                "evidence": {"summary": f"maintenance {state}", "show": payload.get("show")},
                "maintenance": dict(payload),
            }
        )

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what the channels still hold (for at most ``timeout`` seconds)."""
        with self._lock:
            held = [d for _, d in self._dispatchers.values()]
            self._dispatchers.clear()
        for dispatcher in held:
            dispatcher.close(timeout=timeout)


def decide(
    rules: Sequence[Rule],
    values: Mapping[str, Any],
    history: Sequence[ResultRow],
    last_alerts: Mapping[str, AlertRow],
    now: dt.datetime,
    monitor: MonitorRow,
) -> tuple[list[str], AlertChanges]:
    """Which rules the figures breach, and the alerts that fire, stay open or resolve.

    ``history`` is the monitor's earlier results, newest first. A rule fires when it is
    breached now and in the ``debounce - 1`` results before (a result without a value
    for the metric breaks the run), no alert of it is open, and its last alert fired at
    least ``cooldown`` ago. An open alert resolves when a result has the figure and it
    no longer breaches.
    """
    breaches: list[str] = []
    changes = AlertChanges()
    for rule in rules:
        value = values.get(rule.metric)
        verdict = rule.breached(value)
        last = last_alerts.get(rule.text)
        open_alert = last if last is not None and last.resolved_at is None else None
        if verdict is None:
            continue
        if not verdict:
            if open_alert is not None:
                changes.resolve.append(open_alert.id)
            continue
        breaches.append(rule.text)
        if open_alert is not None:
            changes.still_open.append(open_alert.id)
            continue
        streak = 1
        for past in history:
            if streak >= rule.debounce or rule.text not in past.breaches:
                break
            streak += 1
        if streak < rule.debounce:
            continue
        if last is not None and (now - last.fired_at).total_seconds() < rule.cooldown_seconds:
            continue
        changes.fire.append(
            NewAlert(
                rule=rule.text,
                metric=rule.metric,
                op=rule.op,
                threshold=rule.threshold,
                value=float(value) if value is not None else None,
                severity=rule.severity,
                message=rule.message(
                    None if value is None else float(value), monitor.name, monitor.deployment
                ),
            )
        )
    return breaches, changes


def alert_payload(alert: AlertRow, result: ResultRow) -> dict[str, Any]:
    """What channels receive for a fired alert: the alert and its evidence."""
    return {
        **alert.to_dict(),
        "evidence": {
            "result_id": result.id,
            "status": result.status,
            "window": [result.window_start.isoformat(), result.window_end.isoformat()],
            "rows": result.rows,
            "values": {k: v for k, v in result.values.items() if not k.startswith("drift.")},
            "breaches": result.breaches,
            "show": f"modelcycle monitor show {alert.monitor} --result {result.id}",
        },
    }


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Figures as JSON numbers: NaN and infinities become null."""
    import math

    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            out[key] = None
            continue
        number = float(value)
        out[key] = number if math.isfinite(number) else None
    return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)
