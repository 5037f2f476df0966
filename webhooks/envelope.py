"""The delivery envelope: what Shopify says about a delivery in its ``X-Shopify-*`` headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from shopify_client import is_valid_shop_domain

MAX_WEBHOOK_ID_LENGTH = 255
MAX_TOPIC_LENGTH = 255
MAX_OPTIONAL_HEADER_LENGTH = 255


class EnvelopeError(ValueError):
    """A required header is missing or malformed (answered with ``400``)."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A Shopify header by name, accepting the ``X-`` and un-prefixed forms (case-insensitive)."""
    value = headers.get(f"x-shopify-{name}")
    if value is None:
        value = headers.get(f"shopify-{name}")
    return value


def parse_timestamp(value: str | None) -> datetime | None:
    """``X-Shopify-Triggered-At`` as aware UTC, or None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class WebhookEnvelope:
    topic: str
    shop_domain: str
    webhook_id: str
    event_id: str | None
    api_version: str | None
    triggered_at: datetime | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> WebhookEnvelope:
        """Validate the required headers (docs/architecture.md, "The life of a webhook"); raise
        :class:`EnvelopeError`."""
        topic = (header(headers, "topic") or "").strip()
        if not topic or len(topic) > MAX_TOPIC_LENGTH or not topic.isprintable():
            raise EnvelopeError("X-Shopify-Topic is missing or malformed")
        shop = (header(headers, "shop-domain") or "").strip()
        if not is_valid_shop_domain(shop):
            raise EnvelopeError("X-Shopify-Shop-Domain is missing or not a *.myshopify.com domain")
        webhook_id = (header(headers, "webhook-id") or "").strip()
        if not webhook_id or len(webhook_id) > MAX_WEBHOOK_ID_LENGTH or not webhook_id.isprintable():
            raise EnvelopeError("X-Shopify-Webhook-Id is missing or longer than 255 characters")
        return cls(
            topic=topic.lower(),
            shop_domain=shop.lower(),
            webhook_id=webhook_id,
            event_id=_optional(header(headers, "event-id")),
            api_version=_optional(header(headers, "api-version")),
            triggered_at=parse_timestamp(header(headers, "triggered-at")),
        )


def _optional(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[:MAX_OPTIONAL_HEADER_LENGTH] or None
