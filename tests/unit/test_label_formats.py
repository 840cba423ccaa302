"""Import and export formats for labeling projects: Label Studio, COCO, YOLO, CSV/JSONL."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.labeling.formats import (
    from_label_studio,
    read_coco,
    read_label_studio,
    read_table,
    read_yolo,
    to_label_studio,
    write_coco,
    write_table,
    write_yolo,
)
from modelcycle.labeling.schema import (
    AnnotationData,
    LabelSchema,
    PredictionData,
    ProjectSnapshot,
    TaskData,
)

# ------------------------------------------------------------------ comparison helper


def assert_same(got: Any, want: Any, path: str = "$") -> None:
    """Equal after JSON normalization: floats within 1e-9, everything else exact."""
    got, want = json.loads(json.dumps(got)), json.loads(json.dumps(want))
    _same(got, want, path)


def _same(got: Any, want: Any, path: str) -> None:
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, int | float) and isinstance(want, int | float), path
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), f"{path}: {got} != {want}"
    elif isinstance(want, dict):
        assert isinstance(got, dict), path
        assert sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            _same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{path}[{i}]")
    else:
        assert type(got) is type(want) and got == want, f"{path}: {got!r} != {want!r}"


# ------------------------------------------------------------- Label Studio fixtures

USER_1 = {"id": 1, "first_name": "Ana", "last_name": "Silva", "email": "ana@example.com"}


def _ls_task_extras(task_id: int) -> dict[str, Any]:
    return {
        "meta": {},
        "created_at": "2024-05-02T08:11:20.112233Z",
        "updated_at": "2024-05-03T09:00:01.000001Z",
        "inner_id": task_id,
        "total_annotations": 1,
        "cancelled_annotations": 0,
        "total_predictions": 1,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 4,
        "updated_by": 1,
        "file_upload": "a1b2c3d4-reviews.json",
        "drafts": [],
        "comment_authors": [],
    }


def _ls_annotation(
    ann_id: int, completed_by: Any, result: list[Any], **extra: Any
) -> dict[str, Any]:
    return {
        "id": ann_id,
        "completed_by": completed_by,
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2024-05-02T10:15:31.409137Z",
        "updated_at": "2024-05-02T10:15:31.409164Z",
        "draft_created_at": None,
        "lead_time": 12.345,
        "prediction": {},
        "result_count": 0,
        "unique_id": f"0c6b2f1e-8f7a-4a64-9a4b-{ann_id:012d}",
        "import_id": None,
        "last_action": None,
        "task": 1,
        "project": 4,
        "updated_by": 1,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
        **extra,
    }


def _choices(rid: str, *choices: str, **extra: Any) -> dict[str, Any]:
    return {
        "value": {"choices": list(choices)},
        "id": rid,
        "from_name": "sentiment",
        "to_name": "text",
        "type": "choices",
        "origin": "manual",
        **extra,
    }


CLASSIFICATION_EXPORT: list[dict[str, Any]] = [
    {
        "id": 17,
        "annotations": [
            _ls_annotation(
                31,
                1,
                [_choices("Xy1_aB3cDe", "Positive", origin="prediction")],
                parent_prediction=9,
            ),
            _ls_annotation(32, USER_1, [_choices("Qw2_zZ9kLm", "Negative")]),
            # skipped: kept as it is, not imported
            _ls_annotation(33, 3, [], was_cancelled=True),
        ],
        "predictions": [
            {
                "id": 9,
                "model_version": "sentiment-bert-v2",
                "created_ago": "1 day, 2 hours",
                "result": [_choices("Xy1_aB3cDe", "Positive", origin="prediction")],
                "score": 0.87,
                "cluster": None,
                "neighbors": None,
                "mislabeling": 0.0,
                "created_at": "2024-05-01T07:00:00.000000Z",
                "updated_at": "2024-05-01T07:00:00.000000Z",
                "model": None,
                "model_run": None,
                "task": 17,
                "project": 4,
            }
        ],
        "data": {"text": "Battery lasts all day, love it", "source": "store"},
        **_ls_task_extras(17),
    },
    {
        "id": 18,
        "annotations": [
            _ls_annotation(
                34,
                "reviewer@example.com",
                [
                    _choices("Po9_iU8yTr", "Neutral"),
                    # a second control, not the schema's: kept as it is
                    {
                        "value": {"text": ["arrived late"]},
                        "id": "Tx7_aaBBcc",
                        "from_name": "comment",
                        "to_name": "text",
                        "type": "textarea",
                        "origin": "manual",
                    },
                ],
            )
        ],
        "predictions": [],
        "data": {"text": "It is a phone.", "source": "survey"},
        **_ls_task_extras(18),
    },
    {
        "id": 19,
        "annotations": [],
        "predictions": [],
        "data": {"text": "Not yet labeled", "source": "survey"},
        **_ls_task_extras(19),
    },
]

SENTIMENT = LabelSchema(
    kind="classification",
    labels=("Positive", "Negative", "Neutral"),
    field="text",
    name="sentiment",
)

NER_TEXT = "Angela Merkel visited Paris in May."


def _span(rid: str, start: int, end: int, label: str) -> dict[str, Any]:
    return {
        "value": {"start": start, "end": end, "text": NER_TEXT[start:end], "labels": [label]},
        "id": rid,
        "from_name": "ner",
        "to_name": "text",
        "type": "labels",
        "origin": "manual",
    }


NER_EXPORT: list[dict[str, Any]] = [
    {
        "id": 201,
        "annotations": [
            _ls_annotation(
                501,
                2,
                [
                    _span("a1B2c3D4e5", 0, 13, "PER"),
                    _span("f6G7h8I9j0", 22, 27, "LOC"),
                    {
                        "from_id": "a1B2c3D4e5",
                        "to_id": "f6G7h8I9j0",
                        "type": "relation",
                        "direction": "right",
                        "labels": [],
                    },
                    _span("k1L2m3N4o5", 31, 34, "DATE"),
                ],
            )
        ],
        "predictions": [],
        "data": {"text": NER_TEXT},
        **_ls_task_extras(201),
    },
    {
        "id": 202,
        "annotations": [_ls_annotation(502, 2, [])],  # read, nothing to mark
        "predictions": [],
        "data": {"text": "nothing here"},
        **_ls_task_extras(202),
    },
]


def _rect(
    rid: str, x: float, y: float, w: float, h: float, label: str, **extra: Any
) -> dict[str, Any]:
    return {
        "original_width": 640,
        "original_height": 427,
        "image_rotation": 0,
        "value": {
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "rotation": 0,
            "rectanglelabels": [label],
        },
        "id": rid,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
        **extra,
    }


BOXES_EXPORT: list[dict[str, Any]] = [
    {
        "id": 301,
        "annotations": [
            _ls_annotation(
                601,
                1,
                [
                    _rect(
                        "bX1", 12.34567891234, 20.0, 33.333333333333336, 41.21779859484778, "cat"
                    ),
                    _rect("bX2", 55.5, 3.1, 44.5, 10.772833723653395, "dog"),
                ],
            )
        ],
        "predictions": [
            {
                "id": 77,
                "model_version": "yolo-v8n",
                "score": 0.5,
                "result": [
                    _rect("pZ1", 12.0, 19.5, 34.0, 42.0, "cat", score=0.91, origin="prediction")
                ],
            }
        ],
        "data": {"image": "/data/upload/4/0f3e2d1c-cat_and_dog.jpg"},
        **_ls_task_extras(301),
    }
]
ANIMALS = LabelSchema(kind="boxes", labels=("cat", "dog"))

# The shape of Label Studio's documented example: string annotation id, predictions
# without ids, no parent_prediction key.
DOCS_EXPORT: list[dict[str, Any]] = [
    {
        "id": 1,
        "created_at": "2021-03-09T21:52:49.513742Z",
        "updated_at": "2021-03-09T22:16:08.746926Z",
        "project": 83,
        "data": {"image": "https://example.com/opensource/label-studio/1.jpg"},
        "annotations": [
            {
                "id": "1001",
                "result": [
                    {
                        "from_name": "tag",
                        "id": "Dx_aB91ISN",
                        "source": "$image",
                        "to_name": "img",
                        "type": "rectanglelabels",
                        "original_width": 1000,
                        "original_height": 563,
                        "value": {
                            "height": 10.458911419423693,
                            "rectanglelabels": ["Moonwalker"],
                            "rotation": 0,
                            "width": 12.4,
                            "x": 50.8,
                            "y": 5.869797225186766,
                        },
                    }
                ],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": "2021-03-09T22:16:08.728353Z",
                "updated_at": "2021-03-09T22:16:08.728378Z",
                "lead_time": 4.288,
                "result_count": 0,
                "task": 1,
                "completed_by": 10,
            }
        ],
        "predictions": [
            {
                "created_ago": "3 hours",
                "model_version": "model 1",
                "result": [
                    {
                        "from_name": "tag",
                        "id": "t5sp3TyXPo",
                        "source": "$image",
                        "to_name": "img",
                        "type": "rectanglelabels",
                        "original_width": 1000,
                        "original_height": 563,
                        "value": {
                            "height": 11.612284069097889,
                            "rectanglelabels": ["Moonwalker"],
                            "rotation": 0,
                            "width": 39.6,
                            "x": 13.2,
                            "y": 34.702495201535505,
                        },
                    }
                ],
            }
        ],
    }
]


# ------------------------------------------------------------------ Label Studio tests


@pytest.mark.parametrize(
    ("export", "schema"),
    [
        (CLASSIFICATION_EXPORT, SENTIMENT),
        (CLASSIFICATION_EXPORT, None),
        (NER_EXPORT, None),
        (BOXES_EXPORT, ANIMALS),
        (BOXES_EXPORT, None),
        (DOCS_EXPORT, None),
    ],
    ids=[
        "choices",
        "choices-inferred",
        "labels-inferred",
        "rectangles",
        "rectangles-inferred",
        "docs-example",
    ],
)
def test_label_studio_round_trip(export: list[dict[str, Any]], schema: LabelSchema | None) -> None:
    original = copy.deepcopy(export)
    snap = from_label_studio(export, schema, "export.json")
    assert export == original  # the input is not touched
    assert_same(to_label_studio(snap), export)


def test_label_studio_classification_content() -> None:
    snap = from_label_studio(CLASSIFICATION_EXPORT, None, "export.json")
    assert snap.schema == LabelSchema(
        kind="classification",
        labels=("Positive", "Negative", "Neutral"),
        field="text",
        name="sentiment",
    )
    assert [t.key for t in snap.tasks] == ["17", "18", "19"]
    assert snap.tasks[0].data == {"text": "Battery lasts all day, love it", "source": "store"}
    assert [(a.task_key, a.annotator, a.value) for a in snap.annotations] == [
        ("17", "user-1", "Positive"),
        ("17", "ana@example.com", "Negative"),
        ("18", "reviewer@example.com", "Neutral"),
    ]
    first = snap.annotations[0]
    assert first.created_at == dt.datetime(2024, 5, 2, 10, 15, 31, 409137, tzinfo=dt.UTC)
    assert first.prediction == 0 and first.meta["lead_time"] == 12.345
    assert [(p.task_key, p.model, p.value, p.score) for p in snap.predictions] == [
        ("17", "sentiment-bert-v2", "Positive", 0.87)
    ]


def test_label_studio_spans_and_boxes_content() -> None:
    ner = from_label_studio(NER_EXPORT, None, "ner.json")
    assert ner.schema.kind == "spans" and ner.schema.labels == ("PER", "LOC", "DATE")
    assert ner.schema.field == "text" and ner.schema.name == "ner"
    assert [a.value for a in ner.annotations] == [
        [
            {"start": 0, "end": 13, "label": "PER", "text": "Angela Merkel"},
            {"start": 22, "end": 27, "label": "LOC", "text": "Paris"},
            {"start": 31, "end": 34, "label": "DATE", "text": "May"},
        ],
        [],
    ]

    boxes = from_label_studio(BOXES_EXPORT, ANIMALS, "boxes.json")
    task = boxes.tasks[0]
    assert task.meta["width"] == 640 and task.meta["height"] == 427
    dog = boxes.annotations[0].value[1]
    assert dog["label"] == "dog"
    assert dog["x"] == pytest.approx(355.2) and dog["y"] == pytest.approx(13.237)
    assert dog["w"] == pytest.approx(284.8) and dog["h"] == pytest.approx(46.0)


def test_label_studio_multi_label_keeps_choice_order() -> None:
    export = copy.deepcopy(CLASSIFICATION_EXPORT[:1])
    export[0]["annotations"][1]["result"][0]["value"]["choices"] = ["Positive", "Negative"]
    schema = LabelSchema(
        kind="classification",
        labels=SENTIMENT.labels,
        field="text",
        name="sentiment",
        multi_label=True,
    )
    snap = from_label_studio(export, schema, "export.json")
    assert snap.annotations[1].value == ["Negative", "Positive"]  # normalized: sorted
    assert_same(to_label_studio(snap), export)


def _strip_ls_meta(snap: ProjectSnapshot) -> ProjectSnapshot:
    """The snapshot as if it had been built by modelcycle: only width/height remain."""
    tasks = [
        TaskData(t.key, t.data, {k: v for k, v in t.meta.items() if k in ("width", "height")})
        for t in snap.tasks
    ]
    anns = [
        AnnotationData(a.task_key, a.annotator, a.value, a.created_at) for a in snap.annotations
    ]
    preds = [PredictionData(p.task_key, p.model, p.value, p.score) for p in snap.predictions]
    return ProjectSnapshot(snap.schema, tasks, anns, preds)


def test_label_studio_fresh_export_converts_boxes_back_to_percent() -> None:
    snap = _strip_ls_meta(from_label_studio(BOXES_EXPORT, ANIMALS, "boxes.json"))
    out = to_label_studio(snap)
    assert out[0]["data"] == {**BOXES_EXPORT[0]["data"], "_mc_key": "301"}
    result = out[0]["annotations"][0]["result"]
    want = BOXES_EXPORT[0]["annotations"][0]["result"]
    assert [r["type"] for r in result] == ["rectanglelabels", "rectanglelabels"]
    assert [(r["original_width"], r["original_height"]) for r in result] == [(640, 427)] * 2
    for got, expected in zip(result, want, strict=True):
        assert_same(got["value"], expected["value"])
    assert out[0]["predictions"][0]["model_version"] == "yolo-v8n"
    assert out[0]["predictions"][0]["score"] == 0.5
    assert out[0]["annotations"][0]["completed_by"] == "user-1"
    assert out[0]["annotations"][0]["created_at"] == "2024-05-02T10:15:31.409137Z"


def test_label_studio_fresh_export_reimports_to_the_same_snapshot() -> None:
    schema = LabelSchema(kind="spans", labels=("PER", "LOC"), field="body", name="ner")
    snap = ProjectSnapshot(
        schema,
        tasks=[TaskData("0", {"body": "Ada in Rome"}), TaskData("1", {"body": "Bob"})],
        annotations=[
            AnnotationData("0", "ada", [{"start": 0, "end": 3, "label": "PER"}], prediction=0),
            AnnotationData("1", "ada", []),
        ],
        predictions=[PredictionData("0", "ner@3", [{"start": 7, "end": 11, "label": "LOC"}], 0.4)],
    )
    out = to_label_studio(snap)
    assert out[0]["data"] == {"body": "Ada in Rome", "_mc_key": "0"}
    assert out[0]["annotations"][0]["result"][0]["value"] == {
        "start": 0,
        "end": 3,
        "text": "Ada",
        "labels": ["PER"],
    }
    assert out[0]["annotations"][0]["parent_prediction"] == out[0]["predictions"][0]["id"]
    back = from_label_studio(json.loads(json.dumps(out)), schema, "again.json")
    assert [(t.key, t.data) for t in back.tasks] == [(t.key, t.data) for t in snap.tasks]
    assert [(a.task_key, a.annotator, a.prediction) for a in back.annotations] == [
        ("0", "ada", 0),
        ("1", "ada", None),
    ]
    assert back.annotations[0].value == [{"start": 0, "end": 3, "label": "PER", "text": "Ada"}]
    assert [(p.model, p.score, p.value) for p in back.predictions] == [
        ("ner@3", 0.4, [{"start": 7, "end": 11, "label": "LOC", "text": "Rome"}])
    ]


def test_label_studio_edited_value_is_written_fresh_keeping_ids() -> None:
    snap = from_label_studio(CLASSIFICATION_EXPORT, SENTIMENT, "export.json")
    snap.annotations[1].value = "Neutral"
    out = to_label_studio(snap)
    result = out[0]["annotations"][1]["result"]
    assert result == [{**_choices("Qw2_zZ9kLm", "Neutral")}]
    assert out[0]["annotations"][1]["completed_by"] == USER_1  # still the same person


def test_label_studio_not_a_list() -> None:
    with pytest.raises(
        InputDataError, match=re.escape("export.json: a Label Studio export is a list")
    ):
        from_label_studio("tasks", SENTIMENT, "export.json")


def test_label_studio_task_without_data() -> None:
    export = copy.deepcopy(CLASSIFICATION_EXPORT)
    del export[0]["data"]
    with pytest.raises(InputDataError) as err:
        from_label_studio(export, SENTIMENT, "tasks.json")
    assert err.value.message == "tasks.json: task 17: field 'data' missing"


def test_label_studio_missing_value_field_names_task_annotation_and_result() -> None:
    export = copy.deepcopy(CLASSIFICATION_EXPORT)
    export[1]["annotations"][0]["result"].insert(0, _choices("r0", "Positive"))
    del export[1]["annotations"][0]["result"][0]["value"]["choices"]
    export[1]["annotations"][0]["result"].insert(0, export[1]["annotations"][0]["result"].pop(1))
    with pytest.raises(InputDataError) as err:
        from_label_studio(export, SENTIMENT, "tasks.json")
    assert err.value.message == (
        "tasks.json: task 18, annotation 0, result 1: field 'value.choices' missing"
    )


def test_label_studio_unknown_label_names_task_and_label() -> None:
    export = copy.deepcopy(CLASSIFICATION_EXPORT)
    export[1]["annotations"][0]["result"][0]["value"]["choices"] = ["Angry"]
    with pytest.raises(InputDataError) as err:
        from_label_studio(export, SENTIMENT, "tasks.json")
    assert "task 18" in err.value.message and "'Angry'" in err.value.message
    assert "not in the schema" in err.value.message


def test_label_studio_box_outside_image() -> None:
    export = copy.deepcopy(BOXES_EXPORT)
    export[0]["annotations"][0]["result"][1]["value"]["width"] = 60.0  # 55.5 + 60 > 100
    with pytest.raises(InputDataError) as err:
        from_label_studio(export, ANIMALS, "boxes.json")
    assert "task 301, annotation 0, box 1" in err.value.message
    assert "outside the 640x427 image" in err.value.message


def test_label_studio_rotated_box_and_missing_size() -> None:
    rotated = copy.deepcopy(BOXES_EXPORT)
    rotated[0]["annotations"][0]["result"][0]["value"]["rotation"] = 15
    with pytest.raises(
        InputDataError, match="task 301, annotation 0, result 0: the box is rotated"
    ):
        from_label_studio(rotated, ANIMALS, "boxes.json")

    unsized = copy.deepcopy(BOXES_EXPORT)
    for item in (*unsized[0]["annotations"], *unsized[0]["predictions"]):
        for r in item["result"]:
            del r["original_width"], r["original_height"]
    with pytest.raises(InputDataError, match="field 'original_width' missing"):
        from_label_studio(unsized, ANIMALS, "boxes.json")
    snap = from_label_studio(unsized, ANIMALS, "boxes.json", image_sizes=lambda t: (640, 427))
    assert snap.tasks[0].meta["width"] == 640


def test_label_studio_several_controls_need_a_schema() -> None:
    export = copy.deepcopy(CLASSIFICATION_EXPORT)
    export[1]["annotations"][0]["result"].append({**_choices("c9", "yes"), "from_name": "sarcasm"})
    with pytest.raises(InputDataError, match="several controls \\(sentiment, sarcasm\\)"):
        from_label_studio(export, None, "export.json")
    snap = from_label_studio(export, SENTIMENT, "export.json")  # the other one is kept
    assert_same(to_label_studio(snap), export)


def test_label_studio_wrong_type_for_the_schema() -> None:
    with pytest.raises(InputDataError, match="no 'rectanglelabels' results"):
        from_label_studio(CLASSIFICATION_EXPORT, ANIMALS, "export.json")


def test_read_label_studio_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text('[{"id": 1,\n "data": }]')
    with pytest.raises(InputDataError, match=re.escape("export.json is not valid JSON at line 2")):
        read_label_studio(path)
    path.write_text(json.dumps(CLASSIFICATION_EXPORT))
    assert len(read_label_studio(path, SENTIMENT).annotations) == 3


# ------------------------------------------------------------------ COCO and YOLO


def _images(folder: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, Path]:
    paths = {}
    for i, (name, size) in enumerate(sizes.items()):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (i * 40, 100, 200)).save(path)
        paths[name] = path
    return paths


def _boxes_snapshot(tmp_path: Path) -> tuple[ProjectSnapshot, dict[str, Path]]:
    sizes = {"street/a.png": (64, 48), "b.png": (100, 37), "c.png": (33, 33), "d.png": (20, 10)}
    paths = _images(tmp_path / "src", sizes)
    tasks = [
        TaskData(name, {"image": name}, {"width": w, "height": h}) for name, (w, h) in sizes.items()
    ]
    tasks[2].meta = {}  # measured from the image file
    snap = ProjectSnapshot(
        ANIMALS,
        tasks=tasks,
        annotations=[
            AnnotationData(
                "street/a.png",
                "ana",
                [
                    {"label": "cat", "x": 1.5, "y": 2.25, "w": 30.125, "h": 20.0},
                    {"label": "dog", "x": 0.0, "y": 0.0, "w": 64.0, "h": 48.0},
                ],
            ),
            AnnotationData(
                "b.png", "bo", [{"label": "dog", "x": 99.0 / 7, "y": 1 / 3, "w": 50.0, "h": 36.0}]
            ),
            AnnotationData("c.png", "ana", []),  # a negative
            # d.png has no annotation: not exported
        ],
    )
    return snap, paths


def test_coco_round_trip(tmp_path: Path) -> None:
    snap, paths = _boxes_snapshot(tmp_path)
    out = write_coco(snap, tmp_path / "coco", lambda t: paths[t.key])
    assert out == tmp_path / "coco" / "annotations.json"
    doc = json.loads(out.read_text())
    assert doc["categories"] == [
        {"id": 1, "name": "cat", "supercategory": "none"},
        {"id": 2, "name": "dog", "supercategory": "none"},
    ]
    assert [i["file_name"] for i in doc["images"]] == ["street/a.png", "b.png", "c.png"]
    assert doc["images"][2] == {"id": 3, "file_name": "c.png", "width": 33, "height": 33}
    first = doc["annotations"][0]
    assert first["bbox"] == [1.5, 2.25, 30.125, 20.0] and first["area"] == 30.125 * 20.0
    assert first["category_id"] == 1 and first["image_id"] == 1 and first["iscrowd"] == 0
    for name in ("street/a.png", "b.png", "c.png"):
        assert (tmp_path / "coco" / "images" / name).read_bytes() == paths[name].read_bytes()
    assert not (tmp_path / "coco" / "images" / "d.png").exists()

    back = read_coco(tmp_path / "coco", None)
    assert back.schema == ANIMALS
    assert [(t.key, t.data, t.meta) for t in back.tasks] == [
        ("street/a.png", {"image": "street/a.png"}, {"width": 64, "height": 48}),
        ("b.png", {"image": "b.png"}, {"width": 100, "height": 37}),
        ("c.png", {"image": "c.png"}, {"width": 33, "height": 33}),
    ]
    # a negative has no COCO annotation to carry its annotator
    assert [(a.task_key, a.annotator, a.value) for a in back.annotations] == [
        (a.task_key, a.annotator, a.value) for a in snap.annotations[:2]
    ] + [("c.png", "coco-import", [])]


def _coco_doc() -> dict[str, Any]:
    return {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 100, "height": 50}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 20], "iscrowd": 0},
            {"id": 6, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


def test_read_coco_skips_crowd_regions(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(_coco_doc()))
    snap = read_coco(path, ANIMALS)
    assert snap.annotations == [
        AnnotationData(
            "x.jpg", "coco-import", [{"label": "dog", "x": 10.0, "y": 10.0, "w": 20.0, "h": 20.0}]
        )
    ]
    assert snap.meta["skipped_crowd"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["annotations"][0].update(category_id=9),
            "instances.json: annotation id 5: category_id 9 is not among the categories (1, 2)",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
            "instances.json: annotation id 5: field 'bbox' must be 4 numbers",
        ),
        (
            lambda d: d["annotations"][0].update(image_id=4),
            "instances.json: annotation id 5: image_id 4 is not among the images",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[90, 10, 20, 20]),
            "lies outside the 100x50 image",
        ),
        (
            lambda d: d["images"][0].pop("width"),
            "instances.json: image 1 (x.jpg): field 'width' missing",
        ),
        (lambda d: d.pop("images"), "instances.json: field 'images' missing"),
    ],
)
def test_read_coco_errors(tmp_path: Path, change: Any, message: str) -> None:
    doc = _coco_doc()
    change(doc)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputDataError) as err:
        read_coco(path, None)
    assert message in err.value.message


def test_write_coco_needs_one_annotation_per_task(tmp_path: Path) -> None:
    snap, _ = _boxes_snapshot(tmp_path)
    snap.annotations.append(AnnotationData("b.png", "cy", []))
    with pytest.raises(
        UsageError, match=re.escape("task 'b.png' has annotations by 'bo' and 'cy'")
    ):
        write_coco(snap, tmp_path / "coco", None)


def test_yolo_round_trip(tmp_path: Path) -> None:
    snap, paths = _boxes_snapshot(tmp_path)
    out = write_yolo(snap, tmp_path / "yolo", lambda t: paths[t.key])
    folder = tmp_path / "yolo"
    assert out == folder / "data.yaml"
    config = out.read_text()
    assert "names:\n  0: cat\n  1: dog\n" in config and "train: images\n" in config
    assert (folder / "labels" / "street" / "a.txt").read_text().splitlines() == [
        "0 0.2587890625 0.2552083333 0.470703125 0.4166666667",
        "1 0.5 0.5 1 1",
    ]
    assert (folder / "labels" / "c.txt").read_text() == ""
    assert not (folder / "labels" / "d.txt").exists()
    assert (folder / "images" / "b.png").read_bytes() == paths["b.png"].read_bytes()

    back = read_yolo(folder, None)
    assert back.schema == ANIMALS
    want = {a.task_key: a.value for a in snap.annotations}
    assert sorted(t.key for t in back.tasks) == sorted(want)
    for task in back.tasks:
        with Image.open(paths[task.key]) as image:
            w, h = image.size
        assert (task.meta["width"], task.meta["height"]) == (w, h)
    for ann in back.annotations:
        assert ann.annotator == "yolo-import"
        expected = want[ann.task_key]
        assert [b["label"] for b in ann.value] == [b["label"] for b in expected]
        for got, box in zip(ann.value, expected, strict=True):
            for k in ("x", "y", "w", "h"):
                assert abs(got[k] - box[k]) < 0.01, (ann.task_key, k)


def test_read_yolo_with_given_sizes_and_no_images(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "p1.txt").write_text("1 0.5 0.5 0.2 0.4\n\n")
    (tmp_path / "data.yaml").write_text("names: [cat, dog]\n")
    snap = read_yolo(tmp_path, ANIMALS, image_sizes=lambda key: (200, 100))
    assert [t.key for t in snap.tasks] == ["p1"]
    box = snap.annotations[0].value[0]
    assert box["label"] == "dog"
    assert (box["x"], box["y"], box["w"], box["h"]) == pytest.approx((80, 30, 40, 40))
    with pytest.raises(InputDataError, match=re.escape("labels/p1.txt has no image")):
        read_yolo(tmp_path, ANIMALS)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", "labels/a.txt, line 2: expected 5 fields (class cx cy w h), got 4"),
        ("2 0.5 0.5 0.2 0.2", "labels/a.txt, line 2: class 2 is not in data.yaml's names (0-1)"),
        ("1 0.5 1.2 0.2 0.2", "labels/a.txt, line 2: cy 1.2 is outside [0, 1]"),
        ("x 0.5 0.5 0.2 0.2", "labels/a.txt, line 2: 'x 0.5 0.5 0.2 0.2' is not a class index"),
    ],
)
def test_read_yolo_errors(tmp_path: Path, line: str, message: str) -> None:
    _images(tmp_path / "images", {"a.png": (10, 10)})
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(f"0 0.5 0.5 0.5 0.5\n{line}\n")
    (tmp_path / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    with pytest.raises(InputDataError) as err:
        read_yolo(tmp_path, None)
    assert message in err.value.message


# ------------------------------------------------------------------------- tables

TOPICS = LabelSchema(
    kind="classification", labels=("sport", "politics", "tech"), field="title", multi_label=True
)


def _table_snapshot() -> ProjectSnapshot:
    when = dt.datetime(2024, 6, 1, 12, 30, tzinfo=dt.UTC)
    return ProjectSnapshot(
        TOPICS,
        tasks=[
            TaskData("0", {"title": "Match report, with a comma", "label": "old"}),
            TaskData("1", {"title": 'Vote "tonight"', "label": "older"}),
            TaskData("2", {"title": "Unlabeled", "label": ""}),
        ],
        annotations=[
            AnnotationData("0", "ana", ["politics", "sport"], created_at=when),
            AnnotationData("0", "bo", ["sport"]),
            AnnotationData("1", "ana", []),
        ],
        predictions=[PredictionData("1", "topics@2", ["politics"], 0.75)],
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_table_round_trip(tmp_path: Path, suffix: str) -> None:
    snap = _table_snapshot()
    path = write_table(snap, tmp_path / f"labels{suffix}")
    back = read_table(path, TOPICS)
    assert [(t.key, t.data) for t in back.tasks] == [(t.key, t.data) for t in snap.tasks]
    assert back.annotations == snap.annotations
    assert back.predictions == snap.predictions


def test_table_csv_layout(tmp_path: Path) -> None:
    path = write_table(_table_snapshot(), tmp_path / "labels.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "key,kind,title,data.label,annotator,label,created_at,model,score"
    assert lines[1] == (
        '0,annotation,"Match report, with a comma",old,ana,politics|sport,'
        "2024-06-01T12:30:00.000000Z,,"
    )
    assert lines[4] == '1,prediction,"Vote ""tonight""",older,,politics,,topics@2,0.75'
    assert lines[5] == "2,task,Unlabeled,,,,,,"


def test_table_number_jsonl_keeps_types(tmp_path: Path) -> None:
    schema = LabelSchema(kind="number", minimum=0, maximum=5, name="stars")
    snap = ProjectSnapshot(
        schema,
        tasks=[TaskData("a", {"n": 3, "tags": ["x"]}), TaskData("b", {"n": None})],
        annotations=[AnnotationData("a", "ana", 4.5), AnnotationData("b", "ana", 0.0)],
    )
    path = write_table(snap, tmp_path / "stars.jsonl")
    assert json.loads(path.read_text().splitlines()[0]) == {
        "key": "a",
        "n": 3,
        "tags": ["x"],
        "annotator": "ana",
        "stars": 4.5,
        "created_at": None,
    }
    back = read_table(path, schema)
    assert [(t.key, t.data) for t in back.tasks] == [(t.key, t.data) for t in snap.tasks]
    assert back.annotations == snap.annotations


def test_read_table_user_file_and_bad_row(tmp_path: Path) -> None:
    schema = LabelSchema(kind="classification", labels=("spam", "ham"), field="text")
    path = tmp_path / "labels.csv"
    path.write_text("key,text,label\nm1,Win money,spam\nm2,Lunch?,ham\n")
    snap = read_table(path, schema)
    assert [(a.task_key, a.annotator, a.value) for a in snap.annotations] == [
        ("m1", "import", "spam"),
        ("m2", "import", "ham"),
    ]
    assert snap.tasks[0].data == {"text": "Win money"}

    path.write_text("key,text,label\nm1,Win money,spam\nm2,Lunch?,hma\n")
    with pytest.raises(InputDataError) as err:
        read_table(path, schema)
    assert err.value.message.startswith("labels.csv, line 3: label 'hma' is not in the schema")

    path.write_text("key,text\nm1,Win money\n")
    with pytest.raises(InputDataError, match=re.escape("labels.csv: no 'label' column")):
        read_table(path, schema)


def test_write_table_refuses_boxes(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not boxes"):
        write_table(ProjectSnapshot(ANIMALS), tmp_path / "x.csv")
