"""Helpers for the integration tests: backends, data files, blobs and the CLI."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import modelcycle as mc
from modelcycle.blobs import shard
from servers import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY, S3Location, s3_client

LOCAL = "sqlite+local"
REMOTE = "postgres+s3"
CLI_TIMEOUT = 120


def s3_options(endpoint_url: str) -> dict[str, str]:
    """``blobs_options`` that point a workspace at the test S3 server."""
    return {
        "endpoint_url": endpoint_url,
        "aws_access_key_id": S3_ACCESS_KEY_ID,
        "aws_secret_access_key": S3_SECRET_ACCESS_KEY,
        "region_name": S3_REGION,
    }


@dataclass
class Backend:
    """What a test needs to know about the stores behind its workspace."""

    name: str
    store_url: str | None = None
    s3: S3Location | None = None

    @property
    def is_local(self) -> bool:
        return self.s3 is None


# --------------------------------------------------------------------------- data files


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def iris_rows(n: int = 150, seed: int = 0) -> list[list[Any]]:
    """An iris-like table: id, four measurements, a species (three equal classes)."""
    rng = random.Random(seed)
    species = ["setosa", "versicolor", "virginica"]
    rows = []
    for i in range(n):
        label = species[i % 3]
        base = 4.5 + i % 3
        rows.append(
            [
                i + 1,
                round(base + rng.random(), 2),
                round(3 + rng.random(), 2),
                round(1 + (i % 3) * 2 + rng.random(), 2),
                round(0.2 + (i % 3) * 0.8 + rng.random() / 2, 2),
                label,
            ]
        )
    return rows


IRIS_HEADER = ["id", "sepal_length", "sepal_width", "petal_length", "petal_width", "species"]


def write_iris(path: Path, n: int = 150, seed: int = 0) -> Path:
    return write_csv(path, IRIS_HEADER, iris_rows(n, seed))


PEOPLE_HEADER = ["id", "age", "income", "label"]


def write_people(path: Path, n: int = 200, seed: int = 0) -> Path:
    """A table in the shape the docs' recipe and rules expect (``age``, ``income``,
    ``label``), with dirt: missing ages, two impossible ages and ten duplicated rows."""
    rng = random.Random(seed)
    rows: list[list[Any]] = [
        [i + 1, rng.randint(18, 80), round(rng.uniform(1_000, 200_000), 2), rng.randint(0, 1)]
        for i in range(n)
    ]
    for i in (5, 50, 95, 140, 185):
        rows[i][1] = ""
    rows[7][1] = 640
    rows[77][1] = 512
    rows += [list(r) for r in rows[10:20]]
    return write_csv(path, PEOPLE_HEADER, rows)


# The recipe and the rule file exactly as the docs show them.
DOC_RECIPE = """\
steps:
  - drop_duplicates: {}
  - fill_nulls: {columns: [age], strategy: median}
  - drop_outliers: {columns: [age], method: iqr}
"""
DOC_RULES = """\
rules:
  - {column: age, not_null: true}
  - {column: label, allowed: [0, 1]}
  - {column: income, range: {min: 0, max: 1000000}, mostly: 0.99}
"""


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def random_files(count: int, size: int = 2000, seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {f"file{i:02d}.bin": rng.randbytes(size + i) for i in range(count - 1)}
    out["nested/deeper/notes.txt"] = b"notes\n" * 50
    return out


def write_pngs(folder: Path, count: int = 4, size: int = 16, seed: int = 0) -> Path:
    """Small RGB PNG images with random pixels."""
    from PIL import Image

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = Image.new("RGB", (size, size))
        img.putdata(
            [
                (rng.randrange(256), rng.randrange(256), rng.randrange(256))
                for _ in range(size * size)
            ]
        )
        img.save(folder / f"img{i}.png", format="PNG")
    return folder


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (POSIX separators)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- blobs


def hash_prefix(content_hash: str, length: int = 8) -> str:
    """A prefix of ``content_hash`` usable as a ref: one that is all digits would be read
    as a version number, so it is extended until it holds a letter."""
    while content_hash[:length].isdigit():
        length += 1
    return content_hash[:length]


def stored_oids(ws: mc.Workspace) -> set[str]:
    return set(ws.blobs.iter_oids())


def overwrite_blob(ws: mc.Workspace, backend: Backend, oid: str, data: bytes) -> None:
    """Replace a stored blob's bytes behind modelcycle's back (to simulate bit rot)."""
    if backend.s3 is None:
        path = ws.root / ".modelcycle" / "blobs" / shard(oid)
        assert path.is_file(), path
        path.chmod(0o644)
        path.write_bytes(data)
        return
    client = s3_client(backend.s3.endpoint_url)
    try:
        key = f"{backend.s3.prefix}/{shard(oid)}"
        client.head_object(Bucket=backend.s3.bucket, Key=key)  # it must exist already
        client.put_object(Bucket=backend.s3.bucket, Key=key, Body=data)
    finally:
        client.close()


def blob_tree(root: Path) -> dict[str, bytes]:
    """Files under a workspace's local blob folder, leaving out the temporary area."""
    blobs = root / ".modelcycle" / "blobs"
    if not blobs.is_dir():
        return {}
    return {
        rel: data
        for rel, data in folder_bytes(blobs).items()
        if not rel.startswith("tmp/") and rel != "tmp"
    }


# --------------------------------------------------------------------------- the CLI


def modelcycle_exe() -> str:
    """The installed ``modelcycle`` script: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "modelcycle"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("modelcycle")
    if found is None:
        pytest.fail("the `modelcycle` executable is not installed (pip install -e .)")
    return found


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI run: no workspace override, no forced width or colours."""
    drop = ("MODELCYCLE_", "FORCE_COLOR", "CLICOLOR_FORCE", "NO_COLOR", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def run_cli(
    *args: str | os.PathLike[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    expect: int | None = 0,
) -> subprocess.CompletedProcess[str]:
    """Run ``modelcycle ARGS`` in ``cwd``; check the exit code unless ``expect`` is None."""
    result = subprocess.run(
        [modelcycle_exe(), *map(str, args)],
        cwd=cwd,
        env=env if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if expect is not None and result.returncode != expect:
        pytest.fail(
            f"`modelcycle {' '.join(map(str, args))}` exited {result.returncode}, "
            f"expected {expect}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def run_json(*args: str | os.PathLike[str], cwd: Path, env: dict[str, str] | None = None) -> Any:
    return json.loads(run_cli(*args, cwd=cwd, env=env).stdout)
