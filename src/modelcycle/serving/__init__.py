"""The model server: ``modelcycle serve churn@champion``.

One raw ASGI application (`ModelServer`) speaks three protocols over the same models:
modelcycle's ``/v1/models/{name}/predict``, MLflow's ``/invocations`` and KServe's Open
Inference Protocol (``/v2/models/{name}/infer``); it batches adaptively, follows aliases
and deployments (weighted routes, sticky routing, shadows) and swaps versions without
failing a request, exposes Prometheus metrics at ``/metrics`` and hands every prediction
to a `PredictionSink`. `run` serves it with uvicorn (uvloop, httptools), in one process or
several.

Python use, as the CLI does it::

    from modelcycle.serving import ServeSettings, run
    run(ServeSettings(refs=("churn@champion",), port=8000, workers=1))

or build the ASGI app for another server or for tests::

    app = create_app(ServeSettings(refs=("churn@champion",)), prediction_sink=MySink())
"""

from modelcycle.serving.app import ModelServer, create_app
from modelcycle.serving.errors import (
    MalformedRequest,
    MethodNotAllowed,
    ModelFailed,
    NotReady,
    PayloadTooLarge,
    PredictTimeout,
    Unauthorized,
    UnsupportedMediaType,
)
from modelcycle.serving.server import run, worker_app
from modelcycle.serving.settings import ServeSettings
from modelcycle.serving.sinks import (
    DiscardingSink,
    FeedbackSink,
    MemoryFeedbackSink,
    MemoryPredictionSink,
    PredictionSink,
)
from modelcycle.serving.state import RouteSource, ServingState, deployment_routes, static_routes

__all__ = [
    "DiscardingSink",
    "FeedbackSink",
    "MalformedRequest",
    "MemoryFeedbackSink",
    "MemoryPredictionSink",
    "MethodNotAllowed",
    "ModelFailed",
    "ModelServer",
    "NotReady",
    "PayloadTooLarge",
    "PredictTimeout",
    "PredictionSink",
    "RouteSource",
    "ServeSettings",
    "ServingState",
    "Unauthorized",
    "UnsupportedMediaType",
    "create_app",
    "deployment_routes",
    "run",
    "static_routes",
    "worker_app",
]
