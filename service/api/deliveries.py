"""``/api/deliveries``: the inbox, for support (docs/api.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import inbox
from service.domain.api_keys import AuthenticatedShop
from service.domain.pagination import DEFAULT_LIMIT, MAX_LIMIT
from service.errors import NotFoundError
from service.schemas import DeliveryRead, Page

StatusFilter = Literal["pending", "processed", "failed", "ignored", "dead"]


def _read(row: inbox.DeliveryRow) -> DeliveryRead:
    return DeliveryRead(
        id=str(row.id),
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        topic=row.topic,
        shop_domain=row.shop_domain,
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        received_at=row.received_at,
        processed_at=row.processed_at,
    )


def parse_delivery_id(value: str) -> int:
    # isascii: str.isdigit() is also true for "²" and other digits int() refuses (a 500 before).
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise NotFoundError("no such delivery")
    return int(value)


class DeliveryController(Controller):
    path = "/api/deliveries"
    tags = ["deliveries"]

    @get("/", summary="List inbox deliveries, newest first")
    async def list_deliveries(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        status: FromQuery[StatusFilter | None] = None,
        topic: Annotated[str | None, Parameter(max_length=255)] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Parameter(max_length=2000)] = None,
    ) -> Page[DeliveryRead]:
        rows, next_cursor = await inbox.list_deliveries(
            db_session, shop_id=shop.id, status=status, topic=topic, limit=limit, cursor=cursor
        )
        return Page[DeliveryRead](items=[_read(r) for r in rows], next_cursor=next_cursor)

    @post("/{delivery_id:str}/replay", summary="Put one delivery back in the queue", status_code=200)
    async def replay_delivery(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        delivery_id: FromPath[str],
    ) -> DeliveryRead:
        numeric = parse_delivery_id(delivery_id)
        if await inbox.get_delivery_shop(db_session, numeric) != shop.id:
            raise NotFoundError("no such delivery")
        await inbox.replay(db_session, shop_id=shop.id, delivery_id=numeric)
        row = await inbox.get_delivery(db_session, numeric)
        return _read(row)
