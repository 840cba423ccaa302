"""Import and export formats for labeling projects: pure converters between files and
:class:`ProjectSnapshot` (no database, no blob store).

=================  ==========================================  =========================
format             read                                        write
=================  ==========================================  =========================
Label Studio JSON  :func:`from_label_studio` (a parsed list),  :func:`to_label_studio`
                   :func:`read_label_studio` (a file)
COCO detection     :func:`read_coco`                           :func:`write_coco`
YOLO (Ultralytics) :func:`read_yolo`                           :func:`write_yolo`
CSV / JSON Lines   :func:`read_table`                          :func:`write_table`
=================  ==========================================  =========================

Readers parse and validate the whole file before they return, so a caller can write
the snapshot in one transaction: a bad file imports nothing. Every value goes through
:meth:`LabelSchema.validate`; a file that does not fit raises :class:`InputDataError`
naming the file, the task and the field.

Label Studio
    Whatever modelcycle does not model (ids, ``completed_by`` in its raw form, result
    ids, other keys) is kept in ``meta`` and written back, so exporting an unchanged
    import gives the same JSON. Results of other controls (a second ``<Choices>``,
    relations, text areas) are kept as they are, not imported. Cancelled (skipped)
    annotations, and annotations or predictions with no result for the schema's
    control when a value is required (classification, number), are not imported
    either: they are kept in the task's ``meta["ls_kept"]`` and written back.
    Rotated boxes are rejected. ``completed_by`` becomes the annotator name: a string
    as is, ``{"email": e}`` as ``e``, a user id ``n`` as ``user-n``.

COCO and YOLO
    One set of boxes per image: the snapshot given to a writer holds at most one
    annotation per task (a consensus, or one annotator's), and only tasks that have
    one are written; an image listed without boxes is a negative. Readers give every
    image an annotation (empty for a negative) by ``coco-import`` / ``yolo-import``
    (COCO: an ``annotator`` field on the annotation wins). COCO crowd regions
    (``iscrowd: 1``) are left out and counted in ``meta["skipped_crowd"]``. Images are
    copied, never hard-linked: an exported file edited in place must not change a
    stored blob.

CSV and JSON Lines (classification and number)
    Columns ``key``, the task's data fields, ``annotator``, the label (the schema's
    name; multi-label values joined with ``|`` in CSV), ``created_at``. When the
    snapshot has predictions or unlabeled tasks a ``kind`` column says
    ``annotation`` / ``prediction`` (with ``model`` and ``score``) / ``task``. A data
    field whose name is one of those columns is written as ``data.<name>``. CSV
    gives back data fields as text; JSON Lines keeps their types.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from modelcycle.core.errors import InputDataError, NotFoundError, UsageError
from modelcycle.labeling.schema import (
    AnnotationData,
    LabelSchema,
    PredictionData,
    ProjectSnapshot,
    TaskData,
)

ImageSource = Callable[[TaskData], Path]  # where a task's image file is
ImageSizes = Callable[[TaskData], tuple[int, int]]  # (width, height) of a task's image

# ======================================================================= Label Studio

LS_TYPES = {
    "classification": "choices",
    "spans": "labels",
    "boxes": "rectanglelabels",
    "number": "number",
}
_LS_KINDS = {v: k for k, v in LS_TYPES.items()}
_LS_VALUE_KEYS = {
    "classification": {"choices"},
    "spans": {"start", "end", "text", "labels"},
    "boxes": {"x", "y", "width", "height", "rotation", "rectanglelabels"},
    "number": {"number"},
}
_LS_TASK_KEYS = {"id", "data", "annotations", "predictions"}
_LS_HINT = (
    "expected a Label Studio JSON export (Export → JSON): a list of tasks, each with "
    "data, annotations and predictions; results need from_name, type and value"
)


def read_label_studio(
    path: Path,
    schema: LabelSchema | None = None,
    *,
    image_sizes: ImageSizes | None = None,
) -> ProjectSnapshot:
    """:func:`from_label_studio` on a JSON file, with errors naming its line if unparsable."""
    return from_label_studio(_load_json(path), schema, path.name, image_sizes=image_sizes)


def from_label_studio(
    obj: Any,
    schema: LabelSchema | None,
    source: str,
    *,
    image_sizes: ImageSizes | None = None,
) -> ProjectSnapshot:
    """A snapshot of a Label Studio JSON export (the parsed list of tasks).

    ``schema`` None infers one from the results (type → kind, labels in first-seen
    order, ``from_name`` → name). ``source`` names the file in error messages. A task's
    key is its ``data._mc_key`` when set (tasks exported by modelcycle), else its id.
    Boxes are converted from percent to pixels with the result's
    ``original_width``/``original_height``, or ``image_sizes(task)`` when those are
    missing.
    """
    tasks = _ls_tasks(obj, source)
    controls = _ls_controls(tasks)
    if schema is None:
        schema = _infer_ls_schema(controls, source)
    control = _pick_control(schema, controls, source)
    reader = _LSReader(schema, control, source, image_sizes)
    for index, raw in enumerate(tasks):
        reader.read_task(index, copy.deepcopy(raw))
    control_meta = controls.get(control)
    meta: dict[str, Any] = {"format": "label-studio", "source": source, "ls_from_name": control}
    if control_meta is not None and control_meta.to_name is not None:
        meta["ls_to_name"] = control_meta.to_name
    return ProjectSnapshot(
        schema=schema,
        tasks=reader.tasks,
        annotations=reader.annotations,
        predictions=reader.predictions,
        meta=meta,
    )


def to_label_studio(snap: ProjectSnapshot) -> list[dict[str, Any]]:
    """The snapshot as a Label Studio JSON task list, ready for ``json.dump``.

    Tasks keep their Label Studio id when they came from one; others get new ids and
    ``data._mc_key`` so that a later import maps them back to their keys. Boxes need
    ``width``/``height`` in the task's meta.
    """
    return _LSWriter(snap).tasks()


@dataclass
class _Control:
    type: Any
    to_name: str | None
    data: dict[str, Any]
    labels: list[str] = field(default_factory=list)
    multi: bool = False


def _ls_tasks(obj: Any, source: str) -> list[Any]:
    if isinstance(obj, dict) and isinstance(obj.get("tasks"), list):
        return list(obj["tasks"])
    if isinstance(obj, dict) and "data" in obj:
        return [obj]  # one task, as Label Studio stores it per file in cloud storage
    if not isinstance(obj, list):
        raise InputDataError(
            f"{source}: a Label Studio export is a list of tasks, got {_type_name(obj)}",
            hint=_LS_HINT,
        )
    return obj


def _iter_results(tasks: list[Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(task data, result) for every well-formed result that would be imported."""
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            continue
        for group in ("predictions", "annotations"):
            items = task.get(group)
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict) or item.get("was_cancelled") is True:
                    continue
                results = item.get("result")
                for r in results if isinstance(results, list) else []:
                    if isinstance(r, dict):
                        yield task["data"], r


def _ls_controls(tasks: list[Any]) -> dict[str, _Control]:
    controls: dict[str, _Control] = {}
    for data, r in _iter_results(tasks):
        name = r.get("from_name")
        if not isinstance(name, str):
            continue  # relations have no from_name
        to_name = r.get("to_name")
        c = controls.setdefault(
            name, _Control(r.get("type"), to_name if isinstance(to_name, str) else None, data)
        )
        value = r.get("value")
        if c.type != r.get("type") or not isinstance(value, dict):
            continue
        names = value.get(c.type) if c.type in ("choices", "labels", "rectanglelabels") else None
        if isinstance(names, list):
            c.multi = c.multi or len(names) > 1
            c.labels.extend(n for n in names if isinstance(n, str) and n not in c.labels)
    return controls


def _infer_ls_schema(controls: dict[str, _Control], source: str) -> LabelSchema:
    supported = {n: c for n, c in controls.items() if c.type in _LS_KINDS}
    if not supported:
        raise InputDataError(
            f"{source}: no choices, labels, rectanglelabels or number results to infer a "
            "schema from",
            hint="pass the project's schema",
        )
    if len(supported) > 1:
        raise InputDataError(
            f"{source}: results come from several controls ({', '.join(supported)}); "
            "cannot tell which one to import",
            hint="pass a schema whose `name` is the control to import; the others are kept "
            "as they are",
        )
    name, c = next(iter(supported.items()))
    kind = _LS_KINDS[c.type]
    if kind != "number" and not c.labels:
        raise InputDataError(
            f"{source}: the {c.type!r} results of control {name!r} name no labels",
            hint="pass the project's schema",
        )
    key = c.to_name
    if key not in c.data:
        data_keys = [k for k in c.data if k != "_mc_key"]
        key = data_keys[0] if len(data_keys) == 1 else key
    column = None if kind == "boxes" or (kind != "spans" and key == "image") else key
    return LabelSchema(
        kind=kind,
        labels=tuple(c.labels) if kind != "number" else (),
        field=column,
        multi_label=kind == "classification" and c.multi,
        name=name,
    )


def _pick_control(schema: LabelSchema, controls: dict[str, _Control], source: str) -> str:
    """The from_name whose results hold the schema's labels."""
    if schema.name in controls or not controls:
        return schema.name
    ls_type = LS_TYPES[schema.kind]
    matching = [n for n, c in controls.items() if c.type == ls_type]
    if len(matching) == 1:
        return matching[0]
    found = ", ".join(f"{n} ({c.type})" for n, c in controls.items())
    if not matching:
        raise InputDataError(
            f"{source}: no {ls_type!r} results for the schema's {schema.kind} labels; "
            f"the results come from: {found}",
            hint="check the schema's kind, or set its `name` to the control to import",
        )
    raise InputDataError(
        f"{source}: several controls write {ls_type!r} results ({', '.join(matching)}) and "
        f"none is named {schema.name!r}",
        hint="set the schema's `name` to the control to import",
    )


class _LSReader:
    def __init__(
        self,
        schema: LabelSchema,
        control: str,
        source: str,
        image_sizes: ImageSizes | None,
    ) -> None:
        self.schema = schema
        self.control = control
        self.source = source
        self.image_sizes = image_sizes
        self.tasks: list[TaskData] = []
        self.annotations: list[AnnotationData] = []
        self.predictions: list[PredictionData] = []
        self._keys: set[str] = set()

    def read_task(self, index: int, raw: Any) -> None:
        where = f"{self.source}: task at index {index}"
        if not isinstance(raw, dict):
            raise InputDataError(
                f"{where}: a task must be an object, got {_type_name(raw)}", hint=_LS_HINT
            )
        ls_id = raw.get("id")
        if ls_id is not None:
            where = f"{self.source}: task {ls_id}"
        data = _need(raw, "data", where)
        if not isinstance(data, dict):
            raise InputDataError(
                f"{where}: field 'data' must be an object, got {_type_name(data)}", hint=_LS_HINT
            )
        data = dict(data)
        meta: dict[str, Any] = {}
        if "_mc_key" in data:
            key = str(data.pop("_mc_key"))
            meta["ls_mc_key"] = True
        elif ls_id is not None:
            key = str(ls_id)
        else:
            raise InputDataError(
                f"{where}: field 'id' missing", hint="export the tasks from Label Studio"
            )
        if key in self._keys:
            raise InputDataError(
                f"{where}: task key {key!r} appears twice", hint="each task must appear once"
            )
        self._keys.add(key)
        if ls_id is not None:
            meta["ls_id"] = ls_id
        extras = {k: v for k, v in raw.items() if k not in _LS_TASK_KEYS}
        if extras:
            meta["ls_task"] = extras
        task = TaskData(key=key, data=data, meta=meta)
        annotations = _need_list(raw, "annotations", where, default=[])
        predictions = _need_list(raw, "predictions", where, default=[])
        size = self._image_size(task, annotations, predictions, where)
        if size is not None:
            meta["width"], meta["height"] = size

        kept: dict[str, list[list[Any]]] = {"annotations": [], "predictions": []}
        by_ls_id: dict[Any, int] = {}
        for j, p in enumerate(predictions):
            pw = f"{where}, prediction {j}"
            if not isinstance(p, dict):
                raise InputDataError(f"{pw}: must be an object, got {_type_name(p)}", hint=_LS_HINT)
            value, results = self._results(p, pw, size)
            if value is None:
                kept["predictions"].append([j, p])
                continue
            if isinstance(p.get("id"), int | str):
                by_ls_id[p["id"]] = len(self.predictions)
            self.predictions.append(
                PredictionData(
                    task_key=key,
                    model=_ls_model(p.get("model_version")),
                    value=value,
                    score=_ls_score(p.get("score"), pw),
                    meta={"ls": {k: v for k, v in p.items() if k != "result"}, **results},
                )
            )
        for j, a in enumerate(annotations):
            aw = f"{where}, annotation {j}"
            if not isinstance(a, dict):
                raise InputDataError(f"{aw}: must be an object, got {_type_name(a)}", hint=_LS_HINT)
            if a.get("was_cancelled") is True:
                kept["annotations"].append([j, a])
                continue
            value, results = self._results(a, aw, size)
            if value is None:
                kept["annotations"].append([j, a])
                continue
            ann_meta: dict[str, Any] = {"ls": {k: v for k, v in a.items() if k != "result"}}
            ann_meta.update(results)
            lead = a.get("lead_time")
            if isinstance(lead, int | float) and not isinstance(lead, bool):
                ann_meta["lead_time"] = float(lead)
            parent = a.get("parent_prediction")
            self.annotations.append(
                AnnotationData(
                    task_key=key,
                    annotator=_ls_annotator(a.get("completed_by"), aw),
                    value=value,
                    created_at=_ls_time(a.get("created_at"), f"{aw}: field 'created_at'"),
                    prediction=by_ls_id.get(parent) if isinstance(parent, int | str) else None,
                    meta=ann_meta,
                )
            )
        if kept["annotations"] or kept["predictions"]:
            meta["ls_kept"] = kept
        self.tasks.append(task)

    def _results(
        self, item: dict[str, Any], where: str, size: tuple[int, int] | None
    ) -> tuple[Any, dict[str, Any]]:
        """(validated value or None when there is none, the meta that rebuilds the results)."""
        result = _need_list(item, "result", where)
        items: list[Any] = []
        ours: list[Any] = []
        others: list[list[Any]] = []
        expected = LS_TYPES[self.schema.kind]
        for r_index, r in enumerate(result):
            rw = f"{where}, result {r_index}"
            if not isinstance(r, dict):
                raise InputDataError(
                    f"{rw}: a result must be an object, got {_type_name(r)}", hint=_LS_HINT
                )
            if r.get("from_name") != self.control:
                others.append([r_index, r])
                continue
            if r.get("type") != expected:
                raise InputDataError(
                    f"{rw}: field 'type' is {r.get('type')!r}, but control {self.control!r} "
                    f"holds {self.schema.kind} labels, which Label Studio writes as {expected!r}",
                    hint="check the schema's kind, or set its `name` to the control to import",
                )
            items.append(_ls_item(self.schema, r, rw, size))
            ours.append(r)
        meta: dict[str, Any] = {"ls_results": ours}
        if others:
            meta["ls_other_results"] = others
        if self.schema.kind in ("classification", "number"):
            if not items:
                return None, meta
            if len(items) > 1:
                raise InputDataError(
                    f"{where}: {len(items)} results for control {self.control!r}, expected one",
                    hint=f"a {self.schema.kind} label is one value per annotation",
                )
            return self.schema.validate(items[0], where), meta
        return self.schema.validate(items, where, image_size=size), meta

    def _image_size(
        self, task: TaskData, annotations: list[Any], predictions: list[Any], where: str
    ) -> tuple[int, int] | None:
        if self.schema.kind != "boxes":
            return None
        sizes: dict[tuple[int, int], str] = {}
        unsized: str | None = None
        for group, items in (("prediction", predictions), ("annotation", annotations)):
            for j, item in enumerate(items):
                if not isinstance(item, dict) or item.get("was_cancelled") is True:
                    continue
                results = item.get("result")
                for r_index, r in enumerate(results if isinstance(results, list) else []):
                    if not isinstance(r, dict) or r.get("from_name") != self.control:
                        continue
                    rw = f"{where}, {group} {j}, result {r_index}"
                    if "original_width" in r or "original_height" in r:
                        wh = (
                            _positive_int(r.get("original_width"), f"{rw}: field 'original_width'"),
                            _positive_int(
                                r.get("original_height"), f"{rw}: field 'original_height'"
                            ),
                        )
                        sizes.setdefault(wh, rw)
                    elif unsized is None:
                        unsized = rw
        if len(sizes) > 1:
            seen = "; ".join(f"{w}x{h} at {rw}" for (w, h), rw in sizes.items())
            raise InputDataError(
                f"{where}: results give different image sizes: {seen}",
                hint="all results of one task are on the same image",
            )
        if sizes:
            return next(iter(sizes))
        if unsized is None:
            return None
        if self.image_sizes is not None:
            return self.image_sizes(task)
        raise InputDataError(
            f"{unsized}: field 'original_width' missing, so its percentages cannot be turned "
            "into pixels",
            hint="Label Studio writes original_width/original_height once the image was loaded "
            "in the editor; or pass image_sizes= to give the sizes",
        )


def _ls_item(
    schema: LabelSchema, r: dict[str, Any], where: str, size: tuple[int, int] | None
) -> Any:
    """One result's contribution to a value, before validation (boxes in pixels)."""
    value = _need(r, "value", where)
    if not isinstance(value, dict):
        raise InputDataError(
            f"{where}: field 'value' must be an object, got {_type_name(value)}", hint=_LS_HINT
        )
    if schema.kind == "classification":
        return _need(value, "choices", where, "value.choices")
    if schema.kind == "number":
        return _need(value, "number", where, "value.number")
    if schema.kind == "spans":
        span = {
            "start": _need(value, "start", where, "value.start"),
            "end": _need(value, "end", where, "value.end"),
            "label": _one_label(value, "labels", where),
        }
        if value.get("text") is not None:
            span["text"] = value["text"]
        return span
    rotation = value.get("rotation") or 0
    if rotation != 0:
        raise InputDataError(
            f"{where}: the box is rotated by {rotation!r} degrees",
            hint="modelcycle stores axis-aligned boxes; straighten the box in Label Studio",
        )
    label = _one_label(value, "rectanglelabels", where)
    nums = {k: _ls_number(value, k, where) for k in ("x", "y", "width", "height")}
    if size is None:
        raise InputDataError(f"{where}: the image size is unknown", hint="give original_width")
    width, height = size
    return {
        "label": label,
        "x": nums["x"] * width / 100,
        "y": nums["y"] * height / 100,
        "w": nums["width"] * width / 100,
        "h": nums["height"] * height / 100,
    }


def _one_label(value: dict[str, Any], key: str, where: str) -> Any:
    names = _need(value, key, where, f"value.{key}")
    if not isinstance(names, list) or len(names) != 1:
        got = f"{len(names)} labels" if isinstance(names, list) else _type_name(names)
        raise InputDataError(
            f"{where}: field 'value.{key}' must list one label, got {got}",
            hint="modelcycle stores one label per span or box",
        )
    return names[0]


def _ls_number(value: dict[str, Any], key: str, where: str) -> float:
    x = _need(value, key, where, f"value.{key}")
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise InputDataError(f"{where}: field 'value.{key}' must be a number, got {x!r}", hint="")
    return float(x)


def _ls_annotator(raw: Any, where: str) -> str:
    if raw is None:
        return "label-studio"
    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return f"user-{raw}"
    if isinstance(raw, dict):
        if isinstance(raw.get("email"), str) and raw["email"]:
            return str(raw["email"])
        if isinstance(raw.get("id"), int):
            return f"user-{raw['id']}"
    raise InputDataError(
        f"{where}: field 'completed_by' must be a user id, an email or a name, got {raw!r}",
        hint=_LS_HINT,
    )


def _ls_model(raw: Any) -> str:
    return str(raw) if raw not in (None, "") else "label-studio"


def _ls_score(raw: Any, where: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InputDataError(f"{where}: field 'score' must be a number, got {raw!r}", hint="")
    return float(raw)


def _ls_time(raw: Any, where: str) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        return dt.datetime.fromisoformat(str(raw))
    except ValueError:
        raise InputDataError(
            f"{where} is not an ISO date: {raw!r}", hint="e.g. 2024-01-15T10:23:45.123456Z"
        ) from None


def _iso(when: dt.datetime) -> str:
    text = when.isoformat(timespec="microseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class _Ids:
    """New integer ids above every integer id already taken."""

    def __init__(self, taken: Iterable[Any]) -> None:
        ints = [x for x in taken if isinstance(x, int) and not isinstance(x, bool)]
        self._next = max(ints, default=0) + 1

    def new(self) -> int:
        self._next += 1
        return self._next - 1


def _ls_raw(meta: dict[str, Any]) -> dict[str, Any] | None:
    raw = meta.get("ls")
    return raw if isinstance(raw, dict) else None


def _or_none(parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except InputDataError:
        return None


class _LSWriter:
    def __init__(self, snap: ProjectSnapshot) -> None:
        self.snap = snap
        self.schema = snap.schema
        self.from_name = str(snap.meta.get("ls_from_name") or snap.schema.name)
        self.to_name = snap.meta.get("ls_to_name") or snap.schema.field
        self.result_ids = 0
        keys = {t.key for t in snap.tasks}
        self.anns: dict[str, list[AnnotationData]] = {}
        self.preds: dict[str, list[int]] = {}
        for ann in snap.annotations:
            self.anns.setdefault(_known(ann.task_key, keys), []).append(ann)
        for i, p in enumerate(snap.predictions):
            self.preds.setdefault(_known(p.task_key, keys), []).append(i)
        task_ids = _Ids(t.meta.get("ls_id") for t in snap.tasks)
        self.task_ids = {
            t.key: t.meta["ls_id"] if t.meta.get("ls_id") is not None else task_ids.new()
            for t in snap.tasks
        }
        self.ann_ids = _Ids((_ls_raw(a.meta) or {}).get("id") for a in snap.annotations)
        pred_ids = _Ids((_ls_raw(p.meta) or {}).get("id") for p in snap.predictions)
        self.pred_ids: dict[int, Any] = {}
        for i, p in enumerate(snap.predictions):
            raw = _ls_raw(p.meta)
            self.pred_ids[i] = raw.get("id") if raw is not None else pred_ids.new()

    def tasks(self) -> list[dict[str, Any]]:
        return [self.task(t) for t in self.snap.tasks]

    def task(self, task: TaskData) -> dict[str, Any]:
        ls_id = task.meta.get("ls_id")
        data = dict(task.data)
        if task.meta.get("ls_mc_key") or ls_id is None or task.key != str(ls_id):
            data["_mc_key"] = task.key
        size = _meta_size(task)
        kept = task.meta.get("ls_kept") or {}
        own_pred_ids = {self.pred_ids[i] for i in self.preds.get(task.key, [])}
        out: dict[str, Any] = {
            "id": self.task_ids[task.key],
            "data": data,
            "annotations": _insert_kept(
                [self.annotation(a, task, size, own_pred_ids) for a in self.anns.get(task.key, [])],
                kept.get("annotations"),
            ),
            "predictions": _insert_kept(
                [self.prediction(i, task, size) for i in self.preds.get(task.key, [])],
                kept.get("predictions"),
            ),
        }
        for k, v in (task.meta.get("ls_task") or {}).items():
            out.setdefault(k, copy.deepcopy(v))
        return out

    def annotation(
        self, ann: AnnotationData, task: TaskData, size: tuple[int, int] | None, own: set[Any]
    ) -> dict[str, Any]:
        imported = _ls_raw(ann.meta)
        out: dict[str, Any] = (
            copy.deepcopy(imported) if imported is not None else {"id": self.ann_ids.new()}
        )
        raw = imported or {}
        by = raw.get("completed_by")
        if "completed_by" not in raw or _or_none(lambda: _ls_annotator(by, "")) != ann.annotator:
            out["completed_by"] = ann.annotator
        out["result"] = self.results(ann.value, ann.meta, task, size)
        out.setdefault("was_cancelled", False)
        created = raw.get("created_at")
        if ann.created_at is not None and (
            _or_none(lambda: _ls_time(created, "")) != ann.created_at
        ):
            out["created_at"] = _iso(ann.created_at)
        lead = ann.meta.get("lead_time")
        if lead is not None and raw.get("lead_time") != lead:
            out["lead_time"] = lead
        if ann.prediction is not None and self.pred_ids.get(ann.prediction) is not None:
            out["parent_prediction"] = self.pred_ids[ann.prediction]
        elif ann.prediction is None and raw.get("parent_prediction") in own - {None}:
            out["parent_prediction"] = None
        return out

    def prediction(
        self, index: int, task: TaskData, size: tuple[int, int] | None
    ) -> dict[str, Any]:
        p = self.snap.predictions[index]
        imported = _ls_raw(p.meta)
        out: dict[str, Any] = (
            copy.deepcopy(imported) if imported is not None else {"id": self.pred_ids[index]}
        )
        raw = imported or {}
        if "model_version" not in raw or _ls_model(raw.get("model_version")) != p.model:
            out["model_version"] = p.model
        score = raw.get("score")
        if _or_none(lambda: _ls_score(score, "")) != p.score:
            out["score"] = p.score
        out["result"] = self.results(p.value, p.meta, task, size)
        return out

    def results(
        self, value: Any, meta: dict[str, Any], task: TaskData, size: tuple[int, int] | None
    ) -> list[Any]:
        where = f"task {task.key!r}"
        if value is None:
            items: list[Any] = []
        elif self.schema.kind in ("classification", "number"):
            items = [self.schema.validate(value, where)]
        else:
            items = list(self.schema.validate(value, where, image_size=size))
        templates = meta.get("ls_results")
        templates = templates if isinstance(templates, list) else []
        out: list[Any] = []
        for i, item in enumerate(items):
            tpl = templates[i] if i < len(templates) and isinstance(templates[i], dict) else None
            if tpl is not None and self._same(tpl, item, size):
                out.append(copy.deepcopy(tpl))
            else:
                out.append(self._fresh(item, tpl, task, size))
        return _insert_kept(out, meta.get("ls_other_results"))

    def _same(self, tpl: dict[str, Any], item: Any, size: tuple[int, int] | None) -> bool:
        """Whether the imported result still says ``item`` (then it is written back as is)."""
        try:
            raw = _ls_item(self.schema, tpl, "", size)
            if self.schema.kind in ("classification", "number"):
                return bool(self.schema.validate(raw, "") == item)
            return bool(self.schema.validate([raw], "", image_size=size)[0] == item)
        except InputDataError:
            return False

    def _fresh(
        self, item: Any, tpl: dict[str, Any] | None, task: TaskData, size: tuple[int, int] | None
    ) -> dict[str, Any]:
        kind = self.schema.kind
        out: dict[str, Any] = {}
        extra_value: dict[str, Any] = {}
        if tpl is not None:
            skip = {"value", "original_width", "original_height"}
            out.update({k: copy.deepcopy(v) for k, v in tpl.items() if k not in skip})
            if isinstance(tpl.get("value"), dict):
                keys = _LS_VALUE_KEYS[kind]
                extra_value = {k: v for k, v in tpl["value"].items() if k not in keys}
        if "id" not in out:
            self.result_ids += 1
            out["id"] = f"mc-{self.result_ids}"
        out.setdefault("from_name", self.from_name)
        if "to_name" not in out:
            image = kind == "boxes" or "image" in task.data
            out["to_name"] = self.to_name or ("image" if image else "text")
        out["type"] = LS_TYPES[kind]
        if kind == "classification":
            value: dict[str, Any] = {"choices": item if isinstance(item, list) else [item]}
        elif kind == "number":
            value = {"number": item}
        elif kind == "spans":
            value = {"start": item["start"], "end": item["end"]}
            text = item.get("text")
            column = task.data.get(self.schema.field or "")
            if text is None and isinstance(column, str):
                text = column[item["start"] : item["end"]]
            if text is not None:
                value["text"] = text
            value["labels"] = [item["label"]]
        else:
            if size is None:
                raise UsageError(
                    f"task {task.key!r} has boxes but no width/height in its meta",
                    hint="Label Studio boxes are percentages of the image; record the image size",
                )
            width, height = size
            value = {
                "x": item["x"] * 100 / width,
                "y": item["y"] * 100 / height,
                "width": item["w"] * 100 / width,
                "height": item["h"] * 100 / height,
                "rotation": 0,
                "rectanglelabels": [item["label"]],
            }
            out["original_width"], out["original_height"] = width, height
            out.setdefault("image_rotation", 0)
        out["value"] = {**extra_value, **value}
        return out


def _known(key: str, keys: set[str]) -> str:
    if key not in keys:
        raise UsageError(
            f"the snapshot labels task {key!r}, which is not among its tasks",
            hint="add the task to the snapshot",
        )
    return key


def _insert_kept(items: list[Any], kept: Any) -> list[Any]:
    """``items`` with the kept raw objects put back at their original positions."""
    pairs = [p for p in kept if isinstance(p, list | tuple) and len(p) == 2] if kept else []
    for pos, raw in sorted(pairs, key=lambda p: int(p[0])):
        items.insert(min(int(pos), len(items)), copy.deepcopy(raw))
    return items


# ================================================================================ COCO

_COCO_HINT = (
    "expected COCO detection JSON: images [{id, file_name, width, height}], annotations "
    "[{id, image_id, category_id, bbox}], categories [{id, name}]"
)


def write_coco(
    snap: ProjectSnapshot, out_dir: Path, image_source: ImageSource | None = None
) -> Path:
    """Write ``out_dir/annotations.json`` (and ``images/`` when ``image_source`` is given).

    The snapshot holds at most one annotation per task; tasks without one are left out.
    An image's ``file_name`` is its task key; category ids are 1.. in schema order.
    """
    schema = _require_kind(snap.schema, "boxes", "COCO")
    values = _one_annotation_per_task(snap, "COCO")
    category = {name: i + 1 for i, name in enumerate(schema.labels)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for task in snap.tasks:
        ann = values.get(task.key)
        if ann is None:
            continue
        name = _relative_name(task.key)
        src = image_source(task) if image_source is not None else None
        width, height = _task_size(task, src)
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for box in schema.validate(ann.value, f"task {task.key!r}", image_size=(width, height)):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category[box["label"]],
                    "bbox": [box["x"], box["y"], box["w"], box["h"]],
                    "area": box["w"] * box["h"],
                    "iscrowd": 0,
                    "annotator": ann.annotator,
                }
            )
        if src is not None:
            _copy_image(src, out_dir / "images" / name, task)
    doc = {
        "info": {"description": "exported by modelcycle", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": name, "supercategory": "none"} for name, i in category.items()
        ],
    }
    path = out_dir / "annotations.json"
    _write_text(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return path


def read_coco(path: Path, schema: LabelSchema | None = None) -> ProjectSnapshot:
    """A snapshot of a COCO detection file (or a folder holding ``annotations.json``).

    Tasks are keyed by ``file_name``, with width/height in their meta. ``schema`` None
    makes a boxes schema of the categories, in the file's order.
    """
    if path.is_dir():
        path = path / "annotations.json"
    source = path.name
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise InputDataError(
            f"{source}: a COCO file is an object with images, annotations and categories, "
            f"got {_type_name(doc)}",
            hint="export COCO detection JSON",
        )
    raw_cats = _need_list(doc, "categories", source, hint=_COCO_HINT)
    raw_images = _need_list(doc, "images", source, hint=_COCO_HINT)
    raw_anns = _need_list(doc, "annotations", source, default=[], hint=_COCO_HINT)

    categories: dict[int, str] = {}
    for i, c in enumerate(raw_cats):
        where = f"{source}: category {i}"
        cat = _need_object(c, where)
        cid = _whole(_need(cat, "id", where, hint=_COCO_HINT), f"{where}: field 'id'")
        name = _need(cat, "name", where, hint=_COCO_HINT)
        if not isinstance(name, str) or not name:
            raise InputDataError(f"{where}: field 'name' must be a name, got {name!r}", hint="")
        if cid in categories or name in categories.values():
            raise InputDataError(
                f"{where}: category {cid} {name!r} is listed twice", hint="list each category once"
            )
        categories[cid] = name
    if schema is None:
        if not categories:
            raise InputDataError(f"{source}: no categories", hint="list the categories")
        schema = LabelSchema(kind="boxes", labels=tuple(categories.values()))
    _require_kind(schema, "boxes", "COCO")

    tasks: dict[int, TaskData] = {}
    names: set[str] = set()
    for i, img in enumerate(raw_images):
        where = f"{source}: image {i}"
        image = _need_object(img, where)
        iid = _whole(_need(image, "id", where, hint=_COCO_HINT), f"{where}: field 'id'")
        name = _need(image, "file_name", where, hint=_COCO_HINT)
        if not isinstance(name, str) or not name:
            raise InputDataError(
                f"{where}: field 'file_name' must be a path, got {name!r}", hint=""
            )
        where = f"{source}: image {iid} ({name})"
        width = _positive_int(
            _need(image, "width", where, hint=_COCO_HINT), f"{where}: field 'width'"
        )
        height = _positive_int(
            _need(image, "height", where, hint=_COCO_HINT), f"{where}: field 'height'"
        )
        if iid in tasks or name in names:
            raise InputDataError(f"{where}: listed twice", hint="list each image once")
        names.add(name)
        tasks[iid] = TaskData(
            key=name, data={"image": name}, meta={"width": width, "height": height}
        )

    groups: dict[int, dict[str, list[Any]]] = {iid: {} for iid in tasks}
    crowd = 0
    for i, a in enumerate(raw_anns):
        where = f"{source}: annotation {i}"
        ann = _need_object(a, where)
        if ann.get("id") is not None:
            where = f"{source}: annotation id {ann['id']}"
        iid = _need(ann, "image_id", where, hint=_COCO_HINT)
        if isinstance(iid, bool) or not isinstance(iid, int) or iid not in tasks:
            raise InputDataError(
                f"{where}: image_id {iid!r} is not among the images", hint="fix the image_id"
            )
        cid = _need(ann, "category_id", where, hint=_COCO_HINT)
        if isinstance(cid, bool) or not isinstance(cid, int) or cid not in categories:
            raise InputDataError(
                f"{where}: category_id {cid!r} is not among the categories "
                f"({', '.join(str(c) for c in categories)})",
                hint="fix the category_id or add the category",
            )
        bbox = _need(ann, "bbox", where, hint=_COCO_HINT)
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
        ):
            raise InputDataError(
                f"{where}: field 'bbox' must be 4 numbers [x, y, width, height], got {bbox!r}",
                hint="COCO boxes are pixels from the top-left corner",
            )
        if ann.get("iscrowd") == 1:
            crowd += 1
            continue
        annotator = ann.get("annotator", "coco-import")
        if not isinstance(annotator, str) or not annotator:
            raise InputDataError(f"{where}: field 'annotator' must be a name", hint="")
        task = tasks[iid]
        box = {"label": categories[cid], "x": bbox[0], "y": bbox[1], "w": bbox[2], "h": bbox[3]}
        size = (task.meta["width"], task.meta["height"])
        groups[iid].setdefault(annotator, []).extend(
            schema.validate([box], f"{where}, image {task.key!r}", image_size=size)
        )

    annotations: list[AnnotationData] = []
    for iid, task in tasks.items():
        by_annotator = groups[iid] or {"coco-import": []}
        annotations.extend(
            AnnotationData(task_key=task.key, annotator=who, value=boxes)
            for who, boxes in by_annotator.items()
        )
    meta: dict[str, Any] = {"format": "coco", "source": source}
    if crowd:
        meta["skipped_crowd"] = crowd
    return ProjectSnapshot(
        schema=schema, tasks=list(tasks.values()), annotations=annotations, meta=meta
    )


# ================================================================================ YOLO

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp", ".gif")


def write_yolo(
    snap: ProjectSnapshot, out_dir: Path, image_source: ImageSource | None = None
) -> Path:
    """Write an Ultralytics detection layout into ``out_dir``; returns its ``data.yaml``.

    ``images/<key>`` (when ``image_source`` is given), ``labels/<key stem>.txt`` with
    ``class cx cy w h`` normalized to [0, 1], and ``data.yaml`` (``path`` is the folder's
    absolute path: Ultralytics resolves relative paths against its own datasets folder).
    The snapshot holds at most one annotation per task; tasks without one are left out.
    Boxes are clipped to the image.
    """
    schema = _require_kind(snap.schema, "boxes", "YOLO")
    values = _one_annotation_per_task(snap, "YOLO")
    index = {name: i for i, name in enumerate(schema.labels)}
    written: dict[str, str] = {}
    for task in snap.tasks:
        ann = values.get(task.key)
        if ann is None:
            continue
        name = _relative_name(task.key)
        label_name = str(PurePosixPath(name).with_suffix(".txt"))
        if label_name in written:
            raise UsageError(
                f"tasks {written[label_name]!r} and {task.key!r} would share labels/{label_name}",
                hint="YOLO pairs an image and its labels by name without suffix; rename one",
            )
        written[label_name] = task.key
        src = image_source(task) if image_source is not None else None
        width, height = _task_size(task, src)
        lines = []
        for box in schema.validate(ann.value, f"task {task.key!r}", image_size=(width, height)):
            x0, y0 = max(box["x"], 0.0), max(box["y"], 0.0)
            x1, y1 = min(box["x"] + box["w"], width), min(box["y"] + box["h"], height)
            cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
            w, h = (x1 - x0) / width, (y1 - y0) / height
            lines.append(f"{index[box['label']]} {cx:.10g} {cy:.10g} {w:.10g} {h:.10g}\n")
        _write_text(out_dir / "labels" / label_name, "".join(lines))
        if src is not None:
            _copy_image(src, out_dir / "images" / name, task)
    config = {
        "path": str(out_dir.resolve()),
        "train": "images",
        "val": "images",
        "names": dict(enumerate(schema.labels)),
    }
    path = out_dir / "data.yaml"
    _write_text(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def read_yolo(
    folder: Path,
    schema: LabelSchema | None = None,
    image_sizes: Callable[[str], tuple[int, int]] | None = None,
) -> ProjectSnapshot:
    """A snapshot of an Ultralytics detection folder (``data.yaml``, ``images/``, ``labels/``).

    Tasks are the images under ``images/`` (key: the path below it); an image without a
    label file is a negative (an empty annotation), as Ultralytics treats it. Image
    sizes come from ``image_sizes(key)`` when given, else from the image's header.
    Without images, a label file's task key is its path below ``labels/`` without
    ``.txt``, and ``image_sizes`` is required.
    """
    if folder.is_file():
        folder = folder.parent
    names = _yolo_names(folder / "data.yaml")
    if schema is None:
        schema = LabelSchema(kind="boxes", labels=tuple(names.values()))
    _require_kind(schema, "boxes", "YOLO")

    images_dir, labels_dir = folder / "images", folder / "labels"
    images: dict[str, str] = {}  # stem path -> key
    for p in sorted(images_dir.rglob("*")) if images_dir.is_dir() else []:
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            key = p.relative_to(images_dir).as_posix()
            stem = str(PurePosixPath(key).with_suffix(""))
            if stem in images:
                raise InputDataError(
                    f"images/{images[stem]} and images/{key} share the label file "
                    f"labels/{stem}.txt",
                    hint="give each image a distinct name without suffix",
                )
            images[stem] = key
    labels: dict[str, Path] = {}
    for p in sorted(labels_dir.rglob("*.txt")) if labels_dir.is_dir() else []:
        stem = str(PurePosixPath(p.relative_to(labels_dir).as_posix()).with_suffix(""))
        labels[stem] = p
        if stem not in images:
            if image_sizes is None:
                raise InputDataError(
                    f"labels/{stem}.txt has no image images/{stem}.* to read its size from",
                    hint="put the images under images/, or pass image_sizes",
                )
            images[stem] = stem
    if not images:
        raise InputDataError(
            f"{folder}: no images under images/ and no label files under labels/",
            hint="the Ultralytics layout is data.yaml, images/<name>, labels/<stem>.txt",
        )

    tasks, annotations = [], []
    for stem, key in sorted(images.items(), key=lambda kv: kv[1]):
        size = image_sizes(key) if image_sizes else _image_file_size(images_dir / key)
        tasks.append(
            TaskData(key=key, data={"image": key}, meta={"width": size[0], "height": size[1]})
        )
        boxes = (
            _yolo_boxes(labels[stem], f"labels/{stem}.txt", names, schema, size)
            if stem in labels
            else []
        )
        annotations.append(AnnotationData(task_key=key, annotator="yolo-import", value=boxes))
    return ProjectSnapshot(
        schema=schema,
        tasks=tasks,
        annotations=annotations,
        meta={"format": "yolo", "source": str(folder)},
    )


def _yolo_names(path: Path) -> dict[int, str]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(
            f"{path} does not exist", hint="a YOLO folder has a data.yaml listing `names`"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputDataError(f"{path.name}: cannot be read as YAML: {e}", hint="") from e
    raw = config.get("names") if isinstance(config, dict) else None
    if isinstance(raw, list):
        raw = dict(enumerate(raw))
    if not isinstance(raw, dict) or not raw:
        raise InputDataError(
            f"{path.name}: field 'names' missing or empty",
            hint="names: {0: cat, 1: dog} (or a list)",
        )
    names: dict[int, str] = {}
    for k, v in sorted(raw.items(), key=lambda kv: str(kv[0])):
        if isinstance(k, bool) or not isinstance(k, int) or k < 0 or not isinstance(v, str | int):
            raise InputDataError(
                f"{path.name}: names entry {k!r}: {v!r} is not a class index and a name",
                hint="names: {0: cat, 1: dog}",
            )
        names[k] = str(v)
    if len(set(names.values())) != len(names):
        raise InputDataError(f"{path.name}: a name is listed twice", hint="list each name once")
    return dict(sorted(names.items()))


def _yolo_boxes(
    path: Path,
    shown: str,
    names: dict[int, str],
    schema: LabelSchema,
    size: tuple[int, int],
) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputDataError(f"{shown}: cannot be read: {e}", hint="") from e
    width, height = size
    boxes: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        where = f"{shown}, line {n}"
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise InputDataError(
                f"{where}: expected 5 fields (class cx cy w h), got {len(fields)}",
                hint="only detection boxes are read; segmentation and pose lines are not",
            )
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(f) for f in fields[1:])
        except ValueError:
            raise InputDataError(
                f"{where}: {line.strip()!r} is not a class index and four numbers", hint=""
            ) from None
        if cls not in names:
            raise InputDataError(
                f"{where}: class {cls} is not in data.yaml's names (0-{max(names)})",
                hint="fix the class index or add the name to data.yaml",
            )
        for label, v in zip(("cx", "cy", "w", "h"), (cx, cy, w, h), strict=True):
            if not 0.0 <= v <= 1.0:
                raise InputDataError(
                    f"{where}: {label} {v:g} is outside [0, 1]",
                    hint="YOLO coordinates are fractions of the image's width and height",
                )
        box = {
            "label": names[cls],
            "x": (cx - w / 2) * width,
            "y": (cy - h / 2) * height,
            "w": w * width,
            "h": h * height,
        }
        boxes.extend(schema.validate([box], where, image_size=size))
    return boxes


# ============================================================================ tables

_TABLE_SUFFIXES = (".csv", ".jsonl")


def write_table(snap: ProjectSnapshot, path: Path) -> Path:
    """Write classification or number labels as CSV or JSON Lines (by ``path``'s suffix)."""
    schema = snap.schema
    suffix = _table_suffix(path)
    if schema.kind not in ("classification", "number"):
        raise UsageError(
            f"a {suffix[1:].upper()} table holds classification or number labels, not "
            f"{schema.kind}",
            hint="use Label Studio JSON, COCO or YOLO for spans and boxes",
        )
    if suffix == ".csv" and schema.multi_label and any("|" in x for x in schema.labels):
        raise UsageError(
            "a label contains '|', which joins multi-label values in CSV", hint="use .jsonl"
        )
    label_col = schema.name
    reserved = _reserved(label_col)
    columns: dict[str, str] = {}  # data field -> column
    for task in snap.tasks:
        for f in task.data:
            if f not in columns:
                columns[f] = f"data.{f}" if f in reserved or f.startswith("data.") else f
    anns: dict[str, list[AnnotationData]] = {}
    preds: dict[str, list[PredictionData]] = {}
    keys = {t.key for t in snap.tasks}
    for a in snap.annotations:
        anns.setdefault(_known(a.task_key, keys), []).append(a)
    for p in snap.predictions:
        preds.setdefault(_known(p.task_key, keys), []).append(p)
    with_kind = bool(snap.predictions) or any(
        t.key not in anns and t.key not in preds for t in snap.tasks
    )

    rows: list[dict[str, Any]] = []
    for task in snap.tasks:
        base = {"key": task.key, **{columns[f]: v for f, v in task.data.items()}}
        for a in anns.get(task.key, []):
            value = schema.validate(a.value, f"task {task.key!r}, annotator {a.annotator!r}")
            row = {**base, "annotator": a.annotator, label_col: value}
            row["created_at"] = _iso(a.created_at) if a.created_at is not None else None
            rows.append({**row, "kind": "annotation"} if with_kind else row)
        for p in preds.get(task.key, []):
            value = schema.validate(p.value, f"task {task.key!r}, prediction of {p.model!r}")
            rows.append(
                {**base, "kind": "prediction", "model": p.model, "score": p.score, label_col: value}
            )
        if task.key not in anns and task.key not in preds:
            rows.append({**base, "kind": "task"})

    header = ["key", *columns.values(), "annotator", label_col, "created_at"]
    if with_kind:
        header[1:1] = ["kind"]
        header += ["model", "score"]
    if suffix == ".jsonl":
        data_columns = set(columns.values())
        lines = [
            json.dumps(
                {c: row.get(c) for c in header if c in row or c not in data_columns},
                ensure_ascii=False,
                default=str,
            )
            for row in rows
        ]
        _write_text(path, "".join(line + "\n" for line in lines))
        return path
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_cell(row.get(c)) for c in header})
    _write_text(path, buffer.getvalue())
    return path


def read_table(path: Path, schema: LabelSchema) -> ProjectSnapshot:
    """A snapshot of a CSV or JSON Lines table of classification or number labels.

    Required columns: ``key`` and the label (the schema's name, else ``label``).
    Optional: ``annotator`` (default ``import``), ``created_at`` (ISO), ``kind``
    (``annotation``, ``prediction`` with ``model`` and optional ``score``, or ``task``
    for a task with no label); every other column is a data field of the task.
    """
    suffix = _table_suffix(path)
    if schema.kind not in ("classification", "number"):
        raise UsageError(
            f"a table holds classification or number labels, not {schema.kind}",
            hint="use Label Studio JSON, COCO or YOLO for spans and boxes",
        )
    source = path.name
    rows = _read_jsonl(path) if suffix == ".jsonl" else _read_csv(path)
    columns: dict[str, None] = {}
    for _, row in rows:
        columns.update(dict.fromkeys(row))
    label_col = schema.name if schema.name in columns else "label"
    reserved = _reserved(label_col)
    for required in ("key", label_col):
        if required not in columns and rows:
            raise InputDataError(
                f"{source}: no {required!r} column (columns: {', '.join(columns)})",
                hint=f"a label table needs the columns `key` and `{schema.name}`",
            )
    tasks: dict[str, TaskData] = {}
    first_line: dict[str, int] = {}
    annotations: list[AnnotationData] = []
    predictions: list[PredictionData] = []
    for line, row in rows:
        where = f"{source}, line {line}"
        key = row.get("key")
        if key is None or key == "":
            raise InputDataError(f"{where}: the key is empty", hint="give every row a key")
        key = str(key)
        data = {
            (c[5:] if c.startswith("data.") else c): v for c, v in row.items() if c not in reserved
        }
        if key not in tasks:
            tasks[key] = TaskData(key=key, data=data)
            first_line[key] = line
        elif tasks[key].data != data:
            raise InputDataError(
                f"{where}: task {key!r} has other data fields than on line {first_line[key]}",
                hint="rows of one key carry the same data",
            )
        kind = row.get("kind") or "annotation"
        if kind == "task":
            continue
        if kind not in ("annotation", "prediction"):
            raise InputDataError(
                f"{where}: kind {kind!r} is not annotation, prediction or task", hint=""
            )
        raw = row.get(label_col)
        if suffix == ".csv" and schema.kind == "classification" and schema.multi_label:
            raw = [x for x in str(raw or "").split("|") if x]
        value = schema.validate(raw, where)
        if kind == "prediction":
            model = row.get("model")
            if not model:
                raise InputDataError(f"{where}: a prediction needs a model", hint="fill `model`")
            predictions.append(
                PredictionData(
                    task_key=key,
                    model=str(model),
                    value=value,
                    score=_table_score(row.get("score"), where),
                )
            )
        else:
            annotations.append(
                AnnotationData(
                    task_key=key,
                    annotator=str(row.get("annotator") or "import"),
                    value=value,
                    created_at=_ls_time(row.get("created_at") or None, f"{where}: created_at"),
                )
            )
    return ProjectSnapshot(
        schema=schema,
        tasks=list(tasks.values()),
        annotations=annotations,
        predictions=predictions,
        meta={"format": suffix[1:], "source": source},
    )


def _reserved(label_col: str) -> set[str]:
    return {"key", "kind", "annotator", "created_at", "model", "score", label_col}


def _table_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _TABLE_SUFFIXES:
        raise UsageError(f"{path.name}: a label table is .csv or .jsonl", hint="rename the file")
    return suffix


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "|".join(str(x) for x in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _read_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    try:
        for row in reader:
            if None in row:
                raise InputDataError(
                    f"{path.name}, line {reader.line_num}: more cells than columns",
                    hint="quote cells that contain commas",
                )
            rows.append((reader.line_num, dict(row)))
    except csv.Error as e:
        raise InputDataError(f"{path.name}, line {reader.line_num}: {e}", hint="") from e
    return rows


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputDataError(
                f"{path.name}, line {n}: not valid JSON: {e.msg}", hint="one JSON object a line"
            ) from None
        if not isinstance(row, dict):
            raise InputDataError(
                f"{path.name}, line {n}: expected an object, got {_type_name(row)}",
                hint="one JSON object a line",
            )
        rows.append((n, row))
    return rows


def _table_score(raw: Any, where: str) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise InputDataError(f"{where}: score {raw!r} is not a number", hint="") from None


# ============================================================================ shared


def _need(
    obj: dict[str, Any], key: str, where: str, name: str | None = None, hint: str = _LS_HINT
) -> Any:
    if key not in obj:
        raise InputDataError(f"{where}: field {name or key!r} missing", hint=hint)
    return obj[key]


def _need_list(
    obj: dict[str, Any],
    key: str,
    where: str,
    default: list[Any] | None = None,
    hint: str = _LS_HINT,
) -> list[Any]:
    if key not in obj and default is not None:
        return default
    value = _need(obj, key, where, hint=hint)
    if not isinstance(value, list):
        raise InputDataError(
            f"{where}: field {key!r} must be a list, got {_type_name(value)}", hint=hint
        )
    return value


def _need_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputDataError(f"{where}: must be an object, got {_type_name(value)}", hint="")
    return value


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputDataError(f"{where} must be a whole number, got {value!r}", hint="")
    return value


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InputDataError(f"{where} must be a whole number of pixels, got {value!r}", hint="")
    if value <= 0:
        raise InputDataError(f"{where} must be positive, got {value!r}", hint="")
    return int(value)


_TYPE_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _require_kind(schema: LabelSchema, kind: str, fmt: str) -> LabelSchema:
    if schema.kind != kind:
        raise UsageError(
            f"{fmt} holds {kind}, but the schema's kind is {schema.kind}",
            hint="use Label Studio JSON or a CSV/JSON Lines table for other kinds",
        )
    return schema


def _one_annotation_per_task(snap: ProjectSnapshot, fmt: str) -> dict[str, AnnotationData]:
    keys = {t.key for t in snap.tasks}
    out: dict[str, AnnotationData] = {}
    for ann in snap.annotations:
        if _known(ann.task_key, keys) in out:
            raise UsageError(
                f"{fmt} holds one set of boxes per image, but task {ann.task_key!r} has "
                f"annotations by {out[ann.task_key].annotator!r} and {ann.annotator!r}",
                hint="export a consensus, or one annotator's labels",
            )
        out[ann.task_key] = ann
    return out


def _relative_name(key: str) -> str:
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise UsageError(
            f"task key {key!r} cannot be a file name inside the export",
            hint="file tasks are keyed by their relative path",
        )
    return path.as_posix()


def _meta_size(task: TaskData) -> tuple[int, int] | None:
    width, height = task.meta.get("width"), task.meta.get("height")
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    return None


def _task_size(task: TaskData, image: Path | None) -> tuple[int, int]:
    size = _meta_size(task)
    if size is not None:
        return size
    if image is not None:
        return _image_file_size(image)
    raise UsageError(
        f"task {task.key!r} has no width/height in its meta",
        hint="record the image size, or pass image_source so the image can be measured",
    )


def _image_file_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist", hint="check the images folder") from None
    except (OSError, UnidentifiedImageError) as e:
        raise InputDataError(f"{path.name}: cannot be read as an image: {e}", hint="") from e


def _copy_image(src: Path, dest: Path, task: TaskData) -> None:
    if not src.is_file():
        raise NotFoundError(
            f"the image of task {task.key!r} is not at {src}", hint="check image_source"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist", hint="check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputDataError(f"{path.name}: cannot be read as UTF-8 text: {e}", hint="") from e


def _load_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputDataError(
            f"{path.name} is not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}",
            hint="export the file again; it may be truncated",
        ) from None


__all__ = [
    "IMAGE_SUFFIXES",
    "LS_TYPES",
    "ImageSizes",
    "ImageSource",
    "from_label_studio",
    "read_coco",
    "read_label_studio",
    "read_table",
    "read_yolo",
    "to_label_studio",
    "write_coco",
    "write_table",
    "write_yolo",
]
