"""What a running process holds: settings, engine, sessions, HTTP client. Built in the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings
from service.reads import Reads

#: How long shutdown waits for background writes.
BACKGROUND_GRACE_SECONDS = 5.0


def _nothing() -> None:
    return None


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    #: Where the read API's hot statements run (``service.reads``): psycopg's pool on PostgreSQL.
    reads: Reads
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
    #: Small writes done after a request (an API key's ``last_used_at``), awaited at shutdown.
    background: set[asyncio.Task[None]] = field(default_factory=set)
    #: API keys whose ``last_used_at`` write is under way (one at a time per key).
    key_uses_pending: set[int] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` beside the request; the task is kept until done so it is not collected."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def settle_background(self) -> None:
        """Wait (at most a few seconds) for the background writes still running, at shutdown."""
        if self.background:
            await asyncio.wait(list(self.background), timeout=BACKGROUND_GRACE_SECONDS)
