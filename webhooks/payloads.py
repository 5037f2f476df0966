"""Pydantic models of the payload fields tierline reads (extra fields are ignored).

Shopify ids are positive 64-bit integers; money is Decimal (strings or numbers accepted, never
negative, never NaN); times become aware UTC; strings lose NUL characters, which PostgreSQL
cannot store. A payload that fails these models is marked ``failed`` with the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

MAX_BIGINT = 2**63 - 1


def _no_nul(value: str) -> str:
    return value.replace("\x00", "")


def _to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _none_to_empty_list(value: Any) -> Any:
    return [] if value is None else value


ShopifyId = Annotated[int, Field(ge=1, le=MAX_BIGINT, strict=False)]
Text = Annotated[str, AfterValidator(_no_nul)]
Amount = Annotated[Decimal, Field(ge=0, le=Decimal("1e14"), allow_inf_nan=False)]
UTCTime = Annotated[datetime, AfterValidator(_to_utc)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AddressPayload(Payload):
    id: ShopifyId | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    name: Text | None = None
    company: Text | None = None
    address1: Text | None = None
    address2: Text | None = None
    city: Text | None = None
    province: Text | None = None
    province_code: Text | None = None
    country: Text | None = None
    country_code: Text | None = None
    zip: Text | None = None
    phone: Text | None = None
    default: bool | None = None


class CustomerPayload(Payload):
    id: ShopifyId
    email: Text | None = None
    phone: Text | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    state: Text | None = None
    default_address: AddressPayload | None = None
    addresses: Annotated[list[AddressPayload], BeforeValidator(_none_to_empty_list)] = []
    created_at: UTCTime | None = None
    updated_at: UTCTime | None = None


class DeletedResourcePayload(Payload):
    """``customers/delete`` and ``orders/delete``: only the id matters."""

    id: ShopifyId


class LineItemPayload(Payload):
    id: ShopifyId
    product_id: ShopifyId | None = None
    variant_id: ShopifyId | None = None
    title: Text | None = None
    variant_title: Text | None = None
    vendor: Text | None = None
    sku: Text | None = None
    quantity: Annotated[int, Field(ge=0, le=10**9)] = 0
    price: Amount = Decimal(0)


class OrderPayload(Payload):
    id: ShopifyId
    name: Text | None = None
    email: Text | None = None
    phone: Text | None = None
    created_at: UTCTime | None = None
    updated_at: UTCTime | None = None
    processed_at: UTCTime | None = None
    cancelled_at: UTCTime | None = None
    financial_status: Text | None = None
    fulfillment_status: Text | None = None
    currency: Text | None = None
    total_price: Amount | None = None
    current_total_price: Amount | None = None
    payment_gateway_names: Annotated[list[Text], BeforeValidator(_none_to_empty_list)] = []
    tags: Text | None = None
    test: bool | None = None
    customer: CustomerPayload | None = None
    shipping_address: AddressPayload | None = None
    billing_address: AddressPayload | None = None
    line_items: Annotated[list[LineItemPayload], BeforeValidator(_none_to_empty_list)] = []
