"""``GET``/``PUT /api/settings``: tier thresholds, COD gateways, RTO tags, test orders."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.deps import READS_ONLY
from service.domain.api_keys import AuthenticatedShop
from service.domain.rederive import update_settings
from service.domain.settings import ShopSettings, to_document
from service.domain.tier_levels import THRESHOLD_TIERS
from service.schemas import SettingsRead


def settings_read(settings: ShopSettings) -> SettingsRead:
    return SettingsRead.model_validate(to_document(settings))


class SettingsController(Controller):
    path = "/api/settings"
    tags = ["settings"]

    @get("/", summary="The shop's settings", opt=READS_ONLY)
    async def get_settings(
        self, db_session: NamedDependency[AsyncSession], shop: NamedDependency[AuthenticatedShop]
    ) -> SettingsRead:
        return settings_read(shop.settings)

    @put(
        "/",
        summary="Change settings (partial documents allowed); recalculates tiers",
        description=(
            "Fields left out keep their value. Thresholds must be positive and strictly decreasing "
            f"from {THRESHOLD_TIERS[0]} to {THRESHOLD_TIERS[-1]}; numbers or decimal strings are "
            "accepted. A change re-derives "
            "what depends on it and recalculates tiers before answering. 422 lists field errors."
        ),
        status_code=200,
    )
    async def put_settings(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        data: JSONBody[dict[str, Any]],
    ) -> SettingsRead:
        settings, _ = await update_settings(db_session, shop.id, data)
        return settings_read(settings)
