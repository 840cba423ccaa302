"""Feedback: the ground truth for logged predictions, joined to them by request id.

An item is for one predicted row: ``request_id`` and ``row``, the row's position in a
request that predicted several (0, the default, for a one-row request). Feedback is
append-only. When a row gets feedback more than once, every item is kept (who sent what,
when) and the one received last wins in `FeedbackService.join`: a label corrected later
replaces the first guess without losing it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import orjson

from modelcycle.core.errors import UsageError
from modelcycle.store.deployments import DeploymentStore

if TYPE_CHECKING:
    import polars as pl

ReadPredictions = Callable[[str, dt.datetime | None, dt.datetime | None], "pl.DataFrame"]

_MAX_ID = 200  # the feedback table's request_id column


class FeedbackService:
    def __init__(self, store: DeploymentStore, predictions: ReadPredictions) -> None:
        self.store = store
        self._predictions = predictions

    def add(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Store feedback items ``{"request_id", "row"?, "label" or "value", "ts"?}`` in one
        transaction: all of them, or none when one is malformed. ``ts`` (when the outcome
        happened) is a datetime, an ISO 8601 string or seconds since the epoch; naive
        times are UTC. Returns the number stored."""
        rows = [_item(i, item) for i, item in enumerate(items)]
        if rows:
            self.store.add_feedback(rows)
        return len(rows)

    def join(
        self,
        target: str,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        *,
        how: Literal["inner", "left"] = "inner",
    ) -> pl.DataFrame:
        """Predictions of ``target`` (a deployment, model or model ref, as
        `DeploymentService.predictions`) logged in [since, until] with the columns
        ``label`` (the feedback received last), ``label_ts`` and ``label_received_at``.
        ``how="left"`` keeps predictions without feedback too (label null)."""
        import polars as pl

        from modelcycle.deploy.segments import arrow_column

        if how not in ("inner", "left"):
            raise UsageError(f"how={how!r} is not 'inner' or 'left'", hint="")
        preds = self._predictions(target, since, until)
        found = self.store.feedback_for(preds["request_id"].drop_nulls().unique().to_list())
        rows = list(found.values())
        labels = pl.DataFrame(
            {
                "request_id": pl.Series([r.request_id for r in rows], dtype=pl.String),
                "row": pl.Series([r.row for r in rows], dtype=pl.Int32),
                "label": pl.from_arrow(arrow_column([r.value for r in rows])),
                "label_ts": pl.Series([r.ts for r in rows], dtype=pl.Datetime("us", "UTC")),
                "label_received_at": pl.Series(
                    [r.received_at for r in rows], dtype=pl.Datetime("us", "UTC")
                ),
            }
        )
        return preds.join(labels, on=["request_id", "row"], how=how)


def _item(index: int, item: Mapping[str, Any]) -> tuple[str, int, Any, dt.datetime | None]:
    where = f"feedback item {index}"
    if not isinstance(item, Mapping):
        raise UsageError(f"{where} is {type(item).__name__}, not a mapping", hint=_SHAPE)
    rid = item.get("request_id")
    if not isinstance(rid, str) or not rid or len(rid) > _MAX_ID:
        raise UsageError(
            f"{where} has request_id {rid!r}; it must be a non-empty string of at most "
            f"{_MAX_ID} characters",
            hint=_SHAPE,
        )
    keys = [k for k in ("label", "value") if k in item]
    if len(keys) != 1:
        raise UsageError(
            f"{where} ({rid}) has {' and '.join(keys) or 'neither label nor value'}",
            hint="give exactly one of label (classes) or value (numbers)",
        )
    row = item.get("row", 0)
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise UsageError(
            f"{where} ({rid}) has row {row!r}; it must be a whole number >= 0",
            hint="the row's position in the request (0 for a one-row request)",
        )
    unknown = sorted(set(item) - {"request_id", "row", "label", "value", "ts"})
    if unknown:
        raise UsageError(f"{where} ({rid}) has unknown keys {unknown}", hint=_SHAPE)
    try:
        # Plain JSON values only (numpy scalars become numbers), as the store keeps JSON.
        value = orjson.loads(orjson.dumps(item[keys[0]], option=orjson.OPT_SERIALIZE_NUMPY))
    except TypeError as e:
        raise UsageError(f"{where} ({rid}): the {keys[0]} is not JSON: {e}", hint="") from e
    return rid, row, value, _when(item.get("ts"), where)


def _when(ts: Any, where: str) -> dt.datetime | None:
    if ts is None:
        return None
    try:
        if isinstance(ts, dt.datetime):
            when = ts
        elif isinstance(ts, str):
            when = dt.datetime.fromisoformat(ts)
        elif isinstance(ts, int | float) and not isinstance(ts, bool):
            return dt.datetime.fromtimestamp(ts, dt.UTC)
        else:
            raise ValueError(ts)
    except (ValueError, OverflowError, OSError) as e:
        raise UsageError(
            f"{where} has ts {ts!r}, not a time",
            hint="use an ISO 8601 time (2026-01-31T12:00:00Z) or seconds since the epoch",
        ) from e
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


_SHAPE = (
    'each item is {"request_id": ID, "label": VALUE} (or "value"), with optional "row" '
    '(the row in a request of several) and "ts"'
)
