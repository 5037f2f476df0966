"""OAuth: authorize URL, code exchange, refresh, token exchange, expiry and scope checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shopify_client import (
    AccessToken,
    AdminClient,
    InvalidShopDomainError,
    OAuthError,
    OAuthHTTPError,
    ShopifyError,
    ShopifyHTTPError,
    ShopifyTransportError,
    authorize_url,
    exchange_code,
    missing_scopes,
    needs_refresh,
    refresh_access_token,
    shop_origin,
    token_exchange,
    token_url,
)

pytestmark = pytest.mark.anyio

SHOP = "acme-test.myshopify.com"
API_KEY = "client-id-123"
API_SECRET = "client-secret-456"
TOKEN_URL = f"https://{SHOP}/admin/oauth/access_token"
NOW = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)

Handler = Callable[[httpx.Request], httpx.Response]


class TokenEndpoint:
    """A MockTransport handler that records requests and answers with a fixed response."""

    def __init__(self, status: int = 200, body: Any = None, *, raw: bytes | None = None) -> None:
        self.status = status
        self.body = body if body is not None else {"access_token": "shpat_new", "scope": "read_orders"}
        self.raw = raw
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.raw is not None:
            return httpx.Response(self.status, content=self.raw)
        return httpx.Response(self.status, json=self.body)

    @property
    def form(self) -> dict[str, list[str]]:
        assert len(self.requests) == 1
        request = self.requests[0]
        assert request.method == "POST"
        assert str(request.url) == TOKEN_URL
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        return parse_qs(request.content.decode(), keep_blank_values=True)


def client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


class TestAuthorizeUrl:
    def test_offline_url_has_the_documented_form(self) -> None:
        url = authorize_url(
            SHOP,
            API_KEY,
            ["read_orders", "write_customers"],
            "https://app.example.com/auth/callback",
            "n0nce",
        )
        assert url == (
            f"https://{SHOP}/admin/oauth/authorize?client_id={API_KEY}"
            "&scope=read_orders,write_customers"
            "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fauth%2Fcallback"
            "&state=n0nce"
        )

    def test_online_url_asks_for_a_per_user_grant(self) -> None:
        url = authorize_url(SHOP, API_KEY, "read_orders", "https://app.example.com/cb", "n0nce", online=True)
        assert url.endswith("&state=n0nce&grant_options%5B%5D=per-user")
        assert parse_qs(urlsplit(url).query)["grant_options[]"] == ["per-user"]

    def test_offline_url_has_no_grant_options(self) -> None:
        url = authorize_url(SHOP, API_KEY, "read_orders", "https://app.example.com/cb", "n0nce")
        assert "grant_options" not in url

    def test_scope_string_is_normalised_to_a_comma_list(self) -> None:
        url = authorize_url(
            SHOP, API_KEY, " read_orders, write_orders ,read_orders", "https://a.example/cb", "s"
        )
        assert parse_qs(urlsplit(url).query)["scope"] == ["read_orders,write_orders"]

    def test_empty_scopes_leave_out_the_scope_parameter(self) -> None:
        url = authorize_url(SHOP, API_KEY, [], "https://a.example/cb", "s")
        assert "scope" not in parse_qs(urlsplit(url).query)

    def test_state_and_redirect_are_escaped(self) -> None:
        url = authorize_url(SHOP, API_KEY, "read_orders", "https://a.example/cb?x=1&y=2", "a&b=c")
        query = parse_qs(urlsplit(url).query)
        assert query["redirect_uri"] == ["https://a.example/cb?x=1&y=2"]
        assert query["state"] == ["a&b=c"]

    def test_shop_is_normalised(self) -> None:
        url = authorize_url("ACME-Test.myshopify.com", API_KEY, "read_orders", "https://a.example/cb", "s")
        assert url.startswith(f"https://{SHOP}/admin/oauth/authorize?")

    def test_invalid_shop_is_refused(self) -> None:
        with pytest.raises(InvalidShopDomainError):
            authorize_url("evil.example/x?", API_KEY, "read_orders", "https://a.example/cb", "s")


class TestExchangeCode:
    async def test_posts_client_credentials_code_and_expiring(self) -> None:
        endpoint = TokenEndpoint()
        async with client(endpoint) as http:
            await exchange_code(http, SHOP, API_KEY, API_SECRET, "auth-code-1", now=NOW)
        assert endpoint.form == {
            "client_id": [API_KEY],
            "client_secret": [API_SECRET],
            "code": ["auth-code-1"],
            "expiring": ["1"],
        }

    async def test_non_expiring_request_leaves_out_expiring(self) -> None:
        endpoint = TokenEndpoint()
        async with client(endpoint) as http:
            token = await exchange_code(http, SHOP, API_KEY, API_SECRET, "auth-code-1", expiring=False)
        assert "expiring" not in endpoint.form
        assert token == AccessToken(access_token="shpat_new", scope="read_orders")

    async def test_parses_an_expiring_offline_token(self) -> None:
        endpoint = TokenEndpoint(
            body={
                "access_token": "shpat_new",
                "scope": "read_orders,write_customers",
                "expires_in": 3600,
                "refresh_token": "shprt_new",
                "refresh_token_expires_in": 7776000,
            }
        )
        async with client(endpoint) as http:
            token = await exchange_code(http, SHOP, API_KEY, API_SECRET, "auth-code-1", now=NOW)
        assert token == AccessToken(
            access_token="shpat_new",
            scope="read_orders,write_customers",
            expires_at=NOW + timedelta(hours=1),
            refresh_token="shprt_new",
            refresh_token_expires_at=NOW + timedelta(days=90),
            associated_user_id=None,
        )

    async def test_expiry_defaults_to_the_current_time(self) -> None:
        endpoint = TokenEndpoint(body={"access_token": "shpat_new", "scope": "", "expires_in": 3600})
        before = datetime.now(UTC)
        async with client(endpoint) as http:
            token = await exchange_code(http, SHOP, API_KEY, API_SECRET, "auth-code-1")
        after = datetime.now(UTC)
        assert token.expires_at is not None
        assert before + timedelta(hours=1) <= token.expires_at <= after + timedelta(hours=1)

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 500])
    async def test_error_status_raises_with_an_excerpt(self, status: int) -> None:
        body = {"error": "invalid_request", "error_description": "The authorization code was not found"}
        endpoint = TokenEndpoint(status, body)
        async with client(endpoint) as http:
            with pytest.raises(OAuthHTTPError) as caught:
                await exchange_code(http, SHOP, API_KEY, API_SECRET, "used-code")
        assert caught.value.status == status
        assert "invalid_request" in caught.value.body_excerpt
        assert isinstance(caught.value, OAuthError)
        assert isinstance(caught.value, ShopifyHTTPError)
        assert len(endpoint.requests) == 1

    async def test_long_error_bodies_are_cut(self) -> None:
        endpoint = TokenEndpoint(400, raw=b"x" * 10_000)
        async with client(endpoint) as http:
            with pytest.raises(OAuthHTTPError) as caught:
                await exchange_code(http, SHOP, API_KEY, API_SECRET, "used-code")
        assert 0 < len(caught.value.body_excerpt) <= 300

    @pytest.mark.parametrize(
        "raw", [b"<html>oops</html>", b"[]", b'{"scope": "read_orders"}', b'{"access_token": ""}']
    )
    async def test_unusable_success_body_raises(self, raw: bytes) -> None:
        async with client(TokenEndpoint(200, raw=raw)) as http:
            with pytest.raises(OAuthError):
                await exchange_code(http, SHOP, API_KEY, API_SECRET, "auth-code-1")

    async def test_transport_error_raises_a_shopify_error(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        async with client(handler) as http:
            with pytest.raises(ShopifyTransportError):
                await exchange_code(http, SHOP, API_KEY, API_SECRET, "auth-code-1")

    async def test_invalid_shop_sends_nothing(self) -> None:
        endpoint = TokenEndpoint()
        async with client(endpoint) as http:
            with pytest.raises(InvalidShopDomainError):
                await exchange_code(http, "attacker.example", API_KEY, API_SECRET, "auth-code-1")
        assert endpoint.requests == []


class TestRefreshAccessToken:
    async def test_posts_the_refresh_grant(self) -> None:
        endpoint = TokenEndpoint()
        async with client(endpoint) as http:
            await refresh_access_token(http, SHOP, API_KEY, API_SECRET, "shprt_old", now=NOW)
        assert endpoint.form == {
            "client_id": [API_KEY],
            "client_secret": [API_SECRET],
            "grant_type": ["refresh_token"],
            "refresh_token": ["shprt_old"],
        }

    async def test_returns_the_new_token_pair(self) -> None:
        endpoint = TokenEndpoint(
            body={
                "access_token": "shpat_2",
                "scope": "read_orders",
                "expires_in": 3600,
                "refresh_token": "shprt_2",
                "refresh_token_expires_in": 7776000,
            }
        )
        async with client(endpoint) as http:
            token = await refresh_access_token(http, SHOP, API_KEY, API_SECRET, "shprt_old", now=NOW)
        assert (token.access_token, token.refresh_token) == ("shpat_2", "shprt_2")
        assert token.expires_at == NOW + timedelta(seconds=3600)
        assert token.refresh_token_expires_at == NOW + timedelta(seconds=7776000)

    async def test_revoked_refresh_token_raises(self) -> None:
        endpoint = TokenEndpoint(400, {"error": "invalid_grant"})
        async with client(endpoint) as http:
            with pytest.raises(OAuthHTTPError) as caught:
                await refresh_access_token(http, SHOP, API_KEY, API_SECRET, "shprt_old")
        assert caught.value.status == 400


class TestTokenExchange:
    async def test_offline_exchange_posts_the_documented_fields(self) -> None:
        endpoint = TokenEndpoint()
        async with client(endpoint) as http:
            await token_exchange(http, SHOP, API_KEY, API_SECRET, "session.jwt.token", now=NOW)
        assert endpoint.form == {
            "client_id": [API_KEY],
            "client_secret": [API_SECRET],
            "grant_type": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "subject_token": ["session.jwt.token"],
            "subject_token_type": ["urn:ietf:params:oauth:token-type:id_token"],
            "requested_token_type": ["urn:shopify:params:oauth:token-type:offline-access-token"],
            "expiring": ["1"],
        }

    async def test_non_expiring_offline_exchange_leaves_out_expiring(self) -> None:
        endpoint = TokenEndpoint()
        async with client(endpoint) as http:
            await token_exchange(http, SHOP, API_KEY, API_SECRET, "session.jwt.token", expiring=False)
        assert "expiring" not in endpoint.form

    async def test_online_exchange_asks_for_an_online_token(self) -> None:
        endpoint = TokenEndpoint(
            body={
                "access_token": "shpat_online",
                "scope": "read_orders",
                "expires_in": 86399,
                "associated_user_scope": "read_orders",
                "associated_user": {"id": 7001, "first_name": "Asha", "account_owner": True},
            }
        )
        async with client(endpoint) as http:
            token = await token_exchange(
                http, SHOP, API_KEY, API_SECRET, "session.jwt.token", online=True, now=NOW
            )
        form = endpoint.form
        assert form["requested_token_type"] == ["urn:shopify:params:oauth:token-type:online-access-token"]
        assert "expiring" not in form
        assert token.associated_user_id == 7001
        assert token.expires_at == NOW + timedelta(seconds=86399)
        assert token.refresh_token is None

    async def test_invalid_session_token_raises(self) -> None:
        endpoint = TokenEndpoint(400, {"error": "invalid_subject_token"})
        async with client(endpoint) as http:
            with pytest.raises(OAuthHTTPError) as caught:
                await token_exchange(http, SHOP, API_KEY, API_SECRET, "expired.jwt.token")
        assert caught.value.status == 400
        assert isinstance(caught.value, ShopifyError)


class TestAccessToken:
    def test_repr_hides_token_values(self) -> None:
        token = AccessToken(access_token="shpat_secret", scope="read_orders", refresh_token="shprt_secret")
        assert "shpat_secret" not in repr(token)
        assert "shprt_secret" not in repr(token)
        assert "read_orders" in repr(token)


class TestNeedsRefresh:
    def token(self, expires_at: datetime | None) -> AccessToken:
        return AccessToken(access_token="shpat_x", scope="", expires_at=expires_at)

    def test_non_expiring_token_never_needs_refresh(self) -> None:
        assert needs_refresh(self.token(None), NOW) is False

    def test_token_expiring_later_does_not_need_refresh(self) -> None:
        assert needs_refresh(self.token(NOW + timedelta(minutes=30)), NOW) is False

    def test_token_inside_the_margin_needs_refresh(self) -> None:
        assert needs_refresh(self.token(NOW + timedelta(minutes=4, seconds=59)), NOW) is True

    def test_margin_boundary(self) -> None:
        assert needs_refresh(self.token(NOW + timedelta(minutes=5)), NOW) is True
        assert needs_refresh(self.token(NOW + timedelta(minutes=5, seconds=1)), NOW) is False

    def test_expired_token_needs_refresh(self) -> None:
        assert needs_refresh(self.token(NOW - timedelta(seconds=1)), NOW) is True

    def test_custom_margin(self) -> None:
        token = self.token(NOW + timedelta(minutes=30))
        assert needs_refresh(token, NOW, margin=timedelta(hours=1)) is True
        assert needs_refresh(token, NOW, margin=timedelta(0)) is False


class TestMissingScopes:
    def test_nothing_missing_when_granted_equals_required(self) -> None:
        assert missing_scopes("read_orders,write_customers", "write_customers,read_orders") == set()

    def test_write_implies_read(self) -> None:
        assert missing_scopes("write_orders", "read_orders,write_orders") == set()

    def test_unauthenticated_write_implies_unauthenticated_read(self) -> None:
        assert missing_scopes("unauthenticated_write_checkouts", "unauthenticated_read_checkouts") == set()
        assert missing_scopes("unauthenticated_write_checkouts", "read_checkouts") == {"read_checkouts"}

    def test_read_does_not_imply_write(self) -> None:
        assert missing_scopes("read_orders", "write_orders") == {"write_orders"}

    def test_reports_every_missing_scope(self) -> None:
        required = "read_orders,read_customers,read_fulfillments,read_returns"
        assert missing_scopes("read_orders", required) == {
            "read_customers",
            "read_fulfillments",
            "read_returns",
        }

    def test_ignores_spaces_and_empty_entries(self) -> None:
        assert missing_scopes(" read_orders , ,write_customers ", "read_orders, read_customers,") == set()

    def test_empty_grant_misses_everything(self) -> None:
        assert missing_scopes("", "read_orders") == {"read_orders"}


class TestShopOrigin:
    """``TIERLINE_SHOPIFY_URL``: every URL tierline calls for a shop starts from the template."""

    def test_the_default_is_the_shop_itself(self) -> None:
        assert token_url("Acme.myshopify.com") == "https://acme.myshopify.com/admin/oauth/access_token"

    def test_a_stand_in_template_puts_the_shop_in_the_path(self) -> None:
        origin = "http://127.0.0.1:9010/{shop}/"
        assert token_url("acme.myshopify.com", origin) == (
            "http://127.0.0.1:9010/acme.myshopify.com/admin/oauth/access_token"
        )
        assert authorize_url(
            "acme.myshopify.com", "key", "read_orders", "https://app/cb", "n", origin=origin
        ).startswith("http://127.0.0.1:9010/acme.myshopify.com/admin/oauth/authorize?")

    @pytest.mark.parametrize("template", ["https://example.com", "mailto:{shop}", "https://{shop}#x", ""])
    def test_templates_without_shop_or_http_are_refused(self, template: str) -> None:
        with pytest.raises(ValueError, match="must"):
            shop_origin("acme.myshopify.com", template)

    async def test_the_admin_client_uses_it(self) -> None:
        async with httpx.AsyncClient() as http:
            client = AdminClient(http, "acme.myshopify.com", "t", origin="http://127.0.0.1:1/{shop}")
        assert client.endpoint == "http://127.0.0.1:1/acme.myshopify.com/admin/api/2026-04/graphql.json"
