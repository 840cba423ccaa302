"""The web UI's dataset and run pages, served by uvicorn on 127.0.0.1: catalog, versions,
a version's schema, lineage and profile histograms, the diff of two versions; the run
table (paging, filter, sort, experiment), a run's page with its downsampled charts, the
comparison of runs; 404 pages; a reader token reads them all, a browser without one is
sent to sign in."""

from __future__ import annotations

import contextlib
import html
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn

import modelcycle as mc
from modelcycle.server import create_app

HTML = {"Accept": "text/html"}
BULK = 120  # runs made in a loop, on top of the hand-made ones
RUN_ID = re.compile(r'name="ids" value="([0-9a-f]{32})"')


@contextlib.contextmanager
def serve(root: Path) -> Iterator[httpx.Client]:
    """The app for the workspace at ``root`` under uvicorn on a free port of 127.0.0.1."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(root), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=HTML)
    try:
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)


def seed(root: Path, data: Path) -> dict[str, str]:
    """Two versions of a small table, a file dataset, three hand-made runs and BULK more;
    returns the hand-made runs' ids by name."""
    ws = mc.Workspace.create(root)
    data.mkdir()
    (data / "people.csv").write_text(
        "id,age,city,score\n1,30,paris,0.5\n2,41,rome,0.7\n3,25,oslo,0.1\n4,,paris,0.9\n"
    )
    ws.datasets.add("people", data / "people.csv", message="first export")
    (data / "people.csv").write_text(
        "id,age,city,score\n1,30,paris,0.5\n2,42,rome,0.7\n3,25,oslo,0.1\n"
        "5,60,lima,0.3\n6,61,lima,0.35\n"
    )
    ws.datasets.add("people", data / "people.csv", message="second export")
    (data / "docs").mkdir()
    (data / "docs" / "readme.txt").write_text("hello")
    ws.datasets.add("docs", data / "docs")
    (data / "weights.bin").write_bytes(b"\0" * 2048)

    ids = {}
    for name, lr, depth in (("alpha", "0.1", "4"), ("beta", "0.2", "4"), ("gamma", "0.3", "4")):
        with ws.start_run("tuning", name=name, tags={"team": "core"}) as run:
            run.log_params({"lr": lr, "depth": depth})
            offset = {"alpha": 0.0, "beta": 1.0, "gamma": 2.0}[name]
            run.log_batch([("loss", offset + 1.0 / (s + 1), s, 1000 + s) for s in range(5000)])
            run.log_metric("auc", 0.8 + offset / 10)
            run.log_input(ws.datasets.resolve("people@2"))
            if name == "alpha":
                run.log_artifact(str(data / "weights.bin"), "model")
                run.log_metric("only_alpha", 1.0)
            ids[name] = run.id
    for i in range(BULK):
        time.sleep(0.002)  # a start time of its own (ms) for each: "newest first" is defined
        with ws.start_run("bulk", name=f"bulk-{i:03d}") as run:
            run.log_params({"model": "xgb" if i % 2 else "rf", "i": str(i)})
            run.log_batch([("score", float((i * 37) % BULK), 0, 1000)])
    ws.close()
    return ids


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """A seeded workspace, served once for the read-only tests of this module."""
    base = tmp_path_factory.mktemp("ui")
    ids = seed(base / "ws", base / "data")
    with serve(base / "ws") as client:
        yield client, ids


def page(client: httpx.Client, url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    # The CSP allows no inline styles or scripts: the pages must not need any.
    assert 'style="' not in r.text and "<script>" not in r.text
    return html.unescape(r.text)


def names_in_table(text: str) -> list[str]:
    """The run names in the run table, in order."""
    return re.findall(r'<td><a href="/runs/[0-9a-f]{32}">([^<]+)</a>', text)


def test_dataset_catalog_and_versions(site: tuple[httpx.Client, dict[str, str]]) -> None:
    client, _ = site
    text = page(client, "/datasets")
    row = re.search(r'<tr>\s*<td><a href="/datasets/people">people</a>.*?</tr>', text, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    assert cells[1:4] == ["table", "2", '<a href="/datasets/people/2">v2</a>']
    assert cells[4].endswith(" KB")
    assert '<a href="/datasets/docs">docs</a>' in text

    text = page(client, "/datasets/people")
    assert text.index('href="/datasets/people/2">v2') < text.index('href="/datasets/people/1">v1')
    assert "first export" in text and "second export" in text
    assert '<option value="1" selected>v1</option>' in text  # the diff form: previous → latest


def test_version_page_schema_lineage_profile(site: tuple[httpx.Client, dict[str, str]]) -> None:
    client, ids = site
    text = page(client, "/datasets/people/2")
    schema = text[text.index("<h2>Schema</h2>") : text.index("<h2>Profile</h2>")]
    assert re.findall(r"<tr><td>(\w+)</td><td><code>(\w+)</code>", schema) == [
        ("id", "Int64"),
        ("age", "Int64"),
        ("city", "String"),
        ("score", "Float64"),
    ]
    lineage = text[text.index("<h2>Lineage</h2>") : text.index("<h2>Schema</h2>")]
    assert '<a href="/datasets/people/2">people@2</a>' in lineage
    # people@2 was made from people@1 (its previous version), itself added from the CSV.
    parent = lineage.index('<a href="/datasets/people/1">people@1</a>')
    assert lineage.index("<ul>") < parent
    assert "people.csv (csv)" in lineage[parent:]
    # One histogram per numeric column, none for the text column (its top values instead).
    profile = text[text.index("<h2>Profile</h2>") : text.index("<h2>Runs that read it</h2>")]
    assert profile.count("<svg") == 3
    assert "Distribution of age" in profile and "Distribution of city" not in profile
    assert re.search(r"<td>lima</td><td class=\"num\">2</td>", profile)
    assert "5 to 5.25: 1 rows" in profile  # a histogram bar's tooltip, from the profile
    readers = text[text.index("<h2>Runs that read it</h2>") :]
    assert {f'href="/runs/{ids[n]}"' for n in ids} <= set(re.findall(r'href="/runs/\w+"', readers))

    text = page(client, "/datasets/people/1")
    assert "none (raw data)" in text and "<h2>Runs that read it</h2>" in text
    assert "No run logged it as an input." in text

    text = page(client, "/datasets/docs/latest")
    assert "<code>readme.txt</code>" in text and "<svg" not in text


def test_diff_page(site: tuple[httpx.Client, dict[str, str]]) -> None:
    client, _ = site
    text = page(client, "/datasets/people/diff?a=1&b=2&key=id")
    assert 'Rows <span class="muted">(matched by id)</span>' in text
    cards = dict(
        (label, count)
        for count, label in re.findall(r"<b>([\d,→ ]+)</b> (rows|added|removed|changed)", text)
    )
    assert cards == {"rows": "4 → 5", "added": "2", "removed": "1", "changed": "1"}
    assert re.search(r"<th>added</th><td>5, 6</td>", text)
    # per-column distribution changes: age's mean moved from 32 to 43.6
    assert re.search(r"<td>mean</td>\s*<td class=\"num\">32</td><td class=\"num\">43.6</td>", text)

    text = page(client, "/datasets/people/diff?a=1&b=2")  # no key: rows matched by hash
    assert "(matched by row hash)" in text and "</b> changed" not in text
    assert re.search(r"<b>3</b> added", text)

    text = page(client, "/datasets/people/diff?a=2&b=2")
    assert "Both versions have the same content." in text

    text = page(client, "/datasets/people/diff?a=1&b=2&key=nope", status=400)
    assert "key column 'nope' is not in the first version" in text
    assert '<form method="get" action="/datasets/people/diff"' in text  # the form stays


def test_run_table_pages_of_fifty(site: tuple[httpx.Client, dict[str, str]]) -> None:
    client, _ = site
    total = BULK + 3
    seen: list[str] = []
    for number, expected in ((1, 50), (2, 50), (3, total - 100)):
        text = page(client, f"/runs?page={number}")
        ids = RUN_ID.findall(text)
        assert len(ids) == expected
        seen += ids
        assert f"of {total}" in text and f"page {number} of 3" in text
        assert ('rel="next"' in text) == (number < 3)
        assert ('rel="prev"' in text) == (number > 1)
    assert len(set(seen)) == total  # no run twice, none left out

    text = page(client, "/runs?page=4")
    assert RUN_ID.findall(text) == [] and "No runs on page 4." in text
    page(client, "/runs?page=0", status=400)


def test_run_table_filter_sort_and_experiment(site: tuple[httpx.Client, dict[str, str]]) -> None:
    client, _ = site
    newest_first = names_in_table(page(client, "/runs?experiment=bulk"))
    assert newest_first[:2] == ["bulk-119", "bulk-118"]  # default order: newest first

    by_score = names_in_table(page(client, "/runs?experiment=bulk&order=metrics.score+DESC"))
    scores = [(int(n[-3:]) * 37) % BULK for n in by_score]
    assert scores == sorted(scores, reverse=True) and scores[0] == BULK - 1
    by_name = names_in_table(page(client, "/runs?experiment=bulk&order=name+ASC"))
    assert by_name[:3] == ["bulk-000", "bulk-001", "bulk-002"]

    # A column header links to sorting by it (descending first, then ascending).
    text = page(client, "/runs?experiment=bulk")
    link = re.search(r'<th class="num metric"><a href="([^"]+)"[^>]*>score</a>', text)
    assert link is not None
    flipped = page(client, link.group(1))
    assert names_in_table(flipped) == by_score[:50]
    assert "▼" in flipped
    link = re.search(r'<th class="num metric sorted"><a href="([^"]+)"[^>]*>score</a>', flipped)
    assert link is not None and "metrics.%60score%60+ASC" in link.group(1)

    text = page(client, "/runs?filter=params.model+%3D+%27xgb%27+and+metrics.score+%3C+30")
    names = names_in_table(text)
    expected = {f"bulk-{i:03d}" for i in range(BULK) if i % 2 and (i * 37) % BULK < 30}
    assert set(names) == expected and len(names) == len(expected)
    assert re.search(r"runs 1–\d+</span>", text)  # no total under a filter ("… of N")

    tuning = names_in_table(page(client, "/runs?experiment=tuning"))
    assert sorted(tuning) == ["alpha", "beta", "gamma"]

    text = page(client, "/runs?filter=metrics.score+%3E+high", status=400)
    assert "compares with a number" in text and RUN_ID.findall(text) == []
    page(client, "/runs?experiment=nope", status=404)


def test_run_page(site: tuple[httpx.Client, dict[str, str]]) -> None:
    client, ids = site
    text = page(client, f"/runs/{ids['alpha']}")
    assert "<h1>alpha" in text and 'class="status finished"' in text
    assert re.search(r"<tr><th>lr</th><td>0.1</td></tr>", text)
    assert re.search(r"<tr><th>team</th><td>core</td></tr>", text)
    assert re.search(r'>auc</a></th><td class="num">0.8</td>', text)
    assert '<a href="/datasets/people/2">people@2</a> <span class="muted">(train)</span>' in text
    assert "<code>model/weights.bin</code>" in text and "2.0 KB" in text
    charts = re.findall(r'<svg id="plot-metric-\d+".*?</svg>', text, re.S)
    assert len(charts) == 3  # auc, loss, only_alpha
    # 5,000 points of loss are drawn as at most 500 bucket means.
    loss = next(c for c in charts if 'aria-label="loss"' in c)
    path = re.search(r'<path d="([^"]+)" fill="none"', loss)
    assert path is not None and 400 <= path.group(1).count("L") + 1 <= 500
    assert "(500 points drawn)" in text


def test_compare_page(site: tuple[httpx.Client, dict[str, str]]) -> None:
    client, ids = site
    url = "/runs/compare?ids=" + ",".join(ids[n] for n in ("alpha", "beta", "gamma"))
    text = page(client, url)
    assert "Compare 3 runs" in text
    params = text[text.index("<h2>Params") : text.index("<h2>Metrics")]
    assert re.search(r'<tr class="differs"><th>lr', params)
    assert re.search(r"<tr><th>depth</th>", params)  # the same in every run: not marked
    assert "(1 differ)" in params
    charts = re.findall(r'<svg id="plot-compare-\d+".*?</svg>', text, re.S)
    assert [re.search(r'aria-label="([^"]+)"', c).group(1) for c in charts] == ["auc", "loss"]  # type: ignore[union-attr]
    loss = charts[1]
    assert loss.count('<path d="') == 3  # one line per run on the same chart
    assert all(name in loss for name in ("alpha", "beta", "gamma"))
    assert "only_alpha" in text.split("not charted")[1]

    # The run table's checkboxes submit ids=…&ids=… (a GET form); same page.
    same = page(client, f"/runs/compare?ids={ids['alpha']}&ids={ids['beta']}")
    assert "Compare 2 runs" in same
    assert "compare needs at least two runs" in page(
        client, f"/runs/compare?ids={ids['alpha']}", status=400
    )


def test_unknown_ids_are_404_pages(site: tuple[httpx.Client, dict[str, str]]) -> None:
    client, ids = site
    for url, message in (
        ("/datasets/nope", "no dataset named 'nope'"),
        ("/datasets/people/9", "people@9 does not exist"),
        ("/datasets/nope/diff", "no dataset named 'nope'"),
        ("/runs/0123456789abcdef", "run '0123456789abcdef' does not exist"),
        (f"/runs/compare?ids={ids['alpha']},ffffffffffff", "'ffffffffffff' does not exist"),
    ):
        text = page(client, url, status=404)
        assert message in text and "<h1>" in text
    r = client.get("/runs/0123456789abcdef", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.json()["error"] == "NotFoundError"


def test_static_files(site: tuple[httpx.Client, dict[str, str]]) -> None:
    client, _ = site
    for name in ("datasets.css", "runs.css", "runs.js"):
        assert client.get(f"/static/{name}").status_code == 200
    assert '<script src="/static/runs.js" defer>' in page(client, "/runs")


def test_reader_reads_every_page_and_a_browser_without_token_signs_in(tmp_path: Path) -> None:
    ids = seed(tmp_path / "ws", tmp_path / "data")
    ws = mc.Workspace.open(tmp_path / "ws")
    _, reader = ws.tokens.create("ana", role="reader")  # before the server starts: no cache
    ws.close()
    urls = [
        "/datasets",
        "/datasets/people",
        "/datasets/people/2",
        "/datasets/people/diff?a=1&b=2&key=id",
        "/runs",
        "/runs?page=2&order=metrics.score+DESC",
        f"/runs/{ids['alpha']}",
        f"/runs/compare?ids={ids['alpha']},{ids['beta']}",
    ]
    with serve(tmp_path / "ws") as client:
        for url in urls:
            r = client.get(url, follow_redirects=False)
            assert r.status_code == 303, url
            assert r.headers["location"] == "/login?next=" + quote(url, safe="/")
            r = client.get(url, headers={"Authorization": f"Bearer {reader}"})
            assert r.status_code == 200, url
            assert "ana · reader" in html.unescape(r.text)
        r = client.get("/runs", headers={"Accept": "application/json"})
        assert r.status_code == 401
