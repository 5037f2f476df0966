"""Order records and what follows from them (docs/architecture.md, docs/domain.md).

``apply_order`` applies one order snapshot (webhook or backfill): the embedded customer stub, the
guarded upsert, line items, embedded fulfillments; then ``refresh_orders`` re-derives tracking and
owes the customers' figures and tier histories (settled at once, or by the caller's batch), all in
the caller's transaction. ``apply_orders`` and ``refresh_facts`` do the same for a run of
deliveries of distinct orders in a fixed number of statements, and leave exactly what one by one
leaves: every write is the same guarded statement, and everything derived from them (tracking,
figures, tier history) is a function of what is stored, not of the order of the writes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_insert, dialect_of, in_ids, typed_param
from service.domain import fulfillments, tombstones, tracking
from service.domain.customers import RANK_STUB, upsert_customer, upsert_stubs
from service.domain.deferred import DeferredFigures
from service.domain.records import OrderSnapshot
from service.domain.settings import ShopSettings, gateway_key, payment_method
from service.errors import NotFoundError, UnprocessableError
from service.models import Order, OrderLine
from service.types import utc_now

orders = Order.__table__  # type: ignore[attr-defined]
#: Snapshots remembered per order for RTO tag timing (docs/domain.md).
TAG_LOG_LIMIT = 64
#: Statuses set through the API remembered per order (the newest).
MANUAL_LOG_LIMIT = 64
order_lines = OrderLine.__table__  # type: ignore[attr-defined]

#: Snapshot fields stored as they are, in the column of the same name (declared once, on
#: ``OrderSnapshot``): a field added there with a column of its name is stored with no other change.
_SNAPSHOT_COLUMNS = tuple(
    f.name for f in dataclasses.fields(OrderSnapshot) if f.name in orders.c and f.name != "id"
)
#: Columns derived from a snapshot when it is stored (:func:`_order_values`).
_DERIVED_COLUMNS = (
    "customer_id",
    "total_amount",
    "original_total",
    "payment_method",
    "gateway_key",
    "rto_tag_log",
)
#: Columns an upsert overwrites. Derived state (tracking, RTO bookkeeping) is not here.
_PAYLOAD_COLUMNS = (*_SNAPSHOT_COLUMNS, *_DERIVED_COLUMNS)


@dataclass(frozen=True, slots=True)
class _Stored:
    customer_id: int | None
    rto_tag_log: list[list[str]] | None


def _log_tags(log: list[list[str]] | None, tags: str, at: datetime | None) -> list[list[str]] | None:
    """Add one snapshot's tags to the order's tag log: one entry per ``updated_at``, sorted,
    the newest ``TAG_LOG_LIMIT`` kept. A set, so arrival order does not matter."""
    if at is None:
        return log
    entries = {when: seen for when, seen in (log or [])}
    entries[tracking.log_time(at)] = tags
    return [[when, seen] for when, seen in sorted(entries.items())[-TAG_LOG_LIMIT:]]


async def apply_order(
    session: AsyncSession,
    shop_id: int,
    snap: OrderSnapshot,
    settings: ShopSettings,
    *,
    deferred: DeferredFigures | None = None,
) -> bool:
    """Apply an order snapshot; True when the order row was written.

    The embedded customer is applied first as a stub, even when the order is stale or deleted,
    so that the set of customers does not depend on delivery order. With ``deferred``, the
    customers' figures and tier histories are left to the batch (:mod:`service.domain.deferred`).
    """
    owned = deferred is None
    deferred = DeferredFigures() if deferred is None else deferred
    if snap.customer is not None:
        await upsert_customer(
            session,
            shop_id,
            snap.customer,
            rank=RANK_STUB,
            version_at=snap.updated_at,
            deferred=deferred,
        )
    row = (
        await session.execute(
            sa.select(orders.c.customer_id, orders.c.rto_tag_log).where(
                orders.c.shop_id == shop_id, orders.c.id == snap.id
            )
        )
    ).first()
    stored = _Stored(row.customer_id, row.rto_tag_log) if row else None
    tag_log = _log_tags(stored.rto_tag_log if stored else None, snap.tags, snap.updated_at)
    written = await _upsert(session, shop_id, snap, settings, tag_log)
    if written is None:
        if stored is None:
            return False  # deleted: the tombstone kept the insert out
        if tag_log != stored.rto_tag_log:  # a stale snapshot still tells when tags were there
            await session.execute(
                sa.update(orders)
                .where(orders.c.shop_id == shop_id, orders.c.id == snap.id)
                .values(rto_tag_log=tag_log)
            )
    else:
        await _replace_lines(session, shop_id, snap, existed=stored is not None)
        if stored is None:
            deferred.note_created_orders(shop_id, [snap.id])
    for fulfillment in snap.fulfillments:
        await fulfillments.upsert_fulfillment(session, shop_id, fulfillment)
    previous = [stored.customer_id] if stored and stored.customer_id is not None else []
    moved = [c for c in previous if written is None or c != written.customer_id]
    await refresh_orders(
        session,
        shop_id,
        [snap.id],
        settings,
        also_customers=moved,
        rows=[written] if written is not None else None,
        has_facts=True if snap.fulfillments else None,
        deferred=deferred,
    )
    if owned:
        await deferred.settle(session)
    return written is not None


_UPSERT_COLUMNS = ("shop_id", "id", *_PAYLOAD_COLUMNS)
#: What a redaction removes from an order (docs/shopify-app.md: figures may stay, anonymized).
_PERSONAL_COLUMNS = frozenset({"customer_id", "email", "phone", "shipping_address", "billing_address"})


async def apply_orders(
    session: AsyncSession,
    shop_id: int,
    snaps: Sequence[OrderSnapshot],
    settings: ShopSettings,
    *,
    deferred: DeferredFigures,
) -> None:
    """Apply snapshots of distinct orders, in list order, leaving exactly what :func:`apply_order`
    one after the other leaves, in a fixed number of statements instead of five or more each.

    Every write is the same guarded statement, run as one ``executemany`` in list order; what
    each snapshot wrote is read back afterwards (the upsert holds the row lock, so nothing else
    changes it meanwhile).
    """
    if len({snap.id for snap in snaps}) != len(snaps):
        raise ValueError("apply_orders takes one snapshot per order")
    if len(snaps) == 1:
        await apply_order(session, shop_id, snaps[0], settings, deferred=deferred)
    else:
        await _apply_set(session, shop_id, snaps, settings, deferred)


async def refresh_facts(
    session: AsyncSession,
    shop_id: int,
    order_ids: Sequence[int],
    settings: ShopSettings,
    *,
    deferred: DeferredFigures,
) -> None:
    """:func:`refresh_orders` after new facts (fulfillments, events) for these orders (an order may
    be named several times), as one."""
    changes = await tracking.refresh(session, shop_id, order_ids, settings.rto_tags)
    deferred.owe(shop_id, settings, {c.customer_id for c in changes if c.customer_id is not None})


async def _apply_set(
    session: AsyncSession,
    shop_id: int,
    snaps: Sequence[OrderSnapshot],
    settings: ShopSettings,
    deferred: DeferredFigures,
) -> None:
    owed = DeferredFigures()
    dialect = dialect_of(session)
    ids = [snap.id for snap in snaps]
    by_ids = {"shop_id": shop_id, "ids": ids}
    await upsert_stubs(
        session, shop_id, [(s.customer, s.updated_at) for s in snaps if s.customer is not None], owed
    )
    stored = {
        int(row.id): _Stored(row.customer_id, row.rto_tag_log)
        for row in await session.execute(_stored_statement(dialect), by_ids)
    }
    tag_logs = {
        snap.id: _log_tags(
            stored[snap.id].rto_tag_log if snap.id in stored else None, snap.tags, snap.updated_at
        )
        for snap in snaps
    }
    await session.execute(
        _upsert_statement(dialect, returning=False),
        [_order_values(shop_id, snap, settings, tag_logs[snap.id]) for snap in snaps],
    )
    rows = {
        int(row.id): tracking.TrackedOrder.of(row)
        for row in await session.execute(_tracked_statement(dialect), by_ids)
    }
    # The guard writes when the stored updated_at is not newer, so the row now carries the
    # snapshot's updated_at exactly when this snapshot was written (a buried order has no row).
    written = {snap.id for snap in snaps if snap.id in rows and rows[snap.id].updated_at == snap.updated_at}
    stale = [
        (snap.id, tag_logs[snap.id])
        for snap in snaps
        if snap.id not in written and snap.id in stored and tag_logs[snap.id] != stored[snap.id].rto_tag_log
    ]
    if stale:  # a stale snapshot still tells when tags were there
        await session.execute(
            _tag_log_statement(),
            [{"b_shop_id": shop_id, "b_id": order_id, "b_log": log} for order_id, log in stale],
        )
        for order_id, log in stale:
            rows[order_id] = dataclasses.replace(rows[order_id], rto_tag_log=log)
    replaced = [order_id for order_id in ids if order_id in written and order_id in stored]
    if replaced:
        await session.execute(_delete_lines_statement(dialect), {"shop_id": shop_id, "ids": replaced})
    lines = [line for snap in snaps if snap.id in written for line in _line_values(shop_id, snap)]
    if lines:
        await session.execute(sa.insert(order_lines), lines)
    for snap in snaps:
        for fulfillment in snap.fulfillments:
            await fulfillments.upsert_fulfillment(session, shop_id, fulfillment)
    changes = await tracking.refresh(
        session, shop_id, ids, settings.rto_tags, rows=[rows[i] for i in ids if i in rows]
    )
    left = {
        before.customer_id
        for order_id, before in stored.items()
        if before.customer_id is not None
        and (order_id not in written or rows[order_id].customer_id != before.customer_id)
    }
    customers = {c.customer_id for c in changes if c.customer_id is not None}
    owed.note_created_orders(
        shop_id, [order_id for order_id in ids if order_id in written and order_id not in stored]
    )
    deferred.merge(owed)
    deferred.owe(shop_id, settings, customers, left=left - customers)


@functools.cache
def _stored_statement(dialect: str) -> Any:
    return sa.select(orders.c.id, orders.c.customer_id, orders.c.rto_tag_log).where(
        orders.c.shop_id == sa.bindparam("shop_id"), in_ids(dialect, orders.c.id, "ids")
    )


@functools.cache
def _tracked_statement(dialect: str) -> Any:
    return sa.select(*tracking.TRACKED_COLUMNS).where(
        orders.c.shop_id == sa.bindparam("shop_id"), in_ids(dialect, orders.c.id, "ids")
    )


@functools.cache
def _tag_log_statement() -> Any:
    return (
        sa.update(orders)
        .where(orders.c.shop_id == sa.bindparam("b_shop_id"), orders.c.id == sa.bindparam("b_id"))
        .values(rto_tag_log=sa.bindparam("b_log", type_=orders.c.rto_tag_log.type))
    )


@functools.cache
def _delete_lines_statement(dialect: str) -> Any:
    return sa.delete(order_lines).where(
        order_lines.c.shop_id == sa.bindparam("shop_id"), in_ids(dialect, order_lines.c.order_id, "ids")
    )


@functools.cache
def _upsert_statement(dialect: str, *, returning: bool = True) -> Any:
    """The guarded order upsert (tombstone, then ``updated_at``), built once per dialect.

    Without ``returning`` it can run as one ``executemany`` over snapshots of distinct orders.
    """
    buried = tombstones.exists_clause(sa.bindparam("shop_id"), tombstones.ORDER, sa.bindparam("id"))
    # A redacted customer or order stays redacted: a later snapshot is stored without the
    # personal data and the link to the customer (docs/shopify-app.md), whatever order things arrived in.
    redacted = sa.or_(
        tombstones.exists_clause(sa.bindparam("shop_id"), tombstones.REDACTED_ORDER, sa.bindparam("id")),
        tombstones.exists_clause(
            sa.bindparam("shop_id"), tombstones.REDACTED_CUSTOMER, sa.bindparam("customer_id")
        ),
    )
    params = [
        sa.case((redacted, sa.null()), else_=typed_param(dialect, c, orders.c[c].type)).label(c)
        if c in _PERSONAL_COLUMNS
        else typed_param(dialect, c, orders.c[c].type)
        for c in _UPSERT_COLUMNS
    ]
    stmt = dialect_insert(dialect, orders).from_select(
        list(_UPSERT_COLUMNS), sa.select(*params).where(~buried)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["shop_id", "id"],
        set_={k: stmt.excluded[k] for k in _PAYLOAD_COLUMNS},
        where=sa.or_(orders.c.updated_at.is_(None), stmt.excluded.updated_at >= orders.c.updated_at),
    )
    return stmt.returning(*tracking.TRACKED_COLUMNS) if returning else stmt


def _order_values(
    shop_id: int, snap: OrderSnapshot, settings: ShopSettings, tag_log: list[list[str]] | None
) -> dict[str, Any]:
    values = {name: getattr(snap, name) for name in _SNAPSHOT_COLUMNS}
    return values | {
        "shop_id": shop_id,
        "id": snap.id,
        "customer_id": snap.customer.id if snap.customer is not None else None,
        "total_amount": snap.total_amount,
        "original_total": snap.total_price if snap.total_price is not None else snap.total_amount,
        "payment_method": payment_method(snap.payment_gateway_names, settings),
        "gateway_key": gateway_key(snap.payment_gateway_names),
        "rto_tag_log": tag_log,
    }


def _line_values(shop_id: int, snap: OrderSnapshot) -> list[dict[str, Any]]:
    return [
        {
            "shop_id": shop_id,
            "order_id": snap.id,
            "id": line.id,
            "product_id": line.product_id,
            "variant_id": line.variant_id,
            "title": line.title,
            "variant_title": line.variant_title,
            "vendor": line.vendor,
            "sku": line.sku,
            "quantity": line.quantity,
            "price": line.price,
        }
        for line in snap.lines
    ]


async def _upsert(
    session: AsyncSession,
    shop_id: int,
    snap: OrderSnapshot,
    settings: ShopSettings,
    tag_log: list[list[str]] | None,
) -> tracking.TrackedOrder | None:
    values = _order_values(shop_id, snap, settings, tag_log)
    row = (await session.execute(_upsert_statement(dialect_of(session)), values)).first()
    return tracking.TrackedOrder.of(row) if row is not None else None


async def _replace_lines(session: AsyncSession, shop_id: int, snap: OrderSnapshot, *, existed: bool) -> None:
    if existed:
        await session.execute(
            sa.delete(order_lines).where(order_lines.c.shop_id == shop_id, order_lines.c.order_id == snap.id)
        )
    if snap.lines:
        await session.execute(sa.insert(order_lines), _line_values(shop_id, snap))


async def delete_order(
    session: AsyncSession,
    shop_id: int,
    order_id: int,
    settings: ShopSettings,
    *,
    deferred: DeferredFigures | None = None,
) -> None:
    """Tombstone and remove an order and its lines: deleted orders count nowhere."""
    await tombstones.bury(session, shop_id, tombstones.ORDER, order_id)
    customer_id = await session.scalar(
        sa.select(orders.c.customer_id).where(orders.c.shop_id == shop_id, orders.c.id == order_id)
    )
    await session.execute(
        sa.delete(order_lines).where(order_lines.c.shop_id == shop_id, order_lines.c.order_id == order_id)
    )
    await session.execute(sa.delete(orders).where(orders.c.shop_id == shop_id, orders.c.id == order_id))
    if customer_id is None:
        return
    owed = DeferredFigures() if deferred is None else deferred
    owed.owe(shop_id, settings, (), left=[int(customer_id)])
    if deferred is None:
        await owed.settle(session)


async def refresh_orders(
    session: AsyncSession,
    shop_id: int,
    order_ids: Iterable[int],
    settings: ShopSettings,
    *,
    also_customers: Iterable[int] = (),
    rows: list[tracking.TrackedOrder] | None = None,
    has_facts: bool | None = None,
    deferred: DeferredFigures | None = None,
) -> list[tracking.StatusChange]:
    """Tracking, then the customers' figures and tier histories, for orders whose facts changed.

    ``also_customers``: customers an order left (their figures are recomputed too). ``rows`` and
    ``has_facts`` spare queries when the caller already knows them. With ``deferred``, tracking
    is written now and the rest is left to the batch; without, it is settled at once.
    """
    changes = await tracking.refresh(
        session, shop_id, order_ids, settings.rto_tags, rows=rows, has_facts=has_facts
    )
    customers = {c.customer_id for c in changes if c.customer_id is not None}
    owed = DeferredFigures() if deferred is None else deferred
    owed.owe(shop_id, settings, customers, left=set(also_customers) - customers)
    if deferred is None:
        await owed.settle(session)
    return changes


async def set_tracking_status(
    session: AsyncSession, shop_id: int, order_id: int, status: str, settings: ShopSettings
) -> None:
    """``PUT /api/orders/{id}/tracking-status``: a carrier integration's status (RTO forward only)."""
    if status not in tracking.ALL_STATES:
        raise UnprocessableError(
            "unknown tracking status",
            errors=[{"field": "status", "message": "must be one of: " + ", ".join(tracking.ALL_STATES)}],
        )
    row = (
        await session.execute(
            sa.select(orders.c.manual_rto_status, orders.c.manual_rto_at, orders.c.manual_log).where(
                orders.c.shop_id == shop_id, orders.c.id == order_id
            )
        )
    ).first()
    if row is None:
        raise NotFoundError("no such order")
    now = utc_now()
    # Every status set is kept with its time: it is a fact of the order's tracking and a
    # tier-of-record trigger at that time (docs/domain.md). The two columns below summarize it.
    log = [*(row.manual_log or []), [tracking.log_time(now), status]][-MANUAL_LOG_LIMIT:]
    values: dict[str, Any] = {"manual_log": log}
    if tracking.is_rto(status):
        # RTO set through the API only moves forward and starts when it was first set.
        previous = row.manual_rto_status
        furthest = max(filter(None, (previous, status)), key=tracking.RTO_RANK.__getitem__)
        values |= {"manual_rto_status": furthest, "manual_rto_at": row.manual_rto_at or now}
    else:
        values |= {"manual_status": status, "manual_status_at": now}
    await session.execute(
        sa.update(orders).where(orders.c.shop_id == shop_id, orders.c.id == order_id).values(**values)
    )
    await refresh_orders(session, shop_id, [order_id], settings)
