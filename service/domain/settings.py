"""Per-shop settings (SPEC §4.3): tier thresholds, COD gateways, RTO tags, test orders."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.tracking import RTO_STATES
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
class WriteBackSettings:
    """``writeBack`` (SPEC §6.2): what tierline writes into the shop."""

    enabled: bool = True
    customer_tags: bool = True
    order_risk_tag: bool = True
    risk_min_cod_rto: int = 1

    @classmethod
    def from_stored(cls, stored: Any) -> WriteBackSettings:
        stored = stored if isinstance(stored, dict) else {}
        return cls(
            enabled=bool(stored.get("enabled", True)),
            customer_tags=bool(stored.get("customerTags", True)),
            order_risk_tag=bool(stored.get("orderRiskTag", True)),
            risk_min_cod_rto=max(1, int(stored.get("riskMinCodRto", 1))),
        )

    def document(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "customerTags": self.customer_tags,
            "orderRiskTag": self.order_risk_tag,
            "riskMinCodRto": self.risk_min_cod_rto,
        }


@dataclass(frozen=True, slots=True)
class ShopSettings:
    tier_thresholds: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_TIER_THRESHOLDS))
    cod_gateways: tuple[str, ...] = DEFAULT_COD_GATEWAYS
    rto_tags: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RTO_TAGS))
    include_test_orders: bool = False
    write_back: WriteBackSettings = field(default_factory=WriteBackSettings)

    @property
    def cod_gateway_set(self) -> frozenset[str]:
        return frozenset(normalize_gateway(g) for g in self.cod_gateways)

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
            write_back=WriteBackSettings.from_stored(stored.get("writeBack")),
        )


async def get_shop_settings(session: AsyncSession, shop_id: int) -> ShopSettings:
    stored = await session.scalar(sa.select(shops.c.settings).where(shops.c.id == shop_id))
    return ShopSettings.from_stored(stored if isinstance(stored, dict) else None)


def payment_method(gateway_names: list[str], settings: ShopSettings) -> str:
    """``cod`` when any gateway name is one of the shop's COD gateways (case-insensitive)."""
    cod = settings.cod_gateway_set
    return "cod" if any(normalize_gateway(name) in cod for name in gateway_names) else "prepaid"


def normalize_gateway(name: str) -> str:
    """How gateway names are compared: trimmed, lower-cased, ``|`` (the key separator) as ``/``."""
    return name.strip().lower().replace("|", "/")


def gateway_key(gateway_names: list[str]) -> str:
    """``|name|name|`` of normalized gateway names: lets SQL re-derive COD when settings change."""
    return "|" + "|".join(normalize_gateway(name) for name in gateway_names) + "|"


# --- validation and updates (GET/PUT /api/settings) -----------------------------------------

MAX_GATEWAYS = 50
MAX_RTO_TAGS = 50
MAX_NAME_LENGTH = 255
TIER_KEYS = ("platinum", "gold", "silver")
SETTING_KEYS = ("tierThresholds", "codGateways", "rtoTags", "includeTestOrders", "writeBack")
WRITE_BACK_FLAGS = {"enabled": "enabled", "customerTags": "customer_tags", "orderRiskTag": "order_risk_tag"}
MAX_RISK_MIN_COD_RTO = 1000


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def validate_update(data: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Check a (partial) settings document; return the normalized values and field errors."""
    if not isinstance(data, dict):
        return {}, [{"field": "body", "message": "must be a JSON object"}]
    errors: list[dict[str, str]] = []
    clean: dict[str, Any] = {}
    for key in data:
        if key not in SETTING_KEYS:
            errors.append({"field": key, "message": "unknown setting"})
    if "tierThresholds" in data:
        raw = data["tierThresholds"]
        if not isinstance(raw, dict) or set(raw) != set(TIER_KEYS):
            errors.append(
                {"field": "tierThresholds", "message": "must be an object with platinum, gold and silver"}
            )
        else:
            values: dict[str, Decimal] = {}
            for tier in TIER_KEYS:
                amount = _decimal(raw[tier])
                if amount is None:
                    errors.append({"field": f"tierThresholds.{tier}", "message": "must be a decimal amount"})
                elif amount <= 0:
                    errors.append({"field": f"tierThresholds.{tier}", "message": "must be positive"})
                elif amount >= Decimal("1e14") or amount != amount.quantize(Decimal("0.01")):
                    errors.append(
                        {"field": f"tierThresholds.{tier}", "message": "must have at most two decimals"}
                    )
                else:
                    values[tier] = amount
            if len(values) == 3:
                if not values["platinum"] > values["gold"]:
                    errors.append({"field": "tierThresholds.gold", "message": "must be less than platinum"})
                if not values["gold"] > values["silver"]:
                    errors.append({"field": "tierThresholds.silver", "message": "must be less than gold"})
                clean["tierThresholds"] = {k: f"{v:.2f}" for k, v in values.items()}
    if "codGateways" in data:
        raw = data["codGateways"]
        if (
            not isinstance(raw, list)
            or len(raw) > MAX_GATEWAYS
            or not all(isinstance(g, str) and g.strip() and len(g) <= MAX_NAME_LENGTH for g in raw)
        ):
            errors.append(
                {
                    "field": "codGateways",
                    "message": f"must be a list of at most {MAX_GATEWAYS} non-empty names",
                }
            )
        else:
            clean["codGateways"] = list(dict.fromkeys(g.strip() for g in raw))
    if "rtoTags" in data:
        raw = data["rtoTags"]
        if not isinstance(raw, dict) or len(raw) > MAX_RTO_TAGS:
            errors.append(
                {"field": "rtoTags", "message": f"must be an object of at most {MAX_RTO_TAGS} tags"}
            )
        else:
            tags: dict[str, str] = {}
            for tag, state in raw.items():
                if not tag.strip() or len(tag) > MAX_NAME_LENGTH or "," in tag:
                    errors.append(
                        {"field": f"rtoTags.{tag}", "message": "a tag must be non-empty, without commas"}
                    )
                elif state not in RTO_STATES:
                    errors.append(
                        {"field": f"rtoTags.{tag}", "message": "must be one of " + ", ".join(RTO_STATES)}
                    )
                else:
                    tags[tag.strip().lower()] = state
            clean["rtoTags"] = tags
    if "includeTestOrders" in data:
        if not isinstance(data["includeTestOrders"], bool):
            errors.append({"field": "includeTestOrders", "message": "must be true or false"})
        else:
            clean["includeTestOrders"] = data["includeTestOrders"]
    if "writeBack" in data:
        write_back, write_back_errors = _validate_write_back(data["writeBack"])
        errors += write_back_errors
        if not write_back_errors:
            clean["writeBack"] = write_back
    return clean, errors


def _validate_write_back(raw: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A (partial) ``writeBack`` object: the flags and ``riskMinCodRto`` (an integer, at least 1)."""
    if not isinstance(raw, dict):
        return {}, [{"field": "writeBack", "message": "must be an object"}]
    errors: list[dict[str, str]] = []
    clean: dict[str, Any] = {}
    for key, value in raw.items():
        if key in WRITE_BACK_FLAGS:
            if not isinstance(value, bool):
                errors.append({"field": f"writeBack.{key}", "message": "must be true or false"})
            else:
                clean[key] = value
        elif key == "riskMinCodRto":
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 1 <= value <= MAX_RISK_MIN_COD_RTO
            ):
                errors.append(
                    {
                        "field": "writeBack.riskMinCodRto",
                        "message": f"must be an integer from 1 to {MAX_RISK_MIN_COD_RTO}",
                    }
                )
            else:
                clean[key] = value
        else:
            errors.append({"field": f"writeBack.{key}", "message": "unknown setting"})
    return clean, errors


def to_document(settings: ShopSettings) -> dict[str, Any]:
    return {
        "tierThresholds": {k: f"{settings.tier_thresholds[k]:.2f}" for k in TIER_KEYS},
        "codGateways": list(settings.cod_gateways),
        "rtoTags": dict(settings.rto_tags),
        "includeTestOrders": settings.include_test_orders,
        "writeBack": settings.write_back.document(),
    }


async def save(session: AsyncSession, shop_id: int, document: dict[str, Any]) -> None:
    await session.execute(sa.update(shops).where(shops.c.id == shop_id).values(settings=document))
