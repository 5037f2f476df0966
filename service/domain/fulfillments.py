"""Fulfillments and their events: stored as facts, whatever order they arrive in (docs/domain.md)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

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


@functools.cache
def _upsert_statement(dialect: str, *, returning: bool) -> Any:
    """Insert a fulfillment, or overwrite it unless the stored one is newer (built once)."""
    values = {c: sa.bindparam(c, type_=fulfillments.c[c].type) for c in ("shop_id", "id", *_COLUMNS)}
    stmt = dialect_insert(dialect, fulfillments).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["shop_id", "id"],
        set_={k: stmt.excluded[k] for k in _COLUMNS},
        where=sa.or_(
            fulfillments.c.updated_at.is_(None), stmt.excluded.updated_at >= fulfillments.c.updated_at
        ),
    )
    return stmt.returning(fulfillments.c.id) if returning else stmt


@functools.cache
def _event_statement(dialect: str, *, returning: bool) -> Any:
    """Insert a carrier event unless known (events are immutable; built once)."""
    columns = ("shop_id", "id", "fulfillment_id", "order_id", "status", "happened_at", "created_at")
    values = {c: sa.bindparam(c, type_=fulfillment_events.c[c].type) for c in columns}
    stmt = insert_ignore(dialect, fulfillment_events, ["shop_id", "id"]).values(values)
    return stmt.returning(fulfillment_events.c.id) if returning else stmt


def _fulfillment_values(shop_id: int, snap: FulfillmentSnapshot) -> dict[str, Any]:
    return {
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


def _event_values(shop_id: int, snap: FulfillmentEventSnapshot) -> dict[str, Any]:
    return {
        "shop_id": shop_id,
        "id": snap.id,
        "fulfillment_id": snap.fulfillment_id,
        "order_id": snap.order_id,
        "status": snap.status,
        "happened_at": snap.happened_at,
        "created_at": snap.created_at,
    }


async def upsert_fulfillment(session: AsyncSession, shop_id: int, snap: FulfillmentSnapshot) -> bool:
    """Store a fulfillment unless the stored one is newer. True when written."""
    stmt = _upsert_statement(dialect_of(session), returning=True)
    return (await session.execute(stmt, _fulfillment_values(shop_id, snap))).first() is not None


async def add_event(session: AsyncSession, shop_id: int, snap: FulfillmentEventSnapshot) -> bool:
    """Store a carrier event once (events are immutable). True when new."""
    stmt = _event_statement(dialect_of(session), returning=True)
    return (await session.execute(stmt, _event_values(shop_id, snap))).first() is not None


async def store_facts(
    session: AsyncSession,
    shop_id: int,
    fulfillment_snaps: Sequence[FulfillmentSnapshot],
    event_snaps: Sequence[FulfillmentEventSnapshot],
) -> None:
    """:func:`upsert_fulfillment` and :func:`add_event` for many, each as one ``executemany`` in
    list order (whether each was written is not reported)."""
    dialect = dialect_of(session)
    if fulfillment_snaps:
        await session.execute(
            _upsert_statement(dialect, returning=False),
            [_fulfillment_values(shop_id, snap) for snap in fulfillment_snaps],
        )
    if event_snaps:
        await session.execute(
            _event_statement(dialect, returning=False), [_event_values(shop_id, snap) for snap in event_snaps]
        )
