"""``POST /api/stats/customers``, ``POST /api/tiers/recalculate`` and ``GET /api/tiers/suggestion``."""

from __future__ import annotations

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from service.api import wire
from service.api.deps import READING_SHOP
from service.api.ids import body_ids
from service.domain import stats
from service.domain.api_keys import AuthenticatedShop
from service.domain.rederive import recalculate_tiers
from service.domain.thresholds import suggest_thresholds
from service.domain.tier_levels import PERCENTILES
from service.reads import Reads
from service.schemas import (
    RecalculationRead,
    StatsRequest,
    StatsResponse,
    TierChangeItem,
    TierCountsRead,
    TierSuggestionRead,
    TierThresholdsRead,
)


@post(
    "/api/stats/customers",
    summary="LTV, order count, COD RTO count and tier for up to 1000 customers",
    tags=["stats"],
    status_code=200,
    dependencies=READING_SHOP,
)
async def customer_stats(
    reads: NamedDependency[Reads],
    shop: NamedDependency[AuthenticatedShop],
    data: JSONBody[StatsRequest],
) -> Response[StatsResponse]:
    # Most requests never reach this handler: service.api.stats_path answers them, with
    # stats_document too. (A comment, not a docstring: the docstring would be the operation's
    # description in the OpenAPI document.)
    ids = body_ids(data.customer_ids, "Customer", "customerIds")
    return wire.json_response(await stats_document(reads, shop, ids))


async def stats_document(reads: Reads, shop: AuthenticatedShop, ids: list[int]) -> bytes:
    """The ``StatsResponse`` bytes for these ids, each customer's figures put in their wire form
    as they are read."""
    figures = await stats.read_each(reads, shop.id, ids, shop.settings, wire.stats_item)
    return wire.customer_stats_json(figures)


@post(
    "/api/tiers/recalculate",
    summary="Set every customer's tier of record to the live tier",
    tags=["tiers"],
    status_code=200,
)
async def recalculate(
    db_session: NamedDependency[AsyncSession], shop: NamedDependency[AuthenticatedShop]
) -> RecalculationRead:
    result = await recalculate_tiers(db_session, shop.id)
    return RecalculationRead(
        total=result.total,
        updated=result.updated,
        upgrades=[
            TierChangeItem(customer_id=m.customer_id, to=m.to_tier, ltv=m.ltv, **{"from": m.from_tier})
            for m in result.changes
        ],
    )


@get(
    "/api/tiers/suggestion",
    summary="Tier thresholds drawn from the shop's own LTVs, with the tier counts they would give",
    description=(
        ", ".join(f"{tier} at the {p}th" for tier, p in PERCENTILES.items())
        + " percentile of the LTVs of customers with an eligible order (nearest rank), each rounded "
        "down to two significant digits and strictly decreasing. Nothing is saved: PUT /api/settings "
        "applies them. 409 when no customer has an eligible order yet."
    ),
    tags=["tiers"],
)
async def tier_suggestion(
    db_session: NamedDependency[AsyncSession], shop: NamedDependency[AuthenticatedShop]
) -> TierSuggestionRead:
    settings = shop.settings
    found = await suggest_thresholds(db_session, shop.id, settings)
    return TierSuggestionRead(
        tier_thresholds=TierThresholdsRead(**{t: v for t, v in found.thresholds.items()}),
        counts=TierCountsRead(**found.counts),
        based_on=found.based_on,
    )
