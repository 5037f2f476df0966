"""docs/domain.md customer figures through the whole pipeline, on SQLite and PostgreSQL.

Each case describes one customer's orders; they go into the inbox as webhook deliveries (orders,
fulfillments, returns, deletes), the real worker applies them, and the figures are read back twice:
with ``stats.read`` (the one function every read uses) and through ``POST /api/stats/customers``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.config import Settings
from service.db import session_scope
from service.domain import orders, stats
from service.domain.settings import get_shop_settings
from service.domain.shops import get_or_create_shop_id
from tests.support import deliveries as helpers
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import (
    OTHER_SHOP,
    SHOP,
    at,
    customer_payload,
    fulfillment_payload,
    iso,
    line_item,
    next_id,
    order_payload,
    refund_payload,
    return_payload,
)

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
URL = "/api/stats/customers"

Tracking = Literal[
    "none", "unshipped_fulfillment", "in_transit", "delivered", "rto_tag", "rto_return", "customer_return"
]


@dataclass(frozen=True, slots=True)
class Spec:
    """One order of the customer, and what happens to it."""

    total: str = "1000.00"
    current: str | None = None
    cancelled: bool = False
    test: bool = False
    cod: bool = True
    tracking: Tracking = "none"
    deleted: bool = False

    @property
    def expected_tracking(self) -> str | None:
        return {
            "none": None,
            "unshipped_fulfillment": None,
            "in_transit": "in_transit",
            "delivered": "delivered",
            "rto_tag": "rto_initiated",
            "rto_return": "rto_initiated",
            "customer_return": "delivered",
        }[self.tracking]


def order_deliveries(customer_id: int, order: Spec, n: int) -> tuple[int, list[Delivery]]:
    """The deliveries that give ``order`` (the customer's n-th): orders/*, fulfillments, returns."""
    order_id = next_id()
    extra: dict[str, Any] = {"test": order.test, "tags": "vip, RTO" if order.tracking == "rto_tag" else "vip"}
    if order.cancelled:
        extra["cancelled_at"] = iso(at(n + 5))
    if order.total.startswith("-"):  # the default line costs the total; a line price is never negative
        extra["lines"] = [line_item(order_id * 10, price="5.00")]
    payload = order_payload(
        order_id,
        customer_id=customer_id,
        total=order.total,
        current_total=order.current,
        created=at(n),
        gateways=["Cash on Delivery (COD)"] if order.cod else ["shopify_payments"],
        **extra,
    )
    out = [Delivery.of("orders/create", payload)]
    shipment = {
        "unshipped_fulfillment": None,
        "in_transit": "in_transit",
        "delivered": "delivered",
        "rto_return": "in_transit",
        "customer_return": "delivered",
    }
    if order.tracking in shipment:
        fid = next_id()
        out.append(
            Delivery.of(
                "fulfillments/create",
                fulfillment_payload(
                    fid, order_id, shipment_status=shipment[order.tracking], created=at(n + 1)
                ),
            )
        )
    if order.tracking in ("rto_return", "customer_return"):
        out.append(
            Delivery.of("returns/request", return_payload(next_id(), order_id), triggered_at=at(n + 100))
        )
    if order.deleted:
        out.append(Delivery.of("orders/delete", {"id": order_id}))
    return order_id, out


async def run_orders(
    sessionmaker: Sessionmaker, settings: Settings, customer_id: int, orders: list[Spec], *, shop: str = SHOP
) -> list[int]:
    order_ids: list[int] = []
    deliveries: list[Delivery] = []
    for n, order in enumerate(orders):
        order_id, part = order_deliveries(customer_id, order, n)
        order_ids.append(order_id)
        deliveries += part
    await helpers.apply(sessionmaker, settings, deliveries, shop=shop)
    statuses = {row["status"] for row in await helpers.deliveries(sessionmaker, shop=shop)}
    assert statuses <= {"processed"}, statuses
    return order_ids


async def read_stats(
    sessionmaker: Sessionmaker, customer_ids: list[int], *, shop: str = SHOP
) -> dict[int, Any]:
    async with session_scope(sessionmaker) as session:
        shop_id = await get_or_create_shop_id(session, shop)
        shop_settings = await get_shop_settings(session, shop_id)
        figures = await stats.read(session, shop_id, customer_ids, shop_settings)
    return {
        cid: {"ltv": f"{f.ltv:.2f}", "orderCount": f.order_count, "rtoCount": f.rto_count, "tier": f.tier}
        for cid, f in figures.items()
    }


async def api_stats(client: Client, headers: dict[str, str], ids: list[Any]) -> dict[str, Any]:
    response = await client.post(URL, json={"customerIds": ids}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"stats"}
    return body["stats"]  # type: ignore[no-any-return]


def figures(ltv: str, order_count: int, rto_count: int, tier: str = "bronze") -> dict[str, Any]:
    return {"ltv": ltv, "orderCount": order_count, "rtoCount": rto_count, "tier": tier}


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    orders: list[Spec]
    expected: dict[str, Any]
    include_test: bool = False


CASES = [
    Case("one order", [Spec()], figures("1000.00", 1, 0)),
    Case(
        "LTV sums eligible orders", [Spec("1000.00"), Spec("250.50"), Spec("0.49")], figures("1250.99", 3, 0)
    ),
    Case(
        "cancelled excluded from LTV and orderCount",
        [Spec(), Spec("500.00", cancelled=True)],
        figures("1000.00", 1, 0),
    ),
    Case("deleted excluded", [Spec(), Spec("700.00", deleted=True)], figures("1000.00", 1, 0)),
    Case(
        "deleted COD RTO excluded from rtoCount",
        [Spec(tracking="rto_tag", deleted=True)],
        figures("0.00", 0, 0),
    ),
    Case("test orders excluded", [Spec(), Spec("500.00", test=True)], figures("1000.00", 1, 0)),
    Case(
        "test orders with includeTestOrders",
        [Spec(), Spec("500.00", test=True)],
        figures("1500.00", 2, 0),
        True,
    ),
    Case("total 0.00 excluded (exchange)", [Spec(), Spec("0.00")], figures("1000.00", 1, 0)),
    Case("current total 0.00 excluded", [Spec(), Spec("500.00", current="0.00")], figures("1000.00", 1, 0)),
    Case(
        "negative total stored and excluded",
        [Spec(), Spec("-50.00", current="-75.00")],
        figures("1000.00", 1, 0),
    ),
    Case(
        "NULL tracking status counts",
        [Spec(tracking="none"), Spec("200.00", tracking="unshipped_fulfillment")],
        figures("1200.00", 2, 0),
    ),
    Case(
        "in transit and delivered count",
        [Spec(tracking="in_transit"), Spec(tracking="delivered")],
        figures("2000.00", 2, 0),
    ),
    Case(
        "RTO excluded from LTV, COD RTO counted",
        [Spec(), Spec("500.00", tracking="rto_tag")],
        figures("1000.00", 1, 1),
    ),
    Case("RTO through a return", [Spec("300.00"), Spec(tracking="rto_return")], figures("300.00", 1, 1)),
    Case("a return after delivery is no RTO", [Spec(tracking="customer_return")], figures("1000.00", 1, 0)),
    Case(
        "cancelled COD RTO counts in rtoCount",
        [Spec(cancelled=True, tracking="rto_tag")],
        figures("0.00", 0, 1),
    ),
    Case(
        "prepaid RTO not counted",
        [Spec(cod=False, tracking="rto_tag"), Spec(cod=False)],
        figures("1000.00", 1, 0),
    ),
    Case("test COD RTO not counted", [Spec(test=True, tracking="rto_tag")], figures("0.00", 0, 0)),
    Case(
        "test COD RTO counted with includeTestOrders",
        [Spec(test=True, tracking="rto_tag")],
        figures("0.00", 0, 1),
        True,
    ),
    Case(
        "current_total_price over total_price", [Spec("1000.00", current="800.00")], figures("800.00", 1, 0)
    ),
    Case("money: whole amounts get two decimals", [Spec("1000"), Spec("0.5")], figures("1000.50", 2, 0)),
    Case("9999.99 → bronze", [Spec("9999.99")], figures("9999.99", 1, 0, "bronze")),
    Case("10000.00 → silver (inclusive)", [Spec("10000.00")], figures("10000.00", 1, 0, "silver")),
    Case(
        "two orders reach silver exactly",
        [Spec("4000.01"), Spec("5999.99")],
        figures("10000.00", 2, 0, "silver"),
    ),
    Case("24999.99 → silver", [Spec("24999.99")], figures("24999.99", 1, 0, "silver")),
    Case("25000.00 → gold", [Spec("25000.00")], figures("25000.00", 1, 0, "gold")),
    Case("49999.99 → gold", [Spec("49999.99")], figures("49999.99", 1, 0, "gold")),
    Case("50000.00 → platinum", [Spec("50000.00")], figures("50000.00", 1, 0, "platinum")),
    Case(
        "a cancelled order does not lift the tier",
        [Spec("9000.00"), Spec("1000.00", cancelled=True)],
        figures("9000.00", 1, 0, "bronze"),
    ),
    Case(
        "everything at once",
        [
            Spec("1200.00", tracking="delivered"),
            Spec("800.00", current="600.00", tracking="in_transit"),
            Spec("300.00", tracking="none"),
            Spec("450.00", cancelled=True),
            Spec("999.00", test=True),
            Spec("0.00"),
            Spec("700.00", tracking="rto_tag"),
            Spec("650.00", cancelled=True, tracking="rto_return"),
            Spec("400.00", cod=False, tracking="rto_tag"),
            Spec("5000.00", deleted=True),
        ],
        figures("2100.00", 3, 2),
    ),
]


class TestFiguresThroughThePipeline:
    @pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
    async def test_figures(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client, case: Case
    ) -> None:
        if case.include_test:
            await helpers.set_shop_settings(sessionmaker, {"includeTestOrders": True})
        customer_id = next_id()
        order_ids = await run_orders(sessionmaker, settings, customer_id, case.orders)

        rows = await helpers.orders(sessionmaker)
        for order_id, order in zip(order_ids, case.orders, strict=True):
            if order.deleted:
                assert order_id not in rows
            else:
                assert rows[order_id]["tracking_status"] == order.expected_tracking, order

        assert await read_stats(sessionmaker, [customer_id]) == {customer_id: case.expected}
        headers = await helpers.api_headers(sessionmaker)
        assert await api_stats(client, headers, [str(customer_id)]) == {str(customer_id): case.expected}


class TestStatsApi:
    async def test_custom_thresholds_via_put_settings(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(
            "/api/settings",
            json={"tierThresholds": {"platinum": "300.00", "gold": 200, "silver": "100"}},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["tierThresholds"] == {
            "platinum": "300.00",
            "gold": "200.00",
            "silver": "100.00",
        }
        expected = {
            "99.99": "bronze",
            "100.00": "silver",
            "199.99": "silver",
            "200.00": "gold",
            "300.00": "platinum",
        }
        ids: dict[str, int] = {}
        for total in expected:
            ids[total] = next_id()
            await run_orders(sessionmaker, settings, ids[total], [Spec(total)])
        answer = await api_stats(client, headers, [str(i) for i in ids.values()])
        assert {total: answer[str(cid)]["tier"] for total, cid in ids.items()} == expected
        assert {total: answer[str(cid)]["ltv"] for total, cid in ids.items()} == {t: t for t in expected}

    async def test_unknown_ids_get_zeros_and_bronze(self, sessionmaker: Sessionmaker, client: Client) -> None:
        headers = await helpers.api_headers(sessionmaker)
        unknown = [next_id(), next_id()]
        answer = await api_stats(client, headers, [str(i) for i in unknown])
        assert answer == {str(i): figures("0.00", 0, 0, "bronze") for i in unknown}
        assert await read_stats(sessionmaker, unknown) == {
            i: figures("0.00", 0, 0, "bronze") for i in unknown
        }

    async def test_an_empty_list(self, sessionmaker: Sessionmaker, client: Client) -> None:
        headers = await helpers.api_headers(sessionmaker)
        assert await api_stats(client, headers, []) == {}

    async def test_id_forms(self, sessionmaker: Sessionmaker, settings: Settings, client: Client) -> None:
        a, b, c = next_id(), next_id(), next_id()
        for cid, total in ((a, "100.00"), (b, "200.00"), (c, "300.00")):
            await run_orders(sessionmaker, settings, cid, [Spec(total)])
        headers = await helpers.api_headers(sessionmaker)
        answer = await api_stats(client, headers, [str(a), b, f"gid://shopify/Customer/{c}"])
        assert {k: v["ltv"] for k, v in answer.items()} == {
            str(a): "100.00",
            str(b): "200.00",
            str(c): "300.00",
        }

    async def test_the_same_customer_in_several_forms_is_one_entry(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid = next_id()
        await run_orders(sessionmaker, settings, cid, [Spec("123.45")])
        headers = await helpers.api_headers(sessionmaker)
        answer = await api_stats(client, headers, [str(cid), cid, f"gid://shopify/Customer/{cid}"])
        assert answer == {str(cid): figures("123.45", 1, 0)}

    async def test_ids_above_2_pow_53_are_exact(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid = 2**62 + 7
        await run_orders(sessionmaker, settings, cid, [Spec("10.00")])
        headers = await helpers.api_headers(sessionmaker)
        assert await api_stats(client, headers, [str(cid)]) == {str(cid): figures("10.00", 1, 0)}

    async def test_1000_ids_are_accepted(self, sessionmaker: Sessionmaker, client: Client) -> None:
        headers = await helpers.api_headers(sessionmaker)
        ids = [str(10_000 + i) for i in range(1000)]
        assert len(await api_stats(client, headers, ids)) == 1000

    async def test_1001_ids_are_422(self, sessionmaker: Sessionmaker, client: Client) -> None:
        headers = await helpers.api_headers(sessionmaker)
        response = await client.post(
            URL, json={"customerIds": [str(10_000 + i) for i in range(1001)]}, headers=headers
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")

    @pytest.mark.parametrize(
        "bad",
        [
            "abc",
            "",
            "12a",
            "-5",
            0,
            -5,
            "gid://shopify/Order/123",
            "gid://shopify/Customer/abc",
            str(2**63),
            2**63,
            pytest.param(True, id="true"),
            pytest.param(1.5, id="1.5"),
            pytest.param(None, id="null"),
            pytest.param({"id": 1}, id="object"),
        ],
    )
    async def test_a_bad_id_is_422(self, sessionmaker: Sessionmaker, client: Client, bad: Any) -> None:
        headers = await helpers.api_headers(sessionmaker)
        response = await client.post(URL, json={"customerIds": ["123", bad]}, headers=headers)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["status"] == 422
        assert body["errors"], body

    async def test_customer_ids_is_required(self, sessionmaker: Sessionmaker, client: Client) -> None:
        headers = await helpers.api_headers(sessionmaker)
        response = await client.post(URL, json={}, headers=headers)
        assert response.status_code in (400, 422), response.text

    async def test_without_credentials_401(self, client: Client) -> None:
        response = await client.post(URL, json={"customerIds": ["1"]})
        assert response.status_code == 401

    async def test_another_shops_customer_reads_as_unknown(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid = next_id()
        await run_orders(sessionmaker, settings, cid, [Spec("5000.00")], shop=OTHER_SHOP)
        headers = await helpers.api_headers(sessionmaker, SHOP)
        assert await api_stats(client, headers, [str(cid)]) == {str(cid): figures("0.00", 0, 0)}
        other = await helpers.api_headers(sessionmaker, OTHER_SHOP)
        assert await api_stats(client, other, [str(cid)]) == {str(cid): figures("5000.00", 1, 0)}


class TestRefunds:
    async def test_a_refund_is_stored_and_ltv_follows_current_total_price(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid = next_id()
        (order_id,) = await run_orders(sessionmaker, settings, cid, [Spec("1000.00")])
        refund_id = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of(
                    "refunds/create", refund_payload(refund_id, order_id, amount="300.00", created=at(30))
                )
            ],
        )
        stored = await helpers.refunds(sessionmaker)
        assert set(stored) == {refund_id}
        assert stored[refund_id]["order_id"] == order_id
        assert stored[refund_id]["amount"] == Decimal("300.00")
        assert stored[refund_id]["returned_quantity"] == 1
        # The refund alone does not change LTV ...
        assert await read_stats(sessionmaker, [cid]) == {cid: figures("1000.00", 1, 0)}
        # ... the order update that follows it (Shopify lowers current_total_price) does.
        updated = order_payload(
            order_id, customer_id=cid, total="1000.00", current_total="700.00", created=at(0), updated=at(31)
        )
        await helpers.apply(sessionmaker, settings, [Delivery.of("orders/updated", updated)])
        assert await read_stats(sessionmaker, [cid]) == {cid: figures("700.00", 1, 0)}
        headers = await helpers.api_headers(sessionmaker)
        assert await api_stats(client, headers, [str(cid)]) == {str(cid): figures("700.00", 1, 0)}

    async def test_a_refund_before_its_order_is_kept(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, order_id, refund_id = next_id(), next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("refunds/create", refund_payload(refund_id, order_id, amount="50.00")),
                Delivery.of("orders/create", order_payload(order_id, customer_id=cid, total="400.00")),
            ],
        )
        assert set(await helpers.refunds(sessionmaker)) == {refund_id}
        assert await read_stats(sessionmaker, [cid]) == {cid: figures("400.00", 1, 0)}

    async def test_a_duplicate_refund_is_stored_once(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, order_id, refund_id = next_id(), next_id(), next_id()
        payload = refund_payload(refund_id, order_id, amount="50.00")
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("orders/create", order_payload(order_id, customer_id=cid, total="400.00")),
                Delivery.of("refunds/create", payload),
                Delivery.of("refunds/create", payload),
            ],
        )
        assert len(await helpers.refunds(sessionmaker)) == 1
        assert await read_stats(sessionmaker, [cid]) == {cid: figures("400.00", 1, 0)}


class TestConcurrentDerivation:
    """Two transactions that change different orders of one customer at once (two workers, or
    two carrier updates through the API) must leave figures that include both changes."""

    async def test_the_later_transaction_sees_the_earlier_ones_order(
        self, database_url: str, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        if not database_url.startswith("postgresql"):
            pytest.skip("SQLite has one writer: its transactions never interleave")
        customer, first, second = next_id(), next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("customers/create", customer_payload(customer)),
                *(
                    Delivery.of(
                        "orders/create",
                        order_payload(oid, customer_id=customer, total="300.00", gateways=["cod"]),
                    )
                    for oid in (first, second)
                ),
            ],
        )
        async with session_scope(sessionmaker) as session:
            shop_id = await get_or_create_shop_id(session, SHOP)
            shop_settings = await get_shop_settings(session, shop_id)
        started = asyncio.Event()

        async def mark_second() -> None:
            async with session_scope(sessionmaker) as session:
                started.set()
                await orders.set_tracking_status(session, shop_id, second, "rto_initiated", shop_settings)

        async with session_scope(sessionmaker) as session:
            await orders.set_tracking_status(session, shop_id, first, "rto_initiated", shop_settings)
            later = asyncio.create_task(mark_second())
            await started.wait()
            await asyncio.sleep(0.5)  # the second is now blocked behind this uncommitted one
        await later

        async with session_scope(sessionmaker) as session:
            figures = await stats.read(session, shop_id, [customer], shop_settings)
        assert figures[customer].rto_count == 2
        assert figures[customer].order_count == 0
        assert figures[customer].ltv == Decimal("0.00")
