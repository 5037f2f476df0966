"""``session_scope(autocommit=True)``: the order grid's reads run without a transaction on
PostgreSQL, and the pooled connection is transactional again for the next user."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.deps import READS_ONLY
from service.db import dialect_of, session_scope

pytestmark = pytest.mark.anyio

# Inside a transaction now() is the transaction's start; on its own a statement is its own.
OWN_TRANSACTION = sa.text("SELECT now() = statement_timestamp()")


async def statement_is_alone(session: AsyncSession) -> bool:
    await session.execute(sa.text("SELECT pg_sleep(0.02)"))
    return bool((await session.execute(OWN_TRANSACTION)).scalar_one())


async def test_reads_run_alone_and_the_pool_gets_a_transactional_connection_back(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as probe:
        if dialect_of(probe) != "postgresql":
            pytest.skip("SQLite ignores autocommit: its reads begin deferred and never wait")

    async with session_scope(sessionmaker, autocommit=True) as session:
        assert await statement_is_alone(session)

    for _ in range(3):  # every pooled connection, the one just used among them
        async with session_scope(sessionmaker) as session:
            assert not await statement_is_alone(session)
        async with session_scope(sessionmaker, readonly=True) as session:
            assert not await statement_is_alone(session)


async def test_a_write_in_an_ordinary_scope_still_rolls_back(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as probe:
        if dialect_of(probe) != "postgresql":
            pytest.skip("PostgreSQL only")
    async with session_scope(sessionmaker, autocommit=True) as session:
        await session.execute(sa.text("SELECT 1"))

    async def create_then_fail() -> None:
        async with session_scope(sessionmaker) as session:
            await session.execute(sa.text("CREATE TABLE scope_probe (x int)"))
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        await create_then_fail()

    async with session_scope(sessionmaker) as session:
        found = await session.execute(sa.text("SELECT to_regclass('scope_probe') IS NULL"))
        assert found.scalar_one() is True


def test_the_order_grid_reads_are_marked_and_writes_are_not(app: Litestar) -> None:
    def routes(wanted: Callable[[Any], bool]) -> set[tuple[str, str]]:
        return {
            (method, route.path)
            for route in app.routes
            for handler in getattr(route, "route_handlers", [])
            for method in handler.http_methods
            if wanted(handler)
        }

    def takes(handler: Any, name: str) -> bool:
        return name in inspect.signature(handler.fn).parameters

    marked = routes(lambda h: h.opt.get("tierline_reads_only") == READS_ONLY["tierline_reads_only"])
    on_read_pool = routes(lambda h: takes(h, "reads"))
    with_session = routes(lambda h: takes(h, "db_session"))

    # The two hot reads send their statements through service.reads, without a session at all.
    assert on_read_pool == {("POST", "/api/orders/enrich"), ("POST", "/api/stats/customers")}
    assert not on_read_pool & with_session
    assert ("GET", "/api/customers") in marked
    assert ("GET", "/api/orders") in marked
    assert not {m for m in marked | on_read_pool if m[0] in ("PUT", "DELETE")}
    assert ("POST", "/api/tiers/recalculate") not in marked | on_read_pool
