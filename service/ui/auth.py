"""Who a merchant page is rendered for, and the headers that keep it inside the shop's admin.

* Embedded (Shopify admin): the admin loads the app URL with ``?shop=…&host=…&id_token=…``; the
  ``id_token`` is an App Bridge session token, verified like the JSON API's bearer tokens. The
  page loads App Bridge, and its scripts call the JSON API with ``shopify.idToken()``.
* Development (``TIERLINE_ENV=development`` only): a request without ``id_token`` is for the
  development shop (``TIERLINE_DEV_SHOP``). The page carries a session token for that shop minted
  here, valid for 15 minutes, which its scripts send to the JSON API as any other session token.
  It is signed with a key derived from the app secret for this purpose only (``service.crypto``),
  never the raw secret, and that key is accepted in development only. Production never reaches
  this branch, and :func:`dev_session_token` refuses to run there.

Details and reasons: docs/ui.md.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.crypto import dev_session_key
from service.domain.jobs import SyncView
from service.domain.shops import ShopProfile, find_shop
from service.errors import AppError, BadRequestError, UnauthorizedError
from service.install import Connection
from shopify_client import InvalidSessionTokenError, SessionToken, decode_session_token, is_valid_shop_domain

#: Called with a verified session token before the page reads anything: the first embedded load
#: exchanges it for an offline token (service.install).
Connect = Callable[[SessionToken, str], Awaitable[Connection]]

ADMIN_ORIGIN = "https://admin.shopify.com"
APP_BRIDGE_SRC = "https://cdn.shopify.com/shopifycloud/app-bridge.js"
DEV_TOKEN_SECONDS = 15 * 60
#: A shop not seen yet has no rows: queries for id 0 find none, so its pages are empty.
UNSEEN_SHOP_ID = 0
_HOST = re.compile(r"^[A-Za-z0-9+/=_-]{1,512}$")


class PageUnauthorizedError(UnauthorizedError):
    """A page request without a valid session token (HTML 401).

    ``shop`` and ``host`` are set when the request named a shop from inside the admin without a
    token (a reload, a link opened in place): the 401 page then gets a fresh token from App Bridge
    and loads again with it (a "bounce" page).
    """

    def __init__(self, detail: str, *, shop: str | None = None, host: str | None = None) -> None:
        super().__init__(detail)
        self.shop = shop
        self.host = host


class PageConnectionError(AppError):
    """An uninstalled shop (a reinstall) whose token exchange did not succeed: an HTML page that
    says why, with a retry (or, for missing scopes, a way to approve them). Never a 500."""

    def __init__(self, connection: Connection, *, shop: str, host: str | None, id_token: str) -> None:
        if connection.state == "consent":
            self.status_code = 403
            detail = "tierline needs your approval for more access to your shop."
        elif connection.state == "pending":
            self.status_code = 503
            detail = "tierline is being connected to your shop: this takes a few seconds."
        else:
            self.status_code = 502
            detail = (
                f"tierline could not connect to your shop: {connection.detail or 'Shopify did not answer'}."
            )
        super().__init__(detail)
        self.connection = connection
        self.shop = shop
        self.host = host
        self.id_token = id_token


@dataclass(frozen=True, slots=True)
class PageContext:
    shop: ShopProfile
    embedded: bool
    #: Shopify's ``host`` parameter (embedded only): kept on links so App Bridge can start.
    host: str | None
    api_key: str
    #: Development only: the session token the page's scripts send to the JSON API.
    dev_token: str | None
    #: The outcome of the first-load token exchange (None in development).
    connection: Connection | None = None
    #: Backfill and reconciliation state, for the banner (set by the page dependency).
    sync: SyncView | None = None
    #: The page's own session token (embedded): the consent button uses it without App Bridge.
    id_token: str | None = None

    def url(self, path: str, **params: Any) -> str:
        """A link to another page, with the embedded context (``shop``, ``host``) kept."""
        query = {key: value for key, value in params.items() if value not in (None, "")}
        if self.embedded:
            query["shop"] = self.shop.domain
            if self.host:
                query["host"] = self.host
        return f"{path}?{urlencode(query)}" if query else path


def content_security_policy(shop: str | None) -> str:
    """Framed only by the shop's admin; scripts only from this app and App Bridge."""
    ancestors = f"https://{shop} {ADMIN_ORIGIN}" if shop else "'none'"
    return (
        f"frame-ancestors {ancestors}; script-src 'self' {APP_BRIDGE_SRC}; "
        "object-src 'none'; base-uri 'none'; form-action 'self'"
    )


def page_headers(shop: str | None) -> dict[str, str]:
    """Headers of every HTML response (no ``X-Frame-Options``: the CSP decides framing)."""
    return {
        "Content-Security-Policy": content_security_policy(shop),
        "Cache-Control": "no-store",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "X-Content-Type-Options": "nosniff",
    }


def dev_session_token(settings: Settings, *, now: float | None = None) -> str:
    """A session token for the development shop, as App Bridge would issue it (development only)."""
    if settings.is_production:
        raise RuntimeError("development session tokens are never issued in production")
    issued = int(time.time() if now is None else now)
    shop = settings.dev_shop
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": settings.shopify_api_key,
        "sub": "development",
        "exp": issued + DEV_TOKEN_SECONDS,
        "nbf": issued - 5,
        "iat": issued,
        "jti": str(uuid.uuid4()),
        "sid": "tierline-development",
    }
    return jwt.encode(claims, dev_session_key(settings.shopify_api_secret), algorithm="HS256")


def _host(value: str | None) -> str | None:
    return value if value and _HOST.fullmatch(value) else None


def _shop_param(value: str | None) -> str | None:
    """The ``shop`` parameter, lower-cased; None when absent; ``400`` when it is not a shop domain."""
    shop = (value or "").strip()
    if not shop:
        return None
    if not is_valid_shop_domain(shop):
        raise BadRequestError("the shop parameter is not a *.myshopify.com domain")
    return shop.lower()


async def authenticate_page(
    session: AsyncSession, settings: Settings, query: Mapping[str, str], *, connect: Connect | None = None
) -> PageContext:
    """The shop a page is for, from ``id_token`` (or, in development only, the development shop).

    With ``connect``, a verified token is first handed to it (the token exchange of a first
    embedded load) before ``session`` reads anything.
    """
    token = query.get("id_token")
    host = _host(query.get("host"))
    connection: Connection | None = None
    named = _shop_param(query.get("shop"))
    if token:
        try:
            claims = decode_session_token(
                token, api_key=settings.shopify_api_key, secrets=settings.session_token_keys
            )
        except InvalidSessionTokenError as exc:
            # A stale token (a reload after a minute) gets a fresh one through the bounce page.
            raise PageUnauthorizedError(f"invalid session token: {exc}", shop=named, host=host) from exc
        if named is not None and named != claims.shop:
            raise PageUnauthorizedError("the shop parameter does not match the session token")
        domain, embedded, dev_token = claims.shop, True, None
        if connect is not None:
            connection = await connect(claims, token)
    elif settings.is_production:
        raise PageUnauthorizedError("open tierline from your Shopify admin", shop=named, host=host)
    else:
        domain, embedded, dev_token, host = settings.dev_shop, False, dev_session_token(settings), None
    shop = await find_shop(session, domain)
    if shop is None:
        shop = ShopProfile(UNSEEN_SHOP_ID, domain, None, None, uninstalled=False)
    if shop.uninstalled:
        if connection is not None and token and not connection.connected:
            raise PageConnectionError(connection, shop=domain, host=host, id_token=token)
        raise PageUnauthorizedError("tierline is not installed on this shop")
    return PageContext(
        shop=shop,
        embedded=embedded,
        host=host,
        api_key=settings.shopify_api_key,
        dev_token=dev_token,
        connection=connection,
        id_token=token if embedded else None,
    )
