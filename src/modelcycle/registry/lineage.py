"""Lineage as text and as Graphviz: a model version → its run → the dataset versions the
run read → what those were made from, back to the raw files."""

from __future__ import annotations

from typing import Any


def step_label(step: dict[str, Any]) -> str:
    op = step.get("op", "?")
    if op == "add":
        fmt = f" ({step['format']})" if step.get("format") else ""
        return f"added from {step.get('source')}{fmt}"
    if op == "recipe":
        names = ", ".join(next(iter(s)) for s in step.get("recipe", []))
        return f"recipe {str(step.get('recipe_hash', ''))[:12]} [{names}]"
    if op == "split":
        return f"split part {step.get('part')} ratios={step.get('ratios')} seed={step.get('seed')}"
    return str(op)


def lineage_lines(node: dict[str, Any]) -> list[str]:
    """A dataset version's ancestry (``LineageNode.to_dict()``) as an indented tree."""
    lines: list[str] = []
    _dataset_tree(node, "", True, True, lines)
    return lines


def _dataset_label(n: dict[str, Any]) -> str:
    gone = " [deleted]" if n.get("deleted") else ""
    role = f"{n['role']}: " if n.get("role") else ""
    return f"{role}{n['ref']} ({n['content_hash'][:12]}){gone}  {step_label(n['step'])}"


def _dataset_tree(n: dict[str, Any], prefix: str, last: bool, top: bool, out: list[str]) -> None:
    label = _dataset_label(n)
    out.append(label if top else f"{prefix}{'└── ' if last else '├── '}{label}")
    child_prefix = prefix if top else prefix + ("    " if last else "│   ")
    parents = n.get("parents", [])
    for i, p in enumerate(parents):
        _dataset_tree(p, child_prefix, i == len(parents) - 1, False, out)


def model_lineage_lines(lineage: dict[str, Any]) -> list[str]:
    """A model version → its run → the dataset versions it read → their ancestry."""
    lines = [f"model {lineage['model']} ({lineage['flavor']}, {lineage['stage']})"]
    run = lineage.get("run")
    if run is None:
        lines.append("└── (registered without a run: no recorded lineage)")
        return lines
    commit = run.get("git_commit")
    code = f", git {commit[:10]}{' dirty' if run.get('git_dirty') else ''}" if commit else ""
    lines.append(f"└── run {run['id'][:8]} in {run['experiment']} ({run['status']}{code})")
    inputs = lineage.get("inputs", [])
    if not inputs:
        lines.append("    └── (the run logged no dataset inputs)")
    for i, node in enumerate(inputs):
        _dataset_tree(node, "    ", i == len(inputs) - 1, False, lines)
    return lines


def lineage_dot(lineage: dict[str, Any]) -> str:
    """Graphviz source for a model's or a dataset version's lineage (arrows point from
    what was used to what was made)."""
    nodes: dict[str, str] = {}
    edges: set[tuple[str, str, str]] = set()

    def q(*lines: str) -> str:
        escaped = (t.replace("\\", "\\\\").replace('"', '\\"') for t in lines)
        return '"' + "\\n".join(escaped) + '"'

    def dataset(n: dict[str, Any]) -> str:
        key = f"data:{n['ref']}"
        nodes[key] = f"{q(n['ref'], step_label(n['step']))}, shape=box"
        for p in n.get("parents", []):
            edges.add((dataset(p), key, p.get("role") or ""))
        return key

    if "model" in lineage:
        model = f"model:{lineage['model']}"
        nodes[model] = f"{q(lineage['model'], lineage['stage'])}, shape=doubleoctagon"
        run = lineage.get("run")
        if run is not None:
            rkey = f"run:{run['id']}"
            nodes[rkey] = f"{q('run ' + run['id'][:8], run['experiment'])}, shape=ellipse"
            edges.add((rkey, model, ""))
            for node in lineage.get("inputs", []):
                edges.add((dataset(node), rkey, node.get("role") or ""))
    else:
        dataset(lineage)
    out = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    ids = {key: f"n{i}" for i, key in enumerate(nodes)}
    out += [f"  {ids[k]} [label={attrs}];" for k, attrs in nodes.items()]
    for a, b, label in sorted(edges):
        out.append(f"  {ids[a]} -> {ids[b]}" + (f" [label={q(label)}];" if label else ";"))
    out.append("}")
    return "\n".join(out) + "\n"
