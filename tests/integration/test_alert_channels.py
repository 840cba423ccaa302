"""Alert channels: specs parsed with errors that name the mistake, the Slack message, and
delivery to real HTTP receivers on 127.0.0.1 and to real files; and the webhook options
(extra headers, a bare body, a label) the HTTP channels are built on."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelcycle.core.config import WebhookConfig, WorkspaceConfig, check_webhook_headers
from modelcycle.core.errors import UsageError
from modelcycle.core.webhooks import FailedDelivery, WebhookDispatcher
from modelcycle.monitoring.channels import (
    EVENT_KIND,
    AlertDispatcher,
    ChannelFailure,
    ChannelSpec,
    EventsChannel,
    FileChannel,
    SlackChannel,
    WebhookChannel,
    alert_kind,
    parse_channel,
    parse_channels,
    slack_message,
)

BOUND = 10.0  # the longest any test waits for something that should take milliseconds

ALERT: dict[str, Any] = {
    "id": 12,
    "monitor": "churn-drift",
    "deployment": "churn",
    "rule": "drift_share > 0.3",
    "metric": "drift_share",
    "value": 0.42,
    "threshold": 0.3,
    "op": ">",
    "severity": "warning",
    "state": "firing",
    "fired_at": "2025-03-04T05:06:07+00:00",
    "result_id": 57,
    "evidence": {
        "result_id": 57,
        "summary": "2 of 4 columns drifted: a, b",
        "window": ["2025-03-04T04:06:07+00:00", "2025-03-04T05:06:07+00:00"],
        "rows": 800,
        "show": "modelcycle monitor show churn-drift --result 57",
    },
    "message": "drift_share is 0.42 > 0.3 on churn (monitor churn-drift)",
}


# ---------------------------------------------------------------- a receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, headers = receiver.record(Received(self.path, dict(self.headers), body))
            self.send_response(status)
            for name, value in {"Content-Length": "2", **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    receiver = Receiver(server, thread)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(BOUND)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    """A port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def signature_of(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- the monitor's side


@dataclass
class Harness:
    """What the monitor service passes in: an event log and a failure callback."""

    base: Path
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    failures: list[ChannelFailure] = field(default_factory=list)
    failed: threading.Condition = field(default_factory=threading.Condition)
    dispatchers: list[AlertDispatcher] = field(default_factory=list)
    broken_event_log: bool = False

    def record_event(self, kind: str, subject: str, data: dict[str, Any]) -> None:
        if self.broken_event_log:
            raise RuntimeError("database is locked")
        self.events.append((kind, subject, data))

    def on_failure(self, failure: ChannelFailure) -> None:
        with self.failed:
            self.failures.append(failure)
            self.failed.notify_all()

    def wait_for_failures(self, count: int) -> list[ChannelFailure]:
        with self.failed:
            assert self.failed.wait_for(lambda: len(self.failures) >= count, BOUND)
            return list(self.failures)

    def dispatcher(self, *specs: Any, **options: Any) -> AlertDispatcher:
        options.setdefault("backoff_base", 0.01)
        options.setdefault("backoff_cap", 0.05)
        channels: list[ChannelSpec] = parse_channels(list(specs))
        d = AlertDispatcher(
            channels,
            base_dir=self.base,
            record_event=self.record_event,
            on_failure=self.on_failure,
            actor="monitor",
            **options,
        )
        self.dispatchers.append(d)
        return d


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "ws")
    yield h
    for d in h.dispatchers:
        d.close(timeout=BOUND)


# ---------------------------------------------------------------- webhook


def test_webhook_posts_the_alert_signed_and_with_its_headers(
    receiver: Receiver, harness: Harness
) -> None:
    d = harness.dispatcher(
        {
            "type": "webhook",
            "url": receiver.url + "/signed",
            "secret": "s3cret",
            "headers": {"Authorization": "Bearer t0k", "X-Team": "ml"},
        },
        {"type": "webhook", "url": receiver.url + "/env", "secret_env": "ALERT_SECRET"},
        f"webhook={receiver.url}/plain",
        environ={"ALERT_SECRET": "from-env"},
    )
    records = d.deliver(ALERT)
    assert [(r.type, r.status) for r in records] == [
        ("webhook", "queued"),
        ("webhook", "queued"),
        ("webhook", "queued"),
        ("events", "done"),  # always added
    ]
    assert records[0].target == receiver.url + "/…"  # no path: it may hold a token
    assert d.flush(BOUND)
    got = {r.path: r for r in receiver.wait_for(3)}
    assert set(got) == {"/signed", "/env", "/plain"}

    signed = got["/signed"]
    body = signed.json()
    assert set(body) == {"id", "kind", "subject", "at", "actor", "data"}
    assert body["kind"] == "alert.fired" and body["subject"] == "churn-drift#12"
    assert body["actor"] == "monitor"
    assert body["data"] == ALERT
    assert signed.headers["Content-Type"] == "application/json"
    assert signed.headers["X-Modelcycle-Event"] == "alert.fired"
    assert signed.headers["X-Modelcycle-Delivery"] == body["id"]
    assert signed.headers["X-Modelcycle-Signature"] == signature_of("s3cret", signed.body)
    assert signed.headers["Authorization"] == "Bearer t0k"
    assert signed.headers["X-Team"] == "ml"

    env = got["/env"]
    assert env.headers["X-Modelcycle-Signature"] == signature_of("from-env", env.body)
    assert "Authorization" not in env.headers
    assert env.json()["data"] == ALERT
    plain = got["/plain"]
    assert "X-Modelcycle-Signature" not in plain.headers
    assert plain.json()["data"] == ALERT

    assert harness.events == [(EVENT_KIND, "churn-drift", ALERT)]
    assert harness.failures == []


def test_a_503_is_retried_then_delivered(receiver: Receiver, harness: Harness) -> None:
    receiver.answer((503, {"Retry-After": "0"}), 503)
    d = harness.dispatcher(f"webhook={receiver.url}", max_attempts=3)
    d.deliver(ALERT)
    first, second, third = receiver.wait_for(3)
    assert d.flush(BOUND)
    assert first.body == second.body == third.body  # the same delivery, sent again
    assert first.headers["X-Modelcycle-Delivery"] == third.headers["X-Modelcycle-Delivery"]
    d.close(BOUND)
    assert len(receiver.received) == 3
    assert harness.failures == []


def test_a_receiver_that_is_down_is_reported_after_the_retries(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelcycle")
    url = f"http://127.0.0.1:{free_port()}/alerts/t0ken"
    d = harness.dispatcher(f"webhook={url}", "file=alerts.jsonl", max_attempts=3)
    records = d.deliver(ALERT)  # nothing raised into the monitor loop
    assert [r.status for r in records] == ["queued", "done", "done"]

    (failure,) = harness.wait_for_failures(1)
    assert failure.type == "webhook" and failure.channel == 0
    # Logged as the alert channel it is, not as the workspace's webhooks[0].
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "modelcycle.webhooks"]
    assert "(alert channels[0]) missed alert.fired churn-drift#12" in logged
    assert "webhooks[" not in logged
    assert failure.monitor == "churn-drift" and failure.alert == 12
    assert failure.attempts == 3
    assert "cannot connect" in failure.reason and "gave up after 3 attempts" in failure.reason
    assert failure.status is None and failure.delivery_id
    assert "t0ken" not in failure.target and "t0ken" not in json.dumps(failure.to_dict())
    d.close(BOUND)
    assert len(harness.failures) == 1  # reported once, not again when closing
    # The other channels did their part.
    assert (harness.base / "alerts.jsonl").read_text().count("\n") == 1
    assert [e[0] for e in harness.events] == [EVENT_KIND]


def test_a_final_answer_is_not_retried(receiver: Receiver, harness: Harness) -> None:
    receiver.answer((400, {}))
    d = harness.dispatcher(f"slack={receiver.url}/services/T1/B2/xyz", max_attempts=5)
    d.deliver(ALERT)
    (failure,) = harness.wait_for_failures(1)
    assert failure.type == "slack" and failure.status == 400 and failure.attempts == 1
    assert len(receiver.received) == 1


def test_close_reports_what_is_still_pending(receiver: Receiver, harness: Harness) -> None:
    receiver.answer((503, {"Retry-After": "30"}))  # the retry would come after close
    d = harness.dispatcher(f"webhook={receiver.url}", max_attempts=3)
    d.deliver(ALERT)
    receiver.wait_for(1)
    d.close(timeout=0.5)
    (failure,) = harness.failures
    assert "still undelivered" in failure.reason and failure.alert == 12
    # A closed dispatcher refuses new alerts, on every channel, and says so.
    records = d.deliver({**ALERT, "id": 13})
    assert {r.status for r in records} == {"failed"}
    assert [(f.alert, f.attempts) for f in harness.failures[1:]] == [(13, 0), (13, 0)]
    assert len(receiver.received) == 1


def test_a_missing_secret_variable_is_reported_not_sent(
    receiver: Receiver, harness: Harness
) -> None:
    d = harness.dispatcher(
        {"type": "webhook", "url": receiver.url, "secret_env": "NOT_SET_ANYWHERE"}, environ={}
    )
    d.deliver(ALERT)
    (failure,) = harness.wait_for_failures(1)
    assert failure.attempts == 0 and "NOT_SET_ANYWHERE" in failure.reason
    assert receiver.received == []


# ---------------------------------------------------------------- the webhook options channels use


@pytest.fixture
def hooks() -> Iterator[list[WebhookDispatcher]]:
    made: list[WebhookDispatcher] = []
    yield made
    for d in made:
        d.close(timeout=BOUND)


def test_a_hook_sends_its_headers_beside_modelcycle_s_own(
    receiver: Receiver, hooks: list[WebhookDispatcher]
) -> None:
    hook = WebhookConfig(
        receiver.url + "/h",
        events=("alert.*",),
        secret="k",
        headers=(("Authorization", "Bearer t0k"), ("X-Team", "ml"), ("User-Agent", "ours/1")),
    )
    d = WebhookDispatcher([hook], actor="monitor")
    hooks.append(d)
    d.notify("model.registered", "m@1", {})  # no hook listens to it
    d.notify("alert.fired", "m#1", {"id": 1})
    assert d.flush(BOUND)
    (got,) = receiver.wait_for(1)
    assert got.headers["Authorization"] == "Bearer t0k"
    assert got.headers["X-Team"] == "ml"
    assert got.headers["User-Agent"] == "ours/1"  # the one modelcycle header a hook may set
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Modelcycle-Event"] == "alert.fired"
    assert got.headers["X-Modelcycle-Delivery"] == got.json()["id"]
    assert got.headers["X-Modelcycle-Signature"] == signature_of("k", got.body)
    assert got.json()["data"] == {"id": 1}  # the envelope, as by default
    assert "Bearer" not in repr(hook)


def test_without_the_envelope_the_payload_is_the_signed_body(
    receiver: Receiver, hooks: list[WebhookDispatcher]
) -> None:
    payload = {"text": "drift on churn — 0.42 > 0.3", "n": [1, 2.5, None]}
    d = WebhookDispatcher(
        [
            WebhookConfig(receiver.url + "/bare", events=("alert.*",), secret="k", envelope=False),
            WebhookConfig(receiver.url + "/wrapped", events=("alert.*",)),
        ]
    )
    hooks.append(d)
    d.notify("alert.fired", "m#1", payload)
    got = {r.path: r for r in receiver.wait_for(2)}
    bare = got["/bare"]
    assert bare.body == json.dumps(payload, ensure_ascii=False).encode()
    assert bare.json() == payload
    assert bare.headers["X-Modelcycle-Signature"] == signature_of("k", bare.body)
    assert bare.headers["X-Modelcycle-Event"] == "alert.fired"
    assert bare.headers["X-Modelcycle-Delivery"]  # still there for receivers to dedupe
    wrapped = got["/wrapped"]
    assert wrapped.json()["data"] == payload
    assert wrapped.json()["id"] == wrapped.headers["X-Modelcycle-Delivery"]
    assert wrapped.headers["X-Modelcycle-Delivery"] != bare.headers["X-Modelcycle-Delivery"]


def test_a_hook_s_label_names_it_in_failures_and_logs(
    hooks: list[WebhookDispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelcycle.webhooks")
    failures: list[FailedDelivery] = []
    url = f"http://127.0.0.1:{free_port()}/"
    d = WebhookDispatcher(
        [
            WebhookConfig(url + "a", events=("x",), max_attempts=1, label="the pager"),
            WebhookConfig(url + "b", events=("x",), max_attempts=1),
        ],
        on_failure=failures.append,
    )
    hooks.append(d)
    d.notify("x", "s", {})
    d.close(timeout=BOUND)
    assert {(f.hook, f.label) for f in failures} == {(0, "the pager"), (1, "webhooks[1]")}
    logged = sorted(r.getMessage() for r in caplog.records if r.name == "modelcycle.webhooks")
    assert len(logged) == 2
    assert "(the pager) missed x s" in logged[0] and "(webhooks[1]) missed x s" in logged[1]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((("X-Modelcycle-Signature", "sha256=0"),), "X-Modelcycle-Signature is set by modelcycle"),
        ((("x-modelcycle-delivery", "1"),), "x-modelcycle-delivery is set by modelcycle"),
        ((("Content-Type", "text/plain"),), "Content-Type is set by modelcycle"),
        ((("Host", "elsewhere"),), "Host is set by modelcycle"),
        ((("Content-Length", "0"),), "Content-Length is set by modelcycle"),
        ((("Bad Name", "v"),), "'Bad Name' is not a header name"),
        ((("X-A\n", "v"),), "is not a header name"),
        ((("X-A", "a\r\nX-B: b"),), "the value of X-A must be text on one line"),
        ((("X-A", "caf\u00e9 \u2713"),), "the value of X-A has characters an HTTP header cannot"),
        ((("X-A", "1"), ("x-a", "2")), "x-a is given twice"),
        ((("X-A",),), "must be (name, value) pairs"),
    ],
)
def test_bad_hook_headers_are_refused(headers: Any, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        WebhookConfig("https://hooks.example.com/t0ken", headers=headers)
    assert info.value.message.startswith("webhook https://hooks.example.com/… headers")
    assert expected in info.value.message and info.value.hint
    assert "t0ken" not in str(info.value)


def test_header_values_are_not_echoed() -> None:
    with pytest.raises(UsageError) as info:
        check_webhook_headers([("Authorization", "Bearer s3cr3t\n")], "here")
    assert "s3cr3t" not in str(info.value)
    assert check_webhook_headers([("a", "")], "here") == (("a", ""),)


def test_python_only_options_stay_out_of_modelcycle_toml(tmp_path: Path) -> None:
    assert WebhookConfig("https://h/", label="x") != WebhookConfig("https://h/")
    with pytest.raises(UsageError, match="empty"):
        WebhookConfig("https://h/", label=" ")
    for hook in (
        WebhookConfig("https://h/", headers=(("A", "b"),)),
        WebhookConfig("https://h/", envelope=False),
        WebhookConfig("https://h/", label="pager"),
    ):
        with pytest.raises(UsageError, match=r"modelcycle\.toml cannot hold") as info:
            WorkspaceConfig(tmp_path, webhooks=(hook,)).to_toml()
        assert info.value.hint


# ---------------------------------------------------------------- slack


def test_slack_gets_a_block_kit_message(receiver: Receiver, harness: Harness) -> None:
    d = harness.dispatcher(f"slack={receiver.url}/services/T1/B2/xyz")
    assert [r.status for r in d.deliver(ALERT)] == ["queued", "done"]
    (got,) = receiver.wait_for(1)
    assert got.path == "/services/T1/B2/xyz"
    assert got.headers["Content-Type"] == "application/json"
    assert int(got.headers["Content-Length"]) == len(got.body)
    assert "X-Modelcycle-Signature" not in got.headers
    assert got.body == json.dumps(slack_message(ALERT), ensure_ascii=False).encode()

    message = got.json()  # the bare message, not modelcycle's envelope
    assert set(message) == {"text", "blocks"}
    assert (
        message["text"] == "[warning] drift_share is 0.42 &gt; 0.3 on churn (monitor churn-drift)"
    )
    blocks = message["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    header = blocks[0]["text"]
    assert header["type"] == "plain_text" and len(header["text"]) <= 150
    assert "drift_share > 0.3" in header["text"] and "warning" in header["text"]
    assert blocks[1]["text"] == {
        "type": "mrkdwn",
        "text": "drift_share is 0.42 &gt; 0.3 on churn (monitor churn-drift)",
    }
    fields = blocks[2]["fields"]
    assert 1 <= len(fields) <= 10
    assert all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000 for f in fields)
    shown = {f["text"].split("\n", 1)[0]: f["text"].split("\n", 1)[1] for f in fields}
    assert shown["*Rule*"] == "`drift_share &gt; 0.3`"
    assert shown["*Value*"] == "0.42 (threshold &gt; 0.3)"
    assert shown["*Monitor*"] == "`churn-drift`"
    assert shown["*Deployment*"] == "`churn`"
    fired = int(dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC).timestamp())
    assert shown["*Fired at*"].startswith(f"<!date^{fired}^")
    assert shown["*Fired at*"].endswith("|2025-03-04 05:06:07 UTC>")
    (context,) = blocks[3]["elements"]
    assert context["type"] == "mrkdwn"
    assert "`57`" in context["text"] and "2 of 4 columns drifted: a, b" in context["text"]
    assert "`modelcycle monitor show churn-drift --result 57`" in context["text"]
    # Slack's control characters appear only in the date token.
    for text in [message["text"], blocks[1]["text"]["text"], context["text"]]:
        assert "<" not in text and ">" not in text
    assert harness.failures == []


# ---------------------------------------------------------------- file and events


def test_the_file_channel_appends_json_lines(harness: Harness, tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "deep" / "alerts.jsonl"
    d = harness.dispatcher("file=alerts/alerts.jsonl", {"type": "file", "path": str(absolute)})
    records = d.deliver(ALERT)
    d.deliver({**ALERT, "id": 13, "value": float("nan"), "state": "resolved"})
    relative = harness.base / "alerts" / "alerts.jsonl"
    assert records[0].target == str(relative) and records[0].status == "done"
    for path in (relative, absolute):
        raw = path.read_bytes()
        assert raw.endswith(b"\n") and raw.count(b"\n") == 2
        first, second = (json.loads(line) for line in raw.splitlines())
        assert first == ALERT
        assert second["id"] == 13 and second["value"] is None  # NaN is not JSON
    assert [(k, s, a["id"]) for k, s, a in harness.events] == [
        (EVENT_KIND, "churn-drift", 12),
        (EVENT_KIND, "churn-drift", 13),
    ]


def test_concurrent_writers_append_whole_lines(harness: Harness) -> None:
    writers, alerts_each = 8, 25
    # Lines far larger than a write buffer: a writer that wrote in pieces would interleave.
    filler = "x" * 100_000
    dispatchers = [harness.dispatcher("file=shared/alerts.jsonl") for _ in range(writers)]
    start = threading.Barrier(writers)

    def write(w: int) -> None:
        start.wait(BOUND)
        for n in range(alerts_each):
            alert = {**ALERT, "id": w * 1000 + n, "evidence": {"summary": filler}}
            assert dispatchers[w].deliver(alert)[0].status == "done"

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND * 3)
        assert not t.is_alive()
    lines = (harness.base / "shared" / "alerts.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]  # every line is whole JSON
    assert sorted(ids) == sorted(w * 1000 + n for w in range(writers) for n in range(alerts_each))
    assert harness.failures == []


def test_channels_that_fail_now_are_reported_and_the_others_still_run(
    harness: Harness,
) -> None:
    (harness.base / "a-folder").mkdir(parents=True)
    harness.broken_event_log = True
    d = harness.dispatcher("file=a-folder", "file=ok.jsonl")
    records = d.deliver(ALERT)  # does not raise
    assert [(r.type, r.status) for r in records] == [
        ("file", "failed"),
        ("file", "done"),
        ("events", "failed"),
    ]
    file_failure, events_failure = harness.failures
    assert file_failure.type == "file" and file_failure.alert == 12
    assert file_failure.attempts == 1
    assert "a-folder" in file_failure.reason  # the OSError names the path
    assert events_failure.type == "events" and "database is locked" in events_failure.reason
    assert (harness.base / "ok.jsonl").read_text().count("\n") == 1


def test_a_failing_failure_callback_does_not_escape(tmp_path: Path) -> None:
    def on_failure(failure: ChannelFailure) -> None:
        raise RuntimeError("callback bug")

    def record_event(kind: str, subject: str, data: dict[str, Any]) -> None:
        raise RuntimeError("store down")

    with AlertDispatcher(
        [], base_dir=tmp_path, record_event=record_event, on_failure=on_failure
    ) as d:
        (record,) = d.deliver(ALERT)
    assert record.status == "failed" and "store down" in (record.reason or "")


SLACK_URL = "https://hooks.slack.com/services/T000/B000/s3cr3tT0ken"

# ---------------------------------------------------------------- parsing specs


def test_cli_strings_and_mappings_give_the_same_channels() -> None:
    parsed = parse_channels(
        [
            "webhook=https://alerts.example.com/hook",
            f" slack={SLACK_URL} ",
            "file=alerts/alerts.jsonl",
            "events",
        ]
    )
    assert parsed == [
        WebhookChannel("https://alerts.example.com/hook"),
        SlackChannel(SLACK_URL),
        FileChannel("alerts/alerts.jsonl"),
        EventsChannel(),
    ]
    assert parse_channels([c.to_dict() for c in parsed]) == parsed


def test_a_full_webhook_round_trips_through_to_dict() -> None:
    spec = {
        "type": "webhook",
        "url": "https://alerts.example.com/p4th?token=t0k",
        "secret_env": "ALERT_SECRET",
        "headers": {"Authorization": "Bearer abc", "X-Team": "ml"},
    }
    (channel,) = parse_channels([spec])
    assert isinstance(channel, WebhookChannel)
    assert channel.headers == (("Authorization", "Bearer abc"), ("X-Team", "ml"))
    assert channel.to_dict() == spec
    assert parse_channel(channel.to_dict()) == channel
    # Neither the URL's path nor the headers show up where a channel is printed.
    assert "p4th" not in repr(channel) and "t0k" not in repr(channel)
    assert "Bearer" not in repr(channel)
    assert channel.describe() == "webhook https://alerts.example.com/…"
    assert "s3cr3t" not in SlackChannel(SLACK_URL).describe()


def test_a_lone_spec_counts_as_a_list_of_one() -> None:
    assert parse_channels("events") == [EventsChannel()]
    assert parse_channels({"type": "file", "path": "a.jsonl"}) == [FileChannel("a.jsonl")]
    assert parse_channels([]) == []


def usage_error(spec: Any) -> UsageError:
    with pytest.raises(UsageError) as info:
        parse_channels([spec])
    assert info.value.hint, "every error says how to fix it"
    return info.value


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (f"slak={SLACK_URL}", "channels[0] has an unknown type 'slak' (did you mean 'slack'?)"),
        ("webhok=https://x.io", "unknown type 'webhok' (did you mean 'webhook'?)"),
        ({"type": "emial"}, "unknown type 'emial'"),
        ("pagerduty", "unknown type 'pagerduty'"),
        ({"type": "webhook"}, "channels[0] (webhook) has no url"),
        ("slack=", "channels[0] (slack) has no url"),
        ("file=  ", "channels[0] (file) has no path"),
        ({"type": "file"}, "channels[0] (file) has no path"),
        ({"url": "https://x.io"}, "channels[0] has no type"),
        ({"type": 3}, "channels[0].type is 3, not text"),
        ("webhook=ftp://files.example.com/drop", "must be an http:// or https:// URL"),
        ({"type": "slack", "url": "hooks.slack.com/services/T/B/tok"}, "got 'hooks.slack.com/…'"),
        ("webhook=http://", "must be an http:// or https:// URL with a host"),
        ("webhook=http://host:99999/x", "must be an http:// or https:// URL"),
        ({"type": "slack", "url": 42}, "got a int"),
        (SLACK_URL, "channels[0] is a URL without a channel type"),
        ("events=everything", "events takes no target"),
        ("", "channels[0] is empty"),
        (3.5, "channels[0] is a float, not a channel"),
        ({"type": "webhook", "url": "https://x.io", "secrte": "a"}, "(did you mean 'secret'?)"),
        ({"type": "slack", "url": "https://x.io", "secret": "a"}, "unknown field 'secret'"),
        ({"type": "file", "path": 7}, "channels[0].path must be a file path, got 7"),
        (
            {"type": "webhook", "url": "https://x.io", "secret": "a", "secret_env": "B"},
            "sets both secret and secret_env",
        ),
        ({"type": "webhook", "url": "https://x.io", "secret_env": ""}, "secret_env must be"),
        ({"type": "webhook", "url": "https://x.io", "headers": ["a"]}, "headers must be a mapping"),
        (
            {"type": "webhook", "url": "https://x.io", "headers": {"Bad Name": "v"}},
            "'Bad Name' is not a header name",
        ),
        (
            {"type": "webhook", "url": "https://x.io", "headers": {"X-Modelcycle-Signature": "v"}},
            "X-Modelcycle-Signature is set by modelcycle",
        ),
        (
            {"type": "webhook", "url": "https://x.io", "headers": {"content-type": "text/plain"}},
            "content-type is set by modelcycle",
        ),
        (
            {"type": "webhook", "url": "https://x.io", "headers": {"X-A": "a\r\nX-B: b"}},
            "the value of X-A must be text on one line",
        ),
    ],
)
def test_bad_specs_are_named_with_what_is_wrong(spec: Any, expected: str) -> None:
    assert expected in usage_error(spec).message


def test_errors_do_not_echo_secrets() -> None:
    error = usage_error({"type": "webhook", "url": "https://x.io", "secret": ""})
    assert "secret must be a non-empty string" in error.message
    error = usage_error({"type": "webhook", "url": "https://x.io", "headers": {"A": 5}})
    assert "5" not in error.message
    error = usage_error(f"slak={SLACK_URL}")
    assert "s3cr3t" not in str(error)
    error = usage_error({"type": "slack", "url": "ftp://hooks.slack.com/services/s3cr3tT0ken"})
    assert "s3cr3t" not in str(error) and "ftp://hooks.slack.com/…" in error.message


def test_a_channel_given_twice_is_an_error() -> None:
    with pytest.raises(UsageError, match=r"channels\[2\] repeats channels\[0\]") as info:
        parse_channels(["file=a.jsonl", "events", {"type": "file", "path": "a.jsonl"}])
    assert info.value.hint


def test_the_event_log_is_always_one_channel_and_never_twice(tmp_path: Path) -> None:
    def record(kind: str, subject: str, data: dict[str, Any]) -> None:
        pass

    added = AlertDispatcher([FileChannel("a")], base_dir=tmp_path, record_event=record)
    assert added.channels == (FileChannel("a"), EventsChannel())
    kept = AlertDispatcher(
        [EventsChannel(), FileChannel("a")], base_dir=tmp_path, record_event=record
    )
    assert kept.channels == (EventsChannel(), FileChannel("a"))


def test_alert_kind_follows_the_state() -> None:
    assert alert_kind({"state": "firing"}) == "alert.fired"
    assert alert_kind({}) == "alert.fired"
    assert alert_kind({"state": "resolved"}) == "alert.resolved"


# ---------------------------------------------------------------- the Slack message


def test_slack_text_is_escaped_and_clipped_to_block_kit_limits() -> None:
    long = "value <b> & more " * 400  # 6,800 characters, with Slack's control characters
    message = slack_message(
        {
            "monitor": "m" * 300,
            "deployment": "d",
            "rule": "x" * 200 + " > 1",
            "value": None,
            "message": long,
            "severity": "critical",
            "fired_at": "not a time",
            "evidence": {"summary": long},
        }
    )
    header, text, fields, context = message["blocks"]
    assert len(header["text"]["text"]) <= 150 and header["text"]["text"].startswith("🔴")
    assert len(text["text"]["text"]) <= 3000 and len(message["text"]) <= 3000
    assert len(context["elements"][0]["text"]) <= 3000
    assert all(len(f["text"]) <= 2000 for f in fields["fields"]) and len(fields["fields"]) <= 10
    for clipped in (text["text"]["text"], message["text"], context["elements"][0]["text"]):
        assert clipped.endswith("…")
        assert "<" not in clipped and ">" not in clipped
        tail = clipped[clipped.rfind("&") :]
        assert tail.startswith(("&amp;", "&lt;", "&gt;")), "no entity is cut in half"
    values = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in fields["fields"]}
    assert values["*Value*"] == "no value"
    assert values["*Fired at*"] == "not a time"


def test_a_resolved_alert_says_so() -> None:
    message = slack_message(
        {"rule": "accuracy < 0.8", "state": "resolved", "severity": "critical", "value": 0.91}
    )
    header = message["blocks"][0]["text"]["text"]
    assert header == "✅ Resolved: accuracy < 0.8"
