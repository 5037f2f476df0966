"""Per-shop API keys: random, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.settings import ShopSettings
from service.domain.shops import get_or_create_shop_id
from service.models import ApiKey, Shop
from service.reads import ReadSource, fetch
from service.types import utc_now

api_keys = ApiKey.__table__  # type: ignore[attr-defined]
shops = Shop.__table__  # type: ignore[attr-defined]

KEY_PREFIX = "tl_"
#: ``last_used_at`` is written at most this often per key: the first use of a key in a minute
#: costs one small write, the others none.
LAST_USED_GRANULARITY = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthenticatedShop:
    id: int
    domain: str
    #: The shop's settings, read in the same statement as the credentials: a request reads them
    #: from here rather than asking the database again.
    settings: ShopSettings
    #: The API key that authenticated the request (None for a session token) and when it was
    #: last recorded as used.
    key_id: int | None = None
    key_last_used_at: datetime | None = None

    def key_use_due(self, now: datetime) -> bool:
        """Whether this request's key should have its ``last_used_at`` written."""
        if self.key_id is None:
            return False
        return self.key_last_used_at is None or now - self.key_last_used_at >= LAST_USED_GRANULARITY


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What ``tierline api-key list`` shows: never the key, only its first characters."""

    id: int
    shop: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


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


#: Built once: every authenticated request sends it, and building a statement (and its cache
#: key) per request cost a fifth of a millisecond (docs/benchmarks.md).
_SHOP_FOR_KEY = (
    sa.select(
        shops.c.id,
        shops.c.domain,
        shops.c.settings,
        api_keys.c.id.label("key_id"),
        api_keys.c.last_used_at,
    )
    .join(api_keys, api_keys.c.shop_id == shops.c.id)
    .where(
        api_keys.c.key_hash == sa.bindparam("key_hash"),
        api_keys.c.revoked_at.is_(None),
        shops.c.uninstalled_at.is_(None),
    )
)


async def shop_for_api_key(source: ReadSource, key: str) -> AuthenticatedShop | None:
    """The installed shop a live key belongs to; None for unknown, revoked or uninstalled."""
    rows = await fetch(source, _SHOP_FOR_KEY, {"key_hash": hash_key(key)})
    if not rows:
        return None
    shop_id, domain, settings, key_id, last_used_at = rows[0]
    return AuthenticatedShop(
        id=int(shop_id),
        domain=str(domain),
        settings=ShopSettings.from_stored(settings if isinstance(settings, dict) else None),
        key_id=int(key_id),
        key_last_used_at=last_used_at,
    )


async def record_key_use(session: AsyncSession, key_id: int, now: datetime) -> None:
    """Set a key's ``last_used_at`` (unless another request did within the last minute)."""
    await session.execute(
        sa.update(api_keys)
        .where(
            api_keys.c.id == key_id,
            sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at <= now - LAST_USED_GRANULARITY),
        )
        .values(last_used_at=now)
    )


async def list_api_keys(
    session: AsyncSession, shop_domain: str | None = None, *, key_id: int | None = None
) -> list[ApiKeyInfo]:
    """Every key (of one shop, or of every shop), oldest first, revoked ones included."""
    query = (
        sa.select(
            api_keys.c.id,
            shops.c.domain,
            api_keys.c.prefix,
            api_keys.c.created_at,
            api_keys.c.last_used_at,
            api_keys.c.revoked_at,
        )
        .join(shops, shops.c.id == api_keys.c.shop_id)
        .order_by(api_keys.c.id)
    )
    if shop_domain is not None:
        query = query.where(shops.c.domain == shop_domain)
    if key_id is not None:
        query = query.where(api_keys.c.id == key_id)
    return [
        ApiKeyInfo(
            id=int(r.id),
            shop=str(r.domain),
            prefix=str(r.prefix),
            created_at=r.created_at,
            last_used_at=r.last_used_at,
            revoked_at=r.revoked_at,
        )
        for r in (await session.execute(query)).all()
    ]


async def revoke_api_key(session: AsyncSession, key_id: int) -> tuple[ApiKeyInfo | None, bool]:
    """Revoke a key at once (every later request with it is 401).

    Returns the key as it now stands (None when there is no such key) and whether this call
    revoked it (False when it already was).
    """
    revoked = await session.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=utc_now())
    )
    found = await list_api_keys(session, key_id=key_id)
    return (found[0] if found else None), bool(revoked.rowcount)  # type: ignore[attr-defined]


async def shop_for_session_token(session: AsyncSession, domain: str) -> AuthenticatedShop | None:
    """The shop named by a verified session token (created if never seen); None if uninstalled."""
    shop_id = await get_or_create_shop_id(session, domain)
    query = sa.select(shops.c.uninstalled_at, shops.c.settings).where(shops.c.id == shop_id)
    row = (await session.execute(query)).one()
    if row.uninstalled_at is not None:
        return None
    stored = row.settings if isinstance(row.settings, dict) else None
    return AuthenticatedShop(id=shop_id, domain=domain, settings=ShopSettings.from_stored(stored))
