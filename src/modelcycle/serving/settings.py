"""How one model server is set up: what it serves, where from, and its limits."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from modelcycle.core.errors import UsageError

MIB = 1024 * 1024
#: Where `run` hands the settings to worker processes (see `ServeSettings.to_json`).
SETTINGS_ENV = "MODELCYCLE_SERVE_SETTINGS"


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` and `run` need; the CLI builds one from its flags.

    Serve either ``refs`` (``churn@champion``: each under its model's name, following the
    alias) or the routes of one ``deployment``.
    """

    refs: tuple[str, ...] = ()
    deployment: str | None = None
    #: the workspace folder; None opens the one MODELCYCLE_WORKSPACE or the cwd names
    workspace: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    #: rows per micro-batch; 0 or 1 turns batching off
    max_batch_size: int = 0
    max_latency_ms: float = 5.0
    timeout_s: float = 30.0
    max_body_bytes: int = 8 * MIB
    #: a file with one bearer token per line; None leaves the server open
    token_file: str | None = None
    tokens: tuple[str, ...] = ()
    #: share of predictions handed to the prediction sink (0 to 1)
    log_sample_rate: float = 1.0
    #: code that loading a model may import (see `modelcycle.flavors.trust`)
    trusted: tuple[str, ...] = ()
    #: how often the routes (deployment, aliases) are read again
    poll_interval_s: float = 1.0
    #: threads that run predict, per loaded model version
    predict_threads: int = 2
    #: ``module:callable`` building the prediction sink / feedback sink in each worker
    prediction_sink: str | None = None
    feedback_sink: str | None = None

    def __post_init__(self) -> None:
        if bool(self.refs) == (self.deployment is not None):
            raise UsageError(
                "serve takes model refs or --deployment NAME (one of the two)",
                hint="modelcycle serve churn@champion, or modelcycle serve --deployment churn",
            )
        checks = [
            (self.workers >= 1, "workers must be at least 1"),
            (0 < self.port < 65536, f"port {self.port} is not a TCP port"),
            (self.max_batch_size >= 0, "max_batch_size cannot be negative"),
            (self.max_latency_ms >= 0, "max_latency_ms cannot be negative"),
            (self.timeout_s > 0, "timeout_s must be positive"),
            (self.max_body_bytes > 0, "the body limit must be positive"),
            (0.0 <= self.log_sample_rate <= 1.0, "log_sample_rate must be between 0 and 1"),
            (self.poll_interval_s > 0, "poll_interval_s must be positive"),
            (self.predict_threads >= 1, "predict_threads must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message, hint="see `modelcycle serve --help`")

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1

    def read_tokens(self) -> tuple[str, ...]:
        """``tokens`` plus those in ``token_file`` (blank lines and ``#`` comments skipped)."""
        found = list(self.tokens)
        if self.token_file is not None:
            path = Path(self.token_file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as e:
                raise UsageError(
                    f"cannot read the token file {path}: {e.strerror or e}",
                    hint="pass a readable file with one token per line",
                ) from e
            found += [t.strip() for t in text.splitlines()]
            found = [t for t in found if t and not t.startswith("#")]
            if not found:
                raise UsageError(
                    f"the token file {path} holds no token",
                    hint="write one token per line, or leave --token-file out",
                )
        return tuple(found)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        return cls(**values)

    @classmethod
    def from_env(cls) -> ServeSettings:
        """The settings `run` handed to this worker process."""
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise UsageError(
                f"{SETTINGS_ENV} is not set",
                hint="start workers through `modelcycle serve` or modelcycle.serving.run",
            )
        return cls.from_json(text)
