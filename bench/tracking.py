"""W1: experiment tracking -- MLflow (SQLite, no server) vs modelcycle, plus logging overhead.

Data: generated. Metric values come from random.Random(0) (one float per point, as the
peer script does); 10 metrics x 10,000 steps = 100,000 points per run; 1,000 small runs
for the search figures. The training loop uses a numpy-generated binary problem (seed 46,
200,000 rows x 50 features, linear with noise).

Per repetition, each side runs in its own child process against a fresh store in a fresh
scratch folder under $BENCH_HOME/data/scratch (same file system for both); which side
goes first alternates between repetitions.

  mlflow      the peers' script, `w1_mlflow.py --backend sqlite --reps 1` (run with
              --mlflow-python, default $BENCH_HOME/venvs/mlflow/bin/python), same sizes.
              Its `w1a` is `mlflow.log_metric` once per point, synchronous (each call is
              one committed transaction); with `--budget-s 0` (our --mlflow-budget-s) it
              stops after 10,000 points and reports the rate: its per-call figure is a rate
              over 10,000 points, not 100,000 (the full run takes ~5 min).
  modelcycle  this script as a child (`--child w1`), the same phases and sizes:
    init              Workspace.create(DIR) + mc.set_workspace (the experiment itself is
                      created by the first start_run, inside w1a's run set-up)
    w1a               one run: 50 x mc.log_param (timed apart, as the peer does), then
                      10 x 10,000 mc.log_metric(key, value, step=s) calls, one per point,
                      timed until the `with` block has ended the run: every point is then
                      committed. Also reported: the rate of the calls alone.
    w1b               one run: the same 100,000 points through run.log_batch, 1,000
                      (key, value, step, timestamp) tuples per call, tuple construction
                      included, until the run has ended (committed)
    w1c_hist          ws.runs.get(run_b).metric_history("m0")  -> 10,000 points
    w1c_create        1,000 runs: start_run; log_params(5); log_metrics(5); end
    w1c_search        ws.runs.search_frame("w1c")  -> DataFrame of 1,000 rows (pandas is
                      imported before, untimed, as `import mlflow` does for the peer;
                      `pandas_import_s` says what that cost)
    w1c_search_filter the same with filter "metrics.m0 > 0.5", order_by ["metrics.m1 DESC"]
  After w1a and w1b the child reads back every series and checks its length (and after
  the filtered search, that the rows match the filter and the order), untimed.

Logging overhead ("under 2% of a 60 s scikit-learn training loop"): SGDClassifier
(log loss) .partial_fit on 256-row mini-batches, the mini-batch loss and accuracy
computed every iteration (numpy). The number of iterations is calibrated once (a short
`--child train --mode calibrate` run) so that the loop without logging takes about
--train-seconds; then each repetition runs the same iterations twice, in two child
processes, without and with logging (the order alternates): `with` adds start_run,
log_params (8 params), mc.log_metric("loss"/"accuracy", step=i) every iteration and the
run's end (all points committed), all inside the timed span; the workspace is created
before the clock starts. Both variants check they trained the same model (same final
coefficients). Overhead = (with - without) / without, per repetition (paired), on wall
time and on process CPU time (all threads: the background writer included); and
`direct %` = (time inside start_run + log_params, inside the log_metric calls, and in
the run's end, plus the CPU of threads other than the main one) / the loop without
logging: less sensitive than a difference of two ~60 s wall times to the load of other
jobs. BLAS threads are set to 1 in these children (--blas-threads) to keep the loop
steady on the 2-core machine. --max-wait-quiet S waits (up to S s) before each timed
child until the machine is under 25% busy.

Targets (the issue): per-call log_metric >= 100x MLflow's rate, log_batch >= 10x,
history / create 1,000 runs / filtered search >= 10x faster, overhead < 2%.
The last line is `SUMMARY bench_tracking ...`.

    python bench/tracking.py [--reps 3] [--train-seconds 60] [--mlflow-python PATH]
    python bench/tracking.py --steps 100 --search-runs 20 --train-seconds 2 --reps 1  # smoke

Durability is not the same on both sides: MLflow's SQLite store keeps SQLite's defaults
(rollback journal, synchronous=FULL: an fsync per committed call); modelcycle's uses
WAL with synchronous=NORMAL (a commit survives a crash of the process, fsync at WAL
checkpoints). "Committed" above means readable by any other connection.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import BENCH_HOME, PEERS_DIR, scratch, tool_order

PEER_SCRIPT = PEERS_DIR / "w1_mlflow.py"
DEFAULT_MLFLOW_PYTHON = BENCH_HOME / "venvs" / "mlflow" / "bin" / "python"
TRAIN_ROWS, TRAIN_FEATURES, TRAIN_SEED = 200_000, 50, 46
TARGET_PER_CALL = 100.0
TARGET_X = 10.0
TARGET_OVERHEAD_PCT = 2.0

# label, modelcycle key, mlflow key, kind ("rate": higher is better), target ratio
FIGURES: list[tuple[str, str, str, str, float | None]] = [
    ("init_s", "init_s", "init_s", "time", None),
    ("w1a_params_s (50 log_param)", "w1a_params_s", "w1a_params_s", "time", None),
    ("w1a log_metric pts/s (durable)", "w1a_pts_s", "w1a_pts_per_s", "rate", TARGET_PER_CALL),
    ("w1a log_metric pts/s (calls)", "w1a_calls_pts_s", "w1a_pts_per_s", "rate", None),
    ("w1a points timed", "w1a_points", "w1a_points", "count", None),
    ("w1a_s (those points)", "w1a_s", "w1a_s", "count", None),
    ("w1b log_batch pts/s (durable)", "w1b_pts_s", "w1b_pts_per_s", "rate", TARGET_X),
    ("w1b_s", "w1b_s", "w1b_s", "time", None),
    ("w1c_hist_s (10k points)", "w1c_hist_s", "w1c_hist_s", "time", TARGET_X),
    ("w1c_create_s (1,000 runs)", "w1c_create_s", "w1c_create_s", "time", TARGET_X),
    ("w1c_search_s (DataFrame)", "w1c_search_s", "w1c_search_s", "time", None),
    ("w1c_search_filter_s", "w1c_search_filter_s", "w1c_search_filter_s", "time", TARGET_X),
    ("search_filter rows", "w1c_search_filter_rows", "w1c_search_filter_rows", "count", None),
    ("import_s (untimed)", "import_s", "import_s", "count", None),
    ("process CPU s", "cpu_s", "cpu_s", "count", None),
    ("peak RSS MB", "rss_mb", "rss_mb", "count", None),
    ("other load (share of 2 cores)", "other_share", "other_share", "count", None),
]


# --------------------------------------------------------------------------- children
def child_w1(args: argparse.Namespace) -> dict[str, Any]:
    """The modelcycle side of W1, in this (fresh) process."""
    out: dict[str, Any] = {"load1_start": os.getloadavg()[0]}
    t = time.perf_counter()
    import modelcycle as mc
    from modelcycle.api import Workspace

    out["import_s"] = time.perf_counter() - t
    # `import mlflow` imports pandas (inside the peer's untimed import); search_frame
    # imports it on first use, so import it here too, untimed, and say what it cost.
    t = time.perf_counter()
    import pandas  # noqa: F401

    out["pandas_import_s"] = time.perf_counter() - t
    rng = random.Random(0)
    nm, steps, nr = args.metrics, args.steps, args.search_runs
    total = nm * steps

    t = time.perf_counter()
    ws = Workspace.create(Path(args.workdir) / "ws")
    mc.set_workspace(ws)
    out["init_s"] = time.perf_counter() - t

    # w1a: one call per point ---------------------------------------------------------
    with mc.start_run(experiment="w1") as run:
        t = time.perf_counter()
        for i in range(50):
            mc.log_param(f"p{i:02d}", f"value-{i}")
        out["w1a_params_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for s in range(steps):
            for k in range(nm):
                mc.log_metric(f"m{k}", rng.random(), step=s)
        calls = time.perf_counter() - t
    el = time.perf_counter() - t
    run_a = run.id
    out.update(w1a_points=total, w1a_calls_s=calls, w1a_calls_pts_s=total / calls)
    out.update(w1a_s=el, w1a_pts_s=total / el)
    check_run(ws, run_a, nm, steps, params=50)

    # w1b: log_batch of 1,000 tuples --------------------------------------------------
    with mc.start_run(experiment="w1") as run:
        t = time.perf_counter()
        batch: list[tuple[str, float, int, int]] = []
        ts = int(time.time() * 1000)
        for s in range(steps):
            for k in range(nm):
                batch.append((f"m{k}", rng.random(), s, ts))
                if len(batch) == 1000:
                    run.log_batch(batch)
                    batch = []
        if batch:
            run.log_batch(batch)
        calls = time.perf_counter() - t
    el = time.perf_counter() - t
    run_b = run.id
    out.update(w1b_points=total, w1b_calls_s=calls, w1b_s=el, w1b_pts_s=total / el)
    check_run(ws, run_b, nm, steps, params=0)

    # w1c ------------------------------------------------------------------------------
    t = time.perf_counter()
    hist = ws.runs.get(run_b).metric_history("m0")
    out["w1c_hist_s"] = time.perf_counter() - t
    assert len(hist) == steps, (len(hist), steps)
    out["w1c_hist_points"] = len(hist)
    t = time.perf_counter()
    hist = ws.runs.metric_history(run_b, "m0")
    out["w1c_hist_again_direct_s"] = time.perf_counter() - t

    t = time.perf_counter()
    for _ in range(nr):
        with mc.start_run(experiment="w1c"):
            mc.log_params({f"p{j}": str(rng.randint(0, 9)) for j in range(5)})
            mc.log_metrics({f"m{j}": rng.random() for j in range(5)})
    el = time.perf_counter() - t
    out.update(w1c_create_runs=nr, w1c_create_s=el, w1c_create_runs_per_s=nr / el)

    most = max(1000, nr)
    t = time.perf_counter()
    df = ws.runs.search_frame("w1c", max_results=most)
    out["w1c_search_s"] = time.perf_counter() - t
    assert len(df) == nr, (len(df), nr)
    assert {f"metrics.m{j}" for j in range(5)} | {f"params.p{j}" for j in range(5)} <= set(
        df.columns
    ), list(df.columns)

    t = time.perf_counter()
    df2 = ws.runs.search_frame(
        "w1c", filter="metrics.m0 > 0.5", order_by=["metrics.m1 DESC"], max_results=most
    )
    out["w1c_search_filter_s"] = time.perf_counter() - t
    out["w1c_search_filter_rows"] = len(df2)
    expected = int((df["metrics.m0"] > 0.5).sum())
    assert len(df2) == expected, (len(df2), expected)
    assert (df2["metrics.m0"] > 0.5).all()
    assert df2["metrics.m1"].is_monotonic_decreasing

    ws.close()
    out["load1_end"] = os.getloadavg()[0]
    return out


def check_run(ws: Any, run_id: str, nm: int, steps: int, params: int) -> None:
    """Every point is there (untimed): each series has `steps` points, steps 0..steps-1."""
    run = ws.runs.get(run_id)
    assert run.status == "finished", run.status
    assert len(run.params) == params, len(run.params)
    for k in range(nm):
        hist = ws.runs.metric_history(run_id, f"m{k}")
        assert len(hist) == steps, (run_id, k, len(hist), steps)
        assert hist[0].step == 0 and hist[-1].step == steps - 1, (hist[0], hist[-1])


def child_train(args: argparse.Namespace) -> dict[str, Any]:
    """The training loop: calibrate, or N iterations without / with logging."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier

    rng = np.random.default_rng(TRAIN_SEED)
    x = rng.normal(size=(TRAIN_ROWS, TRAIN_FEATURES))
    w = rng.normal(size=TRAIN_FEATURES)
    y = (x @ w + rng.normal(scale=2.0, size=TRAIN_ROWS) > 0).astype(np.int64)
    classes = np.array([0, 1])
    bs = args.batch_rows
    params = {"loss": "log_loss", "alpha": 1e-4, "learning_rate": "optimal"}
    clf = SGDClassifier(random_state=0, **params)
    logging = args.mode == "with"
    mc: Any = None
    if logging:
        import modelcycle as mc
        from modelcycle.api import Workspace

        mc.set_workspace(Workspace.create(Path(args.workdir) / "ws"))
    budget = args.calibrate_s if args.mode == "calibrate" else None
    iters = args.iters if budget is None else 10**9

    def step(it: int) -> tuple[float, float]:
        i = (it * bs) % (TRAIN_ROWS - bs)
        xb, yb = x[i : i + bs], y[i : i + bs]
        clf.partial_fit(xb, yb, classes=classes)
        p = np.clip(clf.predict_proba(xb)[:, 1], 1e-15, 1 - 1e-15)
        loss = float(-np.mean(yb * np.log(p) + (1 - yb) * np.log1p(-p)))
        acc = float(np.mean((p > 0.5) == yb))
        return loss, acc

    load1 = os.getloadavg()[0]
    m0, c0, t0 = time.thread_time(), time.process_time(), time.perf_counter()
    run_id = None
    spans: dict[str, float] = {}
    if budget is not None:  # calibrate: as many iterations as fit in `budget` seconds
        iters = 0
        while time.perf_counter() - t0 < budget:
            for _ in range(100):
                loss, acc = step(iters)
                iters += 1
    elif logging:
        with mc.start_run(experiment="train") as run:
            run_id = run.id
            mc.log_params(
                {**params, "batch_rows": bs, "rows": TRAIN_ROWS, "features": TRAIN_FEATURES}
                | {"iters": iters, "seed": TRAIN_SEED}
            )
            in_calls = 0.0
            t1 = time.perf_counter()
            for it in range(iters):
                loss, acc = step(it)
                a = time.perf_counter()
                mc.log_metric("loss", loss, step=it)
                mc.log_metric("accuracy", acc, step=it)
                in_calls += time.perf_counter() - a
            t2 = time.perf_counter()
        spans = {"setup_s": t1 - t0, "loop_s": t2 - t1, "end_s": time.perf_counter() - t2}
        spans["log_calls_s"] = in_calls
    else:
        for it in range(iters):
            loss, acc = step(it)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    main_cpu = time.thread_time() - m0
    out = {
        "mode": args.mode,
        "iters": iters,
        "wall_s": wall,
        "cpu_s": cpu,
        "other_threads_cpu_s": cpu - main_cpu,  # the background writer, when logging
        "per_iter_ms": wall / iters * 1000,
        "final_loss": loss,
        "final_acc": acc,
        "coef_sum": float(clf.coef_.sum()),
        "load1_start": load1,
        "load1_end": os.getloadavg()[0],
        **spans,
    }
    if logging:
        ws = mc.get_workspace()
        for key in ("loss", "accuracy"):
            n = len(ws.runs.metric_history(run_id, key))
            assert n == iters, (key, n, iters)
        out["points"] = 2 * iters
        ws.close()
    return out


# --------------------------------------------------------------------------- parent helpers
def cpu_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float, below: float = 0.25) -> None:
    """Wait (at most `max_wait` s) until the machine is under `below` busy for 1 s."""
    deadline = time.monotonic() + max_wait
    while max_wait > 0:
        b0 = cpu_busy()
        time.sleep(1.0)
        share = (cpu_busy() - b0) / (os.cpu_count() or 1)
        if share < below or time.monotonic() >= deadline:
            return


def run_child(
    cmd: Sequence[str],
    cwd: Path,
    log: Path,
    env: dict[str, str] | None = None,
    max_wait_quiet: float = 0.0,
) -> dict[str, Any]:
    """Run one child process; its wall, CPU (with its reaped children), peak RSS and the
    share of both cores that everything else on the machine used meanwhile."""
    wait_quiet(max_wait_quiet)
    busy0 = cpu_busy()
    with log.open("wb") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    cpu = usage.ru_utime + usage.ru_stime
    text = log.read_text(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"child failed: {' '.join(map(str, cmd))}\n{text[-4000:]}")
    other = max(0.0, cpu_busy() - busy0 - cpu) / ((os.cpu_count() or 1) * wall)
    return {
        "child_wall_s": wall,
        "cpu_s": cpu,
        "rss_mb": usage.ru_maxrss / 1024,
        "other_share": other,
        "load1": os.getloadavg()[0],
        "text": text,
    }


def result_line(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.exit(f"no RESULT line in:\n{text[-3000:]}")


def run_mlflow(args: argparse.Namespace, python: str, rep: int) -> dict[str, Any]:
    """One repetition of the peers' w1_mlflow.py (sqlite backend), parsed."""
    with scratch(args.data, "tracking-mlflow", args.keep, args.settle) as work:
        out_json = work / "mlflow.json"
        cmd = [
            python,
            str(PEER_SCRIPT),
            "--backend",
            "sqlite",
            "--reps",
            "1",
            "--base",
            str(work / "w1"),
            "--budget-s",
            str(args.mlflow_budget_s),
            "--json",
            str(out_json),
            *workload(args),
        ]
        info = run_child(cmd, work, work / "mlflow.log", None, args.max_wait_quiet)
        res = json.loads(out_json.read_text())[0]
        summary = [ln for ln in info["text"].splitlines() if ln.startswith("SUMMARY w1_mlflow")]
        if not summary:
            sys.exit(f"w1_mlflow.py printed no SUMMARY line:\n{info['text'][-3000:]}")
        res["summary"] = summary[-1]
    info.pop("text")
    # The peer's own process CPU/RSS are those of its timed child; ours count the whole tree.
    res.update(info)
    res["rep"] = rep
    show("mlflow", rep, res, "w1a_pts_per_s", "w1b_pts_per_s")
    print(f"    {res['summary']}", flush=True)
    return res


def run_modelcycle(args: argparse.Namespace, rep: int) -> dict[str, Any]:
    with scratch(args.data, "tracking-modelcycle", args.keep, args.settle) as work:
        cmd = [sys.executable, __file__, "--child", "w1", "--workdir", str(work), *workload(args)]
        info = run_child(cmd, work, work / "modelcycle.log", None, args.max_wait_quiet)
        res = result_line(info.pop("text"))
    res.update(info)
    res["rep"] = rep
    show("modelcycle", rep, res, "w1a_pts_s", "w1b_pts_s")
    return res


def run_train(
    args: argparse.Namespace, mode: str, iters: int, rep: int, calibrate_s: float = 0.0
) -> dict[str, Any]:
    threads = str(args.blas_threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    env["MKL_NUM_THREADS"] = threads
    with scratch(args.data, f"tracking-train-{mode}", args.keep, args.settle) as work:
        cmd = [sys.executable, __file__, "--child", "train", "--mode", mode]
        cmd += ["--workdir", str(work), "--iters", str(iters), "--calibrate-s", str(calibrate_s)]
        cmd += ["--batch-rows", str(args.batch_rows)]
        info = run_child(cmd, work, work / "train.log", env, args.max_wait_quiet)
        res = result_line(info.pop("text"))
    res.update(proc_cpu_s=info["cpu_s"], other_share=info["other_share"], rep=rep)
    print(
        f"  rep {rep}  train {mode:9s} iters {res['iters']:7d}  loop {res['wall_s']:7.2f} s"
        f"  cpu {res['cpu_s']:7.2f} s  {res['per_iter_ms']:.3f} ms/iter"
        f"  load1 {res['load1_start']:.2f}-{res['load1_end']:.2f}"
        f"  other {res['other_share']:.0%}",
        flush=True,
    )
    return res


def workload(args: argparse.Namespace) -> list[str]:
    return [
        "--metrics",
        str(args.metrics),
        "--steps",
        str(args.steps),
        "--search-runs",
        str(args.search_runs),
    ]


def show(tool: str, rep: int, res: dict[str, Any], a_key: str, b_key: str) -> None:
    print(
        f"  rep {rep}  {tool:10s} w1a {res[a_key]:10,.0f} pts/s ({res['w1a_points']} pts)"
        f"  w1b {res[b_key]:9,.0f} pts/s  hist {res['w1c_hist_s']:.4f} s"
        f"  create {res['w1c_create_s']:7.2f} s  search {res['w1c_search_s']:.3f}"
        f" / {res['w1c_search_filter_s']:.3f} s  wall {res['child_wall_s']:6.1f} s"
        f"  load1 {res['load1']:.2f}  other {res['other_share']:.0%}",
        flush=True,
    )


def stats(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def fmt(v: float) -> str:
    if math.isnan(v):
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def ratio_of(kind: str, ours: float, peer: float) -> float:
    """How many times better modelcycle is (rate: ours/peer; time: peer/ours)."""
    if kind == "rate":
        return ours / peer if peer > 0 else float("inf")
    return peer / ours if ours > 0 else float("inf")


def print_w1_table(mc_res: list[dict[str, Any]], ml_res: list[dict[str, Any]]) -> dict[str, Any]:
    print(
        f"\n{'figure':32s} {'modelcycle med':>14s} {'min':>9s} {'max':>9s}"
        f" {'mlflow med':>11s} {'min':>9s} {'max':>9s} {'ratio':>8s} {'target':>8s}"
    )
    meds: dict[str, Any] = {}
    for label, mk, pk, kind, target in FIGURES:
        ours = stats([r[mk] for r in mc_res]) if mc_res and mk in mc_res[0] else None
        peer = stats([r[pk] for r in ml_res if pk in r]) if ml_res and pk in ml_res[0] else None
        cells = [f"{fmt(v):>9s}" for v in (ours or (float("nan"),) * 3)]
        pcells = [f"{fmt(v):>9s}" for v in (peer or (float("nan"),) * 3)]
        rtext, ttext = "", ""
        if ours and peer and kind in ("rate", "time"):
            r = ratio_of(kind, ours[0], peer[0])
            rtext = f"{r:.1f}x"
            meds[mk] = (ours[0], peer[0], r)
            if target is not None:
                ttext = f">={target:g}x " + ("ok" if r >= target else "MISS")
        print(
            f"{label:32s} {cells[0]:>14s} {cells[1]} {cells[2]} {pcells[0]:>11s}"
            f" {pcells[1]} {pcells[2]} {rtext:>8s} {ttext:>8s}"
        )
    return meds


def print_overhead(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, float]:
    """Per repetition: wall and CPU overhead, and the `direct` share: time spent inside
    start_run/log_params, the log_metric calls and the run's end, plus the CPU of the
    background writer thread, over the loop without logging (less sensitive to the load
    of other jobs than the difference of two ~60 s wall times)."""
    print(
        f"\n{'overhead rep':14s} {'without s':>10s} {'with s':>10s} {'wall %':>8s} {'cpu %':>8s}"
        f" {'direct %':>9s} {'in calls s':>10s} {'writer cpu s':>12s} {'end s':>7s}"
    )
    walls, cpus, directs = [], [], []
    for off, on in pairs:
        w = (on["wall_s"] - off["wall_s"]) / off["wall_s"] * 100
        c = (on["cpu_s"] - off["cpu_s"]) / off["cpu_s"] * 100
        writer = max(0.0, on["other_threads_cpu_s"] - off["other_threads_cpu_s"])
        spent = on["setup_s"] + on["log_calls_s"] + on["end_s"] + writer
        d = spent / off["wall_s"] * 100
        walls.append(w)
        cpus.append(c)
        directs.append(d)
        print(
            f"rep {off['rep']:<10d} {off['wall_s']:10.2f} {on['wall_s']:10.2f} {w:8.2f} {c:8.2f}"
            f" {d:9.2f} {on['log_calls_s']:10.3f} {writer:12.3f} {on['end_s']:7.3f}"
        )
    wm, wlo, whi = stats(walls)
    cm, clo, chi = stats(cpus)
    dm, dlo, dhi = stats(directs)
    print(
        f"{'median':14s} {'':10s} {'':10s} {wm:8.2f} {cm:8.2f} {dm:9.2f}"
        f"   (min-max wall {wlo:.2f}..{whi:.2f}, cpu {clo:.2f}..{chi:.2f},"
        f" direct {dlo:.2f}..{dhi:.2f})"
    )
    off_med = statistics.median(o["wall_s"] for o, _ in pairs)
    on_med = statistics.median(o["wall_s"] for _, o in pairs)
    print(
        f"medians: without {off_med:.2f} s, with {on_med:.2f} s"
        f" -> {(on_med - off_med) / off_med * 100:.2f}%  ({pairs[0][1]['points']:,} points per run,"
        f" {pairs[0][0]['iters']:,} iterations)"
    )
    return {
        "wall_pct": wm,
        "cpu_pct": cm,
        "direct_pct": dm,
        "without_s": off_med,
        "with_s": on_med,
    }


# --------------------------------------------------------------------------- main
def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians)")
    ap.add_argument("--data", type=Path, default=BENCH_HOME / "data", help="data folder")
    ap.add_argument("--mlflow-python", default=str(DEFAULT_MLFLOW_PYTHON), help="mlflow venv")
    ap.add_argument("--metrics", type=int, default=10)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--search-runs", type=int, default=1000)
    ap.add_argument(
        "--mlflow-budget-s",
        type=float,
        default=0.0,
        help="peer's --budget-s: 0 stops its per-call phase at 10,000 points (a rate)",
    )
    ap.add_argument("--train-seconds", type=float, default=60.0, help="0: no overhead figure")
    ap.add_argument("--train-iters", type=int, help="skip calibration, use this many")
    ap.add_argument("--batch-rows", type=int, default=256, help="rows per partial_fit")
    ap.add_argument("--blas-threads", type=int, default=1)
    ap.add_argument("--no-mlflow", action="store_true", help="modelcycle side only")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait after cleanup")
    ap.add_argument(
        "--max-wait-quiet",
        type=float,
        default=0.0,
        help="before each timed child, wait up to S s for the machine to be < 25%% busy",
    )
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    # child-only
    ap.add_argument("--child", choices=["w1", "train"], help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["calibrate", "without", "with"], help=argparse.SUPPRESS)
    ap.add_argument("--iters", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--calibrate-s", type=float, default=0.0, help=argparse.SUPPRESS)
    return ap.parse_args()


def find_mlflow(path: str) -> str:
    if os.access(path, os.X_OK):
        return path
    venv = BENCH_HOME / "venvs" / "mlflow"
    sys.exit(
        f"no MLflow python at {path}. Install the peer once (see bench/README.md):\n"
        f"  python3.11 -m venv {venv} && {venv}/bin/pip install mlflow\n"
        "or pass --mlflow-python PATH (a python with mlflow), or --no-mlflow."
    )


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    args = parse()
    if args.child:
        res = child_w1(args) if args.child == "w1" else child_train(args)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        res["self_cpu_s"] = ru.ru_utime + ru.ru_stime
        print("RESULT " + json.dumps(res), flush=True)
        return
    python = None if args.no_mlflow else find_mlflow(args.mlflow_python)
    if python and not PEER_SCRIPT.is_file():
        sys.exit(f"peer script not found: {PEER_SCRIPT}")
    import modelcycle

    meta: dict[str, Any] = {
        "modelcycle": modelcycle.__version__,
        "python": sys.version.split()[0],
        "mlflow_python": python,
        "reps": args.reps,
        "metrics": args.metrics,
        "steps": args.steps,
        "search_runs": args.search_runs,
        "mlflow_budget_s": args.mlflow_budget_s,
        "train_seconds": args.train_seconds,
        "batch_rows": args.batch_rows,
        "max_wait_quiet": args.max_wait_quiet,
        "loadavg_start": loadavg(),
    }
    print(f"bench_tracking  {meta}  cores={os.cpu_count()}", flush=True)
    t_start = time.perf_counter()

    iters = args.train_iters or 0
    if args.train_seconds > 0 and not iters:
        cal_s = min(5.0, args.train_seconds / 2)
        cal = run_train(args, "calibrate", 0, 0, calibrate_s=cal_s)
        iters = max(100, round(args.train_seconds / (cal["wall_s"] / cal["iters"])))
        print(f"  calibration: {cal['per_iter_ms']:.3f} ms/iter -> {iters} iterations", flush=True)
    meta["train_iters"] = iters

    mc_res: list[dict[str, Any]] = []
    ml_res: list[dict[str, Any]] = []
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for rep in range(1, args.reps + 1):
        for side in tool_order(rep, ["mlflow", "modelcycle"]):
            if side == "mlflow" and python:
                ml_res.append(run_mlflow(args, python, rep))
            elif side == "modelcycle":
                mc_res.append(run_modelcycle(args, rep))
        if iters:
            done = {m: run_train(args, m, iters, rep) for m in tool_order(rep, ["without", "with"])}
            if done["with"]["coef_sum"] != done["without"]["coef_sum"]:
                sys.exit(f"the two training variants differ: {done}")
            pairs.append((done["without"], done["with"]))

    meta["loadavg_end"] = loadavg()
    meta["total_s"] = time.perf_counter() - t_start
    if ml_res:
        meta["mlflow"] = ml_res[0].get("mlflow_version")
    print(
        f"\nmodelcycle {meta['modelcycle']} vs mlflow {meta.get('mlflow', '-')} (sqlite, no server)"
        f"  reps={args.reps}  metrics={args.metrics} steps={args.steps}"
        f" search_runs={args.search_runs}  mlflow w1a points: "
        f"{sorted({r['w1a_points'] for r in ml_res}) or '-'}"
    )
    meds = print_w1_table(mc_res, ml_res)
    over = print_overhead(pairs) if pairs else None
    print(f"load average: start {meta['loadavg_start']}, end {meta['loadavg_end']}")

    out_dir = args.data / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"tracking-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw = {"meta": meta, "modelcycle": mc_res, "mlflow": ml_res, "overhead": pairs}
    path.write_text(json.dumps(raw, indent=1, default=str))
    print(f"results: {path}")

    def part(name: str, key: str, target: float, fmt_: str) -> str:
        ours = statistics.median(r[key] for r in mc_res)
        if key not in meds:
            return f"{name}={ours:{fmt_}} (mlflow -, target >={target:g}x)"
        _, peer, r = meds[key]
        return f"{name}={ours:{fmt_}} (mlflow {peer:{fmt_}}, {r:.1f}x, target >={target:g}x)"

    parts = [
        f"reps={args.reps}",
        part("log_metric_pts_s", "w1a_pts_s", TARGET_PER_CALL, ".0f"),
        part("log_batch_pts_s", "w1b_pts_s", TARGET_X, ".0f"),
        part("hist_s", "w1c_hist_s", TARGET_X, ".4f"),
        part("search_filter_s", "w1c_search_filter_s", TARGET_X, ".4f"),
        part("create_1000_s", "w1c_create_s", TARGET_X, ".3f"),
    ]
    if over:
        parts.append(
            f"overhead_pct={over['wall_pct']:.2f} (cpu {over['cpu_pct']:.2f},"
            f" direct {over['direct_pct']:.2f},"
            f" target <{TARGET_OVERHEAD_PCT:g}, train_s={args.train_seconds:g})"
        )
    else:
        parts.append("overhead_pct=- (not run)")
    print("SUMMARY bench_tracking " + " ".join(parts))


if __name__ == "__main__":
    main()
