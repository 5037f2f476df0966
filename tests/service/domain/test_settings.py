"""Validation of ``PUT /api/settings`` documents (``service.domain.settings.validate_update``),
without a database."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from service.domain.settings import (
    ShopSettings,
    gateway_key,
    payment_method,
    payment_method_sql,
    validate_update,
)

GOOD = {"platinum": "50000", "gold": "25000.5", "silver": 10000}


def errors_of(thresholds: Any) -> list[dict[str, str]]:
    return validate_update({"tierThresholds": thresholds})[1]


class TestTierThresholds:
    def test_good_thresholds_are_normalized_to_two_decimals(self) -> None:
        clean, errors = validate_update({"tierThresholds": GOOD})

        assert errors == []
        assert clean == {"tierThresholds": {"platinum": "50000.00", "gold": "25000.50", "silver": "10000.00"}}

    @pytest.mark.parametrize(
        "thresholds",
        [
            {"platinum": "3", "gold": "2"},
            GOOD | {"diamond": "90000"},
            ["50000", "25000", "10000"],
            "50000",
        ],
    )
    def test_every_threshold_tier_and_nothing_else(self, thresholds: Any) -> None:
        assert errors_of(thresholds) == [
            {"field": "tierThresholds", "message": "must be an object with platinum, gold and silver"}
        ]

    def test_each_must_be_below_the_one_above(self) -> None:
        assert errors_of({"platinum": "100", "gold": "100", "silver": "200"}) == [
            {"field": "tierThresholds.gold", "message": "must be less than platinum"},
            {"field": "tierThresholds.silver", "message": "must be less than gold"},
        ]

    @pytest.mark.parametrize(
        ("silver", "message"),
        [
            ("x", "must be a decimal amount"),
            (True, "must be a decimal amount"),
            ("NaN", "must be a decimal amount"),
            ("0", "must be positive"),
            ("-5", "must be positive"),
            ("10.001", "must have at most two decimals"),
            ("1e14", "must have at most two decimals"),
        ],
    )
    def test_each_amount_is_checked_and_named(self, silver: Any, message: str) -> None:
        assert errors_of(GOOD | {"silver": silver}) == [
            {"field": "tierThresholds.silver", "message": message}
        ]


def test_unknown_settings_are_named() -> None:
    assert validate_update({"tiers": {}})[1] == [{"field": "tiers", "message": "unknown setting"}]


class TestCodRuleInPythonAndSql:
    """``payment_method`` decides at intake; ``payment_method_sql`` re-derives stored orders when
    ``codGateways`` changes. Both must say the same for any gateway names."""

    SETTINGS = ShopSettings(cod_gateways=("Cash on Delivery (COD)", "cod", "50%_off|cash", "Pay_Later"))

    @pytest.mark.parametrize(
        "names",
        [
            ["Cash on Delivery (COD)"],
            ["  cash on delivery (cod) "],
            ["razorpay", "COD"],
            ["razorpay"],
            [],
            ["codx"],
            ["50%_off|cash"],
            ["50%_off/cash"],
            ["50x_off/cash"],
            ["payxlater"],
            ["pay_later"],
            ["cash", "on delivery"],
        ],
    )
    def test_they_agree(self, names: list[str]) -> None:
        key = sa.column("gateway_key", sa.String)
        engine = sa.create_engine("sqlite://")
        with engine.connect() as conn:
            in_sql = conn.scalar(
                sa.select(payment_method_sql(key, self.SETTINGS)).select_from(
                    sa.select(sa.literal(gateway_key(names)).label("gateway_key")).subquery()
                )
            )

        assert in_sql == payment_method(names, self.SETTINGS)

    def test_no_cod_gateways_means_all_prepaid(self) -> None:
        engine = sa.create_engine("sqlite://")
        with engine.connect() as conn:
            in_sql = conn.scalar(
                sa.select(payment_method_sql(sa.literal("|cod|"), ShopSettings(cod_gateways=())))
            )
        assert in_sql == "prepaid"
