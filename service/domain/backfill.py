"""Admin GraphQL objects → the snapshots webhooks produce (``tierline sync``).

Pure functions, no I/O. A backfill builds the same :class:`CustomerSnapshot` and
:class:`OrderSnapshot` as the webhook handlers and hands them to ``upsert_customer`` and
``apply_order``, so one set of guards (``updated_at``, tombstones, stub ranks) applies whichever
way a record arrives.

The mapping accepts an object from a bulk operation (children grouped by
``shopify_client.parse_bulk_jsonl``: line items under ``"LineItem"``) and a node from a paginated
query (``lineItems { nodes | edges { node } }``). GraphQL differs from the REST webhook payloads
in ways tierline normalizes here:

* ids are gids (``gid://shopify/Order/123``) → ``123``;
* enums are SCREAMING_CASE → the lower-case webhook values tierline stores
  (``displayFinancialStatus: PAID`` → ``financial_status: "paid"``; ``displayFulfillmentStatus``
  → REST's ``fulfillment_status`` vocabulary; fulfillment ``displayStatus`` → ``shipment_status``);
* ``tags`` is a list → the webhook's ``"a, b"`` string;
* money sits in ``*Set { shopMoney { amount } }``;
* addresses are camelCase → the same keys (and the same key set) the webhook path stores.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from service.domain.records import CustomerSnapshot, FulfillmentSnapshot, LineSnapshot, OrderSnapshot

MAX_BIGINT = 2**63 - 1

#: Keys of a stored address, exactly as the webhook path stores them (``AddressPayload``), so a
#: backfilled customer or order compares equal to one built from webhooks.
ADDRESS_KEYS = (
    "id",
    "first_name",
    "last_name",
    "name",
    "company",
    "address1",
    "address2",
    "city",
    "province",
    "province_code",
    "country",
    "country_code",
    "zip",
    "phone",
    "default",
)
_ADDRESS_SOURCES: dict[str, tuple[str, ...]] = {
    "first_name": ("firstName",),
    "last_name": ("lastName",),
    "name": ("name",),
    "company": ("company",),
    "address1": ("address1",),
    "address2": ("address2",),
    "city": ("city",),
    "province": ("province",),
    "province_code": ("provinceCode",),
    "country": ("country",),
    "country_code": ("countryCodeV2", "countryCode"),
    "zip": ("zip",),
    "phone": ("phone",),
}

#: ``OrderDisplayFulfillmentStatus`` → REST ``fulfillment_status`` (``null``, ``partial``,
#: ``fulfilled``, ``restocked``). Values REST has no word for (UNFULFILLED, IN_PROGRESS, ON_HOLD,
#: SCHEDULED, PENDING_FULFILLMENT, OPEN, REQUEST_DECLINED) are ``None``, as REST sends ``null``.
FULFILLMENT_STATUS = {
    "FULFILLED": "fulfilled",
    "PARTIALLY_FULFILLED": "partial",
    "RESTOCKED": "restocked",
}

#: ``FulfillmentDisplayStatus`` values that say nothing about where the parcel is: the webhook's
#: ``shipment_status`` is ``null`` for them. Every other value is the carrier status, lower-cased
#: (``IN_TRANSIT`` → ``in_transit``, ``DELIVERED`` → ``delivered``); unknown ones stay verbatim.
NO_SHIPMENT_STATUS = frozenset({"FULFILLED", "MARKED_AS_FULFILLED", "SUBMITTED", "CANCELED", "LABEL_VOIDED"})

_GID = re.compile(r"^gid://[^/]+/([^/?#]+)/(\d+)(?:[?#].*)?$")


class MappingError(ValueError):
    """A GraphQL object tierline cannot turn into a snapshot (no usable id)."""


# --- scalars ------------------------------------------------------------------------------------


def gid_type(value: object) -> str | None:
    """``gid://shopify/Order/1`` → ``"Order"``; None for anything else."""
    match = _GID.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def gid_id(value: object) -> int | None:
    """A Shopify id as an int: from a gid (query string ignored), digits, or an int; else None."""
    if isinstance(value, bool):
        return None
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        match = _GID.match(value)
        if match:
            number = int(match.group(2))
        elif value.isdigit():
            number = int(value)
    return number if number is not None and 1 <= number <= MAX_BIGINT else None


def _required_id(obj: Mapping[str, Any], what: str) -> int:
    found = gid_id(obj.get("id"))
    if found is None:
        raise MappingError(f"{what} without a usable id: {obj.get('id')!r}")
    return found


def _ref_id(value: object) -> int | None:
    """The id of a ``{ id }`` reference (``customer { id }``, ``product { id }``)."""
    return gid_id(value.get("id")) if isinstance(value, Mapping) else None


def _text(value: object) -> str | None:
    """A string without NUL characters (PostgreSQL cannot store them), or None."""
    return value.replace("\x00", "") if isinstance(value, str) else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _money(value: object) -> Decimal | None:
    """``{shopMoney: {amount}}`` (a ``MoneyBag``), ``{amount}`` or a bare amount → Decimal."""
    if isinstance(value, Mapping):
        inner = value.get("shopMoney", value)
        value = inner.get("amount") if isinstance(inner, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _lower(value: object) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


def financial_status(value: object) -> str | None:
    """``displayFinancialStatus`` (``PARTIALLY_REFUNDED``) → ``partially_refunded``."""
    return _lower(value)


def fulfillment_status(value: object) -> str | None:
    """``displayFulfillmentStatus`` → REST ``fulfillment_status`` (see :data:`FULFILLMENT_STATUS`)."""
    return FULFILLMENT_STATUS.get(value) if isinstance(value, str) else None


def shipment_status(display_status: object) -> str | None:
    """Fulfillment ``displayStatus`` → webhook ``shipment_status`` (``DELIVERED`` → ``delivered``)."""
    if not isinstance(display_status, str) or not display_status or display_status in NO_SHIPMENT_STATUS:
        return None
    return display_status.lower()


def tags_string(tags: object) -> str:
    """``["vip", "rto"]`` → ``"vip, rto"`` (the webhook's format); a string passes through."""
    if isinstance(tags, str):
        return tags.replace("\x00", "")
    if isinstance(tags, Sequence):
        return ", ".join(t.replace("\x00", "").strip() for t in tags if isinstance(t, str) and t.strip())
    return ""


# --- addresses ----------------------------------------------------------------------------------


def address_dict(obj: object, *, keep_id: bool = True, default: bool | None = None) -> dict[str, Any] | None:
    """A ``MailingAddress`` as the webhook path stores an address (``ADDRESS_KEYS``).

    Order addresses carry no id and no ``default`` in webhooks, so callers pass ``keep_id=False``
    for them; customer addresses say whether they are the default one.
    """
    if not isinstance(obj, Mapping):
        return None
    out: dict[str, Any] = dict.fromkeys(ADDRESS_KEYS)
    for key, sources in _ADDRESS_SOURCES.items():
        for source in sources:
            if source in obj:
                out[key] = _text(obj[source])
                break
    out["id"] = gid_id(obj.get("id")) if keep_id else None
    out["default"] = default
    return out


# --- customers ----------------------------------------------------------------------------------


def customer_snapshot(obj: Mapping[str, Any]) -> CustomerSnapshot:
    """A ``Customer`` (``customers`` connection, or an order's ``customer``)."""
    customer_id = _required_id(obj, "customer")
    default_raw = obj.get("defaultAddress")
    default_id = _ref_id(default_raw)
    addresses_raw = obj.get("addresses")
    addresses: list[dict[str, Any]] = []
    if isinstance(addresses_raw, list):
        for item in addresses_raw:
            address = address_dict(item, default=None)
            if address is not None:
                address["default"] = address["id"] is not None and address["id"] == default_id
                addresses.append(address)
    return CustomerSnapshot(
        id=customer_id,
        email=_text(obj.get("email")),
        phone=_text(obj.get("phone")),
        first_name=_text(obj.get("firstName")),
        last_name=_text(obj.get("lastName")),
        state=_lower(obj.get("state")),
        default_address=address_dict(default_raw, default=True),
        addresses=addresses,
        created_at=_time(obj.get("createdAt")),
        updated_at=_time(obj.get("updatedAt")),
    )


# --- orders -------------------------------------------------------------------------------------


def _connection_nodes(value: object) -> list[Mapping[str, Any]]:
    """Items of a connection (``nodes`` or ``edges { node }``) or of a plain list."""
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping)]
    if not isinstance(value, Mapping):
        return []
    nodes = value.get("nodes")
    if isinstance(nodes, list):
        return [item for item in nodes if isinstance(item, Mapping)]
    edges = value.get("edges")
    if isinstance(edges, list):
        return [
            edge["node"]
            for edge in edges
            if isinstance(edge, Mapping) and isinstance(edge.get("node"), Mapping)
        ]
    return []


def _children(obj: Mapping[str, Any], field: str, bulk_type: str) -> list[Mapping[str, Any]]:
    """Children from a query (``field``) plus those a bulk result grouped under their gid type."""
    return _connection_nodes(obj.get(field)) + _connection_nodes(obj.get(bulk_type))


def line_snapshot(obj: Mapping[str, Any]) -> LineSnapshot:
    """A ``LineItem``; ``price`` is the original unit price, as REST's ``line_items[].price``."""
    quantity = obj.get("quantity")
    return LineSnapshot(
        id=_required_id(obj, "line item"),
        product_id=_ref_id(obj.get("product")),
        variant_id=_ref_id(obj.get("variant")),
        title=_text(obj.get("title")),
        variant_title=_text(obj.get("variantTitle")),
        vendor=_text(obj.get("vendor")),
        sku=_text(obj.get("sku")),
        quantity=quantity
        if isinstance(quantity, int) and not isinstance(quantity, bool) and quantity >= 0
        else 0,
        price=_money(obj.get("originalUnitPriceSet")) or Decimal(0),
    )


def fulfillment_snapshot(obj: Mapping[str, Any], order_id: int) -> FulfillmentSnapshot:
    """A ``Fulfillment``: ``status`` lower-cased (``CANCELLED`` → ``cancelled``), the carrier
    status from ``displayStatus``, the first tracking number."""
    tracking = obj.get("trackingInfo")
    first = (
        tracking[0] if isinstance(tracking, list) and tracking and isinstance(tracking[0], Mapping) else {}
    )
    return FulfillmentSnapshot(
        id=_required_id(obj, "fulfillment"),
        order_id=order_id,
        status=_lower(obj.get("status")),
        shipment_status=shipment_status(obj.get("displayStatus")),
        tracking_company=_text(first.get("company")),
        tracking_number=_text(first.get("number")),
        created_at=_time(obj.get("createdAt")),
        updated_at=_time(obj.get("updatedAt")),
    )


def order_snapshot(obj: Mapping[str, Any]) -> OrderSnapshot:
    """An ``Order`` with its line items and fulfillments."""
    order_id = _required_id(obj, "order")
    # A repeated line item id keeps its last occurrence, as in the webhook path.
    lines = {line.id: line for line in map(line_snapshot, _children(obj, "lineItems", "LineItem"))}
    customer_raw = obj.get("customer")
    customer = (
        customer_snapshot(customer_raw)
        if isinstance(customer_raw, Mapping) and gid_id(customer_raw.get("id")) is not None
        else None
    )
    gateways = obj.get("paymentGatewayNames")
    return OrderSnapshot(
        id=order_id,
        name=_text(obj.get("name")),
        email=_text(obj.get("email")),
        phone=_text(obj.get("phone")),
        created_at=_time(obj.get("createdAt")),
        updated_at=_time(obj.get("updatedAt")),
        processed_at=_time(obj.get("processedAt")),
        cancelled_at=_time(obj.get("cancelledAt")),
        financial_status=financial_status(obj.get("displayFinancialStatus")),
        fulfillment_status=fulfillment_status(obj.get("displayFulfillmentStatus")),
        currency=_text(obj.get("currencyCode")),
        total_price=_money(obj.get("totalPriceSet")),
        current_total_price=_money(obj.get("currentTotalPriceSet")),
        payment_gateway_names=[g for g in (_text(n) for n in gateways or []) if g is not None]
        if isinstance(gateways, list)
        else [],
        tags=tags_string(obj.get("tags")),
        test=obj.get("test") is True,
        shipping_address=address_dict(obj.get("shippingAddress"), keep_id=False),
        billing_address=address_dict(obj.get("billingAddress"), keep_id=False),
        lines=list(lines.values()),
        customer=customer,
        fulfillments=[
            fulfillment_snapshot(f, order_id) for f in _children(obj, "fulfillments", "Fulfillment")
        ],
    )


Snapshot = CustomerSnapshot | OrderSnapshot


def snapshot(obj: Mapping[str, Any]) -> Snapshot | None:
    """The snapshot for a top-level object of a bulk result, by its gid type; None for other types."""
    kind = gid_type(obj.get("id"))
    if kind == "Customer":
        return customer_snapshot(obj)
    if kind == "Order":
        return order_snapshot(obj)
    return None


def merge_line_items(obj: Mapping[str, Any], more: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A copy of an order node whose ``lineItems`` also holds ``more`` (later pages)."""
    merged = dict(obj)
    merged["lineItems"] = {"nodes": [*_connection_nodes(obj.get("lineItems")), *more]}
    return merged


# --- queries ------------------------------------------------------------------------------------

_ADDRESS_FIELDS = (
    "firstName lastName name company address1 address2 city province provinceCode"
    " country countryCodeV2 zip phone"
)
_CUSTOMER_FIELDS = f"""
      id email phone firstName lastName state createdAt updatedAt
      defaultAddress {{ id {_ADDRESS_FIELDS} }}
      addresses {{ id {_ADDRESS_FIELDS} }}
"""
_LINE_FIELDS = """
          id quantity title variantTitle vendor sku
          originalUnitPriceSet { shopMoney { amount } }
          product { id }
          variant { id }
"""
_ORDER_FIELDS = f"""
      id name email phone createdAt updatedAt processedAt cancelledAt
      displayFinancialStatus displayFulfillmentStatus currencyCode
      totalPriceSet {{ shopMoney {{ amount }} }}
      currentTotalPriceSet {{ shopMoney {{ amount }} }}
      paymentGatewayNames tags test
      customer {{ id email phone firstName lastName state createdAt updatedAt }}
      shippingAddress {{ {_ADDRESS_FIELDS} }}
      billingAddress {{ {_ADDRESS_FIELDS} }}
      fulfillments {{
        id status displayStatus createdAt updatedAt
        trackingInfo {{ company number }}
      }}
"""

#: Bulk queries, one per resource (each bulk operation reads one top-level connection).
CUSTOMERS_BULK_QUERY = f"""
{{
  customers {{
    edges {{ node {{ {_CUSTOMER_FIELDS} }} }}
  }}
}}
"""
ORDERS_BULK_QUERY = f"""
{{
  orders {{
    edges {{
      node {{
        {_ORDER_FIELDS}
        lineItems {{ edges {{ node {{ {_LINE_FIELDS} }} }} }}
      }}
    }}
  }}
}}
"""

#: Paginated queries for reconciliation (``query: "updated_at:>'…'"``). Page sizes keep the
#: requested cost under the 1000-point limit of a single query.
CUSTOMERS_PAGE_SIZE = 50
ORDERS_PAGE_SIZE = 10
ORDER_LINES_PAGE_SIZE = 50
CUSTOMERS_PAGE_QUERY = f"""
query TierlineCustomers($after: String, $query: String) {{
  customers(first: {CUSTOMERS_PAGE_SIZE}, after: $after, query: $query, sortKey: UPDATED_AT) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{ {_CUSTOMER_FIELDS} }}
  }}
}}
"""
ORDERS_PAGE_QUERY = f"""
query TierlineOrders($after: String, $query: String) {{
  orders(first: {ORDERS_PAGE_SIZE}, after: $after, query: $query, sortKey: UPDATED_AT) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{
      {_ORDER_FIELDS}
      lineItems(first: {ORDER_LINES_PAGE_SIZE}) {{
        pageInfo {{ hasNextPage endCursor }}
        nodes {{ {_LINE_FIELDS} }}
      }}
    }}
  }}
}}
"""
ORDER_LINES_PAGE_QUERY = f"""
query TierlineOrderLines($id: ID!, $after: String) {{
  order(id: $id) {{
    lineItems(first: 250, after: $after) {{
      pageInfo {{ hasNextPage endCursor }}
      nodes {{ {_LINE_FIELDS} }}
    }}
  }}
}}
"""


def updated_since_filter(moment: datetime) -> str:
    """The search filter for records updated after ``moment``: ``updated_at:>'2026-03-01T12:00:00Z'``."""
    stamp = moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return f"updated_at:>'{stamp}'"
