"""A deployment's live traffic from its prediction log: requests and p50/p95 latency per
minute and per version, for the deployment page's charts.

A request that predicted several rows is several rows of the log; it counts once, with
the latency of its first row (as monitoring counts it). Shadow copies are their own
series, so a shadow never reads as traffic its version answered.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from markupsafe import Markup

from modelcycle.evaluation.svg import color
from modelcycle.server.ui._ops_charts import Series, time_chart

if TYPE_CHECKING:
    import polars as pl

BUCKET_SECONDS = 60


@dataclass(frozen=True)
class Traffic:
    start: dt.datetime
    end: dt.datetime
    buckets: int
    requests: dict[str, list[float | None]] = field(default_factory=dict)
    p50: dict[str, list[float | None]] = field(default_factory=dict)
    p95: dict[str, list[float | None]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def times(self) -> list[dt.datetime]:
        return [self.start + dt.timedelta(seconds=BUCKET_SECONDS * i) for i in range(self.buckets)]

    def requests_chart(self) -> Markup | None:
        if not self.totals:
            return None
        series = [
            Series(label, self.times, values, stroke=color(i))
            for i, (label, values) in enumerate(self.requests.items())
        ]
        return time_chart(
            "requests",
            "Requests per minute",
            "requests / minute",
            series,
            start=self.start,
            end=self.end,
            legend=True,
        )

    def latency_chart(self) -> Markup | None:
        series: list[Series] = []
        for i, label in enumerate(self.requests):
            if label in self.p50:
                series.append(Series(f"{label} p50", self.times, self.p50[label], stroke=color(i)))
                series.append(
                    Series(
                        f"{label} p95", self.times, self.p95[label], dashed=True, stroke=color(i)
                    )
                )
        return time_chart(
            "latency",
            "Latency per minute (p50 solid, p95 dashed)",
            "milliseconds",
            series,
            start=self.start,
            end=self.end,
            legend=True,
        )


def traffic(frame: pl.DataFrame, start: dt.datetime, end: dt.datetime) -> Traffic:
    """Per-minute figures of the logged rows ``frame`` between ``start`` and ``end``."""
    import polars as pl

    buckets = max(1, int((end - start).total_seconds() // BUCKET_SECONDS))
    if frame.height == 0:
        return Traffic(start, end, buckets)
    columns = frame.columns
    route = pl.col("route") if "route" in columns else pl.lit("primary")
    latency = (
        pl.col("latency_ms").cast(pl.Float64)
        if "latency_ms" in columns
        else pl.lit(None, dtype=pl.Float64)
    )
    rows = frame.select(
        pl.col("request_id"),
        pl.col("version"),
        route.fill_null("primary").alias("route"),
        pl.col("ts"),
        latency.alias("latency_ms"),
        (pl.col("row") if "row" in columns else pl.lit(None, dtype=pl.Int32)).alias("row"),
    )
    if "row" in columns and rows["row"].null_count() == 0:
        firsts = rows.filter(pl.col("row") == 0)  # row 0: one per request and version
    else:
        firsts = rows.group_by("request_id", "version", "route").agg(
            pl.col("ts").min(), pl.col("latency_ms").first()
        )
    per_request = (
        firsts.select("version", "route", "ts", "latency_ms")
        .with_columns(
            ((pl.col("ts") - pl.lit(start)).dt.total_seconds() // BUCKET_SECONDS)
            .cast(pl.Int64)
            .alias("bucket")
        )
        .filter(pl.col("bucket").is_between(0, buckets - 1))
    )
    grouped = (
        per_request.group_by("version", "route", "bucket")
        .agg(
            pl.len().alias("requests"),
            pl.col("latency_ms").quantile(0.5, interpolation="linear").alias("p50"),
            pl.col("latency_ms").quantile(0.95, interpolation="linear").alias("p95"),
        )
        .sort("version", "route", "bucket")
    )
    out = Traffic(start, end, buckets)
    for (version, route_name), rows in grouped.group_by("version", "route", maintain_order=True):
        label = f"v{version}" + (" shadow" if route_name == "shadow" else "")
        requests: list[float | None] = [0.0] * buckets
        p50: list[float | None] = [None] * buckets
        p95: list[float | None] = [None] * buckets
        for bucket, count, low, high in rows.select("bucket", "requests", "p50", "p95").iter_rows():
            requests[bucket] = float(count)
            p50[bucket], p95[bucket] = low, high
        out.requests[label] = requests
        out.totals[label] = int(rows["requests"].sum())
        if any(v is not None for v in p50):
            out.p50[label], out.p95[label] = p50, p95
    return out
