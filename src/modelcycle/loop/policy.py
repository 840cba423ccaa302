"""A deployment's maintenance policy: when to retrain, how, and how to roll out.

.. code-block:: yaml

    trigger:                      # which alerts start a maintenance run
      monitors: [churn-watch]     # default: every monitor of the deployment
      rules: ["drift_share > 0.3"]  # default: any rule
    retrain:
      train: train.yaml           # a train spec (a path, or the mapping itself)
      feedback: true              # first add the window's feedback-labelled traffic to
      feedback_window: 7d         #   the spec's training dataset, as a new version
    evaluate:
      data: churn-test@1          # the pinned test set
      gate: gate.yaml             # a gate policy (a path, or the mapping itself)
    canary:
      weight: 10                  # % of traffic for the candidate
      min_requests: 200           # the candidate's requests before it can be promoted
      max_duration: 30m           # not enough traffic by then: rolled back
      interval: 30s               # time between two checks
      success_rate: 0.99          # candidate's share of non-5xx answers, at least
      p99_factor: 1.2             # candidate's p99 latency ≤ champion's × this
      accuracy_drop: 0.05         # with feedback: candidate accuracy ≥ champion's − this
      max_failed_checks: 3        # this many failed checks: rolled back
      metrics_url: http://127.0.0.1:8000/metrics   # the server's metrics (success rate)
    promote:
      alias: champion             # the alias that moves to the candidate
      stage: production           # and the stage it moves to (none: leave it)
    min_interval: 1h              # least time between two runs' starts

The defaults follow Flagger's: a 99 % success rate, p99 within 1.2 × the baseline,
rollback after a few failed checks. Paths are relative to the workspace root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelcycle.core.durations import format_duration, parse_duration
from modelcycle.core.errors import NotFoundError, UsageError
from modelcycle.core.text import suggest

SECTIONS = ("trigger", "retrain", "evaluate", "canary", "promote", "min_interval")
TRIGGER_KEYS = ("monitors", "rules")
RETRAIN_KEYS = ("train", "feedback", "feedback_window")
EVALUATE_KEYS = ("data", "gate")
CANARY_KEYS = (
    "weight",
    "min_requests",
    "max_duration",
    "interval",
    "success_rate",
    "p99_factor",
    "accuracy_drop",
    "max_failed_checks",
    "metrics_url",
)
PROMOTE_KEYS = ("alias", "stage")


@dataclass(frozen=True)
class Canary:
    weight: float = 10.0
    min_requests: int = 200
    max_duration_seconds: float = 1800.0
    interval_seconds: float = 30.0
    success_rate: float = 0.99
    p99_factor: float = 1.2
    accuracy_drop: float = 0.05
    max_failed_checks: int = 3
    metrics_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "min_requests": self.min_requests,
            "max_duration": format_duration(self.max_duration_seconds),
            "interval": format_duration(self.interval_seconds),
            "success_rate": self.success_rate,
            "p99_factor": self.p99_factor,
            "accuracy_drop": self.accuracy_drop,
            "max_failed_checks": self.max_failed_checks,
            "metrics_url": self.metrics_url,
        }


@dataclass(frozen=True)
class Policy:
    train: dict[str, Any]  # the train spec as a mapping
    test_data: str
    gate: dict[str, Any]  # the gate policy as a mapping
    monitors: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    feedback: bool = True
    feedback_window_seconds: float = 7 * 86400.0
    canary: Canary = field(default_factory=Canary)
    alias: str = "champion"
    stage: str | None = "production"
    min_interval_seconds: float = 3600.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": {"monitors": list(self.monitors), "rules": list(self.rules)},
            "retrain": {
                "train": self.train,
                "feedback": self.feedback,
                "feedback_window": format_duration(self.feedback_window_seconds),
            },
            "evaluate": {"data": self.test_data, "gate": self.gate},
            "canary": self.canary.to_dict(),
            "promote": {"alias": self.alias, "stage": self.stage},
            "min_interval": format_duration(self.min_interval_seconds),
        }

    @classmethod
    def from_dict(cls, data: Any, *, base: Path, where: str = "policy") -> Policy:
        """Read and check a policy; ``base`` is where relative paths start."""
        section = _mapping(data, where, SECTIONS)
        trigger = _mapping(section.get("trigger", {}), f"{where}: trigger", TRIGGER_KEYS)
        retrain = _mapping(section.get("retrain"), f"{where}: retrain", RETRAIN_KEYS)
        evaluate = _mapping(section.get("evaluate"), f"{where}: evaluate", EVALUATE_KEYS)
        canary = _mapping(section.get("canary", {}), f"{where}: canary", CANARY_KEYS)
        promote = _mapping(section.get("promote", {}), f"{where}: promote", PROMOTE_KEYS)
        for key, part in (("train", retrain), ("data", evaluate), ("gate", evaluate)):
            if key not in part:
                raise UsageError(f"{where} has no {key!r}", hint=_HINT)
        stage = promote.get("stage", "production")
        if stage not in (None, "staging", "production"):
            raise UsageError(
                f"{where}: promote.stage is {stage!r}",
                hint="staging, production, or null to leave the stage alone",
            )
        return cls(
            train=_load(retrain["train"], base, f"{where}: retrain.train"),
            test_data=str(evaluate["data"]),
            gate=_load(evaluate["gate"], base, f"{where}: evaluate.gate"),
            monitors=tuple(str(m) for m in _list(trigger.get("monitors", []), "monitors")),
            rules=tuple(str(r) for r in _list(trigger.get("rules", []), "rules")),
            feedback=bool(retrain.get("feedback", True)),
            feedback_window_seconds=parse_duration(
                retrain.get("feedback_window", "7d"), "retrain.feedback_window"
            ),
            canary=_canary(canary, where),
            alias=str(promote.get("alias", "champion")),
            stage=stage,
            min_interval_seconds=parse_duration(section.get("min_interval", "1h"), "min_interval"),
        )

    @classmethod
    def load(cls, path: str | Path, *, base: Path) -> Policy:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(f"{p} does not exist", hint="check the policy's path") from None
        except yaml.YAMLError as e:
            raise UsageError(f"{p} is not valid YAML: {e}", hint="fix the YAML") from None
        return cls.from_dict(data, base=p.parent if p.parent != Path() else base, where=str(p))


_HINT = "a policy needs retrain.train, evaluate.data and evaluate.gate; see `modelcycle maintenance policy --help`"


def _mapping(data: Any, where: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if data is None:
        raise UsageError(f"{where} is missing", hint=_HINT)
    if not isinstance(data, Mapping):
        raise UsageError(f"{where} must be a mapping", hint=_HINT)
    for key in data:
        if key not in keys:
            raise UsageError(
                f"{where}: unknown key {key!r}{suggest(str(key), keys)}",
                hint=f"keys: {', '.join(keys)}",
            )
    return data


def _list(value: Any, what: str) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise UsageError(f"trigger.{what} must be a list", hint="e.g. [churn-watch]")
    return value


def _load(value: Any, base: Path, where: str) -> dict[str, Any]:
    """A mapping given inline, or the YAML file it names."""
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise UsageError(f"{where} must be a path or a mapping", hint=_HINT)
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"{where}: {path} does not exist", hint="check the path") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{where}: {path} is not valid YAML: {e}", hint="fix the YAML") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: {path} does not hold a mapping", hint=_HINT)
    return data


def _canary(part: Mapping[str, Any], where: str) -> Canary:
    def number(key: str, default: float, low: float, high: float) -> float:
        value = part.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (low <= value <= high)
        ):
            raise UsageError(
                f"{where}: canary.{key} is {value!r}; it must be a number in [{low:g}, {high:g}]",
                hint="see the policy's defaults in `modelcycle maintenance policy --help`",
            )
        return float(value)

    url = part.get("metrics_url")
    if url is not None and not str(url).startswith(("http://", "https://")):
        raise UsageError(
            f"{where}: canary.metrics_url {url!r} is not http(s)",
            hint="the model server's /metrics, e.g. http://127.0.0.1:8000/metrics",
        )
    weight = number("weight", 10.0, 0.0, 100.0)
    if weight in (0.0, 100.0):
        raise UsageError(
            f"{where}: canary.weight is {weight:g}; it must be between 0 and 100",
            hint="a canary takes a slice of the traffic, e.g. 10",
        )
    return Canary(
        weight=weight,
        min_requests=int(number("min_requests", 200, 1, 1e9)),
        max_duration_seconds=parse_duration(part.get("max_duration", "30m"), "max_duration"),
        interval_seconds=parse_duration(part.get("interval", "30s"), "canary.interval"),
        success_rate=number("success_rate", 0.99, 0.0, 1.0),
        p99_factor=number("p99_factor", 1.2, 1.0, 1e6),
        accuracy_drop=number("accuracy_drop", 0.05, 0.0, 1.0),
        max_failed_checks=int(number("max_failed_checks", 3, 1, 1e6)),
        metrics_url=None if url is None else str(url),
    )
