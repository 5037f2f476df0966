"""refunds/create: feeds refundedAmount and returnCount (LTV follows current_total_price)."""

from __future__ import annotations

from decimal import Decimal

from service.domain import refunds
from service.domain.records import RefundSnapshot
from webhooks.payloads import RefundPayload
from webhooks.router import DeliveryContext, TopicRouter

router = TopicRouter()


def refund_snapshot(payload: RefundPayload) -> RefundSnapshot:
    amount = sum(
        (
            t.amount
            for t in payload.transactions
            if (t.kind or "refund") == "refund" and (t.status or "success") == "success"
        ),
        Decimal(0),
    )
    if payload.return_ is not None:
        returned = sum(item.quantity for item in payload.refund_line_items)
    else:
        returned = sum(item.quantity for item in payload.refund_line_items if item.restock_type == "return")
    return RefundSnapshot(
        id=payload.id,
        order_id=payload.order_id,
        amount=amount,
        returned_quantity=returned,
        created_at=payload.created_at,
    )


@router.register("refunds/create", model=RefundPayload)
async def on_refund(ctx: DeliveryContext, payload: RefundPayload) -> None:
    await refunds.add_refund(ctx.session, ctx.shop_id, refund_snapshot(payload))
