"""Installing the app (docs/shopify-app.md): ``/auth/install``, ``/auth/callback`` and ``POST /auth/token``.

Shopify's token endpoint is faked at the HTTP boundary through the ``http_client`` that
``create_app`` accepts. Launch and callback queries are signed here independently of the code
under test: hex HMAC-SHA256 over the sorted ``key=value`` pairs (shopify-facts E.3).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import jwt
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.oauth import STATE_COOKIE
from service.app import create_app
from service.config import Settings
from service.crypto import TokenCipher, read_state, sign_state
from service.db import session_scope
from service.domain import installs
from shopify_client import AccessToken
from tests.conftest import make_settings
from tests.support import deliveries as helpers
from tests.support.deliveries import Sessionmaker
from tests.support.payloads import API_KEY, API_SECRET, ENCRYPTION_KEY, OTHER_SHOP, SHOP
from tests.support.shopify_fake import FakeShopify

pytestmark = pytest.mark.anyio

APP_URL = "https://tierline.example.com"
SCOPES = "read_customers,read_orders,read_fulfillments,read_returns,write_customers,write_orders"
TOKEN_EXCHANGE_FORM_KEYS = {
    "client_id",
    "client_secret",
    "grant_type",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "expiring",
}


def signed(params: dict[str, str], secret: str = API_SECRET) -> dict[str, str]:
    """``params`` plus the ``hmac`` Shopify adds: hex HMAC-SHA256 of the sorted pairs."""
    message = "&".join(f"{key}={value}" for key, value in sorted(params.items()))
    return {**params, "hmac": hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()}


def launch(shop: str = SHOP, **extra: str) -> dict[str, str]:
    return signed({"shop": shop, "timestamp": str(int(time.time())), **extra})


def callback_query(
    state: str, *, shop: str = SHOP, code: str = "auth-code-1", **extra: str
) -> dict[str, str]:
    return signed(
        {
            "code": code,
            "host": "YWNtZS10ZXN0Lm15c2hvcGlmeS5jb20vYWRtaW4",
            "shop": shop,
            "state": state,
            "timestamp": str(int(time.time())),
            **extra,
        }
    )


def session_token(
    shop: str = SHOP, *, secret: str = API_SECRET, audience: str = API_KEY, ttl: int = 60
) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": audience,
        "sub": "74738",
        "exp": now + ttl,
        "nbf": now - 5,
        "iat": now - 5,
        "jti": "4a1b6c8e-2f3d-4e5f-8a9b-0c1d2e3f4a5b",
        "sid": "session-1",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def oauth_settings(database_url: str) -> Settings:
    return make_settings(database_url, SHOPIFY_APP_URL=APP_URL, SCOPES=SCOPES)


@pytest.fixture
def shopify() -> FakeShopify:
    return FakeShopify(SHOP, scope=SCOPES)


@pytest.fixture
async def oauth_client(
    oauth_settings: Settings, shopify: FakeShopify
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(shopify))
    app = create_app(oauth_settings, http_client=http)
    async with AsyncTestClient(app=app, base_url=APP_URL) as client:
        yield client
    await http.aclose()


async def start_install(client: AsyncTestClient[Litestar], shop: str = SHOP) -> str:
    """``/auth/install``; the nonce the state cookie carries."""
    response = await client.get("/auth/install", params=launch(shop), follow_redirects=False)
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["state"][0]


async def shop_row(sessionmaker: Sessionmaker, shop: str = SHOP) -> Any:
    async with sessionmaker() as session:
        return (
            await session.execute(sa.select(helpers.SHOPS).where(helpers.SHOPS.c.domain == shop))
        ).one_or_none()


def problem_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


class TestInstall:
    async def test_redirects_to_the_exact_authorize_url_with_a_signed_state_cookie(
        self, oauth_client: AsyncTestClient[Litestar]
    ) -> None:
        response = await oauth_client.get(
            "/auth/install", params=launch(host="YWNtZQ", embedded="0"), follow_redirects=False
        )

        assert response.status_code == 302
        nonce = parse_qs(urlsplit(response.headers["location"]).query)["state"][0]
        assert response.headers["location"] == (
            f"https://{SHOP}/admin/oauth/authorize?client_id={API_KEY}&scope={SCOPES}"
            f"&redirect_uri={quote(APP_URL + '/auth/callback', safe='')}&state={nonce}"
        )
        assert len(nonce) >= 32
        cookie_header = response.headers["set-cookie"]
        assert cookie_header.startswith(f"{STATE_COOKIE}=")
        for attribute in ("HttpOnly", "Secure", "Path=/auth", "SameSite=lax", "Max-Age=600"):
            assert attribute.lower() in cookie_header.lower()
        state = read_state(oauth_client.cookies[STATE_COOKIE], API_SECRET)
        assert state is not None
        assert (state["nonce"], state["shop"]) == (nonce, SHOP)

    async def test_each_install_gets_its_own_nonce(self, oauth_client: AsyncTestClient[Litestar]) -> None:
        assert await start_install(oauth_client) != await start_install(oauth_client)

    async def test_the_shops_currency_and_time_zone_are_stored_with_the_new_access_token(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify, sessionmaker: Sessionmaker
    ) -> None:
        nonce = await start_install(oauth_client)
        response = await oauth_client.get(
            "/auth/callback", params=callback_query(nonce), follow_redirects=False
        )
        assert response.status_code == 302, response.text
        row = await shop_row(sessionmaker)
        assert (row.currency, row.iana_timezone) == ("EUR", "Europe/Berlin")
        [details] = shopify.queries_named("TierlineShop")
        shop_call = next(r for r in shopify.requests if r.url.path.endswith("/graphql.json"))
        assert shop_call.headers["X-Shopify-Access-Token"] == "shpat_new_1"
        assert "currencyCode" in details["query"]

    @pytest.mark.parametrize("answer", ["refused", "malformed"])
    async def test_the_install_succeeds_when_shopify_does_not_give_the_details(
        self,
        oauth_client: AsyncTestClient[Litestar],
        shopify: FakeShopify,
        sessionmaker: Sessionmaker,
        answer: str,
    ) -> None:
        shopify.details = None if answer == "refused" else {"currencyCode": "euro", "ianaTimezone": ""}
        nonce = await start_install(oauth_client)
        response = await oauth_client.get(
            "/auth/callback", params=callback_query(nonce), follow_redirects=False
        )
        assert response.status_code == 302, response.text
        row = await shop_row(sessionmaker)
        assert row.access_token_enc is not None
        assert (row.currency, row.iana_timezone) == (None, None)

    async def test_a_tampered_hmac_is_refused(self, oauth_client: AsyncTestClient[Litestar]) -> None:
        params = launch()
        params["shop"] = OTHER_SHOP  # signed for SHOP
        response = await oauth_client.get("/auth/install", params=params, follow_redirects=False)
        assert response.status_code == 401
        assert STATE_COOKIE not in response.headers.get("set-cookie", "")
        wrong_secret = signed({"shop": SHOP, "timestamp": str(int(time.time()))}, secret="not-the-secret")
        assert (await oauth_client.get("/auth/install", params=wrong_secret)).status_code == 401
        unsigned = {"shop": SHOP, "timestamp": str(int(time.time()))}
        assert (await oauth_client.get("/auth/install", params=unsigned)).status_code == 401

    async def test_an_old_launch_is_refused(self, oauth_client: AsyncTestClient[Litestar]) -> None:
        stale = signed({"shop": SHOP, "timestamp": str(int(time.time()) - 2 * 86400)})
        assert (await oauth_client.get("/auth/install", params=stale)).status_code == 401

    @pytest.mark.parametrize(
        "shop", ["evil.example.com", "acme.myshopify.com.evil.com", "", "-x.myshopify.com"]
    )
    async def test_a_bad_shop_is_refused(self, oauth_client: AsyncTestClient[Litestar], shop: str) -> None:
        response = await oauth_client.get("/auth/install", params=launch(shop), follow_redirects=False)
        assert response.status_code == 400
        assert "shop" in problem_of(response)["detail"]


class TestCallback:
    async def test_exchanges_the_code_and_stores_the_tokens_encrypted(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify, sessionmaker: Sessionmaker
    ) -> None:
        nonce = await start_install(oauth_client)

        response = await oauth_client.get(
            "/auth/callback", params=callback_query(nonce, code="code-123"), follow_redirects=False
        )

        assert response.status_code == 302, response.text
        assert response.headers["location"] == f"https://{SHOP}/admin/apps/{API_KEY}"
        assert STATE_COOKIE not in oauth_client.cookies  # consumed
        assert shopify.token_forms == [
            {"client_id": API_KEY, "client_secret": API_SECRET, "code": "code-123", "expiring": "1"}
        ]
        assert str(shopify.requests[0].url) == f"https://{SHOP}/admin/oauth/access_token"
        row = await shop_row(sessionmaker)
        assert row.access_token_enc is not None
        assert "shpat_new_1" not in row.access_token_enc
        assert "shprt_new_1" not in row.refresh_token_enc
        cipher = TokenCipher(ENCRYPTION_KEY)
        assert cipher.decrypt(row.access_token_enc) == "shpat_new_1"
        assert cipher.decrypt(row.refresh_token_enc) == "shprt_new_1"
        assert row.installed_at is not None
        assert row.uninstalled_at is None
        assert row.scopes == SCOPES
        assert row.token_expires_at is not None
        async with sessionmaker() as session:
            token = await installs.load_token(session, row.id, cipher)
        assert token is not None
        assert token.access_token == "shpat_new_1"
        with pytest.raises(ValueError, match="cannot be decrypted"):
            TokenCipher("another-key-entirely-000000000000000").decrypt(row.access_token_enc)

    async def test_a_tampered_hmac_is_refused(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify, sessionmaker: Sessionmaker
    ) -> None:
        nonce = await start_install(oauth_client)
        params = callback_query(nonce)
        params["code"] = "someone-elses-code"
        response = await oauth_client.get("/auth/callback", params=params, follow_redirects=False)
        assert response.status_code == 401
        assert shopify.requests == []
        assert (await shop_row(sessionmaker)) is None

    async def test_a_bad_shop_is_refused(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        nonce = await start_install(oauth_client)
        response = await oauth_client.get(
            "/auth/callback", params=callback_query(nonce, shop="evil.example.com")
        )
        assert response.status_code == 400
        assert shopify.requests == []

    async def test_a_missing_state_cookie_is_refused(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        nonce = await start_install(oauth_client)
        oauth_client.cookies.clear()
        response = await oauth_client.get("/auth/callback", params=callback_query(nonce))
        assert response.status_code == 401
        assert "state" in problem_of(response)["detail"]
        assert shopify.requests == []

    async def test_the_state_of_another_install_is_refused(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        first = await start_install(oauth_client)
        await start_install(oauth_client)  # the cookie now carries the second nonce
        assert (await oauth_client.get("/auth/callback", params=callback_query(first))).status_code == 401
        assert (await oauth_client.get("/auth/callback", params=callback_query("made-up"))).status_code == 401
        other = await start_install(oauth_client, OTHER_SHOP)  # a valid nonce, for another shop
        assert (await oauth_client.get("/auth/callback", params=callback_query(other))).status_code == 401
        assert shopify.requests == []

    async def test_a_forged_state_cookie_is_refused(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        forged = sign_state({"nonce": "n1", "shop": SHOP}, "not-the-secret", ttl_seconds=600)
        oauth_client.cookies.set(STATE_COOKIE, forged, domain="tierline.example.com", path="/auth")
        assert (await oauth_client.get("/auth/callback", params=callback_query("n1"))).status_code == 401
        assert shopify.requests == []

    async def test_an_expired_state_is_refused(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        expired = sign_state(
            {"nonce": "n1", "shop": SHOP}, API_SECRET, ttl_seconds=600, now=time.time() - 601
        )
        oauth_client.cookies.set(STATE_COOKIE, expired, domain="tierline.example.com", path="/auth")
        assert (await oauth_client.get("/auth/callback", params=callback_query("n1"))).status_code == 401
        assert shopify.requests == []

    async def test_a_replayed_callback_is_refused(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        nonce = await start_install(oauth_client)
        params = callback_query(nonce)
        assert (
            await oauth_client.get("/auth/callback", params=params, follow_redirects=False)
        ).status_code == 302
        replay = await oauth_client.get("/auth/callback", params=params, follow_redirects=False)
        assert replay.status_code == 401
        assert len(shopify.token_forms) == 1

    async def test_a_state_is_single_use_even_with_its_cookie_kept(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        # Issue 14: the cookie is deleted on success, but whoever kept it (and the query) could
        # replay the callback. The nonce is now remembered server-side.
        nonce = await start_install(oauth_client)
        cookie = oauth_client.cookies[STATE_COOKIE]
        params = callback_query(nonce)
        first = await oauth_client.get("/auth/callback", params=params, follow_redirects=False)
        assert first.status_code == 302
        oauth_client.cookies.set(STATE_COOKIE, cookie, domain="tierline.example.com", path="/auth")

        replay = await oauth_client.get(
            "/auth/callback", params=callback_query(nonce, code="auth-code-2"), follow_redirects=False
        )

        assert replay.status_code == 400
        assert "already used" in problem_of(replay)["detail"]
        assert len(shopify.token_forms) == 1

    async def test_a_state_stays_used_when_the_exchange_failed(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        shopify.token_error = (500, '{"error":"try later"}')
        nonce = await start_install(oauth_client)
        params = callback_query(nonce)
        assert (await oauth_client.get("/auth/callback", params=params)).status_code == 502
        shopify.token_error = None

        replay = await oauth_client.get("/auth/callback", params=params, follow_redirects=False)

        assert replay.status_code == 400
        # A new install works: a new nonce.
        fresh = await start_install(oauth_client)
        response = await oauth_client.get(
            "/auth/callback", params=callback_query(fresh), follow_redirects=False
        )
        assert response.status_code == 302

    async def test_used_nonces_are_forgotten_once_their_cookie_expired(
        self, sessionmaker: Sessionmaker
    ) -> None:
        past = datetime.now(UTC) - timedelta(seconds=1)
        future = datetime.now(UTC) + timedelta(minutes=10)
        async with session_scope(sessionmaker) as session:
            assert await installs.use_state_nonce(session, "old", past) is True
            assert await installs.use_state_nonce(session, "new", future) is True
            assert await installs.use_state_nonce(session, "new", future) is False
        async with session_scope(sessionmaker) as session:
            assert await installs.use_state_nonce(session, "newer", future) is True
            left = (await session.scalars(sa.select(installs.state_uses.c.nonce_hash))).all()
        assert len(left) == 2  # "old" was deleted; only hashes are stored
        assert all(len(value) == 64 and "new" not in value for value in left)

    async def test_a_missing_code_is_a_bad_request(self, oauth_client: AsyncTestClient[Litestar]) -> None:
        nonce = await start_install(oauth_client)
        params = signed({"shop": SHOP, "state": nonce, "timestamp": str(int(time.time()))})
        assert (await oauth_client.get("/auth/callback", params=params)).status_code == 400

    async def test_insufficient_scopes_are_refused_and_nothing_is_stored(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify, sessionmaker: Sessionmaker
    ) -> None:
        shopify.scope = "read_customers,read_orders"
        nonce = await start_install(oauth_client)
        response = await oauth_client.get(
            "/auth/callback", params=callback_query(nonce), follow_redirects=False
        )
        assert response.status_code == 403
        detail = problem_of(response)["detail"]
        assert "read_fulfillments" in detail
        assert "read_returns" in detail
        row = await shop_row(sessionmaker)
        assert row is None or row.access_token_enc is None

    async def test_write_scopes_cover_read_scopes(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        shopify.scope = "write_customers,write_orders,read_fulfillments,read_returns"
        nonce = await start_install(oauth_client)
        response = await oauth_client.get(
            "/auth/callback", params=callback_query(nonce), follow_redirects=False
        )
        assert response.status_code == 302

    @pytest.mark.parametrize("status", [500, 400])
    async def test_a_failing_token_endpoint_is_a_bad_gateway(
        self,
        oauth_client: AsyncTestClient[Litestar],
        shopify: FakeShopify,
        sessionmaker: Sessionmaker,
        status: int,
    ) -> None:
        shopify.token_error = (status, '{"error":"invalid_request"}')
        nonce = await start_install(oauth_client)
        response = await oauth_client.get(
            "/auth/callback", params=callback_query(nonce), follow_redirects=False
        )
        assert response.status_code == 502
        assert problem_of(response)["title"] == "Bad Gateway"
        row = await shop_row(sessionmaker)
        assert row is None or row.access_token_enc is None

    async def test_reinstalling_after_uninstall_revives_the_shop_and_its_keys(
        self,
        oauth_client: AsyncTestClient[Litestar],
        sessionmaker: Sessionmaker,
        oauth_settings: Settings,
    ) -> None:
        nonce = await start_install(oauth_client)
        first = await oauth_client.get("/auth/callback", params=callback_query(nonce), follow_redirects=False)
        assert first.status_code == 302
        headers = await helpers.api_headers(sessionmaker)
        assert (await oauth_client.get("/api/compliance/requests", headers=headers)).status_code == 200
        await helpers.enqueue(sessionmaker, "app/uninstalled", {"id": 1, "name": "Acme", "domain": SHOP})
        await helpers.drain(sessionmaker, oauth_settings)
        assert (await shop_row(sessionmaker)).uninstalled_at is not None
        assert (await oauth_client.get("/api/compliance/requests", headers=headers)).status_code == 401

        nonce = await start_install(oauth_client)
        response = await oauth_client.get(
            "/auth/callback", params=callback_query(nonce, code="second-code"), follow_redirects=False
        )

        assert response.status_code == 302
        row = await shop_row(sessionmaker)
        assert row.uninstalled_at is None
        assert TokenCipher(ENCRYPTION_KEY).decrypt(row.access_token_enc) == "shpat_new_2"
        assert (await oauth_client.get("/api/compliance/requests", headers=headers)).status_code == 200


class TestTokenExchange:
    async def test_a_session_token_is_exchanged_for_a_stored_offline_token(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify, sessionmaker: Sessionmaker
    ) -> None:
        token = session_token()

        response = await oauth_client.post("/auth/token", headers={"Authorization": f"Bearer {token}"})

        assert response.status_code == 200, response.text
        assert response.json() == {"shop": SHOP, "installed": True, "scopes": SCOPES}
        [form] = shopify.token_forms
        assert set(form) == TOKEN_EXCHANGE_FORM_KEYS
        assert form == {
            "client_id": API_KEY,
            "client_secret": API_SECRET,
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
            "expiring": "1",
        }
        assert str(shopify.requests[0].url) == f"https://{SHOP}/admin/oauth/access_token"
        row = await shop_row(sessionmaker)
        assert "shpat_new_1" not in row.access_token_enc
        assert TokenCipher(ENCRYPTION_KEY).decrypt(row.access_token_enc) == "shpat_new_1"
        assert row.uninstalled_at is None

    async def test_the_exchange_stores_the_shops_currency_and_time_zone(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify, sessionmaker: Sessionmaker
    ) -> None:
        shopify.details = {"currencyCode": "INR", "ianaTimezone": "Asia/Kolkata"}
        response = await oauth_client.post(
            "/auth/token", headers={"Authorization": f"Bearer {session_token()}"}
        )
        assert response.status_code == 200, response.text
        row = await shop_row(sessionmaker)
        assert (row.currency, row.iana_timezone) == ("INR", "Asia/Kolkata")

    async def test_an_exchange_that_grants_too_few_scopes_is_refused_and_nothing_is_stored(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify, sessionmaker: Sessionmaker
    ) -> None:
        shopify.scope = "read_customers,read_orders"
        response = await oauth_client.post(
            "/auth/token", headers={"Authorization": f"Bearer {session_token()}"}
        )
        assert response.status_code == 403
        detail = problem_of(response)["detail"]
        assert "read_fulfillments" in detail
        assert "read_returns" in detail
        row = await shop_row(sessionmaker)
        assert row is None or row.access_token_enc is None

    async def test_a_new_token_for_an_installed_shop_keeps_its_install_time(
        self,
        oauth_client: AsyncTestClient[Litestar],
        shopify: FakeShopify,
        sessionmaker: Sessionmaker,
        oauth_settings: Settings,
    ) -> None:
        headers = {"Authorization": f"Bearer {session_token()}"}
        assert (await oauth_client.post("/auth/token", headers=headers)).status_code == 200
        installed_at = (await shop_row(sessionmaker)).installed_at
        assert (await oauth_client.post("/auth/token", headers=headers)).status_code == 200
        row = await shop_row(sessionmaker)
        assert row.installed_at == installed_at
        assert TokenCipher(ENCRYPTION_KEY).decrypt(row.access_token_enc) == "shpat_new_2"

        await helpers.enqueue(sessionmaker, "app/uninstalled", {"id": 1, "domain": SHOP})
        await helpers.drain(sessionmaker, oauth_settings)
        assert (await oauth_client.post("/auth/token", headers=headers)).status_code == 200
        reinstalled = await shop_row(sessionmaker)
        assert reinstalled.uninstalled_at is None
        assert reinstalled.installed_at > installed_at

    @pytest.mark.parametrize(
        "token",
        [
            pytest.param(
                lambda: session_token(secret="not-the-secret-but-long-enough-for-hs256"), id="wrong secret"
            ),
            pytest.param(lambda: session_token(audience="another-app"), id="another app"),
            pytest.param(lambda: session_token(ttl=-60), id="expired"),
            pytest.param(lambda: "not.a.jwt", id="garbage"),
        ],
    )
    async def test_a_bad_session_token_is_refused(
        self,
        oauth_client: AsyncTestClient[Litestar],
        shopify: FakeShopify,
        sessionmaker: Sessionmaker,
        token: Any,
    ) -> None:
        response = await oauth_client.post("/auth/token", headers={"Authorization": f"Bearer {token()}"})
        assert response.status_code == 401
        assert shopify.requests == []
        assert (await shop_row(sessionmaker)) is None

    async def test_the_read_pool_endpoints_take_a_session_token_and_refuse_a_bad_one(
        self, oauth_client: AsyncTestClient[Litestar], sessionmaker: Sessionmaker
    ) -> None:
        # enrich and stats look their shop up without the request's session (service.reads):
        # a session token still installs the shop on its first use and then reads its figures.
        good = {"Authorization": f"Bearer {session_token()}"}
        forged = {
            "Authorization": f"Bearer {session_token(secret='not-the-secret-but-long-enough-for-hs256')}"
        }
        other = {"Authorization": f"Bearer {session_token(audience='another-app')}"}
        calls = [
            ("/api/stats/customers", {"customerIds": ["123"]}),
            ("/api/orders/enrich", {"orderIds": ["123"]}),
        ]
        for path, body in calls:
            for refused in (forged, other):
                answer = await oauth_client.post(path, json=body, headers=refused)
                assert answer.status_code == 401, answer.text
        assert (await shop_row(sessionmaker)) is None  # nothing installed by a refused token
        stats = await oauth_client.post(calls[0][0], json=calls[0][1], headers=good)
        assert stats.status_code == 200, stats.text
        assert stats.json()["stats"]["123"]["orderCount"] == 0
        enrich = await oauth_client.post(calls[1][0], json=calls[1][1], headers=good)
        assert enrich.status_code == 200, enrich.text
        assert enrich.json()["items"] == []
        assert (await shop_row(sessionmaker)).uninstalled_at is None

    async def test_no_bearer_token_is_refused(self, oauth_client: AsyncTestClient[Litestar]) -> None:
        assert (await oauth_client.post("/auth/token")).status_code == 401
        assert (
            await oauth_client.post("/auth/token", headers={"Authorization": "Basic abc"})
        ).status_code == 401

    async def test_shopify_refusing_the_exchange_is_a_bad_gateway(
        self, oauth_client: AsyncTestClient[Litestar], shopify: FakeShopify
    ) -> None:
        shopify.token_error = (400, '{"error":"invalid_subject_token"}')
        response = await oauth_client.post(
            "/auth/token", headers={"Authorization": f"Bearer {session_token()}"}
        )
        assert response.status_code == 502
        problem_of(response)


async def test_the_uninstalled_shop_has_no_token_left(sessionmaker: Sessionmaker) -> None:
    """``mark_uninstalled`` drops both tokens (what app/uninstalled relies on)."""
    shop_id = await helpers.shop_id(sessionmaker)
    async with session_scope(sessionmaker) as session:
        await installs.store_token(
            session,
            shop_id,
            AccessToken(access_token="shpat_x", scope=SCOPES, refresh_token="shprt_x"),
            TokenCipher(ENCRYPTION_KEY),
        )
        await installs.mark_uninstalled(session, shop_id)
    row = await shop_row(sessionmaker)
    assert (row.access_token_enc, row.refresh_token_enc, row.token_expires_at) == (None, None, None)
