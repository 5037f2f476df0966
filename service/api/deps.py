"""Dependencies shared by the controllers: runtime, transaction, authenticated shop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import session_scope
from service.domain.api_keys import AuthenticatedShop, shop_for_api_key, shop_for_session_token
from service.errors import UnauthorizedError
from service.runtime import Runtime
from shopify_client import InvalidSessionTokenError, decode_session_token


def provide_runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


async def provide_session(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent (or rolled back).

    ``GET`` requests read (on SQLite their transaction does not wait for the writer).
    """
    async with session_scope(runtime.sessionmaker, readonly=request.method in ("GET", "HEAD")) as session:
        yield session


async def provide_shop(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    db_session: NamedDependency[AsyncSession],
) -> AuthenticatedShop:
    """``Authorization: Bearer`` with an App Bridge session token or a per-shop API key."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError(
            "missing credentials: send Authorization: Bearer <session token or API key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    shop: AuthenticatedShop | None
    if token.count(".") == 2:
        settings = runtime.settings
        try:
            claims = decode_session_token(
                token, api_key=settings.shopify_api_key, secrets=settings.session_token_keys
            )
        except InvalidSessionTokenError as exc:
            raise UnauthorizedError(
                f"invalid session token: {exc}", headers={"WWW-Authenticate": "Bearer"}
            ) from exc
        shop = await shop_for_session_token(db_session, claims.shop)
    else:
        shop = await shop_for_api_key(db_session, token)
    if shop is None:
        raise UnauthorizedError("invalid or revoked credentials", headers={"WWW-Authenticate": "Bearer"})
    return shop
