"""A workspace on a platform server, used from a client: `Workspace.connect`, the CLI
with MODELCYCLE_URL, roles and errors across the wire, and the whole quickstart run
remotely against a server whose stores are PostgreSQL and an S3-compatible bucket."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from integration_support import cli_env, modelcycle_exe, run_cli, s3_options
from platform_support import serve_app
from sklearn.linear_model import LogisticRegression

import modelcycle as mc
from modelcycle.remote import codec
from modelcycle.server import create_app
from modelcycle.store.labels import LabelChanges
from servers import S3Location, free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[mc.Workspace, str, dict[str, str]]]:
    """A server workspace with one token per role, served on 127.0.0.1."""
    ws = mc.Workspace.create(tmp_path / "server")
    tokens = {role: ws.tokens.create(role, role=role)[1] for role in mc_roles()}
    with serve_app(create_app(ws.root, allow_open=False)) as url:
        yield ws, url, tokens
    ws.close()


def mc_roles() -> tuple[str, ...]:
    from modelcycle.access.tokens import ROLES

    return ROLES


def _frame(n: int = 120) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame(
        {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": (x[:, 0] + x[:, 1] > 0).astype(int)}
    )


def test_a_remote_workspace_works_like_a_local_one(
    server: tuple[mc.Workspace, str, dict[str, str]], tmp_path: Path
) -> None:
    local, url, tokens = server
    csv = tmp_path / "data.csv"
    _frame().to_csv(csv, index=False)
    with mc.Workspace.connect(url, token=tokens["editor"], cache=tmp_path / "client") as ws:
        assert ws.actor == "token:editor" and ws.remote is not None
        added = ws.datasets.add("points", csv, message="from a client")
        again = ws.datasets.add("points", csv)
        assert again.version.ref == added.version.ref == "points@1"
        parts = ws.datasets.split("points@1", ratios=[0.75, 0.25], seed=3)
        train = ws.datasets.to_pandas(parts[0].ref)
        with ws.start_run("remote") as run:
            run.log_params({"C": 1.0})
            for step in range(5):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
            model = LogisticRegression().fit(train[["a", "b", "c"]], train["y"])
            run.log_model(model, "model", input_example=train[["a", "b", "c"]].head(3))
        version = ws.models.register(run.id, "points-model")
        ws.models.set_alias("points-model", "champion", version.version, reason="remote test")
        loaded = ws.models.load("points-model@champion")
        expected = model.predict(train[["a", "b", "c"]])
        assert (loaded.predict(train[["a", "b", "c"]]) == expected).all()

    # The server holds all of it, recorded under the token's name.
    assert [v.ref for v in local.datasets.versions("points")][:1] == ["points@1"]
    assert local.datasets.to_pandas(parts[0].ref).equals(train)
    history = local.runs.metric_history(run.id, "loss")
    assert [p.value for p in history] == [1.0 / (s + 1) for s in range(5)]
    assert local.models.resolve("points-model@champion").version == version.version
    actors = {e.actor for e in local.events(limit=200) if e.kind.startswith(("dataset", "model"))}
    assert "token:editor" in actors
    assert local.fsck().ok


def test_roles_and_errors_cross_the_wire_and_change_nothing(
    server: tuple[mc.Workspace, str, dict[str, str]], tmp_path: Path
) -> None:
    local, url, tokens = server
    csv = tmp_path / "data.csv"
    _frame().to_csv(csv, index=False)
    local.datasets.add("points", csv)
    with pytest.raises(mc.AuthenticationError, match="not known"):
        mc.Workspace.connect(url, token="mc_wrong", cache=tmp_path / "c0")
    with mc.Workspace.connect(url, token=tokens["reader"], cache=tmp_path / "c1") as reader:
        assert reader.datasets.load("points").shape == (120, 4)
        with pytest.raises(mc.PermissionDeniedError, match="needs editor") as denied:
            reader.datasets.add("more", csv)
        assert denied.value.details["needed"] == "editor"
        with pytest.raises(mc.NotFoundError) as remote_error:
            reader.datasets.resolve("nope@1")
    with pytest.raises(mc.NotFoundError) as local_error:
        local.datasets.resolve("nope@1")
    assert remote_error.value.message == local_error.value.message
    with mc.Workspace.connect(url, token=tokens["editor"], cache=tmp_path / "c2") as editor:
        with pytest.raises(mc.PermissionDeniedError, match="needs admin"):
            editor.datasets.delete("points", force=True)
        with pytest.raises(mc.UsageError, match="runs where the stores are"):
            editor.gc()
    assert [d["name"] for d in local.datasets.catalog()] == ["points"]
    assert len(local.datasets.versions("points")) == 1


def test_the_cli_works_against_a_server_named_by_modelcycle_url(
    server: tuple[mc.Workspace, str, dict[str, str]], tmp_path: Path
) -> None:
    local, url, tokens = server
    csv = tmp_path / "data.csv"
    _frame().to_csv(csv, index=False)
    env = {
        **cli_env(),
        "MODELCYCLE_URL": url,
        "MODELCYCLE_TOKEN": tokens["editor"],
        "MODELCYCLE_CACHE": str(tmp_path / "cli-cache"),
    }
    env.pop("MODELCYCLE_WORKSPACE", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # In a folder with no workspace: the server is the workspace.
        return run_cli(*args, cwd=tmp_path, env=env, expect=None)

    added = cli("dataset", "add", "points", str(csv), "-m", "by the CLI")
    assert added.returncode == 0, added.stderr
    listed = cli("dataset", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"points"' in listed.stdout
    assert local.datasets.resolve("points").message == "by the CLI"
    events = cli("events", "--json")
    assert "token:editor" in events.stdout
    mc.Workspace.create(tmp_path / "mine").close()  # a local workspace the URL overrides
    inside = run_cli("dataset", "list", cwd=tmp_path / "mine", env=env)
    assert "points" in inside.stdout and "note: MODELCYCLE_URL is set" in inside.stderr
    fsck = cli("fsck")
    assert fsck.returncode == 2 and "in the server's workspace folder" in fsck.stderr
    env["MODELCYCLE_TOKEN"] = "mc_revoked_or_wrong"
    refused = cli("dataset", "list")
    assert refused.returncode == 10 and "token is not known" in refused.stderr


def _start_server(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in cli_env().items() if not k.startswith("MODELCYCLE_")}
    env["MODELCYCLE_WORKSPACE"] = str(root)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [modelcycle_exe(), "server", "--port", str(port), "--tick", "2s"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the platform server did not start in 60 s"
        time.sleep(0.2)


def test_the_quickstart_runs_remotely_against_postgres_and_s3(
    tmp_path: Path, postgres_url: str, s3_bucket_url: S3Location
) -> None:
    """The acceptance check: a client on this machine walks the whole quickstart
    (15 steps, serving and the closed loop included) against `modelcycle server`, whose
    metadata is in PostgreSQL and whose blobs are in an S3-compatible bucket."""
    root = tmp_path / "server"
    ws = mc.Workspace.create(
        root,
        store=postgres_url,
        blobs=s3_bucket_url.url,
        blobs_options=s3_options(s3_bucket_url.endpoint_url),
    )
    _, token = ws.tokens.create("quickstart", role="admin")  # it sets a monitor and a policy
    ws.close()
    port = free_port()
    proc = _start_server(root, port, tmp_path / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        env = {k: v for k, v in cli_env().items() if not k.startswith("MODELCYCLE_")}
        env.update(MODELCYCLE_TOKEN=token)
        walk = subprocess.run(
            [modelcycle_exe(), "quickstart", str(tmp_path / "client"), "--url", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        log = (tmp_path / "server.log").read_text()[-3000:]
        assert walk.returncode == 0, walk.stdout[-4000:] + walk.stderr[-4000:] + log
        out = walk.stdout
        assert f"Server: {url}" in out and "as token:quickstart" in out
        assert re.search(r"-> succeeded: .*promoted", out) or "promoted" in out, out[-3000:]
        assert f"web UI at {url}" in out
        again = subprocess.run(
            [modelcycle_exe(), "quickstart", str(tmp_path / "again"), "--url", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert again.returncode == 4 and "already holds the quickstart's" in again.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    # Everything landed on the server: PostgreSQL holds the records, the bucket the bytes.
    with mc.Workspace.open(root) as server_ws:
        assert server_ws.store.url.startswith("postgresql")
        champion = server_ws.models.resolve("cancer@champion")
        assert champion.version >= 3  # the loop promoted a retrained version
        lineage = server_ws.models.lineage(champion.ref)
        assert "cancer" in str(lineage)
        actors = {e.actor for e in server_ws.events(limit=1000)}
        assert "token:quickstart" in actors
        report = server_ws.fsck()
        assert report.ok, report.problems
        assert report.blobs_checked > 20
    import boto3

    options = s3_options(s3_bucket_url.endpoint_url)
    bucket = boto3.client("s3", **options)
    listed = bucket.list_objects_v2(Bucket=s3_bucket_url.bucket, Prefix=s3_bucket_url.prefix)
    assert listed["KeyCount"] > 20  # the blobs went to the bucket, not to a folder


STAGE = {"reason": None, "forced": False, "exclusive": False}


def _rpc(
    url: str, token: str, call: str, *args: Any, key: str | None = None, **kwargs: Any
) -> httpx.Response:
    store, method = call.split(".")
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    body = {"args": codec.encode(list(args)), "kwargs": codec.encode(kwargs)}
    return httpx.post(f"{url}/api/v1/rpc/{store}/{method}", json=body, headers=headers)


def test_the_server_checks_what_a_client_sends(
    server: tuple[mc.Workspace, str, dict[str, str]], tmp_path: Path
) -> None:
    """Records are taken by id, not as sent; stage moves follow the registry's rules;
    events, clocks and leases are bounded; monitors' secrets stay with editors."""
    local, url, tokens = server
    csv = tmp_path / "data.csv"
    frame = _frame()
    frame.to_csv(csv, index=False)
    local.datasets.add("points", csv)
    for name in ("model-a", "model-b"):
        with local.start_run(name) as run:
            fitted = LogisticRegression().fit(frame[["a", "b", "c"]], frame["y"])
            run.log_model(fitted, "model", register_as=name)
    b1 = local.models.resolve("model-b@1")
    forged = dataclasses.replace(
        b1, model="model-a", model_id=local.models.resolve("model-a@1").model_id
    )
    answer = _rpc(url, tokens["editor"], "registry.set_alias", forged, "champion", None)
    assert answer.status_code == 404 and "does not exist" in answer.json()["message"]
    assert local.models.store.aliases(forged.model_id) == {}

    a1 = local.models.resolve("model-a@1")
    retire = _rpc(url, tokens["editor"], "registry.set_stage", a1, "retired", **STAGE)
    assert retire.status_code == 403 and retire.json()["details"]["needed"] == "admin"
    _rpc(url, tokens["editor"], "registry.set_stage", a1, "archived", **STAGE).raise_for_status()
    a1 = local.models.resolve("model-a@1")
    assert a1.stage == "archived"
    local.models.transition("model-a@1", "staging")
    # staging -> registered is no move at all: refused whatever the client says
    illegal = _rpc(
        url,
        tokens["editor"],
        "registry.set_stage",
        local.models.resolve("model-a@1"),
        "registered",
        **STAGE,
    )
    assert illegal.status_code == 409, illegal.text

    forged_event = _rpc(
        url, tokens["editor"], "metadata.record_event", "token.revoked", "admin", {}
    )
    assert forged_event.status_code == 400
    assert not [e for e in local.events(limit=500) if e.kind == "token.revoked"]
    local.labels.create("points-labels", "points@1", {"kind": "classification", "labels": ["a"]})
    project = local.stores["labels"].get_project("points-labels")
    disguised = _rpc(url, tokens["editor"], "labels.apply", project, LabelChanges(), "model.stage")
    assert disguised.status_code == 400 and "start with 'label.'" in disguised.json()["hint"]
    assert not [
        e
        for e in local.events(limit=500)
        if e.subject == "points-labels" and e.kind == "model.stage"
    ]

    future = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
    skewed = _rpc(url, tokens["editor"], "monitors.claim_due", future)
    assert skewed.status_code == 400 and "server's clock" in skewed.json()["message"]

    # An editor may not point the server's scheduler at files or URLs: admins set monitors.
    spec = {
        "checks": ["operations"],
        "rules": [],
        "channels": [
            {"type": "webhook", "url": "https://hooks.example/secret-path", "secret": "S3CR3T"}
        ],
    }
    now = dt.datetime.now(dt.UTC)
    denied = httpx.post(
        f"{url}/api/v1/rpc/monitors/create",
        json={
            "args": [],
            "kwargs": codec.encode(
                {
                    "name": "watch",
                    "deployment": "d",
                    "reference": "points@1",
                    "spec": spec,
                    "schedule_seconds": 60.0,
                    "window_seconds": 3600.0,
                    "next_run_at": now,
                }
            ),
        },
        headers={"Authorization": f"Bearer {tokens['editor']}"},
    )
    assert denied.status_code == 403, denied.text
    local.monitors.store.create(
        name="watch",
        deployment="d",
        reference="points@1",
        spec=spec,
        schedule_seconds=60.0,
        window_seconds=3600.0,
        next_run_at=now,
    )
    seen_by_reader = _rpc(url, tokens["reader"], "monitors.live").text
    assert "S3CR3T" not in seen_by_reader and "secret-path" not in seen_by_reader
    assert "S3CR3T" in _rpc(url, tokens["editor"], "monitors.live").text

    # A changing call sent twice with one idempotency key is applied once.
    before = len(local.events(limit=1000, kind="dataset.validated"))
    for _ in range(2):
        sent = _rpc(
            url,
            tokens["editor"],
            "metadata.record_event",
            "dataset.validated",
            "points@1",
            {"ok": True},
            key="k-1",
        )
        sent.raise_for_status()
    assert len(local.events(limit=1000, kind="dataset.validated")) == before + 1


def test_long_metric_batches_go_in_pieces(
    server: tuple[mc.Workspace, str, dict[str, str]], tmp_path: Path
) -> None:
    local, url, tokens = server
    cache = tmp_path / "c"
    with (
        mc.Workspace.connect(url, token=tokens["editor"], cache=cache) as ws,
        ws.start_run("long") as run,
    ):
        run.log_batch([("loss", 1.0 / (i + 1), i, 1_700_000_000_000 + i) for i in range(45_000)])
    history = local.runs.metric_history(run.id, "loss")
    assert len(history) == 45_000 and history[-1].step == 44_999


def test_a_corrupted_cached_blob_is_dropped_and_fetched_again(
    server: tuple[mc.Workspace, str, dict[str, str]], tmp_path: Path
) -> None:
    local, url, tokens = server
    csv = tmp_path / "data.csv"
    _frame().to_csv(csv, index=False)
    version = local.datasets.add("points", csv).version
    cache = tmp_path / "cache"
    with mc.Workspace.connect(url, token=tokens["reader"], cache=cache) as ws:
        expected = ws.datasets.to_pandas("points@1")
        cached = (
            cache / ".modelcycle" / "blobs" / version.manifest_oid[:2] / version.manifest_oid[2:]
        )
        assert cached.is_file()
        cached.chmod(0o644)
        cached.write_bytes(b"flipped bits")
        with pytest.raises(mc.BlobCorruptedError, match="it was removed"):
            ws.blobs.read_bytes(version.manifest_oid)
        assert not cached.exists()
        assert ws.datasets.to_pandas("points@1").equals(expected)  # fetched again
        assert cached.is_file()


def test_changes_made_remotely_fire_the_servers_webhooks(tmp_path: Path) -> None:
    """The registry runs on the client, the hooks are configured on the server: the
    server sends them, under the token's name."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=hook.serve_forever, daemon=True)
    thread.start()
    root = tmp_path / "server"
    mc.Workspace.create(root).close()
    with (root / "modelcycle.toml").open("a") as f:
        f.write(f'\n[[webhooks]]\nurl = "http://127.0.0.1:{hook.server_address[1]}/h"\n')
    local = mc.Workspace.open(root)
    _, token = local.tokens.create("ci", role="editor")
    frame = _frame()
    try:
        with serve_app(create_app(root, allow_open=False)) as url:
            with mc.Workspace.connect(url, token=token, cache=tmp_path / "c") as ws:
                with ws.start_run("hooked") as run:
                    fitted = LogisticRegression().fit(frame[["a", "b", "c"]], frame["y"])
                    run.log_model(fitted, "model", register_as="hooked")
                ws.models.set_alias("hooked", "champion", 1, reason="remote")
            deadline = time.monotonic() + 20
            while len(received) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        local.close()
        hook.shutdown()
        hook.server_close()
        thread.join(timeout=5)
    kinds = {e["kind"]: e for e in received}
    assert {"model.registered", "model.alias.set"} <= set(kinds), received
    assert kinds["model.alias.set"]["actor"] == "token:ci"
    assert kinds["model.alias.set"]["subject"].startswith("hooked")
