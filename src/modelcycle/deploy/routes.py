"""What a model server serves: for each served name, weighted routes to model versions and
shadow versions that see a copy of the traffic.

A `RouteTable` is plain data. The server gets one from a static list of refs
(`modelcycle serve churn@champion`) or from a deployment in the store
(`modelcycle serve --deployment churn`), and swaps to a new table atomically when the
deployment's routes or the aliases behind them change (`RouteTable.revision` differs).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    """One model version: the ref as the user wrote it and what it resolved to."""

    ref: str  # as configured, e.g. "churn@champion"
    model: str  # "churn"
    version: int  # 7
    manifest_oid: str  # the package; identical oid = identical model, no reload

    @property
    def resolved(self) -> str:
        return f"{self.model}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "model": self.model,
            "version": self.version,
            "manifest_oid": self.manifest_oid,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Target:
        return cls(str(d["ref"]), str(d["model"]), int(d["version"]), str(d["manifest_oid"]))


@dataclass(frozen=True)
class Route:
    target: Target
    weight: float  # > 0; weights of a name need not add up to 100

    def to_dict(self) -> dict[str, Any]:
        return {**self.target.to_dict(), "weight": self.weight}


@dataclass(frozen=True)
class Endpoint:
    """A served name: weighted routes, shadows, and the header that makes routing sticky."""

    name: str
    routes: tuple[Route, ...]
    shadows: tuple[Target, ...] = ()
    sticky_header: str | None = None  # e.g. "x-user-id": same value -> same route

    def __post_init__(self) -> None:
        if not self.routes:
            raise ValueError(f"endpoint {self.name!r} has no routes")
        if any(r.weight <= 0 for r in self.routes):
            raise ValueError(f"endpoint {self.name!r} has a route with weight <= 0")
        total = sum(r.weight for r in self.routes)
        bounds, acc = [], 0.0
        for r in self.routes:
            acc += r.weight / total
            bounds.append(acc)
        bounds[-1] = 1.0
        object.__setattr__(self, "_bounds", tuple(bounds))

    def pick(self, sticky_value: str | None = None, rng: random.Random | None = None) -> Target:
        """The route for one request: by weight at random, or by a hash of the sticky
        header's value (the same value always gets the same route while weights hold)."""
        if len(self.routes) == 1:
            return self.routes[0].target
        if sticky_value is not None:
            digest = hashlib.blake2b(sticky_value.encode(), digest_size=8).digest()
            u = int.from_bytes(digest, "big") / 2**64
        else:
            u = (rng or random).random()
        bounds: tuple[float, ...] = self._bounds  # type: ignore[attr-defined]
        for route, bound in zip(self.routes, bounds, strict=True):
            if u < bound:
                return route.target
        return self.routes[-1].target

    def targets(self) -> list[Target]:
        """Every version this endpoint needs loaded (routes and shadows)."""
        seen: dict[str, Target] = {}
        for t in [r.target for r in self.routes] + list(self.shadows):
            seen.setdefault(t.resolved, t)
        return list(seen.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "routes": [r.to_dict() for r in self.routes],
            "shadows": [s.to_dict() for s in self.shadows],
            "sticky_header": self.sticky_header,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Endpoint:
        return cls(
            str(d["name"]),
            tuple(Route(Target.from_dict(r), float(r["weight"])) for r in d["routes"]),
            tuple(Target.from_dict(s) for s in d.get("shadows", ())),
            d.get("sticky_header"),
        )


@dataclass(frozen=True)
class RouteTable:
    """Everything one server serves. ``revision`` changes whenever anything in it does."""

    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    deployment: str | None = None

    @property
    def revision(self) -> str:
        parts = sorted(
            f"{e.name}|{e.sticky_header}|"
            + ",".join(f"{r.target.manifest_oid}:{r.target.resolved}:{r.weight}" for r in e.routes)
            + "|"
            + ",".join(f"{s.manifest_oid}:{s.resolved}" for s in e.shadows)
            for e in self.endpoints.values()
        )
        return hashlib.blake2b("\n".join(parts).encode(), digest_size=12).hexdigest()

    def targets(self) -> list[Target]:
        seen: dict[str, Target] = {}
        for e in self.endpoints.values():
            for t in e.targets():
                seen.setdefault(t.resolved, t)
        return list(seen.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "revision": self.revision,
            "endpoints": [e.to_dict() for e in self.endpoints.values()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RouteTable:
        eps = [Endpoint.from_dict(e) for e in d.get("endpoints", ())]
        return cls({e.name: e for e in eps}, d.get("deployment"))

    @classmethod
    def single(cls, targets: Sequence[Target]) -> RouteTable:
        """Each model served under its own name with one route (``modelcycle serve A B``)."""
        eps: dict[str, Endpoint] = {}
        for t in targets:
            if t.model in eps:
                raise ValueError(f"{t.model!r} is named twice")
            eps[t.model] = Endpoint(t.model, (Route(t, 1.0),))
        return cls(eps)
