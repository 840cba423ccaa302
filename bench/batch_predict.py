"""Batch scoring: `modelcycle predict` vs in-process `model.predict` on the same 1M rows.

Data: generated with numpy (seed 48): --rows (1,000,000) x 20 float64 features plus an int64
`id`, labels from a noisy linear rule, written once to `input.parquet` in a scratch folder
under $BENCH_HOME/data/scratch (pyarrow defaults: snappy, one row group per 1Mi rows). The
model is scikit-learn's LogisticRegression (lbfgs) fitted on the first 100,000 rows as a
DataFrame (so it has feature names), logged and registered as `bench-lr@1` in a fresh
workspace in the same folder. All of this is untimed.

Per repetition (the order of the two sides alternates):

  python  a fresh child process (`--child`) that loads the registered model through the
          registry and reads the whole input into a DataFrame (untimed), then times
    inprocess   `model.predict(X)` on the 1M x 20 DataFrame, the fitted scikit-learn object
                itself (the ceiling a scorer could reach: no reading, no writing); the
                median of 5 calls
    read        `pyarrow.parquet.read_table` of the 20 features and `id`, nothing else: the
                floor of any scorer that starts from the file (median of 3 calls)
    diy         what a script without modelcycle does: `pd.read_parquet` (the 20 features
                and `id`) + `model.predict` + `DataFrame.to_parquet` of id and prediction
    api         `modelcycle.deploy.batch.score(..., include_columns=["id"], proba=False)`,
                in a process that has already scored a 1,000-row file (so scikit-learn, skops
                and pyarrow are imported): read, check against the signature, predict on
                threads, write Parquet, fsync and rename
    api_proba   the same with the default `proba=True` (adds proba_0 and proba_1)
  cli     `modelcycle predict bench-lr@1 --input input.parquet --output out-cli.parquet
          --keep id --no-proba --overwrite --json`, run in the workspace folder as one child
          process, wall clock (interpreter start, imports, opening the workspace, loading the
          model: everything a user waits for); then the same without --no-proba (`cli_proba`),
          and the first command on the 1,000-row file (`cli_1k`: the fixed cost, everything
          but the scoring).

Every output is checked afterwards (untimed): same row count, ids in input order,
predictions equal to the fitted model's.

The target (the issue): `modelcycle predict` rows/s >= 0.5 x in-process `model.predict`
rows/s. The last line is

  SUMMARY bench_batch_predict inprocess_rows_s=... modelcycle_rows_s=... ratio=... ...

where modelcycle_rows_s is the `cli` figure (the command, predictions only, like
`model.predict`); the api, api_proba, cli_proba, diy and read figures and their ratios follow.
`read_ratio` is the read figure over inprocess: no scorer that reads the file can do better
than that, with no start-up, no predicting and no writing. `cli_fixed_s` is the cli_1k wall
time, and `cli_vs_diy` compares the command with the pandas script (which starts warm).

    python bench/batch_predict.py [--reps 3] [--rows 1000000] [--workers N] [--chunk-rows N]
    python bench/batch_predict.py --rows 100000 --reps 1      # smoke

Until `predict` is attached to the `modelcycle` command, the cli side runs the same entry
point with the command attached in-process (`python -c ...`, see `cli_command`) and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import BENCH_ENV, BENCH_HOME, find_modelcycle, scratch, timed, tool_order

SEED = 48
FEATURES = 20
TRAIN_ROWS = 100_000
MODEL = "bench-lr"
TARGET_RATIO = 0.5
FIGURES = ["inprocess", "read", "diy", "api", "api_proba", "cli", "cli_proba"]
# Attach `predict` to the real command in-process, then run its real entry point.
ATTACHED_CLI = (
    "import sys\n"
    "import modelcycle.cli.main\n"
    "from modelcycle.cli.predict import predict\n"
    "cli = sys.modules['modelcycle.cli.main']\n"
    "cli.app.command('predict')(predict)\n"
    "sys.argv[0] = 'modelcycle'\n"
    "cli.main()\n"
)


# --------------------------------------------------------------------------- data and model
def features() -> list[str]:
    return [f"f{i}" for i in range(FEATURES)]


def make_data(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(rows, FEATURES)) * rng.uniform(0.5, 3.0, FEATURES)
    w = rng.normal(size=FEATURES)
    y = (x - x.mean(axis=0)) @ w / np.sqrt(FEATURES) + 0.3 * rng.normal(size=rows) > 0
    frame = pd.DataFrame(x, columns=features())
    frame.insert(0, "id", np.arange(rows, dtype=np.int64))
    return frame, y.astype(np.int64)


def setup(work: Path, rows: int) -> Any:
    """Write the input, fit and register the model; its predictions on the input (untimed)."""
    from sklearn.linear_model import LogisticRegression

    import modelcycle as mc

    frame, y = make_data(rows)
    frame.to_parquet(work / "input.parquet", index=False)
    frame.head(1000).to_parquet(work / "warmup.parquet", index=False)
    x = frame[features()]
    model = LogisticRegression(max_iter=1000).fit(x.head(TRAIN_ROWS), y[:TRAIN_ROWS])
    with mc.Workspace.create(work / "ws") as ws, ws.start_run("bench") as run:
        run.log_model(model, "model", input_example=x.head(3), register_as=MODEL)
    return model.predict(x)


def check_output(path: Path, expected: Any) -> None:
    import numpy as np
    import pandas as pd

    got = pd.read_parquet(path, columns=["id", "prediction"])
    if len(got) != len(expected):
        sys.exit(f"{path}: {len(got)} rows, expected {len(expected)}")
    if not np.array_equal(got["id"].to_numpy(), np.arange(len(expected))):
        sys.exit(f"{path}: ids out of order")
    if not np.array_equal(got["prediction"].to_numpy(), expected):
        sys.exit(f"{path}: predictions differ from the model's")


# --------------------------------------------------------------------------- the child
def child(args: argparse.Namespace) -> dict[str, Any]:
    """The python side of one repetition, in this (fresh) process."""
    import pandas as pd
    import pyarrow.parquet as pq

    import modelcycle as mc
    from modelcycle.deploy.batch import score

    work = Path(args.workdir)
    source = work / "input.parquet"
    ws = mc.Workspace.open(work / "ws")
    model = ws.models.load(f"{MODEL}@1").native
    frame = pd.read_parquet(source)
    x = frame[features()]
    rows = len(x)
    out: dict[str, Any] = {"rows": rows, "load1_start": os.getloadavg()[0]}

    calls = []
    for _ in range(5):
        t = time.perf_counter()
        expected = model.predict(x)
        calls.append(time.perf_counter() - t)
    out["inprocess_s"] = statistics.median(calls)
    del frame, x

    reads = []
    for _ in range(3):
        t = time.perf_counter()
        table = pq.read_table(source, columns=["id", *features()])
        reads.append(time.perf_counter() - t)
        del table
    out["read_s"] = statistics.median(reads)

    t = time.perf_counter()
    data = pd.read_parquet(source, columns=["id", *features()])
    pd.DataFrame({"id": data["id"], "prediction": model.predict(data[features()])}).to_parquet(
        work / "out-diy.parquet", index=False
    )
    out["diy_s"] = time.perf_counter() - t
    del data
    check_output(work / "out-diy.parquet", expected)

    options: dict[str, Any] = {"include_columns": ["id"], "overwrite": True}
    if args.workers:
        options["workers"] = args.workers
    if args.chunk_rows:
        options["chunk_rows"] = args.chunk_rows
    warm = score(ws.models, f"{MODEL}@1", work / "warmup.parquet", work / "warm.parquet", **options)
    out["executor"] = warm.executor
    for name, proba in (("api", False), ("api_proba", True)):
        target = work / f"out-{name}.parquet"
        t = time.perf_counter()
        result = score(ws.models, f"{MODEL}@1", source, target, proba=proba, **options)
        out[f"{name}_s"] = time.perf_counter() - t
        out[f"{name}_inner_s"] = result.seconds
        check_output(target, expected)
    ws.close()
    out["load1_end"] = os.getloadavg()[0]
    return out


# --------------------------------------------------------------------------- the parent
def cli_command(given: str | None, work: Path) -> tuple[list[str], str]:
    """`modelcycle`, if it has `predict`; else its entry point with `predict` attached."""
    exe = find_modelcycle(given)
    probe = subprocess.run(
        [exe, "predict", "--help"], cwd=work / "ws", capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return [exe], "modelcycle predict"
    return [sys.executable, "-c", ATTACHED_CLI], "modelcycle entry point + predict attached"


def run_python(args: argparse.Namespace, work: Path, rep: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--workdir", str(work)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.chunk_rows:
        cmd += ["--chunk-rows", str(args.chunk_rows)]
    env = {**os.environ, **BENCH_ENV}
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"child failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not line:
        sys.exit(f"no RESULT line:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    res: dict[str, Any] = json.loads(line[-1][7:])
    n = res["rows"]
    print(
        f"  rep {rep}  python  inprocess {n / res['inprocess_s']:12,.0f} rows/s"
        f"  read {n / res['read_s']:11,.0f}"
        f"  diy {n / res['diy_s']:11,.0f}  api {n / res['api_s']:11,.0f}"
        f"  api_proba {n / res['api_proba_s']:11,.0f}  ({res['executor']})"
        f"  load1 {res['load1_start']:.2f}-{res['load1_end']:.2f}",
        flush=True,
    )
    return res


def run_cli(
    args: argparse.Namespace, work: Path, base: list[str], rep: int, expected: Any
) -> dict[str, float]:
    out: dict[str, float] = {}
    steps = (
        ("cli", "input", ["--no-proba"]),
        ("cli_proba", "input", []),
        ("cli_1k", "warmup", ["--no-proba"]),  # 1,000 rows: the fixed cost
    )
    for name, source, extra in steps:
        target = work / f"out-{name}.parquet"
        cmd = [*base, "predict", f"{MODEL}@1", "--input", str(work / f"{source}.parquet")]
        cmd += ["--output", str(target), "--keep", "id", "--overwrite", "--json", *extra]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        if args.chunk_rows:
            cmd += ["--chunk-rows", str(args.chunk_rows)]
        log = work / f"{name}.log"
        sample = timed(cmd, work / "ws", log, tool="modelcycle", step=name, rep=rep)
        check_output(target, expected if source == "input" else expected[:1000])
        text = log.read_text()
        shown, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
        inner = shown["seconds"]
        out[f"{name}_s"] = sample.wall_s
        out[f"{name}_inner_s"] = inner
        out[f"{name}_rss_mb"] = sample.peak_rss_mb
    return out


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, help="scoring workers (default: the CPUs)")
    ap.add_argument("--chunk-rows", type=int, help="rows per chunk (default: modelcycle's)")
    ap.add_argument("--data", type=Path, default=BENCH_HOME / "data", help="data folder")
    ap.add_argument("--modelcycle", help="modelcycle executable (default: PATH, then .venv)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait after cleanup")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse()
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return
    import modelcycle

    print(
        f"bench_batch_predict  modelcycle {modelcycle.__version__}  rows={args.rows:,}"
        f" features={FEATURES}  reps={args.reps}  cores={os.cpu_count()}"
        f"  load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    with scratch(args.data, "batch-predict", args.keep, args.settle) as work:
        t = time.perf_counter()
        expected = setup(work, args.rows)
        print(f"  setup (untimed) {time.perf_counter() - t:.1f} s", flush=True)
        base, how = cli_command(args.modelcycle, work)
        print(f"  cli: {how}", flush=True)
        for rep in range(1, args.reps + 1):
            res: dict[str, Any] = {"rep": rep}
            for side in tool_order(rep, ["python", "cli"]):
                if side == "python":
                    res.update(run_python(args, work, rep))
                else:
                    res.update(run_cli(args, work, base, rep, expected))
            results.append(res)

    rows = args.rows
    rate = {k: statistics.median(rows / r[f"{k}_s"] for r in results) for k in FIGURES}
    spread = {k: [rows / r[f"{k}_s"] for r in results] for k in FIGURES}
    ceiling = rate["inprocess"]
    print(f"\n{'figure':10s} {'rows/s med':>12s} {'min':>12s} {'max':>12s} {'vs inprocess':>13s}")
    for k in FIGURES:
        print(
            f"{k:10s} {rate[k]:12,.0f} {min(spread[k]):12,.0f} {max(spread[k]):12,.0f}"
            f" {rate[k] / ceiling:13.3f}"
        )
    inner = {k: statistics.median(r[f"{k}_inner_s"] for r in results) for k in ("cli", "api")}
    fixed = statistics.median(r["cli_1k_s"] for r in results)
    print(
        f"cli: score() took {inner['cli']:.3f} s (median; its first model load imports"
        f" scikit-learn and skops) of {statistics.median(r['cli_s'] for r in results):.3f} s"
        f" wall, the rest is the interpreter, the CLI's imports and opening the workspace;"
        f" in a warm process (api) score() took {inner['api']:.3f} s\n"
        f"cli_1k: the same command on 1,000 rows took {fixed:.3f} s wall (the fixed cost);"
        f" reading the input alone runs at {rate['read'] / ceiling:.3f} x in-process predict,"
        f" the best ratio any scorer starting from the file could reach"
    )

    out_dir = args.data / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"batch-predict-{time.strftime('%Y%m%d-%H%M%S')}.json"
    meta = {"rows": rows, "features": FEATURES, "reps": args.reps, "cli": how}
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"results: {path}")
    ratio = rate["cli"] / ceiling
    print(
        f"SUMMARY bench_batch_predict inprocess_rows_s={ceiling:.0f}"
        f" modelcycle_rows_s={rate['cli']:.0f} ratio={ratio:.3f}"
        f" (target >={TARGET_RATIO}: {'ok' if ratio >= TARGET_RATIO else 'MISS'})"
        f" api_rows_s={rate['api']:.0f} api_ratio={rate['api'] / ceiling:.3f}"
        f" api_proba_rows_s={rate['api_proba']:.0f} cli_proba_rows_s={rate['cli_proba']:.0f}"
        f" diy_rows_s={rate['diy']:.0f} api_vs_diy={rate['api'] / rate['diy']:.2f}"
        f" cli_vs_diy={rate['cli'] / rate['diy']:.3f} read_rows_s={rate['read']:.0f}"
        f" read_ratio={rate['read'] / ceiling:.3f} cli_fixed_s={fixed:.3f}"
        f" rows={rows} reps={args.reps}"
    )


if __name__ == "__main__":
    main()
