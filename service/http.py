"""The HTTP client a process talks to Shopify with, ready at once and set up on first use.

An ``httpx.AsyncClient`` builds its TLS context (the CA bundle, about 150 certificates) when it is
created: about 0.1 s of CPU, which ``tierline worker --drain`` and every ``serve`` process paid at
start-up even when they never called Shopify. Here the client's transport is created by its first
request instead; everything else (timeouts, limits, proxies from the environment) is httpx's own.
"""

from __future__ import annotations

from typing import Any

import httpx


class LazyTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncHTTPTransport(**options)``, created by the first request through it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._transport: httpx.AsyncHTTPTransport | None = None

    @property
    def started(self) -> bool:
        return self._transport is not None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport(**self._options)
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


def http_client(timeout: httpx.Timeout, *, limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    """A client for Shopify whose TLS set-up waits for its first request."""
    transport = LazyTransport(limits=limits) if limits is not None else LazyTransport()
    return httpx.AsyncClient(timeout=timeout, transport=transport)
