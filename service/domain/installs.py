"""App installation state of a shop: tokens (encrypted at rest), install and uninstall, and
whether the stored token is still usable (else the next embedded load exchanges a new one)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.crypto import TokenCipher
from service.db import dialect_of, insert_ignore
from service.domain import jobs, writeback
from service.models import OAuthStateUse, Shop
from service.types import utc_now
from shopify_client import AccessToken, missing_scopes

#: A token this close to expiry counts as expired (the refresh margin of ``tierline sync``).
REFRESH_MARGIN = timedelta(minutes=5)

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
            token_exchange_until=None,
            token_error=None,
            token_error_at=None,
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
    """``app/uninstalled``: drop the tokens; API keys and session tokens stop working. The shop's
    sync job stops, and an unfinished backfill is forgotten: a reinstall backfills anew."""
    await session.execute(
        sa.update(shops)
        .where(shops.c.id == shop_id)
        .values(
            uninstalled_at=utc_now(),
            access_token_enc=None,
            refresh_token_enc=None,
            token_expires_at=None,
            refresh_token_expires_at=None,
            token_exchange_until=None,
            sync_state={},
        )
    )
    await jobs.cancel_for_shop(session, shop_id, "stopped: the app was uninstalled")
    await writeback.drop_unsent(session, shop_id)


async def forget_token(session: AsyncSession, shop_id: int, reason: str) -> None:
    """Shopify refuses the stored token (a revoked or expired refresh token): drop it without
    marking the shop uninstalled. The next embedded load exchanges a session token for a new one."""
    await session.execute(
        sa.update(shops)
        .where(shops.c.id == shop_id)
        .values(
            access_token_enc=None,
            refresh_token_enc=None,
            token_expires_at=None,
            refresh_token_expires_at=None,
            token_error=reason[:500],
            token_error_at=utc_now(),
        )
    )


@dataclass(frozen=True, slots=True)
class TokenStatus:
    """Whether a shop's stored offline token can be used, and if not, why.

    ``reason``: ``ok``, ``never`` (no token was ever stored), ``uninstalled``, ``forgotten``
    (Shopify refused it or its refresh), ``expired`` (refresh token expired), ``scopes`` (the
    grant no longer covers ``SCOPES``) or ``unreadable`` (encrypted under another key).
    """

    shop_id: int
    reason: str
    uninstalled: bool
    installed_before: bool
    error: str | None
    error_at: datetime | None
    exchange_until: datetime | None
    scopes: str | None

    @property
    def usable(self) -> bool:
        return self.reason == "ok"


async def token_status(
    session: AsyncSession, shop_id: int, *, required_scopes: str, cipher: TokenCipher, now: datetime
) -> TokenStatus:
    row = (
        await session.execute(
            sa.select(
                shops.c.access_token_enc,
                shops.c.refresh_token_enc,
                shops.c.token_expires_at,
                shops.c.refresh_token_expires_at,
                shops.c.scopes,
                shops.c.installed_at,
                shops.c.uninstalled_at,
                shops.c.token_error,
                shops.c.token_error_at,
                shops.c.token_exchange_until,
            ).where(shops.c.id == shop_id)
        )
    ).one()
    if row.uninstalled_at is not None:
        reason = "uninstalled"
    elif row.access_token_enc is None:
        reason = "forgotten" if row.installed_at is not None else "never"
    elif missing_scopes(row.scopes or "", required_scopes):
        reason = "scopes"
    elif (
        row.token_expires_at is not None
        and row.token_expires_at <= now + REFRESH_MARGIN
        and (
            row.refresh_token_enc is None
            or (row.refresh_token_expires_at is not None and row.refresh_token_expires_at <= now)
        )
    ):
        reason = "expired"
    else:
        try:
            cipher.decrypt(row.access_token_enc)
            reason = "ok"
        except ValueError:
            reason = "unreadable"
    return TokenStatus(
        shop_id=shop_id,
        reason=reason,
        uninstalled=row.uninstalled_at is not None,
        installed_before=row.installed_at is not None,
        error=row.token_error,
        error_at=row.token_error_at,
        exchange_until=row.token_exchange_until,
        scopes=row.scopes if row.access_token_enc is not None else None,
    )


async def claim_exchange(
    session: AsyncSession,
    shop_id: int,
    *,
    now: datetime,
    hold: timedelta,
    failed_before: datetime | None = None,
) -> bool:
    """Take the right to exchange a session token for this shop for ``hold``; False when another
    request holds it (or, with ``failed_before``, when an exchange failed after that time)."""
    conditions = [
        shops.c.id == shop_id,
        sa.or_(shops.c.token_exchange_until.is_(None), shops.c.token_exchange_until < now),
    ]
    if failed_before is not None:
        conditions.append(sa.or_(shops.c.token_error_at.is_(None), shops.c.token_error_at < failed_before))
    result = await session.execute(
        sa.update(shops).where(*conditions).values(token_exchange_until=now + hold)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def exchange_failed(session: AsyncSession, shop_id: int, reason: str) -> None:
    """A refused exchange: shown on the page, tried again on the next load."""
    await session.execute(
        sa.update(shops)
        .where(shops.c.id == shop_id)
        .values(token_exchange_until=None, token_error=reason[:500], token_error_at=utc_now())
    )


@dataclass(frozen=True, slots=True)
class InstallInfo:
    domain: str
    currency: str | None
    iana_timezone: str | None
    installed: bool
    scopes: str | None


async def describe(session: AsyncSession, shop_id: int) -> InstallInfo:
    row = (
        await session.execute(
            sa.select(
                shops.c.domain,
                shops.c.currency,
                shops.c.iana_timezone,
                shops.c.uninstalled_at,
                shops.c.access_token_enc,
                shops.c.scopes,
            ).where(shops.c.id == shop_id)
        )
    ).one()
    installed = row.uninstalled_at is None and row.access_token_enc is not None
    return InstallInfo(
        domain=str(row.domain),
        currency=row.currency,
        iana_timezone=row.iana_timezone,
        installed=installed,
        scopes=row.scopes if installed else None,
    )
