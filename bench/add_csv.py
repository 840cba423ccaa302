"""W2: version a 5,000,000 x 20 CSV as a table -- pandas CSV->Parquet vs modelcycle.

Data: $BENCH_HOME/data/w2_csv_5000000x20.csv, generated once by this script (numpy,
seed 44, written with pyarrow.csv; reused while it exists): an int64 row id, 8 int64
columns of different ranges, 8 float64 columns (normal, lognormal, uniform; rounded to
4 decimals) and 3 string categoricals (5, 40 and 500 categories). About 0.7 GB.
`--generate-only` writes it and exits (the timing run does that in a child process,
so that this process stays small: each timed child's peak RSS starts from its size).

Per repetition, each side gets a fresh folder with the CSV copied in untimed (warm page
cache), then one timed process:

  pandas      `python -c "pd.read_csv('data.csv').to_parquet('data.parquet')"` with the
              interpreter running this script (--python to change it); defaults: C parser,
              pyarrow engine, snappy. The child also reports its read / write split.
  modelcycle  `modelcycle init .` (untimed), then `modelcycle dataset add big_csv data.csv`

The side that goes first alternates between repetitions. Target: modelcycle faster than
pandas. The last line is `SUMMARY bench_add_csv ...`.

    python bench/add_csv.py [--reps 5] [--data DIR] [--modelcycle PATH] [--python PATH]

Generating the CSV needs numpy and pyarrow (the project's .venv has both); timing does not.
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

from _common import (
    Sample,
    copy_in,
    find_modelcycle,
    last_line,
    median,
    new_mc_workspace,
    parse_args,
    print_table,
    ratio,
    save_results,
    scratch,
    timed,
    tool_order,
    tool_version,
)

N_ROWS = 5_000_000
CHUNK_ROWS = 500_000
SEED = 44
TARGET = 1.0

PANDAS_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
t1 = time.perf_counter()
df = pd.read_csv(sys.argv[1])
t2 = time.perf_counter()
df.to_parquet(sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "write_s": t3 - t2,
                  "rows": len(df), "pandas": pd.__version__}))
"""


def generate_csv(path: Path) -> None:
    """Write the CSV in chunks of CHUNK_ROWS rows; deterministic for a given SEED."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(SEED)
    int_highs = [2, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 2**40]
    cat_values = [
        pa.array([f"{prefix}_{i:03d}" for i in range(n)])
        for prefix, n in (("color", 5), ("region", 40), ("sku", 500))
    ]
    tmp = path.with_suffix(".csv.tmp")
    writer = None
    start = 0
    t0 = time.perf_counter()
    while start < N_ROWS:
        n = min(CHUNK_ROWS, N_ROWS - start)
        cols: dict[str, pa.Array] = {"id": pa.array(np.arange(start, start + n))}
        for i, high in enumerate(int_highs):
            cols[f"int_{i:02d}"] = pa.array(rng.integers(-high // 2, high, n))
        floats = [
            *(rng.normal(0, 1 + i, n) for i in range(3)),
            *(rng.lognormal(i, 1, n) for i in range(3)),
            *(rng.uniform(-100, 100, n) for _ in range(2)),
        ]
        for i, values in enumerate(floats):
            cols[f"flt_{i:02d}"] = pa.array(np.round(values, 4))
        for i, values in enumerate(cat_values):
            cols[f"cat_{i:02d}"] = values.take(pa.array(rng.integers(0, len(values), n)))
        table = pa.table(cols)
        if writer is None:
            options = pacsv.WriteOptions(quoting_style="none")
            writer = pacsv.CSVWriter(str(tmp), table.schema, write_options=options)
        writer.write_table(table)
        start += n
    assert writer is not None
    writer.close()
    tmp.rename(path)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")


def add_options(ap: argparse.ArgumentParser) -> None:
    """Options of this benchmark only."""
    ap.add_argument("--python", help="interpreter for pandas (default: this one)")
    ap.add_argument("--generate-only", action="store_true", help="write the CSV and exit")


def main() -> None:
    args = parse_args(__doc__ or "", add_options)
    csv = args.data / f"w2_csv_{N_ROWS}x20.csv"
    if args.generate_only:
        if not csv.exists():
            args.data.mkdir(parents=True, exist_ok=True)
            generate_csv(csv)
        return
    if not csv.exists():
        cmd = [sys.executable, __file__, "--generate-only", "--data", str(args.data)]
        subprocess.run(cmd, check=True)
    mc = find_modelcycle(args.modelcycle)
    python = args.python or sys.executable
    nbytes = csv.stat().st_size
    meta = {
        "modelcycle": tool_version([mc, "--version"]),
        "python": python,
        "reps": args.reps,
        "csv": str(csv),
        "bytes": nbytes,
    }
    print(f"bench_add_csv  {meta}  cores={os.cpu_count()}  load1={os.getloadavg()[0]:.2f}")

    samples: list[Sample] = []
    splits: list[dict[str, float]] = []
    mc_said = ""
    for rep in range(1, args.reps + 1):
        for tool in tool_order(rep, ["pandas", "modelcycle"]):
            with scratch(args.data, f"add_csv-{tool}", args.keep, args.settle) as work:
                repo = work / "repo"
                if tool == "pandas":
                    repo.mkdir()
                    cmd = [python, "-c", PANDAS_CHILD, "data.csv", "data.parquet"]
                else:
                    new_mc_workspace(repo, mc)
                    cmd = [mc, "dataset", "add", "big_csv", "data.csv"]
                copy_in(csv, repo / "data.csv")
                log = work / "add.log"
                samples.append(timed(cmd, repo, log, tool=tool, step="csv_to_table", rep=rep))
                if tool == "pandas":
                    splits.append(json.loads(last_line(log)))
                else:
                    mc_said = mc_said or last_line(log)

    print_table(samples, {"csv_to_table": nbytes})
    for key in ("import_s", "read_s", "write_s"):
        print(f"pandas {key:9s} median {statistics.median(s[key] for s in splits):.2f} s")
    print(f"pandas said: rows={splits[0]['rows']} pandas={splits[0]['pandas']}")
    print(f"modelcycle said (rep 1): {mc_said}")
    print(f"results: {save_results(args.data, 'add_csv', meta, samples)}")
    pd_med = median(samples, "pandas", "csv_to_table")
    mc_med = median(samples, "modelcycle", "csv_to_table")
    print(
        f"SUMMARY bench_add_csv reps={args.reps} pandas_median={pd_med:.2f}s"
        f" modelcycle_median={mc_med:.2f}s speedup={ratio(pd_med, mc_med)} target>{TARGET:g}x"
    )


if __name__ == "__main__":
    main()
