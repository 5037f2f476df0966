"""``/api/customers``: the customer list, a customer's page and their addresses (docs/api.md).

Path ids are ``123`` or ``gid://shopify/Customer/123``; the gid form reaches the handlers through
a second route (``gid:/shopify/Customer/{id}``), since its slashes are path separators even when
sent percent-encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.deps import READS_ONLY
from service.api.ids import path_id
from service.api.orders import order_reads
from service.api.wire import customer_page
from service.domain import customer_views
from service.domain.api_keys import AuthenticatedShop
from service.domain.pagination import DEFAULT_LIMIT, MAX_LIMIT
from service.errors import NotFoundError
from service.schemas import (
    AddressRead,
    AffinityRead,
    CustomerMetricsRead,
    CustomerRead,
    CustomerSummaryRead,
    Page,
    TierHistoryRead,
)
from service.types import utc_now

CustomerSort = Literal["ltv", "orderCount", "lastOrderAt", "name"]
GID_PREFIX = "/gid:/shopify/Customer"


_SUMMARIES: TypeAdapter[list[CustomerSummaryRead]] = TypeAdapter(list[CustomerSummaryRead])


def summary_reads(found: Sequence[customer_views.CustomerSummary]) -> list[CustomerSummaryRead]:
    """The customers as the API shows them: read field by field from the view, in one pass."""
    return _SUMMARIES.validate_python(found, from_attributes=True, by_alias=False, by_name=True)


def _metrics_read(metrics: customer_views.Metrics) -> CustomerMetricsRead:
    return CustomerMetricsRead.model_validate(metrics, from_attributes=True)


def _affinity_read(affinity: customer_views.Affinity) -> AffinityRead:
    return AffinityRead.model_validate(affinity, from_attributes=True)


def _history_read(entry: customer_views.TierHistoryEntry) -> TierHistoryRead:
    return TierHistoryRead.model_validate(
        {
            "from": entry.from_tier,
            "to": entry.to_tier,
            "ltv": entry.ltv,
            "reason": entry.reason,
            "orderId": entry.order_id,
            "orderName": entry.order_name,
            "at": entry.at,
        }
    )


def _address_read(address: customer_views.Address) -> AddressRead:
    return AddressRead(
        **address.fields,
        times_used=address.times_used,
        last_used_at=address.last_used_at,
        is_default=address.is_default,
    )


class CustomerController(Controller):
    path = "/api/customers"
    tags = ["customers"]

    @get(
        "/",
        summary="Customers with their LTV, tier and COD RTO count",
        opt=READS_ONLY,
        description=(
            "Filter by `tier` (one or comma-separated) and `search` (case-insensitive substring of "
            "name, email or phone). Sort by `ltv` (default), `orderCount`, `lastOrderAt` (each "
            "descending, customers without orders last) or `name` (ascending, unnamed last); ties "
            "by id. Keyset-paginated: `nextCursor` is bound to the sort and filters."
        ),
    )
    async def list_customers(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        tier: Annotated[
            str | None, QueryParameter(max_length=100, description="e.g. gold or gold,platinum")
        ] = None,
        search: Annotated[str | None, QueryParameter(max_length=customer_views.MAX_SEARCH_LENGTH)] = None,
        sort: FromQuery[CustomerSort] = "ltv",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, QueryParameter(max_length=2000)] = None,
    ) -> Response[Page[CustomerSummaryRead]]:
        tiers = customer_views.parse_tiers(tier)
        items, next_cursor = await customer_views.list_customers(
            db_session,
            shop.id,
            shop.settings,
            tiers=tiers,
            search=search,
            sort=sort,
            limit=limit,
            cursor=cursor,
        )
        return customer_page(items, next_cursor)

    @get(
        ["/{customer_id:str}", GID_PREFIX + "/{customer_id:str}"],
        summary="A customer: figures, tier history, metrics, affinity, recent orders",
        opt=READS_ONLY,
    )
    async def get_customer(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        customer_id: FromPath[str],
    ) -> CustomerRead:
        numeric = path_id(customer_id, "Customer")
        settings = shop.settings
        profile = await customer_views.customer_profile(db_session, shop.id, numeric, settings, now=utc_now())
        if profile is None:
            raise NotFoundError("no such customer")
        (summary,) = summary_reads([profile.summary])
        return CustomerRead(
            **summary.model_dump(),
            tier_of_record=profile.tier_of_record,
            tier_history=[_history_read(h) for h in profile.tier_history],
            metrics=_metrics_read(profile.metrics),
            affinity=_affinity_read(profile.affinity),
            recent_orders=order_reads(profile.recent_orders),
            address_count=profile.address_count,
        )

    @get(
        ["/{customer_id:str}/addresses", GID_PREFIX + "/{customer_id:str}/addresses"],
        summary="A customer's distinct addresses, most recently used first (for autofill)",
        opt=READS_ONLY,
    )
    async def get_addresses(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        customer_id: FromPath[str],
    ) -> Page[AddressRead]:
        numeric = path_id(customer_id, "Customer")
        settings = shop.settings
        addresses = await customer_views.customer_addresses(db_session, shop.id, numeric, settings)
        if addresses is None:
            raise NotFoundError("no such customer")
        return Page[AddressRead](items=[_address_read(a) for a in addresses], next_cursor=None)
