"""POST /webhooks/shopify: every rule of intake (docs/architecture.md, "The life of a
webhook"), on SQLite and PostgreSQL.

Most tests go through the ``client`` fixture (Litestar's ``AsyncTestClient``, which runs the app on
its own event loop and sends one request at a time). Tests that need real concurrency or a
streamed body run the app's lifespan in the test's loop and talk to it through
``httpx.ASGITransport`` (see :func:`served`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.app import create_app
from service.config import Settings
from service.db import make_engine
from service.domain.inbox import NewDelivery, deliveries, store_deliveries, store_delivery
from service.domain.shops import get_or_create_shop_id, shops
from service.models import Shop, WebhookDelivery
from shopify_client import webhook_hmac
from tests.conftest import make_settings
from tests.support.payloads import (
    API_SECRET,
    PREVIOUS_SECRET,
    SHOP,
    customer_payload,
    next_id,
    order_payload,
    signed_webhook,
)
from webhooks.intake import GroupInsert

pytestmark = pytest.mark.anyio

URL = "/webhooks/shopify"
BASE_URL = "http://testserver.local"
PROBLEM_JSON = "application/problem+json"


async def fetch_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[WebhookDelivery]:
    async with sessionmaker() as session:
        result = await session.execute(sa.select(WebhookDelivery).order_by(WebhookDelivery.id))  # type: ignore[arg-type]
        return list(result.scalars().all())


async def count_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) or 0)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 error with this status; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert isinstance(problem["detail"], str)
    assert problem["detail"]
    return problem


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A test client for an app built from ``settings`` (for per-test configuration)."""
    async with AsyncTestClient(app=create_app(settings), base_url=BASE_URL) as client:
        yield client


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app running in this event loop, reached through ``httpx.ASGITransport``."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=cast(Any, app))  # Litestar is an ASGI app; the signatures differ
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


class TestStoredDelivery:
    async def test_every_field_is_stored_exactly(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        # Odd spacing and non-ASCII text: the stored body must be the bytes that were signed.
        body = '{"id": 7000000000999,  "first_name":"Zoë" ,\n "email": null}'.encode()
        headers, _ = signed_webhook("customers/create", None, raw=body, shop="Acme-Test.MyShopify.com")
        headers["X-Shopify-Webhook-Id"] = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
        headers["X-Shopify-Event-Id"] = "98880550-7158-44d4-b7cd-2c97c8a091b5"
        headers["X-Shopify-API-Version"] = "2026-04"
        headers["X-Shopify-Triggered-At"] = "2026-03-01T12:00:00.123456Z"
        before = datetime.now(UTC)

        response = await client.post(URL, content=body, headers=headers)

        assert response.status_code == 200
        assert response.json() == {"status": "accepted"}
        (row,) = await fetch_rows(sessionmaker)
        assert row.topic == "customers/create"
        assert row.shop_domain == "acme-test.myshopify.com"
        assert row.webhook_id == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
        assert row.event_id == "98880550-7158-44d4-b7cd-2c97c8a091b5"
        assert row.api_version == "2026-04"
        assert row.triggered_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
        assert row.body == body
        assert row.status == "pending"
        assert row.attempts == 0
        assert row.last_error is None
        assert row.processed_at is None
        assert before - timedelta(seconds=1) <= row.received_at <= datetime.now(UTC) + timedelta(seconds=1)
        async with sessionmaker() as session:
            shop = (await session.execute(sa.select(Shop))).scalars().one()
        assert (shop.domain, shop.id) == ("acme-test.myshopify.com", row.shop_id)

    @pytest.mark.parametrize(
        ("header_value", "expected"),
        [
            # Shopify sends nanoseconds; Python keeps microseconds (truncated, not rounded).
            ("2024-05-06T10:45:17.912552336Z", datetime(2024, 5, 6, 10, 45, 17, 912552, tzinfo=UTC)),
            ("2024-05-06T12:45:17+02:00", datetime(2024, 5, 6, 10, 45, 17, tzinfo=UTC)),
            ("2024-05-06T10:45:17", datetime(2024, 5, 6, 10, 45, 17, tzinfo=UTC)),
            ("not a time", None),
        ],
    )
    async def test_triggered_at_is_stored_in_utc(
        self,
        client: AsyncTestClient[Litestar],
        sessionmaker: async_sessionmaker[AsyncSession],
        header_value: str,
        expected: datetime | None,
    ) -> None:
        headers, body = signed_webhook("customers/update", customer_payload(next_id()))
        headers["X-Shopify-Triggered-At"] = header_value

        response = await client.post(URL, content=body, headers=headers)

        assert response.status_code == 200
        (row,) = await fetch_rows(sessionmaker)
        assert row.triggered_at == expected
        if expected is not None:
            assert row.triggered_at is not None
            assert row.triggered_at.utcoffset() == timedelta(0)


class TestHeaderNames:
    @pytest.mark.parametrize("transform", [str.lower, str.upper], ids=["lower", "upper"])
    async def test_header_names_are_case_insensitive(
        self,
        client: AsyncTestClient[Litestar],
        sessionmaker: async_sessionmaker[AsyncSession],
        transform: Any,
    ) -> None:
        headers, body = signed_webhook("customers/create", customer_payload(next_id()), webhook_id="w-case")
        response = await client.post(
            URL, content=body, headers={transform(name): value for name, value in headers.items()}
        )

        assert response.status_code == 200
        (row,) = await fetch_rows(sessionmaker)
        assert (row.webhook_id, row.topic, row.shop_domain, row.api_version) == (
            "w-case",
            "customers/create",
            SHOP,
            "2026-04",
        )

    async def test_unprefixed_shopify_headers_are_accepted(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers, body = signed_webhook(
            "orders/create", order_payload(next_id()), webhook_id="w-unprefixed", triggered_at=None
        )
        unprefixed = {name.removeprefix("X-"): value for name, value in headers.items()}
        assert all(not name.startswith("X-") for name in unprefixed)

        response = await client.post(URL, content=body, headers=unprefixed)

        assert response.status_code == 200
        (row,) = await fetch_rows(sessionmaker)
        assert (row.webhook_id, row.topic, row.shop_domain, row.api_version) == (
            "w-unprefixed",
            "orders/create",
            SHOP,
            "2026-04",
        )
        assert row.event_id == headers["X-Shopify-Event-Id"]
        assert row.triggered_at is not None


class TestSecretRotation:
    async def test_previous_secret_is_accepted_while_configured(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        settings = make_settings(database_url, SHOPIFY_API_SECRET_PREVIOUS=PREVIOUS_SECRET)
        old, old_body = signed_webhook(
            "customers/create", customer_payload(next_id()), secret=PREVIOUS_SECRET
        )
        new, new_body = signed_webhook("customers/create", customer_payload(next_id()), secret=API_SECRET)

        async with client_for(settings) as client:
            old_response = await client.post(URL, content=old_body, headers=old)
            new_response = await client.post(URL, content=new_body, headers=new)

        assert (old_response.status_code, new_response.status_code) == (200, 200)
        assert {row.webhook_id for row in await fetch_rows(sessionmaker)} == {
            old["X-Shopify-Webhook-Id"],
            new["X-Shopify-Webhook-Id"],
        }

    async def test_previous_secret_is_rejected_when_not_configured(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers, body = signed_webhook(
            "customers/create", customer_payload(next_id()), secret=PREVIOUS_SECRET
        )

        response = await client.post(URL, content=body, headers=headers)

        assert_problem(response, 401)
        assert await count_rows(sessionmaker) == 0


class TestSignature:
    async def test_wrong_hmac_is_401_and_stores_nothing(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers, body = signed_webhook(
            "customers/create", customer_payload(next_id()), secret="not-the-secret"
        )

        response = await client.post(URL, content=body, headers=headers)

        assert_problem(response, 401)
        assert await count_rows(sessionmaker) == 0

    @pytest.mark.parametrize(
        "value", [None, "", "not base64!", "dGVzdA=="], ids=["absent", "empty", "junk", "short"]
    )
    async def test_missing_or_malformed_hmac_is_401(
        self,
        client: AsyncTestClient[Litestar],
        sessionmaker: async_sessionmaker[AsyncSession],
        value: str | None,
    ) -> None:
        headers, body = signed_webhook("customers/create", customer_payload(next_id()))
        del headers["X-Shopify-Hmac-Sha256"]
        if value is not None:
            headers["X-Shopify-Hmac-Sha256"] = value

        response = await client.post(URL, content=body, headers=headers)

        assert_problem(response, 401)
        assert await count_rows(sessionmaker) == 0

    async def test_hmac_of_another_body_is_401(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers, body = signed_webhook("orders/create", order_payload(next_id(), total="10.00"))
        tampered = body.replace(b'"10.00"', b'"99999.00"')
        assert tampered != body

        response = await client.post(URL, content=tampered, headers=headers)

        assert_problem(response, 401)
        assert await count_rows(sessionmaker) == 0

    async def test_signature_is_checked_before_headers(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers, body = signed_webhook("customers/create", customer_payload(next_id()), secret="wrong")
        del headers["X-Shopify-Topic"]

        response = await client.post(URL, content=body, headers=headers)

        assert_problem(response, 401)
        assert await count_rows(sessionmaker) == 0


class TestRequiredHeaders:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("X-Shopify-Topic", None),
            ("X-Shopify-Topic", "  "),
            ("X-Shopify-Webhook-Id", None),
            ("X-Shopify-Webhook-Id", ""),
            ("X-Shopify-Webhook-Id", "w" * 256),
            ("X-Shopify-Shop-Domain", None),
            ("X-Shopify-Shop-Domain", "evil.com"),
            ("X-Shopify-Shop-Domain", "a.myshopify.com.evil.com"),
            ("X-Shopify-Shop-Domain", "-a.myshopify.com"),
            ("X-Shopify-Shop-Domain", "a.b.myshopify.com"),
            ("X-Shopify-Shop-Domain", "https://a.myshopify.com"),
        ],
        ids=[
            "no-topic",
            "blank-topic",
            "no-webhook-id",
            "empty-webhook-id",
            "webhook-id-256",
            "no-shop",
            "evil.com",
            "myshopify-suffix-attack",
            "leading-hyphen",
            "subdomain",
            "url-not-domain",
        ],
    )
    async def test_missing_or_invalid_header_is_400_and_stores_nothing(
        self,
        client: AsyncTestClient[Litestar],
        sessionmaker: async_sessionmaker[AsyncSession],
        name: str,
        value: str | None,
    ) -> None:
        headers, body = signed_webhook("customers/create", customer_payload(next_id()))
        del headers[name]
        if value is not None:
            headers[name] = value

        response = await client.post(URL, content=body, headers=headers)

        assert_problem(response, 400)
        assert await count_rows(sessionmaker) == 0
        async with sessionmaker() as session:
            assert await session.scalar(sa.select(sa.func.count()).select_from(Shop)) == 0

    async def test_webhook_id_of_255_characters_is_accepted(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        webhook_id = "w" * 255
        headers, body = signed_webhook("customers/create", customer_payload(next_id()), webhook_id=webhook_id)

        response = await client.post(URL, content=body, headers=headers)

        assert response.status_code == 200
        (row,) = await fetch_rows(sessionmaker)
        assert row.webhook_id == webhook_id

    async def test_uppercase_shop_domain_is_accepted_and_lowercased(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        first, first_body = signed_webhook("customers/create", customer_payload(next_id()), shop=SHOP.upper())
        second, second_body = signed_webhook("customers/create", customer_payload(next_id()), shop=SHOP)

        assert (await client.post(URL, content=first_body, headers=first)).status_code == 200
        assert (await client.post(URL, content=second_body, headers=second)).status_code == 200

        rows = await fetch_rows(sessionmaker)
        assert [row.shop_domain for row in rows] == [SHOP, SHOP]
        assert rows[0].shop_id == rows[1].shop_id
        async with sessionmaker() as session:
            domains = (await session.execute(sa.select(shops.c.domain))).scalars().all()
        assert list(domains) == [SHOP]


class TestBodySize:
    async def test_body_over_the_limit_is_413(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        body = b"x" * 4096
        headers, _ = signed_webhook("customers/create", None, raw=body)

        async with client_for(make_settings(database_url, TIERLINE_MAX_BODY=2048)) as client:
            response = await client.post(URL, content=body, headers=headers)

        assert_problem(response, 413)
        assert await count_rows(sessionmaker) == 0

    async def test_streamed_body_over_the_limit_is_413_without_content_length(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        body = b"x" * 4096
        headers, _ = signed_webhook("customers/create", None, raw=body)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 1024):
                yield body[start : start + 1024]

        async with served(make_settings(database_url, TIERLINE_MAX_BODY=2048)) as client:
            request = client.build_request("POST", URL, content=chunks(), headers=headers)
            assert "content-length" not in request.headers
            response = await client.send(request)

        assert_problem(response, 413)
        assert await count_rows(sessionmaker) == 0

    async def test_size_is_checked_before_the_signature(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers, body = signed_webhook("customers/create", None, raw=b"x" * 4096, secret="wrong")

        async with client_for(make_settings(database_url, TIERLINE_MAX_BODY=2048)) as client:
            response = await client.post(URL, content=body, headers=headers)

        assert_problem(response, 413)
        assert await count_rows(sessionmaker) == 0

    async def test_body_at_the_limit_is_accepted(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        body = b"y" * 2048
        headers, _ = signed_webhook("customers/create", None, raw=body)

        async with client_for(make_settings(database_url, TIERLINE_MAX_BODY=2048)) as client:
            response = await client.post(URL, content=body, headers=headers)

        assert response.status_code == 200
        (row,) = await fetch_rows(sessionmaker)
        assert row.body == body


class TestUnparsedBodies:
    @pytest.mark.parametrize(
        ("topic", "body"),
        [
            ("customers/create", b"not json"),
            ("customers/create", b"\xff\xfe"),
            ("orders/create", json.dumps({"id": 1, "total_price": "abc"}).encode()),
            ("customers/create", b""),
            ("products/update", json.dumps({"id": 1, "title": "Kurta"}).encode()),
        ],
        ids=["not-json", "not-utf8", "wrong-types", "empty", "unknown-topic"],
    )
    async def test_signed_body_is_stored_pending_whatever_it_contains(
        self,
        client: AsyncTestClient[Litestar],
        sessionmaker: async_sessionmaker[AsyncSession],
        topic: str,
        body: bytes,
    ) -> None:
        headers, _ = signed_webhook(topic, None, raw=body)

        response = await client.post(URL, content=body, headers=headers)

        assert response.status_code == 200
        assert response.json() == {"status": "accepted"}
        (row,) = await fetch_rows(sessionmaker)
        assert (row.topic, row.body, row.status) == (topic, body, "pending")


class TestDuplicates:
    async def test_same_webhook_id_twice_stores_one_row(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers, body = signed_webhook("customers/create", customer_payload(next_id()), webhook_id="w-dup")

        first = await client.post(URL, content=body, headers=headers)
        second = await client.post(URL, content=body, headers=headers)

        assert (first.status_code, first.json()) == (200, {"status": "accepted"})
        assert (second.status_code, second.json()) == (200, {"status": "duplicate"})
        (row,) = await fetch_rows(sessionmaker)
        assert row.webhook_id == "w-dup"

    async def test_duplicate_with_another_body_keeps_the_first(
        self, client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        customer_id = next_id()
        headers, body = signed_webhook("customers/update", customer_payload(customer_id), webhook_id="w-2")
        later, later_body = signed_webhook(
            "customers/update", customer_payload(customer_id, email="x@example.com"), webhook_id="w-2"
        )

        assert (await client.post(URL, content=body, headers=headers)).status_code == 200
        response = await client.post(URL, content=later_body, headers=later)

        assert response.json() == {"status": "duplicate"}
        (row,) = await fetch_rows(sessionmaker)
        assert row.body == body

    async def test_fifty_concurrent_posts_of_one_delivery_store_one_row(
        self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers, body = signed_webhook("orders/create", order_payload(next_id()), webhook_id="w-race")
        # What is tested is one row for fifty racing stores, not the intake deadline (tested
        # apart): on a loaded machine fifty SQLite writers in turn can take longer than 3 s.
        patient = settings.model_copy(update={"intake_timeout_seconds": 60.0})

        async with served(patient) as client:
            responses = await asyncio.gather(
                *(client.post(URL, content=body, headers=headers) for _ in range(50))
            )

        assert [r.status_code for r in responses] == [200] * 50
        statuses = [r.json()["status"] for r in responses]
        assert statuses.count("accepted") == 1
        assert statuses.count("duplicate") == 49
        assert await count_rows(sessionmaker) == 1
        async with sessionmaker() as session:
            assert await session.scalar(sa.select(sa.func.count()).select_from(Shop)) == 1

    async def test_fifty_concurrent_distinct_deliveries_are_all_stored(
        self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        deliveries = [signed_webhook("orders/create", order_payload(next_id())) for _ in range(50)]

        async with served(settings) as client:
            responses = await asyncio.gather(
                *(client.post(URL, content=body, headers=headers) for headers, body in deliveries)
            )

        assert [r.status_code for r in responses] == [200] * 50
        stored = {row.webhook_id for row in await fetch_rows(sessionmaker)}
        assert stored == {headers["X-Shopify-Webhook-Id"] for headers, _ in deliveries}


class TestDatabaseUnavailable:
    async def test_unreachable_postgresql_is_503_with_retry_after(self) -> None:
        settings = make_settings("postgresql+psycopg://127.0.0.1:1/x", TIERLINE_INTAKE_TIMEOUT=1)
        headers, body = signed_webhook("customers/create", customer_payload(next_id()))

        async with client_for(settings) as client:
            started = time.monotonic()
            response = await client.post(URL, content=body, headers=headers)
            elapsed = time.monotonic() - started

        assert_problem(response, 503)
        assert int(response.headers["retry-after"]) > 0
        assert elapsed < 5

    async def test_sqlite_file_that_cannot_be_opened_is_503(self, tmp_path: Path) -> None:
        folder = tmp_path / "vanishing"
        settings = make_settings(f"sqlite+aiosqlite:///{folder / 'tierline.db'}", TIERLINE_INTAKE_TIMEOUT=1)
        headers, body = signed_webhook("customers/create", customer_payload(next_id()))

        async with client_for(settings) as client:
            shutil.rmtree(folder)  # created by the lifespan; gone before the first connection
            response = await client.post(URL, content=body, headers=headers)

        assert_problem(response, 503)
        assert "retry-after" in response.headers

    async def test_database_slower_than_the_budget_is_503_then_retry_succeeds(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A writer holds the lock the insert needs: intake answers 503 in time, never 200."""
        settings = make_settings(database_url, TIERLINE_INTAKE_TIMEOUT=1)
        webhook_id = f"w-slow-{uuid.uuid4()}"
        headers, body = signed_webhook("customers/create", customer_payload(next_id()), webhook_id=webhook_id)
        blocker_engine = make_engine(settings)
        try:
            async with client_for(settings) as client:
                # Create the shop first, so the only thing the insert waits for is the blocker.
                warmup, warmup_body = signed_webhook("customers/create", customer_payload(next_id()))
                assert (await client.post(URL, content=warmup_body, headers=warmup)).status_code == 200
                async with blocker_engine.connect() as blocker:
                    transaction = await blocker.begin()
                    shop_id = await blocker.scalar(sa.select(shops.c.id))
                    await blocker.execute(
                        sa.insert(deliveries).values(
                            webhook_id=webhook_id,
                            topic="customers/create",
                            shop_id=shop_id,
                            shop_domain=SHOP,
                            received_at=datetime.now(UTC),
                            next_attempt_at=datetime.now(UTC),
                            body=b"{}",
                            status="pending",
                            attempts=0,
                        )
                    )
                    started = time.monotonic()
                    response = await client.post(URL, content=body, headers=headers)
                    elapsed = time.monotonic() - started
                    await transaction.rollback()
                assert_problem(response, 503)
                assert "retry-after" in response.headers
                assert elapsed < 5

                retry = await client.post(URL, content=body, headers=headers)

            # The insert given up on may still complete once the lock is free (on PostgreSQL it
            # runs in autocommit mode): Shopify's retry is then answered as a duplicate. Either
            # way the retry is a 200 and the delivery is stored exactly once.
            assert retry.status_code == 200
            assert retry.json()["status"] in {"accepted", "duplicate"}
            assert [row.webhook_id for row in await fetch_rows(sessionmaker)].count(webhook_id) == 1
        finally:
            await blocker_engine.dispose()


def test_signed_webhook_signs_with_the_given_secret() -> None:
    """The factory itself: a wrong secret must produce another signature (else 401 tests prove nothing)."""
    headers, body = signed_webhook("customers/create", {"id": 1})
    wrong, _ = signed_webhook("customers/create", {"id": 1}, secret="other")
    assert headers["X-Shopify-Hmac-Sha256"] == webhook_hmac(body, API_SECRET)
    assert wrong["X-Shopify-Hmac-Sha256"] != headers["X-Shopify-Hmac-Sha256"]


# --- group commit (PostgreSQL) ----------------------------------------------------------------


def _new(shop_id: int, webhook_id: str, body: bytes = b"{}") -> NewDelivery:
    return NewDelivery(
        webhook_id=webhook_id,
        event_id=None,
        topic="orders/create",
        shop_id=shop_id,
        shop_domain=SHOP,
        api_version="2026-04",
        triggered_at=datetime(2026, 11, 1, tzinfo=UTC),
        body=body,
    )


async def _shop_id(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session, session.begin():
        return await get_or_create_shop_id(session, SHOP)


def _postgresql_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("group commit is PostgreSQL's (SQLite has one writer)")


class TestStoreDeliveries:
    async def test_one_statement_stores_each_new_id_once_in_order(
        self, database_url: str, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _postgresql_only(database_url)
        shop_id = await _shop_id(sessionmaker)
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            assert await store_deliveries(conn, [_new(shop_id, "g-known")]) == [True]
            created = await store_deliveries(
                conn,
                [
                    _new(shop_id, "g-1", b"one"),
                    _new(shop_id, "g-known"),
                    _new(shop_id, "g-2", b"two"),
                    _new(shop_id, "g-1", b"one again"),
                ],
            )

        assert created == [True, False, True, False]
        rows = await fetch_rows(sessionmaker)
        assert [(row.webhook_id, row.body) for row in rows] == [
            ("g-known", b"{}"),
            ("g-1", b"one"),
            ("g-2", b"two"),
        ]
        assert all(row.status == "pending" and row.attempts == 0 for row in rows)
        assert rows[1].triggered_at == datetime(2026, 11, 1, tzinfo=UTC)

    async def test_groups_of_one_and_of_many_store_what_a_single_insert_stores(
        self, database_url: str, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _postgresql_only(database_url)
        shop_id = await _shop_id(sessionmaker)

        def like(webhook_id: str) -> NewDelivery:
            return NewDelivery(
                webhook_id=webhook_id,
                event_id="e-1",
                topic="orders/paid",
                shop_id=shop_id,
                shop_domain=SHOP,
                api_version=None,
                triggered_at=None,
                body=b"\x00\xff raw \\x bytes",
            )

        async with sessionmaker() as session, session.begin():
            assert await store_delivery(session, like("single"))
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            assert await store_deliveries(conn, [like("group-of-one")]) == [True]
            assert await store_deliveries(conn, [like("group-a"), like("group-b")]) == [True, True]

        def stored(row: WebhookDelivery) -> tuple[Any, ...]:
            return (
                row.event_id, row.topic, row.shop_id, row.shop_domain, row.api_version,
                row.triggered_at, row.body, row.status, row.attempts, row.last_error, row.processed_at,
                row.received_at.tzinfo is not None, row.next_attempt_at == row.received_at,
            )  # fmt: skip

        rows = {row.webhook_id: row for row in await fetch_rows(sessionmaker)}
        assert set(rows) == {"single", "group-of-one", "group-a", "group-b"}
        assert {stored(row) for row in rows.values()} == {stored(rows["single"])}


class TestGroupInsert:
    async def test_concurrent_deliveries_share_statements_and_are_all_stored(
        self, database_url: str, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _postgresql_only(database_url)
        shop_id = await _shop_id(sessionmaker)
        statements: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.startswith("INSERT INTO webhook_deliveries"):
                statements.append(statement)

        sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
        group = GroupInsert(engine, max_in_flight=2)
        ids = [f"c-{n}" for n in range(60)]
        results = await asyncio.gather(*(group.store(_new(shop_id, i), 5.0) for i in [*ids, "c-0"]))
        await group.close()

        assert results.count(True) == 60
        assert results.count(False) == 1  # the repeated id, stored once
        assert 1 <= len(statements) < 60  # grouped: far fewer statements than deliveries
        assert sorted(row.webhook_id for row in await fetch_rows(sessionmaker)) == sorted(ids)

    async def test_a_row_the_database_refuses_fails_alone(
        self, database_url: str, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _postgresql_only(database_url)
        shop_id = await _shop_id(sessionmaker)
        group = GroupInsert(engine, max_in_flight=1)
        too_long = "x" * 300  # longer than the column: refused by PostgreSQL

        results = await asyncio.gather(
            *(group.store(_new(shop_id, i), 5.0) for i in ["ok-1", too_long, "ok-2"]),
            return_exceptions=True,
        )
        await group.close()

        assert results[0] is True
        assert isinstance(results[1], sa.exc.DBAPIError)
        assert results[2] is True
        assert [row.webhook_id for row in await fetch_rows(sessionmaker)] == ["ok-1", "ok-2"]

    async def test_an_unreachable_database_fails_every_waiter_in_time(self) -> None:
        engine = make_engine(make_settings("postgresql+psycopg://127.0.0.1:1/x", TIERLINE_INTAKE_TIMEOUT=1))
        group = GroupInsert(engine, max_in_flight=2)
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                *(group.store(_new(1, f"u-{n}"), 2.0) for n in range(5)), return_exceptions=True
            )
            elapsed = time.monotonic() - started
        finally:
            await group.close()
            await engine.dispose()

        assert all(isinstance(r, sa.exc.SQLAlchemyError | OSError | TimeoutError) for r in results), results
        assert elapsed < 5
