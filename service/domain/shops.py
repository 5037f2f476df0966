"""Shops: created on first sight by intake; settings and lifecycle."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_of, insert_ignore
from service.models import Shop
from service.types import utc_now

shops = Shop.__table__  # type: ignore[attr-defined]


async def get_or_create_shop_id(session: AsyncSession, domain: str) -> int:
    """The id of the shop with this (already validated, lower-case) domain, creating the row."""
    found = await session.scalar(sa.select(shops.c.id).where(shops.c.domain == domain))
    if found is not None:
        return int(found)
    dialect = dialect_of(session)
    await session.execute(
        insert_ignore(dialect, shops, ["domain"]).values(
            domain=domain, settings={}, sync_state={}, created_at=utc_now()
        )
    )
    created = await session.scalar(sa.select(shops.c.id).where(shops.c.domain == domain))
    if created is None:  # pragma: no cover - inserted above or by a concurrent transaction
        raise RuntimeError(f"shop row for {domain} vanished")
    return int(created)


async def find_shop_id(session: AsyncSession, domain: str) -> int | None:
    found = await session.scalar(sa.select(shops.c.id).where(shops.c.domain == domain))
    return None if found is None else int(found)


async def all_shops(session: AsyncSession) -> list[tuple[int, str]]:
    rows = await session.execute(sa.select(shops.c.id, shops.c.domain).order_by(shops.c.id))
    return [(int(r.id), str(r.domain)) for r in rows]
