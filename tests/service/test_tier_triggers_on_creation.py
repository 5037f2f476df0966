"""SPEC §4.3: the tier of record changes "never on order creation", even for an order that is
created already in an RTO state (tagged) or already delivered; a later change of the same order
does fire the trigger."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from tests.factories import at, next_id, order_payload
from tests.webhooks import helpers
from tests.webhooks.helpers import Delivery

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


@pytest.mark.parametrize(
    ("tags", "fulfillments", "expected_status"),
    [
        pytest.param("rto", [], "rto_initiated", id="created tagged rto"),
        pytest.param("", ["delivered"], "delivered", id="created delivered"),
    ],
)
async def test_creation_never_sets_the_tier_of_record(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tags: str,
    fulfillments: list[str],
    expected_status: str,
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
    assert (await helpers.customer_stats(sessionmaker))[customer_id]["tier_of_record"] is None
    assert await helpers.tier_changes(sessionmaker, customer_id=customer_id) == []

    # A later change of the same order is a trigger: the tagged order leaves RTO; the delivered
    # one moves back to in_transit (no trigger), so its tier of record stays unset.
    updated = created | {"tags": "", "updated_at": at(5).isoformat()}
    if fulfillments:
        updated["fulfillments"] = [fulfilled(order_id, "in_transit", 5)]
    await helpers.apply(sessionmaker, settings, [Delivery.of("orders/updated", updated)])
    history = [
        (h["reason"], h["to_tier"]) for h in await helpers.tier_changes(sessionmaker, customer_id=customer_id)
    ]
    expected = [("rto", "silver")] if tags else []
    assert history == expected
