"""Spend tiers (SPEC §4.3): the live tier from LTV, and the tier of record with its history."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_of, in_ids
from service.metrics import TIER_CHANGES
from service.models import CustomerStats, TierChange
from service.types import Money, utc_now

customer_stats = CustomerStats.__table__  # type: ignore[attr-defined]
tier_changes = TierChange.__table__  # type: ignore[attr-defined]

TIERS = ("platinum", "gold", "silver", "bronze")
TIER_RANK = {"bronze": 0, "silver": 1, "gold": 2, "platinum": 3}
REASONS = ("delivered", "rto", "manual", "batch", "thresholds")
MAX_REPORTED_CHANGES = 100
#: Customers per statement in shop-wide work (keyset-paginated).
CHUNK = 5000


def tier_for(ltv: Decimal, thresholds: Mapping[str, Decimal]) -> str:
    """``platinum`` if LTV ≥ platinum, ``gold`` if ≥ gold, ``silver`` if ≥ silver, else ``bronze``."""
    for tier in ("platinum", "gold", "silver"):
        if ltv >= thresholds[tier]:
            return tier
    return "bronze"


def tier_sql(ltv: Any, thresholds: Mapping[str, Decimal]) -> Any:
    """The same rule as :func:`tier_for`, as a SQL ``CASE``."""
    return sa.case(
        (ltv >= sa.literal(thresholds["platinum"], Money()), "platinum"),
        (ltv >= sa.literal(thresholds["gold"], Money()), "gold"),
        (ltv >= sa.literal(thresholds["silver"], Money()), "silver"),
        else_="bronze",
    )


def ltv_bounds(tier: str, thresholds: Mapping[str, Decimal]) -> tuple[Decimal | None, Decimal | None]:
    """The LTV range ``[low, high)`` of a tier (None: unbounded), for index range scans."""
    order = ["bronze", "silver", "gold", "platinum"]
    index = order.index(tier)
    low = thresholds[tier] if tier != "bronze" else None
    high = thresholds[order[index + 1]] if index + 1 < len(order) else None
    return low, high


@dataclass(frozen=True, slots=True)
class TierMove:
    customer_id: int
    from_tier: str | None
    to_tier: str
    ltv: Decimal


@dataclass(frozen=True, slots=True)
class Trigger:
    """A tier-of-record trigger (SPEC §4.3) fired by a change of one order."""

    customer_id: int
    order_id: int
    reason: str


async def record_all(
    session: AsyncSession, shop_id: int, triggers: Sequence[Trigger], thresholds: Mapping[str, Decimal]
) -> list[TierMove]:
    """Set each trigger's customer's tier of record to the live tier, in order, appending history
    when it moves: one read, one ``executemany`` update, one history insert.

    The caller guarantees the figures are already those every trigger must see (they do not
    change between the triggers), so a customer's later triggers find the tier the earlier ones
    set, as recording them one after the other would."""
    if not triggers:
        return []
    dialect = dialect_of(session)
    ids = sorted({t.customer_id for t in triggers})
    rows = await session.execute(_figures_statement(dialect), {"shop_id": shop_id, "ids": ids})
    figures = {int(r.customer_id): (r.ltv, r.tier_of_record) for r in rows}
    moves: list[TierMove] = []
    history: list[dict[str, Any]] = []
    at = utc_now()
    for trigger in triggers:
        if trigger.customer_id not in figures:
            continue
        ltv, current = figures[trigger.customer_id]
        live = tier_for(ltv, thresholds)
        if live == current:
            continue
        figures[trigger.customer_id] = (ltv, live)
        moves.append(TierMove(trigger.customer_id, current, live, ltv))
        history.append(
            {
                "shop_id": shop_id,
                "customer_id": trigger.customer_id,
                "from_tier": current,
                "to_tier": live,
                "ltv": ltv,
                "reason": trigger.reason,
                "order_id": trigger.order_id,
                "at": at,
            }
        )
        TIER_CHANGES.labels(reason=trigger.reason).inc()
    if moves:
        final = {m.customer_id: m.to_tier for m in moves}
        await session.execute(
            _set_tier_statement(),
            [{"b_shop_id": shop_id, "b_customer_id": cid, "b_tier": tier} for cid, tier in final.items()],
        )
        await session.execute(sa.insert(tier_changes), history)
    return moves


@functools.cache
def _figures_statement(dialect: str) -> Any:
    return sa.select(
        customer_stats.c.customer_id, customer_stats.c.ltv, customer_stats.c.tier_of_record
    ).where(
        customer_stats.c.shop_id == sa.bindparam("shop_id"),
        in_ids(dialect, customer_stats.c.customer_id, "ids"),
    )


@functools.cache
def _set_tier_statement() -> Any:
    return (
        sa.update(customer_stats)
        .where(
            customer_stats.c.shop_id == sa.bindparam("b_shop_id"),
            customer_stats.c.customer_id == sa.bindparam("b_customer_id"),
        )
        .values(tier_of_record=sa.bindparam("b_tier", type_=customer_stats.c.tier_of_record.type))
    )


async def customer_id_ranges(
    session: AsyncSession, shop_id: int, chunk: int = CHUNK
) -> AsyncIterator[tuple[int, int, int]]:
    """Keyset pages over a shop's stats rows: yields (first id, last id, rows) per page."""
    after: int | None = None
    while True:
        stmt = sa.select(customer_stats.c.customer_id).where(customer_stats.c.shop_id == shop_id)
        if after is not None:
            stmt = stmt.where(customer_stats.c.customer_id > after)
        ids = (await session.scalars(stmt.order_by(customer_stats.c.customer_id).limit(chunk))).all()
        if not ids:
            return
        yield int(ids[0]), int(ids[-1]), len(ids)
        after = int(ids[-1])


async def count_customers(session: AsyncSession, shop_id: int) -> int:
    return int(
        await session.scalar(
            sa.select(sa.func.count()).select_from(customer_stats).where(customer_stats.c.shop_id == shop_id)
        )
        or 0
    )


@dataclass(slots=True)
class Recalculation:
    total: int = 0
    updated: int = 0
    changes: list[TierMove] = field(default_factory=list)


async def recalculate(
    session: AsyncSession,
    shop_id: int,
    thresholds: Mapping[str, Decimal],
    *,
    reason: str = "batch",
    progress: Callable[[int, int], None] | None = None,
) -> Recalculation:
    """Batch recalculation: every customer's tier of record set to the live tier, set-based.

    Keyset-paginated by customer id; per page one ``INSERT … SELECT … RETURNING`` writes the
    history of the customers that move and one ``UPDATE`` moves them.
    """
    result = Recalculation(total=await count_customers(session, shop_id))
    live = tier_sql(customer_stats.c.ltv, thresholds)
    now = utc_now()
    done = 0
    async for low, high, count in customer_id_ranges(session, shop_id):
        moving = sa.and_(
            customer_stats.c.shop_id == shop_id,
            customer_stats.c.customer_id >= low,
            customer_stats.c.customer_id <= high,
            customer_stats.c.tier_of_record.is_distinct_from(live),
        )
        history = (
            sa.insert(tier_changes)
            .from_select(
                ["shop_id", "customer_id", "from_tier", "to_tier", "ltv", "reason", "order_id", "at"],
                sa.select(
                    customer_stats.c.shop_id,
                    customer_stats.c.customer_id,
                    customer_stats.c.tier_of_record,
                    live,
                    customer_stats.c.ltv,
                    sa.literal(reason),
                    sa.null(),
                    sa.literal(now, tier_changes.c.at.type),
                ).where(moving),
            )
            .returning(
                tier_changes.c.customer_id,
                tier_changes.c.from_tier,
                tier_changes.c.to_tier,
                tier_changes.c.ltv,
            )
        )
        moved = (await session.execute(history)).all()
        if moved:
            await session.execute(sa.update(customer_stats).where(moving).values(tier_of_record=live))
        result.updated += len(moved)
        if moved:
            TIER_CHANGES.labels(reason=reason).inc(len(moved))
        for cid, before, after, ltv in sorted(moved, key=lambda r: int(r[0])):
            if len(result.changes) < MAX_REPORTED_CHANGES:
                result.changes.append(TierMove(int(cid), before, after, ltv))
        done += count
        if progress is not None:
            progress(done, result.total)
    return result
