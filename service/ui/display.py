"""How the merchant pages show figures: money in the shop's currency, times in its time zone.

Templates call one :class:`Display` per request (``fmt`` in the template context). Everything it
returns is plain text; Jinja escapes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.domain.tier_levels import LABELS
from service.types import TWO_PLACES

logger = logging.getLogger(__name__)

DEFAULT_CURRENCY = "INR"
SYMBOLS = {
    "INR": "₹",
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "AUD": "A$",
    "CAD": "CA$",
    "NZD": "NZ$",
    "SGD": "S$",
    "HKD": "HK$",
}
#: Why a tier of record changed (docs/domain.md reasons), as a merchant reads it.
REASON_LABELS = {
    "delivered": "Order delivered",
    "rto": "Order returned to origin (RTO)",
    "manual": "Tracking status set by an integration",
    "batch": "Tiers recalculated",
    "thresholds": "Tier thresholds changed",
}
#: Shopify's order financial statuses.
FINANCIAL_LABELS = {
    "pending": "Payment pending",
    "authorized": "Authorized",
    "partially_paid": "Partially paid",
    "paid": "Paid",
    "partially_refunded": "Partially refunded",
    "refunded": "Refunded",
    "voided": "Voided",
    "expired": "Expired",
}
#: Short scales for chart labels: lakh and crore for INR, thousand/million/billion otherwise.
INDIAN_SCALES = ((Decimal(10) ** 7, "Cr"), (Decimal(10) ** 5, "L"), (Decimal(10) ** 3, "K"))
SCALES = ((Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"), (Decimal(10) ** 3, "K"))


def _zone(name: str | None) -> tzinfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning("ui.unknown_timezone", extra={"timezone": name[:64]})
        return UTC


def _group(digits: str, indian: bool) -> str:
    """``1234567`` → ``1,234,567`` (or ``12,34,567``: lakh and crore grouping for INR)."""
    if len(digits) <= 3:
        return digits
    head, tail = digits[:-3], digits[-3:]
    size = 2 if indian else 3
    parts: list[str] = []
    while head:
        parts.insert(0, head[-size:])
        head = head[:-size]
    return ",".join([*parts, tail])


@dataclass(frozen=True, slots=True)
class Display:
    currency: str
    zone: tzinfo

    @classmethod
    def for_shop(cls, currency: str | None, iana_timezone: str | None) -> Display:
        code = (currency or "").strip().upper() or DEFAULT_CURRENCY
        return cls(currency=code, zone=_zone(iana_timezone))

    @property
    def zone_name(self) -> str:
        return str(getattr(self.zone, "key", "UTC"))

    def money(self, amount: Decimal | None) -> str:
        """Two decimals with the currency's symbol (``₹1,23,456.00``), else its code (``12.00 XYZ``)."""
        if amount is None:
            return "—"
        value = amount.quantize(TWO_PLACES, rounding=ROUND_HALF_UP)
        sign = "-" if value < 0 else ""
        whole, _, cents = f"{abs(value):.2f}".partition(".")
        number = f"{_group(whole, self.currency == 'INR')}.{cents}"
        symbol = SYMBOLS.get(self.currency)
        return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {self.currency}"

    def compact_money(self, amount: Decimal) -> str:
        """A short label with the currency: ``₹1.3L``, ``$1.2M``, ``950 XYZ``."""
        number = self.compact_number(abs(amount))
        sign = "-" if amount < 0 else ""
        symbol = SYMBOLS.get(self.currency)
        return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {self.currency}"

    def compact_number(self, amount: Decimal) -> str:
        """A short amount for charts (the currency is named once, on the axis): ``1.3L``,
        ``45K``, ``1.2M``, ``950`` (whole units; lakh and crore for INR)."""
        sign = "-" if amount < 0 else ""
        value = abs(amount)
        number = f"{value.quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"
        scales = INDIAN_SCALES if self.currency == "INR" else SCALES
        for index, (size, suffix) in enumerate(scales):
            if value < size:
                continue
            places = Decimal("0.1") if value < size * 100 else Decimal(1)
            scaled = (value / size).quantize(places, rounding=ROUND_HALF_UP)
            if index > 0 and scaled * size >= scales[index - 1][0]:  # 99,990 is ₹1L, not ₹100K
                size, suffix = scales[index - 1]
                scaled = (value / size).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
            number = f"{scaled.normalize():f}{suffix}"
            break
        return f"{sign}{number}"

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def when(self, moment: datetime | None) -> str:
        """``1 Mar 2026, 17:30 IST`` in the shop's time zone."""
        if moment is None:
            return "—"
        local = self.local(moment)
        return f"{local.day} {local:%b %Y, %H:%M} {local.tzname() or self.zone_name}"

    def day(self, moment: datetime | date | None) -> str:
        """``1 Mar 2026`` (a datetime is first moved to the shop's time zone)."""
        if moment is None:
            return "—"
        day = self.local(moment).date() if isinstance(moment, datetime) else moment
        return f"{day.day} {day:%b %Y}"

    @staticmethod
    def iso(moment: datetime | None) -> str:
        """For ``<time datetime>``."""
        return "" if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

    @staticmethod
    def percent(rate: float | None) -> str:
        return "—" if rate is None else f"{rate * 100:.1f}%"

    @staticmethod
    def number(value: int | float | None) -> str:
        if value is None:
            return "—"
        return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"

    @staticmethod
    def tier(name: str | None) -> str:
        return LABELS.get(name or "", "—")

    @staticmethod
    def name(first: str | None, last: str | None, email: str | None, customer_id: int) -> str:
        """A customer's name, else their email, else ``Customer 123``."""
        full = " ".join(part.strip() for part in (first, last) if part and part.strip())
        return full or (email or "").strip() or f"Customer {customer_id}"

    @staticmethod
    def reason(value: str) -> str:
        """``delivered`` → ``Order delivered``; an unknown reason is shown as stored."""
        return REASON_LABELS.get(value, value.replace("_", " "))

    @staticmethod
    def financial(value: str | None) -> str:
        """Shopify's ``financial_status`` as words (``partially_refunded`` → ``Partially refunded``)."""
        if not value:
            return "—"
        return FINANCIAL_LABELS.get(value, value.replace("_", " ").capitalize())

    @staticmethod
    def status(value: str | None) -> str:
        """``rto_in_transit`` → ``RTO in transit``, ``out_for_delivery`` → ``Out for delivery``;
        None → ``Not shipped``; an unknown carrier value as stored, underscores as spaces."""
        if value is None:
            return "Not shipped"
        words = value.replace("_", " ")
        if words.startswith("rto "):
            return "RTO " + words[4:]
        return words[:1].upper() + words[1:]
