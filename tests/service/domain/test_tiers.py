"""docs/domain.md tier of record, ``PUT /api/orders/{id}/tracking-status``, ``POST /api/tiers/recalculate``
and ``PUT /api/settings`` (validation, and re-deriving what depends on each setting).

The tier of record is read from ``customer_stats.tier_of_record`` and its history from
``tier_changes`` (no customer read endpoint exists yet). Deliveries go through the real worker.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.config import Settings
from service.domain import tiers
from service.domain.settings import DEFAULT_COD_GATEWAYS, DEFAULT_RTO_TAGS
from tests.support import deliveries as helpers
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import (
    OTHER_SHOP,
    SHOP,
    at,
    fulfillment_event_payload,
    fulfillment_payload,
    next_id,
    order_payload,
    return_payload,
)

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]

DEFAULT_SETTINGS = {
    "tierThresholds": {"platinum": "50000.00", "gold": "25000.00", "silver": "10000.00"},
    "codGateways": list(DEFAULT_COD_GATEWAYS),
    "rtoTags": dict(DEFAULT_RTO_TAGS),
    "includeTestOrders": False,
    "writeBack": {"enabled": True, "customerTags": True, "orderRiskTag": True, "riskMinCodRto": 1},
}


def order(
    order_id: int,
    customer_id: int,
    total: str,
    *,
    updated: float | None = None,
    created: float = 0,
    tags: str = "",
    gateways: list[str] | None = None,
    **extra: Any,
) -> Delivery:
    """An order created at minute ``created`` (0 by default), as last updated at ``updated``
    (``orders/create`` when not given)."""
    payload = order_payload(
        order_id,
        customer_id=customer_id,
        total=total,
        created=at(created),
        updated=at(created if updated is None else updated),
        tags=tags,
        gateways=gateways,
        **extra,
    )
    return Delivery.of("orders/create" if updated is None else "orders/updated", payload)


def shipped(
    order_id: int, status: str = "in_transit", *, minutes: float = 1, fulfillment_id: int | None = None
) -> Delivery:
    fid = fulfillment_id if fulfillment_id is not None else next_id()
    payload = fulfillment_payload(fid, order_id, shipment_status=status, created=at(1), updated=at(minutes))
    return Delivery.of("fulfillments/update", payload)


def event(fulfillment_id: int, order_id: int, status: str, minutes: float) -> Delivery:
    return Delivery.of(
        "fulfillment_events/create",
        fulfillment_event_payload(next_id(), fulfillment_id, order_id, status, happened=at(minutes)),
    )


def return_step(return_id: int, order_id: int, topic: str, minutes: float) -> Delivery:
    return Delivery.of(topic, return_payload(return_id, order_id), triggered_at=at(minutes))


async def tier_of_record(sessionmaker: Sessionmaker, customer_id: int, *, shop: str = SHOP) -> str | None:
    row = (await helpers.customer_stats(sessionmaker, shop=shop))[customer_id]
    value: str | None = row["tier_of_record"]
    return value


async def history(sessionmaker: Sessionmaker, customer_id: int) -> list[tuple[Any, ...]]:
    """(from, to, ltv, reason, order id) of each change; ``at`` is checked to be set."""
    rows = await helpers.tier_changes(sessionmaker, customer_id=customer_id)
    assert all(r["at"] is not None for r in rows)
    return [(r["from_tier"], r["to_tier"], r["ltv"], r["reason"], r["order_id"]) for r in rows]


async def tracking(sessionmaker: Sessionmaker, order_id: int, *, shop: str = SHOP) -> str | None:
    value: str | None = (await helpers.orders(sessionmaker, shop=shop))[order_id]["tracking_status"]
    return value


class TestTierOfRecordTriggers:
    async def test_null_before_any_trigger_and_order_creation_never_changes_it(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid = next_id()
        first, second = next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(first, cid, "30000.00"),
                order(second, cid, "30000.00"),
                order(first, cid, "30000.00", updated=5, financial_status="paid"),
                shipped(second, "in_transit"),
            ],
        )
        row = (await helpers.customer_stats(sessionmaker))[cid]
        assert row["ltv"] == Decimal("60000.00")
        assert row["tier_of_record"] is None
        assert await history(sessionmaker, cid) == []

    async def test_an_order_becoming_delivered_sets_it(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, first, second, fid = next_id(), next_id(), next_id(), next_id()
        await helpers.apply(
            sessionmaker, settings, [order(first, cid, "12000.00"), shipped(first, fulfillment_id=fid)]
        )
        assert await tier_of_record(sessionmaker, cid) is None
        await helpers.apply(sessionmaker, settings, [event(fid, first, "delivered", 10)])
        assert await tracking(sessionmaker, first) == "delivered"
        assert await tier_of_record(sessionmaker, cid) == "silver"
        assert await history(sessionmaker, cid) == [(None, "silver", Decimal("12000.00"), "delivered", first)]

        # A new order lifts the live tier but not the tier of record, until it is delivered.
        await helpers.apply(sessionmaker, settings, [order(second, cid, "14000.00", created=15)])
        assert await tier_of_record(sessionmaker, cid) == "silver"
        await helpers.apply(sessionmaker, settings, [shipped(second, "delivered", minutes=20)])
        assert await tier_of_record(sessionmaker, cid) == "gold"
        assert (await history(sessionmaker, cid))[1:] == [
            ("silver", "gold", Decimal("26000.00"), "delivered", second)
        ]

    async def test_a_partial_delivery_is_no_trigger(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(oid, cid, "12000.00"),
                shipped(oid, "in_transit", minutes=5),
                shipped(oid, "delivered", minutes=6),
            ],
        )
        assert await tracking(sessionmaker, oid) == "in_transit"
        assert await tier_of_record(sessionmaker, cid) is None

    async def test_no_change_in_tier_appends_no_history(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, first, second = next_id(), next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(first, cid, "100.00"),
                shipped(first, "delivered", minutes=5),
                order(second, cid, "100.00", created=5.5),
                shipped(second, "delivered", minutes=6),
            ],
        )
        assert await history(sessionmaker, cid) == [(None, "bronze", Decimal("100.00"), "delivered", first)]

    @pytest.mark.parametrize("trigger", ["return", "tag"])
    async def test_entering_and_leaving_rto_set_it(
        self, sessionmaker: Sessionmaker, settings: Settings, trigger: str
    ) -> None:
        cid, oid, rid = next_id(), next_id(), next_id()
        await helpers.apply(sessionmaker, settings, [order(oid, cid, "12000.00"), shipped(oid, "in_transit")])
        assert await tier_of_record(sessionmaker, cid) is None

        enter = (
            return_step(rid, oid, "returns/request", 20)
            if trigger == "return"
            else order(oid, cid, "12000.00", updated=20, tags="vip, RTO")
        )
        await helpers.apply(sessionmaker, settings, [enter])
        assert await tracking(sessionmaker, oid) == "rto_initiated"
        assert await tier_of_record(sessionmaker, cid) == "bronze"

        leave = (
            return_step(rid, oid, "returns/decline", 30)
            if trigger == "return"
            else order(oid, cid, "12000.00", updated=30, tags="vip")
        )
        await helpers.apply(sessionmaker, settings, [leave])
        assert await tracking(sessionmaker, oid) == "in_transit"
        assert await tier_of_record(sessionmaker, cid) == "silver"
        assert await history(sessionmaker, cid) == [
            (None, "bronze", Decimal("0.00"), "rto", oid),
            ("bronze", "silver", Decimal("12000.00"), "rto", oid),
        ]

    async def test_tag_removed_while_a_return_still_triggers_stays_rto(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, oid, rid = next_id(), next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(oid, cid, "12000.00"),
                shipped(oid, "in_transit"),
                order(oid, cid, "12000.00", updated=20, tags="rto"),
                return_step(rid, oid, "returns/request", 25),
                order(oid, cid, "12000.00", updated=30, tags=""),
            ],
        )
        assert await tracking(sessionmaker, oid) == "rto_initiated"
        assert await tier_of_record(sessionmaker, cid) == "bronze"

    async def test_rto_movement_after_the_start_and_close(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, oid, rid, fid = next_id(), next_id(), next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(oid, cid, "500.00"),
                shipped(oid, "in_transit", fulfillment_id=fid),
                return_step(rid, oid, "returns/request", 20),
            ],
        )
        assert await tracking(sessionmaker, oid) == "rto_initiated"
        await helpers.apply(sessionmaker, settings, [event(fid, oid, "in_transit", 30)])
        assert await tracking(sessionmaker, oid) == "rto_in_transit"
        await helpers.apply(sessionmaker, settings, [return_step(rid, oid, "returns/close", 40)])
        assert await tracking(sessionmaker, oid) == "rto_delivered"
        await helpers.apply(sessionmaker, settings, [event(fid, oid, "out_for_delivery", 50)])
        assert await tracking(sessionmaker, oid) == "rto_delivered"
        # Staying within the RTO sequence is no new trigger: one entry only.
        assert await history(sessionmaker, cid) == [(None, "bronze", Decimal("0.00"), "rto", oid)]


class TestSetTrackingStatus:
    @staticmethod
    def url(order_id: int | str) -> str:
        return f"/api/orders/{order_id}/tracking-status"

    async def test_sets_the_tier_of_record_and_answers_the_enriched_order(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(sessionmaker, settings, [order(oid, cid, "12000.00"), shipped(oid, "in_transit")])
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(self.url(oid), json={"status": "delivered"}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert {
            k: body[k] for k in ("id", "customerId", "trackingStatus", "paymentMethod", "totalAmount")
        } == {
            "id": str(oid),
            "customerId": str(cid),
            "trackingStatus": "delivered",
            "paymentMethod": "cod",
            "totalAmount": "12000.00",
        }
        assert body["deliveredAt"] is not None
        assert {
            k: body[k] for k in ("customerLtv", "customerOrderCount", "customerRtoCount", "customerTier")
        } == {
            "customerLtv": "12000.00",
            "customerOrderCount": 1,
            "customerRtoCount": 0,
            "customerTier": "silver",
        }
        assert await tier_of_record(sessionmaker, cid) == "silver"
        assert await history(sessionmaker, cid) == [(None, "silver", Decimal("12000.00"), "manual", oid)]

    async def test_setting_the_same_status_is_still_a_trigger(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(sessionmaker, settings, [order(oid, cid, "30000.00"), shipped(oid, "in_transit")])
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(self.url(oid), json={"status": "in_transit"}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["trackingStatus"] == "in_transit"
        assert await history(sessionmaker, cid) == [(None, "gold", Decimal("30000.00"), "manual", oid)]

    async def test_an_rto_status_enters_rto(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(sessionmaker, settings, [order(oid, cid, "12000.00"), shipped(oid, "in_transit")])
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(self.url(oid), json={"status": "rto_initiated"}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["trackingStatus"], body["customerLtv"], body["customerOrderCount"]) == (
            "rto_initiated",
            "0.00",
            0,
        )
        assert (body["customerRtoCount"], body["customerTier"]) == (1, "bronze")
        assert await history(sessionmaker, cid) == [(None, "bronze", Decimal("0.00"), "manual", oid)]

    @pytest.mark.parametrize(
        ("first", "then", "expected"),
        [
            pytest.param("rto_initiated", "delivered", "rto_delivered", id="rto then delivered"),
            pytest.param(
                "rto_delivered",
                "rto_initiated",
                "rto_delivered",
                id="rto_delivered then rto_initiated",
            ),
            pytest.param("rto_initiated", "in_transit", "rto_in_transit", id="rto then in_transit"),
            pytest.param(
                "rto_in_transit",
                "rto_initiated",
                "rto_in_transit",
                id="rto_in_transit then rto_initiated",
            ),
        ],
    )
    async def test_rto_only_moves_forward_through_the_api(
        self,
        sessionmaker: Sessionmaker,
        settings: Settings,
        client: Client,
        first: str,
        then: str,
        expected: str,
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(sessionmaker, settings, [order(oid, cid, "700.00"), shipped(oid, "in_transit")])
        headers = await helpers.api_headers(sessionmaker)
        assert (await client.put(self.url(oid), json={"status": first}, headers=headers)).status_code == 200
        response = await client.put(self.url(oid), json={"status": then}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["trackingStatus"] == expected
        assert await tracking(sessionmaker, oid) == expected

    async def test_an_api_status_after_a_tag_maps_into_the_rto_sequence(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(oid, cid, "700.00"),
                shipped(oid, "in_transit"),
                order(oid, cid, "700.00", updated=20, tags="RTO"),
            ],
        )
        assert await tracking(sessionmaker, oid) == "rto_initiated"
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(self.url(oid), json={"status": "out_for_delivery"}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["trackingStatus"] == "rto_in_transit"

    @pytest.mark.parametrize("status", ["teleported", "", "DELIVERED", "rto"])
    async def test_an_unknown_status_is_422(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client, status: str
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(sessionmaker, settings, [order(oid, cid, "700.00")])
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(self.url(oid), json={"status": status}, headers=headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == ["status"]
        assert await tracking(sessionmaker, oid) is None
        assert await history(sessionmaker, cid) == []

    @pytest.mark.parametrize(
        "form",
        [
            "{}",
            pytest.param("gid://shopify/Order/{}", id="gid"),
            pytest.param("gid%3A%2F%2Fshopify%2FOrder%2F{}", id="gid percent-encoded"),
        ],
    )
    async def test_path_id_forms(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client, form: str
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(sessionmaker, settings, [order(oid, cid, "700.00")])
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(
            self.url(form.format(oid)), json={"status": "in_transit"}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["id"] == str(oid)

    async def test_another_shops_order_is_404(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(
            sessionmaker, settings, [order(oid, cid, "700.00"), shipped(oid)], shop=OTHER_SHOP
        )
        headers = await helpers.api_headers(sessionmaker, SHOP)
        response = await client.put(self.url(oid), json={"status": "delivered"}, headers=headers)
        assert response.status_code == 404, response.text
        assert await tracking(sessionmaker, oid, shop=OTHER_SHOP) == "in_transit"

    @pytest.mark.parametrize("path_id", ["abc", "0", "-1", "gid://shopify/Customer/5", str(2**63), "999"])
    async def test_an_id_that_names_no_order_is_404(
        self, sessionmaker: Sessionmaker, client: Client, path_id: str
    ) -> None:
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(self.url(path_id), json={"status": "delivered"}, headers=headers)
        assert response.status_code == 404, response.text


class TestRecalculate:
    async def test_recalculate_reports_total_updated_and_the_first_100_changes(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        customers = {next_id(): Decimal(1000 + 200 * i) for i in range(105)}
        await helpers.apply(
            sessionmaker, settings, [order(next_id(), cid, f"{ltv:.2f}") for cid, ltv in customers.items()]
        )
        headers = await helpers.api_headers(sessionmaker)

        response = await client.post("/api/tiers/recalculate", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["updated"]) == (105, 105)
        assert len(body["upgrades"]) == 100
        for item in body["upgrades"]:
            assert set(item) == {"customerId", "from", "to", "ltv"}
            cid = int(item["customerId"])
            live = "silver" if customers[cid] >= 10000 else "bronze"
            assert (item["from"], item["to"], item["ltv"]) == (None, live, f"{customers[cid]:.2f}")
        assert len({item["customerId"] for item in body["upgrades"]}) == 100
        stored = await helpers.customer_stats(sessionmaker)
        assert {cid: stored[cid]["tier_of_record"] for cid in customers} == {
            cid: "silver" if ltv >= 10000 else "bronze" for cid, ltv in customers.items()
        }
        changes = await helpers.tier_changes(sessionmaker)
        assert len(changes) == 105
        assert {c["reason"] for c in changes} == {"batch"}
        assert {c["order_id"] for c in changes} == {None}

        again = await client.post("/api/tiers/recalculate", headers=headers)
        assert again.status_code == 200
        assert again.json() == {"total": 105, "updated": 0, "upgrades": []}

        # A threshold change recalculates with reason "thresholds".
        response = await client.put(
            "/api/settings",
            json={"tierThresholds": {"platinum": "20000.00", "gold": "15000.00", "silver": "5000.00"}},
            headers=headers,
        )
        assert response.status_code == 200, response.text

        lowered = {"platinum": Decimal(20000), "gold": Decimal(15000), "silver": Decimal(5000)}

        def new_tier(ltv: Decimal) -> str:
            return next((t for t in ("platinum", "gold", "silver") if ltv >= lowered[t]), "bronze")

        stored = await helpers.customer_stats(sessionmaker)
        assert {cid: stored[cid]["tier_of_record"] for cid in customers} == {
            cid: new_tier(ltv) for cid, ltv in customers.items()
        }
        moved = [c for c in await helpers.tier_changes(sessionmaker) if c["reason"] == "thresholds"]
        before = {cid: "silver" if ltv >= 10000 else "bronze" for cid, ltv in customers.items()}
        assert {c["customer_id"]: (c["from_tier"], c["to_tier"]) for c in moved} == {
            cid: (before[cid], new_tier(ltv))
            for cid, ltv in customers.items()
            if new_tier(ltv) != before[cid]
        }

    async def test_an_empty_shop(self, sessionmaker: Sessionmaker, client: Client) -> None:
        headers = await helpers.api_headers(sessionmaker)
        response = await client.post("/api/tiers/recalculate", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"total": 0, "updated": 0, "upgrades": []}

    async def test_only_the_shops_own_customers(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        await helpers.apply(sessionmaker, settings, [order(next_id(), next_id(), "10.00")], shop=OTHER_SHOP)
        headers = await helpers.api_headers(sessionmaker, SHOP)
        response = await client.post("/api/tiers/recalculate", headers=headers)
        assert response.json() == {"total": 0, "updated": 0, "upgrades": []}


def thresholds(platinum: Any, gold: Any, silver: Any) -> dict[str, Any]:
    return {"tierThresholds": {"platinum": platinum, "gold": gold, "silver": silver}}


INVALID_SETTINGS = [
    pytest.param(thresholds("100", "200", "50"), {"tierThresholds.gold"}, id="gold above platinum"),
    pytest.param(thresholds("300", "300", "50"), {"tierThresholds.gold"}, id="gold equal to platinum"),
    pytest.param(thresholds("300", "200", "200"), {"tierThresholds.silver"}, id="silver equal to gold"),
    pytest.param(thresholds("300", "200", "-1"), {"tierThresholds.silver"}, id="negative"),
    pytest.param(thresholds("300", "200", 0), {"tierThresholds.silver"}, id="zero"),
    pytest.param(thresholds("lots", "200", "100"), {"tierThresholds.platinum"}, id="non-numeric"),
    pytest.param(thresholds("NaN", "200", "100"), {"tierThresholds.platinum"}, id="NaN"),
    pytest.param(thresholds("300", True, "100"), {"tierThresholds.gold"}, id="boolean"),
    pytest.param(thresholds("300", None, "100"), {"tierThresholds.gold"}, id="null"),
    pytest.param(thresholds("300", "200", "100.001"), {"tierThresholds.silver"}, id="three decimals"),
    pytest.param(
        {"tierThresholds": {"platinum": "300", "gold": "200"}}, {"tierThresholds"}, id="missing tier"
    ),
    pytest.param({"tierThresholds": [300, 200, 100]}, {"tierThresholds"}, id="thresholds not an object"),
    pytest.param({"colour": "red"}, {"colour"}, id="unknown key"),
    pytest.param({"codGateways": "cod"}, {"codGateways"}, id="codGateways not a list"),
    pytest.param({"codGateways": ["cod", 7]}, {"codGateways"}, id="codGateways item not a string"),
    pytest.param({"codGateways": ["  "]}, {"codGateways"}, id="codGateways blank name"),
    pytest.param({"rtoTags": {"rto": "delivered"}}, {"rtoTags.rto"}, id="rtoTags bad state"),
    pytest.param({"rtoTags": {"rto": None}}, {"rtoTags.rto"}, id="rtoTags null state"),
    pytest.param({"rtoTags": ["rto"]}, {"rtoTags"}, id="rtoTags not an object"),
    pytest.param({"includeTestOrders": "yes"}, {"includeTestOrders"}, id="includeTestOrders string"),
    pytest.param({"includeTestOrders": 1}, {"includeTestOrders"}, id="includeTestOrders number"),
    pytest.param(
        {"includeTestOrders": True, "codGateways": "cod", **thresholds("1", "2", "3")},
        {"codGateways", "tierThresholds.gold", "tierThresholds.silver"},
        id="several errors, valid parts not saved",
    ),
]


class TestSettingsValidation:
    @pytest.mark.parametrize(("document", "fields"), INVALID_SETTINGS)
    async def test_invalid_settings_are_422_with_field_errors_and_nothing_saved(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client, document: Any, fields: set[str]
    ) -> None:
        cid = next_id()
        await helpers.apply(sessionmaker, settings, [order(next_id(), cid, "15000.00", test=True)])
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put("/api/settings", json=document, headers=headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert {e["field"] for e in body["errors"]} == fields
        assert all(e["message"] for e in body["errors"])

        current = await client.get("/api/settings", headers=headers)
        assert current.json() == DEFAULT_SETTINGS
        assert await helpers.tier_changes(sessionmaker) == []
        assert (await helpers.customer_stats(sessionmaker))[cid]["ltv"] == Decimal(0)

    async def test_get_settings_defaults(self, sessionmaker: Sessionmaker, client: Client) -> None:
        headers = await helpers.api_headers(sessionmaker)
        response = await client.get("/api/settings", headers=headers)
        assert response.status_code == 200
        assert response.json() == DEFAULT_SETTINGS

    async def test_a_partial_update_keeps_the_rest(self, sessionmaker: Sessionmaker, client: Client) -> None:
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(
            "/api/settings", json={"codGateways": ["COD ", "Manual"]}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json() == DEFAULT_SETTINGS | {"codGateways": ["COD", "Manual"]}
        assert (await client.get("/api/settings", headers=headers)).json() == response.json()


class TestSettingsChangesRederive:
    async def test_cod_gateways_rederive_payment_method_and_rto_count(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid = next_id()
        mystery, default_cod, plain = next_id(), next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(mystery, cid, "100.00", tags="rto", gateways=["Mystery_Pay"]),
                order(default_cod, cid, "200.00", tags="rto", gateways=["Cash on Delivery (COD)"]),
                order(plain, cid, "300.00", gateways=["gift_card", "mystery_pay "]),
            ],
        )
        headers = await helpers.api_headers(sessionmaker)
        stats_before = await client.post(
            "/api/stats/customers", json={"customerIds": [str(cid)]}, headers=headers
        )
        assert stats_before.json()["stats"][str(cid)]["rtoCount"] == 1

        response = await client.put("/api/settings", json={"codGateways": ["MYSTERY_PAY"]}, headers=headers)
        assert response.status_code == 200, response.text
        rows = await helpers.orders(sessionmaker)
        assert {oid: rows[oid]["payment_method"] for oid in (mystery, default_cod, plain)} == {
            mystery: "cod",
            default_cod: "prepaid",
            plain: "cod",
        }
        after = await client.post("/api/stats/customers", json={"customerIds": [str(cid)]}, headers=headers)
        assert after.json()["stats"][str(cid)] == {
            "ltv": "300.00",
            "orderCount": 1,
            "rtoCount": 1,
            "tier": "bronze",
        }
        assert (await helpers.customer_stats(sessionmaker))[cid]["rto_count"] == 1

        # New orders follow the new list, the same way.
        new = next_id()
        await helpers.apply(
            sessionmaker, settings, [order(new, cid, "50.00", gateways=["Cash on Delivery (COD)"])]
        )
        assert (await helpers.orders(sessionmaker))[new]["payment_method"] == "prepaid"

    async def test_a_gateway_name_with_a_pipe_is_rederived_like_on_arrival(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        headers = await helpers.api_headers(sessionmaker)
        assert (
            await client.put("/api/settings", json={"codGateways": ["Pay|Later"]}, headers=headers)
        ).status_code == 200
        oid = next_id()
        await helpers.apply(sessionmaker, settings, [order(oid, next_id(), "10.00", gateways=["Pay|Later"])])
        assert (await helpers.orders(sessionmaker))[oid]["payment_method"] == "cod"
        response = await client.put(
            "/api/settings", json={"codGateways": ["Pay|Later", "cod"]}, headers=headers
        )
        assert response.status_code == 200
        assert (await helpers.orders(sessionmaker))[oid]["payment_method"] == "cod"

    @pytest.mark.parametrize("name", ["50%_off", "cash_on_delivery_x", "Cash On Delivery (cod)"])
    async def test_gateway_names_match_exactly_not_as_patterns(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client, name: str
    ) -> None:
        exact, lookalike = next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(exact, next_id(), "10.00", gateways=[name]),
                order(lookalike, next_id(), "10.00", gateways=["50X_offY"]),
            ],
        )
        headers = await helpers.api_headers(sessionmaker)
        assert (
            await client.put("/api/settings", json={"codGateways": [name]}, headers=headers)
        ).status_code == 200
        rows = await helpers.orders(sessionmaker)
        assert (rows[exact]["payment_method"], rows[lookalike]["payment_method"]) == ("cod", "prepaid")

    async def test_include_test_orders_changes_ltv(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [order(next_id(), cid, "9500.00"), order(next_id(), cid, "500.00", test=True)],
        )
        headers = await helpers.api_headers(sessionmaker)

        async def figures() -> Any:
            response = await client.post(
                "/api/stats/customers", json={"customerIds": [str(cid)]}, headers=headers
            )
            return response.json()["stats"][str(cid)]

        assert await figures() == {"ltv": "9500.00", "orderCount": 1, "rtoCount": 0, "tier": "bronze"}
        assert (
            await client.put("/api/settings", json={"includeTestOrders": True}, headers=headers)
        ).status_code == 200
        assert await figures() == {"ltv": "10000.00", "orderCount": 2, "rtoCount": 0, "tier": "silver"}
        assert await tier_of_record(sessionmaker, cid) == "silver"
        assert await history(sessionmaker, cid) == [(None, "silver", Decimal("10000.00"), "batch", None)]
        assert (
            await client.put("/api/settings", json={"includeTestOrders": False}, headers=headers)
        ).status_code == 200
        assert await figures() == {"ltv": "9500.00", "orderCount": 1, "rtoCount": 0, "tier": "bronze"}
        assert await tier_of_record(sessionmaker, cid) == "bronze"
        assert (await history(sessionmaker, cid))[-1] == (
            "silver",
            "bronze",
            Decimal("9500.00"),
            "batch",
            None,
        )

    async def test_an_unchanged_document_recalculates_nothing(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        await helpers.apply(sessionmaker, settings, [order(next_id(), next_id(), "10.00")])
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put("/api/settings", json=DEFAULT_SETTINGS, headers=headers)
        assert response.status_code == 200, response.text
        assert await helpers.tier_changes(sessionmaker) == []

    async def test_rto_tags_rederive_tracking(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid = next_id()
        bounced, default_tag, untagged = next_id(), next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                *(
                    order(oid, cid, total)
                    for oid, total in ((bounced, "100.00"), (default_tag, "200.00"), (untagged, "400.00"))
                ),
                *(shipped(oid, "in_transit") for oid in (bounced, default_tag, untagged)),
                order(bounced, cid, "100.00", updated=20, tags="Bounced"),
                order(default_tag, cid, "200.00", updated=20, tags="rto"),
            ],
        )
        rows = await helpers.orders(sessionmaker)
        assert [rows[o]["tracking_status"] for o in (bounced, default_tag, untagged)] == [
            "in_transit",
            "rto_initiated",
            "in_transit",
        ]
        headers = await helpers.api_headers(sessionmaker)
        response = await client.put(
            "/api/settings", json={"rtoTags": {"bounced": "rto_in_transit"}}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["rtoTags"] == {"bounced": "rto_in_transit"}
        rows = await helpers.orders(sessionmaker)
        # The map is replaced: "rto" is no RTO tag any more, "bounced" is.
        assert [rows[o]["tracking_status"] for o in (bounced, default_tag, untagged)] == [
            "rto_in_transit",
            "in_transit",
            "in_transit",
        ]
        stats = await client.post("/api/stats/customers", json={"customerIds": [str(cid)]}, headers=headers)
        assert stats.json()["stats"][str(cid)] == {
            "ltv": "600.00",
            "orderCount": 2,
            "rtoCount": 1,
            "tier": "bronze",
        }


async def history_at(
    sessionmaker: Sessionmaker, customer_id: int, *, shop: str = SHOP
) -> list[tuple[Any, ...]]:
    """(from, to, ltv, reason, order id, at) of each change, oldest first."""
    rows = await helpers.tier_changes(sessionmaker, shop=shop, customer_id=customer_id)
    return [(r["from_tier"], r["to_tier"], r["ltv"], r["reason"], r["order_id"], r["at"]) for r in rows]


class TestTierOfRecordAtItsOwnTime:
    """docs/domain.md: a trigger is evaluated at its own history time, from the orders as they stood
    then, and recorded with that time, so the tier of record and its history do not depend on the
    order deliveries arrive in (issue 14, item 8)."""

    def story(self, cid: int, first: int, second: int, fid: int) -> list[Delivery]:
        """First order (12,000) delivered at minute 10; a second (14,000) created at 15 and
        delivered at 20: silver at 10, gold at 20, whatever the arrival order."""
        return [
            order(first, cid, "12000.00"),
            shipped(first, "in_transit", minutes=2, fulfillment_id=fid),
            event(fid, first, "delivered", 10),
            order(second, cid, "14000.00", created=15),
            shipped(second, "delivered", minutes=20),
        ]

    async def test_every_arrival_order_gives_the_same_history(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, first, second, fid = next_id(), next_id(), next_id(), next_id()
        deliveries = self.story(cid, first, second, fid)
        results = set()
        for n, permutation in enumerate(
            [deliveries, list(reversed(deliveries)), [deliveries[i] for i in (3, 4, 2, 0, 1)]]
        ):
            shop = f"history-{n}-{next_id()}.myshopify.com"
            await helpers.apply(sessionmaker, settings, permutation, shop=shop)
            row = (await helpers.customer_stats(sessionmaker, shop=shop))[cid]
            results.add((row["tier_of_record"], tuple(await history_at(sessionmaker, cid, shop=shop))))
        assert results == {
            (
                "gold",
                (
                    (None, "silver", Decimal("12000.00"), "delivered", first, at(10)),
                    ("silver", "gold", Decimal("26000.00"), "delivered", second, at(20)),
                ),
            )
        }

    async def test_an_order_first_seen_already_delivered_fires_its_trigger(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cid, oid = next_id(), next_id()
        delivered = fulfillment_payload(
            next_id(), oid, shipment_status="delivered", created=at(3), updated=at(8)
        )
        await helpers.apply(sessionmaker, settings, [order(oid, cid, "30000.00", fulfillments=[delivered])])
        assert await tier_of_record(sessionmaker, cid) == "gold"
        assert await history_at(sessionmaker, cid) == [
            (None, "gold", Decimal("30000.00"), "delivered", oid, at(8))
        ]

    async def test_a_test_order_fires_no_trigger_unless_test_orders_count(
        self, sessionmaker: Sessionmaker, settings: Settings, client: Client
    ) -> None:
        cid, oid = next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [order(oid, cid, "30000.00", test=True), shipped(oid, "delivered", minutes=8)],
        )
        assert await tier_of_record(sessionmaker, cid) is None
        assert await history_at(sessionmaker, cid) == []

    async def test_rto_never_moves_back_whichever_source_raised_it(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        """A return request starts RTO, the ``rto-in-transit`` tag raises it, removing the tag
        must not lower it: the return still holds the RTO (docs/domain.md)."""
        cid, oid, rid = next_id(), next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(oid, cid, "12000.00"),
                shipped(oid, "in_transit", minutes=5),
                return_step(rid, oid, "returns/request", 10),
                order(oid, cid, "12000.00", updated=20, tags="rto-in-transit"),
                order(oid, cid, "12000.00", updated=30, tags=""),
            ],
        )
        assert await tracking(sessionmaker, oid) == "rto_in_transit"
        assert await history_at(sessionmaker, cid) == [(None, "bronze", Decimal("0.00"), "rto", oid, at(10))]

    async def test_the_python_rule_and_the_sql_figures_agree(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        """The guard for figures computed two ways: ``stats.eligible`` (SQL, the live LTV) and
        ``OrderRecord.eligible_at`` (Python, the LTV at a trigger's time). Evaluated after every
        fact, the Python rule must give the live LTV; if either rule changes alone, this fails."""
        rng = random.Random(7)
        customers = [next_id() for _ in range(3)]
        deliveries: list[Delivery] = []
        for n in range(18):
            oid = next_id()
            extra: dict[str, Any] = {}
            if rng.random() < 0.2:
                extra["cancelled_at"] = at(n + 3).isoformat()
            if rng.random() < 0.2:
                extra["test"] = True
            total = rng.choice(["0.00", "-5.00", "1200.00", "3400.50", "9999.99"])
            deliveries.append(order(oid, rng.choice(customers), total, created=n, **extra))
            fate = rng.choice(["none", "in_transit", "delivered", "rto"])
            if fate != "none":
                deliveries.append(
                    shipped(oid, "delivered" if fate == "delivered" else "in_transit", minutes=n + 1)
                )
            if fate == "rto":
                deliveries.append(return_step(next_id(), oid, "returns/request", n + 2))
        await helpers.apply(sessionmaker, settings, deliveries)
        stats_rows = await helpers.customer_stats(sessionmaker)
        rows = (await helpers.orders(sessionmaker)).values()
        assert any(r["status_log"] for r in rows)
        for cid in customers:
            records = [
                tiers.order_record(
                    order_id=r["id"],
                    created_at=r["created_at"],
                    cancelled_at=r["cancelled_at"],
                    total=r["total_amount"],
                    test=r["test"],
                    status_log=r["status_log"],
                    manual_log=r["manual_log"],
                )
                for r in rows
                if r["customer_id"] == cid
            ]
            assert tiers.ltv_at(records, at(10_000)) == stats_rows[cid]["ltv"], cid
