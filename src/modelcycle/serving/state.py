"""What the server serves now, and how it follows aliases and deployments without a gap.

A `ServingState` is immutable: a `RouteTable` and the loaded versions it needs. A
request reads the server's state once and uses that snapshot to the end, so swapping in
a new state (one attribute assignment on the event loop) never changes a request midway.

`RouteFollower` reads the routes from a source (``() -> RouteTable``) every
``interval_s``: for static refs it resolves them again (an alias may have moved), for a
deployment it asks the deployment service. When the table's revision changes it loads
the versions that are new in a worker thread while the old state keeps serving, swaps,
and closes versions no longer routed once requests that may still use them are done. If
reading or loading fails, the current state stays and the error is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import ModelcycleError, NotFoundError, UsageError
from modelcycle.core.text import suggest
from modelcycle.deploy.routes import Endpoint, RouteTable, Target
from modelcycle.serving.models import ServedVersion

if TYPE_CHECKING:
    from modelcycle.api import Workspace

logger = logging.getLogger("modelcycle.serving")

RouteSource = Callable[[], RouteTable]
Loader = Callable[[Target], ServedVersion]


@dataclass(frozen=True)
class ServingState:
    """A route table and its loaded versions (by ``Target.resolved``)."""

    table: RouteTable
    versions: Mapping[str, ServedVersion]

    @property
    def names(self) -> list[str]:
        return list(self.table.endpoints)

    def endpoint(self, name: str) -> Endpoint:
        found = self.table.endpoints.get(name)
        if found is None:
            names = self.names
            raise NotFoundError(
                f"no model {name!r} is served here{suggest(name, names)}",
                hint=f"served: {', '.join(names) or 'none'}",
                served=names,
            )
        return found

    def pinned(self, endpoint: Endpoint, version: str) -> Target:
        """The target of ``endpoint`` with this version number (routes, then shadows)."""
        for target in [r.target for r in endpoint.routes] + list(endpoint.shadows):
            if str(target.version) == version:
                return target
        served = sorted({t.version for t in endpoint.targets()})
        raise NotFoundError(
            f"{endpoint.name!r} serves no version {version!r}",
            hint=f"versions served: {', '.join(map(str, served))}",
        )


def static_routes(workspace: Workspace, refs: tuple[str, ...]) -> RouteSource:
    """Each ref under its model's name, resolved again on every call."""

    def read() -> RouteTable:
        targets = []
        for ref in refs:
            row = workspace.models.resolve(ref)
            targets.append(Target(ref, row.model, row.version, row.manifest_oid))
        try:
            return RouteTable.single(targets)
        except ValueError as e:
            raise UsageError(
                f"cannot serve {', '.join(refs)}: {e}",
                hint="serve one version per model; to split traffic between versions, "
                "create a deployment and serve it with --deployment",
            ) from e

    return read


def deployment_routes(workspace: Workspace, name: str) -> RouteSource:
    """The routes of deployment ``name``, read from the workspace's deployment service."""
    service: Any = getattr(workspace, "deployments", None)
    if service is None or not hasattr(service, "route_table"):
        raise UsageError(
            "this workspace offers no deployments service, so --deployment cannot be served",
            hint="serve model refs instead: modelcycle serve NAME@ALIAS",
        )

    def read() -> RouteTable:
        table = service.route_table(name)
        if not isinstance(table, RouteTable):
            raise TypeError(f"route_table returned {type(table).__name__}")
        return table

    return read


class RouteFollower:
    """Keeps a `ServingState` in step with a route source."""

    def __init__(
        self,
        source: RouteSource,
        loader: Loader,
        *,
        interval_s: float,
        grace_s: float,
        on_loaded: Callable[[ServedVersion], None] = lambda v: None,
        on_swap: Callable[[ServingState], None] = lambda s: None,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.source = source
        self.loader = loader
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.on_loaded = on_loaded
        self.on_swap = on_swap
        self.on_error = on_error
        self.state: ServingState | None = None
        self._last_error: str | None = None

    def load_initial(self) -> ServingState:
        """Read the routes and load every version (blocking; errors propagate)."""
        table = self.source()
        self.state = self._build(table, {})
        return self.state

    def _build(self, table: RouteTable, current: Mapping[str, ServedVersion]) -> ServingState:
        versions: dict[str, ServedVersion] = {}
        for target in table.targets():
            known = current.get(target.resolved)
            if known is not None and known.target.manifest_oid == target.manifest_oid:
                versions[target.resolved] = known
            else:
                versions[target.resolved] = self.loader(target)
                logger.info("loaded %s", target.resolved)
        return ServingState(table, versions)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.refresh()

    async def refresh(self) -> bool:
        """Read the routes once; swap to them if they changed. True if swapped."""
        current = self.state
        assert current is not None, "load_initial first"
        try:
            table = await asyncio.to_thread(self.source)
            if table.revision == current.table.revision:
                self._recovered()
                return False
            new = await asyncio.to_thread(self._build, table, current.versions)
        except Exception as e:  # noqa: BLE001 - the current routes stay served; say why
            self._failed(e)
            return False
        for key, version in new.versions.items():
            if key not in current.versions:
                self.on_loaded(version)
        self.state = new
        self.on_swap(new)
        self._recovered()
        retired = [v for k, v in current.versions.items() if new.versions.get(k) is not v]
        loop = asyncio.get_running_loop()
        for version in retired:
            # Requests holding the old state may still submit to it: close it later.
            loop.call_later(self.grace_s, version.close)
        logger.info(
            "now serving %s",
            "; ".join(
                f"{e.name}: "
                + ", ".join(f"{r.target.resolved} ({r.weight:g})" for r in e.routes)
                + "".join(f", shadow {s.resolved}" for s in e.shadows)
                for e in new.table.endpoints.values()
            ),
        )
        return True

    def _failed(self, error: Exception) -> None:
        self.on_error()
        text = str(error) if isinstance(error, ModelcycleError) else repr(error)
        if text != self._last_error:
            logger.warning(
                "could not refresh the routes (still serving the current ones): %s", text
            )
            self._last_error = text

    def _recovered(self) -> None:
        if self._last_error is not None:
            logger.info("the routes can be read again")
            self._last_error = None
