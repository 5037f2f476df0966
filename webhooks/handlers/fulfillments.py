"""fulfillments/create|update and fulfillment_events/create."""

from __future__ import annotations

from collections.abc import Sequence

from service.domain import fulfillments, orders, tracking
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


Fact = FulfillmentPayload | FulfillmentEventPayload


async def on_facts(items: Sequence[tuple[DeliveryContext, Fact]]) -> None:
    """Fulfillments and events consecutive in one batch (several may be of one order): stored with
    one statement per kind, in delivery order, and their orders refreshed together once. Facts are
    stored whatever order they come in (each fulfillment behind its ``updated_at`` guard, each
    event once), and tracking is derived from all of them, so one refresh after storing them all
    leaves what a refresh after each would. An order is refreshed even if its fact was already
    known: re-deriving an unchanged order changes nothing."""
    ctx = items[0][0]
    deferred = ctx.deferred
    if deferred is None or len(items) == 1:
        for item_ctx, payload in items:
            if isinstance(payload, FulfillmentPayload):
                await on_fulfillment(item_ctx, payload)
            else:
                await on_fulfillment_event(item_ctx, payload)
        return
    await fulfillments.store_facts(
        ctx.session,
        ctx.shop_id,
        [fulfillment_snapshot(p) for _, p in items if isinstance(p, FulfillmentPayload)],
        [event_snapshot(c, p) for c, p in items if isinstance(p, FulfillmentEventPayload)],
    )
    await orders.refresh_facts(
        ctx.session, ctx.shop_id, [p.order_id for _, p in items], await ctx.shop_settings(), deferred=deferred
    )


def fact_key(payload: Fact) -> tuple[str, int]:
    """A run of facts takes each fact once (a repeated one starts the next run)."""
    return type(payload).__name__, payload.id


@router.register(
    "fulfillments/create",
    "fulfillments/update",
    model=FulfillmentPayload,
    batchable=True,
    many=on_facts,
    key=fact_key,
)
async def on_fulfillment(ctx: DeliveryContext, payload: FulfillmentPayload) -> None:
    if await fulfillments.upsert_fulfillment(ctx.session, ctx.shop_id, fulfillment_snapshot(payload)):
        await refresh_orders(
            ctx.session, ctx.shop_id, [payload.order_id], await ctx.shop_settings(), deferred=ctx.deferred
        )


@router.register(
    "fulfillment_events/create", model=FulfillmentEventPayload, batchable=True, many=on_facts, key=fact_key
)
async def on_fulfillment_event(ctx: DeliveryContext, payload: FulfillmentEventPayload) -> None:
    if await fulfillments.add_event(ctx.session, ctx.shop_id, event_snapshot(ctx, payload)):
        await refresh_orders(
            ctx.session, ctx.shop_id, [payload.order_id], await ctx.shop_settings(), deferred=ctx.deferred
        )
