"""The interface every blob backend implements.

A blob is bytes named by the hex BLAKE3 digest of those bytes (its *oid*). Backends store
blob ``abcdef…`` under ``ab/cdef…``. Writes go through a `BlobBatch` so that a backend can
make a whole batch durable at once before the metadata that references it is committed.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelcycle.core.errors import BlobCorruptedError, NotFoundError
from modelcycle.core.hashing import ALGORITHM, hash_bytes, hasher

_COPY_CHUNK = 8 << 20


def shard(oid: str) -> str:
    """The relative key of a blob: ``ab/cdef…``."""
    return f"{oid[:2]}/{oid[2:]}"


@dataclass(frozen=True, slots=True)
class PutResult:
    oid: str
    size: int
    added: bool  # False when the blob existed already (deduplicated)


class BlobStore(ABC):
    """Content-addressed storage of immutable blobs."""

    url: str
    algorithm: str = ALGORITHM

    @abstractmethod
    def exists(self, oid: str) -> bool: ...

    def exists_many(self, oids: Iterable[str]) -> set[str]:
        """The subset of ``oids`` that are stored."""
        return {oid for oid in oids if self.exists(oid)}

    @abstractmethod
    def batch(self) -> BlobBatch:
        """A batch of writes made durable together when it closes."""

    @abstractmethod
    def open_raw(self, oid: str) -> BinaryIO:
        """The stored bytes, unverified. Raises NotFoundError."""

    @abstractmethod
    def size(self, oid: str) -> int: ...

    @abstractmethod
    def iter_oids(self) -> Iterator[str]: ...

    @abstractmethod
    def remove(self, oid: str) -> None: ...

    def read_bytes(self, oid: str) -> bytes:
        """The blob's bytes, verified against its name."""
        with self.open_raw(oid) as f:
            data = f.read()
        self._check(oid, hash_bytes(data))
        return data

    def get_file(self, oid: str, dest: str | os.PathLike[str]) -> None:
        """Copy a blob to ``dest`` (verified while copying; ``dest`` is left absent on error)."""
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.mc-tmp")
        h = hasher()
        try:
            with self.open_raw(oid) as src, open(tmp, "wb") as out:
                while chunk := src.read(_COPY_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            self._check(oid, h.hexdigest())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def verify(self, oid: str) -> None:
        """Raise BlobCorruptedError if the blob's bytes do not match its name."""
        h = hasher()
        with self.open_raw(oid) as f:
            while chunk := f.read(_COPY_CHUNK):
                h.update(chunk)
        self._check(oid, h.hexdigest())

    def _check(self, oid: str, actual: str) -> None:
        if actual != oid:
            raise BlobCorruptedError(
                f"blob {oid} in {self.url} is corrupted: its content hashes to {actual}",
                hint="restore it from a backup or re-add the data; `modelcycle fsck` lists all",
                oid=oid,
            )

    def _missing(self, oid: str) -> NotFoundError:
        return NotFoundError(
            f"blob {oid} is missing from {self.url}",
            hint="run `modelcycle fsck` to see what references it",
            oid=oid,
        )


class BlobBatch(ABC):
    """Writes collected and made durable together. Use as a context manager."""

    @abstractmethod
    def put_file(
        self, path: str | os.PathLike[str], oid: str, size: int, *, move: bool = False
    ) -> PutResult:
        """Store the file at ``path`` whose digest the caller already computed.

        With ``move`` the caller gives the file up: a backend may rename it into the
        store instead of copying it (the file is then gone from ``path``).
        """

    @abstractmethod
    def put_bytes(self, data: bytes, oid: str | None = None) -> PutResult: ...

    @abstractmethod
    def commit(self) -> None:
        """Make every blob of the batch durable and visible."""

    def abort(self) -> None:  # noqa: B027 - a no-op is right for backends whose puts are atomic
        """Forget blobs not yet visible."""

    def __enter__(self) -> BlobBatch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
