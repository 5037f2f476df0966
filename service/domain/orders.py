"""Order records: out-of-order-safe upserts, line items, tombstoned deletes (SPEC §3, §4.1)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_insert
from service.domain import tombstones
from service.domain.customers import RANK_STUB, upsert_customer
from service.domain.records import OrderSnapshot
from service.domain.settings import ShopSettings, payment_method
from service.models import Order, OrderLine

orders = Order.__table__  # type: ignore[attr-defined]
order_lines = OrderLine.__table__  # type: ignore[attr-defined]

#: Columns an upsert overwrites. Derived state (``tracking_status``, ``delivered_at``) is not here.
_PAYLOAD_COLUMNS = (
    "name",
    "customer_id",
    "email",
    "phone",
    "created_at",
    "updated_at",
    "processed_at",
    "cancelled_at",
    "financial_status",
    "fulfillment_status",
    "currency",
    "total_amount",
    "original_total",
    "payment_method",
    "payment_gateway_names",
    "tags",
    "test",
    "shipping_address",
    "billing_address",
)


async def upsert_order(
    session: AsyncSession, shop_id: int, snap: OrderSnapshot, settings: ShopSettings
) -> bool:
    """Apply an order snapshot unless the order is deleted or the snapshot is older than stored.

    The embedded customer, if any, is applied first as a stub (even when the order itself is
    stale or deleted), so the final customer set does not depend on delivery order.
    Returns True when the order row was written.
    """
    if snap.customer is not None:
        await upsert_customer(session, shop_id, snap.customer, rank=RANK_STUB, version_at=snap.updated_at)
    if await tombstones.is_deleted(session, shop_id, tombstones.ORDER, snap.id):
        return False
    values = {
        "shop_id": shop_id,
        "id": snap.id,
        "name": snap.name,
        "customer_id": snap.customer.id if snap.customer is not None else None,
        "email": snap.email,
        "phone": snap.phone,
        "created_at": snap.created_at,
        "updated_at": snap.updated_at,
        "processed_at": snap.processed_at,
        "cancelled_at": snap.cancelled_at,
        "financial_status": snap.financial_status,
        "fulfillment_status": snap.fulfillment_status,
        "currency": snap.currency,
        "total_amount": snap.total_amount,
        "original_total": snap.total_price if snap.total_price is not None else snap.total_amount,
        "payment_method": payment_method(snap.payment_gateway_names, settings),
        "payment_gateway_names": snap.payment_gateway_names,
        "tags": snap.tags,
        "test": snap.test,
        "shipping_address": snap.shipping_address,
        "billing_address": snap.billing_address,
    }
    stmt = dialect_insert(session.bind.dialect.name, orders).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["shop_id", "id"],
        set_={k: stmt.excluded[k] for k in _PAYLOAD_COLUMNS},
        where=sa.or_(orders.c.updated_at.is_(None), stmt.excluded.updated_at >= orders.c.updated_at),
    ).returning(orders.c.id)
    if (await session.execute(stmt)).first() is None:
        return False
    await _replace_lines(session, shop_id, snap)
    return True


async def _replace_lines(session: AsyncSession, shop_id: int, snap: OrderSnapshot) -> None:
    await session.execute(
        sa.delete(order_lines).where(order_lines.c.shop_id == shop_id, order_lines.c.order_id == snap.id)
    )
    if snap.lines:
        await session.execute(
            sa.insert(order_lines),
            [
                {
                    "shop_id": shop_id,
                    "order_id": snap.id,
                    "id": line.id,
                    "product_id": line.product_id,
                    "variant_id": line.variant_id,
                    "title": line.title,
                    "variant_title": line.variant_title,
                    "vendor": line.vendor,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "price": line.price,
                }
                for line in snap.lines
            ],
        )


async def delete_order(session: AsyncSession, shop_id: int, order_id: int) -> None:
    """Tombstone and remove an order and its lines: deleted orders count nowhere."""
    await tombstones.bury(session, shop_id, tombstones.ORDER, order_id)
    await session.execute(
        sa.delete(order_lines).where(order_lines.c.shop_id == shop_id, order_lines.c.order_id == order_id)
    )
    await session.execute(sa.delete(orders).where(orders.c.shop_id == shop_id, orders.c.id == order_id))
