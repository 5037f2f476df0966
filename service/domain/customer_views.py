"""Customers as the read API shows them (docs/api.md): the list, the profile, affinity, addresses.

Figures (LTV, order count, COD RTO count, tier) always come from :func:`stats.read`. The list is
one keyset statement driven by ``customer_stats`` (so an LTV sort with a tier filter is a range
scan of ``ix_customer_stats_shop_ltv``) plus that one batched stats read per page. Every
customer record has a ``customer_stats`` row: ``upsert_customer`` creates it in the same
transaction as the record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import keyset, stats
from service.domain.order_views import EnrichedOrder, list_orders
from service.domain.pagination import decode_cursor, encode_cursor
from service.domain.settings import ShopSettings
from service.domain.tier_levels import TIERS, spoken_list
from service.domain.tiers import ltv_bounds
from service.errors import BadRequestError, UnprocessableError
from service.models import (
    CUSTOMER_NAME_KEY_SQL,
    Customer,
    CustomerStats,
    Order,
    OrderLine,
    Refund,
    TierChange,
)
from service.types import Money

customers = Customer.__table__  # type: ignore[attr-defined]
customer_stats = CustomerStats.__table__  # type: ignore[attr-defined]
orders = Order.__table__  # type: ignore[attr-defined]
order_lines = OrderLine.__table__  # type: ignore[attr-defined]
refunds = Refund.__table__  # type: ignore[attr-defined]
tier_changes = TierChange.__table__  # type: ignore[attr-defined]

ZERO = Decimal("0")
SORTS = ("ltv", "orderCount", "lastOrderAt", "name")
MAX_SEARCH_LENGTH = 100
RECENT_ORDERS = 10
TOP_ITEMS = 5
MAX_TIER_HISTORY = 100
MAX_ADDRESSES = 250
DEFAULT_VARIANT_TITLE = "default title"
#: Larger amounts cannot be stored (``NUMERIC(20,4)``), so a cursor carrying one is malformed.
MAX_AMOUNT = Decimal("1e15")

#: The name sort key, inline SQL identical to the index expression of ``ix_customers_shop_name``.
NAME_KEY = sa.literal_column(CUSTOMER_NAME_KEY_SQL.format(t="customers."), sa.Text())


def _sort_order(sort: str, people: Any, name_key: Any) -> keyset.KeysetOrder:
    """Each sort with id as its tie-breaker, in the direction of the sort."""
    if sort == "ltv":
        return keyset.KeysetOrder(customer_stats.c.ltv, customer_stats.c.customer_id, descending=True)
    if sort == "orderCount":
        return keyset.KeysetOrder(customer_stats.c.order_count, customer_stats.c.customer_id, descending=True)
    if sort == "lastOrderAt":
        return keyset.KeysetOrder(
            customer_stats.c.last_order_at, customer_stats.c.customer_id, descending=True, nullable=True
        )
    return keyset.KeysetOrder(name_key, people.c.id, descending=False, nullable=True)


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """A customer as the list shows them; the API's ``CustomerSummaryRead`` is read from it field
    by field (:func:`summary`)."""

    id: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    tier: str
    ltv: Decimal
    order_count: int
    rto_count: int
    last_order_at: datetime | None


def summary(row: Any, customer_id: int, figures: stats.Stats) -> CustomerSummary:
    """A customer's row (email, phone, names, last order) with their figures."""
    return CustomerSummary(
        id=customer_id,
        email=row.email,
        phone=row.phone,
        first_name=row.first_name,
        last_name=row.last_name,
        tier=figures.tier,
        ltv=figures.ltv,
        order_count=figures.order_count,
        rto_count=figures.rto_count,
        last_order_at=row.last_order_at,
    )


# --- input -----------------------------------------------------------------------------------


def parse_tiers(value: str | None) -> tuple[str, ...]:
    """``gold`` or ``gold,platinum`` (case-insensitive) → tiers in canonical order; ``422`` for
    an unknown name. Empty → no filter."""
    names = [part.strip().lower() for part in (value or "").split(",") if part.strip()]
    unknown = [name for name in names if name not in TIERS]
    if unknown:
        raise UnprocessableError(
            "unknown tier",
            errors=[
                {
                    "field": "tier",
                    "message": f"unknown tier {name[:32]!r}: use {spoken_list()}",
                }
                for name in unknown[:4]
            ],
        )
    return tuple(tier for tier in TIERS if tier in names)


def normalize_search(value: str | None) -> str | None:
    """Trimmed, inner whitespace collapsed, NUL characters dropped (PostgreSQL cannot compare
    them, and no stored text holds one); None when blank."""
    term = " ".join((value or "").replace("\x00", "").split())
    return term or None


# --- SQL pieces ------------------------------------------------------------------------------


def _blank_to_null(text: Any) -> Any:
    return sa.func.nullif(sa.func.trim(text), "")


#: An order's phone: the order's own, else the shipping address's, else the billing address's.
_ORDER_PHONE = sa.func.coalesce(
    _blank_to_null(orders.c.phone),
    _blank_to_null(orders.c.shipping_address["phone"].as_string()),
    _blank_to_null(orders.c.billing_address["phone"].as_string()),
)


def phone_sql(customer_phone: Any, customer_id: Any, shop_id: int, settings: ShopSettings) -> Any:
    """The customer's phone, else the phone of their most recent order that counts (not a test
    order, unless the shop counts them) and carries one."""
    from_orders = (
        sa.select(_ORDER_PHONE)
        .where(
            orders.c.shop_id == shop_id,
            orders.c.customer_id == customer_id,
            stats.counts_test(settings),
            _ORDER_PHONE.is_not(None),
        )
        .order_by(orders.c.created_at.desc(), orders.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    own = _blank_to_null(customer_phone)
    return sa.case((own.is_not(None), own), else_=from_orders)


def ltv_ranges(
    tiers: Iterable[str], thresholds: Mapping[str, Decimal]
) -> list[tuple[Decimal | None, Decimal | None]]:
    """The LTV ranges ``[low, high)`` of some tiers, adjacent ones merged (index range scans)."""
    bounds = sorted(
        (ltv_bounds(tier, thresholds) for tier in set(tiers)),
        key=lambda b: (b[0] is not None, b[0] if b[0] is not None else ZERO),
    )
    merged: list[tuple[Decimal | None, Decimal | None]] = []
    for low, high in bounds:
        if merged and merged[-1][1] is not None and merged[-1][1] == low:
            merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def _tier_condition(tiers: Sequence[str], thresholds: Mapping[str, Decimal]) -> Any:
    parts = []
    for low, high in ltv_ranges(tiers, thresholds):
        bounds = []
        if low is not None:
            bounds.append(customer_stats.c.ltv >= sa.literal(low, Money()))
        if high is not None:
            bounds.append(customer_stats.c.ltv < sa.literal(high, Money()))
        if not bounds:
            return None
        parts.append(sa.and_(*bounds))
    return sa.or_(*parts) if parts else None


def _search_condition(term: str) -> Any:
    needle = term.lower()
    return sa.or_(
        NAME_KEY.contains(needle, autoescape=True),
        sa.func.lower(customers.c.email).contains(needle, autoescape=True),
        customers.c.phone.contains(term, autoescape=True),
    )


# --- cursor positions ------------------------------------------------------------------------


def _encode_key(sort: str, value: Any) -> Any:
    if value is None:
        return None
    if sort == "ltv":
        return str(value)
    if sort == "lastOrderAt":
        return value.isoformat()
    return value


def is_bigint(value: Any) -> bool:
    """A JSON number that fits a BIGINT column (anything else would fail in the driver)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _decode_position(sort: str, position: list[Any]) -> tuple[Any, int]:
    if len(position) != 2:
        raise BadRequestError("malformed cursor")
    key, last_id = position
    if not is_bigint(last_id):
        raise BadRequestError("malformed cursor")
    try:
        if sort == "ltv" and isinstance(key, str):
            amount = Decimal(key)
            if amount.is_finite() and abs(amount) < MAX_AMOUNT:
                return amount, last_id
        elif sort == "orderCount" and is_bigint(key) and abs(key) < 2**31:
            return key, last_id
        elif sort == "lastOrderAt" and (key is None or isinstance(key, str)):
            moment = None if key is None else datetime.fromisoformat(key)
            if moment is None or moment.tzinfo is not None:
                return moment, last_id
        elif sort == "name" and (key is None or (isinstance(key, str) and "\x00" not in key)):
            return key, last_id
    except (ValueError, InvalidOperation):
        pass
    raise BadRequestError("malformed cursor")


# --- the list --------------------------------------------------------------------------------


async def list_customers(
    session: AsyncSession,
    shop_id: int,
    settings: ShopSettings,
    *,
    tiers: Sequence[str] = (),
    search: str | None = None,
    sort: str = "ltv",
    limit: int,
    cursor: str | None = None,
) -> tuple[list[CustomerSummary], str | None]:
    """``GET /api/customers``: one keyset page and the cursor of the next one (None at the end)."""
    term = normalize_search(search)
    filters: dict[str, Any] = {"sort": sort, "tier": list(tiers), "search": term}
    after = _decode_position(sort, decode_cursor(cursor, "customers", filters)) if cursor else None
    people: Any = customers
    name_key: Any = NAME_KEY
    if term is not None:
        # A substring match cannot use a B-tree index: find the matching customers once (one
        # scan, materialized on PostgreSQL) and sort only those, instead of walking the sort's
        # index through every customer when the matches are few.
        people = (
            sa.select(
                customers.c.shop_id,
                customers.c.id,
                customers.c.email,
                customers.c.phone,
                customers.c.first_name,
                customers.c.last_name,
                NAME_KEY.label("name_key"),
            )
            .where(customers.c.shop_id == shop_id, _search_condition(term))
            .cte("matches")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        name_key = people.c.name_key
    order = _sort_order(sort, people, name_key)
    base = (
        sa.select(
            people.c.id,
            people.c.email,
            people.c.phone,
            people.c.first_name,
            people.c.last_name,
            customer_stats.c.last_order_at,
        )
        .select_from(stats.with_customer_records(people))
        .where(customer_stats.c.shop_id == shop_id, people.c.shop_id == shop_id)
    )
    if tiers:
        condition = _tier_condition(tiers, settings.tier_thresholds)
        if condition is not None:
            base = base.where(condition)
    page = keyset.page(base, order, after, limit)
    rows = (
        await session.execute(
            sa.select(
                page.c.id,
                page.c.email,
                phone_sql(page.c.phone, page.c.id, shop_id, settings).label("phone"),
                page.c.first_name,
                page.c.last_name,
                page.c.last_order_at,
                page.c[keyset.SORT_KEY],
                page.c[keyset.SORT_ID],
            ).order_by(*keyset.ordering(page, order))
        )
    ).all()
    shown = rows[:limit]
    figures = await stats.read(session, shop_id, [int(r.id) for r in shown], settings)
    items = [summary(r, int(r.id), figures[int(r.id)]) for r in shown]
    next_cursor = None
    if len(rows) > limit:
        last = shown[-1]
        position = [_encode_key(sort, last._mapping[keyset.SORT_KEY]), int(last._mapping[keyset.SORT_ID])]
        next_cursor = encode_cursor("customers", filters, position)
    return items, next_cursor


# --- the profile -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierHistoryEntry:
    from_tier: str | None
    to_tier: str
    ltv: Decimal
    reason: str
    order_id: int | None
    at: datetime
    #: The order's name as Shopify shows it (``#1186``); None without an order, or when the order
    #: was deleted since.
    order_name: str | None = None


@dataclass(frozen=True, slots=True)
class Metrics:
    aov: Decimal
    total_orders: int
    cancelled_orders: int
    cod_orders: int
    prepaid_orders: int
    cod_share: float
    rto_rate: float
    return_count: int
    refunded_amount: Decimal
    first_order_at: datetime | None
    last_order_at: datetime | None
    days_since_last_order: int | None
    avg_days_between_orders: float | None


@dataclass(frozen=True, slots=True)
class ProductAffinity:
    product_id: int
    title: str | None
    quantity: int
    orders: int
    spend: Decimal


@dataclass(frozen=True, slots=True)
class VariantAffinity:
    variant_id: int
    product_id: int | None
    title: str | None
    variant_title: str | None
    quantity: int
    orders: int
    spend: Decimal


@dataclass(frozen=True, slots=True)
class ValueAffinity:
    """An option value (``Red``) or a vendor."""

    value: str
    quantity: int
    orders: int
    spend: Decimal


@dataclass(frozen=True, slots=True)
class Affinity:
    top_products: list[ProductAffinity]
    top_variants: list[VariantAffinity]
    top_option_values: list[ValueAffinity]
    top_vendors: list[ValueAffinity]


@dataclass(frozen=True, slots=True)
class Address:
    fields: dict[str, str | None]
    times_used: int
    last_used_at: datetime | None
    is_default: bool


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    summary: CustomerSummary
    tier_of_record: str | None
    tier_history: list[TierHistoryEntry]
    metrics: Metrics
    affinity: Affinity
    recent_orders: list[EnrichedOrder]
    address_count: int


def ratio(part: int, whole: int) -> float:
    """A rate between 0 and 1, rounded to 4 places; 0 when there is nothing to divide."""
    return round(part / whole, 4) if whole else 0.0


async def _customer_row(session: AsyncSession, shop_id: int, customer_id: int, settings: ShopSettings) -> Any:
    return (
        await session.execute(
            sa.select(
                customers.c.id,
                customers.c.email,
                phone_sql(customers.c.phone, customers.c.id, shop_id, settings).label("phone"),
                customers.c.first_name,
                customers.c.last_name,
                customers.c.default_address,
                customers.c.addresses,
                customer_stats.c.last_order_at,
                customer_stats.c.tier_of_record,
            )
            .select_from(
                customers.outerjoin(
                    customer_stats,
                    sa.and_(
                        customer_stats.c.shop_id == customers.c.shop_id,
                        customer_stats.c.customer_id == customers.c.id,
                    ),
                )
            )
            .where(customers.c.shop_id == shop_id, customers.c.id == customer_id)
        )
    ).first()


async def customer_profile(
    session: AsyncSession, shop_id: int, customer_id: int, settings: ShopSettings, *, now: datetime
) -> CustomerProfile | None:
    """``GET /api/customers/{id}``; None when the shop has no such customer."""
    row = await _customer_row(session, shop_id, customer_id, settings)
    if row is None:
        return None
    figures = (await stats.read(session, shop_id, [customer_id], settings))[customer_id]
    found = summary(row, customer_id, figures)
    history = (
        await session.execute(
            sa.select(
                tier_changes.c.from_tier,
                tier_changes.c.to_tier,
                tier_changes.c.ltv,
                tier_changes.c.reason,
                tier_changes.c.order_id,
                tier_changes.c.at,
                orders.c.name.label("order_name"),
            )
            .select_from(
                tier_changes.outerjoin(
                    orders,
                    sa.and_(
                        orders.c.shop_id == tier_changes.c.shop_id, orders.c.id == tier_changes.c.order_id
                    ),
                )
            )
            .where(tier_changes.c.shop_id == shop_id, tier_changes.c.customer_id == customer_id)
            .order_by(tier_changes.c.id.desc())
            .limit(MAX_TIER_HISTORY)
        )
    ).all()
    recent, _ = await list_orders(session, shop_id, settings, customer_id=customer_id, limit=RECENT_ORDERS)
    addresses = await _addresses(session, shop_id, customer_id, settings, row)
    return CustomerProfile(
        summary=found,
        tier_of_record=row.tier_of_record,
        tier_history=[
            TierHistoryEntry(h.from_tier, h.to_tier, h.ltv, h.reason, h.order_id, h.at, h.order_name)
            for h in history
        ],
        metrics=await _metrics(session, shop_id, customer_id, settings, figures, row.last_order_at, now),
        affinity=await _affinity(session, shop_id, customer_id, settings),
        recent_orders=recent,
        address_count=len(addresses),
    )


async def _metrics(
    session: AsyncSession,
    shop_id: int,
    customer_id: int,
    settings: ShopSettings,
    figures: stats.Stats,
    last_order_at: datetime | None,
    now: datetime,
) -> Metrics:
    counted = stats.counts_test(settings)
    not_test = orders.c.test.is_(False)
    cod = orders.c.payment_method == "cod"

    def count(condition: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    totals = (
        await session.execute(
            sa.select(
                count(counted).label("total"),
                count(sa.and_(counted, orders.c.cancelled_at.is_not(None))).label("cancelled"),
                count(sa.and_(counted, cod)).label("cod"),
                count(sa.and_(counted, sa.not_(cod))).label("prepaid"),
                sa.func.min(sa.case((not_test, orders.c.created_at))).label("first"),
                sa.func.count(sa.case((not_test, orders.c.created_at))).label("dated"),
            ).where(orders.c.shop_id == shop_id, orders.c.customer_id == customer_id)
        )
    ).one()
    refund_totals = (
        await session.execute(
            sa.select(
                count(refunds.c.returned_quantity > 0).label("returns"),
                sa.func.coalesce(sa.func.sum(refunds.c.amount), sa.literal(ZERO, Money())).label("amount"),
            )
            .select_from(
                refunds.join(
                    orders, sa.and_(orders.c.shop_id == refunds.c.shop_id, orders.c.id == refunds.c.order_id)
                )
            )
            .where(refunds.c.shop_id == shop_id, orders.c.customer_id == customer_id, counted)
        )
    ).one()
    first: datetime | None = totals.first
    days_since = None
    if last_order_at is not None:
        days_since = max(0, int((now - last_order_at).total_seconds() // 86400))
    average = None
    dated = int(totals.dated)
    if first is not None and last_order_at is not None and dated >= 2:
        average = round((last_order_at - first).total_seconds() / 86400 / (dated - 1), 2)
    cod_orders = int(totals.cod)
    return Metrics(
        aov=figures.ltv / figures.order_count if figures.order_count else ZERO,
        total_orders=int(totals.total),
        cancelled_orders=int(totals.cancelled),
        cod_orders=cod_orders,
        prepaid_orders=int(totals.prepaid),
        cod_share=ratio(cod_orders, int(totals.total)),
        rto_rate=ratio(figures.rto_count, cod_orders),
        return_count=int(refund_totals.returns),
        refunded_amount=refund_totals.amount,
        first_order_at=first,
        last_order_at=last_order_at,
        days_since_last_order=days_since,
        avg_days_between_orders=average,
    )


# --- affinity --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    quantity: int = 0
    spend: Decimal = ZERO
    orders: set[int] = field(default_factory=set)
    title: str | None = None
    variant_title: str | None = None
    product_id: int | None = None

    def add(self, order_id: int, quantity: int, spend: Decimal) -> None:
        self.quantity += quantity
        self.spend += spend
        self.orders.add(order_id)


def _greatest(current: str | None, new: str | None) -> str | None:
    """Titles can differ between lines (a product renamed): keep one, deterministically."""
    if new is None:
        return current
    return new if current is None or new > current else current


def _top(tallies: Mapping[Any, _Tally], limit: int = TOP_ITEMS) -> list[tuple[Any, _Tally]]:
    """By spend, then quantity, descending; then by key, for a stable answer."""
    return sorted(tallies.items(), key=lambda kv: (-kv[1].spend, -kv[1].quantity, str(kv[0])))[:limit]


def option_values(variant_title: str | None) -> list[str]:
    """``"Red / M"`` → ``["Red", "M"]``; Shopify's ``Default Title`` has none."""
    if not variant_title or variant_title.strip().lower() == DEFAULT_VARIANT_TITLE:
        return []
    return list(dict.fromkeys(" ".join(part.split()) for part in variant_title.split(" / ") if part.strip()))


def eligible_lines(shop_id: int, settings: ShopSettings) -> sa.Select[Any]:
    """Lines (quantity > 0) of eligible orders (docs/domain.md) of the shop, with their order's customer."""
    return (
        sa.select(
            orders.c.customer_id,
            order_lines.c.order_id,
            order_lines.c.product_id,
            order_lines.c.variant_id,
            order_lines.c.title,
            order_lines.c.variant_title,
            order_lines.c.vendor,
            order_lines.c.quantity,
            order_lines.c.price,
        )
        .select_from(
            order_lines.join(
                orders,
                sa.and_(orders.c.shop_id == order_lines.c.shop_id, orders.c.id == order_lines.c.order_id),
            )
        )
        .where(orders.c.shop_id == shop_id, stats.eligible(settings), order_lines.c.quantity > 0)
    )


def affinity_of(lines: Iterable[Any], limit: int = TOP_ITEMS) -> Affinity:
    """Top products, variants, option values and vendors of some lines, by spend then quantity."""
    products: dict[int, _Tally] = {}
    variants: dict[int, _Tally] = {}
    values: dict[str, _Tally] = {}
    vendors: dict[str, _Tally] = {}
    for line in lines:
        order_id, quantity = int(line.order_id), int(line.quantity)
        spend = line.price * quantity
        if line.product_id is not None:
            tally = products.setdefault(int(line.product_id), _Tally())
            tally.add(order_id, quantity, spend)
            tally.title = _greatest(tally.title, line.title)
        if line.variant_id is not None:
            tally = variants.setdefault(int(line.variant_id), _Tally())
            tally.add(order_id, quantity, spend)
            tally.title = _greatest(tally.title, line.title)
            tally.variant_title = _greatest(tally.variant_title, line.variant_title)
            if line.product_id is not None:
                tally.product_id = int(line.product_id)
        for value in option_values(line.variant_title):
            values.setdefault(value, _Tally()).add(order_id, quantity, spend)
        vendor = " ".join((line.vendor or "").split())
        if vendor:
            vendors.setdefault(vendor, _Tally()).add(order_id, quantity, spend)
    return Affinity(
        top_products=[
            ProductAffinity(key, t.title, t.quantity, len(t.orders), t.spend)
            for key, t in _top(products, limit)
        ],
        top_variants=[
            VariantAffinity(key, t.product_id, t.title, t.variant_title, t.quantity, len(t.orders), t.spend)
            for key, t in _top(variants, limit)
        ],
        top_option_values=[
            ValueAffinity(key, t.quantity, len(t.orders), t.spend) for key, t in _top(values, limit)
        ],
        top_vendors=[
            ValueAffinity(key, t.quantity, len(t.orders), t.spend) for key, t in _top(vendors, limit)
        ],
    )


async def _affinity(
    session: AsyncSession, shop_id: int, customer_id: int, settings: ShopSettings
) -> Affinity:
    lines = (
        await session.execute(eligible_lines(shop_id, settings).where(orders.c.customer_id == customer_id))
    ).all()
    return affinity_of(lines)


# --- addresses -------------------------------------------------------------------------------

ADDRESS_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "address1",
    "address2",
    "city",
    "province",
    "province_code",
    "country",
    "country_code",
    "zip",
    "phone",
)
_SPACES = re.compile(r"\s+")


def _clean(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = _SPACES.sub(" ", str(value)).strip()
    return text or None


def normalize_address(raw: Any) -> dict[str, str | None] | None:
    """The address fields, trimmed and with inner whitespace collapsed; None when not an address."""
    if not isinstance(raw, dict):
        return None
    fields = {name: _clean(raw.get(name)) for name in ADDRESS_FIELDS}
    if not any(fields[name] for name in ("address1", "address2", "city", "zip")):
        return None
    return fields


def address_key(fields: Mapping[str, str | None]) -> tuple[str, ...]:
    """Addresses are the same when these agree, case-insensitively."""
    parts = (
        fields["address1"],
        fields["address2"],
        fields["city"],
        fields["province"] or fields["province_code"],
        fields["zip"],
        fields["country_code"] or fields["country"],
    )
    return tuple((part or "").casefold() for part in parts)


@dataclass(slots=True)
class _Seen:
    fields: dict[str, str | None]
    rank: int
    orders: set[int] = field(default_factory=set)
    last_used_at: datetime | None = None
    is_default: bool = False


def merge_addresses(customer_row: Any, order_rows: Iterable[Any]) -> list[Address]:
    """Distinct addresses of a customer record and its orders (newest first), most recently used
    first; the shown fields are those of the latest use (else of the customer record)."""
    seen: dict[tuple[str, ...], _Seen] = {}

    def note(raw: Any) -> _Seen | None:
        fields = normalize_address(raw)
        if fields is None:
            return None
        key = address_key(fields)
        if key not in seen:
            seen[key] = _Seen(fields=fields, rank=len(seen))
        return seen[key]

    for order in order_rows:
        for raw in (order.shipping_address, order.billing_address):
            entry = note(raw)
            if entry is not None:
                entry.orders.add(int(order.id))
                if order.created_at is not None and (
                    entry.last_used_at is None or order.created_at > entry.last_used_at
                ):
                    entry.last_used_at = order.created_at
    default = note(customer_row.default_address)
    if default is not None:
        default.is_default = True
    for raw in customer_row.addresses or []:
        note(raw)
    ordered = sorted(
        seen.values(),
        key=lambda e: (
            e.last_used_at is None,
            -(e.last_used_at.timestamp() if e.last_used_at else 0),
            not e.is_default,
            -len(e.orders),
            e.rank,
        ),
    )
    return [Address(e.fields, len(e.orders), e.last_used_at, e.is_default) for e in ordered]


async def _addresses(
    session: AsyncSession, shop_id: int, customer_id: int, settings: ShopSettings, customer_row: Any
) -> list[Address]:
    order_rows = (
        await session.execute(
            sa.select(orders.c.id, orders.c.created_at, orders.c.shipping_address, orders.c.billing_address)
            .where(
                orders.c.shop_id == shop_id, orders.c.customer_id == customer_id, stats.counts_test(settings)
            )
            .order_by(orders.c.created_at.desc(), orders.c.id.desc())
        )
    ).all()
    return merge_addresses(customer_row, order_rows)


async def customer_addresses(
    session: AsyncSession, shop_id: int, customer_id: int, settings: ShopSettings
) -> list[Address] | None:
    """``GET /api/customers/{id}/addresses`` (at most 250); None when the shop has no such customer."""
    row = await _customer_row(session, shop_id, customer_id, settings)
    if row is None:
        return None
    return (await _addresses(session, shop_id, customer_id, settings, row))[:MAX_ADDRESSES]
