"""No value tierline emits is a webhook signature (issue 14, item 2).

Shopify signs webhooks with the raw app secret: base64(HMAC-SHA256(secret, body)). The OAuth state
cookie used to be ``payload.HMAC-SHA256(secret, payload)``, so anyone who started an install held
a valid signature for a body of their choosing and could post it to intake with any topic, shop
and webhook id. Now every value tierline signs or encrypts uses a key derived for that purpose
(``service.crypto``), and intake refuses what Shopify itself signs for other purposes (session
tokens, OAuth queries) when it is replayed as a webhook.

Each emitted value is taken apart as an attacker would: every signed part and the signature, and
each tried as a webhook body and signature, both directly and at intake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.oauth import STATE_COOKIE
from service.app import create_app
from service.config import Settings
from service.crypto import TokenCipher, read_state, sign_state
from shopify_client import signed_for_another_purpose, verify_webhook_hmac
from tests.conftest import make_settings
from tests.support import deliveries as helpers
from tests.support.deliveries import Sessionmaker
from tests.support.payloads import API_KEY, API_SECRET, PREVIOUS_SECRET, SHOP

pytestmark = pytest.mark.anyio

APP_URL = "https://tierline.example.com"
VICTIM = "victim-store.myshopify.com"
SECRETS = (API_SECRET, PREVIOUS_SECRET)


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def as_header(signature: bytes) -> str:
    """A raw HMAC digest in the form of ``X-Shopify-Hmac-Sha256``."""
    return base64.b64encode(signature).decode()


def attempts(value: str) -> list[tuple[bytes, bytes]]:
    """(body, signature) pairs an attacker can cut from a dotted signed value: the signature is the
    last segment (URL-safe base64), the body anything the value shows before or around it."""
    *signed_parts, last = value.split(".")
    signature = unb64url(last)
    signed = ".".join(signed_parts)
    bodies = {signed.encode(), value.encode(), *(unb64url(part) for part in signed_parts)}
    return [(body, signature) for body in sorted(bodies)]


def assert_no_webhook_signature(value: str) -> None:
    for body, signature in attempts(value):
        assert len(signature) == hashlib.sha256().digest_size  # the shape an attacker needs
        assert not verify_webhook_hmac(body, as_header(signature), SECRETS), body[:60]


def forged_delivery(body: bytes, signature: bytes, *, topic: str = "shop/redact") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": as_header(signature),
        "X-Shopify-Shop-Domain": VICTIM,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
    }


async def stored(sessionmaker: Sessionmaker) -> tuple[int, list[str]]:
    """How many deliveries the inbox holds, and the shops it knows."""
    async with sessionmaker() as session:
        count = await session.scalar(sa.select(sa.func.count()).select_from(helpers.DELIVERIES))
        shops = (await session.scalars(sa.select(helpers.SHOPS.c.domain))).all()
    return int(count or 0), sorted(shops)


async def assert_refused_at_intake(
    client: AsyncTestClient[Litestar], sessionmaker: Sessionmaker, value: str
) -> None:
    before = await stored(sessionmaker)
    for body, signature in attempts(value):
        for topic in ("shop/redact", "app/uninstalled", "customers/redact"):
            response = await client.post(
                "/webhooks/shopify", content=body, headers=forged_delivery(body, signature, topic=topic)
            )
            assert response.status_code == 401, (body[:60], response.text)
    assert await stored(sessionmaker) == before
    assert VICTIM not in before[1]


def shopify_session_token(shop: str = SHOP) -> str:
    """A session token as App Bridge issues it: HS256 with the raw app secret (shopify-facts E.5)."""
    now = int(time.time())
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": API_KEY,
        "sub": "74738",
        "exp": now + 60,
        "nbf": now - 5,
        "iat": now - 5,
        "jti": str(uuid.uuid4()),
        "sid": "session-1",
    }
    return jwt.encode(claims, API_SECRET, algorithm="HS256")


def launch_query(shop: str = SHOP) -> dict[str, str]:
    params = {"shop": shop, "timestamp": str(int(time.time()))}
    message = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    return {**params, "hmac": hmac.new(API_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Development settings (dev session tokens are minted) with a rotation secret set."""
    return make_settings(
        database_url,
        SHOPIFY_APP_URL=APP_URL,
        SHOPIFY_API_SECRET_PREVIOUS=PREVIOUS_SECRET,
        TIERLINE_DEV_SHOP=SHOP,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings), base_url=APP_URL) as test_client:
        yield test_client


async def state_cookie(client: AsyncTestClient[Litestar]) -> str:
    response = await client.get("/auth/install", params=launch_query(), follow_redirects=False)
    assert response.status_code == 302, response.text
    value = client.cookies[STATE_COOKIE]
    assert value.count(".") == 1
    return value


async def dev_token(client: AsyncTestClient[Litestar]) -> str:
    page = (await client.get("/app")).text
    marker = '<meta name="tierline-dev-token" content="'
    assert marker in page
    return page.split(marker, 1)[1].split('"', 1)[0]


class TestStateCookie:
    async def test_the_state_cookie_is_no_webhook_signature(self, client: AsyncTestClient[Litestar]) -> None:
        value = await state_cookie(client)
        assert read_state(value, API_SECRET) is not None  # it is a real, valid state
        assert_no_webhook_signature(value)

    async def test_its_payload_signed_as_tierline_signs_it_is_refused_by_intake(
        self, client: AsyncTestClient[Litestar], sessionmaker: Sessionmaker
    ) -> None:
        await assert_refused_at_intake(client, sessionmaker, await state_cookie(client))

    async def test_a_state_signed_with_the_raw_secret_no_longer_reads(self) -> None:
        # The old construction: a cookie made that way is refused, so nothing depends on it.
        payload = {"nonce": "n", "shop": SHOP, "exp": int(time.time()) + 600}
        encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
        old = hmac.new(API_SECRET.encode(), encoded.encode(), hashlib.sha256).digest()
        value = f"{encoded}.{base64.urlsafe_b64encode(old).decode().rstrip('=')}"
        assert read_state(value, API_SECRET) is None

    @given(st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=4))
    def test_no_state_for_any_payload_is_a_webhook_signature(self, payload: dict[str, str]) -> None:
        assert_no_webhook_signature(sign_state(payload, API_SECRET, ttl_seconds=600))


class TestDevSessionToken:
    async def test_the_dev_session_token_is_no_webhook_signature(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        token = await dev_token(client)
        assert token.count(".") == 2
        assert_no_webhook_signature(token)
        # ...and it still signs the development pages' API calls in.
        response = await client.get("/api/settings", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text

    async def test_the_dev_session_token_is_refused_by_intake(
        self, client: AsyncTestClient[Litestar], sessionmaker: Sessionmaker
    ) -> None:
        await assert_refused_at_intake(client, sessionmaker, await dev_token(client))

    async def test_production_does_not_accept_the_dev_token_key(
        self, client: AsyncTestClient[Litestar], database_url: str
    ) -> None:
        token = await dev_token(client)
        production = make_settings(
            database_url, TIERLINE_ENV="production", SHOPIFY_APP_URL=APP_URL, TIERLINE_DEV_SHOP=SHOP
        )
        async with AsyncTestClient(app=create_app(production), base_url=APP_URL) as prod:
            response = await prod.get("/api/settings", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


class TestTokenCiphertexts:
    def test_an_encrypted_token_is_no_webhook_signature_even_under_the_app_secret(self) -> None:
        # An operator who reuses the app secret as TIERLINE_ENCRYPTION_KEY still gets distinct keys.
        ciphertext = base64.urlsafe_b64decode(TokenCipher(API_SECRET).encrypt("shpat_example"))
        signed, signature = ciphertext[:-32], ciphertext[-32:]  # Fernet: HMAC-SHA256 at the end
        assert not verify_webhook_hmac(signed, as_header(signature), SECRETS)
        assert not verify_webhook_hmac(ciphertext, as_header(signature), SECRETS)


class TestWhatShopifySignsForOtherPurposes:
    """Shopify signs session tokens and OAuth queries with the same secret; replayed as a webhook
    body with that signature, intake refuses them (they are never JSON, never a delivery)."""

    async def test_a_session_token_replayed_as_a_webhook_is_refused(
        self, client: AsyncTestClient[Litestar], sessionmaker: Sessionmaker
    ) -> None:
        token = shopify_session_token()
        signing_input, _, signature = token.rpartition(".")
        # Shopify's signature is a valid webhook HMAC of the signing input...
        assert verify_webhook_hmac(signing_input.encode(), as_header(unb64url(signature)), SECRETS)
        # ...but intake does not take it as a delivery.
        await assert_refused_at_intake(client, sessionmaker, token)

    async def test_an_oauth_query_replayed_as_a_webhook_is_refused(
        self, client: AsyncTestClient[Litestar], sessionmaker: Sessionmaker
    ) -> None:
        query = launch_query()
        message = "&".join(f"{k}={v}" for k, v in sorted(query.items()) if k != "hmac").encode()
        signature = bytes.fromhex(query["hmac"])
        assert verify_webhook_hmac(message, as_header(signature), SECRETS)
        before = await stored(sessionmaker)
        response = await client.post(
            "/webhooks/shopify", content=message, headers=forged_delivery(message, signature)
        )
        assert response.status_code == 401
        assert await stored(sessionmaker) == before

    async def test_the_install_redirect_carries_no_webhook_signature(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        response = await client.get("/auth/install", params=launch_query(), follow_redirects=False)
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert "hmac" not in query
        assert "signature" not in query


class TestSignedForAnotherPurpose:
    @pytest.mark.parametrize(
        "body",
        [
            b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
            b"code=abc&shop=a.myshopify.com&timestamp=1",
            b"logged_in_customer_id=path_prefix=/apps/x",
            b"ids[]=1",
        ],
    )
    def test_recognises_session_tokens_and_queries(self, body: bytes) -> None:
        assert signed_for_another_purpose(body) is True

    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), st.lists))
    def test_no_json_document_is_taken_for_one(self, document: object) -> None:
        assert signed_for_another_purpose(json.dumps(document).encode()) is False
        assert signed_for_another_purpose(json.dumps({"k": document}, indent=2).encode()) is False
