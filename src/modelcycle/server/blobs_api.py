"""Blobs over HTTP, for remote workspaces (`modelcycle.remote.blobs.RemoteBlobStore`).

Readers check and fetch blobs; editors upload them. Small blobs go in one request
(``PUT /blobs/{oid}``); larger ones in a resumable session (``/uploads``), through the
server in chunks, or straight to the bucket with pre-signed URLs when the server's
blobs are in S3 (`transfers_s3`). The server verifies every upload's BLAKE3 digest
before the blob becomes visible; clients verify every download.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import anyio.to_thread
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from modelcycle.core.errors import InputDataError, StorageError, UsageError
from modelcycle.core.hashing import hash_bytes
from modelcycle.server.routes import EDIT, ERRORS, READ, ErrorBody
from modelcycle.server.transfers import Transfers, check_oid, too_large, transfers_for

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace

MAX_OIDS = 1000  # per exists request
_STREAM_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19})")
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
_CONTENT_RANGE_HINT = "send Content-Range: bytes START-END/SIZE (END inclusive) with each chunk"


def _raw_body(description: str) -> dict[str, Any]:
    """The OpenAPI description of a body of raw bytes (read by the handler itself)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    }


class ExistsRequest(BaseModel):
    oids: list[str] = Field(description=f"Blob ids to look up, at most {MAX_OIDS}")


class ExistsAnswer(BaseModel):
    stored: dict[str, int] = Field(description="The stored ones, oid → size in bytes")
    missing: list[str]


class UploadRequest(BaseModel):
    oid: str = Field(description="The blob's id: its BLAKE3 digest, 64 lowercase hex")
    size: int = Field(ge=0, description="The blob's size in bytes")


class PutAnswer(BaseModel):
    oid: str
    size: int
    added: bool = Field(description="False when the blob was stored already")


class UploadSettings(BaseModel):
    max_upload_bytes: int = Field(description="The largest blob this server takes")
    max_put_bytes: int = Field(description="The largest blob PUT /blobs/{oid} takes")
    chunk_size: int = Field(description="The size of an upload's chunks (or S3 parts)")
    direct: bool = Field(description="Whether uploads go straight to S3 (pre-signed URLs)")


class PartUrl(BaseModel):
    number: int
    start: int = Field(description="The part's first byte in the blob")
    size: int
    url: str = Field(description="Where to PUT the part's bytes (pre-signed)")


class UploadStatus(BaseModel):
    """An upload session, or ``stored: true`` (and nothing else) when the blob is
    stored already."""

    oid: str
    size: int
    stored: bool
    id: str | None = None
    offset: int | None = Field(
        default=None, description="Bytes received from the start on: send from here"
    )
    chunk_size: int | None = None
    direct: bool | None = Field(default=None, description="Send the parts to their URLs")
    received: int | None = Field(default=None, description="Bytes received in all (direct)")
    parts: list[PartUrl] | None = Field(
        default=None, description="Direct: parts still to send (the first 100), with URLs"
    )
    missing_parts: int | None = None
    expires_in: int | None = Field(default=None, description="Seconds the URLs work")


class Aborted(BaseModel):
    id: str
    aborted: bool


class BlobUrl(BaseModel):
    oid: str
    size: int
    url: str | None = Field(description="A pre-signed URL of the bytes; null: GET /blobs/{oid}")
    expires_in: int | None = None


def owner(request: Request) -> str:
    """Who an upload session belongs to: the token's name ("" on an open server)."""
    token = request.state.token
    return "" if token is None else str(token.name)


async def read_body(request: Request, limit: int, what: str, hint: str) -> bytes:
    """The request's body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(what, int(declared), limit, hint)
    pieces: list[bytes] = []
    seen = 0
    async for piece in request.stream():
        seen += len(piece)
        if seen > limit:
            raise too_large(what, seen, limit, hint)
        pieces.append(piece)
    return b"".join(pieces)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte a ``Range: bytes=A-B`` header asks for; None for the
    whole blob (no header, or one this server does not serve: several ranges)."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # the last N bytes
        n = int(match[2])
        return (max(size - n, 0), size - 1) if n and size else (size, size - 1)
    first = int(match[1])
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    return first, last


def _stream(f: BinaryIO, length: int) -> Iterator[bytes]:
    with f:
        left = length
        while left > 0:
            chunk = f.read(min(_STREAM_CHUNK, left))
            if not chunk:
                raise StorageError(f"a blob ended {left} bytes early while it was sent")
            left -= len(chunk)
            yield chunk


def blobs_router(ws: Callable[[], Workspace]) -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["blobs"])
    held: list[Transfers] = []

    def transfers() -> Transfers:
        w = ws()
        if not held or held[0].store is not w.blobs:
            held[:] = [transfers_for(w.blobs, w.config.state_dir / "uploads", w.config.server)]
        return held[0]

    # -- reads -----------------------------------------------------------------------
    @api.post("/blobs/exists", dependencies=READ)
    def exists(body: ExistsRequest) -> ExistsAnswer:
        """Which of the blobs are stored, with their sizes."""
        if len(body.oids) > MAX_OIDS:
            raise UsageError(
                f"{len(body.oids)} oids in one request; at most {MAX_OIDS} are allowed",
                hint=f"ask in batches of {MAX_OIDS}",
            )
        oids = list(dict.fromkeys(check_oid(oid) for oid in body.oids))
        stored = transfers().sizes(oids)
        return ExistsAnswer(stored=stored, missing=[o for o in oids if o not in stored])

    @api.get(
        "/blobs/{oid}",
        dependencies=READ,
        response_class=Response,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The bytes"},
            206: {"content": {"application/octet-stream": {}}, "description": "A range"},
            416: {"model": ErrorBody, "description": "The range starts past the blob's end"},
        },
    )
    def download(oid: str, range_: Annotated[str | None, Header(alias="range")] = None) -> Response:
        """The blob's bytes (unverified: the client checks them against the oid); a
        ``Range: bytes=A-`` header resumes a broken download."""
        check_oid(oid)
        t = transfers()
        size = t.store.size(oid)
        wanted = parse_range(range_, size)
        headers = {
            "accept-ranges": "bytes",
            "etag": f'"{oid}"',
            "cache-control": "private, max-age=31536000, immutable",
        }
        if wanted is None:
            first, last, status = 0, size - 1, 200
        else:
            first, last = wanted
            if first >= size or first > last:
                return JSONResponse(
                    UsageError(
                        f"the range {range_} starts past the end of blob {oid} ({size} bytes)",
                        hint="the download is complete: verify it",
                    ).to_dict(),
                    status_code=416,
                    headers={"content-range": f"bytes */{size}"},
                )
            status = 206
            headers["content-range"] = f"bytes {first}-{last}/{size}"
        length = last - first + 1
        headers["content-length"] = str(length)
        f = t.open_range(oid, first, length)
        return StreamingResponse(
            _stream(f, length),
            status_code=status,
            media_type="application/octet-stream",
            headers=headers,
        )

    @api.get("/blobs/{oid}/url", dependencies=READ)
    def download_url(oid: str) -> BlobUrl:
        """Where to fetch the blob without the server (a pre-signed S3 URL), or null."""
        check_oid(oid)
        t = transfers()
        size = t.store.size(oid)
        url = t.download_url(oid)
        return BlobUrl(oid=oid, size=size, url=url, expires_in=t.url_seconds if url else None)

    # -- uploads ---------------------------------------------------------------------
    @api.put("/blobs/{oid}", dependencies=EDIT, openapi_extra=_raw_body("The blob's bytes"))
    async def put_blob(oid: str, request: Request) -> PutAnswer:
        """Upload a small blob (at most ``max_put_bytes``) in one request."""
        check_oid(oid)
        t = transfers()
        limit = t.config.upload_chunk_bytes
        data = await read_body(
            request, limit, "a blob", "upload blobs this large in a session: POST /api/v1/uploads"
        )

        def store() -> PutAnswer:
            digest = hash_bytes(data)
            if digest != oid:
                raise InputDataError(
                    f"the {len(data)} bytes sent for blob {oid} hash to {digest}; "
                    "nothing was stored",
                    hint="compute the blob id from the bytes you send",
                    oid=oid,
                    actual=digest,
                )
            with t.store.batch() as batch:
                result = batch.put_bytes(data, oid)
            return PutAnswer(oid=oid, size=len(data), added=result.added)

        return await anyio.to_thread.run_sync(store)

    @api.get("/uploads", dependencies=EDIT)
    def upload_settings() -> UploadSettings:
        """The server's upload limits: ``max_upload_bytes``, ``max_put_bytes`` (the
        largest one-request upload), ``chunk_size`` and whether bytes go ``direct``."""
        return UploadSettings(**transfers().settings())

    @api.post("/uploads", dependencies=EDIT, response_model_exclude_none=True)
    def start_upload(body: UploadRequest, request: Request) -> UploadStatus:
        """Start uploading a blob, or resume: the same oid and size by the same token
        find the same session. ``{"stored": true}`` means nothing needs sending."""
        return UploadStatus(**transfers().start(owner(request), body.oid, body.size))

    @api.get("/uploads/{upload_id}", dependencies=EDIT, response_model_exclude_none=True)
    def upload_status(upload_id: str, request: Request) -> UploadStatus:
        """How far an upload is: ``offset`` (and, direct, the parts still to send)."""
        return UploadStatus(**transfers().status(owner(request), upload_id))

    @api.put(
        "/uploads/{upload_id}",
        dependencies=EDIT,
        openapi_extra=_raw_body("The bytes Content-Range names"),
        response_model_exclude_none=True,
    )
    async def upload_chunk(
        upload_id: str,
        request: Request,
        content_range: Annotated[str | None, Header()] = None,
    ) -> UploadStatus:
        """One chunk, where the bytes received so far end (409 with
        ``details.expected_offset`` otherwise)."""
        if content_range is None:
            raise UsageError("a chunk needs a Content-Range header", hint=_CONTENT_RANGE_HINT)
        match = _CONTENT_RANGE.fullmatch(content_range.strip())
        if match is None or int(match[1]) > int(match[2]) or int(match[2]) >= int(match[3]):
            raise UsageError(
                f"Content-Range {content_range[:100]!r} is not a range of the blob",
                hint=_CONTENT_RANGE_HINT,
            )
        first, last, total = int(match[1]), int(match[2]), int(match[3])
        t = transfers()
        who = owner(request)
        chunk_size = await anyio.to_thread.run_sync(t.chunk_size, who, upload_id)
        hint = f"send chunks of at most chunk_size ({chunk_size}) bytes"
        if last - first + 1 > chunk_size:
            raise too_large("a chunk", last - first + 1, chunk_size, hint)
        data = await read_body(request, chunk_size, "a chunk", hint)
        if len(data) != last - first + 1:
            raise UsageError(
                f"the chunk has {len(data)} bytes but its Content-Range says {last - first + 1}",
                hint=_CONTENT_RANGE_HINT,
            )
        status = await anyio.to_thread.run_sync(t.write, who, upload_id, first, total, data)
        return UploadStatus(**status)

    @api.post("/uploads/{upload_id}/complete", dependencies=EDIT)
    def complete_upload(upload_id: str, request: Request) -> PutAnswer:
        """Verify the bytes and store the blob (422, and the upload discarded, when they
        do not hash to its id)."""
        result = transfers().complete(owner(request), upload_id)
        return PutAnswer(oid=result.oid, size=result.size, added=result.added)

    @api.delete("/uploads/{upload_id}", dependencies=EDIT)
    def abort_upload(upload_id: str, request: Request) -> Aborted:
        """Give an upload up; what it received is deleted."""
        transfers().abort(owner(request), upload_id)
        return Aborted(id=upload_id, aborted=True)

    return api
