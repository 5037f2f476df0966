"""A fake Shopify at the HTTP boundary (``httpx.MockTransport``) for sync and install tests.

It answers the OAuth token endpoint, the Admin GraphQL endpoint (bulk operations, their status,
paginated customer/order queries, webhook subscriptions) and the bulk result download, and
records every request so tests can assert what tierline sent.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import httpx

from tests.support.payloads import SHOP

STORAGE_HOST = "storage.example.com"
GRAPHQL_PATH = "/admin/api/2026-04/graphql.json"
TOKEN_PATH = "/admin/oauth/access_token"
PAGE_SIZE = 2


class FakeSleep:
    """Records every requested wait instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(float(seconds))


class BrokenStream(httpx.AsyncByteStream):
    """A download that breaks off halfway, as a reset connection does."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._content[: len(self._content) // 2]
        raise httpx.ReadError("connection reset by peer")


class FakeShopify:
    def __init__(
        self,
        shop: str = SHOP,
        *,
        files: dict[str, bytes] | None = None,
        pages: dict[str, list[dict[str, Any]]] | None = None,
        line_pages: dict[str, list[dict[str, Any]]] | None = None,
        polls_until_done: int = 2,
        scope: str = "read_customers,read_orders,read_fulfillments,read_returns,write_customers,write_orders",
    ) -> None:
        self.shop = shop
        #: Bulk result per phase ("customers", "orders").
        self.files = files or {}
        #: Nodes served by the paginated reconciliation queries, per connection.
        self.pages = pages or {}
        #: Extra line item pages, per order gid.
        self.line_pages = line_pages or {}
        self.polls_until_done = polls_until_done
        self.scope = scope
        self.requests: list[httpx.Request] = []
        self.graphql: list[dict[str, Any]] = []
        self.token_forms: list[dict[str, str]] = []
        self.operations: dict[str, str] = {}
        self.polls: dict[str, int] = {}
        self.downloads: list[str] = []
        #: Phases whose next download breaks off halfway (once each).
        self.break_download: set[str] = set()
        #: Operation ids that report this status instead of completing.
        self.operation_status: dict[str, str] = {}
        #: The query each bulk operation was started with, and operations cancelled.
        self.bulk_queries: dict[str, str] = {}
        self.cancelled: list[str] = []
        #: Statuses that ``bulkOperations`` lists (none by default: nothing to adopt).
        self.listed: set[str] = set()
        #: Subscription topics already present ("already taken").
        self.subscribed: set[str] = set()
        #: Status and body the token endpoint answers with, when set.
        self.token_error: tuple[int, str] | None = None
        #: What ``shop { currencyCode ianaTimezone }`` answers; None: a GraphQL error.
        self.details: dict[str, Any] | None = {"currencyCode": "EUR", "ianaTimezone": "Europe/Berlin"}
        self._ids = itertools.count(1)

    # --- recorded traffic -----------------------------------------------------------------------

    def bulk_phases(self) -> list[str]:
        return list(self.operations.values())

    def tokens_used(self) -> set[str]:
        return {
            r.headers.get("X-Shopify-Access-Token", "") for r in self.requests if r.url.path == GRAPHQL_PATH
        }

    def queries_named(self, name: str) -> list[dict[str, Any]]:
        return [body for body in self.graphql if name in body["query"]]

    # --- the transport --------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == STORAGE_HOST:
            return self._download(request)
        if request.url.host != self.shop:
            return httpx.Response(404, text=f"no such host {request.url.host}")
        if request.url.path == TOKEN_PATH:
            return self._token(request)
        if request.url.path == GRAPHQL_PATH:
            body = json.loads(request.content)
            self.graphql.append(body)
            if "TierlineShop" in body["query"] and self.details is None:
                return httpx.Response(200, json={"errors": [{"message": "Access denied for shop field."}]})
            return httpx.Response(
                200, json={"data": self._graphql(body["query"], body.get("variables") or {})}
            )
        return httpx.Response(404)

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        self.token_forms.append(form)
        if self.token_error is not None:
            status, text = self.token_error
            return httpx.Response(status, text=text)
        n = next(self._ids)
        return httpx.Response(
            200,
            json={
                "access_token": f"shpat_new_{n}",
                "scope": self.scope,
                "expires_in": 3600,
                "refresh_token": f"shprt_new_{n}",
                "refresh_token_expires_in": 7_776_000,
            },
        )

    def _graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        if "bulkOperationRunQuery" in query:
            phase = "customers" if "customers {" in variables["query"] else "orders"
            operation_id = f"gid://shopify/BulkOperation/{next(self._ids)}"
            self.operations[operation_id] = phase
            self.bulk_queries[operation_id] = variables["query"]
            return {
                "bulkOperationRunQuery": {
                    "bulkOperation": {"id": operation_id, "status": "CREATED"},
                    "userErrors": [],
                }
            }
        if "BulkOperationStatus" in query:
            return {"node": self._operation(variables["id"])}
        if "TierlineBulkOperations" in query:
            # Newest first; an operation already listed as running is offered for adoption.
            nodes = [
                {**(self._operation(op_id, count=False) or {}), "query": self.bulk_queries.get(op_id)}
                for op_id in reversed(self.operations)
            ]
            listed = [node for node in nodes if node.get("status") in self.listed]
            return {"bulkOperations": {"nodes": listed}}
        if "bulkOperationCancel" in query:
            self.cancelled.append(variables["id"])
            self.operation_status[variables["id"]] = "CANCELED"
            return {"bulkOperationCancel": {"bulkOperation": {"id": variables["id"]}, "userErrors": []}}
        if "webhookSubscriptionCreate" in query:
            topic = variables["topic"]
            if topic in self.subscribed:
                return {
                    "webhookSubscriptionCreate": {
                        "webhookSubscription": None,
                        "userErrors": [
                            {
                                "field": ["webhookSubscription", "uri"],
                                "message": "Address for this topic has already been taken",
                            }
                        ],
                    }
                }
            self.subscribed.add(topic)
            return {
                "webhookSubscriptionCreate": {
                    "webhookSubscription": {"id": f"gid://shopify/WebhookSubscription/{next(self._ids)}"},
                    "userErrors": [],
                }
            }
        if "TierlineShop" in query:
            return {"shop": self.details}
        if "TierlineOrderLines" in query:
            nodes = self.line_pages.get(variables["id"], [])
            return {"order": {"lineItems": self._page(nodes, variables.get("after"))}}
        for name, connection in (("TierlineCustomers", "customers"), ("TierlineOrders", "orders")):
            if name in query:
                return {connection: self._page(self.pages.get(connection, []), variables.get("after"))}
        raise AssertionError(f"unexpected query: {query[:80]}")

    def _operation(self, operation_id: str, *, count: bool = True) -> dict[str, Any] | None:
        phase = self.operations.get(operation_id)
        if phase is None:
            return None
        if count:
            self.polls[operation_id] = self.polls.get(operation_id, 0) + 1
        forced = self.operation_status.get(operation_id)
        if forced is not None:
            return {"id": operation_id, "status": forced, "errorCode": None, "objectCount": "0", "url": None}
        if self.polls.get(operation_id, 0) < self.polls_until_done:
            return {
                "id": operation_id,
                "status": "RUNNING",
                "errorCode": None,
                "objectCount": "10",
                "url": None,
            }
        content = self.files.get(phase, b"")
        return {
            "id": operation_id,
            "status": "COMPLETED",
            "errorCode": None,
            "objectCount": str(content.count(b"\n")),
            # A fresh signed URL on every status query, as Shopify's.
            "url": f"https://{STORAGE_HOST}/{phase}.jsonl?sig={self.polls.get(operation_id, 0)}"
            if content
            else None,
            "partialDataUrl": None,
        }

    def _download(self, request: httpx.Request) -> httpx.Response:
        phase = request.url.path.strip("/").removesuffix(".jsonl")
        self.downloads.append(phase)
        content = self.files[phase]
        if phase in self.break_download:
            self.break_download.discard(phase)
            return httpx.Response(200, stream=BrokenStream(content))
        return httpx.Response(200, content=content)

    @staticmethod
    def _page(nodes: list[dict[str, Any]], after: str | None) -> dict[str, Any]:
        """``PAGE_SIZE`` nodes after ``cursor-N`` (any other cursor: from the start of ``nodes``)."""
        start = int(after.removeprefix("cursor-")) if after and after.startswith("cursor-") else 0
        chunk = nodes[start : start + PAGE_SIZE]
        end = start + len(chunk)
        return {
            "pageInfo": {"hasNextPage": end < len(nodes), "endCursor": f"cursor-{end}" if chunk else None},
            "nodes": chunk,
        }
