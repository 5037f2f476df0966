"""orders/create|updated|cancelled|paid|fulfilled|partially_fulfilled and orders/delete."""

from __future__ import annotations

from service.domain import orders
from service.domain.records import LineSnapshot, OrderSnapshot
from webhooks.handlers.customers import address_dict, customer_snapshot
from webhooks.handlers.fulfillments import fulfillment_snapshot
from webhooks.payloads import DeletedResourcePayload, OrderPayload
from webhooks.router import DeliveryContext, TopicRouter

router = TopicRouter()

ORDER_TOPICS = (
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/paid",
    "orders/fulfilled",
    "orders/partially_fulfilled",
)


def order_snapshot(payload: OrderPayload) -> OrderSnapshot:
    # A repeated line item id keeps its last occurrence (the table's key is the line id).
    lines = {
        item.id: LineSnapshot(
            id=item.id,
            product_id=item.product_id,
            variant_id=item.variant_id,
            title=item.title,
            variant_title=item.variant_title,
            vendor=item.vendor,
            sku=item.sku,
            quantity=item.quantity,
            price=item.price,
        )
        for item in payload.line_items
    }
    return OrderSnapshot(
        id=payload.id,
        name=payload.name,
        email=payload.email,
        phone=payload.phone,
        created_at=payload.created_at,
        updated_at=payload.updated_at,
        processed_at=payload.processed_at,
        cancelled_at=payload.cancelled_at,
        financial_status=payload.financial_status,
        fulfillment_status=payload.fulfillment_status,
        currency=payload.currency,
        total_price=payload.total_price,
        current_total_price=payload.current_total_price,
        payment_gateway_names=list(payload.payment_gateway_names),
        tags=payload.tags or "",
        test=bool(payload.test),
        shipping_address=address_dict(payload.shipping_address),
        billing_address=address_dict(payload.billing_address),
        lines=list(lines.values()),
        customer=customer_snapshot(payload.customer) if payload.customer is not None else None,
        fulfillments=[fulfillment_snapshot(f) for f in payload.fulfillments if f.order_id == payload.id],
    )


@router.register(*ORDER_TOPICS, model=OrderPayload)
async def on_order(ctx: DeliveryContext, payload: OrderPayload) -> None:
    settings = await ctx.shop_settings()
    await orders.apply_order(
        ctx.session, ctx.shop_id, order_snapshot(payload), settings, deferred=ctx.deferred
    )


@router.register("orders/delete", model=DeletedResourcePayload)
async def on_order_delete(ctx: DeliveryContext, payload: DeletedResourcePayload) -> None:
    settings = await ctx.shop_settings()
    await orders.delete_order(ctx.session, ctx.shop_id, payload.id, settings, deferred=ctx.deferred)
