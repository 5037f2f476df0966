"""Read-API models (camelCase on the wire). Never table models."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    create_model,
)
from pydantic.alias_generators import to_camel
from pydantic_core import CoreSchema, core_schema

from service.domain.tier_levels import PERCENTILES, THRESHOLD_TIERS, TIERS
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
ID_PATTERN = r"^\d+$"


class Amount(Decimal):
    """Money in a read model: a ``Decimal`` in Python, a string with exactly two decimals in JSON
    (``"414.95"``; half-up), so a view's amounts go into a schema as they are."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.decimal_schema(
            serialization=core_schema.plain_serializer_function_ser_schema(
                money, return_schema=core_schema.str_schema()
            )
        )


class ShopifyId(int):
    """A Shopify id in a read model: a 64-bit ``int`` in Python, a string of digits in JSON
    (JavaScript numbers lose precision above 2**53)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.int_schema(
            serialization=core_schema.plain_serializer_function_ser_schema(
                str, return_schema=core_schema.str_schema()
            )
        )


#: How the two look in the OpenAPI document (``service.api.schema_docs.WireTypes``).
WIRE_SCHEMAS: dict[type, dict[str, Any]] = {
    Amount: {"pattern": MONEY_PATTERN, "examples": ["414.95"], "description": "Decimal amount, two places."},
    ShopifyId: {"pattern": ID_PATTERN, "examples": ["7001234567890"], "description": "Shopify id."},
}

# The tier enum and the per-tier objects come from the one declaration of the tiers
# (service/domain/tier_levels.py); the type checker sees them as plain strings and schemas.
if TYPE_CHECKING:
    Tier = str
else:
    Tier = Literal[TIERS]


def money(amount: Decimal) -> str:
    """A decimal amount as JSON wants it here: a string with exactly two decimals."""
    # The rounding by position: as a keyword, the argument parsing costs as much as the rounding.
    return str(amount.quantize(TWO_PLACES, ROUND_HALF_UP))


class CustomerStatsRead(Schema):
    ltv: Amount
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
#: Most ids one ``StatsRequest`` or ``EnrichRequest`` may carry.
MAX_BODY_IDS = 1000


class StatsRequest(Schema):
    customer_ids: list[IdInput] = Field(
        max_length=MAX_BODY_IDS,
        description="Up to 1000 ids: numbers, numeric strings or gid://shopify/Customer/ ids.",
    )


class StatsResponse(Schema):
    stats: dict[str, CustomerStatsRead]


class OrderRead(Schema):
    id: ShopifyId
    name: str | None
    customer_id: ShopifyId | None
    email: str | None
    phone: str | None
    created_at: datetime | None
    updated_at: datetime | None
    processed_at: datetime | None
    cancelled_at: datetime | None
    financial_status: str | None
    fulfillment_status: str | None
    currency: str | None
    total_amount: Amount
    original_total: Amount
    payment_method: Literal["cod", "prepaid"]
    tracking_status: str | None
    delivered_at: datetime | None
    tags: list[str]
    test: bool
    customer_ltv: Amount | None
    customer_order_count: int | None
    customer_rto_count: int | None
    customer_tier: Tier | None


class TrackingStatusUpdate(Schema):
    status: str = Field(
        max_length=64, description="A tracking status, e.g. in_transit, delivered or rto_initiated."
    )


if TYPE_CHECKING:
    TierThresholdsRead = Schema
else:
    TierThresholdsRead = create_model(
        "TierThresholdsRead", __base__=Schema, **{tier: (Amount, ...) for tier in THRESHOLD_TIERS}
    )


class WriteBackSettingsRead(Schema):
    enabled: bool = Field(description="Write figures to Shopify customers and orders (docs/shopify-app.md).")
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
    customer_id: ShopifyId
    from_: Tier | None = Field(alias="from")
    to: Tier
    ltv: Amount


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
    id: str = Field(description="The write's own id (for replay).")
    kind: Literal["customer", "order"]
    resource_id: ShopifyId
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
    id: ShopifyId
    topic: Literal["customers/data_request", "customers/redact", "shop/redact"]
    status: str
    customer_id: ShopifyId | None
    shopify_request_id: ShopifyId | None
    received_at: datetime
    completed_at: datetime | None
    data: dict[str, object] | None = Field(
        description="customers/data_request: the customer's data as JSON; a summary for redactions."
    )


# --- customers, orders and reports (docs/api.md) -----------------------------------------------

Rate = Annotated[float, Field(ge=0, le=1, description="A ratio between 0 and 1, rounded to 4 places.")]


TierReason = Literal["delivered", "rto", "manual", "batch", "thresholds"]


class CustomerSummaryRead(Schema):
    id: ShopifyId
    email: str | None
    phone: str | None = Field(
        description="The customer's phone, else the most recent order's (order, shipping, billing)."
    )
    first_name: str | None
    last_name: str | None
    tier: Tier
    ltv: Amount
    order_count: int
    rto_count: int
    last_order_at: datetime | None = Field(
        description="created_at of the latest order that is neither deleted nor test."
    )


class TierHistoryRead(Schema):
    from_: Tier | None = Field(alias="from")
    to: Tier
    ltv: Amount
    reason: TierReason
    order_id: ShopifyId | None
    order_name: str | None = Field(
        description="The order's name as Shopify shows it (`#1186`); null without an order or when "
        "the order was deleted since."
    )
    at: datetime


class CustomerMetricsRead(Schema):
    aov: Amount
    total_orders: int
    cancelled_orders: int
    cod_orders: int
    prepaid_orders: int
    cod_share: Rate
    rto_rate: Rate
    return_count: int
    refunded_amount: Amount
    first_order_at: datetime | None
    last_order_at: datetime | None
    days_since_last_order: int | None
    avg_days_between_orders: float | None


class ProductAffinityRead(Schema):
    product_id: ShopifyId
    title: str | None
    quantity: int
    orders: int
    spend: Amount


class VariantAffinityRead(Schema):
    variant_id: ShopifyId
    product_id: ShopifyId | None
    title: str | None
    variant_title: str | None
    quantity: int
    orders: int
    spend: Amount


class OptionValueAffinityRead(Schema):
    value: str
    quantity: int
    orders: int
    spend: Amount


class VendorAffinityRead(Schema):
    #: The view calls it ``value``, like an option value's.
    vendor: str = Field(validation_alias=AliasChoices("vendor", "value"))
    quantity: int
    orders: int
    spend: Amount


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
        max_length=MAX_BODY_IDS,
        description="Up to 1000 ids: numbers, numeric strings or gid://shopify/Order/ ids.",
    )


class OrderItems(Schema):
    items: list[OrderRead]


class TopProductRead(Schema):
    product_id: ShopifyId
    title: str | None
    quantity: int
    spend: Amount


class TopCustomerRead(Schema):
    id: ShopifyId
    email: str | None
    first_name: str | None
    last_name: str | None
    period_ltv: Amount
    period_order_count: int
    tier: Tier
    ltv: Amount
    last_order_at: datetime | None
    top_products: list[TopProductRead]


class TopCustomersRead(Schema):
    items: list[TopCustomerRead]
    next_cursor: None = Field(default=None, description="Always null: the report is one page.")
    period: Literal["30d", "90d", "365d", "all", "custom"]
    from_: datetime | None = Field(alias="from", description="Inclusive; null: since the first order.")
    to: datetime | None = Field(description="Exclusive; null: up to now and beyond.")


if TYPE_CHECKING:
    TierCountsRead = Schema
else:
    TierCountsRead = create_model("TierCountsRead", __base__=Schema, **{tier: (int, ...) for tier in TIERS})


class TierSuggestionRead(Schema):
    tier_thresholds: TierThresholdsRead = Field(
        description=", ".join(f"{tier} at the {p}th" for tier, p in PERCENTILES.items())
        + " percentile of the LTVs of customers with an eligible order, each rounded down to two "
        "significant digits, strictly decreasing."
    )
    counts: TierCountsRead = Field(description="Customers per tier with these thresholds.")
    based_on: int = Field(description="Customers with an eligible order: the LTVs drawn from.")


class OverviewRead(Schema):
    customer_count: int
    tiers: TierCountsRead
    repeat_purchase_rate: Rate
    aov: Amount
    cod_share: Rate
    cod_rto_rate: Rate
    customers_at_risk: int
