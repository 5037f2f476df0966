"""Per-shop settings (docs/domain.md): tier thresholds, COD gateways, RTO tags, test orders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.tier_levels import DEFAULT_TIER_THRESHOLDS, THRESHOLD_TIERS, next_above, spoken_list
from service.domain.tracking import RTO_STATES
from service.models import Shop

shops = Shop.__table__  # type: ignore[attr-defined]

DEFAULT_COD_GATEWAYS: tuple[str, ...] = ("Cash on Delivery (COD)", "cash_on_delivery", "cod")
DEFAULT_RTO_TAGS: dict[str, str] = {
    "rto": "rto_initiated",
    "rto-initiated": "rto_initiated",
    "rto-in-transit": "rto_in_transit",
    "rto-delivered": "rto_delivered",
}


@dataclass(frozen=True, slots=True)
class WriteBackSettings:
    """``writeBack`` (docs/shopify-app.md): what tierline writes into the shop."""

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


def payment_method_sql(gateway_key_column: Any, settings: ShopSettings) -> Any:
    """The same rule as :func:`payment_method`, in SQL over a stored :func:`gateway_key`."""
    matches = [
        gateway_key_column.contains(f"|{name}|", autoescape=True) for name in sorted(settings.cod_gateway_set)
    ]
    cod = sa.or_(*matches) if matches else sa.false()
    return sa.case((cod, "cod"), else_="prepaid")


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
TIER_KEYS = THRESHOLD_TIERS
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


Errors = list[dict[str, str]]


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _amount_problem(amount: Decimal | None) -> str | None:
    if amount is None:
        return "must be a decimal amount"
    if amount <= 0:
        return "must be positive"
    if amount >= Decimal("1e14") or amount != amount.quantize(Decimal("0.01")):
        return "must have at most two decimals"
    return None


def _tier_thresholds(raw: Any, errors: Errors) -> dict[str, str] | None:
    if not isinstance(raw, dict) or set(raw) != set(TIER_KEYS):
        errors.append(_error("tierThresholds", f"must be an object with {spoken_list(TIER_KEYS, 'and')}"))
        return None
    values: dict[str, Decimal] = {}
    for tier in TIER_KEYS:
        amount = _decimal(raw[tier])
        problem = _amount_problem(amount)
        if problem is not None or amount is None:
            errors.append(_error(f"tierThresholds.{tier}", problem or "must be a decimal amount"))
        else:
            values[tier] = amount
    if len(values) < len(TIER_KEYS):
        return None
    for tier in TIER_KEYS:
        above = next_above(tier)
        if above is not None and not values[above] > values[tier]:
            errors.append(_error(f"tierThresholds.{tier}", f"must be less than {above}"))
    return {k: f"{v:.2f}" for k, v in values.items()}


def _cod_gateways(raw: Any, errors: Errors) -> list[str] | None:
    if (
        not isinstance(raw, list)
        or len(raw) > MAX_GATEWAYS
        or not all(isinstance(g, str) and g.strip() and len(g) <= MAX_NAME_LENGTH for g in raw)
    ):
        errors.append(_error("codGateways", f"must be a list of at most {MAX_GATEWAYS} non-empty names"))
        return None
    return list(dict.fromkeys(g.strip() for g in raw))


def _rto_tags(raw: Any, errors: Errors) -> dict[str, str] | None:
    if not isinstance(raw, dict) or len(raw) > MAX_RTO_TAGS:
        errors.append(_error("rtoTags", f"must be an object of at most {MAX_RTO_TAGS} tags"))
        return None
    tags: dict[str, str] = {}
    for tag, state in raw.items():
        if not tag.strip() or len(tag) > MAX_NAME_LENGTH or "," in tag:
            errors.append(_error(f"rtoTags.{tag}", "a tag must be non-empty, without commas"))
        elif state not in RTO_STATES:
            errors.append(_error(f"rtoTags.{tag}", "must be one of " + ", ".join(RTO_STATES)))
        else:
            tags[tag.strip().lower()] = state
    return tags


def _include_test_orders(raw: Any, errors: Errors) -> bool | None:
    if not isinstance(raw, bool):
        errors.append(_error("includeTestOrders", "must be true or false"))
        return None
    return raw


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


def _write_back(raw: Any, errors: Errors) -> dict[str, Any] | None:
    clean, problems = _validate_write_back(raw)
    errors += problems
    return None if problems else clean


#: Each setting's validator: its normalized value, or ``None`` with the errors appended.
VALIDATORS: dict[str, Callable[[Any, Errors], Any]] = {
    "tierThresholds": _tier_thresholds,
    "codGateways": _cod_gateways,
    "rtoTags": _rto_tags,
    "includeTestOrders": _include_test_orders,
    "writeBack": _write_back,
}


def validate_update(data: Any) -> tuple[dict[str, Any], Errors]:
    """Check a (partial) settings document; return the normalized values and field errors."""
    if not isinstance(data, dict):
        return {}, [_error("body", "must be a JSON object")]
    errors: Errors = [_error(key, "unknown setting") for key in data if key not in VALIDATORS]
    clean: dict[str, Any] = {}
    for key, validate in VALIDATORS.items():
        if key in data and (value := validate(data[key], errors)) is not None:
            clean[key] = value
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
