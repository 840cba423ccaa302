"""The workspace: the one object a Python user, the CLI and the server all start from."""

from __future__ import annotations

import datetime as dt
import getpass
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelcycle.access.guard import guard_stores
from modelcycle.access.tokens import TokenService
from modelcycle.blobs import BlobStore, open_blob_store
from modelcycle.core.config import (
    CONFIG_NAME,
    DEFAULT_BLOBS,
    DEFAULT_STORE,
    ENV_CACHE,
    ENV_TOKEN,
    ENV_URL,
    ENV_WORKSPACE,
    WorkspaceConfig,
    find_workspace_root,
)
from modelcycle.core.errors import ConflictError, UsageError
from modelcycle.core.progress import Progress
from modelcycle.core.webhooks import FailedDelivery, WebhookDispatcher
from modelcycle.data.maintenance import FsckReport, GcReport, fsck, gc
from modelcycle.data.service import DatasetService
from modelcycle.deploy.service import DeploymentService
from modelcycle.evaluation.service import Evaluation, EvaluationService
from modelcycle.labeling.service import LabelService
from modelcycle.loop.service import MaintenanceService
from modelcycle.monitoring.monitors import MonitorService
from modelcycle.monitoring.service import DriftService
from modelcycle.pipelines import PipelineService
from modelcycle.registry import RegistryService
from modelcycle.registry.retirement import last_prediction_at
from modelcycle.store.deployments import DeploymentStore
from modelcycle.store.evaluations import EvaluationStore
from modelcycle.store.labels import LabelStore
from modelcycle.store.maintenance import MaintenanceStore
from modelcycle.store.metadata import EventRecord, MetadataStore
from modelcycle.store.monitors import MonitorStore
from modelcycle.store.owners import Owners
from modelcycle.store.pipelines import PipelineStore
from modelcycle.store.registry import RegistryStore
from modelcycle.store.runs import RunStore
from modelcycle.store.sketches import SketchStore
from modelcycle.store.tokens import TokenStore
from modelcycle.tracking.run import ActiveRun
from modelcycle.tracking.service import RunService
from modelcycle.training.service import TrainingService

if TYPE_CHECKING:
    from modelcycle.deploy.batch import BatchResult
    from modelcycle.monitoring.drift import DriftResult
    from modelcycle.remote.parts import RemoteParts


STORE_CLASSES: dict[str, Callable[[MetadataStore], Any]] = {
    "runs": RunStore,
    "registry": RegistryStore,
    "deployments": DeploymentStore,
    "evaluations": EvaluationStore,
    "labels": LabelStore,
    "maintenance": MaintenanceStore,
    "monitors": MonitorStore,
    "pipelines": PipelineStore,
    "sketches": SketchStore,
    "tokens": TokenStore,
}


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


class Workspace:
    """A modelcycle workspace: a metadata store, a blob store and local state.

    >>> ws = Workspace.create("my-project")          # doctest: +SKIP
    >>> ws.datasets.add("iris", "iris.csv")          # doctest: +SKIP
    """

    def __init__(
        self,
        config: WorkspaceConfig,
        *,
        actor: str | None = None,
        remote: RemoteParts | None = None,
        guarded: bool = False,
    ) -> None:
        """``guarded``: the stores obey the project scope of the request in hand
        (`modelcycle.access.guard`; the server's workspace)."""
        self.config = config
        self.root = config.root
        self.remote = remote
        stores: dict[str, Any]
        if remote is None:
            self.actor = actor or _actor()
            self.store: Any = MetadataStore(config.resolved_store_url(), actor=self.actor)
            self.blobs: BlobStore = open_blob_store(
                config.resolved_blobs_url(), config.blobs_options
            )
            stores = {name: cls(self.store) for name, cls in STORE_CLASSES.items()}
            if guarded:
                wrapped = guard_stores({"metadata": self.store, **stores}, Owners(self.store))
                self.store = wrapped.pop("metadata")
                stores = wrapped
        else:
            self.actor = remote.metadata.actor
            self.store = remote.metadata
            self.blobs = remote.blobs
            stores = {name: remote.store(name) for name in STORE_CLASSES}
        # Every metadata store by name: the server answers remote workspaces' calls here.
        self.stores: dict[str, Any] = {"metadata": self.store, **stores}
        self.webhooks = WebhookDispatcher(
            config.webhooks, on_failure=self._webhook_failed, actor=self.actor
        )
        # Changes announce themselves to the webhooks: here, or on the server that holds
        # the hooks for a remote workspace.
        notify = remote.notify if remote is not None else self.webhooks.notify
        self.datasets = DatasetService(self.store, self.blobs, config.state_dir)
        self.labels = LabelService(stores["labels"], self.datasets)
        self.runs = RunService(stores["runs"], self.datasets, self.blobs)
        self.training = TrainingService(
            self.runs, self.datasets, config, self.actor, remote=remote.worker if remote else None
        )
        self.pipelines = PipelineService(stores["pipelines"], self.datasets, self.training)
        self.models = RegistryService(
            stores["registry"],
            self.runs,
            self.blobs,
            config.state_dir / "cache" / "models",
            notify=notify,
        )
        self.runs.registrar = self.models.register
        self.evaluations = EvaluationService(
            stores["evaluations"], self.models, self.datasets, self.blobs
        )
        self.deployments = DeploymentService(
            stores["deployments"], self.models, self.blobs, notify=notify
        )
        self.models.retire_guards.append(self.deployments.check_not_routed)
        self.models.last_traffic = last_prediction_at(self.deployments.store)
        self.monitoring = DriftService(stores["sketches"], self.datasets, self.blobs)
        self.monitors = MonitorService(
            stores["monitors"],
            deployments=self.deployments,
            drift=self.monitoring,
            evaluations=self.evaluations,
            datasets=self.datasets,
            blobs=self.blobs,
            root=self.root,
            record_event=self.store.record_event,
        )
        self.monitoring.traffic = self.monitors.checks.traffic
        self.tokens = TokenService(stores["tokens"])
        self.maintenance = MaintenanceService(
            stores["maintenance"],
            root=self.root,
            monitors=self.monitors,
            deployments=self.deployments,
            registry=self.models,
            evaluations=self.evaluations,
            training=self.training,
            datasets=self.datasets,
            notify=notify,
        )

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str] = ".",
        *,
        store: str | None = None,
        blobs: str | None = None,
        blobs_options: dict[str, str] | None = None,
        exist_ok: bool = False,
    ) -> Workspace:
        """Create a workspace at ``path`` (writes ``modelcycle.toml``) and open it."""
        root = Path(path).expanduser().resolve()
        if (root / CONFIG_NAME).exists():
            if not exist_ok:
                raise ConflictError(
                    f"{root} is already a modelcycle workspace",
                    hint="open it with Workspace.open, or choose another folder",
                )
            return cls.open(root)
        config = WorkspaceConfig(
            root, store or DEFAULT_STORE, blobs or DEFAULT_BLOBS, dict(blobs_options or {})
        )
        config.state_dir.mkdir(parents=True, exist_ok=True)
        (config.state_dir / ".gitignore").write_text("*\n")
        workspace = cls(config)  # opens the stores: fails here, before the file is written
        tmp = root / f".{CONFIG_NAME}.tmp"
        tmp.write_text(config.to_toml(), encoding="utf-8")
        os.replace(tmp, root / CONFIG_NAME)
        workspace.store.record_event(
            "workspace.created", str(root), {"store": config.store_url, "blobs": config.blobs_url}
        )
        return workspace

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, *, guarded: bool = False
    ) -> Workspace:
        """Open the workspace at ``path``. With no path: MODELCYCLE_WORKSPACE; else, when
        MODELCYCLE_URL names a server, that server (with MODELCYCLE_TOKEN, see
        `connect`); else the nearest folder at or above the current one that holds
        ``modelcycle.toml``. ``guarded``: see `Workspace` (a local workspace only)."""
        if path is None and not os.environ.get(ENV_WORKSPACE) and os.environ.get(ENV_URL):
            return cls.connect(
                os.environ[ENV_URL],
                token=os.environ.get(ENV_TOKEN) or None,
                cache=os.environ.get(ENV_CACHE) or None,
            )
        root = Path(path).expanduser().resolve() if path is not None else find_workspace_root()
        return cls(WorkspaceConfig.load(root), guarded=guarded)

    @classmethod
    def connect(
        cls,
        url: str,
        token: str | None = None,
        *,
        cache: str | os.PathLike[str] | None = None,
    ) -> Workspace:
        """The workspace a platform server (`modelcycle server`) at ``url`` serves.

        Everything works as on a local workspace: the services run here, the records
        and blobs live on the server, which checks ``token``'s role on every call and
        records changes under its name. Blobs fetched are kept, verified, in ``cache``
        (default: MODELCYCLE_CACHE, else a folder per server under
        ``~/.cache/modelcycle/remote``).

        >>> ws = Workspace.connect("http://127.0.0.1:8765", token="mc_…")  # doctest: +SKIP
        """
        from modelcycle.remote.parts import default_cache, open_parts

        root = Path(cache).expanduser().resolve() if cache else default_cache(url)
        root.mkdir(parents=True, exist_ok=True)
        parts = open_parts(url, token, root)
        try:
            return cls(
                WorkspaceConfig(root, parts.connection.url, parts.connection.url), remote=parts
            )
        except BaseException:
            parts.close()
            raise

    def close(self) -> None:
        """Deliver pending webhooks and alerts (for at most 10 s each), then close the
        stores."""
        try:  # before the store: failed deliveries become events
            self.monitors.close(timeout=10.0)
            self.webhooks.close(timeout=10.0)
        finally:
            self.store.close()
            if self.remote is not None:
                self.remote.close()

    def _webhook_failed(self, failure: FailedDelivery) -> None:
        self.store.record_event("webhook.failed", f"webhooks[{failure.hook}]", failure.to_dict())

    def start_run(self, experiment: str | None = None, **options: Any) -> ActiveRun:
        """Start a tracked run in this workspace (see :meth:`RunService.start_run`)."""
        return self.runs.start_run(experiment, **options)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def evaluate(self, model: str, data: str, **options: Any) -> Evaluation:
        """Evaluate a model version on a dataset version (see `EvaluationService.evaluate`)."""
        return self.evaluations.evaluate(model, data, **options)

    def drift(self, reference: Any, current: Any, **options: Any) -> DriftResult:
        """Compare ``current`` with ``reference`` column by column (see `DriftService.drift`)."""
        return self.monitoring.drift(reference, current, **options)

    def predict(
        self,
        model: str,
        source: str | os.PathLike[str],
        output: str | os.PathLike[str],
        **options: Any,
    ) -> BatchResult:
        """Score a file or a table version with a model version into a Parquet file
        (see `modelcycle.deploy.batch.score`)."""
        from modelcycle.deploy.batch import score

        return score(self.models, model, source, output, datasets=self.datasets, **options)

    def fsck(self, *, verify: bool = True, progress: Progress | None = None) -> FsckReport:
        """Verify every reference and (with ``verify``) every blob's hash."""
        self._local_only("fsck")
        return fsck(self.store, self.blobs, verify=verify, progress=progress)

    def gc(self, *, dry_run: bool = False, grace_seconds: float = 3600.0) -> GcReport:
        """Remove blobs that no live version references."""
        self._local_only("gc")
        return gc(
            self.store,
            self.blobs,
            dry_run=dry_run,
            grace_seconds=grace_seconds,
            scratch_dir=self.config.state_dir / "tmp",
        )

    def events(
        self,
        *,
        limit: int = 100,
        kind: str | None = None,
        subject: str | None = None,
        actor: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        offset: int = 0,
    ) -> list[EventRecord]:
        """The newest ``limit`` events of the audit log, oldest first, after skipping the
        ``offset`` newest (pages of the log). Filters: ``kind`` and ``subject`` by
        prefix (``dataset.``), ``actor`` exactly (``token:alice``, or an OS user), times
        from ``since`` (inclusive) until ``until`` (exclusive); a time without a zone is
        UTC."""
        found: list[EventRecord] = self.store.events(
            limit=limit,
            kind=kind,
            subject=subject,
            actor=actor,
            since=since,
            until=until,
            offset=offset,
        )
        return found

    def _local_only(self, what: str) -> None:
        if self.remote is not None:
            raise UsageError(
                f"`{what}` walks every blob and runs where the stores are, not through "
                f"the server at {self.remote.connection.url}",
                hint=f"run `modelcycle {what}` in the server's workspace folder",
            )

    def info(self) -> dict[str, Any]:
        out = {
            "root": str(self.root),
            "store": self.config.store_url,
            "blobs": self.config.blobs_url,
            "actor": self.actor,
        }
        if self.remote is not None:
            out.update(
                server=self.remote.connection.url,
                role=self.remote.role,
                server_version=self.remote.server_version,
                cache=str(self.root),
            )
        return out
