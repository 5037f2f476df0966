"""The same Shopify records in two shapes: a REST webhook payload and an Admin GraphQL object.

Backfill tests build both from one description, so that "backfilled" and "received by webhook"
can be compared value for value. GraphQL shapes follow the Admin API 2026-04 objects that
``service.domain.backfill`` reads (gids, SCREAMING_CASE enums, ``*Set { shopMoney }``, tag lists).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from tests.support.payloads import address, customer_payload, fulfillment_payload, line_item, order_payload

BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))

_REST_FULFILLMENT_STATUS = {None: "UNFULFILLED", "fulfilled": "FULFILLED", "partial": "PARTIALLY_FULFILLED"}
SHIPMENT_STATUSES: tuple[str | None, ...] = (
    None,
    "label_printed",
    "confirmed",
    "in_transit",
    "out_for_delivery",
    "attempted_delivery",
    "failure",
    "delivered",
    "delivered",
    "delivered",
)


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def rest_time(moment: datetime) -> str:
    """REST payloads carry the shop's offset (here India)."""
    return moment.astimezone(IST).isoformat()


def gql_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def gql_address(rest: dict[str, Any] | None, *, with_id: bool) -> dict[str, Any] | None:
    if rest is None:
        return None
    out: dict[str, Any] = {
        "firstName": rest.get("first_name"),
        "lastName": rest.get("last_name"),
        "name": rest.get("name"),
        "company": rest.get("company"),
        "address1": rest.get("address1"),
        "address2": rest.get("address2"),
        "city": rest.get("city"),
        "province": rest.get("province"),
        "provinceCode": rest.get("province_code"),
        "country": rest.get("country"),
        "countryCodeV2": rest.get("country_code"),
        "zip": rest.get("zip"),
        "phone": rest.get("phone"),
    }
    if with_id:
        out["id"] = f"gid://shopify/MailingAddress/{rest['id']}?model_name=CustomerAddress"
    return out


@dataclass
class Twin:
    """One record: its webhook payload and its GraphQL object (children in bulk JSONL order)."""

    rest: dict[str, Any]
    gql: dict[str, Any]
    #: Bulk children (line items), each with ``__parentId``.
    children: list[dict[str, Any]] = field(default_factory=list)


def customer_twin(customer_id: int, *, updated: datetime, rng: random.Random) -> Twin:
    created = updated - timedelta(days=rng.randint(1, 300))
    addresses = [
        address(
            id=customer_id * 10 + n,
            customer_id=customer_id,
            default=n == 0,
            address1=f"{rng.randint(1, 999)} {rng.choice(['MG Road', 'Park Street', 'Linking Road'])}",
            city=rng.choice(["Bengaluru", "Kolkata", "Mumbai", "Pune"]),
            zip=f"{rng.randint(110000, 999999)}",
        )
        for n in range(rng.randint(1, 2))
    ]
    rest = customer_payload(
        customer_id,
        updated=updated,
        created_at=rest_time(created),
        updated_at=rest_time(updated),
        email=f"buyer{customer_id}@example.com",
        phone=f"+9198{customer_id % 10**8:08d}",
        first_name=rng.choice(["Asha", "Meera", "Ravi", "Kiran"]),
        last_name=rng.choice(["Rao", "Iyer", "Das", "Shah"]),
        state=rng.choice(["enabled", "disabled", "invited"]),
        addresses=addresses,
        default_address=addresses[0],
    )
    gql = {
        "id": gid("Customer", customer_id),
        "email": rest["email"],
        "phone": rest["phone"],
        "firstName": rest["first_name"],
        "lastName": rest["last_name"],
        "state": rest["state"].upper(),
        "createdAt": gql_time(created),
        "updatedAt": gql_time(updated),
        "defaultAddress": gql_address(addresses[0], with_id=True),
        "addresses": [gql_address(a, with_id=True) for a in addresses],
    }
    return Twin(rest, gql)


def order_twin(
    order_id: int,
    *,
    customer_id: int | None,
    created: datetime,
    rng: random.Random,
    max_lines: int = 4,
) -> Twin:
    updated = created + timedelta(hours=rng.randint(0, 72))
    lines = [
        line_item(
            order_id * 10 + n,
            price=f"{rng.randint(1, 40) * 50}.00",
            quantity=rng.randint(1, 3),
            product_id=9_100_000_000_000 + rng.randint(1, 30),
            variant_id=9_200_000_000_000 + rng.randint(1, 90),
            title=rng.choice(["Cotton Kurta", "Silk Saree", "Linen Shirt"]),
            variant_title=rng.choice(["Red / M", "Blue / L", None]),
            sku=rng.choice(["SKU-1", "SKU-2", None]),
        )
        for n in range(1, rng.randint(1, max_lines) + 1)
    ]
    total = sum((Decimal(li["price"]) * li["quantity"] for li in lines), Decimal(0))
    refunded = Decimal(rng.choice([0, 0, 0, 50]))
    current = max(Decimal(0), total - refunded)
    cancelled = created + timedelta(hours=2) if rng.random() < 0.07 else None
    tags = rng.choice([[], [], ["vip"], ["rto"], ["wholesale", "RTO-In-Transit"]])
    fulfillments = []
    if cancelled is None:
        for n in range(rng.choice([0, 1, 1, 1, 2])):
            f_created = created + timedelta(days=1, hours=n)
            status = "cancelled" if rng.random() < 0.05 else "success"
            fulfillments.append(
                fulfillment_payload(
                    order_id * 10 + 7 + n,
                    order_id,
                    status=status,
                    # Shopify shows a cancelled fulfillment as CANCELED, whatever the carrier said.
                    shipment_status=None if status == "cancelled" else rng.choice(SHIPMENT_STATUSES),
                    created=f_created,
                    updated=f_created + timedelta(days=rng.randint(0, 5)),
                    tracking_company=rng.choice(["Delhivery", "Bluedart", None]),
                    tracking_number=f"TRK{order_id}{n}",
                )
            )
    fulfillment_status = (
        None
        if not fulfillments
        else rng.choice(["fulfilled", "partial"])
        if len(fulfillments) == 1
        else "fulfilled"
    )
    financial = rng.choice(["pending", "paid", "paid", "partially_refunded", "refunded"])
    gateways = rng.choice(
        [["Cash on Delivery (COD)"], ["razorpay"], ["shopify_payments"], ["gift_card", "cod"]]
    )
    shipping = address(address1=f"{rng.randint(1, 99)} Ring Road", city="Delhi")
    rest = order_payload(
        order_id,
        customer_id=customer_id,
        total=f"{total:.2f}",
        current_total=f"{current:.2f}",
        created=created,
        updated=updated,
        gateways=gateways,
        lines=lines,
        created_at=rest_time(created),
        updated_at=rest_time(updated),
        processed_at=rest_time(created),
        cancelled_at=rest_time(cancelled) if cancelled else None,
        financial_status=financial,
        fulfillment_status=fulfillment_status,
        tags=", ".join(tags),
        test=rng.random() < 0.03,
        email=f"order{order_id}@example.com",
        phone=rng.choice([None, "+919800000000"]),
        shipping_address=shipping,
        billing_address=rng.choice([shipping, None]),
        fulfillments=fulfillments,
    )
    embedded = rest["customer"]
    gql = {
        "id": gid("Order", order_id),
        "name": rest["name"],
        "email": rest["email"],
        "phone": rest["phone"],
        "createdAt": gql_time(created),
        "updatedAt": gql_time(updated),
        "processedAt": gql_time(created),
        "cancelledAt": gql_time(cancelled),
        "displayFinancialStatus": financial.upper(),
        "displayFulfillmentStatus": _REST_FULFILLMENT_STATUS[fulfillment_status],
        "currencyCode": rest["currency"],
        "totalPriceSet": {"shopMoney": {"amount": str(total), "currencyCode": "INR"}},
        "currentTotalPriceSet": {"shopMoney": {"amount": f"{current:.1f}", "currencyCode": "INR"}},
        "paymentGatewayNames": gateways,
        "tags": tags,
        "test": rest["test"],
        "customer": (
            None
            if embedded is None
            else {
                "id": gid("Customer", embedded["id"]),
                "email": embedded["email"],
                "phone": embedded["phone"],
                "firstName": embedded["first_name"],
                "lastName": embedded["last_name"],
                "state": embedded["state"].upper(),
                "createdAt": None,
                "updatedAt": None,
            }
        ),
        "shippingAddress": gql_address(rest["shipping_address"], with_id=False),
        "billingAddress": gql_address(rest["billing_address"], with_id=False),
        "fulfillments": [
            {
                "id": gid("Fulfillment", f["id"]),
                "status": f["status"].upper(),
                "displayStatus": (f["shipment_status"] or "FULFILLED").upper()
                if f["status"] != "cancelled"
                else "CANCELED",
                "createdAt": gql_time(datetime.fromisoformat(f["created_at"])),
                "updatedAt": gql_time(datetime.fromisoformat(f["updated_at"])),
                "trackingInfo": [
                    {"company": f["tracking_company"], "number": f["tracking_number"], "url": None}
                ],
            }
            for f in fulfillments
        ],
    }
    children = [
        {
            "id": gid("LineItem", li["id"]),
            "quantity": li["quantity"],
            "title": li["title"],
            "variantTitle": li["variant_title"],
            "vendor": li["vendor"],
            "sku": li["sku"],
            "originalUnitPriceSet": {"shopMoney": {"amount": li["price"], "currencyCode": "INR"}},
            "product": {"id": gid("Product", li["product_id"])},
            "variant": {"id": gid("ProductVariant", li["variant_id"])},
            "__parentId": gid("Order", order_id),
        }
        for li in lines
    ]
    return Twin(rest, gql, children)


@dataclass
class Dataset:
    customers: list[Twin]
    orders: list[Twin]

    @property
    def customers_jsonl(self) -> bytes:
        return _jsonl([t.gql for t in self.customers])

    @property
    def orders_jsonl(self) -> bytes:
        """Orders with their line items after them, not directly after: in runs of 25 orders."""
        objects: list[dict[str, Any]] = []
        for start in range(0, len(self.orders), 25):
            run = self.orders[start : start + 25]
            objects += [t.gql for t in run]
            objects += [child for t in run for child in t.children]
        return _jsonl(objects)

    @property
    def line_count(self) -> int:
        return len(self.customers) + len(self.orders) + sum(len(t.children) for t in self.orders)


def _jsonl(objects: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(obj) + "\n" for obj in objects).encode()


def dataset(
    *, customers: int, orders: int, seed: int, max_lines: int = 4, first_id: int = 5_100_000_000_000
) -> Dataset:
    """Customers, then orders for them (a few guest orders), in a reproducible mix."""
    rng = random.Random(seed)
    customer_ids = [first_id + n for n in range(customers)]
    customer_twins = [
        customer_twin(cid, updated=BASE + timedelta(minutes=n * 7), rng=rng)
        for n, cid in enumerate(customer_ids)
    ]
    order_twins = []
    for n in range(orders):
        customer_id = None if rng.random() < 0.04 else rng.choice(customer_ids)
        order_twins.append(
            order_twin(
                first_id + 1_000_000 + n,
                customer_id=customer_id,
                created=BASE + timedelta(hours=n * 3 + rng.randint(0, 2)),
                rng=rng,
                max_lines=max_lines,
            )
        )
    return Dataset(customer_twins, order_twins)
