"""Customer records: out-of-order-safe upserts and tombstoned deletes (docs/architecture.md,
docs/domain.md)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_insert, dialect_of, typed_param
from service.domain import stats, tombstones
from service.domain.deferred import DeferredFigures
from service.domain.records import CustomerSnapshot
from service.models import Customer

customers = Customer.__table__  # type: ignore[attr-defined]

#: A ``customers/*`` payload outranks a stub built from an order's embedded customer.
RANK_STUB = 0
RANK_CUSTOMER = 1


def _newer_or_equal(new: Any, old: Any) -> Any:
    """SQL for "the incoming (rank, version_at) is not older than the stored one"."""
    return sa.or_(
        new.version_rank > old.version_rank,
        sa.and_(
            new.version_rank == old.version_rank,
            sa.or_(old.version_at.is_(None), new.version_at >= old.version_at),
        ),
    )


_COLUMNS = (
    "shop_id",
    "id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "state",
    "default_address",
    "addresses",
    "created_at",
    "updated_at",
    "version_rank",
    "version_at",
)


@functools.cache
def _upsert_statement(dialect: str, *, returning: bool = True) -> Any:
    """``INSERT … SELECT <params> WHERE no tombstone ON CONFLICT DO UPDATE WHERE not older``.

    Built once per dialect with bind parameters, so each call only binds values. Without
    ``returning`` it can run as one ``executemany`` over many snapshots, applied in list order.
    """
    params = [typed_param(dialect, c, customers.c[c].type) for c in _COLUMNS]
    buried = tombstones.exists_clause(sa.bindparam("shop_id"), tombstones.CUSTOMER, sa.bindparam("id"))
    stmt = dialect_insert(dialect, customers).from_select(list(_COLUMNS), sa.select(*params).where(~buried))
    stmt = stmt.on_conflict_do_update(
        index_elements=["shop_id", "id"],
        set_={k: stmt.excluded[k] for k in _COLUMNS if k not in ("shop_id", "id")},
        where=_newer_or_equal(stmt.excluded, customers.c),
    )
    return stmt.returning(customers.c.id) if returning else stmt


def _values(shop_id: int, snap: CustomerSnapshot, rank: int, version_at: datetime | None) -> dict[str, Any]:
    return {
        "shop_id": shop_id,
        "id": snap.id,
        "email": snap.email,
        "phone": snap.phone,
        "first_name": snap.first_name,
        "last_name": snap.last_name,
        "state": snap.state,
        "default_address": snap.default_address,
        "addresses": snap.addresses,
        "created_at": snap.created_at,
        "updated_at": snap.updated_at,
        "version_rank": rank,
        "version_at": version_at if version_at is not None else snap.updated_at,
    }


async def upsert_customer(
    session: AsyncSession,
    shop_id: int,
    snap: CustomerSnapshot,
    *,
    rank: int = RANK_CUSTOMER,
    version_at: datetime | None = None,
    deferred: DeferredFigures | None = None,
) -> bool:
    """Insert or update a customer unless deleted or older than what is stored.

    ``version_at`` defaults to the snapshot's ``updated_at``; stubs pass the order's ``updated_at``.
    A written customer gets a figures row (zeros until orders count) and its tier history derived
    again (with ``deferred``, when the batch settles). Returns True when written.
    """
    values = _values(shop_id, snap, rank, version_at)
    written = (await session.execute(_upsert_statement(dialect_of(session)), values)).first() is not None
    if written:
        owed = DeferredFigures() if deferred is None else deferred
        owed.need_rows(shop_id, [snap.id])
        if deferred is None:
            await owed.settle(session)
    return written


async def upsert_stubs(
    session: AsyncSession,
    shop_id: int,
    stubs: Sequence[tuple[CustomerSnapshot, datetime | None]],
    deferred: DeferredFigures,
) -> None:
    """:func:`upsert_customer` for the customers embedded in several orders (snapshot, order's
    ``updated_at``), in list order, as one ``executemany``. Which were written is not known
    here: their figures rows are owed to ``deferred`` for every one that exists when it settles."""
    if not stubs:
        return
    rows = [_values(shop_id, snap, RANK_STUB, version_at) for snap, version_at in stubs]
    await session.execute(_upsert_statement(dialect_of(session), returning=False), rows)
    deferred.need_rows(shop_id, [snap.id for snap, _ in stubs])


async def delete_customer(session: AsyncSession, shop_id: int, customer_id: int) -> None:
    """Tombstone and remove a customer. Their orders stay (Shopify keeps them too)."""
    await tombstones.bury(session, shop_id, tombstones.CUSTOMER, customer_id)
    await session.execute(
        sa.delete(customers).where(customers.c.shop_id == shop_id, customers.c.id == customer_id)
    )
    await stats.forget_if_orderless(session, shop_id, customer_id)
