"""The run filter and order-by language, parsed into plain clauses the store turns into SQL.

    metrics.auc > 0.9 and params.model = 'xgb' and tags.team != "core"
    attributes.status = 'finished'      (also: name, user, start_time, end_time, run_id)

Comparisons: ``= != < <= > >=`` for metrics and times; ``= != LIKE ILIKE`` (and the
order comparisons) for params, tags and text attributes, compared as text as MLflow does.
Clauses join with ``and``. A name with spaces is quoted with backticks:
``metrics.`val loss` < 0.3``. Order-by entries read ``metrics.auc DESC``,
``params.lr``, ``start_time ASC``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from modelcycle.core.errors import UsageError
from modelcycle.store.runs import Clause, Order

KINDS = ("metrics", "params", "tags", "attributes")
ATTRIBUTES = ("status", "name", "user", "start_time", "end_time", "run_id", "duration")
NUMERIC_ATTRIBUTES = ("start_time", "end_time", "duration")
OPS = ("=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE")
_ALIASES = {
    "metric": "metrics",
    "param": "params",
    "tag": "tags",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<ident>[A-Za-z_][\w]*(?:\.(?:`[^`]+`|"[^"]+"|[\w\-/.:]+))?)
      | (?P<op>!=|<=|>=|=|<|>)
      | '(?P<sq>(?:[^'\\]|\\.)*)'
      | "(?P<dq>(?:[^"\\]|\\.)*)"
      | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf)
    )""",
    re.VERBOSE | re.IGNORECASE,
)


def _field(text: str, where: str) -> tuple[str, str]:
    if "." not in text:
        if text.lower() in ATTRIBUTES:
            return "attributes", text.lower()
        raise UsageError(
            f"{where}: {text!r} is not a field",
            hint="write metrics.NAME, params.NAME, tags.NAME or an attribute "
            f"({', '.join(ATTRIBUTES)})",
        )
    kind, key = text.split(".", 1)
    kind = _ALIASES.get(kind.lower(), kind.lower())
    if kind not in KINDS:
        raise UsageError(
            f"{where}: unknown field kind {kind!r} in {text!r}",
            hint="fields start with metrics., params., tags. or attributes.",
        )
    key = key.strip('`"')
    if kind == "attributes" and key.lower() not in ATTRIBUTES:
        raise UsageError(
            f"{where}: unknown attribute {key!r}", hint=f"attributes: {', '.join(ATTRIBUTES)}"
        )
    return kind, key.lower() if kind == "attributes" else key


def parse_filter(text: str | None) -> list[Clause]:
    """Clauses of a filter string (empty for None or blank)."""
    if not text or not text.strip():
        return []
    where = f"filter {text!r}"
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(
                f"{where}: cannot read it from character {pos + 1} ({text[pos : pos + 12]!r})",
                hint="e.g. \"metrics.auc > 0.9 and params.model = 'xgb'\"",
            )
        pos = m.end()
        group = m.lastgroup or ""
        tokens.append((group, m.group(group)))
    clauses: list[Clause] = []
    i = 0
    while i < len(tokens):
        if clauses:
            if tokens[i][0] != "ident" or tokens[i][1].lower() != "and":
                raise UsageError(
                    f"{where}: expected 'and' between comparisons, got {tokens[i][1]!r}",
                    hint="clauses are joined with 'and' ('or' is not supported)",
                )
            i += 1
        if len(tokens) - i < 3:
            raise UsageError(
                f"{where}: incomplete comparison at the end",
                hint="each comparison is FIELD OP VALUE, e.g. metrics.auc > 0.9",
            )
        (fk, field), (ok, op), (vk, raw) = tokens[i], tokens[i + 1], tokens[i + 2]
        i += 3
        if fk != "ident":
            raise UsageError(f"{where}: expected a field, got {field!r}", hint="")
        if ok == "ident" and op.upper() in ("LIKE", "ILIKE"):
            op = op.upper()
        elif ok != "op":
            raise UsageError(
                f"{where}: expected a comparison after {field}, got {op!r}",
                hint=f"comparisons: {', '.join(OPS)}",
            )
        kind, key = _field(field, where)
        value: Any
        numeric = kind == "metrics" or (kind == "attributes" and key in NUMERIC_ATTRIBUTES)
        if numeric:
            if vk != "num":
                raise UsageError(
                    f"{where}: {field} compares with a number, got {raw!r}",
                    hint="e.g. metrics.auc > 0.9",
                )
            if op in ("LIKE", "ILIKE"):
                raise UsageError(f"{where}: {op} does not apply to numbers", hint="use = < >")
            value = float(raw)
        else:
            if vk not in ("sq", "dq"):
                raise UsageError(
                    f"{where}: {field} compares with quoted text, got {raw!r}",
                    hint=f"quote the value: {field} {op} '{raw}'",
                )
            value = raw
        clauses.append(Clause(kind, key, op, value))
    return clauses


def parse_order(entries: Sequence[str] | str | None) -> list[Order]:
    if not entries:
        return []
    items = [entries] if isinstance(entries, str) else entries
    out = []
    for item in items:
        for part in item.split(","):
            words = part.strip().rsplit(None, 1)
            if not words:
                continue
            descending = False
            if len(words) == 2 and words[1].upper() in ("ASC", "DESC"):
                descending = words[1].upper() == "DESC"
                field = words[0]
            else:
                field = part.strip()
            kind, key = _field(field, f"order-by {part.strip()!r}")
            out.append(Order(kind, key, descending))
    return out
