"""W3: drift detection -- Evidently's DataDriftPreset vs modelcycle's drift, same data.

Data: the peers' W3 generator (`w3_evidently.py gen --n N`, fixed seed): reference and
current tables of N rows, 20 numerical columns (normal / lognormal / uniform) and 5
categorical ones (5-50 categories); in `current`, num_00..num_04 are shifted by 0.1..0.5
sd and cat_01's frequencies changed. Parquet files under $BENCH_HOME/data (written by the
peer script on first use).

Per size and repetition, each in a fresh child process (the side that goes first
alternates):

  evidently   the peers' script, `w3_evidently.py evidently --n N` (run with
              --evidently-python, default $BENCH_HOME/venvs/evidently/bin/python):
              `Dataset.from_pandas` x2 + `Report([DataDriftPreset()]).run` + `dict()` +
              `json()`, all defaults. Its `total_s` leaves out importing Evidently and
              reading the Parquet files (pandas); its `peak_rss_mib` is the peak after
              the data were loaded (the kernel's counter is reset then), as the peers'
              README reports it. The process's whole-life peak (ru_maxrss) is shown too.
  modelcycle  this script as a child (`--child files`): `DriftService.drift(reference.parquet,
              current.parquet)` in a scratch workspace made before the clock starts. Timed
              from the call to the verdicts: reading the Parquet files (one column at a
              time), every test, the histograms. Peak RSS is the child's whole life
              (resource.getrusage), data loading and imports included.
  monitor     once per size (untimed): a workspace, `dataset add` of the reference and
              its sketch stored (`DriftService.sketch`); then per repetition a child
              (`--child monitor`) imports the drift engine and opens the workspace
              (untimed; `import_s`, `open_s`), then times `drift("w3ref",
              current.parquet)`: the reference is read from its stored sketch, the
              current data from Parquet.

Verdicts: the per-column verdicts of every modelcycle run (files and monitor) are
compared with those of Evidently's run of the same repetition and with the stored
fixture (`tests/fixtures/drift/evidently_w3_n{N}.json`, Evidently 0.7.23) when present.

Targets (the issue): at 1M+1M, >= 10x faster than Evidently and <= 1/3 of its peak
memory; identical per-column verdicts at 100k and 1M; with a stored sketch, a run over
1M current rows in < 2 s. The last line is `SUMMARY bench_drift ...`.

    .venv/bin/python bench/drift.py --reps 3 --max-wait-quiet 60
    .venv/bin/python bench/drift.py --n 100000 --reps 1 --no-evidently     # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import BENCH_HOME, PEERS_DIR, REPO_ROOT, scratch, tool_order
from tracking import loadavg, result_line, run_child

PEER_SCRIPT = PEERS_DIR / "w3_evidently.py"
DEFAULT_EVIDENTLY_PYTHON = BENCH_HOME / "venvs" / "evidently" / "bin" / "python"
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "drift"
TARGET_SPEEDUP = 10.0
TARGET_RSS_RATIO = 1 / 3
TARGET_MONITOR_S = 2.0
REFERENCE_NAME = "w3ref"


# --------------------------------------------------------------------------- children
def _verdicts(result: Any) -> dict[str, Any]:
    return {
        "columns": {
            c.column: {"test": c.test, "score": c.score, "drifted": c.drifted, "exact": c.exact}
            for c in result.columns
        },
        "dataset_drift": result.dataset_drift,
        "drifted": result.drifted_columns,
        "reference_sketch": result.reference_sketch,
    }


def _service(workspace: Path, create: bool) -> Any:
    from modelcycle.api import Workspace
    from modelcycle.monitoring.service import DriftService
    from modelcycle.store.sketches import SketchStore

    ws = Workspace.create(workspace) if create else Workspace.open(workspace)
    return ws, DriftService(SketchStore(ws.store), ws.datasets, ws.blobs)


def child_files(args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    import modelcycle.monitoring.drift  # noqa: F401  (polars, numpy, scipy)

    out: dict[str, Any] = {"import_s": time.perf_counter() - t}
    ws, service = _service(Path(args.workdir) / "ws", create=True)
    t = time.perf_counter()
    result = service.drift(args.reference, args.current)
    out["drift_s"] = time.perf_counter() - t
    ws.close()
    return out | _verdicts(result)


def child_setup(args: argparse.Namespace) -> dict[str, Any]:
    ws, service = _service(Path(args.workdir), create=True)
    t = time.perf_counter()
    ws.datasets.add(REFERENCE_NAME, args.reference)
    add_s = time.perf_counter() - t
    t = time.perf_counter()
    info = service.sketch(REFERENCE_NAME)
    out = {"add_s": add_s, "sketch_s": time.perf_counter() - t, "sketch_bytes": info.size_bytes}
    ws.close()
    return out


def child_monitor(args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    import modelcycle.monitoring.drift  # noqa: F401  (as child_files: imports untimed)

    out: dict[str, Any] = {"import_s": time.perf_counter() - t}
    t = time.perf_counter()
    ws, service = _service(Path(args.workdir), create=False)
    out["open_s"] = time.perf_counter() - t
    t = time.perf_counter()
    result = service.drift(REFERENCE_NAME, args.current)
    out["drift_s"] = time.perf_counter() - t
    ws.close()
    if result.reference_sketch != "stored":
        raise SystemExit(
            f"the monitor run did not use the stored sketch: {result.reference_sketch}"
        )
    return out | _verdicts(result)


# --------------------------------------------------------------------------- parent
def data_paths(data: Path, n: int) -> tuple[Path, Path]:
    return data / f"w3_n{n}_reference.parquet", data / f"w3_n{n}_current.parquet"


def ensure_data(python: str, data: Path, n: int) -> None:
    if all(p.is_file() for p in data_paths(data, n)):
        return
    cmd = [python, str(PEER_SCRIPT), "gen", "--n", str(n), "--data-dir", str(data)]
    subprocess.run(cmd, check=True)


def run_evidently(args: argparse.Namespace, python: str, n: int, rep: int) -> dict[str, Any]:
    with scratch(args.data, "drift-evidently", args.keep, args.settle) as work:
        cmd = [python, str(PEER_SCRIPT), "evidently", "--n", str(n), "--data-dir", str(args.data)]
        info = run_child(cmd, work, work / "evidently.log", None, args.max_wait_quiet)
        res = result_line(info.pop("text"))
    res.update(info, rep=rep)
    res["columns"] = {
        c: {"drifted": v["drift"], "score": v["score"]} for c, v in res["columns"].items()
    }
    print(
        f"  n={n:<8d} rep {rep}  evidently   total {res['total_s']:7.2f} s  wall"
        f" {res['child_wall_s']:7.2f} s  peak {res['peak_rss_mib']:6.0f} MiB (whole life"
        f" {res['rss_mb']:6.0f})  other {res['other_share']:.0%}",
        flush=True,
    )
    return res


def run_modelcycle(args: argparse.Namespace, n: int, rep: int) -> dict[str, Any]:
    ref, cur = data_paths(args.data, n)
    with scratch(args.data, "drift-modelcycle", args.keep, args.settle) as work:
        cmd = [sys.executable, __file__, "--child", "files", "--workdir", str(work)]
        cmd += ["--reference", str(ref), "--current", str(cur)]
        info = run_child(cmd, work, work / "modelcycle.log", None, args.max_wait_quiet)
        res = result_line(info.pop("text"))
    res.update(info, rep=rep)
    show("modelcycle", n, rep, res)
    return res


def setup_monitor(args: argparse.Namespace, n: int, work: Path) -> dict[str, Any]:
    ref, _ = data_paths(args.data, n)
    cmd = [sys.executable, __file__, "--child", "setup", "--workdir", str(work / "ws")]
    cmd += ["--reference", str(ref)]
    info = run_child(cmd, work, work / "setup.log", None, 0.0)
    res = result_line(info.pop("text"))
    print(
        f"  n={n:<8d} monitor set-up (untimed): dataset add {res['add_s']:.1f} s, sketch"
        f" {res['sketch_s']:.1f} s, {res['sketch_bytes'] / 1e6:.2f} MB",
        flush=True,
    )
    return res


def run_monitor(args: argparse.Namespace, n: int, rep: int, work: Path) -> dict[str, Any]:
    _, cur = data_paths(args.data, n)
    cmd = [sys.executable, __file__, "--child", "monitor", "--workdir", str(work / "ws")]
    cmd += ["--current", str(cur)]
    info = run_child(cmd, work, work / f"monitor-{rep}.log", None, args.max_wait_quiet)
    res = result_line(info.pop("text"))
    res.update(info, rep=rep, import_open_s=res["import_s"] + res["open_s"])
    show("monitor", n, rep, res)
    return res


def show(tool: str, n: int, rep: int, res: dict[str, Any]) -> None:
    print(
        f"  n={n:<8d} rep {rep}  {tool:11s} drift {res['drift_s']:7.2f} s  wall"
        f" {res['child_wall_s']:7.2f} s  peak {res['rss_mb']:6.0f} MiB  cpu {res['cpu_s']:6.1f} s"
        f"  other {res['other_share']:.0%}  drifted {len(res['drifted'])}",
        flush=True,
    )


def mismatches(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Columns whose verdict differs (or that one side lacks)."""
    names = sorted(set(ours) | set(theirs))
    return [
        c
        for c in names
        if c not in ours or c not in theirs or ours[c]["drifted"] != theirs[c]["drifted"]
    ]


def med(rows: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    values = [r[key] for r in rows]
    return statistics.median(values), min(values), max(values)


def fmt3(v: tuple[float, float, float]) -> str:
    return f"{v[0]:9.2f} {v[1]:8.2f} {v[2]:8.2f}"


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="rows")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians)")
    ap.add_argument("--data", type=Path, default=BENCH_HOME / "data", help="data folder")
    ap.add_argument("--evidently-python", default=str(DEFAULT_EVIDENTLY_PYTHON))
    ap.add_argument("--no-evidently", action="store_true", help="modelcycle side only")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait after cleanup")
    ap.add_argument(
        "--max-wait-quiet",
        type=float,
        default=0.0,
        help="before each timed child, wait up to S s for the machine to be < 25%% busy",
    )
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    ap.add_argument("--child", choices=["files", "setup", "monitor"], help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--reference", help=argparse.SUPPRESS)
    ap.add_argument("--current", help=argparse.SUPPRESS)
    return ap.parse_args()


def find_evidently(path: str) -> str:
    if os.access(path, os.X_OK):
        return path
    venv = BENCH_HOME / "venvs" / "evidently"
    sys.exit(
        f"no Evidently python at {path}. Install the peer once (see bench/README.md):\n"
        f"  python3.11 -m venv {venv} && {venv}/bin/pip install evidently scipy 'pandas<3'\n"
        "or pass --evidently-python PATH, or --no-evidently."
    )


def main() -> None:
    args = parse()
    if args.child:
        run = {"files": child_files, "setup": child_setup, "monitor": child_monitor}[args.child]
        res = run(args)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        res["self_rss_mib"] = ru.ru_maxrss / 1024
        print("RESULT " + json.dumps(res), flush=True)
        return
    python = None if args.no_evidently else find_evidently(args.evidently_python)
    if not PEER_SCRIPT.is_file():
        sys.exit(f"peer script not found: {PEER_SCRIPT}")
    import modelcycle

    print(
        f"bench_drift  modelcycle {modelcycle.__version__}  n={args.n}  reps={args.reps}"
        f"  cores={os.cpu_count()}  load {loadavg()}",
        flush=True,
    )
    summary: list[str] = []
    raw: dict[str, Any] = {}
    for n in args.n:
        ensure_data(python or sys.executable, args.data, n)
        fixture_path = FIXTURES / f"evidently_w3_n{n}.json"
        fixture = (
            json.loads(fixture_path.read_text())["columns"] if fixture_path.is_file() else None
        )
        ev: list[dict[str, Any]] = []
        mc: list[dict[str, Any]] = []
        mon: list[dict[str, Any]] = []
        with scratch(args.data, "drift-monitor", args.keep, args.settle) as work:
            setup = setup_monitor(args, n, work)
            for rep in range(1, args.reps + 1):
                for side in tool_order(rep, ["evidently", "modelcycle"]):
                    if side == "evidently" and python:
                        ev.append(run_evidently(args, python, n, rep))
                    elif side == "modelcycle":
                        mc.append(run_modelcycle(args, n, rep))
                mon.append(run_monitor(args, n, rep, work))
        raw[str(n)] = {"evidently": ev, "modelcycle": mc, "monitor": mon, "setup": setup}

        # verdicts --------------------------------------------------------------------------
        problems = []
        for label, runs in (("files", mc), ("monitor", mon)):
            for r in runs:
                for peer_label, peer in [("fixture", fixture)] + [
                    (f"evidently rep {e['rep']}", e["columns"]) for e in ev
                ]:
                    if peer is None:
                        continue
                    bad = mismatches(r["columns"], peer)
                    if bad:
                        problems.append(f"{label} rep {r['rep']} vs {peer_label}: {bad}")
        checked = "fixture" if fixture is not None else ""
        checked += (" + " if checked and ev else "") + ("evidently runs" if ev else "")
        identical = "yes" if not problems and checked else ("unchecked" if not checked else "NO")
        print(f"\nn={n}: per-column verdicts vs {checked or 'nothing'}: {identical}")
        for p in problems:
            print(f"  MISMATCH {p}")

        # table -----------------------------------------------------------------------------
        print(f"\n{'n=' + str(n):12s} {'figure':34s} {'median':>9s} {'min':>8s} {'max':>8s}")
        rows = [
            ("modelcycle", "drift_s (Parquet -> verdicts)", mc, "drift_s"),
            ("modelcycle", "process wall s", mc, "child_wall_s"),
            ("modelcycle", "import s (untimed)", mc, "import_s"),
            ("modelcycle", "peak RSS MiB (whole life)", mc, "rss_mb"),
            ("monitor", "drift_s (stored sketch)", mon, "drift_s"),
            ("monitor", "process wall s", mon, "child_wall_s"),
            ("monitor", "import + open s (untimed)", mon, "import_open_s"),
            ("monitor", "peak RSS MiB (whole life)", mon, "rss_mb"),
            ("evidently", "total_s (data in memory)", ev, "total_s"),
            ("evidently", "process wall s", ev, "child_wall_s"),
            ("evidently", "import s (untimed)", ev, "import_s"),
            ("evidently", "peak RSS MiB (after load)", ev, "peak_rss_mib"),
            ("evidently", "peak RSS MiB (whole life)", ev, "rss_mb"),
            ("all", "other load (share of 2 cores)", mc + mon + ev, "other_share"),
        ]
        for tool, label, rs, key in rows:
            if rs:
                print(f"{tool:12s} {label:34s} {fmt3(med(rs, key))}")
        ours_s, ours_rss = med(mc, "drift_s")[0], med(mc, "rss_mb")[0]
        mon_s = med(mon, "drift_s")[0]
        part = f"n={n}: modelcycle_s={ours_s:.2f} modelcycle_rss_mib={ours_rss:.0f}"
        if ev:
            ev_s, ev_rss = med(ev, "total_s")[0], med(ev, "peak_rss_mib")[0]
            speedup, ratio = ev_s / ours_s, ours_rss / ev_rss
            ok_s = "ok" if speedup >= TARGET_SPEEDUP else "MISS"
            ok_m = "ok" if ratio <= TARGET_RSS_RATIO else "MISS"
            print(
                f"speed-up {speedup:.1f}x (target >= {TARGET_SPEEDUP:g}x at 1M: {ok_s}); memory"
                f" {ratio:.2f} of Evidently's (target <= 0.33 at 1M: {ok_m})"
            )
            part += (
                f" evidently_s={ev_s:.2f} evidently_rss_mib={ev_rss:.0f} speedup={speedup:.1f}x"
                f" rss_ratio={ratio:.2f}"
            )
        ok_mon = "ok" if mon_s < TARGET_MONITOR_S else "MISS"
        print(f"monitor run with the stored sketch: {mon_s:.2f} s (target < 2 s at 1M: {ok_mon})")
        part += f" monitor_s={mon_s:.2f} verdicts_identical={identical}"
        summary.append(part)

    out_dir = args.data / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"drift-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(raw, indent=1, default=str))
    print(f"\nresults: {path}  load {loadavg()}")
    targets = f"targets at 1M: speedup>={TARGET_SPEEDUP:g}x rss_ratio<=0.33 monitor_s<2"
    print(f"SUMMARY bench_drift reps={args.reps} " + "; ".join(summary) + f" ({targets})")


if __name__ == "__main__":
    main()
