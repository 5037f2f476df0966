"""Installing the app: OAuth authorization-code grant and token exchange (docs/shopify-app.md).

``GET /auth/install`` checks the launch request's HMAC and shop, sets a signed ``state`` cookie
and redirects to Shopify's authorize page. ``GET /auth/callback`` checks HMAC, shop and state,
exchanges the code for an expiring offline token, checks the granted scopes and stores the
tokens encrypted. ``POST /auth/token`` does the embedded-app token exchange with a session token.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from service.crypto import read_state, sign_state
from service.db import session_scope
from service.domain import installs
from service.errors import AppError, BadRequestError, UnauthorizedError
from service.install import Installer
from service.runtime import Runtime
from service.schemas import InstallRead
from shopify_client import (
    InvalidSessionTokenError,
    ShopifyError,
    authorize_url,
    decode_session_token,
    exchange_code,
    is_valid_shop_domain,
    missing_scopes,
    token_exchange,
    verify_oauth_hmac,
)

logger = logging.getLogger(__name__)

STATE_COOKIE = "tierline_oauth_state"
STATE_TTL_SECONDS = 600


class ForbiddenError(AppError):
    status_code = 403


class BadGatewayError(AppError):
    status_code = 502


def _query(request: Request[Any, Any, Any]) -> dict[str, str | list[str]]:
    """The query string as Shopify signed it (repeated keys become lists)."""
    out: dict[str, str | list[str]] = {}
    for key, value in request.query_params.multi_items():
        if key in out:
            existing = out[key]
            out[key] = [*(existing if isinstance(existing, list) else [existing]), value]
        else:
            out[key] = value
    return out


def _checked_shop(query: dict[str, str | list[str]], runtime: Runtime) -> str:
    shop = query.get("shop")
    if not isinstance(shop, str) or not is_valid_shop_domain(shop):
        raise BadRequestError("shop is missing or not a *.myshopify.com domain")
    if not verify_oauth_hmac(query, runtime.settings.webhook_secrets):
        raise UnauthorizedError("hmac is missing, wrong, or the request is too old")
    return shop.lower()


def _redirect_uri(runtime: Runtime) -> str:
    return runtime.settings.shopify_app_url.rstrip("/") + "/auth/callback"


def _to_authorize(runtime: Runtime, shop: str) -> Redirect:
    """To Shopify's authorize page for ``SCOPES``, with a signed single-use ``state`` cookie that
    ``/auth/callback`` checks."""
    settings = runtime.settings
    nonce = secrets.token_urlsafe(24)
    state = sign_state(
        {"nonce": nonce, "shop": shop}, settings.shopify_api_secret, ttl_seconds=STATE_TTL_SECONDS
    )
    target = authorize_url(
        shop,
        settings.shopify_api_key,
        settings.scopes,
        _redirect_uri(runtime),
        nonce,
        origin=settings.shopify_url,
    )
    return Redirect(
        target,
        status_code=302,
        cookies=[
            Cookie(
                key=STATE_COOKIE,
                value=state,
                max_age=STATE_TTL_SECONDS,
                path="/auth",
                httponly=True,
                secure=settings.shopify_app_url.startswith("https://"),
                samesite="lax",
            )
        ],
    )


class OAuthController(Controller):
    path = "/auth"
    tags = ["install"]

    @get("/install", summary="Start the install: verify the launch request, redirect to Shopify")
    async def install(self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Redirect:
        return _to_authorize(runtime, _checked_shop(_query(request), runtime))

    @get("/callback", summary="Finish the install: verify, exchange the code, store the tokens")
    async def callback(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        query = _query(request)
        shop = _checked_shop(query, runtime)
        cookie = request.cookies.get(STATE_COOKIE)
        state = read_state(cookie, runtime.settings.shopify_api_secret) if cookie else None
        nonce = query.get("state")
        if (
            state is None
            or state.get("shop") != shop
            or not isinstance(nonce, str)
            or state.get("nonce") != nonce
        ):
            raise UnauthorizedError("state is missing, expired or does not match this install")
        code = query.get("code")
        if not isinstance(code, str) or not code:
            raise BadRequestError("code is missing")
        # Single use, server-side: committed before Shopify is called, so a replay of this
        # callback (the same cookie and query) is refused even if the exchange fails.
        async with session_scope(runtime.sessionmaker) as nonce_session:
            first_use = await installs.use_state_nonce(
                nonce_session, nonce, datetime.fromtimestamp(state["exp"], UTC)
            )
        if not first_use:
            raise BadRequestError("this install link was already used: start the install again")
        settings = runtime.settings
        try:
            token = await exchange_code(
                runtime.http,
                shop,
                settings.shopify_api_key,
                settings.shopify_api_secret,
                code,
                origin=settings.shopify_url,
            )
        except ShopifyError as exc:
            logger.warning("oauth.exchange_failed", extra={"shop": shop, "error": type(exc).__name__})
            raise BadGatewayError("Shopify did not exchange the code") from exc
        lacking = missing_scopes(token.scope, settings.scopes)
        if lacking:
            raise ForbiddenError("the install did not grant: " + ", ".join(sorted(lacking)))
        await Installer(runtime).install(shop, token)
        logger.info("oauth.installed", extra={"shop": shop})
        response = Redirect(f"https://{shop}/admin/apps/{quote(settings.shopify_api_key)}", status_code=302)
        response.delete_cookie(STATE_COOKIE, path="/auth")
        return response

    @post(
        "/token",
        summary="Embedded apps: exchange an App Bridge session token for an offline token",
        status_code=200,
    )
    async def exchange(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[InstallRead]:
        scheme, _, session_token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not session_token.strip():
            raise UnauthorizedError("send the session token as Authorization: Bearer")
        settings = runtime.settings
        try:
            claims = decode_session_token(
                session_token.strip(), api_key=settings.shopify_api_key, secrets=settings.webhook_secrets
            )
        except InvalidSessionTokenError as exc:
            raise UnauthorizedError(f"invalid session token: {exc}") from exc
        try:
            token = await token_exchange(
                runtime.http,
                claims.shop,
                settings.shopify_api_key,
                settings.shopify_api_secret,
                session_token.strip(),
                origin=settings.shopify_url,
            )
        except ShopifyError as exc:
            logger.warning(
                "oauth.token_exchange_failed", extra={"shop": claims.shop, "error": type(exc).__name__}
            )
            raise BadGatewayError("Shopify refused the token exchange") from exc
        lacking = missing_scopes(token.scope, settings.scopes)
        if lacking:
            raise ForbiddenError("the install did not grant: " + ", ".join(sorted(lacking)))
        await Installer(runtime).install(claims.shop, token)
        return Response(InstallRead(shop=claims.shop, installed=True, scopes=token.scope))

    @get("/reconsent", summary="Embedded apps: approve scopes the grant lacks (authorization-code grant)")
    async def reconsent(self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Redirect:
        """The merchant page's "Review permissions" button opens this at the top level (outside the
        admin's iframe) with a fresh session token: the state cookie is then first-party, and the
        merchant lands on Shopify's authorize page for ``SCOPES``; ``/auth/callback`` finishes."""
        settings = runtime.settings
        token = request.query_params.get("id_token", "")
        try:
            claims = decode_session_token(
                token, api_key=settings.shopify_api_key, secrets=settings.webhook_secrets
            )
        except InvalidSessionTokenError as exc:
            raise UnauthorizedError(
                f"invalid session token: {exc}; open tierline from your Shopify admin"
            ) from exc
        return _to_authorize(runtime, claims.shop)
