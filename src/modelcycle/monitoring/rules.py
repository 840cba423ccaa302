"""Alert rules: ``METRIC OP NUMBER``, checked on each monitor result.

A rule is written as text (``drift_share > 0.3``, ``accuracy < 0.8``,
``p99_latency_seconds > 0.5``, ``drift.age >= 0.2``) or as a mapping with options::

    {"rule": "error_rate > 0.01", "for": 3, "cooldown": "1h", "severity": "critical"}

``for`` (debounce) is how many consecutive results must breach before the alert fires;
``cooldown`` is how long after an alert of the same rule fired a new one may fire once
the first is resolved. A result that has no value for the metric (no data in the window,
the check is off) neither breaches nor clears the rule.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelcycle.core.durations import format_duration, parse_duration
from modelcycle.core.errors import UsageError

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
SEVERITIES = ("info", "warning", "critical")
_RULE = re.compile(r"^\s*([A-Za-z_][\w.\-\[\]:]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
RULE_HINT = (
    "write a rule as METRIC OP NUMBER, e.g. 'drift_share > 0.3', 'accuracy < 0.8', "
    "'p99_latency_seconds > 0.5' or 'error_rate > 0.01'"
)


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    threshold: float
    debounce: int = 1
    cooldown_seconds: float = 0.0
    severity: str = "warning"

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def breached(self, value: float | None) -> bool | None:
        """True/False, or None when there is no value to check."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return OPS[self.op](float(value), self.threshold)

    def message(self, value: float | None, monitor: str, deployment: str) -> str:
        shown = "no value" if value is None else f"{value:.4g}"
        return (
            f"{self.metric} is {shown}, {self.op} {self.threshold:g}, on deployment "
            f"{deployment} (monitor {monitor})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.text,
            "for": self.debounce,
            "cooldown": format_duration(self.cooldown_seconds),
            "severity": self.severity,
        }


def parse_rule(
    spec: str | Mapping[str, Any],
    *,
    debounce: int = 1,
    cooldown_seconds: float = 0.0,
    severity: str = "warning",
) -> Rule:
    """A rule from its text or mapping; the keyword arguments are the defaults."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"rule", "for", "cooldown", "severity"})
        if unknown:
            raise UsageError(
                f"alert rule {dict(spec)!r} has unknown key {unknown[0]!r}",
                hint="a rule mapping takes: rule, for, cooldown, severity",
            )
        if "rule" not in spec:
            raise UsageError(f"alert rule {dict(spec)!r} has no 'rule'", hint=RULE_HINT)
        text = spec["rule"]
        debounce = spec.get("for", debounce)
        if "cooldown" in spec:
            cooldown_seconds = parse_duration(spec["cooldown"], f"cooldown of {text!r}")
        severity = spec.get("severity", severity)
    else:
        text = spec
    if not isinstance(text, str):
        raise UsageError(f"alert rule {text!r} is not text", hint=RULE_HINT)
    match = _RULE.match(text)
    if match is None:
        raise UsageError(f"cannot read alert rule {text!r}", hint=RULE_HINT)
    metric, op, number = match.groups()
    try:
        threshold = float(number)
    except ValueError:
        raise UsageError(
            f"alert rule {text!r}: {number!r} is not a number", hint=RULE_HINT
        ) from None
    if not math.isfinite(threshold):
        raise UsageError(f"alert rule {text!r}: the threshold must be finite", hint=RULE_HINT)
    if isinstance(debounce, bool) or not isinstance(debounce, int) or debounce < 1:
        raise UsageError(
            f"alert rule {text!r}: 'for' is {debounce!r}; it must be a whole number ≥ 1",
            hint="'for: 3' fires after 3 breaching results in a row",
        )
    if severity not in SEVERITIES:
        raise UsageError(
            f"alert rule {text!r}: unknown severity {severity!r}",
            hint=f"severities: {', '.join(SEVERITIES)}",
        )
    return Rule(metric, op, threshold, debounce, cooldown_seconds, severity)


def check_metrics(rules: Sequence[Rule], known: Callable[[str], bool], hint: str) -> None:
    """Refuse a rule whose metric no check of the monitor produces."""
    for rule in rules:
        if not known(rule.metric):
            raise UsageError(f"alert rule {rule.text!r}: unknown metric {rule.metric!r}", hint=hint)
