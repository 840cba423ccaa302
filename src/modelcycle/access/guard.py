"""Project scoping enforced on the server's metadata stores.

The server opens its workspace with every store wrapped in `Guarded`. While a request
runs under a project scope (`modelcycle.access.scope`), each store call is checked
against `RULES` before it runs: every argument that names or points at a record must
reach a name inside the scope, and what the call answers is filtered so that lists
leave out records outside it. A method without a rule is refused to scoped tokens,
so a store method added later stays closed until someone decides what it reaches
(a test checks that every public store method has a rule or is listed as closed).

Requests that are not limited (unscoped tokens, the scheduler, the open loopback
server) pass straight through.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from modelcycle.access.scope import Scope, current
from modelcycle.core.errors import PermissionDeniedError, UsageError
from modelcycle.store.owners import Owners

# What an argument reaches: the names of the records it names or points at (None for
# a record that does not exist: the call then answers as it would for any missing one).
Reach = Callable[[Owners, Any], Iterable[str | None]]
# What a call answers, with what is outside the scope left out.
Shown = Callable[[Scope, Owners, Any], Any]


@dataclasses.dataclass(frozen=True)
class Rule:
    args: Mapping[str, Reach] = dataclasses.field(default_factory=dict)
    result: Shown | None = None
    # Rewrites the call's arguments first (e.g. "all experiments" becomes "the
    # experiments in scope", so that paging stays right).
    prepare: Callable[[Scope, Any, inspect.BoundArguments], None] | None = None
    # For a method that answers at most ``limit`` records: makes the call itself,
    # reading further until ``limit`` records in scope are found (`Filled`).
    fill: Filled | None = None
    # What several arguments reach together, as (what it is, how to find it): a name
    # that must be in scope (None: outside every project, so refused).
    joint: tuple[str, Callable[[Owners, inspect.BoundArguments], str | None]] | None = None


# -- what arguments reach ------------------------------------------------------------------


def name(_: Owners, value: Any) -> Iterable[str | None]:
    return () if value is None else (value,)


def names(_: Owners, values: Any) -> Iterable[str | None]:
    return list(values or ())


def by_id(kind: str) -> Reach:
    def reach(owners: Owners, value: Any) -> Iterable[str | None]:
        return () if value is None else (owners.owner(kind, value),)

    return reach


def by_ids(kind: str) -> Reach:
    def reach(owners: Owners, values: Any) -> Iterable[str | None]:
        return [owners.owner(kind, v) for v in values or ()]

    return reach


def record(kind: str, *fields: str) -> Reach:
    """A record passed whole: judged by the record its id names and by the names it
    carries in ``fields`` (a remote client could send any; the store writes events
    about those names)."""

    def reach(owners: Owners, value: Any) -> Iterable[str | None]:
        if value is None:
            return ()
        return (owners.owner(kind, value.id), *(getattr(value, f) for f in fields))

    return reach


def records(kind: str, *fields: str) -> Reach:
    one = record(kind, *fields)

    def reach(owners: Owners, values: Any) -> Iterable[str | None]:
        return [name for v in values or () for name in one(owners, v)]

    return reach


def monitor_record(owners: Owners, monitor: Any) -> Iterable[str | None]:
    """A monitor passed whole: its id's, its deployment's, and its name's (events about
    a monitor name it)."""
    return (
        owners.owner("monitor", monitor.id),
        monitor.deployment,
        owners.owner("monitor_name", monitor.name),
    )


def sketch_record(owners: Owners, row: Any) -> Iterable[str | None]:
    return (owners.owner("sketch", row.id), owners.owner("dataset_version", row.dataset_version_id))


def alert_changes(owners: Owners, changes: Any) -> Iterable[str | None]:
    """The alerts a monitor's result resolves or keeps open."""
    return [owners.owner("alert", i) for i in (*changes.resolve, *changes.still_open)]


def label_changes(owners: Owners, changes: Any) -> Iterable[str | None]:
    """The existing tasks (by id) that labeling changes touch; task keys name tasks of
    the project itself."""
    tasks = {
        *(task for task, _ in changes.assignments),
        *(p.task for p in changes.predictions),
        *(a.task for a in changes.annotations),
    }
    return [owners.owner("label_task", t) for t in tasks if isinstance(t, int)]


def delivered_here(_: Owners, spec: Any) -> Iterable[str | None]:
    """A monitor of a project token delivers its alerts to the pages and the event log
    only: its channels and metrics URL would make the server write files and send
    requests with its own rights, for every project."""
    if not isinstance(spec, Mapping):
        return ()
    options = spec.get("options") or {}
    if spec.get("channels") or (isinstance(options, Mapping) and options.get("metrics_url")):
        raise PermissionDeniedError(
            "a project token cannot give a monitor channels or a metrics URL: the server "
            "delivers and fetches them with its own rights",
            hint="create the monitor without them, and ask an admin without --project to "
            "add channels",
        )
    return ()


def routed(_: Owners, state: Any) -> Iterable[str | None]:
    """The models a deployment's state routes or shadows to."""
    refs = [ref for ref, _weight in state.routes] + list(state.shadows)
    return [str(ref).partition("@")[0] for ref in refs]


def dataset_ref(_: Owners, value: Any) -> Iterable[str | None]:
    """A dataset ref, ``NAME[@SELECTOR]``."""
    return () if value is None else (str(value).partition("@")[0],)


def first_ids(kind: str) -> Reach:
    """Pairs whose first item is an id, e.g. a run's inputs ``(version id, role)``."""

    def reach(owners: Owners, values: Any) -> Iterable[str | None]:
        return [owners.owner(kind, pair[0]) for pair in values or ()]

    return reach


def new_version(owners: Owners, new: Any) -> Iterable[str | None]:
    return [new.dataset, *(owners.owner("dataset_version", p) for p, _ in new.parents)]


def registered(owners: Owners, values: Any) -> Iterable[str | None]:
    run_id = values.get("run_id") if isinstance(values, Mapping) else None
    return () if run_id is None else (owners.owner("run", run_id),)


def moved_run(owners: Owners, values: Any) -> Iterable[str | None]:
    experiment = values.get("experiment_id") if isinstance(values, Mapping) else None
    return () if experiment is None else (owners.owner("experiment", experiment),)


def segments(_: Owners, values: Any) -> Iterable[str | None]:
    """Traffic written is checked against both its deployment and its model: another
    project reads a model's segments by model."""
    return [name for s in values or () for name in (s.deployment, s.model)]


def segment_owner(segment: Any) -> str | None:
    """A deployment's traffic belongs to the deployment; a batch job's to its model."""
    return str(segment.deployment or segment.model)


def event_subject(owners: Owners, kind: str, subject: str) -> str | None:
    """The name an event is about: its subject's name for most kinds; a run's
    experiment, a monitor's deployment, a pipeline run's pipeline; None (outside every
    project) for tokens, the workspace, webhooks and feedback."""
    family = kind.partition(".")[0]
    if family == "run":
        return owners.owner("run", subject)
    if family in ("monitor", "alert"):
        return owners.owner("monitor_name", subject)
    if kind == "pipeline.run.finished":
        if not (subject.isascii() and subject.isdigit() and len(subject) <= 18):
            return None
        return owners.owner("pipeline_run", int(subject))
    if family in ("dataset", "model", "label", "experiment", "pipeline", "deployment"):
        return subject.partition("@")[0]
    if family == "maintenance":
        return subject.partition("@")[0]
    return None


# -- what answers show ---------------------------------------------------------------------


def keep_if(owner: Callable[[Owners, Any], str | None]) -> Shown:
    """A list with the items outside the scope left out."""

    def shown(scope: Scope, owners: Owners, result: Any) -> Any:
        return [item for item in result if scope.covers(owner(owners, item))]

    return shown


def only_if(owner: Callable[[Owners, Any], str | None]) -> Shown:
    """One record (or None): refused when outside the scope."""

    def shown(scope: Scope, owners: Owners, result: Any) -> Any:
        if result is not None:
            scope.require(owner(owners, result))
        return result

    return shown


def field(attr: str) -> Callable[[Owners, Any], str | None]:
    return lambda _, item: getattr(item, attr)


def key(attr: str) -> Callable[[Owners, Any], str | None]:
    return lambda _, item: item[attr]


def first(inner: Callable[[Owners, Any], str | None]) -> Callable[[Owners, Any], str | None]:
    return lambda owners, item: inner(owners, item[0])


def itself(_: Owners, item: Any) -> str | None:
    return str(item)


def run_of(owners: Owners, run_id: Any) -> str | None:
    return owners.owner("run", run_id)


def event_of(owners: Owners, event: Any) -> str | None:
    return event_subject(owners, event.kind, event.subject)


def recorded_event(owners: Owners, bound: inspect.BoundArguments) -> str | None:
    """The name an event about to be recorded is about (its kind says how to read its
    subject)."""
    return event_subject(owners, str(bound.arguments["kind"]), str(bound.arguments["subject"]))


def experiments_in_scope(scope: Scope, store: Any, bound: inspect.BoundArguments) -> None:
    """``experiment_ids=None`` (every experiment) becomes the experiments in scope."""
    if bound.arguments.get("experiment_ids") is None:
        bound.arguments["experiment_ids"] = [
            e["id"] for e in store.experiments() if scope.covers(e["name"])
        ]


# A scoped listing reads at most this many records to fill one page.
MAX_SCAN = 50_000


@dataclasses.dataclass(frozen=True)
class Filled:
    """Calls a method that answers at most ``limit`` records (and may skip ``offset``
    of them) so that the answer holds ``limit`` records in scope, after skipping
    ``offset`` records in scope: it asks for more and more until enough are found, the
    store has no more, or MAX_SCAN were read. ``newest_last``: the store answers the
    newest records last (the events), else first."""

    owner: Callable[[Owners, Any], str | None]
    newest_last: bool

    def __call__(
        self, scope: Scope, owners: Owners, target: Callable[..., Any], bound: Any
    ) -> list[Any]:
        args, parameters = bound.arguments, bound.signature.parameters
        limit = int(args.get("limit", parameters["limit"].default))
        skip = int(args.get("offset", 0) or 0)
        if limit < 1 or skip < 0:
            raise UsageError(
                f"cannot list {limit} records after skipping {skip}",
                hint="limit counts from 1 and offset from 0",
            )
        want = limit + skip
        asked = min(max(2 * want, 100), MAX_SCAN)
        while True:
            args["limit"] = asked
            if "offset" in parameters:
                args["offset"] = 0
            found = target(*bound.args, **bound.kwargs)
            newest_first = found[::-1] if self.newest_last else found
            kept = [r for r in newest_first if scope.covers(self.owner(owners, r))]
            if len(kept) >= want or len(found) < asked or asked >= MAX_SCAN:
                break
            asked = min(asked * 4, MAX_SCAN)
        page = kept[skip:want]
        return page[::-1] if self.newest_last else page


def oldest_first(owner: Callable[[Owners, Any], str | None]) -> Filled:
    return Filled(owner, newest_last=True)


def newest_first(owner: Callable[[Owners, Any], str | None]) -> Filled:
    return Filled(owner, newest_last=False)


def _rule(args: Mapping[str, Reach] | None = None, result: Shown | None = None) -> Rule:
    return Rule(args=dict(args or {}), result=result)


def _each(methods: Iterable[str], rule: Rule) -> dict[str, Rule]:
    return dict.fromkeys(methods, rule)


DATASET, VERSION = by_id("dataset"), by_id("dataset_version")
RUN, RUNS = by_id("run"), by_ids("run")
MODEL, MODEL_VERSION = by_id("model"), by_id("model_version")
LABEL_PROJECT, MONITOR, MAINTENANCE = (
    by_id("label_project"),
    by_id("monitor"),
    by_id("maintenance"),
)
VERSIONS_SHOWN = keep_if(field("dataset"))
RUNS_SHOWN = keep_if(field("experiment"))

# store -> method -> rule. Not listed: closed to scoped tokens (`CLOSED` says why).
RULES: dict[str, dict[str, Rule]] = {
    "metadata": {
        "children": _rule({"version_id": VERSION}, VERSIONS_SHOWN),
        "parents": _rule({"version_id": VERSION}, keep_if(first(field("dataset")))),
        "events": Rule(fill=oldest_first(event_of)),
        "get_dataset": _rule({"name": name}),
        "list_datasets": _rule(result=keep_if(first(field("name")))),
        **_each(
            ("tag_target", "tags", "version_by_number", "versions", "versions_by_hash_prefix"),
            _rule({"dataset_id": DATASET}),
        ),
        "version_by_cache_key": _rule(result=only_if(field("dataset"))),
        "version_by_id": _rule({"version_id": VERSION}),
        "create_version": _rule({"new": new_version}),
        "set_tag": _rule({"version": record("dataset_version", "dataset")}),
        "remove_tag": _rule({"dataset_id": DATASET, "dataset": name}),
        "delete_versions": _rule({"versions": records("dataset_version", "dataset")}),
        "record_event": Rule(joint=("event subject", recorded_event)),
    },
    "runs": {
        **_each(
            ("artifacts", "get_run", "inputs", "metric_history", "metric_keys", "metric_buckets"),
            _rule({"run_id": RUN}),
        ),
        "children": _rule({"run_id": RUN}, RUNS_SHOWN),
        "experiments": _rule(result=keep_if(key("name"))),
        "key_values": _rule({"run_ids": RUNS}),
        "latest_metrics": _rule({"run_ids": RUNS}),
        "runs_by_prefix": _rule(result=RUNS_SHOWN),
        "search": Rule(
            args={"parent_id": RUN, "experiment_ids": by_ids("experiment")},
            result=RUNS_SHOWN,
            prepare=experiments_in_scope,
        ),
        "search_table": Rule(
            args={"parent_id": RUN, "experiment_ids": by_ids("experiment")},
            prepare=experiments_in_scope,
        ),
        "runs_reading": _rule({"version_id": VERSION}, keep_if(run_of)),
        "experiment_id": _rule({"name": name}),
        "add_artifacts": _rule({"run_id": RUN}),
        "add_inputs": _rule({"run_id": RUN, "inputs": first_ids("dataset_version")}),
        "create_run": _rule({"experiment_id": by_id("experiment"), "parent_id": RUN}),
        "set_state": _rule({"run_id": RUN, "values": moved_run}),
        "write_batch": _rule({"run_id": RUN}),
        "delete_runs": _rule({"run_ids": RUNS}),
    },
    "registry": {
        **_each(("aliases", "transitions", "version", "versions"), _rule({"model_id": MODEL})),
        "model_id": _rule({"name": name}),
        "models": _rule(result=keep_if(key("name"))),
        "register": _rule({"name": name, "values": registered}),
        "remove_alias": _rule({"model_id": MODEL, "name": name}),
        "set_alias": _rule({"version": record("model_version", "model")}),
        "set_stage": _rule({"version": record("model_version", "model")}),
    },
    "deployments": {
        "changes": _rule({"deployment_id": by_id("deployment")}),
        "feedback_for": _rule(),
        "add_feedback": _rule(),
        "get": _rule({"name": name}),
        "has_segments": _rule({"deployment": name, "model": name}),
        "segments": _rule(
            {"deployment": name, "model": name}, keep_if(lambda _, s: segment_owner(s))
        ),
        "live": _rule(result=keep_if(field("name"))),
        "names": _rule(result=keep_if(itself)),
        "add_segments": _rule({"segments": segments}),
        "create": _rule({"name": name, "model_id": MODEL, "state": routed}),
        "change": _rule({"name": name, "state": routed}),
    },
    "evaluations": {
        "find": _rule({"model_version_id": MODEL_VERSION, "dataset_version_id": VERSION}),
        "for_model_version": _rule({"model_version_id": MODEL_VERSION}),
        "get": _rule({"evaluation_id": by_id("evaluation")}),
        "add": _rule(
            {
                "model_version_id": MODEL_VERSION,
                "dataset_version_id": VERSION,
                "model_ref": dataset_ref,
            }
        ),
    },
    "labels": {
        **_each(
            (
                "annotations",
                "annotators",
                "assignments",
                "counts",
                "decisions",
                "predictions",
                "tasks",
            ),
            _rule({"pid": LABEL_PROJECT}),
        ),
        "get_project": _rule({"name": name}),
        "list_projects": _rule(result=keep_if(field("name"))),
        "apply": _rule({"project": record("label_project", "name"), "changes": label_changes}),
        "decide": _rule(
            {"project": record("label_project", "name"), "task_id": by_id("label_task")}
        ),
        "create_project": _rule({"name": name, "version_id": VERSION, "changes": label_changes}),
    },
    "maintenance": {
        **_each(("get", "require"), _rule({"run_id": MAINTENANCE})),
        "policies": _rule(result=keep_if(field("deployment"))),
        "policy": _rule({"deployment": name}),
        "runs": Rule(args={"deployment": name}, fill=newest_first(field("deployment"))),
    },
    "monitors": {
        "alert": _rule({"alert_id": by_id("alert")}),
        "acknowledge": _rule({"alert_id": by_id("alert")}),
        "alerts": Rule(args={"monitor_id": MONITOR}, fill=newest_first(field("deployment"))),
        **_each(("get", "require", "delete"), _rule({"name": by_id("monitor_name")})),
        **_each(("get_by_id", "last_alerts", "results"), _rule({"monitor_id": MONITOR})),
        "live": _rule(result=keep_if(field("deployment"))),
        "result": _rule({"result_id": by_id("monitor_result")}),
        "add_result": _rule({"monitor": monitor_record, "changes": alert_changes}),
        "create": _rule(
            {"name": name, "deployment": name, "reference": dataset_ref, "spec": delivered_here}
        ),
    },
    "pipelines": {
        **_each(("runs", "stage_state", "save_stage", "start_run"), _rule({"pipeline": name})),
        "finish_run": _rule({"run_id": by_id("pipeline_run")}),
    },
    "sketches": {
        **_each(("find", "for_version"), _rule({"dataset_version_id": VERSION})),
        "add": _rule({"dataset_version_id": VERSION, "dataset_ref": dataset_ref}),
        "replace": _rule(
            {"row": sketch_record, "dataset_ref": dataset_ref},
            only_if(lambda owners, row: owners.owner("dataset_version", row.dataset_version_id)),
        ),
    },
    "tokens": {},
}

# Public store methods closed to scoped tokens on purpose, and why.
CLOSED: dict[str, dict[str, str]] = {
    "metadata": {
        "add_event": "the stores' own event writing",
        "allocating": "the stores' own transactions",
        "reading": "the stores' own transactions",
        "writing": "the stores' own transactions",
        "close": "the server's own shutdown",
        "live_artifacts": "fsck and gc, which see the whole workspace",
        "live_manifests": "fsck and gc, which see the whole workspace",
        "live_model_manifests": "fsck and gc, which see the whole workspace",
        "side_schema_url": "tuning studies, which are not scoped",
    },
    "registry": {"retired_sources": "gc, which sees the whole workspace"},
    "monitors": {"claim_due": "the scheduler, which runs every project's monitors"},
    # The server's scheduler carries maintenance runs and policies out with its own
    # rights (retraining on the datasets a policy names), so only unscoped tokens start
    # or steer them.
    "maintenance": dict.fromkeys(
        ("start", "update", "claim", "release", "set_policy", "delete_policy"),
        "maintenance, which the server's scheduler carries out for every project",
    ),
    "sketches": {"live": "gc, which sees the whole workspace"},
    "tokens": dict.fromkeys(
        ("any_usable", "by_hash", "create", "live", "revoke"),
        "managing tokens: a scoped token could make an unscoped one",
    ),
}


class Guarded:
    """A store whose methods obey the request's project scope (see the module's doc).
    Attributes that are not methods pass through."""

    def __init__(self, store_name: str, target: Any, owners: Owners) -> None:
        self._name = store_name
        self._target = target
        self._owners = owners

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if attr.startswith("_") or not callable(value):
            return value
        wrapped = self._wrap(attr, value)
        self.__dict__[attr] = wrapped  # later lookups skip __getattr__
        return wrapped

    def _wrap(self, method: str, target: Callable[..., Any]) -> Callable[..., Any]:
        rule = RULES.get(self._name, {}).get(method)
        store_name, shared, store = self._name, self._owners, self._target
        signature = inspect.signature(target)

        @functools.wraps(target)
        def call(*args: Any, **kwargs: Any) -> Any:
            scope = current()
            if scope is None:
                return target(*args, **kwargs)
            if rule is None:
                why = CLOSED.get(store_name, {}).get(method, "it is not open to project tokens")
                raise PermissionDeniedError(
                    f"token {scope.token!r} is limited to projects, and {store_name}.{method} "
                    f"is closed to such tokens ({why})",
                    hint="use a token without --project for this",
                )
            bound = signature.bind(*args, **kwargs)
            _materialize(bound)
            owners = shared.remembering()
            if rule.prepare is not None:
                rule.prepare(scope, store, bound)
            _check(scope, owners, rule, bound)
            if rule.fill is not None:
                return rule.fill(scope, owners, target, bound)
            result = target(*bound.args, **bound.kwargs)
            return result if rule.result is None else rule.result(scope, owners, result)

        return call


def _materialize(bound: inspect.BoundArguments) -> None:
    """One-pass iterators become lists, so checking an argument does not use it up."""
    for key_, value in bound.arguments.items():
        if isinstance(value, Iterator):
            bound.arguments[key_] = list(value)


def _check(scope: Scope, owners: Owners, rule: Rule, bound: inspect.BoundArguments) -> None:
    reached: list[str | None] = []
    for param, reach in rule.args.items():
        value = bound.arguments.get(param)
        if value is not None:
            reached.extend(reach(owners, value))
    for found in reached:
        if found is not None:
            scope.require(found)
    if rule.joint is not None:
        what, reach_joint = rule.joint
        scope.require(reach_joint(owners, bound), what)


def guard_stores(stores: Mapping[str, Any], owners: Owners) -> dict[str, Any]:
    """Each store wrapped in `Guarded`."""
    return {store_name: Guarded(store_name, s, owners) for store_name, s in stores.items()}


def public_methods(cls: type[Any]) -> Sequence[str]:
    return [m for m, _ in inspect.getmembers(cls, inspect.isfunction) if not m.startswith("_")]
