"""Pure signature and identity checks for Shopify's protocols (no I/O).

* Webhooks: base64(HMAC-SHA256(secret, raw body)) in ``X-Shopify-Hmac-Sha256``.
* OAuth redirects: hex HMAC-SHA256 over the sorted query parameters (without ``hmac``).
* App Bridge session tokens: HS256 JWTs signed with the app secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt

from shopify_client.errors import InvalidSessionTokenError, InvalidShopDomainError

#: ASCII only: with ``re.IGNORECASE`` alone, Python also matches non-ASCII letters whose case
#: folds onto ASCII ones (U+0130, U+0131, U+017F long s, U+212A Kelvin sign), so a look-alike
#: such as ``shopa.my\u017fhopify.com`` would pass.
SHOP_DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$", re.IGNORECASE | re.ASCII)

#: Leeway for ``exp``/``nbf`` of session tokens, as Shopify's own libraries use.
SESSION_TOKEN_LEEWAY_SECONDS = 10

#: OAuth query timestamps older than this are refused (replay protection).
OAUTH_TIMESTAMP_MAX_AGE_SECONDS = 24 * 3600
OAUTH_TIMESTAMP_MAX_SKEW_SECONDS = 90


def is_valid_shop_domain(domain: str) -> bool:
    """True for ``name.myshopify.com`` (ASCII letters in any case), nothing else."""
    return bool(SHOP_DOMAIN_RE.fullmatch(domain))


def normalize_shop_domain(domain: str) -> str:
    """Lower-case a valid shop domain, or raise :class:`InvalidShopDomainError`."""
    if not is_valid_shop_domain(domain):
        raise InvalidShopDomainError(domain)
    return domain.lower()


def webhook_hmac(body: bytes, secret: str) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value Shopify sends for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_webhook_hmac(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """Constant-time check of a webhook signature against every accepted secret."""
    if not header:
        return False
    try:
        received = base64.b64decode(header.strip(), validate=True)
    except (ValueError, TypeError):
        return False
    ok = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        # Evaluate every secret so timing does not reveal which one matched.
        ok = hmac.compare_digest(expected, received) or ok
    return ok


#: What Shopify signs with the same app secret for other purposes, as a byte string: a session
#: token's signing input (``base64url(header).base64url(claims)``) and an OAuth or app-proxy query
#: (``name=value…``). Neither shape is JSON, so neither is ever a webhook body.
_JWS_SIGNING_INPUT = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_QUERY_MESSAGE = re.compile(rb"[A-Za-z0-9_.%\[\]-]+=")


def signed_for_another_purpose(body: bytes) -> bool:
    """True when ``body`` has the shape of a message Shopify signs for something other than a
    webhook (a session token, an OAuth redirect). Its signature is Shopify's, but replaying it as
    a webhook is a forgery: anyone holding a session token or an install redirect has one."""
    return bool(_JWS_SIGNING_INPUT.fullmatch(body) or _QUERY_MESSAGE.match(body))


def _escape_key(key: str) -> str:
    return key.replace("%", "%25").replace("=", "%3D").replace("&", "%26")


def _escape_value(value: str) -> str:
    return value.replace("%", "%25").replace("&", "%26")


def oauth_message(query: Mapping[str, str | Sequence[str]]) -> str:
    """The string Shopify signs for an OAuth redirect: sorted ``k=v`` pairs joined by ``&``.

    ``hmac`` and ``signature`` are left out. Array parameters (``ids[]``, a sequence value, or a
    key repeated by a multi-dict) are rendered as a JSON list under the bare name, as Shopify's
    libraries do: ``ids=["1", "2"]``. ``%``, ``&`` and ``=`` are escaped so that no pair can
    pass for two.
    """
    values: dict[str, list[str]] = {}
    listed: set[str] = set()
    for key, value in query.items():
        if key in ("hmac", "signature"):
            continue
        if isinstance(value, str):
            values.setdefault(key, []).append(value)
        else:
            values.setdefault(key, []).extend(value)
            listed.add(key)
    pairs: list[str] = []
    for key, items in values.items():
        if key.endswith("[]") or key in listed or len(items) > 1:
            name = key.removesuffix("[]")
            rendered = json.dumps(items)
        else:
            name, rendered = key, items[0]
        pairs.append(f"{_escape_key(name)}={_escape_value(rendered)}")
    return "&".join(sorted(pairs))


def oauth_hmac(query: Mapping[str, str | Sequence[str]], secret: str) -> str:
    """Hex HMAC-SHA256 of :func:`oauth_message`."""
    return hmac.new(secret.encode(), oauth_message(query).encode(), hashlib.sha256).hexdigest()


def verify_oauth_hmac(
    query: Mapping[str, str | Sequence[str]],
    secrets: Iterable[str],
    *,
    now: float | None = None,
    max_age: int = OAUTH_TIMESTAMP_MAX_AGE_SECONDS,
) -> bool:
    """Check an OAuth redirect's ``hmac`` and the freshness of its ``timestamp``.

    The ``hmac`` must be the lower-case hex digest, as Shopify sends it: Shopify's own libraries
    compare it as given, so an upper-case one is refused here too.
    """
    received = query.get("hmac")
    if not isinstance(received, str) or not received or not received.isascii():
        return False
    timestamp = query.get("timestamp")
    if not isinstance(timestamp, str):
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if ts < current - max_age or ts > current + OAUTH_TIMESTAMP_MAX_SKEW_SECONDS:
        return False
    ok = False
    for secret in secrets:
        if secret:
            ok = hmac.compare_digest(oauth_hmac(query, secret), received) or ok
    return ok


@dataclass(frozen=True, slots=True)
class SessionToken:
    """The verified claims of an App Bridge session token that tierline uses."""

    shop: str
    user_id: str | None
    session_id: str | None
    expires_at: int


def decode_session_token(
    token: str,
    *,
    api_key: str,
    secrets: Iterable[str | bytes],
) -> SessionToken:
    """Verify an App Bridge session token (HS256 only) and return its shop and user.

    Raises :class:`InvalidSessionTokenError` for anything else: another algorithm (``none``
    included), a bad signature, wrong ``aud``, ``exp``/``nbf`` outside a 10 s leeway, a
    ``dest`` that is not a shop domain, or an ``iss`` on another host than ``dest``.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidSessionTokenError("malformed token") from exc
    if header.get("alg") != "HS256":
        raise InvalidSessionTokenError("algorithm not allowed")
    options: dict[str, bool | list[str]] = {"require": ["exp", "nbf", "aud", "iss", "dest"]}
    last_error: Exception | None = None
    for secret in secrets:
        if not secret:
            continue
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                audience=api_key,
                leeway=SESSION_TOKEN_LEEWAY_SECONDS,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.InvalidSignatureError as exc:
            last_error = exc
            continue
        except jwt.PyJWTError as exc:
            raise InvalidSessionTokenError(str(exc)) from exc
        break
    else:
        raise InvalidSessionTokenError("signature did not verify") from last_error
    host = _url_host(claims.get("dest"))
    if not host or not is_valid_shop_domain(host):
        raise InvalidSessionTokenError("dest is not a shop domain")
    if _url_host(claims.get("iss")) != host:
        raise InvalidSessionTokenError("iss and dest name different shops")
    sub = claims.get("sub")
    sid = claims.get("sid")
    return SessionToken(
        shop=host.lower(),
        user_id=str(sub) if sub is not None else None,
        session_id=str(sid) if sid is not None else None,
        expires_at=int(claims["exp"]),
    )


def _url_host(url: object) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None
