"""Backfill bookkeeping on the shop row: ``shops.sync_state`` and ``shops.last_synced_at``.

``sync_state`` of a backfill in progress::

    {"mode": "bulk", "phase": "customers" | "orders", "startedAt": "2026-03-01T12:00:00Z",
     "bulkOperationId": "gid://shopify/BulkOperation/1", "url": "https://…", "applied": 1500}

``applied`` counts the phase's top-level records whose effects are committed; it is written in the
same transaction as the records it counts, so a rerun resumes exactly after the last commit.
A finished run leaves ``{"lastRun": {…summary…}}`` and sets ``last_synced_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Shop

shops = Shop.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SyncStatus:
    state: dict[str, Any]
    last_synced_at: datetime | None
    uninstalled: bool


async def get(session: AsyncSession, shop_id: int) -> SyncStatus | None:
    """The shop's sync bookkeeping; None when there is no such shop."""
    row = (
        await session.execute(
            sa.select(shops.c.sync_state, shops.c.last_synced_at, shops.c.uninstalled_at).where(
                shops.c.id == shop_id
            )
        )
    ).first()
    if row is None:
        return None
    state = row.sync_state if isinstance(row.sync_state, dict) else {}
    return SyncStatus(
        state=dict(state), last_synced_at=row.last_synced_at, uninstalled=row.uninstalled_at is not None
    )


async def save(session: AsyncSession, shop_id: int, state: dict[str, Any]) -> None:
    await session.execute(sa.update(shops).where(shops.c.id == shop_id).values(sync_state=dict(state)))


async def finish(
    session: AsyncSession, shop_id: int, *, synced_at: datetime, summary: dict[str, Any]
) -> None:
    """A run completed: everything updated before ``synced_at`` is in the database."""
    await session.execute(
        sa.update(shops)
        .where(shops.c.id == shop_id)
        .values(sync_state={"lastRun": dict(summary)}, last_synced_at=synced_at)
    )
