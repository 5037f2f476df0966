"""Geometry of the two small overview charts, drawn as inline SVG by the templates.

Only numbers and short labels come out of here; ``overview.html`` turns them into ``<rect>`` and
``<text>`` elements (Jinja escapes the labels). No JavaScript is involved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from service.domain.reports import MonthTotal
from service.domain.tiers import TIERS
from service.ui.display import Display

TIER_WIDTH = 360
TIER_LABEL_WIDTH = 80
TIER_ROW = 28
MONTH_WIDTH = 480
MONTH_HEIGHT = 160
MONTH_TOP = 18
MONTH_AXIS = 22


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value_label: str
    css_class: str
    x: float
    y: float
    width: float
    height: float
    #: Where the value label goes.
    text_x: float
    text_y: float


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    summary: str
    #: A line of text drawn at the top left (the month chart's scale).
    note: str = ""


def tier_chart(counts: Mapping[str, int], fmt: Display) -> Chart:
    """Horizontal bars, one per tier, longest = most customers."""
    largest = max([*counts.values(), 1])
    room = TIER_WIDTH - TIER_LABEL_WIDTH - 60
    bars = []
    for row, tier in enumerate(TIERS):
        count = counts.get(tier, 0)
        width = room * count / largest
        y = row * TIER_ROW + 4
        bars.append(
            Bar(
                label=fmt.tier(tier),
                value_label=fmt.number(count),
                css_class=f"bar-{tier}",
                x=TIER_LABEL_WIDTH,
                y=y,
                width=round(width, 1),
                height=TIER_ROW - 10,
                text_x=round(TIER_LABEL_WIDTH + width + 6, 1),
                text_y=y + TIER_ROW - 15,
            )
        )
    summary = ", ".join(f"{fmt.tier(t)} {counts.get(t, 0)}" for t in TIERS)
    return Chart(TIER_WIDTH, TIER_ROW * len(TIERS) + 4, bars, f"Customers by tier: {summary}")


def month_chart(months: Sequence[MonthTotal], fmt: Display) -> Chart:
    """One column per month, tallest = the month with the most LTV added."""
    largest = max([m.ltv for m in months] + [Decimal("0.01")])
    slot = MONTH_WIDTH / max(len(months), 1)
    plot = MONTH_HEIGHT - MONTH_TOP - MONTH_AXIS
    bars = []
    for index, month in enumerate(months):
        height = float(plot * (month.ltv / largest)) if month.ltv > 0 else 0.0
        x = index * slot + slot * 0.15
        y = MONTH_TOP + plot - height
        bars.append(
            Bar(
                label=f"{month.month:%b}",
                value_label=fmt.money(month.ltv),
                css_class="bar-month",
                x=round(x, 1),
                y=round(y, 1),
                width=round(slot * 0.7, 1),
                height=round(height, 1),
                text_x=round(index * slot + slot / 2, 1),
                text_y=MONTH_HEIGHT - 6,
            )
        )
    best = max(months, key=lambda m: m.ltv, default=None)
    summary = (
        f"LTV added per month, {months[0].month:%b %Y} to {months[-1].month:%b %Y}; "
        f"highest {fmt.money(best.ltv)} in {best.month:%B %Y}"
        if best is not None and months
        else "No months"
    )
    note = f"Highest month: {fmt.money(best.ltv)}" if best is not None and best.ltv > 0 else "No LTV yet"
    return Chart(MONTH_WIDTH, MONTH_HEIGHT, bars, summary, note)
