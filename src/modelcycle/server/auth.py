"""Authentication for the platform server: a bearer token (or the login cookie) per
request, checked against the workspace's tokens; the role each endpoint needs.

`TokenAuth` is plain ASGI middleware. It lets health, metrics and the login page
through, authenticates everything else, stores the token's record in the request's
state, and records every change the request makes under the token's name (the audit
log's actor). A workspace without tokens runs open, which `modelcycle server` allows
on a loopback address only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import Request

from modelcycle.access.tokens import TokenService
from modelcycle.core.errors import AuthenticationError, ModelcycleError, http_status
from modelcycle.store.metadata import acting_as
from modelcycle.store.tokens import TokenRow

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "modelcycle_token"
OPEN_PATHS = frozenset({"/health", "/metrics", "/login"})
OPEN_PREFIXES = ("/static/",)


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else of the login cookie."""
    cookie = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == COOKIE and val:
                    cookie = val
    return cookie


class TokenAuth:
    def __init__(self, app: ASGIApp, tokens: Callable[[], TokenService]) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        state = scope.setdefault("state", {})
        state["token"] = None
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        service = self.tokens()
        token = bearer(scope.get("headers", []))
        try:
            row = await anyio.to_thread.run_sync(_check, service, token)
        except ModelcycleError as e:
            query = scope.get("query_string", b"").decode("latin-1")
            await _refuse(
                send, e, html=_wants_html(scope), path=f"{path}?{query}" if query else path
            )
            return
        state["token"] = row
        if row is None:
            await self.app(scope, receive, send)
            return
        with acting_as(f"token:{row.name}"):
            await self.app(scope, receive, send)


def _check(service: TokenService, token: str | None) -> TokenRow | None:
    if not service.required():
        return None
    return service.authenticate(token)


def _wants_html(scope: Scope) -> bool:
    if scope["path"].startswith("/api/") or scope["path"] == "/openapi.json":
        return False
    accept = dict(scope.get("headers", [])).get(b"accept", b"")
    return b"text/html" in accept


async def _refuse(send: Send, error: ModelcycleError, *, html: bool, path: str) -> None:
    import orjson

    if html and isinstance(error, AuthenticationError):
        target = quote(path, safe="/")
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", f"/login?next={target}".encode()),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    body = orjson.dumps(error.to_dict())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(error, AuthenticationError):
        headers.append((b"www-authenticate", b'Bearer realm="modelcycle"'))
    await send({"type": "http.response.start", "status": http_status(error), "headers": headers})
    await send({"type": "http.response.body", "body": body})


def needs(role: str) -> Callable[[Request], None]:
    """A FastAPI dependency: the request's token must have ``role`` or a higher one."""

    def check(request: Request) -> None:
        TokenService.authorize(request.state.token, role)

    check.__name__ = f"needs_{role}"
    return check
