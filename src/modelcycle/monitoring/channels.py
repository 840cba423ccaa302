"""Alert channels: where a monitor's alerts go when a rule fires.

A channel is given as a mapping (from YAML or Python) or as a short CLI string:

=========  ==============================================  =========================
type       mapping                                         CLI string
=========  ==============================================  =========================
webhook    ``{type: webhook, url, secret?, secret_env?,    ``webhook=URL``
           headers?}``
slack      ``{type: slack, url}``                          ``slack=URL``
file       ``{type: file, path}``                          ``file=PATH``
events     ``{type: events}``                              ``events``
=========  ==============================================  =========================

webhook
    POSTs modelcycle's webhook envelope (`modelcycle.core.webhooks`) with the alert as
    ``data``: ``{"id", "kind": "alert.fired", "subject": "MONITOR#ALERT-ID", "at",
    "actor", "data": ALERT}``, signed with ``X-Modelcycle-Signature`` when the channel
    has a secret, plus the channel's own ``headers`` (e.g. ``Authorization``).
slack
    POSTs a Slack incoming-webhook message (``{"text", "blocks"}``, see `slack_message`
    in `modelcycle.monitoring.slack`) to any Slack-compatible URL.
file
    appends the alert as one JSON line; a relative path is relative to the dispatcher's
    base folder (the workspace root). Each line is one ``write`` on a file opened with
    ``O_APPEND``, so several writers never interleave lines.
events
    records ``alert.notified`` (subject: the monitor, data: the alert) through the
    ``record_event`` callback. `AlertDispatcher` always has this channel.

HTTP channels are delivered in the background by `WebhookDispatcher`, one hook per
channel (retries with backoff, ``Retry-After``; logged as ``alert channels[N]``); a
delivery that fails for good is reported to ``on_failure`` as a `ChannelFailure`.
`AlertDispatcher.deliver` never raises.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias
from urllib.parse import urlsplit

from modelcycle.core.config import (
    WEBHOOK_MAX_ATTEMPTS_DEFAULT,
    WEBHOOK_TIMEOUT_DEFAULT,
    WebhookConfig,
    check_webhook_headers,
)
from modelcycle.core.errors import ModelcycleError, UsageError
from modelcycle.core.text import suggest
from modelcycle.core.webhooks import FailedDelivery, WebhookDispatcher
from modelcycle.monitoring.slack import slack_message

__all__ = [
    "CHANNEL_TYPES",
    "EVENT_KIND",
    "AlertDispatcher",
    "ChannelFailure",
    "ChannelSpec",
    "DeliveryRecord",
    "EventsChannel",
    "FileChannel",
    "SlackChannel",
    "WebhookChannel",
    "alert_kind",
    "alert_subject",
    "parse_channel",
    "parse_channels",
    "slack_message",
]

log = logging.getLogger("modelcycle.monitoring.channels")

CHANNEL_TYPES = ("webhook", "slack", "file", "events")
EVENT_KIND = "alert.notified"
CHANNEL_HINT = (
    "write a channel as webhook=URL, slack=URL, file=PATH or events, or as a mapping such "
    "as {type: webhook, url: 'https://…', secret_env: ALERT_SECRET}"
)
_KEYS = {
    "webhook": ("type", "url", "secret", "secret_env", "headers"),
    "slack": ("type", "url"),
    "file": ("type", "path"),
    "events": ("type",),
}

RecordEvent = Callable[[str, str, dict[str, Any]], None]


# -- channel specs ----------------------------------------------------------------------
def _display_url(url: str) -> str:
    return WebhookConfig(url=url).url_for_display()


@dataclass(frozen=True)
class WebhookChannel:
    """POST the alert, as modelcycle's webhook envelope, to ``url``."""

    type: ClassVar[str] = "webhook"
    url: str = field(repr=False)  # paths and queries often hold tokens
    secret: str | None = field(default=None, repr=False)
    secret_env: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "url": self.url}
        if self.secret is not None:
            out["secret"] = self.secret
        if self.secret_env is not None:
            out["secret_env"] = self.secret_env
        if self.headers:
            out["headers"] = dict(self.headers)
        return out

    def describe(self) -> str:
        return f"webhook {_display_url(self.url)}"


@dataclass(frozen=True)
class SlackChannel:
    """POST a Slack incoming-webhook message to ``url``."""

    type: ClassVar[str] = "slack"
    url: str = field(repr=False)  # a Slack webhook URL is a credential

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "url": self.url}

    def describe(self) -> str:
        return f"slack {_display_url(self.url)}"


@dataclass(frozen=True)
class FileChannel:
    """Append one JSON line per alert to ``path`` (relative to a base folder)."""

    type: ClassVar[str] = "file"
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "path": self.path}

    def describe(self) -> str:
        return f"file {self.path}"

    def resolve(self, base_dir: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else base_dir / path


@dataclass(frozen=True)
class EventsChannel:
    """Record each alert in the workspace event log."""

    type: ClassVar[str] = "events"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type}

    def describe(self) -> str:
        return "events"


ChannelSpec: TypeAlias = WebhookChannel | SlackChannel | FileChannel | EventsChannel


# -- parsing ------------------------------------------------------------------------------
def parse_channels(
    specs: Sequence[Mapping[str, Any] | str | ChannelSpec] | Mapping[str, Any] | str,
) -> list[ChannelSpec]:
    """Every channel in ``specs`` (mappings, CLI strings or parsed channels), checked.

    A lone string or mapping counts as a list of one. Raises `UsageError` naming the
    channel (``channels[N]``) and what is wrong with it; a channel given twice is an error.
    """
    if isinstance(specs, str | Mapping):
        specs = [specs]
    out: list[ChannelSpec] = []
    for i, spec in enumerate(specs):
        where = f"channels[{i}]"
        channel = parse_channel(spec, where=where)
        if channel in out:
            raise UsageError(
                f"{where} repeats channels[{out.index(channel)}] ({channel.describe()})",
                hint="give each channel once; the event log is always one of them",
            )
        out.append(channel)
    return out


def parse_channel(spec: object, *, where: str = "channel") -> ChannelSpec:
    """One channel from a mapping, a CLI string (``slack=URL``) or a parsed channel."""
    if isinstance(spec, WebhookChannel | SlackChannel | FileChannel | EventsChannel):
        return spec
    if isinstance(spec, str):
        return _from_text(spec, where)
    if isinstance(spec, Mapping):
        return _from_mapping(spec, where)
    raise UsageError(f"{where} is a {type(spec).__name__}, not a channel", hint=CHANNEL_HINT)


def _unknown_type(where: str, name: str) -> UsageError:
    return UsageError(
        f"{where} has an unknown type {name!r}{suggest(name, CHANNEL_TYPES)}",
        hint=f"channel types: {', '.join(CHANNEL_TYPES)}; {CHANNEL_HINT}",
    )


def _from_text(text: str, where: str) -> ChannelSpec:
    text = text.strip()
    if not text:
        raise UsageError(f"{where} is empty", hint=CHANNEL_HINT)
    name, sep, target = text.partition("=")
    name = name.strip().lower()
    if "://" in name:
        raise UsageError(
            f"{where} is a URL without a channel type",
            hint="write webhook=URL for the alert as JSON, or slack=URL for a Slack "
            "incoming webhook",
        )
    if name not in CHANNEL_TYPES:
        raise _unknown_type(where, name)
    if name == "events":
        if sep and target.strip():
            raise UsageError(f"{where}: events takes no target", hint="write just: events")
        return EventsChannel()
    key = "path" if name == "file" else "url"
    if not target.strip():
        raise UsageError(
            f"{where} ({name}) has no {key}", hint=f"write {name}={key.upper()}; {CHANNEL_HINT}"
        )
    return _from_mapping({"type": name, key: target.strip()}, where)


def _from_mapping(spec: Mapping[Any, Any], where: str) -> ChannelSpec:
    kind = spec.get("type")
    if kind is None:
        raise UsageError(
            f"{where} has no type", hint=f"add type: one of {', '.join(CHANNEL_TYPES)}"
        )
    if not isinstance(kind, str):
        raise UsageError(f"{where}.type is {kind!r}, not text", hint=CHANNEL_HINT)
    kind = kind.strip().lower()
    if kind not in CHANNEL_TYPES:
        raise _unknown_type(where, kind)
    keys = _KEYS[kind]
    for key in spec:
        if key not in keys:
            raise UsageError(
                f"{where} ({kind}) has an unknown field {str(key)!r}{suggest(str(key), keys)}",
                hint=f"a {kind} channel takes: {', '.join(keys)}",
            )
    if kind == "events":
        return EventsChannel()
    if kind == "file":
        return FileChannel(_path(spec.get("path"), where))
    url = _url(spec.get("url"), where, kind)
    if kind == "slack":
        return SlackChannel(url)
    secret = _text(spec, "secret", where)
    secret_env = _text(spec, "secret_env", where)
    if secret is not None and secret_env is not None:
        raise UsageError(
            f"{where} (webhook) sets both secret and secret_env",
            hint="keep secret_env (the secret then stays out of the monitor's spec) "
            "and remove secret",
        )
    return WebhookChannel(url, secret, secret_env, _headers(spec.get("headers"), where))


def _url(value: object, where: str, kind: str) -> str:
    if value is None:
        raise UsageError(f"{where} ({kind}) has no url", hint="add url: https://…")
    if isinstance(value, str) and _is_http_url(value.strip()):
        return value.strip()
    raise UsageError(
        f"{where}.url must be an http:// or https:// URL with a host, got {_shown(value)}",
        hint="write it as https://host/path"
        + (" (Slack: the incoming webhook URL of your app)" if kind == "slack" else ""),
    )


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _shown(value: object) -> str:
    """A bad URL in a message, without the path or query that may hold a token."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    head, slash, _ = value.partition("://")
    if slash:
        host = value[len(head) + 3 :].split("/", 1)[0].rsplit("@", 1)[-1]
        return repr(f"{head}://{host}/…")
    first = value.split("/", 1)[0]
    return repr(first + ("/…" if len(first) < len(value) else ""))


def _text(spec: Mapping[Any, Any], key: str, where: str) -> str | None:
    value = spec.get(key)
    if value is None or (isinstance(value, str) and value):
        return value
    shown = "" if key == "secret" else f", got {value!r}"  # never echo a secret
    raise UsageError(
        f"{where}.{key} must be a non-empty string{shown}",
        hint="secret_env names an environment variable that holds the signing secret, "
        "e.g. secret_env: ALERT_WEBHOOK_SECRET",
    )


def _path(value: object, where: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if value is None:
        raise UsageError(f"{where} (file) has no path", hint="add path: alerts/alerts.jsonl")
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise UsageError(
            f"{where}.path must be a file path, got {value!r}",
            hint="e.g. path: alerts/alerts.jsonl (relative to the workspace root)",
        )
    return value.strip()


def _headers(value: object, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise UsageError(
            f"{where}.headers must be a mapping of name to value",
            hint="e.g. headers: {Authorization: 'Bearer …'}",
        )
    return check_webhook_headers(value.items(), f"{where}.headers")


# -- what channels send -------------------------------------------------------------------
def alert_kind(alert: Mapping[str, Any]) -> str:
    """The event kind of an alert in its current state: ``alert.fired`` (firing),
    ``alert.resolved``, ``alert.acknowledged``."""
    state = alert.get("state") or "firing"
    return "alert.fired" if state == "firing" else f"alert.{state}"


def alert_subject(alert: Mapping[str, Any]) -> str:
    """``MONITOR#ALERT-ID``: the webhook envelope's subject, unique per alert."""
    return f"{alert.get('monitor') or '?'}#{alert.get('id')}"


def _subject_parts(subject: str) -> tuple[str | None, int | None]:
    monitor, _, number = subject.rpartition("#")
    return (None if monitor in ("", "?") else monitor), (int(number) if number.isdigit() else None)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: non-finite numbers become null, dates ISO text."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return str(value)


# -- delivery -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryRecord:
    """What `AlertDispatcher.deliver` did for one channel: ``queued`` (HTTP, in the
    background; a later failure goes to ``on_failure``), ``done`` or ``failed``."""

    channel: int  # index in the dispatcher's channels
    type: str
    target: str  # without credentials, path or query
    status: Literal["queued", "done", "failed"]
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChannelFailure:
    """An alert that did not reach one channel; what ``on_failure`` receives."""

    channel: int
    type: str
    target: str
    monitor: str | None
    alert: int | None  # the alert's id
    reason: str
    attempts: int  # requests sent or writes tried (0: none, e.g. the dispatcher is closed)
    status: int | None = None  # the last HTTP status, when there was an answer
    delivery_id: str | None = None  # X-Modelcycle-Delivery, for HTTP channels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _append_line(path: Path, line: bytes) -> None:
    """Append ``line`` in one ``write`` on an ``O_APPEND`` file: whole lines, whoever else
    appends at the same time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        written = os.write(fd, line)
    finally:
        os.close(fd)
    if written != len(line):
        raise OSError(f"wrote only {written} of {len(line)} bytes (is the disk full?)")


class AlertDispatcher:
    """Sends alerts to a monitor's channels.

    ``channels`` as `parse_channels` returns them; the event log is always one (added when
    absent). File paths are relative to ``base_dir``. ``record_event(kind, subject, data)``
    writes the event log; ``on_failure`` receives every `ChannelFailure` (from a worker
    thread for HTTP channels) and must not block for long. The retry settings apply to
    every HTTP channel; ``environ`` is where ``secret_env`` is read. Use one dispatcher
    while the channels stay the same, and `close` it to drain.
    """

    def __init__(
        self,
        channels: Sequence[ChannelSpec],
        *,
        base_dir: str | os.PathLike[str],
        record_event: RecordEvent,
        on_failure: Callable[[ChannelFailure], None] | None = None,
        actor: str = "",
        environ: Mapping[str, str] | None = None,
        max_attempts: int = WEBHOOK_MAX_ATTEMPTS_DEFAULT,
        timeout_seconds: float = WEBHOOK_TIMEOUT_DEFAULT,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 60.0,
        workers: int = 2,
    ) -> None:
        listed = list(channels)
        if not any(isinstance(c, EventsChannel) for c in listed):
            listed.append(EventsChannel())
        self.channels: tuple[ChannelSpec, ...] = tuple(listed)
        self.base_dir = Path(base_dir)
        self.record_event = record_event
        self.on_failure = on_failure
        new_dispatcher = functools.partial(
            WebhookDispatcher,
            actor=actor,
            environ=environ,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_retry_after=max_retry_after,
            workers=workers,
        )
        new_hook = functools.partial(
            WebhookConfig,
            events=("alert.*",),
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
        )
        self._http: dict[int, WebhookDispatcher] = {}
        for i, channel in enumerate(self.channels):
            label = f"alert channels[{i}]"
            if isinstance(channel, WebhookChannel):
                hook = new_hook(
                    channel.url,
                    secret=channel.secret,
                    secret_env=channel.secret_env,
                    headers=channel.headers,
                    label=label,
                )
            elif isinstance(channel, SlackChannel):
                hook = new_hook(channel.url, envelope=False, label=label)  # the bare message
            else:
                continue
            on_failure = functools.partial(self._http_failed, i)
            self._http[i] = new_dispatcher([hook], on_failure=on_failure)
        self._lock = threading.Lock()
        self._closed = False

    def deliver(self, alert: Mapping[str, Any]) -> list[DeliveryRecord]:
        """Send ``alert`` to every channel: file and event log now, HTTP channels queued.

        Never raises: a channel that fails now is reported to ``on_failure`` and marked
        ``failed``; an HTTP delivery that fails later is reported when it gives up.
        """
        payload: dict[str, Any] = _plain(dict(alert))
        with self._lock:
            closed = self._closed
        records = []
        for i, channel in enumerate(self.channels):
            attempts = 0 if closed else 1
            if closed:
                reason = "not sent: the alert dispatcher is closed"
            else:
                try:
                    records.append(self._deliver_one(i, channel, payload))
                    continue
                except (OSError, ModelcycleError) as e:
                    reason = str(e)
                except Exception as e:
                    # Reported, never raised: one broken channel must not stop the others,
                    # nor the monitor loop.
                    log.exception("alert channel %s failed unexpectedly", channel.describe())
                    reason = f"unexpected {type(e).__name__}: {e}"
            self._report(self._failure(i, payload, reason, attempts))
            records.append(DeliveryRecord(i, channel.type, self._target(i), "failed", reason))
        return records

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no HTTP delivery is queued or being sent."""
        deadline = time.monotonic() + timeout
        return all(d.flush(max(0.0, deadline - time.monotonic())) for d in self._http.values())

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking alerts and spend at most ``timeout`` seconds on pending HTTP
        deliveries; what is still undelivered then goes to ``on_failure``."""
        with self._lock:
            self._closed = True
        deadline = time.monotonic() + max(0.0, timeout)
        for dispatcher in self._http.values():
            dispatcher.close(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> AlertDispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _deliver_one(self, i: int, channel: ChannelSpec, alert: dict[str, Any]) -> DeliveryRecord:
        target = self._target(i)
        if isinstance(channel, WebhookChannel | SlackChannel):
            payload = alert if isinstance(channel, WebhookChannel) else slack_message(alert)
            self._http[i].notify(alert_kind(alert), alert_subject(alert), payload)
            return DeliveryRecord(i, channel.type, target, "queued")
        if isinstance(channel, FileChannel):
            line = json.dumps(alert, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            _append_line(channel.resolve(self.base_dir), (line + "\n").encode())
            return DeliveryRecord(i, channel.type, target, "done")
        self.record_event(EVENT_KIND, str(alert.get("monitor") or ""), alert)
        return DeliveryRecord(i, channel.type, target, "done")

    def _target(self, i: int) -> str:
        channel = self.channels[i]
        if isinstance(channel, WebhookChannel | SlackChannel):
            return _display_url(channel.url)
        if isinstance(channel, FileChannel):
            return str(channel.resolve(self.base_dir))
        return "event log"

    def _failure(
        self, i: int, alert: Mapping[str, Any], reason: str, attempts: int
    ) -> ChannelFailure:
        number = alert.get("id")
        return ChannelFailure(
            channel=i,
            type=self.channels[i].type,
            target=self._target(i),
            monitor=str(alert["monitor"]) if alert.get("monitor") else None,
            alert=number if isinstance(number, int) and not isinstance(number, bool) else None,
            reason=reason,
            attempts=attempts,
        )

    def _http_failed(self, i: int, failed: FailedDelivery) -> None:
        monitor, number = _subject_parts(failed.subject)
        self._report(
            ChannelFailure(
                channel=i,
                type=self.channels[i].type,
                target=failed.url,
                monitor=monitor,
                alert=number,
                reason=failed.reason,
                attempts=failed.attempts,
                status=failed.status,
                delivery_id=failed.delivery_id,
            )
        )

    def _report(self, failure: ChannelFailure) -> None:
        log.warning(
            "alert %s of %s did not reach %s %s: %s",
            failure.alert,
            failure.monitor,
            failure.type,
            failure.target,
            failure.reason,
        )
        if self.on_failure is None:
            return
        try:
            self.on_failure(failure)
        except Exception:
            # The callback is the caller's code; its failure is theirs to see in the log,
            # and must not stop the other channels.
            log.exception("the alert failure callback failed for %s", failure.target)
