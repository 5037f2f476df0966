"""``/api/reports``: top customers of a period and the shop overview (docs/api.md)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import reports
from service.domain.api_keys import AuthenticatedShop
from service.domain.pagination import MAX_LIMIT
from service.schemas import (
    OverviewRead,
    TierCountsRead,
    TopCustomerRead,
    TopCustomersRead,
    TopProductRead,
)
from service.types import utc_now


def _top_customer_read(customer: reports.TopCustomer) -> TopCustomerRead:
    return TopCustomerRead(
        id=customer.id,
        email=customer.email,
        first_name=customer.first_name,
        last_name=customer.last_name,
        period_ltv=customer.period_ltv,
        period_order_count=customer.period_order_count,
        tier=customer.figures.tier,
        ltv=customer.figures.ltv,
        last_order_at=customer.last_order_at,
        top_products=[
            TopProductRead(product_id=p.product_id, title=p.title, quantity=p.quantity, spend=p.spend)
            for p in customer.top_products
        ],
    )


class ReportController(Controller):
    path = "/api/reports"
    tags = ["reports"]

    @get(
        "/top-customers",
        summary="Customers ranked by LTV within a period",
        description=(
            "Eligible orders (docs/domain.md) by created_at in UTC. `period` is 30d, 90d, 365d (ending "
            "now) or all (default); `from` (inclusive) and `to` (exclusive), ISO 8601 dates or "
            "date-times, override it. Ties by id, descending."
        ),
    )
    async def top_customers(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        period: Annotated[str, QueryParameter(max_length=8, description="30d, 90d, 365d or all")] = "all",
        from_: Annotated[str | None, QueryParameter(name="from", max_length=64)] = None,
        to: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = reports.DEFAULT_TOP_CUSTOMERS,
    ) -> TopCustomersRead:
        window = reports.report_window(period, from_, to, now=utc_now())
        settings = shop.settings
        found = await reports.top_customers(db_session, shop.id, settings, window, limit)
        return TopCustomersRead.model_validate(
            {
                "items": [_top_customer_read(c) for c in found],
                "nextCursor": None,
                "period": window.period,
                "from": window.start,
                "to": window.end,
            }
        )

    @get(
        "/overview", summary="Customers by tier, repeat purchases, AOV, COD share and RTO, customers at risk"
    )
    async def overview(
        self, db_session: NamedDependency[AsyncSession], shop: NamedDependency[AuthenticatedShop]
    ) -> OverviewRead:
        settings = shop.settings
        found = await reports.overview(db_session, shop.id, settings, now=utc_now())
        return OverviewRead(
            customer_count=found.customer_count,
            tiers=TierCountsRead(**found.tiers),
            repeat_purchase_rate=found.repeat_purchase_rate,
            aov=found.aov,
            cod_share=found.cod_share,
            cod_rto_rate=found.cod_rto_rate,
            customers_at_risk=found.customers_at_risk,
        )
