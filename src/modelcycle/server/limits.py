"""A limit on the size of request bodies, counted while they stream in.

`BodyLimit` refuses a body larger than ``[server] max_request_bytes`` with 413 and the
workspace's JSON error body. A ``Content-Length`` over the limit is refused before the
app runs; a body without one (chunked) or with a false one is counted as it arrives, and
whatever the app answers once the count passes the limit is replaced by the 413. The
blob upload routes (`EXEMPT`) are left to their handlers, which allow one chunk each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson

from modelcycle.core.errors import PayloadTooLargeError, http_status
from modelcycle.server.auth import ASGIApp, Receive, Scope, Send

# PUT of an upload chunk or of a whole small blob: their handlers enforce the chunk size.
EXEMPT = re.compile(r"/api/v1/(uploads/[0-9a-f]{32}|blobs/[0-9a-f]{64})")


class _TooLarge(Exception):
    """Raised into the app when the body passes the limit."""


def _error(limit: int, seen: int | None) -> PayloadTooLargeError:
    size = f"of {seen} bytes " if seen is not None else ""
    return PayloadTooLargeError(
        f"the request body {size}is larger than this server's limit of {limit} bytes",
        hint="send less per request (blobs go through /api/v1/uploads in chunks), or raise "
        "[server] max_request_bytes in the server's modelcycle.toml",
        limit=limit,
    )


class BodyLimit:
    """``limit`` is called per request (the workspace's setting, read once it is open)."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            scope.get("method") == "PUT" and EXEMPT.fullmatch(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, _error(limit, declared))
            return
        seen = 0
        over = False
        started = False

        async def counting_receive() -> MutableMapping[str, Any]:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if over:
                # The app answered the broken body somehow (often 400); say what happened.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _refuse(send, _error(limit, None))
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not started:
                await _refuse(send, _error(limit, None))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, error: PayloadTooLargeError) -> None:
    body = orjson.dumps(error.to_dict())
    await send(
        {
            "type": "http.response.start",
            "status": http_status(error),
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
