"""Orders for the order grid (docs/api.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.deps import READING_SHOP, READS_ONLY
from service.api.ids import body_ids, parse_id, path_id
from service.api.wire import order_items, order_page
from service.domain import order_views, orders
from service.domain.api_keys import AuthenticatedShop
from service.domain.order_views import EnrichedOrder, enriched_orders
from service.domain.pagination import DEFAULT_LIMIT, MAX_LIMIT
from service.domain.tracking import ALL_STATES
from service.errors import NotFoundError, UnprocessableError
from service.reads import Reads
from service.schemas import OrderEnrichRequest, OrderItems, OrderRead, Page, TrackingStatusUpdate

_ORDER_LIST: TypeAdapter[list[OrderRead]] = TypeAdapter(list[OrderRead])


def order_reads(found: Sequence[EnrichedOrder]) -> list[OrderRead]:
    """The orders as the API shows them: read field by field from the view, in one pass."""
    return _ORDER_LIST.validate_python(found, from_attributes=True, by_alias=False, by_name=True)


class OrderController(Controller):
    path = "/api/orders"
    tags = ["orders"]

    @get(
        "/",
        summary="Orders with their customers' figures, newest first (the order grid)",
        opt=READS_ONLY,
        description=(
            "Filters: `customerId` (123 or gid://shopify/Customer/123), `trackingStatus` (a tracking "
            "status such as `in_transit` or `rto_initiated`, or `none` for orders without one), "
            "`paymentMethod` (cod or prepaid). Newest "
            "first by created_at, then id; keyset-paginated. Test orders are listed (`test: true`)."
        ),
    )
    async def list_orders(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        customer_id: Annotated[str | None, QueryParameter(name="customerId", max_length=64)] = None,
        tracking_status: Annotated[str | None, QueryParameter(name="trackingStatus", max_length=64)] = None,
        payment_method: Annotated[
            Literal["cod", "prepaid"] | None, QueryParameter(name="paymentMethod")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, QueryParameter(max_length=2000)] = None,
    ) -> Response[Page[OrderRead]]:
        customer = None
        if customer_id is not None:
            customer = parse_id(customer_id, "Customer")
            if customer is None:
                raise UnprocessableError(
                    "invalid customerId", errors=[{"field": "customerId", "message": "not a Customer id"}]
                )
        settings = shop.settings
        items, next_cursor = await order_views.list_orders(
            db_session,
            shop.id,
            settings,
            customer_id=customer,
            tracking_status=tracking_status,
            payment_method=payment_method,
            limit=limit,
            cursor=cursor,
        )
        return order_page(items, next_cursor)

    @post(
        "/enrich",
        summary="Up to 1000 orders with their customers' figures, in the order asked",
        description="Ids as numbers, numeric strings or gid://shopify/Order/ ids; unknown ids are left out.",
        status_code=200,
        dependencies=READING_SHOP,
    )
    async def enrich_orders(
        self,
        reads: NamedDependency[Reads],
        shop: NamedDependency[AuthenticatedShop],
        data: JSONBody[OrderEnrichRequest],
    ) -> Response[OrderItems]:
        ids = body_ids(data.order_ids, "Order", "orderIds")
        return order_items(await enriched_orders(reads, shop.id, ids, shop.settings))

    @put(
        ["/{order_id:str}/tracking-status", "/gid:/shopify/Order/{order_id:str}/tracking-status"],
        summary="Set an order's tracking status (carrier integrations, e.g. RTO)",
        description=(
            f"One of {', '.join(ALL_STATES)} (422 otherwise). RTO only moves forward. Answers the "
            "enriched order."
        ),
        status_code=200,
    )
    async def set_tracking_status(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        order_id: FromPath[str],
        data: JSONBody[TrackingStatusUpdate],
    ) -> OrderRead:
        numeric = path_id(order_id, "Order")
        settings = shop.settings
        await orders.set_tracking_status(db_session, shop.id, numeric, data.status, settings)
        found = await enriched_orders(db_session, shop.id, [numeric], settings)
        if not found:
            raise NotFoundError("no such order")
        return order_reads(found)[0]
