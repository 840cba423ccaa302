"""A model version's lineage (`RegistryService.lineage`) as an SVG graph: boxes for the
raw data, the dataset versions made from it, the run that read them and the model, with
arrows from what was used to what was made (left to right), as `lineage_dot` draws it.
Boxes link to the run's and the dataset versions' pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from modelcycle.evaluation.svg import AXIS, MUTED, shorten
from modelcycle.registry.lineage import step_label

BOX_W, BOX_H = 210, 48
GAP_X, GAP_Y = 70, 18
PAD = 12
FILL = {"model": "#e8eefb", "run": "#eef6ec", "data": "#f6f7f9", "gone": "#fbeaea"}


@dataclass
class _Node:
    key: str
    kind: str
    title: str
    subtitle: str
    href: str | None
    depth: int
    tip: str
    order: int = 0


@dataclass
class _Graph:
    nodes: dict[str, _Node] = field(default_factory=dict)
    edges: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, node: _Node) -> str:
        held = self.nodes.get(node.key)
        if held is None:
            node.order = len(self.nodes)
            self.nodes[node.key] = node
        elif node.depth > held.depth:
            held.depth = node.depth  # drawn left of everything it feeds
        return node.key


def lineage_svg(lineage: Mapping[str, Any]) -> Markup:
    """The graph of ``lineage`` (a model version's, see `RegistryService.lineage`)."""
    graph = _Graph()
    model = graph.add(
        _Node(
            "model",
            "model",
            str(lineage["model"]),
            f"{lineage.get('flavor', '')} · {lineage.get('stage', '')}",
            None,
            0,
            f"model {lineage['model']}",
        )
    )
    run = lineage.get("run")
    if run is not None:
        run_key = graph.add(
            _Node(
                f"run:{run['id']}",
                "run",
                f"run {str(run['id'])[:8]}" + (f" {run['name']}" if run.get("name") else ""),
                f"{run.get('experiment', '')} · {run.get('status', '')}",
                f"/runs/{quote(str(run['id']), safe='')}",
                1,
                f"run {run['id']} in {run.get('experiment')}",
            )
        )
        graph.edges.add((run_key, model, ""))
        for node in lineage.get("inputs", []):
            graph.edges.add((_dataset(graph, node, 2), run_key, str(node.get("role") or "")))
    return _draw(graph)


def _dataset(graph: _Graph, n: Mapping[str, Any], depth: int) -> str:
    ref = str(n["ref"])
    name, _, number = ref.partition("@")
    href = f"/datasets/{quote(name, safe='')}" + (f"/{number}" if number.isdigit() else "")
    step = step_label(dict(n.get("step") or {}))
    gone = bool(n.get("deleted"))
    key = graph.add(
        _Node(
            f"data:{ref}",
            "gone" if gone else "data",
            ref + (" (deleted)" if gone else ""),
            step,
            href,
            depth,
            f"{ref} ({str(n.get('content_hash', ''))[:12]}): {step}",
        )
    )
    for parent in n.get("parents", []):
        graph.edges.add((_dataset(graph, parent, depth + 1), key, str(parent.get("role") or "")))
    return key


def _draw(graph: _Graph) -> Markup:
    deepest = max(n.depth for n in graph.nodes.values())
    columns: dict[int, list[_Node]] = {}
    for node in sorted(graph.nodes.values(), key=lambda n: n.order):
        columns.setdefault(node.depth, []).append(node)
    rows = max(len(c) for c in columns.values())
    width = PAD * 2 + (deepest + 1) * BOX_W + deepest * GAP_X
    height = PAD * 2 + rows * BOX_H + (rows - 1) * GAP_Y
    where: dict[str, tuple[float, float]] = {}
    for depth, nodes in columns.items():
        x: float = PAD + (deepest - depth) * (BOX_W + GAP_X)
        top = PAD + (rows - len(nodes)) * (BOX_H + GAP_Y) / 2  # centred in its column
        for i, node in enumerate(nodes):
            where[node.key] = (x, top + i * (BOX_H + GAP_Y))
    parts = [
        f'<svg id="plot-lineage" data-plot="lineage" class="plot lineage" role="img"'
        f' aria-label="Lineage graph" viewBox="0 0 {width} {height:.0f}" width="{width}"'
        f' height="{height:.0f}" font-size="12">',
        "<title>Lineage: what this version was made from</title>",
        '<defs><marker id="lineage-arrow" viewBox="0 0 10 10" refX="10" refY="5"'
        ' markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{MUTED}"/></marker></defs>',
    ]
    for src, dst, label in sorted(graph.edges):
        (x0, y0), (x1, y1) = where[src], where[dst]
        ax, ay = x0 + BOX_W, y0 + BOX_H / 2
        bx, by = x1, y1 + BOX_H / 2
        mid = (ax + bx) / 2
        parts.append(
            f'<path class="edge" d="M{ax:.1f},{ay:.1f} C{mid:.1f},{ay:.1f} {mid:.1f},{by:.1f}'
            f' {bx - 1:.1f},{by:.1f}" fill="none" stroke="{MUTED}" stroke-width="1.5"'
            ' marker-end="url(#lineage-arrow)"/>'
        )
        if label:
            parts.append(
                f'<text x="{mid:.1f}" y="{(ay + by) / 2 - 4:.1f}" text-anchor="middle"'
                f' font-size="11" fill="{MUTED}">{escape(shorten(label, 12))}</text>'
            )
    for node in graph.nodes.values():
        x, y = where[node.key]
        box = (
            f'<g class="node {node.kind}"><title>{escape(node.tip)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="5"'
            f' fill="{FILL[node.kind]}" stroke="{AXIS}"/>'
            f'<text x="{x + 10:.1f}" y="{y + 19:.1f}" font-weight="600" fill="{AXIS}">'
            f"{escape(shorten(node.title, 30))}</text>"
            f'<text x="{x + 10:.1f}" y="{y + 37:.1f}" font-size="11" fill="{MUTED}">'
            f"{escape(shorten(node.subtitle, 34))}</text></g>"
        )
        if node.href:
            box = f'<a href="{escape(node.href)}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return Markup("".join(parts))
