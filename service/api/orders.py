"""Orders for the order grid (SPEC §5)."""

from __future__ import annotations

from litestar import Controller, put
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.ids import path_id
from service.domain import orders
from service.domain.api_keys import AuthenticatedShop
from service.domain.order_views import EnrichedOrder, enriched_orders
from service.domain.settings import get_shop_settings
from service.errors import NotFoundError
from service.schemas import OrderRead, TrackingStatusUpdate, money


def order_read(order: EnrichedOrder) -> OrderRead:
    figures = order.customer
    return OrderRead(
        id=str(order.id),
        name=order.name,
        customer_id=str(order.customer_id) if order.customer_id is not None else None,
        email=order.email,
        phone=order.phone,
        created_at=order.created_at,
        updated_at=order.updated_at,
        processed_at=order.processed_at,
        cancelled_at=order.cancelled_at,
        financial_status=order.financial_status,
        fulfillment_status=order.fulfillment_status,
        currency=order.currency,
        total_amount=money(order.total_amount),
        original_total=money(order.original_total),
        payment_method=order.payment_method,  # type: ignore[arg-type]
        tracking_status=order.tracking_status,
        delivered_at=order.delivered_at,
        tags=[t.strip() for t in order.tags.split(",") if t.strip()],
        test=order.test,
        customer_ltv=money(figures.ltv) if figures else None,
        customer_order_count=figures.order_count if figures else None,
        customer_rto_count=figures.rto_count if figures else None,
        customer_tier=figures.tier if figures else None,  # type: ignore[arg-type]
    )


class OrderController(Controller):
    path = "/api/orders"
    tags = ["orders"]

    @put(
        "/{order_id:str}/tracking-status",
        summary="Set an order's tracking status (carrier integrations, e.g. RTO)",
        description="A status of SPEC §4.2 (422 otherwise). RTO only moves forward. Answers the enriched order.",
        status_code=200,
    )
    async def set_tracking_status(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        order_id: str,
        data: TrackingStatusUpdate,
    ) -> OrderRead:
        numeric = path_id(order_id, "Order")
        settings = await get_shop_settings(db_session, shop.id)
        await orders.set_tracking_status(db_session, shop.id, numeric, data.status, settings)
        found = await enriched_orders(db_session, shop.id, [numeric], settings)
        if not found:
            raise NotFoundError("no such order")
        return order_read(found[0])
