"""A merchant's whole life with tierline, with no operator (docs/shopify-app.md), against the
stand-in Shopify.

Every call tierline makes goes through ``TIERLINE_SHOPIFY_URL`` to a real HTTP server on
127.0.0.1 (``tests.support.shopify_standin``) that validates each GraphQL document against the
Admin API schema in ``../shared``. Without ``../shared`` the module is skipped loudly (a failure
under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service import cli
from service.app import create_app
from service.config import Settings
from service.crypto import TokenCipher
from service.db import session_scope
from service.domain import jobs, sync_state
from service.jobs import JobRunner
from service.models import JobState, ShopJob
from tests.conftest import make_settings
from tests.service.test_sync import shop_state, webhook_deliveries
from tests.support import deliveries as helpers
from tests.support import twins
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import API_KEY, API_SECRET, ENCRYPTION_KEY
from tests.support.shopify_standin import SCHEMA_PATH, Server, StandIn, schema_available, shopify_url

if not schema_available():
    _MISSING = (
        f"LIFECYCLE TESTS DID NOT RUN: the Admin API schema is missing at {SCHEMA_PATH} "
        "(expected ../shared/shopify-admin-schema beside the project)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(_MISSING, pytrace=False)
    pytest.skip(_MISSING, allow_module_level=True)

pytestmark = pytest.mark.anyio

STORY_SHOP = "story-shop.myshopify.com"
REFERENCE_SHOP = "reference-shop.myshopify.com"
JOBS = ShopJob.__table__  # type: ignore[attr-defined]
Client = AsyncTestClient[Litestar]


class ThreadedTransport(httpx.AsyncBaseTransport):
    """Sends with a synchronous client in a thread: the app under test runs on the test client's
    own event loop, and a socket must not outlive the loop it was opened on."""

    def __init__(self) -> None:
        self._client = httpx.Client(timeout=10)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        answer = await asyncio.to_thread(
            self._client.request, request.method, str(request.url), headers=request.headers, content=content
        )
        headers = [(k, v) for k, v in answer.headers.items() if k.lower() != "content-encoding"]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)

    async def aclose(self) -> None:
        self._client.close()


def no_pool() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=ThreadedTransport())


@pytest.fixture
def standin() -> Iterator[StandIn]:
    fake = StandIn(api_key=API_KEY, api_secret=API_SECRET)
    with Server(fake) as running:
        yield running
    assert fake.invalid_documents == [], fake.invalid_documents


@pytest.fixture
def story_settings(database_url: str, standin: StandIn) -> Settings:
    return make_settings(
        database_url,
        TIERLINE_SHOPIFY_URL=shopify_url(standin),
        TIERLINE_BULK_POLL="0.05",
        TIERLINE_JOB_LEASE="5",
    )


@pytest.fixture
async def app_client(story_settings: Settings) -> AsyncIterator[Client]:
    async with (
        no_pool() as http,
        AsyncTestClient(
            app=create_app(story_settings, http_client=http), base_url="http://testserver.local"
        ) as client,
    ):
        yield client


@pytest.fixture
async def runner(sessionmaker: Sessionmaker, story_settings: Settings) -> AsyncIterator[JobRunner]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield JobRunner(sessionmaker, http, story_settings)


def bearer(standin: StandIn, shop: str = STORY_SHOP) -> dict[str, str]:
    return {"Authorization": f"Bearer {standin.session_token(shop)}"}


async def first_load(
    client: Client, standin: StandIn, shop: str = STORY_SHOP, path: str = "/app"
) -> httpx.Response:
    """Shopify admin opening the app: the app URL with ``shop``, ``host`` and ``id_token``."""
    return await client.get(
        path, params={"shop": shop, "host": "YWRtaW4", "id_token": standin.session_token(shop)}
    )


async def shop_doc(client: Client, standin: StandIn, shop: str = STORY_SHOP) -> dict[str, Any]:
    response = await client.get("/api/shop", headers=bearer(standin, shop))
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


async def job_rows(sessionmaker: Sessionmaker) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        rows = (await session.execute(sa.select(JOBS).order_by(JOBS.c.id))).all()
    return [dict(row._mapping) for row in rows]


async def stored_token(sessionmaker: Sessionmaker, shop: str = STORY_SHOP) -> tuple[str | None, str | None]:
    async with sessionmaker() as session:
        row = (
            await session.execute(
                sa.select(helpers.SHOPS.c.access_token_enc, helpers.SHOPS.c.scopes).where(
                    helpers.SHOPS.c.domain == shop
                )
            )
        ).one()
    return row.access_token_enc, row.scopes


class TestStory:
    async def test_install_by_first_load_backfill_figures_uninstall_reinstall(
        self,
        app_client: Client,
        standin: StandIn,
        runner: JobRunner,
        sessionmaker: Sessionmaker,
        story_settings: Settings,
    ) -> None:
        data = twins.dataset(customers=25, orders=70, seed=15)
        standin.add_shop(STORY_SHOP, data, currency="USD", timezone="America/Chicago")
        # The same records pushed as webhooks to another shop: what the backfill must reach.
        await helpers.apply(sessionmaker, story_settings, webhook_deliveries(data), shop=REFERENCE_SHOP)

        # 1. Install by first load: one token exchange, the token stored encrypted.
        page = await first_load(app_client, standin)
        assert page.status_code == 200, page.text
        assert len(standin.token_grants("urn:ietf:params:oauth:grant-type:token-exchange")) == 1
        encrypted, scopes = await stored_token(sessionmaker)
        assert encrypted is not None
        plain = TokenCipher(ENCRYPTION_KEY).decrypt(encrypted)
        assert standin.access_tokens[plain] == STORY_SHOP
        assert plain not in encrypted
        assert scopes == story_settings.scopes
        assert 'id="sync-banner"' in page.text
        assert 'data-sync-state="queued"' in page.text

        # 2. Currency and time zone read; the first backfill queued.
        doc = await shop_doc(app_client, standin)
        assert (doc["domain"], doc["currency"], doc["timezone"], doc["installed"]) == (
            STORY_SHOP,
            "USD",
            "America/Chicago",
            True,
        )
        assert doc["sync"]["state"] == "queued"
        assert doc["writeBack"] == {"pending": 0, "failed": 0, "lastWrittenAt": None}
        assert len(standin.token_grants("urn:ietf:params:oauth:grant-type:token-exchange")) == 1  # not again

        # 3. The worker runs the backfill.
        [outcome] = await runner.drain()
        assert outcome.state == "done", outcome.error
        assert standin.bulk_operations_started(STORY_SHOP) == ["customers", "orders"]

        # 4. Figures served: exactly what the same records received as webhooks give.
        doc = await shop_doc(app_client, standin)
        assert doc["sync"]["state"] == "done"
        assert (doc["sync"]["customers"], doc["sync"]["orders"]) == (25, 70)
        assert doc["sync"]["finishedAt"].endswith("Z")
        assert await shop_state(sessionmaker, STORY_SHOP) == await shop_state(sessionmaker, REFERENCE_SHOP)
        customers = await app_client.get("/api/customers", params={"limit": 250}, headers=bearer(standin))
        assert customers.status_code == 200
        assert len(customers.json()["items"]) == 25
        page = await first_load(app_client, standin)
        assert "sync-banner" not in page.text
        assert "$" in page.text  # amounts in the shop's currency

        # 5. Uninstall: Shopify revokes the token and sends app/uninstalled.
        standin.uninstall(STORY_SHOP)
        await helpers.apply(
            sessionmaker,
            story_settings,
            [Delivery.of("app/uninstalled", {"id": 1, "myshopify_domain": STORY_SHOP})],
            shop=STORY_SHOP,
        )
        assert await stored_token(sessionmaker) == (None, story_settings.scopes)
        key_headers = await helpers.api_headers(sessionmaker, STORY_SHOP)
        assert (await app_client.get("/api/shop", headers=key_headers)).status_code == 401

        # 6. Reinstall by opening the app again: a new exchange and a second full backfill.
        page = await first_load(app_client, standin)
        assert page.status_code == 200, page.text
        assert len(standin.token_grants("urn:ietf:params:oauth:grant-type:token-exchange")) == 2
        rows = await job_rows(sessionmaker)
        assert [(r["kind"], r["trigger"], r["state"]) for r in rows] == [
            ("backfill", "install", JobState.DONE),
            ("backfill", "reinstall", JobState.QUEUED),
        ]
        [outcome] = await runner.drain()
        assert outcome.state == "done", outcome.error
        assert standin.bulk_operations_started(STORY_SHOP) == ["customers", "orders", "customers", "orders"]
        doc = await shop_doc(app_client, standin)
        assert (doc["sync"]["state"], doc["sync"]["customers"], doc["sync"]["orders"]) == ("done", 25, 70)
        assert await shop_state(sessionmaker, STORY_SHOP) == await shop_state(sessionmaker, REFERENCE_SHOP)
        assert (await app_client.get("/api/shop", headers=key_headers)).status_code == 200


class TestFirstLoad:
    async def test_concurrent_first_loads_exchange_once(
        self, app_client: Client, standin: StandIn, sessionmaker: Sessionmaker
    ) -> None:
        standin.add_shop(STORY_SHOP)
        standin.exchange_delay = 0.5
        responses = await asyncio.gather(
            *(app_client.get("/api/shop", headers=bearer(standin)) for _ in range(4)),
            *(first_load(app_client, standin) for _ in range(2)),
        )
        assert [r.status_code for r in responses] == [200] * 6
        assert len(standin.token_grants("urn:ietf:params:oauth:grant-type:token-exchange")) == 1
        assert [(r["kind"], r["state"]) for r in await job_rows(sessionmaker)] == [("backfill", "queued")]

    async def test_a_refused_exchange_shows_why_and_the_next_load_tries_again(
        self, app_client: Client, standin: StandIn, sessionmaker: Sessionmaker
    ) -> None:
        standin.add_shop(STORY_SHOP)
        standin.refuse_exchange = 1
        page = await first_load(app_client, standin)
        assert page.status_code == 200
        assert "tierline is not connected to your shop" in page.text
        assert "Shopify refused the token exchange (HTTP 400)" in page.text
        assert await stored_token(sessionmaker) == (None, None)
        assert await job_rows(sessionmaker) == []

        page = await first_load(app_client, standin)
        assert page.status_code == 200
        assert "not connected" not in page.text
        assert len(standin.token_grants("urn:ietf:params:oauth:grant-type:token-exchange")) == 2
        assert [r["kind"] for r in await job_rows(sessionmaker)] == ["backfill"]

    async def test_api_requests_retry_a_refused_exchange_at_most_once_a_minute(
        self, app_client: Client, standin: StandIn
    ) -> None:
        standin.add_shop(STORY_SHOP)
        standin.refuse_exchange = 5
        for _ in range(3):
            response = await app_client.get("/api/shop", headers=bearer(standin))
            assert response.status_code == 200  # a never-installed shop sees its (empty) data
            assert response.json()["installed"] is False
        assert len(standin.token_grants("urn:ietf:params:oauth:grant-type:token-exchange")) == 1

    async def test_a_refused_reinstall_is_a_clear_page_never_a_500(
        self, app_client: Client, standin: StandIn, sessionmaker: Sessionmaker, story_settings: Settings
    ) -> None:
        standin.add_shop(STORY_SHOP)
        assert (await first_load(app_client, standin)).status_code == 200
        await helpers.apply(
            sessionmaker, story_settings, [Delivery.of("app/uninstalled", {"id": 1})], shop=STORY_SHOP
        )
        standin.refuse_exchange = 1
        page = await first_load(app_client, standin)
        assert page.status_code == 502
        assert "tierline could not connect to your shop" in page.text
        assert 'id="connect-retry"' in page.text
        api = await app_client.get("/api/shop", headers=bearer(standin))
        assert api.status_code == 401  # API requests retry at most once a minute
        page = await first_load(app_client, standin)
        assert page.status_code == 200  # the next page load tries again, and the exchange works
        assert (await app_client.get("/api/shop", headers=bearer(standin))).status_code == 200

    async def test_grown_scopes_send_the_merchant_through_consent(
        self, database_url: str, standin: StandIn, sessionmaker: Sessionmaker
    ) -> None:
        standin.add_shop(STORY_SHOP)
        settings = make_settings(
            database_url,
            TIERLINE_SHOPIFY_URL=shopify_url(standin),
            SCOPES="read_customers,read_orders,read_fulfillments,read_returns,read_products",
        )
        async with (
            no_pool() as http,
            AsyncTestClient(
                app=create_app(settings, http_client=http), base_url="http://testserver.local"
            ) as client,
        ):
            page = await first_load(client, standin)
            assert page.status_code == 200
            assert "tierline needs your approval" in page.text
            assert "read_products" in page.text
            assert "data-reconsent" in page.text
            assert await stored_token(sessionmaker) == (None, None)  # a lacking grant is not stored

            # "Review permissions": tierline's /auth/reconsent at the top level, then Shopify.
            start = await client.get(
                "/auth/reconsent",
                params={"shop": STORY_SHOP, "id_token": standin.session_token(STORY_SHOP)},
                follow_redirects=False,
            )
            assert start.status_code == 302
            authorize = start.headers["location"]
            assert authorize.startswith(f"{standin.base_url}/{STORY_SHOP}/admin/oauth/authorize?")
            assert "read_products" in authorize
            async with httpx.AsyncClient() as browser:
                approved = await browser.get(authorize)
            assert approved.status_code == 302
            callback = httpx.URL(approved.headers["location"])
            for name, value in start.cookies.items():  # the browser keeps tierline's state cookie
                client.cookies.set(name, value)
            done = await client.get(
                "/auth/callback",
                params=dict(callback.params),
                follow_redirects=False,
            )
            assert done.status_code == 302, done.text
            _, scopes = await stored_token(sessionmaker)
            assert scopes is not None
            assert "read_products" in scopes
            page = await first_load(client, standin)
            assert "needs your approval" not in page.text

    async def test_a_revoked_refresh_token_is_forgotten_and_the_next_load_exchanges_and_resumes(
        self,
        app_client: Client,
        standin: StandIn,
        runner: JobRunner,
        sessionmaker: Sessionmaker,
    ) -> None:
        standin.add_shop(STORY_SHOP, twins.dataset(customers=3, orders=4, seed=4))
        assert (await first_load(app_client, standin)).status_code == 200
        # The access token has expired and Shopify revoked the refresh token.
        async with session_scope(sessionmaker) as session:
            await session.execute(
                sa.update(helpers.SHOPS)
                .where(helpers.SHOPS.c.domain == STORY_SHOP)
                .values(token_expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
        standin.refresh_tokens.clear()
        [outcome] = await runner.drain()
        assert outcome.state == "failed", outcome
        assert "refused to refresh" in (outcome.error or "")
        page = await first_load(app_client, standin)  # the next load exchanges again
        assert page.status_code == 200
        assert len(standin.token_grants("urn:ietf:params:oauth:grant-type:token-exchange")) == 2
        doc = await shop_doc(app_client, standin)
        assert doc["installed"] is True
        assert doc["sync"]["state"] == "queued"
        [outcome] = await runner.drain()
        assert outcome.state == "done", outcome.error


class TestJobs:
    async def test_a_job_cut_off_after_its_sync_completed_is_not_run_again(
        self, app_client: Client, standin: StandIn, runner: JobRunner, sessionmaker: Sessionmaker
    ) -> None:
        """A worker killed between the backfill's last commit and the job's ``done``: the next
        claim of the job (its lease expired) finds the work done and settles it, without two more
        bulk operations."""
        standin.add_shop(STORY_SHOP, twins.dataset(customers=4, orders=6, seed=9))
        assert (await first_load(app_client, standin)).status_code == 200
        [outcome] = await runner.drain()
        assert outcome.state == "done", outcome.error
        assert standin.bulk_operations_started(STORY_SHOP) == ["customers", "orders"]
        # As the kill leaves it: still running, under a lease that has expired, not finished.
        async with session_scope(sessionmaker) as session:
            await session.execute(
                sa.update(JOBS).values(
                    state=JobState.RUNNING,
                    lease_owner="killed-worker",
                    lease_expires_at=datetime.now(UTC) - timedelta(seconds=1),
                    finished_at=None,
                )
            )

        [again] = await runner.drain()

        assert again.state == "done", again.error
        assert standin.bulk_operations_started(STORY_SHOP) == ["customers", "orders"]  # not again
        async with session_scope(sessionmaker) as session:
            row = (await session.execute(sa.select(JOBS.c.state, JOBS.c.customers, JOBS.c.orders))).one()
        assert row.state == JobState.DONE

    async def test_a_job_queued_after_the_last_sync_still_runs(
        self, app_client: Client, standin: StandIn, runner: JobRunner, sessionmaker: Sessionmaker
    ) -> None:
        """The check above looks at syncs that started after the job was queued, not before."""
        standin.add_shop(STORY_SHOP, twins.dataset(customers=4, orders=6, seed=9))
        assert (await first_load(app_client, standin)).status_code == 200
        [outcome] = await runner.drain()
        assert outcome.state == "done", outcome.error
        async with session_scope(sessionmaker) as session:
            shop_id = await session.scalar(
                sa.select(helpers.SHOPS.c.id).where(helpers.SHOPS.c.domain == STORY_SHOP)
            )
            assert shop_id is not None
            assert await jobs.enqueue(
                session, shop_id, jobs.RECONCILE, trigger="schedule", now=datetime.now(UTC)
            )

        [reconciled] = await runner.drain()

        assert reconciled.state == "done", reconciled.error
        assert reconciled.report is not None
        assert reconciled.report.mode == "reconcile"  # it ran, and did not take the backfill for it

    async def test_uninstall_stops_a_running_backfill(
        self, standin: StandIn, sessionmaker: Sessionmaker, story_settings: Settings, app_client: Client
    ) -> None:
        standin.add_shop(STORY_SHOP, twins.dataset(customers=3, orders=3, seed=5))
        standin.hold_bulk.set()
        assert (await first_load(app_client, standin)).status_code == 200
        settings = story_settings.model_copy(update={"job_lease_seconds": 1.0})
        async with httpx.AsyncClient(timeout=10) as http:
            runner = JobRunner(sessionmaker, http, settings)
            [job] = [await self._claim(runner)]
            assert job is not None
            task = asyncio.create_task(runner.run_job(job))
            await asyncio.sleep(0.5)
            await helpers.apply(
                sessionmaker, story_settings, [Delivery.of("app/uninstalled", {"id": 1})], shop=STORY_SHOP
            )
            outcome = await asyncio.wait_for(task, timeout=10)
        assert outcome.state == "lost"
        [row] = await job_rows(sessionmaker)
        assert (row["state"], row["last_error"]) == (JobState.CANCELLED, "stopped: the app was uninstalled")

    @staticmethod
    async def _claim(runner: JobRunner) -> jobs.ClaimedJob | None:
        return await runner._claim()

    async def test_reconciliation_is_scheduled_once_per_period_across_workers(
        self, sessionmaker: Sessionmaker, story_settings: Settings, standin: StandIn, app_client: Client
    ) -> None:
        standin.add_shop(STORY_SHOP, twins.dataset(customers=2, orders=2, seed=6))
        assert (await first_load(app_client, standin)).status_code == 200
        async with httpx.AsyncClient(timeout=10) as http:
            workers = [JobRunner(sessionmaker, http, story_settings) for _ in range(3)]
            [first] = await workers[0].drain()
            assert first.state == "done"
            assert sum(await asyncio.gather(*(w.schedule() for w in workers))) == 0  # synced just now
            async with session_scope(sessionmaker) as session:
                await session.execute(
                    sa.update(helpers.SHOPS).values(last_synced_at=datetime.now(UTC) - timedelta(hours=7))
                )
                await session.execute(
                    sa.update(JOBS).values(created_at=datetime.now(UTC) - timedelta(hours=7))
                )
            assert sum(await asyncio.gather(*(w.schedule() for w in workers))) == 1
            assert sum(await asyncio.gather(*(w.schedule() for w in workers))) == 0
            outcomes = await asyncio.gather(*(w.drain() for w in workers))
        assert [o.state for found in outcomes for o in found] == ["done"]
        rows = await job_rows(sessionmaker)
        assert [(r["kind"], r["trigger"], r["state"]) for r in rows] == [
            ("backfill", "install", JobState.DONE),
            ("reconcile", "schedule", JobState.DONE),
        ]
        doc = await shop_doc(app_client, standin)
        assert doc["sync"]["lastReconciledAt"] is not None

    async def test_check_finds_no_difference_after_a_backfill_with_live_webhooks_interleaved(
        self, standin: StandIn, sessionmaker: Sessionmaker, story_settings: Settings, app_client: Client
    ) -> None:
        data = twins.dataset(customers=20, orders=60, seed=8)
        standin.add_shop(STORY_SHOP, data)
        assert (await first_load(app_client, standin)).status_code == 200
        later = twins.dataset(customers=20, orders=90, seed=8)  # same customers, 30 more orders
        live = [Delivery.of("orders/create", t.rest) for t in later.orders[60:]]
        live += [Delivery.of("orders/updated", t.rest) for t in data.orders[::7]]
        async with httpx.AsyncClient(timeout=10) as http:
            runner = JobRunner(sessionmaker, http, story_settings)
            backfill = asyncio.create_task(runner.drain())
            for chunk in range(0, len(live), 5):
                await helpers.apply(sessionmaker, story_settings, live[chunk : chunk + 5], shop=STORY_SHOP)
                await asyncio.sleep(0)
            [outcome] = await backfill
        assert outcome.state == "done", outcome.error
        assert await cli._check(story_settings, STORY_SHOP) == 0
        assert len(await helpers.orders(sessionmaker, shop=STORY_SHOP)) == 90


class TestShopifyFailures:
    async def run_backfill(
        self, standin: StandIn, app_client: Client, runner: JobRunner, data: twins.Dataset
    ) -> list[Any]:
        standin.add_shop(STORY_SHOP, data)
        assert (await first_load(app_client, standin)).status_code == 200
        return await runner.drain()

    async def test_access_denied_fails_the_job_with_a_clear_reason(
        self, standin: StandIn, app_client: Client, runner: JobRunner
    ) -> None:
        standin.bulk_failures = [("ACCESS_DENIED", False)]
        [outcome] = await self.run_backfill(
            standin, app_client, runner, twins.dataset(customers=2, orders=2, seed=1)
        )
        assert outcome.state == "failed"
        assert "ACCESS_DENIED" in (outcome.error or "")
        assert "scope" in (outcome.error or "")
        doc = await shop_doc(app_client, standin)
        assert doc["sync"]["state"] == "failed"
        assert "ACCESS_DENIED" in doc["sync"]["lastError"]
        retried = await app_client.post("/api/shop/sync", headers=bearer(standin))
        assert retried.status_code == 202
        assert retried.json()["sync"]["state"] == "queued"

    async def test_timeouts_with_partial_results_fall_back_to_pages_and_load_everything(
        self, standin: StandIn, app_client: Client, runner: JobRunner, sessionmaker: Sessionmaker
    ) -> None:
        standin.bulk_failures = [("TIMEOUT", True), ("TIMEOUT", True)]
        data = twins.dataset(customers=12, orders=25, seed=2)
        [outcome] = await self.run_backfill(standin, app_client, runner, data)
        assert outcome.state == "done", outcome.error
        assert len(await helpers.orders(sessionmaker, shop=STORY_SHOP)) == 25
        assert len(await helpers.customers(sessionmaker, shop=STORY_SHOP)) == 12
        assert ("story-shop.myshopify.com", "TierlineCustomers") in standin.graphql_requests

    async def test_throttling_and_429_are_waited_out(
        self, standin: StandIn, app_client: Client, runner: JobRunner, sessionmaker: Sessionmaker
    ) -> None:
        standin.graphql_failures = [429, 503]
        standin.bucket_size, standin.restore_rate = 40.0, 200.0
        [outcome] = await self.run_backfill(
            standin, app_client, runner, twins.dataset(customers=3, orders=5, seed=3)
        )
        assert outcome.state == "done", outcome.error
        assert len(await helpers.orders(sessionmaker, shop=STORY_SHOP)) == 5

    async def test_a_bulk_operation_running_at_shopify_is_picked_up_not_started_twice(
        self, standin: StandIn, app_client: Client, sessionmaker: Sessionmaker, story_settings: Settings
    ) -> None:
        standin.add_shop(STORY_SHOP, twins.dataset(customers=4, orders=4, seed=7))
        assert (await first_load(app_client, standin)).status_code == 200
        standin.hold_bulk.set()
        async with httpx.AsyncClient(timeout=10) as http:
            first = JobRunner(sessionmaker, http, story_settings)
            job = await first._claim()
            assert job is not None
            task = asyncio.create_task(first.run_job(job))
            for _ in range(400):  # the stand-in runs in another thread: poll it
                if standin.operations:
                    break
                await asyncio.sleep(0.05)
            task.cancel()  # the worker dies while Shopify runs the operation
            with pytest.raises(asyncio.CancelledError):
                await task
            # Its state may not even name the operation (a crash right after Shopify started it).
            async with session_scope(sessionmaker) as session:
                shop_id = await helpers.shop_id(sessionmaker, STORY_SHOP)
                await sync_state.save(
                    session,
                    shop_id,
                    {"mode": "bulk", "phase": "customers", "startedAt": "2020-01-01T00:00:00Z", "applied": 0},
                )
                await session.execute(
                    sa.update(JOBS).values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
                )
            standin.hold_bulk.clear()
            [outcome] = await JobRunner(sessionmaker, http, story_settings).drain()
        assert outcome.state == "done", outcome.error
        assert standin.bulk_operations_started(STORY_SHOP) == ["customers", "orders"]
