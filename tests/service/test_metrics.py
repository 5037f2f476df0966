"""/metrics carries what an on-call engineer alerts on (SPEC §7, docs/operations.md)."""

from __future__ import annotations

import re

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.metrics import route_label
from tests.factories import customer_payload, next_id, signed_webhook
from tests.webhooks.helpers import drain

pytestmark = pytest.mark.anyio


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_backlog_processing_and_http_latency_are_exposed(
    client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    headers, body = signed_webhook("customers/create", customer_payload(next_id()))
    assert (await client.post("/webhooks/shopify", content=body, headers=headers)).status_code == 200
    before = (await client.get("/metrics")).text
    assert sample(before, "tierline_inbox_backlog") == 1.0
    processed_before = sample(
        before, "tierline_webhook_deliveries_settled_total", topic="customers/create", status="processed"
    )
    await drain(sessionmaker, settings)  # this worker is not the app's: no on_settled hook
    await client.get("/api/customers/123")  # 401: still observed, with the id folded away
    after = (await client.get("/metrics")).text
    assert sample(after, "tierline_inbox_backlog") == 0.0
    assert sample(after, "tierline_inbox_oldest_pending_seconds") == 0.0
    assert processed_before == sample(
        after, "tierline_webhook_deliveries_settled_total", topic="customers/create", status="processed"
    )
    assert (
        sample(
            after,
            "tierline_http_request_duration_seconds_count",
            method="GET",
            route="/api/customers/{id}",
            status="4xx",
        )
        >= 1
    )
    assert "tierline_tier_changes_total" in after or "# TYPE tierline_tier_changes_total counter" in after
    assert "tierline_webhook_processing_seconds_bucket" in after


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/api/customers/7001234567890", "/api/customers/{id}"),
        ("/api/customers/gid://shopify/Customer/12/addresses", "/api/customers/{id}/addresses"),
        ("/api/orders/55/tracking-status", "/api/orders/{id}/tracking-status"),
        ("/wp-login.php", "other"),
        ("/health", "/health"),
    ],
)
def test_route_labels_have_low_cardinality(path: str, label: str) -> None:
    assert route_label(path) == label
