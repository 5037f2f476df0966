"""Unauthenticated probes: ``/health``, ``/ready`` and ``/metrics`` (docs/api.md, docs/operations.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.app import create_app
from service.domain import inbox
from service.domain.shops import get_or_create_shop_id
from tests.conftest import make_settings
from tests.support.payloads import OTHER_SHOP, SHOP, customer_payload, next_id, signed_webhook

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
Session = async_sessionmaker[AsyncSession]
UNREACHABLE_POSTGRES = "postgresql+psycopg://127.0.0.1:1/x"


async def add_deliveries(sessionmaker: Session, shop: str, count: int, *, status: str = "pending") -> None:
    async with sessionmaker() as session, session.begin():
        shop_id = await get_or_create_shop_id(session, shop)
        for _ in range(count):
            webhook_id = str(uuid.uuid4())
            await inbox.store_delivery(
                session,
                inbox.NewDelivery(
                    webhook_id=webhook_id,
                    event_id=None,
                    topic="orders/create",
                    shop_id=shop_id,
                    shop_domain=shop,
                    api_version="2026-04",
                    triggered_at=datetime.now(UTC),
                    body=b"{}",
                ),
            )
        if status != "pending":
            ids = [d.id for d in await inbox.claim_batch(session, 1000)]
            await inbox.settle(session, ids, status)


def sample_value(text: str, name: str, labels: dict[str, str]) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


class TestHealth:
    async def test_health_is_ok_without_credentials(self, client: Client) -> None:
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_health_does_not_need_the_database(self) -> None:
        async with AsyncTestClient(app=create_app(make_settings(UNREACHABLE_POSTGRES))) as client:
            response = await client.get("/health")
        assert (response.status_code, response.json()) == (200, {"status": "ok"})


class TestReady:
    async def test_ready_reports_database_and_backlog(self, client: Client, sessionmaker: Session) -> None:
        await add_deliveries(sessionmaker, SHOP, 2, status="processed")
        await add_deliveries(sessionmaker, SHOP, 3)
        await add_deliveries(sessionmaker, OTHER_SHOP, 1)

        response = await client.get("/ready")

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ready"
        assert body["database"] == "ok"
        assert body["backlog"] == 4
        assert body["oldestPendingAgeSeconds"] >= 0

    async def test_empty_inbox_has_zero_backlog(self, client: Client) -> None:
        response = await client.get("/ready")
        assert response.status_code == 200
        assert (response.json()["backlog"], response.json()["oldestPendingAgeSeconds"]) == (0, 0)

    async def test_unreachable_database_is_503(self) -> None:
        settings = make_settings(UNREACHABLE_POSTGRES, TIERLINE_INTAKE_TIMEOUT=1)
        async with AsyncTestClient(app=create_app(settings)) as client:
            response = await client.get("/ready")
        assert response.status_code == 503
        body = response.json()
        assert (body["status"], body["database"]) == ("unavailable", "unreachable")


class TestMetrics:
    async def test_metrics_count_accepted_deliveries_by_topic_and_outcome(self, client: Client) -> None:
        labels = {"topic": "customers/create", "outcome": "accepted"}
        before = sample_value(
            (await client.get("/metrics")).text, "tierline_webhook_deliveries_total", labels
        )
        headers, body = signed_webhook("customers/create", customer_payload(next_id()))
        assert (await client.post("/webhooks/shopify", content=body, headers=headers)).status_code == 200

        response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "tierline_webhook_deliveries_total" in response.text
        after = sample_value(response.text, "tierline_webhook_deliveries_total", labels)
        assert after == before + 1

    async def test_duplicates_and_rejections_have_their_own_outcome(self, client: Client) -> None:
        duplicate = {"topic": "customers/update", "outcome": "duplicate"}
        rejected = {"topic": "unverified", "outcome": "unauthorized"}
        text = (await client.get("/metrics")).text
        before = (
            sample_value(text, "tierline_webhook_deliveries_total", duplicate),
            sample_value(text, "tierline_webhook_deliveries_total", rejected),
        )
        headers, body = signed_webhook("customers/update", customer_payload(next_id()))
        for _ in range(2):
            await client.post("/webhooks/shopify", content=body, headers=headers)
        bad, bad_body = signed_webhook("customers/update", customer_payload(next_id()), secret="wrong")
        assert (await client.post("/webhooks/shopify", content=bad_body, headers=bad)).status_code == 401

        text = (await client.get("/metrics")).text

        after = (
            sample_value(text, "tierline_webhook_deliveries_total", duplicate),
            sample_value(text, "tierline_webhook_deliveries_total", rejected),
        )
        assert after == (before[0] + 1, before[1] + 1)

    async def test_ready_updates_the_backlog_gauge(self, client: Client, sessionmaker: Session) -> None:
        await add_deliveries(sessionmaker, SHOP, 2)
        assert (await client.get("/ready")).status_code == 200

        text = (await client.get("/metrics")).text

        assert sample_value(text, "tierline_inbox_backlog", {}) == 2


class TestOpenAPI:
    async def test_schema_renders_and_documents_ready_503(self, client: Client) -> None:
        response = await client.get("/schema/openapi.json")

        assert response.status_code == 200, response.text
        ready = response.json()["paths"]["/ready"]["get"]
        assert {"200", "503"} <= set(ready["responses"])
