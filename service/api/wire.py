"""The hot read paths' JSON, written straight from the views (docs/api.md, docs/benchmarks.md).

``OrderRead``, ``CustomerSummaryRead`` and ``CustomerStatsRead`` (``service.schemas``) document
these responses and validate them everywhere else. For the order grid's endpoints and the stats it
asks for, a list of hundreds of views went through pydantic twice (validated from the view, then
serialized), which cost more CPU than the database spent answering. Here each view becomes a
``msgspec.Struct`` already in its wire form (ids and amounts as strings) and is encoded in one
pass, without validation: the view's types are the database's, checked when they were stored.

The structs carry the same fields as the documented models, in the same order (checked on import),
and ``tests/service/api/test_wire.py`` holds both to the same bytes for the same view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from litestar import MediaType, Response
from pydantic import BaseModel

from service.domain.customer_views import CustomerSummary
from service.domain.order_views import EnrichedOrder
from service.schemas import CustomerStatsRead, CustomerSummaryRead, OrderRead, money


class OrderJson(msgspec.Struct, rename="camel", frozen=True, gc=False):
    """``OrderRead`` on the wire."""

    id: str
    name: str | None
    customer_id: str | None
    email: str | None
    phone: str | None
    created_at: datetime | None
    updated_at: datetime | None
    processed_at: datetime | None
    cancelled_at: datetime | None
    financial_status: str | None
    fulfillment_status: str | None
    currency: str | None
    total_amount: str
    original_total: str
    payment_method: str
    tracking_status: str | None
    delivered_at: datetime | None
    tags: list[str]
    test: bool
    customer_ltv: str | None
    customer_order_count: int | None
    customer_rto_count: int | None
    customer_tier: str | None


class CustomerSummaryJson(msgspec.Struct, rename="camel", frozen=True, gc=False):
    """``CustomerSummaryRead`` on the wire."""

    id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    tier: str
    ltv: str
    order_count: int
    rto_count: int
    last_order_at: datetime | None


class CustomerStatsJson(msgspec.Struct, rename="camel", frozen=True, gc=False):
    """``CustomerStatsRead`` on the wire."""

    ltv: str
    order_count: int
    rto_count: int
    tier: str


class StatsJson(msgspec.Struct, gc=False):
    #: msgspec writes integer keys as JSON strings: the ids need no ``str()`` each.
    stats: Mapping[int, CustomerStatsJson]


class ItemsJson(msgspec.Struct, rename="camel", gc=False):
    items: Sequence[Any]


class PageJson(msgspec.Struct, rename="camel", gc=False):
    items: Sequence[Any]
    next_cursor: str | None


def _same_fields(wire: type[msgspec.Struct], model: type[BaseModel]) -> None:
    names = tuple(field.encode_name for field in msgspec.structs.fields(wire))
    aliases = tuple(field.alias or name for name, field in model.model_fields.items())
    if names != aliases:
        raise RuntimeError(f"{wire.__name__} must carry {model.__name__}'s fields, in order: {aliases}")


_same_fields(OrderJson, OrderRead)
_same_fields(CustomerSummaryJson, CustomerSummaryRead)
_same_fields(CustomerStatsJson, CustomerStatsRead)

_ENCODER = msgspec.json.Encoder()


if EnrichedOrder._fields != tuple(field.name for field in msgspec.structs.fields(OrderJson)):
    raise RuntimeError("OrderJson must carry EnrichedOrder's fields, in order")
_ID, _CUSTOMER_ID, _TOTAL, _ORIGINAL, _LTV = (
    EnrichedOrder._fields.index(name)
    for name in ("id", "customer_id", "total_amount", "original_total", "customer_ltv")
)


def order_json(order: EnrichedOrder) -> OrderJson:
    """An order view in its wire form: the view's values by position (both carry the same fields
    in the same order, checked above; a keyword call costs three times as much), ids and amounts
    as strings."""
    values: list[Any] = list(order)
    values[_ID] = str(values[_ID])
    if values[_CUSTOMER_ID] is not None:
        values[_CUSTOMER_ID] = str(values[_CUSTOMER_ID])
    values[_TOTAL] = money(values[_TOTAL])
    values[_ORIGINAL] = money(values[_ORIGINAL])
    if values[_LTV] is not None:
        values[_LTV] = money(values[_LTV])
    return OrderJson(*values)


def customer_summary_json(customer: CustomerSummary) -> CustomerSummaryJson:
    return CustomerSummaryJson(
        id=str(customer.id),
        email=customer.email,
        phone=customer.phone,
        first_name=customer.first_name,
        last_name=customer.last_name,
        tier=customer.tier,
        ltv=money(customer.ltv),
        order_count=customer.order_count,
        rto_count=customer.rto_count,
        last_order_at=customer.last_order_at,
    )


def json_response(document: msgspec.Struct | bytes) -> Response[Any]:
    """A ``200`` whose body is the document, encoded here (the route's annotation documents it)."""
    content = document if isinstance(document, bytes) else _ENCODER.encode(document)
    return Response(content=content, media_type=MediaType.JSON)


def order_items(found: Sequence[EnrichedOrder]) -> Response[Any]:
    """``OrderItems``: ``{"items": [OrderRead, ...]}``."""
    return json_response(ItemsJson(items=[order_json(order) for order in found]))


def order_page(found: Sequence[EnrichedOrder], next_cursor: str | None) -> Response[Any]:
    """``Page[OrderRead]``."""
    return json_response(PageJson(items=[order_json(order) for order in found], next_cursor=next_cursor))


def stats_item(ltv: Decimal, order_count: int, rto_count: int, tier: str) -> CustomerStatsJson:
    """One customer's figures in their wire form (``stats.read_each`` calls it per customer)."""
    return CustomerStatsJson(money(ltv), order_count, rto_count, tier)


def customer_stats_json(figures: Mapping[int, CustomerStatsJson]) -> bytes:
    """``StatsResponse``: ``{"stats": {"<id>": CustomerStatsRead, ...}}``."""
    return _ENCODER.encode(StatsJson(stats=figures))


def customer_page(found: Sequence[CustomerSummary], next_cursor: str | None) -> Response[Any]:
    """``Page[CustomerSummaryRead]``."""
    return json_response(
        PageJson(items=[customer_summary_json(customer) for customer in found], next_cursor=next_cursor)
    )
