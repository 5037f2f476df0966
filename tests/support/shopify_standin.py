"""A stand-in Shopify: a real HTTP server on 127.0.0.1 for tests and the local walkthrough.

tierline reaches it through ``TIERLINE_SHOPIFY_URL=http://127.0.0.1:<port>/{shop}``. It speaks:

* the OAuth token endpoint ``/{shop}/admin/oauth/access_token``: authorization code, token
  exchange (session token checked like Shopify: HS256 with the app secret, ``aud``, ``dest``) and
  refresh (rotating refresh tokens), with ``expires_in``/``refresh_token_expires_in``;
* the authorize page ``/{shop}/admin/oauth/authorize``: approves at once and redirects to the
  app's ``redirect_uri`` with a code and a Shopify-style hex HMAC;
* Admin GraphQL ``/{shop}/admin/api/2026-04/graphql.json``: every document is validated against
  ``../shared/shopify-admin-schema/2026-04.graphql`` with graphql-core (an invalid one is
  recorded in :attr:`StandIn.invalid_documents` and answered with errors, so the test that sent
  it fails) and executed against that schema over the shop's data: ``shop``, ``customers``,
  ``orders`` (``query: "updated_at:>'…'"``), ``order``, ``node``/``bulkOperation``,
  ``bulkOperations``, ``bulkOperationRunQuery`` (the bulk query is validated too, and its JSONL
  is the query's own result flattened with ``__parentId``), ``bulkOperationCancel`` and
  ``webhookSubscriptionCreate``. Responses carry ``extensions.cost`` from a leaky bucket;
* bulk results at ``/_files/<name>.jsonl``;
* failure modes: a refused exchange, throttling (``THROTTLED`` and HTTP 429), 5xx, bulk
  operations ending ``FAILED`` with ``ACCESS_DENIED``, ``TIMEOUT`` or ``INTERNAL_SERVER_ERROR``
  (with a partial result URL), a bulk operation held ``RUNNING``, uninstalling (tokens revoked).

Data is hand-made (``tests.support.twins``): no Shopify sample is copied.

By hand (docs/shopify-app.md, "The whole lifecycle locally")::

    python -m tests.support.shopify_standin --port 9010 --app-url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import graphql
import httpx
import jwt
import uvicorn

from tests.support import twins

SCHEMA_PATH = (
    Path(__file__).resolve().parents[2].parent / "shared" / "shopify-admin-schema" / "2026-04.graphql"
)
API_VERSION = "2026-04"
DEFAULT_SCOPES = "read_customers,read_orders,read_fulfillments,read_returns,write_customers,write_orders"
_SHOP_PATH = re.compile(r"^/([a-z0-9][a-z0-9-]*\.myshopify\.com)(/.*)$")
_UPDATED_SINCE = re.compile(r"updated_at:>'?([0-9TZ:+.\-]+)'?")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_schema_lock = threading.Lock()
_schema: graphql.GraphQLSchema | None = None


def schema_available() -> bool:
    return SCHEMA_PATH.is_file()


def admin_schema() -> graphql.GraphQLSchema:
    """The Admin API schema (built once per process: it takes a few seconds)."""
    global _schema
    with _schema_lock:
        if _schema is None:
            _schema = graphql.build_schema(SCHEMA_PATH.read_text(), assume_valid=True)
        return _schema


def validate_document(document: str) -> list[str]:
    """Errors of a GraphQL document against the Admin API schema (empty when valid)."""
    try:
        parsed = graphql.parse(document)
    except graphql.GraphQLError as exc:
        return [exc.message]
    return [error.message for error in graphql.validate(admin_schema(), parsed)]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _connection(items: list[dict[str, Any]], first: int | None, after: str | None) -> dict[str, Any]:
    start = int(after.removeprefix("c")) if after and after.startswith("c") and after[1:].isdigit() else 0
    chunk = items[start:] if first is None else items[start : start + first]
    end = start + len(chunk)
    return {
        "nodes": chunk,
        "edges": [{"node": node, "cursor": f"c{start + n + 1}"} for n, node in enumerate(chunk)],
        "pageInfo": {
            "hasNextPage": end < len(items),
            "hasPreviousPage": start > 0,
            "endCursor": f"c{end}" if chunk else None,
            "startCursor": f"c{start + 1}" if chunk else None,
        },
    }


def _updated_since(query: str | None) -> datetime | None:
    match = _UPDATED_SINCE.search(query or "")
    return datetime.fromisoformat(match.group(1).replace("Z", "+00:00")) if match else None


def _flatten(node: dict[str, Any], parent: str | None, out: list[dict[str, Any]]) -> None:
    """One bulk JSONL object per node; nested connections become lines with ``__parentId``."""
    children: list[tuple[str, dict[str, Any]]] = []
    line: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and ("edges" in value or "nodes" in value):
            items = value.get("nodes") or [edge["node"] for edge in value.get("edges") or []]
            children += [(key, item) for item in items]
        else:
            line[key] = value
    if parent is not None:
        line["__parentId"] = parent
    out.append(line)
    for _key, child in children:
        _flatten(child, node.get("id"), out)


@dataclass
class BulkOperation:
    id: str
    shop: str
    query: str
    created_at: datetime
    status: str = "CREATED"
    polls: int = 0
    error_code: str | None = None
    url: str | None = None
    partial_url: str | None = None
    object_count: int = 0
    lines: list[str] = field(default_factory=list)

    def node(self) -> dict[str, Any]:
        return {
            "__typename": "BulkOperation",
            "id": self.id,
            "status": self.status,
            "errorCode": self.error_code,
            "objectCount": str(self.object_count),
            "rootObjectCount": str(self.object_count),
            "url": self.url,
            "partialDataUrl": self.partial_url,
            "query": self.query,
            "createdAt": _iso(self.created_at),
            "completedAt": None,
            "fileSize": None,
            "type": "QUERY",
        }


@dataclass
class ShopData:
    domain: str
    customers: list[dict[str, Any]] = field(default_factory=list)
    #: Order GraphQL objects; line items under ``"_lines"``.
    orders: list[dict[str, Any]] = field(default_factory=list)
    currency: str = "USD"
    timezone: str = "America/New_York"
    #: What the merchant has granted (the token endpoint answers it as ``scope``).
    granted: str = DEFAULT_SCOPES
    installed: bool = False
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    #: Write-back state: tags and metafields (``(namespace, key)`` → value) by resource gid.
    tags: dict[str, list[str]] = field(default_factory=dict)
    metafields: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    #: Metafield definitions ``(ownerType, namespace, key)`` and segments by name.
    definitions: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Every write: ``(mutation, resource gid, detail)``, in order.
    writes: list[tuple[str, str, Any]] = field(default_factory=list)


class StandIn:
    """The stand-in's state and its ASGI app. Thread-safe enough for one test at a time."""

    def __init__(self, *, api_key: str, api_secret: str, bulk_polls: int = 1) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.bulk_polls = bulk_polls
        self.base_url = ""
        self.shops: dict[str, ShopData] = {}
        self.access_tokens: dict[str, str] = {}  # token → shop
        self.refresh_tokens: dict[str, str] = {}
        self.codes: dict[str, str] = {}
        self.operations: dict[str, BulkOperation] = {}
        self.files: dict[str, bytes] = {}
        self.invalid_documents: list[tuple[str, list[str]]] = []
        self.token_requests: list[dict[str, str]] = []
        self.graphql_requests: list[tuple[str, str]] = []  # (shop, operation name or first field)
        #: Requested cost of every answered (not throttled) GraphQL request, and throttled answers.
        self.costs: list[float] = []
        self.throttled = 0
        #: Failure modes, each consumed once per use.
        self.refuse_exchange = 0
        self.exchange_delay = 0.0
        self.graphql_failures: list[int] = []  # HTTP statuses for the next GraphQL requests
        self.bulk_failures: list[tuple[str, bool]] = []  # (errorCode, with partial data)
        self.hold_bulk = threading.Event()  # set: bulk operations stay RUNNING
        #: Leaky bucket (points): size and restore rate per second.
        self.bucket_size = 2000.0
        self.restore_rate = 100.0
        #: The app's id: ``$app:tierline`` is stored as ``app--<app_id>--tierline``.
        self.app_id = 4242
        #: Called after each write-back mutation with (shop, resource gid): e.g. an echo webhook.
        self.on_write: Callable[[str, str], None] | None = None
        #: userErrors to answer for the next write-back mutation fields (consumed one per field).
        self.write_errors: list[str] = []
        self._bucket: dict[str, tuple[float, float]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # --- data -----------------------------------------------------------------------------------

    def add_shop(self, domain: str, data: twins.Dataset | None = None, **options: Any) -> ShopData:
        shop = ShopData(domain, **options)
        if data is not None:
            by_id = {t.gql["id"]: t.gql for t in data.customers}
            shop.customers = [dict(t.gql) for t in data.customers]
            for twin in data.orders:
                order = dict(twin.gql)
                embedded = order.get("customer")
                if isinstance(embedded, dict):
                    # Shopify returns the customer itself, with its own timestamps.
                    order["customer"] = {
                        **embedded,
                        **{
                            k: v
                            for k, v in by_id.get(embedded["id"], {}).items()
                            if k in ("createdAt", "updatedAt")
                        },
                    }
                    order["customer"]["createdAt"] = order["customer"]["createdAt"] or order["createdAt"]
                    order["customer"]["updatedAt"] = order["customer"]["updatedAt"] or order["updatedAt"]
                order["_lines"] = [{k: v for k, v in c.items() if k != "__parentId"} for c in twin.children]
                shop.orders.append(order)
        with self._lock:
            self.shops[domain] = shop
        return shop

    def upsert_order(self, shop: str, order: dict[str, Any]) -> None:
        """A change made in the shop (the test also sends its webhook, or not)."""
        with self._lock:
            orders = self.shops[shop].orders
            for n, existing in enumerate(orders):
                if existing["id"] == order["id"]:
                    orders[n] = order
                    return
            orders.append(order)

    def uninstall(self, shop: str) -> None:
        """Shopify's side of an uninstall: every token of the shop stops working."""
        with self._lock:
            self.shops[shop].installed = False
            for table in (self.access_tokens, self.refresh_tokens):
                for token in [t for t, s in table.items() if s == shop]:
                    del table[token]

    def bulk_operations_started(self, shop: str) -> list[str]:
        """The root connection of each bulk query started for ``shop``, in order."""
        return [
            "customers" if "customers" in op.query.split("{", 2)[1] else "orders"
            for op in self.operations.values()
            if op.shop == shop
        ]

    def token_grants(self, grant: str) -> list[dict[str, str]]:
        return [form for form in self.token_requests if form.get("grant_type", "authorization_code") == grant]

    # --- session tokens (what Shopify admin gives the app) ----------------------------------------

    def session_token(self, shop: str, *, lifetime: int = 60) -> str:
        now = int(time.time())
        claims = {
            "iss": f"https://{shop}/admin",
            "dest": f"https://{shop}",
            "aud": self.api_key,
            "sub": "1",
            "exp": now + lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "sid": secrets.token_hex(8),
        }
        return jwt.encode(claims, self.api_secret, algorithm="HS256")

    # --- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        status, response_headers, content = await self._route(
            scope["method"], scope["path"], headers, query, body
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in response_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def _route(
        self, method: str, path: str, headers: dict[str, str], query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/_files/"):
            content = self.files.get(path.removeprefix("/_files/"))
            return (
                (200, {"content-type": "application/jsonl"}, content)
                if content is not None
                else _json(404, {})
            )
        if path.startswith("/_standin/"):
            return self._control(path.removeprefix("/_standin/"), query)
        match = _SHOP_PATH.match(path)
        if match is None or match.group(1) not in self.shops:
            return _json(404, {"errors": "Not Found"})
        shop, rest = match.group(1), match.group(2)
        if rest == "/admin/oauth/access_token" and method == "POST":
            if self.exchange_delay:
                import asyncio

                await asyncio.sleep(self.exchange_delay)
            return self._token(shop, dict(parse_qsl(body.decode())))
        if rest == "/admin/oauth/authorize" and method == "GET":
            return self._authorize(shop, query)
        if rest == f"/admin/api/{API_VERSION}/graphql.json" and method == "POST":
            return self._graphql(shop, headers.get("x-shopify-access-token", ""), body)
        return _json(404, {"errors": "Not Found"})

    # --- OAuth ----------------------------------------------------------------------------------

    def _issue(self, shop: str) -> dict[str, Any]:
        n = next(self._ids)
        access, refresh = (
            f"shpat_standin_{n}_{secrets.token_hex(4)}",
            f"shprt_standin_{n}_{secrets.token_hex(4)}",
        )
        with self._lock:
            self.access_tokens[access] = shop
            self.refresh_tokens[refresh] = shop
            self.shops[shop].installed = True
        return {
            "access_token": access,
            "scope": self.shops[shop].granted,
            "expires_in": 3600,
            "refresh_token": refresh,
            "refresh_token_expires_in": 7_776_000,
        }

    def _token(self, shop: str, form: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.token_requests.append(form)
        if form.get("client_id") != self.api_key or form.get("client_secret") != self.api_secret:
            return _json(401, {"error": "invalid_client"})
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:token-exchange":
            if self.refuse_exchange:
                self.refuse_exchange -= 1
                return _json(
                    400, {"error": "invalid_subject_token", "error_description": "refused (stand-in)"}
                )
            try:
                claims = jwt.decode(
                    form.get("subject_token", ""),
                    self.api_secret,
                    algorithms=["HS256"],
                    audience=self.api_key,
                    leeway=10,
                )
            except jwt.PyJWTError:
                return _json(400, {"error": "invalid_subject_token"})
            if claims.get("dest") != f"https://{shop}":
                return _json(400, {"error": "invalid_subject_token"})
            return _json(200, self._issue(shop))
        if grant == "refresh_token":
            with self._lock:
                owner = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if owner != shop:
                return _json(400, {"error": "invalid_grant"})
            return _json(200, self._issue(shop))
        with self._lock:
            owner = self.codes.pop(form.get("code", ""), None)
        if owner != shop:
            return _json(400, {"error": "invalid_request", "error_description": "code invalid"})
        return _json(200, self._issue(shop))

    def _authorize(self, shop: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if query.get("client_id") != self.api_key or not query.get("redirect_uri"):
            return _json(400, {"error": "invalid_request"})
        code = secrets.token_hex(16)
        with self._lock:
            self.codes[code] = shop
            if query.get("scope"):
                self.shops[shop].granted = query["scope"]
        params = {
            "code": code,
            "host": base64.urlsafe_b64encode(f"admin.shopify.com/store/{shop.split('.')[0]}".encode())
            .decode()
            .rstrip("="),
            "shop": shop,
            "state": query.get("state", ""),
            "timestamp": str(int(time.time())),
        }
        message = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        params["hmac"] = hmac.new(self.api_secret.encode(), message.encode(), hashlib.sha256).hexdigest()
        return 302, {"location": f"{query['redirect_uri']}?{urlencode(params)}"}, b""

    # --- GraphQL --------------------------------------------------------------------------------

    def _graphql(self, shop: str, token: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.access_tokens.get(token) != shop:
            return _json(
                401,
                {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"},
            )
        with self._lock:
            failure = self.graphql_failures.pop(0) if self.graphql_failures else None
        if failure == 429:
            return (
                429,
                {"content-type": "application/json", "retry-after": "1"},
                b'{"errors":"Exceeded rate limit"}',
            )
        if failure is not None:
            return _json(failure, {"errors": "Internal error (stand-in)"})
        request = json.loads(body)
        document = str(request.get("query") or "")
        errors = validate_document(document)
        if errors:
            with self._lock:
                self.invalid_documents.append((document, errors))
            return _json(200, {"errors": [{"message": e} for e in errors]})
        parsed = graphql.parse(document)
        operation = next(d for d in parsed.definitions if isinstance(d, graphql.OperationDefinitionNode))
        name = operation.name.value if operation.name else operation.selection_set.selections[0].name.value  # type: ignore[attr-defined]
        with self._lock:
            self.graphql_requests.append((shop, name))
        requested = (
            10.0 * len(operation.selection_set.selections)
            if operation.operation == graphql.OperationType.MUTATION
            else _cost(operation.selection_set, request.get("variables") or {})
        )
        throttle = self._spend(shop, requested)
        with self._lock:
            if throttle is None:
                self.costs.append(requested)
            else:
                self.throttled += 1
        if throttle is not None:
            return _json(
                200,
                {
                    "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                    "extensions": {"cost": throttle},
                },
            )
        result = graphql.execute(
            admin_schema(),
            parsed,
            root_value=self._root(shop),
            variable_values=request.get("variables") or {},
        )
        if isinstance(result, Awaitable):  # pragma: no cover - every resolver is synchronous
            raise TypeError("asynchronous result")
        answer: dict[str, Any] = {
            "data": result.data,
            "extensions": {"cost": self._cost_extension(shop, requested)},
        }
        if result.errors:
            answer["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        return _json(200, answer)

    def _spend(self, shop: str, requested: float) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            available, at = self._bucket.get(shop, (self.bucket_size, now))
            available = min(self.bucket_size, available + (now - at) * self.restore_rate)
            if requested > available:
                self._bucket[shop] = (available, now)
                return {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": {
                        "maximumAvailable": self.bucket_size,
                        "currentlyAvailable": available,
                        "restoreRate": self.restore_rate,
                    },
                }
            self._bucket[shop] = (available - requested, now)
        return None

    def _cost_extension(self, shop: str, requested: float) -> dict[str, Any]:
        available, _ = self._bucket.get(shop, (self.bucket_size, 0.0))
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": requested,
            "throttleStatus": {
                "maximumAvailable": self.bucket_size,
                "currentlyAvailable": available,
                "restoreRate": self.restore_rate,
            },
        }

    def _root(self, domain: str) -> dict[str, Any]:
        shop = self.shops[domain]

        def orders_of(since: datetime | None) -> list[dict[str, Any]]:
            found = [
                o
                for o in shop.orders
                if since is None or datetime.fromisoformat(o["updatedAt"].replace("Z", "+00:00")) > since
            ]
            return [self._order_node(o) for o in found]

        def customers(
            _info: Any, first: int | None = None, after: str | None = None, query: str | None = None, **_: Any
        ) -> dict[str, Any]:
            since = _updated_since(query)
            found = [
                c
                for c in shop.customers
                if since is None or datetime.fromisoformat(c["updatedAt"].replace("Z", "+00:00")) > since
            ]
            return _connection(found, first, after)

        def orders(
            _info: Any, first: int | None = None, after: str | None = None, query: str | None = None, **_: Any
        ) -> dict[str, Any]:
            return _connection(orders_of(_updated_since(query)), first, after)

        def order(_info: Any, id: str) -> dict[str, Any] | None:
            return next((self._order_node(o) for o in shop.orders if o["id"] == id), None)

        def operation(_info: Any, id: str) -> dict[str, Any] | None:
            op = self.operations.get(id)
            if op is None or op.shop != domain:
                return None
            self._advance(op)
            return op.node()

        def bulk_operations(_info: Any, first: int | None = None, **_: Any) -> dict[str, Any]:
            ops = [op.node() for op in reversed(self.operations.values()) if op.shop == domain]
            return _connection(ops, first, None)

        def run_query(_info: Any, query: str, **_: Any) -> dict[str, Any]:
            errors = validate_document(query)
            if errors:
                with self._lock:
                    self.invalid_documents.append((query, errors))
                return {
                    "bulkOperation": None,
                    "userErrors": [{"field": ["query"], "message": e, "code": "INVALID"} for e in errors],
                }
            if any(
                op.shop == domain and op.status in ("CREATED", "RUNNING") for op in self.operations.values()
            ):
                return {
                    "bulkOperation": None,
                    "userErrors": [
                        {
                            "field": None,
                            "message": "A bulk query operation for this app and shop is already in progress.",
                            "code": "OPERATION_IN_PROGRESS",
                        }
                    ],
                }
            op = BulkOperation(
                f"gid://shopify/BulkOperation/{next(self._ids)}", domain, query, datetime.now(UTC)
            )
            with self._lock:
                self.operations[op.id] = op
            return {"bulkOperation": op.node(), "userErrors": []}

        def cancel(_info: Any, id: str) -> dict[str, Any]:
            op = self.operations.get(id)
            if op is None or op.shop != domain:
                return {
                    "bulkOperation": None,
                    "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}],
                }
            if op.status in ("CREATED", "RUNNING"):
                op.status = "CANCELED"
            return {"bulkOperation": op.node(), "userErrors": []}

        def subscribe(
            _info: Any, topic: str, webhookSubscription: dict[str, Any], **_: Any
        ) -> dict[str, Any]:
            uri = webhookSubscription.get("uri")
            if any(s["topic"] == topic and s["uri"] == uri for s in shop.subscriptions):
                return {
                    "webhookSubscription": None,
                    "userErrors": [
                        {
                            "field": ["webhookSubscription", "callbackUrl"],
                            "message": "Address for this topic has already been taken",
                        }
                    ],
                }
            subscription = {
                "__typename": "WebhookSubscription",
                "id": f"gid://shopify/WebhookSubscription/{next(self._ids)}",
                "topic": topic,
                "uri": uri,
            }
            shop.subscriptions.append(subscription)
            return {"webhookSubscription": subscription, "userErrors": []}

        writes = self._write_back_root(domain)
        return {
            **writes,
            "shop": {
                "currencyCode": shop.currency,
                "ianaTimezone": shop.timezone,
                "name": domain,
                "myshopifyDomain": domain,
            },
            "customers": customers,
            "orders": orders,
            "order": order,
            "node": operation,
            "bulkOperation": operation,
            "bulkOperations": bulk_operations,
            "bulkOperationRunQuery": run_query,
            "bulkOperationCancel": cancel,
            "webhookSubscriptionCreate": subscribe,
        }

    # --- write-back: tags, metafields, definitions, segments ------------------------------------

    def namespace(self, namespace: str | None) -> str:
        """``$app:x`` (or none: the app-reserved namespace) as Shopify stores it."""
        if namespace is None:
            return f"app--{self.app_id}"
        if namespace.startswith("$app:"):
            return f"app--{self.app_id}--{namespace.removeprefix('$app:')}"
        return namespace

    def resource_tags(self, shop: str, resource: str) -> list[str]:
        return list(self.shops[shop].tags.get(resource, []))

    def resource_metafields(
        self, shop: str, resource: str, namespace: str = "$app:tierline"
    ) -> dict[str, str]:
        held = self.shops[shop].metafields.get(resource, {})
        space = self.namespace(namespace)
        return {key: value for (ns, key), value in held.items() if ns == space}

    def _resource_node(self, shop: ShopData, resource: str) -> dict[str, Any] | None:
        kind = resource.split("/")[-2] if resource.count("/") >= 4 else ""
        if kind == "Customer":
            base = next((c for c in shop.customers if c["id"] == resource), None)
        elif kind == "Order":
            base = next((o for o in shop.orders if o["id"] == resource), None)
        else:
            return None
        if base is None:
            return None
        held = shop.metafields.get(resource, {})

        def metafield(_info: Any, key: str, namespace: str | None = None) -> dict[str, Any] | None:
            value = held.get((self.namespace(namespace), key))
            return (
                None
                if value is None
                else {"value": value, "key": key, "namespace": self.namespace(namespace)}
            )

        return {
            "__typename": kind,
            "id": resource,
            "tags": list(shop.tags.get(resource, [])),
            "metafield": metafield,
        }

    def _written(self, domain: str, mutation: str, resource: str, detail: Any) -> None:
        shop = self.shops[domain]
        with self._lock:
            shop.writes.append((mutation, resource, detail))
        if self.on_write is not None:
            self.on_write(domain, resource)

    def _user_error(self) -> list[dict[str, Any]]:
        with self._lock:
            message = self.write_errors.pop(0) if self.write_errors else None
        return [] if message is None else [{"field": None, "message": message, "code": "INVALID"}]

    def _write_back_root(self, domain: str) -> dict[str, Any]:
        shop = self.shops[domain]

        def nodes(_info: Any, ids: list[str]) -> list[dict[str, Any] | None]:
            return [self._resource_node(shop, resource) for resource in ids]

        def tags_change(add: bool) -> Callable[..., dict[str, Any]]:
            def change(_info: Any, id: str, tags: list[str]) -> dict[str, Any]:
                if self._resource_node(shop, id) is None:
                    return {"node": None, "userErrors": [{"field": ["id"], "message": "Resource not found"}]}
                errors = self._user_error()
                if errors:
                    return {"node": None, "userErrors": errors}
                held = shop.tags.setdefault(id, [])
                if add:
                    held += [t for t in tags if t not in held]
                else:
                    held[:] = [t for t in held if t not in tags]
                self._written(domain, "tagsAdd" if add else "tagsRemove", id, list(tags))
                return {"node": {"__typename": "Customer", "id": id}, "userErrors": []}

            return change

        def metafields_set(_info: Any, metafields: list[dict[str, Any]]) -> dict[str, Any]:
            if len(metafields) > 25:
                return {
                    "metafields": None,
                    "userErrors": [{"field": ["metafields"], "message": "at most 25"}],
                }
            for n, item in enumerate(metafields):
                if self._resource_node(shop, item["ownerId"]) is None:
                    return {
                        "metafields": None,
                        "userErrors": [
                            {"field": ["metafields", str(n), "ownerId"], "message": "Owner not found"}
                        ],
                    }
            errors = self._user_error()
            if errors:
                return {"metafields": None, "userErrors": errors}
            for item in metafields:  # atomic: every value or none
                held = shop.metafields.setdefault(item["ownerId"], {})
                held[(self.namespace(item.get("namespace")), item["key"])] = item["value"]
                self._written(domain, "metafieldsSet", item["ownerId"], (item["key"], item["value"]))
            return {"metafields": [], "userErrors": []}

        def definition_create(_info: Any, definition: dict[str, Any]) -> dict[str, Any]:
            key = (definition["ownerType"], self.namespace(definition.get("namespace")), definition["key"])
            if key in shop.definitions:
                return {
                    "createdDefinition": None,
                    "userErrors": [
                        {"field": ["definition", "key"], "message": "Key is in use", "code": "TAKEN"}
                    ],
                }
            created = {
                "id": f"gid://shopify/MetafieldDefinition/{next(self._ids)}",
                "namespace": key[1],
                "key": key[2],
                "name": definition["name"],
                "ownerType": key[0],
                "type": definition["type"],
            }
            shop.definitions[key] = created
            return {"createdDefinition": created, "userErrors": []}

        def definitions(_info: Any, ownerType: str, namespace: str | None = None, **_: Any) -> dict[str, Any]:
            space = self.namespace(namespace) if namespace else None
            found = [
                d
                for (owner, ns, _key), d in shop.definitions.items()
                if owner == ownerType and space in (None, ns)
            ]
            return _connection(found, None, None)

        def segment_create(_info: Any, name: str, query: str) -> dict[str, Any]:
            if name in shop.segments:
                return {
                    "segment": None,
                    "userErrors": [{"field": ["name"], "message": "Name has already been taken"}],
                }
            match = re.fullmatch(r"metafields\.([A-Za-z0-9_-]+)\.([a-z_]+) = '([a-z]+)'", query)
            if match is None or ("CUSTOMER", match.group(1), match.group(2)) not in shop.definitions:
                return {
                    "segment": None,
                    "userErrors": [{"field": ["query"], "message": f"Invalid query: {query}"}],
                }
            segment = {"id": f"gid://shopify/Segment/{next(self._ids)}", "name": name, "query": query}
            shop.segments[name] = segment
            return {"segment": segment, "userErrors": []}

        return {
            "nodes": nodes,
            "tagsAdd": tags_change(True),
            "tagsRemove": tags_change(False),
            "metafieldsSet": metafields_set,
            "metafieldDefinitionCreate": definition_create,
            "metafieldDefinitions": definitions,
            "segmentCreate": segment_create,
        }

    @staticmethod
    def _order_node(order: dict[str, Any]) -> dict[str, Any]:
        lines = order["_lines"]
        node = {k: v for k, v in order.items() if k != "_lines"}
        node["lineItems"] = lambda _info, first=None, after=None, **_: _connection(lines, first, after)
        return node

    def _advance(self, op: BulkOperation) -> None:
        """CREATED → RUNNING → COMPLETED after ``bulk_polls`` status queries (unless held)."""
        if op.status not in ("CREATED", "RUNNING"):
            return
        op.polls += 1
        op.status = "RUNNING"
        if self.hold_bulk.is_set() or op.polls < self.bulk_polls:
            return
        lines = self._bulk_lines(op)
        with self._lock:
            failure = self.bulk_failures.pop(0) if self.bulk_failures else None
        name = f"{op.id.rsplit('/', 1)[1]}-{secrets.token_hex(4)}.jsonl"
        if failure is not None:
            op.status, op.error_code = "FAILED", failure[0]
            if failure[1]:
                self.files[name] = "".join(lines[: len(lines) // 2]).encode()
                op.partial_url = f"{self.base_url}/_files/{name}"
            return
        op.status, op.object_count = "COMPLETED", len(lines)
        if lines:
            self.files[name] = "".join(lines).encode()
            op.url = f"{self.base_url}/_files/{name}"

    def _bulk_lines(self, op: BulkOperation) -> list[str]:
        result = graphql.execute(admin_schema(), graphql.parse(op.query), root_value=self._root(op.shop))
        if isinstance(result, Awaitable) or result.errors or not result.data:  # pragma: no cover
            raise AssertionError(f"bulk query failed in the stand-in: {getattr(result, 'errors', None)}")
        out: list[dict[str, Any]] = []
        for connection in result.data.values():
            for node in connection.get("nodes") or [edge["node"] for edge in connection.get("edges") or []]:
                _flatten(node, None, out)
        return [json.dumps(line) + "\n" for line in out]

    # --- control (the local walkthrough) --------------------------------------------------------

    def _control(self, action: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        shop = query.get("shop", "")
        if shop not in self.shops:
            return _json(404, {"error": f"no shop {shop!r}; shops: {sorted(self.shops)}"})
        if action == "token":
            return (
                200,
                {"content-type": "text/plain"},
                self.session_token(shop, lifetime=int(query.get("lifetime", "60"))).encode(),
            )
        if action == "open":
            app_url = query.get("app", "http://127.0.0.1:8000").rstrip("/")
            host = (
                base64.urlsafe_b64encode(f"admin.shopify.com/store/{shop.split('.')[0]}".encode())
                .decode()
                .rstrip("=")
            )
            params = {"shop": shop, "host": host, "id_token": self.session_token(shop)}
            target = f"{app_url}/app?{urlencode(params)}"
            return 302, {"location": target}, b""
        if action == "uninstall":
            self.uninstall(shop)
            return _json(200, {"uninstalled": shop})
        return _json(404, {"error": f"no action {action!r}"})


def _json(status: int, data: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps(data).encode()


def _literal(value: graphql.ValueNode, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, graphql.VariableNode):
        return variables.get(value.name.value)
    if isinstance(value, graphql.IntValueNode):
        return int(value.value)
    return None


def _cost(selection_set: graphql.SelectionSetNode | None, variables: Mapping[str, Any]) -> float:
    """A rough requested cost: each connection costs ``first`` times (1 + its nested connections),
    so ``orders(first: 10) { lineItems(first: 50) }`` costs 510, as Shopify's docs describe."""

    def walk(selections: graphql.SelectionSetNode | None) -> float:
        if selections is None:
            return 0.0
        total = 0.0
        for selection in selections.selections:
            if isinstance(selection, graphql.InlineFragmentNode):
                total += walk(selection.selection_set)
            elif isinstance(selection, graphql.FieldNode):
                first = next(
                    (
                        _literal(a.value, variables)
                        for a in selection.arguments or ()
                        if a.name.value == "first"
                    ),
                    None,
                )
                inner = walk(selection.selection_set)
                total += first * (1 + inner) if first else inner
        return total

    return max(1.0, walk(selection_set))


class Server:
    """The stand-in served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, standin: StandIn, port: int = 0) -> None:
        self.standin = standin
        config = uvicorn.Config(standin, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="shopify-standin", daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the stand-in Shopify did not start")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.standin.base_url = f"http://127.0.0.1:{port}"
        return self.standin

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def shopify_url(standin: StandIn) -> str:
    """``TIERLINE_SHOPIFY_URL`` for this stand-in."""
    return f"{standin.base_url}/{{shop}}"


@dataclass
class Webhooks:
    """Signed webhook deliveries to a running tierline, as Shopify sends them."""

    app_url: str
    secret: str

    def send(
        self, shop: str, topic: str, payload: Mapping[str, Any], *, http: httpx.Client | None = None
    ) -> int:
        body = json.dumps(payload).encode()
        signature = base64.b64encode(hmac.new(self.secret.encode(), body, hashlib.sha256).digest()).decode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-API-Version": API_VERSION,
            "X-Shopify-Triggered-At": _iso(datetime.now(UTC)),
        }
        client = http or httpx.Client(timeout=10)
        try:
            return client.post(
                f"{self.app_url.rstrip('/')}/webhooks/shopify", content=body, headers=headers
            ).status_code
        finally:
            if http is None:
                client.close()


def _main(argv: list[str] | None = None) -> None:  # pragma: no cover - by hand
    parser = argparse.ArgumentParser(description="A stand-in Shopify on 127.0.0.1 (docs/shopify-app.md).")
    parser.add_argument("--port", type=int, default=9010)
    parser.add_argument("--shop", default="acme.myshopify.com")
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--orders", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--app-url", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    if not schema_available():
        raise SystemExit(f"the Admin API schema is missing at {SCHEMA_PATH}")
    standin = StandIn(
        api_key=os.environ.get("SHOPIFY_API_KEY", "tierline-dev-api-key"),
        api_secret=os.environ.get("SHOPIFY_API_SECRET", "tierline-dev-secret"),
        bulk_polls=2,
    )
    standin.add_shop(args.shop, twins.dataset(customers=args.customers, orders=args.orders, seed=args.seed))
    admin_schema()
    with Server(standin, args.port) as running:
        base = running.base_url
        lines = [
            f"stand-in Shopify at {base} "
            f"(shop {args.shop}, {args.customers} customers, {args.orders} orders)",
            f"  tierline:   TIERLINE_SHOPIFY_URL='{base}/{{shop}}' make run",
            f"  open:       {base}/_standin/open?shop={args.shop}&app={args.app_url}",
            f"  token:      curl -s '{base}/_standin/token?shop={args.shop}'",
            f"  uninstall:  curl -s -X POST '{base}/_standin/uninstall?shop={args.shop}'",
        ]
        print("\n".join(lines), flush=True)  # noqa: T201
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def iter_jsonl(content: bytes) -> Iterator[dict[str, Any]]:
    for line in content.decode().splitlines():
        if line.strip():
            yield json.loads(line)


if __name__ == "__main__":  # pragma: no cover
    _main()
