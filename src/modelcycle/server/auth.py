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

from modelcycle.access import scope as projects
from modelcycle.access.tokens import TokenService
from modelcycle.core.errors import (
    AuthenticationError,
    ModelcycleError,
    PermissionDeniedError,
    http_status,
)
from modelcycle.store.metadata import acting_as
from modelcycle.store.tokens import TokenRow

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "modelcycle_token"
OPEN_PATHS = frozenset({"/health", "/metrics", "/login"})
OPEN_PREFIXES = ("/static/",)


def bearer(headers: list[tuple[bytes, bytes]], *, cookie: bool = True) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else (for pages, not the API,
    which has no CSRF tokens) of the login cookie."""
    found = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"cookie" and cookie:
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == COOKIE and val:
                    found = val
    return found


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenAuth:
    """``allow_open``: whether a workspace without a usable token may be served without
    one (decided once, from the address the server listens on: loopback only)."""

    def __init__(
        self, app: ASGIApp, tokens: Callable[[], TokenService], allow_open: bool = True
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.allow_open = allow_open

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
        headers = scope.get("headers", [])
        token = bearer(headers, cookie=not path.startswith("/api/"))
        try:
            _same_site(scope, headers)
            row = await anyio.to_thread.run_sync(_check, service, token, self.allow_open)
        except ModelcycleError as e:
            query = scope.get("query_string", b"").decode("latin-1")
            await _refuse(
                send, e, html=wants_html(scope), path=f"{path}?{query}" if query else path
            )
            return
        state["token"] = row
        if row is None:
            await self.app(scope, receive, send)
            return
        limits = projects.Scope(row.name, row.projects) if row.projects else None
        with acting_as(f"token:{row.name}"), projects.limited_to(limits):
            await self.app(scope, receive, send)


def _check(service: TokenService, token: str | None, allow_open: bool) -> TokenRow | None:
    if allow_open and not service.required():
        return None
    return service.authenticate(token)


def _same_site(scope: Scope, headers: list[tuple[bytes, bytes]]) -> None:
    """Refuse what another web site can make a browser send: a Host that is not the
    server's own (DNS rebinding) on an open server, and changes from another origin."""
    values = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
    host = values.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    server = scope.get("server")
    if server and server[0] in ("127.0.0.1", "::1") and name not in LOOPBACK_HOSTS:
        raise PermissionDeniedError(
            f"this server listens on a loopback address and does not answer for host {name!r}",
            hint="open it as http://127.0.0.1:PORT",
        )
    if scope.get("method", "GET") in SAFE_METHODS:
        return
    if values.get("sec-fetch-site") == "cross-site":
        raise PermissionDeniedError(
            "changes from another web site are refused", hint="use this server's own pages"
        )
    origin = values.get("origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != host:
        raise PermissionDeniedError(
            f"changes from origin {origin!r} are refused", hint="use this server's own pages"
        )


def wants_html(scope: Scope) -> bool:
    """Whether the request is a browser's for a page (an error answers as a page, or as a
    redirect to sign in): it accepts HTML and is not for the JSON API or its schema."""
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
