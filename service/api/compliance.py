"""``GET /api/compliance/requests[/{id}]``: privacy requests and data exports for the merchant."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.ids import path_id
from service.domain import compliance
from service.domain.api_keys import AuthenticatedShop
from service.domain.pagination import DEFAULT_LIMIT, MAX_LIMIT
from service.errors import NotFoundError
from service.schemas import ComplianceRequestRead, Page


def _read(row: Any) -> ComplianceRequestRead:
    return ComplianceRequestRead(
        id=row.id,
        topic=row.topic,
        status=row.status,
        customer_id=row.customer_id,
        shopify_request_id=row.shopify_request_id,
        received_at=row.received_at,
        completed_at=row.completed_at,
        data=row.result,
    )


class ComplianceController(Controller):
    path = "/api/compliance/requests"
    tags = ["compliance"]

    @get("/", summary="Privacy requests received, newest first")
    async def list_requests(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> Page[ComplianceRequestRead]:
        rows = await compliance.list_requests(db_session, shop.id, limit=limit)
        return Page[ComplianceRequestRead](items=[_read(r) for r in rows], next_cursor=None)

    @get("/{request_id:str}", summary="One privacy request; data requests carry the customer's data")
    async def get_request(
        self,
        db_session: NamedDependency[AsyncSession],
        shop: NamedDependency[AuthenticatedShop],
        request_id: FromPath[str],
    ) -> ComplianceRequestRead:
        row = await compliance.get_request(db_session, shop.id, path_id(request_id, "ComplianceRequest"))
        if row is None:
            raise NotFoundError("no such compliance request")
        return _read(row)
