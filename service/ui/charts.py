"""Geometry of the two small overview charts, drawn as inline SVG by the templates.

Only numbers and short labels come out of here; ``overview.html`` turns them into ``<rect>``,
``<line>`` and ``<text>`` elements (Jinja escapes the labels). No JavaScript is involved.

* Customers by tier: one horizontal bar per tier, its count at the end of the bar.
* LTV added per month: one column per month with its value above it, a y axis with four
  gridlines at round amounts (in the shop's currency), month names under the columns and the
  year under the first month and under each January.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from service.domain.reports import MonthTotal
from service.domain.tier_levels import TIERS
from service.ui.display import Display

TIER_WIDTH = 360
TIER_LABEL_WIDTH = 80
TIER_ROW = 28
MONTH_WIDTH = 600
MONTH_HEIGHT = 240
MONTH_LEFT = 56  # y-axis labels
MONTH_RIGHT = 8
MONTH_TOP = 20  # room for the value above the tallest column
MONTH_BOTTOM = 38  # month names, then years
GRIDLINES = 4
NICE_STEPS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    x: float
    y: float
    #: SVG ``text-anchor``: ``start``, ``middle`` or ``end``.
    anchor: str = "start"
    css_class: str = "label"


@dataclass(frozen=True, slots=True)
class Bar:
    css_class: str
    x: float
    y: float
    width: float
    height: float
    #: The category (``Gold``, ``Mar``) and the value (``3``, ``₹1.3L``) drawn by the bar.
    label: Text
    value: Text
    #: The full figure, for the bar's tooltip (``₹1,30,540.70``).
    title: str


@dataclass(frozen=True, slots=True)
class Gridline:
    y: float
    x1: float
    x2: float
    label: Text


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    summary: str
    gridlines: list[Gridline] = field(default_factory=list)
    #: Extra text: the years under the month names, the axis title.
    texts: list[Text] = field(default_factory=list)


def tier_chart(counts: Mapping[str, int], fmt: Display) -> Chart:
    """Horizontal bars, one per tier, longest = most customers."""
    largest = max([*counts.values(), 1])
    room = TIER_WIDTH - TIER_LABEL_WIDTH - 60
    bars = []
    for row, tier in enumerate(TIERS):
        count = counts.get(tier, 0)
        width = room * count / largest
        y = row * TIER_ROW + 4
        text_y = y + TIER_ROW - 15
        bars.append(
            Bar(
                css_class=f"bar-{tier}",
                x=TIER_LABEL_WIDTH,
                y=y,
                width=round(width, 1),
                height=TIER_ROW - 10,
                label=Text(fmt.tier(tier), 0, text_y),
                value=Text(
                    fmt.number(count), round(TIER_LABEL_WIDTH + width + 6, 1), text_y, css_class="value"
                ),
                title=f"{fmt.tier(tier)}: {fmt.number(count)} customers",
            )
        )
    summary = ", ".join(f"{fmt.tier(t)} {counts.get(t, 0)}" for t in TIERS)
    return Chart(TIER_WIDTH, TIER_ROW * len(TIERS) + 4, bars, f"Customers by tier: {summary}")


def nice_step(largest: Decimal, intervals: int = GRIDLINES) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 times a power of ten (and at least 1) whose ``intervals``
    multiples reach ``largest``: the gridline step of the month chart."""
    raw = largest / intervals
    if raw <= 1:
        return Decimal(1)
    magnitude = Decimal(1).scaleb(raw.adjusted())
    return next(step * magnitude for step in NICE_STEPS if step * magnitude >= raw)


def month_chart(months: Sequence[MonthTotal], fmt: Display) -> Chart:
    """One column per month with its value, on a y axis of round amounts; months and years below."""
    largest = max([m.ltv for m in months] + [Decimal(0)])
    step = nice_step(largest)
    top = step * GRIDLINES
    plot_width = MONTH_WIDTH - MONTH_LEFT - MONTH_RIGHT
    plot_height = MONTH_HEIGHT - MONTH_TOP - MONTH_BOTTOM
    baseline = MONTH_TOP + plot_height
    slot = plot_width / max(len(months), 1)

    gridlines = []
    for index in range(GRIDLINES + 1):
        amount = step * index
        y = round(baseline - plot_height * float(amount / top), 1)
        gridlines.append(
            Gridline(
                y=y,
                x1=MONTH_LEFT,
                x2=MONTH_WIDTH - MONTH_RIGHT,
                label=Text(fmt.compact_number(amount), MONTH_LEFT - 6, y + 4, "end", "axis"),
            )
        )

    bars = []
    texts = []
    for index, month in enumerate(months):
        height = plot_height * float(month.ltv / top) if month.ltv > 0 else 0.0
        center = round(MONTH_LEFT + index * slot + slot / 2, 1)
        y = baseline - height
        bars.append(
            Bar(
                css_class="bar-month",
                x=round(MONTH_LEFT + index * slot + slot * 0.15, 1),
                y=round(y, 1),
                width=round(slot * 0.7, 1),
                height=round(height, 1),
                label=Text(f"{month.month:%b}", center, baseline + 15, "middle"),
                value=Text(fmt.compact_number(month.ltv), center, round(y - 5, 1), "middle", "value"),
                title=f"{month.month:%B %Y}: {fmt.money(month.ltv)} from {month.orders} orders",
            )
        )
        if index == 0 or month.month.month == 1:
            texts.append(Text(f"{month.month:%Y}", center, baseline + 31, "middle", "axis"))
    texts.append(Text(fmt.currency, 0, 12, "start", "axis"))

    best = max(months, key=lambda m: m.ltv, default=None)
    summary = (
        f"LTV added per month, {months[0].month:%b %Y} to {months[-1].month:%b %Y}; "
        f"highest {fmt.money(best.ltv)} in {best.month:%B %Y}"
        if best is not None and months
        else "No months"
    )
    return Chart(MONTH_WIDTH, MONTH_HEIGHT, bars, summary, gridlines, texts)
