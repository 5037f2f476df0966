"""returns/request|approve|decline|close, placed in time by X-Shopify-Triggered-At."""

from __future__ import annotations

from service.domain import returns
from service.domain.orders import refresh_orders
from webhooks.payloads import ReturnPayload
from webhooks.router import DeliveryContext, TopicRouter

router = TopicRouter()

_STEPS: dict[str, returns.Step] = {
    "returns/request": "requested",
    "returns/approve": "approved",
    "returns/decline": "declined",
    "returns/close": "closed",
}


@router.register(*_STEPS, model=ReturnPayload)
async def on_return(ctx: DeliveryContext, payload: ReturnPayload) -> None:
    order_id = await returns.record_step(
        ctx.session,
        ctx.shop_id,
        payload.id,
        step=_STEPS[ctx.topic],
        at=ctx.occurred_at,
        order_id=payload.order_ref,
        name=payload.name,
    )
    if order_id is not None:
        await refresh_orders(
            ctx.session, ctx.shop_id, [order_id], await ctx.shop_settings(), deferred=ctx.deferred
        )
