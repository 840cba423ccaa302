"""Run pages: the run table (filter, sort, experiment, pages of 50), one run (params,
tags, a chart per metric, inputs, artifacts, timing) and several runs compared (each
shared metric on one chart, params side by side with the differing ones marked)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from modelcycle.core.errors import UsageError
from modelcycle.server.ui._data_charts import (
    COMPARE_CHART_POINTS,
    RUN_CHART_POINTS,
    Series,
    metric_chart,
)
from modelcycle.server.ui._data_runs import PAGE_SIZE, Query, duration, run_ids, run_page
from modelcycle.server.ui.core import Pages
from modelcycle.server.ui.datasets import version_href

# Charts on one page at most: each is one query over the series.
MAX_CHARTS = 40
MAX_COMPARED = 10  # one colour each
MAX_CHILDREN = 100


def register(router: APIRouter, pages: Pages) -> None:
    @router.get("/runs", response_class=HTMLResponse)
    def runs(
        request: Request,
        experiment: str = "",
        filter: str = "",
        order: str = "",
        page: str = "1",
    ) -> HTMLResponse:
        query = Query(experiment.strip(), filter.strip(), order.strip(), _page_number(page))
        ws = pages.ws()
        try:
            result = run_page(ws, query)
        except UsageError as e:  # a filter or an order that does not parse: say so by the form
            return pages.render(
                request,
                "runs.html",
                status_code=400,
                q=query,
                result=None,
                experiments=ws.runs.experiments(),
                error=f"{e.message} ({e.hint})" if e.hint else e.message,
                page_size=PAGE_SIZE,
                duration=duration,
            )
        return pages.render(
            request,
            "runs.html",
            q=query,
            result=result,
            experiments=result.experiments,
            error=None,
            page_size=PAGE_SIZE,
            duration=duration,
        )

    @router.get("/runs/compare", response_class=HTMLResponse)
    def compare(request: Request) -> HTMLResponse:
        ids = run_ids(request.query_params.getlist("ids"))
        if len(ids) > MAX_COMPARED:
            raise UsageError(
                f"{len(ids)} runs chosen; the comparison shows at most {MAX_COMPARED}",
                hint="tick fewer runs on the runs page",
            )
        ws = pages.ws()
        table = ws.runs.compare(ids)  # at least two runs; unknown ids are NotFoundError
        runs = [ws.runs.get(r["id"]) for r in table["runs"]]
        having: dict[str, list[int]] = {}
        for i, run in enumerate(runs):
            for key in run.metrics:
                having.setdefault(key, []).append(i)
        shared = sorted(k for k, owners in having.items() if len(owners) > 1)
        charts = []
        for n, key in enumerate(shared[:MAX_CHARTS]):
            series = []
            for i in having[key]:
                points = runs[i].metric_history(key, max_points=COMPARE_CHART_POINTS)
                series.append(
                    Series(
                        runs[i].name or runs[i].id[:8],
                        [p.step for p in points],
                        [p.value for p in points],
                    )
                )
            charts.append(
                {
                    "key": key,
                    "svg": metric_chart(f"compare-{n}", key, series, width=560, legend=True),
                }
            )
        differing = set(table["differing_params"])
        return pages.render(
            request,
            "runs_compare.html",
            runs=runs,
            table=table,
            differing=differing,
            charts=charts,
            unshared=sorted(k for k, owners in having.items() if len(owners) == 1),
            more_charts=max(0, len(shared) - MAX_CHARTS),
            ended=_ended,
            duration=duration,
        )

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(request: Request, run_id: str) -> HTMLResponse:
        ws = pages.ws()
        found = ws.runs.get(run_id)
        keys = sorted(found.metrics)
        charts = []
        for n, key in enumerate(keys[:MAX_CHARTS]):
            points = found.metric_history(key, max_points=RUN_CHART_POINTS)
            series = Series(key, [p.step for p in points], [p.value for p in points])
            charts.append(
                {"key": key, "svg": metric_chart(f"metric-{n}", key, [series]), "n": len(points)}
            )
        parent = ws.runs.store.get_run(found.parent_id) if found.parent_id else None
        children = ws.runs.search(None, None, None, MAX_CHILDREN, parent=found.id)
        inputs = [
            {"ref": ref, "role": role, "href": version_href(ref)} for ref, role in found.inputs()
        ]
        return pages.render(
            request,
            "runs_run.html",
            run=found,
            ended=_ended(found.end_time),
            charts=charts,
            more_charts=max(0, len(keys) - MAX_CHARTS),
            parent=parent,
            children=children,
            inputs=inputs,
            artifacts=found.artifacts(),
            environment=_environment(found.environment),
            duration=duration,
        )


def _page_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(f"page {text!r} is not a page number", hint="pages count from 1")
    return number


def _ended(end_time: int | None) -> dt.datetime | None:
    return None if end_time is None else dt.datetime.fromtimestamp(end_time / 1000, dt.UTC)


def _environment(env: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's environment as (name, text) rows; package versions on one row."""
    rows = []
    for key, value in env.items():
        if isinstance(value, dict):
            text = ", ".join(f"{k} {v}" for k, v in sorted(value.items()))
        else:
            text = "–" if value is None else str(value)
        rows.append((key, text))
    return rows
