"""Deleted resources: a delete leaves a tombstone that later deliveries cannot undo."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_of, insert_ignore
from service.models import Tombstone
from service.types import utc_now

tombstones = Tombstone.__table__  # type: ignore[attr-defined]

CUSTOMER = "customer"
ORDER = "order"
#: A customer, and the orders, redacted by ``customers/redact``: whatever arrives later for them is
#: stored without their personal data or the link to the customer (docs/shopify-app.md).
REDACTED_CUSTOMER = "redacted_customer"
REDACTED_ORDER = "redacted_order"


def exists_clause(shop_id: Any, resource: str, resource_id: Any) -> Any:
    """SQL: a tombstone exists for this resource (for use inside other statements)."""
    return (
        sa.select(sa.literal(1))
        .where(
            tombstones.c.shop_id == shop_id,
            tombstones.c.resource == resource,
            tombstones.c.resource_id == resource_id,
        )
        .exists()
    )


async def bury(session: AsyncSession, shop_id: int, resource: str, *resource_ids: int) -> None:
    if not resource_ids:
        return
    now = utc_now()
    await session.execute(
        insert_ignore(dialect_of(session), tombstones, ["shop_id", "resource", "resource_id"]),
        [
            {"shop_id": shop_id, "resource": resource, "resource_id": rid, "deleted_at": now}
            for rid in sorted(set(resource_ids))
        ],
    )


async def buried(session: AsyncSession, shop_id: int, resource: str, resource_ids: Iterable[int]) -> set[int]:
    """Which of these resources have a tombstone of this kind."""
    ids = sorted(set(resource_ids))
    if not ids:
        return set()
    found = await session.scalars(
        sa.select(tombstones.c.resource_id).where(
            tombstones.c.shop_id == shop_id,
            tombstones.c.resource == resource,
            tombstones.c.resource_id.in_(ids),
        )
    )
    return {int(i) for i in found}
