"""Read-API models (camelCase on the wire). Never table models."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
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


def _not_bool(value: object) -> object:
    # A validator, not StrictInt: Litestar validates bodies with ``strict=False``, which overrides
    # field-level strictness, and ``true`` would become the id 1.
    if isinstance(value, bool):
        raise ValueError("an id must be a number or a string, not a boolean")
    return value


IdInput = Annotated[int | str, BeforeValidator(_not_bool)]


class StatsRequest(Schema):
    customer_ids: list[IdInput] = Field(
        max_length=1000,
        description="Up to 1000 ids: numbers, numeric strings or gid://shopify/Customer/ ids.",
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


class WriteBackSettingsRead(Schema):
    enabled: bool = Field(description="Write figures to Shopify customers and orders (SPEC §6.2).")
    customer_tags: bool = Field(description="Tag each customer `tierline-<tier>` (one tier tag).")
    order_risk_tag: bool = Field(
        description="Tag new COD orders `tierline-cod-rto-risk` (and set the order metafields)."
    )
    risk_min_cod_rto: int = Field(ge=1, description="COD RTO count from which a new COD order is tagged.")


class SettingsRead(Schema):
    tier_thresholds: TierThresholdsRead
    cod_gateways: list[str]
    rto_tags: dict[str, Literal["rto_initiated", "rto_in_transit", "rto_delivered"]]
    include_test_orders: bool
    write_back: WriteBackSettingsRead


class TierChangeItem(Schema):
    customer_id: IdStr
    from_: Tier | None = Field(alias="from")
    to: Tier
    ltv: MoneyStr


class RecalculationRead(Schema):
    total: int
    updated: int
    upgrades: list[TierChangeItem] = Field(description="The first 100 changes.")


class SyncRead(Schema):
    state: Literal["never", "queued", "running", "done", "failed"] = Field(
        description="The latest sync job's state: the first backfill, then each reconciliation."
    )
    started_at: datetime | None
    finished_at: datetime | None
    customers: int = Field(description="Customer records the latest job applied (so far, while it runs).")
    orders: int = Field(description="Order records the latest job applied (so far, while it runs).")
    last_error: str | None
    last_reconciled_at: datetime | None


class WriteBackRead(Schema):
    pending: int = Field(description="Customers and orders waiting to be written to Shopify.")
    failed: int = Field(description="Writes that failed after every attempt (replayable).")
    last_written_at: datetime | None = Field(description="When tierline last changed something at Shopify.")


class WriteBackFailureRead(Schema):
    id: IdStr
    kind: Literal["customer", "order"]
    resource_id: IdStr
    attempts: int
    last_error: str | None
    queued_at: datetime


class WriteBackReplayRead(Schema):
    replayed: int


class ShopRead(Schema):
    domain: str
    currency: str | None = Field(description="ISO 4217, from the Admin API; null until it was read.")
    timezone: str | None = Field(description="IANA time zone, from the Admin API; null until it was read.")
    installed: bool = Field(description="Installed, with an offline token stored.")
    scopes: str | None = Field(description="The scopes the stored token was granted (comma-separated).")
    sync: SyncRead
    write_back: WriteBackRead


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


# --- customers, orders and reports (SPEC §5) -----------------------------------------------

Rate = Annotated[float, Field(ge=0, le=1, description="A ratio between 0 and 1, rounded to 4 places.")]


TierReason = Literal["delivered", "rto", "manual", "batch", "thresholds"]


class CustomerSummaryRead(Schema):
    id: IdStr
    email: str | None
    phone: str | None = Field(
        description="The customer's phone, else the most recent order's (order, shipping, billing)."
    )
    first_name: str | None
    last_name: str | None
    tier: Tier
    ltv: MoneyStr
    order_count: int
    rto_count: int
    last_order_at: datetime | None = Field(
        description="created_at of the latest order that is neither deleted nor test."
    )


class TierHistoryRead(Schema):
    from_: Tier | None = Field(alias="from")
    to: Tier
    ltv: MoneyStr
    reason: TierReason
    order_id: IdStr | None
    order_name: str | None = Field(
        description="The order's name as Shopify shows it (`#1186`); null without an order or when "
        "the order was deleted since."
    )
    at: datetime


class CustomerMetricsRead(Schema):
    aov: MoneyStr
    total_orders: int
    cancelled_orders: int
    cod_orders: int
    prepaid_orders: int
    cod_share: Rate
    rto_rate: Rate
    return_count: int
    refunded_amount: MoneyStr
    first_order_at: datetime | None
    last_order_at: datetime | None
    days_since_last_order: int | None
    avg_days_between_orders: float | None


class ProductAffinityRead(Schema):
    product_id: IdStr
    title: str | None
    quantity: int
    orders: int
    spend: MoneyStr


class VariantAffinityRead(Schema):
    variant_id: IdStr
    product_id: IdStr | None
    title: str | None
    variant_title: str | None
    quantity: int
    orders: int
    spend: MoneyStr


class OptionValueAffinityRead(Schema):
    value: str
    quantity: int
    orders: int
    spend: MoneyStr


class VendorAffinityRead(Schema):
    vendor: str
    quantity: int
    orders: int
    spend: MoneyStr


class AffinityRead(Schema):
    top_products: list[ProductAffinityRead]
    top_variants: list[VariantAffinityRead]
    top_option_values: list[OptionValueAffinityRead]
    top_vendors: list[VendorAffinityRead]


class CustomerRead(CustomerSummaryRead):
    tier_of_record: Tier | None
    tier_history: list[TierHistoryRead] = Field(description="Newest first (at most 100).")
    metrics: CustomerMetricsRead
    affinity: AffinityRead
    recent_orders: list[OrderRead] = Field(description="The last 10 orders, newest first, enriched.")
    address_count: int


class AddressRead(Schema):
    first_name: str | None
    last_name: str | None
    company: str | None
    address1: str | None
    address2: str | None
    city: str | None
    province: str | None
    province_code: str | None
    country: str | None
    country_code: str | None
    zip: str | None
    phone: str | None
    times_used: int = Field(description="Orders that used this address (shipping or billing).")
    last_used_at: datetime | None
    is_default: bool


class OrderEnrichRequest(Schema):
    order_ids: list[IdInput] = Field(
        max_length=1000, description="Up to 1000 ids: numbers, numeric strings or gid://shopify/Order/ ids."
    )


class OrderItems(Schema):
    items: list[OrderRead]


class TopProductRead(Schema):
    product_id: IdStr
    title: str | None
    quantity: int
    spend: MoneyStr


class TopCustomerRead(Schema):
    id: IdStr
    email: str | None
    first_name: str | None
    last_name: str | None
    period_ltv: MoneyStr
    period_order_count: int
    tier: Tier
    ltv: MoneyStr
    last_order_at: datetime | None
    top_products: list[TopProductRead]


class TopCustomersRead(Schema):
    items: list[TopCustomerRead]
    next_cursor: None = Field(default=None, description="Always null: the report is one page.")
    period: Literal["30d", "90d", "365d", "all", "custom"]
    from_: datetime | None = Field(alias="from", description="Inclusive; null: since the first order.")
    to: datetime | None = Field(description="Exclusive; null: up to now and beyond.")


class TierCountsRead(Schema):
    platinum: int
    gold: int
    silver: int
    bronze: int


class TierSuggestionRead(Schema):
    tier_thresholds: TierThresholdsRead = Field(
        description="95th, 85th and 65th percentiles of the LTVs of customers with an eligible order, "
        "each rounded down to two significant digits, strictly decreasing."
    )
    counts: TierCountsRead = Field(description="Customers per tier with these thresholds.")
    based_on: int = Field(description="Customers with an eligible order: the LTVs drawn from.")


class OverviewRead(Schema):
    customer_count: int
    tiers: TierCountsRead
    repeat_purchase_rate: Rate
    aov: MoneyStr
    cod_share: Rate
    cod_rto_rate: Rate
    customers_at_risk: int
