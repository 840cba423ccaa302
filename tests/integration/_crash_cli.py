"""Helpers shared by the crash-safety and concurrency tests: run the real CLI, make inputs.

Everything here drives ``modelcycle`` as a separate process, exactly as a user would, so
that a SIGKILL or a concurrent writer hits the real code paths (blob batches, metadata
transactions, the SQLite or PostgreSQL store).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelcycle.api import Workspace

_ENTRY = "import sys; from modelcycle.cli import main; sys.exit(main())"


def modelcycle_command() -> list[str]:
    """The installed ``modelcycle`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("modelcycle")
    if script.is_file():
        return [str(script)]
    found = shutil.which("modelcycle")
    if found:
        return [found]
    return [sys.executable, "-c", _ENTRY]


MODELCYCLE = modelcycle_command()


def cli_env(workspace: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELCYCLE_")}
    if workspace is not None:
        env["MODELCYCLE_WORKSPACE"] = str(workspace)
    return env


def spawn(workspace: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``modelcycle ARGS`` in ``workspace`` without waiting for it."""
    return subprocess.Popen(
        [*MODELCYCLE, *args],
        cwd=workspace,
        env=cli_env(workspace),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(workspace: Path, *args: str, ok: bool = True, timeout: float = 120) -> str:
    """Run ``modelcycle ARGS`` in ``workspace``; with ``ok`` assert exit 0. Returns stdout."""
    done = subprocess.run(
        [*MODELCYCLE, *args],
        cwd=workspace,
        env=cli_env(workspace),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if ok:
        assert done.returncode == 0, (
            f"`modelcycle {' '.join(args)}` exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done.stdout


def run_json(workspace: Path, *args: str) -> Any:
    return json.loads(run(workspace, *args, "--json"))


def init_workspace(workspace: Path, *extra: str) -> Path:
    workspace.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [*MODELCYCLE, "init", ".", *extra],
        cwd=workspace,
        env=cli_env(None),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"init failed:\n{done.stdout}\n{done.stderr}"
    return workspace


def versions(workspace: Path, name: str) -> list[dict[str, Any]]:
    return list(run_json(workspace, "dataset", "versions", name)["versions"])


def fsck(workspace: Path, *, quick: bool = False) -> dict[str, Any]:
    """``modelcycle fsck --json``, asserted clean."""
    report = CliChecker(workspace).fsck(quick=quick)
    assert report["ok"] is True and report["problems"] == [], report
    return report


# -- the same checks through the CLI or through the library ----------------------------


class CliChecker:
    """Lists, checks, cleans and reads a workspace by running ``modelcycle`` commands."""

    via = "cli"

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace

    def versions(self, name: str) -> list[dict[str, Any]]:
        return versions(self.workspace, name)

    def fsck(self, *, quick: bool = False) -> dict[str, Any]:
        # Exit 9 on problems: parse the report either way, the caller asserts on it.
        out = run(self.workspace, "fsck", *(["--quick"] if quick else []), "--json", ok=False)
        try:
            return dict(json.loads(out))
        except json.JSONDecodeError:
            raise AssertionError(f"fsck printed no JSON report:\n{out}") from None

    def gc(self) -> dict[str, Any]:
        return dict(run_json(self.workspace, "gc", "--grace", "0"))

    def get(self, ref: str, dest: Path) -> None:
        run(self.workspace, "dataset", "get", ref, str(dest))


class LibraryChecker:
    """The same as `CliChecker` through ``modelcycle.api.Workspace``, opened afresh for every
    call as a new process would: no CLI start-up cost, for the many checks of a test."""

    via = "library"

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace

    def versions(self, name: str) -> list[dict[str, Any]]:
        with Workspace.open(self.workspace) as ws:
            return [
                {
                    "version": v.version,
                    "ref": v.ref,
                    "content_hash": v.content_hash,
                    "kind": v.kind,
                    "num_rows": v.num_rows,
                    "num_files": v.num_files,
                }
                for v in ws.datasets.versions(name)
            ]

    def fsck(self, *, quick: bool = False) -> dict[str, Any]:
        with Workspace.open(self.workspace) as ws:
            return ws.fsck(verify=not quick).to_dict()

    def gc(self) -> dict[str, Any]:
        with Workspace.open(self.workspace) as ws:
            return ws.gc(grace_seconds=0).to_dict()

    def get(self, ref: str, dest: Path) -> None:
        with Workspace.open(self.workspace) as ws:
            ws.datasets.get(ref, dest)


# -- inputs and their content -----------------------------------------------------------


def write_file_tree(root: Path, n_files: int, seed: int, *, keep_every: int = 0) -> None:
    """``n_files`` small files in 20 sub-folders of a new folder ``root``. With
    ``keep_every`` = k, every k-th file has the same bytes whatever the seed (so trees made
    with different seeds share some blobs)."""
    rng = random.Random(seed)
    for i in range(n_files):
        path = root / f"d{i % 20:02d}" / f"f{i:05d}.bin"
        size = 64 + (i * 37) % 700
        data = random.Random(-i).randbytes(size) if keep_every and i % keep_every == 0 else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else rng.randbytes(size))


def tree_digest(root: Path) -> str:
    """A digest of a folder's relative file paths and bytes (nothing else)."""
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        rel = path.relative_to(root).as_posix()
        h.update(f"{rel}\0{path.stat().st_size}\0".encode())
        h.update(path.read_bytes())
    return f"{len(files)}:{h.hexdigest()}"


def write_csv(path: Path, rows: int, *, seed: int = 0, start: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,name,value,flag\n")
        for i in range(start, start + rows):
            f.write(f"{i},name{rng.randrange(977)},{rng.random() * 1000:.4f},{i % 3 == 0}\n")


def append_csv_rows(path: Path, rows: int, *, start: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "a", encoding="utf-8") as f:
        for i in range(start, start + rows):
            f.write(f"{i},extra{rng.randrange(977)},{rng.random() * 1000:.4f},{i % 3 == 0}\n")


def temp_leftovers(workspace: Path) -> list[Path]:
    """Leftovers of interrupted commands: blob temp files (``blobs/tmp/*``,
    ``blobs/ab/.tmp-*``), batches' staging folders (``blobs/.tmp-batch-*``) and scratch
    folders under ``.modelcycle/tmp``."""
    root = workspace / ".modelcycle" / "blobs"
    scratch = workspace / ".modelcycle" / "tmp"
    found: list[Path] = list(scratch.iterdir()) if scratch.is_dir() else []
    if not root.is_dir():
        return found
    for top in root.iterdir():
        if top.name.startswith(".tmp-batch-"):
            found.append(top)
        elif top.name == "tmp" and top.is_dir():
            found.extend(top.iterdir())
        elif len(top.name) == 2 and top.is_dir():
            found.extend(p for p in top.iterdir() if p.name.startswith(".tmp-"))
    return found


def stored_blob_count(workspace: Path) -> int:
    root = workspace / ".modelcycle" / "blobs"
    if not root.is_dir():
        return 0
    n = 0
    for top in os.scandir(root):
        if len(top.name) == 2 and top.is_dir():
            n += sum(1 for e in os.scandir(top.path) if not e.name.startswith("."))
    return n
