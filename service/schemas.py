"""Read-API models (camelCase on the wire). Never table models."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from service.types import TWO_PLACES

T = TypeVar("T")


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Page(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Opaque cursor of the next page; null on the last page.")


class WebhookAck(Schema):
    status: Literal["accepted", "duplicate"]


class HealthRead(Schema):
    status: Literal["ok"]


class ReadyRead(Schema):
    status: Literal["ready", "unavailable"]
    database: Literal["ok", "unreachable"]
    backlog: int | None = None
    oldest_pending_age_seconds: float | None = None


class DeliveryRead(Schema):
    id: str
    webhook_id: str
    event_id: str | None
    topic: str
    shop_domain: str
    status: Literal["pending", "processed", "failed", "ignored", "dead"]
    attempts: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None


class ReplayRead(Schema):
    replayed: int


MONEY_PATTERN = r"^-?\d+\.\d{2}$"
MoneyStr = Annotated[
    str, Field(pattern=MONEY_PATTERN, examples=["414.95"], description="Decimal amount, two places.")
]
IdStr = Annotated[str, Field(pattern=r"^\d+$", examples=["7001234567890"], description="Shopify id.")]
Tier = Literal["platinum", "gold", "silver", "bronze"]


def money(amount: Decimal) -> str:
    """A decimal amount as JSON wants it here: a string with exactly two decimals."""
    return str(amount.quantize(TWO_PLACES, rounding=ROUND_HALF_UP))


class CustomerStatsRead(Schema):
    ltv: MoneyStr
    order_count: int
    rto_count: int
    tier: Tier


class StatsRequest(Schema):
    customer_ids: list[str | int] = Field(
        max_length=1000, description="Up to 1000 ids: numbers, numeric strings or gid://shopify/Customer/ ids."
    )


class StatsResponse(Schema):
    stats: dict[str, CustomerStatsRead]


class OrderRead(Schema):
    id: IdStr
    name: str | None
    customer_id: IdStr | None
    email: str | None
    phone: str | None
    created_at: datetime | None
    updated_at: datetime | None
    processed_at: datetime | None
    cancelled_at: datetime | None
    financial_status: str | None
    fulfillment_status: str | None
    currency: str | None
    total_amount: MoneyStr
    original_total: MoneyStr
    payment_method: Literal["cod", "prepaid"]
    tracking_status: str | None
    delivered_at: datetime | None
    tags: list[str]
    test: bool
    customer_ltv: MoneyStr | None
    customer_order_count: int | None
    customer_rto_count: int | None
    customer_tier: Tier | None


class TrackingStatusUpdate(Schema):
    status: str = Field(max_length=64, description="A tracking status of SPEC §4.2.")


class TierThresholdsRead(Schema):
    platinum: MoneyStr
    gold: MoneyStr
    silver: MoneyStr


class SettingsRead(Schema):
    tier_thresholds: TierThresholdsRead
    cod_gateways: list[str]
    rto_tags: dict[str, Literal["rto_initiated", "rto_in_transit", "rto_delivered"]]
    include_test_orders: bool


class TierChangeItem(Schema):
    customer_id: IdStr
    from_: Tier | None = Field(alias="from")
    to: Tier
    ltv: MoneyStr


class RecalculationRead(Schema):
    total: int
    updated: int
    upgrades: list[TierChangeItem] = Field(description="The first 100 changes.")


class InstallRead(Schema):
    shop: str
    installed: bool
    scopes: str


class ComplianceRequestRead(Schema):
    id: IdStr
    topic: Literal["customers/data_request", "customers/redact", "shop/redact"]
    status: str
    customer_id: IdStr | None
    shopify_request_id: IdStr | None
    received_at: datetime
    completed_at: datetime | None
    data: dict[str, object] | None = Field(
        description="customers/data_request: the customer's data as JSON; a summary for redactions."
    )
