"""Hostile deliveries never yield a 500, a crash or a delivery stuck in retries (issue 8).

Each corpus entry is signed (so it passes the HMAC check and reaches the inbox), then the worker
applies it: it must end ``processed`` or ``failed`` with a reason, and the server keeps serving.
A bounded hypothesis run fuzzes the payload models with arbitrary JSON.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from tests.support.deliveries import DELIVERIES, drain
from tests.support.payloads import customer_payload, next_id, order_payload, signed_webhook
from webhooks.handlers import build_router
from webhooks.handlers.customers import customer_snapshot
from webhooks.handlers.orders import order_snapshot
from webhooks.payloads import CustomerPayload, OrderPayload

pytestmark = pytest.mark.anyio


def _order(**overrides: Any) -> bytes:
    return json.dumps(order_payload(next_id(), customer_id=next_id(), **overrides)).encode()


CORPUS: list[tuple[str, str, bytes]] = [
    ("truncated", "orders/create", _order()[:57]),
    ("deeply nested", "orders/create", b"[" * 50_000 + b"]" * 50_000),
    ("nested object", "customers/create", b'{"id": 1, "a": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001),
    ("not utf-8", "customers/create", b"\xff\xfe\xfd{}"),
    ("empty body", "orders/create", b""),
    ("json null", "orders/create", b"null"),
    ("json array", "orders/create", b"[1, 2, 3]"),
    ("NaN id", "customers/create", b'{"id": NaN}'),
    ("string id", "orders/create", _order(id="abc")),
    ("list id", "orders/create", _order(id=[1])),
    ("boolean id", "customers/create", json.dumps(customer_payload(1) | {"id": True}).encode()),
    ("id above 64 bits", "orders/create", _order(id=2**64)),
    ("negative id", "orders/create", _order(id=-5)),
    ("float id", "orders/create", _order(id=1e30)),
    ("money not a number", "orders/create", _order(total_price="abc")),
    ("negative total", "orders/create", _order(total_price="-5.00", current_total_price="-5.00")),
    ("negative line price", "orders/create", _order(lines=[{"id": 5, "quantity": 1, "price": "-1.00"}])),
    ("money NaN", "orders/create", _order(total_price="NaN", current_total_price="NaN")),
    ("money huge", "orders/create", _order(total_price="1e400", current_total_price="1e400")),
    ("bad time", "orders/create", _order(updated_at="yesterday")),
    ("time out of range", "orders/create", _order(updated_at="9999-12-31T23:59:59-05:00")),
    ("line items not a list", "orders/create", _order(line_items={"a": 1})),
    ("quantity negative", "orders/create", _order(lines=[{"id": 5, "quantity": -3, "price": "1.00"}])),
    ("NUL in strings", "orders/create", _order(email="a\u0000b@example.com", tags="x\u0000y")),
    (
        "unknown fulfillment status",
        "fulfillment_events/create",
        json.dumps(
            {
                "id": next_id(),
                "fulfillment_id": next_id(),
                "order_id": next_id(),
                "status": "teleported",
                "happened_at": "2026-03-01T12:00:00Z",
            }
        ).encode(),
    ),
    ("unknown financial status", "orders/create", _order(financial_status="bribed")),
    ("4 MB title", "orders/create", _order(lines=[{"id": 9, "title": "x" * 4_000_000, "price": "1.00"}])),
    ("unknown topic", "products/update", b'{"id": 1}'),
]


class TestHostileCorpus:
    async def test_corpus_never_500_and_settles(
        self,
        client: AsyncTestClient[Litestar],
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        for name, topic, body in CORPUS:
            headers, _ = signed_webhook(topic, None, raw=body, webhook_id=f"hostile-{name}")
            response = await client.post("/webhooks/shopify", content=body, headers=headers)
            assert response.status_code == 200, (name, response.status_code, response.text[:200])
        oversize = b"x" * (settings.max_body + 1)
        headers, _ = signed_webhook("orders/create", None, raw=oversize)
        assert (await client.post("/webhooks/shopify", content=oversize, headers=headers)).status_code == 413
        await drain(sessionmaker, settings)
        async with sessionmaker() as session:
            rows = (
                await session.execute(
                    sa.select(
                        DELIVERIES.c.webhook_id,
                        DELIVERIES.c.status,
                        DELIVERIES.c.attempts,
                        DELIVERIES.c.last_error,
                    )
                )
            ).all()
        outcome = {r.webhook_id.removeprefix("hostile-"): (r.status, r.attempts, r.last_error) for r in rows}
        assert set(outcome) == {name for name, _, _ in CORPUS}
        for name, (status, attempts, error) in outcome.items():
            assert attempts == 0, (name, error)  # nothing was treated as a transient failure
            assert status in ("processed", "failed", "ignored"), (name, status)
            if status == "failed":
                assert error, name
        assert outcome["truncated"][0] == "failed"
        assert outcome["not utf-8"][0] == "failed"
        assert outcome["id above 64 bits"][0] == "failed"
        assert outcome["negative line price"][0] == "failed"
        assert outcome["negative total"][0] == "processed"  # stored; counts nowhere in LTV
        assert outcome["unknown fulfillment status"][0] == "processed"  # stored verbatim
        assert outcome["NUL in strings"][0] == "processed"
        assert outcome["unknown topic"][0] == "ignored"
        assert (await client.get("/health")).status_code == 200


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ORDER_FIELDS = sorted(OrderPayload.model_fields)
CUSTOMER_FIELDS = sorted(CustomerPayload.model_fields)


class TestPayloadFuzz:
    """Parsing never raises anything but ValidationError, and what parses converts cleanly."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(st.sampled_from(ORDER_FIELDS), JSON, max_size=8), st.booleans())
    def test_order_payloads(self, fields: dict[str, Any], with_base: bool) -> None:
        payload = (order_payload(next_id(), customer_id=next_id()) if with_base else {}) | fields
        route = build_router().get("orders/create")
        assert route is not None
        try:
            parsed = route.parse(json.dumps(payload).encode())
        except ValidationError:
            return
        snapshot = order_snapshot(parsed)
        assert snapshot.id == parsed.id
        assert snapshot.total_amount >= 0

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.sampled_from(CUSTOMER_FIELDS), JSON, max_size=8))
    def test_customer_payloads(self, fields: dict[str, Any]) -> None:
        try:
            parsed = CustomerPayload.model_validate_json(json.dumps(customer_payload(next_id()) | fields))
        except ValidationError:
            return
        assert customer_snapshot(parsed).id == parsed.id

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=200))
    def test_arbitrary_bytes(self, body: bytes) -> None:
        for topic in ("orders/create", "customers/update", "refunds/create", "returns/request"):
            route = build_router().get(topic)
            assert route is not None
            with contextlib.suppress(ValidationError):
                route.parse(body)
