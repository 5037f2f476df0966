"""The spend tiers, declared once (docs/domain.md, "Tiers").

Everything that knows a tier reads this table: the rule and its SQL (``tiers.tier_for``,
``tiers.tier_sql``), settings validation and defaults, the threshold suggestion, the API schemas
(the ``Tier`` enum, the per-tier objects), the filter of ``GET /api/customers``, the pages (names,
labels, colours, the settings form) and the page script (through the ``tierline-tiers`` meta tag).
Adding a tier is one more line here; renaming one also needs the stored data migrated.

Pure: no database, no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class TierLevel:
    name: str
    label: str
    #: The LTV from which a customer is in this tier by default; ``None`` for the base tier
    #: (everyone below the next one).
    default_threshold: Decimal | None
    #: The percentile of the shop's LTVs the suggested threshold is drawn at (``None``: base).
    suggested_percentile: int | None
    #: Colours on the pages: text, background of the badge, and bar in the chart.
    colour: str
    background: str
    bar: str


#: Lowest first. Thresholds and percentiles strictly increase; only the first has neither.
LEVELS: tuple[TierLevel, ...] = (
    TierLevel("bronze", "Bronze", None, None, "#8a3b12", "#fff1e8", "#a5481b"),
    TierLevel("silver", "Silver", Decimal("10000.00"), 65, "#374151", "#f1f3f5", "#6b7280"),
    TierLevel("gold", "Gold", Decimal("25000.00"), 85, "#7a4d00", "#fff5db", "#946200"),
    TierLevel("platinum", "Platinum", Decimal("50000.00"), 95, "#3b3f8f", "#eef0ff", "#4c51a8"),
)


def _check(levels: tuple[TierLevel, ...]) -> None:
    """The declaration's own invariants, checked on import (a wrong table never starts)."""
    base, *ranked = levels
    if base.default_threshold is not None or base.suggested_percentile is not None:
        raise ValueError(f"the base tier {base.name!r} has no threshold and no percentile")
    if not ranked:
        raise ValueError("at least one tier above the base tier")
    names = [level.name for level in levels]
    if len(set(names)) != len(names) or not all(n.isascii() and n.isalpha() and n.islower() for n in names):
        raise ValueError(f"tier names must be distinct lower-case words: {names}")
    previous_threshold, previous_percentile = Decimal(0), 0
    for level in ranked:
        threshold, percentile = level.default_threshold, level.suggested_percentile
        if threshold is None or percentile is None:
            raise ValueError(f"tier {level.name!r} needs a default threshold and a percentile")
        if not (threshold > previous_threshold and 0 < percentile < 100 and percentile > previous_percentile):
            raise ValueError(f"tier {level.name!r}: thresholds and percentiles must increase")
        previous_threshold, previous_percentile = threshold, percentile


_check(LEVELS)

BY_NAME: dict[str, TierLevel] = {level.name: level for level in LEVELS}
#: Highest first: the order of the API's objects, the filter chips and the charts.
TIERS: tuple[str, ...] = tuple(level.name for level in reversed(LEVELS))
#: The tiers that have a threshold, highest first (``tierThresholds``' keys).
THRESHOLD_TIERS: tuple[str, ...] = TIERS[:-1]
BASE_TIER: str = LEVELS[0].name
TIER_RANK: dict[str, int] = {level.name: rank for rank, level in enumerate(LEVELS)}
DEFAULT_TIER_THRESHOLDS: dict[str, Decimal] = {
    name: threshold for name in THRESHOLD_TIERS if (threshold := BY_NAME[name].default_threshold) is not None
}
PERCENTILES: dict[str, int] = {
    name: percentile
    for name in THRESHOLD_TIERS
    if (percentile := BY_NAME[name].suggested_percentile) is not None
}
LABELS: dict[str, str] = {level.name: level.label for level in LEVELS}


def label(name: str) -> str:
    return LABELS[name]


def next_below(name: str) -> str | None:
    """The tier just below ``name`` (``None`` for the base tier)."""
    rank = TIER_RANK[name]
    return LEVELS[rank - 1].name if rank else None


def next_above(name: str) -> str | None:
    rank = TIER_RANK[name]
    return LEVELS[rank + 1].name if rank + 1 < len(LEVELS) else None


def spoken_list(names: tuple[str, ...] = TIERS, conjunction: str = "or") -> str:
    """``platinum, gold, silver or bronze``: for messages and descriptions."""
    *first, last = names
    return f"{', '.join(first)} {conjunction} {last}" if first else last
