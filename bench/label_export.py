"""Labeling at 100,000 tasks: export vs Label Studio, agreement, label issues.

Data (generated, seed 45, once per repetition and fed to both tools): a table of 100,000
rows x 12 numeric features whose class (3 classes: alpha/beta/gamma) follows from the
features, with 5% of the labels flipped. A classification project over it, overlap 2,
two annotators who each label every task (200,000 annotations; they disagree on 1% of
the tasks).

modelcycle: the set-up (dataset add, project, assignment, annotations) runs untimed
through the Python API. Timed, each as one `modelcycle` process (`--json`, output
discarded):

  export      `modelcycle label export P --to-dataset P-labeled`   target < 10 s
  agreement   `modelcycle label agreement P`                       } target < 30 s
  issues      `modelcycle label issues P`                          } together

Label Studio (the peer, from PyPI, in its own venv; `--label-studio VENV`, default
`$BENCH_HOME/venvs/label-studio`, skipped with a note when absent): one
`label-studio init` per run makes a template data dir (migrations, users ann/bob,
API token), copied fresh for each repetition. Per repetition, untimed: `label-studio
start` on 127.0.0.1 (its default server: Django's, one process, SQLite), a project with
12 `<Text>` tags ($f0..$f11, the same feature values) and a `<Choices>` control
(alpha/beta/gamma), and the same tasks imported through `POST /api/projects/{id}/import`
with both annotations per task (completed_by ann / bob, the same labels). Timed:

  ls_export   `GET /api/projects/{id}/export?exportType=JSON` until the file is fully
              downloaded (checked untimed: 100,000 tasks, 200,000 annotations)

What each export produces: Label Studio a JSON file of the tasks with their data and
raw annotations; modelcycle a Parquet dataset version with the features, the consensus
label per row and lineage to the project. That is the closest like-for-like export each
tool offers (Label Studio computes no consensus in its community edition). The two
exports alternate which runs first.

The last line is `SUMMARY bench_label_export ...` with the medians, the ratio
label_studio / modelcycle for the export, and the targets.

    python bench/label_export.py [--reps 3] [--tasks 100000] [--keep]
                                 [--label-studio VENV | --no-label-studio]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_EXPORT_S = 10.0
TARGET_QUALITY_S = 30.0
NAMES = ["alpha", "beta", "gamma"]
OTHER = {"alpha": "beta", "beta": "gamma", "gamma": "alpha"}
LS_USERS = {
    "ann": ("ann@example.com", "ann-bench-pass"),
    "bob": ("bob@example.com", "bob-bench-pass"),
}
LS_TOKEN = "benchlabelexport0token"
LS_IMPORT_CHUNK = 5_000


def bench_home() -> Path:
    return Path(os.environ.get("BENCH_HOME") or Path.home() / "bench")


def modelcycle_exe() -> str:
    exe = Path(sys.executable).with_name("modelcycle")
    return str(exe) if exe.exists() else "modelcycle"


def gen_data(n: int):
    """Features x (n x 12), the given labels, and the tasks bob labels differently."""
    import numpy as np

    rng = np.random.default_rng(45)
    x = rng.normal(size=(n, 12))
    w = rng.normal(size=(12, 3))
    y = (x @ w + rng.normal(scale=0.3, size=(n, 3))).argmax(axis=1)
    names = np.array(NAMES)
    given = names[y].copy()
    flips = rng.choice(n, n // 20, replace=False)
    given[flips] = names[(y[flips] + rng.integers(1, 3, size=len(flips))) % 3]
    disagree = set(rng.choice(n, n // 100, replace=False).tolist())
    return x, [str(g) for g in given], disagree


def setup(root: Path, data) -> None:
    import polars as pl

    import modelcycle as mc

    x, given, disagree = data
    df = pl.DataFrame({f"f{i}": x[:, i] for i in range(12)})
    df.write_parquet(root / "features.parquet")
    ws = mc.Workspace.create(root / "ws")
    try:
        ws.datasets.add("feats", root / "features.parquet")
        ws.labels.create("P", "feats@1", {"kind": "classification", "labels": NAMES}, overlap=2)
        ws.labels.assign("P", ["ann", "bob"])
        records = [(str(i), "ann", g) for i, g in enumerate(given)]
        records += [(str(i), "bob", OTHER[g] if i in disagree else g) for i, g in enumerate(given)]
        ws.labels.annotate_many("P", records)
    finally:
        ws.close()


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [modelcycle_exe(), *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, timeout=900
    )
    return time.perf_counter() - start


# --- Label Studio -------------------------------------------------------------------


def ls_env() -> dict[str, str]:
    env = dict(os.environ)
    # No internet here: no version check against PyPI, no analytics, and no Sentry (on
    # by default with Label Studio's own DSN; its sends fail on DNS here and it
    # instruments every request and query). Telemetry off, as for the MLflow peer.
    env.update(
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    return env


def ls_version(venv: Path) -> str:
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import label_studio; print(label_studio.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def ls_template(venv: Path, scratch: Path) -> Path:
    """A data dir with migrations applied, users ann (API token) and bob, one organization."""
    tpl = scratch / "ls-template"
    log = open(scratch / "ls-init.log", "ab")  # noqa: SIM115 (closed below)
    for i, (email, password) in enumerate(LS_USERS.values()):
        args = [str(venv / "bin" / "label-studio"), "init", "--no-browser", "--data-dir", str(tpl)]
        args += ["--username", email, "--password", password]
        if i == 0:
            args += ["--user-token", LS_TOKEN, "--enable-legacy-api-token"]
        subprocess.run(
            args, cwd=scratch, env=ls_env(), check=True, stdout=log, stderr=log, timeout=600
        )
    log.close()
    return tpl


class LabelStudio:
    """One `label-studio start` on 127.0.0.1, stopped by its own process group."""

    def __init__(self, venv: Path, data_dir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / "ls-server.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                str(venv / "bin" / "label-studio"),
                "start",
                "--no-browser",
                "--data-dir",
                str(data_dir),
                "--internal-host",  # the address it binds; --host only names URLs
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=data_dir.parent,
            env=ls_env(),
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=5):
                    break
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"label-studio did not start, see {self.log.name}") from exc
                time.sleep(0.5)

    def request(self, method: str, path: str, body=None):
        req = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {LS_TOKEN}", "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(req, timeout=3600) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc

    def download(self, path: str, dest: Path) -> int:
        req = urllib.request.Request(
            self.base + path, headers={"Authorization": f"Token {LS_TOKEN}"}
        )
        size = 0
        with urllib.request.urlopen(req, timeout=3600) as resp, open(dest, "wb") as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                size += len(chunk)
        return size

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def ls_setup(ls: LabelStudio, data) -> int:
    """Project + the same tasks with both annotations each; returns the project id."""
    x, given, disagree = data
    tags = "".join(f'<Text name="f{i}" value="$f{i}"/>' for i in range(12))
    choices = "".join(f'<Choice value="{c}"/>' for c in NAMES)
    config = (
        f'<View>{tags}<Choices name="label" toName="f0" choice="single">{choices}</Choices></View>'
    )
    project = ls.request("POST", "/api/projects", {"title": "bench P", "label_config": config})
    ids = {u["email"]: u["id"] for u in ls.request("GET", "/api/users")}
    ann, bob = ids[LS_USERS["ann"][0]], ids[LS_USERS["bob"][0]]

    def annotation(label: str, user: int) -> dict:
        result = {"from_name": "label", "to_name": "f0", "type": "choices"}
        return {"completed_by": user, "result": [{**result, "value": {"choices": [label]}}]}

    rows = x.tolist()
    for start in range(0, len(rows), LS_IMPORT_CHUNK):
        tasks = []
        for i in range(start, min(len(rows), start + LS_IMPORT_CHUNK)):
            g = given[i]
            tasks.append(
                {
                    "data": {f"f{k}": v for k, v in enumerate(rows[i])},
                    "annotations": [
                        annotation(g, ann),
                        annotation(OTHER[g] if i in disagree else g, bob),
                    ],
                }
            )
        ls.request("POST", f"/api/projects/{project['id']}/import", tasks)
    return project["id"]


def ls_export(ls: LabelStudio, project_id: int, dest: Path, n: int) -> float:
    start = time.perf_counter()
    ls.download(f"/api/projects/{project_id}/export?exportType=JSON", dest)
    elapsed = time.perf_counter() - start
    with open(dest, "rb") as f:
        tasks = json.load(f)
    annotations = sum(len(t["annotations"]) for t in tasks)
    if len(tasks) != n or annotations != 2 * n:
        raise RuntimeError(f"Label Studio export has {len(tasks)} tasks, {annotations} annotations")
    return elapsed


# --- main ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument(
        "--label-studio",
        type=Path,
        default=bench_home() / "venvs" / "label-studio",
        help="venv with label-studio (default $BENCH_HOME/venvs/label-studio)",
    )
    parser.add_argument("--no-label-studio", action="store_true", help="skip the peer")
    opts = parser.parse_args()
    # SIGTERM runs the `finally` blocks too, so the Label Studio server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    venv = opts.label_studio.expanduser()
    use_ls = not opts.no_label_studio and (venv / "bin" / "label-studio").exists()
    if not use_ls:
        print(f"Label Studio skipped: no {venv / 'bin' / 'label-studio'}", flush=True)
    ls_scratch = None
    if use_ls:
        print(f"Label Studio {ls_version(venv)} from {venv}", flush=True)
        (bench_home() / "data" / "scratch").mkdir(parents=True, exist_ok=True)
        ls_scratch = Path(
            tempfile.mkdtemp(prefix="label-studio-", dir=bench_home() / "data" / "scratch")
        )
        template = ls_template(venv, ls_scratch)

    keys = ["setup", "export", "agreement", "issues"] + (
        ["ls_setup", "ls_export"] if use_ls else []
    )
    results: dict[str, list[float]] = {k: [] for k in keys}
    try:
        for rep in range(opts.reps):
            root = Path(tempfile.mkdtemp(prefix="bench-label-"))
            ls = None
            try:
                start = time.perf_counter()
                data = gen_data(opts.tasks)
                setup(root, data)
                results["setup"].append(time.perf_counter() - start)
                ws = root / "ws"
                mc_export = ["label", "export", "P", "--to-dataset", "P-labeled", "--json"]
                if use_ls:
                    rep_dir = ls_scratch / f"rep{rep}"
                    rep_dir.mkdir()
                    shutil.copytree(template, rep_dir / "data")
                    start = time.perf_counter()
                    ls = LabelStudio(venv, rep_dir / "data")
                    project_id = ls_setup(ls, data)
                    results["ls_setup"].append(time.perf_counter() - start)
                    if rep % 2 == 0:
                        results["export"].append(timed(mc_export, ws))
                    results["ls_export"].append(
                        ls_export(ls, project_id, rep_dir / "export.json", opts.tasks)
                    )
                    if rep % 2 == 1:
                        results["export"].append(timed(mc_export, ws))
                    ls.stop()
                    ls = None
                    if not opts.keep:
                        shutil.rmtree(rep_dir, ignore_errors=True)
                else:
                    results["export"].append(timed(mc_export, ws))
                results["agreement"].append(timed(["label", "agreement", "P", "--json"], ws))
                results["issues"].append(timed(["label", "issues", "P", "--json"], ws))
                print(
                    f"rep {rep}: "
                    + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items())
                    + f", load1 {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
            finally:
                if ls is not None:
                    ls.stop()
                if not opts.keep:
                    shutil.rmtree(root, ignore_errors=True)
    finally:
        if ls_scratch is not None and not opts.keep:
            shutil.rmtree(ls_scratch, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    quality = med["agreement"] + med["issues"]
    if use_ls:
        peer = (
            f"ls_export_s={med['ls_export']:.2f} "
            f"ratio_ls/modelcycle={med['ls_export'] / med['export']:.1f}x "
        )
    else:
        peer = "ls_export_s=skipped "
    print(
        f"SUMMARY bench_label_export tasks={opts.tasks} annotations={2 * opts.tasks} "
        f"reps={opts.reps} export_s={med['export']:.2f} (target <{TARGET_EXPORT_S:g}, "
        f"{TARGET_EXPORT_S / med['export']:.1f}x under) {peer}"
        f"agreement_s={med['agreement']:.2f} "
        f"issues_s={med['issues']:.2f} agreement+issues_s={quality:.2f} "
        f"(target <{TARGET_QUALITY_S:g}, {TARGET_QUALITY_S / quality:.1f}x under) "
        f"load1={os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
