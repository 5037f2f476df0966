"""docs/domain.md: creating an order is no tier-of-record trigger, but an order first seen already in
an RTO state (tagged) or already delivered fires its trigger at that history time; a later change
of the same order fires the next one at its own time."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from tests.support import deliveries as helpers
from tests.support.deliveries import Delivery
from tests.support.payloads import at, next_id, order_payload

pytestmark = pytest.mark.anyio


def fulfilled(order_id: int, status: str, minutes: float) -> dict[str, object]:
    return {
        "id": order_id + 1,
        "order_id": order_id,
        "status": "success",
        "shipment_status": status,
        "created_at": at(minutes).isoformat(),
        "updated_at": at(minutes).isoformat(),
    }


async def test_plain_creation_sets_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    customer_id, order_id = next_id(), next_id() * 10
    created = order_payload(order_id, customer_id=customer_id, total="12000.00", updated=at(1))
    await helpers.apply(sessionmaker, settings, [Delivery.of("orders/create", created)])
    assert (await helpers.customer_stats(sessionmaker))[customer_id]["tier_of_record"] is None
    assert await helpers.tier_changes(sessionmaker, customer_id=customer_id) == []


@pytest.mark.parametrize(
    ("tags", "fulfillments", "expected_status", "expected_history"),
    [
        pytest.param("rto", [], "rto_initiated", [("rto", "bronze", "0.00")], id="created tagged rto"),
        pytest.param(
            "", ["delivered"], "delivered", [("delivered", "silver", "12000.00")], id="created delivered"
        ),
    ],
)
async def test_an_order_created_delivered_or_in_rto_fires_at_that_time(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tags: str,
    fulfillments: list[str],
    expected_status: str,
    expected_history: list[tuple[str, str, str]],
) -> None:
    customer_id, order_id = next_id(), next_id() * 10
    created = order_payload(
        order_id,
        customer_id=customer_id,
        total="12000.00",
        tags=tags,
        updated=at(1),
        fulfillments=[fulfilled(order_id, s, 1) for s in fulfillments],
    )
    await helpers.apply(sessionmaker, settings, [Delivery.of("orders/create", created)])
    order = (await helpers.orders(sessionmaker))[order_id]
    assert order["tracking_status"] == expected_status

    def seen(rows: list[helpers.Row]) -> list[tuple[str, str, str]]:
        assert all(r["at"] == at(1) for r in rows[: len(expected_history)])
        return [(r["reason"], r["to_tier"], f"{Decimal(r['ltv']):.2f}") for r in rows]

    assert seen(await helpers.tier_changes(sessionmaker, customer_id=customer_id)) == expected_history
    tier_of_record = (await helpers.customer_stats(sessionmaker))[customer_id]["tier_of_record"]
    assert tier_of_record == expected_history[-1][1]

    if tags:  # leaving RTO at minute 5 is the next trigger, at its own time
        updated = created | {"tags": "", "updated_at": at(5).isoformat()}
        await helpers.apply(sessionmaker, settings, [Delivery.of("orders/updated", updated)])
        rows = await helpers.tier_changes(sessionmaker, customer_id=customer_id)
        assert seen(rows) == [*expected_history, ("rto", "silver", "12000.00")]
        assert rows[-1]["at"] == at(5)
