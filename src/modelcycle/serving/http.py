"""HTTP plumbing of the ASGI app: the request object, request ids, reading bodies."""

from __future__ import annotations

import itertools
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from modelcycle.serving.errors import MalformedRequest, PayloadTooLarge

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
ResponseHeaders = list[tuple[bytes, bytes]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


class Request:
    """One HTTP request on its way through the server."""

    __slots__ = (
        "arrived",
        "headers",
        "method",
        "path",
        "query",
        "receive",
        "request_id",
        "responded",
        "rid",
        "send",
        "started",
    )

    def __init__(
        self, scope: dict[str, Any], receive: Receive, send: Send, ids: RequestIds
    ) -> None:
        self.started = time.perf_counter()
        self.arrived = time.time()
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.receive = receive
        self.send = send
        self.request_id = ids.take(self.headers.get(b"x-request-id"))
        self.rid = self.request_id.encode()
        self.responded = False

    def query_param(self, name: str) -> str | None:
        if not self.query:
            return None
        values = urllib.parse.parse_qs(self.query.decode("latin-1")).get(name)
        return values[0] if values else None

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: bytes = JSON,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.responded = True
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", self.rid),
            *extra,
        ]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


class RequestIds:
    """Request ids: a random prefix per process and a counter (unique across workers)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._count = itertools.count(1)

    def take(self, given: bytes | None) -> str:
        if given is not None and valid_request_id(given):
            return given.decode("ascii")
        return f"{self._prefix}-{next(self._count):x}"


async def read_body(receive: Receive, limit: int, declared: bytes | None) -> bytes:
    """The whole body, refusing one larger than ``limit`` bytes before it is read: at
    once from Content-Length, else as soon as the chunks received pass the limit."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise MalformedRequest("Content-Length is not a number", hint="") from None
        if size > limit:
            raise _too_large(size, limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(len(body), limit)
        return body
    chunks, total = [body], len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _too_large(total, limit, at_least=True)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(size: int, limit: int, at_least: bool = False) -> PayloadTooLarge:
    mb = limit / (1024 * 1024)
    return PayloadTooLarge(
        f"the body is {'more than ' if at_least else ''}{size} bytes; this server takes at "
        f"most {limit} ({mb:g} MB)",
        hint="send fewer rows per request, or start the server with a larger --max-body-mb",
    )


_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


def valid_request_id(value: bytes | None) -> bool:
    return value is not None and _REQUEST_ID.fullmatch(value) is not None
