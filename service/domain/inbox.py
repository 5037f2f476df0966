"""The webhook inbox (``webhook_deliveries``): store, claim, settle, list, replay, prune."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.db import dialect_of, insert_ignore
from service.domain.pagination import decode_cursor, encode_cursor
from service.errors import BadRequestError
from service.models import DeliveryStatus, WebhookDelivery
from service.types import utc_now

deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]

#: Longest error text kept on a row (the full traceback goes to the log).
MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class NewDelivery:
    webhook_id: str
    event_id: str | None
    topic: str
    shop_id: int
    shop_domain: str
    api_version: str | None
    triggered_at: datetime | None
    body: bytes


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    webhook_id: str
    topic: str
    shop_id: int
    shop_domain: str
    triggered_at: datetime | None
    received_at: datetime
    attempts: int
    body: bytes


_STORE_COLUMNS = (
    "webhook_id",
    "event_id",
    "topic",
    "shop_id",
    "shop_domain",
    "api_version",
    "triggered_at",
    "received_at",
    "body",
    "status",
    "attempts",
    "next_attempt_at",
)


@functools.cache
def _store_statement(dialect: str) -> Any:
    """``INSERT … ON CONFLICT (webhook_id) DO NOTHING RETURNING id``, built once per dialect."""
    values = {c: sa.bindparam(c, type_=deliveries.c[c].type) for c in _STORE_COLUMNS}
    return insert_ignore(dialect, deliveries, ["webhook_id"]).values(values).returning(deliveries.c.id)


async def store_delivery(session: AsyncSession | AsyncConnection, new: NewDelivery) -> bool:
    """Insert a delivery unless its webhook id is known. True when a row was created.

    One statement: on a connection in autocommit mode it is its own transaction, durable when
    this returns (intake on PostgreSQL: one round trip instead of BEGIN, INSERT, COMMIT).
    """
    now = utc_now()
    params = {
        "webhook_id": new.webhook_id,
        "event_id": new.event_id,
        "topic": new.topic,
        "shop_id": new.shop_id,
        "shop_domain": new.shop_domain,
        "api_version": new.api_version,
        "triggered_at": new.triggered_at,
        "received_at": now,
        "body": new.body,
        "status": DeliveryStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
    }
    dialect = session.dialect.name if isinstance(session, AsyncConnection) else dialect_of(session)
    return (await session.execute(_store_statement(dialect), params)).first() is not None


#: PostgreSQL: many deliveries in one autocommit statement (intake's group commit). The rows are
#: inserted in the order given (``WITH ORDINALITY``), so ids follow arrival order; the statement
#: text is the same whatever the number of rows, so psycopg prepares it once per connection. The
#: parameters go in binary (``%b``): the bodies as they are, not escaped into a text array.
_STORE_MANY_SQL = (
    "INSERT INTO webhook_deliveries (webhook_id, event_id, topic, shop_id, shop_domain, api_version,"
    " triggered_at, received_at, body, status, attempts, next_attempt_at)"
    " SELECT u.webhook_id, u.event_id, u.topic, u.shop_id, u.shop_domain, u.api_version, u.triggered_at,"
    " %(now)b, u.body, %(status)b, 0, %(now)b"
    " FROM unnest(%(webhook_id)b::varchar[], %(event_id)b::varchar[], %(topic)b::varchar[],"
    " %(shop_id)b::bigint[], %(shop_domain)b::varchar[], %(api_version)b::varchar[],"
    " %(triggered_at)b::timestamptz[], %(body)b::bytea[])"
    " WITH ORDINALITY AS u(webhook_id, event_id, topic, shop_id, shop_domain, api_version, triggered_at,"
    " body, n)"
    " ORDER BY u.n"
    " ON CONFLICT (webhook_id) DO NOTHING"
    " RETURNING webhook_id"
)


#: One delivery (a group of one: no arrays to build on either side).
_STORE_ONE_SQL = (
    "INSERT INTO webhook_deliveries (webhook_id, event_id, topic, shop_id, shop_domain, api_version,"
    " triggered_at, received_at, body, status, attempts, next_attempt_at)"
    " VALUES (%(webhook_id)b, %(event_id)b, %(topic)b, %(shop_id)b, %(shop_domain)b, %(api_version)b,"
    " %(triggered_at)b::timestamptz, %(now)b, %(body)b::bytea, %(status)b, 0, %(now)b)"
    " ON CONFLICT (webhook_id) DO NOTHING"
    " RETURNING webhook_id"
)


async def store_deliveries(conn: AsyncConnection, batch: Sequence[NewDelivery]) -> list[bool]:
    """PostgreSQL: insert several deliveries in one statement, each unless its webhook id is known.

    For each delivery, in order, True when its row was created. A webhook id given twice in the
    batch is stored once (the first); the later copies count as duplicates, as they would one
    after the other. On a connection in autocommit mode the statement is its own transaction:
    every row is durable when this returns, and none is if it raises.
    """
    if len(batch) == 1:
        (one,) = batch
        single = {
            "now": utc_now(),
            "status": DeliveryStatus.PENDING,
            "webhook_id": one.webhook_id,
            "event_id": one.event_id,
            "topic": one.topic,
            "shop_id": one.shop_id,
            "shop_domain": one.shop_domain,
            "api_version": one.api_version,
            "triggered_at": one.triggered_at,
            "body": one.body,
        }
        return [(await conn.exec_driver_sql(_STORE_ONE_SQL, single)).first() is not None]
    first: dict[str, int] = {}
    for index, new in enumerate(batch):
        first.setdefault(new.webhook_id, index)
    unique = [batch[i] for i in first.values()]
    params = {
        "now": utc_now(),
        "status": DeliveryStatus.PENDING,
        "webhook_id": [d.webhook_id for d in unique],
        "event_id": [d.event_id for d in unique],
        "topic": [d.topic for d in unique],
        "shop_id": [d.shop_id for d in unique],
        "shop_domain": [d.shop_domain for d in unique],
        "api_version": [d.api_version for d in unique],
        "triggered_at": [d.triggered_at for d in unique],
        "body": [d.body for d in unique],
    }
    result = await conn.exec_driver_sql(_STORE_MANY_SQL, params)
    created = {row[0] for row in result}
    return [first[new.webhook_id] == index and new.webhook_id in created for index, new in enumerate(batch)]


async def claim_batch(session: AsyncSession, limit: int) -> list[ClaimedDelivery]:
    """Lock up to ``limit`` due pending deliveries for this transaction, oldest first.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets several workers claim disjoint batches. SQLite: the
    transaction began with ``BEGIN IMMEDIATE``, so it already holds the only write lock.
    """
    stmt = (
        sa.select(
            deliveries.c.id,
            deliveries.c.webhook_id,
            deliveries.c.topic,
            deliveries.c.shop_id,
            deliveries.c.shop_domain,
            deliveries.c.triggered_at,
            deliveries.c.received_at,
            deliveries.c.attempts,
            deliveries.c.body,
        )
        .where(deliveries.c.status == DeliveryStatus.PENDING, deliveries.c.next_attempt_at <= utc_now())
        .order_by(deliveries.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = (await session.execute(stmt)).all()
    return [ClaimedDelivery(**row._asdict()) for row in rows]


async def settle(session: AsyncSession, ids: Sequence[int], status: str, error: str | None = None) -> None:
    """Mark deliveries ``processed``, ``ignored``, ``failed`` or ``dead``."""
    if not ids:
        return
    await session.execute(
        sa.update(deliveries)
        .where(deliveries.c.id.in_(ids))
        .values(
            status=status,
            processed_at=utc_now(),
            last_error=None if error is None else error[:MAX_ERROR_LENGTH],
        )
    )


def backoff(attempts: int) -> timedelta:
    """Delay before attempt ``attempts + 1``: 2, 4, 8, ... seconds, at most 10 minutes."""
    return timedelta(seconds=min(600, 2**attempts))


async def schedule_retry(
    session: AsyncSession, delivery: ClaimedDelivery, error: str, *, max_attempts: int
) -> str:
    """Count a transient failure: retry later with backoff, or ``dead`` at the limit."""
    attempts = delivery.attempts + 1
    status = DeliveryStatus.DEAD if attempts >= max_attempts else DeliveryStatus.PENDING
    await session.execute(
        sa.update(deliveries)
        .where(deliveries.c.id == delivery.id)
        .values(
            attempts=attempts,
            status=status,
            next_attempt_at=utc_now() + backoff(attempts),
            last_error=error[:MAX_ERROR_LENGTH],
            processed_at=utc_now() if status == DeliveryStatus.DEAD else None,
        )
    )
    return status


async def backlog(session: AsyncSession) -> tuple[int, datetime | None]:
    """Pending deliveries and the receive time of the oldest."""
    row = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.min(deliveries.c.received_at)).where(
                deliveries.c.status == DeliveryStatus.PENDING
            )
        )
    ).one()
    oldest = row[1]
    if isinstance(oldest, str):  # SQLite aggregates lose the column type
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=utc_now().tzinfo)
    return int(row[0]), oldest


async def replay(
    session: AsyncSession,
    *,
    shop_id: int | None = None,
    status: str | None = None,
    topic: str | None = None,
    delivery_id: int | None = None,
) -> int:
    """Put matching deliveries back in the queue (attempts reset). Returns how many."""
    conditions: list[Any] = []
    if delivery_id is not None:
        conditions.append(deliveries.c.id == delivery_id)
    else:
        conditions.append(
            deliveries.c.status.in_([status] if status else [DeliveryStatus.FAILED, DeliveryStatus.DEAD])
        )
    if shop_id is not None:
        conditions.append(deliveries.c.shop_id == shop_id)
    if topic is not None:
        conditions.append(deliveries.c.topic == topic)
    result = await session.execute(
        sa.update(deliveries)
        .where(*conditions)
        .values(
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=utc_now(),
            processed_at=None,
            last_error=None,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune(session: AsyncSession, *, older_than: datetime, batch: int = 5000) -> int:
    """Delete ``processed`` and ``ignored`` deliveries settled before ``older_than``."""
    ids = (
        sa.select(deliveries.c.id)
        .where(
            deliveries.c.status.in_([DeliveryStatus.PROCESSED, DeliveryStatus.IGNORED]),
            deliveries.c.processed_at < older_than,
        )
        .limit(batch)
    )
    result = await session.execute(sa.delete(deliveries).where(deliveries.c.id.in_(ids.scalar_subquery())))
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- reading, for the support API -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    webhook_id: str
    event_id: str | None
    topic: str
    shop_domain: str
    status: str
    attempts: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None


_DELIVERY_COLUMNS = (
    deliveries.c.id,
    deliveries.c.webhook_id,
    deliveries.c.event_id,
    deliveries.c.topic,
    deliveries.c.shop_domain,
    deliveries.c.status,
    deliveries.c.attempts,
    deliveries.c.last_error,
    deliveries.c.received_at,
    deliveries.c.processed_at,
)


async def list_deliveries(
    session: AsyncSession,
    *,
    shop_id: int,
    status: str | None,
    topic: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[DeliveryRow], str | None]:
    """Newest first, keyset-paginated on id."""
    filters: dict[str, Any] = {"status": status, "topic": topic}
    stmt = sa.select(*_DELIVERY_COLUMNS).where(deliveries.c.shop_id == shop_id)
    if status is not None:
        stmt = stmt.where(deliveries.c.status == status)
    if topic is not None:
        stmt = stmt.where(deliveries.c.topic == topic)
    if cursor:
        position = decode_cursor(cursor, "deliveries", filters)
        last_id = position[0]
        if (
            len(position) != 1
            or not isinstance(last_id, int)
            or isinstance(last_id, bool)
            or not 0 <= last_id <= 2**63 - 1
        ):
            raise BadRequestError("malformed cursor")
        stmt = stmt.where(deliveries.c.id < last_id)
    rows = (await session.execute(stmt.order_by(deliveries.c.id.desc()).limit(limit + 1))).all()
    items = [DeliveryRow(**row._asdict()) for row in rows[:limit]]
    next_cursor = encode_cursor("deliveries", filters, [items[-1].id]) if len(rows) > limit else None
    return items, next_cursor


async def get_delivery(session: AsyncSession, delivery_id: int) -> DeliveryRow:
    row = (await session.execute(sa.select(*_DELIVERY_COLUMNS).where(deliveries.c.id == delivery_id))).one()
    return DeliveryRow(**row._asdict())


async def get_delivery_shop(session: AsyncSession, delivery_id: int) -> int | None:
    found = await session.scalar(sa.select(deliveries.c.shop_id).where(deliveries.c.id == delivery_id))
    return None if found is None else int(found)
