"""customers/create, customers/update, customers/delete."""

from __future__ import annotations

from service.domain import customers
from service.domain.records import CustomerSnapshot
from webhooks.payloads import AddressPayload, CustomerPayload, DeletedResourcePayload
from webhooks.router import DeliveryContext, TopicRouter

router = TopicRouter()


def address_dict(address: AddressPayload | None) -> dict[str, object] | None:
    return None if address is None else address.model_dump(mode="json")


def customer_snapshot(payload: CustomerPayload) -> CustomerSnapshot:
    return CustomerSnapshot(
        id=payload.id,
        email=payload.email,
        phone=payload.phone,
        first_name=payload.first_name,
        last_name=payload.last_name,
        state=payload.state,
        default_address=address_dict(payload.default_address),
        addresses=[a.model_dump(mode="json") for a in payload.addresses],
        created_at=payload.created_at,
        updated_at=payload.updated_at,
    )


@router.register("customers/create", "customers/update", model=CustomerPayload)
async def on_customer(ctx: DeliveryContext, payload: CustomerPayload) -> None:
    await customers.upsert_customer(
        ctx.session, ctx.shop_id, customer_snapshot(payload), deferred=ctx.deferred
    )


@router.register("customers/delete", model=DeletedResourcePayload)
async def on_customer_delete(ctx: DeliveryContext, payload: DeletedResourcePayload) -> None:
    await customers.delete_customer(ctx.session, ctx.shop_id, payload.id)
