"""Blob stores, chosen by URL scheme from a table of lazily imported classes."""

from __future__ import annotations

import importlib
from typing import Any

from modelcycle.blobs.base import BlobBatch, BlobStore, PutResult, shard
from modelcycle.core.errors import UsageError

# scheme -> (module, class, pip extra that provides its dependencies)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "file": ("modelcycle.blobs.local", "LocalBlobStore", None),
    "s3": ("modelcycle.blobs.s3", "S3BlobStore", "s3"),
}


def open_blob_store(url: str, options: dict[str, str] | None = None) -> BlobStore:
    """The blob store for ``url``: a local folder path, ``file://PATH`` or ``s3://BUCKET/PREFIX``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "file", url
    if scheme not in BACKENDS:
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise UsageError(f"unknown blob store scheme {scheme!r} in {url!r}", hint=f"use {known}")
    module_name, class_name, extra = BACKENDS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(
            f"the {scheme}:// blob store needs extra packages ({e.name} is missing)",
            hint=f"pip install 'modelcycle[{extra}]'",
        ) from e
    cls: Any = getattr(module, class_name)
    if scheme == "file":
        return cls(rest)  # type: ignore[no-any-return]
    return cls(url, options)  # type: ignore[no-any-return]


__all__ = ["BACKENDS", "BlobBatch", "BlobStore", "PutResult", "open_blob_store", "shard"]
