"""Shared helpers for the W2 benchmarks in this folder (standard library only).

Each benchmark runs the peer (DVC, pandas, cp) and modelcycle on the same data in the
same run, one whole process per timed step, and records wall, user and sys time, peak
RSS and the 1-minute load average of every step. The page cache is warm: the data is
copied into each fresh repository untimed, and caches are never dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_HOME = Path(os.environ.get("BENCH_HOME", Path.home() / "bench"))
REPO_ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = REPO_ROOT.parent / "shared" / "bench" / "peers"
N_FILES = 20_000

# No telemetry from either tool (no internet here), fixed git identity for `git init`.
BENCH_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


@dataclass
class Sample:
    """One timed process."""

    tool: str
    step: str
    rep: int
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    load1: float


class StepFailed(RuntimeError):
    """A timed command exited non-zero."""


def parse_args(
    description: str, more: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """Parse the options every benchmark takes, plus those `more` adds."""
    ap = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=5, help="repetitions (medians)")
    ap.add_argument("--data", type=Path, default=BENCH_HOME / "data", help="data folder")
    ap.add_argument("--dvc", help="dvc executable (default $BENCH_HOME/venvs/dvc/bin/dvc)")
    ap.add_argument("--modelcycle", help="modelcycle executable (default: PATH, then .venv)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait after cleanup")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    if more is not None:
        more(ap)
    return ap.parse_args()


def find_modelcycle(given: str | None) -> str:
    """The modelcycle executable: --modelcycle, then PATH, then the repo's .venv. Its
    package is byte-compiled first (`compile_package`)."""
    candidates = [given, shutil.which("modelcycle"), str(REPO_ROOT / ".venv/bin/modelcycle")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            compile_package(c)
            return c
    sys.exit("modelcycle not found: install the package (pip install -e .) or pass --modelcycle")


def compile_package(script: str) -> None:
    """Byte-compile the package the ``modelcycle`` script runs, untimed. pip compiled the
    peers at install; an editable install compiles a changed module on its next import,
    and not at all (so on every run) under PYTHONDONTWRITEBYTECODE."""
    python = Path(script).parent / "python"  # the script's own environment
    if not os.access(python, os.X_OK):
        print(f"note: no python beside {script}; modelcycle is timed as it is compiled")
        return
    code = "import compileall, modelcycle, os; compileall.compile_dir("
    code += "os.path.dirname(modelcycle.__file__), quiet=1)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([python, "-c", code], env=env, check=False, capture_output=True)
    if done.returncode != 0:
        print(f"note: could not byte-compile modelcycle: {done.stderr.decode().strip()}")


def find_dvc(given: str | None) -> str:
    """The dvc executable: --dvc, then $BENCH_HOME/venvs/dvc/bin/dvc."""
    path = given or str(BENCH_HOME / "venvs/dvc/bin/dvc")
    if not os.access(path, os.X_OK):
        sys.exit(f"dvc not found at {path}: see bench/README.md (setup) or pass --dvc")
    return path


def require_w2_data(data: Path) -> None:
    """Exit with a hint unless the W2 data made by w2_gen_data.py is there."""
    dir_a = data / "dirA"
    if not (dir_a.is_dir() and (data / "fileB.bin").is_file()):
        sys.exit(f"no W2 data in {data}: run python3 {PEERS_DIR / 'w2_gen_data.py'} {data}")


def tool_version(cmd: Sequence[str]) -> str:
    """First line of `cmd` output, or '?' if it fails."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return "?"
    text = out.stdout.strip()
    return text.splitlines()[0] if out.returncode == 0 and text else "?"


def run(cmd: Sequence[str], cwd: Path, log: Path | None = None) -> None:
    """Run an untimed setup command; raise StepFailed with its output if it fails."""
    env = {**os.environ, **BENCH_ENV}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if log is not None:
        log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise StepFailed(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}{out.stderr}")


def timed(cmd: Sequence[str], cwd: Path, log: Path, *, tool: str, step: str, rep: int) -> Sample:
    """Run `cmd` as one child process and measure it (wall clock, rusage of the child)."""
    env = {**os.environ, **BENCH_ENV}
    with log.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise StepFailed(
            f"{tool} {step}: {' '.join(cmd)} exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        )
    sample = Sample(
        tool=tool,
        step=step,
        rep=rep,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        load1=os.getloadavg()[0],
    )
    print(
        f"  rep {rep}  {tool:10s} {step:14s} wall {wall:7.3f} s  user {usage.ru_utime:6.2f}"
        f"  sys {usage.ru_stime:6.2f}  rss {sample.peak_rss_mb:6.0f} MB  load1 {sample.load1:.2f}",
        flush=True,
    )
    return sample


def sync() -> None:
    """Flush dirty pages so one step's writeback does not land in the next step's time."""
    os.sync()


def copy_in(src: Path, dst: Path) -> None:
    """Copy data into a repository, untimed (leaves it in the page cache: warm)."""
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    sync()


@contextmanager
def scratch(data: Path, name: str, keep: bool, settle: float) -> Iterator[Path]:
    """A fresh folder under DATA/scratch, removed afterwards unless `keep`."""
    root = data / "scratch"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    try:
        yield path
    finally:
        if not keep:
            # Stored files may be read-only (both tools make their caches so).
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
            shutil.rmtree(path, ignore_errors=True)
            if not any(root.iterdir()):
                root.rmdir()
        sync()
        time.sleep(settle)


def new_dvc_repo(path: Path, dvc: str) -> None:
    """`git init` + `dvc init` with DVC's state/index database inside the repo (cold)."""
    path.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], path)
    run([dvc, "init", "-q"], path)
    run([dvc, "config", "--local", "core.site_cache_dir", str(path / ".site_cache")], path)
    with (path / ".gitignore").open("a") as f:
        f.write("/.site_cache\n")


def new_mc_workspace(path: Path, mc: str) -> None:
    """A fresh modelcycle workspace (`modelcycle init .`, untimed)."""
    path.mkdir(parents=True, exist_ok=True)
    run([mc, "init", "."], path)


def modify100(dir_a: Path, offset: int, seed: int) -> None:
    """Rewrite 100 files with new random bytes of the same size (as w2_dvc.sh does)."""
    rng = random.Random(seed)
    for i in range(offset, N_FILES, 200):
        p = dir_a / f"f{i:05d}.bin"
        p.write_bytes(rng.randbytes(p.stat().st_size))
    sync()


def tool_order(rep: int, tools: Sequence[str]) -> list[str]:
    """Alternate which tool goes first, so a slow spell on the machine hits both."""
    return list(tools) if rep % 2 else list(reversed(tools))


def median(samples: Sequence[Sample], tool: str, step: str) -> float:
    """Median wall time of one (tool, step)."""
    return statistics.median(s.wall_s for s in samples if s.tool == tool and s.step == step)


def print_table(samples: Sequence[Sample], nbytes: dict[str, int] | None = None) -> None:
    """Median / min / max wall time per (tool, step), with CPU, RSS and load."""
    nbytes = nbytes or {}
    keys = list(dict.fromkeys((s.tool, s.step) for s in samples))
    print(
        f"\n{'tool':10s} {'step':14s} {'n':>2s} {'wall med':>9s} {'min':>8s} {'max':>8s}"
        f" {'user med':>9s} {'sys med':>8s} {'rss MB':>7s} {'MB/s med':>9s} {'load1 min-max':>14s}"
    )
    for tool, step in keys:
        group = [s for s in samples if s.tool == tool and s.step == step]
        walls = [s.wall_s for s in group]
        med = statistics.median(walls)
        size = nbytes.get(step)
        mbs = f"{size / 1e6 / med:9.1f}" if size else f"{'':9s}"
        loads = [s.load1 for s in group]
        print(
            f"{tool:10s} {step:14s} {len(group):2d} {med:9.3f} {min(walls):8.3f} {max(walls):8.3f}"
            f" {statistics.median(s.user_s for s in group):9.2f}"
            f" {statistics.median(s.sys_s for s in group):8.2f}"
            f" {max(s.peak_rss_mb for s in group):7.0f} {mbs}"
            f" {min(loads):6.2f}-{max(loads):<6.2f}"
        )


def save_results(data: Path, name: str, meta: dict[str, object], samples: list[Sample]) -> Path:
    """Write the raw samples as JSON under DATA/results/ and return the path."""
    out_dir = data / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"meta": meta, "samples": [asdict(s) for s in samples]}, indent=1))
    return path


def ratio(peer: float, ours: float) -> str:
    """Peer time / our time, formatted as a speed-up."""
    return f"{peer / ours:.1f}x" if ours > 0 else "infx"


def last_line(log: Path) -> str:
    """Last non-empty line a tool printed (shown once, to check it did the work)."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "(no output)"
