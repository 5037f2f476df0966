"""Connecting a shop to the Admin API, with no operator (docs/shopify-app.md).

Two ways a shop gets an offline token: the OAuth callback and the token exchange. Both end in
:meth:`Installer.install`: the shop's currency and time zone are read with the new token (before
any write), then one transaction stores the token encrypted, the details, and queues the first
backfill (on install and reinstall) or the job that had failed for want of a token.

:meth:`Installer.ensure` is the first embedded load: a page or ``/api`` request carrying a valid
session token for a shop without a usable token (never installed, uninstalled since, refresh
token expired or revoked, ``SCOPES`` grown, or a token encrypted under another key) exchanges
that session token, once: concurrent loads race for a short hold on the shop row, and the losers
wait for the winner's result. A refused exchange is recorded and shown; the next page load tries
again (``/api`` requests at most once a minute). No transaction is open while Shopify is called.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from service.crypto import TokenCipher
from service.db import session_scope
from service.domain import installs, jobs, shops
from service.domain.shops import find_shop_id, get_or_create_shop_id
from service.runtime import Runtime
from service.types import utc_now
from shopify_client import (
    AccessToken,
    AdminClient,
    OAuthHTTPError,
    SessionToken,
    ShopDetails,
    ShopifyError,
    missing_scopes,
    token_exchange,
)

logger = logging.getLogger(__name__)

#: How long one request may hold the right to exchange for a shop.
EXCHANGE_HOLD = timedelta(seconds=30)
#: How long a request that lost the race waits for the winner's result.
WAIT_FOR_OTHER_SECONDS = 10.0
#: ``/api`` requests (not pages) retry a refused exchange at most this often.
API_RETRY_AFTER = timedelta(seconds=60)
#: A shop known to hold a usable token is not looked up again for this long (per process).
USABLE_CACHE_SECONDS = 30.0
#: Session tokens that tierline mints itself in development (docs/ui.md) never reach Shopify.
DEV_SESSION_ID = "tierline-development"


@dataclass(frozen=True, slots=True)
class Connection:
    """The outcome of :meth:`Installer.ensure`.

    ``state``: ``connected`` (a usable token is stored), ``development`` (a token tierline minted
    itself: nothing to exchange), ``failed`` (Shopify refused or could not be reached; ``detail``
    says why), ``consent`` (the grant lacks ``missing`` scopes: the merchant must approve them),
    ``pending`` (another request is exchanging right now).
    """

    state: str
    shop_id: int
    detail: str | None = None
    missing: tuple[str, ...] = ()
    #: The shop is marked uninstalled (its data must not be served until it connects).
    uninstalled: bool = False

    @property
    def connected(self) -> bool:
        return self.state in ("connected", "development")


class Installer:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._cipher = TokenCipher(runtime.settings.tierline_encryption_key)

    # --- storing a token ------------------------------------------------------------------------

    async def install(self, shop: str, token: AccessToken) -> str | None:
        """Store a new offline token for ``shop`` and queue what it starts; returns the job kind
        queued (``backfill`` on install and reinstall), if any."""
        details = await self._details(shop, token)
        runtime = self._runtime
        async with self._gate(), session_scope(runtime.sessionmaker) as session:
            shop_id = await get_or_create_shop_id(session, shop)
            before = await installs.token_status(
                session, shop_id, required_scopes=self._settings.scopes, cipher=self._cipher, now=utc_now()
            )
            await installs.store_token(session, shop_id, token, self._cipher)
            if details is not None:
                await shops.set_details(
                    session, shop_id, currency=details.currency, iana_timezone=details.iana_timezone
                )
            queued = await jobs.queue_after_install(session, shop_id, reinstall=before.uninstalled)
        runtime.usable_tokens[shop] = time.monotonic() + USABLE_CACHE_SECONDS
        runtime.notify_jobs()
        logger.info("install.token_stored", extra={"shop": shop, "job": queued or "none"})
        return queued

    async def _details(self, shop: str, token: AccessToken) -> ShopDetails | None:
        """Currency and time zone, asked with the new token before any write. A courtesy: if
        Shopify does not answer, the pages fall back to INR and UTC and the next sync fills them."""
        client = AdminClient(
            self._runtime.http, shop, token.access_token, max_attempts=2, origin=self._settings.shopify_url
        )
        try:
            return await client.shop_details()
        except ShopifyError as exc:
            logger.warning("oauth.shop_details_failed", extra={"shop": shop, "error": type(exc).__name__})
            return None

    def _gate(self) -> asyncio.Lock | _NoGate:
        return self._runtime.write_gate or _NoGate()

    # --- the first embedded load ----------------------------------------------------------------

    async def ensure(self, claims: SessionToken, session_token: str, *, page: bool) -> Connection:
        """Make sure the session token's shop has a usable offline token, exchanging it if not."""
        shop = claims.shop
        runtime = self._runtime
        if claims.session_id == DEV_SESSION_ID and not self._settings.is_production:
            return Connection("development", await self._shop_id(shop))
        # API requests (the order grid's, on every page view) trust a recent check; a page load,
        # rare and human, always looks, so a reinstall is never hidden by a stale answer.
        if not page and runtime.usable_tokens.get(shop, 0.0) > time.monotonic():
            return Connection("connected", await self._shop_id(shop))
        runtime.usable_tokens.pop(shop, None)
        status = await self._status(shop)
        if status.usable:
            runtime.usable_tokens[shop] = time.monotonic() + USABLE_CACHE_SECONDS
            return Connection("connected", status.shop_id)
        now = utc_now()
        async with self._gate(), session_scope(runtime.sessionmaker) as session:
            claimed = await installs.claim_exchange(
                session,
                status.shop_id,
                now=now,
                hold=EXCHANGE_HOLD,
                failed_before=None if page else now - API_RETRY_AFTER,
            )
        if not claimed:
            return await self._wait_for_other(shop, status)
        return await self._exchange(shop, status, session_token)

    async def _exchange(self, shop: str, status: installs.TokenStatus, session_token: str) -> Connection:
        settings = self._settings
        try:
            token = await token_exchange(
                self._runtime.http,
                shop,
                settings.shopify_api_key,
                settings.shopify_api_secret,
                session_token,
                origin=settings.shopify_url,
            )
        except ShopifyError as exc:
            reason = _refusal(exc)
            await self._failed(status.shop_id, reason)
            logger.warning("install.exchange_failed", extra={"shop": shop, "error": type(exc).__name__})
            return Connection("failed", status.shop_id, reason, uninstalled=status.uninstalled)
        lacking = tuple(sorted(missing_scopes(token.scope, settings.scopes)))
        if lacking:
            await self._failed(status.shop_id, "the grant lacks: " + ", ".join(lacking))
            logger.info("install.consent_needed", extra={"shop": shop})
            return Connection("consent", status.shop_id, missing=lacking, uninstalled=status.uninstalled)
        try:
            await self.install(shop, token)
        except BaseException:
            await self._failed(status.shop_id, "the new token could not be stored")
            raise
        logger.info("install.exchanged", extra={"shop": shop, "reason": status.reason})
        return Connection("connected", status.shop_id)

    async def _wait_for_other(self, shop: str, before: installs.TokenStatus) -> Connection:
        """Another request is exchanging (or, for ``/api``, one failed a moment ago)."""
        deadline = time.monotonic() + WAIT_FOR_OTHER_SECONDS
        status = before
        while True:
            if status.usable:
                return Connection("connected", status.shop_id)
            holding = status.exchange_until is not None and status.exchange_until > utc_now()
            if not holding:
                if status.error is not None:
                    missing = status.error.removeprefix("the grant lacks: ")
                    if missing != status.error:
                        return Connection(
                            "consent",
                            status.shop_id,
                            missing=tuple(missing.split(", ")),
                            uninstalled=status.uninstalled,
                        )
                    return Connection("failed", status.shop_id, status.error, uninstalled=status.uninstalled)
                if status is not before:
                    return Connection("pending", status.shop_id, uninstalled=status.uninstalled)
            if time.monotonic() >= deadline:
                return Connection("pending", status.shop_id, uninstalled=status.uninstalled)
            await asyncio.sleep(0.2)
            status = await self._status(shop)

    async def _status(self, shop: str) -> installs.TokenStatus:
        runtime = self._runtime
        async with self._gate(), session_scope(runtime.sessionmaker) as session:
            shop_id = await get_or_create_shop_id(session, shop)
            return await installs.token_status(
                session, shop_id, required_scopes=self._settings.scopes, cipher=self._cipher, now=utc_now()
            )

    async def _shop_id(self, shop: str) -> int:
        cached = self._runtime.shop_ids.get(shop)
        if cached is not None:
            return cached
        async with session_scope(self._runtime.sessionmaker, readonly=True) as session:
            found = await find_shop_id(session, shop)
        if found is None:
            async with self._gate(), session_scope(self._runtime.sessionmaker) as session:
                found = await get_or_create_shop_id(session, shop)
        self._runtime.shop_ids[shop] = found
        return found

    async def _failed(self, shop_id: int, reason: str) -> None:
        async with self._gate(), session_scope(self._runtime.sessionmaker) as session:
            await installs.exchange_failed(session, shop_id, reason)


class _NoGate:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_exc: object) -> None:
        return None


def _refusal(exc: ShopifyError) -> str:
    """What the merchant is told when Shopify refuses or cannot be reached."""
    if isinstance(exc, OAuthHTTPError):
        return f"Shopify refused the token exchange (HTTP {exc.status})"
    return f"Shopify could not be reached for the token exchange ({type(exc).__name__})"
