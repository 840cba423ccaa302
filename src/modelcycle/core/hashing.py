"""Content hashes: BLAKE3, always stored with the algorithm's name beside the digest."""

from __future__ import annotations

import os
from dataclasses import dataclass

import blake3

ALGORITHM = "blake3"
_CHUNK = 8 << 20
# Above this size one file is hashed with several threads; below, threads cost more than they save.
_MT_THRESHOLD = 64 << 20


@dataclass(frozen=True, slots=True)
class HashInfo:
    """A digest and the algorithm that made it."""

    algorithm: str
    value: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"

    @property
    def short(self) -> str:
        return self.value[:12]

    @classmethod
    def parse(cls, text: str) -> HashInfo:
        algorithm, sep, value = text.partition(":")
        if not sep:
            return cls(ALGORITHM, text)
        return cls(algorithm, value)


def hash_bytes(data: bytes | memoryview) -> str:
    """Hex BLAKE3 digest of ``data``."""
    return blake3.blake3(data).hexdigest()


def hasher() -> blake3.blake3:
    return blake3.blake3()


def hash_file(path: str | os.PathLike[str], size: int | None = None) -> str:
    """Hex BLAKE3 digest of a file's content; large files are hashed on several threads."""
    if size is None:
        size = os.path.getsize(path)
    if size >= _MT_THRESHOLD:
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        h.update_mmap(os.fspath(path))
        return h.hexdigest()
    with open(path, "rb") as f:
        if size <= _CHUNK:
            return blake3.blake3(f.read()).hexdigest()
        h = blake3.blake3()
        while chunk := f.read(_CHUNK):
            h.update(chunk)
        return h.hexdigest()


def hash_text(*parts: str) -> str:
    """A stable digest of several strings (used for cache keys)."""
    h = blake3.blake3()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()
