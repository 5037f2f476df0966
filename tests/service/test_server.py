"""How ``tierline serve`` configures uvicorn (``service.server``): forwarded headers and limits.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` rewrite the client address and scheme the
application sees. Before, ``serve`` trusted them from any client (``forwarded_allow_ips="*"``):
anyone could claim any address or ``https``. Now only ``FORWARDED_ALLOW_IPS`` (loopback by
default) is trusted. The checks run uvicorn's own proxy-headers middleware as ``serve`` loads it.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.config import Settings
from service.server import GuardedHttpToolsProtocol, server_config
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

FORWARDED = [(b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-proto", b"https")]


async def seen_by_the_app(settings: Settings, client: str) -> tuple[str, str]:
    """(client address, scheme) the application sees for a request with forwarded headers."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(client=scope["client"][0], scheme=scope["scheme"])

    config = server_config(app, settings, host="127.0.0.1", port=8000)
    config.load()
    scope = {
        "type": "http",
        "scheme": "http",
        "client": (client, 40000),
        "headers": FORWARDED,
        "path": "/",
    }
    await config.loaded_app(scope, None, None)
    return seen["client"], seen["scheme"]


class TestForwardedHeaders:
    @pytest.mark.parametrize("client", ["203.0.113.9", "10.0.0.5", "172.16.0.3"])
    async def test_are_ignored_from_any_other_address_by_default(self, client: str) -> None:
        settings = make_settings("sqlite+aiosqlite:///unused.db")
        assert await seen_by_the_app(settings, client) == (client, "http")

    @pytest.mark.parametrize("client", ["127.0.0.1", "::1"])
    async def test_are_trusted_from_loopback_by_default(self, client: str) -> None:
        settings = make_settings("sqlite+aiosqlite:///unused.db")
        assert await seen_by_the_app(settings, client) == ("198.51.100.7", "https")

    async def test_a_configured_proxy_network_is_trusted(self) -> None:
        settings = make_settings("sqlite+aiosqlite:///unused.db", FORWARDED_ALLOW_IPS="172.16.0.0/12")
        assert await seen_by_the_app(settings, "172.19.4.2") == ("198.51.100.7", "https")
        assert await seen_by_the_app(settings, "203.0.113.9") == ("203.0.113.9", "http")


class TestProtocolLimits:
    def test_the_protocol_carries_the_settings(self) -> None:
        settings = make_settings(
            "sqlite+aiosqlite:///unused.db",
            TIERLINE_MAX_HEADER_BYTES="8192",
            TIERLINE_HEADER_TIMEOUT="2.5",
            TIERLINE_KEEP_ALIVE="3",
        )
        config = server_config(None, settings, host="127.0.0.1", port=8000)
        protocol = config.http
        assert isinstance(protocol, type)
        assert issubclass(protocol, GuardedHttpToolsProtocol)
        assert (protocol.max_head_bytes, protocol.head_timeout) == (8192, 2.5)
        assert config.timeout_keep_alive == 3
        assert config.ws == "none"

    def test_defaults(self) -> None:
        settings = make_settings("sqlite+aiosqlite:///unused.db")
        assert (settings.max_header_bytes, settings.header_timeout_seconds) == (64 * 1024, 10.0)
        assert (settings.body_budget, settings.body_timeout_seconds) == (64 * 1024 * 1024, 10.0)
        assert settings.forwarded_allow_ips == "127.0.0.1,::1"
