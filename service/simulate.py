"""``tierline simulate``: realistic, signed Shopify webhook traffic, for a demo and a load test.

Two halves, kept apart so each can be tested on its own:

* :func:`generate_traffic` is pure and deterministic: the same arguments give the same list of
  deliveries, ids and bodies included (one ``random.Random(seed)``, no clock, no global state).
  It plays a shop's history in Shopify's documented payload shapes (API 2026-04): customers sign
  up (``customers/create``) and some change later (``customers/update``); orders arrive from a
  skewed population of buyers (a few customers place many orders), about 40 % cash on delivery;
  some orders are paid, edited, tagged for RTO, cancelled or deleted; a few customers are deleted.
  Like Shopify, it delivers some webhooks twice (same ``X-Shopify-Webhook-Id``, same body) and
  out of order (an ``orders/updated`` can arrive before its ``orders/create``).
* :func:`send_traffic` posts them to ``{url}/webhooks/shopify`` with Shopify's headers and
  signature, a bounded number at a time, retrying ``503`` and connection errors with a short
  backoff as Shopify would, and reports status counts, throughput and latency.

This module is part of the service core: it imports ``shopify_client`` but never ``webhooks``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

import httpx

from shopify_client import webhook_hmac

API_VERSION = "2026-04"
WEBHOOK_PATH = "/webhooks/shopify"
CURRENCY = "INR"

#: Payload timestamps carry the shop's offset, as Shopify writes them (an Indian shop here).
SHOP_TZ = timezone(timedelta(hours=5, minutes=30))
#: Where the simulated history begins when no ``start`` is given (keeps the generator pure).
DEFAULT_START = datetime(2026, 1, 1, 3, 30, tzinfo=UTC)
#: Length of the simulated history; every event falls within ``[start, start + days]``.
DEFAULT_DAYS = 180
MIN_DAYS = 60

#: Shares of the simulated history (documented in ``tierline simulate --help`` and the README).
COD_SHARE = 0.40
EDIT_SHARE = 0.10
CANCEL_SHARE = 0.07
RTO_SHARE_OF_COD = 0.07
COD_PAID_SHARE = 0.70
CUSTOMER_UPDATE_SHARE = 0.30
CUSTOMER_DELETE_SHARE = 0.03
ORDER_DELETE_SHARE = 0.02
DUPLICATE_SHARE = 0.03
LATE_DELIVERY_SHARE = 0.04

COD_GATEWAYS = ("Cash on Delivery (COD)", "cash_on_delivery")
PREPAID_GATEWAYS = ("shopify_payments", "razorpay")
GST_RATE = Decimal("0.12")
FREE_SHIPPING_FROM = Decimal("999.00")
SHIPPING_FEE = Decimal("79.00")
DISCOUNT_CODE = "FESTIVE10"
DISCOUNT_RATE = Decimal("0.10")

#: Statuses Shopify retries and so does the sender (connection errors too).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_SECONDS = 0.25

_CENT = Decimal("0.01")
_MIN_ID = 10**15  # beyond 2**53: ids that a float or a JavaScript number would corrupt
_MAX_ID = 2**63 - 1

# (title, vendor, SKU prefix, grams, popularity, ((variant title or None, price), ...))
_CATALOGUE: tuple[tuple[str, str, str, int, int, tuple[tuple[str | None, str], ...]], ...] = (
    (
        "Cotton Kurta",
        "Weavers Co",
        "KURTA",
        350,
        30,
        (
            ("Red / S", "799.00"),
            ("Red / M", "799.00"),
            ("Red / L", "799.00"),
            ("Indigo / M", "849.00"),
            ("Indigo / L", "849.00"),
            ("Mustard / XL", "899.00"),
        ),
    ),
    (
        "Linen Shirt",
        "Loom & Thread",
        "LINEN",
        300,
        15,
        (
            ("White / M", "1299.00"),
            ("White / L", "1299.00"),
            ("Sky Blue / M", "1349.00"),
            ("Sky Blue / XL", "1349.00"),
        ),
    ),
    (
        "Banarasi Silk Saree",
        "Banaras Looms",
        "SAREE",
        800,
        6,
        (("Maroon", "4499.00"), ("Emerald", "4699.00")),
    ),
    ("Block Print Dupatta", "Jaipur Prints", "DUPATTA", 200, 20, (("Red", "549.00"), ("Yellow", "549.00"))),
    (
        "Kolhapuri Chappal",
        "Kolhapur Crafts",
        "CHAPPAL",
        600,
        10,
        (("Tan / 7", "999.00"), ("Tan / 8", "999.00"), ("Black / 9", "1049.00")),
    ),
    ("Masala Chai Gift Box", "Assam Leaf", "CHAI", 500, 14, (("250 g", "449.00"), ("500 g", "799.00"))),
    ("Brass Diya Set", "Moradabad Metals", "DIYA", 900, 5, ((None, "699.00"),)),
)

_FIRST_NAMES = (
    "Aarav", "Ananya", "Vivaan", "Diya", "Aditya", "Kavya", "Ishaan", "Meera", "Rohan", "Priya",
    "Saanvi", "Arjun", "Neha", "Rahul", "Sneha", "Vikram", "Pooja", "Karan", "Lakshmi", "Farhan",
    "Zoya", "Harpreet", "Tenzin", "Joseph",
)  # fmt: skip
_LAST_NAMES = (
    "Sharma", "Iyer", "Reddy", "Patel", "Nair", "Gupta", "Singh", "Khan", "Das", "Menon", "Joshi",
    "Mukherjee", "Kulkarni", "Fernandes", "Chatterjee", "Rao",
)  # fmt: skip
# (city, province, province code, first four digits of the PIN code, streets)
_CITIES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("Mumbai", "Maharashtra", "MH", "4000", ("Linking Road", "Marine Drive", "Hill Road")),
    ("Pune", "Maharashtra", "MH", "4110", ("FC Road", "Koregaon Park Lane 5")),
    ("Bengaluru", "Karnataka", "KA", "5600", ("MG Road", "Residency Road", "80 Feet Road")),
    ("New Delhi", "Delhi", "DL", "1100", ("Janpath", "Lodhi Road")),
    ("Chennai", "Tamil Nadu", "TN", "6000", ("Anna Salai", "TTK Road")),
    ("Hyderabad", "Telangana", "TG", "5000", ("Road No. 12, Banjara Hills", "Jubilee Hills Road")),
    ("Kolkata", "West Bengal", "WB", "7000", ("Park Street", "Rashbehari Avenue")),
    ("Jaipur", "Rajasthan", "RJ", "3020", ("MI Road", "Tonk Road")),
    ("Ahmedabad", "Gujarat", "GJ", "3800", ("Ashram Road", "CG Road")),
    ("Lucknow", "Uttar Pradesh", "UP", "2260", ("Hazratganj", "Gomti Nagar Vistar")),
    ("Kochi", "Kerala", "KL", "6820", ("MG Road", "Panampilly Avenue")),
)
_CANCEL_REASONS = (("customer", 55), ("inventory", 15), ("declined", 15), ("other", 15))
_ORDER_TAGS = (("gift", 0.05), ("wholesale", 0.03), ("instagram", 0.08))

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# The generator


@dataclass(frozen=True, slots=True)
class SimulatedDelivery:
    """One webhook delivery: what Shopify would POST (the body is ``payload`` as JSON).

    A duplicate re-send is a second delivery with the same ``webhook_id``, ``event_id`` and body.
    """

    topic: str
    payload: dict[str, Any]
    webhook_id: str
    triggered_at: datetime
    event_id: str = ""

    def body(self) -> bytes:
        """The raw body, byte-identical for equal payloads (the signature covers these bytes)."""
        return json.dumps(self.payload, ensure_ascii=False, separators=(",", ":")).encode()

    def headers(self, *, shop: str, secret: str, body: bytes | None = None) -> dict[str, str]:
        """Shopify's delivery headers for this delivery, signed with ``secret``."""
        raw = self.body() if body is None else body
        return {
            "Content-Type": "application/json",
            "User-Agent": "Shopify-Captain-Hook",
            "X-Shopify-Topic": self.topic,
            "X-Shopify-Hmac-Sha256": webhook_hmac(raw, secret),
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-API-Version": API_VERSION,
            "X-Shopify-Webhook-Id": self.webhook_id,
            "X-Shopify-Event-Id": self.event_id or str(uuid.uuid5(uuid.NAMESPACE_URL, self.webhook_id)),
            "X-Shopify-Triggered-At": _utc_header(self.triggered_at),
        }


@dataclass(frozen=True, slots=True)
class _Variant:
    product_id: int
    variant_id: int
    title: str
    variant_title: str | None
    vendor: str
    sku: str
    grams: int
    price: Decimal


@dataclass(slots=True)
class _Line:
    id: int
    variant: _Variant
    quantity: int
    current_quantity: int
    added: bool = False  # added by an order edit: not part of the original total


@dataclass(slots=True)
class _Order:
    id: int
    number: int
    created_at: datetime
    customer: dict[str, Any]  # the customer's payload as of the order
    cod: bool
    gateway: str
    lines: list[_Line]
    shipping_address: dict[str, Any]
    billing_address: dict[str, Any]
    discount: bool
    tags: list[str]
    token: str
    confirmation_number: str
    shipping_line_id: int
    browser_ip: str
    buyer_accepts_marketing: bool
    updated_at: datetime = field(init=False)
    financial_status: str = field(init=False)
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    closed_at: datetime | None = None
    refunded: bool = False

    def __post_init__(self) -> None:
        self.updated_at = self.created_at
        self.financial_status = "pending" if self.cod else "paid"


@dataclass(frozen=True, slots=True)
class _Event:
    at: datetime
    seq: int
    topic: str
    payload: dict[str, Any]


class _Ids:
    """Unique positive 64-bit ids drawn from the seeded generator (other seeds rarely collide)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._seen: set[int] = set()

    def __call__(self) -> int:
        while True:
            value = self._rng.randint(_MIN_ID, _MAX_ID)
            if value not in self._seen:
                self._seen.add(value)
                return value


def generate_traffic(
    *,
    shop: str,
    customers: int,
    orders: int,
    seed: int,
    start: datetime | None = None,
    days: int = DEFAULT_DAYS,
) -> list[SimulatedDelivery]:
    """A shop's webhook traffic over ``days`` from ``start``, in the order it reaches the server.

    ``customers`` customers are created, ``orders`` distinct orders are placed; the deliveries
    (creates, updates, payments, edits, cancellations, deletes and ~3 % duplicate re-sends)
    outnumber them. Deterministic: the same arguments always give an equal list.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if orders < 0:
        raise ValueError("orders must not be negative")
    if days < MIN_DAYS:
        raise ValueError(f"days must be at least {MIN_DAYS}")
    origin = _aware(start or DEFAULT_START).replace(microsecond=0)
    end = origin + timedelta(days=days)
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data, not security
    new_id = _Ids(rng)
    catalogue = _build_catalogue(new_id)
    seq = _Counter()
    events: list[_Event] = []

    # Customers sign up during the first half of the history.
    people = [_new_customer(rng, new_id, origin + _seconds(rng, 0, days * 43_200)) for _ in range(customers)]
    people.sort(key=lambda c: c["created_at"])
    # Each customer's versions over time: [(from, payload)], the create first.
    versions: dict[int, list[tuple[datetime, dict[str, Any]]]] = {}
    for person in people:
        created = _parse(person["created_at"])
        history = [(created, person)]
        events.append(_Event(created, seq(), "customers/create", person))
        if rng.random() < CUSTOMER_UPDATE_SHARE:
            at = created + _seconds(rng, 86_400, int((end - created).total_seconds()) - 86_400)
            updated = _update_customer(rng, new_id, person, at)
            history.append((at, updated))
            events.append(_Event(at, seq(), "customers/update", updated))
        versions[person["id"]] = history

    # A few customers (with no orders: Shopify refuses to delete those who have some) are deleted.
    deleted_count = round(customers * CUSTOMER_DELETE_SHARE) or (1 if customers >= 5 else 0)
    deleted = set(rng.sample([p["id"] for p in people], deleted_count))
    buyers = [p for p in people if p["id"] not in deleted]
    for person in people:
        if person["id"] in deleted:
            last = versions[person["id"]][-1][0]
            at = min(last + _seconds(rng, 3_600, 20 * 86_400), end)
            payload = {
                "id": person["id"],
                "tax_exemptions": [],
                "admin_graphql_api_id": person["admin_graphql_api_id"],
            }
            events.append(_Event(at, seq(), "customers/delete", payload))

    # Buyers follow a Pareto-like law: a few customers place many orders.
    weights = [min(rng.paretovariate(1.3), 30.0) for _ in buyers]
    last_order_at = end - timedelta(days=21)  # room for every follow-up before ``end``
    placed: list[_Order] = []
    for _ in range(orders):
        buyer = rng.choices(buyers, weights=weights)[0]
        first = _parse(buyer["created_at"]) + timedelta(minutes=10)
        created = first + _seconds(rng, 0, int((last_order_at - first).total_seconds()))
        placed.append(_new_order(rng, new_id, catalogue, versions[buyer["id"]], created))
    placed.sort(key=lambda o: o.created_at)

    lives: list[tuple[_Order, datetime]] = []  # each order with the time of its last event
    for number, order in enumerate(placed, start=1001):
        order.number = number
        lives.append((order, _play_order(rng, new_id, catalogue, order, events, seq, shop)))

    # A few orders are deleted (mostly cancelled ones, as merchants do); a tombstone follows.
    delete_count = round(orders * ORDER_DELETE_SHARE) or (1 if orders >= 5 else 0)
    cancelled = [(o, t) for o, t in lives if o.cancelled_at is not None]
    others = [(o, t) for o, t in lives if o.cancelled_at is None]
    chosen = rng.sample(cancelled, min(delete_count, len(cancelled)))
    chosen += rng.sample(others, min(delete_count - len(chosen), len(others)))
    for order, last in chosen:
        events.append(
            _Event(last + _seconds(rng, 86_400, 4 * 86_400), seq(), "orders/delete", {"id": order.id})
        )

    return _deliver(rng, events)


class _Counter:
    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        self._next += 1
        return self._next


def _play_order(
    rng: random.Random,
    new_id: _Ids,
    catalogue: Sequence[_Variant],
    order: _Order,
    events: list[_Event],
    seq: _Counter,
    shop: str,
) -> datetime:
    """Append the order's events (create, then its life); return the time of the last one."""

    def emit(topic: str, at: datetime) -> None:
        order.updated_at = at
        events.append(_Event(at, seq(), topic, _order_payload(order, shop)))

    at = order.created_at
    emit("orders/create", at)
    if not order.cod:  # a captured online payment: Shopify also sends orders/paid
        at += _seconds(rng, 2, 20)
        emit("orders/paid", at)
    if rng.random() < EDIT_SHARE:
        at += _seconds(rng, 3_600, 36 * 3_600)
        _edit(rng, new_id, catalogue, order)
        emit("orders/updated", at)
    fate = rng.random()
    if order.cod and fate < RTO_SHARE_OF_COD:
        # Returned to origin: the merchant tags it, and often cancels it once it is back.
        at += _seconds(rng, 4 * 86_400, 10 * 86_400)
        order.tags.append("rto")
        emit("orders/updated", at)
        if rng.random() < 0.5:
            at += _seconds(rng, 86_400, 2 * 86_400)
            _cancel(order, at, "other")
            emit("orders/cancelled", at)
    elif RTO_SHARE_OF_COD <= fate < RTO_SHARE_OF_COD + CANCEL_SHARE:
        at += _seconds(rng, 3_600, 2 * 86_400)
        _cancel(order, at, _weighted(rng, _CANCEL_REASONS))
        emit("orders/cancelled", at)
    elif order.cod and rng.random() < COD_PAID_SHARE:
        # Cash collected on delivery; the merchant marks the order as paid.
        at += _seconds(rng, 3 * 86_400, 8 * 86_400)
        order.financial_status = "paid"
        order.closed_at = at
        emit("orders/paid", at)
    return at


def _edit(rng: random.Random, new_id: _Ids, catalogue: Sequence[_Variant], order: _Order) -> None:
    """An order edit: remove one unit, or add an item; ``current_total_price`` changes."""
    live = [line for line in order.lines if line.current_quantity > 0]
    units = sum(line.current_quantity for line in live)
    if units > 1 and rng.random() < 0.6:
        line = rng.choice(live)
        line.current_quantity -= 1
        if order.financial_status == "paid":
            order.financial_status = "partially_refunded"
    else:
        variant = rng.choice(catalogue)
        order.lines.append(_Line(new_id(), variant, 1, 1, added=True))
        if order.financial_status == "paid":
            order.financial_status = "partially_paid"


def _cancel(order: _Order, at: datetime, reason: str) -> None:
    order.cancelled_at = at
    order.closed_at = at
    order.cancel_reason = reason
    if order.financial_status in ("paid", "partially_paid", "partially_refunded"):
        order.financial_status = "refunded"
        order.refunded = True
    else:
        order.financial_status = "voided"


def _deliver(rng: random.Random, events: list[_Event]) -> list[SimulatedDelivery]:
    """Turn events into deliveries in arrival order: jittered, sometimes late, ~3 % sent twice."""
    events.sort(key=lambda e: (e.at, e.seq))
    arrivals: list[tuple[datetime, int, SimulatedDelivery]] = []
    for index, event in enumerate(events):
        triggered = event.at + timedelta(milliseconds=rng.randint(5, 900))
        # Usually a second or two; sometimes hours (a failed first attempt, retried later).
        late = rng.random() < LATE_DELIVERY_SHARE
        delay = rng.uniform(60, 6 * 3_600) if late else rng.expovariate(1 / 1.5)
        delivery = SimulatedDelivery(
            topic=event.topic,
            payload=event.payload,
            webhook_id=_uuid(rng),
            triggered_at=triggered,
            event_id=_uuid(rng),
        )
        arrivals.append((triggered + timedelta(seconds=delay), index, delivery))
    if arrivals:
        count = max(1, round(len(arrivals) * DUPLICATE_SHARE))
        for arrival, index, delivery in rng.sample(arrivals, count):
            resend = SimulatedDelivery(
                topic=delivery.topic,
                payload=copy.deepcopy(delivery.payload),
                webhook_id=delivery.webhook_id,
                triggered_at=delivery.triggered_at,
                event_id=delivery.event_id,
            )
            arrivals.append(
                (arrival + timedelta(seconds=rng.uniform(20, 1_800)), len(events) + index, resend)
            )
    arrivals.sort(key=lambda a: (a[0], a[1]))
    return _ensure_update_before_create([delivery for _, _, delivery in arrivals])


def _ensure_update_before_create(deliveries: list[SimulatedDelivery]) -> list[SimulatedDelivery]:
    """Make sure at least one order's ``orders/updated`` arrives before its ``orders/create``."""
    first: dict[tuple[str, int], int] = {}
    for index, delivery in enumerate(deliveries):
        if delivery.topic in ("orders/create", "orders/updated"):
            first.setdefault((delivery.topic, delivery.payload["id"]), index)
    updated = sorted((i, oid) for (topic, oid), i in first.items() if topic == "orders/updated")
    if not updated or any(i < first[("orders/create", oid)] for i, oid in updated):
        return deliveries
    _, order_id = updated[0]

    def is_create(delivery: SimulatedDelivery) -> bool:
        return delivery.topic == "orders/create" and delivery.payload["id"] == order_id

    creates = [d for d in deliveries if is_create(d)]  # the create and any re-send of it
    reordered = [d for d in deliveries if not is_create(d)]
    after = next(
        i for i, d in enumerate(reordered) if d.topic == "orders/updated" and d.payload["id"] == order_id
    )
    return reordered[: after + 1] + creates + reordered[after + 1 :]


# --------------------------------------------------------------------------------------------
# Payload builders (Shopify's documented shapes, API 2026-04)


def _build_catalogue(new_id: _Ids) -> list[_Variant]:
    variants: list[_Variant] = []
    for title, vendor, sku_prefix, grams, _popularity, options in _CATALOGUE:
        product_id = new_id()
        for variant_title, price in options:
            suffix = "" if variant_title is None else "-" + variant_title.upper().replace(" / ", "-")
            variants.append(
                _Variant(
                    product_id=product_id,
                    variant_id=new_id(),
                    title=title,
                    variant_title=variant_title,
                    vendor=vendor,
                    sku=(sku_prefix + suffix).replace(" ", ""),
                    grams=grams,
                    price=Decimal(price),
                )
            )
    return variants


def _pick_variant(rng: random.Random, catalogue: Sequence[_Variant]) -> _Variant:
    title = _weighted(rng, [(p[0], p[4]) for p in _CATALOGUE])
    return rng.choice([v for v in catalogue if v.title == title])


def _new_address(
    rng: random.Random, new_id: _Ids, customer_id: int, first: str, last: str, phone: str, *, default: bool
) -> dict[str, Any]:
    """A customer address, in the shape of ``customers/*`` ``addresses[]``."""
    city, province, code, pin, streets = rng.choice(_CITIES)
    return {
        "id": new_id(),
        "customer_id": customer_id,
        "first_name": first,
        "last_name": last,
        "company": None,
        "address1": f"{rng.randint(1, 220)} {rng.choice(streets)}",
        "address2": rng.choice((None, None, f"Flat {rng.randint(1, 12)}{rng.choice('ABCD')}")),
        "city": city,
        "province": province,
        "country": "India",
        "zip": f"{pin}{rng.randint(1, 99):02d}",
        "phone": phone,
        "name": f"{first} {last}",
        "province_code": code,
        "country_code": "IN",
        "country_name": "India",
        "default": default,
    }


def _new_customer(rng: random.Random, new_id: _Ids, created: datetime) -> dict[str, Any]:
    customer_id = new_id()
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    phone = _phone(rng)
    email = None if rng.random() < 0.05 else f"{first}.{last}.{customer_id % 100_000}@example.com".lower()
    addresses = [
        _new_address(rng, new_id, customer_id, first, last, phone, default=index == 0)
        for index in range(rng.choice((1, 1, 1, 2)))
    ]
    return {
        "id": customer_id,
        "created_at": _iso(created),
        "updated_at": _iso(created),
        "first_name": first,
        "last_name": last,
        "state": rng.choice(("disabled", "disabled", "enabled", "invited")),
        "note": None,
        "verified_email": email is not None,
        "multipass_identifier": None,
        "tax_exempt": False,
        "email": email,
        "phone": phone,
        "currency": CURRENCY,
        "addresses": addresses,
        "tax_exemptions": [],
        "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
        "default_address": addresses[0],
    }


def _update_customer(
    rng: random.Random, new_id: _Ids, customer: dict[str, Any], at: datetime
) -> dict[str, Any]:
    """A later version of the customer: a new phone, an activated account or a new default address."""
    updated = copy.deepcopy(customer)
    updated["updated_at"] = _iso(at)
    change = rng.choice(("phone", "state", "address", "address"))
    if change == "phone":
        updated["phone"] = _phone(rng)
    elif change == "state":
        updated["state"] = "enabled"
    else:
        address = _new_address(
            rng,
            new_id,
            updated["id"],
            updated["first_name"],
            updated["last_name"],
            updated["phone"],
            default=True,
        )
        for existing in updated["addresses"]:
            existing["default"] = False
        updated["addresses"].insert(0, address)
        updated["default_address"] = address
    return updated


def _new_order(
    rng: random.Random,
    new_id: _Ids,
    catalogue: Sequence[_Variant],
    versions: Sequence[tuple[datetime, dict[str, Any]]],
    created: datetime,
) -> _Order:
    customer = [payload for since, payload in versions if since <= created][-1]
    addresses = customer["addresses"]
    ship_from = customer["default_address"] if rng.random() < 0.75 else rng.choice(addresses)
    shipping = _order_address(ship_from)
    billing = shipping if rng.random() < 0.85 else _order_address(rng.choice(addresses))
    lines: list[_Line] = []
    for _ in range(_weighted(rng, ((1, 55), (2, 27), (3, 12), (4, 6)))):
        variant = _pick_variant(rng, catalogue)
        quantity = _weighted(rng, ((1, 80), (2, 15), (3, 5)))
        same = next((line for line in lines if line.variant == variant), None)
        if same is not None:
            same.quantity += quantity
            same.current_quantity += quantity
        else:
            lines.append(_Line(new_id(), variant, quantity, quantity))
    cod = rng.random() < COD_SHARE
    gateway = (
        (COD_GATEWAYS[0] if rng.random() < 0.7 else COD_GATEWAYS[1])
        if cod
        else _weighted(rng, ((PREPAID_GATEWAYS[0], 55), (PREPAID_GATEWAYS[1], 45)))
    )
    tags = [tag for tag, share in _ORDER_TAGS if rng.random() < share]
    if cod and rng.random() < 0.3:
        tags.insert(0, "cod-verified")
    return _Order(
        id=new_id(),
        number=0,
        created_at=created,
        customer=customer,
        cod=cod,
        gateway=gateway,
        lines=lines,
        shipping_address=shipping,
        billing_address=billing,
        discount=rng.random() < 0.15,
        tags=tags,
        token=f"{rng.getrandbits(128):032x}",
        confirmation_number="".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9)),
        shipping_line_id=new_id(),
        browser_ip=f"203.0.113.{rng.randint(1, 254)}",  # a documentation range (RFC 5737)
        buyer_accepts_marketing=rng.random() < 0.4,
    )


def _order_address(address: Mapping[str, Any]) -> dict[str, Any]:
    """A customer address as an order's shipping or billing address (no id, with coordinates)."""
    keys = ("first_name", "address1", "phone", "city", "zip", "province", "country", "last_name", "address2")
    result = {key: address[key] for key in keys}
    result |= {
        "company": address["company"],
        "latitude": None,
        "longitude": None,
        "name": address["name"],
        "country_code": address["country_code"],
        "province_code": address["province_code"],
    }
    return result


def _embedded_customer(customer: Mapping[str, Any]) -> dict[str, Any]:
    """The ``customer`` object of an order payload (its dates are null in Shopify's samples)."""
    embedded = {key: copy.deepcopy(value) for key, value in customer.items() if key != "addresses"}
    embedded["created_at"] = None
    embedded["updated_at"] = None
    return embedded


def _order_payload(order: _Order, shop: str) -> dict[str, Any]:
    """The REST Order as the orders/* topics carry it, for the order's current state."""
    original = [line for line in order.lines if not line.added]
    line_total = _money_sum(line.variant.price * line.quantity for line in original)
    discount = (line_total * DISCOUNT_RATE).quantize(_CENT, ROUND_HALF_UP) if order.discount else Decimal(0)
    shipping = Decimal(0) if line_total - discount >= FREE_SHIPPING_FROM else SHIPPING_FEE
    subtotal = line_total - discount
    total = subtotal + shipping
    tax = _included_tax(subtotal)

    current_lines = _money_sum(line.variant.price * line.current_quantity for line in order.lines)
    current_discount = (
        (current_lines * DISCOUNT_RATE).quantize(_CENT, ROUND_HALF_UP) if order.discount else Decimal(0)
    )
    current_subtotal = current_lines - current_discount
    current_total = current_subtotal + shipping
    if order.refunded:
        current_subtotal = current_discount = current_total = Decimal(0)
    current_tax = _included_tax(current_subtotal)
    if order.financial_status == "pending":
        outstanding = current_total
    elif order.financial_status == "partially_paid":
        outstanding = max(current_total - total, Decimal(0))
    else:
        outstanding = Decimal(0)

    customer = order.customer
    return {
        "id": order.id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order.id}",
        "browser_ip": order.browser_ip,
        "buyer_accepts_marketing": order.buyer_accepts_marketing,
        "cancel_reason": order.cancel_reason,
        "cancelled_at": _iso(order.cancelled_at),
        "closed_at": _iso(order.closed_at),
        "confirmation_number": order.confirmation_number,
        "confirmed": True,
        "contact_email": customer["email"],
        "created_at": _iso(order.created_at),
        "currency": CURRENCY,
        "current_subtotal_price": _amount(current_subtotal),
        "current_subtotal_price_set": _money_set(current_subtotal),
        "current_total_discounts": _amount(current_discount),
        "current_total_discounts_set": _money_set(current_discount),
        "current_total_price": _amount(current_total),
        "current_total_price_set": _money_set(current_total),
        "current_total_tax": _amount(current_tax),
        "current_total_tax_set": _money_set(current_tax),
        "customer_locale": "en-IN",
        "discount_codes": (
            [{"code": DISCOUNT_CODE, "amount": _amount(discount), "type": "percentage"}]
            if order.discount
            else []
        ),
        "email": customer["email"],
        "estimated_taxes": False,
        "financial_status": order.financial_status,
        "fulfillment_status": None,
        "name": f"#{order.number}",
        "note": None,
        "note_attributes": [],
        "number": order.number - 1000,
        "order_number": order.number,
        "order_status_url": f"https://{shop}/orders/{order.token}/authenticate?key={order.token[:16]}",
        "payment_gateway_names": [order.gateway],
        "phone": customer["phone"] if customer["email"] is None else None,
        "presentment_currency": CURRENCY,
        "processed_at": _iso(order.created_at),
        "source_name": "web",
        "subtotal_price": _amount(subtotal),
        "subtotal_price_set": _money_set(subtotal),
        "tags": ", ".join(order.tags),
        "tax_exempt": False,
        "tax_lines": [
            {"price": _amount(tax), "rate": float(GST_RATE), "title": "IGST", "price_set": _money_set(tax)}
        ],
        "taxes_included": True,
        "test": False,
        "token": order.token,
        "total_discounts": _amount(discount),
        "total_discounts_set": _money_set(discount),
        "total_line_items_price": _amount(line_total),
        "total_line_items_price_set": _money_set(line_total),
        "total_outstanding": _amount(outstanding),
        "total_price": _amount(total),
        "total_price_set": _money_set(total),
        "total_shipping_price_set": _money_set(shipping),
        "total_tax": _amount(tax),
        "total_tax_set": _money_set(tax),
        "total_tip_received": "0.00",
        "total_weight": sum(line.variant.grams * line.current_quantity for line in order.lines),
        "updated_at": _iso(order.updated_at),
        "user_id": None,
        "billing_address": dict(order.billing_address),
        "customer": _embedded_customer(customer),
        "discount_applications": [],
        "fulfillments": [],
        "line_items": [_line_payload(line) for line in order.lines],
        "payment_terms": None,
        "refunds": [],
        "shipping_address": dict(order.shipping_address),
        "shipping_lines": [
            {
                "id": order.shipping_line_id,
                "carrier_identifier": None,
                "code": "Standard",
                "discounted_price": _amount(shipping),
                "discounted_price_set": _money_set(shipping),
                "price": _amount(shipping),
                "price_set": _money_set(shipping),
                "source": "shopify",
                "title": "Standard Shipping",
                "tax_lines": [],
                "discount_allocations": [],
            }
        ],
        "returns": [],
    }


def _line_payload(line: _Line) -> dict[str, Any]:
    variant = line.variant
    return {
        "id": line.id,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{line.id}",
        "current_quantity": line.current_quantity,
        "fulfillable_quantity": line.current_quantity,
        "fulfillment_service": "manual",
        "fulfillment_status": None,
        "gift_card": False,
        "grams": variant.grams,
        "name": variant.title
        if variant.variant_title is None
        else f"{variant.title} - {variant.variant_title}",
        "price": _amount(variant.price),
        "price_set": _money_set(variant.price),
        "product_exists": True,
        "product_id": variant.product_id,
        "properties": [],
        "quantity": line.quantity,
        "requires_shipping": True,
        "sku": variant.sku,
        "taxable": True,
        "title": variant.title,
        "total_discount": "0.00",
        "total_discount_set": _money_set(Decimal(0)),
        "variant_id": variant.variant_id,
        "variant_inventory_management": "shopify",
        "variant_title": variant.variant_title,
        "vendor": variant.vendor,
        "tax_lines": [],
        "duties": [],
        "discount_allocations": [],
    }


# --------------------------------------------------------------------------------------------
# Small helpers


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _seconds(rng: random.Random, low: int, high: int) -> timedelta:
    return timedelta(seconds=rng.randint(low, max(low, high)))


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 with the shop's offset, to the second (``2026-03-01T17:30:00+05:30``)."""
    return None if moment is None else moment.astimezone(SHOP_TZ).isoformat(timespec="seconds")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def _utc_header(moment: datetime) -> str:
    return _aware(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _phone(rng: random.Random) -> str:
    return f"+91{rng.choice('6789')}{rng.randint(0, 999_999_999):09d}"


def _weighted(rng: random.Random, choices: Sequence[tuple[T, int]]) -> T:
    return rng.choices([value for value, _ in choices], weights=[weight for _, weight in choices])[0]


def _money_sum(amounts: Iterable[Decimal]) -> Decimal:
    return sum(amounts, Decimal(0)).quantize(_CENT)


def _included_tax(gross: Decimal) -> Decimal:
    """GST contained in a tax-inclusive amount."""
    return (gross * GST_RATE / (1 + GST_RATE)).quantize(_CENT, ROUND_HALF_UP)


def _amount(value: Decimal) -> str:
    return str(value.quantize(_CENT))


def _money_set(value: Decimal) -> dict[str, dict[str, str]]:
    money = {"amount": _amount(value), "currency_code": CURRENCY}
    return {"shop_money": money, "presentment_money": dict(money)}


# --------------------------------------------------------------------------------------------
# The sender


@dataclass(frozen=True, slots=True)
class SendReport:
    """What happened to a batch of deliveries.

    ``status_counts`` counts each delivery's final HTTP status; ``outcomes`` counts tierline's
    acknowledgements of the ``200`` answers (``accepted``, ``duplicate``); ``errors`` counts
    deliveries that got no HTTP answer at all after every retry. Latencies are per HTTP request.
    """

    sent: int
    status_counts: Mapping[int, int]
    outcomes: Mapping[str, int]
    errors: int
    error_kinds: Mapping[str, int]
    retries: int
    elapsed_seconds: float
    rate: float
    p50_ms: float
    p99_ms: float

    @property
    def accepted(self) -> int:
        return self.outcomes.get("accepted", 0)

    @property
    def duplicates(self) -> int:
        return self.outcomes.get("duplicate", 0)

    @property
    def failed(self) -> int:
        """Deliveries that did not end in ``200`` (an error status or no answer)."""
        return self.sent - self.status_counts.get(200, 0)

    @property
    def ok(self) -> bool:
        return self.failed == 0


async def send_traffic(
    deliveries: Sequence[SimulatedDelivery],
    *,
    url: str,
    secret: str,
    shop: str,
    concurrency: int = 8,
    http: httpx.AsyncClient | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
) -> SendReport:
    """POST every delivery to ``{url}/webhooks/shopify``, at most ``concurrency`` at a time.

    A ``503`` (or 429/502/504) or a connection error is retried up to ``max_attempts`` times in all,
    waiting ``backoff``, then twice as long each time. ``progress(done, total)`` is called after
    each delivery settles. Deliveries are taken in list order; with ``concurrency`` above one,
    neighbours may overtake each other, as with Shopify.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    endpoint = url.rstrip("/") + WEBHOOK_PATH
    total = len(deliveries)
    client = (
        httpx.AsyncClient(
            timeout=httpx.Timeout(10.0),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        if http is None
        else http
    )
    status_counts: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    error_kinds: Counter[str] = Counter()
    latencies: list[float] = []
    retries = 0
    done = 0
    queue = iter(deliveries)  # shared by the workers: each takes the next delivery in order

    async def deliver(delivery: SimulatedDelivery) -> None:
        nonlocal retries
        body = delivery.body()
        headers = delivery.headers(shop=shop, secret=secret, body=body)
        for attempt in range(1, max_attempts + 1):
            started = time.perf_counter()
            try:
                response = await client.post(endpoint, content=body, headers=headers)
            except httpx.TransportError as exc:
                if attempt == max_attempts:
                    error_kinds[type(exc).__name__] += 1
                    return
            else:
                latencies.append(time.perf_counter() - started)
                if response.status_code not in RETRY_STATUSES or attempt == max_attempts:
                    status_counts[response.status_code] += 1
                    if response.status_code == 200:
                        outcomes[_ack_status(response)] += 1
                    return
            retries += 1
            await asyncio.sleep(backoff * 2 ** (attempt - 1))

    async def worker() -> None:
        nonlocal done
        for delivery in queue:
            await deliver(delivery)
            done += 1
            if progress is not None:
                progress(done, total)

    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, total)):
                group.create_task(worker())
    finally:
        if http is None:
            await client.aclose()
    elapsed = time.perf_counter() - started
    return SendReport(
        sent=total,
        status_counts=dict(sorted(status_counts.items())),
        outcomes=dict(sorted(outcomes.items())),
        errors=sum(error_kinds.values()),
        error_kinds=dict(sorted(error_kinds.items())),
        retries=retries,
        elapsed_seconds=elapsed,
        rate=total / elapsed if elapsed > 0 else 0.0,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
    )


def _ack_status(response: httpx.Response) -> str:
    """tierline's ``{"status": "accepted" | "duplicate"}``; ``other`` for anything else."""
    try:
        status = response.json().get("status")
    except (ValueError, AttributeError):
        return "other"
    return status if status in ("accepted", "duplicate") else "other"


def _percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]
