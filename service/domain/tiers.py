"""Spend tiers (docs/domain.md): the live tier from LTV, and the tier of record with its history.

The tier of record and its history are derived, like every other figure: :func:`history` walks a
customer's triggers (an order became delivered, entered or left RTO, had a status set through
the API) and the shop's evaluations in time order, each evaluated at its own time from the
orders as they stood then. Nothing depends on when a delivery was processed, so any arrival
order gives the same history, and a batch of deliveries needs no care beyond re-deriving the
customers it touched (:func:`rederive`).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_of, in_ids
from service.domain.tier_levels import BASE_TIER, THRESHOLD_TIERS, next_above
from service.domain.tracking import DELIVERED, is_rto, manual_entries, status_changes
from service.metrics import TIER_CHANGES
from service.models import Customer, CustomerStats, Order, TierChange, TierEvaluation
from service.types import Money, utc_now

customer_stats = CustomerStats.__table__  # type: ignore[attr-defined]
tier_changes = TierChange.__table__  # type: ignore[attr-defined]
tier_evaluations = TierEvaluation.__table__  # type: ignore[attr-defined]
orders = Order.__table__  # type: ignore[attr-defined]
customers = Customer.__table__  # type: ignore[attr-defined]

REASONS = ("delivered", "rto", "manual", "batch", "thresholds")
MAX_REPORTED_CHANGES = 100
#: Customers per statement in shop-wide work (keyset-paginated).
CHUNK = 5000


def tier_for(ltv: Decimal, thresholds: Mapping[str, Decimal]) -> str:
    """The highest tier whose threshold the LTV reaches, else the base tier (``tier_levels``)."""
    for tier in THRESHOLD_TIERS:
        if ltv >= thresholds[tier]:
            return tier
    return BASE_TIER


def tier_sql(ltv: Any, thresholds: Mapping[str, Decimal]) -> Any:
    """The same rule as :func:`tier_for`, as a SQL ``CASE``."""
    return sa.case(
        *((ltv >= sa.literal(thresholds[tier], Money()), tier) for tier in THRESHOLD_TIERS),
        else_=BASE_TIER,
    )


def ltv_bounds(tier: str, thresholds: Mapping[str, Decimal]) -> tuple[Decimal | None, Decimal | None]:
    """The LTV range ``[low, high)`` of a tier (None: unbounded), for index range scans."""
    above = next_above(tier)
    low = thresholds[tier] if tier != BASE_TIER else None
    high = thresholds[above] if above is not None else None
    return low, high


@dataclass(frozen=True, slots=True)
class TierMove:
    customer_id: int
    from_tier: str | None
    to_tier: str
    ltv: Decimal


# --- the rule: a customer's tier of record, evaluated at its own history time (pure) -----------

#: Where an order's status changes before any dated fact are placed: at its creation, else here.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Rules:
    """What a tier evaluation depends on besides the orders: the thresholds, and whether test
    orders count."""

    thresholds: Mapping[str, Decimal]
    include_test_orders: bool = False

    def to_document(self) -> dict[str, Any]:
        return {k: f"{v:.2f}" for k, v in self.thresholds.items()} | {
            "includeTestOrders": self.include_test_orders
        }

    @classmethod
    def from_document(cls, stored: Mapping[str, Any]) -> Rules:
        return cls(
            {tier: Decimal(str(stored[tier])) for tier in THRESHOLD_TIERS},
            bool(stored.get("includeTestOrders", False)),
        )


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order as the tier of record sees it: what it was worth and its status over time."""

    id: int
    created_at: datetime | None
    cancelled_at: datetime | None
    total: Decimal
    test: bool
    #: The tracking status from each instant on, oldest first (``tracking.timeline``).
    statuses: tuple[tuple[datetime, str | None], ...] = ()
    #: When a status was set through the API.
    manual_at: tuple[datetime, ...] = ()

    def status_at(self, moment: datetime) -> str | None:
        status: str | None = None
        for when, named in self.statuses:
            if when > moment:
                break
            status = named
        return status

    def eligible_at(self, moment: datetime, include_test_orders: bool) -> bool:
        """Counts towards LTV at ``moment``: existed, not cancelled yet, not test (unless
        counted), a positive total, not in RTO then. The same rule as ``stats.eligible`` in SQL,
        at one instant."""
        return (
            (include_test_orders or not self.test)
            and (self.created_at is None or self.created_at <= moment)
            and (self.cancelled_at is None or self.cancelled_at > moment)
            and self.total > 0
            and not is_rto(self.status_at(moment))
        )

    def triggers(self) -> list[tuple[datetime, str]]:
        """When this order fired a tier-of-record trigger, and why: it became ``delivered``,
        entered or left RTO, or a status was set through the API. Creating an order is no
        trigger. (A test order's triggers count only while test orders count.)"""
        fired = [(when, "manual") for when in self.manual_at]
        before: str | None = None
        for when, status in self.statuses:
            if is_rto(status) != is_rto(before):
                fired.append((when, "rto"))
            elif status == DELIVERED and before != DELIVERED:
                fired.append((when, "delivered"))
            before = status
        return fired


def ltv_at(orders: Sequence[OrderRecord], moment: datetime, include_test_orders: bool = False) -> Decimal:
    """The customer's LTV from the orders as they stood at ``moment``."""
    return sum((o.total for o in orders if o.eligible_at(moment, include_test_orders)), Decimal(0))


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A shop-wide evaluation (``batch`` or ``thresholds``) at ``at``: the rules from then on,
    and those before."""

    at: datetime
    reason: str
    rules: Rules
    previous: Rules


def rules_at(evaluations: Sequence[Evaluation], moment: datetime, current: Rules) -> Rules:
    """The rules in effect at ``moment``: those of the latest evaluation up to it, those before
    the first evaluation, or (no evaluation at all) the shop's current ones."""
    if not evaluations:
        return current
    found = evaluations[0].previous
    for evaluation in evaluations:
        if evaluation.at > moment:
            break
        found = evaluation.rules
    return found


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of a customer's tier history."""

    from_tier: str | None
    to_tier: str
    ltv: Decimal
    reason: str
    order_id: int | None
    at: datetime


_REASON_ORDER = {"manual": 0, "rto": 1, "delivered": 2}


def history(
    orders: Sequence[OrderRecord],
    evaluations: Sequence[Evaluation],
    current: Rules,
    *,
    existed_at: datetime | None,
) -> list[Entry]:
    """A customer's tier history (docs/domain.md), a function of their orders and the shop's
    evaluations only, so the same in whatever order deliveries arrived.

    Every trigger is evaluated at its own time, from the orders as they stood then, under the
    rules in effect then; so is every shop-wide evaluation from when the customer existed (their
    first order or their record). The tier of record moves when the tier then differs.
    """
    points: list[tuple[datetime, int, int, int, str, OrderRecord | None]] = [
        (when, 0, order.id, _REASON_ORDER[reason], reason, order)
        for order in orders
        for when, reason in order.triggers()
    ]
    points += [
        (e.at, 1, 0, 0, e.reason, None) for e in evaluations if existed_at is None or existed_at <= e.at
    ]
    points.sort(key=lambda p: p[:4])
    entries: list[Entry] = []
    tier_now: str | None = None
    for when, _, _, _, reason, order in points:
        rules = rules_at(evaluations, when, current)
        if order is not None and order.test and not rules.include_test_orders:
            continue  # test orders fire no trigger unless they count
        ltv = ltv_at(orders, when, rules.include_test_orders)
        tier = tier_for(ltv, rules.thresholds)
        if tier != tier_now:
            entries.append(Entry(tier_now, tier, ltv, reason, order.id if order else None, when))
            tier_now = tier
    return entries


def order_record(
    *,
    order_id: int,
    created_at: datetime | None,
    cancelled_at: datetime | None,
    total: Decimal,
    test: bool,
    status_log: list[list[str | None]] | None,
    manual_log: list[list[str]] | None,
) -> OrderRecord:
    """An :class:`OrderRecord` from an order's stored columns; undated status changes are placed
    at the order's creation."""
    placed = created_at or EPOCH
    return OrderRecord(
        id=order_id,
        created_at=created_at,
        cancelled_at=cancelled_at,
        total=total,
        test=test,
        statuses=tuple((when or placed, status) for when, status in status_changes(status_log)),
        manual_at=tuple(when or placed for when, _ in manual_entries(manual_log)),
    )


# --- applying the rule to stored customers -----------------------------------------------------


async def evaluations_of(session: AsyncSession, shop_id: int) -> list[Evaluation]:
    rows = await session.execute(
        sa.select(
            tier_evaluations.c.at,
            tier_evaluations.c.reason,
            tier_evaluations.c.rules,
            tier_evaluations.c.previous,
        )
        .where(tier_evaluations.c.shop_id == shop_id)
        .order_by(tier_evaluations.c.at, tier_evaluations.c.id)
    )
    return [
        Evaluation(row.at, row.reason, Rules.from_document(row.rules), Rules.from_document(row.previous))
        for row in rows
    ]


async def add_evaluation(
    session: AsyncSession, shop_id: int, *, at: datetime, reason: str, rules: Rules, previous: Rules
) -> None:
    await session.execute(
        sa.insert(tier_evaluations).values(
            shop_id=shop_id, at=at, reason=reason, rules=rules.to_document(), previous=previous.to_document()
        )
    )


@functools.cache
def _candidates_statement(dialect: str) -> Any:
    """Of ``:ids``, the customers that can have a tier history without any shop evaluation: an
    order with a status (or a status set through the API), or a tier of record already."""
    return sa.union(
        sa.select(orders.c.customer_id).where(
            orders.c.shop_id == sa.bindparam("shop_id"),
            in_ids(dialect, orders.c.customer_id, "ids"),
            sa.or_(orders.c.tracking_status.is_not(None), orders.c.last_status_at.is_not(None)),
        ),
        sa.select(customer_stats.c.customer_id).where(
            customer_stats.c.shop_id == sa.bindparam("shop_id"),
            in_ids(dialect, customer_stats.c.customer_id, "ids"),
            customer_stats.c.tier_of_record.is_not(None),
        ),
    )


@functools.cache
def _orders_statement(dialect: str) -> Any:
    return sa.select(
        orders.c.customer_id,
        orders.c.id,
        orders.c.created_at,
        orders.c.cancelled_at,
        orders.c.total_amount,
        orders.c.test,
        orders.c.status_log,
        orders.c.manual_log,
    ).where(orders.c.shop_id == sa.bindparam("shop_id"), in_ids(dialect, orders.c.customer_id, "ids"))


@functools.cache
def _customers_statement(dialect: str) -> Any:
    return sa.select(customers.c.id, customers.c.created_at).where(
        customers.c.shop_id == sa.bindparam("shop_id"), in_ids(dialect, customers.c.id, "ids")
    )


@functools.cache
def _stored_statement(dialect: str) -> Any:
    return (
        sa.select(
            tier_changes.c.customer_id,
            tier_changes.c.from_tier,
            tier_changes.c.to_tier,
            tier_changes.c.ltv,
            tier_changes.c.reason,
            tier_changes.c.order_id,
            tier_changes.c.at,
        )
        .where(
            tier_changes.c.shop_id == sa.bindparam("shop_id"),
            in_ids(dialect, tier_changes.c.customer_id, "ids"),
        )
        .order_by(tier_changes.c.customer_id, tier_changes.c.id)
    )


@functools.cache
def _records_statement(dialect: str) -> Any:
    return sa.select(customer_stats.c.customer_id, customer_stats.c.tier_of_record).where(
        customer_stats.c.shop_id == sa.bindparam("shop_id"),
        in_ids(dialect, customer_stats.c.customer_id, "ids"),
    )


@functools.cache
def _forget_statement(dialect: str) -> Any:
    return sa.delete(tier_changes).where(
        tier_changes.c.shop_id == sa.bindparam("shop_id"), in_ids(dialect, tier_changes.c.customer_id, "ids")
    )


async def rederive(
    session: AsyncSession,
    shop_id: int,
    customer_ids: Iterable[int],
    rules: Rules,
    *,
    evaluations: Sequence[Evaluation] | None = None,
) -> list[TierMove]:
    """Derive these customers' tier histories and tiers of record from their orders and the
    shop's evaluations (:func:`history`), and store what differs. Returns the customers whose
    tier of record moved."""
    ids = sorted({int(c) for c in customer_ids if c is not None})
    if not ids:
        return []
    dialect = dialect_of(session)
    if evaluations is None:
        evaluations = await evaluations_of(session, shop_id)
    if not evaluations:
        ids = sorted(
            int(c)
            for c in await session.scalars(_candidates_statement(dialect), {"shop_id": shop_id, "ids": ids})
        )
        if not ids:
            return []
    moves: list[TierMove] = []
    for start in range(0, len(ids), CHUNK):
        moves += await _rederive_chunk(session, shop_id, ids[start : start + CHUNK], rules, evaluations)
    return moves


@dataclass(slots=True)
class _Derived:
    """One customer: the history derived from the facts, the stored one, the stored tier."""

    entries: list[Entry]
    stored: list[tuple[Any, ...]]
    of_record: str | None
    has_row: bool

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        return [(e.from_tier, e.to_tier, e.ltv, e.reason, e.order_id, e.at) for e in self.entries]

    @property
    def tier(self) -> str | None:
        return self.entries[-1].to_tier if self.entries else None


async def _derive_chunk(
    session: AsyncSession,
    shop_id: int,
    ids: list[int],
    rules: Rules,
    evaluations: Sequence[Evaluation],
) -> dict[int, _Derived]:
    """Derive these customers' histories from their stored orders, beside what is stored."""
    dialect = dialect_of(session)
    by_ids = {"shop_id": shop_id, "ids": ids}
    records: dict[int, list[OrderRecord]] = {cid: [] for cid in ids}
    born: dict[int, datetime] = {}
    for row in await session.execute(_orders_statement(dialect), by_ids):
        cid = int(row.customer_id)
        records[cid].append(
            order_record(
                order_id=int(row.id),
                created_at=row.created_at,
                cancelled_at=row.cancelled_at,
                total=row.total_amount,
                test=bool(row.test),
                status_log=row.status_log,
                manual_log=row.manual_log,
            )
        )
        if row.created_at is not None:
            born[cid] = min(born.get(cid, row.created_at), row.created_at)
    if evaluations:
        for cid, created_at in await session.execute(_customers_statement(dialect), by_ids):
            if created_at is not None:
                born[int(cid)] = min(born.get(int(cid), created_at), created_at)
    stored: dict[int, list[tuple[Any, ...]]] = {}
    for row in await session.execute(_stored_statement(dialect), by_ids):
        stored.setdefault(int(row.customer_id), []).append(tuple(row)[1:])
    of_record = {int(cid): tier for cid, tier in await session.execute(_records_statement(dialect), by_ids)}
    return {
        cid: _Derived(
            history(records[cid], evaluations, rules, existed_at=born.get(cid)),
            stored.get(cid, []),
            of_record.get(cid),
            cid in of_record,
        )
        for cid in ids
    }


async def _rederive_chunk(
    session: AsyncSession,
    shop_id: int,
    ids: list[int],
    rules: Rules,
    evaluations: Sequence[Evaluation],
) -> list[TierMove]:
    rewrite: list[int] = []
    inserts: list[dict[str, Any]] = []
    moves: list[TierMove] = []
    recorded: list[dict[str, Any]] = []
    for cid, found in (await _derive_chunk(session, shop_id, ids, rules, evaluations)).items():
        if found.rows != found.stored:
            rewrite.append(cid)
            known = Counter(found.stored)
            for entry, item in zip(found.entries, found.rows, strict=True):
                if known[item] > 0:
                    known[item] -= 1
                else:
                    TIER_CHANGES.labels(reason=entry.reason).inc()
                inserts.append({"shop_id": shop_id, "customer_id": cid} | _entry_values(entry))
        if found.has_row and found.tier != found.of_record:
            recorded.append({"b_shop_id": shop_id, "b_customer_id": cid, "b_tier": found.tier})
            if found.entries:
                last = found.entries[-1]
                moves.append(TierMove(cid, found.of_record, last.to_tier, last.ltv))
    dialect = dialect_of(session)
    if rewrite:
        await session.execute(_forget_statement(dialect), {"shop_id": shop_id, "ids": rewrite})
        if inserts:
            await session.execute(sa.insert(tier_changes), inserts)
    if recorded:
        await session.execute(_set_tier_statement(), recorded)
    return moves


async def check(session: AsyncSession, shop_id: int, rules: Rules) -> list[tuple[int, str, object, object]]:
    """Derive every customer's tier of record and history again and list where the stored ones
    differ: (customer id, ``tierOfRecord`` or ``tierHistory``, stored, derived)."""
    evaluations = await evaluations_of(session, shop_id)
    differences: list[tuple[int, str, object, object]] = []
    async for low, high, _ in customer_id_ranges(session, shop_id):
        ids = [
            int(c)
            for c in await session.scalars(
                sa.select(customer_stats.c.customer_id).where(
                    customer_stats.c.shop_id == shop_id,
                    customer_stats.c.customer_id >= low,
                    customer_stats.c.customer_id <= high,
                )
            )
        ]
        for cid, found in (await _derive_chunk(session, shop_id, ids, rules, evaluations)).items():
            if found.tier != found.of_record:
                differences.append((cid, "tierOfRecord", found.of_record, found.tier))
            if found.rows != found.stored:
                differences.append((cid, "tierHistory", len(found.stored), len(found.rows)))
    return differences


def _entry_values(entry: Entry) -> dict[str, Any]:
    return {
        "from_tier": entry.from_tier,
        "to_tier": entry.to_tier,
        "ltv": entry.ltv,
        "reason": entry.reason,
        "order_id": entry.order_id,
        "at": entry.at,
    }


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

    def add(self, moves: Iterable[TierMove]) -> None:
        for move in sorted(moves, key=lambda m: m.customer_id):
            self.updated += 1
            if len(self.changes) < MAX_REPORTED_CHANGES:
                self.changes.append(move)


@functools.cache
def _dated_later_statement() -> Any:
    """Customers with a fact dated after ``:now`` (an order created, cancelled or changing
    status later, or a record created later): an evaluation now does not see those facts."""
    later = sa.bindparam("now", type_=orders.c.created_at.type)
    return sa.union(
        sa.select(orders.c.customer_id).where(
            orders.c.shop_id == sa.bindparam("shop_id"),
            orders.c.customer_id.is_not(None),
            sa.or_(
                orders.c.created_at > later, orders.c.cancelled_at > later, orders.c.last_status_at > later
            ),
        ),
        sa.select(customers.c.id).where(
            customers.c.shop_id == sa.bindparam("shop_id"), customers.c.created_at > later
        ),
    )


async def recalculate(
    session: AsyncSession,
    shop_id: int,
    rules: Rules,
    *,
    reason: str = "batch",
    previous: Rules | None = None,
    rederive_all: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Recalculation:
    """A shop-wide evaluation now: every customer's tier of record set to the live tier.

    It is recorded (:class:`Evaluation`), so customers' histories derived later include it.
    Applying it is set-based: keyset-paginated by customer id, per page one
    ``INSERT … SELECT … RETURNING`` appends the history of the customers that move and one
    ``UPDATE`` moves them, which is what :func:`history` gives for a customer whose facts are all
    dated before now. Customers with facts dated later, and every customer when ``rederive_all``
    (the RTO tags changed: when orders were in RTO changed for the whole past), are derived whole.
    """
    now = utc_now()
    await add_evaluation(session, shop_id, at=now, reason=reason, rules=rules, previous=previous or rules)
    result = Recalculation(total=await count_customers(session, shop_id))
    if rederive_all:
        evaluations = await evaluations_of(session, shop_id)
        done = 0
        async for low, high, count in customer_id_ranges(session, shop_id):
            ids = await session.scalars(
                sa.select(customer_stats.c.customer_id).where(
                    customer_stats.c.shop_id == shop_id,
                    customer_stats.c.customer_id >= low,
                    customer_stats.c.customer_id <= high,
                )
            )
            result.add(
                await rederive(
                    session,
                    shop_id,
                    ids,
                    rules,
                    evaluations=evaluations,
                )
            )
            done += count
            if progress is not None:
                progress(done, result.total)
        return result
    later = [
        int(c) for c in await session.scalars(_dated_later_statement(), {"shop_id": shop_id, "now": now}) if c
    ]
    live = tier_sql(customer_stats.c.ltv, rules.thresholds)
    moved_now: list[TierMove] = []
    done = 0
    async for low, high, count in customer_id_ranges(session, shop_id):
        moving = sa.and_(
            customer_stats.c.shop_id == shop_id,
            customer_stats.c.customer_id >= low,
            customer_stats.c.customer_id <= high,
            customer_stats.c.tier_of_record.is_distinct_from(live),
        )
        if later:
            moving = sa.and_(moving, customer_stats.c.customer_id.not_in(later))
        history_rows = (
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
        moved = (await session.execute(history_rows)).all()
        if moved:
            await session.execute(sa.update(customer_stats).where(moving).values(tier_of_record=live))
            TIER_CHANGES.labels(reason=reason).inc(len(moved))
        moved_now += [TierMove(int(cid), before, after, ltv) for cid, before, after, ltv in moved]
        done += count
        if progress is not None:
            progress(done, result.total)
    if later:
        moved_now += await rederive(session, shop_id, later, rules)
    result.add(moved_now)
    return result
