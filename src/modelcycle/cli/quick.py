"""Commands answered without loading the full CLI.

``modelcycle dataset status NAME PATH`` and ``modelcycle dataset add NAME FOLDER`` are
run in loops, by scripts and by editors, so they should take about as long as a
``git status`` / ``git add``. Importing typer, SQLAlchemy and polars alone takes longer
than that, so this module answers them with the standard library, the stat cache, the
blob folder and sqlite3. Adding a table file (CSV, TSV, Parquet, JSON Lines) takes polars
but not the rest: about half a second less per add. It handles only the plain case (a
local workspace with a SQLite store and a local blob folder, the options spelled as
below); anything else returns None before anything is recorded, and the ordinary CLI runs
the command and reports, errors included. The one exception is a table file that cannot
be read: reading it again would double the wait, so that error is reported here, as the
ordinary CLI would.

    dataset status NAME PATH [--json]
    dataset add NAME PATH [-m MESSAGE | --message MESSAGE] [--format FORMAT] [--json]
"""

from __future__ import annotations

import gc
import json
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from modelcycle.cli import INTERRUPTED

if TYPE_CHECKING:
    from modelcycle.core.config import WorkspaceConfig
    from modelcycle.core.progress import Progress
    from modelcycle.data.files import FileChanges
    from modelcycle.store.quickread import DatasetHead, LatestVersion

# Table formats added here; the others (JSON arrays, Excel) take the ordinary path.
_TABLE_FORMATS = ("csv", "tsv", "parquet", "jsonl")


class _Args(NamedTuple):
    command: str
    name: str
    path: Path
    as_json: bool
    message: str | None = None
    format: str | None = None


def run_quick(argv: list[str]) -> int | None:
    """Run ``argv`` if it is a quick command; None means "not handled here"."""
    args = _parse(argv)
    if args is None:
        return None
    # A short-lived command that makes tens of thousands of small tuples and no cycles:
    # the cyclic garbage collector would only rescan them over and over.
    gc.disable()
    try:
        if args.command == "status":
            return _status(args)
        return _add(args)
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED + "\n")
        return 130
    finally:
        gc.enable()


def _parse(argv: list[str]) -> _Args | None:
    rest = [a for a in argv if a != "--json"]
    as_json = len(rest) != len(argv)
    if len(rest) < 4 or rest[0] != "dataset" or rest[1] not in ("status", "add"):
        return None
    command = rest[1]
    positional: list[str] = []
    message: str | None = None
    fmt: str | None = None
    i = 2
    while i < len(rest):
        arg = rest[i]
        if command == "add" and arg in ("-m", "--message", "--format") and i + 1 < len(rest):
            value = rest[i + 1]
            if value.startswith("-"):
                return None
            if arg == "--format":
                if fmt is not None or value not in ("files", *_TABLE_FORMATS):
                    return None
                fmt = value
            elif message is None:
                message = value
            else:
                return None  # given twice: let click decide which one counts
            i += 2
            continue
        if arg.startswith("-") or len(positional) == 2:
            return None
        positional.append(arg)
        i += 1
    if len(positional) != 2:
        return None
    return _Args(command, positional[0], Path(positional[1]), as_json, message, fmt)


class _Local(NamedTuple):
    config: WorkspaceConfig
    db_path: Path
    blobs_root: Path
    head: DatasetHead


def _local(name: str) -> _Local | None:
    """The workspace and dataset ``name``, if both are the plain local kind."""
    from modelcycle.core.config import (
        ENV_URL,
        ENV_WORKSPACE,
        WorkspaceConfig,
        find_workspace_root,
    )
    from modelcycle.store.quickread import dataset_head

    if os.environ.get(ENV_URL) and not os.environ.get(ENV_WORKSPACE):
        return None  # a platform server's workspace
    try:
        config = WorkspaceConfig.load(find_workspace_root())
    except Exception:  # noqa: BLE001 - the ordinary CLI reports it
        return None
    store_url = config.resolved_store_url()
    if not store_url.startswith("sqlite:///") or "://" in config.blobs_url:
        return None
    db_path = Path(store_url[len("sqlite:///") :])
    head = dataset_head(db_path, name)
    if head is None:
        return None
    return _Local(config, db_path, Path(config.resolved_blobs_url()), head)


def _status(args: _Args) -> int | None:
    try:
        changes = _changes(args)
    except Exception:  # noqa: BLE001 - the ordinary CLI will run and report the error
        return None
    if changes is None:
        return None
    out = sys.stdout
    if args.as_json:
        out.write(json.dumps({"clean": changes.clean, **changes.to_dict()}, indent=2) + "\n")
        return 0
    if changes.clean:
        out.write(f"{args.path}: up to date with {args.name}\n")
        return 0
    for key, sign in (("added", "+"), ("removed", "-"), ("modified", "~")):
        for p in getattr(changes, key):
            out.write(f"  {sign} {p}\n")
    for a, b in changes.renamed:
        out.write(f"  → {a} -> {b}\n")
    return 0


def _changes(args: _Args) -> FileChanges | None:
    from modelcycle.blobs.local import LocalBlobStore
    from modelcycle.core.statcache import stat_cache_path
    from modelcycle.data.files import folder_changes
    from modelcycle.data.manifest import file_index

    local = _local(args.name)
    if local is None or not args.path.exists():
        return None
    latest = local.head.latest
    if latest is None or latest.kind != "files":
        return None
    data = LocalBlobStore(local.blobs_root).read_bytes(latest.manifest_oid)
    old = file_index(data, latest.ref)
    return folder_changes(args.path, old, stat_cache_path(local.config.state_dir))


class _Unreadable(Exception):
    """The table file cannot be read (the `ModelcycleError` is the cause); nothing was
    stored or recorded."""


def _add(args: _Args) -> int | None:
    """Add a folder, a file that is not a table, or a table file as the next version of
    a dataset. Whatever fails before the metadata commit falls back to the ordinary
    command, which redoes the add (finding the blobs stored so far, which it then counts
    as deduplicated); after the commit, the command has happened."""
    try:
        recorded = _add_until_commit(args)
    except _Unreadable as e:
        return _report(e.__cause__)
    except Exception:  # noqa: BLE001 - the ordinary CLI will run and report the error
        return None
    if recorded is None:
        return None
    from modelcycle.core.text import human_bytes

    out = sys.stdout
    if args.as_json:
        out.write(json.dumps(recorded.to_dict(), indent=2) + "\n")
    elif not recorded.created:
        out.write(
            f"{recorded.ref} unchanged: the content equals the latest version "
            f"({recorded.content_hash[:12]}).\n"
        )
    else:
        out.write(
            f"Added {recorded.ref} ({recorded.content_hash[:12]}): "
            f"{recorded.counted}, {human_bytes(recorded.size_bytes)}; "
            f"{human_bytes(recorded.bytes_added)} new, "
            f"{human_bytes(recorded.bytes_deduplicated)} deduplicated.\n"
        )
    return 0


def _report(error: BaseException | None) -> int:
    """Print ``error`` (a `ModelcycleError`) as the ordinary CLI does; its exit code."""
    from modelcycle.cli.output import print_error
    from modelcycle.core.errors import ModelcycleError

    assert isinstance(error, ModelcycleError)
    return print_error(error)


class _Added(NamedTuple):
    """What the ordinary ``dataset add`` reports (`modelcycle.data.service.AddResult`)."""

    ref: str
    version: int
    content_hash: str
    created: bool
    counted: str  # "40 files", "1000 rows"
    size_bytes: int
    bytes_added: int
    bytes_deduplicated: int
    files_added: int
    files_hashed: int

    @classmethod
    def unchanged(cls, latest: LatestVersion, counted: str, size: int, files_hashed: int) -> _Added:
        """Content equal to ``latest``: nothing new was recorded or stored."""
        return cls(
            ref=latest.ref,
            version=latest.version,
            content_hash=latest.content_hash,
            created=False,
            counted=counted,
            size_bytes=size,
            bytes_added=0,
            bytes_deduplicated=size,
            files_added=0,
            files_hashed=files_hashed,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "version": self.version,
            "content_hash": self.content_hash,
            "created": self.created,
            "bytes_added": self.bytes_added,
            "bytes_deduplicated": self.bytes_deduplicated,
            "files_added": self.files_added,
            "files_hashed": self.files_hashed,
        }


def _add_until_commit(args: _Args) -> _Added | None:
    from modelcycle.data.formats import detect_format
    from modelcycle.data.refs import check_name
    from modelcycle.store.quickwrite import check_writable

    check_name(args.name)
    src = args.path.expanduser()
    if not src.exists():
        return None
    fmt = detect_format(src, args.format)
    if fmt == "files":
        kind = "files"
    elif fmt in _TABLE_FORMATS and src.is_file():
        kind = "table"
    else:
        return None
    local = _local(args.name)
    if local is None or local.head.kind not in (None, kind):
        return None
    # Step aside now rather than after storing blobs: the ordinary command would then
    # find them stored and report other byte counts.
    check_writable(local.db_path)
    if kind == "files":
        return _add_folder(args, src, local)
    return _add_table(args, src, fmt, local)


def _add_folder(args: _Args, src: Path, local: _Local) -> _Added:
    from modelcycle.blobs.local import LocalBlobStore
    from modelcycle.core.hashing import ALGORITHM
    from modelcycle.core.statcache import stat_cache_path
    from modelcycle.data.files import stage_folder
    from modelcycle.data.manifest import file_oids
    from modelcycle.store.quickwrite import NewQuickVersion, record_version

    blobs = LocalBlobStore(local.blobs_root)
    latest = local.head.latest
    known: set[str] = set()
    if latest is not None and latest.kind == "files":
        known = file_oids(blobs.read_bytes(latest.manifest_oid), latest.ref)
    with _progress(args.as_json) as progress:
        staged = stage_folder(
            src,
            blobs,
            stat_cache_path(local.config.state_dir),
            known_oids=known,
            latest_hash=latest.content_hash if latest is not None else None,
            progress=progress,
        )
    result = staged.ingest
    size = result.manifest.size
    counted = f"{len(result.manifest.files)} files"
    if staged.unchanged:
        assert latest is not None
        return _Added.unchanged(latest, counted, size, result.files_hashed)
    new = NewQuickVersion(
        dataset=args.name,
        kind="files",
        hash_algorithm=ALGORITHM,
        content_hash=staged.manifest_oid,
        size_bytes=size,
        step=staged.step,
        message=args.message,
        parent_id=latest.id if latest is not None else None,
        num_files=len(result.manifest.files),
    )
    recorded = record_version(local.db_path, new, actor=_actor())
    return _Added(
        ref=recorded.ref(args.name),
        version=recorded.version,
        content_hash=staged.manifest_oid,
        created=True,
        counted=counted,
        size_bytes=size,
        bytes_added=result.bytes_added,
        bytes_deduplicated=result.bytes_deduplicated,
        files_added=result.files_added,
        files_hashed=result.files_hashed,
    )


def _add_table(args: _Args, src: Path, fmt: str, local: _Local) -> _Added:
    """As `modelcycle.data.service.DatasetService` adds a table, through `stage_table`."""
    import shutil
    import tempfile

    from modelcycle.blobs.local import LocalBlobStore
    from modelcycle.core.errors import ModelcycleError
    from modelcycle.core.hashing import ALGORITHM
    from modelcycle.data.formats import add_step
    from modelcycle.data.tables import stage_table
    from modelcycle.store.quickwrite import NewQuickVersion, record_version

    blobs = LocalBlobStore(local.blobs_root)
    latest = local.head.latest
    scratch = local.config.state_dir / "tmp"  # as the service's scratch folders
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=scratch))
    try:
        with _progress(args.as_json) as progress:
            try:
                staged = stage_table(src, fmt, tmp / "part-0.parquet", progress)
            except ModelcycleError as e:
                raise _Unreadable() from e
            part = staged.part
            if latest is not None and latest.content_hash == staged.manifest_oid:
                return _Added.unchanged(latest, f"{part.rows} rows", part.size, 0)
            progress.task("profiling")
            profile = staged.profile()
            added = not blobs.exists(part.oid)
            progress.task("storing")
            with blobs.batch() as batch:
                batch.put_file(staged.part_path, part.oid, part.size, move=True)
                batch.put_bytes(staged.manifest_bytes, staged.manifest_oid)
        new = NewQuickVersion(
            dataset=args.name,
            kind="table",
            hash_algorithm=ALGORITHM,
            content_hash=staged.manifest_oid,
            size_bytes=part.size,
            step=add_step(src, fmt),
            message=args.message,
            parent_id=latest.id if latest is not None else None,
            num_rows=part.rows,
            schema=staged.manifest.schema_list(),
            profile=profile,
        )
        recorded = record_version(local.db_path, new, actor=_actor())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _Added(
        ref=recorded.ref(args.name),
        version=recorded.version,
        content_hash=staged.manifest_oid,
        created=True,
        counted=f"{part.rows} rows",
        size_bytes=part.size,
        bytes_added=part.size if added else 0,
        bytes_deduplicated=0 if added else part.size,
        files_added=1 if added else 0,
        files_hashed=1,
    )


def _actor() -> str:
    # As modelcycle.api.workspace records a local workspace's changes.
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def _progress(as_json: bool) -> AbstractContextManager[Progress]:
    """The ordinary CLI's progress bar where it would draw one, else nothing (rich is
    imported only for a terminal)."""
    env = os.environ
    if not as_json and (sys.stderr.isatty() or "FORCE_COLOR" in env or "TTY_COMPATIBLE" in env):
        from modelcycle.cli.output import progress

        return progress(True)
    from modelcycle.core.progress import NullProgress

    return nullcontext(NullProgress())
