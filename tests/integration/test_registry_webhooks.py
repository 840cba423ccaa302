"""Registry events reach a webhook receiver configured in modelcycle.toml."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from integration_support import cli_env, run_cli
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelcycle as mc

SECRET = "s3cret-for-tests"


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                status = 503 if receiver.fail_first > 0 else 204
                receiver.fail_first -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


def test_registry_changes_post_signed_events_with_retries(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    mc.Workspace.create(root).close()
    with (root / "modelcycle.toml").open("a") as f:
        f.write(
            f'\n[[webhooks]]\nurl = "{receiver.url}"\nevents = ["model.*"]\n'
            'secret_env = "MC_HOOK_SECRET"\nmax_attempts = 4\n'
        )
    receiver.fail_first = 2  # the first delivery succeeds on its third attempt
    env = cli_env(MC_HOOK_SECRET=SECRET)
    monkeypatch.setenv("MC_HOOK_SECRET", SECRET)
    ws = mc.Workspace.open(root)
    try:
        x, y = load_iris(return_X_y=True, as_frame=True)
        with ws.start_run("iris") as run:
            run.log_model(LogisticRegression(max_iter=500).fit(x, y), register_as="iris")
    finally:
        ws.close()  # drains pending deliveries
    run_cli("model", "alias", "set", "iris", "champion", "1", cwd=root, env=env)
    run_cli("model", "promote", "iris@1", "--to", "production", cwd=root, env=env)
    run_cli("model", "retire", "iris@1", cwd=root, env=env, expect=4)  # in production

    kinds = [e["kind"] for e in receiver.events()]
    assert kinds[:3] == ["model.registered"] * 3  # 503, 503, then 204
    assert kinds[3:] == ["model.alias.set", "model.stage"]
    first, retried = receiver.requests[0], receiver.requests[2]
    assert first[0]["X-Modelcycle-Delivery"] == retried[0]["X-Modelcycle-Delivery"]
    for headers, body in receiver.requests:
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Modelcycle-Signature"] == f"sha256={expected}"
    stage = receiver.events()[-1]
    assert stage["subject"] == "iris@1" and stage["data"]["to"] == "production"
    assert receiver.events()[3]["data"] == {
        "model": "iris",
        "version": 1,
        "alias": "champion",
        "previous": None,
        "reason": None,
    }


def test_an_unreachable_receiver_is_recorded_not_raised(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    mc.Workspace.create(root).close()
    with (root / "modelcycle.toml").open("a") as f:
        # Port 9 (discard) on 127.0.0.1 refuses connections here.
        f.write('\n[[webhooks]]\nurl = "http://127.0.0.1:9/hook"\nmax_attempts = 2\n')
    x, y = load_iris(return_X_y=True, as_frame=True)
    ws = mc.Workspace.open(root)
    try:
        with ws.start_run("iris") as run:
            v = run.log_model(LogisticRegression(max_iter=500).fit(x, y), register_as="iris")
        assert v.ref == "iris@1"  # the registry change stands
    finally:
        ws.close()
    ws = mc.Workspace.open(root)
    try:
        failed = ws.events(kind="webhook.failed")
        assert len(failed) == 1 and failed[0].payload["kind"] == "model.registered"
        assert failed[0].payload["attempts"] == 2
        # A hook from modelcycle.toml is named by its place in the file.
        assert failed[0].payload["label"] == "webhooks[0]"
    finally:
        ws.close()
