"""Builders for hand-written payloads in Shopify's documented shapes, and signed deliveries."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shopify_client import webhook_hmac

API_KEY = "test-api-key"
API_SECRET = "test-api-secret-0123456789abcdef0123"
PREVIOUS_SECRET = "test-previous-secret-0123456789abcdef"
ENCRYPTION_KEY = "test-encryption-key-000000000000000000000000"
SHOP = "acme-test.myshopify.com"
OTHER_SHOP = "other-test.myshopify.com"

BASE_TIME = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count(7_000_000_000_001)


#: Gateway names of a cash-on-delivery order and of a prepaid one (the shop's default COD gateways
#: include the first; the second is a card gateway).
COD = ["Cash on Delivery (COD)"]
PREPAID = ["razorpay"]


def next_id() -> int:
    return next(_ids)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def at(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


def signed_webhook(
    topic: str,
    payload: Any,
    *,
    shop: str = SHOP,
    secret: str = API_SECRET,
    webhook_id: str | None = None,
    triggered_at: datetime | None = None,
    raw: bytes | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body exactly as Shopify would send them, signed with ``secret``."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": webhook_hmac(body, secret),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2026-04",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": iso(triggered_at or BASE_TIME),
    }
    return headers, body


def address(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "first_name": "Asha",
        "last_name": "Rao",
        "name": "Asha Rao",
        "company": None,
        "address1": "12 MG Road",
        "address2": None,
        "city": "Bengaluru",
        "province": "Karnataka",
        "province_code": "KA",
        "country": "India",
        "country_code": "IN",
        "zip": "560001",
        "phone": "+91 98450 00000",
    }
    base.update(overrides)
    return base


def customer_payload(
    customer_id: int, *, updated: datetime | None = None, **overrides: Any
) -> dict[str, Any]:
    updated = updated or BASE_TIME
    default = address(id=customer_id + 1, customer_id=customer_id, default=True)
    base: dict[str, Any] = {
        "id": customer_id,
        "created_at": iso(BASE_TIME - timedelta(days=30)),
        "updated_at": iso(updated),
        "first_name": "Asha",
        "last_name": "Rao",
        "state": "enabled",
        "note": None,
        "verified_email": True,
        "multipass_identifier": None,
        "tax_exempt": False,
        "email": f"asha{customer_id}@example.com",
        "phone": "+919845000000",
        "currency": "INR",
        "addresses": [default],
        "tax_exemptions": [],
        "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
        "default_address": default,
    }
    base.update(overrides)
    return base


def line_item(line_id: int, *, price: str = "499.00", quantity: int = 1, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": line_id,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{line_id}",
        "product_id": 9_100_000_000_001,
        "variant_id": 9_200_000_000_001,
        "title": "Cotton Kurta",
        "variant_title": "Red / M",
        "vendor": "Weavers Co",
        "sku": "KURTA-RED-M",
        "quantity": quantity,
        "price": price,
    }
    base.update(overrides)
    return base


def order_payload(
    order_id: int,
    *,
    customer_id: int | None = None,
    total: str | Decimal = "999.00",
    current_total: str | Decimal | None = None,
    updated: datetime | None = None,
    created: datetime | None = None,
    gateways: list[str] | None = None,
    lines: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    created = created or BASE_TIME
    updated = updated or created
    base: dict[str, Any] = {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{1000 + order_id % 100000}",
        "email": "asha@example.com",
        "phone": None,
        "created_at": iso(created),
        "updated_at": iso(updated),
        "processed_at": iso(created),
        "cancelled_at": None,
        "cancel_reason": None,
        "financial_status": "pending",
        "fulfillment_status": None,
        "currency": "INR",
        "total_price": str(total),
        "current_total_price": str(current_total if current_total is not None else total),
        "payment_gateway_names": gateways if gateways is not None else COD,
        "tags": "",
        "test": False,
        "customer": (
            {
                "id": customer_id,
                "email": f"asha{customer_id}@example.com",
                "first_name": "Asha",
                "last_name": "Rao",
                "created_at": None,
                "updated_at": None,
                "state": "disabled",
                "phone": None,
                "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
            }
            if customer_id is not None
            else None
        ),
        "shipping_address": address(),
        "billing_address": address(),
        "line_items": lines if lines is not None else [line_item(order_id * 10 + 1, price=str(total))],
        "fulfillments": [],
        "refunds": [],
        "returns": [],
    }
    base.update(overrides)
    return base


def fulfillment_payload(
    fulfillment_id: int,
    order_id: int,
    *,
    shipment_status: str | None = None,
    status: str = "success",
    created: datetime | None = None,
    updated: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """``fulfillments/create|update`` (and an item of an order's ``fulfillments``)."""
    created = created or BASE_TIME
    base: dict[str, Any] = {
        "id": fulfillment_id,
        "order_id": order_id,
        "status": status,
        "created_at": iso(created),
        "updated_at": iso(updated or created),
        "service": "manual",
        "tracking_company": "Delhivery",
        "tracking_number": f"DL{fulfillment_id}",
        "shipment_status": shipment_status,
        "location_id": None,
        "admin_graphql_api_id": f"gid://shopify/Fulfillment/{fulfillment_id}",
        "line_items": [],
    }
    base.update(overrides)
    return base


def fulfillment_event_payload(
    event_id: int,
    fulfillment_id: int,
    order_id: int,
    status: str,
    *,
    happened: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """``fulfillment_events/create``: a carrier event placed in time by ``happened_at``."""
    happened = happened or BASE_TIME
    base: dict[str, Any] = {
        "id": event_id,
        "fulfillment_id": fulfillment_id,
        "order_id": order_id,
        "status": status,
        "message": f"Shipment is {status}",
        "happened_at": iso(happened),
        "created_at": iso(happened),
        "updated_at": iso(happened),
        "estimated_delivery_at": None,
        "country": "IN",
        "admin_graphql_api_id": f"gid://shopify/FulfillmentEvent/{event_id}",
    }
    base.update(overrides)
    return base


def return_payload(
    return_id: int, order_id: int, *, status: str = "requested", **overrides: Any
) -> dict[str, Any]:
    """``returns/request|approve|decline|close`` (no timestamp of its own: see Triggered-At)."""
    base: dict[str, Any] = {
        "id": return_id,
        "admin_graphql_api_id": f"gid://shopify/Return/{return_id}",
        "status": status,
        "order": {"id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}"},
        "total_return_line_items": 1,
        "name": f"#R{return_id % 1000}",
        "return_line_items": [],
        "return_shipping_fees": [],
        "exchange_line_items": [],
        "total_exchange_line_items": 0,
    }
    base.update(overrides)
    return base


def refund_payload(
    refund_id: int,
    order_id: int,
    *,
    amount: str = "100.00",
    created: datetime | None = None,
    quantity: int = 1,
    **overrides: Any,
) -> dict[str, Any]:
    """``refunds/create`` with one successful refund transaction of ``amount``."""
    created = created or BASE_TIME
    base: dict[str, Any] = {
        "id": refund_id,
        "order_id": order_id,
        "created_at": iso(created),
        "processed_at": iso(created),
        "note": "Damaged in transit",
        "restock": True,
        "return": None,
        "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}",
        "order_adjustments": [],
        "refund_shipping_lines": [],
        "refund_line_items": [
            {
                "id": refund_id + 1,
                "quantity": quantity,
                "line_item_id": order_id * 10 + 1,
                "restock_type": "return",
            }
        ],
        "transactions": [
            {
                "id": refund_id + 2,
                "kind": "refund",
                "status": "success",
                "amount": amount,
                "gateway": "manual",
            }
        ],
    }
    base.update(overrides)
    return base
