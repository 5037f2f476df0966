"""``/api/deliveries`` and ``POST /api/deliveries/{id}/replay`` (docs/api.md), on SQLite and PostgreSQL.

Rows are put in the inbox with :mod:`service.domain.inbox` directly (intake has its own tests),
and API keys are made with :func:`service.domain.api_keys.create_api_key` in a committed
transaction, as ``tierline api-key create`` does.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.app import create_app
from service.domain import inbox
from service.domain.api_keys import create_api_key
from service.domain.inbox import deliveries
from service.domain.shops import get_or_create_shop_id
from service.models import Shop, WebhookDelivery
from tests.conftest import make_settings
from tests.support.payloads import API_KEY, API_SECRET, OTHER_SHOP, PREVIOUS_SECRET, SHOP

pytestmark = [
    pytest.mark.anyio,
    # The test secrets are short on purpose; PyJWT warns about HMAC keys under 32 bytes.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

URL = "/api/deliveries"
PROBLEM_JSON = "application/problem+json"
FIELDS = {
    "id",
    "webhookId",
    "eventId",
    "topic",
    "shopDomain",
    "status",
    "attempts",
    "lastError",
    "receivedAt",
    "processedAt",
}

Session = async_sessionmaker[AsyncSession]
Client = AsyncTestClient[Litestar]


async def add_delivery(
    sessionmaker: Session,
    shop: str = SHOP,
    *,
    topic: str = "orders/create",
    status: str = "pending",
    error: str | None = None,
) -> int:
    """Store one delivery (and settle it when ``status`` is not pending); returns its id."""
    webhook_id = str(uuid.uuid4())
    async with sessionmaker() as session, session.begin():
        shop_id = await get_or_create_shop_id(session, shop)
        created = await inbox.store_delivery(
            session,
            inbox.NewDelivery(
                webhook_id=webhook_id,
                event_id=f"event-{webhook_id}",
                topic=topic,
                shop_id=shop_id,
                shop_domain=shop,
                api_version="2026-04",
                triggered_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
                body=b"{}",
            ),
        )
        assert created
        delivery_id = await session.scalar(
            sa.select(deliveries.c.id).where(deliveries.c.webhook_id == webhook_id)
        )
        assert delivery_id is not None
        if status != "pending":
            await inbox.settle(session, [delivery_id], status, error)
    return int(delivery_id)


async def new_api_key(sessionmaker: Session, shop: str = SHOP) -> str:
    async with sessionmaker() as session, session.begin():
        return await create_api_key(session, shop)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session_token(
    *,
    shop: str = SHOP,
    secret: str = API_SECRET,
    algorithm: str = "HS256",
    expires_in: float = 60,
    **overrides: Any,
) -> str:
    """An App Bridge session token as Shopify issues it."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": API_KEY,
        "sub": "42",
        "exp": now + int(expires_in),
        "nbf": now - 5,
        "iat": now - 5,
        "jti": str(uuid.uuid4()),
        "sid": "session-1",
    }
    claims.update(overrides)
    if algorithm == "none":
        return jwt.encode(claims, "", algorithm="none")
    return jwt.encode(claims, secret, algorithm=algorithm)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["detail"]
    return problem


async def all_pages(client: Client, key: str, query: str = "") -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params = query + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"{URL}?{params}", headers=bearer(key))
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not end"


class TestAuthentication:
    async def test_without_authorization_is_401(self, client: Client, sessionmaker: Session) -> None:
        await add_delivery(sessionmaker)
        response = await client.get(URL)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].lower().startswith("bearer")

    async def test_unknown_api_key_is_401(self, client: Client, sessionmaker: Session) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.get(URL, headers=bearer(key[:-1] + ("A" if key[-1] != "A" else "B")))
        assert_problem(response, 401)

    @pytest.mark.parametrize(
        "authorization",
        ["Bearer", "Bearer ", "Basic {key}", "Token {key}", "{key}", "Bearer{key}", "Bearer a.b.c"],
    )
    async def test_malformed_authorization_is_401(
        self, client: Client, sessionmaker: Session, authorization: str
    ) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.get(URL, headers={"Authorization": authorization.format(key=key)})
        assert_problem(response, 401)

    async def test_api_key_is_accepted(self, client: Client, sessionmaker: Session) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.get(URL, headers=bearer(key))
        assert response.status_code == 200
        assert response.json() == {"items": [], "nextCursor": None}

    async def test_replay_requires_credentials(self, client: Client, sessionmaker: Session) -> None:
        delivery_id = await add_delivery(sessionmaker, status="failed", error="boom")
        assert_problem(await client.post(f"{URL}/{delivery_id}/replay"), 401)
        assert_problem(await client.post(f"{URL}/{delivery_id}/replay", headers=bearer("tl_nope")), 401)
        async with sessionmaker() as session:
            assert (
                await session.scalar(sa.select(deliveries.c.status).where(deliveries.c.id == delivery_id))
                == "failed"
            )

    async def test_uninstalled_shop_key_is_401(self, client: Client, sessionmaker: Session) -> None:
        key = await new_api_key(sessionmaker)
        assert (await client.get(URL, headers=bearer(key))).status_code == 200
        async with sessionmaker() as session, session.begin():
            await session.execute(
                sa.update(Shop).where(Shop.domain == SHOP).values(uninstalled_at=datetime.now(UTC))  # type: ignore[arg-type]
            )

        assert_problem(await client.get(URL, headers=bearer(key)), 401)
        assert_problem(await client.get(URL, headers=bearer(session_token())), 401)

    async def test_revoked_key_is_401(self, client: Client, sessionmaker: Session) -> None:
        key = await new_api_key(sessionmaker)
        async with sessionmaker() as session, session.begin():
            await session.execute(sa.text("UPDATE api_keys SET revoked_at = created_at"))
        assert_problem(await client.get(URL, headers=bearer(key)), 401)


class TestSessionToken:
    async def test_valid_session_token_is_accepted(self, client: Client, sessionmaker: Session) -> None:
        delivery_id = await add_delivery(sessionmaker)
        await add_delivery(sessionmaker, OTHER_SHOP)

        response = await client.get(URL, headers=bearer(session_token()))

        assert response.status_code == 200, response.text
        assert [item["id"] for item in response.json()["items"]] == [str(delivery_id)]

    async def test_token_for_a_shop_never_seen_sees_an_empty_shop(
        self, client: Client, sessionmaker: Session
    ) -> None:
        await add_delivery(sessionmaker)
        response = await client.get(URL, headers=bearer(session_token(shop="brand-new.myshopify.com")))
        assert response.status_code == 200
        assert response.json() == {"items": [], "nextCursor": None}

    async def test_previous_secret_is_accepted_while_configured(
        self, database_url: str, sessionmaker: Session
    ) -> None:
        token = session_token(secret=PREVIOUS_SECRET)
        settings = make_settings(database_url, SHOPIFY_API_SECRET_PREVIOUS=PREVIOUS_SECRET)
        async with AsyncTestClient(app=create_app(settings)) as rotating:
            assert (await rotating.get(URL, headers=bearer(token))).status_code == 200

    @pytest.mark.parametrize(
        "token_kwargs",
        [
            {"algorithm": "none"},
            {"expires_in": -60},
            {"nbf": int(time.time()) + 3600},
            {"secret": "another-app-secret"},
            {"secret": PREVIOUS_SECRET},
            {"aud": "another-api-key"},
            {"dest": "https://evil.com"},
            {"iss": "https://other-test.myshopify.com/admin"},
            {"algorithm": "HS512"},
        ],
        ids=[
            "alg-none",
            "expired",
            "not-yet-valid",
            "wrong-secret",
            "previous-secret-not-configured",
            "wrong-audience",
            "dest-not-a-shop",
            "iss-other-shop",
            "hs512",
        ],
    )
    async def test_invalid_session_token_is_401(
        self, client: Client, sessionmaker: Session, token_kwargs: dict[str, Any]
    ) -> None:
        await add_delivery(sessionmaker)
        response = await client.get(URL, headers=bearer(session_token(**token_kwargs)))
        assert_problem(response, 401)

    async def test_expiry_within_the_leeway_is_accepted(self, client: Client) -> None:
        response = await client.get(URL, headers=bearer(session_token(expires_in=-3)))
        assert response.status_code == 200


class TestListDeliveries:
    async def test_only_this_shops_deliveries_newest_first(
        self, client: Client, sessionmaker: Session
    ) -> None:
        mine = [await add_delivery(sessionmaker, topic=f"orders/t{i}") for i in range(3)]
        await add_delivery(sessionmaker, OTHER_SHOP)
        key = await new_api_key(sessionmaker)

        response = await client.get(URL, headers=bearer(key))

        assert response.status_code == 200
        body = response.json()
        assert body["nextCursor"] is None
        assert [item["id"] for item in body["items"]] == [str(i) for i in reversed(mine)]
        assert {item["shopDomain"] for item in body["items"]} == {SHOP}

    async def test_other_shop_sees_only_its_own(self, client: Client, sessionmaker: Session) -> None:
        await add_delivery(sessionmaker)
        theirs = await add_delivery(sessionmaker, OTHER_SHOP)
        key = await new_api_key(sessionmaker, OTHER_SHOP)

        items = (await client.get(URL, headers=bearer(key))).json()["items"]

        assert [item["id"] for item in items] == [str(theirs)]

    async def test_fields_are_camel_case_with_string_ids_and_utc_times(
        self, client: Client, sessionmaker: Session
    ) -> None:
        pending = await add_delivery(sessionmaker, topic="customers/create")
        failed = await add_delivery(sessionmaker, topic="orders/create", status="failed", error="bad payload")
        key = await new_api_key(sessionmaker)

        items = (await client.get(URL, headers=bearer(key))).json()["items"]

        assert [set(item) for item in items] == [FIELDS, FIELDS]
        newest, oldest = items
        async with sessionmaker() as session:
            webhook_id = await session.scalar(
                sa.select(deliveries.c.webhook_id).where(deliveries.c.id == failed)
            )
        assert newest["id"] == str(failed)
        assert newest["webhookId"] == webhook_id
        assert newest["eventId"] == f"event-{webhook_id}"
        assert (newest["topic"], newest["shopDomain"], newest["status"]) == ("orders/create", SHOP, "failed")
        assert (newest["attempts"], newest["lastError"]) == (0, "bad payload")
        assert isinstance(newest["processedAt"], str)
        assert newest["processedAt"].endswith("Z")
        assert oldest["id"] == str(pending)
        assert (oldest["status"], oldest["processedAt"], oldest["lastError"]) == ("pending", None, None)
        for item in items:
            assert item["receivedAt"].endswith("Z")
            received = datetime.fromisoformat(item["receivedAt"].replace("Z", "+00:00"))
            assert abs(datetime.now(UTC) - received) < timedelta(minutes=5)

    async def test_status_filter(self, client: Client, sessionmaker: Session) -> None:
        failed = await add_delivery(sessionmaker, status="failed", error="x")
        await add_delivery(sessionmaker)
        dead = await add_delivery(sessionmaker, status="dead", error="y")
        await add_delivery(sessionmaker, OTHER_SHOP, status="failed", error="z")
        key = await new_api_key(sessionmaker)

        failed_items = (await client.get(f"{URL}?status=failed", headers=bearer(key))).json()["items"]
        dead_items = (await client.get(f"{URL}?status=dead", headers=bearer(key))).json()["items"]
        every = (await client.get(URL, headers=bearer(key))).json()["items"]

        assert [item["id"] for item in failed_items] == [str(failed)]
        assert [item["id"] for item in dead_items] == [str(dead)]
        assert len(every) == 3

    async def test_topic_filter(self, client: Client, sessionmaker: Session) -> None:
        wanted = [await add_delivery(sessionmaker, topic="refunds/create") for _ in range(2)]
        await add_delivery(sessionmaker, topic="orders/create")
        await add_delivery(sessionmaker, OTHER_SHOP, topic="refunds/create")
        key = await new_api_key(sessionmaker)

        items = (await client.get(f"{URL}?topic=refunds/create", headers=bearer(key))).json()["items"]

        assert [item["id"] for item in items] == [str(i) for i in reversed(wanted)]

    async def test_pagination_in_pages_of_two(self, client: Client, sessionmaker: Session) -> None:
        ids = [await add_delivery(sessionmaker) for _ in range(5)]
        await add_delivery(sessionmaker, OTHER_SHOP)
        key = await new_api_key(sessionmaker)

        pages = await all_pages(client, key, "limit=2")

        assert [len(page) for page in pages] == [2, 2, 1]
        assert [item["id"] for page in pages for item in page] == [str(i) for i in reversed(ids)]

    async def test_pagination_keeps_the_filters(self, client: Client, sessionmaker: Session) -> None:
        failed = []
        for _ in range(3):
            failed.append(await add_delivery(sessionmaker, status="failed", error="x"))
            await add_delivery(sessionmaker)
        key = await new_api_key(sessionmaker)

        pages = await all_pages(client, key, "status=failed&limit=2")

        assert [item["id"] for page in pages for item in page] == [str(i) for i in reversed(failed)]

    async def test_exact_multiple_of_the_limit_ends_with_null_cursor(
        self, client: Client, sessionmaker: Session
    ) -> None:
        for _ in range(4):
            await add_delivery(sessionmaker)
        key = await new_api_key(sessionmaker)

        pages = await all_pages(client, key, "limit=2")

        assert [len(page) for page in pages] == [2, 2]

    async def test_cursor_made_for_another_filter_is_400(self, client: Client, sessionmaker: Session) -> None:
        for _ in range(3):
            await add_delivery(sessionmaker, status="failed", error="x")
        key = await new_api_key(sessionmaker)
        first = (await client.get(f"{URL}?status=failed&limit=1", headers=bearer(key))).json()
        cursor = first["nextCursor"]
        assert cursor is not None

        for query in ("status=dead", "", "topic=orders/create&status=failed"):
            response = await client.get(f"{URL}?{query}&limit=1&cursor={cursor}", headers=bearer(key))
            assert_problem(response, 400)
        same = await client.get(f"{URL}?status=failed&limit=1&cursor={cursor}", headers=bearer(key))
        assert same.status_code == 200

    @pytest.mark.parametrize(
        "cursor",
        [
            "garbage",
            "!!!!",
            base64.urlsafe_b64encode(b"[1, 2]").decode(),
            base64.urlsafe_b64encode(json.dumps({"k": "deliveries", "f": {}, "p": ["x"]}).encode()).decode(),
            base64.urlsafe_b64encode(
                json.dumps({"k": "deliveries", "f": {"status": None, "topic": None}, "p": ["1"]}).encode()
            ).decode(),
            base64.urlsafe_b64encode(
                json.dumps({"k": "deliveries", "f": {"status": None, "topic": None}, "p": [True]}).encode()
            ).decode(),
            base64.urlsafe_b64encode(
                json.dumps({"k": "deliveries", "f": {"status": None, "topic": None}, "p": []}).encode()
            ).decode(),
            base64.urlsafe_b64encode(
                json.dumps({"k": "customers", "f": {"status": None, "topic": None}, "p": [5]}).encode()
            ).decode(),
        ],
        ids=[
            "garbage",
            "not-base64",
            "json-list",
            "filters-missing",
            "string-position",
            "bool-position",
            "empty-position",
            "other-kind",
        ],
    )
    async def test_malformed_cursor_is_400(self, client: Client, sessionmaker: Session, cursor: str) -> None:
        await add_delivery(sessionmaker)
        key = await new_api_key(sessionmaker)
        response = await client.get(URL, params={"cursor": cursor}, headers=bearer(key))
        assert_problem(response, 400)

    @pytest.mark.parametrize(
        "query",
        [
            "limit=0",
            "limit=251",
            "limit=-1",
            "limit=abc",
            "status=bogus",
            "status=PENDING",
            f"topic={'t' * 256}",
        ],
    )
    async def test_invalid_parameters_are_4xx_never_500(
        self, client: Client, sessionmaker: Session, query: str
    ) -> None:
        key = await new_api_key(sessionmaker)
        response = await client.get(f"{URL}?{query}", headers=bearer(key))
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"].startswith(PROBLEM_JSON)

    async def test_limit_250_is_allowed(self, client: Client, sessionmaker: Session) -> None:
        await add_delivery(sessionmaker)
        key = await new_api_key(sessionmaker)
        response = await client.get(f"{URL}?limit=250", headers=bearer(key))
        assert response.status_code == 200
        assert len(response.json()["items"]) == 1

    @pytest.mark.parametrize("topic", ["' OR 1=1 --", "orders/create'; DROP TABLE webhook_deliveries; --"])
    async def test_sql_looking_topic_matches_nothing(
        self, client: Client, sessionmaker: Session, topic: str
    ) -> None:
        await add_delivery(sessionmaker)
        key = await new_api_key(sessionmaker)

        response = await client.get(URL, params={"topic": topic}, headers=bearer(key))

        assert response.status_code == 200
        assert response.json() == {"items": [], "nextCursor": None}
        assert len((await client.get(URL, headers=bearer(key))).json()["items"]) == 1


class TestReplay:
    async def test_failed_delivery_goes_back_to_pending(self, client: Client, sessionmaker: Session) -> None:
        delivery_id = await add_delivery(sessionmaker, status="failed", error="ValueError: bad")
        async with sessionmaker() as session, session.begin():
            await session.execute(
                sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(attempts=3)  # type: ignore[arg-type]
            )
        key = await new_api_key(sessionmaker)

        response = await client.post(f"{URL}/{delivery_id}/replay", headers=bearer(key))

        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == FIELDS
        assert (body["id"], body["status"], body["attempts"]) == (str(delivery_id), "pending", 0)
        assert (body["lastError"], body["processedAt"]) == (None, None)
        async with sessionmaker() as session:
            row = (
                await session.execute(sa.select(WebhookDelivery).where(WebhookDelivery.id == delivery_id))  # type: ignore[arg-type]
            ).scalar_one()
        assert (row.status, row.attempts, row.last_error, row.processed_at) == ("pending", 0, None, None)
        assert row.next_attempt_at <= datetime.now(UTC)

    async def test_another_shops_delivery_is_404_and_unchanged(
        self, client: Client, sessionmaker: Session
    ) -> None:
        theirs = await add_delivery(sessionmaker, OTHER_SHOP, status="failed", error="x")
        key = await new_api_key(sessionmaker)

        response = await client.post(f"{URL}/{theirs}/replay", headers=bearer(key))

        assert_problem(response, 404)
        async with sessionmaker() as session:
            status = await session.scalar(sa.select(deliveries.c.status).where(deliveries.c.id == theirs))
        assert status == "failed"

    @pytest.mark.parametrize(
        "delivery_id",
        ["abc", "99999999", "9" * 18, "9" * 19, "9" * 40, "-1", "1.5", "%20", "%C2%B2", "gid"],
    )
    async def test_unknown_or_malformed_id_is_404(
        self, client: Client, sessionmaker: Session, delivery_id: str
    ) -> None:
        await add_delivery(sessionmaker, status="failed", error="x")
        key = await new_api_key(sessionmaker)
        response = await client.post(f"{URL}/{delivery_id}/replay", headers=bearer(key))
        assert_problem(response, 404)
