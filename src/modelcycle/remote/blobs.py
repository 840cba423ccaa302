"""The blob store of a remote workspace: blobs kept by a platform server.

Uploads skip what the server has, send small blobs in one request and larger ones in a
resumable session (`modelcycle.server.transfers`): in chunks through the server, or
part by part straight to the bucket with the pre-signed URLs the server hands out when
its blobs are in S3. A session interrupted (a lost connection, a restarted client)
resumes from what the server already has. Every upload is verified by the server
before the blob becomes visible; the blob is stored when ``put_*`` returns.

Downloads land in ``cache_dir`` under the blob's id, are verified before they are kept
there, and are kept for good: a verified file named by its own digest never goes
stale. A broken download resumes with a ``Range`` request, in this process or the next.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from modelcycle.blobs.base import BlobBatch, BlobStore, PutResult, shard
from modelcycle.core.errors import (
    BlobCorruptedError,
    NotFoundError,
    PayloadTooLargeError,
    StorageError,
    UsageError,
)
from modelcycle.core.hashing import hash_bytes, hasher
from modelcycle.remote.http import RETRY_STATUSES, Connection, error_from

OID = re.compile(r"[0-9a-f]{64}")
EXISTS_BATCH = 1000  # oids per exists request (the server's limit)
SMALL = 64 << 10  # blobs up to this size are sent without asking first whether they exist
_READ_CHUNK = 1 << 20
_TRANSFER_ATTEMPTS = 5

Reader = Callable[[int, int], bytes]  # (first byte, how many) -> the blob's bytes there


class _Busy(Exception):
    """A download answered 502/503/504: worth another try."""


def _same_file(path: Path, f: BinaryIO) -> bool:
    """Whether ``path`` still names the file ``f`` has open."""
    try:
        return os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


def _hash_open(f: BinaryIO) -> str:
    """The digest of everything in the open file ``f`` (read through its own handle, so
    a rename or removal of its path by another process cannot change what is read)."""
    with os.fdopen(os.dup(f.fileno()), "rb") as r:
        r.seek(0)
        h = hasher()
        while chunk := r.read(8 << 20):
            h.update(chunk)
        return h.hexdigest()


def _backoff(attempt: int) -> None:
    time.sleep(min(0.25 * 2**attempt, 4.0))


def _read_at(path: Path, start: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(size)
    if len(data) != size:
        raise UsageError(
            f"{path} changed while it was uploaded (it has fewer bytes than before)",
            hint="upload it again once nothing writes to it",
        )
    return data


class RemoteBlobStore(BlobStore):
    """Blobs on the server behind ``conn``; downloads kept, verified, in ``cache_dir``.
    ``bucket_transport`` carries requests to pre-signed URLs (httpx's default if None)."""

    def __init__(
        self,
        conn: Connection,
        cache_dir: Path,
        *,
        bucket_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.conn = conn
        self._bucket_transport = bucket_transport
        self.cache_dir = Path(cache_dir)
        self.url = f"modelcycle+{conn.url}"
        self._settings: dict[str, Any] | None = None
        self._direct_downloads: bool | None = None  # learnt from the first /url answer
        self._known: set[str] = set()  # stored on the server, seen by this client
        self._lock = threading.Lock()
        self._bucket: httpx.Client | None = None

    @property
    def bucket(self) -> httpx.Client:
        """The client for pre-signed URLs: they carry their own credentials, so the
        server's token must not go with them."""
        with self._lock:
            if self._bucket is None:
                self._bucket = httpx.Client(
                    timeout=self.conn.client.timeout, transport=self._bucket_transport
                )
            return self._bucket

    def close(self) -> None:
        """Close the connections to the bucket (the server's is the caller's)."""
        if self._bucket is not None:
            self._bucket.close()

    # -- checks ----------------------------------------------------------------------
    def _check_oid(self, oid: str) -> str:
        if not OID.fullmatch(oid):
            raise UsageError(
                f"{oid[:80]!r} is not a blob id",
                hint="a blob id is 64 lowercase hex characters (a BLAKE3 digest)",
            )
        return oid

    def exists(self, oid: str) -> bool:
        return oid in self.exists_many([oid])

    def exists_many(self, oids: Iterable[str]) -> set[str]:
        return set(self.sizes(oids))

    def sizes(self, oids: Iterable[str]) -> dict[str, int]:
        """The stored ones among ``oids``, with their sizes (one request per 1000)."""
        wanted = list(dict.fromkeys(self._check_oid(oid) for oid in oids))
        found: dict[str, int] = {}
        for i in range(0, len(wanted), EXISTS_BATCH):
            answer = self.conn.json(
                "POST", "/api/v1/blobs/exists", json={"oids": wanted[i : i + EXISTS_BATCH]}
            )
            found.update({str(k): int(v) for k, v in answer["stored"].items()})
        with self._lock:
            self._known.update(found)
        return found

    def size(self, oid: str) -> int:
        cached = self._cache_path(oid)
        if cached.is_file():
            return cached.stat().st_size
        found = self.sizes([oid])
        if oid not in found:
            raise self._missing(oid)
        return found[oid]

    def iter_oids(self) -> Iterator[str]:
        raise self._server_side("listing")

    def remove(self, oid: str) -> None:
        raise self._server_side("removing")

    def _server_side(self, what: str) -> UsageError:
        return UsageError(
            f"{what} blobs is done where the server runs, not through {self.conn.url}",
            hint="run `modelcycle fsck` or `modelcycle gc` in the server's workspace folder",
        )

    # -- downloads -------------------------------------------------------------------
    def _cache_path(self, oid: str) -> Path:
        return self.cache_dir / shard(self._check_oid(oid))

    def open_raw(self, oid: str) -> BinaryIO:
        path = self._cache_path(oid)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            self._download(oid, path)
        return open(path, "rb")

    def _check(self, oid: str, actual: str) -> None:
        """A cached copy that no longer hashes to its name is removed (the next read
        fetches it again) before the error is raised."""
        if actual != oid:
            self._cache_path(oid).unlink(missing_ok=True)
            raise BlobCorruptedError(
                f"the cached copy of blob {oid} is corrupted (it hashes to {actual}); "
                "it was removed",
                hint="retry: the blob is fetched again from the server",
                oid=oid,
            )

    def _download(self, oid: str, dest: Path) -> None:
        partial = self.cache_dir / ".partial" / oid
        partial.parent.mkdir(parents=True, exist_ok=True)
        while True:
            with open(partial, "a+b") as f:
                # One download of a blob at a time, across threads and processes.
                fcntl.flock(f, fcntl.LOCK_EX)
                if dest.is_file():  # another one finished it while this one waited
                    return
                if _same_file(partial, f):
                    self._download_locked(oid, dest, partial, f)
                    return
            # Another download gave this partial file up while this one waited for its
            # lock: start again with the file now at that path.

    def _download_locked(self, oid: str, dest: Path, partial: Path, f: BinaryIO) -> None:
        """Fetch, verify and move into the cache, holding the partial file's lock."""
        resumed = os.fstat(f.fileno()).st_size > 0
        self._fetch_all(oid, f)
        digest = _hash_open(f)
        if digest != oid and resumed:
            # What an earlier, broken download left may be the bad part: once more
            # from the first byte.
            f.truncate(0)
            self._fetch_all(oid, f)
            digest = _hash_open(f)
        if digest != oid:
            partial.unlink()
            raise BlobCorruptedError(
                f"the bytes {self.conn.url} sent for blob {oid} hash to {digest}; "
                "they were not kept",
                hint="retry; if it happens again, run `modelcycle fsck` on the server",
                oid=oid,
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(partial, 0o444)
        os.replace(partial, dest)

    def _fetch_all(self, oid: str, f: BinaryIO) -> None:
        """Fetch until ``f`` holds what the server has, resuming after each break."""
        for attempt in range(_TRANSFER_ATTEMPTS):
            try:
                self._fetch(oid, f)
            except (httpx.TransportError, _Busy) as e:
                if attempt + 1 == _TRANSFER_ATTEMPTS:
                    raise StorageError(
                        f"downloading blob {oid} from {self.conn.url} failed: {e}",
                        hint="check the connection and retry; the download resumes",
                    ) from e
                _backoff(attempt)
            else:
                f.flush()
                return

    def _source(self, oid: str) -> tuple[httpx.Client, str]:
        """Where to fetch the blob: a pre-signed URL when the server offers them."""
        if self._direct_downloads is not False:
            answer = self.conn.json("GET", f"/api/v1/blobs/{oid}/url")
            url = answer.get("url")
            self._direct_downloads = url is not None
            if url is not None:
                return self.bucket, str(url)
        return self.conn.client, f"/api/v1/blobs/{oid}"

    def _fetch(self, oid: str, f: BinaryIO) -> None:
        """Append the bytes ``f`` lacks (``f`` is open for appending)."""
        have = os.fstat(f.fileno()).st_size
        client, url = self._source(oid)
        headers = {"Range": f"bytes={have}-"} if have else {}
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416:  # nothing left to fetch: verify what is here
                return
            if response.status_code == 404:
                raise self._missing(oid)
            if response.status_code in RETRY_STATUSES:
                raise _Busy(f"{url} answered {response.status_code}")
            if response.status_code not in (200, 206):
                response.read()
                raise error_from(response)
            if response.status_code == 200 or not response.headers.get(
                "content-range", ""
            ).startswith(f"bytes {have}-"):
                f.truncate(0)  # the whole blob came back: start over
            for chunk in response.iter_bytes(_READ_CHUNK):
                f.write(chunk)

    # -- uploads ---------------------------------------------------------------------
    def batch(self) -> RemoteBatch:
        return RemoteBatch(self)

    def settings(self) -> dict[str, Any]:
        """The server's upload limits (asked once)."""
        if self._settings is None:
            self._settings = self.conn.json("GET", "/api/v1/uploads")
        return self._settings

    def upload_bytes(self, data: bytes, oid: str) -> PutResult:
        return self._upload(oid, len(data), lambda start, size: data[start : start + size])

    def upload_file(self, path: Path, oid: str, size: int) -> PutResult:
        return self._upload(oid, size, lambda start, n: _read_at(path, start, n))

    def _upload(self, oid: str, size: int, read: Reader) -> PutResult:
        self._check_oid(oid)
        with self._lock:
            if oid in self._known:
                return PutResult(oid, size, added=False)
        settings = self.settings()
        if size > settings["max_upload_bytes"]:
            raise PayloadTooLargeError(
                f"blob {oid} has {size} bytes; the server at {self.conn.url} takes at most "
                f"{settings['max_upload_bytes']}",
                hint="ask its admin to raise [server] max_upload_bytes, or split the data",
                limit=settings["max_upload_bytes"],
            )
        if size <= settings["max_put_bytes"]:
            if size > SMALL and self.exists(oid):
                return PutResult(oid, size, added=False)
            answer = self.conn.json("PUT", f"/api/v1/blobs/{oid}", content=read(0, size))
            result = PutResult(oid, size, added=bool(answer["added"]))
        else:
            result = self._session(oid, size, read)
        with self._lock:
            self._known.add(oid)
        return result

    def _session(self, oid: str, size: int, read: Reader) -> PutResult:
        status = self.conn.json("POST", "/api/v1/uploads", json={"oid": oid, "size": size})
        if status["stored"]:
            return PutResult(oid, size, added=False)
        upload = f"/api/v1/uploads/{status['id']}"
        if status["direct"]:
            while status["parts"]:
                for part in status["parts"]:
                    self._put_part(part, read(part["start"], part["size"]))
                received = status["received"]
                status = self.conn.json("GET", upload)
                if status["parts"] and status["received"] <= received:
                    raise StorageError(
                        f"the bucket took the parts of blob {oid} but does not list them "
                        f"(still {status['received']} of {size} bytes)",
                        hint="check the server's [blobs] endpoint_url; starting the upload "
                        "again resumes it",
                    )
        else:
            offset = int(status["offset"])
            while offset < size:
                n = min(int(status["chunk_size"]), size - offset)
                response = self.conn.request(
                    "PUT",
                    upload,
                    content=read(offset, n),
                    headers={"Content-Range": f"bytes {offset}-{offset + n - 1}/{size}"},
                    ok=(409,),
                )
                answer = response.json()
                if response.status_code == 409:  # the server has more (a retried chunk)
                    error = error_from(response)
                    if "expected_offset" not in error.details:
                        raise error
                    offset = int(error.details["expected_offset"])
                else:
                    offset = int(answer["offset"])
        # Hashing a large blob takes the server a while: give it time.
        timeout = max(120.0, size / (50 << 20))
        try:
            answer = self.conn.json("POST", f"{upload}/complete", idempotent=False, timeout=timeout)
        except (StorageError, NotFoundError):
            # The answer may be lost after the server stored the blob.
            if self.exists(oid):
                return PutResult(oid, size, added=True)
            raise
        return PutResult(oid, size, added=bool(answer["added"]))

    def _put_part(self, part: dict[str, Any], data: bytes) -> None:
        for attempt in range(_TRANSFER_ATTEMPTS):
            try:
                response = self.bucket.put(str(part["url"]), content=data)
            except httpx.TransportError as e:
                if attempt + 1 == _TRANSFER_ATTEMPTS:
                    raise StorageError(
                        f"sending part {part['number']} to the bucket failed: {e}",
                        hint="check that this machine reaches the server's S3 endpoint; "
                        "the upload resumes when started again",
                    ) from e
                _backoff(attempt)
                continue
            if response.status_code < 300:
                return
            if response.status_code < 500 or attempt + 1 == _TRANSFER_ATTEMPTS:
                raise StorageError(
                    f"the bucket refused part {part['number']}: {response.status_code} "
                    f"{response.text[:300]}",
                    hint="the pre-signed URL may have expired: upload again to resume",
                )
            _backoff(attempt)

    def cache_file(self, path: Path, oid: str) -> None:
        """Move a file the server verified into the cache, when that is a rename."""
        dest = self._cache_path(oid)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or os.stat(path).st_dev != os.stat(dest.parent).st_dev:
            return
        os.chmod(path, 0o444)
        os.replace(path, dest)

    def cache_bytes(self, oid: str, data: bytes) -> None:
        """Keep bytes known to hash to ``oid`` (uploaded and verified) in the cache."""
        dest = self._cache_path(oid)
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)


class RemoteBatch(BlobBatch):
    """Uploads happen as blobs are put: each is stored (and verified) on the server
    when ``put_*`` returns, so committing has nothing left to do."""

    def __init__(self, store: RemoteBlobStore) -> None:
        self.store = store

    def put_file(
        self, path: str | os.PathLike[str], oid: str, size: int, *, move: bool = False
    ) -> PutResult:
        result = self.store.upload_file(Path(path), oid, size)
        if move and result.added:
            self.store.cache_file(Path(path), oid)
        return result

    def put_bytes(self, data: bytes, oid: str | None = None) -> PutResult:
        oid = oid or hash_bytes(data)
        result = self.store.upload_bytes(data, oid)
        if result.added:
            self.store.cache_bytes(oid, data)
        return result

    def commit(self) -> None:
        """Nothing to do: every blob put is stored on the server already."""
