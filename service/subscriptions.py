"""Webhook subscriptions: the topics tierline handles, and shop-specific registration (docs/shopify-app.md).

A public (Partner) app declares its subscriptions in ``shopify.app.toml`` and deploys them with
``shopify app deploy``. A custom app created in a shop's admin cannot use the TOML: ``tierline
webhooks register --shop X`` creates the same subscriptions for that one shop through the Admin
GraphQL API (``webhookSubscriptionCreate``). The three privacy topics cannot be subscribed that
way (Shopify only accepts them from the app configuration), so they are not in
:data:`WEBHOOK_TOPICS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.sync import Clock, ShopAccess, Sleep
from service.topics import COMPLIANCE_TOPICS as COMPLIANCE_TOPICS  # re-exported
from service.topics import WEBHOOK_TOPICS as WEBHOOK_TOPICS  # re-exported
from service.types import utc_now
from shopify_client import UserErrorsError

WEBHOOK_PATH = "/webhooks/shopify"


class SubscriptionError(ValueError):
    """The callback URL cannot receive Shopify webhooks."""


@dataclass(slots=True)
class RegistrationReport:
    uri: str
    created: dict[str, str] = field(default_factory=dict)
    #: Topics Shopify already delivers to this address.
    existing: list[str] = field(default_factory=list)
    #: Topic → Shopify's reason for refusing it.
    refused: dict[str, str] = field(default_factory=dict)


def callback_uri(url: str) -> str:
    """The HTTPS address to subscribe: a bare base URL gets ``/webhooks/shopify`` appended."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise SubscriptionError(f"Shopify delivers webhooks only to https:// URLs, not {url!r}")
    if parts.path in ("", "/"):
        return f"https://{parts.netloc}{WEBHOOK_PATH}"
    return url.strip()


def _already_taken(exc: UserErrorsError) -> bool:
    return any("taken" in message.lower() or "already" in message.lower() for message in exc.messages)


async def register_webhooks(
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    settings: Settings,
    shop: str,
    url: str,
    *,
    topics: Iterable[str] = WEBHOOK_TOPICS,
    sleep: Sleep = asyncio.sleep,
    now: Clock = utc_now,
) -> RegistrationReport:
    """Subscribe ``shop`` to ``topics`` at ``url`` (JSON, the API version of the client).

    Idempotent: a topic already subscribed at that address is reported, not duplicated. Raises
    ``service.sync.NotInstalledError`` when the shop has no stored token.
    """
    report = RegistrationReport(uri=callback_uri(url))
    access = ShopAccess(sessionmaker, http, settings, shop, sleep=sleep, now=now)
    await access.open()
    client = await access.client()
    for topic in topics:
        try:
            (subscription_id,) = await client.register_webhooks([topic], report.uri)
        except UserErrorsError as exc:
            if _already_taken(exc):
                report.existing.append(topic)
            else:
                report.refused[topic] = str(exc)
            continue
        report.created[topic] = subscription_id
    return report
