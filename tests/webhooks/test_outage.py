"""A database outage during intake (docs/architecture.md, issue 8): 503 while it is down, never 200; nothing
acknowledged is lost; everything applies after recovery.

PostgreSQL is reached through a TCP proxy owned by the test, so "restarting the database" is
closing the proxy (dropping every connection) and opening it again, without touching the
server other tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.app import create_app
from tests.conftest import make_settings
from tests.support.deliveries import CUSTOMERS, DELIVERIES, api_headers, drain
from tests.support.payloads import customer_payload, next_id, signed_webhook

pytestmark = pytest.mark.anyio


class Proxy:
    """Forwards 127.0.0.1:<port> to the database; ``down()`` drops every connection.

    It runs on an event loop of its own, in its own thread: the test client runs the app on
    another loop, and the proxy must keep forwarding while the test awaits a response.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def up(self) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._up(), self._loop))

    async def down(self) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._down(), self._loop))

    async def _up(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[Proxy]:
    if not database_url.startswith("postgresql"):
        pytest.skip("the outage is simulated on the PostgreSQL connection (SQLite is a local file)")
    url = make_url(database_url)
    p = Proxy(url.host or "127.0.0.1", url.port or 5432)
    p.start()
    await p.up()
    yield p
    await p.down()
    p.stop()


async def test_503_while_down_nothing_acknowledged_lost(
    database_url: str, proxy: Proxy, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    proxied = (
        make_url(database_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )
    settings = make_settings(proxied, TIERLINE_INTAKE_TIMEOUT="1.5")
    app = create_app(settings)
    acknowledged: list[int] = []
    refused: list[int] = []

    async def send(customer_id: int) -> int:
        headers, body = signed_webhook("customers/create", customer_payload(customer_id))
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
        (acknowledged if response.status_code == 200 else refused).append(customer_id)
        return response.status_code

    api = await api_headers(sessionmaker)
    async with AsyncTestClient(app=app) as client:
        for _ in range(5):
            assert await send(next_id()) == 200
        assert (await client.get("/api/customers", headers=api)).status_code == 200
        await proxy.down()
        down_codes = [await send(next_id()) for _ in range(3)]
        ready = await client.get("/ready")
        read_down = await client.get("/api/customers", headers=api)
        await proxy.up()
        # The pool's connections died with the proxy (there is no ping before a checkout): the
        # first use of one fails, SQLAlchemy discards the pool, and intake retries once.
        recovered = [await send(next_id()) for _ in range(5)]
        read_up = await client.get("/api/customers", headers=api)
    assert down_codes == [503, 503, 503]
    assert ready.status_code == 503
    # a read while the database is away is a retryable 503 problem, not a 500
    assert (read_down.status_code, read_down.headers["content-type"]) == (503, "application/problem+json")
    assert read_down.headers["retry-after"] == "5"
    assert recovered == [200] * 5
    assert read_up.status_code == 200
    async with sessionmaker() as session:
        stored = {
            json.loads(body)["id"] for body in (await session.scalars(sa.select(DELIVERIES.c.body))).all()
        }
    assert stored == set(acknowledged)  # every 200 is stored; no 503 was stored behind our back
    assert not stored & set(refused)
    await drain(sessionmaker, make_settings(database_url))
    async with sessionmaker() as session:
        applied = set((await session.scalars(sa.select(CUSTOMERS.c.id))).all())
    assert applied == set(acknowledged)
