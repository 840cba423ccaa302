"""API tokens: created with a role, stored hashed, checked with a short-lived cache.

A token is ``mc_`` + 43 URL-safe characters (256 random bits), shown once when created.
The store keeps its SHA-256 (a fast hash is enough for a secret this long: there is
nothing to guess), so a stolen database does not reveal tokens. `authenticate` looks
the hash up and keeps the answer for ``ttl`` seconds, so checking a token costs a
dictionary lookup on most requests; a revoked token stops working within ``ttl``.

Roles are ordered: a ``reader`` reads; an ``editor`` also changes datasets, runs,
models, deployments and monitors; an ``admin`` also manages tokens and deletes.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from modelcycle.access.scope import check_patterns
from modelcycle.core.errors import AuthenticationError, PermissionDeniedError, UsageError
from modelcycle.core.text import suggest
from modelcycle.store.metadata import utcnow
from modelcycle.store.tokens import TokenRow, TokenStore

ROLES = ("reader", "editor", "admin")
PREFIX = "mc_"
_CACHE_SIZE = 4096
MAX_LIFETIME = 100 * 365.25 * 86400.0


def role_allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may."""
    return ROLES.index(role) >= ROLES.index(needed)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(self, store: TokenStore, *, ttl: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: OrderedDict[str, tuple[float, TokenRow | None]] = OrderedDict()
        self._required: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    def create(
        self,
        name: str,
        *,
        role: str,
        expires_in: float | None = None,
        projects: Iterable[str] = (),
    ) -> tuple[TokenRow, str]:
        """A new token: its record and the secret (shown once; only its hash is kept).
        ``projects``: glob patterns over names the token is limited to
        (`modelcycle.access.scope`); none: not limited."""
        patterns = check_patterns(projects)
        if role not in ROLES:
            raise UsageError(
                f"unknown role {role!r}{suggest(role, ROLES)}",
                hint="roles: reader (read), editor (read and change), admin (everything)",
            )
        if (
            not name
            or len(name) > 200
            or not name.replace("-", "")
            .replace("_", "")
            .replace(".", "")
            .replace("@", "")
            .isalnum()
        ):
            raise UsageError(
                f"token name {name!r} is not valid",
                hint="use letters, digits, '-', '_', '.' and '@' (e.g. ci-bot or ana@team)",
            )
        if expires_in is not None and not 0 < expires_in <= MAX_LIFETIME:
            raise UsageError(
                "a token must expire in the future and within 100 years",
                hint="e.g. --expires 30d, or no --expires for a token that never expires",
            )
        secret = PREFIX + secrets.token_urlsafe(32)
        expires_at = None if expires_in is None else utcnow() + dt.timedelta(seconds=expires_in)
        with self._lock:
            self._required = None
        row = self.store.create(
            name=name,
            role=role,
            token_hash=hash_token(secret),
            prefix=secret[: len(PREFIX) + 6],
            expires_at=expires_at,
            projects=patterns,
        )
        return row, secret

    def list(self) -> builtins.list[TokenRow]:
        return self.store.live(utcnow())

    def revoke(self, name: str) -> TokenRow:
        row = self.store.revoke(name)
        with self._lock:
            self._cache.pop(row.token_hash, None)
            self._required = None
        return row

    def required(self) -> bool:
        """Whether any usable token exists (a server with none is open, on 127.0.0.1);
        the answer is kept for ``ttl`` seconds."""
        now = time.monotonic()
        with self._lock:
            if self._required is not None and now - self._required[0] < self.ttl:
                return self._required[1]
        answer = self.store.any_usable(utcnow())
        with self._lock:
            self._required = (now, answer)
        return answer

    def authenticate(self, token: str | None) -> TokenRow:
        """The token's record; AuthenticationError when it is missing, unknown, revoked or
        expired (the message says which, never echoing the token)."""
        if not token:
            raise AuthenticationError(
                "this request has no token",
                hint="send `Authorization: Bearer TOKEN` (create one with `modelcycle token "
                "create NAME --role reader`) or log in at /login",
            )
        key = hash_token(token)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < self.ttl:
                row = cached[1]
            else:
                row = None
                cached = None
        if cached is None:
            row = self.store.by_hash(key)
            with self._lock:
                self._cache[key] = (now, row)
                self._cache.move_to_end(key)
                while len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        if row is None:
            raise AuthenticationError(
                "the token is not known",
                hint="check it, or create one with `modelcycle token create`",
            )
        if row.revoked_at is not None:
            raise AuthenticationError(
                f"token {row.name!r} was revoked", hint="ask an admin for a new one"
            )
        if row.expires_at is not None and row.expires_at <= utcnow():
            raise AuthenticationError(
                f"token {row.name!r} expired at {row.expires_at.isoformat(timespec='seconds')}",
                hint="ask an admin for a new one",
            )
        return row

    @staticmethod
    def authorize(row: TokenRow | None, needed: str) -> None:
        """PermissionDeniedError unless ``row``'s role may do what ``needed`` may (None:
        the server is open, every request may)."""
        if row is not None and not role_allows(row.role, needed):
            raise PermissionDeniedError(
                f"token {row.name!r} has role {row.role}; this needs {needed}",
                hint=f"use a token with role {needed} or higher",
                needed=needed,
                role=row.role,
            )
