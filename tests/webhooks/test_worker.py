"""InboxWorker (docs/architecture.md): settle, fail bad payloads, retry with backoff, dead, replay,
prune, run/stop."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from service.app import create_app
from service.config import Settings
from service.db import session_scope
from service.domain import customers, inbox
from service.domain.records import CustomerSnapshot
from service.types import utc_now
from tests.conftest import make_settings
from tests.support import deliveries as helpers
from tests.support.deliveries import SHOPS, Delivery, Sessionmaker
from tests.support.payloads import customer_payload, line_item, next_id, order_payload, signed_webhook
from webhooks import worker as worker_module
from webhooks.handlers import build_router
from webhooks.payloads import CustomerPayload
from webhooks.router import DeliveryContext, TopicRouter
from webhooks.worker import PermanentDeliveryError

pytestmark = pytest.mark.anyio

FLAKY_TOPIC = "tests/flaky"
CLASH_TOPIC = "tests/clash"


class FlakyHandler:
    """Writes the customer of the payload, then raises ``error`` on its first ``failures`` calls."""

    def __init__(self, failures: int, error: type[Exception] = RuntimeError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self, ctx: DeliveryContext, payload: CustomerPayload) -> None:
        self.calls += 1
        await customers.upsert_customer(
            ctx.session, ctx.shop_id, CustomerSnapshot(id=payload.id, email=payload.email)
        )
        if self.calls <= self.failures:
            raise self.error(f"flaky handler failure {self.calls}")


async def clash_handler(ctx: DeliveryContext, payload: CustomerPayload) -> None:
    """Writes the customer, then makes the database itself refuse a statement (a duplicate key)."""
    await customers.upsert_customer(ctx.session, ctx.shop_id, CustomerSnapshot(id=payload.id))
    domain = await ctx.session.scalar(sa.select(SHOPS.c.domain).where(SHOPS.c.id == ctx.shop_id))
    await ctx.session.execute(sa.insert(SHOPS).values(domain=domain, settings={}, created_at=utc_now()))


def router_with(flaky: FlakyHandler | None = None) -> TopicRouter:
    """The production router plus two test topics whose handlers fail after writing."""
    router = build_router()
    extra = TopicRouter()
    extra.register(FLAKY_TOPIC, model=CustomerPayload)(flaky or FlakyHandler(failures=1_000))
    extra.register(CLASH_TOPIC, model=CustomerPayload)(clash_handler)
    router.include(extra)
    return router


def fallback_count() -> float:
    return REGISTRY.get_sample_value("tierline_worker_batch_fallbacks_total") or 0.0


def with_settings(settings: Settings, **overrides: Any) -> Settings:
    return make_settings(settings.database_url, **overrides)


class TestProcessed:
    async def test_pending_delivery_becomes_processed_with_its_effect(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id = next_id()
        row_id = await helpers.enqueue(sessionmaker, "customers/create", customer_payload(customer_id))
        assert (await helpers.delivery(sessionmaker, row_id))["status"] == "pending"
        before = utc_now()

        assert await helpers.drain(sessionmaker, settings) == 1

        row = await helpers.delivery(sessionmaker, row_id)
        assert (row["status"], row["attempts"], row["last_error"]) == ("processed", 0, None)
        assert row["processed_at"] is not None
        assert before - timedelta(seconds=1) <= row["processed_at"] <= utc_now()
        assert list(await helpers.customers(sessionmaker)) == [customer_id]

    async def test_drain_on_an_empty_inbox_does_nothing(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        assert await helpers.drain(sessionmaker, settings) == 0


class TestIgnored:
    async def test_unhandled_topic_is_ignored_and_settled(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        row_id = await helpers.enqueue(sessionmaker, "products/create", {"id": next_id(), "title": "Kurta"})
        await helpers.drain(sessionmaker, settings)
        row = await helpers.delivery(sessionmaker, row_id)
        assert row["status"] == "ignored"
        assert row["processed_at"] is not None
        assert row["attempts"] == 0


class TestBadPayloads:
    async def test_body_that_is_not_json_is_failed_with_the_reason(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        row_id = await helpers.enqueue(sessionmaker, "orders/create", body=b"not json")
        await helpers.drain(sessionmaker, settings)
        row = await helpers.delivery(sessionmaker, row_id)
        assert row["status"] == "failed"
        assert "invalid json" in row["last_error"].lower()
        assert row["processed_at"] is not None
        assert row["body"] == b"not json"  # kept verbatim for a replay after a fix

    @pytest.mark.parametrize(
        "body",
        [b'{"id": 1, "email": "\xff\xfe"}', b"\xff\xfe{\x00}", b'\x80{"id": 5}'],
        ids=["invalid-utf8-in-string", "utf16-bom", "leading-continuation-byte"],
    )
    async def test_body_that_is_not_utf8_is_failed(
        self, sessionmaker: Sessionmaker, settings: Settings, body: bytes
    ) -> None:
        row_id = await helpers.enqueue(sessionmaker, "customers/update", body=body)
        await helpers.drain(sessionmaker, settings)
        row = await helpers.delivery(sessionmaker, row_id)
        assert row["status"] == "failed"
        assert row["last_error"]
        assert await helpers.customers(sessionmaker) == {}

    @pytest.mark.parametrize(
        ("topic", "payload", "field"),
        [
            ("orders/create", order_payload(11, total="abc"), "total_price"),
            ("orders/create", order_payload(12, total="-1e15", lines=[]), "total_price"),
            ("orders/create", order_payload(2**64, total="5.00", lines=[]), "id"),
            ("orders/create", order_payload(13, lines=[line_item(131, price="-1.00")]), "line_items.0.price"),
            ("orders/create", order_payload(14, current_total="NaN"), "current_total_price"),
            ("orders/updated", order_payload(15, customer_id=16) | {"customer": {"id": "x"}}, "customer.id"),
            ("customers/create", customer_payload(1) | {"id": "x"}, "id"),
            ("customers/delete", {"id": "x"}, "id"),
            ("customers/update", [customer_payload(17)], "body"),
        ],
        ids=[
            "total-price-text",
            "total-beyond-1e14",
            "id-over-64-bits",
            "negative-line-price",
            "nan-current-total",
            "embedded-customer-id-text",
            "customer-id-text",
            "delete-id-text",
            "array-not-object",
        ],
    )
    async def test_wrong_types_are_failed_naming_the_field(
        self, sessionmaker: Sessionmaker, settings: Settings, topic: str, payload: Any, field: str
    ) -> None:
        row_id = await helpers.enqueue(sessionmaker, topic, payload)
        await helpers.drain(sessionmaker, settings)
        row = await helpers.delivery(sessionmaker, row_id)
        assert row["status"] == "failed"
        assert row["attempts"] == 0
        assert f"{field}:" in row["last_error"]
        assert await helpers.orders(sessionmaker) == {}
        assert await helpers.customers(sessionmaker) == {}

    async def test_out_of_range_time_is_failed_not_retried(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        payload = order_payload(next_id()) | {"updated_at": "9999-12-31T23:59:59-05:00"}
        row_id = await helpers.enqueue(sessionmaker, "orders/updated", payload)
        await helpers.drain(sessionmaker, settings)
        row = await helpers.delivery(sessionmaker, row_id)
        assert (row["status"], row["attempts"]) == ("failed", 0)
        assert "updated_at" in row["last_error"]

    async def test_boolean_id_is_failed(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        row_id = await helpers.enqueue(sessionmaker, "customers/create", customer_payload(1) | {"id": True})
        await helpers.drain(sessionmaker, settings)
        row = await helpers.delivery(sessionmaker, row_id)
        assert row["status"] == "failed"
        assert "id:" in row["last_error"]
        assert await helpers.customers(sessionmaker) == {}


class TestCrashSafety:
    async def test_a_raising_handler_leaves_no_partial_write_and_is_retried_later(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        flaky = FlakyHandler(failures=1_000)
        row_id = await helpers.enqueue(sessionmaker, FLAKY_TOPIC, customer_payload(next_id()))
        await helpers.drain(sessionmaker, settings, router_with(flaky))

        assert await helpers.customers(sessionmaker) == {}
        row = await helpers.delivery(sessionmaker, row_id)
        assert (row["status"], row["attempts"], row["processed_at"]) == ("pending", 1, None)
        assert "RuntimeError" in row["last_error"]
        # called twice: in the whole-batch attempt, then alone in its savepoint
        assert flaky.calls == 2
        assert "flaky handler failure 2" in row["last_error"]
        assert row["next_attempt_at"] > utc_now()

    async def test_a_delivery_is_not_claimed_again_before_its_backoff(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        flaky = FlakyHandler(failures=1_000)
        row_id = await helpers.enqueue(sessionmaker, FLAKY_TOPIC, customer_payload(next_id()))
        await helpers.drain(sessionmaker, settings, router_with(flaky))
        assert flaky.calls == 2  # the whole-batch attempt, then the delivery alone
        assert await helpers.drain(sessionmaker, settings, router_with(flaky)) == 0
        assert flaky.calls == 2
        assert (await helpers.delivery(sessionmaker, row_id))["attempts"] == 1

    async def test_a_database_error_inside_the_handler_is_rolled_back_to_its_savepoint(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        row_id = await helpers.enqueue(sessionmaker, CLASH_TOPIC, customer_payload(next_id()))
        await helpers.drain(sessionmaker, settings, router_with())
        row = await helpers.delivery(sessionmaker, row_id)
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert "IntegrityError" in row["last_error"]
        assert await helpers.customers(sessionmaker) == {}

    async def test_after_max_attempts_the_delivery_is_dead(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        settings = with_settings(settings, TIERLINE_MAX_ATTEMPTS=2)
        flaky = FlakyHandler(failures=1_000)
        row_id = await helpers.enqueue(sessionmaker, FLAKY_TOPIC, customer_payload(next_id()))

        await helpers.drain(sessionmaker, settings, router_with(flaky))
        assert (await helpers.delivery(sessionmaker, row_id))["status"] == "pending"
        await helpers.update_delivery(sessionmaker, row_id, next_attempt_at=utc_now() - timedelta(seconds=1))
        await helpers.drain(sessionmaker, settings, router_with(flaky))

        row = await helpers.delivery(sessionmaker, row_id)
        assert (row["status"], row["attempts"]) == ("dead", 2)
        assert "flaky handler failure 4" in row["last_error"]
        assert row["processed_at"] is not None
        assert flaky.calls == 4  # two claims, each a whole-batch attempt and an isolated one
        assert await helpers.customers(sessionmaker) == {}
        # dead is terminal: nothing claims it again, even when its retry time has passed
        await helpers.update_delivery(sessionmaker, row_id, next_attempt_at=utc_now() - timedelta(seconds=1))
        assert await helpers.drain(sessionmaker, settings, router_with(flaky)) == 0

    async def test_a_retried_delivery_that_then_succeeds_is_processed_and_clears_its_error(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id = next_id()
        flaky = FlakyHandler(failures=2)  # fails in the whole-batch attempt and alone
        row_id = await helpers.enqueue(sessionmaker, FLAKY_TOPIC, customer_payload(customer_id))
        await helpers.drain(sessionmaker, settings, router_with(flaky))
        assert (await helpers.delivery(sessionmaker, row_id))["attempts"] == 1
        await helpers.update_delivery(sessionmaker, row_id, next_attempt_at=utc_now() - timedelta(seconds=1))
        await helpers.drain(sessionmaker, settings, router_with(flaky))

        row = await helpers.delivery(sessionmaker, row_id)
        assert (row["status"], row["last_error"]) == ("processed", None)
        assert list(await helpers.customers(sessionmaker)) == [customer_id]


class TestBatch:
    async def test_failing_deliveries_in_the_middle_do_not_stop_the_others(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        first, last, order_id = next_id(), next_id(), next_id()
        row_ids = await helpers.enqueue_many(
            sessionmaker,
            [
                Delivery.of("customers/create", customer_payload(first)),
                Delivery.of(FLAKY_TOPIC, customer_payload(next_id())),
                Delivery("orders/create", b"{not json"),
                Delivery.of(CLASH_TOPIC, customer_payload(next_id())),
                Delivery.of("products/update", {"id": next_id()}),
                Delivery.of("customers/create", customer_payload(last)),
                Delivery.of("orders/create", order_payload(order_id, customer_id=first)),
            ],
        )
        await helpers.drain(sessionmaker, settings, router_with())

        statuses = [(await helpers.delivery(sessionmaker, row_id))["status"] for row_id in row_ids]
        assert statuses == ["processed", "pending", "failed", "pending", "ignored", "processed", "processed"]
        assert sorted(await helpers.customers(sessionmaker)) == sorted([first, last])
        assert list(await helpers.orders(sessionmaker)) == [order_id]

    async def test_a_delivery_that_raises_only_in_the_whole_batch_attempt_is_processed_alone(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id, neighbour = next_id(), next_id()
        flaky = FlakyHandler(failures=1)
        fallbacks = fallback_count()
        row_ids = await helpers.enqueue_many(
            sessionmaker,
            [
                Delivery.of("customers/create", customer_payload(neighbour)),
                Delivery.of(FLAKY_TOPIC, customer_payload(customer_id)),
            ],
        )
        await helpers.drain(sessionmaker, settings, router_with(flaky))

        rows = [await helpers.delivery(sessionmaker, row_id) for row_id in row_ids]
        assert [(r["status"], r["attempts"], r["last_error"]) for r in rows] == [("processed", 0, None)] * 2
        assert sorted(await helpers.customers(sessionmaker)) == sorted([customer_id, neighbour])
        assert flaky.calls == 2
        assert fallback_count() == fallbacks + 1

    @pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
    async def test_a_batch_that_loses_a_race_with_another_worker_is_claimed_again_at_once(
        self, sessionmaker: Sessionmaker, settings: Settings, database_url: str, sqlstate: str
    ) -> None:
        """PostgreSQL aborts one of two deadlocked transactions (or a serialization failure):
        the worker's batch rolled back whole, so it is claimed again at once, not after a pause."""
        if not database_url.startswith("postgresql"):
            pytest.skip("deadlock and serialization failures are PostgreSQL's")
        raised: list[str] = []

        async def loses_once(ctx: DeliveryContext, payload: CustomerPayload) -> None:
            await customers.upsert_customer(ctx.session, ctx.shop_id, CustomerSnapshot(id=payload.id))
            if not raised:
                raised.append(sqlstate)
                await ctx.session.execute(
                    sa.text(f"DO $$ BEGIN RAISE EXCEPTION 'lost a race' USING ERRCODE = '{sqlstate}'; END $$")
                )

        router = build_router()
        extra = TopicRouter()
        extra.register(FLAKY_TOPIC, model=CustomerPayload)(loses_once)
        router.include(extra)
        customer_id, neighbour = next_id(), next_id()
        row_ids = await helpers.enqueue_many(
            sessionmaker,
            [
                Delivery.of("customers/create", customer_payload(neighbour)),
                Delivery.of(FLAKY_TOPIC, customer_payload(customer_id)),
            ],
        )
        result = await helpers.make_worker(sessionmaker, settings, router).run_once()

        assert (result.processed, result.retried) == (2, 0)
        assert raised == [sqlstate]
        rows = [await helpers.delivery(sessionmaker, row_id) for row_id in row_ids]
        assert [(r["status"], r["attempts"]) for r in rows] == [("processed", 0)] * 2
        assert sorted(await helpers.customers(sessionmaker)) == sorted([customer_id, neighbour])

    async def test_other_database_errors_still_abandon_the_batch(
        self, sessionmaker: Sessionmaker, settings: Settings, database_url: str
    ) -> None:
        if not database_url.startswith("postgresql"):
            pytest.skip("the error is raised by PostgreSQL")

        async def disk_full(ctx: DeliveryContext, payload: CustomerPayload) -> None:
            await ctx.session.execute(
                sa.text("DO $$ BEGIN RAISE EXCEPTION 'no space' USING ERRCODE = '53100'; END $$")
            )

        router = build_router()
        extra = TopicRouter()
        extra.register(FLAKY_TOPIC, model=CustomerPayload)(disk_full)
        router.include(extra)
        row_id = await helpers.enqueue(sessionmaker, FLAKY_TOPIC, customer_payload(next_id()))
        with pytest.raises(sa.exc.OperationalError):
            await helpers.make_worker(sessionmaker, settings, router).run_once()
        assert (await helpers.delivery(sessionmaker, row_id))["status"] == "pending"


class TestReplay:
    async def test_a_failed_delivery_replayed_after_the_fix_is_processed(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id = next_id()
        router = router_with(FlakyHandler(failures=2, error=PermanentDeliveryError))
        row_id = await helpers.enqueue(sessionmaker, FLAKY_TOPIC, customer_payload(customer_id))
        await helpers.drain(sessionmaker, settings, router)
        failed = await helpers.delivery(sessionmaker, row_id)
        assert failed["status"] == "failed"
        assert "PermanentDeliveryError" in failed["last_error"]
        assert await helpers.customers(sessionmaker) == {}
        assert await helpers.drain(sessionmaker, settings, router) == 0  # failed is not retried

        async with session_scope(sessionmaker) as session:
            assert await inbox.replay(session, delivery_id=row_id) == 1
        replayed = await helpers.delivery(sessionmaker, row_id)
        assert (replayed["status"], replayed["attempts"], replayed["last_error"]) == ("pending", 0, None)
        await helpers.drain(sessionmaker, settings, router)

        row = await helpers.delivery(sessionmaker, row_id)
        assert (row["status"], row["last_error"]) == ("processed", None)
        assert list(await helpers.customers(sessionmaker)) == [customer_id]

    async def test_replay_by_default_takes_failed_and_dead_deliveries_of_the_shop_only(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        settings = with_settings(settings, TIERLINE_MAX_ATTEMPTS=1)
        processed, failed, dead = await helpers.enqueue_many(
            sessionmaker,
            [
                Delivery.of("customers/create", customer_payload(next_id())),
                Delivery("customers/create", b"[]"),
                Delivery.of(FLAKY_TOPIC, customer_payload(next_id())),
            ],
        )
        (other_failed,) = await helpers.enqueue_many(
            sessionmaker, [Delivery("customers/create", b"[]")], shop="replay-other.myshopify.com"
        )
        await helpers.drain(sessionmaker, settings, router_with())
        assert [(await helpers.delivery(sessionmaker, i))["status"] for i in (processed, failed, dead)] == [
            "processed",
            "failed",
            "dead",
        ]

        shop_id = await helpers.shop_id(sessionmaker)
        async with session_scope(sessionmaker) as session:
            assert await inbox.replay(session, shop_id=shop_id) == 2

        statuses = {i: (await helpers.delivery(sessionmaker, i))["status"] for i in (processed, failed, dead)}
        assert statuses == {processed: "processed", failed: "pending", dead: "pending"}
        assert (await helpers.delivery(sessionmaker, other_failed))["status"] == "failed"


class TestPrune:
    async def test_prune_deletes_settled_rows_past_retention_and_keeps_the_rest(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        old_processed, recent_processed, old_ignored, old_failed, old_pending = await helpers.enqueue_many(
            sessionmaker,
            [
                Delivery.of("customers/create", customer_payload(next_id())),
                Delivery.of("customers/create", customer_payload(next_id())),
                Delivery.of("products/create", {"id": next_id()}),
                Delivery("customers/create", b"not json"),
                Delivery.of(FLAKY_TOPIC, customer_payload(next_id())),
            ],
        )
        worker = helpers.make_worker(sessionmaker, settings, router_with())
        await worker.drain()
        long_ago = utc_now() - timedelta(days=settings.retention_days + 1)
        for row_id in (old_processed, old_ignored, old_failed):
            await helpers.update_delivery(sessionmaker, row_id, processed_at=long_ago, received_at=long_ago)
        await helpers.update_delivery(
            sessionmaker,
            recent_processed,
            processed_at=utc_now() - timedelta(days=settings.retention_days - 1),
        )
        await helpers.update_delivery(sessionmaker, old_pending, received_at=long_ago)

        assert await worker.prune() == 2

        remaining = {row["id"]: row["status"] for row in await helpers.deliveries(sessionmaker)}
        assert remaining == {recent_processed: "processed", old_failed: "failed", old_pending: "pending"}

    async def test_one_call_prunes_batch_after_batch_until_none_is_left(
        self, sessionmaker: Sessionmaker, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(worker_module, "PRUNE_BATCH", 2)
        ids = await helpers.enqueue_many(
            sessionmaker, [Delivery.of("customers/create", customer_payload(next_id())) for _ in range(5)]
        )
        worker = helpers.make_worker(sessionmaker, settings, router_with())
        await worker.drain()
        long_ago = utc_now() - timedelta(days=settings.retention_days + 1)
        for row_id in ids:
            await helpers.update_delivery(sessionmaker, row_id, processed_at=long_ago)

        assert await worker.prune() == 5  # three transactions of at most 2 rows
        assert await helpers.deliveries(sessionmaker) == []


async def wait_for_status(
    sessionmaker: Sessionmaker, row_id: int | None, status: str, *, within: float
) -> float:
    """Poll the inbox until the delivery (or the only one, when ``row_id`` is None) has ``status``;
    the seconds it took. Fails after ``within`` seconds."""
    started = time.monotonic()
    deadline = started + within
    seen: list[str] = []
    while time.monotonic() < deadline:
        rows = await helpers.deliveries(sessionmaker)
        seen = [row["status"] for row in rows if row_id is None or row["id"] == row_id]
        if seen == [status]:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    pytest.fail(f"delivery not {status} within {within} s (statuses: {seen})")


class TestRun:
    async def test_inline_worker_of_the_app_applies_a_posted_delivery_within_seconds(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        app = create_app(with_settings(settings, TIERLINE_WORKER="inline"))
        customer_id = next_id()
        headers, body = signed_webhook("customers/create", customer_payload(customer_id))
        async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
            response = await client.post("/webhooks/shopify", content=body, headers=headers)
            assert response.status_code == 200
            await wait_for_status(sessionmaker, None, "processed", within=2.0)
        assert list(await helpers.customers(sessionmaker)) == [customer_id]

    async def test_notify_wakes_an_idle_worker_before_its_poll_interval(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        worker = helpers.make_worker(sessionmaker, with_settings(settings, TIERLINE_WORKER_POLL=30))
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(0.2)  # let it find the inbox empty and go idle
            row_id = await helpers.enqueue(sessionmaker, "customers/create", customer_payload(next_id()))
            worker.notify()
            await wait_for_status(sessionmaker, row_id, "processed", within=2.0)
        finally:
            worker.stop()
            await asyncio.wait_for(task, timeout=5)

    async def test_stop_makes_run_return_promptly(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        worker = helpers.make_worker(sessionmaker, with_settings(settings, TIERLINE_WORKER_POLL=30))
        task = asyncio.create_task(worker.run())
        row_id = await helpers.enqueue(sessionmaker, "customers/create", customer_payload(next_id()))
        worker.notify()
        await wait_for_status(sessionmaker, row_id, "processed", within=2.0)  # it runs, then idles

        started = time.monotonic()
        worker.stop()
        try:
            await asyncio.wait_for(task, timeout=2.0)
        except TimeoutError:
            task.cancel()
            pytest.fail("run() did not return within 2 s of stop() (poll interval is 30 s)")
        assert time.monotonic() - started < 2.0
        assert task.done()
        assert task.exception() is None
