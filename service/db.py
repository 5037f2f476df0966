"""Engines and transactions. The edges own the transaction (docs/architecture.md, "Rules of the code").

* SQLite: WAL, ``busy_timeout``, foreign keys, ``secure_delete`` (erased bytes are zeroed), and
  ``BEGIN IMMEDIATE`` for every transaction, so that a reader never has to upgrade to a writer
  (which SQLite refuses under contention).
* PostgreSQL: psycopg 3 async with a small pool and no ping before each checkout (a round trip
  on every request). Every session runs in UTC (``SET TIME ZONE`` when a connection opens), so
  timestamps come back in UTC without a conversion per value (``service.types``). A connection
  broken by a database restart fails on first use; SQLAlchemy then discards the whole pool.
  Intake retries once on a fresh connection; other requests answer ``503`` (``service.errors``)
  and the worker pauses and claims again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from service.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 5000
#: Execution option marking a transaction read-only (SQLite then begins it deferred).
READONLY_OPTION = "tierline_readonly"


def ensure_sqlite_directory(url: str) -> None:
    """Create the folder of a file-backed SQLite database (``./data`` by default)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted and overwritten content is zeroed in the file, not left in free pages: a
        # redaction must not stay readable with a hex editor (docs/operations.md).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front; read-only work (execution option
        # ``tierline_readonly``) begins deferred and never waits for a writer under WAL.
        readonly = connection.get_execution_options().get(READONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    url = settings.database_url
    if url.startswith("sqlite"):
        ensure_sqlite_directory(url)
        engine = create_async_engine(url, **overrides)
        _configure_sqlite(engine)
        return engine
    options: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        # No overflow: a connection opened beyond the pool is closed again on return, and under
        # 32 concurrent requests that churn (a new server process per connection) halved intake
        # (docs/benchmarks.md). Requests wait for a pooled connection instead.
        "max_overflow": 0,
        "pool_timeout": settings.intake_timeout_seconds,
        "connect_args": {"connect_timeout": max(1, int(settings.intake_timeout_seconds))},
    }
    options.update(overrides)
    engine = create_async_engine(url, **options)
    _configure_postgresql(engine)
    return engine


def _configure_postgresql(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # A statement, not a startup option, so that connection poolers in front of PostgreSQL
        # (which track TimeZone but may refuse startup options) keep it.
        cursor = dbapi_connection.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.close()
        # Outside any transaction SQLAlchemy began: make the setting stick.
        dbapi_connection.commit()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession], *, readonly: bool = False, autocommit: bool = False
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on any exception.

    ``readonly``: the transaction only reads (on SQLite it then does not take the write lock).
    ``autocommit`` (PostgreSQL; for work that only reads): each statement runs on its own, without
    the ``BEGIN`` and ``COMMIT`` round trips. It reads what a ``READ COMMITTED`` transaction would
    (each statement sees what was committed when it started); the connection goes back to the pool
    transactional again. SQLite ignores it.
    """
    async with sessionmaker() as session, session.begin():
        if readonly or autocommit:
            options: dict[str, Any] = {READONLY_OPTION: True}
            if autocommit and dialect_of(session) == "postgresql":
                options["isolation_level"] = "AUTOCOMMIT"
            await session.connection(execution_options=options)
        yield session


def dialect_insert(dialect_name: str, table: sa.Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the session's dialect."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(dialect_name: str, table: sa.Table, index_elements: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` for either dialect."""
    return dialect_insert(dialect_name, table).on_conflict_do_nothing(index_elements=index_elements)


def in_ids(dialect_name: str, column: Any, name: str) -> Any:
    """``column IN (:name)`` for a list of 64-bit ids, as one bind parameter.

    PostgreSQL gets ``column = ANY(:name)`` with an array: one short statement whatever the
    number of ids, which psycopg can prepare, instead of hundreds of rendered parameters. (Bound
    as one text literal cast to ``BIGINT[]``, the array cost psycopg less, but the worker's
    statements planned worse: 1,410 deliveries/s fell to 945/s, docs/benchmarks.md.)
    """
    if dialect_name == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(sa.BigInteger())))
    return column.in_(sa.bindparam(name, expanding=True))


class _IdArrayText(sa.types.TypeDecorator[list[int]]):
    """A list of ids bound as one PostgreSQL array literal (``{1,2,3}``), built by ``str.join``."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else "{" + ",".join(map(str, map(int, value))) + "}"


def in_ids_read(dialect_name: str, column: Any, name: str) -> Any:
    """:func:`in_ids` for the read API's hot statements (``POST /api/orders/enrich``, ``stats.read``).

    On PostgreSQL the ids are bound as one array literal cast to ``BIGINT[]``: psycopg's list
    dumper cost 0.15 to 0.3 ms of CPU per 250 ids (a Python call per element), ``str.join`` costs
    15 µs. Only these simple index lookups take it; the worker's statements planned worse with it
    (see :func:`in_ids`).
    """
    if dialect_name == "postgresql":
        array = sa.cast(sa.bindparam(name, type_=_IdArrayText()), postgresql.ARRAY(sa.BigInteger()))
        return column == sa.any_(array)
    return column.in_(sa.bindparam(name, expanding=True))


def typed_param(dialect_name: str, name: str, type_: Any) -> Any:
    """A bind parameter for a ``SELECT`` list. PostgreSQL cannot infer the type of a bare
    parameter there (it would be text), so it gets an explicit ``CAST``; SQLite needs none."""
    param = sa.bindparam(name, type_=type_)
    return sa.cast(param, type_) if dialect_name == "postgresql" else param


def dialect_of(session: AsyncSession) -> str:
    """``postgresql`` or ``sqlite``: the dialect a session's statements are built for."""
    return session.get_bind().dialect.name
