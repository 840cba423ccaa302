"""The message a ``slack`` alert channel sends: Block Kit for a Slack incoming webhook,
with Slack's control characters escaped and every text clipped to Block Kit's limits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

__all__ = ["slack_message"]

_SEVERITY_MARK = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
_STATE_TITLE = {"resolved": ("✅", "Resolved"), "acknowledged": ("👀", "Acknowledged")}
_HEADER_LIMIT = 150  # Block Kit: header text
_TEXT_LIMIT = 3000  # section text, context element text
_FIELD_LIMIT = 2000  # each section field


def slack_message(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message for ``alert``: a notification ``text`` and Block
    Kit ``blocks`` (a header, the message, a section of fields — rule, value vs threshold,
    monitor, deployment, severity, time — and a context line naming the evidence)."""
    severity = str(alert.get("severity") or "warning")
    state = str(alert.get("state") or "firing")
    rule = str(alert.get("rule") or alert.get("metric") or "alert")
    monitor = alert.get("monitor") or "?"
    message = str(alert.get("message") or f"{rule} on {alert.get('deployment') or '?'}")
    mark, title = _STATE_TITLE.get(state, (_SEVERITY_MARK.get(severity, "⚠️"), "Alert"))
    header = f"{mark} {title}: {rule}" + (f" ({severity})" if state == "firing" else "")
    op, threshold = alert.get("op"), alert.get("threshold")
    value = _number(alert.get("value"))
    if threshold is not None:
        bound = " ".join(str(x) for x in (op, _number(threshold)) if x)
        value += f" (threshold {_escape(bound)})"
    fields = [
        ("Rule", _code(rule)),
        ("Value", value),
        ("Monitor", _code(monitor)),
        ("Deployment", _code(alert.get("deployment") or "?")),
        ("Severity", _escape(severity)),
        ("Fired at", _slack_time(alert.get("fired_at"))),
    ]
    return {
        "text": _clip(_escape(f"[{severity}] {message}"), _TEXT_LIMIT),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _clip(header, _HEADER_LIMIT), "emoji": True},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip(_escape(message), _TEXT_LIMIT)},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": _clip(f"*{name}*\n{text}", _FIELD_LIMIT)}
                    for name, text in fields
                ],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _clip(_evidence_line(alert), _TEXT_LIMIT)}],
            },
        ],
    }


def _evidence_line(alert: Mapping[str, Any]) -> str:
    evidence = alert.get("evidence")
    if not isinstance(evidence, Mapping):
        evidence = {}
    result = evidence.get("result_id", alert.get("result_id"))
    parts = [f"Evidence: monitor result {_code(result)}" if result is not None else "Evidence:"]
    if evidence.get("summary"):
        parts.append(_escape(str(evidence["summary"])))
    window = evidence.get("window")
    if isinstance(window, list | tuple) and len(window) == 2:
        parts.append(f"window {_escape(str(window[0]))} → {_escape(str(window[1]))}")
    if evidence.get("rows") is not None:
        parts.append(f"{_escape(str(evidence['rows']))} rows")
    if evidence.get("show"):
        parts.append(f"details: {_code(evidence['show'])}")
    return " · ".join(parts)


def _escape(text: str) -> str:
    """Slack's three control characters as entities (its mrkdwn needs only these)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(value: object) -> str:
    return "`" + _escape(str(value).replace("`", "'")) + "`"


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, without splitting an ``&amp;`` entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _number(value: object) -> str:
    if value is None:
        return "no value"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _slack_time(value: object) -> str:
    """A time Slack shows in each reader's time zone, with the ISO text as fallback."""
    if not isinstance(value, str):
        return "unknown"
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return _escape(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    fallback = when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"
