"""One canary check: the candidate against the champion on the traffic since the canary
started.

Conditions (each is checked only when there is enough to judge, and says so otherwise):

success rate
    the candidate's share of answers that are not server errors (5xx), from the model
    server's request counters (``metrics_url``), at least ``success_rate``.
latency
    the candidate's p99 latency at most ``p99_factor`` × the champion's, from the
    server's latency histogram, or else from the prediction log (both need at least
    `MIN_LATENCY_REQUESTS` requests of each version).
accuracy
    where feedback arrived for at least `MIN_LABELS` predictions of each version, the
    candidate's accuracy at least the champion's minus ``accuracy_drop``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import StorageError

if TYPE_CHECKING:
    import polars as pl

    from modelcycle.deploy.service import DeploymentService
    from modelcycle.loop.policy import Canary

MIN_LATENCY_REQUESTS = 20
MIN_LABELS = 30


@dataclass(frozen=True)
class Condition:
    name: str
    passed: bool | None  # None: not enough data to judge
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "text": self.text}


@dataclass(frozen=True)
class CanaryCheck:
    candidate_requests: int
    champion_requests: int
    conditions: list[Condition] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.conditions)

    @property
    def reason(self) -> str:
        return "; ".join(c.text for c in self.conditions if c.passed is False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "candidate_requests": self.candidate_requests,
            "champion_requests": self.champion_requests,
            "conditions": [c.to_dict() for c in self.conditions],
        }


def analyse(
    deployments: DeploymentService,
    *,
    deployment: str,
    champion: str,
    candidate: str,
    canary: Canary,
    baseline: dict[str, Any] | None,
    since: dt.datetime,
    now: dt.datetime,
) -> CanaryCheck:
    import polars as pl

    from modelcycle.monitoring import operations

    model, _, champ_v = champion.partition("@")
    _, _, cand_v = candidate.partition("@")
    logged = deployments.predictions(deployment, since, now)
    if "route" in logged.columns:
        logged = logged.filter(pl.col("route") == "primary")
    conditions = []
    after = None
    if canary.metrics_url:
        try:
            after = operations.scrape(canary.metrics_url)
        except StorageError as e:  # the server restarting: this check cannot judge
            conditions.append(
                Condition("success_rate", None, f"could not read the server's metrics: {e}")
            )
    if after is not None:
        before = operations.Snapshot.from_dict(baseline) if baseline else None
        cand = operations.window(before, after, model=model, version=cand_v)
        champ = operations.window(before, after, model=model, version=champ_v)
        cand_requests, champ_requests = cand.requests, champ.requests
        if cand.requests == 0 or cand.error_rate is None:
            conditions.append(
                Condition("success_rate", None, "the candidate has answered no request yet")
            )
        else:
            rate = 1.0 - cand.error_rate
            ok = rate >= canary.success_rate
            conditions.append(
                Condition(
                    "success_rate",
                    ok,
                    f"candidate success rate {rate:.2%} {'≥' if ok else '<'} "
                    f"{canary.success_rate:.2%} ({cand.errors} server errors of "
                    f"{cand.requests})",
                )
            )
        cand_p99, champ_p99 = cand.p99_latency_seconds, champ.p99_latency_seconds
    else:
        cand_requests = _requests(logged, cand_v)
        champ_requests = _requests(logged, champ_v)
        cand_p99, champ_p99 = _p99(logged, cand_v), _p99(logged, champ_v)
    if min(cand_requests, champ_requests) < MIN_LATENCY_REQUESTS or not (cand_p99 and champ_p99):
        conditions.append(
            Condition(
                "latency",
                None,
                f"too few requests to compare latency ({cand_requests} candidate, "
                f"{champ_requests} champion; {MIN_LATENCY_REQUESTS} each needed)",
            )
        )
    else:
        limit = champ_p99 * canary.p99_factor
        ok = cand_p99 <= limit
        conditions.append(
            Condition(
                "latency",
                ok,
                f"candidate p99 {cand_p99 * 1000:.1f} ms {'≤' if ok else '>'} "
                f"{canary.p99_factor:g} × champion p99 {champ_p99 * 1000:.1f} ms",
            )
        )
    conditions.append(_accuracy(deployments, deployment, champ_v, cand_v, canary, since, now))
    return CanaryCheck(cand_requests, champ_requests, conditions)


def _version_rows(frame: pl.DataFrame, version: str) -> pl.DataFrame:
    import polars as pl

    if frame.height == 0:
        return frame
    return frame.filter(pl.col("version") == int(version))


def _requests(frame: pl.DataFrame, version: str) -> int:
    rows = _version_rows(frame, version)
    return int(rows["request_id"].n_unique()) if rows.height else 0


def _p99(frame: pl.DataFrame, version: str) -> float | None:
    import polars as pl

    rows = _version_rows(frame, version)
    if rows.height == 0 or "latency_ms" not in rows.columns:
        return None
    per_request = rows.group_by("request_id").agg(pl.col("latency_ms").first())
    value = per_request["latency_ms"].drop_nulls().quantile(0.99, interpolation="linear")
    return None if value is None else float(value) / 1000.0


def _accuracy(
    deployments: DeploymentService,
    deployment: str,
    champ_v: str,
    cand_v: str,
    canary: Canary,
    since: dt.datetime,
    now: dt.datetime,
) -> Condition:
    import polars as pl

    joined = deployments.feedback.join(deployment, since, now)
    if "route" in joined.columns:
        joined = joined.filter(pl.col("route") == "primary")
    scores = {}
    for v in (champ_v, cand_v):
        rows = _version_rows(joined, v)
        labelled = rows.filter(pl.col("label").is_not_null())
        if labelled.height < MIN_LABELS:
            return Condition(
                "accuracy",
                None,
                f"too little feedback to compare accuracy ({labelled.height} labels for "
                f"version {v}; {MIN_LABELS} needed)",
            )
        right = sum(
            1
            for p, y in zip(
                labelled["prediction"].to_list(), labelled["label"].to_list(), strict=True
            )
            if p == y
        )
        scores[v] = right / labelled.height
    ok = scores[cand_v] >= scores[champ_v] - canary.accuracy_drop
    return Condition(
        "accuracy",
        ok,
        f"candidate accuracy {scores[cand_v]:.3f} {'≥' if ok else '<'} champion "
        f"{scores[champ_v]:.3f} − {canary.accuracy_drop:g}",
    )
