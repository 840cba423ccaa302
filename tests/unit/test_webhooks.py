"""Webhooks, delivered to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import modelcycle
from modelcycle.core.config import WebhookConfig
from modelcycle.core.webhooks import (
    FailedDelivery,
    WebhookDispatcher,
    parse_retry_after,
    retry_delay,
    sign,
)

BOUND = 10.0  # the longest any test waits for something that should take milliseconds
HANG = -1  # a scripted "status" that keeps the request waiting until the receiver stops


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server that records every POST and answers from a script (then 200)."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, *answers: int | tuple[int, dict[str, str]]) -> None:
        for a in answers:
            self.script.append(a if isinstance(a, tuple) else (a, {}))

    def wait_for(self, count: int) -> list[Received]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.received) >= count, BOUND)
            return list(self.received)

    def record(self, request: Received) -> tuple[int, dict[str, str]]:
        with self.changed:
            self.received.append(request)
            self.changed.notify_all()
            return self.script.pop(0) if self.script else (200, {})

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(BOUND)


def start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, headers = receiver.record(
                Received(self.path, dict(self.headers.items()), body, time.monotonic())
            )
            if status == HANG:
                receiver.release.wait(BOUND)
                status = 200
            try:
                self.send_response(status)
                for name, value in {"Content-Length": "2", **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(b"no")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, which is what a HANG test wants

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    receiver = Receiver(server, thread)
    thread.start()
    return receiver


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = start_receiver()
    try:
        yield r
    finally:
        r.stop()


@dataclass
class Harness:
    failures: list[FailedDelivery] = field(default_factory=list)
    dispatchers: list[WebhookDispatcher] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_failure(self, failure: FailedDelivery) -> None:
        with self.lock:
            self.failures.append(failure)

    def dispatcher(self, *hooks: WebhookConfig, **options: Any) -> WebhookDispatcher:
        options.setdefault("backoff_base", 0.01)
        options.setdefault("backoff_cap", 0.05)
        d = WebhookDispatcher(hooks, on_failure=self.on_failure, actor="ana", **options)
        self.dispatchers.append(d)
        return d


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    for d in h.dispatchers:
        d.close(timeout=BOUND)


def signature_of(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def free_port() -> int:
    """A port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---------------------------------------------------------------- what is sent


def test_a_delivery_is_signed_json(receiver: Receiver, harness: Harness) -> None:
    d = harness.dispatcher(WebhookConfig(receiver.url + "/hook", secret="s3cret"))
    before = dt.datetime.now(dt.UTC)
    d.notify("model.registered", "churn@1", {"run_id": "abc", "at": dt.date(2025, 1, 2)})
    (got,) = receiver.wait_for(1)
    assert d.flush(BOUND)

    assert got.path == "/hook"
    body = got.json()
    assert set(body) == {"id", "kind", "subject", "at", "actor", "data"}
    assert body["kind"] == "model.registered"
    assert body["subject"] == "churn@1"
    assert body["actor"] == "ana"
    assert body["data"] == {"run_id": "abc", "at": "2025-01-02"}
    at = dt.datetime.fromisoformat(body["at"])
    assert at.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= at <= dt.datetime.now(dt.UTC)

    headers = got.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"modelcycle/{modelcycle.__version__}"
    assert headers["X-Modelcycle-Event"] == "model.registered"
    assert headers["X-Modelcycle-Delivery"] == body["id"]
    assert headers["X-Modelcycle-Signature"] == signature_of("s3cret", got.body)
    assert sign("s3cret", got.body) == signature_of("s3cret", got.body)
    assert harness.failures == []


def test_without_a_secret_there_is_no_signature(receiver: Receiver, harness: Harness) -> None:
    d = harness.dispatcher(WebhookConfig(receiver.url))
    d.notify("model.stage", "churn@1", {"from": "registered", "to": "staging"}, actor="bot")
    (got,) = receiver.wait_for(1)
    assert "X-Modelcycle-Signature" not in got.headers
    assert got.json()["actor"] == "bot"


def test_the_secret_can_come_from_the_environment(receiver: Receiver, harness: Harness) -> None:
    hook = WebhookConfig(receiver.url, secret_env="HOOK_SECRET")
    d = harness.dispatcher(hook, environ={"HOOK_SECRET": "from-env"})
    d.notify("model.registered", "churn@1", {})
    (got,) = receiver.wait_for(1)
    assert got.headers["X-Modelcycle-Signature"] == signature_of("from-env", got.body)


def test_a_missing_secret_variable_sends_nothing_and_says_why(
    receiver: Receiver, harness: Harness
) -> None:
    d = harness.dispatcher(WebhookConfig(receiver.url, secret_env="HOOK_SECRET"), environ={})
    d.notify("model.registered", "churn@1", {})
    assert d.flush(BOUND)
    assert receiver.received == []
    (failure,) = harness.failures
    assert failure.attempts == 0
    assert "HOOK_SECRET" in failure.reason


def test_each_hook_gets_its_own_delivery_id(receiver: Receiver, harness: Harness) -> None:
    d = harness.dispatcher(WebhookConfig(receiver.url + "/a"), WebhookConfig(receiver.url + "/b"))
    d.notify("model.retired", "churn@1", {})
    got = receiver.wait_for(2)
    assert sorted(r.path for r in got) == ["/a", "/b"]
    assert len({r.headers["X-Modelcycle-Delivery"] for r in got}) == 2


# ---------------------------------------------------------------- which events


def test_hooks_get_only_the_events_they_ask_for(receiver: Receiver, harness: Harness) -> None:
    d = harness.dispatcher(
        WebhookConfig(receiver.url + "/aliases", events=("model.alias.*",)),
        WebhookConfig(receiver.url + "/stages", events=("model.stage", "model.retired")),
        WebhookConfig(receiver.url + "/default"),  # events = ("model.*",)
    )
    for kind in (
        "model.registered",
        "model.alias.set",
        "model.alias.removed",
        "model.stage",
        "model.retired",
        "dataset.version.created",
        "models.other",
        "MODEL.registered",
    ):
        d.notify(kind, "churn@1", {})
    assert d.flush(BOUND)
    seen: dict[str, list[str]] = {}
    for r in receiver.received:
        seen.setdefault(r.path, []).append(r.headers["X-Modelcycle-Event"])
    assert sorted(seen["/aliases"]) == ["model.alias.removed", "model.alias.set"]
    assert sorted(seen["/stages"]) == ["model.retired", "model.stage"]
    assert sorted(seen["/default"]) == [
        "model.alias.removed",
        "model.alias.set",
        "model.registered",
        "model.retired",
        "model.stage",
    ]


def test_without_hooks_notify_does_nothing(harness: Harness) -> None:
    d = harness.dispatcher()
    d.notify("model.registered", "churn@1", {})
    assert d.flush(BOUND)
    d.close(timeout=BOUND)
    assert harness.failures == []


# ---------------------------------------------------------------- retries


def test_server_errors_are_retried_with_the_same_delivery(
    receiver: Receiver, harness: Harness
) -> None:
    receiver.answer(500, 500)
    d = harness.dispatcher(WebhookConfig(receiver.url, secret="k"))
    d.notify("model.registered", "churn@1", {"run_id": "abc"})
    got = receiver.wait_for(3)
    assert d.flush(BOUND)
    assert len(receiver.received) == 3
    assert len({r.headers["X-Modelcycle-Delivery"] for r in got}) == 1
    assert len({r.body for r in got}) == 1
    assert all(r.headers["X-Modelcycle-Signature"] == signature_of("k", r.body) for r in got)
    assert harness.failures == []


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retried_statuses(receiver: Receiver, harness: Harness, status: int) -> None:
    receiver.answer(status)
    d = harness.dispatcher(WebhookConfig(receiver.url))
    d.notify("model.registered", "churn@1", {})
    receiver.wait_for(2)
    assert d.flush(BOUND)
    assert len(receiver.received) == 2
    assert harness.failures == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_client_errors_are_final(receiver: Receiver, harness: Harness, status: int) -> None:
    receiver.answer(status)
    d = harness.dispatcher(WebhookConfig(receiver.url))
    d.notify("model.alias.set", "churn@2", {"alias": "champion"})
    assert d.flush(BOUND)
    assert len(receiver.received) == 1
    (failure,) = harness.failures
    assert failure.status == status
    assert failure.attempts == 1
    assert failure.kind == "model.alias.set"
    assert failure.subject == "churn@2"
    assert failure.delivery_id == receiver.received[0].headers["X-Modelcycle-Delivery"]
    assert str(status) in failure.reason
    assert failure.hook == 0
    assert failure.to_dict()["reason"] == failure.reason


def test_redirects_are_not_followed(receiver: Receiver, harness: Harness) -> None:
    receiver.answer((302, {"Location": receiver.url + "/elsewhere"}))
    d = harness.dispatcher(WebhookConfig(receiver.url + "/hook"))
    d.notify("model.registered", "churn@1", {})
    assert d.flush(BOUND)
    assert [r.path for r in receiver.received] == ["/hook"]
    (failure,) = harness.failures
    assert failure.status == 302
    assert "redirect" in failure.reason


def test_the_last_failure_is_reported_after_max_attempts(
    receiver: Receiver, harness: Harness
) -> None:
    receiver.answer(503, 503, 503, 503)
    d = harness.dispatcher(WebhookConfig(receiver.url, max_attempts=3))
    d.notify("model.registered", "churn@1", {})
    assert d.flush(BOUND)
    assert len(receiver.received) == 3
    (failure,) = harness.failures
    assert failure.attempts == 3
    assert failure.status == 503
    assert "gave up after 3 attempts" in failure.reason


def test_a_receiver_that_is_down(harness: Harness) -> None:
    d = harness.dispatcher(WebhookConfig(f"http://127.0.0.1:{free_port()}/hook", max_attempts=3))
    d.notify("model.registered", "churn@1", {})
    assert d.flush(BOUND)
    (failure,) = harness.failures
    assert failure.attempts == 3
    assert failure.status is None
    assert "cannot connect" in failure.reason
    assert failure.url == f"{d.hooks[0].url.rsplit('/', 1)[0]}/…"


def test_a_receiver_that_does_not_answer_in_time(receiver: Receiver, harness: Harness) -> None:
    receiver.answer(HANG, HANG)
    d = harness.dispatcher(WebhookConfig(receiver.url, max_attempts=2, timeout_seconds=0.2))
    d.notify("model.registered", "churn@1", {})
    assert d.flush(BOUND)
    assert len(receiver.received) == 2
    (failure,) = harness.failures
    assert "no answer within 0.2 s" in failure.reason


def test_retry_after_is_honoured(receiver: Receiver, harness: Harness) -> None:
    # Backoff alone would retry within 0.05 s; the receiver asks for 1 s.
    receiver.answer((503, {"Retry-After": "1"}))
    d = harness.dispatcher(WebhookConfig(receiver.url))
    d.notify("model.registered", "churn@1", {})
    first, second = receiver.wait_for(2)
    assert second.at - first.at >= 0.9
    assert d.flush(BOUND)
    assert harness.failures == []


def test_a_retry_after_beyond_the_limit_is_a_failure(receiver: Receiver, harness: Harness) -> None:
    receiver.answer((429, {"Retry-After": "120"}))
    d = harness.dispatcher(WebhookConfig(receiver.url), max_retry_after=5)
    d.notify("model.registered", "churn@1", {})
    assert d.flush(BOUND)
    assert len(receiver.received) == 1
    (failure,) = harness.failures
    assert failure.status == 429
    assert "120" in failure.reason


# ---------------------------------------------------------------- closing


def test_close_delivers_what_is_pending(receiver: Receiver, harness: Harness) -> None:
    receiver.answer(HANG)  # holds the only worker until released
    d = harness.dispatcher(WebhookConfig(receiver.url), workers=1)
    for i in range(10):
        d.notify("model.registered", f"churn@{i + 1}", {})
    receiver.wait_for(1)
    assert len(receiver.received) == 1  # nine are still queued behind the held request

    closer = threading.Thread(target=d.close, kwargs={"timeout": BOUND})
    closer.start()
    receiver.release.set()
    closer.join(BOUND * 2)
    assert not closer.is_alive()
    assert sorted(r.json()["subject"] for r in receiver.received) == sorted(
        f"churn@{i + 1}" for i in range(10)
    )
    assert harness.failures == []


def test_close_retries_within_its_time(receiver: Receiver, harness: Harness) -> None:
    receiver.answer(500)
    d = harness.dispatcher(WebhookConfig(receiver.url))
    d.notify("model.registered", "churn@1", {})
    d.close(timeout=BOUND)
    assert len(receiver.received) == 2
    assert harness.failures == []


def test_close_reports_a_retry_that_would_come_too_late(harness: Harness) -> None:
    d = harness.dispatcher(
        WebhookConfig(f"http://127.0.0.1:{free_port()}/hook"), backoff_base=600, backoff_cap=600
    )
    d.notify("model.registered", "churn@1", {})
    d.close(timeout=BOUND)  # the first retry is due in 300 s or more: no use waiting
    (failure,) = harness.failures
    assert failure.attempts == 1
    assert "closed" in failure.reason
    assert "cannot connect" in failure.reason


def test_close_is_bounded_by_its_timeout(receiver: Receiver, harness: Harness) -> None:
    receiver.answer(HANG)
    d = harness.dispatcher(WebhookConfig(receiver.url, timeout_seconds=60), workers=1)
    d.notify("model.registered", "churn@1", {})
    d.notify("model.registered", "churn@2", {})
    receiver.wait_for(1)
    d.close(timeout=0.2)
    failed = sorted(harness.failures, key=lambda f: f.subject)
    assert [f.subject for f in failed] == ["churn@1", "churn@2"]
    assert all("closed" in f.reason for f in failed)
    assert failed[0].attempts == 1  # in flight when time ran out
    assert failed[1].attempts == 0  # never got its turn
    receiver.release.set()
    assert d.flush(BOUND)
    assert len(harness.failures) == 2  # nothing is reported after close returns


def test_notify_after_close_is_reported(receiver: Receiver, harness: Harness) -> None:
    d = harness.dispatcher(WebhookConfig(receiver.url))
    d.close(timeout=BOUND)
    d.notify("model.registered", "churn@1", {})
    (failure,) = harness.failures
    assert "closed" in failure.reason
    assert receiver.received == []


# ---------------------------------------------------------------- never raises, never loses


def test_a_payload_that_is_not_json_is_reported(receiver: Receiver, harness: Harness) -> None:
    d = harness.dispatcher(WebhookConfig(receiver.url))
    d.notify("model.registered", "churn@1", {"bad": {(1, 2): "tuple keys"}})
    d.notify("model.registered", "churn@2", {})
    assert d.flush(BOUND)
    (failure,) = harness.failures
    assert failure.subject == "churn@1"
    assert "not JSON" in failure.reason
    assert [r.json()["subject"] for r in receiver.received] == ["churn@2"]


def test_a_failing_callback_does_not_stop_deliveries(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken(failure: FailedDelivery) -> None:
        calls.append(failure.subject)
        raise RuntimeError("callback bug")

    receiver.answer(404, 404)
    d = WebhookDispatcher([WebhookConfig(receiver.url)], on_failure=broken, workers=1)
    try:
        with caplog.at_level(logging.WARNING, logger="modelcycle.webhooks"):
            d.notify("model.registered", "churn@1", {})
            d.notify("model.registered", "churn@2", {})
            d.notify("model.registered", "churn@3", {})
            assert d.flush(BOUND)
    finally:
        d.close(timeout=BOUND)
    assert sorted(calls) == ["churn@1", "churn@2"]
    assert len(receiver.received) == 3
    assert "callback bug" in caplog.text


def test_concurrent_notifications_are_all_delivered(receiver: Receiver, harness: Harness) -> None:
    d = harness.dispatcher(WebhookConfig(receiver.url))
    start = threading.Barrier(8)

    def send(thread: int) -> None:
        start.wait(BOUND)
        for i in range(25):
            d.notify("model.registered", f"m{thread}@{i}", {"i": i})

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
    d.close(timeout=BOUND)
    subjects = [r.json()["subject"] for r in receiver.received]
    assert len(subjects) == 200
    assert set(subjects) == {f"m{t}@{i}" for t in range(8) for i in range(25)}
    assert harness.failures == []


# ---------------------------------------------------------------- the timing rules


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (200, 4.0)]:
        for _ in range(50):
            delay = retry_delay(retry, base=0.5, cap=4.0, rng=rng)
            assert ceiling / 2 <= delay <= ceiling
    delays = {retry_delay(3, base=0.5, cap=4.0, rng=rng) for _ in range(20)}
    assert len(delays) > 1


def test_parse_retry_after() -> None:
    now = dt.datetime(2025, 1, 31, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("Fri, 31 Jan 2025 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Fri, 31 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
