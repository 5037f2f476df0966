"""``GET /api/shop`` and ``POST /api/shop/sync``: the shop's install and sync state (docs/shopify-app.md)."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import installs, jobs, writeback
from service.domain.api_keys import AuthenticatedShop
from service.errors import AppError
from service.runtime import Runtime
from service.schemas import ShopRead, SyncRead, WriteBackFailureRead, WriteBackRead, WriteBackReplayRead


class NotConnectedError(AppError):
    status_code = 409


async def shop_read(session: AsyncSession, shop_id: int) -> ShopRead:
    info = await installs.describe(session, shop_id)
    view = await jobs.sync_view(session, shop_id)
    written = await writeback.summary(session, shop_id)
    return ShopRead(
        domain=info.domain,
        currency=info.currency,
        timezone=info.iana_timezone,
        installed=info.installed,
        scopes=info.scopes,
        sync=SyncRead(
            state=view.state,
            started_at=view.started_at,
            finished_at=view.finished_at,
            customers=view.customers,
            orders=view.orders,
            last_error=view.last_error,
            last_reconciled_at=view.last_reconciled_at,
        ),
        write_back=WriteBackRead(
            pending=written.pending, failed=written.failed, last_written_at=written.last_written_at
        ),
    )


class ShopController(Controller):
    path = "/api/shop"
    tags = ["shop"]

    @get(
        "/",
        summary="The shop: currency, time zone, install, and the backfill/reconciliation state",
        description=(
            "`sync` describes the latest sync job (the first backfill, then each reconciliation "
            "every TIERLINE_RECONCILE_HOURS); while it runs, `customers` and `orders` count the "
            "records applied so far."
        ),
    )
    async def get_shop(
        self, db_session: NamedDependency[AsyncSession], shop: NamedDependency[AuthenticatedShop]
    ) -> ShopRead:
        return await shop_read(db_session, shop.id)

    @post(
        "/sync",
        summary="Retry a failed sync, or sync now",
        description=(
            "Queues the failed job again (or a backfill when none has completed, else a "
            "reconciliation). A job already queued or running is left as it is. 409 when tierline "
            "holds no usable token for the shop (open the app from the Shopify admin)."
        ),
        status_code=202,
    )
    async def sync_now(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        runtime: NamedDependency[Runtime],
    ) -> ShopRead:
        info = await installs.describe(db_session, shop.id)
        if not info.installed:
            raise NotConnectedError(
                "tierline holds no access token for this shop: open the app from your Shopify admin"
            )
        if await jobs.retry(db_session, shop.id) is not None:
            runtime.notify_jobs()
        return await shop_read(db_session, shop.id)

    @get(
        "/write-back/failed", summary="Write-backs that failed after every attempt (newest first, at most 50)"
    )
    async def write_back_failed(
        self, db_session: NamedDependency[AsyncSession], shop: NamedDependency[AuthenticatedShop]
    ) -> list[WriteBackFailureRead]:
        rows = await writeback.failed_rows(db_session, shop.id)
        return [
            WriteBackFailureRead(
                id=str(row.id),
                kind=row.kind,
                resource_id=row.resource_id,
                attempts=row.attempts,
                last_error=row.last_error,
                queued_at=row.queued_at,
            )
            for row in rows
        ]

    @post(
        "/write-back/replay",
        summary="Send failed write-backs again",
        description="Every failed write-back of the shop goes back to the queue; the worker sends it again.",
        status_code=202,
    )
    async def write_back_replay(
        self, db_session: NamedDependency[AsyncSession], shop: NamedDependency[AuthenticatedShop]
    ) -> WriteBackReplayRead:
        return WriteBackReplayRead(replayed=await writeback.replay(db_session, shop_id=shop.id))
