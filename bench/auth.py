"""Authentication overhead per request: modelcycle's API tokens vs MLflow's basic auth.

The claim (the issue): tokens are checked with a cache, so authentication adds < 1 ms
per request; MLflow's basic auth is reported 40-90x slower.

Servers, each a real process on 127.0.0.1 in its own session, one worker, started fresh
in every repetition (so that the first request after start finds every cache empty):

  mc_open             `modelcycle server --port P --no-scheduler` on a fresh workspace
                      (MODELCYCLE_WORKSPACE) that has no token, so it runs open on
                      loopback; GET /api/v1/whoami (--mc-path) without a header
  mc_auth             the same command on a second fresh workspace in which
                      `ws.tokens.create("bench", role="reader")` made one token before the
                      server first started; every request carries `Authorization: Bearer
                      SECRET`. (Two workspaces rather than one before and after: both
                      servers run at once, so their requests can be interleaved.)
  mlflow_open         `mlflow server --workers 1 --backend-store-uri sqlite:///...`;
                      GET /api/2.0/mlflow/experiments/get?experiment_id=0 (--mlflow-path)
  mlflow_auth         the same with `--app-name basic-auth`: its own user database and
                      admin user from an ini file named by MLFLOW_AUTH_CONFIG_PATH (MLflow
                      ships no admin password), its defaults otherwise; every request
                      carries `Authorization: Basic` of the admin user (admins skip the
                      permission checks: MLflow's cheapest authenticated path)
  mlflow_auth_cached  the same with `auth_cache_ttl_seconds = 5` (--mlflow-cache-ttl) in
                      the ini: MLflow's opt-in credential cache (off by default), with the
                      lifetime of modelcycle's token cache

MLflow runs with telemetry off and MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (its job
runner and huey consumers are eight more processes that no request here uses; off, the
machine is quieter for everyone). `mlflow[auth]` (Flask-WTF) must be installed in its
venv, and MLFLOW_FLASK_SERVER_SECRET_KEY set (a random one per run), or basic-auth will
not start.

Per repetition, the two sides (modelcycle's pair, MLflow's three) take turns going
first, and within a side the order of the servers flips too. For one side:

  1. start its servers, wait for /health (at most 240 s), then until their processes
     are idle (at most 60 s);
  2. per server, one keep-alive connection (httpx.Client): GET /health (opens it,
     untimed), then one timed request: `cold`, the first after start (modelcycle's
     token cache and its "tokens required" cache are empty);
  3. warm-up: --warmup requests (at most 5 s) per server, untimed; then wait (at most
     --max-wait-quiet s) for the machine to be under 25% busy;
  4. timed: the servers take turns, chunks of up to --chunk requests or 1 s, one request
     at a time, until each has made --requests or spent --max-seconds (MLflow with basic
     auth makes far fewer: the bound is time). Every answer must be 200. Per request the
     client's round trip is recorded; per server, the CPU its processes used (from
     /proc) per request;
  5. `stale`: all idle for modelcycle's cache lifetime + 0.5 s, then one timed request
     per server (modelcycle's caches have expired: a database lookup again);
  6. a request without credentials to each server with auth must answer 401;
  7. stop the servers (SIGTERM to their process group, SIGKILL after 15 s).

Figures: per server and repetition, the median, p90 and p99 latency, `cold`, `stale`
and CPU us/request; medians over repetitions. Overhead = latency with auth - latency
open, per repetition (same side, same moment), median over repetitions; the same for
`cold`, `stale` and CPU time. Target: modelcycle's overhead < 1 ms. `ratio` = MLflow's
overhead / modelcycle's; `ratio_worst_rep` = MLflow's overhead / modelcycle's largest
per-repetition overhead (conservative), and `ratio` is that, as a lower bound `>Nx`, when
modelcycle's median overhead is lost in the noise (<= 0); `latency_ratio` = MLflow's
latency with auth / modelcycle's.

    .venv/bin/python bench/auth.py [--reps 5] [--requests 2000]
    .venv/bin/python bench/auth.py --smoke                      # 1 rep, 100 requests, ~1-2 min
    .venv/bin/python bench/auth.py --no-mlflow --reps 3         # modelcycle's pair only

Server logs: $BENCH_HOME/data/auth/logs/; raw results: $BENCH_HOME/data/results/auth-*.json.
The last line is `SUMMARY bench_auth modelcycle_overhead_ms=... mlflow_overhead_ms=...
ratio=...x target=<1ms ...`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from _common import BENCH_HOME, find_modelcycle, scratch
from tracking import loadavg, wait_quiet

TARGET_MS = 1.0
MC_PATH = "/api/v1/whoami"
MLFLOW_PATH = "/api/2.0/mlflow/experiments/get?experiment_id=0"
MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}
HZ = os.sysconf("SC_CLK_TCK")
READY_S, IDLE_S, STOP_S = 240.0, 60.0, 15.0
CHUNK_S = 1.0


@dataclass
class Server:
    """One server process and how to ask it."""

    name: str
    side: str  # "modelcycle" or "mlflow"
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    path: str
    headers: dict[str, str]
    expect: tuple[str, Any] | None  # a key of the JSON answer, and its value (None: any)
    auth: bool
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def children() -> dict[int, list[int]]:
    """{ppid: [pid, ...]} of every process, from /proc."""
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out.setdefault(ppid, []).append(int(d))
    return out


def tree(root: int) -> list[int]:
    kids = children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + sys) the live processes among `pids` have used."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / HZ


def start(s: Server, log_dir: Path, rep: int) -> None:
    s.log = (log_dir / f"{s.name}.log").open("ab")
    s.log.write(f"\n===== rep {rep}: {' '.join(s.cmd)}\n".encode())
    s.log.flush()
    # own session and process group: stop() signals exactly the processes started here
    s.proc = subprocess.Popen(
        s.cmd,
        cwd=s.cwd,
        env={**os.environ, **s.env},
        stdout=s.log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_ready(s: Server, t0: float, log_dir: Path) -> float:
    """Seconds from `t0` until GET /health answers 200 (exits if the server dies)."""
    assert s.proc is not None
    while time.monotonic() - t0 < READY_S:
        if s.proc.poll() is not None:
            tail = (log_dir / f"{s.name}.log").read_text(errors="replace")[-2500:]
            hint = ""
            if "Flask-WTF" in tail:
                hint = "\nhint: install MLflow's auth extra: $BENCH_HOME/venvs/mlflow/bin/pip install 'mlflow[auth]'"
            sys.exit(f"{s.name} exited with {s.proc.returncode}:\n{tail}{hint}")
        try:
            if httpx.get(s.base + "/health", timeout=2.0).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    sys.exit(f"{s.name} did not answer /health within {READY_S:.0f} s")


def wait_idle(servers: list[Server]) -> None:
    """Until the servers' processes use < 5% of a core for 2 s in a row (at most IDLE_S)."""
    deadline = time.monotonic() + IDLE_S
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        pids = [p for s in servers for p in s.pids]
        before = cpu_s(pids)
        time.sleep(1.0)
        quiet = quiet + 1 if cpu_s(pids) - before < 0.05 else 0


def stop(s: Server) -> None:
    if s.proc is None:
        return
    pgid = s.proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_S
    while time.monotonic() < deadline:
        s.proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    s.proc.wait(timeout=10)
    s.proc = None
    if s.log is not None:
        s.log.close()
        s.log = None


# --------------------------------------------------------------------------- set-up
def modelcycle_servers(args: argparse.Namespace, work: Path) -> tuple[list[Server], float]:
    """Two fresh workspaces, one with a reader token; returns the servers and the token
    cache's lifetime."""
    import modelcycle as mc

    exe = find_modelcycle(args.modelcycle)
    with mc.Workspace.create(work / "ws-open"):
        pass
    with mc.Workspace.create(work / "ws-auth") as ws:
        _, secret = ws.tokens.create("bench", role="reader")
        ttl = float(ws.tokens.ttl)
    out = []
    for name, ws_dir, headers in [
        ("mc_open", work / "ws-open", {}),
        ("mc_auth", work / "ws-auth", {"Authorization": f"Bearer {secret}"}),
    ]:
        port = free_port()
        auth = bool(headers)
        role = "reader" if auth else "admin"  # open: the workspace's own user, as admin
        out.append(
            Server(
                name=name,
                side="modelcycle",
                cmd=[exe, "server", "--host", "127.0.0.1", "--port", str(port), "--no-scheduler"],
                env={"MODELCYCLE_WORKSPACE": str(ws_dir)},
                cwd=ws_dir,
                port=port,
                path=args.mc_path,
                headers=headers,
                expect=("role", role) if args.mc_path == MC_PATH else None,
                auth=auth,
            )
        )
    return out, ttl


def mlflow_servers(args: argparse.Namespace, work: Path) -> list[Server]:
    """MLflow open, with basic auth, and with basic auth and its credential cache."""
    exe = args.mlflow or str(BENCH_HOME / "venvs/mlflow/bin/mlflow")
    if not os.access(exe, os.X_OK):
        sys.exit(
            f"{exe} not found: python3.11 -m venv $BENCH_HOME/venvs/mlflow &&"
            " $BENCH_HOME/venvs/mlflow/bin/pip install 'mlflow[auth]' (or pass --mlflow)"
        )
    password = secrets.token_urlsafe(18)
    basic = base64.b64encode(f"admin:{password}".encode()).decode()
    variants: list[tuple[str, int | None]] = [("mlflow_open", None), ("mlflow_auth", 0)]
    if args.mlflow_cache_ttl > 0:
        variants.append(("mlflow_auth_cached", args.mlflow_cache_ttl))
    out = []
    for name, cache_ttl in variants:
        d = work / name
        d.mkdir()
        port = free_port()
        cmd = [exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        cmd += ["--backend-store-uri", f"sqlite:///{d}/mlflow.db"]
        cmd += ["--artifacts-destination", str(d / "artifacts")]
        env = {
            **MLFLOW_ENV,
            # as if the venv were activated: the server starts `python -m uvicorn`
            "PATH": os.path.dirname(exe) + os.pathsep + os.environ.get("PATH", ""),
        }
        headers: dict[str, str] = {}
        if cache_ttl is not None:
            ini = d / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\n"
                "default_permission = READ\n"
                f"database_uri = sqlite:///{d}/basic_auth.db\n"
                "admin_username = admin\n"
                f"admin_password = {password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                f"auth_cache_ttl_seconds = {cache_ttl}\n"
            )
            cmd += ["--app-name", "basic-auth"]
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(16)
            headers = {"Authorization": f"Basic {basic}"}
        out.append(
            Server(
                name=name,
                side="mlflow",
                cmd=cmd,
                env=env,
                cwd=d,
                port=port,
                path=args.mlflow_path,
                headers=headers,
                expect=("experiment", None) if args.mlflow_path == MLFLOW_PATH else None,
                auth=cache_ttl is not None,
            )
        )
    return out


# --------------------------------------------------------------------------- measuring
def timed_get(client: httpx.Client, s: Server) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    r = client.get(s.path)
    ms = (time.perf_counter() - t0) * 1e3
    if r.status_code != 200:
        raise RuntimeError(f"{s.name}: GET {s.path} answered {r.status_code}: {r.text[:300]}")
    return ms, r


def answer_ok(s: Server, body: Any) -> bool:
    if s.expect is None:
        return True
    key, value = s.expect
    return isinstance(body, dict) and key in body and (value is None or body[key] == value)


def chunk(client: httpx.Client, s: Server, n: int, out: list[float]) -> float:
    """Up to `n` requests or CHUNK_S seconds; returns the seconds spent."""
    t0 = time.perf_counter()
    for _ in range(n):
        out.append(timed_get(client, s)[0])
        if time.perf_counter() - t0 >= CHUNK_S:
            break
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))]


def measure_side(
    args: argparse.Namespace, servers: list[Server], rep: int, log_dir: Path, stale_wait: float
) -> dict[str, dict[str, Any]]:
    """Steps 1-7 of the docstring for one side; per server, this repetition's figures."""
    t0 = time.monotonic()
    try:
        for s in servers:
            start(s, log_dir, rep)
        ready = {s.name: wait_ready(s, t0, log_dir) for s in servers}
        for s in servers:
            assert s.proc is not None
            s.pids = tree(s.proc.pid)
        wait_idle(servers)
        order = servers if rep % 2 else list(reversed(servers))
        clients = {
            s.name: httpx.Client(base_url=s.base, headers=s.headers, timeout=30.0) for s in order
        }
        try:
            return measure_clients(args, order, clients, ready, stale_wait)
        finally:
            for c in clients.values():
                c.close()
    finally:
        for s in servers:
            stop(s)


def measure_clients(
    args: argparse.Namespace,
    order: list[Server],
    clients: dict[str, httpx.Client],
    ready: dict[str, float],
    stale_wait: float,
) -> dict[str, dict[str, Any]]:
    res: dict[str, dict[str, Any]] = {}
    for s in order:
        client = clients[s.name]
        client.get("/health")  # opens the keep-alive connection, untimed
        cold, r = timed_get(client, s)
        if not answer_ok(s, r.json()):
            raise RuntimeError(f"{s.name}: unexpected answer {r.text[:300]}")
        res[s.name] = {"ready_s": round(ready[s.name], 2), "cold_ms": cold}
    for s in order:
        warm: list[float] = []
        end = time.perf_counter() + 5.0
        while len(warm) < args.warmup and time.perf_counter() < end:
            warm.append(timed_get(clients[s.name], s)[0])
    wait_quiet(args.max_wait_quiet)
    lat: dict[str, list[float]] = {s.name: [] for s in order}
    spent = dict.fromkeys(lat, 0.0)
    cpu = dict.fromkeys(lat, 0.0)
    turn = list(order)
    want, budget = int(args.requests), float(args.max_seconds)

    def done(s: Server) -> bool:
        return len(lat[s.name]) >= want or spent[s.name] >= budget

    while not all(done(s) for s in turn):
        for s in turn:
            if done(s):
                continue
            c0 = cpu_s(s.pids)
            n = min(args.chunk, want - len(lat[s.name]))
            spent[s.name] += chunk(clients[s.name], s, n, lat[s.name])
            cpu[s.name] += cpu_s(s.pids) - c0
        turn = turn[1:] + turn[:1]
    time.sleep(stale_wait)
    for s in order:
        res[s.name]["stale_ms"] = timed_get(clients[s.name], s)[0]
    for s in order:
        if s.auth:
            status = httpx.get(s.base + s.path, timeout=30.0).status_code
            if status != 401:
                raise RuntimeError(f"{s.name}: a request without credentials answered {status}")
    load1 = os.getloadavg()[0]
    for s in order:
        v = lat[s.name]
        res[s.name].update(
            n=len(v),
            median_ms=statistics.median(v),
            p90_ms=pct(v, 0.90),
            p99_ms=pct(v, 0.99),
            mean_ms=statistics.fmean(v),
            min_ms=min(v),
            max_ms=max(v),
            cpu_us=cpu[s.name] / len(v) * 1e6,
            spent_s=spent[s.name],
            load1=load1,
        )
    return res


# --------------------------------------------------------------------------- report
METRICS = ("median_ms", "p90_ms", "p99_ms", "cold_ms", "stale_ms", "cpu_us")
PAIRS = [
    ("modelcycle", "mc_auth", "mc_open"),
    ("mlflow", "mlflow_auth", "mlflow_open"),
    ("mlflow_cached", "mlflow_auth_cached", "mlflow_open"),
]


def med(runs: dict[str, list[dict[str, Any]]], name: str, metric: str) -> float | None:
    vals = [r[metric] for r in runs.get(name, [])]
    return statistics.median(vals) if vals else None


def diffs(runs: dict[str, list[dict[str, Any]]], auth: str, open_: str, metric: str) -> list[float]:
    """(with auth - open) per repetition (both measured in the same turn)."""
    pairs = zip(runs.get(auth, []), runs.get(open_, []), strict=False)
    return [a[metric] - o[metric] for a, o in pairs]


def overhead(
    runs: dict[str, list[dict[str, Any]]], auth: str, open_: str, metric: str
) -> float | None:
    """Median over repetitions of (with auth - open)."""
    d = diffs(runs, auth, open_, metric)
    return statistics.median(d) if d else None


def fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def print_table(runs: dict[str, list[dict[str, Any]]]) -> None:
    print(
        f"\n{'server':19s} {'reps':>4s} {'n/rep':>6s} {'median ms':>9s} {'min-max':>15s}"
        f" {'p90 ms':>8s} {'p99 ms':>8s} {'cold ms':>8s} {'stale ms':>8s} {'cpu us/req':>10s}"
    )
    for name, rs in runs.items():
        meds = [r["median_ms"] for r in rs]
        print(
            f"{name:19s} {len(rs):4d} {statistics.median(r['n'] for r in rs):6.0f}"
            f" {statistics.median(meds):9.3f} {min(meds):7.3f}-{max(meds):<7.3f}"
            + "".join(
                f" {fmt(med(runs, name, m), '8.3f')}"
                for m in ("p90_ms", "p99_ms", "cold_ms", "stale_ms")
            )
            + f" {fmt(med(runs, name, 'cpu_us'), '10.0f')}"
        )


def print_overheads(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    print(
        f"\n{'overhead (auth - open)':22s} {'median ms':>9s} {'p99 ms':>8s} {'cold ms':>8s} {'stale ms':>8s} {'cpu us/req':>10s}"
    )
    out: dict[str, dict[str, float | None]] = {}
    for label, auth, open_ in PAIRS:
        if auth not in runs or open_ not in runs:
            continue
        out[label] = {m: overhead(runs, auth, open_, m) for m in METRICS}
        o = out[label]
        print(
            f"{label:22s} {fmt(o['median_ms'], '9.3f')} {fmt(o['p99_ms'], '8.3f')}"
            f" {fmt(o['cold_ms'], '8.3f')} {fmt(o['stale_ms'], '8.3f')} {fmt(o['cpu_us'], '10.0f')}"
        )
    return out


def summary(
    runs: dict[str, list[dict[str, Any]]],
    over: dict[str, dict[str, float | None]],
    args: argparse.Namespace,
) -> str:
    mc_o = over.get("modelcycle", {}).get("median_ms")
    ml_o = over.get("mlflow", {}).get("median_ms")
    # modelcycle's overhead can be below the noise (even negative): then the ratio is given
    # as a lower bound, against the largest per-repetition overhead
    worst = max(diffs(runs, "mc_auth", "mc_open", "median_ms"), default=0.0)
    ratio = "n/a"
    if ml_o is not None and mc_o is not None and mc_o > 0:
        ratio = f"{ml_o / mc_o:.0f}x"
    elif ml_o is not None and worst > 0:
        ratio = f">{ml_o / worst:.0f}x"
    worst_ratio = f"{ml_o / worst:.0f}x" if ml_o is not None and worst > 0 else "n/a"
    mc_auth, ml_auth = med(runs, "mc_auth", "median_ms"), med(runs, "mlflow_auth", "median_ms")
    lat_ratio = f"{ml_auth / mc_auth:.0f}x" if mc_auth and ml_auth else "n/a"
    verdict = "n/a" if mc_o is None else ("ok" if mc_o < TARGET_MS else "MISS")
    fields = [
        f"modelcycle_overhead_ms={fmt(mc_o, '.3f')}",
        f"mlflow_overhead_ms={fmt(ml_o, '.3f')}",
        f"ratio={ratio}",
        f"target=<{TARGET_MS:g}ms",
        f"verdict={verdict}",
        f"ratio_worst_rep={worst_ratio}",
        f"modelcycle_worst_rep_overhead_ms={worst:.3f}",
        f"latency_ratio={lat_ratio}",
        f"modelcycle_open_ms={fmt(med(runs, 'mc_open', 'median_ms'), '.3f')}",
        f"modelcycle_auth_ms={fmt(mc_auth, '.3f')}",
        f"mlflow_open_ms={fmt(med(runs, 'mlflow_open', 'median_ms'), '.3f')}",
        f"mlflow_auth_ms={fmt(ml_auth, '.3f')}",
        f"modelcycle_cold_overhead_ms={fmt(over.get('modelcycle', {}).get('cold_ms'), '.3f')}",
        f"modelcycle_stale_overhead_ms={fmt(over.get('modelcycle', {}).get('stale_ms'), '.3f')}",
        f"modelcycle_cpu_overhead_us={fmt(over.get('modelcycle', {}).get('cpu_us'), '.0f')}",
        f"mlflow_cpu_overhead_us={fmt(over.get('mlflow', {}).get('cpu_us'), '.0f')}",
        f"mlflow_cached_overhead_ms={fmt(over.get('mlflow_cached', {}).get('median_ms'), '.3f')}",
        f"reps={args.reps}",
        f"requests={args.requests}",
        f"load1={os.getloadavg()[0]:.2f}",
    ]
    return "SUMMARY bench_auth " + " ".join(fields)


# --------------------------------------------------------------------------- main
def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=5, help="repetitions (medians)")
    ap.add_argument("--requests", type=int, default=2000, help="timed requests per server and rep")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="time bound per server and rep")
    ap.add_argument("--warmup", type=int, default=50, help="untimed requests per server (<= 5 s)")
    ap.add_argument("--chunk", type=int, default=100, help="requests per turn (<= 1 s)")
    ap.add_argument("--max-wait-quiet", type=float, default=10.0, help="s to wait for < 25%% busy")
    ap.add_argument("--mc-path", default=MC_PATH, help="modelcycle's endpoint")
    ap.add_argument("--mlflow-path", default=MLFLOW_PATH, help="MLflow's endpoint")
    ap.add_argument("--mlflow-cache-ttl", type=int, default=5, help="0: no mlflow_auth_cached")
    ap.add_argument("--no-mlflow", action="store_true", help="modelcycle's pair only")
    ap.add_argument(
        "--mlflow", help="mlflow executable (default $BENCH_HOME/venvs/mlflow/bin/mlflow)"
    )
    ap.add_argument("--modelcycle", help="modelcycle executable (default: PATH, then .venv)")
    ap.add_argument("--data", type=Path, default=BENCH_HOME / "data", help="data folder")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--smoke", action="store_true", help="1 rep, 100 requests, 5 s bounds")
    args = ap.parse_args()
    if args.smoke:
        args.reps, args.requests, args.max_seconds = 1, 100, 5.0
        args.warmup, args.max_wait_quiet = 5, 0.0
    return args


def main() -> None:
    args = parse()
    import modelcycle

    log_dir = args.data / "auth" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):  # this script's own logs, of the previous run
        old.unlink()
    print(
        f"bench_auth  modelcycle {modelcycle.__version__}  reps={args.reps}"
        f"  requests={args.requests}  max_seconds={args.max_seconds}"
        f"  cores={os.cpu_count()}  load {loadavg()}",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {}
    with scratch(args.data, "auth", args.keep, 0.0) as work:
        mc_side, ttl = modelcycle_servers(args, work)
        sides = [mc_side] if args.no_mlflow else [mc_side, mlflow_servers(args, work)]
        stale_wait = ttl + 0.5
        for rep in range(1, args.reps + 1):
            for side in sides if rep % 2 else list(reversed(sides)):
                res = measure_side(args, side, rep, log_dir, stale_wait)
                for s in side:
                    r = {"rep": rep, **res[s.name]}
                    runs.setdefault(s.name, []).append(r)
                    print(
                        f"  rep {rep} {s.name:19s} n {r['n']:5d}  median {r['median_ms']:8.3f} ms"
                        f"  p99 {r['p99_ms']:8.3f}  cold {r['cold_ms']:8.3f}"
                        f"  stale {r['stale_ms']:8.3f}  cpu {r['cpu_us']:8.0f} us/req"
                        f"  ready {r['ready_s']:5.1f} s  load1 {r['load1']:.2f}",
                        flush=True,
                    )
    runs = {s.name: runs[s.name] for side in sides for s in side if s.name in runs}
    print_table(runs)
    over = print_overheads(runs)
    out_dir = args.data / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"auth-{time.strftime('%Y%m%d-%H%M%S')}.json"
    meta = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    path.write_text(json.dumps({"meta": meta, "runs": runs, "overheads": over}, indent=1))
    print(f"results: {path}")
    print(summary(runs, over, args))


if __name__ == "__main__":
    main()
