"""What the worker's background loops share (the sync ``JobRunner``, the ``WriteBackSender``):
an owner name for leases, a wake-up and a stop signal, and short write transactions that take
turns with intake on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import session_scope


def default_owner() -> str:
    """``host:pid:random``: who holds a lease, readable in the database."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class BackgroundLoop:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        write_gate: asyncio.Lock | None,
        owner: str | None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._gate = write_gate
        self.owner = owner or default_owner()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def notify(self) -> None:
        """Work was queued: look for it without waiting for the poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        return _gated(self._sessionmaker, self._gate)

    async def _sleep(self, seconds: float) -> None:
        """Until ``seconds`` pass, :meth:`notify` or :meth:`stop`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)


@contextlib.asynccontextmanager
async def _gated(
    sessionmaker: async_sessionmaker[AsyncSession], gate: asyncio.Lock | None
) -> AsyncIterator[AsyncSession]:
    async with gate or contextlib.nullcontext(), session_scope(sessionmaker) as session:
        yield session
