"""App installation state of a shop: tokens (encrypted at rest), install and uninstall."""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.crypto import TokenCipher
from service.db import dialect_of, insert_ignore
from service.models import OAuthStateUse, Shop
from service.types import utc_now
from shopify_client import AccessToken

shops = Shop.__table__  # type: ignore[attr-defined]
state_uses = OAuthStateUse.__table__  # type: ignore[attr-defined]


async def use_state_nonce(session: AsyncSession, nonce: str, expires_at: datetime) -> bool:
    """Record that an OAuth callback used ``nonce``: True the first time, False ever after.

    Rows are kept until ``expires_at`` (when the state cookie carrying the nonce expires, after
    which it is refused anyway); expired ones are deleted here, so the table stays small.
    """
    await session.execute(sa.delete(state_uses).where(state_uses.c.expires_at < utc_now()))
    statement = (
        insert_ignore(dialect_of(session), state_uses, ["nonce_hash"])
        .values(nonce_hash=hashlib.sha256(nonce.encode()).hexdigest(), expires_at=expires_at)
        .returning(state_uses.c.nonce_hash)
    )
    return (await session.execute(statement)).first() is not None


async def store_token(session: AsyncSession, shop_id: int, token: AccessToken, cipher: TokenCipher) -> None:
    """Keep a new offline token (and refresh token) and mark the shop installed.

    ``installed_at`` is the start of the current installation: a new token for a shop that is
    already installed (the embedded app exchanging a session token on each load) keeps it.
    """
    still_installed = sa.and_(shops.c.installed_at.is_not(None), shops.c.uninstalled_at.is_(None))
    await session.execute(
        sa.update(shops)
        .where(shops.c.id == shop_id)
        .values(
            access_token_enc=cipher.encrypt(token.access_token),
            refresh_token_enc=cipher.encrypt(token.refresh_token) if token.refresh_token else None,
            token_expires_at=token.expires_at,
            refresh_token_expires_at=token.refresh_token_expires_at,
            scopes=token.scope,
            installed_at=sa.case((still_installed, shops.c.installed_at), else_=utc_now()),
            uninstalled_at=None,
        )
    )


async def store_refreshed_token(
    session: AsyncSession, shop_id: int, token: AccessToken, cipher: TokenCipher
) -> bool:
    """Keep a refreshed token (Shopify rotates the refresh token too) without touching the
    install times. Nothing is written for an uninstalled shop; returns whether it was stored."""
    result = await session.execute(
        sa.update(shops)
        .where(shops.c.id == shop_id, shops.c.uninstalled_at.is_(None))
        .values(
            access_token_enc=cipher.encrypt(token.access_token),
            # An answer without a new refresh token leaves the current one in place.
            refresh_token_enc=(
                cipher.encrypt(token.refresh_token) if token.refresh_token else shops.c.refresh_token_enc
            ),
            token_expires_at=token.expires_at,
            refresh_token_expires_at=(
                token.refresh_token_expires_at if token.refresh_token else shops.c.refresh_token_expires_at
            ),
            scopes=token.scope or shops.c.scopes,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def load_token(session: AsyncSession, shop_id: int, cipher: TokenCipher) -> AccessToken | None:
    """The shop's stored offline token, decrypted; None when not installed."""
    row = (
        await session.execute(
            sa.select(
                shops.c.access_token_enc,
                shops.c.refresh_token_enc,
                shops.c.token_expires_at,
                shops.c.refresh_token_expires_at,
                shops.c.scopes,
                shops.c.uninstalled_at,
            ).where(shops.c.id == shop_id)
        )
    ).first()
    if row is None or row.access_token_enc is None or row.uninstalled_at is not None:
        return None
    return AccessToken(
        access_token=cipher.decrypt(row.access_token_enc),
        scope=row.scopes or "",
        expires_at=row.token_expires_at,
        refresh_token=cipher.decrypt(row.refresh_token_enc) if row.refresh_token_enc else None,
        refresh_token_expires_at=row.refresh_token_expires_at,
    )


async def mark_uninstalled(session: AsyncSession, shop_id: int) -> None:
    """``app/uninstalled``: drop the tokens; API keys and session tokens stop working."""
    await session.execute(
        sa.update(shops)
        .where(shops.c.id == shop_id)
        .values(
            uninstalled_at=utc_now(),
            access_token_enc=None,
            refresh_token_enc=None,
            token_expires_at=None,
            refresh_token_expires_at=None,
        )
    )
