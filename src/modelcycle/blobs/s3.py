"""Blobs in an S3-compatible bucket: ``s3://bucket/prefix`` → ``prefix/ab/cdef…``.

An S3 PUT is atomic: an object is either absent or complete, so a batch uploads each blob
directly and has nothing left to do on commit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, cast
from urllib.parse import urlparse

from modelcycle.blobs.base import BlobBatch, BlobStore, PutResult, shard
from modelcycle.core.errors import StorageError, UsageError
from modelcycle.core.hashing import hash_bytes

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as e:  # pragma: no cover - depends on the install
    raise UsageError("the S3 blob store needs boto3", hint="pip install 'modelcycle[s3]'") from e


class S3BlobStore(BlobStore):
    def __init__(self, url: str, options: dict[str, str] | None = None) -> None:
        parsed = urlparse(url)
        if not parsed.netloc:
            raise UsageError(f"{url!r} names no bucket", hint="use s3://BUCKET[/PREFIX]")
        self.url = url
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        opts = dict(options or {})
        endpoint = opts.pop("endpoint_url", None) or os.environ.get("MODELCYCLE_S3_ENDPOINT_URL")
        kwargs: dict[str, Any] = {
            "endpoint_url": endpoint,
            "config": Config(retries={"max_attempts": 3, "mode": "standard"}),
        }
        for key in ("region_name", "aws_access_key_id", "aws_secret_access_key"):
            if key in opts:
                kwargs[key] = opts[key]
        self.client = boto3.session.Session().client("s3", **kwargs)

    def key(self, oid: str) -> str:
        return f"{self.prefix}/{shard(oid)}" if self.prefix else shard(oid)

    def _error(self, e: Exception) -> StorageError:
        return StorageError(
            f"S3 request to {self.url} failed: {e}",
            hint="check the bucket, the credentials and [blobs] endpoint_url in modelcycle.toml",
        )

    def exists(self, oid: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(oid))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(e) from e
        except BotoCoreError as e:
            raise self._error(e) from e
        return True

    def exists_many(self, oids: Iterable[str]) -> set[str]:
        wanted = set(oids)
        if len(wanted) < 64:
            return super().exists_many(wanted)
        return wanted & set(self.iter_oids())

    def batch(self) -> BlobBatch:
        return S3Batch(self)

    def open_raw(self, oid: str) -> BinaryIO:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key(oid))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise self._missing(oid) from None
            raise self._error(e) from e
        except BotoCoreError as e:
            raise self._error(e) from e
        # a StreamingBody reads like a binary file
        return cast(BinaryIO, obj["Body"])

    def size(self, oid: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(oid))
        except ClientError as e:
            raise self._missing(oid) from e
        return int(head["ContentLength"])

    def iter_oids(self) -> Iterator[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
                for item in page.get("Contents", []):
                    rel = item["Key"][len(base) :]
                    top, _, rest = rel.partition("/")
                    if len(top) == 2 and rest and "/" not in rest:
                        yield top + rest
        except (ClientError, BotoCoreError) as e:
            raise self._error(e) from e

    def remove(self, oid: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(oid))
        except (ClientError, BotoCoreError) as e:
            raise self._error(e) from e


class S3Batch(BlobBatch):
    def __init__(self, store: S3BlobStore) -> None:
        self.store = store
        self._seen: set[str] = set()

    def put_file(
        self, path: str | os.PathLike[str], oid: str, size: int, *, move: bool = False
    ) -> PutResult:
        if oid in self._seen or self.store.exists(oid):
            return PutResult(oid, size, added=False)
        try:
            self.store.client.upload_file(os.fspath(path), self.store.bucket, self.store.key(oid))
        except (ClientError, BotoCoreError) as e:
            raise self.store._error(e) from e
        self._seen.add(oid)
        return PutResult(oid, size, added=True)

    def put_bytes(self, data: bytes, oid: str | None = None) -> PutResult:
        oid = oid or hash_bytes(data)
        if oid in self._seen or self.store.exists(oid):
            return PutResult(oid, len(data), added=False)
        try:
            self.store.client.put_object(
                Bucket=self.store.bucket, Key=self.store.key(oid), Body=data
            )
        except (ClientError, BotoCoreError) as e:
            raise self.store._error(e) from e
        self._seen.add(oid)
        return PutResult(oid, len(data), added=True)

    def commit(self) -> None:
        """Nothing to do: every upload was atomic and is visible already."""
