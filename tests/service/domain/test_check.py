"""docs/domain.md: ``stats.check`` proves the stored counters equal a recomputation from orders.

A pipeline run leaves no difference; a counter corrupted behind the domain's back (a direct
``UPDATE customer_stats``) is reported, naming the customer and the field. Field names are those
the API serves (``ltv``, ``orderCount``, ``rtoCount``, ``lastOrderAt``), since ``tierline check``
reports differences from what the API serves.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from service.config import Settings
from service.db import session_scope
from service.domain import stats
from service.domain.settings import get_shop_settings
from service.domain.shops import get_or_create_shop_id
from tests.support import deliveries as helpers
from tests.support.deliveries import CUSTOMER_STATS, Delivery, Sessionmaker
from tests.support.payloads import (
    OTHER_SHOP,
    SHOP,
    at,
    customer_payload,
    fulfillment_payload,
    iso,
    next_id,
    order_payload,
    return_payload,
)

pytestmark = pytest.mark.anyio


async def run_check(sessionmaker: Sessionmaker, shop: str = SHOP) -> list[stats.Difference]:
    async with session_scope(sessionmaker) as session:
        shop_id = await get_or_create_shop_id(session, shop)
        return await stats.check(session, shop_id, await get_shop_settings(session, shop_id))


async def corrupt(sessionmaker: Sessionmaker, customer_id: int, *, shop: str = SHOP, **values: Any) -> None:
    async with session_scope(sessionmaker) as session:
        shop_id = await get_or_create_shop_id(session, shop)
        await session.execute(
            sa.update(CUSTOMER_STATS)
            .where(CUSTOMER_STATS.c.shop_id == shop_id, CUSTOMER_STATS.c.customer_id == customer_id)
            .values(**values)
        )


async def populate(sessionmaker: Sessionmaker, settings: Settings, *, shop: str = SHOP) -> dict[str, int]:
    """Three customers with eligible, cancelled, test, zero, RTO (tag and return) and deleted orders,
    and one customer without orders."""
    rich, modest, rto, idle = next_id(), next_id(), next_id(), next_id()
    o = [next_id() for _ in range(8)]
    deliveries = [
        Delivery.of("customers/create", customer_payload(idle)),
        Delivery.of("orders/create", order_payload(o[0], customer_id=rich, total="12000.00", created=at(0))),
        Delivery.of(
            "orders/create", order_payload(o[1], customer_id=rich, total="800.00", current_total="650.00")
        ),
        Delivery.of(
            "orders/create", order_payload(o[2], customer_id=rich, total="300.00", cancelled_at=iso(at(3)))
        ),
        Delivery.of("orders/create", order_payload(o[3], customer_id=modest, total="99.00", test=True)),
        Delivery.of("orders/create", order_payload(o[4], customer_id=modest, total="0.00")),
        Delivery.of("orders/create", order_payload(o[5], customer_id=modest, total="450.00", created=at(10))),
        Delivery.of("orders/create", order_payload(o[6], customer_id=rto, total="700.00", tags="RTO")),
        Delivery.of("orders/create", order_payload(o[7], customer_id=rto, total="900.00")),
        Delivery.of(
            "fulfillments/create",
            fulfillment_payload(next_id(), o[7], shipment_status="in_transit", created=at(1)),
        ),
        Delivery.of("returns/request", return_payload(next_id(), o[7]), triggered_at=at(20)),
        Delivery.of("orders/delete", {"id": o[5]}),
    ]
    await helpers.apply(sessionmaker, settings, deliveries, shop=shop)
    return {"rich": rich, "modest": modest, "rto": rto, "idle": idle}


class TestCheck:
    async def test_no_difference_after_a_pipeline_run(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customers = await populate(sessionmaker, settings)
        stored = await helpers.customer_stats(sessionmaker)
        assert {
            name: (stored[cid]["ltv"], stored[cid]["order_count"], stored[cid]["rto_count"])
            for name, cid in customers.items()
        } == {
            "rich": (Decimal("12650.00"), 2, 0),
            "modest": (Decimal("0.00"), 0, 0),
            "rto": (Decimal("0.00"), 0, 2),
            "idle": (Decimal("0.00"), 0, 0),
        }
        assert await run_check(sessionmaker) == []

    async def test_an_empty_shop(self, sessionmaker: Sessionmaker) -> None:
        assert await run_check(sessionmaker) == []

    @pytest.mark.parametrize(
        ("who", "column", "field", "delta"),
        [
            ("rich", "ltv", "ltv", Decimal(1)),
            ("idle", "ltv", "ltv", Decimal(1)),
            ("rto", "ltv", "ltv", Decimal("0.01")),
            ("rich", "order_count", "orderCount", 1),
            ("rich", "order_count", "orderCount", -1),
            ("rto", "rto_count", "rtoCount", 1),
            ("rto", "rto_count", "rtoCount", -1),
            ("idle", "rto_count", "rtoCount", 1),
        ],
    )
    async def test_a_corrupted_counter_is_reported(
        self, sessionmaker: Sessionmaker, settings: Settings, who: str, column: str, field: str, delta: Any
    ) -> None:
        customers = await populate(sessionmaker, settings)
        customer_id = customers[who]
        before = (await helpers.customer_stats(sessionmaker))[customer_id][column]
        await corrupt(sessionmaker, customer_id, **{column: CUSTOMER_STATS.c[column] + delta})

        (difference,) = await run_check(sessionmaker)
        shop_id = await helpers.shop_id(sessionmaker)
        assert difference == stats.Difference(shop_id, customer_id, field, before + delta, before)

    async def test_a_corrupted_last_order_at_is_reported(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customers = await populate(sessionmaker, settings)
        await corrupt(sessionmaker, customers["rich"], last_order_at=at(-1000))
        differences = await run_check(sessionmaker)
        assert [(d.customer_id, d.field, d.stored, d.recomputed) for d in differences] == [
            (customers["rich"], "lastOrderAt", at(-1000), at(0))
        ]

    async def test_several_corruptions_each_reported(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customers = await populate(sessionmaker, settings)
        await corrupt(sessionmaker, customers["rich"], ltv=Decimal("1.00"), order_count=7)
        await corrupt(sessionmaker, customers["rto"], rto_count=0)
        differences = await run_check(sessionmaker)
        assert sorted((d.customer_id, d.field) for d in differences) == sorted(
            [(customers["rich"], "ltv"), (customers["rich"], "orderCount"), (customers["rto"], "rtoCount")]
        )

    async def test_only_the_shop_checked(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        await populate(sessionmaker, settings, shop=SHOP)
        other = await populate(sessionmaker, settings, shop=OTHER_SHOP)
        await corrupt(sessionmaker, other["rich"], shop=OTHER_SHOP, ltv=CUSTOMER_STATS.c.ltv + 1)
        assert await run_check(sessionmaker, SHOP) == []
        assert [(d.customer_id, d.field) for d in await run_check(sessionmaker, OTHER_SHOP)] == [
            (other["rich"], "ltv")
        ]

    async def test_refresh_shop_repairs_what_check_reports(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customers = await populate(sessionmaker, settings)
        await corrupt(sessionmaker, customers["rich"], ltv=CUSTOMER_STATS.c.ltv + 1, rto_count=3)
        assert len(await run_check(sessionmaker)) == 2
        async with session_scope(sessionmaker) as session:
            shop_id = await get_or_create_shop_id(session, SHOP)
            await stats.refresh_shop(session, shop_id, await get_shop_settings(session, shop_id))
        assert await run_check(sessionmaker) == []

    async def test_a_missing_stats_row_is_reported(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customers = await populate(sessionmaker, settings)
        async with session_scope(sessionmaker) as session:
            shop_id = await get_or_create_shop_id(session, SHOP)
            await session.execute(
                sa.delete(CUSTOMER_STATS).where(
                    CUSTOMER_STATS.c.shop_id == shop_id, CUSTOMER_STATS.c.customer_id == customers["rich"]
                )
            )
        differences = await run_check(sessionmaker)
        assert (customers["rich"], "ltv") in {(d.customer_id, d.field) for d in differences}


class TestCheckTierHistory:
    """``check`` also derives every tier of record and history again (docs/domain.md)."""

    async def test_a_pipeline_run_with_triggers_leaves_no_difference(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customers = await populate(sessionmaker, settings)
        assert await helpers.tier_changes(sessionmaker, customer_id=customers["rto"])
        assert await run_check(sessionmaker) == []

    async def test_a_tampered_tier_of_record_and_history_are_reported(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customers = await populate(sessionmaker, settings)
        cid = customers["rto"]
        await corrupt(sessionmaker, cid, tier_of_record="platinum")
        async with session_scope(sessionmaker) as session:
            await session.execute(
                sa.delete(helpers.TIER_CHANGES).where(helpers.TIER_CHANGES.c.customer_id == cid)
            )
        shop_id = await helpers.shop_id(sessionmaker)
        assert await run_check(sessionmaker) == [
            stats.Difference(shop_id, cid, "tierOfRecord", "platinum", "bronze"),
            stats.Difference(shop_id, cid, "tierHistory", 0, 1),
        ]
