"""The tiers declared once (``service/domain/tier_levels.py``; docs/domain.md, "Tiers").

The declaration checks itself on import, and everything else derives from it. That a fifth tier
declared in one line reaches every layer is ``test_fifth_tier.py`` (a process of its own).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from service.domain import tier_levels
from service.domain.tier_levels import LEVELS, TierLevel
from service.domain.tiers import tier_for, tier_sql
from service.types import Money


def level(name: str, threshold: str | None, percentile: int | None) -> TierLevel:
    return TierLevel(
        name,
        name.title(),
        None if threshold is None else Decimal(threshold),
        percentile,
        "#000",
        "#fff",
        "#000",
    )


class TestDerived:
    def test_names_highest_first_and_the_base_tier_last(self) -> None:
        assert tier_levels.TIERS == ("platinum", "gold", "silver", "bronze")
        assert tier_levels.THRESHOLD_TIERS == ("platinum", "gold", "silver")
        assert tier_levels.BASE_TIER == "bronze"

    def test_defaults_and_percentiles_follow_the_declaration(self) -> None:
        assert {
            "platinum": Decimal("50000.00"),
            "gold": Decimal("25000.00"),
            "silver": Decimal("10000.00"),
        } == tier_levels.DEFAULT_TIER_THRESHOLDS
        assert tier_levels.PERCENTILES == {"platinum": 95, "gold": 85, "silver": 65}

    def test_neighbours(self) -> None:
        assert tier_levels.next_above("gold") == "platinum"
        assert tier_levels.next_above("platinum") is None
        assert tier_levels.next_below("silver") == "bronze"
        assert tier_levels.next_below("bronze") is None

    def test_spoken_list(self) -> None:
        assert tier_levels.spoken_list() == "platinum, gold, silver or bronze"
        assert tier_levels.spoken_list(("gold",), "and") == "gold"


class TestTheDeclarationChecksItself:
    def test_the_shipped_declaration_holds(self) -> None:
        tier_levels._check(LEVELS)

    @pytest.mark.parametrize(
        ("levels", "problem"),
        [
            ((level("bronze", "1.00", None), level("silver", "2.00", 50)), "base tier"),
            ((level("bronze", None, None),), "at least one tier"),
            ((level("bronze", None, None), level("bronze", "2.00", 50)), "distinct"),
            ((level("bronze", None, None), level("Silver", "2.00", 50)), "distinct"),
            ((level("bronze", None, None), level("silver", None, 50)), "needs a default threshold"),
            (
                (level("bronze", None, None), level("silver", "5.00", 50), level("gold", "5.00", 60)),
                "must increase",
            ),
            (
                (level("bronze", None, None), level("silver", "5.00", 60), level("gold", "9.00", 60)),
                "must increase",
            ),
            ((level("bronze", None, None), level("silver", "5.00", 100)), "must increase"),
        ],
    )
    def test_a_wrong_declaration_is_refused(self, levels: tuple[TierLevel, ...], problem: str) -> None:
        with pytest.raises(ValueError, match=problem):
            tier_levels._check(levels)


class TestTheRuleAndItsSql:
    """``tier_for`` (Python, reads) and ``tier_sql`` (SQL, tier filters and counts) are one rule."""

    THRESHOLDS = {"platinum": Decimal("300.00"), "gold": Decimal("200.00"), "silver": Decimal("100.00")}

    @pytest.mark.parametrize(
        "ltv", ["0", "-5.00", "99.99", "100.00", "100.01", "199.99", "200.00", "299.99", "300.00", "1e13"]
    )
    def test_they_agree_at_every_boundary(self, ltv: str) -> None:
        engine = sa.create_engine("sqlite://")
        with engine.connect() as conn:
            in_sql = conn.scalar(sa.select(tier_sql(sa.literal(Decimal(ltv), Money()), self.THRESHOLDS)))

        assert in_sql == tier_for(Decimal(ltv), self.THRESHOLDS)
