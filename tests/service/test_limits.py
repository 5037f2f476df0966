"""The request limits around the whole application (``service.limits``), in process.

The same limits are exercised against a real ``tierline serve`` with slow sockets in
``test_client_limits.py``; here each rule is checked through the ASGI interface, where the body
can be fed in pieces: the body budget (503 with ``Retry-After``, never 200, nothing stored),
``Connection: close`` on unread bodies, ``Cache-Control: no-store`` on ``/api``, and the bounded
list of errors of ``PUT /api/settings``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import Settings
from service.errors import MAX_ERRORS
from service.limits import BodyBudget, request_limits
from tests.conftest import make_settings
from tests.support import deliveries as helpers
from tests.support.api import bearer, new_api_key
from tests.support.deliveries import Sessionmaker
from tests.support.payloads import customer_payload, next_id, signed_webhook

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
BUDGET = 256 * 1024


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, TIERLINE_BODY_BUDGET=str(BUDGET), TIERLINE_MAX_BODY=str(128 * 1024))


async def stored_deliveries(sessionmaker: Sessionmaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(helpers.DELIVERIES)) or 0)


class TestCacheControl:
    async def test_every_api_answer_is_no_store(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        answers = [
            await client.get("/api/settings", headers=bearer(key)),  # 200
            await client.get("/api/settings"),  # 401
            await client.get("/api/customers/123", headers=bearer(key)),  # 404
            await client.get("/api/nothing-here", headers=bearer(key)),  # no route
            await client.put("/api/settings", headers=bearer(key), content=b"{"),  # 400
        ]
        assert [a.status_code for a in answers] == [200, 401, 404, 404, 400]
        assert [a.headers.get("cache-control") for a in answers] == ["no-store"] * len(answers)

    async def test_other_answers_keep_their_own_caching(self, client: Client) -> None:
        static = await client.get("/app/static/app.css")
        assert static.headers["cache-control"] == "max-age=300"


class TestSettingsErrors:
    async def test_many_unknown_keys_get_a_bounded_list_of_errors(
        self, client: Client, sessionmaker: Sessionmaker
    ) -> None:
        key = await new_api_key(sessionmaker)
        document = {"long-" + "x" * 5000: 0} | {f"unknown-{i}": i for i in range(1999)}

        response = await client.put("/api/settings", headers=bearer(key), json=document)

        assert response.status_code == 422
        errors = response.json()["errors"]
        assert len(errors) == MAX_ERRORS + 1
        assert errors[-1] == {"field": "", "message": f"{2000 - MAX_ERRORS} more errors not shown"}
        assert errors[0]["field"].startswith("long-xxx")
        assert all(len(e["field"]) <= 200 for e in errors)
        assert errors[0]["message"] == "unknown setting"
        assert len(response.content) < 10_000

    async def test_a_few_errors_are_all_listed(self, client: Client, sessionmaker: Sessionmaker) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.put("/api/settings", headers=bearer(key), json={"a": 1, "b": 2})
        assert [e["field"] for e in response.json()["errors"]] == ["a", "b"]


class TestBodyBudget:
    async def test_a_delivery_the_budget_cannot_take_is_503_with_retry_after(
        self, settings: Settings, sessionmaker: Sessionmaker
    ) -> None:
        app = create_app(settings)
        headers, body = signed_webhook("customers/create", customer_payload(next_id()))
        async with AsyncTestClient(app=app) as client:
            budget = held_budget(app)
            assert budget.take(BUDGET - len(body) + 1)  # bodies of other requests, in flight

            busy = await client.post("/webhooks/shopify", content=body, headers=headers)

            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "5"
            assert busy.headers["connection"] == "close"
            assert busy.headers["content-type"].startswith("application/problem+json")
            assert await stored_deliveries(sessionmaker) == 0
            budget.give_back(BUDGET - len(body) + 1)

            accepted = await client.post("/webhooks/shopify", content=body, headers=headers)
            assert accepted.status_code == 200
            assert budget.used == 0  # given back when the request ended
        assert await stored_deliveries(sessionmaker) == 1


def held_budget(app: Litestar) -> BodyBudget:
    budget = app.state.body_budget
    assert isinstance(budget, BodyBudget)
    return budget


# --- the wrapper alone, with the body fed in pieces --------------------------------------------


class Exchange:
    """Run one request through ``request_limits`` around a small app; collect what it sent."""

    def __init__(self, *, budget: int = 1000, body_timeout: float = 30.0, max_body: int = 800) -> None:
        self.budget = BodyBudget(budget)
        self.sent: list[dict[str, Any]] = []
        self.read: list[bytes] = []
        self.reads_body = True

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if self.reads_body:
                while True:
                    message = await receive()
                    self.read.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        self.wrapped = request_limits(app, budget=self.budget, body_timeout=body_timeout, max_body=max_body)

    async def run(self, headers: list[tuple[bytes, bytes]], chunks: list[bytes], path: str = "/x") -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for index, chunk in enumerate(chunks):
            queue.put_nowait({"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1})

        async def receive() -> dict[str, Any]:
            return await queue.get()

        async def send(message: dict[str, Any]) -> None:
            self.sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
        await self.wrapped(scope, receive, send)  # type: ignore[arg-type]

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.sent[0]["headers"]).get(name)


class TestRequestLimits:
    async def test_a_declared_length_over_the_budget_is_refused_before_reading(self) -> None:
        exchange = Exchange(budget=1000)
        assert exchange.budget.take(600)
        await exchange.run([(b"content-length", b"500")], [b"x" * 500])
        assert exchange.status == 503
        assert exchange.read == []  # not a byte was read
        assert exchange.header(b"retry-after") == b"5"
        assert exchange.header(b"connection") == b"close"
        assert exchange.budget.used == 600

    async def test_a_chunked_body_takes_its_bytes_as_they_come(self) -> None:
        exchange = Exchange(budget=1000)
        with pytest.raises(Exception, match="busy") as raised:
            await exchange.run([(b"transfer-encoding", b"chunked")], [b"x" * 400, b"y" * 400, b"z" * 400])
        assert getattr(raised.value, "status_code", None) == 503
        assert exchange.budget.used == 0  # everything taken was given back

    async def test_a_body_within_the_budget_is_read_and_given_back(self) -> None:
        exchange = Exchange(budget=1000)
        await exchange.run([(b"content-length", b"900")], [b"x" * 450, b"x" * 450])
        assert exchange.status == 200
        assert b"".join(exchange.read) == b"x" * 900
        assert exchange.header(b"connection") is None  # read whole: the connection may be kept
        assert exchange.budget.used == 0

    async def test_a_body_that_does_not_arrive_in_time_is_408(self) -> None:
        exchange = Exchange(body_timeout=0.05)
        with pytest.raises(Exception, match="did not arrive") as raised:
            await exchange.run([(b"content-length", b"500")], [])  # nothing ever comes
        assert getattr(raised.value, "status_code", None) == 408
        assert getattr(raised.value, "headers", {}).get("Connection") == "close"
        assert exchange.budget.used == 0

    async def test_an_answer_before_the_body_was_read_closes_the_connection(self) -> None:
        exchange = Exchange()
        exchange.reads_body = False
        await exchange.run([(b"content-length", b"10")], [b"0123456789"])
        assert (exchange.status, exchange.header(b"connection")) == (200, b"close")

    async def test_requests_without_a_body_are_untouched(self) -> None:
        exchange = Exchange(budget=0)
        exchange.reads_body = False
        await exchange.run([], [], path="/api/x")
        assert exchange.status == 200
        assert exchange.header(b"connection") is None
        assert exchange.header(b"cache-control") == b"no-store"

    async def test_a_length_over_the_body_limit_is_left_to_the_413(self) -> None:
        exchange = Exchange(budget=100, max_body=800)
        exchange.reads_body = False
        await exchange.run([(b"content-length", b"5000")], [])
        assert exchange.status == 200  # the app answers (tierline's answers 413 before reading)
        assert exchange.budget.used == 0


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local") as test_client:
        yield test_client
