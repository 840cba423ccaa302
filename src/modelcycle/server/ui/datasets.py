"""Dataset pages: the catalog, a dataset's versions, one version (schema, lineage,
profile with a histogram per numeric column, the runs that read it) and the diff of two
versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from modelcycle.core.errors import UsageError
from modelcycle.registry.lineage import step_label
from modelcycle.server.ui._data_charts import histogram
from modelcycle.server.ui.core import Pages

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace
    from modelcycle.data.service import LineageNode
    from modelcycle.store.metadata import VersionRecord

# How far back the version page draws the lineage; older ancestors are a click away.
LINEAGE_DEPTH = 12
# What one page lists at most: files of a file dataset, runs that read a version.
MAX_FILES = 500
MAX_READERS = 20


def version_href(ref: str) -> str:
    """The page of the version ``NAME@N``."""
    name, _, number = ref.partition("@")
    return f"/datasets/{quote(name)}/{quote(number or 'latest')}"


def register(router: APIRouter, pages: Pages) -> None:
    @router.get("/datasets", response_class=HTMLResponse)
    def datasets(request: Request) -> HTMLResponse:
        ws = pages.ws()
        rows = []
        for entry in ws.datasets.catalog():
            latest = ws.datasets.resolve(f"{entry['name']}@{entry['latest']}")
            rows.append({**entry, "size": latest.size_bytes, "updated": latest.created_at})
        return pages.render(request, "datasets.html", datasets=rows)

    @router.get("/datasets/{name}", response_class=HTMLResponse)
    def versions(request: Request, name: str) -> HTMLResponse:
        ws = pages.ws()
        found = list(reversed(ws.datasets.versions(name)))
        tags = ws.datasets.store.tags(found[0].dataset_id) if found else {}
        return pages.render(
            request,
            "datasets_versions.html",
            name=name,
            versions=found,
            tags=tags,
            kind=found[0].kind if found else None,
            diff=_diff_defaults(found),
        )

    @router.get("/datasets/{name}/diff", response_class=HTMLResponse)
    def diff(
        request: Request,
        name: str,
        a: str | None = None,
        b: str | None = None,
        key: str | None = None,
    ) -> HTMLResponse:
        ws = pages.ws()
        found = list(reversed(ws.datasets.versions(name)))
        defaults = _diff_defaults(found)
        a = a or defaults["a"]
        b = b or defaults["b"]
        key = (key or "").strip() or None
        result: dict[str, Any] | None = None
        error: str | None = None
        status = 200
        if a and b:
            try:
                result = ws.datasets.diff(f"{name}@{a}", f"{name}@{b}", key=key)
            except UsageError as e:  # a bad key or kinds that differ: say so beside the form
                error, status = f"{e.message} ({e.hint})" if e.hint else e.message, 400
        columns = _shared_columns(found, a, b)
        return pages.render(
            request,
            "datasets_diff.html",
            status_code=status,
            name=name,
            versions=found,
            a=a,
            b=b,
            key=key,
            columns=columns,
            result=result,
            error=error,
            version_href=version_href,
        )

    @router.get("/datasets/{name}/{version}", response_class=HTMLResponse)
    def version(request: Request, name: str, version: str) -> HTMLResponse:
        ws = pages.ws()
        record = ws.datasets.resolve(f"{name}@{version}")
        info = ws.datasets.describe(record)
        lineage = _lineage(ws, ws.datasets.lineage(record.ref, depth=LINEAGE_DEPTH))
        profile = _profile(info.get("profile"))
        files, more_files = _files(ws, record)
        readers, reader_count = _readers(ws, record)
        siblings = ws.datasets.versions(name)
        previous = [v for v in siblings if v.version < record.version]
        compare = (
            f"/datasets/{quote(name)}/diff?"
            + urlencode({"a": previous[-1].version, "b": record.version})
            if previous
            else None
        )
        return pages.render(
            request,
            "datasets_version.html",
            v=record,
            info=info,
            step=step_label(record.step),
            lineage=lineage,
            profile=profile,
            files=files,
            more_files=more_files,
            readers=readers,
            reader_count=reader_count,
            compare=compare,
            version_href=version_href,
        )


def _diff_defaults(newest_first: list[VersionRecord]) -> dict[str, str]:
    if len(newest_first) < 2:
        only = str(newest_first[0].version) if newest_first else ""
        return {"a": only, "b": only}
    return {"a": str(newest_first[1].version), "b": str(newest_first[0].version)}


def _shared_columns(versions: list[VersionRecord], a: str, b: str) -> list[str]:
    """Columns both chosen versions have (candidates for the diff's key)."""
    by_number = {str(v.version): v for v in versions}
    va, vb = by_number.get(a), by_number.get(b)
    if va is None or vb is None or not va.schema or not vb.schema:
        return []
    names_b = {c["name"] for c in vb.schema}
    return [c["name"] for c in va.schema if c["name"] in names_b]


def _lineage(ws: Workspace, node: LineageNode, depth: int = 0) -> dict[str, Any]:
    v = node.version
    parents = [_lineage(ws, p, depth + 1) for p in node.parents]
    cut = (
        depth == LINEAGE_DEPTH
        and not parents
        and bool(ws.datasets.store.parents(v.id))  # lineage stops here, the data does not
    )
    return {
        "ref": v.ref,
        "href": version_href(v.ref),
        "hash": v.content_hash[:12],
        "role": node.role,
        "step": step_label(v.step),
        "deleted": v.deleted_at is not None,
        "parents": parents,
        "cut": cut,
    }


def _profile(profile: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each profiled column with its statistics and, when numeric, its histogram."""
    if not profile:
        return []
    out = []
    for i, (name, stats) in enumerate(profile.get("columns", {}).items()):
        hist = stats.get("histogram")
        out.append(
            {
                "name": name,
                "stats": stats,
                "chart": histogram(f"hist-{i}", name, hist) if hist else None,
            }
        )
    return out


def _files(ws: Workspace, record: VersionRecord) -> tuple[list[tuple[str, int]], int]:
    """The first files of a file dataset's version, and how many more it has."""
    if record.kind != "files":
        return [], 0
    from modelcycle.data.manifest import FileManifest

    manifest = ws.datasets.manifest(record)
    if not isinstance(manifest, FileManifest):
        return [], 0
    entries = [(f.path, f.size) for f in manifest.files[:MAX_FILES]]
    return entries, max(0, len(manifest.files) - MAX_FILES)


def _readers(ws: Workspace, record: VersionRecord) -> tuple[list[dict[str, Any]], int]:
    """Up to MAX_READERS of the runs that read this version (newest first), and how many
    read it in all."""
    ids = ws.runs.store.runs_reading(record.id)
    rows = [r for r in map(ws.runs.store.get_run, ids[:MAX_READERS]) if r is not None]
    rows.sort(key=lambda r: r.start_time, reverse=True)
    shown = [
        {"id": r.id, "name": r.name, "experiment": r.experiment, "status": r.status} for r in rows
    ]
    return shown, len(ids)
