"""Opening a metadata store: engine set-up per dialect and schema migrations."""

from __future__ import annotations

from importlib import resources
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError

from modelcycle.core.errors import StorageError, UsageError
from modelcycle.store.engine_constants import HEAD_REVISION


def make_engine(url: str) -> Engine:
    """An engine for ``url``: ``sqlite:///PATH`` (WAL) or ``postgresql+psycopg://…``."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
            _setup_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except NoSuchModuleError as e:
        raise UsageError(
            f"unsupported metadata store URL {url!r}: {e}",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
        ) from e
    except ModuleNotFoundError as e:
        raise UsageError(
            f"the metadata store {url.split(':', 1)[0]!r} needs {e.name}, which is not installed",
            hint="pip install 'modelcycle[postgres]'",
        ) from e
    except ArgumentError as e:
        raise UsageError(
            f"bad metadata store URL {url!r}: {e}",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
        ) from e
    return engine


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock at BEGIN: a deferred transaction that reads and then writes
        # fails at once with "database is locked" when another writer got there first,
        # instead of waiting its turn. Reads in WAL mode are never blocked by this.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


def ensure_schema(engine: Engine) -> None:
    """Bring the store's schema up to HEAD_REVISION (creating it on an empty store)."""
    try:
        with engine.connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (OperationalError, ProgrammingError) as e:
        if not _is_missing_table(e):
            raise _store_error(engine, e) from e
        current = None
    if current == HEAD_REVISION:
        return
    _upgrade(engine)


def _is_missing_table(e: Exception) -> bool:
    msg = str(e).lower()
    return "no such table" in msg or "does not exist" in msg or "undefined" in msg


def _store_error(engine: Engine, e: Exception) -> StorageError:
    return StorageError(
        f"cannot use the metadata store {engine.url.render_as_string(hide_password=True)}: "
        f"{getattr(e, 'orig', e)}",
        hint="check that the database server runs and the URL in modelcycle.toml is right",
    )


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    location = resources.files("modelcycle.store") / "migrations"
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    try:
        with engine.connect() as conn:
            conn.info["write"] = True
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
    except OperationalError as e:
        raise _store_error(engine, e) from e
