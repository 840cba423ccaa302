"""Blob transfers through the platform server: resumable uploads and ranged reads.

A client uploads a blob in one *session*: it declares the oid and the size, sends the
bytes in order in chunks of at most ``chunk_size`` bytes, and asks the server to
complete. The server hashes what it received and stores the blob only when the bytes
hash to the oid; until then nothing is visible in the blob store.

`Transfers` (any blob store but S3) appends chunks to ``STATE/uploads/ID.part``; the
offset is that file's size, so a session survives a lost connection and a restart of
the server. `modelcycle.server.transfers_s3.S3Transfers` sends the bytes straight to
the bucket instead (pre-signed S3 multipart uploads) and offers pre-signed downloads.

A session's id is derived from its owner (the token's name), the oid and the size:
starting the same upload again with the same token finds the same session and its
offset, so a client that lost its connection or restarted resumes; another token never
sees it (404). Sessions untouched for a day are removed when a new one starts.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from modelcycle.blobs.base import BlobStore, PutResult
from modelcycle.blobs.local import storage_error
from modelcycle.core.config import ServerConfig
from modelcycle.core.errors import (
    ConflictError,
    InputDataError,
    NotFoundError,
    PayloadTooLargeError,
    UsageError,
)
from modelcycle.core.hashing import hash_bytes, hash_file, hash_text

OID = re.compile(r"[0-9a-f]{64}")
SESSION_ID = re.compile(r"[0-9a-f]{32}")
STALE_SECONDS = 24 * 3600.0
_LOCK_STRIPES = 64
_OID_HINT = "a blob id is 64 lowercase hex characters: the BLAKE3 digest of the blob's bytes"


def check_oid(oid: str) -> str:
    """``oid`` when it is a blob id; UsageError (400) otherwise. Every path or key built
    from an oid the client sent goes through here first."""
    if not OID.fullmatch(oid):
        shown = oid if len(oid) <= 80 else oid[:80] + "…"
        raise UsageError(f"{shown!r} is not a blob id", hint=_OID_HINT, oid=shown)
    return oid


def too_large(what: str, size: int, limit: int, hint: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{what} of {size} bytes is larger than this server's limit of {limit} bytes",
        hint=hint,
        size=size,
        limit=limit,
    )


@dataclass(frozen=True)
class Session:
    """One upload in progress, as kept in ``STATE/uploads/ID.json``."""

    id: str
    oid: str
    size: int
    owner: str
    chunk_size: int
    created: float
    upload_id: str | None = None  # the S3 multipart upload's id


class Transfers:
    """Uploads through the server into ``store``, and reads of stored blobs."""

    direct = False  # whether bytes go straight to the blob store (pre-signed URLs)
    url_seconds: int | None = None  # how long a pre-signed URL works

    def __init__(self, store: BlobStore, folder: Path, config: ServerConfig) -> None:
        self.store = store
        self.folder = folder
        self.config = config
        # Striped: a bounded set of locks however many sessions come and go.
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    # -- settings and reads ----------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What a client needs to know before it uploads."""
        return {
            "max_upload_bytes": self.config.max_upload_bytes,
            "max_put_bytes": self.config.upload_chunk_bytes,
            "chunk_size": self.config.upload_chunk_bytes,
            "direct": self.direct,
        }

    def sizes(self, oids: list[str]) -> dict[str, int]:
        """The stored ones among ``oids``, with their sizes."""
        out = {}
        for oid in oids:
            try:
                out[oid] = self.store.size(oid)
            except NotFoundError:
                continue
        return out

    def open_range(self, oid: str, start: int, length: int) -> BinaryIO:
        """The blob's bytes from ``start`` on (the caller reads ``length`` of them)."""
        f = self.store.open_raw(oid)
        try:
            f.seek(start)
        except OSError:
            f.close()
            raise
        return f

    def download_url(self, oid: str) -> str | None:
        """A URL the client can fetch the blob from without the server; None here."""
        return None

    # -- uploads ---------------------------------------------------------------------
    def start(self, owner: str, oid: str, size: int) -> dict[str, Any]:
        """Begin (or resume) uploading ``oid``; ``{"stored": True}`` when it is stored."""
        check_oid(oid)
        if size > self.config.max_upload_bytes:
            raise too_large(
                "an upload",
                size,
                self.config.max_upload_bytes,
                "raise [server] max_upload_bytes in the server's modelcycle.toml, or split "
                "the data into smaller files",
            )
        if self.store.exists(oid):
            return {"oid": oid, "size": size, "stored": True}
        if size == 0:
            return self._store_empty(oid)
        self._sweep()
        session_id = hash_text("upload", owner, oid, str(size))[:32]
        with self._lock(session_id):
            session = self._read(session_id)
            if session is None or session.owner != owner or not self._alive(session):
                session = self._create(session_id, owner, oid, size)
            else:
                self._touch(session)
            return self._status(session)

    def status(self, owner: str, session_id: str) -> dict[str, Any]:
        with self._lock(session_id):
            session = self._load(owner, session_id)
            self._touch(session)
            return self._status(session)

    def chunk_size(self, owner: str, session_id: str) -> int:
        """The most bytes one chunk of the session may carry (sent through the server)."""
        session = self._load(owner, session_id)
        self._through_server(session)
        return session.chunk_size

    def _through_server(self, session: Session) -> None:
        if self.direct:
            raise ConflictError(
                f"upload {session.id} goes straight to the blob store, not through the server",
                hint="PUT each part to the URL the upload's status lists",
            )

    def write(
        self, owner: str, session_id: str, start: int, total: int, data: bytes
    ) -> dict[str, Any]:
        """Append one chunk, which must start where the bytes received so far end."""
        with self._lock(session_id):
            session = self._load(owner, session_id)
            self._through_server(session)
            if total != session.size:
                raise UsageError(
                    f"the chunk says the blob has {total} bytes, but upload {session_id} "
                    f"declared {session.size}",
                    hint="send Content-Range: bytes START-END/SIZE with the declared size",
                )
            if len(data) > session.chunk_size:
                raise too_large(
                    "a chunk", len(data), session.chunk_size, "send chunks of at most chunk_size"
                )
            offset = self._offset(session)
            if start != offset:
                raise ConflictError(
                    f"upload {session_id} has received {offset} bytes, so the next chunk "
                    f"must start at byte {offset}, not {start}",
                    hint="send the chunk that starts at expected_offset",
                    expected_offset=offset,
                )
            if start + len(data) > session.size:
                raise UsageError(
                    f"the chunk ends at byte {start + len(data)}, past the declared size "
                    f"{session.size}",
                    hint="start a new upload with the right size",
                )
            part = self._part(session_id)
            try:
                with open(part, "ab") as f:
                    f.write(data)
            except OSError as e:
                raise storage_error(e, self.folder) from e
            return self._status(session)

    def complete(self, owner: str, session_id: str) -> PutResult:
        """Verify the received bytes and store the blob; the session ends either way
        unless bytes are still missing (ConflictError, the session stays)."""
        with self._lock(session_id):
            session = self._load(owner, session_id)
            return self._complete(session)

    def abort(self, owner: str, session_id: str) -> None:
        with self._lock(session_id):
            self._discard(self._load(owner, session_id))

    # -- the local kind --------------------------------------------------------------
    def _create(self, session_id: str, owner: str, oid: str, size: int) -> Session:
        session = Session(session_id, oid, size, owner, self.config.upload_chunk_bytes, time.time())
        self._part(session_id).unlink(missing_ok=True)  # a stale one of another owner
        self._save(session)
        return session

    def _alive(self, session: Session) -> bool:
        """Whether the session's bytes are still where it keeps them."""
        return True

    def _offset(self, session: Session) -> int:
        try:
            return self._part(session.id).stat().st_size
        except FileNotFoundError:
            return 0

    def _status(self, session: Session) -> dict[str, Any]:
        return {
            "id": session.id,
            "oid": session.oid,
            "size": session.size,
            "offset": self._offset(session),
            "chunk_size": session.chunk_size,
            "stored": False,
            "direct": self.direct,
        }

    def _complete(self, session: Session) -> PutResult:
        offset = self._offset(session)
        if offset != session.size:
            raise self._incomplete(session, offset)
        part = self._part(session.id)
        digest = hash_file(part, session.size)
        if digest != session.oid:
            self._discard(session)
            raise self._mismatch(session, digest)
        try:
            with self.store.batch() as batch:
                result = batch.put_file(part, session.oid, session.size, move=True)
        finally:
            self._discard(session)
        return result

    def _discard(self, session: Session) -> None:
        self._part(session.id).unlink(missing_ok=True)
        self._path(session.id).unlink(missing_ok=True)

    def _store_empty(self, oid: str) -> dict[str, Any]:
        if oid != hash_bytes(b""):
            raise InputDataError(
                f"an empty blob is named {hash_bytes(b'')}, not {oid}",
                hint="compute the blob id from the bytes you send",
            )
        with self.store.batch() as batch:
            batch.put_bytes(b"", oid)
        return {"oid": oid, "size": 0, "stored": True}

    # -- shared helpers --------------------------------------------------------------
    def _incomplete(self, session: Session, offset: int) -> ConflictError:
        return ConflictError(
            f"upload {session.id} has {offset} of {session.size} bytes",
            hint="send the rest (from expected_offset), then complete",
            expected_offset=offset,
        )

    def _mismatch(self, session: Session, digest: str) -> InputDataError:
        return InputDataError(
            f"the {session.size} bytes uploaded for blob {session.oid} hash to {digest}; "
            "the upload was discarded and nothing was stored",
            hint="the file changed while it was uploaded, or its id was computed from other "
            "bytes; upload it again",
            oid=session.oid,
            actual=digest,
        )

    def _path(self, session_id: str) -> Path:
        return self.folder / f"{session_id}.json"

    def _part(self, session_id: str) -> Path:
        return self.folder / f"{session_id}.part"

    @contextmanager
    def _lock(self, session_id: str) -> Iterator[None]:
        """One session's requests one at a time (never held while taking another)."""
        with self._locks[hash(session_id) % _LOCK_STRIPES]:
            yield

    def _read(self, session_id: str) -> Session | None:
        try:
            data = json.loads(self._path(session_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return Session(**data)

    def _load(self, owner: str, session_id: str) -> Session:
        if not SESSION_ID.fullmatch(session_id):
            raise UsageError(
                f"{session_id[:80]!r} is not an upload id",
                hint="use the id `POST /api/v1/uploads` answered with",
            )
        session = self._read(session_id)
        if session is None or session.owner != owner:
            raise NotFoundError(
                f"no upload {session_id} (it was completed, aborted, or untouched for a day)",
                hint="start it again with POST /api/v1/uploads; the client resumes from "
                "what the server still has",
            )
        return session

    def _save(self, session: Session) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{session.id}.json.tmp"
            tmp.write_text(json.dumps(asdict(session)), encoding="utf-8")
            os.replace(tmp, self._path(session.id))
        except OSError as e:
            raise storage_error(e, self.folder) from e

    def _touch(self, session: Session) -> None:
        """Record activity: a session is stale a day after its last."""
        self._path(session.id).touch()

    def _sweep(self) -> None:
        """Remove sessions (and stray partial files) untouched for a day."""
        if not self.folder.is_dir():
            return
        cutoff = time.time() - STALE_SECONDS
        for entry in os.scandir(self.folder):
            session_id, dot, ext = entry.name.partition(".")
            if not dot or not SESSION_ID.fullmatch(session_id):
                continue
            try:
                json_time = self._path(session_id).stat().st_mtime
            except FileNotFoundError:
                json_time = 0.0
            try:
                part_time = self._part(session_id).stat().st_mtime
            except FileNotFoundError:
                part_time = 0.0
            if max(json_time, part_time) >= cutoff:
                continue
            with self._lock(session_id):
                session = self._read(session_id) if ext == "json" else None
                if session is not None:
                    self._discard(session)
                else:
                    self._part(session_id).unlink(missing_ok=True)


def transfers_for(store: BlobStore, folder: Path, config: ServerConfig) -> Transfers:
    """The transfers that suit ``store``: straight to the bucket for S3."""
    if store.url.startswith("s3://"):
        from modelcycle.server.transfers_s3 import S3Transfers

        return S3Transfers(store, folder, config)
    return Transfers(store, folder, config)
