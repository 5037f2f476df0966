"""The read API's hot statements on PostgreSQL, sent through psycopg without the ORM session.

A request that reads through an ``AsyncSession`` pays for the session, its transaction, the
pool's checkout and check-in and SQLAlchemy's execution and result layers: about 0.4 ms of CPU
for a one-row ``SELECT`` that psycopg sends in 0.12 ms (docs/benchmarks.md, issue 18). The
statements every read request sends (the API-key lookup, ``stats.read``, the enrich query) take
this path instead:

* :class:`Reads`, one per process (``Runtime.reads``): on PostgreSQL a psycopg pool of
  connections in autocommit (each statement on its own, as :func:`service.db.session_scope`
  with ``autocommit=True`` reads) and in UTC, as the engine's. Each statement takes a connection
  for itself and gives it back at once: nothing is held across a request, so no request can
  leave a connection behind whatever fails after its statement. A statement is still written
  with SQLAlchemy Core; it is compiled for the engine's dialect once (:func:`_plan`), its bind
  parameters go through their types' bind processors, and its rows come back from psycopg as
  tuples (prepared, in text: psycopg reads 250 rows of numbers, amounts and times from text in
  0.65 to 0.85 of the time it takes from binary). On SQLite each statement runs in a read-only
  session.
  Only statements whose column types need no result processing on PostgreSQL take this path
  (``Money``, ``UTCDateTime``, integers, text, booleans, JSONB); ``tests/service/test_reads.py``
  proves each one returns what the session returns.
* :func:`fetch` runs a statement on either source; domain functions that read this way take a
  :data:`ReadSource` (an ``AsyncSession`` on SQLite, in tests and in the worker).

A connection broken by a database restart fails its request with ``503`` (``service.errors``),
like the engine's; the failure also starts a check of the pool's idle connections, so the next
requests get new ones. No request waits longer than ``TIERLINE_INTAKE_TIMEOUT`` for a
connection (then ``503`` too).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings
from service.db import dialect_of, session_scope

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement compiled for one dialect: its SQL, and how to bind its parameters."""

    sql: str
    compiled: Any
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]

    def parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = self.compiled.construct_params(given)
        for name, process in self.processors:
            values[name] = process(values[name])
        return values


@functools.lru_cache(maxsize=128)
def _plan(statement: sa.Executable, dialect: Dialect) -> _Plan:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    processors = tuple(
        (name, process)
        for name, bind in compiled.binds.items()
        if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    return _Plan(sql=compiled.string, compiled=compiled, processors=processors)


class Reads:
    """Where the read API's hot statements run: the read pool on PostgreSQL, a read-only session
    per statement on SQLite. One per process, opened in the lifespan.

    The pool holds at most ``TIERLINE_DB_POOL_SIZE`` connections, as the engine's pool: a serving
    process holds up to twice that many (docs/scaling.md).
    """

    def __init__(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self.dialect: Dialect = engine.dialect
        self.dialect_name = str(engine.dialect.name)
        self._sessionmaker = sessionmaker
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        if self.dialect_name == "postgresql":
            url = engine.url.set(drivername="postgresql")
            self.pool = AsyncConnectionPool(
                url.render_as_string(hide_password=False),
                min_size=1,
                max_size=settings.db_pool_size,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(settings.intake_timeout_seconds))},
                configure=_in_utc,
                timeout=settings.intake_timeout_seconds,
                name="tierline-reads",
                open=False,
            )
        self._check_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Start opening connections in the background (a database still down is not an error)."""
        if self.pool is not None:
            await self.pool.open(wait=False)

    async def close(self) -> None:
        if self._check_task is not None:
            await asyncio.gather(self._check_task, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()

    async def rows(self, statement: sa.Executable, params: Mapping[str, Any]) -> Sequence[Any]:
        """Every row of ``statement``, as tuples."""
        if self.pool is None:
            async with session_scope(self._sessionmaker, readonly=True, autocommit=True) as session:
                return (await session.execute(statement, params)).all()
        plan = _plan(statement, self.dialect)
        try:
            async with self.pool.connection() as connection:
                cursor = connection.cursor()
                await cursor.execute(plan.sql, plan.parameters(params), prepare=True)
                return await cursor.fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError):
            if self._check_task is None or self._check_task.done():
                self._check_task = asyncio.get_running_loop().create_task(
                    self._check(), name="tierline-read-pool-check"
                )
            raise

    async def _check(self) -> None:
        """Drop the idle connections a database restart broke, beside the failed request."""
        if self.pool is None:  # pragma: no cover - only a pool's failure starts a check
            return
        try:
            await self.pool.check()
        except psycopg.Error as exc:
            logger.warning("reads.pool_check_failed", extra={"error": type(exc).__name__})


#: Where a read runs: a session (the worker, tests, handlers that also write), or :class:`Reads`.
ReadSource = AsyncSession | Reads


async def fetch(source: ReadSource, statement: sa.Executable, params: Mapping[str, Any]) -> Sequence[Any]:
    """Every row of ``statement`` as a tuple (a ``Row`` through a session), on either source."""
    if isinstance(source, Reads):
        return await source.rows(statement, params)
    return (await source.execute(statement, params)).all()


def source_dialect(source: ReadSource) -> str:
    """``postgresql`` or ``sqlite``, as :func:`service.db.dialect_of` for a session."""
    return source.dialect_name if isinstance(source, Reads) else dialect_of(source)


async def _in_utc(connection: psycopg.AsyncConnection[Any]) -> None:
    await connection.execute("SET TIME ZONE 'UTC'")
