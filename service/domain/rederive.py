"""Settings changes and batch recalculation: re-derive what depends on a setting (docs/domain.md).

Work is set-based: one ``UPDATE`` re-derives COD for every order of the shop, stats are
recomputed ``CHUNK`` customers per statement, tracking is re-derived for tagged orders page by
page, and the tier recalculation is keyset-paginated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import stats, tiers, tracking, writeback
from service.domain.settings import (
    ShopSettings,
    get_shop_settings,
    payment_method_sql,
    save,
    to_document,
    validate_update,
)
from service.errors import UnprocessableError
from service.models import Order

orders = Order.__table__  # type: ignore[attr-defined]
TAGGED_PAGE = 1000

Progress = Callable[[str, int, int], None]


async def update_settings(
    session: AsyncSession, shop_id: int, data: Any, *, progress: Progress | None = None
) -> tuple[ShopSettings, tiers.Recalculation | None]:
    """Validate and store a (partial) settings document, then re-derive and recalculate."""
    clean, errors = validate_update(data)
    if errors:
        raise UnprocessableError("invalid settings", errors=errors)
    before = await get_shop_settings(session, shop_id)
    document = to_document(before) | clean
    after = ShopSettings.from_stored(document)
    await save(session, shop_id, document)
    if after == before:
        return after, None
    figures_rules = (after.tier_thresholds, after.cod_gateway_set, after.rto_tags, after.include_test_orders)
    if figures_rules == (
        before.tier_thresholds,
        before.cod_gateway_set,
        before.rto_tags,
        before.include_test_orders,
    ):
        # Only writeBack changed: turned off, nothing more is sent; otherwise every customer is
        # queued again (unchanged desired states queue nothing).
        if not after.write_back.enabled:
            await writeback.drop_unsent(session, shop_id)
        else:
            await writeback.queue_shop(session, shop_id, after)
        return after, None
    if after.cod_gateway_set != before.cod_gateway_set:
        await rederive_payment_methods(session, shop_id, after)
    if after.rto_tags != before.rto_tags:
        await rederive_tagged_tracking(session, shop_id, after)
    if (after.cod_gateway_set, after.rto_tags, after.include_test_orders) != (
        before.cod_gateway_set,
        before.rto_tags,
        before.include_test_orders,
    ):
        await stats.refresh_shop(session, shop_id, after)
    reason = "thresholds" if after.tier_thresholds != before.tier_thresholds else "batch"
    result = await tiers.recalculate(
        session,
        shop_id,
        tiers.Rules(after.tier_thresholds, after.include_test_orders),
        reason=reason,
        previous=tiers.Rules(before.tier_thresholds, before.include_test_orders),
        # when orders were in RTO changed for the whole past
        rederive_all=after.rto_tags != before.rto_tags,
        progress=(lambda done, total: progress("tiers", done, total)) if progress else None,
    )
    if after.write_back.enabled:
        await writeback.queue_shop(session, shop_id, after)  # tiers or figures may have changed
    else:
        await writeback.drop_unsent(session, shop_id)
    return after, result


async def rederive_payment_methods(session: AsyncSession, shop_id: int, settings: ShopSettings) -> None:
    """``payment_method`` of every order of the shop from its stored gateway names, in SQL."""
    await session.execute(
        sa.update(orders)
        .where(orders.c.shop_id == shop_id)
        .values(payment_method=payment_method_sql(orders.c.gateway_key, settings))
    )


async def rederive_tagged_tracking(session: AsyncSession, shop_id: int, settings: ShopSettings) -> None:
    """Tracking of every order that carries tags (the RTO tag map changed), page by page."""
    after: int | None = None
    while True:
        stmt = sa.select(orders.c.id).where(orders.c.shop_id == shop_id, orders.c.tags != "")
        if after is not None:
            stmt = stmt.where(orders.c.id > after)
        ids = [int(i) for i in (await session.scalars(stmt.order_by(orders.c.id).limit(TAGGED_PAGE))).all()]
        if not ids:
            return
        await tracking.refresh(session, shop_id, ids, settings.rto_tags)
        after = ids[-1]


async def recalculate_tiers(
    session: AsyncSession, shop_id: int, *, progress: Callable[[int, int], None] | None = None
) -> tiers.Recalculation:
    """``tierline recalc-tiers`` / ``POST /api/tiers/recalculate``."""
    settings = await get_shop_settings(session, shop_id)
    return await tiers.recalculate(
        session,
        shop_id,
        tiers.Rules(settings.tier_thresholds, settings.include_test_orders),
        reason="batch",
        progress=progress,
    )
