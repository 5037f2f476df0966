"""Reports (docs/api.md): top customers of a period and the shop overview.

Period figures come from eligible orders (docs/domain.md) by ``created_at`` in UTC, ``from``
inclusive and ``to`` exclusive. The all-time ranking is the LTV ranking itself, so it walks
``ix_customer_stats_shop_ltv`` instead of aggregating every order. Live figures (``ltv``,
``tier``) come from :func:`stats.read`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import stats
from service.domain.customer_views import ratio
from service.domain.settings import ShopSettings
from service.domain.tier_levels import TIERS
from service.domain.tiers import tier_sql
from service.errors import UnprocessableError
from service.models import Customer, CustomerStats, Order, OrderLine
from service.types import Money

customers = Customer.__table__  # type: ignore[attr-defined]
customer_stats = CustomerStats.__table__  # type: ignore[attr-defined]
orders = Order.__table__  # type: ignore[attr-defined]
order_lines = OrderLine.__table__  # type: ignore[attr-defined]

ZERO = Decimal("0")
PERIOD_DAYS: dict[str, int | None] = {"30d": 30, "90d": 90, "365d": 365, "all": None}
AT_RISK_DAYS = 90
TOP_PRODUCTS = 3
DEFAULT_TOP_CUSTOMERS = 10


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` in UTC; None: unbounded. ``period`` is ``custom`` for explicit dates."""

    period: str
    start: datetime | None
    end: datetime | None

    def condition(self) -> Any:
        bounds = []
        if self.start is not None:
            bounds.append(orders.c.created_at >= self.start)
        if self.end is not None:
            bounds.append(orders.c.created_at < self.end)
        return sa.and_(sa.true(), *bounds)

    @property
    def all_time(self) -> bool:
        return self.start is None and self.end is None


def _moment(value: str, field: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or date-time (UTC when it has no offset)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UnprocessableError(
            f"invalid {field}", errors=[{"field": field, "message": "an ISO 8601 date or date-time"}]
        ) from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise UnprocessableError(
            f"invalid {field}", errors=[{"field": field, "message": "out of range"}]
        ) from None


def report_window(period: str, start: str | None, end: str | None, *, now: datetime) -> Window:
    """The window of ``period`` ending now, or the explicit ``from``/``to`` (either may be absent)."""
    if period not in PERIOD_DAYS:
        raise UnprocessableError(
            "unknown period", errors=[{"field": "period", "message": "one of 30d, 90d, 365d, all"}]
        )
    if start is not None or end is not None:
        window = Window(
            "custom",
            _moment(start, "from") if start is not None else None,
            _moment(end, "to") if end is not None else None,
        )
        if window.start is not None and window.end is not None and window.start >= window.end:
            raise UnprocessableError(
                "from must be before to", errors=[{"field": "from", "message": "must be before to"}]
            )
        return window
    days = PERIOD_DAYS[period]
    return Window(period, None if days is None else now - timedelta(days=days), None)


@dataclass(frozen=True, slots=True)
class TopProduct:
    product_id: int
    title: str | None
    quantity: int
    spend: Decimal


@dataclass(frozen=True, slots=True)
class TopCustomer:
    id: int
    email: str | None
    first_name: str | None
    last_name: str | None
    period_ltv: Decimal
    period_order_count: int
    figures: stats.Stats
    last_order_at: datetime | None
    top_products: list[TopProduct]


def _with_customer(ranked: Any) -> sa.Select[Any]:
    return (
        sa.select(
            ranked.c.customer_id,
            ranked.c.period_ltv,
            ranked.c.period_orders,
            customers.c.email,
            customers.c.first_name,
            customers.c.last_name,
            customer_stats.c.last_order_at,
        )
        .select_from(
            ranked.join(
                customers,
                sa.and_(customers.c.shop_id == ranked.c.shop_id, customers.c.id == ranked.c.customer_id),
            ).outerjoin(
                customer_stats,
                sa.and_(
                    customer_stats.c.shop_id == ranked.c.shop_id,
                    customer_stats.c.customer_id == ranked.c.customer_id,
                ),
            )
        )
        .order_by(ranked.c.period_ltv.desc(), ranked.c.customer_id.desc())
    )


def _ranking(shop_id: int, settings: ShopSettings, window: Window, limit: int) -> sa.Select[Any]:
    """Customers (with a record) by period LTV, then by id, both descending."""
    if window.all_time:
        # All-time period figures are LTV and orderCount: walk the LTV index.
        ranked = (
            sa.select(
                customer_stats.c.shop_id,
                customer_stats.c.customer_id,
                customer_stats.c.ltv.label("period_ltv"),
                customer_stats.c.order_count.label("period_orders"),
            )
            .select_from(stats.with_customer_records(customers))
            .where(customer_stats.c.shop_id == shop_id, customer_stats.c.ltv > sa.literal(ZERO, Money()))
            .order_by(customer_stats.c.ltv.desc(), customer_stats.c.customer_id.desc())
            .limit(limit)
            .subquery("ranked")
        )
        return _with_customer(ranked)
    # Sum per customer first, then keep customers with a record: joining customers per order
    # would cost a join row per order of the period instead of one per customer.
    spent = sa.func.sum(orders.c.total_amount)
    totals = (
        sa.select(
            orders.c.customer_id,
            spent.label("period_ltv"),
            sa.func.count().label("period_orders"),
        )
        .where(
            orders.c.shop_id == shop_id,
            orders.c.customer_id.is_not(None),
            stats.eligible(settings),
            window.condition(),
        )
        .group_by(orders.c.customer_id)
        .subquery("totals")
    )
    ranked = (
        sa.select(
            customers.c.shop_id,
            totals.c.customer_id,
            totals.c.period_ltv,
            totals.c.period_orders,
        )
        .select_from(
            totals.join(
                customers, sa.and_(customers.c.shop_id == shop_id, customers.c.id == totals.c.customer_id)
            )
        )
        .order_by(totals.c.period_ltv.desc(), totals.c.customer_id.desc())
        .limit(limit)
        .subquery("ranked")
    )
    return _with_customer(ranked)


async def _top_products(
    session: AsyncSession, shop_id: int, settings: ShopSettings, window: Window, customer_ids: Sequence[int]
) -> dict[int, list[TopProduct]]:
    """Each customer's three products of the period, by spend then quantity (one statement)."""
    if not customer_ids:
        return {}
    spend = sa.type_coerce(sa.func.sum(order_lines.c.price * order_lines.c.quantity), Money())
    rows = (
        await session.execute(
            sa.select(
                orders.c.customer_id,
                order_lines.c.product_id,
                sa.func.max(order_lines.c.title).label("title"),
                sa.func.sum(order_lines.c.quantity).label("quantity"),
                spend.label("spend"),
            )
            .select_from(
                order_lines.join(
                    orders,
                    sa.and_(orders.c.shop_id == order_lines.c.shop_id, orders.c.id == order_lines.c.order_id),
                )
            )
            .where(
                orders.c.shop_id == shop_id,
                orders.c.customer_id.in_(sorted(set(customer_ids))),
                stats.eligible(settings),
                window.condition(),
                order_lines.c.product_id.is_not(None),
                order_lines.c.quantity > 0,
            )
            .group_by(orders.c.customer_id, order_lines.c.product_id)
        )
    ).all()
    found: dict[int, list[TopProduct]] = {}
    for row in rows:
        found.setdefault(int(row.customer_id), []).append(
            TopProduct(int(row.product_id), row.title, int(row.quantity), row.spend)
        )
    return {
        cid: sorted(items, key=lambda p: (-p.spend, -p.quantity, p.product_id))[:TOP_PRODUCTS]
        for cid, items in found.items()
    }


async def top_customers(
    session: AsyncSession, shop_id: int, settings: ShopSettings, window: Window, limit: int
) -> list[TopCustomer]:
    """``GET /api/reports/top-customers``: at most ``limit`` customers by period LTV."""
    rows = (await session.execute(_ranking(shop_id, settings, window, limit))).all()
    ids = [int(r.customer_id) for r in rows]
    figures = await stats.read(session, shop_id, ids, settings)
    products = await _top_products(session, shop_id, settings, window, ids)
    return [
        TopCustomer(
            id=int(r.customer_id),
            email=r.email,
            first_name=r.first_name,
            last_name=r.last_name,
            period_ltv=r.period_ltv,
            period_order_count=int(r.period_orders),
            figures=figures[int(r.customer_id)],
            last_order_at=r.last_order_at,
            top_products=products.get(int(r.customer_id), []),
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class Overview:
    customer_count: int
    tiers: dict[str, int]
    repeat_purchase_rate: float
    aov: Decimal
    cod_share: float
    cod_rto_rate: float
    customers_at_risk: int


async def overview(session: AsyncSession, shop_id: int, settings: ShopSettings, *, now: datetime) -> Overview:
    """``GET /api/reports/overview``.

    Customer figures are over the shop's customer records; order figures over all its orders
    (guest checkouts included) that are not deleted and not test (unless the shop counts them).
    """

    def count(condition: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    tier = tier_sql(customer_stats.c.ltv, settings.tier_thresholds)
    by_tier = (
        await session.execute(
            sa.select(
                tier.label("tier"),
                sa.func.count().label("customers"),
                count(customer_stats.c.order_count >= 1).label("buyers"),
                count(customer_stats.c.order_count >= 2).label("repeat_buyers"),
                count(customer_stats.c.last_order_at <= now - timedelta(days=AT_RISK_DAYS)).label("at_risk"),
            )
            .select_from(stats.with_customer_records(customers))
            .where(customer_stats.c.shop_id == shop_id)
            .group_by(tier)
        )
    ).all()
    tiers = dict.fromkeys(TIERS, 0)
    buyers = repeat_buyers = at_risk = 0
    for row in by_tier:
        tiers[row.tier] = int(row.customers)
        buyers += int(row.buyers)
        repeat_buyers += int(row.repeat_buyers)
        at_risk += int(row.at_risk)
    ok = stats.eligible(settings)
    cod = orders.c.payment_method == "cod"
    totals = (
        await session.execute(
            sa.select(
                sa.func.count().label("orders"),
                count(cod).label("cod"),
                count(stats.cod_rto(settings)).label("cod_rto"),
                count(ok).label("eligible"),
                stats.eligible_total(settings).label("revenue"),
            ).where(orders.c.shop_id == shop_id, stats.counts_test(settings))
        )
    ).one()
    eligible = int(totals.eligible)
    return Overview(
        customer_count=sum(tiers.values()),
        tiers=tiers,
        repeat_purchase_rate=ratio(repeat_buyers, buyers),
        aov=totals.revenue / eligible if eligible else ZERO,
        cod_share=ratio(int(totals.cod), int(totals.orders)),
        cod_rto_rate=ratio(int(totals.cod_rto), int(totals.cod)),
        customers_at_risk=at_risk,
    )


async def tier_counts(session: AsyncSession, shop_id: int, settings: ShopSettings) -> dict[str, int]:
    """Customers (with a record) per live tier, every tier present (the merchant pages' chips)."""
    tier = tier_sql(customer_stats.c.ltv, settings.tier_thresholds)
    rows = (
        await session.execute(
            sa.select(tier.label("tier"), sa.func.count().label("customers"))
            .select_from(stats.with_customer_records(customers))
            .where(customer_stats.c.shop_id == shop_id)
            .group_by(tier)
        )
    ).all()
    counts = dict.fromkeys(TIERS, 0)
    for row in rows:
        counts[row.tier] = int(row.customers)
    return counts


@dataclass(frozen=True, slots=True)
class MonthTotal:
    """LTV added in one calendar month of the shop's time zone: eligible orders created then."""

    month: date
    ltv: Decimal
    orders: int


def month_starts(now: datetime, zone: tzinfo, months: int) -> list[datetime]:
    """The first instants (in ``zone``) of the last ``months`` months and of the next one, oldest
    first: ``months + 1`` boundaries of ``[start, end)`` buckets."""
    local = now.astimezone(zone)
    year, month = local.year, local.month
    starts: list[datetime] = []
    for back in range(months - 1, -2, -1):
        index = year * 12 + (month - 1) - back
        starts.append(datetime(index // 12, index % 12 + 1, 1, tzinfo=zone))
    return starts


async def monthly_ltv(
    session: AsyncSession,
    shop_id: int,
    settings: ShopSettings,
    *,
    now: datetime,
    zone: tzinfo,
    months: int = 12,
) -> list[MonthTotal]:
    """LTV by month of order creation (eligible orders, docs/domain.md), the last ``months`` months
    of the shop's calendar, oldest first; one statement with a bucket per month."""
    bounds = [start.astimezone(UTC) for start in month_starts(now, zone, months)]
    columns: list[Any] = []
    for index in range(months):
        inside = sa.and_(orders.c.created_at >= bounds[index], orders.c.created_at < bounds[index + 1])
        columns.append(
            sa.func.coalesce(
                sa.func.sum(sa.case((inside, orders.c.total_amount), else_=sa.literal(ZERO, Money()))),
                sa.literal(ZERO, Money()),
            ).label(f"ltv_{index}")
        )
        columns.append(sa.func.coalesce(sa.func.sum(sa.case((inside, 1), else_=0)), 0).label(f"n_{index}"))
    row = (
        await session.execute(
            sa.select(*columns).where(
                orders.c.shop_id == shop_id,
                stats.eligible(settings),
                orders.c.created_at >= bounds[0],
                orders.c.created_at < bounds[-1],
            )
        )
    ).one()
    starts = month_starts(now, zone, months)
    return [
        MonthTotal(
            month=starts[index].date(),
            ltv=row._mapping[f"ltv_{index}"],
            orders=int(row._mapping[f"n_{index}"]),
        )
        for index in range(months)
    ]
