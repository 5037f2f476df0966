"""Fulfillments and their events: stored as facts, whatever order they arrive in (SPEC §4.2)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_insert, dialect_of, insert_ignore
from service.domain.records import FulfillmentEventSnapshot, FulfillmentSnapshot
from service.models import Fulfillment, FulfillmentEvent

fulfillments = Fulfillment.__table__  # type: ignore[attr-defined]
fulfillment_events = FulfillmentEvent.__table__  # type: ignore[attr-defined]

_COLUMNS = (
    "order_id",
    "status",
    "shipment_status",
    "tracking_company",
    "tracking_number",
    "created_at",
    "updated_at",
)


async def upsert_fulfillment(session: AsyncSession, shop_id: int, snap: FulfillmentSnapshot) -> bool:
    """Store a fulfillment unless the stored one is newer. True when written."""
    values = {
        "shop_id": shop_id,
        "id": snap.id,
        "order_id": snap.order_id,
        "status": snap.status,
        "shipment_status": snap.shipment_status,
        "tracking_company": snap.tracking_company,
        "tracking_number": snap.tracking_number,
        "created_at": snap.created_at,
        "updated_at": snap.updated_at,
    }
    stmt = dialect_insert(dialect_of(session), fulfillments).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["shop_id", "id"],
        set_={k: stmt.excluded[k] for k in _COLUMNS},
        where=sa.or_(
            fulfillments.c.updated_at.is_(None), stmt.excluded.updated_at >= fulfillments.c.updated_at
        ),
    ).returning(fulfillments.c.id)
    return (await session.execute(stmt)).first() is not None


async def add_event(session: AsyncSession, shop_id: int, snap: FulfillmentEventSnapshot) -> bool:
    """Store a carrier event once (events are immutable). True when new."""
    stmt = (
        insert_ignore(dialect_of(session), fulfillment_events, ["shop_id", "id"])
        .values(
            shop_id=shop_id,
            id=snap.id,
            fulfillment_id=snap.fulfillment_id,
            order_id=snap.order_id,
            status=snap.status,
            happened_at=snap.happened_at,
            created_at=snap.created_at,
        )
        .returning(fulfillment_events.c.id)
    )
    return (await session.execute(stmt)).first() is not None
