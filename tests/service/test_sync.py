"""``tierline sync`` (docs/shopify-app.md): bulk backfill, resuming, token refresh, reconciliation.

Shopify is faked at the HTTP boundary (``tests.support.shopify_fake``); waits go through a fake
sleep, so nothing here touches the network or sleeps. The backfilled shop is compared with a
shop that received the same records as webhooks: the backfill must reach exactly that state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel
from typer.testing import CliRunner

from service import cli
from service.config import Settings
from service.crypto import TokenCipher
from service.db import session_scope
from service.domain import installs, sync_state
from service.domain.shops import get_or_create_shop_id
from service.sync import (
    SQLITE_MAX_BATCH_SIZE,
    BulkResult,
    NotInstalledError,
    SyncError,
    SyncReport,
    sync_shop,
)
from shopify_client import AccessToken, BulkOperationError, ShopifyTransportError, parse_bulk_jsonl
from tests.support import deliveries as helpers
from tests.support import twins
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.marks import first_in_fast_runs
from tests.support.payloads import ENCRYPTION_KEY, OTHER_SHOP, SHOP, customer_payload
from tests.support.shopify_fake import FakeShopify, FakeSleep

NOW = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
THIRD_SHOP = "third-test.myshopify.com"
SHOP_TABLES = (
    "customers",
    "orders",
    "order_lines",
    "fulfillments",
    "customer_stats",
    "tier_changes",
    "tombstones",
)
#: Columns that identify a row's shop or its insertion, not its content.
VOLATILE = {"shop_id", "at", "deleted_at"}


class Crash(Exception):
    """Stands for the process dying between two batches."""


def clock() -> datetime:
    return NOW


async def install(
    sessionmaker: Sessionmaker,
    shop: str,
    *,
    access_token: str = "shpat_initial",  # noqa: S107 - a fake token
    expires_at: datetime | None = None,
    refresh_token: str | None = None,
    last_synced_at: datetime | None = None,
) -> int:
    token = AccessToken(
        access_token=access_token,
        scope="read_customers,read_orders,read_fulfillments,read_returns,write_customers,write_orders",
        expires_at=expires_at,
        refresh_token=refresh_token,
        refresh_token_expires_at=NOW + timedelta(days=80) if refresh_token else None,
    )
    async with session_scope(sessionmaker) as session:
        shop_id = await get_or_create_shop_id(session, shop)
        await installs.store_token(session, shop_id, token, TokenCipher(ENCRYPTION_KEY))
        if last_synced_at is not None:
            await sync_state.finish(session, shop_id, synced_at=last_synced_at, summary={})
    return shop_id


async def run_sync(
    sessionmaker: Sessionmaker,
    settings: Settings,
    fake: FakeShopify,
    *,
    shop: str | None = None,
    **options: Any,
) -> SyncReport:
    options.setdefault("sleep", FakeSleep())
    options.setdefault("now", clock)
    options.setdefault("poll_interval", 1.0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        return await sync_shop(sessionmaker, http, settings, shop or fake.shop, **options)


async def shop_state(sessionmaker: Sessionmaker, shop: str) -> dict[str, list[dict[str, Any]]]:
    """Every shop-keyed table's rows for ``shop`` without shop ids and insertion metadata."""
    state: dict[str, list[dict[str, Any]]] = {}
    async with sessionmaker() as session:
        shop_id = await session.scalar(sa.select(helpers.SHOPS.c.id).where(helpers.SHOPS.c.domain == shop))
        for name in SHOP_TABLES:
            table = SQLModel.metadata.tables[name]
            rows = (await session.execute(sa.select(table).where(table.c.shop_id == shop_id))).all()
            skip = VOLATILE | ({"id"} if name == "tier_changes" else set())
            cleaned = [{k: v for k, v in row._mapping.items() if k not in skip} for row in rows]
            state[name] = sorted(cleaned, key=lambda row: json.dumps(row, sort_keys=True, default=str))
    return state


async def load_sync_state(sessionmaker: Sessionmaker, shop: str) -> tuple[dict[str, Any], datetime | None]:
    async with sessionmaker() as session:
        row = (
            await session.execute(
                sa.select(helpers.SHOPS.c.sync_state, helpers.SHOPS.c.last_synced_at).where(
                    helpers.SHOPS.c.domain == shop
                )
            )
        ).one()
    return dict(row.sync_state), row.last_synced_at


def webhook_deliveries(data: twins.Dataset) -> list[Delivery]:
    """The same records as Shopify would have pushed them, in the same order."""
    return [Delivery.of("customers/create", t.rest) for t in data.customers] + [
        Delivery.of("orders/create", t.rest) for t in data.orders
    ]


def fake_for(data: twins.Dataset, shop: str) -> FakeShopify:
    return FakeShopify(shop, files={"customers": data.customers_jsonl, "orders": data.orders_jsonl})


@pytest.mark.anyio
class TestBackfill:
    @pytest.mark.parametrize("size", first_in_fast_runs((40, 110), (150, 420)))
    async def test_reaches_the_state_the_same_webhooks_reach(
        self, sessionmaker: Sessionmaker, settings: Settings, size: tuple[int, int]
    ) -> None:
        customers, orders = size
        data = twins.dataset(customers=customers, orders=orders, seed=3, max_lines=6)
        assert len(data.orders) > SQLITE_MAX_BATCH_SIZE  # several batches on either database
        await helpers.apply(sessionmaker, settings, webhook_deliveries(data), shop=SHOP)
        await install(sessionmaker, OTHER_SHOP)
        fake = fake_for(data, OTHER_SHOP)
        sleep = FakeSleep()

        report = await run_sync(sessionmaker, settings, fake, sleep=sleep)

        assert (report.customers, report.orders, report.skipped, report.resumed_after) == (*size, 0, 0)
        webhook_state = await shop_state(sessionmaker, SHOP)
        backfilled = await shop_state(sessionmaker, OTHER_SHOP)
        assert len(backfilled["orders"]) == orders
        assert len(backfilled["order_lines"]) == sum(len(t.children) for t in data.orders)
        assert any(row["tracking_status"] == "delivered" for row in backfilled["orders"])
        assert any(
            row["tracking_status"] and row["tracking_status"].startswith("rto")
            for row in backfilled["orders"]
        )
        for table in SHOP_TABLES:
            assert backfilled[table] == webhook_state[table], table
        # One bulk operation per resource, polled through the fake sleep, with the stored token.
        assert fake.bulk_phases() == ["customers", "orders"]
        assert sleep.delays
        assert all(d == 1.0 for d in sleep.delays)
        assert fake.tokens_used() == {"shpat_initial"}
        state, last_synced_at = await load_sync_state(sessionmaker, OTHER_SHOP)
        assert last_synced_at == NOW
        assert "phase" not in state
        assert state["lastRun"]["orders"] == orders

    async def test_resumes_after_a_crash_from_the_last_committed_record(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        data = twins.dataset(customers=20, orders=60, seed=5)
        await install(sessionmaker, OTHER_SHOP)
        fake = fake_for(data, OTHER_SHOP)

        def crash_after_two_order_batches(phase: str, done: int, total: int) -> None:
            if phase == "orders" and done >= 40:
                raise Crash

        with pytest.raises(Crash):
            await run_sync(
                sessionmaker, settings, fake, batch_size=20, progress=crash_after_two_order_batches
            )

        state, last_synced_at = await load_sync_state(sessionmaker, OTHER_SHOP)
        assert (state["phase"], state["applied"], last_synced_at) == ("orders", 40, None)
        assert state["bulkOperationId"] in fake.operations
        assert state["url"].startswith("https://storage.example.com/orders.jsonl")
        assert len((await shop_state(sessionmaker, OTHER_SHOP))["orders"]) == 40

        report = await run_sync(sessionmaker, settings, fake, batch_size=20)

        assert (report.customers, report.orders, report.resumed_after) == (0, 20, 40)
        assert fake.bulk_phases() == ["customers", "orders"]  # no new bulk operation
        await install(sessionmaker, THIRD_SHOP)
        await run_sync(sessionmaker, settings, fake_for(data, THIRD_SHOP), batch_size=20)
        resumed = await shop_state(sessionmaker, OTHER_SHOP)
        assert resumed == await shop_state(sessionmaker, THIRD_SHOP)
        assert len(resumed["orders"]) == 60
        assert len(resumed["customers"]) == 20
        assert (await load_sync_state(sessionmaker, OTHER_SHOP))[1] == NOW

    async def test_a_download_that_breaks_off_is_fetched_again_from_the_same_operation(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        data = twins.dataset(customers=15, orders=50, seed=8)
        await install(sessionmaker, OTHER_SHOP)
        fake = fake_for(data, OTHER_SHOP)
        fake.break_download.add("orders")

        with pytest.raises(ShopifyTransportError):
            await run_sync(sessionmaker, settings, fake)
        state, _ = await load_sync_state(sessionmaker, OTHER_SHOP)
        assert (state["phase"], state["applied"]) == ("orders", 0)

        report = await run_sync(sessionmaker, settings, fake)

        assert (report.customers, report.orders) == (0, 50)
        assert fake.bulk_phases() == ["customers", "orders"]
        assert fake.downloads == ["customers", "orders", "orders"]
        await helpers.apply(sessionmaker, settings, webhook_deliveries(data), shop=SHOP)
        assert await shop_state(sessionmaker, OTHER_SHOP) == await shop_state(sessionmaker, SHOP)

    async def test_an_operation_that_expired_meanwhile_is_started_again(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        data = twins.dataset(customers=5, orders=20, seed=9)
        await install(sessionmaker, OTHER_SHOP)
        fake = fake_for(data, OTHER_SHOP)
        fake.break_download.add("orders")
        with pytest.raises(ShopifyTransportError):
            await run_sync(sessionmaker, settings, fake)
        stale, _ = await load_sync_state(sessionmaker, OTHER_SHOP)
        fake.operation_status[stale["bulkOperationId"]] = "EXPIRED"

        report = await run_sync(sessionmaker, settings, fake)

        assert report.orders == 20
        assert fake.bulk_phases() == ["customers", "orders", "orders"]

    async def test_a_failed_operation_is_started_again_within_the_run(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        data = twins.dataset(customers=3, orders=3, seed=2)
        await install(sessionmaker, OTHER_SHOP)
        fake = fake_for(data, OTHER_SHOP)
        fake.operation_status["gid://shopify/BulkOperation/1"] = "FAILED"
        messages: list[str] = []

        report = await run_sync(sessionmaker, settings, fake, message=messages.append)

        assert (report.customers, report.orders) == (3, 3)
        assert fake.bulk_phases() == ["customers", "customers", "orders"]
        assert any("ended FAILED (no error code); starting a new one" in m for m in messages)

    async def test_operations_that_keep_failing_are_a_clear_error_and_the_next_run_starts_anew(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        data = twins.dataset(customers=3, orders=3, seed=2)
        await install(sessionmaker, OTHER_SHOP)
        fake = fake_for(data, OTHER_SHOP)
        for n in (1, 2, 3):
            fake.operation_status[f"gid://shopify/BulkOperation/{n}"] = "FAILED"

        with pytest.raises(SyncError, match="customers bulk operation ended FAILED"):
            await run_sync(sessionmaker, settings, fake)
        state, _ = await load_sync_state(sessionmaker, OTHER_SHOP)
        assert (state["phase"], state["bulkOperationId"]) == ("customers", None)

        report = await run_sync(sessionmaker, settings, fake)
        assert (report.customers, report.orders) == (3, 3)

    async def test_records_it_cannot_map_are_counted_and_skipped(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        await install(sessionmaker, OTHER_SHOP)
        customers = (
            b'{"id": "gid://shopify/Customer/abc"}\n{"id": "gid://shopify/Customer/5", "email": "a@b.c"}\n'
        )
        fake = FakeShopify(OTHER_SHOP, files={"customers": customers, "orders": b""})

        report = await run_sync(sessionmaker, settings, fake)

        assert (report.customers, report.orders, report.skipped) == (1, 0, 1)
        assert list(await helpers.customers(sessionmaker, shop=OTHER_SHOP)) == [5]

    @pytest.mark.parametrize("refused", [False, True])
    async def test_the_shops_currency_and_time_zone_are_remembered_if_shopify_gives_them(
        self, sessionmaker: Sessionmaker, settings: Settings, refused: bool
    ) -> None:
        await install(sessionmaker, OTHER_SHOP)
        fake = FakeShopify(OTHER_SHOP, files={"customers": b"", "orders": b""})
        fake.details = None if refused else {"currencyCode": "USD", "ianaTimezone": "America/Chicago"}
        messages: list[str] = []

        await run_sync(sessionmaker, settings, fake, message=messages.append)

        async with sessionmaker() as session:
            row = (
                await session.execute(
                    sa.select(helpers.SHOPS.c.currency, helpers.SHOPS.c.iana_timezone).where(
                        helpers.SHOPS.c.domain == OTHER_SHOP
                    )
                )
            ).one()
        if refused:
            assert tuple(row) == (None, None)
            assert any("currency and time zone" in m for m in messages)
        else:
            assert tuple(row) == ("USD", "America/Chicago")

    async def test_backfill_does_not_undo_newer_webhooks_or_deletes(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        data = twins.dataset(customers=2, orders=2, seed=4)
        newer, deleted = data.orders
        customer = data.customers[0]
        later = datetime.fromisoformat(newer.rest["updated_at"]) + timedelta(days=1)
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of(
                    "orders/updated", {**newer.rest, "updated_at": later.isoformat(), "tags": "kept"}
                ),
                Delivery.of("orders/delete", {"id": deleted.rest["id"]}),
                Delivery.of(
                    "customers/update",
                    customer_payload(customer.rest["id"], updated=NOW, email="newer@example.com"),
                ),
            ],
            shop=OTHER_SHOP,
        )
        await install(sessionmaker, OTHER_SHOP)

        await run_sync(sessionmaker, settings, fake_for(data, OTHER_SHOP))

        orders = await helpers.orders(sessionmaker, shop=OTHER_SHOP)
        assert orders[newer.rest["id"]]["tags"] == "kept"
        assert deleted.rest["id"] not in orders
        customers = await helpers.customers(sessionmaker, shop=OTHER_SHOP)
        assert customers[customer.rest["id"]]["email"] == "newer@example.com"


@pytest.mark.anyio
class TestToken:
    async def test_an_expiring_token_is_refreshed_and_stored_before_the_bulk_query(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        data = twins.dataset(customers=3, orders=4, seed=1)
        shop_id = await install(
            sessionmaker,
            OTHER_SHOP,
            access_token="shpat_expired",
            expires_at=NOW - timedelta(minutes=1),
            refresh_token="shprt_old",
        )
        async with sessionmaker() as session:
            installed_at = await session.scalar(
                sa.select(helpers.SHOPS.c.installed_at).where(helpers.SHOPS.c.id == shop_id)
            )
        fake = fake_for(data, OTHER_SHOP)

        await run_sync(sessionmaker, settings, fake)

        assert fake.requests[0].url.path == "/admin/oauth/access_token"
        assert fake.token_forms == [
            {
                "client_id": settings.shopify_api_key,
                "client_secret": settings.shopify_api_secret,
                "grant_type": "refresh_token",
                "refresh_token": "shprt_old",
            }
        ]
        assert fake.tokens_used() == {"shpat_new_1"}
        async with sessionmaker() as session:
            stored = await installs.load_token(session, shop_id, TokenCipher(ENCRYPTION_KEY))
            row = (await session.execute(sa.select(helpers.SHOPS).where(helpers.SHOPS.c.id == shop_id))).one()
        assert stored is not None
        assert (stored.access_token, stored.refresh_token) == ("shpat_new_1", "shprt_new_1")
        assert stored.expires_at == NOW + timedelta(hours=1)
        assert "shpat_new_1" not in row.access_token_enc
        assert row.installed_at == installed_at

    async def test_a_token_far_from_expiry_is_used_as_it_is(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        await install(
            sessionmaker, OTHER_SHOP, expires_at=NOW + timedelta(minutes=30), refresh_token="shprt_old"
        )
        fake = fake_for(twins.dataset(customers=1, orders=1, seed=1), OTHER_SHOP)
        await run_sync(sessionmaker, settings, fake)
        assert fake.token_forms == []
        assert fake.tokens_used() == {"shpat_initial"}

    async def test_an_expired_token_without_refresh_token_needs_a_new_install(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        await install(sessionmaker, OTHER_SHOP, expires_at=NOW - timedelta(minutes=1))
        fake = FakeShopify(OTHER_SHOP)
        with pytest.raises(NotInstalledError, match="expired and cannot be refreshed"):
            await run_sync(sessionmaker, settings, fake)
        assert fake.requests == []

    async def test_a_refused_refresh_is_a_clear_error(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        await install(sessionmaker, OTHER_SHOP, expires_at=NOW, refresh_token="shprt_revoked")
        fake = FakeShopify(OTHER_SHOP)
        fake.token_error = (400, '{"error":"invalid_grant"}')
        with pytest.raises(SyncError, match="refused to refresh"):
            await run_sync(sessionmaker, settings, fake)
        assert fake.graphql == []

    @pytest.mark.parametrize("case", ["never seen", "seen, never installed", "uninstalled"])
    async def test_a_shop_without_a_token_is_a_clear_error(
        self, sessionmaker: Sessionmaker, settings: Settings, case: str
    ) -> None:
        if case != "never seen":
            shop_id = await helpers.shop_id(sessionmaker, OTHER_SHOP)
        if case == "uninstalled":
            await install(sessionmaker, OTHER_SHOP)
            async with session_scope(sessionmaker) as session:
                await installs.mark_uninstalled(session, shop_id)
        fake = FakeShopify(OTHER_SHOP)
        with pytest.raises(NotInstalledError, match=f"{OTHER_SHOP} has no stored access token"):
            await run_sync(sessionmaker, settings, fake)
        with pytest.raises(NotInstalledError):
            await run_sync(sessionmaker, settings, fake, reconcile=True)
        assert fake.requests == []


@pytest.mark.anyio
class TestReconcile:
    async def test_fetches_what_changed_since_the_last_sync_and_applies_it_with_the_guards(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        last_sync = datetime(2026, 3, 1, 6, 30, 15, tzinfo=UTC)
        await install(sessionmaker, OTHER_SHOP, last_synced_at=last_sync)
        data = twins.dataset(customers=3, orders=4, seed=12)
        kept = data.orders[1]
        kept_later = datetime.fromisoformat(kept.rest["updated_at"]) + timedelta(days=2)
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of(
                    "orders/updated", {**kept.rest, "updated_at": kept_later.isoformat(), "tags": "newer"}
                )
            ],
            shop=OTHER_SHOP,
        )
        # The first order has more line items than its first page: the rest come from order(id).
        long_order = data.orders[0]
        first_line, *other_lines = [
            {k: v for k, v in c.items() if k != "__parentId"} for c in long_order.children
        ]
        extra = [
            {**first_line, "id": f"gid://shopify/LineItem/{long_order.rest['id'] * 10 + n}"}
            for n in (5, 6, 7)
        ]
        order_nodes = [
            {
                **t.gql,
                "lineItems": {
                    "nodes": [{k: v for k, v in c.items() if k != "__parentId"} for c in t.children],
                    "pageInfo": {"hasNextPage": False, "endCursor": None},
                },
            }
            for t in data.orders
        ]
        order_nodes[0]["lineItems"] = {
            "nodes": [first_line],
            "pageInfo": {"hasNextPage": True, "endCursor": "embedded-end"},
        }
        fake = FakeShopify(
            OTHER_SHOP,
            pages={"customers": [t.gql for t in data.customers], "orders": order_nodes},
            line_pages={long_order.gql["id"]: [*other_lines, *extra]},
        )

        report = await run_sync(sessionmaker, settings, fake, reconcile=True)

        assert (report.mode, report.customers, report.orders) == ("reconcile", 3, 4)
        searches = {
            body["variables"]["query"] for body in fake.graphql if "query" in (body.get("variables") or {})
        }
        assert searches == {"updated_at:>'2026-03-01T06:30:15Z'"}
        assert len(fake.queries_named("TierlineCustomers")) == 2  # 3 customers, pages of 2
        assert len(fake.queries_named("TierlineOrders")) == 2
        assert fake.bulk_phases() == []
        assert set(await helpers.customers(sessionmaker, shop=OTHER_SHOP)) == {
            t.rest["id"] for t in data.customers
        }
        orders = await helpers.orders(sessionmaker, shop=OTHER_SHOP)
        assert set(orders) == {t.rest["id"] for t in data.orders}
        assert orders[kept.rest["id"]]["tags"] == "newer"  # the stored order is newer than the page
        lines = await helpers.order_lines(sessionmaker, shop=OTHER_SHOP)
        assert len(lines[long_order.rest["id"]]) == len(long_order.children) + 3
        _, last_synced_at = await load_sync_state(sessionmaker, OTHER_SHOP)
        assert last_synced_at == NOW

    async def test_needs_a_completed_sync_first(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        await install(sessionmaker, OTHER_SHOP)
        with pytest.raises(SyncError, match="never been synced"):
            await run_sync(sessionmaker, settings, FakeShopify(OTHER_SHOP), reconcile=True)

    async def test_refuses_while_a_backfill_is_unfinished(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        shop_id = await install(sessionmaker, OTHER_SHOP, last_synced_at=NOW - timedelta(days=1))
        async with session_scope(sessionmaker) as session:
            await sync_state.save(session, shop_id, {"mode": "bulk", "phase": "orders", "applied": 500})
        with pytest.raises(SyncError, match="unfinished"):
            await run_sync(sessionmaker, settings, FakeShopify(OTHER_SHOP), reconcile=True)


@pytest.mark.anyio
class TestCommand:
    async def test_reports_progress_on_stderr_and_a_summary(
        self, sessionmaker: Sessionmaker, settings: Settings, capsys: pytest.CaptureFixture[str]
    ) -> None:
        data = twins.dataset(customers=12, orders=30, seed=6)
        await install(sessionmaker, OTHER_SHOP)
        fake = fake_for(data, OTHER_SHOP)
        fake.polls_until_done = 1
        report = await cli._sync(settings, OTHER_SHOP, reconcile=False, transport=httpx.MockTransport(fake))
        assert (report.customers, report.orders) == (12, 30)
        err = capsys.readouterr().err
        assert "customers: 12 records applied" in err
        assert "orders: 30 records applied" in err
        assert "bulk operation gid://shopify/BulkOperation/" in err


class TestCommandLine:
    """The command itself (synchronous: it runs its own event loop)."""

    @pytest.fixture(autouse=True)
    def _isolate(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
        """No ``.env`` from the checkout; the log handlers the CLI installs are undone."""
        monkeypatch.chdir(tmp_path)
        root = logging.getLogger()
        handlers = list(root.handlers)
        yield
        root.handlers[:] = handlers

    def test_a_shop_that_is_not_installed_exits_with_the_reason(self, database_url: str) -> None:
        result = CliRunner().invoke(
            cli.app,
            ["sync", "--shop", OTHER_SHOP],
            env={
                "DATABASE_URL": database_url,
                "TIERLINE_ENV": "development",
                "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
            },
        )
        assert result.exit_code == 1
        assert f"{OTHER_SHOP} has no stored access token" in result.stderr
        assert "not installed" in result.stderr

    def test_a_bad_shop_domain_is_refused(self) -> None:
        result = CliRunner().invoke(cli.app, ["sync", "--shop", "example.com"])
        assert result.exit_code == 2
        assert "not a shop domain" in result.stderr


class TestBulkResult:
    """The spooled, indexed JSONL: the same nesting as ``parse_bulk_jsonl``, a slice at a time."""

    def spool(self, lines: list[str]) -> BulkResult:
        result = BulkResult()
        for line in lines:
            result.add(line)
        result.finish()
        return result

    def test_slices_nest_like_parse_bulk_jsonl(self) -> None:
        lines = twins.dataset(customers=2, orders=60, seed=7).orders_jsonl.decode().splitlines()
        expected = parse_bulk_jsonl(lines)
        with self.spool(lines) as result:
            assert len(result) == 60
            assert result.records(0, 25) + result.records(25, 50) + result.records(50, 99) == expected
            assert result.records(60, 70) == []

    def test_grandchildren_and_children_before_their_parent(self) -> None:
        lines = [
            '{"id": "gid://shopify/LineItem/2", "__parentId": "gid://shopify/Order/1"}',
            '{"id": "gid://shopify/Order/1"}',
            '{"id": "gid://shopify/Discount/3", "__parentId": "gid://shopify/LineItem/2"}',
            '{"id": "gid://shopify/Order/4"}',
        ]
        with self.spool(lines) as result:
            assert result.records(0, 2) == parse_bulk_jsonl(lines)
            assert result.records(0, 1)[0]["LineItem"][0]["Discount"] == [{"id": "gid://shopify/Discount/3"}]

    def test_a_child_without_parent_or_a_bad_line_is_an_error(self) -> None:
        with pytest.raises(BulkOperationError, match="not in the result"):
            self.spool(['{"id": "gid://shopify/LineItem/2", "__parentId": "gid://shopify/Order/9"}'])
        with pytest.raises(BulkOperationError, match="line 2 is not JSON"):
            self.spool(['{"id": "gid://shopify/Order/1"}', "{oops"])
        with pytest.raises(BulkOperationError, match="not a JSON object"):
            self.spool(["[1, 2]"])
