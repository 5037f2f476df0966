"""Privacy webhooks (docs/shopify-app.md): erase a shop, redact a customer, export a customer's data.

Redaction removes the customer record, their personal data on orders (figures stay, no longer
linked to the customer), their figures and tier history, data exports made for them, and the
raw inbox bodies that mention them; and it stays: what arrives later for them is stored without
it (see :func:`redact_customer`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from service.domain import tombstones, writeback
from service.models import (
    ComplianceRequest,
    Customer,
    CustomerStats,
    DeliveryStatus,
    Order,
    OrderLine,
    Shop,
    TierChange,
    WebhookDelivery,
)
from service.types import utc_now

REDACTED_BODY = b'{"redacted":true}'

customers = Customer.__table__  # type: ignore[attr-defined]
orders = Order.__table__  # type: ignore[attr-defined]
order_lines = OrderLine.__table__  # type: ignore[attr-defined]
customer_stats = CustomerStats.__table__  # type: ignore[attr-defined]
tier_changes = TierChange.__table__  # type: ignore[attr-defined]
deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
requests = ComplianceRequest.__table__  # type: ignore[attr-defined]
shops = Shop.__table__  # type: ignore[attr-defined]


def shop_tables() -> list[sa.Table]:
    """Every table keyed by shop (a ``shop_id`` column) but the inbox, children before parents.

    Derived from the metadata, so a table added later is erased by ``shop/redact`` too.
    """
    return [
        table
        for table in reversed(SQLModel.metadata.sorted_tables)
        if "shop_id" in table.columns and table.name != deliveries.name
    ]


async def record_request(
    session: AsyncSession,
    shop_id: int,
    *,
    topic: str,
    webhook_id: str,
    customer_id: int | None = None,
    shopify_request_id: int | None = None,
    result: dict[str, Any] | None = None,
) -> int:
    now = utc_now()
    inserted = await session.execute(
        sa.insert(requests)
        .values(
            shop_id=shop_id,
            topic=topic,
            webhook_id=webhook_id,
            customer_id=customer_id,
            shopify_request_id=shopify_request_id,
            status="completed",
            received_at=now,
            completed_at=now,
            result=result,
        )
        .returning(requests.c.id)
    )
    return int(inserted.scalar_one())


async def erase_shop(session: AsyncSession, shop_id: int, *, keep_delivery_id: int | None) -> None:
    """``shop/redact``: every row of the shop goes, except the delivery being applied."""
    for table in shop_tables():
        await session.execute(sa.delete(table).where(table.c.shop_id == shop_id))
    condition = deliveries.c.shop_id == shop_id
    if keep_delivery_id is not None:
        condition = sa.and_(condition, deliveries.c.id != keep_delivery_id)
    await session.execute(sa.delete(deliveries).where(condition))
    await session.execute(
        sa.update(shops)
        .where(shops.c.id == shop_id)
        .values(
            settings={},
            sync_state={},
            name=None,
            access_token_enc=None,
            refresh_token_enc=None,
            token_expires_at=None,
            refresh_token_expires_at=None,
            last_synced_at=None,
        )
    )


def _contains(dialect: str, needle: bytes) -> Any:
    if dialect == "postgresql":
        return sa.func.position(sa.literal(needle, sa.LargeBinary()).op("IN")(deliveries.c.body)) > 0
    return sa.func.instr(deliveries.c.body, sa.literal(needle, sa.LargeBinary())) > 0


async def redact_customer(
    session: AsyncSession,
    shop_id: int,
    customer_id: int,
    *,
    order_ids: Iterable[int],
    email: str | None,
    phone: str | None,
) -> int:
    """``customers/redact``. Returns how many inbox bodies were redacted.

    The customer and the orders are marked redacted for good: a delivery that arrives later for
    them is stored without the personal data or the link (``orders`` upserts read the marks), and
    its inbox body is redacted when it is applied (:func:`redact_later_bodies`). So the final
    state is the same whether the redaction arrived first or last (docs/architecture.md).
    """
    await tombstones.bury(session, shop_id, tombstones.CUSTOMER, customer_id)
    await tombstones.bury(session, shop_id, tombstones.REDACTED_CUSTOMER, customer_id)
    await session.execute(
        sa.delete(customers).where(customers.c.shop_id == shop_id, customers.c.id == customer_id)
    )
    listed = sorted(set(order_ids))
    their_orders = sa.or_(orders.c.customer_id == customer_id, orders.c.id.in_(listed))
    order_rows = (
        await session.scalars(sa.select(orders.c.id).where(orders.c.shop_id == shop_id, their_orders))
    ).all()
    await tombstones.bury(session, shop_id, tombstones.REDACTED_ORDER, *order_rows, *listed)
    await session.execute(
        sa.update(orders)
        .where(orders.c.shop_id == shop_id, their_orders)
        .values(customer_id=None, email=None, phone=None, shipping_address=None, billing_address=None)
    )
    await writeback.drop_for_customer(session, shop_id, customer_id, [*order_rows, *listed])
    for table in (customer_stats, tier_changes):
        await session.execute(
            sa.delete(table).where(table.c.shop_id == shop_id, table.c.customer_id == customer_id)
        )
    await session.execute(
        sa.update(requests)
        .where(requests.c.shop_id == shop_id, requests.c.customer_id == customer_id)
        .values(result=None)
    )
    needles = {str(customer_id).encode()} | {str(i).encode() for i in set(order_rows) | set(listed)}
    for text in (email, phone):
        if text:
            needles.add(text.encode())
            needles.add(text.encode("unicode_escape"))
    dialect = session.get_bind().dialect.name
    # Pending deliveries are left to apply: they are stored without the personal data, like any
    # that arrives later, and their bodies are redacted as they are applied.
    mentions = sa.and_(
        deliveries.c.shop_id == shop_id,
        deliveries.c.status != DeliveryStatus.PENDING,
        sa.or_(*(_contains(dialect, n) for n in needles)),
    )
    result = await session.execute(sa.update(deliveries).where(mentions).values(body=REDACTED_BODY))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def redact_later_bodies(
    session: AsyncSession, mentions: Iterable[tuple[int, int, frozenset[int], frozenset[int]]]
) -> int:
    """Redact the inbox bodies of applied deliveries that carry data of a customer or an order
    redacted before they arrived. ``mentions``: (delivery id, shop id, customer ids, order ids).
    Returns how many bodies were redacted."""
    by_shop: dict[int, list[tuple[int, frozenset[int], frozenset[int]]]] = {}
    for delivery_id, shop_id, customer_ids, order_ids in mentions:
        if customer_ids or order_ids:
            by_shop.setdefault(shop_id, []).append((delivery_id, customer_ids, order_ids))
    hit: list[int] = []
    for shop_id, items in by_shop.items():
        customers_gone = await tombstones.buried(
            session, shop_id, tombstones.REDACTED_CUSTOMER, (c for _, cs, _ in items for c in cs)
        )
        orders_gone = await tombstones.buried(
            session, shop_id, tombstones.REDACTED_ORDER, (o for _, _, os in items for o in os)
        )
        hit += [d for d, cs, os in items if cs & customers_gone or os & orders_gone]
    if hit:
        await session.execute(
            sa.update(deliveries).where(deliveries.c.id.in_(hit)).values(body=REDACTED_BODY)
        )
    return len(hit)


async def export_customer(
    session: AsyncSession, shop_id: int, customer_id: int, *, order_ids: Iterable[int]
) -> dict[str, Any]:
    """``customers/data_request``: what tierline holds about a customer, as JSON for the merchant."""
    customer = (
        await session.execute(
            sa.select(customers).where(customers.c.shop_id == shop_id, customers.c.id == customer_id)
        )
    ).first()
    listed = sorted(set(order_ids))
    order_rows = (
        await session.execute(
            sa.select(orders)
            .where(
                orders.c.shop_id == shop_id,
                sa.or_(orders.c.customer_id == customer_id, orders.c.id.in_(listed)),
            )
            .order_by(orders.c.created_at, orders.c.id)
        )
    ).all()
    ids = [int(r.id) for r in order_rows]
    lines = (
        await session.execute(
            sa.select(order_lines)
            .where(order_lines.c.shop_id == shop_id, order_lines.c.order_id.in_(ids))
            .order_by(order_lines.c.order_id, order_lines.c.id)
        )
    ).all()
    figures = (
        await session.execute(
            sa.select(customer_stats).where(
                customer_stats.c.shop_id == shop_id, customer_stats.c.customer_id == customer_id
            )
        )
    ).first()
    history = (
        await session.execute(
            sa.select(tier_changes)
            .where(tier_changes.c.shop_id == shop_id, tier_changes.c.customer_id == customer_id)
            .order_by(tier_changes.c.id)
        )
    ).all()
    lines_by_order: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        lines_by_order.setdefault(int(line.order_id), []).append(
            _plain(line._mapping, skip={"shop_id", "order_id"})
        )
    return {
        "customer": _plain(customer._mapping, skip={"shop_id", "version_rank", "version_at"})
        if customer
        else None,
        "orders": [
            _plain(row._mapping, skip={"shop_id", "rto_tag_log", "gateway_key"})
            | {"lineItems": lines_by_order.get(int(row.id), [])}
            for row in order_rows
        ],
        "figures": _plain(figures._mapping, skip={"shop_id"}) if figures else None,
        "tierHistory": [_plain(h._mapping, skip={"shop_id", "id"}) for h in history],
    }


def _plain(mapping: Any, *, skip: set[str]) -> dict[str, Any]:
    """A row as JSON-ready values: ids and money as strings, times ISO 8601."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if key in skip:
            continue
        if hasattr(value, "isoformat"):
            value = value.isoformat().replace("+00:00", "Z")
        elif isinstance(value, int) and not isinstance(value, bool) and (key == "id" or key.endswith("_id")):
            value = str(value)
        elif value is not None and type(value).__name__ == "Decimal":
            value = f"{value:.2f}"
        out[key] = value
    return out


async def get_request(session: AsyncSession, shop_id: int, request_id: int) -> Any:
    return (
        await session.execute(
            sa.select(requests).where(requests.c.shop_id == shop_id, requests.c.id == request_id)
        )
    ).first()


async def list_requests(session: AsyncSession, shop_id: int, *, limit: int) -> list[Any]:
    rows = await session.execute(
        sa.select(requests).where(requests.c.shop_id == shop_id).order_by(requests.c.id.desc()).limit(limit)
    )
    return list(rows.all())
