"""Inbox helpers for webhook tests: enqueue deliveries without HTTP, drain them, read tables back.

Deliveries go into ``webhook_deliveries`` exactly as intake stores them (``inbox.store_delivery``),
and the real :class:`InboxWorker` applies them. Reads return plain dicts so that tests compare
values, not ORM objects. Every read is scoped to one shop domain.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import SQLModel

from service.config import Settings
from service.db import session_scope
from service.domain import inbox
from service.domain.shops import get_or_create_shop_id
from tests.support.payloads import BASE_TIME, SHOP
from webhooks.handlers import build_router
from webhooks.router import TopicRouter
from webhooks.worker import InboxWorker

Row = dict[str, Any]
Sessionmaker = async_sessionmaker[AsyncSession]

SHOPS = SQLModel.metadata.tables["shops"]
CUSTOMERS = SQLModel.metadata.tables["customers"]
ORDERS = SQLModel.metadata.tables["orders"]
ORDER_LINES = SQLModel.metadata.tables["order_lines"]
TOMBSTONES = SQLModel.metadata.tables["tombstones"]
DELIVERIES = SQLModel.metadata.tables["webhook_deliveries"]


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery to put in the inbox: a topic and the raw body as Shopify would send it."""

    topic: str
    body: bytes
    webhook_id: str | None = None
    triggered_at: datetime | None = None

    @classmethod
    def of(cls, topic: str, payload: Any, **kwargs: Any) -> Delivery:
        return cls(topic, encode(payload), **kwargs)


async def enqueue_many(
    sessionmaker: Sessionmaker, deliveries: Sequence[Delivery], *, shop: str = SHOP
) -> list[int]:
    """Store deliveries in one transaction, in order; the inbox row id of each (a duplicate
    webhook id stores nothing and maps to the row that already carries it)."""
    webhook_ids = [delivery.webhook_id or str(uuid.uuid4()) for delivery in deliveries]
    async with session_scope(sessionmaker) as session:
        shop_id = await get_or_create_shop_id(session, shop)
        for delivery, webhook_id in zip(deliveries, webhook_ids, strict=True):
            await inbox.store_delivery(
                session,
                inbox.NewDelivery(
                    webhook_id=webhook_id,
                    event_id=str(uuid.uuid4()),
                    topic=delivery.topic,
                    shop_id=shop_id,
                    shop_domain=shop,
                    api_version="2026-04",
                    triggered_at=delivery.triggered_at or BASE_TIME,
                    body=delivery.body,
                ),
            )
        stored = await session.execute(
            sa.select(DELIVERIES.c.webhook_id, DELIVERIES.c.id).where(
                DELIVERIES.c.webhook_id.in_(webhook_ids)
            )
        )
        row_id_of = {webhook_id: int(row_id) for webhook_id, row_id in stored.all()}
    return [row_id_of[webhook_id] for webhook_id in webhook_ids]


async def enqueue(
    sessionmaker: Sessionmaker,
    topic: str,
    payload: Any = None,
    *,
    body: bytes | None = None,
    shop: str = SHOP,
    webhook_id: str | None = None,
) -> int:
    """Store one delivery (``payload`` as JSON, or the raw ``body``); its inbox row id."""
    raw = body if body is not None else encode(payload)
    (row_id,) = await enqueue_many(sessionmaker, [Delivery(topic, raw, webhook_id)], shop=shop)
    return row_id


def make_worker(
    sessionmaker: Sessionmaker, settings: Settings, router: TopicRouter | None = None
) -> InboxWorker:
    return InboxWorker(sessionmaker, router if router is not None else build_router(), settings)


async def drain(sessionmaker: Sessionmaker, settings: Settings, router: TopicRouter | None = None) -> int:
    """Apply every due delivery with the real worker; how many were settled or retried."""
    return await make_worker(sessionmaker, settings, router).drain()


async def apply(
    sessionmaker: Sessionmaker,
    settings: Settings,
    deliveries: Sequence[Delivery],
    *,
    shop: str = SHOP,
) -> list[int]:
    """Enqueue in order, then drain: the worker applies them in that order (it claims by id)."""
    row_ids = await enqueue_many(sessionmaker, deliveries, shop=shop)
    await drain(sessionmaker, settings)
    return row_ids


# --- reading back -----------------------------------------------------------------------------


def _shop_id_of(shop: str) -> Any:
    return sa.select(SHOPS.c.id).where(SHOPS.c.domain == shop).scalar_subquery()


async def _rows(sessionmaker: Sessionmaker, stmt: sa.Select[Any]) -> list[Row]:
    async with sessionmaker() as session:
        return [dict(row._mapping) for row in (await session.execute(stmt)).all()]


async def shop_id(sessionmaker: Sessionmaker, shop: str = SHOP) -> int:
    async with session_scope(sessionmaker) as session:
        return await get_or_create_shop_id(session, shop)


async def customers(sessionmaker: Sessionmaker, *, shop: str = SHOP) -> dict[int, Row]:
    stmt = sa.select(CUSTOMERS).where(CUSTOMERS.c.shop_id == _shop_id_of(shop))
    return {row["id"]: row for row in await _rows(sessionmaker, stmt)}


async def orders(sessionmaker: Sessionmaker, *, shop: str = SHOP) -> dict[int, Row]:
    stmt = sa.select(ORDERS).where(ORDERS.c.shop_id == _shop_id_of(shop))
    return {row["id"]: row for row in await _rows(sessionmaker, stmt)}


async def order_lines(sessionmaker: Sessionmaker, *, shop: str = SHOP) -> dict[int, dict[int, Row]]:
    """Order id → line id → line."""
    stmt = sa.select(ORDER_LINES).where(ORDER_LINES.c.shop_id == _shop_id_of(shop))
    lines: dict[int, dict[int, Row]] = {}
    for row in await _rows(sessionmaker, stmt):
        lines.setdefault(row["order_id"], {})[row["id"]] = row
    return lines


async def tombstones(sessionmaker: Sessionmaker, *, shop: str = SHOP) -> set[tuple[str, int]]:
    stmt = sa.select(TOMBSTONES.c.resource, TOMBSTONES.c.resource_id).where(
        TOMBSTONES.c.shop_id == _shop_id_of(shop)
    )
    return {(row["resource"], row["resource_id"]) for row in await _rows(sessionmaker, stmt)}


async def deliveries(sessionmaker: Sessionmaker, *, shop: str = SHOP) -> list[Row]:
    stmt = sa.select(DELIVERIES).where(DELIVERIES.c.shop_domain == shop).order_by(DELIVERIES.c.id)
    return await _rows(sessionmaker, stmt)


async def delivery(sessionmaker: Sessionmaker, row_id: int) -> Row:
    (row,) = await _rows(sessionmaker, sa.select(DELIVERIES).where(DELIVERIES.c.id == row_id))
    return row


async def update_delivery(sessionmaker: Sessionmaker, row_id: int, **values: Any) -> None:
    """Force inbox columns (e.g. ``next_attempt_at`` in the past) between worker runs."""
    async with session_scope(sessionmaker) as session:
        await session.execute(sa.update(DELIVERIES).where(DELIVERIES.c.id == row_id).values(**values))


async def set_shop_settings(sessionmaker: Sessionmaker, stored: dict[str, Any], *, shop: str = SHOP) -> None:
    """Write the shop's settings JSON as ``PUT /api/settings`` would store it."""
    async with session_scope(sessionmaker) as session:
        shop_row_id = await get_or_create_shop_id(session, shop)
        await session.execute(sa.update(SHOPS).where(SHOPS.c.id == shop_row_id).values(settings=stored))


# --- figures, tiers and the read API (service tests) -------------------------------------------

CUSTOMER_STATS = SQLModel.metadata.tables["customer_stats"]
TIER_CHANGES = SQLModel.metadata.tables["tier_changes"]
FULFILLMENTS = SQLModel.metadata.tables["fulfillments"]
RETURNS = SQLModel.metadata.tables["returns"]
REFUNDS = SQLModel.metadata.tables["refunds"]


async def customer_stats(sessionmaker: Sessionmaker, *, shop: str = SHOP) -> dict[int, Row]:
    """Customer id → its ``customer_stats`` row (stored counters and tier of record)."""
    stmt = sa.select(CUSTOMER_STATS).where(CUSTOMER_STATS.c.shop_id == _shop_id_of(shop))
    return {row["customer_id"]: row for row in await _rows(sessionmaker, stmt)}


async def tier_changes(
    sessionmaker: Sessionmaker, *, shop: str = SHOP, customer_id: int | None = None
) -> list[Row]:
    """The tier-of-record history, oldest first."""
    stmt = sa.select(TIER_CHANGES).where(TIER_CHANGES.c.shop_id == _shop_id_of(shop))
    if customer_id is not None:
        stmt = stmt.where(TIER_CHANGES.c.customer_id == customer_id)
    return await _rows(
        sessionmaker, stmt.order_by(TIER_CHANGES.c.at, TIER_CHANGES.c.customer_id, TIER_CHANGES.c.id)
    )


async def refunds(sessionmaker: Sessionmaker, *, shop: str = SHOP) -> dict[int, Row]:
    stmt = sa.select(REFUNDS).where(REFUNDS.c.shop_id == _shop_id_of(shop))
    return {row["id"]: row for row in await _rows(sessionmaker, stmt)}


async def api_headers(sessionmaker: Sessionmaker, shop: str = SHOP) -> dict[str, str]:
    """``Authorization`` for a new API key of ``shop``, created in a committed transaction."""
    from service.domain.api_keys import create_api_key

    async with session_scope(sessionmaker) as session:
        key = await create_api_key(session, shop)
    return {"Authorization": f"Bearer {key}"}
