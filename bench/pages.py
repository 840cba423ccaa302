"""Web UI pages under load of data: server time of each page of `modelcycle server` with
10,000 runs and 1,000,000 metric points.

Seeding (untimed, a minute or two): a fresh workspace with a table dataset in two
versions (20,000 rows x 6 columns), 10 experiments of 1,000 runs each (9,999 runs with
5 params, 2 tags and 2 metrics x 45 steps; one long run with 2 metrics x 50,045 steps:
1,000,000 points in all), written through the run store's batch writes (`create_run`,
`write_batch`: one transaction per run, multi-row INSERTs), not through live runs; and
200,000 audit events (deployment changes with a before/after payload, one in 1,000 by
the token ``token:alice``, the rest by the scheduler), 10,000 to a transaction.

Then the app runs in this process under uvicorn on 127.0.0.1 (one worker, like
`modelcycle server`), and each page is requested 3 times to warm up and 20 times timed,
one request at a time over a keep-alive connection, as a browser asks (Accept:
text/html). "Server time" is measured inside the process by an ASGI wrapper around the
app: from the request's arrival at the app to its last body byte (it includes the auth
and security middleware, not the socket); the client's round trip is printed beside it.
Pages that answer 404 (a section not built yet) are skipped and listed; a page that
fails (5xx) is listed as failed and counted on the summary line.

The peer in the issue is MLflow's UI, but its pages are a JavaScript app that draws in
the browser from several JSON calls, so there is no like-for-like server time to compare
with; this measures ours against the target: median and p95 of every page under 300 ms.

    .venv/bin/python bench/pages.py [--runs 10000] [--points 1000000] [--events 200000]
                                    [--reps 20] [--keep DIR]

The last line is ``SUMMARY bench_pages pages=N max_median_ms=... max_p95_ms=... target=300ms``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn

import modelcycle as mc
from modelcycle.server import create_app
from modelcycle.store.metadata import MetadataStore, acting_as
from modelcycle.store.runs import RunEnd

TARGET_MS = 300.0
EXPERIMENTS = 10
SHORT_STEPS = 45
KEYS = ("loss", "accuracy")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ServerTimer:
    """ASGI wrapper: the seconds from a request's arrival to its last body byte."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - start

        await self.app(scope, receive, timed)


def seed_events(store: MetadataStore, n_events: int) -> None:
    """``n_events`` deployment changes for the audit page; ``token:alice`` makes one in
    1,000 (a rare actor), the scheduler the rest."""
    for start in range(0, n_events, 10_000):
        with store.writing() as conn:
            for i in range(start, min(start + 10_000, n_events)):
                with acting_as("token:alice" if i % 1000 == 0 else "scheduler"):
                    store.add_event(
                        conn,
                        "deployment.routes",
                        f"endpoint-{i % 20}",
                        {
                            "generation": i,
                            "before": {"routes": [{"model": "churn@1", "weight": i % 100}]},
                            "after": {"routes": [{"model": "churn@1", "weight": (i + 1) % 100}]},
                            "reason": "canary step",
                        },
                    )
        if (start + 10_000) % 50_000 == 0:
            print(f"  seeded {min(start + 10_000, n_events):,} events", flush=True)


def seed(root: Path, n_runs: int, n_points: int, n_events: int) -> dict[str, str]:
    """The workspace the pages read; returns the ids the run pages are timed on."""
    ws = mc.Workspace.create(root)
    rng = random.Random(7)
    csv = root.parent / "table.csv"
    lines = ["id,age,income,score,city,label"]
    cities = ("paris", "rome", "oslo", "lima", "cairo")
    for i in range(20_000):
        lines.append(
            f"{i},{rng.randint(18, 90)},{rng.lognormvariate(10, 0.5):.2f},"
            f"{rng.random():.4f},{rng.choice(cities)},{rng.randint(0, 1)}"
        )
    csv.write_text("\n".join(lines) + "\n")
    ws.datasets.add("customers", csv, message="first export")
    for i in range(1, 2001):  # change 2,000 rows for the second version
        lines[i] = lines[i].rsplit(",", 1)[0] + ",1"
    csv.write_text("\n".join(lines) + "\n")
    ws.datasets.add("customers", csv, message="labels fixed")
    version_id = ws.datasets.resolve("customers@2").id

    store = ws.runs.store
    experiment_ids = [store.experiment_id(f"exp-{e}", create=True) for e in range(EXPERIMENTS)]
    short_points = len(KEYS) * SHORT_STEPS
    long_steps = (n_points - (n_runs - 1) * short_points) // len(KEYS)
    assert long_steps > SHORT_STEPS, "too few points for the runs"
    env = {"python": sys.version.split()[0], "source": "bench/pages.py"}
    now = int(time.time() * 1000)
    ids = []
    started = time.perf_counter()
    for i in range(n_runs):
        run_id = uuid.uuid4().hex
        steps = long_steps if i == n_runs // 2 else SHORT_STEPS
        start = now - (n_runs - i) * 60_000
        exp = experiment_ids[i % EXPERIMENTS]
        assert exp is not None
        store.create_run(run_id, exp, f"run-{i:05d}", start, None, env, {"team": "core"})
        lr, depth = rng.choice((0.01, 0.03, 0.1, 0.3)), rng.randint(2, 12)
        final = rng.random()
        points = []
        for s in range(steps):
            t = start + s * 10
            progress = (s + 1) / steps
            points.append(("loss", (1 - progress) * 2 + final * 0.3 + rng.random() * 0.05, s, t))
            points.append(("accuracy", 0.5 + 0.45 * progress * final, s, t))
        params = [
            ("lr", str(lr)),
            ("depth", str(depth)),
            ("model", rng.choice(("xgb", "rf", "logreg"))),
            ("seed", str(i)),
            ("features", "all"),
        ]
        end = RunEnd(rng.choice(("finished",) * 9 + ("failed",)), start + 1000 * steps // 10)
        store.write_batch(run_id, points, params, [("stage", "bench")], end)
        if i % 100 == 0:
            store.add_inputs(run_id, [(version_id, "train")])
        ids.append(run_id)
        if (i + 1) % 1000 == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            print(f"  seeded {i + 1:,} runs ({rate:,.0f}/s)", flush=True)
    seed_events(ws.store, n_events)
    ws.close()
    long_id = ids[n_runs // 2]
    return {
        "long": long_id,
        "compare": ",".join([long_id, ids[n_runs // 2 - 10], ids[n_runs // 2 + 10]]),
    }


def serve(root: Path) -> tuple[uvicorn.Server, threading.Thread, ServerTimer, int]:
    timer = ServerTimer(create_app(root))
    server = uvicorn.Server(
        uvicorn.Config(timer, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, timer, port


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]  # nearest rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument(
        "--keep", type=Path, help="seed into this folder and keep it; reuse it when seeded"
    )
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="mc-bench-pages-"))
    base.mkdir(parents=True, exist_ok=True)
    root = base / "ws"
    try:
        seeded = base / "ids.json"
        if seeded.exists():
            ids = json.loads(seeded.read_text())
            print(f"reusing the workspace seeded in {root}")
        else:
            t0 = time.perf_counter()
            print(
                f"seeding {args.runs:,} runs, {args.points:,} points, {args.events:,} events"
                f" into {root} (untimed)"
            )
            ids = seed(root, args.runs, args.points, args.events)
            seeded.write_text(json.dumps(ids))
            print(f"seeded in {time.perf_counter() - t0:.0f} s")
        long_run, compared = ids["long"], ids["compare"].split(",")
        pages = {  # label -> URL
            "/": "/",
            "/datasets": "/datasets",
            "/datasets/customers": "/datasets/customers",
            "/datasets/customers/2": "/datasets/customers/2",
            "/datasets/customers/diff?key=id": "/datasets/customers/diff?a=1&b=2&key=id",
            "/runs": "/runs",
            "/runs?page=100": "/runs?page=100",
            "/runs?page=LAST": f"/runs?page={-(-args.runs // 50)}",
            "/runs?order=metrics.loss ASC": "/runs?order=metrics.loss+ASC",
            "/runs?filter=<param and metric>": (
                "/runs?filter=params.model+%3D+%27xgb%27+and+metrics.accuracy+%3E+0.8"
            ),
            "/runs?experiment=exp-3&page=10": "/runs?experiment=exp-3&page=10",
            f"/runs/{long_run[:8]}… (the long run)": f"/runs/{long_run}",
            f"/runs/compare?ids={long_run[:8]}…,+2": f"/runs/compare?ids={','.join(compared)}",
            "/models": "/models",
            "/deployments": "/deployments",
            "/monitors": "/monitors",
            "/audit": "/audit",
            "/audit?page=1000": "/audit?page=1000",
            "/audit?actor=token:alice (1 in 1,000)": "/audit?actor=token%3Aalice",
            "/audit?kind=deployment.": "/audit?kind=deployment.",
            "/audit?kind=dataset. (rare: a full scan)": "/audit?kind=dataset.",
            "/audit?since=2000-01-01&until=2100-01-01": "/audit?since=2000-01-01&until=2100-01-01",
        }
        server, thread, timer, port = serve(root)
        rows: list[tuple[str, int, list[float], list[float]]] = []
        skipped: list[str] = []
        failed: list[str] = []
        try:
            for label, url in pages.items():
                with httpx.Client(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Accept": "text/html"},
                    timeout=60,
                ) as client:
                    try:
                        first = client.get(url)
                    except httpx.TransportError as e:  # the app raised: uvicorn hangs up
                        failed.append(f"{label} ({type(e).__name__})")
                        continue
                    if first.status_code == 404:
                        skipped.append(label)
                        continue
                    if first.status_code != 200:
                        failed.append(f"{label} ({first.status_code})")
                        continue
                    for _ in range(2):
                        client.get(url)
                    server_ms, client_ms = [], []
                    for _ in range(args.reps):
                        t = time.perf_counter()
                        r = client.get(url)
                        client_ms.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200 and timer.last is not None
                        server_ms.append(timer.last * 1000)
                    rows.append((label, len(first.content), server_ms, client_ms))
        finally:
            server.should_exit = True
            thread.join(timeout=30)

        width = max(len(u) for u, *_ in rows)
        print(
            f"\n{'page':<{width}}  {'KB':>6}  {'median ms':>9}  {'p95 ms':>7}  {'client med':>10}"
        )
        for url, size, server_ms, client_ms in rows:
            print(
                f"{url:<{width}}  {size / 1024:6.1f}  {statistics.median(server_ms):9.1f}"
                f"  {p95(server_ms):7.1f}  {statistics.median(client_ms):10.1f}"
            )
        if skipped:
            print(f"skipped (404, not built yet): {', '.join(skipped)}")
        if failed:
            print(f"FAILED (not timed): {', '.join(failed)}")
        worst_median = max(statistics.median(s) for _, _, s, _ in rows)
        worst_p95 = max(p95(s) for _, _, s, _ in rows)
        print(
            f"SUMMARY bench_pages pages={len(rows)} max_median_ms={worst_median:.1f}"
            f" max_p95_ms={worst_p95:.1f} target={TARGET_MS:.0f}ms"
            + (f" failed={len(failed)}" if failed else "")
        )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
