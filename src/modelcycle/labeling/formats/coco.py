"""COCO detection JSON: :func:`read_coco` and :func:`write_coco`.

One set of boxes per image: the snapshot given to :func:`write_coco` holds at most one
annotation per task (a consensus, or one annotator's), and only tasks that have one are
written; an image listed without boxes is a negative. :func:`read_coco` gives every image
an annotation (empty for a negative) by ``coco-import``; an ``annotator`` field on the
annotation wins. Crowd regions (``iscrowd: 1``) are left out and counted in
``meta["skipped_crowd"]``. Images are copied, never hard-linked: an exported file edited
in place must not change a stored blob.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelcycle.core.errors import InputDataError
from modelcycle.labeling.formats._common import (
    ImageSource,
    _copy_image,
    _load_json,
    _need,
    _need_list,
    _one_annotation_per_task,
    _positive_int,
    _relative_name,
    _require_kind,
    _task_size,
    _type_name,
    _write_text,
)
from modelcycle.labeling.schema import (
    AnnotationData,
    LabelSchema,
    ProjectSnapshot,
    TaskData,
)

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


def _need_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputDataError(f"{where}: must be an object, got {_type_name(value)}", hint="")
    return value


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputDataError(f"{where} must be a whole number, got {value!r}", hint="")
    return value


__all__ = ["read_coco", "write_coco"]
