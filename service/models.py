"""Database tables. Every row belongs to a shop; Shopify ids are 64-bit; money is Decimal.

Table models are never returned from endpoints (read models live in ``service.schemas``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service.types import BigIntPK, JSONType, Money, UTCDateTime, utc_now

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _utc(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class DeliveryStatus:
    """Inbox states. ``pending`` rows are claimed by the worker; the rest are terminal until replay."""

    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"
    IGNORED = "ignored"
    DEAD = "dead"
    ALL = (PENDING, PROCESSED, FAILED, IGNORED, DEAD)


class Shop(SQLModel, table=True):
    __tablename__ = "shops"

    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    domain: str = Field(max_length=255, unique=True)
    shopify_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    name: str | None = Field(default=None)
    currency: str | None = Field(default=None, max_length=8)
    iana_timezone: str | None = Field(default=None, max_length=64)
    settings: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    installed_at: datetime | None = _utc()
    uninstalled_at: datetime | None = _utc()
    #: Offline access token and refresh token, encrypted with TIERLINE_ENCRYPTION_KEY.
    access_token_enc: str | None = Field(default=None, sa_type=sa.Text)
    refresh_token_enc: str | None = Field(default=None, sa_type=sa.Text)
    token_expires_at: datetime | None = _utc()
    refresh_token_expires_at: datetime | None = _utc()
    scopes: str | None = Field(default=None, sa_type=sa.Text)
    #: Backfill bookkeeping: the running bulk operation and how far its results were applied.
    sync_state: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    last_synced_at: datetime | None = _utc()
    #: The token exchange of a first embedded load: held while one request exchanges (so
    #: concurrent loads exchange once), and the last refusal (shown, retried on the next load).
    token_exchange_until: datetime | None = _utc()
    token_error: str | None = Field(default=None, sa_type=sa.Text)
    token_error_at: datetime | None = _utc()


class JobState:
    """States of a sync job. ``queued`` and ``running`` are active: one at a time per shop."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ACTIVE = (QUEUED, RUNNING)


class ShopJob(SQLModel, table=True):
    """A durable backfill or reconciliation of one shop, run by a worker under a lease.

    Resume state (phase, bulk operation id, records applied) lives in ``shops.sync_state``,
    written in the same transactions as the records it counts; this row says who runs the job,
    when it may run next, and how it ended.
    """

    __tablename__ = "shop_jobs"
    __table_args__ = (
        sa.Index("ix_shop_jobs_due", "state", "next_run_at"),
        sa.Index("ix_shop_jobs_shop", "shop_id", "kind", "id"),
        sa.Index(
            "uq_shop_jobs_active",
            "shop_id",
            unique=True,
            sqlite_where=sa.text("state IN ('queued', 'running')"),
            postgresql_where=sa.text("state IN ('queued', 'running')"),
        ),
    )

    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    shop_id: int = Field(sa_type=sa.BigInteger, foreign_key="shops.id", ondelete="CASCADE")
    kind: str = Field(max_length=16)
    state: str = Field(default=JobState.QUEUED, max_length=16)
    #: Why it was queued: install, reinstall, schedule, retry, operator.
    trigger: str = Field(default="schedule", max_length=16)
    attempts: int = Field(default=0)
    next_run_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = _utc()
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    started_at: datetime | None = _utc()
    finished_at: datetime | None = _utc()
    customers: int = Field(default=0)
    orders: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_type=sa.Text)


class ApiKey(SQLModel, table=True):
    """A per-shop API key; only its SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    shop_id: int = Field(sa_type=sa.BigInteger, foreign_key="shops.id", ondelete="CASCADE", index=True)
    key_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    revoked_at: datetime | None = _utc()
    #: When the key last authenticated a request (recorded at most once a minute per key).
    last_used_at: datetime | None = _utc()


class OAuthStateUse(SQLModel, table=True):
    """OAuth state nonces a callback has used: each install redirect is accepted once.

    Only the SHA-256 of the nonce is kept, until the state cookie that carried it has expired
    (after that the cookie is refused anyway). Not shop-keyed: nothing in it is a shop's data.
    """

    __tablename__ = "oauth_state_uses"

    nonce_hash: str = Field(max_length=64, primary_key=True)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class WebhookDelivery(SQLModel, table=True):
    """The inbox: one row per Shopify delivery, stored before it is acknowledged."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index("ix_webhook_deliveries_claim", "status", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_shop_status", "shop_id", "status", "id"),
    )

    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    webhook_id: str = Field(max_length=255, unique=True)
    event_id: str | None = Field(default=None)
    topic: str = Field(max_length=255)
    shop_id: int = Field(sa_type=sa.BigInteger, foreign_key="shops.id", ondelete="CASCADE")
    shop_domain: str = Field(max_length=255)
    api_version: str | None = Field(default=None)
    triggered_at: datetime | None = _utc()
    received_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    body: bytes = Field(sa_type=sa.LargeBinary)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    processed_at: datetime | None = _utc()


class Customer(SQLModel, table=True):
    """A shop's customer. ``version_rank``/``version_at`` order competing snapshots (docs/architecture.md).

    rank 1: a ``customers/*`` payload, versioned by its ``updated_at``;
    rank 0: a stub built from an order's embedded ``customer`` object, versioned by the order's
    ``updated_at``. A snapshot applies when ``(rank, at)`` is not older than the stored one.
    """

    __tablename__ = "customers"

    shop_id: int = Field(sa_type=sa.BigInteger, foreign_key="shops.id", ondelete="CASCADE", primary_key=True)
    id: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    email: str | None = Field(default=None)
    phone: str | None = Field(default=None)
    first_name: str | None = Field(default=None)
    last_name: str | None = Field(default=None)
    state: str | None = Field(default=None)
    default_address: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    addresses: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    created_at: datetime | None = _utc()
    updated_at: datetime | None = _utc()
    version_rank: int = Field(default=0, sa_type=sa.SmallInteger)
    version_at: datetime | None = _utc()


#: The customers list's name sort key: lower-cased "first last", trimmed, NULL when blank. Written
#: as literal SQL that reads the same on SQLite and PostgreSQL (and matches PostgreSQL's own
#: rendering, so the migration comparison sees no difference); queries use the same text inline
#: (never bound parameters), so that PostgreSQL's planner matches the index expression.
CUSTOMER_NAME_KEY_SQL = (
    "nullif(ltrim(rtrim(lower((coalesce({t}first_name, '') || ' ') || coalesce({t}last_name, '')))), '')"
)
sa.Index(
    "ix_customers_shop_name",
    Customer.__table__.c.shop_id,  # type: ignore[attr-defined]
    sa.text(CUSTOMER_NAME_KEY_SQL.format(t="")),
    Customer.__table__.c.id,  # type: ignore[attr-defined]
)


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        sa.Index("ix_orders_shop_customer", "shop_id", "customer_id", "created_at", "id"),
        sa.Index("ix_orders_shop_created", "shop_id", "created_at", "id"),
        sa.Index("ix_orders_shop_tracking", "shop_id", "tracking_status", "created_at", "id"),
    )

    shop_id: int = Field(sa_type=sa.BigInteger, foreign_key="shops.id", ondelete="CASCADE", primary_key=True)
    id: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    name: str | None = Field(default=None)
    customer_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    email: str | None = Field(default=None)
    phone: str | None = Field(default=None)
    created_at: datetime | None = _utc()
    updated_at: datetime | None = _utc()
    processed_at: datetime | None = _utc()
    cancelled_at: datetime | None = _utc()
    financial_status: str | None = Field(default=None)
    fulfillment_status: str | None = Field(default=None)
    currency: str | None = Field(default=None)
    total_amount: Decimal = Field(default=Decimal(0), sa_type=Money)
    original_total: Decimal = Field(default=Decimal(0), sa_type=Money)
    payment_method: str = Field(default="prepaid")
    payment_gateway_names: list[str] = Field(default_factory=list, sa_type=JSONType)
    #: ``|name|name|`` of the lower-cased gateway names, so COD can be re-derived in SQL.
    gateway_key: str = Field(default="||", sa_type=sa.Text, sa_column_kwargs={"server_default": "||"})
    tracking_status: str | None = Field(default=None)
    delivered_at: datetime | None = _utc()
    #: What started the current RTO: ``tag``, ``return`` or ``api`` (None outside RTO).
    rto_source: str | None = Field(default=None)
    tags: str = Field(default="", sa_type=sa.Text)
    #: ``[[updated_at, tags], ...]`` of every snapshot seen (newest 64), applied or stale: when an
    #: RTO tag first appeared is derived from this set, whatever order the snapshots arrived in.
    rto_tag_log: list[list[str]] | None = Field(default=None, sa_type=JSONType)
    #: Every status set through ``PUT /api/orders/{id}/tracking-status``: ``[[at, status], ...]``.
    manual_log: list[list[str]] | None = Field(default=None, sa_type=JSONType)
    #: The tracking status over time, ``[[at, status], ...]`` where it changed, derived with
    #: ``tracking_status`` from the same facts: when the order became delivered or entered or left
    #: RTO, which the tier of record is evaluated at (docs/domain.md).
    status_log: list[list[str | None]] | None = Field(default=None, sa_type=JSONType)
    #: The latest time in ``status_log`` and ``manual_log``.
    last_status_at: datetime | None = _utc()
    #: Latest forward status set through ``PUT /api/orders/{id}/tracking-status``, and when.
    manual_status: str | None = Field(default=None)
    manual_status_at: datetime | None = _utc()
    #: Furthest RTO state ever set through the API, and when the first was set (RTO is forward-only).
    manual_rto_status: str | None = Field(default=None)
    manual_rto_at: datetime | None = _utc()
    test: bool = Field(default=False)
    shipping_address: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    billing_address: dict[str, Any] | None = Field(default=None, sa_type=JSONType)


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"

    shop_id: int = Field(sa_type=sa.BigInteger, primary_key=True)
    order_id: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    id: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    product_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    variant_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    title: str | None = Field(default=None, sa_type=sa.Text)
    variant_title: str | None = Field(default=None, sa_type=sa.Text)
    vendor: str | None = Field(default=None)
    sku: str | None = Field(default=None)
    quantity: int = Field(default=0)
    price: Decimal = Field(default=Decimal(0), sa_type=Money)


class Tombstone(SQLModel, table=True):
    """A deleted resource. Later deliveries of the same resource cannot bring it back."""

    __tablename__ = "tombstones"

    shop_id: int = Field(sa_type=sa.BigInteger, primary_key=True)
    resource: str = Field(max_length=32, primary_key=True)
    resource_id: int = Field(
        sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    deleted_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class Fulfillment(SQLModel, table=True):
    """A fulfillment, from ``fulfillments/*`` or an order's embedded ``fulfillments``."""

    __tablename__ = "fulfillments"
    __table_args__ = (sa.Index("ix_fulfillments_shop_order", "shop_id", "order_id"),)

    shop_id: int = Field(sa_type=sa.BigInteger, primary_key=True)
    id: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    order_id: int = Field(sa_type=sa.BigInteger)
    status: str | None = Field(default=None)
    shipment_status: str | None = Field(default=None)
    tracking_company: str | None = Field(default=None)
    tracking_number: str | None = Field(default=None)
    created_at: datetime | None = _utc()
    updated_at: datetime | None = _utc()


class FulfillmentEvent(SQLModel, table=True):
    __tablename__ = "fulfillment_events"
    __table_args__ = (sa.Index("ix_fulfillment_events_shop_order", "shop_id", "order_id"),)

    shop_id: int = Field(sa_type=sa.BigInteger, primary_key=True)
    id: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    fulfillment_id: int = Field(sa_type=sa.BigInteger)
    order_id: int = Field(sa_type=sa.BigInteger)
    status: str = Field()
    happened_at: datetime | None = _utc()
    created_at: datetime | None = _utc()


class Return(SQLModel, table=True):
    """A return. Its steps are placed in time by the deliveries' ``X-Shopify-Triggered-At``."""

    __tablename__ = "returns"
    __table_args__ = (sa.Index("ix_returns_shop_order", "shop_id", "order_id"),)

    shop_id: int = Field(sa_type=sa.BigInteger, primary_key=True)
    id: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    order_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    name: str | None = Field(default=None)
    requested_at: datetime | None = _utc()
    approved_at: datetime | None = _utc()
    declined_at: datetime | None = _utc()
    closed_at: datetime | None = _utc()


class Refund(SQLModel, table=True):
    __tablename__ = "refunds"
    __table_args__ = (sa.Index("ix_refunds_shop_order", "shop_id", "order_id"),)

    shop_id: int = Field(sa_type=sa.BigInteger, primary_key=True)
    id: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    order_id: int = Field(sa_type=sa.BigInteger)
    amount: Decimal = Field(default=Decimal(0), sa_type=Money)
    #: Items sent back (refund line items restocked as returns, or a linked return).
    returned_quantity: int = Field(default=0)
    created_at: datetime | None = _utc()


class CustomerStats(SQLModel, table=True):
    """Per-customer figures (docs/domain.md), recomputed from orders in the transaction that changes them.

    Keyed by the customer id orders carry, so figures exist even before the customer record.
    ``tierline check`` proves these equal to a recomputation from orders.
    """

    __tablename__ = "customer_stats"
    __table_args__ = (
        sa.Index("ix_customer_stats_shop_ltv", "shop_id", "ltv", "customer_id"),
        sa.Index("ix_customer_stats_shop_last_order", "shop_id", "last_order_at", "customer_id"),
        sa.Index("ix_customer_stats_shop_order_count", "shop_id", "order_count", "customer_id"),
    )

    shop_id: int = Field(sa_type=sa.BigInteger, primary_key=True)
    customer_id: int = Field(
        sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    ltv: Decimal = Field(default=Decimal(0), sa_type=Money)
    order_count: int = Field(default=0)
    rto_count: int = Field(default=0)
    last_order_at: datetime | None = _utc()
    tier_of_record: str | None = Field(default=None, max_length=16)


class TierChange(SQLModel, table=True):
    """History of a customer's tier of record."""

    __tablename__ = "tier_changes"
    __table_args__ = (sa.Index("ix_tier_changes_shop_customer", "shop_id", "customer_id", "id"),)

    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    shop_id: int = Field(sa_type=sa.BigInteger)
    customer_id: int = Field(sa_type=sa.BigInteger)
    from_tier: str | None = Field(default=None, max_length=16)
    to_tier: str = Field(max_length=16)
    ltv: Decimal = Field(sa_type=Money)
    reason: str = Field(max_length=16)
    order_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class TierEvaluation(SQLModel, table=True):
    """A shop-wide tier evaluation (``batch`` or ``thresholds``): at ``at``, every customer's tier
    of record was set to the live tier under ``rules`` (thresholds, whether test orders count);
    ``previous`` were the rules in effect before. Tier histories derive from orders and these."""

    __tablename__ = "tier_evaluations"
    __table_args__ = (sa.Index("ix_tier_evaluations_shop_at", "shop_id", "at", "id"),)

    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    shop_id: int = Field(sa_type=sa.BigInteger)
    at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    reason: str = Field(max_length=16)
    rules: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    previous: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)


class ComplianceRequest(SQLModel, table=True):
    """A privacy webhook (``customers/data_request``, ``customers/redact``, ``shop/redact``)
    and what tierline did about it; data requests keep the assembled export for the merchant."""

    __tablename__ = "compliance_requests"
    __table_args__ = (sa.Index("ix_compliance_requests_shop", "shop_id", "id"),)

    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    shop_id: int = Field(sa_type=sa.BigInteger)
    topic: str = Field(max_length=64)
    webhook_id: str = Field(max_length=255)
    shopify_request_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    customer_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    status: str = Field(default="completed", max_length=16)
    received_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    completed_at: datetime | None = _utc()
    result: dict[str, Any] | None = Field(default=None, sa_type=JSONType)


class WriteBackState:
    """States of a write-back row. ``pending`` rows are claimed by the sender."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    ALL = (PENDING, SENT, FAILED)


class WriteBackOutbox(SQLModel, table=True):
    """What tierline wants Shopify to hold for one customer or order (docs/shopify-app.md).

    One row per resource: a burst of changes coalesces into the latest ``desired`` state (its
    canonical JSON text, compared as text), queued in the transaction that changed the figures.
    ``version`` grows with every new desired state, so a sender marks a row ``sent`` only when
    what it wrote is still what is desired. ``written`` is the state last confirmed at Shopify.
    """

    __tablename__ = "write_back_outbox"
    __table_args__ = (
        sa.UniqueConstraint("shop_id", "kind", "resource_id"),
        sa.Index("ix_write_back_outbox_due", "state", "next_attempt_at"),
        sa.Index("ix_write_back_outbox_shop_state", "shop_id", "state"),
    )

    id: int | None = Field(default=None, sa_type=BigIntPK, primary_key=True)
    shop_id: int = Field(sa_type=sa.BigInteger, foreign_key="shops.id", ondelete="CASCADE")
    #: ``customer`` or ``order``
    kind: str = Field(max_length=16)
    resource_id: int = Field(sa_type=sa.BigInteger)
    desired: str = Field(sa_type=sa.Text)
    version: int = Field(default=1)
    state: str = Field(default=WriteBackState.PENDING, max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = _utc()
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    queued_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    written: str | None = Field(default=None, sa_type=sa.Text)
    last_written_at: datetime | None = _utc()


class WriteBackShop(SQLModel, table=True):
    """Per shop: the Admin API cost bucket as every worker process sees it, and the install-time
    setup (metafield definitions and tier segments) of write-back."""

    __tablename__ = "write_back_shops"

    shop_id: int = Field(sa_type=sa.BigInteger, foreign_key="shops.id", ondelete="CASCADE", primary_key=True)
    bucket_available: float = Field(default=0.0, sa_type=sa.Float)
    bucket_maximum: float = Field(default=0.0, sa_type=sa.Float)
    bucket_restore_rate: float = Field(default=0.0, sa_type=sa.Float)
    bucket_at: datetime | None = _utc()
    #: ``{"namespace": "app--…--tierline", "definitions": [...], "segments": {...}}``
    setup: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    setup_at: datetime | None = _utc()
    setup_next_at: datetime | None = _utc()
    setup_error: str | None = Field(default=None, sa_type=sa.Text)
    last_written_at: datetime | None = _utc()
