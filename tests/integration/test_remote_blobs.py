"""Blobs of a remote workspace against a real server (uvicorn on 127.0.0.1, in a thread):
uploads in resumable chunks through the server, or straight to S3 with pre-signed URLs;
verified, ranged downloads into the client's cache; limits, roles and bad ids."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from integration_support import s3_options

import modelcycle as mc
from modelcycle.blobs.local import LocalBlobStore
from modelcycle.blobs.s3 import S3BlobStore
from modelcycle.core.config import CONFIG_NAME, ServerConfig
from modelcycle.core.errors import (
    InputDataError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UsageError,
)
from modelcycle.core.hashing import hash_bytes
from modelcycle.remote.blobs import RemoteBlobStore
from modelcycle.remote.http import Connection
from modelcycle.server import create_app
from modelcycle.server.blobs_api import blobs_router
from servers import S3Location, s3_client

CHUNK = 128 << 10  # the server's chunk size here (S3 parts are still at least 5 MiB)
MIN_PART = 5 << 20
LIMITS = ServerConfig(
    max_upload_bytes=16 << 20, upload_chunk_bytes=CHUNK, max_request_bytes=256 << 10
)
Scope = MutableMapping[str, Any]


@dataclass
class Traffic:
    """Body bytes the server received and sent, per "METHOD path"."""

    received: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def clear(self) -> None:
        self.received.clear()
        self.sent.clear()
        self.requests.clear()

    def received_under(self, prefix: str) -> int:
        """Bytes received by requests whose "METHOD path" starts with ``prefix``."""
        return sum(n for key, n in self.received.items() if key.startswith(prefix))

    def sent_under(self, prefix: str) -> int:
        return sum(n for key, n in self.sent.items() if key.startswith(prefix))


class Counting:
    """ASGI wrapper around the whole app: what crossed the server's socket."""

    def __init__(self, app: Any, traffic: Traffic) -> None:
        self.app = app
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = f"{scope['method']} {scope['path']}"
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.traffic.requests.append((key, headers))

        async def counted_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.traffic.received[key] += len(message.get("body", b""))
            return message

        async def counted_send(message: Any) -> None:
            if message["type"] == "http.response.body":
                self.traffic.sent[key] += len(message.get("body", b""))
            await send(message)

        await self.app(scope, counted_receive, counted_send)


class CountingTransport(httpx.HTTPTransport):
    """The client's side of pre-signed URLs: body bytes sent to and fetched from the bucket."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.sent += len(request.read())
        return super().handle_request(request)


@dataclass
class Served:
    ws: mc.Workspace  # the server's workspace, opened by the test to look inside
    url: str
    editor: str
    reader: str
    traffic: Traffic
    s3: S3Location | None
    tmp: Path
    bucket: CountingTransport = field(default_factory=CountingTransport)
    _clients: list[RemoteBlobStore] = field(default_factory=list)

    def store(self, token: str | None = None, cache: str = "cache") -> RemoteBlobStore:
        """A client's blob store, as a remote workspace builds it."""
        store = RemoteBlobStore(
            Connection(self.url, token or self.editor),
            self.tmp / cache,
            bucket_transport=self.bucket,
        )
        self._clients.append(store)
        return store

    def http(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.editor}"},
            timeout=30,
        )

    @property
    def part(self) -> int:
        """The size of an upload's chunks (or S3 parts) on this server."""
        return MIN_PART if self.s3 else CHUNK


def serve(tmp_path: Path, s3: S3Location | None) -> Iterator[Served]:
    root = tmp_path / "server"
    if s3 is None:
        ws = mc.Workspace.create(root)
    else:
        ws = mc.Workspace.create(root, blobs=s3.url, blobs_options=s3_options(s3.endpoint_url))
    config = dataclasses.replace(ws.config, server=LIMITS)
    (root / CONFIG_NAME).write_text(config.to_toml())
    _, editor = ws.tokens.create("eve", role="editor")
    _, reader = ws.tokens.create("rex", role="reader")
    traffic = Traffic()
    server = uvicorn.Server(
        uvicorn.Config(
            Counting(create_app(root), traffic),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    served = Served(ws, f"http://127.0.0.1:{port}", editor, reader, traffic, s3, tmp_path)
    try:
        yield served
    finally:
        for store in served._clients:
            store.close()
            store.conn.close()
        server.should_exit = True
        thread.join(timeout=30)
        ws.close()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    s3 = request.getfixturevalue("s3_bucket_url") if request.param == "s3" else None
    yield from serve(tmp_path, s3)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Served]:
    """The server with its blobs in a local folder (for what does not depend on the store)."""
    yield from serve(tmp_path, None)


def blob(size: int, seed: int = 0) -> bytes:
    return (hash_bytes(str(seed).encode()).encode() * (size // 64 + 1))[:size]


def staged_keys(served: Served) -> list[str]:
    """Objects under the bucket's staging prefix (uploads not completed)."""
    assert served.s3 is not None
    client = s3_client(served.s3.endpoint_url)
    try:
        answer = client.list_objects_v2(
            Bucket=served.s3.bucket, Prefix=f"{served.s3.prefix}/uploads/"
        )
        listed = [item["Key"] for item in answer.get("Contents", [])]
        uploads = client.list_multipart_uploads(
            Bucket=served.s3.bucket, Prefix=f"{served.s3.prefix}/uploads/"
        )
        return listed + [u["Key"] for u in uploads.get("Uploads", [])]
    finally:
        client.close()


# ---------------------------------------------------------------- round trips


def test_a_multi_chunk_blob_round_trips_and_is_deduplicated(served: Served) -> None:
    data = blob(2 * served.part + 1000)
    oid = hash_bytes(data)
    path = served.tmp / "big.bin"
    path.write_bytes(data)
    store = served.store()
    with store.batch() as batch:
        result = batch.put_file(path, oid, len(data))
    assert result.added and result.oid == oid and result.size == len(data)
    assert served.ws.blobs.read_bytes(oid) == data  # stored, and it hashes to its id
    uploaded = served.traffic.received_under("PUT /api/v1/uploads/")
    if served.s3 is None:
        # Through the server, in three chunks of at most CHUNK bytes.
        chunks = [k for k, _ in served.traffic.requests if k.startswith("PUT /api/v1/uploads/")]
        assert len(chunks) == 3
        assert uploaded == len(data)
    else:
        # Straight to the bucket: the server saw none of the bytes, the bucket all of them.
        assert uploaded < 10_000
        assert served.bucket.sent == len(data)
        assert staged_keys(served) == []  # the staging object is gone

    # Dedup: the same blob again, from another client, sends nothing.
    served.traffic.clear()
    bucket_before = served.bucket.sent
    again = served.store(cache="other-cache")
    with again.batch() as batch:
        assert not batch.put_file(path, oid, len(data)).added
        assert not batch.put_bytes(data).added
    assert served.traffic.received_under("PUT /api/v1/uploads/") == 0
    assert served.traffic.received_under("PUT /api/v1/blobs/" + oid) == 0
    assert served.bucket.sent == bucket_before

    # Download with a fresh cache: verified, kept, and read from the cache next time.
    served.traffic.clear()
    reader = served.store(served.reader, cache="reader-cache")
    assert reader.exists(oid) and reader.size(oid) == len(data)
    assert reader.read_bytes(oid) == data
    cached = served.tmp / "reader-cache" / oid[:2] / oid[2:]
    assert cached.read_bytes() == data
    if served.s3 is None:
        assert served.traffic.sent_under(f"GET /api/v1/blobs/{oid}") >= len(data)
    else:
        assert served.traffic.sent_under(f"GET /api/v1/blobs/{oid}") < 10_000  # a URL, no bytes
        [fetched] = [r for r in served.bucket.requests if r.method == "GET"]
        assert str(fetched.url).startswith(f"{served.s3.endpoint_url}/{served.s3.bucket}/")
    served.traffic.clear()
    assert reader.read_bytes(oid) == data
    assert served.traffic.requests == []


def test_small_blobs_go_in_one_request_and_skip_what_is_stored(served: Served) -> None:
    store = served.store()
    tiny, medium = blob(100, 1), blob(CHUNK - 10, 2)
    with store.batch() as batch:
        assert batch.put_bytes(tiny).added
        assert batch.put_bytes(medium).added
    puts = [k for k, _ in served.traffic.requests if k.startswith("PUT /api/v1/blobs/")]
    assert len(puts) == 2
    assert served.ws.blobs.read_bytes(hash_bytes(tiny)) == tiny
    assert served.ws.blobs.read_bytes(hash_bytes(medium)) == medium
    # Another client: a stored medium blob is asked about, not sent again.
    served.traffic.clear()
    with served.store(cache="c2").batch() as batch:
        assert not batch.put_bytes(medium).added
    assert served.traffic.received_under("PUT /api/v1/blobs/" + hash_bytes(medium)) == 0
    assert served.store(cache="c3").exists_many([hash_bytes(tiny), "ab" * 32]) == {hash_bytes(tiny)}


def test_exists_many_asks_in_batches_of_a_thousand(local: Served) -> None:
    store = local.store()
    oids = [hash_bytes(str(i).encode()) for i in range(2500)]
    assert store.exists_many(oids) == set()
    asked = [k for k, _ in local.traffic.requests if k == "POST /api/v1/blobs/exists"]
    assert len(asked) == 3


# ---------------------------------------------------------------- resuming


def test_an_interrupted_upload_resumes_where_it_stopped(served: Served) -> None:
    data = blob(3 * served.part - 500, 3)
    oid = hash_bytes(data)
    with served.http() as http:
        started = http.post("/api/v1/uploads", json={"oid": oid, "size": len(data)}).json()
        assert started["stored"] is False and started["offset"] == 0
        if served.s3 is None:
            for i in range(2):
                r = http.put(
                    f"/api/v1/uploads/{started['id']}",
                    content=data[i * CHUNK : (i + 1) * CHUNK],
                    headers={
                        "Content-Range": f"bytes {i * CHUNK}-{(i + 1) * CHUNK - 1}/{len(data)}"
                    },
                )
                assert r.status_code == 200, r.text
            sent = 2 * CHUNK
        else:
            first = started["parts"][0]
            assert first["number"] == 1 and first["size"] == MIN_PART
            assert first["url"].startswith(served.s3.endpoint_url)  # the store's own endpoint
            assert httpx.put(first["url"], content=data[:MIN_PART]).status_code == 200
            sent = MIN_PART
    # The client is gone. Nothing is visible as a blob yet.
    assert not served.ws.blobs.exists(oid)
    assert list(served.ws.blobs.iter_oids()) == []
    assert not served.store(cache="peek").exists(oid)
    if served.s3 is not None:
        assert staged_keys(served)  # the bytes wait in the staging area

    # Starting again (same token, same blob) finds the same session and its offset.
    with served.http() as http:
        resumed = http.post("/api/v1/uploads", json={"oid": oid, "size": len(data)}).json()
    assert resumed["id"] == started["id"] and resumed["offset"] == sent
    if served.s3 is not None:
        assert [p["number"] for p in resumed["parts"]] == [2, 3]
    # Another token does not see it.
    _, other = served.ws.tokens.create("ann", role="editor")
    with served.http(other) as http:
        r = http.get(f"/api/v1/uploads/{started['id']}")
        assert r.status_code == 404 and r.json()["error"] == "NotFoundError"

    # A restarted client completes it, sending only what is missing.
    served.traffic.clear()
    bucket_before = served.bucket.sent
    with served.store().batch() as batch:
        assert batch.put_bytes(data, oid).added
    assert served.ws.blobs.read_bytes(oid) == data
    if served.s3 is None:
        assert served.traffic.received_under("PUT /api/v1/uploads/") == len(data) - sent
    else:
        assert served.bucket.sent - bucket_before == len(data) - sent
        assert staged_keys(served) == []


def test_a_retried_chunk_is_refused_with_the_offset_to_send(local: Served) -> None:
    data = blob(3 * CHUNK, 4)
    oid = hash_bytes(data)
    with local.http() as http:
        upload = http.post("/api/v1/uploads", json={"oid": oid, "size": len(data)}).json()
        url = f"/api/v1/uploads/{upload['id']}"
        first = {"Content-Range": f"bytes 0-{CHUNK - 1}/{len(data)}"}
        assert http.put(url, content=data[:CHUNK], headers=first).json()["offset"] == CHUNK
        # The same chunk again (its answer was lost, say): 409 naming the offset to send.
        r = http.put(url, content=data[:CHUNK], headers=first)
        assert r.status_code == 409 and r.json()["details"]["expected_offset"] == CHUNK
        # A chunk past the offset (out of order): refused too, nothing written.
        late = {"Content-Range": f"bytes {2 * CHUNK}-{3 * CHUNK - 1}/{len(data)}"}
        r = http.put(url, content=data[2 * CHUNK :], headers=late)
        assert r.status_code == 409 and r.json()["details"]["expected_offset"] == CHUNK
        assert http.get(url).json()["offset"] == CHUNK
        # Completing early: 409, and the session stays.
        r = http.post(f"{url}/complete")
        assert r.status_code == 409 and r.json()["details"]["expected_offset"] == CHUNK
        # A range that does not match the body, and a missing range: 400.
        r = http.put(
            url,
            content=b"x" * 10,
            headers={"Content-Range": f"bytes {CHUNK}-{CHUNK + 99}/{len(data)}"},
        )
        assert r.status_code == 400 and "Content-Range" in r.json()["message"]
        r = http.put(url, content=b"x")
        assert r.status_code == 400 and "Content-Range" in r.json()["hint"]
        # Abort: the partial bytes are deleted.
        assert http.delete(url).json() == {"id": upload["id"], "aborted": True}
        assert http.get(url).status_code == 404
    assert list((local.ws.config.state_dir / "uploads").iterdir()) == []


def test_stale_partial_uploads_are_removed_when_a_new_one_starts(served: Served) -> None:
    data = blob(served.part + 10, 5)
    oid = hash_bytes(data)
    folder = served.ws.config.state_dir / "uploads"
    with served.http() as http:
        old = http.post("/api/v1/uploads", json={"oid": oid, "size": len(data)}).json()
        if served.s3 is None:
            http.put(
                f"/api/v1/uploads/{old['id']}",
                content=data[:CHUNK],
                headers={"Content-Range": f"bytes 0-{CHUNK - 1}/{len(data)}"},
            )
            assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".part"]
        else:
            assert httpx.put(old["parts"][0]["url"], content=data[:MIN_PART]).status_code == 200
            assert [k.rsplit("/", 1)[-1] for k in staged_keys(served)] == [old["id"]]
        # A day passes: the session is stale.
        two_days_ago = time.time() - 2 * 86400
        for p in folder.iterdir():
            os.utime(p, (two_days_ago, two_days_ago))
        other = blob(served.part + 10, 6)
        new = http.post("/api/v1/uploads", json={"oid": hash_bytes(other), "size": len(other)})
        assert new.status_code == 200
        assert {p.stem for p in folder.iterdir()} == {new.json()["id"]}
        assert http.get(f"/api/v1/uploads/{old['id']}").status_code == 404
        if served.s3 is not None:  # the old multipart upload was aborted in the bucket
            assert [k.rsplit("/", 1)[-1] for k in staged_keys(served)] == [new.json()["id"]]


# ---------------------------------------------------------------- refusals


def test_a_corrupted_upload_is_refused_and_nothing_is_stored(served: Served) -> None:
    data = blob(served.part + 100, 7)
    oid = hash_bytes(data)
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    path = served.tmp / "lies.bin"
    path.write_bytes(bytes(bad))
    store = served.store()
    with pytest.raises(InputDataError) as info, store.batch() as batch:
        batch.put_file(path, oid, len(data))  # the file's bytes do not hash to oid
    assert oid in info.value.message and "discarded" in info.value.message
    assert not served.ws.blobs.exists(oid)
    assert list(served.ws.blobs.iter_oids()) == []
    if served.s3 is None:
        assert list((served.ws.config.state_dir / "uploads").iterdir()) == []
    else:
        assert staged_keys(served) == []
    # A small blob in one request: refused the same way.
    with served.http() as http:
        r = http.put(f"/api/v1/blobs/{hash_bytes(b'abc')}", content=b"abd")
    assert r.status_code == 422 and r.json()["error"] == "InputDataError"
    assert not served.ws.blobs.exists(hash_bytes(b"abc"))


def test_sizes_over_the_limits_are_413(served: Served) -> None:
    with served.http() as http:
        # A declared upload over max_upload_bytes.
        r = http.post("/api/v1/uploads", json={"oid": "ab" * 32, "size": (16 << 20) + 1})
        assert r.status_code == 413
        assert r.json()["error"] == "PayloadTooLargeError"
        assert "max_upload_bytes" in r.json()["hint"]
        assert r.json()["details"]["limit"] == 16 << 20
        # One-request upload over the chunk size.
        big = blob(CHUNK + 1, 8)
        r = http.put(f"/api/v1/blobs/{hash_bytes(big)}", content=big)
        assert r.status_code == 413 and "/api/v1/uploads" in r.json()["hint"]
    store = served.store()
    with pytest.raises(PayloadTooLargeError, match="at most"), store.batch() as batch:
        batch.put_bytes(blob((16 << 20) + 1, 9))
    assert not served.ws.blobs.exists(hash_bytes(blob((16 << 20) + 1, 9)))


def test_a_chunk_over_the_chunk_size_is_413(local: Served) -> None:
    data = blob(3 * CHUNK, 10)
    with local.http() as http:
        upload = http.post("/api/v1/uploads", json={"oid": hash_bytes(data), "size": len(data)})
        url = f"/api/v1/uploads/{upload.json()['id']}"
        r = http.put(
            url,
            content=data[: 2 * CHUNK],
            headers={"Content-Range": f"bytes 0-{2 * CHUNK - 1}/{len(data)}"},
        )
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "PayloadTooLargeError" and str(CHUNK) in r.json()["hint"]
        # The range claims one chunk, the body streams more: counted, refused.
        r = http.put(
            url,
            content=iter([data[:CHUNK], data[CHUNK : 2 * CHUNK]]),
            headers={"Content-Range": f"bytes 0-{CHUNK - 1}/{len(data)}"},
        )
        assert r.status_code == 413, r.text
        assert http.get(url).json()["offset"] == 0  # nothing was written


def test_a_request_body_over_the_limit_is_413_even_without_a_length(local: Served) -> None:
    oids = ["ab" * 32] * 5000  # ~340 KB of JSON, over the 256 KiB limit
    body = ('{"oids": [' + ", ".join(f'"{o}"' for o in oids) + "]}").encode()
    assert len(body) > LIMITS.max_request_bytes
    with local.http(local.reader) as http:
        r = http.post(
            "/api/v1/blobs/exists", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["error"] == "PayloadTooLargeError"
        assert "max_request_bytes" in r.json()["hint"]
        # Streamed without a Content-Length: counted as it arrives.
        pieces = [body[i : i + 8192] for i in range(0, len(body), 8192)]
        r = http.post(
            "/api/v1/blobs/exists",
            content=iter(pieces),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert r.status_code == 413 and r.json()["error"] == "PayloadTooLargeError"
        # A small body still works.
        r = http.post("/api/v1/blobs/exists", json={"oids": ["ab" * 32]})
        assert r.status_code == 200 and r.json() == {"stored": {}, "missing": ["ab" * 32]}


def test_a_reader_downloads_but_cannot_upload(served: Served) -> None:
    data = blob(2 * served.part, 11)
    oid = hash_bytes(data)
    with served.store().batch() as batch:
        batch.put_bytes(data)
    reader = served.store(served.reader, cache="reader")
    assert reader.read_bytes(oid) == data
    with pytest.raises(PermissionDeniedError), reader.batch() as batch:
        batch.put_bytes(blob(100, 12))
    with served.http(served.reader) as http:
        r = http.post("/api/v1/uploads", json={"oid": "cd" * 32, "size": 10 << 20})
        assert r.status_code == 403 and r.json()["details"]["needed"] == "editor"
        r = http.put(f"/api/v1/blobs/{hash_bytes(b'x')}", content=b"x")
        assert r.status_code == 403
    assert not served.ws.blobs.exists(hash_bytes(b"x"))


@pytest.mark.parametrize(
    "bad", ["..etc", "AB" * 32, "zz" * 32, "ab" * 31, "ab" * 33, "%2E%2E%2Fetc%2Fpasswd"]
)
def test_bad_blob_ids_are_400(local: Served, bad: str) -> None:
    with local.http() as http:
        for method, path, body in [
            ("GET", f"/api/v1/blobs/{bad}", None),
            ("GET", f"/api/v1/blobs/{bad}/url", None),
            ("PUT", f"/api/v1/blobs/{bad}", b"x"),
        ]:
            r = http.request(method, path, content=body)
            assert r.status_code in (400, 404), (method, path, r.status_code)
            if r.status_code == 400:
                assert r.json()["error"] == "UsageError" and "64 lowercase hex" in r.json()["hint"]
            else:  # an encoded slash makes a path no route matches
                assert "/" in httpx.URL(path).path.replace("/api/v1/blobs/", "", 1)
        plain = bad.replace("%2E", ".").replace("%2F", "/")
        for method, path, json in [
            ("POST", "/api/v1/blobs/exists", {"oids": [plain]}),
            ("POST", "/api/v1/uploads", {"oid": plain, "size": 1 << 20}),
        ]:
            r = http.request(method, path, json=json)
            assert r.status_code == 400 and r.json()["error"] == "UsageError", r.text
    with pytest.raises(UsageError, match="not a blob id"):
        local.store().open_raw(plain)
    assert not (local.tmp / "etc").exists()


# ---------------------------------------------------------------- downloads


def test_range_requests_and_a_broken_download_resumes(served: Served) -> None:
    data = blob(3 * CHUNK + 5, 13)
    oid = hash_bytes(data)
    with served.store().batch() as batch:
        batch.put_bytes(data, oid)
    with served.http(served.reader) as http:
        r = http.get(f"/api/v1/blobs/{oid}", headers={"Range": "bytes=100-"})
        assert r.status_code == 206 and r.content == data[100:]
        assert r.headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        r = http.get(f"/api/v1/blobs/{oid}", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == data[10:20]
        r = http.get(f"/api/v1/blobs/{oid}", headers={"Range": "bytes=-7"})
        assert r.content == data[-7:]
        r = http.get(f"/api/v1/blobs/{oid}", headers={"Range": f"bytes={len(data)}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
        r = http.get(f"/api/v1/blobs/{oid}")
        assert r.status_code == 200 and r.content == data and r.headers["etag"] == f'"{oid}"'
        r = http.get(f"/api/v1/blobs/{'ab' * 32}")
        assert r.status_code == 404 and r.json()["error"] == "NotFoundError"

    # A download that broke after 100 KB left its bytes; the next one asks for the rest.
    cache = served.tmp / "resume-cache"
    partial = cache / ".partial" / oid
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:100_000])
    served.traffic.clear()
    served.bucket.requests.clear()
    store = served.store(served.reader, cache="resume-cache")
    assert store.read_bytes(oid) == data
    if served.s3 is None:
        [(_, headers)] = [r for r in served.traffic.requests if r[0] == f"GET /api/v1/blobs/{oid}"]
        sent = served.traffic.sent[f"GET /api/v1/blobs/{oid}"]
        assert headers["range"] == "bytes=100000-" and sent == len(data) - 100_000
    else:
        [request] = served.bucket.requests
        assert request.headers["range"] == "bytes=100000-"
    assert not partial.exists()

    # Left-over bytes that are wrong: the resumed download fails its check, starts over.
    cache2 = served.tmp / "bad-cache"
    (cache2 / ".partial").mkdir(parents=True)
    (cache2 / ".partial" / oid).write_bytes(b"\0" * 1000)
    assert served.store(served.reader, cache="bad-cache").read_bytes(oid) == data


def test_listing_and_removing_are_for_the_server(local: Served) -> None:
    store = local.store()
    with pytest.raises(UsageError, match="where the server runs") as info:
        list(store.iter_oids())
    assert info.value.hint is not None and "gc" in info.value.hint
    with pytest.raises(UsageError, match="where the server runs"):
        store.remove("ab" * 32)
    assert store.url == f"modelcycle+{local.url}"


def test_the_server_store_kinds(served: Served) -> None:
    """The fixture really runs both kinds of blob store on the server."""
    expected = S3BlobStore if served.s3 else LocalBlobStore
    assert isinstance(served.ws.blobs, expected)
    settings = served.store().settings()
    assert settings["direct"] is (served.s3 is not None)
    assert settings["chunk_size"] == served.part
    assert settings["max_put_bytes"] == CHUNK


def test_every_blob_route_enforces_its_role(local: Served) -> None:
    """Readers may look and fetch; only editors (and admins) may upload."""
    routes = [r for r in blobs_router(lambda: local.ws).routes if isinstance(r, APIRoute)]
    assert len(routes) == 10
    oid = "ab" * 32
    for route in routes:
        [needed] = [
            d.call.__name__.removeprefix("needs_")
            for d in route.dependant.dependencies
            if d.call is not None and d.call.__name__.startswith("needs_")
        ]
        path = route.path.replace("{oid}", oid).replace("{upload_id}", "cd" * 16)
        [method] = route.methods
        with local.http(local.reader) as http:
            r = http.request(method, path, json={"oids": [oid]} if method == "POST" else None)
        if needed == "reader":
            assert r.status_code not in (401, 403), (method, path, r.text)
        else:
            assert needed == "editor"
            assert r.status_code == 403, (method, path, r.status_code)
