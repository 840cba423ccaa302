"""Commands answered without loading the full CLI.

``modelcycle dataset status NAME PATH`` is run in loops and by editors, so it should take
about as long as a ``git status``. Importing typer, SQLAlchemy and polars alone takes
longer than that, so this module answers it with the standard library, the stat cache
and the manifest blob. It handles only the plain case (a SQLite store, a local blob
folder, a file dataset); anything else, including every error, returns None and the
ordinary CLI runs the command and reports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def run_quick(argv: list[str]) -> int | None:
    """Run ``argv`` if it is a quick command; None means "not handled here"."""
    args = [a for a in argv if a != "--json"]
    as_json = len(args) != len(argv)
    if len(args) != 4 or args[:2] != ["dataset", "status"] or any(a.startswith("-") for a in args):
        return None
    try:
        return _status(args[2], Path(args[3]), as_json)
    except Exception:  # noqa: BLE001 - the ordinary CLI will run and report the error properly
        return None


def _status(name: str, path: Path, as_json: bool) -> int | None:
    from modelcycle.core.config import WorkspaceConfig, find_workspace_root
    from modelcycle.core.statcache import stat_cache_path
    from modelcycle.data.files import compare, current_manifest
    from modelcycle.data.manifest import FileManifest, load_manifest
    from modelcycle.store.quickread import latest_manifest

    config = WorkspaceConfig.load(find_workspace_root())
    store_url = config.resolved_store_url()
    if not store_url.startswith("sqlite:///") or "://" in config.blobs_url:
        return None
    found = latest_manifest(Path(store_url[len("sqlite:///") :]), name)
    if found is None or found[1] != "files" or not path.exists():
        return None
    from modelcycle.blobs.local import LocalBlobStore

    old = load_manifest(LocalBlobStore(config.resolved_blobs_url()).read_bytes(found[2]), found[0])
    if not isinstance(old, FileManifest):
        return None
    current = current_manifest(path, stat_cache_path(config.state_dir))
    changes = compare(old, current)
    out = sys.stdout
    if as_json:
        out.write(json.dumps({"clean": changes.clean, **changes.to_dict()}, indent=2) + "\n")
        return 0
    if changes.clean:
        out.write(f"{path}: up to date with {name}\n")
        return 0
    for key, sign in (("added", "+"), ("removed", "-"), ("modified", "~")):
        for p in getattr(changes, key):
            out.write(f"  {sign} {p}\n")
    for a, b in changes.renamed:
        out.write(f"  → {a} -> {b}\n")
    return 0
