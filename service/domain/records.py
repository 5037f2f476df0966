"""Snapshots of Shopify resources as the domain receives them (from webhooks or a backfill).

Both the webhook handlers and ``tierline sync`` build these, so one set of upsert rules applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    id: int
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    state: str | None = None
    default_address: dict[str, Any] | None = None
    addresses: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LineSnapshot:
    id: int
    product_id: int | None
    variant_id: int | None
    title: str | None
    variant_title: str | None
    vendor: str | None
    sku: str | None
    quantity: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    id: int
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    processed_at: datetime | None = None
    cancelled_at: datetime | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    currency: str | None = None
    total_price: Decimal | None = None
    current_total_price: Decimal | None = None
    payment_gateway_names: list[str] = field(default_factory=list)
    tags: str = ""
    test: bool = False
    shipping_address: dict[str, Any] | None = None
    billing_address: dict[str, Any] | None = None
    lines: list[LineSnapshot] = field(default_factory=list)
    customer: CustomerSnapshot | None = None
    fulfillments: list[FulfillmentSnapshot] = field(default_factory=list)

    @property
    def total_amount(self) -> Decimal:
        """docs/domain.md: ``current_total_price`` (edits, refunds, returns), else ``total_price``."""
        if self.current_total_price is not None:
            return self.current_total_price
        return self.total_price if self.total_price is not None else Decimal(0)


@dataclass(frozen=True, slots=True)
class FulfillmentSnapshot:
    id: int
    order_id: int
    status: str | None = None
    shipment_status: str | None = None
    tracking_company: str | None = None
    tracking_number: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FulfillmentEventSnapshot:
    id: int
    fulfillment_id: int
    order_id: int
    status: str
    happened_at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefundSnapshot:
    id: int
    order_id: int
    amount: Decimal
    returned_quantity: int
    created_at: datetime | None = None
