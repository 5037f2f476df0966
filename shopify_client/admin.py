"""The Admin GraphQL client: cost-based throttling, retries, pagination, bulk operations, webhooks.

Only :class:`AdminClient` and :func:`download_jsonl` do I/O, through an injected
``httpx.AsyncClient``; every wait goes through the injected ``sleep`` callable. Cost parsing,
topic naming and :func:`parse_bulk_jsonl` are pure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from shopify_client.errors import (
    BulkOperationError,
    GraphQLError,
    ShopifyError,
    ShopifyHTTPError,
    ShopifyTransportError,
    ThrottledError,
    UnknownBulkOperationError,
    UserErrorsError,
)
from shopify_client.urls import DEFAULT_SHOP_ORIGIN, shop_origin
from shopify_client.verify import normalize_shop_domain

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

DEFAULT_API_VERSION = "2026-04"
#: Shortest wait after a THROTTLED answer, and the wait after a 429 without ``Retry-After``.
MIN_THROTTLE_WAIT_SECONDS = 1.0
#: No single wait between attempts is longer than this.
MAX_WAIT_SECONDS = 60.0
#: First back-off after a transport error or 5xx; doubles with each attempt.
BACKOFF_BASE_SECONDS = 0.5
DEFAULT_BULK_TIMEOUT_SECONDS = 6 * 3600.0
BODY_EXCERPT_CHARS = 300
TERMINAL_BULK_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})
#: Key under which :func:`parse_bulk_jsonl` puts children whose ``id`` is not a Shopify gid.
UNTYPED_CHILDREN_KEY = "__children"

_GID_TYPE = re.compile(r"^gid://[^/]+/([^/?#]+)/")

BULK_RUN_QUERY_MUTATION = """
mutation BulkOperationRunQuery($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""

BULK_CANCEL_MUTATION = """
mutation BulkOperationCancel($id: ID!) {
  bulkOperationCancel(id: $id) {
    bulkOperation { id status }
    userErrors { field message }
  }
}
"""

#: The app's recent bulk queries, newest first (to adopt one a crashed run had started).
BULK_OPERATIONS_QUERY = """
query TierlineBulkOperations($query: String) {
  bulkOperations(first: 10, query: $query) {
    nodes { id status errorCode objectCount url partialDataUrl query createdAt }
  }
}
"""

BULK_OPERATION_QUERY = """
query BulkOperationStatus($id: ID!) {
  node(id: $id) {
    ... on BulkOperation { id status errorCode objectCount url partialDataUrl }
  }
}
"""

WEBHOOK_SUBSCRIPTION_CREATE_MUTATION = """
mutation WebhookSubscriptionCreate(
  $topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!
) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id }
    userErrors { field message }
  }
}
"""


@dataclass(frozen=True, slots=True)
class ThrottleStatus:
    """The leaky bucket after a query: ``extensions.cost.throttleStatus``."""

    maximum_available: float
    currently_available: float
    restore_rate: float


@dataclass(frozen=True, slots=True)
class QueryCost:
    """``extensions.cost`` of a GraphQL answer."""

    requested: float | None
    actual: float | None
    throttle_status: ThrottleStatus | None

    def seconds_until_affordable(self) -> float:
        """Seconds until the bucket holds ``requested`` points again (0 when it does or is unknown)."""
        status = self.throttle_status
        if self.requested is None or status is None or status.restore_rate <= 0:
            return 0.0
        return max(0.0, (self.requested - status.currently_available) / status.restore_rate)


@dataclass(frozen=True, slots=True)
class BulkOperationResult:
    """A bulk operation's state; ``url`` is set once it has ``COMPLETED`` with results.

    ``partial_data_url`` is what a ``FAILED`` operation (``TIMEOUT``, ``INTERNAL_SERVER_ERROR``)
    managed to read: incomplete by definition. ``id`` and ``query`` are set when listed.
    """

    status: str
    url: str | None
    object_count: int
    error_code: str | None
    partial_data_url: str | None = None
    id: str | None = None
    query: str | None = None
    created_at: str | None = None


def parse_query_cost(body: Mapping[str, Any]) -> QueryCost | None:
    """Read ``extensions.cost`` from a GraphQL response body, if present."""
    extensions = body.get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
    if not isinstance(cost, Mapping):
        return None
    raw_status = cost.get("throttleStatus")
    status: ThrottleStatus | None = None
    if isinstance(raw_status, Mapping):
        maximum = _number(raw_status.get("maximumAvailable"))
        available = _number(raw_status.get("currentlyAvailable"))
        rate = _number(raw_status.get("restoreRate"))
        if maximum is not None and available is not None and rate is not None:
            status = ThrottleStatus(maximum, available, rate)
    return QueryCost(_number(cost.get("requestedQueryCost")), _number(cost.get("actualQueryCost")), status)


def throttle_wait_seconds(cost: QueryCost | None) -> float:
    """The wait after a THROTTLED answer: ``(requested - available) / restoreRate``, at least 1 s."""
    seconds = cost.seconds_until_affordable() if cost is not None else 0.0
    return min(MAX_WAIT_SECONDS, max(MIN_THROTTLE_WAIT_SECONDS, seconds))


def webhook_topic_enum(topic: str) -> str:
    """``orders/create`` → ``ORDERS_CREATE`` (the ``WebhookSubscriptionTopic`` enum value)."""
    return topic.strip().replace("/", "_").upper()


SHOP_DETAILS_QUERY = "query TierlineShop { shop { currencyCode ianaTimezone } }"
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class ShopDetails:
    """How a shop shows money and time: ISO 4217 currency, IANA time zone."""

    currency: str
    iana_timezone: str


class AdminClient:
    """One shop's Admin GraphQL API over an injected ``httpx.AsyncClient``.

    Transport errors, 5xx, 429 and THROTTLED answers are retried up to ``max_attempts`` times
    in all, waiting ``Retry-After``, the throttle status, or an exponential back-off through
    ``sleep``. Other 4xx and GraphQL errors are raised at once.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        shop: str,
        access_token: str,
        api_version: str = DEFAULT_API_VERSION,
        *,
        sleep: Sleep = asyncio.sleep,
        max_attempts: int = 5,
        origin: str = DEFAULT_SHOP_ORIGIN,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.shop = normalize_shop_domain(shop)
        self.api_version = api_version
        self.endpoint = f"{shop_origin(self.shop, origin)}/admin/api/{api_version}/graphql.json"
        self.last_cost: QueryCost | None = None
        self._http = http
        self._access_token = access_token
        self._sleep = sleep
        self._max_attempts = max_attempts

    def __repr__(self) -> str:
        return f"AdminClient(shop={self.shop!r}, api_version={self.api_version!r})"

    async def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run one query or mutation and return its ``data``."""
        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(self._max_attempts),
            wait=_retry_wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        data: dict[str, Any] = await retrying(self._post, query, variables)
        return data

    async def paginate(
        self,
        query: str,
        variables: Mapping[str, Any] | None,
        connection_path: Sequence[str],
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every node of the connection at ``connection_path``, page by page.

        The query must take an ``$after: String`` variable and select
        ``pageInfo { hasNextPage endCursor }`` with ``nodes`` or ``edges { node }``. Between
        pages it waits until the bucket can pay for the previous page's requested cost.
        """
        page_variables = dict(variables or {})
        seen: set[str] = set()
        while True:
            data = await self.graphql(query, page_variables)
            connection = _connection(data, connection_path)
            if connection is None:
                return
            for node in _nodes(connection):
                yield node
            page_info = connection.get("pageInfo")
            if not isinstance(page_info, Mapping):
                raise GraphQLError([f"{'.'.join(connection_path)} has no pageInfo"])
            if not page_info.get("hasNextPage"):
                return
            cursor = page_info.get("endCursor")
            if not isinstance(cursor, str) or cursor in seen:
                raise ShopifyError(f"pagination of {'.'.join(connection_path)} did not advance")
            seen.add(cursor)
            page_variables["after"] = cursor
            wait = self.last_cost.seconds_until_affordable() if self.last_cost else 0.0
            if wait > 0:
                await self._sleep(min(wait, MAX_WAIT_SECONDS))

    async def shop_details(self) -> ShopDetails:
        """The shop's currency and time zone (``shop { currencyCode ianaTimezone }``)."""
        data = await self.graphql(SHOP_DETAILS_QUERY)
        shop = data.get("shop") or {}
        currency, zone = shop.get("currencyCode"), shop.get("ianaTimezone")
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            raise GraphQLError([f"unexpected currencyCode {currency!r}"])
        if not isinstance(zone, str) or not 0 < len(zone) <= 64:
            raise GraphQLError(["unexpected ianaTimezone"])
        return ShopDetails(currency, zone)

    async def run_bulk_query(self, query: str) -> str:
        """Start a bulk query (``bulkOperationRunQuery``) and return the operation's id."""
        data = await self.graphql(BULK_RUN_QUERY_MUTATION, {"query": query})
        payload = _mutation_payload(data, "bulkOperationRunQuery")
        operation = payload.get("bulkOperation")
        operation_id = operation.get("id") if isinstance(operation, Mapping) else None
        if not isinstance(operation_id, str):
            raise GraphQLError(["bulkOperationRunQuery returned no bulk operation"])
        return operation_id

    async def cancel_bulk_operation(self, operation_id: str) -> None:
        """Ask Shopify to cancel a running bulk operation (``bulkOperationCancel``)."""
        data = await self.graphql(BULK_CANCEL_MUTATION, {"id": operation_id})
        _mutation_payload(data, "bulkOperationCancel")

    async def bulk_queries(self, search: str | None = None) -> list[BulkOperationResult]:
        """The app's latest bulk queries on this shop (newest first), with their query text."""
        query = "operation_type:query" + (f" {search}" if search else "")
        data = await self.graphql(BULK_OPERATIONS_QUERY, {"query": query})
        connection = _connection(data, ("bulkOperations",))
        return [] if connection is None else [_bulk_result(node) for node in _nodes(connection)]

    async def page(
        self, query: str, variables: Mapping[str, Any] | None, connection_path: Sequence[str]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a connection: its nodes, and the cursor of the next page (None at the end).

        Waits first until the bucket can pay for the previous query's requested cost.
        """
        wait = self.last_cost.seconds_until_affordable() if self.last_cost else 0.0
        if wait > 0:
            await self._sleep(min(wait, MAX_WAIT_SECONDS))
        data = await self.graphql(query, variables)
        connection = _connection(data, connection_path)
        if connection is None:
            return [], None
        page_info = connection.get("pageInfo")
        if not isinstance(page_info, Mapping):
            raise GraphQLError([f"{'.'.join(connection_path)} has no pageInfo"])
        cursor = page_info.get("endCursor")
        more = bool(page_info.get("hasNextPage")) and isinstance(cursor, str)
        return _nodes(connection), cursor if more else None

    async def poll_bulk_operation(
        self,
        operation_id: str,
        *,
        interval: float = 2.0,
        timeout: float = DEFAULT_BULK_TIMEOUT_SECONDS,  # noqa: ASYNC109 - counts injected sleeps
    ) -> BulkOperationResult:
        """Query the operation every ``interval`` seconds until it is COMPLETED, FAILED, CANCELED
        or EXPIRED, and return that state.

        Raises :class:`BulkOperationError` once ``timeout`` seconds of waiting have passed.
        """
        waited = 0.0
        while True:
            data = await self.graphql(BULK_OPERATION_QUERY, {"id": operation_id})
            node = data.get("node")
            if not isinstance(node, Mapping):
                raise UnknownBulkOperationError(f"no bulk operation {operation_id}")
            result = _bulk_result(node)
            if result.status in TERMINAL_BULK_STATUSES:
                return result
            if waited >= timeout:
                raise BulkOperationError(
                    f"bulk operation {operation_id} is still {result.status} after {timeout:g} s"
                )
            await self._sleep(interval)
            waited += interval

    async def register_webhooks(self, topics: Iterable[str], uri: str) -> list[str]:
        """Create one JSON webhook subscription per topic to ``uri``; return their ids in order.

        Raises :class:`UserErrorsError` on the first topic Shopify refuses; subscriptions
        created before it stay.
        """
        ids: list[str] = []
        for topic in topics:
            data = await self.graphql(
                WEBHOOK_SUBSCRIPTION_CREATE_MUTATION,
                {
                    "topic": webhook_topic_enum(topic),
                    "webhookSubscription": {"uri": uri, "format": "JSON"},
                },
            )
            payload = _mutation_payload(data, "webhookSubscriptionCreate")
            subscription = payload.get("webhookSubscription")
            subscription_id = subscription.get("id") if isinstance(subscription, Mapping) else None
            if not isinstance(subscription_id, str):
                raise GraphQLError([f"webhookSubscriptionCreate returned no subscription for {topic}"])
            ids.append(subscription_id)
        return ids

    async def _post(self, query: str, variables: Mapping[str, Any] | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = dict(variables)
        headers = {"X-Shopify-Access-Token": self._access_token, "Accept": "application/json"}
        try:
            response = await self._http.post(self.endpoint, json=payload, headers=headers)
        except httpx.TransportError as exc:
            raise ShopifyTransportError(f"POST {self.endpoint}: {type(exc).__name__}") from exc
        if response.status_code == 429:
            raise ThrottledError(_retry_after(response), status=429)
        if not response.is_success:
            raise ShopifyHTTPError(response.status_code, response.text[:BODY_EXCERPT_CHARS])
        try:
            body = response.json()
        except ValueError as exc:
            raise ShopifyHTTPError(response.status_code, "response is not JSON") from exc
        if not isinstance(body, dict):
            raise ShopifyHTTPError(response.status_code, "response is not a JSON object")
        cost = parse_query_cost(body)
        if cost is not None:
            self.last_cost = cost
        errors = body.get("errors")
        if errors:
            error_list = errors if isinstance(errors, list) else [errors]
            if any(_error_code(error) == "THROTTLED" for error in error_list):
                raise ThrottledError(throttle_wait_seconds(cost), status=response.status_code)
            raise GraphQLError(
                [_error_message(error) for error in error_list],
                [error for error in error_list if isinstance(error, Mapping)],
            )
        data = body.get("data")
        if not isinstance(data, dict):
            raise GraphQLError(["response has no data"])
        return data

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "shopify.graphql.retry",
            extra={
                "shop": self.shop,
                "attempt": state.attempt_number,
                "wait_seconds": state.upcoming_sleep,
                "error": type(exc).__name__,
            },
        )


async def download_jsonl(http: httpx.AsyncClient, url: str) -> AsyncIterator[str]:
    """Stream the non-empty lines of a bulk operation's JSONL result (a signed URL, no token)."""
    try:
        async with http.stream("GET", url) as response:
            if not response.is_success:
                await response.aread()
                raise ShopifyHTTPError(response.status_code, response.text[:BODY_EXCERPT_CHARS])
            async for line in response.aiter_lines():
                if line.strip():
                    yield line
    except httpx.TransportError as exc:
        raise ShopifyTransportError(f"downloading bulk results: {type(exc).__name__}") from exc


def parse_bulk_jsonl(lines: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """Nest a bulk operation's JSONL under its top-level objects.

    Each line with ``__parentId`` is removed from the top level and appended, without that key,
    to a list on its parent named after the child's type (``gid://shopify/LineItem/1`` →
    ``"LineItem"``; children without a gid go under ``"__children"``). Parents and children may
    come in any order; grandchildren nest under children. Top-level objects keep their order.
    """
    objects: list[dict[str, Any]] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise BulkOperationError(f"line {number} is not JSON") from exc
        if not isinstance(obj, dict):
            raise BulkOperationError(f"line {number} is not a JSON object")
        objects.append(obj)
    by_id = {obj["id"]: obj for obj in objects if isinstance(obj.get("id"), str)}
    roots: list[dict[str, Any]] = []
    for obj in objects:
        parent_id = obj.pop("__parentId", None)
        if parent_id is None:
            roots.append(obj)
            continue
        parent = by_id.get(parent_id)
        if parent is None:
            raise BulkOperationError(f"parent {parent_id} is not in the result")
        parent.setdefault(_gid_type(obj.get("id")), []).append(obj)
    return roots


def _gid_type(gid: object) -> str:
    match = _GID_TYPE.match(gid) if isinstance(gid, str) else None
    return match.group(1) if match else UNTYPED_CHILDREN_KEY


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ThrottledError | ShopifyTransportError):
        return True
    return isinstance(exc, ShopifyHTTPError) and exc.status >= 500


def _retry_wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, ThrottledError):
        return min(MAX_WAIT_SECONDS, max(0.0, exc.retry_after))
    return min(MAX_WAIT_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (state.attempt_number - 1))


def _retry_after(response: httpx.Response) -> float:
    value = _number(response.headers.get("Retry-After"))
    return MIN_THROTTLE_WAIT_SECONDS if value is None or value < 0 else value


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _error_code(error: object) -> object:
    extensions = error.get("extensions") if isinstance(error, Mapping) else None
    return extensions.get("code") if isinstance(extensions, Mapping) else None


def _error_message(error: object) -> str:
    if isinstance(error, Mapping):
        return str(error.get("message") or "GraphQL error")
    return str(error)


def _connection(data: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any] | None:
    current: object = data
    for key in path:
        if current is None:
            return None
        if not isinstance(current, Mapping) or key not in current:
            raise GraphQLError([f"response has no {'.'.join(path)}"])
        current = current[key]
    if current is None:
        return None
    if not isinstance(current, Mapping):
        raise GraphQLError([f"{'.'.join(path)} is not a connection"])
    return current


def _nodes(connection: Mapping[str, Any]) -> list[dict[str, Any]]:
    nodes = connection.get("nodes")
    if isinstance(nodes, list):
        return [node for node in nodes if isinstance(node, dict)]
    edges = connection.get("edges")
    if isinstance(edges, list):
        return [
            edge["node"] for edge in edges if isinstance(edge, Mapping) and isinstance(edge.get("node"), dict)
        ]
    raise GraphQLError(["connection has neither nodes nor edges"])


def _mutation_payload(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    payload = data.get(name)
    if not isinstance(payload, Mapping):
        raise GraphQLError([f"{name} returned no payload"])
    user_errors = payload.get("userErrors")
    if isinstance(user_errors, list) and user_errors:
        raise UserErrorsError([error for error in user_errors if isinstance(error, Mapping)])
    return payload


def _bulk_result(node: Mapping[str, Any]) -> BulkOperationResult:
    url = node.get("url")
    partial = node.get("partialDataUrl")
    error_code = node.get("errorCode")
    count = node.get("objectCount")
    operation_id = node.get("id")
    query = node.get("query")
    created = node.get("createdAt")
    return BulkOperationResult(
        status=str(node.get("status") or "UNKNOWN"),
        url=url if isinstance(url, str) else None,
        object_count=int(count) if isinstance(count, int | str) and str(count).isdigit() else 0,
        error_code=error_code if isinstance(error_code, str) else None,
        partial_data_url=partial if isinstance(partial, str) else None,
        id=operation_id if isinstance(operation_id, str) else None,
        query=query if isinstance(query, str) else None,
        created_at=created if isinstance(created, str) else None,
    )
