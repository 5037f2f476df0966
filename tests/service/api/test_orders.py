"""``GET /api/orders`` and ``POST /api/orders/enrich`` (docs/api.md), on SQLite and PostgreSQL; and
the problem+json answers of the API as a whole (404, 405, 422, 400, 500)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import Settings
from service.domain.tier_levels import BASE_TIER
from tests.support.api import (
    PROBLEM_JSON,
    Client,
    Json,
    all_pages,
    assert_problem,
    bearer,
    days_ago,
    delivered_fulfillment,
    get_json,
    new_api_key,
    now,
    order,
)
from tests.support.api import send as send_deliveries
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import COD, OTHER_SHOP, PREPAID, customer_payload, next_id, order_payload

pytestmark = pytest.mark.anyio

URL = "/api/orders"
ENRICH = "/api/orders/enrich"
ORDER_FIELDS = {
    "id",
    "name",
    "customerId",
    "email",
    "phone",
    "createdAt",
    "updatedAt",
    "processedAt",
    "cancelledAt",
    "financialStatus",
    "fulfillmentStatus",
    "currency",
    "totalAmount",
    "originalTotal",
    "paymentMethod",
    "trackingStatus",
    "deliveredAt",
    "tags",
    "test",
    "customerLtv",
    "customerOrderCount",
    "customerRtoCount",
    "customerTier",
}


def in_transit(order_id: int, at: Any) -> dict[str, Any]:
    return {**delivered_fulfillment(order_id, at), "shipment_status": "in_transit"}


@pytest.fixture
async def grid(sessionmaker: Sessionmaker, settings: Settings) -> dict[str, str]:
    """A: a1 delivered prepaid 1000, a2 COD 2000, a3 COD RTO 300, t1 test; B: b1 COD in transit
    500, b2 prepaid 700; g1 a guest order. a3, b1 and b2 share one created_at."""
    base = now()
    a, b = next_id(), next_id()
    o = {n: next_id() for n in ("a1", "a2", "a3", "b1", "b2", "g1", "t1")}
    tie = days_ago(3, base)
    await send_deliveries(
        sessionmaker,
        settings,
        [
            Delivery.of("customers/create", customer_payload(a, first_name="Ann", last_name="A")),
            Delivery.of("customers/create", customer_payload(b, first_name="Bob", last_name="B")),
            order(
                o["a1"],
                a,
                "1000.00",
                days_ago(5, base),
                fulfillments=[delivered_fulfillment(o["a1"], days_ago(4.5, base))],
                tags="vip, festive",
            ),
            order(o["a2"], a, "2000.00", days_ago(4, base), gateways=COD),
            order(o["a3"], a, "300.00", tie, gateways=COD, tags="rto"),
            order(o["b1"], b, "500.00", tie, gateways=COD, fulfillments=[in_transit(o["b1"], tie)]),
            order(o["b2"], b, "700.00", tie),
            order(o["g1"], None, "50.00", days_ago(1, base)),
            order(o["t1"], a, "99.00", days_ago(2, base), test=True),
        ],
    )
    await send_deliveries(
        sessionmaker,
        settings,
        [
            order(next_id(), a, "88888.00", days_ago(0.5, base)),
            order(next_id(), None, "1.00", days_ago(0.5, base), gateways=COD),
        ],
        shop=OTHER_SHOP,
    )
    return {"a": str(a), "b": str(b), **{k: str(v) for k, v in o.items()}}


def ids(items: list[Json]) -> list[str]:
    return [item["id"] for item in items]


NEWEST_FIRST = ["g1", "t1", "b2", "b1", "a3", "a2", "a1"]


class TestListOrders:
    @pytest.mark.parametrize("limit", [1, 2, 3, 250])
    async def test_newest_first_ties_by_id_across_pages(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str], limit: int
    ) -> None:
        key = await new_api_key(sessionmaker)

        pages = await all_pages(client, key, URL, limit=limit)

        assert [item["id"] for page in pages for item in page] == [grid[n] for n in NEWEST_FIRST]
        assert len(pages) == -(-7 // limit)

    async def test_items_are_enriched_orders(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)

        items = {item["id"]: item for item in (await get_json(client, key, URL))["items"]}

        assert all(set(item) == ORDER_FIELDS for item in items.values())
        a1 = items[grid["a1"]]
        assert (a1["customerId"], a1["totalAmount"], a1["paymentMethod"], a1["trackingStatus"]) == (
            grid["a"],
            "1000.00",
            "prepaid",
            "delivered",
        )
        assert a1["tags"] == ["vip", "festive"]
        assert a1["createdAt"].endswith("Z")
        assert a1["deliveredAt"].endswith("Z")
        # A: a1 + a2 (a3 is an RTO, t1 a test order); one COD RTO.
        for name in ("a1", "a2", "a3", "t1"):
            figures = {
                k: items[grid[name]][k]
                for k in ORDER_FIELDS
                if k.startswith("customer") and k != "customerId"
            }
            assert figures == {
                "customerLtv": "3000.00",
                "customerOrderCount": 2,
                "customerRtoCount": 1,
                "customerTier": "bronze",
            }
        assert items[grid["b1"]]["customerLtv"] == "1200.00"
        assert items[grid["b1"]]["trackingStatus"] == "in_transit"
        assert items[grid["a3"]]["trackingStatus"] == "rto_initiated"
        assert items[grid["t1"]]["test"] is True
        g1 = items[grid["g1"]]
        assert (g1["customerId"], g1["customerLtv"], g1["customerOrderCount"], g1["customerTier"]) == (
            None,
            None,
            None,
            None,
        )

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ({"customerId": "{a}"}, ["t1", "a3", "a2", "a1"]),
            ({"customerId": "gid://shopify/Customer/{a}"}, ["t1", "a3", "a2", "a1"]),
            ({"customerId": "{b}"}, ["b2", "b1"]),
            ({"customerId": "12345"}, []),
            ({"trackingStatus": "delivered"}, ["a1"]),
            ({"trackingStatus": "rto_initiated"}, ["a3"]),
            ({"trackingStatus": "in_transit"}, ["b1"]),
            ({"trackingStatus": "rto_delivered"}, []),
            ({"trackingStatus": "none"}, ["g1", "t1", "b2", "a2"]),
            ({"paymentMethod": "cod"}, ["b1", "a3", "a2"]),
            ({"paymentMethod": "prepaid"}, ["g1", "t1", "b2", "a1"]),
            ({"customerId": "{a}", "paymentMethod": "cod"}, ["a3", "a2"]),
            ({"trackingStatus": "none", "paymentMethod": "prepaid"}, ["g1", "t1", "b2"]),
            ({"customerId": "{b}", "trackingStatus": "none"}, ["b2"]),
        ],
    )
    async def test_filters(
        self,
        client: Client,
        sessionmaker: Sessionmaker,
        grid: dict[str, str],
        query: dict[str, str],
        expected: list[str],
    ) -> None:
        key = await new_api_key(sessionmaker)
        params = {k: v.format(**grid) for k, v in query.items()}

        pages = await all_pages(client, key, URL, limit=1, **params)

        assert [item["id"] for page in pages for item in page] == [grid[n] for n in expected]

    async def test_cursor_is_bound_to_the_filters(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        cursor = (await get_json(client, key, URL, paymentMethod="cod", limit=1))["nextCursor"]
        for query in (
            {"paymentMethod": "prepaid"},
            {},
            {"paymentMethod": "cod", "customerId": grid["a"]},
            {"paymentMethod": "cod", "trackingStatus": "none"},
        ):
            response = await client.get(
                URL, params={**query, "limit": 1, "cursor": cursor}, headers=bearer(key)
            )
            assert_problem(response, 400)
        customers_cursor = (await get_json(client, key, "/api/customers", limit=1))["nextCursor"]
        assert_problem(await client.get(URL, params={"cursor": customers_cursor}, headers=bearer(key)), 400)

    @pytest.mark.parametrize(
        "query",
        [
            {"limit": "0"},
            {"limit": "251"},
            {"limit": "5000000"},
            {"limit": "x"},
            {"trackingStatus": "bogus"},
            {"trackingStatus": "RTO_INITIATED"},
            {"trackingStatus": "null"},
            {"trackingStatus": "x" * 65},
            {"paymentMethod": "card"},
            {"paymentMethod": "COD"},
            {"customerId": "abc"},
            {"customerId": "gid://shopify/Order/5"},
            {"customerId": "-5"},
            {"customerId": "99999999999999999999"},
        ],
    )
    async def test_invalid_values_and_limits_are_422(
        self, client: Client, sessionmaker: Sessionmaker, query: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        problem = assert_problem(await client.get(URL, params=query, headers=bearer(key)), 422)
        assert problem["errors"]

    @pytest.mark.parametrize(
        "position",
        [
            ["2026-01-01T00:00:00+00:00"],
            ["2026-01-01T00:00:00", 5],
            ["soon", 5],
            [5, 5],
            ["2026-01-01T00:00:00Z", 2**63],
        ],
    )
    async def test_malformed_cursor_is_400(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str], position: list[Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        filters = {"customerId": None, "trackingStatus": None, "paymentMethod": None}
        raw = json.dumps({"k": "orders", "f": filters, "p": position}).encode()
        cursor = base64.urlsafe_b64encode(raw).decode()
        assert_problem(await client.get(URL, params={"cursor": cursor}, headers=bearer(key)), 400)

    async def test_orders_without_created_at_come_last(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        dated, undated_1, undated_2 = next_id(), next_id(), next_id()
        deliveries = [order(dated, None, "10.00", days_ago(1))]
        for oid in (undated_1, undated_2):
            payload = order_payload(oid, total="10.00", gateways=PREPAID)
            payload["created_at"] = None
            deliveries.append(Delivery.of("orders/create", payload))
        await send_deliveries(sessionmaker, settings, deliveries)
        key = await new_api_key(sessionmaker)

        pages = await all_pages(client, key, URL, limit=1)

        assert [item["id"] for page in pages for item in page] == [str(dated), str(undated_2), str(undated_1)]

    async def test_another_shops_orders_are_invisible(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        other_key = await new_api_key(sessionmaker, OTHER_SHOP)

        mine = ids((await get_json(client, key, URL))["items"])
        theirs = (await get_json(client, other_key, URL))["items"]

        assert sorted(mine) == sorted(grid[n] for n in NEWEST_FIRST)
        assert len(theirs) == 2
        assert not set(ids(theirs)) & set(mine)
        # The other shop's order of a customer with the same id carries that shop's figures.
        named = next(item for item in theirs if item["customerId"] == grid["a"])
        assert (named["customerLtv"], named["customerOrderCount"], named["customerTier"]) == (
            "88888.00",
            1,
            "platinum",
        )
        assert (await get_json(client, other_key, URL, customerId=grid["b"]))["items"] == []

    async def test_requires_credentials(self, client: Client) -> None:
        assert_problem(await client.get(URL), 401)
        assert_problem(await client.post(ENRICH, json={"orderIds": [1]}), 401)


class TestEnrich:
    async def test_in_the_order_asked_unknown_left_out(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        asked = [
            int(grid["b1"]),
            f"gid://shopify/Order/{grid['a1']}",
            grid["g1"],
            "123456789",
            int(grid["a1"]),
            f" {grid['t1']} ",
        ]

        response = await client.post(ENRICH, json={"orderIds": asked}, headers=bearer(key))

        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items"}
        assert ids(body["items"]) == [grid["b1"], grid["a1"], grid["g1"], grid["t1"]]
        assert all(set(item) == ORDER_FIELDS for item in body["items"])
        listed = {item["id"]: item for item in (await get_json(client, key, URL))["items"]}
        assert body["items"] == [listed[i] for i in ids(body["items"])]

    async def test_another_shops_orders_are_left_out(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str]
    ) -> None:
        other_key = await new_api_key(sessionmaker, OTHER_SHOP)
        response = await client.post(
            ENRICH, json={"orderIds": [grid[n] for n in NEWEST_FIRST]}, headers=bearer(other_key)
        )
        assert response.status_code == 200
        assert response.json() == {"items": []}

    async def test_a_customer_without_figures_reads_zeros_and_the_base_tier(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str]
    ) -> None:
        """Enrich joins the figures in its own statement: with no figures row it must answer as
        ``stats.read`` does (zeros, the base tier), and as the order list does."""
        async with sessionmaker() as session, session.begin():
            await session.execute(
                sa.text("DELETE FROM customer_stats WHERE customer_id = :c"), {"c": int(grid["a"])}
            )
        key = await new_api_key(sessionmaker)

        body = (
            await client.post(ENRICH, json={"orderIds": [grid["a1"], grid["g1"]]}, headers=bearer(key))
        ).json()

        a1, g1 = body["items"]
        figures = ("customerLtv", "customerOrderCount", "customerRtoCount", "customerTier")
        assert tuple(a1[f] for f in figures) == ("0.00", 0, 0, BASE_TIER)
        assert tuple(g1[f] for f in figures) == (None, None, None, None)
        listed = {item["id"]: item for item in (await get_json(client, key, URL))["items"]}
        assert [a1, g1] == [listed[grid["a1"]], listed[grid["g1"]]]

    async def test_new_thresholds_show_in_the_next_request(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str]
    ) -> None:
        """The shop's settings come with its credentials: a change is read by the next request."""
        key = await new_api_key(sessionmaker)
        before = (await client.post(ENRICH, json={"orderIds": [grid["a1"]]}, headers=bearer(key))).json()
        assert before["items"][0]["customerTier"] != "platinum"

        changed = await client.put(
            "/api/settings",
            json={"tierThresholds": {"platinum": "1.00", "gold": "0.50", "silver": "0.25"}},
            headers=bearer(key),
        )
        after = (await client.post(ENRICH, json={"orderIds": [grid["a1"]]}, headers=bearer(key))).json()

        assert changed.status_code == 200, changed.text
        assert after["items"][0]["customerTier"] == "platinum"

    async def test_limits(self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str]) -> None:
        key = await new_api_key(sessionmaker)
        thousand = [grid["a1"], *range(1, 1000)]

        ok = await client.post(ENRICH, json={"orderIds": thousand}, headers=bearer(key))
        too_many = await client.post(ENRICH, json={"orderIds": [*thousand, 1000]}, headers=bearer(key))
        empty = await client.post(ENRICH, json={"orderIds": []}, headers=bearer(key))

        assert ok.status_code == 200
        assert ids(ok.json()["items"]) == [grid["a1"]]
        assert_problem(too_many, 422)
        assert empty.json() == {"items": []}

    @pytest.mark.parametrize(
        "body",
        [
            {"orderIds": ["abc"]},
            {"orderIds": [-1]},
            {"orderIds": [0]},
            {"orderIds": [True]},
            {"orderIds": [1.5]},
            {"orderIds": [2**63]},
            {"orderIds": ["gid://shopify/Customer/5"]},
            {"orderIds": [None]},
            {"orderIds": "1,2"},
            {"orderIds": {"a": 1}},
            {"ids": [1]},
            {},
            [1, 2],
        ],
    )
    async def test_invalid_bodies_are_422(
        self, client: Client, sessionmaker: Sessionmaker, body: Any
    ) -> None:
        key = await new_api_key(sessionmaker)
        problem = assert_problem(await client.post(ENRICH, json=body, headers=bearer(key)), 422)
        assert problem["errors"]

    async def test_malformed_json_is_400(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.post(
            ENRICH, content=b'{"orderIds": [1,', headers={**bearer(key), "Content-Type": "application/json"}
        )
        assert_problem(response, 400)

    @pytest.mark.parametrize(
        ("method", "path"), [("POST", ENRICH), ("POST", "/api/stats/customers"), ("PUT", "/api/settings")]
    )
    async def test_an_empty_body_is_400_saying_so(
        self, client: Client, sessionmaker: Sessionmaker, method: str, path: str
    ) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.request(
            method, path, content=b"", headers={**bearer(key), "Content-Type": "application/json"}
        )
        problem = assert_problem(response, 400)
        assert problem["detail"] == "the request body is empty: send a JSON document"


class TestTrackingStatusByGid:
    async def test_put_accepts_a_gid_path(
        self, client: Client, sessionmaker: Sessionmaker, grid: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.put(
            f"{URL}/gid://shopify/Order/{grid['b1']}/tracking-status",
            json={"status": "rto_initiated"},
            headers=bearer(key),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["id"], body["trackingStatus"], body["customerRtoCount"]) == (
            grid["b1"],
            "rto_initiated",
            1,
        )
        # B's LTV loses the 500.00 COD order that came back.
        assert body["customerLtv"] == "700.00"


class TestProblemDetails:
    async def test_unknown_path_is_404(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        for path in ("/api/nope", "/api/customers/1/nope", "/api/reports/nope", "/nope"):
            assert_problem(await client.get(path, headers=bearer(key)), 404)

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("DELETE", "/api/customers"),
            ("POST", "/api/customers"),
            ("PUT", "/api/customers/1"),
            ("POST", "/api/orders"),
            ("GET", "/api/orders/enrich"),
            ("POST", "/api/reports/overview"),
            ("DELETE", "/api/reports/top-customers"),
        ],
    )
    async def test_wrong_method_is_405(
        self, client: Client, sessionmaker: Sessionmaker, method: str, path: str
    ) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.request(method, path, headers=bearer(key))
        assert_problem(response, 405)

    async def test_unexpected_error_is_500_problem(self, settings: Settings) -> None:
        @get("/api/boom", sync_to_thread=False)
        def boom() -> None:
            raise RuntimeError("secret internals")

        app: Litestar = create_app(settings)
        app.register(boom)
        async with AsyncTestClient(app=app) as boom_client:
            response = await boom_client.get("/api/boom")
        problem = assert_problem(response, 500)
        assert "secret" not in response.text
        assert problem["title"] == "Internal Server Error"

    @pytest.mark.parametrize(
        ("url", "fields"),
        [
            ("/api/customers?limit=999", ["limit"]),
            ("/api/customers?limit=0&sort=x", ["sort", "limit"]),
            ("/api/orders?paymentMethod=card", ["paymentMethod"]),
            ("/api/orders?customerId=" + "1" * 65, ["customerId"]),
            ("/api/orders?trackingStatus=" + "x" * 65, ["trackingStatus"]),
            ("/api/reports/top-customers?from=" + "x" * 65, ["from"]),
        ],
    )
    async def test_validation_errors_name_the_field_as_sent(
        self, client: Client, sessionmaker: Sessionmaker, url: str, fields: list[str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.get(url, headers=bearer(key))
        problem = assert_problem(response, 422)
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert sorted(e["field"] for e in problem["errors"]) == sorted(fields)
        assert all(e["message"] for e in problem["errors"])

    async def test_body_errors_name_the_field(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.post(ENRICH, json={"orderIds": list(range(1, 1002))}, headers=bearer(key))
        problem = assert_problem(response, 422)
        assert [e["field"] for e in problem["errors"]] == ["orderIds"]
        response = await client.post(ENRICH, json={"orderIds": [5, "abc"]}, headers=bearer(key))
        assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["orderIds[1]"]
