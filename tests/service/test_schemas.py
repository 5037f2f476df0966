"""Read models serialize money and ids themselves (``service.schemas.Amount``, ``ShopifyId``), and
the OpenAPI document describes them as the strings they are on the wire."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from service.app import create_app
from service.schemas import CustomerStatsRead, TierHistoryRead
from tests.conftest import make_settings

BIGGEST_ID = 2**64 - 1


class TestOnTheWire:
    @pytest.mark.parametrize(
        ("ltv", "wire"),
        [("12.345", "12.35"), ("12.344", "12.34"), ("-0.005", "-0.01"), ("7", "7.00"), ("0", "0.00")],
    )
    def test_money_is_a_string_with_two_decimals_half_up(self, ltv: str, wire: str) -> None:
        read = CustomerStatsRead(ltv=Decimal(ltv), order_count=1, rto_count=0, tier="gold")

        assert read.model_dump(mode="json", by_alias=True)["ltv"] == wire
        assert read.ltv == Decimal(ltv)

    def test_an_id_is_a_string_of_all_its_digits(self) -> None:
        entry = TierHistoryRead.model_validate(
            {
                "from": None,
                "to": "gold",
                "ltv": Decimal(1),
                "reason": "delivered",
                "orderId": BIGGEST_ID,
                "orderName": "#1001",
                "at": "2026-01-01T00:00:00Z",
            }
        )

        assert entry.model_dump(mode="json", by_alias=True)["orderId"] == str(BIGGEST_ID)

    def test_a_missing_id_stays_null(self) -> None:
        entry = TierHistoryRead.model_validate(
            {
                "from": "silver",
                "to": "gold",
                "ltv": Decimal(1),
                "reason": "batch",
                "orderId": None,
                "orderName": None,
                "at": "2026-01-01T00:00:00Z",
            }
        )

        assert entry.model_dump(mode="json", by_alias=True)["orderId"] is None


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('openapi') / 'x.db'}"
    document: dict[str, Any] = create_app(make_settings(url)).openapi_schema.to_schema()
    return document["components"]["schemas"]  # type: ignore[no-any-return]


class TestInTheOpenAPIDocument:
    def test_money_is_a_patterned_string(self, components: dict[str, Any]) -> None:
        assert components["CustomerStatsRead"]["properties"]["ltv"]["type"] == "string"
        assert components["CustomerStatsRead"]["properties"]["ltv"]["pattern"] == r"^-?\d+\.\d{2}$"

    def test_ids_are_patterned_strings_even_when_nullable(self, components: dict[str, Any]) -> None:
        order = components["OrderRead"]["properties"]
        assert order["id"]["type"] == "string"
        assert order["id"]["pattern"] == r"^\d+$"
        assert {"type": "null"} in order["customerId"]["oneOf"]
        assert {s.get("type") for s in order["customerId"]["oneOf"]} == {"string", "null"}

    def test_nothing_money_or_id_is_a_number(self, components: dict[str, Any]) -> None:
        numeric = [
            f"{name}.{field}"
            for name, schema in components.items()
            for field, spec in schema.get("properties", {}).items()
            if (field in {"id", "ltv", "aov", "spend"} or field.endswith(("Id", "Ltv", "Amount", "Total")))
            and spec.get("type") in {"integer", "number"}
        ]
        assert numeric == []
