"""fulfillments/create|update and fulfillment_events/create."""

from __future__ import annotations

from service.domain import fulfillments, tracking
from service.domain.orders import refresh_orders
from service.domain.records import FulfillmentEventSnapshot, FulfillmentSnapshot
from webhooks.payloads import FulfillmentEventPayload, FulfillmentPayload
from webhooks.router import DeliveryContext, TopicRouter

router = TopicRouter()


def fulfillment_snapshot(payload: FulfillmentPayload) -> FulfillmentSnapshot:
    return FulfillmentSnapshot(
        id=payload.id,
        order_id=payload.order_id,
        status=payload.status,
        shipment_status=payload.shipment_status,
        tracking_company=payload.tracking_company,
        tracking_number=payload.tracking_number,
        created_at=payload.created_at,
        updated_at=payload.updated_at,
    )


def event_snapshot(ctx: DeliveryContext, payload: FulfillmentEventPayload) -> FulfillmentEventSnapshot:
    return FulfillmentEventSnapshot(
        id=payload.id,
        fulfillment_id=payload.fulfillment_id,
        order_id=payload.order_id,
        status=tracking.known_or_verbatim(payload.status),
        happened_at=payload.happened_at or payload.created_at or ctx.occurred_at,
        created_at=payload.created_at,
    )


@router.register("fulfillments/create", "fulfillments/update", model=FulfillmentPayload)
async def on_fulfillment(ctx: DeliveryContext, payload: FulfillmentPayload) -> None:
    if await fulfillments.upsert_fulfillment(ctx.session, ctx.shop_id, fulfillment_snapshot(payload)):
        await refresh_orders(
            ctx.session, ctx.shop_id, [payload.order_id], await ctx.shop_settings(), deferred=ctx.deferred
        )


@router.register("fulfillment_events/create", model=FulfillmentEventPayload)
async def on_fulfillment_event(ctx: DeliveryContext, payload: FulfillmentEventPayload) -> None:
    if await fulfillments.add_event(ctx.session, ctx.shop_id, event_snapshot(ctx, payload)):
        await refresh_orders(
            ctx.session, ctx.shop_id, [payload.order_id], await ctx.shop_settings(), deferred=ctx.deferred
        )
