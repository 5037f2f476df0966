"""``service.api.stats_path``: ``POST /api/stats/customers`` answered in front of Litestar's routing
gives the same answer as the route, byte for byte, on SQLite and PostgreSQL.

Every request below goes to two apps over the same database: one as ``tierline serve`` runs it,
one built with ``fast_paths=False`` (every request through the route). Status, body and headers
must be equal, for the requests the path answers itself (plain digit-string ids with an API key)
and for those it hands to the route (other id forms, bad ids, bad JSON, other credentials,
oversize or chunked bodies). A wrapper around each app records whether Litestar's router saw the
request, so each case also proves which way it went. Sixty bodies drawn from a seeded generator
(ids in every form, valid or not, under either member name) go to both as well.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.types import Receive, Scope, Send
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.config import Settings
from service.db import session_scope
from service.domain.api_keys import list_api_keys, revoke_api_key
from service.runtime import Runtime
from tests.support import deliveries as helpers
from tests.support.api import bearer, new_api_key
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import OTHER_SHOP, SHOP, customer_payload, next_id, order_payload

pytestmark = pytest.mark.anyio

PATH = "/api/stats/customers"
MAX_ID = 2**63 - 1


@dataclass
class Routed:
    """Whether Litestar's router handled the last request of an app: it puts the matched route
    handler in the request's scope, which the plain path never reaches."""

    by_route: bool = False


def watched(app: Litestar) -> Routed:
    routed = Routed()
    inner = app.asgi_handler

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await inner(scope, receive, send)
        finally:
            routed.by_route = "route_handler" in scope

    app.asgi_handler = handler
    return routed


@dataclass
class Pair:
    fast: AsyncTestClient[Litestar]
    route: AsyncTestClient[Litestar]
    fast_routed: Routed
    route_routed: Routed
    fast_app: Litestar
    route_app: Litestar


@pytest.fixture
async def pair(settings: Settings) -> AsyncIterator[Pair]:
    fast_app = create_app(settings, run_worker=False)
    route_app = create_app(settings, run_worker=False, fast_paths=False)
    fast_routed, route_routed = watched(fast_app), watched(route_app)
    async with (
        AsyncTestClient(app=fast_app, base_url="http://testserver.local") as fast,
        AsyncTestClient(app=route_app, base_url="http://testserver.local") as route,
    ):
        yield Pair(fast, route, fast_routed, route_routed, fast_app, route_app)


@pytest.fixture
async def customers(sessionmaker: Sessionmaker, settings: Settings) -> list[int]:
    """Three customers of SHOP with orders (one with a 64-bit id, one with a half-cent LTV), and
    one of OTHER_SHOP."""
    ids = [next_id(), next_id(), MAX_ID - 11]
    deliveries: list[Delivery] = []
    for customer, totals in zip(ids, (("1234.565",), ("10.10", "0.005"), ("999999.99", "1")), strict=True):
        deliveries.append(Delivery.of("customers/create", customer_payload(customer)))
        deliveries += [
            Delivery.of("orders/create", order_payload(next_id(), customer_id=customer, total=total))
            for total in totals
        ]
    await helpers.apply(sessionmaker, settings, deliveries)
    other = next_id()
    await helpers.apply(
        sessionmaker,
        settings,
        [Delivery.of("orders/create", order_payload(next_id(), customer_id=other, total="50.00"))],
        shop=OTHER_SHOP,
    )
    return [*ids, other]


async def asgi_post(
    app: Litestar, headers: list[tuple[bytes, bytes]], chunks: list[bytes], *, stall: bool = False
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """``POST /api/stats/customers`` straight to the app, its body in these chunks (with
    ``stall``, the last one says more follows, and nothing does): status, body and headers."""
    pending = list(chunks)
    answered = asyncio.Event()
    status, body = 0, b""
    answer_headers: list[tuple[bytes, bytes]] = []

    async def receive() -> Any:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or stall}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        nonlocal status, body, answer_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            answer_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")
            if not message.get("more_body", False):
                answered.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver.local", 80),
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    return status, body, answer_headers


async def both(
    pair: Pair, *, headers: dict[str, str], content: bytes | None = None, json: Any = None
) -> tuple[Any, bool]:
    """Send one request to both apps; assert they answer alike; return the fast app's answer and
    whether its route answered it."""
    pair.fast_routed.by_route = pair.route_routed.by_route = False
    kwargs: dict[str, Any] = {"headers": headers}
    if content is not None:
        kwargs["content"] = content
    else:
        kwargs["json"] = json
    fast = await pair.fast.post(PATH, **kwargs)
    route = await pair.route.post(PATH, **kwargs)
    assert pair.route_routed.by_route  # the comparison app has no plain path
    assert (fast.status_code, fast.content) == (route.status_code, route.content)
    assert sorted(fast.headers.multi_items()) == sorted(route.headers.multi_items())
    return fast, pair.fast_routed.by_route


async def test_plain_ids_with_an_api_key_are_answered_in_front_of_the_route(
    pair: Pair, customers: list[int], sessionmaker: Sessionmaker
) -> None:
    key = bearer(await new_api_key(sessionmaker))
    unknown = next_id()
    asked = [str(customers[2]), str(unknown), str(customers[0]), str(customers[1]), str(customers[0])]

    for member in ("customerIds", "customer_ids"):
        answer, by_route = await both(pair, headers=key, json={member: asked})
        assert not by_route
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["cache-control"] == "no-store"
        figures = answer.json()["stats"]
        assert list(figures) == sorted({str(c) for c in (unknown, *customers[:3])}, key=int)
        assert figures[str(customers[0])] == {
            "ltv": "1234.57",
            "orderCount": 1,
            "rtoCount": 0,
            "tier": "bronze",
        }
        assert figures[str(customers[1])]["ltv"] == "10.11"  # 10.105 rounded half up
        assert figures[str(customers[2])] == {
            "ltv": "1000000.99",
            "orderCount": 2,
            "rtoCount": 0,
            "tier": "platinum",
        }
        assert figures[str(unknown)] == {"ltv": "0.00", "orderCount": 0, "rtoCount": 0, "tier": "bronze"}

    # Another shop's customer is unknown to this shop's key: zeros, not its figures.
    answer, by_route = await both(pair, headers=key, json={"customerIds": [str(customers[3])]})
    assert not by_route
    assert answer.json()["stats"][str(customers[3])]["orderCount"] == 0

    for ids in ([], [str(next_id()) for _ in range(1000)]):
        answer, by_route = await both(pair, headers=key, json={"customerIds": ids})
        assert (answer.status_code, by_route) == (200, False)
        assert len(answer.json()["stats"]) == len(ids)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"customerIds": [1, 2]}, id="numbers"),
        pytest.param({"customerIds": ["gid://shopify/Customer/7"]}, id="gid"),
        pytest.param({"customerIds": ["12", 13]}, id="mixed"),
        pytest.param({"customerIds": ["12"], "note": "x"}, id="another-member"),
        pytest.param({"customerIds": [str(MAX_ID)]}, id="largest-id"),
    ],
)
async def test_other_valid_bodies_are_left_to_the_route(
    pair: Pair, customers: list[int], sessionmaker: Sessionmaker, body: dict[str, Any]
) -> None:
    key = bearer(await new_api_key(sessionmaker))
    answer, by_route = await both(pair, headers=key, json=body)
    assert answer.status_code == 200, answer.text
    # The largest id is plain digits in range: the path answers it; the others go to the route.
    assert by_route is (body != {"customerIds": [str(MAX_ID)]})


@pytest.mark.parametrize(
    ("content", "status"),
    [
        pytest.param(b'{"customerIds": ["1"', 400, id="truncated-json"),
        pytest.param(b"not json", 400, id="not-json"),
        pytest.param(b"", 400, id="empty"),
        pytest.param(b'["1"]', 422, id="array"),
        pytest.param(b"null", 422, id="null"),
        pytest.param(b"{}", 422, id="no-ids"),
        pytest.param(b'{"customerIds": "1"}', 422, id="ids-not-a-list"),
        pytest.param(b'{"customerIds": ["abc"]}', 422, id="letters"),
        pytest.param(b'{"customerIds": ["0"]}', 422, id="zero"),
        pytest.param(b'{"customerIds": ["-1"]}', 422, id="negative"),
        pytest.param(b'{"customerIds": [" 12"]}', 200, id="space"),
        pytest.param(f'{{"customerIds": ["{MAX_ID + 1}"]}}'.encode(), 422, id="beyond-64-bits"),
        pytest.param('{"customerIds": ["\uff11\uff12"]}'.encode(), 422, id="full-width-digits"),
        pytest.param(b'{"customerIds": [true]}', 422, id="boolean"),
        pytest.param(b'{"customerIds": ["1; DROP TABLE customer_stats"]}', 422, id="sql"),
        pytest.param(b'{"customerIds": [' + b",".join([b'"1"'] * 1001) + b"]}", 422, id="more-than-1000"),
    ],
)
async def test_bad_bodies_get_the_routes_own_refusal(
    pair: Pair, sessionmaker: Sessionmaker, content: bytes, status: int
) -> None:
    key = bearer(await new_api_key(sessionmaker))
    answer, by_route = await both(pair, headers=key | {"Content-Type": "application/json"}, content=content)
    assert answer.status_code == status, answer.text
    assert by_route


async def test_credentials_other_than_a_live_key_get_the_routes_401(
    pair: Pair, customers: list[int], sessionmaker: Sessionmaker
) -> None:
    body = {"customerIds": [str(customers[0])]}
    revoked = await new_api_key(sessionmaker)
    async with session_scope(sessionmaker) as session:
        (info,) = [k for k in await list_api_keys(session, SHOP) if revoked.startswith(k.prefix)]
        assert await revoke_api_key(session, info.id)
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer tl_unknown"},
        {"Authorization": "Bearer tl_' OR 1=1 --"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Bearer a.b.c"},  # a session token, and a forged one
        bearer(revoked),
    ):
        answer, by_route = await both(pair, headers=headers, json=body)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert by_route


async def test_a_repeated_authorization_header_is_read_as_the_route_reads_it(
    pair: Pair, customers: list[int], sessionmaker: Sessionmaker
) -> None:
    key = await new_api_key(sessionmaker)
    body = {"customerIds": [str(customers[0])]}
    content = msgspec.json.encode(body)
    for first, second in ((key, "tl_unknown"), ("tl_unknown", key)):
        # Raw ASGI: the test client would join the two headers into one.
        headers = [
            (b"authorization", f"Bearer {first}".encode()),
            (b"authorization", f"Bearer {second}".encode()),
            (b"content-length", str(len(content)).encode()),
        ]
        fast = pair.fast.blocking_portal.call(asgi_post, pair.fast_app, headers, [content])
        route = pair.route.blocking_portal.call(asgi_post, pair.route_app, headers, [content])
        assert (fast[0], fast[1], sorted(fast[2])) == (route[0], route[1], sorted(route[2]))
        assert fast[0] == (200 if first == key else 401)


async def test_bodies_without_a_length_or_over_the_limit_go_to_the_route(
    pair: Pair, customers: list[int], sessionmaker: Sessionmaker, settings: Settings
) -> None:
    key = bearer(await new_api_key(sessionmaker))
    body = msgspec.json.encode({"customerIds": [str(customers[0])]})

    # The test client always sends a Content-Length: the request goes to the app as ASGI,
    # its body in two chunks and no length, as a chunked upload arrives.
    def chunked(app: Litestar) -> tuple[int, bytes]:
        headers = [(b"authorization", key["Authorization"].encode()), (b"content-type", b"application/json")]
        status, content, _ = pair.fast.blocking_portal.call(asgi_post, app, headers, [body[:5], body[5:]])
        return status, content

    pair.fast_routed.by_route = False
    assert chunked(pair.fast_app) == (200, (await pair.route.post(PATH, content=body, headers=key)).content)
    assert pair.fast_routed.by_route

    huge = b'{"customerIds": ["1"], "pad": "' + b"x" * settings.max_body + b'"}'
    answer, by_route = await both(pair, headers=key, content=huge)
    assert (answer.status_code, by_route) == (413, True)


async def test_a_body_that_does_not_arrive_in_time_is_the_same_408(
    sessionmaker: Sessionmaker, settings: Settings
) -> None:
    """The request limits' deadline fails the body's read in the path as in the route."""
    slow = settings.model_copy(update={"body_timeout_seconds": 0.2})
    key = await new_api_key(sessionmaker)
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"content-length", b"40")]
    answers = []
    routed = []
    for fast_paths in (True, False):
        app = create_app(slow, run_worker=False, fast_paths=fast_paths)
        routed.append(watched(app))
        async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
            post = functools.partial(asgi_post, stall=True)
            answers.append(client.blocking_portal.call(post, app, headers, [b'{"customerIds": ["1"']))
    fast, route = answers
    assert [r.by_route for r in routed] == [False, True]
    assert fast[0] == 408
    assert (b"connection", b"close") in fast[2]
    assert (fast[0], fast[1], sorted(fast[2])) == (route[0], route[1], sorted(route[2]))


async def test_a_request_answered_in_front_records_the_keys_use(
    pair: Pair, customers: list[int], sessionmaker: Sessionmaker
) -> None:
    key = await new_api_key(sessionmaker)
    answer, by_route = await both(pair, headers=bearer(key), json={"customerIds": [str(customers[0])]})
    assert (answer.status_code, by_route) == (200, False)
    runtime: Runtime = pair.fast_app.state.runtime
    for _ in range(500):
        if not runtime.background:
            break
        await asyncio.sleep(0.01)
    async with session_scope(sessionmaker) as session:
        (info,) = [k for k in await list_api_keys(session, SHOP) if key.startswith(k.prefix)]
    assert info.last_used_at is not None


async def test_no_connection_to_be_had_is_the_same_503(
    engine: AsyncEngine, sessionmaker: Sessionmaker, settings: Settings
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite reads through a session, without a pool to exhaust")
    narrow = settings.model_copy(update={"db_pool_size": 1, "intake_timeout_seconds": 0.2})
    key = bearer(await new_api_key(sessionmaker))
    answers = []
    for fast_paths in (True, False):
        app = create_app(narrow, run_worker=False, fast_paths=fast_paths)
        async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
            pool = app.state.runtime.reads.pool
            async with pool.connection():  # a slow request holds the only connection
                answers.append(await client.post(PATH, json={"customerIds": ["1"]}, headers=key))
    fast, route = answers
    assert fast.status_code == 503
    assert fast.headers["retry-after"] == "5"
    assert (fast.content, sorted(fast.headers.multi_items())) == (
        route.content,
        sorted(route.headers.multi_items()),
    )


async def test_the_request_metrics_label_the_route(pair: Pair, sessionmaker: Sessionmaker) -> None:
    key = bearer(await new_api_key(sessionmaker))
    labels = {"method": "POST", "route": PATH, "status": "2xx"}
    name = "tierline_http_request_duration_seconds_count"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    fast = await pair.fast.post(PATH, json={"customerIds": ["5"]}, headers=key)
    assert fast.status_code == 200
    assert not pair.fast_routed.by_route
    assert REGISTRY.get_sample_value(name, labels) == before + 1


def random_bodies(seed: int, count: int) -> list[dict[str, Any]]:
    """Bodies drawn from a seeded generator: ids in every form, valid or not, under either
    member name (a fixed seed, so a failure names its body and happens again)."""
    rng = random.Random(seed)

    def id_text() -> str:
        choice = rng.randrange(4)
        if choice == 0:
            return str(rng.randint(1, MAX_ID))
        if choice == 1:
            return str(rng.randint(-5, 2**64))
        if choice == 2:  # ASCII and full-width digits, spaces, signs, points
            return "".join(rng.choice("0123456789\uff10\uff19 +.-") for _ in range(rng.randint(0, 21)))
        return f"gid://shopify/Customer/{rng.randint(1, 10**6)}"

    def any_value() -> Any:
        return rng.choice(
            [rng.randint(-5, 2**64), rng.random() < 0.5, None, rng.uniform(-1e6, 1e6), id_text()]
        )

    bodies: list[dict[str, Any]] = []
    for _ in range(count):
        kind = rng.randrange(3)
        if kind == 0:
            bodies.append({"customerIds": [id_text() for _ in range(rng.randint(0, 8))]})
        elif kind == 1:
            bodies.append({"customerIds": [any_value() for _ in range(rng.randint(0, 4))]})
        else:
            names = rng.sample(["customerIds", "customer_ids", "ids"], rng.randint(0, 2))
            bodies.append({name: [id_text() for _ in range(rng.randint(0, 3))] for name in names})
    return bodies


async def test_random_bodies_get_the_same_answer_from_both(pair: Pair, sessionmaker: Sessionmaker) -> None:
    key = bearer(await new_api_key(sessionmaker))
    for body in random_bodies(seed=18, count=60):
        answer, _ = await both(pair, headers=key, json=body)
        assert answer.status_code in (200, 422), (body, answer.text)
