"""Blob transfers that go straight to an S3 bucket, past the server.

An upload is an S3 multipart upload to a staging key (``PREFIX/uploads/ID``, which is
not a blob's key, so nothing sees it as one). The session's status lists the parts the
bucket has not received yet, each with a pre-signed UploadPart URL; the client PUTs the
bytes there, and a client that lost its connection asks for the status again (the
bucket's list of parts says what is there). Completing finishes the multipart upload,
streams the staged object through BLAKE3, and only when it hashes to the oid copies it
to the blob's key; the staged object is deleted either way.

Downloads are pre-signed GET URLs. Every URL points at the store's own endpoint
(``[blobs] endpoint_url``), so clients must be able to reach the bucket there.
"""

from __future__ import annotations

import io
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast

from botocore.exceptions import BotoCoreError, ClientError

from modelcycle.blobs.base import BlobStore, PutResult
from modelcycle.blobs.s3 import S3BlobStore
from modelcycle.core.config import ServerConfig
from modelcycle.core.errors import InputDataError, NotFoundError, StorageError
from modelcycle.core.hashing import hasher
from modelcycle.server.transfers import Session, Transfers

MIN_PART = 5 << 20  # S3's smallest part but the last
MAX_PARTS = 10_000  # S3's most parts in one upload
URL_SECONDS = 3600  # how long a pre-signed URL works
URLS_PER_STATUS = 100  # parts a status lists URLs for; the client asks again for more
_HASH_CHUNK = 8 << 20
_MISSING = ("404", "NoSuchKey", "NotFound")


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class S3Transfers(Transfers):
    direct = True
    url_seconds = URL_SECONDS

    def __init__(self, store: BlobStore, folder: Path, config: ServerConfig) -> None:
        if not isinstance(store, S3BlobStore):
            raise TypeError(f"S3Transfers needs an S3 blob store, not {store.url}")
        super().__init__(store, folder, config)
        self.s3 = store
        self.client = store.client
        self.bucket = store.bucket

    def _error(self, e: Exception) -> StorageError:
        return StorageError(
            f"S3 request to {self.s3.url} failed: {e}",
            hint="check the bucket, the server's credentials and [blobs] endpoint_url",
        )

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "chunk_size": max(self.config.upload_chunk_bytes, MIN_PART)}

    # -- reads -----------------------------------------------------------------------
    def sizes(self, oids: list[str]) -> dict[str, int]:
        if len(oids) <= 4:
            return super().sizes(oids)
        with ThreadPoolExecutor(16) as pool:
            found = pool.map(lambda oid: (oid, self._size(oid)), oids)
            return {oid: size for oid, size in found if size is not None}

    def _size(self, oid: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.s3.key(oid))
        except ClientError as e:
            if _code(e) in _MISSING:
                return None
            raise self._error(e) from e
        except BotoCoreError as e:
            raise self._error(e) from e
        return int(head["ContentLength"])

    def open_range(self, oid: str, start: int, length: int) -> BinaryIO:
        if length == 0:
            return io.BytesIO(b"")
        try:
            obj = self.client.get_object(
                Bucket=self.bucket,
                Key=self.s3.key(oid),
                Range=f"bytes={start}-{start + length - 1}",
            )
        except ClientError as e:
            if _code(e) in _MISSING:
                raise self.s3._missing(oid) from None
            raise self._error(e) from e
        except BotoCoreError as e:
            raise self._error(e) from e
        return cast(BinaryIO, obj["Body"])  # a StreamingBody reads like a binary file

    def download_url(self, oid: str) -> str | None:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.s3.key(oid)},
            ExpiresIn=URL_SECONDS,
        )

    # -- uploads ---------------------------------------------------------------------
    def _staging(self, session_id: str) -> str:
        prefix = f"{self.s3.prefix}/" if self.s3.prefix else ""
        return f"{prefix}uploads/{session_id}"

    def _part_size(self, size: int) -> int:
        return max(self.config.upload_chunk_bytes, MIN_PART, math.ceil(size / MAX_PARTS))

    def _create(self, session_id: str, owner: str, oid: str, size: int) -> Session:
        old = self._read(session_id)
        if old is not None:  # another owner's, or a broken one: start afresh
            self._discard(old)
        try:
            answer = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self._staging(session_id)
            )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e) from e
        session = Session(
            session_id, oid, size, owner, self._part_size(size), time.time(), answer["UploadId"]
        )
        try:
            self._save(session)
        except BaseException:
            self._abort_upload(session)
            raise
        return session

    def _expected(self, session: Session) -> list[tuple[int, int, int]]:
        """Every part as (number, first byte, size)."""
        count = math.ceil(session.size / session.chunk_size)
        return [
            (
                n + 1,
                n * session.chunk_size,
                min(session.chunk_size, session.size - n * session.chunk_size),
            )
            for n in range(count)
        ]

    def _parts(self, session: Session) -> dict[int, tuple[int, str]] | None:
        """The parts the bucket has, number → (size, ETag); None once the multipart
        upload is gone (completed or aborted)."""
        out: dict[int, tuple[int, str]] = {}
        paginator = self.client.get_paginator("list_parts")
        try:
            for page in paginator.paginate(
                Bucket=self.bucket,
                Key=self._staging(session.id),
                UploadId=str(session.upload_id),
            ):
                for part in page.get("Parts", []):
                    out[int(part["PartNumber"])] = (int(part["Size"]), str(part["ETag"]))
        except ClientError as e:
            if _code(e) in ("NoSuchUpload", *_MISSING):
                return None
            raise self._error(e) from e
        except BotoCoreError as e:
            raise self._error(e) from e
        return out

    def _missing_parts(
        self, session: Session, parts: dict[int, tuple[int, str]]
    ) -> list[tuple[int, int, int]]:
        # A part of the wrong size counts as missing: sending it again replaces it.
        return [p for p in self._expected(session) if parts.get(p[0], (-1, ""))[0] != p[2]]

    def _staged_size(self, session: Session) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._staging(session.id))
        except ClientError as e:
            if _code(e) in _MISSING:
                return None
            raise self._error(e) from e
        except BotoCoreError as e:
            raise self._error(e) from e
        return int(head["ContentLength"])

    def _alive(self, session: Session) -> bool:
        return self._parts(session) is not None or self._staged_size(session) is not None

    def _lost(self, session: Session) -> NotFoundError:
        self._discard(session)
        return NotFoundError(
            f"upload {session.id} is gone from the bucket (aborted or expired there)",
            hint="start it again with POST /api/v1/uploads",
        )

    def _status(self, session: Session) -> dict[str, Any]:
        parts = self._parts(session)
        if parts is None:
            # Completed in the bucket already (a complete that was cut short): only the
            # server's own check and copy are left.
            if self._staged_size(session) is None:
                raise self._lost(session)
            missing: list[tuple[int, int, int]] = []
        else:
            missing = self._missing_parts(session, parts)
        offset = missing[0][1] if missing else session.size
        received = session.size - sum(size for _, _, size in missing)
        return {
            "id": session.id,
            "oid": session.oid,
            "size": session.size,
            "offset": offset,
            "received": received,
            "chunk_size": session.chunk_size,
            "stored": False,
            "direct": True,
            "expires_in": URL_SECONDS,
            "parts": [
                {
                    "number": number,
                    "start": start,
                    "size": size,
                    "url": self._part_url(session, number),
                }
                for number, start, size in missing[:URLS_PER_STATUS]
            ],
            "missing_parts": len(missing),
        }

    def _part_url(self, session: Session, number: int) -> str:
        return self.client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": self._staging(session.id),
                "UploadId": str(session.upload_id),
                "PartNumber": number,
            },
            ExpiresIn=URL_SECONDS,
        )

    def _complete(self, session: Session) -> PutResult:
        staging = self._staging(session.id)
        parts = self._parts(session)
        if parts is not None:
            missing = self._missing_parts(session, parts)
            if missing:
                error = self._incomplete(session, missing[0][1])
                error.details["missing_parts"] = [number for number, _, _ in missing[:100]]
                raise error
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=staging,
                    UploadId=str(session.upload_id),
                    MultipartUpload={
                        "Parts": [
                            {"PartNumber": number, "ETag": parts[number][1]}
                            for number, _, _ in self._expected(session)
                        ]
                    },
                )
            except (ClientError, BotoCoreError) as e:
                raise self._error(e) from e
        staged = self._staged_size(session)
        if staged is None:
            raise self._lost(session)
        try:
            if staged != session.size:
                raise InputDataError(
                    f"the bucket received {staged} bytes for blob {session.oid}, not the "
                    f"{session.size} declared; the upload was discarded",
                    hint="upload it again",
                    oid=session.oid,
                )
            digest = self._hash(staging)
            if digest != session.oid:
                raise self._mismatch(session, digest)
            if self.store.exists(session.oid):
                return PutResult(session.oid, session.size, added=False)
            try:
                self.client.copy(
                    {"Bucket": self.bucket, "Key": staging}, self.bucket, self.s3.key(session.oid)
                )
            except (ClientError, BotoCoreError) as e:
                raise self._error(e) from e
            return PutResult(session.oid, session.size, added=True)
        finally:
            self._discard(session)

    def _hash(self, key: str) -> str:
        h = hasher()
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(_HASH_CHUNK):
                h.update(chunk)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e) from e
        return str(h.hexdigest())

    def _abort_upload(self, session: Session) -> None:
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._staging(session.id), UploadId=str(session.upload_id)
            )
        except ClientError as e:
            if _code(e) not in ("NoSuchUpload", *_MISSING):
                raise self._error(e) from e
        except BotoCoreError as e:
            raise self._error(e) from e

    def _discard(self, session: Session) -> None:
        self._abort_upload(session)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._staging(session.id))
        except (ClientError, BotoCoreError) as e:
            raise self._error(e) from e
        super()._discard(session)
