"""What a running process holds: settings, engine, sessions, HTTP client. Built in the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings


def _nothing() -> None:
    return None


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    #: Wakes the in-process worker after intake commits a new delivery.
    notify_worker: Callable[[], None] = _nothing
    #: Wakes the in-process job runner after a sync job was queued (install, retry).
    notify_jobs: Callable[[], None] = _nothing
    #: Shop domain → monotonic time until which its stored token is known to be usable.
    usable_tokens: dict[str, float] = field(default_factory=dict)
    #: Shop domain → id, filled by intake (shop rows are never deleted, only their data).
    shop_ids: dict[str, int] = field(default_factory=dict)
    #: SQLite has one writer and its lock is not fair: intake and the in-process worker take
    #: turns through this FIFO lock so a busy worker cannot starve intake. None on PostgreSQL.
    write_gate: asyncio.Lock | None = None
