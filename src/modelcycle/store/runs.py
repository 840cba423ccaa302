"""Records of experiments and runs: params, tags, metric points, inputs and artifacts.

Metric points arrive in batches from a run's background writer. A batch (points,
params, tags, and the run's end when it is the last) is one transaction. Points go in
as multi-row INSERT statements (``ROWS_PER_INSERT`` rows each) through the driver:
``executemany`` would run the statement once per row, and the SQLite driver releases
and takes back the GIL around every one of those runs, which a training loop on the
other thread pays for. Listing and searching read rows through the driver as well:
SQLAlchemy's per-row result processing would dominate a search over 1,000 runs.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, utcnow

Point = tuple[str, float, int, int]  # key, value, step, timestamp (ms)

_POINTS_INSERT = "INSERT INTO run_metrics (run_id, key, step, timestamp, value, is_nan) VALUES "
_LATEST_UPSERT = (
    "INSERT INTO run_latest_metrics (run_id, key, step, timestamp, value, is_nan) VALUES ",
    " ON CONFLICT (run_id, key) DO UPDATE SET "
    "step = excluded.step, timestamp = excluded.timestamp, value = excluded.value, "
    "is_nan = excluded.is_nan WHERE excluded.step > run_latest_metrics.step OR "
    "(excluded.step = run_latest_metrics.step "
    "AND excluded.timestamp >= run_latest_metrics.timestamp)",
)
# Rows per INSERT statement at most (fewer when the database takes fewer parameters).
# A batch is written as full statements of this size and the rest in powers of two, so
# every statement has one of a few shapes and is parsed once per connection: parsing a
# statement of a new size costs more than running it.
ROWS_PER_INSERT = 512
_PARAM_INSERT = (
    "INSERT INTO run_params (run_id, key, value) VALUES ({p}, {p}, {p}) "
    "ON CONFLICT (run_id, key) DO NOTHING"
)
_TAG_UPSERT = (
    "INSERT INTO run_tags (run_id, key, value) VALUES ({p}, {p}, {p}) "
    "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"
)


@dataclass(frozen=True)
class RunRow:
    id: str
    experiment_id: int
    experiment: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    parent_id: str | None
    user: str
    error: str | None
    environment: dict[str, Any] | None
    deleted_at: dt.datetime | None


@dataclass(frozen=True)
class Clause:
    """One comparison of a run filter (parsed by ``modelcycle.tracking.search``)."""

    kind: str  # metrics / params / tags / attributes
    key: str
    op: str  # = != < <= > >= LIKE ILIKE
    value: Any


@dataclass(frozen=True)
class Order:
    kind: str
    key: str
    descending: bool


@dataclass(frozen=True)
class RunTable:
    """Search results as rows for a table (see ``RunStore.search_table``)."""

    runs: list[tuple[Any, ...]]  # (id, experiment, name, status, start_time, end_time)
    metrics: list[tuple[Any, ...]]  # (run id, key, value or None, is_nan)
    params: list[tuple[Any, ...]]  # (run id, key, value)
    tags: list[tuple[Any, ...]]  # (run id, key, value)


@dataclass
class RunEnd:
    status: str
    end_time: int
    error: str | None = None


def _stored(value: float) -> tuple[float | None, bool]:
    """SQLite has no NaN (it stores NULL): keep NaN as a flag, infinities as they are."""
    return (None, True) if math.isnan(value) else (value, False)


class RunStore:
    """Tracking records in the workspace's metadata store."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        p = self._p = "?" if store.engine.dialect.paramstyle == "qmark" else "%s"
        self._max_params: int | None = None  # known on the first write
        self._sql = {
            "param": _PARAM_INSERT.format(p=p),
            "tag": _TAG_UPSERT.format(p=p),
        }

    # -- experiments -------------------------------------------------------------------
    def experiment_id(self, name: str, *, create: bool) -> int | None:
        c = t.experiments.c
        with self.store.reading() as conn:
            found = conn.execute(select(c.id).where(c.name == name)).scalar()
        if found is not None or not create:
            return found
        try:
            with self.store.writing() as conn:
                new = conn.execute(
                    insert(t.experiments).values(name=name, created_at=utcnow())
                ).inserted_primary_key[0]  # type: ignore[index]
                self.store.add_event(conn, "experiment.created", name, {})
                return int(new)
        except SAIntegrityError:  # created by another process in between
            return self.experiment_id(name, create=False)

    def experiments(self) -> list[dict[str, Any]]:
        e, r = t.experiments.c, t.runs.c
        stmt = (
            select(e.id, e.name, e.created_at, func.count(r.id))
            .select_from(
                t.experiments.outerjoin(t.runs, (r.experiment_id == e.id) & r.deleted_at.is_(None))
            )
            .group_by(e.id, e.name, e.created_at)
            .order_by(e.name)
        )
        with self.store.reading() as conn:
            rows = conn.execute(stmt).all()
        return [{"id": i, "name": n, "created_at": at, "runs": int(k)} for i, n, at, k in rows]

    # -- runs --------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        experiment_id: int,
        name: str,
        start_time: int,
        parent_id: str | None,
        environment: dict[str, Any],
        tags: dict[str, str],
    ) -> None:
        with self.store.writing() as conn:
            conn.execute(
                insert(t.runs).values(
                    id=run_id,
                    experiment_id=experiment_id,
                    name=name,
                    status="running",
                    start_time=start_time,
                    parent_id=parent_id,
                    user=self.store.actor,
                    environment=environment,
                )
            )
            if tags:
                self._executemany(conn, "tag", [(run_id, k, v) for k, v in tags.items()])

    def write_batch(
        self,
        run_id: str,
        points: Sequence[Point],
        params: Sequence[tuple[str, str]] = (),
        tags: Sequence[tuple[str, str]] = (),
        end: RunEnd | None = None,
    ) -> None:
        """Points, params and tags (and the run's end) in one transaction."""
        if not (points or params or tags or end):
            return
        with self.store.writing() as conn:
            if params:
                self._executemany(conn, "param", [(run_id, k, v) for k, v in params])
            if tags:
                self._executemany(conn, "tag", [(run_id, k, v) for k, v in tags])
            if points:
                values, latest = _point_values(run_id, points)
                last: list[Any] = []
                for key, value, step, ts in latest.values():
                    last.extend((run_id, key, step, ts, *_stored(value)))
                # The driver's cursor, in the transaction begun above: these statements
                # are the whole batch, and SQLAlchemy's work per statement would be
                # GIL time taken from the training loop.
                cursor = conn.connection.cursor()
                try:
                    self._insert_rows(conn, cursor, (_POINTS_INSERT, ""), values)
                    self._insert_rows(conn, cursor, _LATEST_UPSERT, last)
                finally:
                    cursor.close()
            if end is not None:
                conn.execute(
                    update(t.runs)
                    .where(t.runs.c.id == run_id)
                    .values(status=end.status, end_time=end.end_time, error=end.error)
                )

    def _executemany(self, conn: Connection, which: str, rows: list[tuple[Any, ...]]) -> None:
        conn.exec_driver_sql(self._sql[which], rows)

    def _insert_rows(
        self, conn: Connection, cursor: Any, sql: tuple[str, str], values: list[Any]
    ) -> None:
        """Insert rows of 6 values, given as one flat list, with multi-row statements
        (``sql`` is the statement before and after its VALUES rows)."""
        if self._max_params is None:
            self._max_params = _max_params(conn)
        most = max(1, min(ROWS_PER_INSERT, self._max_params // 6))
        rows, done = len(values) // 6, 0
        while done < rows:
            left = rows - done
            size = most if left >= most else 1 << (left.bit_length() - 1)
            cursor.execute(_rows_sql(sql, self._p, size), values[done * 6 : (done + size) * 6])
            done += size

    def _run_select(self) -> Any:
        return select(t.runs, t.experiments.c.name.label("experiment")).join(
            t.experiments, t.experiments.c.id == t.runs.c.experiment_id
        )

    def get_run(self, run_id: str) -> RunRow | None:
        with self.store.reading() as conn:
            row = conn.execute(self._run_select().where(t.runs.c.id == run_id)).mappings().first()
        return _run_row(row) if row else None

    def runs_by_prefix(self, prefix: str) -> list[RunRow]:
        stmt = self._run_select().where(t.runs.c.id.startswith(prefix, autoescape=True)).limit(3)
        with self.store.reading() as conn:
            return [_run_row(r) for r in conn.execute(stmt).mappings().all()]

    def children(self, run_id: str) -> list[RunRow]:
        stmt = (
            self._run_select()
            .where(t.runs.c.parent_id == run_id, t.runs.c.deleted_at.is_(None))
            .order_by(t.runs.c.start_time)
        )
        with self.store.reading() as conn:
            return [_run_row(r) for r in conn.execute(stmt).mappings().all()]

    def search(
        self,
        experiment_ids: Sequence[int] | None,
        clauses: Sequence[Clause],
        orders: Sequence[Order],
        limit: int,
        *,
        parent_id: str | None = None,
        offset: int = 0,
    ) -> list[RunRow]:
        """Live runs matching every clause, ordered, at most ``limit`` of them after the
        first ``offset`` (pages of a table: the database skips the rows)."""
        columns: list[Any] = [c for c in t.runs.c if c.name != "environment"]
        columns.append(t.experiments.c.name.label("experiment"))
        stmt = _search(columns, experiment_ids, clauses, orders, limit, parent_id)
        if offset:
            stmt = stmt.offset(offset)
        with self.store.reading() as conn:
            rows = conn.execute(stmt).all()
        return [_run_row({**row._mapping, "environment": None}) for row in rows]

    def search_table(
        self,
        experiment_ids: Sequence[int] | None,
        clauses: Sequence[Clause],
        orders: Sequence[Order],
        limit: int,
        *,
        parent_id: str | None = None,
    ) -> RunTable:
        """:meth:`search` as plain rows for a table: the runs' attributes and the long
        rows of their last metric values, params and tags, read in one transaction."""
        r = t.runs.c
        columns = [r.id, t.experiments.c.name, r.name, r.status, r.start_time, r.end_time]
        stmt = _search(columns, experiment_ids, clauses, orders, limit, parent_id)
        with self.store.reading() as conn:
            runs = [tuple(row) for row in conn.execute(stmt)]
            ids = [row[0] for row in runs]
            return RunTable(
                runs,
                self._bulk_in(
                    conn,
                    "SELECT run_id, key, value, is_nan FROM run_latest_metrics "
                    "WHERE run_id IN ({ids})",
                    ids,
                ),
                self._bulk_in(
                    conn, "SELECT run_id, key, value FROM run_params WHERE run_id IN ({ids})", ids
                ),
                self._bulk_in(
                    conn, "SELECT run_id, key, value FROM run_tags WHERE run_id IN ({ids})", ids
                ),
            )

    def _bulk(self, sql: str, run_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (with ``{ids}`` for the placeholders) over ``run_ids``."""
        with self.store.reading() as conn:
            return self._bulk_in(conn, sql, run_ids)

    def _bulk_in(self, conn: Connection, sql: str, run_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        # Through the driver's own cursor: listing 1,000 runs reads ~10,000 rows, and
        # SQLAlchemy's per-row result processing would take longer than the query. The
        # cursor shares the connection, so the rows come from the caller's transaction.
        p = self._p
        out: list[tuple[Any, ...]] = []
        cursor = conn.connection.cursor()
        try:
            for chunk in _chunks(run_ids):
                cursor.execute(sql.format(ids=", ".join([p] * len(chunk))), tuple(chunk))
                out.extend(cursor.fetchall())
        finally:
            cursor.close()
        return out

    def key_values(self, table: str, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """run id -> {key: value} of ``run_params`` or ``run_tags``."""
        name = "run_params" if table == "params" else "run_tags"
        out: dict[str, dict[str, str]] = {r: {} for r in run_ids}
        for rid, k, v in self._bulk(
            f"SELECT run_id, key, value FROM {name} WHERE run_id IN ({{ids}})", run_ids
        ):
            out[rid][k] = v
        return out

    def latest_metrics(self, run_ids: Sequence[str]) -> dict[str, dict[str, tuple[float, int]]]:
        """run id -> {key: (value, step)} of each series' last point."""
        out: dict[str, dict[str, tuple[float, int]]] = {r: {} for r in run_ids}
        for rid, k, v, nan, step in self._bulk(
            "SELECT run_id, key, value, is_nan, step FROM run_latest_metrics "
            "WHERE run_id IN ({ids})",
            run_ids,
        ):
            out[rid][k] = (math.nan if nan else v, step)
        return out

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, int, float]]:
        """(step, timestamp, value) of every point of one series, in step order.

        NaN comes back as NaN (it is stored as NULL with ``is_nan`` set)."""
        p = self._p
        with self.store.reading() as conn:
            rows = conn.exec_driver_sql(
                "SELECT step, timestamp, value FROM run_metrics "
                f"WHERE run_id = {p} AND key = {p} ORDER BY step, timestamp",
                (run_id, key),
            ).fetchall()
        # value is NULL only for NaN points
        return [(s, ts, math.nan if v is None else v) for s, ts, v in rows]

    def metric_buckets(
        self, run_id: str, key: str, max_points: int
    ) -> list[tuple[int, int, float | None, float | None, float | None]]:
        """At most ``max_points`` buckets of equal step width: (first step, last
        timestamp, mean, min, max) each, computed in the database (NaN points skipped)."""
        p = self._p
        with self.store.reading() as conn:
            lo, hi = conn.exec_driver_sql(
                f"SELECT MIN(step), MAX(step) FROM run_metrics WHERE run_id = {p} AND key = {p}",
                (run_id, key),
            ).one()
            if lo is None:
                return []
            width = max(1, -(-(hi - lo + 1) // max_points))  # ceiling division
            rows = conn.exec_driver_sql(
                "SELECT MIN(step), MAX(timestamp), AVG(value), MIN(value), MAX(value) "
                f"FROM run_metrics WHERE run_id = {p} AND key = {p} "
                f"GROUP BY (step - {p}) / {p} ORDER BY 1",
                (run_id, key, lo, width),
            ).fetchall()
        return [tuple(r) for r in rows]

    def metric_keys(self, run_id: str) -> list[str]:
        c = t.run_latest_metrics.c
        with self.store.reading() as conn:
            rows = conn.execute(select(c.key).where(c.run_id == run_id).order_by(c.key))
            return [k for (k,) in rows]

    def set_state(self, run_id: str, **values: Any) -> None:
        with self.store.writing() as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(**values))
            self.store.add_event(
                conn, "run.updated", run_id, {k: str(v) for k, v in values.items()}
            )

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        now = utcnow()
        with self.store.writing() as conn:
            for rid in run_ids:
                conn.execute(update(t.runs).where(t.runs.c.id == rid).values(deleted_at=now))
                self.store.add_event(conn, "run.deleted", rid, {})

    # -- inputs and artifacts ------------------------------------------------------
    def add_inputs(self, run_id: str, inputs: Iterable[tuple[int, str]]) -> None:
        rows = [{"run_id": run_id, "dataset_version_id": v, "role": r} for v, r in inputs]
        with self.store.writing() as conn:
            have = {
                v
                for (v,) in conn.execute(
                    select(t.run_inputs.c.dataset_version_id).where(t.run_inputs.c.run_id == run_id)
                )
            }
            fresh = [r for r in rows if r["dataset_version_id"] not in have]
            if fresh:
                conn.execute(insert(t.run_inputs), fresh)

    def inputs(self, run_id: str) -> list[tuple[int, str]]:
        c = t.run_inputs.c
        with self.store.reading() as conn:
            rows = conn.execute(
                select(c.dataset_version_id, c.role).where(c.run_id == run_id)
            ).all()
        return [(v, r) for v, r in rows]

    def runs_reading(self, version_id: int) -> list[str]:
        """Ids of live runs that read a dataset version."""
        c = t.run_inputs.c
        with self.store.reading() as conn:
            rows = conn.execute(
                select(c.run_id)
                .join(t.runs, t.runs.c.id == c.run_id)
                .where(c.dataset_version_id == version_id, t.runs.c.deleted_at.is_(None))
            )
            return [r for (r,) in rows]

    def add_artifacts(self, run_id: str, files: Sequence[tuple[str, str, int]]) -> None:
        """Record (path, blob oid, size) under a run; a path logged again is replaced."""
        now = utcnow()
        c = t.run_artifacts.c
        with self.store.writing() as conn:
            paths = [p for p, _, _ in files]
            for chunk in _chunks(paths):
                conn.execute(delete(t.run_artifacts).where(c.run_id == run_id, c.path.in_(chunk)))
            conn.execute(
                insert(t.run_artifacts),
                [
                    {"run_id": run_id, "path": p, "oid": o, "size": s, "created_at": now}
                    for p, o, s in files
                ],
            )

    def artifacts(self, run_id: str) -> list[tuple[str, str, int]]:
        c = t.run_artifacts.c
        with self.store.reading() as conn:
            rows = conn.execute(
                select(c.path, c.oid, c.size).where(c.run_id == run_id).order_by(c.path)
            ).all()
        return [(p, o, s) for p, o, s in rows]


def _search(
    columns: Sequence[Any],
    experiment_ids: Sequence[int] | None,
    clauses: Sequence[Clause],
    orders: Sequence[Order],
    limit: int,
    parent_id: str | None,
) -> Any:
    r = t.runs.c
    stmt = (
        select(*columns)
        .join(t.experiments, t.experiments.c.id == r.experiment_id)
        .where(r.deleted_at.is_(None))
    )
    if experiment_ids is not None:
        stmt = stmt.where(r.experiment_id.in_(experiment_ids))
    if parent_id is not None:
        stmt = stmt.where(r.parent_id == parent_id)
    for clause in clauses:
        stmt = stmt.where(_condition(clause))
    order_by = [_order(o) for o in orders]
    return stmt.order_by(*order_by, r.start_time.desc(), r.id).limit(limit)


def _compare(column: Any, op: str, value: Any) -> Any:
    if op == "LIKE":
        return column.like(value)
    if op == "ILIKE":
        return column.ilike(value)
    return {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[op](value)


def _attribute(key: str) -> Any:
    r = t.runs.c
    if key == "run_id":
        return r.id
    if key == "duration":
        return r.end_time - r.start_time
    return getattr(r, key)


def _condition(clause: Clause) -> Any:
    if clause.kind == "attributes":
        value = clause.value
        if clause.key == "status" and isinstance(value, str):
            value = value.lower()
        return _compare(_attribute(clause.key), clause.op, value)
    if clause.kind == "metrics":
        m = t.run_latest_metrics.c
        inner = select(m.run_id).where(
            m.run_id == t.runs.c.id,
            m.key == clause.key,
            _compare(m.value, clause.op, clause.value),
        )
        return inner.exists()
    tbl = t.run_params if clause.kind == "params" else t.run_tags
    inner = select(tbl.c.run_id).where(
        tbl.c.run_id == t.runs.c.id,
        tbl.c.key == clause.key,
        _compare(tbl.c.value, clause.op, clause.value),
    )
    return inner.exists()


def _order(order: Order) -> Any:
    if order.kind == "attributes":
        column = _attribute(order.key)
    else:
        tbl = {
            "metrics": t.run_latest_metrics,
            "params": t.run_params,
            "tags": t.run_tags,
        }[order.kind]
        column = (
            select(tbl.c.value)
            .where(tbl.c.run_id == t.runs.c.id, tbl.c.key == order.key)
            .scalar_subquery()
        )
    return column.desc().nulls_last() if order.descending else column.asc().nulls_last()


def _run_row(row: Any) -> RunRow:
    data = dict(row)
    deleted = data["deleted_at"]
    if deleted is not None and deleted.tzinfo is None:
        data["deleted_at"] = deleted.replace(tzinfo=dt.UTC)
    return RunRow(**data)  # environment is None in search results (loaded by get_run)


@functools.lru_cache(maxsize=64)
def _rows_sql(sql: tuple[str, str], p: str, rows: int) -> str:
    row = f"({p}, {p}, {p}, {p}, {p}, {p})"
    return sql[0] + ", ".join([row] * rows) + sql[1]


def _max_params(conn: Connection) -> int:
    """How many parameters one statement may have."""
    driver = conn.connection.driver_connection
    getlimit = getattr(driver, "getlimit", None)
    if getlimit is not None:  # SQLite: 32,766 since 3.32, 999 before; builds differ
        import sqlite3

        return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return 65_535  # PostgreSQL's wire protocol


def _point_values(run_id: str, points: Sequence[Point]) -> tuple[list[Any], dict[str, Point]]:
    """The run_metrics values of ``points`` in one flat list, and the last point of each
    key (highest step, then latest time; of equal ones, the last logged)."""
    values: list[Any] = []
    add = values.extend
    isnan = math.isnan
    latest: dict[str, Point] = {}
    for point in points:
        key, value, step, ts = point
        if isnan(value):  # SQLite would store NULL: keep NaN as a flag
            add((run_id, key, step, ts, None, True))
        else:
            add((run_id, key, step, ts, value, False))
        best = latest.get(key)
        if best is None or step > best[2] or (step == best[2] and ts >= best[3]):
            latest[key] = point
    return values, latest


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), 900):
        yield items[i : i + 900]
