"""Dependencies shared by the controllers: runtime, transaction, authenticated shop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import session_scope
from service.domain.api_keys import (
    AuthenticatedShop,
    record_key_use,
    shop_for_api_key,
    shop_for_session_token,
)
from service.errors import UnauthorizedError
from service.install import Installer
from service.reads import Reads
from service.runtime import Runtime
from service.types import utc_now
from shopify_client import InvalidSessionTokenError, decode_session_token

logger = logging.getLogger(__name__)


def provide_runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


#: Route option (``opt=READS_ONLY``) of a handler that only reads: on PostgreSQL its statements
#: run without a transaction around them (``session_scope(autocommit=True)``), which saves the
#: ``BEGIN`` and ``COMMIT`` round trips of the order grid's reads (docs/benchmarks.md).
READS_ONLY: dict[str, Any] = {"tierline_reads_only": True}


async def provide_session(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent (or rolled back).

    ``GET`` requests read (on SQLite their transaction does not wait for the writer); handlers
    marked :data:`READS_ONLY` read without a transaction on PostgreSQL.
    """
    reads_only = bool(request.route_handler.opt.get("tierline_reads_only"))
    readonly = reads_only or request.method in ("GET", "HEAD")
    async with session_scope(runtime.sessionmaker, readonly=readonly, autocommit=reads_only) as session:
        yield session


def provide_reads(runtime: NamedDependency[Runtime]) -> Reads:
    """Where a handler that only reads sends its hot statements (``service.reads``).

    Not a generator: each statement takes its connection and gives it back, so nothing is left
    to clean up when a later dependency (a refused credential) fails the request."""
    return runtime.reads


async def provide_shop(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    db_session: NamedDependency[AsyncSession],
) -> AuthenticatedShop:
    """``Authorization: Bearer`` with an App Bridge session token or a per-shop API key, looked up
    in the request's transaction.

    A session token for a shop without a usable offline token exchanges it first (the first
    embedded load, docs/shopify-app.md), before this request's transaction reads anything.
    """
    return await authenticate(request, runtime, db_session)


async def provide_reading_shop(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], reads: NamedDependency[Reads]
) -> AuthenticatedShop:
    """The shop of a handler that takes ``reads`` instead of a session: its API key is looked up
    through :mod:`service.reads` (a session token in a transaction of its own)."""
    return await authenticate(request, runtime, reads)


#: For a handler on ``reads``: its ``shop`` without a session (``dependencies=`` of the route).
#: Litestar resolves a dependency's own dependencies first, so ``reads``, ``shop`` and the
#: handler run in that order, and a refused credential has nothing to clean up.
READING_SHOP = {"shop": Provide(provide_reading_shop)}


async def authenticate(
    request: Request[Any, Any, Any], runtime: Runtime, source: AsyncSession | Reads
) -> AuthenticatedShop:
    """The installed shop the request's credentials belong to, else ``401``."""
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
        connection = await Installer(runtime).ensure(claims, token, page=False)
        if isinstance(source, AsyncSession):
            shop = await shop_for_session_token(source, claims.shop)
        else:
            async with session_scope(runtime.sessionmaker) as session:
                shop = await shop_for_session_token(session, claims.shop)
        if shop is None:
            runtime.usable_tokens.pop(claims.shop, None)  # uninstalled since: look again next time
            detail = f"tierline is not installed on {claims.shop}"
            if connection.detail:
                detail += f" ({connection.detail})"
            raise UnauthorizedError(detail, headers={"WWW-Authenticate": "Bearer"})
    else:
        shop = await shop_for_api_key(source, token)
    if shop is None:
        raise UnauthorizedError("invalid or revoked credentials", headers={"WWW-Authenticate": "Bearer"})
    note_key_use(runtime, shop)
    return shop


def note_key_use(runtime: Runtime, shop: AuthenticatedShop) -> None:
    """Have the key that authenticated a request recorded as used, when it is due, beside the
    request (:func:`_record_key_use`)."""
    if shop.key_id is None or not shop.key_use_due(utc_now()) or shop.key_id in runtime.key_uses_pending:
        return
    runtime.key_uses_pending.add(shop.key_id)
    runtime.spawn(_record_key_use(runtime, shop.key_id), name="tierline-api-key-use")


async def _record_key_use(runtime: Runtime, key_id: int) -> None:
    """Write a key's ``last_used_at`` in a transaction of its own, after the request's lookup: the
    request never waits for it, and a failure only costs the bookkeeping."""
    try:
        if runtime.write_gate is not None:
            async with runtime.write_gate, session_scope(runtime.sessionmaker) as session:
                await record_key_use(session, key_id, utc_now())
        else:
            async with session_scope(runtime.sessionmaker) as session:
                await record_key_use(session, key_id, utc_now())
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        logger.warning("api_key.last_used_not_recorded", extra={"error": type(exc).__name__})
    finally:
        runtime.key_uses_pending.discard(key_id)
