"""Labeling projects: tasks over a dataset version, annotators, predictions, annotations,
agreement, label-error detection, import/export, and export to a new dataset version.

A task is one row of a table version (key: the row number) or one file of a file
version (key: its path). Annotations and predictions are separate records; an edit adds
a new annotation and keeps the old one as history.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import (
    ConflictError,
    InputDataError,
    NotFoundError,
    UsageError,
)
from modelcycle.core.progress import NullProgress, Progress
from modelcycle.data.manifest import FileEntry, FileManifest
from modelcycle.data.refs import check_name
from modelcycle.data.service import DatasetService
from modelcycle.data.yamlio import suggest
from modelcycle.labeling.schema import (
    AnnotationData,
    LabelSchema,
    PredictionData,
    ProjectSnapshot,
    TaskData,
)
from modelcycle.store.labels import (
    AnnotationRecord,
    LabelChanges,
    LabelStore,
    NewAnnotation,
    NewPrediction,
    ProjectRecord,
    TaskRecord,
)
from modelcycle.store.metadata import VersionRecord

if TYPE_CHECKING:
    import polars as pl

FORMATS = ("label-studio", "coco", "yolo", "csv", "jsonl")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# A model for `predict`: takes a batch of task inputs (a polars DataFrame of rows, or a
# list of local image/file paths) and returns one value, or (value, score), per input.
Predictor = Callable[[Any], Sequence[Any]]


@dataclass
class Project:
    """A labeling project as the API returns it."""

    record: ProjectRecord
    schema: LabelSchema
    dataset: VersionRecord

    @property
    def name(self) -> str:
        return self.record.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.record.name,
            "dataset": self.dataset.ref,
            "schema": self.schema.to_dict(),
            "overlap": self.record.overlap,
            "tasks": self.record.num_tasks,
            "created_at": self.record.created_at.isoformat(),
            "created_by": self.record.created_by,
        }


@dataclass
class ExportJob:
    """An export running in a background thread; poll ``progress`` or wait on ``result``."""

    total: float | None = None
    done_units: float = 0
    phase: str = "starting"
    _thread: threading.Thread | None = None
    _result: Any = None
    _error: BaseException | None = None
    _finished: threading.Event = field(default_factory=threading.Event)

    # The Progress protocol, fed by the export itself.
    def task(self, description: str, total: float | None = None) -> None:
        self.phase, self.total, self.done_units = description, total, 0

    def advance(self, amount: float = 1) -> None:
        self.done_units += amount

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done_units / self.total) if self.total else None

    def done(self) -> bool:
        return self._finished.is_set()

    def result(self, timeout: float | None = None) -> Any:
        if not self._finished.wait(timeout):
            raise TimeoutError(f"export still running ({self.phase})")
        if self._error is not None:
            raise self._error
        return self._result


class LabelService:
    def __init__(self, labels: LabelStore, datasets: DatasetService) -> None:
        self.labels = labels
        self.datasets = datasets

    # -- projects ----------------------------------------------------------------------
    def _record(self, name: str) -> ProjectRecord:
        record = self.labels.get_project(name)
        if record is None:
            names = [p.name for p in self.labels.list_projects()]
            raise NotFoundError(
                f"no labeling project named {name!r}{suggest(name, names)}",
                hint="`modelcycle label list` shows the projects; "
                "`modelcycle label create` makes one",
            )
        return record

    def get(self, name: str) -> Project:
        record = self._record(name)
        version = self.datasets.store.version_by_id(record.dataset_version_id)
        assert version is not None
        return Project(record, LabelSchema.from_dict(record.schema), version)

    def projects(self) -> list[dict[str, Any]]:
        out = []
        for record in self.labels.list_projects():
            project = self.get(record.name)
            out.append({**project.to_dict(), **self.labels.counts(record.id)})
        return out

    def create(
        self,
        name: str,
        dataset: str,
        schema: LabelSchema | dict[str, Any] | str | os.PathLike[str],
        *,
        overlap: int = 1,
        annotators: Sequence[str] = (),
    ) -> Project:
        """A project with one task per row (table) or per file (file dataset) of ``dataset``."""
        check_name(name, "project name")
        schema = _schema(schema)
        if overlap < 1:
            raise UsageError(f"overlap must be at least 1, got {overlap}", hint="use --overlap 2")
        if self.labels.get_project(name) is not None:
            raise ConflictError(
                f"a labeling project named {name!r} exists already",
                hint="choose another name, or work on the existing project",
            )
        version = self.datasets.resolve(dataset)
        tasks = self._tasks_for(version, schema)
        for a in annotators:
            check_name(a, "annotator name")
        record, _ = self.labels.create_project(
            name,
            version.id,
            schema.to_dict(),
            overlap,
            tasks,
            LabelChanges(annotators=list(annotators)),
        )
        return Project(record, schema, version)

    def _tasks_for(
        self, version: VersionRecord, schema: LabelSchema
    ) -> list[tuple[str, int, dict[str, Any] | None]]:
        if version.kind == "table":
            columns = [c["name"] for c in version.schema or []]
            if schema.field is not None and schema.field not in columns:
                raise UsageError(
                    f"the schema's field {schema.field!r} is not a column of {version.ref}"
                    f"{suggest(schema.field, columns)}",
                    hint=f"its columns are: {', '.join(columns)}",
                )
            if schema.kind == "boxes":
                raise UsageError(
                    f"{version.ref} is a table; box labels need a file dataset of images",
                    hint="add the image folder with `modelcycle dataset add` and label that",
                )
            return [(str(i), i, None) for i in range(version.num_rows or 0)]
        manifest = self.datasets.manifest(version)
        assert isinstance(manifest, FileManifest)
        if schema.kind == "spans":
            raise UsageError(
                f"{version.ref} is a file dataset; span labels need a table with a text column",
                hint="label a table version, naming its text column in `field`",
            )
        tasks: list[tuple[str, int, dict[str, Any] | None]] = []
        for i, entry in enumerate(manifest.files):
            meta = None
            if schema.kind == "boxes":
                if not entry.path.lower().endswith(IMAGE_SUFFIXES):
                    continue
                meta = dict(zip(("width", "height"), self._image_size(entry), strict=True))
            tasks.append((entry.path, i, meta))
        if not tasks:
            raise InputDataError(
                f"{version.ref} holds no images to draw boxes on",
                hint=f"box projects take image files ({', '.join(IMAGE_SUFFIXES)})",
            )
        return tasks

    def _image_size(self, entry: FileEntry) -> tuple[int, int]:
        from PIL import Image, UnidentifiedImageError

        try:
            with self.datasets.blobs.open_raw(entry.oid) as f, Image.open(f) as im:
                return int(im.size[0]), int(im.size[1])
        except (UnidentifiedImageError, OSError) as e:
            raise InputDataError(
                f"{entry.path} is not an image Pillow can read: {e}",
                hint="remove it from the dataset, or use a classification schema",
            ) from e

    # -- annotators and assignment -----------------------------------------------------
    def assign(
        self,
        name: str,
        annotators: Sequence[str],
        *,
        tasks: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Register ``annotators`` and hand out tasks.

        Without ``tasks``: round-robin, each task to ``overlap`` different annotators,
        balancing load. With ``tasks`` (keys): those tasks to every one of ``annotators``.
        """
        project = self.get(name)
        if not annotators:
            raise UsageError("name at least one annotator", hint="--annotators alice,bob")
        for a in annotators:
            check_name(a, "annotator name")
        all_tasks = self.labels.tasks(project.record.id)
        if tasks is not None:
            by_key = {t.key: t for t in all_tasks}
            chosen = [self._task(by_key, key, name) for key in tasks]
            pairs = [(t.id, a) for t in chosen for a in annotators]
        else:
            k = min(project.record.overlap, len(annotators))
            load: Counter[str] = Counter({a: 0 for a in annotators})
            have: defaultdict[int, set[str]] = defaultdict(set)
            for tid, a in self.labels.assignments(project.record.id):
                have[tid].add(a)
                if a in load:
                    load[a] += 1
            pairs = []
            order = list(annotators)
            start = 0
            for task in all_tasks:
                need = k - len(have[task.id] & set(order))
                picked = 0
                for j in range(len(order)):
                    if picked >= need:
                        break
                    a = order[(start + j) % len(order)]
                    if a not in have[task.id]:
                        pairs.append((task.id, a))
                        picked += 1
                start = (start + max(need, 0)) % len(order)
        self.labels.apply(
            project.record,
            LabelChanges(annotators=list(annotators), assignments=list(pairs)),
            "label.assigned",
        )
        per: Counter[str] = Counter(a for _, a in pairs)
        return {"project": name, "assigned": len(pairs), "per_annotator": dict(sorted(per.items()))}

    @staticmethod
    def _task(by_key: dict[str, TaskRecord], key: str, project: str) -> TaskRecord:
        task = by_key.get(str(key))
        if task is None:
            raise NotFoundError(
                f"project {project!r} has no task {key!r}",
                hint="task keys are row numbers for tables and file paths for file datasets",
            )
        return task

    def _check_annotators(self, project: Project, names: Iterable[str]) -> None:
        known = set(self.labels.annotators(project.record.id))
        for a in dict.fromkeys(names):
            if a not in known:
                raise NotFoundError(
                    f"annotator {a!r} does not exist in project {project.name!r}"
                    f"{suggest(a, known)}",
                    hint=f"add them with `modelcycle label assign {project.name} --annotators {a}`",
                )

    # -- annotations -------------------------------------------------------------------
    def annotate(
        self,
        name: str,
        task: str,
        annotator: str,
        value: Any,
        *,
        prediction_id: int | None = None,
    ) -> None:
        """Record ``annotator``'s label for ``task`` (an edit keeps the old one as history)."""
        self.annotate_many(name, [(task, annotator, value, prediction_id)])

    def annotate_many(
        self, name: str, records: Iterable[tuple[str, str, Any] | tuple[str, str, Any, int | None]]
    ) -> int:
        """Record many (task key, annotator, value[, prediction id]) in one transaction."""
        project = self.get(name)
        by_key = {t.key: t for t in self.labels.tasks(project.record.id)}
        rows = list(records)
        self._check_annotators(project, (r[1] for r in rows))
        new = []
        for r in rows:
            key, annotator, value = r[0], r[1], r[2]
            task = self._task(by_key, key, name)
            where = f"task {key!r}, annotator {annotator!r}"
            new.append(
                NewAnnotation(
                    task.id,
                    annotator,
                    project.schema.validate(value, where, image_size=_size(task.meta)),
                    prediction_id=r[3] if len(r) > 3 else None,
                )
            )
        self.labels.apply(project.record, LabelChanges(annotations=new), "label.annotated")
        return len(new)

    def history(self, name: str, task: str) -> list[dict[str, Any]]:
        """Every annotation of ``task``, oldest first, edits included."""
        project = self.get(name)
        by_key = {t.key: t for t in self.labels.tasks(project.record.id)}
        target = self._task(by_key, task, name)
        return [
            _annotation_dict(a, task)
            for a in self.labels.annotations(project.record.id, history=True)
            if a.task_id == target.id
        ]

    def decide(self, name: str, task: str, value: Any, *, reviewer: str) -> None:
        """A reviewer's decision for ``task``; it overrides the consensus of annotators."""
        project = self.get(name)
        check_name(reviewer, "reviewer name")
        by_key = {t.key: t for t in self.labels.tasks(project.record.id)}
        target = self._task(by_key, task, name)
        clean = project.schema.validate(
            value, f"task {task!r}, reviewer {reviewer!r}", image_size=_size(target.meta)
        )
        self.labels.decide(project.record, target.id, clean, reviewer)

    # -- predictions -------------------------------------------------------------------
    def predict(
        self,
        name: str,
        model: Predictor | str,
        *,
        model_name: str | None = None,
        batch_size: int = 4096,
        progress: Progress | None = None,
    ) -> int:
        """Pre-annotate every task with ``model``'s suggestions (stored as predictions).

        ``model`` is a callable (see :data:`Predictor`) or ``"package.module:function"``.
        """
        project = self.get(name)
        fn, label = _predictor(model)
        label = model_name or label
        tasks = self.labels.tasks(project.record.id)
        progress = progress or NullProgress()
        progress.task(f"predicting {len(tasks)} tasks with {label}", total=len(tasks))
        new: list[NewPrediction] = []
        with self._inputs(project) as inputs:
            for start in range(0, len(tasks), batch_size):
                batch = tasks[start : start + batch_size]
                outputs = list(fn(inputs([t.position for t in batch])))
                if len(outputs) != len(batch):
                    raise UsageError(
                        f"model {label} returned {len(outputs)} predictions for "
                        f"{len(batch)} inputs",
                        hint="a predictor returns one value (or (value, score)) per input",
                    )
                for task, out in zip(batch, outputs, strict=True):
                    value, score = out if isinstance(out, tuple) else (out, None)
                    where = f"prediction of {label} for task {task.key!r}"
                    new.append(
                        NewPrediction(
                            task.id,
                            label,
                            project.schema.validate(value, where, image_size=_size(task.meta)),
                            None if score is None else float(score),
                        )
                    )
                progress.advance(len(batch))
        self.labels.apply(project.record, LabelChanges(predictions=new), "label.predicted")
        return len(new)

    @contextmanager
    def _inputs(self, project: Project) -> Iterator[Callable[[list[int]], Any]]:
        """A function from task positions to model input, valid inside the block."""
        version = project.dataset
        if version.kind == "table":
            df = self.datasets.load(version)
            yield lambda positions: df[positions]
            return
        manifest = self.datasets.manifest(version)
        assert isinstance(manifest, FileManifest)
        with self._local_files(manifest) as local:
            yield lambda positions: [local(manifest.files[p]) for p in positions]

    @contextmanager
    def _local_files(self, manifest: FileManifest) -> Iterator[Callable[[FileEntry], Path]]:
        """Local paths of stored files: the blob itself when local, else a fetched copy."""
        path_of = getattr(self.datasets.blobs, "path", None)
        if callable(path_of):
            yield lambda entry: Path(path_of(entry.oid))
            return
        scratch = Path(tempfile.mkdtemp(prefix="mc-label-"))
        try:

            def fetch(entry: FileEntry) -> Path:
                dest = scratch / entry.oid
                if not dest.exists():
                    self.datasets.blobs.get_file(entry.oid, dest)
                return dest

            yield fetch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- status, agreement, consensus, issues ----------------------------------------
    def _current(self, project: Project) -> tuple[list[TaskRecord], list[AnnotationRecord]]:
        return (
            self.labels.tasks(project.record.id),
            self.labels.annotations(project.record.id),
        )

    def status(self, name: str) -> dict[str, Any]:
        """Tasks done / in progress / with conflicts, overall and per annotator."""
        project = self.get(name)
        tasks, annotations = self._current(project)
        keys = {t.id: t.key for t in tasks}
        by_task: defaultdict[int, dict[str, Any]] = defaultdict(dict)
        for a in annotations:
            by_task[a.task_id][a.annotator] = a.value
        _, conflicts = self._consensus(project, tasks, annotations)
        conflicted = set(conflicts)
        conflict_ids = {t.id for t in tasks if t.key in conflicted}
        assigned: defaultdict[str, set[int]] = defaultdict(set)
        for tid, who in self.labels.assignments(project.record.id):
            assigned[who].add(tid)
        per = {}
        for who in self.labels.annotators(project.record.id):
            done = {tid for tid, vals in by_task.items() if who in vals}
            per[who] = {
                "assigned": len(assigned[who]),
                "done": len(done),
                "in_progress": len(assigned[who] - done),
                "conflicts": len(done & conflict_ids),
            }
        overlap = project.record.overlap
        return {
            "project": name,
            "dataset": project.dataset.ref,
            "tasks": len(tasks),
            "labeled": len(by_task),
            "complete": sum(1 for vals in by_task.values() if len(vals) >= overlap),
            "unlabeled": len(tasks) - len(by_task),
            "conflicts": len(conflict_ids),
            "predictions": self.labels.counts(project.record.id)["predictions"],
            "per_annotator": per,
            "conflicted_tasks": sorted(keys[t] for t in conflict_ids)[:20],
        }

    def _records(
        self, tasks: list[TaskRecord], annotations: list[AnnotationRecord]
    ) -> list[tuple[str, str, Any]]:
        keys = {t.id: t.key for t in tasks}
        return [(keys[a.task_id], a.annotator, a.value) for a in annotations]

    def _consensus(
        self, project: Project, tasks: list[TaskRecord], annotations: list[AnnotationRecord]
    ) -> tuple[dict[str, Any], list[str]]:
        from modelcycle.labeling.agreement import consensus

        keys = {t.id: t.key for t in tasks}
        decisions = {
            keys[tid]: value for tid, (value, _) in self.labels.decisions(project.record.id).items()
        }
        values, conflicts = consensus(
            self._records(tasks, annotations),
            project.schema.kind,
            reviewer_decisions=decisions,
        )
        return values, list(conflicts)

    def consensus(self, name: str) -> dict[str, Any]:
        """The resolved label of every labeled task, and the tasks still in conflict."""
        project = self.get(name)
        values, conflicts = self._consensus(project, *self._current(project))
        return {"labels": values, "conflicts": conflicts}

    def agreement(self, name: str) -> dict[str, Any]:
        """Agreement between annotators: overall, per pair, per annotator, per label."""
        from modelcycle.labeling.agreement import agreement_report

        project = self.get(name)
        tasks, annotations = self._current(project)
        report = agreement_report(
            self._records(tasks, annotations), project.schema.kind, list(project.schema.labels)
        )
        return {"project": name, **report}

    def issues(
        self, name: str, *, exclude: Sequence[str] = (), folds: int = 5, seed: int = 0
    ) -> list[dict[str, Any]]:
        """Labeled rows whose label is likely wrong, most suspicious first.

        ``exclude`` names columns that are not features: ids, and any column that
        already holds the answer (a model trained on it would agree with every label).

        Out-of-fold probabilities from a simple model on the row's own features (numeric
        columns, or the text column) against the consensus labels. Confident learning
        flags rows where another class clears its per-class threshold, plus as many
        rows again with the lowest probability for their given label (see
        :func:`modelcycle.labeling.issues.find_label_issues`).
        """
        import polars as pl

        from modelcycle.labeling.issues import detect_label_issues, features_from_frame

        project = self.get(name)
        schema = project.schema
        if schema.kind != "classification" or schema.multi_label:
            raise UsageError(
                f"label issues need a single-label classification project; "
                f"{name!r} is {schema.kind}{' (multi-label)' if schema.multi_label else ''}",
                hint="run `label agreement` to review other kinds",
            )
        if project.dataset.kind != "table":
            raise UsageError(
                f"label issues work on table datasets; {project.dataset.ref} holds files",
                hint="label a table of features or texts",
            )
        tasks, annotations = self._current(project)
        labels, _ = self._consensus(project, tasks, annotations)
        labeled = [t for t in tasks if t.key in labels]
        if len(labeled) < 10:
            raise UsageError(
                f"project {name!r} has {len(labeled)} labeled tasks; at least 10 are needed",
                hint="label more tasks first",
            )
        df = self.datasets.load(project.dataset)
        unknown = [c for c in exclude if c not in df.columns]
        if unknown:
            raise UsageError(
                f"{project.dataset.ref} has no column {unknown[0]!r}"
                f"{suggest(unknown[0], df.columns)}",
                hint=f"its columns are: {', '.join(df.columns)}",
            )
        df = df[[t.position for t in labeled]]
        x = features_from_frame(
            df,
            exclude=[c for c in (*exclude, schema.name) if c in df.columns],
            text_column=schema.field
            if schema.field and df[schema.field].dtype == pl.String
            else None,
        )
        y = [labels[t.key] for t in labeled]
        found = detect_label_issues(x, y, folds=folds, seed=seed)
        return [{"task": labeled[f["index"]].key, **f} for f in found]

    # -- snapshots, export, import ---------------------------------------------------
    def snapshot(self, name: str, *, resolved: bool = False) -> ProjectSnapshot:
        """The project's content in the exchange form (``resolved``: one consensus
        annotation per labeled task, as COCO and YOLO want)."""
        project = self.get(name)
        tasks, annotations = self._current(project)
        if resolved:
            values, _ = self._consensus(project, tasks, annotations)
            return self._resolved_snapshot(project, tasks, values)
        snap = ProjectSnapshot(
            project.schema,
            self._task_data(project, tasks),
            meta={"project": name, "dataset": project.dataset.ref},
        )
        keys = {t.id: t.key for t in tasks}
        index: dict[int, int] = {}
        for p in self.labels.predictions(project.record.id):
            index[p.id] = len(snap.predictions)
            snap.predictions.append(
                PredictionData(keys[p.task_id], p.model, p.value, p.score, dict(p.meta or {}))
            )
        for a in annotations:
            snap.annotations.append(
                AnnotationData(
                    keys[a.task_id],
                    a.annotator,
                    a.value,
                    a.created_at,
                    index.get(a.prediction_id) if a.prediction_id is not None else None,
                    dict(a.meta or {}),
                )
            )
        return snap

    def _resolved_snapshot(
        self, project: Project, tasks: list[TaskRecord], values: dict[str, Any]
    ) -> ProjectSnapshot:
        """The tasks with one consensus annotation per labeled task."""
        return ProjectSnapshot(
            project.schema,
            self._task_data(project, tasks),
            [AnnotationData(key, "consensus", value) for key, value in values.items()],
            meta={"project": project.name, "dataset": project.dataset.ref},
        )

    def _task_data(self, project: Project, tasks: list[TaskRecord]) -> list[TaskData]:
        version = project.dataset
        if version.kind == "table":
            rows = self.datasets.load(version).to_dicts()
            return [
                TaskData(
                    t.key,
                    {k: v for k, v in rows[t.position].items() if v is not None},
                    dict(t.meta or {}),
                )
                for t in tasks
            ]
        manifest = self.datasets.manifest(version)
        assert isinstance(manifest, FileManifest)
        field_name = "image" if project.schema.kind == "boxes" else "file"
        return [
            TaskData(t.key, {field_name: manifest.files[t.position].path}, dict(t.meta or {}))
            for t in tasks
        ]

    def export(
        self,
        name: str,
        format: str,
        output: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Write the project as Label Studio JSON, COCO, YOLO, CSV or JSON Lines."""
        from modelcycle.labeling import formats

        fmt = _format(format)
        progress = progress or NullProgress()
        out = Path(output).expanduser()
        progress.task(f"reading project {name}", total=None)
        project = self.get(name)
        if fmt in ("coco", "yolo") and project.schema.kind != "boxes":
            raise UsageError(
                f"{fmt} holds boxes; project {name!r} is {project.schema.kind}",
                hint="use --format label-studio, csv or jsonl",
            )
        if fmt in ("csv", "jsonl") and project.schema.kind not in ("classification", "number"):
            raise UsageError(
                f"{fmt} holds classification or number labels; {name!r} is {project.schema.kind}",
                hint="use --format label-studio",
            )
        snap = self.snapshot(name, resolved=fmt in ("coco", "yolo"))
        progress.task(f"writing {len(snap.tasks)} tasks as {fmt}", total=len(snap.tasks))
        if fmt == "label-studio":
            target = out / f"{name}.label-studio.json" if out.is_dir() else out
            formats.write_label_studio(snap, target)
            progress.advance(len(snap.tasks))
            return target
        if fmt in ("csv", "jsonl"):
            target = out / f"{name}.{fmt}" if out.is_dir() else out
            if target.suffix.lower() != f".{fmt}":
                raise UsageError(
                    f"{target} does not end in .{fmt}", hint=f"name the output FILE.{fmt}"
                )
            formats.write_table(snap, target)
            progress.advance(len(snap.tasks))
            return target
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConflictError(
                f"{out} exists and is not an empty folder",
                hint="choose a new or empty output folder",
            )
        manifest = self.datasets.manifest(project.dataset)
        assert isinstance(manifest, FileManifest)
        by_path = {e.path: e for e in manifest.files}
        with self._local_files(manifest) as local:

            def source(task: TaskData) -> Path:
                progress.advance()
                return local(by_path[task.key])

            if fmt == "coco":
                formats.write_coco(snap, out, source)
            else:
                formats.write_yolo(snap, out, source)
        return out

    def start_export(self, name: str, format: str, output: str | os.PathLike[str]) -> ExportJob:
        """Run :meth:`export` in a background thread; the job reports progress."""
        job = ExportJob()

        def run() -> None:
            try:
                job._result = self.export(name, format, output, progress=job)
            except Exception as e:  # noqa: BLE001 - handed to the caller by job.result()
                job._error = e
            finally:
                job._finished.set()

        job._thread = threading.Thread(target=run, name=f"export-{name}", daemon=True)
        job._thread.start()
        return job

    def export_to_dataset(
        self, name: str, dataset: str, *, message: str | None = None
    ) -> VersionRecord:
        """A new dataset version: the source data plus the resolved labels.

        Tables get a label column (named by the schema, null where unlabeled) and a
        ``<label>_annotators`` column; file datasets get their files plus a label file
        (COCO JSON for boxes, CSV otherwise). Lineage names the source version, the
        project, its annotators and the models whose suggestions were used.
        """
        project = self.get(name)
        check_name(dataset)
        tasks, annotations = self._current(project)
        values, conflicts = self._consensus(project, tasks, annotations)
        models = sorted({p.model for p in self.labels.predictions(project.record.id)})
        annotators = sorted({a.annotator for a in annotations})
        step = {
            "op": "label-export",
            "project": name,
            "input": project.dataset.ref,
            "schema": project.schema.to_dict(),
            "annotators": annotators,
            "models": models,
            "labeled": len(values),
            "conflicts": len(conflicts),
            "reviewers": sorted({r for _, r in self.labels.decisions(project.record.id).values()}),
        }
        parents = [(project.dataset, "labeled")]
        if project.dataset.kind == "table":
            return self.datasets.write_table(
                dataset,
                self._labeled_frame(project, tasks, annotations, values),
                step=step,
                parents=parents,
                message=message,
            )
        from modelcycle.labeling import formats

        manifest = self.datasets.manifest(project.dataset)
        assert isinstance(manifest, FileManifest)
        snap = self._resolved_snapshot(project, tasks, values)
        with tempfile.TemporaryDirectory(prefix="mc-label-") as tmp:
            if project.schema.kind == "boxes":
                formats.write_coco(snap, Path(tmp), None)
                label_file = f"labels/{name}.coco.json"
                data = (Path(tmp) / "annotations.json").read_bytes()
            else:
                formats.write_table(snap, Path(tmp) / "labels.csv")
                label_file = f"labels/{name}.csv"
                data = (Path(tmp) / "labels.csv").read_bytes()
        return self.datasets.write_files(
            dataset,
            list(manifest.files),
            {label_file: data},
            step=step,
            parents=parents,
            message=message,
        )

    def _labeled_frame(
        self,
        project: Project,
        tasks: list[TaskRecord],
        annotations: list[AnnotationRecord],
        values: dict[str, Any],
    ) -> pl.DataFrame:
        import polars as pl

        df = self.datasets.load(project.dataset)
        schema = project.schema
        column = schema.name
        if column in df.columns:
            raise ConflictError(
                f"{project.dataset.ref} has a column {column!r} already",
                hint="give the schema another `name` for its label column",
            )
        n = df.height
        labels: list[Any] = [None] * n
        counts = [0] * n
        keys = {t.id: t for t in tasks}
        for a in annotations:
            counts[keys[a.task_id].position] += 1
        for t in tasks:
            if t.key in values:
                labels[t.position] = values[t.key]
        if schema.kind == "classification":
            dtype: Any = pl.List(pl.String) if schema.multi_label else pl.String
        elif schema.kind == "number":
            dtype = pl.Float64
        else:
            dtype = pl.List(pl.Struct({"start": pl.Int64, "end": pl.Int64, "label": pl.String}))
            labels = [
                None if v is None else [{k: s[k] for k in ("start", "end", "label")} for s in v]
                for v in labels
            ]
        return df.with_columns(
            pl.Series(column, labels, dtype=dtype),
            pl.Series(f"{column}_annotators", counts, dtype=pl.Int32),
        )

    def import_(
        self,
        name: str,
        path: str | os.PathLike[str],
        format: str,
        *,
        schema: LabelSchema | dict[str, Any] | str | os.PathLike[str] | None = None,
        dataset: str | None = None,
        add_annotators: bool = False,
    ) -> dict[str, Any]:
        """Bring annotations and predictions from a file into a project, in one transaction.

        Into an existing project, tasks are matched by key and annotators must exist
        (or pass ``add_annotators``). When the project does not exist (Label Studio, CSV
        or JSON Lines only), the tasks' data becomes a new table version of ``dataset``
        (default: the project's name) and the project is created over it.
        """
        from modelcycle.labeling import formats

        fmt = _format(format)
        src = Path(path).expanduser()
        if not src.exists():
            raise NotFoundError(f"{src} does not exist", hint="check the path you are importing")
        record = self.labels.get_project(name)
        given = _schema(schema) if schema is not None else None
        project = self.get(name) if record is not None else None
        use_schema = project.schema if project is not None else given
        where = str(src)
        if fmt == "label-studio":
            try:
                obj = json.loads(src.read_bytes())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise InputDataError(
                    f"{where} is not valid JSON: {e}",
                    hint="export the project from Label Studio as JSON (not JSON-MIN or CSV)",
                ) from e
            snap = formats.from_label_studio(obj, use_schema, where)
        elif fmt == "coco":
            snap = formats.read_coco(src, use_schema)
        elif fmt == "yolo":
            snap = formats.read_yolo(src, use_schema, self._sizes(project) if project else None)
        else:
            if use_schema is None:
                raise UsageError(
                    f"importing {fmt} into a new project needs a schema",
                    hint="pass --schema schema.yaml, or create the project first",
                )
            snap = formats.read_table(src, use_schema)
        if project is None:
            if fmt in ("coco", "yolo"):
                raise NotFoundError(
                    f"no labeling project named {name!r} to import {fmt} boxes into",
                    hint=f"create it over the image dataset first: `modelcycle label create "
                    f"{name} --dataset IMAGES --schema boxes.yaml`",
                )
            return self._import_new(name, snap, dataset or name, fmt, where)
        return self._import_into(project, snap, fmt, where, add_annotators)

    def _sizes(self, project: Project) -> Callable[[str], tuple[int, int]]:
        sizes = {t.key: _size(t.meta) for t in self.labels.tasks(project.record.id) if t.meta}

        def size(key: str) -> tuple[int, int]:
            found = sizes.get(key)
            if found is None:
                raise InputDataError(
                    f"image {key!r} is not a task of project {project.name!r}",
                    hint="import labels for the images the project was created over",
                )
            return found

        return size

    def _changes(self, snap: ProjectSnapshot, task_ids: dict[str, int | str]) -> LabelChanges:
        changes = LabelChanges()
        for p in snap.predictions:
            changes.predictions.append(
                NewPrediction(task_ids[p.task_key], p.model, p.value, p.score, p.meta or None)
            )
        for a in snap.annotations:
            changes.annotations.append(
                NewAnnotation(
                    task_ids[a.task_key],
                    a.annotator,
                    a.value,
                    prediction_index=a.prediction,
                    meta=a.meta or None,
                    created_at=a.created_at,
                )
            )
        changes.annotators = sorted({a.annotator for a in snap.annotations})
        return changes

    def _import_into(
        self, project: Project, snap: ProjectSnapshot, fmt: str, where: str, add: bool
    ) -> dict[str, Any]:
        tasks = self.labels.tasks(project.record.id)
        by_key: dict[str, int | str] = {t.key: t.id for t in tasks}
        by_ls = {
            str(t.meta["ls_id"]): t.id for t in tasks if t.meta and t.meta.get("ls_id") is not None
        }
        sizes = {t.key: _size(t.meta) for t in tasks}
        ids: dict[str, int | str] = {}
        for task in snap.tasks:
            tid = by_key.get(task.key, by_ls.get(task.key))
            if tid is None:
                raise InputDataError(
                    f"{where}: task {task.key!r} is not a task of project {project.name!r}",
                    hint="import into the project the file was exported from; task keys are "
                    "row numbers for tables and file paths for file datasets",
                )
            ids[task.key] = tid
        # Values were checked by the format reader against the schema; check boxes
        # against the project's own image sizes too.
        for a in snap.annotations:
            if project.schema.kind == "boxes":
                project.schema.validate(
                    a.value,
                    f"{where}: task {a.task_key!r}, annotator {a.annotator!r}",
                    image_size=sizes.get(a.task_key),
                )
        changes = self._changes(snap, ids)
        if not add:
            self._check_annotators(project, changes.annotators)
        self.labels.apply(project.record, changes, f"label.imported.{fmt}")
        return {
            "project": project.name,
            "tasks": len(ids),
            "annotations": len(changes.annotations),
            "predictions": len(changes.predictions),
            "created": False,
        }

    def _import_new(
        self, name: str, snap: ProjectSnapshot, dataset: str, fmt: str, where: str
    ) -> dict[str, Any]:
        import polars as pl

        check_name(name, "project name")
        if not snap.tasks:
            raise InputDataError(f"{where} holds no tasks", hint="export a project with tasks")
        try:
            df = pl.from_dicts([t.data for t in snap.tasks], infer_schema_length=None)
        except (pl.exceptions.PolarsError, TypeError, ValueError) as e:
            raise InputDataError(
                f"{where}: the tasks' data do not form a table: {e}",
                hint="every task's `data` must be a flat mapping of the same fields",
            ) from e
        version = self.datasets.write_table(
            dataset,
            df,
            step={"op": "label-import", "format": fmt, "source": where, "project": name},
            parents=[],
            message=f"tasks of labeling project {name}",
        )
        tasks = [(t.key, i, t.meta or None) for i, t in enumerate(snap.tasks)]
        changes = self._changes(snap, {t.key: t.key for t in snap.tasks})
        record, _ = self.labels.create_project(
            name,
            version.id,
            snap.schema.to_dict(),
            max(1, max(Counter(a.task_key for a in snap.annotations).values(), default=1)),
            tasks,
            changes,
        )
        return {
            "project": record.name,
            "dataset": version.ref,
            "tasks": len(tasks),
            "annotations": len(changes.annotations),
            "predictions": len(changes.predictions),
            "created": True,
        }


# -- helpers ---------------------------------------------------------------------------
def _schema(schema: LabelSchema | dict[str, Any] | str | os.PathLike[str]) -> LabelSchema:
    if isinstance(schema, LabelSchema):
        return schema
    if isinstance(schema, dict):
        return LabelSchema.from_dict(schema)
    return LabelSchema.load(schema)


def _format(name: str) -> str:
    if name not in FORMATS:
        raise UsageError(
            f"unknown label format {name!r}{suggest(name, FORMATS)}",
            hint=f"use one of: {', '.join(FORMATS)}",
        )
    return name


def _size(meta: dict[str, Any] | None) -> tuple[int, int] | None:
    if meta and "width" in meta and "height" in meta:
        return int(meta["width"]), int(meta["height"])
    return None


def _predictor(model: Predictor | str) -> tuple[Predictor, str]:
    if callable(model):
        return model, getattr(model, "__qualname__", None) or type(model).__name__
    text = str(model)
    module, sep, attr = text.partition(":")
    if not sep:
        if "@" in text:
            raise NotFoundError(
                f"cannot load model {text!r}: the model registry is not part of this "
                "version of modelcycle",
                hint="pass a Python callable as 'package.module:function'",
            )
        raise UsageError(
            f"{text!r} is not a model: expected 'package.module:function'",
            hint="e.g. --model mymodels.sentiment:predict",
        )
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise NotFoundError(
            f"cannot load {text!r}: {e}",
            hint="check the module is importable (on PYTHONPATH) and defines the function",
        ) from e
    if not callable(fn):
        raise UsageError(f"{text!r} is not callable", hint="name a function")
    return fn, text


def _annotation_dict(a: AnnotationRecord, key: str) -> dict[str, Any]:
    return {
        "task": key,
        "annotator": a.annotator,
        "value": a.value,
        "prediction_id": a.prediction_id,
        "created_at": a.created_at.isoformat(),
        "replaced_at": a.replaced_at.isoformat() if a.replaced_at else None,
    }


__all__ = ["ExportJob", "LabelService", "Predictor", "Project"]
