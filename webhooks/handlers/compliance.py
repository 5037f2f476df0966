"""The mandatory privacy topics: customers/data_request, customers/redact, shop/redact.

Each body names its shop (``shop_domain``); one that names another shop than the delivery's
header is marked ``failed`` and not applied (:meth:`DeliveryContext.require_shop`).
"""

from __future__ import annotations

from service.domain import compliance
from webhooks.payloads import CustomersDataRequestPayload, CustomersRedactPayload, ShopRedactPayload
from webhooks.router import DeliveryContext, TopicRouter

router = TopicRouter()


@router.register("customers/data_request", model=CustomersDataRequestPayload)
async def on_data_request(ctx: DeliveryContext, payload: CustomersDataRequestPayload) -> None:
    ctx.require_shop(payload.shop_domain, "shop_domain")
    customer_id = payload.customer.id
    data = (
        await compliance.export_customer(
            ctx.session, ctx.shop_id, customer_id, order_ids=payload.orders_requested
        )
        if customer_id is not None
        else {"customer": None, "orders": [], "figures": None, "tierHistory": []}
    )
    await compliance.record_request(
        ctx.session,
        ctx.shop_id,
        topic=ctx.topic,
        webhook_id=ctx.webhook_id,
        customer_id=customer_id,
        shopify_request_id=payload.data_request.id if payload.data_request else None,
        result=data,
    )


@router.register("customers/redact", model=CustomersRedactPayload)
async def on_customer_redact(ctx: DeliveryContext, payload: CustomersRedactPayload) -> None:
    ctx.require_shop(payload.shop_domain, "shop_domain")
    customer_id = payload.customer.id
    redacted = 0
    if customer_id is not None:
        redacted = await compliance.redact_customer(
            ctx.session,
            ctx.shop_id,
            customer_id,
            order_ids=payload.orders_to_redact,
            email=payload.customer.email,
            phone=payload.customer.phone,
        )
    await compliance.record_request(
        ctx.session,
        ctx.shop_id,
        topic=ctx.topic,
        webhook_id=ctx.webhook_id,
        customer_id=customer_id,
        result={"redactedDeliveries": redacted, "ordersListed": len(payload.orders_to_redact)},
    )


@router.register("shop/redact", model=ShopRedactPayload)
async def on_shop_redact(ctx: DeliveryContext, payload: ShopRedactPayload) -> None:
    ctx.require_shop(payload.shop_domain, "shop_domain")
    # Nothing of the shop is kept, not even a compliance request row: the processed shop/redact
    # delivery itself (which carries no personal data) is the record that the erasure happened.
    await compliance.erase_shop(ctx.session, ctx.shop_id, keep_delivery_id=ctx.delivery_id)
