"""The labeling pages of the web UI under a real uvicorn: project progress and agreement,
the annotation screen as a plain HTML form (no JavaScript), task images from the blob
store, and the role and CSRF checks on recording a label."""

from __future__ import annotations

import html
import io
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import uvicorn
from integration_support import write_csv

import modelcycle as mc
from modelcycle.server import create_app

SENTIMENT = {
    "kind": "classification",
    "labels": ["positive", "negative", "neutral"],
    "field": "text",
}
BOXES = {"kind": "boxes", "labels": ["cat", "dog"]}
TEXTS = [
    "Loved it, works great",
    "Broke after a day",
    "It is a phone",
    "Best purchase this year",
    "Terrible battery",
    "Arrived on Tuesday",
    "Great screen, great price",
    "Awful support, never again",
    "Comes in a box",
    "Fantastic, would buy again",
    "Worst headphones ever",
    "Blue, as described",
]
TRUTH = ["positive", "negative", "neutral"] * 4
IMAGE_SIZES = [(40, 30), (32, 32), (24, 48)]


@dataclass
class Served:
    ws: mc.Workspace
    client: httpx.Client
    images: dict[str, bytes]


def _png(size: tuple[int, int], shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, 90)).save(out, format="PNG")
    return out.getvalue()


def _keyword_model(rows: pl.DataFrame) -> list[tuple[str, float]]:
    out = []
    for text in rows["text"]:
        words = text.lower()
        if any(w in words for w in ("lov", "great", "best", "fantastic")):
            out.append(("positive", 0.8))
        elif any(w in words for w in ("broke", "terrible", "awful", "worst")):
            out.append(("negative", 0.7))
        else:
            out.append(("neutral", 0.5))
    return out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A workspace with a text classification project (with model suggestions) and a box
    project over three PNG images, served by uvicorn on a free 127.0.0.1 port."""
    ws = mc.Workspace.create(tmp_path / "ws")
    ws.datasets.add(
        "reviews",
        write_csv(tmp_path / "reviews.csv", ["id", "text"], list(enumerate(TEXTS, start=1))),
    )
    ws.labels.create("reviews", "reviews@1", SENTIMENT, annotators=["ana", "ben"])
    ws.labels.assign("reviews", ["ana"])
    ws.labels.predict("reviews", _keyword_model, model_name="keywords@1")

    images = {f"img{i}.png": _png(size, 40 * i) for i, size in enumerate(IMAGE_SIZES)}
    folder = tmp_path / "shapes"
    folder.mkdir()
    for name, data in images.items():
        (folder / name).write_bytes(data)
    ws.datasets.add("shapes", folder)
    ws.labels.create("shapes", "shapes@1", BOXES, annotators=["ana"])
    # Files of another dataset that no task of "shapes" names.
    other = tmp_path / "other"
    other.mkdir()
    (other / "secret.png").write_bytes(_png((8, 8), 7))
    ws.datasets.add("other", other)

    app = create_app(ws.root)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"Accept": "text/html"}
    )
    try:
        yield Served(ws, client, images)
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)
        ws.close()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return html.unescape(found.group(1))


def _task_key(page: str) -> str:
    found = re.search(r'id="task-key" data-task="([^"]*)"', page)
    assert found, "the page shows no task"
    return html.unescape(found.group(1))


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"the form has no {name} field"
    return html.unescape(found.group(1))


def _current(ws: mc.Workspace, project: str) -> list[Any]:
    p = ws.labels.get(project)
    return ws.labels.labels.annotations(p.record.id)


def test_pages_show_projects_the_task_and_its_choices(served: Served) -> None:
    client = served.client
    listing = client.get("/labeling")
    assert listing.status_code == 200
    assert 'data-project="reviews"' in listing.text and 'data-project="shapes"' in listing.text
    assert "reviews@1" in listing.text and "boxes" in listing.text

    page = client.get("/labeling/reviews/annotate", params={"annotator": "ana"})
    assert page.status_code == 200
    text = page.text
    assert _task_key(text) == "0"
    assert 'id="task-text"' in text and TEXTS[0] in text
    for n, label in enumerate(SENTIMENT["labels"], start=1):
        assert f'id="choice-{n}" name="value" value="{label}" data-key="{n}"' in text
    # The model's suggestion is shown, pre-selected and marked; the form remembers it.
    assert 'id="suggestion"' in text and "keywords@1" in text
    assert re.search(r'value="positive" data-key="1" checked', text)
    assert re.search(r'class="choice suggested"[^>]*data-label="positive"', text)
    assert _hidden(text, "prediction") != ""
    # Keys are documented on the page; the script and styles are files (the CSP allows no inline).
    assert 'id="keys"' in text and "<kbd>Enter</kbd>" in text and "<kbd>S</kbd>" in text
    assert '<script src="/static/labeling.js" defer></script>' in text
    assert "<script>" not in text and "style=" not in text
    assert 'id="skip"' in text and 'id="next"' in text and 'id="submit"' in text
    for asset in ("/static/labeling.js", "/static/labeling.css"):
        assert client.get(asset).status_code == 200

    # Without an annotator: a choice of the project's annotators.
    chooser = client.get("/labeling/reviews/annotate")
    assert chooser.status_code == 200
    assert "<option>ana</option>" in chooser.text and "<option>ben</option>" in chooser.text
    # An annotator the project does not have is refused, naming the fix.
    stranger = client.get("/labeling/reviews/annotate", params={"annotator": "mallory"})
    assert stranger.status_code == 404 and "label assign" in stranger.text

    boxes = client.get("/labeling/shapes/annotate", params={"annotator": "ana"})
    assert boxes.status_code == 200
    assert _task_key(boxes.text) == "img0.png"
    assert 'id="task-image" src="/labeling/shapes/tasks/img0.png/image"' in boxes.text
    assert 'id="box-canvas"' in boxes.text and 'width="40" height="30"' in boxes.text
    for field in ("box-label", "box-x", "box-y", "box-w", "box-h"):
        assert f'name="{field}"' in boxes.text
    assert 'data-key="1">' in boxes.text and "cat" in boxes.text


def test_ten_labels_through_the_form_are_recorded(served: Served) -> None:
    ws, client = served.ws, served.client
    page = client.get("/labeling/reviews/annotate", params={"annotator": "ana"})
    posted = []
    for _ in range(10):
        key = _task_key(page.text)
        label = TRUTH[int(key)]
        r = client.post(
            "/labeling/reviews/annotate",
            data={
                "csrf": _csrf(page.text),
                "annotator": "ana",
                "task": key,
                "prediction": _hidden(page.text, "prediction"),
                "value": label,
            },
        )
        assert r.status_code == 303, r.text
        assert r.headers["location"] == f"/labeling/reviews/annotate?annotator=ana&after={key}"
        posted.append((key, label))
        page = client.get(r.headers["location"])
        assert page.status_code == 200
    assert [k for k, _ in posted] == [str(i) for i in range(10)]
    assert _task_key(page.text) == "10"
    assert re.search(r"<b>10</b> of 12 assigned tasks labeled", page.text)

    status = ws.labels.status("reviews")
    assert status["labeled"] == 10 and status["per_annotator"]["ana"]["done"] == 10
    resolved = ws.labels.consensus("reviews")["labels"]
    assert resolved == dict(posted)
    # Every task was pre-filled from the model's suggestion: the annotation says so.
    assert all(a.prediction_id is not None for a in _current(ws, "reviews"))
    version = ws.labels.export_to_dataset("reviews", "reviews-labeled")
    assert ws.datasets.load(version)["label"].to_list() == [*TRUTH[:10], None, None]

    progress = client.get("/labeling/reviews")
    assert progress.status_code == 200
    assert 'id="count-labeled">10<' in progress.text
    assert re.search(
        r'data-annotator="ana">\s*<td>ana</td>\s*<td class="num">12</td>\s*'
        r'<td class="num done">10</td>',
        progress.text,
    )
    assert 'id="agreement"' in progress.text
    listing = client.get("/labeling")
    assert re.search(r'data-project="reviews">.*?class="num labeled">10<', listing.text, re.S)

    # Going back to a labeled task shows the annotator's own label, and an edit replaces it.
    back = client.get("/labeling/reviews/annotate", params={"annotator": "ana", "task": "2"})
    assert 'id="own-label"' in back.text and re.search(
        r'value="neutral" data-key="3" checked', back.text
    )
    assert 'id="prev"' in back.text and 'id="next"' in back.text
    r = client.post(
        "/labeling/reviews/annotate",
        data={
            "csrf": _csrf(back.text),
            "annotator": "ana",
            "task": "2",
            "value": "negative",
            "prediction": _hidden(back.text, "prediction"),
        },
    )
    assert r.status_code == 303
    assert ws.labels.consensus("reviews")["labels"]["2"] == "negative"
    assert len(ws.labels.history("reviews", "2")) == 2

    # Once every task is labeled the screen says so.
    page = client.get(r.headers["location"])
    for _ in range(2):
        key = _task_key(page.text)
        r = client.post(
            "/labeling/reviews/annotate",
            data={"csrf": _csrf(page.text), "annotator": "ana", "task": key, "value": "neutral"},
        )
        page = client.get(r.headers["location"])
    assert 'id="done"' in page.text and 'id="review-first"' in page.text


def test_agreement_and_issues_pages(served: Served) -> None:
    ws, client = served.ws, served.client
    flipped = {"1": "positive", "4": "positive"}
    ws.labels.annotate_many(
        "reviews",
        [(str(i), "ana", TRUTH[i]) for i in range(12)]
        + [(str(i), "ben", flipped.get(str(i), TRUTH[i])) for i in range(12)],
    )
    page = client.get("/labeling/reviews")
    assert page.status_code == 200
    report = ws.labels.agreement("reviews")
    kappa = report["overall"]["cohen_kappa_mean"]
    assert 0 < kappa < 1
    assert f"{kappa:.3g}" in page.text
    assert 'id="agreement-per-label"' in page.text and 'data-label="negative"' in page.text
    assert 'id="count-conflicts">2<' in page.text
    assert 'id="conflicted-tasks"' in page.text and "<code>1</code>" in page.text

    issues = client.get("/labeling/reviews/issues", params={"exclude": "id"})
    assert issues.status_code == 200
    assert 'id="issues-form"' in issues.text
    assert 'id="issues"' in issues.text or 'id="no-issues"' in issues.text
    too_few = client.get("/labeling/shapes/issues")
    assert too_few.status_code == 200 and 'id="issues-problem"' in too_few.text


def test_boxes_form_and_task_images(served: Served) -> None:
    ws, client = served.ws, served.client
    image = client.get("/labeling/shapes/tasks/img1.png/image")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == served.images["img1.png"]
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    again = client.get(
        "/labeling/shapes/tasks/img1.png/image", headers={"If-None-Match": image.headers["etag"]}
    )
    assert again.status_code == 304

    # Only the project's own tasks are served: not other files, not paths.
    for path in (
        "/labeling/shapes/tasks/img9.png/image",
        "/labeling/shapes/tasks/secret.png/image",
        "/labeling/shapes/tasks/..%2F..%2Fmodelcycle.toml/image",
        "/labeling/shapes/tasks/%2Fetc%2Fpasswd/image",
        "/labeling/shapes/tasks/img1.png%00.txt/image",
        "/labeling/reviews/tasks/0/image",
        "/labeling/nope/tasks/img1.png/image",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert not r.headers["content-type"].startswith("image/"), path

    page = client.get("/labeling/shapes/annotate", params={"annotator": "ana"})
    boxes = {
        "box-label": ["dog", "cat", "cat"],
        "box-x": ["2", "20.5", ""],
        "box-y": ["3", "0", ""],
        "box-w": ["10", "19.5", ""],
        "box-h": ["12", "30", ""],
    }
    r = client.post(
        "/labeling/shapes/annotate",
        data={"csrf": _csrf(page.text), "annotator": "ana", "task": "img0.png", **boxes},
    )
    assert r.status_code == 303, r.text
    [annotation] = _current(ws, "shapes")
    assert annotation.value == [
        {"label": "dog", "x": 2.0, "y": 3.0, "w": 10.0, "h": 12.0},
        {"label": "cat", "x": 20.5, "y": 0.0, "w": 19.5, "h": 30.0},
    ]
    page = client.get(r.headers["location"])
    assert _task_key(page.text) == "img1.png"

    # A box outside the image is refused with the reason, and the typed rows come back.
    r = client.post(
        "/labeling/shapes/annotate",
        data={
            "csrf": _csrf(page.text),
            "annotator": "ana",
            "task": "img1.png",
            "box-label": "cat",
            "box-x": "30",
            "box-y": "0",
            "box-w": "10",
            "box-h": "5",
        },
    )
    assert r.status_code == 422
    assert 'id="form-error"' in r.text and "outside" in r.text
    assert 'name="box-x" class="box-x" type="number" step="any" min="0" value="30"' in r.text
    # A half-filled row names what is missing.
    r = client.post(
        "/labeling/shapes/annotate",
        data={
            "csrf": _csrf(page.text),
            "annotator": "ana",
            "task": "img1.png",
            "box-label": "cat",
            "box-x": "1",
            "box-y": "",
            "box-w": "3",
            "box-h": "4",
        },
    )
    assert r.status_code == 422 and "box 1 has no y" in r.text
    # No boxes at all is a label too: nothing on this image.
    r = client.post(
        "/labeling/shapes/annotate",
        data={"csrf": _csrf(page.text), "annotator": "ana", "task": "img1.png"},
    )
    assert r.status_code == 303
    assert [a.value for a in _current(ws, "shapes")][1] == []


def test_readers_cannot_post_and_csrf_is_required(served: Served) -> None:
    ws, client = served.ws, served.client
    _, editor = ws.tokens.create("lead", role="editor")
    _, reader = ws.tokens.create("viewer", role="reader")
    time.sleep(ws.tokens.ttl + 0.1)  # the server's "any token?" answer is cached that long

    assert client.get("/labeling").status_code == 303  # to the sign-in page

    client.cookies.set("modelcycle_token", reader)
    page = client.get("/labeling/reviews/annotate", params={"annotator": "ana"})
    assert page.status_code == 200
    assert 'id="read-only"' in page.text and re.search(
        r'id="submit" type="submit" disabled', page.text
    )
    form = {"csrf": _csrf(page.text), "annotator": "ana", "task": "0", "value": "positive"}
    refused = client.post("/labeling/reviews/annotate", data=form)
    assert refused.status_code == 403
    assert _current(ws, "reviews") == []

    client.cookies.set("modelcycle_token", editor)
    page = client.get("/labeling/reviews/annotate", params={"annotator": "ana"})
    assert 'id="read-only"' not in page.text
    form["csrf"] = _csrf(page.text)
    missing = client.post(
        "/labeling/reviews/annotate", data={k: v for k, v in form.items() if k != "csrf"}
    )
    assert missing.status_code == 400 and "CSRF" in missing.text
    wrong = client.post("/labeling/reviews/annotate", data={**form, "csrf": "forged"})
    assert wrong.status_code == 400
    assert _current(ws, "reviews") == []
    # A prediction id that is not this task's suggestion is refused.
    forged = client.post("/labeling/reviews/annotate", data={**form, "prediction": "999999"})
    assert forged.status_code == 400 and _current(ws, "reviews") == []
    ok = client.post("/labeling/reviews/annotate", data=form)
    assert ok.status_code == 303
    [annotation] = _current(ws, "reviews")
    assert (annotation.annotator, annotation.value) == ("ana", "positive")
    [event] = [e for e in ws.events(kind="label.annotated")]
    assert event.actor == "token:lead"


def test_multi_label_and_number_forms(served: Served) -> None:
    ws, client = served.ws, served.client
    ws.labels.create(
        "topics",
        "reviews@1",
        {"kind": "classification", "labels": ["price", "quality", "delivery"], "multi_label": True},
        annotators=["ana"],
    )
    ws.labels.create(
        "stars", "reviews@1", {"kind": "number", "minimum": 1, "maximum": 5}, annotators=["ana"]
    )

    page = client.get("/labeling/topics/annotate", params={"annotator": "ana"})
    assert 'type="checkbox" id="choice-2" name="value" value="quality" data-key="2"' in page.text
    form = {"csrf": _csrf(page.text), "annotator": "ana", "task": "0"}
    r = client.post("/labeling/topics/annotate", data={**form, "value": ["quality", "price"]})
    assert r.status_code == 303
    r = client.post("/labeling/topics/annotate", data={**form, "task": "1"})  # none apply
    assert r.status_code == 303
    assert ws.labels.consensus("topics")["labels"] == {"0": ["price", "quality"], "1": []}

    page = client.get("/labeling/stars/annotate", params={"annotator": "ana"})
    assert 'id="number-value" name="value" type="number"' in page.text
    assert 'min="1.0" max="5.0"' in page.text
    form = {"csrf": _csrf(page.text), "annotator": "ana", "task": "0"}
    r = client.post("/labeling/stars/annotate", data={**form, "value": "9"})
    assert r.status_code == 422 and "above the schema" in r.text
    assert 'value="9"' in r.text
    r = client.post("/labeling/stars/annotate", data={**form, "value": ""})
    assert r.status_code == 400 and "no number was given" in r.text
    r = client.post("/labeling/stars/annotate", data={**form, "value": "4.5"})
    assert r.status_code == 303
    assert ws.labels.consensus("stars")["labels"] == {"0": 4.5}
