"""What the annotation screen reads about a project: one annotator's queue of tasks, a
task's content and the model's suggestions for it, and a task's image bytes.

Everything goes through the workspace's labeling service and its stores by task key; an
image comes from the blob store by the hash the dataset's manifest gives for the task's
file, so a request can only ever read a file that is a task of the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import NotFoundError
from modelcycle.data.manifest import FileEntry, FileManifest
from modelcycle.data.yamlio import suggest

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace
    from modelcycle.labeling.service import Project
    from modelcycle.store.labels import PredictionRecord, TaskRecord

# What a browser is told each image suffix the labeling service accepts is.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


def image_type(path: str) -> str | None:
    return IMAGE_TYPES.get(PurePosixPath(path).suffix.lower())


@dataclass
class Queue:
    """The tasks one annotator works through, in dataset order, and their own labels.

    The tasks are those assigned to the annotator; an annotator with no assignment
    works through every task of the project.
    """

    project: Project
    annotator: str
    tasks: list[TaskRecord]
    labels: dict[int, Any]  # task id -> the annotator's current value
    assigned: bool

    @property
    def done(self) -> int:
        return sum(1 for t in self.tasks if t.id in self.labels)

    def position(self, task: TaskRecord) -> int | None:
        for i, t in enumerate(self.tasks):
            if t.id == task.id:
                return i
        return None

    def next_open(self, after: TaskRecord | None = None) -> TaskRecord | None:
        """The first task without the annotator's label after ``after``, wrapping around."""
        start = 0
        if after is not None:
            at = self.position(after)
            start = 0 if at is None else at + 1
        n = len(self.tasks)
        for i in range(n):
            task = self.tasks[(start + i) % n]
            if task.id not in self.labels:
                return task
        return None

    def neighbours(self, task: TaskRecord) -> tuple[TaskRecord | None, TaskRecord | None]:
        at = self.position(task)
        if at is None:
            return None, None
        before = self.tasks[at - 1] if at > 0 else None
        after = self.tasks[at + 1] if at + 1 < len(self.tasks) else None
        return before, after


def queue(ws: Workspace, name: str, annotator: str) -> Queue:
    project = ws.labels.get(name)
    store = ws.labels.labels
    pid = project.record.id
    known = store.annotators(pid)
    if annotator not in known:
        raise NotFoundError(
            f"annotator {annotator!r} does not exist in project {name!r}"
            f"{suggest(annotator, known)}",
            hint=f"add them with `modelcycle label assign {name} --annotators {annotator}`",
        )
    tasks = store.tasks(pid)
    mine = {tid for tid, who in store.assignments(pid) if who == annotator}
    labels = {a.task_id: a.value for a in store.annotations(pid) if a.annotator == annotator}
    if mine:
        tasks = [t for t in tasks if t.id in mine]
    return Queue(project, annotator, tasks, labels, bool(mine))


def task(ws: Workspace, project: Project, key: str) -> TaskRecord:
    for t in ws.labels.labels.tasks(project.record.id):
        if t.key == key:
            return t
    raise NotFoundError(
        f"project {project.name!r} has no task {key!r}",
        hint="task keys are row numbers for tables and file paths for file datasets",
    )


@dataclass
class TaskView:
    """What the screen shows of a task: the row's fields, or the file (an image)."""

    key: str
    fields: dict[str, Any]
    text_field: str | None
    file: str | None
    image: bool
    width: int | None
    height: int | None
    suggestions: list[PredictionRecord]

    @property
    def suggestion(self) -> PredictionRecord | None:
        return self.suggestions[0] if self.suggestions else None


def view(ws: Workspace, project: Project, task: TaskRecord) -> TaskView:
    version = project.dataset
    fields: dict[str, Any] = {}
    file = None
    if version.kind == "table":
        fields = ws.datasets.load(version)[task.position].to_dicts()[0]
    else:
        file = _entry(ws, project, task).path
    meta = task.meta or {}
    return TaskView(
        key=task.key,
        fields=fields,
        text_field=project.schema.field if project.schema.field in fields else None,
        file=file,
        image=file is not None and image_type(file) is not None,
        width=int(meta["width"]) if "width" in meta else None,
        height=int(meta["height"]) if "height" in meta else None,
        suggestions=suggestions(ws, project, task),
    )


def suggestions(ws: Workspace, project: Project, task: TaskRecord) -> list[PredictionRecord]:
    """The models' predictions for ``task``, newest first."""
    found = [p for p in ws.labels.labels.predictions(project.record.id) if p.task_id == task.id]
    return sorted(found, key=lambda p: p.id, reverse=True)


def image(ws: Workspace, name: str, key: str) -> tuple[bytes, str, str]:
    """The bytes, media type and hash of the image of task ``key``; NotFoundError if
    ``key`` is not a task of the project or its file is not an image."""
    project = ws.labels.get(name)
    if project.dataset.kind == "table":
        raise NotFoundError(
            f"project {name!r} labels rows of the table {project.dataset.ref}; "
            "its tasks have no images",
            hint="images belong to projects over a file dataset",
        )
    entry = _entry(ws, project, task(ws, project, key))
    media_type = image_type(entry.path)
    if media_type is None:
        raise NotFoundError(
            f"task {key!r} of project {name!r} is not an image",
            hint=f"images end in {', '.join(IMAGE_TYPES)}",
        )
    return ws.blobs.read_bytes(entry.oid), media_type, entry.oid


def _entry(ws: Workspace, project: Project, task: TaskRecord) -> FileEntry:
    manifest = ws.datasets.manifest(project.dataset)
    assert isinstance(manifest, FileManifest)
    entry = manifest.files[task.position]
    assert entry.path == task.key, "a file task's key is its path in the manifest"
    return entry
