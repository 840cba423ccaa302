"""Prediction log segments: records turned into Parquet blobs, and read back.

A record is one request's answer by one model version, a dict with these keys (only
``model`` and ``version`` are required)::

    request_id    str     also the response's x-request-id (a uuid is made when missing)
    ts / time     float (seconds since the epoch) or datetime; when it was logged if absent
    endpoint      str     the served name
    model, version        the version that answered (the deployment is the logger's)
    route         "primary" (default) or "shadow"
    inputs        {column: value} for one row, {column: [values]} or {"tensor": rows}
                  for several, or any JSON value
    outputs       {"prediction": [values], "probabilities": [[p, ...]]} for a request of
                  one or more rows; or, for one row, ``prediction`` and ``probability``
    latency_ms    float

A request that predicted several rows becomes several rows of the log, numbered by
``row`` (0 for a one-row request), each with its own inputs, prediction and probability;
feedback names a row by (request_id, row). Keys other than these go to ``extra``.

A segment holds the rows of one model version with the columns `COLUMNS`, then one
column per input feature named ``inputs.<feature>`` when every row's inputs is a mapping
(monitoring reads features column by column), else one ``inputs`` column of JSON text,
and ``extra`` (JSON text) when rows carry other keys. A column whose values Arrow cannot
type as scalars or lists (mixed types, nested objects) is stored as JSON text.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from modelcycle.core.errors import UsageError
from modelcycle.core.hashing import hash_bytes
from modelcycle.store.deployments import DeploymentStore, NewSegment, SegmentRow

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from modelcycle.blobs import BlobStore

INPUT_PREFIX = "inputs."
COLUMNS = (
    "request_id",
    "row",
    "ts",
    "deployment",
    "endpoint",
    "model",
    "version",
    "route",
    "prediction",
    "probability",
    "latency_ms",
)
# Record keys that have a column (or fill one); any other key goes to ``extra``.
KNOWN_KEYS = frozenset({*COLUMNS, "time", "inputs", "outputs"})
_PREDICTION_KEYS = ("prediction", "probabilities", "probability")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIN_MICROS = (dt.datetime(1, 1, 1, tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_MICROS = (dt.datetime(9999, 12, 31, tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


# -- writing ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Written:
    segments: int
    rows: int
    invalid: list[str]  # why each record left out could not be made rows


def write_segments(
    blobs: BlobStore,
    store: DeploymentStore,
    deployment: str | None,
    records: Sequence[Mapping[str, Any]],
) -> Written:
    """Write ``records`` as one segment per model version: blobs first, then one
    transaction. A record that cannot be made rows is left out (and said why), so one
    bad record never holds back the others."""
    import pyarrow.parquet as pq

    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    invalid: list[str] = []
    for rec in records:
        try:
            rows = rows_of(rec)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            invalid.append(f"record {rec.get('request_id')!r}: {type(e).__name__}: {e}")
            continue
        groups.setdefault((rec["model"], rec["version"]), []).extend(rows)
    prepared: list[tuple[NewSegment, bytes]] = []
    for (model, version), rows in groups.items():
        if not rows:
            continue
        sink = io.BytesIO()
        pq.write_table(table_of(deployment, model, version, rows), sink, compression="zstd")
        data = sink.getvalue()
        micros = [r["ts"] for r in rows]
        segment = NewSegment(
            deployment=deployment,
            model=model,
            version=version,
            min_ts=_EPOCH + dt.timedelta(microseconds=min(micros)),
            max_ts=_EPOCH + dt.timedelta(microseconds=max(micros)),
            num_rows=len(rows),
            size_bytes=len(data),
            oid=hash_bytes(data),
        )
        prepared.append((segment, data))
    with blobs.batch() as batch:
        for segment, data in prepared:
            batch.put_bytes(data, segment.oid)
    store.add_segments([segment for segment, _ in prepared])
    return Written(len(prepared), sum(s.num_rows for s, _ in prepared), invalid)


def rows_of(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The log rows of one record: one per predicted row."""
    ts = rec["ts"] if rec.get("ts") is not None else rec["time"]
    base = {
        "request_id": str(rec["request_id"]),
        "ts": _micros(ts),
        "endpoint": rec.get("endpoint"),
        "route": rec.get("route", "primary"),
        "latency_ms": _float(rec.get("latency_ms")),
    }
    extra = {k: v for k, v in rec.items() if k not in KNOWN_KEYS}
    inputs, outputs = rec.get("inputs"), rec.get("outputs")
    if not (isinstance(outputs, Mapping) and _is_rows(outputs.get("prediction"))):
        return [
            {
                **base,
                "row": int(rec.get("row") or 0),
                "inputs": inputs,
                "prediction": rec.get("prediction", outputs),
                "probability": rec.get("probability"),
                "extra": extra or None,
            }
        ]
    predictions: Sequence[Any] = outputs["prediction"]
    n = len(predictions)
    probabilities = outputs.get("probabilities", outputs.get("probability"))
    if not (_is_rows(probabilities) and len(probabilities) == n):
        probabilities = [probabilities] * n
    more = {k: v for k, v in outputs.items() if k not in _PREDICTION_KEYS}
    if more:
        extra["outputs"] = more
    split = _split_inputs(inputs, n)
    return [
        {
            **base,
            "row": i,
            "inputs": split[i] if split is not None else inputs,
            "prediction": predictions[i],
            "probability": probabilities[i],
            "extra": extra or None,
        }
        for i in range(n)
    ]


def _is_rows(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return True
    return getattr(value, "ndim", 0) >= 1  # a numpy array


def _split_inputs(inputs: Any, n: int) -> list[Any] | None:
    """Per-row inputs from {column: [values]}, {"tensor": rows} or [row, ...]; None when
    ``inputs`` does not hold ``n`` rows."""
    if isinstance(inputs, Mapping):
        columns = {str(k): v for k, v in inputs.items()}
        if columns and all(_is_rows(v) and len(v) == n for v in columns.values()):
            return [{k: v[i] for k, v in columns.items()} for i in range(n)]
        return None
    if _is_rows(inputs) and len(inputs) == n:
        return list(inputs)
    return None


def _micros(ts: float | dt.datetime) -> int:
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        return (ts - _EPOCH) // dt.timedelta(microseconds=1)
    micros = round(ts * 1_000_000)
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        raise ValueError(f"ts {ts} is not a time between the years 1 and 9999")
    return micros


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def table_of(
    deployment: str | None, model: str, version: int, rows: Sequence[Mapping[str, Any]]
) -> pa.Table:
    """The Arrow table of one segment (see the module docstring for its columns)."""
    import pyarrow as pa

    n = len(rows)
    columns: dict[str, pa.Array] = {
        "request_id": pa.array([r["request_id"] for r in rows], pa.string()),
        "row": pa.array([r["row"] for r in rows], pa.int32()),
        "ts": pa.array([r["ts"] for r in rows], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "deployment": pa.array([deployment] * n, pa.string()),
        "endpoint": pa.array([r["endpoint"] for r in rows], pa.string()),
        "model": pa.array([model] * n, pa.string()),
        "version": pa.array([version] * n, pa.int64()),
        "route": pa.array([r["route"] for r in rows], pa.string()),
        "prediction": arrow_column([r["prediction"] for r in rows]),
        "probability": arrow_column([r["probability"] for r in rows]),
        "latency_ms": pa.array([r["latency_ms"] for r in rows], pa.float64()),
    }
    inputs = [r["inputs"] for r in rows]
    features = [i for i in inputs if isinstance(i, Mapping)]
    if len(features) == n:
        for name in dict.fromkeys(str(k) for f in features for k in f):
            columns[f"{INPUT_PREFIX}{name}"] = arrow_column([f.get(name) for f in features])
    elif any(i is not None for i in inputs):
        columns["inputs"] = _json_column(inputs)
    if any(r["extra"] for r in rows):
        columns["extra"] = _json_column([r["extra"] for r in rows])
    return pa.table(columns)


def arrow_column(values: Sequence[Any]) -> pa.Array:
    """Values as an Arrow array of scalars or lists when Arrow can type them alike, else
    as JSON text (mixed types, nested objects)."""
    import pyarrow as pa

    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return _json_column(values)
    if _nested_object(array.type):
        return _json_column(values)
    return array


def _nested_object(t: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(t) or pa.types.is_map(t) or pa.types.is_union(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _nested_object(t.value_type)
    return False


def _json_column(values: Sequence[Any]) -> pa.Array:
    import pyarrow as pa

    return pa.array([None if v is None else _json(v) for v in values], pa.string())


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, option=_JSON_OPTIONS, default=str).decode()
    except TypeError:  # what orjson refuses, such as integers beyond 64 bits
        return json.dumps(value, default=str, separators=(",", ":"))


# -- reading ---------------------------------------------------------------------------
def read_predictions(
    blobs: BlobStore,
    store: DeploymentStore,
    *,
    deployment: str | None = None,
    model: str | None = None,
    version: int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Logged rows with ``since <= ts <= until`` (naive times are UTC), oldest first;
    with ``limit``, only the newest ``limit`` rows; with ``columns``, only those of them
    a segment has (and ``ts``): reading a few columns of a wide log is much faster."""
    import polars as pl

    since, until = utc(since), utc(until)
    wanted = None if columns is None else {"ts", *columns}
    if limit is not None and limit < 0:
        raise UsageError(f"limit is {limit}; it must be 0 or more", hint="")
    if limit == 0:
        return _only(empty_frame(), wanted)
    segments = store.segments(
        deployment=deployment, model=model, version=version, since=since, until=until
    )
    if limit is not None:
        segments = newest(segments, limit)
    frames = _load(blobs, segments, wanted)
    if not frames:
        return _only(empty_frame(), wanted)
    df = pl.concat(frames, how="diagonal_relaxed")
    if since is not None:
        df = df.filter(pl.col("ts") >= since)
    if until is not None:
        df = df.filter(pl.col("ts") <= until)
    df = df.sort("ts", maintain_order=True)
    if limit is not None:
        df = df.tail(limit)
    first = [c for c in COLUMNS if c in df.columns]
    return df.select(first + [c for c in df.columns if c not in first])


def newest(segments: list[SegmentRow], limit: int) -> list[SegmentRow]:
    """The segments that can hold the newest ``limit`` rows, read newest first until
    no older segment can hold one of them."""
    chosen: list[SegmentRow] = []
    for seg in sorted(segments, key=lambda s: s.max_ts, reverse=True):
        floor = _floor(chosen, limit)
        if floor is not None and seg.max_ts < floor:
            break
        chosen.append(seg)
    return sorted(chosen, key=lambda s: (s.min_ts, s.id))


def _floor(chosen: Sequence[SegmentRow], limit: int) -> dt.datetime | None:
    """A time the ``limit``-th newest row of ``chosen`` is at or after: the chosen
    segments with the latest starts hold that many rows, all at or after their starts."""
    rows = 0
    for seg in sorted(chosen, key=lambda s: s.min_ts, reverse=True):
        rows += seg.num_rows
        if rows >= limit:
            return seg.min_ts
    return None


def _load(
    blobs: BlobStore, segments: Sequence[SegmentRow], wanted: set[str] | None = None
) -> list[pl.DataFrame]:
    import polars as pl

    def read(seg: SegmentRow) -> pl.DataFrame:
        data = io.BytesIO(blobs.read_bytes(seg.oid))
        if wanted is None:
            return pl.read_parquet(data)
        present = [c for c in pl.read_parquet_schema(data) if c in wanted]
        data.seek(0)
        return pl.read_parquet(data, columns=present)

    if len(segments) <= 1:
        return [read(s) for s in segments]
    with ThreadPoolExecutor(max_workers=8) as pool:  # blob reads wait on S3, not the CPU
        return list(pool.map(read, segments))


def _only(frame: pl.DataFrame, wanted: set[str] | None) -> pl.DataFrame:
    return frame if wanted is None else frame.select([c for c in frame.columns if c in wanted])


def empty_frame() -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(
        schema={
            "request_id": pl.String,
            "row": pl.Int32,
            "ts": pl.Datetime("us", "UTC"),
            "deployment": pl.String,
            "endpoint": pl.String,
            "model": pl.String,
            "version": pl.Int64,
            "route": pl.String,
            "prediction": pl.Null,
            "probability": pl.Null,
            "latency_ms": pl.Float64,
        }
    )


def utc(when: dt.datetime | None) -> dt.datetime | None:
    """``when`` in UTC; a naive time is taken as UTC."""
    if when is None:
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
