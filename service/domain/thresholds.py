"""Tier thresholds drawn from a shop's own LTVs (docs/api.md, ``GET /api/tiers/suggestion``).

The population is the shop's customers (with a customer record) that have at least one eligible
order (``orderCount > 0``), by their live LTV. Each threshold is a percentile of their LTVs,
nearest-rank: the P-th percentile of n values sorted ascending is the value at rank
``ceil(P * n / 100)`` (1-based), so it is always some customer's LTV and at least P % of the
customers have an LTV at or below it. Each tier's percentile is declared with the tier
(``tier_levels``: platinum the 95th, gold the 85th, silver the 65th). Each is rounded down to
two significant digits in the shop's currency (``81,566.40`` → ``81,000``; ``7.45`` → ``7.4``;
never below one cent), then made strictly decreasing: a
threshold that is not below the one above it becomes the next lower two-significant-digit amount
under it (``5,000`` → ``4,900``; ``1,000`` → ``990``).

Rounding down never moves a customer down a tier compared with the unrounded percentile, and it
gives amounts a merchant can read and type. ``counts`` is what the customers page would show with
these thresholds: every customer with a record, those without an eligible order in bronze.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import reports, stats
from service.domain.settings import TIER_KEYS, ShopSettings
from service.domain.tier_levels import PERCENTILES
from service.errors import AppError
from service.models import Customer, CustomerStats

customers = Customer.__table__  # type: ignore[attr-defined]
customer_stats = CustomerStats.__table__  # type: ignore[attr-defined]

CENT = Decimal("0.01")


class NoSuggestionError(AppError):
    """The shop's LTVs cannot give three positive, decreasing thresholds (409)."""

    status_code = 409


@dataclass(frozen=True, slots=True)
class Suggestion:
    thresholds: dict[str, Decimal]
    counts: dict[str, int]
    #: Customers with an eligible order: the LTVs the thresholds were drawn from.
    based_on: int


def nearest_rank(percentile: int, count: int) -> int:
    """The 1-based rank of the ``percentile``-th percentile of ``count`` sorted values."""
    return max(1, -(-percentile * count // 100))


def round_down_two_significant(amount: Decimal) -> Decimal:
    """``81566.40`` → ``81000.00``, ``7.45`` → ``7.40``; steps never finer than a cent."""
    if amount < CENT:
        return Decimal("0.00")
    step = Decimal(1).scaleb(max(amount.adjusted() - 1, -2))
    return ((amount / step).to_integral_value(rounding=ROUND_FLOOR) * step).quantize(CENT)


def next_lower(amount: Decimal) -> Decimal:
    """The largest two-significant-digit amount below ``amount`` (``5000`` → ``4900``)."""
    return round_down_two_significant(amount - CENT)


def thresholds_from_percentiles(values: dict[str, Decimal]) -> dict[str, Decimal]:
    """Rounded and strictly decreasing thresholds from the raw percentile LTVs."""
    thresholds: dict[str, Decimal] = {}
    above: Decimal | None = None
    for tier in TIER_KEYS:
        amount = round_down_two_significant(values[tier])
        if above is not None and amount >= above:
            amount = next_lower(above)
        if amount <= 0:
            raise NoSuggestionError("the shop's LTVs are too small to draw decreasing thresholds from them")
        thresholds[tier] = amount
        above = amount
    return thresholds


async def suggest_thresholds(session: AsyncSession, shop_id: int, settings: ShopSettings) -> Suggestion:
    """Thresholds at each tier's percentile of the shop's LTVs, and the tier counts
    they would give. ``409`` when no customer has an eligible order yet."""
    population = (
        sa.select(customer_stats.c.ltv)
        .select_from(stats.with_customer_records(customers))
        .where(customer_stats.c.shop_id == shop_id, customer_stats.c.order_count > 0)
    )
    count = int(await session.scalar(sa.select(sa.func.count()).select_from(population.subquery())) or 0)
    if count == 0:
        raise NoSuggestionError(
            "no customer has an eligible order yet: thresholds are drawn from the shop's own LTVs"
        )
    values: dict[str, Decimal] = {}
    for tier, percentile in PERCENTILES.items():
        ltv = await session.scalar(
            population.order_by(customer_stats.c.ltv, customer_stats.c.customer_id)
            .offset(nearest_rank(percentile, count) - 1)
            .limit(1)
        )
        values[tier] = Decimal(ltv or 0)
    thresholds = thresholds_from_percentiles(values)
    counts = await reports.tier_counts(
        session, shop_id, dataclasses.replace(settings, tier_thresholds=thresholds)
    )
    return Suggestion(thresholds=thresholds, counts=counts, based_on=count)
