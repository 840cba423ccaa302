"""The endpoints that only read the server's state, and feedback.

`Endpoints` is mixed into `modelcycle.serving.app.ModelServer`, which provides the state,
the metrics and the sinks it uses.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from modelcycle import __version__
from modelcycle.core.errors import InputDataError, ModelcycleError
from modelcycle.deploy.routes import Endpoint
from modelcycle.serving.errors import NotReady, status_of
from modelcycle.serving.http import TEXT, Request, read_body
from modelcycle.serving.metrics import CONTENT_TYPE, ServingMetrics
from modelcycle.serving.protocol import dumps, loads, require_json
from modelcycle.serving.protocol_v2 import metadata
from modelcycle.serving.settings import ServeSettings
from modelcycle.serving.sinks import FeedbackSink
from modelcycle.serving.state import ServingState

FEEDBACK_KEYS = frozenset({"request_id", "row", "label", "value", "ts"})


class Endpoints:
    """Health, metadata, metrics and feedback handlers."""

    settings: ServeSettings
    metrics: ServingMetrics
    state: ServingState | None
    _feedback: FeedbackSink

    def _ready(self) -> ServingState:
        if self.state is None:
            raise NotReady("the models are still loading", hint="retry in a moment")
        return self.state

    # -- feedback --------------------------------------------------------------------------
    async def _feedback_post(self, req: Request) -> None:
        status = 500
        try:
            body = await read_body(
                req.receive, self.settings.max_body_bytes, req.headers.get(b"content-length")
            )
            require_json(req.headers)
            payload = loads(body)
            items = [payload] if isinstance(payload, dict) else payload
            _check_feedback(items)
            await asyncio.to_thread(self._feedback.add, items)
            await req.respond(202, dumps({"accepted": len(items), "request_id": req.request_id}))
            status = 202
        except ModelcycleError as e:
            status = status_of(e)
            raise
        finally:
            self.metrics.request("", "", "feedback", status, time.perf_counter() - req.started)

    # -- reading ---------------------------------------------------------------------------
    async def _list_models(self, req: Request) -> None:
        state = self._ready()
        body = {
            "deployment": state.table.deployment,
            "revision": state.table.revision,
            "models": [_describe(state, e) for e in state.table.endpoints.values()],
        }
        await req.respond(200, dumps(body))

    async def _describe_model(self, req: Request, name: str) -> None:
        state = self._ready()
        await req.respond(200, dumps(_describe(state, state.endpoint(name))))

    async def _ping(self, req: Request) -> None:
        status = 200 if self.state is not None else 503
        await req.respond(status, b"\n", TEXT)

    async def _version(self, req: Request) -> None:
        await req.respond(200, __version__.encode(), TEXT)

    async def _metrics(self, req: Request) -> None:
        await req.respond(200, self.metrics.render(), CONTENT_TYPE.encode())

    async def _v2_server(self, req: Request) -> None:
        body = {"name": "modelcycle", "version": __version__, "extensions": ["binary_tensor_data"]}
        await req.respond(200, dumps(body))

    async def _v2_live(self, req: Request) -> None:
        await req.respond(200, b'{"live":true}')

    async def _v2_ready(self, req: Request) -> None:
        ready = self.state is not None
        await req.respond(200 if ready else 503, dumps({"ready": ready}))

    async def _v2_model(self, req: Request, name: str, pinned: str | None) -> None:
        state = self._ready()
        endpoint = state.endpoint(name)
        if pinned is not None:
            targets = [state.pinned(endpoint, pinned)]
        else:
            targets = [r.target for r in endpoint.routes]
        version = state.versions[targets[0].resolved]
        sig = version.loaded.signature
        output = sig.outputs[0] if sig is not None and sig.outputs else None
        body = metadata(
            name,
            sorted({t.version for t in targets}),
            version.schema,
            version.loaded.info.flavor,
            output,
            version.classes if version.is_classifier else None,
        )
        await req.respond(200, dumps(body))

    async def _v2_model_ready(self, req: Request, name: str, pinned: str | None) -> None:
        state = self._ready()
        endpoint = state.endpoint(name)
        if pinned is not None:
            state.pinned(endpoint, pinned)
        await req.respond(200, dumps({"name": name, "ready": True}))


def _describe(state: ServingState, endpoint: Endpoint) -> dict[str, Any]:
    primary = state.versions[endpoint.routes[0].target.resolved]
    sig = primary.loaded.signature
    return {
        "name": endpoint.name,
        "ref": primary.target.ref,
        "version": primary.target.version,
        "signature": None if sig is None else sig.to_dict(),
        "flavor": primary.loaded.info.flavor,
        "routes": [
            {**state.versions[r.target.resolved].describe(), "weight": r.weight}
            for r in endpoint.routes
        ],
        "shadows": [state.versions[s.resolved].describe() for s in endpoint.shadows],
        "sticky_header": endpoint.sticky_header,
    }


def _check_feedback(items: Any) -> None:
    if not isinstance(items, list) or not items:
        raise InputDataError(
            "feedback must be an object or a non-empty list of objects",
            hint='send {"request_id": "...", "label": ...} or a list of them',
        )
    for i, item in enumerate(items):
        where = f"feedback item {i}"
        if not isinstance(item, dict):
            raise InputDataError(f"{where} is not an object", hint="")
        rid = item.get("request_id")
        if not isinstance(rid, str) or not rid or len(rid) > 200:
            raise InputDataError(
                f"{where}: field 'request_id' must be a non-empty string (at most 200 characters)",
                hint="use the x-request-id of the prediction's response",
            )
        given = [k for k in ("label", "value") if k in item]
        if len(given) != 1:
            raise InputDataError(
                f"{where}: give exactly one of the fields 'label' and 'value'",
                hint="label for classes, value for numbers",
            )
        row = item.get("row", 0)
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise InputDataError(f"{where}: field 'row' must be a whole number >= 0", hint="")
        unknown = sorted(set(item) - FEEDBACK_KEYS)
        if unknown:
            raise InputDataError(
                f"{where}: unexpected field {unknown[0]!r}",
                hint=f"fields: {', '.join(sorted(FEEDBACK_KEYS))}",
            )
