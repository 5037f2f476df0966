"""The Shopify HTTP client sets up its transport (and TLS) on first use, not at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from service.http import LazyTransport, http_client

pytestmark = pytest.mark.anyio


@pytest.fixture
async def local_server() -> AsyncIterator[str]:
    """A one-answer HTTP/1.1 server on 127.0.0.1 (a real socket, no mock)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


def transport_of(client: httpx.AsyncClient) -> LazyTransport:
    transport = client._transport
    assert isinstance(transport, LazyTransport)
    return transport


async def test_the_transport_waits_for_the_first_request(local_server: str) -> None:
    async with http_client(httpx.Timeout(5.0)) as client:
        transport = transport_of(client)
        assert not transport.started

        response = await client.get(local_server)

        assert (response.status_code, response.text) == (200, "ok")
        assert transport.started


async def test_a_client_never_used_closes_without_setting_up(local_server: str) -> None:
    client = http_client(httpx.Timeout(5.0), limits=httpx.Limits(max_connections=3))
    transport = transport_of(client)

    await client.aclose()

    assert not transport.started
    assert client.is_closed


async def test_limits_reach_the_transport(local_server: str) -> None:
    async with http_client(httpx.Timeout(5.0), limits=httpx.Limits(max_connections=3)) as client:
        await client.get(local_server)
        inner = transport_of(client)._transport
        assert inner is not None
        assert inner._pool._max_connections == 3
