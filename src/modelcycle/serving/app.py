"""The model server as one raw ASGI application.

Endpoints (all JSON unless said otherwise)::

    POST /v1/models/{name}/predict        modelcycle's protocol (`protocol_v1`)
    GET  /v1/models                       what is served: names, routes, versions
    GET  /v1/models/{name}                one name: routes, shadows, signature
    POST /v1/feedback                     ground truth for earlier predictions -> 202
    POST /invocations                     MLflow's scoring protocol (`protocol_mlflow`)
    GET  /ping, /health, /version         MLflow's health and version checks
    GET  /v2, /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}[/versions/{v}][/ready]
    POST /v2/models/{name}[/versions/{v}]/infer    Open Inference Protocol (`protocol_v2`)
    GET  /metrics                         Prometheus text format (`metrics`)

Every response carries ``x-request-id`` (the client's own when it sent a well-formed
one). Errors are `ModelcycleError.to_dict()` bodies with the status from
`modelcycle.serving.errors.status_of`. With bearer tokens configured, everything but
``/metrics`` and the health checks needs ``Authorization: Bearer TOKEN``.

A prediction request: pick the route (weights, or the sticky header's value), read the
body (refusing one over the limit before reading it), decode it against that version's
signature, predict in the version's threads (or its micro-batcher) under the timeout,
answer; then count it, record it for the prediction sink and mirror it to the shadows,
all after the answer has been sent.

With ``quiet_gc`` (what ``modelcycle serve`` uses), the objects alive once the models are
loaded (modules, models, the workspace: a few hundred thousand) are moved out of the
cyclic garbage collector's reach with `gc.freeze`, and its youngest generation is
collected every ``GC_THRESHOLD`` allocations instead of 700. Prediction records wait
seconds for the prediction log, so they reach the oldest generation and trigger full
collections; these scanned the whole heap and stopped the event loop for 50-200 ms of
CPU every few seconds under load (measured with 32 connections on 2 cores: the requests
caught behind them set p99), and take a few ms once the start-up objects are frozen.
After a swap, once the retired versions are closed, the heap is collected and frozen
again, so the collector can free them.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import ModelcycleError, NotFoundError
from modelcycle.deploy.routes import Endpoint, Target
from modelcycle.serving.endpoints import Endpoints
from modelcycle.serving.errors import (
    MethodNotAllowed,
    ModelFailed,
    PredictTimeout,
    Unauthorized,
    status_of,
)
from modelcycle.serving.http import (
    JSON,
    ClientGone,
    Receive,
    Request,
    RequestIds,
    ResponseHeaders,
    Send,
    read_body,
)
from modelcycle.serving.metrics import ServingMetrics
from modelcycle.serving.models import ServedVersion, load_version
from modelcycle.serving.protocol import Decoded, WireProtocol, dumps
from modelcycle.serving.protocol_mlflow import MODEL_HEADER, MLflow
from modelcycle.serving.protocol_v1 import V1
from modelcycle.serving.protocol_v2 import V2
from modelcycle.serving.settings import ServeSettings
from modelcycle.serving.sinks import (
    DiscardingSink,
    FeedbackSink,
    FeedbackSinkFactory,
    PredictionRecorder,
    PredictionSink,
    PredictionSinkFactory,
    build_sink,
    default_feedback_sink,
    default_prediction_sink,
)
from modelcycle.serving.state import (
    Loader,
    RouteFollower,
    RouteSource,
    ServingState,
    deployment_routes,
    static_routes,
)
from modelcycle.serving.values import Prediction

if TYPE_CHECKING:
    from modelcycle.api import Workspace

logger = logging.getLogger("modelcycle.serving")

#: a slow prediction gets a watcher for its client's disconnect after this long
WATCH_AFTER_S = 0.05
MAX_PENDING_SHADOWS = 1000
#: allocations between collections of the youngest generation, with ``quiet_gc``
GC_THRESHOLD = 10_000
_OPEN = frozenset(
    {"/metrics", "/ping", "/health", "/version", "/v2/health/live", "/v2/health/ready"}
)


class ModelServer(Endpoints):
    """The ASGI application; see the module docstring for its endpoints.

    ``route_source`` (``() -> RouteTable``) and ``loader`` (``Target -> ServedVersion``)
    replace reading routes and models from the workspace; ``prediction_sink`` and
    ``feedback_sink`` are sinks or factories ``(workspace, settings) -> sink``.
    ``quiet_gc`` tunes the process's garbage collector at start-up (see the module
    docstring): for a process that exists to serve, not for one the app is a guest in.
    """

    def __init__(
        self,
        settings: ServeSettings,
        *,
        workspace: Workspace | None = None,
        route_source: RouteSource | None = None,
        loader: Loader | None = None,
        prediction_sink: PredictionSink | PredictionSinkFactory | None = None,
        feedback_sink: FeedbackSink | FeedbackSinkFactory | None = None,
        quiet_gc: bool = False,
    ) -> None:
        self.settings = settings
        self.quiet_gc = quiet_gc
        self._refreeze: asyncio.TimerHandle | None = None
        self.metrics = ServingMetrics()
        self.state: ServingState | None = None
        self._workspace = workspace
        self._owns_workspace = False
        self._route_source = route_source
        self._loader = loader
        self._prediction_sink_arg = prediction_sink
        self._feedback_sink_arg = feedback_sink
        self._tokens = [t.encode() for t in settings.read_tokens()]
        self._ids = RequestIds()
        self._follower: RouteFollower | None = None
        self._follow_task: asyncio.Task[None] | None = None
        self._recorder: PredictionRecorder | None = None
        self._feedback: FeedbackSink = DiscardingSink()
        self._shadows: set[asyncio.Task[None]] = set()
        self._v1, self._mlflow, self._v2 = V1(), MLflow(), V2()
        self._exact: dict[str, tuple[frozenset[str], Callable[[Request], Awaitable[None]]]] = {
            "/v1/models": (frozenset({"GET"}), self._list_models),
            "/v1/feedback": (frozenset({"POST"}), self._feedback_post),
            "/invocations": (frozenset({"POST"}), self._invocations),
            "/ping": (frozenset({"GET"}), self._ping),
            "/health": (frozenset({"GET"}), self._ping),
            "/version": (frozenset({"GET"}), self._version),
            "/metrics": (frozenset({"GET"}), self._metrics),
            "/v2": (frozenset({"GET"}), self._v2_server),
            "/v2/health/live": (frozenset({"GET"}), self._v2_live),
            "/v2/health/ready": (frozenset({"GET"}), self._v2_ready),
        }

    # -- life cycle ----------------------------------------------------------------------
    def prepare(self) -> None:
        """Open the workspace, read the routes and load their versions (blocking).

        `startup` calls it when it has not run yet; call it first to see errors (an
        unknown model, an untrusted package) before the server starts listening.
        """
        if self.state is not None:
            return
        s = self.settings
        if self._workspace is None and (self._route_source is None or self._loader is None):
            from modelcycle.api import Workspace

            self._workspace = Workspace.open(s.workspace)
            self._owns_workspace = True
        ws = self._workspace
        source = self._route_source
        if source is None:
            assert ws is not None
            source = (
                static_routes(ws, s.refs) if s.refs else deployment_routes(ws, str(s.deployment))
            )
        loader = self._loader
        if loader is None:
            assert ws is not None
            loader = functools.partial(
                load_version, ws, trusted=s.trusted, threads=s.predict_threads
            )
        self._follower = RouteFollower(
            source,
            loader,
            interval_s=s.poll_interval_s,
            grace_s=s.timeout_s + 5.0,
            on_loaded=self._activate,
            on_swap=self._swap,
            on_error=self.metrics.refresh_errors.inc,
        )
        sink = build_sink(
            self._prediction_sink_arg, s.prediction_sink, ws, s, default_prediction_sink
        )
        self._recorder = PredictionRecorder(sink)
        self._feedback = build_sink(
            self._feedback_sink_arg, s.feedback_sink, ws, s, default_feedback_sink
        )
        self.state = self._follower.load_initial()

    async def startup(self) -> None:
        if self.state is None:
            await asyncio.to_thread(self.prepare)
        assert self.state is not None and self._follower is not None and self._recorder is not None
        for version in self.state.versions.values():
            self._activate(version)
        self._recorder.start()
        if self.quiet_gc:
            gc.set_threshold(max(gc.get_threshold()[0], GC_THRESHOLD))
            freeze_heap()
        self._follow_task = asyncio.get_running_loop().create_task(self._follower.run())
        names = ", ".join(
            f"{e.name} ({', '.join(r.target.resolved for r in e.routes)})"
            for e in self.state.table.endpoints.values()
        )
        logger.info("serving %s", names)

    async def shutdown(self) -> None:
        """Stop following routes, let shadows finish, flush the prediction log, close."""
        if self._refreeze is not None:
            self._refreeze.cancel()
        if self._follow_task is not None:
            self._follow_task.cancel()
            await asyncio.gather(self._follow_task, return_exceptions=True)
        if self._shadows:
            await asyncio.wait(list(self._shadows), timeout=self.settings.timeout_s)
        if self._recorder is not None:
            try:
                await self._recorder.close()
            except Exception:
                logger.exception("the prediction sink failed to close")
        if self.state is not None:
            for version in self.state.versions.values():
                version.close()
        if self._owns_workspace and self._workspace is not None:
            await asyncio.to_thread(self._workspace.close)
        self.metrics.worker_exited()

    async def refresh_routes(self) -> bool:
        """Read the routes now (the server also does every ``poll_interval_s``); True if
        they changed and the new ones are served."""
        assert self._follower is not None, "prepare() or startup() first"
        return await self._follower.refresh()

    def _activate(self, version: ServedVersion) -> None:
        """Make a newly loaded version ready on the event loop (batcher, load metric)."""
        if version.active:
            return
        version.active = True
        t = version.target
        if self.settings.batching and version.batcher is None:
            observe = functools.partial(self.metrics.batch, t.model, str(t.version))
            version.enable_batching(
                self.settings.max_batch_size, self.settings.max_latency_ms / 1000.0, observe
            )
        self.metrics.loaded(t.model, str(t.version), version.load_seconds)

    def _swap(self, state: ServingState) -> None:
        self.state = state
        self.metrics.swaps.inc()
        if self.quiet_gc:
            # The retired versions close after the follower's grace period; if they were
            # frozen, the collector would never free the reference cycles they hold (a
            # batcher and its version, many models' own).
            if self._refreeze is not None:
                self._refreeze.cancel()
            self._refreeze = asyncio.get_running_loop().call_later(
                self.settings.timeout_s + 10.0, self._thaw_and_freeze
            )

    def _thaw_and_freeze(self) -> None:
        self._refreeze = None
        gc.unfreeze()
        freeze_heap()

    # -- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    logger.exception("the model server could not start")
                    text = str(e) if isinstance(e, ModelcycleError) else repr(e)
                    await send({"type": "lifespan.startup.failed", "message": text})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        req = Request(scope, receive, send, self._ids)
        try:
            await self._dispatch(req)
        except ModelcycleError as e:
            await self._error(req, e)
        except ClientGone:
            pass
        except Exception as e:  # noqa: BLE001 - a bug of ours: 500 with an error id, logged
            error = self._internal(req, e, "the server failed with")
            if not req.responded:
                await self._error(req, error)

    async def _dispatch(self, req: Request) -> None:
        path = req.path
        route = self._exact.get(path)
        if route is not None:
            methods, handler = route
            self._check(req, methods, path in _OPEN)
            await handler(req)
            return
        parts = path.split("/")
        if len(parts) >= 4 and parts[1] == "v1" and parts[2] == "models" and parts[3]:
            name, rest = parts[3], parts[4:]
            if not rest:
                self._check(req, frozenset({"GET"}), False)
                await self._describe_model(req, name)
                return
            if rest == ["predict"]:
                self._check(req, frozenset({"POST"}), False)
                await self._predict(req, name, self._v1)
                return
        if len(parts) >= 4 and parts[1] == "v2" and parts[2] == "models" and parts[3]:
            name, rest = parts[3], parts[4:]
            version = None
            if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
                version, rest = rest[1], rest[2:]
            if not rest:
                self._check(req, frozenset({"GET"}), False)
                await self._v2_model(req, name, version)
                return
            if rest == ["ready"]:
                self._check(req, frozenset({"GET"}), False)
                await self._v2_model_ready(req, name, version)
                return
            if rest == ["infer"]:
                self._check(req, frozenset({"POST"}), False)
                await self._predict(req, name, self._v2, version)
                return
        raise NotFoundError(
            f"no endpoint at {path}",
            hint="try /v1/models, /invocations, /v2/models/NAME/infer or /metrics",
        )

    def _check(self, req: Request, methods: frozenset[str], open_: bool) -> None:
        if req.method not in methods:
            allowed = ", ".join(sorted(methods))
            raise MethodNotAllowed(
                f"{req.method} is not allowed on {req.path}", hint=f"use {allowed}", allow=allowed
            )
        if self._tokens and not open_:
            self._authorize(req)

    def _authorize(self, req: Request) -> None:
        header = req.headers.get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        ok = False
        if scheme.lower() == b"bearer" and token:
            for known in self._tokens:  # compare with every token: no early exit to time
                ok |= hmac.compare_digest(token, known)
        if not ok:
            raise Unauthorized(
                "this server needs a bearer token"
                if not header
                else "the bearer token is not valid",
                hint="send Authorization: Bearer TOKEN with a token from the server's --token-file",
                invalid=bool(header),
            )

    async def _error(self, req: Request, error: ModelcycleError) -> None:
        status = status_of(error)
        extra: ResponseHeaders = []
        if isinstance(error, Unauthorized):
            challenge = b'Bearer realm="modelcycle"'
            if error.details.get("invalid"):
                challenge += b', error="invalid_token"'
            extra.append((b"www-authenticate", challenge))
            error.details.pop("invalid", None)
        elif isinstance(error, MethodNotAllowed):
            extra.append((b"allow", str(error.details.get("allow", "")).encode()))
        body = error.to_dict()
        if req.path.startswith("/v2"):
            # The Open Inference Protocol's error is {"error": message}, which its clients
            # show; the class name moves to "type".
            body = {"error": error.message, "type": body.pop("error"), **body}
        await req.respond(status, dumps(body), JSON, extra)

    def _internal(self, req: Request, error: BaseException, what: str) -> ModelFailed:
        """Log ``error`` with its traceback under a new error id; the 500 to answer with.
        ``what`` says who failed ("churn@3 raised", "the server failed")."""
        error_id = f"err-{secrets.token_hex(6)}"
        kind = type(error).__name__
        logger.error(
            "error %s (request %s %s %s): %s %s",
            error_id,
            req.request_id,
            req.method,
            req.path,
            what,
            kind,
            exc_info=error,
        )
        return ModelFailed(
            f"{what} {kind} (error id {error_id})",
            hint=f"the server log has the traceback under {error_id}",
            error_id=error_id,
            request_id=req.request_id,
        )

    # -- predictions -----------------------------------------------------------------------
    async def _invocations(self, req: Request) -> None:
        state = self._ready()
        header = req.headers.get(MODEL_HEADER)
        name = header.decode("latin-1") if header is not None else req.query_param("model")
        if name is None:
            if not state.names:
                raise NotFoundError("no model is served here", hint="check the deployment")
            name = state.names[0]
        await self._predict(req, name, self._mlflow)

    async def _predict(
        self, req: Request, name: str, proto: WireProtocol, pinned: str | None = None
    ) -> None:
        state = self._ready()
        endpoint, target = _route(state, req, name, pinned)
        model, number = target.model, str(target.version)
        status = 500
        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            body = await read_body(
                req.receive, self.settings.max_body_bytes, req.headers.get(b"content-length")
            )
            if self.state is not state:
                # The routes changed while the body arrived: use the new ones (the old
                # versions are closed once requests that started with them are done).
                state = self._ready()
                endpoint, target = _route(state, req, name, pinned)
                model, number = target.model, str(target.version)
            version = state.versions[target.resolved]
            decoded = proto.decode(body, req.headers, version.schema)
            prediction = await self._await(
                req, version, version.submit(decoded.input, decoded.want_proba)
            )
            encoded = proto.encode(
                name, target.version, prediction, decoded, req.request_id, version.classes
            )
            await req.respond(200, encoded.body, encoded.content_type, encoded.headers)
            status = 200
        except ModelcycleError as e:
            status = status_of(e)
            raise
        except ClientGone:
            status = 499
            raise
        finally:
            metrics.in_flight.dec()
            elapsed = time.perf_counter() - req.started
            metrics.request(model, number, proto.label, status, elapsed)
        metrics.predicted(model, number, prediction.values, version.is_classifier)
        sampled = self._sampled()
        if sampled:
            assert self._recorder is not None
            self._recorder.record(
                req.request_id,
                req.arrived,
                name,
                model,
                target.version,
                "primary",
                proto.log_name,
                decoded.input,
                prediction,
                elapsed,
            )
        if endpoint.shadows:
            self._mirror(req, state, endpoint, version, proto, body, decoded, sampled)

    def _sampled(self) -> bool:
        rate = self.settings.log_sample_rate
        return rate >= 1.0 or (rate > 0.0 and random.random() < rate)

    async def _await(
        self, req: Request, version: ServedVersion, future: asyncio.Future[Prediction]
    ) -> Prediction:
        """The prediction, or PredictTimeout after the timeout, or ClientGone when the
        client disconnects first (watched only for predictions that take a while)."""
        if not future.done():
            loop = asyncio.get_running_loop()
            timeout = self.settings.timeout_s
            first = min(WATCH_AFTER_S, timeout)
            woken = loop.create_future()

            def wake(_: object = None) -> None:
                if not woken.done():
                    woken.set_result(None)

            handle = loop.call_later(first, wake)
            future.add_done_callback(wake)
            await woken
            handle.cancel()
            if not future.done():
                future.remove_done_callback(wake)
                watcher = loop.create_task(_disconnected(req.receive))
                try:
                    await asyncio.wait(
                        (future, watcher),
                        timeout=timeout - first,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    watcher.cancel()
                if not future.done():
                    future.cancel()
                    if watcher.done() and not watcher.cancelled():
                        raise ClientGone
                    raise PredictTimeout(
                        f"{version.target.resolved} did not answer within {timeout:g} s",
                        hint="send fewer rows, or start the server with a larger --timeout-s",
                    )
        error = future.exception()
        if error is None:
            return future.result()
        if isinstance(error, ModelcycleError):
            raise error
        raise self._internal(req, error, f"{version.target.resolved} raised inside predict:")

    def _mirror(
        self,
        req: Request,
        state: ServingState,
        endpoint: Endpoint,
        primary: ServedVersion,
        proto: WireProtocol,
        body: bytes,
        decoded: Decoded,
        sampled: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        for target in endpoint.shadows:
            if len(self._shadows) >= MAX_PENDING_SHADOWS:
                self.metrics.shadow_dropped.inc()
                continue
            task = loop.create_task(
                self._shadow(
                    req, state, endpoint.name, target, primary, proto, body, decoded, sampled
                )
            )
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)

    async def _shadow(
        self,
        req: Request,
        state: ServingState,
        name: str,
        target: Target,
        primary: ServedVersion,
        proto: WireProtocol,
        body: bytes,
        decoded: Decoded,
        sampled: bool,
    ) -> None:
        version = state.versions[target.resolved]
        started = time.perf_counter()
        status = 500
        prediction = None
        data = decoded.input
        try:
            if version.schema != primary.schema:
                data = proto.decode(body, req.headers, version.schema).input
            future = version.submit(data, decoded.want_proba)
            prediction = await asyncio.wait_for(future, self.settings.timeout_s)
            status = 200
        except ModelcycleError as e:
            status = status_of(e)
        except TimeoutError:
            status = 504
        except Exception:
            logger.exception("shadow %s failed on request %s", target.resolved, req.request_id)
        elapsed = time.perf_counter() - started
        model, number = target.model, str(target.version)
        self.metrics.request(model, number, "shadow", status, elapsed)
        if prediction is None:
            return
        self.metrics.predicted(model, number, prediction.values, version.is_classifier)
        if sampled and self._recorder is not None:
            self._recorder.record(
                req.request_id,
                req.arrived,
                name,
                model,
                target.version,
                "shadow",
                proto.log_name,
                data,
                prediction,
                elapsed,
            )


def _route(
    state: ServingState, req: Request, name: str, pinned: str | None
) -> tuple[Endpoint, Target]:
    """The endpoint called ``name`` and the version that answers this request."""
    endpoint = state.endpoint(name)
    if pinned is not None:
        return endpoint, state.pinned(endpoint, pinned)
    if endpoint.sticky_header is not None:
        sticky = req.headers.get(endpoint.sticky_header.lower().encode())
        return endpoint, endpoint.pick(None if sticky is None else sticky.decode("latin-1"))
    return endpoint, endpoint.pick()


def freeze_heap() -> None:
    """Collect the garbage there is now, then exempt every surviving object from later
    collections (`gc.freeze`): a full collection then scans only newer objects."""
    gc.collect()
    gc.freeze()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def create_app(settings: ServeSettings, **options: Any) -> ModelServer:
    """The ASGI application for ``settings`` (options: see `ModelServer`)."""
    return ModelServer(settings, **options)
