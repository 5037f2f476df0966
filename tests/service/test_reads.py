"""``service.reads``: the read API's hot statements through psycopg return what a session returns.

Each statement that takes the read pool (the API-key lookup, ``stats.read``, the enrich query) is
run on the same data through an ``AsyncSession`` and through :class:`Reads`, and the results are
compared value for value, types included (``Decimal`` money, UTC datetimes, 64-bit ids), on both
databases. A database restart under the pool answers ``503`` and the pool serves again
afterwards; a pool with every connection taken answers ``503`` after its wait, not ``500``;
refused credentials leave no connection taken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.app import create_app
from service.config import Settings
from service.db import session_scope
from service.domain import stats
from service.domain.api_keys import create_api_key, shop_for_api_key
from service.domain.order_views import enriched_orders
from service.domain.settings import get_shop_settings
from service.reads import Reads, fetch
from tests.support import deliveries as helpers
from tests.support.deliveries import Delivery
from tests.support.payloads import SHOP, customer_payload, next_id, order_payload

pytestmark = pytest.mark.anyio

BIG_ID = 2**63 - 7  # a 64-bit id beyond any float's exact range


@pytest.fixture
async def reads(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[Reads]:
    found = Reads(engine, sessionmaker, settings)
    await found.open()
    try:
        yield found
    finally:
        await found.close()


def postgresql_only(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: on SQLite each read runs in a session, without a pool")


async def seed(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> tuple[list[int], list[int]]:
    """Two customers with orders (one of them with a 64-bit id), an order without a customer."""
    customers = [next_id(), BIG_ID]
    orders: list[int] = []
    deliveries: list[Delivery] = []
    for index, customer in enumerate(customers):
        deliveries.append(Delivery.of("customers/create", customer_payload(customer)))
        for total in ("1234.565", "10.10")[: index + 1]:
            order = next_id()
            orders.append(order)
            deliveries.append(
                Delivery.of(
                    "orders/create",
                    order_payload(order, customer_id=customer, total=total, tags="vip, priority"),
                )
            )
    guest = next_id()
    orders.append(guest)
    deliveries.append(Delivery.of("orders/create", order_payload(guest)))
    await helpers.apply(sessionmaker, settings, deliveries)
    return customers, orders


async def test_hot_statements_return_what_a_session_returns(
    reads: Reads, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    customers, orders = await seed(sessionmaker, settings)
    async with session_scope(sessionmaker) as session:
        key = await create_api_key(session, SHOP)
    unknown = next_id()

    async with session_scope(sessionmaker, readonly=True) as session:
        shop = await shop_for_api_key(session, key)
        assert shop is not None
        shop_settings = await get_shop_settings(session, shop.id)
        by_session = (
            shop,
            await stats.read(session, shop.id, [*customers, unknown], shop_settings),
            await enriched_orders(session, shop.id, [*orders, unknown], shop_settings),
        )
    by_pool = (
        await shop_for_api_key(reads, key),
        await stats.read(reads, shop.id, [*customers, unknown], shop_settings),
        await enriched_orders(reads, shop.id, [*orders, unknown], shop_settings),
    )

    assert by_pool == by_session
    figures, enriched = by_pool[1], by_pool[2]
    assert set(figures) == {*customers, unknown}
    assert figures[BIG_ID].ltv == Decimal("1244.665")
    assert type(figures[BIG_ID].ltv) is Decimal
    assert figures[unknown].order_count == 0
    assert [o.id for o in enriched] == orders  # in the order asked, the unknown id left out
    assert all(o.created_at is not None and o.created_at.utcoffset() == timedelta(0) for o in enriched)
    assert enriched[0].tags == ["vip", "priority"]
    assert {o.customer_id for o in enriched} == {*customers, None}


async def test_a_revoked_key_finds_no_shop_through_the_pool(
    reads: Reads, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with session_scope(sessionmaker) as session:
        key = await create_api_key(session, SHOP)
    assert await shop_for_api_key(reads, key) is not None
    assert await shop_for_api_key(reads, key + "x") is None
    api_keys = sa.table("api_keys", sa.column("revoked_at"), sa.column("prefix"))
    async with session_scope(sessionmaker) as session:
        await session.execute(
            sa.update(api_keys).where(api_keys.c.prefix == key[:10]).values(revoked_at=sa.func.now())
        )
    assert await shop_for_api_key(reads, key) is None  # no cache: revocation holds at once


async def test_pool_connections_read_without_a_transaction_in_utc(reads: Reads, engine: AsyncEngine) -> None:
    postgresql_only(engine)
    now = sa.select(sa.func.now(), sa.func.current_setting("TimeZone"))
    ((before, zone),) = await fetch(reads, now, {})
    await fetch(reads, sa.select(sa.func.pg_sleep(0.02)), {})
    ((after, _),) = await fetch(reads, now, {})
    assert zone == "UTC"
    assert before.utcoffset() == timedelta(0)
    # In a transaction now() would stand still; each statement here is a transaction of its own.
    assert after - before >= timedelta(milliseconds=20)


async def test_sqlite_reads_go_through_a_session_without_a_pool(reads: Reads, engine: AsyncEngine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL reads through the pool (tested above)")
    assert reads.pool is None
    assert reads.dialect_name == "sqlite"
    assert await fetch(reads, sa.select(sa.literal(2**63 - 1)), {}) == [(2**63 - 1,)]


async def test_every_connection_taken_answers_503_after_the_wait(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    postgresql_only(engine)
    narrow = settings.model_copy(update={"db_pool_size": 1, "intake_timeout_seconds": 0.2})
    app = create_app(narrow, run_worker=False)
    headers = await helpers.api_headers(sessionmaker)
    body: dict[str, Any] = {"customerIds": [str(next_id())]}
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        pool = app.state.runtime.reads.pool
        assert pool is not None
        async with pool.connection():  # a slow request holds the only connection
            answer = await client.post("/api/stats/customers", json=body, headers=headers)
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert (await client.post("/api/stats/customers", json=body, headers=headers)).status_code == 200


async def test_refused_credentials_leave_no_connection_taken(app: Litestar, engine: AsyncEngine) -> None:
    postgresql_only(engine)
    body: dict[str, Any] = {"orderIds": [str(next_id())]}
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        pool = app.state.runtime.reads.pool
        assert pool is not None
        for token in ("tl_unknown", "tl_' OR 1=1 --", "x" * 300):
            answer = await client.post(
                "/api/orders/enrich", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 401
        # A connection the pool is still opening counts in its size, not yet as available.
        for _ in range(100):
            figures = pool.get_stats()
            if figures["pool_size"] == figures["pool_available"]:
                break
            await anyio.sleep(0.01)
        assert figures["pool_size"] == figures["pool_available"]  # every connection given back


async def test_a_restarted_database_answers_503_then_serves_again(
    app: Litestar, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    postgresql_only(engine)
    headers = await helpers.api_headers(sessionmaker)
    body: dict[str, Any] = {"customerIds": [str(next_id())]}
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        assert (await client.post("/api/stats/customers", json=body, headers=headers)).status_code == 200
        # Every connection of the read pool is cut, as a database restart cuts them.
        async with session_scope(sessionmaker) as session:
            await session.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND datname = current_database() AND state = 'idle'"
                )
            )
        answers = [
            (await client.post("/api/stats/customers", json=body, headers=headers)).status_code
            for _ in range(4)
        ]
        assert set(answers) <= {200, 503}
        assert 503 in answers
        refused = await client.post("/api/stats/customers", json=body, headers=headers)
        for _ in range(20):
            if refused.status_code == 200:
                break
            refused = await client.post("/api/stats/customers", json=body, headers=headers)
        assert refused.status_code == 200
