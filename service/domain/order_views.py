"""Orders as the order grid reads them: the order plus its customer's figures (docs/api.md)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import in_ids_read
from service.domain import keyset, stats
from service.domain.pagination import decode_cursor, encode_cursor
from service.domain.settings import ShopSettings
from service.domain.tracking import ALL_STATES
from service.errors import BadRequestError, UnprocessableError
from service.models import Order
from service.reads import ReadSource, fetch, source_dialect

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


_ORDER_FIELDS = tuple(column.name for column in ORDER_COLUMNS)


class EnrichedOrder(NamedTuple):
    """An order as the grid shows it, with its customer's figures (None without a customer).

    The API's ``OrderRead`` is read straight from it, field by field; the stored columns come
    first, in the order of ``ORDER_COLUMNS`` (checked below), so a row fills them by position.
    A named tuple rather than a frozen dataclass: as immutable, and built from a row's values
    several times faster (hundreds per enrich request, docs/benchmarks.md).
    """

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
    tags: list[str]
    test: bool
    customer_ltv: Decimal | None
    customer_order_count: int | None
    customer_rto_count: int | None
    customer_tier: str | None


if EnrichedOrder._fields[: len(_ORDER_FIELDS)] != _ORDER_FIELDS:
    raise RuntimeError("EnrichedOrder's first fields must be ORDER_COLUMNS, in order")
_TAGS_AT = _ORDER_FIELDS.index("tags")
_CUSTOMER_AT = _ORDER_FIELDS.index("customer_id")
_NO_CUSTOMER = (None, None, None, None)


def split_tags(tags: str) -> list[str]:
    """Shopify's comma-separated tags as a list, blanks left out."""
    return [t for t in (part.strip() for part in tags.split(",")) if t] if tags else []


def _enriched(row: Sequence[Any], figures: stats.Stats | None) -> EnrichedOrder:
    """An order row's columns (``ORDER_COLUMNS``, first) with its customer's figures."""
    values = list(row[: len(_ORDER_FIELDS)])
    values[_TAGS_AT] = split_tags(values[_TAGS_AT])
    values.extend(_NO_CUSTOMER if figures is None else figures)
    return EnrichedOrder._make(values)


async def enrich_rows(
    session: AsyncSession, shop_id: int, rows: Sequence[Any], settings: ShopSettings
) -> list[EnrichedOrder]:
    """Attach the customers' figures (one stats read for the whole page) to order rows."""
    customer_ids = [int(r.customer_id) for r in rows if r.customer_id is not None]
    figures = await stats.read(session, shop_id, customer_ids, settings) if customer_ids else {}
    return [
        _enriched(row, figures.get(int(row.customer_id)) if row.customer_id is not None else None)
        for row in rows
    ]


@functools.cache
def _enrich_statement(dialect: str) -> Any:
    """The orders and their customers' figures in one statement (one round trip, one result)."""
    return (
        sa.select(*ORDER_COLUMNS, *stats.JOINED_COLUMNS)
        .select_from(stats.joined(orders, orders.c.shop_id, orders.c.customer_id))
        .where(orders.c.shop_id == sa.bindparam("shop_id"), in_ids_read(dialect, orders.c.id, "ids"))
    )


_FIGURES_AT = len(ORDER_COLUMNS)


async def enriched_orders(
    source: ReadSource, shop_id: int, order_ids: Sequence[int], settings: ShopSettings
) -> list[EnrichedOrder]:
    """``POST /api/orders/enrich``: the orders asked for, in the order asked; unknown ids left out.

    An order's customer figures come from the same statement (``stats.joined``), with the rule of
    ``stats.read``: a customer without figures has zeros and the base tier.
    """
    wanted = list(dict.fromkeys(order_ids))
    if not wanted:
        return []
    statement = _enrich_statement(source_dialect(source))
    rows = await fetch(source, statement, {"shop_id": shop_id, "ids": wanted})
    thresholds = settings.tier_thresholds
    by_id: dict[int, EnrichedOrder] = {}
    for row in rows:
        values = list(row)
        values[_TAGS_AT] = split_tags(values[_TAGS_AT])
        if values[_CUSTOMER_AT] is None:
            values[_FIGURES_AT:] = _NO_CUSTOMER
        else:
            ltv, order_count, rto_count = values[_FIGURES_AT:]
            values[_FIGURES_AT:] = stats.from_joined(ltv, order_count, rto_count, thresholds)
        order = EnrichedOrder._make(values)
        by_id[order.id] = order
    return [by_id[i] for i in wanted if i in by_id]


# --- the order list (GET /api/orders) ----------------------------------------------------------

#: ``trackingStatus=none`` asks for orders without a tracking status.
NO_TRACKING_STATUS = "none"
PAYMENT_METHODS = ("cod", "prepaid")
_NEWEST_FIRST = keyset.KeysetOrder(orders.c.created_at, orders.c.id, descending=True, nullable=True)


def _tracking_filter(value: str | None) -> Any:
    if value is None:
        return None
    if value == NO_TRACKING_STATUS:
        return orders.c.tracking_status.is_(None)
    if value not in ALL_STATES:
        raise UnprocessableError(
            "unknown tracking status",
            errors=[{"field": "trackingStatus", "message": f"one of {', '.join(ALL_STATES)}, or none"}],
        )
    return orders.c.tracking_status == value


def _order_position(position: list[Any]) -> tuple[datetime | None, int]:
    if len(position) == 2:
        created, last_id = position
        if isinstance(last_id, int) and not isinstance(last_id, bool) and -(2**63) <= last_id < 2**63:
            if created is None:
                return None, last_id
            if isinstance(created, str):
                try:
                    moment = datetime.fromisoformat(created)
                except ValueError:
                    moment = None
                if moment is not None and moment.tzinfo is not None:
                    return moment, last_id
    raise BadRequestError("malformed cursor")


async def list_orders(
    session: AsyncSession,
    shop_id: int,
    settings: ShopSettings,
    *,
    customer_id: int | None = None,
    tracking_status: str | None = None,
    payment_method: str | None = None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[EnrichedOrder], str | None]:
    """``GET /api/orders``: newest first (``created_at``, then id, descending), keyset-paginated.

    Every order that is not deleted is listed, test orders included (each says ``test``).
    ``tracking_status`` is a tracking status or ``none`` (``422`` otherwise).
    """
    filters: dict[str, Any] = {
        "customerId": customer_id,
        "trackingStatus": tracking_status,
        "paymentMethod": payment_method,
    }
    status_condition = _tracking_filter(tracking_status)
    if payment_method is not None and payment_method not in PAYMENT_METHODS:
        raise UnprocessableError(
            "unknown payment method", errors=[{"field": "paymentMethod", "message": "cod or prepaid"}]
        )
    after = _order_position(decode_cursor(cursor, "orders", filters)) if cursor else None
    base = sa.select(*ORDER_COLUMNS).where(orders.c.shop_id == shop_id)
    if customer_id is not None:
        base = base.where(orders.c.customer_id == customer_id)
    if status_condition is not None:
        base = base.where(status_condition)
    if payment_method is not None:
        base = base.where(orders.c.payment_method == payment_method)
    page = keyset.page(base, _NEWEST_FIRST, after, limit)
    rows = (
        await session.execute(
            sa.select(*(page.c[column.name] for column in ORDER_COLUMNS)).order_by(
                *keyset.ordering(page, _NEWEST_FIRST)
            )
        )
    ).all()
    items = await enrich_rows(session, shop_id, rows[:limit], settings)
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        position = [last.created_at.isoformat() if last.created_at is not None else None, last.id]
        next_cursor = encode_cursor("orders", filters, position)
    return items, next_cursor
