"""Orders as the order grid reads them: the order plus its customer's figures (SPEC §5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import stats
from service.domain.settings import ShopSettings
from service.models import Order

orders = Order.__table__  # type: ignore[attr-defined]

ORDER_COLUMNS = (
    orders.c.id,
    orders.c.name,
    orders.c.customer_id,
    orders.c.email,
    orders.c.phone,
    orders.c.created_at,
    orders.c.updated_at,
    orders.c.processed_at,
    orders.c.cancelled_at,
    orders.c.financial_status,
    orders.c.fulfillment_status,
    orders.c.currency,
    orders.c.total_amount,
    orders.c.original_total,
    orders.c.payment_method,
    orders.c.tracking_status,
    orders.c.delivered_at,
    orders.c.tags,
    orders.c.test,
)


@dataclass(frozen=True, slots=True)
class EnrichedOrder:
    id: int
    name: str | None
    customer_id: int | None
    email: str | None
    phone: str | None
    created_at: datetime | None
    updated_at: datetime | None
    processed_at: datetime | None
    cancelled_at: datetime | None
    financial_status: str | None
    fulfillment_status: str | None
    currency: str | None
    total_amount: Decimal
    original_total: Decimal
    payment_method: str
    tracking_status: str | None
    delivered_at: datetime | None
    tags: str
    test: bool
    customer: stats.Stats | None


async def enrich_rows(
    session: AsyncSession, shop_id: int, rows: Sequence[Any], settings: ShopSettings
) -> list[EnrichedOrder]:
    """Attach the customers' figures (one stats read for the whole page) to order rows."""
    customer_ids = [int(r.customer_id) for r in rows if r.customer_id is not None]
    figures = await stats.read(session, shop_id, customer_ids, settings) if customer_ids else {}
    return [
        EnrichedOrder(
            **{k: v for k, v in row._mapping.items()},
            customer=figures.get(int(row.customer_id)) if row.customer_id is not None else None,
        )
        for row in rows
    ]


async def enriched_orders(
    session: AsyncSession, shop_id: int, order_ids: Sequence[int], settings: ShopSettings
) -> list[EnrichedOrder]:
    """``POST /api/orders/enrich``: the orders asked for, in the order asked; unknown ids left out."""
    wanted = list(dict.fromkeys(order_ids))
    if not wanted:
        return []
    rows = (
        await session.execute(sa.select(*ORDER_COLUMNS).where(orders.c.shop_id == shop_id, orders.c.id.in_(wanted)))
    ).all()
    by_id = {int(r.id): r for r in rows}
    ordered = [by_id[i] for i in wanted if i in by_id]
    return await enrich_rows(session, shop_id, ordered, settings)
