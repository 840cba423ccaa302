"""What the run pages show, read from the workspace: a page of the run table (filter,
order, experiment, server-side paging), and the rows of a run's facts."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from modelcycle.core.errors import NotFoundError
from modelcycle.tracking.search import parse_filter, parse_order

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace
    from modelcycle.store.runs import RunRow

PAGE_SIZE = 50
# Columns of the run table at most, of each kind (the page's runs' keys, by name).
MAX_METRIC_COLUMNS = 8
MAX_PARAM_COLUMNS = 8
DEFAULT_ORDER = "start_time DESC"  # the store's order when none is given


@dataclass(frozen=True)
class Query:
    """The run table's state, as its URL's query string carries it."""

    experiment: str = ""
    filter: str = ""
    order: str = ""
    page: int = 1

    def url(self, **changes: Any) -> str:
        values = {
            "experiment": self.experiment,
            "filter": self.filter,
            "order": self.order,
            "page": self.page,
            **changes,
        }
        if values.get("page") == 1:
            del values["page"]
        return "/runs?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})

    def sort_url(self, field_name: str) -> str:
        """Sorted by ``field_name``: descending first, ascending when it already is (on
        the first page)."""
        descending = f"{field_name} DESC"
        flipped = self.sorted_as(field_name) == "desc"
        return self.url(order=f"{field_name} ASC" if flipped else descending, page=1)

    def sorted_as(self, field_name: str) -> str:
        """'desc', 'asc' or '' for the column header's arrow."""
        order = self.order.strip() or DEFAULT_ORDER
        if order == f"{field_name} DESC":
            return "desc"
        if order in (field_name, f"{field_name} ASC"):
            return "asc"
        return ""


@dataclass
class RunLine:
    id: str
    name: str
    experiment: str
    status: str
    started: dt.datetime
    duration_s: float | None
    parent_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class RunPage:
    runs: list[RunLine]
    page: int
    has_next: bool
    total: int | None  # known without a filter
    metric_keys: list[str]
    param_keys: list[str]
    more_metric_keys: int
    more_param_keys: int
    experiments: list[dict[str, Any]]

    @property
    def first(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1

    @property
    def last_page(self) -> int | None:
        return None if self.total is None else max(1, math.ceil(self.total / PAGE_SIZE))


def run_page(ws: Workspace, query: Query) -> RunPage:
    """One page of the runs ``query`` selects: the store finds and orders the rows up to
    the page's end, and only the page's runs have their params and metrics read."""
    experiments = ws.runs.experiments()
    experiment_ids: list[int] | None = None
    if query.experiment:
        experiment_ids = [e["id"] for e in experiments if e["name"] == query.experiment]
        if not experiment_ids:
            raise NotFoundError(
                f"no experiment named {query.experiment!r}",
                hint="pick one from the list of experiments on the runs page",
            )
    clauses, orders = parse_filter(query.filter), parse_order(query.order)
    total = None
    if not clauses:
        total = sum(
            e["runs"] for e in experiments if experiment_ids is None or e["id"] in experiment_ids
        )
    offset = (query.page - 1) * PAGE_SIZE
    rows = []
    if total is None or offset < total:  # a page past the end reads nothing
        rows = ws.runs.store.search(experiment_ids, clauses, orders, PAGE_SIZE + 1, offset=offset)
    has_next = len(rows) > PAGE_SIZE
    lines = _lines(ws, rows[:PAGE_SIZE])
    metric_keys = sorted({k for r in lines for k in r.metrics})
    param_keys = sorted({k for r in lines for k in r.params})
    return RunPage(
        lines,
        query.page,
        has_next,
        total,
        metric_keys[:MAX_METRIC_COLUMNS],
        param_keys[:MAX_PARAM_COLUMNS],
        max(0, len(metric_keys) - MAX_METRIC_COLUMNS),
        max(0, len(param_keys) - MAX_PARAM_COLUMNS),
        experiments,
    )


def _lines(ws: Workspace, rows: Sequence[RunRow]) -> list[RunLine]:
    ids = [r.id for r in rows]
    params = ws.runs.store.key_values("params", ids)
    latest = ws.runs.store.latest_metrics(ids)
    return [
        RunLine(
            r.id,
            r.name,
            r.experiment,
            r.status,
            dt.datetime.fromtimestamp(r.start_time / 1000, dt.UTC),
            None if r.end_time is None else (r.end_time - r.start_time) / 1000,
            r.parent_id,
            {k: v for k, (v, _) in latest[r.id].items()},
            params[r.id],
        )
        for r in rows
    ]


def duration(seconds: float | None) -> str:
    """``seconds`` as ``1h 02m``, ``3m 05s`` or ``4.2 s``."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def run_ids(values: Sequence[str]) -> list[str]:
    """Run ids from ``ids=a,b`` and ``ids=a&ids=b`` alike, each once, in order."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            run_id = part.strip()
            if run_id and run_id not in out:
                out.append(run_id)
    return out
