"""Webhook subscriptions: ``shopify.app.toml`` and ``tierline webhooks register`` (docs/shopify-app.md)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import cli
from service.config import Settings
from service.subscriptions import (
    COMPLIANCE_TOPICS,
    WEBHOOK_TOPICS,
    SubscriptionError,
    callback_uri,
    register_webhooks,
)
from service.sync import NotInstalledError
from tests.service.test_sync import install
from tests.support.deliveries import Sessionmaker
from tests.support.payloads import OTHER_SHOP
from tests.support.shopify_fake import FakeShopify, FakeSleep
from webhooks.handlers import build_router

ROOT = Path(__file__).resolve().parents[2]
SPEC_TOPICS = {
    *(f"customers/{a}" for a in ("create", "update", "delete")),
    *(
        f"orders/{a}"
        for a in ("create", "updated", "cancelled", "paid", "fulfilled", "partially_fulfilled", "delete")
    ),
    "fulfillments/create",
    "fulfillments/update",
    "fulfillment_events/create",
    *(f"returns/{a}" for a in ("request", "approve", "decline", "close")),
    "refunds/create",
    "app/uninstalled",
    "customers/data_request",
    "customers/redact",
    "shop/redact",
}


def app_toml() -> dict[str, Any]:
    with (ROOT / "shopify.app.toml").open("rb") as file:
        return tomllib.load(file)


class TestAppToml:
    def test_subscribes_every_handled_topic_of_the_spec_at_the_webhook_endpoint(self) -> None:
        webhooks = app_toml()["webhooks"]
        assert webhooks["api_version"] == "2026-04"
        topics: list[str] = []
        compliance: list[str] = []
        for subscription in webhooks["subscriptions"]:
            assert subscription["uri"] == "/webhooks/shopify"
            topics += subscription.get("topics", [])
            compliance += subscription.get("compliance_topics", [])
        assert sorted(compliance) == sorted(COMPLIANCE_TOPICS)
        assert len(topics) == len(set(topics))
        assert set(topics) | set(compliance) == SPEC_TOPICS
        assert set(topics) | set(compliance) == build_router().topics

    def test_scopes_and_auth(self) -> None:
        config = app_toml()
        assert config["embedded"] is True
        assert (
            config["access_scopes"]["scopes"]
            == "read_customers,read_orders,read_fulfillments,read_returns,write_customers,write_orders"
        )
        assert config["access_scopes"]["scopes"] == Settings(_env_file=None).scopes
        assert config["application_url"].startswith("https://")
        [redirect] = config["auth"]["redirect_urls"]
        assert redirect == config["application_url"].rstrip("/") + "/auth/callback"
        assert config["client_id"]

    def test_shop_specific_topics_are_the_app_topics(self) -> None:
        assert set(WEBHOOK_TOPICS) == build_router().topics - set(COMPLIANCE_TOPICS)
        assert not set(WEBHOOK_TOPICS) & set(COMPLIANCE_TOPICS)


class TestCallbackUri:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("https://tierline.example.com", "https://tierline.example.com/webhooks/shopify"),
            ("https://tierline.example.com/", "https://tierline.example.com/webhooks/shopify"),
            ("https://hooks.example.com:8443/in", "https://hooks.example.com:8443/in"),
        ],
    )
    def test_a_base_url_gets_the_webhook_path(self, url: str, expected: str) -> None:
        assert callback_uri(url) == expected

    @pytest.mark.parametrize("url", ["http://tierline.example.com", "tierline.example.com", "https://"])
    def test_shopify_only_delivers_over_https(self, url: str) -> None:
        with pytest.raises(SubscriptionError, match="https"):
            callback_uri(url)


@pytest.mark.anyio
class TestRegister:
    async def register(
        self, sessionmaker: Sessionmaker, settings: Settings, fake: FakeShopify, url: str
    ) -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
            return await register_webhooks(sessionmaker, http, settings, OTHER_SHOP, url, sleep=FakeSleep())

    async def test_creates_one_json_subscription_per_topic_and_is_idempotent(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        await install(sessionmaker, OTHER_SHOP)
        fake = FakeShopify(OTHER_SHOP)

        report = await self.register(sessionmaker, settings, fake, "https://tierline.example.com")

        assert list(report.created) == list(WEBHOOK_TOPICS)
        assert report.uri == "https://tierline.example.com/webhooks/shopify"
        sent = fake.queries_named("webhookSubscriptionCreate")
        assert [body["variables"]["topic"] for body in sent] == [
            t.replace("/", "_").upper() for t in WEBHOOK_TOPICS
        ]
        assert all(
            body["variables"]["webhookSubscription"] == {"uri": report.uri, "format": "JSON"} for body in sent
        )
        assert fake.tokens_used() == {"shpat_initial"}

        again = await self.register(sessionmaker, settings, fake, "https://tierline.example.com")
        assert (again.created, again.existing, again.refused) == ({}, list(WEBHOOK_TOPICS), {})

    async def test_needs_an_installed_shop(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        fake = FakeShopify(OTHER_SHOP)
        with pytest.raises(NotInstalledError):
            await self.register(sessionmaker, settings, fake, "https://tierline.example.com")
        assert fake.requests == []

    async def test_the_command_keeps_existing_subscriptions(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        await install(sessionmaker, OTHER_SHOP)
        fake = FakeShopify(OTHER_SHOP)
        fake.subscribed.add("APP_UNINSTALLED")
        report = await cli._webhooks_register(
            settings, OTHER_SHOP, "https://tierline.example.com", transport=httpx.MockTransport(fake)
        )
        assert report.existing == ["app/uninstalled"]
        assert len(report.created) == len(WEBHOOK_TOPICS) - 1
