"""The webhook topics tierline handles (docs/architecture.md): one list for subscriptions and
metric labels."""

from __future__ import annotations

#: Every handled topic that a shop-specific subscription can carry.
WEBHOOK_TOPICS: tuple[str, ...] = (
    "customers/create",
    "customers/update",
    "customers/delete",
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/paid",
    "orders/fulfilled",
    "orders/partially_fulfilled",
    "orders/delete",
    "fulfillments/create",
    "fulfillments/update",
    "fulfillment_events/create",
    "returns/request",
    "returns/approve",
    "returns/decline",
    "returns/close",
    "refunds/create",
    "app/uninstalled",
)
#: The privacy topics, declared in ``shopify.app.toml`` only (``compliance_topics``).
COMPLIANCE_TOPICS: tuple[str, ...] = ("customers/data_request", "customers/redact", "shop/redact")
HANDLED_TOPICS: frozenset[str] = frozenset(WEBHOOK_TOPICS + COMPLIANCE_TOPICS)
