"""Webhooks: POST events to the URLs in ``[[webhooks]]``, in the background, with retries.

``WebhookDispatcher.notify`` only queues: the change that caused the event has already
committed, and a slow or broken receiver must not slow it down or undo it. Worker threads
POST one JSON body per matching hook::

    {"id": DELIVERY-ID, "kind": "model.registered", "subject": "churn@3",
     "at": "2025-01-31T12:00:00.000+00:00", "actor": "ana", "data": {...}}

with ``X-Modelcycle-Event``, ``X-Modelcycle-Delivery`` (the same id on every retry, so a
receiver can drop duplicates) and, for a hook with a secret,
``X-Modelcycle-Signature: sha256=HEX``, the HMAC-SHA256 of the exact body bytes. A hook
built in Python may add its own ``headers`` (never in place of these) and may set
``envelope=False`` to send the payload itself as the body, e.g. a chat message.

Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and
jitter, or after the receiver's ``Retry-After``; other answers are final. Redirects are
not followed (a POST turned into a GET would lose the body). A delivery that fails for
good, or that is still pending when ``close`` runs out of time, is handed to
``on_failure`` — nothing is dropped without a report. Only the standard library is used:
httpx is not a declared dependency.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any

from modelcycle import __version__
from modelcycle.core.config import WebhookConfig
from modelcycle.core.errors import UsageError

__all__ = ["FailedDelivery", "WebhookDispatcher", "parse_retry_after", "retry_delay", "sign"]

log = logging.getLogger("modelcycle.webhooks")

USER_AGENT = f"modelcycle/{__version__}"
RETRIED_STATUSES = frozenset({408, 429})  # and every 5xx
_ANSWER_LIMIT = 64 * 1024  # bytes of a receiver's answer read (and mostly ignored)


@dataclass(frozen=True)
class FailedDelivery:
    """A notification that did not reach one hook; what ``on_failure`` receives."""

    hook: int  # index of the hook in the configured list (webhooks[N] in the file)
    url: str  # the hook's URL without credentials, path or query
    delivery_id: str
    kind: str
    subject: str
    attempts: int  # requests actually sent (0: none could be)
    reason: str
    status: int | None = None  # the last HTTP status, when there was an answer
    label: str = ""  # how logs name the hook: its label, else webhooks[N]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Modelcycle-Signature`` value for ``body``: ``sha256=`` + hex HMAC."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(retry: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retry`` (1 = the first retry).

    The ceiling doubles from ``base`` up to ``cap``; the wait is drawn from its upper half,
    so hooks that failed together do not all come back at the same instant.
    """
    ceiling = min(cap, base * 2.0 ** min(retry - 1, 60))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``; None
    when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


@dataclass(eq=False)
class _Delivery:
    hook: int
    id: str
    kind: str
    subject: str
    body: bytes
    attempts: int = 0
    status: int | None = None
    reason: str = "not attempted"
    settled: bool = False  # delivered or reported; guarded by the dispatcher's lock


@dataclass(frozen=True)
class _Answer:
    ok: bool
    retry: bool
    reason: str
    status: int | None = None
    retry_after: float | None = None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx then surfaces as an HTTPError: a final, reported answer


class WebhookDispatcher:
    """Delivers events to webhooks from background threads.

    ``on_failure`` is called (from a worker thread, or from ``notify``/``close``) once for
    each delivery that will not happen; it must not block for long. ``environ`` is where
    ``secret_env`` variables are read (the process environment by default). The timing
    parameters exist so tests can run quickly; the defaults suit real receivers.
    """

    def __init__(
        self,
        hooks: Sequence[WebhookConfig],
        *,
        on_failure: Callable[[FailedDelivery], None] | None = None,
        actor: str = "",
        environ: Mapping[str, str] | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 60.0,
        workers: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        self.hooks = tuple(hooks)
        self.on_failure = on_failure
        self.actor = actor
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._secrets: list[str | None] = []
        self._secret_errors: list[str | None] = []
        for hook in self.hooks:
            try:
                self._secrets.append(hook.resolve_secret(environ))
                self._secret_errors.append(None)
            except UsageError as e:
                log.warning("%s; its deliveries will be reported as failed", e.message)
                self._secrets.append(None)
                self._secret_errors.append(e.message)
        self._opener = urllib.request.build_opener(_NoRedirects)
        self._rng = rng or random.Random()
        self._workers = max(1, workers)
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, _Delivery]] = []  # (due, order, delivery) heap
        self._order = itertools.count()
        self._active: set[_Delivery] = set()
        self._closed = False  # no new notifications; pending ones still go out
        self._stopped = False  # workers exit; nothing more is sent or reported
        self._deadline: float | None = None

    # -- the caller's side -----------------------------------------------------------
    def notify(
        self, kind: str, subject: str, payload: Mapping[str, Any], *, actor: str | None = None
    ) -> None:
        """Queue ``kind`` for every hook whose ``events`` match it, and return at once.

        Never raises: a payload that cannot be sent is reported through ``on_failure``.
        """
        matching = [
            i
            for i, hook in enumerate(self.hooks)
            if any(fnmatchcase(kind, pattern) for pattern in hook.events)
        ]
        if not matching:
            return
        at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        deliveries, failures = [], []
        for i in matching:
            delivery_id = str(uuid.uuid4())
            content: Mapping[str, Any] = payload
            if self.hooks[i].envelope:
                content = {
                    "id": delivery_id,
                    "kind": kind,
                    "subject": subject,
                    "at": at,
                    "actor": self.actor if actor is None else actor,
                    "data": payload,
                }
            try:
                # Encoded now: the caller may change ``payload`` as soon as we return.
                body = json.dumps(content, default=str, ensure_ascii=False).encode()
            except (TypeError, ValueError) as e:
                delivery = _Delivery(i, delivery_id, kind, subject, b"")
                failures.append(self._failure(delivery, f"the payload is not JSON: {e}"))
                continue
            deliveries.append(_Delivery(i, delivery_id, kind, subject, body))
        with self._cond:
            if self._closed:
                for d in deliveries:
                    d.settled = True
                    failures.append(self._failure(d, "the webhook dispatcher is closed"))
            else:
                now = time.monotonic()
                for d in deliveries:
                    heapq.heappush(self._queue, (now, next(self._order), d))
                self._start_workers()
                self._cond.notify_all()
        for failure in failures:
            self._report(failure)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until nothing is queued or being sent; True when
        that happened (retries still waiting for their turn count as queued)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking notifications and spend at most ``timeout`` seconds delivering what
        is pending (retries included, while they fit in the time left).

        Whatever is still undelivered then is reported through ``on_failure`` before
        this returns; after that no request is started and nothing more is reported.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            deadline = time.monotonic() + max(0.0, timeout)
            self._deadline = deadline
            self._cond.notify_all()
            while True:
                left = deadline - time.monotonic()
                can_progress = self._active or any(due <= deadline for due, _, _ in self._queue)
                if left <= 0 or not can_progress:
                    break
                self._cond.wait(left)
            self._stopped = True
            leftovers = [d for _, _, d in self._queue] + [d for d in self._active]
            self._queue.clear()
            failures = []
            for d in leftovers:
                if not d.settled:
                    d.settled = True
                    failures.append(
                        self._failure(d, f"still undelivered when modelcycle closed ({d.reason})")
                    )
            self._cond.notify_all()
        for failure in failures:
            self._report(failure)

    # -- the workers' side -----------------------------------------------------------
    def _start_workers(self) -> None:
        while len(self._threads) < self._workers:
            thread = threading.Thread(
                target=self._work, name=f"modelcycle-webhooks-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                delivery = self._next_due()
                if delivery is None:
                    return
                self._active.add(delivery)
            try:
                self._attempt(delivery)
            except Exception as e:
                # A bug here must neither kill the worker nor lose the delivery silently.
                log.exception("webhook delivery %s failed unexpectedly", delivery.id)
                self._finish(delivery, f"internal error: {e!r}")
            finally:
                with self._cond:
                    self._active.discard(delivery)
                    self._cond.notify_all()

    def _next_due(self) -> _Delivery | None:
        while not self._stopped:
            now = time.monotonic()
            if self._queue and self._queue[0][0] <= now:
                return heapq.heappop(self._queue)[2]
            self._cond.wait(self._queue[0][0] - now if self._queue else None)
        return None

    def _attempt(self, d: _Delivery) -> None:
        hook = self.hooks[d.hook]
        secret_error = self._secret_errors[d.hook]
        if secret_error is not None:
            self._finish(d, f"not sent: {secret_error}")
            return
        timeout = hook.timeout_seconds
        with self._cond:
            if self._deadline is not None:
                timeout = min(timeout, self._deadline - time.monotonic())
        if timeout <= 0:
            self._finish(d, f"still undelivered when modelcycle closed ({d.reason})")
            return
        d.attempts += 1
        answer = self._post(hook, d, timeout, self._secrets[d.hook])
        d.status, d.reason = answer.status, answer.reason
        if answer.ok:
            with self._cond:
                d.settled = True
            log.debug("webhook delivery %s: %s", d.id, answer.reason)
            return
        if not answer.retry:
            self._finish(d, answer.reason)
        elif d.attempts >= hook.max_attempts:
            self._finish(d, f"{answer.reason}; gave up after {d.attempts} attempts")
        elif answer.retry_after is not None and answer.retry_after > self.max_retry_after:
            self._finish(
                d,
                f"{answer.reason}; the receiver asked to retry after {answer.retry_after:g} s, "
                f"more than the {self.max_retry_after:g} s modelcycle waits",
            )
        else:
            delay = answer.retry_after
            if delay is None:
                delay = retry_delay(
                    d.attempts, base=self.backoff_base, cap=self.backoff_cap, rng=self._rng
                )
            self._retry_later(d, delay)

    def _post(
        self, hook: WebhookConfig, d: _Delivery, timeout: float, secret: str | None
    ) -> _Answer:
        # Later entries win (urllib folds names to one case); the hook's own headers can
        # replace the User-Agent, and come before the ones receivers rely on.
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **dict(hook.headers),
            "X-Modelcycle-Event": d.kind,
            "X-Modelcycle-Delivery": d.id,
        }
        if secret is not None:
            headers["X-Modelcycle-Signature"] = sign(secret, d.body)
        request = urllib.request.Request(hook.url, data=d.body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(_ANSWER_LIMIT)
                return _Answer(True, False, f"HTTP {response.status}", response.status)
        except urllib.error.HTTPError as e:
            with e:
                text = _answer_text(e)
                status = e.code
                retry = status in RETRIED_STATUSES or status >= 500
                retry_after = parse_retry_after(e.headers.get("Retry-After")) if retry else None
            reason = f"HTTP {status} {e.reason}" + (f": {text}" if text else "")
            if 300 <= status < 400:
                reason += "; redirects are not followed, configure the final URL"
            return _Answer(False, retry, reason, status, retry_after)
        except TimeoutError:
            return _Answer(False, True, f"no answer within {timeout:g} s")
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                return _Answer(False, True, f"no answer within {timeout:g} s")
            return _Answer(False, True, f"cannot connect: {e.reason}")
        except (OSError, http.client.HTTPException) as e:
            return _Answer(False, True, f"connection failed: {e!r}")
        except ValueError as e:  # a URL urllib cannot use
            return _Answer(False, False, f"cannot send to this URL: {e}")

    def _retry_later(self, d: _Delivery, delay: float) -> None:
        due = time.monotonic() + delay
        with self._cond:
            if d.settled:
                return
            if not self._stopped and (self._deadline is None or due <= self._deadline):
                heapq.heappush(self._queue, (due, next(self._order), d))
                self._cond.notify_all()
                return
        self._finish(
            d,
            f"still undelivered when modelcycle closed ({d.reason}; "
            f"next attempt was due in {delay:.1f} s)",
        )

    def _finish(self, d: _Delivery, reason: str) -> None:
        """Report ``d`` as failed, unless it was settled already."""
        with self._cond:
            if d.settled:
                return
            d.settled = True
        self._report(self._failure(d, reason))

    # -- reporting -------------------------------------------------------------------
    def _failure(self, d: _Delivery, reason: str) -> FailedDelivery:
        hook = self.hooks[d.hook]
        return FailedDelivery(
            hook=d.hook,
            url=hook.url_for_display(),
            delivery_id=d.id,
            kind=d.kind,
            subject=d.subject,
            attempts=d.attempts,
            reason=reason,
            status=d.status,
            label=hook.label or f"webhooks[{d.hook}]",
        )

    def _report(self, failure: FailedDelivery) -> None:
        log.warning(
            "webhook %s (%s) missed %s %s: %s",
            failure.url,
            failure.label or f"webhooks[{failure.hook}]",
            failure.kind,
            failure.subject,
            failure.reason,
        )
        if self.on_failure is None:
            return
        try:
            self.on_failure(failure)
        except Exception:
            # The callback is the caller's code; its failure is theirs to see in the log,
            # and must not stop the other deliveries.
            log.exception(
                "the webhook failure callback failed for delivery %s", failure.delivery_id
            )


def _answer_text(error: urllib.error.HTTPError) -> str:
    try:
        raw = error.read(200)
    except (OSError, http.client.HTTPException):
        return ""
    return raw.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
