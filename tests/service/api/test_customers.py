"""``/api/customers`` (docs/api.md), on SQLite and PostgreSQL.

Customers and orders arrive as deliveries applied by the real worker; every figure checked here
is computed by hand from those payloads.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from service.config import Settings
from tests.support import deliveries as helpers
from tests.support.api import (
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
    parse_time,
    refund,
    send,
    zulu,
)
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import COD, OTHER_SHOP, address, customer_payload, iso, line_item, next_id

pytestmark = pytest.mark.anyio

URL = "/api/customers"
SUMMARY_FIELDS = {
    "id",
    "email",
    "phone",
    "firstName",
    "lastName",
    "tier",
    "ltv",
    "orderCount",
    "rtoCount",
    "lastOrderAt",
}
PROFILE_FIELDS = SUMMARY_FIELDS | {
    "tierOfRecord",
    "tierHistory",
    "metrics",
    "affinity",
    "recentOrders",
    "addressCount",
}
ADDRESS_FIELDS = {
    "firstName",
    "lastName",
    "company",
    "address1",
    "address2",
    "city",
    "province",
    "provinceCode",
    "country",
    "countryCode",
    "zip",
    "phone",
    "timesUsed",
    "lastUsedAt",
    "isDefault",
}
LOW_THRESHOLDS = {"tierThresholds": {"platinum": "3000.00", "gold": "2000.00", "silver": "1000.00"}}


def customer(cid: int, first: str | None, last: str | None, **overrides: Any) -> Delivery:
    overrides.setdefault("email", f"c{cid}@example.com")
    overrides.setdefault("phone", None)
    return Delivery.of(
        "customers/create", customer_payload(cid, first_name=first, last_name=last, **overrides)
    )


def ids(items: list[Json]) -> list[str]:
    return [item["id"] for item in items]


# --- the list --------------------------------------------------------------------------------


@pytest.fixture
async def ties(sessionmaker: Sessionmaker, settings: Settings) -> dict[str, Any]:
    """Eight customers with equal LTVs, order counts, last-order times and names (see each sort)."""
    base = now()
    d3, d5, d10, d20, d30, d40 = (days_ago(d, base) for d in (3, 5, 10, 20, 30, 40))
    c = [next_id() for _ in range(8)]
    deliveries = [
        customer(c[0], "Asha", "Rao"),
        customer(c[1], "bela", "Shah"),
        customer(c[2], "Chandra", "Iyer"),
        customer(c[3], "asha", "rao"),
        customer(c[4], None, None),
        customer(c[5], "Dev", None),
        customer(c[6], "Esha", "Patel"),
        customer(c[7], None, None),
        order(next_id(), c[0], "2000.00", d10),
        order(next_id(), c[0], "1000.00", d5),
        order(next_id(), c[1], "1000.00", d5),
        order(next_id(), c[2], "1000.00", d20),
        order(next_id(), c[3], "1000.00", d5),
        order(next_id(), c[4], "500.00", d30),
        order(next_id(), c[4], "500.00", d40),
        order(next_id(), c[6], "700.00", d3, cancelled_at=d3.isoformat()),
    ]
    await send(sessionmaker, settings, deliveries)
    return {"c": [str(i) for i in c], "d3": d3, "d5": d5, "d20": d20, "d30": d30}


class TestListFields:
    async def test_summary_fields_and_figures(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid = next_id()
        rto_order, base = next_id(), now()
        await send(
            sessionmaker,
            settings,
            [
                customer(cid, "Meera", "Nair", email="meera@example.com", phone="+919811100000"),
                order(next_id(), cid, "12000.00", days_ago(9, base)),
                order(rto_order, cid, "500.00", days_ago(8, base), gateways=COD, tags="RTO"),
                order(
                    next_id(), cid, "999.00", days_ago(7, base), cancelled_at=days_ago(6, base).isoformat()
                ),
                order(next_id(), cid, "700.00", days_ago(1, base), test=True),
                order(next_id(), cid, "0.00", days_ago(10, base)),
            ],
        )
        key = await new_api_key(sessionmaker)

        body = await get_json(client, key, URL)

        assert body["nextCursor"] is None
        (item,) = body["items"]
        assert set(item) == SUMMARY_FIELDS
        assert item == {
            "id": str(cid),
            "email": "meera@example.com",
            "phone": "+919811100000",
            "firstName": "Meera",
            "lastName": "Nair",
            "tier": "silver",
            "ltv": "12000.00",
            "orderCount": 1,
            "rtoCount": 1,
            # The cancelled order is the latest that is neither deleted nor test.
            "lastOrderAt": zulu(days_ago(7, base)),
        }

    async def test_empty_shop(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        assert await get_json(client, key, URL) == {"items": [], "nextCursor": None}

    async def test_deleted_customer_is_not_listed(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        kept, gone = next_id(), next_id()
        await send(
            sessionmaker,
            settings,
            [
                customer(kept, "Kept", "One"),
                customer(gone, "Gone", "Two"),
                Delivery.of("customers/delete", {"id": gone}),
            ],
        )
        key = await new_api_key(sessionmaker)
        assert ids((await get_json(client, key, URL))["items"]) == [str(kept)]
        assert_problem(await client.get(f"{URL}/{gone}", headers=bearer(key)), 404)


class TestPhoneFallback:
    async def test_order_then_shipping_then_billing_phone(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        own, shipping, billing, older, none = (next_id() for _ in range(5))
        base = now()
        no_phone = address(phone=None)
        await send(
            sessionmaker,
            settings,
            [
                customer(own, "Own", "Phone", phone="+911000000001"),
                order(next_id(), own, "10.00", days_ago(1, base), phone="+912000000000"),
                # Latest order: its own phone wins over its addresses; the older order's is ignored.
                order(next_id(), shipping, "10.00", days_ago(5, base), phone="+913000000000"),
                order(
                    next_id(),
                    shipping,
                    "10.00",
                    days_ago(1, base),
                    phone=None,
                    shipping_address=address(phone="+91 3111 000000"),
                    billing_address=address(phone="+913222000000"),
                ),
                order(
                    next_id(),
                    billing,
                    "10.00",
                    days_ago(1, base),
                    phone="  ",
                    shipping_address=no_phone,
                    billing_address=address(phone="+914000000000"),
                ),
                # The latest order carries no phone at all: the latest order that does.
                order(next_id(), older, "10.00", days_ago(9, base), phone="+915000000000"),
                order(
                    next_id(),
                    older,
                    "10.00",
                    days_ago(2, base),
                    phone=None,
                    shipping_address=no_phone,
                    billing_address=None,
                ),
                order(
                    next_id(),
                    none,
                    "10.00",
                    days_ago(2, base),
                    shipping_address=no_phone,
                    billing_address=None,
                ),
            ],
        )
        key = await new_api_key(sessionmaker)

        items = (await get_json(client, key, URL))["items"]
        phones = {item["id"]: item["phone"] for item in items}

        assert phones == {
            str(own): "+911000000001",
            str(shipping): "+91 3111 000000",
            str(billing): "+914000000000",
            str(older): "+915000000000",
            str(none): None,
        }
        profile = await get_json(client, key, f"{URL}/{shipping}")
        assert profile["phone"] == "+91 3111 000000"

    async def test_only_orders_that_count_give_a_phone(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        """A test order's phone is not the customer's (docs/domain.md): unless test orders count."""
        cid = next_id()
        base = now()
        await send(
            sessionmaker,
            settings,
            [
                order(next_id(), cid, "10.00", days_ago(5, base), phone="+916000000000"),
                order(next_id(), cid, "10.00", days_ago(1, base), phone="+917000000000", test=True),
            ],
        )
        key = await new_api_key(sessionmaker)
        assert (await get_json(client, key, f"{URL}/{cid}"))["phone"] == "+916000000000"
        items = (await get_json(client, key, URL))["items"]
        assert {item["id"]: item["phone"] for item in items}[str(cid)] == "+916000000000"
        response = await client.put("/api/settings", json={"includeTestOrders": True}, headers=bearer(key))
        assert response.status_code == 200, response.text
        assert (await get_json(client, key, f"{URL}/{cid}"))["phone"] == "+917000000000"


class TestSorting:
    @pytest.mark.parametrize("limit", [1, 2, 3, 250])
    @pytest.mark.parametrize(
        ("sort", "expected"),
        [
            # ltv desc, ties by id desc: 3000; 1000 (4 of them); 0 (3).
            (None, [0, 4, 3, 2, 1, 7, 6, 5]),
            ("ltv", [0, 4, 3, 2, 1, 7, 6, 5]),
            # orderCount desc: 2 (2 of them); 1 (3); 0 (3).
            ("orderCount", [4, 0, 3, 2, 1, 7, 6, 5]),
            # lastOrderAt desc: d3; d5 (3 of them); d20; d30; never ordered (null) last.
            ("lastOrderAt", [6, 3, 1, 0, 2, 4, 7, 5]),
            # name asc, case-insensitive, ties by id asc; unnamed last.
            ("name", [0, 3, 1, 2, 5, 6, 4, 7]),
        ],
    )
    async def test_pages_follow_the_sort_without_duplicates_or_gaps(
        self,
        client: Client,
        sessionmaker: Sessionmaker,
        ties: dict[str, Any],
        sort: str | None,
        expected: list[int],
        limit: int,
    ) -> None:
        key = await new_api_key(sessionmaker)
        params: dict[str, Any] = {"limit": limit}
        if sort is not None:
            params["sort"] = sort

        pages = await all_pages(client, key, URL, **params)

        flat = [item["id"] for page in pages for item in page]
        assert flat == [ties["c"][i] for i in expected]
        assert [len(page) for page in pages[:-1]] == [limit] * (len(pages) - 1)
        assert len(pages) == max(1, -(-8 // limit))

    async def test_figures_behind_the_sorts(
        self, client: Client, sessionmaker: Sessionmaker, ties: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        items = {item["id"]: item for item in (await get_json(client, key, URL))["items"]}
        c = ties["c"]
        assert [items[i]["ltv"] for i in c] == [
            "3000.00",
            "1000.00",
            "1000.00",
            "1000.00",
            "1000.00",
            "0.00",
            "0.00",
            "0.00",
        ]
        assert [items[i]["orderCount"] for i in c] == [2, 1, 1, 1, 2, 0, 0, 0]
        d3, d5, d20, d30 = (zulu(ties[k]) for k in ("d3", "d5", "d20", "d30"))
        assert [items[i]["lastOrderAt"] for i in c] == [d5, d5, d20, d5, d30, None, d3, None]
        assert {items[i]["tier"] for i in c} == {"bronze"}

    async def test_cursor_keeps_working_when_the_data_moves(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings, ties: dict[str, Any]
    ) -> None:
        """A keyset cursor is a position, not an offset: a customer moving above it is not
        repeated and nothing below it is skipped."""
        key = await new_api_key(sessionmaker)
        first = await get_json(client, key, URL, limit=3)
        assert ids(first["items"]) == [ties["c"][i] for i in (0, 4, 3)]
        # c[7] (LTV 0, below the cursor) jumps to the top.
        await send(sessionmaker, settings, [order(next_id(), int(ties["c"][7]), "9000.00", now())])

        rest = await all_pages(client, key, URL, limit=3, cursor=first["nextCursor"])

        assert [item["id"] for page in rest for item in page] == [ties["c"][i] for i in (2, 1, 6, 5)]


class TestTierFilter:
    @pytest.fixture
    async def tiered(self, sessionmaker: Sessionmaker, settings: Settings) -> dict[str, str]:
        await helpers.set_shop_settings(sessionmaker, LOW_THRESHOLDS)
        names = ["platinum", "gold", "gold_edge", "silver", "bronze", "zero"]
        cids = {name: next_id() for name in names}
        totals = {
            "platinum": "3000.00",
            "gold": "2500.00",
            "gold_edge": "2000.00",
            "silver": "1999.99",
            "bronze": "999.99",
        }
        deliveries = [customer(cid, name.title(), "Test") for name, cid in cids.items()]
        deliveries += [order(next_id(), cids[name], total, now()) for name, total in totals.items()]
        await send(sessionmaker, settings, deliveries)
        return {name: str(cid) for name, cid in cids.items()}

    @pytest.mark.parametrize(
        ("tier", "expected"),
        [
            ("platinum", ["platinum"]),
            ("gold", ["gold", "gold_edge"]),
            ("silver", ["silver"]),
            ("bronze", ["bronze", "zero"]),
            ("gold,platinum", ["platinum", "gold", "gold_edge"]),
            ("platinum,bronze", ["platinum", "bronze", "zero"]),
            ("Silver, GOLD", ["gold", "gold_edge", "silver"]),
            ("bronze,silver,gold,platinum", ["platinum", "gold", "gold_edge", "silver", "bronze", "zero"]),
            ("", ["platinum", "gold", "gold_edge", "silver", "bronze", "zero"]),
        ],
    )
    async def test_tiers_are_ltv_ranges(
        self,
        client: Client,
        sessionmaker: Sessionmaker,
        tiered: dict[str, str],
        tier: str,
        expected: list[str],
    ) -> None:
        key = await new_api_key(sessionmaker)
        items = (await get_json(client, key, URL, tier=tier))["items"]

        # LTV descending within the filter.
        assert ids(items) == [tiered[name] for name in expected]
        wanted = {t.strip().lower() for t in tier.split(",") if t.strip()} or {
            "platinum",
            "gold",
            "silver",
            "bronze",
        }
        assert {item["tier"] for item in items} <= wanted

    async def test_tier_filter_with_each_sort_pages_cleanly(
        self, client: Client, sessionmaker: Sessionmaker, tiered: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        for sort in ("ltv", "orderCount", "lastOrderAt", "name"):
            pages = await all_pages(client, key, URL, tier="gold,bronze", sort=sort, limit=1)
            flat = [item["id"] for page in pages for item in page]
            assert sorted(flat) == sorted(tiered[n] for n in ("gold", "gold_edge", "bronze", "zero"))
            assert len(flat) == len(set(flat))

    @pytest.mark.parametrize(
        "tier", ["diamond", "gold,diamond", "gold;platinum", "1", "platinum," + "x" * 20]
    )
    async def test_unknown_tier_is_422(self, client: Client, sessionmaker: Sessionmaker, tier: str) -> None:
        key = await new_api_key(sessionmaker)
        problem = assert_problem(await client.get(URL, params={"tier": tier}, headers=bearer(key)), 422)
        assert problem["errors"][0]["field"] == "tier"


class TestSearch:
    @pytest.fixture
    async def people(self, sessionmaker: Sessionmaker, settings: Settings) -> dict[str, str]:
        cids = {"priya": next_id(), "rahul": next_id(), "anita": next_id()}
        await send(
            sessionmaker,
            settings,
            [
                customer(
                    cids["priya"], "Priya", "Menon", email="Priya.Menon@Example.com", phone="+919800011111"
                ),
                customer(cids["rahul"], "Rahul", "Verma", email="rv_100%@example.com", phone="+919800022222"),
                customer(cids["anita"], "Anita", "D'Souza", email="anita@example.org", phone=None),
            ],
        )
        return {name: str(cid) for name, cid in cids.items()}

    @pytest.mark.parametrize(
        ("search", "expected"),
        [
            ("priya", ["priya"]),
            ("PRIYA MENON", ["priya"]),
            ("  priya   menon ", ["priya"]),
            ("ya me", ["priya"]),
            ("menon", ["priya"]),
            ("verma", ["rahul"]),
            ("example.org", ["anita"]),
            ("priya.menon@example", ["priya"]),
            ("22222", ["rahul"]),
            ("+9198000", ["priya", "rahul"]),
            ("d'souza", ["anita"]),
            ("%", ["rahul"]),
            ("_", ["rahul"]),
            ("a%a", []),
            ("r_h", []),
            ("\\", []),
            ("'; DROP TABLE customers; --", []),
            ("' OR '1'='1", []),
            ("pri\x00ya", ["priya"]),
            ("\x00", ["priya", "rahul", "anita"]),
            ("nobody", []),
        ],
    )
    async def test_substring_of_name_email_or_phone(
        self,
        client: Client,
        sessionmaker: Sessionmaker,
        people: dict[str, str],
        search: str,
        expected: list[str],
    ) -> None:
        key = await new_api_key(sessionmaker)

        items = (await get_json(client, key, URL, search=search, sort="name"))["items"]

        assert sorted(ids(items)) == sorted(people[name] for name in expected)
        assert len((await get_json(client, key, URL))["items"]) == 3

    async def test_search_pages_are_bound_to_the_search(
        self, client: Client, sessionmaker: Sessionmaker, people: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        first = await get_json(client, key, URL, search="+9198000", limit=1, sort="name")
        assert ids(first["items"]) == [people["priya"]]
        second = await get_json(
            client, key, URL, search="+9198000", limit=1, sort="name", cursor=first["nextCursor"]
        )
        assert ids(second["items"]) == [people["rahul"]]
        assert second["nextCursor"] is None
        response = await client.get(
            URL,
            params={"search": "priya", "limit": 1, "sort": "name", "cursor": first["nextCursor"]},
            headers=bearer(key),
        )
        assert_problem(response, 400)


def _cursor(kind: str, filters: dict[str, Any], position: list[Any]) -> str:
    raw = json.dumps({"k": kind, "f": filters, "p": position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


LTV_FILTERS: dict[str, Any] = {"sort": "ltv", "tier": [], "search": None}


class TestHostileParameters:
    @pytest.mark.parametrize(
        "query",
        [
            {"limit": "0"},
            {"limit": "251"},
            {"limit": "1000000"},
            {"limit": "99999999999999999999999"},
            {"limit": "-1"},
            {"limit": "abc"},
            {"sort": "bogus"},
            {"sort": "ltv desc"},
            {"sort": "LTV"},
            {"tier": "diamond"},
            {"search": "x" * 101},
            {"cursor": "c" * 2001},
        ],
    )
    async def test_invalid_values_and_limits_are_422(
        self, client: Client, sessionmaker: Sessionmaker, query: dict[str, str]
    ) -> None:
        key = await new_api_key(sessionmaker)
        problem = assert_problem(await client.get(URL, params=query, headers=bearer(key)), 422)
        assert problem["errors"]

    @pytest.mark.parametrize(
        ("sort", "cursor"),
        [
            ("ltv", "garbage"),
            ("ltv", "!!!!"),
            ("ltv", base64.urlsafe_b64encode(b"[1, 2]").decode()),
            ("ltv", _cursor("orders", LTV_FILTERS, ["1.00", 5])),
            ("ltv", _cursor("customers", LTV_FILTERS, ["1.00"])),
            ("ltv", _cursor("customers", LTV_FILTERS, [1, 5])),
            ("ltv", _cursor("customers", LTV_FILTERS, ["NaN", 5])),
            ("ltv", _cursor("customers", LTV_FILTERS, ["1e999", 5])),
            ("ltv", _cursor("customers", LTV_FILTERS, ["1.00", 2**64])),
            ("ltv", _cursor("customers", LTV_FILTERS, ["1.00", "5"])),
            ("ltv", _cursor("customers", LTV_FILTERS, ["1.00", True])),
            ("ltv", _cursor("customers", LTV_FILTERS, [None, 5])),
            ("orderCount", _cursor("customers", {**LTV_FILTERS, "sort": "orderCount"}, [2**40, 5])),
            ("orderCount", _cursor("customers", {**LTV_FILTERS, "sort": "orderCount"}, ["2", 5])),
            ("lastOrderAt", _cursor("customers", {**LTV_FILTERS, "sort": "lastOrderAt"}, ["yesterday", 5])),
            (
                "lastOrderAt",
                _cursor("customers", {**LTV_FILTERS, "sort": "lastOrderAt"}, ["2026-01-01T00:00:00", 5]),
            ),
            ("name", _cursor("customers", {**LTV_FILTERS, "sort": "name"}, [7, 5])),
            ("name", _cursor("customers", {**LTV_FILTERS, "sort": "name"}, ["a\x00b", 5])),
        ],
    )
    async def test_malformed_cursor_is_400(
        self, client: Client, sessionmaker: Sessionmaker, ties: dict[str, Any], sort: str, cursor: str
    ) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.get(URL, params={"cursor": cursor, "sort": sort}, headers=bearer(key))
        assert_problem(response, 400)

    async def test_well_formed_positions_of_each_sort_are_accepted(
        self, client: Client, sessionmaker: Sessionmaker, ties: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        for sort, key_value in (
            ("ltv", "1000.00"),
            ("orderCount", 1),
            ("lastOrderAt", zulu(ties["d5"]).replace("Z", "+00:00")),
            ("lastOrderAt", None),
            ("name", "b"),
            ("name", None),
        ):
            cursor = _cursor("customers", {**LTV_FILTERS, "sort": sort}, [key_value, 1])
            response = await client.get(URL, params={"cursor": cursor, "sort": sort}, headers=bearer(key))
            assert response.status_code == 200, (sort, response.text)

    async def test_cursor_of_another_sort_or_filter_is_400(
        self, client: Client, sessionmaker: Sessionmaker, ties: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        cursor = (await get_json(client, key, URL, limit=2))["nextCursor"]
        assert cursor is not None
        for query in (
            {"sort": "name"},
            {"sort": "orderCount"},
            {"sort": "lastOrderAt"},
            {"tier": "bronze"},
            {"search": "a"},
        ):
            response = await client.get(
                URL, params={**query, "limit": 2, "cursor": cursor}, headers=bearer(key)
            )
            assert_problem(response, 400)
        assert (
            await client.get(URL, params={"limit": 2, "cursor": cursor}, headers=bearer(key))
        ).status_code == 200

    async def test_valid_cursor_for_every_sort_type_decodes(
        self, client: Client, sessionmaker: Sessionmaker, ties: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        for sort in ("ltv", "orderCount", "lastOrderAt", "name"):
            body = await get_json(client, key, URL, sort=sort, limit=7)
            assert body["nextCursor"] is not None
            rest = await get_json(client, key, URL, sort=sort, limit=7, cursor=body["nextCursor"])
            assert len(rest["items"]) == 1
            assert rest["nextCursor"] is None

    async def test_empty_cursor_is_the_first_page(
        self, client: Client, sessionmaker: Sessionmaker, ties: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        first = await get_json(client, key, URL, limit=3)
        assert await get_json(client, key, URL, limit=3, cursor="") == first

    async def test_limit_250_is_allowed(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        assert (await client.get(URL, params={"limit": 250}, headers=bearer(key))).status_code == 200

    async def test_sql_looking_search_leaves_the_tables_alone(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid = next_id()
        await send(sessionmaker, settings, [customer(cid, "Kept", "Safe")])
        key = await new_api_key(sessionmaker)
        for text in ("'; DROP TABLE customers; --", '"; DELETE FROM customer_stats; --', "%' OR 1=1 --"):
            response = await client.get(URL, params={"search": text}, headers=bearer(key))
            assert response.status_code == 200
            assert response.json() == {"items": [], "nextCursor": None}
        assert ids((await get_json(client, key, URL))["items"]) == [str(cid)]
        async with sessionmaker() as session:
            assert await session.scalar(sa.text("SELECT count(*) FROM customer_stats")) == 1

    @pytest.mark.parametrize(
        "path",
        [
            "abc",
            "0",
            "-1",
            "1.5",
            "99999999999999999999",
            "9223372036854775808",
            "%C2%B2",
            "gid:%2F%2Fshopify%2FOrder%2F{cid}",
            "gid:%2F%2Fshopify%2FCustomer%2Fabc",
            "{cid}x",
        ],
    )
    async def test_bad_or_unknown_id_is_404(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings, path: str
    ) -> None:
        cid = next_id()
        await send(sessionmaker, settings, [customer(cid, "Real", "One")])
        key = await new_api_key(sessionmaker)
        for suffix in ("", "/addresses"):
            response = await client.get(f"{URL}/{path.format(cid=cid)}{suffix}", headers=bearer(key))
            assert_problem(response, 404)

    async def test_requires_credentials(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid = next_id()
        await send(sessionmaker, settings, [customer(cid, "Real", "One")])
        for url in (URL, f"{URL}/{cid}", f"{URL}/{cid}/addresses"):
            assert_problem(await client.get(url), 401)
            assert_problem(await client.get(url, headers=bearer("tl_nope")), 401)


class TestShopIsolation:
    async def test_another_shops_customers_are_invisible(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        mine, theirs, shared = next_id(), next_id(), next_id()
        await send(
            sessionmaker,
            settings,
            [
                customer(mine, "Mine", "Only"),
                customer(shared, "Same", "Id"),
                order(next_id(), shared, "100.00", now()),
            ],
        )
        await send(
            sessionmaker,
            settings,
            [
                customer(theirs, "Their", "Customer"),
                customer(shared, "Other", "Person", email="other@example.com"),
                order(next_id(), shared, "77777.00", now()),
                order(next_id(), theirs, "500.00", now()),
            ],
            shop=OTHER_SHOP,
        )
        key = await new_api_key(sessionmaker)
        other_key = await new_api_key(sessionmaker, OTHER_SHOP)

        items = (await get_json(client, key, URL))["items"]
        assert sorted(ids(items)) == sorted([str(mine), str(shared)])
        same = next(item for item in items if item["id"] == str(shared))
        assert (same["firstName"], same["ltv"], same["email"]) == ("Same", "100.00", f"c{shared}@example.com")
        for search in ("Their", "other@example.com", "Other"):
            assert (await get_json(client, key, URL, search=search))["items"] == []
        assert (await get_json(client, key, URL, tier="platinum"))["items"] == []
        assert_problem(await client.get(f"{URL}/{theirs}", headers=bearer(key)), 404)
        assert_problem(await client.get(f"{URL}/{theirs}/addresses", headers=bearer(key)), 404)
        profile = await get_json(client, key, f"{URL}/{shared}")
        assert (profile["ltv"], profile["metrics"]["totalOrders"], len(profile["recentOrders"])) == (
            "100.00",
            1,
            1,
        )

        their_items = (await get_json(client, other_key, URL))["items"]
        assert sorted(ids(their_items)) == sorted([str(theirs), str(shared)])
        assert_problem(await client.get(f"{URL}/{mine}", headers=bearer(other_key)), 404)


# --- the profile -----------------------------------------------------------------------------


class TestProfile:
    @pytest.fixture
    async def profile_data(self, sessionmaker: Sessionmaker, settings: Settings) -> dict[str, Any]:
        """Six orders: O1, O2, O6 eligible; O3 COD RTO; O4 cancelled; O5 test. Thresholds: silver
        4000, gold 5000, platinum 10000."""
        await helpers.set_shop_settings(
            sessionmaker, {"tierThresholds": {"platinum": "10000.00", "gold": "5000.00", "silver": "4000.00"}}
        )
        base = now()
        cid = next_id()
        o = {n: next_id() for n in ("o1", "o2", "o3", "o4", "o5", "o6")}
        p1, p2, p3, p4 = (next_id() for _ in range(4))
        v1, v2, v3, v4, v5 = (next_id() for _ in range(5))
        t = {"o1": days_ago(40, base), "o2": days_ago(30, base), "o3": days_ago(20, base)}
        t |= {"o4": days_ago(10, base), "o5": days_ago(5, base), "o6": days_ago(15, base)}

        def line(
            product: int, variant: int, title: str, variant_title: str, vendor: str, q: int, price: str
        ) -> Any:
            return line_item(
                next_id(),
                product_id=product,
                variant_id=variant,
                title=title,
                variant_title=variant_title,
                vendor=vendor,
                quantity=q,
                price=price,
            )

        deliveries = [
            customer(cid, "Kavya", "Reddy", email="kavya@example.com", phone="+919900000001"),
            order(
                o["o1"],
                cid,
                "3000.00",
                t["o1"],
                lines=[
                    line(p1, v1, "Kurta", "Red / M", "Weavers Co", 2, "1000.00"),
                    line(p2, v2, "Scarf", "Blue", "Silk House", 1, "1000.00"),
                ],
            ),
            order(
                o["o2"],
                cid,
                "1500.00",
                t["o2"],
                gateways=COD,
                lines=[line(p1, v3, "Kurta", "Red / L", "Weavers Co", 1, "1500.00")],
            ),
            # Triggers fire on changes, never on creation (docs/domain.md): O3 is tagged RTO by an
            # update, O6 is delivered by its fulfillment.
            o3 := order(
                o["o3"],
                cid,
                "800.00",
                t["o3"],
                gateways=COD,
                lines=[line(p2, v2, "Scarf", "Blue", "Silk House", 1, "800.00")],
            ),
            Delivery.of(
                "orders/updated",
                json.loads(o3.body) | {"tags": "rto", "updated_at": iso(t["o3"] + timedelta(hours=1))},
            ),
            order(
                o["o6"],
                cid,
                "1000.00",
                t["o6"],
                lines=[line(p3, v4, "Cap", "Default Title", "Capco", 2, "500.00")],
            ),
            Delivery.of("fulfillments/create", delivered_fulfillment(o["o6"], t["o6"] + timedelta(hours=1))),
            order(
                o["o4"],
                cid,
                "400.00",
                t["o4"],
                cancelled_at=t["o4"].isoformat(),
                lines=[line(p3, v4, "Cap", "Default Title", "Capco", 1, "400.00")],
            ),
            order(
                o["o5"],
                cid,
                "999.00",
                t["o5"],
                test=True,
                lines=[line(p4, v5, "Test item", "Green / S", "Testco", 9, "111.00")],
            ),
            Delivery.of("refunds/create", refund(o["o1"], "200.00", returned=1)),
            Delivery.of("refunds/create", refund(o["o2"], "100.00")),
            Delivery.of("refunds/create", refund(o["o5"], "50.00", returned=1)),
        ]
        await send(sessionmaker, settings, deliveries)
        return {"cid": cid, "o": o, "t": t, "p": [p1, p2, p3, p4], "v": [v1, v2, v3, v4, v5]}

    async def test_summary_tier_of_record_and_history(
        self, client: Client, sessionmaker: Sessionmaker, profile_data: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        cid, o, t = profile_data["cid"], profile_data["o"], profile_data["t"]

        body = await get_json(client, key, f"{URL}/{cid}")

        assert set(body) == PROFILE_FIELDS
        assert {k: body[k] for k in SUMMARY_FIELDS} == {
            "id": str(cid),
            "email": "kavya@example.com",
            "phone": "+919900000001",
            "firstName": "Kavya",
            "lastName": "Reddy",
            "tier": "gold",
            "ltv": "5500.00",
            "orderCount": 3,
            "rtoCount": 1,
            "lastOrderAt": zulu(t["o4"]),
        }
        assert body["tierOfRecord"] == "gold"
        history = body["tierHistory"]
        fields = ("from", "to", "ltv", "reason", "orderId", "orderName")
        assert [{k: h[k] for k in fields} for h in history] == [
            {
                "from": "silver",
                "to": "gold",
                "ltv": "5500.00",
                "reason": "delivered",
                "orderId": str(o["o6"]),
                "orderName": f"#{1000 + o['o6'] % 100000}",  # the name the payload carried
            },
            {
                "from": None,
                "to": "silver",
                "ltv": "4500.00",
                "reason": "rto",
                "orderId": str(o["o3"]),
                "orderName": f"#{1000 + o['o3'] % 100000}",
            },
        ]
        assert parse_time(history[0]["at"]) >= parse_time(history[1]["at"])
        assert body["addressCount"] == 1

    async def test_a_deleted_order_leaves_the_history_with_its_triggers(
        self,
        client: Client,
        sessionmaker: Sessionmaker,
        settings: Settings,
        profile_data: dict[str, Any],
    ) -> None:
        """Deleted orders count nowhere (docs/domain.md): the history is derived again without the
        deleted order's trigger, and every entry still names its order."""
        key = await new_api_key(sessionmaker)
        cid, o = profile_data["cid"], profile_data["o"]
        await send(sessionmaker, settings, [Delivery.of("orders/delete", {"id": o["o3"]})])

        history = (await get_json(client, key, f"{URL}/{cid}"))["tierHistory"]

        by_order = {h["orderId"]: h["orderName"] for h in history}
        assert str(o["o3"]) not in by_order
        assert by_order[str(o["o6"])] == f"#{1000 + o['o6'] % 100000}"

    async def test_metrics(
        self, client: Client, sessionmaker: Sessionmaker, profile_data: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        cid, t = profile_data["cid"], profile_data["t"]

        metrics = (await get_json(client, key, f"{URL}/{cid}"))["metrics"]

        assert metrics == {
            "aov": "1833.33",  # 5500.00 / 3
            "totalOrders": 5,  # O1 to O4 and O6 (the test order O5 is ignored)
            "cancelledOrders": 1,
            "codOrders": 2,
            "prepaidOrders": 3,
            "codShare": 0.4,
            "rtoRate": 0.5,
            "returnCount": 1,  # O1's refund sent an item back; O5's is a test order's
            "refundedAmount": "300.00",
            "firstOrderAt": zulu(t["o1"]),
            "lastOrderAt": zulu(t["o4"]),
            "daysSinceLastOrder": 10,
            "avgDaysBetweenOrders": 7.5,  # 30 days over 4 gaps
        }

    async def test_affinity(
        self, client: Client, sessionmaker: Sessionmaker, profile_data: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        cid = profile_data["cid"]
        p1, p2, p3, _ = (str(p) for p in profile_data["p"])
        v1, v2, v3, v4, _ = (str(v) for v in profile_data["v"])

        affinity = (await get_json(client, key, f"{URL}/{cid}"))["affinity"]

        # Eligible orders only: O1, O2, O6.
        assert affinity["topProducts"] == [
            {"productId": p1, "title": "Kurta", "quantity": 3, "orders": 2, "spend": "3500.00"},
            {"productId": p3, "title": "Cap", "quantity": 2, "orders": 1, "spend": "1000.00"},
            {"productId": p2, "title": "Scarf", "quantity": 1, "orders": 1, "spend": "1000.00"},
        ]
        assert affinity["topVariants"] == [
            {
                "variantId": v1,
                "productId": p1,
                "title": "Kurta",
                "variantTitle": "Red / M",
                "quantity": 2,
                "orders": 1,
                "spend": "2000.00",
            },
            {
                "variantId": v3,
                "productId": p1,
                "title": "Kurta",
                "variantTitle": "Red / L",
                "quantity": 1,
                "orders": 1,
                "spend": "1500.00",
            },
            {
                "variantId": v4,
                "productId": p3,
                "title": "Cap",
                "variantTitle": "Default Title",
                "quantity": 2,
                "orders": 1,
                "spend": "1000.00",
            },
            {
                "variantId": v2,
                "productId": p2,
                "title": "Scarf",
                "variantTitle": "Blue",
                "quantity": 1,
                "orders": 1,
                "spend": "1000.00",
            },
        ]
        assert affinity["topOptionValues"] == [
            {"value": "Red", "quantity": 3, "orders": 2, "spend": "3500.00"},
            {"value": "M", "quantity": 2, "orders": 1, "spend": "2000.00"},
            {"value": "L", "quantity": 1, "orders": 1, "spend": "1500.00"},
            {"value": "Blue", "quantity": 1, "orders": 1, "spend": "1000.00"},
        ]
        assert affinity["topVendors"] == [
            {"vendor": "Weavers Co", "quantity": 3, "orders": 2, "spend": "3500.00"},
            {"vendor": "Capco", "quantity": 2, "orders": 1, "spend": "1000.00"},
            {"vendor": "Silk House", "quantity": 1, "orders": 1, "spend": "1000.00"},
        ]

    async def test_recent_orders_are_enriched_newest_first(
        self, client: Client, sessionmaker: Sessionmaker, profile_data: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        cid, o = profile_data["cid"], profile_data["o"]

        recent = (await get_json(client, key, f"{URL}/{cid}"))["recentOrders"]

        assert [r["id"] for r in recent] == [str(o[n]) for n in ("o5", "o4", "o6", "o3", "o2", "o1")]
        for r in recent:
            assert (r["customerLtv"], r["customerOrderCount"], r["customerRtoCount"], r["customerTier"]) == (
                "5500.00",
                3,
                1,
                "gold",
            )
        by_id = {r["id"]: r for r in recent}
        assert by_id[str(o["o3"])]["trackingStatus"] == "rto_initiated"
        assert by_id[str(o["o6"])]["trackingStatus"] == "delivered"
        assert by_id[str(o["o5"])]["test"] is True

    async def test_profile_by_gid(
        self, client: Client, sessionmaker: Sessionmaker, profile_data: dict[str, Any]
    ) -> None:
        key = await new_api_key(sessionmaker)
        cid = profile_data["cid"]
        plain = await get_json(client, key, f"{URL}/{cid}")
        for path in (f"gid://shopify/Customer/{cid}", quote(f"gid://shopify/Customer/{cid}", safe="")):
            assert await get_json(client, key, f"{URL}/{path}") == plain
            addresses = await get_json(client, key, f"{URL}/{path}/addresses")
            assert len(addresses["items"]) == 1

    async def test_customer_without_orders(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid = next_id()
        await send(
            sessionmaker, settings, [customer(cid, "New", "Buyer", addresses=[], default_address=None)]
        )
        key = await new_api_key(sessionmaker)

        body = await get_json(client, key, f"{URL}/{cid}")

        assert (body["ltv"], body["orderCount"], body["tier"], body["tierOfRecord"]) == (
            "0.00",
            0,
            "bronze",
            None,
        )
        assert body["tierHistory"] == []
        assert body["recentOrders"] == []
        assert body["addressCount"] == 0
        assert body["metrics"] == {
            "aov": "0.00",
            "totalOrders": 0,
            "cancelledOrders": 0,
            "codOrders": 0,
            "prepaidOrders": 0,
            "codShare": 0,
            "rtoRate": 0,
            "returnCount": 0,
            "refundedAmount": "0.00",
            "firstOrderAt": None,
            "lastOrderAt": None,
            "daysSinceLastOrder": None,
            "avgDaysBetweenOrders": None,
        }
        assert body["affinity"] == {
            "topProducts": [],
            "topVariants": [],
            "topOptionValues": [],
            "topVendors": [],
        }

    async def test_top_five_and_last_ten(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, base = next_id(), now()
        products = [next_id() for _ in range(7)]
        big = order(
            next_id(),
            cid,
            "2800.00",
            days_ago(30, base),
            lines=[
                line_item(
                    next_id(), product_id=p, variant_id=next_id(), price=f"{100 * (i + 1)}.00", quantity=1
                )
                for i, p in enumerate(products)
            ],
        )
        small = [order(next_id(), cid, "10.00", days_ago(20 - i, base)) for i in range(11)]
        await send(sessionmaker, settings, [customer(cid, "Many", "Orders"), big, *small])
        key = await new_api_key(sessionmaker)

        body = await get_json(client, key, f"{URL}/{cid}")

        top = body["affinity"]["topProducts"]
        assert [p["productId"] for p in top[:5]] == [str(p) for p in reversed(products)][:5]
        assert [p["spend"] for p in top] == ["700.00", "600.00", "500.00", "400.00", "300.00"]
        assert len(body["recentOrders"]) == 10
        assert body["recentOrders"][0]["createdAt"] == zulu(days_ago(10, base))
        assert body["metrics"]["totalOrders"] == 12
        assert (body["orderCount"], body["ltv"]) == (12, "2910.00")


# --- addresses -------------------------------------------------------------------------------


class TestAddresses:
    async def test_distinct_normalized_most_recently_used_first(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, base = next_id(), now()
        home = address(address1="12 MG Road", city="Bengaluru", zip="560001", phone="+91 98450 00000")
        home_messy = address(
            address1="  12   mg ROAD ",
            city="BENGALURU",
            zip=" 560001",
            company="  Rao  & Sons ",
            phone="+919845000000",
        )
        office = address(address1="4 Residency Rd", address2="Floor 3", city="Bengaluru", zip="560025")
        parents = address(address1="7 Temple St", city="Mysuru", province="Karnataka", zip="570001")
        unused = address(
            address1="1 Beach Rd", city="Chennai", province="Tamil Nadu", province_code="TN", zip="600001"
        )
        test_only = address(address1="99 Test Lane", city="Pune", zip="411001")
        oa, ob, oc, od = (next_id() for _ in range(4))
        await send(
            sessionmaker,
            settings,
            [
                customer(cid, "Asha", "Rao", default_address=home, addresses=[home, parents, unused]),
                order(ob, cid, "10.00", days_ago(7, base), shipping_address=parents, billing_address=parents),
                order(
                    oa, cid, "10.00", days_ago(3, base), shipping_address=home_messy, billing_address=office
                ),
                order(oc, cid, "10.00", days_ago(1, base), shipping_address=home, billing_address=home),
                order(od, cid, "10.00", days_ago(0.5, base), test=True, shipping_address=test_only),
            ],
        )
        key = await new_api_key(sessionmaker)

        body = await get_json(client, key, f"{URL}/{cid}/addresses")

        assert body["nextCursor"] is None
        items = body["items"]
        assert all(set(item) == ADDRESS_FIELDS for item in items)
        assert [(i["address1"], i["timesUsed"], i["isDefault"]) for i in items] == [
            ("12 MG Road", 2, True),
            ("4 Residency Rd", 1, False),
            ("7 Temple St", 1, False),
            ("1 Beach Rd", 0, False),
        ]
        assert [i["lastUsedAt"] for i in items] == [
            zulu(days_ago(1, base)),
            zulu(days_ago(3, base)),
            zulu(days_ago(7, base)),
            None,
        ]
        first = items[0]
        assert {
            k: first[k] for k in ("firstName", "lastName", "city", "province", "provinceCode", "zip")
        } == {
            "firstName": "Asha",
            "lastName": "Rao",
            "city": "Bengaluru",
            "province": "Karnataka",
            "provinceCode": "KA",
            "zip": "560001",
        }
        assert (first["country"], first["countryCode"], first["phone"]) == ("India", "IN", "+91 98450 00000")
        assert items[1]["address2"] == "Floor 3"
        assert (await get_json(client, key, f"{URL}/{cid}"))["addressCount"] == 4

    async def test_whitespace_and_case_only_differences_are_one_address(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, base = next_id(), now()
        variants = [
            address(address1="12 MG Road", city="Bengaluru"),
            address(address1="12 mg road", city="bengaluru", zip="560001 "),
            address(address1=" 12  MG\tRoad ", city=" Bengaluru", company="Rao & Sons"),
        ]
        deliveries = [customer(cid, "Asha", "Rao", addresses=[], default_address=None)]
        deliveries += [
            order(next_id(), cid, "10.00", days_ago(10 - i, base), shipping_address=a, billing_address=None)
            for i, a in enumerate(variants)
        ]
        await send(sessionmaker, settings, deliveries)
        key = await new_api_key(sessionmaker)

        items = (await get_json(client, key, f"{URL}/{cid}/addresses"))["items"]

        assert len(items) == 1
        (only,) = items
        assert (only["timesUsed"], only["isDefault"], only["lastUsedAt"]) == (
            3,
            False,
            zulu(days_ago(8, base)),
        )
        # The fields of the latest use, normalized.
        assert (only["address1"], only["city"], only["company"]) == ("12 MG Road", "Bengaluru", "Rao & Sons")

    async def test_unknown_customer_is_404(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        assert_problem(await client.get(f"{URL}/{next_id()}/addresses", headers=bearer(key)), 404)
