"""``/api/reports/top-customers`` and ``/api/reports/overview`` (docs/api.md), on SQLite and PostgreSQL.

Orders arrive as deliveries applied by the real worker; expected figures are worked out by hand
in each fixture's docstring.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.config import Settings
from tests.support import deliveries as helpers
from tests.support.api import (
    Client,
    Json,
    assert_problem,
    bearer,
    days_ago,
    delivered_fulfillment,
    get_json,
    new_api_key,
    now,
    order,
    parse_time,
    send,
    zulu,
)
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import COD, OTHER_SHOP, customer_payload, line_item, next_id

pytestmark = pytest.mark.anyio

TOP = "/api/reports/top-customers"
OVERVIEW = "/api/reports/overview"
THRESHOLDS = {"tierThresholds": {"platinum": "5000.00", "gold": "4000.00", "silver": "3000.00"}}
TOP_FIELDS = {
    "id",
    "email",
    "firstName",
    "lastName",
    "periodLtv",
    "periodOrderCount",
    "tier",
    "ltv",
    "lastOrderAt",
    "topProducts",
}


def customer(cid: int, first: str) -> Delivery:
    return Delivery.of(
        "customers/create",
        customer_payload(cid, first_name=first, last_name="Test", email=f"{first.lower()}@x.io"),
    )


def product_line(product: int, title: str, quantity: int, price: str) -> dict[str, Any]:
    return line_item(
        next_id(), product_id=product, variant_id=next_id(), title=title, quantity=quantity, price=price
    )


@pytest.fixture
async def ranking(sessionmaker: Sessionmaker, settings: Settings) -> dict[str, Any]:
    """Four buyers (thresholds: silver 3000, gold 4000, platinum 5000).

    A: 1000 at -10d (P1 600, P2 2 x 200), 2000 at -40d (P3), 500 at -100d (P1 400, P4 100);
       a cancelled 9999 at -5d and a COD RTO 800 at -6d count for nothing but lastOrderAt.
    B: 1500 at -20d, 3000 at -400d.    C: 2500 at -29d, 2500 at -200d.    D: 1000 at -10d.
    E has only a test order; a guest order has no customer; F never ordered.

    30d: C 2500, B 1500, D 1000, A 1000 (tie: higher id first).   90d: A 3000, C 2500, B 1500,
    D 1000.   365d: C 5000, A 3500, B 1500, D 1000.   all: C 5000, B 4500, A 3500, D 1000.
    """
    await helpers.set_shop_settings(sessionmaker, THRESHOLDS)
    base = now()
    names = ("A", "B", "C", "D", "E", "F")
    c = {name: next_id() for name in names}
    p1, p2, p3, p4 = (next_id() for _ in range(4))
    t = {"b1": days_ago(20, base), "c1": days_ago(29, base)}
    deliveries = [customer(cid, name) for name, cid in c.items()]
    deliveries += [
        order(
            next_id(),
            c["A"],
            "1000.00",
            days_ago(10, base),
            lines=[product_line(p1, "Kurta", 1, "600.00"), product_line(p2, "Scarf", 2, "200.00")],
        ),
        order(
            next_id(), c["A"], "2000.00", days_ago(40, base), lines=[product_line(p3, "Saree", 1, "2000.00")]
        ),
        order(
            next_id(),
            c["A"],
            "500.00",
            days_ago(100, base),
            lines=[product_line(p1, "Kurta", 1, "400.00"), product_line(p4, "Pin", 1, "100.00")],
        ),
        order(next_id(), c["A"], "9999.00", days_ago(5, base), cancelled_at=days_ago(5, base).isoformat()),
        order(next_id(), c["A"], "800.00", days_ago(6, base), gateways=COD, tags="rto"),
        order(next_id(), c["B"], "1500.00", t["b1"]),
        order(next_id(), c["B"], "3000.00", days_ago(400, base)),
        order(next_id(), c["C"], "2500.00", t["c1"]),
        order(next_id(), c["C"], "2500.00", days_ago(200, base)),
        order(next_id(), c["D"], "1000.00", days_ago(10, base)),
        order(next_id(), c["E"], "7000.00", days_ago(1, base), test=True),
        order(next_id(), None, "8000.00", days_ago(1, base)),
    ]
    await send(sessionmaker, settings, deliveries)
    await send(
        sessionmaker,
        settings,
        [customer(c["A"], "Elsewhere"), order(next_id(), c["A"], "99999.00", days_ago(1, base))],
        shop=OTHER_SHOP,
    )
    return {
        "c": {k: str(v) for k, v in c.items()},
        "p": [str(p) for p in (p1, p2, p3, p4)],
        "t": t,
        "base": base,
    }


def ranked(body: Json, c: dict[str, str]) -> list[tuple[str, str, int]]:
    by_id = {v: k for k, v in c.items()}
    return [(by_id[item["id"]], item["periodLtv"], item["periodOrderCount"]) for item in body["items"]]


class TestTopCustomers:
    @pytest.mark.parametrize(
        ("period", "expected"),
        [
            ("30d", [("C", "2500.00", 1), ("B", "1500.00", 1), ("D", "1000.00", 1), ("A", "1000.00", 1)]),
            ("90d", [("A", "3000.00", 2), ("C", "2500.00", 1), ("B", "1500.00", 1), ("D", "1000.00", 1)]),
            ("365d", [("C", "5000.00", 2), ("A", "3500.00", 3), ("B", "1500.00", 1), ("D", "1000.00", 1)]),
            ("all", [("C", "5000.00", 2), ("B", "4500.00", 2), ("A", "3500.00", 3), ("D", "1000.00", 1)]),
            (None, [("C", "5000.00", 2), ("B", "4500.00", 2), ("A", "3500.00", 3), ("D", "1000.00", 1)]),
        ],
    )
    async def test_periods(
        self,
        client: Client,
        sessionmaker: Sessionmaker,
        ranking: dict[str, Any],
        period: str | None,
        expected: list[tuple[str, str, int]],
    ) -> None:
        key = await new_api_key(sessionmaker)
        params = {"period": period} if period else {}

        body = await get_json(client, key, TOP, **params)

        assert ranked(body, ranking["c"]) == expected
        assert set(body) == {"items", "nextCursor", "period", "from", "to"}
        assert (body["nextCursor"], body["period"], body["to"]) == (None, period or "all", None)
        if period in ("30d", "90d", "365d"):
            days = int(period[:-1])
            start = parse_time(body["from"])
            assert timedelta(0) <= start - (ranking["base"] - timedelta(days=days)) < timedelta(minutes=5)
        else:
            assert body["from"] is None

    async def test_item_fields_live_tier_and_top_products(
        self, client: Client, sessionmaker: Sessionmaker, ranking: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        c, (p1, p2, p3, _) = ranking["c"], ranking["p"]
        base = ranking["base"]

        items = {i["id"]: i for i in (await get_json(client, key, TOP, period="30d"))["items"]}
        everything = {i["id"]: i for i in (await get_json(client, key, TOP, period="all"))["items"]}

        a = items[c["A"]]
        assert set(a) == TOP_FIELDS
        assert {k: a[k] for k in ("email", "firstName", "lastName", "tier", "ltv")} == {
            "email": "a@x.io",
            "firstName": "A",
            "lastName": "Test",
            "tier": "silver",  # live, all-time: 3500.00
            "ltv": "3500.00",
        }
        assert a["lastOrderAt"] == zulu(days_ago(5, base))  # the cancelled order
        assert a["topProducts"] == [
            {"productId": p1, "title": "Kurta", "quantity": 1, "spend": "600.00"},
            {"productId": p2, "title": "Scarf", "quantity": 2, "spend": "400.00"},
        ]
        assert everything[c["A"]]["topProducts"] == [
            {"productId": p3, "title": "Saree", "quantity": 1, "spend": "2000.00"},
            {"productId": p1, "title": "Kurta", "quantity": 2, "spend": "1000.00"},
            {"productId": p2, "title": "Scarf", "quantity": 2, "spend": "400.00"},
        ]
        assert [(everything[c[n]]["tier"], everything[c[n]]["ltv"]) for n in "CBAD"] == [
            ("platinum", "5000.00"),
            ("gold", "4500.00"),
            ("silver", "3500.00"),
            ("bronze", "1000.00"),
        ]
        b = everything[c["B"]]
        assert b["topProducts"] == [
            {"productId": "9100000000001", "title": "Cotton Kurta", "quantity": 2, "spend": "4500.00"}
        ]
        assert items[c["B"]]["ltv"] == "4500.00"
        assert items[c["B"]]["periodLtv"] == "1500.00"

    async def test_from_is_inclusive_and_to_exclusive(
        self, client: Client, sessionmaker: Sessionmaker, ranking: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        c, t = ranking["c"], ranking["t"]
        start, end = zulu(t["c1"]), zulu(t["b1"])

        exact = await get_json(client, key, TOP, **{"from": start, "to": end})
        wider = await get_json(
            client, key, TOP, **{"from": start, "to": zulu(t["b1"] + timedelta(microseconds=1))}
        )
        later = await get_json(
            client, key, TOP, **{"from": zulu(t["c1"] + timedelta(microseconds=1)), "to": end}
        )

        assert ranked(exact, c) == [("C", "2500.00", 1)]
        assert (exact["period"], exact["from"], exact["to"]) == ("custom", start, end)
        assert ranked(wider, c) == [("C", "2500.00", 1), ("B", "1500.00", 1)]
        assert ranked(later, c) == []

    async def test_from_and_to_override_the_period_and_may_stand_alone(
        self, client: Client, sessionmaker: Sessionmaker, ranking: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        c, base = ranking["c"], ranking["base"]

        since = await get_json(client, key, TOP, period="30d", **{"from": zulu(days_ago(45, base))})
        until = await get_json(client, key, TOP, to=zulu(days_ago(150, base)))

        assert ranked(since, c) == [
            ("A", "3000.00", 2),
            ("C", "2500.00", 1),
            ("B", "1500.00", 1),
            ("D", "1000.00", 1),
        ]
        assert since["to"] is None
        assert ranked(until, c) == [("B", "3000.00", 1), ("C", "2500.00", 1)]
        assert until["from"] is None

    async def test_limit(self, client: Client, sessionmaker: Sessionmaker, ranking: dict[str, Any]) -> None:
        key = await new_api_key(sessionmaker)
        body = await get_json(client, key, TOP, limit=2)
        assert ranked(body, ranking["c"]) == [("C", "5000.00", 2), ("B", "4500.00", 2)]

    async def test_default_limit_is_ten(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cids = [next_id() for _ in range(12)]
        await send(
            sessionmaker,
            settings,
            [order(next_id(), cid, f"{100 + i}.00", days_ago(1)) for i, cid in enumerate(cids)],
        )
        key = await new_api_key(sessionmaker)

        for period in ("all", "30d"):
            items = (await get_json(client, key, TOP, period=period))["items"]
            assert [i["id"] for i in items] == [str(cid) for cid in reversed(cids)][:10]
            assert items[0]["periodLtv"] == "111.00"

    async def test_dates_are_midnight_utc_and_offsets_are_converted(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        inside, before, after = next_id(), next_id(), next_id()
        midnight = datetime(2025, 6, 1, tzinfo=UTC)
        await send(
            sessionmaker,
            settings,
            [
                order(next_id(), inside, "10.00", midnight),
                order(next_id(), before, "20.00", midnight - timedelta(microseconds=1)),
                order(next_id(), after, "30.00", midnight + timedelta(days=1)),
            ],
        )
        key = await new_api_key(sessionmaker)

        for start, end in (
            ("2025-06-01", "2025-06-02"),
            ("2025-06-01T05:30:00+05:30", "2025-06-01T19:00:00-05:00"),
            ("2025-06-01T00:00:00", "2025-06-02T00:00:00Z"),
        ):
            body = await get_json(client, key, TOP, **{"from": start, "to": end})
            assert [i["id"] for i in body["items"]] == [str(inside)], (start, end)
            assert body["from"] == "2025-06-01T00:00:00Z"
            assert body["to"] == "2025-06-02T00:00:00Z"

    @pytest.mark.parametrize(
        "query",
        [
            {"period": "7d"},
            {"period": "ALL"},
            {"period": "30d; DROP TABLE orders"},
            {"from": "2025-06-02", "to": "2025-06-01"},
            {"from": "2025-06-01", "to": "2025-06-01"},
            {"from": "2025-06-01T10:00:00+05:30", "to": "2025-06-01T04:30:00Z"},
            {"from": "yesterday"},
            {"to": "2025-13-01"},
            {"from": "2025-06-01T25:00:00"},
            {"from": "9999-12-31T23:59:59-14:00"},
            {"from": "x" * 65},
            {"limit": "0"},
            {"limit": "251"},
            {"limit": "100000000"},
            {"limit": "ten"},
        ],
    )
    async def test_invalid_parameters_are_422(
        self, client: Client, sessionmaker: Sessionmaker, query: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        problem = assert_problem(await client.get(TOP, params=query, headers=bearer(key)), 422)
        assert problem["errors"]

    async def test_limit_250_and_an_empty_shop(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        body = await get_json(client, key, TOP, limit=250)
        assert body == {"items": [], "nextCursor": None, "period": "all", "from": None, "to": None}

    async def test_another_shops_figures_are_invisible(
        self, client: Client, sessionmaker: Sessionmaker, ranking: dict[str, Any]
    ) -> None:
        other_key = await new_api_key(sessionmaker, OTHER_SHOP)
        key = await new_api_key(sessionmaker)

        theirs = (await get_json(client, other_key, TOP))["items"]
        mine = (await get_json(client, key, TOP, period="30d"))["items"]

        assert [(i["id"], i["firstName"], i["periodLtv"], i["tier"]) for i in theirs] == [
            (ranking["c"]["A"], "Elsewhere", "99999.00", "platinum")
        ]
        a = next(i for i in mine if i["id"] == ranking["c"]["A"])
        assert (a["firstName"], a["ltv"]) == ("A", "3500.00")

    async def test_requires_credentials(self, client: Client) -> None:
        assert_problem(await client.get(TOP), 401)
        assert_problem(await client.get(OVERVIEW), 401)


class TestOverview:
    @pytest.fixture
    async def shop_data(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        """Thresholds: silver 3000, gold 4000, platinum 5000.

        P: 3000 COD delivered (-10d) + 3000 prepaid (-100d) = 6000 platinum, 2 orders; a test
           order (-1d) is ignored.
        G: 4000 prepaid (-95d): gold, at risk.
        S: 3000 COD (-3d) + a 500 COD RTO (-2d): silver, 1 order.
        N: 200 prepaid (-89.5d): bronze, not yet at risk.
        B2: 50 prepaid (-200d) + 50 COD (-120d): bronze, 2 orders, at risk.
        B3: a cancelled 900 COD (-1d): bronze, no eligible order.
        B1: no orders: bronze.   A guest order: 1000 prepaid (-1d).

        Customers 7: platinum 1, gold 1, silver 1, bronze 4. Buyers (>= 1 eligible order): P, G,
        S, N, B2; repeat buyers: P, B2 -> 2/5 = 0.4. At risk: G, B2.
        Orders (not test) 10, COD 5 (P, S x2, B2, B3) -> 0.5; COD RTO 1 -> 1/5 = 0.2.
        Eligible 8 orders worth 14300.00 -> AOV 1787.50.
        """
        await helpers.set_shop_settings(sessionmaker, THRESHOLDS)
        base = now()
        p, g, s, n, b1, b2, b3 = (next_id() for _ in range(7))
        delivered = next_id()
        await send(
            sessionmaker,
            settings,
            [
                customer(b1, "Bee"),
                order(
                    delivered,
                    p,
                    "3000.00",
                    days_ago(10, base),
                    gateways=COD,
                    fulfillments=[delivered_fulfillment(delivered, days_ago(9, base))],
                ),
                order(next_id(), p, "3000.00", days_ago(100, base)),
                order(next_id(), p, "777.00", days_ago(1, base), gateways=COD, test=True),
                order(next_id(), g, "4000.00", days_ago(95, base)),
                order(next_id(), s, "3000.00", days_ago(3, base), gateways=COD),
                order(next_id(), s, "500.00", days_ago(2, base), gateways=COD, tags="rto-delivered"),
                order(next_id(), n, "200.00", days_ago(89.5, base)),
                order(next_id(), b2, "50.00", days_ago(200, base)),
                order(next_id(), b2, "50.00", days_ago(120, base), gateways=COD),
                order(
                    next_id(),
                    b3,
                    "900.00",
                    days_ago(1, base),
                    gateways=COD,
                    cancelled_at=days_ago(1, base).isoformat(),
                ),
                order(next_id(), None, "1000.00", days_ago(1, base)),
            ],
        )
        await send(
            sessionmaker,
            settings,
            [order(next_id(), next_id(), "99999.00", days_ago(200, base), gateways=COD, tags="rto")],
            shop=OTHER_SHOP,
        )

    async def test_figures(self, client: Client, sessionmaker: Sessionmaker, shop_data: None) -> None:
        key = await new_api_key(sessionmaker)

        body = await get_json(client, key, OVERVIEW)

        assert body == {
            "customerCount": 7,
            "tiers": {"platinum": 1, "gold": 1, "silver": 1, "bronze": 4},
            "repeatPurchaseRate": 0.4,
            "aov": "1787.50",
            "codShare": 0.5,
            "codRtoRate": 0.2,
            "customersAtRisk": 2,
        }

    async def test_other_shop_sees_only_its_own(
        self, client: Client, sessionmaker: Sessionmaker, shop_data: None
    ) -> None:
        key = await new_api_key(sessionmaker, OTHER_SHOP)
        assert await get_json(client, key, OVERVIEW) == {
            "customerCount": 1,
            "tiers": {"platinum": 0, "gold": 0, "silver": 0, "bronze": 1},
            "repeatPurchaseRate": 0,
            "aov": "0.00",
            "codShare": 1,
            "codRtoRate": 1,
            "customersAtRisk": 1,
        }

    async def test_empty_shop(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        assert await get_json(client, key, OVERVIEW) == {
            "customerCount": 0,
            "tiers": {"platinum": 0, "gold": 0, "silver": 0, "bronze": 0},
            "repeatPurchaseRate": 0,
            "aov": "0.00",
            "codShare": 0,
            "codRtoRate": 0,
            "customersAtRisk": 0,
        }

    async def test_test_orders_count_when_the_shop_includes_them(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid = next_id()
        await helpers.set_shop_settings(sessionmaker, {"includeTestOrders": True})
        await send(
            sessionmaker,
            settings,
            [
                order(next_id(), cid, "300.00", days_ago(1), test=True, gateways=COD),
                order(next_id(), cid, "100.00", days_ago(2)),
            ],
        )
        key = await new_api_key(sessionmaker)

        body = await get_json(client, key, OVERVIEW)

        assert (body["aov"], body["codShare"], body["repeatPurchaseRate"]) == ("200.00", 0.5, 1)
