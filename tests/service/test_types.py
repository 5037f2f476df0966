"""Money and times read back from both databases (``service.types``): exact Decimals and
datetimes whose zone is UTC, even when the database server's own time zone is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service.db import session_scope
from service.domain.shops import get_or_create_shop_id
from service.models import Order
from tests.support.deliveries import Sessionmaker
from tests.support.payloads import SHOP

orders = Order.__table__  # type: ignore[attr-defined]
KOLKATA = timezone(timedelta(hours=5, minutes=30))

pytestmark = pytest.mark.anyio


async def store_and_read(
    sessionmaker: Sessionmaker, created: datetime, total: Decimal
) -> tuple[datetime, Decimal]:
    async with session_scope(sessionmaker) as session:
        shop_id = await get_or_create_shop_id(session, SHOP)
        await session.execute(
            sa.insert(orders).values(
                shop_id=shop_id, id=1, created_at=created, total_amount=total, original_total=total
            )
        )
    async with session_scope(sessionmaker, readonly=True) as session:
        row = (await session.execute(sa.select(orders.c.created_at, orders.c.total_amount))).one()
    return row.created_at, row.total_amount


async def test_times_come_back_in_utc_and_money_exact(sessionmaker: Sessionmaker) -> None:
    created = datetime(2026, 3, 10, 23, 45, 1, 250000, tzinfo=KOLKATA)
    read, total = await store_and_read(sessionmaker, created, Decimal("1234.5678"))
    assert read == created
    assert read.utcoffset() == timedelta(0)
    assert read.tzinfo == UTC
    assert read.isoformat() == "2026-03-10T18:15:01.250000+00:00"
    assert isinstance(total, Decimal)
    assert total == Decimal("1234.5678")


async def test_a_postgresql_server_in_another_zone_still_gives_utc(
    sessionmaker: Sessionmaker, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the server's time zone is PostgreSQL's")
    database = make_url(database_url).database
    libpq = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{database}\" SET TIME ZONE 'Asia/Kolkata'")
    try:
        # New connections (the pool is new for this test) would start in Kolkata's zone.
        read, _ = await store_and_read(sessionmaker, datetime(2026, 1, 1, tzinfo=UTC), Decimal("1"))
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database}" RESET TIME ZONE')
    assert read.tzinfo == UTC
    assert read == datetime(2026, 1, 1, tzinfo=UTC)
