"""The Admin GraphQL client: throttling, retries, pagination, bulk operations, webhook registration."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shopify_client import (
    AdminClient,
    BulkOperationError,
    BulkOperationResult,
    GraphQLError,
    InvalidShopDomainError,
    QueryCost,
    ShopifyError,
    ShopifyHTTPError,
    ShopifyTransportError,
    ThrottledError,
    ThrottleStatus,
    UserErrorsError,
    download_jsonl,
    parse_bulk_jsonl,
    parse_query_cost,
    throttle_wait_seconds,
    webhook_topic_enum,
)

pytestmark = pytest.mark.anyio

SHOP = "acme-test.myshopify.com"
TOKEN = "shpat_test_token"
ENDPOINT = f"https://{SHOP}/admin/api/2026-04/graphql.json"
QUERY = "query Shop { shop { name } }"

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeSleep:
    """Records every requested wait instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(float(seconds))


class Shopify:
    """A MockTransport handler that plays back ``replies`` in order and records every request."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.replies:
            raise AssertionError("more requests than expected")
        reply = self.replies[0] if len(self.replies) == 1 else self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return reply(request)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]


def ok(data: Any, cost: dict[str, Any] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"data": data}
    if cost is not None:
        body["extensions"] = {"cost": cost}
    return httpx.Response(200, json=body)


def cost(
    requested: float, available: float, restore_rate: float = 100.0, actual: float | None = None
) -> dict[str, Any]:
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": 2000.0,
            "currentlyAvailable": available,
            "restoreRate": restore_rate,
        },
    }


def throttled(requested: float, available: float, restore_rate: float = 100.0) -> httpx.Response:
    body = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "x"}}],
        "extensions": {"cost": cost(requested, available, restore_rate)},
    }
    return httpx.Response(200, json=body)


def make_client(
    shopify: Shopify, sleep: FakeSleep, *, max_attempts: int = 5
) -> tuple[AdminClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(shopify))
    return AdminClient(http, SHOP, TOKEN, sleep=sleep, max_attempts=max_attempts), http


class TestAdminClient:
    def test_refuses_an_invalid_shop(self) -> None:
        with pytest.raises(InvalidShopDomainError):
            AdminClient(httpx.AsyncClient(), "evil.example", TOKEN)

    def test_refuses_zero_attempts(self) -> None:
        with pytest.raises(ValueError, match="max_attempts"):
            AdminClient(httpx.AsyncClient(), SHOP, TOKEN, max_attempts=0)

    def test_repr_hides_the_token(self) -> None:
        assert TOKEN not in repr(AdminClient(httpx.AsyncClient(), SHOP, TOKEN))

    def test_endpoint_uses_the_api_version(self) -> None:
        client = AdminClient(httpx.AsyncClient(), SHOP, TOKEN, "2026-07")
        assert client.endpoint == f"https://{SHOP}/admin/api/2026-07/graphql.json"


class TestGraphql:
    async def test_posts_query_and_variables_with_the_access_token(self) -> None:
        shopify, sleep = Shopify(ok({"shop": {"name": "Acme"}})), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            data = await client.graphql(QUERY, {"first": 10})
        assert data == {"shop": {"name": "Acme"}}
        [request] = shopify.requests
        assert request.method == "POST"
        assert str(request.url) == ENDPOINT
        assert request.headers["X-Shopify-Access-Token"] == TOKEN
        assert request.headers["content-type"] == "application/json"
        assert json.loads(request.content) == {"query": QUERY, "variables": {"first": 10}}
        assert sleep.delays == []

    async def test_leaves_out_variables_when_none(self) -> None:
        shopify = Shopify(ok({"shop": {"name": "Acme"}}))
        client, http = make_client(shopify, FakeSleep())
        async with http:
            await client.graphql(QUERY)
        assert shopify.bodies == [{"query": QUERY}]

    async def test_records_the_query_cost(self) -> None:
        client, http = make_client(Shopify(ok({}, cost(12, 1988, actual=3))), FakeSleep())
        async with http:
            await client.graphql(QUERY)
        assert client.last_cost == QueryCost(12.0, 3.0, ThrottleStatus(2000.0, 1988.0, 100.0))

    async def test_throttled_then_success_waits_for_the_missing_points(self) -> None:
        shopify, sleep = Shopify(throttled(752, 152, 100.0), ok({"shop": {"name": "Acme"}})), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            data = await client.graphql(QUERY)
        assert data == {"shop": {"name": "Acme"}}
        assert sleep.delays == [6.0]
        assert len(shopify.requests) == 2

    async def test_throttled_waits_at_least_one_second(self) -> None:
        shopify, sleep = Shopify(throttled(50, 20, 100.0), ok({})), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            await client.graphql(QUERY)
        assert sleep.delays == [1.0]

    async def test_throttled_without_cost_waits_one_second(self) -> None:
        bare = httpx.Response(
            200, json={"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}
        )
        shopify, sleep = Shopify(bare, ok({})), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            await client.graphql(QUERY)
        assert sleep.delays == [1.0]

    async def test_throttled_every_time_gives_up_after_max_attempts(self) -> None:
        shopify, sleep = Shopify(throttled(300, 100, 50.0)), FakeSleep()
        client, http = make_client(shopify, sleep, max_attempts=3)
        async with http:
            with pytest.raises(ThrottledError) as caught:
                await client.graphql(QUERY)
        assert caught.value.retry_after == 4.0
        assert sleep.delays == [4.0, 4.0]
        assert len(shopify.requests) == 3

    async def test_429_waits_retry_after(self) -> None:
        limited = httpx.Response(429, headers={"Retry-After": "2"}, text="Too Many Requests")
        shopify, sleep = Shopify(limited, ok({})), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            await client.graphql(QUERY)
        assert sleep.delays == [2.0]
        assert len(shopify.requests) == 2

    async def test_429_without_retry_after_waits_one_second(self) -> None:
        shopify, sleep = Shopify(httpx.Response(429), ok({})), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            await client.graphql(QUERY)
        assert sleep.delays == [1.0]

    async def test_a_huge_retry_after_is_capped(self) -> None:
        shopify, sleep = Shopify(httpx.Response(429, headers={"Retry-After": "3600"}), ok({})), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            await client.graphql(QUERY)
        assert sleep.delays == [60.0]

    async def test_502_then_success_is_retried(self) -> None:
        shopify, sleep = (
            Shopify(httpx.Response(502, text="Bad Gateway"), ok({"shop": {"name": "Acme"}})),
            FakeSleep(),
        )
        client, http = make_client(shopify, sleep)
        async with http:
            data = await client.graphql(QUERY)
        assert data == {"shop": {"name": "Acme"}}
        assert len(shopify.requests) == 2
        assert sleep.delays == [0.5]

    async def test_5xx_every_time_raises_the_last_status(self) -> None:
        shopify, sleep = Shopify(httpx.Response(503, text="unavailable")), FakeSleep()
        client, http = make_client(shopify, sleep, max_attempts=4)
        async with http:
            with pytest.raises(ShopifyHTTPError) as caught:
                await client.graphql(QUERY)
        assert caught.value.status == 503
        assert len(shopify.requests) == 4
        assert sleep.delays == [0.5, 1.0, 2.0]

    @pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 423])
    async def test_4xx_is_not_retried(self, status: int) -> None:
        body = '{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}'
        shopify, sleep = Shopify(httpx.Response(status, text=body), ok({})), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            with pytest.raises(ShopifyHTTPError) as caught:
                await client.graphql(QUERY)
        assert caught.value.status == status
        assert "Invalid API key" in caught.value.body_excerpt
        assert len(shopify.requests) == 1
        assert sleep.delays == []

    async def test_transport_errors_are_retried_then_give_up(self) -> None:
        shopify, sleep = Shopify(httpx.ConnectError("connection reset")), FakeSleep()
        client, http = make_client(shopify, sleep, max_attempts=5)
        async with http:
            with pytest.raises(ShopifyError) as caught:
                await client.graphql(QUERY)
        assert isinstance(caught.value, ShopifyTransportError)
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert len(shopify.requests) == 5
        assert sleep.delays == [0.5, 1.0, 2.0, 4.0]

    async def test_a_timeout_then_success_is_retried(self) -> None:
        shopify, sleep = Shopify(httpx.ReadTimeout("slow"), ok({"shop": {"name": "Acme"}})), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            assert await client.graphql(QUERY) == {"shop": {"name": "Acme"}}
        assert len(shopify.requests) == 2

    async def test_graphql_errors_are_raised_without_retry(self) -> None:
        body = {
            "errors": [
                {
                    "message": "Field 'nmae' doesn't exist on type 'Shop'",
                    "extensions": {"code": "undefinedField"},
                },
                {"message": "Variable $first is never used"},
            ]
        }
        shopify, sleep = Shopify(httpx.Response(200, json=body)), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            with pytest.raises(GraphQLError) as caught:
                await client.graphql("query { shop { nmae } }")
        assert caught.value.messages == [
            "Field 'nmae' doesn't exist on type 'Shop'",
            "Variable $first is never used",
        ]
        assert "nmae" in str(caught.value)
        assert len(shopify.requests) == 1
        assert sleep.delays == []

    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(200, text="<html>maintenance</html>"),
            httpx.Response(200, json=["not", "an", "object"]),
            httpx.Response(200, json={"data": None}),
        ],
    )
    async def test_unusable_bodies_raise(self, response: httpx.Response) -> None:
        client, http = make_client(Shopify(response), FakeSleep())
        async with http:
            with pytest.raises(ShopifyError):
                await client.graphql(QUERY)


ORDERS_QUERY = """
query Orders($after: String, $query: String) {
  orders(first: 3, after: $after, query: $query) {
    nodes { id }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def orders_page(ids: list[int], cursor: str | None, *, edges: bool = False, **extra: Any) -> httpx.Response:
    nodes = [{"id": f"gid://shopify/Order/{number}"} for number in ids]
    connection: dict[str, Any] = {"pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor}}
    if edges:
        connection["edges"] = [{"cursor": f"c{node['id']}", "node": node} for node in nodes]
    else:
        connection["nodes"] = nodes
    return ok({"orders": connection}, **extra)


class TestPaginate:
    async def test_follows_end_cursors_across_three_pages(self) -> None:
        shopify = Shopify(orders_page([1, 2, 3], "c3"), orders_page([4, 5, 6], "c6"), orders_page([7], None))
        sleep = FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            nodes = [
                node async for node in client.paginate(ORDERS_QUERY, {"query": "status:any"}, ["orders"])
            ]
        assert [node["id"] for node in nodes] == [f"gid://shopify/Order/{n}" for n in range(1, 8)]
        variables = [body["variables"] for body in shopify.bodies]
        assert variables == [
            {"query": "status:any"},
            {"query": "status:any", "after": "c3"},
            {"query": "status:any", "after": "c6"},
        ]
        assert sleep.delays == []

    async def test_reads_edges_as_well_as_nodes(self) -> None:
        shopify = Shopify(orders_page([1, 2], "c2", edges=True), orders_page([3], None, edges=True))
        client, http = make_client(shopify, FakeSleep())
        async with http:
            nodes = [node async for node in client.paginate(ORDERS_QUERY, None, ["orders"])]
        assert [node["id"] for node in nodes] == [f"gid://shopify/Order/{n}" for n in (1, 2, 3)]

    async def test_follows_a_nested_connection_path(self) -> None:
        page = ok({"customer": {"orders": {"nodes": [{"id": "a"}], "pageInfo": {"hasNextPage": False}}}})
        client, http = make_client(Shopify(page), FakeSleep())
        async with http:
            nodes = [node async for node in client.paginate("q", {"id": "c"}, ["customer", "orders"])]
        assert nodes == [{"id": "a"}]

    async def test_a_null_parent_yields_nothing(self) -> None:
        client, http = make_client(Shopify(ok({"customer": None})), FakeSleep())
        async with http:
            nodes = [node async for node in client.paginate("q", {"id": "c"}, ["customer", "orders"])]
        assert nodes == []

    async def test_waits_between_pages_when_the_bucket_is_short(self) -> None:
        shopify = Shopify(
            orders_page([1], "c1", cost=cost(100, 40, 50.0)),
            orders_page([2], None, cost=cost(100, 140, 50.0)),
        )
        sleep = FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            nodes = [node async for node in client.paginate(ORDERS_QUERY, None, ["orders"])]
        assert len(nodes) == 2
        assert sleep.delays == [1.2]

    async def test_a_repeated_cursor_stops_with_an_error(self) -> None:
        shopify = Shopify(orders_page([1], "same"), orders_page([2], "same"))
        client, http = make_client(shopify, FakeSleep())
        async with http:
            with pytest.raises(ShopifyError, match="did not advance"):
                [node async for node in client.paginate(ORDERS_QUERY, None, ["orders"])]
        assert len(shopify.requests) == 2

    async def test_a_wrong_path_raises(self) -> None:
        client, http = make_client(Shopify(orders_page([1], None)), FakeSleep())
        async with http:
            with pytest.raises(GraphQLError):
                [node async for node in client.paginate(ORDERS_QUERY, None, ["customers"])]


class TestRunBulkQuery:
    async def test_returns_the_operation_id(self) -> None:
        operation = {
            "bulkOperation": {"id": "gid://shopify/BulkOperation/1", "status": "CREATED"},
            "userErrors": [],
        }
        shopify = Shopify(ok({"bulkOperationRunQuery": operation}))
        client, http = make_client(shopify, FakeSleep())
        async with http:
            operation_id = await client.run_bulk_query("{ orders { edges { node { id } } } }")
        assert operation_id == "gid://shopify/BulkOperation/1"
        [body] = shopify.bodies
        assert "bulkOperationRunQuery" in body["query"]
        assert body["variables"] == {"query": "{ orders { edges { node { id } } } }"}

    async def test_user_errors_raise(self) -> None:
        payload = {
            "bulkOperation": None,
            "userErrors": [
                {"field": ["query"], "message": "Bulk queries must contain at least one connection."}
            ],
        }
        client, http = make_client(Shopify(ok({"bulkOperationRunQuery": payload})), FakeSleep())
        async with http:
            with pytest.raises(UserErrorsError) as caught:
                await client.run_bulk_query("{ shop { name } }")
        assert caught.value.messages == ["query: Bulk queries must contain at least one connection."]
        assert isinstance(caught.value, GraphQLError)


def bulk_node(status: str, **fields: Any) -> httpx.Response:
    node = {
        "id": "gid://shopify/BulkOperation/1",
        "status": status,
        "errorCode": None,
        "objectCount": "0",
        "url": None,
        "partialDataUrl": None,
    }
    node.update(fields)
    return ok({"node": node})


class TestPollBulkOperation:
    async def test_polls_until_completed(self) -> None:
        done = bulk_node("COMPLETED", objectCount="12345", url="https://storage.example/result.jsonl")
        shopify, sleep = (
            Shopify(bulk_node("CREATED"), bulk_node("RUNNING", objectCount="10"), done),
            FakeSleep(),
        )
        client, http = make_client(shopify, sleep)
        async with http:
            result = await client.poll_bulk_operation("gid://shopify/BulkOperation/1", interval=3.0)
        assert result == BulkOperationResult(
            "COMPLETED",
            "https://storage.example/result.jsonl",
            12345,
            None,
            id="gid://shopify/BulkOperation/1",
        )
        assert sleep.delays == [3.0, 3.0]
        assert [body["variables"] for body in shopify.bodies] == [{"id": "gid://shopify/BulkOperation/1"}] * 3
        assert "node(id: $id)" in shopify.bodies[0]["query"]

    async def test_returns_a_failed_operation(self) -> None:
        failed = bulk_node(
            "FAILED", errorCode="ACCESS_DENIED", partialDataUrl="https://storage.example/p.jsonl"
        )
        client, http = make_client(Shopify(failed), FakeSleep())
        async with http:
            result = await client.poll_bulk_operation("gid://shopify/BulkOperation/1")
        assert (result.status, result.error_code, result.url) == ("FAILED", "ACCESS_DENIED", None)
        assert result.partial_data_url == "https://storage.example/p.jsonl"

    async def test_gives_up_after_the_timeout(self) -> None:
        shopify, sleep = Shopify(bulk_node("RUNNING")), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            with pytest.raises(BulkOperationError, match="still RUNNING"):
                await client.poll_bulk_operation("gid://shopify/BulkOperation/1", interval=5.0, timeout=12.0)
        assert sleep.delays == [5.0, 5.0, 5.0]
        assert len(shopify.requests) == 4

    async def test_timeout_counts_the_waits(self) -> None:
        shopify, sleep = Shopify(bulk_node("RUNNING")), FakeSleep()
        client, http = make_client(shopify, sleep)
        async with http:
            with pytest.raises(BulkOperationError):
                await client.poll_bulk_operation("gid://shopify/BulkOperation/1", interval=5.0, timeout=10.0)
        assert sleep.delays == [5.0, 5.0]
        assert len(shopify.requests) == 3

    async def test_unknown_operation_raises(self) -> None:
        client, http = make_client(Shopify(ok({"node": None})), FakeSleep())
        async with http:
            with pytest.raises(BulkOperationError):
                await client.poll_bulk_operation("gid://shopify/BulkOperation/404")


def generated_bulk_lines(orders: int, seed: int = 7) -> tuple[list[str], dict[str, dict[str, set[str]]]]:
    """JSONL for ``orders`` orders with line items and fulfillments; children come after their
    parent but shuffled among later lines. Returns the lines and each order's expected children."""
    rng = random.Random(seed)
    lines: list[str] = []
    pending: list[str] = []
    expected: dict[str, dict[str, set[str]]] = {}
    next_child = iter(range(1, 10**9))
    for number in range(1, orders + 1):
        order_id = f"gid://shopify/Order/{number}"
        lines.append(json.dumps({"id": order_id, "name": f"#{1000 + number}"}))
        children: dict[str, set[str]] = {"LineItem": set(), "Fulfillment": set()}
        for _ in range(rng.randint(1, 6)):
            child_id = f"gid://shopify/LineItem/{next(next_child)}"
            children["LineItem"].add(child_id)
            pending.append(json.dumps({"id": child_id, "quantity": 1, "__parentId": order_id}))
        if rng.random() < 0.5:
            child_id = f"gid://shopify/Fulfillment/{next(next_child)}"
            children["Fulfillment"].add(child_id)
            pending.append(json.dumps({"id": child_id, "status": "SUCCESS", "__parentId": order_id}))
        expected[order_id] = children
        rng.shuffle(pending)
        for _ in range(rng.randint(0, len(pending))):
            lines.append(pending.pop())
    rng.shuffle(pending)
    lines.extend(pending)
    return lines, expected


class TestParseBulkJsonl:
    def test_nests_thousands_of_out_of_order_children(self) -> None:
        lines, expected = generated_bulk_lines(800)
        assert len(lines) > 2000
        roots = parse_bulk_jsonl(lines)
        assert [root["id"] for root in roots] == list(expected)
        displaced = 0
        for root in roots:
            children = expected[root["id"]]
            for key in ("LineItem", "Fulfillment"):
                got = {child["id"] for child in root.get(key, [])}
                assert got == children[key]
            for child in root["LineItem"]:
                assert "__parentId" not in child
                assert child["quantity"] == 1
        for index, line in enumerate(lines[1:], start=1):
            obj = json.loads(line)
            if "__parentId" in obj and json.loads(lines[index - 1]).get("id") != obj["__parentId"]:
                displaced += 1
        assert displaced > 1000

    def test_accepts_bytes_and_skips_blank_lines(self) -> None:
        lines: list[str | bytes] = [
            b'{"id":"gid://shopify/Customer/1","email":"a@example.com"}\n',
            "\n",
            '{"id":"gid://shopify/Order/9","__parentId":"gid://shopify/Customer/1"}\n',
            b"",
        ]
        assert parse_bulk_jsonl(lines) == [
            {
                "id": "gid://shopify/Customer/1",
                "email": "a@example.com",
                "Order": [{"id": "gid://shopify/Order/9"}],
            }
        ]

    def test_nests_grandchildren_under_children(self) -> None:
        lines = [
            '{"id":"gid://shopify/Customer/1"}',
            '{"id":"gid://shopify/LineItem/3","__parentId":"gid://shopify/Order/2"}',
            '{"id":"gid://shopify/Order/2","__parentId":"gid://shopify/Customer/1"}',
        ]
        [customer] = parse_bulk_jsonl(lines)
        assert customer["Order"] == [
            {"id": "gid://shopify/Order/2", "LineItem": [{"id": "gid://shopify/LineItem/3"}]}
        ]

    def test_children_without_a_gid_go_under_a_generic_key(self) -> None:
        lines = ['{"id":"gid://shopify/Order/1"}', '{"title":"x","__parentId":"gid://shopify/Order/1"}']
        assert parse_bulk_jsonl(lines) == [{"id": "gid://shopify/Order/1", "__children": [{"title": "x"}]}]

    def test_an_orphan_child_raises(self) -> None:
        lines = [
            '{"id":"gid://shopify/Order/1"}',
            '{"id":"gid://shopify/LineItem/1","__parentId":"gid://shopify/Order/2"}',
        ]
        with pytest.raises(BulkOperationError, match="Order/2"):
            parse_bulk_jsonl(lines)

    @pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '"text"'])
    def test_a_bad_line_raises_with_its_number(self, bad: str) -> None:
        with pytest.raises(BulkOperationError, match="line 2"):
            parse_bulk_jsonl(['{"id":"gid://shopify/Order/1"}', bad])


class TestDownloadJsonl:
    async def test_streams_non_empty_lines_without_the_access_token(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, content=b'{"id":"a"}\n\n{"id":"b"}\r\n{"id":"c"}')

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            lines = [line async for line in download_jsonl(http, "https://storage.example/r.jsonl?sig=x")]
        assert lines == ['{"id":"a"}', '{"id":"b"}', '{"id":"c"}']
        assert [request.method for request in seen] == ["GET"]
        assert "X-Shopify-Access-Token" not in seen[0].headers

    async def test_feeds_parse_bulk_jsonl(self) -> None:
        content = b'{"id":"gid://shopify/Order/1"}\n{"id":"gid://shopify/LineItem/2","__parentId":"gid://shopify/Order/1"}\n'
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(lambda _: httpx.Response(200, content=content))
        ) as http:
            roots = parse_bulk_jsonl(
                [line async for line in download_jsonl(http, "https://storage.example/r")]
            )
        assert roots == [{"id": "gid://shopify/Order/1", "LineItem": [{"id": "gid://shopify/LineItem/2"}]}]

    async def test_error_status_raises(self) -> None:
        transport = httpx.MockTransport(lambda _: httpx.Response(403, text="<Error>AccessDenied</Error>"))
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(ShopifyHTTPError) as caught:
                [line async for line in download_jsonl(http, "https://storage.example/expired")]
        assert caught.value.status == 403
        assert "AccessDenied" in caught.value.body_excerpt

    async def test_transport_error_raises_a_shopify_error(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("unreachable", request=request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            with pytest.raises(ShopifyTransportError):
                [line async for line in download_jsonl(http, "https://storage.example/r")]


def subscription_created(request: httpx.Request) -> httpx.Response:
    topic = json.loads(request.content)["variables"]["topic"]
    subscription = {"id": f"gid://shopify/WebhookSubscription/{topic}"}
    return ok({"webhookSubscriptionCreate": {"webhookSubscription": subscription, "userErrors": []}})


class TestRegisterWebhooks:
    async def test_creates_one_subscription_per_topic(self) -> None:
        shopify = Shopify(subscription_created)
        client, http = make_client(shopify, FakeSleep())
        topics = ["orders/create", "fulfillment_events/create", "app/uninstalled"]
        async with http:
            ids = await client.register_webhooks(topics, "https://tierline.example/webhooks/shopify")
        assert ids == [
            "gid://shopify/WebhookSubscription/ORDERS_CREATE",
            "gid://shopify/WebhookSubscription/FULFILLMENT_EVENTS_CREATE",
            "gid://shopify/WebhookSubscription/APP_UNINSTALLED",
        ]
        for body in shopify.bodies:
            assert (
                "webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription)"
                in body["query"]
            )
            assert body["variables"]["webhookSubscription"] == {
                "uri": "https://tierline.example/webhooks/shopify",
                "format": "JSON",
            }
            assert "callbackUrl" not in json.dumps(body["variables"])

    async def test_user_errors_raise_and_stop(self) -> None:
        refused = ok(
            {
                "webhookSubscriptionCreate": {
                    "webhookSubscription": None,
                    "userErrors": [
                        {"field": ["webhookSubscription", "uri"], "message": "Address is invalid"}
                    ],
                }
            }
        )
        shopify = Shopify(refused, subscription_created)
        client, http = make_client(shopify, FakeSleep())
        async with http:
            with pytest.raises(UserErrorsError) as caught:
                await client.register_webhooks(["orders/create", "orders/updated"], "not a url")
        assert caught.value.messages == ["webhookSubscription.uri: Address is invalid"]
        assert caught.value.user_errors == [
            {"field": ["webhookSubscription", "uri"], "message": "Address is invalid"}
        ]
        assert len(shopify.requests) == 1


class TestWebhookTopicEnum:
    @pytest.mark.parametrize(
        ("topic", "enum"),
        [
            ("orders/create", "ORDERS_CREATE"),
            ("fulfillment_events/create", "FULFILLMENT_EVENTS_CREATE"),
            ("bulk_operations/finish", "BULK_OPERATIONS_FINISH"),
            ("ORDERS_PAID", "ORDERS_PAID"),
        ],
    )
    def test_screaming_case(self, topic: str, enum: str) -> None:
        assert webhook_topic_enum(topic) == enum


class TestQueryCost:
    def test_parses_extensions_cost(self) -> None:
        parsed = parse_query_cost({"extensions": {"cost": cost(752, 152, 100.0)}})
        assert parsed == QueryCost(752.0, None, ThrottleStatus(2000.0, 152.0, 100.0))

    @pytest.mark.parametrize("body", [{}, {"extensions": {}}, {"extensions": {"cost": "x"}}])
    def test_absent_cost_is_none(self, body: dict[str, Any]) -> None:
        assert parse_query_cost(body) is None

    def test_throttle_wait_is_the_deficit_over_the_restore_rate(self) -> None:
        assert throttle_wait_seconds(parse_query_cost({"extensions": {"cost": cost(1000, 0, 50.0)}})) == 20.0

    def test_throttle_wait_is_at_least_one_second(self) -> None:
        assert throttle_wait_seconds(parse_query_cost({"extensions": {"cost": cost(10, 500, 100.0)}})) == 1.0
        assert throttle_wait_seconds(None) == 1.0
