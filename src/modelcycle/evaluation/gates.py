"""Promotion gates: declared conditions a candidate's evaluation must meet.

A gate file (YAML)::

    thresholds:                 # absolute bounds on the candidate's metrics
      roc_auc: {min: 0.90}
      log_loss: {max: 0.35}
    champion:                   # improvement over the version the alias/stage points at
      roc_auc: {min_absolute_change: 0.01}
      f1_macro: {min_relative_change: 0.0, greater_is_better: true}
    slices:                     # no slice may get worse than this against the champion
      by: [region, "filter:age > 60"]
      max_regression: {accuracy: 0.05}
    validation: rules.yaml      # validation rules the evaluation data must pass (or inline)
    champion_ref: production    # which version is the champion: a stage or an alias

Every condition is checked and reported; the gate passes when none fails. A metric the
evaluation does not have is an error in the gate file, not a failed condition.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelcycle.core.errors import UsageError
from modelcycle.core.text import suggest

# Metrics where smaller is better; every other metric is taken as larger-is-better.
LOWER_IS_BETTER = frozenset(
    {"log_loss", "brier", "mae", "mse", "rmse", "mape", "max_error", "median_absolute_error"}
)
_SECTIONS = ("thresholds", "champion", "slices", "validation", "champion_ref")
_THRESHOLD_KEYS = ("min", "max")
_CHAMPION_KEYS = ("min_absolute_change", "min_relative_change", "greater_is_better")


def greater_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


@dataclass(frozen=True)
class Condition:
    """One checked condition: what was required, what was measured, and the verdict."""

    kind: str  # threshold / champion / slice / validation
    metric: str | None
    requirement: str
    observed: str
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "requirement": self.requirement,
            "observed": self.observed,
            "passed": self.passed,
        }

    def describe(self) -> str:
        mark = "pass" if self.passed else "FAIL"
        return f"[{mark}] {self.requirement}: {self.observed}"


@dataclass(frozen=True)
class GateVerdict:
    candidate: str
    data: str
    champion: str | None
    conditions: tuple[Condition, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.conditions)

    @property
    def failed(self) -> list[Condition]:
        return [c for c in self.conditions if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "data": self.data,
            "champion": self.champion,
            "passed": self.passed,
            "conditions": [c.to_dict() for c in self.conditions],
            "failed": [c.to_dict() for c in self.failed],
        }


@dataclass(frozen=True)
class GatePolicy:
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    champion: dict[str, dict[str, Any]] = field(default_factory=dict)
    slice_max_regression: dict[str, float] = field(default_factory=dict)
    slice_by: tuple[str, ...] = ()
    validation: Any = None  # a rules file path or inline rules, checked on the data
    champion_ref: str = "production"
    source: str = "gate"

    @classmethod
    def load(cls, path: str | Path) -> GatePolicy:
        p = Path(path).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"gate file {p} does not exist", hint="check the path") from None
        except OSError as e:
            raise UsageError(f"cannot read gate file {p}: {e}", hint="check the path") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise UsageError(f"gate file {p} is not valid YAML: {e}", hint="fix the YAML") from e
        policy = cls.from_dict(data if data is not None else {}, source=str(p))
        if isinstance(policy.validation, str) and not Path(policy.validation).is_absolute():
            rules = (p.parent / policy.validation).resolve()
            policy = dataclasses.replace(policy, validation=str(rules))
        return policy

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "gate") -> GatePolicy:
        if not isinstance(data, Mapping):
            raise UsageError(
                f"{source}: a gate must be a mapping",
                hint="e.g. thresholds: {roc_auc: {min: 0.9}}",
            )
        unknown = [k for k in data if k not in _SECTIONS]
        if unknown:
            raise UsageError(
                f"{source}: unknown section {unknown[0]!r}{suggest(str(unknown[0]), _SECTIONS)}",
                hint=f"sections: {', '.join(_SECTIONS)}",
            )
        thresholds: dict[str, dict[str, float]] = {}
        for metric, raw_bounds in _section(data, "thresholds", source).items():
            where = f"{source}: thresholds.{metric}"
            bounds = _mapping(raw_bounds, where, "e.g. {min: 0.9}")
            _known_keys(bounds, _THRESHOLD_KEYS, where)
            if not bounds:
                raise UsageError(f"{where} sets no bound", hint="give min and/or max")
            thresholds[str(metric)] = {k: _number(v, f"{where}.{k}") for k, v in bounds.items()}
        champion: dict[str, dict[str, Any]] = {}
        for metric, raw_rule in _section(data, "champion", source).items():
            where = f"{source}: champion.{metric}"
            rule = _mapping(raw_rule, where, "e.g. {min_absolute_change: 0.01}")
            _known_keys(rule, _CHAMPION_KEYS, where)
            parsed: dict[str, Any] = {}
            for key in ("min_absolute_change", "min_relative_change"):
                if key in rule:
                    parsed[key] = _number(rule[key], f"{where}.{key}")
            if not parsed:
                parsed["min_absolute_change"] = 0.0
            gib = rule.get("greater_is_better", greater_is_better(str(metric)))
            if not isinstance(gib, bool):
                raise UsageError(f"{where}.greater_is_better must be true or false", hint="")
            parsed["greater_is_better"] = gib
            champion[str(metric)] = parsed
        slices = _section(data, "slices", source)
        _known_keys(slices, ("by", "max_regression"), f"{source}: slices")
        by = slices.get("by", [])
        if isinstance(by, str):
            by = [by]
        if not isinstance(by, list) or not all(isinstance(b, str) and b for b in by):
            raise UsageError(
                f"{source}: slices.by must be a list of columns or 'filter:EXPR' strings",
                hint='e.g. by: [region, "filter:age > 60"]',
            )
        if slices.get("max_regression") and not by:
            raise UsageError(
                f"{source}: slices.max_regression needs slices.by",
                hint="name the columns (or filters) to slice by",
            )
        regression = {
            str(m): _number(v, f"{source}: slices.max_regression.{m}")
            for m, v in _mapping(
                slices.get("max_regression", {}),
                f"{source}: slices.max_regression",
                "e.g. {accuracy: 0.05}",
            ).items()
        }
        champion_ref = data.get("champion_ref", "production")
        if not isinstance(champion_ref, str) or not champion_ref:
            raise UsageError(
                f"{source}: champion_ref must be a stage or an alias", hint="e.g. production"
            )
        return cls(
            thresholds,
            champion,
            regression,
            tuple(by),
            data.get("validation"),
            champion_ref,
            source,
        )

    @property
    def metrics(self) -> set[str]:
        return set(self.thresholds) | set(self.champion) | set(self.slice_max_regression)

    @property
    def needs_champion(self) -> bool:
        return bool(self.champion or self.slice_max_regression)

    def check_metrics_known(self, available: set[str]) -> None:
        """A gate naming a metric the evaluation lacks is a typo, not a failure."""
        for metric in sorted(self.metrics):
            if metric not in available:
                raise UsageError(
                    f"{self.source}: unknown metric {metric!r}{suggest(metric, sorted(available))}",
                    hint=f"this evaluation has: {', '.join(sorted(available))}",
                )


def check_thresholds(policy: GatePolicy, metrics: Mapping[str, float]) -> list[Condition]:
    out = []
    for metric, bounds in policy.thresholds.items():
        value = metrics[metric]
        for key, bound in bounds.items():
            ok = _finite(value) and (value >= bound if key == "min" else value <= bound)
            op = ">=" if key == "min" else "<="
            out.append(Condition("threshold", metric, f"{metric} {op} {bound:g}", _fmt(value), ok))
    return out


def check_champion(
    policy: GatePolicy,
    metrics: Mapping[str, float],
    champion_ref: str,
    champion_metrics: Mapping[str, float],
) -> list[Condition]:
    out = []
    for metric, rule in policy.champion.items():
        new, old = metrics[metric], champion_metrics.get(metric, math.nan)
        sign = 1.0 if rule["greater_is_better"] else -1.0
        gain = sign * (new - old)
        observed = f"{_fmt(new)} vs {_fmt(old)} ({champion_ref}), change {_fmt(gain, sign=True)}"
        if "min_absolute_change" in rule:
            need = rule["min_absolute_change"]
            ok = _finite(new) and _finite(old) and gain >= need
            what = "better" if rule["greater_is_better"] else "lower"
            requirement = (
                f"{metric} no worse than the champion's"
                if need == 0
                else f"{metric} at least {need:g} {what} than the champion's"
            )
            out.append(Condition("champion", metric, requirement, observed, ok))
        if "min_relative_change" in rule:
            need = rule["min_relative_change"]
            rel = gain / abs(old) if _finite(old) and old != 0 else math.nan
            ok = _finite(rel) and rel >= need
            out.append(
                Condition(
                    "champion",
                    metric,
                    f"{metric} at least {need:.2%} better than the champion's",
                    f"{observed}, relative {_fmt(rel * 100, sign=True)}%",
                    ok,
                )
            )
    return out


def check_slices(
    policy: GatePolicy,
    slices: list[dict[str, Any]],
    champion_ref: str,
    champion_slices: list[dict[str, Any]],
) -> list[Condition]:
    out = []
    old = {(s["slice"], str(s["value"])): s for s in champion_slices}
    for metric, limit in policy.slice_max_regression.items():
        sign = 1.0 if greater_is_better(metric) else -1.0
        worst: tuple[float, str] | None = None
        for s in slices:
            before = old.get((s["slice"], str(s["value"])))
            if before is None:
                continue
            new, prev = s["metrics"].get(metric), before["metrics"].get(metric)
            if prev is None or not _finite(prev):
                continue  # nothing to regress from
            # A slice the champion could be scored on and the candidate cannot is the
            # worst regression there is, not a pass.
            regression = sign * (prev - new) if _finite(new) else math.inf
            if worst is None or regression > worst[0]:
                worst = (regression, f"{s['slice']}={s['value']}")
        if worst is None:
            out.append(
                Condition(
                    "slice",
                    metric,
                    f"no slice's {metric} worse than {champion_ref}'s by more than {limit:g}",
                    "no slice shared with the champion's evaluation",
                    False,
                )
            )
            continue
        out.append(
            Condition(
                "slice",
                metric,
                f"no slice's {metric} worse than {champion_ref}'s by more than {limit:g}",
                f"worst {worst[1]}: {_fmt(worst[0])} worse",
                worst[0] <= limit,
            )
        )
    return out


def _section(data: Mapping[str, Any], name: str, source: str) -> dict[str, Any]:
    value = data.get(name) or {}
    return _mapping(value, f"{source}: {name}", "")


def _mapping(value: Any, where: str, example: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise UsageError(f"{where} must be a mapping", hint=example or None)
    return {str(k): v for k, v in value.items()}


def _known_keys(mapping: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise UsageError(
                f"{where}: unknown key {key!r}{suggest(key, allowed)}",
                hint=f"allowed: {', '.join(allowed)}",
            )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{where} must be a number, not {value!r}", hint="")
    return float(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _fmt(value: Any, *, sign: bool = False) -> str:
    if not _finite(value):
        return "n/a"
    return f"{value:+.4g}" if sign else f"{value:.4g}"
