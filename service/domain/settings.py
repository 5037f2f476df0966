"""Per-shop settings (SPEC §4.3): tier thresholds, COD gateways, RTO tags, test orders."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Shop

shops = Shop.__table__  # type: ignore[attr-defined]

DEFAULT_TIER_THRESHOLDS: dict[str, Decimal] = {
    "platinum": Decimal("50000.00"),
    "gold": Decimal("25000.00"),
    "silver": Decimal("10000.00"),
}
DEFAULT_COD_GATEWAYS: tuple[str, ...] = ("Cash on Delivery (COD)", "cash_on_delivery", "cod")
DEFAULT_RTO_TAGS: dict[str, str] = {
    "rto": "rto_initiated",
    "rto-initiated": "rto_initiated",
    "rto-in-transit": "rto_in_transit",
    "rto-delivered": "rto_delivered",
}


@dataclass(frozen=True, slots=True)
class ShopSettings:
    tier_thresholds: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_TIER_THRESHOLDS))
    cod_gateways: tuple[str, ...] = DEFAULT_COD_GATEWAYS
    rto_tags: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RTO_TAGS))
    include_test_orders: bool = False

    @property
    def cod_gateway_set(self) -> frozenset[str]:
        return frozenset(g.strip().lower() for g in self.cod_gateways)

    @classmethod
    def from_stored(cls, stored: dict[str, Any] | None) -> ShopSettings:
        """Settings from the shop row's JSON (validated when written), defaults for absent keys."""
        stored = stored or {}
        thresholds = stored.get("tierThresholds")
        return cls(
            tier_thresholds=(
                {k: Decimal(str(v)) for k, v in thresholds.items()}
                if isinstance(thresholds, dict)
                else dict(DEFAULT_TIER_THRESHOLDS)
            ),
            cod_gateways=tuple(stored.get("codGateways") or DEFAULT_COD_GATEWAYS),
            rto_tags={k.lower(): v for k, v in (stored.get("rtoTags") or DEFAULT_RTO_TAGS).items()},
            include_test_orders=bool(stored.get("includeTestOrders", False)),
        )


async def get_shop_settings(session: AsyncSession, shop_id: int) -> ShopSettings:
    stored = await session.scalar(sa.select(shops.c.settings).where(shops.c.id == shop_id))
    return ShopSettings.from_stored(stored if isinstance(stored, dict) else None)


def payment_method(gateway_names: list[str], settings: ShopSettings) -> str:
    """``cod`` when any gateway name is one of the shop's COD gateways (case-insensitive)."""
    cod = settings.cod_gateway_set
    return "cod" if any(name.strip().lower() in cod for name in gateway_names) else "prepaid"
