"""Online serving (W4): `modelcycle serve` vs MLflow and BentoML, and a bare Starlette ceiling.

One small model for everyone: the peers' `w4_model.py train` (ref venv) fits a
LogisticRegression on 10,000 rows x 20 features (fixed seed) and writes a joblib file and a
test row with its expected class; `w4_model.py log-mlflow` (mlflow venv) logs the same fitted
model into a local MLflow store. Here, in the project's venv, the same joblib file is loaded,
logged with its input example (a tensor signature, float64 (-1, 20)) and registered as `w4@1`
in a fresh workspace under $BENCH_HOME/data/scratch. All of this is untimed.

Servers, each on 127.0.0.1 in its own session and process group, all started before the
first timed run and stopped at the end by their own process group and process tree:

  mc1         modelcycle serve w4@1 --workers 1
  mc1_nolog   the same with --log-sample-rate 0 (no prediction log: what logging costs)
  mcN         modelcycle serve w4@1 (default worker count: one per CPU)
  mcbatch1    modelcycle serve w4@1 --workers 1 --max-batch-size B [--max-latency-ms L]
  mcbatchN    the same with the default worker count
  mlflow      mlflow models serve -m models:/<id> --env-manager local (1 worker)
  bentoml     bentoml serve w4_bento_service:W4Model (1 worker)
  bentoml_b   bentoml serve w4_bento_service:W4ModelBatched (batchable=True)
  starlette   uvicorn w4_ceiling_app:app --http httptools --loop uvloop
              (/predict: parse + predict + JSON; /const: a constant answer)

Each is ready when a one-row POST returns the expected class; then the script waits until
every server is idle (further workers of a multi-worker server load after the first answers)
and prints what each costs idle, since the others stay up while one is measured. Bodies: `{"inputs": [[20
floats]]}` for /invocations (modelcycle, MLflow) and /v1/models/w4/predict (its default
answer carries probabilities); the peers' own bodies for BentoML and Starlette.

What is timed, per repetition (the order of the loads flips every repetition, so a slow
spell on the shared machine hits every server; before each run the script waits up to
--max-wait-quiet s for the machine to be under 25% busy):

  wrk -t2 -c32 -d{duration}s --latency --timeout 5s     every server and route
  wrk -t2 -c256 (same)                                   batching variants and the peers
  wrk -t1 -c1  (same)                                    unbatched servers
  seq1  the peers' sequential Python client (`w4_serving.run_seq`): one keep-alive
        connection, --seq-duration s, RAW per-request latency
each after a 3 s wrk warm-up of that load (discarded). wrk 4 corrects its latency histogram
for coordinated omission (every sample longer than twice the mean interval adds synthetic
samples), so its p50/p99 can exceed any real request's; the seq1 figures are uncorrected.
A wrk run with non-2xx answers or socket errors is invalid and left out of the medians.
Figures are medians over --reps; the table also gives min/max, the CPU share of the
server, the load generator and everything else, and req/cpu-s: requests per CPU-second the
server's processes used (less sensitive to other load on the machine than req/s).

Targets (the issue), computed from the medians:
  T1  mc1 /invocations at 32 connections >= 3x the req/s of the better of MLflow and
      BentoML (unbatched), with wrk p99 <= half of the lower of their p99s
  T2  mc1 >= 80% of the Starlette parse+predict route's req/s at 32 connections
  T3  single-connection p50 < 1 ms (mc1 /invocations; wrk -c1 and the raw seq1 client)
  T4  with batching, at 32 and at 256 connections, >= 6x the req/s of the best peer at
      the same count (MLflow, BentoML, BentoML batched); the better batching variant counts
The last line is `SUMMARY bench_serving ...` with the figures, ratios and ok/MISS.

    .venv/bin/python bench/serving.py [--reps 3] [--duration 20]
    .venv/bin/python bench/serving.py --quick                    # smoke: 3 s runs, 1 rep
    .venv/bin/python bench/serving.py --only mc1 starlette       # a subset of the servers

Needs wrk and the peer venvs $BENCH_HOME/venvs/{mlflow,bentoml,ref} (see the W4 section of
../shared/bench/peers/README.md). Server logs: $BENCH_HOME/data/serving/logs/; raw results:
$BENCH_HOME/data/results/serving-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import BENCH_HOME, PEERS_DIR, find_modelcycle, scratch

sys.path.insert(0, str(PEERS_DIR))
import w4_serving as peer  # the peers' stdlib-only W4 helpers

MODEL = "w4"
SERVERS = [
    "mc1",
    "mc1_nolog",
    "mcN",
    "mcbatch1",
    "mcbatchN",
    "mlflow",
    "bentoml",
    "bentoml_b",
    "starlette",
]
PEERS = ["mlflow", "bentoml"]
BATCH_PEERS = ["mlflow", "bentoml", "bentoml_b"]
T1_RATIO, T1_P99, T2_SHARE, T3_P50_MS, T4_RATIO = 3.0, 0.5, 0.8, 1.0, 6.0
COMMON_ENV = {
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "True",
}


@dataclass
class Target:
    """One route of one server, and the loads it gets."""

    key: str
    path: str
    body: str
    check: Callable[[Any], bool]
    conns: list[int]
    seq: bool


@dataclass
class Spec:
    name: str
    cmd: list[str]
    env: dict[str, str]
    cwd: str
    port: int
    targets: list[Target]
    server: Any = None
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- set-up
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def venv(args: argparse.Namespace, name: str, exe: str) -> str:
    path = Path(args.venvs) / name / "bin" / exe
    if not os.access(path, os.X_OK):
        sys.exit(f"{path} not found: see the W4 set-up in bench/README.md")
    return str(path)


def grab(pattern: str, text: str) -> str:
    m = re.search(pattern, text, re.M)
    if m is None:
        sys.exit(f"no {pattern!r} in:\n{text[-2000:]}")
    return m.group(1)


def train(args: argparse.Namespace, dd: Path) -> dict[str, Any]:
    """The peers' model and test row (ref venv), and the MLflow model (mlflow venv)."""
    model_py = str(PEERS_DIR / "w4_model.py")
    print(peer.sh([venv(args, "ref", "python"), model_py, "train", "--data-dir", str(dd)]).strip())
    meta: dict[str, Any] = json.loads((dd / "w4_row.json").read_text())
    if not args.only or "mlflow" in args.only:
        out = peer.sh(
            [venv(args, "mlflow", "python"), model_py, "log-mlflow", "--data-dir", str(dd)]
        )
        meta["model_uri"] = grab(r"^MODEL_URI (\S+)", out)
        meta["tracking"] = grab(r"^TRACKING_URI (\S+)", out)
    if not args.quick:
        cmd = [venv(args, "ref", "python"), model_py, "predict-bench", "--data-dir", str(dd)]
        out = peer.sh([*cmd, "--repeats", "3", "--seconds", "1"])
        meta["in_process"] = json.loads(grab(r"^RESULT (.*)$", out))
    return meta


def register(work: Path, model_path: Path, row: list[float], expected: int) -> Path:
    """Log the peers' fitted model (our own file: trusted) and register it as w4@1."""
    import joblib
    from w4_model import make_xy  # the peers' generator: the same input example as MLflow's

    import modelcycle as mc

    model = joblib.load(model_path)
    if int(model.predict([row])[0]) != expected:
        sys.exit("the loaded model does not predict the expected class")
    x, _ = make_xy()
    root = work / "ws"
    with mc.Workspace.create(root) as ws, ws.start_run("w4") as run:
        run.log_model(model, "model", input_example=x[:5], register_as=MODEL)
    return root


def specs(args: argparse.Namespace, dd: Path, ws: Path | None, meta: dict[str, Any]) -> list[Spec]:
    row, expected = meta["row"], meta["expected"]
    inputs = json.dumps({"inputs": [row]})
    peer_row = json.dumps({"row": row})
    first: Callable[[Any], bool] = lambda r: r["predictions"][0] == expected  # noqa: E731
    unbatched, batched = [32, 1], [32, 256]
    peers_loads = [32, 256, 1]
    out: list[Spec] = []
    if ws is not None:
        mc = find_modelcycle(args.modelcycle)
        mc_env = {"MODELCYCLE_WORKSPACE": str(ws)}
        batching = ["--max-batch-size", str(args.batch_size)]
        if args.batch_latency_ms is not None:
            batching += ["--max-latency-ms", str(args.batch_latency_ms)]
        variants = [
            ("mc1", ["--workers", "1"], unbatched, True),
            ("mc1_nolog", ["--workers", "1", "--log-sample-rate", "0"], unbatched, False),
            ("mcN", [], unbatched, True),
            ("mcbatch1", ["--workers", "1", *batching], batched, False),
            ("mcbatchN", batching, batched, False),
        ]
        for name, extra, loads, seq in variants:
            port = free_port()
            cmd = [mc, "serve", f"{MODEL}@1", "--host", "127.0.0.1", "--port", str(port), *extra]
            targets = [Target(f"{name}_inv", "/invocations", inputs, first, loads, seq)]
            if name == "mc1":
                v1 = f"/v1/models/{MODEL}/predict"
                targets.append(Target("mc1_v1", v1, inputs, first, unbatched, True))
            out.append(Spec(name, cmd, mc_env, str(ws), port, targets))
    here = str(PEERS_DIR)
    port = free_port()
    if "model_uri" in meta:
        cmd = [venv(args, "mlflow", "mlflow"), "models", "serve", "-m", meta["model_uri"]]
        cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        targets = [Target("mlflow", "/invocations", inputs, first, peers_loads, True)]
        out.append(
            Spec("mlflow", cmd, {"MLFLOW_TRACKING_URI": meta["tracking"]}, here, port, targets)
        )
    bento = venv(args, "bentoml", "bentoml")
    one: Callable[[Any], bool] = lambda r: r == expected  # noqa: E731
    listed: Callable[[Any], bool] = lambda r: r == [expected]  # noqa: E731
    rows = json.dumps({"rows": [row]})
    bento_targets = [
        ("W4Model", Target("bentoml", "/predict", peer_row, one, peers_loads, True)),
        ("W4ModelBatched", Target("bentoml_b", "/predict", rows, listed, batched, False)),
    ]
    for service, target in bento_targets:
        port = free_port()
        cmd = [bento, "serve", f"w4_bento_service:{service}", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--working-dir", here]
        out.append(Spec(target.key, cmd, {}, here, port, [target]))
    port = free_port()
    cmd = [venv(args, "ref", "uvicorn"), "w4_ceiling_app:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--app-dir", here, "--http", "httptools", "--loop", "uvloop"]
    const: Callable[[Any], bool] = lambda r: r == {"predictions": [1]}  # noqa: E731
    out.append(
        Spec(
            "starlette",
            cmd,
            {},
            here,
            port,
            [
                Target("starlette_predict", "/predict", peer_row, first, unbatched, True),
                Target("starlette_const", "/const", peer_row, const, unbatched, False),
            ],
        )
    )
    selected = [s for s in out if not args.only or s.name in args.only]
    for s in selected:
        # as if the venv were activated: `mlflow models serve` runs a bare `uvicorn`
        s.env = {
            **COMMON_ENV,
            "W4_MODEL_PATH": str(dd / "w4_model.joblib"),
            "BENTOML_HOME": str(dd / "bentoml_home"),
            **s.env,
            "PATH": os.path.dirname(s.cmd[0]) + os.pathsep + os.environ.get("PATH", ""),
        }
    return selected


def start_all(servers: list[Spec], log_dir: Path) -> None:
    for s in servers:
        s.server = peer.Server(s.name, s.cmd, s.env, s.cwd, str(log_dir))
        s.server.start()
    for s in servers:
        t = s.targets[0]
        ready = s.server.wait_ready(f"http://127.0.0.1:{s.port}{t.path}", t.body, t.check)
        for t in s.targets:
            status, text = peer.post(f"http://127.0.0.1:{s.port}{t.path}", t.body)
            if status != 200 or not t.check(json.loads(text)):
                raise RuntimeError(f"{t.key}: unexpected answer {status} {text[:300]}")
        procs = peer.tree_procs(s.server.proc.pid)
        s.info = {
            "ready_s": round(ready, 1),
            "processes": len(procs),
            "threads": sum(p[3] for p in procs),
            "rss_idle_mib": round(sum(p[2] for p in procs) / 1024),
        }
        print(
            f"  {s.name:10s} ready in {ready:5.1f} s on port {s.port}: {len(procs)} processes,"
            f" {s.info['threads']} threads, idle RSS {s.info['rss_idle_mib']} MiB",
            flush=True,
        )
    # further workers of a multi-worker server may still be loading: wait until all idle
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        before = {s.name: server_ticks(s) for s in servers}
        time.sleep(2.0)
        busy = sum(server_ticks(s) - before[s.name] for s in servers) / peer.HZ / 2.0
        if busy < 0.05:
            break
    # what the idle servers cost while others are measured
    before = {s.name: server_ticks(s) for s in servers}
    time.sleep(5.0)
    for s in servers:
        s.info["idle_cpu_share"] = (server_ticks(s) - before[s.name]) / peer.HZ / (5.0 * peer.NCPU)
    idle = ", ".join(f"{s.name} {s.info['idle_cpu_share']:.1%}" for s in servers)
    print(f"  idle CPU share (of {peer.NCPU} cores): {idle}", flush=True)


def stop_all(servers: list[Spec]) -> None:
    for s in servers:
        if s.server is not None and s.server.proc is not None:
            s.server.stop()


def server_ticks(s: Spec) -> int:
    return sum(p[1] for p in peer.tree_procs(s.server.proc.pid))


# --------------------------------------------------------------------------- measuring
def measure(args: argparse.Namespace, s: Spec, t: Target, load: str, lua: str) -> dict[str, Any]:
    """One timed run of ``load`` ("c32", "c1", "seq1") against ``t``, with CPU shares."""
    url = f"http://127.0.0.1:{s.port}{t.path}"
    conns = 1 if load == "seq1" else int(load[1:])
    threads = min(2, conns)
    if load == "seq1":
        peer.run_seq(s.port, t.path, t.body, min(2.0, args.seq_duration))  # warm-up
    else:
        peer.run_wrk(url, lua, conns, threads, args.warmup)  # warm-up, discarded
    quiet = peer.wait_quiet(args.max_wait_quiet) if args.max_wait_quiet > 0 else None
    s0, b0, t0 = server_ticks(s), peer.cpu_busy_ticks(), time.monotonic()
    if load == "seq1":
        c0 = time.process_time()
        res: dict[str, Any] = peer.run_seq(s.port, t.path, t.body, args.seq_duration)
        client = time.process_time() - c0
        res["valid"] = res["non2xx"] == 0
    else:
        text, client = peer.run_wrk(url, lua, conns, threads, args.duration)
        res = peer.parse_wrk(text)
        res["valid"] = (
            res["rps"] is not None
            and res["non2xx"] == 0
            and res["socket_errors"] == 0
            and "error" not in text.lower()
        )
        if not res["valid"]:
            res["raw"] = text[-2000:]
    wall = time.monotonic() - t0
    busy = (peer.cpu_busy_ticks() - b0) / peer.HZ
    srv = (server_ticks(s) - s0) / peer.HZ
    res.update(
        {
            # requests per CPU-second the server used: less sensitive to other load
            "per_cpu_s": res["requests"] / srv if srv > 0 and res.get("requests") else None,
            "server_cpu": srv / (wall * peer.NCPU),
            "client_cpu": client / (wall * peer.NCPU),
            "other_cpu": max(0.0, busy - srv - client) / (wall * peer.NCPU),
            "busy_before": quiet,
            "load1": os.getloadavg()[0],
        }
    )
    return res


def loads_of(t: Target) -> list[str]:
    return [f"c{c}" for c in t.conns] + (["seq1"] if t.seq else [])


def run_all(args: argparse.Namespace, servers: list[Spec], dd: Path) -> dict[str, list[Any]]:
    plan = [(s, t, load) for s in servers for t in s.targets for load in loads_of(t)]
    luas = {}
    for s in servers:
        for t in s.targets:
            luas[t.key] = str(dd / f"serving_{t.key}.lua")
            peer.write_lua(luas[t.key], t.body)
    runs: dict[str, list[Any]] = {f"{t.key}@{load}": [] for _, t, load in plan}
    per_run = args.duration + args.warmup
    est = args.reps * sum(args.seq_duration + 2 if ld == "seq1" else per_run for *_, ld in plan)
    print(f"\n{len(plan)} loads x {args.reps} reps, at least {est / 60:.0f} min", flush=True)
    for rep in range(1, args.reps + 1):
        order = plan if rep % 2 else list(reversed(plan))
        for s, t, load in order:
            key = f"{t.key}@{load}"
            res = measure(args, s, t, load, luas[t.key])
            res["rep"] = rep
            runs[key].append(res)
            flag = "" if res["valid"] else "  INVALID: " + res.get("raw", "")[-300:]
            print(
                f"  rep {rep} {key:24s} {res['rps']:9.0f} req/s  p50 {res['p50_ms']:7.3f} ms"
                f"  p99 {res['p99_ms']:8.3f} ms  cpu server/client/other"
                f" {res['server_cpu']:.2f}/{res['client_cpu']:.2f}/{res['other_cpu']:.2f}"
                f"  load1 {res['load1']:.2f}{flag}",
                flush=True,
            )
    return runs


# --------------------------------------------------------------------------- report
def med(runs: dict[str, list[Any]], key: str, metric: str) -> float | None:
    vals = [r[metric] for r in runs.get(key, []) if r["valid"] and r.get(metric) is not None]
    return statistics.median(vals) if vals else None


def fmt(v: float | None, spec: str) -> str:
    return format(v, spec) if v is not None else "n/a"


def print_table(runs: dict[str, list[Any]]) -> None:
    print(
        f"\n{'target@load':26s} {'n':>3s} {'req/s med':>10s} {'min':>8s} {'max':>8s}"
        f" {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'srv cpu':>7s} {'cli cpu':>7s}"
        f" {'other':>6s} {'req/cpu-s':>9s}"
    )
    for key, rs in runs.items():
        ok = [r for r in rs if r["valid"]]
        if not ok:
            print(f"{key:26s} {0:>3d}/{len(rs)} invalid")
            continue
        rps = [r["rps"] for r in ok]
        print(
            f"{key:26s} {len(ok):3d} {statistics.median(rps):10.0f} {min(rps):8.0f}"
            f" {max(rps):8.0f} {fmt(med(runs, key, 'p50_ms'), '8.3f')}"
            f" {fmt(med(runs, key, 'p99_ms'), '8.3f')} {fmt(med(runs, key, 'max_ms'), '8.1f'):>8s}"
            f" {fmt(med(runs, key, 'server_cpu'), '7.2f')} {fmt(med(runs, key, 'client_cpu'), '7.2f')}"
            f" {fmt(med(runs, key, 'other_cpu'), '6.2f')} {fmt(med(runs, key, 'per_cpu_s'), '9.0f')}"
        )


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISS")


def targets(runs: dict[str, list[Any]]) -> list[str]:
    """The issue's targets, printed and returned as SUMMARY fields."""

    def rps(key: str) -> float | None:
        return med(runs, key, "rps")

    def best(keys: list[str], metric: str, pick: Callable[..., float]) -> float | None:
        vals = [v for k in keys if (v := med(runs, k, metric)) is not None]
        return pick(vals) if vals else None

    fields: list[str] = []
    lines: list[str] = []
    mc = rps("mc1_inv@c32")
    mc_p99 = med(runs, "mc1_inv@c32", "p99_ms")
    peer_rps = best([f"{p}@c32" for p in PEERS], "rps", max)
    peer_p99 = best([f"{p}@c32" for p in PEERS], "p99_ms", min)
    r1 = ratio(mc, peer_rps)
    p1 = ratio(mc_p99, peer_p99)
    ok1 = None if r1 is None or p1 is None else r1 >= T1_RATIO and p1 <= T1_P99
    lines.append(
        f"T1 mc1 {fmt(mc, '.0f')} req/s vs better peer {fmt(peer_rps, '.0f')}: {fmt(r1, '.2f')}x"
        f" (>= {T1_RATIO}x); p99 {fmt(mc_p99, '.2f')} ms vs lower peer p99"
        f" {fmt(peer_p99, '.2f')} ms: {fmt(p1, '.2f')} (<= {T1_P99}) -> {verdict(ok1)}"
    )
    fields += [
        f"modelcycle_rps={fmt(mc, '.0f')}",
        f"peer_rps={fmt(peer_rps, '.0f')}",
        f"ratio={fmt(r1, '.2f')}",
        f"p99_ms={fmt(mc_p99, '.2f')}",
        f"peer_p99_ms={fmt(peer_p99, '.2f')}",
        f"p99_ratio={fmt(p1, '.2f')}",
        f"T1={verdict(ok1)}",
    ]
    ceiling = rps("starlette_predict@c32")
    r2 = ratio(mc, ceiling)
    ok2 = None if r2 is None else r2 >= T2_SHARE
    lines.append(
        f"T2 mc1 {fmt(mc, '.0f')} req/s vs Starlette+predict {fmt(ceiling, '.0f')}:"
        f" {fmt(r2, '.0%')} (>= {T2_SHARE:.0%}) -> {verdict(ok2)}"
    )
    fields += [f"starlette_rps={fmt(ceiling, '.0f')}", f"of_starlette={fmt(r2, '.2f')}"]
    fields.append(f"T2={verdict(ok2)}")
    wrk1 = med(runs, "mc1_inv@c1", "p50_ms")
    raw1 = med(runs, "mc1_inv@seq1", "p50_ms")
    ok3 = None if wrk1 is None or raw1 is None else wrk1 < T3_P50_MS and raw1 < T3_P50_MS
    lines.append(
        f"T3 mc1 single-connection p50: wrk -c1 {fmt(wrk1, '.3f')} ms, raw seq1"
        f" {fmt(raw1, '.3f')} ms (< {T3_P50_MS} ms) -> {verdict(ok3)}"
    )
    fields += [f"c1_p50_ms={fmt(wrk1, '.3f')}", f"seq1_p50_ms={fmt(raw1, '.3f')}"]
    fields.append(f"T3={verdict(ok3)}")
    oks: list[bool | None] = []
    for c in (32, 256):
        ours = best([f"mcbatch1_inv@c{c}", f"mcbatchN_inv@c{c}"], "rps", max)
        theirs = best([f"{p}@c{c}" for p in BATCH_PEERS], "rps", max)
        r4 = ratio(ours, theirs)
        oks.append(None if r4 is None else r4 >= T4_RATIO)
        lines.append(
            f"T4 batching at {c} conns: {fmt(ours, '.0f')} req/s vs best peer"
            f" {fmt(theirs, '.0f')}: {fmt(r4, '.2f')}x (>= {T4_RATIO}x) -> {verdict(oks[-1])}"
        )
        fields += [f"batch_c{c}_rps={fmt(ours, '.0f')}", f"peer_c{c}_rps={fmt(theirs, '.0f')}"]
        fields.append(f"batch_c{c}_ratio={fmt(r4, '.2f')}")
    ok4 = None if None in oks else all(oks)
    fields.append(f"T4={verdict(ok4)}")
    print("\ntargets (medians):")
    for line in lines:
        print("  " + line)
    return fields


# --------------------------------------------------------------------------- main
def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians)")
    ap.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of wrk warm-up per run")
    ap.add_argument("--seq-duration", type=float, default=10.0, help="seconds per seq1 run")
    ap.add_argument("--only", nargs="+", default=[], choices=SERVERS, help="servers to run")
    ap.add_argument("--quick", action="store_true", help="smoke: 3 s runs, 1 rep, no waiting")
    ap.add_argument("--batch-size", type=int, default=64, help="--max-batch-size of mcbatch*")
    ap.add_argument("--batch-latency-ms", type=float, help="--max-latency-ms (server default)")
    ap.add_argument("--max-wait-quiet", type=float, default=10.0, help="s to wait for < 25%% busy")
    ap.add_argument("--venvs", default=str(BENCH_HOME / "venvs"), help="peer venvs")
    ap.add_argument("--data", type=Path, default=BENCH_HOME / "data", help="data folder")
    ap.add_argument("--modelcycle", help="modelcycle executable (default: PATH, then .venv)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch workspace")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.duration, args.warmup = 1, 3, 1
        args.seq_duration, args.max_wait_quiet = 3.0, 0.0
    return args


def main() -> None:
    args = parse()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    import modelcycle

    # 256 connections plus the servers' own files
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    dd = args.data / "serving"
    log_dir = dd / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"bench_serving  modelcycle {modelcycle.__version__}  reps={args.reps}"
        f"  duration={args.duration}s  cores={os.cpu_count()}  load {os.getloadavg()[0]:.2f}"
        f"  wrk {peer.sh(['dpkg-query', '-W', '-f=${Version}', 'wrk']).strip()}",
        flush=True,
    )
    t = time.perf_counter()
    meta = train(args, dd)
    if "in_process" in meta:
        ip = meta["in_process"]
        print(
            f"  in-process predict (ref venv): one row {ip['one_row_us_per_call']:.0f} us,"
            f" json+predict+json {ip['json_parse_predict_dump_calls_per_s'][0]:.0f} calls/s",
            flush=True,
        )
    want_mc = not args.only or any(n.startswith("mc") for n in args.only)
    servers: list[Spec] = []
    with scratch(args.data, "serving", args.keep, 0.0) as work:
        ws = (
            register(work, dd / "w4_model.joblib", meta["row"], meta["expected"])
            if want_mc
            else None
        )
        print(f"  set-up (untimed) {time.perf_counter() - t:.1f} s", flush=True)
        try:
            servers = specs(args, dd, ws, meta)
            start_all(servers, log_dir)
            runs = run_all(args, servers, dd)
        finally:
            stop_all(servers)
    print_table(runs)
    fields = targets(runs)
    out_dir = args.data / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"serving-{time.strftime('%Y%m%d-%H%M%S')}.json"
    info = {
        "reps": args.reps,
        "duration": args.duration,
        "batch_size": args.batch_size,
        "batch_latency_ms": args.batch_latency_ms,
        "in_process": meta.get("in_process"),
        "servers": {s.name: {"cmd": s.cmd[1:], **s.info} for s in servers},
    }
    path.write_text(json.dumps({"meta": info, "runs": runs}, indent=1))
    print(f"results: {path}")
    print(
        "SUMMARY bench_serving "
        + " ".join(fields)
        + f" reps={args.reps} duration={args.duration}s load1={os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
