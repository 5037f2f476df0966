"""Shops: created on first sight by intake; settings and lifecycle."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class ShopProfile:
    """What the merchant pages need to know about a shop: who it is and how to show figures."""

    id: int
    domain: str
    currency: str | None
    iana_timezone: str | None
    uninstalled: bool


async def find_shop(session: AsyncSession, domain: str) -> ShopProfile | None:
    """The shop with this domain (read only: a shop not seen yet is None, not created)."""
    row = (
        await session.execute(
            sa.select(
                shops.c.id, shops.c.domain, shops.c.currency, shops.c.iana_timezone, shops.c.uninstalled_at
            ).where(shops.c.domain == domain)
        )
    ).first()
    if row is None:
        return None
    return ShopProfile(
        id=int(row.id),
        domain=str(row.domain),
        currency=row.currency,
        iana_timezone=row.iana_timezone,
        uninstalled=row.uninstalled_at is not None,
    )


async def set_details(session: AsyncSession, shop_id: int, *, currency: str, iana_timezone: str) -> None:
    """Remember how the shop shows money and time (from the Admin API, at install and sync)."""
    await session.execute(
        sa.update(shops).where(shops.c.id == shop_id).values(currency=currency, iana_timezone=iana_timezone)
    )
