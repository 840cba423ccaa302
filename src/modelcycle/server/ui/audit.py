"""The audit page: every change to the workspace, newest first, with who made it (a
token's name or an OS user), what it was and what it changed; filtered by actor, kind
and subject (by prefix: ``dataset.``), and a time range; pages of 50 read in SQL.

Any signed-in token reads it (readers and up, like ``GET /api/v1/events``)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from modelcycle.core.errors import UsageError
from modelcycle.server.ui.core import MAX_ID, Pages

if TYPE_CHECKING:
    from modelcycle.store.metadata import EventRecord

CSS = "/static/audit.css"
PAGE_SIZE = 50
MAX_PAGE = MAX_ID // PAGE_SIZE  # the offset of its first row still fits in 64 bits
VALUE_CHARS = 80  # each value of a row's compact payload is cut to this many characters
FULL_CHARS = 20_000  # a cut payload folds out in full up to this many (--json has all)
#: payload keys that hold a change's two sides (deployments: before/after; stages: from/to)
PAIRS = (("before", "after"), ("from", "to"))


@dataclass(frozen=True)
class AuditQuery:
    """The page's filters and page number, as its URL's query string carries them;
    times are as typed (``since_at``/``until_at`` are the parsed UTC times)."""

    actor: str = ""
    kind: str = ""
    subject: str = ""
    since: str = ""
    until: str = ""
    page: int = 1

    @property
    def filtered(self) -> bool:
        return any((self.actor, self.kind, self.subject, self.since, self.until))

    def url(self, **changes: Any) -> str:
        values = {
            "actor": self.actor,
            "kind": self.kind,
            "subject": self.subject,
            "since": self.since,
            "until": self.until,
            "page": self.page,
            **changes,
        }
        if values["page"] == 1:
            del values["page"]
        query = urlencode({k: v for k, v in values.items() if v not in ("", None)})
        return f"/audit?{query}" if query else "/audit"


@dataclass(frozen=True)
class Change:
    """One value a change moved: ``key`` ('' for the whole value) from ``before`` to
    ``after`` ('–' where there was none)."""

    key: str
    before: str
    after: str


@dataclass(frozen=True)
class PayloadView:
    """An event's payload, compact: what its two sides (`PAIRS`) differ in, the other
    fields as ``key: value``, and (when that cut something) the whole payload."""

    changes: tuple[Change, ...]
    fields: tuple[tuple[str, str], ...]
    full: str | None

    @classmethod
    def of(cls, payload: dict[str, Any]) -> PayloadView:
        short = _Compact()
        changes: tuple[Change, ...] = ()
        rest = payload
        for old, new in PAIRS:
            if old in payload and new in payload:
                changes = _changes(payload[old], payload[new], short)
                rest = {k: v for k, v in payload.items() if k not in (old, new)}
                break
        fields = tuple((str(k), short(v)) for k, v in rest.items())
        if not short.lossy:  # the compact form shows it all
            return cls(changes, fields, None)
        whole = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        if len(whole) > FULL_CHARS:
            more = len(whole) - FULL_CHARS
            whole = f"{whole[:FULL_CHARS]}\n… {more:,} more characters (modelcycle events --json)"
        return cls(changes, fields, whole)


@dataclass(frozen=True)
class EventLine:
    id: int
    at: dt.datetime
    actor: str
    kind: str
    subject: str
    payload: PayloadView

    @classmethod
    def of(cls, event: EventRecord) -> EventLine:
        return cls(
            event.id,
            event.at,
            event.actor,
            event.kind,
            event.subject,
            PayloadView.of(event.payload),
        )


def register(router: APIRouter, pages: Pages) -> None:
    @router.get("/audit", response_class=HTMLResponse)
    def audit(
        request: Request,
        actor: str = "",
        kind: str = "",
        subject: str = "",
        since: str = "",
        until: str = "",
        page: str = "1",
    ) -> HTMLResponse:
        query = AuditQuery(
            actor.strip(), kind.strip(), subject.strip(), since.strip(), until.strip()
        )
        try:
            query = AuditQuery(
                query.actor,
                query.kind,
                query.subject,
                _typed_time(query.since, "since"),
                _typed_time(query.until, "until"),
                _page_number(page),
            )
        except UsageError as e:  # say what is wrong by the form, keep what was typed
            message = f"{e.message} ({e.hint})" if e.hint else e.message
            return pages.render(
                request,
                "audit.html",
                status_code=400,
                css=CSS,
                q=query,
                error=message,
                events=None,
            )
        found = pages.ws().events(
            limit=PAGE_SIZE + 1,
            offset=(query.page - 1) * PAGE_SIZE,
            actor=query.actor or None,
            kind=query.kind or None,
            subject=query.subject or None,
            since=_time(query.since),
            until=_time(query.until),
        )
        newest_first = found[::-1]
        return pages.render(
            request,
            "audit.html",
            css=CSS,
            q=query,
            error=None,
            events=[EventLine.of(e) for e in newest_first[:PAGE_SIZE]],
            first=(query.page - 1) * PAGE_SIZE + 1,
            has_older=len(newest_first) > PAGE_SIZE,
        )


def _changes(before: Any, after: Any, short: _Compact) -> tuple[Change, ...]:
    """What differs between ``before`` and ``after``, key by key when both are objects
    (or one is and the other nothing: created, deleted)."""
    if isinstance(after, dict) and before is None:
        before = {}
    if isinstance(before, dict) and after is None:
        after = {}
    if isinstance(before, dict) and isinstance(after, dict):
        keys = [*before, *(k for k in after if k not in before)]
        return tuple(
            Change(
                str(k),
                short(before[k]) if k in before else "–",
                short(after[k]) if k in after else "–",
            )
            for k in keys
            if before.get(k) != after.get(k) or (k in before) != (k in after)
        )
    return (
        Change(
            "", "–" if before is None else short(before), "–" if after is None else short(after)
        ),
    )


class _Compact:
    """Values on one line (strings as they are, the rest as JSON), cut with '…' at
    VALUE_CHARS; ``lossy`` once any value was cut or had its line breaks joined."""

    def __init__(self) -> None:
        self.lossy = False

    def __call__(self, value: Any) -> str:
        text = (
            value
            if isinstance(value, str)
            else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        )
        short = " ".join(text.split())
        if len(short) > VALUE_CHARS:
            short = short[: VALUE_CHARS - 1] + "…"
        self.lossy |= short != text
        return short


def _typed_time(text: str, what: str) -> str:
    """``text`` as the form shows it back (``YYYY-MM-DDTHH:MM:SS`` in UTC), '' for none."""
    if not text:
        return ""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{what} {text!r} is not a time",
            hint="write it as 2024-05-31 or 2024-05-31T14:30 (UTC)",
        ) from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:
            raise UsageError(
                f"{what} {text!r} is outside the calendar in UTC", hint="pick a nearer time"
            ) from None
    return value.isoformat(timespec="seconds")


def _time(typed: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(typed).replace(tzinfo=dt.UTC) if typed else None


def _page_number(text: str) -> int:
    number = int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else 0
    if not 1 <= number <= MAX_PAGE:
        raise UsageError(f"page {text!r} is not a page number", hint="pages count from 1")
    return number
