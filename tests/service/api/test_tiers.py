"""``GET /api/tiers/suggestion`` (docs/api.md), on SQLite and PostgreSQL, and the arithmetic behind it.

Orders arrive as deliveries applied by the real worker; every expected threshold and count is
worked out by hand in the fixture's docstring.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from service.config import Settings
from service.domain.thresholds import (
    nearest_rank,
    next_lower,
    round_down_two_significant,
    thresholds_from_percentiles,
)
from tests.support import deliveries as helpers
from tests.support.api import (
    Client,
    assert_problem,
    bearer,
    days_ago,
    get_json,
    new_api_key,
    order,
    send,
)
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import OTHER_SHOP, customer_payload, next_id

SUGGESTION = "/api/tiers/suggestion"


def buyer(total: str, **order_fields: Any) -> list[Delivery]:
    cid = next_id()
    return [
        Delivery.of("customers/create", customer_payload(cid)),
        order(next_id(), cid, total, days_ago(5), **order_fields),
    ]


class TestArithmetic:
    @pytest.mark.parametrize(
        ("amount", "expected"),
        [
            ("81566.40", "81000.00"),
            ("23456.64", "23000.00"),
            ("9074.40", "9000.00"),
            ("1000.00", "1000.00"),
            ("999.99", "990.00"),
            ("512.30", "510.00"),
            ("7.45", "7.40"),
            ("0.456", "0.45"),
            ("0.056", "0.05"),
            ("0.01", "0.01"),
            ("0.004", "0.00"),
            ("12345678901.23", "12000000000.00"),
        ],
    )
    def test_round_down_to_two_significant_digits(self, amount: str, expected: str) -> None:
        assert round_down_two_significant(Decimal(amount)) == Decimal(expected)
        assert str(round_down_two_significant(Decimal(amount))) == expected

    @pytest.mark.parametrize(("amount", "expected"), [("5000", "4900"), ("1000", "990"), ("0.10", "0.09")])
    def test_next_lower(self, amount: str, expected: str) -> None:
        assert next_lower(Decimal(amount)) == Decimal(expected)

    @pytest.mark.parametrize(
        ("percentile", "count", "rank"),
        [(95, 20, 19), (85, 20, 17), (65, 20, 13), (95, 1, 1), (65, 3, 2), (95, 100, 95), (95, 101, 96)],
    )
    def test_nearest_rank(self, percentile: int, count: int, rank: int) -> None:
        assert nearest_rank(percentile, count) == rank

    def test_ties_are_made_strictly_decreasing(self) -> None:
        same = Decimal("5000.00")
        assert thresholds_from_percentiles({"platinum": same, "gold": same, "silver": same}) == {
            "platinum": Decimal("5000.00"),
            "gold": Decimal("4900.00"),
            "silver": Decimal("4800.00"),
        }


@pytest.mark.anyio
class TestSuggestion:
    @pytest.fixture
    async def twenty(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        """Twenty buyers with one order each of i x 1234.56 (i = 1..20), plus three who count for
        no percentile: one with only a cancelled order, one with only a test order, one who never
        ordered. And a customer of another shop with a huge LTV.

        n = 20: platinum = rank ceil(0.95 x 20) = 19 → 23,456.64 → 23,000; gold = rank 17 →
        20,987.52 → 20,000; silver = rank 13 → 16,049.28 → 16,000.
        Counts: platinum i = 19, 20 (2); gold i = 17, 18 (2); silver i = 13..16 (4); bronze
        i = 1..12 and the three others (15).
        """
        deliveries: list[Delivery] = []
        for i in range(1, 21):
            deliveries += buyer(f"{Decimal('1234.56') * i:.2f}")
        deliveries += buyer("99999.00", cancelled_at=days_ago(4).isoformat())
        deliveries += buyer("88888.00", test=True)
        deliveries.append(Delivery.of("customers/create", customer_payload(next_id())))
        await send(sessionmaker, settings, deliveries)
        other = next_id()
        await send(
            sessionmaker,
            settings,
            [
                Delivery.of("customers/create", customer_payload(other)),
                order(next_id(), other, "777777.00", days_ago(3)),
            ],
            shop=OTHER_SHOP,
        )

    async def test_percentiles_rounded_down_with_counts(
        self, client: Client, sessionmaker: Sessionmaker, twenty: None
    ) -> None:
        key = await new_api_key(sessionmaker)

        body = await get_json(client, key, SUGGESTION)

        assert body == {
            "tierThresholds": {"platinum": "23000.00", "gold": "20000.00", "silver": "16000.00"},
            "counts": {"platinum": 2, "gold": 2, "silver": 4, "bronze": 15},
            "basedOn": 20,
        }

    async def test_nothing_is_saved(self, client: Client, sessionmaker: Sessionmaker, twenty: None) -> None:
        key = await new_api_key(sessionmaker)
        before = await get_json(client, key, "/api/settings")

        await get_json(client, key, SUGGESTION)

        assert await get_json(client, key, "/api/settings") == before
        assert before["tierThresholds"] == {"platinum": "50000.00", "gold": "25000.00", "silver": "10000.00"}

    async def test_applying_it_gives_the_counts_it_announced(
        self, client: Client, sessionmaker: Sessionmaker, twenty: None
    ) -> None:
        key = await new_api_key(sessionmaker)
        suggestion = await get_json(client, key, SUGGESTION)

        saved = await client.put(
            "/api/settings", json={"tierThresholds": suggestion["tierThresholds"]}, headers=bearer(key)
        )

        assert saved.status_code == 200, saved.text
        overview = await get_json(client, key, "/api/reports/overview")
        assert overview["tiers"] == suggestion["counts"]

    async def test_equal_ltvs_give_decreasing_thresholds(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        """Three buyers of 1000.00: every percentile is 1000.00 → 1000, 990, 980; all platinum."""
        await send(sessionmaker, settings, [d for _ in range(3) for d in buyer("1000.00")])
        key = await new_api_key(sessionmaker)

        body = await get_json(client, key, SUGGESTION)

        assert body["tierThresholds"] == {"platinum": "1000.00", "gold": "990.00", "silver": "980.00"}
        assert body["counts"] == {"platinum": 3, "gold": 0, "silver": 0, "bronze": 0}

    async def test_test_orders_count_when_the_shop_includes_them(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        """With includeTestOrders on, a test order is eligible: one buyer of 8,888.00 → 8,800,
        8,700, 8,600."""
        await helpers.set_shop_settings(sessionmaker, {"includeTestOrders": True})
        await send(sessionmaker, settings, buyer("8888.00", test=True))
        key = await new_api_key(sessionmaker)

        body = await get_json(client, key, SUGGESTION)

        assert body["tierThresholds"] == {"platinum": "8800.00", "gold": "8700.00", "silver": "8600.00"}
        assert body["basedOn"] == 1

    async def test_no_eligible_order_is_a_409(
        self, client: Client, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        await send(sessionmaker, settings, buyer("500.00", cancelled_at=days_ago(1).isoformat()))
        key = await new_api_key(sessionmaker)

        problem = assert_problem(await client.get(SUGGESTION, headers=bearer(key)), 409)

        assert "eligible order" in problem["detail"]

    async def test_needs_credentials(self, client: Client) -> None:
        assert_problem(await client.get(SUGGESTION), 401)
