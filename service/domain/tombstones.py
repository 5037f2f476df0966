"""Deleted resources: a delete leaves a tombstone that later deliveries cannot undo."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_of, insert_ignore
from service.models import Tombstone
from service.types import utc_now

tombstones = Tombstone.__table__  # type: ignore[attr-defined]

CUSTOMER = "customer"
ORDER = "order"


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


async def bury(session: AsyncSession, shop_id: int, resource: str, resource_id: int) -> None:
    await session.execute(
        insert_ignore(dialect_of(session), tombstones, ["shop_id", "resource", "resource_id"]).values(
            shop_id=shop_id, resource=resource, resource_id=resource_id, deleted_at=utc_now()
        )
    )
