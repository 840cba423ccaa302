"""Project scoping: a token limited to some names sees and changes only those.

A team's datasets, experiments, models, deployments, labeling projects and pipelines
share a naming scheme (``fraud-tx``, ``fraud-train``, ``fraud-model``, ``fraud-api``), so
a project is a set of glob patterns over names: ``modelcycle token create ci --project
'fraud-*'``. A token without patterns is not limited.

What a record belongs to is the name it hangs under: a dataset version its dataset's,
a run its experiment's, a model version or evaluation its model's, a monitor, alert,
maintenance run or policy its deployment's, a task or annotation its labeling
project's. The scope of the request in hand lives in a context variable, set by the
server's authentication middleware, and is enforced on the server's stores
(`modelcycle.access.guard`), so the REST routes, the pages and remote workspaces all
obey one rule: a name outside the scope is refused with PermissionDeniedError (403),
and lists leave out what is outside it.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from modelcycle.core.errors import PermissionDeniedError, UsageError

PATTERN_RE = re.compile(r"[A-Za-z0-9._*?\[\]-]{1,200}", re.ASCII)
MAX_PATTERNS = 50


def check_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """The patterns, checked and without repeats, in the order given."""
    found: list[str] = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not PATTERN_RE.fullmatch(pattern):
            raise UsageError(
                f"project pattern {pattern!r} is not valid",
                hint="use name characters (letters, digits, '.', '_', '-') and the globs "
                "'*', '?' and '[…]', e.g. --project 'fraud-*'",
            )
        if pattern.strip("*?") == "":
            raise UsageError(
                f"project pattern {pattern!r} matches every name",
                hint="leave --project out for a token that is not limited",
            )
        if pattern not in found:
            found.append(pattern)
    if len(found) > MAX_PATTERNS:
        raise UsageError(
            f"a token takes at most {MAX_PATTERNS} project patterns, not {len(found)}",
            hint="use globs to cover several names with one pattern",
        )
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Scope:
    """The names one token may reach: those matching any of ``patterns``."""

    token: str
    patterns: tuple[str, ...]

    def covers(self, name: str | None) -> bool:
        return name is not None and any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def require(self, name: str | None, what: str = "name") -> None:
        if not self.covers(name):
            shown = "a record outside any project" if name is None else f"{what} {name!r}"
            raise PermissionDeniedError(
                f"token {self.token!r} is limited to projects {', '.join(self.patterns)}; "
                f"{shown} is outside them",
                hint="use a token whose --project patterns cover it",
                projects=list(self.patterns),
            )


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "modelcycle_scope", default=None
)


def current() -> Scope | None:
    """The scope of the request in hand; None when it is not limited."""
    return _current.get()


@contextlib.contextmanager
def limited_to(scope: Scope | None) -> Iterator[None]:
    """Run the block under ``scope`` (None: not limited)."""
    reset = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(reset)
