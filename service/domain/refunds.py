"""Refunds: they feed ``refundedAmount`` and ``returnCount`` only; LTV follows the order's
``current_total_price``, which Shopify lowers on a refund (docs/domain.md)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_of, insert_ignore
from service.domain.records import RefundSnapshot
from service.models import Refund

refunds = Refund.__table__  # type: ignore[attr-defined]


async def add_refund(session: AsyncSession, shop_id: int, snap: RefundSnapshot) -> bool:
    """Store a refund once (refunds are immutable). True when new."""
    stmt = (
        insert_ignore(dialect_of(session), refunds, ["shop_id", "id"])
        .values(
            shop_id=shop_id,
            id=snap.id,
            order_id=snap.order_id,
            amount=snap.amount,
            returned_quantity=snap.returned_quantity,
            created_at=snap.created_at,
        )
        .returning(refunds.c.id)
    )
    return (await session.execute(stmt)).first() is not None
