"""Write-back (docs/shopify-app.md) end to end: webhooks → figures → outbox → the sender → the
stand-in Shopify.

Every document the sender makes is validated by the stand-in against the Admin API schema in
``../shared`` (the module is skipped loudly without it, a failure under ``CI=true``), and the
stand-in charges each request to its cost bucket. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import Settings
from service.crypto import TokenCipher
from service.db import session_scope
from service.domain import installs, writeback
from service.domain.shops import get_or_create_shop_id
from service.models import WriteBackOutbox
from service.types import utc_now
from service.writeback import WriteBackSender
from shopify_client import AccessToken
from tests.conftest import make_settings
from tests.support import deliveries as helpers
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import (
    API_KEY,
    API_SECRET,
    ENCRYPTION_KEY,
    at,
    customer_payload,
    next_id,
    order_payload,
)
from tests.support.payloads import SHOP as FACTORY_SHOP
from tests.support.shopify_standin import SCHEMA_PATH, Server, StandIn, schema_available, shopify_url

if not schema_available():
    _MISSING = (
        f"WRITE-BACK TESTS DID NOT RUN: the Admin API schema is missing at {SCHEMA_PATH} "
        "(expected ../shared/shopify-admin-schema beside the project)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(_MISSING, pytrace=False)
    pytest.skip(_MISSING, allow_module_level=True)

pytestmark = pytest.mark.anyio

SHOP = FACTORY_SHOP
OUTBOX = WriteBackOutbox.__table__  # type: ignore[attr-defined]


class Killed(BaseException):
    """The worker dies here (nothing after this line of the round runs)."""


@pytest.fixture
def standin() -> Iterator[StandIn]:
    fake = StandIn(api_key=API_KEY, api_secret=API_SECRET)
    fake.add_shop(SHOP)
    with Server(fake) as running:
        yield running
    assert fake.invalid_documents == [], fake.invalid_documents


@pytest.fixture
def wb_settings(database_url: str, standin: StandIn) -> Settings:
    return make_settings(database_url, TIERLINE_SHOPIFY_URL=shopify_url(standin))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def installed(sessionmaker: Sessionmaker, standin: StandIn) -> int:
    issued = standin._issue(SHOP)
    token = AccessToken(
        access_token=issued["access_token"],
        scope=issued["scope"],
        expires_at=utc_now() + timedelta(hours=1),
        refresh_token=issued["refresh_token"],
        refresh_token_expires_at=utc_now() + timedelta(days=90),
    )
    async with session_scope(sessionmaker) as session:
        shop_id = await get_or_create_shop_id(session, SHOP)
        await installs.store_token(session, shop_id, token, TokenCipher(ENCRYPTION_KEY))
    return shop_id


def sender(
    sessionmaker: Sessionmaker, http: httpx.AsyncClient, settings: Settings, **kw: Any
) -> WriteBackSender:
    return WriteBackSender(sessionmaker, http, settings, **kw)


def customer_gid(customer_id: int) -> str:
    return f"gid://shopify/Customer/{customer_id}"


def order_gid(order_id: int) -> str:
    return f"gid://shopify/Order/{order_id}"


def in_shopify(standin: StandIn, *, customers: Sequence[int] = (), orders: Sequence[int] = ()) -> None:
    shop = standin.shops[SHOP]
    shop.customers += [{"id": customer_gid(c)} for c in customers]
    for order_id in orders:
        standin.upsert_order(SHOP, {"id": order_gid(order_id)})


def writes(standin: StandIn, resource: str | None = None) -> list[tuple[str, str, Any]]:
    return [w for w in standin.shops[SHOP].writes if resource is None or w[1] == resource]


def write_requests(standin: StandIn) -> int:
    return sum(1 for _shop, name in standin.graphql_requests if name == "TierlineWriteBack")


async def outbox_rows(sessionmaker: Sessionmaker) -> list[Any]:
    async with sessionmaker() as session:
        return list((await session.execute(sa.select(OUTBOX).order_by(OUTBOX.c.id))).all())


async def apply(sessionmaker: Sessionmaker, settings: Settings, *deliveries: Delivery) -> None:
    await helpers.apply(sessionmaker, settings, list(deliveries))


class TestATierChange:
    async def test_reaches_shopify_once_with_the_tag_swap_and_other_tags_untouched(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        in_shopify(standin, customers=[cid])
        standin.shops[SHOP].tags[customer_gid(cid)] = ["vip", "wholesale"]
        await apply(sessionmaker, wb_settings, Delivery.of("customers/create", customer_payload(cid)))
        report = await sender(sessionmaker, http, wb_settings).drain()
        assert report.sent == 1
        held = standin.resource_metafields(SHOP, customer_gid(cid))
        assert held == {"tier": "bronze", "ltv": "0.00", "order_count": "0", "cod_rto_count": "0"}
        assert standin.resource_tags(SHOP, customer_gid(cid)) == ["vip", "wholesale", "tierline-bronze"]
        # Setup ran once: six definitions and one segment per tier.
        assert len(standin.shops[SHOP].definitions) == 6
        assert sorted(standin.shops[SHOP].segments) == [
            "tierline: Bronze",
            "tierline: Gold",
            "tierline: Platinum",
            "tierline: Silver",
        ]
        namespace = f"app--{standin.app_id}--tierline"
        assert (
            standin.shops[SHOP].segments["tierline: Gold"]["query"] == f"metafields.{namespace}.tier = 'gold'"
        )

        before = len(writes(standin))
        oid = next_id()
        await apply(
            sessionmaker,
            wb_settings,
            Delivery.of(
                "orders/create", order_payload(oid, customer_id=cid, total="26000.00", created=at(5))
            ),
        )
        report = await sender(sessionmaker, http, wb_settings).drain()
        assert report.sent == 1
        change = [w for w in writes(standin)[before:] if w[1] == customer_gid(cid)]
        assert sorted((w[0], str(w[2])) for w in change) == sorted(
            [
                ("metafieldsSet", "('tier', 'gold')"),
                ("metafieldsSet", "('ltv', '26000.00')"),
                ("metafieldsSet", "('order_count', '1')"),
                ("tagsAdd", "['tierline-gold']"),
                ("tagsRemove", "['tierline-bronze']"),
            ]
        )
        assert standin.resource_tags(SHOP, customer_gid(cid)) == ["vip", "wholesale", "tierline-gold"]
        # Exactly once: nothing more to send, and sending again writes nothing.
        after = len(writes(standin))
        assert (await sender(sessionmaker, http, wb_settings).drain()).claimed == 0
        assert len(writes(standin)) == after
        [row] = await outbox_rows(sessionmaker)
        assert (row.state, row.last_error) == ("sent", None)
        async with sessionmaker() as session:
            summary = await writeback.summary(session, installed)
        assert (summary.pending, summary.failed) == (0, 0)
        assert summary.last_written_at is not None

    async def test_the_customers_update_echo_causes_no_second_write(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        in_shopify(standin, customers=[cid])
        await apply(
            sessionmaker,
            wb_settings,
            Delivery.of("customers/create", customer_payload(cid)),
            Delivery.of("orders/create", order_payload(next_id(), customer_id=cid, total="12000.00")),
        )
        await sender(sessionmaker, http, wb_settings).drain()
        done = len(writes(standin))
        assert standin.resource_tags(SHOP, customer_gid(cid)) == ["tierline-silver"]
        # Shopify's echo of tierline's own write: customers/update with the new tag and updated_at.
        echo = customer_payload(cid, updated=at(30), tags="tierline-silver")
        await apply(sessionmaker, wb_settings, Delivery.of("customers/update", echo))
        assert [row.state for row in await outbox_rows(sessionmaker)] == ["sent"]
        assert (await sender(sessionmaker, http, wb_settings).drain()).claimed == 0
        assert len(writes(standin)) == done


class TestCoalescing:
    async def test_a_burst_of_500_changes_to_one_customer_is_a_handful_of_writes_ending_in_the_latest(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        in_shopify(standin, customers=[cid])
        await apply(sessionmaker, wb_settings, Delivery.of("customers/create", customer_payload(cid)))
        await sender(sessionmaker, http, wb_settings).drain()
        requests_before = write_requests(standin)
        burst = [
            Delivery.of(
                "orders/create", order_payload(next_id(), customer_id=cid, total="100.00", created=at(n))
            )
            for n in range(500)
        ]
        await helpers.enqueue_many(sessionmaker, burst)
        worker = helpers.make_worker(sessionmaker, wb_settings)
        running = sender(sessionmaker, http, wb_settings)

        async def send_while_applying(inbox: asyncio.Task[int]) -> None:
            while not inbox.done():
                await running.round()
                await asyncio.sleep(0.01)

        inbox = asyncio.create_task(worker.drain())
        await send_while_applying(inbox)
        await inbox
        await running.drain()
        held = standin.resource_metafields(SHOP, customer_gid(cid))
        assert held["ltv"] == "50000.00"
        assert held["order_count"] == "500"
        assert held["tier"] == "platinum"
        assert standin.resource_tags(SHOP, customer_gid(cid)) == ["tierline-platinum"]
        sent_requests = write_requests(standin) - requests_before
        assert 1 <= sent_requests <= 25, sent_requests
        [row] = await outbox_rows(sessionmaker)
        assert row.state == "sent"


class TestAKilledWorker:
    async def test_killed_after_writing_the_next_sender_writes_nothing_again(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        in_shopify(standin, customers=[cid])
        await apply(
            sessionmaker,
            wb_settings,
            Delivery.of("customers/create", customer_payload(cid)),
            Delivery.of("orders/create", order_payload(next_id(), customer_id=cid, total="30000.00")),
        )

        async def die(_rows: Sequence[writeback.Claimed]) -> None:
            raise Killed

        with pytest.raises(Killed):
            await sender(sessionmaker, http, wb_settings, after_send=die, lease_seconds=0.0).round()
        written = writes(standin)
        assert len(written) == 5  # four metafields and the tag, sent before the kill
        [row] = await outbox_rows(sessionmaker)
        assert row.state == "pending"  # not settled: the lease runs out
        report = await sender(sessionmaker, http, wb_settings).drain()
        assert (report.claimed, report.sent, report.unchanged) == (1, 0, 1)
        assert writes(standin) == written  # nothing twice
        [row] = await outbox_rows(sessionmaker)
        assert row.state == "sent"

    async def test_killed_after_claiming_loses_no_write(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        in_shopify(standin, customers=[cid])
        await apply(sessionmaker, wb_settings, Delivery.of("customers/create", customer_payload(cid)))
        async with session_scope(sessionmaker) as session:
            [claimed] = await writeback.claim(session, "dead-worker", limit=10, lease_seconds=0.0)
        assert claimed.resource_id == cid
        report = await sender(sessionmaker, http, wb_settings).drain()
        assert report.sent == 1
        assert standin.resource_tags(SHOP, customer_gid(cid)) == ["tierline-bronze"]

    async def test_a_lease_still_held_is_not_taken(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        in_shopify(standin, customers=[cid])
        await apply(sessionmaker, wb_settings, Delivery.of("customers/create", customer_payload(cid)))
        async with session_scope(sessionmaker) as session:
            assert len(await writeback.claim(session, "live-worker", limit=10, lease_seconds=60)) == 1
        assert (await sender(sessionmaker, http, wb_settings).drain()).claimed == 0
        assert writes(standin) == []


class TestOrderRisk:
    async def test_the_risk_tag_on_a_qualifying_cod_order_never_on_a_prepaid_one(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        first, returned_cod, cod, prepaid = next_id(), next_id(), next_id(), next_id()
        in_shopify(standin, customers=[cid], orders=[first, returned_cod, cod, prepaid])
        await apply(
            sessionmaker,
            wb_settings,
            Delivery.of("customers/create", customer_payload(cid)),
            # A COD order created before the customer had any RTO: no risk.
            Delivery.of("orders/create", order_payload(first, customer_id=cid, created=at(1))),
            Delivery.of("orders/create", order_payload(returned_cod, customer_id=cid, created=at(2))),
        )
        await apply(
            sessionmaker,
            wb_settings,
            # It comes back: tagged RTO by the merchant → the customer's COD RTO count is 1.
            Delivery.of(
                "orders/updated",
                order_payload(returned_cod, customer_id=cid, created=at(2), updated=at(50), tags="rto"),
            ),
        )
        stats = (await helpers.customer_stats(sessionmaker))[cid]
        assert stats["rto_count"] == 1
        await apply(
            sessionmaker,
            wb_settings,
            Delivery.of("orders/create", order_payload(cod, customer_id=cid, created=at(60))),
            Delivery.of(
                "orders/create",
                order_payload(prepaid, customer_id=cid, created=at(61), gateways=["shopify_payments"]),
            ),
        )
        await sender(sessionmaker, http, wb_settings).drain()
        assert standin.resource_tags(SHOP, order_gid(cod)) == ["tierline-cod-rto-risk"]
        assert standin.resource_metafields(SHOP, order_gid(cod)) == {
            "customer_cod_rto_count": "1",
            "customer_tier": "bronze",
        }
        for order_id in (first, returned_cod, prepaid):
            assert writes(standin, order_gid(order_id)) == []

    async def test_a_higher_threshold_or_the_setting_off_tags_nothing(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        returned_cod, cod, later = next_id(), next_id(), next_id()
        in_shopify(standin, customers=[cid], orders=[returned_cod, cod, later])
        await helpers.set_shop_settings(sessionmaker, {"writeBack": {"riskMinCodRto": 2}})
        await apply(
            sessionmaker,
            wb_settings,
            Delivery.of("orders/create", order_payload(returned_cod, customer_id=cid, tags="rto")),
            Delivery.of("orders/create", order_payload(cod, customer_id=cid, created=at(60))),
        )
        await helpers.set_shop_settings(sessionmaker, {"writeBack": {"orderRiskTag": False}})
        await apply(
            sessionmaker, wb_settings, Delivery.of("orders/create", order_payload(later, customer_id=cid))
        )
        await sender(sessionmaker, http, wb_settings).drain()
        assert writes(standin, order_gid(cod)) == []
        assert writes(standin, order_gid(later)) == []


class TestFailures:
    async def test_retried_with_backoff_then_failed_then_replayed(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(writeback, "MAX_ATTEMPTS", 3)
        cid = next_id()
        in_shopify(standin, customers=[cid])
        await apply(sessionmaker, wb_settings, Delivery.of("customers/create", customer_payload(cid)))
        standin.write_errors = ["Value is invalid (stand-in)"] * 100
        running = sender(sessionmaker, http, wb_settings)
        states = []
        for _ in range(3):
            report = await running.round()
            assert report.claimed == 1
            [row] = await outbox_rows(sessionmaker)
            states.append(row.state)
            assert row.next_attempt_at > utc_now() or row.state == "failed"  # backing off
            async with session_scope(sessionmaker) as session:
                await session.execute(sa.update(OUTBOX).values(next_attempt_at=utc_now()))
        assert states == ["pending", "pending", "failed"]
        [row] = await outbox_rows(sessionmaker)
        assert "Value is invalid" in row.last_error
        async with sessionmaker() as session:
            assert (await writeback.summary(session, installed)).failed == 1
        standin.write_errors = []
        async with session_scope(sessionmaker) as session:
            assert await writeback.replay(session, shop_id=installed) == 1
        assert (await running.drain()).sent == 1
        assert standin.resource_tags(SHOP, customer_gid(cid)) == ["tierline-bronze"]

    async def test_a_customer_gone_at_shopify_is_failed_at_once(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        await apply(sessionmaker, wb_settings, Delivery.of("customers/create", customer_payload(next_id())))
        report = await sender(sessionmaker, http, wb_settings).drain()
        assert report.failed == 1
        [row] = await outbox_rows(sessionmaker)
        assert row.state == "failed"
        assert "no longer exists" in row.last_error

    async def test_the_deliveries_page_lists_a_failed_write_back_and_sends_it_again(
        self,
        sessionmaker: Sessionmaker,
        database_url: str,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        settings = make_settings(
            database_url, TIERLINE_SHOPIFY_URL=shopify_url(standin), TIERLINE_DEV_SHOP=SHOP
        )
        gone = next_id()
        await apply(sessionmaker, settings, Delivery.of("customers/create", customer_payload(gone)))
        await sender(sessionmaker, http, settings).drain()

        async with AsyncTestClient(app=create_app(settings)) as client:
            before = (await client.get("/app/deliveries")).text
            headers = await helpers.api_headers(sessionmaker, SHOP)
            replayed = (await client.post("/api/shop/write-back/replay", headers=headers)).json()
            after = (await client.get("/app/deliveries")).text

        assert f"Customer {gone}" in before
        assert 'id="write-back-replay"' in before
        assert replayed == {"replayed": 1}
        assert "No failed write-backs." in after
        assert 'id="write-back-replay"' not in after
        [row] = await outbox_rows(sessionmaker)
        assert row.state == "pending"


class TestStops:
    async def test_uninstall_stops_and_drops_what_is_unsent(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        in_shopify(standin, customers=[cid])
        await apply(sessionmaker, wb_settings, Delivery.of("customers/create", customer_payload(cid)))
        await apply(
            sessionmaker, wb_settings, Delivery.of("app/uninstalled", {"id": 1, "myshopify_domain": SHOP})
        )
        assert await outbox_rows(sessionmaker) == []
        await apply(
            sessionmaker, wb_settings, Delivery.of("orders/create", order_payload(next_id(), customer_id=cid))
        )
        assert await outbox_rows(sessionmaker) == []
        assert (await sender(sessionmaker, http, wb_settings).drain()).claimed == 0
        assert writes(standin) == []

    async def test_a_redacted_customer_is_dropped_and_never_sent(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid, oid = next_id(), next_id()
        in_shopify(standin, customers=[cid], orders=[oid])
        await apply(
            sessionmaker,
            wb_settings,
            Delivery.of("customers/create", customer_payload(cid)),
            Delivery.of("orders/create", order_payload(oid, customer_id=cid)),
        )
        assert len(await outbox_rows(sessionmaker)) == 1
        redact = {"shop_id": 1, "shop_domain": SHOP, "customer": {"id": cid}, "orders_to_redact": [oid]}
        await apply(sessionmaker, wb_settings, Delivery.of("customers/redact", redact))
        assert await outbox_rows(sessionmaker) == []
        # A late delivery of their order queues nothing for them.
        await apply(
            sessionmaker,
            wb_settings,
            Delivery.of("orders/updated", order_payload(oid, customer_id=cid, updated=at(90))),
        )
        assert await outbox_rows(sessionmaker) == []
        assert (await sender(sessionmaker, http, wb_settings).drain()).claimed == 0
        assert writes(standin) == []


class TestSetup:
    async def test_setup_is_idempotent_on_reinstall(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        cid = next_id()
        in_shopify(standin, customers=[cid])
        await apply(sessionmaker, wb_settings, Delivery.of("customers/create", customer_payload(cid)))
        await sender(sessionmaker, http, wb_settings).drain()
        async with session_scope(sessionmaker) as session:
            await writeback.drop_unsent(session, installed)  # what an uninstall does
            await writeback.queue_shop(session, installed)
            await session.execute(sa.update(OUTBOX).values(state="pending", version=OUTBOX.c.version + 1))
        report = await sender(sessionmaker, http, wb_settings).drain()
        assert report.claimed == 1
        assert report.unchanged == 1
        async with sessionmaker() as session:
            setup_at, _ = await writeback.setup_state(session, installed)
        assert setup_at is not None
        assert len(standin.shops[SHOP].definitions) == 6
        assert len(standin.shops[SHOP].segments) == 4


class TestSharedBucket:
    async def test_every_process_pays_from_one_bucket_per_shop(
        self, sessionmaker: Sessionmaker, installed: int
    ) -> None:
        now = utc_now()
        async with session_scope(sessionmaker) as session:
            await writeback.observe(session, installed, available=100, maximum=1000, restore_rate=50, now=now)
        async with session_scope(sessionmaker) as session:  # one process
            assert await writeback.reserve(session, installed, 80, now=now) == 0
        async with session_scope(sessionmaker) as session:  # another: 20 left, 80 asked
            assert await writeback.reserve(session, installed, 80, now=now) == pytest.approx(60 / 50)
        async with session_scope(sessionmaker) as session:  # restored meanwhile
            assert await writeback.reserve(session, installed, 80, now=now + timedelta(seconds=1.2)) == 0

    async def test_the_sender_waits_for_the_bucket_instead_of_being_throttled(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
    ) -> None:
        standin.bucket_size, standin.restore_rate = 100.0, 200.0
        ids = [next_id() for _ in range(30)]
        in_shopify(standin, customers=ids)
        await apply(
            sessionmaker, wb_settings, *[Delivery.of("customers/create", customer_payload(c)) for c in ids]
        )
        report = await sender(sessionmaker, http, wb_settings, batch=5).drain()
        assert report.sent == 30
        assert report.throttle_waits > 0
        assert all(standin.resource_tags(SHOP, customer_gid(c)) == ["tierline-bronze"] for c in ids)


class TestSettingsApi:
    async def test_write_back_settings_defaults_validation_and_tag_removal(
        self,
        sessionmaker: Sessionmaker,
        wb_settings: Settings,
        standin: StandIn,
        installed: int,
        http: httpx.AsyncClient,
        client: Any,
    ) -> None:
        headers = await helpers.api_headers(sessionmaker, SHOP)
        doc = (await client.get("/api/settings", headers=headers)).json()
        assert doc["writeBack"] == {
            "enabled": True,
            "customerTags": True,
            "orderRiskTag": True,
            "riskMinCodRto": 1,
        }
        bad = await client.put("/api/settings", headers=headers, json={"writeBack": {"riskMinCodRto": 0}})
        assert bad.status_code == 422
        assert [e["field"] for e in bad.json()["errors"]] == ["writeBack.riskMinCodRto"]
        cid = next_id()
        in_shopify(standin, customers=[cid])
        standin.shops[SHOP].tags[customer_gid(cid)] = ["vip"]
        await apply(sessionmaker, wb_settings, Delivery.of("customers/create", customer_payload(cid)))
        await sender(sessionmaker, http, wb_settings).drain()
        assert standin.resource_tags(SHOP, customer_gid(cid)) == ["vip", "tierline-bronze"]
        ok = await client.put("/api/settings", headers=headers, json={"writeBack": {"customerTags": False}})
        assert ok.status_code == 200
        assert ok.json()["writeBack"]["customerTags"] is False
        shop_doc = (await client.get("/api/shop", headers=headers)).json()
        assert shop_doc["writeBack"]["pending"] == 1
        await sender(sessionmaker, http, wb_settings).drain()
        assert standin.resource_tags(SHOP, customer_gid(cid)) == ["vip"]  # only tierline's tag removed
