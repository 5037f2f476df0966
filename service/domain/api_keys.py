"""Per-shop API keys: random, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.shops import get_or_create_shop_id
from service.models import ApiKey, Shop
from service.types import utc_now

api_keys = ApiKey.__table__  # type: ignore[attr-defined]
shops = Shop.__table__  # type: ignore[attr-defined]

KEY_PREFIX = "tl_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthenticatedShop:
    id: int
    domain: str


async def create_api_key(session: AsyncSession, shop_domain: str) -> str:
    """A new key for the shop (created if never seen). The plain key is returned only here."""
    shop_id = await get_or_create_shop_id(session, shop_domain)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    await session.execute(
        sa.insert(api_keys).values(
            shop_id=shop_id, key_hash=hash_key(key), prefix=key[:10], created_at=utc_now()
        )
    )
    return key


async def shop_for_api_key(session: AsyncSession, key: str) -> AuthenticatedShop | None:
    """The installed shop a live key belongs to; None for unknown, revoked or uninstalled."""
    row = (
        await session.execute(
            sa.select(shops.c.id, shops.c.domain)
            .join(api_keys, api_keys.c.shop_id == shops.c.id)
            .where(
                api_keys.c.key_hash == hash_key(key),
                api_keys.c.revoked_at.is_(None),
                shops.c.uninstalled_at.is_(None),
            )
        )
    ).first()
    return None if row is None else AuthenticatedShop(id=int(row.id), domain=str(row.domain))


async def shop_for_session_token(session: AsyncSession, domain: str) -> AuthenticatedShop | None:
    """The shop named by a verified session token (created if never seen); None if uninstalled."""
    shop_id = await get_or_create_shop_id(session, domain)
    uninstalled = await session.scalar(sa.select(shops.c.uninstalled_at).where(shops.c.id == shop_id))
    return None if uninstalled is not None else AuthenticatedShop(id=shop_id, domain=domain)
