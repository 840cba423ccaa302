"""Text renderings of lineage trees, profiles and diffs."""

from __future__ import annotations

from typing import Any

from modelcycle.cli.output import human_bytes
from modelcycle.data.service import LineageNode
from modelcycle.registry.lineage import lineage_lines as _lineage_lines


def lineage_lines(node: LineageNode | dict[str, Any]) -> list[str]:
    """A dataset version's ancestry as an indented tree."""
    return _lineage_lines(node.to_dict() if isinstance(node, LineageNode) else node)


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def profile_rows(profile: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, c in profile.get("columns", {}).items():
        top = ", ".join(f"{t['value']}×{t['count']}" for t in c.get("top", [])[:3])
        rows.append(
            [
                name,
                c.get("type", ""),
                f"{c.get('null_fraction', 0):.1%}",
                str(c.get("distinct", "")),
                _num(c.get("min")),
                _num(c.get("mean")),
                _num(c.get("max")),
                top,
                ",".join(c.get("pii", [])),
            ]
        )
    return rows


def diff_lines(d: dict[str, Any]) -> list[str]:
    out = [f"{d['from']} → {d['to']}" + ("  (identical content)" if d["same_content"] else "")]
    if d["kind"] == "files":
        f = d["files"]
        out.append(
            f"files: +{len(f['added'])} added, -{len(f['removed'])} removed, "
            f"~{len(f['modified'])} modified, {len(f['renamed'])} renamed"
        )
        for key, sign in (("added", "+"), ("removed", "-"), ("modified", "~")):
            out += [f"  {sign} {p}" for p in f[key][:20]]
            if len(f[key]) > 20:
                out.append(f"  … {len(f[key]) - 20} more {key}")
        out += [f"  → {r['from']} -> {r['to']}" for r in f["renamed"][:20]]
        return out
    s = d["schema"]
    if s["added"] or s["removed"] or s["type_changed"]:
        out.append("schema:")
        out += [f"  + {c}" for c in s["added"]] + [f"  - {c}" for c in s["removed"]]
        out += [f"  ~ {c['column']}: {c['from']} -> {c['to']}" for c in s["type_changed"]]
    else:
        out.append("schema: unchanged")
    r = d["rows"]
    changed = f", ~{r['changed']} changed" if "changed" in r else ""
    out.append(
        f"rows ({r['by']}): {r['from_count']} -> {r['to_count']}: "
        f"+{r['added']} added, -{r['removed']} removed{changed}"
    )
    for c in d["columns"]:
        parts = [
            f"{k} {_num(v['from'])}->{_num(v['to'])}"
            for k, v in c.items()
            if k not in ("column", "top") and isinstance(v, dict)
        ]
        if "top" in c:
            parts.append("top values changed")
        out.append(f"  {c['column']}: " + "; ".join(parts))
    return out


def size_line(v: Any) -> str:
    what = f"{v.num_rows} rows" if v.kind == "table" else f"{v.num_files} files"
    return f"{what}, {human_bytes(v.size_bytes)}"
