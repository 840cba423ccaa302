"""Label Studio JSON (Export → JSON): :func:`from_label_studio` reads a parsed task list,
:func:`read_label_studio` a file, :func:`to_label_studio` writes a task list.

Whatever modelcycle does not model (ids, ``completed_by`` in its raw form, result ids,
other keys) is kept in ``meta`` and written back, so exporting an unchanged import gives
the same JSON. Results of other controls (a second ``<Choices>``, relations, text areas)
are kept as they are, not imported. Cancelled (skipped) annotations, and annotations or
predictions with no result for the schema's control when a value is required
(classification, number), are not imported either: they are kept in the task's
``meta["ls_kept"]`` and written back. Rotated boxes are rejected. ``completed_by``
becomes the annotator name: a string as is, ``{"email": e}`` as ``e``, a user id ``n``
as ``user-n``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.labeling.formats._common import (
    _from_iso,
    _iso,
    _known,
    _load_json,
    _meta_size,
    _need,
    _need_list,
    _positive_int,
    _type_name,
    _write_text,
)
from modelcycle.labeling.schema import (
    AnnotationData,
    LabelSchema,
    PredictionData,
    ProjectSnapshot,
    TaskData,
)

ImageSizes = Callable[[TaskData], tuple[int, int]]  # (width, height) of a task's image
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
        data = _need(raw, "data", where, hint=_LS_HINT)
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
        annotations = _need_list(raw, "annotations", where, default=[], hint=_LS_HINT)
        predictions = _need_list(raw, "predictions", where, default=[], hint=_LS_HINT)
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
                    created_at=_from_iso(a.get("created_at"), f"{aw}: field 'created_at'"),
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
        result = _need_list(item, "result", where, hint=_LS_HINT)
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
    value = _need(r, "value", where, hint=_LS_HINT)
    if not isinstance(value, dict):
        raise InputDataError(
            f"{where}: field 'value' must be an object, got {_type_name(value)}", hint=_LS_HINT
        )
    if schema.kind == "classification":
        return _need(value, "choices", where, "value.choices", hint=_LS_HINT)
    if schema.kind == "number":
        return _need(value, "number", where, "value.number", hint=_LS_HINT)
    if schema.kind == "spans":
        span = {
            "start": _need(value, "start", where, "value.start", hint=_LS_HINT),
            "end": _need(value, "end", where, "value.end", hint=_LS_HINT),
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
    names = _need(value, key, where, f"value.{key}", hint=_LS_HINT)
    if not isinstance(names, list) or len(names) != 1:
        got = f"{len(names)} labels" if isinstance(names, list) else _type_name(names)
        raise InputDataError(
            f"{where}: field 'value.{key}' must list one label, got {got}",
            hint="modelcycle stores one label per span or box",
        )
    return names[0]


def _ls_number(value: dict[str, Any], key: str, where: str) -> float:
    x = _need(value, key, where, f"value.{key}", hint=_LS_HINT)
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
            _or_none(lambda: _from_iso(created, "")) != ann.created_at
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


def _insert_kept(items: list[Any], kept: Any) -> list[Any]:
    """``items`` with the kept raw objects put back at their original positions."""
    pairs = [p for p in kept if isinstance(p, list | tuple) and len(p) == 2] if kept else []
    for pos, raw in sorted(pairs, key=lambda p: int(p[0])):
        items.insert(min(int(pos), len(items)), copy.deepcopy(raw))
    return items


def write_label_studio(snap: ProjectSnapshot, path: Path) -> Path:
    """Write :func:`to_label_studio` of ``snap`` to ``path`` (replaced atomically)."""
    _write_text(path, json.dumps(to_label_studio(snap)))
    return path


__all__ = [
    "LS_TYPES",
    "ImageSizes",
    "from_label_studio",
    "read_label_studio",
    "to_label_studio",
    "write_label_studio",
]
