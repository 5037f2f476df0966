"""POST /webhooks/shopify: every rule of SPEC §3, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.models import WebhookDelivery
from tests.factories import customer_payload, next_id, signed_webhook

pytestmark = pytest.mark.anyio

URL = "/webhooks/shopify"


async def count_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) or 0)


class TestAccepted:
    async def test_valid_delivery_is_stored_pending(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers, body = signed_webhook("customers/create", customer_payload(next_id()), webhook_id="w-1")
        response = await client.post(URL, content=body, headers=headers)
        assert response.status_code == 200
        assert response.json() == {"status": "accepted"}
        async with sessionmaker() as session:
            row = (await session.execute(sa.select(WebhookDelivery))).scalars().one()
        assert (row.webhook_id, row.topic, row.status, row.body) == (
            "w-1",
            "customers/create",
            "pending",
            body,
        )
        assert row.shop_domain == "acme-test.myshopify.com"
