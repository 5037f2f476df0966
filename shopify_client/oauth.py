"""OAuth for Shopify apps: the authorize URL, code exchange, refresh and token exchange.

URL building and scope checks are pure functions; the three token requests take an injected
``httpx.AsyncClient`` and post form fields to ``{origin}/admin/oauth/access_token``, where
``origin`` is ``https://{shop}`` unless a stand-in Shopify is configured (:mod:`shopify_client.urls`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from shopify_client.errors import OAuthError, OAuthHTTPError, ShopifyTransportError
from shopify_client.urls import DEFAULT_SHOP_ORIGIN, shop_origin

TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
OFFLINE_ACCESS_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"  # noqa: S105
ONLINE_ACCESS_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:online-access-token"  # noqa: S105

#: How much of an error body is kept in :class:`OAuthHTTPError`.
BODY_EXCERPT_CHARS = 300

_WRITE_SCOPE = re.compile(r"^(unauthenticated_)?write_(.+)$")


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An Admin API access token as the token endpoint returned it.

    ``expires_at`` is None for a non-expiring offline token; ``associated_user_id`` is set for
    online tokens only. Token values are left out of ``repr``.
    """

    access_token: str = field(repr=False)
    scope: str
    expires_at: datetime | None = None
    refresh_token: str | None = field(default=None, repr=False)
    refresh_token_expires_at: datetime | None = None
    associated_user_id: int | None = None


def token_url(shop: str, origin: str = DEFAULT_SHOP_ORIGIN) -> str:
    """``https://{shop}/admin/oauth/access_token`` for a valid shop domain."""
    return f"{shop_origin(shop, origin)}/admin/oauth/access_token"


def authorize_url(
    shop: str,
    api_key: str,
    scopes: str | Iterable[str],
    redirect_uri: str,
    state: str,
    *,
    online: bool = False,
    origin: str = DEFAULT_SHOP_ORIGIN,
) -> str:
    """The URL that asks the merchant to grant ``scopes`` (authorization-code grant).

    ``scope`` is comma-separated and left out when empty (scopes declared in the app's TOML);
    ``grant_options[]=per-user`` asks for an online token.
    """
    params: list[tuple[str, str]] = [("client_id", api_key)]
    scope = ",".join(_split_scopes(scopes))
    if scope:
        params.append(("scope", scope))
    params += [("redirect_uri", redirect_uri), ("state", state)]
    if online:
        params.append(("grant_options[]", "per-user"))
    return f"{shop_origin(shop, origin)}/admin/oauth/authorize?{urlencode(params, safe=',')}"


async def exchange_code(
    http: httpx.AsyncClient,
    shop: str,
    api_key: str,
    api_secret: str,
    code: str,
    *,
    expiring: bool = True,
    now: datetime | None = None,
    origin: str = DEFAULT_SHOP_ORIGIN,
) -> AccessToken:
    """Exchange the callback's ``code`` for an access token (``expiring=1`` by default)."""
    form = {"client_id": api_key, "client_secret": api_secret, "code": code}
    if expiring:
        form["expiring"] = "1"
    return await _request_token(http, shop, form, now, origin)


async def refresh_access_token(
    http: httpx.AsyncClient,
    shop: str,
    api_key: str,
    api_secret: str,
    refresh_token: str,
    *,
    now: datetime | None = None,
    origin: str = DEFAULT_SHOP_ORIGIN,
) -> AccessToken:
    """Trade a refresh token for a new access token and a new refresh token."""
    form = {
        "client_id": api_key,
        "client_secret": api_secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    }
    return await _request_token(http, shop, form, now, origin)


async def token_exchange(
    http: httpx.AsyncClient,
    shop: str,
    api_key: str,
    api_secret: str,
    session_token: str,
    *,
    online: bool = False,
    expiring: bool = True,
    now: datetime | None = None,
    origin: str = DEFAULT_SHOP_ORIGIN,
) -> AccessToken:
    """Exchange an App Bridge session token for an offline (default) or online access token.

    ``expiring=1`` is sent for offline tokens only; online tokens always expire.
    """
    form = {
        "client_id": api_key,
        "client_secret": api_secret,
        "grant_type": TOKEN_EXCHANGE_GRANT_TYPE,
        "subject_token": session_token,
        "subject_token_type": ID_TOKEN_TYPE,
        "requested_token_type": ONLINE_ACCESS_TOKEN_TYPE if online else OFFLINE_ACCESS_TOKEN_TYPE,
    }
    if expiring and not online:
        form["expiring"] = "1"
    return await _request_token(http, shop, form, now, origin)


def needs_refresh(token: AccessToken, now: datetime, margin: timedelta = timedelta(minutes=5)) -> bool:
    """True when ``token`` expires within ``margin`` of ``now`` (never for non-expiring tokens)."""
    return token.expires_at is not None and now >= token.expires_at - margin


def missing_scopes(granted: str, required: str) -> set[str]:
    """The scopes in ``required`` that ``granted`` does not cover (both comma-separated).

    ``write_x`` implies ``read_x``, and ``unauthenticated_write_x`` implies
    ``unauthenticated_read_x``.
    """
    have = set(_split_scopes(granted))
    for scope in list(have):
        match = _WRITE_SCOPE.match(scope)
        if match:
            have.add(f"{match.group(1) or ''}read_{match.group(2)}")
    return set(_split_scopes(required)) - have


def parse_access_token(data: Mapping[str, Any], now: datetime) -> AccessToken:
    """Build an :class:`AccessToken` from the token endpoint's JSON, turning ``*_in`` into datetimes."""
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise OAuthError("token response has no access_token")
    user = data.get("associated_user")
    user_id = user.get("id") if isinstance(user, Mapping) else None
    refresh_token = data.get("refresh_token")
    return AccessToken(
        access_token=access_token,
        scope=str(data.get("scope") or ""),
        expires_at=_expiry(data.get("expires_in"), now),
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        refresh_token_expires_at=_expiry(data.get("refresh_token_expires_in"), now),
        associated_user_id=_int_or_none(user_id),
    )


async def _request_token(
    http: httpx.AsyncClient, shop: str, form: dict[str, str], now: datetime | None, origin: str
) -> AccessToken:
    url = token_url(shop, origin)
    try:
        response = await http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise ShopifyTransportError(f"POST {url}: {type(exc).__name__}") from exc
    if not response.is_success:
        raise OAuthHTTPError(response.status_code, response.text[:BODY_EXCERPT_CHARS])
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OAuthError("token response is not JSON") from exc
    if not isinstance(data, dict):
        raise OAuthError("token response is not a JSON object")
    return parse_access_token(data, now or datetime.now(UTC))


def _expiry(seconds: object, now: datetime) -> datetime | None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        return None
    return now + timedelta(seconds=seconds)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _split_scopes(scopes: str | Iterable[str]) -> list[str]:
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    result: list[str] = []
    for item in items:
        scope = item.strip()
        if scope and scope not in result:
            result.append(scope)
    return result
