"""Pydantic models of the payload fields tierline reads (extra fields are ignored).

Shopify ids are positive 64-bit integers; money is Decimal (strings or numbers accepted, never
NaN, never negative but for an order's totals); times become aware UTC; strings lose NUL
characters, which PostgreSQL cannot store (:meth:`Payload.from_body`). A payload that fails these
models is marked ``failed`` with the reason.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

MAX_BIGINT = 2**63 - 1


#: ``\u0000`` in a JSON text, unless its backslash is itself escaped (``\\u0000`` is a
#: backslash and the characters ``u0000``). JSON has no other way to write a NUL: a raw NUL byte
#: in a string is invalid JSON and is refused by the parser.
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def without_nul(body: bytes) -> bytes:
    r"""A JSON body whose strings have lost their NUL characters, which PostgreSQL cannot store.

    One pass over the bytes, before parsing, instead of a Python call per string field (about
    55 per order, 6 % of the worker's time, docs/benchmarks.md); a body without any ``\u0000``
    is returned as it is.
    """
    if b"\\u0000" not in body:
        return body
    return _NUL_ESCAPE.sub(rb"\1", body)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:  # an offset time at the edge of the datetime range
        raise ValueError("time out of range") from exc


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("an id must be a number, not a boolean")
    return value


def _none_to_empty_list(value: Any) -> Any:
    return [] if value is None else value


ShopifyId = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=MAX_BIGINT)]
#: A string field (its NULs are gone before validation: :meth:`Payload.from_body`).
Text = str
Amount = Annotated[Decimal, Field(ge=0, le=Decimal("1e14"), allow_inf_nan=False)]
#: An order total: normally positive, but stored as sent when not (docs/domain.md: an order with a
#: negative total is kept and counts nowhere in LTV, like a zero-value one).
SignedAmount = Annotated[Decimal, Field(ge=Decimal("-1e14"), le=Decimal("1e14"), allow_inf_nan=False)]
UTCTime = Annotated[datetime, AfterValidator(_to_utc)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        """Validate a delivery's raw JSON body (raises ``ValidationError``); NULs are left out."""
        return cls.model_validate_json(without_nul(body))

    def mentions(self) -> tuple[frozenset[int], frozenset[int]]:
        """The (customer ids, order ids) whose data this payload carries: after a redaction of
        one of them, the stored body is redacted too."""
        return frozenset(), frozenset()


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

    def mentions(self) -> tuple[frozenset[int], frozenset[int]]:
        return frozenset([self.id]), frozenset()


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
    total_price: SignedAmount | None = None
    current_total_price: SignedAmount | None = None
    payment_gateway_names: Annotated[list[Text], BeforeValidator(_none_to_empty_list)] = []
    tags: Text | None = None
    test: bool | None = None
    customer: CustomerPayload | None = None
    shipping_address: AddressPayload | None = None
    billing_address: AddressPayload | None = None
    line_items: Annotated[list[LineItemPayload], BeforeValidator(_none_to_empty_list)] = []
    fulfillments: Annotated[list[FulfillmentPayload], BeforeValidator(_none_to_empty_list)] = []

    def mentions(self) -> tuple[frozenset[int], frozenset[int]]:
        customers = frozenset([self.customer.id]) if self.customer is not None else frozenset()
        return customers, frozenset([self.id])


class FulfillmentPayload(Payload):
    """``fulfillments/create|update`` and the items of an order's ``fulfillments``."""

    id: ShopifyId
    order_id: ShopifyId
    status: Text | None = None
    shipment_status: Text | None = None
    tracking_company: Text | None = None
    tracking_number: Text | None = None
    created_at: UTCTime | None = None
    updated_at: UTCTime | None = None

    def mentions(self) -> tuple[frozenset[int], frozenset[int]]:
        return frozenset(), frozenset([self.order_id])


class FulfillmentEventPayload(Payload):
    id: ShopifyId
    fulfillment_id: ShopifyId
    order_id: ShopifyId
    status: Annotated[str, Field(min_length=1, max_length=64)]
    happened_at: UTCTime | None = None
    created_at: UTCTime | None = None

    def mentions(self) -> tuple[frozenset[int], frozenset[int]]:
        return frozenset(), frozenset([self.order_id])


class OrderRef(Payload):
    id: ShopifyId


class ReturnPayload(Payload):
    """``returns/request|approve|decline|close``: the order is ``order.id`` or ``order_id``."""

    id: ShopifyId
    name: Text | None = None
    order: OrderRef | None = None
    order_id: ShopifyId | None = None

    @property
    def order_ref(self) -> int | None:
        return self.order.id if self.order is not None else self.order_id

    def mentions(self) -> tuple[frozenset[int], frozenset[int]]:
        return frozenset(), frozenset([self.order_ref]) if self.order_ref is not None else frozenset()


class RefundTransactionPayload(Payload):
    kind: Text | None = None
    status: Text | None = None
    amount: Amount = Decimal(0)


class RefundLineItemPayload(Payload):
    quantity: Annotated[int, Field(ge=0, le=10**9)] = 0
    restock_type: Text | None = None


class RefundPayload(Payload):
    id: ShopifyId
    order_id: ShopifyId
    created_at: UTCTime | None = None
    transactions: Annotated[list[RefundTransactionPayload], BeforeValidator(_none_to_empty_list)] = []
    refund_line_items: Annotated[list[RefundLineItemPayload], BeforeValidator(_none_to_empty_list)] = []
    #: Present (an object) when the refund belongs to a return.
    return_: dict[str, Any] | None = Field(default=None, alias="return")

    def mentions(self) -> tuple[frozenset[int], frozenset[int]]:
        return frozenset(), frozenset([self.order_id])


OrderPayload.model_rebuild()


class ComplianceCustomer(Payload):
    id: ShopifyId | None = None
    email: Text | None = None
    phone: Text | None = None


class DataRequestRef(Payload):
    id: ShopifyId | None = None


class CustomersDataRequestPayload(Payload):
    shop_domain: Text | None = None
    customer: ComplianceCustomer
    orders_requested: Annotated[list[ShopifyId], BeforeValidator(_none_to_empty_list)] = []
    data_request: DataRequestRef | None = None

    def mentions(self) -> tuple[frozenset[int], frozenset[int]]:
        customers = frozenset([self.customer.id]) if self.customer.id is not None else frozenset()
        return customers, frozenset(self.orders_requested)


class CustomersRedactPayload(Payload):
    shop_domain: Text | None = None
    customer: ComplianceCustomer
    orders_to_redact: Annotated[list[ShopifyId], BeforeValidator(_none_to_empty_list)] = []

    def mentions(self) -> tuple[frozenset[int], frozenset[int]]:
        customers = frozenset([self.customer.id]) if self.customer.id is not None else frozenset()
        return customers, frozenset(self.orders_to_redact)


class ShopRedactPayload(Payload):
    shop_id: ShopifyId | None = None
    shop_domain: Text | None = None


class AppUninstalledPayload(Payload):
    """``app/uninstalled`` carries the Shop resource."""

    id: ShopifyId | None = None
    name: Text | None = None
    currency: Text | None = None
    iana_timezone: Text | None = None
    #: The shop's ``*.myshopify.com`` domain (``domain`` is its own storefront domain, if any).
    myshopify_domain: Text | None = None
