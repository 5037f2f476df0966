"""Shared helpers of the read-API tests: keys, problem checks, paging, deliveries through the worker.

Data is created the way production creates it: signed-shape payloads stored in the inbox and
applied by the real worker (``tests.support.deliveries.apply``), so every figure the API serves
comes from the real pipeline.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.config import Settings
from service.db import session_scope
from service.domain.api_keys import create_api_key
from tests.support import deliveries as helpers
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import PREPAID, SHOP, iso, next_id, order_payload, refund_payload

PROBLEM_JSON = "application/problem+json"
Client = AsyncTestClient[Litestar]
Json = dict[str, Any]


async def new_api_key(sessionmaker: Sessionmaker, shop: str = SHOP) -> str:
    async with session_scope(sessionmaker) as session:
        return await create_api_key(session, shop)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    problem: Json = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    return problem


async def get_json(client: Client, key: str, url: str, **params: Any) -> Json:
    response = await client.get(url, params=params or None, headers=bearer(key))
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def all_pages(client: Client, key: str, url: str, **params: Any) -> list[list[Json]]:
    """Every page of a list, following ``nextCursor`` with the same parameters."""
    pages: list[list[Json]] = []
    cursor: str | None = None
    while True:
        query = dict(params)
        if cursor is not None:
            query["cursor"] = cursor
        body = await get_json(client, key, url, **query)
        assert set(body) == {"items", "nextCursor"}
        pages.append(body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert body["items"], "a page before the last one is empty"
        assert len(pages) < 100, "pagination does not end"


def now() -> datetime:
    return datetime.now(UTC)


def days_ago(days: float, base: datetime | None = None) -> datetime:
    return (base or now()) - timedelta(days=days)


def zulu(moment: datetime) -> str:
    """How the API writes a time: ISO 8601 in UTC with ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def money(amount: str | Decimal) -> str:
    return f"{Decimal(amount):.2f}"


async def send(
    sessionmaker: Sessionmaker, settings: Settings, deliveries: list[Delivery], *, shop: str = SHOP
) -> None:
    """Store the deliveries in the inbox in this order, then let the real worker apply them."""
    await helpers.apply(sessionmaker, settings, deliveries, shop=shop)
    rows = await helpers.deliveries(sessionmaker, shop=shop)
    assert {row["status"] for row in rows} <= {"processed"}, [(r["topic"], r["last_error"]) for r in rows]


def refund(
    order_id: int, amount: str, *, returned: int = 0, created: datetime | None = None
) -> dict[str, Any]:
    """A ``refunds/create`` body of ``amount``: ``returned`` items restocked as a return, or money
    only."""
    payload = refund_payload(next_id(), order_id, amount=amount, created=created or now(), quantity=returned)
    if not returned:
        payload |= {"restock": False, "refund_line_items": []}
    return payload


def delivered_fulfillment(order_id: int, at: datetime) -> dict[str, Any]:
    return {
        "id": next_id(),
        "order_id": order_id,
        "status": "success",
        "shipment_status": "delivered",
        "tracking_company": "Delhivery",
        "tracking_number": "DL123",
        "created_at": iso(at),
        "updated_at": iso(at),
    }


def order(
    oid: int,
    cid: int | None,
    total: str,
    created: datetime,
    *,
    gateways: list[str] | None = None,
    **overrides: Any,
) -> Delivery:
    """An ``orders/create`` delivery (prepaid unless ``gateways`` says otherwise)."""
    payload = order_payload(
        oid, customer_id=cid, total=total, created=created, gateways=gateways or PREPAID, **overrides
    )
    return Delivery.of("orders/create", payload)
