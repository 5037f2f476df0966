"""Customer figures (docs/domain.md): LTV, order count, COD RTO count, last order, live tier.

``customer_stats`` holds one row per customer id seen on a customer record or an order. Every
change to a customer's orders recomputes that customer's row from the orders, in the same
transaction, so reads are one indexed lookup and can never drift. ``check`` proves it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_insert, dialect_of, in_ids, in_ids_read, insert_ignore
from service.domain import tiers
from service.domain.settings import ShopSettings
from service.domain.tiers import customer_id_ranges, tier_for
from service.domain.tracking import RTO_STATES
from service.models import Customer, CustomerStats, Order
from service.reads import ReadSource, fetch, source_dialect
from service.types import Money

orders = Order.__table__  # type: ignore[attr-defined]
customer_stats = CustomerStats.__table__  # type: ignore[attr-defined]
customers = Customer.__table__  # type: ignore[attr-defined]

ZERO = Decimal("0")
T = TypeVar("T")


class Stats(NamedTuple):
    """A customer's figures. A named tuple: reads build one per customer they show, and an order
    view takes the four values as they are (``order_views``)."""

    ltv: Decimal
    order_count: int
    rto_count: int
    tier: str


def counts_test(settings: ShopSettings) -> Any:
    """SQL: the order is not a test order, unless the shop counts test orders."""
    return sa.true() if settings.include_test_orders else orders.c.test.is_(False)


def eligible(settings: ShopSettings) -> Any:
    """SQL: the order counts towards LTV and orderCount.

    Not cancelled, not test (unless included), a positive total (exchanges and giveaways don't
    inflate value), and not in an RTO state — written so that a NULL status counts.
    """
    return sa.and_(
        orders.c.cancelled_at.is_(None),
        counts_test(settings),
        orders.c.total_amount > sa.literal(ZERO, Money()),
        sa.or_(orders.c.tracking_status.is_(None), orders.c.tracking_status.not_in(RTO_STATES)),
    )


def cod_rto(settings: ShopSettings) -> Any:
    """SQL: a COD order that came back. Cancelled ones count; prepaid RTOs are refunded, so don't."""
    return sa.and_(
        orders.c.payment_method == "cod",
        orders.c.tracking_status.in_(RTO_STATES),
        counts_test(settings),
    )


def eligible_total(settings: ShopSettings) -> Any:
    """SQL aggregate: the sum of ``total_amount`` over eligible orders (LTV), zero when none."""
    return sa.func.coalesce(
        sa.func.sum(sa.case((eligible(settings), orders.c.total_amount), else_=sa.literal(ZERO, Money()))),
        sa.literal(ZERO, Money()),
    )


def with_customer_records(customers: Any) -> Any:
    """``customer_stats`` joined to the customer records (figures of customers that exist)."""
    return customer_stats.join(
        customers,
        sa.and_(
            customers.c.shop_id == customer_stats.c.shop_id, customers.c.id == customer_stats.c.customer_id
        ),
    )


def aggregate_columns(settings: ShopSettings) -> list[Any]:
    ok = eligible(settings)
    return [
        eligible_total(settings).label("ltv"),
        sa.func.coalesce(sa.func.sum(sa.case((ok, 1), else_=0)), 0).label("order_count"),
        sa.func.coalesce(sa.func.sum(sa.case((cod_rto(settings), 1), else_=0)), 0).label("rto_count"),
        sa.func.max(sa.case((orders.c.test.is_(False), orders.c.created_at))).label("last_order_at"),
    ]


def _upsert_from_orders(dialect: str, select: Any) -> Any:
    stmt = dialect_insert(dialect, customer_stats).from_select(
        ["shop_id", "customer_id", "ltv", "order_count", "rto_count", "last_order_at"], select
    )
    return stmt.on_conflict_do_update(
        index_elements=["shop_id", "customer_id"],
        set_={k: stmt.excluded[k] for k in ("ltv", "order_count", "rto_count", "last_order_at")},
    )


async def ensure_rows(session: AsyncSession, shop_id: int, customer_ids: Iterable[int]) -> None:
    """Give customers a (zero) stats row, so they have figures and a tier before any order."""
    ids = sorted(set(customer_ids))
    if ids:
        await session.execute(
            insert_ignore(dialect_of(session), customer_stats, ["shop_id", "customer_id"]),
            [{"shop_id": shop_id, "customer_id": cid, "ltv": ZERO} for cid in ids],
        )


@functools.cache
def _rows_of_customers_statement(dialect: str) -> Any:
    select = sa.select(customers.c.shop_id, customers.c.id, sa.literal(ZERO, Money())).where(
        customers.c.shop_id == sa.bindparam("shop_id"), in_ids(dialect, customers.c.id, "ids")
    )
    return insert_ignore(dialect, customer_stats, ["shop_id", "customer_id"]).from_select(
        ["shop_id", "customer_id", "ltv"], select
    )


def _lock_key(shop_id: int, customer_id: int, kind: str = "") -> int:
    """A 64-bit advisory lock key for one customer (or, with ``kind``, another record) of one
    shop (a collision only serializes two records that need not be)."""
    digest = hashlib.blake2b(f"{kind}{shop_id}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_LOCK_STATEMENT = sa.text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS ordered"
)


async def lock_customers(session: AsyncSession, shop_id: int, customer_ids: Iterable[int]) -> None:
    """Hold these customers until the transaction ends, before their figures are derived.

    Figures, tier histories and write-back states are recomputed from the stored orders. Under
    PostgreSQL's READ COMMITTED, two transactions that changed different orders of one customer
    would each aggregate from a snapshot without the other's order, and the later upsert would
    overwrite the earlier with a stale total. Taking a per-customer lock first (in key order, so
    two batches cannot deadlock on it) makes the second wait for the first's commit; its next
    statements then see every committed order. SQLite has one writer and needs none.
    """
    await _hold(session, {_lock_key(shop_id, cid) for cid in customer_ids if cid is not None})


async def _hold(session: AsyncSession, keys: set[int]) -> None:
    """Take these advisory locks until the transaction ends, in key order (PostgreSQL only)."""
    if keys and dialect_of(session) == "postgresql":
        await session.execute(_LOCK_STATEMENT, {"keys": sorted(keys)})


async def lock_orders(session: AsyncSession, shop_orders: Iterable[tuple[int, int]]) -> None:
    """Hold these (shop id, order id) pairs until the transaction ends: taken by a worker's batch
    before it applies anything, so that two batches in flight (two loops, or two processes) that
    touch one order take turns.

    An order's tracking status is derived from its stored shipments and carrier events: under
    READ COMMITTED, two batches each adding an event of one order would each derive from a
    snapshot without the other's event, and the later commit would keep a stale status
    (``out_for_delivery`` after ``delivered``). Keys in order, as for :func:`lock_customers`.
    """
    await _hold(session, {_lock_key(shop_id, order_id, "order:") for shop_id, order_id in shop_orders})


async def ensure_rows_of_customers(session: AsyncSession, shop_id: int, customer_ids: Iterable[int]) -> None:
    """:func:`ensure_rows` for those of these ids that have a customer record now (one statement)."""
    ids = sorted(set(customer_ids))
    if ids:
        await session.execute(
            _rows_of_customers_statement(dialect_of(session)), {"shop_id": shop_id, "ids": ids}
        )


@functools.cache
def _refresh_statement(dialect: str, include_test_orders: bool) -> Any:
    """Recompute the figures of the customers in ``:ids`` from their orders (built once)."""
    settings = ShopSettings(include_test_orders=include_test_orders)
    select = (
        sa.select(
            sa.bindparam("shop_id", type_=sa.BigInteger()).label("shop_id"),
            orders.c.customer_id,
            *aggregate_columns(settings),
        )
        .where(
            orders.c.shop_id == sa.bindparam("shop_id"),
            orders.c.customer_id.in_(sa.bindparam("ids", expanding=True)),
        )
        .group_by(orders.c.customer_id)
    )
    return _upsert_from_orders(dialect, select)


async def refresh(
    session: AsyncSession,
    shop_id: int,
    customer_ids: Iterable[int],
    settings: ShopSettings,
    *,
    may_have_no_orders: bool = False,
) -> None:
    """Recompute these customers' rows from their orders.

    ``may_have_no_orders``: some of them may have lost their last order (a delete, an order
    moved to another customer); their rows are zeroed by a second statement.
    """
    ids = sorted({cid for cid in customer_ids if cid is not None})
    if not ids:
        return
    statement = _refresh_statement(dialect_of(session), settings.include_test_orders)
    await session.execute(statement, {"shop_id": shop_id, "ids": ids})
    if may_have_no_orders:
        await _zero_without_orders(session, shop_id, customer_stats.c.customer_id.in_(ids))


async def _zero_without_orders(session: AsyncSession, shop_id: int, condition: Any) -> None:
    has_orders = (
        sa.select(sa.literal(1))
        .where(orders.c.shop_id == shop_id, orders.c.customer_id == customer_stats.c.customer_id)
        .exists()
    )
    await session.execute(
        sa.update(customer_stats)
        .where(customer_stats.c.shop_id == shop_id, condition, ~has_orders)
        .values(ltv=ZERO, order_count=0, rto_count=0, last_order_at=None)
    )


async def refresh_shop(
    session: AsyncSession,
    shop_id: int,
    settings: ShopSettings,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Recompute every customer of a shop, set-based, ``CHUNK`` customer ids per statement."""
    missing = (
        sa.select(sa.literal(shop_id), orders.c.customer_id, sa.literal(ZERO, Money()))
        .where(orders.c.shop_id == shop_id, orders.c.customer_id.is_not(None))
        .distinct()
    )
    await session.execute(
        insert_ignore(dialect_of(session), customer_stats, ["shop_id", "customer_id"]).from_select(
            ["shop_id", "customer_id", "ltv"], missing
        )
    )
    done = 0
    async for low, high, count in customer_id_ranges(session, shop_id):
        in_range = sa.and_(orders.c.customer_id >= low, orders.c.customer_id <= high)
        select = (
            sa.select(
                sa.literal(shop_id).label("shop_id"), orders.c.customer_id, *aggregate_columns(settings)
            )
            .where(orders.c.shop_id == shop_id, in_range)
            .group_by(orders.c.customer_id)
        )
        await session.execute(_upsert_from_orders(dialect_of(session), select))
        await _zero_without_orders(
            session,
            shop_id,
            sa.and_(customer_stats.c.customer_id >= low, customer_stats.c.customer_id <= high),
        )
        done += count
        if progress is not None:
            progress(done)
    return done


@functools.cache
def _read_statement(dialect: str) -> Any:
    return sa.select(
        customer_stats.c.customer_id,
        customer_stats.c.ltv,
        customer_stats.c.order_count,
        customer_stats.c.rto_count,
    ).where(
        customer_stats.c.shop_id == sa.bindparam("shop_id"),
        in_ids_read(dialect, customer_stats.c.customer_id, "ids"),
    )


async def read(
    source: ReadSource, shop_id: int, customer_ids: Sequence[int], settings: ShopSettings
) -> dict[int, Stats]:
    """The one stats function every read uses: ``{id: Stats}`` for each id asked, in id order.

    Unknown ids get zeros and ``bronze``.
    """
    return await read_each(source, shop_id, customer_ids, settings, Stats)


async def read_each(
    source: ReadSource,
    shop_id: int,
    customer_ids: Sequence[int],
    settings: ShopSettings,
    make: Callable[[Decimal, int, int, str], T],
) -> dict[int, T]:
    """:func:`read`, with each customer's figures passed to ``make(ltv, order_count, rto_count,
    tier)`` instead of :class:`Stats` (the stats endpoint builds its wire form in the same pass)."""
    found: dict[int, T] = {}
    ids = sorted(set(customer_ids))
    statement = _read_statement(source_dialect(source))
    thresholds = settings.tier_thresholds
    for start in range(0, len(ids), 1000):
        rows = await fetch(source, statement, {"shop_id": shop_id, "ids": ids[start : start + 1000]})
        # Both databases give the ids and counts as ints and the LTV as a Decimal already.
        for cid, ltv, order_count, rto_count in rows:
            found[cid] = make(ltv, order_count, rto_count, tier_for(ltv, thresholds))
    zero = make(ZERO, 0, 0, tier_for(ZERO, thresholds))
    return {cid: found.get(cid, zero) for cid in ids}


#: A customer's stored figures as columns of a ``LEFT JOIN`` (:func:`joined`, :func:`from_joined`).
JOINED_COLUMNS = (customer_stats.c.ltv, customer_stats.c.order_count, customer_stats.c.rto_count)


def joined(table: Any, shop_id: Any, customer_id: Any) -> Any:
    """``table LEFT JOIN customer_stats`` on a shop and a customer column: a read that fetches
    rows and their customers' figures in one statement selects :data:`JOINED_COLUMNS` from it and
    reads them with :func:`from_joined`, the same rule as :func:`read`."""
    return table.outerjoin(
        customer_stats,
        sa.and_(customer_stats.c.shop_id == shop_id, customer_stats.c.customer_id == customer_id),
    )


def from_joined(
    ltv: Decimal | None, order_count: int | None, rto_count: int | None, thresholds: dict[str, Decimal]
) -> Stats:
    """A customer's figures from :data:`JOINED_COLUMNS`; no row means zeros and the base tier, as
    :func:`read` answers for an unknown id."""
    if ltv is None or order_count is None or rto_count is None:
        return Stats(ZERO, 0, 0, tier_for(ZERO, thresholds))
    return Stats(ltv, int(order_count), int(rto_count), tier_for(ltv, thresholds))


@dataclass(frozen=True, slots=True)
class Difference:
    shop_id: int
    customer_id: int
    field: str
    stored: object
    recomputed: object


async def check(
    session: AsyncSession,
    shop_id: int,
    settings: ShopSettings,
    *,
    progress: Callable[[int], None] | None = None,
) -> list[Difference]:
    """Recompute every customer's figures from orders, and derive their tier of record and history
    again, and list where what is stored differs."""
    differences: list[Difference] = []
    # Customers whose orders count but who have no figures row at all are served zeros: report them.
    has_row = (
        sa.select(sa.literal(1))
        .where(customer_stats.c.shop_id == shop_id, customer_stats.c.customer_id == orders.c.customer_id)
        .exists()
    )
    orphans = await session.execute(
        sa.select(orders.c.customer_id, *aggregate_columns(settings))
        .where(orders.c.shop_id == shop_id, orders.c.customer_id.is_not(None), ~has_row)
        .group_by(orders.c.customer_id)
    )
    for cid, ltv, order_count, rto_count, last in orphans:
        for name, should in (("ltv", ltv), ("orderCount", int(order_count)), ("rtoCount", int(rto_count))):
            if should != (ZERO if name == "ltv" else 0):
                differences.append(Difference(shop_id, int(cid), name, ZERO if name == "ltv" else 0, should))
        if last is not None:
            differences.append(Difference(shop_id, int(cid), "lastOrderAt", None, last))
    done = 0
    async for low, high, count in customer_id_ranges(session, shop_id):
        expected: dict[int, tuple[Decimal, int, int, datetime | None]] = {}
        rows = await session.execute(
            sa.select(orders.c.customer_id, *aggregate_columns(settings))
            .where(orders.c.shop_id == shop_id, orders.c.customer_id >= low, orders.c.customer_id <= high)
            .group_by(orders.c.customer_id)
        )
        for cid, ltv, order_count, rto_count, last in rows:
            expected[int(cid)] = (ltv, int(order_count), int(rto_count), last)
        stored = await session.execute(
            sa.select(
                customer_stats.c.customer_id,
                customer_stats.c.ltv,
                customer_stats.c.order_count,
                customer_stats.c.rto_count,
                customer_stats.c.last_order_at,
            ).where(
                customer_stats.c.shop_id == shop_id,
                customer_stats.c.customer_id >= low,
                customer_stats.c.customer_id <= high,
            )
        )
        for cid, ltv, order_count, rto_count, last in stored:
            want = expected.get(int(cid), (ZERO, 0, 0, None))
            for name, have, should in zip(
                ("ltv", "orderCount", "rtoCount", "lastOrderAt"),
                (ltv, order_count, rto_count, last),
                want,
                strict=True,
            ):
                if have != should:
                    differences.append(Difference(shop_id, int(cid), name, have, should))
        done += count
        if progress is not None:
            progress(done)
    rules = tiers.Rules(settings.tier_thresholds, settings.include_test_orders)
    for cid, name, stored_value, derived in await tiers.check(session, shop_id, rules):
        differences.append(Difference(shop_id, cid, name, stored_value, derived))
    return differences


async def forget_if_orderless(session: AsyncSession, shop_id: int, customer_id: int) -> None:
    """Drop a deleted customer's figures row unless orders still name them (the order grid
    still shows those orders' customer figures)."""
    has_orders = (
        sa.select(sa.literal(1))
        .where(orders.c.shop_id == shop_id, orders.c.customer_id == customer_id)
        .exists()
    )
    await session.execute(
        sa.delete(customer_stats).where(
            customer_stats.c.shop_id == shop_id, customer_stats.c.customer_id == customer_id, ~has_orders
        )
    )
