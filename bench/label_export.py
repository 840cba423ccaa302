"""Labeling at 100,000 tasks: export to a dataset version, agreement, label issues.

Data (generated, seed 45): a table of 100,000 rows x 12 numeric features whose class
(3 classes) follows from the features, with 5% of the labels flipped. A classification
project over it, overlap 2, two annotators who each label every task (200,000
annotations; they disagree on 1% of the tasks). The set-up (dataset add, project,
assignment, annotations) runs once per repetition, untimed, through the Python API.

Timed, each as one `modelcycle` process (`--json`, output discarded):

  export      `modelcycle label export P --to-dataset P-labeled`   target < 10 s
  agreement   `modelcycle label agreement P`                       } target < 30 s
  issues      `modelcycle label issues P`                          } together

The last line is `SUMMARY bench_label_export ...` with the medians and the targets.
Label Studio is not run here (see bench/README.md); the targets are absolute.

    python bench/label_export.py [--reps 3] [--tasks 100000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_EXPORT_S = 10.0
TARGET_QUALITY_S = 30.0


def modelcycle_exe() -> str:
    exe = Path(sys.executable).with_name("modelcycle")
    return str(exe) if exe.exists() else "modelcycle"


def setup(root: Path, n: int) -> None:
    import numpy as np

    import modelcycle as mc

    rng = np.random.default_rng(45)
    x = rng.normal(size=(n, 12))
    w = rng.normal(size=(12, 3))
    y = (x @ w + rng.normal(scale=0.3, size=(n, 3))).argmax(axis=1)
    names = np.array(["alpha", "beta", "gamma"])
    given = names[y].copy()
    flips = rng.choice(n, n // 20, replace=False)
    given[flips] = names[(y[flips] + rng.integers(1, 3, size=len(flips))) % 3]
    disagree = set(rng.choice(n, n // 100, replace=False).tolist())

    import polars as pl

    df = pl.DataFrame({f"f{i}": x[:, i] for i in range(12)})
    df.write_parquet(root / "features.parquet")
    ws = mc.Workspace.create(root / "ws")
    try:
        ws.datasets.add("feats", root / "features.parquet")
        ws.labels.create(
            "P", "feats@1", {"kind": "classification", "labels": list(names)}, overlap=2
        )
        ws.labels.assign("P", ["ann", "bob"])
        other = {"alpha": "beta", "beta": "gamma", "gamma": "alpha"}
        records = [(str(i), "ann", str(g)) for i, g in enumerate(given)]
        records += [
            (str(i), "bob", other[str(g)] if i in disagree else str(g))
            for i, g in enumerate(given)
        ]
        ws.labels.annotate_many("P", records)
    finally:
        ws.close()


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [modelcycle_exe(), *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, timeout=900
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    opts = parser.parse_args()
    results: dict[str, list[float]] = {"setup": [], "export": [], "agreement": [], "issues": []}
    for rep in range(opts.reps):
        root = Path(tempfile.mkdtemp(prefix="bench-label-"))
        try:
            start = time.perf_counter()
            setup(root, opts.tasks)
            results["setup"].append(time.perf_counter() - start)
            ws = root / "ws"
            results["export"].append(
                timed(["label", "export", "P", "--to-dataset", "P-labeled", "--json"], ws)
            )
            results["agreement"].append(timed(["label", "agreement", "P", "--json"], ws))
            results["issues"].append(timed(["label", "issues", "P", "--json"], ws))
            print(
                f"rep {rep}: "
                + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()),
                flush=True,
            )
        finally:
            if not opts.keep:
                shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    quality = med["agreement"] + med["issues"]
    print(
        f"SUMMARY bench_label_export tasks={opts.tasks} annotations={2 * opts.tasks} "
        f"reps={opts.reps} export_s={med['export']:.2f} (target <{TARGET_EXPORT_S:g}, "
        f"{TARGET_EXPORT_S / med['export']:.1f}x under) agreement_s={med['agreement']:.2f} "
        f"issues_s={med['issues']:.2f} agreement+issues_s={quality:.2f} "
        f"(target <{TARGET_QUALITY_S:g}, {TARGET_QUALITY_S / quality:.1f}x under) "
        f"load1={os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
