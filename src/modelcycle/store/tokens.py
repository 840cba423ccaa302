"""Records of the platform server's API tokens: name, role, SHA-256 of the secret."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update

from modelcycle.core.errors import ConflictError, NotFoundError
from modelcycle.core.text import suggest
from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, _aware, utcnow


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    role: str
    token_hash: str
    prefix: str
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    # Glob patterns over names the token is limited to (`modelcycle.access.scope`);
    # empty: every name.
    projects: tuple[str, ...] = ()

    def usable(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "projects": list(self.projects) or None,
        }


class TokenStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    @staticmethod
    def _row(row: Any) -> TokenRow:
        data = dict(row)
        for key in ("created_at", "expires_at", "revoked_at"):
            data[key] = _aware(data[key])
        data["projects"] = tuple(data.get("projects") or ())
        return TokenRow(**data)

    def by_hash(self, token_hash: str) -> TokenRow | None:
        stmt = select(t.api_tokens).where(t.api_tokens.c.token_hash == token_hash)
        with self.store.reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return self._row(row) if row else None

    def live(self, now: dt.datetime) -> list[TokenRow]:
        """Tokens not revoked, by name (expired ones included: they show as such)."""
        a = t.api_tokens.c
        stmt = select(t.api_tokens).where(a.revoked_at.is_(None)).order_by(a.name)
        with self.store.reading() as conn:
            return [self._row(r) for r in conn.execute(stmt).mappings().all()]

    def any_usable(self, now: dt.datetime) -> bool:
        return any(row.usable(now) for row in self.live(now))

    def create(
        self,
        *,
        name: str,
        role: str,
        token_hash: str,
        prefix: str,
        expires_at: dt.datetime | None,
        projects: tuple[str, ...] = (),
    ) -> TokenRow:
        a = t.api_tokens.c
        with self.store.writing() as conn:
            taken = conn.execute(select(a.id).where(a.name == name, a.revoked_at.is_(None))).first()
            if taken is not None:
                raise ConflictError(
                    f"a token named {name!r} exists already",
                    hint=f"choose another name, or revoke it: modelcycle token revoke {name}",
                )
            tid = conn.execute(
                insert(t.api_tokens).values(
                    name=name,
                    role=role,
                    token_hash=token_hash,
                    prefix=prefix,
                    created_at=utcnow(),
                    created_by=self.store.actor,
                    expires_at=expires_at,
                    projects=list(projects) or None,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            self.store.add_event(
                conn,
                "token.created",
                name,
                {
                    "role": role,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                    "projects": list(projects) or None,
                },
            )
            row = conn.execute(select(t.api_tokens).where(a.id == tid)).mappings().one()
        return self._row(row)

    def revoke(self, name: str) -> TokenRow:
        a = t.api_tokens.c
        now = utcnow()
        with self.store.writing() as conn:
            row = (
                conn.execute(select(t.api_tokens).where(a.name == name, a.revoked_at.is_(None)))
                .mappings()
                .first()
            )
            if row is None:
                names = list(conn.execute(select(a.name).where(a.revoked_at.is_(None))).scalars())
                raise NotFoundError(
                    f"no token named {name!r}{suggest(name, names)}",
                    hint="list them with `modelcycle token list`",
                )
            conn.execute(update(t.api_tokens).where(a.id == row["id"]).values(revoked_at=now))
            self.store.add_event(conn, "token.revoked", name, {"role": row["role"]})
        return self._row({**row, "revoked_at": now})
