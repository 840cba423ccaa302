"""One authenticated HTTP connection to a platform server.

Every answer that is not a success becomes the workspace's own error again: the server
sends ``{"error": "NotFoundError", "message", "hint", "details"}`` (`ModelcycleError.
to_dict`), and the client raises that class with the same message, hint and details, so
a remote call fails exactly as a local one would.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from modelcycle import __version__
from modelcycle.core import errors as _errors
from modelcycle.core.errors import (
    ERROR_TABLE,
    AuthenticationError,
    ModelcycleError,
    PayloadTooLargeError,
    StorageError,
    UsageError,
)

# Statuses worth another try: the server or a proxy in front of it was busy or restarting.
RETRY_STATUSES = frozenset({502, 503, 504})
# Network failures worth another try: the request was not sent, or the connection broke.
# A read timeout is not retried: the server may still be working on the first request.
RETRYABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
_BY_NAME: dict[str, type[ModelcycleError]] = {cls.__name__: cls for cls in ERROR_TABLE}
_BY_STATUS: dict[int, type[ModelcycleError]] = {
    413: PayloadTooLargeError,  # a proxy's own limit, e.g. nginx client_max_body_size
    401: AuthenticationError,
}


def error_from(response: httpx.Response) -> ModelcycleError:
    """The workspace error a failed response stands for."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        cls = _BY_NAME.get(body["error"]) or getattr(_errors, body["error"], None)
        if not (isinstance(cls, type) and issubclass(cls, ModelcycleError)):
            cls = ModelcycleError
        error = cls.__new__(cls)
        raw = body.get("details")
        details: dict[str, Any] = raw if isinstance(raw, dict) else {}
        ModelcycleError.__init__(
            error, str(body.get("message", "")), hint=body.get("hint"), **details
        )
        return error
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's 422: [{loc, msg, type}]
        problems = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
            for d in detail
            if isinstance(d, dict)
        )
        return UsageError(f"the server refused the request: {problems}")
    text = str(detail) if detail else response.text[:300]
    status = response.status_code
    cls = _BY_STATUS.get(status, UsageError if 400 <= status < 500 else StorageError)
    return cls(
        f"{response.request.method} {response.request.url.path} answered {status}: {text}",
        hint="check MODELCYCLE_URL and that the server runs this version of modelcycle",
    )


class Connection:
    """An HTTP client for the server at ``url`` that sends ``token`` with every request.

    Requests that are safe to repeat (reads, and writes the server deduplicates) are
    retried with backoff on network errors and 502/503/504; ``idempotent=False`` sends
    once.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 120.0,
        retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise UsageError(
                f"{url!r} is not a server address",
                hint="give the URL `modelcycle server` printed, e.g. http://127.0.0.1:8765",
            )
        self.url = url
        self.retries = retries
        headers = {"User-Agent": f"modelcycle/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        ok: tuple[int, ...] = (),
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; answers with a status in ``ok`` or below 400 are returned,
        the rest raised as the workspace error they carry. ``timeout`` (seconds) replaces
        the connection's read timeout for a call known to take long."""
        attempts = self.retries + 1 if idempotent else 1
        for attempt in range(attempts):
            try:
                response = self.client.request(
                    method,
                    path,
                    json=json,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=httpx.USE_CLIENT_DEFAULT
                    if timeout is None
                    else httpx.Timeout(timeout, connect=10.0),
                )
            except httpx.TransportError as e:
                if isinstance(e, RETRYABLE) and attempt + 1 < attempts:
                    time.sleep(min(0.25 * 2**attempt, 4.0))
                    continue
                if isinstance(e, httpx.TimeoutException) and not isinstance(
                    e, httpx.ConnectTimeout | httpx.PoolTimeout
                ):
                    raise StorageError(
                        f"the modelcycle server at {self.url} did not answer {method} {path} "
                        f"in time ({e})",
                        hint="the server may be overloaded; the change may or may not have "
                        "been made, so check before repeating it",
                    ) from e
                raise StorageError(
                    f"cannot reach the modelcycle server at {self.url}: {e}",
                    hint="start it with `modelcycle server`, or check MODELCYCLE_URL",
                ) from e
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                time.sleep(min(0.25 * 2**attempt, 4.0))
                continue
            if response.status_code < 400 or response.status_code in ok:
                return response
            raise error_from(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def json(self, method: str, path: str, **options: Any) -> Any:
        return self.request(method, path, **options).json()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
